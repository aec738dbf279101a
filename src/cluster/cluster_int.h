/*
 * cluster_int.h: what the cluster module's files share (private to src/cluster): the struct
 * behind struct cluster (cluster.c owns it; peer.c and nodes_api.c read it), and the view of
 * the nodes (view.c): pure functions over store_nodes_list's answer, so what is up or down and
 * which peer comes first are tested without a loop or a store.
 */
#ifndef ARUN_CLUSTER_CLUSTER_INT_H
#define ARUN_CLUSTER_CLUSTER_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster/cluster.h"

/* The heartbeat: lease_s / 3 (three renewals fit in a lease, so one late write never loses
 * it), at least CLUSTER_BEAT_MIN_MS (a store write per node every half second is plenty) and
 * at most CLUSTER_BEAT_MAX_MS (a down node is seen within CLUSTER_DOWN_BEATS of these, 6 s,
 * however long the lease). */
#define CLUSTER_BEAT_MIN_MS 500
#define CLUSTER_BEAT_MAX_MS 2000
/* The takeover scan (a claim of runs whose lease ran out) runs this often on a shared store, on
 * a timer of its own: a lease runs out lease_s after its node's last renewal, so a dead node's
 * runs move within lease_s + this. A claim that finds nothing changes no row (no WAL flush); the
 * partial index responses_lease (PostgreSQL) keeps it to the rows whose lease ran out. */
#define CLUSTER_SCAN_MS 250
#define CLUSTER_CLAIM_PAGE 100 /* runs one claim takes at most */
/* Rows of nodes not seen for this long (left, or down) are removed from the store, once an
 * hour: a retired or renamed node does not stay listed forever. */
#define CLUSTER_FORGET_MS (24 * 3600 * 1000LL)
#define CLUSTER_FORGET_EVERY_MS (3600 * 1000LL)
#define CLUSTER_REASON_MAX 160

/* ---- the view (view.c) ---- */

enum cluster_node_state {
    CLUSTER_NODE_UP,   /* heartbeating */
    CLUSTER_NODE_DOWN, /* its row says up, but no heartbeat for CLUSTER_DOWN_BEATS beats */
    CLUSTER_NODE_LEFT, /* stopped cleanly */
};

struct cluster_node {
    char *id;
    char *address;
    enum cluster_node_state state;
    char reason[CLUSTER_REASON_MAX]; /* why it is down or left; "" when up */
    bool self;                       /* this node */
    int64_t started_ms;
    int64_t seen_ms;     /* its last heartbeat, on the store's clock */
    int64_t seen_ago_ms; /* now_ms - seen_ms, never negative */
    json_t *info;        /* the object it wrote (engines, routes, memory, version); owned */
};

/* The nodes as one store_nodes_list answer showed them. */
struct cluster_view {
    int64_t now_ms; /* the store's clock at the read */
    struct cluster_node *nodes;
    size_t n;
};

/* Parses store_nodes_list's JSON into out: each node's state from its row and seen_ms (down
 * when up but not seen for more than down_after_ms), self marked (and always up: this process
 * runs). Returns 0, or -EINVAL for a text that is not that shape (out is then empty). */
int cluster_view_parse(const char *json, size_t len, const char *self_id, int64_t down_after_ms,
                       struct cluster_view *out) MUST_USE;
void cluster_view_cleanup(struct cluster_view *v);
/* The node named id in v, or NULL. */
const struct cluster_node *cluster_view_find(const struct cluster_view *v, const char *id);
/* "no heartbeat for 7 s; last seen 2026-12-07T21:50:00Z" into out. */
void cluster_down_reason(int64_t ago_ms, int64_t seen_ms, char *out, size_t size);
/* cluster_peers_for over a view (see cluster.h for the order). */
size_t cluster_view_peers(const struct cluster_view *v, const char *model, struct cluster_peer *out,
                          size_t cap);
/* cluster_models over a view: the names other up nodes serve (their engines' models that are
 * not failed, their routes), each once, comma-separated without spaces. */
void cluster_view_models(const struct cluster_view *v, struct buf *out);

/* A node's change from one view to the next, as logged and published (node.state). */
enum cluster_change {
    CLUSTER_CHANGE_NONE,
    CLUSTER_CHANGE_UP,   /* seen for the first time, up */
    CLUSTER_CHANGE_DOWN, /* was up, stopped heartbeating (or first seen so) */
    CLUSTER_CHANGE_LEFT, /* stopped cleanly */
    CLUSTER_CHANGE_BACK, /* was down or left, heartbeats again */
};
/* What happened to node n since old (NULL: the first view). */
enum cluster_change cluster_view_change(const struct cluster_view *old,
                                        const struct cluster_node *n);
const char *cluster_node_state_name(enum cluster_node_state s);
const char *cluster_change_name(enum cluster_change c);

/* The node as GET /v1/nodes shows it (docs/http-api.md). */
json_t *cluster_node_json(const struct cluster_node *n);

/* ---- the module's state (cluster.c) ---- */

struct cluster {
    uv_loop_t *loop;
    const struct config *cfg;
    struct store *store;
    struct supervisor *sup;
    struct httpc *httpc;
    struct events *events;
    char node_id[CLUSTER_NODE_ID_MAX + 1];
    char address[CLUSTER_URL_MAX];
    bool shared;       /* store_shared(): other nodes may exist */
    int64_t started_ms;
    int64_t beat_ms;       /* the heartbeat's period */
    int64_t down_after_ms; /* CLUSTER_DOWN_BEATS heartbeats */

    uv_timer_t timer;
    uv_timer_t scan; /* the takeover scan (shared stores) */
    uint64_t beats;           /* heartbeats so far */
    struct cluster_view view; /* the last nodes list read */
    bool have_view;           /* view holds a read (else the first is on its way) */
    bool beat_busy;           /* the last heartbeat's write and read are not done */
    bool claiming;            /* a takeover claim is on its way */
    bool renewing;            /* a lease renewal is on its way */
    bool put_failing;         /* the last heartbeat write failed (logged once) */
    uint64_t forgot_at_ms;    /* monotonic: the last store_nodes_forget */
    cluster_adopt_cb adopt;   /* the runs' adopter, or NULL: no takeover scan */
    void *adopt_arg;
    unsigned pending;           /* store ops whose callback has not run */
    bool closing;               /* cluster_free was called */
    unsigned timers_open;       /* timers not yet closed (the heartbeat, the scan) */
};

/* The heartbeat's period for a lease of lease_s: lease_s * 1000 / 3 within [CLUSTER_BEAT_MIN_MS,
 * CLUSTER_BEAT_MAX_MS]. */
int64_t cluster_beat_ms(uint32_t lease_s);
/* The node's info JSON for its row (cluster.c): version, engines, routes, memory. */
json_t *cluster_info(const struct cluster *cl);

/* nodes_api.c: registers GET /v1/nodes (admin) on srv. */
void cluster_nodes_api_register(struct http_server *srv, struct cluster *cl);

#endif
