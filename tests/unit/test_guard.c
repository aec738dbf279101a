/* Unit tests of http/guard: which request targets and request heads are refused before routing,
 * and which pass untouched. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "http/guard.h"

static int target(const char *t)
{
    const char *why = NULL;
    int rc = http_guard_target(t, strlen(t), &why);
    if (rc != 0)
        assert_non_null(why);
    return rc;
}

static int framing(const char *head)
{
    const char *why = NULL;
    int rc = http_guard_framing(head, strlen(head), &why);
    if (rc != 0)
        assert_non_null(why);
    return rc;
}

static void test_plain_paths_and_queries_pass(void **state)
{
    static const char *const ok[] = {
        "/healthz",
        "/v1/models",
        "/v1/engines/qwen2.5-7b/start",
        "/v1/responses/resp_1/input_items?after=msg_1&limit=20&order=asc",
        "/v1/engines/a..b",          /* dots inside a segment are a name */
        "/v1/engines/...",           /* three dots are a name too */
        "/v1/responses/%ff%fe",      /* not UTF-8: a missing id, the handler's 404 */
        "/v1/responses?after=a%2Fb", /* an encoded '/' in the query is a value */
        "/v1/responses?after=..",    /* and so are dots */
        "/v1/events?after=%20",
        "/",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (target(ok[i]) != 0)
            fail_msg("refused: %s", ok[i]);
}

static void test_targets_that_are_not_plain_paths_are_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "*",
        "http://evil.example/v1/models",
        "127.0.0.1:8080",
        "/v1/../healthz",
        "/..",
        "/v1/responses/..",
        "/v1/./models",
        "/./healthz",
        "/v1/%2e%2e/metrics",
        "/v1/%2E%2e/metrics",
        "/v1/.%2e/metrics",
        "/v1/%2e/models",
        "/v1/engines/qwen%2Fstart",
        "/v1/engines/qwen%2fstart",
        "/v1/engines/qwen%5C..",
        "/v1/models\\..\\healthz",
        "/v1/responses/abc%00def",
        "/v1/responses/a%0d%0aX-Injected:%20yes",
        "/v1/responses?after=%00",
        "/v1/responses?after=%7f",
        "/v1/responses?after=%1F",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (target(bad[i]) != -EINVAL)
            fail_msg("passed: %s", bad[i]);
}

static void test_escapes_cut_at_the_end_are_not_read_past_it(void **state)
{
    const char *why;
    /* "/a%2" followed by "e" outside the length: the escape is incomplete, so it is literal */
    assert_int_equal(http_guard_target("/a%2e", 4, &why), 0);
    assert_int_equal(http_guard_target("/%2", 3, &why), 0);
    assert_int_equal(http_guard_target("/%", 2, &why), 0);
}

#define LINE "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"

static void test_one_framing_field_passes(void **state)
{
    assert_int_equal(framing(LINE "Content-Length: 2\r\n\r\n{}"), 0);
    assert_int_equal(framing(LINE "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), 0);
    assert_int_equal(framing(LINE "\r\n"), 0);
    /* h2o lower-cases field names in place before the guard reads them; either case counts */
    assert_int_equal(framing(LINE "content-length: 2\r\nX-Content-Length: 3\r\n\r\n{}"), 0);
}

static void test_conflicting_framing_is_refused(void **state)
{
    static const char *const bad[] = {
        LINE "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        LINE "transfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        LINE "Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
        LINE "Content-Length: 5\r\nCONTENT-LENGTH: 5\r\n\r\n",
        LINE "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n", /* no end: does not parse */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (framing(bad[i]) != -EINVAL)
            fail_msg("passed: %s", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_paths_and_queries_pass),
        cmocka_unit_test(test_targets_that_are_not_plain_paths_are_refused),
        cmocka_unit_test(test_escapes_cut_at_the_end_are_not_read_past_it),
        cmocka_unit_test(test_one_framing_field_passes),
        cmocka_unit_test(test_conflicting_framing_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
