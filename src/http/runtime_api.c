/*
 * runtime_api.c: /healthz, /readyz, /metrics and /v1/events. See runtime_api.h.
 *
 * /v1/events: each client is a subscriber of the event bus writing into its SSE stream. A
 * client that falls SSE_MAX_PENDING bytes behind is dropped with a final comment saying so (a
 * console that reconnects with Last-Event-ID gets what it missed from the bus's ring), so a
 * stuck console can never make arun's memory grow. One timer sends the heartbeat comment to all
 * of them. On drain every stream is ended, so SIGTERM is not held up by consoles. A member
 * sees only its own tenant's events (contract 4): the bus filters by the scope given at
 * subscribe, taken from the request's principal.
 */
#include "http/runtime_api.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include <h2o/linklist.h>

#include "core/clock.h"
#include "core/fileio.h"
#include "core/log.h"
#include "http/sse.h"

struct ready_check {
    char *name;
    runtime_ready_fn fn;
    void *arg;
    struct ready_check *next;
};

struct watcher {
    struct runtime_api *api;
    struct sse_stream *sse;
    struct events_sub *sub; /* NULL while events_subscribe replays the ring */
    bool overflowed;        /* fell behind during the replay: ended once the replay returns */
    h2o_linklist_t link;    /* in api->watchers */
};

struct runtime_api {
    struct http_server *srv;
    struct metrics *metrics;
    struct events *events;
    struct ready_check *checks;
    h2o_linklist_t watchers;
    size_t nwatchers;
    uv_timer_t heartbeat;
    uint64_t started_ms;
};

/* ---- who the caller is ---- */

/* GET /v1/whoami: what the console needs to decide what to show. Without keys (no gate) every
 * request is the admin of "default" and key_id is null. */
static void whoami(struct http_request *r, void *arg)
{
    const struct http_principal *p = &r->who;
    http_send_json(r, 200,
                   json_pack("{s:s, s:s, s:o, s:s}", "tenant", p->tenant, "role",
                             p->admin ? "admin" : "member", "key_id",
                             p->key_id[0] ? json_string(p->key_id) : json_null(), "auth_mode",
                             http_server_gated(r->srv) ? "keys" : "none"));
}

/* ---- health and readiness ---- */

static void healthz(struct http_request *r, void *arg)
{
    static const char body[] = "{\"status\":\"ok\"}"; /* probes hit this: no JSON building */
    http_send_bytes(r, 200, "application/json", body, sizeof(body) - 1);
}

static void readyz(struct http_request *r, void *arg)
{
    struct runtime_api *api = arg;
    json_t *checks = json_object();
    bool all = true;
    for (struct ready_check *c = api->checks; c != NULL; c = c->next) {
        struct buf why;
        buf_init(&why, 1024);
        bool ok = c->fn(c->arg, &why);
        all = all && ok;
        json_object_set_new(checks, c->name, ok ? json_string("ok") : json_string(buf_cstr(&why)));
        buf_cleanup(&why);
    }
    if (http_server_draining(api->srv)) {
        all = false;
        json_object_set_new(checks, "server", json_string("shutting down"));
    }
    http_send_json(
        r, all ? 200 : 503,
        json_pack("{s:s, s:o}", "status", all ? "ready" : "not ready", "checks", checks));
}

/* ---- metrics ---- */

/* "size resident …" in pages; 0 when /proc cannot tell. */
static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    struct buf b;
    buf_init(&b, 256); /* seven numbers */
    if (fileio_read("/proc/self/statm", &b) != 0 ||
        sscanf(buf_cstr(&b), "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    buf_cleanup(&b);
    return resident * sysconf(_SC_PAGESIZE);
}

static void collect_rss(struct metrics_family *f, struct buf *out, void *arg)
{
    metrics_put_sample(f, out, 0, NULL, NULL, (double)rss_bytes());
}

static void collect_conns(struct metrics_family *f, struct buf *out, void *arg)
{
    struct runtime_api *api = arg;
    metrics_put_sample(f, out, 0, NULL, NULL, (double)http_server_connections(api->srv));
}

static void collect_inflight(struct metrics_family *f, struct buf *out, void *arg)
{
    struct runtime_api *api = arg;
    metrics_put_sample(f, out, 0, NULL, NULL, (double)http_server_requests_in_flight(api->srv));
}

static void collect_uptime(struct metrics_family *f, struct buf *out, void *arg)
{
    struct runtime_api *api = arg;
    metrics_put_sample(f, out, 0, NULL, NULL, (double)(clock_mono_ms() - api->started_ms) / 1000.0);
}

static void collect_watchers(struct metrics_family *f, struct buf *out, void *arg)
{
    struct runtime_api *api = arg;
    metrics_put_sample(f, out, 0, NULL, NULL, (double)api->nwatchers);
}

static void collect_build(struct metrics_family *f, struct buf *out, void *arg)
{
    static const char *const labels[] = {"version"};
    static const char *const values[] = {ARUN_VERSION};
    metrics_put_sample(f, out, 1, labels, values, 1);
}

#define METRICS_PAGE_MAX (64u * 1024 * 1024) /* a page this big means a label explosion */

static void metrics_page(struct http_request *r, void *arg)
{
    struct runtime_api *api = arg;
    struct buf out;
    buf_init(&out, METRICS_PAGE_MAX);
    if (metrics_render(api->metrics, &out) != 0)
        log_warn("http", "/metrics page passed %u bytes and was cut", METRICS_PAGE_MAX);
    http_send_bytes(r, 200, "text/plain; version=0.0.4; charset=utf-8", buf_cstr(&out), out.len);
    buf_cleanup(&out);
}

static void register_metrics(struct runtime_api *api)
{
    struct metrics *m = api->metrics;
    metrics_computed(m, "arun_build_info", "arun's version", METRICS_GAUGE, collect_build, api);
    metrics_computed(m, "arun_process_resident_memory_bytes", "Resident memory of arun itself",
                     METRICS_GAUGE, collect_rss, api);
    metrics_computed(m, "arun_uptime_seconds", "Seconds since arun started", METRICS_GAUGE,
                     collect_uptime, api);
    metrics_computed(m, "arun_http_open_connections", "Client connections open now", METRICS_GAUGE,
                     collect_conns, api);
    metrics_computed(m, "arun_http_requests_in_flight", "Requests being answered now",
                     METRICS_GAUGE, collect_inflight, api);
    metrics_computed(m, "arun_events_subscribers", "Clients following GET /v1/events",
                     METRICS_GAUGE, collect_watchers, api);
}

/* ---- /v1/events ---- */

static void watcher_free(struct watcher *w)
{
    struct runtime_api *api = w->api;
    if (w->sub != NULL)
        events_unsubscribe(api->events, w->sub);
    h2o_linklist_unlink(&w->link);
    api->nwatchers--;
    free(w);
}

static void watcher_close_cb(struct sse_stream *s, void *arg)
{
    watcher_free(arg);
}

/* Ends a watcher's stream (with a last comment saying why) and forgets it. */
static void watcher_end(struct watcher *w, const char *why)
{
    if (why != NULL)
        IGNORE_RESULT(sse_comment(w->sse, why)); /* best effort: the stream ends either way */
    sse_end(w->sse);
    watcher_free(w);
}

#define DROPPED_WHY "dropped: this client fell too far behind; reconnect with Last-Event-ID"

static void on_event(uint64_t id, const char *type, const char *json, void *arg)
{
    struct watcher *w = arg;
    if (w->overflowed)
        return;
    char ids[24];
    snprintf(ids, sizeof(ids), "%" PRIu64, id);
    int rc = sse_write(w->sse, type, ids, json, strlen(json));
    if (rc == -ENOBUFS) {
        log_warn("http",
                 "dropping a /v1/events client %zu bytes behind; it can reconnect with "
                 "Last-Event-ID",
                 sse_pending(w->sse));
        if (w->sub == NULL)
            w->overflowed = true; /* events_subscribe is still replaying: events_page ends it */
        else
            watcher_end(w, DROPPED_WHY);
    }
}

static void events_page(struct http_request *r, void *arg)
{
    struct runtime_api *api = arg;
    uint64_t after = events_last_id(api->events);
    const char *last = http_header(r, "last-event-id");
    if (last == NULL)
        last = http_query(r, "after");
    if (last != NULL) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(last, &end, 10);
        /* strtoull takes "-1" (as ULLONG_MAX) and " 1": an id is digits alone, and fits */
        if (*last < '0' || *last > '9' || *end != '\0' || errno != 0) {
            http_send_error(r, 400, "invalid_last_event_id", "Last-Event-ID",
                            "Last-Event-ID must be an event id (a number), got \"%.40s\"", last);
            return;
        }
        after = v;
    }
    struct watcher *w = xcalloc(1, sizeof(*w));
    w->api = api;
    h2o_linklist_insert(&api->watchers, &w->link);
    api->nwatchers++;
    w->sse = sse_start(r, watcher_close_cb, NULL, w);
    IGNORE_RESULT(sse_comment(w->sse, "arun events")); /* a fresh stream has room */
    /* Replay from the ring may already overflow a slow client: on_event only marks it then. */
    /* What the caller may see is the bus's filter (core/events.h): an admin everything, a
     * member its own tenant's events, replayed or live; the principal is all http knows. */
    w->sub = events_subscribe(api->events, after, r->who.admin ? EVENTS_ALL : r->who.tenant,
                              on_event, w);
    if (w->overflowed)
        watcher_end(w, DROPPED_WHY);
}

static void heartbeat_cb(uv_timer_t *t)
{
    struct runtime_api *api = t->data;
    h2o_linklist_t *node = api->watchers.next;
    while (node != &api->watchers) {
        struct watcher *w = H2O_STRUCT_FROM_MEMBER(struct watcher, link, node);
        node = node->next;
        if (sse_comment(w->sse, "heartbeat") == -ENOBUFS)
            watcher_end(w, NULL);
    }
}

static void on_shutdown(void *arg)
{
    struct runtime_api *api = arg;
    while (!h2o_linklist_is_empty(&api->watchers))
        watcher_end(H2O_STRUCT_FROM_MEMBER(struct watcher, link, api->watchers.next),
                    "arun is shutting down");
    uv_timer_stop(&api->heartbeat);
}

/* ---- lifecycle ---- */

struct runtime_api *runtime_api_new(struct http_server *srv, struct metrics *metrics,
                                    struct events *events)
{
    struct runtime_api *api = xcalloc(1, sizeof(*api));
    h2o_linklist_init_anchor(&api->watchers);
    api->srv = srv;
    api->metrics = metrics;
    api->events = events;
    api->started_ms = clock_mono_ms();
    register_metrics(api);
    http_route(srv, "GET", "/healthz", HTTP_PUBLIC, healthz, api);
    http_route(srv, "GET", "/readyz", HTTP_PUBLIC, readyz, api);
    http_route(srv, "GET", "/metrics", HTTP_ADMIN, metrics_page, api);
    http_route(srv, "GET", "/v1/events", HTTP_MEMBER, events_page, api);
    http_route(srv, "GET", "/v1/whoami", HTTP_MEMBER, whoami, api);
    http_server_on_shutdown(srv, on_shutdown, api);
    uv_timer_init(http_server_loop(srv), &api->heartbeat);
    api->heartbeat.data = api;
    uv_timer_start(&api->heartbeat, heartbeat_cb, SSE_HEARTBEAT_MS, SSE_HEARTBEAT_MS);
    uv_unref((uv_handle_t *)&api->heartbeat);
    return api;
}

void runtime_api_add_ready(struct runtime_api *api, const char *name, runtime_ready_fn fn,
                           void *arg)
{
    struct ready_check *c = xcalloc(1, sizeof(*c));
    c->name = xstrdup(name);
    c->fn = fn;
    c->arg = arg;
    struct ready_check **pp = &api->checks;
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = c;
}

static void api_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

void runtime_api_free(struct runtime_api *api)
{
    if (api == NULL)
        return;
    on_shutdown(api);
    struct ready_check *c = api->checks;
    while (c != NULL) {
        struct ready_check *next = c->next;
        free(c->name);
        free(c);
        c = next;
    }
    uv_close((uv_handle_t *)&api->heartbeat, api_closed_cb);
}
