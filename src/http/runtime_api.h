/*
 * runtime_api.h: the endpoints about arun itself: GET /healthz, GET /readyz, GET /metrics,
 * GET /v1/events (contract section 4, "Runtime") and GET /v1/whoami (who a request acts for).
 *
 * /readyz asks readiness checks that higher layers register (the store says whether it can
 * write), so this layer never includes them.
 */
#ifndef ARUN_HTTP_RUNTIME_API_H
#define ARUN_HTTP_RUNTIME_API_H

#include <stdbool.h>

#include "core/events.h"
#include "core/metrics.h"
#include "http/server.h"

struct runtime_api;

/* Answers whether a part is ready; on false, writes a sentence saying why into why. */
typedef bool (*runtime_ready_fn)(void *arg, struct buf *why);

/* Registers the runtime routes on srv. metrics and events are not owned. */
struct runtime_api *runtime_api_new(struct http_server *srv, struct metrics *metrics,
                                    struct events *events);
/* Adds a readiness check named name ("store"); /readyz is 200 only while all say ready. */
void runtime_api_add_ready(struct runtime_api *api, const char *name, runtime_ready_fn fn,
                           void *arg);
/* Ends every event stream and frees the API. Call after the server drained. */
void runtime_api_free(struct runtime_api *api);

#endif
