/*
 * eventlog.h: a run's event log (docs/internals/runs.md): sequence numbers, the append to the
 * store, the commit, the in-memory ring of recent committed events, and the subscribers that are
 * told when more is committed. An event reaches no subscriber before its commit.
 *
 * Each event is kept as its SSE record ("event: TYPE\nid: SEQ\ndata: JSON\n\n"), made once, so
 * every subscriber sends the same bytes without formatting them again.
 */
#ifndef ARUN_RUNS_EVENTLOG_H
#define ARUN_RUNS_EVENTLOG_H

#include <h2o/linklist.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

#define EVENTLOG_RING_MIN                                                                          \
    64 /* committed events kept for live subscribers; grows while the                              \
          uncommitted ones need room */
/* Events appended and not yet committed past which the run stops reading its engine: the store
 * is behind, and the log must not buffer without bound. Resumes at a quarter of it. */
#define EVENTLOG_MAX_UNCOMMITTED 512

struct run;

struct eventlog_entry {
    int64_t seq;
    char *sse;       /* the SSE record, heap */
    size_t len;      /* bytes of sse */
    size_t data_off; /* the JSON starts here in sse */
    size_t data_len;
    size_t type_off, type_len;
};

/* Something told on each commit besides the streams (a background POST waiting for its first
 * events to commit). */
struct eventlog_watch {
    h2o_linklist_t link;
    void (*cb)(struct eventlog_watch *w);
};

struct eventlog {
    int64_t next_seq;            /* the number the next event gets */
    int64_t committed;           /* the highest committed sequence number, -1 for none */
    struct eventlog_entry *ring; /* entries by seq & (cap - 1); NULL until the first event */
    size_t cap;                  /* a power of two */
    h2o_linklist_t subs;         /* struct stream_sub by link: told on each commit */
    h2o_linklist_t watches;      /* struct eventlog_watch by link: told after them */
    bool closed;                 /* no event will be appended any more */
    bool paused;                 /* the run asked its engine to wait (EVENTLOG_MAX_UNCOMMITTED) */
    int error;                   /* the first commit error, 0 while none */
};

/* Starts an empty log whose next event gets first_seq (0, or after a restart the stored last
 * sequence number + 1). */
void eventlog_init(struct eventlog *log, int64_t first_seq);
/* Frees the entries. Subscribers must be gone. */
void eventlog_cleanup(struct eventlog *log);

/* Appends event (taking the reference): sets its sequence_number, writes it to the store (or,
 * for a run with store:false, commits it at once) and keeps its record. Returns 0, or -errno
 * when the store refused it (-EAGAIN: too much pending; the run fails). */
int eventlog_append(struct run *r, json_t *event) MUST_USE;
/* The same for an event made as JSON text (xlate_set_emit_text): json[0..len) is a compact JSON
 * object with at least one member and without sequence_number, which is added as its last
 * member, the bytes eventlog_append would make. Copied; one allocation per event. Returns as
 * eventlog_append. */
int eventlog_append_text(struct run *r, const char *type, const char *json, size_t len) MUST_USE;
/* Whether the run should stop reading its engine now (too many events uncommitted). */
bool eventlog_backlogged(const struct eventlog *log);
/* The committed entry seq while the ring still holds it, else NULL. */
const struct eventlog_entry *eventlog_get(const struct eventlog *log, int64_t seq);
/* Adds w to be told on each commit (and on close) until eventlog_unwatch; it may unwatch itself
 * from inside its callback. */
void eventlog_watch(struct eventlog *log, struct eventlog_watch *w);
void eventlog_unwatch(struct eventlog_watch *w);
/* No event follows: subscribers end once they sent the last one. */
void eventlog_close(struct run *r);
/* The run was fenced (run_fence): no event follows here, and the subscribers end now, without
 * a terminal event (their clients resume from the store); watches are told. */
void eventlog_stop(struct run *r);
/* The last sequence number appended, -1 for none. */
static inline int64_t eventlog_last(const struct eventlog *log)
{
    return log->next_seq - 1;
}
/* Whether every appended event is committed. */
static inline bool eventlog_settled(const struct eventlog *log)
{
    return log->committed == log->next_seq - 1;
}

/* Formats one SSE record of an event into out (appended): "event: TYPE\nid: SEQ\ndata: JSON\n\n".
 * Returns 0 or -ENOBUFS (out's cap). */
struct buf;
int eventlog_format(struct buf *out, int64_t seq, const char *type, size_t type_len,
                    const char *data, size_t data_len) MUST_USE;

#endif
