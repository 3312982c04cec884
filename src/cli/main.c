/*
 * main.c — `ctphase`, the command-line tool: dispatches to subcommands.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "ctphase/error.h"

static const char *usage =
    "usage: ctphase <command> [options]\n"
    "\n"
    "Classifies the contrast phase of abdominal CT (Philbrick et al., AJR 2018)\n"
    "and shows what the network looked at.\n"
    "\n"
    "commands:\n"
    "  model info FILE        architecture, parameters, metadata, SHA-256\n"
    "  model init             write a He-initialised model\n"
    "  forward                run the network on standardised slices (.npy)\n"
    "  predict PATH...        the phase of each DICOM series under PATH\n"
    "  scan ROOT --csv OUT    the phase of every series in a tree, as CSV\n"
    "  explain                explanation maps (saliency, guided, CAM, Grad-CAM, SAM)\n"
    "  masktest               the paper's masking-specificity test of the maps\n"
    "  report PATH...         the SR and SAM Secondary Captures ctphased sends\n"
    "  phantom --out DIR      synthetic abdominal CT series with known phase\n"
    "  train                  train the classifier (phantom or labelled DICOM)\n"
    "  evaluate               the paper's tables and figures on held-out data\n"
    "  jobs list|show|retry   the jobs of ctphased, from its database\n"
    "  version                print the version\n"
    "\n"
    "Run 'ctphase <command> --help' for the options of a command.\n";

int cli_opt(cli_args *a, const char *name, int takes_value) {
  const char *s = a->argv[a->i];
  size_t n = strlen(name);
  if (strncmp(s, name, n) != 0) return 0;
  if (!takes_value) {
    if (s[n]) return 0;
    a->i++;
    return 1;
  }
  if (s[n] == '=') {
    a->arg = s + n + 1;
    a->i++;
    return 1;
  }
  if (s[n] || a->i + 1 >= a->argc) return 0;
  a->arg = a->argv[a->i + 1];
  a->i += 2;
  return 1;
}

int cli_fail(const char *what, int err) {
  const char *detail = ctp_last_error();
  fprintf(stderr, "ctphase: %s: %s\n", what, *detail ? detail : ctp_strerror(err));
  return 1;
}

int cli_usage(const char *help, const char *bad) {
  if (bad) fprintf(stderr, "ctphase: unexpected argument '%s'\n\n", bad);
  fputs(help, bad ? stderr : stdout);
  return bad ? 2 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    fputs(usage, stdout);
    return 0;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("ctphase %s\n", CTPHASE_VERSION);
    return 0;
  }
  if (!strcmp(cmd, "model")) return cmd_model(argc - 1, argv + 1);
  if (!strcmp(cmd, "forward")) return cmd_forward(argc - 1, argv + 1);
  if (!strcmp(cmd, "predict")) return cmd_predict(argc - 1, argv + 1);
  if (!strcmp(cmd, "scan")) return cmd_scan(argc - 1, argv + 1);
  if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
  if (!strcmp(cmd, "phantom")) return cmd_phantom(argc - 1, argv + 1);
  if (!strcmp(cmd, "explain")) return cmd_explain(argc - 1, argv + 1);
  if (!strcmp(cmd, "masktest")) return cmd_masktest(argc - 1, argv + 1);
  if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
  if (!strcmp(cmd, "evaluate")) return cmd_evaluate(argc - 1, argv + 1);
  if (!strcmp(cmd, "jobs")) return cmd_jobs(argc - 1, argv + 1);
  fprintf(stderr, "ctphase: unknown command '%s'\n\n%s", cmd, usage);
  return 2;
}
