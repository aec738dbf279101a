/*
 * test_audit_cmd.c: what `arun audit --since` sends the server (cli/audit_cmd.h): epoch
 * milliseconds and ISO-8601 UTC times as they are, durations back from now as epoch
 * milliseconds, anything else refused before a request is made.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "cli/audit_cmd.h"

#define NOW_MS 1796637600000 /* 2026-12-07T10:00:00Z */

static void expect_since(const char *value, const char *want)
{
    char *out = NULL;
    if (audit_cmd_since(value, NOW_MS, &out) != 0)
        fail_msg("--since %s refused", value);
    assert_string_equal(out, want);
    free(out);
}

static void test_since_passes_times_and_turns_durations_into_epoch_ms(void **state)
{
    expect_since("1796637600000", "1796637600000");
    expect_since("2026-12-07T10:00:00Z", "2026-12-07T10:00:00Z");
    expect_since("2026-12-07T10:00:00.250Z", "2026-12-07T10:00:00.250Z");
    expect_since("90s", "1796637510000");
    expect_since("15m", "1796636700000");
    expect_since("2h", "1796630400000");
    expect_since("7d", "1796032800000");
    expect_since("999999999d", "0"); /* before the epoch: from the first event */
}

static void test_since_refuses_what_the_server_would(void **state)
{
    static const char *const bad[] = {"",   "yesterday",  "2026-12-07", "2026-12-07T10:00:00",
                                      "5w", "-5m",        "1.5h",       "2026-12-07T10:00:00+01:00",
                                      "h",  "1234567890d"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *out = NULL;
        if (audit_cmd_since(bad[i], NOW_MS, &out) != -EINVAL)
            fail_msg("--since \"%s\" accepted as \"%s\"", bad[i], out ? out : "");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_since_passes_times_and_turns_durations_into_epoch_ms),
        cmocka_unit_test(test_since_refuses_what_the_server_would),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
