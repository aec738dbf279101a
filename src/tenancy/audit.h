/*
 * audit.h: the audit trail (contract 6, issue 13): admin actions (engine start/stop/restart,
 * key create/revoke, TLS reload) and authentication failures, stored as audit events with who,
 * what and when, and logged. GET /v1/audit and `arun audit` read them back.
 *
 * Recording never blocks the caller and never fails it: the event goes to the store's writer
 * (a store that cannot take it is logged once, and the action itself is not undone: an audit
 * trail that could stop the operator from stopping an engine would be worse than a gap in it).
 * Authentication failures are rate-limited, in the log and in the store alike, so a flood of
 * bad keys cannot fill either: past the rate, they are counted and one summary event says how
 * many were left out.
 */
#ifndef ARUN_TENANCY_AUDIT_H
#define ARUN_TENANCY_AUDIT_H

#include <jansson.h>

#include "core/metrics.h"
#include "http/server.h"
#include "store/store.h"

/* Authentication failures kept (stored and logged) a second; past them, counted and summed up
 * once a second in an "auth.failure.suppressed" event. A person reading the log of an attack
 * needs the first few and the count, not every one. */
#define AUDIT_AUTH_PER_S 10         /* overall */
#define AUDIT_AUTH_PER_HOST_PER_S 5 /* per source host (the address without its port) */
#define AUDIT_TRACK_HOSTS 64        /* hosts counted apart in one second; more share the total */
#define AUDIT_SUMMARY_HOSTS 8       /* hosts a summary names, those with the most left out */
#define AUDIT_LIST_DEFAULT 20       /* GET /v1/audit's page without ?limit */
#define AUDIT_LIST_MAX 100          /* and its largest */

struct audit;

/* Creates the audit trail on st (not owned; must outlive it). metrics (or NULL) gets
 * arun_audit_events_total{action,outcome}. */
struct audit *audit_new(uv_loop_t *loop, struct store *st, struct metrics *metrics);
/* Frees it; events already handed to the store are still committed. NULL is a no-op. */
void audit_free(struct audit *a);

/* Replaces the monotonic clock (milliseconds) that the rate limit counts seconds by, for tests;
 * NULL puts the real one back. */
void audit_set_clock(struct audit *a, uint64_t (*now_ms)(void *arg), void *arg);

/* Records that the principal of r did action to target with outcome ("ok", "denied",
 * "failed"); detail (a JSON object, stolen, or NULL) adds facts, e.g. {"reason": "…"}. The
 * actor, tenant, remote address and request id come from r. NULL a is a no-op. */
void audit_request(struct audit *a, struct http_request *r, const char *action, const char *target,
                   const char *outcome, json_t *detail);
/* Records an action arun itself took (actor "arun"), e.g. "tls.reload" on SIGHUP. */
void audit_system(struct audit *a, const char *action, const char *target, const char *outcome,
                  json_t *detail);
/* Records a failed authentication of r (action "auth.failure", outcome "denied", actor
 * "anonymous" or the key id when a known key lacked the role), with reason in words ("no
 * Authorization header", "unknown key", "revoked key key_…"). Rate-limited (see above). */
void audit_auth_failure(struct audit *a, struct http_request *r, const char *reason);

/* Parses a `since` of GET /v1/audit: epoch milliseconds, or an ISO-8601 UTC time
 * ("2026-12-07T10:00:00Z", fractions of a second allowed). Returns 0 and *ms, or -EINVAL. */
int audit_parse_since(const char *s, int64_t *ms) MUST_USE;

/* Registers GET /v1/audit (admin): ?since=MS|ISO-8601&after=SEQ&limit=1..100 → {"object":"list",
 * "data":[…], "first_id", "last_id", "has_more"}, oldest first. */
void audit_api_register(struct http_server *srv, struct audit *a);

#endif
