/*
 * auth.h: the gate in front of every route when auth.mode is keys (contract 6, issue 13). It
 * decides who a request acts for from its `Authorization: Bearer KEY` header and whether that
 * principal may reach the route: public routes pass without a key; a missing, malformed,
 * unknown or revoked key gets 401; a member key on an admin route gets 403 naming the role
 * needed; then the tenant's limits may answer 429. Requests that came through the owner-only
 * Unix socket act as the local admin without a key.
 *
 * With auth.mode none no gate is installed (http/server.c makes every request the admin of
 * tenant "default"; the socket's are marked local there too).
 */
#ifndef ARUN_TENANCY_AUTH_H
#define ARUN_TENANCY_AUTH_H

#include "http/server.h"
#include "tenancy/audit.h"
#include "tenancy/keys.h"
#include "tenancy/limits.h"

#define AUTH_LOCAL_KEY_ID "local" /* the key id of requests on the owner-only socket */

struct auth;

/* A gate over keys (not owned). limits and audit (not owned) may be NULL: no limits are
 * applied, no failure is recorded. All three must outlive the gate. */
struct auth *auth_new(struct keys *keys, struct limits *limits, struct audit *audit);
/* NULL is a no-op. Requests still holding a limits slot must have ended (the server drained). */
void auth_free(struct auth *a);
/* Whether an x-arun-cluster value (len bytes) is this cluster's secret: cluster_secret_ok,
 * handed over by serve.c (the cluster is a higher layer than tenancy). */
typedef bool (*auth_peer_check)(const void *arg, const char *value, size_t len);
/* Lets other nodes in: a request with x-arun-cluster that ok accepts is then that node acting
 * for the tenant in x-arun-tenant with member rights and no limits, audited as "node:ID"
 * (x-arun-hop); a value ok refuses is a 401. Without it (the default) every such request is a
 * 401. a NULL is a no-op; arg outlives a. */
void auth_set_peers(struct auth *a, auth_peer_check ok, const void *arg);

/* The http_gate_fn; arg is the struct auth. Install it with
 * http_server_set_gate(srv, auth_gate, a). */
int auth_gate(struct http_request *r, enum http_access need, void *arg);

#endif
