/*
 * events.h: the runtime event bus behind GET /v1/events. Modules publish events (an engine
 * changed state, a run changed status, a restart or a fallback happened); subscribers (SSE
 * clients, tests) receive them in order. The bus keeps the last EVENTS_RING events so a client
 * that reconnects with Last-Event-ID misses nothing that is still in the ring.
 *
 * Loop thread only. An event is {"id":N,"type":"engine.state","time":…,"data":{…}}.
 *
 * Tenancy: an event that concerns one tenant's objects (a run's status) is published with that
 * tenant (events_publish_tenant); every other event (engines, queues, fallbacks) is the
 * system's. A subscriber says what it may see: EVENTS_ALL (an admin, an internal module), or one
 * tenant, which then receives only that tenant's events, replayed or live, never the system's.
 * The filter is here rather than in each subscriber, so none can forget it; an event published
 * without a tenant is shown to admins only (a forgotten tenant hides an event, never leaks it).
 */
#ifndef ARUN_CORE_EVENTS_H
#define ARUN_CORE_EVENTS_H

#include <jansson.h>
#include <stdint.h>

#include "core/common.h"

#define EVENTS_RING 1024 /* enough for a console to reconnect after a blip */
/* A subscriber that sees every event. Tenant names are [a-z0-9][a-z0-9._-]*: none is "*". */
#define EVENTS_ALL "*"

struct events;
struct events_sub;

/* Receives one event, serialised as compact JSON (valid during the call only). A subscriber may
 * unsubscribe itself (and only itself) from inside the callback. */
typedef void (*events_cb)(uint64_t id, const char *type, const char *json, void *arg);

struct events *events_new(void);
/* Frees the bus; every subscriber must be gone (asserted). */
void events_free(struct events *ev);

/* Publishes a system event (seen by EVENTS_ALL subscribers only); takes the reference to data
 * (an object, may be NULL). Returns its id. */
uint64_t events_publish(struct events *ev, const char *type, json_t *data);
/* Publishes an event about one tenant's objects (tenant non-NULL): seen by EVENTS_ALL
 * subscribers and by that tenant's. Takes the reference to data. Returns its id. */
uint64_t events_publish_tenant(struct events *ev, const char *tenant, const char *type,
                               json_t *data);

/* Subscribes to what `tenant` may see: EVENTS_ALL for every event, else a tenant's name for
 * that tenant's events only (non-NULL; copied). Events with id > after_id still in the ring
 * (and visible to it) are delivered first, synchronously, then live ones: pass
 * events_last_id() to receive only new events. */
struct events_sub *events_subscribe(struct events *ev, uint64_t after_id, const char *tenant,
                                    events_cb cb, void *arg);
void events_unsubscribe(struct events *ev, struct events_sub *sub);

uint64_t events_last_id(const struct events *ev);

#endif
