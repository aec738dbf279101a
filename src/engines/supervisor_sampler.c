/*
 * supervisor_sampler.c: every SUPERVISOR_SAMPLE_MS a worker thread reads the process table,
 * host memory, PSI and the GPUs; back on the loop each engine's process set, memory and loading
 * progress are updated, and the samples' consequences are drawn: an engine over its memory
 * envelope is killed, the largest one under memory pressure stopped, an idle one unloaded after
 * ttl_s, an adopted one seen gone. Engine output written to log files is picked up here too.
 */
#include "engines/supervisor_int.h"

#include <inttypes.h>
#include <signal.h>
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

/* Growth per sample that counts as loading progress. Reads include socket reads (rchar), so a
 * floor keeps our own health probes (a few hundred bytes a second) from looking like progress;
 * a model being read moves megabytes. */
#define PROGRESS_READ_BYTES (256u * 1024)
#define PROGRESS_RSS_BYTES (1u << 20) /* 1 MiB more resident: pages of a model coming in */

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
        sup_begin_stop(e, true,
                       "killed: used %.1f GiB of RAM, its envelope (memory.ram_mb) is %.1f "
                       "GiB",
                       (double)e->rss_bytes / (1 << 30), (double)declared / 1024);
        e->stop_then_start = false;
        native_signal_all(e->pid, e->pids, e->npids, SIGKILL);
        e->killed = true;
    }
    if (e->cfg->memory.vram_mb > 0 && e->vram_mb > e->cfg->memory.vram_mb &&
        e->state != ENGINE_STOPPING)
        sup_begin_stop(e, true,
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
        if (sup_running(e) && e->state != ENGINE_STOPPING &&
            (worst == NULL || e->rss_bytes > worst->rss_bytes))
            worst = e;
    }
    if (worst != NULL && worst->rss_bytes > 0)
        sup->psi_holdoff_until_ms = clock_mono_ms() + SUPERVISOR_PSI_HOLDOFF_MS;
    if (worst != NULL && worst->rss_bytes > 0)
        sup_begin_stop(worst, true,
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
        sup_begin_stop(e, false, "idle for %u s (ttl_s)", e->cfg->ttl_s);
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
        sup_free_if_done(sup);
        return;
    }
    if (s->host_ok)
        sup->host = s->host;
    if (s->psi_ok)
        sup->psi_full = s->psi_full;
    if (s->gpu_ok && s->gpu.ndevices > 0) {
        uint64_t free_mb = 0, total_mb = 0;
        for (int d = 0; d < s->gpu.ndevices; d++) {
            total_mb += s->gpu.dev[d].total_mb;
            free_mb += s->gpu.dev[d].total_mb > s->gpu.dev[d].used_mb
                           ? s->gpu.dev[d].total_mb - s->gpu.dev[d].used_mb
                           : 0;
        }
        sup->gpu_seen = true;
        sup->gpu_free_mb = free_mb;
        sup->gpu_total_mb = total_mb;
    }
    for (size_t i = 0; i < s->n && i < sup->nengines && status == 0 && !s->procs_failed; i++) {
        struct engine *e = &sup->engines[i];
        if (s->eng[i].root <= 0 || e->pid != s->eng[i].root || !sup_running(e))
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
            sup_on_gone(e, -1, 0, false);
            continue;
        }
        check_memory(e);
        idle_unload(e);
    }
    check_pressure(sup);
    sup_reap_orphans(sup);
    free(s->eng);
    free(s);
    sup_schedule(sup);
}

void sup_sample_timer_cb(uv_timer_t *t)
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
        if (!sup_running(e) || e->pid <= 0)
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

void sup_log_timer_cb(uv_timer_t *t)
{
    struct supervisor *sup = t->data;
    for (size_t i = 0; i < sup->nengines; i++)
        if (sup->engines[i].log != NULL && sup->engines[i].backend != CONFIG_BACKEND_CONTAINER)
            engine_log_poll(sup->engines[i].log);
}
