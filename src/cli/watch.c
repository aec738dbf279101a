/*
 * watch.c: following a response's events to the end of its run. See watch.h. It owns the
 * resume state (the last sequence number taken) and the reconnection policy; the server owns
 * the events, and this only reads them.
 *
 * DESIGN
 *
 * Exactly once. The server replays the stored events after starting_after and then follows the
 * live ones (contract section 4), so a reconnection after the last taken sequence number N
 * delivers N+1 next. The watcher still checks: an event at or before N (a server that replays
 * from 0, as the SDK's own resume expects) is skipped, and one past N+1 is a gap the server
 * must never leave, reported as a broken stream rather than printed as a silently holed
 * answer. So the text on stdout is each delta once, in order: the final output text.
 *
 * When to stop. A final event (response.completed, .failed, .incomplete, an `error` event)
 * ends the watch at once. A cancelled run has no event of its own: its streams just end after
 * the last one. So a stream that ends cleanly without a final event is followed by one GET of
 * the response, whose status says whether the run is over or the server only closed the
 * stream (shutting down, say); in the second case the watcher connects again.
 *
 * Reconnection. A drop (reset, refused, timed out, a 5xx from a server still starting) waits
 * watch_backoff_ms(attempt) and tries again, quietly: -v shows a note per attempt. The attempt
 * count starts over once a connection delivers a new event. The watcher gives up (exit 3) only
 * when the server has stayed unreachable for reconnect_s since the last stream it answered; a
 * server never reached at all fails at once, like every client verb (a wrong URL is not worth
 * a minute's wait).
 */
#include "cli/watch.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

#define SHOWN_EVENT_BYTES 200 /* of an event that is not JSON, in the message */
#define NOTE_MAX (64u << 10)  /* one event's notes: a function call's arguments, cut there */
#define ENDED_CB 2            /* event_cb: the run ended, stop reading the stream */
#define SLEEP_SLICE_MS 50     /* a backoff wait looks at Ctrl-C this often */

void watch_init(struct watch *w)
{
    memset(w, 0, sizeof(*w));
    w->last_seq = -1;
}

void watch_cleanup(struct watch *w)
{
    free(w->reason);
    watch_init(w);
}

static bool is_final_status(const char *s)
{
    return s != NULL && (strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
                         strcmp(s, "cancelled") == 0 || strcmp(s, "incomplete") == 0);
}

static void end_with(struct watch *w, const char *status, char *reason)
{
    w->ended = true;
    snprintf(w->status, sizeof(w->status), "%s", status);
    free(w->reason);
    w->reason = reason;
}

/* "MESSAGE (CODE)" of an error object, or NULL. Caller frees. */
static char *error_text(const json_t *err)
{
    const char *msg = json_string_value(json_object_get(err, "message"));
    const char *code = json_string_value(json_object_get(err, "code"));
    if (msg == NULL && code == NULL)
        return NULL;
    if (msg == NULL || code == NULL)
        return xstrdup(msg ? msg : code);
    return xasprintf("%s (%s)", msg, code);
}

void watch_take_response(struct watch *w, const json_t *response)
{
    const char *status = json_string_value(json_object_get(response, "status"));
    if (!is_final_status(status))
        return;
    char *reason = NULL;
    if (strcmp(status, "failed") == 0)
        reason = error_text(json_object_get(response, "error"));
    else if (strcmp(status, "incomplete") == 0) {
        const json_t *d = json_object_get(response, "incomplete_details");
        const char *r = json_string_value(json_object_get(d, "reason"));
        reason = r ? xstrdup(r) : NULL;
    }
    end_with(w, status, reason);
}

/* The status a final event type stands for, or NULL when the type is not a final one. */
static const char *final_status_of(const char *type)
{
    static const char *const finals[][2] = {
        {"response.completed", "completed"},
        {"response.failed", "failed"},
        {"response.incomplete", "incomplete"},
        {"response.cancelled", "cancelled"}, /* contract section 4 names it; OpenAI has none */
    };
    for (size_t i = 0; i < ARRAY_SIZE(finals); i++)
        if (strcmp(type, finals[i][0]) == 0)
            return finals[i][1];
    return NULL;
}

/* What an event means once its sequence number was accepted. */
static void take_event(struct watch *w, const char *type, const json_t *ev, struct buf *text,
                       struct buf *notes)
{
    const char *final = final_status_of(type);
    if (strcmp(type, "response.output_text.delta") == 0) {
        const char *d = json_string_value(json_object_get(ev, "delta"));
        if (d != NULL)
            buf_puts(text, d);
    } else if (strcmp(type, "response.output_item.done") == 0) {
        const json_t *item = json_object_get(ev, "item");
        const char *itype = json_string_value(json_object_get(item, "type"));
        if (itype != NULL && strcmp(itype, "function_call") == 0)
            buf_printf(notes, "function call %s(%s) call_id=%s",
                       json_string_value(json_object_get(item, "name")) ?: "?",
                       json_string_value(json_object_get(item, "arguments")) ?: "",
                       json_string_value(json_object_get(item, "call_id")) ?: "?");
    } else if (final != NULL) {
        const json_t *resp = json_object_get(ev, "response");
        watch_take_response(w, resp);
        if (!w->ended) /* a final event whose response lacks a status: the type says it */
            end_with(w, final, NULL);
    } else if (strcmp(type, "error") == 0) {
        char *why = error_text(ev);
        end_with(w, "failed", why ? why : xstrdup("the server reported an error"));
    }
}

int watch_feed(struct watch *w, const char *data, size_t len, struct buf *text, struct buf *notes)
{
    json_t *ev = json_loadb(data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "type"));
    const json_t *seqj = json_object_get(ev, "sequence_number");
    int rc = 0;
    if (type == NULL || !json_is_integer(seqj)) {
        buf_printf(notes, "the server sent something that is not a Responses event: %.*s",
                   (int)(len < SHOWN_EVENT_BYTES ? len : SHOWN_EVENT_BYTES), data);
        rc = -EPROTO;
        goto out;
    }
    int64_t seq = (int64_t)json_integer_value(seqj);
    if (seq <= w->last_seq) {
        rc = WATCH_SKIPPED;
        goto out;
    }
    if (seq != w->last_seq + 1) {
        buf_printf(notes, "the server skipped events: after sequence number %lld came %lld",
                   (long long)w->last_seq, (long long)seq);
        rc = -EPROTO;
        goto out;
    }
    w->last_seq = seq;
    take_event(w, type, ev, text, notes);
out:
    json_decref(ev);
    return rc;
}

char *watch_path(const char *escaped_id, int64_t last_seq)
{
    if (last_seq < 0)
        return xasprintf("/v1/responses/%s?stream=true", escaped_id);
    return xasprintf("/v1/responses/%s?stream=true&starting_after=%lld", escaped_id,
                     (long long)last_seq);
}

unsigned watch_backoff_ms(unsigned attempt)
{
    unsigned ms = WATCH_BACKOFF_FIRST_MS;
    for (unsigned i = 0; i < attempt && ms < WATCH_BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < WATCH_BACKOFF_MAX_MS ? ms : WATCH_BACKOFF_MAX_MS;
}

/* ---- the loop ---- */

#define CONTINUE (-1) /* step(): connect again */

struct follow {
    struct client *c;
    const char *id; /* as the person gave it */
    char *eid;      /* escaped for the path, heap */
    const struct watch_opts *o;
    struct watch w;
    struct buf text, notes;
    bool wrote;             /* some text reached stdout */
    bool got_event;         /* the current connection delivered a new event */
    bool broken;            /* the stream broke the protocol; told */
    bool ever_reached;      /* some stream of this watch was answered */
    unsigned attempt;       /* reconnections since the last new event */
    uint64_t down_since_ms; /* first failure since the server last answered; 0: none */
    char why[64];           /* why the last connection ended, for a note */
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    interrupted = 1;
}

static void break_line(struct follow *f)
{
    if (f->wrote)
        putchar('\n');
    f->wrote = false;
    fflush(stdout);
}

static int event_cb(const char *data, size_t len, void *arg)
{
    struct follow *f = arg;
    buf_reset(&f->text);
    buf_reset(&f->notes);
    int rc = watch_feed(&f->w, data, len, &f->text, &f->notes);
    if (rc == 0)
        f->got_event = true;
    if (f->text.len > 0) {
        fwrite(f->text.data, 1, f->text.len, stdout);
        fflush(stdout);
        f->wrote = true;
        if (ferror(stdout))
            return -EPIPE;
    }
    if (f->notes.len > 0) {
        if (rc == -EPROTO)
            break_line(f);
        fprintf(stderr, "arun: %s\n", buf_cstr(&f->notes));
    }
    if (rc == -EPROTO) {
        f->broken = true;
        return 1;
    }
    return f->w.ended ? ENDED_CB : 0;
}

static int finish(struct follow *f)
{
    break_line(f);
    if (strcmp(f->w.status, "completed") == 0)
        return CLIENT_EXIT_OK;
    if (f->w.reason != NULL)
        fprintf(stderr, "arun: %s %s: %s\n", f->id, f->w.status, f->w.reason);
    else
        fprintf(stderr, "arun: %s %s\n", f->id, f->w.status);
    return CLIENT_EXIT_FAILURE;
}

/* The stream ended cleanly without a final event: is the run over (cancelled), or did the
 * server only close the stream? Returns the exit code, or CONTINUE. */
static int ask_status(struct follow *f)
{
    struct client_response res;
    char *path = xasprintf("/v1/responses/%s", f->eid);
    int rc = client_get(f->c, path, &res);
    free(path);
    if (rc != 0)
        return CONTINUE; /* the next connection tells whether the server is gone */
    if (res.status == 200)
        watch_take_response(&f->w, res.json);
    else if (res.status / 100 == 4)
        rc = client_fail_response(&res);
    client_response_cleanup(&res);
    if (rc != 0)
        return rc;
    return f->w.ended ? finish(f) : CONTINUE;
}

static bool is_transient(int rc)
{
    return rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -ETIMEDOUT || rc == -EHOSTUNREACH ||
           rc == -ENETUNREACH;
}

/* After one connection: the exit code, or CONTINUE to connect again. */
static int step(struct follow *f, int rc, struct client_response *res)
{
    bool answered = rc == 0 && res->status / 100 == 2;
    if (rc != 0)
        snprintf(f->why, sizeof(f->why), "%s", strerror(-rc));
    else if (!answered)
        snprintf(f->why, sizeof(f->why), "the server answered %d", res->status);
    else
        snprintf(f->why, sizeof(f->why), "the stream ended");
    if (rc == -EINTR) {
        break_line(f);
        fprintf(stderr,
                "arun: stopped watching %s; the run goes on (`arun runs watch %s` follows it "
                "again, `arun runs cancel %s` stops it)\n",
                f->id, f->id, f->id);
        return CLIENT_EXIT_OK;
    }
    if (rc == -EPIPE || f->broken)
        return CLIENT_EXIT_FAILURE;
    if (f->w.ended)
        return finish(f);
    if (rc == 0 && res->status / 100 == 4) {
        break_line(f);
        return client_fail_response(res);
    }
    if (rc != 0 && !is_transient(rc)) {
        break_line(f);
        return client_fail(f->c, rc);
    }
    if (!f->ever_reached && !f->c->reached && rc != 0) {
        break_line(f);
        return client_fail(f->c, rc); /* never there: a wrong URL, no server */
    }
    f->ever_reached = true;
    if (answered || (rc != 0 && f->c->reached))
        f->down_since_ms = 0; /* the server was there; a drop starts the clock again */
    return answered ? ask_status(f) : CONTINUE;
}

/* Sleeps ms, or less when Ctrl-C comes. */
static void nap(unsigned ms)
{
    while (ms > 0 && !interrupted) {
        unsigned slice = ms < SLEEP_SLICE_MS ? ms : SLEEP_SLICE_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)slice * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
}

/* Before connecting again: gives up (the exit code) when the server has been away too long,
 * else waits the backoff and returns CONTINUE. */
static int before_retry(struct follow *f)
{
    uint64_t now = clock_mono_ms();
    if (f->got_event)
        f->attempt = 0;
    if (f->down_since_ms == 0)
        f->down_since_ms = now;
    else if (now - f->down_since_ms >= (uint64_t)f->o->reconnect_s * 1000) {
        break_line(f);
        fprintf(stderr,
                "arun: gave up on %s after %u s: the server at %s does not answer (%s); the run "
                "may go on: `arun runs watch %s` follows it again\n",
                f->id, f->o->reconnect_s, f->c->base_url, f->why, f->id);
        return CLIENT_EXIT_UNREACHABLE;
    }
    unsigned ms = watch_backoff_ms(f->attempt++);
    if (f->o->verbose)
        fprintf(stderr, "arun: reconnecting to %s after sequence number %lld in %u ms (%s)\n",
                f->id, (long long)f->w.last_seq, ms, f->why);
    nap(ms);
    return CONTINUE;
}

int watch_follow(struct client *c, const char *id, const struct watch_opts *o)
{
    struct follow f = {.c = c, .id = id, .eid = client_escape(id), .o = o};
    struct sigaction sa = {.sa_handler = on_sigint}, old_int;
    int code = CONTINUE;
    watch_init(&f.w);
    buf_init(&f.text, CLIENT_SSE_MAX_EVENT);
    buf_init(&f.notes, NOTE_MAX);
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: the poll inside libcurl returns at once and the stop flag is seen. */
    sigaction(SIGINT, &sa, &old_int);
    interrupted = 0;
    while (code == CONTINUE) {
        char *path = watch_path(f.eid, f.w.last_seq);
        struct client_response res = {0};
        f.got_event = false;
        int rc = client_stream_sse(c, path, event_cb, NULL, &f, &interrupted, &res);
        free(path);
        if (rc == ENDED_CB)
            rc = 0;
        code = step(&f, rc, &res);
        client_response_cleanup(&res);
        if (code == CONTINUE)
            code = interrupted ? step(&f, -EINTR, &res) : before_retry(&f);
    }
    sigaction(SIGINT, &old_int, NULL);
    buf_cleanup(&f.notes);
    buf_cleanup(&f.text);
    watch_cleanup(&f.w);
    free(f.eid);
    return code;
}
