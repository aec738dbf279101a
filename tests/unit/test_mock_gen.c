/* Unit tests of tools/mock-engine/gen: the deterministic text of arun-mock-engine. The golden
 * values are the ones docs/mock-engine.md's rule (and tests/e2e/lib/mock.mjs) give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "../../tools/mock-engine/gen.c"

/* The answer to prompt with seed, as text ("w1 w2 … "), natural length only. */
static void answer(const char *prompt, int64_t seed, char *out, size_t size, unsigned *tokens)
{
    struct gen_prompt p;
    struct gen g;
    gen_prompt_init(&p);
    gen_prompt_puts(&p, prompt);
    gen_init(&g, &p, seed);
    out[0] = '\0';
    for (unsigned i = 0; i < g.natural; i++) {
        size_t n;
        const char *w = gen_next(&g, &n);
        strncat(out, w, size - strlen(out) - 2);
        strcat(out, " ");
    }
    *tokens = g.natural;
}

static void test_answer_matches_the_documented_rule(void **state)
{
    char text[1024];
    unsigned n;
    answer("user: Hello there, mock\n", 7, text, sizeof(text), &n);
    assert_int_equal(n, 14);
    assert_string_equal(text, "stone forest south candle gamma arrow story winter candle candle "
                              "harbor gamma silver east ");
    answer("", 0, text, sizeof(text), &n);
    assert_int_equal(n, 24);
    assert_int_equal(strncmp(text, "breeze dog summer purple ", 25), 0);
}

static void test_seed_changes_the_answer(void **state)
{
    char a[1024], b[1024];
    unsigned na, nb;
    answer("user: hi\n", 1, a, sizeof(a), &na);
    answer("user: hi\n", 2, b, sizeof(b), &nb);
    assert_string_not_equal(a, b);
    answer("user: hi\n", 1, b, sizeof(b), &nb);
    assert_string_equal(a, b);
}

static void test_natural_length_stays_in_range(void **state)
{
    for (int64_t seed = -50; seed < 500; seed++) {
        struct gen_prompt p;
        struct gen g;
        gen_prompt_init(&p);
        gen_init(&g, &p, seed);
        assert_in_range(g.natural, GEN_NATURAL_MIN, GEN_NATURAL_MIN + GEN_NATURAL_SPAN - 1);
    }
}

static void test_prompt_fed_in_pieces_equals_whole(void **state)
{
    struct gen_prompt whole, pieces;
    gen_prompt_init(&whole);
    gen_prompt_puts(&whole, "system: be brief\nuser:  two  words\n");
    gen_prompt_init(&pieces);
    gen_prompt_puts(&pieces, "system: be br");
    gen_prompt_puts(&pieces, "ief\nuser:  two ");
    gen_prompt_puts(&pieces, " words\n");
    assert_int_equal(whole.hash, pieces.hash);
    assert_int_equal(whole.words, 6);
    assert_int_equal(pieces.words, 6);
}

static void test_words_fit_the_declared_maximum(void **state)
{
    struct gen g = {.state = 12345};
    for (int i = 0; i < 10000; i++) {
        size_t n;
        gen_next(&g, &n);
        assert_in_range(n, 1, GEN_WORD_MAX);
    }
}

static void test_embedding_is_deterministic_and_unit_length(void **state)
{
    float a[64], b[64], c[64];
    gen_embedding("alpha", 5, a, 64);
    gen_embedding("alpha", 5, b, 64);
    gen_embedding("beta", 4, c, 64);
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, c, sizeof(a));
    double sum = 0;
    for (int i = 0; i < 64; i++)
        sum += (double)a[i] * a[i];
    assert_true(sum > 0.9999 && sum < 1.0001);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_matches_the_documented_rule),
        cmocka_unit_test(test_seed_changes_the_answer),
        cmocka_unit_test(test_natural_length_stays_in_range),
        cmocka_unit_test(test_prompt_fed_in_pieces_equals_whole),
        cmocka_unit_test(test_words_fit_the_declared_maximum),
        cmocka_unit_test(test_embedding_is_deterministic_and_unit_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
