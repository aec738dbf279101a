/*
 * gen.h: the deterministic "model" of arun-mock-engine. Text is a pure function of the prompt
 * text and the seed, so a test can predict every token (docs/mock-engine.md gives the rule and a
 * JavaScript version of it). Nothing here knows about HTTP or JSON.
 */
#ifndef ARUN_MOCK_GEN_H
#define ARUN_MOCK_GEN_H

#include <stddef.h>
#include <stdint.h>

#define GEN_FNV_OFFSET 2166136261u /* FNV-1a 32-bit offset basis */
#define GEN_FNV_PRIME 16777619u    /* FNV-1a 32-bit prime */
#define GEN_LCG_MUL 1664525u       /* Numerical Recipes' 32-bit LCG */
#define GEN_LCG_ADD 1013904223u
#define GEN_NATURAL_MIN 8   /* the shortest natural answer, in tokens */
#define GEN_NATURAL_SPAN 25 /* natural answers have GEN_NATURAL_MIN .. MIN + SPAN - 1 tokens */
#define GEN_WORD_COUNT 64   /* size of the word list */
#define GEN_WORD_MAX 8      /* the longest word, in bytes */

/* A prompt being read: its hash so far and its token count. Feed it the prompt text in pieces. */
struct gen_prompt {
    uint32_t hash;  /* FNV-1a 32 of every byte fed so far */
    uint64_t words; /* maximal runs of non-whitespace bytes seen so far (the prompt tokens) */
    int in_word;    /* whether the last byte fed was not whitespace */
};

/* An endless stream of words determined by a prompt and a seed. */
struct gen {
    uint32_t state;   /* LCG state: the hash of prompt + "#" + seed, advanced once per word */
    uint32_t natural; /* how many tokens the natural (uninterrupted) answer has */
};

/* Starts reading an empty prompt. */
void gen_prompt_init(struct gen_prompt *p);
/* Adds n bytes to the prompt text. */
void gen_prompt_feed(struct gen_prompt *p, const void *s, size_t n);
/* Same for a NUL-terminated string. */
void gen_prompt_puts(struct gen_prompt *p, const char *s);

/* Starts the word stream of prompt p with the given seed; p is not changed. */
void gen_init(struct gen *g, const struct gen_prompt *p, int64_t seed);
/* Returns the next word (static storage, no trailing space) and stores its length in *len. */
const char *gen_next(struct gen *g, size_t *len);

/* Fills out[0..dim) with the unit-length embedding of the n bytes at s. */
void gen_embedding(const void *s, size_t n, float *out, size_t dim);

#endif
