/* Unit tests of core/buf (the capped growable buffer) and core/common's formatting helper. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

static void test_appends_grow_and_stay_terminated(void **state)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_printf(&b, "%d,", i), 0);
    assert_int_equal(strncmp(buf_cstr(&b), "0,1,2,", 6), 0);
    assert_int_equal(b.data[b.len], '\0');
    buf_cleanup(&b);
}

static void test_append_past_cap_fails_and_keeps_contents(void **state)
{
    struct buf b;
    buf_init(&b, 8);
    assert_int_equal(buf_puts(&b, "12345678"), 0);
    assert_int_equal(buf_puts(&b, "9"), -ENOBUFS);
    assert_int_equal(buf_printf(&b, "%s", "x"), -ENOBUFS);
    assert_string_equal(buf_cstr(&b), "12345678");
    buf_cleanup(&b);
}

static void test_a_refused_append_is_remembered_until_reset(void **state)
{
    struct buf b;
    buf_init(&b, 4);
    buf_puts(&b, "ab");
    assert_false(b.truncated);
    buf_puts(&b, "cdef"); /* refused: the cap is 4 */
    buf_puts(&b, "c");    /* fits, but the contents already miss "cdef" */
    assert_true(b.truncated);
    assert_string_equal(buf_cstr(&b), "abc");
    buf_reset(&b);
    assert_false(b.truncated);
    buf_printf(&b, "%d", 12345);
    assert_true(b.truncated);
    buf_cleanup(&b);
    assert_false(b.truncated);
}

static void test_reserve_makes_room_once_within_the_cap(void **state)
{
    struct buf b;
    buf_init(&b, 100);
    assert_int_equal(buf_reserve(&b, 101), -ENOBUFS);
    assert_false(b.truncated); /* a reservation refused loses no content */
    assert_null(b.data);
    assert_int_equal(buf_reserve(&b, 90), 0);
    char *data = b.data;
    for (int i = 0; i < 90; i++)
        assert_int_equal(buf_append(&b, "x", 1), 0);
    assert_ptr_equal(b.data, data); /* no growth after the reservation */
    assert_int_equal(b.len, 90);
    assert_int_equal(buf_reserve(&b, 11), -ENOBUFS);
    assert_int_equal(buf_reserve(&b, 10), 0);
    buf_cleanup(&b);
}

static void test_fmt_u64_matches_printf(void **state)
{
    const uint64_t cases[] = {0, 1, 9, 10, 99, 100, 65535, 4294967296ull, UINT64_MAX};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char got[21], want[32];
        size_t n = fmt_u64(got, cases[i]);
        snprintf(want, sizeof(want), "%llu", (unsigned long long)cases[i]);
        assert_string_equal(got, want);
        assert_int_equal(n, strlen(want));
    }
}

static void test_consume_and_steal(void **state)
{
    struct buf b;
    buf_init(&b, 100);
    assert_int_equal(buf_puts(&b, "hello world"), 0);
    buf_consume(&b, 6);
    assert_string_equal(buf_cstr(&b), "world");
    char *s = buf_steal(&b);
    assert_string_equal(s, "world");
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_cstr(&b), "");
    free(s);
    buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appends_grow_and_stay_terminated),
        cmocka_unit_test(test_append_past_cap_fails_and_keeps_contents),
        cmocka_unit_test(test_a_refused_append_is_remembered_until_reset),
        cmocka_unit_test(test_reserve_makes_room_once_within_the_cap),
        cmocka_unit_test(test_fmt_u64_matches_printf),
        cmocka_unit_test(test_consume_and_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
