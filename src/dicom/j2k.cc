/*
 * j2k.cc — JPEG 2000 frames decoded with OpenJPEG.
 *
 * DICOM's JPEG 2000 transfer syntaxes (1.2.840.10008.1.2.4.90 lossless,
 * .91 lossy) carry a raw J2K codestream per frame (a few writers wrap it in
 * a JP2 file instead; both are recognised by their first bytes). OpenJPEG
 * reads from a stream object; here the stream reads from the memory buffer
 * that read.cc assembled from the frame's fragments.
 *
 * Only what a CT slice needs is accepted: one component, of exactly the
 * size the DICOM header announces, with at most 16 bits of precision, at
 * full resolution. Anything else is refused with a message rather than
 * guessed at. OpenJPEG's own messages go to a buffer whose first error
 * becomes our message; nothing is printed.
 *
 * Uses only OpenJPEG's C API (no exceptions can arise); each call owns its
 * codec and stream, so calls from several threads do not interact.
 */
#include "dicom/j2k.h"

#include "ctphase/error.h"

#include <openjpeg.h>

#include <string.h>

namespace {

/* The memory the stream reads from. */
struct MemSource {
  const unsigned char *data;
  size_t len;
  size_t pos;
};

OPJ_SIZE_T mem_read(void *buf, OPJ_SIZE_T n, void *user) {
  MemSource *m = static_cast<MemSource *>(user);
  if (m->pos >= m->len) return (OPJ_SIZE_T)-1; /* end of stream */
  size_t left = m->len - m->pos;
  if (n > left) n = left;
  memcpy(buf, m->data + m->pos, n);
  m->pos += n;
  return n;
}

OPJ_OFF_T mem_skip(OPJ_OFF_T n, void *user) {
  MemSource *m = static_cast<MemSource *>(user);
  if (n < 0) {
    if ((size_t)(-n) > m->pos) return -1;
    m->pos -= (size_t)(-n);
    return n;
  }
  size_t left = m->len - m->pos;
  if ((size_t)n > left) n = (OPJ_OFF_T)left;
  m->pos += (size_t)n;
  return n;
}

OPJ_BOOL mem_seek(OPJ_OFF_T n, void *user) {
  MemSource *m = static_cast<MemSource *>(user);
  if (n < 0 || (size_t)n > m->len) return OPJ_FALSE;
  m->pos = (size_t)n;
  return OPJ_TRUE;
}

/* Keeps OpenJPEG's first error message. */
struct MsgSink {
  char first[200];
};

void on_error(const char *msg, void *user) {
  MsgSink *s = static_cast<MsgSink *>(user);
  if (s->first[0]) return;
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) n--;
  if (n >= sizeof s->first) n = sizeof s->first - 1;
  memcpy(s->first, msg, n);
  s->first[n] = '\0';
}

void on_quiet(const char *msg, void *user) {
  (void)msg;
  (void)user;
}

/* The JP2 file signature box, or else (if it starts with SOC+SIZ) a raw
 * codestream. */
int codec_format(const unsigned char *d, size_t len) {
  static const unsigned char jp2_sig[12] = {0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50,
                                            0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a};
  if (len >= 12 && memcmp(d, jp2_sig, 12) == 0) return OPJ_CODEC_JP2;
  if (len >= 4 && d[0] == 0xff && d[1] == 0x4f && d[2] == 0xff && d[3] == 0x51)
    return OPJ_CODEC_J2K;
  return -1;
}

} /* namespace */

int ctp__j2k_decode(const unsigned char *data, size_t len, int rows,
                    int columns, int32_t *out, int *prec, int *sgnd) {
  int fmt = codec_format(data, len);
  if (fmt < 0)
    return ctp_seterr(CTP_EFORMAT,
                      "JPEG 2000 frame does not start with a codestream "
                      "(FF4F FF51) or a JP2 signature");

  int rc = 0;
  MsgSink sink;
  sink.first[0] = '\0';
  MemSource src = {data, len, 0};
  opj_image_t *img = NULL;
  opj_dparameters_t params;
  opj_stream_t *stream = NULL;
  opj_codec_t *codec = opj_create_decompress((OPJ_CODEC_FORMAT)fmt);
  if (!codec) return ctp_seterr(CTP_ENOMEM, "OpenJPEG: cannot create decoder");
  opj_set_error_handler(codec, on_error, &sink);
  opj_set_warning_handler(codec, on_quiet, NULL);
  opj_set_info_handler(codec, on_quiet, NULL);
  opj_set_default_decoder_parameters(&params);
  if (!opj_setup_decoder(codec, &params)) {
    rc = ctp_seterr(CTP_EFORMAT, "OpenJPEG: decoder setup failed: %s",
                    sink.first);
    goto done;
  }

  stream = opj_stream_create(64 * 1024, OPJ_TRUE);
  if (!stream) {
    rc = ctp_seterr(CTP_ENOMEM, "OpenJPEG: cannot create stream");
    goto done;
  }
  opj_stream_set_read_function(stream, mem_read);
  opj_stream_set_skip_function(stream, mem_skip);
  opj_stream_set_seek_function(stream, mem_seek);
  opj_stream_set_user_data(stream, &src, NULL);
  opj_stream_set_user_data_length(stream, (OPJ_UINT64)len);

  if (!opj_read_header(stream, codec, &img)) {
    rc = ctp_seterr(CTP_EFORMAT, "JPEG 2000 header unreadable: %s",
                    sink.first[0] ? sink.first : "(no detail)");
    goto done;
  }
  if (!opj_decode(codec, stream, img) || !opj_end_decompress(codec, stream)) {
    rc = ctp_seterr(CTP_EFORMAT, "JPEG 2000 decoding failed: %s",
                    sink.first[0] ? sink.first : "(no detail)");
    goto done;
  }

  if (img->numcomps != 1) {
    rc = ctp_seterr(CTP_ENOTSUP,
                    "JPEG 2000 frame has %u components; a CT slice has 1",
                    img->numcomps);
    goto done;
  }
  {
    const opj_image_comp_t *c = &img->comps[0];
    if (!c->data || c->w != (OPJ_UINT32)columns || c->h != (OPJ_UINT32)rows) {
      rc = ctp_seterr(CTP_EFORMAT,
                      "JPEG 2000 frame is %ux%u but the header says %dx%d",
                      c->w, c->h, columns, rows);
      goto done;
    }
    if (c->prec < 1 || c->prec > 16) {
      rc = ctp_seterr(CTP_ENOTSUP,
                      "JPEG 2000 frame has %u-bit samples (1..16 supported)",
                      c->prec);
      goto done;
    }
    memcpy(out, c->data, (size_t)rows * (size_t)columns * sizeof(int32_t));
    *prec = (int)c->prec;
    *sgnd = (int)c->sgnd;
  }

done:
  if (img) opj_image_destroy(img);
  if (stream) opj_stream_destroy(stream);
  opj_destroy_codec(codec);
  return rc;
}
