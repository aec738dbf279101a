/*
 * warm.c: the warm upstream connections of ready local engines. See warm.h.
 *
 * It owns, per engine, the port its pool was asked for (so the pool is dropped for that port
 * even when the engine's port is gone by the time it stops) and its subscription to the event
 * bus. The pool itself, its sizing from recent concurrency and its refills are httpc's
 * (docs/internals/httpc.md); this module only says when an engine's pool should exist.
 *
 * Why the event bus: every state change goes through the supervisor's one setter, which
 * publishes engine.state synchronously, so no path into or out of `ready` is missed, and
 * neither the supervisor nor the gateway needs to know about warm connections.
 */
#include "gateway/warm.h"

#include <jansson.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"

struct warm {
    struct supervisor *sup;
    struct httpc *httpc;
    struct events *events;
    struct events_sub *sub;
    uint16_t *port; /* per engine (supervisor_engine_at order): the port warmed, 0 = none */
    size_t n;
};

static void engine_cold(struct warm *w, size_t i)
{
    if (w->port[i] == 0)
        return;
    struct httpc_endpoint to = {.host = "127.0.0.1", .port = w->port[i]};
    IGNORE_RESULT(httpc_prewarm(w->httpc, &to, 0)); /* 0 forgets: nothing to fail */
    w->port[i] = 0;
}

static void engine_warm(struct warm *w, size_t i, struct engine *e)
{
    uint16_t port = engine_port(e);
    if (engine_backend(e) == CONFIG_BACKEND_REMOTE || port == 0)
        return;
    if (w->port[i] != 0 && w->port[i] != port)
        engine_cold(w, i);
    struct httpc_endpoint to = {.host = "127.0.0.1", .port = port};
    int rc = httpc_prewarm(w->httpc, &to, engine_config(e)->max_concurrency);
    if (rc == 0)
        w->port[i] = port;
    else if (rc != -EAFNOSUPPORT) /* native transport off: nothing to keep */
        log_warn_errno("gateway", rc, "cannot keep connections to %s warm", engine_name(e));
}

/* Brings engine i's pool in line with its state. */
static void follow(struct warm *w, size_t i)
{
    struct engine *e = supervisor_engine_at(w->sup, i);
    if (engine_state(e) == ENGINE_READY)
        engine_warm(w, i, e);
    else
        engine_cold(w, i);
}

static void event_cb(uint64_t id, const char *type, const char *json, void *arg)
{
    struct warm *w = arg;
    if (strcmp(type, "engine.state") != 0)
        return;
    json_t *doc = json_loads(json, 0, NULL);
    const char *name = json_string_value(json_object_get(json_object_get(doc, "data"), "engine"));
    for (size_t i = 0; name != NULL && i < w->n; i++) {
        if (strcmp(engine_name(supervisor_engine_at(w->sup, i)), name) == 0)
            follow(w, i);
    }
    json_decref(doc);
}

struct warm *warm_new(struct supervisor *sup, struct httpc *httpc, struct events *events)
{
    struct warm *w = xcalloc(1, sizeof(*w));
    w->sup = sup;
    w->httpc = httpc;
    w->events = events;
    w->n = supervisor_count(sup);
    w->port = xcalloc(w->n ? w->n : 1, sizeof(*w->port));
    for (size_t i = 0; i < w->n; i++)
        follow(w, i);
    w->sub = events_subscribe(events, events_last_id(events), EVENTS_ALL, event_cb, w);
    return w;
}

void warm_free(struct warm *w)
{
    if (w == NULL)
        return;
    events_unsubscribe(w->events, w->sub);
    for (size_t i = 0; i < w->n; i++)
        engine_cold(w, i);
    free(w->port);
    free(w);
}
