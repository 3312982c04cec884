/*
 * metrics.h — the daemon's counters and histograms.
 *
 * Everything here is a relaxed atomic, bumped from any thread (SCP
 * threads, workers, the loop) without a lock. Gauges that live in the
 * database (series and jobs by state, queue depth) and free disk are read
 * when /metrics is rendered.
 */
#ifndef CTPHASE_SERVICE_METRICS_H
#define CTPHASE_SERVICE_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "ctphase/store.h"

#define METRICS_NBUCKETS 14

typedef struct {
  atomic_uint_fast64_t counts[METRICS_NBUCKETS + 1]; /* last: +Inf */
  atomic_uint_fast64_t sum_us;
  atomic_uint_fast64_t n;
} metrics_hist;

typedef struct {
  atomic_uint_fast64_t instances_received;
  atomic_uint_fast64_t instances_duplicate;
  atomic_uint_fast64_t instances_dropped;   /* non-CT, "drop" policy */
  atomic_uint_fast64_t instances_failed;    /* answered with a failure */
  atomic_uint_fast64_t disk_refusals;       /* watermark or write error */
  atomic_uint_fast64_t bytes_received;
  atomic_uint_fast64_t assoc_accepted;
  atomic_uint_fast64_t assoc_rejected;
  atomic_uint_fast64_t echoes;
  atomic_uint_fast64_t jobs_finished;
  atomic_uint_fast64_t send_failures;       /* filled by the sender */
  atomic_uint_fast64_t objects_sent;        /* outbound objects delivered */
  atomic_uint_fast64_t reports_written;     /* SR + SC objects written */
  metrics_hist store_seconds;   /* dataset received -> row committed */
  metrics_hist job_seconds;     /* a job, end to end */
  metrics_hist infer_seconds;   /* network time of a job */
  metrics_hist send_seconds;    /* one object's C-STORE round trip (or copy) */
} svc_metrics;

void metrics_observe(metrics_hist *h, double seconds);
static inline void metrics_inc(atomic_uint_fast64_t *c, uint64_t by) {
  atomic_fetch_add_explicit(c, by, memory_order_relaxed);
}

typedef struct {
  const ctp_store_counts *counts; /* NULL when the database failed */
  int64_t disk_free;              /* -1 unknown */
  int64_t min_free;
  int assoc_active;
  int jobs_running;
  int up;                         /* 1 running, 0 draining */
} metrics_gauges;

/* The Prometheus text exposition (malloc'd). */
char *metrics_render(const svc_metrics *m, const metrics_gauges *g);

#endif
