/*
 * supervisor.c: engine lifecycles, admission and the memory envelope. See supervisor.h.
 *
 * DESIGN
 * Each engine is a state machine; set_state() is the only writer of e->state and e->reason.
 * It asserts that the transition is allowed, logs it, notes it in the engine's log, publishes an
 * `engine.state` event, updates the state metric and then does the new state's entry work
 * (curl multi.c's mstate()): entering `ready` wakes the requests waiting for the engine and runs
 * admission again, entering `stopping`, `stopped` or `failed` turns them away unless a start of
 * the engine is already decided. So no path into a state can forget what that state promises.
 * The process work stays with the callers: spawn_engine (-> starting), on_probe
 * (-> loading/ready/unhealthy), begin_stop (-> stopping), on_gone (-> stopped/failed, then the
 * restart policy).
 *
 * Admission. An engine may start when its need, max(declared, peak seen), fits in the node's
 * envelope minus what running engines need. When it does not, idle engines (no request in
 * flight, ready for at least min_resident_s) are stopped least recently used first; the start
 * waits in `pending` until their processes are gone and their memory is back, then starts.
 * Engines of one exclusive group are treated like that too, without the residency rule. Every
 * decision is taken in schedule(), which runs whenever something that affects it changes, so
 * there is exactly one place where engines are started for admission and stopped for room.
 *
 * Processes. A native engine runs in its own session (pid = pgid = sid). Every sample
 * (SUPERVISOR_SAMPLE_MS) a worker thread reads the process table and computes each engine's
 * tree: descendants, group and session members, and the recorded pid set, so a process that
 * leaves the group is still found, measured and killed. A stop signals the group and every
 * recorded pid, SIGKILLs them after stop_timeout_s, and the engine is `stopped` only when none
 * of them is alive.
 *
 * Adoption. The engine's pid, its start time, port and manifest hash are stored (kv namespace
 * "engines") when it is spawned. A new arun reads them: a process still alive with the same
 * start time is adopted (probed, not restarted); remnants of one that died are killed. Output
 * goes straight to the log file (native.c), so an engine keeps logging while arun is away.
 */
#include "engines/supervisor.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "engines/container.h"
#include "engines/health.h"
#include "engines/logs.h"
#include "engines/manifest.h"
#include "engines/memory.h"
#include "engines/native.h"
#include "engines/proc.h"

#define MAX_TRACKED_PIDS 256 /* processes tracked per engine; far more than any engine forks */
#define LOAD_HISTORY 8       /* past load durations kept for the remaining-time estimate */
#define STORE_NS "engines"
#define PORT_AUTO_FIRST 41000
#define PORT_AUTO_LAST 41999
#define LOG_POLL_MS 200
/* Growth per sample that counts as loading progress. Reads include socket reads (rchar), so a
 * floor keeps our own health probes (a few hundred bytes a second) from looking like progress;
 * a model being read moves megabytes. */
#define PROGRESS_READ_BYTES (256u * 1024)
#define PROGRESS_RSS_BYTES                                                                         \
    (1u << 20) /* how often engine output written to the log file is picked up */

static const char *const state_names[] = {"stopped",   "starting", "loading", "ready",
                                          "unhealthy", "stopping", "failed"};

struct supervisor_waiter {
    struct engine *e;
    supervisor_ready_cb cb;
    void *arg;
    struct supervisor_waiter *prev, *next;
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
    struct events *events;
    struct metrics *metrics;
    struct httpc *httpc;
    const char *proc_root;
    struct engine *engines;
    size_t nengines;
    struct supervisor_waiter *waiters;
    uv_timer_t sample_timer;
    uv_timer_t log_timer;
    bool sampling; /* a sample is in the worker */
    struct memory_gpu *gpu;
    uint64_t ram_envelope_mb, vram_envelope_mb;
    char envelope_why[256];
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

static void schedule(struct supervisor *sup);
static void begin_stop(struct engine *e, bool failure, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void arm_timer(struct engine *e, uint64_t ms);
static void record_save(struct engine *e);
static void check_shutdown_done(struct supervisor *sup);
static void free_if_done(struct supervisor *sup);
static void reap_orphans(struct supervisor *sup);

/* ---- small facts ---- */

const char *engine_state_name(enum engine_state s)
{
    return state_names[s];
}

static bool running(const struct engine *e)
{
    return e->state == ENGINE_STARTING || e->state == ENGINE_LOADING || e->state == ENGINE_READY ||
           e->state == ENGINE_UNHEALTHY || e->state == ENGINE_STOPPING;
}

static uint64_t need_ram_mb(const struct engine *e)
{
    uint64_t peak = e->peak_rss_bytes >> 20;
    return e->cfg->memory.ram_mb > peak ? e->cfg->memory.ram_mb : peak;
}

static uint64_t need_vram_mb(const struct engine *e)
{
    return e->cfg->memory.vram_mb > e->peak_vram_mb ? e->cfg->memory.vram_mb : e->peak_vram_mb;
}

static struct manifest_vars vars_of(const struct engine *e)
{
    return (struct manifest_vars){
        .name = e->cfg->name, .port = e->port, .data_dir = e->sup->cfg->data_dir};
}

/* ---- waiters (requests holding for an engine) ---- */

static void waiter_unlink(struct supervisor *sup, struct supervisor_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        sup->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
}

static void notify_waiters(struct engine *e, int status, const char *reason)
{
    struct supervisor *sup = e->sup;
    struct supervisor_waiter *w = sup->waiters;
    while (w != NULL) {
        struct supervisor_waiter *next = w->next;
        if (w->e == e) {
            waiter_unlink(sup, w);
            w->cb(e, status, reason, w->arg);
            free(w);
        }
        w = next;
    }
}

/* ---- the one state setter ---- */

static void record_load(struct engine *e);

/* Which states each state may move to (a bit per target). Staying in a state to change only its
 * reason is always allowed. `ready` is entered only from starting, loading or unhealthy, so its
 * entry work below is the one place where waiting requests are woken. */
#define TO(s) (1u << (s))
static const unsigned allowed_next[] = {
    [ENGINE_STOPPED] = TO(ENGINE_STARTING) | TO(ENGINE_FAILED),
    [ENGINE_STARTING] = TO(ENGINE_LOADING) | TO(ENGINE_READY) | TO(ENGINE_STOPPING) |
                        TO(ENGINE_STOPPED) | TO(ENGINE_FAILED),
    [ENGINE_LOADING] = TO(ENGINE_STARTING) | TO(ENGINE_READY) | TO(ENGINE_STOPPING) |
                       TO(ENGINE_STOPPED) | TO(ENGINE_FAILED),
    [ENGINE_READY] =
        TO(ENGINE_UNHEALTHY) | TO(ENGINE_STOPPING) | TO(ENGINE_STOPPED) | TO(ENGINE_FAILED),
    [ENGINE_UNHEALTHY] =
        TO(ENGINE_READY) | TO(ENGINE_STOPPING) | TO(ENGINE_STOPPED) | TO(ENGINE_FAILED),
    [ENGINE_STOPPING] = TO(ENGINE_STOPPED) | TO(ENGINE_FAILED),
    [ENGINE_FAILED] = TO(ENGINE_STARTING) | TO(ENGINE_STOPPED),
};
#undef TO

/* Whether a start of this engine is already decided, so requests waiting for it keep waiting
 * through a stop or a failure instead of being turned away. */
static bool start_follows(const struct engine *e)
{
    return e->want_start || e->stop_then_start || e->restart_pending;
}

/* Each state's entry work (curl multi.c's mstate() init functions). Runs after the transition
 * is logged and published, so work that moves the engine on (schedule() may start another
 * engine, a waiter may ask for a stop) sees the new state. A new reason for the same state runs
 * it too (old == state): a `failed` engine that fails again still turns its waiters away. */
static void enter_state(struct engine *e, enum engine_state old, int fail_status)
{
    switch (e->state) {
    case ENGINE_STARTING:
        if (old != ENGINE_STARTING && old != ENGINE_LOADING)
            e->spawned_ms = e->last_progress_ms = clock_mono_ms();
        break;
    case ENGINE_READY:
        if (old == ENGINE_READY)
            break;
        if (old == ENGINE_STARTING || old == ENGINE_LOADING) {
            if (!e->adopted_instance && e->backend != CONFIG_BACKEND_REMOTE)
                record_load(e);
            e->ready_ms = e->last_used_ms = clock_mono_ms();
        }
        e->probe_failures = 0;
        notify_waiters(e, 0, NULL);
        schedule(e->sup);
        break;
    case ENGINE_STOPPING:
        if (old == ENGINE_STOPPING)
            break;
        e->stop_deadline_ms = clock_mono_ms() + (uint64_t)e->cfg->stop_timeout_s * 1000;
        if (!start_follows(e))
            notify_waiters(e, -ECANCELED, e->reason);
        break;
    case ENGINE_STOPPED:
        if (!start_follows(e))
            notify_waiters(e, -ECANCELED, e->reason);
        break;
    case ENGINE_FAILED:
        if (!start_follows(e))
            notify_waiters(e, fail_status ? fail_status : -EIO, e->reason);
        break;
    case ENGINE_LOADING:
    case ENGINE_UNHEALTHY:
        break; /* requests keep waiting: it may still become ready */
    }
}

static void set_state(struct engine *e, enum engine_state s, const char *fmt, ...)
    PRINTF_LIKE(3, 4);

static void set_state(struct engine *e, enum engine_state s, const char *fmt, ...)
{
    struct supervisor *sup = e->sup;
    enum engine_state old = e->state;
    char reason[sizeof(e->reason)] = "";
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
    }
    int fail_status = e->fail_status;
    e->fail_status = 0;
    if (old == s && strcmp(reason, e->reason) == 0)
        return;
    ASSERT(old == s || (allowed_next[old] & (1u << s)) != 0);
    e->state = s;
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
    e->state_ms = clock_mono_ms();

    enum log_level lvl = s == ENGINE_FAILED || s == ENGINE_UNHEALTHY ? LOGL_WARN : LOGL_INFO;
    LOG_AT(lvl, "engines", NULL, 0,
           json_pack("{s:s, s:s, s:s, s:s}", "engine", e->cfg->name, "from", state_names[old], "to",
                     state_names[s], "reason", reason),
           "%s: %s -> %s%s%s", e->cfg->name, state_names[old], state_names[s],
           reason[0] ? ": " : "", reason);
    if (e->log != NULL)
        engine_log_note(e->log, "%s%s%s", state_names[s], reason[0] ? ": " : "", reason);
    events_publish(sup->events, "engine.state",
                   json_pack("{s:s, s:s, s:s, s:s}", "engine", e->cfg->name, "from",
                             state_names[old], "state", state_names[s], "reason", reason));
    for (size_t i = 0; i < ARRAY_SIZE(state_names); i++)
        metrics_set(sup->m_state, i == (size_t)s,
                    (const char *const[]){e->cfg->name, state_names[i]});
    enter_state(e, old, fail_status);
}

/* ---- store records (adoption) ---- */

static void record_saved_cb(int status, void *arg)
{
    if (status != 0)
        log_warn_errno("engines", status,
                       "could not save an engine record; adoption after a "
                       "crash may not find it");
}

static void record_save(struct engine *e)
{
    if (e->sup->store == NULL)
        return;
    json_t *loads = json_array();
    for (size_t i = 0; i < e->nloads; i++)
        json_array_append_new(loads, json_integer((json_int_t)e->loads[i]));
    json_t *j = json_pack(
        "{s:i, s:I, s:i, s:s, s:s, s:s, s:I, s:o, s:i}", "pid", (int)e->pid, "start_ticks",
        (json_int_t)e->pid_start_ticks, "port", e->port, "backend", config_backend_name(e->backend),
        "container", e->container_name, "manifest", e->manifest_hash, "started_at_ms",
        (json_int_t)e->started_at_wall_ms, "loads", loads, "restarts", (int)e->restarts);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (store_kv_put(e->sup->store, STORE_NS, e->cfg->name, s, strlen(s), record_saved_cb, e) != 0)
        log_warn("engines", "%s: engine record not saved (store busy or closing)", e->cfg->name);
    free(s);
}

/* ---- spawning ---- */

static bool port_taken_by_engine(struct supervisor *sup, const struct engine *self, uint16_t p)
{
    for (size_t i = 0; i < sup->nengines; i++) {
        const struct engine *o = &sup->engines[i];
        if (o != self && o->port == p && (running(o) || o->cfg->port == p))
            return true;
    }
    return false;
}

static int pick_port(struct engine *e, struct buf *why)
{
    struct supervisor *sup = e->sup;
    if (e->cfg->port != CONFIG_AUTO) {
        e->port = (uint16_t)e->cfg->port;
        return 0;
    }
    /* Start where the name hashes to, so an engine tends to get the same port each time. */
    uint32_t h = 2166136261u;
    for (const char *p = e->cfg->name; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    uint32_t span = PORT_AUTO_LAST - PORT_AUTO_FIRST + 1;
    for (uint32_t i = 0; i < span; i++) {
        uint16_t p = (uint16_t)(PORT_AUTO_FIRST + (h + i) % span);
        struct buf tmp;
        buf_init(&tmp, 256);
        char *argv[] = {"/bin/true", NULL};
        bool free_port =
            !port_taken_by_engine(sup, e, p) && native_precheck(argv, NULL, p, &tmp) == 0;
        buf_cleanup(&tmp);
        if (free_port) {
            e->port = p;
            return 0;
        }
    }
    IGNORE_RESULT(
        buf_printf(why, "no free port in %d-%d for port: auto", PORT_AUTO_FIRST, PORT_AUTO_LAST));
    return -EADDRINUSE;
}

static void on_native_exit(struct native_child *c, int64_t status, int sig, void *arg);
static void start_probing(struct engine *e);

static int spawn_native(struct engine *e, struct buf *why)
{
    struct manifest_vars v = vars_of(e);
    char **argv = NULL, **env = NULL;
    int rc = manifest_argv(e->cfg->cmd, &v, &argv, why);
    if (rc == 0)
        rc = manifest_env(e->cfg, &v, &env, why);
    if (rc == 0)
        rc = native_precheck(argv, e->cfg->cwd, e->port, why);
    int fd = -1;
    if (rc == 0) {
        fd = engine_log_child_fd(e->log);
        if (fd < 0) {
            IGNORE_RESULT(buf_printf(why, "cannot open the log file %s: %s",
                                     engine_log_path(e->log), strerror(-fd)));
            rc = fd;
        }
    }
    if (rc == 0)
        rc = native_spawn(e->sup->loop, argv, env, e->cfg->cwd, fd, on_native_exit, e, &e->child,
                          why);
    if (fd >= 0)
        close(fd);
    if (rc == 0) {
        e->pid = native_child_pid(e->child);
        if (proc_start_ticks(e->sup->proc_root, e->pid, &e->pid_start_ticks) != 0)
            e->pid_start_ticks = 0;
        e->pids[0] = (struct proc_id){.pid = e->pid, .start_ticks = e->pid_start_ticks};
        e->npids = 1;
        struct buf cmdline;
        buf_init(&cmdline, 2048);
        for (char **a = argv; *a != NULL; a++)
            IGNORE_RESULT(buf_printf(&cmdline, "%s%s", a == argv ? "" : " ", *a));
        engine_log_note(e->log, "started pid %d: %s", (int)e->pid, buf_cstr(&cmdline));
        buf_cleanup(&cmdline);
    }
    manifest_argv_free(argv);
    manifest_argv_free(env);
    return rc;
}

static void container_started_cb(int status, const char *out, const char *why, void *arg);

static int run_container(struct engine *e, struct buf *why)
{
    struct manifest_vars v = vars_of(e);
    const struct config_engine *c = e->cfg;
    char **args = xcalloc(c->nargs + 1, sizeof(char *));
    struct config_kv *env = xcalloc(c->nenv + 1, sizeof(*env));
    int rc = 0;
    for (size_t i = 0; i < c->nargs && rc == 0; i++)
        rc = manifest_expand(c->args[i], &v, &args[i], why);
    for (size_t i = 0; i < c->nenv && rc == 0; i++) {
        env[i].key = c->env[i].key;
        rc = manifest_expand(c->env[i].value, &v, &env[i].value, why);
    }
    char label_engine[128], label_manifest[64];
    snprintf(label_engine, sizeof(label_engine), "arun.engine=%s", c->name);
    snprintf(label_manifest, sizeof(label_manifest), "arun.manifest=%s", e->manifest_hash);
    const char *labels[] = {label_engine, label_manifest};
    if (rc == 0) {
        struct container_spec s = {.name = e->container_name,
                                   .image = c->image,
                                   .args = (const char *const *)args,
                                   .nargs = c->nargs,
                                   .env = env,
                                   .nenv = c->nenv,
                                   .labels = labels,
                                   .nlabels = 2,
                                   .host_port = e->port,
                                   .container_port = e->port,
                                   .memory_mb = c->memory.ram_mb,
                                   .gpus = c->memory.vram_mb > 0};
        rc = container_run(e->sup->crt, &s, container_started_cb, e);
        if (rc != 0)
            IGNORE_RESULT(buf_printf(why, "cannot run %s: %s", container_rt_name(e->sup->crt),
                                     strerror(-rc)));
    }
    for (size_t i = 0; i < c->nargs; i++)
        free(args[i]);
    for (size_t i = 0; i < c->nenv; i++)
        free(env[i].value);
    free(args);
    free(env);
    return rc;
}

/* A failed `run` can leave a created container holding the name: remove it first. */
static void stale_removed_cb(int status, const char *out, const char *why_rm, void *arg)
{
    struct engine *e = arg;
    if (e->state != ENGINE_STARTING)
        return;
    struct buf why;
    buf_init(&why, 1024);
    if (run_container(e, &why) != 0) {
        set_state(e, ENGINE_FAILED, "%s", buf_cstr(&why));
    }
    buf_cleanup(&why);
}

static int spawn_container(struct engine *e, struct buf *why)
{
    snprintf(e->container_name, sizeof(e->container_name), "arun-%s", e->cfg->name);
    int rc = container_rm(e->sup->crt, e->container_name, stale_removed_cb, e);
    if (rc != 0)
        IGNORE_RESULT(
            buf_printf(why, "cannot run %s: %s", container_rt_name(e->sup->crt), strerror(-rc)));
    else
        engine_log_note(e->log, "starting container %s from %s", e->container_name, e->cfg->image);
    return rc;
}

/* Starts the engine now (admission already said yes). */
static void spawn_engine(struct engine *e)
{
    struct buf why;
    buf_init(&why, 1024);
    e->want_start = false;
    e->restart_pending = false;
    e->killed = false;
    e->adopted = false;
    e->adopted_instance = false;
    e->probe_failures = 0;
    e->last_outcome = HEALTH_DOWN;
    e->npids = 0;
    e->pid = 0;
    e->rss_bytes = e->read_bytes = e->vram_mb = 0;
    if (e->log == NULL) {
        set_state(e, ENGINE_FAILED,
                  "its log file under %s/logs could not be opened (see arun's "
                  "log); an engine is never run without its log",
                  e->sup->cfg->data_dir);
        return;
    }
    engine_log_begin_run(e->log); /* a crash reason must quote this run, not the last */
    if (e->backend == CONFIG_BACKEND_REMOTE && e->backend_ok) {
        /* No process: the state comes from probing the API (GET url/models). */
        buf_cleanup(&why);
        e->spawned_ms = e->last_progress_ms = clock_mono_ms();
        e->started_at_wall_ms = clock_wall_ms();
        set_state(e, ENGINE_STARTING, "checking the remote API at %s", e->cfg->url);
        start_probing(e);
        return;
    }
    int rc = e->backend_ok ? pick_port(e, &why) : -ENOTSUP;
    if (!e->backend_ok)
        IGNORE_RESULT(buf_puts(&why, e->backend_reason));
    if (rc == 0)
        rc = e->backend == CONFIG_BACKEND_CONTAINER ? spawn_container(e, &why)
                                                    : spawn_native(e, &why);
    if (rc != 0) {
        set_state(e, ENGINE_FAILED, "%s", buf_cstr(&why));
        buf_cleanup(&why);
        return;
    }
    buf_cleanup(&why);
    e->spawned_ms = e->last_progress_ms = clock_mono_ms();
    e->started_at_wall_ms = clock_wall_ms();
    set_state(e, ENGINE_STARTING, "spawned, waiting for it to answer on port %u", e->port);
    if (e->backend == CONFIG_BACKEND_NATIVE) {
        record_save(e);
        start_probing(e);
    }
}

/* ---- containers ---- */

static void on_container_output(int stream, const char *p, size_t n, void *arg)
{
    struct engine *e = arg;
    engine_log_feed(e->log, stream, p, n);
}

static void on_gone(struct engine *e, int64_t status, int sig, bool known);

static void container_inspect_exit_cb(int status, const struct container_state *st, const char *why,
                                      void *arg)
{
    struct engine *e = arg;
    if (!running(e))
        return;
    if (status == 0 && st->running)
        return; /* the follower ended, the container did not */
    on_gone(e, status == 0 ? st->exit_code : -1, 0, status == 0);
}

static void container_follow_exit_cb(int status, void *arg)
{
    struct engine *e = arg;
    e->follow = NULL;
    if (running(e) &&
        container_inspect(e->sup->crt, e->container_name, container_inspect_exit_cb, e) != 0)
        on_gone(e, -1, 0, false);
}

static void container_pid_cb(int status, const struct container_state *st, const char *why,
                             void *arg)
{
    struct engine *e = arg;
    if (status == 0 && st->running && running(e)) {
        e->pid = st->pid;
        if (proc_start_ticks(e->sup->proc_root, e->pid, &e->pid_start_ticks) != 0)
            e->pid_start_ticks = 0;
        record_save(e);
    }
}

static void container_started_cb(int status, const char *out, const char *why, void *arg)
{
    struct engine *e = arg;
    if (e->state != ENGINE_STARTING)
        return;
    if (status != 0) {
        set_state(e, ENGINE_FAILED, "container did not start: %s", why);
        schedule(e->sup);
        return;
    }
    engine_log_note(e->log, "container %s started: %.12s", e->container_name, out);
    if (container_logs_follow(e->sup->crt, e->container_name, on_container_output,
                              container_follow_exit_cb, e, &e->follow) != 0)
        e->follow = NULL;
    IGNORE_RESULT(container_inspect(e->sup->crt, e->container_name, container_pid_cb, e));
    start_probing(e);
}

static void container_removed_cb(int status, const char *out, const char *why, void *arg)
{
    struct engine *e = arg;
    if (status != 0)
        log_warn("engines", "%s: could not remove container %s: %s", e->cfg->name,
                 e->container_name, why);
    if (e->state == ENGINE_STOPPING)
        on_gone(e, 0, 0, false);
}

static void container_stopped_cb(int status, const char *out, const char *why, void *arg)
{
    struct engine *e = arg;
    if (e->follow != NULL) {
        container_follow_stop(e->follow);
        e->follow = NULL;
    }
    if (container_rm(e->sup->crt, e->container_name, container_removed_cb, e) != 0)
        container_removed_cb(-EIO, "", "rm could not be started", e);
}

/* ---- probing ---- */

static void on_probe(const struct health_result *r, void *arg);

#define PROBE_FIRST_MS 5          /* the first probe after spawn: fast engines are up by then */
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

static void timer_cb(uv_timer_t *t);

static void arm_timer(struct engine *e, uint64_t ms)
{
    uv_timer_start(&e->timer, timer_cb, ms, 0);
}

static void send_probe(struct engine *e)
{
    struct manifest_vars v = vars_of(e);
    bool deep = e->cfg->health.probe == CONFIG_PROBE_COMPLETION && e->state == ENGINE_READY;
    int rc = health_probe_start(e->sup->loop, e->sup->httpc, e->cfg, e->port, deep, &v, on_probe, e,
                                &e->probe);
    if (rc != 0) {
        e->probe = NULL;
        struct health_result r = {.outcome = HEALTH_BAD};
        snprintf(r.detail, sizeof(r.detail), "health probe could not start: %s", strerror(-rc));
        on_probe(&r, e);
    }
}

static void start_probing(struct engine *e)
{
    e->probe_gap_ms = 0;
    arm_timer(e, PROBE_FIRST_MS);
}

static void record_load(struct engine *e)
{
    uint64_t ms = clock_mono_ms() - e->spawned_ms;
    e->last_load_ms = ms;
    if (e->nloads == LOAD_HISTORY) {
        memmove(e->loads, e->loads + 1, (LOAD_HISTORY - 1) * sizeof(uint64_t));
        e->nloads--;
    }
    e->loads[e->nloads++] = ms;
    metrics_observe(e->sup->m_load, (double)ms / 1000.0, (const char *const[]){e->cfg->name});
    record_save(e);
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
            set_state(e, ENGINE_READY, NULL);
        else if (e->backend == CONFIG_BACKEND_REMOTE)
            set_state(e, ENGINE_STARTING, "the remote API at %s is not reachable: %s", e->cfg->url,
                      r->detail[0] ? r->detail : "no answer");
        else if (r->outcome == HEALTH_LOADING && e->state == ENGINE_STARTING)
            set_state(e, ENGINE_LOADING, "loading (the engine answers 503 while it loads)");
        break;
    case ENGINE_READY:
    case ENGINE_UNHEALTHY:
        if (r->outcome == HEALTH_OK) {
            e->probe_failures = 0;
            if (e->state == ENGINE_UNHEALTHY)
                set_state(e, ENGINE_READY, NULL);
        } else if (++e->probe_failures >= e->cfg->health.failures) {
            set_state(e, ENGINE_UNHEALTHY, "%s (%u times in a row)",
                      r->detail[0] ? r->detail : "health probe failed", e->probe_failures);
        }
        break;
    default:
        break;
    }
    if (running(e) && e->state != ENGINE_STOPPING)
        arm_timer(e, probe_interval(e));
}

/* Loading may take as long as it needs while it shows progress; it fails when it stalls or
 * passes the hard cap (issue: fixed load timeouts kill healthy slow loads). */
static bool check_load_deadlines(struct engine *e)
{
    uint64_t now = clock_mono_ms();
    uint64_t out_ms = engine_log_last_output_ms(e->log);
    if (out_ms > e->last_progress_ms)
        e->last_progress_ms = out_ms;
    if (now - e->spawned_ms > (uint64_t)e->cfg->health.start_timeout_s * 1000) {
        begin_stop(e, true, "did not become ready within health.start_timeout_s (%u s)",
                   e->cfg->health.start_timeout_s);
        return true;
    }
    if (now - e->last_progress_ms > (uint64_t)e->cfg->health.stall_timeout_s * 1000) {
        begin_stop(e, true,
                   "stalled while %s: no log output, no disk reads, no memory growth "
                   "and no change in its health answer for %u s (health.stall_timeout_s)",
                   state_names[e->state], e->cfg->health.stall_timeout_s);
        return true;
    }
    return false;
}

/* ---- stopping ---- */

static void stop_timer_fired(struct engine *e);

static void timer_cb(uv_timer_t *t)
{
    struct engine *e = t->data;
    switch (e->state) {
    case ENGINE_STARTING:
    case ENGINE_LOADING:
        if ((e->backend == CONFIG_BACKEND_REMOTE || !check_load_deadlines(e)) && e->probe == NULL)
            send_probe(e);
        break;
    case ENGINE_READY:
    case ENGINE_UNHEALTHY:
        if (e->probe == NULL)
            send_probe(e);
        break;
    case ENGINE_STOPPING:
        stop_timer_fired(e);
        break;
    case ENGINE_FAILED:
        if (e->restart_pending) {
            e->restart_pending = false;
            e->want_start = true;
            snprintf(e->start_why, sizeof(e->start_why), "restart policy");
            schedule(e->sup);
        }
        break;
    case ENGINE_STOPPED:
        break;
    }
}

static void cancel_probe(struct engine *e)
{
    if (e->probe != NULL) {
        health_probe_cancel(e->probe);
        e->probe = NULL;
    }
}

static void run_stop_cmd(struct engine *e)
{
    struct manifest_vars v = vars_of(e);
    char **argv;
    struct buf why;
    buf_init(&why, 512);
    if (manifest_argv(e->cfg->stop_cmd, &v, &argv, &why) == 0) {
        struct native_child *c;
        buf_reset(&why);
        /* The stop command's own exit is not awaited: the engine's exit is what counts. */
        if (native_spawn(e->sup->loop, argv, NULL, e->cfg->cwd, -1, NULL, NULL, &c, &why) == 0)
            native_child_free(c);
        manifest_argv_free(argv);
    }
    if (why.len > 0)
        engine_log_note(e->log, "stop_cmd failed: %s; sending SIGTERM", buf_cstr(&why));
    buf_cleanup(&why);
}

static void begin_stop(struct engine *e, bool failure, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->stop_reason, sizeof(e->stop_reason), fmt, ap);
    va_end(ap);
    e->stop_is_failure = failure;
    if (e->state == ENGINE_STOPPING)
        return;
    cancel_probe(e);
    e->want_start = false;
    if (!running(e)) {
        set_state(e, ENGINE_STOPPED, "%s", e->stop_reason);
        return;
    }
    set_state(e, ENGINE_STOPPING, "%s", e->stop_reason);
    if (e->backend == CONFIG_BACKEND_REMOTE) {
        on_gone(e, 0, 0, false);
        return;
    }
    if (e->backend == CONFIG_BACKEND_CONTAINER && e->container_name[0]) {
        if (container_stop(e->sup->crt, e->container_name, e->cfg->stop_timeout_s,
                           container_stopped_cb, e) != 0)
            container_stopped_cb(-EIO, "", "stop could not be started", e);
        arm_timer(e, (uint64_t)e->cfg->stop_timeout_s * 1000 + 10000);
        return;
    }
    if (e->cfg->stop_cmd != NULL && !failure)
        run_stop_cmd(e);
    else
        native_signal_all(e->pid, e->pids, e->npids, SIGTERM);
    arm_timer(e, 100);
}

/* While stopping: escalate to SIGKILL at the deadline, and finish when nothing is alive. */
static void stop_timer_fired(struct engine *e)
{
    if (e->backend == CONFIG_BACKEND_CONTAINER) {
        log_warn("engines", "%s: container %s did not stop in time; removing it by force",
                 e->cfg->name, e->container_name);
        on_gone(e, -1, SIGKILL, false);
        return;
    }
    size_t alive = 0;
    for (size_t i = 0; i < e->npids; i++)
        alive += proc_alive(e->sup->proc_root, e->pids[i]);
    native_reap_orphans(e->pids, e->npids, e->child ? e->pid : 0);
    if (alive == 0 && e->child == NULL) {
        on_gone(e, 0, 0, false);
        return;
    }
    if (!e->killed && clock_mono_ms() >= e->stop_deadline_ms) {
        e->killed = true;
        engine_log_note(e->log,
                        "still running %u s after SIGTERM: sending SIGKILL to %zu "
                        "processes",
                        e->cfg->stop_timeout_s, alive);
        log_warn("engines", "%s: did not stop within stop_timeout_s (%u s); SIGKILL", e->cfg->name,
                 e->cfg->stop_timeout_s);
        native_signal_all(e->pid, e->pids, e->npids, SIGKILL);
    }
    arm_timer(e, 100);
}

/* ---- exits and the restart policy ---- */

static void apply_restart_policy(struct engine *e, bool clean_exit, const char *what)
{
    const struct config_engine *c = e->cfg;
    bool restart = c->restart.policy == CONFIG_RESTART_ALWAYS ||
                   (c->restart.policy == CONFIG_RESTART_ON_FAILURE && !clean_exit);
    if (!restart || e->sup->shutting_down) {
        set_state(e, clean_exit ? ENGINE_STOPPED : ENGINE_FAILED, "%s", what);
        return;
    }
    uint64_t now = clock_mono_ms();
    if (now - e->window_start_ms > SUPERVISOR_RESTART_WINDOW_S * 1000ull) {
        e->window_start_ms = now;
        e->window_restarts = 0;
    }
    if (e->window_restarts >= c->restart.max) {
        set_state(e, ENGINE_FAILED, "%s; gave up after %u restarts within %d s (restart.max)", what,
                  e->window_restarts, SUPERVISOR_RESTART_WINDOW_S);
        return;
    }
    e->window_restarts++;
    e->restarts++;
    uint64_t backoff = c->restart.backoff_ms;
    for (uint32_t i = 1; i < e->window_restarts && backoff < SUPERVISOR_BACKOFF_MAX_MS; i++)
        backoff *= 2;
    if (backoff > SUPERVISOR_BACKOFF_MAX_MS)
        backoff = SUPERVISOR_BACKOFF_MAX_MS;
    metrics_add(e->sup->m_restarts, 1, (const char *const[]){c->name});
    e->restart_pending = true;
    set_state(e, ENGINE_FAILED, "%s; restart %u/%u in %.1f s", what, e->window_restarts,
              c->restart.max, (double)backoff / 1000.0);
    events_publish(e->sup->events, "engine.restart",
                   json_pack("{s:s, s:i, s:i, s:I, s:s}", "engine", c->name, "attempt",
                             (int)e->window_restarts, "max", (int)c->restart.max, "backoff_ms",
                             (json_int_t)backoff, "reason", what));
    engine_log_note(e->log, "restart %u/%u in %.1f s", e->window_restarts, c->restart.max,
                    (double)backoff / 1000.0);
    arm_timer(e, backoff);
}

/* The engine's instance is gone (exited, or stopped and nothing is left). known: status/sig
 * are real (not an adopted process seen gone by sampling). */
static void on_gone(struct engine *e, int64_t status, int sig, bool known)
{
    struct supervisor *sup = e->sup;
    bool was_stopping = e->state == ENGINE_STOPPING;
    cancel_probe(e);
    uv_timer_stop(&e->timer);
    engine_log_poll(e->log);
    engine_log_flush(e->log);
    if (e->follow != NULL) {
        container_follow_stop(e->follow);
        e->follow = NULL;
    }
    /* Kill whatever the engine left behind (a grandchild that ignores SIGTERM). */
    if (e->backend != CONFIG_BACKEND_CONTAINER && e->npids > 0)
        native_signal_all(e->pid, e->pids, e->npids, SIGKILL);
    double up_s = (double)(clock_mono_ms() - e->spawned_ms) / 1000.0;
    if (e->vram_mb > 0 || e->cfg->memory.vram_mb > 0)
        sup->vram_wait_until_ms = clock_mono_ms() + SUPERVISOR_VRAM_WAIT_MS;
    e->pid = 0;
    e->npids = 0;
    e->rss_bytes = 0;
    record_save(e);

    if (was_stopping) {
        /* A restart is decided before the state is set, so waiting requests keep waiting. */
        bool again = e->stop_then_start && !sup->shutting_down;
        e->stop_then_start = false;
        e->want_start = again;
        if (e->stop_is_failure) {
            if (e->cfg->restart.policy != CONFIG_RESTART_NEVER && !sup->shutting_down && !again)
                apply_restart_policy(e, false, e->stop_reason);
            else
                set_state(e, ENGINE_FAILED, "%s", e->stop_reason);
        } else {
            set_state(e, ENGINE_STOPPED, "%s", e->stop_reason);
        }
        schedule(sup);
        check_shutdown_done(sup);
        return;
    }
    struct buf what;
    buf_init(&what, 1024);
    if (known)
        native_describe_exit(status, sig, &what);
    else
        IGNORE_RESULT(buf_puts(&what, "exited (it was adopted from a previous arun, so its exit "
                                      "code is unknown)"));
    IGNORE_RESULT(buf_printf(&what, " after %.1f s", up_s));
    const char *last = engine_log_last_line(e->log);
    if (last != NULL)
        IGNORE_RESULT(buf_printf(&what, ": %.200s", last));
    IGNORE_RESULT(buf_printf(&what, " (see %s)", engine_log_path(e->log)));
    engine_log_note(e->log, "%s", buf_cstr(&what));
    apply_restart_policy(e, known && status == 0 && sig == 0, buf_cstr(&what));
    buf_cleanup(&what);
    schedule(sup);
    check_shutdown_done(sup);
}

static void on_native_exit(struct native_child *c, int64_t status, int sig, void *arg)
{
    struct engine *e = arg;
    native_child_free(c);
    e->child = NULL;
    if (e->state == ENGINE_STOPPING) {
        /* Our child is gone; others of its tree may remain: the stop timer finishes. */
        stop_timer_fired(e);
        return;
    }
    on_gone(e, status, sig, true);
}

/* ---- admission ---- */

static bool evictable(const struct engine *o, uint64_t now, bool ignore_residency)
{
    if (!(o->state == ENGINE_READY || o->state == ENGINE_UNHEALTHY))
        return false;
    if (o->in_flight > 0 || o->queued > 0)
        return false;
    return ignore_residency || now - o->ready_ms >= (uint64_t)o->cfg->min_resident_s * 1000;
}

/* What engines that are running (or about to) hold of the envelope. */
static void in_use(struct supervisor *sup, const struct engine *except, uint64_t *ram,
                   uint64_t *vram)
{
    *ram = *vram = 0;
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *o = &sup->engines[i];
        if (o == except || !running(o) || o->backend == CONFIG_BACKEND_REMOTE)
            continue;
        *ram += need_ram_mb(o);
        *vram += need_vram_mb(o);
    }
}

static bool fits(struct supervisor *sup, struct engine *e)
{
    uint64_t ram, vram;
    in_use(sup, e, &ram, &vram);
    return ram + need_ram_mb(e) <= sup->ram_envelope_mb &&
           vram + need_vram_mb(e) <= sup->vram_envelope_mb;
}

static bool stopping_any(struct supervisor *sup)
{
    for (size_t i = 0; i < sup->nengines; i++)
        if (sup->engines[i].state == ENGINE_STOPPING)
            return true;
    return false;
}

static struct engine *lru_victim(struct supervisor *sup, struct engine *for_e)
{
    uint64_t now = clock_mono_ms();
    struct engine *best = NULL;
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *o = &sup->engines[i];
        if (o == for_e || o->backend == CONFIG_BACKEND_REMOTE || !evictable(o, now, false))
            continue;
        if (best == NULL || o->last_used_ms < best->last_used_ms)
            best = o;
    }
    return best;
}

/* The driver frees a process's GPU memory some time after the process is gone (Ollama
 * #7606 #9926): a start that needs VRAM waits until the GPU shows it free, for at most
 * SUPERVISOR_VRAM_WAIT_MS after the last GPU engine stopped. */
static bool vram_not_back(struct supervisor *sup, struct engine *e)
{
    uint64_t need = need_vram_mb(e);
    if (need == 0 || !sup->gpu_seen || sup->gpu_free_mb >= need)
        return false;
    if (clock_mono_ms() >= sup->vram_wait_until_ms) {
        if (sup->vram_wait_until_ms != 0)
            log_warn("engines",
                     "%s: starting although the GPU shows only %" PRIu64 " MiB free "
                     "(needs %" PRIu64 "): waited %d s for memory to be released",
                     e->cfg->name, sup->gpu_free_mb, need, SUPERVISOR_VRAM_WAIT_MS / 1000);
        sup->vram_wait_until_ms = 0;
        return false;
    }
    set_state(e, e->state,
              "waiting for GPU memory: needs %" PRIu64 " MiB, %" PRIu64 " MiB free "
              "while the driver releases what a stopped engine held",
              need, sup->gpu_free_mb);
    return true;
}

/* Refuses a start that can never fit, with the numbers. Returns true when refused. */
static bool too_large(struct supervisor *sup, struct engine *e)
{
    uint64_t ram = need_ram_mb(e), vram = need_vram_mb(e);
    if (ram <= sup->ram_envelope_mb && vram <= sup->vram_envelope_mb)
        return false;
    e->want_start = false;
    e->fail_status = -ENOMEM;
    if (vram > sup->vram_envelope_mb)
        set_state(e, ENGINE_FAILED,
                  "needs %" PRIu64 " MiB of VRAM, the node's envelope is %" PRIu64 " MiB (%s)",
                  vram, sup->vram_envelope_mb, sup->envelope_why);
    else
        set_state(e, ENGINE_FAILED,
                  "needs %" PRIu64 " MiB of RAM, the node's envelope is %" PRIu64 " MiB (%s)", ram,
                  sup->ram_envelope_mb, sup->envelope_why);
    return true;
}

/* Tries to admit one waiting engine. Returns true when it started (or waits on stops). */
static void admit(struct supervisor *sup, struct engine *e)
{
    if (too_large(sup, e))
        return;
    /* An exclusive group: every other member must be stopped first. */
    bool group_busy = false;
    for (size_t i = 0; e->cfg->group && i < sup->nengines; i++) {
        struct engine *o = &sup->engines[i];
        if (o == e || o->cfg->group == NULL || strcmp(o->cfg->group, e->cfg->group) != 0 ||
            !running(o))
            continue;
        group_busy = true;
        if (o->state != ENGINE_STOPPING && o->in_flight == 0 && o->queued == 0)
            begin_stop(o, false, "stopped for %s (exclusive group %s)", e->cfg->name,
                       e->cfg->group);
    }
    if (group_busy)
        return;
    /* Engines that are stopping still count in fits(): a start that needs their memory waits
     * until their processes are gone (Ollama #7606), one that fits beside them goes now. */
    if (fits(sup, e)) {
        if (vram_not_back(sup, e))
            return; /* the sampler calls schedule() again with the next reading */
        spawn_engine(e);
        return;
    }
    /* Stops already under way may make room: evict nobody else until they are done. */
    if (stopping_any(sup))
        return;
    struct engine *victim = lru_victim(sup, e);
    if (victim != NULL) {
        uint64_t ram, vram;
        in_use(sup, e, &ram, &vram);
        log_info("engines", "evicting %s (idle, least recently used) to make room for %s",
                 victim->cfg->name, e->cfg->name);
        events_publish(sup->events, "engine.evict",
                       json_pack("{s:s, s:s}", "engine", victim->cfg->name, "for", e->cfg->name));
        begin_stop(victim, false,
                   "evicted to make room for %s (needs %" PRIu64 " MiB RAM, %" PRIu64
                   " MiB VRAM; in use %" PRIu64 " of %" PRIu64 " MiB RAM)",
                   e->cfg->name, need_ram_mb(e), need_vram_mb(e), ram, sup->ram_envelope_mb);
        return;
    }
    {
        char who[256] = "";
        for (size_t i = 0; i < sup->nengines; i++) {
            struct engine *o = &sup->engines[i];
            if (o != e && running(o))
                snprintf(who + strlen(who), sizeof(who) - strlen(who), "%s%s (%s%s)",
                         who[0] ? ", " : "", o->cfg->name, o->in_flight ? "busy" : "resident", "");
        }
        set_state(e, e->state,
                  "waiting for room: needs %" PRIu64 " MiB RAM and %" PRIu64
                  " MiB VRAM; held by %s",
                  need_ram_mb(e), need_vram_mb(e), who[0] ? who : "nothing evictable");
    }
}

static void schedule(struct supervisor *sup)
{
    if (sup->shutting_down || !sup->ready)
        return;
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        if (e->want_start && !running(e))
            admit(sup, e);
        else if (e->want_start && running(e) && e->state != ENGINE_STOPPING)
            e->want_start = false;
    }
}

/* ---- the sampler: memory, progress, exits of adopted engines ---- */

struct sample {
    uv_work_t work;
    struct supervisor *sup;
    size_t n;
    struct {
        pid_t root;
        struct proc_id known[MAX_TRACKED_PIDS];
        size_t nknown;
        struct proc_id found[MAX_TRACKED_PIDS];
        size_t nfound;
        uint64_t rss, read;
        uint64_t vram_mb;
    } * eng;
    struct memory_host host;
    bool host_ok;
    double psi_some, psi_full;
    bool psi_ok;
    struct memory_gpu_snapshot gpu;
    bool gpu_ok;
    bool procs_failed;
};

static void sample_work(uv_work_t *w)
{
    struct sample *s = w->data;
    struct proc_table t = {0};
    s->host_ok = memory_host_read(s->sup->proc_root, &s->host) == 0;
    s->psi_ok = memory_psi_read(s->sup->proc_root, &s->psi_some, &s->psi_full) == 0;
    s->gpu_ok = s->sup->gpu != NULL && memory_gpu_read(s->sup->gpu, &s->gpu) == 0;
    if (proc_table_read(s->sup->proc_root, &t) != 0) {
        s->procs_failed = true; /* not "every engine vanished": skip this sample */
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->eng[i].root <= 0)
            continue;
        s->eng[i].nfound = proc_tree(&t, s->eng[i].root, s->eng[i].known, s->eng[i].nknown,
                                     s->eng[i].found, MAX_TRACKED_PIDS);
        proc_sum(&t, s->eng[i].found, s->eng[i].nfound, &s->eng[i].rss, &s->eng[i].read);
        for (size_t k = 0; s->gpu_ok && k < s->gpu.nprocs; k++)
            for (size_t j = 0; j < s->eng[i].nfound; j++)
                if (s->gpu.procs[k].pid == s->eng[i].found[j].pid)
                    s->eng[i].vram_mb += s->gpu.procs[k].used_mb;
    }
    proc_table_free(&t);
}

static void merge_pids(struct engine *e, const struct proc_id *found, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool known = false;
        for (size_t k = 0; k < e->npids && !known; k++)
            known =
                e->pids[k].pid == found[i].pid && e->pids[k].start_ticks == found[i].start_ticks;
        if (!known && e->npids < MAX_TRACKED_PIDS)
            e->pids[e->npids++] = found[i];
    }
}

static void check_memory(struct engine *e)
{
    uint64_t declared = e->cfg->memory.ram_mb;
    uint64_t used_mb = e->rss_bytes >> 20;
    if (declared > 0 && used_mb > declared && e->state != ENGINE_STOPPING) {
        begin_stop(e, true,
                   "killed: used %.1f GiB of RAM, its envelope (memory.ram_mb) is %.1f "
                   "GiB",
                   (double)e->rss_bytes / (1 << 30), (double)declared / 1024);
        e->stop_then_start = false;
        native_signal_all(e->pid, e->pids, e->npids, SIGKILL);
        e->killed = true;
    }
    if (e->cfg->memory.vram_mb > 0 && e->vram_mb > e->cfg->memory.vram_mb &&
        e->state != ENGINE_STOPPING)
        begin_stop(e, true,
                   "killed: used %" PRIu64 " MiB of VRAM, its envelope "
                   "(memory.vram_mb) is %" PRIu64 " MiB",
                   e->vram_mb, e->cfg->memory.vram_mb);
}

static void check_pressure(struct supervisor *sup)
{
    /* avg10 falls slowly after a stop: hold off, or one pressure spike would stop them all. */
    if (sup->psi_full < SUPERVISOR_PSI_STOP_PCT || clock_mono_ms() < sup->psi_holdoff_until_ms)
        return;
    struct engine *worst = NULL;
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        if (running(e) && e->state != ENGINE_STOPPING &&
            (worst == NULL || e->rss_bytes > worst->rss_bytes))
            worst = e;
    }
    if (worst != NULL && worst->rss_bytes > 0)
        sup->psi_holdoff_until_ms = clock_mono_ms() + SUPERVISOR_PSI_HOLDOFF_MS;
    if (worst != NULL && worst->rss_bytes > 0)
        begin_stop(worst, true,
                   "stopped: the machine is under memory pressure (PSI full avg10 "
                   "%.0f%%) and this engine uses the most memory (%.1f GiB)",
                   sup->psi_full, (double)worst->rss_bytes / (1 << 30));
}

static void idle_unload(struct engine *e)
{
    uint64_t now = clock_mono_ms();
    if (e->cfg->ttl_s == 0 || e->state != ENGINE_READY || e->in_flight > 0 || e->queued > 0)
        return;
    if (now - e->last_used_ms >= (uint64_t)e->cfg->ttl_s * 1000)
        begin_stop(e, false, "idle for %u s (ttl_s)", e->cfg->ttl_s);
}

static void sample_done(uv_work_t *w, int status)
{
    struct sample *s = w->data;
    struct supervisor *sup = s->sup;
    sup->sampling = false;
    sup->works--;
    if (sup->freeing) {
        /* arun is going away: the sample is not wanted, only the supervisor waited for it. */
        free(s->eng);
        free(s);
        free_if_done(sup);
        return;
    }
    if (s->host_ok)
        sup->host = s->host;
    if (s->psi_ok)
        sup->psi_full = s->psi_full;
    if (s->gpu_ok && s->gpu.ndevices > 0) {
        uint64_t free_mb = 0;
        for (int d = 0; d < s->gpu.ndevices; d++)
            free_mb += s->gpu.dev[d].total_mb > s->gpu.dev[d].used_mb
                           ? s->gpu.dev[d].total_mb - s->gpu.dev[d].used_mb
                           : 0;
        sup->gpu_seen = true;
        sup->gpu_free_mb = free_mb;
    }
    for (size_t i = 0; i < s->n && i < sup->nengines && status == 0 && !s->procs_failed; i++) {
        struct engine *e = &sup->engines[i];
        if (s->eng[i].root <= 0 || e->pid != s->eng[i].root || !running(e))
            continue;
        merge_pids(e, s->eng[i].found, s->eng[i].nfound);
        native_reap_orphans(e->pids, e->npids, e->child ? e->pid : 0);
        if (s->eng[i].read > e->read_bytes + PROGRESS_READ_BYTES ||
            s->eng[i].rss > e->rss_bytes + PROGRESS_RSS_BYTES || s->eng[i].vram_mb > e->vram_mb)
            e->last_progress_ms = clock_mono_ms();
        e->rss_bytes = s->eng[i].rss;
        e->read_bytes = s->eng[i].read;
        e->vram_mb = s->eng[i].vram_mb;
        if (e->rss_bytes > e->peak_rss_bytes)
            e->peak_rss_bytes = e->rss_bytes;
        if (e->vram_mb > e->peak_vram_mb)
            e->peak_vram_mb = e->vram_mb;
        if (e->adopted && s->eng[i].nfound == 0 && e->state != ENGINE_STOPPING) {
            on_gone(e, -1, 0, false);
            continue;
        }
        check_memory(e);
        idle_unload(e);
    }
    check_pressure(sup);
    reap_orphans(sup);
    free(s->eng);
    free(s);
    schedule(sup);
}

static void sample_timer_cb(uv_timer_t *t)
{
    struct supervisor *sup = t->data;
    if (sup->sampling)
        return;
    struct sample *s = xcalloc(1, sizeof(*s));
    s->sup = sup;
    s->n = sup->nengines;
    s->eng = xcalloc(s->n ? s->n : 1, sizeof(*s->eng));
    for (size_t i = 0; i < s->n; i++) {
        struct engine *e = &sup->engines[i];
        if (!running(e) || e->pid <= 0)
            continue;
        s->eng[i].root = e->pid;
        memcpy(s->eng[i].known, e->pids, e->npids * sizeof(struct proc_id));
        s->eng[i].nknown = e->npids;
    }
    s->work.data = s;
    sup->sampling = true;
    sup->works++;
    if (uv_queue_work(sup->loop, &s->work, sample_work, sample_done) != 0) {
        sup->works--;
        sup->sampling = false;
        free(s->eng);
        free(s);
    }
}

static void log_timer_cb(uv_timer_t *t)
{
    struct supervisor *sup = t->data;
    for (size_t i = 0; i < sup->nengines; i++)
        if (sup->engines[i].log != NULL && sup->engines[i].backend != CONFIG_BACKEND_CONTAINER)
            engine_log_poll(sup->engines[i].log);
}

/* ---- start-up: envelope, container CLI, backends, adoption ---- */

struct init_work {
    uv_work_t work;
    struct supervisor *sup;
    const char *nvml_path;
    struct memory_gpu *gpu;
    struct memory_gpu_snapshot snap;
    bool snap_ok;
    struct memory_host host;
    bool host_ok;
    struct buf why;
};

static void compute_envelope(struct supervisor *sup, const struct init_work *w)
{
    const struct config *cfg = sup->cfg;
    uint64_t gpu_total = 0;
    for (int i = 0; w->snap_ok && i < w->snap.ndevices; i++)
        gpu_total += w->snap.dev[i].total_mb;
    if (cfg->node.ram_mb == CONFIG_AUTO) {
        uint64_t total = w->host_ok ? w->host.total_mb : 0;
        uint64_t reserve = (uint64_t)cfg->node.reserve_mb;
        sup->ram_envelope_mb = total > reserve ? total - reserve : 0;
    } else {
        sup->ram_envelope_mb = (uint64_t)cfg->node.ram_mb;
    }
    sup->vram_envelope_mb =
        cfg->node.vram_mb == CONFIG_AUTO ? gpu_total : (uint64_t)cfg->node.vram_mb;
    snprintf(sup->envelope_why, sizeof(sup->envelope_why), "RAM %s, VRAM %s: %s",
             cfg->node.ram_mb == CONFIG_AUTO ? "MemTotal minus node.reserve_mb" : "node.ram_mb",
             cfg->node.vram_mb == CONFIG_AUTO ? "from the GPUs" : "node.vram_mb",
             buf_cstr(&w->why));
    log_info("engines", "memory envelope: %" PRIu64 " MiB RAM, %" PRIu64 " MiB VRAM (%s)",
             sup->ram_envelope_mb, sup->vram_envelope_mb, sup->envelope_why);
}

static void init_work_cb(uv_work_t *w)
{
    struct init_work *iw = w->data;
    iw->host_ok = memory_host_read(iw->sup->proc_root, &iw->host) == 0;
    iw->gpu = memory_gpu_open(iw->nvml_path, &iw->why);
    iw->snap_ok = iw->gpu != NULL && memory_gpu_read(iw->gpu, &iw->snap) == 0;
}

static void resolve_backends(struct supervisor *sup)
{
    struct manifest_host host = {.container_ok = sup->crt != NULL,
                                 .container_why = sup->container_why};
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        struct buf reason;
        buf_init(&reason, sizeof(e->backend_reason) - 1);
        e->backend_ok = manifest_backend(sup->cfg, e->cfg, &host, &e->backend, &reason) == 0;
        snprintf(e->backend_reason, sizeof(e->backend_reason), "%s", buf_cstr(&reason));
        buf_cleanup(&reason);
        log_info("engines", "%s: backend %s: %s", e->cfg->name, config_backend_name(e->backend),
                 e->backend_reason);
        if (!e->backend_ok)
            set_state(e, ENGINE_FAILED, "cannot run here: %s", e->backend_reason);
    }
}

static void adoption_step_done(struct supervisor *sup);

static void adopt(struct engine *e, json_t *rec)
{
    pid_t pid = (pid_t)json_integer_value(json_object_get(rec, "pid"));
    uint64_t ticks = (uint64_t)json_integer_value(json_object_get(rec, "start_ticks"));
    const char *hash = json_string_value(json_object_get(rec, "manifest"));
    json_t *loads = json_object_get(rec, "loads");
    size_t i;
    json_t *v;
    json_array_foreach(loads, i, v)
    {
        if (e->nloads < LOAD_HISTORY)
            e->loads[e->nloads++] = (uint64_t)json_integer_value(v);
    }
    if (e->nloads > 0)
        e->last_load_ms = e->loads[e->nloads - 1];
    e->restarts = (uint32_t)json_integer_value(json_object_get(rec, "restarts"));
    if (pid <= 0 || e->backend != CONFIG_BACKEND_NATIVE)
        return;
    struct proc_id id = {.pid = pid, .start_ticks = ticks};
    bool alive = proc_alive(e->sup->proc_root, id);
    bool same = hash != NULL && strcmp(hash, e->manifest_hash) == 0;
    if (!alive) {
        size_t n = native_signal_all(pid, NULL, 0, SIGKILL);
        if (n > 0)
            log_warn("engines",
                     "%s: pid %d from a previous arun is gone; killed what was left "
                     "of its process group",
                     e->cfg->name, (int)pid);
        return;
    }
    if (!same) {
        log_warn("engines", "%s: pid %d from a previous arun runs an older manifest; stopping it",
                 e->cfg->name, (int)pid);
        native_signal_all(pid, &id, 1, SIGKILL);
        return;
    }
    e->pid = pid;
    e->pid_start_ticks = ticks;
    e->pids[0] = id;
    e->npids = 1;
    e->adopted = true;
    e->adopted_instance = true;
    e->port = (uint16_t)json_integer_value(json_object_get(rec, "port"));
    e->started_at_wall_ms = json_integer_value(json_object_get(rec, "started_at_ms"));
    e->spawned_ms = e->last_progress_ms = clock_mono_ms();
    engine_log_note(e->log, "adopted pid %d from a previous arun (port %u)", (int)pid, e->port);
    set_state(e, ENGINE_STARTING, "adopted pid %d from a previous arun; probing it", (int)pid);
    start_probing(e);
}

static void record_read_cb(int status, const char *value, size_t len, void *arg)
{
    struct engine *e = arg;
    struct supervisor *sup = e->sup;
    sup->works--;
    if (sup->freeing) {
        free_if_done(sup);
        return;
    }
    if (status == 0) {
        json_t *rec = json_loadb(value, len, 0, NULL);
        if (rec != NULL)
            adopt(e, rec);
        json_decref(rec);
    }
    adoption_step_done(e->sup);
}

static void container_leftovers_cb(int status, json_t *list, const char *why, void *arg);
static void adoption_step_done(struct supervisor *sup);

static void orphan_record_deleted_cb(int status, void *arg)
{
}

/* Stops a process a previous arun left that this one does not adopt: SIGTERM now, SIGKILL
 * after SUPERVISOR_ORPHAN_GRACE_MS (reap_orphans) or at shutdown, whichever comes first. pgid is
 * the group to signal with it (0: none). */
static void stop_orphan(struct supervisor *sup, struct proc_id id, pid_t pgid, const char *name)
{
    events_publish(sup->events, "engine.orphan",
                   json_pack("{s:s, s:i}", "engine", name, "pid", (int)id.pid));
    if (sup->norphans == SUPERVISOR_MAX_ORPHANS) {
        native_signal_all(pgid, &id, 1, SIGKILL); /* no room to wait for it */
        return;
    }
    native_signal_all(pgid, &id, 1, SIGTERM);
    sup->orphans[sup->norphans].id = id;
    sup->orphans[sup->norphans].kill_at_ms = clock_mono_ms() + SUPERVISOR_ORPHAN_GRACE_MS;
    snprintf(sup->orphans[sup->norphans].name, sizeof(sup->orphans[0].name), "%s", name);
    sup->norphans++;
}

/* Records of engines that are no longer in the config: a process still running from one of
 * them was left by a previous arun and would hold memory unseen; stop it (SIGTERM, then SIGKILL
 * after SUPERVISOR_ORPHAN_GRACE_MS from the sampler) and forget the record. */
static void orphans_listed_cb(int status, const char *value, size_t len, void *arg)
{
    struct supervisor *sup = arg;
    sup->works--;
    if (sup->freeing) {
        free_if_done(sup);
        return;
    }
    json_t *all = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
    const char *name;
    json_t *rec;
    json_object_foreach(all, name, rec)
    {
        if (supervisor_find(sup, name) != NULL)
            continue;
        struct proc_id id = {.pid = (pid_t)json_integer_value(json_object_get(rec, "pid")),
                             .start_ticks =
                                 (uint64_t)json_integer_value(json_object_get(rec, "start_ticks"))};
        if (id.pid > 1 && proc_alive(sup->proc_root, id)) {
            log_warn("engines",
                     "engine %s is no longer in the config, but pid %d that a "
                     "previous arun started for it still runs; stopping it",
                     name, (int)id.pid);
            stop_orphan(sup, id, id.pid, name);
        }
        IGNORE_RESULT(store_kv_delete(sup->store, STORE_NS, name, orphan_record_deleted_cb, sup));
    }
    json_decref(all);
    adoption_step_done(sup);
}

/* Called by the sampler: orphans that outlive their grace get SIGKILL. */
static void reap_orphans(struct supervisor *sup)
{
    size_t k = 0;
    for (size_t i = 0; i < sup->norphans; i++) {
        bool alive = proc_alive(sup->proc_root, sup->orphans[i].id);
        if (alive && clock_mono_ms() >= sup->orphans[i].kill_at_ms) {
            log_warn("engines", "orphan %s (pid %d) ignored SIGTERM; SIGKILL", sup->orphans[i].name,
                     (int)sup->orphans[i].id.pid);
            native_signal_all(sup->orphans[i].id.pid, &sup->orphans[i].id, 1, SIGKILL);
        } else if (alive) {
            sup->orphans[k++] = sup->orphans[i];
        }
    }
    sup->norphans = k;
}

/* ---- marked processes: engines no record names ---- */

/* An engine process found by its marker that no adopted engine accounts for. */
struct mark_found {
    struct proc_id id;
    bool leader; /* leads its process group: signal the group too */
    char name[MANIFEST_MARKER_MAX];
};

/* The scan, on a worker: the adopted engines' trees (kept) and what else carries our mark. */
struct mark_scan {
    uv_work_t work;
    struct supervisor *sup;
    char prefix[MANIFEST_MARKER_MAX]; /* "<data_dir id>/" */
    struct {
        pid_t root;
        struct proc_id known[MAX_TRACKED_PIDS];
        size_t nknown;
    } * keep;
    size_t nkeep;
    struct mark_found *found;
    size_t nfound, cap;
};

static bool id_in(const struct proc_id *ids, size_t n, const struct proc_info *p)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i].pid == p->pid && ids[i].start_ticks == p->start_ticks)
            return true;
    return false;
}

static void mark_scan_work(uv_work_t *w)
{
    struct mark_scan *m = w->data;
    struct proc_table t = {0};
    if (proc_table_read(m->sup->proc_root, &t) != 0)
        return; /* nothing to go on: adoption stays with the records */
    size_t cap = m->nkeep * MAX_TRACKED_PIDS, nkept = 0;
    struct proc_id *kept = xcalloc(cap ? cap : 1, sizeof(*kept));
    for (size_t i = 0; i < m->nkeep; i++) {
        size_t n = proc_tree(&t, m->keep[i].root, m->keep[i].known, m->keep[i].nknown, kept + nkept,
                             cap - nkept);
        nkept += n < cap - nkept ? n : cap - nkept;
    }
    size_t plen = strlen(m->prefix);
    for (size_t i = 0; i < t.n; i++) {
        const struct proc_info *p = &t.procs[i];
        char v[MANIFEST_MARKER_MAX];
        if (proc_info_gone(p) || p->pid == getpid() || id_in(kept, nkept, p) ||
            proc_environ_get(m->sup->proc_root, p->pid, MANIFEST_MARKER_ENV, v, sizeof(v)) != 0 ||
            strncmp(v, m->prefix, plen) != 0)
            continue;
        if (m->nfound == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 8;
            m->found = xrealloc(m->found, m->cap * sizeof(*m->found));
        }
        struct mark_found *f = &m->found[m->nfound++];
        f->id = (struct proc_id){.pid = p->pid, .start_ticks = p->start_ticks};
        f->leader = p->pgid == p->pid;
        snprintf(f->name, sizeof(f->name), "%s", v + plen);
    }
    free(kept);
    proc_table_free(&t);
}

static void adoption_step_done(struct supervisor *sup);

static void mark_scan_done(uv_work_t *w, int status)
{
    struct mark_scan *m = w->data;
    struct supervisor *sup = m->sup;
    sup->works--;
    for (size_t i = 0; i < m->nfound && !sup->freeing; i++) {
        struct mark_found *f = &m->found[i];
        bool known = false; /* already being stopped as an engine gone from the config */
        for (size_t k = 0; k < sup->norphans && !known; k++)
            known = sup->orphans[k].id.pid == f->id.pid &&
                    sup->orphans[k].id.start_ticks == f->id.start_ticks;
        if (known || !proc_alive(sup->proc_root, f->id))
            continue;
        log_warn("engines",
                 "%s: pid %d was started by a previous arun that stopped before it recorded "
                 "the engine; stopping it",
                 f->name, (int)f->id.pid);
        stop_orphan(sup, f->id, f->leader ? f->id.pid : 0, f->name);
    }
    free(m->found);
    free(m->keep);
    free(m);
    if (sup->freeing) {
        free_if_done(sup);
        return;
    }
    adoption_step_done(sup);
}

/* After the records: every process that carries this data_dir's marker and is not part of an
 * engine adopted from its record was started by a previous arun that died before its record
 * was committed (or that recorded a newer instance): stop it. Returns 0 when the scan is queued
 * (it ends in adoption_step_done), or -errno. */
static int begin_mark_scan(struct supervisor *sup)
{
    struct mark_scan *m = xcalloc(1, sizeof(*m));
    m->sup = sup;
    manifest_marker(sup->cfg->data_dir, "", m->prefix, sizeof(m->prefix));
    m->keep = xcalloc(sup->nengines ? sup->nengines : 1, sizeof(*m->keep));
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        if (!e->adopted || !running(e) || e->pid <= 0)
            continue;
        m->keep[m->nkeep].root = e->pid;
        memcpy(m->keep[m->nkeep].known, e->pids, e->npids * sizeof(struct proc_id));
        m->keep[m->nkeep].nknown = e->npids;
        m->nkeep++;
    }
    m->work.data = m;
    sup->adopting = 1;
    sup->works++;
    int rc = uv_queue_work(sup->loop, &m->work, mark_scan_work, mark_scan_done);
    if (rc != 0) {
        sup->adopting = 0;
        sup->works--;
        free(m->keep);
        free(m);
    }
    return rc;
}

static void adoption_step_done(struct supervisor *sup)
{
    if (--sup->adopting > 0)
        return;
    if (!sup->marks_scanned) {
        sup->marks_scanned = true;
        if (begin_mark_scan(sup) == 0)
            return;
    }
    sup->ready = true;
    log_debug("engines", "adoption finished");
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        bool remote = e->backend == CONFIG_BACKEND_REMOTE;
        if ((e->cfg->start == CONFIG_START_ALWAYS || remote) && !running(e) && e->backend_ok) {
            e->want_start = true;
            snprintf(e->start_why, sizeof(e->start_why), "start: always");
        }
    }
    schedule(sup);
}

static void begin_adoption(struct supervisor *sup)
{
    sup->adopting = 1; /* one for this function, released at the end */
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        if (sup->store == NULL || !e->backend_ok)
            continue;
        sup->adopting++;
        sup->works++;
        if (store_kv_get(sup->store, STORE_NS, e->cfg->name, record_read_cb, e) != 0) {
            sup->adopting--;
            sup->works--;
        }
    }
    if (sup->crt != NULL) {
        sup->adopting++;
        if (container_list(sup->crt, "arun.engine", container_leftovers_cb, sup) != 0)
            sup->adopting--;
    }
    if (sup->store != NULL) {
        sup->adopting++;
        sup->works++;
        if (store_kv_list(sup->store, STORE_NS, orphans_listed_cb, sup) != 0) {
            sup->adopting--;
            sup->works--;
        }
    }
    adoption_step_done(sup);
}

static void adopt_container(struct engine *e, const struct container_state *st)
{
    e->pid = st->pid;
    e->adopted = false; /* the logs follower tells us when it exits */
    e->adopted_instance = true;
    snprintf(e->container_name, sizeof(e->container_name), "arun-%s", e->cfg->name);
    e->spawned_ms = e->last_progress_ms = clock_mono_ms();
    engine_log_note(e->log, "adopted container %s from a previous arun", e->container_name);
    set_state(e, ENGINE_STARTING, "adopted container %s from a previous arun; probing it",
              e->container_name);
    if (container_logs_follow(e->sup->crt, e->container_name, on_container_output,
                              container_follow_exit_cb, e, &e->follow) != 0)
        e->follow = NULL;
    start_probing(e);
}

/* One adoption step: a start decision for this engine waits for it (adoption_step_done). */
static void container_adopt_cb(int status, const struct container_state *st, const char *why,
                               void *arg)
{
    struct engine *e = arg;
    if (status == 0 && st->running && !running(e))
        adopt_container(e, st);
    adoption_step_done(e->sup);
}

static void leftover_removed_cb(int status, const char *out, const char *why, void *arg)
{
    if (status != 0)
        log_warn("engines", "could not remove a leftover container: %s", why);
}

/* Containers labelled by arun: adopt ours that still run the same manifest (port from the
 * record), remove the rest so "container name already in use" never happens. */
static void container_leftovers_cb(int status, json_t *list, const char *why, void *arg)
{
    struct supervisor *sup = arg;
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *state = json_string_value(json_object_get(c, "state"));
        json_t *labels = json_object_get(c, "labels");
        const char *eng = json_string_value(json_object_get(labels, "arun.engine"));
        const char *hash = json_string_value(json_object_get(labels, "arun.manifest"));
        struct engine *e = eng ? supervisor_find(sup, eng) : NULL;
        bool keep = e != NULL && e->backend == CONFIG_BACKEND_CONTAINER && hash != NULL &&
                    strcmp(hash, e->manifest_hash) == 0 && state != NULL &&
                    strcmp(state, "running") == 0 && e->cfg->port != CONFIG_AUTO;
        if (keep) {
            /* Adoption settles before any start decision: `start: always` must find this
             * container running, not start a second one that replaces it. */
            e->port = (uint16_t)e->cfg->port;
            sup->adopting++;
            if (container_inspect(sup->crt, name, container_adopt_cb, e) != 0)
                sup->adopting--;
            continue;
        }
        if (name == NULL)
            continue;
        log_warn("engines", "removing leftover container %s (%s) from a previous arun", name,
                 state ? state : "unknown state");
        IGNORE_RESULT(container_rm(sup->crt, name, leftover_removed_cb, sup));
    }
    adoption_step_done(sup);
}

static void on_container_detected(int status, struct container_rt *rt, const char *why, void *arg)
{
    struct supervisor *sup = arg;
    sup->crt = status == 0 ? rt : NULL;
    snprintf(sup->container_why, sizeof(sup->container_why), "%s",
             status == 0 ? "" : (why ? why : "no container CLI"));
    if (status == 0)
        log_info("engines", "container runtime: %s", container_rt_name(rt));
    else
        log_info("engines", "no container runtime: %s", sup->container_why);
    resolve_backends(sup);
    begin_adoption(sup);
}

static bool needs_containers(const struct supervisor *sup)
{
    if (!(sup->cfg->runtime.allowed & CONFIG_ALLOW_CONTAINER))
        return false;
    for (size_t i = 0; i < sup->nengines; i++)
        if (sup->engines[i].cfg->image != NULL)
            return true;
    return false;
}

static const char *cli_pref(enum config_container_cli c)
{
    return c == CONFIG_CLI_PODMAN ? "podman" : c == CONFIG_CLI_DOCKER ? "docker" : "auto";
}

static void init_done_cb(uv_work_t *w, int status)
{
    struct init_work *iw = w->data;
    struct supervisor *sup = iw->sup;
    sup->works--;
    sup->gpu = iw->gpu;
    if (sup->freeing) {
        buf_cleanup(&iw->why);
        free(iw);
        free_if_done(sup);
        return;
    }
    if (iw->host_ok)
        sup->host = iw->host;
    compute_envelope(sup, iw);
    buf_cleanup(&iw->why);
    free(iw);
    uv_timer_start(&sup->sample_timer, sample_timer_cb, SUPERVISOR_SAMPLE_MS, SUPERVISOR_SAMPLE_MS);
    uv_timer_start(&sup->log_timer, log_timer_cb, LOG_POLL_MS, LOG_POLL_MS);
    if (needs_containers(sup) &&
        container_detect(sup->loop, cli_pref(sup->cfg->runtime.container_cli),
                         on_container_detected, sup) == 0)
        return;
    snprintf(sup->container_why, sizeof(sup->container_why), "%s",
             needs_containers(sup) ? "the container CLI could not be probed"
                                   : "containers are not allowed by runtime.allowed");
    resolve_backends(sup);
    begin_adoption(sup);
}

/* ---- lifecycle ---- */

static const char *const state_labels[] = {"engine", "state"};
static const char *const engine_label[] = {"engine"};

struct supervisor *supervisor_new(const struct supervisor_options *o)
{
    struct supervisor *sup = xcalloc(1, sizeof(*sup));
    sup->loop = o->loop;
    sup->cfg = o->cfg;
    sup->store = o->store;
    sup->events = o->events;
    sup->metrics = o->metrics;
    sup->httpc = o->httpc;
    sup->proc_root = o->proc_root ? o->proc_root : "/proc";
    sup->m_state =
        metrics_gauge(o->metrics, "arun_engine_state",
                      "1 for the state each engine is in, 0 for the others", 2, state_labels);
    sup->m_restarts = metrics_counter(o->metrics, "arun_engine_restarts_total",
                                      "Restarts by the restart policy", 1, engine_label);
    sup->m_load =
        metrics_histogram(o->metrics, "arun_engine_load_seconds", "Time from spawn to ready", 1,
                          engine_label, metrics_latency_buckets, metrics_latency_nbuckets);
    uv_timer_init(sup->loop, &sup->sample_timer);
    uv_timer_init(sup->loop, &sup->log_timer);
    sup->sample_timer.data = sup->log_timer.data = sup;
    sup->nengines = o->cfg->nengines;
    sup->engines = xcalloc(sup->nengines ? sup->nengines : 1, sizeof(struct engine));
    char *logdir = xasprintf("%s/logs", o->cfg->data_dir);
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        e->sup = sup;
        e->cfg = &o->cfg->engines[i];
        manifest_hash(e->cfg, e->manifest_hash);
        /* What the keys select; resolve_backends() settles it once the machine is known. */
        e->backend = config_engine_backend(o->cfg, e->cfg);
        snprintf(e->backend_reason, sizeof(e->backend_reason),
                 "from the manifest; arun is still checking this machine");
        uv_timer_init(sup->loop, &e->timer);
        e->timer.data = e;
        struct buf err;
        buf_init(&err, 512);
        if (engine_log_open(logdir, e->cfg->name, NULL, &e->log, &err) != 0) {
            log_error("engines", "%s: %s", e->cfg->name, buf_cstr(&err));
            e->log = NULL;
        }
        buf_cleanup(&err);
        /* The initial state is set quietly: it is not a transition anyone needs to hear of. */
        e->state = ENGINE_STOPPED;
        e->state_ms = clock_mono_ms();
        snprintf(e->reason, sizeof(e->reason), "not started yet (start: %s)",
                 e->cfg->start == CONFIG_START_ALWAYS   ? "always"
                 : e->cfg->start == CONFIG_START_MANUAL ? "manual"
                                                        : "on-demand, with the first request");
        for (size_t k = 0; k < ARRAY_SIZE(state_names); k++)
            metrics_set(sup->m_state, k == ENGINE_STOPPED,
                        (const char *const[]){e->cfg->name, state_names[k]});
    }
    free(logdir);
    native_become_subreaper();
    return sup;
}

void supervisor_run(struct supervisor *sup)
{
    struct init_work *iw = xcalloc(1, sizeof(*iw));
    iw->sup = sup;
    iw->nvml_path = NULL;
    buf_init(&iw->why, 512);
    iw->work.data = iw;
    sup->works++;
    if (sup->nengines == 0 ||
        uv_queue_work(sup->loop, &iw->work, init_work_cb, init_done_cb) != 0) {
        sup->works--;
        /* No engines: nothing to measure, and start-up stays within milliseconds. */
        buf_cleanup(&iw->why);
        free(iw);
        sup->ram_envelope_mb = sup->vram_envelope_mb = 0;
        sup->ready = true;
    }
}

static void check_shutdown_done(struct supervisor *sup)
{
    if (!sup->shutting_down || sup->shutdown_cb == NULL)
        return;
    for (size_t i = 0; i < sup->nengines; i++)
        if (running(&sup->engines[i]))
            return;
    void (*cb)(void *) = sup->shutdown_cb;
    sup->shutdown_cb = NULL;
    log_info("engines", "every engine is stopped");
    cb(sup->shutdown_arg);
}

void supervisor_shutdown(struct supervisor *sup, void (*done)(void *arg), void *arg)
{
    sup->shutting_down = true;
    /* Orphans still in their SIGTERM grace must not outlive a clean stop of arun. */
    for (size_t i = 0; i < sup->norphans; i++)
        native_signal_all(sup->orphans[i].id.pid, &sup->orphans[i].id, 1, SIGKILL);
    sup->norphans = 0;
    sup->shutdown_cb = done;
    sup->shutdown_arg = arg;
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        e->want_start = false;
        e->restart_pending = false;
        if (running(e))
            begin_stop(e, false, "arun is shutting down");
        notify_waiters(e, -ECANCELED, "arun is shutting down");
    }
    check_shutdown_done(sup);
}

static void free_if_done(struct supervisor *sup)
{
    if (!sup->freeing || sup->closing > 0 || sup->works > 0)
        return;
    for (size_t i = 0; i < sup->nengines; i++)
        if (sup->engines[i].log != NULL)
            engine_log_close(sup->engines[i].log);
    memory_gpu_close(sup->gpu);
    container_rt_free(sup->crt);
    free(sup->engines);
    free(sup);
}

static void sup_closed_cb(uv_handle_t *h)
{
    struct supervisor *sup = h->data;
    sup->closing--;
    free_if_done(sup);
}

void supervisor_free(struct supervisor *sup)
{
    if (sup == NULL)
        return;
    sup->freeing = true;
    sup->closing = 2 + (int)sup->nengines;
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        cancel_probe(e);
        if (e->follow != NULL)
            container_follow_stop(e->follow);
        if (e->child != NULL)
            native_child_free(e->child); /* forget it; a clean shutdown stopped it before */
        e->timer.data = sup;
        uv_close((uv_handle_t *)&e->timer, sup_closed_cb);
    }
    uv_close((uv_handle_t *)&sup->sample_timer, sup_closed_cb);
    uv_close((uv_handle_t *)&sup->log_timer, sup_closed_cb);
}

/* ---- queries and requests from other layers ---- */

struct engine *supervisor_find(struct supervisor *sup, const char *name)
{
    for (size_t i = 0; i < sup->nengines; i++)
        if (strcmp(sup->engines[i].cfg->name, name) == 0)
            return &sup->engines[i];
    return NULL;
}

struct engine *supervisor_find_model(struct supervisor *sup, const char *model)
{
    for (size_t i = 0; i < sup->nengines; i++)
        for (size_t k = 0; k < sup->engines[i].cfg->nmodels; k++)
            if (strcmp(sup->engines[i].cfg->models[k], model) == 0)
                return &sup->engines[i];
    return NULL;
}

size_t supervisor_count(const struct supervisor *sup)
{
    return sup->nengines;
}

struct engine *supervisor_engine_at(struct supervisor *sup, size_t i)
{
    return i < sup->nengines ? &sup->engines[i] : NULL;
}

int supervisor_start_engine(struct engine *e, const char *why_start, struct buf *why)
{
    struct supervisor *sup = e->sup;
    if (sup->shutting_down) {
        IGNORE_RESULT(buf_puts(why, "arun is shutting down"));
        return -ECANCELED;
    }
    if (running(e) && e->state != ENGINE_STOPPING)
        return 0;
    if (e->state == ENGINE_STOPPING) {
        e->stop_then_start = true;
        return 0;
    }
    if (too_large(sup, e)) {
        IGNORE_RESULT(buf_puts(why, e->reason));
        return -ENOMEM;
    }
    e->want_start = true;
    e->restart_pending = false;
    e->window_restarts = 0; /* an explicit start begins a fresh restart budget */
    snprintf(e->start_why, sizeof(e->start_why), "%s", why_start);
    uv_timer_stop(&e->timer);
    schedule(sup);
    return 0;
}

void supervisor_stop_engine(struct engine *e, const char *reason)
{
    e->want_start = false;
    e->stop_then_start = false;
    e->restart_pending = false;
    uv_timer_stop(&e->timer);
    if (running(e))
        begin_stop(e, false, "%s", reason);
    else if (e->state == ENGINE_FAILED)
        set_state(e, ENGINE_STOPPED, "%s", reason);
    notify_waiters(e, -ECANCELED, reason);
}

int supervisor_restart_engine(struct engine *e, struct buf *why)
{
    if (running(e) && e->state != ENGINE_STOPPING) {
        e->stop_then_start = true; /* before the stop, so waiting requests wait for the start */
        begin_stop(e, false, "restarting by request");
        return 0;
    }
    return supervisor_start_engine(e, "restart by request", why);
}

struct supervisor_waiter *supervisor_wait_ready(struct engine *e, supervisor_ready_cb cb, void *arg)
{
    struct supervisor_waiter *w = xcalloc(1, sizeof(*w));
    w->e = e;
    w->cb = cb;
    w->arg = arg;
    w->next = e->sup->waiters;
    if (w->next)
        w->next->prev = w;
    e->sup->waiters = w;
    return w;
}

void supervisor_cancel_wait(struct supervisor_waiter *w)
{
    waiter_unlink(w->e->sup, w);
    free(w);
}

void supervisor_request_begin(struct engine *e)
{
    e->in_flight++;
}

void supervisor_request_end(struct engine *e)
{
    ASSERT(e->in_flight > 0);
    e->in_flight--;
    e->last_used_ms = clock_mono_ms();
    if (e->in_flight == 0)
        schedule(e->sup); /* a busy engine may now be evicted for a waiting one */
}

void supervisor_set_queued(struct engine *e, uint32_t queued)
{
    e->queued = queued;
}

int64_t engine_expected_ready_ms(const struct engine *e)
{
    if (!(e->state == ENGINE_STARTING || e->state == ENGINE_LOADING) || e->nloads == 0)
        return -1;
    uint64_t sum = 0;
    for (size_t i = 0; i < e->nloads; i++)
        sum += e->loads[i];
    uint64_t avg = sum / e->nloads, elapsed = clock_mono_ms() - e->spawned_ms;
    return avg > elapsed ? (int64_t)(avg - elapsed) : 0;
}

struct engine_log *supervisor_engine_log(struct engine *e)
{
    return e->log;
}

const char *engine_name(const struct engine *e)
{
    return e->cfg->name;
}

enum engine_state engine_state(const struct engine *e)
{
    return e->state;
}

const char *engine_reason(const struct engine *e)
{
    return e->reason;
}

uint16_t engine_port(const struct engine *e)
{
    return e->port;
}

const struct config_engine *engine_config(const struct engine *e)
{
    return e->cfg;
}

enum config_backend engine_backend(const struct engine *e)
{
    return e->backend;
}

static json_t *iso_time(int64_t wall_ms)
{
    if (wall_ms <= 0)
        return json_null();
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    char s[40];
    gmtime_r(&t, &tm);
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(s);
}

json_t *engine_to_json(const struct engine *e)
{
    json_t *models = json_array();
    for (size_t i = 0; i < e->cfg->nmodels; i++)
        json_array_append_new(models, json_string(e->cfg->models[i]));
    bool up = running(e) && e->state != ENGINE_STOPPING;
    json_t *j = json_pack(
        "{s:s, s:s, s:s?, s:o, s:s, s:s, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:i, "
        "s:o, s:o, s:i, s:i, s:s, s:s?, s:s, s:o}",
        "name", e->cfg->name, "state", state_names[e->state], "reason",
        e->state == ENGINE_READY ? NULL : e->reason, "models", models, "backend",
        config_backend_name(e->backend), "backend_reason", e->backend_reason, "pid",
        up && e->pid > 0 ? json_integer(e->pid) : json_null(), "port",
        up ? json_integer(e->port) : json_null(), "memory", "declared_ram_mb",
        (json_int_t)e->cfg->memory.ram_mb, "declared_vram_mb", (json_int_t)e->cfg->memory.vram_mb,
        "rss_mb", (json_int_t)(e->rss_bytes >> 20), "vram_mb", (json_int_t)e->vram_mb,
        "peak_rss_mb", (json_int_t)(e->peak_rss_bytes >> 20), "peak_vram_mb",
        (json_int_t)e->peak_vram_mb, "restarts", (int)e->restarts, "started_at",
        up ? iso_time(e->started_at_wall_ms) : json_null(), "last_load_ms",
        e->nloads ? json_integer((json_int_t)e->last_load_ms) : json_null(), "in_flight",
        (int)e->in_flight, "queued", (int)e->queued, "start",
        e->cfg->start == CONFIG_START_ALWAYS   ? "always"
        : e->cfg->start == CONFIG_START_MANUAL ? "manual"
                                               : "on-demand",
        "group", e->cfg->group, "log", e->log ? engine_log_path(e->log) : "",
        "expected_ready_in_ms", json_null());
    int64_t eta = engine_expected_ready_ms(e);
    if (eta >= 0)
        json_object_set_new(j, "expected_ready_in_ms", json_integer(eta));
    return j;
}
