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
    struct events_sub *sub = events_subscribe(ev, events_last_id(ev), EVENTS_ALL, record_cb, &s);
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
    struct events_sub *sub = events_subscribe(ev, 0, EVENTS_ALL, record_cb, &s);
    assert_int_equal(s.n, EVENTS_RING); /* the oldest 10 fell out of the ring */
    assert_int_equal(s.ids[0], 11);
    struct seen t = {0};
    struct events_sub *sub2 = events_subscribe(ev, EVENTS_RING + 8, EVENTS_ALL, record_cb, &t);
    assert_int_equal(t.n, 2);
    events_unsubscribe(ev, sub);
    events_unsubscribe(ev, sub2);
    events_free(ev);
}

static void test_a_subscriber_may_leave_from_its_callback(void **state)
{
    struct events *ev = events_new();
    struct seen a = {.ev = ev}, b = {0};
    a.self = events_subscribe(ev, events_last_id(ev), EVENTS_ALL, record_cb, &a);
    struct events_sub *sb = events_subscribe(ev, events_last_id(ev), EVENTS_ALL, record_cb, &b);
    events_publish(ev, "x", NULL);
    events_publish(ev, "x", NULL);
    assert_int_equal(a.n, 1);
    assert_int_equal(b.n, 2);
    events_unsubscribe(ev, sb);
    events_free(ev);
}

/* A tenant's subscriber sees its own tenant's events and nothing else: not another tenant's,
 * not the system's (engines, queues); an EVENTS_ALL one sees them all. */
static void test_a_tenant_sees_only_its_own_events(void **state)
{
    struct events *ev = events_new();
    struct seen a = {0}, all = {0};
    struct events_sub *sa = events_subscribe(ev, events_last_id(ev), "acme", record_cb, &a);
    struct events_sub *sall = events_subscribe(ev, events_last_id(ev), EVENTS_ALL, record_cb, &all);
    events_publish_tenant(ev, "acme", "run.status", NULL);   /* 1 */
    events_publish_tenant(ev, "globex", "run.status", NULL); /* 2 */
    events_publish(ev, "engine.state", NULL);                /* 3 */
    events_publish_tenant(ev, "acme.x", "run.status", NULL); /* 4: a name acme is a prefix of */
    events_publish_tenant(ev, "acme", "run.status", NULL);   /* 5 */
    assert_int_equal(a.n, 2);
    assert_int_equal(a.ids[0], 1);
    assert_int_equal(a.ids[1], 5);
    assert_int_equal(all.n, 5);
    events_unsubscribe(ev, sa);
    events_unsubscribe(ev, sall);
    events_free(ev);
}

/* Resuming with Last-Event-ID replays from the ring through the same filter. */
static void test_a_tenants_replay_keeps_the_filter(void **state)
{
    struct events *ev = events_new();
    for (int i = 0; i < 10; i++)
        events_publish_tenant(ev, i % 2 ? "acme" : "globex", "run.status", NULL);
    events_publish(ev, "engine.state", NULL);
    struct seen a = {0};
    struct events_sub *sa = events_subscribe(ev, 3, "acme", record_cb, &a);
    assert_int_equal(a.n, 4); /* 4 6 8 10: acme's after id 3 */
    for (size_t i = 0; i < a.n; i++)
        assert_int_equal(a.ids[i], 4 + 2 * i);
    events_unsubscribe(ev, sa);
    events_free(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribers_get_new_events_in_order),
        cmocka_unit_test(test_reconnect_replays_what_is_still_in_the_ring),
        cmocka_unit_test(test_a_subscriber_may_leave_from_its_callback),
        cmocka_unit_test(test_a_tenant_sees_only_its_own_events),
        cmocka_unit_test(test_a_tenants_replay_keeps_the_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
