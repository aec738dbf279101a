/*
 * Unit tests of cluster/peer.c: the cluster secret's check, the headers of a request to another
 * node, where such a request goes (cluster_target), and cluster_forward against a real server
 * on the loop that plays the other node. The node view is the fake of fake_cluster.c.
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
#include "testloop.h"

#define WAIT_MS 30000
#define SECRET_ENV "TEST_PEER_SECRET"
#define SECRET "0123456789abcdef0123456789abcdef-s3cret" /* 39 bytes: over the minimum */

static struct {
    uv_loop_t loop;
    struct config *cfg;
    struct metrics *metrics;
    struct http_server *srv; /* the other node */
    struct httpc *httpc;
    char url[64];
    bool drained;
} env;

static bool ok(const char *v)
{
    return cluster_secret_ok(&fake_cluster, v, v ? strlen(v) : 0);
}

static void test_the_secret_is_ok_only_when_it_is_the_same_bytes(void **state)
{
    assert_true(ok(SECRET));
    assert_false(ok(SECRET "x"));                                /* longer */
    assert_false(ok("0123456789abcdef0123456789abcdef-s3creT")); /* same length */
    assert_false(ok("0123456789abcdef0123456789abcdef"));        /* a prefix */
    assert_false(ok(""));
    assert_false(cluster_secret_ok(&fake_cluster, NULL, 0));
    assert_false(cluster_secret_ok(&fake_cluster, SECRET, strlen(SECRET) - 1));
}

static void test_no_secret_is_ever_ok_without_a_shared_store_or_a_good_secret(void **state)
{
    fake_cluster.shared = false; /* SQLite: a cluster of one, no node may call */
    assert_false(ok(SECRET));
    fake_cluster.shared = true;
    unsetenv(SECRET_ENV);
    assert_false(ok(SECRET));
    assert_false(ok(""));
    setenv(SECRET_ENV, "too-short", 1); /* under CLUSTER_SECRET_MIN */
    assert_false(ok("too-short"));
    setenv(SECRET_ENV, "0123456789abcdef0123456789abcdef\r\nx: y", 1); /* would end a header */
    assert_false(ok("0123456789abcdef0123456789abcdef\r\nx: y"));
    setenv(SECRET_ENV, SECRET, 1);
    assert_true(ok(SECRET));
}

static void test_peer_headers_carry_the_secret_this_node_and_the_tenant(void **state)
{
    char store[1024];
    const char *h[3];
    assert_int_equal(cluster_peer_headers(&fake_cluster, "acme", store, sizeof(store), h), 3);
    assert_string_equal(h[0], "x-arun-cluster: " SECRET);
    assert_string_equal(h[1], "x-arun-hop: node-a");
    assert_string_equal(h[2], "x-arun-tenant: acme");
    assert_int_equal(cluster_peer_headers(&fake_cluster, NULL, store, sizeof(store), h), 2);
    assert_string_equal(h[1], "x-arun-hop: node-a");
    /* Without a secret the request goes without one, and the other node refuses it. */
    unsetenv(SECRET_ENV);
    assert_int_equal(cluster_peer_headers(&fake_cluster, "acme", store, sizeof(store), h), 2);
    assert_string_equal(h[0], "x-arun-hop: node-a");
    setenv(SECRET_ENV, SECRET, 1);
    /* A store too small drops what does not fit, never writes past it. */
    char small[80];
    assert_int_equal(cluster_peer_headers(&fake_cluster, "acme", small, sizeof(small), h), 2);
    assert_string_equal(h[0], "x-arun-cluster: " SECRET);
    assert_string_equal(h[1], "x-arun-hop: node-a");
}

static void test_a_target_is_parts_for_an_ip_and_port_else_the_whole_url(void **state)
{
    struct cluster_target t;
    struct httpc_opts o = {0};
    assert_int_equal(cluster_target("http://127.0.0.1:8080", "/v1/x", &t, &o), 0);
    assert_null(o.url);
    assert_string_equal(o.to.host, "127.0.0.1");
    assert_int_equal(o.to.port, 8080);
    assert_string_equal(o.to.path, "/v1/x");
    assert_int_equal(cluster_target("http://[::1]:9/", "/v1/x", &t, &o), 0);
    assert_null(o.url);
    assert_string_equal(o.to.host, "::1");
    assert_int_equal(o.to.port, 9);
    assert_int_equal(cluster_target("http://node-b:8080", "/v1/x", &t, &o), 0);
    assert_string_equal(o.url, "http://node-b:8080/v1/x");
    assert_int_equal(cluster_target("https://10.0.0.2:8443/", "/v1/x", &t, &o), 0);
    assert_string_equal(o.url, "https://10.0.0.2:8443/v1/x");
    assert_int_equal(cluster_target("http://10.0.0.2:8080/arun", "/v1/x", &t, &o), 0);
    assert_string_equal(o.url, "http://10.0.0.2:8080/arun/v1/x");
    assert_int_equal(cluster_target("http://10.0.0.2:99999", "/v1/x", &t, &o), 0);
    assert_non_null(o.url); /* no such port: libcurl says so, in words */
    assert_int_equal(cluster_target("ftp://10.0.0.2:21", "/v1/x", &t, &o), -EINVAL);
}

/* ---- cluster_forward against a server on the loop ---- */

/* The other node: answers 202 with what it was told, as JSON. */
static void echo(struct http_request *r, void *arg)
{
    const char *secret = http_header(r, "x-arun-cluster");
    json_t *j = json_pack(
        "{s:b, s:s?, s:s?, s:s%}", "secret_ok", secret != NULL && strcmp(secret, SECRET) == 0,
        "hop", http_header(r, "x-arun-hop"), "tenant", http_header(r, "x-arun-tenant"), "body",
        r->req->entity.base ? r->req->entity.base : "", r->req->entity.len);
    http_send_json(r, 202, j);
}

struct answer {
    int done;
    int status;
    char type[64];
    char body[1024];
};

static void answer_cb(int status, const char *content_type, const char *body, size_t len, void *arg)
{
    struct answer *a = arg;
    a->status = status;
    snprintf(a->type, sizeof(a->type), "%s", content_type ? content_type : "");
    snprintf(a->body, sizeof(a->body), "%.*s", (int)len, body);
    a->done = 1;
}

static bool answered(void *arg)
{
    return ((struct answer *)arg)->done != 0;
}

static void test_forward_passes_the_whole_answer_back(void **state)
{
    struct answer a = {0};
    assert_int_equal(cluster_forward(&fake_cluster, "node-b", "POST", "/v1/echo", "acme",
                                     "{\"x\":1}", 7, answer_cb, &a),
                     0);
    assert_int_equal(a.done, 0); /* never from inside */
    assert_true(testloop_run_until(&env.loop, answered, &a, WAIT_MS));
    assert_int_equal(a.status, 202);
    assert_string_equal(a.type, "application/json");
    json_t *j = json_loads(a.body, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "secret_ok")));
    assert_string_equal(json_string_value(json_object_get(j, "hop")), "node-a");
    assert_string_equal(json_string_value(json_object_get(j, "tenant")), "acme");
    assert_string_equal(json_string_value(json_object_get(j, "body")), "{\"x\":1}");
    json_decref(j);
}

static void test_forward_to_a_node_that_does_not_answer_is_status_0_and_why(void **state)
{
    struct answer a = {0};
    assert_int_equal(cluster_forward(&fake_cluster, "node-dead", "POST", "/v1/echo", NULL, NULL, 0,
                                     answer_cb, &a),
                     0);
    assert_true(testloop_run_until(&env.loop, answered, &a, WAIT_MS));
    assert_int_equal(a.status, 0);
    assert_non_null(strstr(a.body, "node node-dead could not be reached: "));
}

static void test_forward_to_a_node_not_up_is_enoent(void **state)
{
    struct answer a = {0};
    assert_int_equal(
        cluster_forward(&fake_cluster, "node-x", "POST", "/v1/echo", NULL, NULL, 0, answer_cb, &a),
        -ENOENT);
    uv_run(&env.loop, UV_RUN_NOWAIT);
    assert_int_equal(a.done, 0);
}

static int setup(void **state)
{
    static const char yaml[] = "cluster:\n  secret_env: " SECRET_ENV "\n";
    struct buf err;
    buf_init(&err, 1024);
    if (config_parse(yaml, strlen(yaml), "test.yaml", &env.cfg, &err) != 0)
        fail_msg("config: %s", buf_cstr(&err));
    setenv(SECRET_ENV, SECRET, 1);
    assert_int_equal(uv_loop_init(&env.loop), 0);
    env.metrics = metrics_new();
    struct http_server_options ho = {
        .host = "127.0.0.1", .max_body_bytes = 4096, .max_connections = 16};
    env.srv = http_server_new(&env.loop, &ho, env.metrics);
    http_route(env.srv, "POST", "/v1/echo", HTTP_PUBLIC, echo, NULL);
    assert_int_equal(http_server_listen(env.srv, &err), 0);
    buf_cleanup(&err);
    env.httpc = httpc_new(&env.loop);
    snprintf(env.url, sizeof(env.url), "http://127.0.0.1:%u", http_server_port(env.srv));
    fake_cluster =
        (struct cluster){.cfg = env.cfg, .httpc = env.httpc, .shared = true, .node_id = "node-a"};
    fake_peer(0, "node-b", env.url, "m");
    fake_peer(1, "node-dead", "http://127.0.0.1:1", "m");
    return 0;
}

static void drained_cb(struct http_server *srv, bool forced, void *arg)
{
    env.drained = true;
}

static bool drained(void *arg)
{
    return env.drained;
}

static int teardown(void **state)
{
    httpc_free(env.httpc);
    http_server_shutdown(env.srv, drained_cb, NULL);
    assert_true(testloop_run_until(&env.loop, drained, NULL, WAIT_MS));
    http_server_free(env.srv);
    while (uv_run(&env.loop, UV_RUN_NOWAIT) != 0) {
    }
    assert_int_equal(uv_loop_close(&env.loop), 0);
    metrics_free(env.metrics);
    config_free(env.cfg);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_secret_is_ok_only_when_it_is_the_same_bytes),
        cmocka_unit_test(test_no_secret_is_ever_ok_without_a_shared_store_or_a_good_secret),
        cmocka_unit_test(test_peer_headers_carry_the_secret_this_node_and_the_tenant),
        cmocka_unit_test(test_a_target_is_parts_for_an_ip_and_port_else_the_whole_url),
        cmocka_unit_test(test_forward_passes_the_whole_answer_back),
        cmocka_unit_test(test_forward_to_a_node_that_does_not_answer_is_status_0_and_why),
        cmocka_unit_test(test_forward_to_a_node_not_up_is_enoent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
