/* Unit tests of engines/manifest: expanding ${…} in a command's words. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engines/manifest.h"

static const struct manifest_vars vars = {.name = "m", .port = 8081, .data_dir = "/d"};

static void test_expand_replaces_variables(void **state)
{
    struct buf err;
    buf_init(&err, 1024);
    setenv("ARUN_TEST_DIR", "/models", 1);
    char *out = NULL;
    assert_int_equal(manifest_expand("${ARUN_TEST_DIR}/${NAME}:${PORT}$$", &vars, &out, &err), 0);
    assert_string_equal(out, "/models/m:8081$");
    free(out);
    buf_cleanup(&err);
}

/* A word the environment makes longer than the cap is refused, never run with a part missing. */
static void test_expand_past_the_cap_is_refused(void **state)
{
    struct buf err;
    buf_init(&err, 1024);
    char *big = malloc(MANIFEST_EXPAND_MAX + 1);
    memset(big, 'x', MANIFEST_EXPAND_MAX);
    big[MANIFEST_EXPAND_MAX] = '\0';
    setenv("ARUN_TEST_BIG", big, 1);
    free(big);
    char *out = NULL;
    assert_int_equal(manifest_expand("--x=${ARUN_TEST_BIG}", &vars, &out, &err), -E2BIG);
    assert_null(out);
    assert_non_null(strstr(buf_cstr(&err), "expands to more than"));
    unsetenv("ARUN_TEST_BIG");
    buf_cleanup(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand_replaces_variables),
        cmocka_unit_test(test_expand_past_the_cap_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
