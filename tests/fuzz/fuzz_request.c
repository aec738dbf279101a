/*
 * fuzz_request.c: libFuzzer target for runs/request. The input is read as JSON and given to each
 * body parser (POST /v1/responses and the three Conversations API bodies) and, as text, to the
 * list query parser. Besides the sanitizers' findings it checks the module's promises: a refusal
 * is a 400 with a message in valid UTF-8 and never anything else; an accepted body's normalised
 * root parses again to the same root (what storing a request and reading it back relies on). Built
 * with -DARUN_FUZZ=ON (clang); `make fuzz` runs it for a while, `make test` a short bounded round
 * (ctest fuzz_request_short) over tests/fuzz/corpus/request.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runs/request.h"

static void check_refusal(int rc, const struct run_error *err)
{
    if (rc != -EINVAL || err->status != 400 || err->message[0] == '\0' || err->code[0] == '\0')
        abort();
    /* the routes put both into the error JSON: they must be valid UTF-8 */
    json_t *m = json_string(err->message), *p = json_string(err->param);
    if (!m || !p)
        abort();
    json_decref(m);
    json_decref(p);
}

static void responses(json_t *body)
{
    json_t *copy = json_deep_copy(body);
    struct run_request rq, again;
    struct run_error err = {0};
    int rc = run_request_parse(copy, &rq, &err);

    if (rc == 0) {
        json_t *root = json_deep_copy(rq.root);
        if (run_request_parse(root, &again, &err) != 0 || !json_equal(again.root, rq.root))
            abort();
        run_request_free(&again);
        json_decref(root);
        run_request_free(&rq);
    } else {
        check_refusal(rc, &err);
    }
    json_decref(copy);
}

typedef int (*conversation_parse_fn)(json_t *, struct run_conversation_body *, struct run_error *);

static void conversation(json_t *body, conversation_parse_fn parse)
{
    json_t *copy = json_deep_copy(body);
    struct run_conversation_body cb;
    struct run_error err = {0};
    int rc = parse(copy, &cb, &err);

    if (rc == 0)
        run_conversation_body_free(&cb);
    else
        check_refusal(rc, &err);
    json_decref(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    char text[64];
    struct run_list_query q;
    struct run_error err = {0};
    json_t *body;
    int rc;

    /* The query parser takes the input's first line as each of its three values. */
    const uint8_t *nl = memchr(data, '\n', n);
    size_t len = nl ? (size_t)(nl - data) : n;
    if (len >= sizeof(text))
        len = sizeof(text) - 1;
    memcpy(text, data, len);
    text[len] = '\0'; /* an embedded NUL just ends the value early */
    rc = run_list_query_parse(text, text, text, &q, &err);
    if (rc != 0)
        check_refusal(rc, &err);

    body = json_loadb((const char *)data, n, JSON_DECODE_ANY, NULL);
    if (!body)
        return 0;
    responses(body);
    conversation(body, run_conversation_create_parse);
    conversation(body, run_conversation_update_parse);
    conversation(body, run_conversation_items_parse);
    json_decref(body);
    return 0;
}
