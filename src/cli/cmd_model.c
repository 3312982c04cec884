/*
 * cmd_model.c — `ctphase model info` and `ctphase model init`.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ctphase/error.h"
#include "ctphase/model.h"

static const char *help_model =
    "usage: ctphase model info FILE [--json]\n"
    "       ctphase model init --seed S --out FILE [--in-channels 1|3]\n"
    "                          [--name NAME]\n"
    "\n"
    "info   prints the architecture (layers, output shapes at the model's\n"
    "       input size, parameters), the metadata and the file's SHA-256.\n"
    "init   writes a model with He-initialised weights (untrained), the\n"
    "       same bytes for the same seed.\n";

static void print_info(const ctp_model *m, const char *path) {
  int s = m->input_size;
  printf("model     %s\n", path);
  printf("sha256    %s\n", m->sha256);
  printf("params    %zu\n", m->num_params);
  printf("input     %d x %d x %d (C x H x W), standardised HU: (HU - %g) / %g\n",
         m->in_channels, s, s, m->hu_mean, m->hu_std);
  printf("\n%-6s %-34s %-16s %8s\n", "layer", "op", "output", "params");
  for (int l = 0; l < CTP_NUM_CONV; l++) {
    int c = ctp_layer_in_channels(l, m->in_channels), k = ctp_layer_channels(l);
    int h = s >> ctp_layer_shift(l);
    char op[64], out[32];
    snprintf(op, sizeof op, "conv3x3 %d->%d, ReLU%s", c, k,
             ctp_layer_pooled(l) ? ", maxpool 2x2" : "");
    if (ctp_layer_pooled(l)) h /= 2;
    snprintf(out, sizeof out, "%dx%dx%d", h, h, k);
    printf("%-6s %-34s %-16s %8zu\n", ctp_layer_name(l), op, out,
           m->tensors[2 * l].numel + m->tensors[2 * l + 1].numel);
  }
  printf("%-6s %-34s %-16s %8d\n", "gap", "global average pool", "64", 0);
  printf("%-6s %-34s %-16s %8d\n", "fc", "dense 64->5, softmax", "5",
         CTP_NUM_CLASSES * CTP_GAP_CHANNELS + CTP_NUM_CLASSES);
  printf("\nmetadata\n");
  for (int i = 0; i < m->num_meta; i++)
    printf("  %-12s %s\n", m->meta[i].key, m->meta[i].value);
}

static int print_info_json(const ctp_model *m, const char *path) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "path", path);
  cJSON_AddStringToObject(o, "sha256", m->sha256);
  cJSON_AddNumberToObject(o, "params", (double)m->num_params);
  cJSON_AddNumberToObject(o, "in_channels", m->in_channels);
  cJSON_AddNumberToObject(o, "input_size", m->input_size);
  cJSON *tensors = cJSON_AddArrayToObject(o, "tensors");
  for (int i = 0; i < CTP_NUM_TENSORS; i++) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "name", m->tensors[i].name);
    cJSON *shape = cJSON_AddArrayToObject(t, "shape");
    for (int d = 0; d < m->tensors[i].ndim; d++)
      cJSON_AddItemToArray(shape, cJSON_CreateNumber(m->tensors[i].shape[d]));
    cJSON_AddItemToArray(tensors, t);
  }
  cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
  for (int i = 0; i < m->num_meta; i++)
    cJSON_AddStringToObject(meta, m->meta[i].key, m->meta[i].value);
  char *s = cJSON_Print(o);
  puts(s);
  free(s);
  cJSON_Delete(o);
  return 0;
}

static int model_info(int argc, char **argv) {
  cli_args a = {argc, argv, 1, NULL};
  const char *path = NULL;
  int json = 0;
  while (a.i < a.argc) {
    if (cli_opt(&a, "--help", 0)) return cli_usage(help_model, NULL);
    else if (cli_opt(&a, "--json", 0)) json = 1;
    else if (!path && a.argv[a.i][0] != '-') path = a.argv[a.i++];
    else return cli_usage(help_model, a.argv[a.i]);
  }
  if (!path) return cli_usage(help_model, "(missing FILE)");
  ctp_model *m;
  int r = ctp_model_load(&m, path);
  if (r) return cli_fail("cannot load model", r);
  r = json ? print_info_json(m, path) : (print_info(m, path), 0);
  ctp_model_free(m);
  return r;
}

static int model_init(int argc, char **argv) {
  cli_args a = {argc, argv, 1, NULL};
  const char *out = NULL, *name = NULL;
  unsigned long long seed = 0;
  int in_ch = 1, have_seed = 0;
  while (a.i < a.argc) {
    if (cli_opt(&a, "--help", 0)) return cli_usage(help_model, NULL);
    else if (cli_opt(&a, "--seed", 1)) { seed = strtoull(a.arg, NULL, 10); have_seed = 1; }
    else if (cli_opt(&a, "--out", 1)) out = a.arg;
    else if (cli_opt(&a, "--name", 1)) name = a.arg;
    else if (cli_opt(&a, "--in-channels", 1)) in_ch = atoi(a.arg);
    else return cli_usage(help_model, a.argv[a.i]);
  }
  if (!out || !have_seed) return cli_usage(help_model, "(--seed and --out are required)");
  ctp_model *m;
  int r = ctp_model_new(&m, in_ch);
  if (r) return cli_fail("cannot create model", r);
  ctp_model_init_he(m, seed);
  char buf[64];
  snprintf(buf, sizeof buf, "He initialisation, seed %llu", seed);
  ctp_model_set_meta(m, "trained_on", buf);
  ctp_model_set_meta(m, "created", "ctphase model init");
  if (name) ctp_model_set_meta(m, "name", name);
  r = ctp_model_save(m, out);
  ctp_model_free(m);
  if (r) return cli_fail("cannot write model", r);
  printf("wrote %s (%zu parameters, seed %llu)\n", out,
         ctp_model_param_count(in_ch), seed);
  return 0;
}

int cmd_model(int argc, char **argv) {
  if (argc < 2) return cli_usage(help_model, "(missing subcommand)");
  if (!strcmp(argv[1], "--help")) return cli_usage(help_model, NULL);
  if (!strcmp(argv[1], "info")) return model_info(argc - 1, argv + 1);
  if (!strcmp(argv[1], "init")) return model_init(argc - 1, argv + 1);
  return cli_usage(help_model, argv[1]);
}
