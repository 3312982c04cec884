/*
 * render.h — explanation maps as pictures: heat-map overlays on the CT
 * slice, burned-in labels, PNG files.
 *
 * Images are RGB8, row-major, 3 bytes a pixel, into buffers the caller
 * owns (w * h * 3 bytes), so the same pixels can go to a PNG file or to a
 * DICOM Secondary Capture.
 *
 * Display rules (paper, "Graphical Visualization"; DESIGN.md §3):
 *   - a map is brought to the input grid bilinearly, then to display
 *     values in [0, 1]: saliency as the rank order of |value|, guided
 *     backprop as the rank order of the value, CAM, Grad-CAM and SAM
 *     directly, scaled to the map's own range (min -> 0, max -> 1);
 *   - display values below 0.025 (the bottom 2.5%) are not drawn;
 *   - the rest is coloured with a rainbow (purple low, red high) and
 *     blended over the CT slice shown with window centre 40, width 400 HU.
 */
#ifndef CTPHASE_RENDER_H
#define CTPHASE_RENDER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CTP_RENDER_WINDOW_CENTER 40.0f
#define CTP_RENDER_WINDOW_WIDTH 400.0f
#define CTP_RENDER_CUTOFF 0.025f
#define CTP_RENDER_ALPHA 0.5f
/* The built-in font: 5x9 glyphs (7 rows and 2 of descenders) in 6x10
 * cells, printable ASCII. */
#define CTP_FONT_W 5
#define CTP_FONT_H 9
#define CTP_FONT_CELL_W 6
#define CTP_FONT_CELL_H 10

typedef enum {
  CTP_DISPLAY_DIRECT = 0,  /* the value, scaled to the map's range */
  CTP_DISPLAY_RANK_ABS,    /* the rank order of |value| */
  CTP_DISPLAY_RANK         /* the rank order of the value */
} ctp_display;

/* The display rule of an explanation method (explain.h's ctp_map_method). */
int ctp_display_of_method(int method);

/* Display values in [0, 1] of a map of n values, per mode; a value below
 * CTP_RENDER_CUTOFF is written as -1 (not drawn). A constant map is all -1.
 * Returns 0 or CTP_ENOMEM. */
int ctp_render_normalise(const float *map, size_t n, int mode, float *out);
/* The rainbow: v in [0,1] -> purple (0) ... blue, cyan, green, yellow,
 * red (1). */
void ctp_colormap_rainbow(float v, unsigned char rgb[3]);
/* The CT slice in gray (HU, window centre/width). */
void ctp_render_ct(unsigned char *rgb, const float *hu, int w, int h,
                   float center, float width);
/* Blends the rainbow of display values (from ctp_render_normalise) over
 * rgb with opacity alpha; -1 leaves the pixel alone. */
void ctp_render_heat(unsigned char *rgb, const float *disp, int w, int h,
                     float alpha);

/* Width and height in pixels of text at a scale (lines split at '\n'). */
void ctp_text_size(const char *text, int scale, int *tw, int *th);
/* Draws text with its top-left corner at (x, y), clipped to the image. */
void ctp_render_text(unsigned char *rgb, int w, int h, int x, int y,
                     int scale, const char *text, const unsigned char fg[3]);
/* Text on a dark, opaque box with a margin: labels that stay legible
 * whatever is below them. */
void ctp_render_label(unsigned char *rgb, int w, int h, int x, int y,
                      int scale, const char *text);
/* A horizontal colour bar with "low" and "high" at its ends, bottom-right. */
void ctp_render_colorbar(unsigned char *rgb, int w, int h, int scale);

/* The whole overlay: the CT slice hu (h, w) in the window, the map (already
 * on the input grid, h x w) drawn per the method's display rule, the label
 * text (may be NULL) top-left and a colour bar. Scale of the text: 1 below
 * 256 pixels, 2 up to 767, then 3. */
int ctp_render_overlay(unsigned char *rgb, const float *hu, const float *map,
                       int w, int h, int method, const char *label);

/* Writes an RGB8 image as PNG (libpng), atomically (temporary + rename). */
int ctp_png_write_rgb(const char *path, const unsigned char *rgb, int w,
                      int h);
/* Reads an 8-bit RGB PNG back (tests); *rgb is malloc'd. */
int ctp_png_read_rgb(const char *path, unsigned char **rgb, int *w, int *h);

#ifdef __cplusplus
}
#endif
#endif
