/*
 * Unit tests of the embedded assets (http/assets.h): a real server on an ephemeral port serving
 * a small table, asked through httpc as a browser would: the content types and cache headers,
 * the encoding Accept-Encoding picks (the exact bytes of each), ETag and If-None-Match (304 with
 * no body), HEAD, "/" as index.html, and 404 for a path that is not in the table. The console's
 * real table is checked end to end by tests/e2e/console.test.mjs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/metrics.h"
#include "http/assets.h"
#include "http/httpc.h"
#include "testloop.h"

#define WAIT_MS 30000

static const unsigned char html_id[] = "<!doctype html><p>hello</p>";
static const unsigned char html_gz[] = "GZIP-OF-HTML";
static const unsigned char html_br[] = "BR-HTML";
static const unsigned char js_id[] = "console.log('a long enough script');";
static const unsigned char js_gz[] = "GZ-JS";

static const struct http_asset table[] = {
    {"/index.html", "text/html; charset=utf-8", "\"etag-html\"", false, html_id,
     sizeof(html_id) - 1, html_gz, sizeof(html_gz) - 1, html_br, sizeof(html_br) - 1},
    {"/assets/app-1234.js", "text/javascript; charset=utf-8", "\"etag-js\"", true, js_id,
     sizeof(js_id) - 1, js_gz, sizeof(js_gz) - 1, NULL, 0},
};

struct env {
    uv_loop_t loop;
    struct metrics *metrics;
    struct http_server *srv;
    struct httpc *httpc;
    bool drained;
};
static struct env env;

/* One answer, with the headers the tests look at copied out before httpc frees them. */
struct answer {
    bool done;
    int status;
    char body[256];
    size_t body_len;
    char type[64], etag[64], cache[64], vary[64], encoding[16], csp[64], length[16];
};

static void copy_header(struct httpc_req *r, const char *name, char *out, size_t cap)
{
    const char *v = httpc_header(r, name);
    snprintf(out, cap, "%s", v ? v : "");
}

static void done_cb(struct httpc_req *r, const struct httpc_result *res, void *arg)
{
    struct answer *a = arg;
    assert_int_equal(res->error, 0);
    a->status = res->status;
    a->body_len = res->body_len < sizeof(a->body) ? res->body_len : sizeof(a->body) - 1;
    memcpy(a->body, res->body, a->body_len);
    copy_header(r, "content-type", a->type, sizeof(a->type));
    copy_header(r, "etag", a->etag, sizeof(a->etag));
    copy_header(r, "cache-control", a->cache, sizeof(a->cache));
    copy_header(r, "vary", a->vary, sizeof(a->vary));
    copy_header(r, "content-encoding", a->encoding, sizeof(a->encoding));
    copy_header(r, "content-security-policy", a->csp, sizeof(a->csp));
    copy_header(r, "content-length", a->length, sizeof(a->length));
    a->done = true;
}

static bool answered(void *arg)
{
    return ((struct answer *)arg)->done;
}

/* method path, with up to two request headers ("Name: value"; NULL for none). */
static struct answer ask(const char *method, const char *path, const char *h1, const char *h2)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)http_server_port(env.srv), path);
    const char *headers[2];
    size_t n = 0;
    if (h1 != NULL)
        headers[n++] = h1;
    if (h2 != NULL)
        headers[n++] = h2;
    struct answer a = {0};
    struct httpc_opts o = {
        .method = method, .url = url, .headers = headers, .nheaders = n, .arg = &a};
    assert_int_equal(httpc_request(env.httpc, &o, done_cb, NULL), 0);
    assert_true(testloop_run_until(&env.loop, answered, &a, WAIT_MS));
    return a;
}

static void body_is(const struct answer *a, const unsigned char *want, size_t len)
{
    assert_int_equal(a->body_len, len);
    assert_memory_equal(a->body, want, len);
}

static void test_index_at_root_with_its_headers(void **state)
{
    struct answer a = ask("GET", "/", NULL, NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.type, "text/html; charset=utf-8");
    assert_string_equal(a.etag, "\"etag-html\"");
    assert_string_equal(a.cache, "no-cache"); /* revalidated: a new build's page shows at once */
    assert_string_equal(a.vary, "Accept-Encoding");
    assert_string_equal(a.csp, "default-src 'self'");
    assert_string_equal(a.encoding, ""); /* no Accept-Encoding: identity */
    body_is(&a, html_id, sizeof(html_id) - 1);

    struct answer b = ask("GET", "/index.html", NULL, NULL);
    assert_int_equal(b.status, 200);
    body_is(&b, html_id, sizeof(html_id) - 1);
}

static void test_hashed_asset_is_immutable(void **state)
{
    struct answer a = ask("GET", "/assets/app-1234.js", NULL, NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.type, "text/javascript; charset=utf-8");
    assert_string_equal(a.cache, "public, max-age=31536000, immutable");
    body_is(&a, js_id, sizeof(js_id) - 1);
}

static void test_encodings(void **state)
{
    struct answer a = ask("GET", "/", "Accept-Encoding: gzip, deflate, br", NULL);
    assert_string_equal(a.encoding, "br"); /* br beats gzip when both are accepted */
    body_is(&a, html_br, sizeof(html_br) - 1);

    a = ask("GET", "/", "Accept-Encoding: gzip", NULL);
    assert_string_equal(a.encoding, "gzip");
    body_is(&a, html_gz, sizeof(html_gz) - 1);

    a = ask("GET", "/", "Accept-Encoding: br;q=0, gzip;q=0.5", NULL);
    assert_string_equal(a.encoding, "gzip"); /* q=0 refuses br */
    body_is(&a, html_gz, sizeof(html_gz) - 1);

    a = ask("GET", "/", "Accept-Encoding: identity", NULL);
    assert_string_equal(a.encoding, "");
    body_is(&a, html_id, sizeof(html_id) - 1);

    a = ask("GET", "/", "Accept-Encoding: *", NULL);
    assert_string_equal(a.encoding, "br");

    /* The table has no brotli for the script: gzip even when br is asked for first. */
    a = ask("GET", "/assets/app-1234.js", "Accept-Encoding: br, gzip", NULL);
    assert_string_equal(a.encoding, "gzip");
    body_is(&a, js_gz, sizeof(js_gz) - 1);
    assert_string_equal(a.vary, "Accept-Encoding");
}

static void test_etag_gives_304(void **state)
{
    struct answer a = ask("GET", "/", "If-None-Match: \"etag-html\"", "Accept-Encoding: br");
    assert_int_equal(a.status, 304);
    assert_int_equal(a.body_len, 0);
    assert_string_equal(a.etag, "\"etag-html\"");
    assert_string_equal(a.cache, "no-cache");

    a = ask("GET", "/", "If-None-Match: \"other\", W/\"etag-html\"", NULL);
    assert_int_equal(a.status, 304);

    a = ask("GET", "/", "If-None-Match: \"other\"", NULL); /* another build's page */
    assert_int_equal(a.status, 200);
    body_is(&a, html_id, sizeof(html_id) - 1);
}

static void test_head_has_headers_and_no_body(void **state)
{
    struct answer a = ask("HEAD", "/", "Accept-Encoding: gzip", NULL);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, 0);
    assert_string_equal(a.encoding, "gzip");
    assert_string_equal(a.type, "text/html; charset=utf-8");
    char len[16];
    snprintf(len, sizeof(len), "%zu", sizeof(html_gz) - 1);
    assert_string_equal(a.length, len); /* the length GET would send */
}

static void test_unknown_asset_is_404(void **state)
{
    struct answer a = ask("GET", "/assets/app-0000.js", NULL, NULL);
    assert_int_equal(a.status, 404);
    assert_non_null(strstr(a.body, "\"error\"")); /* the router's OpenAI-shaped answer */
    a = ask("POST", "/", NULL, NULL);
    assert_int_equal(a.status, 405);
}

static void test_header_parsing(void **state)
{
    const struct http_asset *h = &table[0];
    assert_null(http_assets_pick_encoding(h, NULL));
    assert_null(http_assets_pick_encoding(h, ""));
    assert_null(http_assets_pick_encoding(h, "*;q=0"));
    assert_string_equal(http_assets_pick_encoding(h, "BR"), "br"); /* codings are case-blind */
    assert_string_equal(http_assets_pick_encoding(h, "gzip;q=1.0, br; q=0"), "gzip");
    assert_null(http_assets_pick_encoding(h, "brotli, gzipx"));
    assert_true(http_assets_etag_matches("*", "\"x\""));
    assert_true(http_assets_etag_matches(" \"a\" , \"x\" ", "\"x\""));
    assert_false(http_assets_etag_matches("\"xx\"", "\"x\""));
    assert_false(http_assets_etag_matches("", "\"x\""));
    assert_false(http_assets_etag_matches(NULL, "\"x\""));
}

static int setup(void **state)
{
    assert_int_equal(uv_loop_init(&env.loop), 0);
    env.metrics = metrics_new();
    struct http_server_options ho = {
        .host = "127.0.0.1", .port = 0, .max_body_bytes = 4096, .max_connections = 16};
    env.srv = http_server_new(&env.loop, &ho, env.metrics);
    http_assets_register(env.srv, table, sizeof(table) / sizeof(table[0]));
    struct buf err;
    buf_init(&err, 1024);
    assert_int_equal(http_server_listen(env.srv, &err), 0);
    buf_cleanup(&err);
    env.httpc = httpc_new(&env.loop);
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
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_at_root_with_its_headers),
        cmocka_unit_test(test_hashed_asset_is_immutable),
        cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_etag_gives_304),
        cmocka_unit_test(test_head_has_headers_and_no_body),
        cmocka_unit_test(test_unknown_asset_is_404),
        cmocka_unit_test(test_header_parsing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
