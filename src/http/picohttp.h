/*
 * picohttp.h: the part of picohttpparser that libh2o exports and http1.c and guard.c use. Debian
 * ships libh2o (2.2.5) without picohttpparser.h, so the declarations are written out here,
 * exactly as h2o 2.2.5's deps/picohttpparser/picohttpparser.h has them: a changed signature in a
 * newer libh2o must be copied here from that file, never guessed.
 *
 * picohttpparser (Kazuho Oku et al., MIT): request- and response-head parsers that neither
 * allocate nor copy (the fields point into the input), and an in-place decoder of the chunked
 * coding.
 */
#ifndef ARUN_HTTP_PICOHTTP_H
#define ARUN_HTTP_PICOHTTP_H

#include <stddef.h>
#include <sys/types.h>

/* One header field; name is NULL for an obs-fold continuation line of the field before. */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading blanks skipped, trailing ones kept */
    size_t value_len;
};

/* Parses a response head at _buf[0..len). *num_headers: the room in headers on entry, the
 * fields found on return. last_len: bytes of _buf already seen by an earlier call (0 = none).
 * Returns the head's length, -2 when more bytes are needed, -1 when malformed (also when the
 * head has more fields than the room given). The status line must have a space after the
 * code ("HTTP/1.1 200 " at least). */
int phr_parse_response(const char *_buf, size_t len, int *minor_version, int *status,
                       const char **msg, size_t *msg_len, struct phr_header *headers,
                       size_t *num_headers, size_t last_len);

/* As phr_parse_response, for a request head: method and path point into buf. h2o parses every
 * request with it; the server's guard parses a head again to see the fields h2o keeps to itself. */
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len,
                      const char **path, size_t *path_len, int *minor_version,
                      struct phr_header *headers, size_t *num_headers, size_t last_len);

/* As phr_parse_response, for the header fields alone (no status line). */
int phr_parse_headers(const char *buf, size_t len, struct phr_header *headers, size_t *num_headers,
                      size_t last_len);

/* The decoder's state; zero it before the first call. consume_trailer: 0 stops right after the
 * last chunk's size line, so that the trailer section is the caller's. */
struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
};

/* Decodes buf[0..*bufsz) in place: the chunk data moves to buf[0..*bufsz on return). Returns
 * -2 when the body goes on, -1 when the coding is malformed, or (at the end) the count of
 * undecoded bytes that followed it, which are moved to just after the decoded data. */
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);

#endif
