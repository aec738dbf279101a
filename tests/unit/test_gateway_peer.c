/*
 * Unit tests of the gateway's calls to other nodes (gateway_set_cluster): a model no engine or
 * route here serves goes to the peers the cluster names, best first, falling back past a node
 * that cannot be reached or answers 5xx; a call from another node is never sent on; the HTTP
 * side names the node that answered (x-arun-node), passes another node's error on as it is,
 * and lists other nodes' models in a 404 and in GET /v1/models.
 *
 * The other nodes are played by two arun-mock-engines that a real supervisor runs as engines of
 * this node under names no request uses ("pa" answers 503, "pb" answers), and by a server on the
 * loop that records what it was sent ("node-z"). The cluster is the fake of fake_cluster.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_cluster.c"
#include "gateway/gateway_int.h"
#include "testloop.h"
#include "testutil.h"

#define WAIT_MS 30000
#define SECRET_ENV "TEST_GATEWAY_PEER_SECRET"
#define SECRET "a-cluster-secret-of-more-than-32-bytes"
#define PLAIN_BODY                                                                                 \
    "{\"model\":\"far\",\"messages\":[{\"role\":\"user\",\"content\":\"z\"}],\"max_tokens\":2}"
#define SHORT_BODY                                                                                 \
    "{\"model\":\"far\",\"messages\":[{\"role\":\"user\",\"content\":\"y\"}],\"stream\":true,"     \
    "\"max_tokens\":6,\"ignore_eos\":true}"

static struct {
    uv_loop_t loop;
    char dir[64];
    struct config *cfg;
    struct events *events;
    struct metrics *metrics;
    struct metrics *zmetrics; /* node-z's: a server registers its families once per registry */
    struct httpc *httpc;
    struct supervisor *sup;
    struct http_server *srv;  /* this node's, with the gateway's routes */
    struct http_server *zsrv; /* node-z */
    struct gateway *gw;
    char url_a[64], url_b[64], url_z[64];
    json_t *z_seen; /* the headers node-z got last */
    bool stopped;
    int drained;
} env;

/* ---- a client of the calls that records what it hears ---- */

struct client {
    int heads, events, bodies, ends;
    int end_status;
    char end_code[64];
    char end_message[512];
    char node[160], engine[160]; /* gateway_call_info() at the end */
    int pause_at_event;
    bool done_event;
    struct gateway_call *call;
};

static void head_cb(struct gateway_call *c, int status, void *arg)
{
    ((struct client *)arg)->heads++;
}

static int event_cb(struct gateway_call *c, const struct sse_event *ev, void *arg)
{
    struct client *cl = arg;
    cl->events++;
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
        cl->done_event = true;
    return cl->events == cl->pause_at_event ? GATEWAY_CALL_PAUSE : 0;
}

static void body_cb(struct gateway_call *c, const char *content_type, const char *body, size_t len,
                    void *arg)
{
    ((struct client *)arg)->bodies++;
}

static void end_cb(struct gateway_call *c, int status, const char *code, const char *message,
                   void *arg)
{
    struct client *cl = arg;
    cl->ends++;
    cl->end_status = status;
    snprintf(cl->end_code, sizeof(cl->end_code), "%s", code ? code : "");
    snprintf(cl->end_message, sizeof(cl->end_message), "%s", message ? message : "");
    const struct gateway_call_info *in = gateway_call_info(c);
    snprintf(cl->node, sizeof(cl->node), "%s", in->node ? in->node : "");
    snprintf(cl->engine, sizeof(cl->engine), "%s", in->engine);
}

static const struct gateway_call_cbs cbs = {
    .on_head = head_cb, .on_event = event_cb, .on_body = body_cb, .on_end = end_cb};

static int submit(struct client *cl, const char *body, bool local_only)
{
    struct gateway_submission s = {
        .path = "/v1/chat/completions",
        .model = "far",
        .body = body,
        .body_len = strlen(body),
        .stream = strstr(body, "\"stream\":true") != NULL,
        .request_id = "test-peer",
        .local_only = local_only,
    };
    return gateway_submit(env.gw, &s, &cbs, cl, &cl->call);
}

static bool ended(void *arg)
{
    return ((struct client *)arg)->ends > 0;
}

static bool has_events(void *arg)
{
    return ((struct client *)arg)->events > 0;
}

static const char *port_url(char *buf, size_t size, const char *engine)
{
    snprintf(buf, size, "http://127.0.0.1:%u",
             (unsigned)engine_port(supervisor_find(env.sup, engine)));
    return buf;
}

/* The peers of model "far", best first. */
static void peers(const char *const *nodes, const char *const *urls, size_t n)
{
    fake_cluster.npeers = 0;
    for (size_t i = 0; i < n; i++)
        fake_peer(i, nodes[i], urls[i], strcmp(urls[i], env.url_b) == 0 ? "pb" : "pa");
}

static bool metrics_say(const char *line)
{
    struct buf out;
    buf_init(&out, 1 << 20);
    IGNORE_RESULT(metrics_render(env.metrics, &out));
    bool yes = strstr(buf_cstr(&out), line) != NULL;
    buf_cleanup(&out);
    return yes;
}

struct stat_req {
    int done;
    long value;
};

static void stat_done_cb(struct httpc_req *r, const struct httpc_result *res, void *arg)
{
    struct stat_req *sr = arg;
    json_t *j = res->body ? json_loads(res->body, 0, NULL) : NULL;
    sr->value = (long)json_integer_value(json_object_get(j, "concurrency"));
    json_decref(j);
    sr->done = 1;
}

static bool stat_done(void *arg)
{
    return ((struct stat_req *)arg)->done != 0;
}

/* The requests engine pb (node-b's stand-in) is answering now, by its /mock/stats. */
static long mock_concurrency(void)
{
    char url[96];
    snprintf(url, sizeof(url), "%s/mock/stats", env.url_b);
    struct stat_req sr = {.value = -1};
    struct httpc_opts o = {.url = url, .arg = &sr};
    assert_int_equal(httpc_request(env.httpc, &o, stat_done_cb, NULL), 0);
    assert_true(testloop_run_until(&env.loop, stat_done, &sr, WAIT_MS));
    return sr.value;
}

/* ---- the calls ---- */

static void test_a_model_only_another_node_serves_goes_there(void **state)
{
    peers((const char *[]){"node-b"}, (const char *[]){env.url_b}, 1);
    struct client cl = {0};
    assert_int_equal(submit(&cl, PLAIN_BODY, false), 0);
    assert_int_equal(env.gw->to_peers, 1);
    assert_int_equal(env.gw->queues[1].in_flight, 0); /* no slot of the engine here */
    assert_true(testloop_run_until(&env.loop, ended, &cl, WAIT_MS));
    assert_int_equal(cl.end_status, 200);
    assert_string_equal(cl.end_code, "");
    assert_int_equal(cl.bodies, 1);
    assert_string_equal(cl.node, "node-b");
    assert_string_equal(cl.engine, "pb");
    assert_int_equal(env.gw->to_peers, 0);
}

static void test_a_node_that_fails_before_answering_falls_back_to_the_next(void **state)
{
    peers((const char *[]){"node-dead", "node-5xx", "node-b"},
          (const char *[]){"http://127.0.0.1:1", env.url_a, env.url_b}, 3);
    struct client cl = {0};
    assert_int_equal(submit(&cl, PLAIN_BODY, false), 0);
    assert_true(testloop_run_until(&env.loop, ended, &cl, WAIT_MS));
    assert_int_equal(cl.end_status, 200);
    assert_int_equal(cl.heads, 1); /* the failures before were never passed on */
    assert_true(metrics_say("arun_fallbacks_total{from=\"pa@node-dead\",to=\"pa@node-5xx\"} 1"));
    assert_true(metrics_say("arun_fallbacks_total{from=\"pa@node-5xx\",to=\"pb@node-b\"} 1"));
    assert_true(
        metrics_say("arun_upstream_errors_total{engine=\"pa@node-5xx\",reason=\"status_5xx\"} 1"));
    assert_int_equal(env.gw->to_peers, 0);
}

static void test_when_no_node_can_answer_the_call_fails_naming_the_last(void **state)
{
    peers((const char *[]){"node-dead", "node-5xx"},
          (const char *[]){"http://127.0.0.1:1", env.url_a}, 2);
    struct client cl = {0};
    assert_int_equal(submit(&cl, PLAIN_BODY, false), 0);
    assert_true(testloop_run_until(&env.loop, ended, &cl, WAIT_MS));
    assert_int_equal(cl.end_status, 502);
    assert_string_equal(cl.end_code, "no_engine_available");
    assert_non_null(strstr(cl.end_message, "no other node serving far could answer; the last "
                                           "one, engine pa@node-5xx: answered HTTP 503"));
    assert_int_equal(cl.heads, 0);
}

static void test_a_call_from_another_node_is_never_sent_on(void **state)
{
    peers((const char *[]){"node-b"}, (const char *[]){env.url_b}, 1);
    int asked = fake_cluster.peers_for_calls;
    struct client cl = {0};
    assert_int_equal(submit(&cl, PLAIN_BODY, true), -ENOENT);
    assert_int_equal(fake_cluster.peers_for_calls, asked); /* not even asked */
    uv_run(&env.loop, UV_RUN_NOWAIT);
    assert_int_equal(cl.ends + cl.heads, 0);
}

/* Paused at the first event: the other node's stream is not read meanwhile (its engine finishes
 * sending, and nothing more arrives here); after the resume the rest arrives whole. */
static void test_a_stream_from_another_node_is_relayed_with_backpressure(void **state)
{
    peers((const char *[]){"node-b"}, (const char *[]){env.url_b}, 1);
    struct client ref = {0}, cl = {.pause_at_event = 1};
    assert_int_equal(submit(&ref, SHORT_BODY, false), 0);
    assert_true(testloop_run_until(&env.loop, ended, &ref, WAIT_MS));
    assert_int_equal(ref.end_status, 200);
    assert_true(ref.done_event);

    assert_int_equal(submit(&cl, SHORT_BODY, false), 0);
    assert_true(testloop_run_until(&env.loop, has_events, &cl, WAIT_MS));
    assert_true(cl.call->paused);
    /* Until the engine has sent its whole answer (its request is over): only then does
     * "nothing more arrived" show that the pause held the rest back. */
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    while (mock_concurrency() != 0 && clock_mono_ms() < deadline) {
    }
    assert_int_equal(mock_concurrency(), 0);
    assert_int_equal(cl.events, 1);
    assert_int_equal(cl.ends, 0);
    gateway_call_resume(cl.call);
    assert_true(testloop_run_until(&env.loop, ended, &cl, WAIT_MS));
    assert_int_equal(cl.end_status, 200);
    assert_int_equal(cl.events, ref.events);
    assert_true(cl.done_event);
}

/* ---- the HTTP side (api.c) ---- */

struct answer {
    int done;
    int status;
    char node[160], engine[160], retry_after[16];
    char body[4096];
};

static void answer_cb(struct httpc_req *r, const struct httpc_result *res, void *arg)
{
    struct answer *a = arg;
    const char *v;
    a->status = res->status;
    snprintf(a->node, sizeof(a->node), "%s", (v = httpc_header(r, "x-arun-node")) ? v : "");
    snprintf(a->engine, sizeof(a->engine), "%s", (v = httpc_header(r, "x-arun-engine")) ? v : "");
    snprintf(a->retry_after, sizeof(a->retry_after), "%s",
             (v = httpc_header(r, "retry-after")) ? v : "");
    snprintf(a->body, sizeof(a->body), "%.*s", (int)res->body_len, res->body ? res->body : "");
    a->done = 1;
}

static bool answered(void *arg)
{
    return ((struct answer *)arg)->done != 0;
}

/* Asks this node, as a client would, with extra headers (NULL-terminated). */
static struct answer ask(const char *method, const char *path, const char *body,
                         const char *const *extra)
{
    char url[96];
    const char *h[8] = {"Content-Type: application/json"};
    size_t n = 1;
    for (; extra != NULL && extra[n - 1] != NULL; n++)
        h[n] = extra[n - 1];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", http_server_port(env.srv), path);
    struct answer a = {0};
    struct httpc_opts o = {.method = method,
                           .url = url,
                           .headers = h,
                           .nheaders = n,
                           .body = body,
                           .body_len = body ? strlen(body) : 0,
                           .arg = &a};
    assert_int_equal(httpc_request(env.httpc, &o, answer_cb, NULL), 0);
    assert_true(testloop_run_until(&env.loop, answered, &a, WAIT_MS));
    return a;
}

static void test_http_answers_name_the_node_that_answered(void **state)
{
    peers((const char *[]){"node-b"}, (const char *[]){env.url_b}, 1);
    struct answer a = ask("POST", "/v1/chat/completions", PLAIN_BODY, NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.node, "node-b");
    assert_string_equal(a.engine, "pb");
    a = ask("POST", "/v1/chat/completions", SHORT_BODY, NULL); /* streamed */
    assert_int_equal(a.status, 200);
    assert_string_equal(a.node, "node-b");
    assert_non_null(strstr(a.body, "data: [DONE]"));
    /* Answered here: by an engine of this node, or an error of this node. */
    a = ask("POST", "/v1/chat/completions",
            "{\"model\":\"hidden-b\",\"messages\":[{\"role\":\"user\",\"content\":\"z\"}]}", NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.node, "node-a");
    a = ask("GET", "/v1/models", NULL, NULL);
    assert_string_equal(a.node, "node-a");
}

static void test_http_another_nodes_error_passes_as_it_is(void **state)
{
    peers((const char *[]){"node-z"}, (const char *[]){env.url_z}, 1);
    struct answer a =
        ask("POST", "/v1/chat/completions", PLAIN_BODY,
            (const char *[]){"X-Request-Id: req-peer-1",
                             "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                             NULL});
    assert_int_equal(a.status, 429);
    assert_string_equal(a.retry_after, "7");
    assert_string_equal(a.node, "node-z2"); /* its own word for who answered */
    assert_string_equal(a.engine, "ez");
    assert_string_equal(a.body, "{\"error\":{\"message\":\"busy\",\"type\":\"rate_limit_error\","
                                "\"param\":null,\"code\":\"queue_full\"}}");
    /* What node-z was sent: the secret, this node, the tenant, the id and trace context. */
    json_t *z = env.z_seen;
    assert_string_equal(json_string_value(json_object_get(z, "x-arun-cluster")), SECRET);
    assert_string_equal(json_string_value(json_object_get(z, "x-arun-hop")), "node-a");
    assert_string_equal(json_string_value(json_object_get(z, "x-arun-tenant")), "default");
    assert_string_equal(json_string_value(json_object_get(z, "x-request-id")), "req-peer-1");
    assert_non_null(json_string_value(json_object_get(z, "traceparent")));
    assert_null(json_object_get(z, "authorization"));
}

static void test_http_404_and_models_name_what_other_nodes_serve(void **state)
{
    peers((const char *[]){"node-b"}, (const char *[]){env.url_b}, 1);
    struct answer a = ask("POST", "/v1/chat/completions",
                          "{\"model\":\"nobody\",\"messages\":[{\"role\":\"user\",\"content\":"
                          "\"z\"}]}",
                          NULL);
    assert_int_equal(a.status, 404);
    assert_string_equal(a.node, "node-a");
    assert_non_null(strstr(a.body, "model_not_found"));
    assert_non_null(strstr(a.body, "models served here: hidden-a, hidden-b; on other nodes: "
                                   "far, hidden-b"));
    a = ask("GET", "/v1/models", NULL, NULL);
    json_t *j = json_loads(a.body, 0, NULL);
    json_t *data = json_object_get(j, "data");
    size_t i;
    json_t *m;
    int far = 0, hidden_b = 0;
    json_array_foreach(data, i, m)
    {
        const char *id = json_string_value(json_object_get(m, "id"));
        if (strcmp(id, "far") == 0) {
            far++;
            assert_string_equal(json_string_value(json_object_get(m, "node")), "node-b");
            assert_string_equal(json_string_value(json_object_get(m, "engine")), "pb");
        }
        if (strcmp(id, "hidden-b") == 0) {
            hidden_b++;
            assert_null(json_object_get(m, "node")); /* served here: listed as this node's */
        }
    }
    assert_int_equal(far, 1);
    assert_int_equal(hidden_b, 1);
    json_decref(j);
}

static void test_http_a_request_from_another_node_is_served_here_or_not_at_all(void **state)
{
    peers((const char *[]){"node-b"}, (const char *[]){env.url_b}, 1);
    int asked = fake_cluster.peers_for_calls;
    struct answer a = ask("POST", "/v1/chat/completions", PLAIN_BODY,
                          (const char *[]){"x-arun-cluster: " SECRET, "x-arun-hop: node-q", NULL});
    assert_int_equal(a.status, 404);
    assert_null(strstr(a.body, "on other nodes"));
    assert_int_equal(fake_cluster.peers_for_calls, asked);
    a = ask("POST", "/v1/chat/completions", PLAIN_BODY,
            (const char *[]){"x-arun-cluster: not-the-secret", "x-arun-hop: node-q", NULL});
    assert_int_equal(a.status, 401);
    assert_non_null(strstr(a.body, "invalid_cluster_secret"));
    /* A hop without the secret is a client's header: not believed, so the call goes on. */
    a = ask("POST", "/v1/chat/completions", PLAIN_BODY, (const char *[]){"x-arun-hop: x", NULL});
    assert_int_equal(a.status, 200);
    assert_string_equal(a.node, "node-b");
}

/* ---- node-z: a server on the loop that records what it is sent ---- */

static void z_chat(struct http_request *r, void *arg)
{
    static const char *const names[] = {"x-arun-cluster", "x-arun-hop",  "x-arun-tenant",
                                        "x-request-id",   "traceparent", "authorization"};
    json_decref(env.z_seen);
    env.z_seen = json_object();
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (http_header(r, names[i]) != NULL)
            json_object_set_new(env.z_seen, names[i], json_string(http_header(r, names[i])));
    http_add_header(r, "retry-after", "7");
    http_add_header(r, "x-arun-node", "node-z2");
    http_add_header(r, "x-arun-engine", "ez");
    static const char body[] = "{\"error\":{\"message\":\"busy\",\"type\":\"rate_limit_error\","
                               "\"param\":null,\"code\":\"queue_full\"}}";
    http_send_bytes(r, 429, "application/json", body, sizeof(body) - 1);
}

static int setup(void **state)
{
    const char *bin = getenv("ARUN_BUILD_DIR");
    assert_non_null(bin);
    snprintf(env.dir, sizeof(env.dir), "/tmp/arun-test-peer-XXXXXX");
    assert_non_null(mkdtemp(env.dir));
    char *yaml = xasprintf(
        "data_dir: %s\ncluster:\n  secret_env: " SECRET_ENV "\nengines:\n"
        "  pa:\n    cmd: \"%s/arun-mock-engine --port ${PORT} --fail-status 503\"\n"
        "    models: [hidden-a]\n    start: always\n    health:\n      interval_ms: 100\n"
        "  pb:\n    cmd: \"%s/arun-mock-engine --port ${PORT} --tokens-per-s 50\"\n"
        "    models: [hidden-b]\n    start: always\n    health:\n      interval_ms: 100\n",
        env.dir, bin, bin);
    struct buf err;
    buf_init(&err, 4096);
    if (config_parse(yaml, strlen(yaml), "test.yaml", &env.cfg, &err) != 0)
        fail_msg("config: %s", buf_cstr(&err));
    free(yaml);
    setenv(SECRET_ENV, SECRET, 1);
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
    struct http_server_options ho = {
        .host = "127.0.0.1", .max_body_bytes = 1 << 20, .max_connections = 64};
    env.srv = http_server_new(&env.loop, &ho, env.metrics);
    env.gw = gateway_new(env.srv, env.cfg, env.sup, env.httpc, env.events, env.metrics);
    assert_int_equal(http_server_listen(env.srv, &err), 0);
    env.zmetrics = metrics_new();
    env.zsrv = http_server_new(&env.loop, &ho, env.zmetrics);
    http_route(env.zsrv, "POST", "/v1/chat/completions", HTTP_PUBLIC, z_chat, NULL);
    assert_int_equal(http_server_listen(env.zsrv, &err), 0);
    buf_cleanup(&err);
    snprintf(env.url_z, sizeof(env.url_z), "http://127.0.0.1:%u/", http_server_port(env.zsrv));
    fake_cluster = (struct cluster){.cfg = env.cfg,
                                    .httpc = env.httpc,
                                    .shared = true,
                                    .node_id = "node-a",
                                    .model = "far",
                                    .models = "far, hidden-b"};
    gateway_set_cluster(env.gw, &fake_cluster);
    supervisor_run(env.sup);
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    while ((engine_state(supervisor_find(env.sup, "pa")) != ENGINE_READY ||
            engine_state(supervisor_find(env.sup, "pb")) != ENGINE_READY) &&
           clock_mono_ms() < deadline)
        uv_run(&env.loop, UV_RUN_ONCE);
    assert_int_equal(engine_state(supervisor_find(env.sup, "pb")), ENGINE_READY);
    port_url(env.url_a, sizeof(env.url_a), "pa");
    port_url(env.url_b, sizeof(env.url_b), "pb");
    return 0;
}

static void stopped_cb(void *arg)
{
    env.stopped = true;
}

static void drained_cb(struct http_server *srv, bool forced, void *arg)
{
    env.drained++;
}

static bool both_drained(void *arg)
{
    return env.drained == 2;
}

static int teardown(void **state)
{
    /* As arun stops: the servers drain (the gateway's shutdown hook runs), then the users go
     * before what they use. */
    http_server_shutdown(env.srv, drained_cb, NULL);
    http_server_shutdown(env.zsrv, drained_cb, NULL);
    assert_true(testloop_run_until(&env.loop, both_drained, NULL, WAIT_MS));
    gateway_free(env.gw);
    supervisor_shutdown(env.sup, stopped_cb, NULL);
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    while (!env.stopped && clock_mono_ms() < deadline)
        uv_run(&env.loop, UV_RUN_ONCE);
    assert_true(env.stopped);
    httpc_free(env.httpc);
    http_server_free(env.srv);
    http_server_free(env.zsrv);
    supervisor_free(env.sup);
    while (uv_run(&env.loop, UV_RUN_NOWAIT) != 0) {
    }
    assert_int_equal(uv_loop_close(&env.loop), 0);
    json_decref(env.z_seen);
    events_free(env.events);
    metrics_free(env.metrics);
    metrics_free(env.zmetrics);
    config_free(env.cfg);
    testutil_rm_rf(env.dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_model_only_another_node_serves_goes_there),
        cmocka_unit_test(test_a_node_that_fails_before_answering_falls_back_to_the_next),
        cmocka_unit_test(test_when_no_node_can_answer_the_call_fails_naming_the_last),
        cmocka_unit_test(test_a_call_from_another_node_is_never_sent_on),
        cmocka_unit_test(test_a_stream_from_another_node_is_relayed_with_backpressure),
        cmocka_unit_test(test_http_answers_name_the_node_that_answered),
        cmocka_unit_test(test_http_another_nodes_error_passes_as_it_is),
        cmocka_unit_test(test_http_404_and_models_name_what_other_nodes_serve),
        cmocka_unit_test(test_http_a_request_from_another_node_is_served_here_or_not_at_all),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
