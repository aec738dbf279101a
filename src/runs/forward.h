/*
 * forward.h: what must happen where a run lives, asked of another node (docs/internals/runs.md,
 * "Cancel on another node"). Today that is the cancel of a background run: only the node that
 * runs it can stop its engine call, so a cancel that reaches another node is forwarded to the
 * owner (cluster_forward) and the owner's answer is passed back as it came.
 */
#ifndef ARUN_RUNS_FORWARD_H
#define ARUN_RUNS_FORWARD_H

#include <jansson.h>
#include <stdbool.h>

#include "http/server.h"
#include "runs/run.h"

/* The node a cancel of row (store_response_get's, of a run not in this node's memory) must go
 * to, or NULL to answer here: NULL unless the store is shared, the run unfinished, its owner
 * another node, a cluster known, and r did not itself come from a node (its x-arun-hop says
 * "answer here": never a second hop). Valid while row lives. */
const char *forward_cancel_to(const struct runs *rs, struct http_request *r, const json_t *row);

/* Sends r (POST /v1/responses/ID/cancel, tenant's response id) to node and answers r with that
 * node's answer. A node that cannot be reached gets r a 503 with Retry-After the lease, saying
 * that another node takes the run over within it. */
void forward_cancel(struct runs *rs, struct http_request *r, const char *tenant, const char *id,
                    const char *node);

#endif
