/*
 * fuzz_validate.c: libFuzzer target for gateway/validate. The input's first byte picks the route
 * (chat, completions, embeddings), the rest is the body. Besides the sanitizers' findings (the
 * walk trusts the syntax but must never read outside the text, whatever it is given) it checks
 * the module's promises:
 *   - a refusal is -EINVAL with a code, a message and a param in printable ASCII (they go into
 *     the error JSON as they are), and the same body gets the same answer twice;
 *   - on a body jansson reads as an object (as the gateway's slow path does), the verdict, code
 *     and param do not depend on the spelling: jansson's compact dump with every non-ASCII
 *     character escaped is judged the same, as the engine would read both the same;
 *     (bodies with a NUL byte aside: see below);
 *   - a body that jsonscan accepts (the gateway's fast path) is one jansson reads too, so the
 *     second property covers the fast path's bodies.
 * Built with -DARUN_FUZZ=ON (clang); `make fuzz` runs it for a while, `make test` a short bounded
 * round (ctest fuzz_validate_short) over tests/fuzz/corpus/validate.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gateway/validate.h"

static void check_printable(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e)
            abort();
    }
}

static int judge(enum validate_kind kind, const char *body, size_t n, struct validate_error *err)
{
    /* A copy of exactly n bytes: ASan sees any read past the body's end. */
    char *copy = malloc(n ? n : 1);
    memcpy(copy, body, n);
    int rc = validate_request(kind, copy, n, err);
    free(copy);
    if (rc != 0 && rc != -EINVAL)
        abort();
    if (rc != 0) {
        if (err->code == NULL || err->message[0] == '\0')
            abort();
        check_printable(err->code, 64);
        check_printable(err->message, sizeof(err->message));
        check_printable(err->param, sizeof(err->param));
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    if (n == 0)
        return 0;
    enum validate_kind kind = (enum validate_kind)(data[0] % 3);
    const char *body = (const char *)data + 1;
    size_t len = n - 1;
    struct validate_error a, b;

    int ra = judge(kind, body, len, &a);
    int rb = judge(kind, body, len, &b);
    if (ra != rb || (ra != 0 && (strcmp(a.code, b.code) != 0 || strcmp(a.param, b.param) != 0 ||
                                 strcmp(a.message, b.message) != 0)))
        abort();

    /* jansson 2.14 takes a NUL byte right after a number for the end of it ({"n":1\0} reads as
     * {"n":1}; found by this target): such a body is no JSON to the engine either, and the walk
     * refuses it as invalid_json (test_validate's regression case), so it has no respelling. */
    if (memchr(body, '\0', len) != NULL)
        return 0;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL)
        return 0;
    if (json_is_object(j)) {
        char *again = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (again == NULL)
            abort();
        rb = judge(kind, again, strlen(again), &b);
        if (ra != rb || (ra != 0 && (strcmp(a.code, b.code) != 0 || strcmp(a.param, b.param) != 0)))
            abort();
        free(again);
    }
    json_decref(j);
    return 0;
}
