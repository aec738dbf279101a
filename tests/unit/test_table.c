/* Unit tests of cli/table: the aligned layout `arun engines` and `arun runs` share. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/table.h"

static void add3(struct table *t, const char *a, const char *b, const char *c)
{
    const char *row[3] = {a, b, c};
    table_add_strs(t, row);
}

static char *render(const struct table *t, size_t width)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(table_render(t, width, &b), 0);
    char *s = b.len ? buf_steal(&b) : strdup("");
    buf_cleanup(&b);
    return s;
}

static void test_columns_are_as_wide_as_their_widest_cell_two_spaces_apart(void **state)
{
    struct table t;
    table_init(&t, 3);
    add3(&t, "ID", "STATUS", "DURATION");
    add3(&t, "resp_1", "completed", "1.2s");
    add3(&t, "r", "queued", "-");
    char *s = render(&t, 0);
    assert_string_equal(s, "ID      STATUS     DURATION\n"
                           "resp_1  completed  1.2s\n"
                           "r       queued     -\n");
    free(s);
    table_cleanup(&t);
}

static void test_the_last_column_is_never_padded_and_cut_only_to_a_width(void **state)
{
    struct table t;
    table_init(&t, 2);
    add3(&t, "NAME", "REASON", NULL);
    add3(&t, "qwen", "a very long reason that goes on", NULL);
    char *whole = render(&t, 0);
    assert_string_equal(whole, "NAME  REASON\nqwen  a very long reason that goes on\n");
    free(whole);
    char *cut = render(&t, 16); /* 6 columns for NAME and the gap, 10 left */
    assert_string_equal(cut, "NAME  REASON\nqwen  a very ...\n");
    free(cut);
    table_cleanup(&t);
}

static void test_a_cut_never_splits_a_utf8_sequence(void **state)
{
    struct table t;
    table_init(&t, 2);
    add3(&t, "x", "ab\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", NULL); /* abéééé */
    char *cut = render(&t, 3 + 7);                             /* 7 left: 4 bytes then "..." */
    assert_string_equal(cut, "x  ab\xc3\xa9...\n");
    free(cut);
    cut = render(&t, 3 + 6); /* 3 bytes would end inside the first é: 2 are kept */
    assert_string_equal(cut, "x  ab...\n");
    free(cut);
    table_cleanup(&t);
}

static void test_a_null_cell_reads_as_a_dash(void **state)
{
    struct table t;
    table_init(&t, 2);
    char *cells[2] = {strdup("a"), NULL};
    table_add_row(&t, cells);
    char *s = render(&t, 0);
    assert_string_equal(s, "a  -\n");
    free(s);
    table_cleanup(&t);
}

/* A server's text cannot drive the terminal: escape sequences and line ends become spaces. */
static void test_control_bytes_in_a_cell_become_spaces(void **state)
{
    struct table t;
    table_init(&t, 2);
    char *cells[2] = {strdup("qw\x1b[2Jen"), strdup("bad\r\nline\x7f")};
    table_add_row(&t, cells);
    char *s = render(&t, 0);
    assert_string_equal(s, "qw [2Jen  bad  line \n");
    free(s);
    table_cleanup(&t);
}

static void test_many_rows_grow_the_table(void **state)
{
    struct table t;
    table_init(&t, 1);
    for (int i = 0; i < 1000; i++)
        add3(&t, "x", NULL, NULL);
    assert_int_equal(t.nrows, 1000);
    char *s = render(&t, 0);
    assert_int_equal(strlen(s), 2000);
    free(s);
    table_cleanup(&t);
}

static void test_a_full_buffer_is_reported(void **state)
{
    struct table t;
    struct buf b;
    table_init(&t, 1);
    add3(&t, "0123456789", NULL, NULL);
    buf_init(&b, 4);
    assert_int_equal(table_render(&t, 0, &b), -ENOBUFS);
    buf_cleanup(&b);
    table_cleanup(&t);
}

static void test_durations_read_as_a_person_reads_them(void **state)
{
    static const struct {
        int64_t s;
        const char *want;
    } cases[] = {{-5, "0s"},      {0, "0s"},        {59, "59s"},
                 {60, "1m00s"},   {192, "3m12s"},   {3600, "1h00m"},
                 {7500, "2h05m"}, {86400, "1d00h"}, {273600, "3d04h"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *d = table_duration(cases[i].s);
        assert_string_equal(d, cases[i].want);
        free(d);
    }
}

static void test_colour_only_on_a_terminal_without_no_color_or_dumb_term(void **state)
{
    assert_true(table_colour_decide(true, NULL, "xterm-256color"));
    assert_true(table_colour_decide(true, NULL, NULL));
    assert_true(table_colour_decide(true, "", "xterm"));     /* no-color.org: empty is unset */
    assert_false(table_colour_decide(false, NULL, "xterm")); /* a pipe or a file */
    assert_false(table_colour_decide(true, "1", "xterm"));
    assert_false(table_colour_decide(true, "0", "xterm")); /* any value, even "0" or "false" */
    assert_false(table_colour_decide(true, "false", "xterm"));
    assert_false(table_colour_decide(true, NULL, "dumb"));
    assert_false(table_colour_decide(false, "1", "dumb"));
}

static void test_state_words_have_their_colours(void **state)
{
    assert_string_equal(table_state_sgr("ready"), "\033[32m");
    assert_string_equal(table_state_sgr("completed"), "\033[32m");
    assert_string_equal(table_state_sgr("loading"), "\033[33m");
    assert_string_equal(table_state_sgr("starting"), "\033[33m");
    assert_string_equal(table_state_sgr("queued"), "\033[33m");
    assert_string_equal(table_state_sgr("in_progress"), "\033[33m");
    assert_string_equal(table_state_sgr("failed"), "\033[31m");
    assert_string_equal(table_state_sgr("unhealthy"), "\033[31m");
    assert_null(table_state_sgr("stopped"));
    assert_null(table_state_sgr("cancelled"));
    assert_null(table_state_sgr("-"));
    assert_null(table_state_sgr(NULL));
}

static void test_a_coloured_column_still_lines_up(void **state)
{
    struct table t;
    table_init(&t, 3);
    table_colour_column(&t, 1);
    add3(&t, "NAME", "STATE", "REASON");
    add3(&t, "a", "ready", "-");
    add3(&t, "bb", "failed", "exited");
    add3(&t, "c", "stopped", "by hand");
    char *plain = render(&t, 0);
    assert_string_equal(plain, "NAME  STATE    REASON\n"
                               "a     ready    -\n"
                               "bb    failed   exited\n"
                               "c     stopped  by hand\n");
    assert_null(strchr(plain, '\033'));
    free(plain);
    t.colour = true;
    char *col = render(&t, 0);
    /* The header and the other columns stay plain; the padding follows the plain word. */
    assert_string_equal(col, "NAME  STATE    REASON\n"
                             "a     \033[32mready\033[0m    -\n"
                             "bb    \033[31mfailed\033[0m   exited\n"
                             "c     stopped  by hand\n");
    free(col);
    table_cleanup(&t);
}

static void test_a_coloured_last_column_is_cut_inside_its_colour(void **state)
{
    struct table t;
    table_init(&t, 2);
    table_colour_column(&t, 1);
    t.colour = true;
    add3(&t, "ID", "STATUS", NULL);
    add3(&t, "r", "in_progress", NULL);
    char *s = render(&t, 10); /* 4 columns for ID and the gap, 6 left */
    assert_string_equal(s, "ID  STATUS\nr   \033[33min_...\033[0m\n");
    free(s);
    table_cleanup(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_columns_are_as_wide_as_their_widest_cell_two_spaces_apart),
        cmocka_unit_test(test_the_last_column_is_never_padded_and_cut_only_to_a_width),
        cmocka_unit_test(test_a_cut_never_splits_a_utf8_sequence),
        cmocka_unit_test(test_a_null_cell_reads_as_a_dash),
        cmocka_unit_test(test_control_bytes_in_a_cell_become_spaces),
        cmocka_unit_test(test_many_rows_grow_the_table),
        cmocka_unit_test(test_a_full_buffer_is_reported),
        cmocka_unit_test(test_durations_read_as_a_person_reads_them),
        cmocka_unit_test(test_colour_only_on_a_terminal_without_no_color_or_dumb_term),
        cmocka_unit_test(test_state_words_have_their_colours),
        cmocka_unit_test(test_a_coloured_column_still_lines_up),
        cmocka_unit_test(test_a_coloured_last_column_is_cut_inside_its_colour),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
