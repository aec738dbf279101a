/* Unit tests of runs/translate: the chat body a run sends, and the Responses events and output
 * it makes of an engine's chat stream, whole, cut anywhere, replayed after a crash, or hostile. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runs/translate.h"

/* ---- helpers ---- */

static int record_cb(json_t *event, void *arg)
{
    json_array_append_new(arg, event);
    return 0;
}

/* A chat chunk with one delta, as engines send them (raw: text may hold any bytes but '"'). */
static char *chunk_raw(const char *text, size_t n)
{
    char *s = malloc(n + 128);
    int k = snprintf(s, n + 128, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
    memcpy(s + k, text, n);
    strcpy(s + k + n, "\"},\"finish_reason\":null}]}");
    return s;
}

static int feed_str(struct xlate *x, const char *data)
{
    return xlate_chunk(x, data, strlen(data));
}

static void feed_ok(struct xlate *x, const char *data)
{
    assert_int_equal(feed_str(x, data), 0);
}

static void feed_text(struct xlate *x, const char *text, size_t n)
{
    char *c = chunk_raw(text, n);
    feed_ok(x, c);
    free(c);
}

#define ROLE_CHUNK                                                                                 \
    "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}"
#define STOP_CHUNK "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}"
#define USAGE_CHUNK                                                                                \
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3,\"total_tokens\":7,"   \
    "\"prompt_tokens_details\":{\"cached_tokens\":2}}}"

/* Replaces the made-up ids (item ids: msg_…, fc_…) by their order of appearance, so two runs
 * of the assembler compare equal. */
static void normalize_ids(json_t *j, json_t *seen)
{
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_array(j)) {
        json_array_foreach(j, i, v) normalize_ids(v, seen);
        return;
    }
    if (!json_is_object(j))
        return;
    json_object_foreach(j, k, v)
    {
        const char *s = json_string_value(v);
        if ((strcmp(k, "id") == 0 || strcmp(k, "item_id") == 0) && s != NULL) {
            json_t *n = json_object_get(seen, s);
            if (n == NULL) {
                n = json_integer((json_int_t)json_object_size(seen));
                json_object_set_new(seen, s, n);
            }
            json_object_set_new(j, k, json_sprintf("#%lld", (long long)json_integer_value(n)));
        } else
            normalize_ids(v, seen);
    }
}

/* The events with ids normalised and consecutive deltas of one item merged into one. */
static json_t *canonical(json_t *events)
{
    json_t *out = json_array(), *seen = json_object();
    json_t *copy = json_deep_copy(events);
    normalize_ids(copy, seen);
    size_t i;
    json_t *ev;
    json_array_foreach(copy, i, ev)
    {
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *last = json_array_get(out, json_array_size(out) - 1);
        const char *ltype = json_string_value(json_object_get(last, "type"));
        bool delta = strstr(type, ".delta") != NULL;
        if (delta && ltype != NULL && strcmp(type, ltype) == 0 &&
            json_equal(json_object_get(ev, "item_id"), json_object_get(last, "item_id"))) {
            char *joined = NULL;
            assert_true(asprintf(&joined, "%s%s", json_string_value(json_object_get(last, "delta")),
                                 json_string_value(json_object_get(ev, "delta"))) > 0);
            json_object_set_new(last, "delta", json_string(joined));
            free(joined);
            continue;
        }
        json_array_append(out, ev);
    }
    json_decref(copy);
    json_decref(seen);
    return out;
}

static void assert_json_equal(json_t *a, json_t *b)
{
    if (!json_equal(a, b)) {
        char *sa = json_dumps(a, JSON_COMPACT), *sb = json_dumps(b, JSON_COMPACT);
        print_error("expected %s\n     got %s\n", sa, sb);
        free(sa);
        free(sb);
        fail();
    }
}

/* Same, taking want's reference (a json_pack made for the comparison). */
static void assert_json_is(json_t *want, json_t *got)
{
    assert_json_equal(want, got);
    json_decref(want);
}

static const char *type_of(json_t *events, size_t i)
{
    return json_string_value(json_object_get(json_array_get(events, i), "type"));
}

/* The events of a stream made of the given deltas (whole texts), a stop and usage. */
static json_t *stream_events(const char *const *deltas, size_t n, struct xlate **keep)
{
    json_t *events = json_array();
    struct xlate *x = xlate_new(record_cb, events);
    feed_ok(x, ROLE_CHUNK);
    for (size_t i = 0; i < n; i++)
        feed_text(x, deltas[i], strlen(deltas[i]));
    feed_ok(x, STOP_CHUNK);
    feed_ok(x, USAGE_CHUNK);
    feed_ok(x, "[DONE]");
    assert_int_equal(xlate_finish(x), 0);
    if (keep != NULL)
        *keep = x;
    else
        xlate_free(x);
    return events;
}

/* ---- the assembler: text ---- */

static void test_text_stream_gives_the_sdk_events_in_order(void **state)
{
    (void)state;
    struct xlate *x;
    const char *deltas[] = {"Hello", " world"};
    json_t *ev = stream_events(deltas, 2, &x);
    const char *want[] = {"response.output_item.added", "response.content_part.added",
                          "response.output_text.delta", "response.output_text.delta",
                          "response.output_text.done",  "response.content_part.done",
                          "response.output_item.done"};
    assert_int_equal(json_array_size(ev), ARRAY_SIZE(want));
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        assert_string_equal(type_of(ev, i), want[i]);
    json_t *added = json_object_get(json_array_get(ev, 0), "item");
    const char *id = json_string_value(json_object_get(added, "id"));
    assert_int_equal(strncmp(id, "msg_", 4), 0);
    assert_json_is(json_pack("{s:s,s:s,s:s,s:s,s:[]}", "id", id, "type", "message", "status",
                             "in_progress", "role", "assistant", "content"),
                   added);
    json_t *delta = json_array_get(ev, 2);
    assert_json_is(json_pack("{s:s,s:s,s:i,s:i,s:s,s:[]}", "type", "response.output_text.delta",
                             "item_id", id, "output_index", 0, "content_index", 0, "delta", "Hello",
                             "logprobs"),
                   delta);
    json_t *done = json_array_get(ev, 4);
    assert_string_equal(json_string_value(json_object_get(done, "text")), "Hello world");
    assert_null(json_object_get(done, "sequence_number"));
    json_t *item = json_object_get(json_array_get(ev, 6), "item");
    json_t *want_item =
        json_pack("{s:s,s:s,s:s,s:s,s:[{s:s,s:[],s:[],s:s}]}", "id", id, "type", "message",
                  "status", "completed", "role", "assistant", "content", "type", "output_text",
                  "annotations", "logprobs", "text", "Hello world");
    assert_json_equal(want_item, item);
    assert_json_is(json_pack("[O]", want_item), xlate_output(x));
    assert_json_is(json_pack("{s:i,s:{s:i},s:i,s:{s:i},s:i}", "input_tokens", 4,
                             "input_tokens_details", "cached_tokens", 2, "output_tokens", 3,
                             "output_tokens_details", "reasoning_tokens", 0, "total_tokens", 7),
                   xlate_usage(x));
    assert_string_equal(xlate_finish_reason(x), "stop");
    assert_null(xlate_incomplete_reason(x));
    json_decref(want_item);
    json_decref(ev);
    xlate_free(x);
}

/* The text cut into two or three deltas anywhere, even inside a UTF-8 character: the same events
 * (deltas merged) and every delta valid UTF-8. */
static void test_text_cut_anywhere_gives_the_same_events(void **state)
{
    (void)state;
    const char *text = "h\xc3\xa9llo w\xc3\xb6rld \xf0\x9f\x98\x80 \xe2\x82\xac!";
    size_t n = strlen(text);
    const char *whole[] = {text};
    json_t *ref_events = stream_events(whole, 1, NULL);
    json_t *ref = canonical(ref_events);
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            json_t *ev = json_array();
            struct xlate *x = xlate_new(record_cb, ev);
            feed_ok(x, ROLE_CHUNK);
            feed_text(x, text, i);
            feed_text(x, text + i, j - i);
            feed_text(x, text + j, n - j);
            feed_ok(x, STOP_CHUNK);
            feed_ok(x, USAGE_CHUNK);
            json_t *got = canonical(ev);
            assert_json_equal(ref, got);
            json_decref(got);
            json_decref(ev);
            xlate_free(x);
        }
    }
    json_decref(ref);
    json_decref(ref_events);
}

static void test_invalid_bytes_become_replacement_characters(void **state)
{
    (void)state;
    json_t *ev = json_array();
    struct xlate *x = xlate_new(record_cb, ev);
    feed_text(x,
              "a\xff"
              "b\xf0\x9f",
              5); /* an invalid byte, then a character cut short */
    assert_int_equal(xlate_finish(x), 0);
    json_t *item = json_array_get(xlate_output(x), 0);
    json_t *part = json_array_get(json_object_get(item, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(part, "text")), "a\xef\xbf\xbd"
                                                                          "b\xef\xbf\xbd");
    /* the stream never said it finished: the item is not complete */
    assert_string_equal(json_string_value(json_object_get(item, "status")), "incomplete");
    json_decref(ev);
    xlate_free(x);
}

static void test_finish_length_ends_incomplete(void **state)
{
    (void)state;
    json_t *ev = json_array();
    struct xlate *x = xlate_new(record_cb, ev);
    feed_text(x, "cut ", 4);
    feed_ok(x, "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}");
    assert_string_equal(xlate_finish_reason(x), "length");
    assert_string_equal(xlate_incomplete_reason(x), "max_output_tokens");
    json_t *done = json_array_get(ev, json_array_size(ev) - 1);
    assert_string_equal(type_of(ev, json_array_size(ev) - 1), "response.output_item.done");
    assert_string_equal(json_string_value(json_object_get(json_object_get(done, "item"), "status")),
                        "incomplete");
    size_t before = json_array_size(ev);
    assert_int_equal(xlate_finish(x), 0); /* idempotent: nothing is open any more */
    assert_int_equal(json_array_size(ev), before);
    json_decref(ev);
    xlate_free(x);
}

/* ---- the fast path (a text delta read by the scanner, its event made as text) ---- */

/* Events as the event log stores them: compact JSON with sequence_number last, one per line,
 * the made-up ids replaced by their order of appearance. */
struct bytes {
    struct buf out;
    char ids[16][40];
    size_t nids;
};

static void bytes_add(struct bytes *b, const char *json, size_t len)
{
    /* "…}" -> "…,\"sequence_number\":N}" as eventlog does for both kinds of event */
    char num[48];
    int k = snprintf(num, sizeof(num), ",\"sequence_number\":%d}\n", 0);
    const char *p = json, *e = json + len - 1;
    while (p < e) { /* copy, normalising msg_…/fc_… ids */
        const char *q = NULL;
        for (const char *t = p; t + 3 < e && q == NULL; t++)
            if (t[0] == '"' && (strncmp(t + 1, "msg_", 4) == 0 || strncmp(t + 1, "fc_", 3) == 0))
                q = t + 1;
        if (q == NULL) {
            buf_append(&b->out, p, (size_t)(e - p));
            break;
        }
        buf_append(&b->out, p, (size_t)(q - p));
        const char *end = strchr(q, '"');
        size_t n = (size_t)(end - q), i;
        for (i = 0; i < b->nids; i++)
            if (strlen(b->ids[i]) == n && memcmp(b->ids[i], q, n) == 0)
                break;
        if (i == b->nids) {
            assert_true(n < sizeof(b->ids[0]) && b->nids < ARRAY_SIZE(b->ids));
            memcpy(b->ids[b->nids], q, n);
            b->ids[b->nids++][n] = '\0';
        }
        buf_printf(&b->out, "#%zu", i);
        p = end;
    }
    buf_append(&b->out, num, (size_t)k);
}

static int bytes_json_cb(json_t *event, void *arg)
{
    json_object_set_new(event, "sequence_number", json_integer(0));
    json_object_del(event, "sequence_number"); /* appended last, as the run does */
    char *s = json_dumps(event, JSON_COMPACT);
    bytes_add(arg, s, strlen(s));
    free(s);
    json_decref(event);
    return 0;
}

static size_t text_events; /* made as text, so far */

static int bytes_text_cb(const char *type, const char *json, size_t len, void *arg)
{
    text_events++;
    assert_string_equal(type, "response.output_text.delta");
    json_error_t e;
    json_t *j = json_loadb(json, len, 0, &e);
    assert_non_null(j); /* valid JSON of the right type */
    assert_string_equal(json_string_value(json_object_get(j, "type")), type);
    json_decref(j);
    bytes_add(arg, json, len);
    return 0;
}

enum path { GENERAL, SCAN, SCAN_TEXT };

/* The bytes of the events of chunks[0..n) read one way. */
static char *stream_bytes(const char *const *chunks, size_t n, enum path how)
{
    struct bytes b = {0};
    buf_init(&b.out, SIZE_MAX);
    struct xlate *x = xlate_new(bytes_json_cb, &b);
    xlate_set_scan(x, how != GENERAL);
    if (how == SCAN_TEXT)
        xlate_set_emit_text(x, bytes_text_cb);
    for (size_t i = 0; i < n; i++)
        if (xlate_chunk(x, chunks[i], strlen(chunks[i])) != 0)
            fail_msg("chunk %zu (%s): %s", i, chunks[i], xlate_error(x));
    assert_int_equal(xlate_finish(x), 0);
    xlate_free(x);
    return buf_steal(&b.out);
}

static void assert_paths_agree(const char *const *chunks, size_t n)
{
    char *general = stream_bytes(chunks, n, GENERAL);
    char *scan = stream_bytes(chunks, n, SCAN);
    char *text = stream_bytes(chunks, n, SCAN_TEXT);
    assert_string_equal(general, scan);
    assert_string_equal(general, text);
    free(general);
    free(scan);
    free(text);
}

/* A text delta chunk, the text escaped as jansson escapes it (json_dumps of the chunk). */
static char *chunk_dumped(const char *text, size_t n, int flags)
{
    json_t *c = json_pack("{s:s,s:s,s:[{s:i,s:{s:s%},s:n}]}", "id", "chatcmpl-1", "object",
                          "chat.completion.chunk", "choices", "index", 0, "delta", "content", text,
                          n, "finish_reason");
    char *s = json_dumps(c, JSON_COMPACT | flags);
    json_decref(c);
    return s;
}

/* A text delta chunk with '"', '\\' and control characters escaped by hand and every other byte
 * as it is (invalid UTF-8 included, which json_dumps refuses to write). */
static char *chunk_escaped(const char *text, size_t n)
{
    struct buf b;
    buf_init(&b, SIZE_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\')
            buf_printf(&b, "\\%c", c);
        else if (c < 0x20)
            buf_printf(&b, "\\u%04x", c);
        else
            buf_append(&b, &text[i], 1);
    }
    char *s = chunk_raw(buf_cstr(&b), b.len);
    buf_cleanup(&b);
    return s;
}

static void test_the_fast_path_gives_the_general_paths_bytes(void **state)
{
    (void)state;
    /* Texts with everything an escape can be, non-ASCII, and cut characters. */
    static const char *const texts[] = {
        "Hello",
        " world",
        "",
        "tab\there \"quoted\" back\\slash /slash\n",
        "\x01\x02\x1f\x7f ctl",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "\xc3",
        "\xa9 cut",
        "bad \xff byte",
        "</script>",
    };
    const char *chunks[64];
    char *owned[64];
    size_t n = 0, no = 0;
    chunks[n++] = ROLE_CHUNK;
    for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
        /* as json_dumps writes it, with every non-ASCII escaped, and with / escaped */
        static const int flags[] = {0, JSON_ENSURE_ASCII, JSON_ESCAPE_SLASH};
        for (size_t f = 0; f < 3; f++) {
            char *c = chunk_dumped(texts[i], strlen(texts[i]), flags[f]);
            if (c != NULL) /* invalid UTF-8 cannot be dumped: raw below */
                chunks[n++] = owned[no++] = c;
        }
        chunks[n++] = owned[no++] = chunk_escaped(texts[i], strlen(texts[i]));
    }
    /* chunks the fast path must leave to jansson, among the text */
    chunks[n++] =
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}],"
        "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"dup\"}}]}";
    chunks[n++] = "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other choice\"}}]}";
    chunks[n++] = "{\"choices\":[{\"delta\":{\"content\":\"no index\"}},{\"index\":1}]}";
    chunks[n++] = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\\u0001y\"}}]}";
    chunks[n++] = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"with usage\"}}],"
                  "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}";
    chunks[n++] =
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\",\"tool_calls\":[{\"index\":"
        "0,\"id\":\"c1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}";
    chunks[n++] = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"after the call\"}}]}";
    chunks[n++] = STOP_CHUNK;
    chunks[n++] = USAGE_CHUNK;
    assert_true(n <= ARRAY_SIZE(chunks));
    text_events = 0;
    assert_paths_agree(chunks, n);
    assert_true(text_events >= 30); /* the deltas were made as text */
    /* every prefix of the stream (an answer cut anywhere, then finished) */
    for (size_t k = 0; k <= n; k++)
        assert_paths_agree(chunks, k);
    for (size_t i = 0; i < no; i++)
        free(owned[i]);
}

/* The text cut at every pair of boundaries, inside escapes' characters too: both ways agree. */
static void test_the_fast_path_agrees_on_every_cut(void **state)
{
    (void)state;
    const char *text = "h\xc3\xa9\"llo\n w\xc3\xb6rld \xf0\x9f\x98\x80\\ \xe2\x82\xac!";
    size_t n = strlen(text);
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            char *c[3] = {chunk_escaped(text, i), chunk_escaped(text + i, j - i),
                          chunk_escaped(text + j, n - j)};
            const char *chunks[] = {ROLE_CHUNK, c[0], c[1], c[2], STOP_CHUNK};
            assert_paths_agree(chunks, ARRAY_SIZE(chunks));
            for (int k = 0; k < 3; k++)
                free(c[k]);
        }
    }
}

/* ---- the assembler: tool calls ---- */

#define CALL0_START                                                                                \
    "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\","        \
    "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}"
#define CALL1_START                                                                                \
    "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\","        \
    "\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}]}}]}"
#define TOOLS_CHUNK "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}"

static char *args_chunk(int index, const char *args, size_t n)
{
    json_t *j = json_pack("{s:[{s:i,s:{s:[{s:i,s:{s:s%}}]}}]}", "choices", "index", 0, "delta",
                          "tool_calls", "index", index, "function", "arguments", args, n);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

/* Two tool calls, the first one's arguments cut at `cut`. */
static json_t *two_calls(size_t cut, struct xlate **keep)
{
    const char *args = "{\"city\":\"Paris\"}";
    json_t *ev = json_array();
    struct xlate *x = xlate_new(record_cb, ev);
    feed_ok(x, ROLE_CHUNK);
    feed_ok(x, CALL0_START);
    char *a = args_chunk(0, args, cut), *b = args_chunk(0, args + cut, strlen(args) - cut);
    feed_ok(x, a);
    feed_ok(x, b);
    free(a);
    free(b);
    feed_ok(x, CALL1_START);
    feed_ok(x, TOOLS_CHUNK);
    assert_int_equal(xlate_finish(x), 0);
    if (keep != NULL)
        *keep = x;
    else
        xlate_free(x);
    return ev;
}

static void test_tool_calls_stream_by_index_into_function_call_items(void **state)
{
    (void)state;
    struct xlate *x;
    json_t *ev = two_calls(5, &x);
    json_t *out = xlate_output(x);
    assert_int_equal(json_array_size(out), 2);
    json_t *c0 = json_array_get(out, 0), *c1 = json_array_get(out, 1);
    const char *id0 = json_string_value(json_object_get(c0, "id"));
    assert_int_equal(strncmp(id0, "fc_", 3), 0);
    assert_json_is(json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "id", id0, "type", "function_call",
                             "status", "completed", "arguments", "{\"city\":\"Paris\"}", "call_id",
                             "call_a", "name", "get_weather"),
                   c0);
    assert_string_equal(json_string_value(json_object_get(c1, "call_id")), "call_b");
    assert_string_equal(json_string_value(json_object_get(c1, "arguments")), "{}");
    assert_string_equal(xlate_finish_reason(x), "tool_calls");
    /* added with empty arguments, deltas, done with name and arguments, item done */
    json_t *added = json_object_get(json_array_get(ev, 0), "item");
    assert_string_equal(type_of(ev, 0), "response.output_item.added");
    assert_string_equal(json_string_value(json_object_get(added, "arguments")), "");
    assert_string_equal(json_string_value(json_object_get(added, "status")), "in_progress");
    assert_string_equal(type_of(ev, 1), "response.function_call_arguments.delta");
    assert_string_equal(type_of(ev, 2), "response.function_call_arguments.delta");
    assert_string_equal(type_of(ev, 3), "response.output_item.added");
    assert_string_equal(type_of(ev, 4), "response.function_call_arguments.delta");
    assert_string_equal(type_of(ev, 5), "response.function_call_arguments.done");
    json_t *args_done = json_array_get(ev, 5);
    assert_string_equal(json_string_value(json_object_get(args_done, "name")), "get_weather");
    assert_string_equal(json_string_value(json_object_get(args_done, "arguments")),
                        "{\"city\":\"Paris\"}");
    assert_string_equal(type_of(ev, 6), "response.output_item.done");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 7), "output_index")), 1);
    assert_int_equal(json_array_size(ev), 9);
    /* cut anywhere: the same events */
    json_t *ref = canonical(ev);
    for (size_t cut = 0; cut <= strlen("{\"city\":\"Paris\"}"); cut++) {
        json_t *e2 = two_calls(cut, NULL);
        json_t *got = canonical(e2);
        assert_json_equal(ref, got);
        json_decref(got);
        json_decref(e2);
    }
    json_decref(ref);
    json_decref(ev);
    xlate_free(x);
}

static void test_text_then_tool_call_closes_the_message_first(void **state)
{
    (void)state;
    json_t *ev = json_array();
    struct xlate *x = xlate_new(record_cb, ev);
    feed_text(x, "Let me look.", 12);
    feed_ok(x, CALL0_START);
    feed_ok(x, TOOLS_CHUNK);
    size_t n = json_array_size(ev);
    assert_string_equal(type_of(ev, 5), "response.output_item.done");  /* the message */
    assert_string_equal(type_of(ev, 6), "response.output_item.added"); /* then the call */
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(ev, 5), "item"), "status")),
                        "completed"); /* its text was whole: the model moved on */
    assert_string_equal(type_of(ev, n - 1), "response.output_item.done");
    json_t *out = xlate_output(x);
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "type")),
                        "message");
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 1), "type")),
                        "function_call");
    json_decref(ev);
    xlate_free(x);
}

static void test_a_whole_completion_gives_the_same_events_as_its_stream(void **state)
{
    (void)state;
    const char *deltas[] = {"Hello world"};
    json_t *ref_events = stream_events(deltas, 1, NULL);
    json_t *ev = json_array();
    struct xlate *x = xlate_new(record_cb, ev);
    const char *body =
        "{\"id\":\"c\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"Hello world\"},\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3,\"total_tokens\":7}}";
    assert_int_equal(xlate_completion(x, body, strlen(body)), 0);
    json_t *a = canonical(ref_events), *b = canonical(ev);
    assert_json_equal(a, b);
    assert_int_equal(json_integer_value(json_object_get(xlate_usage(x), "total_tokens")), 7);
    json_decref(a);
    json_decref(b);
    json_decref(ev);
    json_decref(ref_events);
    xlate_free(x);
    /* with tool calls (no index in a whole message) */
    ev = json_array();
    x = xlate_new(record_cb, ev);
    body = "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
           "\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"f\","
           "\"arguments\":\"{}\"}},{\"id\":\"call_b\",\"type\":\"function\",\"function\":{"
           "\"name\":\"g\",\"arguments\":\"[]\"}}]},\"finish_reason\":\"tool_calls\"}]}";
    assert_int_equal(xlate_completion(x, body, strlen(body)), 0);
    json_t *out = xlate_output(x);
    assert_int_equal(json_array_size(out), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 1), "name")), "g");
    json_decref(ev);
    xlate_free(x);
}

/* ---- hostile engines ---- */

static void test_hostile_engine_output_is_an_error_not_a_crash(void **state)
{
    (void)state;
    const char *bad[] = {
        "not json",
        "[1,2]",
        "{}",
        "{\"choices\":\"x\"}",
        "{\"choices\":[7]}",
        "{\"choices\":[{\"delta\":\"x\"}]}",
        "{\"choices\":[{\"delta\":{\"content\":5}}]}",
        "{\"choices\":[{\"delta\":{\"content\":[\"a\"]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":{}}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":\"0\"}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":[]}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":1}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":99999}]}}]}",
        "{\"choices\":[{\"delta\":{},\"finish_reason\":3}]}",
        "{\"choices\":[],\"usage\":{\"prompt_tokens\":\"4\"}}",
        "{\"error\":{\"message\":\"boom\"}}",
        "{\"choices\":[{\"delta\":{\"content\":\"\\ud83d\"}}]}",
        "",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_t *ev = json_array();
        struct xlate *x = xlate_new(record_cb, ev);
        feed_text(x, "ok ", 3);
        int rc = feed_str(x, bad[i]);
        if (rc != -EPROTO)
            print_error("chunk %zu (%s) gave %d\n", i, bad[i], rc);
        assert_int_equal(rc, -EPROTO);
        assert_true(strlen(xlate_error(x)) > 0);
        assert_int_equal(feed_str(x, STOP_CHUNK), -EPROTO); /* refused from then on */
        assert_int_equal(xlate_finish(x), 0);               /* what was said still closes */
        json_decref(ev);
        xlate_free(x);
    }
    json_t *ev = json_array();
    struct xlate *x = xlate_new(record_cb, ev);
    feed_ok(x, "{\"error\":null,\"choices\":[{\"delta\":null,\"finish_reason\":null}]}");
    assert_int_equal(feed_str(x, "{\"error\":{\"message\":\"the slot is gone\"}}"), -EPROTO);
    assert_non_null(strstr(xlate_error(x), "the slot is gone"));
    json_decref(ev);
    xlate_free(x);
}

static int refuse_cb(json_t *event, void *arg)
{
    (void)arg;
    json_decref(event);
    return -ECANCELED;
}

static void test_an_emit_failure_is_returned(void **state)
{
    (void)state;
    struct xlate *x = xlate_new(refuse_cb, NULL);
    char *c = chunk_raw("hi", 2);
    assert_int_equal(feed_str(x, c), -ECANCELED);
    free(c);
    xlate_free(x);
}

/* ---- recovery: replay and echo ---- */

/* The stored events up to k, replayed; then the engine continues the rest of text (repeating
 * the prefix first when echo). The final events equal an uninterrupted stream's. */
static void replay_and_continue(const char *const *deltas, size_t n, size_t k, bool echo)
{
    json_t *ref_events = stream_events(deltas, n, NULL);
    json_t *stored = json_array();
    struct xlate *x = xlate_new(record_cb, stored);
    for (size_t i = 0; i < k; i++)
        assert_int_equal(xlate_replay(x, json_array_get(ref_events, i)), 0);
    const char *partial = xlate_partial_text(x);
    char full[256] = "", prefix[256] = "";
    for (size_t i = 0; i < n; i++)
        strcat(full, deltas[i]);
    if (partial != NULL)
        snprintf(prefix, sizeof(prefix), "%s", partial);
    assert_int_equal(strncmp(full, prefix, strlen(prefix)), 0);
    xlate_expect_echo(x, partial);
    const char *rest = full + strlen(prefix);
    feed_ok(x, ROLE_CHUNK);
    if (echo && strlen(prefix) > 0) { /* llama-server: the prefix and the first new token */
        char first[256];
        snprintf(first, sizeof(first), "%s%.2s", prefix, rest);
        feed_text(x, first, strlen(first));
        rest += strlen(rest) < 2 ? strlen(rest) : 2;
    }
    feed_text(x, rest, strlen(rest));
    feed_ok(x, STOP_CHUNK);
    feed_ok(x, USAGE_CHUNK);
    json_t *all = json_array();
    for (size_t i = 0; i < k; i++)
        json_array_append(all, json_array_get(ref_events, i));
    json_array_extend(all, stored);
    json_t *a = canonical(ref_events), *b = canonical(all);
    assert_json_equal(a, b);
    /* the same item: the replayed id goes on (k = 0: nothing was stored, a new item starts) */
    json_t *out = xlate_output(x);
    json_t *ref_item =
        json_object_get(json_array_get(ref_events, json_array_size(ref_events) - 1), "item");
    if (k > 0)
        assert_string_equal(json_string_value(json_object_get(ref_item, "id")),
                            json_string_value(json_object_get(json_array_get(out, 0), "id")));
    json_decref(a);
    json_decref(b);
    json_decref(all);
    json_decref(stored);
    json_decref(ref_events);
    xlate_free(x);
}

static void test_replay_then_continuation_gives_the_uninterrupted_output(void **state)
{
    (void)state;
    const char *deltas[] = {"stone ", "forest ", "south ", "candle "};
    /* every crash point: before anything, after added, after the part, after each delta */
    for (size_t k = 0; k <= 6; k++) {
        replay_and_continue(deltas, 4, k, false);
        replay_and_continue(deltas, 4, k, true);
    }
}

/* A crash among the closing events (after output_text.done): the replay and xlate_finish give
 * the missing ones only. */
static void test_replay_among_closing_events_finishes_what_is_missing(void **state)
{
    (void)state;
    const char *deltas[] = {"stone ", "forest "};
    json_t *ref_events = stream_events(deltas, 2, NULL);
    size_t n = json_array_size(ref_events);
    /* up to the last delta, the answer is not over: it is continued, not completed */
    for (size_t k = 0; k < n - 2; k++) {
        struct xlate *x = xlate_new(record_cb, NULL);
        for (size_t i = 0; i < k; i++)
            assert_int_equal(xlate_replay(x, json_array_get(ref_events, i)), 0);
        assert_false(xlate_answer_ended(x));
        xlate_free(x);
    }
    for (size_t k = n - 2; k <= n; k++) {
        json_t *stored = json_array();
        struct xlate *x = xlate_new(record_cb, stored);
        for (size_t i = 0; i < k; i++)
            assert_int_equal(xlate_replay(x, json_array_get(ref_events, i)), 0);
        assert_null(xlate_partial_text(x)); /* the text is final: nothing to continue */
        assert_true(xlate_answer_ended(x)); /* recovery completes it without the engine */
        assert_int_equal(xlate_finish(x), 0);
        json_t *all = json_array();
        for (size_t i = 0; i < k; i++)
            json_array_append(all, json_array_get(ref_events, i));
        json_array_extend(all, stored);
        assert_json_equal(ref_events, all);
        json_decref(all);
        json_decref(stored);
        xlate_free(x);
    }
    json_decref(ref_events);
}

static void test_replay_skips_lifecycle_events_and_refuses_nonsense(void **state)
{
    (void)state;
    json_t *ev = json_array();
    struct xlate *x = xlate_new(record_cb, ev);
    json_t *created =
        json_pack("{s:s,s:i,s:{}}", "type", "response.created", "sequence_number", 0, "response");
    assert_int_equal(xlate_replay(x, created), 0);
    assert_null(xlate_partial_text(x));
    json_t *bad = json_pack("{s:s,s:i,s:{s:s,s:s}}", "type", "response.output_item.added",
                            "output_index", 3, "item", "type", "message", "id", "msg_1");
    assert_int_equal(xlate_replay(x, bad), -EPROTO);
    assert_int_equal(xlate_replay(x, created), -EPROTO);
    json_decref(created);
    json_decref(bad);
    json_decref(ev);
    xlate_free(x);
}

/* The engine's first bytes, cut at every offset over two or three chunks, repeat the prefix:
 * only the new text is emitted, once. */
static void test_echo_is_stripped_once_however_it_is_cut(void **state)
{
    (void)state;
    const char *prefix = "stone fo";
    const char *answer = "stone forest south "; /* the prefix again, then the continuation */
    size_t n = strlen(answer);
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            json_t *ev = json_array();
            struct xlate *x = xlate_new(record_cb, ev);
            xlate_expect_echo(x, prefix);
            feed_text(x, answer, i);
            feed_text(x, answer + i, j - i);
            feed_text(x, answer + j, n - j);
            feed_ok(x, STOP_CHUNK);
            json_t *part =
                json_array_get(json_object_get(json_array_get(xlate_output(x), 0), "content"), 0);
            assert_string_equal(json_string_value(json_object_get(part, "text")), "rest south ");
            json_decref(ev);
            xlate_free(x);
        }
    }
}

static void test_an_engine_that_does_not_echo_is_passed_through(void **state)
{
    (void)state;
    struct {
        const char *prefix, *a, *b, *want;
    } cases[] = {
        {"stone fo", "rest ", "south ", "rest south "}, /* no repeat at all */
        {"stone fo", "sto", "ny road ", "stony road "}, /* starts like the prefix, then not */
        {"stone fo", "stone f", "", "stone f"},         /* a part of it, then the end */
        {"the ", "the ", "end ", "end "},               /* exactly the prefix: dropped once */
        {"the ", "the the ", "", "the "},               /* the repeat only counts once */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *ev = json_array();
        struct xlate *x = xlate_new(record_cb, ev);
        xlate_expect_echo(x, cases[i].prefix);
        feed_text(x, cases[i].a, strlen(cases[i].a));
        feed_text(x, cases[i].b, strlen(cases[i].b));
        feed_ok(x, STOP_CHUNK);
        json_t *part =
            json_array_get(json_object_get(json_array_get(xlate_output(x), 0), "content"), 0);
        assert_string_equal(json_string_value(json_object_get(part, "text")), cases[i].want);
        json_decref(ev);
        xlate_free(x);
    }
}

/* ---- the chat body ---- */

static json_t *body_of(const struct run_request *rq, json_t *history, const char *partial)
{
    struct buf b;
    struct run_error err;
    buf_init(&b, 1 << 20);
    assert_int_equal(xlate_chat_body(rq, history, partial, &b, &err), 0);
    json_t *j = json_loads(buf_cstr(&b), 0, NULL);
    assert_non_null(j);
    buf_cleanup(&b);
    return j;
}

static void test_chat_body_carries_the_request(void **state)
{
    (void)state;
    json_t *input =
        json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:[{s:s,s:s},{s:s,s:s}]}]", "type", "message", "role",
                  "developer", "content", "Be brief.", "type", "message", "role", "user", "content",
                  "type", "input_text", "text", "Hello ", "type", "input_text", "text", "there");
    json_t *tools =
        json_pack("[{s:s,s:s,s:s,s:{s:s},s:b}]", "type", "function", "name", "get_weather",
                  "description", "Weather of a city", "parameters", "type", "object", "strict", 1);
    json_t *choice = json_pack("{s:s,s:s}", "type", "function", "name", "get_weather");
    struct run_request rq = {.model = "m",
                             .input = input,
                             .instructions = "You are a mock.",
                             .max_output_tokens = 64,
                             .has_temperature = true,
                             .temperature = 0.5,
                             .tools = tools,
                             .tool_choice = choice,
                             .parallel_tool_calls = 0};
    json_t *body = body_of(&rq, NULL, "stone fo");
    json_t *want = json_pack(
        "{s:s,s:[{s:s,s:s},{s:s,s:s},{s:s,s:s}],s:f,s:i,"
        "s:[{s:s,s:{s:s,s:s,s:{s:s}}}],s:{s:s,s:{s:s}},s:b,s:b,s:{s:b}}",
        "model", "m", "messages", "role", "system", "content", "You are a mock.\n\nBe brief.",
        "role", "user", "content", "Hello there", "role", "assistant", "content", "stone fo",
        "temperature", 0.5, "max_tokens", 64, "tools", "type", "function", "function", "name",
        "get_weather", "description", "Weather of a city", "parameters", "type", "object",
        "tool_choice", "type", "function", "function", "name", "get_weather", "parallel_tool_calls",
        0, "stream", 1, "stream_options", "include_usage", 1);
    assert_json_equal(want, body);
    json_decref(want);
    json_decref(body);
    /* the string forms of tool_choice pass as they are; no partial, no instructions */
    json_decref(choice);
    rq.tool_choice = choice = json_string("required");
    rq.instructions = NULL;
    rq.parallel_tool_calls = -1;
    body = body_of(&rq, NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(body, "tool_choice")), "required");
    assert_null(json_object_get(body, "parallel_tool_calls"));
    json_t *msgs = json_object_get(body, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                        "Be brief.");
    json_decref(body);
    json_decref(choice);
    json_decref(tools);
    json_decref(input);
}

/* The items a tool-using answer made, sent back with their outputs: one assistant message with
 * both calls, then one tool message per output. */
static void test_tool_calls_round_trip_through_the_chat_body(void **state)
{
    (void)state;
    struct xlate *x;
    json_t *ev = two_calls(3, &x);
    json_t *history = json_pack("[{s:s,s:s,s:s}]", "type", "message", "role", "user", "content",
                                "Weather and time?");
    json_array_extend(history, xlate_output(x));
    json_t *input =
        json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:[{s:s,s:s}]}]", "type", "function_call_output",
                  "call_id", "call_a", "output", "sunny", "type", "function_call_output", "call_id",
                  "call_b", "output", "type", "input_text", "text", "noon");
    struct run_request rq = {.model = "m", .input = input, .parallel_tool_calls = -1};
    json_t *body = body_of(&rq, history, NULL);
    json_t *want = json_pack("[{s:s,s:s},{s:s,s:n,s:[{s:s,s:s,s:{s:s,s:s}},{s:s,s:s,s:{s:s,s:s}}]},"
                             "{s:s,s:s,s:s},{s:s,s:s,s:s}]",
                             "role", "user", "content", "Weather and time?", "role", "assistant",
                             "content", "tool_calls", "id", "call_a", "type", "function",
                             "function", "name", "get_weather", "arguments", "{\"city\":\"Paris\"}",
                             "id", "call_b", "type", "function", "function", "name", "get_time",
                             "arguments", "{}", "role", "tool", "tool_call_id", "call_a", "content",
                             "sunny", "role", "tool", "tool_call_id", "call_b", "content", "noon");
    assert_json_equal(want, json_object_get(body, "messages"));
    json_decref(want);
    json_decref(body);
    json_decref(input);
    json_decref(history);
    json_decref(ev);
    xlate_free(x);
}

static void test_an_assistant_text_and_its_calls_are_one_chat_message(void **state)
{
    (void)state;
    json_t *input =
        json_pack("[{s:s,s:s,s:[{s:s,s:s}]},{s:s,s:s,s:s,s:s}]", "type", "message", "role",
                  "assistant", "content", "type", "output_text", "text", "Looking.", "type",
                  "function_call", "call_id", "c1", "name", "f", "arguments", "{}");
    struct run_request rq = {.model = "m", .input = input, .parallel_tool_calls = -1};
    json_t *body = body_of(&rq, NULL, NULL);
    json_t *msgs = json_object_get(body, "messages");
    assert_int_equal(json_array_size(msgs), 1);
    json_t *m = json_array_get(msgs, 0);
    assert_string_equal(json_string_value(json_object_get(m, "content")), "Looking.");
    assert_int_equal(json_array_size(json_object_get(m, "tool_calls")), 1);
    json_decref(body);
    json_decref(input);
}

static void test_chat_body_refuses_what_chat_cannot_say(void **state)
{
    (void)state;
    struct {
        const char *input, *param;
    } cases[] = {
        {"[{\"type\":\"item_reference\",\"id\":\"msg_1\"}]", "input[0].type"},
        {"[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_file\","
         "\"file_id\":\"f\"}]}]",
         "input[0].content"},
        {"[{\"type\":\"message\",\"role\":\"user\",\"content\":\"a\"},{\"type\":\"message\","
         "\"role\":\"critic\",\"content\":\"b\"}]",
         "input[1].role"},
        {"[{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\"}]", "input[0]"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *input = json_loads(cases[i].input, 0, NULL);
        struct run_request rq = {.model = "m", .input = input, .parallel_tool_calls = -1};
        struct buf b;
        struct run_error err;
        buf_init(&b, 1 << 20);
        assert_int_equal(xlate_chat_body(&rq, NULL, NULL, &b, &err), -EINVAL);
        assert_int_equal(err.status, 400);
        assert_string_equal(err.param, cases[i].param);
        assert_true(strlen(err.message) > 10);
        buf_cleanup(&b);
        json_decref(input);
    }
    /* an image by URL is something chat can say */
    json_t *input = json_pack("[{s:s,s:s,s:[{s:s,s:s},{s:s,s:s}]}]", "type", "message", "role",
                              "user", "content", "type", "input_text", "text", "What is it?",
                              "type", "input_image", "image_url", "http://x/y.png");
    struct run_request rq = {.model = "m", .input = input, .parallel_tool_calls = -1};
    json_t *body = body_of(&rq, NULL, NULL);
    json_t *content =
        json_object_get(json_array_get(json_object_get(body, "messages"), 0), "content");
    assert_int_equal(json_array_size(content), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(content, 1), "image_url"), "url")),
                        "http://x/y.png");
    json_decref(body);
    json_decref(input);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_stream_gives_the_sdk_events_in_order),
        cmocka_unit_test(test_text_cut_anywhere_gives_the_same_events),
        cmocka_unit_test(test_invalid_bytes_become_replacement_characters),
        cmocka_unit_test(test_the_fast_path_gives_the_general_paths_bytes),
        cmocka_unit_test(test_the_fast_path_agrees_on_every_cut),
        cmocka_unit_test(test_finish_length_ends_incomplete),
        cmocka_unit_test(test_tool_calls_stream_by_index_into_function_call_items),
        cmocka_unit_test(test_text_then_tool_call_closes_the_message_first),
        cmocka_unit_test(test_a_whole_completion_gives_the_same_events_as_its_stream),
        cmocka_unit_test(test_hostile_engine_output_is_an_error_not_a_crash),
        cmocka_unit_test(test_an_emit_failure_is_returned),
        cmocka_unit_test(test_replay_then_continuation_gives_the_uninterrupted_output),
        cmocka_unit_test(test_replay_among_closing_events_finishes_what_is_missing),
        cmocka_unit_test(test_replay_skips_lifecycle_events_and_refuses_nonsense),
        cmocka_unit_test(test_echo_is_stripped_once_however_it_is_cut),
        cmocka_unit_test(test_an_engine_that_does_not_echo_is_passed_through),
        cmocka_unit_test(test_chat_body_carries_the_request),
        cmocka_unit_test(test_tool_calls_round_trip_through_the_chat_body),
        cmocka_unit_test(test_an_assistant_text_and_its_calls_are_one_chat_message),
        cmocka_unit_test(test_chat_body_refuses_what_chat_cannot_say),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
