/*
 * sweep.c: the retention sweep (sweep.h).
 *
 * DESIGN
 * A round is a series of store_runs_sweep calls of SWEEP_CHUNK rows per kind, each its own short
 * transaction on the store's writer thread; a chunk that came back full is followed by another
 * one, submitted from its callback, so whatever the loop submitted meanwhile (the events of live
 * runs) commits between two chunks. The loop itself only computes two timestamps per chunk.
 *
 * The cut-off is the retention's, moved back to the creation of the oldest run in memory: the
 * store sweeps only finished rows, and this keeps it off a finished run that a stream or a
 * waiting request still holds, whose row and events they may read. Idempotency-Key claims older
 * than RUNS_IDEM_TTL_MS go whatever the retention (a claim that old no longer holds its key
 * anyway: store_idem_claim replaces it).
 *
 * Lifetime: the timer is closed by sweep_free; a chunk in flight then frees the sweep from its
 * callback (the store calls every accepted op back, also while it closes).
 */
#include "runs/sweep.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"

#define DAY_MS (24LL * 3600 * 1000)

enum { SWEPT_RESPONSES, SWEPT_CONVERSATIONS, SWEPT_IDEM, SWEPT_KINDS };
static const char *const kind_names[SWEPT_KINDS] = {"responses", "conversations",
                                                    "idempotency_keys"};
static const char *const kind_keys[SWEPT_KINDS] = {"responses", "conversations", "idem"};

struct sweep {
    struct runs *rs;
    uint32_t retention_days;
    uint64_t interval_ms;
    uv_timer_t timer;
    bool busy;    /* a chunk is in the store */
    bool closing; /* sweep_free ran */
    bool timer_closed;
    uint64_t round[SWEPT_KINDS]; /* removed so far in this round */
    struct metrics_family *m_swept;
};

static void maybe_free(struct sweep *s)
{
    if (s->closing && s->timer_closed && !s->busy)
        free(s);
}

static void timer_closed_cb(uv_handle_t *h)
{
    struct sweep *s = h->data;
    s->timer_closed = true;
    maybe_free(s);
}

static void chunk(struct sweep *s);

static void round_done(struct sweep *s)
{
    uint64_t *n = s->round;
    if (n[SWEPT_RESPONSES] + n[SWEPT_CONVERSATIONS] + n[SWEPT_IDEM] > 0)
        log_info("runs",
                 "retention sweep removed %llu responses and %llu conversations older than %u "
                 "days and %llu idempotency keys older than 24 h",
                 (unsigned long long)n[SWEPT_RESPONSES], (unsigned long long)n[SWEPT_CONVERSATIONS],
                 s->retention_days, (unsigned long long)n[SWEPT_IDEM]);
    memset(s->round, 0, sizeof(s->round));
}

static void swept_cb(int status, const char *value, size_t len, void *arg)
{
    struct sweep *s = arg;
    s->busy = false;
    if (s->closing) {
        maybe_free(s);
        return;
    }
    json_t *counts = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
    bool full = false;
    for (int k = 0; k < SWEPT_KINDS; k++) {
        json_int_t n = json_integer_value(json_object_get(counts, kind_keys[k]));
        if (n <= 0)
            continue;
        s->round[k] += (uint64_t)n;
        metrics_add(s->m_swept, (double)n, (const char *const[]){kind_names[k]});
        full = full || n >= SWEEP_CHUNK;
    }
    json_decref(counts);
    if (status != 0)
        log_warn("runs", "retention sweep: the store failed (%s); it tries again in %llu s",
                 strerror(-status), (unsigned long long)(s->interval_ms / 1000));
    if (full && status == 0)
        chunk(s);
    else
        round_done(s);
}

/* The creation time before which rows may go: the retention's cut-off, moved back to the oldest
 * run in memory. 0 sweeps no response or conversation. */
static int64_t cutoff_ms(const struct sweep *s, int64_t now)
{
    if (s->retention_days == 0)
        return 0;
    int64_t before = now - (int64_t)s->retention_days * DAY_MS;
    int64_t oldest = runs_oldest_created_ms(s->rs);
    return oldest < before ? oldest : before;
}

static void chunk(struct sweep *s)
{
    int64_t now = clock_wall_ms();
    int rc = store_runs_sweep(s->rs->o.store, cutoff_ms(s, now), now - RUNS_IDEM_TTL_MS,
                              SWEEP_CHUNK, swept_cb, s);
    if (rc == 0) {
        s->busy = true;
        return;
    }
    if (rc != -ECANCELED)
        log_warn("runs", "retention sweep: the store refused it (%s); it tries again in %llu s",
                 strerror(-rc), (unsigned long long)(s->interval_ms / 1000));
    round_done(s);
}

static void tick_cb(uv_timer_t *t)
{
    struct sweep *s = t->data;
    if (!s->busy) /* a round still going (a huge backlog) is not started twice */
        chunk(s);
}

struct sweep *sweep_new(struct runs *rs, uint32_t retention_days, uint64_t interval_ms)
{
    ASSERT(interval_ms > 0);
    struct sweep *s = xcalloc(1, sizeof(*s));
    s->rs = rs;
    s->retention_days = retention_days;
    s->interval_ms = interval_ms;
    const char *kind[] = {"kind"};
    s->m_swept = metrics_counter(rs->o.metrics, "arun_runs_swept_total",
                                 "Rows removed by the retention sweep (runs.retention_days; "
                                 "idempotency keys after 24 h)",
                                 1, kind);
    uv_timer_init(rs->o.loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, tick_cb, 0, interval_ms);
    return s;
}

void sweep_free(struct sweep *s)
{
    if (s == NULL)
        return;
    s->closing = true;
    uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
}

uint64_t sweep_interval_ms(void)
{
    const char *v = getenv(SWEEP_INTERVAL_ENV);
    if (v == NULL || *v == '\0')
        return SWEEP_INTERVAL_MS;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end != '\0' || errno != 0 || n == 0 || n > SWEEP_INTERVAL_MS) {
        log_warn("runs", "%s=%s is not an integer 1-%u; the sweep runs hourly", SWEEP_INTERVAL_ENV,
                 v, SWEEP_INTERVAL_MS);
        return SWEEP_INTERVAL_MS;
    }
    log_warn("runs", "%s=%llu: the retention sweep runs every %llu ms (a test setting)",
             SWEEP_INTERVAL_ENV, n, n);
    return n;
}
