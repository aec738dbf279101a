/*
 * test_cluster.c: the cluster module (cluster.h, cluster_int.h). The view of the nodes is
 * tested as pure functions over store_nodes_list texts: down detection and its reason, the
 * order of peers for a model, the models of other nodes, the changes that are logged and
 * published. Then the node id, the heartbeat period and the sentences of the config check,
 * and one loop test of the life of a node on a real SQLite store: registered up at
 * cluster_new, written left by cluster_free, and the loop closes clean.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include "testloop.h"

#include "cluster/cluster_int.h"
#include "core/log.h"

#define DEADLINE_MS 10000
#define T0 1796637600000LL /* 2026-12-07T10:00:00Z */
#define DOWN_AFTER_MS 6000 /* three beats of 2 s */

/* A node row of store_nodes_list, info given as JSON text. */
#define ROW(id, state, seen, info)                                                                 \
    "{\"id\":\"" id "\",\"address\":\"http://" id ":8080\",\"state\":\"" state                     \
    "\",\"started_ms\":1,\"seen_ms\":" #seen ",\"info\":" info "}"
/* An engine entry of a node's info. */
#define ENGINE(name, state, model, admissible, load)                                               \
    "{\"name\":\"" name "\",\"state\":\"" state "\",\"models\":[\"" model                          \
    "\"],\"in_flight\":" #load ",\"queued\":0,\"admissible\":" admissible "}"

static void parse(const char *text, struct cluster_view *v)
{
    assert_int_equal(cluster_view_parse(text, strlen(text), "me", DOWN_AFTER_MS, v), 0);
}

/* ---- the view ---- */

static void test_a_node_without_heartbeats_for_the_down_beats_is_down_with_why(void **state)
{
    struct cluster_view v;
    parse("{\"now_ms\":1796637607000,\"data\":[" ROW("a", "up", 1796637601000, "{}") "," ROW(
              "b", "up", 1796637600000, "{}") "," ROW("c", "left", 1796637600000,
                                                      "{}") "," ROW("me", "up", 1, "{}") "]}",
          &v);

    assert_int_equal(v.n, 4);
    assert_int_equal(v.now_ms, T0 + 7000);
    const struct cluster_node *a = cluster_view_find(&v, "a"), *b = cluster_view_find(&v, "b");
    assert_int_equal(a->state, CLUSTER_NODE_UP); /* 6 s: at the limit, not past it */
    assert_string_equal(a->reason, "");
    assert_int_equal(a->seen_ago_ms, 6000);
    assert_int_equal(b->state, CLUSTER_NODE_DOWN);
    assert_string_equal(b->reason, "no heartbeat for 7 s; last seen 2026-12-07T10:00:00Z");
    assert_int_equal(cluster_view_find(&v, "c")->state, CLUSTER_NODE_LEFT);
    assert_string_equal(cluster_view_find(&v, "c")->reason,
                        "stopped cleanly at 2026-12-07T10:00:00Z");
    /* This node is up whatever its row says: this process runs. */
    assert_int_equal(cluster_view_find(&v, "me")->state, CLUSTER_NODE_UP);
    assert_true(cluster_view_find(&v, "me")->self);
    assert_false(b->self);
    assert_null(cluster_view_find(&v, "zz"));

    json_t *j = cluster_node_json(b);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "down");
    assert_string_equal(json_string_value(json_object_get(j, "last_seen_at")),
                        "2026-12-07T10:00:00Z");
    assert_int_equal(json_integer_value(json_object_get(j, "last_seen_ms_ago")), 7000);
    assert_true(json_is_array(json_object_get(j, "engines"))); /* missing in info: empty */
    json_decref(j);
    cluster_view_cleanup(&v);
}

static void test_a_list_that_is_not_a_nodes_list_is_refused(void **state)
{
    struct cluster_view v;
    const char *bad[] = {"", "[]", "{\"data\":[]}", "{\"now_ms\":1,\"data\":[{\"id\":1}]}",
                         "{\"now_ms\":1,\"data\":[" ROW("a", "up", 1, "[]") "]}"};

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(cluster_view_parse(bad[i], strlen(bad[i]), "me", 1, &v), -EINVAL);
        assert_int_equal(v.n, 0);
    }
}

/* Ready first, then engines that can be started there; ties by load, then id. Down nodes, this
 * node, failed engines and engines that cannot be admitted are left out. */
static void test_peers_come_ready_first_then_admissible_and_never_down_self_or_failed(void **s)
{
    struct cluster_view v;
    struct cluster_peer p[8];
    parse(
        "{\"now_ms\":100000,\"data\":["
        /* busy and ready */
        ROW("a", "up", 99000, "{\"engines\":[" ENGINE("q1", "ready", "qwen", "true", 5) "]}") ","
        /* stopped but admissible, idle */
        ROW("b", "up", 99000, "{\"engines\":[" ENGINE("q2", "stopped", "qwen", "true", 0) "]}") ","
        /* ready and idle: first */
        ROW("c", "up", 99000,
            "{\"engines\":[" ENGINE("x", "ready", "other", "true",
                                    0) "," ENGINE("q3", "ready", "qwen", "true", 1) "]}") ","
        /* down */
        ROW("d", "up", 1000, "{\"engines\":[" ENGINE("q4", "ready", "qwen", "true", 0) "]}") ","
        /* failed, and too large */
        ROW("e", "up", 99000,
            "{\"engines\":[" ENGINE("q5", "failed", "qwen", "true",
                                    0) "," ENGINE("q6", "stopped", "qwen", "false", 0) "]}") ","
        /* a route of theirs */
        ROW("f", "up", 99000, "{\"engines\":[],\"routes\":[\"qwen\"]}") ","
        /* this node */
        ROW("me", "up", 99000, "{\"engines\":[" ENGINE("q7", "ready", "qwen", "true", 0) "]}") "]}",
        &v);

    size_t n = cluster_view_peers(&v, "qwen", p, ARRAY_SIZE(p));
    assert_int_equal(n, 4);
    assert_string_equal(p[0].node, "c");
    assert_string_equal(p[0].engine, "q3");
    assert_string_equal(p[0].url, "http://c:8080");
    assert_true(p[0].ready);
    assert_string_equal(p[1].node, "a");
    assert_true(p[1].ready);
    assert_string_equal(p[2].node, "b"); /* admissible, idle */
    assert_false(p[2].ready);
    assert_string_equal(p[3].node, "f"); /* the route: as admissible, idle */
    assert_string_equal(p[3].engine, "qwen");
    /* cap is respected; an unknown model has no peer. */
    assert_int_equal(cluster_view_peers(&v, "qwen", p, 1), 1);
    assert_string_equal(p[0].node, "c");
    assert_int_equal(cluster_view_peers(&v, "nope", p, ARRAY_SIZE(p)), 0);

    struct buf models;
    buf_init(&models, 4096);
    cluster_view_models(&v, &models);
    assert_string_equal(buf_cstr(&models), "qwen,other"); /* each once; down, self left out */
    buf_cleanup(&models);
    cluster_view_cleanup(&v);
}

static void test_changes_are_up_down_back_and_left_each_once(void **state)
{
    struct cluster_view v1, v2, v3;
    parse("{\"now_ms\":10000,\"data\":[" ROW("a", "up", 9000, "{}") "," ROW(
              "b", "up", 1000, "{}") "," ROW("c", "left", 1000, "{}") "]}",
          &v1);
    /* First view: up and down are news, a node that left long ago is not. */
    assert_int_equal(cluster_view_change(NULL, &v1.nodes[0]), CLUSTER_CHANGE_UP);
    assert_int_equal(cluster_view_change(NULL, &v1.nodes[1]), CLUSTER_CHANGE_DOWN);
    assert_int_equal(cluster_view_change(NULL, &v1.nodes[2]), CLUSTER_CHANGE_NONE);

    parse("{\"now_ms\":20000,\"data\":[" ROW("a", "up", 10000, "{}") "," ROW(
              "b", "up", 19000, "{}") "," ROW("c", "left", 1000, "{}") "]}",
          &v2);
    assert_int_equal(cluster_view_change(&v1, &v2.nodes[0]), CLUSTER_CHANGE_DOWN);
    assert_int_equal(cluster_view_change(&v1, &v2.nodes[1]), CLUSTER_CHANGE_BACK);
    assert_int_equal(cluster_view_change(&v1, &v2.nodes[2]), CLUSTER_CHANGE_NONE);

    parse("{\"now_ms\":21000,\"data\":[" ROW("a", "left", 20500, "{}") "," ROW("b", "up", 20000,
                                                                               "{}") "]}",
          &v3);
    assert_int_equal(cluster_view_change(&v2, &v3.nodes[0]), CLUSTER_CHANGE_LEFT);
    assert_int_equal(cluster_view_change(&v2, &v3.nodes[1]), CLUSTER_CHANGE_NONE);
    assert_string_equal(cluster_change_name(CLUSTER_CHANGE_BACK), "back");
    cluster_view_cleanup(&v1);
    cluster_view_cleanup(&v2);
    cluster_view_cleanup(&v3);
}

/* ---- identity and configuration ---- */

static struct config *config_of(const char *yaml)
{
    struct config *cfg = NULL;
    struct buf errs;

    buf_init(&errs, 4096);
    if (config_parse(yaml, strlen(yaml), "arun.yaml", &cfg, &errs) != 0)
        fail_msg("config: %s", buf_cstr(&errs));
    buf_cleanup(&errs);
    return cfg;
}

static void test_node_id_auto_is_the_hostname_and_the_port(void **state)
{
    char host[256], want[512], id[CLUSTER_NODE_ID_MAX + 1];
    struct config *cfg = config_of("listen: 127.0.0.1:8080\n");

    assert_int_equal(gethostname(host, sizeof(host)), 0);
    snprintf(want, sizeof(want), "%s:9090", host);
    cluster_resolve_node_id(cfg, 9090, id, sizeof(id));
    assert_string_equal(id, want);
    config_free(cfg);

    cfg = config_of("cluster: {node_id: gpu-box-1}\n");
    cluster_resolve_node_id(cfg, 9090, id, sizeof(id));
    assert_string_equal(id, "gpu-box-1");
    config_free(cfg);
}

static void test_the_heartbeat_is_a_third_of_the_lease_within_bounds(void **state)
{
    assert_int_equal(cluster_beat_ms(2), 666);
    assert_int_equal(cluster_beat_ms(3), 1000);
    assert_int_equal(cluster_beat_ms(10), 2000); /* the default lease: capped */
    assert_int_equal(cluster_beat_ms(3600), 2000);
    assert_int_equal(cluster_beat_ms(1), 500); /* below the config's minimum: floored */
}

/* The check's sentence for cfg with the secret variable set to secret (NULL: unset), or "" when
 * it passes. Caller frees. */
static char *check(const char *yaml, const char *secret)
{
    struct config *cfg = config_of(yaml);
    struct buf err;

    if (secret != NULL)
        setenv("ARUN_TEST_SECRET", secret, 1);
    else
        unsetenv("ARUN_TEST_SECRET");
    buf_init(&err, 4096);
    int rc = cluster_check_config(cfg, 8080, &err);
    assert_int_equal(rc, err.len > 0 ? -EINVAL : 0);
    char *out = xstrdup(buf_cstr(&err));
    buf_cleanup(&err);
    config_free(cfg);
    return out;
}

static void test_the_config_check_says_what_to_set(void **state)
{
    const char *secret = "0123456789abcdef0123456789abcdef";
    const char *base = "cluster: {secret_env: ARUN_TEST_SECRET, advertise: http://10.0.0.5:8080}\n";
    char *s = check(base, NULL);
    assert_non_null(strstr(s, "ARUN_TEST_SECRET (cluster.secret_env) is not set"));
    assert_non_null(strstr(s, "export ARUN_TEST_SECRET=$(openssl rand -hex 32)"));
    free(s);
    s = check(base, "short");
    assert_non_null(strstr(s, "is 5 bytes; it must be at least 32"));
    free(s);
    s = check(base, secret);
    assert_string_equal(s, "");
    free(s);

    /* Without advertise, a loopback or wildcard listen address is no address for the others. */
    s = check("cluster: {secret_env: ARUN_TEST_SECRET}\n", secret);
    assert_non_null(strstr(s, "cluster.advertise is not set and listen: 127.0.0.1:8080 is not an "
                              "address other nodes can reach"));
    free(s);
    s = check("listen: 0.0.0.0:8080\ncluster: {secret_env: ARUN_TEST_SECRET}\n", secret);
    assert_non_null(strstr(s, "cluster.advertise is not set"));
    free(s);
    s = check("listen: 10.0.0.5:8080\ncluster: {secret_env: ARUN_TEST_SECRET}\n", secret);
    assert_string_equal(s, "");
    free(s);
    unsetenv("ARUN_TEST_SECRET");
}

/* ---- a node's life on a real store ---- */

struct fx {
    uv_loop_t loop;
    struct store *st;
    char *tmp;
    struct config *cfg;
    char *value; /* the last nodes list */
    bool done;
};

static void list_cb(int status, const char *value, size_t len, void *arg)
{
    struct fx *f = arg;
    assert_int_equal(status, 0);
    free(f->value);
    f->value = xstrndup(value, len);
    f->done = true;
}

static bool listed(void *arg)
{
    return ((struct fx *)arg)->done;
}

/* The nodes list as the store has it now. */
static const char *read_nodes(struct fx *f)
{
    f->done = false;
    assert_int_equal(store_nodes_list(f->st, clock_wall_ms(), list_cb, f), 0);
    assert_true(testloop_run_until(&f->loop, listed, f, DEADLINE_MS));
    return f->value;
}

struct wait_for {
    struct fx *f;
    const char *needle;
};

static bool row_has(void *arg)
{
    struct wait_for *w = arg;
    if (!w->f->done)
        return false;
    if (strstr(w->f->value, w->needle) != NULL)
        return true;
    w->f->done = false; /* read again */
    IGNORE_RESULT(store_nodes_list(w->f->st, clock_wall_ms(), list_cb, w->f));
    return false;
}

/* Waits until the nodes list holds needle; fails with the last list seen. */
static void wait_row(struct fx *f, const char *needle)
{
    struct wait_for w = {f, needle};
    read_nodes(f);
    if (!testloop_run_until(&f->loop, row_has, &w, DEADLINE_MS))
        fail_msg("no %s in %s", needle, f->value);
    testloop_run_until(&f->loop, listed, f, DEADLINE_MS); /* a read still on its way */
}

static void test_a_node_registers_up_and_leaves_when_freed(void **state)
{
    const char *base = getenv("ARUN_BUILD_DIR");
    struct fx f = {0};
    struct buf err;

    f.tmp = xasprintf("%s/cluster-test-XXXXXX", base != NULL ? base : "/tmp");
    assert_non_null(mkdtemp(f.tmp));
    char *data_dir = xasprintf("%s/data", f.tmp);
    f.cfg = config_of("cluster: {lease_s: 2}\n");
    assert_int_equal(uv_loop_init(&f.loop), 0);
    struct store_options so = {.data_dir = data_dir, .node_id = "n1"};
    buf_init(&err, 4096);
    assert_int_equal(store_open(&f.loop, &so, &f.st, &err), 0);
    buf_cleanup(&err);

    struct cluster_options o = {.loop = &f.loop, .cfg = f.cfg, .store = f.st};
    struct cluster *cl = cluster_new(&o, 8123);
    assert_string_equal(cluster_node_id(cl), "n1");
    assert_string_equal(cluster_address(cl), "http://127.0.0.1:8123");
    assert_false(cluster_shared(cl));
    wait_row(&f, "\"id\":\"n1\",\"address\":\"http://127.0.0.1:8123\",\"state\":\"up\"");
    assert_non_null(strstr(f.value, "\"engines\":[]"));
    assert_non_null(strstr(f.value, "\"version\":\"" ARUN_VERSION "\""));
    /* A cluster of one: no peers, no other models, its own URL is not a peer's. */
    struct cluster_peer p[2];
    assert_int_equal(cluster_peers_for(cl, "qwen", p, 2), 0);

    cluster_free(cl);
    wait_row(&f, "\"state\":\"left\"");
    store_close(f.st);
    assert_true(testloop_run_until(&f.loop, testloop_no_handles, &f.loop, DEADLINE_MS));
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    nftw(f.tmp, testutil_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f.value);
    free(f.tmp);
    free(data_dir);
    config_free(f.cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_node_without_heartbeats_for_the_down_beats_is_down_with_why),
        cmocka_unit_test(test_a_list_that_is_not_a_nodes_list_is_refused),
        cmocka_unit_test(test_peers_come_ready_first_then_admissible_and_never_down_self_or_failed),
        cmocka_unit_test(test_changes_are_up_down_back_and_left_each_once),
        cmocka_unit_test(test_node_id_auto_is_the_hostname_and_the_port),
        cmocka_unit_test(test_the_heartbeat_is_a_third_of_the_lease_within_bounds),
        cmocka_unit_test(test_the_config_check_says_what_to_set),
        cmocka_unit_test(test_a_node_registers_up_and_leaves_when_freed),
    };
    log_set_level(LOGL_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
