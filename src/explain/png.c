/*
 * png.c — RGB8 images to and from PNG files, through libpng's simplified
 * API (png_image), which reports errors in a message rather than by
 * longjmp.
 *
 * A PNG is encoded in memory and written with ctp_file_write_atomic()
 * (temporary file, fsync, rename), so a reader never sees half a file.
 */
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/render.h"
#include "ctphase/util.h"

int ctp_png_write_rgb(const char *path, const unsigned char *rgb, int w,
                      int h) {
  if (!path || !rgb || w < 1 || h < 1)
    return ctp_seterr(CTP_EINVAL, "ctp_png_write_rgb: bad argument");
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)w;
  img.height = (png_uint_32)h;
  img.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  /* First call: the encoded size; second: the bytes. */
  if (!png_image_write_to_memory(&img, NULL, &size, 0, rgb, 0, NULL))
    return ctp_seterr(CTP_EIO, "%s: cannot encode PNG: %s", path, img.message);
  void *buf = malloc(size);
  if (!buf) return ctp_seterr(CTP_ENOMEM, "out of memory encoding PNG");
  if (!png_image_write_to_memory(&img, buf, &size, 0, rgb, 0, NULL)) {
    free(buf);
    return ctp_seterr(CTP_EIO, "%s: cannot encode PNG: %s", path, img.message);
  }
  int r = ctp_file_write_atomic(path, buf, size);
  free(buf);
  return r;
}

int ctp_png_read_rgb(const char *path, unsigned char **rgb, int *w, int *h) {
  if (!path || !rgb || !w || !h)
    return ctp_seterr(CTP_EINVAL, "ctp_png_read_rgb: NULL");
  *rgb = NULL;
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path))
    return ctp_seterr(CTP_EFORMAT, "%s: not a readable PNG: %s", path,
                      img.message);
  img.format = PNG_FORMAT_RGB;
  unsigned char *buf = malloc(PNG_IMAGE_SIZE(img));
  if (!buf) {
    png_image_free(&img);
    return ctp_seterr(CTP_ENOMEM, "out of memory reading %s", path);
  }
  if (!png_image_finish_read(&img, NULL, buf, 0, NULL)) {
    free(buf);
    return ctp_seterr(CTP_EFORMAT, "%s: %s", path, img.message);
  }
  *rgb = buf;
  *w = (int)img.width;
  *h = (int)img.height;
  return 0;
}
