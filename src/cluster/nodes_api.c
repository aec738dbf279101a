/*
 * nodes_api.c: GET /v1/nodes (admin): every node the store knows, with its state (up, down,
 * left) and why, its engines and memory as its last heartbeat wrote them (docs/http-api.md).
 * The rows are read from the store at each request, not from the heartbeat's view, so the
 * answer is as fresh as the store; this node's own entry carries its engines as they are now
 * (its row may be a heartbeat old, or not written yet just after start).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_int.h"
#include "core/clock.h"

struct nodes_read {
    struct http_request *r;
    struct cluster *cl;
};

/* This node's entry, made fresh: its row as read (or a new one) with the live info. */
static json_t *self_json(struct cluster *cl, const struct cluster_node *row, int64_t now_ms)
{
    struct cluster_node self = {.id = cl->node_id,
                                .address = cl->address,
                                .state = CLUSTER_NODE_UP,
                                .self = true,
                                .started_ms = cl->started_ms,
                                .seen_ms = row != NULL ? row->seen_ms : now_ms,
                                .seen_ago_ms = row != NULL ? row->seen_ago_ms : 0,
                                .info = cluster_info(cl)};
    json_t *j = cluster_node_json(&self);

    json_decref(self.info);
    return j;
}

static void list_cb(int status, const char *value, size_t len, void *arg)
{
    struct nodes_read *nr = arg;
    struct cluster *cl = nr->cl;
    struct http_request *r = nr->r;
    struct cluster_view v;

    free(nr);
    if (status != 0 || cluster_view_parse(value, len, cl->node_id, cl->down_after_ms, &v) != 0) {
        if (status == -EAGAIN)
            http_add_header(r, "retry-after", "1");
        http_send_error(r, status == -EAGAIN ? 503 : 500, "store_unavailable", NULL,
                        "The store cannot read the nodes now (%s); try again.",
                        strerror(status != 0 ? -status : EIO));
        return;
    }
    json_t *data = json_array();
    const struct cluster_node *self = cluster_view_find(&v, cl->node_id);
    bool self_done = false;
    for (size_t i = 0; i < v.n; i++) {
        const struct cluster_node *n = &v.nodes[i];
        if (!self_done && self == NULL && strcmp(cl->node_id, n->id) < 0) {
            json_array_append_new(data, self_json(cl, NULL, v.now_ms)); /* in id order */
            self_done = true;
        }
        json_array_append_new(data, n->self ? self_json(cl, n, v.now_ms) : cluster_node_json(n));
        self_done = self_done || n->self;
    }
    if (!self_done)
        json_array_append_new(data, self_json(cl, NULL, v.now_ms));
    cluster_view_cleanup(&v);
    http_send_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void get_nodes(struct http_request *r, void *arg)
{
    struct cluster *cl = arg;
    struct nodes_read *nr = xcalloc(1, sizeof(*nr));

    *nr = (struct nodes_read){.r = r, .cl = cl};
    int rc = store_nodes_list(cl->store, clock_wall_ms(), list_cb, nr);
    if (rc != 0)
        list_cb(rc, NULL, 0, nr);
}

void cluster_nodes_api_register(struct http_server *srv, struct cluster *cl)
{
    http_route(srv, "GET", "/v1/nodes", HTTP_ADMIN, get_nodes, cl);
}
