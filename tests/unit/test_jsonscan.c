/* Unit tests of gateway/jsonscan, held to jansson: whatever the scan accepts, jansson (with
 * JSON_REJECT_DUPLICATES, as the gateway parses) must accept as an object with the same members.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/buf.h"
#include "core/common.h"
#include "gateway/jsonscan.h"

static const char *const CORPUS[] = {
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}",
    " {\n\t\"model\" : \"qwen-7b\" ,\"stream\":false, \"temperature\": 0.7, \"top_p\": 1e-2,"
    " \"stop\": [\"\\n\", \"END\"], \"seed\": -42, \"user\": null, \"n\": 1 } ",
    "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
    "{\"model\":\"caf\xc3\xa9\",\"messages\":[{\"role\":\"user\",\"content\":"
    "\"\\u00e9\\ud83d\\ude00 \xf0\x9f\x98\x80 \\\"quoted\\\" \\\\ \\/ \\b\\f\\n\\r\\t\"}]}",
    "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}}}}]}",
    "{}",
    "{\"a\":[],\"b\":{},\"c\":[[],[{}]],\"d\":0,\"e\":-0.5e+10,\"f\":true}",
    "{\"model\":\"m\",\"model\":\"n\"}",
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"role\":\"x\"}]}",
    "{\"mod\\u0065l\":\"m\"}",
    "{\"model\":\"m\\u0000\"}",
    "{\"model\":\"\\ud800\"}",
    "{\"model\":\"\\udc00x\"}",
    "{\"model\":\"\xc0\xaf\"}",
    "{\"model\":\"\xed\xa0\x80\"}",
    "{\"model\":\"\xf4\x90\x80\x80\"}",
    "{\"model\":\"\x01\"}",
    "{\"max_tokens\":12345678901234567890123}",
    "{\"x\":1e999}",
    "{\"x\":01}",
    "{\"x\":1.}",
    "{\"x\":.5}",
    "{\"x\":-}",
    "{\"x\":+1}",
    "{\"x\":tru}",
    "{\"x\":NaN}",
    "{\"x\":1,}",
    "{,}",
    "{\"x\"}",
    "{\"x\":[1,]}",
    "{\"x\":[1 2]}",
    "{\"x\":1}{}",
    "{\"x\":1} x",
    "[1,2]",
    "\"s\"",
    "",
    "{",
    "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{\"i\":1}}}}}}}}}",
    "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
};

/* A string value the scan accepted decodes to jansson's string. */
static void check_string(const char *v, size_t n, json_t *want)
{
    if (!json_is_string(want))
        return;
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(jsonscan_string(v, n, &b), 0);
    if (b.len != json_string_length(want) ||
        memcmp(b.data ? b.data : "", json_string_value(want), b.len) != 0)
        fail_msg("string %.*s decoded as %.*s", (int)n, v, (int)b.len, b.data);
    buf_cleanup(&b);
}

/* An array value: jsonscan_array gives jansson's elements, in order. */
static void check_array(const char *v, size_t n, json_t *want)
{
    if (!json_is_array(want))
        return;
    struct jsonscan_value el[4];
    size_t count = 99;
    assert_int_equal(jsonscan_array(v, n, el, 4, &count), 0);
    assert_int_equal(count, json_array_size(want));
    for (size_t i = 0; i < count && i < 4; i++) {
        json_error_t e;
        json_t *got = json_loadb(el[i].value, el[i].len, JSON_DECODE_ANY, &e);
        if (got == NULL || !json_equal(got, json_array_get(want, i)))
            fail_msg("element %zu read as %.*s: %.*s", i, (int)el[i].len, el[i].value, (int)n, v);
        json_decref(got);
    }
}

/* Does the scan agree with jansson on text[0..n)? Fails the test when the scan accepts what
 * jansson refuses, or finds a member jansson reads differently. Returns the scan's verdict. */
static int check(const char *text, size_t n)
{
    struct jsonscan_member m[] = {{.name = "model"}, {.name = "stream"}, {.name = "messages"}};
    int rc = jsonscan_object(text, n, m, 3);
    if (rc != 0)
        return rc;
    json_error_t e;
    json_t *j = json_loadb(text, n, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL || !json_is_object(j))
        fail_msg("the scan accepted what jansson refuses (%s): %.*s", j ? "not an object" : e.text,
                 (int)n, text);
    for (size_t i = 0; i < 3; i++) {
        json_t *want = json_object_get(j, m[i].name);
        if (want == NULL) {
            assert_null(m[i].value);
            continue;
        }
        assert_non_null(m[i].value);
        json_t *got = json_loadb(m[i].value, m[i].len, JSON_DECODE_ANY, &e);
        if (got == NULL || !json_equal(got, want))
            fail_msg("member %s read as %.*s: %.*s", m[i].name, (int)m[i].len, m[i].value, (int)n,
                     text);
        json_decref(got);
        check_string(m[i].value, m[i].len, want);
        check_array(m[i].value, m[i].len, want);
    }
    json_decref(j);
    return 0;
}

static void test_real_requests_take_the_fast_path_with_the_right_members(void **state)
{
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(check(CORPUS[i], strlen(CORPUS[i])), 0);
    struct jsonscan_member m[] = {{.name = "model"}, {.name = "stream"}};
    const char *t = CORPUS[1];
    assert_int_equal(jsonscan_object(t, strlen(t), m, 2), 0);
    assert_int_equal(m[0].len, 9);
    assert_memory_equal(m[0].value, "\"qwen-7b\"", 9);
    assert_memory_equal(m[1].value, "false", 5);
}

static void test_what_jansson_would_refuse_or_word_is_left_to_it(void **state)
{
    for (size_t i = 7; i < sizeof(CORPUS) / sizeof(CORPUS[0]); i++) {
        if (jsonscan_object(CORPUS[i], strlen(CORPUS[i]), NULL, 0) != -EINVAL)
            fail_msg("took the fast path or did not say -EINVAL: %s", CORPUS[i]);
    }
}

static void test_arrays_and_strings_read_as_jansson_reads_them(void **state)
{
    (void)state;
    static const char *const arrays[] = {
        "[]",
        " [ ] ",
        "[1]",
        "[{\"a\":1},[2,3],\"s\",null,true,-1.5e3]",
        "[{\"index\":0,\"delta\":{\"content\":\"a\\nb\\u00e9\\ud83d\\ude00\\/\\\\\\\"\"}}]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(arrays); i++) {
        json_t *want = json_loads(arrays[i], JSON_DECODE_ANY, NULL);
        assert_non_null(want);
        check_array(arrays[i], strlen(arrays[i]), want);
        json_decref(want);
    }
    static const char *const refused[] = {"[", "[1,]", "[1 2]", "{}", "[1]x", "[\"\\u0000\"]", ""};
    for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
        size_t count;
        assert_int_equal(jsonscan_array(refused[i], strlen(refused[i]), NULL, 0, &count), -EINVAL);
    }
    /* Strings: every escape, decoded as jansson decodes it. */
    const char *t = "{\"model\":\"\\b\\f\\n\\r\\t\\\"\\\\\\/\\u0041\\u00e9\\u20ac\\ud83d\\ude00 "
                    "\xc3\xa9 plain\"}";
    assert_int_equal(check(t, strlen(t)), 0);
    struct buf small;
    buf_init(&small, 3);
    assert_int_equal(jsonscan_string("\"abcd\"", 6, &small), -ENOBUFS);
    buf_cleanup(&small);
}

static void test_every_mutation_of_the_corpus_agrees_with_jansson(void **state)
{
    /* Deterministic mutations: each corpus text, with one or two bytes replaced, inserted or
     * deleted from a set that exercises the grammar's edges. */
    static const char alphabet[] = "{}[]\":,\\ 0-1.eE+tfnu\x80\xc3\xa9\xff\x00";
    uint32_t seed = 12345;
    size_t accepted = 0;
    for (size_t i = 0; i < sizeof(CORPUS) / sizeof(CORPUS[0]); i++) {
        size_t n = strlen(CORPUS[i]);
        for (int round = 0; round < 3000; round++) {
            char text[512];
            size_t len = n;
            memcpy(text, CORPUS[i], n);
            for (int k = 0; k < 1 + round % 2; k++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = len ? (seed >> 8) % (len + 1) : 0;
                char c = alphabet[(seed >> 20) % (sizeof(alphabet) - 1)];
                int op = (int)((seed >> 4) % 3);
                if (op == 0 && at < len) {
                    text[at] = c;
                } else if (op == 1 && len + 1 < sizeof(text)) {
                    memmove(text + at + 1, text + at, len - at);
                    text[at] = c;
                    len++;
                } else if (at < len) {
                    memmove(text + at, text + at + 1, len - at - 1);
                    len--;
                }
            }
            accepted += check(text, len) == 0;
        }
    }
    /* Some mutants are valid JSON (a changed digit, an added space): the check saw both sides. */
    assert_true(accepted > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_requests_take_the_fast_path_with_the_right_members),
        cmocka_unit_test(test_what_jansson_would_refuse_or_word_is_left_to_it),
        cmocka_unit_test(test_arrays_and_strings_read_as_jansson_reads_them),
        cmocka_unit_test(test_every_mutation_of_the_corpus_agrees_with_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
