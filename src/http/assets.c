/*
 * assets.c: serves the static files embedded in the binary (the console). See assets.h.
 *
 * Each file is in the table three times, identity, gzip and brotli, compressed once at build
 * time, so a request costs a table lookup and a write of static bytes: nothing is compressed,
 * copied or read from disk while serving. The bodies are static, so they go to h2o by reference
 * (they outlive every write). Content-hashed names are cached by browsers for a year; index.html
 * is revalidated on each load (a 304 while the build is the same), so a new binary's page is
 * seen at the next load.
 */
#include "http/assets.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/http_status.h"
#include "http/server_int.h"

const char *http_assets_pick_encoding(const struct http_asset *a, const char *accept)
{
    if (accept == NULL)
        return NULL;
    if (a->br != NULL && http_coding_q(accept, "br") > 0)
        return "br";
    if (a->gzip != NULL && http_coding_q(accept, "gzip") > 0)
        return "gzip";
    return NULL;
}

/* Skips spaces and tabs (optional whitespace in header lists). */
static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

bool http_assets_etag_matches(const char *if_none_match, const char *etag)
{
    if (if_none_match == NULL)
        return false;
    size_t elen = strlen(etag);
    const char *p = if_none_match;
    while (*p != '\0') {
        p = skip_ows(p);
        if (p[0] == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/') /* weak comparison, as If-None-Match asks (RFC 9110) */
            p += 2;
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - p) == elen && memcmp(p, etag, elen) == 0)
            return true;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return false;
}

static void add_static_header(h2o_req_t *req, const h2o_token_t *token, const char *value)
{
    h2o_add_header(&req->pool, &req->res.headers, token, NULL, value, strlen(value));
}

static void add_static_header_by_str(h2o_req_t *req, const char *name, const char *value)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, value,
                          strlen(value));
}

static void serve_asset(struct http_request *r, void *arg)
{
    static h2o_generator_t generator = {NULL, NULL}; /* static bytes: nothing to pull or stop */
    const struct http_asset *a = arg;
    h2o_req_t *req = r->req;
    bool head = h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"));

    /* Headers a 304 must repeat (RFC 9110 15.4.5) and every answer carries. */
    add_static_header(req, H2O_TOKEN_ETAG, a->etag);
    add_static_header(req, H2O_TOKEN_CACHE_CONTROL,
                      a->immutable ? HTTP_ASSETS_IMMUTABLE : HTTP_ASSETS_REVALIDATE);
    add_static_header(req, H2O_TOKEN_VARY, "Accept-Encoding");
    add_static_header_by_str(req, "content-security-policy", HTTP_ASSETS_CSP);
    add_static_header_by_str(req, "x-content-type-options", "nosniff");
    http_stamp_response(r);

    h2o_iovec_t body = h2o_iovec_init(NULL, 0);
    if (http_assets_etag_matches(http_header(r, "if-none-match"), a->etag)) {
        req->res.status = 304;
        req->res.content_length = 0;
    } else {
        const char *enc = http_assets_pick_encoding(a, http_header(r, "accept-encoding"));
        if (enc == NULL)
            body = h2o_iovec_init(a->identity, a->identity_len);
        else if (strcmp(enc, "br") == 0)
            body = h2o_iovec_init(a->br, a->br_len);
        else
            body = h2o_iovec_init(a->gzip, a->gzip_len);
        if (enc != NULL)
            add_static_header(req, H2O_TOKEN_CONTENT_ENCODING, enc);
        add_static_header(req, H2O_TOKEN_CONTENT_TYPE, a->content_type);
        req->res.status = 200;
        req->res.content_length = body.len;
    }
    req->res.reason = http_status_reason(req->res.status);
    h2o_start_response(req, &generator);
    if (head || body.len == 0)
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

void http_assets_register(struct http_server *srv, const struct http_asset *table, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct http_asset *a = &table[i];
        http_route(srv, "GET", a->path, HTTP_PUBLIC, serve_asset, (void *)a);
        http_route(srv, "HEAD", a->path, HTTP_PUBLIC, serve_asset, (void *)a);
        if (strcmp(a->path, "/index.html") == 0) {
            http_route(srv, "GET", "/", HTTP_PUBLIC, serve_asset, (void *)a);
            http_route(srv, "HEAD", "/", HTTP_PUBLIC, serve_asset, (void *)a);
        }
    }
}
