/* Unit tests of core/fileio: reading a whole small file into a capped buffer. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/fileio.h"
#include "testutil.h"

struct dir {
    char path[64];
};

static int setup(void **state)
{
    struct dir *d = calloc(1, sizeof(*d));
    snprintf(d->path, sizeof(d->path), "/tmp/arun-test-fileio-XXXXXX");
    if (mkdtemp(d->path) == NULL)
        return -1;
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    struct dir *d = *state;
    testutil_rm_rf(d->path);
    free(d);
    return 0;
}

static void read_rel(struct dir *d, const char *rel, struct buf *b, int want_rc)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", d->path, rel);
    assert_int_equal(fileio_read(path, b), want_rc);
}

static void test_missing_file_is_enoent(void **state)
{
    struct buf b;
    buf_init(&b, 64);
    read_rel(*state, "absent", &b, -ENOENT);
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);
}

static void test_empty_file_reads_as_empty(void **state)
{
    struct buf b;
    buf_init(&b, 64);
    testutil_put(((struct dir *)*state)->path, "empty", "", 0644);
    read_rel(*state, "empty", &b, 0);
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_cstr(&b), "");
    assert_false(b.truncated);
    buf_cleanup(&b);
}

static void test_file_at_cap_reads_whole(void **state)
{
    struct buf b;
    buf_init(&b, 8);
    testutil_put(((struct dir *)*state)->path, "eight", "12345678", 0644);
    read_rel(*state, "eight", &b, 0);
    assert_string_equal(buf_cstr(&b), "12345678");
    assert_false(b.truncated);
    buf_cleanup(&b);
}

static void test_file_over_cap_keeps_a_prefix_and_says_so(void **state)
{
    /* Longer than one read chunk too, so the cut falls inside a later read. */
    char *text = malloc(10001);
    for (int i = 0; i < 10000; i++)
        text[i] = (char)('a' + i % 26);
    text[10000] = '\0';
    testutil_put(((struct dir *)*state)->path, "big", text, 0644);
    struct buf b;
    buf_init(&b, 5000);
    read_rel(*state, "big", &b, 0);
    assert_int_equal(b.len, 5000);
    assert_true(b.truncated);
    assert_memory_equal(b.data, text, 5000);
    assert_int_equal(b.data[5000], '\0');
    buf_cleanup(&b);
    free(text);
}

static void test_read_appends_after_what_the_buffer_holds(void **state)
{
    struct buf b;
    buf_init(&b, 64);
    buf_puts(&b, "x=");
    testutil_put(((struct dir *)*state)->path, "v", "1\n", 0644);
    read_rel(*state, "v", &b, 0);
    assert_string_equal(buf_cstr(&b), "x=1\n");
    buf_cleanup(&b);
}

static void test_directory_is_an_error(void **state)
{
    struct buf b;
    buf_init(&b, 64);
    assert_int_equal(fileio_read(((struct dir *)*state)->path, &b), -EISDIR);
    buf_cleanup(&b);
}

/* /proc files say size 0 in stat(2) and still have contents: read until EOF, not by the size. */
static void test_proc_file_with_stat_size_zero_reads_whole(void **state)
{
    struct stat st;
    assert_int_equal(stat("/proc/self/stat", &st), 0);
    assert_int_equal(st.st_size, 0);
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(fileio_read("/proc/self/stat", &b), 0);
    assert_false(b.truncated);
    char want[32];
    snprintf(want, sizeof(want), "%d (", (int)getpid());
    assert_int_equal(strncmp(buf_cstr(&b), want, strlen(want)), 0);
    assert_int_equal(b.data[b.len - 1], '\n');
    buf_cleanup(&b);
}

static void test_read_at_is_relative_to_the_directory(void **state)
{
    struct dir *d = *state;
    testutil_put(d->path, "rel", "here", 0644);
    int dirfd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dirfd >= 0);
    struct buf b;
    buf_init(&b, 64);
    assert_int_equal(fileio_read_at(dirfd, "rel", &b), 0);
    assert_string_equal(buf_cstr(&b), "here");
    close(dirfd);
    buf_cleanup(&b);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_missing_file_is_enoent),
        T(test_empty_file_reads_as_empty),
        T(test_file_at_cap_reads_whole),
        T(test_file_over_cap_keeps_a_prefix_and_says_so),
        T(test_read_appends_after_what_the_buffer_holds),
        T(test_directory_is_an_error),
        T(test_proc_file_with_stat_size_zero_reads_whole),
        T(test_read_at_is_relative_to_the_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
