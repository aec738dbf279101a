/*
 * keys_cmd.c: `arun keys create|ls|revoke` (keys_cmd.h, docs/cli.md). It owns finding where the
 * keys are and showing them to a person; what a key is and how it is made is tenancy/keys.c's,
 * whichever path is taken, so a key made through the server and one made on the store alone are
 * the same.
 *
 * DESIGN
 * Where: an explicit server (--server, $ARUN_URL) is asked over HTTP with the admin key given.
 * Otherwise the config names the data_dir, and the owner-only socket DATA_DIR/arun.sock is
 * tried first: a running server answers there (its in-memory table changes at once, so a
 * revocation holds from the next request). When nobody listens there (connection refused: no
 * byte of the request was sent, so trying elsewhere cannot act twice), the store is opened
 * here, on a loop of the CLI's own. That takes the data_dir's single-writer lock; if a server
 * holds it yet did not answer on its socket, the verb fails with a sentence saying so rather
 * than waiting for a lock that a live server never gives up.
 *
 * A key's text is printed once, on stdout, alone on its line (or in --json), and nowhere else:
 * the stderr note says it will not be shown again.
 */
#include "cli/keys_cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "cli/client.h"
#include "cli/table.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "http/server.h"
#include "store/store.h"
#include "tenancy/keys.h"

#define NCOLS 7 /* ID TENANT ROLE CREATED LAST-USED REVOKED NAME */

const char keys_cmd_usage[] =
    "usage: arun keys create --tenant T [--role admin|member] [--name N] [--json]\n"
    "       arun keys ls [--json]\n"
    "       arun keys revoke ID [--json]\n"
    "\n"
    "Manages the API keys of auth.mode: keys (docs/security.md).\n"
    "  create   makes a key for tenant T (role member unless --role admin) and prints its\n"
    "           text alone on stdout; it is shown only this once (arun keeps only its SHA-256).\n"
    "           --json prints {\"id\",\"key\",\"tenant\",\"role\",\"name\",\"created_at\"}.\n"
    "  ls       lists the keys: ID TENANT ROLE CREATED LAST-USED REVOKED NAME (never a key's\n"
    "           text or hash); --json prints the list as the API answers it.\n"
    "  revoke   revokes key ID (key_…): requests with it get 401 from the next one on.\n"
    "\n"
    "Where: with --server URL or $ARUN_URL, over HTTP with an admin key (--api-key KEY or\n"
    "$ARUN_API_KEY). Otherwise on the data_dir of the config (--config FILE, else $ARUN_CONFIG,\n"
    "else ./arun.yaml): through the running server's owner-only socket DATA_DIR/arun.sock, or,\n"
    "when no server runs there, on the store itself. So the first admin key can be made before\n"
    "any key exists, with the server running or not.\n"
    "\n"
    "  --config FILE   configuration file naming the data_dir\n"
    "  --server URL    a server to ask over HTTP (default: $ARUN_URL; none: the data_dir)\n"
    "  --api-key KEY   its admin key (default: $ARUN_API_KEY)\n" CLIENT_HELP_CACERT "\n"
    "exit codes: 0 success, 1 refused or failed (unknown id, a server that holds the data_dir\n"
    "but does not answer on its socket), 2 usage or configuration error, 3 server unreachable\n";

/* ---- arguments ---- */

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "arun keys: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", keys_cmd_usage);
    return CLIENT_EXIT_USAGE;
}

static int parse_action(const char *a, struct keys_cmd_opts *o)
{
    if (strcmp(a, "create") == 0)
        o->action = KEYS_CMD_CREATE;
    else if (strcmp(a, "ls") == 0 || strcmp(a, "list") == 0)
        o->action = KEYS_CMD_LS;
    else if (strcmp(a, "revoke") == 0)
        o->action = KEYS_CMD_REVOKE;
    else
        return -EINVAL;
    return 0;
}

/* Takes one valued option at argv[*i]; returns 1 taken, 0 not one, -EINVAL value missing. */
static int take_valued(int argc, char **argv, int *i, struct keys_cmd_opts *o)
{
    static const char *const names[] = {"--tenant", "--role", "--name", "--config"};
    const char **slots[] = {&o->tenant, &o->role, &o->name, &o->config};
    for (size_t k = 0; k < ARRAY_SIZE(names); k++) {
        bool missing = false;
        const char *v = client_take_value(argc, argv, i, names[k], NULL, &missing);
        if (missing) {
            usage_error("%s needs a value", names[k]);
            return -EINVAL;
        }
        if (v != NULL) {
            *slots[k] = v;
            return 1;
        }
    }
    return 0;
}

static int check_opts(const struct keys_cmd_opts *o)
{
    enum keys_role role;
    if (o->action == KEYS_CMD_CREATE && o->tenant == NULL)
        return usage_error("%s needs --tenant T", "create");
    if (o->action == KEYS_CMD_CREATE && !keys_tenant_valid(o->tenant))
        return usage_error("--tenant %s: a tenant name is 1 to 64 of a-z, 0-9, '.', '_' and '-', "
                           "starting with a letter or digit",
                           o->tenant);
    if (o->role != NULL && keys_role_parse(o->role, &role) != 0)
        return usage_error("--role %s: expected admin or member", o->role);
    if (o->action != KEYS_CMD_CREATE && (o->tenant || o->role || o->name))
        return usage_error("%s", "--tenant, --role and --name go with create only");
    if (o->action == KEYS_CMD_REVOKE && o->id == NULL)
        return usage_error("%s needs the key's id (key_…; `arun keys ls` lists them)", "revoke");
    return KEYS_CMD_PROCEED;
}

int keys_cmd_parse(int argc, char **argv, struct keys_cmd_opts *o)
{
    memset(o, 0, sizeof(*o));
    bool have_action = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(keys_cmd_usage, stdout);
            return 0;
        }
        int took = client_take_flag("keys", argc, argv, &i, &o->server, &o->api_key);
        if (took == 0)
            took = take_valued(argc, argv, &i, o);
        if (took < 0)
            return CLIENT_EXIT_USAGE;
        if (took > 0)
            continue;
        if (strcmp(a, "--json") == 0)
            o->json = true;
        else if (a[0] == '-')
            return usage_error("unknown option: %s", a);
        else if (!have_action && parse_action(a, o) == 0)
            have_action = true;
        else if (!have_action)
            return usage_error("unknown sub-verb: %s (create, ls or revoke)", a);
        else if (o->action == KEYS_CMD_REVOKE && o->id == NULL)
            o->id = a;
        else
            return usage_error("unexpected argument: %s", a);
    }
    if (!have_action)
        return usage_error("%s", "which: create, ls or revoke?");
    return check_opts(o);
}

/* ---- over HTTP (a server, or the local socket) ---- */

/* Each returns 0 with *out (the API's object; for ls, the array of keys), a negative errno of
 * the transport (nothing was answered), or an exit code after printing the server's refusal. */

static int answered(struct client_response *res, int want, json_t **out)
{
    if (res->status != want || !json_is_object(res->json)) {
        int rc = client_fail_response(res);
        client_response_cleanup(res);
        return rc;
    }
    *out = json_incref(res->json);
    client_response_cleanup(res);
    return 0;
}

static int http_create(struct client *c, const struct keys_cmd_opts *o, json_t **out)
{
    json_t *body =
        json_pack("{s:s, s:s}", "tenant", o->tenant, "role", o->role ? o->role : "member");
    if (o->name != NULL)
        json_object_set_new(body, "name", json_string(o->name));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct client_response res;
    int rc = client_post(c, "/v1/keys", text, &res);
    free(text);
    return rc != 0 ? rc : answered(&res, 201, out);
}

static int http_revoke(struct client *c, const char *id, json_t **out)
{
    char *esc = client_escape(id);
    char *path = xasprintf("/v1/keys/%s/revoke", esc);
    struct client_response res;
    int rc = client_post(c, path, NULL, &res);
    free(path);
    free(esc);
    return rc != 0 ? rc : answered(&res, 200, out);
}

static int http_list(struct client *c, json_t **out)
{
    json_t *all = json_array();
    char *after = NULL;
    for (;;) {
        char *esc = after ? client_escape(after) : NULL;
        char *path =
            xasprintf("/v1/keys?limit=%d%s%s", KEYS_CMD_PAGE, esc ? "&after=" : "", esc ? esc : "");
        struct client_response res;
        json_t *page = NULL;
        int rc = client_get(c, path, &res);
        free(path);
        free(esc);
        if (rc == 0)
            rc = answered(&res, 200, &page);
        if (rc != 0) {
            json_decref(all);
            free(after);
            return rc;
        }
        json_array_extend(all, json_object_get(page, "data"));
        const char *last = json_string_value(json_object_get(page, "last_id"));
        bool more = json_is_true(json_object_get(page, "has_more")) && last != NULL;
        free(after);
        after = more ? xstrdup(last) : NULL;
        json_decref(page);
        if (!more)
            break;
    }
    *out = all;
    return 0;
}

static int over_http(struct client *c, const struct keys_cmd_opts *o, json_t **out)
{
    switch (o->action) {
    case KEYS_CMD_CREATE:
        return http_create(c, o, out);
    case KEYS_CMD_REVOKE:
        return http_revoke(c, o->id, out);
    case KEYS_CMD_LS:
        return http_list(c, out);
    }
    return -EINVAL;
}

/* ---- on the store itself ---- */

struct local {
    uv_loop_t loop;
    struct store *st;
    struct keys *keys;
    bool done;
    int status;
    json_t *obj;
};

static void run_until_done(struct local *l)
{
    while (!l->done)
        uv_run(&l->loop, UV_RUN_ONCE);
}

static void done_cb(int status, void *arg)
{
    struct local *l = arg;
    l->status = status;
    l->done = true;
}

static void created_cb(int status, const struct keys_created *c, void *arg)
{
    struct local *l = arg;
    if (status == 0) {
        l->obj = keys_object(l->keys, c->id);
        json_object_set_new(l->obj, "key", json_string(c->text));
    }
    done_cb(status, arg);
}

/* Opens the store of cfg's data_dir and loads its keys. Returns 0, or an exit code (printed). */
static int local_open(struct local *l, const struct config *cfg, const char *sock)
{
    /* The configured store: keys live where the server reads them (PostgreSQL for a cluster). */
    struct store_options so = {
        .url = cfg->store.url, .data_dir = cfg->data_dir, .synchronous = cfg->store.synchronous};
    struct buf err;
    buf_init(&err, 4096);
    int rc = store_open(&l->loop, &so, &l->st, &err);
    if (rc == -EBUSY)
        fprintf(stderr,
                "arun: %s, but it does not answer on its owner-only socket %s (an arun without "
                "one, or one still starting): retry, or use --server URL with an admin key\n",
                buf_cstr(&err), sock);
    else if (rc != 0)
        fprintf(stderr, "arun: cannot open the store: %s\n", buf_cstr(&err));
    buf_cleanup(&err);
    if (rc != 0)
        return CLIENT_EXIT_FAILURE;
    l->keys = keys_new(l->st);
    l->done = false;
    rc = keys_load(l->keys, done_cb, l);
    if (rc == 0)
        run_until_done(l);
    if (rc != 0 || l->status != 0) {
        fprintf(stderr, "arun: cannot read the keys from the store: %s\n",
                strerror(-(rc != 0 ? rc : l->status)));
        return CLIENT_EXIT_FAILURE;
    }
    return 0;
}

/* The audit event the server would have stored for this action (tenancy/audit.c), written by
 * the CLI itself: actor and remote "local", as through the owner's socket, with "via" saying no
 * server ran. A failure to store it is said, but the key action stands (as in the server). */
static void audit_offline(struct local *l, const struct keys_cmd_opts *o, const char *id)
{
    bool create = o->action == KEYS_CMD_CREATE;
    json_t *detail = create ? json_pack("{s:s, s:s, s:s}", "tenant", o->tenant, "role",
                                        o->role != NULL ? o->role : "member", "via", "store")
                            : json_pack("{s:s}", "via", "store");
    char *text = json_dumps(detail, JSON_COMPACT);
    struct store_audit a = {.ts_ms = clock_wall_ms(),
                            .actor = "local",
                            .tenant = HTTP_TENANT_DEFAULT,
                            .action = create ? "key.create" : "key.revoke",
                            .target = id,
                            .outcome = "ok",
                            .remote = "local",
                            .detail = text,
                            .detail_len = strlen(text)};
    l->done = false;
    int rc = store_audit_append(l->st, &a, done_cb, l);
    if (rc == 0)
        run_until_done(l);
    if (rc != 0 || l->status != 0)
        fprintf(stderr, "arun: note: the audit trail did not keep this action: %s\n",
                strerror(-(rc != 0 ? rc : l->status)));
    free(text);
    json_decref(detail);
}

static int local_act(struct local *l, const struct keys_cmd_opts *o, json_t **out)
{
    enum keys_role role = KEYS_MEMBER;
    int rc = 0;
    l->done = false;
    if (o->action == KEYS_CMD_LS) {
        json_t *list = keys_list(l->keys, NULL, SIZE_MAX);
        *out = json_incref(json_object_get(list, "data"));
        json_decref(list);
        return 0;
    }
    if (o->action == KEYS_CMD_CREATE) {
        if (o->role != NULL && keys_role_parse(o->role, &role) != 0)
            return CLIENT_EXIT_USAGE; /* checked by the parse already */
        rc = keys_create(l->keys, o->tenant, role, o->name, created_cb, l);
    } else {
        rc = keys_revoke(l->keys, o->id, clock_wall_ms(), done_cb, l);
    }
    if (rc == 0)
        run_until_done(l);
    if (rc == -ENOENT || l->status == -ENOENT) {
        fprintf(stderr, "arun: no API key with id %s (`arun keys ls` lists them)\n", o->id);
        return CLIENT_EXIT_FAILURE;
    }
    if (rc != 0 || l->status != 0) {
        fprintf(stderr, "arun: the store could not record it: %s\n",
                strerror(-(rc != 0 ? rc : l->status)));
        return CLIENT_EXIT_FAILURE;
    }
    *out = o->action == KEYS_CMD_CREATE ? l->obj : keys_object(l->keys, o->id);
    audit_offline(l, o, json_string_value(json_object_get(*out, "id")));
    return 0;
}

static void local_close(struct local *l)
{
    keys_free(l->keys);
    if (l->st != NULL)
        store_close(l->st);
    uv_run(&l->loop, UV_RUN_DEFAULT); /* until the store has closed */
    int rc = uv_loop_close(&l->loop);
    (void)rc; /* a handle left would be the store's bug; the process exits next */
}

static int on_store(const struct config *cfg, const char *sock, const struct keys_cmd_opts *o,
                    json_t **out)
{
    struct local l = {0};
    log_set_level(LOGL_WARN); /* the store's start-up notes are the server's business */
    uv_loop_init(&l.loop);
    int rc = local_open(&l, cfg, sock);
    if (rc == 0)
        rc = local_act(&l, o, out);
    local_close(&l);
    return rc;
}

/* ---- where ---- */

/* Through the data_dir of the config: its socket, else its store. */
static int on_data_dir(const struct keys_cmd_opts *o, json_t **out)
{
    bool explicit_path = false;
    const char *path = config_pick_path(o->config, &explicit_path);
    struct config *cfg = NULL;
    struct buf err;
    buf_init(&err, 64 * 1024);
    if (path == NULL) {
        cfg = config_default();
    } else if (config_load(path, &cfg, &err) != 0) {
        fprintf(stderr, "%sarun: %s has errors\n", buf_cstr(&err), path);
        buf_cleanup(&err);
        return CLIENT_EXIT_USAGE;
    }
    buf_cleanup(&err);
    char *sock = xasprintf("%s/%s", cfg->data_dir, HTTP_LOCAL_SOCKET);
    int rc = -ECONNREFUSED;
    struct client c;
    if (strlen(sock) < sizeof(((struct sockaddr_un *)0)->sun_path)) {
        client_init_local(&c, sock);
        rc = over_http(&c, o, out);
        if (rc < 0 && (rc != -ECONNREFUSED || c.reached))
            rc = client_fail(&c, rc);
        client_cleanup(&c);
    }
    if (rc == -ECONNREFUSED)
        rc = on_store(cfg, sock, o, out);
    free(sock);
    config_free(cfg);
    return rc;
}

static int on_server(const struct keys_cmd_opts *o, json_t **out)
{
    struct client c;
    if (client_init(&c, o->server, o->api_key) != 0)
        return CLIENT_EXIT_USAGE;
    int rc = over_http(&c, o, out);
    if (rc < 0)
        rc = client_fail(&c, rc);
    client_cleanup(&c);
    return rc;
}

/* ---- showing ---- */

static char *fmt_time(const json_t *secs)
{
    if (!json_is_integer(secs))
        return xstrdup("-");
    time_t t = (time_t)json_integer_value(secs);
    struct tm tm;
    char out[32];
    gmtime_r(&t, &tm);
    strftime(out, sizeof(out), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return xstrdup(out);
}

static char *str_cell(const json_t *obj, const char *field)
{
    const char *s = json_string_value(json_object_get(obj, field));
    return xstrdup(s != NULL && s[0] != '\0' ? s : "-");
}

static void print_table(const json_t *keys)
{
    static const char *const header[NCOLS] = {"ID",        "TENANT",  "ROLE", "CREATED",
                                              "LAST-USED", "REVOKED", "NAME"};
    struct table t;
    table_init(&t, NCOLS);
    table_add_strs(&t, header);
    size_t i;
    const json_t *k;
    json_array_foreach(keys, i, k)
    {
        char *cells[NCOLS] = {str_cell(k, "id"),
                              str_cell(k, "tenant"),
                              str_cell(k, "role"),
                              fmt_time(json_object_get(k, "created_at")),
                              fmt_time(json_object_get(k, "last_used_at")),
                              fmt_time(json_object_get(k, "revoked_at")),
                              str_cell(k, "name")};
        table_add_row(&t, cells);
    }
    table_print(&t);
    table_cleanup(&t);
}

static void print_created(const json_t *k, bool json)
{
    const char *id = json_string_value(json_object_get(k, "id"));
    if (json) {
        json_t *shown =
            json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "id", json_object_get(k, "id"), "key",
                      json_object_get(k, "key"), "tenant", json_object_get(k, "tenant"), "role",
                      json_object_get(k, "role"), "name", json_object_get(k, "name"), "created_at",
                      json_object_get(k, "created_at"));
        char *s = json_dumps(shown, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(shown);
    } else {
        printf("%s\n", json_string_value(json_object_get(k, "key")));
    }
    fflush(stdout);
    fprintf(stderr,
            "arun: made key %s for tenant %s (role %s). Its text is shown only this once: keep "
            "it now; arun stores only its SHA-256.\n",
            id ? id : "?", json_string_value(json_object_get(k, "tenant")),
            json_string_value(json_object_get(k, "role")));
}

static void print_result(const struct keys_cmd_opts *o, json_t *obj)
{
    if (o->action == KEYS_CMD_CREATE) {
        print_created(obj, o->json);
    } else if (o->action == KEYS_CMD_LS && o->json) {
        json_t *list = json_pack("{s:s, s:O}", "object", "list", "data", obj);
        client_print_json(list);
        json_decref(list);
    } else if (o->action == KEYS_CMD_LS) {
        print_table(obj);
    } else if (o->json) {
        client_print_json(obj);
    } else {
        printf("%s revoked (tenant %s): requests with it get 401 from now on\n", o->id,
               json_string_value(json_object_get(obj, "tenant")));
    }
}

int keys_cmd_main(int argc, char **argv)
{
    struct keys_cmd_opts o;
    int rc = keys_cmd_parse(argc, argv, &o);
    if (rc != KEYS_CMD_PROCEED)
        return rc;
    const char *env_url = getenv("ARUN_URL");
    bool remote = o.server != NULL || (env_url != NULL && env_url[0] != '\0');
    json_t *obj = NULL;
    rc = remote ? on_server(&o, &obj) : on_data_dir(&o, &obj);
    if (rc == 0)
        print_result(&o, obj);
    json_decref(obj);
    return rc;
}
