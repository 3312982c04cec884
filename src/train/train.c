/*
 * train.c — the paper's training recipe over phantom or DICOM data.
 *
 * Flow: build the dataset (render or read every slice once, preprocess it
 * exactly as prediction does, keep it in memory as standardised floats),
 * split by patient, then epochs of shuffled mini-batches with augmentation,
 * Adam, a validation pass, the plateau schedule, and a checkpoint.
 *
 * Memory: size^2 * in_channels floats per slice (1 MiB at 512x512, C=1)
 * plus the network workspace for one batch with gradients (about 110 MB per
 * 512x512 slice of batch).
 *
 * Checkpoints are written so that a crash at any moment leaves either the
 * previous epoch's pair of files or the new one: checkpoint.adam (the
 * optimiser's moments and the schedule state, tagged with its epoch) is
 * renamed into place before checkpoint.safetensors (the weights, with the
 * same epoch in their metadata); on resume a mismatch of the two epochs
 * means the optimiser state is from a newer epoch, and it is reset (logged).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctphase/dicom.h"
#include "ctphase/error.h"
#include "ctphase/nn.h"
#include "ctphase/phantom.h"
#include "ctphase/predict.h"
#include "ctphase/train.h"
#include "ctphase/util.h"

enum { SPLIT_TRAIN = 0, SPLIT_VAL = 1, SPLIT_TEST = 2 };
static const char *const split_names[] = {"train", "val", "test"};

typedef struct {
  int n, cap, size, cin;
  float *x;        /* (n, cin, size, size) standardised */
  int *label;      /* (n) */
  int *split;      /* (n) */
  int *series;     /* (n) index into the series table */
} dataset;

typedef struct {
  char id[128];      /* phantom seed or SeriesInstanceUID */
  char patient[128]; /* what the split groups by */
  int label, split, nslices;
  int first;         /* index of its first slice in the dataset */
  uint64_t rank;     /* the patient's seeded hash: its place in the split */
} series_entry;

typedef struct {
  uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static double rng_uniform(rng *r) { return (rng_next(r) >> 11) * 0x1.0p-53; }

void ctp_train_opts_default(ctp_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->seed = 1;
  o->phantom_slices = 12;
  o->in_channels = 1;
  o->size = 512;
  o->batch = 8;
  o->lr = 1e-4f;
  o->lr_factor = 0.316f;
  o->lr_patience = 4;
  o->stop_patience = 12;
  o->max_epochs = 100;
  o->val_fraction = 0.15f;
  o->test_fraction = 0.15f;
  o->augment = 1;
}

/* --- the dataset ---------------------------------------------------- */

static float *dataset_add(dataset *d, int label, int split, int series) {
  if (d->n == d->cap) {
    int cap = d->cap ? 2 * d->cap : 64;
    size_t per = (size_t)d->cin * d->size * d->size;
    float *x = realloc(d->x, (size_t)cap * per * sizeof(float));
    if (!x) return NULL;
    d->x = x;
    int *a = realloc(d->label, cap * sizeof(int)), *b, *c;
    if (a) d->label = a;
    b = realloc(d->split, cap * sizeof(int));
    if (b) d->split = b;
    c = realloc(d->series, cap * sizeof(int));
    if (c) d->series = c;
    if (!a || !b || !c) return NULL;
    d->cap = cap;
  }
  d->label[d->n] = label;
  d->split[d->n] = split;
  d->series[d->n] = series;
  return d->x + (size_t)d->n++ * d->cin * d->size * d->size;
}

static void dataset_free(dataset *d) {
  free(d->x);
  free(d->label);
  free(d->split);
  free(d->series);
}

/* A patient's place in the split: a seeded hash of its key, so that the
 * split does not depend on the order in which the data was found. */
static uint64_t patient_rank(const char *patient, uint64_t seed) {
  uint64_t h = 1469598103934665603ULL ^ seed;
  for (const char *p = patient; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  rng r = {h};
  return rng_next(&r);
}

static int cmp_rank(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Splits by patient: patients in rank order, the first round(test * P) to
 * test, the next round(val * P) to validation (each at least one when
 * there are three patients or more), the rest to training. All series of a
 * patient share its split. Then every slice takes its series' split. */
static void assign_splits(series_entry *s, int n, dataset *d, uint64_t seed,
                          float val, float test) {
  uint64_t *ranks = malloc((size_t)(n ? n : 1) * sizeof *ranks);
  int np = 0;
  for (int i = 0; i < n; i++) {
    s[i].rank = patient_rank(s[i].patient, seed);
    int seen = 0;
    for (int j = 0; j < i && !seen; j++) seen = !strcmp(s[j].patient, s[i].patient);
    if (!seen) ranks[np++] = s[i].rank;
  }
  qsort(ranks, (size_t)np, sizeof *ranks, cmp_rank);
  int nt = (int)(test * np + 0.5f), nv = (int)(val * np + 0.5f);
  if (np >= 3) {
    nt = nt < 1 ? 1 : nt;
    nv = nv < 1 ? 1 : nv;
  }
  for (int i = 0; i < n; i++) {
    int pos = 0;
    while (pos < np && ranks[pos] != s[i].rank) pos++;
    s[i].split = pos < nt ? SPLIT_TEST : pos < nt + nv ? SPLIT_VAL : SPLIT_TRAIN;
  }
  for (int i = 0; i < d->n; i++) d->split[i] = s[d->series[i]].split;
  free(ranks);
}

/* Slices z of the chosen set for a series of nz slices: k evenly spread,
 * avoiding the first and last (edge of the covered range). */
static int pick_slice(int i, int k, int nz) {
  if (k >= nz) return i;
  return (int)((i + 0.5) * nz / k);
}

/* Phantom patient `seed` of class `phase` rendered into k slices of the
 * dataset: new ones appended for series `series` when first < 0 (at most
 * one per phantom slice), else the k from index `first` on. Without
 * `jitter` the slices are pick_slice's evenly spread ones; with it each is
 * drawn anywhere in its 1/k of the series (fresh patients, --fresh). */
static int render_patient(const ctp_train_opts *o, dataset *d, uint64_t seed,
                          int phase, int series, int first, int k, rng *jitter,
                          float *hu, void *work) {
  ctp_phantom_opts po;
  ctp_phantom_opts_init(&po);
  po.seed = seed;
  po.phase = phase;
  po.size = d->size;
  ctp_phantom *p;
  int r = ctp_phantom_new(&p, &po);
  if (r) return r;
  int nz = ctp_phantom_get_info(p)->num_slices;
  size_t plane = (size_t)d->size * d->size;
  if (first < 0) k = k < nz ? k : nz;
  for (int i = 0; i < k && !r; i++) {
    int z = jitter ? (int)((i + rng_uniform(jitter)) * nz / k) : pick_slice(i, k, nz);
    z = z < nz ? z : nz - 1;
    float *dst = first >= 0 ? d->x + (size_t)(first + i) * d->cin * plane
                            : dataset_add(d, phase, SPLIT_TRAIN, series);
    if (!dst) {
      r = ctp_seterr(CTP_ENOMEM, "out of memory for the dataset");
      break;
    }
    for (int c = 0; c < d->cin && !r; c++) {
      /* Channels run feet to head, as in an acquisition ordered along its
       * normal (predict.c): the phantom's slice k+1 lies below slice k. */
      int zz = d->cin == 3 ? z + 1 - c : z;
      zz = zz < 0 ? 0 : zz >= nz ? nz - 1 : zz;
      r = ctp_phantom_render_float(p, zz, 1, hu, NULL, o->threads);
      if (!r)
        r = ctp_preprocess_slice(hu, d->size, d->size, -23.3f, 144.1f, d->size,
                                 dst + c * plane, work);
    }
  }
  ctp_phantom_free(p);
  return r;
}

/* The seed of phantom series s: patients of epoch 0 (the split's, and the
 * only ones without --fresh) are seed * 1000003 + s; the fresh training
 * patients of epoch e >= 1 lie e * 2^32 above them, away from every
 * validation and test patient and from `ctphase evaluate --phantom`'s. */
static uint64_t phantom_seed(const ctp_train_opts *o, int s, int epoch) {
  return o->seed * 1000003ULL + (uint64_t)s + ((uint64_t)epoch << 32);
}

static int build_phantom(const ctp_train_opts *o, dataset *d,
                         series_entry *series) {
  int size = o->size, k = o->phantom_slices > 0 ? o->phantom_slices : 12;
  size_t plane = (size_t)size * size;
  float *hu = malloc(3 * plane * sizeof(float));
  void *work = malloc(ctp_preprocess_work_bytes(size, size, size));
  int r = 0;
  if (!hu || !work) {
    r = ctp_seterr(CTP_ENOMEM, "out of memory");
    goto done;
  }
  for (int s = 0; s < o->phantom_series && !r; s++) {
    series_entry *e = &series[s];
    uint64_t seed = phantom_seed(o, s, 0);
    snprintf(e->id, sizeof e->id, "phantom-%llu", (unsigned long long)seed);
    snprintf(e->patient, sizeof e->patient, "%s", e->id);
    e->label = s % CTP_NUM_CLASSES;
    e->first = d->n;
    r = render_patient(o, d, seed, e->label, s, -1, k, NULL, hu, work);
    e->nslices = d->n - e->first;
    if (!o->quiet && isatty(2))
      fprintf(stderr, "\rphantom: %d/%d series rendered", s + 1, o->phantom_series);
  }
  if (!o->quiet && isatty(2)) fputc('\n', stderr);
done:
  free(hu);
  free(work);
  return r;
}

/* --fresh: new patients in every training slot for this epoch, each drawn
 * from the same class as the one it replaces (the class balance stays),
 * its slices placed at random. Deterministic per (seed, epoch), so a
 * resumed run sees the patients the interrupted one would have. */
static int refresh_phantom(const ctp_train_opts *o, dataset *d,
                           const series_entry *series, int nseries, int epoch) {
  size_t plane = (size_t)d->size * d->size;
  float *hu = malloc(3 * plane * sizeof(float));
  void *work = malloc(ctp_preprocess_work_bytes(d->size, d->size, d->size));
  int r = hu && work ? 0 : ctp_seterr(CTP_ENOMEM, "out of memory");
  rng jit = {phantom_seed(o, 0, epoch) ^ 0x6a09e667f3bcc909ULL};
  double t0 = ctp_now();
  for (int s = 0; s < nseries && !r; s++)
    if (series[s].split == SPLIT_TRAIN)
      r = render_patient(o, d, phantom_seed(o, s, epoch), series[s].label, s,
                         series[s].first, series[s].nslices, &jit, hu, work);
  if (!r && !o->quiet)
    fprintf(stderr, "epoch %d: new training patients rendered in %.0f s\n", epoch,
            ctp_now() - t0);
  free(hu);
  free(work);
  return r;
}

/* Reads "SeriesInstanceUID,phase" lines (a header line is skipped). */
static int read_labels(const char *path, char ***uids, int **labels, int *n) {
  FILE *f = fopen(path, "r");
  if (!f) return ctp_seterr(CTP_ENOENT, "%s: %s", path, strerror(errno));
  char line[512];
  int cap = 0, lineno = 0;
  *n = 0;
  *uids = NULL;
  *labels = NULL;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char uid[256], phase[64];
    if (sscanf(line, " %255[^,\r\n] , %63[^,\r\n ]", uid, phase) != 2) continue;
    int c = ctp_class_parse(phase);
    if (c < 0) {
      if (lineno == 1) continue; /* header */
      fclose(f);
      return ctp_seterr(CTP_EFORMAT, "%s:%d: unknown phase \"%s\"", path, lineno, phase);
    }
    if (*n == cap) {
      cap = cap ? 2 * cap : 64;
      *uids = realloc(*uids, cap * sizeof **uids);
      *labels = realloc(*labels, cap * sizeof **labels);
    }
    (*uids)[*n] = strdup(uid);
    (*labels)[(*n)++] = c;
  }
  fclose(f);
  if (*n == 0) return ctp_seterr(CTP_EFORMAT, "%s: no labelled series", path);
  return 0;
}

static int build_dicom(const ctp_train_opts *o, dataset *d, series_entry **out,
                       int *nout) {
  char **uids = NULL;
  int *labels = NULL, nl = 0, r;
  ctp_scan *scan = NULL;
  if ((r = read_labels(o->labels_csv, &uids, &labels, &nl))) return r;
  const char *paths[1] = {o->data_dir};
  if ((r = ctp_dicom_scan(paths, 1, &scan))) goto done;
  int ns = ctp_scan_num_series(scan), size = o->size;
  *out = calloc((size_t)ns + 1, sizeof **out);
  size_t max_px = 0;
  for (int s = 0; s < ns; s++) {
    const ctp_series *se = ctp_scan_series(scan, s);
    for (int a = 0; a < ctp_series_num_acquisitions(se); a++) {
      const ctp_acquisition *acq = ctp_series_acquisition(se, a);
      size_t px = (size_t)ctp_acquisition_rows(acq) * ctp_acquisition_columns(acq);
      max_px = px > max_px ? px : max_px;
    }
  }
  float *hu = malloc((max_px ? max_px : 1) * sizeof(float));
  void *work = malloc(ctp_preprocess_work_bytes(4096, 4096, size));
  for (int s = 0; s < ns && !r; s++) {
    const ctp_series *se = ctp_scan_series(scan, s);
    int label = -1;
    for (int i = 0; i < nl; i++)
      if (!strcmp(uids[i], ctp_series_uid(se))) label = labels[i];
    if (label < 0) continue;
    series_entry *e = &(*out)[*nout];
    snprintf(e->id, sizeof e->id, "%s", ctp_series_uid(se));
    e->label = label;
    const ctp_slice *ref = ctp_series_ref(se);
    snprintf(e->patient, sizeof e->patient, "%s",
             ref && ref->patient_id[0] ? ref->patient_id : e->id);
    for (int a = 0; a < ctp_series_num_acquisitions(se) && !r; a++) {
      const ctp_acquisition *acq = ctp_series_acquisition(se, a);
      int nz = ctp_acquisition_num_slices(acq);
      int k = o->max_slices_per_series > 0 && o->max_slices_per_series < nz
                  ? o->max_slices_per_series : nz;
      int rows = ctp_acquisition_rows(acq), cols = ctp_acquisition_columns(acq);
      for (int i = 0; i < k && !r; i++) {
        int z = pick_slice(i, k, nz);
        float *dst = dataset_add(d, label, e->split, *nout);
        if (!dst) { r = ctp_seterr(CTP_ENOMEM, "out of memory"); break; }
        for (int c = 0; c < d->cin && !r; c++) {
          int zz = d->cin == 3 ? z - 1 + c : z;
          zz = zz < 0 ? 0 : zz >= nz ? nz - 1 : zz;
          r = ctp_slice_load_hu(ctp_acquisition_slice(acq, zz), hu);
          if (!r)
            r = ctp_preprocess_slice(hu, rows, cols, -23.3f, 144.1f, size,
                                     dst + (size_t)c * size * size, work);
        }
        e->nslices++;
      }
    }
    (*nout)++;
  }
  free(hu);
  free(work);
done:
  for (int i = 0; i < nl; i++) free(uids[i]);
  free(uids);
  free(labels);
  ctp_scan_free(scan);
  return r;
}

/* --- checkpoints ---------------------------------------------------- */

typedef struct {
  char magic[8];     /* "CTPADAM1" */
  int32_t epoch, bad_epochs, best_epoch, pad;
  int64_t step;
  float lr, best_val_loss;
  uint64_t num_params, rng_state;
} adam_header;

static int path_in(char *buf, size_t n, const char *dir, const char *file) {
  return snprintf(buf, n, "%s/%s", dir, file) < (int)n ? 0
         : ctp_seterr(CTP_EINVAL, "path too long");
}

static int save_checkpoint(const ctp_train_opts *o, ctp_model *m,
                           const ctp_adam *opt, const adam_header *h) {
  char path[4096];
  size_t n = (size_t)opt->n;
  size_t len = sizeof *h + 2 * n * sizeof(float);
  unsigned char *buf = malloc(len);
  if (!buf) return ctp_seterr(CTP_ENOMEM, "out of memory");
  memcpy(buf, h, sizeof *h);
  memcpy(buf + sizeof *h, opt->m, n * sizeof(float));
  memcpy(buf + sizeof *h + n * sizeof(float), opt->v, n * sizeof(float));
  int r = path_in(path, sizeof path, o->out_dir, "checkpoint.adam");
  if (!r) r = ctp_file_write_atomic(path, buf, len);
  free(buf);
  char ep[32];
  snprintf(ep, sizeof ep, "%d", h->epoch);
  if (!r) r = ctp_model_set_meta(m, "epoch", ep);
  if (!r) r = path_in(path, sizeof path, o->out_dir, "checkpoint.safetensors");
  if (!r) r = ctp_model_save(m, path);
  return r;
}

static int load_checkpoint(const ctp_train_opts *o, ctp_model **m,
                           ctp_adam *opt, adam_header *h) {
  char path[4096];
  int r = path_in(path, sizeof path, o->out_dir, "checkpoint.safetensors");
  if (!r) r = ctp_model_load(m, path);
  if (r) return r;
  const char *ep = ctp_model_meta(*m, "epoch");
  int model_epoch = ep ? atoi(ep) : -1;
  unsigned char *buf = NULL;
  size_t len = 0;
  if ((r = ctp_adam_init(opt, (*m)->num_params, o->lr))) return r;
  path_in(path, sizeof path, o->out_dir, "checkpoint.adam");
  if (ctp_file_read(path, &buf, &len) == 0 && len >= sizeof *h) {
    memcpy(h, buf, sizeof *h);
    if (!memcmp(h->magic, "CTPADAM1", 8) && h->num_params == opt->n &&
        len == sizeof *h + 2 * opt->n * sizeof(float) && h->epoch == model_epoch) {
      memcpy(opt->m, buf + sizeof *h, opt->n * sizeof(float));
      memcpy(opt->v, buf + sizeof *h + opt->n * sizeof(float), opt->n * sizeof(float));
      opt->step = h->step;
      opt->lr = h->lr;
      free(buf);
      return 0;
    }
  }
  free(buf);
  fprintf(stderr, "train: optimiser state missing or from another epoch; "
          "resuming epoch %d with fresh Adam moments\n", model_epoch);
  memset(h, 0, sizeof *h);
  memcpy(h->magic, "CTPADAM1", 8);
  h->epoch = model_epoch;
  h->lr = o->lr;
  h->best_val_loss = INFINITY;
  return 0;
}

/* --- epochs --------------------------------------------------------- */

/* Copies slice i of the dataset into the batch, augmented when asked. */
static void load_example(const dataset *d, int i, float *dst, int augment,
                         rng *r, float air) {
  size_t plane = (size_t)d->size * d->size;
  const float *src = d->x + (size_t)i * d->cin * plane;
  if (!augment) {
    memcpy(dst, src, d->cin * plane * sizeof(float));
    return;
  }
  float deg = (float)(rng_uniform(r) * 10.0 - 5.0);
  float tx = (float)(rng_uniform(r) * 10.0 - 5.0);
  float ty = (float)(rng_uniform(r) * 10.0 - 5.0);
  for (int c = 0; c < d->cin; c++)
    ctp_augment_affine(src + c * plane, dst + c * plane, d->size, d->size, deg,
                       tx, ty, air);
}

/* Mean weighted loss and accuracy of a split (no gradients). */
static void evaluate_split(ctp_net *net, const dataset *d, int split, int B,
                           const float *cw, float *x, float *loss, float *acc) {
  int idx[64], nb = 0, total = 0, correct = 0;
  double lsum = 0, wsum = 0;
  size_t per = (size_t)d->cin * d->size * d->size;
  for (int i = 0; i <= d->n; i++) {
    if (i < d->n && d->split[i] == split) idx[nb++] = i;
    if (nb == B || (i == d->n && nb > 0)) {
      float logits[64 * CTP_NUM_CLASSES];
      int labels[64];
      for (int j = 0; j < nb; j++) {
        memcpy(x + j * per, d->x + (size_t)idx[j] * per, per * sizeof(float));
        labels[j] = d->label[idx[j]];
      }
      ctp_net_forward(net, x, nb, logits);
      for (int j = 0; j < nb; j++) {
        float w = cw[labels[j]];
        lsum += w * ctp_cross_entropy(logits + j * 5, &labels[j], NULL, 1, NULL);
        wsum += w;
        int best = 0;
        for (int c = 1; c < CTP_NUM_CLASSES; c++)
          if (logits[j * 5 + c] > logits[j * 5 + best]) best = c;
        correct += best == labels[j];
      }
      total += nb;
      nb = 0;
    }
  }
  *loss = wsum > 0 ? (float)(lsum / wsum) : NAN;
  *acc = total ? (float)correct / total : NAN;
}

static int write_split(const ctp_train_opts *o, const series_entry *s, int n) {
  char path[4096];
  path_in(path, sizeof path, o->out_dir, "split.csv");
  FILE *f = fopen(path, "w");
  if (!f) return ctp_seterr(CTP_EIO, "%s: %s", path, strerror(errno));
  fprintf(f, "series,phase,split,slices\n");
  for (int i = 0; i < n; i++)
    fprintf(f, "%s,%s,%s,%d\n", s[i].id, ctp_class_name(s[i].label),
            split_names[s[i].split], s[i].nslices);
  return fclose(f) == 0 ? 0 : ctp_seterr(CTP_EIO, "%s: write failed", path);
}

int ctp_train_run(const ctp_train_opts *o, ctp_train_summary *sum) {
  if (!o || !o->out_dir || (o->phantom_series <= 0 && (!o->data_dir || !o->labels_csv)))
    return ctp_seterr(CTP_EINVAL, "training needs an output folder and either "
                      "phantom series or a DICOM folder with a labels CSV");
  if (o->size < 32 || o->size % 32)
    return ctp_seterr(CTP_EINVAL, "size %d is not a positive multiple of 32", o->size);
  int r = ctp_mkdir_p(o->out_dir, 0755);
  if (r) return r;
  memset(sum, 0, sizeof *sum);
  dataset d = {0};
  d.size = o->size;
  d.cin = o->in_channels;
  series_entry *series = NULL;
  int nseries = 0;
  ctp_model *m = NULL;
  ctp_net *net = NULL;
  ctp_adam opt = {0};
  float *grads = NULL, *x = NULL;
  int *order = NULL;
  FILE *hist = NULL;
  double t0 = ctp_now();

  if (o->phantom_series > 0) {
    series = calloc((size_t)o->phantom_series, sizeof *series);
    if (!series) return ctp_seterr(CTP_ENOMEM, "out of memory");
    nseries = o->phantom_series;
    r = build_phantom(o, &d, series);
  } else {
    r = build_dicom(o, &d, &series, &nseries);
  }
  if (r) goto done;
  assign_splits(series, nseries, &d, o->seed, o->val_fraction, o->test_fraction);
  if ((r = write_split(o, series, nseries))) goto done;
  int counts[3] = {0}, per_class[CTP_NUM_CLASSES] = {0};
  for (int i = 0; i < d.n; i++) {
    counts[d.split[i]]++;
    if (d.split[i] == SPLIT_TRAIN) per_class[d.label[i]]++;
  }
  if (counts[SPLIT_TRAIN] == 0 || counts[SPLIT_VAL] == 0) {
    r = ctp_seterr(CTP_EINVAL, "the split left %d training and %d validation "
                   "slices: more series are needed", counts[0], counts[1]);
    goto done;
  }
  /* Balanced class weights over the training slices. */
  float cw[CTP_NUM_CLASSES];
  for (int c = 0; c < CTP_NUM_CLASSES; c++)
    cw[c] = per_class[c] ? (float)counts[0] / (CTP_NUM_CLASSES * per_class[c]) : 0.0f;
  if (!o->quiet)
    fprintf(stderr, "train: %d series, slices train %d / val %d / test %d, "
            "%dx%d, data ready in %.1f s\n", nseries, counts[0], counts[1],
            counts[2], o->size, o->size, ctp_now() - t0);

  adam_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, "CTPADAM1", 8);
  h.lr = o->lr;
  h.best_val_loss = INFINITY;
  h.best_epoch = -1;
  h.rng_state = o->seed ^ 0xa5a5a5a5ULL;
  if (o->resume) {
    if ((r = load_checkpoint(o, &m, &opt, &h))) goto done;
    if (m->in_channels != o->in_channels || m->input_size != o->size) {
      r = ctp_seterr(CTP_EINVAL, "checkpoint is for %d channels at %d, not %d at %d",
                     m->in_channels, m->input_size, o->in_channels, o->size);
      goto done;
    }
    if (!o->quiet)
      fprintf(stderr, "train: resuming after epoch %d (lr %.3g, best val %.4f)\n",
              h.epoch, h.lr, h.best_val_loss);
  } else {
    if (o->init_model) { /* fine-tuning: given weights, fresh optimiser */
      if ((r = ctp_model_load(&m, o->init_model))) goto done;
      if (m->in_channels != o->in_channels) {
        r = ctp_seterr(CTP_EINVAL, "%s has %d input channels, not %d", o->init_model,
                       m->in_channels, o->in_channels);
        goto done;
      }
      /* The file's name and SHA-256, not its path: the weights stay
       * identifiable after the file moves. */
      const char *base = strrchr(o->init_model, '/');
      char from[512];
      snprintf(from, sizeof from, "%s, sha256 %s", base ? base + 1 : o->init_model, m->sha256);
      ctp_model_set_meta(m, "initialised_from", from);
      if (!o->quiet) fprintf(stderr, "train: starting from the weights of %s\n", o->init_model);
    } else {
      if ((r = ctp_model_new(&m, o->in_channels))) goto done;
      ctp_model_init_he(m, o->seed);
    }
    if ((r = ctp_adam_init(&opt, m->num_params, o->lr))) goto done;
  }
  char buf[256];
  snprintf(buf, sizeof buf, "%d", o->size);
  ctp_model_set_meta(m, "input_size", buf);
  if (o->phantom_series > 0)
    snprintf(buf, sizeof buf, "ctphase phantom, %d series x %d slices, seed %llu%s",
             o->phantom_series, o->phantom_slices, (unsigned long long)o->seed,
             o->fresh ? ", new training patients every epoch" : "");
  else
    snprintf(buf, sizeof buf, "DICOM %s with labels %s", o->data_dir, o->labels_csv);
  ctp_model_set_meta(m, "trained_on", buf);
  ctp_model_set_meta(m, "created", "ctphase train " CTPHASE_VERSION);

  int B = o->batch > 0 ? o->batch : 8;
  if (B > 64) B = 64;
  if ((r = ctp_net_new(&net, m, B, o->size, o->size, CTP_NET_GRAD, o->threads))) goto done;
  size_t per = (size_t)d.cin * d.size * d.size;
  grads = calloc(m->num_params, sizeof(float));
  x = malloc((size_t)B * per * sizeof(float));
  order = malloc((size_t)d.n * sizeof(int));
  if (!grads || !x || !order) { r = ctp_seterr(CTP_ENOMEM, "out of memory"); goto done; }
  char hpath[4096];
  path_in(hpath, sizeof hpath, o->out_dir, "history.csv");
  hist = fopen(hpath, o->resume ? "a" : "w");
  if (!hist) { r = ctp_seterr(CTP_EIO, "%s: %s", hpath, strerror(errno)); goto done; }
  if (!o->resume) fprintf(hist, "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n");

  const float air = (CTP_AIR_HU + 23.3f) / 144.1f;
  rng rg = {h.rng_state};
  int tty = isatty(2) && !o->quiet;
  long steps = 0;
  int bad = h.bad_epochs;
  for (int epoch = h.epoch + 1; epoch <= o->max_epochs; epoch++) {
    if (o->fresh && o->phantom_series > 0 && epoch > 1 &&
        (r = refresh_phantom(o, &d, series, nseries, epoch)))
      goto done;
    double te = ctp_now();
    int nt = 0;
    for (int i = 0; i < d.n; i++)
      if (d.split[i] == SPLIT_TRAIN) order[nt++] = i;
    for (int i = nt - 1; i > 0; i--) {
      int j = (int)(rng_next(&rg) % (uint64_t)(i + 1)), t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    double lsum = 0;
    int correct = 0, seen = 0, nbatches = (nt + B - 1) / B;
    for (int b = 0; b < nbatches; b++) {
      int nb = nt - b * B < B ? nt - b * B : B, labels[64];
      float logits[64 * 5], dl[64 * 5];
      for (int j = 0; j < nb; j++) {
        load_example(&d, order[b * B + j], x + j * per, o->augment, &rg, air);
        labels[j] = d.label[order[b * B + j]];
      }
      memset(grads, 0, m->num_params * sizeof(float));
      ctp_net_forward(net, x, nb, logits);
      float loss = ctp_cross_entropy(logits, labels, cw, nb, dl);
      ctp_net_backward(net, dl, nb, CTP_BWD_PARAMS, grads);
      ctp_adam_step(&opt, m->params, grads);
      ctp_model_repack(m);
      lsum += loss * nb;
      seen += nb;
      for (int j = 0; j < nb; j++) {
        int best = 0;
        for (int c = 1; c < CTP_NUM_CLASSES; c++)
          if (logits[j * 5 + c] > logits[j * 5 + best]) best = c;
        correct += best == labels[j];
      }
      if (epoch == 1 && b == 0) sum->first_train_loss = loss;
      steps++;
      if (tty) {
        double el = ctp_now() - te, eta = el / (b + 1) * (nbatches - b - 1);
        fprintf(stderr, "\repoch %d step %d/%d loss %.4f acc %.3f lr %.2e ETA %.0fs   ",
                epoch, b + 1, nbatches, lsum / seen, (double)correct / seen, opt.lr, eta);
      }
      if (o->max_steps && steps >= o->max_steps) break;
    }
    float vloss, vacc;
    evaluate_split(net, &d, SPLIT_VAL, B, cw, x, &vloss, &vacc);
    float tloss = (float)(lsum / (seen ? seen : 1)), tacc = (float)correct / (seen ? seen : 1);
    sum->last_train_loss = tloss;
    sum->val_acc = vacc;
    sum->epochs = epoch;
    /* The paper's schedule on the validation loss. */
    if (vloss < h.best_val_loss) {
      h.best_val_loss = vloss;
      h.best_epoch = epoch;
      bad = 0;
      char bpath[4096];
      path_in(bpath, sizeof bpath, o->out_dir, "best.safetensors");
      char ep[32];
      snprintf(ep, sizeof ep, "%d", epoch);
      ctp_model_set_meta(m, "epoch", ep);
      if ((r = ctp_model_save(m, bpath))) goto done;
    } else {
      bad++;
      if (bad % o->lr_patience == 0) opt.lr *= o->lr_factor;
    }
    double secs = ctp_now() - te;
    fprintf(hist, "%d,%.5f,%.4f,%.5f,%.4f,%.3g,%.1f\n", epoch, tloss, tacc, vloss,
            vacc, opt.lr, secs);
    fflush(hist);
    if (!o->quiet)
      fprintf(stderr, "%sepoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f%s"
              " | lr %.2e | %.0f s\n", tty ? "\r" : "", epoch, tloss, tacc, vloss,
              vacc, h.best_epoch == epoch ? " (best)" : "", opt.lr, secs);
    h.epoch = epoch;
    h.bad_epochs = bad;
    h.step = opt.step;
    h.lr = opt.lr;
    h.num_params = m->num_params;
    h.rng_state = rg.s;
    if ((r = save_checkpoint(o, m, &opt, &h))) goto done;
    if (bad >= o->stop_patience) {
      sum->stopped_early = 1;
      break;
    }
    if (o->max_steps && steps >= o->max_steps) break;
  }
  sum->best_val_loss = h.best_val_loss;
  sum->best_epoch = h.best_epoch;
done:
  if (hist) fclose(hist);
  free(grads);
  free(x);
  free(order);
  free(series);
  ctp_adam_free(&opt);
  ctp_net_free(net);
  ctp_model_free(m);
  dataset_free(&d);
  return r;
}
