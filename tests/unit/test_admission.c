/*
 * Unit tests of engines/admission: the admission rules as a pure function of a snapshot, with
 * no processes, no loop and no clock (the supervisor and `arun doctor` both ask it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "engines/admission.h"

/* An idle engine that runs, holds ram_mb, and was last used at last_used_ms. */
#define SERVING(nm, ram, used)                                                                     \
    {                                                                                              \
        .name = (nm), .need_ram_mb = (ram), .running = true, .serving = true,                      \
        .last_used_ms = (used)                                                                     \
    }
#define WANTS(nm, ram)                                                                             \
    {                                                                                              \
        .name = (nm), .need_ram_mb = (ram)                                                         \
    }

static const struct admission_envelope ENV_16G = {.ram_mb = 16384, .vram_mb = 8192};

static struct admission_decision decide(struct admission_engine *e, size_t n, size_t which,
                                        size_t *stop)
{
    struct admission_decision d;
    admission_decide(e, n, which, &ENV_16G, stop, &d);
    return d;
}

static void test_start_that_fits_beside_running_engines(void **state)
{
    struct admission_engine e[] = {SERVING("a", 8000, 5), WANTS("b", 8000)};
    size_t stop[2];
    struct admission_decision d = decide(e, 2, 1, stop);
    assert_int_equal(d.verdict, ADMISSION_START);
    assert_int_equal(d.ram_in_use_mb, 8000);
}

static void test_need_above_the_envelope_is_refused_naming_ram_or_vram(void **state)
{
    struct admission_engine e[] = {WANTS("big", 20000), {.name = "gpu", .need_vram_mb = 9000}};
    size_t stop[2];
    struct admission_decision d = decide(e, 2, 0, stop);
    assert_int_equal(d.verdict, ADMISSION_TOO_LARGE);
    assert_false(d.vram);
    d = decide(e, 2, 1, stop);
    assert_int_equal(d.verdict, ADMISSION_TOO_LARGE);
    assert_true(d.vram);
}

static void test_too_large_is_refused_before_anything_is_evicted(void **state)
{
    struct admission_engine e[] = {SERVING("a", 8000, 5), WANTS("big", 20000)};
    size_t stop[2];
    assert_int_equal(decide(e, 2, 1, stop).verdict, ADMISSION_TOO_LARGE);
}

static void test_least_recently_used_idle_engine_is_evicted(void **state)
{
    struct admission_engine e[] = {SERVING("new", 6000, 900), SERVING("old", 6000, 100),
                                   SERVING("mid", 2000, 500), WANTS("c", 8000)};
    size_t stop[4];
    struct admission_decision d = decide(e, 4, 3, stop);
    assert_int_equal(d.verdict, ADMISSION_EVICT);
    assert_int_equal(d.victim, 1);
    assert_int_equal(d.ram_in_use_mb, 14000);
}

static void test_busy_resident_and_remote_engines_are_never_evicted(void **state)
{
    struct admission_engine e[] = {SERVING("busy", 6000, 1), SERVING("resident", 6000, 2),
                                   SERVING("remote", 0, 0), WANTS("c", 8000)};
    e[0].busy = true;
    e[1].resident = true;
    e[2].remote = true;
    size_t stop[4];
    struct admission_decision d = decide(e, 4, 3, stop);
    assert_int_equal(d.verdict, ADMISSION_NO_ROOM);
    assert_int_equal(d.victim, 4);
}

static void test_a_starting_engine_holds_memory_but_cannot_be_evicted(void **state)
{
    struct admission_engine e[] = {{.name = "loading", .need_ram_mb = 12000, .running = true},
                                   WANTS("c", 8000)};
    size_t stop[2];
    assert_int_equal(decide(e, 2, 1, stop).verdict, ADMISSION_NO_ROOM);
}

static void test_stops_under_way_are_waited_for_before_evicting_more(void **state)
{
    struct admission_engine e[] = {SERVING("going", 6000, 1), SERVING("idle", 6000, 2),
                                   WANTS("c", 8000)};
    e[0].stopping = true;
    e[0].serving = false;
    size_t stop[3];
    assert_int_equal(decide(e, 3, 2, stop).verdict, ADMISSION_WAIT);
    /* One that fits beside the stopping engine goes at once. */
    e[2].need_ram_mb = 4000;
    assert_int_equal(decide(e, 3, 2, stop).verdict, ADMISSION_START);
}

static void test_exclusive_group_stops_idle_members_and_waits_for_busy_ones(void **state)
{
    struct admission_engine e[] = {SERVING("g1", 100, 1), SERVING("g2", 100, 2),
                                   SERVING("other", 100, 3), SERVING("g3", 100, 4),
                                   WANTS("g4", 100)};
    e[0].group = e[1].group = e[3].group = e[4].group = "gpu0";
    e[1].busy = true;
    e[3].stopping = true;
    size_t stop[5];
    struct admission_decision d = decide(e, 5, 4, stop);
    assert_int_equal(d.verdict, ADMISSION_GROUP);
    assert_int_equal(d.nstop, 1);
    assert_int_equal(stop[0], 0);
    /* Once no member runs, the group is no obstacle. */
    e[0].running = e[1].running = e[3].running = false;
    assert_int_equal(decide(e, 5, 4, stop).verdict, ADMISSION_START);
}

static void test_envelope_auto_is_memtotal_minus_reserve_and_never_negative(void **state)
{
    struct config cfg = {0};
    cfg.node.ram_mb = CONFIG_AUTO;
    cfg.node.vram_mb = CONFIG_AUTO;
    cfg.node.reserve_mb = 2048;
    struct admission_envelope env;
    admission_envelope(&cfg, 16000, 24000, "1 GPU via NVML", &env);
    assert_int_equal(env.ram_mb, 16000 - 2048);
    assert_int_equal(env.vram_mb, 24000);
    assert_non_null(strstr(env.why, "MemTotal minus node.reserve_mb"));
    assert_non_null(strstr(env.why, "1 GPU via NVML"));
    admission_envelope(&cfg, 1000, 0, "", &env);
    assert_int_equal(env.ram_mb, 0);
    cfg.node.ram_mb = 4096;
    cfg.node.vram_mb = 0;
    admission_envelope(&cfg, 16000, 24000, NULL, &env);
    assert_int_equal(env.ram_mb, 4096);
    assert_int_equal(env.vram_mb, 0);
    assert_non_null(strstr(env.why, "node.ram_mb"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_that_fits_beside_running_engines),
        cmocka_unit_test(test_need_above_the_envelope_is_refused_naming_ram_or_vram),
        cmocka_unit_test(test_too_large_is_refused_before_anything_is_evicted),
        cmocka_unit_test(test_least_recently_used_idle_engine_is_evicted),
        cmocka_unit_test(test_busy_resident_and_remote_engines_are_never_evicted),
        cmocka_unit_test(test_a_starting_engine_holds_memory_but_cannot_be_evicted),
        cmocka_unit_test(test_stops_under_way_are_waited_for_before_evicting_more),
        cmocka_unit_test(test_exclusive_group_stops_idle_members_and_waits_for_busy_ones),
        cmocka_unit_test(test_envelope_auto_is_memtotal_minus_reserve_and_never_negative),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
