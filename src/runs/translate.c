/*
 * translate.c: the Responses API <-> the engine's chat API (translate.h). It owns the chat body
 * sent to an engine for a run, and the assembler that turns the engine's chat chunks into the
 * Responses events and output items the run stores and streams. It knows nothing of the loop,
 * the store or HTTP: every byte comes in through a call and every event leaves through emit.
 *
 * DESIGN
 * The chat body. Items become chat messages in order: a message item keeps its role (developer
 * becomes system, see below) and its text parts become one content string; function_call items
 * become tool_calls of an assistant message (the one just before when the model spoke first,
 * as one chat answer would have carried both); function_call_output items become "tool"
 * messages. Roles: llama.cpp hands roles to the model's Jinja template verbatim, and strict
 * templates (Qwen3.5, the Llama 2 and Mistral families) raise on anything but
 * system/user/assistant/tool, and on a system message that is not first (llama.cpp PRs 20079,
 * 20215). So `developer` is sent as `system`, and the instructions and every system message
 * before the first other message are merged into one leading system message.
 *
 * The assembler. Text deltas go through three steps before they are emitted: UTF-8 joining
 * (an engine that cuts a character between chunks has its bytes held back until the character
 * is whole, so no event ever carries invalid UTF-8, which json_string() would refuse), echo
 * stripping (after a restart, the repeat of the continued prefix is dropped once), and the open
 * message item. Tool calls arrive by chat index: the first fragment opens a function_call item
 * (closing an open message first, since the model has moved on), later fragments append
 * arguments. Items close on the finish reason, in output order.
 *
 * Output items live in x->output. The open ones are rebuilt from their buffers when the output
 * is read (xlate_output), not at every delta: rebuilding a long text per token would be
 * quadratic.
 *
 * The fast path. Nearly every chunk of an answer is one text delta ({"choices":[{"index":0,
 * "delta":{"content":"…"},"finish_reason":null}], plus members nobody reads). Such a chunk is
 * recognised with gateway/jsonscan (which checks the whole text) and its content taken without
 * building a tree, and when the run gave xlate_set_emit_text() the delta event is written as
 * JSON text, byte for byte what json_dumps makes of the general path's event: parsing each chunk
 * with jansson and dumping each event was most of a streamed run's CPU (bench/README.md). Any
 * other chunk (a role-only delta, tool calls, a finish reason, usage, an error, anything the
 * scanner is unsure of) goes the general way. The unit tests feed every stream both ways.
 *
 * Invalid engine bytes: jansson refuses a chunk with invalid UTF-8 outright. Such a chunk is
 * parsed again after each invalid byte B is replaced by the private-use character U+F0000 + B,
 * and the delta text maps those characters back to bytes before joining. Only a chunk that held
 * invalid bytes is read this way, so text that really contains U+F0080..U+F00FF is not touched
 * otherwise.
 */
#include "runs/translate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/ids.h"
#include "gateway/jsonscan.h"

#define BODY_JSON_FLAGS (JSON_COMPACT)
#define TEXT_CAP (16u << 20) /* one message's text: far above any context an engine has */
#define ARGS_CAP (1u << 20)  /* one tool call's arguments */
#define NAME_CAP 256u        /* a tool name (OpenAI allows 64 characters) */
#define CALLS_MAX 128        /* tool calls in one answer (OpenAI allows 128 tools) */
#define PUA_BASE 0xF0000u    /* invalid byte B travels as U+F0000 + B (see DESIGN) */

struct call {
    int chat_index;   /* the engine's tool_calls[].index; -1 for a replayed call */
    size_t out_index; /* its place in x->output */
    char id[IDS_MAX]; /* fc_… */
    char call_id[IDS_MAX + 64];
    struct buf name;
    struct buf args;
    bool open;
    bool args_done; /* its arguments.done was replayed: only output_item.done is left */
};

struct xlate {
    xlate_emit_fn emit;
    xlate_emit_text_fn emit_text; /* text deltas as JSON text, or NULL: as emit's json_t */
    void *arg;
    bool no_scan;    /* tests: every chunk through jansson (xlate_set_scan) */
    struct buf scan; /* the fast path's decoded content */
    struct buf ev;   /* a text delta's event JSON, made here */
    json_t *output;  /* the items, in output order */
    json_t *usage;   /* Responses usage, or NULL */
    char *finish_reason;
    char error[256];
    bool failed; /* a protocol error: every later chunk is refused */

    bool msg_open;    /* a message item is open */
    bool msg_part;    /* its output_text part was announced (content_part.added) */
    bool text_done;   /* output_text.done was replayed: the text is final */
    bool part_done;   /* content_part.done was replayed */
    size_t msg_index; /* its output_index */
    char msg_id[IDS_MAX];
    struct buf text; /* its text so far */

    unsigned char tail[4]; /* the start of a UTF-8 character cut by the end of a delta */
    size_t tail_len;

    char *echo; /* the prefix the engine may repeat, or NULL once decided */
    size_t echo_len;
    struct buf held; /* the bytes that matched the prefix so far */

    struct call *calls[CALLS_MAX];
    size_t ncalls;
};

/* ---- the chat body ---- */

static int refuse(struct run_error *err, const char *param, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Fills err (400 invalid_value) and returns -EINVAL. run_error_set() does the same once
 * request.c is in; this file must not depend on its link order meanwhile. */
static int refuse(struct run_error *err, const char *param, const char *fmt, ...)
{
    va_list ap;
    *err = (struct run_error){.status = 400};
    snprintf(err->code, sizeof(err->code), "%s", "invalid_value");
    snprintf(err->param, sizeof(err->param), "%s", param);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Where an item came from, for the messages that name it: "input[3]" or "history[3]". */
struct where {
    const char *list;
    size_t i;
    char param[64];
};

static const char *where_param(struct where *w, const char *suffix)
{
    snprintf(w->param, sizeof(w->param), "%s[%zu]%s", w->list, w->i, suffix);
    return w->param;
}

/* One content part as a chat part: text stays text, an image by URL becomes image_url. */
static int chat_part(json_t *part, json_t **out, bool *is_text, struct where *w,
                     struct run_error *err)
{
    const char *type = json_string_value(json_object_get(part, "type"));
    json_t *text = json_object_get(part, "text");
    *is_text = false;
    if (type != NULL && strcmp(type, "refusal") == 0)
        text = json_object_get(part, "refusal");
    if (type != NULL &&
        (strcmp(type, "input_text") == 0 || strcmp(type, "output_text") == 0 ||
         strcmp(type, "text") == 0 || strcmp(type, "refusal") == 0) &&
        json_is_string(text)) {
        *is_text = true;
        *out = json_pack("{s:s,s:O}", "type", "text", "text", text);
        return 0;
    }
    json_t *url = json_object_get(part, "image_url");
    if (type != NULL && strcmp(type, "input_image") == 0 && json_is_string(url)) {
        json_t *img = json_pack("{s:O}", "url", url);
        json_t *detail = json_object_get(part, "detail");
        if (json_is_string(detail))
            json_object_set(img, "detail", detail);
        *out = json_pack("{s:s,s:o}", "type", "image_url", "image_url", img);
        return 0;
    }
    return refuse(err, where_param(w, ".content"),
                  "content parts of type %s cannot be sent to the engine: its chat API takes "
                  "text (input_text, output_text) and images by URL (input_image.image_url)",
                  type != NULL ? type : "(none)");
}

/* A message's content as chat content: a string when it is all text (every template takes a
 * string), else an array of chat parts. New reference in *out. */
static int chat_content(json_t *content, json_t **out, struct where *w, struct run_error *err)
{
    if (json_is_string(content) || json_is_null(content) || content == NULL) {
        *out = content != NULL ? json_incref(content) : json_string("");
        return 0;
    }
    if (!json_is_array(content))
        return refuse(err, where_param(w, ".content"), "content must be a string or an array");
    json_t *parts = json_array();
    struct buf text;
    bool all_text = true;
    int rc = 0;
    buf_init(&text, TEXT_CAP);
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        json_t *cp = NULL;
        bool is_text;
        rc = chat_part(part, &cp, &is_text, w, err);
        if (rc != 0)
            goto out;
        if (is_text)
            buf_puts(&text, json_string_value(json_object_get(cp, "text")));
        all_text = all_text && is_text;
        json_array_append_new(parts, cp);
    }
    if (text.truncated) {
        rc = refuse(err, where_param(w, ".content"), "the text is longer than %u bytes", TEXT_CAP);
        goto out;
    }
    *out = all_text ? json_string(buf_cstr(&text)) : json_incref(parts);
out:
    buf_cleanup(&text);
    json_decref(parts);
    return rc;
}

static int add_message(json_t *msgs, json_t *item, struct where *w, struct run_error *err)
{
    const char *role = json_string_value(json_object_get(item, "role"));
    if (role == NULL)
        return refuse(err, where_param(w, ".role"), "a message item needs a role");
    if (strcmp(role, "developer") == 0)
        role = "system"; /* see DESIGN: strict templates know only system */
    if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)
        return refuse(err, where_param(w, ".role"),
                      "role %s cannot be sent to the engine (user, assistant, system, developer)",
                      role);
    json_t *content;
    int rc = chat_content(json_object_get(item, "content"), &content, w, err);
    if (rc != 0)
        return rc;
    json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", role, "content", content));
    return 0;
}

/* A function_call item joins the assistant message just before it (one chat answer may hold
 * text and tool calls), or starts one. */
static int add_call(json_t *msgs, json_t *item, bool joins, struct where *w, struct run_error *err)
{
    json_t *call_id = json_object_get(item, "call_id");
    json_t *name = json_object_get(item, "name");
    json_t *args = json_object_get(item, "arguments");
    if (!json_is_string(call_id) || !json_is_string(name) || !json_is_string(args))
        return refuse(err, where_param(w, ""),
                      "a function_call item needs string call_id, name and arguments");
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    if (!joins || role == NULL || strcmp(role, "assistant") != 0) {
        last = json_pack("{s:s,s:n}", "role", "assistant", "content");
        json_array_append_new(msgs, last);
    }
    json_t *calls = json_object_get(last, "tool_calls");
    if (calls == NULL) {
        calls = json_array();
        json_object_set_new(last, "tool_calls", calls);
    }
    json_array_append_new(calls,
                          json_pack("{s:O,s:s,s:{s:O,s:O}}", "id", call_id, "type", "function",
                                    "function", "name", name, "arguments", args));
    return 0;
}

/* The text of a function_call_output's output: a string, or the text of its parts. */
static int add_call_output(json_t *msgs, json_t *item, struct where *w, struct run_error *err)
{
    json_t *call_id = json_object_get(item, "call_id");
    if (!json_is_string(call_id))
        return refuse(err, where_param(w, ".call_id"),
                      "a function_call_output item needs a string call_id");
    json_t *content;
    int rc = chat_content(json_object_get(item, "output"), &content, w, err);
    if (rc != 0)
        return rc;
    if (!json_is_string(content)) {
        json_decref(content);
        return refuse(err, where_param(w, ".output"),
                      "a function_call_output's output must be text for the engine");
    }
    json_array_append_new(msgs, json_pack("{s:s,s:O,s:o}", "role", "tool", "tool_call_id", call_id,
                                          "content", content));
    return 0;
}

/* Appends the chat messages of items (an array, or NULL). *prev_type is the type of the item
 * before, across calls, so function_call items merge across the history/input seam too. */
static int add_items(json_t *msgs, json_t *items, const char *list, const char **prev_type,
                     struct run_error *err)
{
    struct where w = {.list = list};
    json_t *item;
    int rc = 0;
    json_array_foreach(items, w.i, item)
    {
        const char *type = json_string_value(json_object_get(item, "type"));
        if (type == NULL && json_is_string(json_object_get(item, "role")))
            type = "message"; /* the easy input form */
        if (type == NULL)
            rc = refuse(err, where_param(&w, ".type"), "an item needs a type");
        else if (strcmp(type, "message") == 0)
            rc = add_message(msgs, item, &w, err);
        else if (strcmp(type, "function_call") == 0)
            rc = add_call(msgs, item,
                          *prev_type != NULL && (strcmp(*prev_type, "function_call") == 0 ||
                                                 strcmp(*prev_type, "message") == 0),
                          &w, err);
        else if (strcmp(type, "function_call_output") == 0)
            rc = add_call_output(msgs, item, &w, err);
        else if (strcmp(type, "reasoning") == 0)
            rc = 0; /* engines take no reasoning back; dropping it is what OpenAI's chat does */
        else
            rc = refuse(err, where_param(&w, ".type"),
                        "items of type %s cannot be sent to the engine's chat API", type);
        if (rc != 0)
            return rc;
        *prev_type = type;
    }
    return 0;
}

/* Merges the system messages at the start into one (see DESIGN). */
static void merge_leading_system(json_t *msgs)
{
    json_t *first = json_array_get(msgs, 0);
    while (json_array_size(msgs) >= 2) {
        json_t *next = json_array_get(msgs, 1);
        const char *r0 = json_string_value(json_object_get(first, "role"));
        const char *r1 = json_string_value(json_object_get(next, "role"));
        json_t *c0 = json_object_get(first, "content");
        json_t *c1 = json_object_get(next, "content");
        if (r0 == NULL || r1 == NULL || strcmp(r0, "system") != 0 || strcmp(r1, "system") != 0 ||
            !json_is_string(c0) || !json_is_string(c1))
            return;
        char *joined = xasprintf("%s\n\n%s", json_string_value(c0), json_string_value(c1));
        json_object_set_new(first, "content", json_string(joined));
        free(joined);
        json_array_remove(msgs, 1);
    }
}

/* Responses function tools -> chat tools. */
static int chat_tools(json_t *tools, json_t **out, struct run_error *err)
{
    *out = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        const char *type = json_string_value(json_object_get(t, "type"));
        json_t *name = json_object_get(t, "name");
        if (type == NULL || strcmp(type, "function") != 0 || !json_is_string(name)) {
            char param[32];
            snprintf(param, sizeof(param), "tools[%zu]", i);
            json_decref(*out);
            *out = NULL;
            return refuse(err, param, "only function tools with a name reach the engine");
        }
        json_t *fn = json_pack("{s:O}", "name", name);
        json_t *desc = json_object_get(t, "description");
        json_t *params = json_object_get(t, "parameters");
        if (json_is_string(desc))
            json_object_set(fn, "description", desc);
        if (params != NULL && !json_is_null(params))
            json_object_set(fn, "parameters", params);
        json_array_append_new(*out, json_pack("{s:s,s:o}", "type", "function", "function", fn));
    }
    return 0;
}

/* "auto" | "none" | "required" stay; {type:"function", name} -> {type, function:{name}}. */
static int chat_tool_choice(json_t *tc, json_t **out, struct run_error *err)
{
    if (json_is_string(tc)) {
        *out = json_incref(tc);
        return 0;
    }
    const char *type = json_string_value(json_object_get(tc, "type"));
    json_t *name = json_object_get(tc, "name");
    if (type == NULL || strcmp(type, "function") != 0 || !json_is_string(name))
        return refuse(err, "tool_choice",
                      "tool_choice must be auto, none, required or {type: function, name}");
    *out = json_pack("{s:s,s:{s:O}}", "type", "function", "function", "name", name);
    return 0;
}

static int body_options(const struct run_request *rq, json_t *body, struct run_error *err)
{
    if (rq->has_temperature)
        json_object_set_new(body, "temperature", json_real(rq->temperature));
    if (rq->has_top_p)
        json_object_set_new(body, "top_p", json_real(rq->top_p));
    if (rq->max_output_tokens > 0)
        json_object_set_new(body, "max_tokens", json_integer(rq->max_output_tokens));
    if (rq->tools != NULL && json_array_size(rq->tools) > 0) {
        json_t *tools = NULL;
        int rc = chat_tools(rq->tools, &tools, err);
        if (rc != 0)
            return rc;
        json_object_set_new(body, "tools", tools);
    }
    if (rq->tool_choice != NULL && !json_is_null(rq->tool_choice)) {
        json_t *tc = NULL;
        int rc = chat_tool_choice(rq->tool_choice, &tc, err);
        if (rc != 0)
            return rc;
        json_object_set_new(body, "tool_choice", tc);
    }
    if (rq->parallel_tool_calls >= 0)
        json_object_set_new(body, "parallel_tool_calls",
                            json_boolean(rq->parallel_tool_calls != 0));
    json_object_set_new(body, "stream", json_true());
    json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
    return 0;
}

int xlate_chat_body(const struct run_request *rq, json_t *history, const char *partial,
                    struct buf *out, struct run_error *err)
{
    ASSERT(rq != NULL && rq->model != NULL && out != NULL && err != NULL);
    json_t *msgs = json_array();
    json_t *body = NULL;
    const char *prev_type = NULL;
    int rc = 0;
    if (rq->instructions != NULL)
        json_array_append_new(
            msgs, json_pack("{s:s,s:s}", "role", "system", "content", rq->instructions));
    rc = add_items(msgs, json_is_array(history) ? history : NULL, "history", &prev_type, err);
    if (rc == 0)
        rc = add_items(msgs, rq->input, "input", &prev_type, err);
    if (rc != 0)
        goto out;
    merge_leading_system(msgs);
    if (partial != NULL && partial[0] != '\0')
        json_array_append_new(msgs,
                              json_pack("{s:s,s:s}", "role", "assistant", "content", partial));
    body = json_pack("{s:s,s:O}", "model", rq->model, "messages", msgs);
    rc = body_options(rq, body, err);
    if (rc != 0)
        goto out;
    char *s = json_dumps(body, BODY_JSON_FLAGS);
    rc = buf_puts(out, s);
    free(s);
out:
    json_decref(body);
    json_decref(msgs);
    return rc;
}

/* ---- the assembler: state and events ---- */

static int protocol_error(struct xlate *x, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Records why the engine's output was refused; every later chunk is refused too. */
static int protocol_error(struct xlate *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->error, sizeof(x->error), fmt, ap);
    va_end(ap);
    x->failed = true;
    return -EPROTO;
}

struct xlate *xlate_new(xlate_emit_fn emit, void *arg)
{
    ASSERT(emit != NULL);
    struct xlate *x = xcalloc(1, sizeof(*x));
    x->emit = emit;
    x->arg = arg;
    x->output = json_array();
    buf_init(&x->text, TEXT_CAP);
    buf_init(&x->held, TEXT_CAP);
    buf_init(&x->scan, TEXT_CAP);
    buf_init(&x->ev, SIZE_MAX);
    return x;
}

void xlate_set_emit_text(struct xlate *x, xlate_emit_text_fn emit_text)
{
    x->emit_text = emit_text;
}

void xlate_set_scan(struct xlate *x, bool on)
{
    x->no_scan = !on;
}

static void call_free(struct call *c)
{
    buf_cleanup(&c->name);
    buf_cleanup(&c->args);
    free(c);
}

void xlate_free(struct xlate *x)
{
    if (x == NULL)
        return;
    for (size_t i = 0; i < x->ncalls; i++)
        call_free(x->calls[i]);
    json_decref(x->output);
    json_decref(x->usage);
    free(x->finish_reason);
    free(x->echo);
    buf_cleanup(&x->text);
    buf_cleanup(&x->held);
    buf_cleanup(&x->scan);
    buf_cleanup(&x->ev);
    free(x);
}

static json_t *text_part(const char *text, size_t len)
{
    return json_pack("{s:s,s:[],s:[],s:s%}", "type", "output_text", "annotations", "logprobs",
                     "text", text, len);
}

static json_t *message_item(const struct xlate *x, const char *status)
{
    json_t *content = json_array();
    if (x->msg_part)
        json_array_append_new(content, text_part(buf_cstr(&x->text), x->text.len));
    return json_pack("{s:s,s:s,s:s,s:s,s:o}", "id", x->msg_id, "type", "message", "status", status,
                     "role", "assistant", "content", content);
}

static json_t *call_item(const struct call *c, const char *status)
{
    return json_pack("{s:s,s:s,s:s,s:s%,s:s,s:s%}", "id", c->id, "type", "function_call", "status",
                     status, "arguments", buf_cstr(&c->args), c->args.len, "call_id", c->call_id,
                     "name", buf_cstr(&c->name), c->name.len);
}

static int emit(struct xlate *x, json_t *ev)
{
    ASSERT(ev != NULL); /* every string packed here is valid UTF-8 (utf8_join sees to text) */
    return x->emit(ev, x->arg);
}

static int emit_item(struct xlate *x, const char *type, size_t index, json_t *item)
{
    /* a copy: the run keeps the event while the output moves on */
    return emit(x, json_pack("{s:s,s:I,s:o}", "type", type, "output_index", (json_int_t)index,
                             "item", json_deep_copy(item)));
}

static int emit_part(struct xlate *x, const char *type, json_t *part)
{
    return emit(x, json_pack("{s:s,s:s,s:I,s:i,s:o}", "type", type, "item_id", x->msg_id,
                             "output_index", (json_int_t)x->msg_index, "content_index", 0, "part",
                             part));
}

/* Items close as "incomplete" when the engine hit its token limit, or when it never said it
 * finished and the item was not final (final: the model moved on to another item, or a replayed
 * …done event said so). */
static const char *closing_status(const struct xlate *x, bool final)
{
    if (x->finish_reason == NULL)
        return final ? "completed" : "incomplete";
    return strcmp(x->finish_reason, "length") == 0 ? "incomplete" : "completed";
}

/* ---- the message item ---- */

static int open_message(struct xlate *x)
{
    int rc = 0;
    if (!x->msg_open) {
        ids_new(x->msg_id, sizeof(x->msg_id), "msg_");
        x->msg_open = true;
        x->msg_part = false;
        x->text_done = x->part_done = false;
        x->msg_index = json_array_size(x->output);
        buf_reset(&x->text);
        json_t *item = message_item(x, "in_progress");
        json_array_append(x->output, item);
        rc = emit_item(x, "response.output_item.added", x->msg_index, item);
        json_decref(item);
        if (rc != 0)
            return rc;
    }
    if (!x->msg_part) {
        x->msg_part = true;
        rc = emit_part(x, "response.content_part.added", text_part("", 0));
    }
    return rc;
}

static int close_message(struct xlate *x, bool moved_on);

/* Appends s[0..n) (valid UTF-8) as a JSON string, escaped as jansson's json_dumps escapes it
 * (flags 0: '"', '\\' and the control characters; '/' and non-ASCII as they are). */
static void json_quote(struct buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    buf_append(out, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_append(out, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0};
        size_t k = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            k = 6;
        }
        buf_append(out, esc, k);
    }
    buf_append(out, s + run, n - run);
    buf_append(out, "\"", 1);
}

/* The response.output_text.delta event as JSON text, the bytes json_dumps(JSON_COMPACT) makes of
 * the json_pack in message_text (the unit tests compare the two), without building it. */
static int emit_delta_text(struct xlate *x, const char *s, size_t n)
{
    struct buf *b = &x->ev;
    buf_reset(b);
    buf_printf(b,
               "{\"type\":\"response.output_text.delta\",\"item_id\":\"%s\",\"output_index\":%zu,"
               "\"content_index\":0,\"delta\":",
               x->msg_id, x->msg_index);
    json_quote(b, s, n);
    buf_puts(b, ",\"logprobs\":[]}"); /* x->ev has no cap: nothing above can fail */
    return x->emit_text("response.output_text.delta", b->data, b->len, x->arg);
}

static int message_text(struct xlate *x, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    int rc = x->msg_open && x->text_done ? close_message(x, true) : 0; /* its text is final */
    if (rc == 0)
        rc = open_message(x);
    if (rc != 0)
        return rc;
    if (buf_append(&x->text, s, n) != 0)
        return protocol_error(x, "the engine's answer is longer than %u bytes", TEXT_CAP);
    if (x->emit_text != NULL)
        return emit_delta_text(x, s, n);
    return emit(x, json_pack("{s:s,s:s,s:I,s:i,s:s%,s:[]}", "type", "response.output_text.delta",
                             "item_id", x->msg_id, "output_index", (json_int_t)x->msg_index,
                             "content_index", 0, "delta", s, n, "logprobs"));
}

/* moved_on: the model went on to another item, so the message's text is whole. */
static int close_message(struct xlate *x, bool moved_on)
{
    if (!x->msg_open)
        return 0;
    x->msg_open = false;
    const char *status = closing_status(x, moved_on || x->text_done);
    int rc = 0;
    if (x->msg_part && !x->text_done) /* replayed closing events are not sent again */
        rc = emit(x, json_pack("{s:s,s:s,s:I,s:i,s:s%,s:[]}", "type", "response.output_text.done",
                               "item_id", x->msg_id, "output_index", (json_int_t)x->msg_index,
                               "content_index", 0, "text", buf_cstr(&x->text), x->text.len,
                               "logprobs"));
    if (x->msg_part && !x->part_done && rc == 0)
        rc = emit_part(x, "response.content_part.done", text_part(buf_cstr(&x->text), x->text.len));
    json_t *item = message_item(x, status);
    json_array_set(x->output, x->msg_index, item);
    if (rc == 0)
        rc = emit_item(x, "response.output_item.done", x->msg_index, item);
    json_decref(item);
    return rc;
}

/* ---- text: UTF-8 joining and echo stripping ---- */

static bool utf8_valid(const char *s, size_t n);

/* The length of the UTF-8 character at p (n bytes available): 1..4; 0 when the n bytes are
 * a valid start of a longer character; -1 when invalid (overlong, surrogate, past U+10FFFF). */
static int utf8_char(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else
        return -1;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n)
            return 0;
        unsigned b = p[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
            return -1;
    }
    return len;
}

/* Appends the whole characters of tail + s to out, invalid bytes as U+FFFD, and keeps a cut
 * character's start in the tail. */
static void utf8_join(struct xlate *x, const char *s, size_t n, struct buf *out)
{
    struct buf in;
    buf_init(&in, TEXT_CAP + sizeof(x->tail));
    buf_append(&in, x->tail, x->tail_len);
    buf_append(&in, s, n);
    x->tail_len = 0;
    const unsigned char *p = (const unsigned char *)in.data;
    size_t i = 0;
    while (i < in.len) {
        int len = utf8_char(p + i, in.len - i);
        if (len == 0) {
            x->tail_len = in.len - i;
            memcpy(x->tail, p + i, x->tail_len);
            break;
        }
        if (len < 0) {
            buf_puts(out, "\xEF\xBF\xBD");
            i++;
            continue;
        }
        buf_append(out, p + i, (size_t)len);
        i += (size_t)len;
    }
    buf_cleanup(&in);
}

/* Ends echo stripping: bytes held as a possible echo were the engine's own text after all. */
static int echo_give_up(struct xlate *x)
{
    if (x->echo == NULL)
        return 0;
    free(x->echo);
    x->echo = NULL;
    int rc = message_text(x, buf_cstr(&x->held), x->held.len);
    buf_reset(&x->held);
    return rc;
}

/* Drops the repeat of the prefix from the start of the text, however it is cut into deltas.
 * Returns the offset in s where the engine's new text starts (n when all of s is held). */
static size_t echo_strip(struct xlate *x, const char *s, size_t n, int *rc)
{
    *rc = 0;
    if (x->echo == NULL)
        return 0;
    size_t done = x->held.len, want = x->echo_len - done;
    size_t m = n < want ? n : want;
    if (memcmp(s, x->echo + done, m) != 0) {
        *rc = echo_give_up(x);
        return 0;
    }
    if (m < want) {
        buf_append(&x->held, s, m);
        return n;
    }
    free(x->echo); /* the whole prefix came again: drop it, once */
    x->echo = NULL;
    buf_reset(&x->held);
    return m;
}

static int add_text(struct xlate *x, const char *s, size_t n)
{
    struct buf whole;
    int rc;
    if (x->tail_len == 0 && x->echo == NULL && utf8_valid(s, n))
        return message_text(x, s, n); /* whole characters, nothing held: utf8_join is a copy */
    buf_init(&whole, TEXT_CAP + 4);
    utf8_join(x, s, n, &whole);
    if (whole.truncated) {
        rc = protocol_error(x, "the engine's answer is longer than %u bytes", TEXT_CAP);
        goto out;
    }
    size_t skip = echo_strip(x, buf_cstr(&whole), whole.len, &rc);
    if (rc == 0)
        rc = message_text(x, buf_cstr(&whole) + skip, whole.len - skip);
out:
    buf_cleanup(&whole);
    return rc;
}

/* Flushes what the text steps hold back: an unfinished echo, a cut character (as U+FFFD). */
static int flush_text(struct xlate *x)
{
    int rc = echo_give_up(x);
    if (rc == 0 && x->tail_len > 0) {
        x->tail_len = 0;
        rc = message_text(x, "\xEF\xBF\xBD", 3);
    }
    return rc;
}

/* ---- tool calls ---- */

static struct call *find_call(struct xlate *x, int chat_index)
{
    for (size_t i = 0; i < x->ncalls; i++)
        if (x->calls[i]->chat_index == chat_index)
            return x->calls[i];
    return NULL;
}

static struct call *call_new(struct xlate *x, int chat_index)
{
    struct call *c = xcalloc(1, sizeof(*c));
    c->chat_index = chat_index;
    c->out_index = json_array_size(x->output);
    c->open = true;
    buf_init(&c->name, NAME_CAP);
    buf_init(&c->args, ARGS_CAP);
    x->calls[x->ncalls++] = c;
    return c;
}

static int open_call(struct xlate *x, int chat_index, json_t *id, struct call **out)
{
    if (x->ncalls == CALLS_MAX)
        return protocol_error(x, "the engine made more than %d tool calls", CALLS_MAX);
    int rc = flush_text(x);
    if (rc == 0)
        rc = close_message(x, true);
    if (rc != 0)
        return rc;
    struct call *c = call_new(x, chat_index);
    ids_new(c->id, sizeof(c->id), "fc_");
    if (json_is_string(id) && json_string_length(id) > 0 &&
        json_string_length(id) < sizeof(c->call_id))
        snprintf(c->call_id, sizeof(c->call_id), "%s", json_string_value(id));
    else
        ids_new(c->call_id, sizeof(c->call_id), "call_");
    *out = c;
    return 0;
}

static int close_call(struct xlate *x, struct call *c)
{
    if (!c->open)
        return 0;
    c->open = false;
    int rc = c->args_done ? 0
                          : emit(x, json_pack("{s:s,s:s,s:I,s:s%,s:s%}", "type",
                                              "response.function_call_arguments.done", "item_id",
                                              c->id, "output_index", (json_int_t)c->out_index,
                                              "name", buf_cstr(&c->name), c->name.len, "arguments",
                                              buf_cstr(&c->args), c->args.len));
    json_t *item = call_item(c, closing_status(x, c->args_done));
    json_array_set(x->output, c->out_index, item);
    if (rc == 0)
        rc = emit_item(x, "response.output_item.done", c->out_index, item);
    json_decref(item);
    return rc;
}

/* One element of delta.tool_calls (pos: its place in the array, the index when none is given). */
static int tool_call_delta(struct xlate *x, json_t *tc, size_t pos)
{
    json_t *index = json_object_get(tc, "index");
    json_t *id = json_object_get(tc, "id");
    json_t *fn = json_object_get(tc, "function");
    json_t *name = json_object_get(fn, "name");
    json_t *args = json_object_get(fn, "arguments");
    if (!json_is_object(tc) || (index != NULL && !json_is_integer(index)) ||
        (fn != NULL && !json_is_object(fn)) ||
        (id != NULL && !json_is_string(id) && !json_is_null(id)) ||
        (name != NULL && !json_is_string(name) && !json_is_null(name)) ||
        (args != NULL && !json_is_string(args) && !json_is_null(args)))
        return protocol_error(x, "the engine sent a tool call delta of the wrong shape");
    json_int_t ix = index != NULL ? json_integer_value(index) : (json_int_t)pos;
    if (ix < 0 || ix >= CALLS_MAX)
        return protocol_error(x, "the engine sent a tool call index out of range (%lld)",
                              (long long)ix);
    struct call *c = find_call(x, (int)ix);
    int rc = 0;
    if (c == NULL) {
        rc = open_call(x, (int)ix, id, &c);
        if (rc != 0)
            return rc;
        if (json_is_string(name))
            buf_append(&c->name, json_string_value(name), json_string_length(name));
        json_t *item = call_item(c, "in_progress");
        json_array_append(x->output, item);
        rc = emit_item(x, "response.output_item.added", c->out_index, item);
        json_decref(item);
    } else if (json_is_string(name) && c->name.len == 0) {
        buf_append(&c->name, json_string_value(name), json_string_length(name));
    }
    if (c->name.truncated)
        return protocol_error(x, "the engine sent a tool name longer than %u bytes", NAME_CAP);
    if (rc != 0 || !json_is_string(args) || json_string_length(args) == 0)
        return rc;
    if (buf_append(&c->args, json_string_value(args), json_string_length(args)) != 0)
        return protocol_error(x, "the engine's tool call arguments are longer than %u bytes",
                              ARGS_CAP);
    return emit(x, json_pack("{s:s,s:s,s:I,s:O}", "type", "response.function_call_arguments.delta",
                             "item_id", c->id, "output_index", (json_int_t)c->out_index, "delta",
                             args));
}

/* ---- chunks ---- */

/* Closes every open item, in output order. */
static int close_all(struct xlate *x)
{
    int rc = flush_text(x);
    size_t n = json_array_size(x->output);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (x->msg_open && x->msg_index == i)
            rc = close_message(x, false);
        for (size_t k = 0; k < x->ncalls && rc == 0; k++)
            if (x->calls[k]->out_index == i)
                rc = close_call(x, x->calls[k]);
    }
    return rc;
}

static int read_usage(struct xlate *x, json_t *u)
{
    json_t *in = json_object_get(u, "prompt_tokens");
    json_t *outp = json_object_get(u, "completion_tokens");
    json_t *total = json_object_get(u, "total_tokens");
    json_t *cached = json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens");
    json_t *reasoning =
        json_object_get(json_object_get(u, "completion_tokens_details"), "reasoning_tokens");
    if (!json_is_object(u) || !json_is_integer(in) || !json_is_integer(outp) ||
        (total != NULL && !json_is_integer(total)))
        return protocol_error(x, "the engine sent a usage object without integer token counts");
    json_int_t ni = json_integer_value(in), no = json_integer_value(outp);
    json_int_t nt = total != NULL ? json_integer_value(total) : ni + no;
    json_decref(x->usage);
    x->usage = json_pack(
        "{s:I,s:{s:I},s:I,s:{s:I},s:I}", "input_tokens", ni, "input_tokens_details",
        "cached_tokens", json_is_integer(cached) ? json_integer_value(cached) : 0, "output_tokens",
        no, "output_tokens_details", "reasoning_tokens",
        json_is_integer(reasoning) ? json_integer_value(reasoning) : 0, "total_tokens", nt);
    return 0;
}

static int read_delta(struct xlate *x, json_t *delta)
{
    json_t *content = json_object_get(delta, "content");
    json_t *calls = json_object_get(delta, "tool_calls");
    if (content != NULL && !json_is_string(content) && !json_is_null(content))
        return protocol_error(x, "the engine sent a delta whose content is not a string");
    if (calls != NULL && !json_is_array(calls) && !json_is_null(calls))
        return protocol_error(x, "the engine sent a delta whose tool_calls is not an array");
    int rc = 0;
    if (json_is_string(content))
        rc = add_text(x, json_string_value(content), json_string_length(content));
    size_t i;
    json_t *tc;
    json_array_foreach(calls, i, tc)
    {
        if (rc != 0)
            break;
        rc = tool_call_delta(x, tc, i);
    }
    return rc;
}

/* One choice of a chunk (delta) or of a completion (message: the same fields). */
static int read_choice(struct xlate *x, json_t *choice, const char *key)
{
    if (!json_is_object(choice))
        return protocol_error(x, "the engine sent a choice that is not an object");
    json_t *index = json_object_get(choice, "index");
    if (json_is_integer(index) && json_integer_value(index) != 0)
        return 0; /* one answer is asked for: other choices are not ours */
    json_t *delta = json_object_get(choice, key);
    json_t *finish = json_object_get(choice, "finish_reason");
    if (delta != NULL && !json_is_object(delta) && !json_is_null(delta))
        return protocol_error(x, "the engine sent a %s that is not an object", key);
    if (finish != NULL && !json_is_string(finish) && !json_is_null(finish))
        return protocol_error(x, "the engine sent a finish_reason that is not a string");
    int rc = json_is_object(delta) ? read_delta(x, delta) : 0;
    if (rc == 0 && json_is_string(finish)) {
        free(x->finish_reason);
        x->finish_reason = xstrdup(json_string_value(finish));
        rc = close_all(x);
    }
    return rc;
}

static int read_chunk(struct xlate *x, json_t *root, const char *key)
{
    if (!json_is_object(root))
        return protocol_error(x, "the engine sent a chunk that is not a JSON object");
    json_t *error = json_object_get(root, "error");
    if (error != NULL && !json_is_null(error)) {
        const char *msg = json_string_value(json_object_get(error, "message"));
        if (msg == NULL)
            msg = json_string_value(error);
        return protocol_error(x, "the engine reported an error: %s",
                              msg != NULL ? msg : "(no message)");
    }
    json_t *choices = json_object_get(root, "choices");
    json_t *usage = json_object_get(root, "usage");
    if (choices == NULL && (usage == NULL || json_is_null(usage)))
        return protocol_error(x, "the engine sent a chunk without choices");
    if (choices != NULL && !json_is_array(choices))
        return protocol_error(x, "the engine sent choices that are not an array");
    int rc = 0;
    size_t i;
    json_t *choice;
    json_array_foreach(choices, i, choice)
    {
        rc = read_choice(x, choice, key);
        if (rc != 0)
            return rc;
    }
    if (usage != NULL && !json_is_null(usage))
        rc = read_usage(x, usage);
    return rc;
}

/* Whether the n bytes at s are valid UTF-8 throughout. */
static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int len = utf8_char(p + i, n - i);
        if (len <= 0)
            return false;
        i += (size_t)len;
    }
    return true;
}

/* A copy of s with each byte that is not part of a valid character as U+F0000 + byte. */
static char *utf8_escape(const char *s, size_t n, size_t *out_len)
{
    char *out = xmalloc(n * 4 + 1);
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int len = utf8_char(p + i, n - i);
        if (len > 0) {
            memcpy(out + o, p + i, (size_t)len);
            o += (size_t)len;
            i += (size_t)len;
            continue;
        }
        unsigned cp = PUA_BASE + p[i++];
        out[o++] = (char)(0xF0 | (cp >> 18));
        out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[o++] = (char)(0x80 | (cp & 0x3F));
    }
    *out_len = o;
    return out;
}

/* Undoes utf8_escape in the text of each choice (choices[].delta.content, or .message.content
 * for a whole completion): the bytes may then be invalid UTF-8, which only utf8_join reads.
 * Other strings keep the escapes, so they stay valid for the events they reach. */
static void utf8_unescape_content(json_t *root, const char *key)
{
    size_t i;
    json_t *choice;
    json_array_foreach(json_object_get(root, "choices"), i, choice)
    {
        json_t *content = json_object_get(json_object_get(choice, key), "content");
        if (!json_is_string(content))
            continue;
        const unsigned char *p = (const unsigned char *)json_string_value(content);
        size_t n = json_string_length(content), o = 0;
        char *s = xmalloc(n + 1);
        for (size_t k = 0; k < n;) {
            if (n - k >= 4 && p[k] == 0xF3 && p[k + 1] == 0xB0 &&
                (p[k + 2] == 0x82 || p[k + 2] == 0x83)) {
                s[o++] = (char)(((p[k + 2] & 0x03) << 6) | (p[k + 3] & 0x3F));
                k += 4;
            } else
                s[o++] = (char)p[k++];
        }
        json_string_setn_nocheck(content, s, o);
        free(s);
    }
}

/* Parses one chunk or body: as is, or with its invalid bytes escaped (see DESIGN). */
static json_t *parse(struct xlate *x, const char *data, size_t len, const char *key)
{
    json_error_t jerr;
    json_t *root = json_loadb(data, len, 0, &jerr);
    if (root != NULL || utf8_valid(data, len)) {
        if (root == NULL)
            protocol_error(x, "the engine sent a chunk that is not JSON: %s", jerr.text);
        return root;
    }
    size_t n;
    char *esc = utf8_escape(data, len, &n);
    root = json_loadb(esc, n, 0, &jerr);
    free(esc);
    if (root == NULL) {
        protocol_error(x, "the engine sent a chunk that is not JSON: %s", jerr.text);
        return NULL;
    }
    utf8_unescape_content(root, key);
    return root;
}

static int feed(struct xlate *x, const char *data, size_t len, const char *key)
{
    if (x->failed)
        return -EPROTO;
    json_t *root = parse(x, data, len, key);
    if (root == NULL)
        return -EPROTO;
    int rc = read_chunk(x, root, key);
    json_decref(root);
    return rc;
}

/* Whether a member the scan found is absent or null. */
static bool absent(const struct jsonscan_member *m)
{
    return m->value == NULL || (m->len == 4 && memcmp(m->value, "null", 4) == 0);
}

/* The fast path (DESIGN): a chunk that is one text delta and nothing else, read with the
 * scanner. Returns 1 when it took the chunk (*rc: what reading it gave), 0 when it is anything
 * else, which the general path reads. */
static int scan_delta(struct xlate *x, const char *data, size_t len, int *rc)
{
    struct jsonscan_member top[] = {{.name = "choices"}, {.name = "error"}, {.name = "usage"}};
    struct jsonscan_value choice;
    size_t nchoices;
    if (jsonscan_object(data, len, top, ARRAY_SIZE(top)) != 0 || top[0].value == NULL ||
        top[0].value[0] != '[' || !absent(&top[1]) || !absent(&top[2]) ||
        jsonscan_array(top[0].value, top[0].len, &choice, 1, &nchoices) != 0 || nchoices != 1 ||
        choice.value[0] != '{')
        return 0;
    struct jsonscan_member ch[] = {{.name = "index"}, {.name = "delta"}, {.name = "finish_reason"}};
    if (jsonscan_object(choice.value, choice.len, ch, ARRAY_SIZE(ch)) != 0 ||
        (ch[0].value != NULL && !(ch[0].len == 1 && ch[0].value[0] == '0')) ||
        ch[1].value == NULL || ch[1].value[0] != '{' || !absent(&ch[2]))
        return 0;
    struct jsonscan_member d[] = {{.name = "content"}, {.name = "tool_calls"}};
    if (jsonscan_object(ch[1].value, ch[1].len, d, ARRAY_SIZE(d)) != 0 || d[0].value == NULL ||
        d[0].value[0] != '"' || !absent(&d[1]))
        return 0;
    const char *s = d[0].value + 1;
    size_t n = d[0].len - 2;
    if (memchr(s, '\\', n) != NULL) {
        buf_reset(&x->scan);
        if (jsonscan_string(d[0].value, d[0].len, &x->scan) != 0) {
            *rc = protocol_error(x, "the engine's answer is longer than %u bytes", TEXT_CAP);
            return 1;
        }
        s = x->scan.data;
        n = x->scan.len;
    }
    *rc = add_text(x, s, n);
    return 1;
}

int xlate_chunk(struct xlate *x, const char *data, size_t len)
{
    ASSERT(x != NULL && (data != NULL || len == 0));
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return x->failed ? -EPROTO : 0;
    int rc;
    if (!x->failed && !x->no_scan && scan_delta(x, data, len, &rc))
        return rc;
    return feed(x, data, len, "delta");
}

int xlate_completion(struct xlate *x, const char *body, size_t len)
{
    ASSERT(x != NULL && (body != NULL || len == 0));
    int rc = feed(x, body, len, "message");
    if (rc == 0 && x->finish_reason == NULL && !x->failed)
        rc = xlate_finish(x);
    return rc;
}

int xlate_finish(struct xlate *x)
{
    ASSERT(x != NULL);
    return close_all(x);
}

/* Brings the open items in x->output up to date with their buffers (see DESIGN). */
json_t *xlate_output(struct xlate *x)
{
    ASSERT(x != NULL);
    if (x->msg_open)
        json_array_set_new(x->output, x->msg_index, message_item(x, "in_progress"));
    for (size_t i = 0; i < x->ncalls; i++)
        if (x->calls[i]->open)
            json_array_set_new(x->output, x->calls[i]->out_index,
                               call_item(x->calls[i], "in_progress"));
    return x->output;
}

json_t *xlate_usage(const struct xlate *x)
{
    return x->usage;
}

const char *xlate_finish_reason(const struct xlate *x)
{
    return x->finish_reason;
}

const char *xlate_incomplete_reason(const struct xlate *x)
{
    if (x->finish_reason != NULL && strcmp(x->finish_reason, "length") == 0)
        return "max_output_tokens";
    return NULL;
}

const char *xlate_error(const struct xlate *x)
{
    return x->error;
}

/* ---- recovery ---- */

static struct call *call_by_item(struct xlate *x, const char *item_id)
{
    for (size_t i = 0; i < x->ncalls; i++)
        if (item_id != NULL && strcmp(x->calls[i]->id, item_id) == 0)
            return x->calls[i];
    return NULL;
}

static int replay_added(struct xlate *x, json_t *ev)
{
    json_t *item = json_object_get(ev, "item");
    json_t *index = json_object_get(ev, "output_index");
    const char *type = json_string_value(json_object_get(item, "type"));
    const char *id = json_string_value(json_object_get(item, "id"));
    if (!json_is_integer(index) ||
        (size_t)json_integer_value(index) != json_array_size(x->output) || type == NULL ||
        id == NULL || strlen(id) >= IDS_MAX)
        return protocol_error(x, "a stored output_item.added event does not follow the output");
    if (strcmp(type, "message") == 0) {
        if (x->msg_open)
            return protocol_error(x, "a stored message item opens while another is open");
        snprintf(x->msg_id, sizeof(x->msg_id), "%s", id);
        x->msg_open = true;
        x->msg_part = false;
        x->text_done = x->part_done = false;
        x->msg_index = json_array_size(x->output);
        buf_reset(&x->text);
    } else if (strcmp(type, "function_call") == 0) {
        if (x->ncalls == CALLS_MAX)
            return protocol_error(x, "the stored output has more than %d tool calls", CALLS_MAX);
        struct call *c = call_new(x, -1);
        const char *call_id = json_string_value(json_object_get(item, "call_id"));
        const char *name = json_string_value(json_object_get(item, "name"));
        snprintf(c->id, sizeof(c->id), "%s", id);
        snprintf(c->call_id, sizeof(c->call_id), "%s", call_id != NULL ? call_id : "");
        buf_puts(&c->name, name != NULL ? name : "");
    }
    json_array_append_new(x->output, json_deep_copy(item));
    return 0;
}

static int replay_done(struct xlate *x, json_t *ev)
{
    json_t *item = json_object_get(ev, "item");
    json_t *index = json_object_get(ev, "output_index");
    if (!json_is_integer(index) || (size_t)json_integer_value(index) >= json_array_size(x->output))
        return protocol_error(x, "a stored output_item.done event names no item");
    size_t i = (size_t)json_integer_value(index);
    if (x->msg_open && x->msg_index == i)
        x->msg_open = false;
    struct call *c = call_by_item(x, json_string_value(json_object_get(item, "id")));
    if (c != NULL)
        c->open = false;
    json_array_set_new(x->output, i, json_deep_copy(item));
    return 0;
}

int xlate_replay(struct xlate *x, json_t *event)
{
    ASSERT(x != NULL);
    if (x->failed)
        return -EPROTO;
    const char *type = json_string_value(json_object_get(event, "type"));
    const char *item_id = json_string_value(json_object_get(event, "item_id"));
    json_t *delta = json_object_get(event, "delta");
    if (type == NULL)
        return protocol_error(x, "a stored event has no type");
    if (strcmp(type, "response.output_item.added") == 0)
        return replay_added(x, event);
    if (strcmp(type, "response.output_item.done") == 0)
        return replay_done(x, event);
    bool ours = x->msg_open && item_id != NULL && strcmp(item_id, x->msg_id) == 0;
    if (strcmp(type, "response.content_part.added") == 0 && ours) {
        x->msg_part = true;
    } else if (strcmp(type, "response.output_text.done") == 0 && ours) {
        x->text_done = true;
    } else if (strcmp(type, "response.content_part.done") == 0 && ours) {
        x->part_done = true;
    } else if (strcmp(type, "response.function_call_arguments.done") == 0) {
        struct call *c = call_by_item(x, item_id);
        if (c != NULL)
            c->args_done = true;
    } else if (strcmp(type, "response.output_text.delta") == 0 && ours && json_is_string(delta)) {
        if (buf_append(&x->text, json_string_value(delta), json_string_length(delta)) != 0)
            return protocol_error(x, "the stored text is longer than %u bytes", TEXT_CAP);
    } else if (strcmp(type, "response.function_call_arguments.delta") == 0 &&
               json_is_string(delta)) {
        struct call *c = call_by_item(x, item_id);
        if (c != NULL && c->open &&
            buf_append(&c->args, json_string_value(delta), json_string_length(delta)) != 0)
            return protocol_error(x, "the stored arguments are longer than %u bytes", ARGS_CAP);
    }
    return 0;
}

const char *xlate_partial_text(const struct xlate *x)
{
    return x->msg_open && !x->text_done && x->text.len > 0 ? buf_cstr(&x->text) : NULL;
}

bool xlate_answer_ended(const struct xlate *x)
{
    ASSERT(x != NULL);
    if (json_array_size(x->output) == 0 || (x->msg_open && !x->text_done))
        return false;
    for (size_t i = 0; i < x->ncalls; i++)
        if (x->calls[i]->open && !x->calls[i]->args_done)
            return false;
    return true;
}

void xlate_expect_echo(struct xlate *x, const char *prefix)
{
    ASSERT(x != NULL);
    free(x->echo);
    x->echo = NULL;
    buf_reset(&x->held);
    if (prefix == NULL || prefix[0] == '\0')
        return;
    x->echo = xstrdup(prefix);
    x->echo_len = strlen(prefix);
}
