/*
 * config.c: loads arun.yaml (contract section 2) into a struct config. It owns the meaning of
 * every key: its type, its range, its default and the rules that tie keys together (an engine's
 * backend and the keys it needs, runtime.allowed, model names unique across engines, routes and
 * the egress policy). It promises that a config it returns is complete and consistent, and that
 * a config it refuses is described by every problem found (up to MAX_ERRORS), one line each,
 * "FILE:LINE: KEY.PATH: message", in file order. It does not resolve `auto` values (memory,
 * ports, the backend of an engine given both cmd and image at run time), does not split
 * commands into argv and does not touch the network: those belong to the engines layer.
 *
 * The module is five files: config.c (the top-level tables: listen, tls, data_dir, store,
 * log_level, auth, limits, node, runtime, runs, egress; and the public API), config_engines.c
 * (engines.NAME and runtime.allowed), config_routes.c (routes), config_tenants.c (tenants) and
 * config_walk.c (the generic walker: it knows no key). They share config_int.h.
 *
 * DESIGN
 * libyaml composes the whole file into a document (yaml_parser_load), so aliases are already
 * resolved into node references and every node carries its line. The document is then walked
 * against tables of fields, one table per mapping (top level, store, engines.NAME, health, …).
 * A table lists the known keys with their kind, range and default, so the same table drives the
 * unknown-key check, the "did you mean" suggestion, the conversion of the value, the defaults
 * (config_default) and the JSON of config_to_json: a key is added in one row. Tables are processed
 * in their own order, not the file's, so that rules needing other keys (engines need
 * runtime.allowed, routes need engines and egress) see them however the file is ordered; errors are
 * sorted by line before they are reported so the person still reads them top to bottom.
 *
 * A struct config under construction is always a valid tree (defaults first, each value
 * replaced as it is read), so every error path ends in one config_free().
 *
 * Untrusted input: everything here comes from a file a person wrote, so nothing asserts on it.
 * Each mapping and list is capped (MAX_ENTRIES), YAML merge keys (`<<`) have a depth and a work
 * budget (an alias may include itself), and user text quoted in messages is cut and stripped
 * of control bytes so one error stays one line.
 */
#include "core/config_int.h"
#include "core/fileio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- listen ------------------------------------------------------------------------------ */

static bool valid_hostname(const char *h, size_t n)
{
    size_t label = 0;

    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if (ch == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || (ch == '-' && label > 0);
        if (!ok || ++label > 63)
            return false;
    }
    return h[n - 1] != '-';
}

/* Is h[0..n) an IPv4 address (dotted quad) or, with v6, an IPv6 one? */
static bool valid_address(const char *h, size_t n, bool v6)
{
    char tmp[INET6_ADDRSTRLEN];
    unsigned char addr[sizeof(struct in6_addr)];

    if (n == 0 || n >= sizeof tmp)
        return false;
    memcpy(tmp, h, n);
    tmp[n] = '\0';
    return inet_pton(v6 ? AF_INET6 : AF_INET, tmp, addr) == 1;
}

static bool looks_numeric(const char *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((h[i] >= '0' && h[i] <= '9') || h[i] == '.'))
            return false;
    }
    return true;
}

/* config_parse_listen with the reason for a refusal, as a phrase for the error line. */
static int split_listen(const char *s, char **host_out, uint16_t *port_out, const char **why,
                        int64_t min_port)
{
    const char *h = s, *colon;
    size_t hlen;
    int64_t port;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        h = s + 1;
        hlen = close != NULL ? (size_t)(close - h) : 0;
        if (close == NULL || !valid_address(h, hlen, true)) {
            *why = "expected [IPv6]:PORT with a valid IPv6 address";
            return -EINVAL;
        }
        colon = close + 1;
        if (*colon != ':') {
            *why = "expected :PORT after the ]";
            return -EINVAL;
        }
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            *why = "expected HOST:PORT, with a port";
            return -EINVAL;
        }
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen) != NULL) {
            *why = "an IPv6 address needs brackets, e.g. \"[::1]:8080\"";
            return -EINVAL;
        }
        if (hlen == 0) {
            *why = "expected a host before :PORT (0.0.0.0 means every interface)";
            return -EINVAL;
        }
        bool ok = looks_numeric(h, hlen) ? valid_address(h, hlen, false) : valid_hostname(h, hlen);
        if (!ok) {
            *why = "expected an IPv4 address or a host name before :PORT";
            return -EINVAL;
        }
    }
    if (config_parse_i64(colon + 1, &port) != 0 || port < min_port || port > 65535) {
        *why = "the port must be an integer 1-65535";
        return -EINVAL;
    }
    *host_out = xstrndup(h, hlen);
    *port_out = (uint16_t)port;
    return 0;
}

int config_parse_listen(const char *s, char **host_out, uint16_t *port_out)
{
    const char *why;
    return split_listen(s, host_out, port_out, &why, 0);
}

static json_t *listen_json(const void *base)
{
    const struct config *cfg = base;
    bool v6 = strchr(cfg->listen_host, ':') != NULL;
    char *listen = xasprintf(v6 ? "[%s]:%u" : "%s:%u", cfg->listen_host, cfg->listen_port);
    json_t *j = json_string(listen);
    free(listen);
    return j;
}

static void parse_listen_node(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config *cfg = base;
    const char *why, *s;
    char *host;
    uint16_t port;
    char d[SNIP_MAX + 8];

    if (v->type == YAML_SEQUENCE_NODE) {
        /* Unquoted [::1]:8080 reads as a YAML list; say how to write it. */
        config_err_at(c, v, path,
                      "expected HOST:PORT, got a list (quote IPv6 addresses: \"[::1]:8080\")");
        return;
    }
    s = config_get_text(c, v, path);
    if (s == NULL)
        return;
    if (split_listen(s, &host, &port, &why, 1) != 0) {
        config_err_at(c, v, path, "%s, got %s", why, config_snip(s, d));
        return;
    }
    free(cfg->listen_host);
    cfg->listen_host = host;
    cfg->listen_port = port;
}

/* ---- tls ---------------------------------------------------------------------------------- */

static const struct field tls_fields[] = {
    {.key = "cert", .kind = F_STR, .off = offsetof(struct config, tls.cert)},
    {.key = "key", .kind = F_STR, .off = offsetof(struct config, tls.key)},
    {.key = NULL},
};

static json_t *tls_json(const void *base)
{
    const struct config *cfg = base;
    switch (cfg->tls.mode) {
    case CONFIG_TLS_UNSET:
        break;
    case CONFIG_TLS_OFF:
        return json_string("off");
    case CONFIG_TLS_ON:
        return json_pack("{s:s, s:s}", "cert", cfg->tls.cert, "key", cfg->tls.key);
    }
    return json_null();
}

/* `tls: off` or `tls: {cert: FILE, key: FILE}`. The files are read by the server at start (and
 * on SIGHUP), not here: a config check must not depend on a certificate renewed later, and the
 * server names the file and what is wrong with it. */
static void parse_tls_node(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config *cfg = base;
    yaml_node_t *vals[MAX_FIELDS];
    char d[SNIP_MAX + 8];

    if (config_is_scalar(v) && strcmp(config_text_of(v), "off") == 0) {
        cfg->tls.mode = CONFIG_TLS_OFF;
        return;
    }
    if (v->type != YAML_MAPPING_NODE) {
        config_err_at(c, v, path,
                      "expected off or a mapping {cert: FILE, key: FILE} (PEM files), got %s",
                      config_describe(v, d));
        return;
    }
    cfg->tls.mode = CONFIG_TLS_ON;
    config_parse_fields(c, v, path, tls_fields, cfg, vals);
    for (size_t i = 0; tls_fields[i].key != NULL; i++) {
        if (config_field_val(tls_fields, vals, tls_fields[i].key) == NULL)
            config_err_at(c, v, path,
                          "%s is missing: HTTPS needs cert (the certificate chain) and key (its "
                          "private key), both PEM files",
                          tls_fields[i].key);
    }
}

/* ---- top level --------------------------------------------------------------------------- */

#define CFG(member) offsetof(struct config, member)

static const struct word sync_words[] = {
    {"full", CONFIG_SYNC_FULL},
    {"normal", CONFIG_SYNC_NORMAL},
    {NULL, 0},
};
static const struct word level_words[] = {
    {"debug", LOGL_DEBUG}, {"info", LOGL_INFO}, {"warn", LOGL_WARN},
    {"error", LOGL_ERROR}, {NULL, 0},
};
static const struct word auth_words[] = {
    {"none", CONFIG_AUTH_NONE},
    {"keys", CONFIG_AUTH_KEYS},
    {NULL, 0},
};
static const struct word prefer_words[] = {
    {"native", CONFIG_BACKEND_NATIVE},
    {"container", CONFIG_BACKEND_CONTAINER},
    {NULL, 0},
};
static const struct word cli_words[] = {
    {"podman", CONFIG_CLI_PODMAN},
    {"docker", CONFIG_CLI_DOCKER},
    {"auto", CONFIG_CLI_AUTO},
    {NULL, 0},
};
static const struct word egress_words[] = {
    {"deny", CONFIG_EGRESS_DENY},
    {"allow", CONFIG_EGRESS_ALLOW},
    {NULL, 0},
};

static const struct field store_fields[] = {
    {.key = "url",
     .kind = F_STR,
     .off = CFG(store.url),
     .check = config_check_store_url,
     .dflt_str = "sqlite"},
    {.key = "synchronous",
     .kind = F_ENUM,
     .off = CFG(store.synchronous),
     .words = sync_words,
     .dflt = CONFIG_SYNC_FULL},
    {.key = NULL},
};
static const struct field auth_fields[] = {
    {.key = "mode",
     .kind = F_ENUM,
     .off = CFG(auth.mode),
     .words = auth_words,
     .dflt = CONFIG_AUTH_NONE},
    {.key = NULL},
};
static const struct field limits_fields[] = {
    {.key = "max_body_bytes",
     .kind = F_U64,
     .off = CFG(limits.max_body_bytes),
     .min = MAX_BODY_MIN,
     .max = MAX_BODY_MAX,
     .dflt = 8388608},
    {.key = "max_connections",
     .kind = F_U32,
     .off = CFG(limits.max_connections),
     .min = 1,
     .max = MAX_CONNECTIONS_MAX,
     .dflt = 200000},
    {.key = NULL},
};
static const struct field node_fields[] = {
    {.key = "ram_mb",
     .kind = F_I64,
     .off = CFG(node.ram_mb),
     .min = 1,
     .max = MAX_MIB,
     .flags = FL_AUTO,
     .dflt = CONFIG_AUTO},
    {.key = "vram_mb",
     .kind = F_I64,
     .off = CFG(node.vram_mb),
     .min = 0,
     .max = MAX_MIB,
     .flags = FL_AUTO,
     .dflt = CONFIG_AUTO},
    {.key = "reserve_mb",
     .kind = F_I64,
     .off = CFG(node.reserve_mb),
     .min = 0,
     .max = MAX_MIB,
     .dflt = 2048},
    {.key = NULL},
};
static const struct field runtime_fields[] = {
    {.key = "allowed", .kind = F_FUNC, .fn = config_parse_allowed, .to_json = config_allowed_json},
    {.key = "prefer",
     .kind = F_ENUM,
     .off = CFG(runtime.prefer),
     .words = prefer_words,
     .dflt = CONFIG_BACKEND_CONTAINER},
    {.key = "container_cli",
     .kind = F_ENUM,
     .off = CFG(runtime.container_cli),
     .words = cli_words,
     .dflt = CONFIG_CLI_AUTO},
    {.key = NULL},
};
static const struct field runs_fields[] = {
    {.key = "retention_days",
     .kind = F_U32,
     .off = CFG(runs.retention_days),
     .min = 0,
     .max = RETENTION_DAYS_MAX,
     .dflt = 30},
    {.key = NULL},
};
static const struct field cluster_fields[] = {
    {.key = "node_id",
     .kind = F_STR,
     .off = CFG(cluster.node_id),
     .check = config_check_node_id,
     .dflt_str = "auto"},
    {.key = "advertise", .kind = F_STR, .off = CFG(cluster.advertise), .check = config_check_url},
    {.key = "secret_env",
     .kind = F_STR,
     .off = CFG(cluster.secret_env),
     .check = config_check_env_name,
     .dflt_str = "ARUN_CLUSTER_SECRET"},
    {.key = "lease_s", .kind = F_U32, .off = CFG(cluster.lease_s), .min = 2, .max = 3600, .dflt = 10},
    {.key = NULL},
};
/* Processed in this order: engines need runtime, routes need engines and egress. */
static const struct field top_fields[] = {
    {.key = "listen", .kind = F_FUNC, .fn = parse_listen_node, .to_json = listen_json},
    {.key = "tls", .kind = F_FUNC, .fn = parse_tls_node, .to_json = tls_json},
    {.key = "data_dir", .kind = F_STR, .off = CFG(data_dir), .dflt_str = "./arun-data"},
    {.key = "store", .kind = F_MAP, .sub = store_fields},
    {.key = "log_level",
     .kind = F_ENUM,
     .off = CFG(log_level),
     .words = level_words,
     .dflt = LOGL_INFO},
    {.key = "auth", .kind = F_MAP, .sub = auth_fields},
    {.key = "limits", .kind = F_MAP, .sub = limits_fields},
    {.key = "node", .kind = F_MAP, .sub = node_fields},
    {.key = "runtime", .kind = F_MAP, .sub = runtime_fields},
    {.key = "runs", .kind = F_MAP, .sub = runs_fields},
    {.key = "cluster", .kind = F_MAP, .sub = cluster_fields},
    {.key = "tenants", .kind = F_FUNC, .fn = config_parse_tenants, .to_json = config_tenants_json},
    {.key = "egress",
     .kind = F_ENUM,
     .off = CFG(egress),
     .words = egress_words,
     .dflt = CONFIG_EGRESS_DENY},
    {.key = "engines", .kind = F_FUNC, .fn = config_parse_engines, .to_json = config_engines_json},
    {.key = "routes", .kind = F_FUNC, .fn = config_parse_routes, .to_json = config_routes_json},
    {.key = NULL},
};

struct config *config_default(void)
{
    struct config *cfg = xcalloc(1, sizeof *cfg);
    config_fields_defaults(top_fields, cfg);
    /* The F_FUNC keys with a value when absent. */
    cfg->listen_host = xstrdup("127.0.0.1"); /* loopback unless the file says otherwise */
    cfg->listen_port = 8080;
    cfg->runtime.allowed = CONFIG_ALLOW_NATIVE | CONFIG_ALLOW_CONTAINER | CONFIG_ALLOW_REMOTE;
    config_tenants_defaults(cfg);
    return cfg;
}

int config_parse(const char *text, size_t len, const char *name, struct config **out,
                 struct buf *errors)
{
    struct ctx *c = xcalloc(1, sizeof *c);
    struct config *cfg = config_default();
    yaml_parser_t parser;
    yaml_document_t doc;
    bool have_doc = false;
    int rc;

    *out = NULL;
    c->file = name;
    c->cfg = cfg;
    c->merge_budget = MERGE_BUDGET;
    cfg->path = xstrdup(name);
    /* libyaml's initialise fails only when malloc does; arun aborts on that everywhere. */
    int ok = yaml_parser_initialize(&parser);
    ASSERT(ok);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!config_depth_ok(c, text, len))
        goto out;
    if (!yaml_parser_load(&parser, &doc)) {
        config_syntax_error(c, &parser, text, len);
        goto out;
    }
    have_doc = true;
    c->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root != NULL && !config_is_null(root)) {
        char d[SNIP_MAX + 8];
        if (root->type == YAML_MAPPING_NODE)
            config_parse_fields(c, root, "", top_fields, cfg, NULL);
        else
            config_err_at(c, root, "(top level)",
                          "expected a mapping of keys (listen:, engines:, …), "
                          "got %s",
                          config_describe(root, d));
    }
    config_check_single_document(c, &parser, text, len);
out:
    rc = c->nerrs > 0 || c->dropped > 0 ? -EINVAL : 0;
    config_flush_errors(c, errors);
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(c);
    if (rc != 0)
        config_free(cfg);
    else
        *out = cfg;
    return rc;
}

/* Reads at most CONFIG_MAX_BYTES of path. Returns 0 or -errno (-EFBIG when larger). */
static int read_file(const char *path, char **out, size_t *len_out)
{
    struct buf b;
    buf_init(&b, CONFIG_MAX_BYTES);
    int rc = fileio_read(path, &b);
    if (rc == 0 && b.truncated)
        rc = -EFBIG;
    if (rc != 0) {
        buf_cleanup(&b);
        return rc;
    }
    *len_out = b.len;
    *out = buf_steal(&b);
    return 0;
}

int config_load(const char *path, struct config **out, struct buf *errors)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    rc = read_file(path, &text, &len);
    if (rc == -EFBIG) {
        if (errors != NULL)
            buf_printf(errors, "%s: larger than %u bytes; is this a config file?\n", path,
                       CONFIG_MAX_BYTES);
        return rc;
    }
    if (rc != 0) {
        if (errors != NULL)
            buf_printf(errors, "%s: cannot read: %s\n", path, strerror(-rc));
        return rc;
    }
    rc = config_parse(text, len, path, out, errors);
    free(text);
    return rc;
}

const char *config_pick_path(const char *flag_path, bool *explicit_out)
{
    const char *env = getenv("ARUN_CONFIG");

    *explicit_out = true;
    if (flag_path != NULL && flag_path[0] != '\0')
        return flag_path;
    if (env != NULL && env[0] != '\0')
        return env;
    *explicit_out = false;
    return access(CONFIG_DEFAULT_FILE, F_OK) == 0 ? CONFIG_DEFAULT_FILE : NULL;
}

const struct config_engine *config_find_engine(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nengines; i++) {
        if (strcmp(cfg->engines[i].name, name) == 0)
            return &cfg->engines[i];
    }
    return NULL;
}

bool config_egress_allows(const struct config *cfg, const struct config_engine *e, bool via_route)
{
    if (config_engine_backend(cfg, e) != CONFIG_BACKEND_REMOTE)
        return true;
    return via_route && cfg->egress == CONFIG_EGRESS_ALLOW;
}

enum config_backend config_engine_backend(const struct config *cfg, const struct config_engine *e)
{
    if (e->backend != CONFIG_BACKEND_AUTO)
        return e->backend;
    if (e->url != NULL)
        return CONFIG_BACKEND_REMOTE;
    if (e->cmd != NULL && e->image != NULL) {
        enum config_backend other = cfg->runtime.prefer == CONFIG_BACKEND_NATIVE
                                        ? CONFIG_BACKEND_CONTAINER
                                        : CONFIG_BACKEND_NATIVE;
        return (cfg->runtime.allowed & (1u << cfg->runtime.prefer)) ? cfg->runtime.prefer : other;
    }
    return e->cmd != NULL ? CONFIG_BACKEND_NATIVE : CONFIG_BACKEND_CONTAINER;
}

const char *config_backend_name(enum config_backend b)
{
    return config_word_name(config_backend_words, b);
}

json_t *config_to_json(const struct config *cfg)
{
    return config_fields_json(top_fields, cfg);
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    free(cfg->listen_host);
    free(cfg->tls.cert);
    free(cfg->tls.key);
    free(cfg->data_dir);
    free(cfg->store.url);
    free(cfg->cluster.node_id);
    free(cfg->cluster.advertise);
    free(cfg->cluster.secret_env);
    for (size_t i = 0; i < cfg->nengines; i++)
        config_engine_free(&cfg->engines[i]);
    free(cfg->engines);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        free(cfg->routes[i].name);
        config_free_strings(cfg->routes[i].engines, cfg->routes[i].nengines);
    }
    free(cfg->routes);
    config_tenants_free(cfg);
    free(cfg);
}
