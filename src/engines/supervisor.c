/*
 * supervisor.c: the engine state machine and the supervisor's public API. See supervisor.h;
 * supervisor_int.h lists the files the supervisor is made of and what each owns.
 *
 * DESIGN
 * Each engine is a state machine; sup_set_state() is the only writer of e->state and e->reason.
 * It asserts that the transition is allowed, logs it, notes it in the engine's log, publishes an
 * `engine.state` event, updates the state metric and then does the new state's entry work
 * (curl multi.c's mstate()): entering `ready` wakes the requests waiting for the engine and runs
 * admission again, entering `stopping`, `stopped` or `failed` turns them away unless a start of
 * the engine is already decided. So no path into a state can forget what that state promises.
 * The process work stays with the callers: sup_spawn_engine (-> starting, launch), on_probe
 * (-> loading/ready/unhealthy, probe), sup_begin_stop (-> stopping, stop), sup_on_gone
 * (-> stopped/failed, then the restart policy, stop).
 *
 * Admission. An engine may start when its need, max(declared, peak seen), fits in the node's
 * envelope minus what running engines need. When it does not, idle engines (no request in
 * flight, ready for at least min_resident_s) are stopped least recently used first; the start
 * waits in `pending` until their processes are gone and their memory is back, then starts.
 * Engines of one exclusive group are treated like that too, without the residency rule. Every
 * decision is taken in sup_schedule(), which runs whenever something that affects it changes, so
 * there is exactly one place where engines are started for admission and stopped for room.
 *
 * Start-up: the envelope is measured on a worker (memory, GPUs), the container CLI is detected,
 * each engine's backend is settled, then adoption runs (supervisor_adopt.c); only when it has
 * settled does the supervisor become ready and take start decisions.
 */
#include "engines/record.h"
#include "engines/supervisor_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include <h2o/memory.h> /* H2O_STRUCT_FROM_MEMBER */

#include "core/clock.h"
#include "core/log.h"
#include "engines/admission.h"
#include "engines/container.h"
#include "engines/health.h"
#include "engines/logs.h"
#include "engines/manifest.h"
#include "engines/memory.h"
#include "engines/native.h"
#include "engines/proc.h"

static const char *const state_names[] = {"stopped",   "starting", "loading", "ready",
                                          "unhealthy", "stopping", "failed"};

static void timer_cb(uv_timer_t *t);

const char *engine_state_name(enum engine_state s)
{
    return state_names[s];
}

/* Calls and frees every waiter of e. The waiters of e move to a list of their own first: a
 * callback may start, stop or wait for engines, so it may add waiters (they wait for the next
 * change) or cancel one of e's still to be called (it is unlinked from that list like any
 * other). */
static void notify_waiters(struct engine *e, int status, const char *reason)
{
    struct supervisor *sup = e->sup;
    h2o_linklist_t mine;
    h2o_linklist_init_anchor(&mine);
    h2o_linklist_t *node = sup->waiters.next;
    while (node != &sup->waiters) {
        struct supervisor_waiter *w = H2O_STRUCT_FROM_MEMBER(struct supervisor_waiter, link, node);
        node = node->next;
        if (w->e == e) {
            h2o_linklist_unlink(&w->link);
            h2o_linklist_insert(&mine, &w->link);
        }
    }
    while (!h2o_linklist_is_empty(&mine)) {
        struct supervisor_waiter *w =
            H2O_STRUCT_FROM_MEMBER(struct supervisor_waiter, link, mine.next);
        h2o_linklist_unlink(&w->link);
        w->cb(e, status, reason, w->arg);
        free(w);
    }
}

/* Which states each state may move to (a bit per target). Staying in a state to change only its
 * reason is always allowed. `ready` is entered only from starting, loading or unhealthy, so its
 * entry work below is the one place where waiting requests are woken. */
#define LAST_LOG_LINE_MAX 512 /* bytes of last_log_line in engine objects and events */
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
 * is logged and published, so work that moves the engine on (sup_schedule() may start another
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
        e->probe_failures = 0;
        notify_waiters(e, 0, NULL);
        sup_schedule(e->sup);
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

void sup_set_state(struct engine *e, enum engine_state s, const char *fmt, ...)
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
    /* Before the event, so that `ready` carries the load it ends in expected_load_ms. */
    if (s == ENGINE_READY && (old == ENGINE_STARTING || old == ENGINE_LOADING)) {
        if (!e->adopted_instance && e->backend != CONFIG_BACKEND_REMOTE)
            sup_record_load(e);
        e->ready_ms = e->last_used_ms = clock_mono_ms();
    }

    enum log_level lvl = s == ENGINE_FAILED || s == ENGINE_UNHEALTHY ? LOGL_WARN : LOGL_INFO;
    LOG_AT(lvl, "engines", NULL, 0,
           json_pack("{s:s, s:s, s:s, s:s}", "engine", e->cfg->name, "from", state_names[old], "to",
                     state_names[s], "reason", reason),
           "%s: %s -> %s%s%s", e->cfg->name, state_names[old], state_names[s],
           reason[0] ? ": " : "", reason);
    if (e->log != NULL)
        engine_log_note(e->log, "%s%s%s", state_names[s], reason[0] ? ": " : "", reason);
    /* The engine object as GET /v1/engines/NAME shows it, so a console redraws its card from
     * the event alone; reason is always a string here ("" for a plain ready). */
    json_t *data = engine_to_json(e);
    json_object_set_new(data, "engine", json_string(e->cfg->name));
    json_object_set_new(data, "from", json_string(state_names[old]));
    json_object_set_new(data, "reason", json_string(reason));
    events_publish(sup->events, "engine.state", data);
    for (size_t i = 0; i < ARRAY_SIZE(state_names); i++)
        metrics_set(sup->m_state, i == (size_t)s,
                    (const char *const[]){e->cfg->name, state_names[i]});
    enter_state(e, old, fail_status);
}

void sup_arm_timer(struct engine *e, uint64_t ms)
{
    uv_timer_start(&e->timer, timer_cb, ms, 0);
}

static void timer_cb(uv_timer_t *t)
{
    struct engine *e = t->data;
    switch (e->state) {
    case ENGINE_STARTING:
    case ENGINE_LOADING:
        if ((e->backend == CONFIG_BACKEND_REMOTE || !sup_check_load_deadlines(e)) &&
            e->probe == NULL)
            sup_send_probe(e);
        break;
    case ENGINE_READY:
    case ENGINE_UNHEALTHY:
        if (e->probe == NULL)
            sup_send_probe(e);
        break;
    case ENGINE_STOPPING:
        sup_stop_timer_fired(e);
        break;
    case ENGINE_FAILED:
        if (e->restart_pending) {
            e->restart_pending = false;
            e->want_start = true;
            snprintf(e->start_why, sizeof(e->start_why), "restart policy");
            sup_schedule(e->sup);
        }
        break;
    case ENGINE_STOPPED:
        break;
    }
}

/* ---- admission: the decision is admission.c's, the acts are here ---- */

static struct admission_engine admission_of(const struct engine *o, uint64_t now)
{
    bool serving = o->state == ENGINE_READY || o->state == ENGINE_UNHEALTHY;
    return (struct admission_engine){
        .name = o->cfg->name,
        .group = o->cfg->group,
        .need_ram_mb = sup_need_ram_mb(o),
        .need_vram_mb = sup_need_vram_mb(o),
        .running = sup_running(o),
        .stopping = o->state == ENGINE_STOPPING,
        .serving = serving,
        .busy = o->in_flight > 0 || o->queued > 0,
        .resident = serving && now - o->ready_ms < (uint64_t)o->cfg->min_resident_s * 1000,
        .remote = o->backend == CONFIG_BACKEND_REMOTE,
        .last_used_ms = o->last_used_ms,
    };
}

/* Asks admission about e with the engines as they are now. stop: room for nengines indices. */
static void decide(struct supervisor *sup, struct engine *e, size_t *stop,
                   struct admission_decision *d)
{
    uint64_t now = clock_mono_ms();
    struct admission_engine *snap = xcalloc(sup->nengines, sizeof(*snap));
    for (size_t i = 0; i < sup->nengines; i++)
        snap[i] = admission_of(&sup->engines[i], now);
    admission_decide(snap, sup->nengines, (size_t)(e - sup->engines), &sup->envelope, stop, d);
    free(snap);
}

/* The driver frees a process's GPU memory some time after the process is gone (Ollama
 * #7606 #9926): a start that needs VRAM waits until the GPU shows it free, for at most
 * SUPERVISOR_VRAM_WAIT_MS after the last GPU engine stopped. */
static bool vram_not_back(struct supervisor *sup, struct engine *e)
{
    uint64_t need = sup_need_vram_mb(e);
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
    sup_set_state(e, e->state,
                  "waiting for GPU memory: needs %" PRIu64 " MiB, %" PRIu64 " MiB free "
                  "while the driver releases what a stopped engine held",
                  need, sup->gpu_free_mb);
    return true;
}

static void refuse_too_large(struct supervisor *sup, struct engine *e, bool vram)
{
    e->want_start = false;
    e->fail_status = -ENOMEM;
    if (vram)
        sup_set_state(e, ENGINE_FAILED,
                      "needs %" PRIu64 " MiB of VRAM, the node's envelope is %" PRIu64 " MiB (%s)",
                      sup_need_vram_mb(e), sup->envelope.vram_mb, sup->envelope.why);
    else
        sup_set_state(e, ENGINE_FAILED,
                      "needs %" PRIu64 " MiB of RAM, the node's envelope is %" PRIu64 " MiB (%s)",
                      sup_need_ram_mb(e), sup->envelope.ram_mb, sup->envelope.why);
}

/* Refuses a start that can never fit, with the numbers. Returns true when refused. */
static bool too_large(struct supervisor *sup, struct engine *e)
{
    size_t *stop = xcalloc(sup->nengines, sizeof(*stop));
    struct admission_decision d;
    decide(sup, e, stop, &d);
    free(stop);
    if (d.verdict == ADMISSION_TOO_LARGE)
        refuse_too_large(sup, e, d.vram);
    return d.verdict == ADMISSION_TOO_LARGE;
}

static void evict(struct supervisor *sup, struct engine *e, struct engine *victim,
                  const struct admission_decision *d)
{
    log_info("engines", "evicting %s (idle, least recently used) to make room for %s",
             victim->cfg->name, e->cfg->name);
    events_publish(sup->events, "engine.evict",
                   json_pack("{s:s, s:s}", "engine", victim->cfg->name, "for", e->cfg->name));
    sup_begin_stop(victim, false,
                   "evicted to make room for %s (needs %" PRIu64 " MiB RAM, %" PRIu64
                   " MiB VRAM; in use %" PRIu64 " of %" PRIu64 " MiB RAM)",
                   e->cfg->name, sup_need_ram_mb(e), sup_need_vram_mb(e), d->ram_in_use_mb,
                   sup->envelope.ram_mb);
}

static void wait_for_room(struct supervisor *sup, struct engine *e)
{
    char who[256] = "";
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *o = &sup->engines[i];
        if (o != e && sup_running(o))
            snprintf(who + strlen(who), sizeof(who) - strlen(who), "%s%s (%s)", who[0] ? ", " : "",
                     o->cfg->name, o->in_flight ? "busy" : "resident");
    }
    sup_set_state(e, e->state,
                  "waiting for room: needs %" PRIu64 " MiB RAM and %" PRIu64
                  " MiB VRAM; held by %s",
                  sup_need_ram_mb(e), sup_need_vram_mb(e), who[0] ? who : "nothing evictable");
}

/* Does what admission decides for one engine that waits to start. */
static void admit(struct supervisor *sup, struct engine *e)
{
    size_t *stop = xcalloc(sup->nengines, sizeof(*stop));
    struct admission_decision d;
    decide(sup, e, stop, &d);
    switch (d.verdict) {
    case ADMISSION_TOO_LARGE:
        refuse_too_large(sup, e, d.vram);
        break;
    case ADMISSION_GROUP:
        for (size_t k = 0; k < d.nstop; k++)
            sup_begin_stop(&sup->engines[stop[k]], false, "stopped for %s (exclusive group %s)",
                           e->cfg->name, e->cfg->group);
        break;
    case ADMISSION_START:
        /* Engines that are stopping still count: a start that needs their memory waits until
         * their processes are gone (Ollama #7606), one that fits beside them goes now. */
        if (!vram_not_back(sup, e)) /* else the sampler schedules again with the next reading */
            sup_spawn_engine(e);
        break;
    case ADMISSION_WAIT:
        break; /* stops under way may make room: evict nobody else until they are done */
    case ADMISSION_EVICT:
        evict(sup, e, &sup->engines[d.victim], &d);
        break;
    case ADMISSION_NO_ROOM:
        wait_for_room(sup, e);
        break;
    }
    free(stop);
}

void sup_schedule(struct supervisor *sup)
{
    if (sup->shutting_down || !sup->ready)
        return;
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        if (e->want_start && !sup_running(e))
            admit(sup, e);
        else if (e->want_start && sup_running(e) && e->state != ENGINE_STOPPING)
            e->want_start = false;
    }
}

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
    uint64_t gpu_total = 0;
    for (int i = 0; w->snap_ok && i < w->snap.ndevices; i++)
        gpu_total += w->snap.dev[i].total_mb;
    admission_envelope(sup->cfg, w->host_ok ? w->host.total_mb : 0, gpu_total, buf_cstr(&w->why),
                       &sup->envelope);
    log_info("engines", "memory envelope: %" PRIu64 " MiB RAM, %" PRIu64 " MiB VRAM (%s)",
             sup->envelope.ram_mb, sup->envelope.vram_mb, sup->envelope.why);
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
            sup_set_state(e, ENGINE_FAILED, "cannot run here: %s", e->backend_reason);
    }
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
    sup_begin_adoption(sup);
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
        sup_free_if_done(sup);
        return;
    }
    if (iw->host_ok)
        sup->host = iw->host;
    compute_envelope(sup, iw);
    buf_cleanup(&iw->why);
    free(iw);
    uv_timer_start(&sup->sample_timer, sup_sample_timer_cb, SUPERVISOR_SAMPLE_MS,
                   SUPERVISOR_SAMPLE_MS);
    uv_timer_start(&sup->log_timer, sup_log_timer_cb, LOG_POLL_MS, LOG_POLL_MS);
    if (needs_containers(sup) &&
        container_detect(sup->loop, cli_pref(sup->cfg->runtime.container_cli),
                         on_container_detected, sup) == 0)
        return;
    snprintf(sup->container_why, sizeof(sup->container_why), "%s",
             needs_containers(sup) ? "the container CLI could not be probed"
                                   : "containers are not allowed by runtime.allowed");
    resolve_backends(sup);
    sup_begin_adoption(sup);
}

static const char *const state_labels[] = {"engine", "state"};
static const char *const engine_label[] = {"engine"};

struct supervisor *supervisor_new(const struct supervisor_options *o)
{
    struct supervisor *sup = xcalloc(1, sizeof(*sup));
    h2o_linklist_init_anchor(&sup->waiters);
    sup->loop = o->loop;
    sup->cfg = o->cfg;
    sup->store = o->store;
    /* Engine records are this machine's: on a store several nodes share, each node keeps its
     * own namespace, or one node would adopt or stop another's engines as its orphans. */
    if (o->store != NULL && store_shared(o->store))
        snprintf(sup->record_ns, sizeof(sup->record_ns), "%s@%s", ENGINE_RECORD_NS,
                 store_node_id(o->store));
    else
        snprintf(sup->record_ns, sizeof(sup->record_ns), "%s", ENGINE_RECORD_NS);
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
        buf_init(&err, 512 + PATH_MAX); /* the store opened data_dir, so it is under PATH_MAX */
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
        sup->envelope.ram_mb = sup->envelope.vram_mb = 0;
        sup->ready = true;
    }
}

void sup_check_shutdown_done(struct supervisor *sup)
{
    if (!sup->shutting_down || sup->shutdown_cb == NULL)
        return;
    for (size_t i = 0; i < sup->nengines; i++)
        if (sup_running(&sup->engines[i]))
            return;
    void (*cb)(void *) = sup->shutdown_cb;
    sup->shutdown_cb = NULL;
    log_info("engines", "every engine is stopped");
    cb(sup->shutdown_arg);
}

void supervisor_shutdown(struct supervisor *sup, void (*done)(void *arg), void *arg)
{
    sup->shutting_down = true;
    sup_kill_orphans(sup); /* none outlives a clean stop of arun */
    sup->shutdown_cb = done;
    sup->shutdown_arg = arg;
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        e->want_start = false;
        e->restart_pending = false;
        if (sup_running(e))
            sup_begin_stop(e, false, "arun is shutting down");
        notify_waiters(e, -ECANCELED, "arun is shutting down");
    }
    sup_check_shutdown_done(sup);
}

void sup_free_if_done(struct supervisor *sup)
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
    sup_free_if_done(sup);
}

void supervisor_free(struct supervisor *sup)
{
    if (sup == NULL)
        return;
    sup->freeing = true;
    sup->closing = 2 + (int)sup->nengines;
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        sup_cancel_probe(e);
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
        buf_puts(why, "arun is shutting down");
        return -ECANCELED;
    }
    if (sup_running(e) && e->state != ENGINE_STOPPING)
        return 0;
    if (e->state == ENGINE_STOPPING) {
        e->stop_then_start = true;
        return 0;
    }
    /* Before the envelope is measured (start-up, milliseconds) nothing can be judged too large:
     * the start waits for sup_schedule, which admits it once the supervisor is ready. */
    if (sup->ready && too_large(sup, e)) {
        buf_puts(why, e->reason);
        return -ENOMEM;
    }
    e->want_start = true;
    e->restart_pending = false;
    e->window_restarts = 0; /* an explicit start begins a fresh restart budget */
    snprintf(e->start_why, sizeof(e->start_why), "%s", why_start);
    uv_timer_stop(&e->timer);
    sup_schedule(sup);
    return 0;
}

void supervisor_stop_engine(struct engine *e, const char *reason)
{
    e->want_start = false;
    e->stop_then_start = false;
    e->restart_pending = false;
    uv_timer_stop(&e->timer);
    if (sup_running(e))
        sup_begin_stop(e, false, "%s", reason);
    else if (e->state == ENGINE_FAILED)
        sup_set_state(e, ENGINE_STOPPED, "%s", reason);
    notify_waiters(e, -ECANCELED, reason);
}

int supervisor_restart_engine(struct engine *e, struct buf *why)
{
    if (sup_running(e) && e->state != ENGINE_STOPPING) {
        e->stop_then_start = true; /* before the stop, so waiting requests wait for the start */
        sup_begin_stop(e, false, "restarting by request");
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
    h2o_linklist_insert(&e->sup->waiters, &w->link);
    return w;
}

void supervisor_cancel_wait(struct supervisor_waiter *w)
{
    h2o_linklist_unlink(&w->link);
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
        sup_schedule(e->sup); /* a busy engine may now be evicted for a waiting one */
}

void supervisor_set_queued(struct engine *e, uint32_t queued)
{
    e->queued = queued;
}

int64_t engine_expected_load_ms(const struct engine *e)
{
    if (e->nloads == 0)
        return -1;
    uint64_t sum = 0;
    for (size_t i = 0; i < e->nloads; i++)
        sum += e->loads[i];
    return (int64_t)(sum / e->nloads);
}

int64_t engine_expected_ready_ms(const struct engine *e)
{
    int64_t avg = engine_expected_load_ms(e);
    if (!(e->state == ENGINE_STARTING || e->state == ENGINE_LOADING) || avg < 0)
        return -1;
    int64_t elapsed = (int64_t)(clock_mono_ms() - e->spawned_ms);
    return avg > elapsed ? avg - elapsed : 0;
}

void supervisor_node_use(const struct supervisor *sup, struct supervisor_node_use *out)
{
    *out = (struct supervisor_node_use){
        .ram_total_mb = sup->host.total_mb,
        .ram_envelope_mb = sup->envelope.ram_mb,
        .ram_used_mb = sup->host.total_mb > sup->host.available_mb
                           ? sup->host.total_mb - sup->host.available_mb
                           : 0,
        .vram_total_mb = sup->gpu_total_mb,
        .vram_envelope_mb = sup->envelope.vram_mb,
        .vram_used_mb =
            sup->gpu_total_mb > sup->gpu_free_mb ? sup->gpu_total_mb - sup->gpu_free_mb : 0,
        .ram_known = sup->host.total_mb > 0,
        .vram_known = sup->gpu_seen && sup->gpu_total_mb > 0,
    };
    /* As admission counts them: what running engines may grow to, stopping ones included until
     * their memory is back. Remote engines hold nothing here. */
    for (size_t i = 0; i < sup->nengines; i++) {
        const struct engine *e = &sup->engines[i];
        if (!sup_running(e) || e->backend == CONFIG_BACKEND_REMOTE)
            continue;
        out->ram_declared_mb += sup_need_ram_mb(e);
        out->vram_declared_mb += sup_need_vram_mb(e);
    }
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

/* The newest line of the engine's in-memory tail (its output or arun's note), at most
 * LAST_LOG_LINE_MAX bytes (cut at a character, "…" added: every engine.state event carries it,
 * and a card shows one line), or null (none yet, or bytes that are not UTF-8). */
static json_t *last_log_line(const struct engine *e)
{
    if (e->log == NULL)
        return json_null();
    struct buf b;
    buf_init(&b, ENGINE_LOG_MAX_LINE + sizeof(ENGINE_LOG_CUT_MARK) + 2);
    engine_log_tail(e->log, 1, &b);
    size_t n = b.len;
    while (n > 0 && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r'))
        n--;
    bool cut = n > LAST_LOG_LINE_MAX;
    if (cut) {
        n = LAST_LOG_LINE_MAX;
        while (n > 0 && ((unsigned char)b.data[n] & 0xC0) == 0x80)
            n--; /* not inside a UTF-8 sequence */
        b.len = n;
        IGNORE_RESULT(buf_append(&b, "…", strlen("…"))); /* fits: the line was longer */
        n = b.len;
    }
    json_t *j = n > 0 ? json_stringn(b.data, n) : json_null();
    buf_cleanup(&b);
    return j != NULL ? j : json_null();
}

json_t *engine_to_json(const struct engine *e)
{
    json_t *models = json_array();
    for (size_t i = 0; i < e->cfg->nmodels; i++)
        json_array_append_new(models, json_string(e->cfg->models[i]));
    bool up = sup_running(e) && e->state != ENGINE_STOPPING;
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
    /* What a console's card shows: a load's progress against what past loads took, the last
     * line the engine (or arun about it) wrote, how long the instance has been up. */
    int64_t expected = engine_expected_load_ms(e);
    bool loading = e->state == ENGINE_STARTING || e->state == ENGINE_LOADING;
    json_object_set_new(j, "expected_load_ms",
                        expected >= 0 ? json_integer(expected) : json_null());
    json_object_set_new(j, "loading_since_ms",
                        loading && e->started_at_wall_ms > 0 ? json_integer(e->started_at_wall_ms)
                                                             : json_null());
    json_object_set_new(j, "loading_elapsed_ms",
                        loading ? json_integer((json_int_t)(clock_mono_ms() - e->spawned_ms))
                                : json_null());
    int64_t now = clock_wall_ms();
    json_object_set_new(j, "uptime_s",
                        up && e->started_at_wall_ms > 0 && now >= e->started_at_wall_ms
                            ? json_integer((now - e->started_at_wall_ms) / 1000)
                            : json_null());
    json_object_set_new(j, "last_log_line", last_log_line(e));
    return j;
}
