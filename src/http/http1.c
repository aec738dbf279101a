/*
 * http1.c: HTTP/1.x response heads and the chunked coding. See http1.h.
 *
 * picohttpparser (phr_parse_response, phr_decode_chunked, exported by libh2o: picohttp.h)
 * reads the bytes: status line, field names (tokens only, no blank before the colon), values,
 * chunk sizes and data. This file owns what the fields mean and the rules picohttpparser leaves
 * to its caller. Strict where leniency lets a response be read two ways (RFC 9112 section 11.2,
 * response splitting and smuggling): obs-fold lines, a Content-Length that is not all digits or
 * differs between two fields, both Content-Length and Transfer-Encoding (read, but the
 * connection is not reused), a trailer section that does not end in CRLF are all errors.
 * Lenient where it is harmless: a bare LF ends a line as well as CRLF, and the reason phrase
 * may be missing with the space before it.
 */
#include "http/http1.h"

#include <string.h>
#include <strings.h>

#define CHUNK_TRAILER_MAX 65536 /* the whole trailer section */

/* Does the comma-separated list v[0..n) contain token (case-insensitive)? last: only as its
 * final element. */
static bool list_has(const char *v, size_t n, const char *token, bool last)
{
    size_t tl = strlen(token);
    bool found = false;
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end == start)
            continue;
        bool match = end - start == tl && strncasecmp(v + start, token, tl) == 0;
        if (match && !last)
            return true;
        found = match;
    }
    return found;
}

/* Content-Length: digits only. Returns 0 and *out, or -1. */
static int parse_length(const char *v, size_t n, uint64_t *out)
{
    uint64_t x = 0;
    if (n == 0 || n > 19)
        return -1; /* 19 digits always fit in 64 bits */
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return 0;
}

/* "HTTP/1.x NNN" with nothing after the code: RFC 9112 wants a space there even when the reason
 * is empty, and picohttpparser insists on it, but servers that leave both out exist and the
 * head cannot be read two ways. Returns the length of that line with its line end, 0 when p
 * does not start with one, -1 when it does up to a CR that ends the input (its LF may come
 * with the next read: fuzz_httpc_h1 found such a line refused when cut there). */
static ssize_t reasonless_status_line(const char *p, size_t n)
{
    if (n < 13 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ')
        return 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
    }
    if (p[12] == '\n')
        return 13;
    if (p[12] == '\r' && n == 13)
        return -1;
    return n >= 14 && p[12] == '\r' && p[13] == '\n' ? 14 : 0;
}

/* picohttpparser over p[0..n): the head's length, 0 for more, -1 malformed, -2 too many fields.
 * Sets *minor, *status and the fields f[0..*nf). */
static ssize_t pico_head(const char *p, size_t n, int *minor, int *status, struct phr_header *f,
                         size_t *nf)
{
    const char *msg;
    size_t msg_len, room = *nf;
    int rc = phr_parse_response(p, n, minor, status, &msg, &msg_len, f, nf, 0);
    if (rc == -1) {
        ssize_t sl = reasonless_status_line(p, n);
        if (sl < 0)
            return 0;
        if (sl > 0) {
            *minor = p[7] - '0';
            *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
            *nf = room;
            rc = phr_parse_headers(p + sl, n - (size_t)sl, f, nf, 0);
            if (rc > 0)
                rc += (int)sl;
        }
    }
    if (rc == -2)
        return 0;
    if (rc == -1)
        return *nf == room ? -2 : -1; /* it stops with every slot used only when out of room */
    return rc;
}

ssize_t http1_parse_head(const char *p, size_t n, bool head_request, struct http1_head *out,
                         http1_field_fn field_fn, void *arg)
{
    struct phr_header f[HTTP1_MAX_FIELDS];
    size_t nf = HTTP1_MAX_FIELDS;
    struct http1_head h = {0};
    bool has_length = false, has_te = false, te_chunked = false, close = false, ka = false;

    ssize_t head_len = pico_head(p, n, &h.minor, &h.status, f, &nf);
    if (head_len <= 0)
        return head_len;
    if (h.status < 100)
        return -1;
    /* Validate every field (a malformed one refuses the head) before reporting any: a field_fn
     * never sees part of a head, nor part of a bad one. */
    for (size_t i = 0; i < nf; i++) {
        if (f[i].name == NULL)
            return -1; /* obs-fold: one field or two, depending on who reads it */
        while (f[i].value_len > 0 &&
               (f[i].value[f[i].value_len - 1] == ' ' || f[i].value[f[i].value_len - 1] == '\t'))
            f[i].value_len--;
        const char *l = f[i].name, *v = f[i].value;
        size_t c = f[i].name_len, vl = f[i].value_len;
        if (c == 14 && strncasecmp(l, "content-length", 14) == 0) {
            uint64_t x;
            if (parse_length(v, vl, &x) != 0 || (has_length && x != h.content_length))
                return -1;
            has_length = true;
            h.content_length = x;
        } else if (c == 17 && strncasecmp(l, "transfer-encoding", 17) == 0) {
            has_te = true;
            te_chunked = list_has(v, vl, "chunked", true); /* the last field decides */
        } else if (c == 10 && strncasecmp(l, "connection", 10) == 0) {
            close |= list_has(v, vl, "close", false);
            ka |= list_has(v, vl, "keep-alive", false);
        }
    }
    for (size_t i = 0; field_fn != NULL && i < nf; i++) {
        if (field_fn(arg, f[i].name, f[i].name_len, f[i].value, f[i].value_len) != 0)
            return -2;
    }
    bool no_body = head_request || h.status < 200 || h.status == 204 || h.status == 304;
    if (no_body)
        h.framing = HTTP1_BODY_NONE;
    else if (has_te)
        h.framing = te_chunked ? HTTP1_BODY_CHUNKED : HTTP1_BODY_EOF;
    else if (has_length)
        h.framing = HTTP1_BODY_LENGTH;
    else
        h.framing = HTTP1_BODY_EOF;
    h.keep_alive = (h.minor >= 1 ? !close : ka && !close) && h.framing != HTTP1_BODY_EOF &&
                   !(has_te && has_length); /* both: a smuggling attempt or a broken server */
    *out = h;
    return head_len;
}

/* Where the trailer section stands, once picohttpparser has read the last chunk's size line. */
enum {
    S_CHUNKS,      /* picohttpparser's part: sizes, extensions, data */
    S_TRAILER,     /* the start of a trailer line (or of the final empty line) */
    S_TRAILER_IN,  /* inside a trailer field line */
    S_TRAILER_END, /* the LF of the final empty line */
    S_DONE,
};

/* The trailer section at p[0..n): ours rather than picohttpparser's, which takes a final line
 * of CR CR ... LF and does not bound the section. Returns the bytes read, or -1. */
static ssize_t trailers(struct http1_chunked *d, const char *p, size_t n)
{
    size_t in = 0;
    for (; in < n && d->state != S_DONE; in++) {
        char c = p[in];
        if (++d->line > CHUNK_TRAILER_MAX)
            return -1;
        switch (d->state) {
        case S_TRAILER:
            d->state = c == '\r' ? S_TRAILER_END : c == '\n' ? S_DONE : S_TRAILER_IN;
            break;
        case S_TRAILER_IN:
            if (c == '\n')
                d->state = S_TRAILER;
            break;
        default: /* S_TRAILER_END */
            if (c != '\n')
                return -1;
            d->state = S_DONE;
            break;
        }
    }
    return (ssize_t)in;
}

ssize_t http1_dechunk(struct http1_chunked *d, char *p, size_t n, size_t *out_len, bool *done)
{
    size_t out = 0, in = 0; /* decoded bytes; input bytes read before the trailer section */
    *done = false;
    if (d->state == S_CHUNKS) {
        out = n;
        ssize_t rc = phr_decode_chunked(&d->pico, p, &out);
        if (rc == -1)
            return -1;
        if (rc == -2) {
            *out_len = out;
            return (ssize_t)n;
        }
        /* The last chunk's size line was read; the rest (moved to p + out) is ours. */
        d->state = S_TRAILER;
        in = n - (size_t)rc;
    }
    ssize_t used = trailers(d, p + out, n - in);
    if (used < 0)
        return -1;
    *out_len = out;
    *done = d->state == S_DONE;
    return (ssize_t)(in + (size_t)used);
}
