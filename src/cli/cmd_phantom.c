/*
 * cmd_phantom.c — `ctphase phantom`: synthetic abdominal CT series on disk.
 *
 * For each series i (seed S+i) it draws a phantom (phantom.h), renders all
 * its slices, and writes:
 *
 *   DIR/series-NNNN-<phase>/IM0001.dcm ...  one CT Image Storage file per
 *                                           slice, InstanceNumber 1 at the
 *                                           top (head end), z decreasing
 *   DIR/series-NNNN-<phase>/labels.npy      uint8 (Z, rows, columns): the
 *                                           organ label of every voxel, in
 *                                           InstanceNumber order
 *   DIR/manifest.csv                        one line per series: UIDs,
 *                                           folder, seed, time, phase and
 *                                           the drawn parameters
 *   DIR/label_codes.csv                     code,name of the labels
 *
 * Without --phase or --time-s the phases cycle noncon, cm, cmneph, neph,
 * pyelo (series i has class i mod 5) and the time is drawn inside the
 * phase's window, so any run of 5k series is balanced.
 *
 * DICOM identity is deterministic: the study (and frame of reference) UID
 * depends on the seed only — one seed is one patient, and its phases form
 * one multiphase study — while series and image UIDs also depend on the
 * time, size and slice count. Dates and times are made up from the seed.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "ctphase/dicom_write.h"
#include "ctphase/error.h"
#include "ctphase/model.h"
#include "ctphase/npy.h"
#include "ctphase/phantom.h"
#include "ctphase/util.h"

static const char *help_phantom =
    "usage: ctphase phantom --out DIR [--series N] [--phase P | --time-s T]\n"
    "                       [--seed S] [--slices Z] [--size 512]\n"
    "                       [--threads N] [--quiet]\n"
    "\n"
    "Writes synthetic abdominal CT series (upper to lower pole of the\n"
    "kidneys) as DICOM, with an organ label volume per series (labels.npy)\n"
    "and DIR/manifest.csv. Series i uses seed S+i (S defaults to 1).\n"
    "\n"
    "  --phase P    noncon, cm, cmneph, neph or pyelo (or 0..4); the time\n"
    "               after injection is drawn inside the phase's window\n"
    "  --time-s T   seconds after the contrast injection (negative: none);\n"
    "               the phase follows from T's window\n"
    "               Without either, the phases cycle through the 5 classes.\n"
    "  --slices Z   slice count (default: the covered span / thickness)\n"
    "  --size N     rows and columns (default 512)\n"
    "\n"
    "Windows: cm [20, 42.5) s, cmneph [42.5, 80), neph [80, 180),\n"
    "pyelo >= 180 (drawn up to 600). See docs/phantom.md.\n";

/* "HHMMSS.ffffff" for seconds since midnight (wrapping at 24 h). */
static void fmt_time(double s, char *out, size_t len) {
  long long us = llround(s * 1e6) % 86400000000LL;
  if (us < 0) us += 86400000000LL;
  unsigned sec = (unsigned)(us / 1000000), frac = (unsigned)(us % 1000000);
  snprintf(out, len, "%02u%02u%02u.%06u", sec / 3600 % 24, sec / 60 % 60,
           sec % 60, frac % 1000000);
}

/* A study date from the seed: a day in 2020-2023. */
static void fmt_date(uint64_t seed, char *out, size_t len) {
  struct tm t = {0};
  t.tm_year = 120;
  t.tm_mon = 0;
  t.tm_mday = 1 + (int)(seed % 1400);
  t.tm_hour = 12;
  time_t tt = timegm(&t);
  struct tm g;
  gmtime_r(&tt, &g);
  strftime(out, len, "%Y%m%d", &g);
}

typedef struct {
  const char *out;
  uint64_t seed0;
  int nseries, phase, slices, size, threads, quiet, have_time;
  double time_s;
} phantom_job;

/* Writes one series; appends its manifest line to mf. */
static int write_series(const phantom_job *job, int idx, FILE *mf) {
  ctp_phantom_opts o;
  ctp_phantom_opts_init(&o);
  o.seed = job->seed0 + (uint64_t)idx;
  o.num_slices = job->slices;
  o.size = job->size;
  if (job->have_time) {
    o.phase = -1;
    o.time_s = job->time_s;
  } else {
    o.phase = job->phase >= 0 ? job->phase : idx % CTP_NUM_CLASSES;
  }
  ctp_phantom *ph = NULL;
  int16_t *hu = NULL;
  uint8_t *lab = NULL;
  int r = ctp_phantom_new(&ph, &o);
  if (r) return r;
  const ctp_phantom_info *in = ctp_phantom_get_info(ph);
  int Z = in->num_slices, H = in->rows, W = in->columns;
  size_t n = (size_t)Z * H * W;
  const char *pname = ctp_class_name(in->phase);
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/series-%04d-%s", job->out, idx, pname);
  if ((r = ctp_mkdir_p(dir, 0777))) goto done;
  hu = malloc(n * sizeof *hu);
  lab = malloc(n);
  if (!hu || !lab) {
    r = ctp_seterr(CTP_ENOMEM, "out of memory for %d slices", Z);
    goto done;
  }
  if ((r = ctp_phantom_render(ph, 0, Z, hu, lab, job->threads))) goto done;

  /* Identity. */
  char name[256], study_uid[65], series_uid[65], frame_uid[65];
  unsigned long long seed = (unsigned long long)o.seed;
  snprintf(name, sizeof name, "ctphase-phantom/seed=%llu/study", seed);
  ctp_dicom_uid_from_name(name, study_uid);
  snprintf(name, sizeof name, "ctphase-phantom/seed=%llu/frame", seed);
  ctp_dicom_uid_from_name(name, frame_uid);
  char series_key[200];
  snprintf(series_key, sizeof series_key,
           "ctphase-phantom/seed=%llu/t=%.6f/size=%d/slices=%d", seed,
           in->time_s, W, Z);
  snprintf(name, sizeof name, "%s/series", series_key);
  ctp_dicom_uid_from_name(name, series_uid);
  char pat_name[64], pat_id[64], study_id[16], acc[32], date[16];
  char study_time[32], series_time[32], inj_time[32], desc[64];
  snprintf(pat_name, sizeof pat_name, "PHANTOM^%llu", seed);
  snprintf(pat_id, sizeof pat_id, "CTP-%llu", seed);
  snprintf(study_id, sizeof study_id, "%llu", seed % 100000000ull);
  snprintf(acc, sizeof acc, "PH%llu", seed % 10000000000ull);
  fmt_date(o.seed, date, sizeof date);
  double t_study = 8 * 3600.0 + (double)((seed * 7919ull) % 32400ull);
  double t_inj = t_study + 120.0;
  double t_series = in->time_s >= 0 ? t_inj + in->time_s : t_study + 30.0;
  fmt_time(t_study, study_time, sizeof study_time);
  fmt_time(t_series, series_time, sizeof series_time);
  fmt_time(t_inj, inj_time, sizeof inj_time);
  if (in->time_s >= 0)
    snprintf(desc, sizeof desc, "Phantom abdomen %s t=%.1f s", pname,
             in->time_s);
  else
    snprintf(desc, sizeof desc, "Phantom abdomen %s", pname);

  ctp_ct_series_desc s;
  memset(&s, 0, sizeof s);
  s.study_uid = study_uid;
  s.series_uid = series_uid;
  s.frame_of_reference_uid = frame_uid;
  s.patient_name = pat_name;
  s.patient_id = pat_id;
  s.patient_sex = seed % 2 ? "M" : "F";
  s.patient_birth_date = "";
  s.study_id = study_id;
  s.accession_number = acc;
  s.study_date = date;
  s.study_time = study_time;
  s.series_time = series_time;
  s.study_description = "CT ABDOMEN SYNTHETIC PHANTOM";
  s.series_description = desc;
  s.protocol_name = "ctphase phantom";
  s.series_number = 2 + in->phase;
  s.acquisition_number = 1;
  s.manufacturer = "ctphase phantom";
  s.model_name = "procedural abdomen";
  s.station_name = "CTPHASE";
  s.software_version = CTPHASE_VERSION;
  s.institution_name = "ctphase";
  s.body_part = "ABDOMEN";
  s.patient_position = in->head_first ? "HFS" : "FFS";
  s.kvp = in->kvp;
  /* Tube current: lower noise means more dose (noise ~ 1/sqrt(mAs)). */
  double ma = 250.0 * (15.0 / in->noise_sd) * (15.0 / in->noise_sd);
  s.tube_current_ma = ma < 60 ? 60 : ma > 700 ? 700 : ma;
  s.exposure_time_ms = 750;
  s.slice_thickness = in->slice_thickness;
  s.pixel_spacing[0] = s.pixel_spacing[1] = in->pixel_spacing;
  static const double axial[6] = {1, 0, 0, 0, 1, 0};
  memcpy(s.orientation, axial, sizeof axial);
  s.reconstruction_diameter = in->pixel_spacing * W;
  s.table_height = in->table_height_mm + 100.0;
  s.convolution_kernel = in->blur_sigma < 0.6 ? "B45f"
                         : in->blur_sigma < 0.8 ? "B30f" : "B20f";
  if (in->time_s >= 0) {
    s.contrast_agent = seed % 3 ? "IOPAMIDOL 370" : "IOHEXOL 350";
    s.contrast_concentration = seed % 3 ? 370 : 350;
    s.contrast_route = "IV";
    s.contrast_volume_ml = 80 + (double)(seed % 5) * 10;
    s.contrast_start_time = inj_time;
  }
  s.rows = H;
  s.columns = W;
  s.signed_storage = in->signed_storage;
  s.window_center = 40;
  s.window_width = 400;

  for (int k = 0; k < Z; k++) {
    char sop_uid[65], acq[32];
    snprintf(name, sizeof name, "%s/image=%d", series_key, k + 1);
    ctp_dicom_uid_from_name(name, sop_uid);
    double tk = (in->time_s >= 0 ? t_series : t_study + 30.0) +
                k * in->slice_spacing / in->table_speed_mm_s;
    fmt_time(tk, acq, sizeof acq);
    ctp_ct_slice_desc sl = {sop_uid, k + 1,
                            {in->position_x, in->position_y,
                             in->first_z - k * in->slice_spacing},
                            acq, acq, hu + (size_t)k * H * W};
    snprintf(path, sizeof path, "%s/IM%04d.dcm", dir, k + 1);
    if ((r = ctp_dicom_write_ct(path, &s, &sl))) goto done;
  }
  size_t shape[3] = {(size_t)Z, (size_t)H, (size_t)W};
  snprintf(path, sizeof path, "%s/labels.npy", dir);
  if ((r = ctp_npy_write_u8(path, lab, 3, shape))) goto done;

  const char *folder = strrchr(dir, '/') + 1;
  fprintf(mf,
          "%s,%s,%s,%llu,%s,%d,%.3f,%.3f,%d,%d,%d,%.4f,%.3f,%.4f,%.3f,%d,"
          "%.2f,%.3f,%.3f,%d,%.1f,%.1f,%.1f,%.4f,%.4f,%.4f,%d,%.1f,%d,%d,%.1f,"
          "%s\n",
          series_uid, study_uid, folder, seed, pname, in->phase, in->time_s,
          in->effective_time_s, Z, H, W, in->pixel_spacing,
          in->slice_thickness, in->slice_spacing, in->first_z, in->kvp,
          in->noise_sd, in->noise_grain, in->blur_sigma, in->num_streaks,
          in->body_width_mm, in->body_depth_mm, in->subcut_fat_mm,
          in->cardiac_scale, in->contrast_scale, in->excretion_scale,
          in->oral_contrast, in->oral_contrast_hu, in->num_bowel_loops,
          in->num_renal_cysts, in->table_height_mm,
          in->signed_storage ? "signed" : "unsigned12");
  if (ferror(mf)) r = ctp_seterr(CTP_EIO, "cannot write manifest.csv");
  if (!r && !job->quiet)
    printf("%s  %-6s  t=%6.1f s  %3d slices  %.3f mm  %.2f mm  noise %4.1f\n",
           folder, pname, in->time_s, Z, in->pixel_spacing,
           in->slice_thickness, in->noise_sd);
done:
  free(hu);
  free(lab);
  ctp_phantom_free(ph);
  return r;
}

static const char *manifest_header =
    "series_uid,study_uid,folder,seed,phase,phase_index,time_s,"
    "effective_time_s,num_slices,rows,columns,pixel_spacing_mm,"
    "slice_thickness_mm,slice_spacing_mm,first_z_mm,kvp,noise_sd_hu,"
    "noise_grain_px,blur_px,num_streaks,body_width_mm,body_depth_mm,"
    "subcut_fat_mm,cardiac_scale,contrast_scale,excretion_scale,"
    "oral_contrast,oral_contrast_hu,num_bowel_loops,num_renal_cysts,"
    "table_height_mm,storage\n";

static int write_label_codes(const char *out) {
  char path[4200];
  snprintf(path, sizeof path, "%s/label_codes.csv", out);
  FILE *f = fopen(path, "w");
  if (!f) return ctp_seterr(CTP_EIO, "cannot write %s: %s", path,
                            strerror(errno));
  fprintf(f, "code,name\n");
  for (int i = 0; i < CTP_PHANTOM_NUM_LABELS; i++)
    fprintf(f, "%d,%s\n", i, ctp_phantom_label_name(i));
  int bad = ferror(f);
  if (fclose(f) != 0 || bad)
    return ctp_seterr(CTP_EIO, "cannot write %s", path);
  return 0;
}

int cmd_phantom(int argc, char **argv) {
  cli_args a = {argc, argv, 1, NULL};
  phantom_job job = {NULL, 1, 1, -1, 0, 0, 0, 0, 0, 0};
  int have_phase = 0;
  while (a.i < a.argc) {
    char *end = NULL;
    if (cli_opt(&a, "--help", 0)) return cli_usage(help_phantom, NULL);
    else if (cli_opt(&a, "--out", 1)) job.out = a.arg;
    else if (cli_opt(&a, "--series", 1)) job.nseries = atoi(a.arg);
    else if (cli_opt(&a, "--seed", 1)) job.seed0 = strtoull(a.arg, &end, 10);
    else if (cli_opt(&a, "--slices", 1)) job.slices = atoi(a.arg);
    else if (cli_opt(&a, "--size", 1)) job.size = atoi(a.arg);
    else if (cli_opt(&a, "--threads", 1)) job.threads = atoi(a.arg);
    else if (cli_opt(&a, "--quiet", 0)) job.quiet = 1;
    else if (cli_opt(&a, "--time-s", 1)) {
      job.time_s = strtod(a.arg, &end);
      if (end == a.arg || *end)
        return cli_usage(help_phantom, "(--time-s wants a number)");
      job.have_time = 1;
    } else if (cli_opt(&a, "--phase", 1)) {
      job.phase = ctp_class_parse(a.arg);
      if (job.phase < 0 && a.arg[0] >= '0' && a.arg[0] <= '4' && !a.arg[1])
        job.phase = a.arg[0] - '0';
      if (job.phase < 0)
        return cli_usage(help_phantom, "(--phase: noncon, cm, cmneph, neph "
                                       "or pyelo)");
      have_phase = 1;
    } else {
      return cli_usage(help_phantom, a.argv[a.i]);
    }
    if (end && *end) return cli_usage(help_phantom, "(--seed wants a number)");
  }
  if (!job.out) return cli_usage(help_phantom, "(--out is required)");
  if (have_phase && job.have_time)
    return cli_usage(help_phantom, "(give --phase or --time-s, not both)");
  if (job.nseries < 1) return cli_usage(help_phantom, "(--series must be >= 1)");
  if (job.slices < 0 || job.slices > CTP_PHANTOM_MAX_SLICES)
    return cli_usage(help_phantom, "(--slices out of range)");
  if (job.size && (job.size < CTP_PHANTOM_MIN_SIZE ||
                   job.size > CTP_PHANTOM_MAX_SIZE))
    return cli_usage(help_phantom, "(--size out of range)");

  int r = ctp_mkdir_p(job.out, 0777);
  if (r) return cli_fail("cannot create the output folder", r);
  if ((r = write_label_codes(job.out))) return cli_fail("cannot write", r);
  char path[4200];
  snprintf(path, sizeof path, "%s/manifest.csv", job.out);
  FILE *mf = fopen(path, "w");
  if (!mf) {
    r = ctp_seterr(CTP_EIO, "cannot write %s: %s", path, strerror(errno));
    return cli_fail("cannot write the manifest", r);
  }
  fputs(manifest_header, mf);
  for (int i = 0; i < job.nseries && !r; i++) {
    r = write_series(&job, i, mf);
    fflush(mf);
  }
  if (fclose(mf) != 0 && !r) r = ctp_seterr(CTP_EIO, "cannot write %s", path);
  if (r) return cli_fail("phantom", r);
  return 0;
}
