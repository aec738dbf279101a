/*
 * keys_api.c: the routes of /v1/keys (keys_api.h). Handlers only check what the client sent,
 * ask keys.c and answer; the table and the store are keys.c's. A key's text appears in exactly
 * one answer, the 201 of its creation, which is sent after the store committed the key's hash.
 *
 * Ids from the path are echoed in a 404 only when they have the shape of a key id, so that a key
 * pasted where its id belongs is not repeated in an answer.
 */
#include "tenancy/keys_api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"

struct keys_api {
    struct keys *keys;
    struct audit *audit; /* or NULL */
};

/* One request waiting for the store. */
struct op {
    struct keys_api *api;
    struct http_request *r;
    char id[KEYS_ID_LEN + 1]; /* revoke */
};

/* A store that refused or failed (rc: -errno): 503 with Retry-After when it is only full for
 * now, else 500; both say why. */
static void store_failed(struct http_request *r, int rc)
{
    if (rc == -EAGAIN) {
        http_add_header(r, "retry-after", "1");
        http_send_error(r, 503, "store_busy", NULL,
                        "The store has too many writes pending; retry in a moment.");
        return;
    }
    http_send_error(r, 500, "store_error", NULL, "The store could not record the change: %s.",
                    strerror(-rc));
}

/* ---- POST /v1/keys ---- */

struct create_body {
    const char *tenant;
    enum keys_role role;
    const char *name; /* or NULL */
};

/* Checks the body; answers 400 and returns -EINVAL when it is not right. */
static int read_create(struct http_request *r, json_t *body, struct create_body *out)
{
    const char *field;
    json_t *v;
    json_object_foreach(body, field, v)
    {
        if (strcmp(field, "tenant") != 0 && strcmp(field, "role") != 0 &&
            strcmp(field, "name") != 0) {
            http_send_error(r, 400, "unknown_parameter", field,
                            "Unrecognized request argument supplied: %.64s (a key takes tenant, "
                            "role and name).",
                            field);
            return -EINVAL;
        }
    }
    v = json_object_get(body, "tenant");
    out->tenant = json_string_value(v);
    if (out->tenant == NULL || !keys_tenant_valid(out->tenant)) {
        http_send_error(r, 400, v ? "invalid_value" : "missing_required_parameter", "tenant",
                        v ? "Invalid 'tenant': a tenant name is 1 to 64 of a-z, 0-9, '.', '_' "
                            "and '-', starting with a letter or digit."
                          : "Missing required parameter: 'tenant'.");
        return -EINVAL;
    }
    v = json_object_get(body, "role");
    out->role = KEYS_MEMBER;
    if (v != NULL && !json_is_null(v) &&
        (!json_is_string(v) || keys_role_parse(json_string_value(v), &out->role) != 0)) {
        http_send_error(r, 400, "invalid_value", "role",
                        "Invalid 'role': expected \"admin\" or \"member\".");
        return -EINVAL;
    }
    v = json_object_get(body, "name");
    out->name = json_string_value(v);
    if ((v != NULL && !json_is_null(v) && out->name == NULL) ||
        (out->name != NULL && strlen(out->name) > KEYS_NAME_MAX)) {
        http_send_error(r, 400, "invalid_value", "name",
                        "Invalid 'name': expected a string of at most 256 bytes, or null.");
        return -EINVAL;
    }
    return 0;
}

static void created_cb(int status, const struct keys_created *c, void *arg)
{
    struct op *op = arg;
    struct http_request *r = op->r;
    if (status != 0) {
        audit_request(op->api->audit, r, "key.create", NULL, "failed", NULL);
        store_failed(r, status);
        free(op);
        return;
    }
    json_t *obj = keys_object(op->api->keys, c->id);
    json_object_set_new(obj, "key", json_string(c->text));
    audit_request(op->api->audit, r, "key.create", c->id, "ok",
                  json_pack("{s:s, s:s}", "tenant", c->tenant, "role", keys_role_name(c->role)));
    http_send_json(r, 201, obj);
    free(op);
}

static void create_route(struct http_request *r, void *arg)
{
    struct keys_api *api = arg;
    json_t *body;
    if (http_read_json(r, &body) != 0)
        return;
    struct create_body b;
    if (read_create(r, body, &b) != 0) {
        json_decref(body);
        return;
    }
    struct op *op = xcalloc(1, sizeof(*op));
    op->api = api;
    op->r = r;
    int rc = keys_create(api->keys, b.tenant, b.role, b.name, created_cb, op);
    json_decref(body);
    if (rc != 0) {
        free(op);
        store_failed(r, rc);
    }
}

/* ---- GET /v1/keys ---- */

static void list_route(struct http_request *r, void *arg)
{
    struct keys_api *api = arg;
    const char *after = http_query(r, "after");
    const char *limit_s = http_query(r, "limit");
    long limit = KEYS_API_LIMIT_DEFAULT;
    if (limit_s != NULL) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (limit_s[0] == '\0' || *end != '\0' || limit < 1 || limit > KEYS_API_LIMIT_MAX) {
            http_send_error(r, 400, "invalid_value", "limit",
                            "Invalid 'limit': expected a whole number from 1 to 100.");
            return;
        }
    }
    http_send_json(r, 200, keys_list(api->keys, after, (size_t)limit));
}

/* ---- POST /v1/keys/{id}/revoke ---- */

static bool id_shaped(const char *id)
{
    size_t n = strlen(id);
    if (n != KEYS_ID_LEN || strncmp(id, KEYS_ID_PREFIX, 4) != 0)
        return false;
    for (size_t i = 4; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return true;
}

static void key_not_found(struct http_request *r, const char *id)
{
    if (id_shaped(id))
        http_send_error(r, 404, "not_found", NULL, "No API key with id '%s'.", id);
    else
        http_send_error(r, 404, "not_found", NULL,
                        "No API key with that id (an id is key_ and 16 hex digits; `arun keys "
                        "ls` lists them).");
}

static void revoked_cb(int status, void *arg)
{
    struct op *op = arg;
    struct http_request *r = op->r;
    if (status == -ENOENT) { /* in the table but not in the store: not a state we make */
        key_not_found(r, op->id);
    } else if (status != 0) {
        audit_request(op->api->audit, r, "key.revoke", op->id, "failed", NULL);
        store_failed(r, status);
    } else {
        audit_request(op->api->audit, r, "key.revoke", op->id, "ok", NULL);
        http_send_json(r, 200, keys_object(op->api->keys, op->id));
    }
    free(op);
}

static void revoke_route(struct http_request *r, void *arg)
{
    struct keys_api *api = arg;
    const char *id = r->params[0];
    if (!id_shaped(id)) {
        key_not_found(r, id);
        return;
    }
    struct op *op = xcalloc(1, sizeof(*op));
    op->api = api;
    op->r = r;
    memcpy(op->id, id, KEYS_ID_LEN + 1);
    int rc = keys_revoke(api->keys, id, clock_wall_ms(), revoked_cb, op);
    if (rc != 0) {
        free(op);
        if (rc == -ENOENT)
            key_not_found(r, id);
        else
            store_failed(r, rc);
    }
}

struct keys_api *keys_api_new(struct http_server *srv, struct keys *keys, struct audit *a)
{
    struct keys_api *api = xcalloc(1, sizeof(*api));
    api->keys = keys;
    api->audit = a;
    http_route(srv, "POST", "/v1/keys", HTTP_ADMIN, create_route, api);
    http_route(srv, "GET", "/v1/keys", HTTP_ADMIN, list_route, api);
    http_route(srv, "POST", "/v1/keys/{id}/revoke", HTTP_ADMIN, revoke_route, api);
    return api;
}

void keys_api_free(struct keys_api *api)
{
    free(api);
}
