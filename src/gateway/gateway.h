/*
 * gateway.h: the OpenAI-compatible gateway (contract section 4): GET /v1/models and
 * POST /v1/chat/completions, /v1/completions, /v1/embeddings, routed by `model` to an engine,
 * queued per engine, relayed to it with libcurl on the loop (streaming chunk by chunk, with
 * backpressure both ways), falling back along a declared route when an engine cannot answer.
 *
 * A request for an engine that is stopped starts it and waits; a request that arrives while
 * its engine loads or is swapped in waits in that engine's queue and never fails for that
 * reason alone. Beyond max_concurrency in flight and queue_limit waiting, 429 with Retry-After.
 */
#ifndef ARUN_GATEWAY_GATEWAY_H
#define ARUN_GATEWAY_GATEWAY_H

#include "core/config.h"
#include "core/events.h"
#include "core/metrics.h"
#include "engines/supervisor.h"
#include "http/httpc.h"
#include "http/server.h"

#define GATEWAY_FIRST_BYTE_TIMEOUT_MS (10u * 60 * 1000) /* a long prompt on a slow GPU */
#define GATEWAY_IDLE_TIMEOUT_MS (5u * 60 * 1000)        /* between streamed chunks */
#define GATEWAY_RETRY_AFTER_S 1                         /* for 429 when the queue is full */
#define GATEWAY_WAIT_NOTE_MS 2000 /* a waiting stream hears where it stands this often */
#define GATEWAY_PEEK_MS 250       /* a waiting client that left is noticed within this */

struct gateway;

struct gateway *gateway_new(struct http_server *srv, const struct config *cfg,
                            struct supervisor *sup, struct httpc *httpc, struct events *events,
                            struct metrics *metrics);
/* Cancels what is in flight or queued and frees. */
void gateway_free(struct gateway *gw);

#endif
