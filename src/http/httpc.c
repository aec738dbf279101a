/*
 * httpc.c: HTTP client on the loop: libcurl's multi interface driven by libuv. See httpc.h.
 *
 * It owns one CURLM per struct httpc, a uv_poll per socket libcurl asks us to watch, one
 * uv_timer for libcurl's timeout, one uv_timer that runs deferred resumes on the next loop
 * turn, and per transfer an easy handle, its copied headers and body, its response headers,
 * its buffered body (buffered mode) and a uv_timer for the first-byte and idle timeouts. It
 * promises that done runs exactly once per transfer that httpc_request accepted, unless the
 * transfer is cancelled or the client freed, and never from inside httpc_request. It does not
 * follow redirects, decompress, or retry: callers decide.
 *
 * DESIGN
 *
 * libcurl tells us which sockets to watch (socket_fn) and when to call it back (timer_fn);
 * every uv event becomes one curl_multi_socket_action() through drive(). libcurl forbids
 * calling curl_multi_* from inside its callbacks (write, header, socket, timer), and the user's
 * on_headers/on_data run inside those. So h->in_curl counts the calls into libcurl that may
 * run callbacks, and while it is non-zero, httpc_cancel() and httpc_request() only mark the
 * transfer and put it on the defer list; run_deferred() acts on the list as soon as the
 * outermost libcurl call returns (after_curl()). httpc_resume() is always deferred, through
 * defer_timer, so that on_data never runs from inside the caller's httpc_resume().
 *
 * Finished transfers are collected by process_done() after each drive(): the CURLcode is read
 * from the message before curl_multi_remove_handle(), then complete() calls done and
 * release() frees the transfer. A transfer that ends without libcurl (our timeouts, cancel,
 * httpc_free) is removed early with CURLOPT_FORBID_REUSE set, so its connection is closed
 * rather than pooled with half a response in it.
 *
 * Sockets: libcurl says CURL_POLL_REMOVE when it parks a connection in its pool as well as
 * before it closes one, and forgets its socketp either way. The poll is only stopped then
 * ("parked"), and found again by fd when libcurl reuses the connection, so a keep-alive
 * request costs no uv_poll init/close or malloc (the gateway's profile showed that churn).
 * A socket is really closed through our CURLOPT_CLOSESOCKETFUNCTION, which closes the uv_poll
 * first (libuv drops the fd from epoll at once) and then the fd, so an fd number libcurl gets
 * back later is never watched by a stale handle.
 *
 * Pause: returning CURL_WRITEFUNC_PAUSE makes libcurl keep the chunk it offered and offer it
 * again after curl_easy_pause(CONT). Our HTTPC_PAUSE means "this chunk was taken", so the
 * length of that chunk is remembered in r->skip and those bytes are skipped on redelivery.
 *
 * THREAD SAFETY NOTES
 *
 * None: one loop thread owns a struct httpc and all its transfers. libcurl's threaded
 * resolver runs its own thread but only talks to us through the multi's sockets.
 */
#include "http/httpc.h"
#include "http/httpc_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>

#include <h2o/linklist.h>
#include <h2o/memory.h> /* H2O_STRUCT_FROM_MEMBER */

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"

#define MAX_METHOD_LEN 16 /* the longest standard method is 7 bytes; leave room for extensions */

struct sock {
    uv_poll_t poll;      /* watches fd for libcurl */
    struct httpc *h;     /* owner */
    curl_socket_t fd;    /* the socket libcurl named */
    bool parked;         /* libcurl removed it (pooled connection): poll stopped, fd open */
    h2o_linklist_t link; /* in h->socks */
};

#define HTTPC_SPARE_EASY 64 /* idle easy handles kept for reuse */

struct httpc {
    uv_loop_t *loop;
    CURLM *multi;                  /* NULL once httpc_free ran */
    uv_timer_t timer;              /* libcurl's single timeout (timer_fn) */
    uv_timer_t defer_timer;        /* runs run_deferred() on the next loop turn */
    h2o_linklist_t socks;          /* sock.link: every open poll */
    h2o_linklist_t reqs;           /* curl_req.link: every live transfer */
    h2o_linklist_t defer;          /* curl_req.defer_link: deferred add, cancel or resume, in
                                      the order asked */
    size_t active;                 /* entries in reqs */
    int in_curl;                   /* depth of libcurl calls that may run our callbacks */
    int open_handles;              /* timers and polls not yet closed */
    int freed;                     /* httpc_free ran; the struct goes at open_handles == 0 */
    CURL *spare[HTTPC_SPARE_EASY]; /* reset easy handles kept for the next transfers */
    size_t nspare;
    struct h1 *h1; /* the native transport for loopback http:// URLs */
    bool native;   /* use it (httpc_set_native) */
};

struct curl_req {
    struct httpc_req base; /* first: the public handle */
    struct httpc *h;
    CURL *easy;
    struct curl_slist *headers; /* request headers (libcurl does not copy the list) */
    char *body;                 /* request body copy (libcurl does not copy POSTFIELDS) */
    char *hostport;             /* "host:port" for error sentences, no credentials */
    httpc_done_cb done;
    int (*on_headers)(struct httpc_req *r, int status, void *arg);
    enum httpc_data_result (*on_data)(struct httpc_req *r, const char *p, size_t n, void *arg);
    void *arg;
    uint32_t connect_timeout_ms; /* effective, for sentences */
    uint32_t timeout_ms;
    uint32_t first_byte_timeout_ms;
    uint32_t idle_timeout_ms;
    size_t max_body_bytes;        /* effective cap in buffered mode */
    uv_timer_t timer;             /* first-byte, then idle timeout; valid when has_timer */
    struct buf resp_body;         /* buffered mode: the body so far */
    struct buf resp_headers;      /* "name\0value\0" pairs of the current response */
    size_t skip;                  /* bytes libcurl will offer again that on_data took */
    uint64_t start_ns;            /* when httpc_request ran */
    char errbuf[CURL_ERROR_SIZE]; /* libcurl's own detail for the last error */
    unsigned has_timer : 1;
    unsigned added : 1;           /* in the multi */
    unsigned connected : 1;       /* libcurl reached the request phase (prereq_cb) */
    unsigned headers_done : 1;    /* the final response's header block ended */
    unsigned paused : 1;          /* on_data said HTTPC_PAUSE and no unpause ran yet */
    unsigned finished : 1;        /* done is running or the req is being dropped */
    unsigned cancelled : 1;       /* httpc_cancel ran while inside libcurl */
    unsigned add_pending : 1;     /* httpc_request ran while inside libcurl */
    unsigned resume_pending : 1;  /* httpc_resume ran, unpause not done yet */
    unsigned aborted : 1;         /* a callback said HTTPC_ABORT */
    unsigned body_too_big : 1;    /* buffered body passed max_body_bytes */
    unsigned headers_too_big : 1; /* response headers passed HTTPC_MAX_HEADER_BYTES */
    h2o_linklist_t link;          /* in h->reqs */
    h2o_linklist_t defer_link;    /* in h->defer while linked */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    /* libcurl's global init is not thread-safe in 7.88; pthread_once makes it so for us. */
    CURLcode cc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (cc != CURLE_OK) {
        fprintf(stderr, "httpc: curl_global_init failed: %s\n", curl_easy_strerror(cc));
        abort();
    }
}

static void drive(struct httpc *h, curl_socket_t fd, int ev_bitmask);
static void after_curl(struct httpc *h);

/* ---- handles: the struct httpc goes when its last handle has closed after httpc_free ---- */

static void handle_closed(struct httpc *h)
{
    ASSERT(h->open_handles > 0);
    h->open_handles--;
    if (h->freed && h->open_handles == 0)
        free(h);
}

static void timer_closed_cb(uv_handle_t *t)
{
    handle_closed(t->data);
}

static void sock_closed_cb(uv_handle_t *p)
{
    struct sock *s = p->data;
    struct httpc *h = s->h;
    free(s);
    handle_closed(h);
}

static void sock_close(struct sock *s)
{
    h2o_linklist_unlink(&s->link);
    /* uv_close stops the poll now, so libcurl may hand the same fd number back right away. */
    uv_close((uv_handle_t *)&s->poll, sock_closed_cb);
}

/* ---- libcurl -> libuv ---- */

static void poll_cb(uv_poll_t *p, int status, int events)
{
    struct sock *s = p->data;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    drive(s->h, s->fd, flags);
}

static struct sock *sock_open(struct httpc *h, curl_socket_t fd)
{
    struct sock *s = xcalloc(1, sizeof(*s));
    int rc = uv_poll_init_socket(h->loop, &s->poll, fd);
    if (rc != 0) {
        log_error_errno("httpc", rc, "cannot watch socket %d", (int)fd);
        free(s);
        return NULL;
    }
    s->h = h;
    s->fd = fd;
    s->poll.data = s;
    h2o_linklist_insert(h->socks.next, &s->link); /* the front: sock_find meets new ones first */
    h->open_handles++;
    /* Allowed inside the socket callback: it only stores the pointer in libcurl's hash. */
    curl_multi_assign(h->multi, fd, s);
    return s;
}

static struct sock *sock_find(struct httpc *h, curl_socket_t fd)
{
    for (h2o_linklist_t *node = h->socks.next; node != &h->socks; node = node->next) {
        struct sock *s = H2O_STRUCT_FROM_MEMBER(struct sock, link, node);
        if (s->fd == fd)
            return s;
    }
    return NULL;
}

static int socket_fn(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct httpc *h = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            s->parked = true;
        }
        return 0;
    }
    if (s == NULL) {
        s = sock_find(h, fd);
        if (s != NULL) {
            s->parked = false;
            curl_multi_assign(h->multi, fd, s); /* allowed here: it only stores the pointer */
        } else {
            s = sock_open(h, fd);
        }
    }
    if (s == NULL)
        return -1; /* libcurl marks the multi dead: transfers fail instead of hanging */
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    int rc = uv_poll_start(&s->poll, events, poll_cb);
    if (rc != 0) {
        log_error_errno("httpc", rc, "cannot poll socket %d", (int)fd);
        return -1;
    }
    return 0;
}

/* libcurl closes a socket: drop its poll first, so the fd is out of epoll before the number
 * can be reused. */
static int close_socket_cb(void *clientp, curl_socket_t fd)
{
    struct httpc *h = clientp;
    struct sock *s = sock_find(h, fd);
    if (s != NULL)
        sock_close(s);
    return close(fd);
}

static void curl_timer_cb(uv_timer_t *t)
{
    drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

/* libcurl asks for a call back in timeout_ms (-1: never). Even 0 goes through the uv timer:
 * calling curl_multi_socket_action from here would re-enter libcurl. */
static int timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
    struct httpc *h = userp;
    if (uv_is_closing((uv_handle_t *)&h->timer))
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, curl_timer_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- transfer lifetime ---- */

static void defer(struct curl_req *r)
{
    if (!h2o_linklist_is_linked(&r->defer_link))
        h2o_linklist_insert(&r->h->defer, &r->defer_link);
}

static void undefer(struct curl_req *r)
{
    if (h2o_linklist_is_linked(&r->defer_link))
        h2o_linklist_unlink(&r->defer_link);
}

static void req_timer_closed_cb(uv_handle_t *t)
{
    free(t->data);
}

/* Frees everything of a transfer that is out of the multi. The only place a req is freed. */
static void release(struct curl_req *r)
{
    struct httpc *h = r->h;
    ASSERT(!r->added);
    undefer(r);
    h2o_linklist_unlink(&r->link);
    h->active--;
    if (h->nspare < HTTPC_SPARE_EASY && !h->freed) {
        /* Creating and destroying a handle per request showed in the gateway's profile. */
        curl_easy_reset(r->easy);
        h->spare[h->nspare++] = r->easy;
    } else {
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r->hostport);
    buf_cleanup(&r->resp_body);
    buf_cleanup(&r->resp_headers);
    if (r->has_timer)
        uv_close((uv_handle_t *)&r->timer, req_timer_closed_cb);
    else
        free(r);
}

/* Takes the transfer out of the multi. early: it did not finish by libcurl's account, so its
 * connection must not go back to the pool. */
static void detach(struct curl_req *r, int early)
{
    if (r->has_timer)
        uv_timer_stop(&r->timer);
    if (!r->added)
        return;
    if (early)
        curl_easy_setopt(r->easy, CURLOPT_FORBID_REUSE, 1L);
    CURLMcode mc = curl_multi_remove_handle(r->h->multi, r->easy);
    ASSERT(mc == CURLM_OK); /* we are never inside a libcurl callback here */
    r->added = 0;
}

static void fill_result(struct curl_req *r, int err, const char *text, struct httpc_result *res)
{
    long code = 0, connects = 0;
    double connect_s = 0, ttfb_s = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_getinfo(r->easy, CURLINFO_CONNECT_TIME, &connect_s);
    curl_easy_getinfo(r->easy, CURLINFO_STARTTRANSFER_TIME, &ttfb_s);
    *res = (struct httpc_result){
        .error = err,
        .error_text = err != 0 ? text : NULL,
        .status = (int)code,
        .body = r->on_data == NULL ? buf_cstr(&r->resp_body) : NULL,
        .body_len = r->on_data == NULL ? r->resp_body.len : 0,
        .connect_s = connect_s,
        .ttfb_s = ttfb_s,
        .total_s = (double)(clock_mono_ns() - r->start_ns) / 1e9,
        .new_connects = connects,
    };
}

/* Ends a transfer with done. text is a heap sentence (or NULL when err is 0), freed here. */
static void complete(struct curl_req *r, int err, char *text)
{
    struct httpc_result res;
    ASSERT(r->h->in_curl == 0);
    ASSERT(!r->finished);
    r->finished = 1;
    detach(r, err != 0);
    fill_result(r, err, text, &res);
    r->done(&r->base, &res, r->arg);
    free(text);
    release(r);
}

/* Ends a transfer without done (cancel, httpc_free). */
static void drop(struct curl_req *r)
{
    r->finished = 1;
    detach(r, 1);
    release(r);
}

/* ---- CURLcode -> -errno and a sentence, once, here ---- */

static const char *detail(struct curl_req *r, CURLcode cc)
{
    return r->errbuf[0] != '\0' ? r->errbuf : curl_easy_strerror(cc);
}

static int map_write_error(struct curl_req *r, char **text)
{
    if (r->body_too_big) {
        *text =
            xasprintf("response body from %s exceeds %zu bytes", r->hostport, r->max_body_bytes);
        return -E2BIG;
    }
    if (r->headers_too_big) {
        *text = xasprintf("response headers from %s exceed %u bytes", r->hostport,
                          (unsigned)HTTPC_MAX_HEADER_BYTES);
        return -EPROTO;
    }
    if (r->aborted) {
        *text = xasprintf("transfer from %s aborted by its reader", r->hostport);
        return -ECONNABORTED;
    }
    *text = xasprintf("transfer from %s failed writing the response", r->hostport);
    return -EIO;
}

static int map_connect_error(struct curl_req *r, CURLcode cc, char **text)
{
    long os_errno = 0;
    curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
    if (os_errno == ECONNREFUSED) {
        *text = xasprintf("connection refused: %s", r->hostport);
        return -ECONNREFUSED;
    }
    if (os_errno == 0) {
        *text = xasprintf("cannot connect to %s: %s", r->hostport, detail(r, cc));
        return -EHOSTUNREACH;
    }
    *text = xasprintf("cannot connect to %s: %s", r->hostport, strerror((int)os_errno));
    return -(int)os_errno;
}

static int map_timeout(struct curl_req *r, char **text)
{
    if (!r->connected) {
        uint32_t ms = r->connect_timeout_ms;
        if (r->timeout_ms != 0 && r->timeout_ms < ms)
            ms = r->timeout_ms;
        *text = xasprintf("cannot connect to %s within %u ms", r->hostport, ms);
    } else if (!r->headers_done) {
        *text = xasprintf("no response headers from %s within %u ms", r->hostport, r->timeout_ms);
    } else {
        *text = xasprintf("response from %s took longer than %u ms", r->hostport, r->timeout_ms);
    }
    return -ETIMEDOUT;
}

static int map_curl_error(struct curl_req *r, CURLcode cc, char **text)
{
    switch (cc) {
    case CURLE_WRITE_ERROR:
        return map_write_error(r, text);
    case CURLE_FILESIZE_EXCEEDED:
        r->body_too_big = 1;
        return map_write_error(r, text);
    case CURLE_COULDNT_CONNECT:
        return map_connect_error(r, cc, text);
    case CURLE_OPERATION_TIMEDOUT:
        return map_timeout(r, text);
    case CURLE_COULDNT_RESOLVE_HOST:
        *text = xasprintf("cannot resolve the host of %s: %s", r->hostport, detail(r, cc));
        return -EHOSTUNREACH;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        *text = xasprintf("connection to %s reset: %s", r->hostport, detail(r, cc));
        return -ECONNRESET;
    case CURLE_GOT_NOTHING:
        *text = xasprintf("%s closed the connection without answering", r->hostport);
        return -ECONNRESET;
    case CURLE_PARTIAL_FILE:
        *text = xasprintf("%s closed the connection before the end of the response", r->hostport);
        return -ECONNRESET;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_UNSUPPORTED_PROTOCOL:
        *text = xasprintf("malformed response from %s: %s", r->hostport, detail(r, cc));
        return -EPROTO;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
        *text = xasprintf("TLS with %s failed: %s", r->hostport, detail(r, cc));
        return -EPROTO;
    default:
        *text = xasprintf("request to %s failed: %s", r->hostport, detail(r, cc));
        return -EIO;
    }
}

/* A transfer libcurl finished (result cc), or one whose unpause failed. */
static void finish_curl(struct curl_req *r, CURLcode cc)
{
    char *text = NULL;
    if (r->cancelled) {
        drop(r);
        return;
    }
    int err = cc == CURLE_OK ? 0 : map_curl_error(r, cc, &text);
    complete(r, err, text);
}

static void process_done(struct httpc *h)
{
    CURLMsg *msg;
    int left;
    /* done may call httpc_free: then the multi is gone and so are the other messages. */
    while (h->multi != NULL && (msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* The result must be read before curl_multi_remove_handle frees the message. */
        CURLcode cc = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        finish_curl((struct curl_req *)priv, cc);
    }
}

/* ---- pause / resume ---- */

static void arm_timer(struct curl_req *r, uint32_t ms);
static void req_timer_cb(uv_timer_t *t);

static void unpause(struct curl_req *r)
{
    struct httpc *h = r->h;
    r->paused = 0;
    if (r->idle_timeout_ms != 0)
        arm_timer(r, r->idle_timeout_ms);
    /* This may run on_data at once with what libcurl held back. */
    h->in_curl++;
    CURLcode cc = curl_easy_pause(r->easy, CURLPAUSE_CONT);
    h->in_curl--;
    /* A cancelled transfer is still on the defer list; run_deferred drops it. */
    if (cc != CURLE_OK && !r->cancelled)
        finish_curl(r, cc);
}

static void run_deferred(struct httpc *h)
{
    /* Work that this defers again (a resume from on_data) joins the end and runs in this pass. */
    while (!h->freed && !h2o_linklist_is_empty(&h->defer)) {
        struct curl_req *r = H2O_STRUCT_FROM_MEMBER(struct curl_req, defer_link, h->defer.next);
        h2o_linklist_unlink(&r->defer_link);
        if (r->cancelled) {
            drop(r);
        } else if (r->add_pending) {
            r->add_pending = 0;
            CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
            if (mc != CURLM_OK) {
                complete(r, -EIO,
                         xasprintf("cannot start a request to %s: %s", r->hostport,
                                   curl_multi_strerror(mc)));
                continue;
            }
            r->added = 1;
        } else if (r->resume_pending) {
            r->resume_pending = 0;
            if (r->paused)
                unpause(r);
        }
    }
}

static void defer_timer_cb(uv_timer_t *t)
{
    run_deferred(t->data);
}

/* After every libcurl call that may have finished transfers or queued deferred work. */
static void after_curl(struct httpc *h)
{
    if (h->in_curl > 0)
        return; /* the outermost call does it */
    process_done(h);
    run_deferred(h);
}

static void drive(struct httpc *h, curl_socket_t fd, int ev_bitmask)
{
    int running = 0;
    h->in_curl++;
    CURLMcode mc = curl_multi_socket_action(h->multi, fd, ev_bitmask, &running);
    h->in_curl--;
    if (mc != CURLM_OK)
        log_warn("httpc", "curl_multi_socket_action: %s", curl_multi_strerror(mc));
    after_curl(h);
}

/* ---- per-transfer timeouts: first byte, then idle ---- */

static void arm_timer(struct curl_req *r, uint32_t ms)
{
    if (!r->has_timer) {
        uv_timer_init(r->h->loop, &r->timer);
        r->timer.data = r;
        r->has_timer = 1;
    }
    uv_timer_start(&r->timer, req_timer_cb, ms, 0);
}

static void req_timer_cb(uv_timer_t *t)
{
    struct curl_req *r = t->data;
    char *text;
    if (!r->headers_done)
        text = xasprintf("no response headers from %s within %u ms", r->hostport,
                         r->first_byte_timeout_ms);
    else
        text = xasprintf("no data from %s for %u ms", r->hostport, r->idle_timeout_ms);
    complete(r, -ETIMEDOUT, text);
}

/* ---- libcurl callbacks (no curl_multi_* in here) ---- */

static int prereq_cb(void *userp, char *conn_primary_ip, char *conn_local_ip, int primary_port,
                     int local_port)
{
    struct curl_req *r = userp;
    r->connected = 1;
    return CURL_PREREQFUNC_OK;
}

static int store_header(struct curl_req *r, const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    if (colon == NULL || colon == p)
        return 0; /* folded or malformed lines are not kept; libcurl already judged the reply */
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return httpc_store_header(&r->resp_headers, p, (size_t)(colon - p), v, (size_t)(end - v));
}

static void headers_complete(struct curl_req *r, int status)
{
    r->headers_done = 1;
    if (r->idle_timeout_ms != 0)
        arm_timer(r, r->idle_timeout_ms);
    else if (r->has_timer)
        uv_timer_stop(&r->timer);
    if (r->on_headers != NULL && r->on_headers(&r->base, status, r->arg) == HTTPC_ABORT)
        r->aborted = 1;
}

static size_t header_cb(char *p, size_t size, size_t nitems, void *userp)
{
    struct curl_req *r = userp;
    size_t n = size * nitems;
    if (r->cancelled || r->headers_done)
        return r->cancelled ? 0 : n; /* after the header block: trailers, not kept */
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        buf_reset(&r->resp_headers); /* a new response: 1xx before, or the final one */
        return n;
    }
    if (n <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        long code = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 100 && code < 200)
            return n; /* interim response: the final one follows */
        headers_complete(r, (int)code);
        return r->cancelled || r->aborted ? 0 : n;
    }
    if (store_header(r, p, n) != 0) {
        r->headers_too_big = 1;
        return 0;
    }
    return n;
}

static size_t write_cb(char *p, size_t size, size_t nitems, void *userp)
{
    struct curl_req *r = userp;
    size_t total = size * nitems, n = total;
    if (r->cancelled)
        return 0;
    if (r->skip > 0) {
        size_t k = r->skip < n ? r->skip : n;
        r->skip -= k;
        p += k;
        n -= k;
        if (n == 0)
            return total;
    }
    if (r->idle_timeout_ms != 0)
        arm_timer(r, r->idle_timeout_ms);
    if (r->on_data == NULL) {
        if (buf_append(&r->resp_body, p, n) == 0)
            return total;
        r->body_too_big = 1;
        return 0;
    }
    enum httpc_data_result dr = r->on_data(&r->base, p, n, r->arg);
    if (r->cancelled)
        return 0;
    switch (dr) {
    case HTTPC_CONTINUE:
        return total;
    case HTTPC_PAUSE:
        /* libcurl keeps this whole chunk and offers it again after the unpause. */
        r->paused = 1;
        r->skip = total;
        if (r->has_timer)
            uv_timer_stop(&r->timer); /* a reader that pauses is not an idle upstream */
        return CURL_WRITEFUNC_PAUSE;
    case HTTPC_ABORT:
    default:
        r->aborted = 1;
        return 0;
    }
}

/* ---- request setup ---- */

/* An endpoint's parts: a host of letters, digits, '.', '-' and ':' (an IPv6 address without
 * brackets), a port, an origin-form path of visible ASCII without a fragment. */
static int check_endpoint(const struct httpc_endpoint *to)
{
    if (to->host == NULL || to->host[0] == '\0' || to->port == 0 || to->path == NULL ||
        to->path[0] != '/' || strlen(to->host) > HTTPC_MAX_HOST)
        return -EINVAL;
    for (const char *c = to->host; *c != '\0'; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '-' || *c == ':'))
            return -EINVAL;
    }
    for (const char *c = to->path; *c != '\0'; c++) {
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f || *c == '#')
            return -EINVAL;
    }
    return 0;
}

int httpc_check_opts(const struct httpc_opts *o)
{
    if (o->url == NULL && check_endpoint(&o->to) != 0)
        return -EINVAL;
    if (o->body == NULL && o->body_len > 0)
        return -EINVAL;
    if (o->body_len > HTTPC_MAX_REQUEST_BODY)
        return -E2BIG;
    if (o->nheaders > HTTPC_MAX_REQUEST_HEADERS || (o->nheaders > 0 && o->headers == NULL))
        return -EINVAL;
    for (size_t i = 0; i < o->nheaders; i++) {
        /* A CR or LF would let one header smuggle others (or a second request). */
        if (o->headers[i] == NULL || strpbrk(o->headers[i], "\r\n") != NULL)
            return -EINVAL;
    }
    if (o->method != NULL) {
        size_t len = strlen(o->method);
        if (len == 0 || len > MAX_METHOD_LEN)
            return -EINVAL;
        for (size_t i = 0; i < len; i++) {
            if (o->method[i] < 'A' || o->method[i] > 'Z')
                return -EINVAL;
        }
    }
    return 0;
}

static int is_loopback(const char *host)
{
    return strcasecmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0;
}

/* Parses the URL for what the error sentences name. Returns 0 or -EINVAL. */
static int parse_url(const char *url, char **hostport, int *loopback)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = -EINVAL;
    if (u == NULL)
        abort(); /* out of memory */
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        goto out;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    *hostport = xasprintf("%s:%s", host, port);
    *loopback = is_loopback(host);
    rc = 0;
out:
    curl_free(port);
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

static struct curl_slist *build_headers(const struct httpc_opts *o)
{
    struct curl_slist *list = NULL;
    int has_expect = 0;
    for (size_t i = 0; i < o->nheaders; i++) {
        list = curl_slist_append(list, o->headers[i]);
        if (list == NULL)
            abort(); /* out of memory */
        if (strncasecmp(o->headers[i], "Expect:", 7) == 0)
            has_expect = 1;
    }
    if (!has_expect && o->body != NULL) {
        /* libcurl waits up to 1 s for "100 Continue" on big bodies; engines never need it. */
        list = curl_slist_append(list, "Expect:");
        if (list == NULL)
            abort();
    }
    return list;
}

static int set_method(struct curl_req *r, const struct httpc_opts *o)
{
    CURL *e = r->easy;
    int bad = 0;
    if (o->body != NULL) {
        r->body = xmalloc(o->body_len + 1);
        memcpy(r->body, o->body, o->body_len);
        r->body[o->body_len] = '\0';
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len) != 0;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body) != 0;
        if (o->method != NULL && strcmp(o->method, "POST") != 0)
            bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method) != 0;
    } else if (o->method == NULL || strcmp(o->method, "GET") == 0) {
        bad |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != 0;
    } else if (strcmp(o->method, "HEAD") == 0) {
        bad |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L) != 0;
    } else if (strcmp(o->method, "POST") == 0) {
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0) != 0;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, "") != 0;
    } else {
        bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method) != 0;
    }
    return bad ? -EINVAL : 0;
}

static int setup_easy(struct curl_req *r, const struct httpc_opts *o, int loopback)
{
    CURL *e = r->easy;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, o->url) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != 0;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket_cb) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, r->h) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) != 0;
    /* Streams can sit idle for minutes while a model loads; let the kernel notice dead peers. */
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)r->connect_timeout_ms) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, r) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq_cb) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_PREREQDATA, r) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers) != 0;
    if (loopback) /* env proxies stay for remote engines, but never for our own machine */
        bad |= curl_easy_setopt(e, CURLOPT_PROXY, "") != 0;
    if (r->on_data == NULL) /* refuse a too-long Content-Length before reading the body */
        bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body_bytes) != 0;
    if (bad)
        return -EINVAL;
    return set_method(r, o);
}

static struct curl_req *req_new(struct httpc *h, const struct httpc_opts *o, httpc_done_cb done,
                                char *hostport)
{
    struct curl_req *r = xcalloc(1, sizeof(*r));
    r->base.transport = HTTPC_TRANSPORT_CURL;
    r->h = h;
    r->easy = h->nspare > 0 ? h->spare[--h->nspare] : curl_easy_init();
    if (r->easy == NULL)
        abort(); /* out of memory */
    r->hostport = hostport;
    r->done = done;
    r->on_headers = o->on_headers;
    r->on_data = o->on_data;
    r->arg = o->arg;
    r->connect_timeout_ms =
        o->connect_timeout_ms ? o->connect_timeout_ms : HTTPC_CONNECT_TIMEOUT_MS;
    r->timeout_ms = o->timeout_ms;
    r->first_byte_timeout_ms = o->first_byte_timeout_ms;
    r->idle_timeout_ms = o->idle_timeout_ms;
    r->max_body_bytes = o->max_body_bytes ? o->max_body_bytes : HTTPC_MAX_BODY_BYTES;
    buf_init(&r->resp_body, r->max_body_bytes);
    buf_init(&r->resp_headers, HTTPC_MAX_HEADER_BYTES);
    r->headers = build_headers(o);
    r->start_ns = clock_mono_ns();
    return r;
}

/* Frees a req that never reached the multi or the list (setup failed). */
static void req_discard(struct curl_req *r)
{
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r->hostport);
    buf_cleanup(&r->resp_headers);
    buf_cleanup(&r->resp_body);
    free(r);
}

/* ---- public ---- */

struct httpc *httpc_new(uv_loop_t *loop)
{
    pthread_once(&global_once, global_init);
    struct httpc *h = xcalloc(1, sizeof(*h));
    h->loop = loop;
    h2o_linklist_init_anchor(&h->socks);
    h2o_linklist_init_anchor(&h->reqs);
    h2o_linklist_init_anchor(&h->defer);
    h->multi = curl_multi_init();
    if (h->multi == NULL)
        abort(); /* out of memory */
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_fn);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)HTTPC_MAX_CONNECTS);
    h->h1 = h1_new(loop);
    h->native = true;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_timer_init(loop, &h->defer_timer);
    h->defer_timer.data = h;
    h->open_handles = 2;
    return h;
}

void httpc_free(struct httpc *h)
{
    if (h == NULL)
        return;
    ASSERT(!h->freed);
    ASSERT(h->in_curl == 0); /* not from on_headers/on_data */
    h->freed = 1;
    h1_free(h->h1);
    h->h1 = NULL;
    /* A req whose done is running (httpc_free called from done) is released by complete(). */
    h2o_linklist_t *node = h->reqs.next;
    while (node != &h->reqs) {
        struct curl_req *r = H2O_STRUCT_FROM_MEMBER(struct curl_req, link, node);
        node = node->next; /* drop frees r, and only r */
        if (!r->finished)
            drop(r);
    }
    /* Closes the pooled connections; their sockets are no longer watched, but any that still
     * are get CURL_POLL_REMOVE through socket_fn. */
    while (h->nspare > 0)
        curl_easy_cleanup(h->spare[--h->nspare]);
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while (!h2o_linklist_is_empty(&h->socks))
        sock_close(H2O_STRUCT_FROM_MEMBER(struct sock, link, h->socks.next));
    uv_close((uv_handle_t *)&h->timer, timer_closed_cb);
    uv_close((uv_handle_t *)&h->defer_timer, timer_closed_cb);
}

int httpc_request(struct httpc *h, const struct httpc_opts *o, httpc_done_cb done,
                  struct httpc_req **out)
{
    char *hostport = NULL;
    int loopback = 0;
    ASSERT(done != NULL);
    if (h->freed)
        return -ESHUTDOWN;
    int rc = httpc_check_opts(o);
    if (rc != 0)
        return rc;
    if (h->native) {
        rc = h1_request(h->h1, o, done, out);
        if (rc != -EAFNOSUPPORT)
            return rc;
    }
    /* An endpoint libcurl is to reach (a name, or the native transport off) as the URL it
     * takes; the only place one is built. */
    struct httpc_opts oc = *o;
    char *built = NULL;
    if (o->url == NULL) {
        bool v6 = strchr(o->to.host, ':') != NULL;
        oc.url = built = xasprintf("http://%s%s%s:%u%s", v6 ? "[" : "", o->to.host, v6 ? "]" : "",
                                   (unsigned)o->to.port, o->to.path);
    }
    rc = parse_url(oc.url, &hostport, &loopback);
    if (rc != 0) {
        free(built);
        return rc;
    }
    struct curl_req *r = req_new(h, &oc, done, hostport);
    rc = setup_easy(r, &oc, loopback);
    free(built); /* libcurl copied it (CURLOPT_URL) */
    if (rc != 0) {
        req_discard(r);
        return rc;
    }
    if (h->in_curl > 0) {
        r->add_pending = 1; /* libcurl refuses curl_multi_add_handle from its callbacks */
        defer(r);
    } else {
        CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
        if (mc != CURLM_OK) {
            log_warn("httpc", "curl_multi_add_handle: %s", curl_multi_strerror(mc));
            req_discard(r);
            return -EIO;
        }
        r->added = 1;
    }
    h2o_linklist_insert(&h->reqs, &r->link);
    h->active++;
    if (r->first_byte_timeout_ms != 0)
        arm_timer(r, r->first_byte_timeout_ms);
    if (out != NULL)
        *out = &r->base;
    return 0;
}

/* The public functions take either transport's request. */
static struct curl_req *curl_of(struct httpc_req *pub)
{
    ASSERT(pub->transport == HTTPC_TRANSPORT_CURL);
    return (struct curl_req *)pub;
}

void httpc_resume(struct httpc_req *pub)
{
    if (pub->transport == HTTPC_TRANSPORT_H1) {
        h1_resume(pub);
        return;
    }
    struct curl_req *r = curl_of(pub);
    if (r->finished || r->cancelled)
        return;
    r->resume_pending = 1;
    defer(r);
    /* Not now: the caller may be in the middle of something that on_data would disturb. */
    uv_timer_start(&r->h->defer_timer, defer_timer_cb, 0, 0);
}

void httpc_cancel(struct httpc_req *pub)
{
    if (pub == NULL)
        return;
    if (pub->transport == HTTPC_TRANSPORT_H1) {
        h1_cancel(pub);
        return;
    }
    struct curl_req *r = curl_of(pub);
    if (r->finished || r->cancelled)
        return;
    if (r->h->in_curl > 0) {
        r->cancelled = 1; /* write_cb/header_cb refuse further data; run_deferred drops it */
        defer(r);
        return;
    }
    drop(r);
}

const char *httpc_header(struct httpc_req *pub, const char *name)
{
    if (pub->transport == HTTPC_TRANSPORT_H1)
        return h1_header(pub, name);
    return httpc_find_header(&curl_of(pub)->resp_headers, name);
}

int httpc_store_header(struct buf *b, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    /* One reservation, so the four appends below never grow the storage (this runs for every
     * field of every response). */
    static const char nul = '\0';
    int rc = buf_reserve(b, name_len + value_len + 2);
    if (rc != 0)
        return rc;
    buf_append(b, name, name_len);
    buf_append(b, &nul, 1);
    buf_append(b, value, value_len);
    buf_append(b, &nul, 1);
    return 0;
}

const char *httpc_find_header(const struct buf *b, const char *name)
{
    const char *p = b->data;
    if (p == NULL)
        return NULL;
    const char *end = p + b->len;
    while (p < end) {
        const char *v = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

size_t httpc_active(const struct httpc *h)
{
    return h->active + (h->h1 != NULL ? h1_active(h->h1) : 0);
}

size_t httpc_idle(const struct httpc *h)
{
    return h->h1 != NULL ? h1_idle(h->h1) : 0;
}

int httpc_prewarm(struct httpc *h, const struct httpc_endpoint *to, unsigned max)
{
    if (h->freed)
        return -ESHUTDOWN;
    struct httpc_endpoint e = *to;
    if (e.path == NULL)
        e.path = "/";
    if (check_endpoint(&e) != 0)
        return -EINVAL;
    if (!h->native)
        return -EAFNOSUPPORT;
    return h1_prewarm(h->h1, &e, max);
}

void httpc_set_native(struct httpc *h, bool on)
{
    h->native = on;
}
