/*
 * Unit tests of runs/object: the Response object has every field of the SDK's Response type
 * (null where unknown, never missing) and echoes the request; lists carry first_id/last_id;
 * deleted markers, conversations and items have their SDK shapes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runs/object.h"

static json_t *parse_json(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg("bad test JSON (%s): %s", jerr.text, text);
    return v;
}

static void request(const char *body, struct run_request *rq)
{
    json_t *b = parse_json(body);
    struct run_error err;
    if (run_request_parse(b, rq, &err) != 0)
        fail_msg("refused: %s", err.message);
    json_decref(b);
}

/* The fields of the SDK's Response type (resources/responses/responses.d.ts), less output_text
 * (the SDK computes it) and the optional strings OpenAI leaves out when unset. */
static const char *const RESPONSE_FIELDS[] = {
    "id",
    "object",
    "created_at",
    "status",
    "background",
    "completed_at",
    "conversation",
    "error",
    "incomplete_details",
    "instructions",
    "max_output_tokens",
    "metadata",
    "model",
    "output",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "reasoning",
    "service_tier",
    "store",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "truncation",
    "usage",
    "user",
};

static void test_a_fresh_response_has_every_field_with_nulls(void **state)
{
    struct run_request rq;
    request("{\"model\":\"m\",\"input\":\"hi\"}", &rq);
    struct object_response o = {
        .rq = &rq, .id = "resp_1", .created_at = 1700000000, .status = "queued"};
    json_t *r = object_response(&o);

    assert_int_equal(json_object_size(r), sizeof(RESPONSE_FIELDS) / sizeof(RESPONSE_FIELDS[0]));
    for (size_t i = 0; i < sizeof(RESPONSE_FIELDS) / sizeof(RESPONSE_FIELDS[0]); i++)
        if (!json_object_get(r, RESPONSE_FIELDS[i]))
            fail_msg("no %s", RESPONSE_FIELDS[i]);
    json_t *want = parse_json(
        "{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1700000000,\"status\":"
        "\"queued\",\"background\":false,\"completed_at\":null,\"conversation\":null,\"error\":"
        "null,\"incomplete_details\":null,\"instructions\":null,\"max_output_tokens\":null,"
        "\"metadata\":{},\"model\":\"m\",\"output\":[],\"parallel_tool_calls\":true,"
        "\"previous_response_id\":null,\"prompt\":null,\"reasoning\":{\"effort\":null,"
        "\"summary\":null},\"service_tier\":\"default\",\"store\":true,\"temperature\":1.0,"
        "\"text\":{\"format\":{\"type\":\"text\"}},\"tool_choice\":\"auto\",\"tools\":[],"
        "\"top_p\":1.0,\"truncation\":\"disabled\",\"usage\":null,\"user\":null}");
    if (!json_equal(r, want)) {
        char *s = json_dumps(r, 0);
        fail_msg("got %s", s);
    }
    json_decref(want);
    json_decref(r);
    run_request_free(&rq);
}

static void test_a_finished_response_echoes_the_request_and_its_results(void **state)
{
    struct run_request rq;
    request("{\"model\":\"m\",\"input\":\"hi\",\"instructions\":\"be brief\",\"background\":true,"
            "\"conversation\":{\"id\":\"conv_9\"},\"metadata\":{\"k\":\"v\"},"
            "\"max_output_tokens\":32,\"temperature\":0.25,\"top_p\":0.5,"
            "\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],\"tool_choice\":\"required\","
            "\"parallel_tool_calls\":false}",
            &rq);
    json_t *output = parse_json("[{\"id\":\"msg_o\",\"type\":\"message\",\"role\":\"assistant\","
                                "\"status\":\"incomplete\",\"content\":[{\"type\":\"output_text\","
                                "\"text\":\"Hel\",\"annotations\":[]}]}]");
    json_t *usage = parse_json("{\"input_tokens\":3,\"output_tokens\":32,\"total_tokens\":35}");
    json_t *arun = parse_json("{\"engine\":\"e1\"}");
    struct object_response o = {.rq = &rq,
                                .id = "resp_2",
                                .created_at = 10,
                                .completed_at = 12,
                                .status = "incomplete",
                                .output = output,
                                .usage = usage,
                                .incomplete_reason = "max_output_tokens",
                                .arun = arun};
    json_t *r = object_response(&o);

    assert_string_equal(json_string_value(json_object_get(r, "instructions")), "be brief");
    assert_true(json_is_true(json_object_get(r, "background")));
    assert_int_equal(json_integer_value(json_object_get(r, "completed_at")), 12);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "conversation"), "id")), "conv_9");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "incomplete_details"), "reason")),
        "max_output_tokens");
    assert_int_equal(json_integer_value(json_object_get(r, "max_output_tokens")), 32);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "metadata"), "k")),
                        "v");
    assert_true(json_real_value(json_object_get(r, "temperature")) == 0.25);
    assert_true(json_real_value(json_object_get(r, "top_p")) == 0.5);
    assert_int_equal(json_array_size(json_object_get(r, "tools")), 1);
    assert_string_equal(json_string_value(json_object_get(r, "tool_choice")), "required");
    assert_true(json_is_false(json_object_get(r, "parallel_tool_calls")));
    assert_ptr_equal(json_object_get(r, "output"), output);
    assert_ptr_equal(json_object_get(r, "usage"), usage);
    assert_ptr_equal(json_object_get(r, "arun"), arun);
    assert_true(json_is_null(json_object_get(r, "error")));
    /* the caller keeps its references */
    json_decref(r);
    assert_int_equal(output->refcount, 1);
    assert_int_equal(arun->refcount, 1);

    json_t *error = parse_json("{\"code\":\"interrupted\",\"message\":\"arun restarted.\"}");
    struct object_response f = {.rq = &rq, .id = "resp_3", .status = "failed", .error = error};
    r = object_response(&f);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "error"), "code")),
                        "interrupted");
    assert_null(json_object_get(r, "arun"));
    json_decref(r);
    json_decref(error);
    json_decref(output);
    json_decref(usage);
    json_decref(arun);
    run_request_free(&rq);
}

static void test_lists_name_their_first_and_last_ids(void **state)
{
    json_t *l = object_list(parse_json("[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\"}]"), true);
    json_t *want = parse_json("{\"object\":\"list\",\"data\":[{\"id\":\"a\"},{\"id\":\"b\"},"
                              "{\"id\":\"c\"}],\"first_id\":\"a\",\"last_id\":\"c\","
                              "\"has_more\":true}");
    assert_true(json_equal(l, want));
    json_decref(l);
    json_decref(want);
    l = object_list(json_array(), false);
    want = parse_json(
        "{\"object\":\"list\",\"data\":[],\"first_id\":null,\"last_id\":null,\"has_more\":false}");
    assert_true(json_equal(l, want));
    json_decref(l);
    json_decref(want);
}

static void test_deleted_and_conversation_shapes(void **state)
{
    json_t *d = object_deleted("resp_1", "response.deleted");
    json_t *want =
        parse_json("{\"id\":\"resp_1\",\"object\":\"response.deleted\",\"deleted\":true}");
    assert_true(json_equal(d, want));
    json_decref(d);
    json_decref(want);

    json_t *c = object_conversation("conv_1", 1700000000, NULL);
    want = parse_json("{\"id\":\"conv_1\",\"object\":\"conversation\",\"created_at\":1700000000,"
                      "\"metadata\":{}}");
    assert_true(json_equal(c, want));
    json_decref(c);
    json_decref(want);
    json_t *md = parse_json("{\"topic\":\"x\"}");
    c = object_conversation("conv_2", 5, md);
    assert_ptr_equal(json_object_get(c, "metadata"), md);
    json_decref(c);
    assert_int_equal(md->refcount, 1);
    json_decref(md);
}

static void test_items_get_a_status_where_their_type_has_one(void **state)
{
    json_t *in = parse_json("{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"user\","
                            "\"content\":[]}");
    json_t *it = object_item(in);
    assert_string_equal(json_string_value(json_object_get(it, "status")), "completed");
    assert_null(json_object_get(in, "status")); /* the stored item is not changed */
    json_decref(it);
    json_decref(in);

    in = parse_json("{\"id\":\"fc_1\",\"type\":\"function_call\",\"status\":\"incomplete\"}");
    it = object_item(in);
    assert_string_equal(json_string_value(json_object_get(it, "status")), "incomplete");
    json_decref(it);
    json_decref(in);

    in = parse_json("{\"id\":\"fco_1\",\"type\":\"function_call_output\",\"status\":null}");
    it = object_item(in);
    assert_string_equal(json_string_value(json_object_get(it, "status")), "completed");
    json_decref(it);
    json_decref(in);

    in = parse_json("{\"id\":\"x_1\",\"type\":\"other\"}");
    it = object_item(in);
    assert_null(json_object_get(it, "status"));
    json_decref(it);
    json_decref(in);
}

static void test_output_text_joins_the_output_text_parts(void **state)
{
    json_t *out = parse_json(
        "[{\"type\":\"function_call\",\"name\":\"f\",\"arguments\":\"{}\"},"
        "{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hello, \"},"
        "{\"type\":\"refusal\",\"refusal\":\"no\"}]},"
        "{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"world\"}]}]");
    char *s = object_output_text(out);
    assert_string_equal(s, "Hello, world");
    free(s);
    s = object_output_text(NULL);
    assert_string_equal(s, "");
    free(s);
    json_decref(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_fresh_response_has_every_field_with_nulls),
        cmocka_unit_test(test_a_finished_response_echoes_the_request_and_its_results),
        cmocka_unit_test(test_lists_name_their_first_and_last_ids),
        cmocka_unit_test(test_deleted_and_conversation_shapes),
        cmocka_unit_test(test_items_get_a_status_where_their_type_has_one),
        cmocka_unit_test(test_output_text_joins_the_output_text_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
