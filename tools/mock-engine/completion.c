/*
 * completion.c: chat and text completions of arun-mock-engine, streaming and not.
 *
 * A completion reads its request once (prompt, seed, max_tokens, stream, continuation prefix),
 * then emits its tokens at the --tokens-per-s pace with one uv timer; nothing here sleeps.
 *
 * DESIGN
 * A struct completion lives on the heap from arrival until both h2o has disposed its request
 * and its timer is closed. h2o tells us about the disposal through a pool-shared object's
 * dispose callback (on_req_dispose), which fires on normal completion, on a client that left
 * and on connection close alike; that is the one place that frees the concurrency slot in the
 * ordinary case and starts the free (uv_close of the timer, free in its close callback). So the
 * struct is valid in every callback that can still reach it, and c->req is NULL once the request
 * is gone.
 *
 * Token k (1-based) is due start + ceil(k * 1000 / tokens_per_s) ms after arrival. A stream
 * sends one SSE event per token, and the next one only after h2o's proceed (the write finished):
 * that is the backpressure. h2o 2.2 stops reading a connection while its request is processed,
 * so a client that leaves is seen only when a write fails; to free its slot sooner, every timer
 * tick (at least every PEER_CHECK_MS) peeks the socket and aborts the completion on EOF/reset.
 *
 * Continuation: a chat whose last message is the assistant's, with string content P, is answered
 * as the conversation without that message, minus P, when P is a prefix of that answer (a prefix
 * may end inside a token: the rest of that token is the first token sent). Otherwise the
 * assistant message is simply part of the prompt. Under --echo-prefix the answer repeats P first
 * (llama-server does), on the first token or, with --echo-split N, in events of N bytes.
 *
 * Tools: a chat with `tools` whose last message is the user's and asks for a tool ("call NAME",
 * "use the tool", or tool_choice) is answered with tool calls instead of words: each call is one
 * event opening it and then its arguments in pieces of GEN_ARGS_PIECE bytes, each piece a
 * token. A chat whose last message is a tool result is answered with a script: "tool result: "
 * and the tool's output, cut into tokens at spaces (gen.h), so a test sees the round trip.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "api_int.h"
#include "gen.h"

#define PEER_CHECK_MS 100 /* how long a vanished client may keep its slot, at most */
#define CHUNK_CAP                                                                                  \
    (4u << 20) /* one SSE event: model name, an echoed prefix, one token (escaped)                 \
                */
#define SCRIPT_INPUT_CAP (64u << 10) /* the part of a tool result a scripted answer repeats */
#define ID_LEN 40                    /* "chatcmpl-" + 8 + 12 hex digits, and room to spare */

/* The tokens still to emit: an optional partial token left by a continuation, then the gen (or
 * the script). */
struct tokens {
    struct gen gen;           /* the word stream, positioned after what was already said */
    struct gen_script script; /* the scripted answer's pieces, when scripted */
    int scripted;             /* the tokens come from script, not gen */
    const char *partial;      /* rest of the token a continuation prefix ended inside (static) */
    size_t partial_len;
    int has_partial;
};

/* One tool call of an answer. */
struct call {
    char name[GEN_TOOL_NAME_MAX + 1];
    char id[32]; /* call_ + 8 hex digits of the prompt's hash + _ + index: stable per prompt */
    char args[GEN_ARGS_MAX];
    size_t args_len;
};

struct completion {
    h2o_generator_t generator; /* streams only; proceed = the last write completed */
    uv_timer_t timer;          /* pacing and peer checks; closed once the request is gone */
    h2o_linklist_t link;       /* in api->in_flight while counted */
    struct api *api;           /* owner of the counters and the loop */
    h2o_req_t *req;            /* NULL once h2o disposed the request */
    enum completion_kind kind; /* chat or text: the JSON shapes */
    int stream;                /* SSE or one JSON body */
    int include_usage;         /* stream_options.include_usage */
    int counted;               /* holds a concurrency slot; only release() clears it */
    int aborted;               /* cut short: client gone or shutdown */
    int awaiting_proceed;      /* a stream write is in progress: send nothing now */
    int responded;             /* the final bytes were handed to h2o */
    struct tokens tokens;      /* what is left to say */
    unsigned total;            /* tokens this answer has */
    unsigned sent;             /* tokens already sent (stream) or generated (not stream) */
    uint64_t prompt_tokens;    /* usage.prompt_tokens */
    const char *finish_reason; /* "stop" or "length" */
    uint64_t start_ms;         /* uv_now() at arrival: the pacing origin */
    h2o_iovec_t head; /* '{"id":…,"object":…,…,"system_fingerprint":"mock",' (pool) */
    struct buf chunk; /* the SSE bytes being written; reused after each proceed */
    char *script;     /* a scripted answer's text (heap), or NULL */
    const char *echo; /* the continued prefix to repeat (into the request's pool), or NULL */
    size_t echo_len, echo_off;        /* its length, and how much of it was sent */
    struct call calls[GEN_CALLS_MAX]; /* a tool-call answer's calls */
    size_t ncalls;
    size_t call_cur, call_off; /* the call being sent and the arguments sent of it */
    int call_opened;           /* its opening event was sent */
};

/* What a request asks for, read and checked before anything is allocated. */
struct params {
    int64_t seed;        /* "seed", 0 when absent */
    unsigned max_tokens; /* the cap on this answer's tokens */
    int stream;          /* SSE instead of one body */
    int include_usage;   /* stream_options.include_usage */
    int ignore_eos;      /* no natural end: run to max_tokens */
    const char *model;   /* borrowed from the request JSON or the flags */
    size_t model_len;
};

/* A request error: the status is always 400 here. */
struct req_error {
    char message[160];
    const char *param;
};

static void pump(struct completion *c);
static void wait_or_answer(struct completion *c);

static int fail(struct req_error *e, const char *param, const char *message)
{
    snprintf(e->message, sizeof(e->message), "%s", message);
    e->param = param;
    return -EINVAL;
}

/* ---- reading the request ---- */

static int read_max_tokens(json_t *root, enum completion_kind kind, unsigned dflt, unsigned *out,
                           struct req_error *e)
{
    static const char *const chat_keys[] = {"max_completion_tokens", "max_tokens", "n_predict"};
    static const char *const text_keys[] = {"max_tokens", "n_predict"};
    const char *const *keys = kind == COMPLETION_CHAT ? chat_keys : text_keys;
    size_t n = kind == COMPLETION_CHAT ? ARRAY_SIZE(chat_keys) : ARRAY_SIZE(text_keys);
    *out = dflt;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(root, keys[i]);
        if (v == NULL || json_is_null(v))
            continue;
        if (!json_is_integer(v))
            return fail(e, keys[i], "max_tokens must be an integer");
        json_int_t x = json_integer_value(v);
        if (x > OPTS_MAX_TOKENS_CAP)
            return fail(e, keys[i], "max_tokens is above the mock's cap of 100000");
        if (x >= 0)
            *out = (unsigned)x; /* a negative value (llama's -1) means "the default" */
        return 0;
    }
    return 0;
}

static int read_bool(json_t *obj, const char *key, int *out, struct req_error *e)
{
    json_t *v = json_object_get(obj, key);
    *out = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return fail(e, key, "this field must be a boolean");
    *out = json_is_true(v);
    return 0;
}

static int read_params(struct api *a, json_t *root, enum completion_kind kind, struct params *p,
                       struct req_error *e)
{
    *p = (struct params){.model = a->opts->model, .model_len = strlen(a->opts->model)};
    json_t *v = json_object_get(root, "model");
    if (json_is_string(v) && json_string_length(v) > 0) {
        if (json_string_length(v) > API_MODEL_NAME_CAP)
            return fail(e, "model", "model is longer than 4096 bytes");
        p->model = json_string_value(v);
        p->model_len = json_string_length(v);
    }
    v = json_object_get(root, "seed");
    if (v != NULL && !json_is_null(v) && !json_is_integer(v))
        return fail(e, "seed", "seed must be an integer");
    p->seed = json_is_integer(v) ? json_integer_value(v) : 0;
    v = json_object_get(root, "n");
    if (v != NULL && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 1))
        return fail(e, "n", "the mock engine answers with one choice only (n = 1)");
    if (read_max_tokens(root, kind, (unsigned)a->opts->max_tokens, &p->max_tokens, e) != 0 ||
        read_bool(root, "stream", &p->stream, e) != 0 ||
        read_bool(root, "ignore_eos", &p->ignore_eos, e) != 0)
        return -EINVAL;
    p->ignore_eos = p->ignore_eos || a->opts->ignore_eos;
    json_t *so = json_object_get(root, "stream_options");
    if (json_is_object(so) && read_bool(so, "include_usage", &p->include_usage, e) != 0)
        return -EINVAL;
    return 0;
}

/* Calls cb with the text of a message's content: the string, or each part's "text". */
static void content_each(json_t *content, void (*cb)(void *arg, const char *s, size_t n), void *arg)
{
    if (json_is_string(content)) {
        cb(arg, json_string_value(content), json_string_length(content));
        return;
    }
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        json_t *text = json_object_get(part, "text");
        if (json_is_string(text))
            cb(arg, json_string_value(text), json_string_length(text));
    }
}

static void feed_cb(void *arg, const char *s, size_t n)
{
    gen_prompt_feed(arg, s, n);
}

static void append_cb(void *arg, const char *s, size_t n)
{
    buf_append(arg, s, n); /* past the cap: the start only, which is what the callers want */
}

/* Feeds a message's content: a string, an array of parts (their "text" fields) or null. */
static int feed_content(struct gen_prompt *gp, json_t *content, struct req_error *e)
{
    if (content == NULL || json_is_null(content))
        return 0;
    if (!json_is_string(content) && !json_is_array(content))
        return fail(e, "messages", "message content must be a string, an array of parts or null");
    content_each(content, feed_cb, gp);
    return 0;
}

static int feed_message(struct gen_prompt *gp, json_t *m, struct req_error *e)
{
    json_t *role = json_object_get(m, "role");
    if (!json_is_string(role))
        return fail(e, "messages", "every message needs a string role");
    gen_prompt_feed(gp, json_string_value(role), json_string_length(role));
    gen_prompt_feed(gp, ": ", 2);
    if (feed_content(gp, json_object_get(m, "content"), e) != 0)
        return -EINVAL;
    gen_prompt_feed(gp, "\n", 1);
    return 0;
}

/* Reads messages into *before (all but the last) and *all; *prefix is the continuation prefix
 * (the last message's content when it is the assistant's string), else NULL. */
static int chat_prompt(json_t *root, struct gen_prompt *before, struct gen_prompt *all,
                       json_t **prefix, struct req_error *e)
{
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return fail(e, "messages", "messages must be a non-empty array");
    size_t n = json_array_size(msgs);
    gen_prompt_init(all);
    for (size_t i = 0; i < n; i++) {
        if (i == n - 1)
            *before = *all;
        if (feed_message(all, json_array_get(msgs, i), e) != 0)
            return -EINVAL;
    }
    json_t *last = json_array_get(msgs, n - 1);
    json_t *role = json_object_get(last, "role");
    json_t *content = json_object_get(last, "content");
    *prefix = strcmp(json_string_value(role), "assistant") == 0 && json_is_string(content) ? content
                                                                                           : NULL;
    return 0;
}

/* The prompt of /v1/completions: a string, or an array of strings read one after the other. */
static int text_prompt(json_t *root, struct gen_prompt *gp, struct req_error *e)
{
    json_t *p = json_object_get(root, "prompt");
    gen_prompt_init(gp);
    if (json_is_string(p)) {
        gen_prompt_feed(gp, json_string_value(p), json_string_length(p));
        return 0;
    }
    if (!json_is_array(p))
        return fail(e, "prompt", "prompt must be a string or an array of strings");
    size_t i;
    json_t *s;
    json_array_foreach(p, i, s)
    {
        if (!json_is_string(s))
            return fail(e, "prompt", "prompt must be a string or an array of strings");
        gen_prompt_feed(gp, json_string_value(s), json_string_length(s));
    }
    return 0;
}

/* ---- the token stream ---- */

/* The next whole token (word or script piece), without its space. */
static const char *token_raw(struct tokens *t, size_t *len)
{
    if (t->scripted) {
        const char *w = gen_script_next(&t->script, len);
        ASSERT(w != NULL); /* callers stay within gen_script_count */
        return w;
    }
    return gen_next(&t->gen, len);
}

static const char *tokens_next(struct tokens *t, size_t *len)
{
    if (t->has_partial) {
        t->has_partial = 0;
        *len = t->partial_len;
        return t->partial;
    }
    return token_raw(t, len);
}

/* How many bytes of the token "w " the n bytes at p match (stops at the shorter), or -1. */
static long match_token(const char *w, size_t wl, const char *p, size_t n)
{
    size_t m = n < wl + 1 ? n : wl + 1;
    for (size_t i = 0; i < m; i++) {
        char expect = i < wl ? w[i] : ' ';
        if (p[i] != expect)
            return -1;
    }
    return (long)m;
}

/* Moves t past the text p[0..n) when it is a prefix of the answer t would give (at most *avail
 * tokens). Returns 0 and updates t and *avail, or -1 when p is not such a prefix. */
static int skip_prefix(struct tokens *t, unsigned *avail, const char *p, size_t n)
{
    while (n > 0) {
        if (*avail == 0)
            return -1;
        size_t wl;
        const char *w = token_raw(t, &wl);
        (*avail)--;
        long m = match_token(w, wl, p, n);
        if (m < 0)
            return -1;
        if ((size_t)m < wl + 1) { /* p ends inside this token: its rest is the next token */
            t->partial = w + m;
            t->partial_len = wl - (size_t)m;
            t->has_partial = 1;
            (*avail)++;
            return 0;
        }
        p += m;
        n -= (size_t)m;
    }
    return 0;
}

/* The text of a message's content (a string, or its parts' text) into b. */
static void content_text(json_t *content, struct buf *b)
{
    content_each(content, append_cb, b);
}

/* The tools a request's last user message asks for (see the header comment); indices into the
 * request's tools array in out. */
static size_t pick_tools(json_t *root, json_t *last, const char **names, size_t *out)
{
    json_t *tools = json_object_get(root, "tools");
    json_t *choice = json_object_get(root, "tool_choice");
    size_t n = 0, i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        const char *name =
            json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (n == GEN_CALLS_MAX * 8)
            break;
        names[n++] = name != NULL ? name : "";
    }
    if (n == 0 || (json_is_string(choice) && strcmp(json_string_value(choice), "none") == 0))
        return 0;
    const char *forced =
        json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
    for (size_t k = 0; forced != NULL && k < n; k++)
        if (strcmp(names[k], forced) == 0 && gen_tool_name_ok(forced, strlen(forced))) {
            out[0] = k;
            return 1;
        }
    struct buf text;
    buf_init(&text, API_BODY_CAP);
    content_text(json_object_get(last, "content"), &text);
    size_t k = gen_tool_pick(buf_cstr(&text), text.len, names, n, out, GEN_CALLS_MAX);
    buf_cleanup(&text);
    if (k == 0 && json_is_string(choice) && strcmp(json_string_value(choice), "required") == 0 &&
        gen_tool_name_ok(names[0], strlen(names[0]))) {
        out[0] = 0;
        k = 1;
    }
    json_t *parallel = json_object_get(root, "parallel_tool_calls");
    return json_is_false(parallel) && k > 1 ? 1 : k;
}

static void plan_calls(struct completion *c, const char **names, const size_t *picked, size_t k,
                       uint32_t hash)
{
    c->ncalls = k;
    c->total = 0;
    for (size_t i = 0; i < k; i++) {
        struct call *call = &c->calls[i];
        snprintf(call->name, sizeof(call->name), "%s", names[picked[i]]);
        snprintf(call->id, sizeof(call->id), "call_%08" PRIx32 "_%zu", hash, i);
        call->args_len = gen_tool_args(call->args, sizeof(call->args), call->name, (unsigned)i);
        c->total += 1 + (unsigned)((call->args_len + GEN_ARGS_PIECE - 1) / GEN_ARGS_PIECE);
    }
    c->finish_reason = "tool_calls";
}

/* Sets up t for the answer to the chat messages[0..end) whose prompt is gp: a script after a
 * tool result, else the word stream. Returns how many tokens that answer has naturally. Tool
 * calls are decided apart (plan), since they cannot be continued. */
static unsigned setup_tokens(struct completion *c, struct tokens *t, const struct params *p,
                             json_t *msgs, size_t end, const struct gen_prompt *gp)
{
    *t = (struct tokens){0};
    gen_init(&t->gen, gp, p->seed);
    json_t *last = end > 0 ? json_array_get(msgs, end - 1) : NULL;
    const char *role = json_string_value(json_object_get(last, "role"));
    if (role == NULL || strcmp(role, "tool") != 0)
        return p->ignore_eos ? UINT32_MAX : t->gen.natural;
    struct buf text;
    buf_init(&text, SCRIPT_INPUT_CAP);
    buf_puts(&text, "tool result: ");
    content_text(json_object_get(last, "content"), &text); /* past the cap: the start only */
    while (text.truncated && text.len > 0 &&
           ((unsigned char)text.data[text.len - 1] & 0xC0) == 0x80)
        text.len--; /* never end inside a UTF-8 character */
    free(c->script);
    c->script = xstrndup(buf_cstr(&text), text.len);
    gen_script_init(&t->script, c->script, text.len);
    t->scripted = 1;
    buf_cleanup(&text);
    return (unsigned)gen_script_count(c->script, strlen(c->script));
}

/* Decides the answer: its tokens (or tool calls), how many, and why it ends. */
static void plan(struct completion *c, const struct params *p, json_t *root,
                 const struct gen_prompt *before, const struct gen_prompt *all, json_t *prefix)
{
    json_t *msgs = json_object_get(root, "messages");
    size_t n = json_array_size(msgs);
    struct gen_prompt used = *all;
    unsigned avail = 0;
    int continued = 0;
    if (prefix != NULL) {
        struct tokens t;
        avail = setup_tokens(c, &t, p, msgs, n - 1, before);
        continued =
            skip_prefix(&t, &avail, json_string_value(prefix), json_string_length(prefix)) == 0;
        if (continued) {
            c->tokens = t;
            used = *before;
            if (c->api->opts->echo_prefix) {
                c->echo =
                    h2o_strdup(&c->req->pool, json_string_value(prefix), json_string_length(prefix))
                        .base;
                c->echo_len = json_string_length(prefix);
            }
        }
    }
    c->prompt_tokens = used.words;
    const char *names[GEN_CALLS_MAX * 8];
    size_t picked[GEN_CALLS_MAX];
    json_t *last = json_array_get(msgs, n - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    size_t k = !continued && role != NULL && strcmp(role, "user") == 0
                   ? pick_tools(root, last, names, picked)
                   : 0;
    if (k > 0) {
        gen_init(&c->tokens.gen, all, p->seed);
        plan_calls(c, names, picked, k, c->tokens.gen.state);
        return;
    }
    if (!continued)
        avail = setup_tokens(c, &c->tokens, p, msgs, n, all);
    c->total = p->max_tokens < avail ? p->max_tokens : avail;
    c->finish_reason = p->max_tokens < avail ? "length" : "stop";
}

/* ---- lifecycle ---- */

static void release(struct completion *c)
{
    if (!c->counted)
        return;
    c->counted = 0;
    h2o_linklist_unlink(&c->link);
    ASSERT(c->api->concurrency > 0);
    c->api->concurrency--;
}

static void free_cb(uv_handle_t *h)
{
    struct completion *c = h->data;
    buf_cleanup(&c->chunk);
    free(c->script);
    free(c);
}

static void on_req_dispose(void *p)
{
    struct completion *c = *(struct completion **)p;
    c->req = NULL;
    release(c);
    uv_close((uv_handle_t *)&c->timer, free_cb);
}

/* h2o: the client left before the final send. The request is disposed right after. */
static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    struct completion *c = H2O_STRUCT_FROM_MEMBER(struct completion, generator, g);
    if (!c->aborted)
        c->api->aborted++;
    c->aborted = 1;
    uv_timer_stop(&c->timer);
    release(c);
}

/* Ends c now: a stream is cut (its connection closes), a waiting request gets 503. */
static void abort_completion(struct completion *c, const char *why)
{
    h2o_req_t *req = c->req;
    c->aborted = 1;
    uv_timer_stop(&c->timer);
    release(c);
    if (req == NULL || c->responded)
        return;
    if (!c->stream) {
        req->http1_is_persistent = 0;
        api_send_error(c->api, req, 503, why, NULL);
        return;
    }
    if (c->awaiting_proceed)
        return; /* on_proceed sends the error when the write in progress ends */
    c->awaiting_proceed = 1;
    h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
}

/* Whether the client closed or reset the connection (h2o does not read it meanwhile). */
static int peer_gone(h2o_req_t *req)
{
    if (req->conn->callbacks->get_socket == NULL)
        return 0;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    int fd = sock != NULL ? h2o_socket_get_fd(sock) : -1;
    if (fd < 0)
        return 0;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return 1;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

static void on_tick(uv_timer_t *t)
{
    struct completion *c = t->data;
    ASSERT(c->req != NULL && !c->aborted);
    if (peer_gone(c->req)) {
        c->api->aborted++;
        abort_completion(c, "the client went away");
        return;
    }
    if (c->stream)
        pump(c);
    else
        wait_or_answer(c);
}

static uint64_t due_ms(const struct completion *c, unsigned k)
{
    uint64_t tps = (uint64_t)c->api->opts->tokens_per_s;
    return c->start_ms + ((uint64_t)k * 1000 + tps - 1) / tps;
}

/* Returns 0 when token k is due now, else arms the timer (capped for peer checks), returns -1. */
static int wait_for(struct completion *c, unsigned k)
{
    if (c->api->opts->tokens_per_s == 0)
        return 0;
    uint64_t now = uv_now(c->api->loop), due = due_ms(c, k);
    if (now >= due)
        return 0;
    uint64_t ms = due - now < PEER_CHECK_MS ? due - now : PEER_CHECK_MS;
    uv_timer_start(&c->timer, on_tick, ms, 0);
    return -1;
}

/* ---- output ---- */

static void put_usage(struct buf *b, const struct completion *c)
{
    api_putf(b,
             "\"usage\":{\"prompt_tokens\":%" PRIu64 ",\"completion_tokens\":%u,"
             "\"total_tokens\":%" PRIu64 "}",
             c->prompt_tokens, c->total, c->prompt_tokens + c->total);
}

/* A tool-call answer's message: {"role":"assistant","content":null,"tool_calls":[…]}. */
static void put_calls_message(struct buf *b, const struct completion *c)
{
    API_PUTS(b, "\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[");
    for (size_t i = 0; i < c->ncalls; i++) {
        const struct call *call = &c->calls[i];
        api_putf(b,
                 "%s{\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":\"%s\","
                 "\"arguments\":\"",
                 i > 0 ? "," : "", call->id, call->name);
        api_put_json_chars(b, call->args, call->args_len);
        API_PUTS(b, "\"}}");
    }
    API_PUTS(b, "]},");
}

/* Non-streaming: the whole answer as one JSON body. */
static void answer_json(struct completion *c)
{
    struct buf *b = &c->api->scratch;
    buf_reset(b);
    api_put(b, c->head.base, c->head.len);
    API_PUTS(b, "\"choices\":[{\"index\":0,");
    if (c->ncalls > 0)
        put_calls_message(b, c);
    else {
        if (c->kind == COMPLETION_CHAT)
            API_PUTS(b, "\"message\":{\"role\":\"assistant\",\"content\":\"");
        else
            API_PUTS(b, "\"text\":\"");
        if (c->echo_len > 0) /* --echo-prefix: the prefix first */
            api_put_json_chars(b, c->echo, c->echo_len);
        for (unsigned i = 0; i < c->total; i++) {
            size_t n;
            const char *w = tokens_next(&c->tokens, &n);
            api_put_json_chars(b, w, n);
            API_PUTS(b, " ");
        }
        api_puts(b, c->kind == COMPLETION_CHAT ? "\"}," : "\",");
    }
    api_putf(b, "\"logprobs\":null,\"finish_reason\":\"%s\"}],", c->finish_reason);
    put_usage(b, c);
    API_PUTS(b, "}");
    c->sent = c->total;
    c->responded = 1;
    api_respond(c->req, 200, "application/json", b->data, b->len);
}

static void wait_or_answer(struct completion *c)
{
    if (wait_for(c, c->total) == 0)
        answer_json(c);
}

static void send_chunk(struct completion *c, h2o_send_state_t state)
{
    h2o_iovec_t v = h2o_iovec_init(c->chunk.data, c->chunk.len);
    c->awaiting_proceed = 1;
    h2o_send(c->req, &v, 1, state);
}

/* Opens one SSE event: 'data: {' + head. The caller writes the choices and closes it. */
static void open_event(struct completion *c)
{
    API_PUTS(&c->chunk, "data: ");
    api_put(&c->chunk, c->head.base, c->head.len);
}

/* Ends an SSE event: its data line and the blank line after it, with LF or, under --sse-crlf,
 * with CRLF as sse-starlette (llama-cpp-python's server) frames them. */
static void end_event(struct completion *c)
{
    if (c->api->opts->sse_crlf)
        API_PUTS(&c->chunk, "\r\n\r\n");
    else
        API_PUTS(&c->chunk, "\n\n");
}

static void close_event(struct completion *c)
{
    if (c->include_usage)
        API_PUTS(&c->chunk, ",\"usage\":null");
    API_PUTS(&c->chunk, "}");
    end_event(c);
}

/* One event of text: pre (the echoed prefix, may be empty) then w, and a space when w is a
 * token (space != 0). */
static void send_text(struct completion *c, const char *pre, size_t pre_len, const char *w,
                      size_t n, int space)
{
    buf_reset(&c->chunk);
    open_event(c);
    if (c->kind == COMPLETION_CHAT)
        API_PUTS(&c->chunk, "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
    else
        API_PUTS(&c->chunk, "\"choices\":[{\"index\":0,\"text\":\"");
    api_put_json_chars(&c->chunk, pre, pre_len);
    api_put_json_chars(&c->chunk, w, n);
    if (space)
        API_PUTS(&c->chunk, " ");
    api_puts(&c->chunk, c->kind == COMPLETION_CHAT ? "\"}," : "\",");
    API_PUTS(&c->chunk, "\"logprobs\":null,\"finish_reason\":null}]");
    close_event(c);
    c->api->events_sent++;
    send_chunk(c, H2O_SEND_STATE_IN_PROGRESS);
}

/* --echo-prefix: the repeated prefix in an event of its own, whole or (--echo-split N) N bytes
 * of it, never cutting a UTF-8 character. Not a token. */
static void send_echo(struct completion *c)
{
    size_t n = c->echo_len - c->echo_off, split = (size_t)c->api->opts->echo_split;
    if (split > 0 && split < n) {
        n = split;
        while (c->echo_off + n < c->echo_len &&
               ((unsigned char)c->echo[c->echo_off + n] & 0xC0) == 0x80)
            n++;
    }
    const char *p = c->echo + c->echo_off;
    c->echo_off += n;
    send_text(c, "", 0, p, n, 0);
}

/* The next piece of a tool-call answer: a call's opening (id, name) or GEN_ARGS_PIECE bytes of
 * its arguments, as the OpenAI API streams them. */
static void send_call_piece(struct completion *c)
{
    struct call *call = &c->calls[c->call_cur];
    buf_reset(&c->chunk);
    open_event(c);
    api_putf(&c->chunk, "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%zu,",
             c->call_cur);
    if (!c->call_opened) {
        api_putf(&c->chunk,
                 "\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":\"%s\","
                 "\"arguments\":\"\"}",
                 call->id, call->name);
        c->call_opened = 1;
    } else {
        size_t n = call->args_len - c->call_off;
        n = n < GEN_ARGS_PIECE ? n : GEN_ARGS_PIECE;
        API_PUTS(&c->chunk, "\"function\":{\"arguments\":\"");
        api_put_json_chars(&c->chunk, call->args + c->call_off, n);
        API_PUTS(&c->chunk, "\"}");
        c->call_off += n;
        if (c->call_off == call->args_len) {
            c->call_cur++;
            c->call_off = 0;
            c->call_opened = 0;
        }
    }
    API_PUTS(&c->chunk, "}]},\"logprobs\":null,\"finish_reason\":null}]");
    close_event(c);
    c->sent++;
    c->api->events_sent++;
    send_chunk(c, H2O_SEND_STATE_IN_PROGRESS);
}

static void send_token(struct completion *c)
{
    if (c->ncalls > 0) {
        send_call_piece(c);
        return;
    }
    size_t n;
    const char *w = tokens_next(&c->tokens, &n);
    const char *pre = c->echo != NULL ? c->echo + c->echo_off : "";
    size_t pre_len = c->echo_len - c->echo_off; /* llama-server: prefix + first token */
    c->echo_off = c->echo_len;
    c->sent++;
    send_text(c, pre, pre_len, w, n, 1);
}

/* The last event with finish_reason, the usage event when asked, and [DONE]. */
static void send_final(struct completion *c)
{
    buf_reset(&c->chunk);
    open_event(c);
    if (c->kind == COMPLETION_CHAT)
        API_PUTS(&c->chunk, "\"choices\":[{\"index\":0,\"delta\":{},");
    else
        API_PUTS(&c->chunk, "\"choices\":[{\"index\":0,\"text\":\"\",");
    api_putf(&c->chunk, "\"logprobs\":null,\"finish_reason\":\"%s\"}]", c->finish_reason);
    close_event(c);
    if (c->include_usage) {
        open_event(c);
        API_PUTS(&c->chunk, "\"choices\":[],");
        put_usage(&c->chunk, c);
        API_PUTS(&c->chunk, "}");
        end_event(c);
    }
    API_PUTS(&c->chunk, "data: [DONE]");
    end_event(c);
    c->responded = 1;
    send_chunk(c, H2O_SEND_STATE_FINAL);
}

static void pump(struct completion *c)
{
    if (c->aborted || c->req == NULL || c->awaiting_proceed)
        return;
    if (c->echo_off < c->echo_len && (c->api->opts->echo_split > 0 || c->sent == c->total)) {
        send_echo(c);
        return;
    }
    if (c->sent == c->total) {
        send_final(c);
        return;
    }
    if (wait_for(c, c->sent + 1) == 0)
        send_token(c);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    struct completion *c = H2O_STRUCT_FROM_MEMBER(struct completion, generator, g);
    c->awaiting_proceed = 0;
    int crash_at = c->api->opts->crash_after_tokens;
    if (crash_at > 0 && c->sent >= (unsigned)crash_at && !c->responded)
        api_crash(c->api->opts, "after a stream sent its tokens"); /* h2o wrote them */
    if (c->aborted) {
        c->awaiting_proceed = 1;
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    pump(c);
}

/* Headers now, then the role event (chat) or nothing (text), so the client sees the stream open. */
static void start_stream(struct completion *c)
{
    h2o_req_t *req = c->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-cache"));
    c->generator = (h2o_generator_t){.proceed = on_proceed, .stop = on_stop};
    h2o_start_response(req, &c->generator);
    buf_reset(&c->chunk);
    if (c->kind == COMPLETION_CHAT) {
        open_event(c);
        API_PUTS(&c->chunk, "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                            "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]");
        close_event(c);
    }
    send_chunk(c, H2O_SEND_STATE_IN_PROGRESS);
}

/* The part every body and event shares, built once into the pool. */
static void build_head(struct completion *c, const struct params *p)
{
    struct buf *b = &c->api->scratch;
    buf_reset(b);
    int chat = c->kind == COMPLETION_CHAT;
    const char *object =
        chat ? (c->stream ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    api_putf(b,
             "{\"id\":\"%s%08" PRIx32 "%012" PRIx64 "\",\"object\":\"%s\",\"created\":%lld,"
             "\"model\":",
             chat ? "chatcmpl-" : "cmpl-", c->api->id_salt, ++c->api->next_id, object,
             (long long)time(NULL));
    api_put_json_string(b, p->model, p->model_len);
    API_PUTS(b, ",\"system_fingerprint\":\"mock\",");
    c->head = h2o_strdup(&c->req->pool, b->data, b->len);
}

static struct completion *completion_new(struct api *a, h2o_req_t *req, enum completion_kind kind,
                                         const struct params *p)
{
    struct completion *c = xcalloc(1, sizeof(*c));
    c->api = a;
    c->req = req;
    c->kind = kind;
    c->stream = p->stream;
    c->include_usage = p->stream && p->include_usage;
    c->start_ms = uv_now(a->loop);
    buf_init(&c->chunk, CHUNK_CAP);
    uv_timer_init(a->loop, &c->timer);
    c->timer.data = c;
    struct completion **ref = h2o_mem_alloc_shared(&req->pool, sizeof(*ref), on_req_dispose);
    *ref = c;
    c->counted = 1;
    h2o_linklist_insert(&a->in_flight, &c->link);
    if (++a->concurrency > a->peak_concurrency)
        a->peak_concurrency = a->concurrency;
    return c;
}

void completion_handle(struct api *a, h2o_req_t *req, enum completion_kind kind)
{
    json_t *root = api_parse_body(a, req);
    if (root == NULL)
        return;
    struct req_error e = {{0}, NULL};
    struct params p;
    struct gen_prompt before, all;
    json_t *prefix = NULL;
    gen_prompt_init(&before);
    int rc = read_params(a, root, kind, &p, &e);
    if (rc == 0 && kind == COMPLETION_CHAT)
        rc = chat_prompt(root, &before, &all, &prefix, &e);
    else if (rc == 0)
        rc = text_prompt(root, &all, &e);
    if (rc != 0) {
        api_send_error(a, req, 400, e.message, e.param);
        goto out;
    }
    struct completion *c = completion_new(a, req, kind, &p);
    plan(c, &p, root, &before, &all, prefix);
    build_head(c, &p);
    if (c->stream)
        start_stream(c);
    else
        wait_or_answer(c);
out:
    json_decref(root);
}

void completion_abort_all(struct api *a)
{
    while (!h2o_linklist_is_empty(&a->in_flight)) {
        struct completion *c = H2O_STRUCT_FROM_MEMBER(struct completion, link, a->in_flight.next);
        abort_completion(c, "the engine is shutting down");
    }
}
