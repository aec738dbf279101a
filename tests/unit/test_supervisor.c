/*
 * Unit tests of the engine state machine (engines/supervisor*.c): the one setter's entry work,
 * its transition table, and the restart policy, driven directly with a fake clock and no
 * processes (the engines' instances are never spawned: the tests move the states the way the
 * probe, stop and exit paths do). End-to-end behaviour with real processes is in
 * tests/e2e/engines.test.mjs.
 *
 * The supervisor's files are included here (as h2o's tests do) so the tests reach the private
 * functions, and so clock_mono_ms() can be replaced by a clock the test moves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "core/clock.h" /* the real inline clock first; the macro below replaces its uses */

static uint64_t fake_now_ms = 1000000;
#define clock_mono_ms() (fake_now_ms)

#include "../../src/engines/supervisor.c"
#include "../../src/engines/supervisor_adopt.c"
#include "../../src/engines/supervisor_launch.c"
#include "../../src/engines/supervisor_probe.c"
#include "../../src/engines/supervisor_sampler.c"
#include "../../src/engines/supervisor_stop.c"

#include "testutil.h"

struct fixture {
    uv_loop_t loop;
    char dir[64];
    struct config *cfg;
    struct events *events;
    struct metrics *metrics;
    struct supervisor *sup;
};

/* A supervisor over one engine `m` (never spawned) with the given extra manifest lines. */
static struct fixture *fixture_new(const char *extra)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/arun-test-sup-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char *yaml =
        xasprintf("data_dir: %s\nengines:\n  m:\n    cmd: \"true ${PORT}\"\n%s", f->dir, extra);
    struct buf err;
    buf_init(&err, 4096);
    int rc = config_parse(yaml, strlen(yaml), "test.yaml", &f->cfg, &err);
    if (rc != 0)
        fail_msg("config: %s", buf_cstr(&err));
    buf_cleanup(&err);
    free(yaml);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->events = events_new();
    f->metrics = metrics_new();
    struct supervisor_options o = {
        .loop = &f->loop, .cfg = f->cfg, .events = f->events, .metrics = f->metrics};
    f->sup = supervisor_new(&o);
    f->sup->envelope = (struct admission_envelope){.ram_mb = 1 << 20, .vram_mb = 0};
    return f;
}

static void fixture_free(struct fixture *f)
{
    supervisor_free(f->sup);
    while (uv_run(&f->loop, UV_RUN_NOWAIT) != 0) {
    }
    assert_int_equal(uv_loop_close(&f->loop), 0);
    events_free(f->events);
    metrics_free(f->metrics);
    config_free(f->cfg);
    testutil_rm_rf(f->dir);
    free(f);
}

struct seen {
    int calls;
    int status;
    char reason[512];
};

static void ready_cb(struct engine *e, int status, const char *reason, void *arg)
{
    struct seen *s = arg;
    s->calls++;
    s->status = status;
    snprintf(s->reason, sizeof(s->reason), "%s", reason ? reason : "");
}

/* Moves m to `ready` the way a first probe does. */
static struct engine *ready_engine(struct fixture *f)
{
    struct engine *e = &f->sup->engines[0];
    sup_set_state(e, ENGINE_STARTING, "spawned");
    sup_set_state(e, ENGINE_READY, NULL);
    return e;
}

static void test_unhealthy_to_ready_wakes_waiting_requests(void **state)
{
    struct fixture *f = fixture_new("");
    struct engine *e = ready_engine(f);
    sup_set_state(e, ENGINE_UNHEALTHY, "health probe failed");
    struct seen s = {0};
    supervisor_wait_ready(e, ready_cb, &s);
    sup_set_state(e, ENGINE_UNHEALTHY, "health probe failed (2 times in a row)");
    assert_int_equal(s.calls, 0); /* unhealthy may still recover: it keeps waiting */
    sup_set_state(e, ENGINE_READY, NULL);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, 0);
    fixture_free(f);
}

static void test_loading_to_ready_records_the_load_and_wakes_waiters(void **state)
{
    struct fixture *f = fixture_new("");
    struct engine *e = &f->sup->engines[0];
    sup_set_state(e, ENGINE_STARTING, "spawned");
    struct seen s = {0};
    supervisor_wait_ready(e, ready_cb, &s);
    sup_set_state(e, ENGINE_LOADING, "loading");
    fake_now_ms += 1234;
    sup_set_state(e, ENGINE_READY, NULL);
    assert_int_equal(s.calls, 1);
    assert_int_equal(e->nloads, 1);
    assert_int_equal(e->last_load_ms, 1234);
    assert_int_equal(e->ready_ms, fake_now_ms);
    fixture_free(f);
}

static void test_a_stop_turns_waiters_away_unless_a_start_follows(void **state)
{
    struct fixture *f = fixture_new("");
    struct engine *e = ready_engine(f);
    sup_set_state(e, ENGINE_UNHEALTHY, "probe failed");
    struct seen s = {0};
    supervisor_wait_ready(e, ready_cb, &s);
    e->stop_then_start = true; /* a restart: the waiter waits for the new instance */
    sup_set_state(e, ENGINE_STOPPING, "restarting by request");
    assert_int_equal(s.calls, 0);
    e->stop_then_start = false;
    sup_set_state(e, ENGINE_STOPPED, "stopped by request");
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, -ECANCELED);
    assert_string_equal(s.reason, "stopped by request");
    fixture_free(f);
}

static void test_failed_turns_waiters_away_unless_the_restart_policy_restarts(void **state)
{
    struct fixture *f = fixture_new("    restart: {policy: on-failure, max: 2, backoff_ms: 100}\n");
    struct engine *e = ready_engine(f);
    struct seen s = {0};
    supervisor_wait_ready(e, ready_cb, &s);
    sup_on_gone(e, 1, 0, true);
    assert_int_equal(e->state, ENGINE_FAILED);
    assert_true(e->restart_pending);
    assert_non_null(strstr(e->reason, "restart 1/2 in 0.1 s"));
    assert_int_equal(s.calls, 0); /* it will be started again: keep waiting */
    e->restart_pending = false;
    sup_set_state(e, ENGINE_STARTING, "spawned");
    sup_set_state(e, ENGINE_READY, NULL);
    assert_int_equal(s.calls, 1);
    fixture_free(f);
}

static void test_restart_policy_backs_off_gives_up_and_forgets_after_its_window(void **state)
{
    struct fixture *f = fixture_new("    restart: {policy: on-failure, max: 2, backoff_ms: 100}\n");
    struct engine *e = ready_engine(f);
    sup_on_gone(e, 1, 0, true);
    assert_non_null(strstr(e->reason, "restart 1/2 in 0.1 s"));
    e->restart_pending = false;
    ready_engine(f);
    sup_on_gone(e, 1, 0, true);
    assert_non_null(strstr(e->reason, "restart 2/2 in 0.2 s")); /* the backoff doubles */
    e->restart_pending = false;
    ready_engine(f);
    struct seen s = {0};
    supervisor_wait_ready(e, ready_cb, &s);
    sup_on_gone(e, 1, 0, true);
    assert_non_null(strstr(e->reason, "gave up after 2 restarts"));
    assert_false(e->restart_pending);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, -EIO);
    assert_int_equal(e->restarts, 2);
    /* Past the window the budget is whole again. */
    fake_now_ms += SUPERVISOR_RESTART_WINDOW_S * 1000ull + 1;
    sup_set_state(e, ENGINE_STARTING, "started by request");
    sup_set_state(e, ENGINE_READY, NULL);
    sup_on_gone(e, 1, 0, true);
    assert_non_null(strstr(e->reason, "restart 1/2 in 0.1 s"));
    fixture_free(f);
}

static void test_a_clean_exit_with_policy_never_is_stopped_not_failed(void **state)
{
    struct fixture *f = fixture_new("    restart: {policy: never}\n");
    struct engine *e = ready_engine(f);
    sup_on_gone(e, 0, 0, true);
    assert_int_equal(e->state, ENGINE_STOPPED);
    assert_non_null(strstr(e->reason, "exited with code 0"));
    fixture_free(f);
}

static void test_too_large_fails_with_enomem_for_waiters(void **state)
{
    struct fixture *f = fixture_new("    memory: {ram_mb: 4096}\n");
    f->sup->envelope.ram_mb = 1024;
    snprintf(f->sup->envelope.why, sizeof(f->sup->envelope.why), "node.ram_mb");
    struct engine *e = &f->sup->engines[0];
    struct seen s = {0};
    supervisor_wait_ready(e, ready_cb, &s);
    f->sup->ready = true;
    e->want_start = true;
    sup_schedule(f->sup);
    assert_int_equal(e->state, ENGINE_FAILED);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, -ENOMEM);
    assert_non_null(strstr(s.reason, "needs 4096 MiB of RAM, the node's envelope is 1024 MiB"));
    fixture_free(f);
}

/* A start asked before the envelope is measured (the first milliseconds) is not judged against
 * an envelope of 0: it waits, and admission decides once the supervisor is ready. */
static void test_a_start_before_the_envelope_is_measured_waits_for_it(void **state)
{
    struct fixture *f = fixture_new("    memory: {ram_mb: 100}\n");
    f->sup->envelope = (struct admission_envelope){0}; /* not measured yet */
    struct engine *e = &f->sup->engines[0];
    struct buf why;
    buf_init(&why, 512);
    assert_int_equal(supervisor_start_engine(e, "test", &why), 0);
    assert_int_equal(e->state, ENGINE_STOPPED);
    assert_true(e->want_start);
    f->sup->envelope.ram_mb = 50; /* measured: now it is too large, and says so */
    snprintf(f->sup->envelope.why, sizeof(f->sup->envelope.why), "node.ram_mb");
    f->sup->ready = true;
    sup_schedule(f->sup);
    assert_int_equal(e->state, ENGINE_FAILED);
    assert_non_null(strstr(e->reason, "needs 100 MiB of RAM, the node's envelope is 50 MiB"));
    buf_cleanup(&why);
    fixture_free(f);
}

static void test_a_transition_outside_the_table_is_an_assertion(void **state)
{
    struct fixture *f = fixture_new("");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sup_set_state(&f->sup->engines[0], ENGINE_READY, NULL); /* stopped -> ready */
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0));
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unhealthy_to_ready_wakes_waiting_requests),
        cmocka_unit_test(test_a_start_before_the_envelope_is_measured_waits_for_it),
        cmocka_unit_test(test_loading_to_ready_records_the_load_and_wakes_waiters),
        cmocka_unit_test(test_a_stop_turns_waiters_away_unless_a_start_follows),
        cmocka_unit_test(test_failed_turns_waiters_away_unless_the_restart_policy_restarts),
        cmocka_unit_test(test_restart_policy_backs_off_gives_up_and_forgets_after_its_window),
        cmocka_unit_test(test_a_clean_exit_with_policy_never_is_stopped_not_failed),
        cmocka_unit_test(test_too_large_fails_with_enomem_for_waiters),
        cmocka_unit_test(test_a_transition_outside_the_table_is_an_assertion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
