/*
 * http1.h: incremental parsing of HTTP/1.x responses, for httpc's native transport. Two pieces:
 * the response head (status line and header fields, RFC 9112 sections 4 and 5) and the chunked
 * transfer coding (section 7.1), decoded in place so a body can be handed on without a copy.
 * Neither allocates; both accept input cut at any byte. The bytes are parsed by picohttpparser
 * (picohttp.h); the rules about what the fields mean, and the stricter ones on top, are ours.
 */
#ifndef ARUN_HTTP_HTTP1_H
#define ARUN_HTTP_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/picohttp.h"

#define HTTP1_MAX_FIELDS 256 /* header fields per head; more is treated as a head too large */

/* How the body of a response is delimited (RFC 9112 section 6.3). */
enum http1_framing {
    HTTP1_BODY_NONE,    /* 1xx, 204, 304, or the answer to HEAD */
    HTTP1_BODY_LENGTH,  /* Content-Length bytes */
    HTTP1_BODY_CHUNKED, /* Transfer-Encoding ending in chunked */
    HTTP1_BODY_EOF,     /* everything until the server closes the connection */
};

struct http1_head {
    int minor;                  /* HTTP/1.minor */
    int status;                 /* 100-999 */
    enum http1_framing framing; /* how the body that follows is delimited */
    uint64_t content_length;    /* HTTP1_BODY_LENGTH only */
    bool keep_alive;            /* the connection may carry another request afterwards */
};

/* Called once per header field, in order, with the value trimmed of surrounding blanks. Returns
 * 0 to go on, anything else to stop parsing (http1_parse_head then returns -2). */
typedef int (*http1_field_fn)(void *arg, const char *name, size_t name_len, const char *value,
                              size_t value_len);

/* Parses a response head at p[0..n). head_request: the request was HEAD (no body follows).
 * Returns the head's length in bytes when it is complete (fields reported through field_fn,
 * which may be NULL), 0 when more bytes are needed (nothing reported), -1 as soon as the bytes
 * show they are not an HTTP/1.x response head (nothing reported), -2 when field_fn stopped it
 * or the head has more than HTTP1_MAX_FIELDS fields. */
ssize_t http1_parse_head(const char *p, size_t n, bool head_request, struct http1_head *out,
                         http1_field_fn field_fn, void *arg);

/* The state of a chunked body between calls; zero it (or http1_chunked_init) per response. */
struct http1_chunked {
    struct phr_chunked_decoder pico; /* the chunks, up to the last chunk's size line */
    int state;                       /* 0 in the chunks, then where in the trailer section */
    unsigned line;                   /* bytes of the trailer section so far (bounded) */
};

static inline void http1_chunked_init(struct http1_chunked *d)
{
    *d = (struct http1_chunked){0};
}

/* Decodes chunked input at p[0..n) in place: the chunk data it contains is moved to
 * p[0..*out_len) (never past the input it came from). Returns the input bytes consumed, or -1
 * when the coding is malformed. *done is set once the last chunk and the trailer section have
 * been read; the input then stops there, and a return value below n means bytes followed the
 * body (which a client that sent one request never expects: do not reuse the connection). */
ssize_t http1_dechunk(struct http1_chunked *d, char *p, size_t n, size_t *out_len, bool *done);

#endif
