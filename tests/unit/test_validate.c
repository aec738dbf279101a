/* Unit tests of gateway/validate: every typed field of the three bodies, each wrong type and each
 * edge of its range, with the param and code a client gets; the bodies the openai SDKs and the
 * e2e tests send pass; unknown members pass; and the verdict is the same whatever the spelling
 * of the same JSON (escapes, spacing), as the engine reads it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/common.h"
#include "gateway/jsonscan.h"
#include "gateway/validate.h"

#define CHAT VALIDATE_CHAT
#define COMP VALIDATE_COMPLETIONS
#define EMB VALIDATE_EMBEDDINGS

/* The bodies are written with ' for " to stay readable: q() turns them back. */
static const char *q(const char *s)
{
    static char out[8192];
    size_t n = strlen(s);
    assert_true(n < sizeof(out));
    for (size_t i = 0; i <= n; i++)
        out[i] = s[i] == '\'' ? '"' : s[i];
    return out;
}

/* A chat body with one user message and the extra members (may be ""). */
static const char *chat_with(const char *extra)
{
    static char out[8192];
    snprintf(out, sizeof(out), "{'model':'m','messages':[{'role':'user','content':'hi'}]%s%s}",
             extra[0] ? "," : "", extra);
    return q(out);
}

static const char *comp_with(const char *extra)
{
    static char out[8192];
    snprintf(out, sizeof(out), "{'model':'m','prompt':'Once upon a time'%s%s}", extra[0] ? "," : "",
             extra);
    return q(out);
}

static const char *emb_with(const char *extra)
{
    static char out[8192];
    snprintf(out, sizeof(out), "{'model':'m','input':'x'%s%s}", extra[0] ? "," : "", extra);
    return q(out);
}

/* Every answer is valid JSON text once in a string (ASCII), and names a code. */
static void check_answer_shape(const struct validate_error *err)
{
    assert_non_null(err->code);
    assert_true(err->message[0] != '\0');
    for (const char *p = err->message; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    for (const char *p = err->param; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
}

#define ok(kind, body) ok_at(kind, body, __LINE__)
static void ok_at(enum validate_kind kind, const char *body, int line)
{
    struct validate_error err;
    int rc = validate_request(kind, body, strlen(body), &err);
    if (rc != 0)
        fail_msg("line %d: %s refused: %s (param %s, code %s)", line, body, err.message, err.param,
                 err.code);
}

#define refused(kind, body, param, code) refused_at(kind, body, param, code, __LINE__)
static void refused_at(enum validate_kind kind, const char *body, const char *param,
                       const char *code, int line)
{
    struct validate_error err;
    int rc = validate_request(kind, body, strlen(body), &err);
    if (rc != -EINVAL)
        fail_msg("line %d: %s passed; expected %s on %s", line, body, code, param);
    check_answer_shape(&err);
    if (strcmp(err.param, param) != 0 || strcmp(err.code, code) != 0)
        fail_msg("line %d: %s: got param '%s' code %s (%s); expected '%s' %s", line, body,
                 err.param, err.code, err.message, param, code);
}

static void test_the_message_says_what_was_expected_and_what_came(void **state)
{
    struct validate_error err;
    const char *b = chat_with("'temperature':'hot'");
    assert_int_equal(validate_request(CHAT, b, strlen(b), &err), -EINVAL);
    assert_string_equal(err.param, "temperature");
    assert_string_equal(err.code, "invalid_type");
    assert_string_equal(
        err.message,
        "Invalid type for 'temperature': expected a number, but got a string instead.");
    b = chat_with("'max_tokens':-5");
    assert_int_equal(validate_request(CHAT, b, strlen(b), &err), -EINVAL);
    assert_string_equal(err.param, "max_tokens");
    assert_string_equal(err.code, "integer_below_min_value");
    assert_string_equal(err.message,
                        "Invalid 'max_tokens': integer below minimum value. Expected a "
                        "value >= 1, but got -5 instead.");
    b = q("{'model':'m','messages':[{'role':'user','content':'a'},{'role':'assistant','content':"
          "'b'},{'role':'robot','content':'c'}]}");
    assert_int_equal(validate_request(CHAT, b, strlen(b), &err), -EINVAL);
    assert_string_equal(err.param, "messages[2].role");
    assert_string_equal(err.message,
                        "Invalid value for 'messages[2].role': 'robot'. Supported values are: "
                        "'system', 'developer', 'user', 'assistant', 'tool', 'function'.");
    b = chat_with("'temperature':2.5");
    assert_int_equal(validate_request(CHAT, b, strlen(b), &err), -EINVAL);
    assert_string_equal(err.message, "Invalid 'temperature': decimal above maximum value. Expected "
                                     "a value <= 2, but got 2.5 instead.");
    /* A client's string is named only when it is short printable ASCII. */
    b = q("{'model':'m','messages':[{'role':'r\\u00f4le','content':'c'}]}");
    assert_int_equal(validate_request(CHAT, b, strlen(b), &err), -EINVAL);
    check_answer_shape(&err);
    assert_non_null(strstr(err.message, "a string that is none of the supported values"));
    /* A long number is cut in the message. */
    b = chat_with("'n':-1000000000000000000000000000000000000000000000000000000000000000");
    assert_int_equal(validate_request(CHAT, b, strlen(b), &err), -EINVAL);
    assert_string_equal(err.code, "integer_below_min_value");
    assert_non_null(strstr(err.message, "..."));
}

static void test_sampling_fields_have_openai_types_and_ranges(void **state)
{
    /* max_tokens, max_completion_tokens: integers >= 1 in chat */
    ok(CHAT, chat_with("'max_tokens':1"));
    ok(CHAT, chat_with("'max_tokens':9223372036854775807"));
    ok(CHAT, chat_with("'max_completion_tokens':1"));
    ok(CHAT, chat_with("'max_tokens':null,'max_completion_tokens':null"));
    refused(CHAT, chat_with("'max_tokens':-5"), "max_tokens", "integer_below_min_value");
    refused(CHAT, chat_with("'max_tokens':0"), "max_tokens", "integer_below_min_value");
    refused(CHAT, chat_with("'max_tokens':1.5"), "max_tokens", "invalid_type");
    refused(CHAT, chat_with("'max_tokens':1.0"), "max_tokens", "invalid_type");
    refused(CHAT, chat_with("'max_tokens':1e3"), "max_tokens", "invalid_type");
    refused(CHAT, chat_with("'max_tokens':'10'"), "max_tokens", "invalid_type");
    refused(CHAT, chat_with("'max_tokens':true"), "max_tokens", "invalid_type");
    refused(CHAT, chat_with("'max_tokens':[1]"), "max_tokens", "invalid_type");
    refused(CHAT, chat_with("'max_completion_tokens':0"), "max_completion_tokens",
            "integer_below_min_value");
    refused(CHAT, chat_with("'max_completion_tokens':{}"), "max_completion_tokens", "invalid_type");
    /* temperature 0..2 */
    ok(CHAT, chat_with("'temperature':0"));
    ok(CHAT, chat_with("'temperature':2"));
    ok(CHAT, chat_with("'temperature':0.7"));
    ok(CHAT, chat_with("'temperature':2.0"));
    ok(CHAT, chat_with("'temperature':-0"));
    ok(CHAT, chat_with("'temperature':1e-3"));
    refused(CHAT, chat_with("'temperature':'hot'"), "temperature", "invalid_type");
    refused(CHAT, chat_with("'temperature':-0.1"), "temperature", "decimal_below_min_value");
    refused(CHAT, chat_with("'temperature':2.0001"), "temperature", "decimal_above_max_value");
    refused(CHAT, chat_with("'temperature':3"), "temperature", "integer_above_max_value");
    refused(CHAT, chat_with("'temperature':1e400"), "temperature", "decimal_above_max_value");
    refused(CHAT, chat_with("'temperature':false"), "temperature", "invalid_type");
    /* top_p 0..1 */
    ok(CHAT, chat_with("'top_p':0"));
    ok(CHAT, chat_with("'top_p':1"));
    ok(CHAT, chat_with("'top_p':0.95"));
    refused(CHAT, chat_with("'top_p':1.5"), "top_p", "decimal_above_max_value");
    refused(CHAT, chat_with("'top_p':-1"), "top_p", "integer_below_min_value");
    refused(CHAT, chat_with("'top_p':'1'"), "top_p", "invalid_type");
    /* n 1..128 */
    ok(CHAT, chat_with("'n':1"));
    ok(CHAT, chat_with("'n':128"));
    refused(CHAT, chat_with("'n':0"), "n", "integer_below_min_value");
    refused(CHAT, chat_with("'n':129"), "n", "integer_above_max_value");
    refused(CHAT, chat_with("'n':2.5"), "n", "invalid_type");
    /* presence and frequency penalties -2..2 */
    ok(CHAT, chat_with("'presence_penalty':-2,'frequency_penalty':2"));
    ok(CHAT, chat_with("'presence_penalty':0.5,'frequency_penalty':-1.5"));
    refused(CHAT, chat_with("'presence_penalty':-2.5"), "presence_penalty",
            "decimal_below_min_value");
    refused(CHAT, chat_with("'frequency_penalty':3"), "frequency_penalty",
            "integer_above_max_value");
    refused(CHAT, chat_with("'frequency_penalty':'0'"), "frequency_penalty", "invalid_type");
    /* seed: any integer */
    ok(CHAT, chat_with("'seed':-42"));
    ok(CHAT, chat_with("'seed':0"));
    ok(CHAT, chat_with("'seed':-9223372036854775808"));
    refused(CHAT, chat_with("'seed':1.5"), "seed", "invalid_type");
    refused(CHAT, chat_with("'seed':'1'"), "seed", "invalid_type");
    /* logit_bias: an object of numbers -100..100 */
    ok(CHAT, chat_with("'logit_bias':{'50256':-100,'1':100,'2':0.5}"));
    ok(CHAT, chat_with("'logit_bias':{}"));
    refused(CHAT, chat_with("'logit_bias':{'50256':101}"), "logit_bias.50256",
            "integer_above_max_value");
    refused(CHAT, chat_with("'logit_bias':{'7':-100.5}"), "logit_bias.7",
            "decimal_below_min_value");
    refused(CHAT, chat_with("'logit_bias':{'1':'x'}"), "logit_bias.1", "invalid_type");
    refused(CHAT, chat_with("'logit_bias':[[1,2]]"), "logit_bias", "invalid_type");
    /* a key that is not printable ASCII is left out of the path */
    refused(CHAT, chat_with("'logit_bias':{'\\u00e9':'x'}"), "logit_bias", "invalid_type");
    /* user, metadata, store */
    ok(CHAT, chat_with("'user':'u-1','metadata':{'a':'b'},'store':false"));
    refused(CHAT, chat_with("'user':5"), "user", "invalid_type");
    refused(CHAT, chat_with("'metadata':{'a':1}"), "metadata.a", "invalid_type");
    refused(CHAT, chat_with("'metadata':'x'"), "metadata", "invalid_type");
    refused(CHAT, chat_with("'store':'yes'"), "store", "invalid_type");
}

static void test_stop_stream_and_logprobs(void **state)
{
    ok(CHAT, chat_with("'stop':'x'"));
    ok(CHAT, chat_with("'stop':['a','b','c','d']"));
    ok(CHAT, chat_with("'stop':[]"));
    ok(CHAT, chat_with("'stop':null"));
    refused(CHAT, chat_with("'stop':5"), "stop", "invalid_type");
    refused(CHAT, chat_with("'stop':['a',1]"), "stop[1]", "invalid_type");
    refused(CHAT, chat_with("'stop':['a','b','c','d','e']"), "stop", "array_above_max_length");
    refused(CHAT, chat_with("'stop':{'a':1}"), "stop", "invalid_type");

    ok(CHAT, chat_with("'stream':true"));
    ok(CHAT, chat_with("'stream':false"));
    ok(CHAT, chat_with("'stream':true,'stream_options':{'include_usage':true}"));
    ok(CHAT, chat_with("'stream_options':{'include_usage':false},'stream':true"));
    ok(CHAT, chat_with("'stream':true,'stream_options':{}"));
    ok(CHAT, chat_with("'stream_options':null"));
    refused(CHAT, chat_with("'stream':'yes'"), "stream", "invalid_type");
    refused(CHAT, chat_with("'stream':1"), "stream", "invalid_type");
    refused(CHAT, chat_with("'stream_options':{'include_usage':true}"), "stream_options",
            "invalid_value");
    refused(CHAT, chat_with("'stream':false,'stream_options':{'include_usage':true}"),
            "stream_options", "invalid_value");
    refused(CHAT, chat_with("'stream':true,'stream_options':'usage'"), "stream_options",
            "invalid_type");
    refused(CHAT, chat_with("'stream':true,'stream_options':{'include_usage':'yes'}"),
            "stream_options.include_usage", "invalid_type");

    ok(CHAT, chat_with("'logprobs':true,'top_logprobs':0"));
    ok(CHAT, chat_with("'logprobs':true,'top_logprobs':20"));
    ok(CHAT, chat_with("'top_logprobs':20,'logprobs':true"));
    ok(CHAT, chat_with("'logprobs':false"));
    ok(CHAT, chat_with("'top_logprobs':null"));
    refused(CHAT, chat_with("'logprobs':1"), "logprobs", "invalid_type");
    refused(CHAT, chat_with("'logprobs':true,'top_logprobs':21"), "top_logprobs",
            "integer_above_max_value");
    refused(CHAT, chat_with("'logprobs':true,'top_logprobs':-1"), "top_logprobs",
            "integer_below_min_value");
    refused(CHAT, chat_with("'top_logprobs':5"), "top_logprobs", "invalid_value");
    refused(CHAT, chat_with("'logprobs':false,'top_logprobs':5"), "top_logprobs", "invalid_value");
}

static void test_tools_tool_choice_and_response_format(void **state)
{
    ok(CHAT, chat_with("'tools':[{'type':'function','function':{'name':'get_weather'}}]"));
    ok(CHAT,
       chat_with("'tools':[{'type':'function','function':{'name':'get-Weather_2','description':"
                 "'d','parameters':{'type':'object','properties':{'city':{'type':'string'}},"
                 "'required':['city']},'strict':true}}],'parallel_tool_calls':false"));
    ok(CHAT,
       chat_with("'tools':[{'type':'custom','custom':{'name':'grep','format':{'type':'text'}}}]"));
    ok(CHAT, chat_with("'tools':[]"));
    refused(CHAT, chat_with("'tools':{}"), "tools", "invalid_type");
    refused(CHAT, chat_with("'tools':['f']"), "tools[0]", "invalid_type");
    refused(CHAT, chat_with("'tools':[{'function':{'name':'f'}}]"), "tools[0].type",
            "missing_required_parameter");
    refused(CHAT, chat_with("'tools':[{'type':'retrieval'}]"), "tools[0].type", "invalid_value");
    refused(CHAT, chat_with("'tools':[{'type':5}]"), "tools[0].type", "invalid_type");
    refused(CHAT, chat_with("'tools':[{'type':'function'}]"), "tools[0].function",
            "missing_required_parameter");
    refused(CHAT, chat_with("'tools':[{'type':'function','function':'f'}]"), "tools[0].function",
            "invalid_type");
    refused(CHAT, chat_with("'tools':[{'type':'function','function':{}}]"),
            "tools[0].function.name", "missing_required_parameter");
    refused(CHAT,
            chat_with("'tools':[{'type':'function','function':{'name':'f'}},{'type':"
                      "'function','function':{'name':'get weather'}}]"),
            "tools[1].function.name", "invalid_value");
    refused(CHAT, chat_with("'tools':[{'type':'function','function':{'name':''}}]"),
            "tools[0].function.name", "invalid_value");
    refused(CHAT, chat_with("'tools':[{'type':'function','function':{'name':'a.b'}}]"),
            "tools[0].function.name", "invalid_value");
    ok(CHAT, chat_with("'tools':[{'type':'function','function':{'name':'"
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'}}]"));
    refused(CHAT,
            chat_with("'tools':[{'type':'function','function':{'name':'"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'}}]"),
            "tools[0].function.name", "invalid_value");
    refused(CHAT, chat_with("'tools':[{'type':'function','function':{'name':7}}]"),
            "tools[0].function.name", "invalid_type");
    refused(CHAT,
            chat_with("'tools':[{'type':'function','function':{'name':'f','description':5}}]"),
            "tools[0].function.description", "invalid_type");
    refused(CHAT,
            chat_with("'tools':[{'type':'function','function':{'name':'f','parameters':'x'}}]"),
            "tools[0].function.parameters", "invalid_type");
    refused(CHAT, chat_with("'tools':[{'type':'function','function':{'name':'f','strict':'yes'}}]"),
            "tools[0].function.strict", "invalid_type");
    refused(CHAT, chat_with("'tools':[{'type':'custom','custom':{}}]"), "tools[0].custom.name",
            "missing_required_parameter");

    ok(CHAT, chat_with("'tool_choice':'none'"));
    ok(CHAT, chat_with("'tool_choice':'auto'"));
    ok(CHAT, chat_with("'tool_choice':'required'"));
    ok(CHAT, chat_with("'tool_choice':{'type':'function','function':{'name':'f'}}"));
    ok(CHAT, chat_with("'tool_choice':{'type':'allowed_tools','allowed_tools':{'mode':'auto',"
                       "'tools':[]}}"));
    refused(CHAT, chat_with("'tool_choice':'sometimes'"), "tool_choice", "invalid_value");
    refused(CHAT, chat_with("'tool_choice':5"), "tool_choice", "invalid_type");
    refused(CHAT, chat_with("'tool_choice':{}"), "tool_choice.type", "missing_required_parameter");
    refused(CHAT, chat_with("'tool_choice':{'type':'tool'}"), "tool_choice.type", "invalid_value");
    refused(CHAT, chat_with("'tool_choice':{'type':'function'}"), "tool_choice.function",
            "missing_required_parameter");
    refused(CHAT, chat_with("'tool_choice':{'type':'function','function':{}}"),
            "tool_choice.function.name", "missing_required_parameter");
    refused(CHAT, chat_with("'tool_choice':{'type':'function','function':{'name':1}}"),
            "tool_choice.function.name", "invalid_type");
    refused(CHAT, chat_with("'parallel_tool_calls':'true'"), "parallel_tool_calls", "invalid_type");

    ok(CHAT, chat_with("'response_format':{'type':'text'}"));
    ok(CHAT, chat_with("'response_format':{'type':'json_object'}"));
    ok(CHAT, chat_with("'response_format':{'type':'json_schema','json_schema':{'name':'answer',"
                       "'schema':{'type':'object'},'strict':true,'description':'d'}}"));
    /* llama-server's own extension, a schema beside json_object, passes through */
    ok(CHAT, chat_with("'response_format':{'type':'json_object','schema':{'type':'object'}}"));
    refused(CHAT, chat_with("'response_format':'json'"), "response_format", "invalid_type");
    refused(CHAT, chat_with("'response_format':{}"), "response_format.type",
            "missing_required_parameter");
    refused(CHAT, chat_with("'response_format':{'type':'xml'}"), "response_format.type",
            "invalid_value");
    refused(CHAT, chat_with("'response_format':{'type':'json_schema'}"),
            "response_format.json_schema", "missing_required_parameter");
    refused(CHAT, chat_with("'response_format':{'type':'json_schema','json_schema':{'schema':{}}}"),
            "response_format.json_schema.name", "missing_required_parameter");
    refused(CHAT,
            chat_with("'response_format':{'type':'json_schema','json_schema':{'name':'a b'}}"),
            "response_format.json_schema.name", "invalid_value");
    refused(CHAT,
            chat_with("'response_format':{'type':'json_schema','json_schema':{'name':'a',"
                      "'schema':'x'}}"),
            "response_format.json_schema.schema", "invalid_type");
    refused(CHAT,
            chat_with("'response_format':{'type':'json_schema','json_schema':{'name':'a',"
                      "'strict':1}}"),
            "response_format.json_schema.strict", "invalid_type");
}

static void test_messages_roles_and_content_parts(void **state)
{
    /* every role, its content forms, members in any order */
    ok(CHAT,
       q("{'model':'m','messages':["
         "{'role':'system','content':'be brief'},"
         "{'role':'developer','content':[{'type':'text','text':'really'}]},"
         "{'content':'hi','role':'user','name':'ann'},"
         "{'role':'user','content':[{'type':'text','text':'what is this?'},"
         "{'type':'image_url','image_url':{'url':'data:image/png;base64,AAAA','detail':'low'}},"
         "{'type':'input_audio','input_audio':{'data':'UklGRg==','format':'wav'}},"
         "{'type':'file','file':{'file_id':'file-1','filename':'a.pdf'}}]},"
         "{'role':'assistant','content':null,'tool_calls':[{'id':'call_1','type':'function',"
         "'function':{'name':'get_weather','arguments':'{\\'city\\':\\'Paris\\'}'}}]},"
         "{'role':'tool','tool_call_id':'call_1','content':'sunny'},"
         "{'role':'tool','tool_call_id':'call_1','content':[{'type':'text','text':'20C'}]},"
         "{'role':'assistant','tool_calls':[{'id':'c2','type':'function','function':{"
         "'name':'f','arguments':'{}'}}]},"
         "{'role':'assistant','content':[{'type':'text','text':'a'},{'type':'refusal',"
         "'refusal':'no'}],'refusal':null},"
         "{'role':'assistant','content':null,'function_call':{'name':'f','arguments':'{}'}},"
         "{'role':'function','name':'f','content':null},"
         "{'role':'function','name':'f','content':'42'},"
         "{'role':'assistant','content':'ok','refusal':'r','audio':{'id':'a1'}}]}"));
    /* names and values decoded as the engine decodes them */
    ok(CHAT, q("{'mod\\u0065l':'m','messages':[{'r\\u006fle':'\\u0075ser','content':'x'}]}"));
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'user','content':'x'}],"
              "'temperatur\\u0065':'hot'}"),
            "temperature", "invalid_type");

    refused(CHAT, q("{'model':'m'}"), "messages", "missing_required_parameter");
    refused(CHAT, q("{'model':'m','messages':null}"), "messages", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':{}}"), "messages", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[]}"), "messages", "empty_array");
    refused(CHAT, q("{'model':'m','messages':[5]}"), "messages[0]", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'content':'x'}]}"), "messages[0].role",
            "missing_required_parameter");
    refused(CHAT, q("{'model':'m','messages':[{'role':'robot','content':'x'}]}"),
            "messages[0].role", "invalid_value");
    refused(CHAT, q("{'model':'m','messages':[{'role':'User','content':'x'}]}"), "messages[0].role",
            "invalid_value");
    refused(CHAT, q("{'model':'m','messages':[{'role':5,'content':'x'}]}"), "messages[0].role",
            "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'role':'user'}]}"), "messages[0].content",
            "missing_required_parameter");
    refused(CHAT, q("{'model':'m','messages':[{'role':'user','content':5}]}"),
            "messages[0].content", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'role':'user','content':null}]}"),
            "messages[0].content", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'role':'user','content':{'type':'text'}}]}"),
            "messages[0].content", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'role':'assistant','content':null}]}"),
            "messages[0].content", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'role':'assistant'}]}"), "messages[0].content",
            "missing_required_parameter");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'assistant','content':null,'tool_calls':"
              "null}]}"),
            "messages[0].content", "invalid_type");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'system','content':[{'type':'image_url',"
              "'image_url':{'url':'u'}}]}]}"),
            "messages[0].content[0].type", "invalid_value");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'assistant','content':[{'type':'image_url',"
              "'image_url':{'url':'u'}}]}]}"),
            "messages[0].content[0].type", "invalid_value");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'user','content':[{'type':'refusal',"
              "'refusal':'r'}]}]}"),
            "messages[0].content[0].type", "invalid_value");
    refused(CHAT, q("{'model':'m','messages':[{'role':'user','content':['hi']}]}"),
            "messages[0].content[0]", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'role':'user','content':[{'text':'hi'}]}]}"),
            "messages[0].content[0].type", "missing_required_parameter");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'a'},"
              "{'type':'video_url','video_url':{'url':'u'}}]}]}"),
            "messages[0].content[1].type", "invalid_value");
    refused(CHAT, q("{'model':'m','messages':[{'role':'user','content':[{'type':'text'}]}]}"),
            "messages[0].content[0].text", "missing_required_parameter");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':1}]}]}"),
            "messages[0].content[0].text", "invalid_type");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'user','content':[{'type':'image_url',"
              "'image_url':'u'}]}]}"),
            "messages[0].content[0].image_url", "invalid_type");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'user','content':[{'type':'image_url',"
              "'image_url':{}}]}]}"),
            "messages[0].content[0].image_url.url", "missing_required_parameter");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'user','content':[{'type':'image_url',"
              "'image_url':{'url':'u','detail':'ultra'}}]}]}"),
            "messages[0].content[0].image_url.detail", "invalid_value");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'user','content':[{'type':'input_audio',"
              "'input_audio':{'data':'x'}}]}]}"),
            "messages[0].content[0].input_audio.format", "missing_required_parameter");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'user','content':[{'type':'file',"
              "'file':{'file_id':5}}]}]}"),
            "messages[0].content[0].file.file_id", "invalid_type");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'assistant','content':[{'type':'refusal'}]}]}"),
            "messages[0].content[0].refusal", "missing_required_parameter");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'user','content':'a'},{'role':'tool',"
              "'content':'sunny'}]}"),
            "messages[1].tool_call_id", "missing_required_parameter");
    refused(CHAT, q("{'model':'m','messages':[{'role':'tool','content':'s','tool_call_id':7}]}"),
            "messages[0].tool_call_id", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'role':'user','content':'x','name':5}]}"),
            "messages[0].name", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'role':'assistant','tool_calls':'x'}]}"),
            "messages[0].tool_calls", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'role':'assistant','tool_calls':[{}]}]}"),
            "messages[0].tool_calls[0].id", "missing_required_parameter");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'assistant','tool_calls':[{'id':'c',"
              "'type':'function','function':{'name':'f','arguments':{}}}]}]}"),
            "messages[0].tool_calls[0].function.arguments", "invalid_type");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'assistant','tool_calls':[{'id':'c',"
              "'type':'tool','function':{'name':'f','arguments':'{}'}}]}]}"),
            "messages[0].tool_calls[0].type", "invalid_value");
    refused(CHAT,
            q("{'model':'m','messages':[{'role':'assistant','content':null,"
              "'function_call':{'name':'f','arguments':1}}]}"),
            "messages[0].function_call.arguments", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'role':'assistant','content':'x','refusal':1}]}"),
            "messages[0].refusal", "invalid_type");
    refused(CHAT, q("{'model':'m','messages':[{'role':'function','content':'x'}]}"),
            "messages[0].name", "missing_required_parameter");
    refused(CHAT, q("{'model':'m','messages':[{'role':'function','name':'f','content':[]}]}"),
            "messages[0].content", "invalid_type");
}

static void test_model_is_a_nonempty_string(void **state)
{
    refused(CHAT, q("{'messages':[{'role':'user','content':'x'}]}"), "model",
            "missing_required_parameter");
    refused(CHAT, q("{'model':5,'messages':[{'role':'user','content':'x'}]}"), "model",
            "invalid_type");
    refused(CHAT, q("{'model':null,'messages':[{'role':'user','content':'x'}]}"), "model",
            "invalid_type");
    refused(COMP, q("{'model':'','prompt':'x'}"), "model", "empty_string");
    refused(EMB, q("{'input':'x'}"), "model", "missing_required_parameter");
}

static void test_completions_fields(void **state)
{
    ok(COMP, comp_with(""));
    ok(COMP, q("{'model':'m','prompt':['a','b']}"));
    ok(COMP, q("{'model':'m','prompt':[1,2,3]}"));
    ok(COMP, q("{'model':'m','prompt':[[1,2],[3]]}"));
    ok(COMP, q("{'model':'m'}")); /* prompt: the engine's default */
    ok(COMP, comp_with("'max_tokens':0,'echo':true,'logprobs':0"));
    ok(COMP, comp_with("'logprobs':5,'best_of':20,'suffix':'s','n':128,'seed':3"));
    ok(COMP, comp_with("'stream':true,'stream_options':{'include_usage':true},'stop':['\\n']"));
    /* chat's members are not the completions route's: they pass */
    ok(COMP, comp_with("'tools':'x','messages':5,'top_logprobs':99,'response_format':1"));
    refused(COMP, q("{'model':'m','prompt':5}"), "prompt", "invalid_type");
    refused(COMP, q("{'model':'m','prompt':{}}"), "prompt", "invalid_type");
    refused(COMP, q("{'model':'m','prompt':[]}"), "prompt", "empty_array");
    refused(COMP, q("{'model':'m','prompt':['a',1]}"), "prompt[1]", "invalid_type");
    refused(COMP, q("{'model':'m','prompt':[1,'a']}"), "prompt[1]", "invalid_type");
    refused(COMP, q("{'model':'m','prompt':[1,2.5]}"), "prompt[1]", "invalid_type");
    refused(COMP, q("{'model':'m','prompt':[-1]}"), "prompt[0]", "integer_below_min_value");
    refused(COMP, q("{'model':'m','prompt':[[1,'x']]}"), "prompt[0][1]", "invalid_type");
    refused(COMP, q("{'model':'m','prompt':[[1],2]}"), "prompt[1]", "invalid_type");
    refused(COMP, q("{'model':'m','prompt':[{}]}"), "prompt[0]", "invalid_type");
    refused(COMP, q("{'model':'m','prompt':[true]}"), "prompt[0]", "invalid_type");
    refused(COMP, comp_with("'max_tokens':-1"), "max_tokens", "integer_below_min_value");
    refused(COMP, comp_with("'logprobs':6"), "logprobs", "integer_above_max_value");
    refused(COMP, comp_with("'logprobs':true"), "logprobs", "invalid_type");
    refused(COMP, comp_with("'echo':'yes'"), "echo", "invalid_type");
    refused(COMP, comp_with("'best_of':21"), "best_of", "integer_above_max_value");
    refused(COMP, comp_with("'suffix':1"), "suffix", "invalid_type");
    refused(COMP, comp_with("'temperature':'hot'"), "temperature", "invalid_type");
    refused(COMP, comp_with("'n':0"), "n", "integer_below_min_value");
    refused(COMP, comp_with("'stream_options':{'include_usage':true}"), "stream_options",
            "invalid_value");
}

static void test_embeddings_fields(void **state)
{
    ok(EMB, emb_with(""));
    ok(EMB, q("{'model':'m','input':['a','b']}"));
    ok(EMB, q("{'model':'m','input':[1,2]}"));
    ok(EMB, q("{'model':'m','input':[[1],[2,3]]}"));
    ok(EMB, emb_with("'encoding_format':'float','dimensions':1,'user':'u'"));
    ok(EMB, emb_with("'encoding_format':'base64','dimensions':3072"));
    /* chat's and completions' members are not the embeddings route's: they pass */
    ok(EMB, emb_with("'temperature':'hot','max_tokens':-5"));
    refused(EMB, q("{'model':'m','input':{}}"), "input", "invalid_type");
    refused(EMB, q("{'model':'m','input':[]}"), "input", "empty_array");
    refused(EMB, q("{'model':'m','input':['a',null]}"), "input[1]", "invalid_type");
    refused(EMB, emb_with("'encoding_format':'hex'"), "encoding_format", "invalid_value");
    refused(EMB, emb_with("'encoding_format':1"), "encoding_format", "invalid_type");
    refused(EMB, emb_with("'dimensions':0"), "dimensions", "integer_below_min_value");
    refused(EMB, emb_with("'dimensions':'3'"), "dimensions", "invalid_type");
    refused(EMB, emb_with("'user':[]"), "user", "invalid_type");
}

/* What the openai SDKs (node and python) send, and the e2e tests' bodies: all pass. */
static const char *const SDK_CHAT[] = {
    "{'model':'qwen','messages':[{'role':'user','content':'hello'}],'max_tokens':4,'seed':9}",
    "{'model':'qwen','messages':[{'role':'user','content':'hello'}],'stream':true,"
    "'stream_options':{'include_usage':true},'max_tokens':3}",
    "{'messages':[{'role':'system','content':'You are helpful.'},{'role':'user','content':'hi'}],"
    "'model':'gpt-4o-mini','temperature':0.5,'top_p':1,'n':1,'stop':null,'presence_penalty':0,"
    "'frequency_penalty':0,'logit_bias':null,'user':null,'response_format':{'type':'json_schema',"
    "'json_schema':{'name':'Answer','strict':true,'schema':{'type':'object','properties':{'a':"
    "{'type':'string'}},'required':['a'],'additionalProperties':false}}}}",
    "{'model':'m','messages':[{'role':'user','content':'call weather for Paris'}],'tools':[{'type':"
    "'function','function':{'name':'weather','description':'the weather in a city','parameters':{"
    "'type':'object','properties':{'city':{'type':'string'}},'required':['city']}}}],"
    "'tool_choice':'auto'}",
    "{'model':'m','messages':[{'role':'user','content':'x'}],'top_k':40,'min_p':0.05,"
    "'repeat_penalty':1.1,'chat_template_kwargs':{'enable_thinking':false},'cache_prompt':true,"
    "'mock_delay_ms':'whatever','temperature_x':'hot','guided_json':{'type':'object'}}",
    "{'model':'m','messages':[{'role':'user','content':'x'}],'temperature':null,'top_p':null,"
    "'n':null,'stop':null,'stream':null,'stream_options':null,'seed':null,'logprobs':null,"
    "'top_logprobs':null,'tools':null,'tool_choice':null,'response_format':null,"
    "'parallel_tool_calls':null,'metadata':null,'max_completion_tokens':null,'user':null}",
};

static void test_sdk_and_e2e_bodies_pass(void **state)
{
    for (size_t i = 0; i < ARRAY_SIZE(SDK_CHAT); i++)
        ok(CHAT, q(SDK_CHAT[i]));
    ok(COMP, q("{'model':'qwen','prompt':'Once upon a time','max_tokens':5,'stream':false}"));
    ok(EMB, q("{'model':'embed','input':['x','y'],'encoding_format':'float'}"));
    ok(EMB, q("{'model':'embed','input':'tell me a story'}"));
}

static void test_text_that_is_not_a_json_object_gets_an_answer(void **state)
{
    static const char *const bad[] = {
        "",
        "   ",
        "[1]",
        "\"s\"",
        "{",
        "{\"model\":\"m\"",
        "{\"model\":\"m\"} x",
        "{\"model\"}",
        "{\"model\":}",
        "{,}",
        "{\"a\":1,}",
        "{\"model\":\"m\",\"temperature\":-}",
        "{\"model\":\"m\",\"n\":1-2}",
        "{\"model\":\"m\",\"temperature\":.5}",
        "{\"model\":\"m\",\"messages\":[1 2]}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct validate_error err;
        int rc = validate_request(CHAT, bad[i], strlen(bad[i]), &err);
        if (rc != -EINVAL)
            fail_msg("%s passed", bad[i]);
        check_answer_shape(&err);
    }
    /* jansson 2.14 reads a NUL byte right after a number as its end, so the slow path hands such
     * a body on; it is no JSON to an engine either: refused (found by fuzz_validate). */
    static const char nul[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                              "\"x\"}],\"top_logprobs\":5\0,\"logprobs\":true}";
    struct validate_error err;
    assert_int_equal(validate_request(CHAT, nul, sizeof(nul) - 1, &err), -EINVAL);
    assert_string_equal(err.code, "invalid_json");
    json_t *j = json_loadb(nul, sizeof(nul) - 1, JSON_REJECT_DUPLICATES, NULL);
    if (j != NULL) /* the quirk, while this jansson has it */
        assert_int_equal(json_integer_value(json_object_get(j, "top_logprobs")), 5);
    json_decref(j);
    /* cut anywhere, a body never makes the walk read past its end (ASan watches the copy) */
    const char *whole = q(SDK_CHAT[3]);
    size_t n = strlen(whole);
    for (size_t cut = 0; cut < n; cut++) {
        char *copy = xmalloc(cut ? cut : 1);
        memcpy(copy, whole, cut);
        IGNORE_RESULT(validate_request(CHAT, copy, cut, &err));
        free(copy);
    }
}

static void test_route_kinds(void **state)
{
    enum validate_kind k;
    assert_int_equal(validate_kind_of("/v1/chat/completions", &k), 0);
    assert_int_equal(k, VALIDATE_CHAT);
    assert_int_equal(validate_kind_of("/v1/completions", &k), 0);
    assert_int_equal(k, VALIDATE_COMPLETIONS);
    assert_int_equal(validate_kind_of("/v1/embeddings", &k), 0);
    assert_int_equal(k, VALIDATE_EMBEDDINGS);
    assert_int_equal(validate_kind_of("/v1/responses", &k), -ENOENT);
    assert_int_equal(validate_kind_of(NULL, &k), -ENOENT);
}

/* The same JSON spelled another way (jansson's dump with every non-ASCII character escaped, and
 * indented) gets the same verdict and the same param: what counts is what the engine reads. */
static void same_verdict_respelled(enum validate_kind kind, const char *body)
{
    struct validate_error a, b;
    json_t *j = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL)
        return;
    int ra = validate_request(kind, body, strlen(body), &a);
    const size_t flags[] = {JSON_COMPACT | JSON_ENSURE_ASCII, JSON_INDENT(3)};
    for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
        char *again = json_dumps(j, flags[i]);
        int rb = validate_request(kind, again, strlen(again), &b);
        if (ra != rb || (ra != 0 && (strcmp(a.param, b.param) != 0 || strcmp(a.code, b.code) != 0)))
            fail_msg("%s: %d %s; respelled %s: %d %s", body, ra, ra ? a.param : "", again, rb,
                     rb ? b.param : "");
        free(again);
    }
    json_decref(j);
}

static void test_the_verdict_does_not_depend_on_the_spelling(void **state)
{
    for (size_t i = 0; i < ARRAY_SIZE(SDK_CHAT); i++)
        same_verdict_respelled(CHAT, q(SDK_CHAT[i]));
    same_verdict_respelled(CHAT,
                           q("{'model':'m','messages':[{'role':'us\\u00e9r','content':'x'}]}"));
    same_verdict_respelled(CHAT, q("{'model':'caf\xc3\xa9','messages':[{'role':'user','content':"
                                   "[{'type':'text','text':'\xf0\x9f\x98\x80 \\\\ \\''}]}],"
                                   "'stop':['\\\\','\\'',']','}'],'n':129}"));
    same_verdict_respelled(CHAT, chat_with("'logit_bias':{'\xc3\xa9':1000}"));
    same_verdict_respelled(COMP, q("{'model':'m','prompt':[[1,2],[3,-4]]}"));
}

/* The gateway runs the validation on bodies jsonscan accepted: both agree they are objects. */
static void test_bodies_the_scan_accepts_are_walked_whole(void **state)
{
    for (size_t i = 0; i < ARRAY_SIZE(SDK_CHAT); i++) {
        const char *b = q(SDK_CHAT[i]);
        struct jsonscan_member m[] = {{.name = "model"}};
        assert_int_equal(jsonscan_object(b, strlen(b), m, 1), 0);
        ok(CHAT, b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_message_says_what_was_expected_and_what_came),
        cmocka_unit_test(test_sampling_fields_have_openai_types_and_ranges),
        cmocka_unit_test(test_stop_stream_and_logprobs),
        cmocka_unit_test(test_tools_tool_choice_and_response_format),
        cmocka_unit_test(test_messages_roles_and_content_parts),
        cmocka_unit_test(test_model_is_a_nonempty_string),
        cmocka_unit_test(test_completions_fields),
        cmocka_unit_test(test_embeddings_fields),
        cmocka_unit_test(test_sdk_and_e2e_bodies_pass),
        cmocka_unit_test(test_text_that_is_not_a_json_object_gets_an_answer),
        cmocka_unit_test(test_route_kinds),
        cmocka_unit_test(test_the_verdict_does_not_depend_on_the_spelling),
        cmocka_unit_test(test_bodies_the_scan_accepts_are_walked_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
