/*
 * reply.h: the answers every route of the runs layer shares (api.c, conversations.c): whose
 * objects a request reaches, a refusal from request.c in the OpenAI error shape, and a store
 * that cannot take the request.
 */
#ifndef ARUN_RUNS_REPLY_H
#define ARUN_RUNS_REPLY_H

#include "http/server.h"
#include "runs/request.h"

/* The tenant whose objects r reaches: its key's (contract 6), "default" with auth.mode none. */
const char *reply_tenant(struct http_request *r);
/* Answers err (request.c's refusal) in the OpenAI error shape; status 400 when err has none. */
void reply_run_error(struct http_request *r, const struct run_error *err);
/* Answers a store that refused or failed an op (rc: -errno): 503 with Retry-After when it is
 * only full for now (-EAGAIN), else 500; both say why. */
void reply_store_failed(struct http_request *r, int rc);

#endif
