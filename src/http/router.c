/*
 * router.c: pattern matching for routes. See router.h. A linear scan: arun has a few dozen
 * routes, and a scan over them costs less than the hashing a tree would need.
 */
#include "http/router.h"

#include <string.h>

void http_router_init(struct http_router *rt)
{
    rt->head = NULL;
    rt->tail = &rt->head;
}

void http_router_cleanup(struct http_router *rt)
{
    struct http_route *r = rt->head;
    while (r != NULL) {
        struct http_route *next = r->next;
        for (size_t i = 0; i < r->nsegs; i++)
            free(r->segs[i]);
        free(r->segs);
        free(r->seglen);
        free(r->method);
        free(r->pattern);
        free(r);
        r = next;
    }
    http_router_init(rt);
}

void http_router_add(struct http_router *rt, const char *method, const char *pattern,
                     enum http_access access, http_handler_fn fn, void *arg)
{
    ASSERT(pattern[0] == '/');
    struct http_route *r = xcalloc(1, sizeof(*r));
    r->method = xstrdup(method);
    r->pattern = xstrdup(pattern);
    r->access = access;
    r->fn = fn;
    r->arg = arg;
    const char *p = pattern + 1;
    while (*p != '\0' || r->nsegs == 0) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        r->segs = xrealloc(r->segs, (r->nsegs + 1) * sizeof(char *));
        r->seglen = xrealloc(r->seglen, (r->nsegs + 1) * sizeof(size_t));
        r->seglen[r->nsegs] = n;
        r->segs[r->nsegs++] = xstrndup(p, n);
        if (n > 0 && p[0] == '{')
            r->nparams++;
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    ASSERT(r->nparams <= HTTP_MAX_PARAMS);
    *rt->tail = r;
    rt->tail = &r->next;
}

/* Matches one route; captures into r on success. */
static int match(const struct http_route *route, struct http_request *r, const char *path,
                 size_t len)
{
    const char *p = path + 1, *end = path + len;
    size_t nparams = 0;
    for (size_t i = 0; i < route->nsegs; i++) {
        if (p > end)
            return 0;
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *seg_end = slash ? slash : end;
        size_t n = (size_t)(seg_end - p);
        const char *want = route->segs[i];
        if (want[0] == '{') {
            if (n == 0)
                return 0;
            r->params[nparams++] = h2o_strdup(&r->req->pool, p, n).base;
        } else if (route->seglen[i] != n || memcmp(want, p, n) != 0) {
            return 0;
        }
        if (i + 1 == route->nsegs)
            return slash == NULL;
        if (slash == NULL)
            return 0;
        p = slash + 1;
    }
    return 0;
}

enum http_router_result http_router_match(const struct http_router *rt, struct http_request *r,
                                          h2o_iovec_t method, h2o_iovec_t path)
{
    int path_matched = 0;
    if (path.len == 0 || path.base[0] != '/')
        return HTTP_ROUTER_NOT_FOUND;
    for (const struct http_route *route = rt->head; route != NULL; route = route->next) {
        if (!match(route, r, path.base, path.len))
            continue;
        path_matched = 1;
        if (h2o_memis(method.base, method.len, route->method, strlen(route->method)) ||
            (h2o_memis(method.base, method.len, H2O_STRLIT("HEAD")) &&
             strcmp(route->method, "GET") == 0)) {
            r->route = route;
            r->nparams = route->nparams;
            return HTTP_ROUTER_FOUND;
        }
    }
    return path_matched ? HTTP_ROUTER_BAD_METHOD : HTTP_ROUTER_NOT_FOUND;
}
