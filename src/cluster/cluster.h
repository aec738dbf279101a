/*
 * cluster.h: this node among the others that share a PostgreSQL store (docs/internals/
 * cluster.md, docs/scale.md). It owns the node's identity (cluster.node_id, advertise), its row
 * in the store's `nodes` table and the heartbeat, the view of the other nodes (up or down, with
 * why; their engines and models), the leases of this node's runs (renewed in one write) and the
 * takeover of runs whose node stopped renewing, the cluster secret, and the node-to-node
 * requests (cluster_forward). With a SQLite store it is a cluster of one: the node registers
 * and lists itself, and nothing else runs.
 *
 * Layers: it stands on the store, the supervisor (its engines' states, for the heartbeat) and
 * http (the /v1/nodes route, httpc for forwarding). The gateway asks it for peers; the runs give
 * it the function that adopts claimed runs. Everything runs on the loop thread.
 */
#ifndef ARUN_CLUSTER_CLUSTER_H
#define ARUN_CLUSTER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/config.h"
#include "core/events.h"
#include "core/metrics.h"
#include "engines/supervisor.h"
#include "http/httpc.h"
#include "http/server.h"
#include "store/store.h"

#define CLUSTER_NODE_ID_MAX 128 /* as HTTP_NODE_MAX: a node id fits a request's principal */
#define CLUSTER_URL_MAX 1024
#define CLUSTER_SECRET_MIN 32 /* bytes of cluster secret at least */
/* A node is down when its row was not heartbeaten for this many heartbeat intervals. */
#define CLUSTER_DOWN_BEATS 3
/* The headers between nodes are http/server.h's HTTP_H_CLUSTER_* and HTTP_H_NODE. */

struct cluster;

struct cluster_options {
    uv_loop_t *loop;
    const struct config *cfg;
    struct store *store;
    struct supervisor *sup;
    struct http_server *srv; /* gets GET /v1/nodes (admin) */
    struct httpc *httpc;     /* node-to-node requests */
    struct events *events;   /* node.state events for consoles, or NULL */
    struct metrics *metrics;
};

/* The node id the config resolves to: cluster.node_id, or for "auto" hostname:port (listen's
 * port). Into out (CLUSTER_NODE_ID_MAX + 1 bytes). For store_options.node_id before the store
 * opens. */
void cluster_resolve_node_id(const struct config *cfg, uint16_t port, char *out, size_t size);

/* Checks what a shared store needs before anything starts: the secret in cluster.secret_env
 * (at least CLUSTER_SECRET_MIN bytes) and an address other nodes can reach (advertise, or a
 * listen address that is not loopback or a wildcard). Returns 0, or -EINVAL with a sentence in
 * err (arun serve exits 2). Not called for SQLite. */
int cluster_check_config(const struct config *cfg, uint16_t port, struct buf *err) MUST_USE;

/* Registers this node (state up) and starts the heartbeat; on a shared store also the lease
 * renewal and the takeover scan. port is the port actually listened on. */
struct cluster *cluster_new(const struct cluster_options *o, uint16_t port);
/* Writes the node's row as left (a clean stop: others need not wait for it to look down),
 * stops the timers; frees once the store has answered (the loop runs on). NULL no-op. */
void cluster_free(struct cluster *cl);

const char *cluster_node_id(const struct cluster *cl);
/* This node's advertised base URL (http://host:port, no trailing slash). */
const char *cluster_address(const struct cluster *cl);
/* Whether other nodes may exist (the store is shared). */
bool cluster_shared(const struct cluster *cl);

/* ---- the other nodes ---- */

/* A node that can take a request for a model this node does not serve. */
struct cluster_peer {
    char node[CLUSTER_NODE_ID_MAX + 1];
    char url[CLUSTER_URL_MAX]; /* its base URL */
    char engine[96];           /* its engine that serves the model */
    bool ready;                /* that engine is ready (else it can be admitted: started) */
};
/* The up nodes other than this one that serve model (a name or alias one of their engines
 * lists, or a route of theirs), best first: engine ready, then an engine their memory envelope
 * can admit; ties by fewest requests in flight and queued. Down nodes and engines that are
 * failed or cannot be admitted are left out. Returns how many were written to out[0..cap). */
size_t cluster_peers_for(const struct cluster *cl, const char *model, struct cluster_peer *out,
                         size_t cap);
/* Appends the model names other up nodes serve, comma-separated, to out (for /v1/models and a
 * 404's sentence). */
void cluster_models(const struct cluster *cl, struct buf *out);
/* The base URL of node id if it is up, else NULL (valid until the loop runs again). */
const char *cluster_node_url(const struct cluster *cl, const char *node);

/* What the cluster was made with (cluster_options): its config and its HTTP client, for the
 * node-to-node requests (peer.c), which read the secret's variable and send through them. */
const struct config *cluster_config(const struct cluster *cl);
struct httpc *cluster_httpc(const struct cluster *cl);

/* ---- node-to-node requests (peer.c) ---- */

/* Where a request to a node goes, as httpc takes it. */
struct cluster_target {
    char host[64];                   /* an IP address, no brackets: o->to.host points here */
    char url[CLUSTER_URL_MAX + 256]; /* base + path: o->url points here */
};
/* Sets o's destination for path (origin form) on the node whose base URL is base: an http://
 * URL of an IP address and a port by parts (o->to: the native transport to loopback, and no URL
 * built and parsed again per request), anything else (https, a host name, a base with a path of
 * its own) as the whole URL (o->url, through libcurl). t holds the strings and must outlive the
 * request's start. Returns 0, or -EINVAL (not http:// or https://, or too long). */
int cluster_target(const char *base, const char *path, struct cluster_target *t,
                   struct httpc_opts *o) MUST_USE;

/* Whether value (the HTTP_H_CLUSTER_SECRET header, len bytes) is this cluster's secret; constant
 * time in the secret (SHA-256 of both, compared with CRYPTO_memcmp). Always false without a
 * shared store or without a secret (the variable cluster.secret_env unset, shorter than
 * CLUSTER_SECRET_MIN, or with a byte that is not printable ASCII). */
bool cluster_secret_ok(const struct cluster *cl, const char *value, size_t len);
/* The same as an auth_peer_check (tenancy/auth.h), arg the cluster. */
bool cluster_peer_check(const void *cl, const char *value, size_t len);
/* The headers a request to another node carries: "x-arun-cluster: SECRET", "x-arun-hop:
 * THIS_NODE" and, when tenant is not NULL, "x-arun-tenant: TENANT", written into
 * h[0..3) using store (at least 512 bytes + the tenant + the secret). Returns how many: a
 * header that does not fit (or the secret, when there is none) is left out, with an error
 * logged, and the other node refuses the request. */
size_t cluster_peer_headers(const struct cluster *cl, const char *tenant, char *store, size_t size,
                            const char **h);

/* Sends a request to another node and passes its whole answer back (not streamed): cb gets the
 * HTTP status (0 when the node could not be reached, with a sentence in body), the body and its
 * content type. Used for what must happen where a run lives (cancel). Returns 0 or -errno
 * (-ENOENT: no such node up). */
typedef void (*cluster_forward_cb)(int status, const char *content_type, const char *body,
                                   size_t len, void *arg);
int cluster_forward(struct cluster *cl, const char *node, const char *method, const char *path,
                    const char *tenant, const char *body, size_t len, cluster_forward_cb cb,
                    void *arg) MUST_USE;

/* ---- runs across nodes ---- */

/* Runs the takeover hands over: rows is store_runs_claim's JSON array (at least one row). The
 * runs module continues them or ends them as recovery does after a restart. */
typedef void (*cluster_adopt_cb)(const char *rows, size_t len, void *arg);
/* Sets who adopts runs claimed from dead nodes; until it is set (or without a shared store),
 * no takeover scan runs. */
void cluster_set_adopter(struct cluster *cl, cluster_adopt_cb cb, void *arg);

#endif
