/*
 * phantom_int.h — what the phantom's files share: tissues, the random
 * generator, the shapes of the anatomy and the phantom object itself.
 *
 * Four files make the phantom:
 *   phantom.c   draws the patient and the acquisition from the seed;
 *   anatomy.c   paints one slice's tissue map from the drawn shapes;
 *   kinetics.c  the enhancement curves, the phase windows and the per-slice
 *               tissue -> HU table;
 *   render.c    renders slices: tissue map -> HU (texture, blur, noise,
 *               streaks) -> int16 / float, plus labels.
 *
 * Coordinates. Shapes live in millimetres in the "body frame": x to the
 * patient's left, y to the posterior (LPS), origin at the body's centre in
 * the plane; z is anatomical, 0 at the midpoint of the two kidneys and
 * increasing towards the head. The acquisition maps this frame onto pixels
 * (pixel spacing, the body's offset in the field of view) and onto DICOM z.
 *
 * A tissue is finer than a label: it decides the HU (cortical and
 * cancellous bone are both "bone"; suprarenal and infrarenal IVC are both
 * "ivc"). tissue_label[] maps one onto the other.
 */
#ifndef CTPHASE_PHANTOM_INT_H
#define CTPHASE_PHANTOM_INT_H

#include <math.h>
#include <stdint.h>

#include "ctphase/phantom.h"

enum {
  T_AIR, T_FAT, T_VFAT, T_SKIN, T_MUSCLE,
  T_CORTICAL, T_CANCELLOUS, T_POST_BONE, T_DISC, T_CANAL,
  T_AORTA, T_CALC, T_IVC, T_IVC_SUPRA, T_PORTAL, T_ARTERY, T_RENAL_VEIN,
  T_CORTEX, T_MEDULLA, T_SINUS_FAT, T_URINE, T_CYST, T_STONE,
  T_LIVER, T_SPLEEN, T_PANCREAS, T_GALLBLADDER,
  T_BOWEL_WALL, T_BOWEL_FLUID, T_BOWEL_GAS, T_ORAL, T_ORAL_DILUTE, T_FECES,
  T_TABLE, T_TABLE_PAD,
  T_COUNT
};

/* A set of tissues as a bit mask (what a shape may paint over). */
#define TM(t) (1ull << (t))

extern const uint8_t tissue_label[T_COUNT];

/* ---- random numbers: splitmix64, one stream per purpose ---------------- */

/* Stream tags (the purpose of a stream). */
enum { TAG_ANATOMY = 1, TAG_ACQ, TAG_KINETICS, TAG_TIME, TAG_NOISE,
       TAG_TEX_COARSE, TAG_TEX_FINE, TAG_TEX_MED };

typedef struct { uint64_t s; } rng_t;

static inline uint64_t rng_next(rng_t *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* A stream derived from a seed and a purpose tag (and an index). */
static inline rng_t rng_stream(uint64_t seed, uint64_t tag, uint64_t idx) {
  rng_t r = {seed ^ 0x6A09E667F3BCC909ull};
  r.s = rng_next(&r) ^ (tag * 0xD1B54A32D192ED03ull);
  r.s = rng_next(&r) ^ (idx * 0x8CB92BA72F3D8DD7ull);
  rng_next(&r);
  return r;
}

/* Uniform in [0, 1). */
static inline double rng_u01(rng_t *r) {
  return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
static inline double rng_uni(rng_t *r, double lo, double hi) {
  return lo + (hi - lo) * rng_u01(r);
}
static inline int rng_int(rng_t *r, int lo, int hi) { /* [lo, hi] */
  return lo + (int)(rng_u01(r) * (double)(hi - lo + 1));
}
static inline int rng_chance(rng_t *r, double p) { return rng_u01(r) < p; }
/* Standard normal (Box-Muller); used only when drawing parameters. */
static inline double rng_normal(rng_t *r) {
  double u = rng_u01(r), v = rng_u01(r);
  return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

/* ---- shapes ------------------------------------------------------------ */

/* A 2-D blob: a rotated ellipse whose radius is modulated by harmonics
 * 2..4 of the polar angle, r(θ) = 1 + Σ h·cos/sin(kθ). */
typedef struct {
  float cx, cy, a, b, cr, sr; /* centre, semi-axes, cos/sin of rotation */
  float h[6];                 /* cos2, sin2, cos3, sin3, cos4, sin4 */
  float rmin, rmax;           /* bounds of r(θ) */
} blob2;

/* How a solid's cross-section scales along z. */
enum {
  PROF_CYL,       /* constant (times the linear growth) */
  PROF_ELLIPSOID, /* (1 - |u|^p)^(1/p), u from -1 at zlo to 1 at zhi */
  PROF_TAPER      /* full size above zhi, shrinking to 0 at zlo */
};

/* A solid: an elliptic cylinder, ellipsoid or tapering organ whose
 * cross-section is a blob2, drifting in the plane as z changes. */
typedef struct {
  float x0, y0, z0;   /* centre at z0 */
  float dxdz, dydz;   /* drift of the centre per mm of z */
  float a, b, rot;    /* semi-axes at full size, rotation (rad) */
  float grow;         /* relative size change per mm of z */
  float h[6];
  float zlo, zhi, pexp;
  int profile;
} solid;

/* A capsule: all points within r of the segment p0-p1 (3-D). */
typedef struct {
  float p0[3], p1[3], r;
} capsule;

/* A superellipse-ish outline, one of the body's layers: per row y its
 * x-extent is A (1 - |y/B|^n)^(1/n) with B = Bant for y < 0 and Bpost
 * for y > 0, times a gentle wobble and a left/right asymmetry. */
typedef struct {
  float A, Bant, Bpost, n;
  float asym;                   /* left side is (1+asym), right (1-asym) */
  float wob, wob_f, wob_ph;     /* wobble amplitude, frequency, phase */
} ring;

#define MAX_PYRAMIDS 15
#define MAX_LOOPS 36
#define MAX_VESSELS 32
#define MAX_RIBS 6
#define MAX_CYSTS 3
#define MAX_CALCS 6
#define MAX_STONES 3
#define MAX_STREAKS 6
#define MAX_BRANCHES 10

typedef struct {
  float theta;      /* polar angle in the kidney's normalised frame */
  float z, hz;      /* centre and half-extent along z (relative to kidney) */
  float w;          /* angular half-width at the base (rad) */
} pyramid;

typedef struct {
  float x0, y0, z0;     /* centre at the kidney's mid-length */
  float hz;             /* half-length (mm) */
  float dxdz, dydz;     /* axis tilt: centre drift per mm of z */
  float a, b, rot;      /* cross-section semi-axes (mm), rotation */
  float pexp;           /* pole bluntness */
  float h[6];           /* outline harmonics */
  float hil_dir;        /* direction of the hilum in the normalised frame */
  float hil_u, hil_w;   /* hilum's z position and half-width (in u units) */
  float sinus_u;        /* the sinus spans |u| < sinus_u */
  float calyx_u;        /* polar calyces reach |u| < calyx_u */
  float sinus_a, sinus_b;
  float pelvis;         /* size of the renal pelvis (normalised) */
  float cortex_mm;
  int npyr;
  pyramid pyr[MAX_PYRAMIDS];
  /* Dense foci in the sinus in every phase (stones, calcified arteries):
   * centre u and half-length along the axis (u units), offset in the
   * sinus (fractions of its semi-axes), radius (normalised). */
  int nstones;
  float st_u[MAX_STONES], st_du[MAX_STONES], st_fx[MAX_STONES],
      st_fy[MAX_STONES], st_r[MAX_STONES];
  float st_len[MAX_STONES], st_ang[MAX_STONES]; /* in-plane length (0: round) */
} kidney;

enum { LOOP_FLUID, LOOP_GAS, LOOP_LEVEL, LOOP_ORAL, LOOP_ORAL_DILUTE,
       LOOP_FECES };

typedef struct {
  solid s;
  float wall;       /* mm */
  int content;
  float level;      /* air-fluid level: offset from the centre (fraction) */
} bowel_loop;

typedef struct {
  float ang0, ang1; /* posterior and anterior end, angle from the back */
  float z0, drop;   /* z of the posterior end, descent to the anterior end */
  float r;          /* cross-section radius */
  int side;         /* -1 right, +1 left */
} rib;

typedef struct {
  float x, y, ang, amp, width, decay;
} streak;

/* Everything drawn for one series. */
struct ctp_phantom {
  ctp_phantom_info info;

  /* Acquisition. */
  float sp;                 /* pixel spacing */
  float body_cx, body_cy;   /* body centre in the field of view (mm) */
  float z_top;              /* anatomical z of slice 0 */
  float table_top;          /* y of the table's top surface (body frame) */
  float table_r, table_shell, table_half_w, table_base_dy, table_pad;
  float blur_sigma, noise_sd, noise_grain, noise_dog, noise_center;
  float cupping;
  int nstreaks;
  streak streaks[MAX_STREAKS];

  /* Body. */
  ring body, skin, muscle, cavity;
  float body_dAdz;          /* relative change of the body's width per mm */
  float spine_x, spine_y;   /* vertebral body centre */
  float vb_a, vb_b, cortical_mm, canal_r, canal_dy;
  float vert_period, vert_phase, disc_h;
  float endplate_mm;        /* dense endplate next to each disc */
  float arch_mm, facet_r;   /* neural arch thickness, facet joints */
  float osteophyte_r;       /* 0: none */
  float spinous_len, transverse_len;
  solid psoas[2], paraspinal[2], quadratus[2];
  int nribs;
  rib ribs[MAX_RIBS];

  /* Organs. */
  kidney kid[2];            /* 0: right (x < 0), 1: left */
  solid liver, spleen, gallbladder;
  int has_gallbladder;
  int nbranches;
  capsule branches[MAX_BRANCHES]; /* portal branches in the liver */
  int nloops;
  bowel_loop loops[MAX_LOOPS];
  int ncysts;
  capsule cysts[MAX_CYSTS]; /* spheres: p0 == p1 */
  int has_pancreas;
  capsule pancreas[3];

  /* Vessels. */
  solid aorta, ivc;
  float ivc_supra_z;        /* above this the IVC carries renal blood */
  int ncalcs;
  capsule calcs[MAX_CALCS];
  int nvessels;
  capsule vessels[MAX_VESSELS];
  uint8_t vessel_tissue[MAX_VESSELS];

  /* Kinetics (kinetics.c). */
  float base_hu[T_COUNT];   /* unenhanced HU per tissue */
  float enh_scale[T_COUNT]; /* multiplies the curve's enhancement */
  float tex_amp[T_COUNT];   /* coarse texture amplitude (HU) */
  float fine_amp[T_COUNT];  /* fine texture amplitude (HU) */
  float tex_scale;          /* per-patient texture multiplier */
  float oral_hu;
  float cardiac;            /* cardiac output factor, 0.7-1.3 */
  float late_scale;         /* pace of the later kinetics, 0.85-1.15 */
  float ivc_lag;            /* s: infrarenal IVC behind the rest */
  float dose;               /* contrast scale */
  float excretion;
};

/* Physiological time of a patient at nominal time t (s; -1 when no
 * contrast was given): the bolus arrives 18 s x (1/cardiac - 1) late and
 * the rest runs late_scale times as fast (kinetics.c). */
double kinetics_time(const struct ctp_phantom *p, double t);

/* ---- anatomy.c --------------------------------------------------------- */

/* One slice being painted. xs/ys are the body-frame coordinates of the
 * columns and rows. */
typedef struct {
  const struct ctp_phantom *p;
  int W, H;
  float z;
  const float *xs, *ys;
  uint8_t *tis;             /* H*W tissue map */
} slice_ctx;

void anatomy_paint(slice_ctx *s);
/* Body-frame position of the point (X, Y) of a kidney's normalised frame
 * at z; 0 when the slice misses the kidney. */
int anatomy_kidney_point(const kidney *k, float z, float X, float Y,
                         float *x, float *y);
/* x-extent [*xl, *xr] of a ring at body-frame y; 0 when the row misses. */
int ring_span(const ring *g, float y, float *xl, float *xr);

/* ---- kinetics.c -------------------------------------------------------- */

/* Fills hu[T_COUNT], the mean HU of each tissue at physiological time t
 * (t < 0: unenhanced), and fine[T_COUNT], the fine-texture amplitude
 * (the spleen's arterial mottling depends on t). */
void kinetics_table(const struct ctp_phantom *p, double t, float *hu,
                    float *fine);
/* Draws the tissue base values, enhancement scales and textures. */
void kinetics_draw(struct ctp_phantom *p, rng_t *r);

#endif
