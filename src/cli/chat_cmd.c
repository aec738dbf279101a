/*
 * chat_cmd.c: `arun chat`. See chat_cmd.h. It builds one OpenAI chat request from the flags,
 * sends it to the gateway and prints the answer; nothing here knows about engines: routing,
 * queueing and starting engines are the server's business, and its words (a 404 that lists the
 * models, a 429 that says how busy the engine is) are shown as they are.
 *
 * DESIGN
 *
 * stdout carries the answer and nothing else, so `arun chat … > answer.txt` and pipes get
 * exactly the text: each delta's content is written and flushed as its event arrives, and one
 * newline ends it. Everything else goes to stderr: errors as "arun: MESSAGE", and the server's
 * SSE comments (": queued 2nd for qwen, …"), which tell a person why nothing happens yet; they
 * are shown on a terminal or with -v, since a script usually wants only the error lines.
 *
 * An answer counts as complete when the stream said so: a "[DONE]" event or a finish_reason.
 * A stream that just ends without either was cut (the engine died, the gateway gave up), which
 * is a failure (exit 1), not a short answer. An error event inside the stream (the gateway's
 * `data: {"error":{…}}` once headers went out) is a failure with its message.
 *
 * Ctrl-C ends the stream cooperatively (the client's stop flag, see client.h): the partial
 * answer is ended with its newline and the exit is 0, since stopping a long answer is a normal
 * thing to do, not an error.
 */
#include "cli/chat_cmd.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/watch.h"
#include "core/buf.h"

#define CHAT_MAX_PROMPT (8u << 20) /* limits.max_body_bytes' default: the server takes no more */
#define CHAT_MAX_TOKENS 100000000L /* far beyond any context window; only guards the parse */
#define CHAT_MAX_TEMPERATURE 2.0   /* the OpenAI API's range is 0..2 */
#define SHOWN_EVENT_BYTES 200      /* of an event that is not JSON, in the error message */
#define PROCEED (-1)               /* parse_args: the arguments are good, send the request */

const char chat_cmd_usage[] =
    "usage: arun chat -m MODEL [OPTIONS] [PROMPT...]\n"
    "\n"
    "Sends PROMPT as one user message to MODEL (a model name, alias or route of the running\n"
    "server; POST /v1/chat/completions) and streams the answer to stdout as it is generated,\n"
    "ending it with a newline. The words of PROMPT are joined with spaces. Without PROMPT, or\n"
    "with PROMPT \"-\", the prompt is read from stdin (when stdin is not a terminal, or for "
    "\"-\")\n"
    "and its trailing newlines are dropped.\n"
    "  -m, --model MODEL    the model to ask (required)\n"
    "  --system TEXT        a system message sent before the prompt\n"
    "  --max-tokens N       at most N tokens in the answer (max_tokens)\n"
    "  --temperature T      sampling temperature, 0 to 2\n"
    "  --json               print the whole (non-streamed) JSON response instead (with\n"
    "                       --background: the Response as created, then exit)\n"
    "  --background         run it as a durable background response (POST /v1/responses):\n"
    "                       its id goes to stderr, then the answer streams to stdout as with\n"
    "                       `arun runs watch ID`, which survives dropped connections and a\n"
    "                       server restart; Ctrl-C stops watching, the run goes on\n"
    "  --detach             with --background (implied): print only the id on stdout and\n"
    "                       exit at once\n"
    "  -v, --verbose        show the server's progress notes (queued, engine loading) on\n"
    "                       stderr even when stderr is not a terminal\n"
    "\n" CLIENT_HELP_OPTIONS "\n"
    "Ctrl-C stops the answer (exit 0).\n"
    "exit codes: 0 success, 1 the server refused (unknown model, busy, engine unavailable) or\n"
    "the answer failed (--background: the run ended failed, cancelled or incomplete), 2 usage\n"
    "error, 3 server unreachable or the connection dropped (--background: unreachable for a\n"
    "minute)\n";

struct chat_opts {
    const char *server, *api_key;
    const char *model;
    const char *system;
    long max_tokens;    /* -1: not sent */
    double temperature; /* sent when has_temperature */
    bool has_temperature;
    bool json, background, detach, verbose;
    char *prompt; /* heap */
};

/* What the event callbacks learn while the answer streams. */
struct chat_stream {
    bool show_notes; /* print the server's comments on stderr */
    bool wrote;      /* some of the answer reached stdout */
    bool complete;   /* [DONE] or a finish_reason arrived */
    bool failed;     /* an error was printed; the exit is 1 */
};

#define usage_error(...) client_usage_error("chat", chat_cmd_usage, __VA_ARGS__)

/* ---- arguments ---- */

static int parse_max_tokens(const char *s, long *out)
{
    long v;
    if (client_parse_count(s, CHAT_MAX_TOKENS, &v) != 0 || v < 1)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_temperature(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(v) || v < 0 ||
        v > CHAT_MAX_TEMPERATURE)
        return -EINVAL;
    *out = v;
    return 0;
}

/* The options that take a value: indexes of valued_options[]. */
enum valued_option { OPT_MODEL, OPT_SYSTEM, OPT_MAX_TOKENS, OPT_TEMPERATURE };

static const struct {
    const char *name, *shrt;
} valued_options[] = {
    [OPT_MODEL] = {"--model", "-m"},
    [OPT_SYSTEM] = {"--system", NULL},
    [OPT_MAX_TOKENS] = {"--max-tokens", NULL},
    [OPT_TEMPERATURE] = {"--temperature", NULL},
};

/* Stores option k's value v. Returns 0, or -EINVAL for a bad value (printed). */
static int set_value(struct chat_opts *o, enum valued_option k, const char *v)
{
    switch (k) {
    case OPT_MODEL:
        o->model = v;
        return 0;
    case OPT_SYSTEM:
        o->system = v;
        return 0;
    case OPT_MAX_TOKENS:
        if (parse_max_tokens(v, &o->max_tokens) == 0)
            return 0;
        usage_error("--max-tokens needs a whole number from 1 to %ld, got \"%s\"", CHAT_MAX_TOKENS,
                    v);
        return -EINVAL;
    case OPT_TEMPERATURE:
        o->has_temperature = parse_temperature(v, &o->temperature) == 0;
        if (o->has_temperature)
            return 0;
        usage_error("--temperature needs a number from 0 to 2, got \"%s\"", v);
        return -EINVAL;
    }
    return -EINVAL;
}

/* One option at argv[*i]. Returns 1 when it took it, 0 when argv[*i] is not an option of
 * chat, or -EINVAL for a missing or bad value (printed). */
static int take_option(int argc, char **argv, int *i, struct chat_opts *o)
{
    const char *a = argv[*i];
    bool *flag = strcmp(a, "--json") == 0                              ? &o->json
                 : strcmp(a, "--background") == 0                      ? &o->background
                 : strcmp(a, "--detach") == 0                          ? &o->detach
                 : strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0 ? &o->verbose
                                                                       : NULL;
    if (flag != NULL) {
        *flag = true;
        return 1;
    }
    for (size_t k = 0; k < ARRAY_SIZE(valued_options); k++) {
        bool missing = false;
        const char *v = client_take_value(argc, argv, i, valued_options[k].name,
                                          valued_options[k].shrt, &missing);
        if (missing) {
            usage_error("%s needs a value", a);
            return -EINVAL;
        }
        if (v != NULL)
            return set_value(o, (enum valued_option)k, v) == 0 ? 1 : -EINVAL;
    }
    return 0;
}

/* Reads all of stdin as the prompt. Returns 0 or -EINVAL (the reason printed). */
static int read_stdin_prompt(struct chat_opts *o)
{
    struct buf b;
    char chunk[64 * 1024];
    size_t n = 1;
    int rc = 0;
    buf_init(&b, CHAT_MAX_PROMPT);
    while (rc == 0 && n > 0) {
        n = fread(chunk, 1, sizeof(chunk), stdin);
        rc = buf_append(&b, chunk, n);
    }
    if (rc != 0 || ferror(stdin)) {
        fprintf(stderr, "arun chat: %s\n",
                rc != 0 ? "the prompt on stdin is larger than 8 MiB" : "cannot read stdin");
        buf_cleanup(&b);
        return -EINVAL;
    }
    /* `echo question | arun chat` ends the prompt with a newline nobody meant to send. */
    size_t len = b.len;
    const char *s = buf_cstr(&b);
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    o->prompt = xstrndup(s, len);
    buf_cleanup(&b);
    return 0;
}

/* The prompt from the positional words, or from stdin. Returns 0 or -EINVAL (printed). */
static int take_prompt(struct chat_opts *o, char **words, int nwords)
{
    if (nwords == 0 && isatty(STDIN_FILENO)) {
        usage_error("no prompt: give it as an argument, or pipe it on stdin");
        return -EINVAL;
    }
    if (nwords == 0 || (nwords == 1 && strcmp(words[0], "-") == 0)) {
        int rc = read_stdin_prompt(o);
        if (rc != 0)
            return rc;
    } else {
        struct buf b;
        buf_init(&b, CHAT_MAX_PROMPT);
        int rc = 0;
        for (int k = 0; k < nwords && rc == 0; k++)
            rc = buf_printf(&b, "%s%s", k ? " " : "", words[k]);
        o->prompt = rc == 0 ? buf_steal(&b) : NULL;
        buf_cleanup(&b);
        if (rc != 0) {
            usage_error("the prompt is larger than 8 MiB");
            return -EINVAL;
        }
    }
    if (o->prompt[0] == '\0') {
        usage_error("the prompt is empty");
        return -EINVAL;
    }
    return 0;
}

/* Returns PROCEED with *o filled, or the exit code when the verb ends here (help printed, a
 * usage error printed). */
static int parse_args(int argc, char **argv, struct chat_opts *o)
{
    char **words = xcalloc((size_t)argc, sizeof(*words));
    int nwords = 0, rc = PROCEED;
    bool options_end = false;
    for (int i = 1; i < argc && rc == PROCEED; i++) {
        const char *a = argv[i];
        if (options_end || a[0] != '-' || strcmp(a, "-") == 0) {
            words[nwords++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            options_end = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(chat_cmd_usage, stdout);
            rc = CLIENT_EXIT_OK;
        } else {
            int took = client_take_flag("chat", argc, argv, &i, &o->server, &o->api_key);
            if (took == 0)
                took = take_option(argc, argv, &i, o);
            if (took == 0)
                usage_error("unknown option: %s (a prompt that starts with '-' goes after --)", a);
            if (took <= 0)
                rc = CLIENT_EXIT_USAGE;
        }
    }
    if (rc == PROCEED && (o->model == NULL || o->model[0] == '\0'))
        rc = usage_error("which model? give it with -m MODEL (`arun engines` lists them)");
    if (rc == PROCEED && take_prompt(o, words, nwords) != 0)
        rc = CLIENT_EXIT_USAGE;
    free(words);
    return rc;
}

/* ---- the request ---- */

/* Adds the sampling flags to req (the token cap under tokens_key: the two APIs name it
 * differently) and returns it as compact JSON. Takes req's reference; caller frees. */
static char *finish_body(json_t *req, const struct chat_opts *o, const char *tokens_key)
{
    if (o->max_tokens > 0)
        json_object_set_new(req, tokens_key, json_integer(o->max_tokens));
    if (o->has_temperature)
        json_object_set_new(req, "temperature", json_real(o->temperature));
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (s == NULL) /* only out of memory: the same rule as xmalloc */
        abort();
    return s;
}

static char *request_body(const struct chat_opts *o, bool stream)
{
    json_t *messages = json_array();
    if (o->system != NULL)
        json_array_append_new(messages,
                              json_pack("{s:s, s:s}", "role", "system", "content", o->system));
    json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "user", "content", o->prompt));
    json_t *req =
        json_pack("{s:s, s:o, s:b}", "model", o->model, "messages", messages, "stream", stream);
    return finish_body(req, o, "max_tokens");
}

/* An error answer; 429 and 503 say when to try again, as the server told. */
static int fail_answer(const struct client_response *res)
{
    const char *msg = client_error_message(res);
    if ((res->status == 429 || res->status == 503) && res->retry_after_s > 0 && msg != NULL) {
        fprintf(stderr, "arun: %s (retry after %d s)\n", msg, res->retry_after_s);
        return CLIENT_EXIT_FAILURE;
    }
    return client_fail_response(res);
}

/* ---- streaming ---- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    interrupted = 1;
}

/* Ends the partial answer's line so that an error printed now gets its own. */
static void break_line(struct chat_stream *st)
{
    if (st->wrote)
        putchar('\n');
    fflush(stdout);
}

/* One event of the answer: a chunk (its delta's content goes to stdout), "[DONE]", or an
 * error. Returns 0 to go on, 1 after an error was printed, -EPIPE when stdout is gone. */
static int chunk_cb(const char *data, size_t len, void *arg)
{
    struct chat_stream *st = arg;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        st->complete = true;
        return 0;
    }
    json_t *j = json_loadb(data, len, 0, NULL);
    int rc = 0;
    if (j == NULL) {
        break_line(st);
        fprintf(stderr, "arun: the server sent an event that is not JSON: %.*s\n",
                (int)(len < SHOWN_EVENT_BYTES ? len : SHOWN_EVENT_BYTES), data);
        st->failed = true;
        return 1;
    }
    json_t *err = json_object_get(j, "error");
    json_t *choice = json_array_get(json_object_get(j, "choices"), 0);
    const char *text =
        json_string_value(json_object_get(json_object_get(choice, "delta"), "content"));
    if (err != NULL) {
        const char *msg = json_string_value(json_object_get(err, "message"));
        break_line(st);
        fprintf(stderr, "arun: %s\n", msg ? msg : "the server reported an error mid-answer");
        st->failed = true;
        rc = 1;
    } else if (text != NULL && text[0] != '\0') {
        fputs(text, stdout);
        fflush(stdout);
        st->wrote = true;
        rc = ferror(stdout) ? -EPIPE : 0;
    }
    if (json_is_string(json_object_get(choice, "finish_reason")))
        st->complete = true;
    json_decref(j);
    return rc;
}

/* The server's notes about the request ("queued 2nd for qwen, engine loading, about 12 s
 * left"); heartbeats say nothing. */
static int note_cb(const char *data, size_t len, void *arg)
{
    struct chat_stream *st = arg;
    if (st->show_notes && len > 0 && !(len == 9 && memcmp(data, "heartbeat", 9) == 0))
        fprintf(stderr, "arun: %.*s\n", (int)len, data);
    return 0;
}

static int end_answer(int code)
{
    putchar('\n');
    fflush(stdout);
    return code;
}

static int chat_stream(struct client *c, const struct chat_opts *o)
{
    struct chat_stream st = {.show_notes = o->verbose || isatty(STDERR_FILENO)};
    struct sigaction sa = {.sa_handler = on_sigint}, old_int;
    struct client_response res;
    char *body = request_body(o, true);
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: the poll inside libcurl returns at once and the stop flag is seen. */
    sigaction(SIGINT, &sa, &old_int);
    int rc = client_post_sse(c, "/v1/chat/completions", body, chunk_cb, note_cb, &st, &interrupted,
                             &res);
    sigaction(SIGINT, &old_int, NULL);
    free(body);
    if (rc == -EINTR)
        return end_answer(CLIENT_EXIT_OK); /* Ctrl-C is how a person stops a long answer */
    if (rc == -EPIPE || st.failed)
        return CLIENT_EXIT_FAILURE; /* stdout went away, or the error was printed */
    if (rc != 0) {
        break_line(&st);
        return client_fail(c, rc);
    }
    if (res.status / 100 != 2) {
        rc = fail_answer(&res);
        client_response_cleanup(&res);
        return rc;
    }
    client_response_cleanup(&res);
    if (!st.complete) {
        break_line(&st);
        fprintf(stderr, "arun: the answer was cut off: the server ended the stream before the "
                        "answer was complete (see `arun logs ENGINE`)\n");
        return CLIENT_EXIT_FAILURE;
    }
    return end_answer(CLIENT_EXIT_OK);
}

/* --json: the whole response, as the server sent it. */
static int chat_json(struct client *c, const struct chat_opts *o)
{
    struct client_response res;
    char *body = request_body(o, false);
    c->timeout_ms = 0; /* an answer may take minutes, and its engine minutes to load first */
    int rc = client_post(c, "/v1/chat/completions", body, &res);
    free(body);
    if (rc != 0)
        return client_fail(c, rc);
    if (res.status / 100 != 2)
        rc = fail_answer(&res);
    else if (res.json != NULL)
        client_print_json(res.json);
    else
        fwrite(res.body, 1, res.len, stdout);
    client_response_cleanup(&res);
    return rc;
}

/* --background: the request of the Responses API (POST /v1/responses) for the same flags. */
static char *background_body(const struct chat_opts *o)
{
    json_t *req =
        json_pack("{s:s, s:s, s:b}", "model", o->model, "input", o->prompt, "background", 1);
    if (o->system != NULL)
        json_object_set_new(req, "instructions", json_string(o->system));
    return finish_body(req, o, "max_output_tokens");
}

/* A 404 from the router itself ("no such endpoint"), not one about the model: the server
 * predates the Responses API. */
static bool lacks_responses_api(const struct client_response *res)
{
    const char *msg = client_error_message(res);
    return res->status == 404 && msg != NULL && strncmp(msg, "no such endpoint", 16) == 0;
}

/* --background: creates a durable background response, then (unless --detach or --json)
 * follows it to its end as `arun runs watch` does, the answer on stdout. Its id goes to stderr
 * first, so a person whose terminal closes can follow it again. */
static int chat_background(struct client *c, const struct chat_opts *o)
{
    struct client_response res;
    char *body = background_body(o);
    int rc = client_post(c, "/v1/responses", body, &res);
    free(body);
    if (rc != 0)
        return client_fail(c, rc);
    const char *id = json_string_value(json_object_get(res.json, "id"));
    if (lacks_responses_api(&res)) {
        fprintf(stderr, "arun chat --background needs the Responses API (POST /v1/responses), "
                        "which this server does not offer yet\n");
        rc = CLIENT_EXIT_USAGE;
    } else if (res.status / 100 != 2 || id == NULL) {
        rc = fail_answer(&res);
    } else if (o->json) {
        client_print_json(res.json);
    } else if (o->detach) {
        printf("%s\n", id);
    } else {
        struct watch_opts wo = {.reconnect_s = WATCH_RECONNECT_DEFAULT_S, .verbose = o->verbose};
        fprintf(stderr, "arun: %s (background: Ctrl-C stops watching, the run goes on)\n", id);
        rc = watch_follow(c, id, &wo);
    }
    client_response_cleanup(&res);
    return rc;
}

int chat_cmd_main(int argc, char **argv)
{
    struct chat_opts o = {.max_tokens = -1};
    int rc = parse_args(argc, argv, &o);
    if (rc != PROCEED) {
        free(o.prompt);
        return rc;
    }
    struct client c;
    if (client_init(&c, o.server, o.api_key) != 0) {
        free(o.prompt);
        return CLIENT_EXIT_USAGE;
    }
    if (o.background || o.detach)
        rc = chat_background(&c, &o);
    else
        rc = o.json ? chat_json(&c, &o) : chat_stream(&c, &o);
    client_cleanup(&c);
    free(o.prompt);
    return rc;
}
