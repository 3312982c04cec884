/*
 * anatomy.c — paints one axial slice of the phantom as a tissue map.
 *
 * The patient drawn in phantom.c is a set of shapes in the body frame
 * (millimetres, see phantom_int.h): outlines of the body's layers, blobs
 * that drift and change size along z (organs, muscles, bowel loops, the
 * aorta), capsules (vessels, the ureters, ribs, calcifications) and the
 * kidneys, which have their own model. A slice is painted like a canvas,
 * from the outside in:
 *
 *   table -> body layers (skin, subcutaneous fat, muscle wall, the cavity
 *   filled with visceral fat) -> psoas, ribs -> liver, spleen, pancreas,
 *   gallbladder, portal branches -> bowel loops -> a fat halo around each
 *   kidney, then the kidneys (cortex, pyramids, sinus fat, calyces,
 *   pelvis) and their cysts -> spine -> vessels.
 *
 * Each shape paints only over the tissues in its "over" mask, so an organ
 * fills visceral fat but never cuts the muscle wall, and a vessel crossing
 * the renal sinus replaces sinus fat but not cortex. Every shape is only
 * visited inside its bounding box, so a slice costs little more than the
 * body's outline.
 *
 * The kidney. In a normalised frame (the cross-section's ellipse mapped to
 * the unit disc, its long axis along X) the slice shows: the outline with
 * small harmonics; the renal sinus, an ellipse pushed towards the hilum
 * (near the hilum's level it breaks through the outline: the hilar notch);
 * the pelvis at the hilum, which may bulge outside (extrarenal pelvis);
 * medullary pyramids, triangles in polar angle whose base lies under a
 * cortex of fixed thickness in millimetres and whose apex touches the
 * sinus; a calyx cupping each apex, joined to the pelvis by an
 * infundibulum. What is left is cortex, including the columns of Bertin
 * between pyramids. Near the poles the cortex of fixed thickness fills the
 * section, as it does in real kidneys.
 *
 * Called from the render threads: reads the phantom, writes only the
 * slice's own map.
 */
#include "phantom/phantom_int.h"

#include <math.h>
#include <string.h>

#define PI_F 3.14159265f

/* Tissues most shapes may replace: visceral fat and bowel. */
#define OVER_BOWEL                                                           \
  (TM(T_BOWEL_WALL) | TM(T_BOWEL_FLUID) | TM(T_BOWEL_GAS) | TM(T_ORAL) |    \
   TM(T_ORAL_DILUTE) | TM(T_FECES))
#define OVER_SOFT (TM(T_VFAT) | OVER_BOWEL)
#define OVER_ORGANS                                                          \
  (OVER_SOFT | TM(T_LIVER) | TM(T_SPLEEN) | TM(T_PANCREAS) |                 \
   TM(T_GALLBLADDER))
#define OVER_INSIDE                                                          \
  (OVER_ORGANS | TM(T_MUSCLE) | TM(T_SINUS_FAT) | TM(T_CORTEX) |             \
   TM(T_MEDULLA) | TM(T_URINE) | TM(T_CYST) | TM(T_AORTA) | TM(T_IVC) |      \
   TM(T_IVC_SUPRA) | TM(T_PORTAL) | TM(T_ARTERY) | TM(T_RENAL_VEIN))

/* ---- geometry helpers -------------------------------------------------- */

int ring_span(const ring *g, float y, float *xl, float *xr) {
  float B = y < 0 ? g->Bant : g->Bpost;
  float u = fabsf(y) / B;
  if (u >= 1.0f) return 0;
  float w = g->A * powf(1.0f - powf(u, g->n), 1.0f / g->n);
  w *= 1.0f + g->wob * sinf(g->wob_f * y / B + g->wob_ph);
  *xl = -w * (1.0f - g->asym);
  *xr = w * (1.0f + g->asym);
  return 1;
}

/* Columns j0..j1 (inclusive) whose centres lie in [xl, xr]; 0 if none. */
static int col_range(const slice_ctx *s, float xl, float xr, int *j0,
                     int *j1) {
  const struct ctp_phantom *p = s->p;
  float c = 0.5f * (float)(s->W - 1);
  float a = (xl + p->body_cx) / p->sp + c, b = (xr + p->body_cx) / p->sp + c;
  int lo = (int)ceilf(a), hi = (int)floorf(b);
  if (lo < 0) lo = 0;
  if (hi > s->W - 1) hi = s->W - 1;
  *j0 = lo;
  *j1 = hi;
  return lo <= hi;
}

static int row_range(const slice_ctx *s, float yt, float yb, int *i0,
                     int *i1) {
  const struct ctp_phantom *p = s->p;
  float c = 0.5f * (float)(s->H - 1);
  float a = (yt + p->body_cy) / p->sp + c, b = (yb + p->body_cy) / p->sp + c;
  int lo = (int)ceilf(a), hi = (int)floorf(b);
  if (lo < 0) lo = 0;
  if (hi > s->H - 1) hi = s->H - 1;
  *i0 = lo;
  *i1 = hi;
  return lo <= hi;
}

static int box(const slice_ctx *s, float x0, float x1, float y0, float y1,
               int *i0, int *i1, int *j0, int *j1) {
  return col_range(s, x0, x1, j0, j1) && row_range(s, y0, y1, i0, i1);
}

/* r(θ) of a blob, from the unit direction (c, s). */
static inline float blob_r(const float *h, float c, float s) {
  float c2 = c * c - s * s, s2 = 2 * c * s;
  float c3 = c2 * c - s2 * s, s3 = s2 * c + c2 * s;
  float c4 = c2 * c2 - s2 * s2, s4 = 2 * c2 * s2;
  return 1.0f + h[0] * c2 + h[1] * s2 + h[2] * c3 + h[3] * s3 + h[4] * c4 +
         h[5] * s4;
}

/* Normalised radius of (x, y) in a blob: < 1 inside, 1 on the outline. */
static inline float blob_q(const blob2 *b, float x, float y) {
  float dx = x - b->cx, dy = y - b->cy;
  float u = (dx * b->cr + dy * b->sr) / b->a;
  float v = (-dx * b->sr + dy * b->cr) / b->b;
  float r2 = u * u + v * v;
  if (r2 >= b->rmax * b->rmax) return sqrtf(r2) / b->rmax;
  if (r2 < 1e-12f) return 0.0f;
  float r = sqrtf(r2);
  return r / blob_r(b->h, u / r, v / r);
}

static void blob_set(blob2 *b, float cx, float cy, float a, float bb,
                     float rot, const float *h) {
  b->cx = cx;
  b->cy = cy;
  b->a = a;
  b->b = bb;
  b->cr = cosf(rot);
  b->sr = sinf(rot);
  float sum = 0;
  for (int k = 0; k < 6; k++) {
    b->h[k] = h ? h[k] : 0.0f;
    sum += fabsf(b->h[k]);
  }
  b->rmin = 1.0f - sum;
  b->rmax = 1.0f + sum;
}

/* The cross-section of a solid at z; 0 when the slice misses it. */
static int solid_at(const solid *o, float z, blob2 *b) {
  float f;
  switch (o->profile) {
    case PROF_CYL:
      if (z < o->zlo || z > o->zhi) return 0;
      f = 1.0f;
      break;
    case PROF_ELLIPSOID: {
      float zc = 0.5f * (o->zlo + o->zhi), hz = 0.5f * (o->zhi - o->zlo);
      float u = fabsf(z - zc) / hz;
      if (u >= 1.0f) return 0;
      f = powf(1.0f - powf(u, o->pexp), 1.0f / o->pexp);
      break;
    }
    default: /* PROF_TAPER */
      if (z <= o->zlo) return 0;
      f = z >= o->zhi ? 1.0f : sqrtf((z - o->zlo) / (o->zhi - o->zlo));
      break;
  }
  f *= 1.0f + o->grow * (z - o->z0);
  if (f <= 0.02f) return 0;
  blob_set(b, o->x0 + o->dxdz * (z - o->z0), o->y0 + o->dydz * (z - o->z0),
           o->a * f, o->b * f, o->rot, o->h);
  return 1;
}

static void paint_blob(slice_ctx *s, const blob2 *b, int t, uint64_t over) {
  float R = fmaxf(b->a, b->b) * b->rmax;
  int i0, i1, j0, j1;
  if (!box(s, b->cx - R, b->cx + R, b->cy - R, b->cy + R, &i0, &i1, &j0, &j1))
    return;
  for (int i = i0; i <= i1; i++) {
    uint8_t *row = s->tis + (size_t)i * s->W;
    float y = s->ys[i];
    for (int j = j0; j <= j1; j++)
      if ((over >> row[j] & 1) && blob_q(b, s->xs[j], y) < 1.0f) row[j] = (uint8_t)t;
  }
}

static void paint_solid(slice_ctx *s, const solid *o, int t, uint64_t over) {
  blob2 b;
  if (solid_at(o, s->z, &b)) paint_blob(s, &b, t, over);
}

/* Squared distance from a point to a capsule's axis (3-D). */
static inline float seg_d2(const capsule *c, float x, float y, float z) {
  float dx = c->p1[0] - c->p0[0], dy = c->p1[1] - c->p0[1],
        dz = c->p1[2] - c->p0[2];
  float px = x - c->p0[0], py = y - c->p0[1], pz = z - c->p0[2];
  float L2 = dx * dx + dy * dy + dz * dz;
  float t = L2 > 0 ? (px * dx + py * dy + pz * dz) / L2 : 0.0f;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  px -= t * dx;
  py -= t * dy;
  pz -= t * dz;
  return px * px + py * py + pz * pz;
}

/* Paints the capsule's cross-section with radius r (<= c->r allowed, for
 * walls and marrow). */
static void paint_capsule_r(slice_ctx *s, const capsule *c, float r, int t,
                            uint64_t over) {
  float z = s->z;
  float z0 = c->p0[2], z1 = c->p1[2];
  /* Parameter range of the axis within r of the slice. */
  float ta = 0, tb = 1;
  if (fabsf(z1 - z0) > 1e-6f) {
    ta = (z - r - z0) / (z1 - z0);
    tb = (z + r - z0) / (z1 - z0);
    if (ta > tb) { float q = ta; ta = tb; tb = q; }
    if (ta < 0) ta = 0;
    if (tb > 1) tb = 1;
    if (ta > tb) return;
  } else if (fabsf(z - z0) > r) {
    return;
  }
  float xa = c->p0[0] + ta * (c->p1[0] - c->p0[0]);
  float xb = c->p0[0] + tb * (c->p1[0] - c->p0[0]);
  float ya = c->p0[1] + ta * (c->p1[1] - c->p0[1]);
  float yb = c->p0[1] + tb * (c->p1[1] - c->p0[1]);
  int i0, i1, j0, j1;
  if (!box(s, fminf(xa, xb) - r, fmaxf(xa, xb) + r, fminf(ya, yb) - r,
           fmaxf(ya, yb) + r, &i0, &i1, &j0, &j1))
    return;
  float r2 = r * r;
  for (int i = i0; i <= i1; i++) {
    uint8_t *row = s->tis + (size_t)i * s->W;
    float y = s->ys[i];
    for (int j = j0; j <= j1; j++)
      if ((over >> row[j] & 1) && seg_d2(c, s->xs[j], y, z) < r2)
        row[j] = (uint8_t)t;
  }
}

static void paint_capsule(slice_ctx *s, const capsule *c, int t,
                          uint64_t over) {
  paint_capsule_r(s, c, c->r, t, over);
}

/* ---- body, table ------------------------------------------------------- */

/* A ring scaled for this slice (the body widens or narrows along z). */
static ring ring_at(const ring *g, float scale) {
  ring r = *g;
  r.A *= scale;
  return r;
}

static void paint_body(slice_ctx *s) {
  const struct ctp_phantom *p = s->p;
  float sc = 1.0f + p->body_dAdz * s->z;
  ring body = ring_at(&p->body, sc), skin = ring_at(&p->skin, sc),
       mus = ring_at(&p->muscle, sc), cav = ring_at(&p->cavity, sc);
  int i0, i1;
  if (!row_range(s, -body.Bant, body.Bpost, &i0, &i1)) return;
  for (int i = i0; i <= i1; i++) {
    uint8_t *row = s->tis + (size_t)i * s->W;
    float y = s->ys[i], xl, xr;
    int j0, j1;
    if (!ring_span(&body, y, &xl, &xr) || !col_range(s, xl, xr, &j0, &j1))
      continue;
    memset(row + j0, T_SKIN, (size_t)(j1 - j0 + 1));
    if (!ring_span(&skin, y, &xl, &xr) || !col_range(s, xl, xr, &j0, &j1))
      continue;
    memset(row + j0, T_FAT, (size_t)(j1 - j0 + 1));
    if (!ring_span(&mus, y, &xl, &xr) || !col_range(s, xl, xr, &j0, &j1))
      continue;
    memset(row + j0, T_MUSCLE, (size_t)(j1 - j0 + 1));
    if (!ring_span(&cav, y, &xl, &xr) || !col_range(s, xl, xr, &j0, &j1))
      continue;
    memset(row + j0, T_VFAT, (size_t)(j1 - j0 + 1));
  }
}

/* The table: a shallow curved carbon shell under the patient, a foam pad
 * on it and a flat base plate below. */
static void paint_table(slice_ctx *s) {
  const struct ctp_phantom *p = s->p;
  float R = p->table_r, yc = p->table_top - R, hw = p->table_half_w;
  int i0, i1, j0, j1;
  if (!box(s, -hw, hw, p->table_top - p->table_pad - 60.0f,
           p->table_top + p->table_base_dy + 4.0f, &i0, &i1, &j0, &j1))
    return;
  float Rin = R - p->table_pad, Rout = R + p->table_shell;
  for (int i = i0; i <= i1; i++) {
    uint8_t *row = s->tis + (size_t)i * s->W;
    float y = s->ys[i], dy = y - yc;
    int base = y >= p->table_top + p->table_base_dy &&
               y < p->table_top + p->table_base_dy + 3.0f;
    for (int j = j0; j <= j1; j++) {
      float x = s->xs[j];
      float d = sqrtf(x * x + dy * dy);
      if (d >= R && d < Rout) row[j] = T_TABLE;
      else if (d >= Rin && d < R && fabsf(x) < 0.92f * hw) row[j] = T_TABLE_PAD;
      else if (base && fabsf(x) < 0.75f * hw) row[j] = T_TABLE;
    }
  }
}

/* ---- spine, ribs ------------------------------------------------------- */

static void paint_spine(slice_ctx *s) {
  const struct ctp_phantom *p = s->p;
  float P = p->vert_period;
  float zz = fmodf(s->z - p->vert_phase, P);
  if (zz < 0) zz += P;
  int disc = zz < p->disc_h;
  float frac = (zz - p->disc_h) / (P - p->disc_h); /* 0..1 in the body */
  float to_disc = disc ? 0 : fminf(zz - p->disc_h, P - zz); /* mm */
  uint64_t over = OVER_INSIDE | TM(T_FAT);
  float sx = p->spine_x, sy = p->spine_y;
  static const float square[6] = {0.05f, 0, 0, 0, -0.02f, 0};
  blob2 b;
  if (disc) {
    blob_set(&b, sx, sy, p->vb_a * 1.04f, p->vb_b * 1.04f, 0, square);
    paint_blob(s, &b, T_DISC, over);
  } else {
    blob_set(&b, sx, sy, p->vb_a, p->vb_b, 0, square);
    paint_blob(s, &b, T_CORTICAL, over);
    /* Within the endplates the whole section is dense. */
    if (to_disc > p->endplate_mm) {
      blob_set(&b, sx, sy, p->vb_a - p->cortical_mm, p->vb_b - p->cortical_mm,
               0, square);
      paint_blob(s, &b, T_CANCELLOUS, TM(T_CORTICAL));
    }
  }
  /* Osteophytes: anterolateral spurs at the discs' margins. */
  if (p->osteophyte_r > 0 && to_disc < 4.0f)
    for (int side = -1; side <= 1; side += 2) {
      blob_set(&b, sx + side * 0.78f * p->vb_a, sy - 0.62f * p->vb_b,
               p->osteophyte_r, 0.8f * p->osteophyte_r, 0, NULL);
      paint_blob(s, &b, T_CORTICAL, over | TM(T_MUSCLE));
    }
  float cy = sy + p->vb_b + p->canal_dy;
  over |= TM(T_DISC);
  /* Facet joints: paired dense knobs behind the canal at the disc levels. */
  if (disc || frac < 0.18f || frac > 0.86f)
    for (int side = -1; side <= 1; side += 2) {
      blob_set(&b, sx + side * (p->canal_r + 0.5f * p->facet_r),
               cy + 0.55f * p->canal_r, p->facet_r, 1.2f * p->facet_r, 0, NULL);
      paint_blob(s, &b, T_POST_BONE, over | TM(T_MUSCLE));
    }
  if (!disc && frac > 0.08f && frac < 0.9f) {
    /* Neural arch, spinous and (mid-body) transverse processes. */
    blob_set(&b, sx, cy, p->canal_r + p->arch_mm, p->canal_r + p->arch_mm - 0.5f,
             0, NULL);
    paint_blob(s, &b, T_POST_BONE, over);
    capsule c = {{sx, cy + p->canal_r + 2, s->z},
                 {sx, cy + p->canal_r + p->spinous_len, s->z - 8.0f}, 3.5f};
    paint_capsule(s, &c, T_POST_BONE, over);
    if (frac > 0.3f && frac < 0.65f)
      for (int side = -1; side <= 1; side += 2) {
        capsule t = {{sx + side * (p->canal_r + 3), cy - 3, s->z},
                     {sx + side * (p->canal_r + 3 + p->transverse_len),
                      cy - 8, s->z}, 3.5f};
        paint_capsule(s, &t, T_POST_BONE, over);
      }
  }
  blob_set(&b, sx, cy, p->canal_r, p->canal_r * 0.85f, 0, NULL);
  paint_blob(s, &b, T_CANAL, over | TM(T_POST_BONE));
}

/* A rib crosses the slice where it descends through z: a short capsule
 * along the body wall (elongated because the rib runs obliquely). */
static void paint_ribs(slice_ctx *s) {
  const struct ctp_phantom *p = s->p;
  float A = p->muscle.A * (1.0f + p->body_dAdz * s->z);
  float Ap = A - 6.0f, Bp = p->muscle.Bpost - 6.0f, Ba = p->muscle.Bant - 6.0f;
  for (int k = 0; k < p->nribs; k++) {
    const rib *rb = &p->ribs[k];
    float f = (rb->z0 - s->z) / rb->drop;
    if (f < -0.05f || f > 1.0f) continue;
    if (f < 0) f = 0;
    float ang = rb->ang0 + f * (rb->ang1 - rb->ang0);
    float arc = 0.5f * (Ap + Bp) * (rb->ang1 - rb->ang0);
    float half = fminf(rb->r * sqrtf(1.0f + (arc / rb->drop) * (arc / rb->drop)),
                       22.0f);
    float da = half / (0.5f * (Ap + Bp));
    capsule c;
    for (int e = 0; e < 2; e++) {
      float a = ang + (e ? da : -da);
      float B = cosf(a) >= 0 ? Bp : Ba;
      float *q = e ? c.p1 : c.p0;
      q[0] = rb->side * Ap * sinf(a);
      q[1] = B * cosf(a);
      q[2] = s->z;
    }
    c.r = rb->r;
    uint64_t over = TM(T_MUSCLE) | TM(T_VFAT) | TM(T_FAT);
    paint_capsule(s, &c, T_CORTICAL, over);
    paint_capsule_r(s, &c, rb->r - 1.3f, T_CANCELLOUS, TM(T_CORTICAL));
  }
}

/* ---- organs ------------------------------------------------------------ */

static void paint_loop(slice_ctx *s, const bowel_loop *L) {
  blob2 b;
  if (!solid_at(&L->s, s->z, &b)) return;
  uint64_t over = OVER_SOFT;
  paint_blob(s, &b, T_BOWEL_WALL, over);
  float w = L->wall;
  if (b.a <= w + 0.5f || b.b <= w + 0.5f) return;
  blob2 in = b;
  in.a -= w;
  in.b -= w;
  int t;
  switch (L->content) {
    case LOOP_GAS: t = T_BOWEL_GAS; break;
    case LOOP_ORAL: t = T_ORAL; break;
    case LOOP_ORAL_DILUTE: t = T_ORAL_DILUTE; break;
    case LOOP_FECES: t = T_FECES; break;
    default: t = T_BOWEL_FLUID; break;
  }
  paint_blob(s, &in, t, TM(T_BOWEL_WALL));
  if (L->content == LOOP_LEVEL) {
    /* Gas rises: anterior (smaller y) of the level. */
    float level = in.cy + L->level * in.b;
    float R = fmaxf(in.a, in.b) * in.rmax;
    int i0, i1, j0, j1;
    if (!box(s, in.cx - R, in.cx + R, in.cy - R, level, &i0, &i1, &j0, &j1))
      return;
    for (int i = i0; i <= i1; i++) {
      uint8_t *row = s->tis + (size_t)i * s->W;
      for (int j = j0; j <= j1; j++)
        if (row[j] == T_BOWEL_FLUID) row[j] = T_BOWEL_GAS;
    }
  }
}

/* Kidney frame at z: centre, semi-axes; 0 when the slice misses it. */
typedef struct {
  float cx, cy, a, b, cr, sr, u;
} kframe;

static int kidney_frame(const kidney *k, float z, kframe *f) {
  float dz = z - k->z0, u = dz / k->hz;
  if (fabsf(u) >= 1.0f) return 0;
  float g = powf(1.0f - powf(fabsf(u), k->pexp), 1.0f / k->pexp);
  f->cx = k->x0 + k->dxdz * dz;
  f->cy = k->y0 + k->dydz * dz;
  f->a = k->a * g;
  f->b = k->b * g;
  f->cr = cosf(k->rot);
  f->sr = sinf(k->rot);
  f->u = u;
  return f->a > 1.0f && f->b > 1.0f;
}

/* Per-slice geometry of the kidney's inner structures (normalised frame). */
typedef struct {
  int has_sinus, has_pelvis;
  float scx, scy, sa, sb, hc, hs; /* sinus centre, semi-axes, hilum dir */
  float pcx, pcy, pr;             /* pelvis */
  int n;
  float th[MAX_PYRAMIDS], w[MAX_PYRAMIDS], lo[MAX_PYRAMIDS], hi[MAX_PYRAMIDS];
  float ccx[MAX_PYRAMIDS], ccy[MAX_PYRAMIDS], cr[MAX_PYRAMIDS];
  int ns;
  float sx[MAX_STONES], sy[MAX_STONES], sr[MAX_STONES]; /* dense foci */
  float sex[MAX_STONES], sey[MAX_STONES];               /* tube's other end */
} kinner;

/* Distance from the origin along direction (c, s) to the far side of the
 * sinus ellipse; -1 when the ray misses it. */
static float ray_sinus(const kinner *in, float c, float s) {
  /* Sinus frame: axis 1 along the hilum direction. */
  float dc = c * in->hc + s * in->hs, ds = -c * in->hs + s * in->hc;
  float oc = -(in->scx * in->hc + in->scy * in->hs);
  float os = -(-in->scx * in->hs + in->scy * in->hc);
  float A = dc * dc / (in->sa * in->sa) + ds * ds / (in->sb * in->sb);
  float B = 2 * (oc * dc / (in->sa * in->sa) + os * ds / (in->sb * in->sb));
  float C = oc * oc / (in->sa * in->sa) + os * os / (in->sb * in->sb) - 1;
  float D = B * B - 4 * A * C;
  if (D < 0) return -1;
  float t = (-B + sqrtf(D)) / (2 * A);
  return t > 0 ? t : -1;
}

static void kidney_inner(const kidney *k, const kframe *f, kinner *in) {
  memset(in, 0, sizeof *in);
  float u = f->u;
  in->hc = cosf(k->hil_dir);
  in->hs = sinf(k->hil_dir);
  float hb = (u - k->hil_u) / k->hil_w;
  hb = hb * hb < 1 ? 1 - hb * hb : 0; /* 1 at the hilum's centre */
  if (fabsf(u) < k->sinus_u) {
    float sf = sqrtf(1 - (u / k->sinus_u) * (u / k->sinus_u));
    float d = 0.15f + 0.6f * hb;
    in->has_sinus = sf > 0.15f;
    in->scx = d * in->hc;
    in->scy = d * in->hs;
    in->sa = k->sinus_a * (0.35f + 0.65f * sf);
    in->sb = k->sinus_b * sf;
  }
  for (int i = 0; in->has_sinus && i < k->nstones; i++) {
    float du = (u - k->st_u[i]) / k->st_du[i];
    if (du * du >= 1) continue;
    float ax = k->st_fx[i] * in->sa, ay = k->st_fy[i] * in->sb;
    in->sx[in->ns] = in->scx + ax * in->hc - ay * in->hs;
    in->sy[in->ns] = in->scy + ax * in->hs + ay * in->hc;
    in->sex[in->ns] = in->sx[in->ns] + k->st_len[i] * cosf(k->st_ang[i]);
    in->sey[in->ns] = in->sy[in->ns] + k->st_len[i] * sinf(k->st_ang[i]);
    /* A stone tapers towards its ends along z, a tube does not. */
    in->sr[in->ns++] = k->st_r[i] * (k->st_len[i] > 0 ? 1 : sqrtf(1 - du * du));
  }
  float pu = (u - k->hil_u) / (1.6f * k->hil_w);
  if (in->has_sinus && fabsf(pu) < 1) {
    float d = 0.25f + 0.6f * hb;
    in->has_pelvis = 1;
    in->pcx = d * in->hc;
    in->pcy = d * in->hs;
    in->pr = k->pelvis * sqrtf(1 - pu * pu);
  }
  /* Pyramids: base under the cortex, apex at the sinus (or converging on
   * the centre near the poles). */
  float ct = k->cortex_mm / sqrtf(f->a * f->b);
  float base = 1.0f - ct;
  for (int i = 0; i < k->npyr; i++) {
    const pyramid *py = &k->pyr[i];
    float dz = (u * k->hz - py->z) / py->hz;
    if (fabsf(dz) >= 1) continue;
    float g = sqrtf(1 - dz * dz);
    float c = cosf(py->theta), s = sinf(py->theta);
    float apex = in->has_sinus ? ray_sinus(in, c, s) : -1;
    if (apex < 0) apex = 0.22f;
    apex += 0.02f;
    if (base - apex < 0.1f) continue;
    float mid = 0.5f * (apex + base), half = 0.5f * (base - apex);
    int n = in->n++;
    in->th[n] = py->theta;
    in->w[n] = py->w * (0.3f + 0.7f * g);
    in->lo[n] = mid - half * (0.45f + 0.55f * g);
    in->hi[n] = mid + half * (0.45f + 0.55f * g);
    /* The calyx cups the papilla: where the sinus reaches, and beyond it
     * the polar calyces (real ones reach to within 1-2 cm of the poles, so
     * excreted contrast shows in polar slices too). */
    if ((in->has_sinus && apex > 0.25f) ||
        (!in->has_sinus && fabsf(u) < k->calyx_u)) {
      in->ccx[n] = (in->lo[n] - 0.02f) * c;
      in->ccy[n] = (in->lo[n] - 0.02f) * s;
      in->cr[n] = (in->has_sinus ? 0.11f : 0.09f) * sqrtf(g); /* 5-7 mm cups */
    }
  }
}

/* 2-D distance² from p to segment a-b. */
static inline float d2seg(float px, float py, float ax, float ay, float bx,
                          float by) {
  float dx = bx - ax, dy = by - ay, qx = px - ax, qy = py - ay;
  float L = dx * dx + dy * dy;
  float t = L > 0 ? (qx * dx + qy * dy) / L : 0;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  qx -= t * dx;
  qy -= t * dy;
  return qx * qx + qy * qy;
}

/* The tissue at (X, Y) of the normalised section (radius 1 at the
 * outline); -1 outside the kidney unless the pelvis bulges there. */
static int kidney_tissue(const kinner *in, float X, float Y, int inside) {
  for (int i = 0; i < in->ns; i++)
    if (d2seg(X, Y, in->sx[i], in->sy[i], in->sex[i], in->sey[i]) <
        in->sr[i] * in->sr[i])
      return T_STONE;
  if (in->has_pelvis) {
    float dx = X - in->pcx, dy = Y - in->pcy;
    if (dx * dx + dy * dy < in->pr * in->pr) return T_URINE;
  }
  if (!inside) return -1;
  if (in->has_sinus) {
    float dx = X - in->scx, dy = Y - in->scy;
    float p = dx * in->hc + dy * in->hs, o = -dx * in->hs + dy * in->hc;
    if (p * p / (in->sa * in->sa) + o * o / (in->sb * in->sb) < 1) {
      for (int i = 0; i < in->n; i++) {
        if (in->cr[i] <= 0) continue;
        float ex = X - in->ccx[i], ey = Y - in->ccy[i];
        if (ex * ex + ey * ey < in->cr[i] * in->cr[i]) return T_URINE;
        if (in->has_pelvis &&
            d2seg(X, Y, in->ccx[i], in->ccy[i], in->pcx, in->pcy) <
                0.05f * 0.05f) /* infundibulum, ~3 mm wide */
          return T_URINE;
      }
      return T_SINUS_FAT;
    }
  }
  if (in->n) {
    float rho = sqrtf(X * X + Y * Y);
    float th = atan2f(Y, X);
    for (int i = 0; i < in->n; i++) {
      if (in->cr[i] > 0) {
        float ex = X - in->ccx[i], ey = Y - in->ccy[i];
        if (ex * ex + ey * ey < in->cr[i] * in->cr[i]) return T_URINE;
      }
      if (rho < in->lo[i] || rho > in->hi[i]) continue;
      float d = th - in->th[i];
      d -= 2 * PI_F * floorf((d + PI_F) / (2 * PI_F));
      float f = (rho - in->lo[i]) / (in->hi[i] - in->lo[i]);
      float w = in->w[i] * (0.3f + 0.7f * f); /* papilla to base */
      if (fabsf(d) < w) return T_MEDULLA;
    }
  }
  return T_CORTEX;
}

static void paint_kidney(slice_ctx *s, const kidney *k) {
  kframe f;
  if (!kidney_frame(k, s->z, &f)) return;
  kinner in;
  kidney_inner(k, &f, &in);
  float hsum = 0;
  for (int i = 0; i < 6; i++) hsum += fabsf(k->h[i]);
  float R = fmaxf(f.a, f.b) * (1 + hsum) + 4.0f;
  int i0, i1, j0, j1;
  if (!box(s, f.cx - R, f.cx + R, f.cy - R, f.cy + R, &i0, &i1, &j0, &j1))
    return;
  /* Perirenal fat: a halo that pushes neighbouring organs away. */
  uint64_t halo_over = TM(T_LIVER) | TM(T_SPLEEN) | OVER_BOWEL |
                       TM(T_PANCREAS) | TM(T_GALLBLADDER);
  uint64_t over = OVER_ORGANS | TM(T_MUSCLE);
  float halo = 1.0f + 3.5f / sqrtf(f.a * f.b);
  for (int i = i0; i <= i1; i++) {
    uint8_t *row = s->tis + (size_t)i * s->W;
    float y = s->ys[i] - f.cy;
    for (int j = j0; j <= j1; j++) {
      float x = s->xs[j] - f.cx;
      float X = (x * f.cr + y * f.sr) / f.a;
      float Y = (-x * f.sr + y * f.cr) / f.b;
      float r2 = X * X + Y * Y;
      float rr = 1.0f;
      if (r2 > 1e-8f) {
        float r = sqrtf(r2);
        rr = blob_r(k->h, X / r, Y / r);
      }
      float q2 = r2 / (rr * rr);
      int inside = q2 < 1.0f;
      if (!(over >> row[j] & 1)) continue;
      int t = kidney_tissue(&in, X / rr, Y / rr, inside);
      if (t >= 0) {
        if (inside || row[j] == T_VFAT) row[j] = (uint8_t)t;
      } else if (q2 < halo * halo && (halo_over >> row[j] & 1)) {
        row[j] = T_VFAT;
      }
    }
  }
}

/* ---- vessels ----------------------------------------------------------- */

static void paint_vessels(slice_ctx *s) {
  const struct ctp_phantom *p = s->p;
  uint64_t big = OVER_ORGANS | TM(T_MUSCLE) | TM(T_SINUS_FAT);
  paint_solid(s, &p->aorta, T_AORTA, big);
  for (int i = 0; i < p->ncalcs; i++)
    paint_capsule(s, &p->calcs[i], T_CALC, TM(T_AORTA) | TM(T_VFAT));
  paint_solid(s, &p->ivc, s->z > p->ivc_supra_z ? T_IVC_SUPRA : T_IVC, big);
  uint64_t over = OVER_ORGANS | TM(T_SINUS_FAT);
  for (int i = 0; i < p->nvessels; i++)
    paint_capsule(s, &p->vessels[i], p->vessel_tissue[i], over);
}

void anatomy_paint(slice_ctx *s) {
  const struct ctp_phantom *p = s->p;
  memset(s->tis, T_AIR, (size_t)s->W * s->H);
  paint_table(s);
  paint_body(s);
  for (int i = 0; i < 2; i++) {
    paint_solid(s, &p->paraspinal[i], T_MUSCLE, TM(T_VFAT));
    paint_solid(s, &p->quadratus[i], T_MUSCLE, TM(T_VFAT));
    paint_solid(s, &p->psoas[i], T_MUSCLE, TM(T_VFAT));
  }
  paint_ribs(s);
  paint_solid(s, &p->liver, T_LIVER, TM(T_VFAT));
  paint_solid(s, &p->spleen, T_SPLEEN, TM(T_VFAT));
  if (p->has_pancreas)
    for (int i = 0; i < 3; i++)
      paint_capsule(s, &p->pancreas[i], T_PANCREAS, TM(T_VFAT));
  if (p->has_gallbladder)
    paint_solid(s, &p->gallbladder, T_GALLBLADDER, TM(T_LIVER) | TM(T_VFAT));
  for (int i = 0; i < p->nbranches; i++)
    paint_capsule(s, &p->branches[i], T_PORTAL, TM(T_LIVER));
  for (int i = 0; i < p->nloops; i++) paint_loop(s, &p->loops[i]);
  for (int i = 0; i < 2; i++) paint_kidney(s, &p->kid[i]);
  for (int i = 0; i < p->ncysts; i++)
    paint_capsule(s, &p->cysts[i], T_CYST,
                  TM(T_CORTEX) | TM(T_MEDULLA) | TM(T_SINUS_FAT) | TM(T_VFAT));
  paint_spine(s);
  paint_vessels(s);
}

int anatomy_kidney_point(const kidney *k, float z, float X, float Y,
                         float *x, float *y) {
  kframe f;
  if (!kidney_frame(k, z, &f)) return 0;
  float u = X * f.a, v = Y * f.b;
  *x = f.cx + u * f.cr - v * f.sr;
  *y = f.cy + u * f.sr + v * f.cr;
  return 1;
}
