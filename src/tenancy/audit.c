/*
 * audit.c: the audit trail (audit.h). It owns the shape of an audit event, its log line, its
 * metric, the rate limit on authentication failures and GET /v1/audit. The store keeps the
 * events (store_audit_append, store_audit_list); nothing here reads them back except the route.
 *
 * DESIGN
 * An event is built once (actor, tenant, action, target, outcome, remote, detail) and goes
 * three ways: one row in the store, one log line (info for actions, warn for failures and
 * refusals, with the same facts as fields) and one count in arun_audit_events_total{action,
 * outcome}. The store's writer commits it in the background: recording never waits, and a
 * store that refuses it costs one warning per run of failures, never the action.
 *
 * Authentication failures come from clients, so their rate is theirs to choose. They are kept
 * (stored and logged) at most AUDIT_AUTH_PER_S a second overall and AUDIT_AUTH_PER_HOST_PER_S a
 * second per source host (the address without its port: one client's burst cannot crowd the
 * others out of the trail). Past that they are only counted: at the end of a second that left
 * some out (a timer, or the next failure when the loop was late), one event
 * "auth.failure.suppressed" says how many, and from which hosts (the top AUDIT_SUMMARY_HOSTS).
 * So a flood costs at most AUDIT_AUTH_PER_S + 1 rows and lines a second, and the metric still
 * counts every failure. The seconds are of a monotonic clock that a test may replace
 * (audit_set_clock).
 *
 * GET /v1/audit reads what the store committed, after the appends submitted before the request
 * (they commit in order within milliseconds): an action and then a read of the trail always
 * shows the action.
 *
 * Lifetime: appends in flight hold the trail (pending); audit_free writes the last summary,
 * closes the timer and frees once both are over, so a late store callback never touches freed
 * memory.
 */
#include "tenancy/audit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"

#define AUDIT_TEXT_MAX STORE_ID_MAX /* a stored string (actor, target, …) is cut here */

static const char *const event_labels[] = {"action", "outcome"};

struct host_count {
    char host[HTTP_REMOTE_MAX]; /* the address without its port */
    uint32_t kept;              /* failures kept this second */
    uint64_t suppressed;        /* failures left out this second */
};

struct audit {
    uv_loop_t *loop;
    struct store *st;                /* or NULL: events are only logged (tests) */
    struct metrics_family *m_events; /* arun_audit_events_total, or NULL */
    uint64_t (*now_ms)(void *arg);   /* the rate limit's clock: monotonic ms */
    void *clock_arg;
    /* The rate limit: counts of the second `second` (now_ms / 1000). */
    uint64_t second;
    uint32_t kept;                              /* failures kept this second, all hosts */
    uint64_t suppressed;                        /* failures left out this second */
    struct host_count hosts[AUDIT_TRACK_HOSTS]; /* the hosts seen this second */
    size_t nhosts;
    uv_timer_t timer;   /* the summary at the end of a second that left some out */
    unsigned pending;   /* appends whose callback has not run */
    uint64_t submitted; /* appends the store took, ever */
    uint64_t committed; /* of those, whose callback ran (the writer answers in order) */
    struct list_wait *waits, **waits_tail; /* reads waiting for appends before them */
    bool store_failing;                    /* the last append failed (warned once) */
    bool freeing; /* audit_free ran: free when pending and the timer are done */
    bool timer_closed;
};

/* ---- one event ---- */

/* s cut to AUDIT_TEXT_MAX bytes (never inside a UTF-8 sequence) and made printable: control
 * bytes and, when s is not UTF-8, every byte past ASCII become '?' (an id from a client must not
 * forge log lines or break the JSON). Returns out, or NULL for a NULL s. */
static const char *clean_text(const char *s, char out[AUDIT_TEXT_MAX + 1])
{
    if (s == NULL)
        return NULL;
    size_t n = strnlen(s, AUDIT_TEXT_MAX + 1);
    if (n > AUDIT_TEXT_MAX)
        for (n = AUDIT_TEXT_MAX; n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80;)
            n--; /* s[n] continues a sequence: cut before its start */
    json_t *probe = json_stringn(s, n);
    bool utf8 = probe != NULL;
    json_decref(probe);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c < 0x20 || c == 0x7f || (!utf8 && c >= 0x80) ? '?' : (char)c;
    }
    out[n] = '\0';
    return out;
}

struct event {
    const char *actor, *tenant, *action, *target, *outcome, *remote;
    const char *request_id; /* or NULL; also added to detail */
    json_t *detail;         /* owned; NULL reads {} */
    enum log_level level;
};

static void maybe_free(struct audit *a);
static void run_waits(struct audit *a);

static void appended_cb(int status, void *arg)
{
    struct audit *a = arg;
    a->pending--;
    a->committed++;
    run_waits(a);
    if (status != 0 && !a->store_failing)
        log_warn_errno("audit", status,
                       "the store did not keep an audit event; the log still has it (this is "
                       "said once until the store keeps one again)");
    a->store_failing = status != 0;
    maybe_free(a);
}

static void store_event(struct audit *a, const struct store_audit *row)
{
    if (a->st == NULL)
        return;
    int rc = store_audit_append(a->st, row, appended_cb, a);
    if (rc == 0) {
        a->pending++;
        a->submitted++;
        return;
    }
    if (!a->store_failing)
        log_warn_errno("audit", rc,
                       "the store refused an audit event; the log still has it (this is said "
                       "once until the store keeps one again)");
    a->store_failing = true;
}

static void log_event(const struct event *e, json_t *detail)
{
    if (e->level < log_min_level)
        return;
    json_t *f = json_pack("{s:s, s:s?, s:s, s:s?, s:s, s:s?, s:O}", "actor", e->actor, "tenant",
                          e->tenant, "action", e->action, "target", e->target, "outcome",
                          e->outcome, "remote", e->remote, "detail", detail);
    log_write(e->level, "audit", e->request_id, 0, f, "%s%s%s by %s%s%s: %s", e->action,
              e->target ? " " : "", e->target ? e->target : "", e->actor, e->remote ? " from " : "",
              e->remote ? e->remote : "", e->outcome);
}

/* Stores, logs and counts e; takes e->detail. */
static void record(struct audit *a, struct event *e)
{
    char actor[AUDIT_TEXT_MAX + 1], tenant[AUDIT_TEXT_MAX + 1], target[AUDIT_TEXT_MAX + 1];
    e->actor = clean_text(e->actor, actor);
    e->tenant = clean_text(e->tenant, tenant);
    e->target = clean_text(e->target, target);
    json_t *detail = json_is_object(e->detail) ? e->detail : json_object();
    if (detail != e->detail)
        json_decref(e->detail);
    if (e->request_id != NULL)
        json_object_set_new(detail, "request_id", json_string(e->request_id));
    char *text = json_dumps(detail, JSON_COMPACT);
    struct store_audit row = {.ts_ms = clock_wall_ms(),
                              .actor = e->actor,
                              .tenant = e->tenant,
                              .action = e->action,
                              .target = e->target,
                              .outcome = e->outcome,
                              .remote = e->remote,
                              .detail = text,
                              .detail_len = text ? strlen(text) : 0};
    store_event(a, &row);
    log_event(e, detail);
    free(text);
    json_decref(detail);
}

static void count(struct audit *a, const char *action, const char *outcome)
{
    if (a->m_events != NULL)
        metrics_add(a->m_events, 1, (const char *const[]){action, outcome});
}

/* The actor of a request: another node of the cluster ("node:ID"), its key, the owner's socket,
 * or nobody known (auth.mode none). Into buf when it must be built. */
static const char *actor_of(const struct http_request *r, char *buf, size_t size)
{
    if (r->who.node[0] != '\0') {
        snprintf(buf, size, "node:%s", r->who.node);
        return buf;
    }
    if (r->who.key_id[0] != '\0')
        return r->who.key_id;
    return r->who.local ? "local" : "anonymous";
}

void audit_request(struct audit *a, struct http_request *r, const char *action, const char *target,
                   const char *outcome, json_t *detail)
{
    if (a == NULL) {
        json_decref(detail);
        return;
    }
    ASSERT(action != NULL && outcome != NULL);
    char remote[HTTP_REMOTE_MAX], actor[HTTP_NODE_MAX + 8];
    struct event e = {.actor = actor_of(r, actor, sizeof(actor)),
                      .tenant = r->who.tenant[0] ? r->who.tenant : NULL,
                      .action = action,
                      .target = target,
                      .outcome = outcome,
                      .remote = http_remote_addr(r, remote, sizeof(remote)),
                      .request_id = r->id,
                      .detail = detail,
                      .level = strcmp(outcome, "ok") == 0 ? LOGL_INFO : LOGL_WARN};
    count(a, action, outcome);
    record(a, &e);
}

void audit_system(struct audit *a, const char *action, const char *target, const char *outcome,
                  json_t *detail)
{
    if (a == NULL) {
        json_decref(detail);
        return;
    }
    ASSERT(action != NULL && outcome != NULL);
    struct event e = {.actor = "arun",
                      .action = action,
                      .target = target,
                      .outcome = outcome,
                      .detail = detail,
                      .level = strcmp(outcome, "ok") == 0 ? LOGL_INFO : LOGL_WARN};
    count(a, action, outcome);
    record(a, &e);
}

/* ---- the rate limit of authentication failures ---- */

/* The host part of a remote address: "127.0.0.1:5555" → "127.0.0.1", "[::1]:5555" → "::1". */
static void host_of(const char *remote, char out[HTTP_REMOTE_MAX])
{
    const char *start = remote, *end = strrchr(remote, ':');
    if (remote[0] == '[') {
        start = remote + 1;
        end = strchr(start, ']');
    }
    size_t n = end != NULL ? (size_t)(end - start) : strlen(start);
    n = n < HTTP_REMOTE_MAX - 1 ? n : HTTP_REMOTE_MAX - 1;
    memcpy(out, start, n);
    out[n] = '\0';
}

static struct host_count *find_host(struct audit *a, const char *host)
{
    for (size_t i = 0; i < a->nhosts; i++)
        if (strcmp(a->hosts[i].host, host) == 0)
            return &a->hosts[i];
    if (a->nhosts == AUDIT_TRACK_HOSTS)
        return NULL;
    struct host_count *h = &a->hosts[a->nhosts++];
    *h = (struct host_count){0};
    snprintf(h->host, sizeof(h->host), "%s", host);
    return h;
}

static int by_suppressed_desc(const void *x, const void *y)
{
    const struct host_count *a = x, *b = y;
    return a->suppressed < b->suppressed ? 1 : a->suppressed > b->suppressed ? -1 : 0;
}

/* Writes the summary of the second that ended, if it left failures out, and starts counting
 * afresh. */
static void flush_second(struct audit *a)
{
    if (a->suppressed > 0) {
        qsort(a->hosts, a->nhosts, sizeof(a->hosts[0]), by_suppressed_desc);
        json_t *hosts = json_object();
        for (size_t i = 0; i < a->nhosts && i < AUDIT_SUMMARY_HOSTS; i++)
            if (a->hosts[i].suppressed > 0)
                json_object_set_new(hosts, a->hosts[i].host,
                                    json_integer((json_int_t)a->hosts[i].suppressed));
        json_t *detail = json_pack("{s:I, s:I, s:o, s:i, s:i}", "count", (json_int_t)a->suppressed,
                                   "kept", (json_int_t)a->kept, "hosts", hosts, "per_s",
                                   AUDIT_AUTH_PER_S, "per_host_per_s", AUDIT_AUTH_PER_HOST_PER_S);
        struct event e = {.actor = "arun",
                          .action = "auth.failure.suppressed",
                          .outcome = "denied",
                          .detail = detail,
                          .level = LOGL_WARN};
        count(a, e.action, e.outcome);
        record(a, &e);
    }
    a->suppressed = 0;
    a->kept = 0;
    a->nhosts = 0;
}

static void timer_cb(uv_timer_t *t)
{
    struct audit *a = t->data;
    flush_second(a);
}

/* Whether a failure from host may be kept now; counts it either way. */
static bool admit(struct audit *a, const char *host)
{
    uint64_t now = a->now_ms(a->clock_arg);
    if (now / 1000 != a->second) {
        flush_second(a); /* the timer was late, or this is the first failure in a while */
        a->second = now / 1000;
    }
    struct host_count *h = find_host(a, host);
    if (a->kept < AUDIT_AUTH_PER_S && h != NULL && h->kept < AUDIT_AUTH_PER_HOST_PER_S) {
        a->kept++;
        h->kept++;
        return true;
    }
    if (h != NULL)
        h->suppressed++; /* past AUDIT_TRACK_HOSTS a host is in the count, not named */
    if (a->suppressed++ == 0 && !a->freeing)
        uv_timer_start(&a->timer, timer_cb, 1000 - now % 1000, 0);
    return false;
}

void audit_auth_failure(struct audit *a, struct http_request *r, const char *reason)
{
    if (a == NULL)
        return;
    char remote[HTTP_REMOTE_MAX], host[HTTP_REMOTE_MAX], actor[HTTP_NODE_MAX + 8];
    http_remote_addr(r, remote, sizeof(remote));
    host_of(remote, host);
    count(a, "auth.failure", "denied");
    if (!admit(a, host))
        return;
    const char *route = http_request_route(r);
    struct event e = {.actor = actor_of(r, actor, sizeof(actor)),
                      .tenant = r->who.tenant[0] ? r->who.tenant : NULL,
                      .action = "auth.failure",
                      .target = route,
                      .outcome = "denied",
                      .remote = remote,
                      .request_id = r->id,
                      .detail = json_pack("{s:s}", "reason", reason ? reason : "unknown"),
                      .level = LOGL_WARN};
    record(a, &e);
}

/* ---- lifecycle ---- */

static uint64_t mono_ms(void *arg)
{
    return clock_mono_ms();
}

struct audit *audit_new(uv_loop_t *loop, struct store *st, struct metrics *metrics)
{
    struct audit *a = xcalloc(1, sizeof(*a));
    a->loop = loop;
    a->st = st;
    a->now_ms = mono_ms;
    a->second = mono_ms(NULL) / 1000;
    if (metrics != NULL)
        a->m_events = metrics_counter(
            metrics, "arun_audit_events_total",
            "Audit events by action and outcome (authentication failures counted also when the "
            "rate limit kept them out of the store and the log)",
            2, event_labels);
    a->waits_tail = &a->waits;
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    return a;
}

void audit_set_clock(struct audit *a, uint64_t (*now_ms)(void *arg), void *arg)
{
    if (now_ms == NULL)
        now_ms = mono_ms;
    a->now_ms = now_ms;
    a->clock_arg = arg;
    a->second = now_ms(arg) / 1000;
}

static void maybe_free(struct audit *a)
{
    if (a->freeing && a->timer_closed && a->pending == 0)
        free(a);
}

static void timer_close_cb(uv_handle_t *h)
{
    struct audit *a = h->data;
    a->timer_closed = true;
    maybe_free(a);
}

void audit_free(struct audit *a)
{
    if (a == NULL)
        return;
    flush_second(a); /* a flood that was still going: its summary is the last event */
    a->freeing = true;
    uv_close((uv_handle_t *)&a->timer, timer_close_cb);
}

/* ---- GET /v1/audit ---- */

/* A whole decimal number of at most 18 digits (no sign): 0 and *out, or -EINVAL. */
static int parse_u63(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n)
        return -EINVAL;
    *out = (int64_t)strtoll(s, NULL, 10);
    return 0;
}

/* "2026-12-07T10:00:00Z", with optional fractions of a second ("…:00.250Z"), as epoch ms. */
static int parse_iso(const char *s, int64_t *out)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return -EINVAL;
    int64_t ms = 0, scale = 100;
    if (*p == '.') {
        size_t digits = strspn(++p, "0123456789");
        if (digits == 0 || digits > 9)
            return -EINVAL;
        for (size_t i = 0; i < digits && i < 3; i++, scale /= 10)
            ms += (p[i] - '0') * scale;
        p += digits;
    }
    if (strcmp(p, "Z") != 0)
        return -EINVAL;
    time_t t = timegm(&tm);
    if (t < 0)
        return -EINVAL;
    *out = (int64_t)t * 1000 + ms;
    return 0;
}

int audit_parse_since(const char *s, int64_t *ms)
{
    return parse_u63(s, ms) == 0 ? 0 : parse_iso(s, ms);
}

/* One stored row as the API shows it: its seq as the id (a string, as OpenAI's list ids are),
 * its time in seconds (created_at, as every OpenAI object) and in ms. */
static json_t *event_json(const json_t *row)
{
    static const char *const copied[] = {"actor",   "tenant", "action", "target",
                                         "outcome", "remote", "detail"};
    json_int_t seq = json_integer_value(json_object_get(row, "seq"));
    json_int_t ts_ms = json_integer_value(json_object_get(row, "ts_ms"));
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, (int64_t)seq);
    json_t *e = json_pack("{s:s, s:s, s:I, s:I}", "object", "audit_event", "id", id, "created_at",
                          ts_ms / 1000, "ts_ms", ts_ms);
    for (size_t i = 0; i < ARRAY_SIZE(copied); i++) {
        json_t *v = json_object_get(row, copied[i]);
        json_object_set(e, copied[i], v != NULL ? v : json_null());
    }
    if (!json_is_object(json_object_get(e, "detail")))
        json_object_set_new(e, "detail", json_object());
    return e;
}

static void page_cb(int status, const char *value, size_t len, void *arg)
{
    struct http_request *r = arg;
    json_t *page = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
    json_t *rows = json_object_get(page, "data");
    if (!json_is_array(rows)) {
        if (status == -EAGAIN)
            http_add_header(r, "retry-after", "1");
        http_send_error(r, status == -EAGAIN ? 503 : 500, "store_unavailable", NULL,
                        "The store cannot read the audit trail now (%s); try again.",
                        strerror(status ? -status : EIO));
        json_decref(page);
        return;
    }
    json_t *data = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) json_array_append_new(data, event_json(row));
    size_t n = json_array_size(data);
    json_t *first = n ? json_object_get(json_array_get(data, 0), "id") : NULL;
    json_t *last = n ? json_object_get(json_array_get(data, n - 1), "id") : NULL;
    json_t *list =
        json_pack("{s:s, s:o, s:O, s:O, s:b}", "object", "list", "data", data, "first_id",
                  first ? first : json_null(), "last_id", last ? last : json_null(), "has_more",
                  json_is_true(json_object_get(page, "has_more")));
    http_send_json(r, 200, list);
    json_decref(page);
}

/* The query of GET /v1/audit, checked: 0, or -EINVAL after answering 400 with the param. */
static int parse_query(struct http_request *r, int64_t *since_ms, int64_t *after, int64_t *limit)
{
    const char *since = http_query(r, "since"), *a = http_query(r, "after");
    const char *l = http_query(r, "limit");
    *since_ms = 0;
    *after = 0;
    *limit = AUDIT_LIST_DEFAULT;
    if (since != NULL && audit_parse_since(since, since_ms) != 0) {
        http_send_error(r, 400, "invalid_value", "since",
                        "Invalid 'since': '%.40s'. Expected epoch milliseconds (1796637600000) "
                        "or an ISO-8601 UTC time (2026-12-07T10:00:00Z).",
                        since);
        return -EINVAL;
    }
    if (a != NULL && parse_u63(a, after) != 0) {
        http_send_error(r, 400, "invalid_value", "after",
                        "Invalid 'after': '%.40s'. Expected the id of an audit event (a whole "
                        "number, e.g. the last_id of the previous page).",
                        a);
        return -EINVAL;
    }
    if (l != NULL && (parse_u63(l, limit) != 0 || *limit < 1 || *limit > AUDIT_LIST_MAX)) {
        http_send_error(r, 400, "invalid_value", "limit",
                        "Invalid 'limit': '%.40s'. Expected a whole number from 1 to %d.", l,
                        AUDIT_LIST_MAX);
        return -EINVAL;
    }
    return 0;
}

/* A read of the trail that waits for the appends submitted before it (read your writes: an
 * engine stopped and then `arun audit` shows the stop, though its row was still on its way to
 * the writer). They are committed within a group commit, so the wait is milliseconds. */
struct list_wait {
    struct http_request *r;
    uint64_t until; /* a->committed must reach this */
    int64_t since_ms, after;
    uint32_t limit;
    struct list_wait *next;
};

static void list_now(struct audit *a, struct list_wait *w)
{
    int rc = a->st != NULL ? store_audit_list(a->st, w->since_ms, w->after, w->limit, page_cb, w->r)
                           : -ENOTSUP;
    if (rc != 0)
        page_cb(rc, NULL, 0, w->r);
    free(w);
}

static void run_waits(struct audit *a)
{
    while (a->waits != NULL && a->waits->until <= a->committed) {
        struct list_wait *w = a->waits;
        a->waits = w->next;
        if (a->waits == NULL)
            a->waits_tail = &a->waits;
        list_now(a, w);
    }
}

static void list_audit(struct http_request *r, void *arg)
{
    struct audit *a = arg;
    int64_t since_ms, after, limit;
    if (parse_query(r, &since_ms, &after, &limit) != 0)
        return;
    struct list_wait *w = xcalloc(1, sizeof(*w));
    *w = (struct list_wait){.r = r,
                            .until = a->submitted,
                            .since_ms = since_ms,
                            .after = after,
                            .limit = (uint32_t)limit};
    if (a->committed >= w->until) {
        list_now(a, w);
        return;
    }
    *a->waits_tail = w; /* the until of each wait is >= those before it: FIFO */
    a->waits_tail = &w->next;
}

void audit_api_register(struct http_server *srv, struct audit *a)
{
    http_route(srv, "GET", "/v1/audit", HTTP_ADMIN, list_audit, a);
}
