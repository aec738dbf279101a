/*
 * api.c: the gateway's HTTP side (gateway_int.h): the routes it registers (GET /v1/models, POST
 * /v1/chat/completions, /v1/completions, /v1/embeddings), reading a request into a struct
 * gw_req, the client's stream (opened, drained, left), errors, the access line and the shutdown
 * hook. What happens between the request and the engine is queue.c's and upstream.c's.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "gateway/gateway_int.h"
#include "gateway/jsonscan.h"

static void access_log(struct gw_req *g)
{
    struct gateway *gw = g->gw;
    const char *engine = g->nengines ? g->engines[g->idx] : "";
    double total_ms = (double)(clock_mono_ns() - g->start_ns) / 1e6;
    double wait_ms = g->dispatch_ns ? (double)(g->dispatch_ns - g->start_ns) / 1e6 : total_ms;
    double ttft_ms = g->ttft_ns ? (double)(g->ttft_ns - g->dispatch_ns) / 1e6 : -1;
    if (g->usage.prompt_tokens > 0)
        metrics_add(gw->m_tokens, (double)g->usage.prompt_tokens,
                    (const char *const[]){engine, "prompt"});
    if (g->usage.completion_tokens > 0)
        metrics_add(gw->m_tokens, (double)g->usage.completion_tokens,
                    (const char *const[]){engine, "completion"});
    /* A failure is a warning, so that a stream cut after its 200 is not read as a success. */
    LOG_AT(g->error_code ? LOGL_WARN : LOGL_INFO, "gateway", g->r_id, 0,
           json_pack("{s:s, s:s, s:s, s:i, s:b, s:b, s:f, s:f, s:f, s:I, s:I, s:s?}", "path",
                     g->path, "model", g->model, "engine", engine, "status", g->status_sent,
                     "stream", g->stream, "egress", g->remote, "queue_wait_ms", wait_ms, "ttft_ms",
                     ttft_ms, "duration_ms", total_ms, "prompt_tokens",
                     (json_int_t)g->usage.prompt_tokens, "completion_tokens",
                     (json_int_t)g->usage.completion_tokens, "error_code", g->error_code),
           "%s %s -> %s %d%s%s", g->path, g->model, engine[0] ? engine : "-", g->status_sent,
           g->error_code ? " " : "", g->error_code ? g->error_code : "");
}

void gw_req_free(struct gw_req *g)
{
    ASSERT(g->state == GW_DONE || g->state == GW_ROUTING);
    h2o_linklist_unlink(&g->alink);
    access_log(g);
    gw_upstream_cleanup(g);
    free(g->up_body);
    free(g->body);
    free(g);
}

void gw_fail(struct gw_req *g, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gw_set_state(g, GW_DONE);
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
    gw_req_free(g);
}

static void client_gone_cb(struct sse_stream *s, void *arg)
{
    struct gw_req *g = arg;
    g->sse = NULL;
    if (g->up != NULL) {
        httpc_cancel(g->up); /* done is not called: finish here */
        g->up = NULL;
    }
    gw_set_state(g, GW_DONE); /* a client that left while waiting never reaches the engine */
    log_info("gateway", "client left a stream from %s; upstream request cancelled",
             g->engines[g->idx]);
    gw_req_free(g);
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
void gw_add_answer_headers(struct gw_req *g)
{
    http_add_header(g->r, "x-arun-engine", g->engines[g->idx]);
    if (g->remote)
        http_add_header(g->r, "x-arun-egress", "1");
}

void gw_start_stream(struct gw_req *g)
{
    gw_add_answer_headers(g);
    g->sse_idx = g->idx;
    g->sse = sse_start(g->r, client_gone_cb, client_drained_cb, g);
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
    g->usage = (struct gw_usage){.prompt_tokens = -1, .completion_tokens = -1};
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
    gw_upstream_init(g);
    g->nengines = gw_route_resolve(gw, g->model, g->engines, ARRAY_SIZE(g->engines));
    if (g->nengines == 0) {
        struct buf names;
        buf_init(&names, 16 * 1024);
        gw_route_known_models(gw, &names);
        http_send_error(r, 404, "model_not_found", "model",
                        "the model '%s' does not exist; models served here: %s", g->model,
                        names.len ? buf_cstr(&names) : "(none configured)");
        buf_cleanup(&names);
        gw_upstream_cleanup(g);
        free(g->up_body);
        free(g);
        return;
    }
    /* The body goes to the engine as the client sent it. */
    g->body = xmalloc(r->req->entity.len + 1);
    memcpy(g->body, r->req->entity.base, r->req->entity.len);
    g->body_len = r->req->entity.len;
    h2o_linklist_insert(&gw->active, &g->alink);
    gw_try_engine(g);
}

static void list_models(struct http_request *r, void *arg)
{
    struct gateway *gw = arg;
    json_t *data = json_array();
    for (size_t i = 0; i < supervisor_count(gw->sup); i++) {
        struct engine *e = supervisor_engine_at(gw->sup, i);
        const struct config_engine *c = engine_config(e);
        if (!config_egress_allows(gw->cfg, c, false))
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
        while (!h2o_linklist_is_empty(&q->fifo))
            gw_fail(H2O_STRUCT_FROM_MEMBER(struct gw_req, qlink, q->fifo.next), 503,
                    "shutting_down", "arun is shutting down");
    }
}

void gw_api_register(struct gateway *gw)
{
    http_route(gw->srv, "GET", "/v1/models", list_models, gw);
    http_route(gw->srv, "POST", "/v1/chat/completions", completion, gw);
    http_route(gw->srv, "POST", "/v1/completions", completion, gw);
    http_route(gw->srv, "POST", "/v1/embeddings", completion, gw);
    http_server_on_shutdown(gw->srv, on_shutdown, gw);
}
