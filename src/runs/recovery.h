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

/* Starts the recovery scan (asynchronous: the loop serves meanwhile; a GET of a run not yet
 * recovered reads its stored row). Returns 0 or -errno from the store. */
int recovery_start(struct runs *rs) MUST_USE;

#endif
