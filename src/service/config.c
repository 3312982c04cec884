/*
 * config.c — the configuration table of ctphased and everything derived
 * from it.
 *
 * svc_config_table below is the single description of every key. Adding
 * a key means adding a field to svc_config (config.h) and a row here;
 * defaults, parsing, bounds, the effective-config dump and the JSON Schema
 * (schemas/config.schema.json, regenerated with `ctphased --print-schema`
 * and compared by tests/service_test.py) all follow. Defaults are written
 * as JSON text so that they go through the same parser as the file.
 *
 * Values are reached through their byte offset in svc_config; the type
 * column says what lives there: char * (STRING, ENUM), int64_t (INT),
 * double (NUMBER) or cfg_strlist (STRLIST).
 *
 * Not thread-safe by itself: the daemon never modifies a published config
 * (see config.h).
 */
#include "service/config.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/scu.h"
#include "ctphase/store.h"
#include "ctphase/util.h"

#define OFF(f) offsetof(svc_config, f)
#define MAX_BYTES 1e15 /* a petabyte: exact in JSON, 15 digits */

const cfg_entry svc_config_table[] = {
    /* DICOM */
    {"ae_title", CFG_STRING, OFF(ae_title), 1, 16, "\"CTPHASE\"", NULL, 0,
     "Our AE title; associations calling another AE title are rejected."},
    {"bind_address", CFG_STRING, OFF(bind_address), 2, 45, "\"0.0.0.0\"", NULL, 0,
     "IPv4 or IPv6 address the DICOM port listens on (0.0.0.0: all IPv4 interfaces; \"::\": all interfaces, IPv4 peers included)."},
    {"port", CFG_INT, OFF(port), 0, 65535, "11112", NULL, 0,
     "DICOM port (0: any free port, logged in the scp_listening event)."},
    {"allowed_calling_ae", CFG_STRLIST, OFF(allowed_calling_ae), 0, 1024, "[]", NULL, 1,
     "Calling AE titles allowed to associate; empty: any."},
    {"allowed_peers", CFG_STRLIST, OFF(allowed_peers), 0, 1024, "[]", NULL, 1,
     "Peer IPv4 or IPv6 addresses or CIDR blocks (10.0.0.0/8, fd00::/8) allowed to associate; an IPv4 peer reaching an IPv6 listener (::ffff:10.1.2.3) matches IPv4 entries; empty: any."},
    {"max_associations", CFG_INT, OFF(max_associations), 1, 256, "8", NULL, 0,
     "Associations served at once; more are rejected (local limit exceeded)."},
    {"acse_timeout", CFG_INT, OFF(acse_timeout), 1, 600, "30", NULL, 0,
     "Seconds a peer has to send its A-ASSOCIATE-RQ."},
    {"dimse_timeout", CFG_INT, OFF(dimse_timeout), 1, 3600, "60", NULL, 0,
     "Seconds an association may stay silent, or a message may stall, before it is aborted."},
    {"max_pdu", CFG_INT, OFF(max_pdu), 4096, 131072, "65536", NULL, 0,
     "Maximum PDU size we receive, in bytes."},
    {"sop_classes", CFG_STRLIST, OFF(sop_classes), 0, 1024, "[]", NULL, 0,
     "SOP Class UIDs accepted besides Verification; empty: every storage class."},
    {"non_ct", CFG_ENUM, OFF(non_ct), 0, 0, "\"drop\"", "drop|reject", 1,
     "Objects that are not CT images: acknowledged and dropped, or refused (0x0122)."},
    /* storage */
    {"data_dir", CFG_STRING, OFF(data_dir), 1, 1024, "\"/var/lib/ctphased\"", NULL, 0,
     "Folder of the database, received instances and temporary files."},
    {"min_free_bytes", CFG_INT, OFF(min_free_bytes), 0, MAX_BYTES, "1073741824", NULL, 1,
     "Disk watermark: below this much free space in data_dir, stores answer 0xA700."},
    {"retention_seconds", CFG_INT, OFF(retention_seconds), -1, 3153600000.0, "604800", NULL, 1,
     "Received files are removed this long after their series is done (-1: never); the database keeps the record."},
    /* processing */
    {"stable_seconds", CFG_NUMBER, OFF(stable_seconds), 0.1, 86400, "10", NULL, 1,
     "A series is stable, and gets a job, when nothing arrived for this long."},
    {"workers", CFG_INT, OFF(workers), 1, 64, "1", NULL, 0,
     "Jobs run at once."},
    {"inference_threads", CFG_INT, OFF(inference_threads), 0, 256, "0", NULL, 0,
     "Threads per job (0: cores / workers); capped so that workers x threads never exceeds the cores."},
    {"indeterminate_margin", CFG_NUMBER, OFF(indeterminate_margin), 0, 1, "0.1", NULL, 0,
     "Vote-share margin below which a result is 'indeterminate'."},
    {"job_max_attempts", CFG_INT, OFF(job_max_attempts), 1, 100, "3", NULL, 1,
     "A job interrupted or failing for a transient reason is retried until it has run this often."},
    {"model", CFG_STRING, OFF(model), 0, 4096, "\"\"", NULL, 0,
     "Model file (safetensors); empty: the bundled models/ctphase-phantom-v1.safetensors."},
    /* results and their delivery */
    {"destinations", CFG_STRLIST, OFF(destinations), 0, 16, "[]", NULL, 1,
     "Where results (SR and Secondary Captures) are sent: \"AE@host:port\" (a C-STORE SCP) or \"dir:/absolute/path\" (a folder); empty: results are only kept in data_dir/outbound."},
    {"send_backoff_initial_seconds", CFG_INT, OFF(send_backoff_initial_seconds), 1, 86400, "30", NULL, 1,
     "After a failed send, the first retry waits this long; each further failure doubles the wait."},
    {"send_backoff_max_seconds", CFG_INT, OFF(send_backoff_max_seconds), 1, 86400, "600", NULL, 1,
     "Longest wait between two attempts to send an object."},
    {"send_max_attempts", CFG_INT, OFF(send_max_attempts), 1, 10000, "20", NULL, 1,
     "An object whose send failed this often is marked failed (ctphase jobs resend re-queues it)."},
    {"send_timeout_seconds", CFG_INT, OFF(send_timeout_seconds), 1, 3600, "30", NULL, 1,
     "Connect, association (ACSE) and message (DIMSE) timeout of outbound associations."},
    {"send_batch_size", CFG_INT, OFF(send_batch_size), 1, 1000, "100", NULL, 1,
     "Most objects sent over one association; each destination gets its own association."},
    {"report_key_slices", CFG_INT, OFF(report_key_slices), 0, 64, "3", NULL, 1,
     "Secondary Captures made per result: the slices with the largest voting weight (0: the SR only)."},
    {"report_all_slices", CFG_BOOL, OFF(report_all_slices), 0, 1, "false", NULL, 1,
     "Make a Secondary Capture of every slice, not only the key slices."},
    {"report_sam_layer", CFG_ENUM, OFF(report_sam_layer), 0, 0, "\"3b\"",
     "1a|1b|2a|2b|3a|3b|4a|4b|5a|5b|6", 1,
     "Layer whose SAM is overlaid on the Secondary Captures (the paper found 2b-4b most specific)."},
    {"report_masking", CFG_BOOL, OFF(report_masking), 0, 1, "false", NULL, 1,
     "Compute the SAM's masking-specificity score of the key slices into the SR (costs extra forwards)."},
    {"uid_root", CFG_STRING, OFF(uid_root), 0, 40, "\"\"", NULL, 0,
     "UID root of the SR and Secondary Captures (digits and dots, at most 40 characters); empty: 2.25.<UUID> UIDs. Changing it changes every result's UIDs."},
    /* operations */
    {"shutdown_grace_seconds", CFG_INT, OFF(shutdown_grace_seconds), 0, 3600, "30", NULL, 1,
     "On SIGTERM, how long running associations and jobs may take before jobs are re-queued and the daemon exits."},
    {"log_level", CFG_ENUM, OFF(log_level), 0, 0, "\"info\"", "debug|info|warn|error", 1,
     "Least severe level written to the log."},
    {"log_format", CFG_ENUM, OFF(log_format), 0, 0, "\"auto\"", "auto|json|text", 0,
     "json: one JSON object per line; text: for people; auto: text on a terminal, else json."},
    {"log_file", CFG_STRING, OFF(log_file), 0, 4096, "\"\"", NULL, 0,
     "Log file, reopened on SIGHUP; empty: standard error."},
    {"admin_bind", CFG_STRING, OFF(admin_bind), 7, 15, "\"127.0.0.1\"", NULL, 0,
     "IPv4 address of the admin HTTP port (health, metrics, API)."},
    {"admin_port", CFG_INT, OFF(admin_port), -1, 65535, "8480", NULL, 0,
     "Admin HTTP port (0: any free port, logged in the http_listening event; -1: off)."},
    {"admin_max_request_bytes", CFG_INT, OFF(admin_max_request_bytes), 1024, 1048576, "8192", NULL, 0,
     "Largest admin HTTP request accepted; larger ones get 431."},
};

const int svc_config_count =
    (int)(sizeof svc_config_table / sizeof svc_config_table[0]);

const cfg_entry *config_entry(const char *name) {
  for (int i = 0; i < svc_config_count; i++)
    if (strcmp(svc_config_table[i].name, name) == 0) return &svc_config_table[i];
  return NULL;
}

static void *field(svc_config *cfg, const cfg_entry *e) {
  return (char *)cfg + e->offset;
}

static const void *cfield(const svc_config *cfg, const cfg_entry *e) {
  return (const char *)cfg + e->offset;
}

static void strlist_free(cfg_strlist *l) {
  for (int i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

static int choice_ok(const char *choices, const char *s) {
  size_t n = strlen(s);
  for (const char *p = choices; *p;) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && strncmp(p, s, n) == 0) return 1;
    p += len + (bar ? 1 : 0);
  }
  return 0;
}

/* Checks and stores one JSON value into its field. */
static int set_value(svc_config *cfg, const cfg_entry *e, const cJSON *v,
                     const char *origin) {
  void *f = field(cfg, e);
  switch (e->type) {
    case CFG_STRING:
    case CFG_ENUM: {
      if (!cJSON_IsString(v))
        return ctp_seterr(CTP_EINVAL, "%s: %s must be a string", origin, e->name);
      size_t len = strlen(v->valuestring);
      if (e->type == CFG_ENUM && !choice_ok(e->choices, v->valuestring))
        return ctp_seterr(CTP_EINVAL, "%s: %s must be one of %s (got \"%s\")",
                          origin, e->name, e->choices, v->valuestring);
      if (e->type == CFG_STRING && (len < e->min || len > e->max))
        return ctp_seterr(CTP_EINVAL, "%s: %s must have %g to %g characters",
                          origin, e->name, e->min, e->max);
      char *dup = strdup(v->valuestring);
      if (!dup) return ctp_seterr(CTP_ENOMEM, "out of memory");
      free(*(char **)f);
      *(char **)f = dup;
      return 0;
    }
    case CFG_INT:
    case CFG_NUMBER: {
      if (!cJSON_IsNumber(v))
        return ctp_seterr(CTP_EINVAL, "%s: %s must be a number", origin, e->name);
      double d = v->valuedouble;
      if (e->type == CFG_INT && d != floor(d))
        return ctp_seterr(CTP_EINVAL, "%s: %s must be an integer", origin, e->name);
      if (!(d >= e->min && d <= e->max))
        return ctp_seterr(CTP_ERANGE, "%s: %s = %g is outside %.17g..%.17g",
                          origin, e->name, d, e->min, e->max);
      if (e->type == CFG_INT) *(int64_t *)f = (int64_t)d;
      else *(double *)f = d;
      return 0;
    }
    case CFG_BOOL:
      if (!cJSON_IsBool(v))
        return ctp_seterr(CTP_EINVAL, "%s: %s must be true or false", origin, e->name);
      *(int *)f = cJSON_IsTrue(v) ? 1 : 0;
      return 0;
    case CFG_STRLIST: {
      if (!cJSON_IsArray(v))
        return ctp_seterr(CTP_EINVAL, "%s: %s must be an array of strings",
                          origin, e->name);
      int n = cJSON_GetArraySize(v);
      if (n > e->max)
        return ctp_seterr(CTP_ERANGE, "%s: %s has more than %g items", origin,
                          e->name, e->max);
      cfg_strlist l = {calloc((size_t)n + 1, sizeof(char *)), 0};
      if (!l.v) return ctp_seterr(CTP_ENOMEM, "out of memory");
      const cJSON *it;
      cJSON_ArrayForEach(it, v) {
        if (!cJSON_IsString(it)) {
          strlist_free(&l);
          return ctp_seterr(CTP_EINVAL, "%s: %s must be an array of strings",
                            origin, e->name);
        }
        if (!(l.v[l.n++] = strdup(it->valuestring))) {
          strlist_free(&l);
          return ctp_seterr(CTP_ENOMEM, "out of memory");
        }
      }
      strlist_free((cfg_strlist *)f);
      *(cfg_strlist *)f = l;
      return 0;
    }
  }
  return ctp_seterr(CTP_EINVAL, "%s: bad table entry", e->name);
}

int config_init(svc_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  for (int i = 0; i < svc_config_count; i++) {
    const cfg_entry *e = &svc_config_table[i];
    cJSON *v = cJSON_ParseWithOpts(e->def, NULL, 1);
    int rc = v ? set_value(cfg, e, v, "default") : CTP_ENOMEM;
    cJSON_Delete(v);
    if (rc) {
      config_free(cfg);
      return rc;
    }
  }
  return 0;
}

void config_free(svc_config *cfg) {
  if (!cfg) return;
  for (int i = 0; i < svc_config_count; i++) {
    const cfg_entry *e = &svc_config_table[i];
    void *f = field(cfg, e);
    if (e->type == CFG_STRING || e->type == CFG_ENUM) {
      free(*(char **)f);
      *(char **)f = NULL;
    } else if (e->type == CFG_STRLIST) {
      strlist_free((cfg_strlist *)f);
    }
  }
}

/* The value of one key as a new cJSON item. */
static cJSON *value_json(const svc_config *cfg, const cfg_entry *e) {
  const void *f = cfield(cfg, e);
  switch (e->type) {
    case CFG_STRING:
    case CFG_ENUM: return cJSON_CreateString(*(char *const *)f);
    case CFG_INT: return cJSON_CreateNumber((double)*(const int64_t *)f);
    case CFG_NUMBER: return cJSON_CreateNumber(*(const double *)f);
    case CFG_BOOL: return cJSON_CreateBool(*(const int *)f);
    case CFG_STRLIST: {
      const cfg_strlist *l = f;
      return cJSON_CreateStringArray((const char *const *)l->v, l->n);
    }
  }
  return cJSON_CreateNull();
}

static int copy_key(svc_config *dst, const svc_config *src, const cfg_entry *e) {
  cJSON *v = value_json(src, e);
  int rc = v ? set_value(dst, e, v, "copy") : ctp_seterr(CTP_ENOMEM, "out of memory");
  cJSON_Delete(v);
  return rc;
}

int config_copy(svc_config *dst, const svc_config *src) {
  int rc = config_init(dst);
  for (int i = 0; !rc && i < svc_config_count; i++)
    rc = copy_key(dst, src, &svc_config_table[i]);
  if (rc) config_free(dst);
  return rc;
}

int config_merge_json(svc_config *cfg, const char *json, const char *origin) {
  cJSON *root = cJSON_ParseWithOpts(json, NULL, 1);
  if (!root || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return ctp_seterr(CTP_EINVAL, "%s: not a JSON object", origin);
  }
  int rc = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, root) {
    const cfg_entry *e = config_entry(it->string);
    if (!e) {
      rc = ctp_seterr(CTP_EINVAL, "%s: unknown key \"%s\"", origin, it->string);
      break;
    }
    if ((rc = set_value(cfg, e, it, origin))) break;
  }
  cJSON_Delete(root);
  return rc;
}

int config_load_file(svc_config *cfg, const char *path) {
  unsigned char *buf = NULL;
  size_t len = 0;
  int rc = ctp_file_read(path, &buf, &len);
  if (rc) return rc;
  rc = config_merge_json(cfg, (const char *)buf, path);
  free(buf);
  return rc;
}

int config_set(svc_config *cfg, const char *key, const char *value) {
  const cfg_entry *e = config_entry(key);
  if (!e) return ctp_seterr(CTP_EINVAL, "unknown configuration key \"%s\"", key);
  cJSON *v = cJSON_ParseWithOpts(value, NULL, 1);
  int plain = !v || ((e->type == CFG_STRING || e->type == CFG_ENUM) &&
                     !cJSON_IsString(v)) ||
              (e->type == CFG_STRLIST && !cJSON_IsArray(v));
  if (plain) {
    cJSON_Delete(v);
    if (e->type == CFG_STRLIST) {
      /* A comma-separated list. */
      v = cJSON_CreateArray();
      char *copy = strdup(value), *save = NULL;
      for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t;
           t = strtok_r(NULL, ",", &save))
        cJSON_AddItemToArray(v, cJSON_CreateString(t));
      free(copy);
    } else {
      v = cJSON_CreateString(value);
    }
  }
  char origin[96];
  snprintf(origin, sizeof origin, "option %s", key);
  int rc = v ? set_value(cfg, e, v, origin) : ctp_seterr(CTP_ENOMEM, "out of memory");
  cJSON_Delete(v);
  return rc;
}

static int ipv4_ok(const char *s) {
  struct in_addr a;
  return inet_pton(AF_INET, s, &a) == 1;
}

static int ip_ok(const char *s) {
  struct in6_addr a;
  return ipv4_ok(s) || inet_pton(AF_INET6, s, &a) == 1;
}

/* An address or allowlist entry as 16 bytes and a prefix length: IPv6 as
 * it is, IPv4 as its IPv4-mapped IPv6 form (::ffff:a.b.c.d, prefix + 96),
 * so that an IPv4 entry matches an IPv4 peer seen on an IPv6 socket and
 * the other way round. "/bits" only where with_bits. */
static int cidr_parse(const char *s, int with_bits, unsigned char ip[16], int *bits) {
  char addr[64];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  if (n >= sizeof addr || (slash && !with_bits)) return -1;
  memcpy(addr, s, n);
  addr[n] = 0;
  int max;
  struct in_addr a4;
  if (inet_pton(AF_INET, addr, &a4) == 1) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memcpy(ip, mapped, 12);
    memcpy(ip + 12, &a4, 4);
    max = 32;
  } else if (inet_pton(AF_INET6, addr, ip) == 1) {
    max = 128;
  } else {
    return -1;
  }
  long b = max;
  if (slash) {
    char *end;
    b = strtol(slash + 1, &end, 10);
    if (*end || end == slash + 1 || !isdigit((unsigned char)slash[1]) || b < 0 ||
        b > max)
      return -1;
  }
  *bits = (int)b + (128 - max);
  return 0;
}

int config_addr_match(const char *pattern, const char *addr) {
  unsigned char net[16], ip[16];
  int bits, ibits;
  if (cidr_parse(pattern, 1, net, &bits) || cidr_parse(addr, 0, ip, &ibits)) return 0;
  int whole = bits / 8, rest = bits % 8;
  if (memcmp(net, ip, (size_t)whole) != 0) return 0;
  if (rest == 0) return 1;
  unsigned char mask = (unsigned char)(0xff << (8 - rest));
  return (net[whole] & mask) == (ip[whole] & mask);
}

int config_list_has(const cfg_strlist *l, const char *s) {
  for (int i = 0; i < l->n; i++)
    if (strcmp(l->v[i], s) == 0) return 1;
  return 0;
}

static int ae_ok(const char *s) {
  int nonspace = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p < 0x20 || *p > 0x7e || *p == '\\') return 0;
    if (*p != ' ') nonspace = 1;
  }
  return nonspace;
}

int config_validate(const svc_config *cfg) {
  if (!ae_ok(cfg->ae_title))
    return ctp_seterr(CTP_EINVAL, "ae_title \"%s\": printable ASCII, no backslash",
                      cfg->ae_title);
  if (!ip_ok(cfg->bind_address))
    return ctp_seterr(CTP_EINVAL, "bind_address \"%s\" is not an IPv4 or IPv6 address",
                      cfg->bind_address);
  if (!ipv4_ok(cfg->admin_bind))
    return ctp_seterr(CTP_EINVAL, "admin_bind \"%s\" is not an IPv4 address",
                      cfg->admin_bind);
  for (int i = 0; i < cfg->allowed_calling_ae.n; i++)
    if (!ae_ok(cfg->allowed_calling_ae.v[i]) || strlen(cfg->allowed_calling_ae.v[i]) > 16)
      return ctp_seterr(CTP_EINVAL, "allowed_calling_ae: \"%s\" is not an AE title",
                        cfg->allowed_calling_ae.v[i]);
  for (int i = 0; i < cfg->allowed_peers.n; i++) {
    unsigned char net[16];
    int bits;
    if (cidr_parse(cfg->allowed_peers.v[i], 1, net, &bits))
      return ctp_seterr(CTP_EINVAL,
                        "allowed_peers: \"%s\" is not an IPv4 or IPv6 address or "
                        "CIDR block",
                        cfg->allowed_peers.v[i]);
  }
  for (int i = 0; i < cfg->sop_classes.n; i++)
    if (!ctp_uid_valid(cfg->sop_classes.v[i]))
      return ctp_seterr(CTP_EINVAL, "sop_classes: \"%s\" is not a UID",
                        cfg->sop_classes.v[i]);
  for (int i = 0; i < cfg->destinations.n; i++) {
    ctp_dest d;
    if (ctp_dest_parse(cfg->destinations.v[i], &d) != 0) {
      char why[512];
      snprintf(why, sizeof why, "%s", ctp_last_error());
      return ctp_seterr(CTP_EINVAL, "destinations: %s", why);
    }
  }
  if (cfg->uid_root[0] && !ctp_uid_valid(cfg->uid_root))
    return ctp_seterr(CTP_EINVAL,
                      "uid_root \"%s\" is not a UID root (digits and dots, no "
                      "empty component, e.g. \"1.2.826.0.1.3680043.9.9999\")",
                      cfg->uid_root);
  return 0;
}

char *config_to_json(const svc_config *cfg) {
  cJSON *root = cJSON_CreateObject();
  for (int i = 0; i < svc_config_count; i++)
    cJSON_AddItemToObject(root, svc_config_table[i].name,
                          value_json(cfg, &svc_config_table[i]));
  char *txt = cJSON_Print(root);
  cJSON_Delete(root);
  return txt;
}

static cJSON *entry_schema(const cfg_entry *e) {
  cJSON *p = cJSON_CreateObject();
  switch (e->type) {
    case CFG_STRING:
      cJSON_AddStringToObject(p, "type", "string");
      cJSON_AddNumberToObject(p, "minLength", e->min);
      cJSON_AddNumberToObject(p, "maxLength", e->max);
      break;
    case CFG_ENUM: {
      cJSON_AddStringToObject(p, "type", "string");
      cJSON *en = cJSON_AddArrayToObject(p, "enum");
      char *copy = strdup(e->choices), *save = NULL;
      for (char *t = copy ? strtok_r(copy, "|", &save) : NULL; t;
           t = strtok_r(NULL, "|", &save))
        cJSON_AddItemToArray(en, cJSON_CreateString(t));
      free(copy);
      break;
    }
    case CFG_INT:
    case CFG_NUMBER:
      cJSON_AddStringToObject(p, "type", e->type == CFG_INT ? "integer" : "number");
      cJSON_AddNumberToObject(p, "minimum", e->min);
      cJSON_AddNumberToObject(p, "maximum", e->max);
      break;
    case CFG_STRLIST: {
      cJSON_AddStringToObject(p, "type", "array");
      cJSON *items = cJSON_AddObjectToObject(p, "items");
      cJSON_AddStringToObject(items, "type", "string");
      cJSON_AddNumberToObject(p, "maxItems", e->max);
      break;
    }
    case CFG_BOOL: cJSON_AddStringToObject(p, "type", "boolean"); break;
  }
  cJSON_AddItemToObject(p, "default", cJSON_ParseWithOpts(e->def, NULL, 1));
  cJSON_AddStringToObject(p, "description", e->doc);
  cJSON_AddBoolToObject(p, "x-reloadable", e->reloadable);
  return p;
}

char *config_schema_json(void) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "$schema",
                          "https://json-schema.org/draft/2020-12/schema");
  cJSON_AddStringToObject(root, "title", "ctphased configuration");
  cJSON_AddStringToObject(
      root, "description",
      "Configuration file of ctphased. Generated from the table in "
      "src/service/config.c by `ctphased --print-schema`; do not edit by "
      "hand. Every key has a default, so {} is a valid file. Keys with "
      "x-reloadable take effect on SIGHUP; the others need a restart.");
  cJSON_AddStringToObject(root, "type", "object");
  cJSON_AddBoolToObject(root, "additionalProperties", 0);
  cJSON *props = cJSON_AddObjectToObject(root, "properties");
  for (int i = 0; i < svc_config_count; i++)
    cJSON_AddItemToObject(props, svc_config_table[i].name,
                          entry_schema(&svc_config_table[i]));
  char *txt = cJSON_Print(root);
  cJSON_Delete(root);
  return txt;
}

void config_keep_static(svc_config *dst, const svc_config *src, char *changed,
                        size_t n) {
  if (n) changed[0] = 0;
  for (int i = 0; i < svc_config_count; i++) {
    const cfg_entry *e = &svc_config_table[i];
    if (e->reloadable) continue;
    cJSON *a = value_json(dst, e), *b = value_json(src, e);
    int same = cJSON_Compare(a, b, 1);
    cJSON_Delete(a);
    cJSON_Delete(b);
    if (same) continue;
    copy_key(dst, src, e);
    size_t used = strlen(changed);
    if (used + strlen(e->name) + 2 < n)
      snprintf(changed + used, n - used, "%s%s", used ? "," : "", e->name);
  }
}
