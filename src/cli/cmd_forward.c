/*
 * cmd_forward.c — `ctphase forward`: logits and probabilities for slices
 * that are already standardised, read from a .npy file.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ctphase/error.h"
#include "ctphase/model.h"
#include "ctphase/nn.h"
#include "ctphase/npy.h"

static const char *help_forward =
    "usage: ctphase forward --model FILE --input X.npy [--out LOGITS.npy]\n"
    "                       [--json] [--threads N] [--batch N]\n"
    "\n"
    "Runs the network on X, standardised slices of shape (N,C,H,W) or (H,W)\n"
    "(H and W multiples of 32; C the model's in_channels), and prints the\n"
    "logits and softmax probabilities of each slice. --out writes the logits\n"
    "as an (N,5) float32 array. --threads defaults to all cores.\n";

int cmd_forward(int argc, char **argv) {
  cli_args a = {argc, argv, 1, NULL};
  const char *model_path = NULL, *in_path = NULL, *out_path = NULL;
  int json = 0, threads = 0, batch = 8;
  while (a.i < a.argc) {
    if (cli_opt(&a, "--help", 0)) return cli_usage(help_forward, NULL);
    else if (cli_opt(&a, "--model", 1)) model_path = a.arg;
    else if (cli_opt(&a, "--input", 1)) in_path = a.arg;
    else if (cli_opt(&a, "--out", 1)) out_path = a.arg;
    else if (cli_opt(&a, "--json", 0)) json = 1;
    else if (cli_opt(&a, "--threads", 1)) threads = atoi(a.arg);
    else if (cli_opt(&a, "--batch", 1)) batch = atoi(a.arg);
    else return cli_usage(help_forward, a.argv[a.i]);
  }
  if (!model_path || !in_path)
    return cli_usage(help_forward, "(--model and --input are required)");
  if (batch < 1) batch = 1;

  ctp_model *m = NULL;
  ctp_net *net = NULL;
  ctp_npy x = {0};
  float *logits = NULL, *probs = NULL;
  int r, status = 1;
  if ((r = ctp_model_load(&m, model_path))) {
    cli_fail("cannot load model", r);
    goto done;
  }
  if ((r = ctp_npy_read(in_path, &x))) {
    cli_fail("cannot read input", r);
    goto done;
  }
  size_t n, c, h, w;
  if (x.ndim == 2) { n = 1; c = 1; h = x.shape[0]; w = x.shape[1]; }
  else if (x.ndim == 4) { n = x.shape[0]; c = x.shape[1]; h = x.shape[2]; w = x.shape[3]; }
  else {
    fprintf(stderr, "ctphase: %s: expected shape (N,C,H,W) or (H,W), got %d "
            "dimensions\n", in_path, x.ndim);
    goto done;
  }
  if (c != (size_t)m->in_channels) {
    fprintf(stderr, "ctphase: %s: %zu channels, the model takes %d\n", in_path,
            c, m->in_channels);
    goto done;
  }
  if (n == 0 || h % 32 || w % 32 || h == 0 || w == 0) {
    fprintf(stderr, "ctphase: %s: %zu slices of %zux%zu; need H and W "
            "multiples of 32\n", in_path, n, h, w);
    goto done;
  }
  int bn = (size_t)batch < n ? batch : (int)n;
  if ((r = ctp_net_new(&net, m, bn, (int)h, (int)w, 0, threads))) {
    cli_fail("cannot create workspace", r);
    goto done;
  }
  logits = malloc(n * CTP_NUM_CLASSES * sizeof(float));
  probs = malloc(n * CTP_NUM_CLASSES * sizeof(float));
  if (!logits || !probs) { fprintf(stderr, "ctphase: out of memory\n"); goto done; }
  for (size_t i = 0; i < n; i += (size_t)bn) {
    int k = n - i < (size_t)bn ? (int)(n - i) : bn;
    if ((r = ctp_net_forward(net, x.data + i * c * h * w, k,
                             logits + i * CTP_NUM_CLASSES))) {
      cli_fail("forward failed", r);
      goto done;
    }
  }
  ctp_softmax(logits, probs, (int)n);
  if (out_path) {
    size_t shape[2] = {n, CTP_NUM_CLASSES};
    if ((r = ctp_npy_write(out_path, logits, 2, shape))) {
      cli_fail("cannot write logits", r);
      goto done;
    }
  }
  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model_sha256", m->sha256);
    cJSON *cls = cJSON_AddArrayToObject(o, "classes");
    for (int j = 0; j < CTP_NUM_CLASSES; j++)
      cJSON_AddItemToArray(cls, cJSON_CreateString(ctp_class_name(j)));
    cJSON *sl = cJSON_AddArrayToObject(o, "slices");
    for (size_t i = 0; i < n; i++) {
      cJSON *s = cJSON_CreateObject();
      cJSON_AddNumberToObject(s, "index", (double)i);
      cJSON *lg = cJSON_AddArrayToObject(s, "logits");
      cJSON *pr = cJSON_AddArrayToObject(s, "probs");
      int best = 0;
      for (int j = 0; j < CTP_NUM_CLASSES; j++) {
        cJSON_AddItemToArray(lg, cJSON_CreateNumber(logits[i * CTP_NUM_CLASSES + j]));
        cJSON_AddItemToArray(pr, cJSON_CreateNumber(probs[i * CTP_NUM_CLASSES + j]));
        if (probs[i * CTP_NUM_CLASSES + j] > probs[i * CTP_NUM_CLASSES + best]) best = j;
      }
      cJSON_AddStringToObject(s, "argmax", ctp_class_name(best));
      cJSON_AddItemToArray(sl, s);
    }
    char *txt = cJSON_Print(o);
    puts(txt);
    free(txt);
    cJSON_Delete(o);
  } else {
    printf("%-6s", "slice");
    for (int j = 0; j < CTP_NUM_CLASSES; j++) printf(" %9s", ctp_class_name(j));
    printf("   argmax\n");
    for (size_t i = 0; i < n; i++) {
      const float *z = logits + i * CTP_NUM_CLASSES, *p = probs + i * CTP_NUM_CLASSES;
      int best = 0;
      for (int j = 1; j < CTP_NUM_CLASSES; j++) if (p[j] > p[best]) best = j;
      printf("%-6zu", i);
      for (int j = 0; j < CTP_NUM_CLASSES; j++) printf(" %9.4f", z[j]);
      printf("   logits\n%-6s", "");
      for (int j = 0; j < CTP_NUM_CLASSES; j++) printf(" %9.4f", p[j]);
      printf("   probs -> %s\n", ctp_class_name(best));
    }
  }
  status = 0;
done:
  free(logits);
  free(probs);
  ctp_npy_free(&x);
  ctp_net_free(net);
  ctp_model_free(m);
  return status;
}
