/*
 * Unit tests of the gateway's calls (gateway.h: gateway_submit, gateway_call_cancel,
 * gateway_call_resume) driven by a client that is not HTTP, as the runs will be: a recorder of
 * the callbacks, against a real arun-mock-engine that a real supervisor starts (one engine `m`,
 * max_concurrency 1, shared by the tests; each test leaves it idle). The HTTP client of the same
 * interface is covered end to end by tests/e2e/gateway.test.mjs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/clock.h"
#include "gateway/gateway_int.h" /* the engine's queue, to see its slot and its waiters */
#include "testutil.h"

#define WAIT_MS 30000 /* generous: an ASan build on a loaded machine */
#define LONG_BODY                                                                                  \
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true,"       \
    "\"max_tokens\":1000,\"ignore_eos\":true}"
#define SHORT_BODY                                                                                 \
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"y\"}],\"stream\":true,"       \
    "\"max_tokens\":6,\"ignore_eos\":true}"
#define PLAIN_BODY                                                                                 \
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"z\"}],\"max_tokens\":2}"

struct env {
    uv_loop_t loop;
    char dir[64];
    struct config *cfg;
    struct events *events;
    struct metrics *metrics;
    struct httpc *httpc;
    struct supervisor *sup;
    struct http_server *srv;
    struct gateway *gw;
    bool stopped;
};

static struct env env;

/* ---- the loop ---- */

static void expire_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until *flag (an int) is at least want, or ms pass. Returns whether it is. */
static bool run_until(const int *flag, int want, uint64_t ms)
{
    uv_timer_t t;
    bool expired = false;
    uv_timer_init(&env.loop, &t);
    t.data = &expired;
    uv_timer_start(&t, expire_cb, ms, 0);
    while (*flag < want && !expired)
        uv_run(&env.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&env.loop, UV_RUN_NOWAIT);
    return *flag >= want;
}

static struct gw_queue *queue_m(void)
{
    return &env.gw->queues[0];
}

/* ---- the mock's own view ---- */

struct stat_req {
    int done;
    long value;
    const char *field;
};

static void stat_done_cb(struct httpc_req *r, const struct httpc_result *res, void *arg)
{
    struct stat_req *sr = arg;
    json_t *j = res->body ? json_loads(res->body, 0, NULL) : NULL;
    sr->value = (long)json_integer_value(json_object_get(j, sr->field));
    json_decref(j);
    sr->done = 1;
}

/* A field of the engine's /mock/stats (docs/mock-engine.md), read through its own request. */
static long mock_stat(const char *field)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/mock/stats",
             (unsigned)engine_port(supervisor_find(env.sup, "m")));
    struct stat_req sr = {.field = field, .value = -1};
    struct httpc_opts o = {.url = url, .arg = &sr};
    assert_int_equal(httpc_request(env.httpc, &o, stat_done_cb, NULL), 0);
    assert_true(run_until(&sr.done, 1, WAIT_MS));
    return sr.value;
}

/* ---- a client that records what it hears ---- */

enum { MAX_SEEN = 4096 };

struct client {
    char seen[MAX_SEEN]; /* one letter per callback: w(ait) h(ead) e(vent) c(omment) b(ody) E(nd) */
    int n;
    int waits, heads, events, bodies, ends;
    uint32_t position; /* the last on_wait's */
    int end_status;
    char end_code[64];
    bool done_event;     /* the [DONE] event came */
    int cancel_at_event; /* cancel from inside on_event at this event (1-based); 0 never */
    int pause_at_event;  /* return GATEWAY_CALL_PAUSE at this event; 0 never */
    struct gateway_call *call;
    struct client *cancel_other; /* cancelled from this client's second on_wait (the timer's) */
    int other_cancelled;
};

static void note(struct client *cl, char what)
{
    if (cl->n < MAX_SEEN - 1)
        cl->seen[cl->n++] = what;
}

static void wait_cb(struct gateway_call *c, uint32_t position, const char *text, void *arg)
{
    struct client *cl = arg;
    note(cl, 'w');
    cl->waits++;
    cl->position = position;
    assert_true(position >= 1);
    if (cl->cancel_other != NULL && cl->waits >= 2 && !cl->other_cancelled) {
        cl->other_cancelled = 1;
        gateway_call_cancel(cl->cancel_other->call);
    }
}

static void head_cb(struct gateway_call *c, int status, void *arg)
{
    struct client *cl = arg;
    note(cl, 'h');
    cl->heads++;
    assert_int_equal(status, 200);
    assert_string_equal(gateway_call_info(c)->engine, "m");
}

static int event_cb(struct gateway_call *c, const struct sse_event *ev, void *arg)
{
    struct client *cl = arg;
    note(cl, 'e');
    cl->events++;
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
        cl->done_event = true;
    if (cl->events == cl->cancel_at_event)
        gateway_call_cancel(c);
    return cl->events == cl->pause_at_event ? GATEWAY_CALL_PAUSE : 0;
}

static int comment_cb(struct gateway_call *c, const char *text, void *arg)
{
    note(arg, 'c');
    return 0;
}

static void body_cb(struct gateway_call *c, const char *content_type, const char *body, size_t len,
                    void *arg)
{
    struct client *cl = arg;
    note(cl, 'b');
    cl->bodies++;
    assert_non_null(strstr(body, "\"choices\""));
}

static void end_cb(struct gateway_call *c, int status, const char *code, const char *message,
                   void *arg)
{
    struct client *cl = arg;
    note(cl, 'E');
    cl->ends++;
    cl->end_status = status;
    snprintf(cl->end_code, sizeof(cl->end_code), "%s", code ? code : "");
}

static const struct gateway_call_cbs cbs = {
    .on_wait = wait_cb,
    .on_head = head_cb,
    .on_event = event_cb,
    .on_comment = comment_cb,
    .on_body = body_cb,
    .on_end = end_cb,
};

/* A durable run's client: no on_wait (its queue is the store), nothing to tell while it waits. */
static const struct gateway_call_cbs silent_cbs = {
    .on_head = head_cb,
    .on_event = event_cb,
    .on_comment = comment_cb,
    .on_body = body_cb,
    .on_end = end_cb,
};

static int submit_silent(struct client *cl, const char *body)
{
    struct gateway_submission s = {
        .path = "/v1/chat/completions",
        .model = "m",
        .body = body,
        .body_len = strlen(body),
        .stream = strstr(body, "\"stream\":true") != NULL,
        .request_id = "test-durable",
        .durable = true,
    };
    return gateway_submit(env.gw, &s, &silent_cbs, cl, &cl->call);
}

static int submit(struct client *cl, const char *model, const char *body)
{
    struct gateway_submission s = {
        .path = "/v1/chat/completions",
        .model = model,
        .body = body,
        .body_len = strlen(body),
        .stream = strstr(body, "\"stream\":true") != NULL,
        .request_id = "test-call",
    };
    return gateway_submit(env.gw, &s, &cbs, cl, &cl->call);
}

/* Asserts that nothing came after the end and that the end came once, and that every
 * callback but on_wait came after on_head. */
static void assert_well_formed(const struct client *cl)
{
    assert_int_equal(cl->ends, 1);
    assert_int_equal(cl->seen[cl->n - 1], 'E');
    int i = 0;
    while (i < cl->n && cl->seen[i] == 'w')
        i++;
    assert_true(i < cl->n);
    assert_int_equal(cl->seen[i], 'h');
}

/* ---- the engine ---- */

static int setup(void **state)
{
    const char *bin = getenv("ARUN_BUILD_DIR");
    assert_non_null(bin);
    snprintf(env.dir, sizeof(env.dir), "/tmp/arun-test-call-XXXXXX");
    assert_non_null(mkdtemp(env.dir));
    char *yaml = xasprintf("data_dir: %s\nengines:\n  m:\n    cmd: \"%s/arun-mock-engine --port "
                           "${PORT} --tokens-per-s 50\"\n    max_concurrency: 1\n"
                           "    start: always\n    health:\n      interval_ms: 100\n",
                           env.dir, bin);
    struct buf err;
    buf_init(&err, 4096);
    int rc = config_parse(yaml, strlen(yaml), "test.yaml", &env.cfg, &err);
    if (rc != 0)
        fail_msg("config: %s", buf_cstr(&err));
    buf_cleanup(&err);
    free(yaml);
    assert_int_equal(uv_loop_init(&env.loop), 0);
    env.events = events_new();
    env.metrics = metrics_new();
    env.httpc = httpc_new(&env.loop);
    struct supervisor_options so = {.loop = &env.loop,
                                    .cfg = env.cfg,
                                    .events = env.events,
                                    .metrics = env.metrics,
                                    .httpc = env.httpc};
    env.sup = supervisor_new(&so);
    struct http_server_options ho = {.host = "127.0.0.1"};
    env.srv = http_server_new(&env.loop, &ho, env.metrics); /* never listens: no HTTP client */
    env.gw = gateway_new(env.srv, env.cfg, env.sup, env.httpc, env.events, env.metrics);
    supervisor_run(env.sup);
    struct engine *e = supervisor_find(env.sup, "m");
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    while (engine_state(e) != ENGINE_READY && clock_mono_ms() < deadline)
        uv_run(&env.loop, UV_RUN_ONCE);
    assert_int_equal(engine_state(e), ENGINE_READY);
    return 0;
}

static void stopped_cb(void *arg)
{
    env.stopped = true;
}

static int teardown(void **state)
{
    gateway_free(env.gw);
    supervisor_shutdown(env.sup, stopped_cb, NULL);
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    while (!env.stopped && clock_mono_ms() < deadline)
        uv_run(&env.loop, UV_RUN_ONCE);
    assert_true(env.stopped);
    http_server_free(env.srv);
    supervisor_free(env.sup);
    httpc_free(env.httpc);
    while (uv_run(&env.loop, UV_RUN_NOWAIT) != 0) {
    }
    assert_int_equal(uv_loop_close(&env.loop), 0);
    events_free(env.events);
    metrics_free(env.metrics);
    config_free(env.cfg);
    testutil_rm_rf(env.dir);
    return 0;
}

/* ---- the tests ---- */

static void test_a_stream_is_head_then_events_in_order_then_one_end(void **state)
{
    struct client cl = {0};
    assert_int_equal(submit(&cl, "m", SHORT_BODY), 0);
    assert_true(run_until(&cl.ends, 1, WAIT_MS));
    assert_well_formed(&cl);
    assert_int_equal(cl.heads, 1);
    assert_int_equal(cl.end_status, 200);
    assert_string_equal(cl.end_code, "");
    assert_true(cl.events >= 6); /* the role, the tokens, the finish, [DONE] */
    assert_true(cl.done_event);
    assert_int_equal(cl.seen[cl.n - 2], 'e'); /* [DONE] last, then the end */
    assert_int_equal(queue_m()->in_flight, 0);
}

static void test_a_plain_answer_is_head_body_end(void **state)
{
    struct client cl = {0};
    assert_int_equal(submit(&cl, "m", PLAIN_BODY), 0);
    assert_true(run_until(&cl.ends, 1, WAIT_MS));
    assert_well_formed(&cl);
    assert_string_equal(cl.seen, "hbE");
    assert_int_equal(cl.end_status, 200);
}

static void test_an_unknown_model_fails_submit_with_enoent_and_no_callback(void **state)
{
    struct client cl = {0};
    assert_int_equal(submit(&cl, "no-such-model", PLAIN_BODY), -ENOENT);
    assert_int_equal(submit(&cl, "", PLAIN_BODY), -EINVAL);
    uv_run(&env.loop, UV_RUN_NOWAIT);
    assert_int_equal(cl.n, 0);
    assert_true(h2o_linklist_is_empty(&env.gw->active));
}

/* Cancelled from inside on_event (the hold defers the teardown until the parser is done with
 * the read): nothing more arrives, the slot is given back, and the next call is served. */
static void test_cancel_while_streaming_calls_nothing_more_and_frees_the_slot(void **state)
{
    struct client a = {.cancel_at_event = 2}, b = {0};
    assert_int_equal(submit(&a, "m", LONG_BODY), 0);
    assert_true(run_until(&a.events, 2, WAIT_MS));
    assert_int_equal(queue_m()->in_flight, 0); /* given back at once */
    assert_int_equal(submit(&b, "m", PLAIN_BODY), 0);
    assert_true(run_until(&b.ends, 1, WAIT_MS));
    assert_int_equal(b.end_status, 200);
    assert_int_equal(a.events, 2);
    assert_int_equal(a.ends, 0);
    assert_int_equal(a.seen[a.n - 1], 'e');
}

/* A call waiting behind a stream is cancelled from outside while queued: it hears nothing
 * more and leaves the queue; once the stream is cancelled too the slot serves a third call. */
static void test_cancel_while_queued_calls_nothing_more_and_leaves_the_queue(void **state)
{
    struct client a = {0}, b = {0}, c = {0};
    assert_int_equal(submit(&a, "m", LONG_BODY), 0);
    assert_true(run_until(&a.events, 1, WAIT_MS));
    assert_int_equal(submit(&b, "m", PLAIN_BODY), 0);
    assert_int_equal(b.waits, 1); /* told at once that it waits, inside submit */
    assert_int_equal(queue_m()->waiting, 1);
    assert_true(run_until(&b.waits, 2, WAIT_MS)); /* and again from the wait timer */
    gateway_call_cancel(b.call);
    assert_int_equal(queue_m()->waiting, 0);
    int waits = b.waits;
    gateway_call_cancel(a.call);
    assert_int_equal(queue_m()->in_flight, 0);
    assert_int_equal(submit(&c, "m", PLAIN_BODY), 0);
    assert_true(run_until(&c.ends, 1, WAIT_MS));
    assert_int_equal(c.end_status, 200);
    assert_int_equal(b.waits, waits);
    assert_int_equal(b.n, b.waits); /* only ever waited */
    assert_int_equal(a.ends, 0);
}

/* A client cancels another call, the one behind it, from inside on_wait while the wait timer
 * walks the queue: the walk must not step onto the call that left. */
static void test_cancel_of_another_call_from_on_wait_is_safe(void **state)
{
    struct client a = {0}, c = {0};
    struct client b = {.cancel_other = &c};
    assert_int_equal(submit(&a, "m", LONG_BODY), 0);
    assert_true(run_until(&a.events, 1, WAIT_MS));
    assert_int_equal(submit(&b, "m", PLAIN_BODY), 0);
    assert_int_equal(submit(&c, "m", PLAIN_BODY), 0);
    assert_int_equal(queue_m()->waiting, 2);
    assert_true(run_until(&b.other_cancelled, 1, WAIT_MS));
    assert_int_equal(queue_m()->waiting, 1);
    int waits = c.waits;
    assert_true(run_until(&b.waits, b.waits + 1, WAIT_MS)); /* the timer goes on */
    assert_int_equal(c.waits, waits);
    assert_int_equal(c.ends, 0);
    gateway_call_cancel(b.call);
    gateway_call_cancel(a.call);
    assert_int_equal(queue_m()->waiting, 0);
    assert_int_equal(queue_m()->in_flight, 0);
}

/* Durable calls with no client to tell are not walked by the wait timer, yet an HTTP client
 * behind them hears its true place in the queue, counting them. */
static void test_waiting_positions_count_calls_with_no_client_to_tell(void **state)
{
    struct client a = {0}, d1 = {0}, d2 = {0}, b = {0};
    assert_int_equal(submit(&a, "m", LONG_BODY), 0);
    assert_true(run_until(&a.events, 1, WAIT_MS));
    assert_int_equal(submit_silent(&d1, PLAIN_BODY), 0);
    assert_int_equal(submit_silent(&d2, PLAIN_BODY), 0);
    assert_int_equal(queue_m()->waiting, 2);
    assert_int_equal(queue_m()->telling, 0);
    assert_int_equal(submit(&b, "m", PLAIN_BODY), 0);
    assert_int_equal(queue_m()->telling, 1);
    assert_int_equal(b.position, 3);              /* told at once, inside submit */
    assert_true(run_until(&b.waits, 2, WAIT_MS)); /* and by the timer: the same place */
    assert_int_equal(b.position, 3);
    gateway_call_cancel(d1.call);
    assert_true(run_until(&b.waits, 3, WAIT_MS));
    assert_int_equal(b.position, 2);
    assert_int_equal(d2.n, 0); /* heard nothing while it waited */
    gateway_call_cancel(b.call);
    gateway_call_cancel(d2.call);
    gateway_call_cancel(a.call);
    assert_int_equal(queue_m()->waiting, 0);
    assert_int_equal(queue_m()->telling, 0);
    assert_int_equal(queue_m()->in_flight, 0);
}

/* Paused at the first event: nothing arrives while the engine sends the rest (the transfer is
 * not read), and after the resume the rest arrives, whole, and the call ends once. */
static void test_pause_holds_the_stream_until_resume(void **state)
{
    struct client ref = {0}, cl = {.pause_at_event = 1};
    assert_int_equal(submit(&ref, "m", SHORT_BODY), 0);
    assert_true(run_until(&ref.ends, 1, WAIT_MS));

    assert_int_equal(submit(&cl, "m", SHORT_BODY), 0);
    assert_true(run_until(&cl.events, 1, WAIT_MS));
    assert_true(cl.call->paused);
    /* Until the engine has sent its whole answer (its request is over), however slow it is:
     * only then does "nothing more arrived" show that the pause held the rest back. */
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    while (mock_stat("concurrency") != 0 && clock_mono_ms() < deadline) {
    }
    assert_int_equal(mock_stat("concurrency"), 0);
    assert_int_equal(cl.events, 1);
    assert_int_equal(cl.ends, 0);
    gateway_call_resume(cl.call);
    assert_int_equal(cl.events, 1); /* never from inside the resume */
    assert_true(run_until(&cl.ends, 1, WAIT_MS));
    assert_well_formed(&cl);
    assert_int_equal(cl.end_status, 200);
    assert_int_equal(cl.events, ref.events);
    assert_true(cl.done_event);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_stream_is_head_then_events_in_order_then_one_end),
        cmocka_unit_test(test_a_plain_answer_is_head_body_end),
        cmocka_unit_test(test_an_unknown_model_fails_submit_with_enoent_and_no_callback),
        cmocka_unit_test(test_cancel_while_streaming_calls_nothing_more_and_frees_the_slot),
        cmocka_unit_test(test_cancel_while_queued_calls_nothing_more_and_leaves_the_queue),
        cmocka_unit_test(test_cancel_of_another_call_from_on_wait_is_safe),
        cmocka_unit_test(test_waiting_positions_count_calls_with_no_client_to_tell),
        cmocka_unit_test(test_pause_holds_the_stream_until_resume),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
