/*
 * limits.h: limits per tenant (contract 2 `tenants:`, issue 13): requests per minute,
 * concurrent requests, output tokens per day and queued runs, each 0 = unlimited, from the
 * `default` entry with overrides by tenant name. Over a limit the request gets 429 with
 * Retry-After and a message naming the limit and its value. The daily token counters are kept
 * in the store (store_usage_*) so they survive a restart.
 *
 * The gate (auth.c) calls limits_enter/limits_leave around every authenticated request; the
 * gateway calls limits_check_tokens before queueing a generation and limits_add_tokens with
 * each answer's usage; the runs call limits_queued_runs for their own queue count.
 */
#ifndef ARUN_TENANCY_LIMITS_H
#define ARUN_TENANCY_LIMITS_H

#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "core/metrics.h"
#include "store/store.h"

#define LIMITS_MESSAGE_MAX 256

/* Why a request was refused: the answer the caller sends (429). */
struct limits_refusal {
    const char *limit;                /* the config key: "requests_per_minute", … */
    uint64_t value;                   /* its value for this tenant */
    uint32_t retry_after_s;           /* for Retry-After (>= 1) */
    char message[LIMITS_MESSAGE_MAX]; /* a sentence naming the limit and its value */
};

struct limits;

/* Creates the limits of cfg's `tenants:` section; st (not owned) keeps the daily counters. */
struct limits *limits_new(uv_loop_t *loop, const struct config *cfg, struct store *st,
                          struct metrics *metrics);
/* Reads today's counters from the store; done(status, arg) runs once they are in (status 0)
 * or could not be read (-errno: counting starts from zero and that is logged). Call before
 * serving. Returns 0, or -errno without calling done. */
int limits_load(struct limits *l, void (*done)(int status, void *arg), void *arg) MUST_USE;
/* Frees them (pending counter writes still commit). NULL is a no-op. */
void limits_free(struct limits *l);

/* Admits one request of tenant: counts it against requests_per_minute and takes one of its
 * concurrent_requests. Returns 0 (the caller must call limits_leave when the request ends), or
 * -EAGAIN with why filled in. */
int limits_enter(struct limits *l, const char *tenant, struct limits_refusal *why);
/* Gives back the concurrency slot of a request limits_enter admitted. */
void limits_leave(struct limits *l, const char *tenant);
/* Whether tenant may start a generation now: 0, or -EAGAIN with why filled in when today's
 * output_tokens_per_day is used up (Retry-After: until midnight UTC). */
int limits_check_tokens(struct limits *l, const char *tenant, struct limits_refusal *why);
/* Counts n output tokens of an answer for tenant today (kept in the store). */
void limits_add_tokens(struct limits *l, const char *tenant, uint64_t n);
/* The tenant's queued_runs limit (0 = unlimited). */
uint32_t limits_queued_runs(const struct limits *l, const char *tenant);

#endif
