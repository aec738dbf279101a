/*
 * upstream.c: the request to the engine and the relay of its answer (gateway_int.h). It owns
 * the upstream transfer of a call in GW_UPSTREAM: the URL and headers, the callbacks of httpc,
 * reading a streamed answer with http/sse_parser and handing each event to the client (on_event)
 * as it completes, the backpressure between the two, and the end: fall back (an error or 5xx
 * before the first byte), pass the answer on (on_head, on_body, on_end), or fail (a stream cut
 * after it began). The same transfer and relay carry a call to another node of the cluster
 * (GW_PEER): only the destination and headers differ (peer_target), and the other node's
 * answer says which node and engine answered (peer_answered).
 *
 * DESIGN
 * Streaming: each event the engine's bytes complete goes to on_event at once, pointing into the
 * parser (no copy). When the client says GATEWAY_CALL_PAUSE (the HTTP client: its stream's
 * backlog passed half its cap), the transfer is paused (HTTPC_PAUSE) once the events of that
 * read are handed over, until gateway_call_resume(), so memory stays bounded. Once a byte of the
 * answer arrived, the call never falls back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "gateway/gateway_int.h"
#include "http/sse.h" /* the caps: an event fits the HTTP client's backlog */

/* Whether v is a value worth passing on as a header of ours: printable ASCII that fits. */
static bool header_value_ok(const char *v, size_t size)
{
    size_t n = v != NULL ? strlen(v) : 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 || v[i] > 0x7e)
            return false;
    return n > 0 && n < size;
}

/* What another node's answer says of itself: the node and engine that answered (a route there
 * may have fallen back), and how long a 429 or 503 asks to wait. */
static void peer_answered(struct gateway_call *g, struct httpc_req *r)
{
    struct gw_peers *p = g->peers;
    const char *node = httpc_header(r, HTTP_H_NODE);
    const char *engine = httpc_header(r, "x-arun-engine");
    const char *ra = httpc_header(r, "retry-after");
    if (header_value_ok(node, sizeof(p->node))) {
        memcpy(p->node, node, strlen(node) + 1);
        g->info.node = p->node;
    }
    if (header_value_ok(engine, sizeof(p->engine))) {
        memcpy(p->engine, engine, strlen(engine) + 1);
        g->info.engine = p->engine;
    }
    unsigned long s = ra != NULL ? strtoul(ra, NULL, 10) : 0;
    g->info.retry_after_s = s > 86400 ? 86400 : (uint32_t)s;
}

static int up_headers_cb(struct httpc_req *r, int status, void *arg)
{
    struct gateway_call *g = arg;
    g->up_status = status;
    if (g->peers != NULL)
        peer_answered(g, r);
    if (status != 200 || !g->info.stream)
        return 0; /* the answer is passed on (or fallen back from) when it is whole */
    gw_call_hold(g);
    g->cbs->on_head(g, 200, g->arg);
    return gw_call_release(g) ? HTTPC_ABORT : 0; /* cancelled: httpc drops it either way */
}

/* What a client's on_event or on_comment result means for the parser: go on, stop (the client
 * cancelled: nothing more for it, up_data_cb tears it down; or its error, which aborts), or go
 * on and pause once the events of this read are handed over. */
static int client_said(struct gateway_call *g, int rc)
{
    if (g->cancelled)
        return -ECANCELED;
    if (rc == GATEWAY_CALL_PAUSE) {
        g->paused = true;
        return 0;
    }
    return rc;
}

/* Hands one complete SSE event to the client. The engine's usage is recorded; the usage-only
 * chunk we asked for on the client's behalf (stream_options.include_usage) is not passed on. */
static int relay_event_cb(const struct sse_event *ev, void *arg)
{
    struct gateway_call *g = arg;
    if (gw_usage_event(&g->info.usage, ev->data, ev->data_len) && g->hide_usage)
        return 0;
    g->relayed++;
    return client_said(g, g->cbs->on_event(g, ev, g->arg));
}

/* Hands over an engine's comment (sse-starlette's keep-alive pings): the HTTP client passes it
 * on, which keeps proxies between arun and its client from timing the stream out. Longer ones
 * are dropped: nobody reads them. */
static int relay_comment_cb(const char *text, size_t len, void *arg)
{
    struct gateway_call *g = arg;
    char c[256];
    if (len >= sizeof(c) || g->cbs->on_comment == NULL)
        return 0;
    memcpy(c, text, len);
    c[len] = '\0';
    return client_said(g, g->cbs->on_comment(g, c, g->arg));
}

void gw_upstream_init(struct gateway_call *g)
{
    buf_init(&g->err_body, 64 * 1024);
    sse_parser_init(&g->events, SSE_MAX_PENDING / 2, SSE_MAX_PENDING / 2, relay_event_cb,
                    relay_comment_cb, g);
}

void gw_upstream_cleanup(struct gateway_call *g)
{
    buf_cleanup(&g->err_body);
    sse_parser_cleanup(&g->events);
}

static enum httpc_data_result up_data_cb(struct httpc_req *r, const char *p, size_t n, void *arg)
{
    struct gateway_call *g = arg;
    if (g->up_status != 200) {
        buf_append(&g->err_body, p, n); /* capped: an error body is small */
        return HTTPC_CONTINUE;
    }
    if (!g->first_byte) {
        char label[GW_LABEL_MAX];
        g->first_byte = true;
        g->info.first_byte_ns = clock_mono_ns();
        metrics_observe(g->gw->m_ttft, (double)(g->info.first_byte_ns - g->info.dispatch_ns) / 1e9,
                        (const char *const[]){gw_engine_label(g, g->idx, label, sizeof(label))});
    }
    /* Every event these bytes complete goes to the client now; a partial one waits in the
     * parser. A stream we cannot read (an event over the cap) or a client that cannot take
     * more ends it. */
    gw_call_hold(g);
    int rc = sse_parser_feed(&g->events, p, n);
    if (gw_call_release(g))
        return HTTPC_ABORT; /* cancelled from a callback: httpc drops the transfer */
    if (rc != 0)
        return HTTPC_ABORT;
    return g->paused ? HTTPC_PAUSE : HTTPC_CONTINUE;
}

/* Passes a whole answer on: its head, its body, its end. */
static void pass_on(struct gateway_call *g, struct httpc_req *r, int status, const char *body,
                    size_t len)
{
    gw_call_hold(g);
    g->cbs->on_head(g, status, g->arg);
    if (gw_call_release(g))
        return;
    gw_call_hold(g);
    g->cbs->on_body(g, httpc_header(r, "content-type"), body, len, g->arg);
    if (gw_call_release(g))
        return;
    gw_call_finish(g, status);
}

static void up_done_cb(struct httpc_req *r, const struct httpc_result *res, void *arg)
{
    struct gateway_call *g = arg;
    char engine[GW_LABEL_MAX];
    gw_engine_label(g, g->idx, engine, sizeof(engine));
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
    if (g->info.stream && g->up_status == 200) {
        if (res->error == 0) {
            gw_call_finish(g, 200);
            return;
        }
        /* The engine died or broke off mid-answer: what the client has is not a whole answer,
         * and it must be able to tell (the HTTP client: an error event, then a cut transfer). */
        metrics_add(g->gw->m_upstream_errors, 1, (const char *const[]){engine, "stream_cut"});
        log_warn("gateway", "stream from %s broke off: %s", engine, res->error_text);
        gw_call_fail(
            g, 502, "upstream_stream_cut",
            "engine %s stopped in the middle of the answer (%s); what was streamed is incomplete",
            engine, res->error_text);
        return;
    }
    if (g->info.stream) {
        pass_on(g, r, res->status, buf_cstr(&g->err_body), g->err_body.len); /* its error */
        return;
    }
    if (res->body != NULL)
        gw_usage_scan_body(&g->info.usage, res->body, res->body_len);
    pass_on(g, r, res->status, res->body ? res->body : "", res->body_len);
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

/* A local or remote engine's destination and headers; takes its slot (GW_UPSTREAM). */
static void engine_target(struct gateway_call *g, struct httpc_opts *o, const char **headers,
                          size_t *nh, char *url, size_t url_size, char *auth, size_t auth_size)
{
    struct gateway *gw = g->gw;
    struct engine *e = g->q->e;
    g->info.remote = engine_backend(e) == CONFIG_BACKEND_REMOTE;
    if (g->info.remote) {
        upstream_url(e, g->path, url, url_size);
        o->url = url;
        /* The key is read where it is used and never logged. */
        const char *env = engine_config(e)->api_key_env;
        const char *key = env ? getenv(env) : NULL;
        if (key != NULL) {
            snprintf(auth, auth_size, "Authorization: Bearer %s", key);
            headers[(*nh)++] = auth;
        }
        log_info("gateway", "request %s for %s leaves this machine: remote engine %s", g->id,
                 g->model, engine_name(e));
        metrics_add(gw->m_egress, 1, (const char *const[]){engine_name(e)});
    } else {
        o->to =
            (struct httpc_endpoint){.host = "127.0.0.1", .port = engine_port(e), .path = g->path};
    }
    gw_set_state(g, GW_UPSTREAM);
    g->info.dispatch_ns = clock_mono_ns();
    metrics_observe(gw->m_queue_wait, (double)(g->info.dispatch_ns - g->info.submit_ns) / 1e9,
                    (const char *const[]){engine_name(e)});
}

/* Another node's destination (its base URL) and the node headers (the secret, this node, the
 * tenant); no slot here (GW_PEER): the other node queues the request as its own, locally only.
 * Returns 0, or -EINVAL for a base URL that cannot be used. */
static int peer_target(struct gateway_call *g, struct httpc_opts *o, const char **headers,
                       size_t *nh, struct cluster_target *t, char *store, size_t size)
{
    struct gw_peers *p = g->peers;
    const struct cluster_peer *peer = &p->p[g->idx];
    g->info.engine = peer->engine; /* until its answer names the one that answers */
    g->info.node = peer->node;
    g->info.retry_after_s = 0;
    *nh += cluster_peer_headers(g->gw->cluster, p->tenant[0] ? p->tenant : NULL, store, size,
                                headers + *nh);
    log_debug("gateway", "request %s for %s goes to node %s (%s), engine %s", g->id, g->model,
              peer->node, peer->url, peer->engine);
    gw_set_state(g, GW_PEER);
    g->info.dispatch_ns = clock_mono_ns();
    return cluster_target(peer->url, g->path, t, o);
}

void gw_dispatch(struct gateway_call *g)
{
    static const char id_name[] = "X-Request-Id: ";
    char idh[sizeof(id_name) + HTTP_REQUEST_ID_MAX], auth[1024], url[1024], store[2048];
    struct cluster_target t;
    const char *headers[8] = {"Content-Type: application/json", idh};
    size_t nh = 2;

    memcpy(idh, id_name, sizeof(id_name) - 1);
    memcpy(idh + sizeof(id_name) - 1, g->id, strlen(g->id) + 1);
    if (g->traceparent[0] != '\0')
        headers[nh++] = g->traceparent;
    struct httpc_opts o = {.method = "POST",
                           .body = g->body,
                           .body_len = g->body_len,
                           .connect_timeout_ms = 5000,
                           .first_byte_timeout_ms = GATEWAY_FIRST_BYTE_TIMEOUT_MS,
                           .idle_timeout_ms = g->info.stream ? GATEWAY_IDLE_TIMEOUT_MS : 0,
                           .on_headers = up_headers_cb,
                           .on_data = g->info.stream ? up_data_cb : NULL,
                           .arg = g};
    int rc = 0;
    if (g->peers != NULL)
        rc = peer_target(g, &o, headers, &nh, &t, store, sizeof(store));
    else
        engine_target(g, &o, headers, &nh, url, sizeof(url), auth, sizeof(auth));
    ASSERT(nh <= ARRAY_SIZE(headers));
    o.headers = headers;
    o.nheaders = nh;
    buf_reset(&g->err_body);
    g->up_status = 0;
    if (rc == 0)
        rc = httpc_request(g->gw->httpc, &o, up_done_cb, &g->up);
    if (rc != 0)
        gw_fall_back(g, 502, "the upstream request could not be started");
}
