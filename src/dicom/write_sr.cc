/*
 * write_sr.cc — the result as a TID 1500 Comprehensive 3D SR (DCMTK dcmsr),
 * and the helpers both report writers share (source copy, atomic save).
 *
 * The content tree (docs/conformance-statement.md, "SR content tree"):
 *
 *   CONTAINER (126000, DCM, "Imaging Measurement Report")  [TID 1500]
 *     HAS CONCEPT MOD  Language (121049) = en                [TID 1204]
 *     HAS OBS CONTEXT  Observer Type = Device, Device Observer UID, Name,
 *                      Manufacturer, Model Name, Station AE Title [TID 1002]
 *     HAS CONCEPT MOD  Procedure reported (121058) = SCT "CT with/without
 *                      contrast" (or "CT" when the result cannot tell)
 *     CONTAINS CONTAINER Image Library (111028)              [TID 1600]
 *       CONTAINS CONTAINER Image Library Group (126200): Modality CT,
 *         Frame of Reference UID, one IMAGE per slice used
 *     CONTAINS CONTAINER Imaging Measurements (126010)
 *       CONTAINS CONTAINER Measurement Group (125007)         [TID 1501]
 *         Tracking Identifier, Tracking UID, Finding = the phase code,
 *         Algorithm Name/Version/Parameters (model SHA-256 and name)
 *                                                             [TID 4019]
 *         NUM vote share of each phase (%), CODE leading phase (the
 *         winner even when indeterminate), vote margin (%), slices used
 *         and skipped ({slices}); with masking: SAM layer, slices scored,
 *         and (when any was) the masking scores top and bottom 10% (%)
 *     CONTAINS CONTAINER Qualitative Evaluations (C0034375, UMLS)
 *       CONTAINS CODE Contrast enhancement phase (99CTPHASE) = the phase
 *
 * The phase codes live in the local scheme 99CTPHASE, declared in the
 * Coding Scheme Identification Sequence. Patient and study attributes are
 * copied from a source file after DCMTK wrote its document, and so are the
 * SOP and series UIDs we chose (DSRDocument has no setter for them).
 *
 * No state besides the one-time toolkit check: threads may write different
 * files at once. Every exception stops at the extern "C" functions.
 */
#include "dicom/report_int.h"
#include "dicom/ds.h"

#include "ctphase/error.h"
#include "ctphase/predict.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmsr/dsrdoc.h>
#include <dcmtk/oflog/oflog.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <new>
#include <string>

namespace ctp_report {

namespace {
std::once_flag init_once;
bool dict_ok = false;
std::atomic<unsigned long> tmp_counter{0};
}  // namespace

void init_toolkit() {
  std::call_once(init_once, [] {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    dict_ok = dcmDataDict.isDictionaryLoaded();
  });
  if (!dict_ok)
    throw dicom_error{"DCMTK data dictionary not loaded (check DCMDICTPATH)"};
}

void check(bool ok, const char *cond_text, const char *what) {
  if (!ok) throw dicom_error{std::string(what) + ": " + cond_text};
}

std::string ds(double v) { return ctp_dicom_ds(v, 10); }

std::string str(const char *s) { return s ? s : ""; }

void load_source(const char *path, DcmFileFormat &ff) {
  OFCondition c = ff.loadFileUntilTag(path, EXS_Unknown, EGL_noChange,
                                      DCM_MaxReadLength, ERM_autoDetect,
                                      DCM_PixelData);
  if (c.bad())
    throw dicom_error{std::string("cannot read source ") + path + ": " +
                      c.text()};
}

namespace {

/* What is copied from the source: Patient, Clinical Trial Subject, Patient
 * Study and General Study modules. type2: written empty when absent. */
struct copied {
  DcmTagKey tag;
  bool type2;
};

const copied kCopied[] = {
    {DCM_SpecificCharacterSet, false},
    /* Patient. */
    {DCM_PatientName, true},
    {DCM_PatientID, true},
    {DCM_IssuerOfPatientID, false},
    {DCM_IssuerOfPatientIDQualifiersSequence, false},
    {DCM_TypeOfPatientID, false},
    {DCM_PatientBirthDate, true},
    {DCM_PatientBirthTime, false},
    {DCM_PatientSex, true},
    {DCM_OtherPatientIDsSequence, false},
    {DCM_OtherPatientNames, false},
    {DCM_EthnicGroup, false},
    {DCM_PatientComments, false},
    {DCM_PatientSpeciesDescription, false},
    {DCM_PatientSpeciesCodeSequence, false},
    {DCM_PatientBreedDescription, false},
    {DCM_PatientBreedCodeSequence, false},
    {DCM_BreedRegistrationSequence, false},
    {DCM_ResponsiblePerson, false},
    {DCM_ResponsiblePersonRole, false},
    {DCM_ResponsibleOrganization, false},
    {DCM_PatientIdentityRemoved, false},
    {DCM_DeidentificationMethod, false},
    {DCM_DeidentificationMethodCodeSequence, false},
    /* Clinical Trial Subject. */
    {DCM_ClinicalTrialSponsorName, false},
    {DCM_ClinicalTrialProtocolID, false},
    {DCM_ClinicalTrialProtocolName, false},
    {DCM_ClinicalTrialSiteID, false},
    {DCM_ClinicalTrialSiteName, false},
    {DCM_ClinicalTrialSubjectID, false},
    {DCM_ClinicalTrialSubjectReadingID, false},
    /* General Study. */
    {DCM_StudyInstanceUID, false},
    {DCM_StudyDate, true},
    {DCM_StudyTime, true},
    {DCM_ReferringPhysicianName, true},
    {DCM_ReferringPhysicianIdentificationSequence, false},
    {DCM_StudyID, true},
    {DCM_AccessionNumber, true},
    {DCM_IssuerOfAccessionNumberSequence, false},
    {DCM_StudyDescription, false},
    {DCM_PhysiciansOfRecord, false},
    {DCM_NameOfPhysiciansReadingStudy, false},
    {DCM_ReferencedStudySequence, false},
    {DCM_ProcedureCodeSequence, false},
    /* Patient Study. */
    {DCM_AdmittingDiagnosesDescription, false},
    {DCM_PatientAge, false},
    {DCM_PatientSize, false},
    {DCM_PatientWeight, false},
    {DCM_Occupation, false},
    {DCM_AdditionalPatientHistory, false},
    {DCM_PregnancyStatus, false},
};

}  // namespace

/* Whether every item of a code sequence has the three basic code
 * attributes; a source's broken optional sequence is not passed on. */
static bool code_seq_ok(DcmElement *e) {
  DcmSequenceOfItems *sq = OFdynamic_cast(DcmSequenceOfItems *, e);
  if (!sq) return true;
  for (unsigned long i = 0; i < sq->card(); i++) {
    DcmItem *it = sq->getItem(i);
    OFString v, s, m;
    if (!it || it->findAndGetOFString(DCM_CodeValue, v).bad() || v.empty() ||
        it->findAndGetOFString(DCM_CodingSchemeDesignator, s).bad() ||
        s.empty() || it->findAndGetOFString(DCM_CodeMeaning, m).bad() ||
        m.empty())
      return false;
  }
  return true;
}

void copy_patient_study(DcmItem &src, DcmItem &dst) {
  for (const copied &c : kCopied) {
    delete dst.remove(c.tag);
    DcmElement *e = NULL;
    bool code_seq = c.tag == DCM_ProcedureCodeSequence ||
                    c.tag == DCM_PatientSpeciesCodeSequence ||
                    c.tag == DCM_PatientBreedCodeSequence ||
                    c.tag == DCM_DeidentificationMethodCodeSequence;
    if (src.findAndGetElement(c.tag, e).good() && e &&
        (!code_seq || code_seq_ok(e))) {
      DcmElement *copy = OFstatic_cast(DcmElement *, e->clone());
      if (!copy) throw std::bad_alloc();
      OFCondition r = dst.insert(copy, OFTrue);
      if (r.bad()) {
        delete copy;
        DcmTag t(c.tag);
        throw dicom_error{std::string("cannot copy ") + t.getTagName() +
                          ": " + r.text()};
      }
    } else if (c.type2) {
      check(dst.insertEmptyElement(c.tag).good(), "cannot insert",
            DcmTag(c.tag).getTagName());
    }
  }
}

/* fsync of a file or folder by name; 0 or errno. */
static int sync_path(const char *path, int flags) {
  int fd = open(path, flags);
  if (fd < 0) return errno;
  int e = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return e;
}

int save_atomic(DcmFileFormat &ff, const char *path) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp%ld.%lu", path, (long)getpid(),
           tmp_counter.fetch_add(1));
  OFCondition c = ff.saveFile(tmp, EXS_LittleEndianExplicit,
                              EET_ExplicitLength, EGL_recalcGL, EPD_noChange,
                              0, 0, EWM_fileformat);
  if (c.bad()) {
    int e = errno;
    remove(tmp);
    return ctp_seterr(e == ENOSPC ? CTP_ENOSPC : CTP_EIO, "cannot write %s: %s",
                      path, c.text());
  }
  int e = sync_path(tmp, O_RDONLY);
  if (e == 0 && rename(tmp, path) != 0) e = errno;
  if (e) {
    remove(tmp);
    return ctp_seterr(e == ENOSPC ? CTP_ENOSPC : CTP_EIO, "cannot write %s: %s",
                      path, strerror(e));
  }
  /* The folder: so that the rename itself survives a crash. */
  std::string dir(path);
  size_t slash = dir.rfind('/');
  dir = slash == std::string::npos ? "." : slash == 0 ? "/" : dir.substr(0, slash);
  if ((e = sync_path(dir.c_str(), O_RDONLY | O_DIRECTORY)) != 0)
    return ctp_seterr(CTP_EIO, "cannot sync folder %s: %s", dir.c_str(),
                      strerror(e));
  return 0;
}

}  // namespace ctp_report

using ctp_report::check;
using ctp_report::dicom_error;
using ctp_report::ds;
using ctp_report::str;

namespace {

/* The phase codes: class order, then indeterminate. */
const char *const kPhaseCode[CTP_NUM_CLASSES + 1][2] = {
    {"noncon", "Non-contrast (unenhanced)"},
    {"cm", "Corticomedullary (arterial)"},
    {"cmneph", "Late corticomedullary to early nephrographic (portal venous)"},
    {"neph", "Nephrographic"},
    {"pyelo", "Pyelographic (excretory)"},
    {"indeterminate", "Indeterminate contrast enhancement phase"},
};

DSRCodedEntryValue code(const char *value, const char *scheme,
                        const char *meaning) {
  return DSRCodedEntryValue(value, scheme, meaning);
}

DSRCodedEntryValue local(const char *value, const char *meaning) {
  return DSRCodedEntryValue(value, CTP_REPORT_SCHEME, meaning);
}

DSRCodedEntryValue phase_code(int phase) {
  const char *v, *m;
  if (ctp__report_phase_code(phase, &v, &m))
    throw dicom_error{"no code for phase"};
  return local(v, m);
}


/* Adds content items at the tree's cursor, checking every step. */
class Tree {
 public:
  explicit Tree(DSRDocumentTree &t) : t_(t) {}

  /* A sibling of the current item (child: the first child of it). */
  DSRContentItem &add(DSRTypes::E_RelationshipType rel,
                      DSRTypes::E_ValueType vt, const DSRCodedEntryValue &cn,
                      bool child = false) {
    OFCondition c = child ? t_.addChildContentItem(rel, vt, cn)
                          : t_.addContentItem(rel, vt, cn);
    check(c.good(), c.text(), ("cannot add content item " +
                               std::string(cn.getCodeMeaning().c_str()))
                                  .c_str());
    return t_.getCurrentContentItem();
  }
  void text(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue &cn,
            const std::string &v, bool child = false) {
    set(add(rel, DSRTypes::VT_Text, cn, child).setStringValue(v.c_str()), cn);
  }
  void uidref(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue &cn,
              const std::string &v, bool child = false) {
    set(add(rel, DSRTypes::VT_UIDRef, cn, child).setStringValue(v.c_str()), cn);
  }
  void codev(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue &cn,
             const DSRCodedEntryValue &v, bool child = false) {
    set(add(rel, DSRTypes::VT_Code, cn, child).setCodeValue(v), cn);
  }
  void num(const DSRCodedEntryValue &cn, double v,
           const DSRCodedEntryValue &unit, bool child = false) {
    /* Two decimals: the vote is not more precise than that. */
    DSRNumericMeasurementValue nv(ds(std::round(v * 100.0) / 100.0).c_str(),
                                  unit);
    set(add(DSRTypes::RT_contains, DSRTypes::VT_Num, cn, child)
            .setNumericValue(nv),
        cn);
  }
  void image(const char *cls, const char *inst, bool child = false) {
    size_t id = t_.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Image,
                                  child ? DSRTypes::AM_belowCurrent
                                        : DSRTypes::AM_afterCurrent);
    check(id != 0, "refused", "cannot add an IMAGE item");
    set(t_.getCurrentContentItem().setImageReference(
            DSRImageReferenceValue(cls, inst)),
        DSRCodedEntryValue());
  }
  void template_id(const char *tid) {
    OFCondition c = t_.getCurrentContentItem().setTemplateIdentification(
        tid, "DCMR");
    check(c.good(), c.text(), "cannot set template identification");
  }
  void up() { check(t_.goUp() != 0, "no parent", "SR tree"); }

 private:
  static void set(const OFCondition &c, const DSRCodedEntryValue &cn) {
    check(c.good(), c.text(),
          ("cannot set the value of " + std::string(cn.getCodeMeaning().c_str()))
              .c_str());
  }
  DSRDocumentTree &t_;
};

const DSRCodedEntryValue kPercent() { return code("%", "UCUM", "percent"); }
const DSRCodedEntryValue kSlices() {
  return code("{slices}", "UCUM", "slices");
}

/* The SNOMED CT procedure: with or without contrast, or plain CT when an
 * indeterminate result leaves non-contrast among the two leading phases. */
DSRCodedEntryValue procedure(const ctp__sr_desc *d) {
  bool noncon_possible;
  if (d->phase >= 0) {
    noncon_possible = d->phase == CTP_PHASE_NONCON;
    if (noncon_possible) return code("399331006", "SCT", "CT without contrast");
    return code("1331946003", "SCT", "CT with contrast");
  }
  int first = 0, second = -1;
  for (int c = 1; c < CTP_NUM_CLASSES; c++)
    if (d->share[c] > d->share[first]) first = c;
  for (int c = 0; c < CTP_NUM_CLASSES; c++)
    if (c != first && (second < 0 || d->share[c] > d->share[second])) second = c;
  if (first != CTP_PHASE_NONCON && second != CTP_PHASE_NONCON)
    return code("1331946003", "SCT", "CT with contrast");
  return code("77477000", "SCT", "CT");
}

void build_tree(DSRDocumentTree &dt, const ctp__sr_desc *d) {
  using T = DSRTypes;
  Tree t(dt);
  size_t root = dt.addContentItem(T::RT_isRoot, T::VT_Container);
  check(root != 0, "refused", "cannot add the root");
  check(dt.getCurrentContentItem()
            .setConceptName(code("126000", "DCM", "Imaging Measurement Report"))
            .good(),
        "refused", "root concept name");
  t.template_id("1500");

  /* TID 1204 language, TID 1002 device observer, procedure reported. */
  t.codev(T::RT_hasConceptMod,
          code("121049", "DCM", "Language of Content Item and Descendants"),
          code("en-US", "RFC5646", "English (United States)"), true);
  t.codev(T::RT_hasObsContext, code("121005", "DCM", "Observer Type"),
          code("121007", "DCM", "Device"));
  t.uidref(T::RT_hasObsContext, code("121012", "DCM", "Device Observer UID"),
           d->device_uid);
  t.text(T::RT_hasObsContext, code("121013", "DCM", "Device Observer Name"),
         str(d->station_name).empty() ? "ctphase" : d->station_name);
  t.text(T::RT_hasObsContext,
         code("121014", "DCM", "Device Observer Manufacturer"), "ctphase");
  t.text(T::RT_hasObsContext,
         code("121015", "DCM", "Device Observer Model Name"),
         std::string("ctphase ") + CTPHASE_VERSION);
  if (!str(d->station_ae).empty())
    t.text(T::RT_hasObsContext, code("110119", "DCM", "Station AE Title"),
           d->station_ae);
  t.codev(T::RT_hasConceptMod, code("121058", "DCM", "Procedure reported"),
          procedure(d));

  /* TID 1600 image library: the slices used. */
  t.add(T::RT_contains, T::VT_Container, code("111028", "DCM", "Image Library"));
  t.template_id("1600");
  t.add(T::RT_contains, T::VT_Container,
        code("126200", "DCM", "Image Library Group"), true);
  t.codev(T::RT_hasAcqContext, code("121139", "DCM", "Modality"),
          code("CT", "DCM", "Computed Tomography"), true);
  if (!str(d->frame_of_reference_uid).empty())
    t.uidref(T::RT_hasAcqContext, code("112227", "DCM", "Frame of Reference UID"),
             d->frame_of_reference_uid);
  for (int i = 0; i < d->nrefs; i++)
    t.image(d->refs[i].sop_class_uid, d->refs[i].sop_instance_uid);
  t.up();
  t.up();

  /* TID 1501 measurement group: the vote. */
  t.add(T::RT_contains, T::VT_Container,
        code("126010", "DCM", "Imaging Measurements"));
  t.add(T::RT_contains, T::VT_Container, code("125007", "DCM", "Measurement Group"),
        true);
  t.template_id("1501");
  t.text(T::RT_hasObsContext, code("112039", "DCM", "Tracking Identifier"),
         "ctphase contrast phase vote", true);
  t.uidref(T::RT_hasObsContext, code("112040", "DCM", "Tracking Unique Identifier"),
           d->tracking_uid);
  t.codev(T::RT_contains, code("121071", "DCM", "Finding"), phase_code(d->phase));
  /* TID 4019 algorithm identification. */
  t.text(T::RT_hasConceptMod, code("111001", "DCM", "Algorithm Name"),
         "ctphase contrast phase classifier");
  t.text(T::RT_hasConceptMod, code("111003", "DCM", "Algorithm Version"),
         CTPHASE_VERSION);
  t.text(T::RT_hasConceptMod, code("111002", "DCM", "Algorithm Parameters"),
         "model sha256 " + str(d->model_sha256));
  if (!str(d->model_name).empty())
    t.text(T::RT_hasConceptMod, code("111002", "DCM", "Algorithm Parameters"),
           "model name " + str(d->model_name));
  char buf[64];
  for (int c = 0; c < CTP_NUM_CLASSES; c++) {
    const char *v, *m;
    ctp__report_phase_code(c, &v, &m);
    std::string cv = std::string("share-") + v;
    snprintf(buf, sizeof buf, "Vote share, %s", v);
    t.num(local(cv.c_str(), buf), 100.0 * d->share[c], kPercent());
  }
  t.codev(T::RT_contains, local("leading", "Leading phase of the vote"),
          phase_code(d->winner));
  t.num(local("margin", "Vote margin"), 100.0 * d->margin, kPercent());
  t.num(local("margin-min", "Vote margin threshold"), 100.0 * d->margin_threshold,
        kPercent());
  t.num(local("slices-used", "Slices used"), d->nused, kSlices());
  t.num(local("slices-skipped", "Slices skipped"), d->nskipped, kSlices());
  if (d->has_masking) {
    t.text(T::RT_contains, local("sam-layer", "SAM layer"),
           ctp_layer_name(d->sam_layer));
    if (d->masking_n > 0) {
      t.num(local("sam-mask-top", "SAM masking score, top 10% masked"),
            d->masking_top, kPercent());
      t.num(local("sam-mask-bottom", "SAM masking score, bottom 10% masked"),
            d->masking_bottom, kPercent());
    }
    t.num(local("sam-mask-slices", "Slices scored by masking"), d->masking_n,
          kSlices());
  }
  t.up();
  t.up();

  /* TID 1500 row 12-13: the phase as a qualitative evaluation. */
  t.add(T::RT_contains, T::VT_Container,
        code("C0034375", "UMLS", "Qualitative Evaluations"));
  t.codev(T::RT_contains, local("phase", "Contrast enhancement phase"),
          phase_code(d->phase), true);
}

void put(DcmItem &ds, const DcmTagKey &tag, const std::string &v) {
  OFCondition c = ds.putAndInsertString(tag, v.c_str());
  check(c.good(), c.text(), DcmTag(tag).getTagName());
}

int write_sr(const ctp__sr_desc *d) {
  ctp_report::init_toolkit();
  DcmFileFormat src;
  ctp_report::load_source(d->source_path, src);

  DSRDocument doc(DSRTypes::DT_Comprehensive3DSR);
  build_tree(doc.getTree(), d);

  DSRCodingSchemeIdentificationList &cs = doc.getCodingSchemeIdentification();
  check(cs.addItem(CTP_REPORT_SCHEME).good(), "refused", "coding scheme");
  cs.setCodingSchemeName("ctphase contrast enhancement phases");
  cs.setCodingSchemeResponsibleOrganization("ctphase");
  for (int i = 0; i < d->nrefs; i++) {
    OFCondition c = doc.getCurrentRequestedProcedureEvidence().addItem(
        d->study_uid, d->source_series_uid, d->refs[i].sop_class_uid,
        d->refs[i].sop_instance_uid);
    check(c.good(), c.text(), "evidence reference");
  }
  doc.setManufacturer("ctphase");
  doc.setManufacturerModelName("ctphase");
  doc.setDeviceSerialNumber(str(d->station_name).empty() ? "0" : d->station_name);
  doc.setSoftwareVersions(CTPHASE_VERSION);
  doc.setSeriesDescription(str(d->series_description));
  doc.setSeriesNumber(std::to_string(d->series_number).c_str());
  doc.setInstanceNumber(std::to_string(d->instance_number).c_str());
  doc.setContentDate(str(d->content_date));
  doc.setContentTime(str(d->content_time));
  OFCondition c = doc.completeDocument();
  check(c.good(), c.text(), "complete document");

  DcmFileFormat ff;
  DcmDataset *ds = ff.getDataset();
  c = doc.write(*ds);
  check(c.good(), c.text(), "SR document");
  ctp_report::copy_patient_study(*src.getDataset(), *ds);
  put(*ds, DCM_StudyInstanceUID, d->study_uid);
  put(*ds, DCM_SeriesInstanceUID, d->series_uid);
  put(*ds, DCM_SOPInstanceUID, d->sop_uid);
  put(*ds, DCM_InstanceCreationDate, str(d->content_date));
  put(*ds, DCM_InstanceCreationTime, str(d->content_time));
  put(*ds, DCM_SeriesDate, str(d->content_date));
  put(*ds, DCM_SeriesTime, str(d->content_time));
  delete ds->remove(DCM_InstanceCreatorUID);
  return ctp_report::save_atomic(ff, d->path);
}

}  // namespace

extern "C" int ctp__report_phase_code(int phase, const char **value,
                                      const char **meaning) {
  int i = phase == CTP_PHASE_INDETERMINATE ? CTP_NUM_CLASSES : phase;
  if (phase != CTP_PHASE_INDETERMINATE && (phase < 0 || phase >= CTP_NUM_CLASSES))
    return ctp_seterr(CTP_EINVAL, "no code for phase %d", phase);
  if (value) *value = kPhaseCode[i][0];
  if (meaning) *meaning = kPhaseCode[i][1];
  return 0;
}

extern "C" int ctp__report_write_sr(const ctp__sr_desc *d) {
  if (!d || !d->path || !d->source_path || !d->sop_uid || !d->series_uid ||
      !d->study_uid || !d->device_uid || !d->tracking_uid)
    return ctp_seterr(CTP_EINVAL, "write SR: missing argument");
  const char *path = d->path;
  try {
    return write_sr(d);
  } catch (const std::bad_alloc &) {
    return ctp_seterr(CTP_ENOMEM, "out of memory while writing %s", path);
  } catch (const dicom_error &e) {
    return ctp_seterr(CTP_EDICOM, "write SR %s: %s", path, e.what.c_str());
  } catch (const std::exception &e) {
    return ctp_seterr(CTP_EDICOM, "write SR %s failed: %s", path, e.what());
  } catch (...) {
    return ctp_seterr(CTP_EDICOM, "write SR %s failed", path);
  }
}
