/*
 * sweep.h: retention (contract section 2, runs.retention_days): a background sweep that deletes
 * finished responses (with their events and items) and conversations older than the retention,
 * and Idempotency-Key claims older than RUNS_IDEM_TTL_MS, through store_runs_sweep in chunks.
 * It runs once at start and then every interval; it never blocks the loop (the store works on
 * its writer thread) and never removes the row of a run that is in memory.
 */
#ifndef ARUN_RUNS_SWEEP_H
#define ARUN_RUNS_SWEEP_H

#include <stdint.h>

#include "runs/run.h"

#define SWEEP_INTERVAL_MS (3600u * 1000u) /* hourly: retention is counted in days */
#define SWEEP_CHUNK                                                                                \
    256 /* rows of each kind per store transaction: short enough that the                          \
           events of live runs never wait long behind a sweep */
/* Tests only (documented in docs/internals/runs.md): the interval in ms instead of hourly, so an
 * e2e test sees the periodic sweep without waiting an hour. */
#define SWEEP_INTERVAL_ENV "ARUN_TEST_SWEEP_INTERVAL_MS"

struct sweep;

/* Starts the sweep of rs's store: a first round at once (from the loop, after this returns),
 * then one every interval_ms. retention_days 0 keeps responses and conversations (only expired
 * Idempotency-Key claims go). Registers arun_runs_swept_total{kind}. */
struct sweep *sweep_new(struct runs *rs, uint32_t retention_days, uint64_t interval_ms);
/* Stops the sweep. A round's store op in flight finishes first (its callback frees what is
 * left); call before runs_free. NULL is a no-op. */
void sweep_free(struct sweep *s);

/* The interval from SWEEP_INTERVAL_ENV when it is set to an integer 1..SWEEP_INTERVAL_MS, else
 * SWEEP_INTERVAL_MS. */
uint64_t sweep_interval_ms(void);

#endif
