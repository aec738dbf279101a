/*
 * assets.h: static files embedded in the binary (the console, console/): served at their paths
 * with their content type, an ETag, cache headers, and the best encoding the client accepts.
 * The table is generated at build time by console/embed.mjs (into the build dir as
 * console_assets.c; console/placeholder.c without node), never written by hand.
 */
#ifndef ARUN_HTTP_ASSETS_H
#define ARUN_HTTP_ASSETS_H

#include <stdbool.h>
#include <stddef.h>

#include "http/server.h"

/* One file. Every pointer is static data (the generated table). */
struct http_asset {
    const char *path;         /* "/index.html", "/assets/index-3f2a1b.js" */
    const char *content_type; /* "text/javascript; charset=utf-8" */
    const char *etag;         /* quoted strong validator: "\"9f86d081884c7d65\"" */
    bool immutable;           /* a content-hashed name: cached for a year, never revalidated */
    const unsigned char *identity;
    size_t identity_len;
    const unsigned char *gzip; /* NULL when gzip is not smaller than identity */
    size_t gzip_len;
    const unsigned char *br; /* NULL when brotli is not smaller than identity */
    size_t br_len;
};

/* The console's table, from the build dir's console_assets.c (linked into arun only). */
extern const struct http_asset console_assets[];
extern const size_t console_assets_count;

#define HTTP_ASSETS_CSP "default-src 'self'" /* the page loads nothing from elsewhere */
#define HTTP_ASSETS_IMMUTABLE "public, max-age=31536000, immutable"
#define HTTP_ASSETS_REVALIDATE "no-cache" /* index.html: its asset names change with a build */

/* Registers GET and HEAD for each of the n assets of table (static: not copied, must outlive
 * srv), and for "/" the asset "/index.html" when there is one. Routes are HTTP_PUBLIC: the page
 * itself holds nothing secret, and each API it calls checks its own access. Each answer has
 * Content-Type, ETag, Cache-Control (HTTP_ASSETS_IMMUTABLE for immutable assets, else
 * HTTP_ASSETS_REVALIDATE), Vary: Accept-Encoding, the Content-Security-Policy HTTP_ASSETS_CSP
 * and X-Content-Type-Options: nosniff; a request whose If-None-Match names the ETag (or is "*")
 * gets 304 without a body; otherwise the body goes as br, else gzip, else identity, the first
 * that Accept-Encoding allows (q=0 refuses one) and the table has, with Content-Encoding.
 * Paths not in the table get the router's 404. */
void http_assets_register(struct http_server *srv, const struct http_asset *table, size_t n);

/* The encoding of an asset an Accept-Encoding header value picks: "br", "gzip" or NULL
 * (identity). accept may be NULL (no header: identity). Exposed for the unit tests. */
const char *http_assets_pick_encoding(const struct http_asset *a, const char *accept);

/* Whether an If-None-Match header value (NULL when absent) matches etag: "*", or one of its
 * comma-separated entity tags, weak (W/) or not, equals etag. */
bool http_assets_etag_matches(const char *if_none_match, const char *etag);

#endif
