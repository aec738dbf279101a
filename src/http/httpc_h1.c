/*
 * httpc_h1.c: httpc's native transport: HTTP/1.1 over libuv TCP, for engines on this machine.
 *
 * It owns, per struct httpc, the keep-alive connections to loopback engines (idle ones in a
 * most-recently-used list, at most t->idle_cap), and per request its encoded request
 * bytes, its response headers and (buffered mode) its body. It promises everything httpc.h
 * promises: done runs exactly once per accepted request unless it is cancelled or the client
 * freed, never from inside httpc_request; on_data never runs from inside httpc_resume; the
 * same errors and sentences as the libcurl transport. It does not do TLS, DNS, proxies,
 * redirects or compression: URLs that need any of them go to libcurl (h1_request() says
 * -EAFNOSUPPORT).
 *
 * DESIGN
 *
 * Why it exists: the gateway relays every request to an engine on 127.0.0.1, and through
 * libcurl each relay cost about twelve system calls (epoll_ctl churn as libcurl re-arms its
 * socket, a poll() liveness check before reusing a connection) and a libcurl transfer's setup;
 * bench/gateway.sh had arun at half of nginx's throughput. Here a request on a pooled
 * connection is one write() (uv_try_write) and one read(), and the socket stays registered for
 * reading for its whole life, idle or not: an idle connection that turns readable was closed
 * (or written to) by the engine and is dropped at once, so a reused connection is almost never
 * stale.
 *
 * Almost: the engine may close an idle connection just as a request is written to it. A
 * request that fails on a reused connection before any byte of an answer arrived is sent once
 * more on a new connection, and that is logged (libcurl does the same, silently).
 *
 * A connection carries one request at a time (no pipelining). Its uv_timer holds the current
 * request's nearest deadline (connect, first byte, idle gap, whole transfer), re-armed by
 * rearm() whenever the phase changes or data arrives. Body bytes go to on_data straight from
 * the read buffer; the chunked coding is decoded in place first (http/http1.c, picohttpparser),
 * so each read becomes at most one on_data call and a pause never leaves bytes undelivered:
 * HTTPC_PAUSE just stops reading (uv_read_stop) until httpc_resume.
 *
 * Callbacks and lifetime: on_headers and on_data run with r->in_cb set; httpc_cancel() inside
 * them only marks the request, and the code after the callback drops it. Start failures
 * (a socket that cannot be made) are reported through the defer timer, so done never runs
 * inside httpc_request. A connection's handles close asynchronously; it is freed in the last
 * close callback, and the struct h1 after its last handle closed once h1_free ran.
 *
 * THREAD SAFETY NOTES
 *
 * None: one loop thread owns a struct h1, its connections and its requests.
 */
#include "http/httpc_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include <h2o/linklist.h>
#include <h2o/memory.h> /* H2O_STRUCT_FROM_MEMBER */

#include "core/clock.h"
#include "core/log.h"
#include "http/http1.h"

#define RBUF_INITIAL (16u * 1024)                      /* read buffer of a new connection */
#define RBUF_MAX (HTTPC_MAX_HEADER_BYTES + 16u * 1024) /* a whole head must fit */
#define READ_MIN_ROOM 4096u                            /* grow before offering less */
#define TCP_KEEPALIVE_S 60 /* streams sit idle while a model loads: let the kernel probe */
#define HOST_MAX 64        /* longest loopback host we take: "[::1]", "127.255.255.255" */
#define WARM_TICK_MS 1000  /* how often the pool tops itself up */
#define WARM_SLOT_NS (10ull * 1000000000u) /* the concurrency window, in WARM_SLOTS slots: */
#define WARM_SLOTS 6                       /* the last minute */

struct h1_conn;

struct h1 {
    uv_loop_t *loop;
    uv_timer_t defer_timer; /* reports start failures on the next loop turn */
    h2o_linklist_t idle;    /* h1_conn.link: idle keep-alive connections, most recently
                               used first */
    size_t nidle;           /* entries in idle */
    h2o_linklist_t reqs;    /* h1_req.link: every live request */
    h2o_linklist_t failing; /* h1_req.fail_link: start failures for defer_timer, in order */
    size_t active;          /* entries in reqs */
    h2o_linklist_t warm;    /* h1_warm.link: endpoints kept warm (httpc_prewarm) */
    size_t idle_cap;        /* HTTPC_MAX_IDLE, or a quarter of RLIMIT_NOFILE when less */
    h2o_linklist_t opening; /* h1_conn.link: warm connections still connecting */
    size_t nopening;        /* entries in opening */
    unsigned warm_ids;      /* the last h1_warm.id given */
    uv_timer_t warm_timer;  /* the pool's tick, running while warm is not empty */
    int open_handles;       /* the two timers and every connection's tcp and timer */
    bool freed;             /* h1_free ran; the struct goes at open_handles == 0 */
};

/* An endpoint kept warm: its concurrency over the last minute, and its connections opening. */
struct h1_warm {
    struct sockaddr_storage addr;
    char hostport[HOST_MAX + 8]; /* for log lines */
    unsigned id;                 /* tags the connections opened for it (h1_conn.warm_id) */
    unsigned max;                /* the most worth keeping: the engine's concurrency */
    unsigned active;             /* requests to addr in flight */
    unsigned peak[WARM_SLOTS];   /* the most in flight during each of the last slots */
    unsigned slot;               /* the current one */
    uint64_t slot_ns;            /* when it began */
    bool burst;                  /* more than HTTPC_WARM_MIN were ever in flight at once */
    unsigned opening;            /* its connections still connecting */
    unsigned failed;             /* connects that failed in a row (quiets the log) */
    h2o_linklist_t link;         /* in t->warm */
};

struct h1_conn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer; /* the carried request's nearest deadline */
    struct h1 *t;
    struct h1_req *req;           /* the request it carries; NULL while idle or closing */
    struct sockaddr_storage addr; /* the engine's address, the pool's key */
    char *rbuf;                   /* bytes read and not consumed yet: rbuf[0..rlen) */
    size_t rlen;
    size_t rcap;
    char *wpend;            /* the rest of a request uv_write is sending, or NULL */
    h2o_linklist_t link;    /* in t->idle (idle) or t->opening (warming), at most one */
    int open;               /* of tcp and timer, the handles not closed yet */
    unsigned connected : 1; /* the TCP connect finished */
    unsigned reused : 1;    /* it carried an earlier request */
    unsigned idle : 1;      /* on t->idle */
    unsigned closing : 1;   /* conn_close ran */
    unsigned warming : 1;   /* opened by the pool, connecting: on t->opening */
    unsigned warm_id;       /* the h1_warm it was opened for */
};

/* The fields every read of a streamed body touches come first, in the first two cache lines:
 * with hundreds of streams each read lands on a cold request, and the misses showed in the
 * profile (read_cb). */
struct h1_req {
    struct httpc_req base;     /* first: the public handle */
    unsigned got_bytes : 1;    /* some response byte arrived on the current connection */
    unsigned paused : 1;       /* on_data said HTTPC_PAUSE; not reading */
    unsigned resume_asked : 1; /* httpc_resume ran inside on_data */
    unsigned in_cb : 1;        /* on_headers or on_data is running */
    unsigned cancelled : 1;    /* httpc_cancel ran inside a callback */
    unsigned resent : 1;       /* it was sent again after a stale connection */
    unsigned finished : 1;     /* done is running or it is being dropped */
    struct h1_conn *conn;      /* the connection carrying it; NULL before and after */
    enum httpc_data_result (*on_data)(struct httpc_req *r, const char *p, size_t n, void *arg);
    void *arg;
    uint32_t idle_timeout_ms;
    uint64_t last_data_ns; /* for the idle timeout */
    struct h1_reader rd;   /* the response: its head, framing and fields */
    struct h1 *t;
    httpc_done_cb done;
    int (*on_headers)(struct httpc_req *r, int status, void *arg);
    struct sockaddr_storage addr; /* where to connect */
    char hostport[HOST_MAX + 8];  /* "host:port" for sentences */
    char *wbuf;                   /* the request as sent, kept for one resend */
    size_t wlen;
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;
    uint32_t first_byte_timeout_ms;
    size_t max_body_bytes;  /* buffered mode cap */
    struct buf resp_body;   /* buffered mode: the body so far */
    uint64_t start_ns;      /* when h1_request ran */
    uint64_t connect_ns;    /* when a new connection was made, 0 when reused */
    uint64_t first_byte_ns; /* when the first response byte arrived */
    long connects;          /* connections opened for it */
    int fail_err;           /* a start failure for defer_timer to report */
    char *fail_text;
    h2o_linklist_t link;      /* in t->reqs */
    h2o_linklist_t fail_link; /* in t->failing while linked */
};

static void process(struct h1_req *r);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

/* ---- handles and the struct's lifetime ---- */

static void handle_closed(struct h1 *t)
{
    ASSERT(t->open_handles > 0);
    if (--t->open_handles == 0 && t->freed)
        free(t);
}

static void defer_timer_closed_cb(uv_handle_t *h)
{
    handle_closed(h->data);
}

/* ---- connections ---- */

static struct h1_conn *conn_of(h2o_linklist_t *node)
{
    return H2O_STRUCT_FROM_MEMBER(struct h1_conn, link, node);
}

static void idle_unlink(struct h1_conn *c)
{
    if (!c->idle)
        return;
    h2o_linklist_unlink(&c->link);
    c->idle = 0;
    c->t->nidle--;
}

/* Takes a warm connection off t->opening (its connect ended, or it is closed). */
static void opening_unlink(struct h1_conn *c)
{
    if (!c->warming)
        return;
    h2o_linklist_unlink(&c->link);
    c->warming = 0;
    c->t->nopening--;
}

static void conn_closed_cb(uv_handle_t *h)
{
    struct h1_conn *c = h->data;
    struct h1 *t = c->t;
    if (--c->open == 0) {
        free(c->rbuf);
        free(c->wpend);
        free(c);
    }
    handle_closed(t);
}

/* Closes a connection that carries nothing (the caller detached its request). */
static void conn_close(struct h1_conn *c)
{
    if (c->closing)
        return;
    ASSERT(c->req == NULL);
    c->closing = 1;
    idle_unlink(c);
    opening_unlink(c);
    uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
    uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static struct h1_conn *take_idle(struct h1 *t, const struct sockaddr_storage *addr)
{
    for (h2o_linklist_t *node = t->idle.next; node != &t->idle; node = node->next) {
        struct h1_conn *c = conn_of(node);
        if (same_addr(&c->addr, addr)) {
            idle_unlink(c);
            return c;
        }
    }
    return NULL;
}

/* Keeps a connection whose response ended cleanly for the next request to its engine. */
static void park(struct h1_conn *c)
{
    struct h1 *t = c->t;
    c->reused = 1;
    c->idle = 1;
    h2o_linklist_insert(t->idle.next, &c->link); /* the front: most recently used */
    t->nidle++;
    if (t->nidle > t->idle_cap)
        conn_close(conn_of(t->idle.prev)); /* the least recently used */
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct h1_conn *c = h->data;
    if (c->rcap - c->rlen < READ_MIN_ROOM && c->rcap < RBUF_MAX) {
        size_t cap = c->rcap == 0 ? RBUF_INITIAL : c->rcap * 2;
        c->rcap = cap < RBUF_MAX ? cap : RBUF_MAX;
        c->rbuf = xrealloc(c->rbuf, c->rcap);
    }
    /* A full buffer (a head past RBUF_MAX) gets no room: read_cb sees UV_ENOBUFS. */
    *out = uv_buf_init(c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

/* ---- the end of a request ---- */

static void warm_count(struct h1 *t, const struct sockaddr_storage *addr, bool begin);

static void req_free(struct h1_req *r)
{
    struct h1 *t = r->t;
    if (!h2o_linklist_is_empty(&t->warm))
        warm_count(t, &r->addr, false);
    h2o_linklist_unlink(&r->link);
    t->active--;
    free(r->wbuf);
    free(r->fail_text);
    h1_reader_cleanup(&r->rd);
    buf_cleanup(&r->resp_body);
    free(r);
}

static void unfail(struct h1_req *r)
{
    if (h2o_linklist_is_linked(&r->fail_link))
        h2o_linklist_unlink(&r->fail_link);
}

/* Takes the connection from the request: back to the pool when the response ended cleanly and
 * nothing else is in flight on it, else closed. */
static void detach(struct h1_req *r, bool clean)
{
    struct h1_conn *c = r->conn;
    if (c == NULL)
        return;
    r->conn = NULL;
    c->req = NULL;
    uv_timer_stop(&c->timer);
    if (clean && r->rd.resp.keep_alive && c->rlen == 0 && c->wpend == NULL && !c->t->freed) {
        if (r->paused)
            uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb); /* idle ones read */
        park(c);
    } else {
        conn_close(c);
    }
}

/* Ends a request with done. text: a heap sentence when err != 0, freed here. */
static void finish(struct h1_req *r, int err, char *text)
{
    ASSERT(!r->finished);
    r->finished = 1;
    detach(r, err == 0);
    uint64_t now = clock_mono_ns();
    struct httpc_result res = {
        .error = err,
        .error_text = err != 0 ? text : NULL,
        .status = r->rd.headers_done ? r->rd.resp.status : 0,
        .body = r->on_data == NULL ? buf_cstr(&r->resp_body) : NULL,
        .body_len = r->on_data == NULL ? r->resp_body.len : 0,
        .connect_s = r->connect_ns ? (double)(r->connect_ns - r->start_ns) / 1e9 : 0,
        .ttfb_s = r->first_byte_ns ? (double)(r->first_byte_ns - r->start_ns) / 1e9 : 0,
        .total_s = (double)(now - r->start_ns) / 1e9,
        .new_connects = r->connects,
    };
    r->done(&r->base, &res, r->arg);
    free(text);
    req_free(r);
}

/* Ends a request without done (cancel, h1_free). */
static void drop(struct h1_req *r)
{
    r->finished = 1;
    unfail(r);
    detach(r, false);
    req_free(r);
}

static void defer_timer_cb(uv_timer_t *timer)
{
    struct h1 *t = timer->data;
    /* done may start requests that fail too: they join the end and are reported in this pass. */
    while (!t->freed && !h2o_linklist_is_empty(&t->failing)) {
        struct h1_req *r = H2O_STRUCT_FROM_MEMBER(struct h1_req, fail_link, t->failing.next);
        h2o_linklist_unlink(&r->fail_link);
        char *text = r->fail_text;
        r->fail_text = NULL;
        finish(r, r->fail_err, text);
    }
}

/* A failure found while starting: reported on the next loop turn, never inside the caller. */
static void fail_soon(struct h1_req *r, int err, char *text)
{
    struct h1 *t = r->t;
    r->fail_err = err;
    r->fail_text = text;
    h2o_linklist_insert(&t->failing, &r->fail_link);
    uv_timer_start(&t->defer_timer, defer_timer_cb, 0, 0);
}

/* ---- deadlines ---- */

static uint64_t ms_after(uint64_t from_ns, uint32_t ms)
{
    return from_ns + (uint64_t)ms * 1000000u;
}

static void timer_cb(uv_timer_t *timer);

/* Arms the connection's timer for the request's nearest deadline in its current phase. */
static void rearm(struct h1_req *r)
{
    struct h1_conn *c = r->conn;
    if (c == NULL)
        return;
    uint64_t dl = UINT64_MAX;
    if (r->timeout_ms != 0)
        dl = ms_after(r->start_ns, r->timeout_ms);
    if (!c->connected && ms_after(r->start_ns, r->connect_timeout_ms) < dl)
        dl = ms_after(r->start_ns, r->connect_timeout_ms);
    if (!r->rd.headers_done && r->first_byte_timeout_ms != 0 &&
        ms_after(r->start_ns, r->first_byte_timeout_ms) < dl)
        dl = ms_after(r->start_ns, r->first_byte_timeout_ms);
    if (r->rd.headers_done && r->idle_timeout_ms != 0 && !r->paused &&
        ms_after(r->last_data_ns, r->idle_timeout_ms) < dl)
        dl = ms_after(r->last_data_ns, r->idle_timeout_ms);
    if (dl == UINT64_MAX) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t now = clock_mono_ns();
    uint64_t ms = dl > now ? (dl - now + 999999u) / 1000000u : 0;
    uv_timer_start(&c->timer, timer_cb, ms, 0);
}

static void timer_cb(uv_timer_t *timer)
{
    struct h1_conn *c = timer->data;
    struct h1_req *r = c->req;
    if (r == NULL)
        return;
    uint64_t now = clock_mono_ns();
    char *text;
    if (!c->connected) {
        uint32_t ms = r->connect_timeout_ms;
        if (r->timeout_ms != 0 && r->timeout_ms < ms)
            ms = r->timeout_ms;
        text = xasprintf("cannot connect to %s within %u ms", r->hostport, ms);
    } else if (!r->rd.headers_done) {
        uint32_t ms =
            r->first_byte_timeout_ms != 0 && now >= ms_after(r->start_ns, r->first_byte_timeout_ms)
                ? r->first_byte_timeout_ms
                : r->timeout_ms;
        text = xasprintf("no response headers from %s within %u ms", r->hostport, ms);
    } else if (r->idle_timeout_ms != 0 && !r->paused &&
               now >= ms_after(r->last_data_ns, r->idle_timeout_ms)) {
        text = xasprintf("no data from %s for %u ms", r->hostport, r->idle_timeout_ms);
    } else if (r->timeout_ms != 0 && now >= ms_after(r->start_ns, r->timeout_ms)) {
        text = xasprintf("response from %s took longer than %u ms", r->hostport, r->timeout_ms);
    } else {
        rearm(r); /* woke a little early (millisecond rounding) */
        return;
    }
    finish(r, -ETIMEDOUT, text);
}

/* ---- sending ---- */

static void start_conn(struct h1_req *r);

/* The connection broke under a request. One that was reused and brought no answer yet was
 * most likely closed by the engine while idle: the request goes once more on a new one. */
static void broken(struct h1_req *r, int uverr)
{
    struct h1_conn *c = r->conn;
    if (c->reused && !r->got_bytes && !r->resent) {
        log_info("httpc",
                 "keep-alive connection to %s was closed before an answer (%s); sending the "
                 "request again on a new connection",
                 r->hostport, uv_strerror(uverr));
        r->resent = 1;
        detach(r, false);
        start_conn(r);
        rearm(r);
        return;
    }
    if (!r->got_bytes && uverr == UV_EOF)
        finish(r, -ECONNRESET,
               xasprintf("%s closed the connection without answering", r->hostport));
    else if (r->got_bytes && uverr == UV_EOF)
        finish(r, -ECONNRESET,
               xasprintf("%s closed the connection before the end of the response", r->hostport));
    else
        finish(r, -ECONNRESET,
               xasprintf("connection to %s reset: %s", r->hostport, uv_strerror(uverr)));
}

static void write_cb(uv_write_t *w, int status)
{
    struct h1_conn *c = w->data;
    free(c->wpend);
    c->wpend = NULL;
    if (status < 0 && !c->closing && c->req != NULL)
        broken(c->req, status);
}

static void send_req(struct h1_req *r)
{
    struct h1_conn *c = r->conn;
    uv_buf_t b = uv_buf_init(r->wbuf, (unsigned)r->wlen);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)r->wlen)
        return;
    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0) {
        broken(r, n);
        return;
    }
    /* The kernel took part of it (a big body): uv_write sends the rest from a copy, so the
     * connection never points into a request that may be gone by then. */
    size_t rest = r->wlen - (size_t)n;
    c->wpend = xmalloc(rest);
    memcpy(c->wpend, r->wbuf + n, rest);
    b = uv_buf_init(c->wpend, (unsigned)rest);
    c->write.data = c;
    int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
    if (rc != 0) {
        free(c->wpend);
        c->wpend = NULL;
        broken(r, rc);
    }
}

static void warm_connected(struct h1_conn *c, int status);

static void connect_cb(uv_connect_t *cr, int status)
{
    struct h1_conn *c = cr->data;
    struct h1_req *r = c->req;
    if (c->warm_id != 0) {
        warm_connected(c, status);
        return;
    }
    if (c->closing || r == NULL)
        return;
    if (status < 0) {
        if (status == UV_ECONNREFUSED)
            finish(r, -ECONNREFUSED, xasprintf("connection refused: %s", r->hostport));
        else
            finish(r, status,
                   xasprintf("cannot connect to %s: %s", r->hostport, uv_strerror(status)));
        return;
    }
    c->connected = 1;
    r->connect_ns = clock_mono_ns();
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, TCP_KEEPALIVE_S);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    if (rc != 0) {
        finish(r, rc, xasprintf("cannot read from %s: %s", r->hostport, uv_strerror(rc)));
        return;
    }
    rearm(r);
    send_req(r);
}

/* A connection to addr, not connecting yet. */
static struct h1_conn *conn_new(struct h1 *t, const struct sockaddr_storage *addr)
{
    struct h1_conn *c = xcalloc(1, sizeof(*c));
    c->t = t;
    c->addr = *addr;
    uv_tcp_init(t->loop, &c->tcp);
    uv_timer_init(t->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->connect.data = c;
    c->open = 2;
    t->open_handles += 2;
    return c;
}

/* Opens a new connection for r. */
static void start_conn(struct h1_req *r)
{
    struct h1_conn *c = conn_new(r->t, &r->addr);
    c->req = r;
    r->conn = c;
    r->connects++;
    r->got_bytes = 0;
    int rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&r->addr, connect_cb);
    if (rc != 0) {
        detach(r, false);
        fail_soon(r, rc, xasprintf("cannot connect to %s: %s", r->hostport, uv_strerror(rc)));
    }
}

/* ---- the warm pool (httpc_prewarm) ----
 *
 * Per endpoint kept warm, the connections worth having (busy, idle or connecting): until it
 * has had more than HTTPC_WARM_MIN requests in flight at once, its max (the engine's declared
 * concurrency: there is no history to size from, and the first burst after a start is when
 * connects hurt most; health probes, one at a time, are no history); after that, the most
 * requests that were in flight to it at once during the last minute, at least HTTPC_WARM_MIN.
 * Never more than max or HTTPC_WARM_MAX, and all endpoints within the idle cap. A connection the
 * pool opens is parked like any other once connected, so requests take it from the idle list as
 * they take a reused one, and it is read from while idle, so one the engine closes is dropped at
 * once (and a request that races such a close is sent again, as on any reused connection). The tick
 * replaces what was used up or closed; nothing is closed for being more than needed: the engine's
 * own idle timeout does that, as it did before the pool. */

static struct h1_warm *warm_of(h2o_linklist_t *node)
{
    return H2O_STRUCT_FROM_MEMBER(struct h1_warm, link, node);
}

static struct h1_warm *warm_find(struct h1 *t, const struct sockaddr_storage *addr)
{
    for (h2o_linklist_t *node = t->warm.next; node != &t->warm; node = node->next) {
        if (same_addr(&warm_of(node)->addr, addr))
            return warm_of(node);
    }
    return NULL;
}

static struct h1_warm *warm_by_id(struct h1 *t, unsigned id)
{
    for (h2o_linklist_t *node = t->warm.next; node != &t->warm; node = node->next) {
        if (warm_of(node)->id == id)
            return warm_of(node);
    }
    return NULL;
}

/* Moves the window on to the slot of now, clearing the slots that passed. */
static void warm_advance(struct h1_warm *w, uint64_t now)
{
    for (unsigned k = 0; now - w->slot_ns >= WARM_SLOT_NS && k < WARM_SLOTS; k++) {
        w->slot = (w->slot + 1) % WARM_SLOTS;
        w->peak[w->slot] = w->active;
        w->slot_ns += WARM_SLOT_NS;
    }
    if (now - w->slot_ns >= WARM_SLOT_NS)
        w->slot_ns = now; /* idle for longer than the window: every slot was cleared */
}

/* A request to the endpoint started or ended. */
static void warm_count(struct h1 *t, const struct sockaddr_storage *addr, bool begin)
{
    struct h1_warm *w = warm_find(t, addr);
    if (w == NULL)
        return;
    if (!begin) {
        if (w->active > 0) /* not when it was registered while the request ran */
            w->active--;
        return;
    }
    w->active++;
    if (w->active > w->peak[w->slot])
        w->peak[w->slot] = w->active;
    if (w->active > HTTPC_WARM_MIN)
        w->burst = true;
}

/* The connections worth having (busy, idle or connecting). */
static unsigned warm_keep(const struct h1_warm *w)
{
    unsigned n = w->max; /* no burst seen yet: the declared concurrency is the best guess */
    if (w->burst) {
        n = HTTPC_WARM_MIN;
        for (unsigned i = 0; i < WARM_SLOTS; i++)
            n = w->peak[i] > n ? w->peak[i] : n;
    }
    n = n < w->max ? n : w->max;
    return n < HTTPC_WARM_MAX ? n : HTTPC_WARM_MAX;
}

/* Opens connections until busy + idle + connecting reach what is worth keeping. */
static void warm_fill(struct h1 *t, struct h1_warm *w)
{
    unsigned have = w->active + w->opening;
    for (h2o_linklist_t *node = t->idle.next; node != &t->idle; node = node->next)
        have += same_addr(&conn_of(node)->addr, &w->addr);
    unsigned keep = warm_keep(w);
    /* Within the idle cap, all endpoints together: park() would close the oldest otherwise,
     * and the pools would reopen and close each other's connections every tick. */
    for (; have < keep && !t->freed && t->nidle + t->nopening < t->idle_cap; have++) {
        struct h1_conn *c = conn_new(t, &w->addr);
        c->warm_id = w->id;
        c->warming = 1;
        h2o_linklist_insert(&t->opening, &c->link);
        t->nopening++;
        w->opening++;
        int rc =
            uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&w->addr, connect_cb);
        if (rc != 0) {
            log_warn("httpc", "cannot open a warm connection to %s: %s", w->hostport,
                     uv_strerror(rc));
            c->warm_id = 0; /* no connect callback comes */
            w->opening--;
            conn_close(c);
            break;
        }
    }
}

/* A connection the pool opened is connected, or could not be. */
static void warm_connected(struct h1_conn *c, int status)
{
    struct h1 *t = c->t;
    struct h1_warm *w = warm_by_id(t, c->warm_id);
    c->warm_id = 0;
    opening_unlink(c);
    if (w != NULL && w->opening > 0)
        w->opening--;
    if (c->closing)
        return; /* closed while connecting (forgotten, freed): UV_ECANCELED */
    if (status == 0 && w != NULL && !t->freed) {
        c->connected = 1;
        uv_tcp_nodelay(&c->tcp, 1);
        uv_tcp_keepalive(&c->tcp, 1, TCP_KEEPALIVE_S);
        status = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
        if (status == 0) {
            w->failed = 0;
            park(c); /* as reused: its first request is resent if the engine closed it */
            return;
        }
    }
    if (status < 0 && w != NULL && w->failed++ == 0)
        log_info("httpc", "cannot open a warm connection to %s: %s (retried every %u ms)",
                 w->hostport, uv_strerror(status), (unsigned)WARM_TICK_MS);
    conn_close(c);
}

static void warm_tick_cb(uv_timer_t *timer)
{
    struct h1 *t = timer->data;
    uint64_t now = clock_mono_ns();
    for (h2o_linklist_t *node = t->warm.next; node != &t->warm; node = node->next) {
        warm_advance(warm_of(node), now);
        warm_fill(t, warm_of(node));
    }
}

/* Forgets an endpoint: its idle and connecting connections are closed. */
static void warm_forget(struct h1 *t, struct h1_warm *w)
{
    h2o_linklist_unlink(&w->link);
    /* conn_close unlinks c, and only c: the next node is read first. */
    for (h2o_linklist_t *node = t->idle.next; node != &t->idle;) {
        struct h1_conn *c = conn_of(node);
        node = node->next;
        if (same_addr(&c->addr, &w->addr))
            conn_close(c);
    }
    for (h2o_linklist_t *node = t->opening.next; node != &t->opening;) {
        struct h1_conn *c = conn_of(node);
        node = node->next;
        if (c->warm_id == w->id)
            conn_close(c); /* its connect callback runs with UV_ECANCELED */
    }
    free(w);
    if (h2o_linklist_is_empty(&t->warm))
        uv_timer_stop(&t->warm_timer);
}

/* ---- receiving ---- */

static int field_cb(void *arg, const char *name, size_t name_len, const char *value,
                    size_t value_len)
{
    struct h1_reader *rd = arg;
    return httpc_store_header(&rd->headers, name, name_len, value, value_len);
}

void h1_reader_init(struct h1_reader *rd, bool head_request)
{
    *rd = (struct h1_reader){.head_request = head_request};
    buf_init(&rd->headers, HTTPC_MAX_HEADER_BYTES);
}

void h1_reader_cleanup(struct h1_reader *rd)
{
    buf_cleanup(&rd->headers);
}

enum h1_read_result h1_read(struct h1_reader *rd, char *p, size_t n, size_t *used, size_t *out,
                            bool *complete)
{
    *used = 0;
    *out = 0;
    *complete = false;
    if (!rd->headers_done) {
        /* One allocation for the stored fields instead of growth by doubling from 64 bytes. */
        IGNORE_RESULT(buf_reserve(&rd->headers, 512));
        ssize_t hl = http1_parse_head(p, n, rd->head_request, &rd->resp, field_cb, rd);
        if (hl == 0) {
            if (n < HTTPC_MAX_HEADER_BYTES)
                return H1_READ_MORE;
            hl = -2;
        }
        if (hl == -2)
            return H1_READ_TOO_BIG;
        if (hl < 0)
            return H1_READ_MALFORMED;
        *used = (size_t)hl;
        if (rd->resp.status < 200) {
            buf_reset(&rd->headers); /* an interim response: the final one follows */
            return H1_READ_INTERIM;
        }
        rd->headers_done = true;
        if (rd->resp.framing == HTTP1_BODY_LENGTH)
            rd->body_left = rd->resp.content_length;
        http1_chunked_init(&rd->chunked);
        return H1_READ_HEAD;
    }
    *used = n;
    *out = n;
    switch (rd->resp.framing) {
    case HTTP1_BODY_NONE:
        *complete = true;
        *out = 0;
        break;
    case HTTP1_BODY_LENGTH:
        if (*out > rd->body_left)
            *out = (size_t)rd->body_left;
        rd->body_left -= *out;
        *complete = rd->body_left == 0;
        break;
    case HTTP1_BODY_CHUNKED: {
        ssize_t consumed = http1_dechunk(&rd->chunked, p, n, out, complete);
        if (consumed < 0)
            return H1_READ_BAD_CHUNKS;
        if (*complete && (size_t)consumed < n)
            rd->resp.keep_alive = false;
        break;
    }
    case HTTP1_BODY_EOF:
        break;
    }
    if (*complete && *out < n && rd->resp.framing != HTTP1_BODY_CHUNKED)
        rd->resp.keep_alive = false; /* bytes after the response: nothing we asked for */
    return H1_READ_BODY;
}

/* Hands body bytes on. Returns 0, or -1 when the request ended (cancelled, aborted, over its
 * cap) and must not be touched again. */
static int deliver(struct h1_req *r, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    /* Not re-armed here: the timer, set for an earlier deadline, wakes, finds data since and
     * waits again (timer_cb). A uv_timer_start per chunk showed in the streaming profile. */
    if (r->idle_timeout_ms != 0)
        r->last_data_ns = clock_mono_ns();
    if (r->on_data == NULL) {
        if (buf_append(&r->resp_body, p, n) == 0)
            return 0;
        finish(
            r, -E2BIG,
            xasprintf("response body from %s exceeds %zu bytes", r->hostport, r->max_body_bytes));
        return -1;
    }
    r->in_cb = 1;
    enum httpc_data_result dr = r->on_data(&r->base, p, n, r->arg);
    r->in_cb = 0;
    if (r->cancelled) {
        drop(r);
        return -1;
    }
    if (dr == HTTPC_ABORT) {
        finish(r, -ECONNABORTED, xasprintf("transfer from %s aborted by its reader", r->hostport));
        return -1;
    }
    if (dr == HTTPC_PAUSE && !r->resume_asked) {
        r->paused = 1;
        uv_read_stop((uv_stream_t *)&r->conn->tcp);
        rearm(r); /* a reader that pauses is not an idle engine */
    }
    r->resume_asked = 0;
    return 0;
}

/* The final head arrived. Returns 0, or -1 when the request ended. */
static int head_done(struct h1_req *r)
{
    r->last_data_ns = clock_mono_ns();
    if (r->on_data == NULL && r->rd.resp.framing == HTTP1_BODY_LENGTH &&
        r->rd.resp.content_length > r->max_body_bytes) {
        /* Refused before reading the body, as libcurl's MAXFILESIZE does. */
        finish(
            r, -E2BIG,
            xasprintf("response body from %s exceeds %zu bytes", r->hostport, r->max_body_bytes));
        return -1;
    }
    if (r->on_data == NULL && r->rd.resp.framing == HTTP1_BODY_LENGTH) {
        /* Room for the announced body at once (up to 1 MiB: an engine's word is not memory). */
        uint64_t want =
            r->rd.resp.content_length < (1u << 20) ? r->rd.resp.content_length : 1u << 20;
        IGNORE_RESULT(buf_reserve(&r->resp_body, (size_t)want));
    }
    rearm(r);
    if (r->on_headers == NULL)
        return 0;
    r->in_cb = 1;
    int rc = r->on_headers(&r->base, r->rd.resp.status, r->arg);
    r->in_cb = 0;
    if (r->cancelled) {
        drop(r);
        return -1;
    }
    if (rc == HTTPC_ABORT) {
        finish(r, -ECONNABORTED, xasprintf("transfer from %s aborted by its reader", r->hostport));
        return -1;
    }
    return 0;
}

static void consume(struct h1_conn *c, size_t n)
{
    memmove(c->rbuf, c->rbuf + n, c->rlen - n);
    c->rlen -= n;
}

/* Reads heads (skipping 1xx) and then the body from the connection's buffer. */
static void process(struct h1_req *r)
{
    struct h1_conn *c = r->conn;
    size_t used, out;
    bool complete;
    for (;;) {
        switch (h1_read(&r->rd, c->rbuf, c->rlen, &used, &out, &complete)) {
        case H1_READ_MORE:
            return;
        case H1_READ_INTERIM:
            consume(c, used);
            continue;
        case H1_READ_HEAD:
            consume(c, used);
            if (head_done(r) != 0)
                return;
            continue;
        case H1_READ_BODY:
            c->rlen = 0; /* rbuf stays valid: the buffer is only written by the next read */
            if (deliver(r, c->rbuf, out) != 0)
                return;
            if (complete)
                finish(r, 0, NULL);
            return;
        case H1_READ_TOO_BIG:
            finish(r, -EPROTO,
                   xasprintf("response headers from %s exceed %u bytes or %u fields", r->hostport,
                             (unsigned)HTTPC_MAX_HEADER_BYTES, (unsigned)HTTP1_MAX_FIELDS));
            return;
        case H1_READ_MALFORMED:
            finish(r, -EPROTO,
                   xasprintf("malformed response from %s: not an HTTP/1.x response head",
                             r->hostport));
            return;
        case H1_READ_BAD_CHUNKS:
            finish(r, -EPROTO,
                   xasprintf("malformed response from %s: bad chunked encoding", r->hostport));
            return;
        }
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct h1_conn *c = s->data;
    struct h1_req *r = c->req;
    if (nread == 0 || c->closing)
        return;
    if (r == NULL) {
        /* Idle: the engine closed it, or sent what nobody asked for. Either way it is done. */
        conn_close(c);
        return;
    }
    if (nread == UV_ENOBUFS) {
        finish(r, -EPROTO,
               xasprintf("response headers from %s exceed %u bytes", r->hostport,
                         (unsigned)HTTPC_MAX_HEADER_BYTES));
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF && r->rd.headers_done && r->rd.resp.framing == HTTP1_BODY_EOF) {
            r->rd.resp.keep_alive = false;
            finish(r, 0, NULL);
            return;
        }
        broken(r, (int)nread);
        return;
    }
    if (!r->got_bytes) {
        r->got_bytes = 1;
        if (r->first_byte_ns == 0)
            r->first_byte_ns = clock_mono_ns();
    }
    c->rlen += (size_t)nread;
    process(r);
}

/* ---- request setup ---- */

/* Where a request goes: the address, the authority for Host and sentences, the path. */
struct target {
    struct sockaddr_storage addr;
    const char *authority; /* into the URL, or into abuf */
    size_t authority_len;
    const char *path;
    char abuf[HOST_MAX + 8]; /* "host:port" made from an endpoint */
};

/* The address of a loopback host given literally ("localhost", 127.x.x.x, and "::1" when v6).
 * Returns 0, or -EINVAL for any other host (libcurl's then). */
static int loopback_addr(const char *host, bool v6, unsigned port, struct sockaddr_storage *addr)
{
    memset(addr, 0, sizeof(*addr));
    if (v6)
        return strcmp(host, "::1") == 0 && uv_ip6_addr(host, (int)port, (void *)addr) == 0
                   ? 0
                   : -EINVAL;
    if (strcasecmp(host, "localhost") == 0)
        return uv_ip4_addr("127.0.0.1", (int)port, (void *)addr) == 0 ? 0 : -EINVAL;
    if (strncmp(host, "127.", 4) != 0 || uv_ip4_addr(host, (int)port, (void *)addr) != 0)
        return -EINVAL;
    return 0;
}

/* An endpoint (checked by httpc_check_opts) to a loopback host. Returns 0 or -EINVAL. */
static int target_of_endpoint(const struct httpc_endpoint *to, struct target *t)
{
    bool v6 = strchr(to->host, ':') != NULL;
    size_t hlen = strlen(to->host);
    if (hlen >= HOST_MAX - 2 || loopback_addr(to->host, v6, to->port, &t->addr) != 0)
        return -EINVAL;
    char *w = t->abuf;
    if (v6)
        *w++ = '[';
    memcpy(w, to->host, hlen);
    w += hlen;
    if (v6)
        *w++ = ']';
    *w++ = ':';
    w += fmt_u64(w, to->port);
    t->authority = t->abuf;
    t->authority_len = (size_t)(w - t->abuf);
    t->path = to->path;
    return 0;
}

/* Splits an http:// URL to a loopback host. Returns 0, or -EINVAL for anything else (which
 * libcurl then gets: credentials, names, IPv6 other than ::1, odd characters). */
static int target_of_url(const char *url, struct target *t)
{
    if (strncmp(url, "http://", 7) != 0)
        return -EINVAL;
    const char *a = url + 7;
    size_t alen = strcspn(a, "/?#");
    const char *rest = a + alen;
    char host[HOST_MAX];
    size_t hlen;
    const char *port_at;
    if (memchr(a, '@', alen) != NULL || alen == 0)
        return -EINVAL;
    if (a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (close == NULL)
            return -EINVAL;
        hlen = (size_t)(close - a - 1);
        if (hlen >= sizeof(host))
            return -EINVAL;
        memcpy(host, a + 1, hlen);
        port_at = close + 1;
    } else {
        const char *colon = memchr(a, ':', alen);
        hlen = colon != NULL ? (size_t)(colon - a) : alen;
        if (hlen >= sizeof(host))
            return -EINVAL;
        memcpy(host, a, hlen);
        port_at = a + hlen;
    }
    host[hlen] = '\0';
    unsigned port = 80;
    if (port_at < a + alen) {
        if (*port_at != ':' || port_at + 1 == a + alen)
            return -EINVAL;
        port = 0;
        for (const char *d = port_at + 1; d < a + alen; d++) {
            if (*d < '0' || *d > '9' || port > 65535)
                return -EINVAL;
            port = port * 10 + (unsigned)(*d - '0');
        }
        if (port == 0 || port > 65535)
            return -EINVAL;
    }
    if (loopback_addr(host, a[0] == '[', port, &t->addr) != 0)
        return -EINVAL;
    for (const char *q = rest; *q != '\0'; q++) {
        if ((unsigned char)*q <= ' ' || *q == '#' || (unsigned char)*q >= 0x7f)
            return -EINVAL; /* fragments and raw bytes: libcurl's rules apply */
    }
    t->authority = a;
    t->authority_len = alen;
    t->path = rest;
    return 0;
}

/* "Name:" with nothing after the colon removes a header in libcurl's convention; the same
 * here (the libcurl transport's "Expect:" is one). */
static bool header_is_removal(const char *h)
{
    const char *colon = strchr(h, ':');
    return colon != NULL && colon[strspn(colon + 1, " \t") + 1] == '\0';
}

static bool header_named(const char *h, const char *name)
{
    size_t n = strlen(name);
    /* The first letter first: most lines differ there, and strncasecmp is a call. */
    return (h[0] | 0x20) == (name[0] | 0x20) && strncasecmp(h, name, n) == 0 && h[n] == ':';
}

static char *put(char *w, const char *s, size_t n)
{
    memcpy(w, s, n);
    return w + n;
}

static char *puts_crlf(char *w, const char *s)
{
    w = put(w, s, strlen(s));
    return put(w, "\r\n", 2);
}

/* The request bytes: request line, headers, body, in one buffer for one write. (memcpy rather
 * than snprintf: formatting showed in the gateway's profile.) */
static void encode(struct h1_req *r, const struct httpc_opts *o, const char *method,
                   const char *authority, size_t authority_len, const char *path)
{
    bool has_host = false, has_accept = false;
    size_t size = strlen(method) + strlen(path) + authority_len + 96 + o->body_len;
    for (size_t i = 0; i < o->nheaders; i++) {
        size += strlen(o->headers[i]) + 2;
        has_host |= header_named(o->headers[i], "Host");
        has_accept |= header_named(o->headers[i], "Accept");
    }
    bool with_length = o->body != NULL || strcmp(method, "POST") == 0 ||
                       strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
    char *start = xmalloc(size), *w = start;
    w = put(w, method, strlen(method));
    w = put(w, " /", *path == '/' ? 1 : 2);
    w = put(w, path, strlen(path));
    w = put(w, " HTTP/1.1\r\n", 11);
    if (!has_host) {
        w = put(w, "Host: ", 6);
        w = put(w, authority, authority_len);
        w = put(w, "\r\n", 2);
    }
    if (!has_accept)
        w = put(w, "Accept: */*\r\n", 13);
    for (size_t i = 0; i < o->nheaders; i++) {
        if (header_is_removal(o->headers[i]) || header_named(o->headers[i], "Content-Length") ||
            header_named(o->headers[i], "Transfer-Encoding"))
            continue;
        w = puts_crlf(w, o->headers[i]);
    }
    if (with_length) {
        w = put(w, "Content-Length: ", 16);
        w += fmt_u64(w, o->body_len);
        w = put(w, "\r\n", 2);
    }
    w = put(w, "\r\n", 2);
    ASSERT((size_t)(w - start) + o->body_len <= size);
    if (o->body_len > 0)
        w = put(w, o->body, o->body_len);
    r->wbuf = start;
    r->wlen = (size_t)(w - start);
}

/* ---- public (through httpc.c) ---- */

struct h1 *h1_new(uv_loop_t *loop)
{
    struct h1 *t = xcalloc(1, sizeof(*t));
    t->loop = loop;
    h2o_linklist_init_anchor(&t->idle);
    h2o_linklist_init_anchor(&t->reqs);
    h2o_linklist_init_anchor(&t->failing);
    h2o_linklist_init_anchor(&t->warm);
    h2o_linklist_init_anchor(&t->opening);
    uv_timer_init(loop, &t->defer_timer);
    t->defer_timer.data = t;
    struct rlimit rl;
    t->idle_cap = HTTPC_MAX_IDLE;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur / 4 < t->idle_cap)
        t->idle_cap = rl.rlim_cur / 4; /* the rest for clients, engines' pipes, the store */
    uv_timer_init(loop, &t->warm_timer);
    t->warm_timer.data = t;
    uv_unref((uv_handle_t *)&t->warm_timer); /* it never holds a loop open by itself */
    t->open_handles = 2;
    return t;
}

void h1_free(struct h1 *t)
{
    if (t == NULL)
        return;
    ASSERT(!t->freed);
    t->freed = true;
    h2o_linklist_t *node = t->reqs.next;
    while (node != &t->reqs) {
        struct h1_req *r = H2O_STRUCT_FROM_MEMBER(struct h1_req, link, node);
        node = node->next; /* drop frees r, and only r */
        if (!r->finished)
            drop(r); /* one whose done is running is released by finish() */
    }
    while (!h2o_linklist_is_empty(&t->warm))
        warm_forget(t, warm_of(t->warm.next));
    while (!h2o_linklist_is_empty(&t->idle))
        conn_close(conn_of(t->idle.next));
    uv_close((uv_handle_t *)&t->defer_timer, defer_timer_closed_cb);
    uv_close((uv_handle_t *)&t->warm_timer, defer_timer_closed_cb);
}

int h1_prewarm(struct h1 *t, const struct httpc_endpoint *to, unsigned max)
{
    struct target tg;
    if (t->freed)
        return -ESHUTDOWN;
    if (target_of_endpoint(to, &tg) != 0)
        return -EAFNOSUPPORT;
    struct h1_warm *w = warm_find(t, &tg.addr);
    if (max == 0) {
        if (w != NULL)
            warm_forget(t, w);
        return 0;
    }
    if (w == NULL) {
        w = xcalloc(1, sizeof(*w));
        w->addr = tg.addr;
        size_t n =
            tg.authority_len < sizeof(w->hostport) - 1 ? tg.authority_len : sizeof(w->hostport) - 1;
        memcpy(w->hostport, tg.authority, n);
        w->id = ++t->warm_ids;
        w->slot_ns = clock_mono_ns();
        /* Requests already in flight to it count from now on, not these. */
        if (h2o_linklist_is_empty(&t->warm))
            uv_timer_start(&t->warm_timer, warm_tick_cb, WARM_TICK_MS, WARM_TICK_MS);
        /* The front: the newest endpoint fills first when the idle cap is tight. */
        h2o_linklist_insert(t->warm.next, &w->link);
    }
    w->max = max;
    warm_fill(t, w);
    return 0;
}

int h1_request(struct h1 *t, const struct httpc_opts *o, httpc_done_cb done, struct httpc_req **out)
{
    struct target tg;
    if (t->freed)
        return -ESHUTDOWN;
    if ((o->url != NULL ? target_of_url(o->url, &tg) : target_of_endpoint(&o->to, &tg)) != 0)
        return -EAFNOSUPPORT; /* libcurl's */
    const char *authority = tg.authority, *path = tg.path;
    size_t authority_len = tg.authority_len;
    const char *method = o->method != NULL ? o->method : o->body != NULL ? "POST" : "GET";

    struct h1_req *r = xcalloc(1, sizeof(*r));
    r->base.transport = HTTPC_TRANSPORT_H1;
    r->t = t;
    r->done = done;
    r->on_headers = o->on_headers;
    r->on_data = o->on_data;
    r->arg = o->arg;
    r->addr = tg.addr;
    bool has_port =
        authority[authority_len - 1] != ']' && memchr(authority, ':', authority_len) != NULL;
    size_t hp = authority_len < sizeof(r->hostport) - 4 ? authority_len : sizeof(r->hostport) - 4;
    memcpy(r->hostport, authority, hp); /* for sentences: a port with 30 leading zeros is cut */
    memcpy(r->hostport + hp, has_port ? "" : ":80", has_port ? 1 : 4);
    r->connect_timeout_ms =
        o->connect_timeout_ms ? o->connect_timeout_ms : HTTPC_CONNECT_TIMEOUT_MS;
    r->timeout_ms = o->timeout_ms;
    r->first_byte_timeout_ms = o->first_byte_timeout_ms;
    r->idle_timeout_ms = o->idle_timeout_ms;
    r->max_body_bytes = o->max_body_bytes ? o->max_body_bytes : HTTPC_MAX_BODY_BYTES;
    h1_reader_init(&r->rd, strcmp(method, "HEAD") == 0);
    buf_init(&r->resp_body, r->max_body_bytes);
    r->start_ns = clock_mono_ns();
    encode(r, o, method, authority, authority_len, path);

    h2o_linklist_insert(&t->reqs, &r->link);
    t->active++;
    if (!h2o_linklist_is_empty(&t->warm))
        warm_count(t, &r->addr, true);

    struct h1_conn *c = take_idle(t, &tg.addr);
    if (c != NULL) {
        c->req = r;
        r->conn = c;
        rearm(r);
        send_req(r); /* a failure here resends or fails through fail_soon, never done */
    } else {
        start_conn(r);
        rearm(r);
    }
    if (out != NULL)
        *out = &r->base;
    return 0;
}

void h1_resume(struct httpc_req *pub)
{
    struct h1_req *r = (struct h1_req *)pub;
    if (r->finished || r->cancelled)
        return;
    if (r->in_cb) {
        r->resume_asked = 1; /* on_data is running: its HTTPC_PAUSE, if any, is void */
        return;
    }
    if (!r->paused)
        return;
    r->paused = 0;
    if (r->conn != NULL) {
        /* libuv only reads on a later loop turn: on_data never runs from in here. */
        uv_read_start((uv_stream_t *)&r->conn->tcp, alloc_cb, read_cb);
        r->last_data_ns = clock_mono_ns();
        rearm(r);
    }
}

void h1_cancel(struct httpc_req *pub)
{
    struct h1_req *r = (struct h1_req *)pub;
    if (r->finished || r->cancelled)
        return;
    if (r->in_cb) {
        r->cancelled = 1; /* the code after the callback drops it */
        return;
    }
    drop(r);
}

const char *h1_header(struct httpc_req *pub, const char *name)
{
    return httpc_find_header(&((struct h1_req *)pub)->rd.headers, name);
}

size_t h1_active(const struct h1 *t)
{
    return t->active;
}

size_t h1_idle(const struct h1 *t)
{
    return t->nidle;
}
