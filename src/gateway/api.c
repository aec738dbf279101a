/*
 * api.c: the gateway's HTTP side (gateway_int.h): the routes it registers (GET /v1/models, POST
 * /v1/chat/completions, /v1/completions, /v1/embeddings) and the HTTP client of the calls
 * (gateway.h): reading a request into a submission, the answer (an SSE stream, opened early
 * when the request waits, or a plain response), errors in OpenAI's shape, noticing a client
 * that left, the access line and the shutdown hook. It reaches the gateway's core only through
 * the calls' interface, as the runs do; the shutdown hook is the one exception (gw_fail_queued).
 * GET /v1/stats (admin) answers from the stats ring (stats.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "gateway/gateway_int.h"
#include "gateway/jsonscan.h"
#include "gateway/validate.h"
#include "http/sse.h"

/* One HTTP request being answered through a call. */
struct api_req {
    struct http_request *r;
    struct gateway_call *call;
    struct sse_stream
        *sse;          /* once the stream opened; NULL again once it ended or the client left */
    const char *path;  /* the route: /v1/chat/completions … */
    const char *named; /* the engine x-arun-engine named when the stream opened */
    bool answered;     /* a byte of the engine's stream went out on it */
    int head_status;   /* the engine's, from on_head */
    int status;        /* what the client got, for the access line */
    const char *error_code; /* why the request failed (an OpenAI error code), NULL if it did not */
};

static void access_log(struct api_req *a)
{
    /* A failure is a warning, so that a stream cut after its 200 is not read as a success. */
    enum log_level level = a->error_code ? LOGL_WARN : LOGL_INFO;
    if (level < log_min_level)
        return;
    const struct gateway_call_info *in = gateway_call_info(a->call);
    const char *engine = in->engine;
    double total_ms = (double)(clock_mono_ns() - in->submit_ns) / 1e6;
    double wait_ms = in->dispatch_ns ? (double)(in->dispatch_ns - in->submit_ns) / 1e6 : total_ms;
    double ttft_ms = in->first_byte_ns ? (double)(in->first_byte_ns - in->dispatch_ns) / 1e6 : -1;
    const struct log_field fields[] = {
        LOG_STR("path", a->path),
        LOG_STR("model", in->model),
        LOG_STR("engine", engine),
        LOG_INT("status", a->status),
        LOG_BOOL("stream", in->stream),
        LOG_BOOL("egress", in->remote),
        LOG_REAL("queue_wait_ms", wait_ms),
        LOG_REAL("ttft_ms", ttft_ms),
        LOG_REAL("duration_ms", total_ms),
        LOG_INT("prompt_tokens", in->usage.prompt_tokens),
        LOG_INT("completion_tokens", in->usage.completion_tokens),
        LOG_STR("error_code", a->error_code),
    };
    log_write_fields(level, "gateway", a->r->id, 0, fields, ARRAY_SIZE(fields),
                     "%s %s -> %s %d%s%s", a->path, in->model, engine[0] ? engine : "-", a->status,
                     a->error_code ? " " : "", a->error_code ? a->error_code : "");
}

/* Sends an error object (taking the reference): in the stream, then a cut transfer, when the
 * stream is open; else as the answer (with Retry-After when waiting may help). */
static void send_error(struct api_req *a, int status, json_t *err)
{
    if (a->sse != NULL) {
        /* Headers went out already: the error travels in the stream, as OpenAI's does, and the
         * transfer is cut rather than ended, so that a client that reads no events (curl, a
         * plain fetch) fails too instead of taking a cut answer for a whole one. */
        char *s = json_dumps(err, JSON_COMPACT);
        json_decref(err);
        IGNORE_RESULT(sse_write(a->sse, NULL, NULL, s, strlen(s))); /* cut next either way */
        free(s);
        sse_abort(a->sse);
        a->sse = NULL;
        return;
    }
    if (status == 503 || status == 429) {
        char ra[16];
        uint32_t s = a->call != NULL ? gateway_call_info(a->call)->retry_after_s : 0;
        snprintf(ra, sizeof(ra), "%u", s > 0 ? s : GATEWAY_RETRY_AFTER_S);
        http_add_header(a->r, "retry-after", ra);
    }
    http_send_json(a->r, status, err);
}

/* Answers with arun's own error, in OpenAI's shape. */
static void fail(struct api_req *a, int status, const char *code, const char *msg)
{
    a->status = status;
    a->error_code = code;
    send_error(a, status, http_error_json(status, code, NULL, msg));
}

/* The client left a stream (or the server's drain ended it): the call goes, upstream and all. */
static void client_gone_cb(struct sse_stream *s, void *arg)
{
    struct api_req *a = arg;
    a->sse = NULL;
    log_info("gateway", "client left a stream from %s; upstream request cancelled",
             gateway_call_info(a->call)->engine);
    access_log(a);
    gateway_call_cancel(a->call); /* a client that left while waiting never reaches the engine */
    free(a);
}

static void client_drained_cb(struct sse_stream *s, void *arg)
{
    struct api_req *a = arg;
    gateway_call_resume(a->call);
}

/* Names who answers, and says so when the answer left the machine (contract 5). An answer
 * another node gave names that node; every other answer names this one (the server's default
 * header, http_server_set_node). */
static void add_answer_headers(struct api_req *a)
{
    const struct gateway_call_info *in = gateway_call_info(a->call);
    http_add_header(a->r, "x-arun-engine", in->engine);
    if (in->node != NULL)
        http_add_header(a->r, HTTP_H_NODE, in->node);
    if (in->remote)
        http_add_header(a->r, "x-arun-egress", "1");
}

/* Another node's answer to a call that is no stream (or an error to a stream), as that node
 * sent it: its status, its body (an arun error is in OpenAI's shape already), its Retry-After. */
static void pass_node_answer(struct api_req *a, int status, const char *content_type,
                             const char *body, size_t len)
{
    uint32_t ra = gateway_call_info(a->call)->retry_after_s;
    add_answer_headers(a);
    if (ra > 0) {
        char v[16];
        snprintf(v, sizeof(v), "%u", ra);
        http_add_header(a->r, "retry-after", v);
    }
    http_send_bytes(a->r, status, content_type ? content_type : "application/json", body, len);
}

/* Opens the SSE stream (200 and headers now) naming the engine being tried. */
static void start_stream(struct api_req *a)
{
    add_answer_headers(a);
    a->named = gateway_call_info(a->call)->engine;
    a->sse = sse_start(a->r, client_gone_cb, client_drained_cb, a);
}

static void wait_cb(struct gateway_call *c, uint32_t position, const char *note, void *arg)
{
    struct api_req *a = arg;
    if (note != NULL && gateway_call_info(c)->stream) {
        /* It waits: the stream opens now and says why in comments (the SDKs ignore them). */
        if (a->sse == NULL)
            start_stream(a);
        IGNORE_RESULT(sse_comment(a->sse, note)); /* a full backlog means the client is gone */
        return;
    }
    /* h2o does not read a connection while its request is handled: ask the socket. A stream
     * learns it from h2o itself (client_gone_cb). */
    if (a->sse == NULL && http_client_gone(a->r)) {
        log_info("gateway", "client of %s left while queued for %s; dropped", a->r->id,
                 gateway_call_info(c)->engine);
        fail(a, 499, "client_closed_request", "the client closed the connection");
        access_log(a);
        gateway_call_cancel(c);
        free(a);
    }
}

static void head_cb(struct gateway_call *c, int status, void *arg)
{
    struct api_req *a = arg;
    a->head_status = status;
    if (status == 200 && gateway_call_info(c)->stream && a->sse == NULL)
        start_stream(a);
}

/* Before the first byte of the engine's stream: a stream opened while the request waited named
 * the engine of that moment; when another answers after a fallback, a comment says who. */
static void first_byte(struct api_req *a)
{
    a->answered = true;
    const struct gateway_call_info *in = gateway_call_info(a->call);
    if (in->engine == a->named)
        return;
    char note[256];
    snprintf(note, sizeof(note), "answered by engine %s after falling back from %s%s", in->engine,
             a->named,
             in->remote ? "; this answer comes from a remote engine: it left this machine" : "");
    IGNORE_RESULT(sse_comment(a->sse, note)); /* a full backlog: the answer's own write says so */
}

/* After a write to the stream: its error, or a pause while the client's backlog is past half its
 * cap (client_drained_cb resumes). */
static int backlog(struct api_req *a, int rc)
{
    if (rc != 0)
        return rc;
    return sse_pending(a->sse) > SSE_MAX_PENDING / 2 ? GATEWAY_CALL_PAUSE : 0;
}

/* The event again, framed with LF line ends whatever the engine used. */
static int event_cb(struct gateway_call *c, const struct sse_event *ev, void *arg)
{
    struct api_req *a = arg;
    if (!a->answered)
        first_byte(a);
    return backlog(a, sse_write(a->sse, ev->type, ev->id, ev->data, ev->data_len));
}

static int comment_cb(struct gateway_call *c, const char *text, void *arg)
{
    struct api_req *a = arg;
    if (!a->answered)
        first_byte(a);
    return backlog(a, sse_comment(a->sse, text));
}

static void body_cb(struct gateway_call *c, const char *content_type, const char *body, size_t len,
                    void *arg)
{
    struct api_req *a = arg;
    int status = a->head_status;
    a->status = status;
    if (gateway_call_info(c)->node != NULL && a->sse == NULL) {
        pass_node_answer(a, status, content_type, body, len);
        return;
    }
    if (status >= 400) {
        /* The engine's error, in the shape OpenAI clients parse (llama-server's "code" is a
         * number). In a stream that opened while the request waited, the 200 went out already:
         * the message says which status the engine answered. */
        char who[96]; /* "engine NAME": names have at most 64 bytes */
        snprintf(who, sizeof(who), "engine %s", gateway_call_info(c)->engine);
        bool in_stream = a->sse != NULL;
        if (in_stream)
            a->error_code = "upstream_error";
        else
            add_answer_headers(a);
        send_error(a, status, http_error_relayed(status, body, len, who, in_stream));
        return;
    }
    add_answer_headers(a);
    http_send_bytes(a->r, status, content_type ? content_type : "application/json", body, len);
}

static void end_cb(struct gateway_call *c, int status, const char *code, const char *message,
                   void *arg)
{
    struct api_req *a = arg;
    if (code != NULL) {
        fail(a, status, code, message);
    } else if (a->sse != NULL) {
        a->status = 200;
        sse_end(a->sse);
        a->sse = NULL;
    }
    access_log(a);
    free(a);
}

static const struct gateway_call_cbs api_cbs = {
    .on_wait = wait_cb,
    .on_head = head_cb,
    .on_event = event_cb,
    .on_comment = comment_cb,
    .on_body = body_cb,
    .on_end = end_cb,
};

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

/* Whether r came from another node of the cluster: the right secret in x-arun-cluster and that
 * node in x-arun-hop. It is then served by this node's engines or not at all, and the node that
 * took it from its client applied (and counts) the tenant's limits. With auth.mode keys the gate
 * (tenancy/auth.c) refused a wrong secret already; without a gate it is refused here, so that
 * nodes with different secrets fail at once rather than pass requests round. Returns 0, or
 * answers 401 and returns -EACCES. */
static int node_caller(struct gateway *gw, struct http_request *r, bool *from_node)
{
    const char *secret = http_header(r, HTTP_H_CLUSTER_SECRET);
    *from_node = false;
    if (secret == NULL)
        return 0;
    if (!cluster_secret_ok(gw->cluster, secret, strlen(secret))) {
        http_send_error(r, 401, "invalid_cluster_secret", NULL,
                        "Invalid " HTTP_H_CLUSTER_SECRET " header: not this cluster's secret (every "
                        "node needs the same value in its cluster.secret_env variable).");
        return -EACCES;
    }
    *from_node = http_header(r, HTTP_H_CLUSTER_HOP) != NULL;
    return 0;
}

/* 404 for a model nobody serves, naming the models that are: here, and on other nodes (not for
 * a request from another node: that node names the others itself). */
static void model_not_found(struct gateway *gw, struct http_request *r, const char *model,
                            bool from_node)
{
    struct buf here, there;
    buf_init(&here, 16 * 1024);
    buf_init(&there, 16 * 1024);
    gateway_models_served(gw, &here);
    if (gw->cluster != NULL && !from_node)
        cluster_models(gw->cluster, &there);
    http_send_error(r, 404, "model_not_found", "model",
                    "the model '%s' does not exist; models served here: %s%s%s", model,
                    here.len ? buf_cstr(&here) : "(none configured)",
                    there.len ? "; on other nodes: " : "", buf_cstr(&there));
    buf_cleanup(&here);
    buf_cleanup(&there);
}

static void completion(struct http_request *r, void *arg)
{
    struct gateway *gw = arg;
    json_t *body = NULL;
    bool from_node;
    if (node_caller(gw, r, &from_node) != 0)
        return;
    char fast_model[GATEWAY_MODEL_MAX];
    const char *model = fast_model;
    bool fast_stream = false;
    bool fast = route_fast(r, fast_model, sizeof(fast_model), &fast_stream);
    if (!fast) {
        if (http_read_json(r, &body) != 0)
            return;
        model = json_string_value(json_object_get(body, "model"));
    }
    size_t model_len = model != NULL ? strlen(model) : 0;
    if (model_len == 0 || model_len >= GATEWAY_MODEL_MAX) {
        json_decref(body);
        if (model_len == 0)
            http_send_error(r, 400, "missing_model", "model",
                            "the request needs a \"model\" string");
        else
            http_send_error(r, 400, "invalid_model", "model",
                            "\"model\" is %zu bytes long; model names have at most %d", model_len,
                            GATEWAY_MODEL_MAX - 1);
        return;
    }
    /* Types and ranges (validate.h) before anything is queued: the body's syntax is known good
     * now, from the scan or from jansson. */
    enum validate_kind kind;
    struct validate_error verr;
    if (validate_kind_of(http_request_route(r), &kind) == 0 &&
        validate_request(kind, r->req->entity.base, r->req->entity.len, &verr) != 0) {
        json_decref(body);
        http_send_error(r, 400, verr.code, verr.param[0] ? verr.param : NULL, "%s", verr.message);
        return;
    }
    struct gateway_submission sub = {
        .path = http_request_route(r),
        .model = model,
        .body = r->req->entity.base, /* the engine gets the body as the client sent it */
        .body_len = r->req->entity.len,
        .stream = fast ? fast_stream : json_is_true(json_object_get(body, "stream")),
        .request_id = r->id,
        .traceparent = http_header(r, "traceparent"),
        .tenant = from_node ? NULL : r->who.tenant,
        .local_only = from_node,
    };
    char *up_body = NULL;
    json_t *so = json_object_get(body, "stream_options");
    if (sub.stream && (fast || !json_is_true(json_object_get(so, "include_usage")))) {
        /* Ask the engine for usage (for accounting) and hide it again on the way out. The
         * fast path saw no stream_options; jansson edits the client's. */
        if (fast) {
            up_body = ask_usage(r->req->entity.base, r->req->entity.len, &sub.body_len);
        } else {
            if (!json_is_object(so)) {
                so = json_object();
                json_object_set_new(body, "stream_options", so);
            }
            json_object_set_new(so, "include_usage", json_true());
            up_body = json_dumps(body, JSON_COMPACT);
            sub.body_len = strlen(up_body);
        }
        sub.body = up_body;
        sub.hide_usage = true;
    }
    struct api_req *a = xcalloc(1, sizeof(*a));
    a->r = r;
    a->path = sub.path;
    r->own_access_log = true;
    int rc = gateway_submit(gw, &sub, &api_cbs, a, &a->call);
    free(up_body);
    if (rc == -ENOENT) {
        free(a);
        model_not_found(gw, r, model, from_node);
    } else if (rc != 0) {
        free(a); /* -ESHUTDOWN: the gateway is being freed */
        http_send_error(r, 503, "shutting_down", NULL, "arun is shutting down");
    }
    json_decref(body); /* model points into it */
}

static bool listed(json_t *data, const char *model)
{
    size_t i;
    json_t *m;
    json_array_foreach(data, i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "id")), model) == 0)
            return true;
    }
    return false;
}

/* The models other nodes serve and this one does not, each with the node that would answer
 * (the best, as a request would go) and its engine there. */
static void add_node_models(struct gateway *gw, json_t *data)
{
    struct buf names;
    buf_init(&names, 64 * 1024);
    cluster_models(gw->cluster, &names);
    const char *p = buf_cstr(&names);
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        char model[GATEWAY_MODEL_MAX];
        const char *engines[1];
        struct cluster_peer peer;
        if (n > 0 && n < sizeof(model)) {
            memcpy(model, p, n);
            model[n] = '\0';
            if (gw_route_resolve(gw, model, engines, 1) == 0 && !listed(data, model) &&
                cluster_peers_for(gw->cluster, model, &peer, 1) == 1)
                json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:s}", "id",
                                                      model, "object", "model", "created", 0,
                                                      "owned_by", "arun", "engine", peer.engine,
                                                      "state", peer.ready ? "ready" : "stopped",
                                                      "node", peer.node));
        }
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    buf_cleanup(&names);
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
    if (gw->cluster != NULL)
        add_node_models(gw, data);
    http_send_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* GET /v1/stats?window=S: the last S seconds of each engine's traffic and the node's memory. */
static void get_stats(struct http_request *r, void *arg)
{
    struct gateway *gw = arg;
    long window = STATS_WINDOW_MAX_S;
    const char *w = http_query(r, "window");
    if (w != NULL) {
        char *end;
        errno = 0;
        window = strtol(w, &end, 10);
        if (*w == '\0' || *end != '\0' || errno != 0 || window < STATS_WINDOW_MIN_S ||
            window > STATS_WINDOW_MAX_S) {
            http_send_error(r, 400, "invalid_window", "window",
                            "window must be a number of seconds from %d to %d, got \"%.40s\"",
                            STATS_WINDOW_MIN_S, STATS_WINDOW_MAX_S, w);
            return;
        }
    }
    http_send_json(r, 200, stats_to_json(gw->stats, clock_wall_ms(), (int)window));
}

/* The server drains: requests still waiting for an engine are answered now (503), so they do
 * not hold the drain until its deadline. */
static void on_shutdown(void *arg)
{
    gw_fail_queued(arg, 503, "shutting_down", "arun is shutting down");
}

void gw_api_register(struct gateway *gw)
{
    http_route(gw->srv, "GET", "/v1/models", HTTP_MEMBER, list_models, gw);
    http_route(gw->srv, "POST", "/v1/chat/completions", HTTP_MEMBER, completion, gw);
    http_route(gw->srv, "POST", "/v1/completions", HTTP_MEMBER, completion, gw);
    http_route(gw->srv, "POST", "/v1/embeddings", HTTP_MEMBER, completion, gw);
    http_route(gw->srv, "GET", "/v1/stats", HTTP_ADMIN, get_stats, gw);
    http_server_on_shutdown(gw->srv, on_shutdown, gw);
}
