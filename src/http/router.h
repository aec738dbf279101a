/*
 * router.h: maps (method, path) to a handler. Patterns are literal segments and "{param}"
 * segments; the first registered match wins. Used by server.c only; handlers register through
 * http_route() in server.h.
 */
#ifndef ARUN_HTTP_ROUTER_H
#define ARUN_HTTP_ROUTER_H

#include "http/server.h"

struct http_route {
    char *method;   /* "GET", "POST", … */
    char *pattern;  /* as registered; also the metrics label */
    char **segs;    /* pattern split on '/'; "{x}" segments capture */
    size_t *seglen; /* strlen of each of segs */
    size_t nsegs, nparams;
    enum http_access access;
    http_handler_fn fn;
    void *arg;
    struct http_route *next;
};

struct http_router {
    struct http_route *head;
    struct http_route **tail;
};

enum http_router_result {
    HTTP_ROUTER_FOUND,
    HTTP_ROUTER_NOT_FOUND,  /* no pattern matches the path */
    HTTP_ROUTER_BAD_METHOD, /* a pattern matches, but not with this method (405) */
};

void http_router_init(struct http_router *rt);
void http_router_cleanup(struct http_router *rt);
void http_router_add(struct http_router *rt, const char *method, const char *pattern,
                     enum http_access access, http_handler_fn fn, void *arg);
/* Matches path (no query string) and fills r->route, r->params, r->nparams (strings from the
 * request's pool). */
enum http_router_result http_router_match(const struct http_router *rt, struct http_request *r,
                                          h2o_iovec_t method, h2o_iovec_t path);

#endif
