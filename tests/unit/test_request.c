/*
 * Unit tests of runs/request: every way a client can get POST /v1/responses or a Conversations
 * API body wrong gives a 400 naming the parameter in a sentence, never anything else; every form
 * the SDKs send is accepted and normalised (typed items with ids); the metadata limits hold at
 * their boundaries in characters, not bytes; list queries; the Idempotency-Key fingerprint.
 */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/common.h"
#include "gateway/gateway.h"
#include "runs/request.h"

static json_t *parse_json(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg("bad test JSON (%s): %s", jerr.text, text);
    return v;
}

/* A refusal a person can read: a 400, an OpenAI code, a sentence (capital first, full stop
 * last, no printf leftovers). */
static void assert_refusal(const struct run_error *err, const char *what)
{
    size_t n = strlen(err->message);
    if (err->status != 400)
        fail_msg("%s: status %d, want 400", what, err->status);
    if (!err->code[0])
        fail_msg("%s: no code", what);
    if (n < 12 || !isupper((unsigned char)err->message[0]) || err->message[n - 1] != '.')
        fail_msg("%s: not a sentence: \"%s\"", what, err->message);
    if (strstr(err->message, "(null)") || strstr(err->message, "%"))
        fail_msg("%s: broken message: \"%s\"", what, err->message);
}

/* Parses body and expects a refusal with that param and code. */
static void expect_400(const char *body, const char *param, const char *code)
{
    json_t *b = parse_json(body);
    struct run_request rq;
    struct run_error err = {0};
    int rc = run_request_parse(b, &rq, &err);
    if (rc != -EINVAL)
        fail_msg("accepted (rc %d): %s", rc, body);
    assert_refusal(&err, body);
    if (strcmp(err.param, param) != 0)
        fail_msg("%s: param \"%s\", want \"%s\" (%s)", body, err.param, param, err.message);
    if (strcmp(err.code, code) != 0)
        fail_msg("%s: code \"%s\", want \"%s\" (%s)", body, err.code, code, err.message);
    assert_int_equal(b->refcount, 1); /* the reference is taken only on success */
    json_decref(b);
}

/* Parses body and expects success; the caller frees rq. */
static void expect_ok(const char *body, struct run_request *rq)
{
    json_t *b = parse_json(body);
    struct run_error err = {0};
    int rc = run_request_parse(b, rq, &err);
    if (rc != 0)
        fail_msg("refused: %s -> %s (%s: %s)", body, err.param, err.code, err.message);
    json_decref(b); /* rq holds its own reference */
}

#define M "\"model\":\"m\""
#define IN "\"input\":\"hi\""

static const struct {
    const char *body, *param, *code;
} HOSTILE[] = {
    /* the body and the model */
    {"[]", "", "invalid_type"},
    {"\"text\"", "", "invalid_type"},
    {"{}", "model", "missing_required_parameter"},
    {"{\"model\":null," IN "}", "model", "missing_required_parameter"},
    {"{\"model\":1," IN "}", "model", "invalid_type"},
    {"{\"model\":\"\"," IN "}", "model", "invalid_value"},
    {"{" M ",\"foo\":1," IN "}", "foo", "unknown_parameter"},
    {"{" M ",\"n\":2," IN "}", "n", "unknown_parameter"},
    /* input */
    {"{" M "}", "input", "missing_required_parameter"},
    {"{" M ",\"input\":5}", "input", "invalid_type"},
    {"{" M ",\"input\":{}}", "input", "invalid_type"},
    {"{" M ",\"input\":[]}", "input", "invalid_value"},
    {"{" M ",\"input\":[1]}", "input[0]", "invalid_type"},
    {"{" M ",\"input\":[\"hi\"]}", "input[0]", "invalid_type"},
    {"{" M ",\"input\":[{}]}", "input[0].type", "missing_required_parameter"},
    {"{" M ",\"input\":[{\"type\":5}]}", "input[0].type", "invalid_type"},
    {"{" M ",\"input\":[{\"type\":\"web_search_call\",\"id\":\"ws_1\"}]}", "input[0].type",
     "invalid_value"},
    {"{" M ",\"input\":[{\"type\":\"item_reference\"}]}", "input[0].id",
     "missing_required_parameter"},
    {"{" M ",\"input\":[{\"type\":\"item_reference\",\"id\":5}]}", "input[0].id", "invalid_type"},
    {"{" M ",\"input\":[{\"type\":\"item_reference\",\"id\":\"a b\"}]}", "input[0].id",
     "invalid_value"},
    {"{" M ",\"input\":[{\"type\":\"item_reference\",\"id\":\"msg_1\",\"role\":\"user\"}]}",
     "input[0].role", "unknown_parameter"},
    {"{" M ",\"input\":[{\"type\":\"item_reference\",\"id\":\"msg_1\"},{\"type\":\"item_"
     "reference\",\"id\":\"msg_1\"}]}",
     "input[1].id", "invalid_value"},
    {"{" M ",\"input\":[{\"type\":\"reasoning\",\"summary\":[]}]}", "input[0].type",
     "invalid_value"},
    {"{" M ",\"input\":[{\"type\":\"nonsense\"}]}", "input[0].type", "invalid_value"},
    /* message items */
    {"{" M ",\"input\":[{\"type\":\"message\",\"content\":\"x\"}]}", "input[0].role",
     "missing_required_parameter"},
    {"{" M ",\"input\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "input[0].role", "invalid_value"},
    {"{" M ",\"input\":[{\"role\":5,\"content\":\"x\"}]}", "input[0].role", "invalid_type"},
    {"{" M ",\"input\":[{\"role\":\"user\"}]}", "input[0].content", "missing_required_parameter"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":5}]}", "input[0].content", "invalid_type"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":null}]}", "input[0].content",
     "invalid_type"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":[5]}]}", "input[0].content[0]",
     "invalid_type"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":[{}]}]}", "input[0].content[0].type",
     "missing_required_parameter"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\"}]}]}",
     "input[0].content[0].text", "missing_required_parameter"},
    {"{" M ",\"input\":[\"x\"]}", "input[0]", "invalid_type"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":\"ok\"},{\"role\":\"user\",\"content\":[{"
     "\"type\":\"input_text\",\"text\":5}]}]}",
     "input[1].content[0].text", "invalid_type"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"file_id\":"
     "\"file_1\"}]}]}",
     "input[0].content[0].file_id", "invalid_value"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\"}]}]}",
     "input[0].content[0].image_url", "missing_required_parameter"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":"
     "\"https://x/y.png\",\"detail\":\"max\"}]}]}",
     "input[0].content[0].detail", "invalid_value"},
    {"{" M ",\"input\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"input_image\","
     "\"image_url\":\"https://x/y.png\"}]}]}",
     "input[0].content[0].type", "invalid_value"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_file\",\"file_id\":"
     "\"f\"}]}]}",
     "input[0].content[0].type", "invalid_value"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"output_text\",\"text\":\"x\"}"
     "]}]}",
     "input[0].content[0].type", "invalid_value"},
    {"{" M ",\"input\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"input_text\",\"text\":"
     "\"x\"}]}]}",
     "input[0].content[0].type", "invalid_value"},
    {"{" M ",\"input\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"refusal\"}]}]}",
     "input[0].content[0].refusal", "missing_required_parameter"},
    {"{" M
     ",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"refusal\",\"refusal\":\"no\"}]}]}",
     "input[0].content[0].type", "invalid_value"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"x\","
     "\"extra\":1}]}]}",
     "input[0].content[0].extra", "unknown_parameter"},
    {"{" M ",\"input\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":"
     "\"x\",\"annotations\":5}]}]}",
     "input[0].content[0].annotations", "invalid_type"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":\"x\",\"foo\":1}]}", "input[0].foo",
     "unknown_parameter"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":\"x\",\"status\":\"done\"}]}",
     "input[0].status", "invalid_value"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":\"x\",\"status\":1}]}", "input[0].status",
     "invalid_type"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":\"x\",\"id\":5}]}", "input[0].id",
     "invalid_type"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":\"x\",\"id\":\"a b\"}]}", "input[0].id",
     "invalid_value"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":\"x\",\"id\":\"\"}]}", "input[0].id",
     "invalid_value"},
    {"{" M ",\"input\":[{\"role\":\"user\",\"content\":\"x\",\"id\":\"msg_1\"},{\"role\":\"user\","
     "\"content\":\"y\",\"id\":\"msg_1\"}]}",
     "input[1].id", "invalid_value"},
    /* function_call and function_call_output items */
    {"{" M ",\"input\":[{\"type\":\"function_call\",\"name\":\"f\",\"arguments\":\"{}\"}]}",
     "input[0].call_id", "missing_required_parameter"},
    {"{" M ",\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"arguments\":\"{}\"}]}",
     "input[0].name", "missing_required_parameter"},
    {"{" M ",\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\"}]}",
     "input[0].arguments", "missing_required_parameter"},
    {"{" M ",\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\","
     "\"arguments\":{}}]}",
     "input[0].arguments", "invalid_type"},
    {"{" M ",\"input\":[{\"type\":\"function_call\",\"call_id\":\"\",\"name\":\"f\","
     "\"arguments\":\"{}\"}]}",
     "input[0].call_id", "invalid_value"},
    {"{" M ",\"input\":[{\"type\":\"function_call_output\",\"output\":\"x\"}]}", "input[0].call_id",
     "missing_required_parameter"},
    {"{" M ",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\"}]}", "input[0].output",
     "missing_required_parameter"},
    {"{" M ",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":5}]}",
     "input[0].output", "invalid_type"},
    {"{" M ",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":[{\"type\":"
     "\"input_image\",\"image_url\":\"x\"}]}]}",
     "input[0].output[0].type", "invalid_value"},
    {"{" M ",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":[5]}]}",
     "input[0].output[0]", "invalid_type"},
    {"{" M ",\"input\":[{\"type\":\"function_call_output\",\"call_id\":5,\"output\":\"x\"}]}",
     "input[0].call_id", "invalid_type"},
    {"{" M ",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":\"x\","
     "\"name\":\"f\"}]}",
     "input[0].name", "unknown_parameter"},
    /* instructions, previous_response_id, conversation */
    {"{" M "," IN ",\"instructions\":5}", "instructions", "invalid_type"},
    {"{" M "," IN ",\"instructions\":[\"x\"]}", "instructions", "invalid_type"},
    {"{" M "," IN ",\"previous_response_id\":5}", "previous_response_id", "invalid_type"},
    {"{" M "," IN ",\"previous_response_id\":\"msg_1\"}", "previous_response_id", "invalid_value"},
    {"{" M "," IN ",\"previous_response_id\":\"\"}", "previous_response_id", "invalid_value"},
    {"{" M "," IN ",\"conversation\":5}", "conversation", "invalid_type"},
    {"{" M "," IN ",\"conversation\":\"resp_1\"}", "conversation", "invalid_value"},
    {"{" M "," IN ",\"conversation\":{}}", "conversation.id", "missing_required_parameter"},
    {"{" M "," IN ",\"conversation\":{\"id\":5}}", "conversation.id", "invalid_type"},
    {"{" M "," IN ",\"conversation\":{\"id\":\"conv_1\",\"x\":1}}", "conversation.x",
     "unknown_parameter"},
    {"{" M "," IN ",\"conversation\":\"conv_1\",\"previous_response_id\":\"resp_1\"}",
     "conversation", "mutually_exclusive_parameters"},
    /* flags */
    {"{" M "," IN ",\"background\":\"yes\"}", "background", "invalid_type"},
    {"{" M "," IN ",\"stream\":1}", "stream", "invalid_type"},
    {"{" M "," IN ",\"store\":\"false\"}", "store", "invalid_type"},
    {"{" M "," IN ",\"parallel_tool_calls\":\"no\"}", "parallel_tool_calls", "invalid_type"},
    {"{" M "," IN ",\"background\":true,\"store\":false}", "background", "invalid_value"},
    /* metadata */
    {"{" M "," IN ",\"metadata\":[]}", "metadata", "invalid_type"},
    {"{" M "," IN ",\"metadata\":\"x\"}", "metadata", "invalid_type"},
    {"{" M "," IN ",\"metadata\":{\"k\":5}}", "metadata.k", "invalid_type"},
    {"{" M "," IN ",\"metadata\":{\"k\":null}}", "metadata.k", "invalid_type"},
    {"{" M "," IN ",\"metadata\":{\"k\":{\"a\":\"b\"}}}", "metadata.k", "invalid_type"},
    /* numbers */
    {"{" M "," IN ",\"max_output_tokens\":\"100\"}", "max_output_tokens", "invalid_type"},
    {"{" M "," IN ",\"max_output_tokens\":100.5}", "max_output_tokens", "invalid_type"},
    {"{" M "," IN ",\"max_output_tokens\":15}", "max_output_tokens", "integer_below_min_value"},
    {"{" M "," IN ",\"max_output_tokens\":0}", "max_output_tokens", "integer_below_min_value"},
    {"{" M "," IN ",\"max_output_tokens\":-1}", "max_output_tokens", "integer_below_min_value"},
    {"{" M "," IN ",\"max_output_tokens\":4294967296}", "max_output_tokens",
     "integer_above_max_value"},
    {"{" M "," IN ",\"temperature\":\"1\"}", "temperature", "invalid_type"},
    {"{" M "," IN ",\"temperature\":-0.1}", "temperature", "decimal_below_min_value"},
    {"{" M "," IN ",\"temperature\":2.01}", "temperature", "decimal_above_max_value"},
    {"{" M "," IN ",\"temperature\":1e308}", "temperature", "decimal_above_max_value"},
    {"{" M "," IN ",\"top_p\":true}", "top_p", "invalid_type"},
    {"{" M "," IN ",\"top_p\":1.5}", "top_p", "decimal_above_max_value"},
    {"{" M "," IN ",\"top_p\":-1}", "top_p", "decimal_below_min_value"},
    /* tools and tool_choice */
    {"{" M "," IN ",\"tools\":{}}", "tools", "invalid_type"},
    {"{" M "," IN ",\"tools\":[5]}", "tools[0]", "invalid_type"},
    {"{" M "," IN ",\"tools\":[{}]}", "tools[0].type", "missing_required_parameter"},
    {"{" M "," IN ",\"tools\":[{\"type\":\"web_search\"}]}", "tools[0].type", "invalid_value"},
    {"{" M "," IN ",\"tools\":[{\"type\":\"mcp\",\"server_label\":\"x\"}]}", "tools[0].type",
     "invalid_value"},
    {"{" M "," IN ",\"tools\":[{\"type\":\"function\"}]}", "tools[0].name",
     "missing_required_parameter"},
    {"{" M "," IN ",\"tools\":[{\"type\":\"function\",\"name\":\"a b\"}]}", "tools[0].name",
     "invalid_value"},
    {"{" M "," IN ",\"tools\":[{\"type\":\"function\",\"name\":\"\"}]}", "tools[0].name",
     "invalid_value"},
    {"{" M "," IN ",\"tools\":[{\"type\":\"function\",\"name\":\"f\"},{\"type\":\"function\","
     "\"name\":\"f\"}]}",
     "tools[1].name", "invalid_value"},
    {"{" M "," IN ",\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"parameters\":\"{}\"}]}",
     "tools[0].parameters", "invalid_type"},
    {"{" M "," IN ",\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"strict\":\"yes\"}]}",
     "tools[0].strict", "invalid_type"},
    {"{" M "," IN ",\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"description\":1}]}",
     "tools[0].description", "invalid_type"},
    {"{" M "," IN ",\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"function\":{}}]}",
     "tools[0].function", "unknown_parameter"},
    {"{" M "," IN ",\"tool_choice\":\"sometimes\"}", "tool_choice", "invalid_value"},
    {"{" M "," IN ",\"tool_choice\":5}", "tool_choice", "invalid_type"},
    {"{" M "," IN ",\"tool_choice\":\"required\"}", "tool_choice", "invalid_value"},
    {"{" M "," IN ",\"tool_choice\":{\"type\":\"file_search\"}}", "tool_choice.type",
     "invalid_value"},
    {"{" M "," IN ",\"tool_choice\":{}}", "tool_choice.type", "missing_required_parameter"},
    {"{" M "," IN ",\"tool_choice\":{\"type\":\"function\"}}", "tool_choice.name",
     "missing_required_parameter"},
    {"{" M "," IN ",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],\"tool_choice\":{\"type\":"
     "\"function\",\"name\":\"g\"}}",
     "tool_choice.name", "invalid_value"},
    /* the fields that are accepted and ignored still have types, and the refused ones */
    {"{" M "," IN ",\"include\":\"x\"}", "include", "invalid_type"},
    {"{" M "," IN ",\"user\":5}", "user", "invalid_type"},
    {"{" M "," IN ",\"reasoning\":\"high\"}", "reasoning", "invalid_type"},
    {"{" M "," IN ",\"truncation\":\"sometimes\"}", "truncation", "invalid_value"},
    {"{" M "," IN ",\"text\":5}", "text", "invalid_type"},
    {"{" M "," IN ",\"text\":{\"format\":5}}", "text.format", "invalid_type"},
    {"{" M "," IN ",\"text\":{\"format\":{}}}", "text.format.type", "missing_required_parameter"},
    {"{" M "," IN ",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"x\",\"schema\":{}}}"
     "}",
     "text.format.type", "invalid_value"},
    {"{" M "," IN ",\"text\":{\"format\":{\"type\":\"json_object\"}}}", "text.format.type",
     "invalid_value"},
    {"{" M "," IN ",\"prompt\":{\"id\":\"pmpt_1\"}}", "prompt", "invalid_value"},
};

static void test_hostile_bodies_get_a_400_naming_the_parameter(void **state)
{
    for (size_t i = 0; i < sizeof(HOSTILE) / sizeof(HOSTILE[0]); i++)
        expect_400(HOSTILE[i].body, HOSTILE[i].param, HOSTILE[i].code);
}

/* A model name the gateway cannot route (GATEWAY_MODEL_MAX bytes or more) is the client's 400,
 * not a refusal at submit time (that was a 503 "shutting down"); one byte less is a name. */
static void test_a_model_name_too_long_to_route_is_a_400(void **state)
{
    char body[512], model[GATEWAY_MODEL_MAX + 1];
    memset(model, 'q', GATEWAY_MODEL_MAX);
    model[GATEWAY_MODEL_MAX] = '\0';
    snprintf(body, sizeof(body), "{\"model\":\"%s\"," IN "}", model);
    expect_400(body, "model", "invalid_value");
    struct run_request rq;
    model[GATEWAY_MODEL_MAX - 1] = '\0';
    snprintf(body, sizeof(body), "{\"model\":\"%s\"," IN "}", model);
    expect_ok(body, &rq);
    assert_int_equal(strlen(rq.model), GATEWAY_MODEL_MAX - 1);
    run_request_free(&rq);
}

static void test_too_many_tools_are_refused(void **state)
{
    json_t *b = json_pack("{s:s, s:s, s:[]}", "model", "m", "input", "hi", "tools");
    struct run_request rq;
    struct run_error err = {0};
    char name[16];

    for (int i = 0; i < 129; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        json_array_append_new(json_object_get(b, "tools"),
                              json_pack("{s:s, s:s}", "type", "function", "name", name));
    }
    assert_int_equal(run_request_parse(b, &rq, &err), -EINVAL);
    assert_refusal(&err, "129 tools");
    assert_string_equal(err.param, "tools");
    json_array_remove(json_object_get(b, "tools"), 0);
    assert_int_equal(run_request_parse(b, &rq, &err), 0);
    assert_int_equal(json_array_size(rq.tools), 128);
    run_request_free(&rq);
    json_decref(b);
}

/* Every value of a body the SDKs send, replaced in turn by each wrong kind of value: a 400
 * whenever refused, never a crash, and a refusal always names a parameter. */
static json_t *const *hostile_values(size_t *n)
{
    static json_t *v[8];
    if (!v[0]) {
        v[0] = json_integer(5);
        v[1] = json_string("x");
        v[2] = json_null();
        v[3] = json_array();
        v[4] = json_object();
        v[5] = json_true();
        v[6] = json_real(-1.5);
        v[7] = json_pack("[{}]");
    }
    *n = 8;
    return v;
}

/* Parses a copy of root as it stands: accepted, or a 400 with a sentence naming a parameter. */
static void try_parse(json_t *root, const char *what, size_t *tried)
{
    json_t *copy = json_deep_copy(root);
    struct run_request rq;
    struct run_error err = {0};
    int rc = run_request_parse(copy, &rq, &err);
    if (rc == 0) {
        run_request_free(&rq);
    } else {
        assert_int_equal(rc, -EINVAL);
        assert_refusal(&err, what);
        assert_true(err.param[0] != '\0');
    }
    json_decref(copy);
    (*tried)++;
}

static void mutate_each(json_t *root, json_t *node, size_t *tried)
{
    size_t nh;
    json_t *const *hv = hostile_values(&nh);
    if (json_is_object(node)) {
        const char *key;
        json_t *child;
        void *tmp;
        json_object_foreach_safe(node, tmp, key, child)
        {
            json_t *keep = json_incref(child);
            for (size_t h = 0; h < nh; h++) {
                json_object_set(node, key, hv[h]);
                try_parse(root, key, tried);
            }
            json_object_set(node, key, keep);
            mutate_each(root, keep, tried);
            json_decref(keep);
        }
    } else if (json_is_array(node)) {
        size_t i;
        json_t *child;
        json_array_foreach(node, i, child)
        {
            json_t *keep = json_incref(child);
            for (size_t h = 0; h < nh; h++) {
                json_array_set(node, i, hv[h]);
                try_parse(root, "array element", tried);
            }
            json_array_set(node, i, keep);
            mutate_each(root, keep, tried);
            json_decref(keep);
        }
    }
}

static const char FULL_BODY[] =
    "{\"model\":\"m\",\"instructions\":\"be brief\",\"input\":["
    "{\"role\":\"system\",\"content\":\"sys\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"hi\"}]},"
    "{\"id\":\"msg_a1\",\"type\":\"message\",\"role\":\"assistant\",\"status\":\"completed\","
    "\"content\":[{\"type\":\"output_text\",\"text\":\"hello\",\"annotations\":[]}]},"
    "{\"type\":\"function_call\",\"call_id\":\"call_1\",\"name\":\"get_weather\","
    "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"},"
    "{\"type\":\"function_call_output\",\"call_id\":\"call_1\",\"output\":\"sunny\"}],"
    "\"previous_response_id\":\"resp_1\",\"background\":true,\"stream\":true,\"store\":true,"
    "\"metadata\":{\"k\":\"v\"},\"max_output_tokens\":64,\"temperature\":0.5,\"top_p\":0.9,"
    "\"tools\":[{\"type\":\"function\",\"name\":\"get_weather\",\"description\":\"d\","
    "\"parameters\":{\"type\":\"object\"},\"strict\":true}],"
    "\"tool_choice\":{\"type\":\"function\",\"name\":\"get_weather\"},"
    "\"parallel_tool_calls\":false,\"include\":[],\"user\":\"u\",\"truncation\":\"auto\","
    "\"text\":{\"format\":{\"type\":\"text\"},\"verbosity\":\"low\"},\"reasoning\":{},"
    "\"stream_options\":{\"include_obfuscation\":false},\"service_tier\":\"auto\"}";

static void test_every_field_replaced_by_a_wrong_value_is_a_400_or_accepted(void **state)
{
    json_t *root = parse_json(FULL_BODY);
    size_t tried = 0;
    mutate_each(root, root, &tried);
    assert_true(tried > 300);
    json_decref(root);
}

static void test_full_body_is_read_field_by_field(void **state)
{
    struct run_request rq;
    expect_ok(FULL_BODY, &rq);
    assert_string_equal(rq.model, "m");
    assert_string_equal(rq.instructions, "be brief");
    assert_string_equal(rq.previous_response_id, "resp_1");
    assert_null(rq.conversation_id);
    assert_true(rq.background && rq.stream && rq.store);
    assert_string_equal(json_string_value(json_object_get(rq.metadata, "k")), "v");
    assert_int_equal(rq.max_output_tokens, 64);
    assert_true(rq.has_temperature && rq.has_top_p);
    assert_true(rq.temperature == 0.5 && rq.top_p == 0.9);
    assert_int_equal(json_array_size(rq.tools), 1);
    assert_string_equal(json_string_value(json_object_get(rq.tool_choice, "name")), "get_weather");
    assert_int_equal(rq.parallel_tool_calls, 0);
    assert_int_equal(json_array_size(rq.input), 5);

    /* every item typed and with an id of its kind */
    json_t *it = json_array_get(rq.input, 0);
    assert_string_equal(json_string_value(json_object_get(it, "type")), "message");
    assert_string_equal(json_string_value(json_object_get(it, "role")), "system");
    assert_int_equal(strncmp(json_string_value(json_object_get(it, "id")), "msg_", 4), 0);
    json_t *part = json_array_get(json_object_get(it, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(part, "type")), "input_text");
    assert_string_equal(json_string_value(json_object_get(part, "text")), "sys");
    it = json_array_get(rq.input, 2);
    assert_string_equal(json_string_value(json_object_get(it, "id")), "msg_a1");
    assert_string_equal(json_string_value(json_object_get(it, "status")), "completed");
    it = json_array_get(rq.input, 3);
    assert_int_equal(strncmp(json_string_value(json_object_get(it, "id")), "fc_", 3), 0);
    assert_string_equal(json_string_value(json_object_get(it, "name")), "get_weather");
    it = json_array_get(rq.input, 4);
    assert_int_equal(strncmp(json_string_value(json_object_get(it, "id")), "fco_", 4), 0);
    assert_string_equal(json_string_value(json_object_get(it, "output")), "sunny");
    run_request_free(&rq);
    run_request_free(&rq); /* a cleared request frees as a no-op */
}

static void test_string_input_becomes_one_user_message(void **state)
{
    struct run_request rq;
    expect_ok("{\"model\":\"m\",\"input\":\"Hello\"}", &rq);
    assert_true(json_is_array(rq.input));
    assert_int_equal(json_array_size(rq.input), 1);
    json_t *it = json_array_get(rq.input, 0);
    const char *id = json_string_value(json_object_get(it, "id"));
    assert_non_null(id);
    assert_int_equal(strncmp(id, "msg_", 4), 0);
    assert_int_equal(strlen(id), 4 + 32);
    json_t *want = parse_json("[{\"type\":\"input_text\",\"text\":\"Hello\"}]");
    assert_true(json_equal(json_object_get(it, "content"), want));
    assert_string_equal(json_string_value(json_object_get(it, "role")), "user");
    assert_string_equal(json_string_value(json_object_get(it, "type")), "message");
    json_decref(want);
    /* the defaults */
    assert_true(rq.store);
    assert_false(rq.background || rq.stream);
    assert_int_equal(rq.parallel_tool_calls, -1);
    assert_false(rq.has_temperature || rq.has_top_p);
    assert_int_equal(rq.max_output_tokens, 0);
    assert_null(rq.metadata);
    assert_null(rq.tools);
    assert_null(rq.tool_choice);
    assert_null(rq.instructions);
    run_request_free(&rq);
}

static void test_easy_messages_get_typed_content_by_role(void **state)
{
    struct run_request rq;
    expect_ok("{\"model\":\"m\",\"input\":[{\"role\":\"developer\",\"content\":\"d\"},"
              "{\"role\":\"assistant\",\"content\":\"a\"},"
              "{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"u1\"},"
              "{\"type\":\"input_text\",\"text\":\"u2\"}]},"
              "{\"role\":\"assistant\",\"id\":\"msg_x\",\"content\":[{\"type\":\"output_text\","
              "\"text\":\"a2\"}]}]}",
              &rq);
    json_t *want = parse_json(
        "[{\"type\":\"message\",\"role\":\"developer\",\"content\":[{\"type\":\"input_text\","
        "\"text\":\"d\"}]},"
        "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
        "\"text\":\"a\",\"annotations\":[]}]},"
        "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
        "\"text\":\"u1\"},{\"type\":\"input_text\",\"text\":\"u2\"}]},"
        "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
        "\"text\":\"a2\",\"annotations\":[]}]}]");
    for (size_t i = 0; i < 4; i++) {
        json_t *got = json_deep_copy(json_array_get(rq.input, i));
        assert_non_null(json_object_get(got, "id"));
        json_object_del(got, "id");
        if (!json_equal(got, json_array_get(want, i))) {
            char *s = json_dumps(got, 0);
            fail_msg("item %zu normalised as %s", i, s);
        }
        json_decref(got);
    }
    assert_string_equal(json_string_value(json_object_get(json_array_get(rq.input, 3), "id")),
                        "msg_x");
    json_decref(want);
    run_request_free(&rq);
}

/* The parts the engine's chat API carries besides text: images by URL, refusals, tool output
 * as text parts. */
static void test_images_refusals_and_tool_output_parts_are_kept(void **state)
{
    struct run_request rq;
    expect_ok("{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":"
              "\"input_text\",\"text\":\"What is it?\"},{\"type\":\"input_image\",\"image_url\":"
              "\"data:image/png;base64,AAAA\",\"detail\":\"low\",\"file_id\":null}]},"
              "{\"role\":\"assistant\",\"content\":[{\"type\":\"refusal\",\"refusal\":\"No.\"}]},"
              "{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":[{\"type\":"
              "\"input_text\",\"text\":\"42\"}]}]}",
              &rq);
    json_t *want =
        parse_json("[[{\"type\":\"input_text\",\"text\":\"What is it?\"},{\"type\":\"input_image\","
                   "\"image_url\":\"data:image/png;base64,AAAA\",\"detail\":\"low\"}],"
                   "[{\"type\":\"refusal\",\"refusal\":\"No.\"}]]");
    assert_true(json_equal(json_object_get(json_array_get(rq.input, 0), "content"),
                           json_array_get(want, 0)));
    assert_true(json_equal(json_object_get(json_array_get(rq.input, 1), "content"),
                           json_array_get(want, 1)));
    json_t *out = json_object_get(json_array_get(rq.input, 2), "output");
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "text")), "42");
    json_decref(want);
    run_request_free(&rq);
}

/* The stored body parses again to the same request: what recovery and GET rely on. */
static void test_the_normalised_body_parses_again_unchanged(void **state)
{
    struct run_request a, b;
    struct run_error err;
    expect_ok(FULL_BODY, &a);
    json_t *again = json_deep_copy(a.root);
    assert_int_equal(run_request_parse(again, &b, &err), 0);
    assert_true(json_equal(a.input, b.input));
    assert_true(json_equal(a.root, b.root));
    json_decref(again);
    run_request_free(&a);
    run_request_free(&b);
}

static void test_nulls_mean_defaults(void **state)
{
    struct run_request rq;
    expect_ok(
        "{\"model\":\"m\",\"input\":\"x\",\"instructions\":null,\"previous_response_id\":null,"
        "\"conversation\":null,\"background\":null,\"stream\":null,\"store\":null,"
        "\"metadata\":null,\"max_output_tokens\":null,\"temperature\":null,\"top_p\":null,"
        "\"tools\":null,\"tool_choice\":null,\"parallel_tool_calls\":null,\"include\":null,"
        "\"reasoning\":null,\"truncation\":null,\"prompt\":null,\"service_tier\":null}",
        &rq);
    assert_true(rq.store);
    assert_int_equal(rq.parallel_tool_calls, -1);
    assert_null(rq.metadata);
    assert_null(rq.tools);
    run_request_free(&rq);
}

static void test_conversation_forms_and_continuations_without_input(void **state)
{
    struct run_request rq;
    expect_ok("{\"model\":\"m\",\"input\":\"x\",\"conversation\":\"conv_1\"}", &rq);
    assert_string_equal(rq.conversation_id, "conv_1");
    run_request_free(&rq);
    expect_ok("{\"model\":\"m\",\"input\":\"x\",\"conversation\":{\"id\":\"conv_2\"}}", &rq);
    assert_string_equal(rq.conversation_id, "conv_2");
    run_request_free(&rq);
    expect_ok("{\"model\":\"m\",\"conversation\":\"conv_3\"}", &rq);
    assert_int_equal(json_array_size(rq.input), 0);
    run_request_free(&rq);
    expect_ok("{\"model\":\"m\",\"previous_response_id\":\"resp_3\",\"input\":[]}", &rq);
    assert_int_equal(json_array_size(rq.input), 0);
    run_request_free(&rq);
}

static void test_sampling_bounds_are_inclusive(void **state)
{
    struct run_request rq;
    expect_ok("{\"model\":\"m\",\"input\":\"x\",\"temperature\":0,\"top_p\":1,"
              "\"max_output_tokens\":16}",
              &rq);
    assert_true(rq.has_temperature && rq.temperature == 0);
    assert_true(rq.top_p == 1);
    assert_int_equal(rq.max_output_tokens, 16);
    run_request_free(&rq);
    expect_ok("{\"model\":\"m\",\"input\":\"x\",\"temperature\":2,\"top_p\":0,"
              "\"max_output_tokens\":2147483647}",
              &rq);
    assert_true(rq.temperature == 2 && rq.top_p == 0);
    run_request_free(&rq);
}

static void test_tool_choice_forms(void **state)
{
    static const char *const ok[] = {"\"auto\"", "\"none\"", "\"required\"",
                                     "{\"type\":\"function\",\"name\":\"f\"}"};
    char body[256];
    for (size_t i = 0; i < 4; i++) {
        struct run_request rq;
        snprintf(body, sizeof(body),
                 "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":"
                 "\"f\",\"parameters\":null,\"strict\":null}],\"tool_choice\":%s}",
                 ok[i]);
        expect_ok(body, &rq);
        assert_non_null(rq.tool_choice);
        run_request_free(&rq);
    }
}

/* What the Vercel AI SDK's openai.responses() model sends for a chat with a tool result. */
static void test_the_ai_sdk_body_is_accepted(void **state)
{
    struct run_request rq;
    expect_ok("{\"model\":\"m\",\"input\":[{\"role\":\"system\",\"content\":\"You help.\"},"
              "{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"Weather?\"}]},"
              "{\"type\":\"function_call\",\"call_id\":\"call_9\",\"name\":\"weather\","
              "\"arguments\":\"{}\"},"
              "{\"type\":\"function_call_output\",\"call_id\":\"call_9\",\"output\":\"{\\\"t\\\":"
              "20}\"}],\"temperature\":0,\"max_output_tokens\":100,"
              "\"tools\":[{\"type\":\"function\",\"name\":\"weather\",\"description\":\"w\","
              "\"parameters\":{\"type\":\"object\",\"properties\":{}},\"strict\":false}],"
              "\"tool_choice\":\"auto\",\"stream\":true}",
              &rq);
    assert_int_equal(json_array_size(rq.input), 4);
    run_request_free(&rq);
}

/* The AI SDK names earlier assistant turns by id (store: true); the scheduler resolves them. */
static void test_item_references_are_kept_for_the_scheduler(void **state)
{
    struct run_request rq;
    expect_ok("{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":\"hi\"},"
              "{\"type\":\"item_reference\",\"id\":\"msg_abc\"},"
              "{\"role\":\"user\",\"content\":\"and?\"}]}",
              &rq);
    json_t *ref = json_array_get(rq.input, 1);
    assert_int_equal(json_object_size(ref), 2);
    assert_string_equal(json_string_value(json_object_get(ref, "type")), "item_reference");
    assert_string_equal(json_string_value(json_object_get(ref, "id")), "msg_abc");
    run_request_free(&rq);
}

/* ---- metadata limits: characters, not bytes ---- */

static char *repeat(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    char *s = malloc(u * n + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * u, unit, u);
    s[u * n] = '\0';
    return s;
}

/* A precision or a field's size may cut a character in two; the error stays valid UTF-8 (the
 * routes could not build its JSON otherwise). */
static void test_errors_cut_inside_a_character_stay_valid_utf8(void **state)
{
    for (size_t n = 60; n < 70; n++) {
        char *key = repeat("\xc3\xa9", n);
        char *odd = xasprintf("x%s", key); /* shifts the cut by one byte */
        for (int k = 0; k < 2; k++) {
            json_t *b = json_pack("{s:s, s:s, s:i}", "model", "m", "input", "x", k ? odd : key, 1);
            struct run_request rq;
            struct run_error err = {0};
            assert_int_equal(run_request_parse(b, &rq, &err), -EINVAL);
            assert_string_equal(err.code, "unknown_parameter");
            json_t *m = json_string(err.message), *p = json_string(err.param);
            assert_non_null(m);
            assert_non_null(p);
            json_decref(m);
            json_decref(p);
            json_decref(b);
        }
        free(key);
        free(odd);
    }
}

static int parse_with_metadata(json_t *md, struct run_error *err)
{
    json_t *b = json_pack("{s:s, s:s, s:o}", "model", "m", "input", "x", "metadata", md);
    struct run_request rq;
    int rc = run_request_parse(b, &rq, err);
    if (rc == 0)
        run_request_free(&rq);
    json_decref(b);
    return rc;
}

static void test_metadata_limits_at_the_boundaries(void **state)
{
    struct run_error err;
    json_t *md = json_object();
    char key[16];

    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        json_object_set_new(md, key, json_string("v"));
    }
    assert_int_equal(parse_with_metadata(json_incref(md), &err), 0);
    json_object_set_new(md, "k16", json_string("v"));
    assert_int_equal(parse_with_metadata(md, &err), -EINVAL);
    assert_refusal(&err, "17 keys");
    assert_string_equal(err.param, "metadata");
    assert_string_equal(err.code, "object_above_max_properties");

    static const char *const units[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t u = 0; u < 4; u++) {
        char *k64 = repeat(units[u], 64), *k65 = repeat(units[u], 65);
        char *v512 = repeat(units[u], 512), *v513 = repeat(units[u], 513);
        assert_int_equal(parse_with_metadata(json_pack("{s:s}", k64, v512), &err), 0);
        assert_int_equal(parse_with_metadata(json_pack("{s:s}", k65, "v"), &err), -EINVAL);
        assert_refusal(&err, "65-character key");
        assert_string_equal(err.param, "metadata");
        assert_int_equal(parse_with_metadata(json_pack("{s:s}", "k", v513), &err), -EINVAL);
        assert_refusal(&err, "513-character value");
        assert_string_equal(err.param, "metadata.k");
        assert_string_equal(err.code, "string_above_max_length");
        free(k64);
        free(k65);
        free(v512);
        free(v513);
    }
}

/* ---- the Conversations API's bodies ---- */

static int conv_parse(int which, const char *body, struct run_conversation_body *cb,
                      struct run_error *err)
{
    json_t *b = parse_json(body);
    int rc = which == 0   ? run_conversation_create_parse(b, cb, err)
             : which == 1 ? run_conversation_update_parse(b, cb, err)
                          : run_conversation_items_parse(b, cb, err);
    json_decref(b);
    return rc;
}

static void conv_expect_400(int which, const char *body, const char *param, const char *code)
{
    struct run_conversation_body cb;
    struct run_error err = {0};
    if (conv_parse(which, body, &cb, &err) != -EINVAL)
        fail_msg("accepted: %s", body);
    assert_refusal(&err, body);
    if (strcmp(err.param, param) != 0 || strcmp(err.code, code) != 0)
        fail_msg("%s: %s/%s, want %s/%s (%s)", body, err.param, err.code, param, code, err.message);
}

static char *items_body(const char *key, int n)
{
    json_t *b = json_object();
    json_t *items = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(items, json_pack("{s:s, s:s}", "role", "user", "content", "x"));
    json_object_set_new(b, key, items);
    char *s = json_dumps(b, 0);
    json_decref(b);
    return s;
}

static void test_conversation_bodies(void **state)
{
    struct run_conversation_body cb;
    struct run_error err;
    char *s;

    /* create: everything optional, items ≤ 20, same item rules as input */
    assert_int_equal(conv_parse(0, "{}", &cb, &err), 0);
    assert_int_equal(json_array_size(cb.items), 0);
    assert_false(cb.has_metadata);
    run_conversation_body_free(&cb);
    s = items_body("items", 20);
    assert_int_equal(conv_parse(0, s, &cb, &err), 0);
    assert_int_equal(json_array_size(cb.items), 20);
    assert_int_equal(
        strncmp(json_string_value(json_object_get(json_array_get(cb.items, 19), "id")), "msg_", 4),
        0);
    run_conversation_body_free(&cb);
    free(s);
    s = items_body("items", 21);
    conv_expect_400(0, s, "items", "array_above_max_length");
    free(s);
    assert_int_equal(conv_parse(0, "{\"metadata\":{\"a\":\"b\"},\"items\":null}", &cb, &err), 0);
    assert_true(cb.has_metadata);
    assert_non_null(cb.metadata);
    run_conversation_body_free(&cb);
    conv_expect_400(0, "[]", "", "invalid_type");
    conv_expect_400(0, "{\"items\":{}}", "items", "invalid_type");
    conv_expect_400(0, "{\"items\":[{\"type\":\"web_search_call\"}]}", "items[0].type",
                    "invalid_value");
    /* A conversation stores its items as they are: a reference would name nothing there. */
    conv_expect_400(0, "{\"items\":[{\"type\":\"item_reference\",\"id\":\"msg_1\"}]}",
                    "items[0].type", "invalid_value");
    conv_expect_400(0, "{\"items\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\"}]}]}",
                    "items[0].content[0].text", "missing_required_parameter");
    conv_expect_400(0, "{\"metadata\":{\"k\":1}}", "metadata.k", "invalid_type");
    conv_expect_400(0, "{\"name\":\"x\"}", "name", "unknown_parameter");

    /* update: metadata required, null clears */
    assert_int_equal(conv_parse(1, "{\"metadata\":null}", &cb, &err), 0);
    assert_true(cb.has_metadata);
    assert_null(cb.metadata);
    run_conversation_body_free(&cb);
    assert_int_equal(conv_parse(1, "{\"metadata\":{\"x\":\"y\"}}", &cb, &err), 0);
    assert_non_null(cb.metadata);
    run_conversation_body_free(&cb);
    conv_expect_400(1, "{}", "metadata", "missing_required_parameter");
    conv_expect_400(1, "{\"metadata\":[]}", "metadata", "invalid_type");
    conv_expect_400(1, "{\"metadata\":{},\"items\":[]}", "items", "unknown_parameter");

    /* items: 1..20 */
    s = items_body("items", 1);
    assert_int_equal(conv_parse(2, s, &cb, &err), 0);
    assert_int_equal(json_array_size(cb.items), 1);
    run_conversation_body_free(&cb);
    run_conversation_body_free(NULL);
    free(s);
    s = items_body("items", 21);
    conv_expect_400(2, s, "items", "array_above_max_length");
    free(s);
    conv_expect_400(2, "{}", "items", "missing_required_parameter");
    conv_expect_400(2, "{\"items\":[]}", "items", "array_below_min_length");
    conv_expect_400(2, "{\"items\":\"x\"}", "items", "invalid_type");
}

/* ---- list queries ---- */

static void test_list_query_bounds(void **state)
{
    struct run_list_query q;
    struct run_error err;

    assert_int_equal(run_list_query_parse(NULL, NULL, NULL, &q, &err), 0);
    assert_null(q.after);
    assert_int_equal(q.limit, RUN_LIST_LIMIT_DEFAULT);
    assert_true(q.desc);
    assert_int_equal(run_list_query_parse("msg_1", "1", "asc", &q, &err), 0);
    assert_string_equal(q.after, "msg_1");
    assert_int_equal(q.limit, 1);
    assert_false(q.desc);
    assert_int_equal(run_list_query_parse("", "100", "desc", &q, &err), 0);
    assert_null(q.after);
    assert_int_equal(q.limit, 100);
    assert_true(q.desc);

    static const struct {
        const char *after, *limit, *order, *param;
    } bad[] = {
        {NULL, "0", NULL, "limit"},        {NULL, "101", NULL, "limit"},
        {NULL, "-1", NULL, "limit"},       {NULL, "abc", NULL, "limit"},
        {NULL, "", NULL, "limit"},         {NULL, "1e2", NULL, "limit"},
        {NULL, " 5", NULL, "limit"},       {NULL, "99999999999999999999", NULL, "limit"},
        {NULL, NULL, "ASC", "order"},      {NULL, NULL, "", "order"},
        {NULL, NULL, "newest", "order"},   {"a b", NULL, NULL, "after"},
        {"x'; drop", NULL, NULL, "after"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(run_list_query_parse(bad[i].after, bad[i].limit, bad[i].order, &q, &err),
                         -EINVAL);
        assert_refusal(&err, bad[i].param);
        assert_string_equal(err.param, bad[i].param);
    }
}

/* ---- the Idempotency-Key fingerprint: SHA-256, FIPS 180-4's test vectors ---- */

static void test_fingerprint_is_sha256(void **state)
{
    char out[RUN_FINGERPRINT_HEX + 1];
    run_request_fingerprint("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    run_request_fingerprint("abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    run_request_fingerprint(two, strlen(two), out);
    assert_string_equal(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *million = repeat("a", 1000000);
    run_request_fingerprint(million, 1000000, out);
    assert_string_equal(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_bodies_get_a_400_naming_the_parameter),
        cmocka_unit_test(test_a_model_name_too_long_to_route_is_a_400),
        cmocka_unit_test(test_too_many_tools_are_refused),
        cmocka_unit_test(test_every_field_replaced_by_a_wrong_value_is_a_400_or_accepted),
        cmocka_unit_test(test_full_body_is_read_field_by_field),
        cmocka_unit_test(test_string_input_becomes_one_user_message),
        cmocka_unit_test(test_easy_messages_get_typed_content_by_role),
        cmocka_unit_test(test_images_refusals_and_tool_output_parts_are_kept),
        cmocka_unit_test(test_the_normalised_body_parses_again_unchanged),
        cmocka_unit_test(test_nulls_mean_defaults),
        cmocka_unit_test(test_conversation_forms_and_continuations_without_input),
        cmocka_unit_test(test_sampling_bounds_are_inclusive),
        cmocka_unit_test(test_tool_choice_forms),
        cmocka_unit_test(test_the_ai_sdk_body_is_accepted),
        cmocka_unit_test(test_item_references_are_kept_for_the_scheduler),
        cmocka_unit_test(test_errors_cut_inside_a_character_stay_valid_utf8),
        cmocka_unit_test(test_metadata_limits_at_the_boundaries),
        cmocka_unit_test(test_conversation_bodies),
        cmocka_unit_test(test_list_query_bounds),
        cmocka_unit_test(test_fingerprint_is_sha256),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
