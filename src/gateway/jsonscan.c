/*
 * jsonscan.c: one pass over a JSON text with an explicit container stack; no allocation. See
 * jsonscan.h. It also gives a top-level array's elements and decodes a string it checked (the
 * runs read an engine's text deltas this way, runs/translate.c). tests/unit/test_jsonscan.c holds it to jansson: on every text of its corpus and
 * thousands of mutations of them, "0" here must mean jansson parses it too, to the same members.
 */
#include "gateway/jsonscan.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "core/common.h"

#define NUMBER_MAX_LEN 24     /* longer numbers may be "too big" to jansson: full parser */
#define INTEGER_MAX_DIGITS 18 /* fits in json_int_t (int64) for sure */

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* One UTF-8 sequence at p (its first byte >= 0x80): returns the byte after it, or NULL when
 * it is malformed, overlong, a surrogate or past U+10FFFF. */
static const char *utf8_seq(const char *p, const char *e)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t need;
    uint32_t cp;
    if (u[0] >= 0xc2 && u[0] <= 0xdf) {
        need = 1;
        cp = u[0] & 0x1f;
    } else if (u[0] >= 0xe0 && u[0] <= 0xef) {
        need = 2;
        cp = u[0] & 0x0f;
    } else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
        need = 3;
        cp = u[0] & 0x07;
    } else {
        return NULL;
    }
    if ((size_t)(e - p) <= need)
        return NULL;
    for (size_t i = 1; i <= need; i++) {
        if ((u[i] & 0xc0) != 0x80)
            return NULL;
        cp = (cp << 6) | (u[i] & 0x3f);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return NULL;
    return p + need + 1;
}

static int hex4(const char *p, const char *e)
{
    if (e - p < 4)
        return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A string at p (on its opening quote): returns the byte after the closing quote, or NULL.
 * *escaped says whether it holds any escape. */
static const char *scan_string(const char *p, const char *e, bool *escaped)
{
    *escaped = false;
    p++;
    while (p < e) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c >= 0x80) {
            p = utf8_seq(p, e);
            if (p == NULL)
                return NULL;
            continue;
        }
        if (c != '\\') {
            p++;
            continue;
        }
        *escaped = true;
        if (++p == e)
            return NULL;
        if (strchr("\"\\/bfnrt", *p) != NULL && *p != '\0') {
            p++;
            continue;
        }
        if (*p != 'u')
            return NULL;
        int v = hex4(p + 1, e);
        if (v <= 0)
            return NULL; /* bad hex, or \u0000, which jansson refuses */
        p += 5;
        if (v >= 0xdc00 && v <= 0xdfff)
            return NULL; /* a lone low surrogate */
        if (v >= 0xd800 && v <= 0xdbff) {
            if (e - p < 6 || p[0] != '\\' || p[1] != 'u')
                return NULL;
            int lo = hex4(p + 2, e);
            if (lo < 0xdc00 || lo > 0xdfff)
                return NULL;
            p += 6;
        }
    }
    return NULL;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A number at p: returns the byte after it, or NULL (also for numbers jansson might refuse). */
static const char *scan_number(const char *p, const char *e)
{
    const char *start = p;
    bool integer = true;
    if (*p == '-')
        p++;
    if (p == e || !is_digit(*p))
        return NULL;
    if (*p == '0')
        p++;
    else
        while (p < e && is_digit(*p))
            p++;
    size_t int_digits = (size_t)(p - start) - (*start == '-');
    if (p < e && *p == '.') {
        integer = false;
        if (++p == e || !is_digit(*p))
            return NULL;
        while (p < e && is_digit(*p))
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        integer = false;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        const char *digits = p;
        while (p < e && is_digit(*p))
            p++;
        if (p == digits || p - digits > 2)
            return NULL; /* no exponent, or one that may overflow a double */
    }
    if ((integer && int_digits > INTEGER_MAX_DIGITS) || p - start > NUMBER_MAX_LEN)
        return NULL;
    return p;
}

static const char *scan_literal(const char *p, const char *e)
{
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(e - p) >= n && memcmp(p, words[i], n) == 0)
            return p + n;
    }
    return NULL;
}

enum state {
    VALUE,        /* a value must come */
    AFTER,        /* a value ended: ',' or the container's end, or the text's end */
    OBJECT_FIRST, /* just after '{': a name or '}' */
    NAME,         /* just after ',' in an object: a name */
    ARRAY_FIRST,  /* just after '[': a value or ']' */
};

/* The scan of one top-level container, open ('{' or '['); for an object fills in the members
 * asked for (m, nm), for an array the first nel elements (el) and their count. */
static int scan(const char *s, size_t n, char open, struct jsonscan_member *m, size_t nm,
                struct jsonscan_value *el, size_t nel, size_t *count)
{
    const char *p = s, *e = s + n;
    uint64_t objects = 0; /* bit d set: the container at depth d+1 is an object */
    int depth = 0;
    enum state st = VALUE;
    /* The names seen so far in each open object (quotes included), to refuse duplicates as
     * jansson's JSON_REJECT_DUPLICATES does, at every depth. */
    const char *names[JSONSCAN_MAX_OBJECT_DEPTH + 1][JSONSCAN_MAX_MEMBERS];
    size_t name_lens[JSONSCAN_MAX_OBJECT_DEPTH + 1][JSONSCAN_MAX_MEMBERS];
    size_t nnames[JSONSCAN_MAX_OBJECT_DEPTH + 1];
    const char *member_value = NULL; /* where the current top-level member's value starts */
    bool escaped;

    for (size_t i = 0; i < nm; i++)
        m[i].value = NULL;
    size_t elements = 0;
    p = skip_ws(p, e);
    if (p == e || *p != open)
        return -EINVAL;
    nnames[1] = 0;
    for (;;) {
        p = skip_ws(p, e);
        if (st == AFTER && depth == 0) {
            if (count != NULL)
                *count = elements;
            return p == e ? 0 : -EINVAL;
        }
        if (p == e)
            return -EINVAL;
        switch (st) {
        case VALUE:
            if (depth == 1)
                member_value = p;
            if (*p == '{' || *p == '[') {
                if (depth == JSONSCAN_MAX_DEPTH)
                    return -EINVAL;
                if (*p == '{')
                    objects |= UINT64_C(1) << depth;
                else
                    objects &= ~(UINT64_C(1) << depth);
                depth++;
                if (*p == '{' && depth > JSONSCAN_MAX_OBJECT_DEPTH)
                    return -EINVAL;
                if (*p == '{')
                    nnames[depth] = 0;
                st = *p == '{' ? OBJECT_FIRST : ARRAY_FIRST;
                p++;
                continue;
            }
            if (*p == '"')
                p = scan_string(p, e, &escaped);
            else if (*p == '-' || is_digit(*p))
                p = scan_number(p, e);
            else
                p = scan_literal(p, e);
            if (p == NULL)
                return -EINVAL;
            st = AFTER;
            break;
        case OBJECT_FIRST:
        case NAME: {
            if (st == OBJECT_FIRST && *p == '}') {
                depth--;
                p++;
                st = AFTER;
                break;
            }
            if (*p != '"')
                return -EINVAL;
            const char *name = p;
            p = scan_string(p, e, &escaped);
            if (p == NULL)
                return -EINVAL;
            /* Names are compared as written: an escape could spell a duplicate differently. */
            if (escaped || nnames[depth] == JSONSCAN_MAX_MEMBERS)
                return -EINVAL;
            size_t len = (size_t)(p - name);
            for (size_t i = 0; i < nnames[depth]; i++) {
                if (name_lens[depth][i] == len && memcmp(names[depth][i], name, len) == 0)
                    return -EINVAL; /* a duplicate: jansson words the error */
            }
            names[depth][nnames[depth]] = name;
            name_lens[depth][nnames[depth]++] = len;
            p = skip_ws(p, e);
            if (p == e || *p != ':')
                return -EINVAL;
            p++;
            st = VALUE;
            continue;
        }
        case ARRAY_FIRST:
            if (*p == ']') {
                depth--;
                p++;
                st = AFTER;
                break;
            }
            st = VALUE;
            continue;
        case AFTER: {
            bool in_object = (objects >> (depth - 1)) & 1;
            if (*p == ',') {
                p++;
                st = in_object ? NAME : VALUE;
                continue;
            }
            if (*p != (in_object ? '}' : ']'))
                return -EINVAL;
            depth--;
            p++;
            break; /* still AFTER: the container was a value */
        }
        }
        /* A value just ended (st == AFTER). One directly in the top-level array is an element. */
        if (depth == 1 && member_value != NULL && open == '[') {
            if (elements < nel) {
                el[elements].value = member_value;
                el[elements].len = (size_t)(p - member_value);
            }
            elements++;
            member_value = NULL;
        }
        /* One directly in the top-level object is a member. */
        if (depth == 1 && member_value != NULL) {
            const char *name = names[1][nnames[1] - 1];
            size_t len = name_lens[1][nnames[1] - 1];
            for (size_t i = 0; i < nm; i++) {
                if (strlen(m[i].name) == len - 2 && memcmp(m[i].name, name + 1, len - 2) == 0) {
                    m[i].value = member_value;
                    m[i].len = (size_t)(p - member_value);
                }
            }
            member_value = NULL;
        }
    }
}

int jsonscan_object(const char *s, size_t n, struct jsonscan_member *m, size_t nm)
{
    return scan(s, n, '{', m, nm, NULL, 0, NULL);
}

int jsonscan_array(const char *s, size_t n, struct jsonscan_value *el, size_t nel, size_t *count)
{
    return scan(s, n, '[', NULL, 0, el, nel, count);
}

/* Appends code point cp to out as UTF-8. */
static int put_utf8(struct buf *out, uint32_t cp)
{
    char u[4];
    size_t k;
    if (cp < 0x80) {
        u[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    return buf_append(out, u, k);
}

int jsonscan_string(const char *p, size_t n, struct buf *out)
{
    ASSERT(n >= 2 && p[0] == '"' && p[n - 1] == '"');
    const char *e = p + n - 1;
    int rc = 0;
    p++;
    while (p < e && rc == 0) {
        const char *run = p;
        while (p < e && *p != '\\')
            p++;
        rc = buf_append(out, run, (size_t)(p - run)); /* checked by the scan: valid UTF-8 */
        if (p == e || rc != 0)
            break;
        char c = p[1];
        p += 2;
        switch (c) {
        case 'b':
            rc = buf_append(out, "\b", 1);
            break;
        case 'f':
            rc = buf_append(out, "\f", 1);
            break;
        case 'n':
            rc = buf_append(out, "\n", 1);
            break;
        case 'r':
            rc = buf_append(out, "\r", 1);
            break;
        case 't':
            rc = buf_append(out, "\t", 1);
            break;
        case 'u': {
            uint32_t cp = (uint32_t)hex4(p, e);
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) { /* the scan saw its low half follow */
                uint32_t lo = (uint32_t)hex4(p + 2, e);
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            rc = put_utf8(out, cp);
            break;
        }
        default: /* " \ / */
            rc = buf_append(out, &c, 1);
            break;
        }
    }
    return rc;
}
