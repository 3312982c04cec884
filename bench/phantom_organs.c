/*
 * phantom_organs.c — what one phantom slice says about its phase, organ by
 * organ, for bench/phantom_ceiling.py.
 *
 *   phantom_organs N SEED [SIZE [SLICES]]
 *
 * Draws N phantom patients (seeds SEED .. SEED+N-1, phases in turn: the
 * classes balanced, as `ctphase train` draws them), renders the middle
 * slice of each at SIZE columns (default 512: thin structures such as the
 * renal cortex keep their value) and prints CSV: the patient, the slice's
 * place in the series (0 top … 1 bottom), the phase, the nominal and the
 * physiological time, and for each organ of interest the median HU of the
 * pixels its label covers (empty when the slice has none). With SLICES > 1
 * it renders that many slices per patient, evenly from the first to the
 * last, as `ctphase evaluate` scores every slice of a series (including
 * those above and below the kidneys).
 *
 * The medians are what a reader who knew exactly where every organ is
 * could measure: they carry the patient's anatomy, kinetics, contrast dose
 * and kVp, but not noise, texture or blur (the median of many pixels).
 * A classifier trained on them estimates how far the phantom's physiology
 * lets any model go from a single slice — the task's ceiling.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ctphase/phantom.h"

/* muscle, aorta, IVC, portal vein, cortex, medulla, collecting system,
 * liver, spleen, arteries, renal vein, pancreas (docs/phantom.md, Labels) */
static const int organs[] = {2, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 18};
enum { NORG = sizeof organs / sizeof organs[0] };

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: phantom_organs N SEED [SIZE [SLICES]]\n");
    return 2;
  }
  int n = atoi(argv[1]), size = argc > 3 ? atoi(argv[3]) : 512;
  int per = argc > 4 ? atoi(argv[4]) : 1;
  unsigned long long seed = strtoull(argv[2], NULL, 10);
  size_t plane = (size_t)size * size;
  float *hu = malloc(plane * sizeof *hu), *px = malloc(plane * sizeof *px);
  unsigned char *lab = malloc(plane);
  if (!hu || !px || !lab || n < 1 || size < 32 || per < 1) return 2;
  printf("patient,place,phase,time_s,effective_time_s");
  for (int j = 0; j < NORG; j++) printf(",label%d", organs[j]);
  printf("\n");
  for (int s = 0; s < n; s++) {
    ctp_phantom_opts po;
    ctp_phantom_opts_init(&po);
    po.seed = seed + (unsigned long long)s;
    po.phase = s % 5;
    po.size = size;
    ctp_phantom *p;
    if (ctp_phantom_new(&p, &po) != 0) return 1;
    const ctp_phantom_info *in = ctp_phantom_get_info(p);
    for (int q = 0; q < per; q++) {
      int z = per == 1 ? in->num_slices / 2 : (int)((long)q * (in->num_slices - 1) / (per - 1));
      if (ctp_phantom_render_float(p, z, 1, hu, lab, 1) != 0) return 1;
      printf("%d,%.3f,%d,%.1f,%.1f", s, in->num_slices > 1 ? (double)z / (in->num_slices - 1) : 0.5,
             in->phase, in->time_s, in->effective_time_s);
      for (int j = 0; j < NORG; j++) {
        size_t k = 0;
        for (size_t i = 0; i < plane; i++)
          if (lab[i] == organs[j]) px[k++] = hu[i];
        if (k) {
          qsort(px, k, sizeof *px, cmp_float);
          printf(",%.1f", px[k / 2]);
        } else {
          printf(",");
        }
      }
      printf("\n");
    }
    ctp_phantom_free(p);
  }
  free(hu);
  free(px);
  free(lab);
  return 0;
}
