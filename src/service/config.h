/*
 * config.h — the configuration of ctphased: one table, one struct.
 *
 * Every key is one row of the table in config.c: name, type, bounds,
 * default, whether it may change at runtime (SIGHUP), and one sentence of
 * documentation. Everything else derives from that table: the defaults,
 * parsing and bounds checks of the JSON file and of --set overrides, the
 * JSON Schema (`ctphased --print-schema`, checked against
 * schemas/config.schema.json by the tests) and the effective configuration
 * printed by `ctphased --check-config`.
 *
 * A svc_config is immutable once the daemon has published it: a reload
 * builds a new one, copies the keys that may not change at runtime from
 * the running one, and publishes it (see service.h).
 */
#ifndef CTPHASE_SERVICE_CONFIG_H
#define CTPHASE_SERVICE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char **v;
  int n;
} cfg_strlist;

typedef struct svc_config {
  /* DICOM */
  char *ae_title;
  char *bind_address;
  int64_t port;
  cfg_strlist allowed_calling_ae;
  cfg_strlist allowed_peers;
  int64_t max_associations;
  int64_t acse_timeout;
  int64_t dimse_timeout;
  int64_t max_pdu;
  cfg_strlist sop_classes;
  char *non_ct;
  /* storage */
  char *data_dir;
  int64_t min_free_bytes;
  int64_t retention_seconds;
  /* processing */
  double stable_seconds;
  int64_t workers;
  int64_t inference_threads;
  double indeterminate_margin;
  int64_t job_max_attempts;
  char *model;
  /* operations */
  int64_t shutdown_grace_seconds;
  char *log_level;
  char *log_format;
  char *log_file;
  char *admin_bind;
  int64_t admin_port;
  int64_t admin_max_request_bytes;
  /* results and their delivery (send.c, job.c) */
  cfg_strlist destinations;
  int64_t send_backoff_initial_seconds;
  int64_t send_backoff_max_seconds;
  int64_t send_max_attempts;
  int64_t send_timeout_seconds;
  int64_t send_batch_size;
  int64_t report_key_slices;
  int report_all_slices;
  char *report_sam_layer;
  int report_masking;
  char *uid_root;
} svc_config;

typedef enum {
  CFG_STRING,
  CFG_INT,
  CFG_NUMBER,
  CFG_ENUM,
  CFG_STRLIST,
  CFG_BOOL /* int: 0 or 1 */
} cfg_type;

typedef struct {
  const char *name;
  cfg_type type;
  size_t offset;
  double min, max;     /* INT, NUMBER: value; STRING: length; STRLIST: items */
  const char *def;     /* the default, as JSON text */
  const char *choices; /* ENUM: "a|b|c" */
  int reloadable;      /* takes effect on SIGHUP */
  const char *doc;
} cfg_entry;

extern const cfg_entry svc_config_table[];
extern const int svc_config_count;

/* The row of a key, or NULL. */
const cfg_entry *config_entry(const char *name);

/* Fills cfg with the defaults. Returns 0 or CTP_ENOMEM. */
int config_init(svc_config *cfg);
void config_free(svc_config *cfg);
/* Deep copy. */
int config_copy(svc_config *dst, const svc_config *src);

/* Merges a JSON object (text). An unknown key, a wrong type or a value out
 * of bounds is CTP_EINVAL with a message naming the key. */
int config_merge_json(svc_config *cfg, const char *json, const char *origin);
/* Reads and merges a file. */
int config_load_file(svc_config *cfg, const char *path);
/* Sets one key from text: JSON if it parses as JSON, else a string. */
int config_set(svc_config *cfg, const char *key, const char *value);
/* Checks what the table cannot: AE title characters, addresses, ... */
int config_validate(const svc_config *cfg);

/* The effective configuration as JSON text (malloc'd). */
char *config_to_json(const svc_config *cfg);
/* The JSON Schema of the configuration file (malloc'd). */
char *config_schema_json(void);

/* Copies into dst the keys of src that cannot change at runtime, and
 * writes into changed (comma-separated, truncated to n) the names of
 * those that differed. */
void config_keep_static(svc_config *dst, const svc_config *src, char *changed,
                        size_t n);

/* Helpers for the policy the SCP applies. */
int config_list_has(const cfg_strlist *l, const char *s);
/* Whether a peer address (IPv4 or IPv6, no prefix) matches an allowlist
 * entry: an address or CIDR block of either family ("10.1.2.3",
 * "10.0.0.0/8", "::1", "fd00::/8"). IPv4 and IPv4-mapped IPv6
 * (::ffff:10.1.2.3) are the same address here, both ways. */
int config_addr_match(const char *pattern, const char *addr);

#endif
