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
