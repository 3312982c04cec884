/*
 * report.h — what one result puts into the PACS (DESIGN.md §4, issue 8):
 * a TID 1500 Comprehensive 3D SR with the phase, and RGB Secondary
 * Captures of the key slices with the SAM overlay and a burned-in legend.
 *
 * One call writes the objects of one acquisition's result (a ctp_result
 * from ctp_predictor_run) into a folder, each file named after its SOP
 * Instance UID and written atomically (temporary name, fsync, rename,
 * folder fsync), so a crash leaves either the whole file or none.
 *
 * UIDs are deterministic: the SR, the SC instances and their two series
 * are named from (source SeriesInstanceUID, acquisition index and number,
 * model SHA-256, the result's margin threshold, opts->config_key, the
 * options that change the output (SAM layer, K, all_slices, masking),
 * object role), so running the same series again, or resending, gives
 * the same UIDs and a PACS replaces rather than duplicates. With uid_root
 * NULL or "" they are "2.25.<UUID as decimal>" (ctp_dicom_uid_from_name);
 * a site with its own root (a valid UID prefix of at most 47 characters)
 * gets "<root>.<decimal of the first 128 bits of the name's SHA-256>" cut
 * to 64 characters (docs/conformance-statement.md, "Identifiers").
 *
 * Patient and study attributes are copied from the source files, never
 * logged. Errors follow error.h; nothing is left half-written on failure:
 * each file is atomic, and the SC files a failed call created are removed.
 *
 * Threads: ctp_report_write may run in several threads at once, each with
 * its own explainer (or NULL: one is made and freed per call, which costs
 * an allocation of the explainer's workspace); the model is only read.
 */
#ifndef CTPHASE_REPORT_H
#define CTPHASE_REPORT_H

#include "ctphase/explain.h"
#include "ctphase/model.h"
#include "ctphase/predict.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CTP_REPORT_KEY_SLICES 3
#define CTP_REPORT_SAM_LAYER CTP_L3B

typedef struct {
  const char *uid_root;     /* NULL/"": 2.25 UUID-derived UIDs */
  const char *config_key;   /* config that changes the output; folded
                               into the UIDs (NULL = "") */
  int key_slices;           /* K SC images (default 3); 0: SR only */
  int all_slices;           /* 1: an SC for every slice, not only K */
  int sam_layer;            /* CTP_L1A..CTP_L6 (default CTP_L3B) */
  int masking;              /* 1: masking-specificity score of the key
                               slices' SAMs into the SR (costs forwards) */
  const char *station_ae;   /* our AE title (observer context) */
  const char *station_name; /* host name (observer context); NULL: gethostname */
  int threads;              /* explainer threads (0: all cores) */
  const char *png_dir;      /* non-NULL: each SC's picture also as
                               png_dir/<SOPInstanceUID>.png (for a look) */
} ctp_report_opts;

void ctp_report_opts_default(ctp_report_opts *o);

typedef enum { CTP_REPORT_SR = 0, CTP_REPORT_SC = 1 } ctp_report_kind;

typedef struct {
  int kind;                         /* ctp_report_kind */
  char sop_class_uid[65];
  char sop_instance_uid[65];
  char series_instance_uid[65];
  char transfer_syntax_uid[65];
  char path[4096];                  /* out_dir/<sop_instance_uid>.dcm */
} ctp_report_object;

/* Writes the SR and SC objects of result r (err == 0) into out_dir
 * (created if missing). expl may be NULL (one is made for the call) or an
 * explainer for the model's input size, reused across calls by a worker.
 * On success *objs (malloc'd, free()) holds *n objects, the SR first. */
int ctp_report_write(const ctp_model *m, const ctp_result *r,
                     const ctp_report_opts *o, ctp_explainer *expl,
                     const char *out_dir, ctp_report_object **objs, int *n);

/* The deterministic UID for a name under a root (see above). */
int ctp_report_uid(const char *root, const char *name, char out[65]);

#ifdef __cplusplus
}
#endif
#endif
