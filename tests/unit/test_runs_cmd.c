/* Unit tests of cli/runs_cmd's pure parts: the arguments of `arun runs`, a row of its table and
 * the layout of `arun runs show`. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/client.h"
#include "cli/runs_cmd.h"
#include "cli/watch.h"

#define NOW_MS 1800000000000LL /* a fixed wall clock: rows are laid out against it */
#define NOW_S (NOW_MS / 1000)

/* Parses a NULL-terminated argument list after "runs"; usage errors' text goes to stderr. */
static int parse(struct runs_opts *o, ...)
{
    char *argv[16] = {"runs"};
    int argc = 1;
    va_list ap;
    va_start(ap, o);
    for (char *a = va_arg(ap, char *); a != NULL; a = va_arg(ap, char *))
        argv[argc++] = a;
    va_end(ap);
    /* Usage errors print the whole usage: keep it out of the test's own output. */
    fflush(stderr);
    int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
    dup2(null, STDERR_FILENO);
    int rc = runs_cmd_parse(argc, argv, o);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(null);
    close(saved);
    return rc;
}

/* Whether s has a line "KEY<spaces>VALUE". */
static bool has_line(const char *s, const char *key, const char *value)
{
    for (const char *p = s; (p = strstr(p, key)) != NULL; p++) {
        if (p != s && p[-1] != '\n')
            continue;
        const char *v = p + strlen(key);
        if (*v != ' ')
            continue;
        while (*v == ' ')
            v++;
        if (strncmp(v, value, strlen(value)) == 0 && v[strlen(value)] == '\n')
            return true;
    }
    return false;
}

static void test_no_arguments_list_the_newest_runs(void **state)
{
    struct runs_opts o;
    assert_int_equal(parse(&o, NULL), RUNS_PROCEED);
    assert_int_equal(o.action, RUNS_LIST);
    assert_null(o.status);
    assert_int_equal(o.limit, RUNS_LIMIT_DEFAULT);
    assert_false(o.json);
}

static void test_list_options_in_both_forms(void **state)
{
    struct runs_opts o;
    assert_int_equal(parse(&o, "--status", "failed", "-n", "0", "--json", NULL), RUNS_PROCEED);
    assert_string_equal(o.status, "failed");
    assert_int_equal(o.limit, 0);
    assert_true(o.json);
    assert_int_equal(parse(&o, "--status=in_progress", "--limit=5", "--server=http://h:1", NULL),
                     RUNS_PROCEED);
    assert_string_equal(o.status, "in_progress");
    assert_int_equal(o.limit, 5);
    assert_string_equal(o.server, "http://h:1");
}

static void test_sub_verbs_take_one_id(void **state)
{
    struct runs_opts o;
    assert_int_equal(parse(&o, "show", "resp_1", "--json", NULL), RUNS_PROCEED);
    assert_int_equal(o.action, RUNS_SHOW);
    assert_string_equal(o.id, "resp_1");
    assert_int_equal(parse(&o, "cancel", "resp_2", NULL), RUNS_PROCEED);
    assert_int_equal(o.action, RUNS_CANCEL);
    assert_int_equal(parse(&o, "watch", "resp_3", "-v", "--reconnect-timeout", "5", NULL),
                     RUNS_PROCEED);
    assert_int_equal(o.action, RUNS_WATCH);
    assert_string_equal(o.id, "resp_3");
    assert_true(o.verbose);
    assert_int_equal(o.reconnect_s, 5);
    assert_int_equal(parse(&o, "watch", "resp_3", NULL), RUNS_PROCEED);
    assert_int_equal(o.reconnect_s, WATCH_RECONNECT_DEFAULT_S);
}

static void test_bad_usage_exits_2(void **state)
{
    struct runs_opts o;
    assert_int_equal(parse(&o, "--status", "done", NULL), CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "--status", NULL), CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "-n", "-1", NULL), CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "-n", "ten", NULL), CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "show", NULL), CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "show", "a", "b", NULL), CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "stop", "resp_1", NULL), CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "--frobnicate", NULL), CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "show", "resp_1", "--status", "failed", NULL), CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "show", "resp_1", "-v", NULL), CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "watch", "resp_1", "--json", NULL), CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "watch", "resp_1", "--reconnect-timeout", "0", NULL),
                     CLIENT_EXIT_USAGE);
    assert_int_equal(parse(&o, "--server", NULL), CLIENT_EXIT_USAGE);
}

static char *row_text(const char *response_json)
{
    json_t *r = json_loads(response_json, 0, NULL);
    assert_non_null(r);
    struct table t;
    struct buf b;
    json_t *list = json_pack("[O]", r);
    runs_table_header(&t, runs_have_tenant(list));
    json_decref(list);
    runs_table_row(&t, r, NOW_MS);
    buf_init(&b, 1 << 16);
    assert_int_equal(table_render(&t, 0, &b), 0);
    char *s = buf_steal(&b);
    buf_cleanup(&b);
    table_cleanup(&t);
    json_decref(r);
    return s;
}

static void test_a_row_shows_age_and_the_provenance_duration(void **state)
{
    char json[256];
    snprintf(json, sizeof(json),
             "{\"id\":\"resp_abc\",\"status\":\"completed\",\"model\":\"qwen\",\"created_at\":%lld,"
             "\"completed_at\":%lld,\"arun\":{\"timings\":{\"total_ms\":1234}}}",
             NOW_S - 192, NOW_S - 190);
    char *s = row_text(json);
    assert_string_equal(s, "ID        STATUS     MODEL  CREATED    QUEUED  TTFT  TOK/S  DURATION\n"
                           "resp_abc  completed  qwen   3m12s ago  -       -     -      1.2s\n");
    free(s);
}

static void test_a_row_shows_queued_ttft_and_tokens_per_second(void **state)
{
    char json[512];
    /* 40 tokens in 2000 ms of generation: 5000 total - 1500 queued - 1500 to the first. */
    snprintf(json, sizeof(json),
             "{\"id\":\"r\",\"status\":\"completed\",\"model\":\"m\",\"created_at\":%lld,"
             "\"usage\":{\"output_tokens\":40},"
             "\"arun\":{\"timings\":{\"queued_ms\":1500,\"ttft_ms\":1500.4,\"total_ms\":5000}}}",
             NOW_S - 10);
    char *s = row_text(json);
    assert_string_equal(s, "ID  STATUS     MODEL  CREATED  QUEUED  TTFT  TOK/S  DURATION\n"
                           "r   completed  m      10s ago  1.5s    1.5s  20.0   5.0s\n");
    free(s);
    /* The server's own rate wins; under a second reads in ms. */
    snprintf(json, sizeof(json),
             "{\"id\":\"r\",\"status\":\"completed\",\"model\":\"m\",\"created_at\":%lld,"
             "\"usage\":{\"output_tokens\":40},\"arun\":{\"timings\":{\"queued_ms\":0,"
             "\"ttft_ms\":12.6,\"total_ms\":500,\"tokens_per_s\":33.33}}}",
             NOW_S - 10);
    s = row_text(json);
    assert_non_null(strstr(s, "\nr   completed  m      10s ago  0ms     13ms  33.3   0.5s\n"));
    free(s);
}

static void test_a_tenant_column_shows_only_when_the_list_carries_tenants(void **state)
{
    char *s = row_text("{\"id\":\"r\",\"status\":\"queued\",\"model\":\"m\",\"tenant\":\"acme\"}");
    assert_non_null(strstr(s, "ID  STATUS  MODEL  TENANT  CREATED"));
    assert_non_null(strstr(s, "\nr   queued  m      acme    -"));
    free(s);
    s = row_text("{\"id\":\"r\",\"status\":\"queued\",\"model\":\"m\"}");
    assert_null(strstr(s, "TENANT"));
    free(s);
}

static void test_a_row_without_provenance_uses_completed_at(void **state)
{
    char json[256];
    snprintf(json, sizeof(json),
             "{\"id\":\"r\",\"status\":\"failed\",\"model\":\"m\",\"created_at\":%lld,"
             "\"completed_at\":%lld}",
             NOW_S - 3700, NOW_S - 3600);
    char *s = row_text(json);
    assert_non_null(strstr(s, "r   failed  m      1h01m ago  -       -     -      1m40s\n"));
    free(s);
}

static void test_a_running_row_counts_the_time_so_far(void **state)
{
    char json[256];
    snprintf(json, sizeof(json),
             "{\"id\":\"r\",\"status\":\"in_progress\",\"model\":\"m\",\"created_at\":%lld}",
             NOW_S - 42);
    char *s = row_text(json);
    assert_non_null(strstr(s, "42s ago  -       -     -      42s\n"));
    free(s);
}

static void test_a_row_of_a_malformed_response_shows_placeholders(void **state)
{
    char *s = row_text("{\"status\":\"cancelled\"}");
    assert_non_null(strstr(s, "\n?   cancelled  -      -        -       -     -      -\n"));
    free(s);
}

static void test_show_lays_out_fields_provenance_and_output(void **state)
{
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"id\":\"resp_abc\",\"object\":\"response\",\"status\":\"completed\",\"model\":"
             "\"qwen\",\"created_at\":%lld,\"background\":true,\"error\":null,"
             "\"usage\":{\"input_tokens\":12,\"output_tokens\":40,\"total_tokens\":52},"
             "\"metadata\":{\"user\":\"ann\"},"
             "\"arun\":{\"engine\":\"qwen\",\"timings\":{\"ttft_ms\":12},\"fallbacks\":[],"
             "\"continued\":false},"
             "\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":"
             "\"Hello\"}]},{\"type\":\"function_call\",\"name\":\"f\",\"arguments\":\"{}\","
             "\"call_id\":\"call_1\"}]}",
             NOW_S - 60);
    json_t *r = json_loads(json, 0, NULL);
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(runs_show_render(r, NOW_MS, &b), 0);
    const char *s = buf_cstr(&b);
    assert_true(has_line(s, "id", "resp_abc"));
    assert_true(has_line(s, "status", "completed"));
    assert_non_null(strstr(s, " UTC (1m00s ago)\n"));
    assert_true(has_line(s, "background", "yes"));
    assert_true(has_line(s, "usage", "12 input, 40 output, 52 total tokens"));
    assert_true(has_line(s, "metadata.user", "ann"));
    assert_true(has_line(s, "arun.engine", "qwen"));
    assert_true(has_line(s, "arun.timings.ttft_ms", "12"));
    assert_true(has_line(s, "arun.continued", "no"));
    assert_true(has_line(s, "arun.fallbacks", "[]"));
    assert_null(strstr(s, "error"));
    assert_non_null(strstr(s, "\n\nHello\n[function call f({}) call_id=call_1]\n"));
    buf_cleanup(&b);
    json_decref(r);
}

static void test_show_of_a_failed_run_says_why(void **state)
{
    json_t *r = json_loads("{\"id\":\"r\",\"status\":\"failed\",\"error\":{\"code\":"
                           "\"interrupted\",\"message\":\"arun restarted\"},\"output\":[]}",
                           0, NULL);
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(runs_show_render(r, NOW_MS, &b), 0);
    assert_true(has_line(buf_cstr(&b), "error", "arun restarted (interrupted)"));
    buf_cleanup(&b);
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_arguments_list_the_newest_runs),
        cmocka_unit_test(test_list_options_in_both_forms),
        cmocka_unit_test(test_sub_verbs_take_one_id),
        cmocka_unit_test(test_bad_usage_exits_2),
        cmocka_unit_test(test_a_row_shows_age_and_the_provenance_duration),
        cmocka_unit_test(test_a_row_without_provenance_uses_completed_at),
        cmocka_unit_test(test_a_row_shows_queued_ttft_and_tokens_per_second),
        cmocka_unit_test(test_a_tenant_column_shows_only_when_the_list_carries_tenants),
        cmocka_unit_test(test_a_running_row_counts_the_time_so_far),
        cmocka_unit_test(test_a_row_of_a_malformed_response_shows_placeholders),
        cmocka_unit_test(test_show_lays_out_fields_provenance_and_output),
        cmocka_unit_test(test_show_of_a_failed_run_says_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
