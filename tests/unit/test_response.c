/* Unit tests of http/response.c's error objects: the OpenAI shape arun sends, and the same shape
 * made from whatever error body an engine answered (http_error_relayed). A client parses each
 * member by its type (the openai SDKs, typed clients that declare code as a string), so every
 * relayed error must come out as four members: message, type and code strings, param a string
 * or null. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "http/server.h"

/* The error member of what http_error_relayed makes of (status, body), checked for the shape. */
static json_t *relayed(json_t **root, int status, const char *body, bool say_who)
{
    *root = http_error_relayed(status, body, strlen(body), "engine e", say_who);
    json_t *err = json_object_get(*root, "error");
    assert_int_equal(json_object_size(*root), 1);
    assert_int_equal(json_object_size(err), 4);
    assert_true(json_is_string(json_object_get(err, "message")));
    assert_true(json_is_string(json_object_get(err, "type")));
    assert_true(json_is_string(json_object_get(err, "code")));
    json_t *param = json_object_get(err, "param");
    assert_true(json_is_string(param) || json_is_null(param));
    return err;
}

static const char *member(json_t *err, const char *name)
{
    return json_string_value(json_object_get(err, name));
}

static void test_llama_server_numeric_code_becomes_a_string_and_the_rest_is_kept(void **state)
{
    json_t *root;
    json_t *err = relayed(&root, 400,
                          "{\"error\":{\"code\":400,\"message\":\"the request exceeds the "
                          "available context size\",\"type\":\"exceed_context_size_error\"}}",
                          false);
    assert_string_equal(member(err, "code"), "upstream_error");
    assert_string_equal(member(err, "message"), "the request exceeds the available context size");
    assert_string_equal(member(err, "type"), "exceed_context_size_error");
    assert_true(json_is_null(json_object_get(err, "param")));
    json_decref(root);
}

static void test_an_openai_shaped_error_passes_unchanged(void **state)
{
    json_t *root;
    json_t *err = relayed(&root, 429,
                          "{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\","
                          "\"param\":\"model\",\"code\":\"rate_limited\"}}",
                          false);
    assert_string_equal(member(err, "code"), "rate_limited");
    assert_string_equal(member(err, "message"), "slow down");
    assert_string_equal(member(err, "type"), "rate_limit_error");
    assert_string_equal(member(err, "param"), "model");
    json_decref(root);
}

static void test_a_string_error_is_the_message(void **state)
{
    json_t *root;
    json_t *err = relayed(&root, 404, "{\"error\":\"model 'x' not found\"}", false);
    assert_string_equal(member(err, "message"), "model 'x' not found");
    assert_string_equal(member(err, "type"), "not_found_error");
    assert_string_equal(member(err, "code"), "upstream_error");
    json_decref(root);
}

static void
test_a_body_that_is_no_error_object_becomes_the_message_with_who_and_status(void **state)
{
    json_t *root;
    json_t *err = relayed(&root, 422, "{\"detail\":[{\"msg\":\"field required\"}]}", false);
    assert_string_equal(member(err, "message"),
                        "engine e answered HTTP 422: {\"detail\":[{\"msg\":\"field required\"}]}");
    assert_string_equal(member(err, "type"), "invalid_request_error");
    json_decref(root);
    err = relayed(&root, 404, "File Not Found", false);
    assert_string_equal(member(err, "message"), "engine e answered HTTP 404: File Not Found");
    json_decref(root);
    err = relayed(&root, 400, "", false);
    assert_string_equal(member(err, "message"), "engine e answered HTTP 400: ");
    json_decref(root);
}

static void test_a_long_or_broken_body_is_cut_and_made_utf8(void **state)
{
    char body[2000];
    memset(body, 'a', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    body[HTTP_RELAYED_BODY_MAX - 1] = (char)0xc3; /* the cut falls inside a two-byte sequence */
    body[HTTP_RELAYED_BODY_MAX] = (char)0xa9;
    json_t *root;
    json_t *err = relayed(&root, 400, body, false);
    const char *msg = member(err, "message");
    const char *prefix = "engine e answered HTTP 400: ";
    assert_int_equal(strlen(msg), strlen(prefix) + HTTP_RELAYED_BODY_MAX);
    assert_int_equal(msg[strlen(msg) - 1], '?');
    json_decref(root);
    err = relayed(&root, 400, "\xff\xfe not json", false);
    assert_string_equal(member(err, "message"), "engine e answered HTTP 400: ?? not json");
    json_decref(root);
}

static void test_say_who_names_the_engine_and_status_in_every_message(void **state)
{
    json_t *root;
    json_t *err =
        relayed(&root, 400, "{\"error\":{\"code\":400,\"message\":\"bad n_probs\"}}", true);
    assert_string_equal(member(err, "message"), "engine e answered HTTP 400: bad n_probs");
    assert_string_equal(member(err, "type"), "invalid_request_error");
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_server_numeric_code_becomes_a_string_and_the_rest_is_kept),
        cmocka_unit_test(test_an_openai_shaped_error_passes_unchanged),
        cmocka_unit_test(test_a_string_error_is_the_message),
        cmocka_unit_test(
            test_a_body_that_is_no_error_object_becomes_the_message_with_who_and_status),
        cmocka_unit_test(test_a_long_or_broken_body_is_cut_and_made_utf8),
        cmocka_unit_test(test_say_who_names_the_engine_and_status_in_every_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
