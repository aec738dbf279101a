/*
 * server.c: accepts TCP connections on the loop and hands them to h2o (libuv flavour), or in
 * --hang mode reads and discards what they send, forever.
 *
 * Shutdown must end with every handle closed so the loop can be closed and the sanitizer sees no
 * leak, but h2o 2.2 offers no call that closes its HTTP/1 connections. So the server keeps its
 * own list of accepted connections, and server_close() makes each one end the way h2o already
 * handles: shutdown(2) of the socket turns a waiting read into EOF and a write into EPIPE, and
 * h2o then closes the connection itself and disposes its request. Requests h2o is not reading or
 * writing for (completions waiting on their pacing timer) are ended by api_abort_all() first.
 */
#include "server.h"

#include <h2o/socket/uv-binding.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define LISTEN_BACKLOG 1024 /* benchmarks open hundreds of connections at once */
#define HANG_READ_SIZE 65536

struct handler {
    h2o_handler_t super; /* h2o's part: on_req */
    struct api *api;     /* where every request goes */
};

/* One accepted connection. tcp comes first: libuv and h2o hand back &tcp. */
struct conn {
    uv_tcp_t tcp;
    h2o_linklist_t link; /* in server->conns until closed */
    struct server *srv;  /* the owner, for the close callback */
};

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct handler *h = (struct handler *)self;
    return api_handle(h->api, req);
}

static void maybe_drained(struct server *s)
{
    if (!s->closing || s->listening || !h2o_linklist_is_empty(&s->conns) || s->drained_cb == NULL)
        return;
    server_drained_cb cb = s->drained_cb;
    s->drained_cb = NULL;
    cb(s);
}

static void conn_closed_cb(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;
    struct server *s = c->srv;
    h2o_linklist_unlink(&c->link);
    free(c);
    maybe_drained(s);
}

static void hang_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char sink[HANG_READ_SIZE];
    *buf = uv_buf_init(sink, sizeof(sink));
}

/* --hang: whatever arrives is dropped; only the client closing ends the connection. */
static void hang_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0 && !uv_is_closing((uv_handle_t *)stream))
        uv_close((uv_handle_t *)stream, conn_closed_cb);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct server *s = listener->data;
    if (status != 0)
        return; /* EMFILE and the like: the next accept may work, the client retries */
    struct conn *c = xcalloc(1, sizeof(*c));
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    h2o_linklist_insert(&s->conns, &c->link);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1); /* one small SSE event per token: Nagle would batch them */
    if (s->hang) {
        uv_read_start((uv_stream_t *)&c->tcp, hang_alloc_cb, hang_read_cb);
        return;
    }
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, conn_closed_cb);
    h2o_accept(&s->accept_ctx, sock);
}

void server_init(struct server *s, uv_loop_t *loop, struct api *api, int hang)
{
    *s = (struct server){.loop = loop, .api = api, .hang = hang};
    h2o_linklist_init_anchor(&s->conns);
    h2o_config_init(&s->config);
    s->config.max_request_entity_size = API_BODY_CAP;
    h2o_hostconf_t *host =
        h2o_config_register_host(&s->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    struct handler *h = (struct handler *)h2o_create_handler(path, sizeof(*h));
    h->super.on_req = on_req;
    h->api = api;
    h2o_context_init(&s->ctx, loop, &s->config);
    s->accept_ctx = (h2o_accept_ctx_t){.ctx = &s->ctx, .hosts = s->config.hosts};
}

static int bound_url(struct server *s, const char *host)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    if (rc != 0)
        return rc;
    int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    const char *fmt = ss.ss_family == AF_INET6 ? "http://[%s]:%d" : "http://%s:%d";
    snprintf(s->url, sizeof(s->url), fmt, host, port);
    return 0;
}

int server_listen(struct server *s, const char *host, int port)
{
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
        fprintf(stderr, "arun-mock-engine: --host %s is not an IPv4 or IPv6 address\n", host);
        return UV_EINVAL;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    s->listening = 1;
    int rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
    if (rc == 0)
        rc = bound_url(s, host);
    if (rc != 0)
        fprintf(stderr, "arun-mock-engine: cannot listen on %s port %d: %s\n", host, port,
                uv_strerror(rc));
    return rc;
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct server *s = h->data;
    s->listening = 0;
    maybe_drained(s);
}

void server_close(struct server *s, server_drained_cb cb)
{
    ASSERT(!s->closing);
    s->closing = 1;
    s->drained_cb = cb;
    if (s->listening)
        uv_close((uv_handle_t *)&s->listener, listener_closed_cb);
    /* Not h2o_context_request_shutdown(): it only arms HTTP/2 GOAWAY timers, which
     * h2o_context_dispose() then asserts against; shutting the sockets ends HTTP/2 too. */
    api_abort_all(s->api);
    for (h2o_linklist_t *l = s->conns.next; l != &s->conns; l = l->next) {
        struct conn *c = H2O_STRUCT_FROM_MEMBER(struct conn, link, l);
        uv_os_fd_t fd;
        if (s->hang && !uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
        else if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            shutdown(fd, SHUT_RDWR);
    }
    maybe_drained(s);
}

void server_cleanup(struct server *s)
{
    ASSERT(h2o_linklist_is_empty(&s->conns));
    h2o_context_dispose(&s->ctx);
    h2o_config_dispose(&s->config);
}
