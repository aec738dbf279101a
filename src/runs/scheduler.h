/*
 * scheduler.h: runs on the gateway's call interface (gateway/gateway.h): a run's chat request
 * goes through the same per-engine queues, on-demand starts, limits, fallbacks and egress rules
 * as any client's, without HTTP to itself. The engine's stream becomes the run's events
 * (runs/translate.h) and the call's end becomes the run's end.
 */
#ifndef ARUN_RUNS_SCHEDULER_H
#define ARUN_RUNS_SCHEDULER_H

#include "runs/request.h"
#include "runs/run.h"

/* Loads what the engine must see before r's input: the earlier turns of previous_response_id
 * (store_history_read) or the conversation's items; then replaces each item_reference of the
 * input by the stored item it names (store_item_find; one naming an item of those earlier turns
 * is dropped: the engine has it already), in r->rq.input, so the stored request holds the items
 * themselves. Then cb runs with 0, or with -errno and err set: 404 (no such response or
 * conversation), 400 naming input[i].id (no stored item has that id), 5xx (the store failed).
 * Nothing to load or resolve: cb runs before this returns. Returns 0, or -errno from the store
 * (cb is then not called). */
typedef void (*scheduler_loaded_cb)(struct run *r, int status, const struct run_error *err,
                                    void *arg);
int scheduler_load_history(struct run *r, scheduler_loaded_cb cb, void *arg) MUST_USE;

/* Gives r its assembler (the engine's stream -> its events), if it has none yet. */
void scheduler_prepare(struct run *r);

/* Submits r to the gateway: the chat body from its request and history, with partial (or NULL)
 * as an assistant prefix to continue. Returns 0 (the run's end comes through its status), or
 * -errno with err set and nothing left running: 400 (a body the engine cannot express), 404
 * (no engine serves the model), 429 (the engine's queue is full, foreground runs only: a
 * background run waits; or the tenant's output_tokens_per_day is used up, with
 * err->retry_after_s), 503 (shutting down). */
int scheduler_start(struct run *r, const char *partial, struct run_error *err) MUST_USE;

/* Ends the engine call of r at once (its slot is freed); the status is the caller's to set. */
void scheduler_cancel(struct run *r);

/* A subscriber drained: a store:false run paused for its clients reads its engine again. */
void scheduler_resume(struct run *r);

#endif
