/*
 * http1.c: HTTP/1.x response heads and the chunked coding. See http1.h.
 *
 * Strict where leniency lets a response be read two ways (RFC 9112 section 11.2, response
 * splitting and smuggling): whitespace before a field's colon, obs-fold lines, a Content-Length
 * that is not all digits or differs between two fields are all errors. Lenient where it is
 * harmless: a bare LF ends a line as well as CRLF, and the reason phrase may be missing.
 */
#include "http/http1.h"

#include <string.h>
#include <strings.h>

#include "core/common.h"

#define CHUNK_LINE_MAX 4096      /* a chunk-size line with extensions, or one trailer field */
#define CHUNK_TRAILER_MAX 65536  /* the whole trailer section */
#define CHUNK_SIZE_DIGITS_MAX 15 /* 2^60 bytes: no real chunk is larger, and no overflow */

/* RFC 9110 5.6.2: token characters, DIGIT / ALPHA / one of !#$%&'*+-.^_`|~, as a bitmap of
 * the 128 ASCII codes (test_http1 checks it against that definition for every byte). */
static const uint64_t tchar_bits[2] = {0x03ff6cfa00000000ull, 0x57ffffffc7fffffeull};

static bool is_tchar(unsigned char c)
{
    return c < 128 && (tchar_bits[c >> 6] >> (c & 63) & 1) != 0;
}

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

/* The next line of p[*pos..n): sets *line and *len (without CR LF) and advances *pos. Returns
 * false when the line is not complete yet. */
static bool next_line(const char *p, size_t n, size_t *pos, const char **line, size_t *len)
{
    const char *start = p + *pos;
    const char *lf = memchr(start, '\n', n - *pos);
    if (lf == NULL)
        return false;
    size_t l = (size_t)(lf - start);
    if (l > 0 && start[l - 1] == '\r')
        l--;
    *line = start;
    *len = l;
    *pos = (size_t)(lf + 1 - p);
    return true;
}

static int parse_status_line(const char *l, size_t len, struct http1_head *h)
{
    /* "HTTP/1.x NNN[ reason]" */
    if (len < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' || l[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++) {
        if (l[i] < '0' || l[i] > '9')
            return -1;
    }
    if (len > 12 && l[12] != ' ')
        return -1;
    h->minor = l[7] - '0';
    h->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    return h->status >= 100 ? 0 : -1;
}

ssize_t http1_parse_head(const char *p, size_t n, bool head_request, struct http1_head *out,
                         http1_field_fn field_fn, void *arg)
{
    struct http1_head h = {0};
    size_t pos = 0, len;
    const char *l;
    bool has_length = false, has_te = false, te_chunked = false, close = false, ka = false;

    if (!next_line(p, n, &pos, &l, &len))
        return 0;
    if (len == 0 || parse_status_line(l, len, &h) != 0)
        return -1; /* an empty first line, or not a status line */
    /* Validate every field (a malformed one refuses the head as soon as it is seen) before
     * reporting any: a field_fn never sees part of a head, nor part of a bad one. */
    size_t fields = pos;
    for (;;) {
        if (!next_line(p, n, &pos, &l, &len))
            return 0;
        if (len == 0)
            break;
        size_t c = 0;
        while (c < len && is_tchar((unsigned char)l[c]))
            c++;
        if (c == 0 || c == len || l[c] != ':')
            return -1; /* no name, no colon, or blanks before the colon (or obs-fold) */
        const char *v = l + c + 1, *ve = l + len;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vl = (size_t)(ve - v);
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
    size_t head_len = pos;
    /* Report: the lines are known good, so the first colon ends each name. */
    for (size_t fpos = fields; field_fn != NULL && fpos < head_len;) {
        next_line(p, n, &fpos, &l, &len);
        if (len == 0)
            break;
        const char *colon = memchr(l, ':', len), *v = colon + 1, *ve = l + len;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (field_fn(arg, l, (size_t)(colon - l), v, (size_t)(ve - v)) != 0)
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
    return (ssize_t)head_len;
}

enum {
    S_SIZE,        /* hex digits of the chunk size */
    S_EXT,         /* chunk extensions, up to the end of the size line */
    S_SIZE_LF,     /* the LF after the size line's CR */
    S_DATA,        /* chunk data */
    S_DATA_CR,     /* the CRLF after chunk data */
    S_DATA_LF,     /* its LF */
    S_TRAILER,     /* the start of a trailer line (or of the final empty line) */
    S_TRAILER_IN,  /* inside a trailer field line */
    S_TRAILER_END, /* the LF of the final empty line */
    S_DONE,
};

/* The size line ended: data follows, or (size 0) the trailer section. */
static void size_line_done(struct http1_chunked *d)
{
    d->state = d->left > 0 ? S_DATA : S_TRAILER;
    d->line = 0;
}

ssize_t http1_dechunk(struct http1_chunked *d, char *p, size_t n, size_t *out_len, bool *done)
{
    size_t in = 0, out = 0;
    *done = false;
    while (in < n && d->state != S_DONE) {
        char c = p[in];
        switch (d->state) {
        case S_SIZE: {
            int v = hex_digit(c);
            if (v >= 0) {
                if (++d->digits > CHUNK_SIZE_DIGITS_MAX)
                    return -1;
                d->left = d->left * 16 + (uint64_t)v;
            } else if (d->digits == 0) {
                return -1;
            } else if (c == ';' || c == ' ' || c == '\t') {
                d->state = S_EXT;
            } else if (c == '\r') {
                d->state = S_SIZE_LF;
            } else if (c == '\n') {
                size_line_done(d);
            } else {
                return -1;
            }
            in++;
            break;
        }
        case S_EXT:
            if (++d->line > CHUNK_LINE_MAX)
                return -1;
            if (c == '\n')
                size_line_done(d);
            in++;
            break;
        case S_SIZE_LF:
            if (c != '\n')
                return -1;
            size_line_done(d);
            in++;
            break;
        case S_DATA: {
            size_t k = n - in;
            if (k > d->left)
                k = (size_t)d->left;
            memmove(p + out, p + in, k);
            out += k;
            in += k;
            d->left -= k;
            if (d->left == 0)
                d->state = S_DATA_CR;
            break;
        }
        case S_DATA_CR:
            if (c == '\r')
                d->state = S_DATA_LF;
            else if (c == '\n')
                d->state = S_SIZE;
            else
                return -1;
            d->digits = 0;
            in++;
            break;
        case S_DATA_LF:
            if (c != '\n')
                return -1;
            d->state = S_SIZE;
            in++;
            break;
        case S_TRAILER:
            if (c == '\r')
                d->state = S_TRAILER_END;
            else if (c == '\n')
                d->state = S_DONE;
            else
                d->state = S_TRAILER_IN;
            if (++d->line > CHUNK_TRAILER_MAX)
                return -1;
            in++;
            break;
        case S_TRAILER_IN:
            if (++d->line > CHUNK_TRAILER_MAX)
                return -1;
            if (c == '\n')
                d->state = S_TRAILER;
            in++;
            break;
        case S_TRAILER_END:
            if (c != '\n')
                return -1;
            d->state = S_DONE;
            in++;
            break;
        default:
            return -1;
        }
    }
    *out_len = out;
    *done = d->state == S_DONE;
    return (ssize_t)in;
}
