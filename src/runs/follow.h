/*
 * follow.h: the streams of runs that live on another node (docs/internals/runs.md, "Following
 * a run on another node"). Such a stream (stream.c, follow mode) has no run in memory to wait
 * on: it reads the run's events from the store, and this registry wakes it when the store says
 * that more of that run was committed (store_listen's STORE_NOTICE_EVENTS for its tenant and
 * id), when notices may have been lost (STORE_NOTICE_RESYNC), and every FOLLOW_REREAD_MS in any
 * case, so a lost notice delays a client by seconds but never hangs it.
 *
 * One registry per struct runs (runs.follow), made with its first follower; the store listener
 * is added then, once. Only a shared store has followers.
 */
#ifndef ARUN_RUNS_FOLLOW_H
#define ARUN_RUNS_FOLLOW_H

#include "runs/run.h"
#include "runs/stream.h"

/* A safety net, not the path: a notice wakes a follower within milliseconds. */
#define FOLLOW_REREAD_MS 2000
#define FOLLOW_BUCKETS 256 /* followers by response id */

/* Wakes s (stream_wake) on each notice about its run from now on, until follow_remove. */
void follow_add(struct runs *rs, struct stream_sub *s);
/* s is woken no more. A no-op for a stream that is not following. */
void follow_remove(struct stream_sub *s);
/* The registry goes with the runs (runs_free; every follower ended before). NULL-safe. */
void follow_free(struct runs *rs);

#endif
