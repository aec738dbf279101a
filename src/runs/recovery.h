/*
 * recovery.h: what happens at start to the runs an earlier arun left unfinished (contract 5):
 * queued runs are scheduled again in the order they were created; a run that was in progress
 * continues from its stored events when its engine has `continuation: chat-prefix` (the engine
 * gets the partial answer as an assistant prefix, the log goes on with the next sequence
 * number), otherwise it ends failed with code `interrupted` and a sentence saying why.
 */
#ifndef ARUN_RUNS_RECOVERY_H
#define ARUN_RUNS_RECOVERY_H

#include "runs/run.h"

/* Starts the recovery scan: claims the unfinished runs for this node (store_runs_claim, the
 * first page with restart: every one on SQLite, on a shared store this node's own and those
 * whose lease ran out) and puts them
 * back to work (asynchronous: the loop serves meanwhile; requests about runs wait for the
 * load). Returns 0 or -errno from the store. */
int recovery_start(struct runs *rs) MUST_USE;

/* Runs claimed from nodes that stopped renewing their leases (the cluster's takeover): rows is
 * store_runs_claim's JSON array. Each is continued or ended as at start, logged ("took over run
 * resp_… from node X whose lease expired: …") and counted in arun_runs_taken_over_total. A run
 * already in memory is left as it is. */
void recovery_adopt(struct runs *rs, const char *rows, size_t len);
/* recovery_adopt as a cluster_adopt_cb (cluster.h), arg the struct runs. */
void recovery_adopt_cb(const char *rows, size_t len, void *arg);

#endif
