/*
 * validate.h: checks the body of a chat-completions, completions or embeddings request against
 * the types and ranges of the OpenAI API before the gateway queues it, so that `max_tokens: -5`
 * or `temperature: "hot"` is a 400 naming the field instead of whatever the engine makes of it.
 *
 * It reads the body's bytes, the text the engine will get, in one pass and without allocating
 * (the gateway's fast path never builds a JSON tree). Only the fields that the API types are
 * checked; every other member passes to the engine unchanged (engines have their own extensions).
 */
#ifndef ARUN_GATEWAY_VALIDATE_H
#define ARUN_GATEWAY_VALIDATE_H

#include <stddef.h>

#include "core/common.h"

enum validate_kind {
    VALIDATE_CHAT,        /* POST /v1/chat/completions */
    VALIDATE_COMPLETIONS, /* POST /v1/completions */
    VALIDATE_EMBEDDINGS,  /* POST /v1/embeddings */
};

#define VALIDATE_PARAM_MAX 128   /* "messages[12].content[3].image_url.detail" fits easily */
#define VALIDATE_MESSAGE_MAX 320 /* one sentence naming the field, the expectation, what came */

/* Why a body was refused; every string is ASCII (the client's own text is never echoed, only
 * numbers), so it goes into the OpenAI error shape as it is. */
struct validate_error {
    const char *code;                   /* OpenAI's: "invalid_type", "invalid_value", … */
    char param[VALIDATE_PARAM_MAX];     /* the field's path: "temperature", "messages[2].role" */
    char message[VALIDATE_MESSAGE_MAX]; /* "Invalid type for 'temperature': expected …" */
};

/* The kind of the gateway route pattern ("/v1/chat/completions" …). Returns 0, or -ENOENT for a
 * route that has no body to validate. */
int validate_kind_of(const char *route, enum validate_kind *kind) MUST_USE;

/* Checks body[0..len), which must be a JSON object text that jsonscan_object accepted or jansson
 * parsed (the gateway checks it first): the walk trusts its syntax but never reads outside it, so
 * any other text gets an answer too ("invalid_json" when it is not even well formed). Returns 0
 * when every typed field is right, or -EINVAL with *err filled in: the answer is then a 400 with
 * err's code, param and message. */
int validate_request(enum validate_kind kind, const char *body, size_t len,
                     struct validate_error *err) MUST_USE;

#endif
