/*
 * supervisor_adopt.c: what survives an arun that is gone. The engine record (kv namespace
 * "engines": pid, start time, port, manifest hash, load history) is saved when an instance
 * starts and changes; at start-up a new arun reads the records and adopts each engine whose
 * process still runs the same manifest, kills the remnants of the rest, and stops the processes
 * of engines gone from the config. Containers labelled arun.engine are adopted or removed.
 *
 * DESIGN
 * A record is committed some milliseconds after its spawn, so records alone miss an engine
 * started just before arun died. Every native engine therefore carries an environment marker
 * (MANIFEST_MARKER_ENV=<data_dir id>/<name>, manifest.h), inherited by its children: once the
 * records are settled, a scan of /proc/PID/environ finds every process with this data_dir's
 * marker, and each one outside an adopted engine's process tree is stopped (SIGTERM, SIGKILL
 * after SUPERVISOR_ORPHAN_GRACE_MS or at a clean shutdown). So kill -9 of arun at any moment
 * leaves no engine that the next arun neither adopts nor stops.
 *
 * Adoption is a count of steps in flight (sup->adopting): each record read, the container
 * list and each container inspect, the orphan listing, then the marker scan. The supervisor
 * becomes ready, and `start: always` is decided, only when the count reaches zero, so a start
 * decision never races the adoption of the same engine.
 */
#include "engines/supervisor_int.h"

#include <errno.h>
#include <signal.h>
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
#include "engines/record.h"

static void adoption_step_done(struct supervisor *sup);
static void container_leftovers_cb(int status, json_t *list, const char *why, void *arg);

static void record_saved_cb(int status, void *arg)
{
    if (status != 0)
        log_warn_errno("engines", status,
                       "could not save an engine record; adoption after a "
                       "crash may not find it");
}

void sup_record_save(struct engine *e)
{
    if (e->sup->store == NULL)
        return;
    struct engine_record r = {.pid = e->pid,
                              .start_ticks = e->pid_start_ticks,
                              .port = e->port,
                              .started_at_ms = e->started_at_wall_ms,
                              .nloads = e->nloads,
                              .restarts = e->restarts};
    snprintf(r.backend, sizeof(r.backend), "%s", config_backend_name(e->backend));
    snprintf(r.container, sizeof(r.container), "%s", e->container_name);
    snprintf(r.manifest, sizeof(r.manifest), "%s", e->manifest_hash);
    memcpy(r.loads, e->loads, e->nloads * sizeof(e->loads[0]));
    char *s = engine_record_format(&r);
    if (store_kv_put(e->sup->store, e->sup->record_ns, e->cfg->name, s, strlen(s), record_saved_cb,
                     e) != 0)
        log_warn("engines", "%s: engine record not saved (store busy or closing)", e->cfg->name);
    free(s);
}

static void adopt(struct engine *e, const struct engine_record *rec)
{
    pid_t pid = rec->pid;
    uint64_t ticks = rec->start_ticks;
    memcpy(e->loads, rec->loads, rec->nloads * sizeof(e->loads[0]));
    e->nloads = rec->nloads;
    if (e->nloads > 0)
        e->last_load_ms = e->loads[e->nloads - 1];
    e->restarts = rec->restarts;
    if (pid <= 0 || e->backend != CONFIG_BACKEND_NATIVE)
        return;
    struct proc_id id = {.pid = pid, .start_ticks = ticks};
    bool alive = proc_alive(e->sup->proc_root, id);
    bool same = strcmp(rec->manifest, e->manifest_hash) == 0;
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
    e->port = rec->port;
    e->started_at_wall_ms = rec->started_at_ms;
    e->spawned_ms = e->last_progress_ms = clock_mono_ms();
    engine_log_note(e->log, "adopted pid %d from a previous arun (port %u)", (int)pid, e->port);
    sup_set_state(e, ENGINE_STARTING, "adopted pid %d from a previous arun; probing it", (int)pid);
    sup_start_probing(e);
}

static void record_read_cb(int status, const char *value, size_t len, void *arg)
{
    struct engine *e = arg;
    struct supervisor *sup = e->sup;
    sup->works--;
    if (sup->freeing) {
        sup_free_if_done(sup);
        return;
    }
    struct engine_record rec;
    if (status == 0 && engine_record_parse(value, len, &rec) == 0)
        adopt(e, &rec);
    adoption_step_done(e->sup);
}

static void orphan_record_deleted_cb(int status, void *arg)
{
}

/* Stops a process a previous arun left that this one does not adopt: SIGTERM now, SIGKILL
 * after SUPERVISOR_ORPHAN_GRACE_MS (sup_reap_orphans) or at shutdown, whichever comes first. pgid
 * is the group to signal with it (0: none). */
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
        sup_free_if_done(sup);
        return;
    }
    json_t *all = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
    const char *name;
    json_t *j;
    json_object_foreach(all, name, j)
    {
        struct engine_record rec;
        if (supervisor_find(sup, name) != NULL || engine_record_from_json(j, &rec) != 0)
            continue;
        struct proc_id id = {.pid = rec.pid, .start_ticks = rec.start_ticks};
        if (id.pid > 1 && proc_alive(sup->proc_root, id)) {
            log_warn("engines",
                     "engine %s is no longer in the config, but pid %d that a "
                     "previous arun started for it still runs; stopping it",
                     name, (int)id.pid);
            stop_orphan(sup, id, id.pid, name);
        }
        /* A record the store refuses to delete now is found again by the next arun, whose
         * orphan check finds its process gone or stops it: nothing to do here either way. */
        IGNORE_RESULT(
            store_kv_delete(sup->store, sup->record_ns, name, orphan_record_deleted_cb, sup));
    }
    json_decref(all);
    adoption_step_done(sup);
}

/* Called by the sampler: orphans that outlive their grace get SIGKILL. */
void sup_reap_orphans(struct supervisor *sup)
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

void sup_kill_orphans(struct supervisor *sup)
{
    for (size_t i = 0; i < sup->norphans; i++)
        native_signal_all(sup->orphans[i].id.pid, &sup->orphans[i].id, 1, SIGKILL);
    sup->norphans = 0;
}

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
        sup_free_if_done(sup);
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
        if (!e->adopted || !sup_running(e) || e->pid <= 0)
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
        if ((e->cfg->start == CONFIG_START_ALWAYS || remote) && !sup_running(e) && e->backend_ok) {
            e->want_start = true;
            snprintf(e->start_why, sizeof(e->start_why), "start: always");
        }
    }
    sup_schedule(sup);
}

void sup_begin_adoption(struct supervisor *sup)
{
    sup->adopting = 1; /* one for this function, released at the end */
    for (size_t i = 0; i < sup->nengines; i++) {
        struct engine *e = &sup->engines[i];
        if (sup->store == NULL || !e->backend_ok)
            continue;
        sup->adopting++;
        sup->works++;
        if (store_kv_get(sup->store, sup->record_ns, e->cfg->name, record_read_cb, e) != 0) {
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
        if (store_kv_list(sup->store, sup->record_ns, orphans_listed_cb, sup) != 0) {
            sup->adopting--;
            sup->works--;
        }
    }
    adoption_step_done(sup);
}

/* e->container_name was set from the listing (container_leftovers_cb). */
static void adopt_container(struct engine *e, const struct container_state *st)
{
    e->pid = st->pid;
    e->adopted = false; /* the logs follower tells us when it exits */
    e->adopted_instance = true;
    e->spawned_ms = e->last_progress_ms = clock_mono_ms();
    engine_log_note(e->log, "adopted container %s from a previous arun", e->container_name);
    sup_set_state(e, ENGINE_STARTING, "adopted container %s from a previous arun; probing it",
                  e->container_name);
    if (container_logs_follow(e->sup->crt, e->container_name, sup_on_container_output,
                              sup_container_follow_exit_cb, e, &e->follow) != 0)
        e->follow = NULL;
    sup_start_probing(e);
}

/* One adoption step: a start decision for this engine waits for it (adoption_step_done). */
static void container_adopt_cb(int status, const struct container_state *st, const char *why,
                               void *arg)
{
    if (status == -ECANCELED)
        return; /* container_rt_free: the supervisor is gone */
    struct engine *e = arg;
    if (status == 0 && st->running && !sup_running(e))
        adopt_container(e, st);
    adoption_step_done(e->sup);
}

static void leftover_removed_cb(int status, const char *out, const char *why, void *arg)
{
    if (status == -ECANCELED)
        return; /* container_rt_free: the supervisor is gone */
    if (status != 0)
        log_warn("engines", "could not remove a leftover container: %s", why);
}

/* Containers labelled by arun: adopt ours that still run the same manifest (port from the
 * record), remove the rest so "container name already in use" never happens. Ours are those
 * labelled with this data_dir's id; another arun's (another id) are never touched. A container
 * with no data_dir label was started by an arun from before the label, which named it
 * arun-ENGINE: it is taken as ours, as that arun did. */
static void container_leftovers_cb(int status, json_t *list, const char *why, void *arg)
{
    if (status == -ECANCELED)
        return; /* container_rt_free: the supervisor is gone */
    struct supervisor *sup = arg;
    char id[MANIFEST_MARKER_MAX];
    size_t i;
    json_t *c;
    manifest_marker(sup->cfg->data_dir, "", id, sizeof(id));
    json_array_foreach(list, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *state = json_string_value(json_object_get(c, "state"));
        json_t *labels = json_object_get(c, "labels");
        const char *eng = json_string_value(json_object_get(labels, "arun.engine"));
        const char *hash = json_string_value(json_object_get(labels, "arun.manifest"));
        const char *dir = json_string_value(json_object_get(labels, MANIFEST_DATA_DIR_LABEL));
        if (dir != NULL && strncmp(dir, id, 16) != 0)
            continue; /* another data_dir's arun: not ours to adopt or remove */
        struct engine *e = eng ? supervisor_find(sup, eng) : NULL;
        bool keep = e != NULL && name != NULL && e->backend == CONFIG_BACKEND_CONTAINER && hash != NULL &&
                    strcmp(hash, e->manifest_hash) == 0 && state != NULL &&
                    strcmp(state, "running") == 0 && e->cfg->port != CONFIG_AUTO;
        if (keep) {
            /* Adoption settles before any start decision: `start: always` must find this
             * container running, not start a second one that replaces it. */
            e->port = (uint16_t)e->cfg->port;
            snprintf(e->container_name, sizeof(e->container_name), "%s", name);
            sup->adopting++;
            if (container_inspect(sup->crt, name, container_adopt_cb, e) != 0)
                sup->adopting--;
            continue;
        }
        if (name == NULL)
            continue;
        log_warn("engines", "removing leftover container %s (%s) from a previous arun", name,
                 state ? state : "unknown state");
        /* A failed start is logged by the container module; the name then stays taken and the
         * engine's own start removes it again (spawn_container). */
        IGNORE_RESULT(container_rm(sup->crt, name, leftover_removed_cb, sup));
    }
    adoption_step_done(sup);
}
