/*
 * dicom.h — reading CT series from DICOM files (the C face of the DCMTK shim).
 *
 * ctp_dicom_scan() takes files and folders (searched recursively), reads the
 * header of every file it finds and sorts what it read into a ctp_scan:
 *
 *   scan ── files[]            every file met, in path order, each with an
 *     │                        outcome: used, skipped (and why) or error (and
 *     │                        why)
 *     └── series[]             one per SeriesInstanceUID
 *           ├── acquisitions[] the series split into acquisitions (several
 *           │     │            AcquisitionNumbers, or positions that repeat)
 *           │     └── slices[] the used slices, ordered along the slice
 *           │                  normal (never by InstanceNumber)
 *           └── skipped[]      the series' skipped and failed files
 *
 * Pixels are not kept in memory: ctp_slice_load_hu() reads one slice's file
 * again, decodes it (uncompressed, deflate, JPEG, JPEG-LS, RLE through
 * DCMTK; JPEG 2000 through OpenJPEG) and writes Hounsfield units as float.
 * That call only reads its own file, so different slices may be loaded from
 * different threads at once. The scan itself is read-only after it returns.
 *
 * The reading rules (which slices are used, how acquisitions are split,
 * tilt and spacing, HU conversion) are documented in docs/dicom-input.md;
 * the bounds they use are the CTP_DICOM_* constants below.
 *
 * Patient attributes (name, ID, birth date, sex) are read only so that
 * derived objects can carry them: never log them. Strings are the file's
 * bytes in its SpecificCharacterSet (given as specific_character_set),
 * trimmed of padding; an absent attribute reads as "" (never NULL).
 *
 * Errors follow error.h: functions return 0 or a negative CTP_E* code and
 * leave a message in ctp_last_error(). No C++ exception crosses this header.
 */
#ifndef CTPHASE_DICOM_H
#define CTPHASE_DICOM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Rows and Columns must lie in 1..CTP_DICOM_MAX_DIM. */
#define CTP_DICOM_MAX_DIM 8192
/* A slice is axial when its normal is within this angle of the patient's
 * z axis; the bound is wide enough for gantry tilt (scanners tilt up to
 * ±30°) and far from sagittal or coronal (90°). */
#define CTP_DICOM_MAX_OBLIQUE_DEG 30.0
/* |GantryDetectorTilt| above this is skipped as too tilted. */
#define CTP_DICOM_MAX_TILT_DEG 30.0
/* Slices in one acquisition whose normals differ by more than this are
 * not of the same stack; the minority is skipped. */
#define CTP_DICOM_MAX_NORMAL_DIFF_DEG 2.0
/* Two slice positions closer than this along the normal are the same
 * position (a repeat, hence another acquisition). */
#define CTP_DICOM_SAME_POSITION_MM 0.05
/* Parts of a series that lie end to end are joined into one acquisition
 * (step-and-shoot scans that number each rotation) only if their
 * AcquisitionTimes, when known, are at most this many seconds apart. */
#define CTP_DICOM_MAX_JOIN_GAP_S 10.0

/* Outcome of one file. */
typedef enum {
  CTP_SLICE_USED = 0,    /* part of an acquisition */
  CTP_SLICE_SKIPPED = 1, /* a readable file that is not a slice we use */
  CTP_SLICE_ERROR = 2    /* unreadable, malformed or unsupported */
} ctp_slice_status;

/* Why a file was skipped; `reason` holds the sentence with the details. */
#define CTP_SKIP_MAP(XX)                                                  \
  XX(NONE,        "used")                                                 \
  XX(NOT_CT,      "not a CT image")                                       \
  XX(MULTIFRAME,  "multi-frame image")                                    \
  XX(LOCALIZER,   "localizer")                                            \
  XX(SECONDARY,   "secondary (derived) image")                            \
  XX(PROJECTION,  "projection image")                                     \
  XX(NON_AXIAL,   "not axial")                                            \
  XX(TILT,        "gantry tilt too large")                                \
  XX(ORIENTATION, "orientation differs from its acquisition")             \
  XX(SIZE,        "image size differs from its acquisition")              \
  XX(DUPLICATE,   "duplicate SOP instance")                               \
  XX(ERROR,       "error")

typedef enum {
#define XX(name, msg) CTP_SKIP_##name,
  CTP_SKIP_MAP(XX)
#undef XX
  CTP_SKIP_COUNT
} ctp_skip;

/* "localizer" for CTP_SKIP_LOCALIZER, "unknown" out of range. */
const char *ctp_skip_str(int skip);

/* One file: its outcome and, when it could be read, its header. Owned by
 * the scan; read-only. Numbers that were absent read as noted. */
typedef struct ctp_slice {
  const char *path;
  int status;           /* ctp_slice_status */
  int skip;             /* ctp_skip: CTP_SKIP_NONE when used, _ERROR on error */
  int err;              /* 0 used, CTP_ESKIP skipped, else the CTP_E* code */
  const char *reason;   /* "" when used; else one sentence */

  /* Identity. */
  const char *sop_instance_uid;
  const char *sop_class_uid;
  const char *study_instance_uid;
  const char *series_instance_uid;
  const char *frame_of_reference_uid;
  const char *transfer_syntax_uid;
  const char *specific_character_set;
  const char *modality;
  const char *image_type;         /* values joined by '\', e.g. ORIGINAL\PRIMARY\AXIAL */
  const char *manufacturer;
  const char *series_description;
  const char *study_description;
  const char *study_date;         /* DA, YYYYMMDD */
  const char *study_time;         /* TM */
  const char *acquisition_time;   /* TM, or "" */
  const char *accession_number;
  int series_number;              /* -1 if absent */
  int acquisition_number;         /* -1 if absent */
  int instance_number;            /* -1 if absent */
  int number_of_frames;           /* 1 if absent */

  /* PHI: copy into derived objects, never log. */
  const char *patient_id;
  const char *patient_name;
  const char *patient_birth_date;
  const char *patient_sex;

  /* Image pixel description. */
  int rows, columns;
  int samples_per_pixel;
  const char *photometric;        /* MONOCHROME2, ... */
  int bits_allocated, bits_stored, high_bit;
  int pixel_representation;       /* 0 unsigned, 1 two's complement */

  /* Geometry, in patient coordinates (mm). */
  double pixel_spacing[2];        /* between rows, between columns; {0,0} if unknown */
  int spacing_source;             /* 0 unknown, 1 PixelSpacing, 2 ImagerPixelSpacing */
  double slice_thickness;         /* 0 if absent */
  int has_position;
  double position[3];             /* ImagePositionPatient */
  int has_orientation;
  double orientation[6];          /* ImageOrientationPatient (each vector
                                     normalised): row dir, column dir */
  double normal[3];               /* row dir × column dir, unit length */
  double location;                /* position · normal of its acquisition (used
                                     slices), else position · own normal */
  double gantry_tilt;             /* degrees; 0 if absent */

  /* Values. */
  double rescale_slope, rescale_intercept;  /* HU = stored * slope + intercept */
  int has_window;
  double window_center, window_width;       /* first values */
  int has_padding;
  double padding_hu;              /* PixelPaddingValue converted to HU */
  double kvp;                     /* 0 if absent */
} ctp_slice;

typedef struct ctp_scan ctp_scan;
typedef struct ctp_series ctp_series;
typedef struct ctp_acquisition ctp_acquisition;

/* Registers the DCMTK decoders and quiets DCMTK's own logging (it would
 * write unstructured lines to stderr; our messages carry the reasons).
 * Called by every function below on first use; safe from any thread. */
int ctp_dicom_init(void);

/* Reads the headers of every file under the given paths (files, or folders
 * searched recursively, following no symbolic link to a folder) and groups
 * them. Fails (CTP_ENOENT, CTP_EINVAL, CTP_ENOMEM) only when a path itself
 * is missing or memory runs out; a bad file is a CTP_SLICE_ERROR entry. */
int ctp_dicom_scan(const char *const *paths, int npaths, ctp_scan **out);
void ctp_scan_free(ctp_scan *scan);

/* Every file met, sorted by path (folder order is byte order of names). */
int ctp_scan_num_files(const ctp_scan *scan);
const ctp_slice *ctp_scan_file(const ctp_scan *scan, int i);

/* Series, ordered by StudyInstanceUID, SeriesNumber, SeriesInstanceUID. */
int ctp_scan_num_series(const ctp_scan *scan);
const ctp_series *ctp_scan_series(const ctp_scan *scan, int i);

const char *ctp_series_uid(const ctp_series *series);
/* A file of the series to read series and study attributes from: its
 * first used slice, or else its first readable file. */
const ctp_slice *ctp_series_ref(const ctp_series *series);
/* Acquisitions, ordered by AcquisitionNumber, then by first InstanceNumber.
 * A series with no usable slice has none. */
int ctp_series_num_acquisitions(const ctp_series *series);
const ctp_acquisition *ctp_series_acquisition(const ctp_series *series,
                                              int i);
/* Files of this series that were skipped or failed (those whose
 * SeriesInstanceUID could be read), in path order. */
int ctp_series_num_skipped(const ctp_series *series);
const ctp_slice *ctp_series_skipped(const ctp_series *series, int i);

/* Used slices in order of increasing location along the normal (for the
 * usual axial orientation, from feet to head). */
int ctp_acquisition_num_slices(const ctp_acquisition *acq);
const ctp_slice *ctp_acquisition_slice(const ctp_acquisition *acq, int i);
/* AcquisitionNumber of its slices (the first one's when step-and-shoot
 * parts were joined), -1 when absent. */
int ctp_acquisition_number(const ctp_acquisition *acq);
/* Its position in the series (0, 1, ...). */
int ctp_acquisition_index(const ctp_acquisition *acq);
/* Common image size of its slices. */
int ctp_acquisition_rows(const ctp_acquisition *acq);
int ctp_acquisition_columns(const ctp_acquisition *acq);
/* The unit normal its slices were ordered along. */
void ctp_acquisition_normal(const ctp_acquisition *acq, double out[3]);
/* Median distance between neighbouring slices along the normal (mm); 0 for
 * a single slice. */
double ctp_acquisition_spacing(const ctp_acquisition *acq);

/* Decodes one slice into out[rows * columns] (row-major, HU). Reads the
 * file again and checks it still matches the scanned header. Works for
 * used and skipped slices alike (a localizer can be shown); an error
 * slice answers with its error. Thread-safe. */
int ctp_slice_load_hu(const ctp_slice *slice, float *out);

#ifdef __cplusplus
}
#endif
#endif
