/* Unit tests of core/buf: the capped growable buffer. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
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
        cmocka_unit_test(test_consume_and_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
