/*
 * api.c: HTTP endpoints of the supervisor. See api.h. Handlers only translate between HTTP and
 * supervisor calls; every decision stays in supervisor.c. Each start, stop and restart of a
 * known engine is an audit event (tenancy/audit.h): ok, or failed with the supervisor's reason.
 */
#include "engines/api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/linklist.h>

#include "core/log.h"
#include "engines/logs.h"
#include "http/sse.h"

#define LOGS_TAIL_DEFAULT 100
#define LOGS_TAIL_MAX 10000
/* The most tail a follow stream starts with: half the SSE backlog, so live lines have room. */
#define FOLLOW_TAIL_BYTES (SSE_MAX_PENDING / 2)
#define SSE_EVENT_OVERHEAD 8 /* "data: " and the blank line that ends the event */

struct follower {
    struct engines_api *api;
    struct engine_log *log;
    struct engine_log_follower *f;
    struct sse_stream *sse;
    h2o_linklist_t link; /* in api->followers */
};

struct engines_api {
    struct http_server *srv;
    struct supervisor *sup;
    struct audit *audit; /* or NULL */
    h2o_linklist_t followers;
};

static struct engine *find_or_404(struct engines_api *api, struct http_request *r)
{
    struct engine *e = supervisor_find(api->sup, r->params[0]);
    if (e != NULL)
        return e;
    struct buf names;
    buf_init(&names, 768); /* with the rest, within http_send_error's 1 KiB message */
    for (size_t i = 0; i < supervisor_count(api->sup) && !names.truncated; i++)
        buf_printf(&names, "%s%s", i ? ", " : "", engine_name(supervisor_engine_at(api->sup, i)));
    http_send_error(r, 404, "engine_not_found", "name", "no engine named '%.100s'; engines: %s%s",
                    r->params[0], names.len ? buf_cstr(&names) : "(none configured)",
                    names.truncated ? ", …" : "");
    buf_cleanup(&names);
    return NULL;
}

static void list_engines(struct http_request *r, void *arg)
{
    struct engines_api *api = arg;
    json_t *data = json_array();
    for (size_t i = 0; i < supervisor_count(api->sup); i++)
        json_array_append_new(data, engine_to_json(supervisor_engine_at(api->sup, i)));
    http_send_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void get_engine(struct http_request *r, void *arg)
{
    struct engine *e = find_or_404(arg, r);
    if (e != NULL)
        http_send_json(r, 200, engine_to_json(e));
}

/* Answers a start or restart: 202 with the engine, or 409 with why it cannot run; and audits
 * it. */
static void answer_start(struct http_request *r, struct engines_api *api, const char *action,
                         struct engine *e, int rc, struct buf *why)
{
    audit_request(api->audit, r, action, engine_name(e), rc == 0 ? "ok" : "failed",
                  rc == 0 ? NULL : json_pack("{s:s}", "reason", buf_cstr(why)));
    if (rc == -ENOMEM)
        http_send_error(r, 409, "insufficient_memory", NULL, "%s", buf_cstr(why));
    else if (rc != 0)
        http_send_error(r, 409, "cannot_start", NULL, "%s", buf_cstr(why));
    else
        http_send_json(r, 202, engine_to_json(e));
}

static void start_engine(struct http_request *r, void *arg)
{
    struct engines_api *api = arg;
    struct engine *e = find_or_404(api, r);
    if (e == NULL)
        return;
    struct buf why;
    buf_init(&why, 1024);
    answer_start(r, api, "engine.start", e,
                 supervisor_start_engine(e, "started through the API", &why), &why);
    buf_cleanup(&why);
}

static void stop_engine(struct http_request *r, void *arg)
{
    struct engines_api *api = arg;
    struct engine *e = find_or_404(api, r);
    if (e == NULL)
        return;
    supervisor_stop_engine(e, "stopped through the API");
    audit_request(api->audit, r, "engine.stop", engine_name(e), "ok", NULL);
    http_send_json(r, 202, engine_to_json(e));
}

static void restart_engine(struct http_request *r, void *arg)
{
    struct engines_api *api = arg;
    struct engine *e = find_or_404(api, r);
    if (e == NULL)
        return;
    struct buf why;
    buf_init(&why, 1024);
    answer_start(r, api, "engine.restart", e, supervisor_restart_engine(e, &why), &why);
    buf_cleanup(&why);
}

/* ---- the node ---- */

static json_t *mb_or_null(bool known, uint64_t mb)
{
    return known ? json_integer((json_int_t)mb) : json_null();
}

/* GET /v1/node: the memory envelope and its use, for the console's node bars. */
static void get_node(struct http_request *r, void *arg)
{
    struct engines_api *api = arg;
    struct supervisor_node_use u;
    supervisor_node_use(api->sup, &u);
    http_send_json(
        r, 200,
        json_pack("{s:{s:o, s:I, s:I, s:o}, s:{s:o, s:I, s:I, s:o}}", "ram_mb", "total",
                  mb_or_null(u.ram_known, u.ram_total_mb), "envelope",
                  (json_int_t)u.ram_envelope_mb, "declared", (json_int_t)u.ram_declared_mb, "used",
                  mb_or_null(u.ram_known, u.ram_used_mb), "vram_mb", "total",
                  mb_or_null(u.vram_known, u.vram_total_mb), "envelope",
                  (json_int_t)u.vram_envelope_mb, "declared", (json_int_t)u.vram_declared_mb,
                  "used", mb_or_null(u.vram_known, u.vram_used_mb)));
}

/* ---- logs ---- */

static void follower_free(struct follower *f)
{
    if (f->f != NULL)
        engine_log_unfollow(f->log, f->f);
    h2o_linklist_unlink(&f->link);
    free(f);
}

static void follower_close_cb(struct sse_stream *s, void *arg)
{
    follower_free(arg);
}

static void follower_line_cb(const char *line, size_t len, int stream, void *arg)
{
    struct follower *f = arg;
    if (sse_write(f->sse, NULL, NULL, line, len) == -ENOBUFS) {
        /* Best effort: the backlog is full, and the stream ends either way. */
        IGNORE_RESULT(sse_comment(f->sse, "dropped: this client fell too far behind"));
        sse_end(f->sse);
        follower_free(f); /* unfollowing from inside the callback is allowed */
    }
}

/* Where the newest lines of tail [start, end) that fit in FOLLOW_TAIL_BYTES of SSE begin; the
 * count of older lines left out goes to *left_out. Without this a long tail overflowed the
 * stream's backlog and its newest lines were dropped without a word. */
static const char *follow_tail_start(const char *start, const char *end, size_t *left_out)
{
    const char *first = end; /* the oldest line taken so far */
    const char *p = end;     /* the end of the line before first */
    size_t framed = 0;

    *left_out = 0;
    if (p > start && p[-1] == '\n')
        p--; /* the last line's own newline */
    while (p > start) {
        const char *nl = memrchr(start, '\n', (size_t)(p - start));
        const char *line = nl ? nl + 1 : start;
        framed += (size_t)(p - line) + SSE_EVENT_OVERHEAD;
        if (framed > FOLLOW_TAIL_BYTES)
            break;
        first = line;
        p = nl ? nl : start;
    }
    for (const char *q = start; q < first; q++)
        *left_out += *q == '\n';
    return first;
}

static void get_logs(struct http_request *r, void *arg)
{
    struct engines_api *api = arg;
    struct engine *e = find_or_404(api, r);
    if (e == NULL)
        return;
    struct engine_log *log = supervisor_engine_log(e);
    long tail = LOGS_TAIL_DEFAULT;
    const char *t = http_query(r, "tail");
    if (t != NULL) {
        char *end;
        tail = strtol(t, &end, 10);
        if (*t == '\0' || *end != '\0' || tail < 0 || tail > LOGS_TAIL_MAX) {
            http_send_error(r, 400, "invalid_tail", "tail",
                            "tail must be a number of lines "
                            "from 0 to %d",
                            LOGS_TAIL_MAX);
            return;
        }
    }
    const char *follow = http_query(r, "follow");
    if (follow != NULL && strcmp(follow, "0") != 0 && strcmp(follow, "false") != 0 &&
        strcmp(follow, "1") != 0 && strcmp(follow, "true") != 0) {
        http_send_error(r, 400, "invalid_follow", "follow",
                        "follow must be true, false, 1 or 0, got \"%.40s\"", follow);
        return;
    }
    if (log == NULL) {
        http_send_error(r, 503, "log_unavailable", NULL, "the log of %s could not be opened",
                        engine_name(e));
        return;
    }
    struct buf out;
    buf_init(&out, 64u << 20);
    engine_log_tail(log, (size_t)tail, &out);
    if (follow == NULL || strcmp(follow, "0") == 0 || strcmp(follow, "false") == 0) {
        http_send_bytes(r, 200, "text/plain; charset=utf-8", buf_cstr(&out), out.len);
        buf_cleanup(&out);
        return;
    }
    struct follower *f = xcalloc(1, sizeof(*f));
    f->api = api;
    f->log = log;
    h2o_linklist_insert(&api->followers, &f->link);
    f->sse = sse_start(r, follower_close_cb, NULL, f);
    /* The tail first, one event a line, then live lines. */
    const char *start = buf_cstr(&out), *end = start + out.len;
    size_t left_out = 0;
    const char *p = follow_tail_start(start, end, &left_out);
    if (left_out > 0) {
        char note[160];
        snprintf(note, sizeof(note),
                 "%zu older lines left out: a stream starts with at most %u KiB; "
                 "GET without follow=1 has them all",
                 left_out, FOLLOW_TAIL_BYTES / 1024);
        IGNORE_RESULT(sse_comment(f->sse, note)); /* fits: the stream is empty */
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        IGNORE_RESULT(sse_write(f->sse, NULL, NULL, p, n)); /* fits: follow_tail_start */
        p += n + 1;
    }
    buf_cleanup(&out);
    f->f = engine_log_follow(log, follower_line_cb, f);
}

static void on_shutdown(void *arg)
{
    struct engines_api *api = arg;
    while (!h2o_linklist_is_empty(&api->followers)) {
        struct follower *f = H2O_STRUCT_FROM_MEMBER(struct follower, link, api->followers.next);
        IGNORE_RESULT(sse_comment(f->sse, "arun is shutting down")); /* best effort: it ends */
        sse_end(f->sse);
        follower_free(f);
    }
}

struct engines_api *engines_api_new(struct http_server *srv, struct supervisor *sup,
                                    struct audit *audit)
{
    struct engines_api *api = xcalloc(1, sizeof(*api));
    h2o_linklist_init_anchor(&api->followers);
    api->srv = srv;
    api->sup = sup;
    api->audit = audit;
    http_route(srv, "GET", "/v1/engines", HTTP_ADMIN, list_engines, api);
    http_route(srv, "GET", "/v1/engines/{name}", HTTP_ADMIN, get_engine, api);
    http_route(srv, "POST", "/v1/engines/{name}/start", HTTP_ADMIN, start_engine, api);
    http_route(srv, "POST", "/v1/engines/{name}/stop", HTTP_ADMIN, stop_engine, api);
    http_route(srv, "POST", "/v1/engines/{name}/restart", HTTP_ADMIN, restart_engine, api);
    http_route(srv, "GET", "/v1/engines/{name}/logs", HTTP_ADMIN, get_logs, api);
    http_route(srv, "GET", "/v1/node", HTTP_ADMIN, get_node, api);
    http_server_on_shutdown(srv, on_shutdown, api);
    return api;
}

void engines_api_free(struct engines_api *api)
{
    if (api == NULL)
        return;
    on_shutdown(api);
    free(api);
}
