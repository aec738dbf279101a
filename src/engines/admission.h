/*
 * admission.h: whether an engine may start now, as a pure function of a snapshot of the node
 * (design.md "Admission"). An engine starts only if its need, max(declared, peak seen), fits in
 * the node's envelope beside what the other running engines need; otherwise idle engines are
 * stopped least recently used first, and an engine that can never fit is refused.
 *
 * No loop, no processes, no clock: the supervisor builds the snapshot from its engines and acts
 * on the decision; `arun doctor` asks the same questions of a config with nothing running. Safe
 * from any thread.
 */
#ifndef ARUN_ENGINES_ADMISSION_H
#define ARUN_ENGINES_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

/* The memory the node gives engines. */
struct admission_envelope {
    uint64_t ram_mb;  /* node.ram_mb, or MemTotal minus node.reserve_mb (0 when that is <= 0) */
    uint64_t vram_mb; /* node.vram_mb, or the GPUs' total */
    char why[256];    /* where the numbers come from, for reasons and logs */
};

/* One engine as admission sees it. */
struct admission_engine {
    const char *name;      /* for nothing but the caller's messages */
    const char *group;     /* exclusive group (config `group`), or NULL */
    uint64_t need_ram_mb;  /* max(memory.ram_mb, peak resident seen) */
    uint64_t need_vram_mb; /* max(memory.vram_mb, peak VRAM seen) */
    bool running;          /* starting, loading, ready, unhealthy or stopping: holds memory */
    bool stopping;         /* its memory comes back when its processes are gone */
    bool serving;          /* ready or unhealthy: the only states an eviction may stop */
    bool busy;             /* requests in flight or queued: never stopped for another */
    bool resident;         /* ready for less than min_resident_s: not evicted for room */
    bool remote;           /* a hosted API: holds no memory here */
    uint64_t last_used_ms; /* the last request's end (monotonic): least recently used goes */
};

enum admission_verdict {
    ADMISSION_START,     /* it fits now */
    ADMISSION_TOO_LARGE, /* it can never fit in the envelope: refuse with the numbers */
    ADMISSION_GROUP,     /* other members of its exclusive group run: stop the idle ones (in
                            stop[]), and wait until every member is stopped */
    ADMISSION_WAIT,      /* stops under way may make room: wait for them */
    ADMISSION_EVICT,     /* stop the engine at victim (idle, least recently used), then decide
                            again */
    ADMISSION_NO_ROOM,   /* it does not fit and nothing may be stopped for it */
};

struct admission_decision {
    enum admission_verdict verdict;
    bool vram;                              /* TOO_LARGE: VRAM does not fit (else RAM) */
    size_t victim;                          /* EVICT: index of the engine to stop */
    size_t nstop;                           /* GROUP: how many indices stop[] holds */
    uint64_t ram_in_use_mb, vram_in_use_mb; /* what the other running engines need */
};

/* The envelope from the config and what the machine has: host_total_mb is MemTotal (0 when
 * unknown), gpu_total_mb the GPUs' total (0 when none), gpu_why how the GPUs were seen (may be
 * empty). */
void admission_envelope(const struct config *cfg, uint64_t host_total_mb, uint64_t gpu_total_mb,
                        const char *gpu_why, struct admission_envelope *out);

/* Decides for engines[which], which wants to start and is not running. stop must hold n
 * entries; on ADMISSION_GROUP it receives the indices of the group members to stop now. */
void admission_decide(const struct admission_engine *engines, size_t n, size_t which,
                      const struct admission_envelope *env, size_t *stop,
                      struct admission_decision *out);

#endif
