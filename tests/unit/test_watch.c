/* Unit tests of cli/watch: the resume state of `arun runs watch` (each event's text once, in
 * order, across reconnections), the end of a run, the reconnection path and backoff. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/watch.h"

struct fixture {
    struct watch w;
    struct buf text, notes;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    watch_init(&f->w);
    buf_init(&f->text, 1 << 20);
    buf_init(&f->notes, 1 << 20);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    watch_cleanup(&f->w);
    buf_cleanup(&f->text);
    buf_cleanup(&f->notes);
    free(f);
    return 0;
}

static int feed(struct fixture *f, const char *json)
{
    return watch_feed(&f->w, json, strlen(json), &f->text, &f->notes);
}

static int delta(struct fixture *f, int seq, const char *text)
{
    char ev[256];
    snprintf(ev, sizeof(ev),
             "{\"type\":\"response.output_text.delta\",\"sequence_number\":%d,"
             "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"%s\"}",
             seq, text);
    return feed(f, ev);
}

static void test_deltas_become_the_text_in_order(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(feed(f, "{\"type\":\"response.created\",\"sequence_number\":0,"
                             "\"response\":{\"id\":\"resp_1\",\"status\":\"queued\"}}"),
                     0);
    assert_int_equal(delta(f, 1, "Hello"), 0);
    assert_int_equal(delta(f, 2, ", world"), 0);
    assert_string_equal(buf_cstr(&f->text), "Hello, world");
    assert_int_equal(f->w.last_seq, 2);
    assert_false(f->w.ended);
}

static void test_a_replayed_event_is_skipped_and_prints_nothing(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(delta(f, 0, "a"), 0);
    assert_int_equal(delta(f, 1, "b"), 0);
    /* A server that replays from 0 after a reconnection (the SDK's resume expects it). */
    assert_int_equal(delta(f, 0, "a"), WATCH_SKIPPED);
    assert_int_equal(delta(f, 1, "b"), WATCH_SKIPPED);
    assert_int_equal(delta(f, 2, "c"), 0);
    assert_string_equal(buf_cstr(&f->text), "abc");
    assert_int_equal(f->w.last_seq, 2);
}

static void test_a_gap_is_a_broken_stream_not_a_holed_answer(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(delta(f, 0, "a"), 0);
    assert_int_equal(delta(f, 2, "c"), -EPROTO);
    assert_string_equal(buf_cstr(&f->text), "a");
    assert_int_equal(f->w.last_seq, 0);
    assert_non_null(strstr(buf_cstr(&f->notes), "after sequence number 0 came 2"));
}

static void test_the_first_event_must_be_sequence_zero(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(delta(f, 5, "x"), -EPROTO);
    assert_int_equal(buf_cstr(&f->text)[0], '\0');
}

static void test_data_that_is_not_an_event_is_refused(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(feed(f, "not json"), -EPROTO);
    assert_int_equal(feed(f, "{\"type\":\"response.created\"}"), -EPROTO);
    assert_int_equal(feed(f, "{\"sequence_number\":0}"), -EPROTO);
    assert_int_equal(feed(f, "[DONE]"), -EPROTO);
    assert_non_null(strstr(buf_cstr(&f->notes), "not a Responses event"));
    assert_int_equal(f->w.last_seq, -1);
}

static void test_completed_ends_the_watch(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(delta(f, 0, "hi"), 0);
    assert_int_equal(feed(f, "{\"type\":\"response.completed\",\"sequence_number\":1,"
                             "\"response\":{\"id\":\"resp_1\",\"status\":\"completed\"}}"),
                     0);
    assert_true(f->w.ended);
    assert_string_equal(f->w.status, "completed");
    assert_null(f->w.reason);
}

static void test_failed_ends_with_the_error_message_and_code(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(
        feed(f, "{\"type\":\"response.failed\",\"sequence_number\":0,\"response\":{\"status\":"
                "\"failed\",\"error\":{\"code\":\"interrupted\",\"message\":\"arun restarted\"}}}"),
        0);
    assert_true(f->w.ended);
    assert_string_equal(f->w.status, "failed");
    assert_string_equal(f->w.reason, "arun restarted (interrupted)");
}

static void test_incomplete_ends_with_its_reason(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(feed(f, "{\"type\":\"response.incomplete\",\"sequence_number\":0,"
                             "\"response\":{\"status\":\"incomplete\",\"incomplete_details\":"
                             "{\"reason\":\"max_output_tokens\"}}}"),
                     0);
    assert_string_equal(f->w.status, "incomplete");
    assert_string_equal(f->w.reason, "max_output_tokens");
}

static void test_an_error_event_ends_the_watch_as_failed(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(feed(f, "{\"type\":\"error\",\"sequence_number\":0,\"code\":\"server_error\","
                             "\"message\":\"the engine died\",\"param\":null}"),
                     0);
    assert_string_equal(f->w.status, "failed");
    assert_string_equal(f->w.reason, "the engine died (server_error)");
}

static void test_a_final_event_without_a_status_still_ends(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(feed(f, "{\"type\":\"response.cancelled\",\"sequence_number\":0}"), 0);
    assert_true(f->w.ended);
    assert_string_equal(f->w.status, "cancelled");
}

static void test_the_final_response_of_a_get_ends_only_when_final(void **state)
{
    struct fixture *f = *state;
    json_t *r = json_pack("{s:s}", "status", "in_progress");
    watch_take_response(&f->w, r);
    assert_false(f->w.ended);
    json_object_set_new(r, "status", json_string("cancelled"));
    watch_take_response(&f->w, r);
    assert_true(f->w.ended);
    assert_string_equal(f->w.status, "cancelled");
    json_decref(r);
}

static void test_a_function_call_is_a_note(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(feed(f, "{\"type\":\"response.output_item.done\",\"sequence_number\":0,"
                             "\"output_index\":0,\"item\":{\"type\":\"function_call\",\"id\":"
                             "\"fc_1\",\"call_id\":\"call_1\",\"name\":\"weather\",\"arguments\":"
                             "\"{\\\"city\\\":\\\"Paris\\\"}\"}}"),
                     0);
    assert_string_equal(buf_cstr(&f->notes),
                        "function call weather({\"city\":\"Paris\"}) call_id=call_1");
    assert_int_equal(f->text.len, 0);
}

static void test_the_path_resumes_after_the_last_event(void **state)
{
    char *p = watch_path("resp_1", -1);
    assert_string_equal(p, "/v1/responses/resp_1?stream=true");
    free(p);
    p = watch_path("resp_1", 41);
    assert_string_equal(p, "/v1/responses/resp_1?stream=true&starting_after=41");
    free(p);
}

static void test_the_backoff_doubles_up_to_its_bound(void **state)
{
    assert_int_equal(watch_backoff_ms(0), WATCH_BACKOFF_FIRST_MS);
    assert_int_equal(watch_backoff_ms(1), 2 * WATCH_BACKOFF_FIRST_MS);
    assert_int_equal(watch_backoff_ms(2), 4 * WATCH_BACKOFF_FIRST_MS);
    assert_int_equal(watch_backoff_ms(10), WATCH_BACKOFF_MAX_MS);
    assert_int_equal(watch_backoff_ms(1000000), WATCH_BACKOFF_MAX_MS);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_deltas_become_the_text_in_order),
        T(test_a_replayed_event_is_skipped_and_prints_nothing),
        T(test_a_gap_is_a_broken_stream_not_a_holed_answer),
        T(test_the_first_event_must_be_sequence_zero),
        T(test_data_that_is_not_an_event_is_refused),
        T(test_completed_ends_the_watch),
        T(test_failed_ends_with_the_error_message_and_code),
        T(test_incomplete_ends_with_its_reason),
        T(test_an_error_event_ends_the_watch_as_failed),
        T(test_a_final_event_without_a_status_still_ends),
        T(test_the_final_response_of_a_get_ends_only_when_final),
        T(test_a_function_call_is_a_note),
        T(test_the_path_resumes_after_the_last_event),
        T(test_the_backoff_doubles_up_to_its_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
