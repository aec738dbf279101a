/* Unit tests of core/metrics: the Prometheus text the /metrics page is made of. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "core/metrics.h"

static const char *const route_status[] = {"route", "status"};

static char *render(struct metrics *m)
{
    struct buf out;
    buf_init(&out, 1 << 24);
    assert_int_equal(metrics_render(m, &out), 0);
    return buf_steal(&out);
}

static void test_counter_series_are_labelled_and_summed(void **state)
{
    struct metrics *m = metrics_new();
    struct metrics_family *c = metrics_counter(m, "arun_x_total", "X things", 2, route_status);
    metrics_add(c, 1, (const char *const[]){"/a", "200"});
    metrics_add(c, 2, (const char *const[]){"/a", "200"});
    metrics_add(c, 1, (const char *const[]){"/b", "404"});
    char *s = render(m);
    assert_non_null(strstr(s, "# TYPE arun_x_total counter\n"));
    assert_non_null(strstr(s, "arun_x_total{route=\"/a\",status=\"200\"} 3\n"));
    assert_non_null(strstr(s, "arun_x_total{route=\"/b\",status=\"404\"} 1\n"));
    free(s);
    metrics_free(m);
}

static void test_histogram_buckets_are_cumulative(void **state)
{
    struct metrics *m = metrics_new();
    const double b[] = {0.1, 1};
    struct metrics_family *h = metrics_histogram(m, "arun_h_seconds", "H", 0, NULL, b, 2);
    metrics_observe(h, 0.05, NULL);
    metrics_observe(h, 0.5, NULL);
    metrics_observe(h, 5, NULL);
    char *s = render(m);
    assert_non_null(strstr(s, "arun_h_seconds_bucket{le=\"0.1\"} 1\n"));
    assert_non_null(strstr(s, "arun_h_seconds_bucket{le=\"1\"} 2\n"));
    assert_non_null(strstr(s, "arun_h_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(s, "arun_h_seconds_count 3\n"));
    assert_non_null(strstr(s, "arun_h_seconds_sum 5.55\n"));
    free(s);
    metrics_free(m);
}

static void test_label_values_are_escaped(void **state)
{
    struct metrics *m = metrics_new();
    static const char *const l[] = {"name"};
    struct metrics_family *g = metrics_gauge(m, "arun_g", "G", 1, l);
    metrics_set(g, 7, (const char *const[]){"a\"b\\c\nd"});
    char *s = render(m);
    assert_non_null(strstr(s, "arun_g{name=\"a\\\"b\\\\c\\nd\"} 7\n"));
    free(s);
    metrics_free(m);
}

static void test_series_count_is_capped(void **state)
{
    struct metrics *m = metrics_new();
    static const char *const l[] = {"k"};
    struct metrics_family *c = metrics_counter(m, "arun_many_total", "M", 1, l);
    char v[32];
    for (int i = 0; i < METRICS_MAX_SERIES + 50; i++) {
        snprintf(v, sizeof(v), "v%d", i);
        metrics_add(c, 1, (const char *const[]){v});
    }
    char *s = render(m);
    assert_non_null(strstr(s, "arun_many_total{k=\"_overflow\"} 50\n"));
    free(s);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_series_are_labelled_and_summed),
        cmocka_unit_test(test_histogram_buckets_are_cumulative),
        cmocka_unit_test(test_label_values_are_escaped),
        cmocka_unit_test(test_series_count_is_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
