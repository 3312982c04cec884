/*
 * cmd_report.c — `ctphase report`: what ctphased would put into the PACS
 * for each acquisition found under the given paths (report.h): one TID 1500
 * SR and the SAM Secondary Captures of the key slices, written to a folder,
 * one line printed per object.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ctphase/error.h"
#include "ctphase/predict.h"
#include "ctphase/report.h"

static const char *help_report =
    "usage: ctphase report PATH... [--out DIR] [--key-slices K] [--all-slices]\n"
    "                      [--layer L] [--masking] [--uid-root ROOT]\n"
    "                      [--config-key S] [--station-ae AE] [--png DIR]\n"
    "                      [--margin M] [--model FILE]\n"
    "                      [--threads N]\n"
    "\n"
    "Predicts the phase of each acquisition of each DICOM series under PATH and\n"
    "writes what ctphased sends to the PACS (docs/conformance-statement.md):\n"
    "a TID 1500 Comprehensive 3D SR with the coded phase and the vote, and RGB\n"
    "Secondary Captures of the key slices with the SAM overlay and a burned-in\n"
    "legend. Files are named <SOPInstanceUID>.dcm; UIDs are deterministic, so a\n"
    "second run replaces the same files. Prints one line per object:\n"
    "  SR|SC <path> <SOPInstanceUID> <SeriesInstanceUID>\n"
    "\n"
    "  --out DIR        output folder (default: ./report; created if missing)\n"
    "  --key-slices K   SC images of the K key slices (default 3; 0: SR only)\n"
    "  --all-slices     an SC image for every slice\n"
    "  --layer L        SAM layer 1a ... 6 (default 3b)\n"
    "  --masking        add the SAM's masking-specificity score of the key\n"
    "                   slices to the SR (per key slice: one more explainer\n"
    "                   pass and two masked forwards)\n"
    "  --uid-root ROOT  the site's UID root (default: 2.25 UUID-derived UIDs)\n"
    "  --config-key S   extra text folded into the UIDs\n"
    "  --station-ae AE  AE title named in the SR's observer context\n"
    "  --png DIR        also write each SC's picture as DIR/<SOPInstanceUID>.png\n"
    "  --margin M       vote-share margin below which the phase is\n"
    "                   'indeterminate' (default 0.10)\n"
    "  --model FILE     model (default: the bundled one, or $CTPHASE_MODEL)\n"
    "  --threads N      threads (default: all cores)\n";

static const char *kind_name(int kind) {
  return kind == CTP_REPORT_SR ? "SR" : "SC";
}

/* Reports one result; returns the number of objects or -1. */
static int report_one(const ctp_model *m, const ctp_result *res,
                      const ctp_report_opts *o, ctp_explainer *e,
                      const char *out) {
  ctp_report_object *objs = NULL;
  int n = 0;
  int r = ctp_report_write(m, res, o, e, out, &objs, &n);
  if (r) {
    fprintf(stderr, "ctphase: series %s: no report: %s\n",
            ctp_series_uid(res->series),
            *ctp_last_error() ? ctp_last_error() : ctp_strerror(r));
    return -1;
  }
  for (int i = 0; i < n; i++)
    printf("%s %s %s %s\n", kind_name(objs[i].kind), objs[i].path,
           objs[i].sop_instance_uid, objs[i].series_instance_uid);
  free(objs);
  return n;
}

int cmd_report(int argc, char **argv) {
  cli_args a = {argc, argv, 1, NULL};
  const char *model_path = NULL, *out = "report", *layer = NULL;
  const char **paths = calloc((size_t)argc, sizeof *paths);
  int npaths = 0, status = 1;
  ctp_report_opts o;
  ctp_report_opts_default(&o);
  ctp_predict_opts popts;
  ctp_predict_opts_default(&popts);
  if (!paths) return cli_fail("cannot start", ctp_seterr(CTP_ENOMEM, "out of memory"));
  while (a.i < a.argc) {
    if (cli_opt(&a, "--help", 0)) { free(paths); return cli_usage(help_report, NULL); }
    else if (cli_opt(&a, "--out", 1)) out = a.arg;
    else if (cli_opt(&a, "--key-slices", 1)) o.key_slices = atoi(a.arg);
    else if (cli_opt(&a, "--all-slices", 0)) o.all_slices = 1;
    else if (cli_opt(&a, "--layer", 1)) layer = a.arg;
    else if (cli_opt(&a, "--masking", 0)) o.masking = 1;
    else if (cli_opt(&a, "--uid-root", 1)) o.uid_root = a.arg;
    else if (cli_opt(&a, "--config-key", 1)) o.config_key = a.arg;
    else if (cli_opt(&a, "--station-ae", 1)) o.station_ae = a.arg;
    else if (cli_opt(&a, "--png", 1)) o.png_dir = a.arg;
    else if (cli_opt(&a, "--margin", 1)) popts.margin = (float)atof(a.arg);
    else if (cli_opt(&a, "--model", 1)) model_path = a.arg;
    else if (cli_opt(&a, "--threads", 1)) o.threads = popts.threads = atoi(a.arg);
    else if (a.argv[a.i][0] != '-') paths[npaths++] = a.argv[a.i++];
    else { free(paths); return cli_usage(help_report, a.argv[a.i]); }
  }
  if (npaths == 0) { free(paths); return cli_usage(help_report, "(missing PATH)"); }
  if (layer && (o.sam_layer = ctp_layer_parse(layer)) < 0) {
    fprintf(stderr, "ctphase: unknown layer '%s' (1a, 1b, 2a, 2b, 3a, 3b, 4a, "
            "4b, 5a, 5b, 6)\n", layer);
    free(paths);
    return 2;
  }
  if (o.key_slices < 0) {
    fprintf(stderr, "ctphase: --key-slices must be >= 0\n");
    free(paths);
    return 2;
  }
  char probe[65];
  if (o.uid_root && ctp_report_uid(o.uid_root, "probe", probe)) {
    fprintf(stderr, "ctphase: --uid-root: %s\n", ctp_last_error());
    free(paths);
    return 2;
  }
  ctp_model *m = NULL;
  ctp_scan *scan = NULL;
  ctp_predictor *pred = NULL;
  ctp_explainer *e = NULL;
  int r, nres = 0, nok = 0, nobj = 0;
  if (cli_load_model(model_path, &m)) goto done;
  if ((r = ctp_dicom_scan(paths, npaths, &scan))) { cli_fail("cannot read input", r); goto done; }
  if ((r = ctp_predictor_new(&pred, m, &popts)) ||
      (r = ctp_explainer_new(&e, m, m->input_size, m->input_size, o.threads))) {
    cli_fail("cannot set up", r);
    goto done;
  }
  for (int s = 0; s < ctp_scan_num_series(scan); s++) {
    const ctp_series *se = ctp_scan_series(scan, s);
    int nacq = ctp_series_num_acquisitions(se);
    for (int k = 0; k < (nacq ? nacq : 1); k++) {
      ctp_result res;
      ctp_predictor_run(pred, se, nacq ? ctp_series_acquisition(se, k) : NULL, &res);
      nres++;
      int n = report_one(m, &res, &o, e, out);
      if (n >= 0) {
        nok++;
        nobj += n;
      }
      ctp_result_free(&res);
    }
  }
  if (nres == 0)
    fprintf(stderr, "ctphase: no DICOM series found under the given paths "
            "(%d files read)\n", ctp_scan_num_files(scan));
  else
    fprintf(stderr, "ctphase: %d objects for %d of %d acquisitions in %s\n",
            nobj, nok, nres, out);
  status = nres > 0 && nok == nres ? 0 : 1;
done:
  ctp_explainer_free(e);
  ctp_predictor_free(pred);
  ctp_scan_free(scan);
  ctp_model_free(m);
  free(paths);
  return status;
}
