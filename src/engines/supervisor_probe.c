/*
 * supervisor_probe.c: health probes of a running engine and what their answers mean: starting
 * -> loading -> ready, ready <-> unhealthy, a remote API reachable or not, and the load
 * deadlines (health.start_timeout_s, health.stall_timeout_s) that fail a load that stalls. The
 * probe pace is fast while an engine starts and the configured interval once it is up.
 */
#include "engines/supervisor_int.h"

#include <errno.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "engines/container.h"
#include "engines/health.h"
#include "engines/logs.h"
#include "engines/manifest.h"
#include "engines/memory.h"
#include "engines/native.h"
#include "engines/proc.h"

static void on_probe(const struct health_result *r, void *arg);

#define PROBE_FIRST_MS 5 /* the first probe after spawn: fast engines are up by then */

#define PROBE_STARTING_MAX_MS 250 /* while starting, the gap doubles up to this */

static uint64_t probe_interval(struct engine *e)
{
    /* While starting, probe soon and then less often (5, 10, 20 … 250 ms), so a fast engine is
     * seen ready at once and a slow one costs a few probes a second; the configured interval
     * applies once it is up. */
    uint64_t iv = e->cfg->health.interval_ms;
    if (e->backend == CONFIG_BACKEND_REMOTE)
        return iv; /* a hosted API is not loading: probe it at the configured pace */
    if (e->state == ENGINE_STARTING || e->state == ENGINE_LOADING) {
        e->probe_gap_ms = e->probe_gap_ms ? e->probe_gap_ms * 2 : PROBE_FIRST_MS;
        if (e->probe_gap_ms > PROBE_STARTING_MAX_MS)
            e->probe_gap_ms = PROBE_STARTING_MAX_MS;
        return iv < e->probe_gap_ms ? iv : e->probe_gap_ms;
    }
    return iv;
}

void sup_send_probe(struct engine *e)
{
    struct manifest_vars v = sup_vars_of(e);
    /* A completion probe waits for a free slot like any request: on an engine whose slots are
     * all answering it times out, and a busy engine is not a broken one (llama-server with
     * -np 1 flapped to unhealthy during every long answer). While requests are in flight their
     * answers show whether completions work; the health path shows the process is alive. */
    bool deep = e->cfg->health.probe == CONFIG_PROBE_COMPLETION && e->state == ENGINE_READY &&
                e->in_flight == 0;
    int rc = health_probe_start(e->sup->loop, e->sup->httpc, e->cfg, e->port, deep, &v, on_probe, e,
                                &e->probe);
    if (rc != 0) {
        e->probe = NULL;
        struct health_result r = {.outcome = HEALTH_BAD};
        snprintf(r.detail, sizeof(r.detail), "health probe could not start: %s", strerror(-rc));
        on_probe(&r, e);
    }
}

void sup_start_probing(struct engine *e)
{
    e->probe_gap_ms = 0;
    sup_arm_timer(e, PROBE_FIRST_MS);
}

void sup_record_load(struct engine *e)
{
    uint64_t ms = clock_mono_ms() - e->spawned_ms;
    e->last_load_ms = ms;
    if (e->nloads == LOAD_HISTORY) {
        memmove(e->loads, e->loads + 1, (LOAD_HISTORY - 1) * sizeof(uint64_t));
        e->nloads--;
    }
    e->loads[e->nloads++] = ms;
    metrics_observe(e->sup->m_load, (double)ms / 1000.0, (const char *const[]){e->cfg->name});
    sup_record_save(e);
}

static void on_probe(const struct health_result *r, void *arg)
{
    struct engine *e = arg;
    e->probe = NULL;
    if (!(e->state == ENGINE_STARTING || e->state == ENGINE_LOADING || e->state == ENGINE_READY ||
          e->state == ENGINE_UNHEALTHY))
        return;
    if (r->outcome != e->last_outcome)
        e->last_progress_ms = clock_mono_ms(); /* a change in the answer is progress */
    e->last_outcome = r->outcome;
    snprintf(e->last_probe_detail, sizeof(e->last_probe_detail), "%s", r->detail);

    switch (e->state) {
    case ENGINE_STARTING:
    case ENGINE_LOADING:
        if (r->outcome == HEALTH_OK)
            sup_set_state(e, ENGINE_READY, NULL);
        else if (e->backend == CONFIG_BACKEND_REMOTE)
            sup_set_state(e, ENGINE_STARTING, "the remote API at %s is not reachable: %s",
                          e->cfg->url, r->detail[0] ? r->detail : "no answer");
        else if (r->outcome == HEALTH_LOADING && e->state == ENGINE_STARTING)
            sup_set_state(e, ENGINE_LOADING, "loading (the engine answers 503 while it loads)");
        break;
    case ENGINE_READY:
    case ENGINE_UNHEALTHY:
        if (r->outcome == HEALTH_OK) {
            e->probe_failures = 0;
            if (e->state == ENGINE_UNHEALTHY)
                sup_set_state(e, ENGINE_READY, NULL);
        } else if (++e->probe_failures >= e->cfg->health.failures) {
            sup_set_state(e, ENGINE_UNHEALTHY, "%s (%u times in a row)",
                          r->detail[0] ? r->detail : "health probe failed", e->probe_failures);
        }
        break;
    default:
        break;
    }
    if (sup_running(e) && e->state != ENGINE_STOPPING)
        sup_arm_timer(e, probe_interval(e));
}

/* Loading may take as long as it needs while it shows progress; it fails when it stalls or
 * passes the hard cap (issue: fixed load timeouts kill healthy slow loads). */
bool sup_check_load_deadlines(struct engine *e)
{
    uint64_t now = clock_mono_ms();
    uint64_t out_ms = engine_log_last_output_ms(e->log);
    if (out_ms > e->last_progress_ms)
        e->last_progress_ms = out_ms;
    if (now - e->spawned_ms > (uint64_t)e->cfg->health.start_timeout_s * 1000) {
        sup_begin_stop(e, true, "did not become ready within health.start_timeout_s (%u s)",
                       e->cfg->health.start_timeout_s);
        return true;
    }
    if (now - e->last_progress_ms > (uint64_t)e->cfg->health.stall_timeout_s * 1000) {
        sup_begin_stop(e, true,
                       "stalled while %s: no log output, no disk reads, no memory growth "
                       "and no change in its health answer for %u s (health.stall_timeout_s)",
                       engine_state_name(e->state), e->cfg->health.stall_timeout_s);
        return true;
    }
    return false;
}

void sup_cancel_probe(struct engine *e)
{
    if (e->probe != NULL) {
        health_probe_cancel(e->probe);
        e->probe = NULL;
    }
}
