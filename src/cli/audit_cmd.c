/*
 * audit_cmd.c: `arun audit`. See audit_cmd.h. One request per page of GET /v1/audit (100
 * events), each after the last id of the one before, until the server has no more or --limit
 * events are in; then one table, or the events as one JSON list. Nothing here decides what is
 * audited: the server's events are shown as they are.
 */
#include "cli/audit_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/client.h"
#include "cli/table.h"
#include "core/clock.h"

#define PAGE_MAX 100         /* the API's largest page */
#define LIMIT_MAX 100000000L /* --limit: only guards the parse; 0 means all */
#define NCOLS 7

const char audit_cmd_usage[] =
    "usage: arun audit [--since T] [--limit N] [--json]\n"
    "\n"
    "Prints the audit trail of the running server, oldest first, as a table:\n"
    "  TIME ACTOR TENANT ACTION TARGET OUTCOME REMOTE\n"
    "Audited: engine start, stop and restart, API key create and revoke, TLS certificate\n"
    "reloads, and failed authentications (at most 10 a second are kept; past that an\n"
    "auth.failure.suppressed event counts the rest). ACTOR is the key id, \"local\" (the owner's\n"
    "socket), \"anonymous\" (no valid key, or auth.mode none) or \"arun\" itself. Needs an admin "
    "key.\n"
    "\n"
    "  --since T      only events from T on: epoch milliseconds, an ISO-8601 UTC time\n"
    "                 (2026-12-07T10:00:00Z, as the TIME column prints it) or a duration back\n"
    "                 from now (90s, 15m, 2h, 7d); default: from the first event\n"
    "  -n, --limit N  at most N events (the oldest of them); default 0: all\n"
    "  --json         print {\"object\":\"list\",\"data\":[audit_event…],\"has_more\"} instead\n"
    "\n" CLIENT_HELP_OPTIONS "\n"
    "exit codes: 0 success, 1 the server refused (not an admin key, a bad --since), 2 usage\n"
    "error, 3 server unreachable\n";

struct opts {
    char *since; /* heap: what the server takes, or NULL */
    long limit;  /* 0 = all */
    bool json;
    const char *server, *api_key;
};

#define usage_error(...) client_usage_error("audit", audit_cmd_usage, __VA_ARGS__)

int audit_cmd_since(const char *v, int64_t now_ms, char **out)
{
    size_t n = strlen(v), digits = strspn(v, "0123456789");
    static const struct {
        char unit;
        int64_t ms;
    } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
    if (n > 0 && digits == n && n <= 18) {
        *out = xstrdup(v); /* epoch ms */
        return 0;
    }
    for (size_t i = 0; digits > 0 && digits <= 9 && n == digits + 1 && i < ARRAY_SIZE(units); i++)
        if (v[digits] == units[i].unit) {
            int64_t back = strtoll(v, NULL, 10) * units[i].ms;
            *out = xasprintf("%" PRId64, now_ms > back ? now_ms - back : 0);
            return 0;
        }
    struct tm tm = {0};
    const char *end = strptime(v, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end != NULL && end - v == 19 && end[0] != '\0' && end[strlen(end) - 1] == 'Z') {
        *out = xstrdup(v); /* the server checks the rest (fractions of a second) */
        return 0;
    }
    return -EINVAL;
}

static int take_option(int argc, char **argv, int *i, struct opts *o)
{
    bool missing = false;
    const char *a = argv[*i], *v;
    if (strcmp(a, "--json") == 0) {
        o->json = true;
        return 1;
    }
    if ((v = client_take_value(argc, argv, i, "--since", NULL, &missing)) != NULL) {
        free(o->since);
        o->since = NULL;
        if (audit_cmd_since(v, clock_wall_ms(), &o->since) == 0)
            return 1;
        usage_error("--since needs epoch milliseconds, an ISO-8601 UTC time "
                    "(2026-12-07T10:00:00Z) or a duration (90s, 15m, 2h, 7d); got \"%s\"",
                    v);
        return -EINVAL;
    }
    if (!missing && (v = client_take_value(argc, argv, i, "--limit", "-n", &missing)) != NULL) {
        if (client_parse_count(v, LIMIT_MAX, &o->limit) == 0)
            return 1;
        usage_error("--limit needs a whole number of events (0 for all), got \"%s\"", v);
        return -EINVAL;
    }
    if (missing) {
        usage_error("%s needs a value", a);
        return -EINVAL;
    }
    return 0;
}

/* Parses argv into *o. Returns AUDIT_CMD_PROCEED or the exit code (0 after --help). */
static int parse(int argc, char **argv, struct opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(audit_cmd_usage, stdout);
            return CLIENT_EXIT_OK;
        }
        int took = client_take_flag("audit", argc, argv, &i, &o->server, &o->api_key);
        if (took == 0)
            took = take_option(argc, argv, &i, o);
        if (took < 0)
            return CLIENT_EXIT_USAGE;
        if (took == 0)
            return usage_error("unexpected argument: %s", a);
    }
    return AUDIT_CMD_PROCEED;
}

/* ---- fetching ---- */

static char *page_path(const struct opts *o, size_t have, const char *after)
{
    long want = PAGE_MAX;
    if (o->limit > 0 && o->limit - (long)have < want)
        want = o->limit - (long)have;
    char *since = o->since ? client_escape(o->since) : NULL;
    char *p = xasprintf("/v1/audit?limit=%ld%s%s%s%s", want, since ? "&since=" : "",
                        since ? since : "", after ? "&after=" : "", after ? after : "");
    free(since);
    return p;
}

/* Walks the pages into all until --limit events or the end. Returns 0 with *has_more, or an
 * exit code (the failure told). */
static int fetch_events(struct client *c, const struct opts *o, json_t *all, bool *has_more)
{
    char *after = NULL;
    int rc = 0;
    *has_more = true;
    while (*has_more && (o->limit == 0 || (long)json_array_size(all) < o->limit)) {
        struct client_response res;
        char *path = page_path(o, json_array_size(all), after);
        rc = client_get(c, path, &res);
        free(path);
        if (rc != 0) {
            rc = client_fail(c, rc);
            break;
        }
        const json_t *data = json_object_get(res.json, "data");
        if (res.status != 200 || !json_is_array(data)) {
            rc = client_fail_response(&res);
            client_response_cleanup(&res);
            break;
        }
        json_array_extend(all, (json_t *)data);
        *has_more = json_is_true(json_object_get(res.json, "has_more"));
        const char *last = json_string_value(json_object_get(res.json, "last_id"));
        free(after);
        after = last != NULL && strspn(last, "0123456789") == strlen(last) ? xstrdup(last) : NULL;
        if (after == NULL || json_array_size(data) == 0)
            *has_more = false; /* no cursor to go on with: stop rather than loop */
        client_response_cleanup(&res);
    }
    free(after);
    return rc;
}

/* ---- the table ---- */

static char *cell(const json_t *e, const char *key)
{
    const char *s = json_string_value(json_object_get(e, key));
    return xstrdup(s != NULL && s[0] != '\0' ? s : "-");
}

static char *time_cell(const json_t *e)
{
    const json_t *ms = json_object_get(e, "ts_ms");
    if (!json_is_integer(ms))
        return xstrdup("-");
    time_t t = (time_t)(json_integer_value(ms) / 1000);
    struct tm tm;
    char stamp[32];
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return xstrdup(stamp);
}

static void print_table(const json_t *all)
{
    static const char *const header[NCOLS] = {"TIME",   "ACTOR",   "TENANT", "ACTION",
                                              "TARGET", "OUTCOME", "REMOTE"};
    struct table t;
    size_t i;
    const json_t *e;
    table_init(&t, NCOLS);
    table_add_strs(&t, header);
    json_array_foreach(all, i, e)
    {
        char *cells[NCOLS] = {time_cell(e),      cell(e, "actor"),  cell(e, "tenant"),
                              cell(e, "action"), cell(e, "target"), cell(e, "outcome"),
                              cell(e, "remote")};
        table_add_row(&t, cells);
    }
    table_print(&t);
    table_cleanup(&t);
}

int audit_cmd_main(int argc, char **argv)
{
    struct opts o = {0};
    struct client c;
    json_t *all = NULL;
    bool has_more = false;
    int rc = parse(argc, argv, &o);
    if (rc != AUDIT_CMD_PROCEED)
        goto out;
    if (client_init(&c, o.server, o.api_key) != 0) {
        rc = CLIENT_EXIT_USAGE;
        goto out;
    }
    all = json_array();
    rc = fetch_events(&c, &o, all, &has_more);
    client_cleanup(&c);
    if (rc != 0)
        goto out;
    if (o.json) {
        json_t *list =
            json_pack("{s:s, s:O, s:b}", "object", "list", "data", all, "has_more", has_more);
        client_print_json(list);
        json_decref(list);
    } else {
        print_table(all);
    }
out:
    json_decref(all);
    free(o.since);
    return rc;
}
