/*
 * httpc_int.h: what the two transports of http/httpc share; not for other modules.
 *
 * httpc.c drives libcurl (https, DNS names, proxies: everything a remote engine may need);
 * httpc_h1.c speaks HTTP/1.1 itself over libuv TCP to loopback engines, which is where the
 * gateway spends its requests and where a libcurl transfer cost three times the proxying work
 * of nginx (bench/README.md). Each transport's request starts with a struct httpc_req, so the
 * public functions can tell them apart.
 */
#ifndef ARUN_HTTP_HTTPC_INT_H
#define ARUN_HTTP_HTTPC_INT_H

#include "core/buf.h"
#include "http/http1.h"
#include "http/httpc.h"

enum httpc_transport {
    HTTPC_TRANSPORT_CURL = 1,
    HTTPC_TRANSPORT_H1 = 2,
};

/* The first member of each transport's request struct. */
struct httpc_req {
    enum httpc_transport transport;
};

/* Validates what both transports take alike (URL present, header lines without CR/LF, method
 * letters, sizes). Returns 0, -EINVAL or -E2BIG. */
int httpc_check_opts(const struct httpc_opts *o);
/* Appends "name\0value\0" to a response header store; -ENOBUFS past its cap. */
int httpc_store_header(struct buf *b, const char *name, size_t name_len, const char *value,
                       size_t value_len);
/* Looks a header up in such a store (case-insensitive); NULL when absent. */
const char *httpc_find_header(const struct buf *b, const char *name);

/* ---- the native HTTP/1.1 transport (httpc_h1.c) ---- */

/* How one request's response is read: heads (interim 1xx ones skipped) and then the body by its
 * framing. No I/O and no callbacks: the transport feeds it what the connection read, and
 * tests/fuzz/fuzz_httpc_h1.c feeds it anything. */
struct h1_reader {
    bool head_request;            /* the request was HEAD: no body follows */
    bool headers_done;            /* the final response's head was read */
    struct http1_head resp;       /* that head, once headers_done */
    struct http1_chunked chunked; /* the chunked body's decoder */
    uint64_t body_left;           /* HTTP1_BODY_LENGTH: bytes still to come */
    struct buf headers;           /* the current head's fields, "name\0value\0" (capped) */
};

enum h1_read_result {
    H1_READ_MORE,       /* the head is not complete: wait for more bytes */
    H1_READ_INTERIM,    /* a 1xx head was read (*used bytes): drop them and call again */
    H1_READ_HEAD,       /* the final head was read (*used bytes): drop them and call again */
    H1_READ_BODY,       /* every byte given is consumed: p[0..*out) is body data (decoded in
                         * place), *complete when the response ended (resp.keep_alive then says
                         * whether the connection may carry another request) */
    H1_READ_TOO_BIG,    /* a head over HTTPC_MAX_HEADER_BYTES or HTTP1_MAX_FIELDS fields */
    H1_READ_MALFORMED,  /* not an HTTP/1.x response head */
    H1_READ_BAD_CHUNKS, /* a malformed chunked coding */
};

/* Readies rd for one response; h1_reader_cleanup frees its header store. */
void h1_reader_init(struct h1_reader *rd, bool head_request);
void h1_reader_cleanup(struct h1_reader *rd);
/* Reads from p[0..n), the bytes received and not consumed yet (body bytes are decoded in place,
 * so p is written to). *used, *out and *complete are set as the result says. */
enum h1_read_result h1_read(struct h1_reader *rd, char *p, size_t n, size_t *used, size_t *out,
                            bool *complete) MUST_USE;

struct h1; /* one per struct httpc */

/* Makes the transport on loop. */
struct h1 *h1_new(uv_loop_t *loop);
/* Drops every request without callbacks and closes every connection; the struct goes when its
 * handles have closed. NULL is a no-op. */
void h1_free(struct h1 *t);
/* As httpc_request, for options httpc_check_opts() passed. Returns -EAFNOSUPPORT, having done
 * nothing, for a URL this transport does not take; it takes http:// to a loopback address given
 * literally (127.x.x.x, [::1], localhost), without credentials. */
int h1_request(struct h1 *t, const struct httpc_opts *o, httpc_done_cb done,
               struct httpc_req **out) MUST_USE;
void h1_resume(struct httpc_req *r);
void h1_cancel(struct httpc_req *r);
const char *h1_header(struct httpc_req *r, const char *name);
size_t h1_active(const struct h1 *t);
size_t h1_idle(const struct h1 *t);
/* As httpc_prewarm; -EAFNOSUPPORT for an endpoint this transport does not take. */
int h1_prewarm(struct h1 *t, const struct httpc_endpoint *to, unsigned max) MUST_USE;

#endif
