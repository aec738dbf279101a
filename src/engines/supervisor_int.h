/*
 * supervisor_int.h: the supervisor's private state, shared by the files it is made of. Nothing
 * outside them includes it; other layers use supervisor.h.
 *
 *   supervisor.c          the state machine (the one setter and each state's entry work), the
 *                         engine timer, admission (sup_schedule), start-up, the public API
 *   supervisor_launch.c   ports, native spawns, containers and their followers
 *   supervisor_probe.c    health probes, loading, ready/unhealthy, load deadlines
 *   supervisor_stop.c     stops, kill escalation, exits, the restart policy
 *   supervisor_sampler.c  memory and progress sampling, pressure, idle unload
 *   supervisor_adopt.c    engine records, adoption, orphans, the environment-marker scan
 *
 * Private functions used across these files carry the prefix sup_. Invariants: only
 * sup_set_state() writes e->state and e->reason; every start is decided in sup_schedule(), and
 * none before adoption has settled (sup->ready); everything runs on the loop thread except the
 * work functions of uv_queue_work, which touch only their own request structs.
 */
#ifndef ARUN_ENGINES_SUPERVISOR_INT_H
#define ARUN_ENGINES_SUPERVISOR_INT_H

#include <h2o/linklist.h>

#include "engines/admission.h"
#include "engines/health.h"
#include "engines/manifest.h"
#include "engines/memory.h"
#include "engines/native.h"
#include "engines/proc.h"
#include "engines/record.h"
#include "engines/supervisor.h"

#define MAX_TRACKED_PIDS 256 /* processes tracked per engine; far more than any engine forks */
#define LOAD_HISTORY ENGINE_RECORD_LOADS /* past load durations kept (and recorded) */
#define PORT_AUTO_FIRST 41000            /* port: auto picks from this range */
#define PORT_AUTO_LAST 41999
#define LOG_POLL_MS 200 /* how often engine output written to the log file is picked up */

struct container_follow;
struct container_rt;
struct container_state;

struct supervisor_waiter {
    struct engine *e;
    supervisor_ready_cb cb;
    void *arg;
    h2o_linklist_t link; /* in sup->waiters */
};

struct engine {
    struct supervisor *sup;
    const struct config_engine *cfg;
    enum engine_state state;
    char reason[512];
    enum config_backend backend;
    char backend_reason[256];
    bool backend_ok; /* manifest_backend succeeded */
    char manifest_hash[17];
    uint16_t port;

    /* the running instance */
    struct native_child *child; /* native, spawned by this arun */
    pid_t pid;                  /* native: the engine's pid (= pgid); container: its init */
    uint64_t pid_start_ticks;
    bool adopted;          /* not our child: exit seen by sampling */
    bool adopted_instance; /* this instance came from a previous arun: not a load */
    char container_name[96];
    struct container_follow *follow;
    struct proc_id pids[MAX_TRACKED_PIDS];
    size_t npids;
    struct engine_log *log;
    struct health_probe *probe;
    uv_timer_t timer; /* probes while running, kill escalation while stopping,
                         backoff while failed */
    bool timer_closed;

    /* lifecycle facts */
    int64_t started_at_wall_ms; /* wall clock of the last spawn */
    uint64_t spawned_ms;        /* monotonic */
    uint64_t ready_ms;          /* monotonic, when it became ready */
    uint64_t state_ms;          /* monotonic, when the state was set */
    uint64_t last_load_ms;
    uint64_t loads[LOAD_HISTORY];
    size_t nloads;
    uint64_t last_progress_ms;
    enum health_outcome last_outcome;
    uint32_t probe_failures;
    uint64_t probe_gap_ms; /* the growing gap between probes while starting */
    char last_probe_detail[256];

    /* restarts */
    uint32_t restarts; /* total, for the API and metrics */
    uint64_t window_start_ms;
    uint32_t window_restarts;
    bool restart_pending; /* failed and waiting for its backoff */

    /* memory */
    uint64_t rss_bytes, peak_rss_bytes, read_bytes, vram_mb, peak_vram_mb;

    /* demand */
    uint32_t in_flight;
    uint32_t queued;
    uint64_t last_used_ms; /* monotonic, last request end (or ready) */
    bool want_start;       /* a start waits for admission */
    char start_why[128];
    bool stop_then_start; /* restart: start again once stopped */
    char stop_reason[256];
    bool stop_is_failure; /* a stop that ends in `failed` (memory, stall, health) */
    int fail_status;      /* what waiters hear when the next set_state() enters `failed`:
                             -ENOMEM (too large) or 0 for -EIO */
    uint64_t stop_deadline_ms;
    bool killed; /* SIGKILL sent */
};

struct supervisor {
    uv_loop_t *loop;
    const struct config *cfg;
    struct store *store;
    char record_ns[STORE_NS_MAX + 1]; /* the kv namespace of this node's engine records */
    struct events *events;
    struct metrics *metrics;
    struct httpc *httpc;
    const char *proc_root;
    struct engine *engines;
    size_t nengines;
    h2o_linklist_t waiters; /* supervisor_waiter.link: requests waiting for an engine */
    uv_timer_t sample_timer;
    uv_timer_t log_timer;
    bool sampling; /* a sample is in the worker */
    struct memory_gpu *gpu;
    struct admission_envelope envelope;
    struct memory_host host;
    double psi_full;
    uint64_t psi_holdoff_until_ms; /* no second pressure stop before this */
    struct {
        struct proc_id id;
        uint64_t kill_at_ms; /* SIGKILL if still alive then */
        char name[64];
    } orphans[SUPERVISOR_MAX_ORPHANS]; /* engines gone from the config, being stopped */
    size_t norphans;
    bool gpu_seen;               /* a GPU snapshot arrived */
    uint64_t gpu_free_mb;        /* free VRAM over all devices, from the last snapshot */
    uint64_t gpu_total_mb;       /* VRAM over all devices, from the last snapshot */
    uint64_t vram_wait_until_ms; /* after a GPU engine stopped: wait for its VRAM until then */
    struct container_rt *crt;
    bool container_detected;
    char container_why[256];
    int adopting;       /* adoption steps in flight at start-up */
    bool marks_scanned; /* the scan for marked engine processes ran (after the records) */
    bool ready;         /* start-up done: backends known, adoption finished */
    bool shutting_down;
    void (*shutdown_cb)(void *);
    void *shutdown_arg;
    int closing;
    int works; /* uv_queue_work items in flight (sampler, start-up) */
    bool freeing;
    struct metrics_family *m_state, *m_restarts, *m_load, *m_rss;
};

/* ---- supervisor.c ---- */

/* The one state setter: asserts the transition, logs and publishes it, then does the entry work
 * of s (see supervisor.c). fmt (NULL: no reason) becomes e->reason. */
void sup_set_state(struct engine *e, enum engine_state s, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Takes every start decision that admission allows now (no-op before start-up is done). */
void sup_schedule(struct supervisor *sup);
/* (Re)arms the engine's one timer; what it does when it fires depends on the state. */
void sup_arm_timer(struct engine *e, uint64_t ms);
/* Calls the shutdown callback once shutting down and no engine runs any more. */
void sup_check_shutdown_done(struct supervisor *sup);
/* Frees the supervisor once supervisor_free() was called and nothing is in flight. */
void sup_free_if_done(struct supervisor *sup);

/* ---- supervisor_launch.c ---- */

/* Starts the engine now (admission already said yes): -> starting, or -> failed with why. */
void sup_spawn_engine(struct engine *e);
/* Container output into the engine's log (a container_logs_follow callback). */
void sup_on_container_output(int stream, const char *p, size_t n, void *arg);
/* The container's log follower ended: checks whether the container did. */
void sup_container_follow_exit_cb(int status, void *arg);

/* ---- supervisor_probe.c ---- */

/* Probes soon (PROBE_FIRST_MS), then at a pace that slows while it starts. */
void sup_start_probing(struct engine *e);
/* Sends one probe now; its answer drives the state. */
void sup_send_probe(struct engine *e);
/* Cancels a probe in flight (its callback never runs). */
void sup_cancel_probe(struct engine *e);
/* Fails a load past health.start_timeout_s or stalled for health.stall_timeout_s (begins the
 * stop). Returns true when it did. */
bool sup_check_load_deadlines(struct engine *e);
/* Notes the duration of a load that just ended (history, metric, record). */
void sup_record_load(struct engine *e);

/* ---- supervisor_stop.c ---- */

/* Stops the engine with a reason; failure: the stop ends in `failed` (and the restart policy)
 * instead of `stopped`. A stopped engine just takes the reason. */
void sup_begin_stop(struct engine *e, bool failure, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* While stopping: escalates to SIGKILL at the deadline; finishes when nothing is alive. */
void sup_stop_timer_fired(struct engine *e);
/* The instance is gone (exited, or stopped and nothing left). known: status/sig are real (not
 * an adopted process seen gone by sampling). */
void sup_on_gone(struct engine *e, int64_t status, int sig, bool known);
/* native_spawn's exit callback for an engine's child. */
void sup_on_native_exit(struct native_child *c, int64_t status, int sig, void *arg);

/* ---- supervisor_sampler.c ---- */

/* The sample timer: queues one sample on a worker unless one is in flight. */
void sup_sample_timer_cb(uv_timer_t *t);
/* The log timer: picks up what native engines wrote to their log files. */
void sup_log_timer_cb(uv_timer_t *t);

/* ---- supervisor_adopt.c ---- */

/* Saves the engine's record (pid, start time, port, manifest, loads) for a later arun. */
void sup_record_save(struct engine *e);
/* Reads the records, lists containers and orphans, scans for marked processes; the supervisor
 * becomes ready when all of it has settled. */
void sup_begin_adoption(struct supervisor *sup);
/* Orphans past their grace get SIGKILL (called by the sampler). */
void sup_reap_orphans(struct supervisor *sup);
/* SIGKILL to every orphan still in its grace (a clean shutdown leaves none). */
void sup_kill_orphans(struct supervisor *sup);

/* ---- small facts ---- */

static inline bool sup_running(const struct engine *e)
{
    return e->state == ENGINE_STARTING || e->state == ENGINE_LOADING || e->state == ENGINE_READY ||
           e->state == ENGINE_UNHEALTHY || e->state == ENGINE_STOPPING;
}

static inline uint64_t sup_need_ram_mb(const struct engine *e)
{
    uint64_t peak = e->peak_rss_bytes >> 20;
    return e->cfg->memory.ram_mb > peak ? e->cfg->memory.ram_mb : peak;
}

static inline uint64_t sup_need_vram_mb(const struct engine *e)
{
    return e->cfg->memory.vram_mb > e->peak_vram_mb ? e->cfg->memory.vram_mb : e->peak_vram_mb;
}

static inline struct manifest_vars sup_vars_of(const struct engine *e)
{
    return (struct manifest_vars){
        .name = e->cfg->name, .port = e->port, .data_dir = e->sup->cfg->data_dir};
}

#endif
