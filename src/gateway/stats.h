/*
 * stats.h: the last hour of each engine's traffic, in memory, for the console's charts (GET
 * /v1/stats, docs/http-api.md): one ring per engine of STATS_BUCKETS buckets of STATS_STEP_MS
 * (requests, TTFT and queue-wait percentiles, output tokens), and one ring of node memory
 * samples. The gateway records each request at its end and a node sample every few seconds.
 *
 * Recording is O(1) and allocates nothing (the gateway relays at nginx's speed): the bucket of
 * the current 10 s is found by index, reset when it held an older 10 s, and a sample goes into
 * a fixed log-scale histogram. Memory is fixed per engine whatever the traffic. The clock is
 * the caller's (wall milliseconds), so the unit test drives it. Loop thread only.
 *
 * Nothing here survives a restart of arun: the charts start empty.
 */
#ifndef ARUN_GATEWAY_STATS_H
#define ARUN_GATEWAY_STATS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define STATS_STEP_MS 10000 /* one bucket: a chart point every 10 s */
#define STATS_BUCKETS 360   /* one hour of them */
#define STATS_WINDOW_MIN_S 60
#define STATS_WINDOW_MAX_S (STATS_BUCKETS * STATS_STEP_MS / 1000)
/* A histogram's bins: three per doubling (a bin is 26% wide: a percentile read at its geometric
 * middle is within 12% of the truth, and exact when it equals the bucket's smallest or largest
 * sample), from 2^-6 ms (16 us) to 2^(62/3) ms (about 27 min): TTFTs and queue waits. */
#define STATS_HIST_BINS 80
#define STATS_NODE_SAMPLE_MS 5000 /* the gateway samples node memory this often */

struct stats;

/* One request at its end. */
struct stats_request {
    double ttft_ms;        /* dispatch to the first streamed byte; < 0 when none (not a
                              stream, or no byte came) */
    double queue_wait_ms;  /* submission to dispatch; < 0 when never dispatched */
    int64_t output_tokens; /* the engine's completion tokens (or the events relayed); <= 0 none */
};

/* A ring per engine (names not copied: they must outlive the stats), from now_ms on: buckets
 * before it read as no data (null), buckets after it without requests as zero requests. */
struct stats *stats_new(const char *const *names, size_t nengines, int64_t now_ms);
/* NULL is a no-op. */
void stats_free(struct stats *s);

/* Counts one request that ended at now_ms for engine (an index below nengines). O(1), no
 * allocation. A clock that went back lands in the bucket of its time if that bucket still holds
 * it, else is dropped. */
void stats_record(struct stats *s, size_t engine, int64_t now_ms, const struct stats_request *r);
/* The node's memory at now_ms, in MiB (< 0: unknown). The last sample of a bucket is its value. */
void stats_node(struct stats *s, int64_t now_ms, int64_t ram_used_mb, int64_t vram_used_mb);

/* The last window_s seconds (STATS_WINDOW_MIN_S..STATS_WINDOW_MAX_S; the caller checks) up to
 * now_ms, as GET /v1/stats answers: {"window_s","step_s","engines":{NAME:{"t",
 * "requests_per_s","ttft_p50_ms","ttft_p95_ms","queue_wait_p50_ms","tokens_per_s"}},
 * "node":{"t","ram_used_mb","vram_used_mb"}}, the arrays oldest first, one entry per bucket
 * (t: its start, epoch seconds), null where a bucket has no sample. New reference. */
json_t *stats_to_json(const struct stats *s, int64_t now_ms, int window_s);

#endif
