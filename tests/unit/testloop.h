/*
 * testloop.h: waiting on a libuv loop in the unit tests, with a deadline instead of a sleep
 * (header-only: each test is one program). Include after <cmocka.h>.
 */
#ifndef ARUN_TESTS_TESTLOOP_H
#define ARUN_TESTS_TESTLOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/clock.h"

static inline void testloop_tick_cb(uv_timer_t *t)
{
    (void)t; /* only wakes the loop so that testloop_run_until re-checks its condition */
}

/* Runs loop until cond(arg) holds or ms pass. Returns whether it holds. */
static inline bool testloop_run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, uint64_t ms)
{
    uv_timer_t tick;
    uint64_t deadline = clock_mono_ms() + ms;
    assert_int_equal(uv_timer_init(loop, &tick), 0);
    assert_int_equal(uv_timer_start(&tick, testloop_tick_cb, 1, 1), 0);
    while (!cond(arg) && clock_mono_ms() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return cond(arg);
}

static inline void testloop_count_handle(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h) && h->type != UV_TIMER)
        (*(int *)arg)++;
}

/* Whether loop holds no live handle but timers (a condition for testloop_run_until). */
static inline bool testloop_no_handles(void *loop)
{
    int n = 0;
    uv_walk(loop, testloop_count_handle, &n);
    return n == 0;
}

#endif
