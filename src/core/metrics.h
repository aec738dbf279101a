/*
 * metrics.h: the metrics registry, rendered in the Prometheus text format (0.0.4) by GET
 * /metrics. Families are registered once at start; series (one per set of label values) are
 * created on first use. Only the loop thread touches a registry: no locks.
 *
 * Recording is cheap (a hash of the label values and an add), so it can sit on the request path.
 * Label values come from code (route patterns, engine names, status codes), never raw from
 * clients, so the number of series stays bounded; METRICS_MAX_SERIES caps it anyway.
 */
#ifndef ARUN_CORE_METRICS_H
#define ARUN_CORE_METRICS_H

#include <stddef.h>

#include "core/buf.h"

#define METRICS_MAX_LABELS 4
#define METRICS_MAX_SERIES 10000 /* per family; beyond it samples go to an "_overflow" series */

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics;
struct metrics_family;

/* Called at render time to append the samples of a computed family (RSS, open connections).
 * Write lines with metrics_put_sample(). */
typedef void (*metrics_collect_cb)(struct metrics_family *fam, struct buf *out, void *arg);

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Registers a family. label names: nlabels strings. Histograms take their bucket upper bounds
 * (ascending, +Inf implied). The registry owns the family; the pointer stays valid until
 * metrics_free. Registering the same name twice is a programming error (asserted). */
struct metrics_family *metrics_counter(struct metrics *m, const char *name, const char *help,
                                       size_t nlabels, const char *const *labels);
struct metrics_family *metrics_gauge(struct metrics *m, const char *name, const char *help,
                                     size_t nlabels, const char *const *labels);
struct metrics_family *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                         size_t nlabels, const char *const *labels,
                                         const double *buckets, size_t nbuckets);
/* A family whose samples are produced by cb when /metrics is read. */
struct metrics_family *metrics_computed(struct metrics *m, const char *name, const char *help,
                                        enum metrics_type type, metrics_collect_cb cb, void *arg);

/* Adds v to a counter or gauge series; values are the label values, in registration order. */
void metrics_add(struct metrics_family *f, double v, const char *const *values);
/* Sets a gauge series. */
void metrics_set(struct metrics_family *f, double v, const char *const *values);
/* Records one observation in a histogram series. */
void metrics_observe(struct metrics_family *f, double v, const char *const *values);

/* Appends the whole registry in the text format. Returns 0 or -ENOBUFS (out's cap). */
int metrics_render(struct metrics *m, struct buf *out) MUST_USE;

/* For collect callbacks: appends `NAME{l1="v1",…} VALUE\n` (labels may be NULL/0). */
void metrics_put_sample(struct metrics_family *f, struct buf *out, size_t nlabels,
                        const char *const *labels, const char *const *values, double v);

/* Standard latency buckets, seconds: 0.5 ms … 60 s. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_nbuckets;

#endif
