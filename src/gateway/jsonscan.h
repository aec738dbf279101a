/*
 * jsonscan.h: checks a JSON text without building it, and finds members of its top-level
 * object (or elements of its top-level array). For the gateway's hot path: a request is routed by its "model" and "stream" without
 * allocating a tree (jansson's parse was the largest user-space cost of a relayed request).
 *
 * It is a fast path, not a parser: whenever it is not sure jansson would read the text the same
 * way (invalid JSON, escapes in names, \u0000, numbers jansson may refuse as too big, deep
 * nesting, objects with many members) it says "no", and the caller parses with jansson, which also
 * words any error.
 */
#ifndef ARUN_GATEWAY_JSONSCAN_H
#define ARUN_GATEWAY_JSONSCAN_H

#include <stddef.h>

#include "core/common.h"

#define JSONSCAN_MAX_DEPTH 64       /* deeper texts go to the full parser */
#define JSONSCAN_MAX_OBJECT_DEPTH 8 /* objects nested deeper: the full parser */
#define JSONSCAN_MAX_MEMBERS 32     /* members of one object; more: the full parser */

struct jsonscan_member {
    const char *name;  /* in: the member's name, plain ASCII */
    const char *value; /* out: the value's first byte in the text, NULL when absent */
    size_t len;        /* out: the value's length (a string's includes its quotes) */
};

/* Checks that p[0..n) is one JSON object (RFC 8259, UTF-8) that jansson would parse with
 * JSON_REJECT_DUPLICATES to the same values, and fills in the members asked for. Returns 0, or
 * -EINVAL when the text is invalid or outside the fast path: then parse it with jansson, which
 * also words the error. */
int jsonscan_object(const char *p, size_t n, struct jsonscan_member *m, size_t nm) MUST_USE;

struct jsonscan_value {
    const char *value; /* the value's first byte in the text */
    size_t len;        /* its length (a string's includes its quotes) */
};

/* The same check for one JSON array: gives its element count and its first nel elements.
 * Returns 0 or -EINVAL as jsonscan_object. */
int jsonscan_array(const char *p, size_t n, struct jsonscan_value *el, size_t nel,
                   size_t *count) MUST_USE;

/* Appends the text of the JSON string p[0..n) (quotes included) to out, escapes decoded, as
 * jansson would read it. p must be a string value that jsonscan_object or jsonscan_array
 * accepted (so it is valid, without \u0000 or a lone surrogate). Returns 0 or out's error
 * (-ENOBUFS past its cap). */
struct buf;
int jsonscan_string(const char *p, size_t n, struct buf *out) MUST_USE;

#endif
