/*
 * api.h: the engines' HTTP API (contract section 4, "Engines (admin)"):
 *   GET  /v1/engines                      the list
 *   GET  /v1/engines/NAME                 one engine
 *   POST /v1/engines/NAME/start|stop|restart
 *   GET  /v1/engines/NAME/logs?tail=N     text; &follow=1 streams new lines as SSE
 *   GET  /v1/node                         the memory envelope of the node and its use
 */
#ifndef ARUN_ENGINES_API_H
#define ARUN_ENGINES_API_H

#include "engines/supervisor.h"
#include "http/server.h"
#include "tenancy/audit.h"

struct engines_api;

/* Registers the routes above on srv. audit (not owned, or NULL) records each start, stop and
 * restart of an engine (actions engine.start|stop|restart). */
struct engines_api *engines_api_new(struct http_server *srv, struct supervisor *sup,
                                    struct audit *audit);
/* Ends log followers and frees. */
void engines_api_free(struct engines_api *api);

#endif
