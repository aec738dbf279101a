/*
 * proc.h: what arun can see of processes through /proc: a snapshot of every process (pid, parent,
 * group, session, start time, resident memory, bytes read), the set of processes that belong to
 * one engine, and whether a recorded process is still the same live process.
 *
 * Every function reads files and may block briefly: the supervisor calls them from a worker
 * thread (uv_queue_work). They keep no state between calls and are safe to call from any thread.
 * docs/internals/memory.md says where each number comes from and how "nothing escapes" works.
 */
#ifndef ARUN_ENGINES_PROC_H
#define ARUN_ENGINES_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/common.h"

/* PID_MAX_LIMIT on 64-bit Linux: /proc cannot list more processes than this, so it caps the
 * table a scan may build. */
#define PROC_TABLE_MAX 4194304
/* How much of /proc/PID/environ proc_environ_get() reads: engines' environments are a few KiB;
 * a variable arun itself sets is placed first, so it is always within this. */
#define PROC_ENVIRON_MAX (256 * 1024)

struct proc_info {
    pid_t pid, ppid, pgid, sid;
    uint64_t start_ticks;        /* field 22 of /proc/PID/stat (clock ticks after boot): with pid,
                                    identifies a process across pid reuse */
    uint64_t rss_bytes;          /* /proc/PID/statm resident pages * page size (anon + file +
                                    shmem: an mmap'ed model counts once its pages are touched) */
    uint64_t read_bytes;         /* the "loading progress" measure: max(rchar, storage_read_bytes),
                                    see docs/internals/memory.md; 0 when io is unreadable */
    uint64_t rchar;              /* /proc/PID/io rchar: bytes read() by the process, page cache
                                    hits included, mmap faults not */
    uint64_t storage_read_bytes; /* /proc/PID/io read_bytes: bytes the process made the block
                                    layer fetch, mmap faults included, page cache hits not */
    char state;                  /* R S D Z T …; Z (zombie) and X (dead) count as gone */
    char comm[32];               /* the name between the parentheses of /proc/PID/stat */
};

/* A snapshot of the processes under one proc root, sorted by pid. */
struct proc_table {
    struct proc_info *procs; /* n of them, ascending pid; owned by the table */
    size_t n;
};

/* One process across pid reuse: a pid alone may name a different process tomorrow. */
struct proc_id {
    pid_t pid;
    uint64_t start_ticks;
};

/* Reads every process under proc_root ("/proc" normally; tests may point elsewhere) into *out,
 * which the caller frees with proc_table_free(). Processes that vanish mid-scan are skipped; a
 * process whose /proc/PID/io is unreadable (another user's without privilege, or a kernel without
 * io accounting) gets zero read counters. Returns 0, or -errno when proc_root cannot be listed
 * (*out is then empty). */
int proc_table_read(const char *proc_root, struct proc_table *out) MUST_USE;
/* Frees the table's storage and leaves it empty. */
void proc_table_free(struct proc_table *t);
/* The entry of pid, or NULL. Zombies are in the table; callers that want the living check
 * proc_info_gone(). */
const struct proc_info *proc_table_find(const struct proc_table *t, pid_t pid);

/* The engine's processes, zombies excluded:
 *  - root itself and every process whose ppid chain leads to root;
 *  - every process in the group or session that root leads (pgid == root or sid == root; a root
 *    that leads neither shares its group with its parent, arun, which must never count);
 *  - every (pid, start_ticks) in known[] that is still alive with the same start_ticks (the
 *    recorded set: a process that left with setsid and was reparented to arun, the subreaper,
 *    shares neither ancestry nor group with root any more), and, recursively, what descends from
 *    them or sits in a group or session they lead.
 * A known[] entry for root with a different start_ticks means root's pid was reused: root and
 * its ppid descendants are then not counted. Writes up to cap ids into out (ascending pid) and
 * returns how many matched, which may exceed cap (then out holds the first cap). Feed the result
 * back as known[] on the next call so the set follows the engine as it forks. */
size_t proc_tree(const struct proc_table *t, pid_t root, const struct proc_id *known, size_t nknown,
                 struct proc_id *out, size_t cap);
/* Sums rss_bytes and read_bytes over the ids that are in t, alive and with the same start_ticks.
 * The read sum can go down when a process exits (its counters leave with it): treat any change
 * as progress, not only growth. */
void proc_sum(const struct proc_table *t, const struct proc_id *ids, size_t n, uint64_t *rss_bytes,
              uint64_t *read_bytes);
/* Whether (pid, start_ticks) is alive (not a zombie) now. */
bool proc_alive(const char *proc_root, struct proc_id id);
/* Start time of a live pid, for adoption after an arun restart: 0 and *out, or -ESRCH (no such
 * process, or a zombie), or another -errno when /proc/PID/stat cannot be read or parsed. */
int proc_start_ticks(const char *proc_root, pid_t pid, uint64_t *out) MUST_USE;

/* The value of one variable in the environment a live process was started with
 * (/proc/PID/environ, as its exec saw it; later setenv() calls do not show). Reads at most
 * PROC_ENVIRON_MAX bytes of it: a variable past that is not found. Copies the value into out
 * (truncated to cap - 1 bytes) and returns 0, or -ENOENT when the variable is absent, -ESRCH
 * when the process is gone, or another -errno (-EACCES: another user's process). */
int proc_environ_get(const char *proc_root, pid_t pid, const char *key, char *out,
                     size_t cap) MUST_USE;

/* Whether a process in a snapshot has exited (zombie or dead) though its entry remains. */
static inline bool proc_info_gone(const struct proc_info *p)
{
    return p->state == 'Z' || p->state == 'X' || p->state == 'x';
}

#endif
