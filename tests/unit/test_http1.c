/* Unit tests of http/http1: response heads and the chunked coding, cut at every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/http1.h"

struct fields {
    char seen[1024]; /* "name=value;" per field */
    size_t len;
    int stop_at; /* field_fn returns -1 at this field (1-based); 0 = never */
    int count;
};

static int field_fn(void *arg, const char *name, size_t name_len, const char *value,
                    size_t value_len)
{
    struct fields *f = arg;
    f->count++;
    f->len += (size_t)snprintf(f->seen + f->len, sizeof(f->seen) - f->len, "%.*s=%.*s;",
                               (int)name_len, name, (int)value_len, value);
    return f->count == f->stop_at ? -1 : 0;
}

static ssize_t parse(const char *s, struct http1_head *h, struct fields *f)
{
    memset(f, 0, sizeof(*f));
    return http1_parse_head(s, strlen(s), false, h, field_fn, f);
}

static void test_head_with_length_reports_fields_and_keeps_alive(void **state)
{
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    "Content-Length:  12 \r\n\r\n{\"a\":1}";
    struct http1_head h;
    struct fields f;
    assert_int_equal(parse(s, &h, &f), strstr(s, "{") - s);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.minor, 1);
    assert_int_equal(h.framing, HTTP1_BODY_LENGTH);
    assert_int_equal(h.content_length, 12);
    assert_true(h.keep_alive);
    assert_string_equal(f.seen, "Content-Type=application/json;Content-Length=12;");
}

static void test_head_cut_anywhere_needs_more_and_reports_nothing(void **state)
{
    const char *s = "HTTP/1.1 404 Not Found\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n";
    size_t n = strlen(s);
    for (size_t cut = 0; cut < n; cut++) {
        struct http1_head h;
        struct fields f = {0};
        assert_int_equal(http1_parse_head(s, cut, false, &h, field_fn, &f), 0);
        assert_int_equal(f.count, 0);
    }
    struct http1_head h;
    struct fields f;
    assert_int_equal(parse(s, &h, &f), (ssize_t)n);
    assert_int_equal(h.status, 404);
}

static void test_bare_lf_and_missing_reason_are_accepted(void **state)
{
    struct http1_head h;
    struct fields f;
    assert_int_equal(parse("HTTP/1.1 204\nX: y\n\n", &h, &f), 19);
    assert_int_equal(h.status, 204);
    assert_int_equal(h.framing, HTTP1_BODY_NONE);
    assert_string_equal(f.seen, "X=y;");
}

/* A status line without a reason, cut between its CR and LF, waits for the LF: it was refused
 * as malformed (found by fuzz_httpc_h1), so an engine's "HTTP/1.1 400\r\n" split by TCP failed. */
static void test_a_reasonless_status_line_cut_anywhere_needs_more(void **state)
{
    const char *s = "HTTP/1.1 400\r\nContent-Length: 2\r\n\r\n";
    size_t n = strlen(s);
    for (size_t cut = 0; cut < n; cut++) {
        struct http1_head h;
        struct fields f = {0};
        if (http1_parse_head(s, cut, false, &h, field_fn, &f) != 0)
            fail_msg("cut at %zu: not \"more\"", cut);
    }
    struct http1_head h;
    struct fields f;
    assert_int_equal(parse(s, &h, &f), (ssize_t)n);
    assert_int_equal(h.status, 400);
    assert_int_equal(parse("HTTP/1.1 400\rX", &h, &f), -1);
}

static void test_empty_reason_and_blanks_around_values(void **state)
{
    struct http1_head h;
    struct fields f;
    const char *s = "HTTP/1.1 200 \r\nA:\t x \t\r\nB:\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(parse(s, &h, &f), (ssize_t)strlen(s));
    assert_string_equal(f.seen, "A=x;B=;Content-Length=0;");
}

static void test_a_control_byte_in_a_value_is_refused(void **state)
{
    struct http1_head h;
    struct fields f;
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", &h, &f), -1);
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nX: a\001b\r\n\r\n", &h, &f), -1);
    assert_int_equal(f.count, 0);
}

static void test_more_fields_than_the_cap_is_a_head_too_large(void **state)
{
    static char s[16 + (HTTP1_MAX_FIELDS + 1) * 6 + 4];
    size_t n = (size_t)snprintf(s, sizeof(s), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i <= HTTP1_MAX_FIELDS; i++)
        n += (size_t)snprintf(s + n, sizeof(s) - n, "X: 1\r\n");
    n += (size_t)snprintf(s + n, sizeof(s) - n, "\r\n");
    struct http1_head h;
    struct fields f = {0};
    assert_int_equal(http1_parse_head(s, n, false, &h, field_fn, &f), -2);
    assert_int_equal(f.count, 0);
    /* One fewer fits. */
    const char *last = strstr(s + 17, "X: 1\r\n\r\n");
    memmove((char *)last, last + 6, 3);
    assert_int_equal(http1_parse_head(s, n - 6, false, &h, NULL, NULL), (ssize_t)(n - 6));
}

static void test_framing_rules(void **state)
{
    struct http1_head h;
    struct fields f;
    assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &h, &f) > 0);
    assert_int_equal(h.framing, HTTP1_BODY_CHUNKED);
    assert_true(h.keep_alive);
    /* Not ending in chunked: the body runs to the close. */
    assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &h, &f) > 0);
    assert_int_equal(h.framing, HTTP1_BODY_EOF);
    assert_false(h.keep_alive);
    /* Neither: also to the close. */
    assert_true(parse("HTTP/1.1 200 OK\r\n\r\n", &h, &f) > 0);
    assert_int_equal(h.framing, HTTP1_BODY_EOF);
    assert_false(h.keep_alive);
    /* Both: chunked wins, and the connection is not trusted again. */
    assert_true(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                      &h, &f) > 0);
    assert_int_equal(h.framing, HTTP1_BODY_CHUNKED);
    assert_false(h.keep_alive);
    /* Connection: close, and HTTP/1.0 without keep-alive. */
    assert_true(parse("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 1\r\n\r\n", &h, &f) >
                0);
    assert_false(h.keep_alive);
    assert_true(parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", &h, &f) > 0);
    assert_false(h.keep_alive);
    assert_true(parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", &h,
                      &f) > 0);
    assert_true(h.keep_alive);
    /* No body, whatever the fields say: 1xx, 204, 304, and HEAD. */
    assert_true(parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", &h, &f) > 0);
    assert_int_equal(h.framing, HTTP1_BODY_NONE);
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_true(http1_parse_head(s, strlen(s), true, &h, NULL, NULL) > 0);
    assert_int_equal(h.framing, HTTP1_BODY_NONE);
    assert_true(parse("HTTP/1.1 100 Continue\r\n\r\n", &h, &f) > 0);
    assert_int_equal(h.status, 100);
    assert_int_equal(h.framing, HTTP1_BODY_NONE);
}

static void test_malformed_heads_are_refused_before_any_field_is_reported(void **state)
{
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: 1\r\nBad Name: x\r\n\r\n", /* blank inside a name */
        "HTTP/1.1 200 OK\r\nX: 1\r\nX-Space : x\r\n\r\n", /* blank before the colon */
        "HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n",     /* obs-fold */
        "HTTP/1.1 200 OK\r\nX: 1\r\nno colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "\r\nHTTP/1.1 200 OK\r\n\r\n",
        "<html>\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct http1_head h;
        struct fields f;
        if (parse(bad[i], &h, &f) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(f.count, 0);
    }
    /* The same length twice is one length. */
    struct http1_head h;
    struct fields f;
    assert_true(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", &h, &f) >
                0);
    assert_int_equal(h.content_length, 3);
}

static void test_field_names_are_tokens_exactly(void **state)
{
    /* Every byte as a one-character field name: accepted iff RFC 9110 calls it a tchar. */
    for (int c = 0; c < 256; c++) {
        if (c == '\n')
            continue; /* it would end the head: a head with no fields, not a name */
        bool tchar = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        char head[64];
        int n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\n%c: v\r\n\r\n", c ? c : 'x');
        if (c == 0)
            head[17] = '\0';
        struct http1_head h;
        struct fields f;
        memset(&f, 0, sizeof(f));
        ssize_t rc = http1_parse_head(head, (size_t)n, false, &h, field_fn, &f);
        if (tchar && rc != n)
            fail_msg("token character 0x%02x refused", c);
        if (!tchar && rc > 0)
            fail_msg("0x%02x accepted in a field name", c);
    }
}

static void test_field_fn_can_stop_the_parse(void **state)
{
    struct http1_head h;
    struct fields f = {.stop_at = 2};
    const char *s = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_int_equal(http1_parse_head(s, strlen(s), false, &h, field_fn, &f), -2);
    assert_int_equal(f.count, 2);
}

/* Feeds s to the decoder in pieces of `step` bytes (as separate reads would bring them) and
 * returns what it decoded; *done_out says whether it saw the end. */
static int dechunk_in_steps(const char *s, size_t step, char *out, size_t *out_len, bool *done_out,
                            size_t *consumed_total)
{
    struct http1_chunked d;
    http1_chunked_init(&d);
    size_t n = strlen(s), pos = 0;
    *out_len = 0;
    *done_out = false;
    *consumed_total = 0;
    while (pos < n && !*done_out) {
        char piece[256];
        size_t k = n - pos < step ? n - pos : step;
        memcpy(piece, s + pos, k);
        size_t got;
        bool done;
        ssize_t used = http1_dechunk(&d, piece, k, &got, &done);
        if (used < 0)
            return -1;
        memcpy(out + *out_len, piece, got);
        *out_len += got;
        *consumed_total += (size_t)used;
        *done_out = done;
        pos += k;
    }
    return 0;
}

static void test_dechunk_at_every_split_gives_the_same_body(void **state)
{
    const char *s = "5\r\nhello\r\n1;ext=\"a b\"\r\n,\r\nA\r\n world ...\r\n0\r\n"
                    "Trailer-One: x\r\n\r\n";
    for (size_t step = 1; step <= strlen(s); step++) {
        char out[256];
        size_t len, consumed;
        bool done;
        assert_int_equal(dechunk_in_steps(s, step, out, &len, &done, &consumed), 0);
        assert_true(done);
        assert_int_equal(consumed, strlen(s));
        assert_int_equal(len, 16);
        assert_memory_equal(out, "hello, world ...", 16);
    }
}

static void test_dechunk_stops_at_the_end_and_says_what_followed(void **state)
{
    char s[] = "2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n";
    struct http1_chunked d;
    size_t out;
    bool done;
    http1_chunked_init(&d);
    ssize_t used = http1_dechunk(&d, s, strlen(s), &out, &done);
    assert_true(done);
    assert_int_equal(used, 12);
    assert_int_equal(out, 2);
    assert_memory_equal(s, "ok", 2);
    /* Bare LF line ends are taken too. */
    char t[] = "1\nx\n0\n\n";
    http1_chunked_init(&d);
    assert_int_equal(http1_dechunk(&d, t, strlen(t), &out, &done), (ssize_t)strlen(t));
    assert_true(done);
    assert_int_equal(out, 1);
}

static void test_dechunk_refuses_malformed_codings(void **state)
{
    static const char *const bad[] = {
        "x\r\n",                 /* no hex digit */
        "\r\n",                  /* empty size */
        "3\r\nabcX\r\n",         /* data longer than its size */
        "3\r\nabc\rX",           /* CR not followed by LF */
        "1234567890abcdef0\r\n", /* a size past 2^60 */
        "2\r\nab\r\n0\r\n\rX",   /* CR without LF on the final line */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char buf[64];
        struct http1_chunked d;
        size_t out;
        bool done;
        snprintf(buf, sizeof(buf), "%s", bad[i]);
        http1_chunked_init(&d);
        if (http1_dechunk(&d, buf, strlen(buf), &out, &done) != -1)
            fail_msg("accepted: %s", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_with_length_reports_fields_and_keeps_alive),
        cmocka_unit_test(test_head_cut_anywhere_needs_more_and_reports_nothing),
        cmocka_unit_test(test_bare_lf_and_missing_reason_are_accepted),
        cmocka_unit_test(test_a_reasonless_status_line_cut_anywhere_needs_more),
        cmocka_unit_test(test_empty_reason_and_blanks_around_values),
        cmocka_unit_test(test_a_control_byte_in_a_value_is_refused),
        cmocka_unit_test(test_more_fields_than_the_cap_is_a_head_too_large),
        cmocka_unit_test(test_framing_rules),
        cmocka_unit_test(test_malformed_heads_are_refused_before_any_field_is_reported),
        cmocka_unit_test(test_field_names_are_tokens_exactly),
        cmocka_unit_test(test_field_fn_can_stop_the_parse),
        cmocka_unit_test(test_dechunk_at_every_split_gives_the_same_body),
        cmocka_unit_test(test_dechunk_stops_at_the_end_and_says_what_followed),
        cmocka_unit_test(test_dechunk_refuses_malformed_codings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
