/*
 * keys_api.h: the admin routes of API keys (contract 6, docs/http-api.md): POST /v1/keys makes a
 * key and answers its text once, GET /v1/keys lists them (never a text or a hash), POST
 * /v1/keys/{id}/revoke revokes one from the next request on. Each create and revoke is audited.
 */
#ifndef ARUN_TENANCY_KEYS_API_H
#define ARUN_TENANCY_KEYS_API_H

#include "http/server.h"
#include "tenancy/audit.h"
#include "tenancy/keys.h"

#define KEYS_API_LIMIT_DEFAULT 20 /* as every list of the API (contract 4) */
#define KEYS_API_LIMIT_MAX 100

struct keys_api;

/* Registers the routes (HTTP_ADMIN) on srv over keys and audit (not owned; audit may be NULL:
 * nothing is recorded). Both must outlive the server. */
struct keys_api *keys_api_new(struct http_server *srv, struct keys *keys, struct audit *audit);
/* NULL is a no-op. Call after the server drained (no request of these routes is in flight). */
void keys_api_free(struct keys_api *api);

#endif
