/*
 * watch.h: following a durable response's events to the end of its run, across dropped
 * connections (`arun runs watch ID`, `arun chat --background`). The stream is the server's
 * GET /v1/responses/ID?stream=true[&starting_after=N] (docs/responses.md): stored events
 * replayed, then live ones. When the connection drops before the run ends, the watcher connects
 * again with starting_after = the last sequence number it took, after a bounded backoff, so a
 * person sees the answer once, whole, as if nothing had happened.
 *
 * The state (struct watch) is pure: events in, text out, so the resume rules are unit-tested
 * without a server. watch_follow() is the loop around it that talks to the server.
 */
#ifndef ARUN_CLI_WATCH_H
#define ARUN_CLI_WATCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli/client.h"
#include "core/buf.h"

#define WATCH_BACKOFF_FIRST_MS 100   /* a dropped stream is usually back at once */
#define WATCH_BACKOFF_MAX_MS 2000    /* a restarting server is polled no more than this slowly */
#define WATCH_RECONNECT_DEFAULT_S 60 /* a restart with recovery takes seconds, not a minute */
#define WATCH_SKIPPED 1              /* watch_feed: an event taken before, ignored */

/* What the watcher knows of the run. */
struct watch {
    int64_t last_seq; /* the highest sequence_number taken, -1 before the first */
    bool ended;       /* the run reached a final status */
    char status[16];  /* that status once ended (completed failed cancelled incomplete) */
    char *reason;     /* heap: why it did not complete, for a person; NULL when it did */
};

void watch_init(struct watch *w);
void watch_cleanup(struct watch *w);

/* Takes one SSE event's data (a Responses streaming event). Appends the answer's text (the
 * output_text deltas) to text, and a line for each finished function call ("function call
 * NAME(ARGS)") to notes. A final event (response.completed|failed|incomplete|cancelled, or an
 * `error` event) ends the watch. Returns 0 when taken; WATCH_SKIPPED when its sequence_number
 * is at or before last_seq (a replayed event: nothing appended); -EPROTO when the data is not
 * a Responses event or skips a sequence number (the server lost events), with the why in
 * notes. */
int watch_feed(struct watch *w, const char *data, size_t len, struct buf *text,
               struct buf *notes) MUST_USE;

/* Takes a Response object (GET /v1/responses/ID, or a final event's "response"): ends the
 * watch when its status is final, with the reason (error.message, incomplete_details.reason). */
void watch_take_response(struct watch *w, const json_t *response);

/* The stream to (re)connect to for the response whose id is escaped_id (client_escape'd):
 * from the start before any event was taken, else after last_seq. Caller frees. */
char *watch_path(const char *escaped_id, int64_t last_seq);

/* How long to wait before reconnection attempt n (0 for the first after a drop): doubling from
 * WATCH_BACKOFF_FIRST_MS up to WATCH_BACKOFF_MAX_MS. */
unsigned watch_backoff_ms(unsigned attempt);

struct watch_opts {
    unsigned reconnect_s; /* give up (exit 3) when the server stays unreachable this long */
    bool verbose;         /* print a note on stderr at each reconnection */
};

/* Follows the response id to the end of its run, its text to stdout as it arrives (ended with
 * a newline), reconnecting after a drop (see above). Returns the exit code: 0 the run
 * completed (or Ctrl-C stopped watching; the run goes on), 1 it ended failed, cancelled or
 * incomplete (the reason on stderr), the server refused (404) or broke the stream, 3 the
 * server stayed unreachable for o->reconnect_s. */
int watch_follow(struct client *c, const char *id, const struct watch_opts *o);

#endif
