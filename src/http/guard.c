/*
 * guard.c: the checks of request targets and request framing that run before routing. See
 * guard.h for the rules and why each exists.
 */
#include "http/guard.h"

#include <errno.h>
#include <stdbool.h>
#include <strings.h>

#include "core/common.h"
#include "http/picohttp.h"

/* The byte a "%XX" at p (with at least 3 bytes left) encodes, or -1 when it is no escape. */
static int escaped(const char *p, size_t left)
{
    if (left < 3 || p[0] != '%')
        return -1;
    int hi = hex_digit(p[1]), lo = hex_digit(p[2]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Whether seg[0..n) is "." or ".." once %2e is decoded. */
static bool dot_segment(const char *seg, size_t n)
{
    size_t dots = 0;
    for (size_t i = 0; i < n;) {
        if (seg[i] == '.') {
            i++;
        } else if (escaped(seg + i, n - i) == '.') {
            i += 3;
        } else {
            return false;
        }
        if (++dots > 2)
            return false;
    }
    return dots > 0;
}

int http_guard_target(const char *target, size_t len, const char **why)
{
    if (len == 0 || target[0] != '/') {
        *why = "the request target must be a path (/v1/…); absolute-form, authority-form and "
               "\"*\" targets are not served";
        return -EINVAL;
    }
    size_t path_end = 0;
    while (path_end < len && target[path_end] != '?')
        path_end++;
    for (size_t i = 0; i < len; i++) {
        int c = escaped(target + i, len - i);
        if (c >= 0 && (c < 0x20 || c == 0x7f)) {
            *why = "the request target holds an encoded control character (%00-%1F, %7F)";
            return -EINVAL;
        }
        if (i >= path_end)
            continue;
        if (target[i] == '\\' || c == '/' || c == '\\') {
            *why = "the request path holds an encoded '/' or a '\\' (%2F, %5C): "
                   "path segments are separated by '/' alone";
            return -EINVAL;
        }
    }
    for (size_t s = 1; s <= path_end;) {
        size_t e = s;
        while (e < path_end && target[e] != '/')
            e++;
        if (dot_segment(target + s, e - s)) {
            *why = "the request path holds a \".\" or \"..\" segment (also as %2E)";
            return -EINVAL;
        }
        s = e + 1;
    }
    return 0;
}

/* Whether a field name is name (ASCII, any case). */
static bool field_is(const struct phr_header *h, const char *name, size_t n)
{
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

int http_guard_framing(const char *head, size_t len, const char **why)
{
    const char *method, *path;
    size_t method_len, path_len, nfields = 100; /* h2o's H2O_MAX_HEADERS */
    int minor;
    struct phr_header fields[100];
    if (phr_parse_request(head, len, &method, &method_len, &path, &path_len, &minor, fields,
                          &nfields, 0) < 0) {
        *why = "the request head does not parse";
        return -EINVAL;
    }
    size_t cl = 0, te = 0;
    for (size_t i = 0; i < nfields; i++) {
        cl += field_is(&fields[i], "content-length", 14);
        te += field_is(&fields[i], "transfer-encoding", 17);
    }
    if (cl > 0 && te > 0) {
        *why = "the request has both Content-Length and Transfer-Encoding; send one";
        return -EINVAL;
    }
    if (cl > 1 || te > 1) {
        *why = cl > 1 ? "the request has more than one Content-Length field"
                      : "the request has more than one Transfer-Encoding field";
        return -EINVAL;
    }
    return 0;
}
