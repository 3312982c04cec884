/*
 * phantom.h — the synthetic abdominal CT phantom (DESIGN.md §6).
 *
 * Patient data with phase labels cannot be shipped, so ctphase trains its
 * bundled model on a procedural phantom: one CT series from the upper to
 * the lower pole of the kidneys, with its contrast phase known exactly and
 * an organ label for every voxel. A series is made in two steps:
 *
 *   ctp_phantom_new(opts)    draws a "patient" and an "acquisition" from a
 *                            seed: body habitus, organ shapes and positions,
 *                            enhancement kinetics, noise, blur, geometry.
 *                            Cheap (microseconds); nothing is rendered.
 *   ctp_phantom_render(...)  renders any range of its slices: HU (int16 or
 *                            float) and organ labels (uint8), row-major
 *                            (slice, row, column). Slices are rendered in
 *                            parallel (OpenMP); the bytes depend only on the
 *                            seed and options, never on the thread count or
 *                            on which range was asked for.
 *
 * The trainer uses these two calls to make data on the fly; `ctphase
 * phantom` writes the same series as DICOM files (dicom_write.h).
 *
 * Phase and time. The enhancement follows a continuous time after the
 * injection t (seconds); the class label follows from t's window alone
 * (ctp_phantom_phase_of_time), while the image follows the patient's
 * physiological time: t shifted by the bolus' arrival (cardiac output
 * ±30%), stretched by the pace of the later kinetics (±15%) and advanced
 * slice by slice by the table travel. So neighbouring classes
 * overlap in appearance, as in real scans. The windows, the kinetics table
 * and the label codes are documented in docs/phantom.md.
 *
 * Geometry. Slice k (0-based) is the k-th from the head: slices run from
 * the top of the covered range downwards, and DICOM z (ImagePositionPatient)
 * decreases by slice_spacing per slice, as on most scanners. Columns run to
 * the patient's left, rows to the posterior (LPS, orientation 1\0\0\0\1\0).
 *
 * Errors follow error.h: 0 or a negative CTP_E* code with a message.
 */
#ifndef CTPHASE_PHANTOM_H
#define CTPHASE_PHANTOM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CTP_PHANTOM_DEFAULT_SIZE 512
#define CTP_PHANTOM_MIN_SIZE 64
#define CTP_PHANTOM_MAX_SIZE 2048
#define CTP_PHANTOM_MAX_SLICES 1000
/* Times after injection are accepted up to this (seconds). */
#define CTP_PHANTOM_MAX_TIME_S 3600.0

/* Organ label codes of the label volume. */
#define CTP_PHANTOM_LABEL_MAP(XX)                                     \
  XX(AIR,          0, "air")              /* outside the body */      \
  XX(FAT,          1, "fat")              /* subcutaneous, visceral */ \
  XX(MUSCLE,       2, "muscle")           /* wall, psoas, back */     \
  XX(BONE,         3, "bone")             /* vertebrae, ribs */       \
  XX(AORTA,        4, "aorta")                                        \
  XX(IVC,          5, "ivc")                                          \
  XX(PORTAL_VEIN,  6, "portal_vein")      /* portal, SMV, splenic */  \
  XX(RENAL_CORTEX, 7, "renal_cortex")                                 \
  XX(RENAL_MEDULLA,8, "renal_medulla")                                \
  XX(COLLECTING,   9, "collecting_system")/* calyces, pelvis, ureter, stones */ \
  XX(LIVER,       10, "liver")                                        \
  XX(SPLEEN,      11, "spleen")                                       \
  XX(BOWEL,       12, "bowel")            /* wall and contents */     \
  XX(TABLE,       13, "table")                                        \
  XX(ARTERY,      14, "artery")           /* renal arteries, SMA */   \
  XX(RENAL_VEIN,  15, "renal_vein")                                   \
  XX(SINUS_FAT,   16, "renal_sinus_fat")                              \
  XX(OTHER,       17, "other_soft_tissue")/* skin, disc, canal */     \
  XX(PANCREAS,    18, "pancreas")                                     \
  XX(FLUID,       19, "fluid")            /* renal cyst, gallbladder */

typedef enum {
#define XX(name, val, str) CTP_LABEL_##name = (val),
  CTP_PHANTOM_LABEL_MAP(XX)
#undef XX
  CTP_PHANTOM_NUM_LABELS
} ctp_phantom_label;

/* "renal_cortex" for CTP_LABEL_RENAL_CORTEX; NULL when out of range. */
const char *ctp_phantom_label_name(int label);

/* What to generate. Initialise with ctp_phantom_opts_init(). */
typedef struct {
  uint64_t seed;
  /* Either a phase (class index 0..4, see model.h), with the time drawn
   * uniformly inside its window, or phase = -1 and a time after injection
   * in seconds (negative: no contrast was given, i.e. noncon). */
  int phase;
  double time_s;
  /* Slice count; 0 draws the natural count (covered span / thickness). */
  int num_slices;
  /* Rows = columns; 0 means CTP_PHANTOM_DEFAULT_SIZE. The field of view is
   * drawn for 512 columns (0.6-0.9 mm pixels) and kept for other sizes. */
  int size;
} ctp_phantom_opts;

void ctp_phantom_opts_init(ctp_phantom_opts *o);

/* What was drawn: acquisition, patient, kinetics (for manifests, DICOM
 * tags and checks). Read-only; owned by the phantom. */
typedef struct {
  uint64_t seed;
  int phase;               /* class index, from time_s's window */
  double time_s;           /* nominal time after injection (scan start);
                              -1 for noncon */
  double effective_time_s; /* physiological time at the first slice
                              (bolus arrival and kinetic pace applied,
                              docs/phantom.md); -1 for noncon */
  /* Acquisition. */
  int rows, columns, num_slices;
  double pixel_spacing;    /* mm, square pixels */
  double slice_thickness;  /* mm */
  double slice_spacing;    /* mm between slice centres */
  double position_x, position_y; /* ImagePositionPatient x, y of pixel (0,0) */
  double first_z;          /* ImagePositionPatient z of slice 0; slice k is
                              at first_z - k * slice_spacing */
  double table_speed_mm_s; /* table travel: slice k is acquired
                              k * slice_spacing / table_speed_mm_s later */
  double table_height_mm;  /* table top below the isocentre (mm) */
  int kvp;                 /* 100, 120 or 140 */
  int head_first;          /* 1: HFS, 0: FFS (tag only) */
  int signed_storage;      /* DICOM: 1 signed with intercept 0, 0 unsigned
                              12-bit with intercept -1024 */
  double noise_sd;         /* HU, at the body centre before modulation */
  double noise_grain;      /* px, correlation length of the noise */
  double blur_sigma;       /* px, partial-volume blur */
  int num_streaks;
  /* Patient. */
  double body_width_mm, body_depth_mm; /* at the kidneys' midpoint */
  double subcut_fat_mm;    /* anterior subcutaneous fat */
  double cardiac_scale;    /* cardiac output factor, 0.7-1.3 */
  double contrast_scale;   /* iodine enhancement scale (dose x kVp) */
  double excretion_scale;  /* concentration of excreted contrast */
  int oral_contrast;       /* 1 when bowel loops carry oral contrast */
  double oral_contrast_hu;
  int num_bowel_loops;
  int num_renal_cysts;
} ctp_phantom_info;

typedef struct ctp_phantom ctp_phantom;

/* Draws a patient and an acquisition. CTP_EINVAL for a bad phase, time,
 * size or slice count. */
int ctp_phantom_new(ctp_phantom **out, const ctp_phantom_opts *opts);
void ctp_phantom_free(ctp_phantom *p);
const ctp_phantom_info *ctp_phantom_get_info(const ctp_phantom *p);

/* Renders slices z0 .. z0+nz-1 into hu[nz * rows * columns] (HU, clamped
 * to -1024..3071) and labels[nz * rows * columns]; either may be NULL.
 * Threads: OpenMP over slices (threads <= 0: the OpenMP default). */
int ctp_phantom_render(const ctp_phantom *p, int z0, int nz, int16_t *hu,
                       uint8_t *labels, int threads);
int ctp_phantom_render_float(const ctp_phantom *p, int z0, int nz, float *hu,
                             uint8_t *labels, int threads);

/* The phase windows on the nominal time after injection (seconds):
 * noncon: no contrast (t < 0); cm [20, 42.5); cmneph [42.5, 80);
 * neph [80, 180); pyelo [180, inf). Returns the class of t. Times in
 * [0, 20) are the bolus' arrival: counted as cm. */
int ctp_phantom_phase_of_time(double t);
/* The window from which ctp_phantom_new() draws t for a phase: [lo, hi).
 * noncon gives lo = hi = -1. CTP_EINVAL for a bad phase. */
int ctp_phantom_time_window(int phase, double *lo, double *hi);

/* The reference kinetics curve of a label's main tissue at physiological
 * time t (seconds; negative: unenhanced), before any per-patient jitter or
 * contrast scaling — the numbers of the table in docs/phantom.md. NAN for
 * a label without one (air, table, ...). */
double ctp_phantom_reference_hu(int label, double t);

#ifdef __cplusplus
}
#endif
#endif
