/*
 * test_store_runs.c: the store's durable-runs and tenancy functions (store.h, "durable runs" and
 * "tenancy") through the public interface: responses, their events, items and history,
 * conversations, idempotency claims, the recovery scan and the sweep, the migrations that made
 * their tables; API keys, daily usage counters and the audit trail. Every test
 * runs a real uv loop and a real SQLite database in a fresh temporary directory, waits on
 * conditions with a deadline (never sleeps), and ends with uv_loop_close() == 0.
 *
 * The durable runs' tests run twice: on SQLite, then on PostgreSQL (a throwaway cluster from
 * scripts/pgtmp.sh, a fresh database per test), where they must get the same answers, and a
 * PostgreSQL test compares the two backends' JSON texts byte for byte. Tests of SQLite's files
 * (the migration of an old file, query plans) and of the tenancy tables (not PostgreSQL's
 * runs ops) run on SQLite only. Without PostgreSQL installed only the SQLite half runs.
 *
 * Reads and writes go through W() and R(): each submits one call, asserts the submission was
 * accepted and runs the loop until its callback ran; W() yields the write's status, R() the
 * read's, with the value in G.value.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "testutil.h"
#include "testloop.h"
#include <jansson.h>
#include <sqlite3.h>
#include <uv.h>

#include "core/clock.h"
#include "core/metrics.h"
#include "pgtmp.h"
#include "store/store.h"
#include "store/store_int.h"

#define DEADLINE_MS 10000 /* generous for ASan on a loaded 2-core VM; a pass takes milliseconds */
#define REQ "{\"model\":\"m\",\"input\":\"hi\"}"
#define OBJ "{\"id\":\"x\",\"object\":\"response\",\"status\":\"queued\"}"

/* ---- the fixture: one loop, one store in a fresh directory ---------------------------- */

struct fx {
    uv_loop_t loop;
    struct store *st;
    char *tmp;
    char *data_dir;
    char *url;           /* this test's PostgreSQL database, or NULL: SQLite in data_dir */
    struct store *other; /* a second node's store on the same database, or NULL */
};
static struct fx *F;
static int pg_databases; /* made so far: each test gets runs_N */

/* The node id and lease the cluster tests open their store with. */
#define ME "node-me"
#define LEASE_MS 1000

/* A store as opts say, on F's database when opts names none (F->url NULL: SQLite). */
static struct store *open_store_opts(struct store_options opts)
{
    if (opts.url == NULL)
        opts.url = F->url;
    struct store *st = NULL;
    struct buf err;

    buf_init(&err, 4096);
    int rc = store_open(&F->loop, &opts, &st, &err);
    if (rc != 0)
        fail_msg("store_open: %d %s", rc, buf_cstr(&err));
    buf_cleanup(&err);
    return st;
}

/* A store on F's database for node_id (NULL: "local"), its lock in data_dir. */
static struct store *open_store_as(const char *data_dir, const char *node_id, struct metrics *m)
{
    return open_store_opts(
        (struct store_options){.data_dir = data_dir, .metrics = m, .node_id = node_id});
}

static struct store *open_store(struct metrics *m)
{
    return open_store_as(F->data_dir, NULL, m);
}

static void close_store(void)
{
    store_close(F->st);
    F->st = NULL;
    assert_true(testloop_run_until(&F->loop, testloop_no_handles, &F->loop, DEADLINE_MS));
}

/* The loop and the directory, without a store (a test that prepares the database first). */
static int setup_bare(void **state)
{
    const char *base = getenv("ARUN_BUILD_DIR");

    F = xcalloc(1, sizeof(*F));
    F->tmp = xasprintf("%s/store-runs-test-XXXXXX", base != NULL ? base : "/tmp");
    assert_non_null(mkdtemp(F->tmp));
    F->data_dir = xasprintf("%s/data", F->tmp);
    assert_int_equal(uv_loop_init(&F->loop), 0);
    return 0;
}

static int setup(void **state)
{
    setup_bare(state);
    F->st = open_store(NULL);
    return 0;
}

/* A store of node ME with a lease of LEASE_MS. */
static int setup_node(void **state)
{
    setup_bare(state);
    F->st = open_store_opts(
        (struct store_options){.data_dir = F->data_dir, .node_id = ME, .lease_ms = LEASE_MS});
    return 0;
}

/* The same on a fresh PostgreSQL database. */
static int setup_pg(void **state)
{
    char name[32];

    setup_bare(state);
    snprintf(name, sizeof(name), "runs_%d", ++pg_databases);
    F->url = pgtmp_createdb(name);
    if (F->url == NULL)
        fail_msg("pgtmp: cannot create database %s", name);
    F->st = open_store(NULL);
    return 0;
}

static int teardown(void **state)
{
    if (F->other != NULL)
        store_close(F->other); /* close_store's loop run ends it too */
    if (F->st != NULL)
        close_store();
    uv_run(&F->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&F->loop), 0);
    nftw(F->tmp, testutil_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(F->tmp);
    free(F->data_dir);
    free(F->url);
    free(F);
    F = NULL;
    return 0;
}

/* ---- W() and R() ------------------------------------------------------------------------ */

struct acks {
    int done; /* callbacks run */
    int want; /* run_until target */
    int last; /* the last status */
};
static struct acks A;

static void ack_cb(int status, void *arg)
{
    struct acks *a = arg;
    a->done++;
    a->last = status;
}

static bool acks_reached(void *arg)
{
    struct acks *a = arg;
    return a->done >= a->want;
}

static int ack_reset(void)
{
    A = (struct acks){.want = 1};
    return 0;
}

static int wr(int submitted)
{
    assert_int_equal(submitted, 0);
    assert_true(testloop_run_until(&F->loop, acks_reached, &A, DEADLINE_MS));
    return A.last;
}
#define W(call) (ack_reset(), wr(call))

struct got {
    bool done;
    int status;
    char *value;
};
static struct got G;

static void got_cb(int status, const char *value, size_t len, void *arg)
{
    struct got *g = arg;
    g->done = true;
    g->status = status;
    free(g->value);
    g->value = value != NULL ? xstrndup(value, len) : NULL;
    if (status == 0)
        assert_int_equal(strlen(value), len);
    else
        assert_null(value);
}

static bool got_done(void *arg)
{
    return ((struct got *)arg)->done;
}

static int got_reset(void)
{
    free(G.value);
    G = (struct got){0};
    return 0;
}

static int rd(int submitted)
{
    assert_int_equal(submitted, 0);
    assert_true(testloop_run_until(&F->loop, got_done, &G, DEADLINE_MS));
    return G.status;
}
#define R(call) (got_reset(), rd(call))

/* G.value parsed (the caller decrefs). */
static json_t *got_json(void)
{
    json_error_t e;
    json_t *j = json_loads(G.value, 0, &e);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", e.text, G.value);
    return j;
}

/* The ids of a page's data (or of an array), joined with ',', for one assert. */
static char *ids_of(json_t *list)
{
    json_t *data = json_is_array(list) ? list : json_object_get(list, "data");
    struct buf b;
    size_t i;
    json_t *v;

    buf_init(&b, 1 << 20);
    json_array_foreach(data, i, v)
        buf_printf(&b, "%s%s", i > 0 ? "," : "", json_string_value(json_object_get(v, "id")));
    char *out = b.len > 0 ? buf_steal(&b) : xstrdup("");
    buf_cleanup(&b);
    return out;
}

static bool has_more(json_t *page)
{
    return json_is_true(json_object_get(page, "has_more"));
}

/* ---- builders -------------------------------------------------------------------------- */

static int put_response(const char *tenant, const char *id, const char *status, int64_t created_ms,
                        const char *prev)
{
    struct store_response r = {
        .tenant = tenant,
        .id = id,
        .status = status,
        .model = "m",
        .previous_response_id = prev,
        .created_ms = created_ms,
        .request = REQ,
        .request_len = strlen(REQ),
        .object = OBJ,
        .object_len = strlen(OBJ),
    };
    return W(store_response_put(F->st, &r, ack_cb, &A));
}

static int append_event(const char *tenant, const char *id, int64_t seq)
{
    char data[128];
    int n = snprintf(data, sizeof(data),
                     "{\"type\":\"response.output_text.delta\",\"delta\":\"t%lld\","
                     "\"sequence_number\":%lld}",
                     (long long)seq, (long long)seq);
    return W(store_event_append(F->st, tenant, id, seq, "response.output_text.delta", data,
                                (size_t)n, ack_cb, &A));
}

/* Appends items with the given comma-separated ids, each {"id":ID,"type":"message"}. */
static int append_items(const char *tenant, const char *owner, enum store_items_kind kind,
                        const char *ids)
{
    struct buf b;
    char *copy = xstrdup(ids), *save = NULL;

    buf_init(&b, 1 << 20);
    buf_puts(&b, "[");
    for (char *id = strtok_r(copy, ",", &save); id != NULL; id = strtok_r(NULL, ",", &save))
        buf_printf(&b, "%s{\"id\":\"%s\",\"type\":\"message\"}", b.len > 1 ? "," : "", id);
    buf_puts(&b, "]");
    int rc = W(store_items_append(F->st, tenant, owner, kind, buf_cstr(&b), b.len, ack_cb, &A));
    buf_cleanup(&b);
    free(copy);
    return rc;
}

static int put_conversation(const char *tenant, const char *id, int64_t created_ms)
{
    const char *meta = "{\"topic\":\"t\"}";
    return W(store_conversation_put(F->st, tenant, id, created_ms, meta, strlen(meta), ack_cb, &A));
}

/* The first value SQL gives on the writer's connection (caller frees). */
static char *sql(const char *text)
{
    assert_int_equal(R(store_debug_sql(F->st, text, got_cb, &G)), 0);
    char *v = G.value;
    G.value = NULL;
    return v;
}

static void exec_cb(int status, const char *value, size_t len, void *arg)
{
    ((struct got *)arg)->done = true;
    ((struct got *)arg)->status = status;
}

/* Runs SQL that answers no row (a test's UPDATE standing for another node's write). */
static void exec_sql(const char *text)
{
    assert_int_equal(R(store_debug_sql(F->st, text, exec_cb, &G)), 0);
}

static void assert_sql(const char *text, const char *want)
{
    char *v = sql(text);
    if (v == NULL || strcmp(v, want) != 0)
        fail_msg("%s: got %s, want %s", text, v != NULL ? v : "NULL", want);
    free(v);
}

/* Asserts the values of column col of every row of table, sorted and joined with ',', in
 * either backend's SQL. */
static void assert_column(const char *col, const char *table, const char *want)
{
    char *text = F->url != NULL
                     ? xasprintf("SELECT string_agg(%s, ',' ORDER BY %s) FROM %s", col, col, table)
                     : xasprintf("SELECT group_concat(%s) FROM (SELECT %s FROM %s ORDER BY %s)",
                                 col, col, table, col);
    assert_sql(text, want);
    free(text);
}

/* ---- the migration ---------------------------------------------------------------------- */

static void test_a_version_1_database_migrates_and_keeps_its_kv_data(void **state)
{
    char *path = xasprintf("%s/%s", F->data_dir, STORE_DB_FILE);
    sqlite3 *db = NULL;

    /* A database as an arun of schema version 1 left it, with an engine record in it. */
    assert_int_equal(mkdir(F->data_dir, 0700), 0);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, store_sqlite_migrations[0], NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO kv VALUES ('engines', 'e1', '{\"pid\":42}', 1);"
                                  "PRAGMA user_version = 1",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);

    F->st = open_store(NULL);
    char *version = xasprintf("%zu", store_sqlite_migrations_count);
    assert_sql("PRAGMA user_version", version);
    free(version);
    assert_int_equal(R(store_kv_get(F->st, "engines", "e1", got_cb, &G)), 0);
    assert_string_equal(G.value, "{\"pid\":42}");
    assert_sql("SELECT group_concat(name) FROM (SELECT name FROM sqlite_master WHERE type = "
               "'table' ORDER BY name)",
               "api_keys,audit,conversations,idempotency,items,kv,nodes,response_events,responses,"
               "sqlite_sequence,store_probe,tenant_usage");
    /* The new tables work on the migrated file. */
    assert_int_equal(put_response("default", "resp_1", "queued", 1, NULL), 0);
    assert_int_equal(append_event("default", "resp_1", 0), 0);
    free(path);
}

/* The query plan of sql on a second connection to the store's file, as one line. */
static char *plan_of(const char *text)
{
    char *path = xasprintf("%s/%s", F->data_dir, STORE_DB_FILE),
         *q = xasprintf("EXPLAIN QUERY PLAN %s", text);
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    struct buf b;

    buf_init(&b, 1 << 16);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &s, NULL), SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW)
        buf_printf(&b, "%s / ", (const char *)sqlite3_column_text(s, 3));
    sqlite3_finalize(s);
    sqlite3_close(db);
    free(q);
    free(path);
    char *out = xstrdup(buf_cstr(&b));
    buf_cleanup(&b);
    return out;
}

static void test_recovery_and_sweep_queries_use_their_indexes(void **state)
{
    /* Recovery reads the partial index of unfinished rows, not the whole table. */
    char *plan = plan_of("SELECT id FROM responses WHERE status IN ('queued', 'in_progress') "
                         "ORDER BY created_ms, rowid");
    if (strstr(plan, "responses_unfinished") == NULL)
        fail_msg("recovery plan: %s", plan);
    free(plan);
    /* So do the claim (recovery's pages) and the lease renewal (every heartbeat). */
    plan = plan_of("SELECT id FROM responses r WHERE r.status IN ('queued', 'in_progress') AND "
                   "(r.node IS NULL OR r.lease_until_ms < 5) ORDER BY "
                   "r.created_ms, r.rowid LIMIT 100");
    if (strstr(plan, "responses_unfinished") == NULL || strstr(plan, "TEMP B-TREE") != NULL)
        fail_msg("claim plan: %s", plan);
    free(plan);
    plan = plan_of("UPDATE responses SET lease_until_ms = 5 WHERE node = 'n' AND status IN "
                   "('queued', 'in_progress')");
    if (strstr(plan, "responses_unfinished") == NULL)
        fail_msg("renew plan: %s", plan);
    free(plan);
    plan = plan_of("SELECT tenant, id FROM responses WHERE created_ms < 5 AND status NOT IN "
                   "('queued', 'in_progress') ORDER BY created_ms LIMIT 10");
    if (strstr(plan, "responses_by_age") == NULL)
        fail_msg("sweep plan: %s", plan);
    free(plan);
    plan = plan_of("SELECT 1 FROM responses r WHERE r.tenant = 'a' AND (r.created_ms, r.rowid) < "
                   "(1, 2) ORDER BY r.created_ms DESC, r.rowid DESC LIMIT 3");
    if (strstr(plan, "responses_by_created") == NULL || strstr(plan, "TEMP B-TREE") != NULL)
        fail_msg("list plan: %s", plan);
    free(plan);
    plan = plan_of("SELECT item FROM items WHERE tenant = 'a' AND owner_id = 'b' AND kind IN "
                   "('input', 'output') ORDER BY kind, position");
    if (strstr(plan, "TEMP B-TREE") != NULL)
        fail_msg("history plan: %s", plan);
    free(plan);
    plan = plan_of("SELECT item FROM items WHERE tenant = 'a' AND id = 'b' LIMIT 1");
    if (strstr(plan, "items_by_item_id") == NULL)
        fail_msg("item_reference plan: %s", plan);
    free(plan);
}

/* ---- responses -------------------------------------------------------------------------- */

static void test_a_response_reads_back_as_written(void **state)
{
    const char *req = "{\"model\":\"m\",  \"input\":[1, 2]}"; /* spacing kept byte for byte */
    struct store_response r = {
        .tenant = "default",
        .id = "resp_a",
        .status = "queued",
        .model = "m \"quoted\"",
        .conversation_id = "conv_1",
        .created_ms = 1700000000123,
        .background = true,
        .request = req,
        .request_len = strlen(req),
        .object = OBJ,
        .object_len = strlen(OBJ),
    };

    assert_int_equal(W(store_response_put(F->st, &r, ack_cb, &A)), 0);
    assert_int_equal(R(store_response_get(F->st, "default", "resp_a", got_cb, &G)), 0);
    json_t *j = got_json();
    assert_string_equal(json_string_value(json_object_get(j, "id")), "resp_a");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "queued");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "m \"quoted\"");
    assert_string_equal(json_string_value(json_object_get(j, "conversation_id")), "conv_1");
    assert_true(json_is_null(json_object_get(j, "previous_response_id")));
    assert_int_equal(json_integer_value(json_object_get(j, "created_ms")), 1700000000123);
    assert_true(json_is_true(json_object_get(j, "background")));
    assert_int_equal(json_integer_value(json_object_get(j, "last_seq")), -1);
    assert_non_null(strstr(G.value, "\"request\":{\"model\":\"m\",  \"input\":[1, 2]}"));
    assert_non_null(strstr(G.value, "\"object\":" OBJ));
    json_decref(j);

    /* The same id again is refused, and the first row stays. */
    r.status = "completed";
    assert_int_equal(W(store_response_put(F->st, &r, ack_cb, &A)), -EEXIST);
    assert_int_equal(R(store_response_get(F->st, "default", "resp_a", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, "\"status\":\"queued\""));
}

static void test_a_response_update_sets_status_and_object_and_keeps_the_request(void **state)
{
    const char *obj = "{\"id\":\"resp_u\",\"status\":\"completed\",\"output\":[]}";

    assert_int_equal(put_response("default", "resp_u", "in_progress", 10, NULL), 0);
    assert_int_equal(W(store_response_update(F->st, "default", "resp_u", "completed", obj,
                                             strlen(obj), ack_cb, &A)),
                     0);
    assert_int_equal(R(store_response_get(F->st, "default", "resp_u", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, "\"status\":\"completed\""));
    assert_non_null(strstr(G.value, "\"request\":" REQ));
    assert_non_null(strstr(G.value, "\"object\":{\"id\":\"resp_u\",\"status\":\"completed\""));

    assert_int_equal(W(store_response_update(F->st, "default", "resp_none", "completed", obj,
                                             strlen(obj), ack_cb, &A)),
                     -ENOENT);
    assert_int_equal(
        W(store_response_update(F->st, "default", "resp_u", "failed", "{bad", 4, ack_cb, &A)),
        -EINVAL);
    assert_int_equal(R(store_response_get(F->st, "default", "resp_u", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, "\"status\":\"completed\""));
}

static void test_invalid_responses_are_refused(void **state)
{
    char *long_id = xcalloc(1, STORE_ID_MAX + 2), *long_tenant = xcalloc(1, STORE_TENANT_MAX + 2);
    struct store_response r = {
        .tenant = "default",
        .id = "resp_bad",
        .status = "queued",
        .model = "m",
        .request = "{not json",
        .request_len = 9,
        .object = OBJ,
        .object_len = strlen(OBJ),
    };

    memset(long_id, 'i', STORE_ID_MAX + 1);
    memset(long_tenant, 't', STORE_TENANT_MAX + 1);
    /* Invalid JSON fails in the callback; the batch it was in still commits. */
    assert_int_equal(W(store_response_put(F->st, &r, ack_cb, &A)), -EINVAL);
    assert_int_equal(R(store_response_get(F->st, "default", "resp_bad", got_cb, &G)), -ENOENT);

    /* These fail at submission, without a callback. */
    r.request = REQ;
    r.request_len = strlen(REQ);
    r.model = NULL;
    assert_int_equal(store_response_put(F->st, &r, ack_cb, &A), -EINVAL);
    r.model = "m";
    r.tenant = NULL;
    assert_int_equal(store_response_put(F->st, &r, ack_cb, &A), -EINVAL);
    r.tenant = "";
    assert_int_equal(store_response_put(F->st, &r, ack_cb, &A), -EINVAL);
    r.tenant = long_tenant;
    assert_int_equal(store_response_put(F->st, &r, ack_cb, &A), -E2BIG);
    r.tenant = "default";
    r.id = long_id;
    assert_int_equal(store_response_put(F->st, &r, ack_cb, &A), -E2BIG);
    r.id = "resp_bad";
    r.object_len = STORE_VALUE_MAX + 1;
    assert_int_equal(store_response_put(F->st, &r, ack_cb, &A), -E2BIG);
    assert_int_equal(store_response_get(F->st, "default", long_id, got_cb, &G), -E2BIG);
    assert_int_equal(store_responses_list(F->st, "default", NULL, NULL, 0, got_cb, &G), -EINVAL);
    assert_int_equal(
        store_responses_list(F->st, "default", NULL, NULL, STORE_PAGE_MAX + 1, got_cb, &G),
        -EINVAL);
    free(long_id);
    free(long_tenant);
}

/* One page of default's responses: its ids and has_more. */
static void expect_page(const char *status, const char *after, uint32_t limit, const char *want,
                        bool want_more)
{
    assert_int_equal(R(store_responses_list(F->st, "default", status, after, limit, got_cb, &G)),
                     0);
    json_t *page = got_json();
    char *ids = ids_of(page);
    if (strcmp(ids, want) != 0 || has_more(page) != want_more)
        fail_msg("status %s after %s limit %u: got %s (has_more %d), want %s (%d)",
                 status != NULL ? status : "any", after != NULL ? after : "-", limit, ids,
                 has_more(page), want, want_more);
    free(ids);
    json_decref(page);
}

static void test_responses_list_newest_first_in_pages(void **state)
{
    /* resp_2 and resp_3 share a millisecond: creation order breaks the tie. */
    const int64_t ms[] = {100, 200, 300, 300, 400};
    const char *status[] = {"completed", "failed", "completed", "queued", "completed"};
    char id[32];

    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "resp_%d", i);
        assert_int_equal(put_response("default", id, status[i], ms[i], NULL), 0);
    }
    expect_page(NULL, NULL, 2, "resp_4,resp_3", true);
    expect_page(NULL, "resp_3", 2, "resp_2,resp_1", true);
    expect_page(NULL, "resp_1", 2, "resp_0", false);
    expect_page(NULL, "resp_2", 2, "resp_1,resp_0", false); /* exactly limit left: no more */
    expect_page("completed", NULL, 10, "resp_4,resp_2,resp_0", false);
    expect_page("completed", NULL, 1, "resp_4", true);
    /* Rows of a list carry no request. */
    assert_int_equal(R(store_responses_list(F->st, "default", NULL, NULL, 1, got_cb, &G)), 0);
    assert_null(strstr(G.value, "\"request\""));
    assert_int_equal(R(store_responses_list(F->st, "default", NULL, "resp_x", 2, got_cb, &G)),
                     -ENOENT);
}

static void test_delete_takes_events_and_own_items_and_leaves_conversation_items(void **state)
{
    assert_int_equal(put_conversation("default", "conv_1", 1), 0);
    assert_int_equal(put_response("default", "resp_d", "completed", 1, NULL), 0);
    assert_int_equal(append_event("default", "resp_d", 0), 0);
    assert_int_equal(append_event("default", "resp_d", 1), 0);
    assert_int_equal(append_items("default", "resp_d", STORE_ITEMS_INPUT, "msg_in"), 0);
    assert_int_equal(append_items("default", "resp_d", STORE_ITEMS_OUTPUT, "msg_out"), 0);
    assert_int_equal(append_items("default", "conv_1", STORE_ITEMS_CONVERSATION, "msg_in,msg_out"),
                     0);

    assert_int_equal(W(store_response_delete(F->st, "default", "resp_d", ack_cb, &A)), 0);
    assert_int_equal(R(store_response_get(F->st, "default", "resp_d", got_cb, &G)), -ENOENT);
    assert_int_equal(R(store_events_read(F->st, "default", "resp_d", -1, 10, got_cb, &G)), -ENOENT);
    assert_sql("SELECT count(*) FROM response_events", "0");
    assert_sql("SELECT count(*) FROM items WHERE owner_id = 'resp_d'", "0");
    assert_int_equal(R(store_items_list(F->st, "default", "conv_1", STORE_ITEMS_CONVERSATION, NULL,
                                        10, false, got_cb, &G)),
                     0);
    json_t *page = got_json();
    char *ids = ids_of(page);
    assert_string_equal(ids, "msg_in,msg_out");
    free(ids);
    json_decref(page);

    assert_int_equal(W(store_response_delete(F->st, "default", "resp_d", ack_cb, &A)), -ENOENT);
}

/* Recovery sees every tenant's unfinished runs in the order they were created, also within one
 * millisecond. */
static void test_unfinished_runs_come_in_creation_order_across_tenants(void **state)
{
    assert_int_equal(put_response("b", "resp_1", "queued", 50, NULL), 0);
    assert_int_equal(put_response("a", "resp_2", "completed", 50, NULL), 0);
    assert_int_equal(put_response("a", "resp_3", "in_progress", 50, NULL), 0);
    assert_int_equal(put_response("b", "resp_4", "failed", 60, NULL), 0);
    assert_int_equal(put_response("a", "resp_0", "queued", 60, NULL), 0);
    assert_int_equal(put_response("b", "resp_5", "queued", 70, NULL), 0);
    assert_int_equal(append_event("a", "resp_3", 0), 0);

    assert_int_equal(R(store_runs_unfinished(F->st, got_cb, &G)), 0);
    json_t *rows = got_json();
    char *ids = ids_of(rows);
    assert_string_equal(ids, "resp_1,resp_3,resp_0,resp_5");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "tenant")), "b");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 1), "tenant")), "a");
    /* A row has what recovery needs: the request to start again, the last stored event. */
    assert_non_null(json_object_get(json_array_get(rows, 1), "request"));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 1), "last_seq")), 0);
    free(ids);
    json_decref(rows);

    /* A finished run leaves the scan. */
    assert_int_equal(
        W(store_response_update(F->st, "a", "resp_3", "completed", OBJ, strlen(OBJ), ack_cb, &A)),
        0);
    assert_int_equal(R(store_runs_unfinished(F->st, got_cb, &G)), 0);
    rows = got_json();
    ids = ids_of(rows);
    assert_string_equal(ids, "resp_1,resp_0,resp_5");
    free(ids);
    json_decref(rows);
}

/* ---- events ----------------------------------------------------------------------------- */

static void test_events_read_back_as_lines_after_a_sequence_number(void **state)
{
    assert_int_equal(put_response("default", "resp_e", "in_progress", 1, NULL), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(append_event("default", "resp_e", i), 0);

    assert_int_equal(R(store_events_read(F->st, "default", "resp_e", 6, 2, got_cb, &G)), 0);
    assert_string_equal(G.value,
                        "7 response.output_text.delta {\"type\":\"response.output_text.delta\","
                        "\"delta\":\"t7\",\"sequence_number\":7}\n"
                        "8 response.output_text.delta {\"type\":\"response.output_text.delta\","
                        "\"delta\":\"t8\",\"sequence_number\":8}\n");
    assert_int_equal(R(store_events_read(F->st, "default", "resp_e", -1, 100, got_cb, &G)), 0);
    int lines = 0;
    for (const char *p = G.value; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, 10);
    assert_true(strncmp(G.value, "0 response.output_text.delta {", 30) == 0);

    /* Past the end: an empty text, not an error. */
    assert_int_equal(R(store_events_read(F->st, "default", "resp_e", 9, 100, got_cb, &G)), 0);
    assert_string_equal(G.value, "");
    assert_int_equal(R(store_events_read(F->st, "default", "resp_e", 1000, 1, got_cb, &G)), 0);
    assert_string_equal(G.value, "");
    assert_int_equal(R(store_response_get(F->st, "default", "resp_e", got_cb, &G)), 0);
    json_t *row = got_json();
    assert_int_equal(json_integer_value(json_object_get(row, "last_seq")), 9);
    json_decref(row);

    /* A response without events reads empty; one that does not exist is -ENOENT. */
    assert_int_equal(put_response("default", "resp_none", "queued", 1, NULL), 0);
    assert_int_equal(R(store_events_read(F->st, "default", "resp_none", -1, 5, got_cb, &G)), 0);
    assert_string_equal(G.value, "");
    assert_int_equal(R(store_events_read(F->st, "default", "resp_x", -1, 5, got_cb, &G)), -ENOENT);
}

static void test_bad_events_are_refused_and_events_are_never_rewritten(void **state)
{
    const char *t = "response.output_text.delta";

    assert_int_equal(put_response("default", "resp_e", "in_progress", 1, NULL), 0);
    assert_int_equal(append_event("default", "resp_e", 0), 0);
    /* The same sequence number again: refused, the first event stays. */
    assert_int_equal(
        W(store_event_append(F->st, "default", "resp_e", 0, t, "{\"x\":1}", 7, ack_cb, &A)),
        -EEXIST);
    assert_int_equal(
        W(store_event_append(F->st, "default", "resp_e", 1, t, "{\"x\":", 5, ack_cb, &A)), -EINVAL);
    assert_int_equal(
        W(store_event_append(F->st, "default", "resp_x", 1, t, "{\"x\":1}", 7, ack_cb, &A)),
        -ENOENT);
    assert_int_equal(R(store_events_read(F->st, "default", "resp_e", -1, 10, got_cb, &G)), 0);
    assert_non_null(strstr(G.value, "\"delta\":\"t0\""));
    assert_null(strchr(strchr(G.value, '\n') + 1, '\n')); /* one line */

    /* Refused at submission, without a callback: a '\n' would break the line format. */
    assert_int_equal(
        store_event_append(F->st, "default", "resp_e", 1, t, "{\"x\":\n1}", 8, ack_cb, &A),
        -EINVAL);
    assert_int_equal(
        store_event_append(F->st, "default", "resp_e", -1, t, "{\"x\":1}", 7, ack_cb, &A), -EINVAL);
    assert_int_equal(
        store_event_append(F->st, "default", "resp_e", 1, "two words", "{}", 2, ack_cb, &A),
        -EINVAL);
    assert_int_equal(
        store_event_append(F->st, "default", "resp_e", 1, t, "{}", STORE_VALUE_MAX + 1, ack_cb, &A),
        -E2BIG);
    assert_int_equal(store_events_read(F->st, "default", "resp_e", -2, 10, got_cb, &G), -EINVAL);
    assert_int_equal(store_events_read(F->st, "default", "resp_e", -1, 0, got_cb, &G), -EINVAL);
}

/* A write's callback means committed: a read submitted from inside it sees the write. */
struct chase {
    int acked;
    int checked;
    int failures;
};

static void chase_read_cb(int status, const char *value, size_t len, void *arg)
{
    struct chase *c = arg;
    c->checked++;
    if (status != 0 || len == 0 || strstr(value, "\"delta\":\"t") == NULL)
        c->failures++;
}

static void chase_ack_cb(int status, void *arg)
{
    struct chase *c = arg;
    int seq = c->acked++;
    if (status != 0 ||
        store_events_read(F->st, "default", "resp_c", seq - 1, 1, chase_read_cb, c) != 0)
        c->failures++;
}

static bool chase_done(void *arg)
{
    struct chase *c = arg;
    return c->checked + c->failures >= 200;
}

static void test_a_read_submitted_after_a_write_callback_sees_the_write(void **state)
{
    struct chase c = {0};
    char data[64];

    assert_int_equal(put_response("default", "resp_c", "in_progress", 1, NULL), 0);
    /* All in one loop turn, so they share batches: each ack is still its own commit point. */
    for (int i = 0; i < 200; i++) {
        int n = snprintf(data, sizeof(data), "{\"delta\":\"t%d\"}", i);
        assert_int_equal(store_event_append(F->st, "default", "resp_c", i, "d", data, (size_t)n,
                                            chase_ack_cb, &c),
                         0);
    }
    assert_true(testloop_run_until(&F->loop, chase_done, &c, DEADLINE_MS));
    assert_int_equal(c.failures, 0);
    assert_int_equal(c.checked, 200);
}

/* The ids of all of tenant's items of owner, oldest first. */
static void expect_items_of(const char *tenant, const char *owner, enum store_items_kind kind,
                            const char *want)
{
    assert_int_equal(R(store_items_list(F->st, tenant, owner, kind, NULL, 100, false, got_cb, &G)),
                     0);
    json_t *page = got_json();
    char *ids = ids_of(page);
    assert_string_equal(ids, want);
    free(ids);
    json_decref(page);
}

/* ---- items and history ------------------------------------------------------------------ */

/* One page of an owner's items: its ids and has_more. */
static void expect_items(const char *owner, enum store_items_kind kind, const char *after,
                         uint32_t limit, bool desc, const char *want, bool want_more)
{
    assert_int_equal(
        R(store_items_list(F->st, "default", owner, kind, after, limit, desc, got_cb, &G)), 0);
    json_t *page = got_json();
    char *ids = ids_of(page);
    if (strcmp(ids, want) != 0 || has_more(page) != want_more)
        fail_msg("%s after %s limit %u desc %d: got %s (has_more %d), want %s (%d)", owner,
                 after != NULL ? after : "-", limit, desc, ids, has_more(page), want, want_more);
    free(ids);
    json_decref(page);
}

static void test_items_append_in_order_and_list_in_pages(void **state)
{
    const char *in = "[{\"id\":\"msg_1\", \"type\":\"message\",\"content\":[{\"x\":\"\\u00e9\"}]}]";

    assert_int_equal(put_response("default", "resp_i", "completed", 1, NULL), 0);
    assert_int_equal(W(store_items_append(F->st, "default", "resp_i", STORE_ITEMS_INPUT, in,
                                          strlen(in), ack_cb, &A)),
                     0);
    assert_int_equal(append_items("default", "resp_i", STORE_ITEMS_INPUT, "msg_2,msg_3"), 0);
    assert_int_equal(append_items("default", "resp_i", STORE_ITEMS_INPUT, "msg_4"), 0);
    assert_int_equal(append_items("default", "resp_i", STORE_ITEMS_OUTPUT, "msg_5"), 0);
    /* An empty array appends nothing and is fine. */
    assert_int_equal(
        W(store_items_append(F->st, "default", "resp_i", STORE_ITEMS_OUTPUT, "[]", 2, ack_cb, &A)),
        0);

    expect_items("resp_i", STORE_ITEMS_INPUT, NULL, 10, false, "msg_1,msg_2,msg_3,msg_4", false);
    expect_items("resp_i", STORE_ITEMS_INPUT, NULL, 2, false, "msg_1,msg_2", true);
    expect_items("resp_i", STORE_ITEMS_INPUT, "msg_2", 2, false, "msg_3,msg_4", false);
    expect_items("resp_i", STORE_ITEMS_INPUT, NULL, 3, true, "msg_4,msg_3,msg_2", true);
    expect_items("resp_i", STORE_ITEMS_INPUT, "msg_2", 3, true, "msg_1", false);
    expect_items("resp_i", STORE_ITEMS_OUTPUT, NULL, 10, true, "msg_5", false);
    expect_items("resp_nothing", STORE_ITEMS_OUTPUT, NULL, 10, true, "", false);
    assert_int_equal(R(store_items_list(F->st, "default", "resp_i", STORE_ITEMS_INPUT, "msg_5", 10,
                                        false, got_cb, &G)),
                     -ENOENT); /* msg_5 is an output item */

    /* An item reads back as its JSON (whitespace between tokens aside). */
    assert_int_equal(
        R(store_item_get(F->st, "default", "resp_i", STORE_ITEMS_INPUT, "msg_1", got_cb, &G)), 0);
    json_t *item = got_json();
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(item, "content"), 0), "x")),
                        "\xc3\xa9");
    json_decref(item);
    assert_int_equal(
        R(store_item_get(F->st, "default", "resp_i", STORE_ITEMS_OUTPUT, "msg_1", got_cb, &G)),
        -ENOENT);

    assert_int_equal(
        W(store_item_delete(F->st, "default", "resp_i", STORE_ITEMS_INPUT, "msg_2", ack_cb, &A)),
        0);
    assert_int_equal(
        W(store_item_delete(F->st, "default", "resp_i", STORE_ITEMS_INPUT, "msg_2", ack_cb, &A)),
        -ENOENT);
    expect_items("resp_i", STORE_ITEMS_INPUT, NULL, 10, false, "msg_1,msg_3,msg_4", false);
}

/* item_reference: an item by its id alone, in whichever list of the tenant holds it. */
static void test_item_find_looks_in_every_list_of_the_tenant_only(void **state)
{
    assert_int_equal(put_response("default", "resp_f", "completed", 1, NULL), 0);
    assert_int_equal(put_conversation("default", "conv_f", 1), 0);
    assert_int_equal(put_response("other", "resp_g", "completed", 1, NULL), 0);
    assert_int_equal(append_items("default", "resp_f", STORE_ITEMS_INPUT, "msg_in"), 0);
    assert_int_equal(append_items("default", "resp_f", STORE_ITEMS_OUTPUT, "msg_out"), 0);
    assert_int_equal(append_items("default", "conv_f", STORE_ITEMS_CONVERSATION, "msg_c,msg_out"),
                     0);
    assert_int_equal(append_items("other", "resp_g", STORE_ITEMS_OUTPUT, "msg_theirs"), 0);
    const char *const found[] = {"msg_in", "msg_out", "msg_c"};
    for (size_t i = 0; i < ARRAY_SIZE(found); i++) {
        assert_int_equal(R(store_item_find(F->st, "default", found[i], got_cb, &G)), 0);
        json_t *item = got_json();
        assert_string_equal(json_string_value(json_object_get(item, "id")), found[i]);
        json_decref(item);
    }
    assert_int_equal(R(store_item_find(F->st, "default", "msg_theirs", got_cb, &G)), -ENOENT);
    assert_int_equal(R(store_item_find(F->st, "default", "msg_none", got_cb, &G)), -ENOENT);
    assert_int_equal(store_item_find(F->st, "default", NULL, got_cb, &G), -EINVAL);
    /* Gone with its response. */
    assert_int_equal(W(store_response_delete(F->st, "default", "resp_f", ack_cb, &A)), 0);
    assert_int_equal(R(store_item_find(F->st, "default", "msg_in", got_cb, &G)), -ENOENT);
}

static void test_bad_items_are_refused_whole(void **state)
{
    const char *bad[] = {
        "{\"id\":\"msg_x\"}",                    /* not an array */
        "[{\"id\":\"msg_x\"},",                  /* not JSON */
        "[{\"id\":\"msg_x\"},\"text\"]",         /* an element that is not an object */
        "[{\"id\":\"msg_x\"},{\"type\":\"m\"}]", /* an element without an id */
        "[{\"id\":\"msg_x\"},{\"id\":7}]",       /* an id that is not a string */
        "[{\"id\":\"msg_x\"},[1]]",              /* an array element */
    };

    assert_int_equal(put_response("default", "resp_i", "completed", 1, NULL), 0);
    assert_int_equal(append_items("default", "resp_i", STORE_ITEMS_INPUT, "msg_1"), 0);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        int rc = W(store_items_append(F->st, "default", "resp_i", STORE_ITEMS_INPUT, bad[i],
                                      strlen(bad[i]), ack_cb, &A));
        if (rc != -EINVAL)
            fail_msg("%s: got %d, want -EINVAL", bad[i], rc);
    }
    /* A repeated id, already there or twice in one array: none of the array goes in. */
    assert_int_equal(append_items("default", "resp_i", STORE_ITEMS_INPUT, "msg_2,msg_1"), -EEXIST);
    assert_int_equal(append_items("default", "resp_i", STORE_ITEMS_INPUT, "msg_3,msg_3"), -EEXIST);
    expect_items("resp_i", STORE_ITEMS_INPUT, NULL, 10, false, "msg_1", false);
    /* The same id under another kind or owner is another item. */
    assert_int_equal(append_items("default", "resp_i", STORE_ITEMS_OUTPUT, "msg_1"), 0);
    /* Items of an owner that does not exist. */
    assert_int_equal(append_items("default", "resp_x", STORE_ITEMS_INPUT, "msg_1"), -ENOENT);
    assert_int_equal(append_items("default", "conv_x", STORE_ITEMS_CONVERSATION, "msg_1"), -ENOENT);
    assert_int_equal(store_items_append(F->st, "default", "resp_i", (enum store_items_kind)7, "[]",
                                        2, ack_cb, &A),
                     -EINVAL);
}

static void test_history_walks_previous_responses_oldest_first(void **state)
{
    assert_int_equal(put_response("default", "resp_1", "completed", 1, NULL), 0);
    assert_int_equal(put_response("default", "resp_2", "completed", 2, "resp_1"), 0);
    assert_int_equal(put_response("default", "resp_3", "queued", 3, "resp_2"), 0);
    /* Written out of order: history goes by the chain and by position, not by write time. */
    assert_int_equal(append_items("default", "resp_3", STORE_ITEMS_INPUT, "in_3"), 0);
    assert_int_equal(append_items("default", "resp_2", STORE_ITEMS_OUTPUT, "out_2a,out_2b"), 0);
    assert_int_equal(append_items("default", "resp_1", STORE_ITEMS_OUTPUT, "out_1"), 0);
    assert_int_equal(append_items("default", "resp_2", STORE_ITEMS_INPUT, "in_2"), 0);
    assert_int_equal(append_items("default", "resp_1", STORE_ITEMS_INPUT, "in_1a,in_1b"), 0);

    const char *want[] = {"in_1a,in_1b,out_1", "in_1a,in_1b,out_1,in_2,out_2a,out_2b",
                          "in_1a,in_1b,out_1,in_2,out_2a,out_2b,in_3"};
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof(id), "resp_%d", i + 1);
        assert_int_equal(R(store_history_read(F->st, "default", id, got_cb, &G)), 0);
        json_t *h = got_json();
        char *ids = ids_of(h);
        assert_string_equal(ids, want[i]);
        free(ids);
        json_decref(h);
    }
    /* A turn that is gone ends the chain. */
    assert_int_equal(W(store_response_delete(F->st, "default", "resp_1", ack_cb, &A)), 0);
    assert_int_equal(R(store_history_read(F->st, "default", "resp_3", got_cb, &G)), 0);
    json_t *h = got_json();
    char *ids = ids_of(h);
    assert_string_equal(ids, "in_2,out_2a,out_2b,in_3");
    free(ids);
    json_decref(h);
    assert_int_equal(R(store_history_read(F->st, "default", "resp_1", got_cb, &G)), -ENOENT);
}

/* ---- conversations and idempotency keys ------------------------------------------------- */

static void test_conversations_put_get_update_delete(void **state)
{
    const char *meta = "{\"a\":\"b\"}";

    assert_int_equal(put_conversation("default", "conv_1", 1700000000000), 0);
    assert_int_equal(put_conversation("default", "conv_1", 1), -EEXIST);
    assert_int_equal(R(store_conversation_get(F->st, "default", "conv_1", got_cb, &G)), 0);
    assert_string_equal(
        G.value, "{\"id\":\"conv_1\",\"created_ms\":1700000000000,\"metadata\":{\"topic\":\"t\"}}");
    assert_int_equal(
        W(store_conversation_update(F->st, "default", "conv_1", meta, strlen(meta), ack_cb, &A)),
        0);
    assert_int_equal(R(store_conversation_get(F->st, "default", "conv_1", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, "\"metadata\":{\"a\":\"b\"}"));
    assert_int_equal(W(store_conversation_update(F->st, "default", "conv_1", "{", 1, ack_cb, &A)),
                     -EINVAL);
    assert_int_equal(
        W(store_conversation_update(F->st, "default", "conv_2", meta, strlen(meta), ack_cb, &A)),
        -ENOENT);
    assert_int_equal(
        W(store_conversation_put(F->st, "default", "conv_2", 1, "nope", 4, ack_cb, &A)), -EINVAL);

    assert_int_equal(append_items("default", "conv_1", STORE_ITEMS_CONVERSATION, "msg_1,msg_2"), 0);
    assert_int_equal(W(store_conversation_delete(F->st, "default", "conv_1", ack_cb, &A)), 0);
    assert_int_equal(R(store_conversation_get(F->st, "default", "conv_1", got_cb, &G)), -ENOENT);
    assert_sql("SELECT count(*) FROM items", "0");
    assert_int_equal(W(store_conversation_delete(F->st, "default", "conv_1", ack_cb, &A)), -ENOENT);
}

static void test_items_appended_to_a_conversation_touch_it(void **state)
{
    assert_int_equal(put_conversation("default", "conv_1", 5), 0);
    assert_sql("SELECT updated_ms FROM conversations", "5");
    int64_t before = clock_wall_ms();
    assert_int_equal(append_items("default", "conv_1", STORE_ITEMS_CONVERSATION, "msg_1"), 0);
    char *v = sql("SELECT updated_ms FROM conversations");
    assert_true(strtoll(v, NULL, 10) >= before);
    free(v);
}

static void test_an_idempotency_key_is_held_while_fresh_and_replaced_when_stale(void **state)
{
    assert_int_equal(
        W(store_idem_claim(F->st, "default", "key-1", "hash-a", "resp_1", 1000, 0, ack_cb, &A)), 0);
    /* Fresh (made at or after fresh_after_ms): held, whatever the body. */
    assert_int_equal(
        W(store_idem_claim(F->st, "default", "key-1", "hash-b", "resp_2", 2000, 1000, ack_cb, &A)),
        -EEXIST);
    assert_int_equal(R(store_idem_get(F->st, "default", "key-1", got_cb, &G)), 0);
    assert_string_equal(
        G.value, "{\"body_hash\":\"hash-a\",\"response_id\":\"resp_1\",\"created_ms\":1000}");
    /* Stale: the new claim replaces it. */
    assert_int_equal(
        W(store_idem_claim(F->st, "default", "key-1", "hash-b", "resp_2", 3000, 1001, ack_cb, &A)),
        0);
    assert_int_equal(R(store_idem_get(F->st, "default", "key-1", got_cb, &G)), 0);
    assert_string_equal(
        G.value, "{\"body_hash\":\"hash-b\",\"response_id\":\"resp_2\",\"created_ms\":3000}");
    assert_int_equal(R(store_idem_get(F->st, "default", "key-2", got_cb, &G)), -ENOENT);

    char *long_key = xcalloc(1, STORE_KEY_MAX + 2);
    memset(long_key, 'k', STORE_KEY_MAX + 1);
    assert_int_equal(store_idem_claim(F->st, "default", long_key, "h", "resp_1", 1, 0, ack_cb, &A),
                     -E2BIG);
    long_key[STORE_KEY_MAX] = '\0'; /* an Idempotency-Key may be longer than an id */
    assert_int_equal(
        W(store_idem_claim(F->st, "default", long_key, "h", "resp_1", 1, 0, ack_cb, &A)), 0);
    /* and reads back by the same key, which is what a second request with it does */
    assert_int_equal(R(store_idem_get(F->st, "default", long_key, got_cb, &G)), 0);
    free(long_key);
}

/* ---- tenants ---------------------------------------------------------------------------- */

/* Every read and write of tenant b misses tenant a's objects, and a's stay as they were. */
static void test_a_tenant_never_sees_or_changes_another_tenants_objects(void **state)
{
    const char *meta = "{}", *t = "response.created";

    assert_int_equal(put_response("a", "resp_1", "queued", 1, NULL), 0);
    assert_int_equal(put_response("a", "resp_2", "completed", 2, "resp_1"), 0);
    assert_int_equal(append_event("a", "resp_1", 0), 0);
    assert_int_equal(append_items("a", "resp_1", STORE_ITEMS_INPUT, "msg_1"), 0);
    assert_int_equal(put_conversation("a", "conv_1", 1), 0);
    assert_int_equal(append_items("a", "conv_1", STORE_ITEMS_CONVERSATION, "msg_c"), 0);
    assert_int_equal(W(store_idem_claim(F->st, "a", "key", "h", "resp_1", 1000, 0, ack_cb, &A)), 0);

    /* Reads. */
    assert_int_equal(R(store_response_get(F->st, "b", "resp_1", got_cb, &G)), -ENOENT);
    assert_int_equal(R(store_events_read(F->st, "b", "resp_1", -1, 10, got_cb, &G)), -ENOENT);
    assert_int_equal(R(store_history_read(F->st, "b", "resp_2", got_cb, &G)), -ENOENT);
    assert_int_equal(
        R(store_item_get(F->st, "b", "resp_1", STORE_ITEMS_INPUT, "msg_1", got_cb, &G)), -ENOENT);
    assert_int_equal(R(store_items_list(F->st, "b", "resp_1", STORE_ITEMS_INPUT, "msg_1", 10, false,
                                        got_cb, &G)),
                     -ENOENT);
    assert_int_equal(
        R(store_items_list(F->st, "b", "resp_1", STORE_ITEMS_INPUT, NULL, 10, false, got_cb, &G)),
        0);
    assert_string_equal(G.value, "{\"data\":[],\"has_more\":false}");
    assert_int_equal(R(store_responses_list(F->st, "b", NULL, NULL, 10, got_cb, &G)), 0);
    assert_string_equal(G.value, "{\"data\":[],\"has_more\":false}");
    assert_int_equal(R(store_responses_list(F->st, "b", NULL, "resp_1", 10, got_cb, &G)), -ENOENT);
    assert_int_equal(R(store_conversation_get(F->st, "b", "conv_1", got_cb, &G)), -ENOENT);
    assert_int_equal(R(store_idem_get(F->st, "b", "key", got_cb, &G)), -ENOENT);

    /* Writes. */
    assert_int_equal(
        W(store_response_update(F->st, "b", "resp_1", "failed", OBJ, strlen(OBJ), ack_cb, &A)),
        -ENOENT);
    assert_int_equal(W(store_response_delete(F->st, "b", "resp_1", ack_cb, &A)), -ENOENT);
    assert_int_equal(W(store_event_append(F->st, "b", "resp_1", 1, t, "{}", 2, ack_cb, &A)),
                     -ENOENT);
    assert_int_equal(append_items("b", "resp_1", STORE_ITEMS_INPUT, "msg_2"), -ENOENT);
    assert_int_equal(append_items("b", "conv_1", STORE_ITEMS_CONVERSATION, "msg_2"), -ENOENT);
    assert_int_equal(
        W(store_item_delete(F->st, "b", "resp_1", STORE_ITEMS_INPUT, "msg_1", ack_cb, &A)),
        -ENOENT);
    assert_int_equal(W(store_conversation_update(F->st, "b", "conv_1", meta, 2, ack_cb, &A)),
                     -ENOENT);
    assert_int_equal(W(store_conversation_delete(F->st, "b", "conv_1", ack_cb, &A)), -ENOENT);
    /* The same names are free in b: its objects are its own. */
    assert_int_equal(put_response("b", "resp_1", "in_progress", 3, NULL), 0);
    assert_int_equal(append_event("b", "resp_1", 0), 0);
    assert_int_equal(put_conversation("b", "conv_1", 1), 0);
    assert_int_equal(W(store_idem_claim(F->st, "b", "key", "h2", "resp_1", 2000, 1000, ack_cb, &A)),
                     0);
    assert_int_equal(W(store_response_delete(F->st, "b", "resp_1", ack_cb, &A)), 0);
    assert_int_equal(W(store_conversation_delete(F->st, "b", "conv_1", ack_cb, &A)), 0);

    /* a's objects are all as they were. */
    assert_int_equal(R(store_response_get(F->st, "a", "resp_1", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, "\"status\":\"queued\""));
    assert_int_equal(R(store_events_read(F->st, "a", "resp_1", -1, 10, got_cb, &G)), 0);
    assert_true(strncmp(G.value, "0 ", 2) == 0);
    expect_items_of("a", "resp_1", STORE_ITEMS_INPUT, "msg_1");
    expect_items_of("a", "conv_1", STORE_ITEMS_CONVERSATION, "msg_c");
    assert_int_equal(R(store_history_read(F->st, "a", "resp_2", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, "msg_1"));
    assert_int_equal(R(store_conversation_get(F->st, "a", "conv_1", got_cb, &G)), 0);
    assert_int_equal(R(store_idem_get(F->st, "a", "key", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, "\"body_hash\":\"h\""));
    assert_int_equal(R(store_responses_list(F->st, "a", NULL, NULL, 10, got_cb, &G)), 0);
    json_t *page = got_json();
    char *ids = ids_of(page);
    assert_string_equal(ids, "resp_2,resp_1");
    free(ids);
    json_decref(page);
}

/* ---- the sweep and the metrics ---------------------------------------------------------- */

static void test_the_sweep_takes_only_old_finished_objects_and_respects_its_limit(void **state)
{
    const char *status[] = {"completed",  "failed", "cancelled",
                            "incomplete", "queued", "in_progress"};
    char id[32];

    /* Old (created at 100): four finished ones with events and items, two unfinished. */
    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof(id), "resp_old%d", i);
        assert_int_equal(put_response(i % 2 == 0 ? "a" : "b", id, status[i], 100 + i, NULL), 0);
        assert_int_equal(append_event(i % 2 == 0 ? "a" : "b", id, 0), 0);
        assert_int_equal(append_items(i % 2 == 0 ? "a" : "b", id, STORE_ITEMS_OUTPUT, "msg_o"), 0);
    }
    assert_int_equal(put_response("a", "resp_new", "completed", 5000, NULL), 0);
    assert_int_equal(put_conversation("a", "conv_old", 100), 0);
    assert_int_equal(put_conversation("a", "conv_new", 5000), 0);
    assert_int_equal(W(store_idem_claim(F->st, "a", "k-old", "h", "resp_old0", 100, 0, ack_cb, &A)),
                     0);
    assert_int_equal(W(store_idem_claim(F->st, "b", "k-new", "h", "resp_new", 5000, 0, ack_cb, &A)),
                     0);

    /* A limit of 3 takes the three oldest finished ones, across tenants. */
    assert_int_equal(R(store_runs_sweep(F->st, 1000, 1000, 3, got_cb, &G)), 0);
    assert_string_equal(G.value, "{\"responses\":3,\"conversations\":1,\"idem\":1}");
    assert_column("id", "responses", "resp_new,resp_old3,resp_old4,resp_old5");
    assert_int_equal(R(store_runs_sweep(F->st, 1000, 1000, 3, got_cb, &G)), 0);
    assert_string_equal(G.value, "{\"responses\":1,\"conversations\":0,\"idem\":0}");
    assert_int_equal(R(store_runs_sweep(F->st, 1000, 1000, 3, got_cb, &G)), 0);
    assert_string_equal(G.value, "{\"responses\":0,\"conversations\":0,\"idem\":0}");

    /* What stays: the unfinished, the new, and nothing of what went. */
    assert_column("id", "responses", "resp_new,resp_old4,resp_old5");
    assert_column("response_id", "response_events", "resp_old4,resp_old5");
    assert_sql("SELECT count(*) FROM items", "2");
    assert_column("id", "conversations", "conv_new");
    assert_column("key", "idempotency", "k-new");
    assert_int_equal(store_runs_sweep(F->st, 1000, 1000, 0, got_cb, &G), -EINVAL);
}

static void test_commits_are_observed_in_a_histogram(void **state)
{
    struct metrics *m = metrics_new();
    struct buf out;

    close_store();
    F->st = open_store(m);
    assert_int_equal(put_response("default", "resp_m", "queued", 1, NULL), 0);
    assert_int_equal(append_event("default", "resp_m", 0), 0);
    buf_init(&out, 1 << 20);
    assert_int_equal(metrics_render(m, &out), 0);
    if (strstr(buf_cstr(&out), "arun_store_commit_seconds_count 2") == NULL)
        fail_msg("no commit observations in:\n%s", buf_cstr(&out));
    buf_cleanup(&out);
    close_store();
    metrics_free(m);
}

/* An admin's every-tenant listing: every tenant's rows, newest first, each with its tenant; the
 * status filter and the cursor (a response of any tenant) as in a tenant's own list. */
static void test_responses_list_all_crosses_tenants_for_an_admin(void **state)
{
    assert_int_equal(put_response("acme", "resp_1", "completed", 1000, NULL), 0);
    assert_int_equal(put_response("beta", "resp_2", "queued", 2000, NULL), 0);
    assert_int_equal(put_response("acme", "resp_3", "completed", 3000, NULL), 0);

    assert_int_equal(R(store_responses_list_all(F->st, NULL, NULL, 10, got_cb, &G)), 0);
    json_t *page = got_json();
    char *ids = ids_of(page);
    assert_string_equal(ids, "resp_3,resp_2,resp_1");
    free(ids);
    json_t *data = json_object_get(page, "data");
    assert_string_equal(json_string_value(json_object_get(json_array_get(data, 1), "tenant")),
                        "beta");
    json_decref(page);

    assert_int_equal(R(store_responses_list_all(F->st, "completed", "resp_3", 10, got_cb, &G)), 0);
    page = got_json();
    ids = ids_of(page);
    assert_string_equal(ids, "resp_1");
    free(ids);
    json_decref(page);
    assert_int_equal(R(store_responses_list_all(F->st, NULL, "resp_x", 10, got_cb, &G)), -ENOENT);
    assert_int_equal(store_responses_list_all(F->st, NULL, NULL, 0, got_cb, &G), -EINVAL);
    got_reset();
}

/* ---- tenancy: keys, usage, audit ------------------------------------------------------- */

#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void test_keys_are_stored_listed_revoked_and_touched(void **state)
{
    struct store_key a = {.id = "key_a",
                          .hash = HASH_A,
                          .tenant = "acme",
                          .role = "admin",
                          .name = "ops",
                          .created_ms = 1000};
    struct store_key b = {
        .id = "key_b", .hash = HASH_B, .tenant = "beta", .role = "member", .created_ms = 2000};

    assert_int_equal(W(store_key_put(F->st, &a, ack_cb, &A)), 0);
    assert_int_equal(W(store_key_put(F->st, &b, ack_cb, &A)), 0);
    /* The id and the hash are each unique. */
    struct store_key dup = b;
    dup.hash = HASH_A;
    dup.id = "key_c";
    assert_int_equal(W(store_key_put(F->st, &dup, ack_cb, &A)), -EEXIST);
    dup = a;
    dup.hash = HASH_B;
    assert_int_equal(W(store_key_put(F->st, &dup, ack_cb, &A)), -EEXIST);
    /* What is refused before it reaches the writer. */
    dup = b;
    dup.hash = "not-hex";
    assert_int_equal(store_key_put(F->st, &dup, ack_cb, &A), -EINVAL);
    dup = b;
    dup.role = "root";
    dup.id = "key_d";
    dup.hash = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    assert_int_equal(W(store_key_put(F->st, &dup, ack_cb, &A)), -EINVAL);

    assert_int_equal(W(store_key_revoke(F->st, "key_b", 5000, ack_cb, &A)), 0);
    assert_int_equal(W(store_key_revoke(F->st, "key_b", 6000, ack_cb, &A)), 0); /* keeps 5000 */
    assert_int_equal(W(store_key_revoke(F->st, "key_x", 6000, ack_cb, &A)), -ENOENT);
    assert_int_equal(W(store_key_touch(F->st, "key_a", 7000, ack_cb, &A)), 0);
    assert_int_equal(W(store_key_touch(F->st, "key_a", 6500, ack_cb, &A)), 0); /* never lowers */
    assert_int_equal(W(store_key_touch(F->st, "key_x", 7000, ack_cb, &A)), -ENOENT);

    assert_int_equal(R(store_keys_list(F->st, NULL, 10, got_cb, &G)), 0);
    assert_string_equal(
        G.value,
        "{\"data\":[{\"id\":\"key_a\",\"hash\":\"" HASH_A "\",\"tenant\":\"acme\",\"role\":"
        "\"admin\",\"name\":\"ops\",\"created_ms\":1000,\"last_used_ms\":7000,\"revoked_ms\":null},"
        "{\"id\":\"key_b\",\"hash\":\"" HASH_B "\",\"tenant\":\"beta\",\"role\":\"member\","
        "\"name\":null,\"created_ms\":2000,\"last_used_ms\":null,\"revoked_ms\":5000}],"
        "\"has_more\":false}");
    /* Pages by id. */
    assert_int_equal(R(store_keys_list(F->st, NULL, 1, got_cb, &G)), 0);
    json_t *page = got_json();
    char *ids = ids_of(page);
    assert_string_equal(ids, "key_a");
    free(ids);
    assert_true(json_is_true(json_object_get(page, "has_more")));
    json_decref(page);
    assert_int_equal(R(store_keys_list(F->st, "key_a", 1, got_cb, &G)), 0);
    page = got_json();
    ids = ids_of(page);
    assert_string_equal(ids, "key_b");
    free(ids);
    assert_true(json_is_false(json_object_get(page, "has_more")));
    json_decref(page);
    assert_int_equal(store_keys_list(F->st, NULL, 0, got_cb, &G), -EINVAL);
    got_reset();
}

static void test_usage_counters_add_up_per_tenant_and_day(void **state)
{
    assert_int_equal(W(store_usage_add(F->st, "acme", "2026-12-07", 100, 1, ack_cb, &A)), 0);
    assert_int_equal(W(store_usage_add(F->st, "acme", "2026-12-07", 50, 2, ack_cb, &A)), 0);
    assert_int_equal(W(store_usage_add(F->st, "beta", "2026-12-07", 7, 1, ack_cb, &A)), 0);
    assert_int_equal(W(store_usage_add(F->st, "acme", "2026-12-08", 1, 1, ack_cb, &A)), 0);
    assert_int_equal(store_usage_add(F->st, "acme", "2026-12-7", 1, 1, ack_cb, &A), -EINVAL);
    assert_int_equal(store_usage_add(F->st, "acme", "2026-12-07", -1, 1, ack_cb, &A), -EINVAL);

    assert_int_equal(R(store_usage_day(F->st, "2026-12-07", NULL, 10, got_cb, &G)), 0);
    assert_string_equal(G.value, "{\"data\":[{\"tenant\":\"acme\",\"output_tokens\":150,"
                                 "\"requests\":3},{\"tenant\":\"beta\",\"output_tokens\":7,"
                                 "\"requests\":1}],\"has_more\":false}");
    assert_int_equal(R(store_usage_day(F->st, "2026-12-07", "acme", 10, got_cb, &G)), 0);
    assert_string_equal(G.value, "{\"data\":[{\"tenant\":\"beta\",\"output_tokens\":7,"
                                 "\"requests\":1}],\"has_more\":false}");
    assert_int_equal(R(store_usage_day(F->st, "2026-12-09", NULL, 10, got_cb, &G)), 0);
    assert_string_equal(G.value, "{\"data\":[],\"has_more\":false}");
    got_reset();
}

static void test_audit_events_are_numbered_and_read_oldest_first(void **state)
{
    struct store_audit e = {.ts_ms = 1000,
                            .actor = "key_a",
                            .tenant = "acme",
                            .action = "engine.start",
                            .target = "qwen",
                            .outcome = "ok",
                            .remote = "127.0.0.1:5000",
                            .detail = "{\"request_id\":\"r1\"}",
                            .detail_len = 20};
    assert_int_equal(W(store_audit_append(F->st, &e, ack_cb, &A)), 0);
    struct store_audit f = {
        .ts_ms = 2000, .actor = "anonymous", .action = "auth.failure", .outcome = "denied"};
    assert_int_equal(W(store_audit_append(F->st, &f, ack_cb, &A)), 0);
    f.ts_ms = 3000;
    f.detail = "[1]";
    f.detail_len = 3;
    assert_int_equal(W(store_audit_append(F->st, &f, ack_cb, &A)), -EINVAL); /* not an object */
    f.detail = "{";
    f.detail_len = 1;
    assert_int_equal(W(store_audit_append(F->st, &f, ack_cb, &A)), -EINVAL);
    f.detail = NULL;
    f.action = NULL;
    assert_int_equal(store_audit_append(F->st, &f, ack_cb, &A), -EINVAL);

    assert_int_equal(R(store_audit_list(F->st, 0, 0, 10, got_cb, &G)), 0);
    assert_string_equal(
        G.value,
        "{\"data\":[{\"seq\":1,\"ts_ms\":1000,\"actor\":\"key_a\",\"tenant\":\"acme\",\"action\":"
        "\"engine.start\",\"target\":\"qwen\",\"outcome\":\"ok\",\"remote\":\"127.0.0.1:5000\","
        "\"detail\":{\"request_id\":\"r1\"}},{\"seq\":2,\"ts_ms\":2000,\"actor\":\"anonymous\","
        "\"tenant\":null,\"action\":\"auth.failure\",\"target\":null,\"outcome\":\"denied\","
        "\"remote\":null,\"detail\":{}}],\"has_more\":false}");
    /* since filters by time, after pages by number. */
    assert_int_equal(R(store_audit_list(F->st, 1500, 0, 10, got_cb, &G)), 0);
    json_t *page = got_json();
    assert_int_equal(json_array_size(json_object_get(page, "data")), 1);
    json_decref(page);
    assert_int_equal(R(store_audit_list(F->st, 0, 0, 1, got_cb, &G)), 0);
    page = got_json();
    assert_true(json_is_true(json_object_get(page, "has_more")));
    json_decref(page);
    assert_int_equal(R(store_audit_list(F->st, 0, 1, 10, got_cb, &G)), 0);
    page = got_json();
    assert_int_equal(json_integer_value(
                         json_object_get(json_array_get(json_object_get(page, "data"), 0), "seq")),
                     2);
    json_decref(page);
    got_reset();
}

/* ---- cluster: leases, claims, fencing, nodes ------------------------------------------- */

/* The node of row i of a claim's answer (NULL for JSON null). */
static const char *row_node(json_t *rows, size_t i)
{
    return json_string_value(json_object_get(json_array_get(rows, i), "node"));
}

static void test_a_new_run_is_this_nodes_and_leased_from_its_creation(void **state)
{
    assert_int_equal(put_response("default", "resp_1", "queued", 5000, NULL), 0);
    assert_int_equal(R(store_response_get(F->st, "default", "resp_1", got_cb, &G)), 0);
    json_t *j = got_json();
    assert_string_equal(json_string_value(json_object_get(j, "node")), ME);
    json_decref(j);
    assert_sql("SELECT lease_until_ms FROM responses WHERE id = 'resp_1'", "6000");
    /* A row from before leases has no owner: null, not a missing key. */
    exec_sql("UPDATE responses SET node = NULL WHERE id = 'resp_1'");
    assert_int_equal(R(store_response_get(F->st, "default", "resp_1", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, "\"node\":null}"));
}

/* Without restart: ownerless runs and those whose lease ran out (this node's own too); another
 * node's live run stays its own. The answer shows each row's owner before the claim. */
static void test_a_claim_takes_own_ownerless_and_expired_runs_oldest_first(void **state)
{
    assert_int_equal(put_response("a", "resp_own", "in_progress", 100, NULL), 0);
    assert_int_equal(put_response("a", "resp_live", "queued", 200, NULL), 0);
    assert_int_equal(put_response("b", "resp_dead", "in_progress", 300, NULL), 0);
    assert_int_equal(put_response("b", "resp_none", "queued", 400, NULL), 0);
    assert_int_equal(put_response("b", "resp_done", "completed", 50, NULL), 0);
    exec_sql("UPDATE responses SET node = 'other', lease_until_ms = 2500 WHERE id = 'resp_live';"
             "UPDATE responses SET node = 'other', lease_until_ms = 1999 WHERE id = 'resp_dead';"
             "UPDATE responses SET node = NULL, lease_until_ms = 0 WHERE id = 'resp_none';"
             "UPDATE responses SET node = 'other', lease_until_ms = 0 WHERE id = 'resp_done'");

    assert_int_equal(R(store_runs_claim(F->st, 2000, false, 100, got_cb, &G)), 0);
    json_t *rows = got_json();
    char *ids = ids_of(rows);
    assert_string_equal(ids, "resp_own,resp_dead,resp_none");
    assert_string_equal(row_node(rows, 0), ME);
    assert_string_equal(row_node(rows, 1), "other");
    assert_null(row_node(rows, 2));
    /* The rows are recovery's: tenant, request, last_seq. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 1), "tenant")), "b");
    assert_non_null(json_object_get(json_array_get(rows, 1), "request"));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 1), "last_seq")), -1);
    free(ids);
    json_decref(rows);
    assert_sql("SELECT group_concat(id || ':' || node || ':' || lease_until_ms, ' ') FROM "
               "(SELECT * FROM responses ORDER BY created_ms)",
               "resp_done:other:0 resp_own:node-me:3000 resp_live:other:2500 "
               "resp_dead:node-me:3000 resp_none:node-me:3000");

    /* What was claimed is leased: the next claim never answers it again (recovery pages on
     * that). Once the live lease runs out, it is claimable too; before, nothing is. */
    assert_int_equal(R(store_runs_claim(F->st, 2500, false, 100, got_cb, &G)), 0);
    assert_string_equal(G.value, "[]");
    assert_int_equal(R(store_runs_claim(F->st, 2501, false, 100, got_cb, &G)), 0);
    rows = got_json();
    ids = ids_of(rows);
    assert_string_equal(ids, "resp_live");
    free(ids);
    json_decref(rows);
    /* At most limit, oldest first. */
    assert_int_equal(R(store_runs_claim(F->st, 9000, false, 1, got_cb, &G)), 0);
    rows = got_json();
    ids = ids_of(rows);
    assert_string_equal(ids, "resp_own");
    free(ids);
    json_decref(rows);
}

/* With restart (SQLite at start: the data_dir's lock says nobody else runs), every unfinished
 * run, whoever holds it: the earlier leases are given up first. */
static void test_a_claim_at_restart_takes_every_unfinished_run(void **state)
{
    assert_int_equal(put_response("a", "resp_1", "queued", 100, NULL), 0);
    assert_int_equal(put_response("a", "resp_2", "in_progress", 200, NULL), 0);
    assert_int_equal(put_response("a", "resp_3", "failed", 300, NULL), 0);
    exec_sql("UPDATE responses SET node = 'other', lease_until_ms = 999999 WHERE id = 'resp_2'");

    assert_int_equal(R(store_runs_claim(F->st, 150, true, 100, got_cb, &G)), 0);
    json_t *rows = got_json();
    char *ids = ids_of(rows);
    assert_string_equal(ids, "resp_1,resp_2");
    assert_string_equal(row_node(rows, 1), "other");
    free(ids);
    json_decref(rows);
    assert_sql("SELECT node FROM responses WHERE id = 'resp_2'", ME);

    /* Nothing to claim: an empty array. */
    exec_sql("UPDATE responses SET status = 'completed'");
    assert_int_equal(R(store_runs_claim(F->st, 150, true, 100, got_cb, &G)), 0);
    assert_string_equal(G.value, "[]");
}

static void test_leases_renew_only_this_nodes_unfinished_runs(void **state)
{
    assert_int_equal(put_response("a", "resp_1", "queued", 100, NULL), 0);
    assert_int_equal(put_response("b", "resp_2", "in_progress", 100, NULL), 0);
    assert_int_equal(put_response("a", "resp_3", "completed", 100, NULL), 0);
    assert_int_equal(put_response("a", "resp_4", "queued", 100, NULL), 0);
    exec_sql("UPDATE responses SET node = 'other' WHERE id = 'resp_4'");

    assert_int_equal(R(store_leases_renew(F->st, 7000, got_cb, &G)), 0);
    assert_string_equal(G.value, "{\"renewed\":2}");
    assert_sql("SELECT group_concat(id || ':' || lease_until_ms, ' ') FROM (SELECT * FROM "
               "responses ORDER BY id)",
               "resp_1:8000 resp_2:8000 resp_3:1100 resp_4:1100");
}

/* Once another node claimed a run, this node's writes to it fail -ESTALE (it stops the run);
 * an unknown run is still -ENOENT, and a run nobody owns takes anyone's writes. */
static void test_writes_to_a_run_another_node_claimed_are_fenced(void **state)
{
    const char *t = "response.output_text.delta";

    assert_int_equal(put_response("default", "resp_f", "in_progress", 1, NULL), 0);
    assert_int_equal(append_event("default", "resp_f", 0), 0);
    exec_sql("UPDATE responses SET node = 'other' WHERE id = 'resp_f'");

    assert_int_equal(append_event("default", "resp_f", 1), -ESTALE);
    assert_int_equal(W(store_response_update(F->st, "default", "resp_f", "failed", OBJ, strlen(OBJ),
                                             ack_cb, &A)),
                     -ESTALE);
    assert_sql("SELECT count(*) || status FROM response_events, responses WHERE "
               "responses.id = 'resp_f'",
               "1in_progress");
    assert_int_equal(
        W(store_event_append(F->st, "default", "resp_x", 0, t, "{\"x\":1}", 7, ack_cb, &A)),
        -ENOENT);
    assert_int_equal(W(store_response_update(F->st, "default", "resp_x", "failed", OBJ, strlen(OBJ),
                                             ack_cb, &A)),
                     -ENOENT);

    exec_sql("UPDATE responses SET node = NULL WHERE id = 'resp_f'");
    assert_int_equal(append_event("default", "resp_f", 1), 0);
    assert_int_equal(W(store_response_update(F->st, "default", "resp_f", "failed", OBJ, strlen(OBJ),
                                             ack_cb, &A)),
                     0);
}

static int put_node(const char *id, const char *state, int64_t started_ms, const char *info,
                    int64_t now_ms)
{
    struct store_node n = {.id = id,
                           .address = "http://10.0.0.5:8080",
                           .state = state,
                           .started_ms = started_ms,
                           .info = info,
                           .info_len = strlen(info)};
    return W(store_node_put(F->st, &n, now_ms, ack_cb, &A));
}

static void test_nodes_are_upserted_listed_by_id_and_forgotten(void **state)
{
    assert_int_equal(put_node("b", "up", 10, "{\"engines\":[]}", 100), 0);
    assert_int_equal(put_node("a", "up", 20, "{\"version\":\"1\"}", 200), 0);
    assert_int_equal(R(store_nodes_list(F->st, 300, got_cb, &G)), 0);
    assert_string_equal(G.value,
                        "{\"now_ms\":300,\"data\":["
                        "{\"id\":\"a\",\"address\":\"http://10.0.0.5:8080\",\"state\":\"up\","
                        "\"started_ms\":20,\"seen_ms\":200,\"info\":{\"version\":\"1\"}},"
                        "{\"id\":\"b\",\"address\":\"http://10.0.0.5:8080\",\"state\":\"up\","
                        "\"started_ms\":10,\"seen_ms\":100,\"info\":{\"engines\":[]}}]}");

    /* A heartbeat replaces the row; a clean stop says left. */
    assert_int_equal(put_node("b", "left", 10, "{}", 400), 0);
    assert_sql("SELECT state || ':' || seen_ms || ':' || info FROM nodes WHERE id = 'b'",
               "left:400:{}");
    /* Bad rows are refused alone. */
    assert_int_equal(put_node("c", "up", 1, "[1]", 1), -EINVAL);
    assert_int_equal(put_node("c", "up", 1, "{", 1), -EINVAL);
    assert_int_equal(put_node("c", "gone", 1, "{}", 1), -EINVAL);

    /* Forget takes the rows unseen since before_ms: a seems down that long (seen 200), b left. */
    assert_int_equal(W(store_nodes_forget(F->st, 300, ack_cb, &A)), 0);
    assert_sql("SELECT group_concat(id) FROM nodes", "b");
    assert_int_equal(W(store_nodes_forget(F->st, 401, ack_cb, &A)), 0);
    assert_int_equal(R(store_nodes_list(F->st, 500, got_cb, &G)), 0);
    assert_string_equal(G.value, "{\"now_ms\":500,\"data\":[]}");
}

/* ---- PostgreSQL only: fencing, leases, the same texts as SQLite ------------------------- */

static const char EV_TYPE[] = "response.output_text.delta";

/* store_debug_sql on another store than F's: text must answer a value (RETURNING). */
static void sql_on(struct store *st, const char *text)
{
    assert_int_equal(R(store_debug_sql(st, text, got_cb, &G)), 0);
    assert_non_null(G.value);
}

/* A run is its owner's: once another node owns it (its lease ran out and that node claimed it),
 * the old owner's event appends and row updates are refused with -ESTALE, the new owner's go
 * in, and an unknown run is still -ENOENT. Two stores with their own node ids share the
 * database, as two arun nodes do. */
static void test_a_run_another_node_owns_refuses_the_old_owners_writes(void **state)
{
    char *dir_b = xasprintf("%s/data-b", F->tmp);
    const char *done = "{\"id\":\"resp_f\",\"status\":\"completed\"}";

    close_store();
    F->st = open_store_as(F->data_dir, "node-a", NULL);
    struct store *b = F->other = open_store_as(dir_b, "node-b", NULL);

    assert_int_equal(put_response("default", "resp_f", "in_progress", 1, NULL), 0);
    assert_int_equal(append_event("default", "resp_f", 0), 0);
    assert_int_equal(R(store_response_get(F->st, "default", "resp_f", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, ",\"last_seq\":0,\"node\":\"node-a\"}"));
    /* node-b may not write into node-a's run. */
    assert_int_equal(W(store_event_append(b, "default", "resp_f", 1, EV_TYPE, "{}", 2, ack_cb, &A)),
                     -ESTALE);
    assert_int_equal(
        W(store_response_update(b, "default", "resp_f", "failed", done, strlen(done), ack_cb, &A)),
        -ESTALE);

    /* node-b claims it, as store_runs_claim does with a run whose lease ran out. */
    sql_on(b, "UPDATE responses SET node = 'node-b' WHERE id = 'resp_f' RETURNING id");
    assert_int_equal(
        W(store_event_append(F->st, "default", "resp_f", 1, EV_TYPE, "{\"old\":1}", 9, ack_cb, &A)),
        -ESTALE);
    assert_int_equal(W(store_response_update(F->st, "default", "resp_f", "failed", done,
                                             strlen(done), ack_cb, &A)),
                     -ESTALE);
    assert_int_equal(
        W(store_event_append(b, "default", "resp_f", 1, EV_TYPE, "{\"new\":1}", 9, ack_cb, &A)), 0);
    assert_int_equal(W(store_response_update(b, "default", "resp_f", "completed", done,
                                             strlen(done), ack_cb, &A)),
                     0);
    /* What a reader sees is the new owner's. */
    assert_int_equal(R(store_events_read(F->st, "default", "resp_f", 0, 10, got_cb, &G)), 0);
    assert_string_equal(G.value, "1 response.output_text.delta {\"new\":1}\n");
    assert_int_equal(R(store_response_get(F->st, "default", "resp_f", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, "\"status\":\"completed\""));
    assert_non_null(strstr(G.value, ",\"last_seq\":1,\"node\":\"node-b\"}"));

    /* No such run is still -ENOENT, for the owner as for anyone. */
    assert_int_equal(
        W(store_event_append(F->st, "default", "resp_x", 0, EV_TYPE, "{}", 2, ack_cb, &A)),
        -ENOENT);
    assert_int_equal(W(store_response_update(F->st, "default", "resp_x", "failed", done,
                                             strlen(done), ack_cb, &A)),
                     -ENOENT);
    /* A row without an owner (written before leases existed) takes any node's writes. */
    sql_on(b, "UPDATE responses SET node = NULL WHERE id = 'resp_f' RETURNING id");
    assert_int_equal(append_event("default", "resp_f", 2), 0);
    assert_int_equal(R(store_response_get(F->st, "default", "resp_f", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, ",\"last_seq\":2,\"node\":null}"));

    free(dir_b); /* teardown closes b */
}

/* A new run is this node's, with a lease of lease_ms on the database's clock. */
static void test_a_new_run_gets_this_node_and_a_lease_on_the_database_clock(void **state)
{
    struct store_options opts = {
        .url = F->url, .data_dir = F->data_dir, .node_id = "node-l", .lease_ms = 60000};
    struct buf err;

    close_store();
    buf_init(&err, 4096);
    assert_int_equal(store_open(&F->loop, &opts, &F->st, &err), 0);
    buf_cleanup(&err);
    assert_int_equal(put_response("default", "resp_l", "queued", 1, NULL), 0);
    assert_sql("SELECT node FROM responses WHERE id = 'resp_l'", "node-l");
    /* Between 50 and 60 s ahead of the database's clock: set at the insert, minus the time
     * since (generous for a loaded machine), never from this machine's clock. */
    assert_sql("SELECT lease_until_ms - (extract(epoch from clock_timestamp()) * 1000)::bigint "
               "BETWEEN 50000 AND 60000 FROM responses WHERE id = 'resp_l'",
               "t");
}

/* What a listening node heard: notices of resp_n, and of anything else. */
struct heard {
    int run;   /* STORE_NOTICE_EVENTS of (default, resp_n) */
    int other; /* any other notice but a RESYNC */
    bool end;  /* the notice of resp_end, written last */
};

static void heard_cb(enum store_notice kind, const char *tenant, const char *id, void *arg)
{
    struct heard *h = arg;

    if (kind == STORE_NOTICE_RESYNC)
        return; /* the listener's start: nothing missed yet */
    if (kind == STORE_NOTICE_EVENTS && strcmp(tenant, "default") == 0 && strcmp(id, "resp_n") == 0)
        h->run++;
    else if (kind == STORE_NOTICE_EVENTS && strcmp(id, "resp_end") == 0)
        h->end = true;
    else
        h->other++;
}

static bool listening(void *st)
{
    return store_listening(st);
}

static bool heard_end(void *arg)
{
    return ((struct heard *)arg)->end;
}

static bool heard_one(void *arg)
{
    return ((struct heard *)arg)->run > 0;
}

/* Writes resp_end and waits until its notice came: notices come in commit order, so every
 * earlier one has come too. */
static void drain_notices(struct heard *h)
{
    h->end = false;
    assert_int_equal(put_response("default", "resp_end", "completed", 1, NULL), 0);
    assert_true(testloop_run_until(&F->loop, heard_end, h, DEADLINE_MS));
    h->end = false; /* the delete's notice may come while W() waits for its commit */
    assert_int_equal(W(store_response_delete(F->st, "default", "resp_end", ack_cb, &A)), 0);
    assert_true(testloop_run_until(&F->loop, heard_end, h, DEADLINE_MS));
}

/* Another node hears of every write to a run's row or events, at commit, and of a batch of many
 * events of one run once, not once per event. */
static void test_other_nodes_hear_of_a_runs_writes_once_per_batch(void **state)
{
    char *dir_b = xasprintf("%s/data-b", F->tmp);
    struct store *b = F->other = open_store_as(dir_b, "node-b", NULL);
    struct heard h = {0};
    struct store_stats before, after;
    char data[64];

    assert_int_equal(store_listen(b, heard_cb, &h), 0);
    assert_true(testloop_run_until(&F->loop, listening, b, DEADLINE_MS));
    assert_int_equal(put_response("default", "resp_n", "in_progress", 1, NULL), 0);
    assert_true(testloop_run_until(&F->loop, heard_one, &h, DEADLINE_MS));

    /* 200 events in one loop turn: they share a few batches, each heard once. */
    store_stats(F->st, &before);
    h.run = 0;
    A = (struct acks){.want = 200};
    for (int i = 0; i < 200; i++) {
        int n = snprintf(data, sizeof(data), "{\"delta\":\"t%d\"}", i);
        assert_int_equal(
            store_event_append(F->st, "default", "resp_n", i, EV_TYPE, data, (size_t)n, ack_cb, &A),
            0);
    }
    assert_true(testloop_run_until(&F->loop, acks_reached, &A, DEADLINE_MS));
    assert_int_equal(A.last, 0);
    store_stats(F->st, &after);
    drain_notices(&h);
    if (h.run < 1 || (uint64_t)h.run > after.commits - before.commits)
        fail_msg("heard resp_n %d times for 200 events in %llu commits", h.run,
                 (unsigned long long)(after.commits - before.commits));

    /* The row's update and delete are heard too. */
    h.run = 0;
    assert_int_equal(W(store_response_update(F->st, "default", "resp_n", "completed", OBJ,
                                             strlen(OBJ), ack_cb, &A)),
                     0);
    assert_int_equal(W(store_response_delete(F->st, "default", "resp_n", ack_cb, &A)), 0);
    drain_notices(&h);
    assert_int_equal(h.run, 2);
    /* A write that failed changed nothing: nothing to hear. */
    h.run = 0;
    assert_int_equal(
        W(store_event_append(F->st, "default", "resp_n", 0, EV_TYPE, "{}", 2, ack_cb, &A)),
        -ENOENT);
    drain_notices(&h);
    assert_int_equal(h.run, 0);
    assert_int_equal(h.other, 0);

    free(dir_b); /* teardown closes b */
}

/* The SQLite store beside F's PostgreSQL one in the same-texts test. */
static struct store *SQ;

/* Runs one write on both backends: each must answer want. */
#define W2(want, call)                                                                             \
    do {                                                                                           \
        struct store *st_[2] = {F->st, SQ};                                                        \
        for (int i_ = 0; i_ < 2; i_++) {                                                           \
            struct store *ST = st_[i_];                                                            \
            int got_ = W(call);                                                                    \
            if (got_ != (want))                                                                    \
                fail_msg("%s on %s: got %d, want %d", #call, i_ == 0 ? "postgres" : "sqlite",      \
                         got_, want);                                                              \
        }                                                                                          \
    } while (0)

/* Removes every ,"node":"local" from text: SQLite's rows carry "node" once its backend writes
 * it (the cluster work); until then the two texts differ by exactly that. */
static void strip_local_node(char *text)
{
    static const char node[] = ",\"node\":\"local\"";
    char *at;

    while (text != NULL && (at = strstr(text, node)) != NULL)
        memmove(at, at + strlen(node), strlen(at + strlen(node)) + 1);
}

/* Runs one read on both backends: the same status and, byte for byte, the same text. */
#define R2(call)                                                                                   \
    do {                                                                                           \
        struct store *ST = F->st;                                                                  \
        int pg_rc_ = R(call);                                                                      \
        char *pg_ = G.value != NULL ? xstrdup(G.value) : NULL;                                     \
        ST = SQ;                                                                                   \
        int sq_rc_ = R(call);                                                                      \
        strip_local_node(pg_);                                                                     \
        strip_local_node(G.value);                                                                 \
        if (pg_rc_ != sq_rc_ || (pg_ == NULL) != (G.value == NULL) ||                              \
            (pg_ != NULL && strcmp(pg_, G.value) != 0))                                            \
            fail_msg("%s:\n postgres %d %s\n sqlite   %d %s", #call, pg_rc_,                       \
                     pg_ != NULL ? pg_ : "NULL", sq_rc_, G.value != NULL ? G.value : "NULL");      \
        free(pg_);                                                                                 \
    } while (0)

static int put_response_on(struct store *st, const char *tenant, const char *id, const char *status,
                           int64_t created_ms, const char *conv, const char *prev, bool background)
{
    const char *req = "{\"model\":\"m\",  \"input\":[1, 2]}";
    struct store_response r = {
        .tenant = tenant,
        .id = id,
        .status = status,
        .model = "m \"q\" \xc3\xa9\t\\",
        .conversation_id = conv,
        .previous_response_id = prev,
        .created_ms = created_ms,
        .background = background,
        .request = req,
        .request_len = strlen(req),
        .object = OBJ,
        .object_len = strlen(OBJ),
    };
    return store_response_put(st, &r, ack_cb, &A);
}

static int items_on(struct store *st, const char *tenant, const char *owner,
                    enum store_items_kind kind, const char *items)
{
    return store_items_append(st, tenant, owner, kind, items, strlen(items), ack_cb, &A);
}

/* Every runs read answers on PostgreSQL exactly the text SQLite answers (the reference), for
 * the same writes: keys, their order, numbers, booleans, nulls, escapes, pages, errors. */
static void test_every_read_answers_the_same_text_as_sqlite(void **state)
{
    char *dir = xasprintf("%s/sqlite", F->tmp);
    struct store_options opts = {.data_dir = dir};
    struct buf err;
    const char *upd = "{\"id\":\"resp_2\",\"status\":\"completed\",\"n\":1.50}";

    buf_init(&err, 4096);
    assert_int_equal(store_open(&F->loop, &opts, &SQ, &err), 0);
    buf_cleanup(&err);

    W2(0, put_response_on(ST, "acme", "resp_1", "in_progress", 1000, "conv_1", NULL, true));
    W2(0, put_response_on(ST, "acme", "resp_2", "queued", 1000, NULL, "resp_1", false));
    W2(0, put_response_on(ST, "beta", "resp_3", "completed", 2000, NULL, NULL, false));
    W2(-EEXIST, put_response_on(ST, "acme", "resp_1", "queued", 1, NULL, NULL, false));
    for (int64_t seq = 0; seq < 3; seq++)
        W2(0, store_event_append(ST, "acme", "resp_1", seq, EV_TYPE, "{\"d\":\"\\u00e9 \\n\"}", 17,
                                 ack_cb, &A));
    W2(-EEXIST, store_event_append(ST, "acme", "resp_1", 0, EV_TYPE, "{}", 2, ack_cb, &A));
    W2(-EINVAL, store_event_append(ST, "acme", "resp_1", 5, EV_TYPE, "{", 1, ack_cb, &A));
    W2(-ENOENT, store_event_append(ST, "beta", "resp_1", 5, EV_TYPE, "{}", 2, ack_cb, &A));
    W2(0, store_response_update(ST, "acme", "resp_2", "completed", upd, strlen(upd), ack_cb, &A));
    W2(0, items_on(ST, "acme", "resp_1", STORE_ITEMS_INPUT,
                   "[{\"id\":\"in_1\",\"type\":\"message\",\"content\":\"a\"},{\"id\":\"in_2\"}]"));
    W2(0, items_on(ST, "acme", "resp_1", STORE_ITEMS_OUTPUT, "[{\"id\":\"out_1\",\"n\":[1,2]}]"));
    W2(0, items_on(ST, "acme", "resp_2", STORE_ITEMS_INPUT, "[{\"id\":\"in_3\"}]"));
    W2(-EINVAL, items_on(ST, "acme", "resp_2", STORE_ITEMS_INPUT, "{\"id\":\"x\"}"));
    W2(-EEXIST, items_on(ST, "acme", "resp_2", STORE_ITEMS_INPUT, "[{\"id\":\"in_3\"}]"));
    W2(-ENOENT, items_on(ST, "acme", "resp_9", STORE_ITEMS_INPUT, "[{\"id\":\"in_3\"}]"));
    W2(0, store_conversation_put(ST, "acme", "conv_1", 500, "{\"t\":true}", 10, ack_cb, &A));
    W2(0, items_on(ST, "acme", "conv_1", STORE_ITEMS_CONVERSATION, "[{\"id\":\"in_1\"}]"));
    W2(0, store_idem_claim(ST, "acme", "k \"1\"", "h", "resp_1", 1000, 0, ack_cb, &A));
    W2(-EEXIST, store_idem_claim(ST, "acme", "k \"1\"", "h2", "resp_2", 1001, 1000, ack_cb, &A));

    R2(store_response_get(ST, "acme", "resp_1", got_cb, &G));
    R2(store_response_get(ST, "acme", "resp_2", got_cb, &G));
    R2(store_response_get(ST, "acme", "resp_3", got_cb, &G));
    R2(store_responses_list(ST, "acme", NULL, NULL, 10, got_cb, &G));
    R2(store_responses_list(ST, "acme", NULL, NULL, 1, got_cb, &G));
    R2(store_responses_list(ST, "acme", NULL, "resp_2", 10, got_cb, &G));
    R2(store_responses_list(ST, "acme", "completed", NULL, 10, got_cb, &G));
    R2(store_responses_list(ST, "acme", NULL, "resp_3", 10, got_cb, &G));
    R2(store_responses_list_all(ST, NULL, NULL, 10, got_cb, &G));
    R2(store_responses_list_all(ST, "completed", "resp_3", 10, got_cb, &G));
    R2(store_runs_unfinished(ST, got_cb, &G));
    R2(store_events_read(ST, "acme", "resp_1", -1, 10, got_cb, &G));
    R2(store_events_read(ST, "acme", "resp_1", 0, 1, got_cb, &G));
    R2(store_events_read(ST, "acme", "resp_2", -1, 10, got_cb, &G));
    R2(store_events_read(ST, "acme", "resp_9", -1, 10, got_cb, &G));
    R2(store_items_list(ST, "acme", "resp_1", STORE_ITEMS_INPUT, NULL, 10, false, got_cb, &G));
    R2(store_items_list(ST, "acme", "resp_1", STORE_ITEMS_INPUT, NULL, 1, true, got_cb, &G));
    R2(store_items_list(ST, "acme", "resp_1", STORE_ITEMS_INPUT, "in_1", 10, false, got_cb, &G));
    R2(store_items_list(ST, "acme", "resp_1", STORE_ITEMS_INPUT, "out_1", 10, false, got_cb, &G));
    R2(store_item_get(ST, "acme", "resp_1", STORE_ITEMS_OUTPUT, "out_1", got_cb, &G));
    R2(store_item_find(ST, "acme", "in_3", got_cb, &G));
    R2(store_item_find(ST, "beta", "in_3", got_cb, &G));
    R2(store_history_read(ST, "acme", "resp_2", got_cb, &G));
    R2(store_history_read(ST, "beta", "resp_3", got_cb, &G));
    R2(store_history_read(ST, "beta", "resp_2", got_cb, &G));
    R2(store_conversation_get(ST, "acme", "conv_1", got_cb, &G));
    R2(store_idem_get(ST, "acme", "k \"1\"", got_cb, &G));
    R2(store_runs_sweep(ST, 1500, 2000, 10, got_cb, &G));
    R2(store_responses_list_all(ST, NULL, NULL, 10, got_cb, &G));

    /* The row ends with the owner after last_seq. */
    assert_int_equal(R(store_response_get(F->st, "acme", "resp_1", got_cb, &G)), 0);
    assert_non_null(strstr(G.value, ",\"last_seq\":2,\"node\":\"local\"}"));

    store_close(SQ);
    SQ = NULL;
    free(dir);
}

/* The durable runs' tests: on SQLite, then on PostgreSQL. */
#define RUNS_TESTS(X)                                                                              \
    X(test_a_response_reads_back_as_written)                                                       \
    X(test_responses_list_all_crosses_tenants_for_an_admin)                                        \
    X(test_a_response_update_sets_status_and_object_and_keeps_the_request)                         \
    X(test_invalid_responses_are_refused)                                                          \
    X(test_responses_list_newest_first_in_pages)                                                   \
    X(test_delete_takes_events_and_own_items_and_leaves_conversation_items)                        \
    X(test_unfinished_runs_come_in_creation_order_across_tenants)                                  \
    X(test_events_read_back_as_lines_after_a_sequence_number)                                      \
    X(test_bad_events_are_refused_and_events_are_never_rewritten)                                  \
    X(test_a_read_submitted_after_a_write_callback_sees_the_write)                                 \
    X(test_items_append_in_order_and_list_in_pages)                                                \
    X(test_bad_items_are_refused_whole)                                                            \
    X(test_item_find_looks_in_every_list_of_the_tenant_only)                                       \
    X(test_history_walks_previous_responses_oldest_first)                                          \
    X(test_conversations_put_get_update_delete)                                                    \
    X(test_items_appended_to_a_conversation_touch_it)                                              \
    X(test_an_idempotency_key_is_held_while_fresh_and_replaced_when_stale)                         \
    X(test_a_tenant_never_sees_or_changes_another_tenants_objects)                                 \
    X(test_the_sweep_takes_only_old_finished_objects_and_respects_its_limit)                       \
    X(test_commits_are_observed_in_a_histogram)
#define ON_SQLITE(f) cmocka_unit_test_setup_teardown(f, setup, teardown),
#define ON_POSTGRES(f) {"postgres: " #f, f, setup_pg, teardown, NULL},

int main(void)
{
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test_setup_teardown(test_a_version_1_database_migrates_and_keeps_its_kv_data,
                                        setup_bare, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_and_sweep_queries_use_their_indexes, setup,
                                        teardown),
        /* Tenancy: PostgreSQL's tenancy ops are postgres.c's; they join the list below with it. */
        cmocka_unit_test_setup_teardown(test_keys_are_stored_listed_revoked_and_touched, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_usage_counters_add_up_per_tenant_and_day, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_audit_events_are_numbered_and_read_oldest_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_new_run_is_this_nodes_and_leased_from_its_creation,
                                        setup_node, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_claim_takes_own_ownerless_and_expired_runs_oldest_first, setup_node, teardown),
        cmocka_unit_test_setup_teardown(test_a_claim_at_restart_takes_every_unfinished_run,
                                        setup_node, teardown),
        cmocka_unit_test_setup_teardown(test_leases_renew_only_this_nodes_unfinished_runs,
                                        setup_node, teardown),
        cmocka_unit_test_setup_teardown(test_writes_to_a_run_another_node_claimed_are_fenced,
                                        setup_node, teardown),
        cmocka_unit_test_setup_teardown(test_nodes_are_upserted_listed_by_id_and_forgotten,
                                        setup_node, teardown),
        RUNS_TESTS(ON_SQLITE)};
    const struct CMUnitTest postgres_tests[] = {
        RUNS_TESTS(ON_POSTGRES) cmocka_unit_test_setup_teardown(
            test_a_run_another_node_owns_refuses_the_old_owners_writes, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_new_run_gets_this_node_and_a_lease_on_the_database_clock, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_every_read_answers_the_same_text_as_sqlite, setup_pg,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_other_nodes_hear_of_a_runs_writes_once_per_batch,
                                        setup_pg, teardown),
    };
    const char *base = getenv("ARUN_BUILD_DIR");
    char *cluster = xasprintf("%s/store-runs-pg-%ld", base != NULL ? base : "/tmp", (long)getpid());
    int failed = cmocka_run_group_tests_name("sqlite", sqlite_tests, NULL, NULL);

    if (pgtmp_start(cluster) != NULL) {
        failed += cmocka_run_group_tests_name("postgres", postgres_tests, NULL, NULL);
        pgtmp_stop();
    } else {
        fprintf(stderr, "test_store_runs: PostgreSQL is not available: its tests did not run\n");
    }
    free(cluster);
    return failed;
}
