/*
 * pg_listen.c: a shared store's notices (store_int.h, store.h store_listen): one PostgreSQL
 * connection of its own, driven by the loop with libpq's asynchronous API only, that LISTENs on
 * arun_events and arun_keys and hands each notice to the store's callback. It owns that
 * connection, its uv handles and the reconnecting; it never reads or writes a table.
 *
 * DESIGN
 * A small state machine, one setter (set_state) and one way down (lose):
 *   WAITING    no connection; the timer fires the next attempt (backoff, jittered)
 *   RESOLVING  the host name is being resolved by uv_getaddrinfo (libpq would block on it)
 *   CONNECTING PQconnectStartParams done; PQconnectPoll runs on each readiness of PQsocket
 *   LISTENING  connected and non-blocking; "LISTEN arun_events; LISTEN arun_keys" sent, its
 *              results read with PQconsumeInput + PQgetResult (only when PQisBusy is 0)
 *   UP         PQconsumeInput + PQnotifies on each readable event
 * Any failure (PQconnectPoll failed, PQconsumeInput failed, a bad status, a socket error or
 * hang-up, no answer within CONNECT_TIMEOUT_MS) closes the connection, logs once per outage at
 * warn with libpq's reason (host and port at most: never the URL, which may carry a password)
 * and goes back to WAITING. Each time LISTEN becomes active, STORE_NOTICE_RESYNC is delivered:
 * notices committed while nobody listened are lost, so followers re-read. The first time
 * included: what was committed between store_listen and the first LISTEN was missed as well.
 *
 * The socket can change during a connect (libpq tries the next address, or retries without
 * SSL), so each readiness re-reads PQsocket and, when it moved, closes the old uv_poll and opens
 * a new one. Poll handles are heap objects freed by their close callback, and the poll is always
 * closed before PQfinish closes its descriptor (libuv: never close an fd being polled).
 *
 * THREAD SAFETY NOTES
 * Loop thread only. The callback may call pg_listen_stop: after each callback the dispatch loop
 * checks `stopping` before touching the connection again; the struct itself is freed only from
 * a close callback, never while a callback runs.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uv.h>

#include "core/buf.h"
#include "core/log.h"
#include "store/store_int.h"

#define BACKOFF_FIRST_MS 100 /* the first retry after a loss: a restarted server is often back */
#define BACKOFF_MAX_MS 5000  /* then doubling up to this: an outage costs one attempt per 5 s */
/* libpq ignores connect_timeout under PQconnectPoll ("the application's responsibility"): a
 * connect plus LISTEN that has not finished in this long is abandoned and retried. */
#define CONNECT_TIMEOUT_MS 10000
/* TCP keepalives notice a server that vanished without closing (a partition, a powered-off
 * host): the listener never writes, so without them it would wait forever. 5 + 3 x 2 s. */
#define KEEPALIVE_IDLE_S "5"
#define KEEPALIVE_INTERVAL_S "2"
#define KEEPALIVE_COUNT "3"
#define TCP_USER_TIMEOUT_MS "10000" /* unacknowledged data (the LISTEN) for this long: dead */
#define REASON_MAX 200              /* bytes of a loss's reason in the log */
#define LINE_MAX_BYTES 256          /* a "TENANT ID" line: tenant <= 64, id <= 64 bytes */

#define MOD "store"
#define PG_LISTEN_APP_NAME "arun notices" /* in pg_stat_activity, unless the URL names one */
#define RESOLVED_MAX 4 /* addresses of a host name tried, like libpq tries each in turn */

enum state { WAITING, RESOLVING, CONNECTING, LISTENING, UP };

struct pg_listen {
    uv_loop_t *loop;
    char *url; /* never logged: it may carry a password */
    store_notice_cb cb;
    void *arg;
    enum state state;        /* written by set_state only */
    PGconn *pg;              /* NULL in WAITING and RESOLVING */
    uv_poll_t *poll;         /* watches poll_fd; NULL when none */
    int poll_fd;             /* the descriptor poll watches */
    int poll_events;         /* the events it watches now */
    uv_timer_t timer;        /* WAITING: the next attempt; else the connect deadline */
    uv_getaddrinfo_t gai;    /* RESOLVING */
    bool gai_busy;           /* gai is in flight (it holds the struct alive) */
    char *host;              /* the URL's single host name to resolve, or NULL */
    char *hosts;             /* once resolved: "host,host,..." as many as addresses, else NULL */
    char *hostaddrs;         /* and its addresses "a1,a2,...", for libpq's host/hostaddr */
    uint32_t backoff_ms;     /* the next wait in WAITING, before jitter */
    bool down_logged;        /* this outage was logged at warn already */
    uint64_t down_since_ms;  /* when this outage began (loop time), 0 while up */
    char notice[REASON_MAX]; /* the last message the server sent outside a query (FATAL: ...) */
    bool stopping;
    int handles; /* open uv handles and requests; the struct is freed when 0 while stopping */
};

static void start_attempt(struct pg_listen *l);
static void watch(struct pg_listen *l, int events);

static const char *state_name(enum state s)
{
    static const char *const names[] = {"waiting", "resolving", "connecting", "listening", "up"};
    return names[s];
}

/* The only writer of l->state. */
static void set_state(struct pg_listen *l, enum state s)
{
    log_debug(MOD, "notices: %s -> %s", state_name(l->state), state_name(s));
    l->state = s;
}

static void maybe_free(struct pg_listen *l)
{
    if (!l->stopping || l->handles > 0)
        return;
    free(l->host);
    free(l->hosts);
    free(l->hostaddrs);
    free(l->url);
    free(l);
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct pg_listen *l = h->data;

    if (h != (uv_handle_t *)&l->timer)
        free(h);
    l->handles--;
    maybe_free(l);
}

/* libpq's messages end with a newline and may span lines: one line, at most REASON_MAX. */
static void one_line(char *out, size_t cap, const char *msg)
{
    size_t n = 0;

    for (const char *p = msg != NULL ? msg : ""; *p != '\0' && n + 1 < cap; p++)
        out[n++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* A server message outside a query (the FATAL of pg_terminate_backend, a shutdown): libpq
 * would print it on stderr; it is kept as the likely reason of the loss that follows. */
static void notice_processor(void *arg, const char *msg)
{
    struct pg_listen *l = arg;

    one_line(l->notice, sizeof l->notice, msg);
    log_debug(MOD, "notices: the server says: %s", l->notice);
}

static void close_poll(struct pg_listen *l)
{
    if (l->poll == NULL)
        return;
    uv_close((uv_handle_t *)l->poll, handle_closed_cb);
    l->poll = NULL;
    l->poll_events = 0;
}

/* Closes the connection, poll first (its descriptor must outlive the watch). */
static void close_conn(struct pg_listen *l)
{
    close_poll(l);
    if (l->pg != NULL)
        PQfinish(l->pg);
    l->pg = NULL;
}

/* 100 ms doubling to 5 s; each wait drawn in [half, whole] so that nodes that lost the server
 * together do not knock together. */
static uint64_t next_delay_ms(struct pg_listen *l)
{
    uint32_t d = l->backoff_ms;
    uint32_t r = 0;

    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        r = (uint32_t)uv_now(l->loop) * 2654435761u;
    l->backoff_ms = d * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d * 2;
    return d / 2 + r % (d / 2 + 1);
}

static void retry_cb(uv_timer_t *t)
{
    start_attempt(t->data);
}

/* The way down from any state: closes, logs (once an outage) and waits for the next attempt. */
static void lose(struct pg_listen *l, const char *what, const char *detail)
{
    char reason[REASON_MAX];

    /* The server's own word (FATAL: terminating connection due to administrator command) says
     * more than libpq's "server closed the connection unexpectedly" that follows it. */
    one_line(reason, sizeof reason, l->notice[0] != '\0' ? l->notice : detail);
    if (!l->down_logged)
        log_warn(MOD,
                 "PostgreSQL notices (LISTEN) %s: %s; reconnecting in the background, "
                 "runs followed on this node are re-read once back",
                 what, reason[0] != '\0' ? reason : "no reason given");
    else
        log_debug(MOD, "notices: still down, %s: %s", what, reason);
    l->down_logged = true;
    if (l->down_since_ms == 0)
        l->down_since_ms = uv_now(l->loop) + 1;
    close_conn(l);
    l->notice[0] = '\0';
    set_state(l, WAITING);
    uv_timer_start(&l->timer, retry_cb, next_delay_ms(l), 0);
}

static void timeout_cb(uv_timer_t *t)
{
    lose(t->data, "timed out connecting", "no answer from the server");
}

/* ---- UP: notices --------------------------------------------------------------------------- */

/* arun_events' payload: lines "TENANT ID" (store_int.h); a malformed line is skipped. Returns
 * false when the callback stopped the listener. */
static bool deliver_events(struct pg_listen *l, const char *payload)
{
    const char *p = payload;

    while (*p != '\0') {
        const char *end = strchr(p, '\n');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        char line[LINE_MAX_BYTES];
        char *sp;

        if (n > 0 && n < sizeof line) {
            memcpy(line, p, n);
            line[n] = '\0';
            sp = strchr(line, ' ');
            if (sp != NULL && sp != line && sp[1] != '\0') {
                *sp = '\0';
                l->cb(STORE_NOTICE_EVENTS, line, sp + 1, l->arg);
                if (l->stopping)
                    return false;
            } else {
                log_debug(MOD, "notices: a malformed line skipped (%zu bytes)", n);
            }
        }
        p += n + (end != NULL);
    }
    return true;
}

/* Hands every notice libpq has parsed to the callback, in the order they were committed. */
static void drain_notifies(struct pg_listen *l)
{
    PGnotify *n;

    while (!l->stopping && l->pg != NULL && (n = PQnotifies(l->pg)) != NULL) {
        if (strcmp(n->relname, "arun_events") == 0)
            deliver_events(l, n->extra);
        else if (strcmp(n->relname, "arun_keys") == 0)
            l->cb(STORE_NOTICE_KEYS, NULL, NULL, l->arg);
        PQfreemem(n);
    }
}

static void on_up_event(struct pg_listen *l, int events)
{
    bool ok = PQconsumeInput(l->pg) == 1;

    drain_notifies(l); /* what arrived before a loss is still delivered */
    if (l->stopping || l->state != UP)
        return;
    if (!ok || PQstatus(l->pg) != CONNECTION_OK)
        lose(l, "connection lost", PQerrorMessage(l->pg));
    else if (events & UV_DISCONNECT)
        lose(l, "connection lost", "the server closed the connection");
}

/* ---- LISTENING: the LISTEN's results ------------------------------------------------------ */

static void became_up(struct pg_listen *l)
{
    uv_timer_stop(&l->timer);
    if (l->down_logged)
        log_info(MOD, "PostgreSQL notices (LISTEN) are back after %llu ms",
                 (unsigned long long)(uv_now(l->loop) + 1 - l->down_since_ms));
    l->down_logged = false;
    l->down_since_ms = 0;
    l->backoff_ms = BACKOFF_FIRST_MS;
    set_state(l, UP);
    watch(l, UV_READABLE | UV_DISCONNECT);
    if (l->state != UP)
        return;
    l->cb(STORE_NOTICE_RESYNC, NULL, NULL, l->arg);
    if (!l->stopping && l->state == UP)
        drain_notifies(l);
}

/* Reads the LISTEN's results without blocking: PQgetResult only while PQisBusy is 0. */
static void on_listening_event(struct pg_listen *l, int events)
{
    int flushed = PQflush(l->pg);

    if (flushed < 0 || PQconsumeInput(l->pg) != 1) {
        lose(l, "could not LISTEN", PQerrorMessage(l->pg));
        return;
    }
    while (!PQisBusy(l->pg)) {
        PGresult *res = PQgetResult(l->pg);
        if (res == NULL) {
            became_up(l);
            return;
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            char why[REASON_MAX];
            one_line(why, sizeof why, PQresultErrorMessage(res));
            PQclear(res);
            lose(l, "could not LISTEN", why);
            return;
        }
        PQclear(res);
    }
    if (events & UV_DISCONNECT) {
        lose(l, "could not LISTEN", "the server closed the connection");
        return;
    }
    watch(l, UV_READABLE | UV_DISCONNECT | (flushed == 1 ? UV_WRITABLE : 0));
}

static void send_listen(struct pg_listen *l)
{
    if (PQsetnonblocking(l->pg, 1) != 0 ||
        PQsendQuery(l->pg, "LISTEN arun_events; LISTEN arun_keys") != 1) {
        lose(l, "could not LISTEN", PQerrorMessage(l->pg));
        return;
    }
    set_state(l, LISTENING);
    on_listening_event(l, 0); /* flushes, and reads whatever is there already */
}

/* ---- CONNECTING ---------------------------------------------------------------------------- */

static void on_connect_event(struct pg_listen *l)
{
    switch (PQconnectPoll(l->pg)) {
    case PGRES_POLLING_READING:
        watch(l, UV_READABLE);
        break;
    case PGRES_POLLING_WRITING:
        watch(l, UV_WRITABLE);
        break;
    case PGRES_POLLING_OK:
        send_listen(l);
        break;
    default:
        lose(l, "could not connect", PQerrorMessage(l->pg));
        break;
    }
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    struct pg_listen *l = p->data;

    if (l->stopping || p != l->poll)
        return;
    if (status < 0) {
        lose(l, l->state == UP ? "connection lost" : "could not connect", uv_strerror(status));
        return;
    }
    if (l->state == CONNECTING)
        on_connect_event(l);
    else if (l->state == LISTENING)
        on_listening_event(l, events);
    else if (l->state == UP)
        on_up_event(l, events);
}

/* Watches the connection's socket for events, following it when libpq moved to another one. */
static void watch(struct pg_listen *l, int events)
{
    int fd = PQsocket(l->pg);
    int rc;

    if (fd < 0) {
        lose(l, "could not connect", PQerrorMessage(l->pg));
        return;
    }
    if (l->poll != NULL && l->poll_fd != fd)
        close_poll(l); /* libpq closed the old one already: the close only unregisters it */
    if (l->poll == NULL) {
        l->poll = calloc(1, sizeof *l->poll);
        if (l->poll == NULL)
            abort();
        rc = uv_poll_init(l->loop, l->poll, fd);
        if (rc != 0) {
            free(l->poll);
            l->poll = NULL;
            lose(l, "could not watch the socket", uv_strerror(rc));
            return;
        }
        l->poll->data = l;
        l->handles++;
        l->poll_fd = fd;
    }
    if (events == l->poll_events && l->state != CONNECTING)
        return;
    /* While connecting, libpq may have closed the socket and opened another under the same
     * number, which epoll dropped with the old file: stopping first makes libuv register the
     * descriptor again rather than believe it is still watched. */
    uv_poll_stop(l->poll);
    rc = uv_poll_start(l->poll, events, poll_cb);
    if (rc != 0) {
        lose(l, "could not watch the socket", uv_strerror(rc));
        return;
    }
    l->poll_events = events;
}

/* Keepalives and the user timeout override the URL's (later keywords win over the expanded
 * dbname); so do the host's resolved addresses when this module resolved them (with hostaddr
 * libpq resolves nothing). */
static void start_connect(struct pg_listen *l)
{
    bool resolved = l->hostaddrs != NULL;
    const char *keys[] = {"dbname",
                          "keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "fallback_application_name",
                          resolved ? "host" : NULL,
                          "hostaddr",
                          NULL};
    const char *vals[] = {l->url,
                          "1",
                          KEEPALIVE_IDLE_S,
                          KEEPALIVE_INTERVAL_S,
                          KEEPALIVE_COUNT,
                          TCP_USER_TIMEOUT_MS,
                          PG_LISTEN_APP_NAME,
                          l->hosts,
                          l->hostaddrs,
                          NULL};

    l->pg = PQconnectStartParams(keys, vals, 1);
    if (l->pg == NULL)
        abort(); /* libpq could not allocate */
    PQsetNoticeProcessor(l->pg, notice_processor, l);
    if (PQstatus(l->pg) == CONNECTION_BAD) {
        lose(l, "could not connect", PQerrorMessage(l->pg));
        return;
    }
    set_state(l, CONNECTING);
    watch(l, UV_WRITABLE); /* libpq: before the first poll, act as if it said WRITING */
}

/* ---- RESOLVING ----------------------------------------------------------------------------- */

/* host/hostaddr lists for libpq from the resolver's answer: each address once, at most
 * RESOLVED_MAX, the host name repeated for each (libpq pairs them by position). */
static int take_addresses(struct pg_listen *l, const struct addrinfo *res)
{
    char addrs[RESOLVED_MAX][64];
    size_t n = 0, hlen = strlen(l->host);
    struct buf h, a;

    for (const struct addrinfo *ai = res; ai != NULL && n < RESOLVED_MAX; ai = ai->ai_next) {
        bool seen = false;
        if (uv_ip_name(ai->ai_addr, addrs[n], sizeof addrs[n]) != 0)
            continue;
        for (size_t i = 0; i < n; i++)
            seen = seen || strcmp(addrs[i], addrs[n]) == 0;
        n += !seen;
    }
    if (n == 0)
        return UV_EAI_NODATA;
    buf_init(&h, RESOLVED_MAX * (hlen + 1));
    buf_init(&a, sizeof addrs);
    for (size_t i = 0; i < n; i++) {
        buf_append(&h, i > 0 ? "," : "", i > 0);
        buf_append(&h, l->host, hlen);
        buf_append(&a, i > 0 ? "," : "", i > 0);
        buf_append(&a, addrs[i], strlen(addrs[i]));
    }
    l->hosts = buf_steal(&h);
    l->hostaddrs = buf_steal(&a);
    return 0;
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct pg_listen *l = req->data;
    int rc = status;

    l->gai_busy = false;
    l->handles--;
    if (l->stopping) {
        uv_freeaddrinfo(res);
        maybe_free(l);
        return;
    }
    if (rc == 0)
        rc = take_addresses(l, res);
    uv_freeaddrinfo(res);
    if (rc != 0) {
        char why[REASON_MAX];
        snprintf(why, sizeof why, "could not resolve host \"%s\": %s", l->host, uv_strerror(rc));
        lose(l, "could not connect", why);
        return;
    }
    start_connect(l);
}

/* libpq resolves a host name inside PQconnectStartParams, blocking: a URL with one host name
 * (not an address, not a socket directory, no hostaddr of its own) is resolved here instead,
 * by the loop's resolver, at every attempt. Several hosts are left to libpq (each is tried in
 * turn; a name among them blocks the loop while it resolves: use addresses there). */
static void pick_host(struct pg_listen *l)
{
    PQconninfoOption *opts = PQconninfoParse(l->url, NULL);
    const char *host = NULL;
    bool has_addr = false;
    unsigned char buf[16];

    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "host") == 0 && o->val != NULL && o->val[0] != '\0')
            host = o->val;
        if (strcmp(o->keyword, "hostaddr") == 0 && o->val != NULL && o->val[0] != '\0')
            has_addr = true;
    }
    if (host != NULL && !has_addr && host[0] != '/' && host[0] != '@' &&
        strchr(host, ',') == NULL && uv_inet_pton(AF_INET, host, buf) != 0 &&
        uv_inet_pton(AF_INET6, host, buf) != 0) {
        l->host = strdup(host);
        if (l->host == NULL)
            abort();
    }
    PQconninfoFree(opts);
}

static void start_attempt(struct pg_listen *l)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc;

    uv_timer_start(&l->timer, timeout_cb, CONNECT_TIMEOUT_MS, 0); /* the resolve included */
    if (l->host == NULL) {
        start_connect(l);
        return;
    }
    set_state(l, RESOLVING);
    free(l->hosts);
    free(l->hostaddrs);
    l->hosts = l->hostaddrs = NULL;
    l->gai.data = l;
    rc = uv_getaddrinfo(l->loop, &l->gai, gai_cb, l->host, NULL, &hints);
    if (rc != 0) {
        lose(l, "could not resolve the host", uv_strerror(rc));
        return;
    }
    l->gai_busy = true;
    l->handles++;
}

/* ---- the API ------------------------------------------------------------------------------- */

struct pg_listen *pg_listen_start(uv_loop_t *loop, const char *url, store_notice_cb cb, void *arg)
{
    struct pg_listen *l = calloc(1, sizeof *l);

    if (l == NULL)
        abort();
    l->loop = loop;
    l->url = strdup(url);
    if (l->url == NULL)
        abort();
    l->cb = cb;
    l->arg = arg;
    l->backoff_ms = BACKOFF_FIRST_MS;
    l->state = WAITING;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    l->handles = 1;
    pick_host(l);
    start_attempt(l);
    return l;
}

bool pg_listen_up(const struct pg_listen *l)
{
    return l != NULL && l->state == UP;
}

void pg_listen_stop(struct pg_listen *l)
{
    if (l == NULL || l->stopping)
        return;
    l->stopping = true;
    close_conn(l);
    uv_close((uv_handle_t *)&l->timer, handle_closed_cb);
    if (l->gai_busy)
        uv_cancel((uv_req_t *)&l->gai); /* its callback still runs, with UV_ECANCELED */
}
