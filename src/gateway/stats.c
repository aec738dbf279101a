/*
 * stats.c: the in-memory rings behind GET /v1/stats (stats.h). It owns each engine's buckets and
 * the node's memory samples; it knows nothing of HTTP, engines or clocks (the gateway passes the
 * time and the numbers in).
 *
 * DESIGN
 * A bucket is the 10 s slot it holds (wall ms / STATS_STEP_MS); the ring index is the slot modulo
 * STATS_BUCKETS. A write to a ring cell that holds an older slot resets it first, so an hour
 * later the cell is reused and nothing needs a timer to expire; a read checks that the cell
 * holds the slot it wants, so a cell left from more than an hour ago reads as empty. Percentiles
 * come from a fixed histogram per bucket (stats.h says its bins and its error), clamped to the
 * bucket's smallest and largest sample: bounded memory however many requests a bucket sees,
 * and a bucket with one sample (or all alike) reads exactly. A bounded sample (reservoir) would
 * be exact for small buckets too, but needs a random draw per request and its error grows with
 * the traffic; the histogram's is fixed.
 *
 * Memory: STATS_BUCKETS * sizeof(struct bucket) (about 240 KiB) per engine, allocated once with
 * calloc; pages of buckets never written are never touched.
 */
#include "gateway/stats.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

#define BINS_PER_DOUBLING 3
#define BIN_OFFSET 18 /* bin 0 holds everything below 2^(-18/3) ms = 2^-6 ms */

struct hist {
    uint32_t n;
    float min_ms, max_ms;
    uint32_t bins[STATS_HIST_BINS];
};

struct bucket {
    int64_t slot; /* the 10 s it holds: wall ms / STATS_STEP_MS; -1 never written */
    uint32_t requests;
    uint64_t output_tokens;
    struct hist ttft, wait;
};

struct node_sample {
    int64_t slot;
    int64_t ram_used_mb, vram_used_mb; /* < 0 unknown */
};

struct engine_ring {
    const char *name;
    struct bucket b[STATS_BUCKETS];
};

struct stats {
    int64_t since_ms; /* when the rings started: before it there is no data */
    size_t n;
    struct engine_ring *rings;
    struct node_sample node[STATS_BUCKETS];
};

static int64_t slot_of(int64_t ms)
{
    return ms >= 0 ? ms / STATS_STEP_MS : -1;
}

static size_t index_of(int64_t slot)
{
    return (size_t)(slot % STATS_BUCKETS);
}

struct stats *stats_new(const char *const *names, size_t nengines, int64_t now_ms)
{
    struct stats *s = xcalloc(1, sizeof(*s));
    s->since_ms = now_ms;
    s->n = nengines;
    s->rings = xcalloc(nengines ? nengines : 1, sizeof(*s->rings));
    for (size_t i = 0; i < nengines; i++) {
        s->rings[i].name = names[i];
        for (size_t k = 0; k < STATS_BUCKETS; k++)
            s->rings[i].b[k].slot = -1;
    }
    for (size_t k = 0; k < STATS_BUCKETS; k++)
        s->node[k] = (struct node_sample){.slot = -1, .ram_used_mb = -1, .vram_used_mb = -1};
    return s;
}

void stats_free(struct stats *s)
{
    if (s == NULL)
        return;
    free(s->rings);
    free(s);
}

static size_t bin_of(double ms)
{
    if (!(ms >= 0x1p-6))
        return 0;
    double b = floor(log2(ms) * BINS_PER_DOUBLING) + BIN_OFFSET;
    return b >= STATS_HIST_BINS - 1 ? STATS_HIST_BINS - 1 : (size_t)b;
}

static void hist_add(struct hist *h, double ms)
{
    float v = (float)ms;
    if (h->n == 0 || v < h->min_ms)
        h->min_ms = v;
    if (h->n == 0 || v > h->max_ms)
        h->max_ms = v;
    h->n++;
    h->bins[bin_of(ms)]++;
}

/* The p-quantile (nearest rank) of h, or -1 when it is empty: the middle of the bin that holds
 * that rank, clamped to the smallest and largest sample. */
static double hist_quantile(const struct hist *h, double p)
{
    if (h->n == 0)
        return -1;
    uint64_t rank = (uint64_t)ceil(p * h->n), seen = 0;
    if (rank < 1)
        rank = 1;
    size_t b = 0;
    for (; b < STATS_HIST_BINS; b++) {
        seen += h->bins[b];
        if (seen >= rank)
            break;
    }
    double mid = b == 0 ? 0 : exp2(((double)b - BIN_OFFSET + 0.5) / BINS_PER_DOUBLING);
    if (mid < h->min_ms)
        mid = h->min_ms;
    if (mid > h->max_ms)
        mid = h->max_ms;
    return mid;
}

void stats_record(struct stats *s, size_t engine, int64_t now_ms, const struct stats_request *r)
{
    ASSERT(engine < s->n);
    int64_t slot = slot_of(now_ms);
    if (slot < 0)
        return;
    struct bucket *b = &s->rings[engine].b[index_of(slot)];
    if (b->slot > slot)
        return; /* the clock went back by more than the ring: that time is gone */
    if (b->slot != slot) {
        memset(b, 0, sizeof(*b));
        b->slot = slot;
    }
    b->requests++;
    if (r->output_tokens > 0)
        b->output_tokens += (uint64_t)r->output_tokens;
    if (r->ttft_ms >= 0)
        hist_add(&b->ttft, r->ttft_ms);
    if (r->queue_wait_ms >= 0)
        hist_add(&b->wait, r->queue_wait_ms);
}

void stats_node(struct stats *s, int64_t now_ms, int64_t ram_used_mb, int64_t vram_used_mb)
{
    int64_t slot = slot_of(now_ms);
    if (slot < 0)
        return;
    struct node_sample *n = &s->node[index_of(slot)];
    if (n->slot > slot)
        return;
    *n = (struct node_sample){
        .slot = slot, .ram_used_mb = ram_used_mb, .vram_used_mb = vram_used_mb};
}

/* A number rounded to 0.01 (charts need no more; the JSON stays short), or null when < 0. */
static json_t *num_or_null(double v)
{
    return v < 0 ? json_null() : json_real(round(v * 100) / 100);
}

/* The seconds of slot that the rings saw, up to now: 10, less for the current slot and the one
 * they started in (at least 1, so a rate read in a slot's first moments is not wildly high); 0
 * for a slot wholly before they started. */
static double seen_s(const struct stats *s, int64_t slot, int64_t now_ms)
{
    int64_t from = slot * STATS_STEP_MS, to = from + STATS_STEP_MS;
    if (to <= s->since_ms)
        return 0;
    if (from < s->since_ms)
        from = s->since_ms;
    if (to > now_ms)
        to = now_ms;
    double secs = (double)(to - from) / 1000;
    return secs < 1 ? 1 : secs;
}

json_t *stats_to_json(const struct stats *s, int64_t now_ms, int window_s)
{
    ASSERT(window_s >= STATS_WINDOW_MIN_S && window_s <= STATS_WINDOW_MAX_S);
    size_t n = (size_t)window_s * 1000 / STATS_STEP_MS;
    int64_t last = slot_of(now_ms), first = last - (int64_t)n + 1;
    json_t *t = json_array();
    for (int64_t slot = first; slot <= last; slot++)
        json_array_append_new(t, json_integer(slot * STATS_STEP_MS / 1000));

    json_t *engines = json_object();
    for (size_t i = 0; i < s->n; i++) {
        json_t *rps = json_array(), *p50 = json_array(), *p95 = json_array(), *wait = json_array(),
               *tps = json_array();
        for (int64_t slot = first; slot <= last; slot++) {
            const struct bucket *b = slot >= 0 ? &s->rings[i].b[index_of(slot)] : NULL;
            bool have = b != NULL && b->slot == slot;
            double secs = slot >= 0 ? seen_s(s, slot, now_ms) : 0;
            /* A bucket the rings saw without a request is zero requests; one before they
             * started is unknown. */
            json_array_append_new(rps, secs <= 0 ? json_null()
                                                 : num_or_null(have ? b->requests / secs : 0));
            json_array_append_new(tps, secs <= 0 ? json_null()
                                                 : num_or_null(have ? b->output_tokens / secs : 0));
            json_array_append_new(p50, num_or_null(have ? hist_quantile(&b->ttft, 0.50) : -1));
            json_array_append_new(p95, num_or_null(have ? hist_quantile(&b->ttft, 0.95) : -1));
            json_array_append_new(wait, num_or_null(have ? hist_quantile(&b->wait, 0.50) : -1));
        }
        json_object_set_new(engines, s->rings[i].name,
                            json_pack("{s:O, s:o, s:o, s:o, s:o, s:o}", "t", t, "requests_per_s",
                                      rps, "ttft_p50_ms", p50, "ttft_p95_ms", p95,
                                      "queue_wait_p50_ms", wait, "tokens_per_s", tps));
    }

    json_t *ram = json_array(), *vram = json_array();
    for (int64_t slot = first; slot <= last; slot++) {
        const struct node_sample *x = slot >= 0 ? &s->node[index_of(slot)] : NULL;
        bool have = x != NULL && x->slot == slot;
        json_array_append_new(ram, have && x->ram_used_mb >= 0 ? json_integer(x->ram_used_mb)
                                                               : json_null());
        json_array_append_new(vram, have && x->vram_used_mb >= 0 ? json_integer(x->vram_used_mb)
                                                                 : json_null());
    }
    return json_pack("{s:i, s:i, s:o, s:{s:o, s:o, s:o}}", "window_s", window_s, "step_s",
                     STATS_STEP_MS / 1000, "engines", engines, "node", "t", t, "ram_used_mb", ram,
                     "vram_used_mb", vram);
}
