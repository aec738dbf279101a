/*
 * usage.c: token counts from engines' answers (usage.h). It owns nothing but the scans: finding
 * a "usage" key with memchr/memrchr, reading the integers after it, and for a streamed chunk
 * whether it is the usage-only one. jsonscan validates a chunk before its members are trusted;
 * jansson reads what the scan declines.
 */
#include "gateway/usage.h"

#include <jansson.h>
#include <string.h>

#include "core/common.h"
#include "gateway/jsonscan.h"

/* Takes usage {prompt_tokens, completion_tokens} from an engine's JSON, when present. */
static void take_usage(struct gw_usage *u, json_t *j)
{
    json_t *o = json_object_get(j, "usage");
    if (!json_is_object(o))
        return;
    json_t *p = json_object_get(o, "prompt_tokens"), *c = json_object_get(o, "completion_tokens");
    if (json_is_integer(p))
        u->prompt_tokens = json_integer_value(p);
    if (json_is_integer(c))
        u->completion_tokens = json_integer_value(c);
}

/* Where "key" (quotes included) is in [p, end): the first occurrence, or with last the last one.
 * It looks for the key's first letter with memchr/memrchr, which beats memmem's set-up on the
 * few hundred bytes of an answer (this runs for every non-streaming answer). */
static const char *find_key(const char *p, const char *end, const char *key, bool last)
{
    size_t kl = strlen(key);
    if (end - p < (ptrdiff_t)kl + 2)
        return NULL;
    const char *lo = p + 1, *hi = end - kl; /* where the key's first letter may be */
    while (lo < hi) {
        const char *c =
            last ? memrchr(lo, key[0], (size_t)(hi - lo)) : memchr(lo, key[0], (size_t)(hi - lo));
        if (c == NULL)
            return NULL;
        if (c[-1] == '"' && memcmp(c, key, kl) == 0 && c[kl] == '"')
            return c - 1;
        if (last)
            hi = c;
        else
            lo = c + 1;
    }
    return NULL;
}

/* Reads one integer member after p without building a JSON tree: a whole parse of each answer
 * cost a tenth of the gateway's CPU (bench/gateway.sh's profile). */
static int64_t scan_int_after(const char *p, const char *end, const char *key)
{
    const char *k = find_key(p, end, key, false);
    if (k == NULL)
        return -1;
    k += strlen(key) + 2;
    while (k < end && (*k == ' ' || *k == '"' || *k == ':'))
        k++;
    if (k >= end || *k < '0' || *k > '9')
        return -1;
    int64_t v = 0;
    while (k < end && *k >= '0' && *k <= '9' && v < (INT64_MAX - 9) / 10)
        v = v * 10 + (*k++ - '0');
    return v;
}

/* Takes the token counts found in [p, end), a usage object or what follows its key. */
static void take_counts(struct gw_usage *u, const char *p, const char *end)
{
    int64_t prompt = scan_int_after(p, end, "prompt_tokens");
    int64_t completion = scan_int_after(p, end, "completion_tokens");
    if (prompt >= 0)
        u->prompt_tokens = prompt;
    if (completion >= 0)
        u->completion_tokens = completion;
}

/* Token counts from an answer's "usage" object: the last one, as engines put it after the
 * choices (a model's own text cannot hold the key unescaped). */
void gw_usage_scan_body(struct gw_usage *u, const char *body, size_t len)
{
    const char *end = body + len, *k = find_key(body, end, "usage", true);
    if (k != NULL)
        take_counts(u, k, end);
}

/* Whether an event carries usage counts: "usage" followed by an object. Asked for include_usage,
 * engines put "usage":null in every chunk and the counts in the last one only; parsing each
 * chunk to find out cost more CPU than the rest of the relay (jansson, ~40k instructions). */
static bool has_usage_object(const char *ev, size_t n)
{
    const char *end = ev + n, *u = find_key(ev, end, "usage", true);
    if (u == NULL)
        return false;
    for (u += 7; u < end && (*u == ' ' || *u == '\t' || *u == ':'); u++)
        ;
    return u < end && *u == '{';
}

/* Reads a usage chunk's counts and whether it is usage only (empty choices), from a scan of its
 * JSON; jansson reads what the scan does not take. */
static bool read_usage_chunk(struct gw_usage *u, const char *json, size_t n)
{
    struct jsonscan_member m[] = {{.name = "usage"}, {.name = "choices"}};
    if (jsonscan_object(json, n, m, ARRAY_SIZE(m)) == 0) {
        if (m[0].value != NULL && m[0].value[0] == '{')
            take_counts(u, m[0].value, m[0].value + m[0].len);
        const char *v = m[1].value;
        if (v == NULL || v[0] != '[')
            return false;
        for (v++; *v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'; v++)
            ;
        return *v == ']';
    }
    json_t *j = json_loadb(json, n, JSON_DISABLE_EOF_CHECK, NULL);
    take_usage(u, j);
    json_t *choices = json_object_get(j, "choices");
    bool usage_only = json_is_array(choices) && json_array_size(choices) == 0;
    json_decref(j);
    return usage_only;
}

bool gw_usage_event(struct gw_usage *u, const char *data, size_t len)
{
    return has_usage_object(data, len) && read_usage_chunk(u, data, len);
}
