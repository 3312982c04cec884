/*
 * read.cc — reading CT series from DICOM files with DCMTK.
 *
 * This is the input side of the DCMTK shim (see include/ctphase/dicom.h for
 * the C API and docs/dicom-input.md for the rules in prose). It works in
 * three passes:
 *
 * 1. Collect. The given paths are expanded into a sorted list of files:
 *    folders are walked recursively (hidden names and symbolic links to
 *    folders are not followed).
 *
 * 2. Read headers. Each file is sniffed (empty? "DICM" at byte 128, or a
 *    dataset starting at byte 0?) and parsed with DcmFileFormat::loadFile.
 *    Values longer than 4 KiB — PixelData — stay in the file (DCMTK's lazy
 *    loading), so a scan costs one header parse per file. The header is
 *    copied into a SliceRec and judged: not CT, multi-frame, localizer,
 *    secondary or projection images are skipped; a CT image that cannot be
 *    decoded (pixel format, rescale, geometry) is an error. Each outcome
 *    carries one sentence of reason. A second pass skips repeated SOP
 *    Instance UIDs.
 *
 * 3. Group. Slices are grouped by SeriesInstanceUID and then by
 *    AcquisitionNumber. Inside a group the majority image size and the
 *    majority orientation win (the rest are skipped), and slices are placed
 *    along the group's normal. A group whose positions repeat holds several
 *    sweeps: it is cut into runs in InstanceNumber order wherever a position
 *    repeats, the direction reverses or a step jumps. Finally parts that sit
 *    end to end with the same spacing (step-and-shoot scans that number each
 *    rotation) are joined again. What remains are the acquisitions, each
 *    sorted by location along its normal.
 *
 * Pixels are decoded on demand by ctp_slice_load_hu(), which reads the
 * file again: DCMTK decodes native, deflated, JPEG, JPEG-LS and RLE data
 * (decoders registered once, under std::call_once); JPEG 2000 frames are
 * taken out of the pixel sequence here and decoded by j2k.cc (OpenJPEG).
 * Stored values are masked to BitsStored, sign-extended when signed, and
 * mapped to HU with RescaleSlope and RescaleIntercept.
 *
 * Threads: a ctp_scan is built by one thread and read-only afterwards;
 * ctp_slice_load_hu() touches only its own DcmFileFormat, so it may run in
 * parallel for different slices. No C++ exception leaves this file: every
 * public function catches at its boundary and returns a CTP_E* code.
 */
#include "ctphase/dicom.h"

#include "ctphase/error.h"
#include "dicom/j2k.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace {

const double kPi = 3.14159265358979323846;
const int kMaxDepth = 64; /* folder nesting followed at most */

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

std::string strf(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

std::string strf(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

/* DICOM pads strings with spaces (and UIs with NUL); values of a
 * multi-valued string are trimmed one by one. */
std::string trim(const std::string &s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\0')) b++;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\0')) e--;
  return s.substr(b, e - b);
}

std::string trim_values(const std::string &s) {
  std::string out;
  size_t start = 0;
  for (;;) {
    size_t bs = s.find('\\', start);
    out += trim(s.substr(start, bs == std::string::npos ? bs : bs - start));
    if (bs == std::string::npos) break;
    out += '\\';
    start = bs + 1;
  }
  return out;
}

std::vector<std::string> split_values(const std::string &s) {
  std::vector<std::string> v;
  size_t start = 0;
  for (;;) {
    size_t bs = s.find('\\', start);
    v.push_back(trim(s.substr(start, bs == std::string::npos ? bs : bs - start)));
    if (bs == std::string::npos) break;
    start = bs + 1;
  }
  return v;
}

std::string upper(std::string s) {
  for (char &c : s)
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
  return s;
}

std::string tag_str(const DcmTagKey &k) {
  return strf("(%04x,%04x)", k.getGroup(), k.getElement());
}

/* The whole value of a string attribute (all values, '\'-joined). */
std::string get_str(DcmItem *d, const DcmTagKey &k) {
  OFString v;
  if (d->findAndGetOFStringArray(k, v).bad()) return "";
  return trim_values(std::string(v.c_str(), v.length()));
}

/* Numeric value `pos` of an IS, DS, US or SS attribute (DCMTK parses the
 * strings); false when absent, empty or not finite. */
bool get_num(DcmItem *d, const DcmTagKey &k, double *out, unsigned long pos = 0) {
  DcmElement *e = NULL;
  if (d->findAndGetElement(k, e).bad() || !e || e->getLength() == 0)
    return false;
  if (pos >= e->getVM()) return false;
  switch (e->ident()) {
    case EVR_US: {
      Uint16 v;
      if (e->getUint16(v, pos).bad()) return false;
      *out = v;
      return true;
    }
    case EVR_SS: {
      Sint16 v;
      if (e->getSint16(v, pos).bad()) return false;
      *out = v;
      return true;
    }
    case EVR_IS: {
      Sint32 v;
      if (e->getSint32(v, pos).bad()) return false;
      *out = v;
      return true;
    }
    default: {
      Float64 v;
      if (e->getFloat64(v, pos).bad() || !std::isfinite(v)) return false;
      *out = v;
      return true;
    }
  }
}

/* n numeric values; false unless all n are there. */
bool get_nums(DcmItem *d, const DcmTagKey &k, double *out, int n) {
  for (int i = 0; i < n; i++)
    if (!get_num(d, k, &out[i], (unsigned long)i)) return false;
  return true;
}

int get_int(DcmItem *d, const DcmTagKey &k, int dflt) {
  double v;
  if (!get_num(d, k, &v) || v < -2147483647.0 || v > 2147483647.0) return dflt;
  return (int)v;
}

double dot3(const double *a, const double *b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

double deg_between(const double *a, const double *b) {
  double c = dot3(a, b);
  if (c > 1) c = 1;
  if (c < -1) c = -1;
  return std::acos(c) * 180.0 / kPi;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  size_t m = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + (long)m, v.end());
  double hi = v[m];
  if (v.size() % 2) return hi;
  double lo = *std::max_element(v.begin(), v.begin() + (long)m);
  return 0.5 * (lo + hi);
}

/* ------------------------------------------------------------------ */
/* Toolkit set-up                                                       */
/* ------------------------------------------------------------------ */

std::once_flag init_once;
int init_rc = 0;

void init_toolkit() {
  /* DCMTK logs warnings about odd files to stderr by default; our reasons
   * say what matters, and the service's log is JSON lines only. */
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  DJDecoderRegistration::registerCodecs();
  DJLSDecoderRegistration::registerCodecs();
  DcmRLEDecoderRegistration::registerCodecs();
  if (!dcmDataDict.isDictionaryLoaded())
    init_rc = CTP_EDICOM;
}

int ensure_init() {
  std::call_once(init_once, init_toolkit);
  if (init_rc)
    return ctp_seterr(init_rc,
                      "DCMTK data dictionary not loaded (check DCMDICTPATH)");
  return 0;
}

/* ------------------------------------------------------------------ */
/* Pixel description: shared by the scan and by decoding                */
/* ------------------------------------------------------------------ */

struct PixelDesc {
  int rows, columns, spp, ba, bs, hb, pr, frames;
  std::string photometric;
  E_TransferSyntax xfer;
  double slope, intercept;
};

bool is_j2k(E_TransferSyntax x) {
  return x == EXS_JPEG2000LosslessOnly || x == EXS_JPEG2000;
}

/* The transfer syntaxes we can turn into pixels. */
bool xfer_supported(E_TransferSyntax x) {
  switch (x) {
    case EXS_LittleEndianImplicit:
    case EXS_LittleEndianExplicit:
    case EXS_BigEndianExplicit:
    case EXS_DeflatedLittleEndianExplicit:
    case EXS_JPEGProcess1:
    case EXS_JPEGProcess2_4:
    case EXS_JPEGProcess6_8:
    case EXS_JPEGProcess10_12:
    case EXS_JPEGProcess14:
    case EXS_JPEGProcess14SV1:
    case EXS_JPEGLSLossless:
    case EXS_JPEGLSLossy:
    case EXS_RLELossless:
    case EXS_JPEG2000LosslessOnly:
    case EXS_JPEG2000:
      return true;
    default:
      return false;
  }
}

/* Reads the Image Pixel attributes and checks that we can decode them.
 * Returns 0, or a CTP_E* code with the reason in `why`. */
int read_pixel_desc(DcmDataset *ds, PixelDesc *pd, std::string *why) {
  double v;
  pd->xfer = ds->getOriginalXfer();

  if (!get_num(ds, DCM_Rows, &v)) {
    *why = "Rows " + tag_str(DCM_Rows) + " is missing";
    return CTP_EFORMAT;
  }
  pd->rows = (int)v;
  if (!get_num(ds, DCM_Columns, &v)) {
    *why = "Columns " + tag_str(DCM_Columns) + " is missing";
    return CTP_EFORMAT;
  }
  pd->columns = (int)v;
  if (pd->rows < 1 || pd->rows > CTP_DICOM_MAX_DIM || pd->columns < 1 ||
      pd->columns > CTP_DICOM_MAX_DIM) {
    *why = strf("image size Rows %d x Columns %d is out of range 1..%d",
                pd->rows, pd->columns, CTP_DICOM_MAX_DIM);
    return CTP_ERANGE;
  }

  pd->spp = get_int(ds, DCM_SamplesPerPixel, 1);
  pd->photometric = upper(get_str(ds, DCM_PhotometricInterpretation));
  if (pd->spp != 1) {
    *why = strf("SamplesPerPixel %d is not supported (grayscale CT has 1)",
                pd->spp);
    return CTP_ENOTSUP;
  }
  if (!pd->photometric.empty() && pd->photometric != "MONOCHROME1" &&
      pd->photometric != "MONOCHROME2") {
    *why = "PhotometricInterpretation " + pd->photometric +
           " is not supported (MONOCHROME1 or MONOCHROME2)";
    return CTP_ENOTSUP;
  }

  if (!get_num(ds, DCM_BitsAllocated, &v)) {
    *why = "BitsAllocated " + tag_str(DCM_BitsAllocated) + " is missing";
    return CTP_EFORMAT;
  }
  pd->ba = (int)v;
  if (pd->ba != 8 && pd->ba != 16) {
    *why = strf("BitsAllocated %d is not supported (8 or 16)", pd->ba);
    return CTP_ENOTSUP;
  }
  pd->bs = get_int(ds, DCM_BitsStored, pd->ba);
  pd->hb = get_int(ds, DCM_HighBit, pd->bs - 1);
  if (pd->bs < 1 || pd->bs > pd->ba || pd->hb < pd->bs - 1 ||
      pd->hb >= pd->ba) {
    *why = strf("BitsStored %d / HighBit %d do not fit BitsAllocated %d",
                pd->bs, pd->hb, pd->ba);
    return CTP_EFORMAT;
  }
  pd->pr = get_int(ds, DCM_PixelRepresentation, -1);
  if (pd->pr != 0 && pd->pr != 1) {
    *why = pd->pr == -1 ? "PixelRepresentation " +
                              tag_str(DCM_PixelRepresentation) + " is missing"
                        : strf("PixelRepresentation %d is invalid (0 or 1)",
                               pd->pr);
    return CTP_EFORMAT;
  }
  pd->frames = get_int(ds, DCM_NumberOfFrames, 1);
  if (pd->frames < 1) pd->frames = 1;

  if (!xfer_supported(pd->xfer)) {
    DcmXfer x(pd->xfer);
    *why = strf("transfer syntax %s (%s) is not supported", x.getXferName(),
                x.getXferID());
    return CTP_ENOTSUP;
  }

  DcmElement *px = NULL;
  if (ds->findAndGetElement(DCM_PixelData, px).bad() || !px) {
    *why = "PixelData " + tag_str(DCM_PixelData) + " is missing";
    return CTP_EFORMAT;
  }
  if (DcmXfer(pd->xfer).isNotEncapsulated()) {
    unsigned long need =
        (unsigned long)pd->rows * (unsigned long)pd->columns * (pd->ba / 8);
    unsigned long have = px->getLength();
    if (have < need) {
      *why = strf("PixelData holds %lu bytes but Rows x Columns x %d bytes "
                  "needs %lu",
                  have, pd->ba / 8, need);
      return CTP_EFORMAT;
    }
  }

  /* RescaleIntercept is required for CT (Type 1): without it the stored
   * values have no known HU offset. A missing slope alone is taken as 1. */
  if (!get_num(ds, DCM_RescaleIntercept, &pd->intercept)) {
    *why = "RescaleIntercept " + tag_str(DCM_RescaleIntercept) +
           " is missing: stored values cannot be converted to HU";
    return CTP_EFORMAT;
  }
  if (!get_num(ds, DCM_RescaleSlope, &pd->slope)) pd->slope = 1.0;
  if (pd->slope == 0.0) {
    *why = "RescaleSlope is 0";
    return CTP_EFORMAT;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Opening a file                                                       */
/* ------------------------------------------------------------------ */

/* Checks that a file looks like DICOM before DCMTK sees it: a file of
 * text or zeros would otherwise be parsed as a (nonsense) raw dataset. */
int sniff(const char *path, std::string *why) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    *why = strf("cannot open: %s", strerror(errno));
    return CTP_EIO;
  }
  unsigned char b[132];
  size_t n = fread(b, 1, sizeof b, f);
  fclose(f);
  if (n == 0) {
    *why = "empty file (0 bytes)";
    return CTP_EFORMAT;
  }
  if (n == sizeof b && memcmp(b + 128, "DICM", 4) == 0) return 0;
  /* No preamble: accept a dataset that starts with a little-endian
   * meta-header (0002,xxxx) or identifying (0008,xxxx) group. */
  if (n >= 8 && b[1] == 0 && (b[0] == 0x02 || b[0] == 0x08)) return 0;
  *why = "not a DICOM file (no DICM marker at byte 128 and no dataset at "
         "the start)";
  return CTP_EFORMAT;
}

int open_file(const char *path, DcmFileFormat *ff, std::string *why) {
  int rc = sniff(path, why);
  if (rc) return rc;
  OFCondition c = ff->loadFile(path, EXS_Unknown, EGL_noChange,
                               DCM_MaxReadLength, ERM_autoDetect);
  if (c.bad()) {
    *why = strf("DICOM parse failed (truncated or corrupt file): %s",
                c.text());
    return CTP_EFORMAT;
  }
  return 0;
}

}  // namespace

/* ------------------------------------------------------------------ */
/* The scan's objects                                                   */
/* ------------------------------------------------------------------ */

/* One file: the public view plus the strings it points into. */
struct SliceRec {
  ctp_slice s;
  std::string path, reason, sop_instance_uid, sop_class_uid, study_uid,
      series_uid, for_uid, ts_uid, charset, modality, image_type,
      manufacturer, series_description, study_description, study_date,
      study_time, acquisition_time, accession, patient_id, patient_name,
      patient_birth_date, patient_sex, photometric;

  /* AcquisitionTime in seconds after midnight, when it could be read. */
  bool has_time = false;
  double time_s = 0;

  SliceRec() {
    memset(&s, 0, sizeof s);
    s.status = CTP_SLICE_ERROR; /* until read_one() decides */
    s.skip = CTP_SKIP_ERROR;
    s.err = CTP_EFORMAT;
    s.series_number = s.acquisition_number = s.instance_number = -1;
    s.number_of_frames = 1;
    s.rescale_slope = 1.0;
  }

  void error(int err, const std::string &why) {
    s.status = CTP_SLICE_ERROR;
    s.skip = CTP_SKIP_ERROR;
    s.err = err;
    reason = why;
  }
  void skip(int code, const std::string &why) {
    s.status = CTP_SLICE_SKIPPED;
    s.skip = code;
    s.err = CTP_ESKIP;
    reason = why;
  }
  bool used() const { return s.status == CTP_SLICE_USED; }

  /* Points the public view at the strings; called once they are final. */
  void publish() {
    s.path = path.c_str();
    s.reason = reason.c_str();
    s.sop_instance_uid = sop_instance_uid.c_str();
    s.sop_class_uid = sop_class_uid.c_str();
    s.study_instance_uid = study_uid.c_str();
    s.series_instance_uid = series_uid.c_str();
    s.frame_of_reference_uid = for_uid.c_str();
    s.transfer_syntax_uid = ts_uid.c_str();
    s.specific_character_set = charset.c_str();
    s.modality = modality.c_str();
    s.image_type = image_type.c_str();
    s.manufacturer = manufacturer.c_str();
    s.series_description = series_description.c_str();
    s.study_description = study_description.c_str();
    s.study_date = study_date.c_str();
    s.study_time = study_time.c_str();
    s.acquisition_time = acquisition_time.c_str();
    s.accession_number = accession.c_str();
    s.patient_id = patient_id.c_str();
    s.patient_name = patient_name.c_str();
    s.patient_birth_date = patient_birth_date.c_str();
    s.patient_sex = patient_sex.c_str();
    s.photometric = photometric.c_str();
  }
};

struct ctp_acquisition {
  int number = -1;
  int index = 0;
  int rows = 0, columns = 0;
  double normal[3] = {0, 0, 1};
  double spacing = 0;
  std::vector<SliceRec *> slices; /* sorted by location */
};

struct ctp_series {
  std::string uid, study_uid;
  int series_number = -1;
  std::vector<SliceRec *> members; /* every readable file of the series */
  std::vector<std::unique_ptr<ctp_acquisition>> acqs;
  std::vector<SliceRec *> skipped;
  SliceRec *ref = NULL;
};

struct ctp_scan {
  std::vector<std::unique_ptr<SliceRec>> files;
  std::vector<std::unique_ptr<ctp_series>> series;
};

namespace {

/* ------------------------------------------------------------------ */
/* Pass 1: collecting files                                             */
/* ------------------------------------------------------------------ */

struct Found {
  std::string path;
  std::string error; /* set for entries that must not be opened */
};

int collect(const std::string &path, bool top, int depth,
            std::vector<Found> *out) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (top)
      return ctp_seterr(CTP_ENOENT, "%s: %s", path.c_str(), strerror(errno));
    out->push_back({path, strf("cannot stat: %s", strerror(errno))});
    return 0;
  }
  if (S_ISREG(st.st_mode)) {
    out->push_back({path, ""});
    return 0;
  }
  if (!S_ISDIR(st.st_mode)) {
    if (top)
      return ctp_seterr(CTP_EINVAL, "%s: not a file or folder", path.c_str());
    out->push_back({path, "not a regular file"});
    return 0;
  }
  if (!top) {
    struct stat lst;
    if (lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) return 0;
  }
  if (depth > kMaxDepth) return 0;
  DIR *dir = opendir(path.c_str());
  if (!dir) {
    if (top)
      return ctp_seterr(CTP_EIO, "%s: %s", path.c_str(), strerror(errno));
    out->push_back({path, strf("cannot open folder: %s", strerror(errno))});
    return 0;
  }
  std::vector<std::string> names;
  while (struct dirent *e = readdir(dir)) {
    if (e->d_name[0] == '.') continue; /* ".", "..", hidden files */
    names.push_back(e->d_name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  std::string base = path;
  if (base.empty() || base.back() != '/') base += '/';
  for (const std::string &n : names) {
    int rc = collect(base + n, false, depth + 1, out);
    if (rc) return rc;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Pass 2: reading and judging one header                               */
/* ------------------------------------------------------------------ */

/* Geometry: position, orientation (normalised), normal. Returns false with
 * the reason when the slice cannot be placed. */
bool read_geometry(DcmDataset *ds, SliceRec *r, std::string *why) {
  ctp_slice &s = r->s;
  s.has_position = get_nums(ds, DCM_ImagePositionPatient, s.position, 3);
  s.has_orientation =
      get_nums(ds, DCM_ImageOrientationPatient, s.orientation, 6);
  if (!s.has_position) {
    *why = "ImagePositionPatient " + tag_str(DCM_ImagePositionPatient) +
           " is missing: the slice cannot be placed";
    return false;
  }
  if (!s.has_orientation) {
    *why = "ImageOrientationPatient " + tag_str(DCM_ImageOrientationPatient) +
           " is missing: the slice cannot be placed";
    return false;
  }
  double *rd = s.orientation, *cd = s.orientation + 3;
  double lr = std::sqrt(dot3(rd, rd)), lc = std::sqrt(dot3(cd, cd));
  if (lr < 0.5 || lr > 1.5 || lc < 0.5 || lc > 1.5) {
    *why = "ImageOrientationPatient does not hold two unit vectors";
    return false;
  }
  for (int i = 0; i < 3; i++) {
    rd[i] /= lr;
    cd[i] /= lc;
  }
  if (std::fabs(dot3(rd, cd)) > 0.05) {
    *why = "ImageOrientationPatient row and column directions are not "
           "orthogonal";
    return false;
  }
  double *n = s.normal;
  n[0] = rd[1] * cd[2] - rd[2] * cd[1];
  n[1] = rd[2] * cd[0] - rd[0] * cd[2];
  n[2] = rd[0] * cd[1] - rd[1] * cd[0];
  double ln = std::sqrt(dot3(n, n));
  for (int i = 0; i < 3; i++) n[i] /= ln;
  s.location = dot3(s.position, n);
  return true;
}

/* Policy on the ImageType values: localizers, secondary captures and
 * reformats, and projections are not slices of the acquired volume. */
bool judge_image_type(SliceRec *r) {
  std::vector<std::string> v = split_values(upper(r->image_type));
  for (const std::string &t : v)
    if (t == "LOCALIZER") {
      r->skip(CTP_SKIP_LOCALIZER, "localizer (ImageType " + r->image_type + ")");
      return false;
    }
  if (v.size() >= 2 && v[1] == "SECONDARY") {
    r->skip(CTP_SKIP_SECONDARY,
            "secondary image, e.g. a reformat or capture (ImageType " +
                r->image_type + ")");
    return false;
  }
  for (const std::string &t : v)
    if (t == "MIP" || t == "MINIP" || t == "PROJECTION IMAGE") {
      r->skip(CTP_SKIP_PROJECTION,
              "projection image (ImageType " + r->image_type + ")");
      return false;
    }
  return true;
}

/* A TM value ("HHMMSS.FFFFFF", or the old "HH:MM:SS") in seconds. */
bool parse_tm(const std::string &tm, double *out) {
  std::string d;
  size_t i = 0;
  for (; i < tm.size() && tm[i] != '.'; i++)
    if (tm[i] >= '0' && tm[i] <= '9')
      d += tm[i];
    else if (tm[i] != ':')
      return false;
  if (d.size() < 2 || d.size() > 6 || d.size() % 2) return false;
  int hh = std::stoi(d.substr(0, 2));
  int mm = d.size() >= 4 ? std::stoi(d.substr(2, 2)) : 0;
  int ss = d.size() >= 6 ? std::stoi(d.substr(4, 2)) : 0;
  double frac = 0, scale = 0.1;
  for (i++; i < tm.size(); i++, scale /= 10) {
    if (tm[i] < '0' || tm[i] > '9') return false;
    frac += (tm[i] - '0') * scale;
  }
  if (hh > 23 || mm > 59 || ss > 60) return false;
  *out = hh * 3600.0 + mm * 60.0 + ss + frac;
  return true;
}

const char *plane_name(const double *n) {
  double ax = std::fabs(n[0]), ay = std::fabs(n[1]), az = std::fabs(n[2]);
  if (ax > 0.9) return "sagittal";
  if (ay > 0.9) return "coronal";
  if (az > 0.9) return "axial";
  return "oblique";
}

/* Copies the header into r and decides the file's outcome as far as one
 * file can tell (duplicates, sizes and orientation come later). */
void read_one(SliceRec *r) {
  std::string why;
  DcmFileFormat ff;
  int rc = open_file(r->path.c_str(), &ff, &why);
  if (rc) {
    r->error(rc, why);
    return;
  }
  DcmDataset *ds = ff.getDataset();
  DcmMetaInfo *meta = ff.getMetaInfo();

  r->sop_instance_uid = get_str(ds, DCM_SOPInstanceUID);
  r->sop_class_uid = get_str(ds, DCM_SOPClassUID);
  if (r->sop_class_uid.empty() && meta)
    r->sop_class_uid = get_str(meta, DCM_MediaStorageSOPClassUID);
  r->study_uid = get_str(ds, DCM_StudyInstanceUID);
  r->series_uid = get_str(ds, DCM_SeriesInstanceUID);
  r->for_uid = get_str(ds, DCM_FrameOfReferenceUID);
  r->ts_uid = DcmXfer(ds->getOriginalXfer()).getXferID();
  r->charset = get_str(ds, DCM_SpecificCharacterSet);
  r->modality = upper(get_str(ds, DCM_Modality));
  r->image_type = get_str(ds, DCM_ImageType);
  r->manufacturer = get_str(ds, DCM_Manufacturer);
  r->series_description = get_str(ds, DCM_SeriesDescription);
  r->study_description = get_str(ds, DCM_StudyDescription);
  r->study_date = get_str(ds, DCM_StudyDate);
  r->study_time = get_str(ds, DCM_StudyTime);
  r->acquisition_time = get_str(ds, DCM_AcquisitionTime);
  r->has_time = parse_tm(r->acquisition_time, &r->time_s);
  r->accession = get_str(ds, DCM_AccessionNumber);
  r->patient_id = get_str(ds, DCM_PatientID);
  r->patient_name = get_str(ds, DCM_PatientName);
  r->patient_birth_date = get_str(ds, DCM_PatientBirthDate);
  r->patient_sex = get_str(ds, DCM_PatientSex);
  r->photometric = upper(get_str(ds, DCM_PhotometricInterpretation));

  ctp_slice &s = r->s;
  s.series_number = get_int(ds, DCM_SeriesNumber, -1);
  s.acquisition_number = get_int(ds, DCM_AcquisitionNumber, -1);
  s.instance_number = get_int(ds, DCM_InstanceNumber, -1);
  s.number_of_frames = get_int(ds, DCM_NumberOfFrames, 1);
  s.rows = get_int(ds, DCM_Rows, 0);
  s.columns = get_int(ds, DCM_Columns, 0);
  s.samples_per_pixel = get_int(ds, DCM_SamplesPerPixel, 1);
  s.bits_allocated = get_int(ds, DCM_BitsAllocated, 0);
  s.bits_stored = get_int(ds, DCM_BitsStored, s.bits_allocated);
  s.high_bit = get_int(ds, DCM_HighBit, s.bits_stored - 1);
  s.pixel_representation = get_int(ds, DCM_PixelRepresentation, 0);
  if (get_nums(ds, DCM_PixelSpacing, s.pixel_spacing, 2) &&
      s.pixel_spacing[0] > 0 && s.pixel_spacing[1] > 0) {
    s.spacing_source = 1;
  } else if (get_nums(ds, DCM_ImagerPixelSpacing, s.pixel_spacing, 2) &&
             s.pixel_spacing[0] > 0 && s.pixel_spacing[1] > 0) {
    s.spacing_source = 2;
  } else {
    s.pixel_spacing[0] = s.pixel_spacing[1] = 0;
    s.spacing_source = 0;
  }
  if (!get_num(ds, DCM_SliceThickness, &s.slice_thickness) ||
      s.slice_thickness < 0)
    s.slice_thickness = 0;
  if (!get_num(ds, DCM_GantryDetectorTilt, &s.gantry_tilt)) s.gantry_tilt = 0;
  if (!get_num(ds, DCM_RescaleSlope, &s.rescale_slope)) s.rescale_slope = 1;
  if (!get_num(ds, DCM_RescaleIntercept, &s.rescale_intercept))
    s.rescale_intercept = 0;
  s.has_window = get_num(ds, DCM_WindowCenter, &s.window_center) &&
                 get_num(ds, DCM_WindowWidth, &s.window_width);
  if (!s.has_window) s.window_center = s.window_width = 0;
  double pad;
  if (get_num(ds, DCM_PixelPaddingValue, &pad)) {
    s.has_padding = 1;
    s.padding_hu = pad * s.rescale_slope + s.rescale_intercept;
  }
  if (!get_num(ds, DCM_KVP, &s.kvp)) s.kvp = 0;
  bool geometry_ok = read_geometry(ds, r, &why);

  /* From here on, the outcome: first what makes it not ours to use. */
  if (r->modality != "CT") {
    r->skip(CTP_SKIP_NOT_CT,
            r->modality.empty() ? std::string("Modality is missing, not CT")
                                : "Modality is " + r->modality + ", not CT");
    return;
  }
  if (r->sop_class_uid == UID_EnhancedCTImageStorage ||
      r->sop_class_uid == UID_LegacyConvertedEnhancedCTImageStorage) {
    r->skip(CTP_SKIP_MULTIFRAME,
            strf("multi-frame %s (%d frames) is not supported",
                 dcmFindNameOfUID(r->sop_class_uid.c_str(), "Enhanced CT"),
                 s.number_of_frames));
    return;
  }
  if (r->sop_class_uid != UID_CTImageStorage) {
    const char *name = dcmFindNameOfUID(r->sop_class_uid.c_str(), NULL);
    r->skip(CTP_SKIP_NOT_CT,
            r->sop_class_uid.empty()
                ? std::string("SOP Class UID is missing")
                : strf("SOP class %s%s%s%s is not CT Image Storage",
                       r->sop_class_uid.c_str(), name ? " (" : "",
                       name ? name : "", name ? ")" : ""));
    return;
  }
  if (s.number_of_frames > 1) {
    r->skip(CTP_SKIP_MULTIFRAME,
            strf("multi-frame CT image (%d frames) is not supported",
                 s.number_of_frames));
    return;
  }
  if (!judge_image_type(r)) return;

  /* A CT slice we would use: it must be complete enough to use. */
  if (r->sop_instance_uid.empty() || r->series_uid.empty()) {
    r->error(CTP_EFORMAT, r->sop_instance_uid.empty()
                              ? "SOP Instance UID is missing"
                              : "Series Instance UID is missing");
    return;
  }
  PixelDesc pd;
  rc = read_pixel_desc(ds, &pd, &why);
  if (rc) {
    r->error(rc, why);
    return;
  }
  if (!geometry_ok) {
    r->error(CTP_EFORMAT, why);
    return;
  }
  double z[3] = {0, 0, 1};
  double off = deg_between(s.normal, z);
  if (off > 90) off = 180 - off;
  if (off > CTP_DICOM_MAX_OBLIQUE_DEG) {
    r->skip(CTP_SKIP_NON_AXIAL,
            strf("not axial: the slice normal is %.1f deg from the patient z "
                 "axis (%s); the limit is %.0f deg",
                 off, plane_name(s.normal), CTP_DICOM_MAX_OBLIQUE_DEG));
    return;
  }
  if (std::fabs(s.gantry_tilt) > CTP_DICOM_MAX_TILT_DEG) {
    r->skip(CTP_SKIP_TILT, strf("gantry tilt %.1f deg exceeds %.0f deg",
                                s.gantry_tilt, CTP_DICOM_MAX_TILT_DEG));
    return;
  }
  s.status = CTP_SLICE_USED; /* for now: grouping may still skip it */
  s.skip = CTP_SKIP_NONE;
  s.err = 0;
}

/* The second file with a SOP Instance UID already read is skipped. */
void skip_duplicates(ctp_scan *scan) {
  std::map<std::string, SliceRec *> seen;
  for (auto &f : scan->files) {
    SliceRec *r = f.get();
    if (r->s.status == CTP_SLICE_ERROR || r->sop_instance_uid.empty())
      continue;
    auto it = seen.find(r->sop_instance_uid);
    if (it == seen.end()) {
      seen[r->sop_instance_uid] = r;
    } else {
      r->skip(CTP_SKIP_DUPLICATE,
              "duplicate SOP Instance UID " + r->sop_instance_uid +
                  " (already read from an earlier file)");
    }
  }
}

/* ------------------------------------------------------------------ */
/* Pass 3: grouping                                                     */
/* ------------------------------------------------------------------ */

/* Part of a series on its way to becoming an acquisition. */
struct Part {
  int number;
  int rows, columns;
  double normal[3];
  std::vector<SliceRec *> slices; /* sorted by location */
  double lo() const { return slices.front()->s.location; }
  double hi() const { return slices.back()->s.location; }
  double step() const { /* median step, 0 for one slice */
    std::vector<double> d;
    for (size_t i = 1; i < slices.size(); i++)
      d.push_back(slices[i]->s.location - slices[i - 1]->s.location);
    return median(d);
  }
  /* Range of AcquisitionTime; false if no slice has one. */
  bool times(double *t0, double *t1) const {
    bool any = false;
    for (const SliceRec *r : slices) {
      if (!r->has_time) continue;
      if (!any || r->time_s < *t0) *t0 = r->time_s;
      if (!any || r->time_s > *t1) *t1 = r->time_s;
      any = true;
    }
    return any;
  }
};

bool by_location(const SliceRec *a, const SliceRec *b) {
  if (a->s.location != b->s.location) return a->s.location < b->s.location;
  return a->path < b->path;
}

bool by_instance(const SliceRec *a, const SliceRec *b) {
  if (a->s.instance_number != b->s.instance_number)
    return a->s.instance_number < b->s.instance_number;
  return a->path < b->path;
}

/* Keeps the most common image size; skips the rest. */
void keep_majority_size(std::vector<SliceRec *> *g) {
  std::map<std::pair<int, int>, int> count;
  std::pair<int, int> best(0, 0);
  int best_n = 0;
  for (SliceRec *r : *g) {
    int n = ++count[{r->s.rows, r->s.columns}];
    if (n > best_n) {
      best_n = n;
      best = {r->s.rows, r->s.columns};
    }
  }
  std::vector<SliceRec *> keep;
  for (SliceRec *r : *g) {
    if (r->s.rows == best.first && r->s.columns == best.second) {
      keep.push_back(r);
    } else {
      r->skip(CTP_SKIP_SIZE,
              strf("image size %dx%d differs from its acquisition's %dx%d",
                   r->s.columns, r->s.rows, best.second, best.first));
    }
  }
  g->swap(keep);
}

/* Keeps the slices whose normal agrees with most others; skips the rest.
 * Returns the agreed normal in n. */
void keep_majority_orientation(std::vector<SliceRec *> *g, double n[3]) {
  const double cos_tol = std::cos(CTP_DICOM_MAX_NORMAL_DIFF_DEG * kPi / 180);
  size_t best = 0;
  int best_n = -1;
  for (size_t i = 0; i < g->size(); i++) {
    int c = 0;
    for (size_t j = 0; j < g->size(); j++)
      if (dot3((*g)[i]->s.normal, (*g)[j]->s.normal) >= cos_tol) c++;
    if (c > best_n) {
      best_n = c;
      best = i;
    }
  }
  memcpy(n, (*g)[best]->s.normal, sizeof(double) * 3);
  std::vector<SliceRec *> keep;
  for (SliceRec *r : *g) {
    if (dot3(r->s.normal, n) >= cos_tol) {
      r->s.location = dot3(r->s.position, n);
      keep.push_back(r);
    } else {
      r->skip(CTP_SKIP_ORIENTATION,
              strf("orientation differs by %.1f deg from the rest of its "
                   "acquisition",
                   deg_between(r->s.normal, n)));
    }
  }
  g->swap(keep);
}

/* Cuts a group whose positions repeat into runs: in InstanceNumber order,
 * a run ends where a position repeats inside it, where the direction
 * reverses, or where a step is more than four times the usual step. */
std::vector<std::vector<SliceRec *>> cut_runs(std::vector<SliceRec *> g) {
  const double tol = CTP_DICOM_SAME_POSITION_MM;
  std::sort(g.begin(), g.end(), by_instance);
  std::vector<double> steps;
  for (size_t i = 1; i < g.size(); i++) {
    double d = std::fabs(g[i]->s.location - g[i - 1]->s.location);
    if (d >= tol) steps.push_back(d);
  }
  double usual = median(steps);
  std::vector<std::vector<SliceRec *>> runs;
  std::vector<SliceRec *> cur;
  int dir = 0;
  for (SliceRec *r : g) {
    bool cut = false;
    if (!cur.empty()) {
      double d = r->s.location - cur.back()->s.location;
      for (SliceRec *q : cur)
        if (std::fabs(q->s.location - r->s.location) < tol) cut = true;
      if (dir != 0 && std::fabs(d) >= tol && (d > 0 ? 1 : -1) != dir)
        cut = true;
      if (usual > 0 && std::fabs(d) > 4 * usual) cut = true;
      if (!cut && dir == 0 && std::fabs(d) >= tol) dir = d > 0 ? 1 : -1;
    }
    if (cut) {
      runs.push_back(cur);
      cur.clear();
      dir = 0;
    }
    cur.push_back(r);
  }
  if (!cur.empty()) runs.push_back(cur);
  return runs;
}

bool has_repeats(const std::vector<SliceRec *> &sorted) {
  for (size_t i = 1; i < sorted.size(); i++)
    if (sorted[i]->s.location - sorted[i - 1]->s.location <
        CTP_DICOM_SAME_POSITION_MM)
      return true;
  return false;
}

/* Can part b (starting above a) continue a as one sweep? Same size and
 * normal, no overlap, the gap between them no wider than 1.5 usual steps
 * (steps of the two parts agreeing within 10%), and, when both carry
 * AcquisitionTime, acquired within CTP_DICOM_MAX_JOIN_GAP_S of each other:
 * two contrast phases are further apart than that. */
bool joins(const Part &a, const Part &b) {
  const double cos_tol = std::cos(CTP_DICOM_MAX_NORMAL_DIFF_DEG * kPi / 180);
  if (a.rows != b.rows || a.columns != b.columns) return false;
  if (dot3(a.normal, b.normal) < cos_tol) return false;
  double a0 = 0, a1 = 0, b0 = 0, b1 = 0;
  if (a.times(&a0, &a1) && b.times(&b0, &b1) &&
      std::max(b0 - a1, a0 - b1) > CTP_DICOM_MAX_JOIN_GAP_S)
    return false;
  double gap = b.lo() - a.hi();
  if (gap < CTP_DICOM_SAME_POSITION_MM) return false;
  double sa = a.step(), sb = b.step();
  if (sa > 0 && sb > 0 && std::fabs(sa - sb) > 0.1 * std::max(sa, sb))
    return false;
  double usual = sa > 0 ? sa : sb > 0 ? sb : gap;
  return gap <= 1.5 * usual;
}

/* Joins parts that continue each other (see joins()), taken in order of
 * their lowest location; each part goes to the open sweep that ends
 * highest below it. */
std::vector<Part> join_parts(std::vector<Part> parts) {
  std::sort(parts.begin(), parts.end(), [](const Part &a, const Part &b) {
    return a.lo() < b.lo();
  });
  std::vector<Part> out;
  for (Part &p : parts) {
    Part *into = NULL;
    for (Part &q : out)
      if (joins(q, p) && (!into || q.hi() > into->hi())) into = &q;
    if (into) {
      into->slices.insert(into->slices.end(), p.slices.begin(),
                          p.slices.end());
      into->number = std::min(into->number, p.number);
    } else {
      out.push_back(p);
    }
  }
  return out;
}

int first_instance(const ctp_acquisition &a) {
  int m = INT32_MAX;
  for (const SliceRec *r : a.slices)
    if (r->s.instance_number >= 0) m = std::min(m, r->s.instance_number);
  return m;
}

/* Splits one series' candidate slices into acquisitions. */
void split_series(ctp_series *se) {
  std::map<int, std::vector<SliceRec *>> by_number;
  for (SliceRec *r : se->members)
    if (r->used()) by_number[r->s.acquisition_number].push_back(r);

  std::vector<Part> parts;
  for (auto &kv : by_number) {
    std::vector<SliceRec *> g = kv.second;
    keep_majority_size(&g);
    double n[3];
    keep_majority_orientation(&g, n);
    if (g.empty()) continue;
    std::sort(g.begin(), g.end(), by_location);
    std::vector<std::vector<SliceRec *>> runs;
    if (has_repeats(g))
      runs = cut_runs(g);
    else
      runs.push_back(g);
    for (auto &run : runs) {
      Part p;
      p.number = kv.first;
      p.rows = run[0]->s.rows;
      p.columns = run[0]->s.columns;
      memcpy(p.normal, n, sizeof p.normal);
      p.slices = run;
      std::sort(p.slices.begin(), p.slices.end(), by_location);
      parts.push_back(p);
    }
  }
  parts = join_parts(parts);

  for (Part &p : parts) {
    std::unique_ptr<ctp_acquisition> a(new ctp_acquisition);
    a->number = p.number;
    a->rows = p.rows;
    a->columns = p.columns;
    memcpy(a->normal, p.normal, sizeof a->normal);
    std::sort(p.slices.begin(), p.slices.end(), by_location);
    a->slices = p.slices;
    a->spacing = p.step();
    se->acqs.push_back(std::move(a));
  }
  std::sort(se->acqs.begin(), se->acqs.end(),
            [](const std::unique_ptr<ctp_acquisition> &a,
               const std::unique_ptr<ctp_acquisition> &b) {
              if (a->number != b->number) return a->number < b->number;
              return first_instance(*a) < first_instance(*b);
            });
  for (size_t i = 0; i < se->acqs.size(); i++) se->acqs[i]->index = (int)i;
}

void group(ctp_scan *scan) {
  std::map<std::string, ctp_series *> by_uid;
  for (auto &f : scan->files) {
    SliceRec *r = f.get();
    if (r->series_uid.empty()) continue;
    ctp_series *&se = by_uid[r->series_uid];
    if (!se) {
      scan->series.emplace_back(new ctp_series);
      se = scan->series.back().get();
      se->uid = r->series_uid;
      se->study_uid = r->study_uid;
      se->series_number = r->s.series_number;
    }
    se->members.push_back(r);
  }
  std::sort(scan->series.begin(), scan->series.end(),
            [](const std::unique_ptr<ctp_series> &a,
               const std::unique_ptr<ctp_series> &b) {
              if (a->study_uid != b->study_uid)
                return a->study_uid < b->study_uid;
              if (a->series_number != b->series_number)
                return a->series_number < b->series_number;
              return a->uid < b->uid;
            });
  for (auto &se : scan->series) {
    split_series(se.get());
    for (SliceRec *r : se->members) {
      if (!r->used()) se->skipped.push_back(r);
      if (!se->ref && r->s.status != CTP_SLICE_ERROR) se->ref = r;
    }
    if (!se->acqs.empty() && !se->acqs[0]->slices.empty())
      se->ref = se->acqs[0]->slices[0];
    if (!se->ref) se->ref = se->members[0];
  }
}

int scan_paths(const char *const *paths, int npaths, ctp_scan **out) {
  std::vector<Found> found;
  for (int i = 0; i < npaths; i++) {
    if (!paths[i] || !paths[i][0])
      return ctp_seterr(CTP_EINVAL, "path %d is empty", i);
    int rc = collect(paths[i], true, 0, &found);
    if (rc) return rc;
  }
  std::sort(found.begin(), found.end(),
            [](const Found &a, const Found &b) { return a.path < b.path; });
  found.erase(std::unique(found.begin(), found.end(),
                          [](const Found &a, const Found &b) {
                            return a.path == b.path;
                          }),
              found.end());

  std::unique_ptr<ctp_scan> scan(new ctp_scan);
  for (const Found &f : found) {
    std::unique_ptr<SliceRec> r(new SliceRec);
    r->path = f.path;
    if (!f.error.empty())
      r->error(CTP_EIO, f.error);
    else
      read_one(r.get());
    scan->files.push_back(std::move(r));
  }
  skip_duplicates(scan.get());
  group(scan.get());
  for (auto &f : scan->files) f->publish();
  *out = scan.release();
  return 0;
}

/* ------------------------------------------------------------------ */
/* Decoding                                                             */
/* ------------------------------------------------------------------ */

/* Stored values to HU: shift the stored bits down to bit 0 (native data
 * may have HighBit above BitsStored-1), drop whatever sits above
 * BitsStored, sign-extend two's complement, rescale. The sign extension
 * shifts the value to the top of 32 bits and back (arithmetic shift), so
 * the loops have no branch and vectorise; the rescale is done in float
 * (stored values up to 16 bits are exact in float; the product is within
 * 1e-7 relative of the double one). The common full-width 16-bit case has
 * its own loop. */
template <typename T>
void stored_to_hu(const T *src, size_t n, int shift, int bs, int pr,
                  double slope, double intercept, float *out) {
  const float a = (float)slope, b = (float)intercept;
  if (sizeof(T) == 2 && shift == 0 && bs == 16) {
    if (pr)
      for (size_t i = 0; i < n; i++) out[i] = (float)(int16_t)src[i] * a + b;
    else
      for (size_t i = 0; i < n; i++) out[i] = (float)(uint16_t)src[i] * a + b;
    return;
  }
  const uint32_t mask = (1u << bs) - 1u; /* bs is 1..16 */
  const int up = 32 - bs;
  if (pr) {
    for (size_t i = 0; i < n; i++) {
      uint32_t v = ((uint32_t)src[i] >> shift) & mask;
      out[i] = (float)((int32_t)(v << up) >> up) * a + b;
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      uint32_t v = ((uint32_t)src[i] >> shift) & mask;
      out[i] = (float)v * a + b;
    }
  }
}

/* The compressed bytes of frame 0 of a single-frame encapsulated image:
 * all fragments after the offset table, concatenated. */
int first_frame_bytes(DcmDataset *ds, std::vector<unsigned char> *bytes,
                      std::string *why) {
  DcmElement *e = NULL;
  if (ds->findAndGetElement(DCM_PixelData, e).bad() || !e) {
    *why = "PixelData is missing";
    return CTP_EFORMAT;
  }
  DcmPixelData *pix = OFdynamic_cast(DcmPixelData *, e);
  if (!pix) {
    *why = "PixelData is not a pixel data element";
    return CTP_EFORMAT;
  }
  E_TransferSyntax xfer;
  const DcmRepresentationParameter *param = NULL;
  pix->getOriginalRepresentationKey(xfer, param);
  DcmPixelSequence *seq = NULL;
  if (pix->getEncapsulatedRepresentation(xfer, param, seq).bad() || !seq) {
    *why = "encapsulated PixelData has no pixel sequence";
    return CTP_EFORMAT;
  }
  unsigned long nitems = seq->card();
  if (nitems < 2) {
    *why = "encapsulated PixelData holds no fragment";
    return CTP_EFORMAT;
  }
  for (unsigned long i = 1; i < nitems; i++) {
    DcmPixelItem *item = NULL;
    Uint8 *data = NULL;
    if (seq->getItem(item, i).bad() || !item) {
      *why = strf("PixelData fragment %lu is unreadable", i);
      return CTP_EFORMAT;
    }
    Uint32 len = item->getLength();
    if (len == 0) continue;
    if (item->getUint8Array(data).bad() || !data) {
      *why = strf("PixelData fragment %lu is unreadable (truncated file?)", i);
      return CTP_EFORMAT;
    }
    bytes->insert(bytes->end(), data, data + len);
  }
  return 0;
}

int decode_j2k(DcmDataset *ds, const PixelDesc &pd, float *out,
               std::string *why) {
  std::vector<unsigned char> bytes;
  int rc = first_frame_bytes(ds, &bytes, why);
  if (rc) return rc;
  size_t n = (size_t)pd.rows * (size_t)pd.columns;
  std::vector<int32_t> px(n);
  int prec = 0, sgnd = 0;
  rc = ctp__j2k_decode(bytes.data(), bytes.size(), pd.rows, pd.columns,
                       px.data(), &prec, &sgnd);
  if (rc) {
    *why = ctp_last_error();
    return rc;
  }
  /* The codestream's own signedness may disagree with PixelRepresentation
   * (some encoders store signed CT as unsigned J2K); masking to BitsStored
   * and sign-extending per the header gives the same value either way. */
  stored_to_hu(px.data(), n, 0, pd.bs, pd.pr, pd.slope, pd.intercept, out);
  return 0;
}

int decode_dcmtk(DcmDataset *ds, const PixelDesc &pd, float *out,
                 std::string *why) {
  DcmElement *e = NULL;
  if (ds->findAndGetElement(DCM_PixelData, e).bad() || !e) {
    *why = "PixelData is missing";
    return CTP_EFORMAT;
  }
  size_t n = (size_t)pd.rows * (size_t)pd.columns;
  size_t bytes = n * (size_t)(pd.ba / 8);
  std::vector<Uint16> buf((bytes + 1) / 2); /* even size, 2-byte aligned */
  Uint32 start = 0;
  OFString color;
  OFCondition c = e->getUncompressedFrame(ds, 0, start, buf.data(),
                                          (Uint32)(buf.size() * 2), color);
  if (c.bad()) {
    *why = strf("pixel data could not be decoded: %s", c.text());
    return CTP_EFORMAT;
  }
  std::string cm = upper(trim(std::string(color.c_str(), color.length())));
  if (!cm.empty() && cm != "MONOCHROME1" && cm != "MONOCHROME2") {
    *why = "decoded pixels are " + cm + ", not grayscale";
    return CTP_ENOTSUP;
  }
  /* Native data may keep the stored bits above bit 0 (HighBit); the
   * decoders always deliver them from bit 0. */
  int shift = DcmXfer(pd.xfer).isNotEncapsulated() ? pd.hb + 1 - pd.bs : 0;
  if (pd.ba == 16)
    stored_to_hu(buf.data(), n, shift, pd.bs, pd.pr, pd.slope, pd.intercept,
                 out);
  else
    stored_to_hu(reinterpret_cast<const unsigned char *>(buf.data()), n,
                 shift, pd.bs, pd.pr, pd.slope, pd.intercept, out);
  return 0;
}

int load_hu(const ctp_slice *s, float *out) {
  std::string why;
  DcmFileFormat ff;
  int rc = open_file(s->path, &ff, &why);
  if (rc) return ctp_seterr(rc, "%s: %s", s->path, why.c_str());
  DcmDataset *ds = ff.getDataset();
  if (get_str(ds, DCM_SOPInstanceUID) != s->sop_instance_uid)
    return ctp_seterr(CTP_ESTATE,
                      "%s: the file has changed since it was scanned "
                      "(SOP Instance UID differs)",
                      s->path);
  PixelDesc pd;
  rc = read_pixel_desc(ds, &pd, &why);
  if (rc) return ctp_seterr(rc, "%s: %s", s->path, why.c_str());
  if (pd.rows != s->rows || pd.columns != s->columns)
    return ctp_seterr(CTP_ESTATE,
                      "%s: the file has changed since it was scanned "
                      "(image size differs)",
                      s->path);
  if (pd.frames > 1)
    return ctp_seterr(CTP_ENOTSUP, "%s: multi-frame images are not supported",
                      s->path);
  rc = is_j2k(pd.xfer) ? decode_j2k(ds, pd, out, &why)
                       : decode_dcmtk(ds, pd, out, &why);
  if (rc) return ctp_seterr(rc, "%s: %s", s->path, why.c_str());
  return 0;
}

}  // namespace

/* ------------------------------------------------------------------ */
/* The C API                                                            */
/* ------------------------------------------------------------------ */

extern "C" {

const char *ctp_skip_str(int skip) {
  switch (skip) {
#define XX(name, msg) \
  case CTP_SKIP_##name: return msg;
    CTP_SKIP_MAP(XX)
#undef XX
  }
  return "unknown";
}

int ctp_dicom_init(void) {
  try {
    return ensure_init();
  } catch (...) {
    return ctp_seterr(CTP_EDICOM, "DCMTK initialisation failed");
  }
}

int ctp_dicom_scan(const char *const *paths, int npaths, ctp_scan **out) {
  if (!out) return ctp_seterr(CTP_EINVAL, "ctp_dicom_scan: out is NULL");
  *out = NULL;
  if (!paths || npaths <= 0)
    return ctp_seterr(CTP_EINVAL, "ctp_dicom_scan: no paths given");
  try {
    int rc = ensure_init();
    if (rc) return rc;
    return scan_paths(paths, npaths, out);
  } catch (const std::bad_alloc &) {
    return ctp_seterr(CTP_ENOMEM, "out of memory while scanning DICOM files");
  } catch (const std::exception &e) {
    return ctp_seterr(CTP_EDICOM, "DICOM scan failed: %s", e.what());
  } catch (...) {
    return ctp_seterr(CTP_EDICOM, "DICOM scan failed");
  }
}

void ctp_scan_free(ctp_scan *scan) { delete scan; }

int ctp_scan_num_files(const ctp_scan *scan) {
  return scan ? (int)scan->files.size() : 0;
}

const ctp_slice *ctp_scan_file(const ctp_scan *scan, int i) {
  if (!scan || i < 0 || (size_t)i >= scan->files.size()) return NULL;
  return &scan->files[(size_t)i]->s;
}

int ctp_scan_num_series(const ctp_scan *scan) {
  return scan ? (int)scan->series.size() : 0;
}

const ctp_series *ctp_scan_series(const ctp_scan *scan, int i) {
  if (!scan || i < 0 || (size_t)i >= scan->series.size()) return NULL;
  return scan->series[(size_t)i].get();
}

const char *ctp_series_uid(const ctp_series *se) {
  return se ? se->uid.c_str() : "";
}

const ctp_slice *ctp_series_ref(const ctp_series *se) {
  return se && se->ref ? &se->ref->s : NULL;
}

int ctp_series_num_acquisitions(const ctp_series *se) {
  return se ? (int)se->acqs.size() : 0;
}

const ctp_acquisition *ctp_series_acquisition(const ctp_series *se, int i) {
  if (!se || i < 0 || (size_t)i >= se->acqs.size()) return NULL;
  return se->acqs[(size_t)i].get();
}

int ctp_series_num_skipped(const ctp_series *se) {
  return se ? (int)se->skipped.size() : 0;
}

const ctp_slice *ctp_series_skipped(const ctp_series *se, int i) {
  if (!se || i < 0 || (size_t)i >= se->skipped.size()) return NULL;
  return &se->skipped[(size_t)i]->s;
}

int ctp_acquisition_num_slices(const ctp_acquisition *a) {
  return a ? (int)a->slices.size() : 0;
}

const ctp_slice *ctp_acquisition_slice(const ctp_acquisition *a, int i) {
  if (!a || i < 0 || (size_t)i >= a->slices.size()) return NULL;
  return &a->slices[(size_t)i]->s;
}

int ctp_acquisition_number(const ctp_acquisition *a) {
  return a ? a->number : -1;
}

int ctp_acquisition_index(const ctp_acquisition *a) {
  return a ? a->index : -1;
}

int ctp_acquisition_rows(const ctp_acquisition *a) { return a ? a->rows : 0; }

int ctp_acquisition_columns(const ctp_acquisition *a) {
  return a ? a->columns : 0;
}

void ctp_acquisition_normal(const ctp_acquisition *a, double out[3]) {
  if (!out) return;
  for (int i = 0; i < 3; i++) out[i] = a ? a->normal[i] : (i == 2);
}

double ctp_acquisition_spacing(const ctp_acquisition *a) {
  return a ? a->spacing : 0;
}

int ctp_slice_load_hu(const ctp_slice *slice, float *out) {
  if (!slice || !out || !slice->path)
    return ctp_seterr(CTP_EINVAL, "ctp_slice_load_hu: NULL argument");
  if (slice->status == CTP_SLICE_ERROR)
    return ctp_seterr(slice->err ? slice->err : CTP_EFORMAT, "%s: %s",
                      slice->path, slice->reason ? slice->reason : "");
  try {
    int rc = ensure_init();
    if (rc) return rc;
    return load_hu(slice, out);
  } catch (const std::bad_alloc &) {
    return ctp_seterr(CTP_ENOMEM, "%s: out of memory while decoding",
                      slice->path);
  } catch (...) {
    return ctp_seterr(CTP_EDICOM, "%s: decoding failed", slice->path);
  }
}

}  // extern "C"
