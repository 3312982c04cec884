/*
 * phantom.c — draws a phantom patient and acquisition from a seed.
 *
 * ctp_phantom_new() turns a seed into every number a series needs: body
 * habitus and layers, spine and back muscles, kidneys with their inner
 * structure, liver, spleen, pancreas, bowel, vessels, then the acquisition
 * (field of view, slice thickness and count, table, kVp, noise, blur,
 * streaks) and the kinetics (kinetics.c). Nothing is rendered here: see
 * render.c for how a slice is made from these numbers.
 *
 * Separate random streams are used for the patient's anatomy, the
 * acquisition, the kinetics and the time after injection, so one seed
 * rendered at several phases is the same patient on the same scanner (a
 * multiphase exam), and changing how the time is chosen never moves an
 * organ. The ranges are listed in docs/phantom.md; the main ones come from
 * DESIGN.md §6: pixel spacing 0.6-0.9 mm (for 512 columns), slice thickness
 * 1-5 mm, noise SD 8-32 HU, cardiac output ±30%, body habitus, table height.
 *
 * Placement follows anatomy loosely but keeps the important relations:
 * the aorta anterior-left and the IVC anterior-right of the vertebral body,
 * the psoas beside it, the kidneys lateral to the psoas with their hila
 * facing anteromedially, the left renal vein between aorta and SMA, bowel
 * loops kept off the kidneys and great vessels.
 */
#include "phantom/phantom_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/model.h"

#define PI 3.14159265358979323846

static const char *const label_names[CTP_PHANTOM_NUM_LABELS] = {
#define XX(name, val, str) [val] = str,
    CTP_PHANTOM_LABEL_MAP(XX)
#undef XX
};

const char *ctp_phantom_label_name(int label) {
  return label >= 0 && label < CTP_PHANTOM_NUM_LABELS ? label_names[label]
                                                       : NULL;
}

void ctp_phantom_opts_init(ctp_phantom_opts *o) {
  memset(o, 0, sizeof *o);
  o->phase = CTP_PHASE_NONCON;
  o->time_s = -1;
}

static float U(rng_t *r, double lo, double hi) {
  return (float)rng_uni(r, lo, hi);
}

static float clampf(float v, float lo, float hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

static void harmonics(rng_t *r, float *h, float amp) {
  for (int k = 0; k < 6; k++) h[k] = U(r, -amp, amp) / (float)(1 + k / 2);
}

/* ---- drawing: body and spine ------------------------------------------ */

static void draw_body(ctp_phantom *p, rng_t *r) {
  float hab = U(r, 0, 1); /* 0 slim .. 1 obese */
  float A = clampf(125 + 70 * hab + 8 * (float)rng_normal(r), 115, 210);
  float ratio = U(r, 0.62, 0.85);
  float Bant = ratio * A * U(r, 1.0, 1.12), Bpost = 2 * ratio * A - Bant;
  ring b = {A, Bant, Bpost, U(r, 2.0, 2.7), U(r, -0.04, 0.04),
            U(r, 0, 0.04), U(r, 1.5, 4), U(r, 0, 2 * PI)};
  p->body = b;
  float sk = U(r, 1.5, 3);
  p->skin = b;
  p->skin.A -= sk;
  p->skin.Bant -= sk;
  p->skin.Bpost -= sk;
  float f_ant = 6 + 45 * hab * U(r, 0.6, 1.4);
  float f_lat = 4 + 35 * hab * U(r, 0.6, 1.4);
  float f_post = 6 + 30 * hab * U(r, 0.6, 1.3);
  p->info.subcut_fat_mm = f_ant;
  p->muscle = b;
  p->muscle.A -= f_lat;
  p->muscle.Bant -= f_ant;
  p->muscle.Bpost -= f_post;
  p->muscle.n = 2 + (b.n - 2) * 0.8f;
  p->muscle.wob *= 0.5f;
  p->cavity = p->muscle;
  p->cavity.A -= U(r, 10, 20);
  p->cavity.Bant -= U(r, 8, 14);
  p->cavity.Bpost -= U(r, 10, 18);
  p->cavity.n = 2 + (b.n - 2) * 0.6f;
  p->body_dAdz = U(r, -0.0008, 0.0008);
  p->info.body_width_mm = 2 * A;
  p->info.body_depth_mm = Bant + Bpost;
}

static void draw_spine(ctp_phantom *p, rng_t *r) {
  p->spine_x = U(r, -4, 4);
  /* Lumbar bodies are 40-60 mm wide and 30-42 mm deep (L1 to L4, small
   * to large adults); HCC_002's are at the top of that. */
  p->vb_a = U(r, 20, 30);
  p->vb_b = U(r, 15, 21);
  /* From the back's muscle surface: paraspinal muscles, the arch, the
   * canal, then the vertebral body. */
  p->spine_y = fmaxf(p->muscle.Bpost - U(r, 62, 85),
                     -p->cavity.Bant + p->vb_b + 45);
  p->cortical_mm = U(r, 1.2, 3.0);
  p->canal_r = U(r, 7, 10);
  p->canal_dy = p->canal_r + U(r, 1.5, 3.5);
  p->vert_period = U(r, 30, 38);
  p->vert_phase = U(r, 0, p->vert_period);
  p->disc_h = U(r, 6, 10);
  /* Endplates are a dense plate above and below each disc (thicker with
   * age and sclerosis); at 1-5 mm slices they show as a whole dense
   * section. The arch, pedicles and facets are mostly cortical bone. */
  p->endplate_mm = U(r, 1.0, 3.5);
  p->arch_mm = U(r, 5.5, 9);
  p->facet_r = U(r, 5, 8.5);
  p->osteophyte_r = rng_chance(r, 0.4) ? U(r, 2.5, 7) : 0;
  float back = p->muscle.Bpost - (p->spine_y + p->vb_b + p->canal_dy +
                                  p->canal_r);
  p->spinous_len = clampf(back - U(r, 8, 20), 12, 50);
  p->transverse_len = U(r, 18, 32);
}

/* ---- drawing: kidneys -------------------------------------------------- */

static void draw_kidney(ctp_phantom *p, rng_t *r, int k, float dk) {
  kidney *K = &p->kid[k];
  float side = k ? 1.0f : -1.0f; /* right kidney at x < 0 */
  K->hz = U(r, 48, 62);
  K->z0 = side * dk / 2;
  K->a = U(r, 26, 33);
  K->b = U(r, 19, 25);
  float x = p->vb_a + U(r, 30, 48);
  float xmax = p->cavity.A - 0.8f * K->a - 8;
  K->x0 = p->spine_x + side * fminf(x, xmax);
  K->y0 = p->spine_y + U(r, -8, 14);
  K->dxdz = -side * U(r, 0.05, 0.22);
  K->dydz = U(r, 0.05, 0.25);
  float axis = U(r, 60, 85) * (float)PI / 180;
  K->rot = k ? (float)PI - axis : axis;
  K->pexp = U(r, 1.9, 2.6);
  harmonics(r, K->h, 0.03f);
  K->hil_dir = (float)(k ? PI / 2 : -PI / 2) + U(r, -0.3, 0.3);
  K->hil_u = U(r, -0.2, 0.05);
  K->hil_w = U(r, 0.2, 0.32);
  K->sinus_u = U(r, 0.55, 0.72);
  K->sinus_a = U(r, 0.25, 0.35);
  K->sinus_b = U(r, 0.35, 0.5);
  K->calyx_u = U(r, 0.74, 0.88);
  K->pelvis = rng_chance(r, 0.2) ? U(r, 0.3, 0.42) : U(r, 0.12, 0.3);
  K->cortex_mm = U(r, 4.5, 8);
  /* Pyramids in three tiers (upper, middle, lower), four or five around
   * the kidney in each, leaving the hilum free and columns of Bertin
   * between them. */
  int m = rng_int(r, 4, 5);
  float arc = 2 * (float)PI - 1.4f;
  K->npyr = 0;
  for (int tier = -1; tier <= 1; tier++)
    for (int i = 0; i < m; i++) {
      pyramid *py = &K->pyr[K->npyr++];
      py->theta = K->hil_dir + 0.7f +
                  arc * ((float)i + 0.5f + U(r, -0.2, 0.2)) / (float)m;
      py->z = ((float)tier * 0.55f + U(r, -0.08, 0.08)) * K->hz;
      py->hz = U(r, 0.25, 0.38) * K->hz;
      py->w = U(r, 0.32, 0.45) * arc / (float)m / 1.2f;
    }
  /* A quarter of kidneys hold 1-3 dense foci in the sinus, bright in every
   * phase: stones (300-1100 HU) and calcified sinus arteries are common in
   * the adults scanned; HCC_002 has one. Without them any bright dot in a
   * sinus would mean excreted contrast. */
  K->nstones = rng_chance(r, 0.25) ? rng_int(r, 1, MAX_STONES) : 0;
  float norm = sqrtf(K->a * K->b);
  for (int i = 0; i < K->nstones; i++) {
    /* Round (a stone, 60%) or a tube along the sinus (a calcified artery,
     * 6-20 mm in the plane, over 5-25 mm of z). */
    int tube = rng_chance(r, 0.4);
    K->st_u[i] = U(r, -0.8, 0.8) * K->sinus_u;
    K->st_du[i] = (tube ? U(r, 2.5, 12.5) : U(r, 1.5, 5)) / K->hz;
    K->st_fx[i] = U(r, -0.6, 0.6);
    K->st_fy[i] = U(r, -0.6, 0.6);
    K->st_r[i] = (tube ? U(r, 0.8, 2.2) : U(r, 1.0, 3.5)) / norm;
    K->st_len[i] = tube ? U(r, 6, 20) / norm : 0;
    K->st_ang[i] = U(r, 0, (float)PI);
  }
}

/* A point on a kidney at its hilum's level, `out` along the hilum's
 * direction in the normalised frame (1: the outline). */
static void hilum_point(const kidney *K, float out, float dz, float *pt) {
  float z = K->z0 + K->hil_u * K->hz + dz;
  pt[2] = z;
  if (!anatomy_kidney_point(K, z, out * cosf(K->hil_dir),
                            out * sinf(K->hil_dir), &pt[0], &pt[1])) {
    pt[0] = K->x0;
    pt[1] = K->y0;
  }
}

static void set_capsule(capsule *c, const float *a, const float *b, float r) {
  memcpy(c->p0, a, sizeof c->p0);
  memcpy(c->p1, b, sizeof c->p1);
  c->r = r;
}

static void add_vessel(ctp_phantom *p, const float *a, const float *b,
                       float r, int tissue) {
  if (p->nvessels >= MAX_VESSELS) return;
  set_capsule(&p->vessels[p->nvessels], a, b, r);
  p->vessel_tissue[p->nvessels++] = (uint8_t)tissue;
}

/* Centre and radius of a psoas at z. */
static void psoas_at(const solid *o, float z, float *x, float *y, float *b) {
  float f = 1.0f + o->grow * (z - o->z0);
  *x = o->x0 + o->dxdz * (z - o->z0);
  *y = o->y0 + o->dydz * (z - o->z0);
  *b = o->b * f;
}

/* ---- drawing: muscles, ribs, organs, vessels, bowel -------------------- */

static void draw_muscles(ctp_phantom *p, rng_t *r, float top, float bot) {
  for (int k = 0; k < 2; k++) {
    float side = k ? 1.0f : -1.0f;
    solid *o = &p->psoas[k];
    memset(o, 0, sizeof *o);
    float rb = U(r, 14, 22), rt = U(r, 3, 8);
    o->profile = PROF_CYL;
    o->zlo = bot - 60;
    o->zhi = top + 60;
    o->z0 = bot;
    o->grow = (rt / rb - 1) / (top - bot);
    o->a = rb;
    o->b = rb * U(r, 0.8, 1.0);
    o->x0 = p->spine_x + side * (p->vb_a + 0.8f * rb);
    o->dxdz = side * 0.8f * rb * o->grow;
    o->y0 = p->spine_y + U(r, -4, 6);
    o->rot = U(r, -0.3, 0.3);
    harmonics(r, o->h, 0.04f);
  }
  /* Paraspinal muscles fill the back beside the spinous processes; the
   * quadratus lumborum lies lateral to them, growing downwards. */
  for (int k = 0; k < 2; k++) {
    float side = k ? 1.0f : -1.0f;
    solid *o = &p->paraspinal[k];
    memset(o, 0, sizeof *o);
    o->profile = PROF_CYL;
    o->zlo = bot - 60;
    o->zhi = top + 60;
    o->z0 = 0.5f * (top + bot);
    o->a = U(r, 20, 30);
    o->b = 0.5f * (p->muscle.Bpost - (p->spine_y + p->vb_b)) * U(r, 0.9, 1.1);
    o->x0 = p->spine_x + side * (o->a + U(r, -2, 5));
    o->y0 = p->muscle.Bpost - o->b * U(r, 0.85, 1.0);
    o->rot = side * U(r, -0.1, 0.25);
    harmonics(r, o->h, 0.05f);
    solid *q = &p->quadratus[k];
    memset(q, 0, sizeof *q);
    q->profile = PROF_CYL;
    q->zlo = bot - 60;
    q->zhi = top + 60;
    q->z0 = bot;
    q->a = U(r, 14, 22);
    q->b = U(r, 7, 12);
    q->grow = -0.5f / (top - bot);
    q->x0 = p->spine_x + side * (p->vb_a + U(r, 28, 40));
    q->y0 = p->spine_y + p->vb_b + U(r, 5, 15);
    q->rot = side * U(r, 0.2, 0.6);
    harmonics(r, q->h, 0.05f);
  }
  /* Ribs 12, 11, 10 on each side, each higher and longer. */
  p->nribs = 0;
  for (int k = 0; k < 2; k++) {
    float z = p->kid[k].z0 + p->kid[k].hz * U(r, 0.2, 0.9);
    static const float a1[3][2] = {{1.2f, 1.7f}, {1.8f, 2.3f}, {2.3f, 2.7f}};
    static const float dr[3][2] = {{25, 45}, {40, 60}, {50, 70}};
    for (int j = 0; j < 3; j++) {
      if (j == 0 && !rng_chance(r, 0.9)) { z += U(r, 22, 32); continue; }
      rib *rb = &p->ribs[p->nribs++];
      rb->side = k ? 1 : -1;
      rb->z0 = z;
      rb->ang0 = U(r, 0.35, 0.55);
      rb->ang1 = U(r, a1[j][0], a1[j][1]);
      rb->drop = U(r, dr[j][0], dr[j][1]);
      rb->r = U(r, 3.5, 5);
      z += U(r, 22, 32);
    }
  }
}

static void draw_organs(ctp_phantom *p, rng_t *r, float top) {
  const ring *c = &p->cavity;
  /* Liver: fills the right upper abdomen and tapers to its tip (low in
   * some patients: a Riedel lobe), drifting laterally and backwards. */
  solid *L = &p->liver;
  memset(L, 0, sizeof *L);
  const kidney *KR = &p->kid[0], *KL = &p->kid[1];
  L->profile = PROF_TAPER;
  L->zlo = KR->z0 + KR->hz * (rng_chance(r, 0.1) ? U(r, -0.9, -0.4)
                                                 : U(r, -0.4, 0.5));
  L->zhi = L->zlo + U(r, 50, 90);
  L->z0 = L->zhi;
  L->x0 = -c->A * U(r, 0.3, 0.45);
  L->y0 = -c->Bant * U(r, 0, 0.2);
  L->a = c->A * U(r, 0.55, 0.75);
  L->b = 0.5f * (c->Bant + c->Bpost) * U(r, 0.75, 1.0);
  L->rot = U(r, -0.3, 0.3);
  L->dxdz = c->A * 0.3f / (L->zhi - L->zlo);
  L->dydz = -c->Bpost * 0.3f / (L->zhi - L->zlo);
  harmonics(r, L->h, 0.06f);

  solid *S = &p->spleen;
  memset(S, 0, sizeof *S);
  S->profile = PROF_TAPER;
  S->zlo = KL->z0 + KL->hz * U(r, -0.1, 0.7);
  S->zhi = S->zlo + U(r, 35, 70);
  S->z0 = S->zhi;
  S->x0 = c->A * U(r, 0.55, 0.72);
  S->y0 = p->spine_y + U(r, -5, 25);
  S->a = U(r, 40, 60);
  S->b = U(r, 18, 30);
  S->rot = -U(r, 0.7, 1.2);
  S->dydz = U(r, 0.1, 0.4);
  harmonics(r, S->h, 0.06f);

  p->has_gallbladder = rng_chance(r, 0.5);
  solid *G = &p->gallbladder;
  memset(G, 0, sizeof *G);
  G->profile = PROF_ELLIPSOID;
  G->pexp = 2;
  G->x0 = L->x0 + L->a * 0.3f;
  G->y0 = L->y0 - L->b * 0.45f;
  G->zlo = L->zlo + 10;
  G->zhi = G->zlo + U(r, 40, 70);
  G->z0 = 0.5f * (G->zlo + G->zhi);
  G->a = U(r, 12, 20);
  G->b = U(r, 10, 16);
  G->rot = U(r, -0.6, 0.6);

  /* Portal branches inside the liver. */
  p->nbranches = rng_int(r, 3, 8);
  for (int i = 0; i < p->nbranches; i++) {
    float z = U(r, L->zlo + 20, fmaxf(L->zlo + 25, top + 20));
    float x = L->x0 + L->dxdz * (z - L->z0) + U(r, -0.5, 0.5) * L->a;
    float y = L->y0 + L->dydz * (z - L->z0) + U(r, -0.5, 0.5) * L->b;
    float ang = U(r, 0, 2 * PI), len = U(r, 20, 50), el = U(r, -0.8, 0.8);
    float a[3] = {x, y, z};
    float b[3] = {x + len * cosf(ang), y + len * sinf(ang), z + len * el};
    set_capsule(&p->branches[i], a, b, U(r, 2, 5));
  }

  /* Renal cysts. */
  p->ncysts = rng_chance(r, 0.25) ? rng_int(r, 1, MAX_CYSTS) : 0;
  for (int i = 0; i < p->ncysts; i++) {
    const kidney *K = &p->kid[rng_int(r, 0, 1)];
    float z = K->z0 + U(r, -0.8, 0.8) * K->hz;
    float ang = U(r, 0, 2 * PI), rho = U(r, 0.3, 1.1);
    float pt[3] = {K->x0, K->y0, z};
    anatomy_kidney_point(K, z, rho * cosf(ang), rho * sinf(ang), &pt[0],
                         &pt[1]);
    set_capsule(&p->cysts[i], pt, pt, U(r, 4, 22));
  }
}

static void draw_vessels(ctp_phantom *p, rng_t *r, float top, float bot) {
  const kidney *KR = &p->kid[0], *KL = &p->kid[1];
  float ra = U(r, 8.5, 13);
  float ax = p->spine_x + U(r, 6, 18);
  float ay = p->spine_y - p->vb_b - ra - U(r, 1, 5);
  solid *A = &p->aorta;
  memset(A, 0, sizeof *A);
  A->profile = PROF_CYL;
  A->zlo = bot - 80;
  A->zhi = top + 80;
  A->z0 = 0.5f * (top + bot);
  A->x0 = ax;
  A->y0 = ay;
  A->a = A->b = ra;
  A->grow = U(r, 0, 0.001);
  A->dxdz = -U(r, 0, 0.06);
  A->dydz = U(r, -0.04, 0.04);

  solid *V = &p->ivc;
  memset(V, 0, sizeof *V);
  V->profile = PROF_CYL;
  V->zlo = bot - 80;
  V->zhi = top + 80;
  V->z0 = A->z0;
  V->a = U(r, 10, 15);
  V->b = U(r, 6, 11);
  V->x0 = p->spine_x - U(r, 16, 28) - 0.3f * V->a;
  V->y0 = p->spine_y - p->vb_b - V->b - U(r, 3, 12);
  V->rot = U(r, -0.3, 0.3);
  V->dxdz = U(r, -0.04, 0.04);
  V->dydz = U(r, -0.04, 0.04);
  harmonics(r, V->h, 0.05f);
  float vx = V->x0, vy = V->y0;

  p->ncalcs = rng_chance(r, 0.35) ? rng_int(r, 1, MAX_CALCS) : 0;
  for (int i = 0; i < p->ncalcs; i++) {
    float phi = (float)PI / 2 + U(r, -1.6, 1.6), z = U(r, bot, top);
    float x = ax + (ra - 1) * cosf(phi), y = ay + (ra - 1) * sinf(phi);
    float a[3] = {x, y, z}, b[3] = {x, y, z - U(r, 2, 12)};
    set_capsule(&p->calcs[i], a, b, U(r, 0.8, 2));
  }

  /* Renal veins: the left passes in front of the aorta (under the SMA)
   * into the IVC; above it the IVC carries renal blood. */
  p->nvessels = 0;
  float rl = U(r, 4, 6), hl[3], hr[3], m[3], e[3];
  hilum_point(KL, 0.9f, 0, hl);
  m[0] = ax; m[1] = ay - ra - rl - 1; m[2] = hl[2] + U(r, 0, 8);
  e[0] = vx; e[1] = vy; e[2] = m[2] + U(r, 2, 6);
  add_vessel(p, hl, m, rl, T_RENAL_VEIN);
  add_vessel(p, m, e, rl, T_RENAL_VEIN);
  p->ivc_supra_z = e[2];
  hilum_point(KR, 0.9f, 0, hr);
  e[2] = hr[2] + U(r, 0, 6);
  add_vessel(p, hr, e, U(r, 4, 6), T_RENAL_VEIN);

  /* Renal arteries behind the veins; the right one behind the IVC. */
  float rra = U(r, 2.5, 3.5);
  float o[3] = {ax + ra * 0.6f, ay + 2, hl[2] + U(r, 8, 18)};
  hilum_point(KL, 0.8f, 2, e);
  e[1] += 4;
  add_vessel(p, o, e, rra, T_ARTERY);
  float o2[3] = {ax - ra * 0.6f, ay + 2, hr[2] + U(r, 8, 18)};
  float mid[3] = {vx, vy + V->b + rra + 2, hr[2] + 6};
  hilum_point(KR, 0.8f, 2, e);
  e[1] += 4;
  add_vessel(p, o2, mid, rra, T_ARTERY);
  add_vessel(p, mid, e, rra, T_ARTERY);

  /* SMA, the portal confluence, SMV, portal and splenic veins. */
  float rs = U(r, 3, 4.2);
  float sma_y = ay - ra - 2 * rl - 3 - rs;
  float zs = p->ivc_supra_z + U(r, 8, 25);
  float s0[3] = {ax, ay, zs}, s1[3] = {ax - 1, sma_y, zs - 12};
  float s2[3] = {ax - U(r, 0, 8), sma_y - U(r, 0, 10), bot - 30};
  add_vessel(p, s0, s1, rs, T_ARTERY);
  add_vessel(p, s1, s2, rs, T_ARTERY);
  float zc = zs + U(r, -5, 15);
  float cf[3] = {ax - U(r, 12, 20), sma_y - U(r, 6, 12), zc};
  float smv[3] = {cf[0] - U(r, 0, 6), cf[1] + U(r, -5, 5), bot - 30};
  add_vessel(p, cf, smv, U(r, 4, 6), T_PORTAL);
  float pv[3] = {-p->cavity.A * U(r, 0.25, 0.4), cf[1] + U(r, -5, 10),
                 zc + U(r, 35, 60)};
  add_vessel(p, cf, pv, U(r, 6, 8), T_PORTAL);
  float sv[3] = {p->spleen.x0 - 0.4f * p->spleen.a,
                 p->spine_y - p->vb_b + U(r, -10, 5), zc + U(r, 5, 20)};
  add_vessel(p, cf, sv, U(r, 3.5, 5), T_PORTAL);

  /* Pancreas: body and tail along the splenic vein, head by the SMV. */
  p->has_pancreas = rng_chance(r, 0.9);
  float b0[3] = {cf[0] + 5, cf[1] - 12, zc + 3};
  float b1[3] = {sv[0] - 5, sv[1] - 12, sv[2] + 2};
  set_capsule(&p->pancreas[0], b0, b1, U(r, 8, 13));
  float h0[3] = {cf[0] - 8, cf[1] - 8, zc};
  float h1[3] = {cf[0] - U(r, 15, 25), cf[1] - U(r, 0, 8), zc - U(r, 25, 45)};
  set_capsule(&p->pancreas[1], h0, h1, U(r, 11, 16));
  float u0[3] = {cf[0] - 10, cf[1] + 5, zc - 20};
  float u1[3] = {cf[0], cf[1] + 8, zc - 35};
  set_capsule(&p->pancreas[2], u0, u1, 7);

  /* Ureters: from the pelvis at the hilum's lower edge down along the
   * front of the psoas. */
  for (int k = 0; k < 2; k++) {
    const kidney *K = &p->kid[k];
    float ru = U(r, 2, 3.5);
    float z = K->z0 + (K->hil_u - K->hil_w) * K->hz;
    float a[3] = {K->x0, K->y0, z};
    float d = 0.25f; /* the pelvis centre at the hilum's edge (anatomy.c) */
    anatomy_kidney_point(K, z, d * cosf(K->hil_dir), d * sinf(K->hil_dir),
                         &a[0], &a[1]);
    float b[3], c[3], bx, by, bb;
    psoas_at(&p->psoas[k], z - 40, &bx, &by, &bb);
    b[0] = bx + (k ? 1.0f : -1.0f) * U(r, 0, 6);
    b[1] = by - bb - ru - 2;
    b[2] = z - 40;
    psoas_at(&p->psoas[k], bot - 30, &bx, &by, &bb);
    c[0] = bx;
    c[1] = by - bb - ru - 2;
    c[2] = bot - 30;
    add_vessel(p, a, b, ru, T_URINE);
    add_vessel(p, b, c, ru, T_URINE);
  }
}

static int loop_collides(const ctp_phantom *p, float x, float y, float z,
                         float R) {
  for (int k = 0; k < 2; k++) {
    const kidney *K = &p->kid[k];
    float cx, cy;
    if (anatomy_kidney_point(K, z, 0, 0, &cx, &cy) &&
        hypotf(x - cx, y - cy) < fmaxf(K->a, K->b) + R + 4)
      return 1;
  }
  if (hypotf(x - p->aorta.x0, y - p->aorta.y0) < p->aorta.a + R + 10) return 1;
  if (hypotf(x - p->ivc.x0, y - p->ivc.y0) < p->ivc.a + R + 10) return 1;
  return 0;
}

static int loop_content(rng_t *r, int oral, int colon) {
  double u = rng_u01(r);
  if (colon) {
    if (oral && u < 0.25) return LOOP_ORAL_DILUTE;
    u = rng_u01(r);
    return u < 0.55 ? LOOP_FECES : u < 0.75 ? LOOP_GAS
                                            : u < 0.9 ? LOOP_LEVEL : LOOP_FLUID;
  }
  if (oral && u < 0.8) return u < 0.55 ? LOOP_ORAL : LOOP_ORAL_DILUTE;
  u = rng_u01(r);
  return u < 0.5 ? LOOP_FLUID : u < 0.8 ? LOOP_LEVEL : LOOP_GAS;
}

static void draw_bowel(ctp_phantom *p, rng_t *r, float top, float bot) {
  const ring *c = &p->cavity;
  int oral = p->info.oral_contrast;
  p->nloops = 0;
  /* Colon: ascending and descending, sometimes the transverse. */
  for (int k = 0; k < 3; k++) {
    if (!rng_chance(r, k < 2 ? 0.9 : 0.6)) continue;
    bowel_loop *L = &p->loops[p->nloops++];
    memset(L, 0, sizeof *L);
    solid *s = &L->s;
    s->profile = PROF_ELLIPSOID;
    float rr = k == 0 ? U(r, 14, 25) : U(r, 10, 20);
    s->a = rr * U(r, 1, 1.3);
    s->b = rr;
    if (k < 2) {
      const kidney *K = &p->kid[k];
      float side = k ? 1.0f : -1.0f;
      s->pexp = 6;
      s->zlo = bot - 40;
      s->zhi = top + U(r, -30, 40);
      s->x0 = side * (c->A - rr - U(r, 2, 10));
      s->y0 = k ? K->y0 - U(r, 0, 20) : K->y0 - K->b - rr - U(r, 0, 15);
      s->dxdz = U(r, -0.1, 0.1);
      s->dydz = U(r, -0.1, 0.1);
    } else {
      float zc = U(r, top - 40, top + 10), hz = U(r, 12, 22);
      s->pexp = 2.5f;
      s->zlo = zc - hz;
      s->zhi = zc + hz;
      s->a = U(r, 40, 80);
      s->x0 = U(r, -20, 20);
      s->y0 = -c->Bant + s->b + U(r, 3, 15);
    }
    s->z0 = 0.5f * (s->zlo + s->zhi);
    s->rot = k < 2 ? U(r, -0.5, 0.5) : U(r, -0.2, 0.2);
    harmonics(r, s->h, 0.08f);
    L->wall = U(r, 1.5, 3);
    L->content = loop_content(r, oral, 1);
    L->level = U(r, -0.6, 0.4);
  }
  /* Small bowel loops in front of the retroperitoneum. */
  int n = rng_int(r, 18, 30);
  for (int i = 0; i < n && p->nloops < MAX_LOOPS; i++) {
    float rr = U(r, 9, 20), x = 0, y = 0, z = 0;
    int ok = 0;
    for (int tries = 0; tries < 30 && !ok; tries++) {
      x = U(r, -0.8, 0.8) * c->A;
      y = U(r, -c->Bant + rr + 2, p->spine_y - p->vb_b - 10);
      z = U(r, bot - 10, top + 10);
      ok = !loop_collides(p, x, y, z, rr);
    }
    if (!ok) continue;
    bowel_loop *L = &p->loops[p->nloops++];
    memset(L, 0, sizeof *L);
    solid *s = &L->s;
    float hz = U(r, 15, 60);
    s->profile = PROF_ELLIPSOID;
    s->pexp = U(r, 2, 4);
    s->zlo = z - hz;
    s->zhi = z + hz;
    s->z0 = z;
    s->x0 = x;
    s->y0 = y;
    s->a = rr * U(r, 1, 2.5);
    s->b = rr;
    s->rot = U(r, 0, PI);
    s->dxdz = U(r, -0.4, 0.4);
    s->dydz = U(r, -0.4, 0.4);
    harmonics(r, s->h, 0.08f);
    L->wall = U(r, 1.5, 3);
    L->content = loop_content(r, oral, 0);
    L->level = U(r, -0.6, 0.4);
  }
  p->info.num_bowel_loops = p->nloops;
  /* Mesenteric vessels: small arteries and veins in the fat. */
  int nm = rng_int(r, 4, 12);
  for (int i = 0; i < nm; i++) {
    float x = U(r, -0.6, 0.6) * c->A;
    float y = U(r, -c->Bant + 15, p->spine_y - p->vb_b - 15);
    float z = U(r, bot, top), len = U(r, 20, 60);
    float a[3] = {x, y, z};
    float b[3] = {x + U(r, -15, 15), y + U(r, -15, 15), z - len};
    add_vessel(p, a, b, U(r, 1.2, 2.5), rng_chance(r, 0.5) ? T_ARTERY
                                                           : T_PORTAL);
  }
}

/* ---- drawing: acquisition ---------------------------------------------- */

static const float thicknesses[] = {1, 1.25f, 1.5f, 2, 2.5f, 3, 3.75f, 5};
#define NTHICK (int)(sizeof thicknesses / sizeof thicknesses[0])

static void draw_acquisition(ctp_phantom *p, rng_t *r, float top, float bot,
                             int nslices, int size) {
  ctp_phantom_info *in = &p->info;
  float span = top - bot, mid = 0.5f * (top + bot), th, spacing;
  int n;
  if (nslices > 0) {
    n = nslices;
    spacing = (float)(round(span / n * 1000.0) / 1000.0);
    /* A thickness plausible for this spacing (overlapping or gapped
     * reconstructions both exist), from the usual values. */
    float lo = fmaxf(1, 0.5f * spacing), hi = fminf(5, 2 * spacing);
    int cand[NTHICK], nc = 0;
    for (int i = 0; i < NTHICK; i++)
      if (thicknesses[i] >= lo && thicknesses[i] <= hi) cand[nc++] = i;
    th = nc ? thicknesses[cand[rng_int(r, 0, nc - 1)]]
            : (spacing < 1 ? 1.0f : 5.0f);
  } else {
    th = thicknesses[rng_int(r, 0, NTHICK - 1)];
    spacing = th;
    n = (int)lrintf(span / th);
    if (n < 1) n = 1;
  }
  in->num_slices = n;
  in->slice_thickness = th;
  in->slice_spacing = spacing;
  p->z_top = mid + 0.5f * (float)(n - 1) * spacing;

  /* Field of view: chosen to fit the body, as technologists do. */
  float wmax = p->body.A * (1 + fabsf(p->body.asym)) * 2;
  /* Tags carry round numbers: 4 decimals for 512 columns. */
  double sp512 = round(clampf(wmax * U(r, 1.02, 1.35) / 512, 0.6f, 0.9f) *
                       1e4) / 1e4;
  in->pixel_spacing = round(sp512 * 512.0 / size * 1e6) / 1e6;
  p->sp = (float)in->pixel_spacing;
  in->rows = in->columns = size;
  p->body_cx = U(r, -15, 15);
  p->body_cy = U(r, -20, 35);

  p->table_pad = U(r, 2, 25);
  p->table_top = p->body.Bpost + 0.8f * p->table_pad;
  p->table_r = U(r, 350, 900);
  p->table_shell = U(r, 2, 5);
  p->table_half_w = U(r, 200, 260);
  p->table_base_dy = U(r, 40, 90);
  in->table_height_mm = p->table_top + p->body_cy;

  double u = rng_u01(r);
  in->kvp = u < 0.2 ? 100 : u < 0.85 ? 120 : 140;
  in->head_first = rng_chance(r, 0.7);
  in->signed_storage = rng_chance(r, 0.35);
  p->noise_sd = U(r, 8, 32);
  p->noise_grain = U(r, 0.35, 1.4);
  p->noise_dog = rng_chance(r, 0.6) ? U(r, 0.2, 0.6) : 0;
  p->noise_center = U(r, 0, 0.35);
  p->blur_sigma = U(r, 0.4, 1.0);
  p->cupping = U(r, 0, 12);
  in->noise_sd = p->noise_sd;
  in->noise_grain = p->noise_grain;
  in->blur_sigma = p->blur_sigma;
  in->table_speed_mm_s = U(r, 15, 60);

  /* DICOM placement: the reconstruction centre sits near the isocentre;
   * the table's z offset is arbitrary. */
  float recon_x = U(r, -10, 10), recon_y = U(r, -10, 10);
  in->position_x = round((recon_x - 0.5 * (size - 1) * in->pixel_spacing) *
                         1e3) / 1e3;
  in->position_y = round((recon_y - 0.5 * (size - 1) * in->pixel_spacing) *
                         1e3) / 1e3;
  in->first_z = round((p->z_top + U(r, -250, 150)) * 10.0) / 10.0;

  p->nstreaks = rng_chance(r, 0.3) ? rng_int(r, 1, MAX_STREAKS) : 0;
  for (int i = 0; i < p->nstreaks; i++) {
    streak *s = &p->streaks[i];
    int from_spine = rng_chance(r, 0.6);
    s->x = from_spine ? p->spine_x : U(r, -0.6, 0.6) * p->cavity.A;
    s->y = from_spine ? p->spine_y : U(r, -0.6, 0.2) * p->cavity.Bant;
    s->ang = U(r, 0, PI);
    s->amp = (rng_chance(r, 0.7) ? -1.0f : 1.0f) * U(r, 15, 70);
    s->width = U(r, 0.4, 1.5);
    s->decay = U(r, 60, 250);
  }
  in->num_streaks = p->nstreaks;
}

/* ---- ctp_phantom_new ---------------------------------------------------- */

int ctp_phantom_new(ctp_phantom **out, const ctp_phantom_opts *o) {
  *out = NULL;
  if (!o) return ctp_seterr(CTP_EINVAL, "phantom: no options");
  if (o->phase < -1 || o->phase >= CTP_NUM_CLASSES)
    return ctp_seterr(CTP_EINVAL, "phantom: phase %d out of range", o->phase);
  if (o->phase == -1 &&
      !(isfinite(o->time_s) && o->time_s <= CTP_PHANTOM_MAX_TIME_S))
    return ctp_seterr(CTP_EINVAL, "phantom: time after injection %g s out of "
                      "range (at most %g)", o->time_s, CTP_PHANTOM_MAX_TIME_S);
  int size = o->size ? o->size : CTP_PHANTOM_DEFAULT_SIZE;
  if (size < CTP_PHANTOM_MIN_SIZE || size > CTP_PHANTOM_MAX_SIZE)
    return ctp_seterr(CTP_EINVAL, "phantom: size %d outside %d..%d", size,
                      CTP_PHANTOM_MIN_SIZE, CTP_PHANTOM_MAX_SIZE);
  if (o->num_slices < 0 || o->num_slices > CTP_PHANTOM_MAX_SLICES)
    return ctp_seterr(CTP_EINVAL, "phantom: slice count %d outside 0..%d",
                      o->num_slices, CTP_PHANTOM_MAX_SLICES);
  ctp_phantom *p = calloc(1, sizeof *p);
  if (!p) return ctp_seterr(CTP_ENOMEM, "phantom: out of memory");
  ctp_phantom_info *in = &p->info;
  in->seed = o->seed;

  /* Time after injection and the label that follows from it. */
  rng_t rt = rng_stream(o->seed, TAG_TIME, 0);
  double t = o->time_s;
  if (o->phase >= 0) {
    double lo, hi;
    ctp_phantom_time_window(o->phase, &lo, &hi);
    t = o->phase == CTP_PHASE_NONCON ? -1.0 : rng_uni(&rt, lo, hi);
  }
  if (t < 0) t = -1.0;
  in->time_s = t;
  in->phase = ctp_phantom_phase_of_time(t);

  /* The patient. */
  rng_t ra = rng_stream(o->seed, TAG_ANATOMY, 0);
  draw_body(p, &ra);
  draw_spine(p, &ra);
  float dk = U(&ra, -5, 25);
  draw_kidney(p, &ra, 0, dk);
  draw_kidney(p, &ra, 1, dk);
  /* The series covers the kidneys and up to 3 cm beyond each pole, as
   * real "kidney" series often reach into the liver above and the lower
   * abdomen below (where the phase must be read from vessels and organs). */
  float top = fmaxf(p->kid[0].z0 + p->kid[0].hz, p->kid[1].z0 + p->kid[1].hz) +
              U(&ra, 0, 30);
  float bot = fminf(p->kid[0].z0 - p->kid[0].hz, p->kid[1].z0 - p->kid[1].hz) -
              U(&ra, 0, 30);
  in->oral_contrast = rng_chance(&ra, 0.6);
  p->oral_hu = in->oral_contrast ? U(&ra, 150, 900) : 0;
  in->oral_contrast_hu = p->oral_hu;
  draw_muscles(p, &ra, top, bot);
  draw_organs(p, &ra, top);
  draw_vessels(p, &ra, top, bot);
  draw_bowel(p, &ra, top, bot);
  in->num_renal_cysts = p->ncysts;

  rng_t rq = rng_stream(o->seed, TAG_ACQ, 0);
  draw_acquisition(p, &rq, top, bot, o->num_slices, size);

  rng_t rk = rng_stream(o->seed, TAG_KINETICS, 0);
  kinetics_draw(p, &rk);
  in->cardiac_scale = p->cardiac;
  in->contrast_scale = p->dose;
  in->excretion_scale = p->excretion;
  in->effective_time_s = kinetics_time(p, t);
  *out = p;
  return 0;
}

void ctp_phantom_free(ctp_phantom *p) { free(p); }

const ctp_phantom_info *ctp_phantom_get_info(const ctp_phantom *p) {
  return &p->info;
}
