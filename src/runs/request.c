/*
 * request.c: the bodies of POST /v1/responses and of the Conversations API, checked and
 * normalised before anything runs (request.h). It owns every rule that can refuse such a body,
 * so the run, the routes and the translation downstream can trust what they get: `input` is an
 * array of typed items (message, function_call, function_call_output, and item_reference {type,
 * id}, which the scheduler replaces by the stored item it names before anything else reads
 * the input), each with an id, whose
 * content parts are text, images by URL (user side) or refusals (assistant side), the parts an
 * engine's chat API can carry; metadata is within its limits; only function tools remain. It does
 * not look anything up (previous_response_id, conversation ids): that needs the store and gives
 * 404, in the routes.
 *
 * DESIGN
 * The reference for what is accepted is the official openai SDK's ResponseCreateParams: every
 * top-level field it defines is known here, and a field it does not define is refused as OpenAI
 * refuses it ("Unknown parameter"). Known fields fall in three groups:
 *   - honoured: model, input, instructions, previous_response_id, conversation, background,
 *     stream, store, metadata, max_output_tokens, temperature, top_p, tools, tool_choice,
 *     parallel_tool_calls;
 *   - accepted and ignored, because ignoring them changes nothing a user relies on: include
 *     (extra output fields arun does not produce), user, safety_identifier, prompt_cache_key,
 *     prompt_cache_retention, service_tier, truncation, reasoning, stream_options,
 *     context_management, top_logprobs, max_tool_calls (only function tools exist, and the
 *     client decides to run each call), text with format "text" and any verbosity;
 *   - refused because a user would silently miss them: prompt (a stored prompt template arun
 *     does not have) and text.format other than "text" (structured output arun would not
 *     enforce).
 * Errors follow OpenAI's wording and codes ("Invalid type for 'temperature': expected a number,
 * but got a string instead.", invalid_type, invalid_value, missing_required_parameter,
 * unknown_parameter, integer_below_min_value, decimal_above_max_value, …) with the parameter's
 * path in param, so a client that handles OpenAI's errors handles arun's.
 *
 * Items are checked in place and rebuilt in a fixed key order (id, type, role, content, then the
 * rest); a failed parse may leave the caller's body partly normalised, which is harmless
 * because the caller then drops it.
 */
#include "runs/request.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/ids.h"
#include "gateway/gateway.h"

#define ID_MAX 128    /* characters of an id a client gives (OpenAI's are about 50) */
#define TOOLS_MAX 128 /* function tools in one request, as OpenAI */
#define TOOL_NAME_MAX 64
#define PATH_MAX_LEN 96 /* = sizeof run_error.param */

/* Replaces each cut UTF-8 sequence in s with '?'. The strings that go into an error are valid
 * UTF-8 (jansson holds nothing else), but a precision ("%.64s") or the fixed size of a field
 * may cut a character in two, and an error JSON with invalid UTF-8 could not be built at all. */
static void utf8_mend(char *s)
{
    unsigned char *p = (unsigned char *)s;

    while (*p) {
        size_t len = *p < 0x80             ? 1
                     : (*p & 0xE0) == 0xC0 ? 2
                     : (*p & 0xF0) == 0xE0 ? 3
                     : (*p & 0xF8) == 0xF0 ? 4
                                           : 0;
        size_t ok = 1;
        while (len > 0 && ok < len && (p[ok] & 0xC0) == 0x80)
            ok++;
        if (len > 0 && ok == len) {
            p += len;
            continue;
        }
        /* a sequence cut short (its bytes so far) or a stray continuation byte */
        memset(p, '?', ok);
        p += ok;
    }
}

int run_error_set(struct run_error *err, int status, const char *code, const char *param,
                  const char *fmt, ...)
{
    va_list ap;

    err->status = status;
    snprintf(err->code, sizeof(err->code), "%s", code);
    snprintf(err->param, sizeof(err->param), "%s", param ? param : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    utf8_mend(err->param);
    utf8_mend(err->message);
    return -EINVAL;
}

/* A parameter's path ("input[2].content[0].text") into a fixed buffer, cut when it does not
 * fit: a long path in an error is shortened, never an error itself. */
static void path_printf(char *out, size_t cap, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void path_printf(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

/* ---- small checks shared by every body ---- */

/* "a string", "an integer"…: how OpenAI's messages name a JSON value's type. */
static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a decimal";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        break;
    }
    return "null";
}

static int bad_type(struct run_error *err, const char *param, const char *want, const json_t *v)
{
    return run_error_set(err, 400, "invalid_type", param,
                         "Invalid type for '%s': expected %s, but got %s instead.", param, want,
                         type_name(v));
}

static int missing(struct run_error *err, const char *param)
{
    return run_error_set(err, 400, "missing_required_parameter", param,
                         "Missing required parameter: '%s'.", param);
}

static int unknown(struct run_error *err, const char *param)
{
    return run_error_set(err, 400, "unknown_parameter", param, "Unknown parameter: '%s'.", param);
}

/* Characters (UTF-8 code points) of a valid UTF-8 string: jansson only holds valid UTF-8. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* Every key of obj is in allowed, else an unknown_parameter error for "prefix.key". */
static int only_keys(json_t *obj, const char *prefix, const char *const *allowed,
                     struct run_error *err)
{
    const char *key;
    json_t *v;
    char param[PATH_MAX_LEN];

    json_object_foreach(obj, key, v)
    {
        if (in_list(key, allowed))
            continue;
        if (prefix[0])
            path_printf(param, sizeof(param), "%s.%.64s", prefix, key);
        else
            path_printf(param, sizeof(param), "%.64s", key);
        return unknown(err, param);
    }
    return 0;
}

/* A JSON boolean, or null/absent (then *out keeps its default). */
static int opt_bool(json_t *v, const char *param, bool *out, struct run_error *err)
{
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return bad_type(err, param, "a boolean", v);
    *out = json_is_true(v);
    return 0;
}

/* A string or null/absent (then *out is NULL). */
static int opt_string(json_t *v, const char *param, const char **out, struct run_error *err)
{
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bad_type(err, param, "a string", v);
    *out = json_string_value(v);
    return 0;
}

/* A value of the given type (a jansson predicate's type) or null/absent; the value is ignored. */
static int opt_typed(json_t *v, const char *param, json_type type, const char *want,
                     struct run_error *err)
{
    if (!v || json_is_null(v))
        return 0;
    if (json_typeof(v) == type)
        return 0;
    if (type == JSON_TRUE && json_is_boolean(v))
        return 0;
    return bad_type(err, param, want, v);
}

/* An id a client names: 1..ID_MAX characters of [A-Za-z0-9_.:-], and when prefix is set it
 * starts with it (OpenAI: "Expected an ID that begins with 'resp'."). */
static int check_id(const char *id, const char *param, const char *prefix, struct run_error *err)
{
    size_t n = strlen(id);

    if (n == 0 || n > ID_MAX)
        return run_error_set(err, 400, "invalid_value", param,
                             "Invalid '%s': an ID has 1 to %d characters, but got %zu.", param,
                             ID_MAX, n);
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '-' || c == '.' || c == ':')
            continue;
        return run_error_set(err, 400, "invalid_value", param,
                             "Invalid '%s': an ID may contain only letters, digits and _ - . :.",
                             param);
    }
    if (prefix && strncmp(id, prefix, strlen(prefix)) != 0)
        return run_error_set(err, 400, "invalid_value", param,
                             "Invalid '%s': '%.64s'. Expected an ID that begins with '%s'.", param,
                             id, prefix);
    return 0;
}

/* metadata: an object of at most RUN_METADATA_KEYS string values, keys of at most
 * RUN_METADATA_KEY_MAX characters, values of at most RUN_METADATA_VALUE_MAX; null gives NULL. */
static int check_metadata(json_t *v, json_t **out, struct run_error *err)
{
    const char *key;
    json_t *val;
    char param[PATH_MAX_LEN];

    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return bad_type(err, "metadata", "an object", v);
    if (json_object_size(v) > RUN_METADATA_KEYS)
        return run_error_set(err, 400, "object_above_max_properties", "metadata",
                             "Invalid 'metadata': too many properties. Expected an object with at "
                             "most %d properties, but got an object with %zu properties instead.",
                             RUN_METADATA_KEYS, json_object_size(v));
    json_object_foreach(v, key, val)
    {
        size_t klen = utf8_chars(key);
        path_printf(param, sizeof(param), "metadata.%.64s", key);
        if (klen > RUN_METADATA_KEY_MAX)
            return run_error_set(err, 400, "string_above_max_length", "metadata",
                                 "Invalid 'metadata': a key is too long. Expected keys of at most "
                                 "%d characters, but got a key with %zu characters instead.",
                                 RUN_METADATA_KEY_MAX, klen);
        if (!json_is_string(val))
            return bad_type(err, param, "a string", val);
        size_t vlen = utf8_chars(json_string_value(val));
        if (vlen > RUN_METADATA_VALUE_MAX)
            return run_error_set(err, 400, "string_above_max_length", param,
                                 "Invalid '%s': string too long. Expected a string with maximum "
                                 "length %d, but got a string with length %zu instead.",
                                 param, RUN_METADATA_VALUE_MAX, vlen);
    }
    *out = v;
    return 0;
}

/* ---- items: the `input` of a response, the `items` of a conversation ---- */

static const char *const ITEM_STATUSES[] = {"in_progress", "completed", "incomplete", NULL};
static const char SUPPORTED_ITEMS[] = "Supported item types are 'message', 'function_call', "
                                      "'function_call_output' and, in a response's input, "
                                      "'item_reference'.";

/* Copies the keys of from, except those in skip, into to (after what to already has). */
static void copy_rest(json_t *to, json_t *from, const char *const *skip)
{
    const char *key;
    json_t *v;

    json_object_foreach(from, key, v)
    {
        if (!in_list(key, skip) && !json_object_get(to, key))
            json_object_set(to, key, v);
    }
}

/* The item's "id": kept when given (checked, and unique among the items), made when absent or
 * null. */
static int item_id(json_t *item, const char *path, const char *prefix, json_t *seen, json_t *out,
                   struct run_error *err)
{
    json_t *v = json_object_get(item, "id");
    char param[PATH_MAX_LEN];
    char made[IDS_MAX];
    int rc;

    path_printf(param, sizeof(param), "%s.id", path);
    if (!v || json_is_null(v)) {
        ids_new(made, sizeof(made), prefix);
        json_object_set_new(out, "id", json_string(made));
        return 0;
    }
    if (!json_is_string(v))
        return bad_type(err, param, "a string", v);
    rc = check_id(json_string_value(v), param, NULL, err);
    if (rc != 0)
        return rc;
    if (json_object_get(seen, json_string_value(v)))
        return run_error_set(err, 400, "invalid_value", param,
                             "Invalid '%s': the ID '%.64s' is used by another item of the same "
                             "request; item IDs must be unique.",
                             param, json_string_value(v));
    json_object_set_new(seen, json_string_value(v), json_true());
    json_object_set(out, "id", v);
    return 0;
}

/* The optional "status" of an item: one of ITEM_STATUSES or null. */
static int item_status(json_t *item, const char *path, struct run_error *err)
{
    json_t *v = json_object_get(item, "status");
    char param[PATH_MAX_LEN];

    if (!v || json_is_null(v))
        return 0;
    path_printf(param, sizeof(param), "%s.status", path);
    if (!json_is_string(v))
        return bad_type(err, param, "a string", v);
    if (!in_list(json_string_value(v), ITEM_STATUSES))
        return run_error_set(err, 400, "invalid_value", param,
                             "Invalid value for '%s': '%.64s'. Supported values are "
                             "'in_progress', 'completed' and 'incomplete'.",
                             param, json_string_value(v));
    return 0;
}

/* A required string member "name" of obj at path. */
static int req_string(json_t *obj, const char *path, const char *name, const char **out,
                      struct run_error *err)
{
    json_t *v = json_object_get(obj, name);
    char param[PATH_MAX_LEN];

    path_printf(param, sizeof(param), "%s.%s", path, name);
    if (!v)
        return missing(err, param);
    if (!json_is_string(v))
        return bad_type(err, param, "a string", v);
    *out = json_string_value(v);
    return 0;
}

/* Where a content part stands: what it may be. */
enum part_of {
    PART_USER,      /* a user, system or developer message: input_text, input_image (by URL) */
    PART_ASSISTANT, /* an assistant message: output_text, refusal */
    PART_TOOL,      /* a function_call_output's output: input_text */
};

/* An input_image part: by URL only (arun has no Files API), rebuilt {type, image_url[, detail]}. */
static int image_part(json_t *part, const char *path, json_t **out, struct run_error *err)
{
    static const char *const keys[] = {"type", "image_url", "detail", "file_id", NULL};
    static const char *const details[] = {"low", "high", "auto", "original", NULL};
    json_t *file_id = json_object_get(part, "file_id");
    json_t *detail = json_object_get(part, "detail");
    const char *url;
    char param[PATH_MAX_LEN];
    int rc;

    rc = only_keys(part, path, keys, err);
    if (rc != 0)
        return rc;
    if (file_id && !json_is_null(file_id)) {
        path_printf(param, sizeof(param), "%s.file_id", path);
        return run_error_set(err, 400, "invalid_value", param,
                             "Invalid '%s': arun has no Files API; give the image as "
                             "'image_url' (an https: or data: URL).",
                             param);
    }
    rc = req_string(part, path, "image_url", &url, err);
    if (rc != 0)
        return rc;
    path_printf(param, sizeof(param), "%s.detail", path);
    if (detail && !json_is_null(detail)) {
        if (!json_is_string(detail))
            return bad_type(err, param, "a string", detail);
        if (!in_list(json_string_value(detail), details))
            return run_error_set(err, 400, "invalid_value", param,
                                 "Invalid value for '%s': '%.64s'. Supported values are 'low', "
                                 "'high', 'auto' and 'original'.",
                                 param, json_string_value(detail));
    }
    *out = json_pack("{s:s, s:s}", "type", "input_image", "image_url", url);
    if (json_is_string(detail))
        json_object_set(*out, "detail", detail);
    return 0;
}

/* A refusal part of an assistant message, rebuilt {type, refusal}. */
static int refusal_part(json_t *part, const char *path, json_t **out, struct run_error *err)
{
    const char *refusal;
    int rc = only_keys(part, path, (const char *const[]){"type", "refusal", NULL}, err);
    if (rc == 0)
        rc = req_string(part, path, "refusal", &refusal, err);
    if (rc == 0)
        *out = json_pack("{s:s, s:s}", "type", "refusal", "refusal", refusal);
    return rc;
}

/* One content part, rebuilt in *out (new reference): text parts as {type, text} (output_text
 * also with annotations), images and refusals as above. */
static int content_part(json_t *part, const char *path, enum part_of of, json_t **out,
                        struct run_error *err)
{
    static const char *const in_keys[] = {"type", "text", NULL};
    static const char *const out_keys[] = {"type", "text", "annotations", "logprobs", NULL};
    static const char *const supported[] = {
        [PART_USER] = "'input_text' and 'input_image'",
        [PART_ASSISTANT] = "'output_text' and 'refusal'",
        [PART_TOOL] = "'input_text'",
    };
    static const char *const whose[] = {
        [PART_USER] = "a user, system or developer message",
        [PART_ASSISTANT] = "an assistant message",
        [PART_TOOL] = "a tool output",
    };
    bool assistant = of == PART_ASSISTANT;
    const char *want = assistant ? "output_text" : "input_text";
    json_t *t;
    const char *type, *text;
    char param[PATH_MAX_LEN];
    int rc;

    if (!json_is_object(part))
        return bad_type(err, path, "an object", part);
    path_printf(param, sizeof(param), "%s.type", path);
    t = json_object_get(part, "type");
    if (!t)
        return missing(err, param);
    if (!json_is_string(t))
        return bad_type(err, param, "a string", t);
    type = json_string_value(t);
    if (of == PART_USER && strcmp(type, "input_image") == 0)
        return image_part(part, path, out, err);
    if (assistant && strcmp(type, "refusal") == 0)
        return refusal_part(part, path, out, err);
    if (strcmp(type, want) != 0) {
        bool known =
            in_list(type, (const char *const[]){"input_text", "output_text", "refusal",
                                                "input_image", "input_file", "input_audio", NULL});
        return run_error_set(err, 400, "invalid_value", param,
                             "Invalid value for '%s': '%.64s'%s. The content parts of %s are %s.",
                             param, type, known ? " is not supported here by arun" : "", whose[of],
                             supported[of]);
    }
    rc = only_keys(part, path, assistant ? out_keys : in_keys, err);
    if (rc != 0)
        return rc;
    rc = req_string(part, path, "text", &text, err);
    if (rc != 0)
        return rc;
    if (assistant) {
        json_t *ann = json_object_get(part, "annotations");
        path_printf(param, sizeof(param), "%s.annotations", path);
        rc = opt_typed(ann, param, JSON_ARRAY, "an array", err);
        if (rc != 0)
            return rc;
        path_printf(param, sizeof(param), "%s.logprobs", path);
        rc = opt_typed(json_object_get(part, "logprobs"), param, JSON_ARRAY, "an array", err);
        if (rc != 0)
            return rc;
        *out = json_pack("{s:s, s:s, s:o}", "type", want, "text", text, "annotations",
                         json_is_array(ann) ? json_incref(ann) : json_array());
        return 0;
    }
    *out = json_pack("{s:s, s:s}", "type", want, "text", text);
    return 0;
}

/* content: a string (one text part of the role's kind) or an array of parts, rebuilt into
 * *out (new reference). */
static int content_parts(json_t *content, const char *path, enum part_of of, json_t **out,
                         struct run_error *err)
{
    json_t *parts = json_array();
    json_t *part;
    size_t i;
    int rc = 0;

    if (json_is_string(content)) {
        json_array_append_new(parts, json_pack("{s:s, s:O}", "type",
                                               of == PART_ASSISTANT ? "output_text" : "input_text",
                                               "text", content));
        if (of == PART_ASSISTANT)
            json_object_set_new(json_array_get(parts, 0), "annotations", json_array());
        *out = parts;
        return 0;
    }
    json_array_foreach(content, i, part)
    {
        char ppath[PATH_MAX_LEN];
        json_t *np = NULL;
        path_printf(ppath, sizeof(ppath), "%s[%zu]", path, i);
        rc = content_part(part, ppath, of, &np, err);
        if (rc != 0)
            break;
        json_array_append_new(parts, np);
    }
    if (rc != 0) {
        json_decref(parts);
        return rc;
    }
    *out = parts;
    return 0;
}

/* A message item, typed ({type:"message"}) or in the EasyInputMessage form (no type). */
static int item_message(json_t *item, const char *path, json_t *seen, json_t **out,
                        struct run_error *err)
{
    static const char *const keys[] = {"type", "role", "content", "id", "status", "phase", NULL};
    static const char *const roles[] = {"user", "assistant", "system", "developer", NULL};
    static const char *const done[] = {"id", "type", "role", "content", NULL};
    json_t *msg = json_object();
    json_t *content, *parts = NULL;
    const char *role;
    char param[PATH_MAX_LEN];
    int rc;

    rc = only_keys(item, path, keys, err);
    if (rc != 0)
        goto out;
    rc = req_string(item, path, "role", &role, err);
    if (rc != 0)
        goto out;
    if (!in_list(role, roles)) {
        path_printf(param, sizeof(param), "%s.role", path);
        rc = run_error_set(err, 400, "invalid_value", param,
                           "Invalid value for '%s': '%.64s'. Supported values are 'user', "
                           "'assistant', 'system' and 'developer'.",
                           param, role);
        goto out;
    }
    bool assistant = strcmp(role, "assistant") == 0;
    rc = item_id(item, path, "msg_", seen, msg, err);
    if (rc != 0)
        goto out;
    rc = item_status(item, path, err);
    if (rc != 0)
        goto out;
    path_printf(param, sizeof(param), "%s.phase", path);
    rc = opt_typed(json_object_get(item, "phase"), param, JSON_STRING, "a string", err);
    if (rc != 0)
        goto out;

    path_printf(param, sizeof(param), "%s.content", path);
    content = json_object_get(item, "content");
    if (!content) {
        rc = missing(err, param);
        goto out;
    }
    if (!json_is_string(content) && !json_is_array(content)) {
        rc = bad_type(err, param, "a string or an array of content parts", content);
        goto out;
    }
    rc = content_parts(content, param, assistant ? PART_ASSISTANT : PART_USER, &parts, err);
    if (rc != 0)
        goto out;
    json_object_set_new(msg, "type", json_string("message"));
    json_object_set_new(msg, "role", json_string(role));
    json_object_set(msg, "content", parts);
    copy_rest(msg, item, done);
    *out = json_incref(msg);
out:
    json_decref(parts);
    json_decref(msg);
    return rc;
}

/* A function_call item: a tool call the model made, given back as history. */
static int item_function_call(json_t *item, const char *path, json_t *seen, json_t **out,
                              struct run_error *err)
{
    static const char *const keys[] = {"type", "call_id", "name",      "arguments",
                                       "id",   "status",  "namespace", NULL};
    static const char *const done[] = {"id", "type", "call_id", "name", "arguments", NULL};
    json_t *fc = json_object();
    const char *call_id, *name, *arguments;
    char param[PATH_MAX_LEN];
    int rc;

    rc = only_keys(item, path, keys, err);
    if (rc == 0)
        rc = req_string(item, path, "call_id", &call_id, err);
    if (rc == 0)
        rc = req_string(item, path, "name", &name, err);
    if (rc == 0)
        rc = req_string(item, path, "arguments", &arguments, err);
    if (rc == 0 && call_id[0] == '\0') {
        path_printf(param, sizeof(param), "%s.call_id", path);
        rc = run_error_set(err, 400, "invalid_value", param,
                           "Invalid '%s': expected a non-empty string.", param);
    }
    if (rc == 0)
        rc = item_id(item, path, "fc_", seen, fc, err);
    if (rc == 0)
        rc = item_status(item, path, err);
    if (rc == 0) {
        path_printf(param, sizeof(param), "%s.namespace", path);
        rc = opt_typed(json_object_get(item, "namespace"), param, JSON_STRING, "a string", err);
    }
    if (rc == 0) {
        json_object_set_new(fc, "type", json_string("function_call"));
        json_object_set_new(fc, "call_id", json_string(call_id));
        json_object_set_new(fc, "name", json_string(name));
        json_object_set_new(fc, "arguments", json_string(arguments));
        copy_rest(fc, item, done);
        *out = json_incref(fc);
    }
    json_decref(fc);
    return rc;
}

/* A function_call_output item: the result of a tool call, for the model. */
static int item_function_call_output(json_t *item, const char *path, json_t *seen, json_t **out,
                                     struct run_error *err)
{
    static const char *const keys[] = {"type", "call_id", "output", "id", "status", NULL};
    static const char *const done[] = {"id", "type", "call_id", "output", NULL};
    json_t *fco = json_object();
    json_t *output, *parts = NULL;
    const char *call_id;
    char param[PATH_MAX_LEN];
    int rc;

    rc = only_keys(item, path, keys, err);
    if (rc == 0)
        rc = req_string(item, path, "call_id", &call_id, err);
    if (rc == 0 && call_id[0] == '\0') {
        path_printf(param, sizeof(param), "%s.call_id", path);
        rc = run_error_set(err, 400, "invalid_value", param,
                           "Invalid '%s': expected a non-empty string.", param);
    }
    if (rc == 0) {
        path_printf(param, sizeof(param), "%s.output", path);
        output = json_object_get(item, "output");
        if (!output)
            rc = missing(err, param);
        else if (json_is_array(output))
            rc = content_parts(output, param, PART_TOOL, &parts, err);
        else if (!json_is_string(output))
            rc = bad_type(err, param, "a string or an array of input_text parts", output);
    }
    if (rc == 0)
        rc = item_id(item, path, "fco_", seen, fco, err);
    if (rc == 0)
        rc = item_status(item, path, err);
    if (rc == 0) {
        json_object_set_new(fco, "type", json_string("function_call_output"));
        json_object_set_new(fco, "call_id", json_string(call_id));
        json_object_set(fco, "output", parts ? parts : output);
        copy_rest(fco, item, done);
        *out = json_incref(fco);
    }
    json_decref(parts);
    json_decref(fco);
    return rc;
}

/* An item_reference ({type, id}): the id of an item stored earlier (an earlier response's
 * input or output, a conversation's item), unique among the request's items like any id. */
static int item_reference(json_t *item, const char *path, json_t *seen, json_t **out,
                          struct run_error *err)
{
    char param[PATH_MAX_LEN];
    int rc = only_keys(item, path, (const char *const[]){"type", "id", NULL}, err);

    if (rc != 0)
        return rc;
    path_printf(param, sizeof(param), "%s.id", path);
    json_t *id = json_object_get(item, "id");
    if (!id || json_is_null(id))
        return missing(err, param);
    *out = json_pack("{s:s}", "type", "item_reference");
    rc = item_id(item, path, NULL, seen, *out, err);
    if (rc != 0) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

/* One item at path ("input[3]"), rebuilt into *out (new reference). refs: item_reference is
 * allowed (the input of a response; a conversation's items are stored as they are). */
static int check_item(json_t *item, const char *path, bool refs, json_t *seen, json_t **out,
                      struct run_error *err)
{
    json_t *t;
    const char *type;
    char param[PATH_MAX_LEN];

    if (!json_is_object(item))
        return bad_type(err, path, "an object", item);
    t = json_object_get(item, "type");
    path_printf(param, sizeof(param), "%s.type", path);
    if (!t || json_is_null(t)) {
        /* EasyInputMessage: a role and content, no type. */
        if (json_object_get(item, "role"))
            return item_message(item, path, seen, out, err);
        return run_error_set(err, 400, "missing_required_parameter", param,
                             "Missing required parameter: '%s'. An item without a type must be "
                             "a message with a role and content. %s",
                             param, SUPPORTED_ITEMS);
    }
    if (!json_is_string(t))
        return bad_type(err, param, "a string", t);
    type = json_string_value(t);
    if (strcmp(type, "message") == 0)
        return item_message(item, path, seen, out, err);
    if (strcmp(type, "function_call") == 0)
        return item_function_call(item, path, seen, out, err);
    if (strcmp(type, "function_call_output") == 0)
        return item_function_call_output(item, path, seen, out, err);
    if (refs && strcmp(type, "item_reference") == 0)
        return item_reference(item, path, seen, out, err);
    return run_error_set(err, 400, "invalid_value", param,
                         "Invalid value for '%s': '%.64s' is not supported by arun. %s", param,
                         type, SUPPORTED_ITEMS);
}

/* Every item of arr (named name: "input", "items"), rebuilt in place. */
static int check_items(json_t *arr, const char *name, struct run_error *err)
{
    json_t *seen = json_object();
    json_t *item;
    size_t i;
    int rc = 0;

    json_array_foreach(arr, i, item)
    {
        char path[PATH_MAX_LEN];
        json_t *norm = NULL;
        path_printf(path, sizeof(path), "%s[%zu]", name, i);
        rc = check_item(item, path, strcmp(name, "input") == 0, seen, &norm, err);
        if (rc != 0)
            break;
        json_array_set_new(arr, i, norm);
    }
    json_decref(seen);
    return rc;
}

/* ---- tools ---- */

static bool tool_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TOOL_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int check_tool(json_t *tool, const char *path, json_t *names, struct run_error *err)
{
    static const char *const keys[] = {"type",        "name",          "parameters", "strict",
                                       "description", "defer_loading", NULL};
    json_t *t;
    const char *name;
    char param[PATH_MAX_LEN];
    int rc;

    if (!json_is_object(tool))
        return bad_type(err, path, "an object", tool);
    path_printf(param, sizeof(param), "%s.type", path);
    t = json_object_get(tool, "type");
    if (!t)
        return missing(err, param);
    if (!json_is_string(t))
        return bad_type(err, param, "a string", t);
    if (strcmp(json_string_value(t), "function") != 0)
        return run_error_set(err, 400, "invalid_value", param,
                             "Invalid value for '%s': tools of type '%.64s' are not supported by "
                             "arun; only 'function' tools are.",
                             param, json_string_value(t));
    rc = only_keys(tool, path, keys, err);
    if (rc != 0)
        return rc;
    rc = req_string(tool, path, "name", &name, err);
    if (rc != 0)
        return rc;
    path_printf(param, sizeof(param), "%s.name", path);
    if (!tool_name_ok(name))
        return run_error_set(err, 400, "invalid_value", param,
                             "Invalid '%s': '%.64s'. A function name has 1 to %d characters, "
                             "each a letter, a digit, '_' or '-'.",
                             param, name, TOOL_NAME_MAX);
    if (json_object_get(names, name))
        return run_error_set(err, 400, "invalid_value", param,
                             "Invalid '%s': the function '%s' is defined twice; tool names must "
                             "be unique.",
                             param, name);
    json_object_set_new(names, name, json_true());
    path_printf(param, sizeof(param), "%s.parameters", path);
    rc = opt_typed(json_object_get(tool, "parameters"), param, JSON_OBJECT, "an object", err);
    if (rc != 0)
        return rc;
    path_printf(param, sizeof(param), "%s.strict", path);
    rc = opt_typed(json_object_get(tool, "strict"), param, JSON_TRUE, "a boolean", err);
    if (rc != 0)
        return rc;
    path_printf(param, sizeof(param), "%s.defer_loading", path);
    rc = opt_typed(json_object_get(tool, "defer_loading"), param, JSON_TRUE, "a boolean", err);
    if (rc != 0)
        return rc;
    path_printf(param, sizeof(param), "%s.description", path);
    return opt_typed(json_object_get(tool, "description"), param, JSON_STRING, "a string", err);
}

/* tools, then tool_choice against them. names collects the function names. */
static int check_tools(json_t *tools, json_t *choice, struct run_request *out,
                       struct run_error *err)
{
    json_t *names = json_object();
    json_t *tool;
    size_t i;
    int rc = 0;

    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) {
            rc = bad_type(err, "tools", "an array", tools);
            goto out;
        }
        if (json_array_size(tools) > TOOLS_MAX) {
            rc = run_error_set(err, 400, "array_above_max_length", "tools",
                               "Invalid 'tools': array too long. Expected an array with maximum "
                               "length %d, but got an array with length %zu instead.",
                               TOOLS_MAX, json_array_size(tools));
            goto out;
        }
        json_array_foreach(tools, i, tool)
        {
            char path[PATH_MAX_LEN];
            path_printf(path, sizeof(path), "tools[%zu]", i);
            rc = check_tool(tool, path, names, err);
            if (rc != 0)
                goto out;
        }
        if (json_array_size(tools) > 0)
            out->tools = tools;
    }

    if (!choice || json_is_null(choice))
        goto out;
    if (json_is_string(choice)) {
        const char *s = json_string_value(choice);
        static const char *const modes[] = {"none", "auto", "required", NULL};
        if (!in_list(s, modes)) {
            rc = run_error_set(err, 400, "invalid_value", "tool_choice",
                               "Invalid value for 'tool_choice': '%.64s'. Supported values are "
                               "'none', 'auto', 'required' or {\"type\": \"function\", \"name\": "
                               "…}.",
                               s);
            goto out;
        }
        if (strcmp(s, "required") == 0 && !out->tools) {
            rc = run_error_set(err, 400, "invalid_value", "tool_choice",
                               "Invalid value for 'tool_choice': 'required' needs at least one "
                               "function in 'tools'.");
            goto out;
        }
    } else if (json_is_object(choice)) {
        static const char *const keys[] = {"type", "name", NULL};
        json_t *t = json_object_get(choice, "type");
        const char *name;
        if (!t) {
            rc = missing(err, "tool_choice.type");
            goto out;
        }
        if (!json_is_string(t)) {
            rc = bad_type(err, "tool_choice.type", "a string", t);
            goto out;
        }
        if (strcmp(json_string_value(t), "function") != 0) {
            rc = run_error_set(err, 400, "invalid_value", "tool_choice.type",
                               "Invalid value for 'tool_choice.type': '%.64s' is not supported "
                               "by arun; only 'function' is.",
                               json_string_value(t));
            goto out;
        }
        rc = only_keys(choice, "tool_choice", keys, err);
        if (rc == 0)
            rc = req_string(choice, "tool_choice", "name", &name, err);
        if (rc != 0)
            goto out;
        if (!json_object_get(names, name)) {
            rc = run_error_set(err, 400, "invalid_value", "tool_choice.name",
                               "Invalid value for 'tool_choice.name': no function named '%.64s' "
                               "is among the 'tools'.",
                               name);
            goto out;
        }
    } else {
        rc = bad_type(err, "tool_choice", "a string or an object", choice);
        goto out;
    }
    out->tool_choice = choice;
out:
    json_decref(names);
    return rc;
}

/* ---- POST /v1/responses ---- */

/* The top-level fields of ResponseCreateParams; anything else is an unknown parameter. */
static const char *const RESPONSE_KEYS[] = {
    "model", "input", "instructions", "previous_response_id", "conversation", "background",
    "stream", "store", "metadata", "max_output_tokens", "temperature", "top_p", "tools",
    "tool_choice", "parallel_tool_calls",
    /* accepted and ignored (see DESIGN) */
    "include", "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention",
    "service_tier", "truncation", "reasoning", "stream_options", "context_management",
    "top_logprobs", "max_tool_calls", "text",
    /* refused unless null */
    "prompt", NULL};

/* The fields that are accepted and ignored still have a type a client can get wrong. */
static int check_ignored(json_t *body, struct run_error *err)
{
    static const struct {
        const char *name;
        json_type type;
        const char *want;
    } fields[] = {
        {"include", JSON_ARRAY, "an array"},
        {"user", JSON_STRING, "a string"},
        {"safety_identifier", JSON_STRING, "a string"},
        {"prompt_cache_key", JSON_STRING, "a string"},
        {"prompt_cache_retention", JSON_STRING, "a string"},
        {"service_tier", JSON_STRING, "a string"},
        {"truncation", JSON_STRING, "a string"},
        {"reasoning", JSON_OBJECT, "an object"},
        {"stream_options", JSON_OBJECT, "an object"},
        {"context_management", JSON_ARRAY, "an array"},
        {"top_logprobs", JSON_INTEGER, "an integer"},
        {"max_tool_calls", JSON_INTEGER, "an integer"},
        {"text", JSON_OBJECT, "an object"},
    };
    json_t *v;
    int rc;

    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        rc = opt_typed(json_object_get(body, fields[i].name), fields[i].name, fields[i].type,
                       fields[i].want, err);
        if (rc != 0)
            return rc;
    }
    v = json_object_get(body, "truncation");
    if (json_is_string(v) &&
        !in_list(json_string_value(v), (const char *const[]){"auto", "disabled", NULL}))
        return run_error_set(err, 400, "invalid_value", "truncation",
                             "Invalid value for 'truncation': '%.64s'. Supported values are "
                             "'auto' and 'disabled'.",
                             json_string_value(v));
    v = json_object_get(body, "prompt");
    if (v && !json_is_null(v))
        return run_error_set(err, 400, "invalid_value", "prompt",
                             "Invalid 'prompt': stored prompt templates are not supported by "
                             "arun; send the text as 'instructions' and 'input'.");
    v = json_object_get(json_object_get(body, "text"), "format");
    if (v && !json_is_null(v)) {
        json_t *t = json_is_object(v) ? json_object_get(v, "type") : NULL;
        if (!json_is_object(v))
            return bad_type(err, "text.format", "an object", v);
        if (!json_is_string(t))
            return t ? bad_type(err, "text.format.type", "a string", t)
                     : missing(err, "text.format.type");
        if (strcmp(json_string_value(t), "text") != 0)
            return run_error_set(err, 400, "invalid_value", "text.format.type",
                                 "Invalid value for 'text.format.type': '%.64s' is not supported "
                                 "by arun; only 'text' is (structured output would not be "
                                 "enforced).",
                                 json_string_value(t));
    }
    return 0;
}

/* A number within [lo, hi]: temperature, top_p. */
static int check_range(json_t *v, const char *param, double lo, double hi, bool *has, double *out,
                       struct run_error *err)
{
    double d;

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return bad_type(err, param, "a number", v);
    d = json_number_value(v);
    if (d < lo)
        return run_error_set(err, 400, "decimal_below_min_value", param,
                             "Invalid '%s': decimal below minimum value. Expected a value >= %g, "
                             "but got %g instead.",
                             param, lo, d);
    if (d > hi)
        return run_error_set(err, 400, "decimal_above_max_value", param,
                             "Invalid '%s': decimal above maximum value. Expected a value <= %g, "
                             "but got %g instead.",
                             param, hi, d);
    *has = true;
    *out = d;
    return 0;
}

static int check_max_output_tokens(json_t *v, int64_t *out, struct run_error *err)
{
    json_int_t n;

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return bad_type(err, "max_output_tokens", "an integer", v);
    n = json_integer_value(v);
    if (n < RUN_MAX_OUTPUT_TOKENS_MIN)
        return run_error_set(err, 400, "integer_below_min_value", "max_output_tokens",
                             "Invalid 'max_output_tokens': integer below minimum value. Expected "
                             "a value >= %d, but got %lld instead.",
                             RUN_MAX_OUTPUT_TOKENS_MIN, (long long)n);
    if (n > INT32_MAX)
        return run_error_set(err, 400, "integer_above_max_value", "max_output_tokens",
                             "Invalid 'max_output_tokens': integer above maximum value. Expected "
                             "a value <= %d, but got %lld instead.",
                             INT32_MAX, (long long)n);
    *out = n;
    return 0;
}

/* input: a string (one user message) or an array of items; absent only with a conversation or
 * a previous response to continue. */
static int check_input(json_t *body, struct run_request *out, struct run_error *err)
{
    json_t *v = json_object_get(body, "input");
    int rc;

    if (!v || json_is_null(v)) {
        if (!out->conversation_id && !out->previous_response_id)
            return missing(err, "input");
        json_object_set_new(body, "input", json_array());
    } else if (json_is_string(v)) {
        char id[IDS_MAX];
        ids_new(id, sizeof(id), "msg_");
        json_object_set_new(body, "input",
                            json_pack("[{s:s, s:s, s:s, s:[{s:s, s:O}]}]", "id", id, "type",
                                      "message", "role", "user", "content", "type", "input_text",
                                      "text", v));
    } else if (json_is_array(v)) {
        rc = check_items(v, "input", err);
        if (rc != 0)
            return rc;
        if (json_array_size(v) == 0 && !out->conversation_id && !out->previous_response_id)
            return run_error_set(err, 400, "invalid_value", "input",
                                 "Invalid 'input': the array is empty. Give at least one item, "
                                 "or a 'conversation' or 'previous_response_id' to continue.");
    } else {
        return bad_type(err, "input", "a string or an array of items", v);
    }
    out->input = json_object_get(body, "input");
    return 0;
}

/* conversation: a string or {id}; refused with previous_response_id. */
static int check_conversation(json_t *body, struct run_request *out, struct run_error *err)
{
    json_t *v = json_object_get(body, "conversation");
    json_t *id = v;
    const char *param = "conversation";
    int rc;

    if (!v || json_is_null(v))
        return 0;
    if (json_is_object(v)) {
        rc = only_keys(v, "conversation", (const char *const[]){"id", NULL}, err);
        if (rc != 0)
            return rc;
        id = json_object_get(v, "id");
        param = "conversation.id";
        if (!id)
            return missing(err, param);
    } else if (!json_is_string(v)) {
        return bad_type(err, param, "a string or an object", v);
    }
    if (!json_is_string(id))
        return bad_type(err, param, "a string", id);
    rc = check_id(json_string_value(id), param, "conv_", err);
    if (rc != 0)
        return rc;
    if (out->previous_response_id)
        return run_error_set(err, 400, "mutually_exclusive_parameters", "conversation",
                             "Mutually exclusive parameters: give either 'previous_response_id' "
                             "or 'conversation', not both.");
    out->conversation_id = json_string_value(id);
    return 0;
}

int run_request_parse(json_t *body, struct run_request *out, struct run_error *err)
{
    struct run_request rq = {.store = true, .parallel_tool_calls = -1};
    json_t *v;
    bool ptc = true;
    int rc;

    if (!json_is_object(body))
        return run_error_set(err, 400, "invalid_type", "",
                             "The request body must be a JSON object, but it is %s.",
                             type_name(body));
    rc = only_keys(body, "", RESPONSE_KEYS, err);
    if (rc != 0)
        return rc;

    v = json_object_get(body, "model");
    if (!v || json_is_null(v))
        return missing(err, "model");
    if (!json_is_string(v))
        return bad_type(err, "model", "a string", v);
    if (json_string_length(v) == 0)
        return run_error_set(err, 400, "invalid_value", "model",
                             "Invalid 'model': expected a model name, but got an empty string.");
    if (json_string_length(v) >= GATEWAY_MODEL_MAX)
        return run_error_set(err, 400, "invalid_value", "model",
                             "Invalid 'model': the name is %zu bytes long; model names have at "
                             "most %d.",
                             json_string_length(v), GATEWAY_MODEL_MAX - 1);
    rq.model = json_string_value(v);

    rc = opt_string(json_object_get(body, "instructions"), "instructions", &rq.instructions, err);
    if (rc != 0)
        return rc;
    rc = opt_string(json_object_get(body, "previous_response_id"), "previous_response_id",
                    &rq.previous_response_id, err);
    if (rc == 0 && rq.previous_response_id)
        rc = check_id(rq.previous_response_id, "previous_response_id", "resp_", err);
    if (rc != 0)
        return rc;
    rc = check_conversation(body, &rq, err);
    if (rc != 0)
        return rc;

    rc = opt_bool(json_object_get(body, "background"), "background", &rq.background, err);
    if (rc == 0)
        rc = opt_bool(json_object_get(body, "stream"), "stream", &rq.stream, err);
    if (rc == 0)
        rc = opt_bool(json_object_get(body, "store"), "store", &rq.store, err);
    if (rc == 0)
        rc = opt_bool(json_object_get(body, "parallel_tool_calls"), "parallel_tool_calls", &ptc,
                      err);
    if (rc != 0)
        return rc;
    v = json_object_get(body, "parallel_tool_calls");
    if (v && !json_is_null(v))
        rq.parallel_tool_calls = ptc;
    if (rq.background && !rq.store)
        return run_error_set(err, 400, "invalid_value", "background",
                             "Invalid 'background': a background response must be stored so it "
                             "can be retrieved; 'background': true needs 'store': true.");

    rc = check_metadata(json_object_get(body, "metadata"), &rq.metadata, err);
    if (rc == 0)
        rc = check_max_output_tokens(json_object_get(body, "max_output_tokens"),
                                     &rq.max_output_tokens, err);
    if (rc == 0)
        rc = check_range(json_object_get(body, "temperature"), "temperature", 0, 2,
                         &rq.has_temperature, &rq.temperature, err);
    if (rc == 0)
        rc = check_range(json_object_get(body, "top_p"), "top_p", 0, 1, &rq.has_top_p, &rq.top_p,
                         err);
    if (rc == 0)
        rc = check_tools(json_object_get(body, "tools"), json_object_get(body, "tool_choice"), &rq,
                         err);
    if (rc == 0)
        rc = check_ignored(body, err);
    if (rc == 0)
        rc = check_input(body, &rq, err);
    if (rc != 0)
        return rc;

    rq.root = json_incref(body);
    *out = rq;
    return 0;
}

void run_request_free(struct run_request *rq)
{
    if (!rq)
        return;
    json_decref(rq->root);
    *rq = (struct run_request){0};
}

void run_request_fingerprint(const char *body, size_t len, char out[RUN_FINGERPRINT_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    /* EVP_Digest fails only when the digest itself is unavailable: not an input case. */
    ASSERT(EVP_Digest(body, len, md, &n, EVP_sha256(), NULL) == 1 && n == 32);
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[RUN_FINGERPRINT_HEX] = '\0';
}

/* ---- the Conversations API ---- */

/* items: an array of minimum..RUN_CONVERSATION_ITEMS_MAX items, normalised in place. */
static int check_conversation_items(json_t *v, size_t minimum, struct run_error *err)
{
    if (!json_is_array(v))
        return bad_type(err, "items", "an array", v);
    if (json_array_size(v) > RUN_CONVERSATION_ITEMS_MAX)
        return run_error_set(err, 400, "array_above_max_length", "items",
                             "Invalid 'items': array too long. Expected an array with maximum "
                             "length %d, but got an array with length %zu instead.",
                             RUN_CONVERSATION_ITEMS_MAX, json_array_size(v));
    if (json_array_size(v) < minimum)
        return run_error_set(err, 400, "array_below_min_length", "items",
                             "Invalid 'items': array too short. Expected an array with minimum "
                             "length %zu, but got an empty array instead.",
                             minimum);
    return check_items(v, "items", err);
}

static int conversation_body(json_t *body, const char *const *keys, struct run_error *err)
{
    if (!json_is_object(body))
        return run_error_set(err, 400, "invalid_type", "",
                             "The request body must be a JSON object, but it is %s.",
                             type_name(body));
    return only_keys(body, "", keys, err);
}

int run_conversation_create_parse(json_t *body, struct run_conversation_body *out,
                                  struct run_error *err)
{
    struct run_conversation_body cb = {0};
    json_t *items;
    int rc;

    rc = conversation_body(body, (const char *const[]){"items", "metadata", NULL}, err);
    if (rc != 0)
        return rc;
    items = json_object_get(body, "items");
    if (!items || json_is_null(items)) {
        json_object_set_new(body, "items", json_array());
        items = json_object_get(body, "items");
    }
    rc = check_conversation_items(items, 0, err);
    if (rc != 0)
        return rc;
    cb.has_metadata = json_object_get(body, "metadata") != NULL;
    rc = check_metadata(json_object_get(body, "metadata"), &cb.metadata, err);
    if (rc != 0)
        return rc;
    cb.items = items;
    cb.root = json_incref(body);
    *out = cb;
    return 0;
}

int run_conversation_update_parse(json_t *body, struct run_conversation_body *out,
                                  struct run_error *err)
{
    struct run_conversation_body cb = {0};
    json_t *md;
    int rc;

    rc = conversation_body(body, (const char *const[]){"metadata", NULL}, err);
    if (rc != 0)
        return rc;
    md = json_object_get(body, "metadata");
    if (!md)
        return missing(err, "metadata");
    rc = check_metadata(md, &cb.metadata, err);
    if (rc != 0)
        return rc;
    cb.has_metadata = true;
    cb.root = json_incref(body);
    *out = cb;
    return 0;
}

int run_conversation_items_parse(json_t *body, struct run_conversation_body *out,
                                 struct run_error *err)
{
    struct run_conversation_body cb = {0};
    json_t *items;
    int rc;

    rc = conversation_body(body, (const char *const[]){"items", NULL}, err);
    if (rc != 0)
        return rc;
    items = json_object_get(body, "items");
    if (!items)
        return missing(err, "items");
    rc = check_conversation_items(items, 1, err);
    if (rc != 0)
        return rc;
    cb.items = items;
    cb.root = json_incref(body);
    *out = cb;
    return 0;
}

void run_conversation_body_free(struct run_conversation_body *cb)
{
    if (!cb)
        return;
    json_decref(cb->root);
    *cb = (struct run_conversation_body){0};
}

/* ---- list queries ---- */

int run_list_query_parse(const char *after, const char *limit, const char *order,
                         struct run_list_query *out, struct run_error *err)
{
    struct run_list_query q = {.limit = RUN_LIST_LIMIT_DEFAULT, .desc = true};
    int rc;

    if (after && after[0]) {
        rc = check_id(after, "after", NULL, err);
        if (rc != 0)
            return rc;
        q.after = after;
    }
    if (limit) {
        unsigned long n = 0;
        size_t len = strlen(limit);
        bool digits = len > 0 && strspn(limit, "0123456789") == len;
        bool negative = len > 1 && limit[0] == '-' && strspn(limit + 1, "0123456789") == len - 1;
        if (negative)
            return run_error_set(err, 400, "integer_below_min_value", "limit",
                                 "Invalid 'limit': integer below minimum value. Expected a value "
                                 ">= 1, but got %.20s instead.",
                                 limit);
        if (!digits)
            return run_error_set(err, 400, "invalid_type", "limit",
                                 "Invalid type for 'limit': expected an integer from 1 to %d, but "
                                 "got '%.20s' instead.",
                                 RUN_LIST_LIMIT_MAX, limit);
        if (len > 9)
            return run_error_set(err, 400, "integer_above_max_value", "limit",
                                 "Invalid 'limit': integer above maximum value. Expected a value "
                                 "<= %d, but got %.20s instead.",
                                 RUN_LIST_LIMIT_MAX, limit);
        n = strtoul(limit, NULL, 10);
        if (n < 1)
            return run_error_set(err, 400, "integer_below_min_value", "limit",
                                 "Invalid 'limit': integer below minimum value. Expected a value "
                                 ">= 1, but got %lu instead.",
                                 n);
        if (n > RUN_LIST_LIMIT_MAX)
            return run_error_set(err, 400, "integer_above_max_value", "limit",
                                 "Invalid 'limit': integer above maximum value. Expected a value "
                                 "<= %d, but got %lu instead.",
                                 RUN_LIST_LIMIT_MAX, n);
        q.limit = (uint32_t)n;
    }
    if (order) {
        if (strcmp(order, "asc") == 0)
            q.desc = false;
        else if (strcmp(order, "desc") != 0)
            return run_error_set(err, 400, "invalid_value", "order",
                                 "Invalid value for 'order': '%.20s'. Supported values are 'asc' "
                                 "and 'desc'.",
                                 order);
    }
    *out = q;
    return 0;
}
