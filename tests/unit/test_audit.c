/*
 * test_audit.c: the audit trail (tenancy/audit.h) on a real store in a fresh directory: what an
 * event holds once stored (actor, tenant, action, target, outcome, remote, detail), its log line
 * and its metric, and the rate limit of authentication failures, on a clock of the test's own
 * (audit_set_clock) so a "second" is the test's to end. Requests are h2o requests of the test's
 * own whose connection names a peer address, so http_remote_addr runs as in the server. stderr
 * (fd 2) is pointed at a temporary file and read back for the log lines. Every test runs the
 * loop with a deadline, never sleeps, and ends with uv_loop_close() == 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testloop.h"
#include "testutil.h"

#include "core/log.h"
#include "core/metrics.h"
#include "tenancy/audit.h"

#define DEADLINE_MS 10000 /* generous for ASan on a loaded 2-core VM; a pass takes milliseconds */

struct fx {
    uv_loop_t loop;
    struct store *st;
    struct metrics *metrics;
    struct audit *audit;
    char *tmp, *data_dir;
    uint64_t now_ms; /* the rate limit's clock */
    FILE *capture;   /* the file fd 2 points at */
    int saved_stderr;
    /* the peer of the next request */
    char ip[64];
    uint16_t port;
};
static struct fx *F;

static uint64_t fake_now(void *arg)
{
    return ((struct fx *)arg)->now_ms;
}

static struct store *open_store(void)
{
    struct store_options o = {.data_dir = F->data_dir};
    struct store *st = NULL;
    struct buf err;
    buf_init(&err, 4096);
    if (store_open(&F->loop, &o, &st, &err) != 0)
        fail_msg("store_open: %s", buf_cstr(&err));
    buf_cleanup(&err);
    return st;
}

static int setup(void **state)
{
    const char *base = getenv("ARUN_BUILD_DIR");
    F = xcalloc(1, sizeof(*F));
    F->tmp = xasprintf("%s/audit-test-XXXXXX", base != NULL ? base : "/tmp");
    assert_non_null(mkdtemp(F->tmp));
    F->data_dir = xasprintf("%s/data", F->tmp);
    assert_int_equal(uv_loop_init(&F->loop), 0);
    F->st = open_store();
    F->metrics = metrics_new();
    F->audit = audit_new(&F->loop, F->st, F->metrics);
    F->now_ms = 1000000500; /* mid-second */
    audit_set_clock(F->audit, fake_now, F);
    snprintf(F->ip, sizeof(F->ip), "10.1.2.3");
    F->port = 4567;
    fflush(stderr);
    F->capture = tmpfile();
    assert_non_null(F->capture);
    F->saved_stderr = dup(STDERR_FILENO);
    assert_int_equal(dup2(fileno(F->capture), STDERR_FILENO), STDERR_FILENO);
    log_set_level(LOGL_INFO);
    return 0;
}

static void restore_stderr(void)
{
    if (F->saved_stderr < 0)
        return;
    fflush(stderr);
    dup2(F->saved_stderr, STDERR_FILENO);
    close(F->saved_stderr);
    F->saved_stderr = -1;
}

static void close_all(void)
{
    audit_free(F->audit);
    F->audit = NULL;
    if (F->st != NULL)
        store_close(F->st);
    F->st = NULL;
    assert_true(testloop_run_until(&F->loop, testloop_no_handles, &F->loop, DEADLINE_MS));
}

static int teardown(void **state)
{
    restore_stderr();
    close_all();
    uv_run(&F->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&F->loop), 0);
    metrics_free(F->metrics);
    fclose(F->capture);
    testutil_rm_rf(F->tmp);
    free(F->tmp);
    free(F->data_dir);
    free(F);
    F = NULL;
    return 0;
}

/* ---- requests of the test's own ---- */

static socklen_t fake_peername(h2o_conn_t *conn, struct sockaddr *sa)
{
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    memset(in, 0, sizeof(*in));
    in->sin_family = AF_INET;
    in->sin_port = htons(F->port);
    assert_int_equal(inet_pton(AF_INET, F->ip, &in->sin_addr), 1);
    return sizeof(*in);
}

static const h2o_conn_callbacks_t conn_callbacks = {.get_peername = fake_peername};

struct fake_req {
    h2o_conn_t conn;
    h2o_req_t req;
    struct http_request r;
};

/* A request from F->ip:F->port of key_id (or "" with auth.mode none) of tenant. */
static struct http_request *fake_request(struct fake_req *f, const char *key_id, const char *tenant)
{
    memset(f, 0, sizeof(*f));
    f->conn.callbacks = &conn_callbacks;
    f->req.conn = &f->conn;
    f->r.req = &f->req;
    snprintf(f->r.id, sizeof(f->r.id), "req_test");
    snprintf(f->r.who.key_id, sizeof(f->r.who.key_id), "%s", key_id);
    snprintf(f->r.who.tenant, sizeof(f->r.who.tenant), "%s", tenant);
    f->r.who.admin = true;
    return &f->r;
}

/* ---- reading back ---- */

struct got {
    bool done;
    int status;
    json_t *page;
};

static void got_cb(int status, const char *value, size_t len, void *arg)
{
    struct got *g = arg;
    g->done = true;
    g->status = status;
    g->page = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
}

static bool got_done(void *arg)
{
    return ((struct got *)arg)->done;
}

/* The stored events after seq `after` (a page of up to 100; the caller decrefs). Waits for the
 * store to have committed `want` events first (appends are asynchronous). */
static json_t *stored(size_t want)
{
    for (uint64_t deadline = clock_mono_ms() + DEADLINE_MS;;) {
        struct got g = {0};
        assert_int_equal(store_audit_list(F->st, 0, 0, 100, got_cb, &g), 0);
        assert_true(testloop_run_until(&F->loop, got_done, &g, DEADLINE_MS));
        assert_int_equal(g.status, 0);
        json_t *data = json_incref(json_object_get(g.page, "data"));
        json_decref(g.page);
        if (json_array_size(data) >= want || clock_mono_ms() > deadline)
            return data;
        json_decref(data);
        uv_run(&F->loop, UV_RUN_NOWAIT);
    }
}

static size_t count_action(const json_t *data, const char *action)
{
    size_t i, n = 0;
    const json_t *e;
    json_array_foreach(data, i, e) n +=
        strcmp(json_string_value(json_object_get(e, "action")), action) == 0;
    return n;
}

static const json_t *find_action(const json_t *data, const char *action)
{
    size_t i;
    const json_t *e;
    json_array_foreach(data, i, e) if (strcmp(json_string_value(json_object_get(e, "action")),
                                              action) == 0) return e;
    return NULL;
}

static const char *str(const json_t *e, const char *key)
{
    return json_string_value(json_object_get(e, key));
}

/* Everything written to fd 2 so far. The caller frees it. */
static char *captured(void)
{
    log_flush();
    fflush(stderr);
    static const size_t cap = 1 << 20;
    char *s = xcalloc(1, cap + 1);
    ssize_t n = pread(fileno(F->capture), s, cap, 0);
    assert_true(n >= 0);
    return s;
}

static size_t count_lines(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static double metric(const char *series)
{
    struct buf out;
    buf_init(&out, 1 << 20);
    assert_int_equal(metrics_render(F->metrics, &out), 0);
    const char *p = strstr(buf_cstr(&out), series);
    double v = p != NULL ? strtod(p + strlen(series), NULL) : -1;
    buf_cleanup(&out);
    return v;
}

/* ---- what an event holds ---- */

static void test_request_event_is_stored_logged_and_counted_with_its_facts(void **state)
{
    struct fake_req f;
    struct http_request *r = fake_request(&f, "key_0123456789abcdef", "acme");
    audit_request(F->audit, r, "engine.start", "qwen", "ok", NULL);
    audit_request(F->audit, r, "engine.restart", "qwen", "failed",
                  json_pack("{s:s}", "reason", "not enough memory"));
    audit_system(F->audit, "tls.reload", "/etc/arun/cert.pem", "ok", NULL);

    json_t *data = stored(3);
    assert_int_equal(json_array_size(data), 3);
    const json_t *e = json_array_get(data, 0);
    assert_int_equal(json_integer_value(json_object_get(e, "seq")), 1);
    assert_true(json_integer_value(json_object_get(e, "ts_ms")) > 1700000000000);
    assert_string_equal(str(e, "actor"), "key_0123456789abcdef");
    assert_string_equal(str(e, "tenant"), "acme");
    assert_string_equal(str(e, "action"), "engine.start");
    assert_string_equal(str(e, "target"), "qwen");
    assert_string_equal(str(e, "outcome"), "ok");
    assert_string_equal(str(e, "remote"), "10.1.2.3:4567");
    assert_string_equal(str(json_object_get(e, "detail"), "request_id"), "req_test");

    e = json_array_get(data, 1);
    assert_string_equal(str(e, "outcome"), "failed");
    assert_string_equal(str(json_object_get(e, "detail"), "reason"), "not enough memory");

    e = json_array_get(data, 2);
    assert_string_equal(str(e, "actor"), "arun");
    assert_true(json_is_null(json_object_get(e, "tenant")));
    assert_true(json_is_null(json_object_get(e, "remote")));
    assert_string_equal(str(e, "action"), "tls.reload");
    json_decref(data);

    /* One line each: info for what went well, warn for what failed, with the same facts. */
    char *log = captured();
    const char *line = strstr(log, "\"msg\":\"engine.start qwen by key_0123456789abcdef from "
                                   "10.1.2.3:4567: ok\"");
    if (line == NULL)
        fail_msg("no engine.start line in:\n%s", log);
    assert_non_null(strstr(log, "\"level\":\"warn\",\"module\":\"audit\""));
    assert_int_equal(count_lines(log, "\"module\":\"audit\""), 3);
    assert_non_null(strstr(log, "\"reason\":\"not enough memory\""));
    free(log);

    assert_true(metric("arun_audit_events_total{action=\"engine.start\",outcome=\"ok\"} ") == 1);
    assert_true(metric("arun_audit_events_total{action=\"engine.restart\",outcome=\"failed\"} ") ==
                1);
}

static void test_actor_without_a_key_and_on_the_local_socket(void **state)
{
    struct fake_req f;
    struct http_request *r = fake_request(&f, "", "default"); /* auth.mode none */
    audit_request(F->audit, r, "engine.stop", "m1", "ok", NULL);
    r = fake_request(&f, "", "default");
    r->who.local = true;
    audit_request(F->audit, r, "key.create", "key_00000000000000aa", "ok", NULL);
    json_t *data = stored(2);
    assert_string_equal(str(json_array_get(data, 0), "actor"), "anonymous");
    assert_string_equal(str(json_array_get(data, 1), "actor"), "local");
    assert_string_equal(str(json_array_get(data, 1), "remote"), "local");
    json_decref(data);
}

static void test_client_text_is_cut_and_cannot_forge_lines(void **state)
{
    struct fake_req f;
    struct http_request *r = fake_request(&f, "", "default");
    char target[400];
    memset(target, 'x', sizeof(target) - 1);
    target[sizeof(target) - 1] = '\0';
    memcpy(target, "a\nb\xff", 4);
    audit_request(F->audit, r, "key.revoke", target, "failed", NULL);
    json_t *data = stored(1);
    const char *t = str(json_array_get(data, 0), "target");
    assert_non_null(t);
    assert_int_equal(strlen(t), STORE_ID_MAX);
    assert_memory_equal(t, "a?b?", 4);
    json_decref(data);
}

/* ---- the rate limit of authentication failures ---- */

static void fail_from(const char *ip, int n)
{
    snprintf(F->ip, sizeof(F->ip), "%s", ip);
    for (int i = 0; i < n; i++) {
        struct fake_req f;
        F->port = (uint16_t)(40000 + i); /* a new connection each: the host is what counts */
        audit_auth_failure(F->audit, fake_request(&f, "", ""), "unknown key");
    }
}

static void test_auth_failures_past_the_rate_are_counted_and_summed_up(void **state)
{
    fail_from("10.0.0.1", 30); /* 5 kept: the per-host rate */
    fail_from("10.0.0.2", 10); /* 5 kept: 10 in all, the overall rate */
    fail_from("10.0.0.3", 10); /* none kept */
    json_t *data = stored(AUDIT_AUTH_PER_S);
    assert_int_equal(json_array_size(data), AUDIT_AUTH_PER_S);
    const json_t *e = json_array_get(data, 0);
    assert_string_equal(str(e, "action"), "auth.failure");
    assert_string_equal(str(e, "outcome"), "denied");
    assert_string_equal(str(e, "actor"), "anonymous");
    assert_string_equal(str(e, "remote"), "10.0.0.1:40000");
    assert_string_equal(str(json_object_get(e, "detail"), "reason"), "unknown key");
    json_decref(data);

    /* The next second: its first failure is kept, after the summary of the last one. */
    F->now_ms += 1000;
    fail_from("10.0.0.3", 1);
    data = stored(AUDIT_AUTH_PER_S + 2);
    assert_int_equal(json_array_size(data), AUDIT_AUTH_PER_S + 2);
    const json_t *sum = json_array_get(data, AUDIT_AUTH_PER_S);
    assert_string_equal(str(sum, "action"), "auth.failure.suppressed");
    assert_string_equal(str(sum, "actor"), "arun");
    const json_t *d = json_object_get(sum, "detail");
    assert_int_equal(json_integer_value(json_object_get(d, "count")), 40);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "hosts"), "10.0.0.1")),
                     25);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "hosts"), "10.0.0.3")),
                     10);
    assert_string_equal(str(json_array_get(data, AUDIT_AUTH_PER_S + 1), "action"), "auth.failure");
    json_decref(data);

    /* The log has the same: the kept failures and one summary, not 51 lines. */
    char *log = captured();
    assert_int_equal(count_lines(log, "\"action\":\"auth.failure\""), AUDIT_AUTH_PER_S + 1);
    assert_int_equal(count_lines(log, "\"action\":\"auth.failure.suppressed\""), 1);
    free(log);
    /* The metric counts every failure. */
    assert_true(metric("arun_audit_events_total{action=\"auth.failure\",outcome=\"denied\"} ") ==
                51);
}

static bool has_summary(void *arg)
{
    json_t *data = stored(0);
    bool found = find_action(data, "auth.failure.suppressed") != NULL;
    json_decref(data);
    return found;
}

static void test_the_summary_comes_when_the_flood_ends(void **state)
{
    /* The real clock: nothing more arrives, so the timer at the end of the second writes it. */
    audit_set_clock(F->audit, NULL, NULL);
    fail_from("10.0.0.9", 20);
    assert_true(testloop_run_until(&F->loop, has_summary, NULL, DEADLINE_MS));
    json_t *data = stored(0);
    assert_int_equal(count_action(data, "auth.failure"), AUDIT_AUTH_PER_HOST_PER_S);
    const json_t *d = json_object_get(find_action(data, "auth.failure.suppressed"), "detail");
    assert_int_equal(json_integer_value(json_object_get(d, "count")),
                     20 - AUDIT_AUTH_PER_HOST_PER_S);
    json_decref(data);
}

static void test_free_writes_the_summary_of_a_flood_still_going(void **state)
{
    fail_from("10.0.0.7", 8);
    close_all(); /* the audit first, then the store: both drain */
    F->st = open_store();
    json_t *data = stored(AUDIT_AUTH_PER_HOST_PER_S + 1);
    const json_t *sum = find_action(data, "auth.failure.suppressed");
    assert_non_null(sum);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(sum, "detail"), "count")),
                     8 - AUDIT_AUTH_PER_HOST_PER_S);
    json_decref(data);
}

static void test_since_takes_epoch_ms_or_iso_utc(void **state)
{
    int64_t ms = 0;
    assert_int_equal(audit_parse_since("1796637600000", &ms), 0);
    assert_int_equal(ms, 1796637600000);
    assert_int_equal(audit_parse_since("2026-12-07T10:00:00Z", &ms), 0);
    assert_int_equal(ms, 1796637600000);
    assert_int_equal(audit_parse_since("2026-12-07T10:00:00.25Z", &ms), 0);
    assert_int_equal(ms, 1796637600250);
    assert_int_equal(audit_parse_since("0", &ms), 0);
    assert_int_equal(ms, 0);
    static const char *const bad[] = {"",
                                      "-5",
                                      "yesterday",
                                      "2026-12-07",
                                      "2026-12-07T10:00:00",
                                      "2026-12-07T10:00:00+02:00",
                                      "2026-12-07T10:00:00.Z",
                                      "12a"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (audit_parse_since(bad[i], &ms) != -EINVAL)
            fail_msg("accepted since=\"%s\"", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_request_event_is_stored_logged_and_counted_with_its_facts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_actor_without_a_key_and_on_the_local_socket, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_client_text_is_cut_and_cannot_forge_lines, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_auth_failures_past_the_rate_are_counted_and_summed_up,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_summary_comes_when_the_flood_ends, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_free_writes_the_summary_of_a_flood_still_going, setup,
                                        teardown),
        cmocka_unit_test(test_since_takes_epoch_ms_or_iso_utc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
