/*
 * fuzz_http1.c: libFuzzer target for http/http1 (response heads and the chunked coding, read by
 * picohttpparser with our rules on top). Besides the sanitizers' findings it checks what httpc's
 * native transport relies on:
 *   - a head's length is never past the input, its status is 100-999, every field reported lies
 *     inside the head, and nothing is reported for a head that is refused;
 *   - the input read as a chunked body is refused both ways or gives the same data, the same
 *     end and the same count of bytes read, whether it comes whole or cut in two (at a place
 *     taken from the input), as two reads would bring it.
 * Built with -DARUN_FUZZ=ON (clang); `make fuzz` runs it for a while, `make test` a short
 * bounded round (ctest fuzz_http1_short) over tests/fuzz/corpus/http1.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"

struct span {
    const char *start, *end; /* the head */
    int fields;
};

static int field_fn(void *arg, const char *name, size_t name_len, const char *value,
                    size_t value_len)
{
    struct span *s = arg;
    if (name_len == 0 || name < s->start || name + name_len > s->end || value < s->start ||
        value + value_len > s->end)
        abort();
    s->fields++;
    return 0;
}

static void check_head(const char *in, size_t n, bool head_request)
{
    struct http1_head h;
    struct span s = {.start = in, .end = in + n};
    ssize_t len = http1_parse_head(in, n, head_request, &h, field_fn, &s);
    if (len > (ssize_t)n || len < -2 || (len <= 0 && len != -2 && s.fields != 0))
        abort();
    if (len > 0 && (h.status < 100 || h.status > 999))
        abort();
}

/* Decodes in[0..n) as a chunked body, in two reads cut at `cut`. Writes the data to out and
 * returns the input bytes read, or -1. */
static ssize_t dechunk(const char *in, size_t n, size_t cut, char *out, size_t *out_len, bool *done)
{
    struct http1_chunked d;
    http1_chunked_init(&d);
    char *copy = malloc(n + 1);
    memcpy(copy, in, n);
    size_t used_total = 0, pos = 0, ends[2] = {cut, n};
    *out_len = 0;
    *done = false;
    for (int k = 0; k < 2 && !*done; k++) {
        size_t got;
        ssize_t used = http1_dechunk(&d, copy + pos, ends[k] - pos, &got, done);
        if (used < 0) {
            free(copy);
            return -1;
        }
        if ((size_t)used > ends[k] - pos || got > (size_t)used)
            abort();
        memcpy(out + *out_len, copy + pos, got);
        *out_len += got;
        used_total += (size_t)used;
        pos = ends[k];
    }
    free(copy);
    return (ssize_t)used_total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    const char *in = (const char *)data;
    check_head(in, n, false);
    check_head(in, n, true);
    if (n == 0)
        return 0;
    char *a = malloc(n), *b = malloc(n);
    size_t alen, blen;
    bool adone, bdone;
    ssize_t aused = dechunk(in, n, n, a, &alen, &adone);
    ssize_t bused = dechunk(in, n, data[0] % n, b, &blen, &bdone);
    /* Refused both ways or read the same both ways. */
    if ((aused < 0) != (bused < 0))
        abort();
    if (aused >= 0 && (aused != bused || adone != bdone || alen != blen || memcmp(a, b, alen) != 0))
        abort();
    free(a);
    free(b);
    return 0;
}
