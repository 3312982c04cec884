/*
 * render.c — heat-map overlays: a map as colour over the CT slice, with
 * burned-in labels that a radiologist can read in a PACS viewer.
 *
 * The paper's display rules ("Graphical Visualization"), as render.h lists
 * them: rank order for saliency (|value|) and guided backprop (value),
 * direct values for CAM, Grad-CAM and SAM, each scaled to its own range;
 * the bottom 2.5% not drawn; a rainbow from purple (low) to red (high).
 * "Bottom 2.5%" is read on the display scale: display value < 0.025, which
 * for the rank-ordered maps is the bottom 2.5% of pixels and for the direct
 * maps the bottom 2.5% of the map's range (a Grad-CAM's zeros vanish).
 *
 * Everything draws into a caller's RGB8 buffer (w * h * 3), so one set of
 * pixels serves the PNG writer (png.c) and the DICOM Secondary Capture
 * writer. Text uses the built-in font (font.c), scaled by an integer.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/explain.h"
#include "ctphase/render.h"
#include "explain/font.h"

int ctp_display_of_method(int method) {
  if (method == CTP_MAP_SALIENCY) return CTP_DISPLAY_RANK_ABS;
  if (method == CTP_MAP_GUIDED) return CTP_DISPLAY_RANK;
  return CTP_DISPLAY_DIRECT;
}

/* --- display values --------------------------------------------------- */

typedef struct {
  float key;
  uint32_t idx;
} key_entry;

static int key_cmp(const void *pa, const void *pb) {
  const key_entry *a = pa, *b = pb;
  if (a->key != b->key) return a->key < b->key ? -1 : 1;
  return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* out = rank / (n - 1); equal values share the lowest rank of their run. */
static int rank_order(const float *map, size_t n, int absolute, float *out) {
  key_entry *k = malloc(n * sizeof *k);
  if (!k) return ctp_seterr(CTP_ENOMEM, "out of memory ranking a map");
  for (size_t i = 0; i < n; i++) {
    float v = isnan(map[i]) ? 0.0f : map[i];
    k[i].key = absolute ? fabsf(v) : v;
    k[i].idx = (uint32_t)i;
  }
  qsort(k, n, sizeof *k, key_cmp);
  size_t first = 0;
  float scale = n > 1 ? 1.0f / (float)(n - 1) : 0.0f;
  for (size_t i = 0; i < n; i++) {
    if (i > 0 && k[i].key != k[i - 1].key) first = i;
    out[k[i].idx] = (float)first * scale;
  }
  free(k);
  return 0;
}

/* out = (v - min) / (max - min); a constant map gives all -1. */
static void direct_scale(const float *map, size_t n, float *out) {
  float lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (isnan(map[i])) continue;
    lo = map[i] < lo ? map[i] : lo;
    hi = map[i] > hi ? map[i] : hi;
  }
  float range = hi - lo;
  for (size_t i = 0; i < n; i++)
    out[i] = range > 0 && !isnan(map[i]) ? (map[i] - lo) / range : -1.0f;
}

int ctp_render_normalise(const float *map, size_t n, int mode, float *out) {
  if (!map || !out || n == 0)
    return ctp_seterr(CTP_EINVAL, "ctp_render_normalise: empty map");
  if (mode == CTP_DISPLAY_DIRECT) {
    direct_scale(map, n, out);
  } else {
    int r = rank_order(map, n, mode == CTP_DISPLAY_RANK_ABS, out);
    if (r) return r;
    /* A constant map has one rank: nothing to show. */
    int constant = 1;
    for (size_t i = 1; i < n && constant; i++) constant = out[i] == out[0];
    if (constant)
      for (size_t i = 0; i < n; i++) out[i] = -1.0f;
  }
  for (size_t i = 0; i < n; i++)
    if (out[i] < CTP_RENDER_CUTOFF) out[i] = -1.0f;
  return 0;
}

/* --- colour ----------------------------------------------------------- */

void ctp_colormap_rainbow(float v, unsigned char rgb[3]) {
  v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
  /* Hue from 270 degrees (purple) down to 0 (red), full saturation. */
  float h = (1.0f - v) * 270.0f / 60.0f;
  int sector = (int)h;
  float f = h - (float)sector, c[3];
  switch (sector) {
    case 0: c[0] = 1; c[1] = f; c[2] = 0; break;         /* red -> yellow */
    case 1: c[0] = 1 - f; c[1] = 1; c[2] = 0; break;     /* yellow -> green */
    case 2: c[0] = 0; c[1] = 1; c[2] = f; break;         /* green -> cyan */
    case 3: c[0] = 0; c[1] = 1 - f; c[2] = 1; break;     /* cyan -> blue */
    default: c[0] = f; c[1] = 0; c[2] = 1; break;        /* blue -> purple */
  }
  for (int i = 0; i < 3; i++) rgb[i] = (unsigned char)lrintf(c[i] * 255.0f);
}

void ctp_render_ct(unsigned char *rgb, const float *hu, int w, int h,
                   float center, float width) {
  float lo = center - width / 2.0f;
  for (size_t i = 0; i < (size_t)w * h; i++) {
    float g = (hu[i] - lo) / width;
    g = g < 0.0f ? 0.0f : g > 1.0f ? 1.0f : g;
    unsigned char v = (unsigned char)lrintf(g * 255.0f);
    rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = v;
  }
}

static unsigned char blend(unsigned char a, unsigned char b, float alpha) {
  return (unsigned char)lrintf((1.0f - alpha) * a + alpha * b);
}

void ctp_render_heat(unsigned char *rgb, const float *disp, int w, int h,
                     float alpha) {
  for (size_t i = 0; i < (size_t)w * h; i++) {
    if (disp[i] < 0.0f) continue;
    unsigned char c[3];
    ctp_colormap_rainbow(disp[i], c);
    for (int k = 0; k < 3; k++) rgb[3 * i + k] = blend(rgb[3 * i + k], c[k], alpha);
  }
}

/* --- text ------------------------------------------------------------- */

void ctp_text_size(const char *text, int scale, int *tw, int *th) {
  int cols = 0, maxcols = 0, lines = 1;
  for (const char *p = text; *p; p++) {
    if (*p == '\n') {
      lines++;
      cols = 0;
      continue;
    }
    if (++cols > maxcols) maxcols = cols;
  }
  *tw = maxcols ? (maxcols * CTP_FONT_CELL_W - 1) * scale : 0;
  *th = (lines * CTP_FONT_CELL_H - (CTP_FONT_CELL_H - CTP_FONT_H)) * scale;
}

/* Fills a rectangle, clipped, blending towards colour c with opacity a. */
static void fill_rect(unsigned char *rgb, int w, int h, int x0, int y0,
                      int x1, int y1, const unsigned char c[3], float a) {
  x0 = x0 < 0 ? 0 : x0;
  y0 = y0 < 0 ? 0 : y0;
  x1 = x1 > w ? w : x1;
  y1 = y1 > h ? h : y1;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) {
      unsigned char *p = rgb + 3 * ((size_t)y * w + x);
      for (int k = 0; k < 3; k++) p[k] = blend(p[k], c[k], a);
    }
}

static void draw_glyph(unsigned char *rgb, int w, int h, int x, int y,
                       int scale, int ch, const unsigned char fg[3]) {
  for (int gy = 0; gy < CTP_FONT_H; gy++)
    for (int gx = 0; gx < CTP_FONT_W; gx++)
      if (ctp_font_pixel(ch, gx, gy))
        fill_rect(rgb, w, h, x + gx * scale, y + gy * scale,
                  x + (gx + 1) * scale, y + (gy + 1) * scale, fg, 1.0f);
}

void ctp_render_text(unsigned char *rgb, int w, int h, int x, int y,
                     int scale, const char *text, const unsigned char fg[3]) {
  int cx = x, cy = y;
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    if (*p == '\n') {
      cx = x;
      cy += CTP_FONT_CELL_H * scale;
      continue;
    }
    draw_glyph(rgb, w, h, cx, cy, scale, *p, fg);
    cx += CTP_FONT_CELL_W * scale;
  }
}

static const unsigned char white[3] = {255, 255, 255};
static const unsigned char black[3] = {0, 0, 0};

void ctp_render_label(unsigned char *rgb, int w, int h, int x, int y,
                      int scale, const char *text) {
  int tw, th, m = 3 * scale;
  ctp_text_size(text, scale, &tw, &th);
  fill_rect(rgb, w, h, x, y, x + tw + 2 * m, y + th + 2 * m, black, 0.8f);
  ctp_render_text(rgb, w, h, x + m, y + m, scale, text, white);
}

void ctp_render_colorbar(unsigned char *rgb, int w, int h, int scale) {
  int lw, hw, th, m = 3 * scale, gap = 4 * scale, bw = 48 * scale;
  ctp_text_size("low", scale, &lw, &th);
  ctp_text_size("high", scale, &hw, &th);
  int boxw = m + lw + gap + bw + gap + hw + m, boxh = th + 2 * m;
  int x0 = w - boxw - 4 * scale, y0 = h - boxh - 4 * scale;
  fill_rect(rgb, w, h, x0, y0, x0 + boxw, y0 + boxh, black, 0.8f);
  ctp_render_text(rgb, w, h, x0 + m, y0 + m, scale, "low", white);
  int bx = x0 + m + lw + gap;
  for (int i = 0; i < bw; i++) {
    unsigned char c[3];
    ctp_colormap_rainbow((float)i / (float)(bw - 1), c);
    fill_rect(rgb, w, h, bx + i, y0 + m, bx + i + 1, y0 + m + th, c, 1.0f);
  }
  ctp_render_text(rgb, w, h, bx + bw + gap, y0 + m, scale, "high", white);
}

/* --- the overlay ------------------------------------------------------ */

int ctp_render_overlay(unsigned char *rgb, const float *hu, const float *map,
                       int w, int h, int method, const char *label) {
  if (!rgb || !hu || !map || w < 1 || h < 1)
    return ctp_seterr(CTP_EINVAL, "ctp_render_overlay: bad argument");
  size_t n = (size_t)w * h;
  float *disp = malloc(n * sizeof *disp);
  if (!disp) return ctp_seterr(CTP_ENOMEM, "out of memory rendering");
  int r = ctp_render_normalise(map, n, ctp_display_of_method(method), disp);
  if (r) {
    free(disp);
    return r;
  }
  int side = w < h ? w : h;
  int scale = side < 256 ? 1 : side < 768 ? 2 : 3;
  ctp_render_ct(rgb, hu, w, h, CTP_RENDER_WINDOW_CENTER, CTP_RENDER_WINDOW_WIDTH);
  ctp_render_heat(rgb, disp, w, h, CTP_RENDER_ALPHA);
  if (label && *label) ctp_render_label(rgb, w, h, 2 * scale, 2 * scale, scale, label);
  ctp_render_colorbar(rgb, w, h, scale);
  free(disp);
  return 0;
}
