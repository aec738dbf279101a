/*
 * supervisor_stop.c: stopping an engine and what happens when its instance is gone: stop_cmd
 * or SIGTERM to the group and every recorded pid, SIGKILL after stop_timeout_s, containers
 * stopped and removed; then `stopped` or `failed` with the exit in words, and the restart
 * policy (restart.max within SUPERVISOR_RESTART_WINDOW_S, exponential backoff).
 *
 * An engine is `stopped` only when none of its processes is alive: the stop timer checks every
 * recorded pid, not only the child arun spawned.
 */
#include "engines/supervisor_int.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
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

static void container_removed_cb(int status, const char *out, const char *why, void *arg)
{
    if (status == -ECANCELED)
        return; /* container_rt_free: the supervisor is gone */
    struct engine *e = arg;
    if (status != 0)
        log_warn("engines", "%s: could not remove container %s: %s", e->cfg->name,
                 e->container_name, why);
    if (e->state == ENGINE_STOPPING)
        sup_on_gone(e, 0, 0, false);
}

static void container_stopped_cb(int status, const char *out, const char *why, void *arg)
{
    if (status == -ECANCELED)
        return; /* container_rt_free: the supervisor is gone */
    struct engine *e = arg;
    if (e->follow != NULL) {
        container_follow_stop(e->follow);
        e->follow = NULL;
    }
    if (container_rm(e->sup->crt, e->container_name, container_removed_cb, e) != 0)
        container_removed_cb(-EIO, "", "rm could not be started", e);
}

static void run_stop_cmd(struct engine *e)
{
    struct manifest_vars v = sup_vars_of(e);
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

void sup_begin_stop(struct engine *e, bool failure, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->stop_reason, sizeof(e->stop_reason), fmt, ap);
    va_end(ap);
    e->stop_is_failure = failure;
    if (e->state == ENGINE_STOPPING)
        return;
    sup_cancel_probe(e);
    e->want_start = false;
    if (!sup_running(e)) {
        sup_set_state(e, ENGINE_STOPPED, "%s", e->stop_reason);
        return;
    }
    sup_set_state(e, ENGINE_STOPPING, "%s", e->stop_reason);
    if (e->backend == CONFIG_BACKEND_REMOTE) {
        sup_on_gone(e, 0, 0, false);
        return;
    }
    if (e->backend == CONFIG_BACKEND_CONTAINER && e->container_name[0]) {
        if (container_stop(e->sup->crt, e->container_name, e->cfg->stop_timeout_s,
                           container_stopped_cb, e) != 0)
            container_stopped_cb(-EIO, "", "stop could not be started", e);
        sup_arm_timer(e, (uint64_t)e->cfg->stop_timeout_s * 1000 + 10000);
        return;
    }
    if (e->cfg->stop_cmd != NULL && !failure)
        run_stop_cmd(e);
    else
        native_signal_all(e->pid, e->pids, e->npids, SIGTERM);
    sup_arm_timer(e, 100);
}

/* While stopping: escalate to SIGKILL at the deadline, and finish when nothing is alive. */
void sup_stop_timer_fired(struct engine *e)
{
    if (e->backend == CONFIG_BACKEND_CONTAINER) {
        log_warn("engines", "%s: container %s did not stop in time; removing it by force",
                 e->cfg->name, e->container_name);
        sup_on_gone(e, -1, SIGKILL, false);
        return;
    }
    size_t alive = 0;
    for (size_t i = 0; i < e->npids; i++)
        alive += proc_alive(e->sup->proc_root, e->pids[i]);
    native_reap_orphans(e->pids, e->npids, e->child ? e->pid : 0);
    if (alive == 0 && e->child == NULL) {
        sup_on_gone(e, 0, 0, false);
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
    sup_arm_timer(e, 100);
}

static void apply_restart_policy(struct engine *e, bool clean_exit, const char *what)
{
    const struct config_engine *c = e->cfg;
    bool restart = c->restart.policy == CONFIG_RESTART_ALWAYS ||
                   (c->restart.policy == CONFIG_RESTART_ON_FAILURE && !clean_exit);
    if (!restart || e->sup->shutting_down) {
        sup_set_state(e, clean_exit ? ENGINE_STOPPED : ENGINE_FAILED, "%s", what);
        return;
    }
    uint64_t now = clock_mono_ms();
    if (now - e->window_start_ms > SUPERVISOR_RESTART_WINDOW_S * 1000ull) {
        e->window_start_ms = now;
        e->window_restarts = 0;
    }
    if (e->window_restarts >= c->restart.max) {
        sup_set_state(e, ENGINE_FAILED, "%s; gave up after %u restarts within %d s (restart.max)",
                      what, e->window_restarts, SUPERVISOR_RESTART_WINDOW_S);
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
    sup_set_state(e, ENGINE_FAILED, "%s; restart %u/%u in %.1f s", what, e->window_restarts,
                  c->restart.max, (double)backoff / 1000.0);
    events_publish(e->sup->events, "engine.restart",
                   json_pack("{s:s, s:i, s:i, s:I, s:s}", "engine", c->name, "attempt",
                             (int)e->window_restarts, "max", (int)c->restart.max, "backoff_ms",
                             (json_int_t)backoff, "reason", what));
    engine_log_note(e->log, "restart %u/%u in %.1f s", e->window_restarts, c->restart.max,
                    (double)backoff / 1000.0);
    sup_arm_timer(e, backoff);
}

/* The engine's instance is gone (exited, or stopped and nothing is left). known: status/sig
 * are real (not an adopted process seen gone by sampling). */
void sup_on_gone(struct engine *e, int64_t status, int sig, bool known)
{
    struct supervisor *sup = e->sup;
    bool was_stopping = e->state == ENGINE_STOPPING;
    sup_cancel_probe(e);
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
    sup_record_save(e);

    if (was_stopping) {
        /* A restart is decided before the state is set, so waiting requests keep waiting. */
        bool again = e->stop_then_start && !sup->shutting_down;
        e->stop_then_start = false;
        e->want_start = again;
        if (e->stop_is_failure) {
            if (e->cfg->restart.policy != CONFIG_RESTART_NEVER && !sup->shutting_down && !again)
                apply_restart_policy(e, false, e->stop_reason);
            else
                sup_set_state(e, ENGINE_FAILED, "%s", e->stop_reason);
        } else {
            sup_set_state(e, ENGINE_STOPPED, "%s", e->stop_reason);
        }
        sup_schedule(sup);
        sup_check_shutdown_done(sup);
        return;
    }
    struct buf what;
    buf_init(&what, 512 + PATH_MAX); /* the log's path was opened, so it is under PATH_MAX */
    if (known)
        native_describe_exit(status, sig, &what);
    else
        buf_puts(&what, "exited (it was adopted from a previous arun, so its exit "
                        "code is unknown)");
    buf_printf(&what, " after %.1f s", up_s);
    const char *last = engine_log_last_line(e->log);
    if (last != NULL)
        buf_printf(&what, ": %.200s", last);
    buf_printf(&what, " (see %s)", engine_log_path(e->log));
    engine_log_note(e->log, "%s", buf_cstr(&what));
    apply_restart_policy(e, known && status == 0 && sig == 0, buf_cstr(&what));
    buf_cleanup(&what);
    sup_schedule(sup);
    sup_check_shutdown_done(sup);
}

void sup_on_native_exit(struct native_child *c, int64_t status, int sig, void *arg)
{
    struct engine *e = arg;
    native_child_free(c);
    e->child = NULL;
    if (e->state == ENGINE_STOPPING) {
        /* Our child is gone; others of its tree may remain: the stop timer finishes. */
        sup_stop_timer_fired(e);
        return;
    }
    sup_on_gone(e, status, sig, true);
}
