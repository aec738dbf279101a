/*
 * api.c: routing and the small endpoints of arun-mock-engine: /health, /v1/models,
 * /v1/embeddings, /mock/stats, /mock/reset, the OpenAI-shaped errors, and the fault modes
 * (--api-key, --fail-status, --garbage, the loading phase) that sit in front of every model
 * endpoint. Completions live in completion.c.
 *
 * Order of checks, as llama-server does it: the API key (all but /health), then the loading
 * phase (503 "Loading model", /health included), then the path and method, then the fault
 * modes, then the endpoint. The /mock/ endpoints skip all of it and are never counted: they are
 * the tests' view into the engine and must work in every state.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/http_status.h"
#include "api_int.h"
#include "gen.h"

#define SCRATCH_CAP (64u << 20)     /* the largest body we build: embeddings at their caps */
#define EMBED_INPUTS_CAP 2048       /* OpenAI's own limit on inputs per request */
#define EMBED_FLOATS_CAP (1u << 20) /* inputs x dimensions per request: ~16 MB of JSON */
#define LAST_BODY_CAP API_BODY_CAP  /* /mock/stats keeps the last entity whole */

struct route_def {
    const char *path;
    size_t len;
    enum api_route route;
};

/* llama-server answers the same endpoints with and without the /v1 prefix. */
#define ROUTE(p, r)                                                                                \
    {                                                                                              \
        p, sizeof(p) - 1, r                                                                        \
    }
static const struct route_def routes[] = {
    ROUTE("/health", API_ROUTE_HEALTH),
    ROUTE("/v1/health", API_ROUTE_HEALTH),
    ROUTE("/v1/models", API_ROUTE_MODELS),
    ROUTE("/models", API_ROUTE_MODELS),
    ROUTE("/v1/chat/completions", API_ROUTE_CHAT),
    ROUTE("/chat/completions", API_ROUTE_CHAT),
    ROUTE("/v1/completions", API_ROUTE_TEXT),
    ROUTE("/completions", API_ROUTE_TEXT),
    ROUTE("/v1/embeddings", API_ROUTE_EMBEDDINGS),
    ROUTE("/embeddings", API_ROUTE_EMBEDDINGS),
};

static const char *const route_names[API_ROUTE_COUNT] = {
    [API_ROUTE_HEALTH] = "/health",
    [API_ROUTE_MODELS] = "/v1/models",
    [API_ROUTE_CHAT] = "/v1/chat/completions",
    [API_ROUTE_TEXT] = "/v1/completions",
    [API_ROUTE_EMBEDDINGS] = "/v1/embeddings",
    [API_ROUTE_OTHER] = "other",
};

static const char LOADING_BODY[] =
    "{\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":\"unavailable_error\"}}";
static const char HEALTH_BODY[] = "{\"status\":\"ok\"}";

/* ---- helpers shared with completion.c ---- */

void api_put(struct buf *b, const void *s, size_t n)
{
    int rc = buf_append(b, s, n);
    ASSERT(rc == 0);
}

void api_puts(struct buf *b, const char *s)
{
    api_put(b, s, strlen(s));
}

void api_putf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    ASSERT(rc == 0);
}

void api_put_json_chars(struct buf *b, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        api_put(b, s + start, i - start);
        api_putf(b, "\\u%04x", ch);
        start = i + 1;
    }
    api_put(b, s + start, n - start);
}

void api_put_json_string(struct buf *b, const char *s, size_t n)
{
    API_PUTS(b, "\"");
    api_put_json_chars(b, s, n);
    API_PUTS(b, "\"");
}

static const char *error_type_of(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    case 501:
        return "not_supported_error";
    case 503:
        return "unavailable_error";
    }
    return status < 500 ? "invalid_request_error" : "server_error";
}

/* Sends body as it is: it must outlive the request (a static string or pool memory). */
static void respond_raw(h2o_req_t *req, int status, const char *ctype, h2o_iovec_t body)
{
    static h2o_generator_t generator = {NULL, NULL};
    req->res.status = status;
    req->res.reason = http_status_reason(status);
    req->res.content_length = body.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype,
                   strlen(ctype));
    h2o_start_response(req, &generator);
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

void api_respond(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    respond_raw(req, status, ctype, h2o_strdup(&req->pool, body, len));
}

static void respond_json(h2o_req_t *req, int status, json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(9));
    ASSERT(s != NULL);
    api_respond(req, status, "application/json", s, strlen(s));
    free(s);
    json_decref(doc);
}

void api_send_error(struct api *a, h2o_req_t *req, int status, const char *message,
                    const char *param)
{
    json_t *doc = json_pack("{s:{s:s,s:s,s:s?,s:i}}", "error", "message", message, "type",
                            error_type_of(status), "param", param, "code", status);
    ASSERT(doc != NULL);
    respond_json(req, status, doc);
}

json_t *api_parse_body(struct api *a, h2o_req_t *req)
{
    if (req->entity.base == NULL || req->entity.len == 0) {
        api_send_error(a, req, 400, "the request needs a JSON body", NULL);
        return NULL;
    }
    json_error_t err;
    json_t *root = json_loadb(req->entity.base, req->entity.len, 0, &err);
    if (root == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "invalid JSON in the request body: %s (line %d, column %d)",
                 err.text, err.line, err.column);
        api_send_error(a, req, 400, msg, NULL);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        api_send_error(a, req, 400, "the request body must be a JSON object", NULL);
        return NULL;
    }
    return root;
}

void api_send_garbage(h2o_req_t *req, enum completion_kind kind, int stream)
{
    /* A chunk cut in the middle of a string, then a data line that is not JSON, and no [DONE]. */
    static const char sse[] =
        "data: {\"id\":\"chatcmpl-garbage\",\"object\":\"chat.completion.chunk\",\"choices\":"
        "[{\"index\":0,\"delta\":{\"content\":\"tru\n\n"
        "data: {{{ this is not JSON }}}\n\n";
    /* A body cut in the middle of a string. */
    static const char json[] =
        "{\"id\":\"chatcmpl-garbage\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"trunc";
    if (stream)
        respond_raw(req, 200, "text/event-stream", h2o_iovec_init(sse, sizeof(sse) - 1));
    else
        respond_raw(req, 200, "application/json", h2o_iovec_init(json, sizeof(json) - 1));
}

_Noreturn void api_crash(const struct mock_opts *o, const char *why)
{
    if (o->crash_signal != 0) {
        fprintf(stderr, "arun-mock-engine: crashing on purpose %s (signal %d)\n", why,
                o->crash_signal);
        signal(o->crash_signal, SIG_DFL);
        raise(o->crash_signal);
    }
    fprintf(stderr, "arun-mock-engine: crashing on purpose %s (exit status %d)\n", why,
            o->crash_exit_code);
    _exit(o->crash_exit_code);
}

/* ---- small endpoints ---- */

static void handle_models(struct api *a, h2o_req_t *req)
{
    json_t *doc = json_pack("{s:s,s:[{s:s,s:s,s:I,s:s}]}", "object", "list", "data", "id",
                            a->opts->model, "object", "model", "created", (json_int_t)time(NULL),
                            "owned_by", "arun-mock-engine");
    ASSERT(doc != NULL);
    respond_json(req, 200, doc);
}

static const char *base64_of(const unsigned char *p, size_t n, struct buf *b)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    buf_reset(b);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        char out[4] = {tab[v >> 18], tab[(v >> 12) & 63], i + 1 < n ? tab[(v >> 6) & 63] : '=',
                       i + 2 < n ? tab[v & 63] : '='};
        api_put(b, out, 4);
    }
    return buf_cstr(b);
}

/* One embedding as a JSON array of numbers, or as base64 of little-endian float32. */
static json_t *embedding_json(struct api *a, json_t *input, size_t dim, int base64)
{
    float v[OPTS_EMBEDDING_DIM_CAP];
    gen_embedding(json_string_value(input), json_string_length(input), v, dim);
    if (base64)
        return json_string(base64_of((const unsigned char *)v, dim * sizeof(float), &a->scratch));
    json_t *arr = json_array();
    for (size_t j = 0; j < dim; j++)
        json_array_append_new(arr, json_real(v[j]));
    return arr;
}

static int embed_params(struct api *a, json_t *root, size_t *dim, int *base64, const char **err)
{
    json_t *d = json_object_get(root, "dimensions");
    *dim = (size_t)a->opts->embedding_dim;
    if (d != NULL && !json_is_null(d)) {
        if (!json_is_integer(d) || json_integer_value(d) < 1 ||
            json_integer_value(d) > OPTS_EMBEDDING_DIM_CAP) {
            *err = "dimensions must be an integer from 1 to 8192";
            return -EINVAL;
        }
        *dim = (size_t)json_integer_value(d);
    }
    json_t *f = json_object_get(root, "encoding_format");
    *base64 = json_is_string(f) && strcmp(json_string_value(f), "base64") == 0;
    if (f != NULL && !json_is_null(f) && !*base64 &&
        !(json_is_string(f) && strcmp(json_string_value(f), "float") == 0)) {
        *err = "encoding_format must be \"float\" or \"base64\"";
        return -EINVAL;
    }
    return 0;
}

/* The inputs as an array of strings (a lone string becomes an array of one), or NULL. */
static json_t *embed_inputs(json_t *root, const char **err)
{
    json_t *in = json_object_get(root, "input");
    if (json_is_string(in))
        return json_pack("[O]", in);
    size_t i;
    json_t *s;
    *err = "input must be a string or a non-empty array of at most 2048 strings";
    if (!json_is_array(in) || json_array_size(in) == 0 || json_array_size(in) > EMBED_INPUTS_CAP)
        return NULL;
    json_array_foreach(in, i, s)
    {
        if (!json_is_string(s))
            return NULL;
    }
    return json_incref(in);
}

static void handle_embeddings(struct api *a, h2o_req_t *req)
{
    json_t *root = api_parse_body(a, req);
    if (root == NULL)
        return;
    const char *err = NULL;
    size_t dim, i;
    int base64;
    json_t *inputs = embed_inputs(root, &err), *s;
    if (inputs == NULL || embed_params(a, root, &dim, &base64, &err) != 0 ||
        json_array_size(inputs) * dim > EMBED_FLOATS_CAP) {
        api_send_error(a, req, 400, err != NULL ? err : "too many inputs x dimensions",
                       inputs == NULL ? "input" : NULL);
        goto out;
    }
    json_t *data = json_array();
    uint64_t words = 0;
    json_array_foreach(inputs, i, s)
    {
        struct gen_prompt gp;
        gen_prompt_init(&gp);
        gen_prompt_feed(&gp, json_string_value(s), json_string_length(s));
        words += gp.words;
        json_array_append_new(data, json_pack("{s:s,s:I,s:o}", "object", "embedding", "index",
                                              (json_int_t)i, "embedding",
                                              embedding_json(a, s, dim, base64)));
    }
    json_t *model = json_object_get(root, "model");
    model = json_is_string(model) ? json_incref(model) : json_string(a->opts->model);
    respond_json(req, 200,
                 json_pack("{s:s,s:o,s:o,s:{s:I,s:I}}", "object", "list", "data", data, "model",
                           model, "usage", "prompt_tokens", (json_int_t)words, "total_tokens",
                           (json_int_t)words));
out:
    json_decref(inputs);
    json_decref(root);
}

/* ---- /mock/ endpoints ---- */

static json_t *last_body_json(const struct api *a)
{
    if (a->last_body == NULL)
        return json_null();
    json_t *doc = json_loadb(a->last_body, a->last_body_len, JSON_DECODE_ANY, NULL);
    return doc != NULL ? doc : json_stringn(a->last_body, a->last_body_len);
}

static void handle_stats(struct api *a, h2o_req_t *req)
{
    json_t *by_path = json_object();
    for (int r = 0; r < API_ROUTE_COUNT; r++)
        json_object_set_new(by_path, route_names[r], json_integer((json_int_t)a->by_route[r]));
    json_t *doc = json_pack(
        "{s:I,s:o,s:I,s:I,s:I,s:I,s:b,s:I,s:o}", "requests", (json_int_t)a->requests,
        "requests_by_path", by_path, "concurrency", (json_int_t)a->concurrency, "peak_concurrency",
        (json_int_t)a->peak_concurrency, "aborted", (json_int_t)a->aborted, "events_sent",
        (json_int_t)a->events_sent, "loaded", a->loaded, "rss_mb", (json_int_t)a->rss_mb,
        "last_request_body", last_body_json(a));
    ASSERT(doc != NULL);
    respond_json(req, 200, doc);
}

static void reset_stats(struct api *a)
{
    a->requests = 0;
    memset(a->by_route, 0, sizeof(a->by_route));
    a->peak_concurrency = a->concurrency;
    a->aborted = 0;
    a->events_sent = 0;
    free(a->last_body);
    a->last_body = NULL;
    a->last_body_len = 0;
}

static void handle_mock(struct api *a, h2o_req_t *req)
{
    h2o_iovec_t p = req->path_normalized;
    if (h2o_memis(p.base, p.len, H2O_STRLIT("/mock/stats"))) {
        handle_stats(a, req);
    } else if (h2o_memis(p.base, p.len, H2O_STRLIT("/mock/reset")) &&
               h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        reset_stats(a);
        respond_raw(req, 200, "application/json", h2o_iovec_init(H2O_STRLIT("{\"ok\":true}")));
    } else {
        api_send_error(a, req, 404, "unknown mock endpoint (GET /mock/stats, POST /mock/reset)",
                       NULL);
    }
}

/* ---- routing ---- */

static enum api_route route_of(h2o_iovec_t path)
{
    for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
        if (path.len == routes[i].len && memcmp(path.base, routes[i].path, path.len) == 0)
            return routes[i].route;
    }
    return API_ROUTE_OTHER;
}

static void remember_body(struct api *a, h2o_req_t *req)
{
    if (req->entity.base == NULL || req->entity.len == 0 || req->entity.len > LAST_BODY_CAP)
        return;
    a->last_body = xrealloc(a->last_body, req->entity.len);
    memcpy(a->last_body, req->entity.base, req->entity.len);
    a->last_body_len = req->entity.len;
}

static int header_is(h2o_req_t *req, ssize_t i, const char *prefix, size_t plen, const char *key)
{
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    size_t klen = strlen(key);
    return v.len == plen + klen && strncasecmp(v.base, prefix, plen) == 0 &&
           memcmp(v.base + plen, key, klen) == 0;
}

/* llama-server takes the key as "Authorization: Bearer KEY" or "X-Api-Key: KEY". */
static int authorized(struct api *a, h2o_req_t *req)
{
    const char *key = a->opts->api_key;
    if (key == NULL)
        return 1;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (header_is(req, i, H2O_STRLIT("Bearer "), key))
        return 1;
    i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-api-key"), -1);
    return header_is(req, i, "", 0, key);
}

static int method_ok(h2o_req_t *req, enum api_route r)
{
    int get = r == API_ROUTE_HEALTH || r == API_ROUTE_MODELS;
    return get ? h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))
               : h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
}

/* Whether a garbage answer should be an event stream: the body says "stream": true. */
static int wants_stream(h2o_req_t *req)
{
    json_t *root = json_loadb(req->entity.base, req->entity.len, 0, NULL);
    int stream = json_is_true(json_object_get(root, "stream"));
    json_decref(root);
    return stream;
}

static void handle_model_endpoint(struct api *a, h2o_req_t *req, enum api_route r)
{
    enum completion_kind kind = r == API_ROUTE_CHAT ? COMPLETION_CHAT : COMPLETION_TEXT;
    if (a->opts->fail_status != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "mock failure: this engine answers every model request with "
                 "HTTP %d (--fail-status)",
                 a->opts->fail_status);
        api_send_error(a, req, a->opts->fail_status, msg, NULL);
    } else if (a->opts->garbage) {
        api_send_garbage(req, kind, r != API_ROUTE_EMBEDDINGS && wants_stream(req));
    } else if (r == API_ROUTE_EMBEDDINGS) {
        handle_embeddings(a, req);
    } else {
        completion_handle(a, req, kind);
    }
}

int api_handle(struct api *a, h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    if (path.len >= 6 && memcmp(path.base, "/mock/", 6) == 0) {
        handle_mock(a, req);
        return 0;
    }
    enum api_route r = route_of(path);
    a->requests++;
    a->by_route[r]++;
    remember_body(a, req);
    if (r != API_ROUTE_HEALTH && !authorized(a, req))
        api_send_error(a, req, 401, "Invalid API Key", NULL);
    else if (!a->loaded)
        respond_raw(req, 503, "application/json", h2o_iovec_init(H2O_STRLIT(LOADING_BODY)));
    else if (r == API_ROUTE_OTHER)
        api_send_error(a, req, 404, "File Not Found", NULL);
    else if (!method_ok(req, r))
        api_send_error(a, req, 405, "method not allowed on this endpoint", NULL);
    else if (r == API_ROUTE_HEALTH)
        respond_raw(req, 200, "application/json", h2o_iovec_init(H2O_STRLIT(HEALTH_BODY)));
    else if (r == API_ROUTE_MODELS)
        handle_models(a, req);
    else
        handle_model_endpoint(a, req, r);
    return 0;
}

/* ---- lifecycle ---- */

void api_init(struct api *a, const struct mock_opts *o, uv_loop_t *loop)
{
    *a = (struct api){.opts = o, .loop = loop};
    h2o_linklist_init_anchor(&a->in_flight);
    buf_init(&a->scratch, SCRATCH_CAP);
    if (getrandom(&a->id_salt, sizeof(a->id_salt), GRND_NONBLOCK) != sizeof(a->id_salt))
        a->id_salt = (uint32_t)getpid() ^ (uint32_t)time(NULL);
}

void api_cleanup(struct api *a)
{
    ASSERT(h2o_linklist_is_empty(&a->in_flight));
    buf_cleanup(&a->scratch);
    free(a->last_body);
    a->last_body = NULL;
}

void api_set_loaded(struct api *a, size_t rss_mb)
{
    a->loaded = 1;
    a->rss_mb = rss_mb;
}

void api_abort_all(struct api *a)
{
    completion_abort_all(a);
}
