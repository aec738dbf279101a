/*
 * validate.c: the checks of validate.h: which members of a chat-completions, completions or
 * embeddings body the OpenAI API types, with which types and ranges, and the 400 that names the
 * first one that is wrong, worded as OpenAI words it ("Invalid type for 'temperature': expected a
 * number, but got a string instead.") with its path in `param` ("messages[2].role"). It owns no
 * state and allocates nothing (one rare exception: a number longer than NUMBER_TEXT_MAX).
 *
 * DESIGN
 * The gateway relays at the speed of a plain proxy and never builds a JSON tree on its fast path
 * (jsonscan.h), so this is a walk over the body's bytes, not over jansson values. The syntax was
 * checked before (jsonscan or jansson), so the walk trusts it: a string ends at the first quote
 * not escaped (memchr), a container at its matching bracket, and an unknown member's value is
 * skipped without a look inside. Every read is still bounded by the text's end, so bytes that are
 * not JSON get an answer ("invalid_json") and never a read past them (fuzz_validate holds it to
 * that). Each member of the body is looked at once; a message's content is checked after the
 * walk of its message, since its role (which says which content parts are allowed) may come
 * after it. Names and enum values are compared decoded (an escape spells "user" as "\u0075ser"
 * for the engine too); they are short ASCII or they match nothing.
 *
 * What is checked is the table `fields` below (docs/http-api.md lists it for users); every
 * optional member may be null (OpenAI's "nullable": the engine's default). Members the table does
 * not name pass to the engine unchanged: engines have their own extensions (min_p, top_k, …).
 */
#include "gateway/validate.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One JSON value of the text: [p, end). */
struct val {
    const char *p, *end;
    char t; /* '{' object, '[' array, '"' string, '0' number, 'b' boolean, 'z' null, 0 absent */
};

/* Where a value sits, for err->param: a chain from the value up to the body's member. */
struct path {
    const struct path *up;
    const char *name; /* a member's name, or NULL for an array element */
    size_t index;     /* the element's index when name is NULL */
};

/* The walk's state: the answer and what one member says about another. */
struct ctx {
    struct validate_error *err;
    bool stream;         /* "stream": true */
    bool stream_options; /* a "stream_options" that is not null */
    bool logprobs;       /* chat's "logprobs": true */
    bool top_logprobs;   /* a "top_logprobs" that is not null */
};

/* ---- the walk over the text ---- */

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A string at p (on its opening quote): the byte after its closing quote, or NULL. A quote ends
 * it unless an odd run of backslashes precedes it. */
static const char *skip_string(const char *p, const char *e)
{
    const char *from = p + 1;
    for (;;) {
        const char *q = memchr(from, '"', (size_t)(e - from));
        if (q == NULL)
            return NULL;
        size_t bs = 0;
        while (q - bs > from && q[-1 - (ptrdiff_t)bs] == '\\')
            bs++;
        if (bs % 2 == 0)
            return q + 1;
        from = q + 1;
    }
}

static bool is_number_char(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* The value at p: fills in v (its end and type). Returns false when there is none. */
static bool value_at(const char *p, const char *e, struct val *v)
{
    v->p = p;
    v->end = NULL;
    v->t = 0;
    if (p == e)
        return false;
    if (*p == '"') {
        v->t = '"';
        v->end = skip_string(p, e);
    } else if (*p == '{' || *p == '[') {
        /* The matching bracket; brackets in strings do not count. */
        size_t depth = 0;
        const char *q = p;
        while (q < e) {
            char c = *q;
            if (c == '"') {
                q = skip_string(q, e);
                if (q == NULL)
                    break;
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                v->end = q + 1;
                break;
            }
            q++;
        }
        v->t = *p;
    } else if (e - p >= 4 && memcmp(p, "true", 4) == 0) {
        v->t = 'b';
        v->end = p + 4;
    } else if (e - p >= 5 && memcmp(p, "false", 5) == 0) {
        v->t = 'b';
        v->end = p + 5;
    } else if (e - p >= 4 && memcmp(p, "null", 4) == 0) {
        v->t = 'z';
        v->end = p + 4;
    } else if (is_number_char(*p)) {
        const char *q = p;
        while (q < e && is_number_char(*q))
            q++;
        v->t = '0';
        v->end = q;
    }
    if (v->end == NULL)
        v->t = 0;
    return v->end != NULL;
}

/* The members of an object or the elements of an array, one after the other. */
struct items {
    const char *p, *e; /* what is left between the brackets */
    bool started;      /* a first item was read: the next needs a comma */
    size_t count;      /* items read so far */
};

static void items_open(struct items *it, const struct val *v)
{
    it->p = v->p + 1;
    it->e = v->end - 1;
    it->started = false;
    it->count = 0;
}

/* The next item: its name (a string value, when name is not NULL: an object) and its value.
 * Returns 1, 0 at the end, or -1 when the text is not well formed there. */
static int items_next(struct items *it, struct val *name, struct val *v)
{
    const char *p = skip_ws(it->p, it->e);
    if (p == it->e)
        return 0;
    if (it->started) {
        if (*p != ',')
            return -1;
        p = skip_ws(p + 1, it->e);
    }
    if (name != NULL) {
        if (p == it->e || *p != '"' || !value_at(p, it->e, name))
            return -1;
        p = skip_ws(name->end, it->e);
        if (p == it->e || *p != ':')
            return -1;
        p = skip_ws(p + 1, it->e);
    }
    if (!value_at(p, it->e, v))
        return -1;
    it->p = v->end;
    it->started = true;
    it->count++;
    return 1;
}

/* The longest name or value compared: a tool's name has at most 64 bytes. */
#define KEY_MAX 72

/* A short string decoded, to compare with names and enum values. */
struct key {
    char s[KEY_MAX]; /* NUL-terminated */
    size_t len;
    bool fits; /* s holds it whole: plain ASCII without NUL, shorter than KEY_MAX */
};

static void key_read(struct key *k, const struct val *v)
{
    const char *p = v->p + 1, *e = v->end - 1;
    k->len = 0;
    k->fits = true;
    while (p < e && k->fits) {
        unsigned char c = (unsigned char)*p++;
        if (c == '\\' && p < e) {
            char x = *p++;
            const char *simple = strchr("\"\\/bfnrt", x);
            if (x != '\0' && simple != NULL) {
                c = (unsigned char)"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            } else if (x == 'u' && e - p >= 4) {
                int cp = 0;
                for (int i = 0; i < 4; i++) {
                    int d = hex_digit(p[i]);
                    cp = d < 0 ? 0x100 : cp * 16 + d;
                }
                p += 4;
                c = cp > 0 && cp < 0x80 ? (unsigned char)cp : 0;
            } else {
                c = 0;
            }
        }
        if (c == 0 || c >= 0x80 || k->len + 1 >= KEY_MAX)
            k->fits = false;
        else
            k->s[k->len++] = (char)c;
    }
    k->s[k->len] = '\0';
}

static bool key_is(const struct key *k, const char *s)
{
    return k->fits && strcmp(k->s, s) == 0;
}

/* Finds the members named in names (NULL-terminated; out has one slot each, t 0 when absent).
 * Returns 0, or -1 when the object is not well formed. */
static int members_find(const struct val *obj, const char *const *names, struct val *out)
{
    struct items it;
    struct val name, v;
    struct key k;
    int rc;
    for (size_t i = 0; names[i] != NULL; i++)
        out[i].t = 0;
    items_open(&it, obj);
    while ((rc = items_next(&it, &name, &v)) == 1) {
        key_read(&k, &name);
        for (size_t i = 0; names[i] != NULL; i++) {
            if (names[i][0] == k.s[0] && key_is(&k, names[i]))
                out[i] = v;
        }
    }
    return rc;
}

/* A number's value; its token is digits, signs, dots and exponents only (value_at). */
struct number {
    bool integer; /* written without fraction or exponent, as jansson's json_is_integer */
    int64_t i;    /* an integer's value, saturated at INT64_MIN and INT64_MAX */
    double d;     /* its value as a double (for an integer too) */
};

#define NUMBER_TEXT_MAX 64 /* longer numbers are copied to the heap for strtod */

/* Returns false when the token is not a number. */
static bool number_read(const struct val *v, struct number *n)
{
    const char *p = v->p, *e = v->end;
    size_t len = (size_t)(e - p);
    n->integer =
        memchr(p, '.', len) == NULL && memchr(p, 'e', len) == NULL && memchr(p, 'E', len) == NULL;
    if (n->integer) {
        bool neg = *p == '-';
        const char *q = p + neg;
        if (q == e)
            return false;
        uint64_t u = 0;
        for (; q < e; q++) {
            if (*q < '0' || *q > '9')
                return false;
            unsigned d = (unsigned)(*q - '0');
            u = u > (UINT64_MAX - d) / 10 ? UINT64_MAX : u * 10 + d;
        }
        if (neg)
            n->i = u > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)u;
        else
            n->i = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
        n->d = (double)n->i;
        return true;
    }
    char small[NUMBER_TEXT_MAX + 1];
    char *text = len <= NUMBER_TEXT_MAX ? small : xmalloc(len + 1);
    memcpy(text, p, len);
    text[len] = '\0';
    char *end;
    n->d = strtod(text, &end);
    bool ok =
        end == text + len && len > 0 && (text[0] == '-' || (text[0] >= '0' && text[0] <= '9'));
    if (text != small)
        free(text);
    return ok && !isnan(n->d);
}

/* ---- the answers ---- */

static void render_path(char *out, size_t size, const struct path *at)
{
    const struct path *chain[16];
    size_t n = 0, len = 0;
    for (; at != NULL && n < ARRAY_SIZE(chain); at = at->up)
        chain[n++] = at;
    out[0] = '\0';
    while (n-- > 0 && len < size) {
        const struct path *s = chain[n];
        int w;
        if (s->name != NULL)
            w = snprintf(out + len, size - len, "%s%s", len ? "." : "", s->name);
        else
            w = snprintf(out + len, size - len, "[%zu]", s->index);
        len += w > 0 ? (size_t)w : 0;
    }
}

/* What came, in the words of OpenAI's messages. */
static const char *type_name(const struct val *v)
{
    switch (v->t) {
    case '{':
        return "an object";
    case '[':
        return "an array";
    case '"':
        return "a string";
    case 'b':
        return "a boolean";
    case 'z':
        return "null";
    case '0': {
        struct number n;
        return number_read(v, &n) && !n.integer ? "a decimal number" : "an integer";
    }
    default:
        return "nothing";
    }
}

/* Fills in the answer: the path of `at` goes into param first, so that the message's arguments
 * may name it as c->err->param (vsnprintf reads them only then). */
static int fail(struct ctx *c, const struct path *at, const char *code, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
static int fail(struct ctx *c, const struct path *at, const char *code, const char *fmt, ...)
{
    va_list ap;
    c->err->code = code;
    render_path(c->err->param, sizeof(c->err->param), at);
    va_start(ap, fmt);
    vsnprintf(c->err->message, sizeof(c->err->message), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

#define PARAM(c) ((c)->err->param)

static int fail_json(struct ctx *c)
{
    return fail(c, NULL, "invalid_json", "the request body is not valid JSON");
}

static int fail_type(struct ctx *c, const struct path *at, const char *expected,
                     const struct val *v)
{
    return fail(c, at, "invalid_type", "Invalid type for '%s': expected %s, but got %s instead.",
                PARAM(c), expected, type_name(v));
}

static int fail_missing(struct ctx *c, const struct path *at)
{
    return fail(c, at, "missing_required_parameter", "Missing required parameter: '%s'.", PARAM(c));
}

/* A string that is not one of `supported` ("'a', 'b'"): the client's string is named when it is
 * short printable ASCII (the answer must stay valid UTF-8 whatever came). */
static int fail_value(struct ctx *c, const struct path *at, const struct val *v,
                      const char *supported)
{
    struct key k;
    key_read(&k, v);
    bool printable = k.fits;
    for (size_t i = 0; i < k.len && printable; i++)
        printable = k.s[i] >= 0x20 && k.s[i] < 0x7f;
    if (printable)
        return fail(c, at, "invalid_value",
                    "Invalid value for '%s': '%s'. Supported values are: %s.", PARAM(c), k.s,
                    supported);
    return fail(c, at, "invalid_value",
                "Invalid value for '%s': a string that is none of the supported values: %s.",
                PARAM(c), supported);
}

/* A number out of [min, max]: its token (digits and signs only) is quoted, cut at 32 bytes. */
static int fail_range(struct ctx *c, const struct path *at, const struct val *v, bool integer,
                      bool below, double bound)
{
    static const char *const codes[] = {"integer_below_min_value", "integer_above_max_value",
                                        "decimal_below_min_value", "decimal_above_max_value"};
    const char *what = integer ? "integer" : "decimal";
    int len = (int)(v->end - v->p);
    return fail(c, at, codes[(integer ? 0 : 2) + (below ? 0 : 1)],
                "Invalid '%s': %s %s value. Expected a value %s %g, but got %.*s%s instead.",
                PARAM(c), what, below ? "below minimum" : "above maximum",
                below ? ">=" : "<=", bound, len > 32 ? 32 : len, v->p, len > 32 ? "..." : "");
}

/* ---- the checks of values ---- */

/* Whether `name` of parent may be this value: absent (unless required), null (unless required),
 * or of type t. Answers a wrong one. */
static int want(struct ctx *c, const struct path *parent, const char *name, const struct val *v,
                char t, const char *expected, bool required)
{
    struct path at = {parent, name, 0};
    if (v->t == t)
        return 0;
    if (v->t == 0)
        return required ? fail_missing(c, &at) : 0;
    if (v->t == 'z' && !required)
        return 0;
    return fail_type(c, &at, expected, v);
}

/* A number in [min, max]; an integer (no fraction, no exponent) when integer is set. */
static int check_range(struct ctx *c, const struct path *at, const struct val *v, bool integer,
                       double min, double max)
{
    const char *expected = integer ? "an integer" : "a number";
    struct number n;
    if (v->t != '0')
        return fail_type(c, at, expected, v);
    if (!number_read(v, &n))
        return fail_json(c);
    if (integer && !n.integer)
        return fail_type(c, at, expected, v);
    if (n.d < min)
        return fail_range(c, at, v, n.integer, true, min);
    if (n.d > max)
        return fail_range(c, at, v, n.integer, false, max);
    return 0;
}

static int check_integer(struct ctx *c, const struct path *at, const struct val *v, double min,
                         double max)
{
    return check_range(c, at, v, true, min, max);
}

/* A string that is one of the NULL-terminated values; `supported` words them for the answer. */
static int check_enum(struct ctx *c, const struct path *at, const struct val *v,
                      const char *const *values, const char *supported)
{
    struct key k;
    if (v->t != '"')
        return fail_type(c, at, "a string", v);
    key_read(&k, v);
    for (size_t i = 0; values[i] != NULL; i++) {
        if (key_is(&k, values[i]))
            return (int)i;
    }
    return fail_value(c, at, v, supported);
}

/* A function's (or custom tool's, or JSON schema's) name: OpenAI's ^[a-zA-Z0-9_-]{1,64}$. */
static int check_name(struct ctx *c, const struct path *at, const struct val *v)
{
    struct key k;
    if (v->t != '"')
        return fail_type(c, at, "a string", v);
    key_read(&k, v);
    bool ok = k.fits && k.len >= 1 && k.len <= 64;
    for (size_t i = 0; i < k.len && ok; i++) {
        char ch = k.s[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '_' || ch == '-';
    }
    if (ok)
        return 0;
    return fail(c, at, "invalid_value",
                "Invalid '%s': string does not match pattern. Expected a string that matches the "
                "pattern '^[a-zA-Z0-9_-]{1,64}$'.",
                PARAM(c));
}

/* A non-empty string (the model). */
static int check_nonempty(struct ctx *c, const struct path *at, const struct val *v)
{
    if (v->t != '"')
        return fail_type(c, at, "a string", v);
    if (v->end - v->p == 2)
        return fail(c, at, "empty_string",
                    "Invalid '%s': empty string. Expected a string with minimum length 1, but got "
                    "an empty string instead.",
                    PARAM(c));
    return 0;
}

static int fail_empty_array(struct ctx *c, const struct path *at)
{
    return fail(c, at, "empty_array",
                "Invalid '%s': empty array. Expected an array with minimum length 1, but got an "
                "empty array instead.",
                PARAM(c));
}

/* The check of one element of an array (arg: what the array's owner passes on). */
typedef int (*element_fn)(struct ctx *c, const struct path *at, const struct val *v, int arg);

/* An array (not empty when nonempty) whose every element passes check(..., arg). */
static int check_each(struct ctx *c, const struct path *at, const struct val *v, element_fn check,
                      int arg, bool nonempty)
{
    struct items it;
    struct val el;
    int rc;
    if (v->t != '[')
        return fail_type(c, at, "an array", v);
    items_open(&it, v);
    while ((rc = items_next(&it, NULL, &el)) == 1) {
        struct path e = {at, NULL, it.count - 1};
        if ((rc = check(c, &e, &el, arg)) != 0)
            return rc;
    }
    if (rc < 0)
        return fail_json(c);
    return nonempty && it.count == 0 ? fail_empty_array(c, at) : 0;
}

/* "stop": a string or an array of at most 4 strings. */
#define STOP_MAX 4
static int check_stop(struct ctx *c, const struct path *at, const struct val *v)
{
    struct items it;
    struct val el;
    int rc;
    if (v->t == '"')
        return 0;
    if (v->t != '[')
        return fail_type(c, at, "a string or an array of strings", v);
    items_open(&it, v);
    while ((rc = items_next(&it, NULL, &el)) == 1) {
        struct path e = {at, NULL, it.count - 1};
        if (el.t != '"')
            return fail_type(c, &e, "a string", &el);
    }
    if (rc < 0)
        return fail_json(c);
    if (it.count > STOP_MAX)
        return fail(c, at, "array_above_max_length",
                    "Invalid '%s': array too long. Expected an array with maximum length %d, but "
                    "got an array with length %zu instead.",
                    PARAM(c), STOP_MAX, it.count);
    return 0;
}

/* An object whose every value passes `value`: logit_bias (numbers), metadata (strings). The
 * member's name joins the path when it is short printable ASCII. */
static int check_map(struct ctx *c, const struct path *at, const struct val *v, bool numbers,
                     double min, double max)
{
    struct items it;
    struct val name, el;
    struct key k;
    int rc;
    if (v->t != '{')
        return fail_type(c, at, "an object", v);
    items_open(&it, v);
    while ((rc = items_next(&it, &name, &el)) == 1) {
        key_read(&k, &name);
        bool printable = k.fits && k.len > 0;
        for (size_t i = 0; i < k.len && printable; i++)
            printable = k.s[i] > 0x20 && k.s[i] < 0x7f;
        struct path e = {at, k.s, 0};
        const struct path *where = printable ? &e : at;
        if (numbers)
            rc = check_range(c, where, &el, false, min, max);
        else
            rc = el.t == '"' ? 0 : fail_type(c, where, "a string", &el);
        if (rc != 0)
            return rc;
    }
    return rc < 0 ? fail_json(c) : 0;
}

/* A token: an integer >= 0. */
static int check_token(struct ctx *c, const struct path *at, const struct val *v)
{
    return check_integer(c, at, v, 0, HUGE_VAL);
}

/* A completions prompt or an embeddings input: a string, or an array (not empty) of strings, of
 * tokens or of arrays of tokens, all of the first element's kind. */
static int check_prompt(struct ctx *c, const struct path *at, const struct val *v)
{
    static const char expected[] =
        "a string, an array of strings, an array of tokens or an array of token arrays";
    struct items it, inner;
    struct val el, tok;
    char first = 0;
    int rc;
    if (v->t == '"')
        return 0;
    if (v->t != '[')
        return fail_type(c, at, expected, v);
    items_open(&it, v);
    while ((rc = items_next(&it, NULL, &el)) == 1) {
        struct path e = {at, NULL, it.count - 1};
        if (first == 0)
            first = el.t;
        if (first == '"' && el.t != '"')
            return fail_type(c, &e, "a string (as the first element)", &el);
        if (first == '0' && (rc = check_token(c, &e, &el)) != 0)
            return rc;
        if (first == '[') {
            if (el.t != '[')
                return fail_type(c, &e, "an array of tokens (as the first element)", &el);
            items_open(&inner, &el);
            while ((rc = items_next(&inner, NULL, &tok)) == 1) {
                struct path t = {&e, NULL, inner.count - 1};
                if ((rc = check_token(c, &t, &tok)) != 0)
                    return rc;
            }
            if (rc < 0)
                return fail_json(c);
        }
        if (first != '"' && first != '0' && first != '[')
            return fail_type(c, &e, "a string, a token or an array of tokens", &el);
    }
    if (rc < 0)
        return fail_json(c);
    return it.count == 0 ? fail_empty_array(c, at) : 0;
}

static int check_stream_options(struct ctx *c, const struct path *at, const struct val *v)
{
    static const char *const names[] = {"include_usage", "include_obfuscation", NULL};
    struct val m[2];
    int rc;
    if (v->t != '{')
        return fail_type(c, at, "an object", v);
    if (members_find(v, names, m) != 0)
        return fail_json(c);
    for (size_t i = 0; i < ARRAY_SIZE(m); i++) {
        rc = want(c, at, names[i], &m[i], 'b', "a boolean", false);
        if (rc != 0)
            return rc;
    }
    c->stream_options = true;
    return 0;
}

/* One of OpenAI's tagged unions: an object whose "type" is one of types (NULL-terminated; words
 * lists them for the answer) and whose member of that name holds the details. Returns the type's
 * index with *details set (t 0 when absent), or -EINVAL. */
static int check_tagged(struct ctx *c, const struct path *at, const struct val *v,
                        const char *const *types, const char *words, struct val *details)
{
    const char *names[8] = {"type"};
    struct val m[8];
    struct path type_at = {at, "type", 0};
    size_t n = 0;
    int rc;
    for (; types[n] != NULL; n++) {
        ASSERT(n + 2 < ARRAY_SIZE(names));
        names[n + 1] = types[n];
    }
    names[n + 1] = NULL;
    if (v->t != '{')
        return fail_type(c, at, "an object", v);
    if (members_find(v, names, m) != 0)
        return fail_json(c);
    if ((rc = want(c, at, "type", &m[0], '"', "a string", true)) != 0)
        return rc;
    int type = check_enum(c, &type_at, &m[0], types, words);
    if (type >= 0)
        *details = m[1 + type];
    return type;
}

/* A tool definition: {type: "function", function: {name, description?, parameters?, strict?}}
 * or OpenAI's custom tool {type: "custom", custom: {name, …}}. */
static int check_tool(struct ctx *c, const struct path *at, const struct val *v, int arg)
{
    static const char *const types[] = {"function", "custom", NULL};
    static const char *const fnames[] = {"name", "description", "parameters", "strict", NULL};
    struct val d, f[4];
    int rc, type = check_tagged(c, at, v, types, "'function', 'custom'", &d);
    if (type < 0)
        return type;
    struct path fat = {at, types[type], 0}, name_at = {&fat, "name", 0};
    if ((rc = want(c, at, types[type], &d, '{', "an object", true)) != 0)
        return rc;
    if (members_find(&d, fnames, f) != 0)
        return fail_json(c);
    if (f[0].t == 0)
        return fail_missing(c, &name_at);
    if ((rc = check_name(c, &name_at, &f[0])) != 0)
        return rc;
    if (type == 1)
        return 0; /* a custom tool's other members (format) are the engine's business */
    if ((rc = want(c, &fat, "description", &f[1], '"', "a string", false)) != 0 ||
        (rc = want(c, &fat, "parameters", &f[2], '{', "an object", false)) != 0 ||
        (rc = want(c, &fat, "strict", &f[3], 'b', "a boolean", false)) != 0)
        return rc;
    return 0;
}

/* "none", "auto", "required", or {type: "function", function: {name}} (also OpenAI's "custom"
 * and "allowed_tools" forms). */
static int check_tool_choice(struct ctx *c, const struct path *at, const struct val *v)
{
    static const char *const modes[] = {"none", "auto", "required", NULL};
    static const char *const types[] = {"function", "custom", "allowed_tools", NULL};
    static const char *const fnames[] = {"name", NULL};
    struct val d, f[1];
    int rc;
    if (v->t == '"') {
        rc = check_enum(c, at, v, modes, "'none', 'auto', 'required'");
        return rc < 0 ? rc : 0;
    }
    if (v->t != '{')
        return fail_type(c, at, "a string or an object", v);
    int type = check_tagged(c, at, v, types, "'function', 'custom', 'allowed_tools'", &d);
    if (type < 0)
        return type;
    struct path fat = {at, types[type], 0};
    if ((rc = want(c, at, types[type], &d, '{', "an object", true)) != 0)
        return rc;
    if (type == 2)
        return 0; /* allowed_tools: its list is the engine's business */
    if (members_find(&d, fnames, f) != 0)
        return fail_json(c);
    return want(c, &fat, "name", &f[0], '"', "a string", true);
}

/* {type: "text" | "json_object" | "json_schema", json_schema: {name, description?, schema?,
 * strict?} (with json_schema)}. */
static int check_response_format(struct ctx *c, const struct path *at, const struct val *v)
{
    static const char *const types[] = {"text", "json_object", "json_schema", NULL};
    static const char *const snames[] = {"name", "description", "schema", "strict", NULL};
    struct val d, s[4];
    struct path sat = {at, "json_schema", 0}, name_at = {&sat, "name", 0};
    int rc, type = check_tagged(c, at, v, types, "'text', 'json_object', 'json_schema'", &d);
    if (type < 2)
        return type < 0 ? type : 0;
    if ((rc = want(c, at, "json_schema", &d, '{', "an object", true)) != 0)
        return rc;
    if (members_find(&d, snames, s) != 0)
        return fail_json(c);
    if (s[0].t == 0)
        return fail_missing(c, &name_at);
    if ((rc = check_name(c, &name_at, &s[0])) != 0 ||
        (rc = want(c, &sat, "description", &s[1], '"', "a string", false)) != 0 ||
        (rc = want(c, &sat, "schema", &s[2], '{', "an object", false)) != 0 ||
        (rc = want(c, &sat, "strict", &s[3], 'b', "a boolean", false)) != 0)
        return rc;
    return 0;
}

/* ---- messages ---- */

enum role { ROLE_SYSTEM, ROLE_DEVELOPER, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL, ROLE_FUNCTION };

static const char *const roles[] = {"system", "developer", "user", "assistant",
                                    "tool",   "function",  NULL};

enum part { PART_TEXT, PART_IMAGE_URL, PART_INPUT_AUDIO, PART_FILE, PART_REFUSAL };

static const char *const part_types[] = {"text", "image_url", "input_audio",
                                         "file", "refusal",   NULL};

/* The content parts each role may send (OpenAI's message types), and their words. */
static const unsigned role_parts[] = {
    [ROLE_SYSTEM] = 1u << PART_TEXT,
    [ROLE_DEVELOPER] = 1u << PART_TEXT,
    [ROLE_USER] = 1u << PART_TEXT | 1u << PART_IMAGE_URL | 1u << PART_INPUT_AUDIO | 1u << PART_FILE,
    [ROLE_ASSISTANT] = 1u << PART_TEXT | 1u << PART_REFUSAL,
    [ROLE_TOOL] = 1u << PART_TEXT,
    [ROLE_FUNCTION] = 0,
};
static const char *const role_parts_words[] = {
    [ROLE_SYSTEM] = "'text'",
    [ROLE_DEVELOPER] = "'text'",
    [ROLE_USER] = "'text', 'image_url', 'input_audio', 'file'",
    [ROLE_ASSISTANT] = "'text', 'refusal'",
    [ROLE_TOOL] = "'text'",
    [ROLE_FUNCTION] = "none",
};

/* One content part of a message of role `role`. */
static int check_part(struct ctx *c, const struct path *at, const struct val *v, int role)
{
    static const char *const names[] = {"type", "text",    "image_url", "input_audio",
                                        "file", "refusal", NULL};
    static const char *const url_names[] = {"url", "detail", NULL};
    static const char *const details[] = {"auto", "low", "high", NULL};
    static const char *const audio_names[] = {"data", "format", NULL};
    static const char *const file_names[] = {"file_data", "file_id", "filename", NULL};
    struct val m[6], s[3];
    struct path type_at = {at, "type", 0};
    int rc;
    if (v->t != '{')
        return fail_type(c, at, "an object", v);
    if (members_find(v, names, m) != 0)
        return fail_json(c);
    if ((rc = want(c, at, "type", &m[0], '"', "a string", true)) != 0)
        return rc;
    struct key k;
    key_read(&k, &m[0]);
    int type = -1;
    for (int i = 0; part_types[i] != NULL; i++) {
        if (key_is(&k, part_types[i]))
            type = i;
    }
    if (type < 0 || !(role_parts[role] & (1u << type)))
        return fail_value(c, &type_at, &m[0], role_parts_words[role]);
    const char *member = part_types[type];
    struct path sat = {at, member, 0}, detail_at = {&sat, "detail", 0};
    const struct val *body = &m[1 + type];
    switch ((enum part)type) {
    case PART_TEXT:
    case PART_REFUSAL:
        return want(c, at, member, body, '"', "a string", true);
    case PART_IMAGE_URL:
        if ((rc = want(c, at, member, body, '{', "an object", true)) != 0)
            return rc;
        if (members_find(body, url_names, s) != 0)
            return fail_json(c);
        if ((rc = want(c, &sat, "url", &s[0], '"', "a string", true)) != 0)
            return rc;
        if (s[1].t != 0 && s[1].t != 'z' &&
            (rc = check_enum(c, &detail_at, &s[1], details, "'auto', 'low', 'high'")) < 0)
            return rc;
        return 0;
    case PART_INPUT_AUDIO:
        if ((rc = want(c, at, member, body, '{', "an object", true)) != 0)
            return rc;
        if (members_find(body, audio_names, s) != 0)
            return fail_json(c);
        if ((rc = want(c, &sat, "data", &s[0], '"', "a string", true)) != 0 ||
            (rc = want(c, &sat, "format", &s[1], '"', "a string", true)) != 0)
            return rc;
        return 0;
    case PART_FILE:
        if ((rc = want(c, at, member, body, '{', "an object", true)) != 0)
            return rc;
        if (members_find(body, file_names, s) != 0)
            return fail_json(c);
        for (size_t i = 0; i < 3; i++) {
            if ((rc = want(c, &sat, file_names[i], &s[i], '"', "a string", false)) != 0)
                return rc;
        }
        return 0;
    }
    return 0;
}

/* A message's content, once its role is known: a string; an array of the role's parts; or
 * null (or nothing) for an assistant that calls tools, and null for a function's result. */
static int check_content(struct ctx *c, const struct path *msg, enum role role, const struct val *v,
                         bool calls)
{
    struct path at = {msg, "content", 0};
    if (v->t == '"')
        return 0;
    if ((v->t == 0 || v->t == 'z') && role == ROLE_ASSISTANT && calls)
        return 0;
    if (v->t == 'z' && role == ROLE_FUNCTION)
        return 0;
    if (v->t == 0)
        return fail_missing(c, &at);
    if (v->t != '[' || role == ROLE_FUNCTION)
        return fail_type(c, &at,
                         role == ROLE_FUNCTION ? "a string or null"
                                               : "a string or an array of content parts",
                         v);
    return check_each(c, &at, v, check_part, (int)role, false);
}

/* One of an assistant's tool_calls: {id, type: "function", function: {name, arguments}} (or
 * OpenAI's custom tool call, {custom: {name, input}}). */
static int check_tool_call(struct ctx *c, const struct path *at, const struct val *v, int arg)
{
    static const char *const names[] = {"id", NULL};
    static const char *const types[] = {"function", "custom", NULL};
    static const char *const fnames[] = {"name", "arguments", "input", NULL};
    struct val id, d, f[3];
    int rc;
    if (v->t != '{')
        return fail_type(c, at, "an object", v);
    if (members_find(v, names, &id) != 0)
        return fail_json(c);
    if ((rc = want(c, at, "id", &id, '"', "a string", true)) != 0)
        return rc;
    int type = check_tagged(c, at, v, types, "'function', 'custom'", &d);
    if (type < 0)
        return type;
    struct path fat = {at, types[type], 0};
    if ((rc = want(c, at, types[type], &d, '{', "an object", true)) != 0)
        return rc;
    if (members_find(&d, fnames, f) != 0)
        return fail_json(c);
    if ((rc = want(c, &fat, "name", &f[0], '"', "a string", true)) != 0 ||
        (rc = want(c, &fat, type == 0 ? "arguments" : "input", &f[1 + type], '"', "a string",
                   true)) != 0)
        return rc;
    return 0;
}

static int check_message(struct ctx *c, const struct path *at, const struct val *v, int arg)
{
    static const char *const names[] = {"role",         "content",       "name",    "tool_calls",
                                        "tool_call_id", "function_call", "refusal", NULL};
    static const char *const call_names[] = {"name", "arguments", NULL};
    struct val m[7], f[2];
    struct path role_at = {at, "role", 0}, call_at = {at, "function_call", 0};
    int rc;
    if (v->t != '{')
        return fail_type(c, at, "an object", v);
    if (members_find(v, names, m) != 0)
        return fail_json(c);
    if ((rc = want(c, at, "role", &m[0], '"', "a string", true)) != 0)
        return rc;
    int role = check_enum(c, &role_at, &m[0], roles,
                          "'system', 'developer', 'user', 'assistant', 'tool', 'function'");
    if (role < 0)
        return role;
    bool calls = false;
    if (role == ROLE_ASSISTANT) {
        struct path calls_at = {at, "tool_calls", 0};
        calls = (m[3].t != 0 && m[3].t != 'z') || (m[5].t != 0 && m[5].t != 'z');
        if (m[3].t != 0 && m[3].t != 'z' &&
            (rc = check_each(c, &calls_at, &m[3], check_tool_call, 0, false)) != 0)
            return rc;
        if ((rc = want(c, at, "function_call", &m[5], '{', "an object", false)) != 0)
            return rc;
        if (m[5].t == '{') {
            if (members_find(&m[5], call_names, f) != 0)
                return fail_json(c);
            if ((rc = want(c, &call_at, "name", &f[0], '"', "a string", true)) != 0 ||
                (rc = want(c, &call_at, "arguments", &f[1], '"', "a string", true)) != 0)
                return rc;
        }
        if ((rc = want(c, at, "refusal", &m[6], '"', "a string", false)) != 0)
            return rc;
    }
    if ((rc = check_content(c, at, (enum role)role, &m[1], calls)) != 0)
        return rc;
    if ((rc = want(c, at, "name", &m[2], '"', "a string", role == ROLE_FUNCTION)) != 0)
        return rc;
    if (role == ROLE_TOOL && (rc = want(c, at, "tool_call_id", &m[4], '"', "a string", true)) != 0)
        return rc;
    return 0;
}

/* ---- the table of the body's members ---- */

enum check {
    CHECK_MODEL,           /* a non-empty string */
    CHECK_STRING,          /* any string */
    CHECK_BOOLEAN,         /* true or false */
    CHECK_INTEGER,         /* an integer in [min, max] */
    CHECK_NUMBER,          /* a number in [min, max] */
    CHECK_STREAM,          /* a boolean, remembered for stream_options */
    CHECK_STREAM_OPTIONS,  /* {include_usage?, include_obfuscation?}: with stream only */
    CHECK_LOGPROBS,        /* chat's: a boolean, remembered for top_logprobs */
    CHECK_TOP_LOGPROBS,    /* an integer in [min, max], with logprobs only */
    CHECK_STOP,            /* a string or up to 4 strings */
    CHECK_LOGIT_BIAS,      /* an object of numbers in [min, max] */
    CHECK_METADATA,        /* an object of strings */
    CHECK_MESSAGES,        /* chat's messages */
    CHECK_PROMPT,          /* completions' prompt, embeddings' input */
    CHECK_TOOLS,           /* tool definitions */
    CHECK_TOOL_CHOICE,     /* a mode or a named tool */
    CHECK_RESPONSE_FORMAT, /* text, json_object or json_schema */
    CHECK_ENCODING_FORMAT, /* "float" or "base64" */
};

#define CHAT (1u << VALIDATE_CHAT)
#define COMPLETIONS (1u << VALIDATE_COMPLETIONS)
#define EMBEDDINGS (1u << VALIDATE_EMBEDDINGS)
#define UNBOUNDED HUGE_VAL

struct field {
    const char *name;
    unsigned kinds; /* the routes whose bodies have it */
    enum check check;
    double min, max; /* for the numeric checks */
    bool required;
};

/* The bounds are OpenAI's (its API reference and the answers of api.openai.com). Only
 * completions' max_tokens may be 0: echo with max_tokens 0 scores a prompt without generating. */
static const struct field fields[] = {
    {"model", CHAT | COMPLETIONS | EMBEDDINGS, CHECK_MODEL, 0, 0, true},
    {"messages", CHAT, CHECK_MESSAGES, 0, 0, true},
    {"prompt", COMPLETIONS, CHECK_PROMPT, 0, 0, false},
    {"input", EMBEDDINGS, CHECK_PROMPT, 0, 0, false},
    {"max_tokens", CHAT, CHECK_INTEGER, 1, UNBOUNDED, false},
    {"max_tokens", COMPLETIONS, CHECK_INTEGER, 0, UNBOUNDED, false},
    {"max_completion_tokens", CHAT, CHECK_INTEGER, 1, UNBOUNDED, false},
    {"temperature", CHAT | COMPLETIONS, CHECK_NUMBER, 0, 2, false},
    {"top_p", CHAT | COMPLETIONS, CHECK_NUMBER, 0, 1, false},
    {"n", CHAT | COMPLETIONS, CHECK_INTEGER, 1, 128, false},
    {"stop", CHAT | COMPLETIONS, CHECK_STOP, 0, 0, false},
    {"stream", CHAT | COMPLETIONS, CHECK_STREAM, 0, 0, false},
    {"stream_options", CHAT | COMPLETIONS, CHECK_STREAM_OPTIONS, 0, 0, false},
    {"seed", CHAT | COMPLETIONS, CHECK_INTEGER, -UNBOUNDED, UNBOUNDED, false},
    {"logprobs", CHAT, CHECK_LOGPROBS, 0, 0, false},
    {"logprobs", COMPLETIONS, CHECK_INTEGER, 0, 5, false},
    {"top_logprobs", CHAT, CHECK_TOP_LOGPROBS, 0, 20, false},
    {"presence_penalty", CHAT | COMPLETIONS, CHECK_NUMBER, -2, 2, false},
    {"frequency_penalty", CHAT | COMPLETIONS, CHECK_NUMBER, -2, 2, false},
    {"logit_bias", CHAT | COMPLETIONS, CHECK_LOGIT_BIAS, -100, 100, false},
    {"user", CHAT | COMPLETIONS | EMBEDDINGS, CHECK_STRING, 0, 0, false},
    {"tools", CHAT, CHECK_TOOLS, 0, 0, false},
    {"tool_choice", CHAT, CHECK_TOOL_CHOICE, 0, 0, false},
    {"parallel_tool_calls", CHAT, CHECK_BOOLEAN, 0, 0, false},
    {"response_format", CHAT, CHECK_RESPONSE_FORMAT, 0, 0, false},
    {"metadata", CHAT, CHECK_METADATA, 0, 0, false},
    {"store", CHAT, CHECK_BOOLEAN, 0, 0, false},
    {"echo", COMPLETIONS, CHECK_BOOLEAN, 0, 0, false},
    {"best_of", COMPLETIONS, CHECK_INTEGER, 0, 20, false},
    {"suffix", COMPLETIONS, CHECK_STRING, 0, 0, false},
    {"encoding_format", EMBEDDINGS, CHECK_ENCODING_FORMAT, 0, 0, false},
    {"dimensions", EMBEDDINGS, CHECK_INTEGER, 1, UNBOUNDED, false},
};

static int check_field(struct ctx *c, const struct field *f, const struct path *at,
                       const struct val *v)
{
    static const char *const encodings[] = {"float", "base64", NULL};
    int rc;
    switch (f->check) {
    case CHECK_MODEL:
        return check_nonempty(c, at, v);
    case CHECK_STRING:
        return v->t == '"' ? 0 : fail_type(c, at, "a string", v);
    case CHECK_BOOLEAN:
        return v->t == 'b' ? 0 : fail_type(c, at, "a boolean", v);
    case CHECK_INTEGER:
        return check_integer(c, at, v, f->min, f->max);
    case CHECK_NUMBER:
        return check_range(c, at, v, false, f->min, f->max);
    case CHECK_STREAM:
    case CHECK_LOGPROBS:
        if (v->t != 'b')
            return fail_type(c, at, "a boolean", v);
        if (v->p[0] == 't')
            *(f->check == CHECK_STREAM ? &c->stream : &c->logprobs) = true;
        return 0;
    case CHECK_STREAM_OPTIONS:
        return check_stream_options(c, at, v);
    case CHECK_TOP_LOGPROBS:
        c->top_logprobs = true;
        return check_integer(c, at, v, f->min, f->max);
    case CHECK_STOP:
        return check_stop(c, at, v);
    case CHECK_LOGIT_BIAS:
        return check_map(c, at, v, true, f->min, f->max);
    case CHECK_METADATA:
        return check_map(c, at, v, false, 0, 0);
    case CHECK_MESSAGES:
        return check_each(c, at, v, check_message, 0, true);
    case CHECK_PROMPT:
        return check_prompt(c, at, v);
    case CHECK_TOOLS:
        return check_each(c, at, v, check_tool, 0, false);
    case CHECK_TOOL_CHOICE:
        return check_tool_choice(c, at, v);
    case CHECK_RESPONSE_FORMAT:
        return check_response_format(c, at, v);
    case CHECK_ENCODING_FORMAT:
        rc = check_enum(c, at, v, encodings, "'float', 'base64'");
        return rc < 0 ? rc : 0;
    }
    return 0;
}

int validate_kind_of(const char *route, enum validate_kind *kind)
{
    if (route == NULL)
        return -ENOENT;
    if (strcmp(route, "/v1/chat/completions") == 0)
        *kind = VALIDATE_CHAT;
    else if (strcmp(route, "/v1/completions") == 0)
        *kind = VALIDATE_COMPLETIONS;
    else if (strcmp(route, "/v1/embeddings") == 0)
        *kind = VALIDATE_EMBEDDINGS;
    else
        return -ENOENT;
    return 0;
}

int validate_request(enum validate_kind kind, const char *body, size_t len,
                     struct validate_error *err)
{
    struct ctx c = {.err = err};
    const char *e = body + len;
    const char *p = skip_ws(body, e);
    struct items it;
    struct val root, name, v;
    struct key k;
    bool seen[ARRAY_SIZE(fields)] = {false};
    int rc;

    err->code = NULL;
    err->param[0] = '\0';
    err->message[0] = '\0';
    if (p == e || *p != '{' || !value_at(p, e, &root) || skip_ws(root.end, e) != e)
        return fail_json(&c);
    items_open(&it, &root);
    while ((rc = items_next(&it, &name, &v)) == 1) {
        key_read(&k, &name);
        if (!k.fits)
            continue; /* no field has such a name */
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
            const struct field *f = &fields[i];
            if (f->name[0] != k.s[0] || !(f->kinds & (1u << kind)) || strcmp(f->name, k.s) != 0)
                continue;
            struct path at = {NULL, f->name, 0};
            seen[i] = true;
            if (v.t == 'z' && !f->required)
                break; /* null: the engine's default */
            rc = check_field(&c, f, &at, &v);
            if (rc != 0)
                return rc;
            break;
        }
    }
    if (rc < 0)
        return fail_json(&c);
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        struct path at = {NULL, fields[i].name, 0};
        if (fields[i].required && (fields[i].kinds & (1u << kind)) && !seen[i])
            return fail_missing(&c, &at);
    }
    if (c.stream_options && !c.stream) {
        struct path at = {NULL, "stream_options", 0};
        return fail(&c, &at, "invalid_value",
                    "Invalid value for 'stream_options': it is only allowed when 'stream' is "
                    "true.");
    }
    if (c.top_logprobs && !c.logprobs) {
        struct path at = {NULL, "top_logprobs", 0};
        return fail(&c, &at, "invalid_value",
                    "Invalid value for 'top_logprobs': it is only allowed when 'logprobs' is "
                    "true.");
    }
    return 0;
}
