/*
 * warm.h: keeps connections to each ready local engine open ahead of the gateway's requests
 * (httpc_prewarm), so a request, the first after a start included, does not wait for a TCP
 * connect. It follows the engines' state changes on the event bus: an engine that becomes
 * ready gets a warm pool of at most its max_concurrency connections; one that leaves ready
 * (stopping, unhealthy, failed) has its pool dropped. Remote engines have none.
 */
#ifndef ARUN_GATEWAY_WARM_H
#define ARUN_GATEWAY_WARM_H

#include "core/events.h"
#include "engines/supervisor.h"
#include "http/httpc.h"

struct warm;

/* Starts following events for sup's engines; engines already ready are warmed now. All three
 * must outlive the struct warm. */
struct warm *warm_new(struct supervisor *sup, struct httpc *httpc, struct events *events);
/* Stops following and drops every pool it asked for. NULL is a no-op. */
void warm_free(struct warm *w);

#endif
