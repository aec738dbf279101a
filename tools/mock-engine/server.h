/*
 * server.h: the listening socket and the connections of arun-mock-engine. Connections go to h2o
 * (HTTP/1.1 keep-alive, h2c), or in --hang mode are read and never answered. The server knows
 * every connection it accepted, so it can close them all at shutdown.
 */
#ifndef ARUN_MOCK_SERVER_H
#define ARUN_MOCK_SERVER_H

#include <h2o.h>
#include <uv.h>

#include "api.h"

struct server;
/* Called once, from the loop, when server_close() has seen every connection and the listener
 * closed. */
typedef void (*server_drained_cb)(struct server *s);

struct server {
    uv_loop_t *loop;              /* the one loop everything runs on */
    struct api *api;              /* answers the requests; not owned */
    int hang;                     /* --hang: never hand connections to h2o */
    uv_tcp_t listener;            /* the listening socket */
    int listening;                /* listener initialised (and so must be closed) */
    int closing;                  /* server_close() was called */
    h2o_globalconf_t config;      /* one host, one path "/", one handler */
    h2o_context_t ctx;            /* h2o's per-loop state */
    h2o_accept_ctx_t accept_ctx;  /* what h2o_accept() needs */
    h2o_linklist_t conns;         /* struct conn: every accepted connection not yet closed */
    server_drained_cb drained_cb; /* set by server_close(), cleared when called */
    char url[80];                 /* http://HOST:PORT with the bound port, once listening */
};

/* Sets up h2o with one handler that passes every request to api. */
void server_init(struct server *s, uv_loop_t *loop, struct api *api, int hang);
/* Binds host:port (port 0 = any) and listens; s->url names the bound address. Returns 0 or a
 * libuv error, after printing a sentence about it to stderr. */
int server_listen(struct server *s, const char *host, int port) MUST_USE;
/* Stops accepting and closes every connection: in-flight completions are cut, idle keep-alive
 * connections see EOF. cb runs once everything is closed. */
void server_close(struct server *s, server_drained_cb cb);
/* Frees h2o's context and configuration. Call after the loop stopped, with the server drained;
 * it runs the loop once more to finish h2o's handle closes. */
void server_cleanup(struct server *s);

#endif
