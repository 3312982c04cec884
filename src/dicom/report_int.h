/*
 * report_int.h — the DCMTK side of ctp_report_write (include/ctphase/report.h):
 * one call per object, the content decided in C (src/core/report.c), the
 * DICOM encoding here (src/dicom/write_sr.cc, src/dicom/write_sc.cc).
 *
 * Both writers copy the Patient, Clinical Trial Subject, Patient Study and
 * General Study attributes (and SpecificCharacterSet) from a source file
 * of the series, so the derived objects join the source study whatever
 * characters its patient name holds. Files are written atomically: a
 * temporary name in the same folder, fsync, rename, fsync of the folder.
 *
 * Strings given here are ASCII. Errors follow error.h; no C++ exception
 * crosses this header. Internal: only src/core/report.c calls it.
 */
#ifndef CTPHASE_REPORT_INT_H
#define CTPHASE_REPORT_INT_H

#include "ctphase/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The local coding scheme of the phase codes (declared in the SR's
 * CodingSchemeIdentificationSequence). */
#define CTP_REPORT_SCHEME "99CTPHASE"

/* The code of a phase (a class, or CTP_PHASE_INDETERMINATE): value and
 * meaning in CTP_REPORT_SCHEME. Returns 0, or CTP_EINVAL out of range. */
int ctp__report_phase_code(int phase, const char **value, const char **meaning);

/* One source image the SR references. */
typedef struct {
  const char *sop_class_uid, *sop_instance_uid;
} ctp__report_ref;

typedef struct {
  const char *path;              /* output file */
  const char *source_path;       /* a file of the source series */
  const char *study_uid, *source_series_uid;
  const char *series_uid, *sop_uid;
  const char *series_description;
  int series_number, instance_number;
  const char *content_date, *content_time; /* YYYYMMDD, HHMMSS */
  /* Observer context: the device. */
  const char *device_uid, *station_ae, *station_name;
  /* The result. */
  int phase;                     /* class or CTP_PHASE_INDETERMINATE */
  int winner;
  float share[CTP_NUM_CLASSES];  /* vote shares, sum 1 */
  float margin, margin_threshold;
  int nused, nskipped;
  const char *frame_of_reference_uid;  /* "" if unknown */
  const char *tracking_uid;      /* the measurement group's UID */
  /* Masking specificity of the key slices' SAMs (has_masking). */
  int has_masking, masking_n, sam_layer;
  double masking_top, masking_bottom;
  /* Algorithm identification. */
  const char *model_name, *model_sha256;
  /* The images used, in acquisition order. */
  const ctp__report_ref *refs;
  int nrefs;
} ctp__sr_desc;

typedef struct {
  const char *path;
  const char *source_path;       /* the source slice's file */
  const char *study_uid;
  const char *series_uid, *sop_uid;
  const char *series_description, *derivation_description;
  int series_number, instance_number;
  const char *content_date, *content_time;
  const char *src_sop_class_uid, *src_sop_instance_uid;
  const char *patient_orientation;  /* "L\\P" etc., "" if unknown */
  double pixel_spacing[2];          /* mm; {0,0}: not written */
  int rows, columns;
  const unsigned char *rgb;         /* rows * columns * 3, RGB8 */
} ctp__sc_desc;

/* SOP classes written. */
#define CTP_REPORT_SR_CLASS "1.2.840.10008.5.1.4.1.1.88.34"
#define CTP_REPORT_SC_CLASS "1.2.840.10008.5.1.4.1.1.7"
#define CTP_REPORT_TSYNTAX "1.2.840.10008.1.2.1"

int ctp__report_write_sr(const ctp__sr_desc *d);
int ctp__report_write_sc(const ctp__sc_desc *d);

#ifdef __cplusplus
}

#include <string>

class DcmItem;
class DcmFileFormat;

namespace ctp_report {

/* A DCMTK refusal, with what it was about. */
struct dicom_error {
  std::string what;
};

/* Throws dicom_error unless DCMTK's dictionary is loaded. */
void init_toolkit();
/* Loads the source file's header (no pixel data) into ff. */
void load_source(const char *path, DcmFileFormat &ff);
/* Copies patient, study and character-set attributes from src to dst. */
void copy_patient_study(DcmItem &src, DcmItem &dst);
/* Saves ff atomically as explicit VR little endian. Returns 0 or CTP_E*. */
int save_atomic(DcmFileFormat &ff, const char *path);
/* Throws dicom_error for a bad condition. */
void check(bool ok, const char *cond_text, const char *what);
/* A Decimal String value of at most 16 characters (0 for NaN/inf). */
std::string ds(double v);
/* s, or "" for NULL. */
std::string str(const char *s);

}  // namespace ctp_report
#endif
#endif
