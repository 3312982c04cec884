/*
 * metrics.c — Prometheus text exposition of the daemon's metrics.
 *
 * Histograms have fixed buckets (5 ms to 10 min, roughly x2.5 apart),
 * wide enough for a C-STORE commit and for a job on a large series. Each
 * observation adds to one bucket; rendering accumulates them, as the text
 * format wants cumulative counts. Names follow Prometheus conventions:
 * ctphase_ prefix, _total for counters, base units (seconds, bytes).
 */
#include "service/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bucket_le[METRICS_NBUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, 600};

void metrics_observe(metrics_hist *h, double seconds) {
  int b = 0;
  while (b < METRICS_NBUCKETS && seconds > bucket_le[b]) b++;
  atomic_fetch_add_explicit(&h->counts[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum_us, (uint64_t)(seconds * 1e6 + 0.5),
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&h->n, 1, memory_order_relaxed);
}

/* A growing text buffer. */
typedef struct {
  char *b;
  size_t n, cap;
  int oom;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *fmt, ...) {
  if (t->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t->b + t->n, t->cap - t->n, fmt, ap);
    va_end(ap);
    if (k < 0) {
      t->oom = 1;
      return;
    }
    if ((size_t)k < t->cap - t->n) {
      t->n += (size_t)k;
      return;
    }
    size_t cap = t->cap * 2 + (size_t)k;
    char *nb = realloc(t->b, cap);
    if (!nb) {
      t->oom = 1;
      return;
    }
    t->b = nb;
    t->cap = cap;
  }
}

static uint64_t get(const atomic_uint_fast64_t *c) {
  return atomic_load_explicit((atomic_uint_fast64_t *)c, memory_order_relaxed);
}

static void counter(text *t, const char *name, const char *help, uint64_t v) {
  add(t, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
      (unsigned long long)v);
}

static void gauge(text *t, const char *name, const char *help, double v) {
  add(t, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void histogram(text *t, const char *name, const char *help,
                      const metrics_hist *h) {
  add(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0;
  for (int b = 0; b < METRICS_NBUCKETS; b++) {
    cum += get(&h->counts[b]);
    add(t, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_le[b], (unsigned long long)cum);
  }
  cum += get(&h->counts[METRICS_NBUCKETS]);
  add(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
  add(t, "%s_sum %.6f\n%s_count %llu\n", name, get(&h->sum_us) / 1e6, name,
      (unsigned long long)cum);
}

static void by_state(text *t, const char *name, const char *help,
                     const int64_t *v, int n, const char *(*state_name)(int)) {
  add(t, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
  for (int i = 0; i < n; i++)
    add(t, "%s{state=\"%s\"} %lld\n", name, state_name(i), (long long)v[i]);
}

static void received(text *t, const svc_metrics *m) {
  counter(t, "ctphase_instances_received_total",
          "Instances stored and acknowledged with success.",
          get(&m->instances_received));
  counter(t, "ctphase_instances_duplicate_total",
          "Instances received again (acknowledged, stored once).",
          get(&m->instances_duplicate));
  counter(t, "ctphase_instances_dropped_total",
          "Non-CT instances acknowledged and dropped.", get(&m->instances_dropped));
  counter(t, "ctphase_instances_failed_total",
          "C-STORE requests answered with a failure status.",
          get(&m->instances_failed));
  counter(t, "ctphase_disk_refusals_total",
          "Stores refused with 0xA700 (disk below the watermark or write error).",
          get(&m->disk_refusals));
  counter(t, "ctphase_received_bytes_total", "Dataset bytes received.",
          get(&m->bytes_received));
  add(t, "# HELP ctphase_associations_total Associations by outcome.\n"
         "# TYPE ctphase_associations_total counter\n"
         "ctphase_associations_total{result=\"accepted\"} %llu\n"
         "ctphase_associations_total{result=\"rejected\"} %llu\n",
      (unsigned long long)get(&m->assoc_accepted),
      (unsigned long long)get(&m->assoc_rejected));
  counter(t, "ctphase_echoes_total", "C-ECHO requests answered.", get(&m->echoes));
}

char *metrics_render(const svc_metrics *m, const metrics_gauges *g) {
  text t = {malloc(8192), 0, 8192, 0};
  if (!t.b) return NULL;
  t.b[0] = 0;
  gauge(&t, "ctphase_up", "1 while serving, 0 while shutting down.", g->up);
  received(&t, m);
  gauge(&t, "ctphase_associations_active", "Associations in progress.",
        g->assoc_active);
  counter(&t, "ctphase_jobs_finished_total", "Jobs that ended (any outcome).",
          get(&m->jobs_finished));
  gauge(&t, "ctphase_jobs_running", "Jobs running now.", g->jobs_running);
  counter(&t, "ctphase_send_failures_total",
          "Outbound C-STORE attempts that failed.", get(&m->send_failures));
  counter(&t, "ctphase_objects_sent_total",
          "Outbound objects (SR, SC) delivered to a destination.", get(&m->objects_sent));
  counter(&t, "ctphase_reports_written_total",
          "Result objects (SR, SC) written by jobs.", get(&m->reports_written));
  if (g->counts) {
    by_state(&t, "ctphase_series", "Series by state.", g->counts->series,
             CTP_SERIES_NSTATES, ctp_series_state_name);
    by_state(&t, "ctphase_jobs", "Jobs by state.", g->counts->jobs,
             CTP_JOB_NSTATES, ctp_job_state_name);
    by_state(&t, "ctphase_outbound", "Outbound objects by state.",
             g->counts->outbound, CTP_OUTBOUND_NSTATES, ctp_outbound_state_name);
    gauge(&t, "ctphase_queue_depth", "Jobs waiting for a worker.",
          (double)g->counts->jobs[CTP_JOB_QUEUED]);
    gauge(&t, "ctphase_instances_stored", "Instance files on disk.",
          (double)g->counts->instances_present);
  }
  if (g->disk_free >= 0)
    gauge(&t, "ctphase_disk_free_bytes", "Free bytes in the data dir.",
          (double)g->disk_free);
  gauge(&t, "ctphase_disk_min_free_bytes", "The disk watermark.", (double)g->min_free);
  histogram(&t, "ctphase_store_seconds",
            "From the end of a dataset to its committed row (fsync included).",
            &m->store_seconds);
  histogram(&t, "ctphase_job_seconds", "Job duration.", &m->job_seconds);
  histogram(&t, "ctphase_inference_seconds", "Network time per job.",
            &m->infer_seconds);
  histogram(&t, "ctphase_send_seconds",
            "One outbound object's C-STORE round trip (or folder copy).",
            &m->send_seconds);
  if (t.oom) {
    free(t.b);
    return NULL;
  }
  return t.b;
}
