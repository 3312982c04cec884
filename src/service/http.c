/*
 * http.c — the admin HTTP server of ctphased, on the libuv loop.
 *
 *   GET /healthz                 200 "ok" while serving, 503 while stopping
 *   GET /metrics                 Prometheus text (metrics.c)
 *   GET /api/v1/jobs             latest jobs, JSON (?state=failed&limit=20)
 *   GET /api/v1/jobs/{id}        one job with its result
 *   GET /api/v1/series/{uid}     one series with its jobs
 *
 * Deliberately small: HTTP/1.1, one request per connection (the answer
 * says Connection: close), GET and HEAD only, no request body. A request
 * larger than admin_max_request_bytes gets 431, a malformed one 400, an
 * unknown path 404, another method 405, and a connection that does not
 * send its request within 10 s is closed. Bound to loopback by default.
 *
 * Reading and writing the socket happen on the loop; answers that need
 * the database or the file system are computed in the thread pool
 * (uv_queue_work) and written back on the loop. A connection whose peer
 * went away while its answer was computed is freed when the work ends.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "service/log.h"
#include "service/service.h"

#define HTTP_TIMEOUT_MS 10000

typedef struct http_conn http_conn;

struct svc_http {
  uv_tcp_t server;
  svc *s;
  int port;
  http_conn *conns; /* open connections, closed by http_stop */
  int closed;       /* the server handle has closed */
};

struct http_conn {
  http_conn *prev, *next;
  svc_http *h;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_work_t work;
  uv_write_t wr;
  svc *s;
  char *buf;
  size_t len, cap;
  int head;            /* HEAD: no body */
  int closing;         /* handles closed or closing */
  int working;         /* work queued */
  int handles_open;    /* tcp + timer not yet closed */
  /* The request and its answer. */
  char path[512];
  int status;
  const char *ctype;
  char *body;
  char *out;
};

static const char *reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

static void conn_free_if_done(http_conn *c) {
  if (c->handles_open > 0 || c->working) return;
  if (c->prev) c->prev->next = c->next;
  else c->h->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->h->closed && !c->h->conns) free(c->h);
  free(c->buf);
  free(c->body);
  free(c->out);
  free(c);
}

static void on_handle_closed(uv_handle_t *h) {
  http_conn *c = h->data;
  c->handles_open--;
  conn_free_if_done(c);
}

static void conn_close(http_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_written(uv_write_t *w, int status) {
  (void)status;
  conn_close(w->data);
}

/* Sends the answer in c (status, ctype, body) and closes. */
static void respond(http_conn *c) {
  if (c->closing) return;
  size_t blen = c->body ? strlen(c->body) : 0;
  size_t cap = blen + 256;
  c->out = malloc(cap);
  if (!c->out) {
    conn_close(c);
    return;
  }
  int k = snprintf(c->out, cap,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                   c->status, reason(c->status), c->ctype, blen);
  if (!c->head && blen) memcpy(c->out + k, c->body, blen);
  uv_buf_t b = uv_buf_init(c->out, (unsigned)(k + (c->head ? 0 : blen)));
  c->wr.data = c;
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) conn_close(c);
}

static void respond_text(http_conn *c, int status, const char *text) {
  c->status = status;
  c->ctype = "text/plain; charset=utf-8";
  free(c->body);
  c->body = strdup(text);
  respond(c);
}

/* ------------------------------------------------------------------ */
/* Answers computed in the pool                                         */
/* ------------------------------------------------------------------ */

static void set_error(http_conn *c, int rc) {
  c->status = rc == CTP_ENOENT ? 404 : 500;
  c->ctype = "application/json";
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "error", rc == CTP_ENOENT ? "not found" : ctp_last_error());
  c->body = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
}

static void answer_metrics(http_conn *c) {
  svc *s = c->s;
  ctp_store_counts counts;
  uint64_t free_bytes = 0;
  metrics_gauges g = {NULL, -1, svc_cfg(s)->min_free_bytes, ctp_scp_active(s->scp),
                      atomic_load(&s->running_jobs),
                      atomic_load(&s->state) == SVC_RUNNING};
  if (ctp_store_count(s->store, &counts) == 0) g.counts = &counts;
  if (receive_free_bytes(s->data_dir, &free_bytes) == 0) g.disk_free = (int64_t)free_bytes;
  c->body = metrics_render(&s->metrics, &g);
  c->status = c->body ? 200 : 500;
  c->ctype = "text/plain; version=0.0.4; charset=utf-8";
}

/* The value of ?key= in a query string (copied into out), or "". */
static void query_param(const char *query, const char *key, char *out, size_t n) {
  out[0] = 0;
  size_t klen = strlen(key);
  for (const char *p = query; p && *p;) {
    if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
      const char *v = p + klen + 1;
      size_t len = strcspn(v, "&");
      if (len >= n) len = n - 1;
      memcpy(out, v, len);
      out[len] = 0;
      return;
    }
    p = strchr(p, '&');
    if (p) p++;
  }
}

static void answer_jobs(http_conn *c, const char *query) {
  char state[32], limit_s[16];
  query_param(query, "state", state, sizeof state);
  query_param(query, "limit", limit_s, sizeof limit_s);
  int limit = limit_s[0] ? atoi(limit_s) : 100;
  if ((state[0] && ctp_job_state_parse(state) < 0) || limit < 1 || limit > 10000) {
    c->status = 400;
    c->ctype = "text/plain; charset=utf-8";
    c->body = strdup("bad state or limit\n");
    return;
  }
  int rc = ctp_store_jobs_json(c->s->store, state[0] ? state : NULL, limit, &c->body);
  if (rc) set_error(c, rc);
  else c->status = 200, c->ctype = "application/json";
}

static int all_digits(const char *s) {
  if (!*s || strlen(s) > 18) return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

static void http_work(uv_work_t *w) {
  http_conn *c = w->data;
  char *query = strchr(c->path, '?');
  if (query) *query++ = 0;
  const char *p = c->path;
  int rc;
  if (strcmp(p, "/metrics") == 0) {
    answer_metrics(c);
  } else if (strcmp(p, "/api/v1/jobs") == 0) {
    answer_jobs(c, query);
  } else if (strncmp(p, "/api/v1/jobs/", 13) == 0 && all_digits(p + 13)) {
    if ((rc = ctp_store_job_json(c->s->store, atoll(p + 13), &c->body))) set_error(c, rc);
    else c->status = 200, c->ctype = "application/json";
  } else if (strncmp(p, "/api/v1/series/", 15) == 0) {
    if (!ctp_uid_valid(p + 15)) {
      c->status = 400;
      c->ctype = "text/plain; charset=utf-8";
      c->body = strdup("not a series instance UID\n");
    } else if ((rc = ctp_store_series_json(c->s->store, p + 15, &c->body))) {
      set_error(c, rc);
    } else {
      c->status = 200, c->ctype = "application/json";
    }
  } else {
    c->status = 404;
    c->ctype = "text/plain; charset=utf-8";
    c->body = strdup("not found\n");
  }
  if (!c->body) {
    c->status = 500;
    c->ctype = "text/plain; charset=utf-8";
  }
}

static void http_after(uv_work_t *w, int status) {
  (void)status;
  http_conn *c = w->data;
  c->working = 0;
  if (c->closing) conn_free_if_done(c);
  else respond(c);
}

/* ------------------------------------------------------------------ */
/* Requests                                                             */
/* ------------------------------------------------------------------ */

/* Parses the request line once the header is complete and routes it. */
static void handle_request(http_conn *c) {
  char method[8], target[600], version[16];
  char *eol = strstr(c->buf, "\r\n");
  if (!eol || eol - c->buf > 600 ||
      sscanf(c->buf, "%7s %599s %15s", method, target, version) != 3 ||
      strncmp(version, "HTTP/1.", 7) != 0 || target[0] != '/') {
    respond_text(c, 400, "bad request\n");
    return;
  }
  c->head = strcmp(method, "HEAD") == 0;
  if (strcmp(method, "GET") != 0 && !c->head) {
    respond_text(c, 405, "only GET and HEAD\n");
    return;
  }
  if (strlen(target) >= sizeof c->path) {
    respond_text(c, 400, "path too long\n");
    return;
  }
  snprintf(c->path, sizeof c->path, "%s", target);
  LOG(LOG_DEBUG, "http_request", LF_STR("method", method), LF_STR("path", c->path));
  if (strcmp(c->path, "/healthz") == 0) {
    int up = atomic_load(&c->s->state) == SVC_RUNNING;
    respond_text(c, up ? 200 : 503, up ? "ok\n" : "stopping\n");
    return;
  }
  c->work.data = c;
  c->working = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (uv_queue_work(c->s->loop, &c->work, http_work, http_after) != 0) {
    c->working = 0;
    respond_text(c, 500, "busy\n");
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  http_conn *c = h->data;
  size_t limit = (size_t)svc_cfg(c->s)->admin_max_request_bytes;
  if (!c->buf) {
    c->cap = limit + 1;
    c->buf = malloc(c->cap);
  }
  if (!c->buf || c->len >= limit) {
    *b = uv_buf_init(NULL, 0);
    return;
  }
  *b = uv_buf_init(c->buf + c->len, (unsigned)(limit - c->len));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  (void)b;
  http_conn *c = st->data;
  if (n < 0) {
    if (n == UV_ENOBUFS) respond_text(c, 431, "request too large\n");
    else conn_close(c);
    return;
  }
  c->len += (size_t)n;
  c->buf[c->len] = 0;
  if (memchr(c->buf, 0, c->len)) {
    respond_text(c, 400, "bad request\n");
    return;
  }
  if (strstr(c->buf, "\r\n\r\n")) {
    handle_request(c);
    return;
  }
  if (c->len >= (size_t)svc_cfg(c->s)->admin_max_request_bytes)
    respond_text(c, 431, "request too large\n");
}

static void on_timeout(uv_timer_t *t) {
  http_conn *c = t->data;
  if (!c->working) respond_text(c, 408, "request timeout\n");
}

static void on_connection(uv_stream_t *server, int status) {
  svc_http *h = server->data;
  if (status < 0) return;
  http_conn *c = calloc(1, sizeof *c);
  if (!c) return;
  c->s = h->s;
  c->h = h;
  c->next = h->conns;
  if (h->conns) h->conns->prev = c;
  h->conns = c;
  uv_tcp_init(h->s->loop, &c->tcp);
  uv_timer_init(h->s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles_open = 2;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_timeout, HTTP_TIMEOUT_MS, 0);
}

/* The server handle closed: the svc_http goes with its last connection. */
static void free_server(uv_handle_t *handle) {
  svc_http *h = handle->data;
  h->closed = 1;
  if (!h->conns) free(h);
}

int http_start(svc *s) {
  svc_config *cfg = svc_cfg(s);
  if (cfg->admin_port < 0) return 0;
  svc_http *h = calloc(1, sizeof *h);
  if (!h) return ctp_seterr(CTP_ENOMEM, "out of memory");
  h->s = s;
  struct sockaddr_in addr;
  int rc = uv_ip4_addr(cfg->admin_bind, (int)cfg->admin_port, &addr);
  uv_tcp_init(s->loop, &h->server);
  h->server.data = h;
  if (!rc) rc = uv_tcp_bind(&h->server, (const struct sockaddr *)&addr, 0);
  if (!rc) rc = uv_listen((uv_stream_t *)&h->server, 64, on_connection);
  if (rc) {
    uv_close((uv_handle_t *)&h->server, free_server);
    return ctp_seterr(CTP_ENET, "admin HTTP on %s:%lld: %s", cfg->admin_bind,
                      (long long)cfg->admin_port, uv_strerror(rc));
  }
  struct sockaddr_in bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&h->server, (struct sockaddr *)&bound, &len);
  h->port = ntohs(bound.sin_port);
  s->http = h;
  LOG(LOG_INFO, "http_listening", LF_STR("address", cfg->admin_bind),
      LF_INT("port", h->port));
  return 0;
}

/* Stops listening and closes every open connection; the svc_http itself
 * is freed once the server and all connections have closed. */
void http_stop(svc *s) {
  svc_http *h = s->http;
  if (!h) return;
  s->http = NULL;
  for (http_conn *c = h->conns; c; c = c->next) conn_close(c);
  uv_close((uv_handle_t *)&h->server, free_server);
}
