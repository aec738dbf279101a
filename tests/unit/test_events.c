/* Unit tests of core/events: the bus behind GET /v1/events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "core/events.h"

struct seen {
    uint64_t ids[2048];
    size_t n;
    struct events *ev;
    struct events_sub *self; /* unsubscribe from inside the callback when set */
};

static void record_cb(uint64_t id, const char *type, const char *json, void *arg)
{
    struct seen *s = arg;
    s->ids[s->n++] = id;
    assert_non_null(strstr(json, "\"type\":\""));
    if (s->self != NULL) {
        events_unsubscribe(s->ev, s->self);
        s->self = NULL;
    }
}

static void test_subscribers_get_new_events_in_order(void **state)
{
    struct events *ev = events_new();
    events_publish(ev, "old", NULL);
    struct seen s = {0};
    struct events_sub *sub = events_subscribe(ev, events_last_id(ev), record_cb, &s);
    events_publish(ev, "engine.state", json_pack("{s:s}", "state", "ready"));
    events_publish(ev, "engine.state", NULL);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.ids[0], 2);
    assert_int_equal(s.ids[1], 3);
    events_unsubscribe(ev, sub);
    events_free(ev);
}

static void test_reconnect_replays_what_is_still_in_the_ring(void **state)
{
    struct events *ev = events_new();
    for (int i = 0; i < EVENTS_RING + 10; i++)
        events_publish(ev, "x", NULL);
    struct seen s = {0};
    struct events_sub *sub = events_subscribe(ev, 0, record_cb, &s);
    assert_int_equal(s.n, EVENTS_RING); /* the oldest 10 fell out of the ring */
    assert_int_equal(s.ids[0], 11);
    struct seen t = {0};
    struct events_sub *sub2 = events_subscribe(ev, EVENTS_RING + 8, record_cb, &t);
    assert_int_equal(t.n, 2);
    events_unsubscribe(ev, sub);
    events_unsubscribe(ev, sub2);
    events_free(ev);
}

static void test_a_subscriber_may_leave_from_its_callback(void **state)
{
    struct events *ev = events_new();
    struct seen a = {.ev = ev}, b = {0};
    a.self = events_subscribe(ev, events_last_id(ev), record_cb, &a);
    struct events_sub *sb = events_subscribe(ev, events_last_id(ev), record_cb, &b);
    events_publish(ev, "x", NULL);
    events_publish(ev, "x", NULL);
    assert_int_equal(a.n, 1);
    assert_int_equal(b.n, 2);
    events_unsubscribe(ev, sb);
    events_free(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribers_get_new_events_in_order),
        cmocka_unit_test(test_reconnect_replays_what_is_still_in_the_ring),
        cmocka_unit_test(test_a_subscriber_may_leave_from_its_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
