/*
 * cmd_train.c — `ctphase train`: the paper's training recipe on phantom
 * data or on a user's labelled DICOM.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ctphase/error.h"
#include "ctphase/train.h"

static const char *help_train =
    "usage: ctphase train --out DIR (--phantom N | --data DIR --labels CSV)\n"
    "                     [--resume | --init MODEL] [--seed S] [--size 512]\n"
    "                     [--in-channels 1|3]\n"
    "                     [--batch 8] [--epochs 100] [--max-steps N]\n"
    "                     [--slices-per-series K] [--fresh] [--lr 1e-4]\n"
    "                     [--threads N]\n"
    "                     [--no-augment] [--quiet]\n"
    "\n"
    "Trains the classifier with the paper's recipe: Adam (lr 1e-4), lr x 0.316\n"
    "after 4 epochs without validation improvement, stop after 12, balanced\n"
    "class weights, +/-5 degree rotation and +/-5 pixel translation.\n"
    "\n"
    "  --phantom N        N synthetic series (patients), phases balanced,\n"
    "                     K slices each (--slices-per-series, default 12)\n"
    "  --fresh            with --phantom: new training patients (same\n"
    "                     classes, slices anywhere in the series) every epoch\n"
    "                     after the first, so that the model cannot learn\n"
    "                     them by heart; validation and test patients stay\n"
    "  --data DIR --labels CSV\n"
    "                     DICOM under DIR, labelled by CSV lines\n"
    "                     SeriesInstanceUID,phase (phase: noncon, cm, cmneph,\n"
    "                     neph, pyelo); split by PatientID\n"
    "  --out DIR          checkpoint.safetensors/.adam every epoch,\n"
    "                     best.safetensors, history.csv, split.csv\n"
    "  --resume           continue from DIR's checkpoint\n"
    "  --init MODEL       start from MODEL's weights instead of a random\n"
    "                     initialisation (fine-tuning, e.g. the bundled model\n"
    "                     on your own series); optimiser, schedule and\n"
    "                     history start afresh\n"
    "  --size S           training grid and the model's input_size\n";

int cmd_train(int argc, char **argv) {
  cli_args a = {argc, argv, 1, NULL};
  ctp_train_opts o;
  ctp_train_opts_default(&o);
  while (a.i < a.argc) {
    if (cli_opt(&a, "--help", 0)) return cli_usage(help_train, NULL);
    else if (cli_opt(&a, "--out", 1)) o.out_dir = a.arg;
    else if (cli_opt(&a, "--phantom", 1)) o.phantom_series = atoi(a.arg);
    else if (cli_opt(&a, "--data", 1)) o.data_dir = a.arg;
    else if (cli_opt(&a, "--labels", 1)) o.labels_csv = a.arg;
    else if (cli_opt(&a, "--resume", 0)) o.resume = 1;
    else if (cli_opt(&a, "--init", 1)) o.init_model = a.arg;
    else if (cli_opt(&a, "--seed", 1)) o.seed = strtoull(a.arg, NULL, 10);
    else if (cli_opt(&a, "--size", 1)) o.size = atoi(a.arg);
    else if (cli_opt(&a, "--in-channels", 1)) o.in_channels = atoi(a.arg);
    else if (cli_opt(&a, "--batch", 1)) o.batch = atoi(a.arg);
    else if (cli_opt(&a, "--epochs", 1)) o.max_epochs = atoi(a.arg);
    else if (cli_opt(&a, "--max-steps", 1)) o.max_steps = atoi(a.arg);
    else if (cli_opt(&a, "--slices-per-series", 1)) {
      o.phantom_slices = atoi(a.arg);
      o.max_slices_per_series = atoi(a.arg);
    }
    else if (cli_opt(&a, "--fresh", 0)) o.fresh = 1;
    else if (cli_opt(&a, "--lr", 1)) o.lr = (float)atof(a.arg);
    else if (cli_opt(&a, "--threads", 1)) o.threads = atoi(a.arg);
    else if (cli_opt(&a, "--no-augment", 0)) o.augment = 0;
    else if (cli_opt(&a, "--quiet", 0)) o.quiet = 1;
    else return cli_usage(help_train, a.argv[a.i]);
  }
  if (!o.out_dir || (o.phantom_series <= 0 && (!o.data_dir || !o.labels_csv)))
    return cli_usage(help_train, "(--out and a data source are required)");
  if (o.resume && o.init_model)
    return cli_usage(help_train, "(--resume and --init exclude each other)");
  if (o.fresh && o.phantom_series <= 0)
    return cli_usage(help_train, "(--fresh draws phantom patients: it needs --phantom)");
  if (o.in_channels != 1 && o.in_channels != 3)
    return cli_usage(help_train, "(--in-channels must be 1 or 3)");
  ctp_train_summary s;
  int r = ctp_train_run(&o, &s);
  if (r) return cli_fail("training failed", r);
  printf("trained %d epochs%s: first loss %.4f, last train loss %.4f, best val "
         "loss %.4f at epoch %d (val acc %.3f); best model %s/best.safetensors\n",
         s.epochs, s.stopped_early ? " (early stop)" : "", s.first_train_loss,
         s.last_train_loss, s.best_val_loss, s.best_epoch, s.val_acc, o.out_dir);
  return 0;
}
