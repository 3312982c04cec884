/*
 * bench_predict.c — `ctphase predict` end to end on a real series: read
 * the headers, decode, preprocess, infer, vote; slices per second and the
 * share of the time spent outside the network.
 *
 * Usage: bench_predict MODEL PATH [--threads N] [--reps R] [--batch B]
 *
 * Each repetition scans PATH from scratch (header reading counts) and
 * predicts its first acquisition of at least 100 slices (or its largest);
 * the best repetition is reported. The target (issue "Phase prediction
 * from DICOM"): outside-network time <= 25% of the total, 100 slices
 * <= 1.2 s on 2 cores.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/predict.h"
#include "ctphase/util.h"

int main(int argc, char **argv) {
  const char *model = NULL, *path = NULL;
  int reps = 3;
  ctp_predict_opts o;
  ctp_predict_opts_default(&o);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) o.threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc) o.batch = atoi(argv[++i]);
    else if (!model) model = argv[i];
    else path = argv[i];
  }
  if (!model || !path) {
    fprintf(stderr, "usage: bench_predict MODEL PATH [--threads N] [--reps R] [--batch B]\n");
    return 2;
  }
  ctp_model *m;
  if (ctp_model_load(&m, model)) {
    fprintf(stderr, "bench_predict: %s\n", ctp_last_error());
    return 1;
  }
  ctp_predictor *p;
  if (ctp_predictor_new(&p, m, &o)) {
    fprintf(stderr, "bench_predict: %s\n", ctp_last_error());
    return 1;
  }
  double best = 1e30, b_scan = 0, b_read = 0, b_prep = 0, b_inf = 0;
  int n = 0;
  for (int r = 0; r < reps; r++) {
    double t0 = ctp_now();
    ctp_scan *scan;
    const char *paths[1] = {path};
    if (ctp_dicom_scan(paths, 1, &scan)) {
      fprintf(stderr, "bench_predict: %s\n", ctp_last_error());
      return 1;
    }
    double t_scan = ctp_now() - t0;
    const ctp_series *best_se = NULL;
    const ctp_acquisition *acq = NULL;
    for (int s = 0; s < ctp_scan_num_series(scan) && !(acq && n >= 100); s++)
      for (int k = 0; k < ctp_series_num_acquisitions(ctp_scan_series(scan, s)); k++) {
        const ctp_series *se = ctp_scan_series(scan, s);
        const ctp_acquisition *a = ctp_series_acquisition(se, k);
        if (!acq || ctp_acquisition_num_slices(a) > n) {
          acq = a;
          best_se = se;
          n = ctp_acquisition_num_slices(a);
          if (n >= 100) break;
        }
      }
    if (!acq) {
      fprintf(stderr, "bench_predict: no acquisition under %s\n", path);
      return 1;
    }
    ctp_result res;
    if (ctp_predictor_run(p, best_se, acq, &res)) {
      fprintf(stderr, "bench_predict: %s\n", res.error);
      return 1;
    }
    double total = ctp_now() - t0;
    if (total < best) {
      best = total;
      b_scan = t_scan;
      b_read = res.t_read;
      b_prep = res.t_preprocess;
      b_inf = res.t_infer;
    }
    ctp_result_free(&res);
    ctp_scan_free(scan);
  }
  /* The scan read every header of PATH; charge the acquisition its share. */
  double outside = best - b_inf;
  printf("predict, %d slices, %d threads, batch %d (best of %d)\n", n,
         o.threads ? o.threads : 0, o.batch, reps);
  printf("  total           %8.1f ms   %6.1f slices/s\n", best * 1e3, n / best);
  printf("  header scan     %8.1f ms   (all files under PATH)\n", b_scan * 1e3);
  printf("  decode          %8.1f ms\n", b_read * 1e3);
  printf("  preprocess      %8.1f ms\n", b_prep * 1e3);
  printf("  network         %8.1f ms   %6.2f ms/slice\n", b_inf * 1e3, b_inf * 1e3 / n);
  printf("  outside network %8.1f ms   %5.1f%% of total (target <= 25%%)\n",
         outside * 1e3, 100.0 * outside / best);
  printf("  per 100 slices  %8.1f ms   (target <= 1200 ms)\n", best * 1e3 * 100.0 / n);
  ctp_predictor_free(p);
  ctp_model_free(m);
  return 0;
}
