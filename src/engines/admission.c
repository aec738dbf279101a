/*
 * admission.c: the admission rules as a pure function of a snapshot. See admission.h.
 *
 * It owns the order of the questions, which is the policy: a need above the envelope is refused
 * first (no eviction can help), then an exclusive group is emptied, then the start goes ahead if
 * it fits beside what runs (engines being stopped still count: their memory is not back yet),
 * then stops under way are waited for before anyone else is evicted, and only then is the least
 * recently used idle engine chosen. It does not act: the caller stops, starts and words the
 * reasons.
 */
#include "engines/admission.h"

#include <stdio.h>
#include <string.h>

void admission_envelope(const struct config *cfg, uint64_t host_total_mb, uint64_t gpu_total_mb,
                        const char *gpu_why, struct admission_envelope *out)
{
    if (cfg->node.ram_mb == CONFIG_AUTO) {
        uint64_t reserve = cfg->node.reserve_mb > 0 ? (uint64_t)cfg->node.reserve_mb : 0;
        out->ram_mb = host_total_mb > reserve ? host_total_mb - reserve : 0;
    } else {
        out->ram_mb = (uint64_t)cfg->node.ram_mb;
    }
    out->vram_mb = cfg->node.vram_mb == CONFIG_AUTO ? gpu_total_mb : (uint64_t)cfg->node.vram_mb;
    snprintf(out->why, sizeof(out->why), "RAM %s, VRAM %s: %s",
             cfg->node.ram_mb == CONFIG_AUTO ? "MemTotal minus node.reserve_mb" : "node.ram_mb",
             cfg->node.vram_mb == CONFIG_AUTO ? "from the GPUs" : "node.vram_mb",
             gpu_why != NULL ? gpu_why : "");
}

static bool same_group(const struct admission_engine *a, const struct admission_engine *b)
{
    return a->group != NULL && b->group != NULL && strcmp(a->group, b->group) == 0;
}

/* Members of e's exclusive group that run; the idle ones not yet stopping go into stop[].
 * Returns whether any runs. */
static bool group_running(const struct admission_engine *engines, size_t n, size_t which,
                          size_t *stop, size_t *nstop)
{
    bool any = false;
    *nstop = 0;
    for (size_t i = 0; i < n; i++) {
        const struct admission_engine *o = &engines[i];
        if (i == which || !o->running || !same_group(o, &engines[which]))
            continue;
        any = true;
        if (!o->stopping && !o->busy)
            stop[(*nstop)++] = i;
    }
    return any;
}

/* The least recently used engine that may be stopped for room, or n. */
static size_t lru_victim(const struct admission_engine *engines, size_t n, size_t which)
{
    size_t best = n;
    for (size_t i = 0; i < n; i++) {
        const struct admission_engine *o = &engines[i];
        if (i == which || o->remote || !o->serving || o->busy || o->resident)
            continue;
        if (best == n || o->last_used_ms < engines[best].last_used_ms)
            best = i;
    }
    return best;
}

void admission_decide(const struct admission_engine *engines, size_t n, size_t which,
                      const struct admission_envelope *env, size_t *stop,
                      struct admission_decision *out)
{
    const struct admission_engine *e = &engines[which];
    bool stopping = false;
    *out = (struct admission_decision){.verdict = ADMISSION_NO_ROOM, .victim = n};
    for (size_t i = 0; i < n; i++) {
        if (i == which || !engines[i].running || engines[i].remote)
            continue;
        out->ram_in_use_mb += engines[i].need_ram_mb;
        out->vram_in_use_mb += engines[i].need_vram_mb;
        stopping |= engines[i].stopping;
    }
    if (e->need_ram_mb > env->ram_mb || e->need_vram_mb > env->vram_mb) {
        out->verdict = ADMISSION_TOO_LARGE;
        out->vram = e->need_vram_mb > env->vram_mb;
        return;
    }
    if (group_running(engines, n, which, stop, &out->nstop)) {
        out->verdict = ADMISSION_GROUP;
        return;
    }
    if (out->ram_in_use_mb + e->need_ram_mb <= env->ram_mb &&
        out->vram_in_use_mb + e->need_vram_mb <= env->vram_mb) {
        out->verdict = ADMISSION_START;
        return;
    }
    if (stopping) {
        out->verdict = ADMISSION_WAIT;
        return;
    }
    out->victim = lru_victim(engines, n, which);
    if (out->victim < n)
        out->verdict = ADMISSION_EVICT;
}
