/*
 * response.c: how handlers answer and read requests: JSON and byte responses, the OpenAI error
 * shape, request bodies as JSON, query parameters and headers. See server.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "core/http_status.h"
#include "http/server_int.h"

const char *http_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

void http_add_header(struct http_request *r, const char *name, const char *value)
{
    h2o_req_t *req = r->req;
    /* h2o keeps pointers to both: they must live in the request's pool. */
    h2o_iovec_t n = h2o_strdup(&req->pool, name, SIZE_MAX);
    h2o_iovec_t v = h2o_strdup(&req->pool, value, SIZE_MAX);
    h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 0, NULL, v.base, v.len);
}

void http_send_bytes(struct http_request *r, int status, const char *content_type, const char *body,
                     size_t len)
{
    h2o_req_t *req = r->req;
    req->res.status = status;
    req->res.reason = http_status_reason(status);
    req->res.content_length = len;
    h2o_iovec_t ct = h2o_strdup(&req->pool, content_type, SIZE_MAX); /* may be borrowed */
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ct.base, ct.len);
    http_stamp_response(r);
    h2o_send_inline(req, body, len);
}

/* Skips spaces and tabs (optional whitespace in header lists). */
static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* The q-value of one list member's parameters ("q=0.5"), 1.0 when there is none. */
static double member_q(const char *params, const char *end)
{
    const char *p = params;
    while (p < end) {
        p = skip_ows(p);
        if (p + 2 <= end && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
            return strtod(p + 2, NULL);
        const char *semi = memchr(p, ';', (size_t)(end - p));
        if (semi == NULL)
            break;
        p = semi + 1;
    }
    return 1.0;
}

double http_coding_q(const char *accept, const char *coding)
{
    double star = -1, own = -1;
    size_t clen = strlen(coding);
    const char *p = accept;
    while (*p != '\0') {
        p = skip_ows(p);
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *name_end = p;
        while (name_end < end && *name_end != ';' && *name_end != ' ' && *name_end != '\t')
            name_end++;
        const char *semi = memchr(p, ';', (size_t)(end - p));
        double q = semi ? member_q(semi + 1, end) : 1.0;
        size_t n = (size_t)(name_end - p);
        if (n == clen && strncasecmp(p, coding, n) == 0)
            own = q;
        else if (n == 1 && p[0] == '*')
            star = q;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return own >= 0 ? own : star;
}

/* s[0..len) gzip'd at level 1 (a list of JSON shrinks 5-20x; level 1 costs about a
 * millisecond a megabyte), or NULL when it does not get smaller. Caller frees. */
static unsigned char *gzip_of(const char *s, size_t len, size_t *out_len)
{
    z_stream z = {0};
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16 /* gzip wrapper */, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)len);
    unsigned char *out = xmalloc(cap);
    z.next_in = (Bytef *)s;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END || *out_len >= len) {
        free(out);
        return NULL;
    }
    return out;
}

void http_send_json(struct http_request *r, int status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    ASSERT(s != NULL);
    size_t len = strlen(s), zlen = 0;
    unsigned char *z = NULL;
    if (len >= HTTP_JSON_GZIP_MIN) {
        const char *accept = http_header(r, "accept-encoding");
        if (accept != NULL && http_coding_q(accept, "gzip") > 0)
            z = gzip_of(s, len, &zlen);
        http_add_header(r, "vary", "accept-encoding");
    }
    if (z != NULL) {
        http_add_header(r, "content-encoding", "gzip");
        http_send_bytes(r, status, "application/json", (const char *)z, zlen);
    } else {
        http_send_bytes(r, status, "application/json", s, len);
    }
    free(z);
    free(s);
}

/* Replaces each byte that does not start a well-formed UTF-8 sequence with '?', so that a
 * message cut by a precision (%.100s) or a buffer's end, or quoting bytes a client sent, is still
 * sent instead of being lost whole. Overlong forms and surrogates are left to jansson's check. */
static void make_utf8(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p != '\0';) {
        size_t n = *p < 0x80             ? 1
                   : (*p & 0xE0) == 0xC0 ? 2
                   : (*p & 0xF0) == 0xE0 ? 3
                   : (*p & 0xF8) == 0xF0 ? 4
                                         : 0;
        size_t k = 1;
        while (k < n && (p[k] & 0xC0) == 0x80)
            k++;
        if (n == 0 || k < n) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

json_t *http_error_json(int status, const char *code, const char *param, const char *msg)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", msg);
    make_utf8(buf);
    json_t *err = json_object();
    json_object_set_new(err, "message", json_string(buf));
    json_object_set_new(err, "type", json_string(http_error_type(status)));
    json_object_set_new(err, "param", param ? json_string(param) : json_null());
    json_object_set_new(err, "code", code ? json_string(code) : json_null());
    if (json_object_get(err, "message") == NULL) /* msg held bytes that are not UTF-8 */
        json_object_set_new(err, "message", json_string("(message not valid UTF-8)"));
    return json_pack("{s:o}", "error", err);
}

void http_send_error(struct http_request *r, int status, const char *code, const char *param,
                     const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_send_json(r, status, http_error_json(status, code, param, msg));
}

/* A member of the relayed error object when it is a string, else NULL. */
static const char *str_member(json_t *obj, const char *name)
{
    return json_string_value(json_object_get(obj, name));
}

json_t *http_error_relayed(int status, const char *body, size_t len, const char *who, bool say_who)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *err = json_object_get(root, "error");
    const char *msg = json_is_string(err) ? json_string_value(err) : str_member(err, "message");
    char text[1024];
    if (msg == NULL) /* not an error object we can read: its bytes are the message */
        snprintf(text, sizeof(text), "%s answered HTTP %d: %.*s", who, status,
                 (int)(len < HTTP_RELAYED_BODY_MAX ? len : HTTP_RELAYED_BODY_MAX), body);
    else if (say_who)
        snprintf(text, sizeof(text), "%s answered HTTP %d: %s", who, status, msg);
    else
        snprintf(text, sizeof(text), "%s", msg);
    const char *code = str_member(err, "code");
    json_t *out =
        http_error_json(status, code ? code : "upstream_error", str_member(err, "param"), text);
    const char *type = str_member(err, "type");
    if (type != NULL)
        json_object_set_new(json_object_get(out, "error"), "type", json_string(type));
    json_decref(root);
    return out;
}

int http_read_json(struct http_request *r, json_t **out)
{
    h2o_iovec_t body = r->req->entity;
    json_error_t e;
    if (body.base == NULL || body.len == 0) {
        http_send_error(r, 400, "invalid_json", NULL,
                        "the request body is empty; expected a "
                        "JSON object");
        return -EINVAL;
    }
    /* A raw NUL is never valid JSON (inside a string it must be \u0000), but jansson 2.14 takes
     * one right after a number as the end of the text: {"n":1<NUL>} would read as {"n":1}. */
    const char *nul = memchr(body.base, '\0', body.len);
    if (nul != NULL) {
        http_send_error(r, 400, "invalid_json", NULL,
                        "the request body is not valid JSON: a NUL byte at offset %zu",
                        (size_t)(nul - body.base));
        return -EINVAL;
    }
    json_t *j = json_loadb(body.base, body.len, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL) {
        http_send_error(r, 400, "invalid_json", NULL,
                        "the request body is not valid JSON: %s (line %d, column %d)", e.text,
                        e.line, e.column);
        return -EINVAL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        http_send_error(r, 400, "invalid_json", NULL, "the request body must be a JSON object");
        return -EINVAL;
    }
    *out = j;
    return 0;
}

const char *http_query(struct http_request *r, const char *name)
{
    h2o_req_t *req = r->req;
    if (req->query_at == SIZE_MAX)
        return NULL;
    size_t nlen = strlen(name);
    const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        if ((size_t)(ke - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : pe;
            h2o_iovec_t d = h2o_strdup(&req->pool, v, (size_t)(pe - v));
            /* Decode %XX and '+' in place; the decoded string is never longer. */
            char *w = d.base;
            for (size_t i = 0; i < d.len; i++) {
                int hi, lo;
                if (d.base[i] == '%' && i + 2 < d.len && (hi = hex_digit(d.base[i + 1])) >= 0 &&
                    (lo = hex_digit(d.base[i + 2])) >= 0) {
                    *w++ = (char)(hi * 16 + lo);
                    i += 2;
                } else {
                    *w++ = d.base[i] == '+' ? ' ' : d.base[i];
                }
            }
            *w = '\0';
            return d.base;
        }
        p = pe + 1;
    }
    return NULL;
}

const char *http_header(struct http_request *r, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&r->req->headers, name, strlen(name), -1);
    if (i < 0)
        return NULL;
    h2o_iovec_t v = r->req->headers.entries[i].value;
    return h2o_strdup(&r->req->pool, v.base, v.len).base;
}
