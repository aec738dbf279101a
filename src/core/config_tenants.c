/*
 * config_tenants.c: the tenants table (contract 2): limits per tenant, `default` for every
 * tenant and entries by tenant name that override some of the four limits, the rest coming from
 * default. It resolves each entry here, once, so the limits module reads one complete set per
 * tenant and can still say which entry a value came from (config_tenant.set). Part of the config
 * module (config.c has the DESIGN).
 *
 * default is read first wherever it is written in the file, so that an entry above it still
 * inherits from it: a file is read as a whole, not top to bottom.
 */
#include "core/config_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TENANT_NAME_MAX 64 /* contract 6: [a-z0-9][a-z0-9._-]{0,63}; also STORE_TENANT_MAX */
/* Ranges: generous, to catch a slipped digit, not to judge a deployment. */
#define RPM_MAX 100000000ll        /* 1.6 million requests a second */
#define CONCURRENT_MAX 10000000ll  /* limits.max_connections' own maximum */
#define TOKENS_MAX 1000000000000ll /* 10^12 a day: 11 million tokens a second */
#define QUEUED_MAX 100000000ll     /* far beyond what the store holds queued */

#define TL(member) offsetof(struct config_tenant_limits, member)

/* Each row's bit in config_tenant.set is 1 << its index. */
static const struct field tenant_fields[] = {
    {.key = "requests_per_minute",
     .kind = F_U32,
     .off = TL(requests_per_minute),
     .min = 0,
     .max = RPM_MAX,
     .dflt = 600},
    {.key = "concurrent_requests",
     .kind = F_U32,
     .off = TL(concurrent_requests),
     .min = 0,
     .max = CONCURRENT_MAX,
     .dflt = 64},
    {.key = "output_tokens_per_day",
     .kind = F_U64,
     .off = TL(output_tokens_per_day),
     .min = 0,
     .max = TOKENS_MAX,
     .dflt = 0},
    {.key = "queued_runs",
     .kind = F_U32,
     .off = TL(queued_runs),
     .min = 0,
     .max = QUEUED_MAX,
     .dflt = 1000},
    {.key = NULL},
};
_Static_assert(CONFIG_TENANT_RPM == 1u << 0 && CONFIG_TENANT_CONCURRENT == 1u << 1 &&
                   CONFIG_TENANT_TOKENS == 1u << 2 && CONFIG_TENANT_QUEUED == 1u << 3,
               "config_tenant.set bits follow the order of tenant_fields");

void config_tenants_defaults(struct config *cfg)
{
    config_fields_defaults(tenant_fields, &cfg->tenants.dflt);
}

bool config_tenant_name_ok(const char *name)
{
    return config_name_ok(name, TENANT_NAME_MAX);
}

const struct config_tenant *config_find_tenant(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->tenants.n; i++) {
        if (strcmp(cfg->tenants.v[i].name, name) == 0)
            return &cfg->tenants.v[i];
    }
    return NULL;
}

/* Reads one entry's mapping into *limits (which holds the values it inherits); returns the
 * CONFIG_TENANT_* bits of the keys it wrote. A null entry (`acme:`) writes none. */
static unsigned parse_limits(struct ctx *c, yaml_node_t *v, const char *path,
                             struct config_tenant_limits *limits)
{
    yaml_node_t *vals[ARRAY_SIZE(tenant_fields) - 1];
    char d[SNIP_MAX + 8];
    unsigned set = 0;

    if (config_is_null(v))
        return 0;
    if (v->type != YAML_MAPPING_NODE) {
        config_err_at(c, v, path,
                      "expected a mapping of limits (requests_per_minute, concurrent_requests, "
                      "output_tokens_per_day, queued_runs), got %s",
                      config_describe(v, d));
        return 0;
    }
    config_parse_fields(c, v, path, tenant_fields, limits, vals);
    for (size_t i = 0; i < ARRAY_SIZE(vals); i++) {
        if (vals[i] != NULL && !config_is_null(vals[i]))
            set |= 1u << i;
    }
    return set;
}

void config_parse_tenants(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config *cfg = base;
    struct entries *es = config_named_entries(c, v, path, "tenant names to limits");
    char d[SNIP_MAX + 8];

    if (es == NULL)
        return;
    for (size_t i = 0; i < es->n; i++) {
        if (strcmp(es->v[i].name, "default") != 0)
            continue;
        char *tp = config_child_path(path, "default");
        cfg->tenants.dflt_set = parse_limits(c, es->v[i].val, tp, &cfg->tenants.dflt);
        free(tp);
    }
    cfg->tenants.v = xcalloc(es->n, sizeof *cfg->tenants.v);
    for (size_t i = 0; i < es->n; i++) {
        const struct entry *en = &es->v[i];
        if (strcmp(en->name, "default") == 0)
            continue;
        char *tp = config_child_path(path, en->name);
        if (!config_tenant_name_ok(en->name)) {
            config_err_at(c, en->key, tp,
                          "a tenant name is 1-%d characters of a-z, 0-9, '.', '_' and '-', "
                          "starting with a letter or digit; got %s",
                          TENANT_NAME_MAX, config_snip(en->name, d));
        } else {
            struct config_tenant *t = &cfg->tenants.v[cfg->tenants.n++];
            t->name = xstrdup(en->name);
            t->line = config_node_line(en->key);
            t->limits = cfg->tenants.dflt;
            t->set = parse_limits(c, en->val, tp, &t->limits);
        }
        free(tp);
    }
    free(es);
}

json_t *config_tenants_json(const void *base)
{
    const struct config *cfg = base;
    json_t *tenants = json_object();
    json_object_set_new(tenants, "default", config_fields_json(tenant_fields, &cfg->tenants.dflt));
    for (size_t i = 0; i < cfg->tenants.n; i++)
        json_object_set_new(tenants, cfg->tenants.v[i].name,
                            config_fields_json(tenant_fields, &cfg->tenants.v[i].limits));
    return tenants;
}

void config_tenants_free(struct config *cfg)
{
    for (size_t i = 0; i < cfg->tenants.n; i++)
        free(cfg->tenants.v[i].name);
    free(cfg->tenants.v);
}
