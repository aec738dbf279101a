/*
 * fuzz_httpc_h1.c: libFuzzer target for the response reader of httpc's native transport
 * (http/httpc_h1.c's h1_read, with http/http1.c compiled in: FUZZ_EXTRA_httpc_h1). Where
 * fuzz_http1 holds the two parsers (a head, a chunked body) to their promises one call at a
 * time, this drives them as the transport does, over a whole response that comes in reads cut at
 * places taken from the input: interim 1xx heads skipped, the final head's fields stored (under
 * their cap), the body by its framing (length, chunked, until close, none), keep-alive decided.
 * Besides the sanitizers' findings it checks:
 *   - the answer (error or not, the status, the fields stored, the body bytes, whether it ended)
 *     does not depend on how the bytes were cut, and a connection reusable after the whole
 *     input in one read is reusable after it in pieces;
 *   - body bytes handed on never exceed the bytes given, a body with a length never exceeds it,
 *     and a response that ended is never read further.
 * The first input byte says whether the request was HEAD and where the reads are cut; the rest is
 * what the engine sent. Built with -DARUN_FUZZ=ON (clang); `make fuzz` runs it for a while, `make
 * test` a short bounded round (ctest fuzz_httpc_h1_short) over tests/fuzz/corpus/httpc_h1.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/httpc_int.h"

struct outcome {
    enum h1_read_result end; /* H1_READ_BODY when the input ran out or the response ended */
    int status;              /* the final head's, 0 before it */
    bool complete;           /* the response ended */
    bool keep_alive;         /* …and the connection may carry another */
    char *headers;           /* the stored fields of the final head */
    size_t headers_len;
    char *body; /* the body bytes handed on */
    size_t body_len;
};

/* Feeds in[0..n) as a connection's reads of at most `step` bytes each, kept in a buffer as the
 * transport keeps rbuf (what a call did not consume stays for the next). */
static void run(const char *in, size_t n, bool head, size_t step, struct outcome *o)
{
    struct h1_reader rd;
    char *rbuf = malloc(n + 1);
    size_t rlen = 0, fed = 0;
    h1_reader_init(&rd, head);
    *o = (struct outcome){.end = H1_READ_MORE, .body = malloc(n + 1)};
    while (o->end == H1_READ_MORE || o->end == H1_READ_BODY) {
        if (fed == n && o->end == H1_READ_MORE)
            break; /* the head never completed */
        size_t take = n - fed < step ? n - fed : step;
        memcpy(rbuf + rlen, in + fed, take);
        rlen += take;
        fed += take;
        for (;;) { /* process(): until it waits for more or the response ends */
            size_t used, out;
            bool complete;
            enum h1_read_result rr = h1_read(&rd, rbuf, rlen, &used, &out, &complete);
            o->end = rr;
            if (rr == H1_READ_INTERIM || rr == H1_READ_HEAD) {
                if (used == 0 || used > rlen)
                    abort();
                memmove(rbuf, rbuf + used, rlen - used);
                rlen -= used;
                continue;
            }
            if (rr == H1_READ_BODY) {
                if (out > rlen || used != rlen)
                    abort();
                memcpy(o->body + o->body_len, rbuf, out);
                o->body_len += out;
                rlen = 0;
                if (rd.resp.framing == HTTP1_BODY_LENGTH && o->body_len > rd.resp.content_length)
                    abort();
                o->complete = complete;
            }
            break;
        }
        if (o->complete || (o->end != H1_READ_MORE && o->end != H1_READ_BODY) || fed == n)
            break;
    }
    if (rd.headers_done) {
        o->status = rd.resp.status;
        o->keep_alive = rd.resp.keep_alive;
        o->headers_len = rd.headers.len;
        o->headers = malloc(rd.headers.len + 1);
        memcpy(o->headers, rd.headers.data ? rd.headers.data : "", rd.headers.len);
    }
    h1_reader_cleanup(&rd);
    free(rbuf);
}

static void outcome_free(struct outcome *o)
{
    free(o->headers);
    free(o->body);
}

static bool same(const struct outcome *a, const struct outcome *b)
{
    if (a->end != b->end || a->status != b->status || a->complete != b->complete ||
        a->headers_len != b->headers_len ||
        (a->headers_len != 0 && memcmp(a->headers, b->headers, a->headers_len) != 0))
        return false;
    if (a->end == H1_READ_BODY || a->end == H1_READ_MORE)
        return a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0;
    /* A body that turns out malformed: what came before the bad read was handed on already,
     * and reads cut elsewhere find the fault in another one; the data agree as far as both got. */
    size_t n = a->body_len < b->body_len ? a->body_len : b->body_len;
    return memcmp(a->body, b->body, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    if (n == 0)
        return 0;
    bool head = data[0] & 1;
    size_t step = 1 + (data[0] >> 1); /* 1-128 bytes a read */
    const char *in = (const char *)data + 1;
    n--;
    struct outcome whole, cut;
    run(in, n, head, n + 1, &whole);
    run(in, n, head, step, &cut);
    /* Reuse may differ one way only: bytes after the response, seen at once in one read, forbid
     * it; in pieces the response may end before they come (the idle connection then turns
     * readable and is closed: httpc_h1.c's read_cb). */
    if (!same(&whole, &cut) || (whole.complete && whole.keep_alive && !cut.keep_alive))
        abort();
    outcome_free(&whole);
    outcome_free(&cut);
    return 0;
}
