/*
 * evaluate.c — a trained model on held-out data, measured the way the paper
 * measured its own (Philbrick et al. 2018, "Statistics"; DESIGN.md §2-3).
 *
 * Flow of ctp_eval_run():
 *   1. the series: the test rows of a training run's split.csv, fresh
 *      phantom series, or labelled DICOM (collect_*);
 *   2. inference, series by series: phantom slices are rendered at the
 *      model's input size and preprocessed as prediction does, then run in
 *      batches through one inference-only ctp_net; DICOM acquisitions go
 *      through the predictor itself (ctp_predictor_run), so every slice sees
 *      exactly the production path. Only the probabilities are kept;
 *   3. Pandemonium voting per series and the metrics (metrics.h) of the
 *      slices and of the series;
 *   4. explanations on a chosen subset of correctly classified slices,
 *      loaded again: every map from one explainer run, its pointing-game
 *      shares against the phantom's organ labels, an example overlay when
 *      one is wanted for the slice's class, then the masking test
 *      (ctp_masktest_add runs the explainer again and spoils its maps).
 *
 * Phantom series are drawn as src/train/train.c's build_phantom draws them:
 * po.seed from the id, po.phase the series' class, po.size the model's
 * input size; slice k of K is (k + 0.5) * nz / K. 2.5-D models get the
 * slices z-1, z, z+1 of the phantom (clamped), as the trainer gives them.
 *
 * Memory: probabilities for every slice; one batch of inputs; during the
 * explanations the upsampled maps of one slice (specs x input grid).
 * Threads: the network and the phantom renderer use `threads` OpenMP
 * threads; this file itself is single-threaded.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctphase/dicom.h"
#include "ctphase/error.h"
#include "ctphase/evaluate.h"
#include "ctphase/nn.h"
#include "ctphase/phantom.h"
#include "ctphase/render.h"
#include "ctphase/util.h"

static const char *const region_names[CTP_NUM_REGIONS] = {"kidney", "aorta",
                                                          "ivc", "any"};

const char *ctp_region_name(int region) {
  return region >= 0 && region < CTP_NUM_REGIONS ? region_names[region] : NULL;
}

unsigned ctp_region_of_label(int label) {
  switch (label) {
  case CTP_LABEL_RENAL_CORTEX:
  case CTP_LABEL_RENAL_MEDULLA:
  case CTP_LABEL_COLLECTING:
    return 1u << CTP_REGION_KIDNEY | 1u << CTP_REGION_ANY;
  case CTP_LABEL_AORTA:
    return 1u << CTP_REGION_AORTA | 1u << CTP_REGION_ANY;
  case CTP_LABEL_IVC:
    return 1u << CTP_REGION_IVC | 1u << CTP_REGION_ANY;
  default:
    return 0;
  }
}

void ctp_eval_opts_default(ctp_eval_opts *o) {
  memset(o, 0, sizeof *o);
  o->phantom_seed = 1;
  o->batch = 16;
  o->margin = CTP_DEFAULT_MARGIN;
  o->mask_slices = 40;
  o->nlayers = 5;
  o->layers[0] = CTP_L2B;
  o->layers[1] = CTP_L3B;
  o->layers[2] = CTP_L4B;
  o->layers[3] = CTP_L5B;
  o->layers[4] = CTP_L6;
  o->fraction = CTP_MASK_FRACTION;
  o->seed = 1;
  o->examples = 4;
}

/* What the run needs besides the result: the model, the options, the
 * DICOM scan and, per series, where its slices come from. */
typedef struct {
  const ctp_model *m;
  const ctp_eval_opts *o;
  ctp_eval *ev;
  int cap_series, cap_slices;
  ctp_scan *scan;
  const ctp_series **dser;        /* (cap_series) NULL for phantom series */
  const ctp_acquisition **dacq;   /* (cap_series) */
  int S, C;                       /* input size and channels */
  size_t plane;                   /* S * S */
} eval_ctx;

/* Slice k of K spread over nz, as the trainer picks them. */
static int pick_slice(int k, int K, int nz) {
  if (K >= nz) return k;
  return (int)((k + 0.5) * nz / K);
}

static int picks_for(const eval_ctx *c, int nz) {
  int k = c->o->slices_per_series;
  return k > 0 && k < nz ? k : nz;
}

/* --- the series ------------------------------------------------------- */

static ctp_eval_series *series_add(eval_ctx *c, const char *id, int label) {
  ctp_eval *ev = c->ev;
  if (ev->nseries == c->cap_series) {
    int cap = c->cap_series ? 2 * c->cap_series : 64;
    ctp_eval_series *s = realloc(ev->series, (size_t)cap * sizeof *s);
    if (s) ev->series = s;
    const ctp_series **ds = realloc(c->dser, (size_t)cap * sizeof *ds);
    if (ds) c->dser = ds;
    const ctp_acquisition **da = realloc(c->dacq, (size_t)cap * sizeof *da);
    if (da) c->dacq = da;
    if (!s || !ds || !da) return NULL;
    c->cap_series = cap;
  }
  int i = ev->nseries++;
  ctp_eval_series *s = &ev->series[i];
  memset(s, 0, sizeof *s);
  snprintf(s->id, sizeof s->id, "%s", id);
  s->label = label;
  c->dser[i] = NULL;
  c->dacq[i] = NULL;
  return s;
}

/* Splits a CSV line in place at commas (no quoting: UIDs, names and
 * numbers), trimming blanks and quotes. Returns the field count. */
static int csv_fields(char *line, char **f, int max) {
  int n = 0;
  char *p = line;
  while (n < max) {
    while (*p == ' ' || *p == '\t' || *p == '"') p++;
    f[n++] = p;
    char *end = p + strcspn(p, ",\r\n");
    int more = *end == ',';
    char *q = end;
    while (q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '"')) q--;
    *q = 0;
    if (!more) break;
    p = end + 1;
  }
  return n;
}

static int find_column(char **f, int n, const char *const *names) {
  for (int i = 0; i < n; i++)
    for (const char *const *k = names; *k; k++)
      if (!strcasecmp(f[i], *k)) return i;
  return -1;
}

/* A labels table: SeriesInstanceUID -> class, from a CSV. */
typedef struct {
  int n, cap;
  char **uid;
  int *cls;
} label_table;

static void labels_free(label_table *t) {
  for (int i = 0; i < t->n; i++) free(t->uid[i]);
  free(t->uid);
  free(t->cls);
  memset(t, 0, sizeof *t);
}

static int labels_add(label_table *t, const char *uid, int cls) {
  if (t->n == t->cap) {
    int cap = t->cap ? 2 * t->cap : 64;
    char **u = realloc(t->uid, (size_t)cap * sizeof *u);
    if (u) t->uid = u;
    int *c = realloc(t->cls, (size_t)cap * sizeof *c);
    if (c) t->cls = c;
    if (!u || !c) return ctp_seterr(CTP_ENOMEM, "out of memory");
    t->cap = cap;
  }
  if (!(t->uid[t->n] = strdup(uid))) return ctp_seterr(CTP_ENOMEM, "out of memory");
  t->cls[t->n++] = cls;
  return 0;
}

static int labels_lookup(const label_table *t, const char *uid) {
  for (int i = 0; i < t->n; i++)
    if (!strcmp(t->uid[i], uid)) return t->cls[i];
  return -1;
}

/* Reads uid,phase rows. A first row naming a UID column (series,
 * series_uid, series_instance_uid, SeriesInstanceUID, uid) and a phase
 * column is a header and picks the columns (so a phantom manifest.csv or a
 * split.csv works); otherwise the columns are 0 and 1. With split_only,
 * only rows whose "split" column is "test" are kept. */
static int read_label_csv(const char *path, int split_only, label_table *t) {
  static const char *const uid_names[] = {"series", "series_uid",
      "series_instance_uid", "seriesinstanceuid", "uid", NULL};
  static const char *const phase_names[] = {"phase", NULL};
  static const char *const split_names[] = {"split", NULL};
  FILE *f = fopen(path, "r");
  if (!f) return ctp_seterr(CTP_ENOENT, "%s: %s", path, strerror(errno));
  char line[8192], *fl[64];
  int ucol = 0, pcol = 1, scol = -1, lineno = 0, r = 0;
  while (!r && fgets(line, sizeof line, f)) {
    int n = csv_fields(line, fl, 64);
    if (++lineno == 1 && find_column(fl, n, uid_names) >= 0 &&
        find_column(fl, n, phase_names) >= 0) {
      ucol = find_column(fl, n, uid_names);
      pcol = find_column(fl, n, phase_names);
      scol = find_column(fl, n, split_names);
      continue;
    }
    if (n == 1 && !fl[0][0]) continue;
    if (split_only && (scol < 0 || scol >= n || strcmp(fl[scol], "test"))) continue;
    int cls = n > ucol && n > pcol ? ctp_class_parse(fl[pcol]) : CTP_EINVAL;
    if (cls < 0)
      r = ctp_seterr(CTP_EFORMAT, "%s:%d: no series UID and phase (noncon, "
                     "cm, cmneph, neph, pyelo) in this row", path, lineno);
    else
      r = labels_add(t, fl[ucol], cls);
  }
  fclose(f);
  if (split_only && scol < 0 && !r)
    r = ctp_seterr(CTP_EFORMAT, "%s: no header with series, phase and split "
                   "columns", path);
  return r;
}

/* Adds every acquisition of every labelled series under data_dir. */
static int collect_dicom_series(eval_ctx *c, const label_table *t) {
  const char *paths[1] = {c->o->data_dir};
  int r = ctp_dicom_scan(paths, 1, &c->scan);
  if (r) return r;
  for (int s = 0; s < ctp_scan_num_series(c->scan); s++) {
    const ctp_series *se = ctp_scan_series(c->scan, s);
    int cls = labels_lookup(t, ctp_series_uid(se));
    int na = ctp_series_num_acquisitions(se);
    if (cls < 0) continue;
    for (int a = 0; a < na; a++) {
      char id[160];
      if (na > 1) snprintf(id, sizeof id, "%s#%d", ctp_series_uid(se), a + 1);
      else snprintf(id, sizeof id, "%s", ctp_series_uid(se));
      ctp_eval_series *es = series_add(c, id, cls);
      if (!es) return ctp_seterr(CTP_ENOMEM, "out of memory");
      c->dser[c->ev->nseries - 1] = se;
      c->dacq[c->ev->nseries - 1] = ctp_series_acquisition(se, a);
    }
  }
  return 0;
}

/* A split's test rows: phantom ids become phantom series, the rest are
 * looked up as DICOM under data_dir. */
static int collect_split(eval_ctx *c) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/split.csv", c->o->split_dir) >= (int)sizeof path)
    return ctp_seterr(CTP_EINVAL, "split folder path too long");
  label_table t = {0}, dicom = {0};
  int r = read_label_csv(path, 1, &t);
  for (int i = 0; !r && i < t.n; i++) {
    if (!strncmp(t.uid[i], "phantom-", 8)) {
      char *end;
      errno = 0;
      unsigned long long seed = strtoull(t.uid[i] + 8, &end, 10);
      if (*end || errno) {
        r = ctp_seterr(CTP_EFORMAT, "%s: bad phantom id %s", path, t.uid[i]);
        break;
      }
      ctp_eval_series *s = series_add(c, t.uid[i], t.cls[i]);
      if (!s) r = ctp_seterr(CTP_ENOMEM, "out of memory");
      else s->seed = seed;
    } else {
      r = labels_add(&dicom, t.uid[i], t.cls[i]);
    }
  }
  if (!r && dicom.n > 0 && !c->o->data_dir)
    r = ctp_seterr(CTP_EINVAL, "%s names %d DICOM test series: give the DICOM "
                   "folder with --data", path, dicom.n);
  if (!r && dicom.n > 0) r = collect_dicom_series(c, &dicom);
  labels_free(&t);
  labels_free(&dicom);
  return r;
}

static int collect_phantom(eval_ctx *c) {
  for (int i = 0; i < c->o->phantom_series; i++) {
    uint64_t seed = CTP_EVAL_PHANTOM_SEED_BASE + c->o->phantom_seed * 1000003ULL + (uint64_t)i;
    char id[64];
    snprintf(id, sizeof id, "phantom-%llu", (unsigned long long)seed);
    ctp_eval_series *s = series_add(c, id, i % CTP_NUM_CLASSES);
    if (!s) return ctp_seterr(CTP_ENOMEM, "out of memory");
    s->seed = seed;
  }
  return 0;
}

static int collect_labelled_dicom(eval_ctx *c) {
  label_table t = {0};
  int r = read_label_csv(c->o->labels_csv, 0, &t);
  if (!r) r = collect_dicom_series(c, &t);
  labels_free(&t);
  return r;
}

/* --- loading slices ---------------------------------------------------- */

static int phantom_open(const eval_ctx *c, const ctp_eval_series *s,
                        ctp_phantom **p) {
  ctp_phantom_opts po;
  ctp_phantom_opts_init(&po);
  po.seed = s->seed;
  po.phase = s->label;
  po.size = c->S;
  return ctp_phantom_new(p, &po);
}

/* The network input of phantom slice z into x (C,S,S) and, when labels is
 * not NULL, the organ labels of slice z. hu holds one plane; work the
 * preprocessing workspace. */
static int phantom_input(const eval_ctx *c, const ctp_phantom *p, int z,
                         float *x, uint8_t *labels, float *hu, void *work) {
  int nz = ctp_phantom_get_info(p)->num_slices, r = 0;
  for (int ch = 0; !r && ch < c->C; ch++) {
    /* Channels run feet to head, as in an acquisition ordered along its
     * normal (predict.c): the phantom's slice k+1 lies below slice k. */
    int zz = c->C == 3 ? z + 1 - ch : z;
    zz = zz < 0 ? 0 : zz >= nz ? nz - 1 : zz;
    uint8_t *lab = labels && zz == z ? labels : NULL;
    r = ctp_phantom_render_float(p, zz, 1, hu, lab, c->o->threads);
    if (!r)
      r = ctp_preprocess_slice(hu, c->S, c->S, c->m->hu_mean, c->m->hu_std,
                               c->S, x + (size_t)ch * c->plane, work);
  }
  return r;
}

/* Phantom slices z0 .. z0+n-1 (consecutive, 1-channel model) rendered in
 * one call, so the renderer's threads share the work. hu and labels hold n
 * planes. */
static int phantom_inputs_run(const eval_ctx *c, const ctp_phantom *p, int z0,
                              int n, float *x, uint8_t *labels, float *hu,
                              void *work) {
  int r = ctp_phantom_render_float(p, z0, n, hu, labels, c->o->threads);
  for (int k = 0; !r && k < n; k++)
    r = ctp_preprocess_slice(hu + (size_t)k * c->plane, c->S, c->S,
                             c->m->hu_mean, c->m->hu_std, c->S,
                             x + (size_t)k * c->plane, work);
  return r;
}

/* --- inference ---------------------------------------------------------- */

static ctp_eval_slice *slice_add(eval_ctx *c, int series, int z) {
  ctp_eval *ev = c->ev;
  if (ev->nslices == c->cap_slices) {
    int cap = c->cap_slices ? 2 * c->cap_slices : 1024;
    ctp_eval_slice *s = realloc(ev->slices, (size_t)cap * sizeof *s);
    if (!s) return NULL;
    ev->slices = s;
    c->cap_slices = cap;
  }
  ctp_eval_slice *s = &ev->slices[ev->nslices++];
  memset(s, 0, sizeof *s);
  s->series = series;
  s->z = z;
  s->label = ev->series[series].label;
  return s;
}

/* Whether a label plane shows any of the kidney (cortex, medulla, collecting
 * system). */
static int shows_kidney(const uint8_t *labels, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ctp_region_of_label(labels[i]) & (1u << CTP_REGION_KIDNEY)) return 1;
  return 0;
}

/* Buffers of the phantom inference loop. */
typedef struct {
  ctp_net *net;
  int B;
  float *x;       /* (B, C, S, S) */
  float *hu;      /* (B, S, S) */
  uint8_t *lab;   /* (B, S, S) */
  void *work;
} infer_bufs;

/* Runs nb inputs of bufs->x and records them as slices zs of series s;
 * kidney[j] as in ctp_eval_slice. */
static int infer_batch(eval_ctx *c, infer_bufs *b, int s, const int *zs,
                       const int *kidney, int nb) {
  float logits[64 * CTP_NUM_CLASSES], probs[64 * CTP_NUM_CLASSES];
  int r = ctp_net_forward(b->net, b->x, nb, logits);
  if (r) return r;
  ctp_softmax(logits, probs, nb);
  for (int j = 0; j < nb; j++) {
    ctp_eval_slice *sl = slice_add(c, s, zs[j]);
    if (!sl) return ctp_seterr(CTP_ENOMEM, "out of memory");
    memcpy(sl->probs, probs + j * CTP_NUM_CLASSES, sizeof sl->probs);
    sl->pred = ctp_argmax(sl->probs, CTP_NUM_CLASSES);
    sl->kidney = kidney[j];
  }
  return 0;
}

static int infer_phantom_series(eval_ctx *c, infer_bufs *b, int s) {
  ctp_eval_series *se = &c->ev->series[s];
  ctp_phantom *p;
  int r = phantom_open(c, se, &p);
  if (r) return r;
  int nz = ctp_phantom_get_info(p)->num_slices, K = picks_for(c, nz);
  se->total_slices = nz;
  se->first = c->ev->nslices;
  for (int k0 = 0; !r && k0 < K; k0 += b->B) {
    int nb = K - k0 < b->B ? K - k0 : b->B, zs[64] = {0}, kid[64] = {0};
    for (int j = 0; j < nb; j++) zs[j] = pick_slice(k0 + j, K, nz);
    if (c->C == 1 && zs[nb - 1] - zs[0] == nb - 1) {
      r = phantom_inputs_run(c, p, zs[0], nb, b->x, b->lab, b->hu, b->work);
    } else {
      for (int j = 0; !r && j < nb; j++)
        r = phantom_input(c, p, zs[j], b->x + (size_t)j * c->C * c->plane,
                          b->lab + (size_t)j * c->plane, b->hu, b->work);
    }
    for (int j = 0; !r && j < nb; j++)
      kid[j] = shows_kidney(b->lab + (size_t)j * c->plane, c->plane);
    if (!r) r = infer_batch(c, b, s, zs, kid, nb);
  }
  se->nslices = c->ev->nslices - se->first;
  ctp_phantom_free(p);
  return r;
}

/* A DICOM acquisition through the predictor; a failure is reported and the
 * series left with no slices. */
static int infer_dicom_series(eval_ctx *c, ctp_predictor *pred, int s) {
  ctp_eval_series *se = &c->ev->series[s];
  ctp_result res;
  se->first = c->ev->nslices;
  ctp_predictor_run(pred, c->dser[s], c->dacq[s], &res);
  if (res.err) {
    fprintf(stderr, "evaluate: %s: %s (left out)\n", se->id, res.error);
    ctp_result_free(&res);
    return 0;
  }
  int nz = res.nslices, K = picks_for(c, nz), r = 0;
  se->total_slices = nz;
  for (int k = 0; k < K; k++) {
    int z = pick_slice(k, K, nz);
    ctp_eval_slice *sl = slice_add(c, s, z);
    if (!sl) { r = ctp_seterr(CTP_ENOMEM, "out of memory"); break; }
    memcpy(sl->probs, res.slices[z].probs, sizeof sl->probs);
    sl->pred = ctp_argmax(sl->probs, CTP_NUM_CLASSES);
    sl->kidney = -1;
  }
  se->nslices = c->ev->nslices - se->first;
  ctp_result_free(&res);
  return r;
}

static void progress(const eval_ctx *c, const char *what, int i, int n) {
  if (c->o->quiet || !isatty(2)) return;
  fprintf(stderr, "\r%s %d/%d", what, i, n);
  if (i == n) fputc('\n', stderr);
}

static int infer_all(eval_ctx *c) {
  infer_bufs b = {0};
  ctp_predictor *pred = NULL;
  b.B = c->o->batch > 0 ? (c->o->batch < 64 ? c->o->batch : 64) : 16;
  b.x = malloc((size_t)b.B * c->C * c->plane * sizeof(float));
  b.hu = malloc((size_t)b.B * c->plane * sizeof(float));
  b.lab = malloc((size_t)b.B * c->plane);
  b.work = malloc(ctp_preprocess_work_bytes(c->S, c->S, c->S));
  int r = 0;
  if (!b.x || !b.hu || !b.lab || !b.work) r = ctp_seterr(CTP_ENOMEM, "out of memory");
  if (!r) r = ctp_net_new(&b.net, c->m, b.B, c->S, c->S, 0, c->o->threads);
  if (!r && c->scan) {
    ctp_predict_opts po;
    ctp_predict_opts_default(&po);
    po.threads = c->o->threads;
    po.margin = c->o->margin;
    r = ctp_predictor_new(&pred, c->m, &po);
  }
  for (int s = 0; !r && s < c->ev->nseries; s++) {
    r = c->dser[s] ? infer_dicom_series(c, pred, s) : infer_phantom_series(c, &b, s);
    progress(c, "evaluate: series", s + 1, c->ev->nseries);
  }
  ctp_predictor_free(pred);
  ctp_net_free(b.net);
  free(b.x);
  free(b.hu);
  free(b.lab);
  free(b.work);
  return r;
}

/* --- voting and metrics ------------------------------------------------- */

/* The metrics on the slices that show a kidney (phantom series), single
 * and voted over each series' kidney slices; both stay empty (n 0) when no
 * slice is known to show one. truth and scores hold nslices items. */
static int measure_kidney_range(eval_ctx *c, int *truth, float *scores) {
  ctp_eval *ev = c->ev;
  int n = 0, nv = 0, r;
  for (int i = 0; i < ev->nslices; i++) {
    if (ev->slices[i].kidney != 1) continue;
    truth[n] = ev->slices[i].label;
    memcpy(scores + (size_t)n * CTP_NUM_CLASSES, ev->slices[i].probs,
           sizeof ev->slices[i].probs);
    n++;
  }
  if (n == 0) return 0;
  if ((r = ctp_metrics_compute(truth, scores, (size_t)n, &ev->kidney_single))) return r;
  /* Slices of a series are consecutive, so each series' kidney slices are a
   * run of the n items just gathered; its vote overwrites the run's start. */
  int i = 0;
  for (int s = 0; s < ev->nseries; s++) {
    const ctp_eval_series *se = &ev->series[s];
    int k = 0;
    for (int j = se->first; j < se->first + se->nslices; j++) k += ev->slices[j].kidney == 1;
    if (k == 0) continue;
    ctp_vote v;
    if ((r = ctp_vote_pandemonium(scores + (size_t)i * CTP_NUM_CLASSES, k,
                                  c->o->margin, &v)))
      return r;
    truth[nv] = se->label;
    memcpy(scores + (size_t)nv * CTP_NUM_CLASSES, v.share, sizeof v.share);
    nv++;
    i += k;
  }
  return ctp_metrics_compute(truth, scores, (size_t)nv, &ev->kidney_voted);
}

static int vote_and_measure(eval_ctx *c) {
  ctp_eval *ev = c->ev;
  int n = ev->nslices, nv = 0, r;
  size_t cap = (size_t)(n > ev->nseries ? n : ev->nseries) + 1;
  int *truth = malloc(cap * sizeof *truth);
  float *scores = malloc(cap * CTP_NUM_CLASSES * sizeof *scores);
  float *mean = malloc(cap * CTP_NUM_CLASSES * sizeof *mean);
  if (!truth || !scores || !mean) { r = ctp_seterr(CTP_ENOMEM, "out of memory"); goto done; }
  for (int i = 0; i < n; i++) {
    truth[i] = ev->slices[i].label;
    memcpy(scores + (size_t)i * CTP_NUM_CLASSES, ev->slices[i].probs,
           sizeof ev->slices[i].probs);
  }
  if ((r = ctp_metrics_compute(truth, scores, (size_t)n, &ev->single))) goto done;
  for (int s = 0; s < ev->nseries; s++) {
    ctp_eval_series *se = &ev->series[s];
    if (se->nslices == 0) continue;
    if ((r = ctp_vote_pandemonium(scores + (size_t)se->first * CTP_NUM_CLASSES,
                                  se->nslices, c->o->margin, &se->vote)))
      goto done;
  }
  /* The scores array is reused for the series once the slices are done. */
  for (int s = 0; s < ev->nseries; s++) {
    const ctp_eval_series *se = &ev->series[s];
    if (se->nslices == 0) continue;
    truth[nv] = se->label;
    memcpy(scores + (size_t)nv * CTP_NUM_CLASSES, se->vote.share, sizeof se->vote.share);
    memcpy(mean + (size_t)nv * CTP_NUM_CLASSES, se->vote.mean_prob, sizeof se->vote.mean_prob);
    ev->indeterminate += se->vote.phase == CTP_PHASE_INDETERMINATE;
    nv++;
  }
  if ((r = ctp_metrics_compute(truth, scores, (size_t)nv, &ev->voted))) goto done;
  if ((r = ctp_metrics_compute(truth, mean, (size_t)nv, &ev->voted_mean))) goto done;
  r = measure_kidney_range(c, truth, scores);
done:
  free(truth);
  free(scores);
  free(mean);
  return r;
}

/* --- choosing the slices to explain ------------------------------------ */

static uint64_t mix64(uint64_t a, uint64_t b) {
  uint64_t z = a ^ (b + 0x9E3779B97F4A7C15ull + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

typedef struct {
  uint64_t key;
  int slice;
} keyed;

static int by_key(const void *pa, const void *pb) {
  const keyed *a = pa, *b = pb;
  return a->key < b->key ? -1 : a->key > b->key ? 1 : a->slice - b->slice;
}

/* Up to max correctly classified slices, round-robin over the classes,
 * each class's slices in a seeded order (so series and levels mix). */
static int choose_slices(const ctp_eval *ev, int max, uint64_t seed, int *out) {
  keyed *k = malloc((size_t)(ev->nslices ? ev->nslices : 1) * sizeof *k);
  if (!k) return ctp_seterr(CTP_ENOMEM, "out of memory");
  int start[CTP_NUM_CLASSES + 1] = {0}, n = 0;
  for (int cl = 0; cl < CTP_NUM_CLASSES; cl++) {
    start[cl] = n;
    for (int i = 0; i < ev->nslices; i++) {
      const ctp_eval_slice *s = &ev->slices[i];
      if (s->label != cl || s->pred != cl) continue;
      k[n].key = mix64(mix64(seed, (uint64_t)s->series), (uint64_t)s->z);
      k[n++].slice = i;
    }
    qsort(k + start[cl], (size_t)(n - start[cl]), sizeof *k, by_key);
  }
  start[CTP_NUM_CLASSES] = n;
  int taken = 0, next[CTP_NUM_CLASSES], more = 1;
  for (int cl = 0; cl < CTP_NUM_CLASSES; cl++) next[cl] = start[cl];
  while (taken < max && more) {
    more = 0;
    for (int cl = 0; cl < CTP_NUM_CLASSES && taken < max; cl++)
      if (next[cl] < start[cl + 1]) out[taken++] = k[next[cl]++].slice, more = 1;
  }
  free(k);
  return taken;
}

/* --- explanations: pointing game, examples, masking ------------------- */

/* Buffers of the explanation loop. */
typedef struct {
  ctp_explainer *e;
  int nspecs;
  ctp_mapspec specs[CTP_MASK_MAX_SPECS];
  float *x;          /* (C, S, S) */
  float *hu;         /* (S, S) */
  uint8_t *labels;   /* (S, S) */
  float *maps;       /* (nspecs, S, S) on the input grid */
  float *native;     /* (S, S) */
  void *work;
  int want_example[CTP_NUM_CLASSES];
} explain_bufs;

static void make_specs(const ctp_eval_opts *o, explain_bufs *b) {
  int n = 0;
  b->specs[n++] = (ctp_mapspec){CTP_MAP_SALIENCY, -1};
  b->specs[n++] = (ctp_mapspec){CTP_MAP_GUIDED, -1};
  b->specs[n++] = (ctp_mapspec){CTP_MAP_CAM, CTP_L6};
  for (int i = 0; i < o->nlayers; i++) {
    b->specs[n++] = (ctp_mapspec){CTP_MAP_GRADCAM, o->layers[i]};
    b->specs[n++] = (ctp_mapspec){CTP_MAP_SAM, o->layers[i]};
  }
  b->nspecs = n;
}

/* The input (and, for phantom series, the labels) of an evaluated slice. */
static int load_slice(const eval_ctx *c, const ctp_eval_slice *sl,
                      explain_bufs *b, int *has_labels) {
  const ctp_eval_series *se = &c->ev->series[sl->series];
  *has_labels = 0;
  if (c->dser[sl->series])
    return ctp_explain_load_input(c->m, c->dacq[sl->series], sl->z, b->x);
  ctp_phantom *p;
  int r = phantom_open(c, se, &p);
  if (r) return r;
  r = phantom_input(c, p, sl->z, b->x, b->labels, b->hu, b->work);
  ctp_phantom_free(p);
  *has_labels = r == 0;
  return r;
}

/* Every map of the explainer's last run, upsampled to the input grid. */
static int collect_maps(const eval_ctx *c, explain_bufs *b) {
  for (int j = 0; j < b->nspecs; j++) {
    int h, w, r;
    ctp_explainer_map_shape(b->e, b->specs[j].method, b->specs[j].layer, &h, &w);
    if ((r = ctp_explainer_map(b->e, b->specs[j].method, b->specs[j].layer, b->native)))
      return r;
    ctp_map_upsample_bilinear(b->native, h, w, b->maps + (size_t)j * c->plane,
                              c->S, c->S);
  }
  return 0;
}

/* Pointing-game shares of one slice: mass (nspecs, regions), area
 * (regions). A map with no mass at all gets NaN shares. */
static void pointing_shares(const eval_ctx *c, const explain_bufs *b,
                            double *mass, double *area) {
  size_t cnt[CTP_NUM_REGIONS] = {0};
  for (size_t p = 0; p < c->plane; p++) {
    unsigned bits = ctp_region_of_label(b->labels[p]);
    for (int g = 0; g < CTP_NUM_REGIONS; g++) cnt[g] += (bits >> g) & 1u;
  }
  for (int g = 0; g < CTP_NUM_REGIONS; g++) area[g] = (double)cnt[g] / (double)c->plane;
  for (int j = 0; j < b->nspecs; j++) {
    const float *mp = b->maps + (size_t)j * c->plane;
    double tot = 0, in[CTP_NUM_REGIONS] = {0};
    for (size_t p = 0; p < c->plane; p++) {
      double v = fabs((double)mp[p]);
      unsigned bits = ctp_region_of_label(b->labels[p]);
      tot += v;
      for (int g = 0; g < CTP_NUM_REGIONS; g++)
        if ((bits >> g) & 1u) in[g] += v;
    }
    for (int g = 0; g < CTP_NUM_REGIONS; g++)
      mass[(size_t)j * CTP_NUM_REGIONS + g] = tot > 0 ? in[g] / tot : NAN;
  }
}

static int grow_pointing(ctp_eval *ev, int nspecs, int n) {
  double *m = realloc(ev->pointing_mass,
                      (size_t)n * nspecs * CTP_NUM_REGIONS * sizeof *m);
  if (m) ev->pointing_mass = m;
  double *a = realloc(ev->pointing_area, (size_t)n * CTP_NUM_REGIONS * sizeof *a);
  if (a) ev->pointing_area = a;
  int *s = realloc(ev->pointing_slice, (size_t)n * sizeof *s);
  if (s) ev->pointing_slice = s;
  return m && a && s ? 0 : ctp_seterr(CTP_ENOMEM, "out of memory");
}

/* --- example overlays -------------------------------------------------- */

/* The panels of an example: the CT with the pointing regions outlined,
 * then these maps. */
static int example_panels(const explain_bufs *b, int layer, int idx[5]) {
  static const int methods[5] = {CTP_MAP_SALIENCY, CTP_MAP_GUIDED, CTP_MAP_CAM,
                                 CTP_MAP_GRADCAM, CTP_MAP_SAM};
  for (int k = 0; k < 5; k++) {
    idx[k] = -1;
    for (int j = 0; j < b->nspecs && idx[k] < 0; j++)
      if (b->specs[j].method == methods[k] &&
          (k < 3 || b->specs[j].layer == layer))
        idx[k] = j;
    if (idx[k] < 0) return -1;
  }
  return 0;
}

/* Outlines kidney (green), aorta (red) and IVC (blue) on a panel of D x D
 * pixels, f display pixels per label pixel. */
static void draw_outlines(unsigned char *rgb, int D, int f, int S,
                          const uint8_t *labels) {
  static const unsigned char col[3][3] = {{40, 220, 60}, {240, 40, 40}, {60, 120, 255}};
  for (int y = 0; y < D; y++)
    for (int x = 0; x < D; x++) {
      int ly = y / f, lx = x / f;
      unsigned g = ctp_region_of_label(labels[ly * S + lx]) & 7u;
      if (!g) continue;
      int edge = 0;
      static const int dy[4] = {-1, 1, 0, 0}, dx[4] = {0, 0, -1, 1};
      for (int k = 0; k < 4 && !edge; k++) {
        int yy = y + dy[k], xx = x + dx[k];
        if (yy < 0 || yy >= D || xx < 0 || xx >= D) { edge = 1; continue; }
        edge = (ctp_region_of_label(labels[(yy / f) * S + xx / f]) & 7u) != g;
      }
      if (!edge) continue;
      int r = g & 1u ? 0 : g & 2u ? 1 : 2;
      memcpy(rgb + ((size_t)y * D + x) * 3, col[r], 3);
    }
}

/* Copies a D x D panel into cell (col, row) of a grid 3 panels wide. */
static void blit(unsigned char *grid, const unsigned char *panel, int D,
                 int col, int row) {
  int W = 3 * D;
  for (int y = 0; y < D; y++)
    memcpy(grid + (((size_t)row * D + y) * W + (size_t)col * D) * 3,
           panel + (size_t)y * D * 3, (size_t)D * 3);
}

/* Writes the example PNG of the slice just explained: a 3 x 2 grid of CT
 * (with outlines when labels are known), saliency, guided backprop, CAM,
 * Grad-CAM and SAM at the example layer. Small inputs are enlarged so that
 * the burned-in text stays legible. */
static int write_example(eval_ctx *c, explain_bufs *b, int slice, int has_labels,
                         int layer, const char *file) {
  int idx[5], S = c->S, f = S >= 256 ? 1 : (256 + S - 1) / S, D = S * f, r = 0;
  if (example_panels(b, layer, idx)) return 0;
  const ctp_eval_slice *sl = &c->ev->slices[slice];
  size_t dd = (size_t)D * D;
  float *hu = malloc(dd * sizeof *hu), *mp = malloc(dd * sizeof *mp);
  unsigned char *panel = malloc(dd * 3), *grid = malloc(dd * 3 * 6);
  if (!hu || !mp || !panel || !grid) {
    r = ctp_seterr(CTP_ENOMEM, "out of memory");
    goto done;
  }
  ctp_explain_display_hu(c->m, b->x, S, S, b->hu);
  ctp_map_upsample_bilinear(b->hu, S, S, hu, D, D);
  char label[96], name[32];
  snprintf(label, sizeof label, "%s p=%.2f", ctp_class_name(sl->label),
           sl->probs[sl->label]);
  ctp_render_ct(panel, hu, D, D, CTP_RENDER_WINDOW_CENTER, CTP_RENDER_WINDOW_WIDTH);
  if (has_labels) draw_outlines(panel, D, f, S, b->labels);
  ctp_render_label(panel, D, D, 2, 2, D >= 256 ? 2 : 1, label);
  blit(grid, panel, D, 0, 0);
  for (int k = 0; k < 5 && !r; k++) {
    const ctp_mapspec *sp = &b->specs[idx[k]];
    ctp_map_upsample_bilinear(b->maps + (size_t)idx[k] * c->plane, S, S, mp, D, D);
    if (sp->method == CTP_MAP_GRADCAM || sp->method == CTP_MAP_SAM)
      snprintf(name, sizeof name, "%s %s", ctp_map_method_title(sp->method),
               ctp_layer_name(sp->layer));
    else
      snprintf(name, sizeof name, "%s", ctp_map_method_title(sp->method));
    r = ctp_render_overlay(panel, hu, mp, D, D, sp->method, name);
    if (!r) blit(grid, panel, D, (k + 1) % 3, (k + 1) / 3);
  }
  char path[4096];
  if (!r && snprintf(path, sizeof path, "%s/%s", c->o->report_dir, file) >= (int)sizeof path)
    r = ctp_seterr(CTP_EINVAL, "report path too long");
  if (!r) r = ctp_png_write_rgb(path, grid, 3 * D, 2 * D);
done:
  free(hu);
  free(mp);
  free(panel);
  free(grid);
  return r;
}

/* The layer the example panels show Grad-CAM and SAM at: 3b when tested,
 * else the first tested layer. */
static int example_layer(const ctp_eval_opts *o) {
  for (int i = 0; i < o->nlayers; i++)
    if (o->layers[i] == CTP_L3B) return CTP_L3B;
  return o->nlayers > 0 ? o->layers[0] : CTP_L6;
}

/* One chosen slice: maps, pointing shares, maybe an example, masking. */
static int explain_slice(eval_ctx *c, explain_bufs *b, int slice) {
  ctp_eval *ev = c->ev;
  const ctp_eval_slice *sl = &ev->slices[slice];
  int has_labels, r;
  ctp_explain_info info;
  if ((r = load_slice(c, sl, b, &has_labels))) return r;
  if ((r = ctp_explainer_run(b->e, b->x, sl->label, CTP_TARGET_LOGIT, CTP_MAP_ALL, &info)))
    return r;
  if (info.argmax != sl->label) {
    ev->mask_passed_over++;
    return 0;
  }
  if ((r = collect_maps(c, b))) return r;
  int n = ev->mask.nslices;
  if (has_labels && (r = grow_pointing(ev, b->nspecs, ev->pointing_n + 1))) return r;
  if (has_labels) {
    size_t row = (size_t)ev->pointing_n;
    pointing_shares(c, b, ev->pointing_mass + row * b->nspecs * CTP_NUM_REGIONS,
                    ev->pointing_area + row * CTP_NUM_REGIONS);
  }
  if (c->o->report_dir && b->want_example[sl->label] &&
      ev->nexamples < c->o->examples && ev->nexamples < CTP_EVAL_MAX_EXAMPLES) {
    ctp_eval_example *ex = &ev->examples[ev->nexamples];
    ex->slice = slice;
    snprintf(ex->file, sizeof ex->file, "example-%d-%s.png", ev->nexamples + 1,
             ctp_class_name(sl->label));
    if ((r = write_example(c, b, slice, has_labels, example_layer(c->o), ex->file)))
      return r;
    b->want_example[sl->label] = 0;
    ev->nexamples++;
  }
  r = ctp_masktest_add(&ev->mask, b->e, b->x, sl->label);
  if (r == CTP_ESKIP) {
    ev->mask_passed_over++;
    return 0;
  }
  if (r) return r;
  ev->mask_slice[n] = slice;
  if (has_labels) ev->pointing_slice[ev->pointing_n++] = slice;
  return 0;
}

static int explain_all(eval_ctx *c) {
  ctp_eval *ev = c->ev;
  explain_bufs b = {0};
  int max = c->o->mask_slices, r;
  int *chosen = malloc((size_t)(max > 0 ? max : 1) * sizeof *chosen);
  make_specs(c->o, &b);
  for (int cl = 0; cl < CTP_NUM_CLASSES; cl++) b.want_example[cl] = 1;
  b.x = malloc(c->C * c->plane * sizeof(float));
  b.hu = malloc(c->plane * sizeof(float));
  b.labels = malloc(c->plane);
  b.maps = malloc((size_t)b.nspecs * c->plane * sizeof(float));
  b.native = malloc(c->plane * sizeof(float));
  b.work = malloc(ctp_preprocess_work_bytes(c->S, c->S, c->S));
  ev->mask_slice = malloc((size_t)(max > 0 ? max : 1) * sizeof *ev->mask_slice);
  if (!chosen || !b.x || !b.hu || !b.labels || !b.maps || !b.native || !b.work ||
      !ev->mask_slice) {
    r = ctp_seterr(CTP_ENOMEM, "out of memory for the explanations");
    goto done;
  }
  if ((r = ctp_masktest_init(&ev->mask, b.specs, b.nspecs, c->o->fraction, c->o->seed)))
    goto done;
  ev->mask.target = CTP_TARGET_LOGIT;
  if ((r = ctp_explainer_new(&b.e, c->m, c->S, c->S, c->o->threads))) goto done;
  int n = choose_slices(ev, max, c->o->seed, chosen);
  for (int i = 0; i < n && !r; i++) {
    r = explain_slice(c, &b, chosen[i]);
    progress(c, "evaluate: explained", i + 1, n);
  }
done:
  ctp_explainer_free(b.e);
  free(chosen);
  free(b.x);
  free(b.hu);
  free(b.labels);
  free(b.maps);
  free(b.native);
  free(b.work);
  return r;
}

/* Slice i's pointing value: the mass share of a spec (the area share for
 * spec -1), or with enrichment its ratio to the area share (NaN where the
 * region is absent). */
static double pointing_value(const ctp_eval *ev, int i, int spec, int region,
                             int enrichment) {
  double area = ev->pointing_area[(size_t)i * CTP_NUM_REGIONS + region];
  if (spec < 0) return enrichment ? 1.0 : area;
  double mass = ev->pointing_mass[((size_t)i * ev->mask.nspecs + spec) *
                                  CTP_NUM_REGIONS + region];
  if (!enrichment) return mass;
  return area > 0 ? mass / area : NAN;
}

static void pointing_moments(const ctp_eval *ev, int spec, int region,
                             int enrichment, double *mean, double *sd) {
  double s = 0, s2 = 0;
  int n = 0;
  for (int i = 0; i < ev->pointing_n; i++) {
    double v = pointing_value(ev, i, spec, region, enrichment);
    if (isnan(v)) continue;
    s += v;
    s2 += v * v;
    n++;
  }
  *mean = n ? s / n : NAN;
  *sd = n > 1 ? sqrt(fmax(0.0, (s2 - s * s / n) / (n - 1))) : NAN;
}

void ctp_eval_pointing_stats(const ctp_eval *ev, int spec, int region,
                             double *mean, double *sd) {
  pointing_moments(ev, spec, region, 0, mean, sd);
}

void ctp_eval_pointing_enrichment(const ctp_eval *ev, int spec, int region,
                                  double *mean, double *sd) {
  pointing_moments(ev, spec, region, 1, mean, sd);
}

/* --- the whole run ------------------------------------------------------ */

static int check_opts(const ctp_model *m, const ctp_eval_opts *o) {
  int sources = (o->split_dir != NULL) + (o->phantom_series > 0) +
                (o->labels_csv != NULL);
  if (!m || sources != 1)
    return ctp_seterr(CTP_EINVAL, "evaluation needs exactly one data source: a "
                      "split folder, phantom series, or DICOM with labels");
  if (o->labels_csv && !o->data_dir)
    return ctp_seterr(CTP_EINVAL, "a labels CSV needs a DICOM folder");
  if (o->nlayers < 0 || o->nlayers > CTP_EVAL_MAX_LAYERS || o->mask_slices < 0 ||
      o->slices_per_series < 0 || o->examples < 0)
    return ctp_seterr(CTP_EINVAL, "evaluation: bad option value");
  for (int i = 0; i < o->nlayers; i++)
    if (o->layers[i] < CTP_L1A || o->layers[i] > CTP_L6)
      return ctp_seterr(CTP_EINVAL, "evaluation: bad layer %d", o->layers[i]);
  return o->report_dir ? ctp_mkdir_p(o->report_dir, 0755) : 0;
}

static int collect(eval_ctx *c) {
  const ctp_eval_opts *o = c->o;
  int r = o->split_dir ? collect_split(c)
        : o->phantom_series > 0 ? collect_phantom(c)
        : collect_labelled_dicom(c);
  if (!r && c->ev->nseries == 0)
    r = ctp_seterr(CTP_EINVAL, "no series to evaluate (no test rows, or no "
                   "labelled series found)");
  return r;
}

int ctp_eval_run(const ctp_model *m, const ctp_eval_opts *o, ctp_eval **out) {
  *out = NULL;
  int r = check_opts(m, o);
  if (r) return r;
  eval_ctx c = {0};
  c.m = m;
  c.o = o;
  c.S = m->input_size;
  c.C = m->in_channels;
  c.plane = (size_t)c.S * c.S;
  if (!(c.ev = calloc(1, sizeof *c.ev))) return ctp_seterr(CTP_ENOMEM, "out of memory");
  c.ev->source = o->split_dir ? CTP_EVAL_SPLIT : o->phantom_series > 0
                 ? CTP_EVAL_PHANTOM : CTP_EVAL_DICOM;
  c.ev->input_size = c.S;
  c.ev->in_channels = c.C;
  double t0 = ctp_now();
  if (!(r = collect(&c))) r = infer_all(&c);
  if (!r && c.ev->nslices == 0) r = ctp_seterr(CTP_EINVAL, "no slice could be evaluated");
  if (!r) r = vote_and_measure(&c);
  c.ev->t_infer = ctp_now() - t0;
  t0 = ctp_now();
  if (!r && o->mask_slices > 0) r = explain_all(&c);
  c.ev->t_explain = ctp_now() - t0;
  free(c.dser);
  free(c.dacq);
  ctp_scan_free(c.scan);
  if (r) {
    ctp_eval_free(c.ev);
    return r;
  }
  *out = c.ev;
  return 0;
}

void ctp_eval_free(ctp_eval *ev) {
  if (!ev) return;
  free(ev->series);
  free(ev->slices);
  free(ev->mask_slice);
  free(ev->pointing_slice);
  free(ev->pointing_mass);
  free(ev->pointing_area);
  ctp_masktest_free(&ev->mask);
  free(ev);
}
