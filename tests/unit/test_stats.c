/*
 * test_stats.c: the rings behind GET /v1/stats (src/gateway/stats.c) on a clock the test moves:
 * the last bucket counts what just ended, buckets roll every 10 s and an hour later a cell is
 * reused; a bucket without samples is null (and zero requests once the rings run); percentiles
 * on known samples; the window clipped to what was asked; node samples.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "gateway/stats.h"

/* 2024-03-10 23:59:00 UTC, on a bucket's start. */
#define T0_MS 1710115140000ll

static const char *const NAMES[] = {"qwen", "llama"};

static json_t *series(json_t *j, const char *engine, const char *key)
{
    json_t *a = json_object_get(json_object_get(json_object_get(j, "engines"), engine), key);
    assert_non_null(a);
    return a;
}

static json_t *last(json_t *a)
{
    return json_array_get(a, json_array_size(a) - 1);
}

static void req(struct stats *s, size_t engine, int64_t now_ms, double ttft, double wait,
                int64_t tokens)
{
    struct stats_request r = {.ttft_ms = ttft, .queue_wait_ms = wait, .output_tokens = tokens};
    stats_record(s, engine, now_ms, &r);
}

static void test_last_bucket_counts_what_just_ended(void **state)
{
    struct stats *s = stats_new(NAMES, 2, T0_MS);
    req(s, 0, T0_MS + 3000, 40, 5, 100);
    req(s, 0, T0_MS + 4000, 40, 5, 100);
    req(s, 1, T0_MS + 4000, -1, -1, 0); /* not a stream, never dispatched */
    json_t *j = stats_to_json(s, T0_MS + 5000, 60);
    assert_int_equal(json_integer_value(json_object_get(j, "window_s")), 60);
    assert_int_equal(json_integer_value(json_object_get(j, "step_s")), 10);
    json_t *t = series(j, "qwen", "t");
    assert_int_equal(json_array_size(t), 6);
    assert_int_equal(json_integer_value(last(t)), T0_MS / 1000);
    /* 2 requests and 200 tokens in the 5 s the current bucket has run. */
    assert_float_equal(json_real_value(last(series(j, "qwen", "requests_per_s"))), 0.4, 1e-9);
    assert_float_equal(json_real_value(last(series(j, "qwen", "tokens_per_s"))), 40, 1e-9);
    assert_float_equal(json_real_value(last(series(j, "qwen", "ttft_p50_ms"))), 40, 1e-3);
    assert_float_equal(json_real_value(last(series(j, "qwen", "queue_wait_p50_ms"))), 5, 1e-3);
    /* llama's request counts; it had no TTFT and no wait: those are null, not 0. */
    assert_float_equal(json_real_value(last(series(j, "llama", "requests_per_s"))), 0.2, 1e-9);
    assert_true(json_is_null(last(series(j, "llama", "ttft_p50_ms"))));
    assert_true(json_is_null(last(series(j, "llama", "queue_wait_p50_ms"))));
    /* Before the rings started there is no data, not zero requests. */
    assert_true(json_is_null(json_array_get(series(j, "qwen", "requests_per_s"), 0)));
    json_decref(j);
    stats_free(s);
}

static void test_buckets_roll_and_are_reused_an_hour_later(void **state)
{
    struct stats *s = stats_new(NAMES, 2, T0_MS);
    req(s, 0, T0_MS + 1000, 10, 1, 10);
    req(s, 0, T0_MS + 11000, 20, 2, 20);
    req(s, 0, T0_MS + 12000, 20, 2, 20);
    json_t *j = stats_to_json(s, T0_MS + 15000, 60);
    json_t *rps = series(j, "qwen", "requests_per_s");
    /* The bucket before the last: one request over its 10 s; the last: two over 5 s. */
    assert_float_equal(json_real_value(json_array_get(rps, 4)), 0.1, 1e-9);
    assert_float_equal(json_real_value(json_array_get(rps, 5)), 0.4, 1e-9);
    assert_float_equal(json_real_value(json_array_get(series(j, "qwen", "ttft_p50_ms"), 4)), 10,
                       1e-3);
    json_decref(j);

    /* An hour and 10 s on: the first bucket's cell now holds the new slot, reset. */
    int64_t later = T0_MS + 3600000 + 1000;
    req(s, 0, later, 300, 3, 30);
    j = stats_to_json(s, later + 4000, 3600);
    rps = series(j, "qwen", "requests_per_s");
    assert_int_equal(json_array_size(rps), 360);
    assert_float_equal(json_real_value(last(rps)), 0.2, 1e-9); /* one request in 5 s */
    assert_float_equal(json_real_value(last(series(j, "qwen", "ttft_p50_ms"))), 300, 1e-3);
    /* The oldest bucket shown is T0 + 10 s (T0's own fell out of the hour): two requests. */
    assert_int_equal(json_integer_value(json_array_get(series(j, "qwen", "t"), 0)),
                     T0_MS / 1000 + 10);
    assert_float_equal(json_real_value(json_array_get(rps, 0)), 0.2, 1e-9);
    /* A bucket in between with no requests: zero requests, null percentiles. */
    assert_float_equal(json_real_value(json_array_get(rps, 100)), 0, 1e-9);
    assert_true(json_is_null(json_array_get(series(j, "qwen", "ttft_p95_ms"), 100)));
    json_decref(j);

    /* A clock that went back more than the ring is dropped, not mixed into a newer bucket. */
    req(s, 0, T0_MS + 1000, 1, 1, 1);
    j = stats_to_json(s, later + 4000, 60);
    assert_float_equal(json_real_value(last(series(j, "qwen", "requests_per_s"))), 0.2, 1e-9);
    json_decref(j);
    stats_free(s);
}

static void test_percentiles_on_known_samples(void **state)
{
    struct stats *s = stats_new(NAMES, 1, T0_MS);
    /* 19 at 100 ms and one at 1000 ms: p50 and p95 are 100 (nearest rank 10 and 19). */
    for (int i = 0; i < 19; i++)
        req(s, 0, T0_MS + 1000, 100, 0.5, 1);
    req(s, 0, T0_MS + 1000, 1000, 0.5, 1);
    json_t *j = stats_to_json(s, T0_MS + 2000, 60);
    assert_float_equal(json_real_value(last(series(j, "qwen", "ttft_p50_ms"))), 100, 1e-3);
    assert_float_equal(json_real_value(last(series(j, "qwen", "ttft_p95_ms"))), 100, 1e-3);
    assert_float_equal(json_real_value(last(series(j, "qwen", "queue_wait_p50_ms"))), 0.5, 1e-3);
    json_decref(j);

    /* 1..100 ms in another bucket: p50 near 50 and p95 near 95, within a bin (12%). */
    for (int i = 1; i <= 100; i++)
        req(s, 0, T0_MS + 21000, i, i, 1);
    j = stats_to_json(s, T0_MS + 22000, 60);
    double p50 = json_real_value(last(series(j, "qwen", "ttft_p50_ms")));
    double p95 = json_real_value(last(series(j, "qwen", "ttft_p95_ms")));
    assert_true(p50 >= 50 * 0.88 && p50 <= 50 * 1.12);
    assert_true(p95 >= 95 * 0.88 && p95 <= 100);
    /* Beyond the last bin (an hour): clamped to the largest sample, not to the bin's edge. */
    req(s, 0, T0_MS + 31000, 3600000, 3600000, 1);
    json_decref(j);
    j = stats_to_json(s, T0_MS + 32000, 60);
    assert_float_equal(json_real_value(last(series(j, "qwen", "ttft_p95_ms"))), 3600000, 1);
    json_decref(j);
    stats_free(s);
}

static void test_window_clipping_and_node_samples(void **state)
{
    struct stats *s = stats_new(NAMES, 2, T0_MS - 3600000);
    stats_node(s, T0_MS + 1000, 2000, -1);
    stats_node(s, T0_MS + 6000, 2500, -1); /* the last sample of a bucket is its value */
    req(s, 0, T0_MS - 90000, 5, 5, 5);     /* 90 s ago: outside a 60 s window */
    json_t *j = stats_to_json(s, T0_MS + 9999, 60);
    json_t *t = json_object_get(json_object_get(j, "node"), "t");
    assert_int_equal(json_array_size(t), 6);
    assert_int_equal(json_integer_value(json_array_get(t, 0)), T0_MS / 1000 - 50);
    json_t *ram = json_object_get(json_object_get(j, "node"), "ram_used_mb");
    assert_int_equal(json_integer_value(last(ram)), 2500);
    assert_true(json_is_null(json_array_get(ram, 0)));
    assert_true(json_is_null(last(json_object_get(json_object_get(j, "node"), "vram_used_mb"))));
    json_t *rps = series(j, "qwen", "requests_per_s");
    for (size_t i = 0; i < json_array_size(rps); i++)
        assert_float_equal(json_real_value(json_array_get(rps, i)), 0, 1e-9);
    json_decref(j);
    /* The same request is in a 120 s window. */
    j = stats_to_json(s, T0_MS + 9999, 120);
    rps = series(j, "qwen", "requests_per_s");
    assert_int_equal(json_array_size(rps), 12);
    assert_float_equal(json_real_value(json_array_get(rps, 2)), 0.1, 1e-9);
    json_decref(j);
    stats_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_bucket_counts_what_just_ended),
        cmocka_unit_test(test_buckets_roll_and_are_reused_an_hour_later),
        cmocka_unit_test(test_percentiles_on_known_samples),
        cmocka_unit_test(test_window_clipping_and_node_samples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
