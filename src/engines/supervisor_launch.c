/*
 * supervisor_launch.c: starting an engine's instance once admission said yes: the port (fixed,
 * or the first free one of the auto range from the name's hash), a native process with its
 * environment marker and log file, or a container (a stale one of the same name removed first),
 * and the container's output and exit followers. It moves the engine to `starting` or `failed`;
 * probing (supervisor_probe.c) takes it from there.
 */
#include "engines/supervisor_int.h"

#include <errno.h>
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

static void container_started_cb(int status, const char *out, const char *why, void *arg);

static bool port_taken_by_engine(struct supervisor *sup, const struct engine *self, uint16_t p)
{
    for (size_t i = 0; i < sup->nengines; i++) {
        const struct engine *o = &sup->engines[i];
        if (o != self && o->port == p && (sup_running(o) || o->cfg->port == p))
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
    /* Start where the data_dir and the name hash to, so an engine tends to get the same port
     * each time, and two aruns (other data_dirs) starting engines of the same name at the same
     * moment do not both find the same port free and race for it. */
    uint32_t h = 2166136261u;
    for (const char *p = e->sup->cfg->data_dir; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
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
    buf_printf(why, "no free port in %d-%d for port: auto", PORT_AUTO_FIRST, PORT_AUTO_LAST);
    return -EADDRINUSE;
}

static int spawn_native(struct engine *e, struct buf *why)
{
    struct manifest_vars v = sup_vars_of(e);
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
            buf_printf(why, "cannot open the log file %s: %s", engine_log_path(e->log),
                       strerror(-fd));
            rc = fd;
        }
    }
    if (rc == 0)
        rc = native_spawn(e->sup->loop, argv, env, e->cfg->cwd, fd, sup_on_native_exit, e,
                          &e->child, why);
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
        for (char **a = argv; *a != NULL && !cmdline.truncated; a++)
            buf_printf(&cmdline, "%s%s", a == argv ? "" : " ", *a);
        engine_log_note(e->log, "started pid %d: %s%s", (int)e->pid, buf_cstr(&cmdline),
                        cmdline.truncated ? " …" : "");
        buf_cleanup(&cmdline);
    }
    manifest_argv_free(argv);
    manifest_argv_free(env);
    return rc;
}

static int run_container(struct engine *e, struct buf *why)
{
    struct manifest_vars v = sup_vars_of(e);
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
    char label_engine[128], label_manifest[64], label_dir[64], id[MANIFEST_MARKER_MAX];
    snprintf(label_engine, sizeof(label_engine), "arun.engine=%s", c->name);
    snprintf(label_manifest, sizeof(label_manifest), "arun.manifest=%s", e->manifest_hash);
    manifest_marker(e->sup->cfg->data_dir, "", id, sizeof(id));
    snprintf(label_dir, sizeof(label_dir), MANIFEST_DATA_DIR_LABEL "=%.16s", id);
    const char *labels[] = {label_engine, label_manifest, label_dir};
    if (rc == 0) {
        struct container_spec s = {.name = e->container_name,
                                   .image = c->image,
                                   .args = (const char *const *)args,
                                   .nargs = c->nargs,
                                   .env = env,
                                   .nenv = c->nenv,
                                   .labels = labels,
                                   .nlabels = ARRAY_SIZE(labels),
                                   .host_port = e->port,
                                   .container_port = e->port,
                                   .memory_mb = c->memory.ram_mb,
                                   .gpus = c->memory.vram_mb > 0};
        rc = container_run(e->sup->crt, &s, container_started_cb, e);
        if (rc != 0)
            buf_printf(why, "cannot run %s: %s", container_rt_name(e->sup->crt), strerror(-rc));
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
    if (status == -ECANCELED)
        return; /* container_rt_free: the supervisor is gone */
    struct engine *e = arg;
    if (e->state != ENGINE_STARTING)
        return;
    struct buf why;
    buf_init(&why, 1024);
    if (run_container(e, &why) != 0) {
        sup_set_state(e, ENGINE_FAILED, "%s", buf_cstr(&why));
    }
    buf_cleanup(&why);
}

static int spawn_container(struct engine *e, struct buf *why)
{
    manifest_container_name(e->sup->cfg->data_dir, e->cfg->name, e->container_name,
                            sizeof(e->container_name));
    int rc = container_rm(e->sup->crt, e->container_name, stale_removed_cb, e);
    if (rc != 0)
        buf_printf(why, "cannot run %s: %s", container_rt_name(e->sup->crt), strerror(-rc));
    else
        engine_log_note(e->log, "starting container %s from %s", e->container_name, e->cfg->image);
    return rc;
}

/* Starts the engine now (admission already said yes). */
void sup_spawn_engine(struct engine *e)
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
        sup_set_state(e, ENGINE_FAILED,
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
        sup_set_state(e, ENGINE_STARTING, "checking the remote API at %s", e->cfg->url);
        sup_start_probing(e);
        return;
    }
    int rc = e->backend_ok ? pick_port(e, &why) : -ENOTSUP;
    if (!e->backend_ok)
        buf_puts(&why, e->backend_reason);
    if (rc == 0)
        rc = e->backend == CONFIG_BACKEND_CONTAINER ? spawn_container(e, &why)
                                                    : spawn_native(e, &why);
    if (rc != 0) {
        sup_set_state(e, ENGINE_FAILED, "%s", buf_cstr(&why));
        buf_cleanup(&why);
        return;
    }
    buf_cleanup(&why);
    e->spawned_ms = e->last_progress_ms = clock_mono_ms();
    e->started_at_wall_ms = clock_wall_ms();
    sup_set_state(e, ENGINE_STARTING, "spawned, waiting for it to answer on port %u", e->port);
    if (e->backend == CONFIG_BACKEND_NATIVE) {
        sup_record_save(e);
        sup_start_probing(e);
    }
}

void sup_on_container_output(int stream, const char *p, size_t n, void *arg)
{
    struct engine *e = arg;
    engine_log_feed(e->log, stream, p, n);
}

static void container_inspect_exit_cb(int status, const struct container_state *st, const char *why,
                                      void *arg)
{
    if (status == -ECANCELED)
        return; /* container_rt_free: the supervisor is gone */
    struct engine *e = arg;
    if (!sup_running(e) || e->state == ENGINE_STOPPING)
        return;
    if (status == 0 && st->running)
        return; /* the follower ended, the container did not */
    sup_on_gone(e, status == 0 ? st->exit_code : -1, 0, status == 0);
}

void sup_container_follow_exit_cb(int status, void *arg)
{
    if (status == -ECANCELED)
        return; /* container_rt_free: the supervisor is gone */
    struct engine *e = arg;
    e->follow = NULL;
    /* While stopping, the stop path ends the instance once `rm` is done: an exit seen here
     * would end it before the container is removed, and arun could exit leaving it behind. */
    if (sup_running(e) && e->state != ENGINE_STOPPING &&
        container_inspect(e->sup->crt, e->container_name, container_inspect_exit_cb, e) != 0)
        sup_on_gone(e, -1, 0, false);
}

static void container_pid_cb(int status, const struct container_state *st, const char *why,
                             void *arg)
{
    if (status == -ECANCELED)
        return; /* container_rt_free: the supervisor is gone */
    struct engine *e = arg;
    if (status == 0 && st->running && sup_running(e)) {
        e->pid = st->pid;
        if (proc_start_ticks(e->sup->proc_root, e->pid, &e->pid_start_ticks) != 0)
            e->pid_start_ticks = 0;
        sup_record_save(e);
    }
}

static void container_started_cb(int status, const char *out, const char *why, void *arg)
{
    if (status == -ECANCELED)
        return; /* container_rt_free: the supervisor is gone */
    struct engine *e = arg;
    if (e->state != ENGINE_STARTING)
        return;
    if (status != 0) {
        sup_set_state(e, ENGINE_FAILED, "container did not start: %s", why);
        sup_schedule(e->sup);
        return;
    }
    engine_log_note(e->log, "container %s started: %.12s", e->container_name, out);
    if (container_logs_follow(e->sup->crt, e->container_name, sup_on_container_output,
                              sup_container_follow_exit_cb, e, &e->follow) != 0)
        e->follow = NULL;
    /* Without the pid (the inspect could not start) the engine runs, unsampled and unrecorded
     * by pid; the container module logs why. */
    IGNORE_RESULT(container_inspect(e->sup->crt, e->container_name, container_pid_cb, e));
    sup_start_probing(e);
}
