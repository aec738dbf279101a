/*
 * health.c: running one probe. See health.h. HTTP probes go through httpc on the loop; a cmd
 * probe is a child process (argv, no shell) with the probe's timeout, killed when it passes.
 */
#include "engines/health.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct health_probe {
    uv_process_t proc; /* first; used by cmd probes only */
    uv_timer_t timer;  /* cmd probe timeout */
    struct httpc_req *req;
    health_cb cb;
    void *arg;
    bool is_cmd;
    bool deep; /* a completion probe: the answer must be a completion */
    bool cancelled;
    bool done;
    int closing;
};

static void probe_closed_cb(uv_handle_t *h)
{
    struct health_probe *p = h->data;
    if (--p->closing == 0)
        free(p);
}

static void finish(struct health_probe *p, const struct health_result *r)
{
    if (p->done)
        return;
    p->done = true;
    if (!p->cancelled)
        p->cb(r, p->arg);
}

/* ---- HTTP ---- */

static bool is_completion(const struct httpc_result *res)
{
    json_t *j = res->body ? json_loadb(res->body, res->body_len, 0, NULL) : NULL;
    json_t *choices = json_object_get(j, "choices");
    bool ok = json_is_array(choices) && json_array_size(choices) > 0;
    json_decref(j);
    return ok;
}

static void http_done(struct httpc_req *req, const struct httpc_result *res, void *arg)
{
    struct health_probe *p = arg;
    struct health_result r = {.status = res->status};
    if (res->error == -ECONNREFUSED) {
        r.outcome = HEALTH_DOWN;
        snprintf(r.detail, sizeof(r.detail), "not listening yet");
    } else if (res->error != 0) {
        r.outcome = HEALTH_BAD;
        snprintf(r.detail, sizeof(r.detail), "health probe failed: %s", res->error_text);
    } else if (res->status == 503) {
        r.outcome = HEALTH_LOADING;
        snprintf(r.detail, sizeof(r.detail), "answers 503 (loading)");
    } else if (res->status >= 200 && res->status < 300 && p->deep && !is_completion(res)) {
        /* A 200 that is not a completion is what a broken GPU behind a live server gives. */
        r.outcome = HEALTH_BAD;
        snprintf(r.detail, sizeof(r.detail),
                 "completion probe got HTTP %d without a completion "
                 "in it (%.60s)",
                 res->status, res->body ? res->body : "");
    } else if (res->status >= 200 && res->status < 300) {
        r.outcome = HEALTH_OK;
    } else {
        r.outcome = HEALTH_BAD;
        snprintf(r.detail, sizeof(r.detail), "health probe answered HTTP %d", res->status);
    }
    p->req = NULL;
    finish(p, &r);
    free(p);
}

static int start_http(struct health_probe *p, struct httpc *httpc, const struct config_engine *e,
                      uint16_t port, bool completion)
{
    char url[512];
    static const char *const json_hdr[] = {"Content-Type: application/json"};
    char *body = NULL;
    char auth[1024];
    const char *auth_hdr[1] = {auth};
    struct httpc_opts o = {.connect_timeout_ms = e->health.timeout_ms,
                           .timeout_ms = e->health.timeout_ms,
                           .max_body_bytes = 64 * 1024,
                           .arg = p};
    p->deep = completion && e->url == NULL;
    o.to = (struct httpc_endpoint){
        .host = "127.0.0.1", .port = port, .path = e->health.path ? e->health.path : "/health"};
    if (completion) {
        o.to.path = "/v1/chat/completions";
        json_t *j = json_pack("{s:s, s:[{s:s, s:s}], s:i, s:b}", "model",
                              e->nmodels ? e->models[0] : e->name, "messages", "role", "user",
                              "content", "ping", "max_tokens", 1, "stream", 0);
        body = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        o.method = "POST";
        o.body = body;
        o.body_len = strlen(body);
        o.headers = json_hdr;
        o.nheaders = 1;
    }
    if (e->url != NULL) {
        /* A remote engine: reachable when its OpenAI API lists models with our key. */
        size_t n = strlen(e->url);
        snprintf(url, sizeof(url), "%.*s/models", (int)(n && e->url[n - 1] == '/' ? n - 1 : n),
                 e->url);
        const char *key = e->api_key_env ? getenv(e->api_key_env) : NULL;
        if (key != NULL) {
            snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
            o.headers = auth_hdr;
            o.nheaders = 1;
        }
        o.method = NULL;
        o.body = NULL;
        o.body_len = 0;
        o.url = url;
    }
    int rc = httpc_request(httpc, &o, http_done, &p->req);
    free(body);
    return rc;
}

/* ---- cmd ---- */

static void cmd_timeout_cb(uv_timer_t *t)
{
    struct health_probe *p = t->data;
    uv_process_kill(&p->proc, SIGKILL);
    struct health_result r = {.outcome = HEALTH_BAD};
    snprintf(r.detail, sizeof(r.detail), "health cmd did not finish within its timeout");
    finish(p, &r);
}

static void cmd_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    struct health_probe *p = (struct health_probe *)proc;
    struct health_result r = {.outcome = status == 0 && sig == 0 ? HEALTH_OK : HEALTH_BAD};
    if (sig != 0)
        snprintf(r.detail, sizeof(r.detail), "health cmd was killed by signal %d", sig);
    else if (status != 0)
        snprintf(r.detail, sizeof(r.detail), "health cmd exited with code %lld", (long long)status);
    finish(p, &r);
    uv_timer_stop(&p->timer);
    p->closing = 2;
    uv_close((uv_handle_t *)&p->timer, probe_closed_cb);
    uv_close((uv_handle_t *)&p->proc, probe_closed_cb);
}

static int start_cmd(struct health_probe *p, uv_loop_t *loop, const struct config_engine *e,
                     const struct manifest_vars *vars)
{
    char **argv;
    struct buf why;
    buf_init(&why, 512);
    int rc = manifest_argv(e->health.cmd, vars, &argv, &why);
    if (rc != 0) {
        log_warn("engines", "%s: health.cmd: %s", e->name, buf_cstr(&why));
        buf_cleanup(&why);
        return rc;
    }
    buf_cleanup(&why);
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_IGNORE}};
    uv_process_options_t o = {.exit_cb = cmd_exit_cb,
                              .file = argv[0],
                              .args = argv,
                              .cwd = e->cwd,
                              .stdio_count = 3,
                              .stdio = stdio};
    p->proc.data = p;
    rc = uv_spawn(loop, &p->proc, &o);
    manifest_argv_free(argv);
    if (rc != 0) {
        /* The handle must still be closed; the timer was never started. */
        p->closing = 1;
        p->done = true;
        uv_close((uv_handle_t *)&p->proc, probe_closed_cb);
        return rc;
    }
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, cmd_timeout_cb, e->health.timeout_ms, 0);
    return 0;
}

int health_probe_start(uv_loop_t *loop, struct httpc *httpc, const struct config_engine *e,
                       uint16_t port, bool completion, const struct manifest_vars *vars,
                       health_cb cb, void *arg, struct health_probe **out)
{
    struct health_probe *p = xcalloc(1, sizeof(*p));
    p->cb = cb;
    p->arg = arg;
    p->is_cmd = e->health.cmd != NULL;
    int rc = p->is_cmd ? start_cmd(p, loop, e, vars) : start_http(p, httpc, e, port, completion);
    if (rc != 0) {
        if (!p->is_cmd)
            free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void health_probe_cancel(struct health_probe *p)
{
    if (p == NULL)
        return;
    p->cancelled = true;
    if (!p->is_cmd) {
        httpc_cancel(p->req);
        free(p);
        return;
    }
    /* A cmd probe ends when its process exits: kill it; the exit callback frees. */
    if (!p->done)
        uv_process_kill(&p->proc, SIGKILL);
}
