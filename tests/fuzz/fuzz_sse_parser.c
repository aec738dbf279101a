/*
 * fuzz_sse_parser.c: libFuzzer target for http/sse_parser. Besides the sanitizers' findings it
 * checks the parser's promise that reads do not matter: the input fed whole, byte by byte and in
 * reads cut at places taken from the input itself must give the same transcript (events,
 * comments, result). Built with -DARUN_FUZZ=ON (clang); `make fuzz` runs it for a while, and
 * `make test` runs a short bounded round (ctest fuzz_sse_parser_short). Inputs it finds worth
 * keeping go to tests/fuzz/corpus/sse_parser, which test_sse_parser replays.
 */
#include <stdint.h>
#include <stdlib.h>

#include "sse_parser_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    const char *in = (const char *)data;
    struct buf whole, other;
    buf_init(&whole, SSE_CHECK_TRANSCRIPT);
    buf_init(&other, SSE_CHECK_TRANSCRIPT);
    /* Cuts after every byte that is a line end's neighbour or whose value is odd: varied, and a
     * function of the input, so a crash reproduces from the input alone. */
    size_t cuts[512], ncuts = 0;
    for (size_t i = 1; i < n && ncuts < sizeof(cuts) / sizeof(cuts[0]); i++)
        if ((data[i] & 1) || data[i - 1] == '\r' || data[i] == '\n')
            cuts[ncuts++] = i;
    if (!sse_check_same(in, n, cuts, ncuts, &whole, &other))
        abort();
    buf_cleanup(&whole);
    buf_cleanup(&other);
    return 0;
}
