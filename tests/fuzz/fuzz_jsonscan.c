/*
 * fuzz_jsonscan.c: libFuzzer target for gateway/jsonscan, the gateway's fast path over request
 * bodies (and the runs' over engine chunks). The scan promises to say "yes" only to what jansson
 * (JSON_REJECT_DUPLICATES, as the gateway parses) reads the same way; this holds it to that on
 * any bytes, besides the sanitizers' findings:
 *   - jsonscan_object accepts only a text jansson reads as an object, and each member found is
 *     jansson's member (parsed alone it is equal; a string decodes with jsonscan_string to
 *     jansson's string); a member jansson has, the scan found, and none it lacks;
 *   - jsonscan_array likewise: jansson's array, its element count, its first elements;
 *   - neither reads outside the text (the input is an exact-size copy).
 * Built with -DARUN_FUZZ=ON (clang); `make fuzz` runs it for a while, `make test` a short bounded
 * round (ctest fuzz_jsonscan_short) over tests/fuzz/corpus/jsonscan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "gateway/jsonscan.h"

/* The value v[0..n) the scan gave is `want`: parsed alone it is equal, a string decodes the same.
 */
static void same_value(const char *v, size_t n, json_t *want)
{
    json_t *got = json_loadb(v, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (got == NULL || !json_equal(got, want))
        abort();
    json_decref(got);
    if (json_is_string(want)) {
        struct buf b;
        buf_init(&b, 1 << 20);
        if (jsonscan_string(v, n, &b) != 0 || b.len != json_string_length(want) ||
            (b.len && memcmp(b.data, json_string_value(want), b.len) != 0))
            abort();
        buf_cleanup(&b);
    }
}

static void object(const char *text, size_t n)
{
    struct jsonscan_member m[] = {{.name = "model"}, {.name = "stream"}, {.name = "messages"},
                                  {.name = "input"}, {.name = "usage"},  {.name = "choices"},
                                  {.name = "a"},     {.name = ""}};
    if (jsonscan_object(text, n, m, sizeof(m) / sizeof(m[0])) != 0)
        return;
    json_t *j = json_loadb(text, n, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL || !json_is_object(j))
        abort(); /* the scan said yes to what jansson refuses */
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        json_t *want = json_object_get(j, m[i].name);
        if ((want == NULL) != (m[i].value == NULL))
            abort();
        if (want != NULL)
            same_value(m[i].value, m[i].len, want);
    }
    json_decref(j);
}

static void array(const char *text, size_t n)
{
    struct jsonscan_value el[4];
    size_t count = 0;
    if (jsonscan_array(text, n, el, 4, &count) != 0)
        return;
    json_t *j = json_loadb(text, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL || !json_is_array(j) || json_array_size(j) != count)
        abort();
    for (size_t i = 0; i < count && i < 4; i++)
        same_value(el[i].value, el[i].len, json_array_get(j, i));
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    char *copy = malloc(n ? n : 1);
    memcpy(copy, data, n);
    object(copy, n);
    array(copy, n);
    free(copy);
    return 0;
}
