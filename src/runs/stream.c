/*
 * stream.c: SSE subscribers of runs (stream.h).
 *
 * DESIGN
 * A subscriber's one piece of state is `next`, the sequence number it sends next. pump() loops:
 * while next <= the run's committed number it sends the ring's record if the ring still holds
 * next, else it reads a page from the store after next - 1 and comes back when the page does;
 * when it is caught up it waits for the next commit (the event log calls pump again). The store
 * has every committed event, and nothing beyond committed is ever sent, so whichever source
 * served a number, the next one is next + 1: no gap, no duplicate, whatever the timing of the
 * handover.
 *
 * The client's backlog is checked before every write: past half of SSE_MAX_PENDING the
 * subscriber stops and the drain callback resumes it; what it skipped is read from the store.
 *
 * Lifetime: the subscriber is heap memory of its own; the sse stream lives in the request's
 * pool. When the client leaves, the stream is forgotten at once, and the subscriber is freed
 * at once or, with a store read in flight, by that read's callback.
 */
#include "runs/stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "runs/follow.h"

static void detach(struct stream_sub *s)
{
    follow_remove(s);
    if (h2o_linklist_is_linked(&s->link))
        h2o_linklist_unlink(&s->link);
    if (h2o_linklist_is_linked(&s->all))
        h2o_linklist_unlink(&s->all);
    struct run *run = s->run;
    s->run = NULL;
    if (run != NULL)
        run_release(run);
}

/* The stream is over for us (ended or the client left): frees s unless a read still owes it. */
static void finish(struct stream_sub *s)
{
    s->gone = true;
    s->sse = NULL;
    detach(s);
    if (!s->reading)
        free(s);
}

void stream_end(struct stream_sub *s)
{
    if (s->sse != NULL)
        sse_end(s->sse);
    finish(s);
}

static void close_cb(struct sse_stream *sse, void *arg)
{
    finish(arg);
}

static void drain_cb(struct sse_stream *sse, void *arg)
{
    stream_pump(arg);
}

static bool backlogged(const struct stream_sub *s)
{
    return sse_pending(s->sse) >= SSE_MAX_PENDING / 2;
}

/* Writes one record; false when the stream cannot take it (the client is gone or hopeless). */
static bool send_record(struct stream_sub *s, const char *rec, size_t len)
{
    int rc = sse_write_raw(s->sse, rec, len);
    if (rc == 0)
        return true;
    /* -ENOBUFS: one record larger than what the stream may hold; -EPIPE: over. */
    log_warn("runs", "stream of %s stopped at event %lld: %s", s->id, (long long)s->next,
             strerror(-rc));
    sse_abort(s->sse);
    finish(s);
    return false;
}

/* Whether an event of this type is a run's last (a cancelled run has none: its row says it). */
static bool terminal_type(const char *type, size_t len)
{
    static const char *const ends[] = {"response.completed", "response.failed",
                                       "response.incomplete"};
    for (size_t i = 0; i < ARRAY_SIZE(ends); i++)
        if (len == strlen(ends[i]) && memcmp(type, ends[i], len) == 0)
            return true;
    return false;
}

/* One "SEQ TYPE DATA" line of a store page into an SSE record. Returns the sequence number, or
 * -1 for a line that is not one (never from our store; skipped); *terminal: whether its type
 * ends a run. */
static int64_t frame_line(const char *line, size_t len, struct buf *out, bool *terminal)
{
    char *end;
    long long seq = strtoll(line, &end, 10);
    if (end == line || *end != ' ')
        return -1;
    const char *type = end + 1;
    const char *sp = memchr(type, ' ', len - (size_t)(type - line));
    if (sp == NULL)
        return -1;
    const char *data = sp + 1;
    size_t data_len = len - (size_t)(data - line);
    *terminal = terminal_type(type, (size_t)(sp - type));
    if (eventlog_format(out, seq, type, (size_t)(sp - type), data, data_len) != 0)
        return -1;
    return seq;
}

static void read_store(struct stream_sub *s);
static void after_follow_read(struct stream_sub *s, size_t lines, bool more, bool terminal);

static void read_cb(int status, const char *value, size_t len, void *arg)
{
    struct stream_sub *s = arg;
    s->reading = false;
    if (s->gone) {
        free(s);
        return;
    }
    if (status != 0) {
        log_warn("runs", "replaying %s from the store failed: %s", s->id, strerror(-status));
        sse_abort(s->sse);
        finish(s);
        return;
    }
    size_t lines = 0;
    bool terminal = false;
    const char *p = value, *end = value + len;
    struct buf rec;
    buf_init(&rec, SIZE_MAX);
    while (p < end && !backlogged(s)) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t llen = nl ? (size_t)(nl - p) : (size_t)(end - p);
        buf_reset(&rec);
        bool last = false;
        int64_t seq = frame_line(p, llen, &rec, &last);
        p += llen + 1;
        lines++;
        if (seq != s->next)
            continue; /* the store answers in order from next: only a bug gets here */
        if (!send_record(s, rec.data, rec.len)) {
            buf_cleanup(&rec);
            return;
        }
        s->next++;
        terminal = terminal || last;
    }
    buf_cleanup(&rec);
    if (s->follow != NULL) {
        after_follow_read(s, lines, p < end || lines >= STREAM_PAGE, terminal);
        return;
    }
    if (s->run == NULL && lines == 0) {
        stream_end(s); /* a finished run's last event was sent */
        return;
    }
    stream_pump(s);
}

static void read_store(struct stream_sub *s)
{
    int rc =
        store_events_read(s->rs->o.store, s->tenant, s->id, s->next - 1, STREAM_PAGE, read_cb, s);
    if (rc == 0) {
        s->reading = true;
        return;
    }
    log_warn("runs", "replaying %s: the store refused the read: %s", s->id, strerror(-rc));
    sse_abort(s->sse);
    finish(s);
}

/* ---- following a run on another node (follow.h) ---- */

/* This node runs the run now (it took it over): the stream follows it in memory from its next
 * number, as any live subscriber. Returns whether it did. */
static bool go_live(struct stream_sub *s)
{
    struct run *run = run_find(s->rs, s->tenant, s->id);
    if (run == NULL)
        return false;
    follow_remove(s);
    s->run = run;
    run_hold(run);
    h2o_linklist_insert(&run->log.subs, &s->link);
    stream_pump(s);
    return true;
}

static void row_read_cb(int status, const char *value, size_t len, void *arg)
{
    struct stream_sub *s = arg;
    s->reading = false;
    if (s->gone) {
        free(s);
        return;
    }
    if (status == -ENOENT) { /* deleted meanwhile: nothing more will come */
        stream_end(s);
        return;
    }
    if (status != 0) {
        log_warn("runs", "following %s: its row could not be read: %s", s->id, strerror(-status));
        sse_abort(s->sse);
        finish(s);
        return;
    }
    json_t *row = json_loadb(value, len, 0, NULL);
    enum run_status st = run_status_parse(json_string_value(json_object_get(row, "status")));
    json_decref(row);
    if (st != RUN_NSTATUS && st >= RUN_COMPLETED)
        s->row_finished = true;
    if (go_live(s))
        return;
    if (s->row_finished || s->dirty) {
        s->dirty = false;
        read_store(s);
    }
}

/* The run's row, when a read found no event after next: a run that ended with no event of its
 * end (cancelled) says so only there. */
static void read_row(struct stream_sub *s)
{
    int rc = store_response_get(s->rs->o.store, s->tenant, s->id, row_read_cb, s);
    if (rc == 0) {
        s->reading = true;
        return;
    }
    log_warn("runs", "following %s: the store refused to read its row: %s", s->id, strerror(-rc));
    sse_abort(s->sse);
    finish(s);
}

/* After a read of a followed run: ends at its terminal event, reads on while there may be more
 * (a full page, a wake during the read, a row that said it ended), checks the row when nothing
 * new came, else waits to be woken. */
static void after_follow_read(struct stream_sub *s, size_t lines, bool more, bool terminal)
{
    if (terminal) {
        stream_end(s);
        return;
    }
    if (backlogged(s))
        return; /* drain_cb comes back */
    if (more || s->dirty || (s->row_finished && lines > 0)) {
        s->dirty = false;
        read_store(s);
    } else if (s->row_finished) {
        stream_end(s); /* it ended and every event of it was sent */
    } else if (lines == 0) {
        read_row(s);
    }
}

void stream_wake(struct stream_sub *s)
{
    if (s->gone || s->follow == NULL)
        return;
    if (s->reading) {
        s->dirty = true;
        return;
    }
    if (backlogged(s) || go_live(s))
        return;
    read_store(s);
}

void stream_pump(struct stream_sub *s)
{
    while (!s->gone && !s->reading) {
        if (backlogged(s))
            return; /* drain_cb comes back */
        struct run *run = s->run;
        if (run == NULL) {
            read_store(s);
            return;
        }
        if (s->next > run->log.committed) {
            if (run->log.closed && s->next > eventlog_last(&run->log))
                stream_end(s);
            return; /* the next commit comes back */
        }
        const struct eventlog_entry *e = eventlog_get(&run->log, s->next);
        if (e == NULL) {
            read_store(s);
            return;
        }
        if (!send_record(s, e->sse, e->len))
            return;
        s->next++;
    }
}

static struct stream_sub *sub_new(struct runs *rs, const char *tenant, const char *id,
                                  int64_t after)
{
    struct stream_sub *s = xcalloc(1, sizeof(*s));
    s->rs = rs;
    s->next = after + 1;
    snprintf(s->tenant, sizeof(s->tenant), "%s", tenant);
    snprintf(s->id, sizeof(s->id), "%s", id);
    return s;
}

void stream_follow(struct runs *rs, struct http_request *r, const char *tenant, const char *id,
                   int64_t after, h2o_linklist_t *all)
{
    struct stream_sub *s = sub_new(rs, tenant, id, after);
    follow_add(rs, s);
    h2o_linklist_insert(all, &s->all);
    s->sse = sse_start(r, close_cb, drain_cb, s);
    stream_pump(s); /* the replay; then after_follow_read decides */
}

void stream_open(struct runs *rs, struct http_request *r, struct run *run, const char *tenant,
                 const char *id, int64_t after, h2o_linklist_t *all)
{
    /* The store reads of the replay use s->tenant: a live run is the same tenant's (run_find). */
    ASSERT(run == NULL || strcmp(run->tenant, tenant) == 0);
    struct stream_sub *s = sub_new(rs, tenant, id, after);
    if (run != NULL) {
        s->run = run;
        run_hold(run);
        h2o_linklist_insert(&run->log.subs, &s->link);
    }
    h2o_linklist_insert(all, &s->all);
    s->sse = sse_start(r, close_cb, drain_cb, s);
    stream_pump(s); /* may end s already: a finished run with nothing after `after` */
}
