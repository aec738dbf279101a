/*
 * Unit tests of http/sse_parser (the one SSE reader): the WHATWG rules, the caps, and that every
 * input gives the same events whole, byte by byte and cut at any single place. The fuzz target's
 * corpus (tests/fuzz/corpus/sse_parser) is replayed here too, so `make test` checks it.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../fuzz/sse_parser_check.h"

/* The transcript of in fed whole, checked against the byte-by-byte one and every two-read cut.
 * Returns it (the caller frees). */
static char *transcript(const char *in, size_t n)
{
    struct buf whole, other;
    buf_init(&whole, SSE_CHECK_TRANSCRIPT);
    buf_init(&other, SSE_CHECK_TRANSCRIPT);
    for (size_t cut = 0; cut < (n ? n : 1); cut++) /* cut 0: whole and byte by byte only */
        if (!sse_check_same(in, n, &cut, cut ? 1 : 0, &whole, &other))
            fail_msg("fed differently (cut after %zu bytes or byte by byte), %.*s gives:\n%s\n"
                     "instead of:\n%s",
                     cut, (int)n, in, buf_cstr(&other), buf_cstr(&whole));
    buf_cleanup(&other);
    return buf_steal(&whole);
}

static void expect(const char *in, const char *want)
{
    char *got = transcript(in, strlen(in));
    assert_string_equal(got, want);
    free(got);
}

#define EV(type, id, retry, data) "E0:\n type" type "\n id" id "\n retry" retry "\n data" data "\n"
#define END(rc, last) "R" #rc " last-id:" last "\n"

static void test_lf_crlf_and_cr_line_ends_read_the_same(void **state)
{
    const char *want =
        EV("0:", "6:(none)", "2:-1", "1:a") EV("0:", "6:(none)", "2:-1", "1:b") END(0, "0:");
    expect("data: a\n\ndata: b\n\n", want);
    expect("data: a\r\n\r\ndata: b\r\n\r\n", want);
    expect("data: a\r\rdata: b\r\r", want);
    expect("data: a\r\n\ndata: b\n\r\n", want);
}

static void test_several_data_lines_join_with_lf_and_one_space_is_dropped(void **state)
{
    expect("data:x\ndata:  two spaces\ndata\ndata:\n\n",
           EV("0:", "6:(none)", "2:-1", "15:x\n two spaces\n\n") END(0, "0:"));
}

static void test_comments_reach_their_callback_and_dispatch_nothing(void **state)
{
    expect(": ping - 2024\r\n\r\n:\n\n", "C11:ping - 2024\nC0:\n" END(0, "0:"));
}

static void test_event_id_and_retry_fields(void **state)
{
    expect("event: delta\nid: 7\nretry: 1500\ndata: {}\n\ndata: next\n\n",
           EV("5:delta", "1:7", "4:1500", "2:{}") EV("0:", "6:(none)", "2:-1", "4:next")
               END(0, "1:7"));
}

static void test_an_id_with_nul_and_a_retry_with_letters_are_ignored(void **state)
{
    static const char in[] = "id: 1\n\nid: a\0b\nretry: 12x\ndata: d\n\n";
    char *got = transcript(in, sizeof(in) - 1);
    assert_string_equal(got, EV("0:", "6:(none)", "2:-1", "1:d") END(0, "1:1"));
    free(got);
}

static void test_an_event_without_data_is_not_dispatched_and_its_type_is_forgotten(void **state)
{
    expect("event: x\n\ndata: y\n\n", EV("0:", "6:(none)", "2:-1", "1:y") END(0, "0:"));
}

static void test_unknown_fields_and_a_field_without_colon_mean_nothing(void **state)
{
    expect("foo: bar\nDATA: no\nevent\ndata: z\n\n",
           EV("0:", "6:(none)", "2:-1", "1:z") END(0, "0:"));
}

static void test_an_event_not_ended_when_the_stream_ends_is_dropped(void **state)
{
    expect("data: whole\n\ndata: cut", EV("0:", "6:(none)", "2:-1", "5:whole") END(0, "0:"));
}

static void test_a_leading_bom_is_skipped_once(void **state)
{
    expect("\xEF\xBB\xBF"
           "data: a\n\n\xEF\xBB\xBF"
           "data: b\n\n",
           EV("0:", "6:(none)", "2:-1", "1:a") END(0, "0:"));
    /* Only the start of a BOM: its bytes are text (a field name nobody knows). */
    expect("\xEF\xBB"
           "data: a\n\ndata: b\n\n",
           EV("0:", "6:(none)", "2:-1", "1:b") END(0, "0:"));
}

static void test_a_line_over_the_cap_fails_however_it_arrives(void **state)
{
    char in[SSE_CHECK_MAX_LINE + 32];
    int n = snprintf(in, sizeof(in), "data: ok\n\ndata: ");
    memset(in + n, 'x', SSE_CHECK_MAX_LINE);
    memcpy(in + n + SSE_CHECK_MAX_LINE - 6, "\n\n", 3);
    /* Exactly the cap is fine... */
    char *got = transcript(in, strlen(in));
    assert_non_null(strstr(got, "R0 "));
    free(got);
    /* ...one more byte is not, and what came before it was still delivered. */
    in[n + SSE_CHECK_MAX_LINE - 6] = 'x';
    got = transcript(in, strlen(in));
    assert_string_equal(got, EV("0:", "6:(none)", "2:-1", "2:ok") END(-105, "0:"));
    free(got);
}

static void test_an_event_over_the_data_cap_fails(void **state)
{
    struct buf in;
    buf_init(&in, 1 << 16);
    for (int i = 0; i < SSE_CHECK_MAX_EVENT / 100 + 1; i++) {
        assert_int_equal(buf_puts(&in, "data: "), 0);
        for (int k = 0; k < 100; k++)
            assert_int_equal(buf_puts(&in, "y"), 0);
        assert_int_equal(buf_puts(&in, "\n"), 0);
    }
    assert_int_equal(buf_puts(&in, "\n"), 0);
    char *got = transcript(in.data, in.len);
    assert_string_equal(got, END(-105, "0:"));
    free(got);
    buf_cleanup(&in);
}

static int stop_cb(const struct sse_event *ev, void *arg)
{
    (*(int *)arg)++;
    return 42;
}

static void test_a_callback_stops_the_feed_and_the_parser_stays_stopped(void **state)
{
    int calls = 0;
    struct sse_parser p;
    sse_parser_init(&p, 64, 64, stop_cb, NULL, &calls);
    assert_int_equal(sse_parser_feed(&p, "data: 1\n\ndata: 2\n\n", 18), 42);
    assert_int_equal(calls, 1);
    assert_int_equal(sse_parser_feed(&p, "data: 3\n\n", 9), 42);
    assert_int_equal(calls, 1);
    sse_parser_cleanup(&p);
}

static void test_the_line_scanner_joins_a_crlf_split_across_reads(void **state)
{
    struct sse_lines l = {0};
    struct sse_piece pc;
    assert_int_equal(sse_lines_next(&l, "ab\r", 3, &pc), 3);
    assert_int_equal(pc.len, 2);
    assert_int_equal(pc.end, '\r');
    assert_int_equal(sse_lines_next(&l, "\ncd", 3, &pc), 3); /* the LF belongs to the CR */
    assert_int_equal(pc.len, 2);
    assert_int_equal(pc.end, 0);
    assert_memory_equal(pc.p, "cd", 2);
    assert_int_equal(sse_lines_next(&l, "\n", 1, &pc), 1); /* this LF ends the line "cd" */
    assert_int_equal(pc.len, 0);
    assert_int_equal(pc.end, '\n');
}

/* Every file of the fuzz target's corpus, with the same checks as the fuzz target. */
static void test_the_fuzz_corpus_replays_clean(void **state)
{
    const char *src = getenv("ARUN_SOURCE_DIR");
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/sse_parser", src ? src : ".");
    DIR *d = opendir(dir);
    assert_non_null(d);
    int files = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (de->d_name[0] == '.')
            continue;
        char path[2048];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        static char in[1 << 16];
        size_t n = fread(in, 1, sizeof(in), f);
        fclose(f);
        free(transcript(in, n));
        files++;
    }
    closedir(d);
    assert_true(files >= 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lf_crlf_and_cr_line_ends_read_the_same),
        cmocka_unit_test(test_several_data_lines_join_with_lf_and_one_space_is_dropped),
        cmocka_unit_test(test_comments_reach_their_callback_and_dispatch_nothing),
        cmocka_unit_test(test_event_id_and_retry_fields),
        cmocka_unit_test(test_an_id_with_nul_and_a_retry_with_letters_are_ignored),
        cmocka_unit_test(test_an_event_without_data_is_not_dispatched_and_its_type_is_forgotten),
        cmocka_unit_test(test_unknown_fields_and_a_field_without_colon_mean_nothing),
        cmocka_unit_test(test_an_event_not_ended_when_the_stream_ends_is_dropped),
        cmocka_unit_test(test_a_leading_bom_is_skipped_once),
        cmocka_unit_test(test_a_line_over_the_cap_fails_however_it_arrives),
        cmocka_unit_test(test_an_event_over_the_data_cap_fails),
        cmocka_unit_test(test_a_callback_stops_the_feed_and_the_parser_stays_stopped),
        cmocka_unit_test(test_the_line_scanner_joins_a_crlf_split_across_reads),
        cmocka_unit_test(test_the_fuzz_corpus_replays_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
