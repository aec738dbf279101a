/*
 * fuzz_translate.c: libFuzzer target for runs/translate, the Responses input converter and the
 * engine-stream assembler. The first byte picks what the rest is:
 *   0: a POST /v1/responses body (JSON): checked by run_request_parse, then converted into the
 *      engine's chat body, with the text after the first NUL in the input as the partial answer
 *      of a continuation. Promise: 0 and a chat body that is a JSON object with "model" and a
 *      non-empty "messages" array, or -EINVAL with a 400 and a UTF-8 message, or -ENOBUFS.
 *   1: an engine's chat stream, one SSE data a line, fed to xlate_chunk twice: with the
 *      scanner's fast path and with jansson alone. Promise (translate.h): both give the same
 *      events, byte for byte, and the same verdict; every event is an object with a "type";
 *      the output items always serialise.
 *   2: a whole chat completion body, xlate_completion, with the same promises.
 *   3: stored events, one JSON a line, fed back with xlate_replay, then a stream continued and
 *      finished: whatever the store holds, no crash and serialisable output.
 * Built with -DARUN_FUZZ=ON (clang); `make fuzz` runs it for a while, `make test` a short round
 * (ctest fuzz_translate_short) over tests/fuzz/corpus/translate.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "runs/translate.h"

#define OUT_CAP (1u << 20)

struct sink {
    struct buf text; /* every event, dumped, one a line */
    size_t n;
};

static bool hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Appends an event with the random part of the ids arun makes (msg_, fc_: 32 hex digits after
 * '_', core/ids.h) masked, so two assemblies of one input compare equal. */
static void record(struct sink *s, const char *type, const char *json, size_t len)
{
    size_t start = s->text.len;

    if (type == NULL || type[0] == '\0')
        abort(); /* every event says what it is */
    buf_append(&s->text, json, len);
    buf_append(&s->text, "\n", 1);
    char *t = s->text.data + start;
    for (size_t i = 1; i < len; i++) {
        size_t n = 0;
        if (t[i - 1] != '_')
            continue;
        while (i + n < len && hex(t[i + n]))
            n++;
        if (n == 32)
            memset(t + i, 'x', n);
        i += n;
    }
    s->n++;
}

static int emit_cb(json_t *event, void *arg)
{
    if (!json_is_object(event))
        abort();
    char *text = json_dumps(event, JSON_COMPACT);
    if (text == NULL)
        abort();
    record(arg, json_string_value(json_object_get(event, "type")), text, strlen(text));
    free(text);
    json_decref(event);
    return 0;
}

static int emit_text_cb(const char *type, const char *json, size_t len, void *arg)
{
    /* The fast path's text must be the JSON that dumping the event would give: parse it. */
    json_error_t e;
    json_t *j = json_loadb(json, len, 0, &e);
    if (j == NULL || !json_is_object(j))
        abort();
    const char *t = json_string_value(json_object_get(j, "type"));
    if (t == NULL || strcmp(t, type) != 0)
        abort();
    json_decref(j);
    record(arg, type, json, len);
    return 0;
}

static void check_output(struct xlate *x)
{
    char *s = json_dumps(xlate_output(x), JSON_COMPACT);
    if (s == NULL)
        abort();
    free(s);
    json_t *u = xlate_usage(x);
    if (u != NULL && !json_is_object(u))
        abort();
}

/* Feeds the lines of data (or the whole of it) and finishes; returns the verdict. */
static int assemble(const uint8_t *data, size_t len, bool whole, bool scan, struct sink *s)
{
    struct xlate *x = xlate_new(emit_cb, s);
    int rc = 0;

    xlate_set_scan(x, scan);
    if (scan)
        xlate_set_emit_text(x, emit_text_cb);
    if (whole) {
        rc = xlate_completion(x, (const char *)data, len);
    } else {
        const uint8_t *p = data, *end = data + len;
        while (p < end && rc == 0) {
            const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
            const uint8_t *e = nl != NULL ? nl : end;
            rc = xlate_chunk(x, (const char *)p, (size_t)(e - p));
            p = nl != NULL ? nl + 1 : end;
        }
    }
    if (rc == -EPROTO && xlate_error(x)[0] == '\0')
        abort(); /* a refusal says why */
    if (rc != 0 && rc != -EPROTO)
        abort();
    if (rc == 0 && xlate_finish(x) != 0)
        abort();
    check_output(x);
    xlate_free(x);
    return rc;
}

static void stream(const uint8_t *data, size_t len, bool whole)
{
    struct sink a = {0}, b = {0};

    buf_init(&a.text, SIZE_MAX);
    buf_init(&b.text, SIZE_MAX);
    int ra = assemble(data, len, whole, true, &a);
    int rb = assemble(data, len, whole, false, &b);
    if (ra != rb || a.n != b.n || a.text.len != b.text.len ||
        memcmp(buf_cstr(&a.text), buf_cstr(&b.text), a.text.len) != 0)
        abort(); /* the fast path and jansson must agree */
    buf_cleanup(&a.text);
    buf_cleanup(&b.text);
}

static void request(const uint8_t *data, size_t len)
{
    const uint8_t *nul = memchr(data, '\0', len);
    size_t body_len = nul != NULL ? (size_t)(nul - data) : len;
    char *partial = NULL;
    json_error_t e;
    json_t *body = json_loadb((const char *)data, body_len, 0, &e);

    if (body == NULL)
        return;
    if (nul != NULL) { /* the rest, as a C string (it may hold NULs of its own: cut there) */
        size_t n = len - body_len - 1;
        partial = malloc(n + 1);
        memcpy(partial, nul + 1, n);
        partial[n] = '\0';
    }
    if (json_is_object(body)) {
        struct run_request rq;
        struct run_error err;
        if (run_request_parse(body, &rq, &err) == 0) {
            struct buf out;
            buf_init(&out, OUT_CAP);
            memset(&err, 0, sizeof(err));
            int rc = xlate_chat_body(&rq, NULL, partial, &out, &err);
            if (rc == 0) {
                json_t *chat = json_loadb(buf_cstr(&out), out.len, 0, &e);
                json_t *msgs = json_object_get(chat, "messages");
                if (!json_is_object(chat) || !json_is_string(json_object_get(chat, "model")) ||
                    !json_is_array(msgs) || json_array_size(msgs) == 0)
                    abort();
                json_decref(chat);
            } else if (rc == -EINVAL) {
                json_t *m = json_string(err.message);
                if (err.status != 400 || m == NULL)
                    abort();
                json_decref(m);
            } else if (rc != -ENOBUFS) {
                abort();
            }
            buf_cleanup(&out);
            run_request_free(&rq);
        }
    }
    free(partial);
    json_decref(body);
}

static void replay(const uint8_t *data, size_t len)
{
    struct sink s = {0};
    struct xlate *x;
    const uint8_t *p = data, *end = data + len;

    buf_init(&s.text, SIZE_MAX);
    x = xlate_new(emit_cb, &s);
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *e = nl != NULL ? nl : end;
        json_error_t err;
        json_t *ev = json_loadb((const char *)p, (size_t)(e - p), 0, &err);
        p = nl != NULL ? nl + 1 : end;
        if (ev == NULL)
            continue;
        int rc = xlate_replay(x, ev);
        json_decref(ev);
        if (rc != 0 && rc != -EPROTO)
            abort();
        if (rc != 0)
            break;
    }
    (void)xlate_answer_ended(x);
    const char *partial = xlate_partial_text(x);
    if (partial != NULL)
        xlate_expect_echo(x, partial);
    static const char more[] = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\" more\"}}]}";
    if (xlate_chunk(x, more, sizeof(more) - 1) == 0)
        (void)xlate_finish(x);
    check_output(x);
    xlate_free(x);
    buf_cleanup(&s.text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] & 3) {
    case 0:
        request(data + 1, size - 1);
        break;
    case 1:
        stream(data + 1, size - 1, false);
        break;
    case 2:
        stream(data + 1, size - 1, true);
        break;
    case 3:
        replay(data + 1, size - 1);
        break;
    }
    return 0;
}
