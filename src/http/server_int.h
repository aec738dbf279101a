/*
 * server_int.h: the server's private state, shared by server.c (connections, lifecycle,
 * dispatch) and response.c (answers, bodies, errors). Nothing outside src/http includes it.
 */
#ifndef ARUN_HTTP_SERVER_INT_H
#define ARUN_HTTP_SERVER_INT_H

#include "http/router.h"
#include "http/server.h"

struct conn;

struct shutdown_hook {
    http_shutdown_hook fn;
    void *arg;
    struct shutdown_hook *next;
};

struct http_server {
    uv_loop_t *loop;
    struct http_server_options opts;
    char *host; /* opts.host, owned */
    h2o_globalconf_t globalconf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    struct http_router router;
    uv_tcp_t listener;
    bool listening;
    /* The owner-only Unix socket (http_server_listen_local): its own h2o host configuration,
     * whose handler marks requests local, so a TCP client cannot reach it by any Host header. */
    h2o_globalconf_t local_conf;
    h2o_accept_ctx_t local_accept_ctx;
    uv_pipe_t local_listener;
    bool local_listening;
    uint64_t local_refused; /* connections of another user, closed at accept */
    uint16_t bound_port;
    size_t connections;            /* accepted and not yet closed */
    size_t in_flight;              /* requests dispatched and not yet disposed */
    uint64_t rejected_connections; /* closed at accept because of max_connections */
    struct shutdown_hook *hooks;
    bool draining;
    uv_timer_t drain_timer; /* deadline of the drain, and a check loop */
    http_drained_cb drained_cb;
    void *drained_arg;
    bool drain_done;
    bool drain_forced;    /* the deadline passed and connections were cut */
    h2o_linklist_t conns; /* struct conn.link: open connections, the oldest first */
    int closing;          /* own handles still closing */
    bool freeing;         /* http_server_free ran: free when closing reaches 0 */
    struct metrics *metrics;
    struct metrics_family *m_requests; /* arun_http_requests_total{route,method,status} */
    struct metrics_family *m_duration; /* arun_http_request_duration_seconds{route} */
    uint64_t rng;                      /* xorshift state for request ids */
    http_gate_fn gate;                 /* or NULL: auth.mode none */
    char *node;                        /* x-arun-node of every answer, or NULL */
    void *gate_arg;
};

/* Called by response.c when a response starts: adds x-request-id. */
void http_stamp_response(struct http_request *r);

#endif
