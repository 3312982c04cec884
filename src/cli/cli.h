/*
 * cli.h — the ctphase command line: one function per subcommand.
 *
 * Each subcommand parses its own options with cli_opt(), prints its help on
 * --help, and returns a process exit status: 0 success, 1 failure of the
 * job (the message is on stderr), 2 bad usage.
 */
#ifndef CTPHASE_CLI_H
#define CTPHASE_CLI_H

typedef struct {
  int argc;
  char **argv;
  int i;          /* next argument */
  const char *arg;/* the value of the option just matched */
} cli_args;

/* Matches argv[i] against --name (with a value when takes_value). */
int cli_opt(cli_args *a, const char *name, int takes_value);
/* Prints "ctphase: <msg>: <last error>" to stderr and returns 1. */
int cli_fail(const char *what, int err);
int cli_usage(const char *help, const char *bad);

int cmd_model(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_phantom(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_masktest(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_jobs(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);

struct ctp_model;
/* Loads --model, else $CTPHASE_MODEL, else the bundled model; prints why
 * not and returns 1 on failure. */
int cli_load_model(const char *path, struct ctp_model **m);

#endif
