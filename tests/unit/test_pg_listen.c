/*
 * test_pg_listen.c: the notices' listener (pg_listen.c) against a throwaway PostgreSQL cluster
 * (pgtmp.h): NOTIFYs sent by another connection arrive in commit order and are split into
 * (tenant, id) lines; a terminated backend and a stopped server are reconnected to, each followed
 * by a RESYNC; and the loop keeps turning all along, even against a server that never answers.
 * Skipped where PostgreSQL's server binaries are not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <uv.h>

#include "pgtmp.h"
#include "store/store_int.h"
#include "testloop.h"

#define SEEN_MAX 128
#define WAIT_MS 20000 /* deadlines are generous: ASan and a loaded machine */

#define PGTMP_URL_MAX 256
/* The throwaway cluster (pgtmp.h) as this test uses it: its URL, its directory and the script
 * that stops and starts it (the outage tests run it through the loop, not pgtmp.h's popen). */
static struct {
    char dir[PATH_MAX];
    char script[PATH_MAX];
    char url[PGTMP_URL_MAX];
} pg;
static bool have_pg;

/* What the listener delivered, in order: "E tenant id", "K" or "R". */
struct seen {
    char what[SEEN_MAX][96];
    int n;
    int resyncs;
};

struct fixture {
    uv_loop_t loop;
    struct seen seen;
    struct pg_listen *l;
    PGconn *raw; /* the other side: sends NOTIFYs, terminates backends */
    uv_timer_t tick;
    int ticks;
};

static void seen_cb(enum store_notice kind, const char *tenant, const char *id, void *arg)
{
    struct seen *s = arg;

    if (s->n == SEEN_MAX)
        fail_msg("more than %d notices", SEEN_MAX);
    if (kind == STORE_NOTICE_EVENTS)
        snprintf(s->what[s->n++], sizeof s->what[0], "E %s %s", tenant, id);
    else if (kind == STORE_NOTICE_KEYS)
        snprintf(s->what[s->n++], sizeof s->what[0], "K");
    else
        s->resyncs++;
}

static void tick_cb(uv_timer_t *t)
{
    struct fixture *f = t->data;
    f->ticks++;
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static int group_setup(void **state)
{
    (void)state;
    const char *src = getenv("ARUN_SOURCE_DIR");
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/arun-pg-listen-%ld", (long)getpid());
    const char *url = pgtmp_start(dir);

    have_pg = url != NULL;
    if (have_pg) {
        snprintf(pg.url, sizeof pg.url, "%s", url);
        snprintf(pg.dir, sizeof pg.dir, "%s", pgtmp_dir_);
        snprintf(pg.script, sizeof pg.script, "%s/scripts/pgtmp.sh", src != NULL ? src : ".");
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (have_pg)
        pgtmp_stop();
    return 0;
}

static int setup(void **state)
{
    struct fixture *f;

    if (!have_pg) {
        print_message("no PostgreSQL server binaries here: skipped\n");
        skip();
    }
    f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->raw = PQconnectdb(pg.url);
    assert_int_equal(PQstatus(f->raw), CONNECTION_OK);
    PQsetNoticeProcessor(f->raw, quiet, NULL); /* the server's shutdown warning */
    assert_int_equal(uv_timer_init(&f->loop, &f->tick), 0);
    f->tick.data = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    pg_listen_stop(f->l);
    uv_close((uv_handle_t *)&f->tick, NULL);
    assert_true(testloop_run_until(&f->loop, testloop_no_handles, &f->loop, WAIT_MS));
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    PQfinish(f->raw);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------- */

static void raw_sql(struct fixture *f, const char *sql)
{
    PGresult *r = PQexec(f->raw, sql);
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

static void notify(struct fixture *f, const char *channel, const char *payload)
{
    const char *params[] = {channel, payload};
    PGresult *r = PQexecParams(f->raw, "SELECT pg_notify($1, $2)", 2, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("pg_notify: %s", PQresultErrorMessage(r));
    PQclear(r);
}

struct up_wait {
    struct fixture *f;
    int resyncs; /* up with at least this many RESYNCs delivered */
};

static bool is_up(void *arg)
{
    struct up_wait *w = arg;
    return pg_listen_up(w->f->l) && w->f->seen.resyncs >= w->resyncs;
}

static bool is_down(void *arg)
{
    struct fixture *f = arg;
    return !pg_listen_up(f->l);
}

static void wait_up(struct fixture *f, int resyncs)
{
    struct up_wait w = {f, resyncs};

    if (!testloop_run_until(&f->loop, is_up, &w, WAIT_MS))
        fail_msg("not listening after %d ms (up %d, resyncs %d, want %d)", WAIT_MS,
                 pg_listen_up(f->l), f->seen.resyncs, resyncs);
}

struct n_wait {
    struct fixture *f;
    int n;
};

static bool has_n(void *arg)
{
    struct n_wait *w = arg;
    return w->f->seen.n >= w->n;
}

static void wait_seen(struct fixture *f, int n)
{
    struct n_wait w = {f, n};

    if (!testloop_run_until(&f->loop, has_n, &w, WAIT_MS))
        fail_msg("%d notices after %d ms, want %d (last: %s)", f->seen.n, WAIT_MS, n,
                 f->seen.n > 0 ? f->seen.what[f->seen.n - 1] : "none");
}

static void start_listening(struct fixture *f, const char *url)
{
    f->l = pg_listen_start(&f->loop, url, seen_cb, &f->seen);
    assert_non_null(f->l);
    wait_up(f, 1);
}

/* A notice sent now arrives: the listener works (again). */
static void assert_notices_flow(struct fixture *f, const char *id)
{
    char want[96];
    int n = f->seen.n;

    notify(f, "arun_events", id);
    wait_seen(f, n + 1);
    snprintf(want, sizeof want, "E %s", id);
    assert_string_equal(f->seen.what[n], want);
}

/* Runs `pgtmp.sh VERB DIR` without blocking the loop, and waits for it. */
struct spawn {
    uv_process_t proc;
    bool done;
    int64_t status;
};

static void exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct spawn *s = p->data;
    (void)sig;
    s->status = status;
    s->done = true;
    uv_close((uv_handle_t *)p, NULL);
}

static bool spawn_done(void *arg)
{
    return ((struct spawn *)arg)->done;
}

static void pgtmp_async(struct fixture *f, const char *verb)
{
    struct spawn s = {.status = -1};
    char *args[] = {"sh", pg.script, (char *)verb, pg.dir, NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t opts = {
        .exit_cb = exit_cb, .file = "sh", .args = args, .stdio_count = 3, .stdio = stdio};

    s.proc.data = &s;
    assert_int_equal(uv_spawn(&f->loop, &s.proc, &opts), 0);
    assert_true(testloop_run_until(&f->loop, spawn_done, &s, 60000));
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the process handle's close */
    assert_int_equal(s.status, 0);
}

struct until {
    uint64_t at_ms;
};

static bool time_passed(void *arg)
{
    return clock_mono_ms() >= ((struct until *)arg)->at_ms;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_notices_arrive_in_commit_order(void **state)
{
    struct fixture *f = *state;
    char payload[64];

    start_listening(f, pg.url);
    assert_int_equal(f->seen.resyncs, 1); /* the first LISTEN too: nothing before it was heard */
    for (int i = 0; i < 30; i++) {
        snprintf(payload, sizeof payload, "acme resp_%02d\n", i);
        notify(f, "arun_events", payload);
        if (i == 10)
            notify(f, "arun_keys", "");
    }
    /* One transaction, several lines and a second NOTIFY: delivered at its commit, in order. */
    raw_sql(f, "BEGIN");
    notify(f, "arun_events", "t1 resp_a\nt2 resp_b\n");
    notify(f, "arun_events", "t3 resp_c");
    raw_sql(f, "COMMIT");
    wait_seen(f, 34);
    for (int i = 0, j = 0; i < 30; i++, j++) {
        char want[96];
        if (i == 11)
            assert_string_equal(f->seen.what[j++], "K");
        snprintf(want, sizeof want, "E acme resp_%02d", i);
        assert_string_equal(f->seen.what[j], want);
    }
    assert_string_equal(f->seen.what[31], "E t1 resp_a");
    assert_string_equal(f->seen.what[32], "E t2 resp_b");
    assert_string_equal(f->seen.what[33], "E t3 resp_c");
    assert_int_equal(f->seen.resyncs, 1);
}

static void test_malformed_lines_are_skipped(void **state)
{
    struct fixture *f = *state;

    start_listening(f, pg.url);
    notify(f, "arun_events", "nospace\n\n t\nt3 \nt4 resp_ok\n");
    notify(f, "some_other_channel", "x y"); /* not listened to: never delivered */
    notify(f, "arun_events", "t5 resp_last");
    wait_seen(f, 2);
    assert_string_equal(f->seen.what[0], "E t4 resp_ok");
    assert_string_equal(f->seen.what[1], "E t5 resp_last");
}

/* A host name is resolved by the loop's resolver, every address tried (localhost may answer
 * ::1 first; the cluster listens on 127.0.0.1 only). */
static void test_host_name_is_resolved_without_blocking(void **state)
{
    struct fixture *f = *state;
    char url[PGTMP_URL_MAX];
    const char *at = strstr(pg.url, "127.0.0.1");

    assert_non_null(at);
    snprintf(url, sizeof url, "%.*slocalhost%s", (int)(at - pg.url), pg.url, at + 9);
    start_listening(f, url);
    assert_notices_flow(f, "acme resp_via_name");
}

static void test_terminated_backend_reconnects_and_resyncs(void **state)
{
    struct fixture *f = *state;

    start_listening(f, pg.url);
    assert_notices_flow(f, "acme resp_before");
    raw_sql(f, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE application_name = 'arun notices'");
    if (!testloop_run_until(&f->loop, is_down, f, WAIT_MS))
        fail_msg("the listener did not notice its backend's end");
    wait_up(f, 2);
    assert_notices_flow(f, "acme resp_after");
    assert_int_equal(f->seen.resyncs, 2);
}

/* The server stopped for 2 s: the listener goes down, comes back with a RESYNC, and the loop
 * turned all along (a 10 ms timer keeps firing: at a quarter of its rate, generously). */
static void test_server_outage_reconnects_and_the_loop_keeps_turning(void **state)
{
    struct fixture *f = *state;
    struct until two_s;
    uint64_t t0;
    int ticks0;

    start_listening(f, pg.url);
    assert_int_equal(uv_timer_start(&f->tick, tick_cb, 10, 10), 0);
    pgtmp_async(f, "kill");
    if (!testloop_run_until(&f->loop, is_down, f, WAIT_MS))
        fail_msg("the listener did not notice the server's end");
    t0 = clock_mono_ms();
    ticks0 = f->ticks;
    two_s.at_ms = t0 + 2000;
    assert_true(testloop_run_until(&f->loop, time_passed, &two_s, 10000));
    assert_false(pg_listen_up(f->l));
    pgtmp_async(f, "restart");
    wait_up(f, 2);
    PQreset(f->raw); /* the test's own connection died with the server too */
    assert_int_equal(PQstatus(f->raw), CONNECTION_OK);
    print_message("outage of %llu ms: %d ticks of 10 ms\n",
                  (unsigned long long)(clock_mono_ms() - t0), f->ticks - ticks0);
    assert_true(f->ticks - ticks0 >= 2000 / 10 / 4);
    assert_notices_flow(f, "acme resp_after_outage");
    assert_int_equal(f->seen.resyncs, 2);
}

/* A server that accepts and never answers: libpq's blocking connect would hang the loop for
 * good; the listener just waits (it gives up after its connect timeout). */
struct silent {
    uv_tcp_t server;
    uv_tcp_t clients[8];
    int nclients;
};

static void silent_conn_cb(uv_stream_t *server, int status)
{
    struct silent *s = server->data;

    assert_int_equal(status, 0);
    assert_true(s->nclients < 8);
    assert_int_equal(uv_tcp_init(server->loop, &s->clients[s->nclients]), 0);
    assert_int_equal(uv_accept(server, (uv_stream_t *)&s->clients[s->nclients]), 0);
    s->nclients++;
}

static bool ticked_50(void *arg)
{
    return ((struct fixture *)arg)->ticks >= 50;
}

static void test_silent_server_never_blocks_the_loop(void **state)
{
    struct fixture *f = *state;
    static struct silent s; /* its handles close after this returns (teardown's loop run) */
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    char url[PGTMP_URL_MAX];

    memset(&s, 0, sizeof s);
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(uv_tcp_init(&f->loop, &s.server), 0);
    s.server.data = &s;
    assert_int_equal(uv_tcp_bind(&s.server, (struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s.server, 8, silent_conn_cb), 0);
    assert_int_equal(uv_tcp_getsockname(&s.server, (struct sockaddr *)&bound, &len), 0);
    snprintf(url, sizeof url, "postgresql://arun@127.0.0.1:%d/arun",
             ntohs(((struct sockaddr_in *)&bound)->sin_port));

    f->l = pg_listen_start(&f->loop, url, seen_cb, &f->seen);
    assert_int_equal(uv_timer_start(&f->tick, tick_cb, 10, 10), 0);
    assert_true(testloop_run_until(&f->loop, ticked_50, f, 60000));
    assert_int_equal(s.nclients, 1); /* it did connect, and waits for the answer */
    assert_false(pg_listen_up(f->l));
    assert_int_equal(f->seen.resyncs, 0);

    /* Stopped while connecting: everything is freed (ASan), the loop closes. */
    pg_listen_stop(f->l);
    f->l = NULL;
    for (int i = 0; i < s.nclients; i++)
        uv_close((uv_handle_t *)&s.clients[i], NULL);
    uv_close((uv_handle_t *)&s.server, NULL);
}

/* A stop from inside the callback: no more notices, nothing touched afterwards. */
static void stop_in_cb(enum store_notice kind, const char *tenant, const char *id, void *arg)
{
    struct fixture *f = arg;

    seen_cb(kind, tenant, id, &f->seen);
    if (kind == STORE_NOTICE_EVENTS) {
        pg_listen_stop(f->l);
        f->l = NULL;
    }
}

static bool stopped(void *arg)
{
    return ((struct fixture *)arg)->l == NULL;
}

static bool resynced(void *arg)
{
    return ((struct fixture *)arg)->seen.resyncs >= 1;
}

static void test_stop_inside_the_callback(void **state)
{
    struct fixture *f = *state;

    f->l = pg_listen_start(&f->loop, pg.url, stop_in_cb, f);
    assert_true(testloop_run_until(&f->loop, resynced, f, WAIT_MS));
    notify(f, "arun_events", "a resp_1\nb resp_2\n");
    assert_true(testloop_run_until(&f->loop, stopped, f, WAIT_MS));
    assert_int_equal(f->seen.n, 1);
    assert_string_equal(f->seen.what[0], "E a resp_1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_notices_arrive_in_commit_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_lines_are_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_name_is_resolved_without_blocking, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_terminated_backend_reconnects_and_resyncs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_server_outage_reconnects_and_the_loop_keeps_turning,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_server_never_blocks_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_inside_the_callback, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
