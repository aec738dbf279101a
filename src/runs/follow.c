/*
 * follow.c: who follows which run on another node (follow.h). It owns the registry of following
 * streams, the store listener of the runs and the re-read timer; the reading, framing and
 * ending of each stream are stream.c's (stream_wake).
 *
 * DESIGN
 * Followers are hashed by response id into FOLLOW_BUCKETS lists, so a notice (one per write
 * batch that touched a run) wakes only the followers of its run. A RESYNC, and the timer every
 * FOLLOW_REREAD_MS while anyone follows, wakes them all: a notice is a hint, the store is the
 * truth, and a follower woken with nothing new costs one read. The listener's arg is the runs
 * registry, which outlives it in practice: runs_free runs just before store_close in the same
 * turn of the loop, and store_close stops the notices; a closing registry ignores them.
 */
#include "runs/follow.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct follow {
    h2o_linklist_t buckets[FOLLOW_BUCKETS]; /* struct stream_sub by flink */
    size_t count;
    uv_timer_t *timer; /* heap: closed asynchronously, after the registry is gone */
    bool listening;    /* store_listen was called (once) */
};

static uint32_t bucket_of(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % FOLLOW_BUCKETS;
}

/* Wakes every follower in list (a stream may leave it while woken: the next one is kept). */
static void wake_list(h2o_linklist_t *list, const char *tenant, const char *id)
{
    h2o_linklist_t *node = list->next;
    while (node != list) {
        h2o_linklist_t *next = node->next;
        struct stream_sub *s = H2O_STRUCT_FROM_MEMBER(struct stream_sub, flink, node);
        if (id == NULL || (strcmp(s->id, id) == 0 && strcmp(s->tenant, tenant) == 0))
            stream_wake(s);
        node = next;
    }
}

static void wake_all(struct follow *f)
{
    for (size_t b = 0; b < FOLLOW_BUCKETS; b++)
        wake_list(&f->buckets[b], NULL, NULL);
}

static void notice_cb(enum store_notice kind, const char *tenant, const char *id, void *arg)
{
    struct runs *rs = arg;
    struct follow *f = rs->follow;
    if (rs->closing || f == NULL || f->count == 0)
        return;
    if (kind == STORE_NOTICE_EVENTS && tenant != NULL && id != NULL)
        wake_list(&f->buckets[bucket_of(id)], tenant, id);
    else if (kind == STORE_NOTICE_RESYNC)
        wake_all(f);
}

static void timer_cb(uv_timer_t *t)
{
    wake_all(t->data);
}

static struct follow *registry(struct runs *rs)
{
    if (rs->follow != NULL)
        return rs->follow;
    struct follow *f = xcalloc(1, sizeof(*f));
    for (size_t b = 0; b < FOLLOW_BUCKETS; b++)
        h2o_linklist_init_anchor(&f->buckets[b]);
    f->timer = xcalloc(1, sizeof(*f->timer));
    uv_timer_init(rs->o.loop, f->timer);
    f->timer->data = f;
    int rc = store_listen(rs->o.store, notice_cb, rs);
    if (rc != 0)
        log_warn("runs",
                 "cannot listen for the store's notices (%s): streams of runs on other nodes "
                 "are read every %d ms instead of at once",
                 strerror(-rc), FOLLOW_REREAD_MS);
    f->listening = rc == 0;
    rs->follow = f;
    return f;
}

void follow_add(struct runs *rs, struct stream_sub *s)
{
    struct follow *f = registry(rs);
    s->follow = f;
    h2o_linklist_insert(&f->buckets[bucket_of(s->id)], &s->flink);
    if (f->count++ == 0)
        uv_timer_start(f->timer, timer_cb, FOLLOW_REREAD_MS, FOLLOW_REREAD_MS);
}

void follow_remove(struct stream_sub *s)
{
    struct follow *f = s->follow;
    if (f == NULL)
        return;
    s->follow = NULL;
    h2o_linklist_unlink(&s->flink);
    if (--f->count == 0)
        uv_timer_stop(f->timer);
}

static void timer_closed_cb(uv_handle_t *h)
{
    free(h);
}

void follow_free(struct runs *rs)
{
    struct follow *f = rs->follow;
    if (f == NULL)
        return;
    ASSERT(f->count == 0); /* the api ended every stream before the runs go */
    uv_close((uv_handle_t *)f->timer, timer_closed_cb);
    free(f);
    rs->follow = NULL;
}
