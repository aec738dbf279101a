/*
 * Unit tests of runs/conversations' two functions for the runs: conversations_items_read (what
 * a response continuing a conversation gets: its items oldest first, a 404 for a conversation
 * that does not exist, an empty one as []) on a real store in a fresh directory, and
 * conversations_check_input (an input item whose id the conversation holds is refused, naming
 * it). The routes are covered end to end by tests/e2e/conversations.test.mjs.
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

#include <cmocka.h>

#include "testutil.h"
#include "testloop.h"
#include <jansson.h>
#include <uv.h>

#include "core/clock.h"
#include "runs/conversations.h"

#define DEADLINE_MS 10000 /* generous for ASan on a loaded 2-core VM; a pass takes milliseconds */

struct fx {
    uv_loop_t loop;
    struct store *st;
    char *tmp;
    char *data_dir;
};
static struct fx *F;

/* What a callback got. */
struct got {
    bool done;
    int status;
    char *value;
};

static bool got_done(void *arg)
{
    return ((struct got *)arg)->done;
}

/* Runs the loop until g->done or DEADLINE_MS pass. */
static void wait_for(struct got *g)
{
    assert_true(testloop_run_until(&F->loop, got_done, g, DEADLINE_MS));
}

static void write_cb(int status, void *arg)
{
    struct got *g = arg;
    g->status = status;
    g->done = true;
}

static void value_cb(int status, const char *value, size_t len, void *arg)
{
    struct got *g = arg;
    g->status = status;
    g->value = value != NULL ? strndup(value, len) : NULL;
    g->done = true;
}

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("ARUN_BUILD_DIR");
    F = xcalloc(1, sizeof(*F));
    F->tmp = xasprintf("%s/conversations-test-XXXXXX", base != NULL ? base : "/tmp");
    assert_non_null(mkdtemp(F->tmp));
    F->data_dir = xasprintf("%s/data", F->tmp);
    assert_int_equal(uv_loop_init(&F->loop), 0);
    struct store_options opts = {.data_dir = F->data_dir};
    struct buf err;
    buf_init(&err, 4096);
    if (store_open(&F->loop, &opts, &F->st, &err) != 0)
        fail_msg("store_open: %s", buf_cstr(&err));
    buf_cleanup(&err);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    store_close(F->st);
    uv_run(&F->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&F->loop), 0);
    nftw(F->tmp, testutil_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(F->tmp);
    free(F->data_dir);
    free(F);
    F = NULL;
    return 0;
}

static void put_conversation(const char *id)
{
    struct got g = {0};
    assert_int_equal(
        store_conversation_put(F->st, STORE_TENANT_DEFAULT, id, 1000, "{}", 2, write_cb, &g), 0);
    wait_for(&g);
    assert_int_equal(g.status, 0);
}

static void append(const char *id, const char *items)
{
    struct got g = {0};
    assert_int_equal(store_items_append(F->st, STORE_TENANT_DEFAULT, id, STORE_ITEMS_CONVERSATION,
                                        items, strlen(items), write_cb, &g),
                     0);
    wait_for(&g);
    assert_int_equal(g.status, 0);
}

/* conversations_items_read's answer for id: status, and the text in *value (freed by caller). */
static int items_read(const char *id, char **value)
{
    struct got g = {0};
    assert_int_equal(conversations_items_read(F->st, STORE_TENANT_DEFAULT, id, value_cb, &g), 0);
    wait_for(&g);
    *value = g.value;
    return g.status;
}

static void test_items_read_oldest_first(void **state)
{
    (void)state;
    char *v = NULL;
    assert_int_equal(items_read("conv_missing", &v), -ENOENT);
    assert_null(v);

    put_conversation("conv_a");
    assert_int_equal(items_read("conv_a", &v), 0);
    assert_string_equal(v, "[]"); /* exists, empty: no 404 */
    free(v);

    append("conv_a", "[{\"id\":\"m1\",\"type\":\"message\"},{\"id\":\"m2\",\"type\":\"message\"}]");
    append("conv_a", "[{\"id\":\"m3\",\"type\":\"message\"}]");
    put_conversation("conv_b"); /* another conversation's items are not read */
    append("conv_b", "[{\"id\":\"other\",\"type\":\"message\"}]");
    assert_int_equal(items_read("conv_a", &v), 0);
    json_t *items = json_loads(v, 0, NULL);
    assert_int_equal(json_array_size(items), 3);
    const char *want[] = {"m1", "m2", "m3"};
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(items, i), "id")),
                            want[i]);
    json_decref(items);
    free(v);
}

static void test_check_input(void **state)
{
    (void)state;
    json_t *held = json_loads("[{\"id\":\"msg_1\"},{\"id\":\"msg_2\"},{\"type\":\"x\"}]", 0, NULL);
    json_t *fresh = json_loads("[{\"id\":\"msg_3\"},{\"type\":\"no id\"}]", 0, NULL);
    json_t *dup = json_loads("[{\"id\":\"msg_3\"},{\"id\":\"msg_2\"}]", 0, NULL);
    json_t *empty = json_array();
    struct run_error err = {0};

    assert_int_equal(conversations_check_input(held, fresh, &err), 0);
    assert_int_equal(conversations_check_input(empty, dup, &err), 0);
    assert_int_equal(conversations_check_input(held, empty, &err), 0);
    assert_int_equal(conversations_check_input(held, dup, &err), -EINVAL);
    assert_int_equal(err.status, 400);
    assert_string_equal(err.param, "input[1].id");
    assert_non_null(strstr(err.message, "msg_2"));
    json_decref(held);
    json_decref(fresh);
    json_decref(dup);
    json_decref(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_items_read_oldest_first, setup, teardown),
        cmocka_unit_test(test_check_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
