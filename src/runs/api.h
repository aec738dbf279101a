/*
 * api.h: the Responses API's routes (contract section 4, docs/responses.md): POST
 * /v1/responses, GET|DELETE /v1/responses/ID, POST /v1/responses/ID/cancel, GET
 * /v1/responses/ID/input_items, and the listing GET /v1/responses (an arun extension for
 * `arun runs`). Every error is in the OpenAI shape; no input makes a 5xx.
 */
#ifndef ARUN_RUNS_API_H
#define ARUN_RUNS_API_H

#include "http/server.h"
#include "runs/run.h"

struct runs_api;

/* Registers the routes on srv and a shutdown hook that ends the streams and stops the runs'
 * engine calls (unfinished runs stay so in the store, for the next start to recover). */
struct runs_api *runs_api_new(struct http_server *srv, struct runs *rs);
/* NULL is a no-op. Before runs_free. */
void runs_api_free(struct runs_api *a);

#endif
