/*
 * gateway.c: routing, per-engine queues and the upstream relay. See gateway.h.
 *
 * DESIGN
 * Each engine has a queue (struct gw_queue): at most max_concurrency requests in flight, then a
 * FIFO of at most queue_limit. pump() is the one place that moves requests from the FIFO to the
 * engine: it runs when a slot frees and when the engine becomes ready. While any request waits
 * for an engine that is not ready, the queue holds one supervisor waiter, which starts the
 * engine if needed and calls back once it is ready or cannot be.
 *
 * A request tries the engines of its route in order. It falls back to the next one when an
 * engine cannot serve (failed, refused to start, connection refused, 5xx before the first
 * byte), never after bytes reached the client; every fallback is a log line, an event and a
 * metric, and the answer names the engine in x-arun-engine.
 *
 * Streaming: the upstream's SSE bytes are relayed as they arrive. When the client is slow and
 * the stream's backlog passes half its cap, the upstream transfer is paused
 * (CURL_WRITEFUNC_PAUSE) and resumed when the backlog drains, so memory stays bounded. A client
 * that leaves cancels its upstream transfer at once, which frees the engine's slot.
 */
#include "gateway/gateway.h"

#include <errno.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "gateway/jsonscan.h"
#include "core/log.h"
#include "http/sse.h"
#include "http/sse_parser.h"

struct gw_req;

struct gw_queue {
    struct gateway *gw;
    struct engine *e;
    uint32_t in_flight;
    uint32_t waiting;
    struct gw_req *head, *tail;
    struct supervisor_waiter *waiter; /* while requests wait for the engine to be ready */
};

struct gateway {
    struct http_server *srv;
    const struct config *cfg;
    struct supervisor *sup;
    struct httpc *httpc;
    struct events *events;
    struct gw_queue *queues; /* one per engine, in supervisor order */
    size_t nqueues;
    struct gw_req *active; /* every live request, for shutdown */
    uv_timer_t wait_timer; /* tells waiting streams where they stand */
    uint64_t ticks;        /* wait_timer ticks, for the slower notes */
    struct metrics_family *m_fallbacks, *m_upstream_errors, *m_queue_wait, *m_ttft, *m_egress;
    struct metrics_family *m_tokens;
};

struct gw_req {
    struct gateway *gw;
    struct http_request *r;
    char *body;
    size_t body_len;
    const char *path; /* /v1/chat/completions … */
    char model[256];
    bool stream;
    const char *engines[32]; /* the route: engine names, tried in order */
    size_t nengines, idx;
    struct gw_queue *q;
    bool queued;
    bool holding_slot;
    struct httpc_req *up;
    struct sse_stream *sse;
    size_t sse_idx; /* the engine x-arun-engine named when the stream opened */
    bool paused;
    int up_status;
    struct buf err_body; /* a streaming upstream's error answer, to pass on or fall back */
    uint64_t start_ns, dispatch_ns, ttft_ns;
    char r_id[HTTP_REQUEST_ID_MAX + 1]; /* the request id, kept past the request's end */
    bool first_byte;
    bool remote;   /* answered by a remote engine: the response says so */
    char *up_body; /* the body sent upstream when it differs from the client's */
    size_t up_body_len;
    bool strip_usage;         /* we asked for include_usage; the client did not: drop that chunk */
    struct sse_parser events; /* reads the engine's SSE stream (any line ends) */
    int64_t prompt_tokens, completion_tokens; /* from the engine's usage, -1 unknown */
    int status_sent;
    const char
        *error_code;     /* why the request failed (an OpenAI error code), NULL when it did not */
    struct gw_req *next; /* in the queue */
    struct gw_req *aprev, *anext; /* in gw->active */
};

static void try_engine(struct gw_req *q);
static void pump(struct gw_queue *q);

/* ---- request bookkeeping ---- */

static struct gw_queue *queue_of(struct gateway *gw, struct engine *e)
{
    for (size_t i = 0; i < gw->nqueues; i++)
        if (gw->queues[i].e == e)
            return &gw->queues[i];
    return NULL;
}

static void access_log(struct gw_req *g)
{
    struct gateway *gw = g->gw;
    const char *engine = g->nengines ? g->engines[g->idx] : "";
    double total_ms = (double)(clock_mono_ns() - g->start_ns) / 1e6;
    double wait_ms = g->dispatch_ns ? (double)(g->dispatch_ns - g->start_ns) / 1e6 : total_ms;
    double ttft_ms = g->ttft_ns ? (double)(g->ttft_ns - g->dispatch_ns) / 1e6 : -1;
    if (g->prompt_tokens > 0)
        metrics_add(gw->m_tokens, (double)g->prompt_tokens,
                    (const char *const[]){engine, "prompt"});
    if (g->completion_tokens > 0)
        metrics_add(gw->m_tokens, (double)g->completion_tokens,
                    (const char *const[]){engine, "completion"});
    /* A failure is a warning, so that a stream cut after its 200 is not read as a success. */
    LOG_AT(g->error_code ? LOGL_WARN : LOGL_INFO, "gateway", g->r_id, 0,
           json_pack("{s:s, s:s, s:s, s:i, s:b, s:b, s:f, s:f, s:f, s:I, s:I, s:s?}", "path",
                     g->path, "model", g->model, "engine", engine, "status", g->status_sent,
                     "stream", g->stream, "egress", g->remote, "queue_wait_ms", wait_ms, "ttft_ms",
                     ttft_ms, "duration_ms", total_ms, "prompt_tokens",
                     (json_int_t)g->prompt_tokens, "completion_tokens",
                     (json_int_t)g->completion_tokens, "error_code", g->error_code),
           "%s %s -> %s %d%s%s", g->path, g->model, engine[0] ? engine : "-", g->status_sent,
           g->error_code ? " " : "", g->error_code ? g->error_code : "");
}

/* Takes usage {prompt_tokens, completion_tokens} from an engine's JSON, when present. */
static void take_usage(struct gw_req *g, json_t *j)
{
    json_t *u = json_object_get(j, "usage");
    if (!json_is_object(u))
        return;
    json_t *p = json_object_get(u, "prompt_tokens"), *c = json_object_get(u, "completion_tokens");
    if (json_is_integer(p))
        g->prompt_tokens = json_integer_value(p);
    if (json_is_integer(c))
        g->completion_tokens = json_integer_value(c);
}

/* Where "key" (quotes included) is in [p, end): the first occurrence, or with last the last one.
 * It looks for the key's first letter with memchr/memrchr, which beats memmem's set-up on the
 * few hundred bytes of an answer (this runs for every non-streaming answer). */
static const char *find_key(const char *p, const char *end, const char *key, bool last)
{
    size_t kl = strlen(key);
    if (end - p < (ptrdiff_t)kl + 2)
        return NULL;
    const char *lo = p + 1, *hi = end - kl; /* where the key's first letter may be */
    while (lo < hi) {
        const char *c =
            last ? memrchr(lo, key[0], (size_t)(hi - lo)) : memchr(lo, key[0], (size_t)(hi - lo));
        if (c == NULL)
            return NULL;
        if (c[-1] == '"' && memcmp(c, key, kl) == 0 && c[kl] == '"')
            return c - 1;
        if (last)
            hi = c;
        else
            lo = c + 1;
    }
    return NULL;
}

/* Reads one integer member after p without building a JSON tree: a whole parse of each answer
 * cost a tenth of the gateway's CPU (bench/gateway.sh's profile). */
static int64_t scan_int_after(const char *p, const char *end, const char *key)
{
    const char *k = find_key(p, end, key, false);
    if (k == NULL)
        return -1;
    k += strlen(key) + 2;
    while (k < end && (*k == ' ' || *k == '"' || *k == ':'))
        k++;
    if (k >= end || *k < '0' || *k > '9')
        return -1;
    int64_t v = 0;
    while (k < end && *k >= '0' && *k <= '9' && v < (INT64_MAX - 9) / 10)
        v = v * 10 + (*k++ - '0');
    return v;
}

/* Takes the token counts found in [p, end), a usage object or what follows its key. */
static void take_counts(struct gw_req *g, const char *p, const char *end)
{
    int64_t prompt = scan_int_after(p, end, "prompt_tokens");
    int64_t completion = scan_int_after(p, end, "completion_tokens");
    if (prompt >= 0)
        g->prompt_tokens = prompt;
    if (completion >= 0)
        g->completion_tokens = completion;
}

/* Token counts from an answer's "usage" object: the last one, as engines put it after the
 * choices (a model's own text cannot hold the key unescaped). */
static void scan_usage(struct gw_req *g, const char *body, size_t len)
{
    const char *end = body + len, *u = find_key(body, end, "usage", true);
    if (u != NULL)
        take_counts(g, u, end);
}

static void req_free(struct gw_req *g)
{
    struct gateway *gw = g->gw;
    if (g->aprev)
        g->aprev->anext = g->anext;
    else
        gw->active = g->anext;
    if (g->anext)
        g->anext->aprev = g->aprev;
    access_log(g);
    buf_cleanup(&g->err_body);
    sse_parser_cleanup(&g->events);
    free(g->up_body);
    free(g->body);
    free(g);
}

static void release_slot(struct gw_req *g)
{
    if (!g->holding_slot)
        return;
    g->holding_slot = false;
    g->q->in_flight--;
    supervisor_request_end(g->q->e);
    pump(g->q);
}

static void unqueue(struct gw_req *g)
{
    if (!g->queued)
        return;
    struct gw_queue *q = g->q;
    struct gw_req **pp = &q->head;
    while (*pp != g)
        pp = &(*pp)->next;
    *pp = g->next;
    if (q->tail == g) {
        q->tail = q->head;
        while (q->tail != NULL && q->tail->next != NULL)
            q->tail = q->tail->next;
    }
    g->next = NULL;
    g->queued = false;
    q->waiting--;
    supervisor_set_queued(q->e, q->waiting);
}

/* Answers with an error (when nothing was sent yet) and ends the request. */
static void fail(struct gw_req *g, int status, const char *code, const char *fmt, ...)
    PRINTF_LIKE(4, 5);

static void fail(struct gw_req *g, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    unqueue(g);
    release_slot(g);
    g->error_code = code;
    if (g->sse != NULL) {
        /* Headers went out already: the error travels in the stream, as OpenAI's does, and the
         * transfer is cut rather than ended, so that a client that reads no events (curl, a
         * plain fetch) fails too instead of taking a cut answer for a whole one. */
        json_t *j = json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", msg, "type",
                              http_error_type(status), "param", "code", code);
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        IGNORE_RESULT(sse_write(g->sse, NULL, NULL, s, strlen(s)));
        free(s);
        sse_abort(g->sse);
        g->status_sent = status;
    } else {
        g->status_sent = status;
        if (status == 503 || status == 429) {
            char ra[16];
            snprintf(ra, sizeof(ra), "%d", GATEWAY_RETRY_AFTER_S);
            http_add_header(g->r, "retry-after", ra);
        }
        http_send_error(g->r, status, code, NULL, "%s", msg);
    }
    req_free(g);
}

/* Moves to the next engine of the route; answers with why when none is left. */
static void fall_back(struct gw_req *g, int status, const char *why)
{
    const char *from = g->engines[g->idx];
    unqueue(g);
    release_slot(g);
    if (g->idx + 1 >= g->nengines) {
        if (g->nengines > 1)
            fail(g, status, "no_engine_available",
                 "no engine of route %s could answer; the last "
                 "one, %s: %s",
                 g->model, from, why);
        else
            fail(g, status, status == 503 ? "engine_unavailable" : "upstream_error",
                 "engine %s: %s", from, why);
        return;
    }
    g->idx++;
    log_warn("gateway", "falling back from %s to %s for model %s: %s", from, g->engines[g->idx],
             g->model, why);
    events_publish(g->gw->events, "gateway.fallback",
                   json_pack("{s:s, s:s, s:s, s:s}", "model", g->model, "from", from, "to",
                             g->engines[g->idx], "reason", why));
    metrics_add(g->gw->m_fallbacks, 1, (const char *const[]){from, g->engines[g->idx]});
    try_engine(g);
}

/* ---- upstream ---- */

static void client_gone_cb(struct sse_stream *s, void *arg)
{
    struct gw_req *g = arg;
    g->sse = NULL;
    if (g->up != NULL) {
        httpc_cancel(g->up); /* done is not called: finish here */
        g->up = NULL;
    }
    unqueue(g); /* a client that left while waiting never reaches the engine */
    release_slot(g);
    log_info("gateway", "client left a stream from %s; upstream request cancelled",
             g->engines[g->idx]);
    req_free(g);
}

static void client_drained_cb(struct sse_stream *s, void *arg)
{
    struct gw_req *g = arg;
    if (g->paused && g->up != NULL) {
        g->paused = false;
        httpc_resume(g->up);
    }
}

/* Names who answered, and says so when the answer left the machine (contract 5). */
static void add_answer_headers(struct gw_req *g)
{
    http_add_header(g->r, "x-arun-engine", g->engines[g->idx]);
    if (g->remote)
        http_add_header(g->r, "x-arun-egress", "1");
}

static void start_stream(struct gw_req *g)
{
    add_answer_headers(g);
    g->sse_idx = g->idx;
    g->sse = sse_start(g->r, client_gone_cb, client_drained_cb, g);
}

static int up_headers_cb(struct httpc_req *r, int status, void *arg)
{
    struct gw_req *g = arg;
    g->up_status = status;
    if (status == 200 && g->stream && g->sse == NULL)
        start_stream(g);
    return 0;
}

/* Whether an event carries usage counts: "usage" followed by an object. Asked for include_usage,
 * engines put "usage":null in every chunk and the counts in the last one only; parsing each
 * chunk to find out cost more CPU than the rest of the relay (jansson, ~40k instructions). */
static bool has_usage_object(const char *ev, size_t n)
{
    const char *end = ev + n, *u = find_key(ev, end, "usage", true);
    if (u == NULL)
        return false;
    for (u += 7; u < end && (*u == ' ' || *u == '\t' || *u == ':'); u++)
        ;
    return u < end && *u == '{';
}

/* Reads a usage chunk's counts and whether it is usage only (empty choices), from a scan of its
 * JSON; jansson reads what the scan does not take. */
static bool read_usage_chunk(struct gw_req *g, const char *json, size_t n)
{
    struct jsonscan_member m[] = {{.name = "usage"}, {.name = "choices"}};
    if (jsonscan_object(json, n, m, ARRAY_SIZE(m)) == 0) {
        if (m[0].value != NULL && m[0].value[0] == '{')
            take_counts(g, m[0].value, m[0].value + m[0].len);
        const char *v = m[1].value;
        if (v == NULL || v[0] != '[')
            return false;
        for (v++; *v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'; v++)
            ;
        return *v == ']';
    }
    json_t *j = json_loadb(json, n, JSON_DISABLE_EOF_CHECK, NULL);
    take_usage(g, j);
    json_t *choices = json_object_get(j, "choices");
    bool usage_only = json_is_array(choices) && json_array_size(choices) == 0;
    json_decref(j);
    return usage_only;
}

/* Relays one complete SSE event, framed again with LF line ends whatever the engine used. The
 * engine's usage is recorded; the usage-only chunk we asked for ourselves
 * (stream_options.include_usage) is not passed to a client that did not ask. */
static int relay_event_cb(const struct sse_event *ev, void *arg)
{
    struct gw_req *g = arg;
    if (has_usage_object(ev->data, ev->data_len) && read_usage_chunk(g, ev->data, ev->data_len) &&
        g->strip_usage)
        return 0;
    return sse_write(g->sse, ev->type, ev->id, ev->data, ev->data_len);
}

/* Relays an engine's comment (sse-starlette's keep-alive pings): it keeps proxies between arun
 * and the client from timing the stream out. Longer ones are dropped: nobody reads them. */
static int relay_comment_cb(const char *text, size_t len, void *arg)
{
    struct gw_req *g = arg;
    char c[256];
    if (len >= sizeof(c))
        return 0;
    memcpy(c, text, len);
    c[len] = '\0';
    return sse_comment(g->sse, c);
}

static enum httpc_data_result up_data_cb(struct httpc_req *r, const char *p, size_t n, void *arg)
{
    struct gw_req *g = arg;
    if (g->up_status != 200 || g->sse == NULL) {
        IGNORE_RESULT(buf_append(&g->err_body, p, n)); /* capped: an error body is small */
        return HTTPC_CONTINUE;
    }
    if (!g->first_byte) {
        g->first_byte = true;
        if (g->idx != g->sse_idx) {
            /* The stream opened while the request waited, naming the engine of that moment;
             * another answers after a fallback. Headers are gone: a comment says who. */
            char note[256];
            snprintf(note, sizeof(note), "answered by engine %s after falling back from %s%s",
                     g->engines[g->idx], g->engines[g->sse_idx],
                     g->remote ? "; this answer comes from a remote engine: it left this machine"
                               : "");
            IGNORE_RESULT(sse_comment(g->sse, note));
        }
        g->ttft_ns = clock_mono_ns();
        metrics_observe(g->gw->m_ttft, (double)(g->ttft_ns - g->dispatch_ns) / 1e9,
                        (const char *const[]){g->engines[g->idx]});
    }
    /* Every event these bytes complete is relayed now; a partial one waits in the parser. A
     * stream we cannot read (an event over the cap) or a client too far behind ends it. */
    if (sse_parser_feed(&g->events, p, n) != 0)
        return HTTPC_ABORT;
    if (sse_pending(g->sse) > SSE_MAX_PENDING / 2) {
        g->paused = true; /* the client is slow: stop reading the engine until it catches up */
        return HTTPC_PAUSE;
    }
    return HTTPC_CONTINUE;
}

static void up_done_cb(struct httpc_req *r, const struct httpc_result *res, void *arg)
{
    struct gw_req *g = arg;
    const char *engine = g->engines[g->idx];
    g->up = NULL;
    if (res->error != 0 && !g->first_byte) {
        metrics_add(g->gw->m_upstream_errors, 1, (const char *const[]){engine, "connect"});
        fall_back(g, res->error == -ETIMEDOUT ? 504 : 502, res->error_text);
        return;
    }
    if (res->status >= 500 && !g->first_byte) {
        metrics_add(g->gw->m_upstream_errors, 1, (const char *const[]){engine, "status_5xx"});
        char why[128];
        snprintf(why, sizeof(why), "answered HTTP %d", res->status);
        fall_back(g, 502, why);
        return;
    }
    release_slot(g);
    if (g->sse != NULL && g->up_status != 200 && !g->first_byte) {
        /* The stream was opened early (the request waited) and the engine answered an error:
         * it travels in the stream. */
        fail(g, res->status ? res->status : 502, "upstream_error",
             "engine %s answered HTTP %d: "
             "%.300s",
             engine, res->status, buf_cstr(&g->err_body));
        return;
    }
    if (g->sse != NULL && res->error != 0) {
        /* The engine died or broke off mid-answer: what the client has is not a whole answer,
         * and it must be able to tell (an error event, then a cut transfer). */
        metrics_add(g->gw->m_upstream_errors, 1, (const char *const[]){engine, "stream_cut"});
        log_warn("gateway", "stream from %s broke off: %s", engine, res->error_text);
        fail(g, 502, "upstream_stream_cut",
             "engine %s stopped in the middle of the answer (%s); what was streamed is incomplete",
             engine, res->error_text);
        return;
    }
    if (g->sse != NULL) {
        g->status_sent = 200;
        sse_end(g->sse);
        req_free(g);
        return;
    }
    const char *ctype = httpc_header(r, "content-type");
    const char *body = g->stream ? buf_cstr(&g->err_body) : res->body;
    size_t len = g->stream ? g->err_body.len : res->body_len;
    if (!g->stream && res->body != NULL)
        scan_usage(g, res->body, res->body_len);
    add_answer_headers(g);
    g->status_sent = res->status;
    http_send_bytes(g->r, res->status, ctype ? ctype : "application/json", body, len);
    req_free(g);
}

/* The upstream URL: the engine's own port, or a remote engine's base URL (which ends in /v1,
 * as OpenAI's does, so the path's own /v1 is dropped). A local URL is put together by hand: it
 * is built for every request, and snprintf showed in the profile. */
static void upstream_url(struct engine *e, const char *path, char *url, size_t size)
{
    const struct config_engine *c = engine_config(e);
    if (engine_backend(e) != CONFIG_BACKEND_REMOTE) {
        static const char prefix[] = "http://127.0.0.1:";
        size_t plen = strlen(path);
        ASSERT(sizeof(prefix) - 1 + 5 + plen < size);
        memcpy(url, prefix, sizeof(prefix) - 1);
        char *w = url + sizeof(prefix) - 1;
        w += fmt_u64(w, engine_port(e));
        memcpy(w, path, plen + 1);
        return;
    }
    size_t n = strlen(c->url);
    if (n > 0 && c->url[n - 1] == '/')
        n--;
    snprintf(url, size, "%.*s%s", (int)n, c->url, strncmp(path, "/v1/", 4) == 0 ? path + 3 : path);
}

static void dispatch(struct gw_req *g)
{
    struct gateway *gw = g->gw;
    struct engine *e = g->q->e;
    char url[1024];
    static const char id_name[] = "X-Request-Id: ";
    char idh[sizeof(id_name) + HTTP_REQUEST_ID_MAX], tph[256], auth[1024];
    const char *headers[4] = {"Content-Type: application/json", idh, NULL, NULL};
    size_t nh = 2;
    const char *tp = http_header(g->r, "traceparent");

    upstream_url(e, g->path, url, sizeof(url));
    memcpy(idh, id_name, sizeof(id_name) - 1);
    memcpy(idh + sizeof(id_name) - 1, g->r_id, strlen(g->r_id) + 1);
    if (tp != NULL && strlen(tp) < 200) {
        snprintf(tph, sizeof(tph), "traceparent: %s", tp);
        headers[nh++] = tph;
    }
    g->remote = engine_backend(e) == CONFIG_BACKEND_REMOTE;
    if (g->remote) {
        /* The key is read where it is used and never logged. */
        const char *env = engine_config(e)->api_key_env;
        const char *key = env ? getenv(env) : NULL;
        if (key != NULL) {
            snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
            headers[nh++] = auth;
        }
        log_info("gateway", "request %s for %s leaves this machine: remote engine %s", g->r->id,
                 g->model, engine_name(e));
        metrics_add(gw->m_egress, 1, (const char *const[]){engine_name(e)});
    }
    g->q->in_flight++;
    g->holding_slot = true;
    supervisor_request_begin(e);
    g->dispatch_ns = clock_mono_ns();
    metrics_observe(gw->m_queue_wait, (double)(g->dispatch_ns - g->start_ns) / 1e9,
                    (const char *const[]){engine_name(e)});
    buf_reset(&g->err_body);
    g->up_status = 0;
    struct httpc_opts o = {.method = "POST",
                           .url = url,
                           .headers = headers,
                           .nheaders = nh,
                           .body = g->up_body ? g->up_body : g->body,
                           .body_len = g->up_body ? g->up_body_len : g->body_len,
                           .connect_timeout_ms = 5000,
                           .first_byte_timeout_ms = GATEWAY_FIRST_BYTE_TIMEOUT_MS,
                           .idle_timeout_ms = g->stream ? GATEWAY_IDLE_TIMEOUT_MS : 0,
                           .on_headers = up_headers_cb,
                           .on_data = g->stream ? up_data_cb : NULL,
                           .arg = g};
    int rc = httpc_request(gw->httpc, &o, up_done_cb, &g->up);
    if (rc != 0)
        fall_back(g, 502, "the upstream request could not be started");
}

/* ---- telling a waiting stream why it waits ---- */

static const char *ordinal_suffix(uint32_t n)
{
    if (n % 100 >= 11 && n % 100 <= 13)
        return "th";
    return n % 10 == 1 ? "st" : n % 10 == 2 ? "nd" : n % 10 == 3 ? "rd" : "th";
}

/* An SSE comment, which the SDKs ignore: it says where the request stands, and keeps proxies
 * (and h2o, which only notices a vanished client when it writes) from idling. */
static void tell_waiting(struct gw_req *g, uint32_t position)
{
    struct engine *e = g->q->e;
    char msg[256], eta[64] = "";
    int64_t ms = engine_expected_ready_ms(e);
    if (ms >= 0)
        snprintf(eta, sizeof(eta), ", about %lld s left", (long long)((ms + 999) / 1000));
    enum engine_state st = engine_state(e);
    const char *what = st == ENGINE_READY      ? "engine busy"
                       : st == ENGINE_STOPPING ? "engine being swapped"
                       : st == ENGINE_STOPPED  ? "engine waiting to start"
                                               : "engine loading";
    snprintf(msg, sizeof(msg), "queued %u%s for %s, %s%s", position, ordinal_suffix(position),
             engine_name(e), what, eta);
    IGNORE_RESULT(sse_comment(g->sse, msg)); /* a full backlog here means the client is gone */
}

/* Every GATEWAY_PEEK_MS: a waiting request whose client left leaves the queue before it
 * reaches the engine; every GATEWAY_WAIT_NOTE_MS, waiting streams hear where they stand. */
static void wait_timer_cb(uv_timer_t *t)
{
    struct gateway *gw = t->data;
    bool note = ++gw->ticks % (GATEWAY_WAIT_NOTE_MS / GATEWAY_PEEK_MS) == 0;
    for (size_t i = 0; i < gw->nqueues; i++) {
        uint32_t pos = 0;
        struct gw_req *g = gw->queues[i].head;
        while (g != NULL) {
            struct gw_req *next = g->next; /* g may end below */
            pos++;
            if (g->sse == NULL && http_client_gone(g->r)) {
                log_info("gateway", "client of %s left while queued for %s; dropped", g->r_id,
                         engine_name(g->q->e));
                pos--;
                fail(g, 499, "client_closed_request", "the client closed the connection");
            } else if (g->sse != NULL && note) {
                tell_waiting(g, pos);
            }
            g = next;
        }
    }
}

/* ---- queues ---- */

static void engine_ready_cb(struct engine *e, int status, const char *reason, void *arg)
{
    struct gw_queue *q = arg;
    q->waiter = NULL;
    if (status == 0) {
        pump(q);
        return;
    }
    /* The engine cannot serve now: every request waiting for it moves on. */
    while (q->head != NULL)
        fall_back(q->head, status == -ENOMEM ? 503 : 503, reason ? reason : "engine failed");
}

static void ensure_waiter(struct gw_queue *q)
{
    if (q->waiter == NULL && engine_state(q->e) != ENGINE_READY)
        q->waiter = supervisor_wait_ready(q->e, engine_ready_cb, q);
}

static void pump(struct gw_queue *q)
{
    uint32_t max = engine_config(q->e)->max_concurrency;
    while (q->head != NULL && q->in_flight < max && engine_state(q->e) == ENGINE_READY) {
        struct gw_req *g = q->head;
        unqueue(g);
        dispatch(g);
    }
    if (q->head != NULL)
        ensure_waiter(q);
}

static void try_engine(struct gw_req *g)
{
    struct gateway *gw = g->gw;
    struct engine *e = supervisor_find(gw->sup, g->engines[g->idx]);
    struct gw_queue *q = e ? queue_of(gw, e) : NULL;
    if (q == NULL) {
        fall_back(g, 503, "no such engine");
        return;
    }
    g->q = q;
    const struct config_engine *c = engine_config(e);
    enum engine_state st = engine_state(e);
    bool up = st == ENGINE_READY;
    bool coming = st == ENGINE_STARTING || st == ENGINE_LOADING || st == ENGINE_STOPPING;
    if (st == ENGINE_FAILED) {
        /* Failed is not restarted by requests: that is the restart policy's job, and a
         * request loop must not become a crash loop. The route moves on. */
        fall_back(g, 503, engine_reason(e));
        return;
    }
    if (!up && !coming) {
        if (c->start == CONFIG_START_MANUAL) {
            fall_back(g, 503,
                      "the engine is stopped and has start: manual (start it with "
                      "`arun engines start NAME`)");
            return;
        }
        struct buf why;
        buf_init(&why, 1024);
        int rc = supervisor_start_engine(e, "a request for it", &why);
        if (rc != 0) {
            fall_back(g, 503, buf_cstr(&why));
            buf_cleanup(&why);
            return;
        }
        buf_cleanup(&why);
    }
    if (up && q->in_flight < c->max_concurrency && q->head == NULL) {
        dispatch(g);
        return;
    }
    if (q->waiting >= c->queue_limit) {
        fail(g, 429, "queue_full",
             "engine %s is busy: %u requests in flight (max_concurrency "
             "%u) and %u waiting (queue_limit %u); retry later",
             engine_name(e), q->in_flight, c->max_concurrency, q->waiting, c->queue_limit);
        return;
    }
    g->queued = true;
    if (q->tail)
        q->tail->next = g;
    else
        q->head = g;
    q->tail = g;
    q->waiting++;
    supervisor_set_queued(e, q->waiting);
    if (g->stream && g->sse == NULL && !(up && q->in_flight < c->max_concurrency)) {
        /* It will wait: open the stream now and say why (the SDKs ignore comments). */
        start_stream(g);
        tell_waiting(g, q->waiting);
    }
    pump(q);
}

/* ---- endpoints ---- */

static size_t resolve(struct gateway *gw, const char *model, const char **out, size_t cap)
{
    for (size_t i = 0; i < gw->cfg->nroutes; i++) {
        const struct config_route *rt = &gw->cfg->routes[i];
        if (strcmp(rt->name, model) != 0)
            continue;
        size_t n = 0;
        for (size_t k = 0; k < rt->nengines && n < cap; k++)
            out[n++] = rt->engines[k];
        return n;
    }
    struct engine *e = supervisor_find_model(gw->sup, model);
    if (e == NULL || engine_backend(e) == CONFIG_BACKEND_REMOTE)
        return 0; /* a remote engine is reached only through a declared route (contract 5) */
    out[0] = engine_name(e);
    return 1;
}

static void known_models(struct gateway *gw, struct buf *out)
{
    for (size_t i = 0; i < gw->cfg->nengines; i++)
        for (size_t k = 0; gw->cfg->engines[i].url == NULL && k < gw->cfg->engines[i].nmodels; k++)
            IGNORE_RESULT(
                buf_printf(out, "%s%s", out->len ? ", " : "", gw->cfg->engines[i].models[k]));
    for (size_t i = 0; i < gw->cfg->nroutes; i++)
        IGNORE_RESULT(buf_printf(out, "%s%s", out->len ? ", " : "", gw->cfg->routes[i].name));
}

/* The fast path for routing: a request whose "model" is a plain string is routed from a scan of
 * its body, without building a JSON tree (gateway/jsonscan.h); *stream says whether it streams.
 * Returns false when the full parse must decide: anything unusual, and streaming requests that
 * bring their own stream_options (which jansson edits to ask for usage). */
static bool route_fast(struct http_request *r, char *model, size_t size, bool *stream)
{
    h2o_iovec_t body = r->req->entity;
    struct jsonscan_member m[] = {
        {.name = "model"}, {.name = "stream"}, {.name = "stream_options"}};
    if (body.base == NULL || jsonscan_object(body.base, body.len, m, ARRAY_SIZE(m)) != 0)
        return false;
    *stream = m[1].value != NULL && m[1].len == 4 && memcmp(m[1].value, "true", 4) == 0;
    if (*stream && m[2].value != NULL)
        return false; /* the client's stream_options: jansson edits them */
    const char *v = m[0].value;
    size_t len = m[0].len;
    if (v == NULL || v[0] != '"' || len <= 2 || len - 2 >= size || memchr(v, '\\', len) != NULL)
        return false;
    memcpy(model, v + 1, len - 2);
    model[len - 2] = '\0';
    return true;
}

/* The body of a streaming request that did not ask for usage, asking for it: the member goes in
 * right after the opening brace (the scan found no stream_options, and a model member follows). */
static char *ask_usage(const char *body, size_t len, size_t *out_len)
{
    static const char member[] = "\"stream_options\":{\"include_usage\":true},";
    const char *brace = memchr(body, '{', len);
    size_t head = (size_t)(brace + 1 - body);
    char *out = xmalloc(len + sizeof(member));
    memcpy(out, body, head);
    memcpy(out + head, member, sizeof(member) - 1);
    memcpy(out + head + sizeof(member) - 1, body + head, len - head);
    *out_len = len + sizeof(member) - 1;
    out[*out_len] = '\0';
    return out;
}

static void completion(struct http_request *r, void *arg)
{
    struct gateway *gw = arg;
    json_t *body = NULL;
    char fast_model[sizeof(((struct gw_req *)0)->model)];
    const char *model = fast_model;
    bool fast_stream = false;
    bool fast = route_fast(r, fast_model, sizeof(fast_model), &fast_stream);
    if (!fast) {
        if (http_read_json(r, &body) != 0)
            return;
        model = json_string_value(json_object_get(body, "model"));
    }
    size_t model_len = model != NULL ? strlen(model) : 0;
    if (model_len == 0 || model_len >= sizeof(fast_model)) {
        json_decref(body);
        http_send_error(r, 400, "missing_model", "model", "the request needs a \"model\" string");
        return;
    }
    struct gw_req *g = xcalloc(1, sizeof(*g));
    g->gw = gw;
    g->r = r;
    g->path = http_request_route(r);
    memcpy(g->model, model, model_len + 1);
    g->stream = fast ? fast_stream : json_is_true(json_object_get(body, "stream"));
    g->start_ns = clock_mono_ns();
    g->prompt_tokens = g->completion_tokens = -1;
    memcpy(g->r_id, r->id, strlen(r->id) + 1);
    r->own_access_log = true;
    json_t *so = json_object_get(body, "stream_options");
    if (g->stream && (fast || !json_is_true(json_object_get(so, "include_usage")))) {
        /* Ask the engine for usage (for accounting) and strip it again on the way out. The
         * fast path saw no stream_options; jansson edits the client's. */
        if (fast) {
            g->up_body = ask_usage(r->req->entity.base, r->req->entity.len, &g->up_body_len);
        } else {
            if (!json_is_object(so)) {
                so = json_object();
                json_object_set_new(body, "stream_options", so);
            }
            json_object_set_new(so, "include_usage", json_true());
            g->up_body = json_dumps(body, JSON_COMPACT);
            g->up_body_len = strlen(g->up_body);
        }
        g->strip_usage = true;
    }
    json_decref(body);
    buf_init(&g->err_body, 64 * 1024);
    sse_parser_init(&g->events, SSE_MAX_PENDING / 2, SSE_MAX_PENDING / 2, relay_event_cb,
                    relay_comment_cb, g);
    g->nengines = resolve(gw, g->model, g->engines, ARRAY_SIZE(g->engines));
    if (g->nengines == 0) {
        struct buf names;
        buf_init(&names, 16 * 1024);
        known_models(gw, &names);
        http_send_error(r, 404, "model_not_found", "model",
                        "the model '%s' does not exist; models served here: %s", g->model,
                        names.len ? buf_cstr(&names) : "(none configured)");
        buf_cleanup(&names);
        buf_cleanup(&g->err_body);
        sse_parser_cleanup(&g->events);
        free(g->up_body);
        free(g);
        return;
    }
    /* The body goes to the engine as the client sent it. */
    g->body = xmalloc(r->req->entity.len + 1);
    memcpy(g->body, r->req->entity.base, r->req->entity.len);
    g->body_len = r->req->entity.len;
    g->anext = gw->active;
    if (g->anext)
        g->anext->aprev = g;
    gw->active = g;
    try_engine(g);
}

static void list_models(struct http_request *r, void *arg)
{
    struct gateway *gw = arg;
    json_t *data = json_array();
    for (size_t i = 0; i < supervisor_count(gw->sup); i++) {
        struct engine *e = supervisor_engine_at(gw->sup, i);
        const struct config_engine *c = engine_config(e);
        if (engine_backend(e) == CONFIG_BACKEND_REMOTE)
            continue; /* reachable only through routes, which are listed below */
        for (size_t k = 0; k < c->nmodels; k++)
            json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "id",
                                                  c->models[k], "object", "model", "created", 0,
                                                  "owned_by", "arun", "engine", c->name, "state",
                                                  engine_state_name(engine_state(e))));
    }
    for (size_t i = 0; i < gw->cfg->nroutes; i++) {
        const struct config_route *rt = &gw->cfg->routes[i];
        struct engine *first = supervisor_find(gw->sup, rt->engines[0]);
        json_array_append_new(
            data, json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "id", rt->name, "object", "model",
                            "created", 0, "owned_by", "arun", "engine", rt->engines[0], "state",
                            first ? engine_state_name(engine_state(first)) : "unknown"));
    }
    http_send_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void on_shutdown(void *arg)
{
    struct gateway *gw = arg;
    for (size_t i = 0; i < gw->nqueues; i++) {
        struct gw_queue *q = &gw->queues[i];
        while (q->head != NULL)
            fail(q->head, 503, "shutting_down", "arun is shutting down");
    }
}

static const char *const fallback_labels[] = {"from", "to"};
static const char *const upstream_labels[] = {"engine", "reason"};
static const char *const engine_labels[] = {"engine"};
static const char *const token_labels[] = {"engine", "kind"};

struct gateway *gateway_new(struct http_server *srv, const struct config *cfg,
                            struct supervisor *sup, struct httpc *httpc, struct events *events,
                            struct metrics *metrics)
{
    struct gateway *gw = xcalloc(1, sizeof(*gw));
    gw->srv = srv;
    gw->cfg = cfg;
    gw->sup = sup;
    gw->httpc = httpc;
    gw->events = events;
    gw->nqueues = supervisor_count(sup);
    gw->queues = xcalloc(gw->nqueues ? gw->nqueues : 1, sizeof(struct gw_queue));
    for (size_t i = 0; i < gw->nqueues; i++) {
        gw->queues[i].gw = gw;
        gw->queues[i].e = supervisor_engine_at(sup, i);
    }
    gw->m_fallbacks =
        metrics_counter(metrics, "arun_fallbacks_total",
                        "Requests moved to the next engine of their route", 2, fallback_labels);
    gw->m_upstream_errors =
        metrics_counter(metrics, "arun_upstream_errors_total",
                        "Engine requests that failed: connect or status_5xx before an answer, "
                        "stream_cut after it began",
                        2, upstream_labels);
    gw->m_queue_wait = metrics_histogram(metrics, "arun_queue_wait_seconds",
                                         "Time a request waited for its engine", 1, engine_labels,
                                         metrics_latency_buckets, metrics_latency_nbuckets);
    gw->m_ttft = metrics_histogram(
        metrics, "arun_ttft_seconds", "Time from dispatch to the first streamed byte", 1,
        engine_labels, metrics_latency_buckets, metrics_latency_nbuckets);
    gw->m_egress = metrics_counter(metrics, "arun_egress_total",
                                   "Requests answered by a remote engine (left this machine)", 1,
                                   engine_labels);
    gw->m_tokens = metrics_counter(metrics, "arun_tokens_total",
                                   "Tokens reported by engines, by kind (prompt, completion)", 2,
                                   token_labels);
    http_route(srv, "GET", "/v1/models", list_models, gw);
    http_route(srv, "POST", "/v1/chat/completions", completion, gw);
    http_route(srv, "POST", "/v1/completions", completion, gw);
    http_route(srv, "POST", "/v1/embeddings", completion, gw);
    http_server_on_shutdown(srv, on_shutdown, gw);
    uv_timer_init(http_server_loop(srv), &gw->wait_timer);
    gw->wait_timer.data = gw;
    uv_timer_start(&gw->wait_timer, wait_timer_cb, GATEWAY_PEEK_MS, GATEWAY_PEEK_MS);
    uv_unref((uv_handle_t *)&gw->wait_timer);
    return gw;
}

static void gw_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

void gateway_free(struct gateway *gw)
{
    if (gw == NULL)
        return;
    while (gw->active != NULL) {
        struct gw_req *g = gw->active;
        if (g->up != NULL)
            httpc_cancel(g->up);
        g->up = NULL;
        unqueue(g);
        g->holding_slot = false; /* the supervisor is going away too */
        req_free(g);
    }
    for (size_t i = 0; i < gw->nqueues; i++)
        if (gw->queues[i].waiter != NULL)
            supervisor_cancel_wait(gw->queues[i].waiter);
    free(gw->queues);
    uv_close((uv_handle_t *)&gw->wait_timer, gw_closed_cb);
}
