/*
 * conversations.h: the Conversations API's routes (docs/conversations.md): POST
 * /v1/conversations, GET|POST|DELETE /v1/conversations/ID, GET|POST /v1/conversations/ID/items,
 * GET|DELETE /v1/conversations/ID/items/ITEM; and the read a response with `conversation` makes
 * of the conversation's items before it runs. Every error is in the OpenAI shape; no input makes
 * a 5xx.
 */
#ifndef ARUN_RUNS_CONVERSATIONS_H
#define ARUN_RUNS_CONVERSATIONS_H

#include <jansson.h>

#include "http/server.h"
#include "runs/request.h"
#include "store/store.h"

/* Registers the routes on srv; they read and write st, which must outlive srv's requests (the
 * store drains before it closes). Nothing to free: the routes keep no state between requests. */
void conversations_api_register(struct http_server *srv, struct store *st);

/* The items a response continuing conversation id gets before its input: a JSON array (the text
 * cb receives) of the conversation's newest STORE_PAGE_MAX items, oldest first; -ENOENT when the
 * conversation does not exist (an empty one answers "[]"). Returns as store_items_list; cb runs
 * exactly once when it returns 0. */
int conversations_items_read(struct store *st, const char *tenant, const char *id,
                             store_value_cb cb, void *arg) MUST_USE;

/* Checks a response's input against the conversation items it continues (both borrowed arrays
 * of items with ids): an input item whose id is already in the conversation could not be
 * appended when the response completes, so it is refused up front, as OpenAI does. Returns 0, or
 * -EINVAL with err (400, param "input[N].id"). */
int conversations_check_input(json_t *items, json_t *input, struct run_error *err) MUST_USE;

#endif
