/*
 * limits.h: limits per tenant (contract 2 `tenants:`, issue 13): requests per minute,
 * concurrent requests, output tokens per day and queued runs, each 0 = unlimited, from the
 * `default` entry with overrides by tenant name. Over a limit the request gets 429 with
 * Retry-After and a message naming the limit and its value. The daily token counters are kept
 * in the store (store_usage_*) so they survive a restart.
 *
 * The gate (auth.c) calls limits_enter/limits_leave around every authenticated request; the
 * gateway calls limits_check_tokens before queueing a generation and limits_add_tokens with
 * each answer's usage; the runs count their own queue and ask limits_check_queued.
 *
 * Limits apply with auth.mode: keys only: with auth.mode none the daemon makes no struct limits
 * and passes NULL, for which every function here is a no-op that admits everything.
 * Everything runs on the loop thread.
 */
#ifndef ARUN_TENANCY_LIMITS_H
#define ARUN_TENANCY_LIMITS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "core/metrics.h"
#include "http/server.h"
#include "store/store.h"

#define LIMITS_MESSAGE_MAX 512 /* the longest sentence, with 64-byte tenant names, is ~330 */
/* Output tokens counted in memory are written to the store this often (store_usage_add, one
 * row per tenant and day, added to): a kill -9 loses at most the count of this long, plus a
 * write not yet committed. */
#define LIMITS_FLUSH_MS 1000
/* On a store several nodes share, each node re-reads the day's stored counts this often, so a
 * tenant's output_tokens_per_day counts every node's answers (a node is behind the others by at
 * most this plus their LIMITS_FLUSH_MS). */
#define LIMITS_SYNC_MS 3000
/* A tenant idle this long, with nothing in flight, no tokens counted today and a full request
 * bucket, is forgotten (its entry is made again on its next request). */
#define LIMITS_IDLE_MS (10u * 60 * 1000)
/* Retry-After for concurrent_requests and queued_runs: how long a slot takes to free is not
 * known; one second is what the gateway's own full queue says. */
#define LIMITS_RETRY_BUSY_S 1

/* Why a request was refused: the answer the caller sends (429). */
struct limits_refusal {
    const char *limit;                /* the config key: "requests_per_minute", … */
    uint64_t value;                   /* its value for this tenant */
    uint32_t retry_after_s;           /* for Retry-After (>= 1) */
    char message[LIMITS_MESSAGE_MAX]; /* a sentence naming the limit and its value */
};

struct limits;

/* Creates the limits of cfg's `tenants:` section; st (not owned) keeps the daily counters
 * (NULL: in memory only, for tests). cfg and metrics are not owned and outlive it. */
struct limits *limits_new(uv_loop_t *loop, const struct config *cfg, struct store *st,
                          struct metrics *metrics);
/* Reads today's counters from the store; done(status, arg) runs once they are in (status 0)
 * or could not be read (-errno: counting starts from zero and that is logged). Call before
 * serving. Returns 0, or -errno without calling done. */
int limits_load(struct limits *l, void (*done)(int status, void *arg), void *arg) MUST_USE;
/* Whether limits_load's read is over (done or failed): for /readyz. true for NULL. */
bool limits_loaded(const struct limits *l);
/* Frees them (pending counter writes still commit: call before store_close). NULL is a no-op. */
void limits_free(struct limits *l);
/* For tests: the wall clock (ms since the epoch) that the buckets and the UTC day are read
 * from, instead of clock_wall_ms(). */
void limits_set_clock(struct limits *l, int64_t (*now_ms)(void *arg), void *arg);
/* Writes the counts not yet written now, rather than at the next LIMITS_FLUSH_MS tick (tests;
 * limits_free does it too). */
void limits_flush(struct limits *l);

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
/* Whether tenant, which has `queued` background runs queued now, may queue one more: 0, or
 * -EAGAIN with why filled in. */
int limits_check_queued(struct limits *l, const char *tenant, uint32_t queued,
                        struct limits_refusal *why);
/* Output tokens counted for tenant today (UTC), loaded and added: for tests and messages. */
uint64_t limits_tokens_today(struct limits *l, const char *tenant);

/* Answers r with the refusal: 429, Retry-After, the OpenAI error shape with code
 * rate_limit_exceeded and why->message. */
void limits_reply(struct http_request *r, const struct limits_refusal *why);

#endif
