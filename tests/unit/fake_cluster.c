/*
 * fake_cluster.c: the view of the other nodes (cluster.c's side of cluster.h) as a test sets
 * it, for the tests of the node-to-node parts (peer.c, the gateway's peers, the gate). A test
 * #includes it and fills fake_cluster; the real cluster.c is then never linked in (every
 * symbol it would give is defined here).
 */
#include <string.h>

#include "cluster/cluster.h"

#define FAKE_PEERS_MAX 8

struct cluster {
    const struct config *cfg;
    struct httpc *httpc;
    bool shared;
    const char *node_id;
    /* What cluster_peers_for answers for `model` (any other model: none). */
    const char *model;
    struct cluster_peer peers[FAKE_PEERS_MAX];
    size_t npeers;
    const char *models; /* cluster_models' list */
    int peers_for_calls;
};

static struct cluster fake_cluster;

static void fake_peer(size_t i, const char *node, const char *url, const char *engine)
{
    struct cluster_peer *p = &fake_cluster.peers[i];
    snprintf(p->node, sizeof(p->node), "%s", node);
    snprintf(p->url, sizeof(p->url), "%s", url);
    snprintf(p->engine, sizeof(p->engine), "%s", engine);
    p->ready = true;
    if (fake_cluster.npeers <= i)
        fake_cluster.npeers = i + 1;
}

const char *cluster_node_id(const struct cluster *cl)
{
    return cl->node_id;
}

bool cluster_shared(const struct cluster *cl)
{
    return cl->shared;
}

const struct config *cluster_config(const struct cluster *cl)
{
    return cl->cfg;
}

struct httpc *cluster_httpc(const struct cluster *cl)
{
    return cl->httpc;
}

size_t cluster_peers_for(const struct cluster *cl, const char *model, struct cluster_peer *out,
                         size_t cap)
{
    struct cluster *c = (struct cluster *)cl;
    c->peers_for_calls++;
    if (cl->model == NULL || strcmp(model, cl->model) != 0)
        return 0;
    size_t n = cl->npeers < cap ? cl->npeers : cap;
    memcpy(out, cl->peers, n * sizeof(*out));
    return n;
}

void cluster_models(const struct cluster *cl, struct buf *out)
{
    if (cl->models != NULL)
        buf_printf(out, "%s", cl->models);
}

const char *cluster_node_url(const struct cluster *cl, const char *node)
{
    for (size_t i = 0; i < cl->npeers; i++)
        if (strcmp(cl->peers[i].node, node) == 0)
            return cl->peers[i].url;
    return NULL;
}
