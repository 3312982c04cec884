/*
 * cmd_predict.c — `ctphase predict`: the phase of every series (and each
 * acquisition of it) found under the given files and folders.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ctphase/error.h"
#include "ctphase/predict.h"

static const char *help_predict =
    "usage: ctphase predict PATH... [--model FILE] [--json] [--per-slice]\n"
    "                       [--margin M] [--threads N] [--batch N]\n"
    "\n"
    "Reads the DICOM files under each PATH (folders recursively), groups them\n"
    "into series and acquisitions, and prints for each the contrast phase by\n"
    "Pandemonium voting over its axial CT slices, with the vote shares, the\n"
    "slices used and the files skipped (with reasons).\n"
    "\n"
    "  --model FILE   model (default: the bundled one, or $CTPHASE_MODEL)\n"
    "  --json         one JSON document (schemas/result.schema.json per result)\n"
    "  --per-slice    include per-slice probabilities (JSON) or a table\n"
    "  --margin M     vote-share margin below which the result is\n"
    "                 'indeterminate' (default 0.10)\n"
    "  --threads N    threads (default: all cores)\n";

int cli_load_model(const char *path, struct ctp_model **m) {
  if (!path) path = getenv("CTPHASE_MODEL");
  if (!path && access(CTPHASE_DEFAULT_MODEL, R_OK) == 0)
    path = CTPHASE_DEFAULT_MODEL;
  if (!path) {
    fprintf(stderr,
            "ctphase: no model: none is bundled in this build (%s is missing);\n"
            "         pass --model FILE or set CTPHASE_MODEL\n",
            CTPHASE_DEFAULT_MODEL);
    return 1;
  }
  int r = ctp_model_load(m, path);
  if (r) return cli_fail("cannot load model", r);
  return 0;
}

static void print_bar(float v, int width) {
  int n = (int)(v * width + 0.5f);
  for (int i = 0; i < width; i++) putchar(i < n ? '#' : '.');
}

static void print_result(const ctp_result *r, int nacq, int per_slice) {
  const ctp_slice *ref = ctp_series_ref(r->series);
  printf("series %s\n", ctp_series_uid(r->series));
  printf("  description   %s (series %d)\n",
         ref && ref->series_description[0] ? ref->series_description : "(none)",
         ref ? ref->series_number : -1);
  if (r->acq)
    printf("  acquisition   %d of %d (AcquisitionNumber %d)\n",
           ctp_acquisition_index(r->acq) + 1, nacq, ctp_acquisition_number(r->acq));
  printf("  slices        %d used, %d skipped\n", r->err ? 0 : r->nslices,
         r->nskipped);
  for (int i = 0; i < r->nskipped && i < 5; i++)
    printf("    skipped     %s: %s\n", r->skipped[i].slice->path, r->skipped[i].reason);
  if (r->nskipped > 5) printf("    ... and %d more skipped\n", r->nskipped - 5);
  if (r->err) {
    printf("  phase         error: %s\n\n", r->error);
    return;
  }
  printf("  phase         %s", ctp_phase_name(r->vote.phase));
  if (r->vote.phase == CTP_PHASE_INDETERMINATE)
    printf(" (leaning %s, margin %.2f < %.2f)", ctp_class_name(r->vote.winner),
           r->vote.margin, r->margin_threshold);
  else
    printf(" (margin %.2f)", r->vote.margin);
  printf("\n  vote shares   (mean probability)\n");
  for (int c = 0; c < CTP_NUM_CLASSES; c++) {
    printf("    %-8s ", ctp_class_name(c));
    print_bar(r->vote.share[c], 30);
    printf(" %5.1f%%  (%.3f)\n", 100.0f * r->vote.share[c], r->vote.mean_prob[c]);
  }
  if (per_slice) {
    printf("  %5s %10s", "slice", "z (mm)");
    for (int c = 0; c < CTP_NUM_CLASSES; c++) printf(" %7s", ctp_class_name(c));
    printf("  argmax\n");
    for (int i = 0; i < r->nslices; i++) {
      const ctp_slice_result *s = &r->slices[i];
      printf("  %5d %10.2f", i, s->slice->location);
      for (int c = 0; c < CTP_NUM_CLASSES; c++) printf(" %7.3f", s->probs[c]);
      printf("  %s\n", ctp_class_name(s->argmax));
    }
  }
  printf("  time          %.0f ms (read %.0f, preprocess %.0f, network %.0f)\n\n",
         r->t_total * 1e3, r->t_read * 1e3, r->t_preprocess * 1e3, r->t_infer * 1e3);
}

int cmd_predict(int argc, char **argv) {
  cli_args a = {argc, argv, 1, NULL};
  const char *model_path = NULL;
  const char **paths = calloc((size_t)argc, sizeof *paths);
  int npaths = 0, json = 0, per_slice = 0, status = 1;
  ctp_predict_opts opts;
  ctp_predict_opts_default(&opts);
  while (a.i < a.argc) {
    if (cli_opt(&a, "--help", 0)) { free(paths); return cli_usage(help_predict, NULL); }
    else if (cli_opt(&a, "--model", 1)) model_path = a.arg;
    else if (cli_opt(&a, "--json", 0)) json = 1;
    else if (cli_opt(&a, "--per-slice", 0)) per_slice = 1;
    else if (cli_opt(&a, "--margin", 1)) opts.margin = (float)atof(a.arg);
    else if (cli_opt(&a, "--threads", 1)) opts.threads = atoi(a.arg);
    else if (cli_opt(&a, "--batch", 1)) opts.batch = atoi(a.arg);
    else if (a.argv[a.i][0] != '-') paths[npaths++] = a.argv[a.i++];
    else { free(paths); return cli_usage(help_predict, a.argv[a.i]); }
  }
  if (npaths == 0) { free(paths); return cli_usage(help_predict, "(missing PATH)"); }
  ctp_model *m = NULL;
  ctp_scan *scan = NULL;
  ctp_predictor *pred = NULL;
  if (cli_load_model(model_path, &m)) goto done;
  int r = ctp_dicom_scan(paths, npaths, &scan);
  if (r) { cli_fail("cannot read input", r); goto done; }
  if ((r = ctp_predictor_new(&pred, m, &opts))) { cli_fail("cannot set up", r); goto done; }
  int nres = 0, nerr = 0;
  cJSON *root = cJSON_CreateObject();
  cJSON *results = cJSON_AddArrayToObject(root, "results");
  cJSON *unreadable = cJSON_AddArrayToObject(root, "unreadable");
  for (int s = 0; s < ctp_scan_num_series(scan); s++) {
    const ctp_series *se = ctp_scan_series(scan, s);
    int nacq = ctp_series_num_acquisitions(se);
    for (int k = 0; k < (nacq ? nacq : 1); k++) {
      ctp_result res;
      ctp_predictor_run(pred, se, nacq ? ctp_series_acquisition(se, k) : NULL, &res);
      nerr += res.err != 0;
      if (json) {
        char *txt = ctp_result_json(&res, per_slice);
        cJSON_AddItemToArray(results, cJSON_Parse(txt));
        free(txt);
      } else {
        print_result(&res, nacq, per_slice);
      }
      nres++;
      ctp_result_free(&res);
    }
  }
  /* Files that could not be attributed to any series. */
  for (int i = 0; i < ctp_scan_num_files(scan); i++) {
    const ctp_slice *f = ctp_scan_file(scan, i);
    if (f->status != CTP_SLICE_ERROR || f->series_instance_uid[0]) continue;
    if (json) {
      cJSON *u = cJSON_CreateObject();
      cJSON_AddStringToObject(u, "path", f->path);
      cJSON_AddStringToObject(u, "reason", f->reason);
      cJSON_AddItemToArray(unreadable, u);
    } else {
      printf("unreadable %s: %s\n", f->path, f->reason);
    }
  }
  if (json) {
    char *txt = cJSON_Print(root);
    puts(txt);
    free(txt);
  }
  cJSON_Delete(root);
  if (nres == 0 && !json)
    printf("no DICOM series found under the given paths (%d files read)\n",
           ctp_scan_num_files(scan));
  status = (nres == 0 || nerr == nres) ? 1 : 0;
done:
  ctp_predictor_free(pred);
  ctp_scan_free(scan);
  ctp_model_free(m);
  free(paths);
  return status;
}
