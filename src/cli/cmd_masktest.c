/*
 * cmd_masktest.c — `ctphase masktest`: the paper's masking test of map
 * specificity over a labelled set of slices (docs/explanation-maps.md).
 *
 * Slices come from DICOM series with a known phase (--labels CSV mapping
 * SeriesInstanceUID to phase, or --phase for all), or from a .npy of
 * standardised slices with a .npy of class indices. From DICOM, each
 * acquisition is predicted first and up to --per-series of the slices the
 * model classifies correctly are taken, evenly spread along the
 * acquisition; from .npy every correctly classified slice is taken. The
 * maps are every --methods entry, Grad-CAM and SAM at every --layers entry.
 *
 * Output: a table of mean +- SD scores per class and map, with one-sample
 * t tests against 100, and the paired comparisons (SAM vs Grad-CAM per
 * layer, saliency vs the rest), Bonferroni-corrected; or all of it, with
 * the per-slice scores, as JSON.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ctphase/error.h"
#include "ctphase/explain.h"
#include "ctphase/npy.h"
#include "ctphase/predict.h"

static const char *help_masktest =
    "usage: ctphase masktest PATH... (--labels CSV | --phase P) [options]\n"
    "       ctphase masktest --npy X.npy --labels-npy Y.npy [options]\n"
    "\n"
    "Masks the top and, as a control, the bottom 10% of input pixels ranked by\n"
    "|map| with N(0,1) noise and scores 100 * p_c(masked) / p_c(original) for\n"
    "correctly classified slices (Philbrick et al. 2018). Prints mean +- SD per\n"
    "class and map, and paired t tests (SAM vs Grad-CAM per layer, saliency vs\n"
    "the others), Bonferroni-corrected.\n"
    "\n"
    "  --labels CSV      rows of series_instance_uid,phase (a header row naming\n"
    "                    those columns, as in 'ctphase scan' output, is honoured)\n"
    "  --phase P         the phase of every series under PATH\n"
    "  --npy X.npy       standardised slices, (N,C,H,W) or (N,H,W)\n"
    "  --labels-npy Y    their classes, (N) integers 0..4\n"
    "  --methods LIST    default saliency,guided,cam,gradcam,sam\n"
    "  --layers LIST     layers for gradcam and sam, default 2b,3b,4b,5b,6\n"
    "  --per-series N    DICOM: slices per acquisition (default 4)\n"
    "  --max-slices N    stop after N slices (default 200)\n"
    "  --fraction F      fraction of pixels masked (default 0.10)\n"
    "  --seed S          seed of the noise and of tie-breaking (default 1)\n"
    "  --prob            maps of the probability instead of the logit\n"
    "  --json            print JSON (cells, comparisons, per-slice scores)\n"
    "  --model FILE      model (default: the bundled one, or $CTPHASE_MODEL)\n"
    "  --threads N       threads (default: all cores)\n";

typedef struct {
  const char *model, *labels, *npy, *labels_npy, *methods, *layers;
  const char **paths;
  int npaths, phase, per_series, max_slices, target, json, threads;
  double fraction;
  unsigned long long seed;
} mask_args;

/* Where each slice of the experiment came from (JSON per_slice). */
typedef struct {
  char source[80];
  int index;
} slice_ref;

typedef struct {
  ctp_masktest t;
  slice_ref *refs;  /* (refs_cap) */
  int refs_cap;
  int skipped;      /* slices passed over: misclassified */
} experiment;

/* "a,b,c" -> up to max tokens in buf; returns the count or -1. */
static int split_list(const char *s, char tok[][16], int max) {
  int n = 0;
  while (*s) {
    size_t len = strcspn(s, ",");
    if (n == max || len == 0 || len >= 16) return -1;
    memcpy(tok[n], s, len);
    tok[n++][len] = 0;
    s += len + (s[len] == ',');
  }
  return n;
}

/* The map specs from --methods and --layers; 0 or an exit status. */
static int make_specs(const mask_args *o, ctp_mapspec *specs, int *n) {
  char meth[8][16], lay[CTP_NUM_CONV][16];
  int nm = split_list(o->methods, meth, 8), nl = split_list(o->layers, lay, CTP_NUM_CONV);
  if (nm < 1 || nl < 1) {
    fprintf(stderr, "ctphase: --methods and --layers are comma lists\n");
    return 2;
  }
  *n = 0;
  for (int i = 0; i < nm; i++) {
    int m = ctp_map_method_parse(meth[i]);
    if (m < 0) {
      fprintf(stderr, "ctphase: %s\n", ctp_last_error());
      return 2;
    }
    if (m != CTP_MAP_GRADCAM && m != CTP_MAP_SAM) {
      specs[(*n)++] = (ctp_mapspec){m, CTP_L6};
      continue;
    }
    for (int j = 0; j < nl; j++) {
      int l = ctp_layer_parse(lay[j]);
      if (l < 0) {
        fprintf(stderr, "ctphase: unknown layer '%s'\n", lay[j]);
        return 2;
      }
      if (*n == CTP_MASK_MAX_SPECS) return 2;
      specs[(*n)++] = (ctp_mapspec){m, l};
    }
  }
  return 0;
}

static int parse(int argc, char **argv, mask_args *o) {
  cli_args a = {argc, argv, 1, NULL};
  const char *phase = NULL;
  memset(o, 0, sizeof *o);
  o->paths = calloc((size_t)argc, sizeof *o->paths);
  o->methods = "saliency,guided,cam,gradcam,sam";
  o->layers = "2b,3b,4b,5b,6";
  o->per_series = 4;
  o->max_slices = 200;
  o->fraction = CTP_MASK_FRACTION;
  o->seed = 1;
  while (a.i < a.argc) {
    if (cli_opt(&a, "--help", 0)) return cli_usage(help_masktest, NULL);
    else if (cli_opt(&a, "--labels", 1)) o->labels = a.arg;
    else if (cli_opt(&a, "--phase", 1)) phase = a.arg;
    else if (cli_opt(&a, "--npy", 1)) o->npy = a.arg;
    else if (cli_opt(&a, "--labels-npy", 1)) o->labels_npy = a.arg;
    else if (cli_opt(&a, "--methods", 1)) o->methods = a.arg;
    else if (cli_opt(&a, "--layers", 1)) o->layers = a.arg;
    else if (cli_opt(&a, "--per-series", 1)) o->per_series = atoi(a.arg);
    else if (cli_opt(&a, "--max-slices", 1)) o->max_slices = atoi(a.arg);
    else if (cli_opt(&a, "--fraction", 1)) o->fraction = atof(a.arg);
    else if (cli_opt(&a, "--seed", 1)) o->seed = strtoull(a.arg, NULL, 10);
    else if (cli_opt(&a, "--prob", 0)) o->target = CTP_TARGET_PROB;
    else if (cli_opt(&a, "--json", 0)) o->json = 1;
    else if (cli_opt(&a, "--model", 1)) o->model = a.arg;
    else if (cli_opt(&a, "--threads", 1)) o->threads = atoi(a.arg);
    else if (a.argv[a.i][0] != '-' && o->paths) o->paths[o->npaths++] = a.argv[a.i++];
    else return cli_usage(help_masktest, a.argv[a.i]);
  }
  o->phase = -1;
  if (phase && (o->phase = ctp_class_parse(phase)) < 0) {
    fprintf(stderr, "ctphase: unknown phase '%s'\n", phase);
    return 2;
  }
  int dicom = o->npaths > 0, npy = o->npy != NULL;
  if (dicom == npy || (npy && !o->labels_npy) ||
      (dicom && (o->labels != NULL) == (o->phase >= 0)))
    return cli_usage(help_masktest, "(give PATH... with --labels or --phase, "
                     "or --npy with --labels-npy)");
  if (o->per_series < 1 || o->max_slices < 1) {
    fprintf(stderr, "ctphase: --per-series and --max-slices must be >= 1\n");
    return 2;
  }
  return -1;
}

/* --- labels ----------------------------------------------------------- */

typedef struct {
  char uid[65];
  int cls;
} uid_label;

typedef struct {
  uid_label *v;
  int n, cap;
} label_table;

/* Splits one CSV line into fields in place (RFC 4180 quoting, no newline
 * inside a field); returns the number of fields. */
static int csv_split(char *line, char **f, int max) {
  int n = 0;
  char *p = line;
  while (n < max) {
    char *out = p;
    f[n++] = out;
    int quoted = *p == '"';
    if (quoted) p++;
    for (;; p++) {
      if (quoted && *p == '"' && p[1] == '"') { *out++ = '"'; p++; continue; }
      if (quoted && *p == '"') { quoted = 0; continue; }
      if (!quoted && (*p == ',' || *p == '\n' || *p == '\r' || !*p)) break;
      *out++ = *p;
    }
    int end = *p != ',';
    *out = 0;
    if (end) break;
    p++;
  }
  return n;
}

static int column(char **f, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(f[i], name)) return i;
  return -1;
}

static int table_add(label_table *t, const char *uid, int cls) {
  if (t->n == t->cap) {
    int cap = t->cap ? 2 * t->cap : 64;
    uid_label *v = realloc(t->v, (size_t)cap * sizeof *v);
    if (!v) return -1;
    t->v = v;
    t->cap = cap;
  }
  snprintf(t->v[t->n].uid, sizeof t->v[t->n].uid, "%s", uid);
  t->v[t->n++].cls = cls;
  return 0;
}

/* Reads uid -> phase rows; a first row naming series_instance_uid and
 * phase columns is a header. Returns 0, or 1 with a message. */
static int read_labels(const char *path, label_table *t) {
  FILE *fp = fopen(path, "r");
  if (!fp) {
    perror(path);
    return 1;
  }
  char line[8192], *f[64];
  int ucol = 0, pcol = 1, lineno = 0, bad = 0;
  while (fgets(line, sizeof line, fp) && !bad) {
    int n = csv_split(line, f, 64);
    lineno++;
    if (lineno == 1 && column(f, n, "series_instance_uid") >= 0 &&
        column(f, n, "phase") >= 0) {
      ucol = column(f, n, "series_instance_uid");
      pcol = column(f, n, "phase");
      continue;
    }
    if (n == 1 && !f[0][0]) continue;  /* blank line */
    int cls = n > pcol && n > ucol ? ctp_class_parse(f[pcol]) : -1;
    if (cls < 0) {
      fprintf(stderr, "ctphase: %s:%d: no series UID and phase (noncon, cm, "
              "cmneph, neph, pyelo) in this row\n", path, lineno);
      bad = 1;
    } else if (table_add(t, f[ucol], cls)) {
      bad = 1;
    }
  }
  fclose(fp);
  return bad;
}

static int lookup(const label_table *t, const char *uid) {
  for (int i = 0; i < t->n; i++)
    if (!strcmp(t->v[i].uid, uid)) return t->v[i].cls;
  return -1;
}

/* --- running ---------------------------------------------------------- */

/* Scores one slice; a misclassified one is counted and passed over. */
static int add_slice(experiment *x, ctp_explainer *e, const float *in, int cls,
                     const char *source, int index) {
  int n = x->t.nslices;
  if (n >= x->refs_cap) {
    int cap = x->refs_cap ? 2 * x->refs_cap : 16;
    slice_ref *r = realloc(x->refs, (size_t)cap * sizeof *r);
    if (!r) return cli_fail("masktest", ctp_seterr(CTP_ENOMEM, "out of memory"));
    x->refs = r;
    x->refs_cap = cap;
  }
  int r = ctp_masktest_add(&x->t, e, in, cls);
  if (r == CTP_ESKIP) {
    x->skipped++;
    return 0;
  }
  if (r) return cli_fail("masktest", r);
  snprintf(x->refs[n].source, sizeof x->refs[n].source, "%s", source);
  x->refs[n].index = index;
  return 0;
}

/* Up to `take` of the acquisition's correctly classified slices, evenly
 * spread along it, into idx; returns how many. */
static int pick_slices(const ctp_result *res, int cls, int take, int *idx) {
  int nc = 0;
  for (int i = 0; i < res->nslices; i++) nc += res->slices[i].argmax == cls;
  if (take > nc) take = nc;
  for (int k = 0, seen = 0, next = 0; k < take; k++) {
    int want = (int)(((double)k + 0.5) * nc / take);  /* k-th of nc */
    for (; next < res->nslices; next++) {
      if (res->slices[next].argmax != cls) continue;
      if (seen++ == want) { idx[k] = next++; break; }
    }
  }
  return take;
}

/* One acquisition of a labelled series. */
static int run_acquisition(experiment *x, ctp_explainer *e, ctp_predictor *p,
                           const ctp_model *m, const ctp_series *se,
                           const ctp_acquisition *acq, int cls,
                           const mask_args *o, float *in) {
  ctp_result res;
  int status = 0, idx[64];
  ctp_predictor_run(p, se, acq, &res);
  if (res.err) {
    fprintf(stderr, "ctphase: %s: %s (passed over)\n", ctp_series_uid(se), res.error);
    ctp_result_free(&res);
    return 0;
  }
  int take = o->per_series < 64 ? o->per_series : 64;
  int k = pick_slices(&res, cls, take, idx);
  for (int i = 0; i < res.nslices; i++) x->skipped += res.slices[i].argmax != cls;
  for (int i = 0; i < k && !status && x->t.nslices < o->max_slices; i++) {
    int r = ctp_explain_load_input(m, acq, idx[i], in);
    if (r) status = cli_fail("cannot read slice", r);
    else status = add_slice(x, e, in, cls, ctp_series_uid(se), idx[i]);
  }
  ctp_result_free(&res);
  return status;
}

static int run_dicom(experiment *x, const ctp_model *m, const mask_args *o) {
  label_table labels = {0};
  ctp_scan *scan = NULL;
  ctp_predictor *p = NULL;
  ctp_explainer *e = NULL;
  ctp_predict_opts opts;
  ctp_predict_opts_default(&opts);
  opts.threads = o->threads;
  float *in = malloc((size_t)m->in_channels * m->input_size * m->input_size * sizeof *in);
  int status = 1, r;
  if (!in || (o->labels && read_labels(o->labels, &labels))) goto done;
  if ((r = ctp_dicom_scan(o->paths, o->npaths, &scan))) {
    cli_fail("cannot read input", r);
    goto done;
  }
  if ((r = ctp_predictor_new(&p, m, &opts)) ||
      (r = ctp_explainer_new(&e, m, m->input_size, m->input_size, o->threads))) {
    cli_fail("cannot set up", r);
    goto done;
  }
  status = 0;
  for (int s = 0; s < ctp_scan_num_series(scan) && !status; s++) {
    const ctp_series *se = ctp_scan_series(scan, s);
    int cls = o->phase >= 0 ? o->phase : lookup(&labels, ctp_series_uid(se));
    if (cls < 0) {
      fprintf(stderr, "ctphase: %s: no label (passed over)\n", ctp_series_uid(se));
      continue;
    }
    for (int a = 0; a < ctp_series_num_acquisitions(se) && !status; a++)
      status = run_acquisition(x, e, p, m, se, ctp_series_acquisition(se, a), cls,
                               o, in);
  }
done:
  free(labels.v);
  free(in);
  ctp_explainer_free(e);
  ctp_predictor_free(p);
  ctp_scan_free(scan);
  return status;
}

static int run_npy(experiment *x, const ctp_model *m, const mask_args *o) {
  ctp_npy xs = {0}, ys = {0};
  ctp_explainer *e = NULL;
  int status = 1, r;
  if ((r = ctp_npy_read(o->npy, &xs)) || (r = ctp_npy_read(o->labels_npy, &ys))) {
    cli_fail("cannot read input", r);
    goto done;
  }
  int four = xs.ndim == 4, c = four ? (int)xs.shape[1] : 1;
  int n = (int)xs.shape[0], h = (int)xs.shape[xs.ndim - 2], w = (int)xs.shape[xs.ndim - 1];
  if ((xs.ndim != 3 && !four) || c != m->in_channels || h % 32 || w % 32 || h < 32 ||
      w < 32 || ctp_npy_numel(&ys) != (size_t)n) {
    fprintf(stderr, "ctphase: %s: want (N,%d,H,W) or (N,H,W) slices, H and W "
            "multiples of 32, and N labels in %s\n", o->npy, m->in_channels,
            o->labels_npy);
    goto done;
  }
  if ((r = ctp_explainer_new(&e, m, h, w, o->threads))) {
    cli_fail("cannot set up", r);
    goto done;
  }
  status = 0;
  size_t per = (size_t)c * h * w;
  for (int i = 0; i < n && !status && x->t.nslices < o->max_slices; i++) {
    int cls = (int)ys.data[i];
    if (cls < 0 || cls >= CTP_NUM_CLASSES) {
      fprintf(stderr, "ctphase: %s: label %d of slice %d outside 0..4\n",
              o->labels_npy, cls, i);
      status = 1;
    } else {
      status = add_slice(x, e, xs.data + i * per, cls, o->npy, i);
    }
  }
done:
  ctp_explainer_free(e);
  ctp_npy_free(&xs);
  ctp_npy_free(&ys);
  return status;
}

/* --- reporting -------------------------------------------------------- */

static const char *group_name(int cls) { return cls < 0 ? "all" : ctp_class_name(cls); }

static int class_slices(const ctp_masktest *t, int cls) {
  int n = 0;
  for (int i = 0; i < t->nslices; i++) n += cls < 0 || t->cls[i] == cls;
  return n;
}

/* The cells reported: all slices, then each class present. */
static int cell_count(const ctp_masktest *t) {
  int groups = 1;
  for (int c = 0; c < CTP_NUM_CLASSES; c++) groups += class_slices(t, c) > 0;
  return groups * t->nspecs;
}

static double bonf(double p, int m) { return isnan(p) ? p : fmin(1.0, p * m); }

static void print_table(const experiment *x, const mask_args *o) {
  const ctp_masktest *t = &x->t;
  int m = 2 * cell_count(t), pct = (int)lround(100 * t->fraction);
  char name[32];
  printf("masking test: %d slices scored (%d passed over), %d%% of pixels by "
         "|map| replaced with N(0,1), seed %llu, target %s\n"
         "score = 100 * p_c(masked) / p_c(original); * = differs from 100 "
         "(t test, Bonferroni x%d, p < 0.05)\n\n",
         t->nslices, x->skipped, pct, o->seed,
         t->target == CTP_TARGET_PROB ? "probability" : "logit", m);
  printf("%-8s %-12s %4s   %-18s %-18s\n", "class", "map", "n", "top (mean +- SD)",
         "bottom (mean +- SD)");
  for (int cls = -1; cls < CTP_NUM_CLASSES; cls++) {
    if (class_slices(t, cls) == 0) continue;
    for (int j = 0; j < t->nspecs; j++) {
      ctp_mask_cell c;
      ctp_masktest_cell(t, cls, j, &c);
      printf("%-8s %-12s %4d   %6.1f +- %5.1f %c   %6.1f +- %5.1f %c\n",
             group_name(cls), ctp_mapspec_name(&t->specs[j], name, sizeof name),
             c.n, c.top_mean, c.top_sd, bonf(c.p_top, m) < 0.05 ? '*' : ' ',
             c.bottom_mean, c.bottom_sd, bonf(c.p_bottom, m) < 0.05 ? '*' : ' ');
    }
  }
}

static void print_comparisons(const ctp_masktest *t, const ctp_mask_cmp *c, int n) {
  char a[32], b[32];
  if (n == 0) {
    printf("\nno paired comparisons (they need two slices and SAM with Grad-CAM, "
           "or saliency, among the maps)\n");
    return;
  }
  printf("\npaired t tests of top-%d%% scores (a - b; lower = a more specific), "
         "Bonferroni x%d:\n", (int)lround(100 * t->fraction), n);
  printf("%-8s %-12s %-12s %4s %9s %8s %9s %9s\n", "class", "a", "b", "n",
         "mean diff", "t", "p", "p (Bonf)");
  for (int k = 0; k < n; k++)
    printf("%-8s %-12s %-12s %4d %9.2f %8.3f %9.3g %9.3g%s\n", group_name(c[k].cls),
           ctp_mapspec_name(&t->specs[c[k].a], a, sizeof a),
           ctp_mapspec_name(&t->specs[c[k].b], b, sizeof b), c[k].t.n,
           c[k].t.mean, c[k].t.t, c[k].t.p, c[k].p_adj,
           c[k].p_adj < 0.05 ? " *" : "");
}

static cJSON *json_cells(const ctp_masktest *t) {
  cJSON *arr = cJSON_CreateArray();
  int m = 2 * cell_count(t);
  char name[32];
  for (int cls = -1; cls < CTP_NUM_CLASSES; cls++) {
    if (class_slices(t, cls) == 0) continue;
    for (int j = 0; j < t->nspecs; j++) {
      ctp_mask_cell c;
      ctp_masktest_cell(t, cls, j, &c);
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "class", group_name(cls));
      cJSON_AddStringToObject(o, "map", ctp_mapspec_name(&t->specs[j], name, sizeof name));
      cJSON_AddNumberToObject(o, "n", c.n);
      cJSON_AddNumberToObject(o, "top_mean", c.top_mean);
      cJSON_AddNumberToObject(o, "top_sd", c.top_sd);
      cJSON_AddNumberToObject(o, "bottom_mean", c.bottom_mean);
      cJSON_AddNumberToObject(o, "bottom_sd", c.bottom_sd);
      cJSON_AddNumberToObject(o, "p_top", c.p_top);
      cJSON_AddNumberToObject(o, "p_bottom", c.p_bottom);
      cJSON_AddNumberToObject(o, "p_top_bonferroni", bonf(c.p_top, m));
      cJSON_AddNumberToObject(o, "p_bottom_bonferroni", bonf(c.p_bottom, m));
      cJSON_AddItemToArray(arr, o);
    }
  }
  return arr;
}

static cJSON *json_comparisons(const ctp_masktest *t, const ctp_mask_cmp *c, int n) {
  cJSON *arr = cJSON_CreateArray();
  char a[32], b[32];
  for (int k = 0; k < n; k++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "class", group_name(c[k].cls));
    cJSON_AddStringToObject(o, "a", ctp_mapspec_name(&t->specs[c[k].a], a, sizeof a));
    cJSON_AddStringToObject(o, "b", ctp_mapspec_name(&t->specs[c[k].b], b, sizeof b));
    cJSON_AddNumberToObject(o, "n", c[k].t.n);
    cJSON_AddNumberToObject(o, "mean_diff", c[k].t.mean);
    cJSON_AddNumberToObject(o, "sd_diff", c[k].t.sd);
    cJSON_AddNumberToObject(o, "t", c[k].t.t);
    cJSON_AddNumberToObject(o, "df", c[k].t.df);
    cJSON_AddNumberToObject(o, "p", c[k].t.p);
    cJSON_AddNumberToObject(o, "p_bonferroni", c[k].p_adj);
    cJSON_AddItemToArray(arr, o);
  }
  return arr;
}

static cJSON *json_slices(const experiment *x) {
  const ctp_masktest *t = &x->t;
  cJSON *arr = cJSON_CreateArray();
  char name[32];
  for (int i = 0; i < t->nslices; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "source", x->refs[i].source);
    cJSON_AddNumberToObject(o, "index", x->refs[i].index);
    cJSON_AddStringToObject(o, "class", ctp_class_name(t->cls[i]));
    cJSON_AddNumberToObject(o, "p_original", t->p_orig[i]);
    cJSON *top = cJSON_AddObjectToObject(o, "top");
    cJSON *bot = cJSON_AddObjectToObject(o, "bottom");
    for (int j = 0; j < t->nspecs; j++) {
      ctp_mapspec_name(&t->specs[j], name, sizeof name);
      cJSON_AddNumberToObject(top, name, t->top[(size_t)i * t->nspecs + j]);
      cJSON_AddNumberToObject(bot, name, t->bottom[(size_t)i * t->nspecs + j]);
    }
    cJSON_AddItemToArray(arr, o);
  }
  return arr;
}

static void print_json(const experiment *x, const mask_args *o,
                       const ctp_mask_cmp *c, int n) {
  const ctp_masktest *t = &x->t;
  cJSON *root = cJSON_CreateObject();
  cJSON_AddNumberToObject(root, "slices", t->nslices);
  cJSON_AddNumberToObject(root, "passed_over", x->skipped);
  cJSON_AddNumberToObject(root, "fraction", t->fraction);
  cJSON_AddNumberToObject(root, "seed", (double)o->seed);
  cJSON_AddStringToObject(root, "target", t->target == CTP_TARGET_PROB ? "probability" : "logit");
  cJSON_AddItemToObject(root, "cells", json_cells(t));
  cJSON_AddItemToObject(root, "comparisons", json_comparisons(t, c, n));
  cJSON_AddItemToObject(root, "per_slice", json_slices(x));
  char *txt = cJSON_Print(root);
  if (txt) puts(txt);
  free(txt);
  cJSON_Delete(root);
}

int cmd_masktest(int argc, char **argv) {
  mask_args o;
  experiment x;
  ctp_mapspec specs[CTP_MASK_MAX_SPECS];
  ctp_model *m = NULL;
  ctp_mask_cmp *cmp = NULL;
  int nspecs = 0, ncmp = 0;
  memset(&x, 0, sizeof x);
  int status = parse(argc, argv, &o);
  if (status >= 0) {
    free(o.paths);
    return status;
  }
  status = make_specs(&o, specs, &nspecs);
  if (status == 0 && ctp_masktest_init(&x.t, specs, nspecs, o.fraction, o.seed)) {
    fprintf(stderr, "ctphase: %s\n", ctp_last_error());
    status = 2;
  }
  if (status == 0) status = cli_load_model(o.model, &m);
  if (status == 0) {
    x.t.target = o.target;
    status = o.npy ? run_npy(&x, m, &o) : run_dicom(&x, m, &o);
  }
  if (status == 0 && x.t.nslices == 0) {
    fprintf(stderr, "ctphase: no correctly classified slice to test (%d passed "
            "over)\n", x.skipped);
    status = 1;
  }
  if (status == 0 && (status = ctp_masktest_compare(&x.t, &cmp, &ncmp)))
    status = cli_fail("masktest", status);
  if (status == 0 && o.json) print_json(&x, &o, cmp, ncmp);
  if (status == 0 && !o.json) {
    print_table(&x, &o);
    print_comparisons(&x.t, cmp, ncmp);
  }
  free(cmp);
  free(x.refs);
  free(o.paths);
  ctp_masktest_free(&x.t);
  ctp_model_free(m);
  return status;
}
