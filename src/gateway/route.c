/*
 * route.c: which engines serve a model name (gateway_int.h): a declared route's engines in
 * order, else the local engine that lists the model. It decides nothing about state or load.
 */
#include <string.h>

#include "gateway/gateway_int.h"

size_t gw_route_resolve(struct gateway *gw, const char *model, const char **out, size_t cap)
{
    for (size_t i = 0; i < gw->cfg->nroutes; i++) {
        const struct config_route *rt = &gw->cfg->routes[i];
        if (strcmp(rt->name, model) != 0)
            continue;
        size_t n = 0;
        for (size_t k = 0; k < rt->nengines && n < cap; k++)
            out[n++] = rt->engines[k];
        return n;
    }
    struct engine *e = supervisor_find_model(gw->sup, model);
    if (e == NULL || !config_egress_allows(gw->cfg, engine_config(e), false))
        return 0;
    out[0] = engine_name(e);
    return 1;
}

void gateway_models_served(struct gateway *gw, struct buf *out)
{
    for (size_t i = 0; i < gw->cfg->nengines; i++)
        for (size_t k = 0; k < gw->cfg->engines[i].nmodels &&
                           config_egress_allows(gw->cfg, &gw->cfg->engines[i], false);
             k++)
            buf_printf(out, "%s%s", out->len ? ", " : "", gw->cfg->engines[i].models[k]);
    for (size_t i = 0; i < gw->cfg->nroutes; i++)
        buf_printf(out, "%s%s", out->len ? ", " : "", gw->cfg->routes[i].name);
}
