/*
 * render.c — renders phantom slices: tissue map -> HU and labels.
 *
 * For slice k at anatomical z (render_slice):
 *   1. anatomy.c paints the tissue map;
 *   2. kinetics.c gives each tissue its mean HU at the slice's physiological
 *      time (the table moves during the scan, so lower slices are later);
 *   3. HU = tissue mean + coarse texture (organ-scale inhomogeneity) + fine
 *      texture (trabecular bone, faeces, splenic mottling, caval mixing),
 *      both 3-D value noise in the body frame so they continue from slice
 *      to slice, minus a little cupping in the body's centre;
 *   4. partial-volume blur (gaussian, 0.4-1.0 px);
 *   5. quantum noise: white noise blurred to the drawn grain, optionally
 *      made band-pass (as filtered back-projection noise is), scaled to the
 *      drawn SD, stronger in the body's centre;
 *   6. occasional streaks from dense objects;
 *   7. clamping to -1024..3071 HU (and rounding for int16), labels by table.
 *
 * Determinism: every random number of slice k comes from a stream keyed by
 * (seed, k), and the textures are hashed from the seed and the position, so
 * the output does not depend on threads or on the range asked for.
 * Threads: OpenMP over slices, each thread with its own scratch buffers;
 * the phantom itself is read-only here.
 */
#include "phantom/phantom_int.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"

/* Value noise: a hashed random lattice in the body frame (mm), smoothly
 * interpolated; SD about 1. */
static inline float lattice(uint64_t seed, int64_t ix, int64_t iy,
                            int64_t iz) {
  uint64_t h = seed ^ ((uint64_t)ix * 0x9E3779B97F4A7C15ull) ^
               ((uint64_t)iy * 0xC2B2AE3D27D4EB4Full) ^
               ((uint64_t)iz * 0x165667B19E3779F9ull);
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
  h ^= h >> 31;
  return (float)(h >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

static inline float smooth(float f) { return f * f * (3 - 2 * f); }

#define VALUE_NOISE_GAIN 2.7f

static int value_noise(const slice_ctx *s, uint64_t seed, float cell,
                       float *out) {
  int W = s->W, H = s->H;
  float x0 = s->xs[0], x1 = s->xs[W - 1], y0 = s->ys[0], y1 = s->ys[H - 1];
  int64_t ix0 = (int64_t)floorf(x0 / cell), iy0 = (int64_t)floorf(y0 / cell);
  int nx = (int)((int64_t)floorf(x1 / cell) - ix0) + 2;
  int ny = (int)((int64_t)floorf(y1 / cell) - iy0) + 2;
  float zf = s->z / cell;
  int64_t iz = (int64_t)floorf(zf);
  float wz = smooth(zf - (float)iz);
  float *G = malloc(sizeof(float) * ((size_t)nx * ny + nx + 2 * (size_t)W));
  if (!G) return CTP_ENOMEM;
  float *R = G + (size_t)nx * ny, *wx = R + nx;
  int *jx = (int *)(wx + W);
  for (int b = 0; b < ny; b++)
    for (int a = 0; a < nx; a++) {
      float v0 = lattice(seed, ix0 + a, iy0 + b, iz);
      float v1 = lattice(seed, ix0 + a, iy0 + b, iz + 1);
      G[(size_t)b * nx + a] = v0 + wz * (v1 - v0);
    }
  for (int j = 0; j < W; j++) {
    float f = s->xs[j] / cell - (float)ix0;
    int a = (int)floorf(f);
    if (a > nx - 2) a = nx - 2;
    jx[j] = a;
    wx[j] = smooth(f - (float)a);
  }
  for (int i = 0; i < H; i++) {
    float f = s->ys[i] / cell - (float)iy0;
    int b = (int)floorf(f);
    if (b > ny - 2) b = ny - 2;
    float wy = smooth(f - (float)b);
    const float *g0 = G + (size_t)b * nx, *g1 = g0 + nx;
    for (int a = 0; a < nx; a++) R[a] = g0[a] + wy * (g1[a] - g0[a]);
    float *o = out + (size_t)i * W;
    for (int j = 0; j < W; j++) {
      float r0 = R[jx[j]], r1 = R[jx[j] + 1];
      o[j] = VALUE_NOISE_GAIN * (r0 + wx[j] * (r1 - r0));
    }
  }
  free(G);
  return 0;
}

/* Separable gaussian blur in place (edges replicated); tmp: W*H floats.
 * The loops run over whole rows so that the compiler vectorises them. */
static void gauss_blur(float *img, float *tmp, int W, int H, float sigma) {
  if (sigma < 0.05f) return;
  int R = (int)ceilf(3 * sigma);
  if (R > 16) R = 16;
  if (2 * R + 1 > W || 2 * R + 1 > H) return;
  float w[33], sum = 0;
  for (int k = -R; k <= R; k++)
    sum += w[k + R] = expf(-0.5f * (float)(k * k) / (sigma * sigma));
  for (int k = 0; k <= 2 * R; k++) w[k] /= sum;
  for (int i = 0; i < H; i++) {
    const float *s = img + (size_t)i * W;
    float *d = tmp + (size_t)i * W;
    for (int j = 0; j < W; j++) d[j] = 0;
    for (int k = -R; k <= R; k++) {
      float wk = w[k + R];
      for (int j = R; j < W - R; j++) d[j] += wk * s[j + k];
    }
    for (int j = 0; j < R; j++) {
      float a = 0, b = 0;
      for (int k = -R; k <= R; k++) {
        int q = j + k, e = W - 1 - j + k;
        a += w[k + R] * s[q < 0 ? 0 : q];
        b += w[k + R] * s[e > W - 1 ? W - 1 : e];
      }
      d[j] = a;
      d[W - 1 - j] = b;
    }
  }
  for (int i = 0; i < H; i++) {
    float *d = img + (size_t)i * W;
    for (int j = 0; j < W; j++) d[j] = 0;
    for (int k = -R; k <= R; k++) {
      int q = i + k;
      q = q < 0 ? 0 : q >= H ? H - 1 : q;
      const float *s = tmp + (size_t)q * W;
      float wk = w[k + R];
      for (int j = 0; j < W; j++) d[j] += wk * s[j];
    }
  }
}

/* Box mean of radius r (edges clamped) from src into dst; tmp: W*H. */
static void box_blur(const float *src, float *dst, float *tmp, int W, int H,
                     int r) {
  float inv = 1.0f / (float)(2 * r + 1);
  for (int i = 0; i < H; i++) {
    const float *s = src + (size_t)i * W;
    float *d = tmp + (size_t)i * W;
    float acc = 0;
    for (int k = -r; k <= r; k++) acc += s[k < 0 ? 0 : k >= W ? W - 1 : k];
    for (int j = 0; j < W; j++) {
      d[j] = acc * inv;
      int add = j + r + 1, sub = j - r;
      acc += s[add >= W ? W - 1 : add] - s[sub < 0 ? 0 : sub];
    }
  }
  for (int j = 0; j < W; j++) dst[j] = 0;
  for (int i = 0; i < H; i++) {
    float *d = dst + (size_t)i * W;
    if (i == 0) {
      for (int j = 0; j < W; j++) d[j] = 0;
      for (int k = -r; k <= r; k++) {
        const float *s = tmp + (size_t)(k < 0 ? 0 : k >= H ? H - 1 : k) * W;
        for (int j = 0; j < W; j++) d[j] += s[j];
      }
    } else {
      int add = i + r, sub = i - r - 1;
      const float *sa = tmp + (size_t)(add >= H ? H - 1 : add) * W;
      const float *ss = tmp + (size_t)(sub < 0 ? 0 : sub) * W;
      const float *prev = d - W;
      for (int j = 0; j < W; j++) d[j] = prev[j] + sa[j] - ss[j];
    }
  }
  size_t n = (size_t)W * H;
  for (size_t k = 0; k < n; k++) dst[k] *= inv;
}

typedef struct {
  float *img, *tmp, *a, *b; /* W*H each */
  float *xs, *ys;
  uint8_t *tis;
} scratch;

static void scratch_free(scratch *w) {
  free(w->img);
  free(w->tis);
  memset(w, 0, sizeof *w);
}

static int scratch_alloc(scratch *w, int W, int H) {
  size_t n = (size_t)W * H;
  memset(w, 0, sizeof *w);
  w->img = malloc(sizeof(float) * (4 * n + W + H));
  w->tis = malloc(n);
  if (!w->img || !w->tis) {
    scratch_free(w);
    return CTP_ENOMEM;
  }
  w->tmp = w->img + n;
  w->a = w->tmp + n;
  w->b = w->a + n;
  w->xs = w->b + n;
  w->ys = w->xs + W;
  return 0;
}

/* Unit-variance white noise (sum of four uniforms: close enough to
 * gaussian for CT noise, and cheap). */
static void white_noise(rng_t *r, float *out, size_t n) {
  const float scale = 1.0f / 37837.23f;
  for (size_t k = 0; k < n; k++) {
    uint64_t v = rng_next(r);
    int s = (int)(v & 0xffff) + (int)(v >> 16 & 0xffff) +
            (int)(v >> 32 & 0xffff) + (int)(v >> 48);
    out[k] = (float)(s - 131070) * scale;
  }
}

/* Renders slice k into hu (float, W*H) and labels (may be NULL). */
static int render_slice(const ctp_phantom *p, int k, scratch *w, float *hu,
                        uint8_t *labels) {
  const ctp_phantom_info *in = &p->info;
  int W = in->columns, H = in->rows;
  size_t n = (size_t)W * H;
  float c = 0.5f * (float)(W - 1);
  for (int j = 0; j < W; j++) w->xs[j] = ((float)j - c) * p->sp - p->body_cx;
  for (int i = 0; i < H; i++) w->ys[i] = ((float)i - c) * p->sp - p->body_cy;
  slice_ctx s = {p, W, H, p->z_top - (float)k * (float)in->slice_spacing,
                 w->xs, w->ys, w->tis};
  anatomy_paint(&s);
  if (labels)
    for (size_t q = 0; q < n; q++) labels[q] = tissue_label[w->tis[q]];
  if (!hu) return 0;

  /* Tissue means at this slice's time; the table moved k slices. */
  double t = in->time_s < 0 ? -1.0
                            : in->time_s + (double)k * in->slice_spacing /
                                               in->table_speed_mm_s;
  float mean[T_COUNT], fine[T_COUNT], coarse[T_COUNT];
  kinetics_table(p, t, mean, fine);
  for (int q = 0; q < T_COUNT; q++) coarse[q] = p->tex_amp[q] * p->tex_scale;

  int r;
  if ((r = value_noise(&s, rng_stream(in->seed, TAG_TEX_COARSE, 0).s, 24.0f,
                       w->a)) ||
      (r = value_noise(&s, rng_stream(in->seed, TAG_TEX_MED, 0).s, 9.0f,
                       w->tmp)) ||
      (r = value_noise(&s, rng_stream(in->seed, TAG_TEX_FINE, 0).s, 2.6f,
                       w->b)))
    return r;
  for (size_t q = 0; q < n; q++) w->a[q] = 0.75f * w->a[q] + 0.45f * w->tmp[q];

  /* Compose; cupping lowers the body's centre a little. */
  float sc = 1.0f + p->body_dAdz * s.z;
  float iA2 = 1.0f / (p->body.A * sc * p->body.A * sc);
  float iBa2 = 1.0f / (p->body.Bant * p->body.Bant);
  float iBp2 = 1.0f / (p->body.Bpost * p->body.Bpost);
  for (int i = 0; i < H; i++) {
    float y = w->ys[i], y2 = y * y * (y < 0 ? iBa2 : iBp2);
    const uint8_t *tr = w->tis + (size_t)i * W;
    float *o = w->img + (size_t)i * W;
    const float *ca = w->a + (size_t)i * W, *fb = w->b + (size_t)i * W;
    for (int j = 0; j < W; j++) {
      int ts = tr[j];
      float v = mean[ts] + coarse[ts] * ca[j] + fine[ts] * fb[j];
      float r2 = w->xs[j] * w->xs[j] * iA2 + y2;
      if (r2 < 1.0f && ts != T_AIR) v -= p->cupping * (1.0f - r2);
      o[j] = v;
    }
  }
  gauss_blur(w->img, w->tmp, W, H, p->blur_sigma);

  /* Noise: white, blurred to the grain, optionally band-passed, scaled. */
  rng_t rn = rng_stream(in->seed, TAG_NOISE, (uint64_t)k);
  white_noise(&rn, w->a, n);
  gauss_blur(w->a, w->tmp, W, H, p->noise_grain);
  if (p->noise_dog > 0) {
    int br = 2 + (int)(2 * p->noise_grain);
    box_blur(w->a, w->b, w->tmp, W, H, br);
    for (size_t q = 0; q < n; q++) w->a[q] -= p->noise_dog * w->b[q];
  }
  /* Its SD, estimated on every 7th value (deterministic, and plenty). */
  double s1 = 0, s2 = 0;
  size_t cnt = 0;
  for (size_t q = 0; q < n; q += 7, cnt++) {
    s1 += w->a[q];
    s2 += (double)w->a[q] * w->a[q];
  }
  double mu = s1 / (double)cnt, var = s2 / (double)cnt - mu * mu;
  float g = var > 1e-12 ? (float)(p->noise_sd / sqrt(var)) : 0.0f;
  for (int i = 0; i < H; i++) {
    float y = w->ys[i], y2 = y * y * (y < 0 ? iBa2 : iBp2);
    float *o = w->img + (size_t)i * W;
    const float *nz = w->a + (size_t)i * W;
    for (int j = 0; j < W; j++) {
      float r2 = w->xs[j] * w->xs[j] * iA2 + y2;
      float m = r2 < 1.0f ? 1.0f + p->noise_center * (1.0f - r2) : 0.8f;
      o[j] += g * m * ((float)nz[j] - (float)mu);
    }
  }

  /* Streaks from dense objects. */
  for (int q = 0; q < p->nstreaks; q++) {
    const streak *st = &p->streaks[q];
    float ux = cosf(st->ang), uy = sinf(st->ang), w2 = st->width * st->width;
    float id2 = 1.0f / (st->decay * st->decay);
    for (int i = 0; i < H; i++) {
      float dy = w->ys[i] - st->y;
      float *o = w->img + (size_t)i * W;
      for (int j = 0; j < W; j++) {
        float dx = w->xs[j] - st->x;
        float along = dx * ux + dy * uy, across = -dx * uy + dy * ux;
        o[j] += st->amp * w2 / (w2 + across * across) /
                (1.0f + along * along * id2);
      }
    }
  }
  for (size_t q = 0; q < n; q++) {
    float v = w->img[q];
    hu[q] = v < -1024.0f ? -1024.0f : v > 3071.0f ? 3071.0f : v;
  }
  return 0;
}

static int render(const ctp_phantom *p, int z0, int nz, int16_t *hu16,
                  float *huf, uint8_t *labels, int threads) {
  if (!p) return ctp_seterr(CTP_EINVAL, "phantom: NULL phantom");
  const ctp_phantom_info *in = &p->info;
  if (z0 < 0 || nz < 0 || z0 + nz > in->num_slices)
    return ctp_seterr(CTP_EINVAL, "phantom: slices %d..%d outside 0..%d", z0,
                      z0 + nz - 1, in->num_slices - 1);
  size_t n = (size_t)in->rows * in->columns;
  int nt = threads > 0 ? threads : omp_get_max_threads();
  if (nt > nz) nt = nz > 0 ? nz : 1;
  int err = 0;
#pragma omp parallel num_threads(nt)
  {
    scratch w;
    int mine = scratch_alloc(&w, in->columns, in->rows);
    float *f16 = NULL;
    if (!mine && hu16 && !(f16 = malloc(sizeof(float) * n))) mine = CTP_ENOMEM;
    if (mine) {
#pragma omp atomic write
      err = mine;
    }
#pragma omp for schedule(dynamic, 1)
    for (int k = 0; k < nz; k++) {
      if (mine) continue;
      float *dst = huf ? huf + (size_t)k * n : f16;
      uint8_t *lab = labels ? labels + (size_t)k * n : NULL;
      int r = render_slice(p, z0 + k, &w, (huf || hu16) ? dst : NULL, lab);
      if (r) {
        mine = r;
#pragma omp atomic write
        err = r;
        continue;
      }
      if (hu16) {
        int16_t *o = hu16 + (size_t)k * n;
        /* dst is clamped to -1024..3071: shifted, it is positive and
         * truncation rounds to nearest. */
        for (size_t q = 0; q < n; q++)
          o[q] = (int16_t)((int)(dst[q] + 1024.5f) - 1024);
      }
    }
    free(f16);
    scratch_free(&w);
  }
  if (err) return ctp_seterr(err, "phantom: out of memory while rendering");
  return 0;
}

int ctp_phantom_render(const ctp_phantom *p, int z0, int nz, int16_t *hu,
                       uint8_t *labels, int threads) {
  return render(p, z0, nz, hu, NULL, labels, threads);
}

int ctp_phantom_render_float(const ctp_phantom *p, int z0, int nz, float *hu,
                             uint8_t *labels, int threads) {
  return render(p, z0, nz, NULL, hu, labels, threads);
}
