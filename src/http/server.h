/*
 * server.h: the HTTP server: h2o (HTTP/1.1 and HTTP/2) on the arun loop, the router in front of
 * every handler, and the protections every endpoint gets for free: a request id on every
 * response, a body limit answered with 413 before the body is read, a connection limit, header
 * and idle timeouts, OpenAI-shaped errors, request metrics, and a graceful drain on shutdown.
 *
 * The server knows nothing about models, engines or runs: capabilities register their routes
 * with http_route() (engines/api.c, gateway/api.c, …) and main.c wires them.
 */
#ifndef ARUN_HTTP_SERVER_H
#define ARUN_HTTP_SERVER_H

#define H2O_USE_LIBUV 1
#include <h2o.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <uv.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/metrics.h"

#define HTTP_REQUEST_ID_MAX 64 /* longer client ids are replaced by our own */
#define HTTP_MAX_PARAMS 4      /* path parameters per route, e.g. {name} */
#define HTTP_REQ_TIMEOUT_MS                                                                        \
    10000                           /* headers (and bodies) must arrive within this; h2o's default \
                                     */
#define HTTP_IDLE_TIMEOUT_MS 10000  /* an idle keep-alive connection is closed after this */
#define HTTP_DRAIN_TIMEOUT_MS 10000 /* SIGTERM waits this long for in-flight requests */
#define HTTP_LOCAL_SOCKET "arun.sock" /* the owner-only socket, under data_dir */

struct http_server;
struct http_route;

/* Who may call a route (contract 6). Every route declares one at registration, so a new route
 * is never reachable by accident: the gate (http_server_set_gate) enforces it. */
enum http_access {
    HTTP_PUBLIC, /* anyone, also with keys on: /healthz, /readyz */
    HTTP_MEMBER, /* any valid key; the handler reaches only its tenant's objects */
    HTTP_ADMIN,  /* an admin key, or the owner's local socket */
};

#define HTTP_TENANT_MAX 64            /* bytes in a tenant name (as STORE_TENANT_MAX) */
#define HTTP_KEY_ID_MAX 40            /* bytes in a key id ("key_" and hex) */
/* Headers between the nodes of a cluster (cluster/cluster.h). The secret authenticates the caller
 * as a node of this cluster; the tenant and hop are believed only with it (never from a client):
 * the gate (tenancy/auth.c) reads them, the cluster and the gateway send them. */
#define HTTP_H_CLUSTER_SECRET "x-arun-cluster" /* the cluster secret */
#define HTTP_H_CLUSTER_TENANT "x-arun-tenant"  /* the tenant the request is made for */
#define HTTP_H_CLUSTER_HOP "x-arun-hop"        /* the node that forwarded it: answer locally */
#define HTTP_H_NODE "x-arun-node"              /* on every answer: the node that answered */
#define HTTP_NODE_MAX 128             /* bytes in a node id (as CLUSTER_NODE_ID_MAX) */
#define HTTP_TENANT_DEFAULT "default" /* every request's tenant without keys (as the store's) */
/* How an API key's text starts (tenancy/keys.h): the access log masks what follows it in a
 * path, so a key pasted into a URL never reaches the log. */
#define HTTP_KEY_PREFIX "arun-"
#define HTTP_KEY_TAIL_LEN 43 /* base64url characters after it (32 bytes) */

/* Who a request acts for, set by the gate before the handler runs. With auth.mode none (no
 * gate) every request is the admin of tenant "default". */
struct http_principal {
    char tenant[HTTP_TENANT_MAX + 1]; /* whose objects the request reaches */
    char key_id[HTTP_KEY_ID_MAX + 1]; /* the key's id; "local" on the socket, "" without keys */
    bool admin;                       /* role admin (or the local socket) */
    bool local;                       /* arrived on the owner-only Unix socket */
    char node[HTTP_NODE_MAX + 1];     /* another node of the cluster sent it for the tenant
                                         (x-arun-hop, with the cluster secret); "" otherwise */
};

/* One request as handlers see it. Allocated from the request's pool: valid until the response
 * is finished or the client is gone, after which the handler must not touch it. */
struct http_request {
    h2o_req_t *req; /* h2o's request; the response goes through it */
    struct http_server *srv;
    char id[HTTP_REQUEST_ID_MAX + 1];    /* x-request-id: the client's if well-formed */
    const struct http_route *route;      /* the matched route (NULL for 404/405) */
    const char *params[HTTP_MAX_PARAMS]; /* path parameters, in pattern order, NUL-terminated */
    size_t nparams;
    uint64_t start_ns;         /* when the request reached the router */
    bool own_access_log;       /* the handler writes its own access line (http logs it at debug) */
    struct http_principal who; /* set before the handler runs (see http_gate_fn) */
    /* Called once when the request ends, however it ends (answered, client gone), if set: the
     * gate's way to give back what it took for the request (a concurrency slot). */
    void (*release)(struct http_request *r, void *arg);
    void *release_arg;
};

/* A handler must answer the request, now or later (async), exactly once. */
typedef void (*http_handler_fn)(struct http_request *r, void *arg);
/* Decides whether r may reach a route that needs `need`: returns 0 with r->who filled in (the
 * handler then runs), or answers r itself (401, 403, 429, in the OpenAI shape) and returns
 * non-zero. Runs on the loop before every matched route, the public ones included (they need
 * no key: the gate lets them through). */
typedef int (*http_gate_fn)(struct http_request *r, enum http_access need, void *arg);
/* Called when the server starts draining, so long-lived streams can end. */
typedef void (*http_shutdown_hook)(void *arg);
/* Called once when the drain is over. forced is true when the deadline cut it short. */
typedef void (*http_drained_cb)(struct http_server *srv, bool forced, void *arg);

struct http_server_options {
    const char *host;          /* bind address */
    uint16_t port;             /* 0 = ephemeral (tests) */
    uint64_t max_body_bytes;   /* request bodies beyond this get 413 */
    uint32_t max_connections;  /* connections beyond this are closed at accept */
    uint32_t req_timeout_ms;   /* 0 = HTTP_REQ_TIMEOUT_MS */
    uint32_t drain_timeout_ms; /* 0 = HTTP_DRAIN_TIMEOUT_MS */
};

/* Creates the server on loop; metrics (not owned) receives the request metrics. Listening
 * starts with http_server_listen. */
struct http_server *http_server_new(uv_loop_t *loop, const struct http_server_options *o,
                                    struct metrics *metrics);
/* Binds and listens. Returns 0, or -errno with a sentence in err ("127.0.0.1:8080 is already in
 * use: another arun or another server listens there; pick another with --listen"). */
int http_server_listen(struct http_server *srv, struct buf *err) MUST_USE;
/* Also listens on the owner-only Unix socket at path (data_dir/arun.sock): created mode 0600,
 * replacing whatever socket is there (the caller holds the data_dir lock, so one left there is
 * stale), accepting only connections whose peer has this process's effective uid
 * (SO_PEERCRED), counted but never refused by max_connections, and removed when the drain
 * starts. Requests that arrive on it are marked local (r->who.local): the owner acts as the
 * admin of tenant "default" without a key, whatever auth.mode is. Returns 0, or -ENAMETOOLONG
 * (path does not fit in sun_path), -EEXIST (path exists and is not a socket) or another -errno,
 * with a sentence in err. */
int http_server_listen_local(struct http_server *srv, const char *path, struct buf *err) MUST_USE;
/* The loop the server runs on. */
uv_loop_t *http_server_loop(const struct http_server *srv);
/* The port actually bound (useful with port 0). */
uint16_t http_server_port(const struct http_server *srv);

/* Serves HTTPS with ctx (http/tls.h) from now on, taking the caller's reference: connections
 * accepted after the call use it, connections already open keep the context they were made with
 * (each holds its own reference) until they close. The context it replaces is released. Call it
 * before http_server_listen for a server that must never answer in plain HTTP. */
void http_server_set_tls(struct http_server *srv, SSL_CTX *ctx);
/* The context new connections get (not a new reference), or NULL: the server speaks plain
 * HTTP. */
SSL_CTX *http_server_tls_ctx(const struct http_server *srv);

/* Registers a route. method "GET", "POST", "DELETE"…; pattern is a path whose segments may be
 * "{name}" (one segment, captured into params); access says who may call it. Routes are
 * matched in registration order. */
void http_route(struct http_server *srv, const char *method, const char *pattern,
                enum http_access access, http_handler_fn fn, void *arg);
/* Installs the gate every matched request passes before its handler (tenancy's API keys).
 * Without one, every request is the admin of tenant "default" (auth.mode none). */
void http_server_set_gate(struct http_server *srv, http_gate_fn gate, void *arg);
/* Names this node in an x-arun-node header on every answer that does not name one already (an
 * answer another node gave, passed on, names that node); NULL: none. The id is copied. */
void http_server_set_node(struct http_server *srv, const char *node_id);
/* Whether a gate is installed: auth.mode keys (GET /v1/whoami's auth_mode). */
bool http_server_gated(const struct http_server *srv);
/* The name of an access class: "public", "member", "admin". */
const char *http_access_name(enum http_access a);
void http_server_on_shutdown(struct http_server *srv, http_shutdown_hook hook, void *arg);

/* Starts the drain: stops accepting, closes idle connections, runs the shutdown hooks, lets
 * in-flight requests finish, and calls done when none is left or the deadline passes. */
void http_server_shutdown(struct http_server *srv, http_drained_cb done, void *arg);
bool http_server_draining(const struct http_server *srv);

/* Frees the server. After a clean drain every handle is closed (run the loop to finish the
 * closes); after a forced drain, connections still open are abandoned to process exit. */
void http_server_free(struct http_server *srv);

/* Open connections and requests in flight, for metrics and tests. */
size_t http_server_connections(const struct http_server *srv);
size_t http_server_requests_in_flight(const struct http_server *srv);

/* Responses. Each one adds x-request-id and ends the request. */
/* JSON answers this long or longer are sent gzip'd to a client that accepts it (lists, stats);
 * shorter ones are not worth the header. */
#define HTTP_JSON_GZIP_MIN 4096
/* Sends body (taking the reference) as application/json; gzip'd (Content-Encoding, Vary) when
 * it is at least HTTP_JSON_GZIP_MIN bytes, gets smaller, and Accept-Encoding takes gzip. */
void http_send_json(struct http_request *r, int status, json_t *body);
/* The q-value an Accept-Encoding value gives coding: its own member's, else "*"'s, else -1
 * when it names neither ("gzip;q=0" is 0: refused). */
double http_coding_q(const char *accept, const char *coding);
/* Sends bytes (copied into the request's pool) with the given content type. */
void http_send_bytes(struct http_request *r, int status, const char *content_type, const char *body,
                     size_t len);
/* The OpenAI error shape {"error":{"message","type","param","code"}}: type is derived from
 * status; code and param may be NULL (JSON null). Bytes of msg that are not UTF-8 become '?'.
 * Caller owns the result. */
json_t *http_error_json(int status, const char *code, const char *param, const char *msg);
/* How much of a relayed error body that is not an OpenAI error goes into the message. */
#define HTTP_RELAYED_BODY_MAX 300
/* The OpenAI error shape for an error answer (status, body) that another server (who: "engine
 * qwen") sent, whatever shape it came in, so that a client can rely on each member's type: the
 * message, type and param of its {"error":{…}} (or the string of {"error":"…"}) are kept when
 * they are strings; a code that is not a string (llama-server's numeric 400) or is missing
 * becomes "upstream_error"; a body that is no such object becomes the message "WHO answered HTTP
 * STATUS: BODY" (cut at HTTP_RELAYED_BODY_MAX bytes). say_who prefixes every message that way
 * (for an error that travels in a stream, where the status is lost). Caller owns the result. */
json_t *http_error_relayed(int status, const char *body, size_t len, const char *who, bool say_who);
/* Sends the OpenAI error shape {"error":{"message","type","param","code"}}. type is derived
 * from status when NULL; code and param may be NULL. */
void http_send_error(struct http_request *r, int status, const char *code, const char *param,
                     const char *fmt, ...) PRINTF_LIKE(5, 6);
/* Adds a response header (before the response starts); value is copied. */
void http_add_header(struct http_request *r, const char *name, const char *value);

/* Parses the request body as a JSON object. On failure answers 400 (invalid JSON with line and
 * column, not an object, invalid UTF-8) and returns -EINVAL: the handler must just return. */
int http_read_json(struct http_request *r, json_t **out) MUST_USE;
/* Looks up a query parameter (decoded into the pool). NULL when absent. */
const char *http_query(struct http_request *r, const char *name);
/* Looks up a request header by lower-case name. NULL when absent; the value is NUL-terminated. */
const char *http_header(struct http_request *r, const char *name);

/* Whether the client of r closed or reset its connection. h2o 2.2 does not read from a
 * connection while a request is being handled, so a handler that holds a request for long
 * (a queue) asks this now and then (a non-blocking poll for the peer's FIN or a reset, then a
 * MSG_PEEK on the socket; the poll is what sees a TLS client go, whose close_notify is unread). */
bool http_client_gone(struct http_request *r);

#define HTTP_REMOTE_MAX 64 /* "[ffff:…:ffff]:65535" fits, with room */

/* The client's address as "HOST:PORT" ("127.0.0.1:5555", "[::1]:5555"), or "local" for a request
 * on the owner-only Unix socket (r->who.local, or a peer that is no IP socket), or "unknown" when
 * the connection cannot say. Written into buf (cap >= HTTP_REMOTE_MAX bytes, NUL-terminated);
 * returns buf. For the audit trail: who did it, from where. */
const char *http_remote_addr(struct http_request *r, char *buf, size_t cap);

/* The pattern of the route that matched r ("/v1/engines/{name}"), or NULL. */
const char *http_request_route(const struct http_request *r);

/* The error type of the OpenAI shape for a status: invalid_request_error, … */
const char *http_error_type(int status);

#endif
