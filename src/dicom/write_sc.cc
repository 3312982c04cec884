/*
 * write_sc.cc — one overlay picture as an RGB Secondary Capture Image
 * (1.2.840.10008.5.1.4.1.1.7), the SC half of ctp_report_write.
 *
 * Modules: Patient, Clinical Trial Subject, General Study and Patient
 * Study (copied from the source slice's file, SpecificCharacterSet
 * included), General Series (Modality OT: the picture was made by a
 * workstation, not by the CT), General Equipment, SC Equipment
 * (ConversionType WSD), General Image (DERIVED\SECONDARY, the source slice
 * in Source Image Sequence, BurnedInAnnotation YES), Image Pixel (RGB,
 * PlanarConfiguration 0, 8 bits), SC Image (date and time of capture,
 * PixelSpacing of the source grid when known) and SOP Common. Position and
 * orientation are not part of this IOD; PatientOrientation says which way
 * the rows and columns run instead.
 *
 * Stateless besides the toolkit check: threads may write different files
 * at once. Every exception stops at the extern "C" function.
 */
#include "dicom/report_int.h"

#include "ctphase/error.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>

#include <stdio.h>
#include <string.h>

#include <cmath>
#include <new>
#include <string>

using ctp_report::check;
using ctp_report::dicom_error;
using ctp_report::str;

namespace {

void put(DcmItem &ds, const DcmTagKey &tag, const std::string &v) {
  OFCondition c = ds.putAndInsertString(tag, v.c_str());
  check(c.good(), c.text(), DcmTag(tag).getTagName());
}

void put_us(DcmItem &ds, const DcmTagKey &tag, unsigned v) {
  OFCondition c = ds.putAndInsertUint16(tag, (Uint16)v);
  check(c.good(), c.text(), DcmTag(tag).getTagName());
}

/* An item of a code sequence. */
void put_code(DcmItem &parent, const DcmTagKey &seq, const char *value,
              const char *scheme, const char *meaning) {
  DcmItem *it = NULL;
  OFCondition c = parent.findOrCreateSequenceItem(seq, it, -2);
  check(c.good() && it, c.text(), DcmTag(seq).getTagName());
  put(*it, DCM_CodeValue, value);
  put(*it, DCM_CodingSchemeDesignator, scheme);
  put(*it, DCM_CodeMeaning, meaning);
}

void build(DcmDataset &ds, DcmDataset &src, const ctp__sc_desc *d) {
  ctp_report::copy_patient_study(src, ds);
  std::string date = str(d->content_date), time = str(d->content_time);

  /* SOP Common. */
  put(ds, DCM_SOPClassUID, CTP_REPORT_SC_CLASS);
  put(ds, DCM_SOPInstanceUID, d->sop_uid);
  put(ds, DCM_InstanceCreationDate, date);
  put(ds, DCM_InstanceCreationTime, time);
  put(ds, DCM_StudyInstanceUID, d->study_uid);

  /* General Series. */
  put(ds, DCM_Modality, "OT");
  put(ds, DCM_SeriesInstanceUID, d->series_uid);
  put(ds, DCM_SeriesNumber, std::to_string(d->series_number));
  put(ds, DCM_SeriesDate, date);
  put(ds, DCM_SeriesTime, time);
  put(ds, DCM_SeriesDescription, str(d->series_description));
  /* The source's body part; without one, Laterality (2C) is sent empty. */
  OFString body;
  if (src.findAndGetOFString(DCM_BodyPartExamined, body).good() && !body.empty())
    put(ds, DCM_BodyPartExamined, body.c_str());
  else
    put(ds, DCM_Laterality, "");

  /* General Equipment and SC Equipment. */
  put(ds, DCM_Manufacturer, "ctphase");
  put(ds, DCM_ManufacturerModelName, "ctphase");
  put(ds, DCM_SoftwareVersions, CTPHASE_VERSION);
  put(ds, DCM_ConversionType, "WSD");
  put(ds, DCM_SecondaryCaptureDeviceManufacturer, "ctphase");
  put(ds, DCM_SecondaryCaptureDeviceManufacturerModelName, "ctphase");
  put(ds, DCM_SecondaryCaptureDeviceSoftwareVersions, CTPHASE_VERSION);

  /* General Image. */
  put(ds, DCM_InstanceNumber, std::to_string(d->instance_number));
  put(ds, DCM_PatientOrientation, str(d->patient_orientation));
  put(ds, DCM_ContentDate, date);
  put(ds, DCM_ContentTime, time);
  put(ds, DCM_ImageType, "DERIVED\\SECONDARY");
  put(ds, DCM_DerivationDescription, str(d->derivation_description));
  DcmItem *src_item = NULL;
  OFCondition c = ds.findOrCreateSequenceItem(DCM_SourceImageSequence, src_item, -2);
  check(c.good() && src_item, c.text(), "SourceImageSequence");
  put(*src_item, DCM_ReferencedSOPClassUID, d->src_sop_class_uid);
  put(*src_item, DCM_ReferencedSOPInstanceUID, d->src_sop_instance_uid);
  put_code(*src_item, DCM_PurposeOfReferenceCodeSequence, "121322", "DCM",
           "Source image for image processing operation");
  put(ds, DCM_BurnedInAnnotation, "YES");
  put(ds, DCM_RecognizableVisualFeatures, "NO");
  put(ds, DCM_LossyImageCompression, "00");

  /* SC Image. */
  put(ds, DCM_DateOfSecondaryCapture, date);
  put(ds, DCM_TimeOfSecondaryCapture, time);
  if (d->pixel_spacing[0] > 0 && d->pixel_spacing[1] > 0)
    put(ds, DCM_PixelSpacing, ctp_report::ds(d->pixel_spacing[0]) + "\\" +
                                  ctp_report::ds(d->pixel_spacing[1]));

  /* Image Pixel. */
  put_us(ds, DCM_SamplesPerPixel, 3);
  put(ds, DCM_PhotometricInterpretation, "RGB");
  put_us(ds, DCM_PlanarConfiguration, 0);
  put_us(ds, DCM_Rows, (unsigned)d->rows);
  put_us(ds, DCM_Columns, (unsigned)d->columns);
  put_us(ds, DCM_BitsAllocated, 8);
  put_us(ds, DCM_BitsStored, 8);
  put_us(ds, DCM_HighBit, 7);
  put_us(ds, DCM_PixelRepresentation, 0);
  unsigned long n = (unsigned long)d->rows * (unsigned long)d->columns * 3ul;
  c = ds.putAndInsertUint8Array(DCM_PixelData, d->rgb, n);
  check(c.good(), c.text(), "PixelData");
}

int write_sc(const ctp__sc_desc *d) {
  ctp_report::init_toolkit();
  DcmFileFormat src;
  ctp_report::load_source(d->source_path, src);
  DcmFileFormat ff;
  build(*ff.getDataset(), *src.getDataset(), d);
  return ctp_report::save_atomic(ff, d->path);
}

bool uid_ok(const char *u) {
  if (!u || !*u || strlen(u) > 64) return false;
  for (const char *p = u; *p; p++)
    if (!(*p == '.' || (*p >= '0' && *p <= '9'))) return false;
  return true;
}

}  // namespace

extern "C" int ctp__report_write_sc(const ctp__sc_desc *d) {
  if (!d || !d->path || !d->source_path || !d->rgb)
    return ctp_seterr(CTP_EINVAL, "write SC: missing argument");
  if (!uid_ok(d->sop_uid) || !uid_ok(d->series_uid) || !uid_ok(d->study_uid) ||
      !uid_ok(d->src_sop_class_uid) || !uid_ok(d->src_sop_instance_uid))
    return ctp_seterr(CTP_EINVAL, "write SC %s: a UID is missing or invalid",
                      d->path);
  if (d->rows < 1 || d->columns < 1 || d->rows > 65535 || d->columns > 65535)
    return ctp_seterr(CTP_EINVAL, "write SC %s: bad size %dx%d", d->path,
                      d->columns, d->rows);
  try {
    return write_sc(d);
  } catch (const std::bad_alloc &) {
    return ctp_seterr(CTP_ENOMEM, "out of memory while writing %s", d->path);
  } catch (const dicom_error &e) {
    return ctp_seterr(CTP_EDICOM, "write SC %s: %s", d->path, e.what.c_str());
  } catch (const std::exception &e) {
    return ctp_seterr(CTP_EDICOM, "write SC %s failed: %s", d->path, e.what());
  } catch (...) {
    return ctp_seterr(CTP_EDICOM, "write SC %s failed", d->path);
  }
}
