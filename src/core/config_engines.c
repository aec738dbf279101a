/*
 * config_engines.c: the engines.NAME table (every key of an engine, its default and range) and
 * the rules that tie an engine's keys together and to the rest of the file: the keys each
 * backend needs, runtime.allowed, model names unique across engines. Part of the config module
 * (config.c has the DESIGN).
 */
#include "core/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- engines ----------------------------------------------------------------------------- */

#define ENG(member) offsetof(struct config_engine, member)

const struct word config_backend_words[] = {
    {"auto", CONFIG_BACKEND_AUTO},
    {"native", CONFIG_BACKEND_NATIVE},
    {"container", CONFIG_BACKEND_CONTAINER},
    {"remote", CONFIG_BACKEND_REMOTE},
    {NULL, 0},
};
static const struct word probe_words[] = {
    {"http", CONFIG_PROBE_HTTP},
    {"completion", CONFIG_PROBE_COMPLETION},
    {NULL, 0},
};
static const struct word start_words[] = {
    {"on-demand", CONFIG_START_ON_DEMAND},
    {"always", CONFIG_START_ALWAYS},
    {"manual", CONFIG_START_MANUAL},
    {NULL, 0},
};
static const struct word restart_words[] = {
    {"never", CONFIG_RESTART_NEVER},
    {"on-failure", CONFIG_RESTART_ON_FAILURE},
    {"always", CONFIG_RESTART_ALWAYS},
    {NULL, 0},
};
static const struct word continuation_words[] = {
    {"none", CONFIG_CONT_NONE},
    {"chat-prefix", CONFIG_CONT_CHAT_PREFIX},
    {NULL, 0},
};

static json_t *args_json(const void *base)
{
    const struct config_engine *e = base;
    return config_strings_json(e->args, e->nargs);
}

static json_t *models_json(const void *base)
{
    const struct config_engine *e = base;
    return config_strings_json(e->models, e->nmodels);
}

static json_t *env_json(const void *base)
{
    const struct config_engine *e = base;
    json_t *env = json_object();
    for (size_t i = 0; i < e->nenv; i++)
        json_object_set_new(env, e->env[i].key, json_string(e->env[i].value));
    return env;
}

static void parse_args(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config_engine *e = base;
    char **args = config_string_list(c, v, path, "strings", true, NULL, &e->nargs);
    e->args = args;
}

static void parse_models(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config_engine *e = base;

    e->models =
        config_string_list(c, v, path, "model names", false, config_check_model_name, &e->nmodels);
    if (e->models == NULL)
        return;
    if (config_list_len(v) == 0)
        config_err_at(c, v, path,
                      "needs at least one model name (leave models out to use the engine "
                      "name)");
    for (size_t i = 0; i < e->nmodels; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(e->models[i], e->models[j]) == 0)
                config_err_at(c, v, path, "model '%s' is listed twice", e->models[i]);
        }
    }
}

static void parse_env(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config_engine *e = base;
    char d[SNIP_MAX + 8];

    if (v->type != YAML_MAPPING_NODE) {
        config_err_at(c, v, path, "expected a mapping of NAME: value, got %s",
                      config_describe(v, d));
        return;
    }
    struct entries *es = xmalloc(sizeof *es);
    config_collect_entries(c, v, path, es);
    e->env = xcalloc(es->n, sizeof *e->env);
    for (size_t i = 0; i < es->n; i++) {
        char *kp = config_child_path(path, es->v[i].name);
        const char *why = config_check_env_name(es->v[i].name);
        const char *val = NULL;
        if (why != NULL)
            config_err_at(c, es->v[i].key, kp, "%s", why);
        else if (config_is_null(es->v[i].val))
            config_err_at(c, es->v[i].val, kp,
                          "expected a string value (write \"\" for an empty one)");
        else
            val = config_get_text(c, es->v[i].val, kp);
        if (val != NULL) {
            e->env[e->nenv++] =
                (struct config_kv){.key = xstrdup(es->v[i].name), .value = xstrdup(val)};
        }
        free(kp);
    }
    free(es);
}

static const struct field health_fields[] = {
    {.key = "path",
     .kind = F_STR,
     .off = ENG(health.path),
     .check = config_check_http_path,
     .dflt_str = "/health"},
    {.key = "cmd", .kind = F_STR, .off = ENG(health.cmd), .check = config_check_cmd},
    {.key = "probe",
     .kind = F_ENUM,
     .off = ENG(health.probe),
     .words = probe_words,
     .dflt = CONFIG_PROBE_HTTP},
    {.key = "interval_ms",
     .kind = F_U32,
     .off = ENG(health.interval_ms),
     .min = 1,
     .max = DAY_MS,
     .dflt = 1000},
    {.key = "timeout_ms",
     .kind = F_U32,
     .off = ENG(health.timeout_ms),
     .min = 1,
     .max = DAY_MS,
     .dflt = 2000},
    {.key = "failures",
     .kind = F_U32,
     .off = ENG(health.failures),
     .min = 1,
     .max = 1000,
     .dflt = 3},
    {.key = "stall_timeout_s",
     .kind = F_U32,
     .off = ENG(health.stall_timeout_s),
     .min = 1,
     .max = WEEK_S,
     .dflt = 120},
    {.key = "start_timeout_s",
     .kind = F_U32,
     .off = ENG(health.start_timeout_s),
     .min = 1,
     .max = WEEK_S,
     .dflt = 3600},
    {.key = NULL},
};

static const struct field memory_fields[] = {
    {.key = "ram_mb", .kind = F_U64, .off = ENG(memory.ram_mb), .min = 0, .max = MAX_MIB},
    {.key = "vram_mb", .kind = F_U64, .off = ENG(memory.vram_mb), .min = 0, .max = MAX_MIB},
    {.key = NULL},
};

static const struct field restart_fields[] = {
    {.key = "policy",
     .kind = F_ENUM,
     .off = ENG(restart.policy),
     .words = restart_words,
     .dflt = CONFIG_RESTART_ON_FAILURE},
    {.key = "max", .kind = F_U32, .off = ENG(restart.max), .min = 0, .max = 1000000, .dflt = 5},
    {.key = "backoff_ms",
     .kind = F_U32,
     .off = ENG(restart.backoff_ms),
     .min = 1,
     .max = 3600000,
     .dflt = 1000},
    {.key = NULL},
};

static const struct field engine_fields[] = {
    {.key = "backend",
     .kind = F_ENUM,
     .off = ENG(backend),
     .words = config_backend_words,
     .dflt = CONFIG_BACKEND_AUTO},
    {.key = "cmd", .kind = F_STR, .off = ENG(cmd), .check = config_check_cmd},
    {.key = "image", .kind = F_STR, .off = ENG(image)},
    {.key = "args", .kind = F_FUNC, .fn = parse_args, .to_json = args_json},
    {.key = "url", .kind = F_STR, .off = ENG(url), .check = config_check_url},
    {.key = "api_key_env", .kind = F_STR, .off = ENG(api_key_env), .check = config_check_env_name},
    {.key = "port",
     .kind = F_INT,
     .off = ENG(port),
     .min = 1,
     .max = 65535,
     .flags = FL_AUTO,
     .dflt = CONFIG_AUTO},
    {.key = "env", .kind = F_FUNC, .fn = parse_env, .to_json = env_json},
    {.key = "cwd", .kind = F_STR, .off = ENG(cwd)},
    {.key = "models", .kind = F_FUNC, .fn = parse_models, .to_json = models_json},
    {.key = "health", .kind = F_MAP, .sub = health_fields},
    {.key = "memory", .kind = F_MAP, .sub = memory_fields},
    {.key = "max_concurrency",
     .kind = F_U32,
     .off = ENG(max_concurrency),
     .min = 1,
     .max = 100000,
     .dflt = 4},
    {.key = "queue_limit",
     .kind = F_U32,
     .off = ENG(queue_limit),
     .min = 0,
     .max = 1000000,
     .dflt = 64},
    {.key = "ttl_s", .kind = F_U32, .off = ENG(ttl_s), .min = 0, .max = YEAR_S, .dflt = 0},
    {.key = "start",
     .kind = F_ENUM,
     .off = ENG(start),
     .words = start_words,
     .dflt = CONFIG_START_ON_DEMAND},
    {.key = "group", .kind = F_STR, .off = ENG(group)},
    {.key = "restart", .kind = F_MAP, .sub = restart_fields},
    {.key = "stop_timeout_s",
     .kind = F_U32,
     .off = ENG(stop_timeout_s),
     .min = 1,
     .max = 3600,
     .dflt = 15},
    {.key = "stop_cmd", .kind = F_STR, .off = ENG(stop_cmd), .check = config_check_cmd},
    {.key = "min_resident_s",
     .kind = F_U32,
     .off = ENG(min_resident_s),
     .min = 0,
     .max = 86400,
     .dflt = 30},
    {.key = "continuation",
     .kind = F_ENUM,
     .off = ENG(continuation),
     .words = continuation_words,
     .dflt = CONFIG_CONT_NONE},
    {.key = NULL},
};

static void engine_defaults(struct config_engine *e, const char *name, int line)
{
    *e = (struct config_engine){.name = xstrdup(name), .line = line};
    config_fields_defaults(engine_fields, e);
}

void config_engine_free(struct config_engine *e)
{
    free(e->name);
    free(e->cmd);
    free(e->image);
    config_free_strings(e->args, e->nargs);
    free(e->url);
    free(e->api_key_env);
    for (size_t i = 0; i < e->nenv; i++) {
        free(e->env[i].key);
        free(e->env[i].value);
    }
    free(e->env);
    free(e->cwd);
    config_free_strings(e->models, e->nmodels);
    free(e->health.path);
    free(e->health.cmd);
    free(e->group);
    free(e->stop_cmd);
}

/* ---- runtime.allowed: which backends this machine may use ---- */

static const struct word allowed_words[] = {
    {"native", CONFIG_BACKEND_NATIVE},
    {"container", CONFIG_BACKEND_CONTAINER},
    {"remote", CONFIG_BACKEND_REMOTE},
    {NULL, 0},
};

json_t *config_allowed_json(const void *base)
{
    const struct config *cfg = base;
    json_t *allowed = json_array();
    for (const struct word *w = allowed_words; w->name != NULL; w++) {
        if (cfg->runtime.allowed & (1u << w->value))
            json_array_append_new(allowed, json_string(w->name));
    }
    return allowed;
}

void config_parse_allowed(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config *cfg = base;
    unsigned bits = 0;

    if (!config_is_list(c, v, path, "backends"))
        return;
    if (config_list_len(v) == 0) {
        config_err_at(c, v, path, "must allow at least one of native, container, remote");
        return;
    }
    for (size_t i = 0; i < config_list_len(v); i++) {
        yaml_node_t *item = config_node_get(c, v->data.sequence.items.start[i]);
        char *ip = config_item_path(path, i);
        int b = 0;
        if (config_get_word(c, allowed_words, item, ip, &b) == 0) {
            if (bits & (1u << b))
                config_err_at(c, item, ip, "%s is listed twice", config_text_of(item));
            bits |= 1u << b;
        }
        free(ip);
    }
    if (bits != 0)
        cfg->runtime.allowed = bits;
}

/* "native, container" for runtime.allowed bits. */
/* Which backend-selecting keys an engine's mapping writes. A key written with a bad value counts
 * as written: its own error is reported, and "needs cmd" beside it would only mislead. */
struct given {
    bool cmd, image, url, args, port;
};

static void allowed_text(unsigned bits, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (const struct word *w = allowed_words; w->name != NULL; w++) {
        if (bits & (1u << w->value))
            used += (size_t)snprintf(out + used, size - used, "%s%s", used ? ", " : "", w->name);
    }
}

static struct given keys_given(yaml_node_t **vals)
{
    /* An empty args list and port: auto say "nothing", as config_to_json writes them. */
    yaml_node_t *args = config_field_val(engine_fields, vals, "args");
    yaml_node_t *port = config_field_val(engine_fields, vals, "port");

    return (struct given){
        .cmd = config_field_val(engine_fields, vals, "cmd") != NULL,
        .image = config_field_val(engine_fields, vals, "image") != NULL,
        .url = config_field_val(engine_fields, vals, "url") != NULL,
        .args = args != NULL && (args->type != YAML_SEQUENCE_NODE || config_list_len(args) > 0),
        .port =
            port != NULL && !(config_is_scalar(port) && strcmp(config_text_of(port), "auto") == 0),
    };
}

/* The keys each backend needs and forbids. Returns true when they agree with the backend. */
static bool check_backend_keys(struct ctx *c, enum config_backend backend, const struct given *g,
                               yaml_node_t *at, const char *path)
{
    bool remote = backend == CONFIG_BACKEND_REMOTE || (backend == CONFIG_BACKEND_AUTO && g->url);
    unsigned before = c->nerrs + c->dropped;

    switch (backend) {
    case CONFIG_BACKEND_NATIVE:
        if (!g->cmd)
            config_err_at(c, at, path,
                          "backend native needs cmd (the command that starts the engine)");
        break;
    case CONFIG_BACKEND_CONTAINER:
        if (!g->image)
            config_err_at(c, at, path, "backend container needs image");
        break;
    case CONFIG_BACKEND_REMOTE:
        if (!g->url)
            config_err_at(c, at, path,
                          "backend remote needs url (the OpenAI-compatible API's base URL)");
        break;
    case CONFIG_BACKEND_AUTO:
        if (!g->cmd && !g->image && !g->url)
            config_err_at(c, at, path, "needs cmd (native), image (container) or url (remote)");
        break;
    }
    if (g->url && !remote)
        config_err_at(c, at, path, "url is only for a remote engine (arun runs this one with %s)",
                      backend == CONFIG_BACKEND_NATIVE ? "cmd" : "image");
    if (remote && (g->cmd || g->image || g->args || g->port))
        config_err_at(c, at, path, "a remote engine is not run by arun: remove %s, or drop url",
                      g->cmd     ? "cmd"
                      : g->image ? "image"
                      : g->args  ? "args"
                                 : "port");
    return c->nerrs + c->dropped == before;
}

/* The backend must be one runtime.allowed lets engines use. */
static void check_backend_allowed(struct ctx *c, enum config_backend backend, const struct given *g,
                                  yaml_node_t *at, const char *path)
{
    unsigned allowed = c->cfg->runtime.allowed, need;
    const char *what, *why = "";
    char list[64];

    if (backend != CONFIG_BACKEND_AUTO) {
        need = 1u << backend;
        what = config_word_name(config_backend_words, backend);
    } else if (g->url) {
        need = CONFIG_ALLOW_REMOTE;
        what = "remote";
        why = " (implied by url)";
    } else if (g->cmd && g->image) {
        need = CONFIG_ALLOW_NATIVE | CONFIG_ALLOW_CONTAINER;
        what = "native or container";
        why = " (cmd and image given)";
    } else if (g->cmd) {
        need = CONFIG_ALLOW_NATIVE;
        what = "native";
        why = " (implied by cmd)";
    } else {
        need = CONFIG_ALLOW_CONTAINER;
        what = "container";
        why = " (implied by image)";
    }
    if ((need & allowed) != 0)
        return;
    allowed_text(allowed, list, sizeof list);
    config_err_at(c, at, path, "backend %s%s is not in runtime.allowed [%s]", what, why, list);
}

/* The engine (before index `upto`) that serves model m, or NULL. */
const struct config_engine *config_serving_engine(const struct config *cfg, size_t upto,
                                                  const char *m)
{
    for (size_t i = 0; i < upto; i++) {
        const struct config_engine *e = &cfg->engines[i];
        for (size_t j = 0; j < e->nmodels; j++) {
            if (strcmp(e->models[j], m) == 0)
                return e;
        }
    }
    return NULL;
}

/* The node of list item equal to s, to point an error at it; fallback when absent. */
static yaml_node_t *item_node(const struct ctx *c, yaml_node_t *list, const char *s,
                              yaml_node_t *fallback)
{
    if (list == NULL || list->type != YAML_SEQUENCE_NODE)
        return fallback;
    for (yaml_node_item_t *i = list->data.sequence.items.start; i < list->data.sequence.items.top;
         i++) {
        yaml_node_t *n = config_node_get(c, *i);
        if (config_is_scalar(n) && strcmp(config_text_of(n), s) == 0)
            return n;
    }
    return fallback;
}

/* Rules across engines: a model belongs to one engine, a fixed port to one engine. */
static void check_engine_vs_others(struct ctx *c, size_t idx, yaml_node_t *key, yaml_node_t **vals,
                                   const char *path)
{
    const struct config *cfg = c->cfg;
    const struct config_engine *e = &cfg->engines[idx];
    yaml_node_t *models = config_field_val(engine_fields, vals, "models");
    yaml_node_t *port = config_field_val(engine_fields, vals, "port");
    char *mp = config_child_path(path, "models");

    for (size_t j = 0; j < e->nmodels; j++) {
        const struct config_engine *o = config_serving_engine(cfg, idx, e->models[j]);
        if (o != NULL)
            config_err_at(
                c, item_node(c, models, e->models[j], key), mp,
                "model '%s' is also served by engine '%s' (line %d); a model name belongs to "
                "one engine (a route can list several)",
                e->models[j], o->name, o->line);
    }
    free(mp);
    if (e->port == CONFIG_AUTO)
        return;
    for (size_t i = 0; i < idx; i++) {
        if (cfg->engines[i].port == e->port) {
            char *pp = config_child_path(path, "port");
            config_err_at(c, port != NULL ? port : key, pp,
                          "port %d is also given to engine '%s' (line %d)", e->port,
                          cfg->engines[i].name, cfg->engines[i].line);
            free(pp);
            break;
        }
    }
}

static void parse_engine(struct ctx *c, const struct entry *en, const char *path)
{
    struct config *cfg = c->cfg;
    size_t idx = cfg->nengines;
    struct config_engine *e = &cfg->engines[idx];
    yaml_node_t *vals[MAX_FIELDS];
    char d[SNIP_MAX + 8];
    const char *why = config_check_engine_name(en->name);

    engine_defaults(e, en->name, config_node_line(en->key));
    cfg->nengines++;
    if (why != NULL)
        config_err_at(c, en->key, path, "%s, got %s", why, config_snip(en->name, d));
    if (config_is_null(en->val)) {
        memset(vals, 0, sizeof vals);
    } else if (en->val->type != YAML_MAPPING_NODE) {
        config_err_at(c, en->val, path,
                      "expected a mapping of engine keys (cmd:, models:, …), got %s",
                      config_describe(en->val, d));
        return;
    } else {
        config_parse_fields(c, en->val, path, engine_fields, e, vals);
    }
    if (e->models == NULL) {
        e->models = xcalloc(1, sizeof *e->models);
        e->models[0] = xstrdup(e->name);
        e->nmodels = 1;
    }
    yaml_node_t *backend = config_field_val(engine_fields, vals, "backend");
    yaml_node_t *at = backend != NULL ? backend : en->key;
    char *bp = backend != NULL ? config_child_path(path, "backend") : xstrdup(path);
    struct given g = keys_given(vals);
    if (check_backend_keys(c, e->backend, &g, at, bp))
        check_backend_allowed(c, e->backend, &g, at, bp);
    free(bp);
    check_engine_vs_others(c, idx, en->key, vals, path);
}

json_t *config_engines_json(const void *base)
{
    const struct config *cfg = base;
    json_t *engines = json_object();
    for (size_t i = 0; i < cfg->nengines; i++)
        json_object_set_new(engines, cfg->engines[i].name,
                            config_fields_json(engine_fields, &cfg->engines[i]));
    return engines;
}

void config_parse_engines(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config *cfg = base;
    struct entries *es = config_named_entries(c, v, path, "engine names to engines");
    if (es == NULL)
        return;
    cfg->engines = xcalloc(es->n, sizeof *cfg->engines);
    for (size_t i = 0; i < es->n; i++) {
        char *ep = config_child_path(path, es->v[i].name);
        parse_engine(c, &es->v[i], ep);
        free(ep);
    }
    free(es);
}
