/*
 * kinetics.c — contrast enhancement over time, and the phase windows.
 *
 * Each enhancing tissue follows a reference curve: mean HU against the
 * physiological time after the start of an intravenous bolus, given as
 * knots and interpolated linearly. The knots were placed so that the curve's
 * values inside each phase window fall in the ranges of the DESIGN.md §6
 * table (literature values), and then checked against the real HCC_002
 * arterial and portal-venous series (docs/phantom.md has the numbers).
 *
 * A patient does not follow the reference exactly. Per series:
 *   - the physiological time follows the nominal one (plus the table
 *     travel from slice to slice, phantom.c) shifted by the bolus' arrival
 *     and stretched by the pace of the later kinetics: cardiac output
 *     (0.7-1.3) sets the circulation time, so the bolus arrives
 *     18 s x (1/factor - 1) late (-4..+8 s); distribution into the
 *     extracellular space and renal excretion run 0.85-1.15 times as fast
 *     (kinetics_time). Scaling the whole time by the cardiac factor, as an
 *     earlier version did, moves a 3-minute scan by a minute, which no
 *     circulation does, and caps a perfect classifier at 0.895 accuracy;
 *   - the infrarenal IVC fills with the contrast returning from the legs,
 *     0-25 s behind the rest (HCC_002's portal-venous IVC, 80-90 HU, is
 *     50 HU below its aorta);
 *   - each tissue's unenhanced value is drawn (fatty liver, anaemia, ...);
 *   - the enhancement (curve minus its unenhanced value) is scaled by a
 *     contrast factor shared by all tissues (dose, iodine concentration and
 *     the kVp: iodine is brighter at low kVp) and a small per-tissue jitter,
 *     so that the absolute brightness of the aorta alone does not give the
 *     phase away; the relations between tissues (cortex against medulla,
 *     aorta against IVC and portal vein, the collecting system) do;
 *   - excreted contrast in the collecting system has its own concentration
 *     factor.
 *
 * The label never looks at any of this: it comes from the nominal time's
 * window (ctp_phantom_phase_of_time), so neighbouring classes overlap.
 */
#include "phantom/phantom_int.h"

#include <math.h>

#include "ctphase/error.h"
#include "ctphase/model.h"

enum {
  C_AORTA, C_IVC, C_PORTAL, C_CORTEX, C_MEDULLA, C_URINE, C_LIVER, C_SPLEEN,
  C_MUSCLE, C_PANCREAS, C_RVEIN, C_BOWEL, C_MOTTLE, C_COUNT
};

#define NKNOTS 21
static const float knot_t[NKNOTS] = {
    0,  10, 15, 20, 25, 30, 35, 40, 50, 60, 70,
    80, 100, 130, 150, 180, 240, 300, 450, 600, 900};

/* Reference HU at the knots (C_MOTTLE: amplitude of the spleen's arterial
 * mottling, HU). The first value is the unenhanced one. */
static const float knot_hu[C_COUNT][NKNOTS] = {
    /* aorta    */ {40, 40, 60, 170, 260, 320, 320, 280, 240, 215, 200,
                    182, 170, 155, 148, 135, 125, 118, 108, 100, 92},
    /* IVC, infrarenal */
                   {40, 40, 40, 42, 48, 58, 70, 82, 110, 135, 145,
                    150, 152, 150, 145, 135, 125, 118, 108, 100, 92},
    /* portal v */ {40, 40, 40, 50, 75, 100, 125, 145, 170, 185, 188,
                    182, 170, 160, 153, 145, 130, 122, 112, 105, 95},
    /* cortex   */ {32, 32, 40, 90, 150, 180, 190, 192, 190, 185, 178,
                    170, 160, 150, 146, 140, 132, 126, 118, 112, 105},
    /* medulla  */ {32, 32, 33, 38, 50, 62, 72, 85, 105, 125, 138,
                    148, 158, 160, 158, 155, 148, 142, 132, 125, 115},
    /* urine    */ {10, 10, 10, 10, 10, 10, 10, 10, 11, 12, 14,
                    16, 22, 38, 60, 150, 400, 600, 800, 900, 950},
    /* liver    */ {60, 60, 60, 61, 64, 70, 76, 82, 95, 105, 110,
                    112, 111, 108, 105, 102, 97, 94, 90, 86, 82},
    /* spleen   */ {47, 47, 50, 70, 100, 120, 125, 125, 123, 121, 120,
                    118, 116, 114, 112, 110, 106, 102, 97, 93, 88},
    /* muscle   */ {50, 50, 50, 51, 53, 56, 57, 58, 60, 61, 62,
                    62, 62, 61, 61, 60, 59, 58, 57, 55, 53},
    /* pancreas */ {42, 42, 45, 70, 100, 120, 125, 120, 110, 104, 100,
                    96, 90, 85, 83, 80, 76, 73, 68, 65, 62},
    /* renal v  */ {40, 40, 45, 100, 160, 190, 200, 200, 195, 190, 185,
                    178, 165, 155, 148, 140, 130, 122, 112, 105, 95},
    /* bowel wall */
                   {38, 38, 40, 55, 75, 95, 100, 100, 98, 95, 92,
                    90, 86, 82, 80, 76, 72, 70, 66, 63, 60},
    /* mottle   */ {0, 0, 0, 25, 38, 40, 35, 28, 15, 6, 2,
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
};

/* Linear interpolation in the knot table; held constant outside it. */
static float curve(int c, double t) {
  if (t <= knot_t[0]) return knot_hu[c][0];
  if (t >= knot_t[NKNOTS - 1]) return knot_hu[c][NKNOTS - 1];
  int k = 1;
  while (knot_t[k] < t) k++;
  double f = (t - knot_t[k - 1]) / (knot_t[k] - knot_t[k - 1]);
  return (float)(knot_hu[c][k - 1] + f * (knot_hu[c][k] - knot_hu[c][k - 1]));
}

/* Enhancement over the unenhanced value (0 when no contrast was given). */
static float enh(int c, double t) {
  return t < 0 ? 0.0f : curve(c, t) - knot_hu[c][0];
}

const uint8_t tissue_label[T_COUNT] = {
    [T_AIR] = CTP_LABEL_AIR,           [T_FAT] = CTP_LABEL_FAT,
    [T_VFAT] = CTP_LABEL_FAT,          [T_SKIN] = CTP_LABEL_OTHER,
    [T_MUSCLE] = CTP_LABEL_MUSCLE,     [T_CORTICAL] = CTP_LABEL_BONE,
    [T_CANCELLOUS] = CTP_LABEL_BONE,   [T_POST_BONE] = CTP_LABEL_BONE,
    [T_DISC] = CTP_LABEL_OTHER,        [T_CANAL] = CTP_LABEL_OTHER,
    [T_AORTA] = CTP_LABEL_AORTA,       [T_CALC] = CTP_LABEL_AORTA,
    [T_IVC] = CTP_LABEL_IVC,           [T_IVC_SUPRA] = CTP_LABEL_IVC,
    [T_PORTAL] = CTP_LABEL_PORTAL_VEIN,[T_ARTERY] = CTP_LABEL_ARTERY,
    [T_RENAL_VEIN] = CTP_LABEL_RENAL_VEIN,
    [T_CORTEX] = CTP_LABEL_RENAL_CORTEX,
    [T_MEDULLA] = CTP_LABEL_RENAL_MEDULLA,
    [T_SINUS_FAT] = CTP_LABEL_SINUS_FAT,
    [T_URINE] = CTP_LABEL_COLLECTING,  [T_CYST] = CTP_LABEL_FLUID,
    [T_STONE] = CTP_LABEL_COLLECTING,
    [T_LIVER] = CTP_LABEL_LIVER,       [T_SPLEEN] = CTP_LABEL_SPLEEN,
    [T_PANCREAS] = CTP_LABEL_PANCREAS, [T_GALLBLADDER] = CTP_LABEL_FLUID,
    [T_BOWEL_WALL] = CTP_LABEL_BOWEL,  [T_BOWEL_FLUID] = CTP_LABEL_BOWEL,
    [T_BOWEL_GAS] = CTP_LABEL_BOWEL,   [T_ORAL] = CTP_LABEL_BOWEL,
    [T_ORAL_DILUTE] = CTP_LABEL_BOWEL, [T_FECES] = CTP_LABEL_BOWEL,
    [T_TABLE] = CTP_LABEL_TABLE,       [T_TABLE_PAD] = CTP_LABEL_TABLE,
};

/* The curve a tissue follows, or -1 for a non-enhancing one. */
static int tissue_curve(int t) {
  switch (t) {
    case T_AORTA: case T_ARTERY: return C_AORTA;
    case T_IVC: return C_IVC;
    case T_PORTAL: return C_PORTAL;
    case T_RENAL_VEIN: return C_RVEIN;
    case T_CORTEX: return C_CORTEX;
    case T_MEDULLA: return C_MEDULLA;
    case T_URINE: return C_URINE;
    case T_LIVER: return C_LIVER;
    case T_SPLEEN: return C_SPLEEN;
    case T_MUSCLE: return C_MUSCLE;
    case T_PANCREAS: return C_PANCREAS;
    case T_BOWEL_WALL: return C_BOWEL;
    case T_SKIN: return C_MUSCLE;
    default: return -1;
  }
}

double kinetics_time(const struct ctp_phantom *p, double t) {
  if (t < 0) return -1.0;
  double arrival_delay = 18.0 * (1.0 / p->cardiac - 1.0);
  return fmax(0.0, (t - arrival_delay) * p->late_scale);
}

void kinetics_table(const struct ctp_phantom *p, double t, float *hu,
                    float *fine) {
  double te = kinetics_time(p, t);
  for (int k = 0; k < T_COUNT; k++) {
    int c = tissue_curve(k);
    double tk = k == T_IVC && te >= 0 ? fmax(0.0, te - p->ivc_lag) : te;
    hu[k] = p->base_hu[k] + (c >= 0 ? p->enh_scale[k] * enh(c, tk) : 0.0f);
    fine[k] = p->fine_amp[k] * p->tex_scale;
  }
  /* Above the renal veins the IVC mixes unopacified caval blood with
   * bright renal return: a mean between the two, streaming (fine texture
   * proportional to their difference). */
  float ivc = hu[T_IVC], rv = hu[T_RENAL_VEIN];
  hu[T_IVC_SUPRA] = 0.45f * ivc + 0.55f * rv;
  fine[T_IVC_SUPRA] = 0.35f * fabsf(rv - ivc) + 3.0f;
  /* The spleen is mottled in the arterial phase (arciform enhancement). */
  fine[T_SPLEEN] += p->dose * (te < 0 ? 0.0f : curve(C_MOTTLE, te));
  /* Excreted contrast: its own concentration factor. */
  hu[T_URINE] = p->base_hu[T_URINE] +
                p->excretion * p->enh_scale[T_URINE] * enh(C_URINE, te);
  fine[T_URINE] += 0.04f * (hu[T_URINE] - p->base_hu[T_URINE]);
}

void kinetics_draw(struct ctp_phantom *p, rng_t *r) {
  int kvp = p->info.kvp;
  /* Iodine and bone attenuate more at low kVp. */
  float kvp_iodine = kvp == 100 ? 1.22f : kvp == 140 ? 0.86f : 1.0f;
  float kvp_bone = kvp == 100 ? 1.10f : kvp == 140 ? 0.94f : 1.0f;
  float *b = p->base_hu;

  float fat = (float)rng_uni(r, -120, -78);
  b[T_AIR] = -1000;
  b[T_FAT] = fat;
  b[T_VFAT] = fat + (float)rng_uni(r, -4, 12);
  b[T_SKIN] = (float)rng_uni(r, 30, 50);
  b[T_MUSCLE] = (float)rng_uni(r, 42, 57);
  b[T_CORTICAL] = kvp_bone * (float)rng_uni(r, 550, 900);
  b[T_CANCELLOUS] = kvp_bone * (float)rng_uni(r, 120, 260);
  b[T_POST_BONE] = 0.3f * b[T_CANCELLOUS] + 0.7f * b[T_CORTICAL];
  b[T_DISC] = (float)rng_uni(r, 60, 95);
  b[T_CANAL] = (float)rng_uni(r, 5, 25);
  float blood = (float)rng_uni(r, 32, 52); /* haematocrit */
  b[T_AORTA] = b[T_IVC] = b[T_IVC_SUPRA] = b[T_PORTAL] = blood;
  b[T_ARTERY] = b[T_RENAL_VEIN] = blood;
  b[T_CALC] = kvp_bone * (float)rng_uni(r, 350, 900);
  b[T_CORTEX] = (float)rng_uni(r, 28, 38);
  b[T_MEDULLA] = b[T_CORTEX] + (float)rng_uni(r, -4, 2);
  b[T_SINUS_FAT] = fat + (float)rng_uni(r, 0, 25);
  b[T_URINE] = (float)rng_uni(r, 2, 15);
  b[T_CYST] = (float)rng_uni(r, -2, 15);
  b[T_LIVER] = rng_chance(r, 0.12) ? (float)rng_uni(r, 5, 45) /* steatosis */
                                   : (float)rng_uni(r, 50, 68);
  b[T_SPLEEN] = (float)rng_uni(r, 42, 52);
  b[T_PANCREAS] = (float)rng_uni(r, 32, 48);
  b[T_GALLBLADDER] = (float)rng_uni(r, 0, 20);
  b[T_BOWEL_WALL] = (float)rng_uni(r, 30, 45);
  b[T_BOWEL_FLUID] = (float)rng_uni(r, 0, 25);
  b[T_BOWEL_GAS] = -1000;
  b[T_ORAL] = p->oral_hu;
  b[T_ORAL_DILUTE] = p->oral_hu * (float)rng_uni(r, 0.3, 0.65);
  b[T_FECES] = (float)rng_uni(r, -80, -20);
  b[T_TABLE] = (float)rng_uni(r, 150, 600);
  b[T_TABLE_PAD] = (float)rng_uni(r, -960, -750);
  b[T_STONE] = kvp_bone * (float)rng_uni(r, 300, 1100);

  /* Enhancement: one contrast factor for the patient (dose, iodine
   * concentration, kVp), a small jitter per tissue. */
  p->dose = (float)rng_uni(r, 0.55, 1.45) * kvp_iodine;
  p->excretion = (float)rng_uni(r, 0.5, 1.4) * kvp_iodine;
  /* How the bolus divides between compartments varies too (injection
   * rate against cardiac output shapes the arterial peak; perfusion of the
   * kidneys and the liver): the arteries 0.72-1.25, both kidney
   * compartments together 0.8-1.2, every tissue 0.85-1.15 on top. HCC_002's
   * portal-venous aorta, 116-142 HU beside a 91-96 HU liver, needs an
   * arterial share below the old jitter's. */
  float arterial = (float)rng_uni(r, 0.72, 1.25);
  float renal = (float)rng_uni(r, 0.8, 1.2);
  for (int k = 0; k < T_COUNT; k++) {
    float g = (float)rng_uni(r, 0.85, 1.15);
    if (k == T_AORTA || k == T_ARTERY) g *= arterial;
    if (k == T_CORTEX || k == T_MEDULLA) g = renal * (float)rng_uni(r, 0.95, 1.05);
    p->enh_scale[k] = p->dose * g;
  }
  p->enh_scale[T_URINE] = 1.0f; /* p->excretion is applied instead */
  /* Time: the bolus' arrival, the later kinetics' pace, the IVC's lag
   * (kinetics_time, kinetics_table). */
  p->cardiac = (float)rng_uni(r, 0.7, 1.3);
  p->late_scale = (float)rng_uni(r, 0.85, 1.15);
  p->ivc_lag = (float)rng_uni(r, 0.0, 25.0);

  /* Textures (HU): coarse (organ-scale inhomogeneity) and fine (grain). */
  float *c = p->tex_amp, *f = p->fine_amp;
  for (int k = 0; k < T_COUNT; k++) c[k] = f[k] = 0;
  c[T_FAT] = 6; c[T_VFAT] = 8; c[T_SKIN] = 5; c[T_MUSCLE] = 6;
  c[T_LIVER] = 7; c[T_SPLEEN] = 6; c[T_CORTEX] = 5; c[T_MEDULLA] = 5;
  c[T_PANCREAS] = 8; c[T_BOWEL_FLUID] = 6; c[T_BOWEL_WALL] = 5;
  c[T_CANCELLOUS] = 25; c[T_SINUS_FAT] = 12; c[T_DISC] = 5;
  c[T_AORTA] = 3; c[T_IVC] = 4; c[T_IVC_SUPRA] = 8; c[T_PORTAL] = 4;
  c[T_ORAL] = 0.08f * p->oral_hu; c[T_ORAL_DILUTE] = 0.1f * p->oral_hu;
  c[T_CORTICAL] = 60; c[T_POST_BONE] = 40; c[T_TABLE] = 20;
  f[T_CANCELLOUS] = 40; f[T_POST_BONE] = 30; f[T_PANCREAS] = 18;
  f[T_FECES] = 260; f[T_LIVER] = 3; f[T_MUSCLE] = 4; f[T_FAT] = 4;
  f[T_VFAT] = 5; f[T_MEDULLA] = 4; f[T_CORTEX] = 3; f[T_ORAL] = 25;
  f[T_SINUS_FAT] = 10; f[T_BOWEL_FLUID] = 4;
  p->tex_scale = (float)rng_uni(r, 0.5, 1.5);
}

int ctp_phantom_phase_of_time(double t) {
  if (t < 0) return CTP_PHASE_NONCON;
  if (t < 42.5) return CTP_PHASE_CM;
  if (t < 80) return CTP_PHASE_CMNEPH;
  if (t < 180) return CTP_PHASE_NEPH;
  return CTP_PHASE_PYELO;
}

int ctp_phantom_time_window(int phase, double *lo, double *hi) {
  static const double w[CTP_NUM_CLASSES][2] = {
      {-1, -1}, {20, 42.5}, {42.5, 80}, {80, 180}, {180, 600}};
  if (phase < 0 || phase >= CTP_NUM_CLASSES)
    return ctp_seterr(CTP_EINVAL, "phantom: phase %d out of range", phase);
  *lo = w[phase][0];
  *hi = w[phase][1];
  return 0;
}

double ctp_phantom_reference_hu(int label, double t) {
  int c;
  switch (label) {
    case CTP_LABEL_AORTA: case CTP_LABEL_ARTERY: c = C_AORTA; break;
    case CTP_LABEL_IVC: c = C_IVC; break;
    case CTP_LABEL_PORTAL_VEIN: c = C_PORTAL; break;
    case CTP_LABEL_RENAL_VEIN: c = C_RVEIN; break;
    case CTP_LABEL_RENAL_CORTEX: c = C_CORTEX; break;
    case CTP_LABEL_RENAL_MEDULLA: c = C_MEDULLA; break;
    case CTP_LABEL_COLLECTING: c = C_URINE; break;
    case CTP_LABEL_LIVER: c = C_LIVER; break;
    case CTP_LABEL_SPLEEN: c = C_SPLEEN; break;
    case CTP_LABEL_MUSCLE: c = C_MUSCLE; break;
    case CTP_LABEL_PANCREAS: c = C_PANCREAS; break;
    case CTP_LABEL_FAT: case CTP_LABEL_SINUS_FAT: return -100.0;
    default: return NAN;
  }
  return t < 0 ? knot_hu[c][0] : curve(c, t);
}
