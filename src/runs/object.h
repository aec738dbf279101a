/*
 * object.h: the objects of the Responses and Conversations APIs, laid out as JSON in the shape the
 * official SDKs parse (openai npm: resources/responses/responses.d.ts `Response`,
 * resources/conversations/conversations.d.ts and items.d.ts). Pure: the callers (the run, the
 * routes) own the data; this module only decides where each field goes and what an unknown one
 * looks like (null, never missing), so every route answers the same shape.
 */
#ifndef ARUN_RUNS_OBJECT_H
#define ARUN_RUNS_OBJECT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "runs/request.h"

/* What a Response object is made of; the run fills it, object_response() lays it out. */
struct object_response {
    const struct run_request *rq;  /* the request fields echoed back (model, instructions,
                                      metadata, tools, sampling…); required */
    const char *id;                /* resp_… */
    int64_t created_at;            /* seconds since the epoch */
    int64_t completed_at;          /* seconds, 0 while not completed (then null) */
    const char *status;            /* queued in_progress completed failed cancelled incomplete */
    json_t *output;                /* borrowed array of output items; NULL = [] */
    json_t *usage;                 /* borrowed Responses usage; NULL = null */
    json_t *error;                 /* borrowed {code, message}; NULL = null */
    const char *incomplete_reason; /* "max_output_tokens", "content_filter"; NULL = null */
    json_t *arun;                  /* borrowed provenance object; NULL = field omitted */
};

/* The Response object (new reference): every field of the SDK's Response type, in its order:
 * id, object:"response", created_at, status, background, completed_at, conversation ({id} or
 * null), error, incomplete_details ({reason} or null), instructions, max_output_tokens, metadata
 * ({} when none, as OpenAI), model, output, parallel_tool_calls (true unless the request said
 * false), previous_response_id, prompt, reasoning, service_tier, store, temperature and top_p (the
 * request's or 1.0, OpenAI's defaults), text {format:{type:"text"}}, tool_choice ("auto" unless
 * given), tools ([] unless given), truncation "disabled", usage, user null; then "arun" when set.
 * The borrowed JSON is copied in (incref), so the caller keeps its references. */
json_t *object_response(const struct object_response *o);

/* {id, object, deleted:true} (new reference); object is "response.deleted",
 * "conversation.deleted" or "conversation.item.deleted". */
json_t *object_deleted(const char *id, const char *object);

/* {object:"list", data, first_id, last_id, has_more} (new reference); takes data's reference.
 * first_id/last_id are the "id" of data's first and last element, null when data is empty. */
json_t *object_list(json_t *data, bool has_more);

/* {id, object:"conversation", created_at (s), metadata} (new reference); metadata is borrowed,
 * NULL = {}. */
json_t *object_conversation(const char *id, int64_t created_at, json_t *metadata);

/* An item as the item routes show it (input_items, conversation items; new reference): a copy
 * of the stored item with "status":"completed" added where the type has a status and the item
 * has none (message, function_call, function_call_output; the Conversations API's Message
 * requires it). item is borrowed. */
json_t *object_item(json_t *item);

/* The text of an output array: the concatenation of every output_text part of every message
 * item, in order (what the SDKs call output_text). Returns a heap string the caller frees; ""
 * when there is none. output is borrowed and may be NULL. */
char *object_output_text(json_t *output);

#endif
