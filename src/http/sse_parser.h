/*
 * sse_parser.h: reads a Server-Sent Events stream (the WHATWG HTML standard, "Interpreting an
 * event stream") from bytes that arrive in reads of any size, and hands over each event when it
 * is complete. The one SSE reader of arun: the gateway reads engines' streams with it, the CLI
 * reads arun's, and engine logs split their lines with its line scanner (sse_lines).
 *
 * The rules: a line ends at CR, LF or CRLF (also when the CR ends one read and the LF starts the
 * next); an empty line dispatches the event; a line starting with ':' is a comment; otherwise
 * the field name runs to the first ':' and the value follows it, less one optional space.
 * `data` values are joined with '\n'; `event` sets the type; `id` sets the last event id (a
 * value holding NUL is ignored) and persists across events; `retry` takes ASCII digits only;
 * other fields are ignored; a UTF-8 BOM at the very start is skipped. An event with no `data`
 * field is not dispatched, and an event not ended by an empty line when the stream ends is
 * dropped (sse_parser has no "finish" call for that reason).
 *
 * Memory is bounded: a line split across reads is assembled up to max_line bytes, an event's data
 * up to max_event bytes, its type and the id up to SSE_PARSER_MAX_FIELD bytes each; past a cap
 * the feed fails with -ENOBUFS and the parser is unusable (the stream is not one we can read).
 * A line that arrives whole in one read is not copied.
 */
#ifndef ARUN_HTTP_SSE_PARSER_H
#define ARUN_HTTP_SSE_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define SSE_PARSER_MAX_FIELD 4096 /* an event type or id; real ones are tens of bytes */

/* ---- lines: CR, LF or CRLF, across reads ---- */

/* The line scanner's state: whether the last byte seen was a CR (so that a LF first in the next
 * read belongs to it). Zero-initialise. */
struct sse_lines {
    bool after_cr;
};

/* A piece of a line found by sse_lines_next(). */
struct sse_piece {
    const char *p; /* the piece's bytes (inside the input) */
    size_t len;    /* its length, without the line end */
    char end;      /* '\n' or '\r' when the line ends after the piece, 0 when it goes on */
};

/* Finds the next piece of a line in p[0..n) (n > 0): the bytes up to a line end, or to the end
 * of the input. A LF that completes a CRLF split across reads is skipped. Returns the bytes used
 * (> 0); the caller calls again with the rest. A piece may be empty and not ended (a lone LF
 * completing a split CRLF), which means nothing. */
size_t sse_lines_next(struct sse_lines *l, const char *p, size_t n, struct sse_piece *out);

/* ---- events ---- */

struct sse_event {
    const char *type; /* the `event` field, NUL-terminated; NULL when none (WHATWG: "message") */
    const char *data; /* the data fields joined with '\n', NUL-terminated */
    size_t data_len;
    const char *id;   /* this event's `id` field, NUL-terminated; NULL when it had none */
    int64_t retry_ms; /* a `retry` field seen since the last event, -1 when none */
};

/* Called for each complete event; the pointers are valid during the call only. Return 0 to go
 * on, anything else to stop: the feed returns that value. */
typedef int (*sse_event_cb)(const struct sse_event *ev, void *arg);
/* Called for each comment with its text (after ':' and one optional space); valid during the
 * call only. Same return rule. */
typedef int (*sse_comment_cb)(const char *text, size_t len, void *arg);

struct sse_parser {
    struct sse_lines lines;
    struct buf line;  /* a line split across reads; cap max_line */
    struct buf data;  /* the event's data; cap max_event */
    struct buf type;  /* the event's type; cap SSE_PARSER_MAX_FIELD */
    struct buf id;    /* the last event id (persists across events) */
    bool have_data;   /* a data field was seen since the last dispatch */
    bool id_in_event; /* an id field was seen since the last dispatch */
    int64_t retry_ms; /* a retry field since the last dispatch, -1 when none */
    uint8_t bom;      /* bytes of a leading UTF-8 BOM matched; 0xFF once decided */
    int error;        /* a failed feed's result: every later feed returns it */
    sse_event_cb on_event;
    sse_comment_cb on_comment; /* may be NULL */
    void *arg;
};

/* Sets up a parser. on_event must not be NULL; on_comment may be. Allocates nothing yet. */
void sse_parser_init(struct sse_parser *p, size_t max_line, size_t max_event, sse_event_cb on_event,
                     sse_comment_cb on_comment, void *arg);
/* Frees the buffers. The parser may be initialised again afterwards. */
void sse_parser_cleanup(struct sse_parser *p);
/* Takes n more bytes of the stream and calls back for every event and comment they complete,
 * in order. Returns 0, -ENOBUFS (a line, an event's data, a type or an id over its cap) or a
 * callback's non-zero value; after a non-zero result the parser stays failed and every later
 * feed returns the same value. */
int sse_parser_feed(struct sse_parser *p, const char *s, size_t n) MUST_USE;
/* The last event id seen (the `Last-Event-ID` a reconnecting client sends), "" when none. */
const char *sse_parser_last_id(const struct sse_parser *p);

#endif
