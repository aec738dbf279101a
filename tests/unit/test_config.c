/*
 * test_config.c: the config loader (src/core/config.c). Each test is one behaviour a person
 * writing arun.yaml relies on: defaults, every key read back, and errors that name the file,
 * the line and the key. Run under ASan/UBSan these also prove every error path frees all.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static struct config *parse_ok(const char *yaml)
{
    struct buf errs;
    struct config *cfg = NULL;

    buf_init(&errs, 1 << 16);
    int rc = config_parse(yaml, strlen(yaml), "arun.yaml", &cfg, &errs);
    if (rc != 0)
        fail_msg("unexpected errors:\n%s", buf_cstr(&errs));
    assert_non_null(cfg);
    assert_int_equal(errs.len, 0);
    buf_cleanup(&errs);
    return cfg;
}

/* Parses text that must be refused; returns the error lines (caller frees). */
static char *parse_fail(const char *yaml)
{
    struct buf errs;
    struct config *cfg = (struct config *)1;

    buf_init(&errs, 1 << 16);
    int rc = config_parse(yaml, strlen(yaml), "arun.yaml", &cfg, &errs);
    if (rc != -EINVAL)
        fail_msg("expected -EINVAL, got %d; errors:\n%s", rc, buf_cstr(&errs));
    assert_null(cfg);
    assert_true(errs.len > 0);
    return buf_steal(&errs);
}

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (strstr((hay), (needle)) == NULL)                                                       \
            fail_msg("expected \"%s\" in:\n%s", (needle), (hay));                                  \
    } while (0)

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* The one error line of a config expected to have exactly one problem. */
static void assert_one_error(const char *yaml, const char *line)
{
    char *errs = parse_fail(yaml);
    assert_contains(errs, line);
    if (count_lines(errs) != 1)
        fail_msg("expected one error line, got:\n%s", errs);
    free(errs);
}

static void assert_json_equal(json_t *got, const char *expected_text)
{
    json_error_t jerr;
    json_t *want = json_loads(expected_text, 0, &jerr);
    if (want == NULL)
        fail_msg("bad expected JSON: %s (line %d)", jerr.text, jerr.line);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_INDENT(2) | JSON_SORT_KEYS);
        char *w = json_dumps(want, JSON_INDENT(2) | JSON_SORT_KEYS);
        print_error("got:\n%s\nwanted:\n%s\n", g, w);
        free(g);
        free(w);
        json_decref(want);
        fail();
    }
    json_decref(want);
}

static const char DEFAULTS_JSON[] =
    "{\"listen\": \"127.0.0.1:8080\", \"tls\": null, \"data_dir\": \"./arun-data\","
    " \"store\": {\"url\": \"sqlite\", \"synchronous\": \"full\"}, \"log_level\": \"info\","
    " \"auth\": {\"mode\": \"none\"},"
    " \"limits\": {\"max_body_bytes\": 8388608, \"max_connections\": 200000},"
    " \"node\": {\"ram_mb\": \"auto\", \"vram_mb\": \"auto\", \"reserve_mb\": 2048},"
    " \"runtime\": {\"allowed\": [\"native\", \"container\", \"remote\"], \"prefer\": "
    "\"container\", \"container_cli\": \"auto\"},"
    " \"runs\": {\"retention_days\": 30},"
    " \"cluster\": {\"node_id\": \"auto\", \"advertise\": null, \"secret_env\":"
    " \"ARUN_CLUSTER_SECRET\", \"lease_s\": 10},"
    " \"tenants\": {\"default\": {\"requests_per_minute\": 600, \"concurrent_requests\": 64,"
    " \"output_tokens_per_day\": 0, \"queued_runs\": 1000}},"
    " \"egress\": \"deny\", \"engines\": {}, \"routes\": {}}";

/* ---- defaults ---------------------------------------------------------------------------- */

static void test_empty_file_gives_defaults(void **state)
{
    struct config *cfg = parse_ok("");
    json_t *j = config_to_json(cfg);

    assert_json_equal(j, DEFAULTS_JSON);
    assert_string_equal(cfg->path, "arun.yaml");
    assert_string_equal(cfg->listen_host, "127.0.0.1");
    assert_int_equal(cfg->listen_port, 8080);
    assert_int_equal(cfg->node.ram_mb, CONFIG_AUTO);
    assert_int_equal(cfg->runtime.allowed,
                     CONFIG_ALLOW_NATIVE | CONFIG_ALLOW_CONTAINER | CONFIG_ALLOW_REMOTE);
    assert_int_equal(cfg->log_level, LOGL_INFO);
    json_decref(j);
    config_free(cfg);
}

static void test_comments_only_file_gives_defaults(void **state)
{
    struct config *cfg = parse_ok("# nothing here yet\n\n   # indented comment\n---\n");
    json_t *j = config_to_json(cfg);
    assert_json_equal(j, DEFAULTS_JSON);
    json_decref(j);
    config_free(cfg);
}

static void test_embedded_defaults_match_an_empty_file(void **state)
{
    struct config *cfg = config_default();
    json_t *j = config_to_json(cfg);
    assert_null(cfg->path);
    assert_json_equal(j, DEFAULTS_JSON);
    json_decref(j);
    config_free(cfg);
}

static void test_null_values_take_defaults(void **state)
{
    struct config *cfg = parse_ok("listen:\nlimits: ~\nnode: {ram_mb: null}\nengines:\n"
                                  "  a: {cmd: x, port: , health: }\nroutes:\n");
    assert_int_equal(cfg->listen_port, 8080);
    assert_int_equal(cfg->node.ram_mb, CONFIG_AUTO);
    assert_int_equal(cfg->nengines, 1);
    assert_int_equal(cfg->engines[0].port, CONFIG_AUTO);
    assert_string_equal(cfg->engines[0].health.path, "/health");
    assert_int_equal(cfg->nroutes, 0);
    config_free(cfg);
}

static void test_engine_defaults_and_models_default_to_name(void **state)
{
    struct config *cfg = parse_ok("engines:\n  tiny:\n    cmd: tiny-server --port ${PORT}\n");
    const struct config_engine *e = config_find_engine(cfg, "tiny");

    assert_non_null(e);
    assert_int_equal(e->line, 2);
    assert_int_equal(e->nmodels, 1);
    assert_string_equal(e->models[0], "tiny");
    assert_int_equal(e->port, CONFIG_AUTO);
    assert_int_equal(e->health.interval_ms, 1000);
    assert_int_equal(e->health.timeout_ms, 2000);
    assert_int_equal(e->health.failures, 3);
    assert_int_equal(e->health.stall_timeout_s, 120);
    assert_int_equal(e->health.start_timeout_s, 3600);
    assert_int_equal(e->max_concurrency, 4);
    assert_int_equal(e->queue_limit, 64);
    assert_int_equal(e->restart.policy, CONFIG_RESTART_ON_FAILURE);
    assert_int_equal(e->restart.max, 5);
    assert_int_equal(e->restart.backoff_ms, 1000);
    assert_int_equal(e->stop_timeout_s, 15);
    assert_int_equal(e->min_resident_s, 30);
    assert_int_equal(e->start, CONFIG_START_ON_DEMAND);
    assert_int_equal(config_engine_backend(cfg, e), CONFIG_BACKEND_NATIVE);
    assert_null(config_find_engine(cfg, "other"));
    config_free(cfg);
}

/* ---- every key --------------------------------------------------------------------------- */

static const char FULL_YAML[] =
    "# every key of the contract, none at its default\n"
    "listen: \"[::1]:9090\"\n"
    "data_dir: /var/lib/arun\n"
    "store:\n"
    "  url: postgres://arun@db.internal/arun\n"
    "  synchronous: normal\n"
    "log_level: debug\n"
    "auth:\n"
    "  mode: keys\n"
    "limits:\n"
    "  max_body_bytes: 1048576\n"
    "  max_connections: 1000\n"
    "node:\n"
    "  ram_mb: 64000\n"
    "  vram_mb: 24000\n"
    "  reserve_mb: 1024\n"
    "runtime:\n"
    "  allowed: [native, container, remote]\n"
    "  prefer: native\n"
    "  container_cli: podman\n"
    "runs:\n"
    "  retention_days: 7\n"
    "cluster:\n"
    "  node_id: gpu-box-1\n"
    "  advertise: http://10.0.0.5:8080\n"
    "  secret_env: MY_SECRET\n"
    "  lease_s: 15\n"
    "tenants:\n"
    "  acme: {requests_per_minute: 60, output_tokens_per_day: 100000}\n"
    "  default: {requests_per_minute: 120, concurrent_requests: 8, queued_runs: 50}\n"
    "egress: allow\n"
    "engines:\n"
    "  qwen:\n"
    "    backend: native\n"
    "    cmd: \"llama-server -m '/models/q 7b.gguf' --port ${PORT}\"\n"
    "    image: ghcr.io/ggml-org/llama.cpp:server\n"
    "    args: [--ctx-size, \"8192\", '']\n"
    "    api_key_env: LOCAL_KEY\n"
    "    port: 41234\n"
    "    env: {CUDA_VISIBLE_DEVICES: \"0\", OMP_NUM_THREADS: 8}\n"
    "    cwd: /models\n"
    "    models: [qwen-7b, qwen]\n"
    "    health: {path: /healthz, cmd: \"curl -fs localhost\", probe: completion,\n"
    "             interval_ms: 500, timeout_ms: 1500, failures: 5,\n"
    "             stall_timeout_s: 60, start_timeout_s: 600}\n"
    "    memory: {ram_mb: 2000, vram_mb: 6000}\n"
    "    max_concurrency: 8\n"
    "    queue_limit: 16\n"
    "    ttl_s: 300\n"
    "    start: always\n"
    "    group: gpu0\n"
    "    restart: {policy: always, max: 3, backoff_ms: 250}\n"
    "    stop_timeout_s: 20\n"
    "    stop_cmd: \"podman stop qwen\"\n"
    "    min_resident_s: 60\n"
    "    continuation: chat-prefix\n"
    "  openai:\n"
    "    backend: remote\n"
    "    url: https://api.openai.com/v1\n"
    "    api_key_env: OPENAI_API_KEY\n"
    "    models: [gpt-4o-mini]\n"
    "routes:\n"
    "  chat-default: [qwen-7b, openai]\n"
    "tls:\n"
    "  cert: /etc/arun/fullchain.pem\n"
    "  key: key.pem\n";

static const char FULL_JSON[] =
    "{\"listen\": \"[::1]:9090\", \"data_dir\": \"/var/lib/arun\","
    " \"tls\": {\"cert\": \"/etc/arun/fullchain.pem\", \"key\": \"key.pem\"},"
    " \"store\": {\"url\": \"postgres://arun@db.internal/arun\", \"synchronous\": \"normal\"},"
    " \"log_level\": \"debug\", \"auth\": {\"mode\": \"keys\"},"
    " \"limits\": {\"max_body_bytes\": 1048576, \"max_connections\": 1000},"
    " \"node\": {\"ram_mb\": 64000, \"vram_mb\": 24000, \"reserve_mb\": 1024},"
    " \"runtime\": {\"allowed\": [\"native\", \"container\", \"remote\"], \"prefer\": \"native\","
    " \"container_cli\": \"podman\"},"
    " \"runs\": {\"retention_days\": 7},"
    " \"cluster\": {\"node_id\": \"gpu-box-1\", \"advertise\": \"http://10.0.0.5:8080\","
    " \"secret_env\": \"MY_SECRET\", \"lease_s\": 15},"
    " \"tenants\": {\"default\": {\"requests_per_minute\": 120, \"concurrent_requests\": 8,"
    " \"output_tokens_per_day\": 0, \"queued_runs\": 50}, \"acme\": {\"requests_per_minute\": 60,"
    " \"concurrent_requests\": 8, \"output_tokens_per_day\": 100000, \"queued_runs\": 50}},"
    " \"egress\": \"allow\","
    " \"engines\": {"
    "  \"qwen\": {\"backend\": \"native\","
    "   \"cmd\": \"llama-server -m '/models/q 7b.gguf' --port ${PORT}\","
    "   \"image\": \"ghcr.io/ggml-org/llama.cpp:server\", \"args\": [\"--ctx-size\", \"8192\", "
    "\"\"],"
    "   \"url\": null, \"api_key_env\": \"LOCAL_KEY\", \"port\": 41234,"
    "   \"env\": {\"CUDA_VISIBLE_DEVICES\": \"0\", \"OMP_NUM_THREADS\": \"8\"}, \"cwd\": "
    "\"/models\","
    "   \"models\": [\"qwen-7b\", \"qwen\"],"
    "   \"health\": {\"path\": \"/healthz\", \"cmd\": \"curl -fs localhost\", \"probe\": "
    "\"completion\", \"interval_ms\": 500, \"timeout_ms\": 1500, \"failures\": 5,"
    "    \"stall_timeout_s\": 60, \"start_timeout_s\": 600},"
    "   \"memory\": {\"ram_mb\": 2000, \"vram_mb\": 6000}, \"max_concurrency\": 8,"
    "   \"queue_limit\": 16, \"ttl_s\": 300, \"start\": \"always\", \"group\": \"gpu0\","
    "   \"restart\": {\"policy\": \"always\", \"max\": 3, \"backoff_ms\": 250},"
    "   \"stop_timeout_s\": 20, \"stop_cmd\": \"podman stop qwen\", \"min_resident_s\": 60,"
    "   \"continuation\": \"chat-prefix\"},"
    "  \"openai\": {\"backend\": \"remote\", \"cmd\": null, \"image\": null, \"args\": [],"
    "   \"url\": \"https://api.openai.com/v1\", \"api_key_env\": \"OPENAI_API_KEY\","
    "   \"port\": \"auto\", \"env\": {}, \"cwd\": null, \"models\": [\"gpt-4o-mini\"],"
    "   \"health\": {\"path\": \"/health\", \"cmd\": null, \"probe\": \"http\", \"interval_ms\": "
    "1000, \"timeout_ms\": 2000, \"failures\": 3, \"stall_timeout_s\": 120, "
    "\"start_timeout_s\": 3600},"
    "   \"memory\": {\"ram_mb\": 0, \"vram_mb\": 0}, \"max_concurrency\": 4,"
    "   \"queue_limit\": 64, \"ttl_s\": 0, \"start\": \"on-demand\", \"group\": null,"
    "   \"restart\": {\"policy\": \"on-failure\", \"max\": 5, \"backoff_ms\": 1000},"
    "   \"stop_timeout_s\": 15, \"stop_cmd\": null, \"min_resident_s\": 30,"
    "   \"continuation\": \"none\"}},"
    " \"routes\": {\"chat-default\": [\"qwen\", \"openai\"]}}";

static void test_full_config_round_trips_through_json(void **state)
{
    struct config *cfg = parse_ok(FULL_YAML);
    json_t *j = config_to_json(cfg);

    assert_json_equal(j, FULL_JSON);
    assert_string_equal(cfg->listen_host, "::1");
    assert_int_equal(cfg->routes[0].line, 63);
    assert_int_equal(cfg->engines[1].line, 57);

    /* JSON is YAML: the resolved config read back is the same config. */
    char *text = json_dumps(j, 0);
    struct config *again = parse_ok(text);
    json_t *j2 = config_to_json(again);
    assert_true(json_equal(j, j2));
    json_decref(j2);
    config_free(again);
    free(text);
    json_decref(j);
    config_free(cfg);
}

/* ---- errors name file, line and key ------------------------------------------------------ */

static void test_misspelled_key_suggests_the_known_one(void **state)
{
    assert_one_error("# limits\nlisten: 127.0.0.1:8080\nlimits:\n  max_body_byte: 100000\n",
                     "arun.yaml:4: limits.max_body_byte: unknown key (did you mean "
                     "max_body_bytes?)\n");
    assert_one_error("engines:\n  a:\n    cmd: x\n    prot: 9000\n",
                     "arun.yaml:4: engines.a.prot: unknown key (did you mean port?)");
    assert_one_error("engines:\n  a:\n    cmd: x\n    memory: {vram: 5}\n",
                     "arun.yaml:4: engines.a.memory.vram: unknown key (did you mean vram_mb?)");
}

static void test_unknown_key_without_near_match_lists_known_keys(void **state)
{
    assert_one_error("auth:\n  password: hunter2\n",
                     "arun.yaml:2: auth.password: unknown key (known here: mode)");
}

static void test_wrong_type_names_file_line_and_key(void **state)
{
    assert_one_error("limits:\n  max_connections: lots\n",
                     "arun.yaml:2: limits.max_connections: expected an integer 1-10000000, got "
                     "\"lots\"");
    assert_one_error("data_dir: [a, b]\n", "arun.yaml:1: data_dir: expected a string, got a list");
    assert_one_error("limits: 5\n", "arun.yaml:1: limits: expected a mapping");
    assert_one_error("- a\n- b\n", "arun.yaml:1: (top level): expected a mapping of keys");
}

static void test_bad_listen_port_names_file_line_and_key(void **state)
{
    assert_one_error("\nlisten: 127.0.0.1:99999\n",
                     "arun.yaml:2: listen: the port must be an integer 1-65535, got "
                     "\"127.0.0.1:99999\"");
}

static void test_multiple_errors_are_all_reported_in_file_order(void **state)
{
    /* routes come first in the file but are checked last: the report is still in line order. */
    char *errs = parse_fail("routes:\n  r: [nobody]\n"
                            "limits:\n  max_connections: lots\n"
                            "listen: localhost:0\n"
                            "egress: maybe\n");
    const char *r = strstr(errs, "arun.yaml:2: routes.r");
    const char *l = strstr(errs, "arun.yaml:4: limits.max_connections");
    const char *p = strstr(errs, "arun.yaml:5: listen");
    const char *g = strstr(errs, "arun.yaml:6: egress");

    assert_non_null(r);
    assert_non_null(l);
    assert_non_null(p);
    assert_non_null(g);
    assert_true(r < l && l < p && p < g);
    assert_int_equal(count_lines(errs), 4);
    free(errs);
}

static void test_error_count_is_capped(void **state)
{
    struct buf yaml;
    buf_init(&yaml, 1 << 20);
    for (int i = 0; i < 80; i++)
        assert_int_equal(buf_printf(&yaml, "bad_key_%d: 1\n", i), 0);
    char *errs = parse_fail(buf_cstr(&yaml));

    assert_int_equal(count_lines(errs), 51);
    assert_contains(errs, "arun.yaml:1: bad_key_0: unknown key");
    assert_contains(errs, "arun.yaml: 30 more errors not shown\n");
    free(errs);
    buf_cleanup(&yaml);
}

static void test_duplicate_key_is_an_error(void **state)
{
    assert_one_error("log_level: info\nlog_level: debug\n",
                     "arun.yaml:2: log_level: duplicate key (first at line 1)");
    assert_one_error("engines:\n  a: {cmd: x}\n  a: {cmd: y}\n",
                     "arun.yaml:3: engines.a: duplicate key (first at line 2)");
    assert_one_error("engines:\n  a:\n    cmd: x\n    env: {A: 1, A: 2}\n",
                     "arun.yaml:4: engines.a.env.A: duplicate key (first at line 4)");
}

static void test_unknown_enum_word_lists_allowed_words(void **state)
{
    assert_one_error("log_level: verbose\n",
                     "arun.yaml:1: log_level: expected one of debug, info, warn, error; got "
                     "\"verbose\"");
    assert_one_error("engines:\n  a:\n    cmd: x\n    start: sometimes\n",
                     "arun.yaml:4: engines.a.start: expected one of on-demand, always, manual; "
                     "got \"sometimes\"");
    assert_one_error("runtime:\n  container_cli: nerdctl\n",
                     "runtime.container_cli: expected one of podman, docker, auto");
    assert_one_error("runtime:\n  allowed: [native, cloud]\n",
                     "arun.yaml:2: runtime.allowed[1]: expected one of native, container, "
                     "remote; got \"cloud\"");
    assert_one_error("store:\n  synchronous: off\n",
                     "store.synchronous: expected one of full, normal; got \"off\"");
}

/* ---- rules across keys ------------------------------------------------------------------- */

static const char REMOTE_ROUTE[] = "engines:\n"
                                   "  local: {cmd: \"llama-server --port ${PORT}\"}\n"
                                   "  openai:\n"
                                   "    url: https://api.openai.com/v1\n"
                                   "    api_key_env: OPENAI_API_KEY\n"
                                   "    models: [gpt-4o-mini]\n"
                                   "routes:\n"
                                   "  chat-default: [local, gpt-4o-mini]\n";

static void test_route_to_remote_engine_needs_egress_allow(void **state)
{
    assert_one_error(REMOTE_ROUTE,
                     "arun.yaml:8: routes.chat-default: engine 'openai' is remote and egress is "
                     "deny; set egress: allow to let requests leave this machine\n");
}

static void test_route_to_remote_engine_is_valid_with_egress_allow(void **state)
{
    char yaml[sizeof REMOTE_ROUTE + 32];
    snprintf(yaml, sizeof yaml, "egress: allow\n%s", REMOTE_ROUTE);
    struct config *cfg = parse_ok(yaml);

    assert_int_equal(cfg->nroutes, 1);
    assert_int_equal(cfg->routes[0].nengines, 2);
    assert_string_equal(cfg->routes[0].engines[1], "openai");
    assert_int_equal(config_engine_backend(cfg, config_find_engine(cfg, "openai")),
                     CONFIG_BACKEND_REMOTE);
    config_free(cfg);
}

static void test_remote_engine_without_route_is_valid_with_egress_deny(void **state)
{
    struct config *cfg = parse_ok("engines:\n  openai: {url: https://api.openai.com/v1}\n");
    assert_int_equal(cfg->egress, CONFIG_EGRESS_DENY);
    config_free(cfg);
}

static void test_model_served_by_two_engines_is_an_error(void **state)
{
    assert_one_error("engines:\n"
                     "  a:\n    cmd: x\n    models: [qwen, q]\n"
                     "  b:\n    cmd: y\n    models: [other,\n             q]\n",
                     "arun.yaml:8: engines.b.models: model 'q' is also served by engine 'a' "
                     "(line 2)");
    /* The default model name (the engine's name) counts too. */
    assert_one_error("engines:\n  qwen: {cmd: x}\n  b: {cmd: y, models: [qwen]}\n",
                     "arun.yaml:3: engines.b.models: model 'qwen' is also served by engine "
                     "'qwen' (line 2)");
}

static void test_route_to_unknown_engine_is_an_error(void **state)
{
    assert_one_error("engines:\n  qwen-7b: {cmd: x}\nroutes:\n  chat: [qwen-7c]\n",
                     "arun.yaml:4: routes.chat: \"qwen-7c\" is neither an engine nor a model of "
                     "one (did you mean qwen-7b?)");
    assert_one_error("routes:\n  chat: [ghost]\n",
                     "arun.yaml:2: routes.chat: \"ghost\" is neither an engine nor a model of one");
}

static void test_route_entry_may_name_a_model_and_stores_its_engine(void **state)
{
    struct config *cfg = parse_ok("engines:\n  big: {cmd: x, models: [qwen-72b]}\n"
                                  "  small: {image: y}\nroutes:\n  chat: [qwen-72b, small]\n");
    assert_int_equal(cfg->routes[0].nengines, 2);
    assert_string_equal(cfg->routes[0].engines[0], "big");
    assert_string_equal(cfg->routes[0].engines[1], "small");
    assert_string_equal(cfg->routes[0].name, "chat");
    assert_int_equal(cfg->routes[0].line, 5);
    config_free(cfg);
}

static void test_route_name_clashing_with_a_model_is_an_error(void **state)
{
    assert_one_error("engines:\n  a: {cmd: x, models: [chat]}\nroutes:\n  chat: [a]\n",
                     "arun.yaml:4: routes.chat: route name is also a model of engine 'a' "
                     "(line 2)");
}

static void test_route_errors_for_empty_and_repeated_entries(void **state)
{
    assert_one_error("engines:\n  a: {cmd: x}\nroutes:\n  r: []\n",
                     "arun.yaml:4: routes.r: needs at least one engine");
    assert_one_error("engines:\n  a: {cmd: x, models: [m]}\nroutes:\n  r: [a, m]\n",
                     "arun.yaml:4: routes.r: engine 'a' is listed twice");
    assert_one_error("engines:\n  a: {cmd: x}\nroutes:\n  r: a\n",
                     "arun.yaml:4: routes.r: expected a list of engine or model names");
}

static void test_backend_not_in_runtime_allowed_is_an_error(void **state)
{
    assert_one_error("runtime:\n  allowed: [native, container]\n"
                     "engines:\n  openai:\n    url: https://api.openai.com/v1\n",
                     "arun.yaml:4: engines.openai: backend remote (implied by url) is not in "
                     "runtime.allowed [native, container]");
    assert_one_error("runtime: {allowed: [native]}\n"
                     "engines:\n  c:\n    backend: container\n    image: x\n",
                     "arun.yaml:4: engines.c.backend: backend container is not in "
                     "runtime.allowed [native]");
    assert_one_error("runtime: {allowed: [remote]}\nengines:\n  c: {cmd: x, image: y}\n",
                     "arun.yaml:3: engines.c: backend native or container (cmd and image given) "
                     "is not in runtime.allowed [remote]");
}

static void test_both_cmd_and_image_pick_prefer_if_allowed(void **state)
{
    struct config *cfg = parse_ok("engines:\n  e: {cmd: x, image: y}\n");
    assert_int_equal(config_engine_backend(cfg, &cfg->engines[0]), CONFIG_BACKEND_CONTAINER);
    config_free(cfg);
    cfg = parse_ok("runtime: {allowed: [native]}\nengines:\n  e: {cmd: x, image: y}\n");
    assert_int_equal(config_engine_backend(cfg, &cfg->engines[0]), CONFIG_BACKEND_NATIVE);
    assert_string_equal(config_backend_name(CONFIG_BACKEND_NATIVE), "native");
    config_free(cfg);
}

static void test_backend_needs_its_keys(void **state)
{
    assert_one_error("engines:\n  a:\n    backend: native\n    image: x\n",
                     "arun.yaml:3: engines.a.backend: backend native needs cmd");
    assert_one_error("engines:\n  a:\n    backend: container\n    cmd: x\n",
                     "arun.yaml:3: engines.a.backend: backend container needs image");
    assert_one_error("engines:\n  a:\n    backend: remote\n",
                     "arun.yaml:3: engines.a.backend: backend remote needs url");
    assert_one_error("engines:\n  a:\n    backend: remote\n    url: https://x.example\n"
                     "    cmd: x\n",
                     "arun.yaml:3: engines.a.backend: a remote engine is not run by arun: "
                     "remove cmd");
    assert_one_error("engines:\n  a:\n    url: https://x.example\n    image: x\n",
                     "arun.yaml:2: engines.a: a remote engine is not run by arun: remove image");
    assert_one_error("engines:\n  a:\n    models: [m]\n",
                     "arun.yaml:2: engines.a: needs cmd (native), image (container) or url "
                     "(remote)");
    assert_one_error("engines:\n  a:\n", "arun.yaml:2: engines.a: needs cmd (native)");
    assert_one_error("engines:\n  a:\n    url: ftp://x\n",
                     "arun.yaml:3: engines.a.url: expected an http:// or https:// URL, got "
                     "\"ftp://x\"");
}

static void test_engine_name_must_match_the_pattern(void **state)
{
    assert_one_error("engines:\n  Qwen: {cmd: x}\n",
                     "arun.yaml:2: engines.Qwen: engine names match [a-z0-9][a-z0-9._-]*");
    assert_one_error("engines:\n  -x: {cmd: x}\n", "engines.-x: engine names match");
    struct config *cfg = parse_ok("engines:\n  qwen2.5_7b-q4: {cmd: x}\n");
    config_free(cfg);
}

static void test_engines_may_not_share_a_fixed_port(void **state)
{
    assert_one_error("engines:\n  a: {cmd: x, port: 9000}\n  b: {cmd: y, port: 9000}\n",
                     "arun.yaml:3: engines.b.port: port 9000 is also given to engine 'a' "
                     "(line 2)");
}

static void test_engine_lists_and_maps_are_checked(void **state)
{
    assert_one_error("engines:\n  a: {cmd: x, models: []}\n",
                     "arun.yaml:2: engines.a.models: needs at least one model name");
    assert_one_error("engines:\n  a: {cmd: x, models: [m, m]}\n",
                     "engines.a.models: model 'm' is listed twice");
    assert_one_error("engines:\n  a: {cmd: x, models: [\"two words\"]}\n",
                     "engines.a.models[0]: model names are 1-256 characters without spaces");
    assert_one_error("engines:\n  a: {cmd: x, args: \"--x 1\"}\n",
                     "engines.a.args: expected a list of strings");
    assert_one_error("engines:\n  a: {cmd: x, args: [[1]]}\n",
                     "engines.a.args[0]: expected a string, got a list");
    assert_one_error("engines:\n  a: {cmd: x, env: {1BAD: x}}\n",
                     "engines.a.env.1BAD: expected an environment variable name");
    assert_one_error("engines:\n  a: {cmd: x, env: {EMPTY: }}\n",
                     "engines.a.env.EMPTY: expected a string value");
    assert_one_error("engines:\n  a:\n    cmd: 'run \"unterminated'\n",
                     "arun.yaml:3: engines.a.cmd: has an unterminated quote");
    assert_one_error("engines:\n  a: {cmd: x, health: {path: health}}\n",
                     "engines.a.health.path: expected a path starting with /");
    assert_one_error("engines:\n  a: {cmd: x, api_key_env: my-key}\n",
                     "engines.a.api_key_env: expected an environment variable name");
    assert_one_error("engines:\n  a: {cmd: \"\"}\n", "engines.a.cmd: must not be empty");
    assert_one_error("engines: [a, b]\n", "engines: expected a mapping of engine names");
}

static void test_env_values_accept_numbers_as_text(void **state)
{
    struct config *cfg =
        parse_ok("engines:\n  a:\n    cmd: x\n    env: {N: 8, F: 1.5, B: true, S: \"\"}\n");
    const struct config_engine *e = &cfg->engines[0];

    assert_int_equal(e->nenv, 4);
    assert_string_equal(e->env[0].key, "N");
    assert_string_equal(e->env[0].value, "8");
    assert_string_equal(e->env[1].value, "1.5");
    assert_string_equal(e->env[2].value, "true");
    assert_string_equal(e->env[3].value, "");
    config_free(cfg);
}

static void test_store_url_accepts_sqlite_and_postgres(void **state)
{
    struct config *cfg = parse_ok("store: {url: postgresql://u:p@h:5432/db}\n");
    assert_string_equal(cfg->store.url, "postgresql://u:p@h:5432/db");
    config_free(cfg);
    cfg = parse_ok("store: {url: sqlite}\n");
    assert_string_equal(cfg->store.url, "sqlite");
    config_free(cfg);
    assert_one_error("store:\n  url: mysql://x\n",
                     "arun.yaml:2: store.url: expected sqlite or a postgres:// (postgresql://) "
                     "URL, got \"mysql://x\"");
}

/* ---- YAML itself ------------------------------------------------------------------------- */

static void test_yaml_syntax_error_reports_line_and_column(void **state)
{
    char *errs = parse_fail("listen: 127.0.0.1:8080\nlimits:\n  max_connections: [1, 2\n");
    assert_contains(errs, "arun.yaml:4:1: YAML syntax error: did not find expected ',' or ']' "
                          "(while parsing a flow sequence at line 3, column 20)");
    assert_int_equal(count_lines(errs), 1);
    free(errs);

    errs = parse_fail("a: b: c\n");
    assert_contains(errs, "arun.yaml:1:5: YAML syntax error: mapping values are not allowed");
    free(errs);
}

static void test_invalid_utf8_is_a_syntax_error(void **state)
{
    char *errs = parse_fail("data_dir: ok\ndata_dir2: \xff\n");
    assert_contains(errs, "arun.yaml:2:12: YAML syntax error: invalid leading UTF-8 octet");
    free(errs);
}

static void test_flow_style_quotes_anchors_and_merge_keys(void **state)
{
    struct config *cfg = parse_ok("engines: {\n"
                                  "  base: &llama {cmd: 'llama-server --port ${PORT}',\n"
                                  "                max_concurrency: 2, health: {failures: 7}},\n"
                                  "  second: {<<: *llama, models: [\"second\"], ttl_s: 60},\n"
                                  "  third: {<<: [*llama], max_concurrency: 9},\n"
                                  "}\n"
                                  "data_dir: &d \"/srv/arun\"\n"
                                  "store: {url: sqlite}\n");
    assert_int_equal(cfg->nengines, 3);
    const struct config_engine *s = config_find_engine(cfg, "second");
    const struct config_engine *t = config_find_engine(cfg, "third");
    assert_string_equal(s->cmd, "llama-server --port ${PORT}");
    assert_int_equal(s->max_concurrency, 2);
    assert_int_equal(s->health.failures, 7);
    assert_int_equal(s->ttl_s, 60);
    assert_int_equal(t->max_concurrency, 9);
    assert_string_equal(cfg->data_dir, "/srv/arun");
    config_free(cfg);
}

static void test_self_referencing_merge_is_an_error_not_a_hang(void **state)
{
    char *errs = parse_fail("engines:\n  a: &a {cmd: x, <<: *a}\n");
    assert_contains(errs, "engines.a: merges (<<) nested more than 8 deep");
    free(errs);
    assert_one_error("engines:\n  a: {cmd: x, <<: 5}\n",
                     "engines.a: << (merge) takes a mapping or a list of mappings");
}

static void test_deep_nesting_is_refused_quickly(void **state)
{
    /* Unbounded, libyaml takes minutes on this; the depth limit makes it instant. */
    size_t n = 300000;
    char *yaml = malloc(2 * n + 8);
    assert_non_null(yaml);
    memcpy(yaml, "a: ", 3);
    memset(yaml + 3, '[', n);
    memset(yaml + 3 + n, ']', n);
    yaml[3 + 2 * n] = '\0';
    char *errs = parse_fail(yaml);
    assert_contains(errs, "arun.yaml:1:67: lists and mappings nested more than 64 deep");
    free(errs);
    free(yaml);
}

static void test_merge_fan_out_is_bounded(void **state)
{
    struct buf yaml;
    buf_init(&yaml, 1 << 20);
    assert_int_equal(buf_puts(&yaml, "engines:\n  a0: &a0 {cmd: x}\n"), 0);
    for (int i = 1; i <= 8; i++)
        assert_int_equal(buf_printf(&yaml,
                                    "  a%d: &a%d {<<: [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, "
                                    "*a%d], models: [m%d]}\n",
                                    i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1,
                                    i),
                         0);
    char *errs = parse_fail(buf_cstr(&yaml));
    assert_contains(errs, "engines.a4: too many merges (<<); at most 4096\n");
    /* Reported once; the engines after it lose their merged keys and say so on their own. */
    assert_true(count_lines(errs) <= 5);
    free(errs);
    buf_cleanup(&yaml);
}

static void test_undefined_alias_is_an_error(void **state)
{
    char *errs = parse_fail("data_dir: *nowhere\n");
    assert_contains(errs, "arun.yaml:1:11: YAML syntax error: found undefined alias");
    free(errs);
}

static void test_second_document_is_an_error(void **state)
{
    assert_one_error("log_level: info\n---\nlog_level: debug\n",
                     "arun.yaml:3: a config file holds one YAML document");
}

static void test_non_string_key_is_an_error(void **state)
{
    assert_one_error("? [a, b]\n: 1\n", "arun.yaml:1: (top level)");
    assert_one_error("limits:\n  ? {x: 1}\n  : 2\n", "arun.yaml:2: limits: keys must be strings");
}

static void test_nul_byte_in_a_value_is_an_error(void **state)
{
    assert_one_error("data_dir: \"a\\0b\"\n", "arun.yaml:1: data_dir: contains a NUL byte");
}

static void test_control_bytes_in_messages_are_replaced(void **state)
{
    char *errs = parse_fail("log_level: \"a\\nb\"\n");
    assert_contains(errs, "got \"a?b\"\n");
    assert_int_equal(count_lines(errs), 1);
    free(errs);
}

/* ---- auto, listen, integers -------------------------------------------------------------- */

static void test_auto_is_accepted_where_the_contract_allows_it(void **state)
{
    struct config *cfg =
        parse_ok("node: {ram_mb: auto, vram_mb: 0, reserve_mb: 512}\n"
                 "engines:\n  a: {cmd: x, port: auto}\n  b: {cmd: y, port: 41001}\n");
    assert_int_equal(cfg->node.ram_mb, CONFIG_AUTO);
    assert_int_equal(cfg->node.vram_mb, 0);
    assert_int_equal(cfg->node.reserve_mb, 512);
    assert_int_equal(cfg->engines[0].port, CONFIG_AUTO);
    assert_int_equal(cfg->engines[1].port, 41001);
    json_t *j = config_to_json(cfg);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "node"), "ram_mb")),
                        "auto");
    json_decref(j);
    config_free(cfg);

    assert_one_error("node:\n  reserve_mb: auto\n",
                     "arun.yaml:2: node.reserve_mb: expected an integer 0-1073741824, got "
                     "\"auto\"");
    assert_one_error("listen: auto\n", "arun.yaml:1: listen: expected HOST:PORT");
    assert_one_error("engines:\n  a:\n    cmd: x\n    port: 80a\n",
                     "arun.yaml:4: engines.a.port: expected an integer 1-65535 or auto, got "
                     "\"80a\"");
}

static void test_listen_accepts_host_port_forms(void **state)
{
    static const struct {
        const char *in, *host;
        uint16_t port;
    } ok[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080}, {"[::1]:8080", "::1", 8080},
        {"localhost:80", "localhost", 80},     {"0.0.0.0:1", "0.0.0.0", 1},
        {"[::]:65535", "::", 65535},           {"gpu-box.lan:9000", "gpu-box.lan", 9000},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *host = NULL;
        uint16_t port = 0;
        assert_int_equal(config_parse_listen(ok[i].in, &host, &port), 0);
        assert_string_equal(host, ok[i].host);
        assert_int_equal(port, ok[i].port);
        free(host);
    }
}

static void test_listen_rejects_malformed_forms(void **state)
{
    static const char *const bad[] = {
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:99999",
        ":8080",
        "::1:8080",
        "[::1]",
        "[::1]8080",
        "[zz]:80",
        "[::1:80",
        "1.2.3:80",
        "256.1.1.1:80",
        "host:80x",
        "ho st:80",
        "-host:80",
        "127.0.0.1:+80",
        "127.0.0.1:-80",
        "",
        "h:99999999999999999999",
    };
    /* Port 0 (ephemeral) is for --listen only; a file must name a real port. */
    char *h0 = NULL;
    uint16_t p0 = 1;
    assert_int_equal(config_parse_listen("127.0.0.1:0", &h0, &p0), 0);
    assert_int_equal(p0, 0);
    free(h0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *host = NULL;
        uint16_t port = 0;
        if (config_parse_listen(bad[i], &host, &port) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_null(host);
    }
}

static void test_listen_in_yaml_sets_host_and_port(void **state)
{
    struct config *cfg = parse_ok("listen: \"[::1]:8080\"\n");
    assert_string_equal(cfg->listen_host, "::1");
    assert_int_equal(cfg->listen_port, 8080);
    config_free(cfg);
    assert_one_error("listen: ::1:8080\n", "listen: an IPv6 address needs brackets");
}

static void test_integers_out_of_range_are_errors(void **state)
{
    assert_one_error("limits:\n  max_body_bytes: 0\n",
                     "arun.yaml:2: limits.max_body_bytes: expected an integer 1024-1073741824, "
                     "got \"0\"");
    assert_one_error("engines:\n  a: {cmd: x, max_concurrency: 0}\n",
                     "engines.a.max_concurrency: expected an integer 1-100000, got \"0\"");
    assert_one_error("engines:\n  a: {cmd: x, health: {timeout_ms: 0}}\n",
                     "engines.a.health.timeout_ms: expected an integer 1-86400000");
    assert_one_error("engines:\n  a: {cmd: x, port: 70000}\n",
                     "engines.a.port: expected an integer 1-65535 or auto, got \"70000\"");
    assert_one_error("node: {reserve_mb: -1}\n",
                     "node.reserve_mb: expected an integer 0-1073741824, got \"-1\"");
}

static void test_integers_with_junk_are_errors(void **state)
{
    static const char *const junk[] = {"8MB",  "1.5", "0x10", "1_000", "+5",
                                       "'5 '", "''",  "[5]",  "true",  "-0x1"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        char yaml[64];
        snprintf(yaml, sizeof yaml, "limits:\n  max_connections: %s\n", junk[i]);
        char *errs = parse_fail(yaml);
        assert_contains(errs, "arun.yaml:2: limits.max_connections: expected an integer");
        free(errs);
    }
}

static void test_integer_overflow_is_an_error(void **state)
{
    assert_one_error("limits:\n  max_body_bytes: 99999999999999999999999\n",
                     "limits.max_body_bytes: expected an integer 1024-1073741824, got "
                     "\"99999999999999999999999\"");
    assert_one_error("engines:\n  a: {cmd: x, ttl_s: 4294967296}\n",
                     "engines.a.ttl_s: expected an integer 0-31536000");
    assert_one_error("node: {ram_mb: 9223372036854775808}\n", "node.ram_mb: expected an integer");
}

/* 0 keeps stored responses until they are deleted; a fraction of a day is not a retention. */
static void test_runs_retention_days_zero_keeps_and_fractions_are_errors(void **state)
{
    struct config *cfg = parse_ok("runs: {retention_days: 0}\n");
    assert_int_equal(cfg->runs.retention_days, 0);
    config_free(cfg);
    cfg = parse_ok("runs:\n");
    assert_int_equal(cfg->runs.retention_days, 30);
    config_free(cfg);
    assert_one_error("runs:\n  retention_days: 0.5\n",
                     "arun.yaml:2: runs.retention_days: expected an integer 0-36500, got \"0.5\"");
    assert_one_error("runs: {retention_days: -1}\n",
                     "runs.retention_days: expected an integer 0-36500");
    assert_one_error("runs: {retention_day: 3}\n",
                     "runs.retention_day: unknown key (did you mean retention_days?)");
}

static void test_quoted_numbers_are_read_as_numbers(void **state)
{
    struct config *cfg = parse_ok("limits: {max_connections: \"5000\"}\n");
    assert_int_equal(cfg->limits.max_connections, 5000);
    config_free(cfg);
}

/* ---- files ------------------------------------------------------------------------------- */

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    strcpy(tmpdir, "/tmp/arun-test-config-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_load_reads_a_file_and_names_it_in_errors(void **state)
{
    char path[128], bad[128];
    struct buf errs;
    struct config *cfg = NULL;

    make_tmpdir(state);
    snprintf(path, sizeof path, "%s/good.yaml", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.yaml", tmpdir);
    write_file(path, "log_level: warn\n");
    write_file(bad, "\n\nlog_level: loud\n");
    buf_init(&errs, 4096);

    assert_int_equal(config_load(path, &cfg, &errs), 0);
    assert_string_equal(cfg->path, path);
    assert_int_equal(cfg->log_level, LOGL_WARN);
    config_free(cfg);

    assert_int_equal(config_load(bad, &cfg, &errs), -EINVAL);
    assert_null(cfg);
    char want[256];
    snprintf(want, sizeof want, "%s:3: log_level: expected one of", bad);
    assert_contains(buf_cstr(&errs), want);

    buf_cleanup(&errs);
    unlink(path);
    unlink(bad);
    rmdir(tmpdir);
}

static void test_load_of_a_missing_file_reports_errno(void **state)
{
    struct buf errs;
    struct config *cfg = (struct config *)1;

    buf_init(&errs, 4096);
    assert_int_equal(config_load("/nonexistent/arun.yaml", &cfg, &errs), -ENOENT);
    assert_null(cfg);
    assert_string_equal(buf_cstr(&errs),
                        "/nonexistent/arun.yaml: cannot read: No such file or directory\n");
    buf_cleanup(&errs);
}

static void test_load_refuses_a_huge_file(void **state)
{
    char path[128];
    struct buf errs;
    struct config *cfg = NULL;

    make_tmpdir(state);
    snprintf(path, sizeof path, "%s/huge.yaml", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < (2 << 20) / 64; i++)
        fputs("# padding padding padding padding padding padding padding paddi\n", f);
    assert_int_equal(fclose(f), 0);
    buf_init(&errs, 4096);
    assert_int_equal(config_load(path, &cfg, &errs), -EFBIG);
    assert_null(cfg);
    assert_contains(buf_cstr(&errs), "huge.yaml: larger than 1048576 bytes");
    buf_cleanup(&errs);
    unlink(path);
    rmdir(tmpdir);
}

static void test_pick_path_prefers_flag_then_env_then_cwd(void **state)
{
    char cwd[512];
    bool explicit_path;

    assert_non_null(getcwd(cwd, sizeof cwd));
    make_tmpdir(state);
    assert_int_equal(chdir(tmpdir), 0);
    unsetenv("ARUN_CONFIG");

    assert_null(config_pick_path(NULL, &explicit_path));
    assert_false(explicit_path);

    write_file("arun.yaml", "");
    assert_string_equal(config_pick_path(NULL, &explicit_path), "arun.yaml");
    assert_false(explicit_path);

    setenv("ARUN_CONFIG", "/etc/arun/env.yaml", 1);
    assert_string_equal(config_pick_path(NULL, &explicit_path), "/etc/arun/env.yaml");
    assert_true(explicit_path);

    assert_string_equal(config_pick_path("flag.yaml", &explicit_path), "flag.yaml");
    assert_true(explicit_path);

    setenv("ARUN_CONFIG", "", 1);
    assert_string_equal(config_pick_path(NULL, &explicit_path), "arun.yaml");
    assert_false(explicit_path);

    unsetenv("ARUN_CONFIG");
    unlink("arun.yaml");
    assert_int_equal(chdir(cwd), 0);
    rmdir(tmpdir);
}

static void test_free_of_null_is_a_no_op(void **state)
{
    config_free(NULL);
}

/* ---- tls ---------------------------------------------------------------------------------- */

static void test_tls_off_and_files_are_read_back(void **state)
{
    struct config *cfg = parse_ok("listen: 0.0.0.0:8443\ntls: off\n");
    json_t *j = config_to_json(cfg);
    assert_int_equal(cfg->tls.mode, CONFIG_TLS_OFF);
    assert_null(cfg->tls.cert);
    assert_string_equal(json_string_value(json_object_get(j, "tls")), "off");
    json_decref(j);
    config_free(cfg);

    /* Paths are kept as written: relative ones are relative to the working directory, as
     * data_dir is. */
    cfg = parse_ok("tls:\n  cert: certs/fullchain.pem\n  key: /etc/arun/key.pem\n");
    j = config_to_json(cfg);
    assert_int_equal(cfg->tls.mode, CONFIG_TLS_ON);
    assert_string_equal(cfg->tls.cert, "certs/fullchain.pem");
    assert_string_equal(cfg->tls.key, "/etc/arun/key.pem");
    assert_json_equal(json_object_get(j, "tls"),
                      "{\"cert\": \"certs/fullchain.pem\", \"key\": \"/etc/arun/key.pem\"}");
    json_decref(j);
    config_free(cfg);

    cfg = parse_ok("tls:\n");
    assert_int_equal(cfg->tls.mode, CONFIG_TLS_UNSET);
    config_free(cfg);
}

static void test_tls_needs_both_cert_and_key(void **state)
{
    assert_one_error("listen: 0.0.0.0:8443\ntls:\n  cert: c.pem\n",
                     "arun.yaml:3: tls: key is missing: HTTPS needs cert (the certificate chain) "
                     "and key (its private key), both PEM files");
    assert_one_error("tls: {key: k.pem}\n", "arun.yaml:1: tls: cert is missing");
    assert_one_error("tls:\n  cert: \"\"\n  key: k.pem\n",
                     "arun.yaml:2: tls.cert: must not be empty");
}

static void test_tls_other_values_are_errors(void **state)
{
    assert_one_error("tls: on\n", "arun.yaml:1: tls: expected off or a mapping {cert: FILE, key: "
                                  "FILE} (PEM files), got \"on\"");
    assert_one_error("tls: [a, b]\n", "arun.yaml:1: tls: expected off or a mapping");
    assert_one_error("tls:\n  cert: c.pem\n  key: k.pem\n  chain: x.pem\n",
                     "arun.yaml:4: tls.chain: unknown key (known here: cert, key)");
    assert_one_error("tls:\n  cert: c.pem\n  kye: k.pem\n  key: k.pem\n",
                     "arun.yaml:3: tls.kye: unknown key (did you mean key?)");
}

static void test_errors_buffer_may_be_null(void **state)
{
    struct config *cfg = (struct config *)1;
    assert_int_equal(config_parse("x: 1\n", 5, "arun.yaml", &cfg, NULL), -EINVAL);
    assert_null(cfg);
}

/* ---- tenants: a default and overrides by name --------------------------------------------- */

static void test_tenants_default_when_absent(void **state)
{
    struct config *cfg = parse_ok("listen: 127.0.0.1:8080\n");
    assert_int_equal(cfg->tenants.dflt.requests_per_minute, 600);
    assert_int_equal(cfg->tenants.dflt.concurrent_requests, 64);
    assert_int_equal(cfg->tenants.dflt.output_tokens_per_day, 0);
    assert_int_equal(cfg->tenants.dflt.queued_runs, 1000);
    assert_int_equal(cfg->tenants.n, 0);
    assert_null(config_find_tenant(cfg, "default"));
    config_free(cfg);
}

/* An override takes the rest from default, also from a default written below it, and a
 * partial default keeps the contract's values for the keys it does not write. */
static void test_tenant_overrides_take_the_rest_from_default(void **state)
{
    struct config *cfg = parse_ok("tenants:\n"
                                  "  acme:\n"
                                  "    requests_per_minute: 60\n"
                                  "  big.co_1-x: {output_tokens_per_day: 5000000, queued_runs: 0}\n"
                                  "  quiet:\n"
                                  "  default: {concurrent_requests: 4}\n");
    assert_int_equal(cfg->tenants.dflt.requests_per_minute, 600);
    assert_int_equal(cfg->tenants.dflt.concurrent_requests, 4);
    assert_int_equal(cfg->tenants.dflt_set, CONFIG_TENANT_CONCURRENT);
    assert_int_equal(cfg->tenants.n, 3);

    const struct config_tenant *t = config_find_tenant(cfg, "acme");
    assert_non_null(t);
    assert_int_equal(t->line, 2);
    assert_int_equal(t->limits.requests_per_minute, 60);
    assert_int_equal(t->limits.concurrent_requests, 4);
    assert_int_equal(t->limits.output_tokens_per_day, 0);
    assert_int_equal(t->limits.queued_runs, 1000);
    assert_int_equal(t->set, CONFIG_TENANT_RPM);

    t = config_find_tenant(cfg, "big.co_1-x");
    assert_non_null(t);
    assert_int_equal(t->limits.output_tokens_per_day, 5000000);
    assert_int_equal(t->limits.queued_runs, 0);
    assert_int_equal(t->limits.requests_per_minute, 600);
    assert_int_equal(t->set, CONFIG_TENANT_TOKENS | CONFIG_TENANT_QUEUED);

    t = config_find_tenant(cfg, "quiet");
    assert_non_null(t);
    assert_int_equal(t->limits.concurrent_requests, 4);
    assert_int_equal(t->set, 0);
    assert_null(config_find_tenant(cfg, "other"));

    /* config check shows every tenant with its resolved limits. */
    json_t *j = config_to_json(cfg);
    assert_json_equal(json_object_get(j, "tenants"),
                      "{\"default\": {\"requests_per_minute\": 600, \"concurrent_requests\": 4,"
                      " \"output_tokens_per_day\": 0, \"queued_runs\": 1000},"
                      " \"acme\": {\"requests_per_minute\": 60, \"concurrent_requests\": 4,"
                      " \"output_tokens_per_day\": 0, \"queued_runs\": 1000},"
                      " \"big.co_1-x\": {\"requests_per_minute\": 600, \"concurrent_requests\": 4,"
                      " \"output_tokens_per_day\": 5000000, \"queued_runs\": 0},"
                      " \"quiet\": {\"requests_per_minute\": 600, \"concurrent_requests\": 4,"
                      " \"output_tokens_per_day\": 0, \"queued_runs\": 1000}}");
    json_decref(j);
    config_free(cfg);
}

static void test_tenant_errors_name_file_line_and_key(void **state)
{
    assert_one_error("tenants:\n  acme:\n    requests_per_minut: 5\n",
                     "arun.yaml:3: tenants.acme.requests_per_minut: unknown key (did you mean "
                     "requests_per_minute?)");
    assert_one_error("tenants:\n  default: {queued_runs: -1}\n",
                     "arun.yaml:2: tenants.default.queued_runs: expected an integer "
                     "0-100000000, got \"-1\"");
    assert_one_error("tenants:\n  acme: {output_tokens_per_day: lots}\n",
                     "arun.yaml:2: tenants.acme.output_tokens_per_day: expected an integer");
    assert_one_error("tenants:\n  Acme: {queued_runs: 1}\n",
                     "arun.yaml:2: tenants.Acme: a tenant name is 1-64 characters of a-z, 0-9");
    assert_one_error("tenants:\n  -acme: {queued_runs: 1}\n", "arun.yaml:2: tenants.-acme:");
    assert_one_error("tenants:\n  acme: 60\n",
                     "arun.yaml:2: tenants.acme: expected a mapping of limits");
    assert_one_error("tenants: [acme]\n",
                     "arun.yaml:1: tenants: expected a mapping of tenant names to limits");
    assert_one_error("tenants:\n  acme: {queued_runs: 1}\n  acme: {queued_runs: 2}\n",
                     "arun.yaml:3: tenants");
    char name[70];
    memset(name, 'a', 65);
    name[65] = '\0';
    char yaml[128];
    snprintf(yaml, sizeof yaml, "tenants:\n  %s: {}\n", name);
    assert_one_error(yaml, "a tenant name is 1-64 characters");
}

static void test_tenant_name_check(void **state)
{
    assert_true(config_tenant_name_ok("a"));
    assert_true(config_tenant_name_ok("0acme.co_x-1"));
    assert_false(config_tenant_name_ok(""));
    assert_false(config_tenant_name_ok(".acme"));
    assert_false(config_tenant_name_ok("acme corp"));
    assert_false(config_tenant_name_ok("ACME"));
    char name[66];
    memset(name, 'a', 64);
    name[64] = '\0';
    assert_true(config_tenant_name_ok(name));
    name[64] = 'a';
    name[65] = '\0';
    assert_false(config_tenant_name_ok(name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_file_gives_defaults),
        cmocka_unit_test(test_comments_only_file_gives_defaults),
        cmocka_unit_test(test_embedded_defaults_match_an_empty_file),
        cmocka_unit_test(test_null_values_take_defaults),
        cmocka_unit_test(test_engine_defaults_and_models_default_to_name),
        cmocka_unit_test(test_full_config_round_trips_through_json),
        cmocka_unit_test(test_misspelled_key_suggests_the_known_one),
        cmocka_unit_test(test_unknown_key_without_near_match_lists_known_keys),
        cmocka_unit_test(test_wrong_type_names_file_line_and_key),
        cmocka_unit_test(test_bad_listen_port_names_file_line_and_key),
        cmocka_unit_test(test_multiple_errors_are_all_reported_in_file_order),
        cmocka_unit_test(test_error_count_is_capped),
        cmocka_unit_test(test_duplicate_key_is_an_error),
        cmocka_unit_test(test_unknown_enum_word_lists_allowed_words),
        cmocka_unit_test(test_route_to_remote_engine_needs_egress_allow),
        cmocka_unit_test(test_route_to_remote_engine_is_valid_with_egress_allow),
        cmocka_unit_test(test_remote_engine_without_route_is_valid_with_egress_deny),
        cmocka_unit_test(test_model_served_by_two_engines_is_an_error),
        cmocka_unit_test(test_route_to_unknown_engine_is_an_error),
        cmocka_unit_test(test_route_entry_may_name_a_model_and_stores_its_engine),
        cmocka_unit_test(test_route_name_clashing_with_a_model_is_an_error),
        cmocka_unit_test(test_route_errors_for_empty_and_repeated_entries),
        cmocka_unit_test(test_backend_not_in_runtime_allowed_is_an_error),
        cmocka_unit_test(test_both_cmd_and_image_pick_prefer_if_allowed),
        cmocka_unit_test(test_backend_needs_its_keys),
        cmocka_unit_test(test_engine_name_must_match_the_pattern),
        cmocka_unit_test(test_engines_may_not_share_a_fixed_port),
        cmocka_unit_test(test_engine_lists_and_maps_are_checked),
        cmocka_unit_test(test_env_values_accept_numbers_as_text),
        cmocka_unit_test(test_store_url_accepts_sqlite_and_postgres),
        cmocka_unit_test(test_yaml_syntax_error_reports_line_and_column),
        cmocka_unit_test(test_invalid_utf8_is_a_syntax_error),
        cmocka_unit_test(test_flow_style_quotes_anchors_and_merge_keys),
        cmocka_unit_test(test_self_referencing_merge_is_an_error_not_a_hang),
        cmocka_unit_test(test_deep_nesting_is_refused_quickly),
        cmocka_unit_test(test_merge_fan_out_is_bounded),
        cmocka_unit_test(test_undefined_alias_is_an_error),
        cmocka_unit_test(test_second_document_is_an_error),
        cmocka_unit_test(test_non_string_key_is_an_error),
        cmocka_unit_test(test_nul_byte_in_a_value_is_an_error),
        cmocka_unit_test(test_control_bytes_in_messages_are_replaced),
        cmocka_unit_test(test_auto_is_accepted_where_the_contract_allows_it),
        cmocka_unit_test(test_listen_accepts_host_port_forms),
        cmocka_unit_test(test_listen_rejects_malformed_forms),
        cmocka_unit_test(test_listen_in_yaml_sets_host_and_port),
        cmocka_unit_test(test_integers_out_of_range_are_errors),
        cmocka_unit_test(test_integers_with_junk_are_errors),
        cmocka_unit_test(test_integer_overflow_is_an_error),
        cmocka_unit_test(test_quoted_numbers_are_read_as_numbers),
        cmocka_unit_test(test_load_reads_a_file_and_names_it_in_errors),
        cmocka_unit_test(test_load_of_a_missing_file_reports_errno),
        cmocka_unit_test(test_load_refuses_a_huge_file),
        cmocka_unit_test(test_pick_path_prefers_flag_then_env_then_cwd),
        cmocka_unit_test(test_free_of_null_is_a_no_op),
        cmocka_unit_test(test_runs_retention_days_zero_keeps_and_fractions_are_errors),
        cmocka_unit_test(test_tls_off_and_files_are_read_back),
        cmocka_unit_test(test_tls_needs_both_cert_and_key),
        cmocka_unit_test(test_tls_other_values_are_errors),
        cmocka_unit_test(test_errors_buffer_may_be_null),
        cmocka_unit_test(test_tenants_default_when_absent),
        cmocka_unit_test(test_tenant_overrides_take_the_rest_from_default),
        cmocka_unit_test(test_tenant_errors_name_file_line_and_key),
        cmocka_unit_test(test_tenant_name_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
