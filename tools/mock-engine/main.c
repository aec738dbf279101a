/*
 * main.c: arun-mock-engine, a stand-in for llama.cpp's llama-server. It wires the flags (opts.c),
 * the endpoints (api.c, completion.c) and the listener (server.c) to one libuv loop, and runs
 * the engine's life on that loop's timers: the loading phase, the progress lines, the crash on
 * purpose, and the shutdown on SIGTERM/SIGINT (exit 0, every handle closed, nothing leaked).
 *
 * What it prints on stderr imitates an engine, not arun: plain lines, no JSON. The one line tests
 * rely on contains "listening on http://HOST:PORT" with the bound port. docs/mock-engine.md has
 * the whole contract.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "opts.h"
#include "server.h"

#define SHUTDOWN_GRACE_MS 2000 /* a connection that will not close must not keep us alive */

struct mock {
    struct mock_opts opts;       /* the flags */
    uv_loop_t loop;              /* the only loop */
    struct api api;              /* endpoints and counters */
    struct server server;        /* listener and connections */
    uv_signal_t sigterm, sigint; /* both begin the shutdown */
    uv_timer_t load_timer;       /* the end of the loading phase */
    uv_timer_t progress_timer;   /* --log-every-ms lines while loading */
    uv_timer_t crash_timer;      /* --crash-after-ms */
    uv_timer_t grace_timer;      /* bounds the shutdown */
    uint64_t start_ms;           /* uv_now() at start: origin of loading and crash times */
    char *rss;                   /* --rss-mb worth of touched memory, once loaded */
    int url_printed;             /* the listening line was printed */
    int closing;                 /* begin_shutdown() ran */
    int exit_code;               /* status when the loop ends: 0, or 1 if listening failed */
};

static void print_listening(struct mock *m)
{
    if (m->url_printed)
        return;
    m->url_printed = 1;
    fprintf(stderr, "main: server is listening on %s - starting the main loop\n", m->server.url);
}

static void finish_loading(struct mock *m)
{
    uv_timer_stop(&m->progress_timer);
    size_t bytes = (size_t)m->opts.rss_mb << 20;
    if (bytes > 0) {
        m->rss = xmalloc(bytes);
        memset(m->rss, 0x5a, bytes); /* touch every page so RSS really grows */
    }
    api_set_loaded(&m->api, (size_t)m->opts.rss_mb);
    fprintf(stderr, "llama_model_load: model '%s' loaded in %llu ms\n", m->opts.model,
            (unsigned long long)(uv_now(&m->loop) - m->start_ms));
    print_listening(m);
    fprintf(stderr, "srv  update_slots: all slots are idle\n");
}

static void load_cb(uv_timer_t *t)
{
    finish_loading(t->data);
}

static void progress_cb(uv_timer_t *t)
{
    struct mock *m = t->data;
    uint64_t pct = (uv_now(&m->loop) - m->start_ms) * 100 / (uint64_t)m->opts.load_ms;
    fprintf(stderr, "llama_model_load: loading tensors %llu%%\n",
            (unsigned long long)(pct < 99 ? pct : 99));
}

static void start_loading(struct mock *m)
{
    if (m->opts.load_ms == 0) {
        finish_loading(m);
        return;
    }
    if (!m->opts.quiet_load)
        fprintf(stderr, "llama_model_loader: loading model '%s' (arun-mock-engine, %d ms)\n",
                m->opts.model, m->opts.load_ms);
    uv_timer_start(&m->load_timer, load_cb, (uint64_t)m->opts.load_ms, 0);
    if (m->opts.log_every_ms > 0 && !m->opts.quiet_load)
        uv_timer_start(&m->progress_timer, progress_cb, (uint64_t)m->opts.log_every_ms,
                       (uint64_t)m->opts.log_every_ms);
}

/* --crash-after-ms: dies like a crashed engine, with no cleanup at all. */
static void crash_cb(uv_timer_t *t)
{
    struct mock *m = t->data;
    char why[64];
    snprintf(why, sizeof(why), "after %d ms", m->opts.crash_after_ms);
    api_crash(&m->opts, why);
}

static void grace_cb(uv_timer_t *t)
{
    struct mock *m = t->data;
    fprintf(stderr,
            "arun-mock-engine: connections still open %d ms after shutdown began; "
            "exiting without cleanup\n",
            SHUTDOWN_GRACE_MS);
    _exit(m->exit_code);
}

static void drained_cb(struct server *s)
{
    struct mock *m = H2O_STRUCT_FROM_MEMBER(struct mock, server, s);
    uv_close((uv_handle_t *)&m->grace_timer, NULL);
    uv_stop(&m->loop); /* h2o's own handles stay open until server_cleanup() */
}

static void begin_shutdown(struct mock *m)
{
    if (m->closing)
        return;
    m->closing = 1;
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->load_timer, NULL);
    uv_close((uv_handle_t *)&m->progress_timer, NULL);
    uv_close((uv_handle_t *)&m->crash_timer, NULL);
    uv_timer_start(&m->grace_timer, grace_cb, SHUTDOWN_GRACE_MS, 0);
    server_close(&m->server, drained_cb);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct mock *m = h->data;
    fprintf(stderr, "main: received %s, shutting down\n", strsignal(signum));
    begin_shutdown(m);
}

static void init_handles(struct mock *m)
{
    uv_timer_t *timers[] = {&m->load_timer, &m->progress_timer, &m->crash_timer, &m->grace_timer};
    for (size_t i = 0; i < ARRAY_SIZE(timers); i++) {
        uv_timer_init(&m->loop, timers[i]);
        timers[i]->data = m;
    }
    uv_signal_init(&m->loop, &m->sigterm);
    uv_signal_init(&m->loop, &m->sigint);
    m->sigterm.data = m->sigint.data = m;
    uv_signal_start(&m->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&m->sigint, signal_cb, SIGINT);
}

static int run(struct mock *m)
{
    api_init(&m->api, &m->opts, &m->loop);
    server_init(&m->server, &m->loop, &m->api, m->opts.hang);
    init_handles(m);
    m->start_ms = uv_now(&m->loop);
    if (m->opts.crash_after_ms > 0)
        uv_timer_start(&m->crash_timer, crash_cb, (uint64_t)m->opts.crash_after_ms, 0);
    if (server_listen(&m->server, m->opts.host, m->opts.port) != 0) {
        m->exit_code = 1;
        begin_shutdown(m);
    } else {
        /* --quiet-load keeps even this line back, unless the port cannot be known otherwise */
        if (!(m->opts.quiet_load && m->opts.port != 0))
            print_listening(m);
        start_loading(m);
    }
    uv_run(&m->loop, UV_RUN_DEFAULT);
    server_cleanup(&m->server);
    uv_run(&m->loop, UV_RUN_DEFAULT); /* the close callbacks still pending */
    int rc = uv_loop_close(&m->loop);
    ASSERT(rc == 0);
    api_cleanup(&m->api);
    free(m->rss);
    return m->exit_code;
}

int main(int argc, char **argv)
{
    static struct mock m; /* static: --help and errors return before it matters */
    int rc = opts_parse(&m.opts, argc, argv, stderr);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN); /* a client that left shows up as EPIPE, not as our death */
    rc = uv_loop_init(&m.loop);
    if (rc != 0) {
        fprintf(stderr, "arun-mock-engine: cannot start the event loop: %s\n", uv_strerror(rc));
        return 1;
    }
    return run(&m);
}
