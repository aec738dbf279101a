/*
 * nodes_cmd.c: `arun nodes`. See nodes_cmd.h. One GET /v1/nodes and its rendering for a
 * person; the server decides what is up, down or left (and says why in --json's reason).
 */
#include "cli/nodes_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.h"
#include "core/buf.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

const char nodes_cmd_usage[] =
    "usage: arun nodes [--json]\n"
    "\n"
    "Lists the nodes that share the running server's store (several with store.url\n"
    "postgres://…, the server alone with sqlite) as a table:\n"
    "  NODE ADDRESS STATE ENGINES LAST-SEEN\n"
    "STATE is up, down (no heartbeat for a while: --json says since when) or left (stopped\n"
    "cleanly); ENGINES each engine of the node as NAME:STATE (counts past " STRINGIFY(
        NODES_ENGINES_LISTED) "), LAST-SEEN the\n"
                              "time since its last heartbeat. --json prints the server's list (GET "
                              "/v1/nodes) as it is,\n"
                              "with each node's engines, memory and the reason of its state. Needs "
                              "an admin key with\n"
                              "auth.mode keys.\n"
                              "\n" CLIENT_HELP_OPTIONS "\n"
                              "exit codes: 0 success, 1 the server refused, 2 usage error, 3 "
                              "server unreachable\n";

void nodes_table_header(struct table *t)
{
    static const char *const cols[NODES_NCOLS] = {"NODE", "ADDRESS", "STATE", "ENGINES",
                                                  "LAST-SEEN"};
    table_init_header(t, cols, NODES_NCOLS, -1, 2);
}

static const char *str_or(const json_t *v, const char *dflt)
{
    const char *s = json_string_value(v);
    return s != NULL && s[0] != '\0' ? s : dflt;
}

static char *fmt_engines(const json_t *engines)
{
    size_t n = json_array_size(engines), ready = 0, i;
    const json_t *e;
    struct buf b;

    if (n == 0)
        return xstrdup("-");
    json_array_foreach(engines, i, e) ready +=
        strcmp(str_or(json_object_get(e, "state"), ""), "ready") == 0;
    if (n > NODES_ENGINES_LISTED)
        return xasprintf("%zu (%zu ready)", n, ready);
    buf_init(&b, 4096);
    json_array_foreach(engines, i, e)
        buf_printf(&b, "%s%s:%s", i > 0 ? "," : "", str_or(json_object_get(e, "name"), "?"),
                   str_or(json_object_get(e, "state"), "?"));
    char *s = buf_steal(&b);
    buf_cleanup(&b);
    return s;
}

static char *fmt_seen(const json_t *ago)
{
    if (!json_is_integer(ago))
        return xstrdup("-");
    char *d = table_duration(json_integer_value(ago) / 1000);
    char *s = xasprintf("%s ago", d);
    free(d);
    return s;
}

void nodes_table_row(struct table *t, const json_t *node)
{
    char *cells[NODES_NCOLS] = {
        xstrdup(str_or(json_object_get(node, "id"), "?")),
        xstrdup(str_or(json_object_get(node, "address"), "-")),
        xstrdup(str_or(json_object_get(node, "state"), "?")),
        fmt_engines(json_object_get(node, "engines")),
        fmt_seen(json_object_get(node, "last_seen_ms_ago")),
    };
    table_add_row(t, cells);
}

static int list_nodes(struct client *c, bool json)
{
    struct client_response res;
    const json_t *data;
    int rc = client_get_list(c, "/v1/nodes", &res, &data);
    if (rc != 0)
        return rc;
    if (json) {
        client_print_json(res.json);
    } else {
        struct table t;
        nodes_table_header(&t);
        for (size_t i = 0; i < json_array_size(data); i++)
            nodes_table_row(&t, json_array_get(data, i));
        table_print(&t);
        table_cleanup(&t);
    }
    client_response_cleanup(&res);
    return 0;
}

int nodes_cmd_main(int argc, char **argv)
{
    const char *server = NULL, *api_key = NULL;
    bool json = false;

    for (int i = 1; i < argc; i++) {
        int took = client_take_flag("nodes", argc, argv, &i, &server, &api_key);
        if (took < 0)
            return CLIENT_EXIT_USAGE;
        if (took > 0)
            continue;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(nodes_cmd_usage, stdout);
            return CLIENT_EXIT_OK;
        }
        if (strcmp(argv[i], "--json") != 0)
            return client_usage_error("nodes", nodes_cmd_usage, "unexpected argument: %s", argv[i]);
        json = true;
    }
    struct client c;
    if (client_init(&c, server, api_key) != 0)
        return CLIENT_EXIT_USAGE;
    int rc = list_nodes(&c, json);
    client_cleanup(&c);
    return rc;
}
