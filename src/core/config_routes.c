/*
 * config_routes.c: the routes table: a route names engines that exist, is not also a model
 * name, and reaches a remote engine only when egress allows it. Part of the config module
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

/* ---- routes ------------------------------------------------------------------------------ */

/* The engine a route entry names: an engine name first, else the engine serving that model. */
static const struct config_engine *resolve_route_entry(const struct config *cfg, const char *s)
{
    const struct config_engine *e = config_find_engine(cfg, s);
    return e != NULL ? e : config_serving_engine(cfg, cfg->nengines, s);
}

static void unknown_route_entry(struct ctx *c, yaml_node_t *item, const char *path, const char *s)
{
    const struct config *cfg = c->cfg;
    struct suggest sg = {.word = s};
    char d[SNIP_MAX + 8];

    for (size_t i = 0; i < cfg->nengines; i++) {
        config_suggest_try(&sg, cfg->engines[i].name);
        for (size_t j = 0; j < cfg->engines[i].nmodels; j++)
            config_suggest_try(&sg, cfg->engines[i].models[j]);
    }
    if (sg.best != NULL)
        config_err_at(c, item, path,
                      "%s is neither an engine nor a model of one (did you mean %s?)",
                      config_snip(s, d), sg.best);
    else
        config_err_at(c, item, path, "%s is neither an engine nor a model of one",
                      config_snip(s, d));
}

static void route_entry(struct ctx *c, struct config_route *r, yaml_node_t *item, const char *path,
                        size_t i)
{
    const struct config *cfg = c->cfg;
    char *ip = config_item_path(path, i);
    const char *s = config_get_text(c, item, ip);
    const struct config_engine *e = s != NULL ? resolve_route_entry(cfg, s) : NULL;

    free(ip);
    if (s == NULL)
        return;
    if (e == NULL) {
        unknown_route_entry(c, item, path, s);
        return;
    }
    for (size_t j = 0; j < r->nengines; j++) {
        if (strcmp(r->engines[j], e->name) == 0) {
            config_err_at(c, item, path, "engine '%s' is listed twice", e->name);
            return;
        }
    }
    if (!config_egress_allows(cfg, e, true))
        config_err_at(c, item, path,
                      "engine '%s' is remote and egress is deny; set egress: allow to let requests "
                      "leave this machine",
                      e->name);
    r->engines[r->nengines++] = xstrdup(e->name);
}

static void parse_route(struct ctx *c, const struct entry *en, const char *path)
{
    struct config *cfg = c->cfg;
    struct config_route *r = &cfg->routes[cfg->nroutes++];
    const char *why = config_check_model_name(en->name);
    const struct config_engine *clash = config_serving_engine(cfg, cfg->nengines, en->name);
    char d[SNIP_MAX + 8];

    r->name = xstrdup(en->name);
    r->line = config_node_line(en->key);
    if (why != NULL)
        config_err_at(c, en->key, path, "%s, got %s", why, config_snip(en->name, d));
    if (clash != NULL)
        config_err_at(
            c, en->key, path,
            "route name is also a model of engine '%s' (line %d); give the route its own name",
            clash->name, clash->line);
    if (config_is_null(en->val)) {
        config_err_at(c, en->val, path, "needs a list of engines, e.g. [%s]",
                      cfg->nengines > 0 ? cfg->engines[0].name : "NAME");
        return;
    }
    if (!config_is_list(c, en->val, path, "engine or model names"))
        return;
    if (config_list_len(en->val) == 0) {
        config_err_at(c, en->val, path, "needs at least one engine");
        return;
    }
    r->engines = xcalloc(config_list_len(en->val), sizeof *r->engines);
    for (size_t i = 0; i < config_list_len(en->val); i++)
        route_entry(c, r, config_node_get(c, en->val->data.sequence.items.start[i]), path, i);
}

json_t *config_routes_json(const void *base)
{
    const struct config *cfg = base;
    json_t *routes = json_object();
    for (size_t i = 0; i < cfg->nroutes; i++)
        json_object_set_new(routes, cfg->routes[i].name,
                            config_strings_json(cfg->routes[i].engines, cfg->routes[i].nengines));
    return routes;
}

void config_parse_routes(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config *cfg = base;
    struct entries *es = config_named_entries(c, v, path, "route names to lists of engines");
    if (es == NULL)
        return;
    cfg->routes = xcalloc(es->n, sizeof *cfg->routes);
    for (size_t i = 0; i < es->n; i++) {
        char *rp = config_child_path(path, es->v[i].name);
        parse_route(c, &es->v[i], rp);
        free(rp);
    }
    free(es);
}
