/*
 * events.c: in-memory publish/subscribe with a replay ring. See events.h.
 *
 * Delivery is synchronous from events_publish(). A callback may unsubscribe itself: while a
 * publish is running, unsubscribe only marks the entry dead, so the walk can still read its
 * `next` after the call; dead entries are reaped when the outermost publish returns. A
 * subscriber added during a publish goes to the head of the list, behind the walk: it hears
 * only later events (its replay already gave it this one).
 *
 * Each entry keeps its tenant (NULL: a system event) and each subscriber its scope; visible()
 * is the one place that compares them, for the replay and for live delivery alike, so a
 * tenant's subscriber resuming with Last-Event-ID gets the same filter as a live one.
 */
#include "core/events.h"

#include <stdbool.h>
#include <string.h>

#include "core/clock.h"

struct entry {
    uint64_t id;
    char *type;
    char *json;
    char *tenant; /* whose objects it concerns; NULL: the system's (admins only) */
};

struct events_sub {
    events_cb cb;
    void *arg;
    int dead;
    char *tenant; /* NULL: every event (EVENTS_ALL); else that tenant's only */
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
        free(ev->ring[i].tenant);
    }
    free(ev);
}

static void sub_free(struct events_sub *s)
{
    free(s->tenant);
    free(s);
}

/* Whether s may see e: an EVENTS_ALL subscriber sees everything, a tenant's only its own. */
static bool visible(const struct events_sub *s, const struct entry *e)
{
    return s->tenant == NULL || (e->tenant != NULL && strcmp(s->tenant, e->tenant) == 0);
}

static void reap(struct events *ev)
{
    struct events_sub **pp = &ev->subs;
    while (*pp != NULL) {
        struct events_sub *s = *pp;
        if (s->dead) {
            *pp = s->next;
            sub_free(s);
        } else {
            pp = &s->next;
        }
    }
}

uint64_t events_publish_tenant(struct events *ev, const char *tenant, const char *type,
                               json_t *data)
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
    free(e->tenant);
    *e = (struct entry){.id = id,
                        .type = xstrdup(type),
                        .json = json,
                        .tenant = tenant != NULL ? xstrdup(tenant) : NULL};

    ev->publishing++;
    for (struct events_sub *s = ev->subs; s != NULL; s = s->next) {
        if (!s->dead && visible(s, e))
            s->cb(id, e->type, e->json, s->arg);
    }
    if (--ev->publishing == 0)
        reap(ev);
    return id;
}

uint64_t events_publish(struct events *ev, const char *type, json_t *data)
{
    return events_publish_tenant(ev, NULL, type, data);
}

struct events_sub *events_subscribe(struct events *ev, uint64_t after_id, const char *tenant,
                                    events_cb cb, void *arg)
{
    ASSERT(tenant != NULL); /* a subscriber always says what it may see */
    struct events_sub *s = xcalloc(1, sizeof(*s));
    s->cb = cb;
    s->arg = arg;
    s->tenant = strcmp(tenant, EVENTS_ALL) == 0 ? NULL : xstrdup(tenant);
    uint64_t first = ev->last_id >= EVENTS_RING ? ev->last_id - EVENTS_RING + 1 : 1;
    if (after_id + 1 > first)
        first = after_id + 1;
    for (uint64_t id = first; id <= ev->last_id; id++) {
        struct entry *e = &ev->ring[id % EVENTS_RING];
        if (visible(s, e))
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
            sub_free(sub);
            return;
        }
    }
    ASSERT(!"unsubscribe of an unknown subscriber");
}

uint64_t events_last_id(const struct events *ev)
{
    return ev->last_id;
}
