/*
 * stream.h: one SSE subscriber of a run's events (docs/internals/runs.md): it replays from the
 * store what the run's ring no longer holds, then follows the live events as they commit, and
 * ends after the last event of a finished run. Its whole state is the next sequence number to
 * send, so the handover from replay to live can neither skip nor repeat one.
 *
 * A run that lives on another node (a shared store) is followed instead (follow.h): the stream
 * reads the store from its next number each time it is woken, and ends after the run's terminal
 * event, or when the run's row says it ended and nothing more is stored.
 *
 * A slow client never slows the run or the other subscribers: when its SSE backlog is high the
 * subscriber stops taking events, and when it drains it goes on from its next number, reading
 * the store if the ring has moved on.
 */
#ifndef ARUN_RUNS_STREAM_H
#define ARUN_RUNS_STREAM_H

#include <h2o/linklist.h>
#include <stdbool.h>
#include <stdint.h>

#include "http/server.h"
#include "http/sse.h"
#include "runs/run.h"

#define STREAM_PAGE 256 /* events read from the store at a time */

struct stream_sub {
    struct runs *rs;
    struct run *run;        /* the live run (held), or NULL: a finished one read from the store */
    struct sse_stream *sse; /* NULL once ended or gone */
    int64_t next;           /* the next sequence number to send */
    bool reading;           /* a store read is in flight (it frees a gone subscriber) */
    bool gone;              /* the client left or the stream ended */
    h2o_linklist_t link;    /* in run->log.subs while live */
    h2o_linklist_t all;     /* in the api's list of every subscriber, for shutdown */
    struct follow *follow;  /* while following a run on another node (follow.c), else NULL */
    h2o_linklist_t flink;   /* in that registry */
    bool dirty;             /* following: woken while a read was out, so read again after it */
    bool row_finished;      /* following: the run's row says it ended */
    char tenant[STORE_TENANT_MAX + 1];
    char id[STORE_ID_MAX + 1];
};

/* Answers r with an SSE stream of tenant's response id: the events after sequence number
 * `after` (-1: all), following run (live, found with the same tenant; may be NULL for a
 * finished run that is only in the store: the stream ends when the store has no more).
 * all: the caller's list of subscribers (for shutdown). The subscriber is the stream's: it
 * frees itself when the stream ends. */
void stream_open(struct runs *rs, struct http_request *r, struct run *run, const char *tenant,
                 const char *id, int64_t after, h2o_linklist_t *all);
/* Answers r with an SSE stream of tenant's response id, unfinished on another node: the events
 * after `after` from the store, then each one as that node commits it, until the terminal one
 * (follow.h). If this node takes the run over meanwhile, the stream follows it in memory. */
void stream_follow(struct runs *rs, struct http_request *r, const char *tenant, const char *id,
                   int64_t after, h2o_linklist_t *all);
/* A followed run may have more stored (a notice, the re-read timer): reads it now, or once the
 * read in flight is back. */
void stream_wake(struct stream_sub *s);
/* Sends what is committed and not yet sent, as far as the client takes it. The event log calls
 * it on each commit. */
void stream_pump(struct stream_sub *s);
/* Ends the stream now (server shutdown): the client resumes later with starting_after. */
void stream_end(struct stream_sub *s);

#endif
