/* Unit tests of core/log's buffering: what is written when, and that order is kept. stderr (fd 2)
 * is pointed at a temporary file for each test and read back from it. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"

#define WAIT_DEADLINE_MS 5000 /* generous: the flush timer is LOG_FLUSH_MS */

struct fixture {
    uv_loop_t loop;
    FILE *capture;    /* the file fd 2 points at */
    int saved_stderr; /* fd 2 before the test */
};

static struct fixture fx;

static int setup(void **state)
{
    fflush(stderr);
    fx.capture = tmpfile();
    assert_non_null(fx.capture);
    fx.saved_stderr = dup(STDERR_FILENO);
    assert_true(fx.saved_stderr >= 0);
    assert_int_equal(dup2(fileno(fx.capture), STDERR_FILENO), STDERR_FILENO);
    assert_int_equal(uv_loop_init(&fx.loop), 0);
    log_set_level(LOGL_INFO);
    log_buffer_start(&fx.loop);
    return 0;
}

/* Points fd 2 back at the test's stderr, where cmocka reports failures. */
static void restore_stderr(void)
{
    if (fx.saved_stderr < 0)
        return;
    assert_int_equal(dup2(fx.saved_stderr, STDERR_FILENO), STDERR_FILENO);
    close(fx.saved_stderr);
    fx.saved_stderr = -1;
}

static int teardown(void **state)
{
    log_buffer_stop();
    restore_stderr();
    assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&fx.loop), 0);
    fclose(fx.capture);
    return 0;
}

/* Everything written to fd 2 so far. The caller frees it. */
static char *output(void)
{
    static const size_t cap = 1 << 20;
    char *s = calloc(1, cap + 1);
    assert_non_null(s);
    ssize_t n = pread(fileno(fx.capture), s, cap, 0);
    assert_true(n >= 0);
    return s;
}

/* Fails the test showing what was captured (cmocka's message goes to the real stderr). */
#define FAIL_SHOWING(s, ...)                                                                       \
    do {                                                                                           \
        restore_stderr();                                                                          \
        fprintf(stderr, "captured output:\n%s\n", (s));                                            \
        free(s);                                                                                   \
        fail_msg(__VA_ARGS__);                                                                     \
    } while (0)

static void assert_output_empty(void)
{
    char *s = output();
    if (s[0] != '\0')
        FAIL_SHOWING(s, "expected nothing written yet");
    free(s);
}

/* Asserts the messages appear in the output, each on a complete line, in this order. */
static void assert_lines_in_order(const char *const *msgs, size_t n)
{
    char *s = output();
    const char *at = s;
    for (size_t i = 0; i < n; i++) {
        char want[128];
        snprintf(want, sizeof(want), "\"msg\":\"%s\"", msgs[i]);
        const char *hit = strstr(at, want);
        if (hit == NULL)
            FAIL_SHOWING(s, "line \"%s\" missing or out of order", msgs[i]);
        if (strchr(hit, '\n') == NULL)
            FAIL_SHOWING(s, "line \"%s\" is not complete", msgs[i]);
        at = hit + strlen(want);
    }
    free(s);
}

/* ---- waiting on the loop for a condition, with a deadline ---- */

struct wait {
    uv_timer_t check;
    const char *needle;
    uint64_t deadline_ms;
    bool found;
};

static void check_cb(uv_timer_t *t)
{
    struct wait *w = t->data;
    char *s = output();
    w->found = strstr(s, w->needle) != NULL;
    free(s);
    if (w->found || uv_now(t->loop) > w->deadline_ms)
        uv_close((uv_handle_t *)t, NULL);
}

/* Runs the loop until needle appears in the output or WAIT_DEADLINE_MS passes. */
static bool run_until_output(const char *needle)
{
    struct wait w = {.needle = needle, .deadline_ms = uv_now(&fx.loop) + WAIT_DEADLINE_MS};
    uv_timer_init(&fx.loop, &w.check);
    w.check.data = &w;
    uv_timer_start(&w.check, check_cb, 5, 5);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    return w.found;
}

/* ---- tests ---- */

static void test_info_lines_wait_for_the_timer_and_keep_their_order(void **state)
{
    log_info("t", "first");
    log_info("t", "second");
    assert_output_empty();
    assert_true(run_until_output("second"));
    assert_lines_in_order((const char *const[]){"first", "second"}, 2);
}

static void test_a_warn_line_comes_out_at_once_after_what_was_buffered(void **state)
{
    log_info("t", "a");
    log_info("t", "b");
    log_warn("t", "c");
    assert_lines_in_order((const char *const[]){"a", "b", "c"}, 3);
}

static void test_an_error_line_comes_out_at_once_after_what_was_buffered(void **state)
{
    log_info("t", "a");
    log_error_errno("t", -ENOENT, "b");
    assert_lines_in_order((const char *const[]){"a", "b"}, 2);
}

static void test_a_full_buffer_is_written_before_the_line_that_does_not_fit(void **state)
{
    char pad[1001];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    size_t lines = LOG_BUFFER_BYTES / sizeof(pad) + 2; /* more than fits */
    for (size_t i = 0; i < lines; i++)
        log_info("t", "%s line %zu", pad, i);
    char *s = output();
    if (strlen(s) < LOG_BUFFER_BYTES / 2)
        FAIL_SHOWING(s, "a full buffer should have been written before any timer ran");
    free(s);
    log_flush();
    s = output();
    const char *at = s;
    for (size_t i = 0; i < lines; i++) {
        char want[32];
        snprintf(want, sizeof(want), " line %zu\"", i);
        const char *hit = strstr(at, want);
        if (hit == NULL)
            FAIL_SHOWING(s, "line %zu missing or out of order", i);
        at = hit + strlen(want);
    }
    free(s);
}

static void *other_thread(void *arg)
{
    log_info("t", "from a worker");
    return NULL;
}

static void test_a_line_from_another_thread_comes_out_at_once_in_order(void **state)
{
    pthread_t th;
    log_info("t", "from the loop");
    assert_int_equal(pthread_create(&th, NULL, other_thread, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_lines_in_order((const char *const[]){"from the loop", "from a worker"}, 2);
}

static void test_exit_writes_what_is_buffered(void **state)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        log_info("t", "last words");
        exit(0); /* atexit: log_flush */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(
        WIFEXITED(status)); /* its status may be LeakSanitizer's: the child skips teardown */
    assert_lines_in_order((const char *const[]){"last words"}, 1);
}

static void test_a_failed_assert_writes_what_is_buffered_before_its_message(void **state)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        log_info("t", "what led here");
        volatile int broken = 1;
        ASSERT(broken == 0);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    char *s = output();
    const char *line = strstr(s, "\"msg\":\"what led here\"}\n");
    const char *verdict = strstr(s, "assertion failed");
    if (line == NULL || verdict == NULL || line > verdict)
        FAIL_SHOWING(s, "the buffered line should come before the assertion message");
    free(s);
}

/* The fields are written by hand, not by json_dumps: they must read back as json_dumps writes
 * them (same text for scalars), and the whole line must be valid JSON. */
static void test_fields_are_written_as_json_dumps_writes_them(void **state)
{
    json_t *f =
        json_pack("{s:s, s:s, s:i, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:b, s:b, "
                  "s:n, s:[i, s], s:{s:i}}",
                  "plain", "GET /v1/models", "escaped",
                  "a\"b\\c\nd\te\x01"
                  "f \xc3\xa9",
                  "zero", 0, "big", (json_int_t)INT64_MAX, "neg", (json_int_t)INT64_MIN, "half",
                  0.5, "whole", 3.0, "tiny", 1e-7, "huge", 1e20, "neg_real", -2.5, "ms", 123.456789,
                  "long", 123456789.0, "t", 1, "f", 0, "nothing", "list", 1, "x", "obj", "k", 2);
    char *want = calloc(1, 4096);
    assert_non_null(want);
    const char *key;
    json_t *value;
    json_object_foreach(f, key, value)
    {
        char *v = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6));
        snprintf(want + strlen(want), 4096 - strlen(want), ",\"%s\":%s", key, v);
        free(v);
    }
    json_incref(f);
    log_write(LOGL_WARN, "t", NULL, 0, f, "fields");
    char *s = output();
    char *line_end = strchr(s, '\n');
    assert_non_null(line_end);
    *line_end = '\0';
    json_error_t err;
    json_t *back = json_loads(s, 0, &err);
    if (back == NULL)
        FAIL_SHOWING(s, "not JSON: %s", err.text);
    json_object_foreach(f, key, value)
    {
        json_t *got = json_object_get(back, key);
        /* Reals have 6 significant digits: the comparison with json_dumps below covers them. */
        if (!json_is_real(value) && !json_equal(got, value))
            FAIL_SHOWING(s, "field %s does not read back", key);
    }
    /* Byte for byte as json_dumps, but for control characters: \t is written \u0009. */
    char *tab = strstr(want, "\\t");
    assert_non_null(tab);
    memmove(tab + 6, tab + 2, strlen(tab + 2) + 1);
    memcpy(tab, "\\u0009", 6);
    if (strstr(s, want) == NULL) {
        fprintf(stdout, "want: %s\n", want);
        FAIL_SHOWING(s, "fields differ from json_dumps");
    }
    json_decref(back);
    json_decref(f);
    free(want);
    free(s);
}

/* Typed fields (the access line's) are written exactly as the same jansson object would be. */
static void test_typed_fields_are_written_as_their_jansson_twins(void **state)
{
    const struct log_field typed[] = {
        LOG_STR("path", "/v1/chat/completions"),
        LOG_STR("esc", "a\"b\n\x01"),
        LOG_STR("none", NULL),
        LOG_INT("zero", 0),
        LOG_INT("min", INT64_MIN),
        LOG_REAL("ms", 12.345678),
        LOG_REAL("neg", -1.0),
        LOG_BOOL("t", true),
        LOG_BOOL("f", false),
    };
    json_t *twin =
        json_pack("{s:s, s:s, s:n, s:I, s:I, s:f, s:f, s:b, s:b}", "path", "/v1/chat/completions",
                  "esc", "a\"b\n\x01", "none", "zero", (json_int_t)0, "min", (json_int_t)INT64_MIN,
                  "ms", 12.345678, "neg", -1.0, "t", 1, "f", 0);
    log_write(LOGL_WARN, "t", "req-1", -ENOENT, twin, "same %d", 1);
    log_write_fields(LOGL_WARN, "t", "req-1", -ENOENT, typed, ARRAY_SIZE(typed), "same %d", 1);
    char *s = output();
    char *first = s, *second = strchr(s, '\n');
    assert_non_null(second);
    *second++ = '\0';
    char *end = strchr(second, '\n');
    assert_non_null(end);
    *end = '\0';
    /* The time differs at most; compare from the level on. */
    char *a = strstr(first, "\"level\""), *b = strstr(second, "\"level\"");
    assert_non_null(a);
    assert_non_null(b);
    if (strcmp(a, b) != 0) {
        restore_stderr();
        fprintf(stderr, "jansson: %s\ntyped:   %s\n", a, b);
        free(s);
        fail_msg("typed fields differ from jansson's");
    }
    free(s);
}

/* Reals are written without printf in the range durations take: the text must be what
 * json_dumps writes, over many magnitudes. */
static void test_reals_are_written_as_json_dumps_writes_them(void **state)
{
    enum { N = 1000 }; /* about 20 KB: one line, not cut */
    srand(42);
    json_t *f = json_object();
    char key[16];
    for (int i = 0; i < N; i++) {
        double mag = pow(10.0, -4.0 + 11.0 * rand() / (double)RAND_MAX); /* 1e-4 .. 1e7 */
        double v = (i % 7 == 0 ? -mag : mag);
        if (i % 50 == 0)
            v = (double)(i / 50); /* whole numbers too */
        snprintf(key, sizeof(key), "r%d", i);
        json_object_set_new(f, key, json_real(v));
    }
    json_incref(f);
    log_write(LOGL_WARN, "t", NULL, 0, f, "reals");
    char *s = output();
    int wrong = 0;
    const char *k;
    json_t *value;
    json_object_foreach(f, k, value)
    {
        char *v = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6));
        char want[64];
        snprintf(want, sizeof(want), "\"%s\":%s%c", k, v, strcmp(k, "r999") == 0 ? '}' : ',');
        if (strstr(s, want) == NULL && wrong++ < 5)
            fprintf(stdout, "missing: %s\n", want);
        free(v);
    }
    free(s);
    json_decref(f);
    assert_int_equal(wrong, 0);
}

static void test_after_stop_each_line_comes_out_at_once(void **state)
{
    log_info("t", "buffered");
    log_buffer_stop();
    assert_lines_in_order((const char *const[]){"buffered"}, 1);
    log_info("t", "direct");
    assert_lines_in_order((const char *const[]){"buffered", "direct"}, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_info_lines_wait_for_the_timer_and_keep_their_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_warn_line_comes_out_at_once_after_what_was_buffered,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_an_error_line_comes_out_at_once_after_what_was_buffered, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_full_buffer_is_written_before_the_line_that_does_not_fit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_line_from_another_thread_comes_out_at_once_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_writes_what_is_buffered, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_failed_assert_writes_what_is_buffered_before_its_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fields_are_written_as_json_dumps_writes_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_typed_fields_are_written_as_their_jansson_twins, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reals_are_written_as_json_dumps_writes_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_after_stop_each_line_comes_out_at_once, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
