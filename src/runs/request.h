/*
 * request.h: the requests of the Responses and Conversations APIs, parsed and checked before
 * anything runs (docs/responses.md). Pure: no loop, no store; every rule that can refuse a
 * request is here, so the hostile-input tests reach all of them through one function each.
 *
 * A refusal is a struct run_error: the HTTP status (400 unless said otherwise), an OpenAI error
 * code, the offending parameter as OpenAI names it ("input[2].content[0].text",
 * "metadata.user"), and a sentence saying what was wrong and what is allowed.
 */
#ifndef ARUN_RUNS_REQUEST_H
#define ARUN_RUNS_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/common.h"

#define RUN_METADATA_KEYS 16          /* metadata: at most this many keys */
#define RUN_METADATA_KEY_MAX 64       /* characters in a key */
#define RUN_METADATA_VALUE_MAX 512    /* characters in a value (a string) */
#define RUN_CONVERSATION_ITEMS_MAX 20 /* items in POST /v1/conversations */
#define RUN_LIST_LIMIT_DEFAULT 20
#define RUN_LIST_LIMIT_MAX 100
#define RUN_MAX_OUTPUT_TOKENS_MIN 16 /* OpenAI refuses max_output_tokens below 16 */
#define RUN_FINGERPRINT_HEX 64       /* hex digits of run_request_fingerprint (SHA-256) */

struct run_error {
    int status;        /* 400, 404, 409, … */
    char code[48];     /* OpenAI error code ("invalid_value", "missing_required_parameter"…) */
    char param[96];    /* the parameter at fault, "" for none */
    char message[320]; /* a sentence for a person */
    uint32_t retry_after_s; /* 429: the Retry-After to send; 0 means 1 s */
};

/* Sets err and returns -EINVAL: `return run_error_set(err, 400, "invalid_type", "input", "…")`. */
int run_error_set(struct run_error *err, int status, const char *code, const char *param,
                  const char *fmt, ...) PRINTF_LIKE(5, 6);

/* POST /v1/responses, checked. Strings point into root and live as long as it. root is the
 * normalised body (input always an array of typed items with ids): storing it and parsing it
 * again later gives the same request, ids included. */
struct run_request {
    json_t *root;                     /* the body, owned (one reference) */
    const char *model;                /* required */
    json_t *input;                    /* always an array of items, each with an "id" (given ids
                                         are kept; missing ones are made: msg_…, fc_…, fco_…) */
    const char *instructions;         /* or NULL */
    const char *previous_response_id; /* or NULL */
    const char *conversation_id;      /* `conversation` as a string or {id}; or NULL */
    bool background;
    bool stream;
    bool store;                /* default true */
    json_t *metadata;          /* object (checked against the RUN_METADATA_* limits) or NULL */
    int64_t max_output_tokens; /* 0: none */
    bool has_temperature, has_top_p;
    double temperature, top_p;
    json_t *tools;           /* array of function tools, or NULL */
    json_t *tool_choice;     /* "auto" | "none" | "required" | {type:"function",name}, or NULL */
    int parallel_tool_calls; /* -1 unset, 0, 1 */
};

/* Checks body (an object; on success rq holds a reference of its own, so the caller always keeps
 * and drops its own) against every rule of POST /v1/responses: types of every field, unknown item
 * and content types, metadata limits, `conversation` with `previous_response_id`, `background` with
 * `store: false`, … Returns 0 with *out filled, or -EINVAL with err set (400). */
int run_request_parse(json_t *body, struct run_request *out, struct run_error *err) MUST_USE;
/* Drops root's reference and clears rq; NULL and a cleared rq are no-ops. */
void run_request_free(struct run_request *rq);

/* The Idempotency-Key fingerprint of a request body: SHA-256 of the bytes, as 64 lower-case hex
 * digits and a NUL in out. The same key with another fingerprint is a 409. */
void run_request_fingerprint(const char *body, size_t len, char out[RUN_FINGERPRINT_HEX + 1]);

/* The bodies of the Conversations API, checked. Items follow the rules of `input` items (same
 * types, same normalisation: typed, each with an id). */
struct run_conversation_body {
    json_t *root;      /* the body, owned (one reference) */
    json_t *items;     /* array (possibly empty) of normalised items, or NULL when not allowed */
    bool has_metadata; /* the body carried "metadata" (possibly null) */
    json_t *metadata;  /* checked object, or NULL (absent or null) */
};
/* POST /v1/conversations: {items? (at most RUN_CONVERSATION_ITEMS_MAX), metadata?}; both
 * optional, and an empty or absent body is valid (pass an empty object). Returns 0 or -EINVAL
 * with err; on success cb holds a reference of its own to the body (the caller keeps its own). */
int run_conversation_create_parse(json_t *body, struct run_conversation_body *out,
                                  struct run_error *err) MUST_USE;
/* POST /v1/conversations/ID: {metadata} required (null clears it). Same ownership. */
int run_conversation_update_parse(json_t *body, struct run_conversation_body *out,
                                  struct run_error *err) MUST_USE;
/* POST /v1/conversations/ID/items: {items} with 1..RUN_CONVERSATION_ITEMS_MAX items. Same
 * ownership. */
int run_conversation_items_parse(json_t *body, struct run_conversation_body *out,
                                 struct run_error *err) MUST_USE;
/* Drops root's reference and clears cb; NULL is a no-op. */
void run_conversation_body_free(struct run_conversation_body *cb);

/* List parameters: after, limit (1..RUN_LIST_LIMIT_MAX, default RUN_LIST_LIMIT_DEFAULT), order
 * (asc|desc, default desc). Each argument is the raw query value or NULL. */
struct run_list_query {
    const char *after; /* NULL or an id */
    uint32_t limit;
    bool desc;
};
int run_list_query_parse(const char *after, const char *limit, const char *order,
                         struct run_list_query *out, struct run_error *err) MUST_USE;

#endif
