/*
 * native.h: engines as native processes. Each engine runs in a session and process group of
 * its own (setsid), so a signal to the group reaches everything it started; what leaves the
 * group (setsid, setpgrp) is still found through the recorded pid set (engines/proc.h) and
 * arun's PR_SET_CHILD_SUBREAPER, and signalled one by one.
 */
#ifndef ARUN_ENGINES_NATIVE_H
#define ARUN_ENGINES_NATIVE_H

#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#include "core/buf.h"
#include "engines/proc.h"

struct native_child;

/* The child exited: exit_status, or term_signal when killed. The child must be freed with
 * native_child_free afterwards (not necessarily from inside the callback). */
typedef void (*native_exit_cb)(struct native_child *c, int64_t exit_status, int term_signal,
                               void *arg);

/* Checks what can be checked before spawning, so the common mistakes fail at once with a
 * sentence: the binary (argv[0]) on PATH, the cwd, the port free on 127.0.0.1. Returns 0 or
 * -errno with the sentence in why ("binary not found: llama-server (PATH=/usr/bin:/bin)"). */
int native_precheck(char **argv, const char *cwd, uint16_t port, struct buf *why) MUST_USE;

/* Spawns argv with env in a new session; stdout and stderr go to out_fd (the engine's log
 * file, so the engine keeps writing there even while arun is down). Returns 0 and *out, or
 * -errno with a sentence in why; on error cb is never called. */
int native_spawn(uv_loop_t *loop, char **argv, char **env, const char *cwd, int out_fd,
                 native_exit_cb cb, void *arg, struct native_child **out, struct buf *why) MUST_USE;

pid_t native_child_pid(const struct native_child *c);
/* Closes the process handle (after exit, or to forget a child that keeps running). */
void native_child_free(struct native_child *c);

/* Sends sig to the process group pgid and to every recorded process (each checked against
 * its start time first, so a reused pid is never hit). Returns how many were signalled. */
size_t native_signal_all(pid_t pgid, const struct proc_id *ids, size_t n, int sig);

/* Reaps zombies among ids that are children of arun but not libuv's (orphans reparented to
 * arun as the subreaper). Never touches pids libuv waits for. */
void native_reap_orphans(const struct proc_id *ids, size_t n, pid_t skip);

/* Makes arun the reaper of its engines' orphaned descendants. Call once at start. */
void native_become_subreaper(void);

/* A sentence for an exit: "exited with code 1", "killed by signal 9 (SIGKILL)". */
void native_describe_exit(int64_t exit_status, int term_signal, struct buf *out);

#endif
