/*
 * engines_cmd.c: `arun engines`, `arun engines start|stop|restart NAME` and `arun logs NAME`.
 * See engines_cmd.h. Each verb is one or a few requests to the supervisor's HTTP API
 * (docs/http-api.md) and a rendering of the answer for a person; nothing here decides anything
 * about engines. The server's words are shown as they are: its reasons are written for people.
 *
 * The table's columns are the console's engine cards in words (NAME STATE MODELS BACKEND PID
 * PORT MEM [VRAM] IN-FLIGHT QUEUED UPTIME RESTARTS REASON), as wide as their widest cell. REASON
 * comes last and is never padded, so a script can cut it with `cut -c` or read it whole; on a
 * terminal it is shortened to the window's width so a long crash reason does not wrap the table.
 *
 * --wait follows GET /v1/events, not a poll loop: the engine's engine.state events, and the
 * engine object read once when each stream has opened (its first comment), so a change between
 * the POST and the stream, or during a reconnection, is not missed. A second client does that
 * read, since the first is busy with the stream. The progress line is redrawn from libcurl's
 * progress function (client.on_tick), at least once a second, so the clock moves while the
 * stream is quiet.
 */
#include "cli/engines_cmd.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/table.h"
#include "core/buf.h"
#include "core/clock.h"

#define WAIT_DEFAULT_S 600    /* --wait: a large model can take minutes to load */
#define WAIT_RECONNECTS 5     /* --wait: streams that may end or drop before "went away" */
#define WAIT_BACKOFF_MS 200   /* --wait: times the drops so far, before connecting again */
#define LOGS_TAIL_DEFAULT 100 /* the server's own default */
#define LOGS_TAIL_MAX 10000   /* the server refuses more (400) */

const char engines_cmd_usage[] =
    "usage: arun engines [--json]\n"
    "       arun engines start|stop|restart NAME [--wait] [--timeout S] [--json]\n"
    "\n"
    "Without a sub-verb, lists the engines of the running server as a table:\n"
    "  NAME STATE MODELS BACKEND PID PORT MEM [VRAM] IN-FLIGHT QUEUED UPTIME RESTARTS REASON\n"
    "MEM is the resident memory over the declared memory.ram_mb in MiB (412/2000M), VRAM the\n"
    "same for the GPU (shown when an engine declares or uses some), IN-FLIGHT and QUEUED the\n"
    "requests on the engine and waiting for it, UPTIME the time since the engine started,\n"
    "REASON why an engine is not ready; \"-\" where the server has no value. STATE is coloured\n"
    "on a terminal (not with NO_COLOR set or TERM=dumb, never in a pipe). --json prints the\n"
    "server's list (GET /v1/engines) as it is.\n"
    "\n"
    "start, stop and restart ask the server to act and print NAME: STATE as it answered.\n"
    "  --wait       follow the engine until it is ready (start, restart) or stopped (stop):\n"
    "               one progress line (state, seconds against the expected load time, the\n"
    "               engine's last log line), rewritten in place on a terminal, a line per\n"
    "               state otherwise; exit 1 with the reason when it fails instead\n"
    "  --timeout S  give up waiting after S seconds (default 600), exit 1\n"
    "  --json       print the engine as JSON instead (without --wait)\n"
    "  Ctrl-C stops waiting (exit 130); the engine goes on starting.\n"
    "\n" CLIENT_HELP_OPTIONS "\n"
    "exit codes: 0 success, 1 the server refused (unknown engine, cannot start) or the engine\n"
    "failed (or --timeout passed) while waited for, 2 usage error, 3 server unreachable or gone\n"
    "while waiting, 130 Ctrl-C while waiting\n";

const char logs_cmd_usage[] =
    "usage: arun logs NAME [-n LINES] [-f]\n"
    "\n"
    "Prints the last LINES lines (default 100, at most 10000) of an engine's output, with\n"
    "arun's own notes about it (\"arun: started pid …\") interleaved.\n"
    "  -n, --lines LINES  how many lines of the tail\n"
    "  -f, --follow       then keep printing new lines as the engine writes them, until\n"
    "                     Ctrl-C or the server ends the stream (both exit 0)\n"
    "\n" CLIENT_HELP_OPTIONS "\n"
    "exit codes: 0 success, 1 the server refused (unknown engine), 2 usage error, 3 server\n"
    "unreachable or the connection dropped while following\n";

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

static int usage_error(const char *verb, const char *usage, const char *fmt, ...) PRINTF_LIKE(3, 4);

static int usage_error(const char *verb, const char *usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "arun %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n%s", usage);
    va_end(ap);
    return CLIENT_EXIT_USAGE;
}

/* ---- the table ---- */

static const char *str_or(const json_t *v, const char *dflt)
{
    const char *s = json_string_value(v);
    return s != NULL && s[0] != '\0' ? s : dflt;
}

/* started_at is "2026-11-24T02:10:46Z" (UTC) or null: wall-clock ms, or -1. */
static int64_t parse_iso_ms(const json_t *v)
{
    const char *s = json_string_value(v);
    struct tm tm = {0};
    if (s == NULL || strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
        return -1;
    return (int64_t)timegm(&tm) * 1000;
}

/* The server's uptime_s when it sends one, else the time since started_at. */
static char *fmt_uptime(const json_t *e, int64_t now_ms)
{
    const json_t *up = json_object_get(e, "uptime_s");
    if (json_is_integer(up))
        return table_duration(json_integer_value(up));
    int64_t since = parse_iso_ms(json_object_get(e, "started_at"));
    return since < 0 ? xstrdup("-") : table_duration((now_ms - since) / 1000);
}

static char *fmt_int_or_dash(const json_t *v)
{
    return json_is_integer(v) ? xasprintf("%lld", (long long)json_integer_value(v)) : xstrdup("-");
}

/* used/declared in MiB ("412/2000M"); "-" for the used part while the engine is not up. */
static char *fmt_mem(const json_t *e, const char *used_key, const char *declared_key)
{
    const json_t *m = json_object_get(e, "memory");
    const json_t *used = json_object_get(m, used_key);
    long long declared = (long long)json_integer_value(json_object_get(m, declared_key));
    bool up = json_is_string(json_object_get(e, "started_at")) && json_is_integer(used);
    long long u = (long long)json_integer_value(used);
    if (up)
        return declared > 0 ? xasprintf("%lld/%lldM", u, declared) : xasprintf("%lldM", u);
    return declared > 0 ? xasprintf("-/%lldM", declared) : xstrdup("-");
}

static char *fmt_models(const json_t *models)
{
    struct buf b;
    buf_init(&b, 64 * 1024);
    size_t i;
    const json_t *m;
    json_array_foreach(models, i, m)
    {
        if (buf_printf(&b, "%s%s", i ? "," : "",
                       json_string_value(m) ? json_string_value(m) : "?") != 0)
            break; /* 64 KiB of model names: the rest would not be read anyway */
    }
    char *s = b.len ? buf_steal(&b) : xstrdup("-");
    buf_cleanup(&b);
    return s;
}

bool engines_have_vram(const json_t *engines)
{
    size_t i;
    const json_t *e;
    json_array_foreach(engines, i, e)
    {
        const json_t *m = json_object_get(e, "memory");
        if (json_integer_value(json_object_get(m, "declared_vram_mb")) > 0 ||
            json_integer_value(json_object_get(m, "vram_mb")) > 0)
            return true;
    }
    return false;
}

void engines_table_header(struct table *t, bool vram)
{
    static const char *const cols[ENGINES_NCOLS_MAX] = {
        "NAME", "STATE",     "MODELS", "BACKEND", "PID",      "PORT",  "MEM",
        "VRAM", "IN-FLIGHT", "QUEUED", "UPTIME",  "RESTARTS", "REASON"};
    table_init_header(t, cols, ENGINES_NCOLS_MAX, vram ? -1 : 7, 1);
}

void engines_table_row(struct table *t, const json_t *e, int64_t now_ms)
{
    char *cells[ENGINES_NCOLS_MAX];
    size_t n = 0;
    cells[n++] = xstrdup(str_or(json_object_get(e, "name"), "?"));
    cells[n++] = xstrdup(str_or(json_object_get(e, "state"), "?"));
    cells[n++] = fmt_models(json_object_get(e, "models"));
    cells[n++] = xstrdup(str_or(json_object_get(e, "backend"), "-"));
    cells[n++] = fmt_int_or_dash(json_object_get(e, "pid"));
    cells[n++] = fmt_int_or_dash(json_object_get(e, "port"));
    cells[n++] = fmt_mem(e, "rss_mb", "declared_ram_mb");
    if (t->ncols == ENGINES_NCOLS_MAX)
        cells[n++] = fmt_mem(e, "vram_mb", "declared_vram_mb");
    cells[n++] = fmt_int_or_dash(json_object_get(e, "in_flight"));
    cells[n++] = fmt_int_or_dash(json_object_get(e, "queued"));
    cells[n++] = fmt_uptime(e, now_ms);
    cells[n++] = fmt_int_or_dash(json_object_get(e, "restarts"));
    cells[n++] = xstrdup(str_or(json_object_get(e, "reason"), "-"));
    ASSERT(n == t->ncols);
    table_add_row(t, cells);
}

static int list_engines(struct client *c, bool json)
{
    struct client_response res;
    const json_t *data;
    int rc = client_get_list(c, "/v1/engines", &res, &data);
    if (rc != 0)
        return rc;
    if (json) {
        client_print_json(res.json);
    } else {
        struct table t;
        int64_t now_ms = clock_wall_ms();
        engines_table_header(&t, engines_have_vram(data));
        for (size_t r = 0; r < json_array_size(data); r++)
            engines_table_row(&t, json_array_get(data, r), now_ms);
        table_print(&t);
        table_cleanup(&t);
    }
    client_response_cleanup(&res);
    return 0;
}

/* ---- start, stop, restart ---- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    interrupted = 1;
}

static bool is_running_state(const char *s)
{
    return strcmp(s, "starting") == 0 || strcmp(s, "loading") == 0 || strcmp(s, "unhealthy") == 0;
}

/* What a state means to a waiter: 1 done, -1 failed, 0 keep waiting. `stopped` counts as a
 * failure of a start only after the engine was seen running: before that it may be a restart
 * between its stop and its start, or a start waiting for memory to be freed. */
static int verdict(const char *action, const char *state, bool *seen_running)
{
    if (strcmp(action, "stop") == 0)
        return strcmp(state, "stopped") == 0 ? 1 : strcmp(state, "failed") == 0 ? -1 : 0;
    if (strcmp(state, "ready") == 0)
        return 1;
    if (strcmp(state, "failed") == 0)
        return -1;
    if (is_running_state(state))
        *seen_running = true;
    return strcmp(state, "stopped") == 0 && *seen_running ? -1 : 0;
}

void engines_progress_init(struct engines_progress *p, const char *name)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->state, sizeof(p->state), "?");
    p->expected_ms = -1;
    p->since_ms = -1;
}

void engines_progress_cleanup(struct engines_progress *p)
{
    free(p->reason);
    free(p->log_line);
    p->reason = p->log_line = NULL;
}

static void take_str(char **dst, const json_t *v)
{
    if (v == NULL)
        return; /* absent: keep what was known (an older server, or an event without it) */
    free(*dst);
    *dst = json_is_string(v) && json_string_length(v) > 0 ? xstrdup(json_string_value(v)) : NULL;
}

bool engines_progress_take(struct engines_progress *p, const json_t *e, int64_t now_ms)
{
    const char *state = json_string_value(json_object_get(e, "state"));
    bool changed = false;
    if (state != NULL && strcmp(state, p->state) != 0) {
        snprintf(p->state, sizeof(p->state), "%s", state);
        changed = true;
        p->since_ms = now_ms; /* until the engine says when its start began */
    }
    if (state != NULL)
        take_str(&p->reason,
                 json_object_get(e, "reason") ? json_object_get(e, "reason") : json_null());
    take_str(&p->log_line, json_object_get(e, "last_log_line"));
    if (p->log_line != NULL && strncmp(p->log_line, "arun: ", 6) == 0) {
        free(p->log_line); /* arun's own note: the state and reason the line already shows */
        p->log_line = NULL;
    }
    /* The learned load time (expected_load_ms), else the last load's (last_load_ms). */
    const json_t *exp = json_object_get(e, "expected_load_ms");
    if (!json_is_integer(exp))
        exp = json_object_get(e, "last_load_ms");
    if (json_is_integer(exp) && json_integer_value(exp) > 0)
        p->expected_ms = json_integer_value(exp);
    int64_t started = parse_iso_ms(json_object_get(e, "started_at"));
    const json_t *loading_since = json_object_get(e, "loading_since_ms");
    if (json_is_integer(loading_since) && json_integer_value(loading_since) > 0)
        started = json_integer_value(loading_since);
    /* The server's own count (its monotonic clock) beats its wall clock against ours. */
    const json_t *elapsed = json_object_get(e, "loading_elapsed_ms");
    if (json_is_integer(elapsed) && json_integer_value(elapsed) >= 0)
        started = now_ms - json_integer_value(elapsed);
    if (started > 0 && started <= now_ms && is_running_state(p->state))
        p->since_ms = started;
    return changed;
}

/* Whole seconds, rounded to the nearest. */
static long secs(int64_t ms)
{
    return (long)((ms + 500) / 1000);
}

void engines_progress_line(const struct engines_progress *p, int64_t now_ms, bool with_log,
                           size_t width, struct buf *out)
{
    size_t start = out->len;
    buf_printf(out, "%s: %s", p->name, p->state);
    bool loading = strcmp(p->state, "starting") == 0 || strcmp(p->state, "loading") == 0;
    if (loading && p->since_ms >= 0) {
        buf_printf(out, " %ld s", secs(now_ms > p->since_ms ? now_ms - p->since_ms : 0));
        if (p->expected_ms > 0)
            buf_printf(out, " of ~%ld s", secs(p->expected_ms) > 0 ? secs(p->expected_ms) : 1);
    }
    if (p->reason != NULL && strcmp(p->state, "ready") != 0)
        buf_printf(out, " (%s)", p->reason);
    if (with_log && loading && p->log_line != NULL)
        buf_printf(out, " | %s", p->log_line);
    /* One line: a log line's control bytes (a carriage return, an escape) would break it. */
    for (size_t i = start; i < out->len; i++)
        if ((unsigned char)out->data[i] < 0x20 || out->data[i] == 0x7f)
            out->data[i] = ' ';
    if (width > 0 && out->len - start > width) {
        size_t keep = start + width;
        while (keep > start && ((unsigned char)out->data[keep] & 0xC0) == 0x80)
            keep--;
        out->len = keep;
        out->data[keep] = '\0';
    }
}

/* A waiter: the progress line it shows and how it ends. */
struct waiter {
    struct engines_progress p;
    const char *action;
    struct client *side; /* for GET /v1/engines/NAME while the stream is open */
    const char *path;    /* /v1/engines/NAME */
    bool tty;            /* rewrite one line in place, else print a line per state */
    bool drawn;          /* tty: a progress line is on the screen, not yet ended */
    bool seen_running;
    int verdict;         /* 1 done, -1 failed, 0 waiting */
    int side_rc;         /* an exit code when the side GET failed, else 0 */
    int64_t last_draw_s; /* tty: the elapsed second drawn last */
    uint64_t deadline;   /* monotonic ms */
    bool timed_out;
};

static size_t tty_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
        return (size_t)ws.ws_col - 1; /* the last column would wrap on some terminals */
    return 79;
}

static void draw(struct waiter *w, bool final)
{
    struct buf line;
    buf_init(&line, 64 * 1024);
    int64_t now = clock_wall_ms();
    if (w->tty) {
        engines_progress_line(&w->p, now, !final, tty_width(), &line);
        const char *sgr = table_colour_stdout() ? table_state_sgr(w->p.state) : NULL;
        const char *l = buf_cstr(&line);
        size_t a = strlen(w->p.name) + 2, b = a + strlen(w->p.state);
        a = a < line.len ? a : line.len;
        b = b < line.len ? b : line.len;
        /* "\r" and erase to the end of the line: the line is rewritten in place; the state word
         * alone is coloured. */
        printf("\r\033[K%.*s%s%.*s%s%s%s", (int)a, l, sgr ? sgr : "", (int)(b - a), l + a,
               sgr ? TABLE_SGR_RESET : "", l + b, final ? "\n" : "");
        w->drawn = !final;
        w->last_draw_s = now / 1000;
    } else {
        engines_progress_line(&w->p, now, false, 0, &line);
        printf("%s\n", buf_cstr(&line));
    }
    fflush(stdout);
    buf_cleanup(&line);
}

/* Takes an engine object or an engine.state event's data; redraws or prints what changed. */
static void take(struct waiter *w, const json_t *e)
{
    char *old_log = w->p.log_line ? xstrdup(w->p.log_line) : NULL;
    bool changed = engines_progress_take(&w->p, e, clock_wall_ms());
    w->verdict = verdict(w->action, w->p.state, &w->seen_running);
    bool log_changed = (old_log == NULL) != (w->p.log_line == NULL) ||
                       (old_log != NULL && strcmp(old_log, w->p.log_line) != 0);
    free(old_log);
    if (changed || w->verdict != 0 || (w->tty && log_changed))
        draw(w, w->verdict != 0);
}

static void tick_cb(void *arg)
{
    struct waiter *w = arg;
    int64_t now = clock_wall_ms();
    if (w->tty && w->drawn && now / 1000 != w->last_draw_s)
        draw(w, false);
    if (clock_mono_ms() >= w->deadline) {
        w->timed_out = true;
        interrupted = 1; /* ends the stream; timed_out tells it from Ctrl-C */
    }
}

/* GET /v1/engines/NAME on the side client: the state at the start and after a reconnection,
 * so nothing that happened before the stream opened is missed. */
static int refresh(struct waiter *w)
{
    struct client_response res;
    int rc = client_get(w->side, w->path, &res);
    if (rc != 0)
        return client_fail(w->side, rc);
    if (res.status != 200 || !json_is_object(res.json)) {
        rc = client_fail_response(&res);
        client_response_cleanup(&res);
        return rc;
    }
    take(w, res.json);
    client_response_cleanup(&res);
    return 0;
}

static int event_cb(const char *data, size_t len, void *arg)
{
    struct waiter *w = arg;
    json_t *ev = json_loadb(data, len, 0, NULL);
    const json_t *d = json_object_get(ev, "data");
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *engine = json_string_value(json_object_get(d, "engine"));
    const char *from = json_string_value(json_object_get(d, "from"));
    if (type != NULL && engine != NULL && strcmp(engine, w->p.name) == 0 &&
        strcmp(type, "engine.state") == 0) {
        /* An event that does not follow from the state known was published before the read at
         * the stream's opening and delivered after it (a restart's stopping -> stopped, say):
         * taken as news, that `stopped` would read as a failed start. Read the truth again. */
        if (from != NULL && strcmp(from, w->p.state) != 0)
            w->side_rc = refresh(w);
        else
            take(w, d);
    }
    json_decref(ev);
    return w->side_rc != 0 || w->verdict != 0 ? 1 : 0;
}

/* The stream's opening comment: from here on every change arrives as an event, so the state
 * read now is the base they apply to. */
static int comment_cb(const char *data, size_t len, void *arg)
{
    struct waiter *w = arg;
    if (!(len == 11 && memcmp(data, "arun events", 11) == 0))
        return 0;
    w->side_rc = refresh(w);
    return w->side_rc != 0 || w->verdict != 0 ? 1 : 0;
}

static void end_line(struct waiter *w)
{
    if (w->drawn) {
        putchar('\n');
        fflush(stdout);
        w->drawn = false;
    }
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !interrupted) {
    }
}

/* Follows /v1/events until the engine's state decides, the deadline, Ctrl-C, or the server
 * going away. Returns the exit code. */
static int wait_for(struct client *c, struct waiter *w, const char *server, const char *api_key)
{
    struct client side;
    if (client_init(&side, server, api_key) != 0)
        return CLIENT_EXIT_USAGE;
    w->side = &side;
    c->on_tick = tick_cb;
    c->tick_arg = w;
    struct sigaction sa = {.sa_handler = on_sigint}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int rc = 0;
    unsigned drops = 0;
    while (w->verdict == 0 && rc == 0) {
        struct client_response res;
        int src = client_stream_sse(c, "/v1/events", event_cb, comment_cb, w, &interrupted, &res);
        int status = src == 0 ? res.status : 0;
        if (src == 0 && status / 100 != 2) {
            end_line(w);
            rc = client_fail_response(&res);
        }
        if (src == 0)
            client_response_cleanup(&res);
        if (rc != 0) {
            break;
        } else if (w->side_rc != 0) {
            rc = w->side_rc;
        } else if (w->verdict != 0) {
            break;
        } else if (src == -EINTR) {
            rc = w->timed_out ? CLIENT_EXIT_FAILURE : WAIT_EXIT_INTERRUPTED;
        } else if (++drops > WAIT_RECONNECTS) {
            /* The stream ended or dropped again and again: the server is going away. */
            end_line(w);
            fprintf(stderr, "arun: the server went away while %s was %s\n", w->p.name, w->p.state);
            rc = CLIENT_EXIT_UNREACHABLE;
        } else if (src != 0 && !c->reached) {
            end_line(w);
            rc = client_fail(c, src); /* refused: nobody there any more */
        } else {
            /* Reconnect: comment_cb reads the state again once the new stream is open. */
            sleep_ms(WAIT_BACKOFF_MS * drops);
        }
    }
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    c->on_tick = NULL;
    end_line(w);
    if (rc == WAIT_EXIT_INTERRUPTED)
        fprintf(stderr, "arun: stopped waiting; %s goes on (arun engines shows it)\n", w->p.name);
    else if (w->timed_out)
        fprintf(stderr, "arun: gave up waiting: %s is still %s\n", w->p.name, w->p.state);
    client_cleanup(&side);
    if (rc != 0)
        return rc;
    return w->verdict == 1 ? CLIENT_EXIT_OK : CLIENT_EXIT_FAILURE;
}

static void print_state(const json_t *e)
{
    const char *state = str_or(json_object_get(e, "state"), "?");
    const char *reason = str_or(json_object_get(e, "reason"), NULL);
    if (reason != NULL && strcmp(state, "ready") != 0)
        printf("%s: %s (%s)\n", str_or(json_object_get(e, "name"), "?"), state, reason);
    else
        printf("%s: %s\n", str_or(json_object_get(e, "name"), "?"), state);
    fflush(stdout);
}

static int act(struct client *c, const char *action, const char *name, bool json, bool wait,
               long timeout_s, const char *server, const char *api_key)
{
    char *ename = client_escape(name);
    char *path = xasprintf("/v1/engines/%s", ename);
    char *post = xasprintf("%s/%s", path, action);
    struct client_response res;
    int rc = client_post(c, post, NULL, &res);
    if (rc != 0) {
        rc = client_fail(c, rc);
        goto out_free;
    }
    if (res.status / 100 != 2 || !json_is_object(res.json)) {
        rc = client_fail_response(&res);
        goto out;
    }
    if (!wait) {
        if (json)
            client_print_json(res.json);
        else
            print_state(res.json);
        goto out;
    }
    struct waiter w = {.action = action, .path = path, .tty = isatty(STDOUT_FILENO)};
    w.deadline = clock_mono_ms() + (uint64_t)timeout_s * 1000;
    engines_progress_init(&w.p, name);
    take(&w, res.json);
    if (w.verdict == 0)
        rc = wait_for(c, &w, server, api_key);
    else
        rc = w.verdict == 1 ? CLIENT_EXIT_OK : CLIENT_EXIT_FAILURE;
    engines_progress_cleanup(&w.p);
out:
    client_response_cleanup(&res);
out_free:
    free(post);
    free(path);
    free(ename);
    return rc;
}

int engines_cmd_main(int argc, char **argv)
{
    const char *server = NULL, *api_key = NULL, *pos[2] = {NULL, NULL};
    bool json = false, wait = false;
    long timeout_s = WAIT_DEFAULT_S;
    size_t npos = 0;
    for (int i = 1; i < argc; i++) {
        int took = client_take_flag("engines", argc, argv, &i, &server, &api_key);
        if (took < 0)
            return CLIENT_EXIT_USAGE;
        if (took > 0)
            continue;
        if (is_help(argv[i])) {
            fputs(engines_cmd_usage, stdout);
            return CLIENT_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--wait") == 0) {
            wait = true;
        } else if (strcmp(argv[i], "--timeout") == 0) {
            if (i + 1 >= argc || client_parse_count(argv[i + 1], 7L * 86400, &timeout_s) != 0)
                return usage_error("engines", engines_cmd_usage,
                                   "--timeout needs a number of seconds, got %s",
                                   i + 1 < argc ? argv[i + 1] : "nothing");
            i++;
        } else if (argv[i][0] == '-' || npos == ARRAY_SIZE(pos)) {
            return usage_error("engines", engines_cmd_usage, "unexpected argument: %s", argv[i]);
        } else {
            pos[npos++] = argv[i];
        }
    }
    bool listing = npos == 0;
    if (!listing && strcmp(pos[0], "start") != 0 && strcmp(pos[0], "stop") != 0 &&
        strcmp(pos[0], "restart") != 0)
        return usage_error("engines", engines_cmd_usage, "unknown sub-verb: %s", pos[0]);
    if (!listing && npos != 2)
        return usage_error("engines", engines_cmd_usage, "%s needs an engine NAME", pos[0]);
    if (listing && wait)
        return usage_error("engines", engines_cmd_usage, "--wait goes with start, stop or restart");

    struct client c;
    if (client_init(&c, server, api_key) != 0)
        return CLIENT_EXIT_USAGE;
    int rc = listing ? list_engines(&c, json)
                     : act(&c, pos[0], pos[1], json, wait, timeout_s, server, api_key);
    client_cleanup(&c);
    return rc;
}

/* ---- logs ---- */

static int print_line_cb(const char *data, size_t len, void *arg)
{
    fwrite(data, 1, len, stdout);
    putchar('\n');
    fflush(stdout);
    return ferror(stdout) ? -EPIPE : 0;
}

/* The server explains itself in comments ("dropped: this client fell too far behind", "arun is
 * shutting down"); heartbeats say nothing. */
static int print_comment_cb(const char *data, size_t len, void *arg)
{
    if (len > 0 && !(len == 9 && memcmp(data, "heartbeat", 9) == 0))
        fprintf(stderr, "arun: server: %.*s\n", (int)len, data);
    return 0;
}

static int follow(struct client *c, const char *path)
{
    struct sigaction sa = {.sa_handler = on_sigint}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: the poll inside libcurl returns at once and the stop flag is seen. */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    struct client_response res;
    int rc = client_stream_sse(c, path, print_line_cb, print_comment_cb, NULL, &interrupted, &res);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    if (rc == -EINTR)
        return CLIENT_EXIT_OK; /* Ctrl-C is how a person ends `logs -f` */
    if (rc == -EPIPE)
        return CLIENT_EXIT_FAILURE; /* stdout went away; nothing left to tell */
    if (rc != 0)
        return client_fail(c, rc);
    rc = res.status / 100 == 2 ? CLIENT_EXIT_OK : client_fail_response(&res);
    client_response_cleanup(&res);
    return rc;
}

static int tail(struct client *c, const char *path)
{
    struct client_response res;
    int rc = client_get(c, path, &res);
    if (rc != 0)
        return client_fail(c, rc);
    if (res.status == 200)
        fwrite(res.body, 1, res.len, stdout);
    else
        rc = client_fail_response(&res);
    client_response_cleanup(&res);
    return rc;
}

int logs_cmd_main(int argc, char **argv)
{
    const char *server = NULL, *api_key = NULL, *name = NULL;
    bool follow_flag = false;
    long lines = LOGS_TAIL_DEFAULT;
    for (int i = 1; i < argc; i++) {
        int took = client_take_flag("logs", argc, argv, &i, &server, &api_key);
        if (took < 0)
            return CLIENT_EXIT_USAGE;
        const char *a = argv[i], *n = NULL;
        if (took > 0)
            continue;
        if (is_help(a)) {
            fputs(logs_cmd_usage, stdout);
            return CLIENT_EXIT_OK;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--follow") == 0) {
            follow_flag = true;
            continue;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--lines") == 0) {
            n = i + 1 < argc ? argv[++i] : "";
        } else if (strncmp(a, "--lines=", 8) == 0) {
            n = a + 8;
        } else if (strncmp(a, "-n", 2) == 0) {
            n = a + 2;
        } else if (a[0] == '-' || name != NULL) {
            return usage_error("logs", logs_cmd_usage, "unexpected argument: %s", a);
        } else {
            name = a;
            continue;
        }
        if (client_parse_count(n, LOGS_TAIL_MAX, &lines) != 0)
            return usage_error("logs", logs_cmd_usage,
                               "-n needs a number of lines from 0 to 10000, got \"%s\"", n);
    }
    if (name == NULL)
        return usage_error("logs", logs_cmd_usage, "which engine? give its NAME");

    struct client c;
    if (client_init(&c, server, api_key) != 0)
        return CLIENT_EXIT_USAGE;
    char *ename = client_escape(name);
    char *path =
        xasprintf("/v1/engines/%s/logs?tail=%ld%s", ename, lines, follow_flag ? "&follow=1" : "");
    int rc = follow_flag ? follow(&c, path) : tail(&c, path);
    free(path);
    free(ename);
    client_cleanup(&c);
    return rc;
}
