/*
 * write_ct.cc — writing CT Image Storage files with DCMTK.
 *
 * The output side of the DCMTK shim for plain CT images; today its user is
 * `ctphase phantom`, which writes synthetic series that must look to any
 * DICOM reader (ours, pydicom, PACS viewers, dciodvfy) like a scanner's.
 * See include/ctphase/dicom_write.h for the C API.
 *
 * One call builds one dataset: the modules of the CT Image IOD filled from
 * the series description and the slice description, HU converted to stored
 * values, then saved as explicit VR little endian with a meta header
 * (DCMTK fills the meta header from the SOP Class and Instance UIDs).
 * The file is written under a temporary name in the same folder and
 * renamed, so a reader never sees half a file.
 *
 * Decimal strings (DS) are limited to 16 characters by the standard; ds()
 * picks the longest precision that fits. Any DCMTK refusal or C++ exception
 * stops the call and becomes a CTP_E* code with a message naming the
 * attribute; nothing is thrown across the C boundary. The function keeps
 * no state besides the one-time toolkit check, so threads may write
 * different files at once.
 */
#include "ctphase/dicom_write.h"

#include "ctphase/error.h"
#include "ctphase/util.h"
#include "dicom/ds.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/oflog/oflog.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <cmath>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::once_flag init_once;
bool dict_ok = false;

void init_toolkit() {
  /* DCMTK's own log lines would go to stderr; our errors carry reasons. */
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  dict_ok = dcmDataDict.isDictionaryLoaded();
}

/* A DCMTK refusal, with the attribute it was about. */
struct dicom_error : std::runtime_error {
  explicit dicom_error(const std::string &what) : std::runtime_error(what) {}
};

/* A decimal string of at most 16 characters. */
std::string ds(double v) { return ctp_dicom_ds(v, 12); }

std::string ds_list(const double *v, int n) {
  std::string s;
  for (int i = 0; i < n; i++) {
    if (i) s += '\\';
    s += ds(v[i]);
  }
  return s;
}

std::string str(const char *s) { return s ? s : ""; }

class Builder {
 public:
  explicit Builder(DcmDataset *d) : ds_(d) {}

  /* Type 1 and 2: always written (empty when s is empty). */
  void put(const DcmTagKey &tag, const std::string &s) {
    check(ds_->putAndInsertString(tag, s.c_str()), tag);
  }
  /* Type 3: left out when empty. */
  void opt(const DcmTagKey &tag, const std::string &s) {
    if (!s.empty()) put(tag, s);
  }
  void put_us(const DcmTagKey &tag, unsigned v) {
    check(ds_->putAndInsertUint16(tag, (Uint16)v), tag);
  }
  void put_int(const DcmTagKey &tag, long v) { put(tag, std::to_string(v)); }

  void pixels(const std::vector<Uint16> &v) {
    check(ds_->putAndInsertUint16Array(DCM_PixelData, v.data(),
                                       (unsigned long)v.size()),
          DCM_PixelData);
  }

 private:
  void check(const OFCondition &c, const DcmTagKey &tag) {
    if (c.good()) return;
    DcmTag t(tag);
    throw dicom_error(std::string("cannot set ") + t.getTagName() + ": " +
                      c.text());
  }
  DcmDataset *ds_;
};

bool uid_ok(const char *u) {
  if (!u || !*u || strlen(u) > 64) return false;
  for (const char *p = u; *p; p++)
    if (!(*p == '.' || (*p >= '0' && *p <= '9'))) return false;
  return true;
}

int check_args(const char *path, const ctp_ct_series_desc *s,
               const ctp_ct_slice_desc *sl) {
  if (!path || !*path) return ctp_seterr(CTP_EINVAL, "write CT: no path");
  if (!s || !sl) return ctp_seterr(CTP_EINVAL, "write CT: no description");
  if (!uid_ok(s->study_uid) || !uid_ok(s->series_uid) ||
      !uid_ok(s->frame_of_reference_uid) || !uid_ok(sl->sop_instance_uid))
    return ctp_seterr(CTP_EINVAL, "write CT %s: a UID is missing or not a "
                      "valid UID (digits and dots, at most 64)", path);
  if (s->rows < 1 || s->columns < 1 || s->rows > 65535 || s->columns > 65535)
    return ctp_seterr(CTP_EINVAL, "write CT %s: bad image size %dx%d", path,
                      s->rows, s->columns);
  if (!sl->hu) return ctp_seterr(CTP_EINVAL, "write CT %s: no pixels", path);
  if (!(s->pixel_spacing[0] > 0 && s->pixel_spacing[1] > 0))
    return ctp_seterr(CTP_EINVAL, "write CT %s: pixel spacing must be > 0",
                      path);
  return 0;
}

void build(DcmDataset *d, const ctp_ct_series_desc *s,
           const ctp_ct_slice_desc *sl) {
  Builder b(d);
  std::string date = str(s->study_date);

  /* SOP Common. */
  b.put(DCM_SOPClassUID, UID_CTImageStorage);
  b.put(DCM_SOPInstanceUID, sl->sop_instance_uid);
  b.opt(DCM_InstanceCreationDate, date);
  b.opt(DCM_InstanceCreationTime, str(sl->content_time));

  /* Patient. */
  b.put(DCM_PatientName, str(s->patient_name));
  b.put(DCM_PatientID, str(s->patient_id));
  b.put(DCM_PatientBirthDate, str(s->patient_birth_date));
  b.put(DCM_PatientSex, str(s->patient_sex));

  /* General Study. */
  b.put(DCM_StudyInstanceUID, s->study_uid);
  b.put(DCM_StudyDate, date);
  b.put(DCM_StudyTime, str(s->study_time));
  b.put(DCM_ReferringPhysicianName, "");
  b.put(DCM_StudyID, str(s->study_id));
  b.put(DCM_AccessionNumber, str(s->accession_number));
  b.opt(DCM_StudyDescription, str(s->study_description));

  /* General Series. */
  b.put(DCM_Modality, "CT");
  b.put(DCM_SeriesInstanceUID, s->series_uid);
  b.put_int(DCM_SeriesNumber, s->series_number);
  b.opt(DCM_SeriesDate, date);
  b.opt(DCM_SeriesTime, str(s->series_time));
  b.opt(DCM_SeriesDescription, str(s->series_description));
  b.opt(DCM_ProtocolName, str(s->protocol_name));
  b.opt(DCM_BodyPartExamined, str(s->body_part));
  b.put(DCM_PatientPosition, str(s->patient_position));

  /* Frame of Reference. */
  b.put(DCM_FrameOfReferenceUID, s->frame_of_reference_uid);
  b.put(DCM_PositionReferenceIndicator, "");

  /* General Equipment. */
  b.put(DCM_Manufacturer, str(s->manufacturer));
  b.opt(DCM_InstitutionName, str(s->institution_name));
  b.opt(DCM_StationName, str(s->station_name));
  b.opt(DCM_ManufacturerModelName, str(s->model_name));
  b.opt(DCM_SoftwareVersions, str(s->software_version));

  /* General Acquisition and General Image. */
  b.put_int(DCM_AcquisitionNumber, s->acquisition_number);
  b.opt(DCM_AcquisitionDate, date);
  b.opt(DCM_AcquisitionTime, str(sl->acquisition_time));
  b.put_int(DCM_InstanceNumber, sl->instance_number);
  b.put(DCM_ContentDate, date);
  b.put(DCM_ContentTime, str(sl->content_time));
  b.put(DCM_ImageType, "ORIGINAL\\PRIMARY\\AXIAL");
  b.put(DCM_BurnedInAnnotation, "NO");

  /* Image Plane. */
  b.put(DCM_PixelSpacing, ds_list(s->pixel_spacing, 2));
  b.put(DCM_ImageOrientationPatient, ds_list(s->orientation, 6));
  b.put(DCM_ImagePositionPatient, ds_list(sl->position, 3));
  b.put(DCM_SliceThickness, ds(s->slice_thickness));
  /* SliceLocation: the position along the normal (row x column). */
  const double *o = s->orientation;
  double nrm[3] = {o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5],
                   o[0] * o[4] - o[1] * o[3]};
  b.put(DCM_SliceLocation, ds(nrm[0] * sl->position[0] +
                              nrm[1] * sl->position[1] +
                              nrm[2] * sl->position[2]));

  /* Contrast/Bolus, when an agent was given. */
  if (s->contrast_agent && *s->contrast_agent) {
    b.put(DCM_ContrastBolusAgent, s->contrast_agent);
    b.opt(DCM_ContrastBolusRoute, str(s->contrast_route));
    if (s->contrast_volume_ml > 0)
      b.put(DCM_ContrastBolusVolume, ds(s->contrast_volume_ml));
    b.opt(DCM_ContrastBolusStartTime, str(s->contrast_start_time));
    if (s->contrast_concentration > 0) {
      b.put(DCM_ContrastBolusTotalDose,
            ds(s->contrast_volume_ml * s->contrast_concentration / 1000.0));
      b.put(DCM_ContrastBolusIngredient, "IODINE");
      b.put(DCM_ContrastBolusIngredientConcentration,
            ds(s->contrast_concentration));
    }
  }

  /* CT Image (acquisition parameters). */
  b.put(DCM_KVP, s->kvp > 0 ? ds(s->kvp) : "");
  b.put(DCM_DataCollectionDiameter, ds(500));
  if (s->reconstruction_diameter > 0)
    b.put(DCM_ReconstructionDiameter, ds(s->reconstruction_diameter));
  b.put(DCM_GantryDetectorTilt, "0");
  b.put(DCM_TableHeight, ds(s->table_height));
  b.put(DCM_RotationDirection, "CW");
  if (s->exposure_time_ms > 0)
    b.put_int(DCM_ExposureTime, lround(s->exposure_time_ms));
  if (s->tube_current_ma > 0) {
    b.put_int(DCM_XRayTubeCurrent, lround(s->tube_current_ma));
    if (s->exposure_time_ms > 0)
      b.put_int(DCM_Exposure,
                lround(s->tube_current_ma * s->exposure_time_ms / 1000.0));
  }
  b.opt(DCM_ConvolutionKernel, str(s->convolution_kernel));

  /* Image Pixel and the HU mapping. */
  size_t n = (size_t)s->rows * (size_t)s->columns;
  std::vector<Uint16> px(n);
  if (s->signed_storage) {
    for (size_t i = 0; i < n; i++) px[i] = (Uint16)(int16_t)sl->hu[i];
  } else {
    for (size_t i = 0; i < n; i++) {
      int v = (int)sl->hu[i] + 1024;
      px[i] = (Uint16)(v < 0 ? 0 : v > 4095 ? 4095 : v);
    }
  }
  b.put_us(DCM_SamplesPerPixel, 1);
  b.put(DCM_PhotometricInterpretation, "MONOCHROME2");
  b.put_us(DCM_Rows, (unsigned)s->rows);
  b.put_us(DCM_Columns, (unsigned)s->columns);
  b.put_us(DCM_BitsAllocated, 16);
  b.put_us(DCM_BitsStored, s->signed_storage ? 16 : 12);
  b.put_us(DCM_HighBit, s->signed_storage ? 15 : 11);
  b.put_us(DCM_PixelRepresentation, s->signed_storage ? 1 : 0);
  b.put(DCM_RescaleIntercept, s->signed_storage ? "0" : "-1024");
  b.put(DCM_RescaleSlope, "1");
  b.put(DCM_RescaleType, "HU");
  if (s->window_width > 0) {
    b.put(DCM_WindowCenter, ds(s->window_center));
    b.put(DCM_WindowWidth, ds(s->window_width));
  }
  b.pixels(px);
}

int write_ct(const char *path, const ctp_ct_series_desc *s,
             const ctp_ct_slice_desc *sl) {
  std::call_once(init_once, init_toolkit);
  if (!dict_ok)
    return ctp_seterr(CTP_EDICOM,
                      "DCMTK data dictionary not loaded (check DCMDICTPATH)");
  DcmFileFormat ff;
  build(ff.getDataset(), s, sl);
  std::string tmp = std::string(path) + ".part";
  OFCondition c = ff.saveFile(tmp.c_str(), EXS_LittleEndianExplicit,
                              EET_ExplicitLength, EGL_recalcGL, EPD_noChange,
                              0, 0, EWM_fileformat);
  if (c.bad()) {
    remove(tmp.c_str());
    return ctp_seterr(CTP_EIO, "cannot write %s: %s", path, c.text());
  }
  if (rename(tmp.c_str(), path) != 0) {
    int e = errno;
    remove(tmp.c_str());
    return ctp_seterr(CTP_EIO, "cannot write %s: %s", path, strerror(e));
  }
  return 0;
}

}  // namespace

extern "C" int ctp_dicom_write_ct(const char *path,
                                  const ctp_ct_series_desc *series,
                                  const ctp_ct_slice_desc *slice) {
  int r = check_args(path, series, slice);
  if (r) return r;
  try {
    return write_ct(path, series, slice);
  } catch (const std::bad_alloc &) {
    return ctp_seterr(CTP_ENOMEM, "out of memory while writing %s", path);
  } catch (const dicom_error &e) {
    return ctp_seterr(CTP_EDICOM, "write %s: %s", path, e.what());
  } catch (const std::exception &e) {
    return ctp_seterr(CTP_EDICOM, "write %s failed: %s", path, e.what());
  } catch (...) {
    return ctp_seterr(CTP_EDICOM, "write %s failed", path);
  }
}

extern "C" int ctp_dicom_uid_from_name(const char *name, char out[65]) {
  if (!name || !out) return ctp_seterr(CTP_EINVAL, "uid: no name");
  unsigned char h[32];
  ctp_sha256 s;
  ctp_sha256_init(&s);
  ctp_sha256_update(&s, name, strlen(name));
  ctp_sha256_final(&s, h);
  /* UUID version 8 (custom) and the RFC variant bits. */
  h[6] = (unsigned char)((h[6] & 0x0F) | 0x80);
  h[8] = (unsigned char)((h[8] & 0x3F) | 0x80);
  unsigned __int128 v = 0;
  for (int i = 0; i < 16; i++) v = (v << 8) | h[i];
  char digits[48];
  int n = 0;
  do {
    digits[n++] = (char)('0' + (int)(v % 10));
    v /= 10;
  } while (v);
  int k = snprintf(out, 65, "2.25.");
  for (int i = n - 1; i >= 0; i--) out[k++] = digits[i];
  out[k] = 0;
  return 0;
}
