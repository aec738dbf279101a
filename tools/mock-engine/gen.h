/*
 * gen.h: the deterministic "model" of arun-mock-engine. Text is a pure function of the prompt
 * text and the seed, so a test can predict every token (docs/mock-engine.md gives the rule and a
 * JavaScript version of it). Nothing here knows about HTTP; the only JSON is the fixed template
 * of a tool call's arguments.
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

/* ---- tool calls and scripted answers (docs/mock-engine.md, "Tool calls") ---- */

#define GEN_TOOL_NAME_MAX 64 /* OpenAI's limit on a function name */
#define GEN_CALLS_MAX 8      /* tool calls in one answer */
#define GEN_ARGS_MAX 160     /* bytes of one call's arguments: {"tool":NAME,"call":I} */
#define GEN_ARGS_PIECE 6     /* bytes of arguments per streamed piece */

/* Whether the n bytes at s can be a tool name the mock calls: 1..64 of [A-Za-z0-9_-]. */
int gen_tool_name_ok(const char *s, size_t n);
/* Which of the tools names[0..n) the user's text asks for: each "call NAME" (NAME not followed
 * by a name character) in the order of its first appearance, else the first tool when the text
 * contains "use the tool". Writes at most cap indices to out and returns their count. */
size_t gen_tool_pick(const char *text, size_t len, const char *const *names, size_t n, size_t *out,
                     size_t cap);
/* Writes the arguments of the i-th call (0-based) of an answer, to tool name (which passed
 * gen_tool_name_ok), NUL-terminated: {"tool":"NAME","call":I}. Returns the length. */
size_t gen_tool_args(char *out, size_t cap, const char *name, unsigned i);

/* A scripted answer: its text cut after every space; each token is the piece before a space
 * (and the last piece), followed by one space, so the answer is the text plus one space. */
struct gen_script {
    const char *s; /* the text (not owned) */
    size_t n;
    size_t pos; /* where the next piece starts; n + 1 once the last piece was taken */
};
void gen_script_init(struct gen_script *sc, const char *s, size_t n);
/* The number of tokens of the text: its spaces plus one. */
size_t gen_script_count(const char *s, size_t n);
/* The next piece (without its space) and its length, or NULL after the last. */
const char *gen_script_next(struct gen_script *sc, size_t *len);

/* Fills out[0..dim) with the unit-length embedding of the n bytes at s. */
void gen_embedding(const void *s, size_t n, float *out, size_t dim);

#endif
