/*
 * record.h: the engine record, what one arun leaves for the next about an engine instance it
 * started (kv namespace ENGINE_RECORD_NS, key = engine name, value = JSON). The supervisor saves
 * it and adopts from it (supervisor_adopt.c); `arun doctor` reads it to report orphans while no
 * arun runs. One format, parsed and written only here. No loop, no I/O; safe from any thread.
 */
#ifndef ARUN_ENGINES_RECORD_H
#define ARUN_ENGINES_RECORD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/common.h"

#define ENGINE_RECORD_NS "engines" /* the store's kv namespace of engine records; on a shared
                                     store "engines@NODE_ID", one per node */
#define ENGINE_RECORD_LOADS 8      /* past load durations kept for the remaining-time estimate */

struct engine_record {
    pid_t pid;                           /* native: the engine (= its group); container: init;
                                            0 when no instance runs */
    uint64_t start_ticks;                /* the pid's start time (proc.h): pid reuse is seen */
    uint16_t port;                       /* where it listens */
    char backend[16];                    /* "native", "container", "remote" */
    char container[96];                  /* the container's name; "" for native */
    char manifest[17];                   /* manifest_hash() of what runs */
    int64_t started_at_ms;               /* wall clock of the spawn */
    uint64_t loads[ENGINE_RECORD_LOADS]; /* load durations, oldest first */
    size_t nloads;
    uint32_t restarts;
};

/* Reads a record from its JSON object; fields that are absent read as zero or "". Returns 0, or
 * -EINVAL when j is not an object. */
int engine_record_from_json(const json_t *j, struct engine_record *out) MUST_USE;
/* Parses a record's text. Returns 0 or -EINVAL (not JSON, not an object). */
int engine_record_parse(const char *text, size_t len, struct engine_record *out) MUST_USE;
/* The record as compact JSON text (heap; the caller frees it). */
char *engine_record_format(const struct engine_record *r);

#endif
