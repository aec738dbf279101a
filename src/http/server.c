/*
 * server.c: h2o on the arun loop: accepting, dispatching, the connection limit, request
 * accounting and the graceful drain. See server.h for what every endpoint gets.
 *
 * DESIGN
 * h2o runs on our uv loop: we accept with uv_listen and hand each socket to h2o_accept. One
 * catch-all h2o handler calls the router, so 404/405 and every error are ours (OpenAI shape).
 * Errors h2o produces by itself before a handler runs (413 for a body over
 * max_request_entity_size, which h2o refuses from the Content-Length before reading the body)
 * pass through an output filter that rewrites them into the OpenAI shape and stamps the request
 * id, so "every response carries x-request-id" holds for them too.
 *
 * Each dispatched request gets a struct http_request allocated as a shared object in h2o's
 * request pool; its dispose callback runs when h2o frees the request, which is where the request
 * is counted, timed and logged. That is the one place that sees every request end, whatever the
 * handler did or whether the client left.
 *
 * The drain (SIGTERM) stops accepting, closes idle connections at once, makes every connection
 * with a request in progress close after its response, runs the shutdown hooks so long-lived
 * streams end, and then waits until no connection is left, or the deadline passes.
 * h2o 2.2 does only part of this by itself: h2o_context_request_shutdown turns keep-alive off
 * for requests parsed after it and sends HTTP/2 GOAWAY, but an HTTP/1 connection waiting for
 * its next request, or one whose response began with keep-alive, stays open until its client
 * or the header timeout closes it (h2o 2.3 added h2o_context_close_idle_connections for this).
 * So the drain walks h2o's HTTP/1 connections itself (see close_idle_http1).
 *
 * The owner-only Unix socket is a second listener whose connections are accepted with a second
 * h2o_accept_ctx: same context (timeouts, limits, drain), but its own host configuration, whose
 * catch-all handler marks each request local before the router runs. Which listener a
 * connection came through is thus fixed at accept; nothing a client sends can change it.
 *
 * TLS (http/tls.h builds the context): h2o does the handshake when accept_ctx.ssl_ctx is set
 * and picks HTTP/2 or HTTP/1.1 from ALPN; everything above it is the same for both. A renewed
 * certificate is swapped in by replacing that pointer (http_server_set_tls): OpenSSL counts the
 * references, so the connections made before keep theirs and are never dropped.
 */
#include "http/server_int.h"

#include <errno.h>
#include <h2o/http1.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "http/guard.h"

struct conn {
    union {
        uv_tcp_t tcp;   /* a TCP client */
        uv_pipe_t pipe; /* a client of the owner-only socket */
        uv_handle_t handle;
    } h; /* first: h2o closes it and calls conn_close_cb with its address */
    struct http_server *srv;
    h2o_linklist_t link; /* in srv->conns: to cut them off when a drain runs out of time */
};

struct catchall {
    h2o_handler_t super;
    struct http_server *srv;
    bool local; /* the handler of the owner-only socket's host configuration */
};

struct error_filter {
    h2o_filter_t super;
    struct http_server *srv;
};

static const char *const request_labels[] = {"route", "method", "status"};

#define HTTP_LOG_PATH_MAX 2048 /* bytes of a path in an access log line; longer ones are cut */
static const char *const duration_labels[] = {"route"};

/* ---- request ids ---- */

static uint64_t next_random(struct http_server *srv)
{
    uint64_t x = srv->rng; /* xorshift64*: fast, and ids need uniqueness, not secrecy */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    srv->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static bool id_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == ':';
}

/* "req_" and 16 hex digits (a generated request id), by hand: formatting showed in the profile. */
static void format_id(char out[24], uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "req_", 4);
    for (int i = 0; i < 16; i++)
        out[4 + i] = hex[(v >> (60 - 4 * i)) & 0xf];
    out[20] = '\0';
}

/* Takes the client's x-request-id when it is 1-64 safe characters, so a caller can follow its
 * own id through our logs; anything else is replaced rather than echoed (log injection). */
static void assign_request_id(struct http_request *r)
{
    ssize_t i = h2o_find_header_by_str(&r->req->headers, H2O_STRLIT("x-request-id"), -1);
    if (i >= 0) {
        h2o_iovec_t v = r->req->headers.entries[i].value;
        bool ok = v.len > 0 && v.len <= HTTP_REQUEST_ID_MAX;
        for (size_t k = 0; ok && k < v.len; k++)
            ok = id_char_ok(v.base[k]);
        if (ok) {
            memcpy(r->id, v.base, v.len);
            r->id[v.len] = '\0';
            return;
        }
    }
    format_id(r->id, next_random(r->srv));
}

void http_stamp_response(struct http_request *r)
{
    h2o_add_header_by_str(&r->req->pool, &r->req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          r->id, strlen(r->id));
}

/* ---- request accounting ---- */

static void maybe_drained(struct http_server *srv);

static bool quiet_route(const struct http_route *route)
{
    /* Probes and scrapes arrive every few seconds; logging each would drown the access log. */
    return route != NULL &&
           (strcmp(route->pattern, "/healthz") == 0 || strcmp(route->pattern, "/readyz") == 0 ||
            strcmp(route->pattern, "/metrics") == 0);
}

static bool base64url_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* The path as the access log shows it: an API key pasted into a URL (a client's mistake, e.g.
 * a key where its id belongs) is masked, so that no key reaches the log (issue 13); names that
 * merely start with the prefix ("arun-mock") are too short to be one and stay. Returns the path
 * itself, or a masked copy in the request's pool. */
static h2o_iovec_t loggable_path(h2o_req_t *req)
{
    static const char prefix[] = HTTP_KEY_PREFIX;
    size_t plen = sizeof(prefix) - 1;
    h2o_iovec_t path = req->path;
    if (memmem(path.base, path.len, prefix, plen) == NULL)
        return path;
    h2o_iovec_t out = h2o_strdup(&req->pool, path.base, path.len);
    char *end = out.base + out.len;
    for (char *p = out.base; (p = memmem(p, (size_t)(end - p), prefix, plen)) != NULL;) {
        char *tail = p + plen, *q = tail;
        while (q < end && base64url_char(*q))
            q++;
        if (q - tail >= HTTP_KEY_TAIL_LEN)
            memset(tail, '*', (size_t)(q - tail));
        p = q;
    }
    return out;
}

static void request_dispose(void *p)
{
    struct http_request *r = p;
    struct http_server *srv = r->srv;
    h2o_req_t *req = r->req;
    double secs = (double)(clock_mono_ns() - r->start_ns) / 1e9;
    const char *route = r->route ? r->route->pattern : "unmatched";
    char status[21], method[16];
    int st = req->res.status ? req->res.status : 499; /* 499: the client left before an answer */
    fmt_u64(status, st > 0 ? (uint64_t)st : 0);
    size_t mlen = req->method.len < sizeof(method) - 1 ? req->method.len : sizeof(method) - 1;
    memcpy(method, req->method.base, mlen);
    method[mlen] = '\0';
    metrics_add(srv->m_requests, 1, (const char *const[]){route, method, status});
    metrics_observe(srv->m_duration, secs, (const char *const[]){route});

    enum log_level lvl = quiet_route(r->route) || r->own_access_log ? LOGL_DEBUG : LOGL_INFO;
    if (lvl >= log_min_level) {
        /* Typed fields, not jansson's: a path that is not UTF-8 (a client's bytes) would make
         * json_pack fail and the line lose every field; the log writer escapes what it must. */
        h2o_iovec_t full = loggable_path(req);
        char path[HTTP_LOG_PATH_MAX + 1];
        size_t plen = full.len < HTTP_LOG_PATH_MAX ? full.len : HTTP_LOG_PATH_MAX;
        memcpy(path, full.base, plen);
        path[plen] = '\0';
        struct log_field f[] = {
            LOG_STR("method", method),
            LOG_STR("path", path),
            LOG_INT("status", st),
            LOG_REAL("duration_ms", secs * 1000),
            LOG_INT("bytes_sent", (int64_t)req->bytes_sent),
        };
        log_write_fields(lvl, "http", r->id, 0, f, ARRAY_SIZE(f), "%s %s %d", method, path, st);
    }
    if (r->release != NULL)
        r->release(r, r->release_arg);
    srv->in_flight--;
    maybe_drained(srv);
}

/* ---- requests refused before routing (guard.h) ---- */

/* Bytes of the head as h2o parsed it: the request line and every field, with Host counted (h2o
 * keeps it apart); Content-Length and Transfer-Encoding, also kept apart, are short. */
static size_t head_bytes(const h2o_req_t *req)
{
    size_t n = req->input.method.len + req->input.path.len + req->input.authority.len + 16;
    for (size_t i = 0; i < req->headers.size; i++)
        n += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return n;
}

/* Whether an HTTP/1 request came without a Host field: h2o then gives it the default host's
 * name, the one string it cannot have taken from the request. */
static bool no_host(const h2o_req_t *req)
{
    return req->input.authority.base == NULL ||
           req->input.authority.base == req->conn->hosts[0]->authority.hostport.base;
}

/* Whether a field was continued on the next line (obs-fold, RFC 9112 section 5.2): h2o keeps
 * such a line as a field with an empty name. */
static bool has_obs_fold(const h2o_req_t *req)
{
    for (size_t i = 0; i < req->headers.size; i++)
        if (req->headers.entries[i].name->len == 0)
            return true;
    return false;
}

/* Checks the framing fields of an HTTP/1 request with a body. h2o keeps Content-Length and
 * Transfer-Encoding to itself and, given both or either twice, picks one (Transfer-Encoding;
 * the first Content-Length; the last Transfer-Encoding) where RFC 9112 section 6.3 says to
 * refuse and close: a proxy in front that picked the other would see a different request end
 * (request smuggling). So the head is parsed again from h2o's input buffer, where it stays
 * until the response is done (h2o consumes it then), to count them. */
static int check_framing(h2o_req_t *req, const char **why)
{
    if (req->version >= 0x200 || req->entity.base == NULL ||
        req->conn->callbacks->get_socket == NULL)
        return 0; /* HTTP/2 frames bodies itself; no body: no framing field was given */
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->input == NULL)
        return 0;
    return http_guard_framing(sock->input->bytes, sock->input->size, why);
}

/* Answers what no route should see (400, or 431 for a head over HTTP_GUARD_HEAD_MAX) and closes
 * the connection after the answer; returns non-zero when it answered. */
static int refuse_malformed(struct http_request *r)
{
    h2o_req_t *req = r->req;
    const char *why = NULL, *code = "invalid_request";
    size_t head = head_bytes(req);
    if (head > HTTP_GUARD_HEAD_MAX) {
        req->http1_is_persistent = 0;
        http_send_error(r, 431, "headers_too_large", NULL,
                        "the request head (request line and header fields) is %zu bytes; arun "
                        "takes at most %d",
                        head, HTTP_GUARD_HEAD_MAX);
        return -EMSGSIZE;
    }
    if (req->version == 0x101 && no_host(req)) {
        why = "an HTTP/1.1 request needs a Host header";
    } else if (has_obs_fold(req)) {
        why = "a header field is continued on the next line (obs-fold); send each on one line";
    } else if (http_guard_target(req->input.path.base, req->input.path.len, &why) != 0) {
        code = "invalid_path";
    } else if (check_framing(req, &why) != 0) {
        code = "invalid_framing";
    }
    if (why == NULL)
        return 0;
    req->http1_is_persistent = 0; /* what follows on the connection cannot be trusted */
    http_send_error(r, 400, code, NULL, "%s", why);
    return -EINVAL;
}

/* ---- dispatch ---- */

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct http_server *srv = ((struct catchall *)self)->srv;
    struct http_request *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), request_dispose);
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->srv = srv;
    r->who.local = ((struct catchall *)self)->local;
    r->start_ns = clock_mono_ns();
    srv->in_flight++;
    assign_request_id(r);
    /* During a drain h2o has already turned keep-alive off (shutdown_requested, at parse time). */
    if (refuse_malformed(r) != 0)
        return 0;

    h2o_iovec_t path = req->path_normalized;
    switch (http_router_match(&srv->router, r, req->method, path)) {
    case HTTP_ROUTER_FOUND:
        if (srv->gate == NULL) {
            memcpy(r->who.tenant, HTTP_TENANT_DEFAULT, sizeof(HTTP_TENANT_DEFAULT));
            if (r->who.local)
                memcpy(r->who.key_id, "local", sizeof("local"));
            r->who.admin = true;
        } else if (srv->gate(r, r->route->access, srv->gate_arg) != 0) {
            break; /* the gate answered */
        }
        r->route->fn(r, r->route->arg);
        break;
    case HTTP_ROUTER_BAD_METHOD:
        http_send_error(r, 405, "method_not_allowed", NULL, "method %.*s is not allowed on %.*s",
                        (int)req->method.len, req->method.base, (int)path.len, path.base);
        break;
    case HTTP_ROUTER_NOT_FOUND:
        http_send_error(r, 404, "not_found", NULL, "no such endpoint: %.*s %.*s",
                        (int)req->method.len, req->method.base, (int)path.len, path.base);
        break;
    }
    return 0;
}

/* ---- errors produced inside h2o (413, and 400s for bad bodies) ---- */

struct rewrite_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
    bool sent;
};

static void rewrite_do_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t n,
                            h2o_send_state_t state)
{
    struct rewrite_ostream *os = (void *)self;
    h2o_iovec_t out = os->sent ? h2o_iovec_init(NULL, 0) : os->body;
    os->sent = true;
    h2o_ostream_send_next(&os->super, req, &out, out.len ? 1 : 0, state);
}

/* Every response passes here as it starts. h2o's own errors arrive with a text/plain body and
 * no x-request-id: they are rewritten in the OpenAI shape. Everything sent by our handlers
 * already carries one and passes untouched, but for the Server header. */
static void error_filter_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    struct http_server *srv = ((struct error_filter *)self)->srv;
    bool ours = h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("x-request-id"), -1) >= 0;
    if (!ours && req->res.status >= 400) {
        char *id = h2o_mem_alloc_pool(&req->pool, 24); /* headers keep pointers: pool, not stack */
        format_id(id, next_random(srv));
        json_t *err =
            json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message",
                      req->res.status == 413 ? "request body is larger than limits.max_body_bytes"
                                             : req->res.reason,
                      "type", http_error_type(req->res.status), "param", "code",
                      req->res.status == 413 ? "request_too_large" : "bad_request");
        char *s = json_dumps(err, JSON_COMPACT);
        json_decref(err);
        struct rewrite_ostream *os = (void *)h2o_add_ostream(req, sizeof(*os), slot);
        os->super.do_send = rewrite_do_send;
        os->body = h2o_strdup(&req->pool, s, SIZE_MAX);
        os->sent = false;
        free(s);
        req->res.content_length = os->body.len;
        memset(&req->res.headers, 0, sizeof(req->res.headers));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/json"));
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                              id, strlen(id));
        slot = &os->super.next;
    }
    /* Here rather than h2o's server_name, which it formats with sprintf into every response. */
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SERVER, NULL, H2O_STRLIT("arun"));
    if (srv->node != NULL &&
        h2o_find_header_by_str(&req->res.headers, H2O_STRLIT(HTTP_H_NODE), -1) < 0)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT(HTTP_H_NODE), 0, NULL,
                              srv->node, strlen(srv->node));
    h2o_setup_next_ostream(req, slot);
}

static void add_filters(struct http_server *srv, h2o_pathconf_t *pathconf)
{
    struct error_filter *f = (void *)h2o_create_filter(pathconf, sizeof(*f));
    f->super.on_setup_ostream = error_filter_setup;
    f->srv = srv;
}

/* ---- connections ---- */

static void conn_close_cb(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;
    struct http_server *srv = c->srv;
    h2o_linklist_unlink(&c->link);
    srv->connections--;
    free(c);
    maybe_drained(srv);
}

static void reject_close_cb(uv_handle_t *h)
{
    free(h);
}

/* Hands an accepted connection to h2o. */
static void start_conn(struct http_server *srv, struct conn *c, h2o_accept_ctx_t *actx)
{
    srv->connections++;
    h2o_linklist_insert(&srv->conns, &c->link);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->h.handle, conn_close_cb);
    h2o_accept(actx, sock);
}

/* Accepts a client of listener (the TCP one, or the local socket's) into a new conn, or NULL. */
static struct conn *accept_conn(uv_stream_t *listener, int status, bool local)
{
    struct http_server *srv = listener->data;
    if (status != 0) {
        log_warn_errno("http", status, "accept failed%s", local ? " on the local socket" : "");
        return NULL;
    }
    struct conn *c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    if (local)
        uv_pipe_init(srv->loop, &c->h.pipe, 0);
    else
        uv_tcp_init(srv->loop, &c->h.tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->h.handle) != 0) {
        uv_close(&c->h.handle, reject_close_cb);
        return NULL;
    }
    return c;
}

static void on_accept(uv_stream_t *listener, int status)
{
    struct http_server *srv = listener->data;
    struct conn *c = accept_conn(listener, status, false);
    if (c == NULL)
        return;
    if (srv->connections >= srv->opts.max_connections || srv->draining) {
        /* Over the limit the kernel's backlog would only hide the problem; close at once so the
         * client sees it, and say so in the log (rate-limited by power of two). */
        srv->rejected_connections++;
        if ((srv->rejected_connections & (srv->rejected_connections - 1)) == 0)
            log_warn("http",
                     "connection refused: %zu open, limits.max_connections is %u "
                     "(%llu refused so far)",
                     srv->connections, srv->opts.max_connections,
                     (unsigned long long)srv->rejected_connections);
        uv_close(&c->h.handle, reject_close_cb);
        return;
    }
    uv_tcp_nodelay(&c->h.tcp, 1);
    start_conn(srv, c, &srv->accept_ctx);
}

/* Whether the peer of a Unix socket runs as our effective uid. */
static bool peer_is_owner(uv_pipe_t *pipe)
{
    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (uv_fileno((uv_handle_t *)pipe, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return false;
    return cred.uid == geteuid();
}

/* A client of the owner-only socket: no connection limit (the owner can always get in to act,
 * PostgreSQL's reserved connections), but only the owner. */
static void on_local_accept(uv_stream_t *listener, int status)
{
    struct http_server *srv = listener->data;
    struct conn *c = accept_conn(listener, status, true);
    if (c == NULL)
        return;
    if (srv->draining || !peer_is_owner(&c->h.pipe)) {
        uint64_t n = srv->draining ? 0 : ++srv->local_refused;
        if (n > 0 && (n & (n - 1)) == 0) /* the 1st, 2nd, 4th, …: a flood logs a few lines */
            log_warn("http",
                     "refused a connection to the local socket from another user than arun's "
                     "(%llu so far)",
                     (unsigned long long)srv->local_refused);
        uv_close(&c->h.handle, reject_close_cb);
        return;
    }
    start_conn(srv, c, &srv->local_accept_ctx);
}

/* ---- lifecycle ---- */

static void handle_closed_cb(uv_handle_t *h);

/* The one host of conf: every path goes to the catch-all handler, through the error filter. */
static void add_host(struct http_server *srv, h2o_globalconf_t *conf, bool local)
{
    h2o_hostconf_t *host =
        h2o_config_register_host(conf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    struct catchall *h = (void *)h2o_create_handler(path, sizeof(*h));
    h->super.on_req = on_req;
    h->srv = srv;
    h->local = local;
    add_filters(srv, path);
    add_filters(srv, &host->fallback_path);
}

struct http_server *http_server_new(uv_loop_t *loop, const struct http_server_options *o,
                                    struct metrics *metrics)
{
    struct http_server *srv = xcalloc(1, sizeof(*srv));
    h2o_linklist_init_anchor(&srv->conns);
    srv->loop = loop;
    srv->opts = *o;
    srv->host = xstrdup(o->host);
    srv->opts.host = srv->host;
    if (srv->opts.req_timeout_ms == 0)
        srv->opts.req_timeout_ms = HTTP_REQ_TIMEOUT_MS;
    if (srv->opts.drain_timeout_ms == 0)
        srv->opts.drain_timeout_ms = HTTP_DRAIN_TIMEOUT_MS;
    srv->rng = clock_mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)srv;
    if (srv->rng == 0)
        srv->rng = 1;
    http_router_init(&srv->router);

    h2o_config_init(&srv->globalconf);
    srv->globalconf.server_name = h2o_iovec_init(NULL, 0); /* error_filter_setup adds it */
    srv->globalconf.max_request_entity_size = o->max_body_bytes;
    srv->globalconf.http1.req_timeout = srv->opts.req_timeout_ms;
    srv->globalconf.http2.idle_timeout = HTTP_IDLE_TIMEOUT_MS;
    /* 0: h2o's own graceful-shutdown timer would still be linked when the context is disposed
     * (an assertion in h2o_timeout_dispose); our drain deadline bounds HTTP/2 as well. */
    srv->globalconf.http2.graceful_shutdown_timeout = 0;
    add_host(srv, &srv->globalconf, false);
    h2o_config_init(&srv->local_conf);
    add_host(srv, &srv->local_conf, true);

    h2o_context_init(&srv->ctx, loop, &srv->globalconf);
    srv->accept_ctx.ctx = &srv->ctx;
    srv->accept_ctx.hosts = srv->globalconf.hosts;
    srv->local_accept_ctx.ctx = &srv->ctx;
    srv->local_accept_ctx.hosts = srv->local_conf.hosts;

    srv->metrics = metrics;
    srv->m_requests =
        metrics_counter(metrics, "arun_http_requests_total",
                        "HTTP requests answered, by route, method and status", 3, request_labels);
    srv->m_duration =
        metrics_histogram(metrics, "arun_http_request_duration_seconds",
                          "Time from routing a request to its end, by route", 1, duration_labels,
                          metrics_latency_buckets, metrics_latency_nbuckets);
    uv_timer_init(loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    return srv;
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    if (strcmp(host, "localhost") == 0)
        return uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)ss);
    return -EINVAL;
}

int http_server_listen(struct http_server *srv, struct buf *err)
{
    struct sockaddr_storage ss;
    int rc = resolve(srv->host, srv->opts.port, &ss);
    if (rc != 0) {
        buf_printf(err,
                   "listen: %s is not an IP address (use an address such as "
                   "127.0.0.1 or ::1, or localhost)",
                   srv->host);
        return rc;
    }
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listener.data = srv;
    rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, 4096, on_accept);
    if (rc != 0) {
        if (rc == UV_EADDRINUSE)
            buf_printf(err,
                       "%s:%u is already in use: another arun or another "
                       "server listens there; pick another with --listen",
                       srv->host, srv->opts.port);
        else
            buf_printf(err, "cannot listen on %s:%u: %s", srv->host, srv->opts.port,
                       uv_strerror(rc));
        uv_close((uv_handle_t *)&srv->listener, NULL); /* never listened: nothing refers to it */
        return rc;
    }
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
    srv->bound_port = ntohs(((struct sockaddr_in *)&bound)->sin_port); /* same offset in v6 */
    srv->listening = true;
    return 0;
}

/* Removes what is at path when it is a socket (a stale one: the caller holds the data_dir
 * lock); anything else there is left alone and refused. */
static int clear_stale_socket(const char *path, struct buf *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        buf_printf(err, "%s exists and is not a socket; move it away to get the local socket",
                   path);
        return -EEXIST;
    }
    return unlink(path) == 0 ? 0 : -errno;
}

/* Binds the pipe at path with mode 0600 from the start: the umask covers the window before
 * chmod, in which another user could otherwise connect. */
static int bind_owner_only(uv_pipe_t *pipe, const char *path)
{
    mode_t old = umask(0177);
    int rc = uv_pipe_bind(pipe, path);
    umask(old);
    if (rc == 0 && chmod(path, 0600) != 0)
        rc = -errno;
    return rc;
}

int http_server_listen_local(struct http_server *srv, const char *path, struct buf *err)
{
    struct sockaddr_un sun;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        buf_printf(err,
                   "the local socket %s is longer than a Unix socket path may be (%zu bytes); "
                   "use a shorter data_dir to get it",
                   path, sizeof(sun.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    int rc = clear_stale_socket(path, err);
    if (rc != 0) {
        if (err->len == 0)
            buf_printf(err, "cannot remove the stale socket %s: %s", path, strerror(-rc));
        return rc;
    }
    uv_pipe_init(srv->loop, &srv->local_listener, 0);
    srv->local_listener.data = srv;
    rc = bind_owner_only(&srv->local_listener, path);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->local_listener, 128, on_local_accept);
    if (rc != 0) {
        buf_printf(err, "cannot listen on the local socket %s: %s", path, uv_strerror(rc));
        srv->closing++;
        uv_close((uv_handle_t *)&srv->local_listener, handle_closed_cb); /* removes the file */
        return rc;
    }
    srv->local_listening = true;
    return 0;
}

uv_loop_t *http_server_loop(const struct http_server *srv)
{
    return srv->loop;
}

uint16_t http_server_port(const struct http_server *srv)
{
    return srv->bound_port;
}

void http_server_set_tls(struct http_server *srv, SSL_CTX *ctx)
{
    /* h2o reads accept_ctx.ssl_ctx once per accepted connection (SSL_new, which takes a
     * reference), so a swap here reaches exactly the connections that come after it. */
    SSL_CTX *old = srv->accept_ctx.ssl_ctx;
    srv->accept_ctx.ssl_ctx = ctx;
    SSL_CTX_free(old); /* NULL is a no-op; open connections hold their own references */
}

SSL_CTX *http_server_tls_ctx(const struct http_server *srv)
{
    return srv->accept_ctx.ssl_ctx;
}

void http_route(struct http_server *srv, const char *method, const char *pattern,
                enum http_access access, http_handler_fn fn, void *arg)
{
    http_router_add(&srv->router, method, pattern, access, fn, arg);
}

void http_server_set_gate(struct http_server *srv, http_gate_fn gate, void *arg)
{
    srv->gate = gate;
    srv->gate_arg = arg;
}

void http_server_set_node(struct http_server *srv, const char *node_id)
{
    free(srv->node);
    srv->node = node_id != NULL ? xstrdup(node_id) : NULL;
}

bool http_server_gated(const struct http_server *srv)
{
    return srv->gate != NULL;
}

const char *http_access_name(enum http_access a)
{
    switch (a) {
    case HTTP_PUBLIC:
        return "public";
    case HTTP_MEMBER:
        return "member";
    case HTTP_ADMIN:
        return "admin";
    }
    return "admin";
}

void http_server_on_shutdown(struct http_server *srv, http_shutdown_hook hook, void *arg)
{
    struct shutdown_hook *h = xcalloc(1, sizeof(*h));
    h->fn = hook;
    h->arg = arg;
    h->next = srv->hooks;
    srv->hooks = h;
}

static void finish_drain(struct http_server *srv, bool forced)
{
    if (srv->drain_done)
        return;
    srv->drain_done = true;
    uv_timer_stop(&srv->drain_timer);
    srv->drained_cb(srv, forced, srv->drained_arg);
}

static void maybe_drained(struct http_server *srv)
{
    if (srv->draining && srv->connections == 0 && srv->in_flight == 0)
        finish_drain(srv, srv->drain_forced);
}

/* The grace after cutting connections: h2o sees EOF and closes them through its own path. */
#define HTTP_CUT_GRACE_MS 1000

static void cut_deadline_cb(uv_timer_t *t)
{
    struct http_server *srv = t->data;
    log_warn("http", "%zu connections did not close after being cut; abandoning them",
             srv->connections);
    finish_drain(srv, true);
}

/* Shuts the sockets down under h2o rather than closing them: h2o then reads EOF, ends its
 * requests (their generators' stop runs) and closes each connection itself, so nothing leaks. */
static void drain_deadline_cb(uv_timer_t *t)
{
    struct http_server *srv = t->data;
    log_warn("http",
             "drain deadline of %u ms passed with %zu connections and %zu requests "
             "still open; cutting them",
             srv->opts.drain_timeout_ms, srv->connections, srv->in_flight);
    srv->drain_forced = true;
    for (h2o_linklist_t *node = srv->conns.next; node != &srv->conns; node = node->next) {
        struct conn *c = H2O_STRUCT_FROM_MEMBER(struct conn, link, node);
        uv_os_fd_t fd;
        if (uv_fileno(&c->h.handle, &fd) == 0)
            shutdown(fd, SHUT_RDWR);
    }
    uv_timer_start(&srv->drain_timer, cut_deadline_cb, HTTP_CUT_GRACE_MS, 0);
}

/* Whether the client has sent bytes that h2o has not read yet: a request on its way. */
static bool bytes_waiting(int fd)
{
    char byte;
    return recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* Called for each HTTP/1 connection with the request it holds. A connection is idle when that
 * request was never parsed (version 0: waiting for the first or next request) and no byte of
 * the next one has arrived, in h2o's buffer or the kernel's. An idle one is shut down under h2o,
 * which reads EOF and closes it through its own path (conn_close_cb follows). Any other has
 * keep-alive turned off, so it closes once its response (streamed or not) is complete; a request
 * still being parsed gets that from h2o itself (shutdown_requested). */
static int drain_http1_conn(h2o_req_t *req, void *arg)
{
    size_t *idle = arg;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    int fd = sock != NULL ? h2o_socket_get_fd(sock) : -1;
    if (req->version != 0 || fd < 0 || sock->input->size != 0 || bytes_waiting(fd)) {
        req->http1_is_persistent = 0;
        return 0;
    }
    shutdown(fd, SHUT_RDWR);
    (*idle)++;
    return 0;
}

/* Closes idle HTTP/1 connections now and the busy ones after their response. HTTP/2 ones got a
 * GOAWAY from h2o_context_request_shutdown; the drain deadline bounds them. Returns how many
 * idle connections were closed. h2o's foreach_request is the one public way to reach its
 * HTTP/1 connections; it does not change the list, and shutdown(2) closes nothing before the
 * loop runs again. */
static size_t close_idle_http1(struct http_server *srv)
{
    size_t idle = 0;
    (void)H2O_HTTP1_CALLBACKS.foreach_request(&srv->ctx, drain_http1_conn, &idle); /* never fails */
    return idle;
}

/* Stops accepting. libuv removes the local socket's file as it closes the listener. */
static void close_listeners(struct http_server *srv)
{
    if (srv->listening) {
        srv->closing++;
        uv_close((uv_handle_t *)&srv->listener, handle_closed_cb);
        srv->listening = false;
    }
    if (srv->local_listening) {
        srv->closing++;
        uv_close((uv_handle_t *)&srv->local_listener, handle_closed_cb);
        srv->local_listening = false;
    }
}

void http_server_shutdown(struct http_server *srv, http_drained_cb done, void *arg)
{
    if (srv->draining)
        return;
    srv->draining = true;
    srv->drained_cb = done;
    srv->drained_arg = arg;
    close_listeners(srv);
    h2o_context_request_shutdown(&srv->ctx);
    size_t idle = close_idle_http1(srv);
    log_info("http",
             "draining: %zu connections (%zu idle, closed now), %zu requests in flight, "
             "deadline %u ms",
             srv->connections, idle, srv->in_flight, srv->opts.drain_timeout_ms);
    for (struct shutdown_hook *h = srv->hooks; h != NULL; h = h->next)
        h->fn(h->arg);
    uv_timer_start(&srv->drain_timer, drain_deadline_cb, srv->opts.drain_timeout_ms, 0);
    maybe_drained(srv);
}

bool http_server_draining(const struct http_server *srv)
{
    return srv->draining;
}

static void free_now(struct http_server *srv)
{
    struct shutdown_hook *h = srv->hooks;
    while (h != NULL) {
        struct shutdown_hook *next = h->next;
        free(h);
        h = next;
    }
    http_router_cleanup(&srv->router);
    SSL_CTX_free(srv->accept_ctx.ssl_ctx);
    free(srv->host);
    free(srv->node);
    free(srv);
}

/* The server's own handles are embedded in it, so it is freed when the last one has closed. */
static void handle_closed_cb(uv_handle_t *h)
{
    struct http_server *srv = h->data;
    if (--srv->closing == 0 && srv->freeing)
        free_now(srv);
}

void http_server_free(struct http_server *srv)
{
    if (srv == NULL)
        return;
    if (srv->connections == 0) {
        /* With connections still open (a forced drain) h2o's context must outlive them; the
         * process is exiting, so it is left to the exit. */
        /* h2o_context_request_shutdown linked HTTP/2's graceful-shutdown entry into one_sec_timeout
         * (h2o 2.2 does so even with no HTTP/2 connection); a linked entry at dispose trips an
         * assertion in h2o_timeout_dispose. */
        if (h2o_timeout_is_linked(&srv->ctx.http2._graceful_shutdown_timeout))
            h2o_timeout_unlink(&srv->ctx.http2._graceful_shutdown_timeout);
        h2o_context_dispose(&srv->ctx);
        h2o_config_dispose(&srv->globalconf);
        h2o_config_dispose(&srv->local_conf);
    }
    srv->freeing = true;
    srv->closing++;
    close_listeners(srv);
    uv_close((uv_handle_t *)&srv->drain_timer, handle_closed_cb);
}

size_t http_server_connections(const struct http_server *srv)
{
    return srv->connections;
}

size_t http_server_requests_in_flight(const struct http_server *srv)
{
    return srv->in_flight;
}

const char *http_request_route(const struct http_request *r)
{
    return r->route != NULL ? r->route->pattern : NULL;
}

bool http_client_gone(struct http_request *r)
{
    h2o_conn_t *conn = r->req->conn;
    if (conn->callbacks->get_socket == NULL)
        return false;
    h2o_socket_t *sock = conn->callbacks->get_socket(conn);
    int fd = sock != NULL ? h2o_socket_get_fd(sock) : -1;
    if (fd < 0)
        return false;
    /* The peer's FIN, even behind bytes not read yet: a TLS client that leaves sends
     * close_notify first, so the socket is never empty when it is gone. */
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0)
        return true;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return true;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

const char *http_remote_addr(struct http_request *r, char *buf, size_t cap)
{
    ASSERT(cap >= HTTP_REMOTE_MAX);
    struct sockaddr_storage ss;
    h2o_conn_t *conn = r->req->conn;
    socklen_t len = 0;
    if (!r->who.local && conn->callbacks->get_peername != NULL)
        len = conn->callbacks->get_peername(conn, (struct sockaddr *)&ss);
    if (r->who.local || (len > 0 && ss.ss_family == AF_UNIX)) {
        snprintf(buf, cap, "local");
        return buf;
    }
    char host[NI_MAXHOST];
    if (len == 0 || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) ||
        h2o_socket_getnumerichost((struct sockaddr *)&ss, len, host) == SIZE_MAX) {
        snprintf(buf, cap, "unknown");
        return buf;
    }
    int32_t port = h2o_socket_getport((struct sockaddr *)&ss);
    bool v6 = ss.ss_family == AF_INET6;
    snprintf(buf, cap, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", (int)port);
    return buf;
}
