/*
 * auth.c: the gate of auth.mode keys (auth.h). It owns the reading of the Authorization header
 * and the answers 401 and 403; keys.c owns the table it asks, limits.c the 429, audit.c the
 * record of each refusal. It promises that a presented key is read in place from h2o's header
 * and handed to keys_check only: it is never copied, logged or echoed, whatever its size (past
 * KEYS_BEARER_MAX bytes it is not even hashed).
 *
 * The order of the checks is the order a client fixes them in: who you are (401), what your
 * role may reach (403), how much you may do now (429). A request that passes the limits holds a
 * concurrency slot until it ends, however it ends: r->release gives it back.
 *
 * Another node of the cluster is a caller of its own kind: it brings the cluster secret
 * (x-arun-cluster) instead of a key, and acts with member rights for the tenant it names
 * (x-arun-tenant) on behalf of its own client, whose key and limits it checked already. Its
 * tenant and hop headers are read only once the secret is right; a wrong one is a 401.
 */
#include "tenancy/auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/config.h"

_Static_assert(KEYS_BEARER_MAX == 512, "the 401 for a long bearer value names 512");

struct auth {
    struct keys *keys;
    struct limits *limits;   /* or NULL */
    struct audit *audit;     /* or NULL */
    auth_peer_check peer_ok; /* checks the secret other nodes bring, or NULL: none may call */
    const void *peer_arg;
};

struct auth *auth_new(struct keys *keys, struct limits *limits, struct audit *audit)
{
    struct auth *a = xcalloc(1, sizeof(*a));
    a->keys = keys;
    a->limits = limits;
    a->audit = audit;
    return a;
}

void auth_free(struct auth *a)
{
    free(a);
}

void auth_set_peers(struct auth *a, auth_peer_check ok, const void *arg)
{
    if (a != NULL) {
        a->peer_ok = ok;
        a->peer_arg = arg;
    }
}

static void set_principal(struct http_request *r, const char *tenant, const char *key_id,
                          bool admin)
{
    snprintf(r->who.tenant, sizeof(r->who.tenant), "%s", tenant);
    snprintf(r->who.key_id, sizeof(r->who.key_id), "%s", key_id);
    r->who.admin = admin;
}

static void record_failure(struct auth *a, struct http_request *r, const char *reason)
{
    audit_auth_failure(a->audit, r, reason); /* a no-op for NULL */
}

/* 401 in OpenAI's shape for a bad key (its type is invalid_request_error, as OpenAI's own). */
static void unauthorized(struct auth *a, struct http_request *r, const char *reason,
                         const char *msg)
{
    record_failure(a, r, reason);
    json_t *body = http_error_json(401, "invalid_api_key", NULL, msg);
    json_object_set_new(json_object_get(body, "error"), "type",
                        json_string("invalid_request_error"));
    http_add_header(r, "www-authenticate", "Bearer");
    http_send_json(r, 401, body);
}

/* The bearer value of r's Authorization header, in place (never copied), or a 401 answered:
 * returns 0 with *key, *len, or -EACCES. */
static int bearer_of(struct auth *a, struct http_request *r, const char **key, size_t *len)
{
    ssize_t i = h2o_find_header(&r->req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0) {
        unauthorized(a, r, "no Authorization header",
                     "Missing API key: send it as the header Authorization: Bearer KEY "
                     "(this server has auth.mode: keys). `arun keys create` makes one.");
        return -EACCES;
    }
    if (h2o_find_header(&r->req->headers, H2O_TOKEN_AUTHORIZATION, i) >= 0) {
        /* Which one counts would be a guess, and a proxy in front may have guessed otherwise. */
        unauthorized(a, r, "more than one Authorization header",
                     "Invalid Authorization header: it was sent more than once; send one.");
        return -EACCES;
    }
    h2o_iovec_t v = r->req->headers.entries[i].value;
    static const char scheme[] = "bearer ";
    size_t n = sizeof(scheme) - 1;
    if (v.len < n || strncasecmp(v.base, scheme, n) != 0) {
        unauthorized(a, r, "not a bearer key",
                     "Invalid Authorization header: expected Bearer KEY (no other scheme is "
                     "accepted).");
        return -EACCES;
    }
    while (n < v.len && v.base[n] == ' ')
        n++;
    size_t end = v.len;
    while (end > n && v.base[end - 1] == ' ')
        end--;
    *key = v.base + n;
    *len = end - n;
    return 0;
}

/* Who r's key is, into r->who, or a 401 answered (-EACCES). */
static int identify(struct auth *a, struct http_request *r)
{
    const char *key;
    size_t len;
    if (bearer_of(a, r, &key, &len) != 0)
        return -EACCES;
    if (len > KEYS_BEARER_MAX) {
        unauthorized(a, r, "bearer value over 512 bytes",
                     "Invalid API key: it is longer than any key (512 bytes at most), so it "
                     "was not checked.");
        return -EACCES;
    }
    struct keys_principal p;
    int rc = keys_check(a->keys, key, len, clock_wall_ms(), &p);
    if (rc == -EKEYREVOKED) {
        char reason[64];
        snprintf(reason, sizeof(reason), "revoked key %s", p.id);
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "Invalid API key: this key (%s) was revoked. Ask an admin for a new one.", p.id);
        unauthorized(a, r, reason, msg);
        return -EACCES;
    }
    if (rc != 0) {
        unauthorized(a, r, rc == -EINVAL ? "malformed key" : "unknown key",
                     rc == -EINVAL ? "Invalid API key: not an arun key (arun- and 43 "
                                     "characters)."
                                   : "Invalid API key: no such key.");
        return -EACCES;
    }
    set_principal(r, p.tenant, p.id, p.role == KEYS_ADMIN);
    return 0;
}

static void release_cb(struct http_request *r, void *arg)
{
    struct auth *a = arg;
    limits_leave(a->limits, r->who.tenant);
}

/* Takes a slot of the tenant's limits for r, or answers 429 (-EAGAIN). */
static int enter_limits(struct auth *a, struct http_request *r)
{
    if (a->limits == NULL)
        return 0;
    struct limits_refusal why = {0};
    if (limits_enter(a->limits, r->who.tenant, &why) != 0) {
        char retry[16];
        snprintf(retry, sizeof(retry), "%u", why.retry_after_s ? why.retry_after_s : 1);
        http_add_header(r, "retry-after", retry);
        http_send_error(r, 429, "rate_limit_exceeded", NULL, "%s", why.message);
        return -EAGAIN;
    }
    r->release = release_cb;
    r->release_arg = a;
    return 0;
}

/* An admin acts for another tenant on a member route with ?tenant=NAME (the console's run page
 * of another tenant's run; "admin: everything", contract 6): the request then reaches that
 * tenant's objects, and counts against its limits, as if its own key had sent it. "*" is left
 * to the one route that reads it (the responses listing: every tenant). A member may name only
 * its own tenant. Returns 0, or answers r (400, 403) and returns non-zero. */
static int act_for(struct auth *a, struct http_request *r, enum http_access need)
{
    const char *t = need == HTTP_MEMBER ? http_query(r, "tenant") : NULL;
    if (t == NULL || strcmp(t, "*") == 0 || strcmp(t, r->who.tenant) == 0)
        return 0;
    if (!config_tenant_name_ok(t)) {
        http_send_error(r, 400, "invalid_tenant", "tenant",
                        "Invalid 'tenant': a tenant name is 1 to 64 of a-z, 0-9, '.', '_' and "
                        "'-', starting with a letter or digit.");
        return -EINVAL;
    }
    if (!r->who.admin) {
        record_failure(a, r, "member key acting for another tenant");
        http_send_error(r, 403, "insufficient_role", "tenant",
                        "Acting for another tenant (?tenant=) needs an admin key; this key (%s) "
                        "is a member key of tenant %s.",
                        r->who.key_id, r->who.tenant);
        return -EPERM;
    }
    snprintf(r->who.tenant, sizeof(r->who.tenant), "%s", t);
    return 0;
}

/* A node id as config_check_node_id allows it: 1 to 128 of letters, digits and . _ : -. */
static bool node_id_ok(const char *s)
{
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-");
    return n >= 1 && n <= HTTP_NODE_MAX && s[n] == '\0';
}

/* Another node's request: the secret checked (401), then the tenant it acts for (default when
 * absent) and the node it comes from, both checked as names (400). It gets member rights and
 * no limits (its node applied them). Returns 0 with r->who set, or answers r and returns
 * non-zero. */
static int identify_node(struct auth *a, struct http_request *r, const char *secret)
{
    if (a->peer_ok == NULL || !a->peer_ok(a->peer_arg, secret, strlen(secret))) {
        unauthorized(a, r, "wrong cluster secret",
                     "Invalid " HTTP_H_CLUSTER_SECRET " header: not this cluster's secret (every "
                     "node needs the same value in its cluster.secret_env variable).");
        return -EACCES;
    }
    const char *tenant = http_header(r, HTTP_H_CLUSTER_TENANT);
    const char *hop = http_header(r, HTTP_H_CLUSTER_HOP);
    if (tenant == NULL)
        tenant = HTTP_TENANT_DEFAULT;
    if (!config_tenant_name_ok(tenant) || hop == NULL || !node_id_ok(hop)) {
        http_send_error(r, 400, "invalid_node_request", NULL,
                        "A request between nodes names its node in " HTTP_H_CLUSTER_HOP " (a node "
                        "id) and its tenant, if any, in " HTTP_H_CLUSTER_TENANT " (a tenant name).");
        return -EINVAL;
    }
    set_principal(r, tenant, "", false);
    snprintf(r->who.node, sizeof(r->who.node), "%s", hop);
    return 0;
}

int auth_gate(struct http_request *r, enum http_access need, void *arg)
{
    struct auth *a = arg;
    const char *secret = r->who.local ? NULL : http_header(r, HTTP_H_CLUSTER_SECRET);
    if (secret != NULL) {
        if (identify_node(a, r, secret) != 0)
            return -EACCES;
        if (need == HTTP_ADMIN) {
            record_failure(a, r, "node on an admin route");
            http_send_error(r, 403, "insufficient_role", NULL,
                            "another node may reach member routes only; this one is an admin "
                            "route.");
            return -EPERM;
        }
        return act_for(a, r, need);
    }
    if (r->who.local) { /* the owner's socket: http/server.c marked it */
        set_principal(r, HTTP_TENANT_DEFAULT, AUTH_LOCAL_KEY_ID, true);
        return act_for(a, r, need);
    }
    if (need == HTTP_PUBLIC) {
        set_principal(r, HTTP_TENANT_DEFAULT, "", false);
        return 0;
    }
    if (identify(a, r) != 0)
        return -EACCES;
    if (need == HTTP_ADMIN && !r->who.admin) {
        record_failure(a, r, "member key on an admin route");
        const char *route = http_request_route(r);
        http_send_error(r, 403, "insufficient_role", NULL,
                        "%.*s %s needs an admin key; this key (%s) is a member key.",
                        (int)r->req->method.len, r->req->method.base, route ? route : "",
                        r->who.key_id);
        return -EPERM;
    }
    if (act_for(a, r, need) != 0)
        return -EPERM;
    return enter_limits(a, r);
}
