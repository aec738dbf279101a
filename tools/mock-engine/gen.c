/*
 * gen.c: the deterministic text of arun-mock-engine.
 *
 * The rule, which docs/mock-engine.md repeats for test writers:
 *   H = FNV-1a-32(prompt text bytes ++ "#" ++ decimal seed)
 *   natural length = GEN_NATURAL_MIN + H % GEN_NATURAL_SPAN tokens
 *   s = H; for every token: s = s * 1664525 + 1013904223 (mod 2^32); word = words[(s >> 16) % 64]
 *   each token is its word followed by one space.
 * The word list below is part of that contract: changing it changes every expected answer.
 */
#include "gen.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const words[] = {
    "the",    "quick",  "brown",  "fox",     "jumps",   "over",   "lazy",   "dog",
    "alpha",  "beta",   "gamma",  "delta",   "river",   "stone",  "cloud",  "light",
    "shadow", "ocean",  "forest", "engine",  "token",   "model",  "signal", "paper",
    "garden", "window", "silver", "orange",  "purple",  "green",  "yellow", "north",
    "south",  "east",   "west",   "morning", "evening", "winter", "summer", "spring",
    "autumn", "music",  "story",  "number",  "letter",  "bridge", "tower",  "castle",
    "island", "planet", "comet",  "rocket",  "harbor",  "valley", "meadow", "thunder",
    "breeze", "candle", "mirror", "puzzle",  "circle",  "square", "arrow",  "anchor",
};
_Static_assert(sizeof(words) / sizeof(words[0]) == GEN_WORD_COUNT, "word list size");

static uint32_t fnv1a(uint32_t h, const void *s, size_t n)
{
    const unsigned char *p = s;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= GEN_FNV_PRIME;
    }
    return h;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

void gen_prompt_init(struct gen_prompt *p)
{
    *p = (struct gen_prompt){.hash = GEN_FNV_OFFSET};
}

void gen_prompt_feed(struct gen_prompt *p, const void *s, size_t n)
{
    const unsigned char *c = s;
    p->hash = fnv1a(p->hash, s, n);
    for (size_t i = 0; i < n; i++) {
        int in = !is_space(c[i]);
        if (in && !p->in_word)
            p->words++;
        p->in_word = in;
    }
}

void gen_prompt_puts(struct gen_prompt *p, const char *s)
{
    gen_prompt_feed(p, s, strlen(s));
}

void gen_init(struct gen *g, const struct gen_prompt *p, int64_t seed)
{
    char suffix[32];
    int n = snprintf(suffix, sizeof(suffix), "#%" PRId64, seed);
    uint32_t h = fnv1a(p->hash, suffix, (size_t)n);
    *g = (struct gen){.state = h, .natural = GEN_NATURAL_MIN + h % GEN_NATURAL_SPAN};
}

const char *gen_next(struct gen *g, size_t *len)
{
    g->state = g->state * GEN_LCG_MUL + GEN_LCG_ADD;
    const char *w = words[(g->state >> 16) % GEN_WORD_COUNT];
    *len = strlen(w);
    return w;
}

void gen_embedding(const void *s, size_t n, float *out, size_t dim)
{
    uint32_t x = fnv1a(GEN_FNV_OFFSET, s, n);
    double sum = 0;
    for (size_t j = 0; j < dim; j++) {
        x = x * GEN_LCG_MUL + GEN_LCG_ADD;
        double v = (double)(x >> 8) / 16777216.0 * 2.0 - 1.0;
        out[j] = (float)v;
        sum += v * v;
    }
    if (sum <= 0)
        return;
    double norm = sqrt(sum);
    for (size_t j = 0; j < dim; j++)
        out[j] = (float)(out[j] / norm);
}

int gen_tool_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > GEN_TOOL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int name_char(char c)
{
    return gen_tool_name_ok(&c, 1);
}

/* Where "call NAME" first appears in text as a whole name, or -1. */
static long find_call(const char *text, size_t len, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + 5 + nl <= len; i++) {
        if (memcmp(text + i, "call ", 5) != 0 || memcmp(text + i + 5, name, nl) != 0)
            continue;
        if (i + 5 + nl < len && name_char(text[i + 5 + nl]))
            continue;
        return (long)i;
    }
    return -1;
}

static int contains(const char *text, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= len; i++)
        if (memcmp(text + i, needle, nl) == 0)
            return 1;
    return 0;
}

size_t gen_tool_pick(const char *text, size_t len, const char *const *names, size_t n, size_t *out,
                     size_t cap)
{
    long at[GEN_CALLS_MAX];
    size_t k = 0;
    for (size_t t = 0; t < n && k < cap && k < GEN_CALLS_MAX; t++) {
        long pos =
            gen_tool_name_ok(names[t], strlen(names[t])) ? find_call(text, len, names[t]) : -1;
        if (pos < 0)
            continue;
        size_t j = k++; /* insertion sort by position in the text */
        while (j > 0 && at[j - 1] > pos) {
            at[j] = at[j - 1];
            out[j] = out[j - 1];
            j--;
        }
        at[j] = pos;
        out[j] = t;
    }
    if (k == 0 && n > 0 && cap > 0 && contains(text, len, "use the tool") &&
        gen_tool_name_ok(names[0], strlen(names[0]))) {
        out[0] = 0;
        k = 1;
    }
    return k;
}

size_t gen_tool_args(char *out, size_t cap, const char *name, unsigned i)
{
    int n = snprintf(out, cap, "{\"tool\":\"%s\",\"call\":%u}", name, i);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

void gen_script_init(struct gen_script *sc, const char *s, size_t n)
{
    *sc = (struct gen_script){.s = s, .n = n};
}

size_t gen_script_count(const char *s, size_t n)
{
    size_t k = 1;
    for (size_t i = 0; i < n; i++)
        k += s[i] == ' ';
    return k;
}

const char *gen_script_next(struct gen_script *sc, size_t *len)
{
    if (sc->pos > sc->n)
        return NULL;
    const char *start = sc->s + sc->pos;
    const char *sp = memchr(start, ' ', sc->n - sc->pos);
    *len = sp != NULL ? (size_t)(sp - start) : sc->n - sc->pos;
    sc->pos += *len + 1;
    return start;
}
