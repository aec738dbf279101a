/*
 * test_limits.c: the limits per tenant (src/tenancy/limits.c) on a clock the test moves: the
 * request bucket (a burst, then one per interval, Retry-After until the next one fits),
 * concurrency, the daily output-token budget and its rollover at midnight UTC, which entry a
 * tenant's limits come from (and the message that says so), and the daily counts surviving a
 * close and a new load through a real store.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testloop.h"
#include "testutil.h"

#include "core/config.h"
#include "core/metrics.h"
#include "store/store.h"
#include "tenancy/limits.h"

#define DEADLINE_MS 10000 /* generous for ASan on a loaded 2-core VM; a pass takes milliseconds */
/* 2024-03-10 23:59:00 UTC: a minute before midnight. */
#define T0_MS 1710115140000ll

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (strstr((hay), (needle)) == NULL)                                                       \
            fail_msg("expected \"%s\" in:\n%s", (needle), (hay));                                  \
    } while (0)

struct env {
    uv_loop_t loop;
    struct config *cfg;
    struct metrics *metrics;
    struct limits *l;
    int64_t now; /* the clock the limits read */
};

static int64_t test_clock(void *arg)
{
    return ((struct env *)arg)->now;
}

static struct config *config_of(const char *yaml)
{
    struct config *cfg = NULL;
    struct buf errs;
    buf_init(&errs, 1 << 14);
    if (config_parse(yaml, strlen(yaml), "arun.yaml", &cfg, &errs) != 0)
        fail_msg("config: %s", buf_cstr(&errs));
    buf_cleanup(&errs);
    return cfg;
}

/* Makes e's limits of yaml on st (NULL: in memory only) with the test's clock at T0_MS. */
static void env_init(struct env *e, const char *yaml, struct store *st)
{
    e->cfg = config_of(yaml);
    e->metrics = metrics_new();
    e->now = T0_MS;
    e->l = limits_new(&e->loop, e->cfg, st, e->metrics);
    limits_set_clock(e->l, test_clock, e);
}

/* Frees e's limits; with a store, it is closed too (the limits' last writes commit first). */
static void env_free(struct env *e, struct store *st)
{
    limits_free(e->l);
    e->l = NULL;
    if (st != NULL)
        store_close(st);
    assert_true(testloop_run_until(&e->loop, testloop_no_handles, &e->loop, DEADLINE_MS));
    metrics_free(e->metrics);
    config_free(e->cfg);
}

/* A loop and limits of yaml in memory. */
static void env_start(struct env *e, const char *yaml)
{
    assert_int_equal(uv_loop_init(&e->loop), 0);
    env_init(e, yaml, NULL);
}

static void env_stop(struct env *e)
{
    env_free(e, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
}

static char *metrics_text(struct env *e)
{
    struct buf out;
    buf_init(&out, 1 << 20);
    assert_int_equal(metrics_render(e->metrics, &out), 0);
    return buf_steal(&out);
}

/* ---- requests_per_minute ---- */

static void test_rpm_admits_a_burst_then_one_per_interval(void **state)
{
    struct env e = {0};
    struct limits_refusal why;
    env_start(&e, "tenants:\n  acme: {requests_per_minute: 3, concurrent_requests: 0}\n");

    for (int i = 0; i < 3; i++) {
        assert_int_equal(limits_enter(e.l, "acme", &why), 0);
        limits_leave(e.l, "acme");
    }
    assert_int_equal(limits_enter(e.l, "acme", &why), -EAGAIN);
    assert_string_equal(why.limit, "requests_per_minute");
    assert_int_equal(why.value, 3);
    assert_int_equal(why.retry_after_s, 20); /* one request every 60/3 s */
    assert_string_equal(why.message,
                        "tenant acme is over its limit of requests_per_minute: 3 (tenants.acme in "
                        "the config); retry after 20 s");

    /* Waiting less than Retry-After is not enough; waiting it is. */
    e.now += 19500;
    assert_int_equal(limits_enter(e.l, "acme", &why), -EAGAIN);
    assert_int_equal(why.retry_after_s, 1); /* 0.5 s, rounded up */
    e.now += 500;
    assert_int_equal(limits_enter(e.l, "acme", &why), 0);
    limits_leave(e.l, "acme");
    assert_int_equal(limits_enter(e.l, "acme", &why), -EAGAIN);

    /* A minute of quiet fills the bucket again: a whole burst, not more. */
    e.now += 60000;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(limits_enter(e.l, "acme", &why), 0);
        limits_leave(e.l, "acme");
    }
    assert_int_equal(limits_enter(e.l, "acme", &why), -EAGAIN);

    char *m = metrics_text(&e);
    assert_contains(
        m, "arun_tenant_rejections_total{tenant=\"acme\",limit=\"requests_per_minute\"} 4");
    free(m);
    env_stop(&e);
}

static void test_rpm_over_a_minute_is_bounded(void **state)
{
    struct env e = {0};
    struct limits_refusal why;
    env_start(&e, "tenants:\n  default: {requests_per_minute: 600}\n");
    /* A client retrying every 10 ms for two minutes gets the burst plus the refill, no more. */
    int admitted = 0;
    for (int i = 0; i < 12000; i++) {
        if (limits_enter(e.l, "t", &why) == 0) {
            admitted++;
            limits_leave(e.l, "t");
        } else {
            assert_true(why.retry_after_s >= 1);
        }
        e.now += 10;
    }
    assert_in_range(admitted, 600 + 1199, 600 + 1200);
    env_stop(&e);
}

/* ---- concurrent_requests ---- */

static void test_concurrency_counts_requests_in_flight(void **state)
{
    struct env e = {0};
    struct limits_refusal why;
    env_start(&e, "tenants:\n  default: {concurrent_requests: 2, requests_per_minute: 0}\n");

    assert_int_equal(limits_enter(e.l, "acme", &why), 0);
    assert_int_equal(limits_enter(e.l, "acme", &why), 0);
    assert_int_equal(limits_enter(e.l, "acme", &why), -EAGAIN);
    assert_string_equal(why.limit, "concurrent_requests");
    assert_int_equal(why.value, 2);
    assert_int_equal(why.retry_after_s, LIMITS_RETRY_BUSY_S);
    assert_string_equal(why.message, "tenant acme is over its limit of concurrent_requests: 2 "
                                     "(tenants.default in the config); retry after 1 s");
    /* Another tenant has slots of its own. */
    assert_int_equal(limits_enter(e.l, "other", &why), 0);
    limits_leave(e.l, "other");
    limits_leave(e.l, "acme");
    assert_int_equal(limits_enter(e.l, "acme", &why), 0);
    limits_leave(e.l, "acme");
    limits_leave(e.l, "acme");
    env_stop(&e);
}

/* A refusal for concurrency takes no request from the bucket. */
static void test_a_refused_request_costs_nothing(void **state)
{
    struct env e = {0};
    struct limits_refusal why;
    env_start(&e, "tenants:\n  default: {concurrent_requests: 1, requests_per_minute: 2}\n");
    assert_int_equal(limits_enter(e.l, "a", &why), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(limits_enter(e.l, "a", &why), -EAGAIN);
    assert_string_equal(why.limit, "concurrent_requests");
    limits_leave(e.l, "a");
    assert_int_equal(limits_enter(e.l, "a", &why), 0); /* the second of the burst of 2 */
    limits_leave(e.l, "a");
    env_stop(&e);
}

/* ---- output_tokens_per_day ---- */

static void test_token_budget_refuses_until_midnight_utc(void **state)
{
    struct env e = {0};
    struct limits_refusal why;
    env_start(&e, "tenants:\n  acme: {output_tokens_per_day: 100}\n");

    assert_int_equal(limits_check_tokens(e.l, "acme", &why), 0);
    limits_add_tokens(e.l, "acme", 60);
    assert_int_equal(limits_check_tokens(e.l, "acme", &why), 0);
    limits_add_tokens(e.l, "acme", 60); /* an answer is never cut: the day ends over */
    assert_int_equal(limits_tokens_today(e.l, "acme"), 120);
    assert_int_equal(limits_check_tokens(e.l, "acme", &why), -EAGAIN);
    assert_string_equal(why.limit, "output_tokens_per_day");
    assert_int_equal(why.value, 100);
    assert_int_equal(why.retry_after_s, 60); /* T0 is a minute before midnight */
    assert_string_equal(why.message,
                        "tenant acme is over its limit of output_tokens_per_day: 100 (tenants.acme "
                        "in the config); 120 used today (UTC); retry after 60 s");
    /* Other tenants have the default: unlimited. */
    limits_add_tokens(e.l, "other", 1000000);
    assert_int_equal(limits_check_tokens(e.l, "other", &why), 0);

    e.now += 59999;
    assert_int_equal(limits_check_tokens(e.l, "acme", &why), -EAGAIN);
    assert_int_equal(why.retry_after_s, 1);
    e.now += 1; /* 00:00:00 UTC */
    assert_int_equal(limits_check_tokens(e.l, "acme", &why), 0);
    assert_int_equal(limits_tokens_today(e.l, "acme"), 0);

    char *m = metrics_text(&e);
    assert_contains(m, "arun_tenant_output_tokens_total{tenant=\"acme\"} 120");
    assert_contains(m, "arun_tenant_output_tokens_total{tenant=\"other\"} 1000000");
    free(m);
    env_stop(&e);
}

/* ---- which entry a tenant's limits come from ---- */

static void test_overrides_and_their_source_in_the_message(void **state)
{
    struct env e = {0};
    struct limits_refusal why;
    env_start(&e, "tenants:\n"
                  "  acme: {concurrent_requests: 1}\n"
                  "  default: {queued_runs: 3}\n");
    assert_int_equal(limits_queued_runs(e.l, "acme"), 3);
    assert_int_equal(limits_queued_runs(e.l, "nobody"), 3);
    assert_int_equal(limits_check_queued(e.l, "acme", 2, &why), 0);
    assert_int_equal(limits_check_queued(e.l, "acme", 3, &why), -EAGAIN);
    assert_string_equal(why.message, "tenant acme is over its limit of queued_runs: 3 "
                                     "(tenants.default in the config); 3 background responses "
                                     "queued; retry after 1 s");

    assert_int_equal(limits_enter(e.l, "acme", &why), 0);
    assert_int_equal(limits_enter(e.l, "acme", &why), -EAGAIN);
    assert_contains(why.message, "concurrent_requests: 1 (tenants.acme in the config)");
    limits_leave(e.l, "acme");

    /* requests_per_minute is written nowhere: arun's default of 600, and how to change it. */
    for (int i = 0; i < 600; i++) {
        assert_int_equal(limits_enter(e.l, "zed", &why), 0);
        limits_leave(e.l, "zed");
    }
    assert_int_equal(limits_enter(e.l, "zed", &why), -EAGAIN);
    assert_string_equal(why.message,
                        "tenant zed is over its limit of requests_per_minute: 600 (arun's default; "
                        "set tenants.default or tenants.zed to change it); retry after 1 s");
    env_stop(&e);
}

static void test_zero_is_unlimited_and_null_limits_admit_everything(void **state)
{
    struct env e = {0};
    struct limits_refusal why;
    env_start(&e, "tenants:\n  default: {requests_per_minute: 0, concurrent_requests: 0, "
                  "output_tokens_per_day: 0, queued_runs: 0}\n");
    for (int i = 0; i < 5000; i++)
        assert_int_equal(limits_enter(e.l, "a", &why), 0);
    limits_add_tokens(e.l, "a", UINT32_MAX);
    assert_int_equal(limits_check_tokens(e.l, "a", &why), 0);
    assert_int_equal(limits_check_queued(e.l, "a", UINT32_MAX, &why), 0);
    for (int i = 0; i < 5000; i++)
        limits_leave(e.l, "a");
    env_stop(&e);

    /* auth.mode none: no limits at all. */
    assert_int_equal(limits_enter(NULL, "a", &why), 0);
    limits_leave(NULL, "a");
    assert_int_equal(limits_check_tokens(NULL, "a", &why), 0);
    limits_add_tokens(NULL, "a", 5);
    assert_int_equal(limits_queued_runs(NULL, "a"), 0);
    assert_int_equal(limits_check_queued(NULL, "a", 5, &why), 0);
    assert_true(limits_loaded(NULL));
    limits_free(NULL);
}

/* ---- the daily counts in the store ---- */

static char *tmp_dir_new(void)
{
    const char *base = getenv("ARUN_BUILD_DIR");
    char *dir = xasprintf("%s/limits-test-XXXXXX", base != NULL ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static struct store *open_store(uv_loop_t *loop, const char *dir)
{
    struct store_options opts = {.data_dir = dir};
    struct store *st = NULL;
    struct buf err;
    buf_init(&err, 4096);
    if (store_open(loop, &opts, &st, &err) != 0)
        fail_msg("store_open: %s", buf_cstr(&err));
    buf_cleanup(&err);
    return st;
}

struct load_wait {
    int done;
    int status;
};

static void loaded_cb(int status, void *arg)
{
    struct load_wait *w = arg;
    w->done++;
    w->status = status;
}

static bool load_over(void *arg)
{
    return ((struct load_wait *)arg)->done > 0;
}

static void load(struct env *e)
{
    struct load_wait w = {0};
    assert_false(limits_loaded(e->l));
    assert_int_equal(limits_load(e->l, loaded_cb, &w), 0);
    assert_true(testloop_run_until(&e->loop, load_over, &w, DEADLINE_MS));
    assert_int_equal(w.status, 0);
    assert_int_equal(w.done, 1);
    assert_true(limits_loaded(e->l));
}

/* Restarts: the limits and the store closed, then opened again on the same data_dir, the
 * clock where it was. */
static struct store *restart(struct env *e, const char *dir, struct store *st)
{
    int64_t now = e->now;
    env_free(e, st);
    st = open_store(&e->loop, dir);
    env_init(e, "tenants:\n  acme: {output_tokens_per_day: 1000}\n", st);
    e->now = now;
    load(e);
    return st;
}

static void test_daily_counts_survive_a_restart_and_roll_over(void **state)
{
    struct env e = {0};
    struct limits_refusal why;
    char *dir = tmp_dir_new();
    assert_int_equal(uv_loop_init(&e.loop), 0);
    struct store *st = open_store(&e.loop, dir);
    env_init(&e, "tenants:\n  acme: {output_tokens_per_day: 1000}\n", st);
    e.now = T0_MS - 3540000; /* 23:00 */
    load(&e);

    /* Counted before a close: written at the close. */
    limits_add_tokens(e.l, "acme", 700);
    limits_add_tokens(e.l, "zed", 5);
    st = restart(&e, dir, st);
    assert_int_equal(limits_tokens_today(e.l, "acme"), 700);
    assert_int_equal(limits_tokens_today(e.l, "zed"), 5);

    /* Counted and written by a flush (what a kill -9 after it keeps), then read back. */
    limits_add_tokens(e.l, "acme", 300);
    limits_flush(e.l);
    st = restart(&e, dir, st);
    assert_int_equal(limits_tokens_today(e.l, "acme"), 1000);
    assert_int_equal(limits_check_tokens(e.l, "acme", &why), -EAGAIN);
    assert_int_equal(why.retry_after_s, 3600);

    /* Counted late in the day, then the day ends: the new day starts at zero, and a restart
     * after midnight reads the new day only. */
    limits_add_tokens(e.l, "acme", 50);
    e.now = T0_MS + 60000 + 1000; /* 00:00:01 */
    assert_int_equal(limits_check_tokens(e.l, "acme", &why), 0);
    assert_int_equal(limits_tokens_today(e.l, "acme"), 0);
    limits_add_tokens(e.l, "acme", 10);
    st = restart(&e, dir, st);
    assert_int_equal(limits_tokens_today(e.l, "acme"), 10);

    /* The day before kept its whole count (written under its own date at the rollover). */
    e.now = T0_MS;
    st = restart(&e, dir, st);
    assert_int_equal(limits_tokens_today(e.l, "acme"), 1050);

    env_free(&e, st);
    uv_run(&e.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e.loop), 0);
    nftw(dir, testutil_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rpm_admits_a_burst_then_one_per_interval),
        cmocka_unit_test(test_rpm_over_a_minute_is_bounded),
        cmocka_unit_test(test_concurrency_counts_requests_in_flight),
        cmocka_unit_test(test_a_refused_request_costs_nothing),
        cmocka_unit_test(test_token_budget_refuses_until_midnight_utc),
        cmocka_unit_test(test_overrides_and_their_source_in_the_message),
        cmocka_unit_test(test_zero_is_unlimited_and_null_limits_admit_everything),
        cmocka_unit_test(test_daily_counts_survive_a_restart_and_roll_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
