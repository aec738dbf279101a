/*
 * events.c: in-memory publish/subscribe with a replay ring. See events.h.
 *
 * Delivery is synchronous from events_publish(). A callback may unsubscribe itself: while a
 * publish is running, unsubscribe only marks the entry dead, so the walk can still read its
 * `next` after the call; dead entries are reaped when the outermost publish returns. A
 * subscriber added during a publish goes to the head of the list, behind the walk: it hears
 * only later events (its replay already gave it this one).
 */
#include "core/events.h"

#include <string.h>

#include "core/clock.h"

struct entry {
    uint64_t id;
    char *type;
    char *json;
};

struct events_sub {
    events_cb cb;
    void *arg;
    int dead;
    struct events_sub *next;
};

struct events {
    struct entry ring[EVENTS_RING];
    uint64_t last_id;
    struct events_sub *subs;
    int publishing; /* nesting depth of events_publish */
};

struct events *events_new(void)
{
    return xcalloc(1, sizeof(struct events));
}

void events_free(struct events *ev)
{
    if (ev == NULL)
        return;
    ASSERT(ev->subs == NULL);
    for (size_t i = 0; i < EVENTS_RING; i++) {
        free(ev->ring[i].type);
        free(ev->ring[i].json);
    }
    free(ev);
}

static void reap(struct events *ev)
{
    struct events_sub **pp = &ev->subs;
    while (*pp != NULL) {
        struct events_sub *s = *pp;
        if (s->dead) {
            *pp = s->next;
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

uint64_t events_publish(struct events *ev, const char *type, json_t *data)
{
    uint64_t id = ++ev->last_id;
    json_t *obj = json_pack("{s:I, s:s, s:I, s:o}", "id", (json_int_t)id, "type", type, "time_ms",
                            (json_int_t)clock_wall_ms(), "data", data ? data : json_object());
    char *json = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    ASSERT(json != NULL);

    struct entry *e = &ev->ring[id % EVENTS_RING];
    free(e->type);
    free(e->json);
    *e = (struct entry){.id = id, .type = xstrdup(type), .json = json};

    ev->publishing++;
    for (struct events_sub *s = ev->subs; s != NULL; s = s->next) {
        if (!s->dead)
            s->cb(id, e->type, e->json, s->arg);
    }
    if (--ev->publishing == 0)
        reap(ev);
    return id;
}

struct events_sub *events_subscribe(struct events *ev, uint64_t after_id, events_cb cb, void *arg)
{
    struct events_sub *s = xcalloc(1, sizeof(*s));
    s->cb = cb;
    s->arg = arg;
    uint64_t first = ev->last_id >= EVENTS_RING ? ev->last_id - EVENTS_RING + 1 : 1;
    if (after_id + 1 > first)
        first = after_id + 1;
    for (uint64_t id = first; id <= ev->last_id; id++) {
        struct entry *e = &ev->ring[id % EVENTS_RING];
        cb(e->id, e->type, e->json, arg);
    }
    s->next = ev->subs;
    ev->subs = s;
    return s;
}

void events_unsubscribe(struct events *ev, struct events_sub *sub)
{
    if (ev->publishing > 0) {
        sub->dead = 1;
        return;
    }
    for (struct events_sub **pp = &ev->subs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == sub) {
            *pp = sub->next;
            free(sub);
            return;
        }
    }
    ASSERT(!"unsubscribe of an unknown subscriber");
}

uint64_t events_last_id(const struct events *ev)
{
    return ev->last_id;
}
