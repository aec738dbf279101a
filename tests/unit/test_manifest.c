/* Unit tests of engines/manifest: expanding ${…} in a command's words, and the data_dir id that marks an engine's process and container. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Two aruns with the same relative data_dir in two working directories are two data_dirs: their
 * engines' markers and containers differ, so neither takes the other's; the same directory
 * spelled two ways is one. */
static void test_the_data_dir_id_is_the_directory_not_its_spelling(void **state)
{
    char a[] = "/tmp/manifest-a-XXXXXX", b[] = "/tmp/manifest-b-XXXXXX";
    char cwd[4096], ma[MANIFEST_MARKER_MAX], mb[MANIFEST_MARKER_MAX], m2[MANIFEST_MARKER_MAX];
    char ca[96], cb[96];

    assert_non_null(mkdtemp(a));
    assert_non_null(mkdtemp(b));
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    char *da = NULL, *db = NULL;
    assert_true(asprintf(&da, "%s/arun-data", a) > 0);
    assert_true(asprintf(&db, "%s/arun-data", b) > 0);
    assert_int_equal(mkdir(da, 0700), 0);
    assert_int_equal(mkdir(db, 0700), 0);

    assert_int_equal(chdir(a), 0);
    manifest_marker("./arun-data", "qwen", ma, sizeof(ma));
    manifest_container_name("./arun-data", "qwen", ca, sizeof(ca));
    manifest_marker(da, "qwen", m2, sizeof(m2)); /* the same directory, spelled absolute */
    assert_int_equal(chdir(b), 0);
    manifest_marker("./arun-data", "qwen", mb, sizeof(mb));
    manifest_container_name("./arun-data", "qwen", cb, sizeof(cb));
    assert_int_equal(chdir(cwd), 0);

    assert_string_not_equal(ma, mb);
    assert_string_equal(ma, m2);
    assert_string_not_equal(ca, cb);
    assert_int_equal(strncmp(ca, "arun-", 5), 0);
    assert_int_equal(strlen(ca), strlen("arun-") + 8 + strlen("-qwen"));
    assert_string_equal(ca + strlen(ca) - 5, "-qwen");
    rmdir(da);
    rmdir(db);
    rmdir(a);
    rmdir(b);
    free(da);
    free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand_replaces_variables),
        cmocka_unit_test(test_expand_past_the_cap_is_refused),
        cmocka_unit_test(test_the_data_dir_id_is_the_directory_not_its_spelling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
