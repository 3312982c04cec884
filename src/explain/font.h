/*
 * font.h — the built-in 5x9 bitmap font (internal to src/explain).
 */
#ifndef CTPHASE_EXPLAIN_FONT_H
#define CTPHASE_EXPLAIN_FONT_H

#include "ctphase/render.h"

/* 1 where glyph ch has ink at column x (0..4), row y (0..8); characters
 * outside printable ASCII draw as '?'. */
int ctp_font_pixel(int ch, int x, int y);

#endif
