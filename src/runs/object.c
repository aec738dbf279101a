/*
 * object.c: the API objects as JSON (object.h). It owns the shape of what the Responses and
 * Conversations routes answer: every field of the SDK's type present, in the SDK's order, null
 * where arun has no value, so a client that reads `response.usage` or `response.conversation`
 * gets null rather than undefined, exactly as from OpenAI. It holds no state and reads no store.
 */
#include "runs/object.h"

#include <string.h>

#include "core/buf.h"
#include "core/common.h"

/* v (borrowed, may be NULL) as a new reference, null when NULL. */
static json_t *or_null(json_t *v)
{
    return v ? json_incref(v) : json_null();
}

static json_t *string_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *object_response(const struct object_response *o)
{
    const struct run_request *rq = o->rq;
    json_t *r;

    ASSERT(rq && o->id && o->status);
    r = json_object();
    json_object_set_new(r, "id", json_string(o->id));
    json_object_set_new(r, "object", json_string("response"));
    json_object_set_new(r, "created_at", json_integer(o->created_at));
    json_object_set_new(r, "status", json_string(o->status));
    json_object_set_new(r, "background", json_boolean(rq->background));
    json_object_set_new(r, "completed_at",
                        o->completed_at > 0 ? json_integer(o->completed_at) : json_null());
    json_object_set_new(r, "conversation",
                        rq->conversation_id ? json_pack("{s:s}", "id", rq->conversation_id)
                                            : json_null());
    json_object_set_new(r, "error", or_null(o->error));
    json_object_set_new(r, "incomplete_details",
                        o->incomplete_reason ? json_pack("{s:s}", "reason", o->incomplete_reason)
                                             : json_null());
    json_object_set_new(r, "instructions", string_or_null(rq->instructions));
    json_object_set_new(r, "max_output_tokens",
                        rq->max_output_tokens > 0 ? json_integer(rq->max_output_tokens)
                                                  : json_null());
    json_object_set_new(r, "metadata", rq->metadata ? json_incref(rq->metadata) : json_object());
    json_object_set_new(r, "model", json_string(rq->model ? rq->model : ""));
    json_object_set_new(r, "output", o->output ? json_incref(o->output) : json_array());
    json_object_set_new(r, "parallel_tool_calls", json_boolean(rq->parallel_tool_calls != 0));
    json_object_set_new(r, "previous_response_id", string_or_null(rq->previous_response_id));
    json_object_set_new(r, "prompt", json_null());
    json_object_set_new(r, "reasoning", json_pack("{s:n, s:n}", "effort", "summary"));
    json_object_set_new(r, "service_tier", json_string("default"));
    json_object_set_new(r, "store", json_boolean(rq->store));
    /* OpenAI answers its defaults (1.0) when the request left them out. */
    json_object_set_new(r, "temperature", json_real(rq->has_temperature ? rq->temperature : 1.0));
    json_object_set_new(r, "text", json_pack("{s:{s:s}}", "format", "type", "text"));
    json_object_set_new(r, "tool_choice",
                        rq->tool_choice ? json_incref(rq->tool_choice) : json_string("auto"));
    json_object_set_new(r, "tools", rq->tools ? json_incref(rq->tools) : json_array());
    json_object_set_new(r, "top_p", json_real(rq->has_top_p ? rq->top_p : 1.0));
    json_object_set_new(r, "truncation", json_string("disabled"));
    json_object_set_new(r, "usage", or_null(o->usage));
    json_object_set_new(r, "user", json_null());
    if (o->arun)
        json_object_set(r, "arun", o->arun);
    return r;
}

json_t *object_deleted(const char *id, const char *object)
{
    return json_pack("{s:s, s:s, s:b}", "id", id, "object", object, "deleted", 1);
}

/* The "id" of an element of a list, as a new reference (null when it has none). */
static json_t *element_id(json_t *el)
{
    json_t *id = json_object_get(el, "id");
    return json_is_string(id) ? json_incref(id) : json_null();
}

json_t *object_list(json_t *data, bool has_more)
{
    size_t n;
    json_t *l;

    ASSERT(json_is_array(data));
    n = json_array_size(data);
    l = json_object();
    json_object_set_new(l, "object", json_string("list"));
    json_object_set_new(l, "data", data);
    json_object_set_new(l, "first_id", n ? element_id(json_array_get(data, 0)) : json_null());
    json_object_set_new(l, "last_id", n ? element_id(json_array_get(data, n - 1)) : json_null());
    json_object_set_new(l, "has_more", json_boolean(has_more));
    return l;
}

json_t *object_conversation(const char *id, int64_t created_at, json_t *metadata)
{
    return json_pack("{s:s, s:s, s:I, s:o}", "id", id, "object", "conversation", "created_at",
                     (json_int_t)created_at, "metadata",
                     json_is_object(metadata) ? json_incref(metadata) : json_object());
}

json_t *object_item(json_t *item)
{
    static const char *const with_status[] = {"message", "function_call", "function_call_output",
                                              NULL};
    json_t *copy = json_copy(item);
    json_t *type, *status;

    ASSERT(copy);
    type = json_object_get(copy, "type");
    status = json_object_get(copy, "status");
    if (!json_is_string(type) || (status && !json_is_null(status)))
        return copy;
    for (const char *const *t = with_status; *t; t++) {
        if (strcmp(json_string_value(type), *t) == 0) {
            json_object_set_new(copy, "status", json_string("completed"));
            break;
        }
    }
    return copy;
}

char *object_output_text(json_t *output)
{
    struct buf b;
    json_t *item, *part;
    size_t i, j;
    char *s;

    buf_init(&b, SIZE_MAX); /* bounded by the output it reads, already in memory */
    json_array_foreach(output, i, item)
    {
        const char *type = json_string_value(json_object_get(item, "type"));
        if (!type || strcmp(type, "message") != 0)
            continue;
        json_array_foreach(json_object_get(item, "content"), j, part)
        {
            const char *ptype = json_string_value(json_object_get(part, "type"));
            const char *text = json_string_value(json_object_get(part, "text"));
            if (ptype && text && strcmp(ptype, "output_text") == 0)
                buf_puts(&b, text);
        }
    }
    s = xstrdup(buf_cstr(&b));
    buf_cleanup(&b);
    return s;
}
