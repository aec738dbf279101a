/* Unit tests of cli/engines_cmd's renderings: the `arun engines` table and the progress line of
 * `arun engines start NAME --wait`, from engine objects as GET /v1/engines sends them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/engines_cmd.h"

#define NOW_MS 1800000000000LL /* 2027-01-15T08:00:00Z: rows are laid out against it */

static char *table_text(const char *list_json)
{
    json_t *list = json_loads(list_json, 0, NULL);
    assert_non_null(list);
    struct table t;
    struct buf b;
    engines_table_header(&t, engines_have_vram(list));
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) engines_table_row(&t, e, NOW_MS);
    buf_init(&b, 1 << 16);
    assert_int_equal(table_render(&t, 0, &b), 0);
    char *s = buf_steal(&b);
    buf_cleanup(&b);
    table_cleanup(&t);
    json_decref(list);
    return s;
}

static void test_the_table_shows_what_the_cards_show(void **state)
{
    char *s = table_text(
        "[{\"name\":\"qwen\",\"state\":\"ready\",\"models\":[\"qwen\",\"q\"],\"backend\":"
        "\"native\","
        "\"pid\":4242,\"port\":41000,\"memory\":{\"rss_mb\":412,\"declared_ram_mb\":2000},"
        "\"in_flight\":2,\"queued\":5,\"started_at\":\"2027-01-15T07:56:48Z\",\"restarts\":1},"
        "{\"name\":\"big\",\"state\":\"stopped\",\"models\":[\"big\"],\"backend\":\"docker\","
        "\"pid\":null,\"port\":null,\"memory\":{\"rss_mb\":0,\"declared_ram_mb\":0},"
        "\"in_flight\":0,\"queued\":0,\"started_at\":null,\"restarts\":0,"
        "\"reason\":\"not started yet\"}]");
    assert_string_equal(
        s, "NAME  STATE    MODELS  BACKEND  PID   PORT   MEM        IN-FLIGHT  QUEUED  "
           "UPTIME  RESTARTS  REASON\n"
           "qwen  ready    qwen,q  native   4242  41000  412/2000M  2          5       "
           "3m12s   1         -\n"
           "big   stopped  big     docker   -     -      -          0          0       "
           "-       0         not started yet\n");
    free(s);
}

static void test_absent_fields_read_as_a_dash_and_uptime_s_wins(void **state)
{
    /* An older server: no backend, no in_flight/queued; a newer one sends uptime_s. */
    char *s = table_text("[{\"name\":\"a\",\"state\":\"loading\",\"uptime_s\":75,"
                         "\"started_at\":\"2020-01-01T00:00:00Z\"}]");
    assert_non_null(strstr(s,
                           "\na     loading  -       -        -    -     -    -          -       "
                           "1m15s   -         -\n"));
    free(s);
}

static void test_a_vram_column_shows_when_an_engine_has_vram(void **state)
{
    char *s =
        table_text("[{\"name\":\"g\",\"state\":\"ready\",\"started_at\":\"2027-01-15T07:59:00Z\","
                   "\"memory\":{\"rss_mb\":100,\"declared_ram_mb\":1000,\"vram_mb\":5000,"
                   "\"declared_vram_mb\":8000}},{\"name\":\"c\",\"state\":\"stopped\"}]");
    assert_non_null(strstr(s, "MEM        VRAM        IN-FLIGHT"));
    assert_non_null(strstr(s, "100/1000M  5000/8000M"));
    free(s);
    s = table_text("[{\"name\":\"c\",\"state\":\"stopped\"}]");
    assert_null(strstr(s, "VRAM"));
    free(s);
}

static char *line_of(const struct engines_progress *p, int64_t now, bool with_log, size_t width)
{
    struct buf b;
    buf_init(&b, 1 << 16);
    engines_progress_line(p, now, with_log, width, &b);
    char *s = b.len ? buf_steal(&b) : strdup("");
    buf_cleanup(&b);
    return s;
}

static void test_progress_counts_against_the_expected_load_time(void **state)
{
    struct engines_progress p;
    engines_progress_init(&p, "qwen");
    json_t *e = json_loads("{\"state\":\"loading\",\"started_at\":\"2027-01-15T07:59:48Z\","
                           "\"expected_load_ms\":40000,\"last_log_line\":\"load_tensors: 40%\"}",
                           0, NULL);
    assert_true(engines_progress_take(&p, e, NOW_MS));
    char *s = line_of(&p, NOW_MS, true, 0);
    assert_string_equal(s, "qwen: loading 12 s of ~40 s | load_tensors: 40%");
    free(s);
    s = line_of(&p, NOW_MS, false, 0); /* the plain lines of a pipe */
    assert_string_equal(s, "qwen: loading 12 s of ~40 s");
    free(s);
    s = line_of(&p, NOW_MS, true, 20); /* cut to the terminal */
    assert_string_equal(s, "qwen: loading 12 s o");
    free(s);
    /* An event without the log line keeps the last one known; the same state is no change. */
    json_t *ev = json_loads("{\"engine\":\"qwen\",\"state\":\"loading\",\"reason\":\"\"}", 0, NULL);
    assert_false(engines_progress_take(&p, ev, NOW_MS + 1000));
    s = line_of(&p, NOW_MS + 1000, true, 0);
    assert_string_equal(s, "qwen: loading 13 s of ~40 s | load_tensors: 40%");
    free(s);
    json_decref(ev);
    /* The server's loading_elapsed_ms wins over its wall clock (no skew between the two). */
    ev = json_loads("{\"state\":\"loading\",\"started_at\":\"2020-01-01T00:00:00Z\","
                    "\"loading_since_ms\":1,\"loading_elapsed_ms\":7400}",
                    0, NULL);
    engines_progress_take(&p, ev, NOW_MS);
    s = line_of(&p, NOW_MS, false, 0);
    assert_string_equal(s, "qwen: loading 7 s of ~40 s");
    free(s);
    json_decref(ev);
    json_decref(e);
    engines_progress_cleanup(&p);
}

static void test_progress_without_an_expectation_and_the_end_states(void **state)
{
    struct engines_progress p;
    engines_progress_init(&p, "m");
    json_t *e = json_loads("{\"state\":\"starting\",\"reason\":\"spawned\"}", 0, NULL);
    assert_true(engines_progress_take(&p, e, NOW_MS)); /* no started_at: since first seen */
    char *s = line_of(&p, NOW_MS + 3000, true, 0);
    assert_string_equal(s, "m: starting 3 s (spawned)");
    free(s);
    json_decref(e);
    /* last_load_ms stands in for the expectation before the server learns one. */
    e = json_loads("{\"state\":\"failed\",\"reason\":\"exited with code 1\",\"last_load_ms\":900,"
                   "\"last_log_line\":\"boom\\r\\u001b[2J\"}",
                   0, NULL);
    assert_true(engines_progress_take(&p, e, NOW_MS + 4000));
    assert_int_equal(p.expected_ms, 900);
    s = line_of(&p, NOW_MS + 4000, true, 0);
    assert_string_equal(s, "m: failed (exited with code 1)");
    free(s);
    json_decref(e);
    e = json_loads("{\"state\":\"ready\",\"reason\":null}", 0, NULL);
    assert_true(engines_progress_take(&p, e, NOW_MS + 5000));
    s = line_of(&p, NOW_MS + 5000, true, 0);
    assert_string_equal(s, "m: ready");
    free(s);
    json_decref(e);
    engines_progress_cleanup(&p);
}

static void test_arun_notes_are_not_shown_as_the_log_line(void **state)
{
    struct engines_progress p;
    engines_progress_init(&p, "m");
    json_t *e = json_loads("{\"state\":\"loading\",\"reason\":\"loading\","
                           "\"last_log_line\":\"arun: loading: loading\"}",
                           0, NULL);
    engines_progress_take(&p, e, NOW_MS);
    char *s = line_of(&p, NOW_MS, true, 0);
    assert_string_equal(s, "m: loading 0 s (loading)");
    free(s);
    json_decref(e);
    engines_progress_cleanup(&p);
}

static void test_a_log_line_cannot_break_the_progress_line(void **state)
{
    struct engines_progress p;
    engines_progress_init(&p, "m");
    json_t *e =
        json_loads("{\"state\":\"loading\",\"last_log_line\":\"a\\rb\\u001b[2Jc\\nd\"}", 0, NULL);
    engines_progress_take(&p, e, NOW_MS);
    char *s = line_of(&p, NOW_MS, true, 0);
    assert_string_equal(s, "m: loading 0 s | a b [2Jc d");
    free(s);
    json_decref(e);
    engines_progress_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_table_shows_what_the_cards_show),
        cmocka_unit_test(test_absent_fields_read_as_a_dash_and_uptime_s_wins),
        cmocka_unit_test(test_a_vram_column_shows_when_an_engine_has_vram),
        cmocka_unit_test(test_progress_counts_against_the_expected_load_time),
        cmocka_unit_test(test_progress_without_an_expectation_and_the_end_states),
        cmocka_unit_test(test_arun_notes_are_not_shown_as_the_log_line),
        cmocka_unit_test(test_a_log_line_cannot_break_the_progress_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
