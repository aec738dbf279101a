/*
 * forward.c: a cancel of a run that another node owns, sent to that node (forward.h).
 *
 * The owner is the row's node: whoever holds the run's lease. If it does not answer it is
 * stopped or cut off, and within one lease another node claims the run (cluster.c's takeover)
 * and the row names the new owner: the 503 says so and Retry-After is the lease, after which the
 * client's retry is forwarded there (or answered here, if this node took it over).
 */
#include "runs/forward.h"

#include <stdio.h>
#include <string.h>

#include "cluster/cluster.h"
#include "core/log.h"

struct fwd {
    struct http_request *r;
    char id[STORE_ID_MAX + 1];
    char node[CLUSTER_NODE_ID_MAX + 1];
    uint32_t lease_s;
};

const char *forward_cancel_to(const struct runs *rs, struct http_request *r, const json_t *row)
{
    struct store *st = rs->o.store;
    enum run_status s = run_status_parse(json_string_value(json_object_get(row, "status")));
    const char *node = json_string_value(json_object_get(row, "node"));
    if (!store_shared(st) || rs->o.cluster == NULL || (s != RUN_QUEUED && s != RUN_IN_PROGRESS))
        return NULL;
    if (node == NULL || strcmp(node, store_node_id(st)) == 0 || http_header(r, HTTP_H_CLUSTER_HOP))
        return NULL;
    return node;
}

/* The owner did not answer (or is not up): the run moves within a lease. */
static void owner_down(struct http_request *r, const char *id, const char *node, uint32_t lease_s)
{
    char ra[16];
    snprintf(ra, sizeof(ra), "%u", lease_s);
    http_add_header(r, "retry-after", ra);
    http_send_error(r, 503, "node_unavailable", NULL,
                    "run %s is on node %s, which is not answering; another node takes it over "
                    "within %u s",
                    id, node, lease_s);
}

static void answer_cb(int status, const char *content_type, const char *body, size_t len, void *arg)
{
    struct fwd *f = arg;
    if (status == 0) {
        log_warn("runs", "cancel of response %s: node %s did not answer: %.*s", f->id, f->node,
                 (int)(len < 300 ? len : 300), body ? body : "");
        owner_down(f->r, f->id, f->node, f->lease_s);
    } else {
        http_send_bytes(f->r, status, content_type ? content_type : "application/json",
                        body ? body : "", body ? len : 0);
    }
    free(f);
}

void forward_cancel(struct runs *rs, struct http_request *r, const char *tenant, const char *id,
                    const char *node)
{
    struct fwd *f = xcalloc(1, sizeof(*f));
    f->r = r;
    f->lease_s = rs->o.cfg->cluster.lease_s ? rs->o.cfg->cluster.lease_s : 10;
    snprintf(f->id, sizeof(f->id), "%s", id);
    snprintf(f->node, sizeof(f->node), "%s", node);
    char path[STORE_ID_MAX + 32];
    snprintf(path, sizeof(path), "/v1/responses/%s/cancel", id);
    log_info("runs", "response %s runs on node %s: its cancel (request %s) goes there", id, node,
             r->id);
    int rc = cluster_forward(rs->o.cluster, node, "POST", path, tenant, NULL, 0, answer_cb, f);
    if (rc != 0) {
        owner_down(r, f->id, f->node, f->lease_s); /* -ENOENT: not up */
        free(f);
    }
}
