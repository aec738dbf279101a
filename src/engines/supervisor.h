/*
 * supervisor.h: the engine supervisor. It owns every engine's lifecycle (contract section 4,
 * design.md "Engine lifecycle"): starting on demand or always, health probing, recognising a
 * load (llama.cpp's 503 "Loading model") and a stall, restarts by policy with backoff, the
 * node's memory envelope (admission, eviction of idle engines least recently used first,
 * exclusive groups, idle unload), watching real memory use, adoption of engines that outlived
 * an arun crash, and clean stops that leave no process behind.
 *
 * One owner: every start/stop decision is made here, on the loop thread, so two requests can
 * never race a swap. Other layers ask (supervisor_start_engine, supervisor_wait_ready) and are
 * told (callbacks, events on the bus).
 */
#ifndef ARUN_ENGINES_SUPERVISOR_H
#define ARUN_ENGINES_SUPERVISOR_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "core/config.h"
#include "core/events.h"
#include "http/httpc.h"
#include "core/metrics.h"
#include "store/store.h"

enum engine_state {
    ENGINE_STOPPED,
    ENGINE_STARTING, /* spawned, no answer yet */
    ENGINE_LOADING,  /* answers, not ready (503) */
    ENGINE_READY,
    ENGINE_UNHEALTHY, /* was ready, probes fail */
    ENGINE_STOPPING,
    ENGINE_FAILED,
};

#define SUPERVISOR_RESTART_WINDOW_S 600 /* restart.max counts restarts within this window */
#define SUPERVISOR_BACKOFF_MAX_MS 60000 /* exponential backoff stops growing here */
#define SUPERVISOR_SAMPLE_MS 1000       /* memory and progress sampling period */
#define SUPERVISOR_PSI_STOP_PCT 40.0    /* PSI "full avg10" that makes arun stop a grower */
#define SUPERVISOR_PSI_HOLDOFF_MS 30000 /* after a pressure stop, the next waits this long */
/* After a GPU engine stopped, a start that needs VRAM waits at most this long for it to show
 * free (drivers release it after the process is gone). */
#define SUPERVISOR_VRAM_WAIT_MS 30000
#define SUPERVISOR_MAX_ORPHANS 64        /* orphans tracked until gone, per start-up */
#define SUPERVISOR_ORPHAN_GRACE_MS 10000 /* an orphan gets SIGKILL this long after SIGTERM */

struct supervisor;
struct engine;
struct engine_log;

struct supervisor_options {
    uv_loop_t *loop;
    const struct config *cfg; /* not owned; outlives the supervisor */
    struct store *store;      /* engine records for adoption; may be NULL (tests) */
    struct events *events;
    struct metrics *metrics;
    struct httpc *httpc;
    const char *nvml_path; /* NULL = libnvidia-ml.so.1 */
    const char *proc_root; /* NULL = /proc */
};

/* Called when an engine became ready (status 0), or cannot become ready now (-errno, with the
 * reason in words). Used by the gateway to hold requests while an engine starts. */
typedef void (*supervisor_ready_cb)(struct engine *e, int status, const char *reason, void *arg);

struct supervisor *supervisor_new(const struct supervisor_options *o);
/* Adopts engines that survived the previous arun, cleans up leftovers, starts `always`
 * engines. Asynchronous; returns at once. */
void supervisor_run(struct supervisor *sup);
/* Stops every engine (a clean shutdown of arun stops its engines), then calls done. */
void supervisor_shutdown(struct supervisor *sup, void (*done)(void *arg), void *arg);
/* Frees after shutdown (closes handles; run the loop to finish). */
void supervisor_free(struct supervisor *sup);

struct engine *supervisor_find(struct supervisor *sup, const char *name);
/* The engine that serves a model name or alias; NULL when none. */
struct engine *supervisor_find_model(struct supervisor *sup, const char *model);
size_t supervisor_count(const struct supervisor *sup);
struct engine *supervisor_engine_at(struct supervisor *sup, size_t i);

/* Asks for an engine to run (API start, or a request for it). Admission may first stop idle
 * engines. Returns 0 (starting, or already running), or -errno with why filled (too large for
 * the envelope, start: manual asked by a request, failed precheck). */
int supervisor_start_engine(struct engine *e, const char *why_start, struct buf *why) MUST_USE;
/* Stops an engine (API). reason is shown while it stops and after. */
void supervisor_stop_engine(struct engine *e, const char *reason);
/* Stops and starts again (a stopped engine is just started). Returns as
 * supervisor_start_engine. */
int supervisor_restart_engine(struct engine *e, struct buf *why) MUST_USE;
/* Calls cb once the engine is ready or cannot become ready (see supervisor_ready_cb). It
 * starts nothing: the caller asks for a start (and checks start: manual) first. Returns a
 * handle to cancel. */
struct supervisor_waiter *supervisor_wait_ready(struct engine *e, supervisor_ready_cb cb,
                                                void *arg);
void supervisor_cancel_wait(struct supervisor_waiter *w);
/* The gateway's accounting: a request is in flight at the engine (busy engines are never
 * evicted; ttl_s counts from the last finished request). */
void supervisor_request_begin(struct engine *e);
void supervisor_request_end(struct engine *e);
void supervisor_set_queued(struct engine *e, uint32_t queued);

/* The node's memory as the console shows it (GET /v1/node, the stats ring's node samples), in
 * MiB. Each *_known is false while the number is not measured (before the first sample; no
 * GPU). */
struct supervisor_node_use {
    uint64_t ram_total_mb;     /* MemTotal */
    uint64_t ram_envelope_mb;  /* what engines may use (node.ram_mb or MemTotal - reserve) */
    uint64_t ram_declared_mb;  /* memory.ram_mb (or the peak, if larger) of running engines */
    uint64_t ram_used_mb;      /* the whole node's use: MemTotal - MemAvailable */
    uint64_t vram_total_mb;    /* every GPU's memory */
    uint64_t vram_envelope_mb; /* node.vram_mb or the GPUs' total */
    uint64_t vram_declared_mb; /* memory.vram_mb (or the peak) of running engines */
    uint64_t vram_used_mb;     /* in use on every GPU, by anyone */
    bool ram_known;            /* ram_total_mb and ram_used_mb were measured */
    bool vram_known;           /* a GPU snapshot arrived: vram_total_mb and vram_used_mb */
};

/* Fills out from the last sample (no I/O: loop thread, any time). */
void supervisor_node_use(const struct supervisor *sup, struct supervisor_node_use *out);

/* Read access. */
const char *engine_name(const struct engine *e);
enum engine_state engine_state(const struct engine *e);
const char *engine_state_name(enum engine_state s);
const char *engine_reason(const struct engine *e);
uint16_t engine_port(const struct engine *e);
const struct config_engine *engine_config(const struct engine *e);
enum config_backend engine_backend(const struct engine *e);
/* What a load of this engine takes, the average of the last ENGINE_RECORD_LOADS (kept in its
 * record, so it survives a restart of arun); -1 before the first. */
int64_t engine_expected_load_ms(const struct engine *e);
/* While starting or loading: milliseconds until ready as past loads suggest; -1 unknown. */
int64_t engine_expected_ready_ms(const struct engine *e);
/* The engine's log (tail, followers); NULL when it could not be opened. */
struct engine_log *supervisor_engine_log(struct engine *e);
/* The engine as GET /v1/engines/NAME shows it (contract section 4). */
json_t *engine_to_json(const struct engine *e);

#endif
