/* Unit tests of http/router: which handler a (method, path) reaches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "http/router.h"

static void h_a(struct http_request *r, void *arg)
{
}
static void h_b(struct http_request *r, void *arg)
{
}

struct fixture {
    struct http_router rt;
    h2o_req_t req;
    struct http_request r;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    http_router_init(&f->rt);
    http_router_add(&f->rt, "GET", "/healthz", HTTP_PUBLIC, h_a, NULL);
    http_router_add(&f->rt, "POST", "/v1/engines/{name}/start", HTTP_PUBLIC, h_b, NULL);
    http_router_add(&f->rt, "GET", "/v1/engines/{name}", HTTP_PUBLIC, h_a, NULL);
    h2o_mem_init_pool(&f->req.pool);
    f->r.req = &f->req;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    h2o_mem_clear_pool(&f->req.pool);
    http_router_cleanup(&f->rt);
    free(f);
    return 0;
}

static enum http_router_result match(struct fixture *f, const char *method, const char *path)
{
    memset(&f->r.params, 0, sizeof(f->r.params));
    f->r.route = NULL;
    return http_router_match(&f->rt, &f->r, h2o_iovec_init(method, strlen(method)),
                             h2o_iovec_init(path, strlen(path)));
}

static void test_literal_and_param_routes_match(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(match(f, "GET", "/healthz"), HTTP_ROUTER_FOUND);
    assert_ptr_equal(f->r.route->fn, h_a);
    assert_int_equal(match(f, "POST", "/v1/engines/qwen-7b/start"), HTTP_ROUTER_FOUND);
    assert_ptr_equal(f->r.route->fn, h_b);
    assert_int_equal(f->r.nparams, 1);
    assert_string_equal(f->r.params[0], "qwen-7b");
    assert_string_equal(f->r.route->pattern, "/v1/engines/{name}/start");
}

static void test_head_is_served_by_get(void **state)
{
    assert_int_equal(match(*state, "HEAD", "/healthz"), HTTP_ROUTER_FOUND);
}

static void test_wrong_method_is_405_unknown_path_404(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(match(f, "DELETE", "/healthz"), HTTP_ROUTER_BAD_METHOD);
    assert_int_equal(match(f, "GET", "/healthz/"), HTTP_ROUTER_NOT_FOUND);
    assert_int_equal(match(f, "GET", "/v1/engines//start"), HTTP_ROUTER_NOT_FOUND);
    assert_int_equal(match(f, "GET", "/v1/engines/x/start/more"), HTTP_ROUTER_NOT_FOUND);
    assert_int_equal(match(f, "GET", ""), HTTP_ROUTER_NOT_FOUND);
    assert_int_equal(match(f, "GET", "/"), HTTP_ROUTER_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_literal_and_param_routes_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_is_served_by_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_method_is_405_unknown_path_404, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
