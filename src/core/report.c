/*
 * report.c — what one result puts into the PACS (include/ctphase/report.h):
 * the choice of slices, the explanation pictures, the UIDs; the DICOM
 * encoding is src/dicom/write_sr.cc and write_sc.cc.
 *
 * For the result of one acquisition:
 *   1. the UIDs, from a name made of the source series, the acquisition,
 *      the model's SHA-256, the result's margin threshold and everything in
 *      the options that changes the output (config_key, SAM layer, K,
 *      all_slices, masking);
 *   2. the slices to picture: the K key slices (ctp_result_key_slices), or
 *      every slice;
 *   3. for each: its network input again (ctp_explain_load_input), one
 *      explainer run for the result's phase (or, when indeterminate, the
 *      leading one), the SAM at opts->sam_layer brought bilinearly to the
 *      source slice's own grid (the inverse of the predictor's centred
 *      padding), drawn over the slice's HU as read from its file, with the
 *      legend burned in; then, with opts->masking and for key slices, the
 *      masking test of that SAM (costs two more forwards and one backward);
 *   4. the SCs, then the SR, each file atomic; if any write fails, the SC
 *      files this call created are removed again (files of an earlier run
 *      with the same UIDs stay: they may be waiting to be sent).
 *
 * One call uses one explainer (the caller's, or its own), so a worker
 * thread calls it with its own explainer; the model is only read.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctphase/dicom.h"
#include "ctphase/dicom_write.h"
#include "ctphase/error.h"
#include "ctphase/nn.h"
#include "ctphase/render.h"
#include "ctphase/report.h"
#include "ctphase/util.h"
#include "dicom/report_int.h"

/* Series numbers of the derived series: offset + the source's. */
#define SR_SERIES_OFFSET 9000
#define SC_SERIES_OFFSET 9500
/* At most this many key slices are masked in every-slice mode. */
#define MAX_MASK_KEYS 64
/* The seed of the masking test (fixed: the same input, the same score). */
#define MASK_SEED 0x637470686173ull

void ctp_report_opts_default(ctp_report_opts *o) {
  memset(o, 0, sizeof *o);
  o->key_slices = CTP_REPORT_KEY_SLICES;
  o->sam_layer = CTP_REPORT_SAM_LAYER;
}

/* --- UIDs ------------------------------------------------------------ */

/* A site's root: digits and dots, no empty or zero-led component, short
 * enough to leave at least 16 digits of hash. */
static int root_check(const char *root) {
  size_t n = strlen(root);
  if (n > 64 - 17)
    return ctp_seterr(CTP_EINVAL, "UID root '%s' is %zu characters; at most "
                      "47 leave room for the hash", root, n);
  const char *p = root;
  while (*p) {
    const char *start = p;
    while (*p >= '0' && *p <= '9') p++;
    if (p == start || (p - start > 1 && *start == '0') || (*p && *p != '.') ||
        (*p == '.' && !p[1]))
      return ctp_seterr(CTP_EINVAL, "UID root '%s' is not a valid UID prefix "
                        "(digits separated by dots, no leading zeros)", root);
    if (*p) p++;
  }
  return 0;
}

int ctp_report_uid(const char *root, const char *name, char out[65]) {
  if (!name || !out) return ctp_seterr(CTP_EINVAL, "ctp_report_uid: NULL");
  if (!root || !*root) return ctp_dicom_uid_from_name(name, out);
  int r = root_check(root);
  if (r) return r;
  unsigned char h[32];
  ctp_sha256 s;
  ctp_sha256_init(&s);
  ctp_sha256_update(&s, name, strlen(name));
  ctp_sha256_final(&s, h);
  unsigned __int128 v = 0;
  for (int i = 0; i < 16; i++) v = (v << 8) | h[i];
  char digits[48];
  int nd = 0;
  do {
    digits[nd++] = (char)('0' + (int)(v % 10));
    v /= 10;
  } while (v);
  int k = snprintf(out, 65, "%s.", root);
  for (int i = nd - 1; i >= 0 && k < 64; i--) out[k++] = digits[i];
  out[k] = 0;
  return 0;
}

/* The name every UID of the result derives from. */
static void base_name(char *buf, size_t len, const ctp_result *r,
                      const ctp_model *m, const ctp_report_opts *o) {
  snprintf(buf, len,
           "ctphase-report/1|series=%s|acq=%d/%d|model=%s|config=%s|"
           "margin=%.4f|sam=%s|k=%d|all=%d|masking=%d",
           ctp_series_uid(r->series), ctp_acquisition_index(r->acq),
           ctp_acquisition_number(r->acq),
           r->model_sha256[0] ? r->model_sha256 : m->sha256,
           o->config_key ? o->config_key : "", (double)r->margin_threshold,
           ctp_layer_name(o->sam_layer), o->key_slices, o->all_slices,
           o->masking);
}

static int role_uid(const ctp_report_opts *o, const char *base,
                    const char *role, char out[65]) {
  char name[2048];
  snprintf(name, sizeof name, "%s|%s", base, role);
  return ctp_report_uid(o->uid_root, name, out);
}

/* --- helpers --------------------------------------------------------- */

/* PatientOrientation of one direction: letters of its main axes. */
static void orient_letters(const double v[3], char *out) {
  static const char pos[3] = {'L', 'P', 'H'}, neg[3] = {'R', 'A', 'F'};
  int idx[3] = {0, 1, 2};
  for (int i = 0; i < 3; i++)
    for (int j = i + 1; j < 3; j++)
      if (fabs(v[idx[j]]) > fabs(v[idx[i]])) {
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
      }
  int k = 0;
  for (int i = 0; i < 3; i++)
    if (fabs(v[idx[i]]) > 0.25)
      out[k++] = v[idx[i]] > 0 ? pos[idx[i]] : neg[idx[i]];
  out[k] = 0;
}

static void patient_orientation(const ctp_slice *s, char *out, size_t len) {
  if (!s->has_orientation) {
    out[0] = 0;
    return;
  }
  char a[4], b[4];
  orient_letters(s->orientation, a);
  orient_letters(s->orientation + 3, b);
  snprintf(out, len, "%s\\%s", a, b);
}

/* Short phase names for the burned-in legend. */
static const char *phase_display(int phase) {
  static const char *const names[CTP_NUM_CLASSES] = {
      "non-contrast", "arterial (CM)", "portal venous (CM-N)",
      "nephrographic", "pyelographic"};
  return phase >= 0 && phase < CTP_NUM_CLASSES ? names[phase] : "indeterminate";
}

/* The legend: phase, probabilities, map and layer, the warning. Lines
 * stay under 40 characters, the width of a 512-pixel image at scale 2. */
static void make_legend(char *buf, size_t len, const ctp_result *r, int cls,
                        const ctp_explain_info *in, int layer, int index) {
  char phase[64];
  if (r->vote.phase == CTP_PHASE_INDETERMINATE)
    snprintf(phase, sizeof phase, "indeterminate, leans %s",
             ctp_class_name(r->vote.winner));
  else
    snprintf(phase, sizeof phase, "%s", phase_display(r->vote.phase));
  snprintf(buf, len,
           "ctphase: %s\n"
           "vote %.0f%%, slice p=%.2f\n"
           "SAM %s for %s, slice %d/%d\n"
           "DERIVED - NOT FOR DIAGNOSIS",
           phase, 100.0 * r->vote.share[cls], (double)in->probs[cls],
           ctp_layer_name(layer), ctp_class_name(cls), index + 1, r->nslices);
}

static void now_strings(char date[16], char tim[16]) {
  time_t t = time(NULL);
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(date, 16, "%Y%m%d", &tm);
  strftime(tim, 16, "%H%M%S", &tm);
}

/* --- the work -------------------------------------------------------- */

typedef struct {
  const ctp_model *m;
  const ctp_result *r;
  const ctp_report_opts *o;
  ctp_explainer *e;
  int cls;                 /* the class explained */
  float *x;                /* (C,S,S) network input */
  float *map;              /* native SAM */
  float *up;               /* (D,D) upsampled */
  float *crop;             /* (rows, cols) on the source grid */
  float *hu;               /* (rows, cols) */
  unsigned char *rgb;      /* (rows, cols, 3) */
  ctp_masktest mt;
  int has_mt;
} work;

static void work_free(work *w) {
  free(w->x);
  free(w->map);
  free(w->up);
  free(w->crop);
  free(w->hu);
  free(w->rgb);
  if (w->has_mt) ctp_masktest_free(&w->mt);
}

static int work_init(work *w) {
  const ctp_model *m = w->m;
  int rows = ctp_acquisition_rows(w->r->acq), cols = ctp_acquisition_columns(w->r->acq);
  int d = rows > cols ? rows : cols, mh, mw;
  ctp_explainer_map_shape(w->e, CTP_MAP_SAM, w->o->sam_layer, &mh, &mw);
  size_t s = (size_t)m->input_size;
  w->x = malloc((size_t)m->in_channels * s * s * sizeof *w->x);
  w->map = malloc((size_t)mh * mw * sizeof *w->map);
  w->up = malloc((size_t)d * d * sizeof *w->up);
  w->crop = malloc((size_t)rows * cols * sizeof *w->crop);
  w->hu = malloc((size_t)rows * cols * sizeof *w->hu);
  w->rgb = malloc((size_t)rows * cols * 3);
  if (!w->x || !w->map || !w->up || !w->crop || !w->hu || !w->rgb)
    return ctp_seterr(CTP_ENOMEM, "out of memory for a %dx%d report image",
                      cols, rows);
  if (w->o->masking) {
    ctp_mapspec spec = {CTP_MAP_SAM, w->o->sam_layer};
    int r = ctp_masktest_init(&w->mt, &spec, 1, CTP_MASK_FRACTION, MASK_SEED);
    if (r) return r;
    w->has_mt = 1;
  }
  return 0;
}

/* The overlay of slice i into w->rgb (the source grid); masking too when
 * asked. */
static int render_slice(work *w, int i, int key) {
  const ctp_result *r = w->r;
  const ctp_slice *s = r->slices[i].slice;
  int rows = ctp_acquisition_rows(r->acq), cols = ctp_acquisition_columns(r->acq);
  int d = rows > cols ? rows : cols, mh, mw, rc;
  if ((rc = ctp_explain_load_input(w->m, r->acq, i, w->x))) return rc;
  ctp_explain_info info;
  if ((rc = ctp_explainer_run(w->e, w->x, w->cls, CTP_TARGET_LOGIT,
                              CTP_MAP_BIT(CTP_MAP_SAM), &info)) ||
      (rc = ctp_explainer_map(w->e, CTP_MAP_SAM, w->o->sam_layer, w->map)))
    return rc;
  ctp_explainer_map_shape(w->e, CTP_MAP_SAM, w->o->sam_layer, &mh, &mw);
  /* The network saw the slice padded to a centred d x d square. */
  ctp_map_upsample_bilinear(w->map, mh, mw, w->up, d, d);
  int oy = (d - rows) / 2, ox = (d - cols) / 2;
  for (int y = 0; y < rows; y++)
    memcpy(w->crop + (size_t)y * cols, w->up + (size_t)(y + oy) * d + ox,
           (size_t)cols * sizeof *w->crop);
  if ((rc = ctp_slice_load_hu(s, w->hu))) return rc;
  char legend[512];
  make_legend(legend, sizeof legend, r, w->cls, &info, w->o->sam_layer, i);
  if ((rc = ctp_render_overlay(w->rgb, w->hu, w->crop, cols, rows, CTP_MAP_SAM,
                               legend)))
    return rc;
  if (key && w->has_mt) {
    rc = ctp_masktest_add(&w->mt, w->e, w->x, w->cls);
    if (rc == CTP_ESKIP) rc = 0;  /* misclassified slices are not scored */
  }
  return rc;
}

static int check_args(const ctp_model *m, const ctp_result *r,
                      const ctp_report_opts *o, ctp_explainer *expl,
                      const char *out_dir) {
  if (!m || !r || !out_dir || !*out_dir)
    return ctp_seterr(CTP_EINVAL, "report: missing model, result or folder");
  if (r->err)
    return ctp_seterr(CTP_EINVAL, "report: the result failed (%s); nothing "
                      "to report", r->error[0] ? r->error : ctp_strerror(r->err));
  if (!r->series || !r->acq || r->nslices < 1 || !r->slices)
    return ctp_seterr(CTP_EINVAL, "report: the result has no slices");
  if (o->key_slices < 0 || o->key_slices > 1000)
    return ctp_seterr(CTP_EINVAL, "report: %d key slices (0..1000)",
                      o->key_slices);
  int rc = ctp_map_check_layer(CTP_MAP_SAM, o->sam_layer);
  if (rc) return rc;
  if (o->uid_root && *o->uid_root && (rc = root_check(o->uid_root))) return rc;
  if (expl) {
    int c, h, w;
    ctp_net_shape(ctp_explainer_net(expl), CTP_INPUT, &c, &h, &w);
    if (c != m->in_channels || h != m->input_size || w != m->input_size)
      return ctp_seterr(CTP_ESHAPE, "report: the explainer takes %dx%dx%d, "
                        "the model %dx%dx%d", c, h, w, m->in_channels,
                        m->input_size, m->input_size);
  }
  return 0;
}

/* Fills one output record. */
static void set_obj(ctp_report_object *ob, int kind, const char *cls,
                    const char *sop, const char *series, const char *dir) {
  memset(ob, 0, sizeof *ob);
  ob->kind = kind;
  snprintf(ob->sop_class_uid, sizeof ob->sop_class_uid, "%s", cls);
  snprintf(ob->sop_instance_uid, sizeof ob->sop_instance_uid, "%s", sop);
  snprintf(ob->series_instance_uid, sizeof ob->series_instance_uid, "%s", series);
  snprintf(ob->transfer_syntax_uid, sizeof ob->transfer_syntax_uid, "%s",
           CTP_REPORT_TSYNTAX);
  snprintf(ob->path, sizeof ob->path, "%s/%s.dcm", dir, sop);
}

/* The SR of the result. */
static int write_sr(const ctp_model *m, const ctp_result *r,
                    const ctp_report_opts *o, const char *base,
                    const ctp_report_object *ob, const work *w,
                    const char *date, const char *tim) {
  ctp__sr_desc d;
  memset(&d, 0, sizeof d);
  const ctp_slice *ref = r->slices[0].slice;
  char device[65], tracking[65], host[256] = "";
  int rc;
  if ((rc = role_uid(o, base, "tracking", tracking))) return rc;
  if (o->station_name && *o->station_name)
    snprintf(host, sizeof host, "%s", o->station_name);
  else if (gethostname(host, sizeof host - 1) != 0)
    snprintf(host, sizeof host, "ctphase");
  host[64] = 0; /* LO */
  char dev_name[512];
  snprintf(dev_name, sizeof dev_name, "ctphase-device/1|%s|%s", host,
           o->station_ae ? o->station_ae : "");
  if ((rc = ctp_report_uid(o->uid_root, dev_name, device))) return rc;
  ctp__report_ref *refs = malloc((size_t)r->nslices * sizeof *refs);
  if (!refs) return ctp_seterr(CTP_ENOMEM, "out of memory");
  for (int i = 0; i < r->nslices; i++) {
    refs[i].sop_class_uid = r->slices[i].slice->sop_class_uid;
    refs[i].sop_instance_uid = r->slices[i].slice->sop_instance_uid;
  }
  d.path = ob->path;
  d.source_path = ref->path;
  d.study_uid = ref->study_instance_uid;
  d.source_series_uid = ref->series_instance_uid;
  d.series_uid = ob->series_instance_uid;
  d.sop_uid = ob->sop_instance_uid;
  d.series_description = "ctphase contrast phase";
  d.series_number = SR_SERIES_OFFSET + (ref->series_number > 0 ? ref->series_number : 0);
  d.instance_number = 1;
  d.content_date = date;
  d.content_time = tim;
  d.device_uid = device;
  d.station_ae = o->station_ae;
  d.station_name = host;
  d.phase = r->vote.phase;
  d.winner = r->vote.winner;
  memcpy(d.share, r->vote.share, sizeof d.share);
  d.margin = r->vote.margin;
  d.margin_threshold = r->margin_threshold;
  d.nused = r->nslices;
  d.nskipped = r->nskipped;
  d.frame_of_reference_uid = ref->frame_of_reference_uid;
  d.tracking_uid = tracking;
  d.has_masking = o->masking;
  d.sam_layer = o->sam_layer;
  if (w->has_mt) {
    double top = 0, bottom = 0;
    for (int i = 0; i < w->mt.nslices; i++) {
      top += w->mt.top[i];
      bottom += w->mt.bottom[i];
    }
    d.masking_n = w->mt.nslices;
    d.masking_top = d.masking_n ? top / d.masking_n : 0;
    d.masking_bottom = d.masking_n ? bottom / d.masking_n : 0;
  }
  d.model_name = r->model_name[0] ? r->model_name : ctp_model_meta(m, "name");
  d.model_sha256 = r->model_sha256[0] ? r->model_sha256 : m->sha256;
  d.refs = refs;
  d.nrefs = r->nslices;
  rc = ctp__report_write_sr(&d);
  free(refs);
  return rc;
}

/* One SC: the overlay in w->rgb of slice i. */
static int write_sc(const ctp_result *r, const ctp_report_opts *o,
                    const ctp_report_object *ob, const work *w, int i,
                    int instance, const char *date, const char *tim) {
  const ctp_slice *s = r->slices[i].slice;
  ctp__sc_desc d;
  memset(&d, 0, sizeof d);
  char orient[16], sdesc[65], deriv[512];
  patient_orientation(s, orient, sizeof orient);
  snprintf(sdesc, sizeof sdesc, "ctphase SAM %s overlays - not for diagnosis",
           ctp_layer_name(o->sam_layer));
  snprintf(deriv, sizeof deriv,
           "ctphase %s: SAM (saliency activation map) of layer %s for class "
           "%s, rainbow over the CT slice (window 40/400), legend burned in; "
           "model sha256 %.16s",
           CTPHASE_VERSION, ctp_layer_name(o->sam_layer), ctp_class_name(w->cls),
           r->model_sha256);
  d.path = ob->path;
  d.source_path = s->path;
  d.study_uid = s->study_instance_uid;
  d.series_uid = ob->series_instance_uid;
  d.sop_uid = ob->sop_instance_uid;
  d.series_description = sdesc;
  d.derivation_description = deriv;
  d.series_number = SC_SERIES_OFFSET + (s->series_number > 0 ? s->series_number : 0);
  d.instance_number = instance;
  d.content_date = date;
  d.content_time = tim;
  d.src_sop_class_uid = s->sop_class_uid;
  d.src_sop_instance_uid = s->sop_instance_uid;
  d.patient_orientation = orient;
  if (s->spacing_source == 1) {
    d.pixel_spacing[0] = s->pixel_spacing[0];
    d.pixel_spacing[1] = s->pixel_spacing[1];
  }
  d.rows = ctp_acquisition_rows(r->acq);
  d.columns = ctp_acquisition_columns(r->acq);
  d.rgb = w->rgb;
  return ctp__report_write_sc(&d);
}

/* The picture of an SC as PNG, for a look at it. */
static int write_png(const char *dir, const ctp_report_object *ob,
                     const work *w) {
  char path[4200];
  int rc = ctp_mkdir_p(dir, 0755);
  if (rc) return rc;
  snprintf(path, sizeof path, "%s/%s.png", dir, ob->sop_instance_uid);
  return ctp_png_write_rgb(path, w->rgb, ctp_acquisition_columns(w->r->acq),
                           ctp_acquisition_rows(w->r->acq));
}

/* The slices to picture into sel (key slices strongest first, or all in
 * order) and, for masking in every-slice mode, the key slices into keys.
 * Returns how many were selected. */
static int select_slices(const ctp_result *r, const ctp_report_opts *o,
                         int *sel, int *keys, int *nkeys) {
  int nsel = 0;
  *nkeys = 0;
  if (o->all_slices) {
    for (nsel = 0; nsel < r->nslices; nsel++) sel[nsel] = nsel;
    if (o->masking)
      *nkeys = ctp_result_key_slices(
          r, o->key_slices < MAX_MASK_KEYS ? o->key_slices : MAX_MASK_KEYS, keys);
  } else if (o->key_slices > 0) {
    nsel = ctp_result_key_slices(r, o->key_slices, sel);
  }
  return nsel;
}

/* The SCs of the selected slices, as ob[1..]; *written counts the objects
 * whose file is on disk, fresh[] marks those this call created. */
static int write_scs(work *w, const int *sel, int nsel, const int *keys,
                     int nkeys, const char *base, const char *sc_series,
                     const char *out_dir, const char *date, const char *tim,
                     ctp_report_object *ob, unsigned char *fresh,
                     int *written) {
  const ctp_result *r = w->r;
  const ctp_report_opts *o = w->o;
  char uid[65], role[256];
  int rc;
  for (int j = 0; j < nsel; j++) {
    int i = sel[j], key = !o->all_slices;
    for (int q = 0; q < nkeys && !key; q++) key = keys[q] == i;
    ctp_report_object *x = &ob[j + 1];
    snprintf(role, sizeof role, "sc|%s", r->slices[i].slice->sop_instance_uid);
    if ((rc = role_uid(o, base, role, uid))) return rc;
    set_obj(x, CTP_REPORT_SC, CTP_REPORT_SC_CLASS, uid, sc_series, out_dir);
    fresh[j + 1] = access(x->path, F_OK) != 0;
    if ((rc = render_slice(w, i, key)) ||
        (rc = write_sc(r, o, x, w, i, o->all_slices ? i + 1 : j + 1, date, tim)))
      return rc;
    *written = j + 2;
    if (o->png_dir && (rc = write_png(o->png_dir, x, w))) return rc;
  }
  return 0;
}

static int report_write(const ctp_model *m, const ctp_result *r,
                        const ctp_report_opts *o, ctp_explainer *expl,
                        const char *out_dir, ctp_report_object **objs, int *n) {
  char base[1024], date[16], tim[16], sr_series[65], sc_series[65], uid[65];
  int rc, nsel = 0, nkeys = 0, written = 0, keys[MAX_MASK_KEYS];
  int k = o->all_slices ? r->nslices : o->key_slices;
  int *sel = malloc((size_t)(k > 0 ? k : 1) * sizeof *sel);
  ctp_report_object *ob = calloc((size_t)k + 1, sizeof *ob);
  unsigned char *fresh = calloc((size_t)k + 1, 1);
  ctp_explainer *own = NULL;
  work w;
  memset(&w, 0, sizeof w);
  w.m = m;
  w.r = r;
  w.o = o;
  w.cls = r->vote.phase >= 0 ? r->vote.phase : r->vote.winner;
  base_name(base, sizeof base, r, m, o);
  now_strings(date, tim);
  if (!sel || !ob || !fresh) {
    rc = ctp_seterr(CTP_ENOMEM, "out of memory");
    goto fail;
  }
  if ((rc = ctp_mkdir_p(out_dir, 0755)) ||
      (rc = role_uid(o, base, "sr-series", sr_series)) ||
      (rc = role_uid(o, base, "sc-series", sc_series)) ||
      (rc = role_uid(o, base, "sr", uid)))
    goto fail;
  set_obj(&ob[0], CTP_REPORT_SR, CTP_REPORT_SR_CLASS, uid, sr_series, out_dir);
  nsel = select_slices(r, o, sel, keys, &nkeys);
  if (nsel > 0) {
    if (!expl && (rc = ctp_explainer_new(&own, m, m->input_size,
                                         m->input_size, o->threads)))
      goto fail;
    w.e = expl ? expl : own;
    if ((rc = work_init(&w)) ||
        (rc = write_scs(&w, sel, nsel, keys, nkeys, base, sc_series, out_dir,
                        date, tim, ob, fresh, &written)))
      goto fail;
  }
  if ((rc = write_sr(m, r, o, base, &ob[0], &w, date, tim))) goto fail;
  *objs = ob;
  *n = nsel + 1;
  ob = NULL;
fail:
  /* On failure, the SCs this call created: a failed report leaves no
   * partial set. A file that was there before (an earlier run's, same UID
   * and content) is left, since it may still be waiting to be sent. */
  for (int j = 1; rc && j < written; j++)
    if (fresh[j]) unlink(ob[j].path);
  work_free(&w);
  ctp_explainer_free(own);
  free(sel);
  free(ob);
  free(fresh);
  return rc;
}

int ctp_report_write(const ctp_model *m, const ctp_result *r,
                     const ctp_report_opts *o, ctp_explainer *expl,
                     const char *out_dir, ctp_report_object **objs, int *n) {
  if (!objs || !n) return ctp_seterr(CTP_EINVAL, "report: NULL output");
  *objs = NULL;
  *n = 0;
  ctp_report_opts def;
  if (!o) {
    ctp_report_opts_default(&def);
    o = &def;
  }
  int rc = check_args(m, r, o, expl, out_dir);
  if (rc) return rc;
  return report_write(m, r, o, expl, out_dir, objs, n);
}
