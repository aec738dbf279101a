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

static void test_tools_are_picked_by_call_name_in_text_order(void **state)
{
    const char *names[] = {"get_weather", "get", "get_time", "bad name"};
    size_t out[GEN_CALLS_MAX];
    const char *t = "first call get_time, then call get_weather; call get_time again";
    size_t k = gen_tool_pick(t, strlen(t), names, 4, out, GEN_CALLS_MAX);
    assert_int_equal(k, 2);
    assert_int_equal(out[0], 2); /* get_time comes first in the text */
    assert_int_equal(out[1], 0); /* "call get_weather" is not "call get" */
    t = "please call get.";
    assert_int_equal(gen_tool_pick(t, strlen(t), names, 4, out, GEN_CALLS_MAX), 1);
    assert_int_equal(out[0], 1);
    t = "just use the tool";
    assert_int_equal(gen_tool_pick(t, strlen(t), names, 4, out, GEN_CALLS_MAX), 1);
    assert_int_equal(out[0], 0);
    t = "call bad name, or recall nothing";
    assert_int_equal(gen_tool_pick(t, strlen(t), names, 4, out, GEN_CALLS_MAX), 0);
    t = "call get_time and call get_weather";
    assert_int_equal(gen_tool_pick(t, strlen(t), names, 4, out, 1), 1); /* the cap */
    assert_int_equal(gen_tool_pick("", 0, names, 0, out, GEN_CALLS_MAX), 0);
}

static void test_tool_arguments_are_fixed_json(void **state)
{
    char args[GEN_ARGS_MAX];
    assert_int_equal(gen_tool_args(args, sizeof(args), "get_time", 1), 28);
    assert_string_equal(args, "{\"tool\":\"get_time\",\"call\":1}");
    char name[GEN_TOOL_NAME_MAX + 1];
    memset(name, 'x', GEN_TOOL_NAME_MAX);
    name[GEN_TOOL_NAME_MAX] = '\0';
    assert_true(gen_tool_name_ok(name, GEN_TOOL_NAME_MAX));
    assert_false(gen_tool_name_ok(name, GEN_TOOL_NAME_MAX + 1));
    assert_true(gen_tool_args(args, sizeof(args), name, 7) < sizeof(args) - 1);
}

/* A script's tokens, each followed by a space, give the script and one space back. */
static void test_script_tokens_rebuild_the_text(void **state)
{
    const char *cases[] = {"tool result: sunny, 21 C", "a  b", "end ", "", "one"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gen_script sc;
        char out[128] = "";
        size_t n, count = 0;
        const char *w;
        gen_script_init(&sc, cases[i], strlen(cases[i]));
        while ((w = gen_script_next(&sc, &n)) != NULL) {
            strncat(out, w, n);
            strcat(out, " ");
            count++;
        }
        assert_int_equal(count, gen_script_count(cases[i], strlen(cases[i])));
        assert_int_equal(strlen(out), strlen(cases[i]) + 1);
        assert_memory_equal(out, cases[i], strlen(cases[i]));
    }
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
        cmocka_unit_test(test_tools_are_picked_by_call_name_in_text_order),
        cmocka_unit_test(test_tool_arguments_are_fixed_json),
        cmocka_unit_test(test_script_tokens_rebuild_the_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
