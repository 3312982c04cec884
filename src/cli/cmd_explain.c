/*
 * cmd_explain.c — `ctphase explain`: one explanation map of one or a few
 * slices, as raw numbers (.npy) and as an overlay picture (.png).
 *
 * Input is either a DICOM series (files or folders; the first acquisition
 * of the first series found) or a .npy of standardised slices. The slices
 * explained are --slice N, or the K key slices (largest voting weight for
 * the voted phase, ctp_result_key_slices); DICOM input defaults to the
 * strongest key slice, .npy input to slice 0.
 *
 * Each slice gets one explainer run (forward + the backward passes its
 * method needs), then the map at its native resolution goes to --npy, and
 * bilinearly upsampled to the input grid, over the slice in window 40/400,
 * with a label, to --png. Numbered files OUT-<rank> are written when --key
 * asks for more than one slice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ctphase/error.h"
#include "ctphase/explain.h"
#include "ctphase/npy.h"
#include "ctphase/predict.h"
#include "ctphase/render.h"

static const char *help_explain =
    "usage: ctphase explain PATH|X.npy --method M [--layer L] [--class C]\n"
    "                       [--prob] [--slice N | --key K] [--npy OUT.npy]\n"
    "                       [--png OUT.png] [--model FILE] [--threads N]\n"
    "\n"
    "Computes an explanation map (Philbrick et al. 2018; docs/explanation-maps.md)\n"
    "for slices of a DICOM series (the first acquisition under PATH) or of a\n"
    "(N,C,H,W) or (H,W) .npy of standardised slices.\n"
    "\n"
    "  --method M     saliency, guided, cam, gradcam or sam\n"
    "  --layer L      conv layer 1a ... 6 for gradcam and sam (default 2b);\n"
    "                 cam is layer 6 only; saliency and guided take none\n"
    "  --class C      class explained: noncon, cm, cmneph, neph, pyelo\n"
    "                 (default: each slice's predicted class)\n"
    "  --prob         explain the softmax probability, not the logit\n"
    "  --slice N      explain slice N (acquisition order; default for .npy: 0)\n"
    "  --key K        explain the K key slices (default for DICOM: 1)\n"
    "  --npy OUT      write the raw float32 map at the layer's resolution\n"
    "  --png OUT      write the overlay at the input's resolution\n"
    "                 (with --key K > 1: OUT-1.png ... OUT-K.png, strongest first,\n"
    "                 and likewise for --npy)\n"
    "  --model FILE   model (default: the bundled one, or $CTPHASE_MODEL)\n"
    "  --threads N    threads (default: all cores)\n";

typedef struct {
  const char *model, *input, *npy_out, *png_out;
  int method, layer, cls, target, slice, key, threads;
} explain_args;

/* A slice to explain: where it came from and its network input. */
typedef struct {
  int index;       /* in the acquisition or the .npy */
  int rank;        /* 1.. for key slices, 0 otherwise */
  float *x;        /* (C,H,W) standardised */
} job;

/* Parses the options; returns -1 to go on, else an exit status. */
static int parse(int argc, char **argv, explain_args *o) {
  cli_args a = {argc, argv, 1, NULL};
  const char *method = NULL, *layer = NULL, *cls = NULL;
  memset(o, 0, sizeof *o);
  o->slice = o->key = -1;
  while (a.i < a.argc) {
    if (cli_opt(&a, "--help", 0)) return cli_usage(help_explain, NULL);
    else if (cli_opt(&a, "--method", 1)) method = a.arg;
    else if (cli_opt(&a, "--layer", 1)) layer = a.arg;
    else if (cli_opt(&a, "--class", 1)) cls = a.arg;
    else if (cli_opt(&a, "--prob", 0)) o->target = CTP_TARGET_PROB;
    else if (cli_opt(&a, "--slice", 1)) o->slice = atoi(a.arg);
    else if (cli_opt(&a, "--key", 1)) o->key = atoi(a.arg);
    else if (cli_opt(&a, "--npy", 1)) o->npy_out = a.arg;
    else if (cli_opt(&a, "--png", 1)) o->png_out = a.arg;
    else if (cli_opt(&a, "--model", 1)) o->model = a.arg;
    else if (cli_opt(&a, "--threads", 1)) o->threads = atoi(a.arg);
    else if (a.argv[a.i][0] != '-' && !o->input) o->input = a.argv[a.i++];
    else return cli_usage(help_explain, a.argv[a.i]);
  }
  if (!o->input) return cli_usage(help_explain, "(missing PATH)");
  if (!method) return cli_usage(help_explain, "(missing --method)");
  if ((o->method = ctp_map_method_parse(method)) < 0) {
    fprintf(stderr, "ctphase: %s\n", ctp_last_error());
    return 2;
  }
  if (layer && (o->method == CTP_MAP_SALIENCY || o->method == CTP_MAP_GUIDED)) {
    fprintf(stderr, "ctphase: %s is a map of the input: --layer does not apply\n",
            method);
    return 2;
  }
  o->layer = layer ? ctp_layer_parse(layer)
                   : o->method == CTP_MAP_CAM ? CTP_L6 : CTP_L2B;
  if (o->layer < 0) {
    fprintf(stderr, "ctphase: unknown layer '%s' (1a, 1b, 2a, 2b, 3a, 3b, 4a, "
            "4b, 5a, 5b, 6)\n", layer);
    return 2;
  }
  if (ctp_map_check_layer(o->method, o->layer)) {
    fprintf(stderr, "ctphase: %s\n", ctp_last_error());
    return 2;
  }
  o->cls = -1;
  if (cls && (o->cls = ctp_class_parse(cls)) < 0) {
    fprintf(stderr, "ctphase: unknown class '%s' (noncon, cm, cmneph, neph, "
            "pyelo)\n", cls);
    return 2;
  }
  if (o->slice >= 0 && o->key >= 0) {
    fprintf(stderr, "ctphase: give --slice or --key, not both\n");
    return 2;
  }
  if (o->key == 0 || o->key < -1 || o->slice < -1) {
    fprintf(stderr, "ctphase: --slice must be >= 0 and --key >= 1\n");
    return 2;
  }
  return -1;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* OUT, or OUT-<rank> before OUT's extension when numbering. */
static void out_name(char *buf, size_t len, const char *out, int rank,
                     int numbered) {
  const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
  if (!numbered) {
    snprintf(buf, len, "%s", out);
  } else if (dot && (!slash || dot > slash)) {
    snprintf(buf, len, "%.*s-%d%s", (int)(dot - out), out, rank, dot);
  } else {
    snprintf(buf, len, "%s-%d", out, rank);
  }
}

/* Key slices of n slices with probabilities probs (n,5), as the predictor
 * would choose them. Returns how many were written to idx. */
static int key_slices_of(const float *probs, int n, int k, int *idx) {
  ctp_result r;
  memset(&r, 0, sizeof r);
  r.slices = calloc((size_t)n, sizeof *r.slices);
  if (!r.slices) return 0;
  r.nslices = n;
  for (int i = 0; i < n; i++) {
    memcpy(r.slices[i].probs, probs + (size_t)i * CTP_NUM_CLASSES,
           sizeof r.slices[i].probs);
    for (int c = 1; c < CTP_NUM_CLASSES; c++)
      if (r.slices[i].probs[c] > r.slices[i].probs[r.slices[i].argmax])
        r.slices[i].argmax = c;
  }
  int m = 0;
  if (ctp_vote_pandemonium(probs, n, CTP_DEFAULT_MARGIN, &r.vote) == 0)
    m = ctp_result_key_slices(&r, k, idx);
  free(r.slices);
  return m;
}

/* The burned-in label: the map, what it explains, the prediction. */
static void make_label(char *buf, size_t len, const explain_args *o,
                       const ctp_explain_info *in, const job *j) {
  char map[64];
  if (o->method == CTP_MAP_SALIENCY || o->method == CTP_MAP_GUIDED)
    snprintf(map, sizeof map, "%s", ctp_map_method_title(o->method));
  else
    snprintf(map, sizeof map, "%s layer %s", ctp_map_method_title(o->method),
             ctp_layer_name(o->layer));
  snprintf(buf, len, "%s\nexplains %s (%s)\npredicted %s p=%.2f\nslice %d", map,
           ctp_class_name(in->cls), in->target == CTP_TARGET_PROB ? "prob" : "logit",
           ctp_class_name(in->argmax), (double)in->probs[in->argmax], j->index);
}

/* The overlay of a map (mh, mw) over the job's slice, written to path. */
static int write_png(ctp_explainer *e, int method, const float *map, int mh,
                     int mw, const job *j, const char *label,
                     const char *path) {
  int c, h, w, r;
  ctp_net_shape(ctp_explainer_net(e), CTP_INPUT, &c, &h, &w);
  size_t n = (size_t)h * w;
  float *up = malloc(n * sizeof *up), *hu = malloc(n * sizeof *hu);
  unsigned char *rgb = malloc(n * 3);
  if (!up || !hu || !rgb) {
    r = ctp_seterr(CTP_ENOMEM, "out of memory");
  } else {
    ctp_map_upsample_bilinear(map, mh, mw, up, h, w);
    ctp_explain_display_hu(ctp_explainer_model(e), j->x, h, w, hu);
    r = ctp_render_overlay(rgb, hu, up, w, h, method, label);
    if (!r) r = ctp_png_write_rgb(path, rgb, w, h);
  }
  free(up);
  free(hu);
  free(rgb);
  return r;
}

/* Explains one slice and writes what was asked. */
static int explain_one(ctp_explainer *e, const job *j, const explain_args *o,
                       int numbered) {
  ctp_explain_info in;
  int r = ctp_explainer_run(e, j->x, o->cls, o->target, CTP_MAP_BIT(o->method), &in);
  if (r) return cli_fail("explain failed", r);
  int mh, mw;
  ctp_explainer_map_shape(e, o->method, o->layer, &mh, &mw);
  float *map = malloc((size_t)mh * mw * sizeof *map);
  if (!map) return cli_fail("explain failed", ctp_seterr(CTP_ENOMEM, "out of memory"));
  if ((r = ctp_explainer_map(e, o->method, o->layer, map))) {
    free(map);
    return cli_fail("explain failed", r);
  }
  float lo = map[0], hi = map[0];
  for (size_t i = 1; i < (size_t)mh * mw; i++) {
    lo = map[i] < lo ? map[i] : lo;
    hi = map[i] > hi ? map[i] : hi;
  }
  printf("slice %d%s: predicted %s (p %.3f); %s of %s %s: %dx%d, range [%.4g, %.4g]\n",
         j->index, j->rank ? " (key)" : "", ctp_class_name(in.argmax),
         (double)in.probs[in.argmax], ctp_map_method_name(o->method),
         ctp_class_name(in.cls), in.target == CTP_TARGET_PROB ? "prob" : "logit",
         mh, mw, (double)lo, (double)hi);
  char path[4096], label[256];
  if (o->npy_out && !r) {
    size_t shape[2] = {(size_t)mh, (size_t)mw};
    out_name(path, sizeof path, o->npy_out, j->rank, numbered);
    if ((r = ctp_npy_write(path, map, 2, shape))) cli_fail("cannot write map", r);
    else printf("  wrote %s\n", path);
  }
  if (o->png_out && !r) {
    make_label(label, sizeof label, o, &in, j);
    out_name(path, sizeof path, o->png_out, j->rank, numbered);
    if ((r = write_png(e, o->method, map, mh, mw, j, label, path)))
      cli_fail("cannot write overlay", r);
    else printf("  wrote %s\n", path);
  }
  free(map);
  return r ? 1 : 0;
}

/* --- .npy input ------------------------------------------------------- */

/* Checks the array's shape: (H,W) or (N,C,H,W) with C the model's. */
static int npy_shape(const ctp_npy *x, const char *path, int cin, int *n,
                     int *h, int *w) {
  size_t c;
  if (x->ndim == 2) {
    *n = 1; c = 1; *h = (int)x->shape[0]; *w = (int)x->shape[1];
  } else if (x->ndim == 4) {
    *n = (int)x->shape[0]; c = x->shape[1];
    *h = (int)x->shape[2]; *w = (int)x->shape[3];
  } else {
    fprintf(stderr, "ctphase: %s: expected shape (N,C,H,W) or (H,W), got %d "
            "dimensions\n", path, x->ndim);
    return 1;
  }
  if (c != (size_t)cin) {
    fprintf(stderr, "ctphase: %s: %zu channels, the model takes %d\n", path, c, cin);
    return 1;
  }
  if (*n < 1 || *h < 32 || *w < 32 || *h % 32 || *w % 32) {
    fprintf(stderr, "ctphase: %s: %d slices of %dx%d; need H and W multiples "
            "of 32\n", path, *n, *h, *w);
    return 1;
  }
  return 0;
}

/* The slices of a .npy to explain: --slice (default 0) or the key slices. */
static int select_npy(ctp_explainer *e, const ctp_npy *x, int n,
                      const explain_args *o, job *jobs, int *njobs) {
  int c, h, w;
  ctp_net_shape(ctp_explainer_net(e), CTP_INPUT, &c, &h, &w);
  size_t per = (size_t)c * h * w;
  if (o->key < 0) {
    int s = o->slice < 0 ? 0 : o->slice;
    if (s >= n) {
      fprintf(stderr, "ctphase: slice %d: the input has %d slices\n", s, n);
      return 1;
    }
    jobs[0] = (job){s, 0, x->data + s * per};
    *njobs = 1;
    return 0;
  }
  float *probs = malloc((size_t)n * CTP_NUM_CLASSES * sizeof *probs);
  int *idx = malloc((size_t)o->key * sizeof *idx);
  int r = probs && idx ? 0 : 1;
  for (int i = 0; !r && i < n; i++) {
    ctp_explain_info in;
    if ((r = ctp_explainer_run(e, x->data + i * per, -1, 0, 0, &in)))
      cli_fail("forward failed", r);
    else memcpy(probs + (size_t)i * CTP_NUM_CLASSES, in.probs, sizeof in.probs);
  }
  int m = r ? 0 : key_slices_of(probs, n, o->key, idx);
  for (int k = 0; k < m; k++) jobs[k] = (job){idx[k], k + 1, x->data + idx[k] * per};
  *njobs = m;
  free(probs);
  free(idx);
  return r ? 1 : 0;
}

static int run_npy(const ctp_model *m, const explain_args *o) {
  ctp_npy x = {0};
  ctp_explainer *e = NULL;
  job *jobs = NULL;
  int n, h, w, njobs = 0, status = 1, r;
  if ((r = ctp_npy_read(o->input, &x))) {
    cli_fail("cannot read input", r);
    goto done;
  }
  if (npy_shape(&x, o->input, m->in_channels, &n, &h, &w)) goto done;
  if ((r = ctp_explainer_new(&e, m, h, w, o->threads))) {
    cli_fail("cannot set up", r);
    goto done;
  }
  jobs = calloc((size_t)(o->key > 0 ? o->key : 1), sizeof *jobs);
  if (!jobs || select_npy(e, &x, n, o, jobs, &njobs)) goto done;
  status = 0;
  for (int k = 0; k < njobs && !status; k++)
    status = explain_one(e, &jobs[k], o, o->key > 1);
done:
  free(jobs);
  ctp_explainer_free(e);
  ctp_npy_free(&x);
  return status;
}

/* --- DICOM input ------------------------------------------------------ */

static const ctp_acquisition *first_acquisition(const ctp_scan *scan,
                                                const ctp_series **series) {
  for (int s = 0; s < ctp_scan_num_series(scan); s++) {
    const ctp_series *se = ctp_scan_series(scan, s);
    if (ctp_series_num_acquisitions(se) > 0) {
      *series = se;
      return ctp_series_acquisition(se, 0);
    }
  }
  return NULL;
}

/* Slice indices to explain: --slice, or the key slices by voting. */
static int dicom_indices(const ctp_model *m, const ctp_series *se,
                         const ctp_acquisition *acq, const explain_args *o,
                         int *idx, int *nidx) {
  int n = ctp_acquisition_num_slices(acq);
  if (o->slice >= 0) {
    if (o->slice >= n) {
      fprintf(stderr, "ctphase: slice %d: the acquisition has %d slices\n",
              o->slice, n);
      return 1;
    }
    idx[0] = o->slice;
    *nidx = 1;
    return 0;
  }
  ctp_predict_opts opts;
  ctp_predict_opts_default(&opts);
  opts.threads = o->threads;
  ctp_predictor *p = NULL;
  ctp_result res;
  int r = ctp_predictor_new(&p, m, &opts);
  if (r) return cli_fail("cannot set up", r);
  r = ctp_predictor_run(p, se, acq, &res);
  if (r) fprintf(stderr, "ctphase: prediction failed: %s\n", res.error);
  else *nidx = ctp_result_key_slices(&res, o->key > 0 ? o->key : 1, idx);
  ctp_result_free(&res);
  ctp_predictor_free(p);
  return r ? 1 : 0;
}

static int run_dicom(const ctp_model *m, const explain_args *o) {
  ctp_scan *scan = NULL;
  ctp_explainer *e = NULL;
  const ctp_series *se = NULL;
  int k = o->key > 0 ? o->key : 1, nidx = 0, status = 1, r;
  int *idx = calloc((size_t)k, sizeof *idx);
  size_t per = (size_t)m->in_channels * m->input_size * m->input_size;
  float *x = malloc(per * sizeof *x);
  if (!idx || !x) goto done;
  if ((r = ctp_dicom_scan(&o->input, 1, &scan))) {
    cli_fail("cannot read input", r);
    goto done;
  }
  const ctp_acquisition *acq = first_acquisition(scan, &se);
  if (!acq) {
    fprintf(stderr, "ctphase: %s: no usable axial CT series (%d files read)\n",
            o->input, ctp_scan_num_files(scan));
    goto done;
  }
  if (dicom_indices(m, se, acq, o, idx, &nidx)) goto done;
  if ((r = ctp_explainer_new(&e, m, m->input_size, m->input_size, o->threads))) {
    cli_fail("cannot set up", r);
    goto done;
  }
  status = 0;
  for (int i = 0; i < nidx && !status; i++) {
    job j = {idx[i], o->slice >= 0 ? 0 : i + 1, x};
    if ((r = ctp_explain_load_input(m, acq, idx[i], x)))
      status = cli_fail("cannot read slice", r);
    else
      status = explain_one(e, &j, o, o->key > 1);
  }
done:
  ctp_explainer_free(e);
  ctp_scan_free(scan);
  free(idx);
  free(x);
  return status;
}

int cmd_explain(int argc, char **argv) {
  explain_args o;
  int status = parse(argc, argv, &o);
  if (status >= 0) return status;
  ctp_model *m = NULL;
  if (cli_load_model(o.model, &m)) return 1;
  status = ends_with(o.input, ".npy") ? run_npy(m, &o) : run_dicom(m, &o);
  ctp_model_free(m);
  return status;
}
