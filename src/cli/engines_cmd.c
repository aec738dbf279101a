/*
 * engines_cmd.c: `arun engines`, `arun engines start|stop|restart NAME` and `arun logs NAME`.
 * See engines_cmd.h. Each verb is one or a few requests to the supervisor's HTTP API
 * (docs/http-api.md) and a rendering of the answer for a person; nothing here decides anything
 * about engines. The server's words are shown as they are: its reasons are written for people.
 *
 * The table's columns are the contract's (NAME STATE MODELS PID PORT MEM UPTIME RESTARTS
 * REASON), as wide as their widest cell. REASON comes last and is never padded, so a script can
 * cut it with `cut -c` or read it whole; on a terminal it is shortened to the window's width so
 * a long crash reason does not wrap the table.
 */
#include "cli/engines_cmd.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/table.h"
#include "core/buf.h"
#include "core/clock.h"

#define WAIT_DEFAULT_S 600    /* --wait: a large model can take minutes to load */
#define WAIT_POLL_MS 250      /* --wait: often enough to feel immediate, cheap for the server */
#define LOGS_TAIL_DEFAULT 100 /* the server's own default */
#define LOGS_TAIL_MAX 10000   /* the server refuses more (400) */
#define NCOLS 9

const char engines_cmd_usage[] =
    "usage: arun engines [--json]\n"
    "       arun engines start|stop|restart NAME [--wait] [--timeout S] [--json]\n"
    "\n"
    "Without a sub-verb, lists the engines of the running server as a table:\n"
    "  NAME STATE MODELS PID PORT MEM UPTIME RESTARTS REASON\n"
    "MEM is the resident memory over the declared memory.ram_mb in MiB (412/2000M), UPTIME the\n"
    "time since the engine started, REASON why an engine is not ready. --json prints the\n"
    "server's list (GET /v1/engines) as it is.\n"
    "\n"
    "start, stop and restart ask the server to act and print NAME: STATE as it answered.\n"
    "  --wait       wait until the engine is ready (start, restart) or stopped (stop);\n"
    "               exit 1 with the reason when it fails instead\n"
    "  --timeout S  give up waiting after S seconds (default 600), exit 1\n"
    "  --json       print the engine as JSON instead\n"
    "\n"
    "  --server URL    the server (default: $ARUN_URL, else " CLIENT_DEFAULT_URL ")\n"
    "  --api-key KEY   API key (default: $ARUN_API_KEY)\n"
    "  --cacert FILE   CA certificate(s) to trust for an https:// server (default:\n"
    "                  $ARUN_CA_FILE, else the system's)\n"
    "\n"
    "exit codes: 0 success, 1 the server refused (unknown engine, cannot start) or the engine\n"
    "failed while waited for, 2 usage error, 3 server unreachable\n";

const char logs_cmd_usage[] =
    "usage: arun logs NAME [-n LINES] [-f]\n"
    "\n"
    "Prints the last LINES lines (default 100, at most 10000) of an engine's output, with\n"
    "arun's own notes about it (\"arun: started pid …\") interleaved.\n"
    "  -n, --lines LINES  how many lines of the tail\n"
    "  -f, --follow       then keep printing new lines as the engine writes them, until\n"
    "                     Ctrl-C or the server ends the stream (both exit 0)\n"
    "\n"
    "  --server URL    the server (default: $ARUN_URL, else " CLIENT_DEFAULT_URL ")\n"
    "  --api-key KEY   API key (default: $ARUN_API_KEY)\n"
    "  --cacert FILE   CA certificate(s) to trust for an https:// server (default:\n"
    "                  $ARUN_CA_FILE, else the system's)\n"
    "\n"
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

/* started_at is "2026-11-24T02:10:46Z" (UTC) or null. */
static char *fmt_uptime(const json_t *started_at)
{
    const char *s = json_string_value(started_at);
    struct tm tm = {0};
    if (s == NULL)
        return xstrdup("-");
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL)
        return xstrdup("?");
    return table_duration((int64_t)time(NULL) - (int64_t)timegm(&tm));
}

static char *fmt_int_or_dash(const json_t *v)
{
    return json_is_integer(v) ? xasprintf("%lld", (long long)json_integer_value(v)) : xstrdup("-");
}

static char *fmt_mem(const json_t *e)
{
    const json_t *m = json_object_get(e, "memory");
    long long rss = (long long)json_integer_value(json_object_get(m, "rss_mb"));
    long long declared = (long long)json_integer_value(json_object_get(m, "declared_ram_mb"));
    bool up = json_is_string(json_object_get(e, "started_at"));
    if (up)
        return declared > 0 ? xasprintf("%lld/%lldM", rss, declared) : xasprintf("%lldM", rss);
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

static const char *str_or(const json_t *v, const char *dflt)
{
    const char *s = json_string_value(v);
    return s != NULL && s[0] != '\0' ? s : dflt;
}

static void row_of(const json_t *e, char **cells)
{
    cells[0] = xstrdup(str_or(json_object_get(e, "name"), "?"));
    cells[1] = xstrdup(str_or(json_object_get(e, "state"), "?"));
    cells[2] = fmt_models(json_object_get(e, "models"));
    cells[3] = fmt_int_or_dash(json_object_get(e, "pid"));
    cells[4] = fmt_int_or_dash(json_object_get(e, "port"));
    cells[5] = fmt_mem(e);
    cells[6] = fmt_uptime(json_object_get(e, "started_at"));
    cells[7] = fmt_int_or_dash(json_object_get(e, "restarts"));
    cells[8] = xstrdup(str_or(json_object_get(e, "reason"), "-"));
}

static int list_engines(struct client *c, bool json)
{
    static const char *const header[NCOLS] = {"NAME", "STATE",  "MODELS",   "PID",   "PORT",
                                              "MEM",  "UPTIME", "RESTARTS", "REASON"};
    struct client_response res;
    int rc = client_get(c, "/v1/engines", &res);
    if (rc != 0)
        return client_fail(c, rc);
    const json_t *data = json_object_get(res.json, "data");
    if (res.status != 200 || !json_is_array(data)) {
        rc = client_fail_response(&res);
        goto out;
    }
    if (json) {
        client_print_json(res.json);
        goto out;
    }
    struct table t;
    table_init(&t, NCOLS);
    table_add_strs(&t, header);
    for (size_t r = 0; r < json_array_size(data); r++) {
        char *cells[NCOLS];
        row_of(json_array_get(data, r), cells);
        table_add_row(&t, cells);
    }
    table_print(&t);
    table_cleanup(&t);
out:
    client_response_cleanup(&res);
    return rc;
}

/* ---- start, stop, restart ---- */

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

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Polls the engine until verdict() decides or the deadline passes; prints each new state. */
static int wait_for(struct client *c, const char *action, const char *path, const json_t *first,
                    long timeout_s)
{
    uint64_t deadline = clock_mono_ms() + (uint64_t)timeout_s * 1000;
    char last[32];
    bool seen_running = false;
    snprintf(last, sizeof(last), "%s", str_or(json_object_get(first, "state"), "?"));
    int v = verdict(action, last, &seen_running);
    while (v == 0 && clock_mono_ms() < deadline) {
        sleep_ms(WAIT_POLL_MS);
        struct client_response res;
        int rc = client_get(c, path, &res);
        if (rc != 0)
            return client_fail(c, rc);
        if (res.status != 200) {
            rc = client_fail_response(&res);
            client_response_cleanup(&res);
            return rc;
        }
        const char *state = str_or(json_object_get(res.json, "state"), "?");
        v = verdict(action, state, &seen_running);
        if (strcmp(state, last) != 0 || v != 0)
            print_state(res.json);
        snprintf(last, sizeof(last), "%s", state);
        client_response_cleanup(&res);
    }
    if (v == 0)
        fprintf(stderr, "arun: gave up waiting after %ld s: the engine is still %s\n", timeout_s,
                last);
    return v == 1 ? CLIENT_EXIT_OK : CLIENT_EXIT_FAILURE;
}

static int act(struct client *c, const char *action, const char *name, bool json, bool wait,
               long timeout_s)
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
    if (json && !wait)
        client_print_json(res.json);
    else
        print_state(res.json);
    if (wait)
        rc = wait_for(c, action, path, res.json, timeout_s);
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
    int rc = listing ? list_engines(&c, json) : act(&c, pos[0], pos[1], json, wait, timeout_s);
    client_cleanup(&c);
    return rc;
}

/* ---- logs ---- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    interrupted = 1;
}

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
