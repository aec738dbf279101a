/*
 * eventlog.c: a run's event log (eventlog.h): numbering, the append to the store, the commit in
 * order, the ring, and telling subscribers.
 *
 * DESIGN
 * The ring holds every event from the oldest one still kept up to the last appended; the ones
 * after `committed` are waiting for the store. The store's writer is FIFO, so commits come back
 * in the order of the appends and `committed` only ever moves up by one: a subscriber that
 * sends everything up to `committed` can never skip or repeat a number. When the uncommitted
 * part would overwrite a kept slot the ring doubles; the run stops reading its engine at
 * EVENTLOG_MAX_UNCOMMITTED, so it stays bounded. A run with store:false has no store: its
 * events commit at once (they reach only the clients attached now).
 */
#include "runs/eventlog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "runs/run.h"
#include "runs/stream.h"

#define RECORD_TYPE_OFF 7 /* strlen("event: ") */
#define EVENT_TYPE_MAX 96 /* event types are short literals ("response.output_text.delta") */

void eventlog_init(struct eventlog *log, int64_t first_seq)
{
    memset(log, 0, sizeof(*log));
    log->next_seq = first_seq;
    log->committed = first_seq - 1;
    h2o_linklist_init_anchor(&log->subs);
    h2o_linklist_init_anchor(&log->watches);
}

void eventlog_watch(struct eventlog *log, struct eventlog_watch *w)
{
    h2o_linklist_insert(&log->watches, &w->link);
}

void eventlog_unwatch(struct eventlog_watch *w)
{
    if (h2o_linklist_is_linked(&w->link))
        h2o_linklist_unlink(&w->link);
}

void eventlog_cleanup(struct eventlog *log)
{
    for (size_t i = 0; i < log->cap; i++)
        free(log->ring[i].sse);
    free(log->ring);
    log->ring = NULL;
    log->cap = 0;
}

int eventlog_format(struct buf *out, int64_t seq, const char *type, size_t type_len,
                    const char *data, size_t data_len)
{
    int rc = buf_puts(out, "event: ");
    if (rc == 0)
        rc = buf_append(out, type, type_len);
    if (rc == 0)
        rc = buf_printf(out, "\nid: %lld\ndata: ", (long long)seq);
    if (rc == 0)
        rc = buf_append(out, data, data_len);
    if (rc == 0)
        rc = buf_puts(out, "\n\n");
    return rc;
}

/* Room for one more slot without overwriting an uncommitted event. */
static void ensure_room(struct eventlog *log)
{
    size_t uncommitted = (size_t)(log->next_seq - log->committed - 1);
    if (log->cap > 0 && uncommitted < log->cap)
        return;
    size_t cap = log->cap ? log->cap * 2 : EVENTLOG_RING_MIN;
    struct eventlog_entry *ring = xcalloc(cap, sizeof(*ring));
    for (size_t i = 0; i < log->cap; i++) {
        struct eventlog_entry *e = &log->ring[i];
        if (e->sse != NULL)
            ring[(size_t)e->seq & (cap - 1)] = *e;
    }
    free(log->ring);
    log->ring = ring;
    log->cap = cap;
}

const struct eventlog_entry *eventlog_get(const struct eventlog *log, int64_t seq)
{
    if (log->cap == 0 || seq > log->committed || seq < 0)
        return NULL;
    const struct eventlog_entry *e = &log->ring[(size_t)seq & (log->cap - 1)];
    return e->sse != NULL && e->seq == seq ? e : NULL;
}

bool eventlog_backlogged(const struct eventlog *log)
{
    return log->next_seq - log->committed - 1 >= EVENTLOG_MAX_UNCOMMITTED;
}

/* Tells every subscriber that more is committed (or that the log closed). A subscriber may
 * leave the list from inside its pump. */
static void notify(struct eventlog *log)
{
    h2o_linklist_t *node = log->subs.next;
    while (node != &log->subs) {
        h2o_linklist_t *next = node->next;
        stream_pump(H2O_STRUCT_FROM_MEMBER(struct stream_sub, link, node));
        node = next;
    }
    node = log->watches.next;
    while (node != &log->watches) {
        h2o_linklist_t *next = node->next;
        struct eventlog_watch *w = H2O_STRUCT_FROM_MEMBER(struct eventlog_watch, link, node);
        w->cb(w);
        node = next;
    }
}

/* The next uncommitted event committed (the writer is FIFO: it is the oldest). */
static void commit_one(struct run *r)
{
    struct eventlog *log = &r->log;
    log->committed++;
    metrics_add(r->rs->m_events, 1, NULL);
    if (log->paused && r->call != NULL &&
        log->next_seq - log->committed - 1 < EVENTLOG_MAX_UNCOMMITTED / 4) {
        log->paused = false;
        gateway_call_resume(r->call);
    }
    notify(log);
}

static void append_cb(int status, void *arg)
{
    struct run *r = arg;
    if (status == -ESTALE)
        run_fence(r);
    if (run_store_done(r))
        return;
    if (r->fenced) {
        /* Never sent: the event is not stored, and the run's new owner numbers its own events
         * from what is, so this number may soon name another event. */
        run_maybe_free(r);
        return;
    }
    if (status != 0 && r->log.error == 0) {
        r->log.error = status;
        log_error("runs", "response %s: an event could not be stored: %s", r->id,
                  strerror(-status));
    }
    commit_one(r); /* an event the store lost is still sent: its run fails just after */
    run_maybe_free(r);
}

/* Keeps the record made for seq (taking rec, whose JSON is rec[data_off..data_off+data_len))
 * and writes the event to the store, or commits it at once for store:false. */
static int append_record(struct run *r, char *rec, size_t len, size_t type_len, size_t data_off,
                         size_t data_len)
{
    struct eventlog *log = &r->log;
    int64_t seq = log->next_seq;
    ensure_room(log);
    struct eventlog_entry *e = &log->ring[(size_t)seq & (log->cap - 1)];
    free(e->sse);
    e->seq = seq;
    e->len = len;
    e->sse = rec;
    e->type_off = RECORD_TYPE_OFF;
    e->type_len = type_len;
    e->data_off = data_off;
    e->data_len = data_len;
    log->next_seq++;
    if (!r->rq.store) {
        commit_one(r);
        return 0;
    }
    /* The type is copied by the store: the record's "\n" after it is not a NUL, hence a copy
     * on the stack. */
    char type[EVENT_TYPE_MAX];
    memcpy(type, rec + RECORD_TYPE_OFF, type_len);
    type[type_len] = '\0';
    int rc = store_event_append(r->rs->o.store, r->tenant, r->id, seq, type, rec + data_off,
                                data_len, append_cb, r);
    if (rc != 0) {
        /* Not stored and never will be: the number is taken back so none is skipped. */
        log->next_seq--;
        free(e->sse);
        e->sse = NULL;
        return rc;
    }
    r->store_ops++;
    return 0;
}

/* json_dump_callback's sink: appends to a struct buf. */
static int dump_to_buf(const char *p, size_t n, void *arg)
{
    return buf_append(arg, p, n) == 0 ? 0 : -1;
}

int eventlog_append(struct run *r, json_t *event)
{
    ASSERT(!r->log.closed);
    int64_t seq = r->log.next_seq;
    json_object_set_new(event, "sequence_number", json_integer(seq));
    const char *type = json_string_value(json_object_get(event, "type"));
    size_t type_len = strlen(type);
    ASSERT(type_len < EVENT_TYPE_MAX);
    /* The record is made in one buffer: header, the JSON dumped straight after it, trailer. */
    struct buf b;
    buf_init(&b, SIZE_MAX);
    IGNORE_RESULT(buf_reserve(&b, 256));
    IGNORE_RESULT(buf_printf(&b, "event: %s\nid: %lld\ndata: ", type, (long long)seq));
    size_t data_off = b.len;
    IGNORE_RESULT(json_dump_callback(event, dump_to_buf, &b, JSON_COMPACT)); /* b has no cap */
    size_t data_len = b.len - data_off;
    IGNORE_RESULT(buf_puts(&b, "\n\n"));
    json_decref(event);
    size_t len = b.len;
    return append_record(r, buf_steal(&b), len, type_len, data_off, data_len);
}

int eventlog_append_text(struct run *r, const char *type, const char *json, size_t len)
{
    ASSERT(!r->log.closed);
    ASSERT(len >= 2 && json[0] == '{' && json[len - 1] == '}' && json[len - 2] != '{');
    int64_t seq = r->log.next_seq;
    size_t type_len = strlen(type);
    ASSERT(type_len < EVENT_TYPE_MAX);
    char num[24];
    int nd = snprintf(num, sizeof(num), "%lld", (long long)seq);
    static const char key[] = ",\"sequence_number\":";
    /* "event: " TYPE "\nid: " SEQ "\ndata: " JSON-without-} KEY SEQ "}\n\n": one allocation. */
    size_t data_len = len - 1 + sizeof(key) - 1 + (size_t)nd + 1;
    size_t data_off = RECORD_TYPE_OFF + type_len + 5 + (size_t)nd + 7;
    size_t total = data_off + data_len + 2;
    char *rec = xmalloc(total + 1);
    char *p = rec;
    memcpy(p, "event: ", 7);
    p += 7;
    memcpy(p, type, type_len);
    p += type_len;
    memcpy(p, "\nid: ", 5);
    p += 5;
    memcpy(p, num, (size_t)nd);
    p += nd;
    memcpy(p, "\ndata: ", 7);
    p += 7;
    memcpy(p, json, len - 1);
    p += len - 1;
    memcpy(p, key, sizeof(key) - 1);
    p += sizeof(key) - 1;
    memcpy(p, num, (size_t)nd);
    p += nd;
    memcpy(p, "}\n\n", 3);
    p += 3;
    *p = '\0';
    ASSERT((size_t)(p - rec) == total);
    return append_record(r, rec, total, type_len, data_off, data_len);
}

void eventlog_close(struct run *r)
{
    r->log.closed = true;
    notify(&r->log);
}

void eventlog_stop(struct run *r)
{
    struct eventlog *log = &r->log;
    log->closed = true;
    h2o_linklist_t *node = log->subs.next;
    while (node != &log->subs) {
        h2o_linklist_t *next = node->next;
        stream_end(H2O_STRUCT_FROM_MEMBER(struct stream_sub, link, node));
        node = next;
    }
    notify(log); /* the subscribers are gone: only the watches are told */
}
