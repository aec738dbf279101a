/*
 * runs_cmd.c: `arun runs`, `arun runs show|cancel|watch ID`. See runs_cmd.h. Each verb is one
 * or a few requests to the Responses API and a rendering of the answer for a person; nothing
 * here decides anything about runs. The server's words (an unknown id, a run that cannot be
 * cancelled) are shown as they are.
 *
 * The listing reads the arun extension GET /v1/responses?status=S&limit=N&after=ID (a page of
 * Response objects, newest first, {object:"list", data, has_more, last_id}); `arun runs` walks
 * the pages until it has -n rows or the server has no more. Following a run is cli/watch.c's.
 */
#include "cli/runs_cmd.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/watch.h"
#include "core/clock.h"

#define RECONNECT_MAX_S (7L * 86400) /* --reconnect-timeout: only guards the parse */
#define SHOW_MAX_OUTPUT (64u << 20)  /* a Response laid out: far beyond what a person reads */
#define SHOW_KEY_WIDTH 14            /* "conversation" and the like, then two spaces */

const char runs_cmd_usage[] =
    "usage: arun runs [--status STATUS] [-n N] [--tenant T|'*'] [--json]\n"
    "       arun runs show ID [--tenant T] [--json]\n"
    "       arun runs cancel ID [--tenant T] [--json]\n"
    "       arun runs watch ID [-v] [--reconnect-timeout S]\n"
    "\n"
    "Durable runs are the responses of the server's Responses API (POST /v1/responses; `arun\n"
    "chat --background` makes one). Without a sub-verb, lists them, newest first, as a table:\n"
    "  ID STATUS MODEL [TENANT] CREATED QUEUED TTFT TOK/S DURATION\n"
    "CREATED is how long ago the run was created, QUEUED how long it waited for an engine,\n"
    "TTFT the time to its first token, TOK/S the output tokens per second after it, DURATION\n"
    "how long it ran (so far, while it is queued or in progress); \"-\" where the server has no\n"
    "value. TENANT shows when the server's list carries each run's tenant. STATUS is coloured\n"
    "on a terminal (not with NO_COLOR set or TERM=dumb, never in a pipe).\n"
    "  --status STATUS  only the runs with this status: queued, in_progress, completed,\n"
    "                   failed, cancelled or incomplete\n"
    "  -n, --limit N    show the newest N runs (default 20); 0 shows them all\n"
    "  --tenant T       (an admin key, auth.mode keys) act for tenant T: list, show or cancel\n"
    "                   its runs; '*' lists every tenant's runs, with a TENANT column\n"
    "  --json           print {\"object\":\"list\",\"data\":[Response…],\"has_more\"} instead\n"
    "\n"
    "show ID     prints the response: status, model, timings, usage, the `arun` provenance\n"
    "            (engine, backend, route, sampling, timings) and its output; --json prints the\n"
    "            Response object as the server sent it.\n"
    "cancel ID   cancels a queued or in-progress background run and prints ID: STATUS; a run\n"
    "            that already ended is left as it was (its status is printed).\n"
    "watch ID    prints the run's answer as it is generated (from the start: a finished run's\n"
    "            answer is printed whole) until the run ends. When the connection drops, it\n"
    "            reconnects and resumes after the last event it printed, so the text is printed\n"
    "            once, whole.\n"
    "  -v, --verbose           a note on stderr at each reconnection\n"
    "  --reconnect-timeout S   give up (exit 3) when the server stays unreachable for S\n"
    "                          seconds (default 60)\n"
    "  Ctrl-C stops watching (exit 0); the run goes on.\n"
    "\n" CLIENT_HELP_OPTIONS "\n"
    "exit codes: 0 success (watch: the run completed), 1 the server refused (unknown id) or the\n"
    "watched run ended failed, cancelled or incomplete (the reason on stderr), 2 usage error,\n"
    "3 server unreachable (watch: for longer than --reconnect-timeout)\n";

#define usage_error(...) client_usage_error("runs", runs_cmd_usage, __VA_ARGS__)

/* ---- arguments ---- */

static bool is_status(const char *s)
{
    static const char *const statuses[] = {"queued", "in_progress", "completed",
                                           "failed", "cancelled",   "incomplete"};
    for (size_t i = 0; i < ARRAY_SIZE(statuses); i++)
        if (strcmp(s, statuses[i]) == 0)
            return true;
    return false;
}

/* A valued option's value, checked: 0 and *o updated, or -EINVAL (the usage error printed). */
static int set_value(struct runs_opts *o, const char *name, const char *v)
{
    long n;
    if (strcmp(name, "--tenant") == 0) {
        o->tenant = v;
        return 0;
    }
    if (strcmp(name, "--status") == 0) {
        o->status = v;
        if (is_status(v))
            return 0;
        usage_error("--status needs one of queued, in_progress, completed, failed, cancelled, "
                    "incomplete; got \"%s\"",
                    v);
    } else if (strcmp(name, "--limit") == 0) {
        if (client_parse_count(v, RUNS_LIMIT_MAX, &o->limit) == 0)
            return 0;
        usage_error("-n needs a whole number of runs (0 for all), got \"%s\"", v);
    } else {
        o->reconnect_s = client_parse_count(v, RECONNECT_MAX_S, &n) == 0 && n > 0 ? (unsigned)n : 0;
        if (o->reconnect_s > 0)
            return 0;
        usage_error("--reconnect-timeout needs a number of seconds from 1, got \"%s\"", v);
    }
    return -EINVAL;
}

/* One option at argv[*i]. Returns 1 when it took it, 0 when argv[*i] is not an option of runs,
 * or -EINVAL for a missing or bad value (printed). */
static int take_option(int argc, char **argv, int *i, struct runs_opts *o)
{
    static const struct {
        const char *name, *shrt;
    } valued[] = {
        {"--status", NULL}, {"--limit", "-n"}, {"--reconnect-timeout", NULL}, {"--tenant", NULL}};
    const char *a = argv[*i];
    bool *flag = strcmp(a, "--json") == 0                              ? &o->json
                 : strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0 ? &o->verbose
                                                                       : NULL;
    if (flag != NULL) {
        *flag = true;
        return 1;
    }
    for (size_t k = 0; k < ARRAY_SIZE(valued); k++) {
        bool missing = false;
        const char *v = client_take_value(argc, argv, i, valued[k].name, valued[k].shrt, &missing);
        if (missing) {
            usage_error("%s needs a value", a);
            return -EINVAL;
        }
        if (v != NULL)
            return set_value(o, valued[k].name, v) == 0 ? 1 : -EINVAL;
    }
    return 0;
}

static int check_combination(struct runs_opts *o, const char *sub, int npos)
{
    bool listing = o->action == RUNS_LIST;
    if (!listing && npos != 2)
        return usage_error("%s needs a response ID (`arun runs` lists them)", sub);
    if (!listing && (o->status != NULL || o->limit != RUNS_LIMIT_DEFAULT))
        return usage_error("--status and -n go with the listing (`arun runs`), not %s", sub);
    if (o->action != RUNS_WATCH && (o->verbose || o->reconnect_s != WATCH_RECONNECT_DEFAULT_S))
        return usage_error("-v and --reconnect-timeout go with watch");
    if (o->action == RUNS_WATCH && o->tenant != NULL)
        return usage_error("--tenant goes with the listing, show and cancel, not watch");
    if (o->tenant != NULL && strcmp(o->tenant, "*") == 0 && !listing)
        return usage_error("--tenant '*' goes with the listing; name one tenant for %s", sub);
    if (o->action == RUNS_WATCH && o->json)
        return usage_error("watch prints the answer; `arun runs show ID --json` prints the JSON");
    return RUNS_PROCEED;
}

int runs_cmd_parse(int argc, char **argv, struct runs_opts *o)
{
    static const char *const subs[] = {
        [RUNS_SHOW] = "show", [RUNS_CANCEL] = "cancel", [RUNS_WATCH] = "watch"};
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    memset(o, 0, sizeof(*o));
    o->limit = RUNS_LIMIT_DEFAULT;
    o->reconnect_s = WATCH_RECONNECT_DEFAULT_S;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(runs_cmd_usage, stdout);
            return CLIENT_EXIT_OK;
        }
        int took = client_take_flag("runs", argc, argv, &i, &o->server, &o->api_key);
        if (took == 0)
            took = take_option(argc, argv, &i, o);
        if (took < 0)
            return CLIENT_EXIT_USAGE;
        if (took > 0)
            continue;
        if (a[0] == '-' || npos == 2)
            return usage_error("unexpected argument: %s", a);
        pos[npos++] = a;
    }
    if (npos > 0) {
        o->action = RUNS_LIST;
        for (size_t k = RUNS_SHOW; k < ARRAY_SIZE(subs); k++)
            if (strcmp(pos[0], subs[k]) == 0)
                o->action = (enum runs_action)k;
        if (o->action == RUNS_LIST)
            return usage_error("unknown sub-verb: %s (show, cancel or watch)", pos[0]);
        o->id = pos[1];
    }
    return check_combination(o, npos > 0 ? pos[0] : NULL, npos);
}

/* ---- renderings ---- */

static const char *str_or(const json_t *v, const char *dflt)
{
    const char *s = json_string_value(v);
    return s != NULL && s[0] != '\0' ? s : dflt;
}

/* A run's length: tenths of a second under a minute (most runs), else as table_duration. */
static char *fmt_ms(double ms)
{
    if (!isfinite(ms) || ms < 0)
        return xstrdup("-");
    if (ms < 60000)
        return xasprintf("%.1fs", ms / 1000);
    return table_duration((int64_t)(ms / 1000));
}

/* j.a.b, or j.a.b.c when c is given; NULL where a member is missing. */
static const json_t *path_get(const json_t *j, const char *a, const char *b, const char *c)
{
    const json_t *v = json_object_get(json_object_get(j, a), b);
    return c != NULL ? json_object_get(v, c) : v;
}

static bool is_running(const char *status)
{
    return status != NULL && (strcmp(status, "queued") == 0 || strcmp(status, "in_progress") == 0);
}

static char *duration_cell(const json_t *r, int64_t now_ms)
{
    const json_t *total = path_get(r, "arun", "timings", "total_ms");
    const json_t *created = json_object_get(r, "created_at");
    const json_t *completed = json_object_get(r, "completed_at");
    bool running = is_running(json_string_value(json_object_get(r, "status")));
    if (running && json_is_integer(created))
        return table_duration(now_ms / 1000 - json_integer_value(created));
    if (json_is_number(total))
        return fmt_ms(json_number_value(total));
    if (json_is_integer(created) && json_is_integer(completed) && json_integer_value(completed) > 0)
        return table_duration(json_integer_value(completed) - json_integer_value(created));
    return xstrdup("-");
}

static char *created_cell(const json_t *r, int64_t now_ms)
{
    const json_t *created = json_object_get(r, "created_at");
    if (!json_is_integer(created))
        return xstrdup("-");
    char *d = table_duration(now_ms / 1000 - json_integer_value(created));
    char *s = xasprintf("%s ago", d);
    free(d);
    return s;
}

static const char *tenant_of(const json_t *r)
{
    const char *t = json_string_value(json_object_get(r, "tenant"));
    return t != NULL ? t : json_string_value(path_get(r, "arun", "tenant", NULL));
}

bool runs_have_tenant(const json_t *responses)
{
    size_t i;
    const json_t *r;
    json_array_foreach(responses, i, r) if (tenant_of(r) != NULL) return true;
    return false;
}

void runs_table_header(struct table *t, bool tenant)
{
    static const char *const cols[RUNS_NCOLS_TENANT] = {
        "ID", "STATUS", "MODEL", "TENANT", "CREATED", "QUEUED", "TTFT", "TOK/S", "DURATION"};
    table_init_header(t, cols, RUNS_NCOLS_TENANT, tenant ? -1 : 3, 1);
}

/* Milliseconds for a short span: "850ms" under a second, else as fmt_ms. */
static char *ms_cell(const json_t *v)
{
    if (!json_is_number(v) || json_number_value(v) < 0)
        return xstrdup("-");
    double ms = json_number_value(v);
    return ms < 1000 ? xasprintf("%.0fms", ms) : fmt_ms(ms);
}

static char *tokens_per_s_cell(const json_t *r)
{
    const json_t *tps = path_get(r, "arun", "timings", "tokens_per_s");
    if (!json_is_number(tps))
        tps = json_object_get(r, "tokens_per_s");
    if (json_is_number(tps))
        return xasprintf("%.1f", json_number_value(tps));
    const json_t *out = path_get(r, "usage", "output_tokens", NULL);
    const json_t *total = path_get(r, "arun", "timings", "total_ms");
    const json_t *queued = path_get(r, "arun", "timings", "queued_ms");
    const json_t *ttft = path_get(r, "arun", "timings", "ttft_ms");
    if (!json_is_integer(out) || !json_is_number(total) || !json_is_number(ttft))
        return xstrdup("-");
    /* Generation: from the first token to the end. Under a millisecond (an engine that sent
     * everything at once) a rate means nothing. */
    double gen_ms = json_number_value(total) - json_number_value(ttft) -
                    (json_is_number(queued) ? json_number_value(queued) : 0);
    if (gen_ms < 1 || json_integer_value(out) <= 0)
        return xstrdup("-");
    return xasprintf("%.1f", (double)json_integer_value(out) * 1000.0 / gen_ms);
}

void runs_table_row(struct table *t, const json_t *r, int64_t now_ms)
{
    ASSERT(t->ncols == RUNS_NCOLS || t->ncols == RUNS_NCOLS_TENANT);
    char *cells[RUNS_NCOLS_TENANT];
    size_t n = 0;
    cells[n++] = xstrdup(str_or(json_object_get(r, "id"), "?"));
    cells[n++] = xstrdup(str_or(json_object_get(r, "status"), "?"));
    cells[n++] = xstrdup(str_or(json_object_get(r, "model"), "-"));
    if (t->ncols == RUNS_NCOLS_TENANT)
        cells[n++] = xstrdup(tenant_of(r) != NULL && tenant_of(r)[0] ? tenant_of(r) : "-");
    cells[n++] = created_cell(r, now_ms);
    cells[n++] = ms_cell(path_get(r, "arun", "timings", "queued_ms"));
    cells[n++] = ms_cell(path_get(r, "arun", "timings", "ttft_ms"));
    cells[n++] = tokens_per_s_cell(r);
    cells[n++] = duration_cell(r, now_ms);
    table_add_row(t, cells);
}

/* A scalar as text: strings as they are, numbers, yes/no, "-" for null. Caller frees; NULL
 * for an object or array. */
static char *scalar_text(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return xstrdup(json_string_value(v));
    case JSON_INTEGER:
        return xasprintf("%lld", (long long)json_integer_value(v));
    case JSON_REAL:
        return xasprintf("%g", json_real_value(v));
    case JSON_TRUE:
        return xstrdup("yes");
    case JSON_FALSE:
        return xstrdup("no");
    case JSON_NULL:
        return xstrdup("-");
    default:
        return NULL;
    }
}

static void add_pair(struct table *t, const char *key, char *value)
{
    char *cells[2] = {xstrdup(key), value};
    table_add_row(t, cells);
}

/* Adds v under key: an object as one line per member (key.member), an array of scalars
 * comma-joined, anything else as compact JSON. */
static void add_flat(struct table *t, const char *key, const json_t *v)
{
    char *s = scalar_text(v);
    if (s != NULL) {
        add_pair(t, key, s);
    } else if (json_is_object(v)) {
        const char *k;
        const json_t *m;
        json_object_foreach((json_t *)v, k, m)
        {
            char *sub = xasprintf("%s.%s", key, k);
            add_flat(t, sub, m);
            free(sub);
        }
    } else {
        add_pair(t, key, json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY));
    }
}

static void add_time(struct table *t, const char *key, const json_t *secs, int64_t now_ms)
{
    if (!json_is_integer(secs) || json_integer_value(secs) <= 0)
        return;
    time_t when = (time_t)json_integer_value(secs);
    struct tm tm;
    char stamp[32];
    gmtime_r(&when, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S UTC", &tm);
    char *ago = table_duration(now_ms / 1000 - (int64_t)when);
    add_pair(t, key, xasprintf("%s (%s ago)", stamp, ago));
    free(ago);
}

static void add_if(struct table *t, const char *key, const json_t *v)
{
    if (v != NULL && !json_is_null(v))
        add_flat(t, key, v);
}

static void add_usage(struct table *t, const json_t *u)
{
    if (!json_is_object(u))
        return;
    add_pair(t, "usage",
             xasprintf("%lld input, %lld output, %lld total tokens",
                       (long long)json_integer_value(json_object_get(u, "input_tokens")),
                       (long long)json_integer_value(json_object_get(u, "output_tokens")),
                       (long long)json_integer_value(json_object_get(u, "total_tokens"))));
}

/* The fields a person asks about first, one a line. */
static void add_fields(struct table *t, const json_t *r, int64_t now_ms)
{
    const json_t *conv = json_object_get(r, "conversation");
    add_if(t, "id", json_object_get(r, "id"));
    add_if(t, "status", json_object_get(r, "status"));
    add_if(t, "model", json_object_get(r, "model"));
    add_time(t, "created", json_object_get(r, "created_at"), now_ms);
    add_time(t, "completed", json_object_get(r, "completed_at"), now_ms);
    add_pair(t, "duration", duration_cell(r, now_ms));
    add_if(t, "background", json_object_get(r, "background"));
    add_if(t, "previous", json_object_get(r, "previous_response_id"));
    add_if(t, "conversation", json_is_object(conv) ? json_object_get(conv, "id") : conv);
    if (json_is_object(json_object_get(r, "error")))
        add_pair(t, "error",
                 xasprintf("%s (%s)", str_or(path_get(r, "error", "message", NULL), "?"),
                           str_or(path_get(r, "error", "code", NULL), "?")));
    add_if(t, "incomplete", path_get(r, "incomplete_details", "reason", NULL));
    add_usage(t, json_object_get(r, "usage"));
    if (json_object_size(json_object_get(r, "metadata")) > 0)
        add_flat(t, "metadata", json_object_get(r, "metadata"));
    add_if(t, "arun", json_object_get(r, "arun"));
}

/* The output items: a message's text as it is, a function call on a line of its own. */
static void render_output(const json_t *output, struct buf *out)
{
    size_t i, k;
    const json_t *item, *part;
    json_array_foreach(output, i, item)
    {
        const char *type = str_or(json_object_get(item, "type"), "?");
        if (strcmp(type, "message") == 0) {
            json_array_foreach(json_object_get(item, "content"), k, part)
                buf_puts(out, str_or(json_object_get(part, "text"), ""));
            buf_puts(out, "\n");
        } else if (strcmp(type, "function_call") == 0) {
            buf_printf(out, "[function call %s(%s) call_id=%s]\n",
                       str_or(json_object_get(item, "name"), "?"),
                       str_or(json_object_get(item, "arguments"), ""),
                       str_or(json_object_get(item, "call_id"), "?"));
        } else {
            buf_printf(out, "[%s item]\n", type);
        }
    }
}

int runs_show_render(const json_t *r, int64_t now_ms, struct buf *out)
{
    struct table t;
    table_init(&t, 2);
    add_fields(&t, r, now_ms);
    table_render(&t, 0, out);
    table_cleanup(&t);
    const json_t *output = json_object_get(r, "output");
    if (json_array_size(output) > 0) {
        buf_puts(out, "\n");
        render_output(output, out);
    }
    return out->truncated ? -ENOBUFS : 0;
}

/* ---- the verbs ---- */

/* GET or POST path and the 2xx JSON answer, or an exit code (the failure told). */
static int fetch_json(struct client *c, bool post, const char *path, struct client_response *res)
{
    int rc = post ? client_post(c, path, NULL, res) : client_get(c, path, res);
    if (rc != 0)
        return client_fail(c, rc);
    if (res->status / 100 != 2 || !json_is_object(res->json)) {
        rc = client_fail_response(res);
        client_response_cleanup(res);
        return rc;
    }
    return 0;
}

static char *page_path(const struct runs_opts *o, size_t have, const char *after)
{
    long want = RUNS_PAGE_MAX;
    if (o->limit > 0 && o->limit - (long)have < want)
        want = o->limit - (long)have;
    char *status = o->status ? client_escape(o->status) : NULL;
    char *eafter = after ? client_escape(after) : NULL;
    char *tenant = o->tenant ? client_escape(o->tenant) : NULL;
    char *p = xasprintf("/v1/responses?limit=%ld%s%s%s%s%s%s", want, status ? "&status=" : "",
                        status ? status : "", eafter ? "&after=" : "", eafter ? eafter : "",
                        tenant ? "&tenant=" : "", tenant ? tenant : "");
    free(tenant);
    free(eafter);
    free(status);
    return p;
}

/* Walks the pages into all until -n rows or the end. Returns 0 with *has_more, or an exit
 * code. */
static int fetch_runs(struct client *c, const struct runs_opts *o, json_t *all, bool *has_more)
{
    char *after = NULL;
    int rc = 0;
    *has_more = true;
    while (rc == 0 && *has_more && (o->limit == 0 || (long)json_array_size(all) < o->limit)) {
        struct client_response res;
        char *path = page_path(o, json_array_size(all), after);
        rc = fetch_json(c, false, path, &res);
        free(path);
        if (rc != 0)
            break;
        const json_t *data = json_object_get(res.json, "data");
        if (json_is_array(data))
            json_array_extend(all, (json_t *)data);
        *has_more = json_is_true(json_object_get(res.json, "has_more"));
        const json_t *tail = json_array_get(data, json_array_size(data) - 1);
        const char *last = json_string_value(json_object_get(res.json, "last_id"));
        last = last ? last : json_string_value(json_object_get(tail, "id"));
        free(after);
        after = last ? xstrdup(last) : NULL;
        if (after == NULL || json_array_size(data) == 0)
            *has_more = false; /* no cursor to go on with: stop rather than loop */
        client_response_cleanup(&res);
    }
    free(after);
    return rc;
}

static int list_runs(struct client *c, const struct runs_opts *o)
{
    json_t *all = json_array();
    bool has_more = false;
    int rc = fetch_runs(c, o, all, &has_more);
    if (rc != 0)
        goto out;
    if (o->json) {
        json_t *list =
            json_pack("{s:s, s:O, s:b}", "object", "list", "data", all, "has_more", has_more);
        client_print_json(list);
        json_decref(list);
        goto out;
    }
    struct table t;
    size_t i;
    const json_t *r;
    int64_t now_ms = clock_wall_ms();
    runs_table_header(&t, runs_have_tenant(all));
    json_array_foreach(all, i, r) runs_table_row(&t, r, now_ms);
    table_print(&t);
    table_cleanup(&t);
    if (has_more && isatty(STDOUT_FILENO))
        fprintf(stderr, "arun: the newest %zu shown; -n N shows more, -n 0 all\n",
                json_array_size(all));
out:
    json_decref(all);
    return rc;
}

static int show_or_cancel(struct client *c, const struct runs_opts *o)
{
    bool cancel = o->action == RUNS_CANCEL;
    char *eid = client_escape(o->id);
    char *tenant = o->tenant ? client_escape(o->tenant) : NULL;
    char *path = xasprintf("/v1/responses/%s%s%s%s", eid, cancel ? "/cancel" : "",
                           tenant ? "?tenant=" : "", tenant ? tenant : "");
    struct client_response res;
    int rc = fetch_json(c, cancel, path, &res);
    free(path);
    free(tenant);
    free(eid);
    if (rc != 0)
        return rc;
    if (o->json) {
        client_print_json(res.json);
    } else if (cancel) {
        printf("%s: %s\n", str_or(json_object_get(res.json, "id"), o->id),
               str_or(json_object_get(res.json, "status"), "?"));
    } else {
        struct buf out;
        buf_init(&out, SHOW_MAX_OUTPUT);
        /* Cut at 64 MiB: what was laid out is printed. */
        IGNORE_RESULT(runs_show_render(res.json, clock_wall_ms(), &out));
        fwrite(buf_cstr(&out), 1, out.len, stdout);
        buf_cleanup(&out);
    }
    client_response_cleanup(&res);
    return CLIENT_EXIT_OK;
}

int runs_cmd_main(int argc, char **argv)
{
    struct runs_opts o;
    int rc = runs_cmd_parse(argc, argv, &o);
    if (rc != RUNS_PROCEED)
        return rc;
    struct client c;
    if (client_init(&c, o.server, o.api_key) != 0)
        return CLIENT_EXIT_USAGE;
    struct watch_opts wo = {.reconnect_s = o.reconnect_s, .verbose = o.verbose};
    switch (o.action) {
    case RUNS_LIST:
        rc = list_runs(&c, &o);
        break;
    case RUNS_WATCH:
        rc = watch_follow(&c, o.id, &wo);
        break;
    default:
        rc = show_or_cancel(&c, &o);
        break;
    }
    client_cleanup(&c);
    return rc;
}
