/*
 * cmd_evaluate.c — `ctphase evaluate`: a model on held-out data, with the
 * paper's tables and figures, written as DIR/report.html and
 * DIR/metrics.json (docs/evaluation.md).
 *
 * The work is ctp_eval_run() and ctp_eval_write_report() (evaluate.h);
 * this file parses the options, loads the model and prints the headline
 * numbers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ctphase/error.h"
#include "ctphase/evaluate.h"

static const char *help_evaluate =
    "usage: ctphase evaluate --report DIR (--split TRAIN_DIR | --phantom N |\n"
    "                        --data DIR --labels CSV) [options]\n"
    "\n"
    "Measures a model on held-out data as Philbrick et al. (2018) did: confusion\n"
    "matrices, precision / recall / F1 overall and within one phase, one-vs-all\n"
    "ROC AUC, for single slices and for Pandemonium voting per series; the\n"
    "masking test of saliency, guided backprop, CAM, Grad-CAM and SAM; and, on\n"
    "phantom data, the share of each map's mass on kidneys, aorta and IVC.\n"
    "Writes DIR/report.html (self-contained, with example PNGs beside it) and\n"
    "DIR/metrics.json.\n"
    "\n"
    "data (one of):\n"
    "  --split DIR         a 'ctphase train' output folder: the test rows of its\n"
    "                      split.csv (phantom series are drawn again; DICOM\n"
    "                      series are looked up under --data)\n"
    "  --phantom N         N fresh phantom series (phases cycle), seeds far from\n"
    "                      any training seed; --seed S picks another set\n"
    "  --data DIR --labels CSV\n"
    "                      DICOM under DIR, labelled by SeriesInstanceUID,phase\n"
    "                      rows (a header naming the columns is honoured)\n"
    "options:\n"
    "  --model FILE        model (default: the bundled one, or $CTPHASE_MODEL)\n"
    "  --report DIR        output folder (created)\n"
    "  --slices-per-series K  K evenly spread slices per series (default: all)\n"
    "  --mask-slices N     slices for masking and pointing (default 40; 0: none)\n"
    "  --layers LIST       Grad-CAM and SAM layers (default 2b,3b,4b,5b,6)\n"
    "  --examples N        example overlays, one per class (default 4, max 5)\n"
    "  --seed S            phantom set, masking noise and slice choice (default 1)\n"
    "  --margin M          voting: indeterminate below this margin (default 0.10)\n"
    "  --batch N           slices per forward pass (default 16)\n"
    "  --threads N         threads (default: all cores)\n"
    "  --quiet             no progress and no summary\n";

/* Parses "2b,3b,..." into layers; 0, or a message and 2. */
static int parse_layers(const char *list, ctp_eval_opts *o) {
  char buf[256], *save = NULL;
  snprintf(buf, sizeof buf, "%s", list);
  o->nlayers = 0;
  for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    int l = ctp_layer_parse(t);
    if (l < 0 || o->nlayers == CTP_EVAL_MAX_LAYERS) {
      fprintf(stderr, "ctphase: --layers: '%s' is not a layer 1a ... 6\n", t);
      return 2;
    }
    o->layers[o->nlayers++] = l;
  }
  return 0;
}

/* A non-negative integer option; -1 when it is not one. */
static long parse_count(const char *s) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  return (*s && !*end && !errno && v >= 0 && v <= 1000000) ? v : -1;
}

typedef struct {
  ctp_eval_opts o;
  const char *model;
} eval_args;

/* Parses argv; returns -1 to go on, else an exit status. */
static int parse(int argc, char **argv, eval_args *e) {
  cli_args a = {argc, argv, 1, NULL};
  ctp_eval_opts *o = &e->o;
  long v = 0;
  while (a.i < a.argc) {
    const char *bad = NULL;
    if (cli_opt(&a, "--help", 0)) return cli_usage(help_evaluate, NULL);
    else if (cli_opt(&a, "--model", 1)) e->model = a.arg;
    else if (cli_opt(&a, "--report", 1)) o->report_dir = a.arg;
    else if (cli_opt(&a, "--split", 1)) o->split_dir = a.arg;
    else if (cli_opt(&a, "--data", 1)) o->data_dir = a.arg;
    else if (cli_opt(&a, "--labels", 1)) o->labels_csv = a.arg;
    else if (cli_opt(&a, "--phantom", 1)) {
      if ((v = parse_count(a.arg)) <= 0) bad = "--phantom needs a count >= 1";
      o->phantom_series = (int)v;
    } else if (cli_opt(&a, "--slices-per-series", 1)) {
      if ((v = parse_count(a.arg)) < 0) bad = "--slices-per-series needs a count";
      o->slices_per_series = (int)v;
    } else if (cli_opt(&a, "--mask-slices", 1)) {
      if ((v = parse_count(a.arg)) < 0) bad = "--mask-slices needs a count";
      o->mask_slices = (int)v;
    } else if (cli_opt(&a, "--examples", 1)) {
      if ((v = parse_count(a.arg)) < 0 || v > CTP_EVAL_MAX_EXAMPLES)
        bad = "--examples needs 0 ... 5";
      o->examples = (int)v;
    } else if (cli_opt(&a, "--batch", 1)) {
      if ((v = parse_count(a.arg)) < 1 || v > 64) bad = "--batch needs 1 ... 64";
      o->batch = (int)v;
    } else if (cli_opt(&a, "--threads", 1)) {
      if ((v = parse_count(a.arg)) < 0) bad = "--threads needs a count";
      o->threads = (int)v;
    } else if (cli_opt(&a, "--seed", 1)) {
      o->seed = o->phantom_seed = strtoull(a.arg, NULL, 10);
    } else if (cli_opt(&a, "--margin", 1)) {
      o->margin = (float)atof(a.arg);
    } else if (cli_opt(&a, "--layers", 1)) {
      if (parse_layers(a.arg, o)) return 2;
    } else if (cli_opt(&a, "--quiet", 0)) {
      o->quiet = 1;
    } else {
      return cli_usage(help_evaluate, a.argv[a.i]);
    }
    if (bad) return cli_usage(help_evaluate, bad);
  }
  int sources = (o->split_dir != NULL) + (o->phantom_series > 0) + (o->labels_csv != NULL);
  if (!o->report_dir || sources != 1)
    return cli_usage(help_evaluate, "(--report and exactly one of --split, "
                     "--phantom, --data with --labels are required)");
  if (o->labels_csv && !o->data_dir)
    return cli_usage(help_evaluate, "(--labels needs --data)");
  return -1;
}

/* One level's line of the summary. */
static void print_level(const char *name, const ctp_metrics *m) {
  printf("  %-13s accuracy %.3f (within one %.3f)  macro P %.3f R %.3f F1 %.3f "
         "AUC %.3f\n", name, m->accuracy, m->accuracy_w1, m->macro_precision,
         m->macro_recall, m->macro_f1, m->macro_auc);
}

static void print_summary(const ctp_eval *ev, const ctp_eval_opts *o) {
  printf("evaluated %ld slices of %ld series in %.1f s (+%.1f s explanations)\n",
         ev->single.n, ev->voted.n, ev->t_infer, ev->t_explain);
  print_level("single slice", &ev->single);
  print_level("voted", &ev->voted);
  print_level("mean prob", &ev->voted_mean);
  if (ev->kidney_single.n > 0) {
    printf("  kidney range  %ld slices (the paper's: top to bottom of the kidneys)\n",
           ev->kidney_single.n);
    print_level("  single", &ev->kidney_single);
    print_level("  voted", &ev->kidney_voted);
  }
  printf("  paper         single P/R/F1/AUC 0.776/0.862/0.860/0.981, voted "
         "0.869/0.923/0.921/0.988\n");
  if (ev->mask.nslices > 0)
    printf("  masking       %d slices, %d maps\n", ev->mask.nslices, ev->mask.nspecs);
  if (ev->pointing_n > 0) {
    double area, sd, mass;
    ctp_eval_pointing_stats(ev, -1, CTP_REGION_ANY, &area, &sd);
    ctp_eval_pointing_stats(ev, 0, CTP_REGION_ANY, &mass, &sd);
    printf("  pointing      saliency mass on kidney+aorta+IVC %.3f vs area %.3f\n",
           mass, area);
  }
  printf("report: %s/report.html, %s/metrics.json\n", o->report_dir, o->report_dir);
}

int cmd_evaluate(int argc, char **argv) {
  eval_args e = {0};
  ctp_eval_opts_default(&e.o);
  int status = parse(argc, argv, &e);
  if (status >= 0) return status;
  ctp_model *m = NULL;
  ctp_eval *ev = NULL;
  if ((status = cli_load_model(e.model, &m))) return status;
  /* The file cli_load_model() chose, for the report. */
  e.o.model_path = e.model ? e.model : getenv("CTPHASE_MODEL");
#ifdef CTPHASE_DEFAULT_MODEL
  if (!e.o.model_path) e.o.model_path = CTPHASE_DEFAULT_MODEL;
#endif
  int r = ctp_eval_run(m, &e.o, &ev);
  if (r) status = cli_fail("evaluation failed", r);
  if (!status && (r = ctp_eval_write_report(ev, m, &e.o)))
    status = cli_fail("cannot write the report", r);
  if (!status && !e.o.quiet) print_summary(ev, &e.o);
  ctp_eval_free(ev);
  ctp_model_free(m);
  return status;
}
