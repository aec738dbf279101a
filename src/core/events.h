/*
 * events.h: the runtime event bus behind GET /v1/events. Modules publish events (an engine
 * changed state, a run changed status, a restart or a fallback happened); subscribers (SSE
 * clients, tests) receive them in order. The bus keeps the last EVENTS_RING events so a client
 * that reconnects with Last-Event-ID misses nothing that is still in the ring.
 *
 * Loop thread only. An event is {"id":N,"type":"engine.state","time":…,"data":{…}}.
 */
#ifndef ARUN_CORE_EVENTS_H
#define ARUN_CORE_EVENTS_H

#include <jansson.h>
#include <stdint.h>

#include "core/common.h"

#define EVENTS_RING 1024 /* enough for a console to reconnect after a blip */

struct events;
struct events_sub;

/* Receives one event, serialised as compact JSON (valid during the call only). A subscriber may
 * unsubscribe itself (and only itself) from inside the callback. */
typedef void (*events_cb)(uint64_t id, const char *type, const char *json, void *arg);

struct events *events_new(void);
/* Frees the bus; every subscriber must be gone (asserted). */
void events_free(struct events *ev);

/* Publishes an event; takes the reference to data (an object, may be NULL). Returns its id. */
uint64_t events_publish(struct events *ev, const char *type, json_t *data);

/* Subscribes. Events with id > after_id still in the ring are delivered first, synchronously,
 * then live ones: pass events_last_id() to receive only new events. */
struct events_sub *events_subscribe(struct events *ev, uint64_t after_id, events_cb cb, void *arg);
void events_unsubscribe(struct events *ev, struct events_sub *sub);

uint64_t events_last_id(const struct events *ev);

#endif
