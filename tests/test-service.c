/*
 * test-service.c — unit tests of the service's pure parts: the
 * configuration table, UID paths, the store's life cycles, the log and
 * the metrics text. The daemon as a whole is tested by
 * tests/service_test.py with DCMTK's tools on loopback.
 */
#include "test.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sqlite3.h>
#include <unistd.h>

#include "ctphase/error.h"
#include "ctphase/scu.h"
#include "ctphase/store.h"
#include "ctphase/util.h"
#include "service/config.h"
#include "service/log.h"
#include "service/metrics.h"

/* ------------------------------------------------------------------ */
/* Configuration                                                        */
/* ------------------------------------------------------------------ */

TEST_IMPL(config_defaults_are_valid) {
  svc_config c;
  ASSERT_OK(config_init(&c));
  ASSERT_OK(config_validate(&c));
  ASSERT(strcmp(c.ae_title, "CTPHASE") == 0);
  ASSERT_EQ_INT(c.port, 11112);
  ASSERT_NEAR(c.stable_seconds, 10.0, 0);
  ASSERT_EQ_INT(c.allowed_calling_ae.n, 0);
  ASSERT(strcmp(c.admin_bind, "127.0.0.1") == 0);
  /* An empty file is a valid configuration. */
  ASSERT_OK(config_merge_json(&c, "{}", "empty"));
  config_free(&c);
  return 0;
}

TEST_IMPL(config_rejects_bad_values_by_name) {
  static const struct {
    const char *json;
    int err;
    const char *mentions;
  } bad[] = {
      {"{\"port\": 70000}", CTP_ERANGE, "port"},
      {"{\"port\": 1.5}", CTP_EINVAL, "integer"},
      {"{\"port\": \"104\"}", CTP_EINVAL, "number"},
      {"{\"nope\": 1}", CTP_EINVAL, "nope"},
      {"{\"ae_title\": \"\"}", CTP_EINVAL, "ae_title"},
      {"{\"ae_title\": \"ABCDEFGHIJKLMNOPQ\"}", CTP_EINVAL, "ae_title"},
      {"{\"non_ct\": \"keep\"}", CTP_EINVAL, "drop|reject"},
      {"{\"allowed_peers\": \"10.0.0.1\"}", CTP_EINVAL, "array"},
      {"{\"allowed_peers\": [1]}", CTP_EINVAL, "strings"},
      {"{\"stable_seconds\": 0}", CTP_ERANGE, "stable_seconds"},
      {"{\"workers\": 0}", CTP_ERANGE, "workers"},
      {"[1, 2]", CTP_EINVAL, "object"},
      {"{\"port\": ", CTP_EINVAL, "object"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    svc_config c;
    ASSERT_OK(config_init(&c));
    int rc = config_merge_json(&c, bad[i].json, "test.json");
    if (rc != bad[i].err || !strstr(ctp_last_error(), bad[i].mentions)) {
      fprintf(stderr, "%s: got %d \"%s\"\n", bad[i].json, rc, ctp_last_error());
      return 1;
    }
    /* A failed merge leaves the default in place. */
    ASSERT_EQ_INT(c.port, 11112);
    config_free(&c);
  }
  return 0;
}

TEST_IMPL(config_merge_and_overrides) {
  svc_config c;
  ASSERT_OK(config_init(&c));
  ASSERT_OK(config_merge_json(&c,
      "{\"port\": 104, \"allowed_calling_ae\": [\"CT1\", \"CT2\"],"
      " \"stable_seconds\": 2.5, \"min_free_bytes\": 0}", "f"));
  ASSERT_EQ_INT(c.port, 104);
  ASSERT_EQ_INT(c.allowed_calling_ae.n, 2);
  ASSERT(config_list_has(&c.allowed_calling_ae, "CT2"));
  ASSERT(!config_list_has(&c.allowed_calling_ae, "CT3"));
  ASSERT_OK(config_set(&c, "port", "4242"));
  ASSERT_OK(config_set(&c, "ae_title", "PACS_IN"));
  ASSERT_OK(config_set(&c, "allowed_peers", "10.0.0.0/8,192.168.1.7"));
  ASSERT_OK(config_set(&c, "log_level", "debug"));
  ASSERT_OK(config_set(&c, "ae_title", "123")); /* a number is still a title */
  ASSERT_EQ_INT(c.port, 4242);
  ASSERT(strcmp(c.ae_title, "123") == 0);
  ASSERT_EQ_INT(c.allowed_peers.n, 2);
  ASSERT(strcmp(c.allowed_peers.v[1], "192.168.1.7") == 0);
  ASSERT_EQ_INT(config_set(&c, "port", "-1"), CTP_ERANGE);
  ASSERT_EQ_INT(config_set(&c, "no_such_key", "1"), CTP_EINVAL);
  ASSERT_OK(config_validate(&c));
  svc_config d;
  ASSERT_OK(config_copy(&d, &c));
  ASSERT_EQ_INT(d.allowed_peers.n, 2);
  config_free(&c);
  ASSERT(strcmp(d.allowed_peers.v[0], "10.0.0.0/8") == 0);
  config_free(&d);
  return 0;
}

TEST_IMPL(config_validate_checks_addresses_and_titles) {
  static const char *const bad[][2] = {
      {"bind_address", "\"localhost\""},
      {"admin_bind", "\"1.2.3.999\""},
      {"allowed_peers", "[\"10.0.0.0/33\"]"},
      {"allowed_peers", "[\"example.org\"]"},
      {"allowed_peers", "[\"::1/129\"]"},
      {"allowed_peers", "[\"fd00::/+8\"]"},
      {"allowed_peers", "[\"fe80::1%eth0\"]"},
      {"allowed_peers", "[\"1:2:3:4:5:6:7:8:9\"]"},
      {"allowed_peers", "[\"10.0.0.0/\"]"},
      {"bind_address", "\"::1/128\""},
      {"bind_address", "\"[::1]\""},
      {"allowed_calling_ae", "[\"A\\\\B\"]"},
      {"ae_title", "\"    \""},
      {"sop_classes", "[\"1.2..3\"]"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    svc_config c;
    char json[128];
    snprintf(json, sizeof json, "{\"%s\": %s}", bad[i][0], bad[i][1]);
    ASSERT_OK(config_init(&c));
    ASSERT_OK(config_merge_json(&c, json, "t"));
    if (config_validate(&c) != CTP_EINVAL) {
      fprintf(stderr, "accepted %s\n", json);
      return 1;
    }
    config_free(&c);
  }
  return 0;
}

TEST_IMPL(config_addr_match) {
  ASSERT(config_addr_match("10.0.0.0/8", "10.1.2.3"));
  ASSERT(!config_addr_match("10.0.0.0/8", "11.0.0.1"));
  ASSERT(config_addr_match("127.0.0.1", "127.0.0.1"));
  ASSERT(!config_addr_match("127.0.0.1", "127.0.0.2"));
  ASSERT(config_addr_match("0.0.0.0/0", "8.8.8.8"));
  ASSERT(config_addr_match("192.168.1.0/24", "192.168.1.255"));
  ASSERT(!config_addr_match("192.168.1.0/24", "192.168.2.1"));
  ASSERT(!config_addr_match("10.0.0.0/8", "::1"));
  ASSERT(!config_addr_match("garbage", "10.0.0.1"));
  /* IPv6 addresses and blocks. */
  ASSERT(config_addr_match("::1", "::1"));
  ASSERT(config_addr_match("::1/128", "0:0:0:0:0:0:0:1"));
  ASSERT(!config_addr_match("::1", "::2"));
  ASSERT(config_addr_match("fd00::/8", "fd12:3456::7"));
  ASSERT(!config_addr_match("fd00::/8", "fe80::1"));
  ASSERT(config_addr_match("2001:db8::/32", "2001:db8:ffff::1"));
  ASSERT(!config_addr_match("2001:db8::/32", "2001:db9::1"));
  ASSERT(config_addr_match("2001:db8:1200::/39", "2001:db8:13ff::1")); /* mid-byte */
  ASSERT(!config_addr_match("2001:db8:1200::/39", "2001:db8:1400::1"));
  ASSERT(config_addr_match("::/0", "2a00::1"));
  ASSERT(config_addr_match("::/0", "10.1.2.3"));
  ASSERT(!config_addr_match("::1", "127.0.0.1"));
  ASSERT(!config_addr_match("fd00::/8", "10.1.2.3"));
  /* An IPv4 peer on an IPv6 socket (IPv4-mapped) is the IPv4 address, both
   * ways round; an IPv4 /0 is every IPv4 peer, and no IPv6 one. */
  ASSERT(config_addr_match("10.0.0.0/8", "::ffff:10.1.2.3"));
  ASSERT(config_addr_match("10.1.2.3", "::FFFF:10.1.2.3"));
  ASSERT(!config_addr_match("10.0.0.0/8", "::ffff:11.1.2.3"));
  ASSERT(config_addr_match("::ffff:10.0.0.0/104", "10.200.0.1"));
  ASSERT(config_addr_match("0.0.0.0/0", "::ffff:8.8.8.8"));
  ASSERT(!config_addr_match("0.0.0.0/0", "2a00::1"));
  /* Invalid patterns and peers never match. */
  ASSERT(!config_addr_match("::1/129", "::1"));
  ASSERT(!config_addr_match("10.0.0.0/33", "10.0.0.1"));
  ASSERT(!config_addr_match("fd00::/", "fd00::1"));
  ASSERT(!config_addr_match("fd00::/x", "fd00::1"));
  ASSERT(!config_addr_match(":::1", "::1"));
  ASSERT(!config_addr_match("::1", "::1/128")); /* a peer has no prefix */
  ASSERT(!config_addr_match("::1", "unknown"));
  return 0;
}

/* IPv6 entries pass validation like IPv4 ones. */
TEST_IMPL(config_accepts_ipv6_addresses) {
  svc_config c;
  ASSERT_OK(config_init(&c));
  ASSERT_OK(config_merge_json(&c,
                              "{\"bind_address\": \"::\", \"allowed_peers\": "
                              "[\"::1\", \"fd00::/8\", \"10.0.0.0/8\", "
                              "\"::ffff:192.168.0.0/112\"]}",
                              "t"));
  ASSERT_OK(config_validate(&c));
  ASSERT_OK(config_set(&c, "bind_address", "fd00::2"));
  ASSERT_OK(config_validate(&c));
  ASSERT_OK(config_set(&c, "bind_address", "1234:5678:9abc:def0:1234:5678:9abc:def0"));
  ASSERT_OK(config_validate(&c));
  ASSERT_OK(config_set(&c, "bind_address", "127.0.0.1"));
  ASSERT_OK(config_validate(&c));
  config_free(&c);
  return 0;
}

/* The schema lists every key of the table with its default and bounds. */
TEST_IMPL(config_schema_follows_the_table) {
  char *txt = config_schema_json();
  cJSON *root = cJSON_Parse(txt);
  ASSERT(root);
  ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(root, "additionalProperties")));
  cJSON *props = cJSON_GetObjectItem(root, "properties");
  ASSERT_EQ_INT(cJSON_GetArraySize(props), svc_config_count);
  for (int i = 0; i < svc_config_count; i++) {
    const cfg_entry *e = &svc_config_table[i];
    cJSON *p = cJSON_GetObjectItem(props, e->name);
    ASSERT(p);
    cJSON *def = cJSON_Parse(e->def);
    ASSERT(cJSON_Compare(cJSON_GetObjectItem(p, "default"), def, 1));
    cJSON_Delete(def);
    ASSERT(cJSON_IsBool(cJSON_GetObjectItem(p, "x-reloadable")));
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(p, "description")));
    if (e->type == CFG_INT)
      ASSERT_NEAR(cJSON_GetObjectItem(p, "maximum")->valuedouble, e->max, 0);
  }
  cJSON_Delete(root);
  free(txt);
  /* The effective config dump has the same keys. */
  svc_config c;
  ASSERT_OK(config_init(&c));
  txt = config_to_json(&c);
  root = cJSON_Parse(txt);
  ASSERT_EQ_INT(cJSON_GetArraySize(root), svc_config_count);
  ASSERT_OK(config_merge_json(&c, txt, "round trip"));
  cJSON_Delete(root);
  free(txt);
  config_free(&c);
  return 0;
}

TEST_IMPL(config_reload_keeps_static_keys) {
  svc_config run, next;
  ASSERT_OK(config_init(&run));
  ASSERT_OK(config_init(&next));
  ASSERT_OK(config_set(&next, "port", "2000"));
  ASSERT_OK(config_set(&next, "stable_seconds", "3"));
  ASSERT_OK(config_set(&next, "min_free_bytes", "5"));
  char changed[128];
  config_keep_static(&next, &run, changed, sizeof changed);
  ASSERT_EQ_INT(next.port, 11112);          /* needs a restart */
  ASSERT_NEAR(next.stable_seconds, 3, 0);   /* reloadable */
  ASSERT_EQ_INT(next.min_free_bytes, 5);    /* reloadable */
  ASSERT(strcmp(changed, "port") == 0);
  config_free(&run);
  config_free(&next);
  return 0;
}

/* Destinations: the two forms, what is refused and why; the folder
 * destination's atomic copy; C-STORE status words. */
TEST_IMPL(scu_destinations_and_folder_copy) {
  ctp_dest d;
  ASSERT_OK(ctp_dest_parse("PACS@10.0.0.5:104", &d));
  ASSERT(d.kind == CTP_DEST_SCP && strcmp(d.ae_title, "PACS") == 0 &&
         strcmp(d.host, "10.0.0.5") == 0 && d.port == 104);
  ASSERT_OK(ctp_dest_parse("MY AE@pacs-1.example.org:11112", &d));
  ASSERT(strcmp(d.ae_title, "MY AE") == 0 && d.port == 11112);
  ASSERT_OK(ctp_dest_parse("dir:/var/spool/results", &d));
  ASSERT(d.kind == CTP_DEST_DIR && strcmp(d.dir, "/var/spool/results") == 0);
  static const struct {
    const char *text, *mentions;
  } bad[] = {{"PACS", "not understood"},        {"@host:104", "AE title"},
             {"ABCDEFGHIJKLMNOPQ@h:104", "AE title"}, {"PACS@:104", "host"},
             {"PACS@h:0", "port"},              {"PACS@h:70000", "port"},
             {"PACS@h:", "port"},               {"PACS@h/x:104", "host"},
             {"dir:relative", "absolute"},      {"", "not understood"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ASSERT_EQ_INT(ctp_dest_parse(bad[i].text, &d), CTP_EINVAL);
    if (!strstr(ctp_last_error(), bad[i].mentions)) {
      fprintf(stderr, "\"%s\": %s\n", bad[i].text, ctp_last_error());
      return 1;
    }
  }
  /* The configuration refuses a bad destination by its key. */
  svc_config c;
  ASSERT_OK(config_init(&c));
  ASSERT_OK(config_set(&c, "destinations", "[\"PACS@h:104\", \"dir:/x\"]"));
  ASSERT_OK(config_validate(&c));
  ASSERT_OK(config_set(&c, "destinations", "[\"PACS@h\"]"));
  ASSERT_EQ_INT(config_validate(&c), CTP_EINVAL);
  ASSERT(strstr(ctp_last_error(), "destinations") && strstr(ctp_last_error(), "PACS@h"));
  ASSERT_OK(config_set(&c, "destinations", "[]"));
  ASSERT_OK(config_set(&c, "uid_root", "1.2..3"));
  ASSERT_EQ_INT(config_validate(&c), CTP_EINVAL);
  ASSERT_EQ_INT(config_set(&c, "report_masking", "1"), CTP_EINVAL);
  ASSERT_OK(config_set(&c, "report_masking", "true"));
  ASSERT_EQ_INT(c.report_masking, 1);
  config_free(&c);
  /* Folder copy: the file arrives whole, nothing temporary is left. */
  char src[512], dir[512], dst[600];
  snprintf(src, sizeof src, "%s/a.dcm", test_tmpdir());
  snprintf(dir, sizeof dir, "%s/out/sub", test_tmpdir());
  ASSERT_OK(ctp_file_write_atomic(src, "DICM-ish", 8));
  const char *files[2] = {src, "/nonexistent/b.dcm"};
  ctp_scu_result res[2];
  ASSERT_OK(ctp_scu_copy_files(dir, files, 2, res));
  ASSERT_EQ_INT(res[0].rc, 0);
  ASSERT_EQ_INT(res[1].rc, CTP_EIO);
  ASSERT(strstr(res[1].error, "/nonexistent/b.dcm"));
  snprintf(dst, sizeof dst, "%s/a.dcm", dir);
  unsigned char *buf = NULL;
  size_t len = 0;
  ASSERT_OK(ctp_file_read(dst, &buf, &len));
  ASSERT(len == 8 && memcmp(buf, "DICM-ish", 8) == 0);
  free(buf);
  ASSERT_EQ_INT(ctp_scu_copy_files("relative", files, 1, res), CTP_EINVAL);
  /* Status words. */
  ASSERT(strstr(ctp_scu_status_str(0xA701), "out of resources"));
  ASSERT(strstr(ctp_scu_status_str(0xC123), "cannot understand"));
  ASSERT(strstr(ctp_scu_status_str(0x0122), "SOP class not supported"));
  /* Sending to a port where nothing listens: a network error, per file. */
  ctp_scu_opts o = {"CTPHASE", "PACS", "127.0.0.1", 1, 2, 2, 2, 0};
  files[0] = "tests/corpus/dicom/valid.dcm";
  ASSERT_EQ_INT(ctp_scu_send_files(&o, files, 1, res), CTP_ENET);
  ASSERT_EQ_INT(res[0].rc, CTP_ENET);
  ASSERT(strstr(res[0].error, "cannot associate with PACS@127.0.0.1:1"));
  /* A peer that takes the connection and never answers: the ACSE timeout
   * ends the wait. */
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t slen = sizeof sa;
  ASSERT(ls >= 0 && bind(ls, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(ls, 4) == 0);
  ASSERT(getsockname(ls, (struct sockaddr *)&sa, &slen) == 0);
  o.port = ntohs(sa.sin_port);
  o.connect_timeout = o.acse_timeout = o.dimse_timeout = 1;
  double t0 = ctp_now();
  ASSERT_EQ_INT(ctp_scu_send_files(&o, files, 1, res), CTP_ENET);
  double waited = ctp_now() - t0;
  close(ls);
  if (waited > 5) {
    fprintf(stderr, "a silent peer held the sender for %.1f s\n", waited);
    return 1;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* UIDs and paths                                                       */
/* ------------------------------------------------------------------ */

TEST_IMPL(uid_validation) {
  static const char *const good[] = {
      "1.2.840.10008.5.1.4.1.1.2", "2.25.314159265358979323846264338327950288",
      "1", "0.0", "1.2.3.04"};
  static const char *const bad[] = {
      "", ".", "..", "1..2", ".1", "1.", "1.2/3", "../etc/passwd", "1.2.a",
      "1.2 ", " 1.2", "1.2\n", "1.2\\3",
      "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.2"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) ASSERT(ctp_uid_valid(good[i]));
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (ctp_uid_valid(bad[i])) {
      fprintf(stderr, "accepted \"%s\"\n", bad[i]);
      return 1;
    }
  ASSERT(!ctp_uid_valid(NULL));
  char path[256];
  ASSERT_OK(ctp_instance_path("1.2", "1.2.3", "1.2.3.4", path, sizeof path));
  ASSERT(strcmp(path, "instances/1.2/1.2.3/1.2.3.4.dcm") == 0);
  ASSERT_EQ_INT(ctp_instance_path("1.2", "..", "1.2.3.4", path, sizeof path), CTP_EINVAL);
  ASSERT_EQ_INT(ctp_instance_path("1.2", "1.2.3", "x/../../etc", path, sizeof path),
                CTP_EINVAL);
  ASSERT_EQ_INT(ctp_instance_path("1.2", "1.2.3", "1.2.3.4", path, 10), CTP_ERANGE);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Store                                                                */
/* ------------------------------------------------------------------ */

static ctp_store *open_tmp_store(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
  ctp_store *st = NULL;
  log_set_level(LOG_ERROR);
  if (ctp_store_open(&st, path, 0) != 0) {
    fprintf(stderr, "open %s: %s\n", path, ctp_last_error());
    return NULL;
  }
  return st;
}

static int add(ctp_store *st, const char *series, const char *sop, double t,
               int *added) {
  char path[256];
  snprintf(path, sizeof path, "instances/1.2/%s/%s.dcm", series, sop);
  ctp_store_instance in = {sop, "1.2.840.10008.5.1.4.1.1.2", "1.2", series,
                           "1.2.840.10008.1.2.1", path, "SCU", 1000, 1, t};
  return ctp_store_instance_add(st, &in, added);
}

/* The state of a series as the API reports it. */
static int series_state(ctp_store *st, const char *uid) {
  char *json = NULL;
  if (ctp_store_series_json(st, uid, &json) != 0) return -1;
  cJSON *o = cJSON_Parse(json);
  int s = ctp_series_state_parse(cJSON_GetObjectItem(o, "state")->valuestring);
  cJSON_Delete(o);
  free(json);
  return s;
}

static int job_state(ctp_store *st, int64_t id) {
  char *json = NULL;
  if (ctp_store_job_json(st, id, &json) != 0) return -1;
  cJSON *o = cJSON_Parse(json);
  int s = ctp_job_state_parse(cJSON_GetObjectItem(o, "state")->valuestring);
  cJSON_Delete(o);
  free(json);
  return s;
}

/* Removes whitespace and lower-cases, to compare CREATE statements. */
static void squash(const char *in, char *out, size_t n) {
  size_t k = 0;
  for (; *in && k + 1 < n; in++)
    if (*in != ' ' && *in != '\n' && *in != '\t' && *in != '\r')
      out[k++] = (char)tolower((unsigned char)*in);
  out[k] = 0;
}

/* name -> squashed sql of every schema object, sorted by name. */
static int schema_of(sqlite3 *db, char *out, size_t n) {
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(db,
                         "SELECT type || ':' || name || ':' || coalesce(sql, '') "
                         "FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                         "ORDER BY name", -1, &s, NULL) != SQLITE_OK)
    return -1;
  size_t k = 0;
  out[0] = 0;
  while (sqlite3_step(s) == SQLITE_ROW && k + 1 < n) {
    squash((const char *)sqlite3_column_text(s, 0), out + k, n - k);
    k += strlen(out + k);
    if (k + 1 < n) out[k++] = '|', out[k] = 0;
  }
  sqlite3_finalize(s);
  return 0;
}

TEST_IMPL(store_schema_matches_file) {
  ctp_store *st = open_tmp_store("a.db");
  ASSERT(st);
  ASSERT_EQ_INT(ctp_store_version(st), CTP_STORE_SCHEMA_VERSION);
  ctp_store_close(st);
  char path[512];
  snprintf(path, sizeof path, "%s/a.db", test_tmpdir());
  sqlite3 *made, *doc;
  ASSERT(sqlite3_open(path, &made) == SQLITE_OK);
  ASSERT(sqlite3_open(":memory:", &doc) == SQLITE_OK);
  unsigned char *sql;
  size_t len;
  ASSERT_OK(ctp_file_read("schemas/store.sql", &sql, &len));
  char *err = NULL;
  if (sqlite3_exec(doc, (const char *)sql, NULL, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "schemas/store.sql: %s\n", err);
    return 1;
  }
  free(sql);
  static char a[16384], b[16384];
  ASSERT(schema_of(made, a, sizeof a) == 0 && schema_of(doc, b, sizeof b) == 0);
  if (strcmp(a, b) != 0) {
    fprintf(stderr, "store.c creates:\n%s\nschemas/store.sql says:\n%s\n", a, b);
    return 1;
  }
  sqlite3_stmt *s;
  sqlite3_prepare_v2(doc, "PRAGMA user_version", -1, &s, NULL);
  ASSERT(sqlite3_step(s) == SQLITE_ROW);
  ASSERT_EQ_INT(sqlite3_column_int(s, 0), CTP_STORE_SCHEMA_VERSION);
  sqlite3_finalize(s);
  sqlite3_close(made);
  sqlite3_close(doc);
  return 0;
}

TEST_IMPL(store_refuses_newer_schema) {
  char path[512];
  snprintf(path, sizeof path, "%s/new.db", test_tmpdir());
  sqlite3 *db;
  ASSERT(sqlite3_open(path, &db) == SQLITE_OK);
  ASSERT(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_close(db);
  ctp_store *st = NULL;
  ASSERT_EQ_INT(ctp_store_open(&st, path, 0), CTP_EDB);
  ASSERT(strstr(ctp_last_error(), "newer"));
  /* And the CLI's no-migrate mode refuses an empty file. */
  snprintf(path, sizeof path, "%s/empty.db", test_tmpdir());
  ASSERT(sqlite3_open(path, &db) == SQLITE_OK);
  sqlite3_close(db);
  ASSERT_EQ_INT(ctp_store_open(&st, path, CTP_STORE_NO_MIGRATE), CTP_EDB);
  ASSERT(st == NULL);
  return 0;
}

TEST_IMPL(store_transition_tables) {
  /* Every series state may go back to receiving. */
  for (int s = 0; s < CTP_SERIES_NSTATES; s++)
    ASSERT(s == CTP_SERIES_RECEIVING ||
           ctp_series_transition_ok(s, CTP_SERIES_RECEIVING));
  ASSERT(ctp_series_transition_ok(CTP_SERIES_RECEIVING, CTP_SERIES_STABLE));
  ASSERT(!ctp_series_transition_ok(CTP_SERIES_RECEIVING, CTP_SERIES_RUNNING));
  ASSERT(!ctp_series_transition_ok(CTP_SERIES_STABLE, CTP_SERIES_DONE));
  ASSERT(ctp_series_transition_ok(CTP_SERIES_RUNNING, CTP_SERIES_QUEUED));
  ASSERT(ctp_series_transition_ok(CTP_SERIES_FAILED, CTP_SERIES_QUEUED));
  ASSERT(!ctp_series_transition_ok(CTP_SERIES_DONE, CTP_SERIES_DONE));
  ASSERT(ctp_job_transition_ok(CTP_JOB_QUEUED, CTP_JOB_RUNNING));
  ASSERT(ctp_job_transition_ok(CTP_JOB_QUEUED, CTP_JOB_SKIPPED));
  ASSERT(!ctp_job_transition_ok(CTP_JOB_QUEUED, CTP_JOB_DONE));
  ASSERT(ctp_job_transition_ok(CTP_JOB_RUNNING, CTP_JOB_QUEUED));
  ASSERT(!ctp_job_transition_ok(CTP_JOB_DONE, CTP_JOB_QUEUED));
  ASSERT(!ctp_job_transition_ok(CTP_JOB_FAILED, CTP_JOB_RUNNING));
  ASSERT(ctp_outbound_transition_ok(CTP_OUTBOUND_PENDING, CTP_OUTBOUND_SENDING));
  ASSERT(ctp_outbound_transition_ok(CTP_OUTBOUND_SENDING, CTP_OUTBOUND_SENT));
  /* A sent or failed object goes back to pending only by a resend. */
  ASSERT(ctp_outbound_transition_ok(CTP_OUTBOUND_SENT, CTP_OUTBOUND_PENDING));
  ASSERT(!ctp_outbound_transition_ok(CTP_OUTBOUND_SENT, CTP_OUTBOUND_SENDING));
  ASSERT(!ctp_outbound_transition_ok(CTP_OUTBOUND_PENDING, CTP_OUTBOUND_SENT));
  ASSERT(strcmp(ctp_series_state_name(CTP_SERIES_SKIPPED), "skipped") == 0);
  ASSERT_EQ_INT(ctp_job_state_parse("failed"), CTP_JOB_FAILED);
  ASSERT_EQ_INT(ctp_job_state_parse("nope"), -1);
  return 0;
}

/* A series from first instance to done, then back for more. */
TEST_IMPL(store_series_life_cycle) {
  ctp_store *st = open_tmp_store("life.db");
  ASSERT(st);
  int added, njobs, found;
  double due;
  ASSERT_OK(add(st, "1.2.3", "1.2.3.1", 100.0, &added));
  ASSERT_EQ_INT(added, 1);
  ASSERT_OK(add(st, "1.2.3", "1.2.3.2", 101.0, &added));
  ASSERT_OK(add(st, "1.2.3", "1.2.3.2", 101.5, &added));
  ASSERT_EQ_INT(added, 0); /* the same instance again: stored once */
  int present = 0;
  ASSERT_OK(ctp_store_instance_present(st, "1.2.3.2", &present));
  ASSERT_EQ_INT(present, 1);
  ASSERT_EQ_INT(series_state(st, "1.2.3"), CTP_SERIES_RECEIVING);
  /* Not yet stable 5 s after the last arrival; due in 5 s. */
  ASSERT_OK(ctp_store_series_promote(st, 106.0, 10.0, &njobs, &due));
  ASSERT_EQ_INT(njobs, 0);
  ASSERT_NEAR(due, 5.0, 1e-6);
  ASSERT_OK(ctp_store_series_promote(st, 111.0, 10.0, &njobs, &due));
  ASSERT_EQ_INT(njobs, 1);
  ASSERT_NEAR(due, -1, 0);
  ASSERT_EQ_INT(series_state(st, "1.2.3"), CTP_SERIES_QUEUED);
  ctp_store_job job;
  ASSERT_OK(ctp_store_job_claim(st, 112.0, &job, &found));
  ASSERT_EQ_INT(found, 1);
  ASSERT_EQ_INT(job.attempts, 1);
  ASSERT_EQ_INT(job.instances, 2);
  ASSERT(strcmp(job.study_uid, "1.2") == 0);
  ASSERT_EQ_INT(series_state(st, "1.2.3"), CTP_SERIES_RUNNING);
  ASSERT_OK(ctp_store_job_claim(st, 112.0, &job, &found));
  ASSERT_EQ_INT(found, 0);
  ctp_store_job_end end = {.state = CTP_JOB_DONE, .result_json = "[{\"phase\":\"cm\"}]",
                           .model_sha256 = "abc", .duration_s = 1.5, .infer_s = 1.0};
  ASSERT_OK(ctp_store_job_finish(st, 1, 113.0, &end));
  ASSERT_EQ_INT(series_state(st, "1.2.3"), CTP_SERIES_DONE);
  char *json = NULL;
  ASSERT_OK(ctp_store_job_json(st, 1, &json));
  ASSERT(strstr(json, "\"result\":[{\"phase\":\"cm\"}]"));
  free(json);
  /* Finishing twice is refused by the life cycle. */
  ASSERT_EQ_INT(ctp_store_job_finish(st, 1, 114.0, &end), CTP_ESTATE);
  /* More instances after the job ran: receiving again, then a new job. */
  ASSERT_OK(add(st, "1.2.3", "1.2.3.3", 200.0, &added));
  ASSERT_EQ_INT(series_state(st, "1.2.3"), CTP_SERIES_RECEIVING);
  ASSERT_OK(ctp_store_series_promote(st, 211.0, 10.0, &njobs, &due));
  ASSERT_EQ_INT(njobs, 1);
  ASSERT_OK(ctp_store_job_claim(st, 212.0, &job, &found));
  ASSERT_EQ_INT(job.id, 2);
  ASSERT_EQ_INT(job.instances, 3);
  ASSERT_EQ_INT(job_state(st, 1), CTP_JOB_DONE); /* the old result stays */
  ctp_store_counts c;
  ASSERT_OK(ctp_store_count(st, &c));
  ASSERT_EQ_INT(c.instances, 3);
  ASSERT_EQ_INT(c.jobs[CTP_JOB_DONE], 1);
  ASSERT_EQ_INT(c.jobs[CTP_JOB_RUNNING], 1);
  ASSERT_EQ_INT(c.series[CTP_SERIES_RUNNING], 1);
  ctp_store_close(st);
  return 0;
}

/* A job still queued when more instances arrive is superseded. */
TEST_IMPL(store_supersedes_queued_job) {
  ctp_store *st = open_tmp_store("sup.db");
  ASSERT(st);
  int added, njobs;
  double due;
  ASSERT_OK(add(st, "1.5", "1.5.1", 10.0, &added));
  ASSERT_OK(ctp_store_series_promote(st, 30.0, 10.0, &njobs, &due));
  ASSERT_EQ_INT(job_state(st, 1), CTP_JOB_QUEUED);
  ASSERT_OK(add(st, "1.5", "1.5.2", 31.0, &added));
  ASSERT_EQ_INT(job_state(st, 1), CTP_JOB_SKIPPED);
  ASSERT_EQ_INT(series_state(st, "1.5"), CTP_SERIES_RECEIVING);
  char *json;
  ASSERT_OK(ctp_store_job_json(st, 1, &json));
  ASSERT(strstr(json, "superseded"));
  free(json);
  ctp_store_close(st);
  return 0;
}

/* A crash leaves a job running: recovery re-queues it, or fails it once it
 * has run job_max_attempts times. */
TEST_IMPL(store_recovery_requeues_running_jobs) {
  ctp_store *st = open_tmp_store("rec.db");
  ASSERT(st);
  int added, njobs, found, requeued, failed;
  double due;
  ctp_store_job job;
  ASSERT_OK(add(st, "1.7", "1.7.1", 10.0, &added));
  ASSERT_OK(ctp_store_series_promote(st, 30.0, 10.0, &njobs, &due));
  ASSERT_OK(ctp_store_job_claim(st, 31.0, &job, &found));
  ctp_store_close(st);
  st = open_tmp_store("rec.db"); /* "restart" */
  ASSERT(st);
  ASSERT_OK(ctp_store_recover(st, 40.0, 2, &requeued, &failed));
  ASSERT_EQ_INT(requeued, 1);
  ASSERT_EQ_INT(failed, 0);
  ASSERT_EQ_INT(job_state(st, job.id), CTP_JOB_QUEUED);
  ASSERT_EQ_INT(series_state(st, "1.7"), CTP_SERIES_QUEUED);
  ASSERT_OK(ctp_store_job_claim(st, 41.0, &job, &found));
  ASSERT_EQ_INT(job.attempts, 2);
  ASSERT_OK(ctp_store_recover(st, 50.0, 2, &requeued, &failed));
  ASSERT_EQ_INT(failed, 1);
  ASSERT_EQ_INT(job_state(st, job.id), CTP_JOB_FAILED);
  ASSERT_EQ_INT(series_state(st, "1.7"), CTP_SERIES_FAILED);
  /* ctphase jobs retry: a new job; retrying a queued one is refused. */
  int64_t new_id = 0;
  ASSERT_OK(ctp_store_job_retry(st, job.id, 60.0, &new_id));
  ASSERT_EQ_INT(new_id, job.id + 1);
  ASSERT_EQ_INT(series_state(st, "1.7"), CTP_SERIES_QUEUED);
  ASSERT_EQ_INT(ctp_store_job_retry(st, new_id, 61.0, &new_id), CTP_ESTATE);
  ASSERT_EQ_INT(ctp_store_job_retry(st, 999, 61.0, &new_id), CTP_ENOENT);
  ctp_store_close(st);
  return 0;
}

TEST_IMPL(store_retention_keeps_records) {
  ctp_store *st = open_tmp_store("ret.db");
  ASSERT(st);
  int added, njobs, found;
  double due;
  ctp_store_job job;
  ASSERT_OK(add(st, "1.9", "1.9.1", 10.0, &added));
  ASSERT_OK(add(st, "1.9", "1.9.2", 10.0, &added));
  ASSERT_OK(ctp_store_series_promote(st, 30.0, 10.0, &njobs, &due));
  ASSERT_OK(ctp_store_job_claim(st, 31.0, &job, &found));
  char **due_list = NULL, **paths = NULL;
  int n = 0, np = 0;
  ASSERT_OK(ctp_store_retention_due(st, 1000.0, 10, &due_list, &n));
  ASSERT_EQ_INT(n, 0); /* still running */
  ctp_store_strings_free(due_list, n);
  ctp_store_job_end end = {.state = CTP_JOB_DONE, .result_json = "[]", .model_sha256 = "abc",
                           .duration_s = 1, .infer_s = 1};
  ASSERT_OK(ctp_store_job_finish(st, job.id, 32.0, &end));
  ASSERT_OK(ctp_store_retention_due(st, 31.0, 10, &due_list, &n));
  ASSERT_EQ_INT(n, 0); /* done at 32, retention ends at 31: not yet */
  ctp_store_strings_free(due_list, n);
  ASSERT_OK(ctp_store_retention_due(st, 33.0, 10, &due_list, &n));
  ASSERT_EQ_INT(n, 1);
  ASSERT_OK(ctp_store_series_paths(st, due_list[0], &paths, &np));
  ASSERT_EQ_INT(np, 2);
  ASSERT_OK(ctp_store_files_removed(st, due_list[0], paths, np, 40.0));
  ctp_store_strings_free(paths, np);
  ASSERT_OK(ctp_store_series_paths(st, due_list[0], &paths, &np));
  ASSERT_EQ_INT(np, 0);
  ctp_store_strings_free(paths, np);
  ctp_store_strings_free(due_list, n);
  ASSERT_OK(ctp_store_retention_due(st, 100.0, 10, &due_list, &n));
  ASSERT_EQ_INT(n, 0);
  ctp_store_strings_free(due_list, n);
  ctp_store_counts c;
  ASSERT_OK(ctp_store_count(st, &c));
  ASSERT_EQ_INT(c.instances, 2); /* the records stay */
  ASSERT_EQ_INT(c.instances_present, 0);
  /* The same instance sent again after removal is stored again. */
  int present = 1;
  ASSERT_OK(ctp_store_instance_present(st, "1.9.1", &present));
  ASSERT_EQ_INT(present, 0);
  ASSERT_OK(add(st, "1.9", "1.9.1", 50.0, &added));
  ASSERT_EQ_INT(added, 1);
  ASSERT_EQ_INT(series_state(st, "1.9"), CTP_SERIES_RECEIVING);
  ctp_store_close(st);
  return 0;
}

TEST_IMPL(store_jobs_json_and_filters) {
  ctp_store *st = open_tmp_store("json.db");
  ASSERT(st);
  int added, njobs;
  double due;
  ASSERT_OK(add(st, "1.11", "1.11.1", 10.0, &added));
  ASSERT_OK(add(st, "1.12", "1.12.1", 10.0, &added));
  ASSERT_OK(ctp_store_series_promote(st, 30.0, 10.0, &njobs, &due));
  ASSERT_EQ_INT(njobs, 2);
  char *json;
  ASSERT_OK(ctp_store_jobs_json(st, "queued", 10, &json));
  cJSON *a = cJSON_Parse(json);
  ASSERT_EQ_INT(cJSON_GetArraySize(a), 2);
  ASSERT_EQ_INT(cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "id")->valueint, 2);
  cJSON_Delete(a);
  free(json);
  ASSERT_OK(ctp_store_jobs_json(st, "done", 10, &json));
  ASSERT(strcmp(json, "[]") == 0);
  free(json);
  ASSERT_EQ_INT(ctp_store_series_json(st, "9.9", &json), CTP_ENOENT);
  ASSERT_OK(ctp_store_series_json(st, "1.12", &json));
  a = cJSON_Parse(json);
  ASSERT_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(a, "jobs")), 1);
  cJSON_Delete(a);
  free(json);
  ctp_store_close(st);
  return 0;
}

/* Outbound rows: made with the job, one per object per destination;
 * claimed per destination; retried, given up, recovered, re-sent; a
 * later job of the series takes the same objects over. */
TEST_IMPL(store_outbound_life_cycle) {
  ctp_store *st = open_tmp_store("out.db");
  ASSERT(st);
  int added = 0, njobs = 0, found = 0, n = 0, stale = 0;
  double due = 0;
  ASSERT_OK(add(st, "1.2.3", "1.2.3.1", 100.0, &added));
  ASSERT_OK(ctp_store_series_promote(st, 111.0, 10.0, &njobs, &due));
  ctp_store_job job;
  ASSERT_OK(ctp_store_job_claim(st, 112.0, &job, &found));
  ctp_store_object objs[2] = {
      {"sr", "1.2.840.10008.5.1.4.1.1.88.34", "2.25.1", "2.25.10", "outbound/1.2.3/2.25.1.dcm"},
      {"sc", "1.2.840.10008.5.1.4.1.1.7", "2.25.2", "2.25.20", "outbound/1.2.3/2.25.2.dcm"}};
  const char *dests[2] = {"PACS@127.0.0.1:104", "dir:/tmp/x"};
  ctp_store_job_end end = {.state = CTP_JOB_DONE, .result_json = "[]", .objects = objs,
                           .nobjects = 2, .destinations = dests, .ndestinations = 2};
  ASSERT_OK(ctp_store_job_finish(st, job.id, 113.0, &end));
  ctp_store_counts c;
  ASSERT_OK(ctp_store_count(st, &c));
  ASSERT_EQ_INT(c.outbound[CTP_OUTBOUND_PENDING], 4);
  /* Nothing is due before its time; then one destination at a time. */
  ctp_store_outbound rows[8];
  ASSERT_OK(ctp_store_outbound_claim(st, 112.0, 8, rows, &n));
  ASSERT_EQ_INT(n, 0);
  ASSERT_OK(ctp_store_outbound_claim(st, 120.0, 8, rows, &n));
  ASSERT_EQ_INT(n, 2);
  ASSERT(strcmp(rows[0].destination, rows[1].destination) == 0);
  ASSERT_EQ_INT(rows[0].attempts, 1);
  ASSERT(strcmp(rows[0].sop_class_uid, "1.2.840.10008.5.1.4.1.1.88.34") == 0);
  ctp_store_outbound_end ends[2] = {
      {rows[0].id, CTP_OUTBOUND_SENT, NULL, 0},
      {rows[1].id, CTP_OUTBOUND_PENDING, "connection refused", 150.0}};
  ASSERT_OK(ctp_store_outbound_finish(st, 121.0, ends, 2, &stale));
  ASSERT_EQ_INT(stale, 0);
  ASSERT_OK(ctp_store_outbound_next_due(st, 121.0, &due));
  ASSERT_NEAR(due, 0, 0); /* the other destination's rows are due */
  ctp_store_outbound rows2[8];
  ASSERT_OK(ctp_store_outbound_claim(st, 121.0, 8, rows2, &n));
  ASSERT_EQ_INT(n, 2);
  ASSERT(strcmp(rows2[0].destination, rows[0].destination) != 0);
  ctp_store_outbound_end gone[2] = {{rows2[0].id, CTP_OUTBOUND_FAILED, "rejected", 0},
                                    {rows2[1].id, CTP_OUTBOUND_FAILED, "rejected", 0}};
  ASSERT_OK(ctp_store_outbound_finish(st, 122.0, gone, 2, NULL));
  ASSERT_OK(ctp_store_outbound_next_due(st, 122.0, &due));
  ASSERT_NEAR(due, 28.0, 1e-6);
  ASSERT_OK(ctp_store_outbound_claim(st, 150.0, 8, rows, &n));
  ASSERT_EQ_INT(n, 1);
  ASSERT_EQ_INT(rows[0].attempts, 2);
  /* A crash while sending: recovery puts it back. */
  ctp_store_close(st);
  st = open_tmp_store("out.db");
  int requeued = 0;
  ASSERT_OK(ctp_store_outbound_recover(st, 160.0, &requeued));
  ASSERT_EQ_INT(requeued, 1);
  /* A row re-queued while it was being sent is not marked sent. */
  ASSERT_OK(ctp_store_outbound_claim(st, 160.0, 8, rows, &n));
  ASSERT_EQ_INT(n, 1);
  ASSERT_OK(ctp_store_outbound_resend(st, job.id, 161.0, &n));
  ASSERT_EQ_INT(n, 4);
  ends[0] = (ctp_store_outbound_end){rows[0].id, CTP_OUTBOUND_SENT, NULL, 0};
  ASSERT_OK(ctp_store_outbound_finish(st, 162.0, ends, 1, &stale));
  ASSERT_EQ_INT(stale, 1);
  ASSERT_OK(ctp_store_count(st, &c));
  ASSERT_EQ_INT(c.outbound[CTP_OUTBOUND_PENDING], 4);
  char *json = NULL;
  ASSERT_OK(ctp_store_job_json(st, job.id, &json));
  cJSON *o = cJSON_Parse(json);
  free(json);
  cJSON *out = cJSON_GetObjectItem(o, "outbound");
  ASSERT_EQ_INT(cJSON_GetArraySize(out), 4);
  ASSERT(strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(out, 0), "state")->valuestring,
                "pending") == 0);
  cJSON_Delete(o);
  /* Resend of an unknown job, or of one without rows. */
  ASSERT_EQ_INT(ctp_store_outbound_resend(st, 99, 170.0, &n), CTP_ENOENT);
  /* The series again: the same objects belong to the new job, once. */
  ASSERT_OK(ctp_store_job_retry(st, job.id, 180.0, &job.id));
  ASSERT_OK(ctp_store_job_claim(st, 181.0, &job, &found));
  ASSERT_OK(ctp_store_job_finish(st, job.id, 182.0, &end));
  ASSERT_OK(ctp_store_count(st, &c));
  ASSERT_EQ_INT(c.outbound[CTP_OUTBOUND_PENDING], 4);
  ASSERT_EQ_INT(ctp_store_outbound_resend(st, 1, 183.0, &n), CTP_ENOENT);
  ASSERT_OK(ctp_store_outbound_resend(st, job.id, 183.0, &n));
  ASSERT_EQ_INT(n, 4);
  /* An unreachable destination: its pending rows wait, the others not. */
  ASSERT_OK(ctp_store_outbound_defer(st, "dir:/tmp/x", 500.0, &n));
  ASSERT_EQ_INT(n, 2);
  ASSERT_OK(ctp_store_outbound_claim(st, 400.0, 8, rows, &n));
  ASSERT_EQ_INT(n, 2);
  ASSERT(strcmp(rows[0].destination, "PACS@127.0.0.1:104") == 0);
  ASSERT_OK(ctp_store_outbound_claim(st, 400.0, 8, rows, &n));
  ASSERT_EQ_INT(n, 0);
  ctp_store_close(st);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Log and metrics                                                      */
/* ------------------------------------------------------------------ */

static int evaluated;
static int side_effect(void) { return ++evaluated; }

/* The whole file as a string (malloc'd), or NULL. */
static char *read_log(const char *path) {
  unsigned char *buf = NULL;
  size_t n = 0;
  if (ctp_file_read(path, &buf, &n) != 0) return NULL;
  char *txt = malloc(n + 1);
  if (txt) memcpy(txt, buf, n + 1);
  free(buf);
  return txt;
}

TEST_IMPL(log_json_lines_and_threshold) {
  char path[512];
  snprintf(path, sizeof path, "%s/t.log", test_tmpdir());
  ASSERT_OK(log_open(path, LOG_FORMAT_JSON, LOG_INFO));
  evaluated = 0;
  LOG(LOG_DEBUG, "hidden", LF_INT("x", side_effect()));
  ASSERT_EQ_INT(evaluated, 0); /* nothing formatted below the threshold */
  LOG(LOG_WARN, "shown", LF_INT("n", 7), LF_STR("s", "a \"quoted\"\nline"),
      LF_NUM("t", 0.25), LF_BOOL("b", 1));
  static char big[6000];
  memset(big, 'x', sizeof big - 1);
  LOG(LOG_INFO, "long", LF_INT("before", 1), LF_STR("big", big));
  log_close();
  char *txt = read_log(path);
  ASSERT(txt);
  char *second = strchr(txt, '\n');
  ASSERT(second);
  *second++ = 0;
  cJSON *o = cJSON_Parse(txt);
  ASSERT(o);
  ASSERT(strcmp(cJSON_GetObjectItem(o, "event")->valuestring, "shown") == 0);
  ASSERT(strcmp(cJSON_GetObjectItem(o, "level")->valuestring, "warn") == 0);
  ASSERT(strcmp(cJSON_GetObjectItem(o, "s")->valuestring, "a \"quoted\"\nline") == 0);
  ASSERT_EQ_INT(cJSON_GetObjectItem(o, "n")->valueint, 7);
  ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(o, "b")));
  ASSERT(cJSON_IsString(cJSON_GetObjectItem(o, "ts")));
  cJSON_Delete(o);
  /* A line too long for the buffer drops its last field, stays JSON. */
  char *end = strchr(second, '\n');
  ASSERT(end && end[1] == 0);
  *end = 0;
  o = cJSON_Parse(second);
  ASSERT(o);
  ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(o, "truncated")));
  ASSERT_EQ_INT(cJSON_GetObjectItem(o, "before")->valueint, 1);
  cJSON_Delete(o);
  free(txt);
  return 0;
}

TEST_IMPL(log_text_format_and_reopen) {
  char path[512], moved[512];
  snprintf(path, sizeof path, "%s/t.log", test_tmpdir());
  snprintf(moved, sizeof moved, "%s/t.log.1", test_tmpdir());
  ASSERT_OK(log_open(path, LOG_FORMAT_TEXT, LOG_DEBUG));
  LOG(LOG_INFO, "before", LF_STR("k", "two words"));
  ASSERT(rename(path, moved) == 0); /* logrotate */
  ASSERT_OK(log_reopen());
  LOG(LOG_ERROR, "after", LF_INT("k", 3));
  log_close();
  char *a = read_log(moved), *b = read_log(path);
  ASSERT(a && b);
  ASSERT(strstr(a, "info  before k=\"two words\""));
  ASSERT(strstr(b, "error after k=3"));
  ASSERT(!strstr(b, "before"));
  free(a);
  free(b);
  ASSERT_EQ_INT(log_level_parse("warn"), LOG_WARN);
  ASSERT_EQ_INT(log_level_parse("loud"), -1);
  return 0;
}

TEST_IMPL(metrics_prometheus_text) {
  static svc_metrics m; /* zeroed */
  metrics_inc(&m.instances_received, 3);
  metrics_observe(&m.job_seconds, 0.2);
  metrics_observe(&m.job_seconds, 7.0);
  metrics_observe(&m.job_seconds, 5000.0);
  ctp_store_counts c;
  memset(&c, 0, sizeof c);
  c.jobs[CTP_JOB_QUEUED] = 4;
  metrics_gauges g = {&c, 12345, 10, 2, 1, 1};
  char *txt = metrics_render(&m, &g);
  ASSERT(txt);
  ASSERT(strstr(txt, "ctphase_instances_received_total 3\n"));
  ASSERT(strstr(txt, "ctphase_jobs{state=\"queued\"} 4\n"));
  ASSERT(strstr(txt, "ctphase_queue_depth 4\n"));
  ASSERT(strstr(txt, "ctphase_job_seconds_bucket{le=\"0.25\"} 1\n"));
  ASSERT(strstr(txt, "ctphase_job_seconds_bucket{le=\"10\"} 2\n"));
  ASSERT(strstr(txt, "ctphase_job_seconds_bucket{le=\"+Inf\"} 3\n"));
  ASSERT(strstr(txt, "ctphase_job_seconds_count 3\n"));
  ASSERT(strstr(txt, "ctphase_disk_free_bytes 12345\n"));
  ASSERT(strstr(txt, "# TYPE ctphase_associations_total counter\n"));
  free(txt);
  return 0;
}
