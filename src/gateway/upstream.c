/*
 * upstream.c: the request to the engine and the relay of its answer (gateway_int.h). It owns
 * the upstream transfer of a request in GW_UPSTREAM: the URL and headers, the callbacks of
 * httpc, reading a streamed answer with http/sse_parser and writing each event to the client as
 * it completes, the backpressure between the two, and the end: fall back (an error or 5xx before
 * the first byte), pass the answer on, or fail (a stream cut after it began).
 *
 * DESIGN
 * Streaming: each event the engine's bytes complete is written at once, framed again with LF.
 * When the client is slow and the stream's backlog passes half its cap, the upstream transfer is
 * paused (HTTPC_PAUSE) and resumed from the stream's drain callback (api.c), so memory stays
 * bounded. Once a byte of the answer reached the client, the request never falls back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "gateway/gateway_int.h"

static int up_headers_cb(struct httpc_req *r, int status, void *arg)
{
    struct gw_req *g = arg;
    g->up_status = status;
    if (status == 200 && g->stream && g->sse == NULL)
        gw_start_stream(g);
    return 0;
}

/* Relays one complete SSE event, framed again with LF line ends whatever the engine used. The
 * engine's usage is recorded; the usage-only chunk we asked for ourselves
 * (stream_options.include_usage) is not passed to a client that did not ask. */
static int relay_event_cb(const struct sse_event *ev, void *arg)
{
    struct gw_req *g = arg;
    if (gw_usage_event(&g->usage, ev->data, ev->data_len) && g->strip_usage)
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

void gw_upstream_init(struct gw_req *g)
{
    buf_init(&g->err_body, 64 * 1024);
    sse_parser_init(&g->events, SSE_MAX_PENDING / 2, SSE_MAX_PENDING / 2, relay_event_cb,
                    relay_comment_cb, g);
}

void gw_upstream_cleanup(struct gw_req *g)
{
    buf_cleanup(&g->err_body);
    sse_parser_cleanup(&g->events);
}

static enum httpc_data_result up_data_cb(struct httpc_req *r, const char *p, size_t n, void *arg)
{
    struct gw_req *g = arg;
    if (g->up_status != 200 || g->sse == NULL) {
        buf_append(&g->err_body, p, n); /* capped: an error body is small */
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
        gw_fall_back(g, res->error == -ETIMEDOUT ? 504 : 502, res->error_text);
        return;
    }
    if (res->status >= 500 && !g->first_byte) {
        metrics_add(g->gw->m_upstream_errors, 1, (const char *const[]){engine, "status_5xx"});
        char why[128];
        snprintf(why, sizeof(why), "answered HTTP %d", res->status);
        gw_fall_back(g, 502, why);
        return;
    }
    gw_set_state(g, GW_DONE); /* the slot is free for the next request from here */
    if (g->sse != NULL && g->up_status != 200 && !g->first_byte) {
        /* The stream was opened early (the request waited) and the engine answered an error:
         * it travels in the stream. */
        gw_fail(g, res->status ? res->status : 502, "upstream_error",
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
        gw_fail(
            g, 502, "upstream_stream_cut",
            "engine %s stopped in the middle of the answer (%s); what was streamed is incomplete",
            engine, res->error_text);
        return;
    }
    if (g->sse != NULL) {
        g->status_sent = 200;
        sse_end(g->sse);
        gw_req_free(g);
        return;
    }
    const char *ctype = httpc_header(r, "content-type");
    const char *body = g->stream ? buf_cstr(&g->err_body) : res->body;
    size_t len = g->stream ? g->err_body.len : res->body_len;
    if (!g->stream && res->body != NULL)
        gw_usage_scan_body(&g->usage, res->body, res->body_len);
    gw_add_answer_headers(g);
    g->status_sent = res->status;
    http_send_bytes(g->r, res->status, ctype ? ctype : "application/json", body, len);
    gw_req_free(g);
}

/* A remote engine's URL: its base URL (which ends in /v1, as OpenAI's does, so the path's own
 * /v1 is dropped). A local engine is reached by parts (httpc_endpoint), with no URL at all. */
static void upstream_url(struct engine *e, const char *path, char *url, size_t size)
{
    const struct config_engine *c = engine_config(e);
    size_t n = strlen(c->url);
    if (n > 0 && c->url[n - 1] == '/')
        n--;
    snprintf(url, size, "%.*s%s", (int)n, c->url, strncmp(path, "/v1/", 4) == 0 ? path + 3 : path);
}

void gw_dispatch(struct gw_req *g)
{
    struct gateway *gw = g->gw;
    struct engine *e = g->q->e;
    char url[1024];
    static const char id_name[] = "X-Request-Id: ";
    char idh[sizeof(id_name) + HTTP_REQUEST_ID_MAX], tph[256], auth[1024];
    const char *headers[4] = {"Content-Type: application/json", idh, NULL, NULL};
    size_t nh = 2;
    const char *tp = http_header(g->r, "traceparent");

    memcpy(idh, id_name, sizeof(id_name) - 1);
    memcpy(idh + sizeof(id_name) - 1, g->r_id, strlen(g->r_id) + 1);
    if (tp != NULL && strlen(tp) < 200) {
        snprintf(tph, sizeof(tph), "traceparent: %s", tp);
        headers[nh++] = tph;
    }
    g->remote = engine_backend(e) == CONFIG_BACKEND_REMOTE;
    if (g->remote) {
        upstream_url(e, g->path, url, sizeof(url));
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
    gw_set_state(g, GW_UPSTREAM);
    g->dispatch_ns = clock_mono_ns();
    metrics_observe(gw->m_queue_wait, (double)(g->dispatch_ns - g->start_ns) / 1e9,
                    (const char *const[]){engine_name(e)});
    buf_reset(&g->err_body);
    g->up_status = 0;
    struct httpc_opts o = {.method = "POST",
                           .url = g->remote ? url : NULL,
                           .to = {.host = "127.0.0.1", .port = engine_port(e), .path = g->path},
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
        gw_fall_back(g, 502, "the upstream request could not be started");
}
