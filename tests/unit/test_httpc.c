/* Unit tests of http/httpc against a real arun-mock-engine process. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/buf.h"
#include "core/clock.h"
#include "http/httpc.h"

#define MOCK_START_DEADLINE_MS 10000
#define WAIT_MS 10000 /* the most any single wait in these tests may take */

/* ---- the mock engine process ---- */

struct mock {
    pid_t pid;
    int errfd; /* its stderr; kept open so its last lines never hit EPIPE */
    int port;
    char url[64]; /* http://127.0.0.1:PORT */
};

static pid_t live_mock; /* the running mock, for the teardown of a test that failed */

static void mock_start(struct mock *m, const char *const *flags)
{
    const char *dir = getenv("ARUN_BUILD_DIR");
    assert_non_null(dir);
    char bin[4096];
    snprintf(bin, sizeof(bin), "%s/arun-mock-engine", dir);
    const char *argv[32] = {bin, "--port", "0"};
    size_t argc = 3;
    for (size_t i = 0; flags != NULL && flags[i] != NULL; i++)
        argv[argc++] = flags[i];
    argv[argc] = NULL;

    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1); /* never hold the test runner's stdout open */
        dup2(fds[1], 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    *m = (struct mock){.pid = pid, .errfd = fds[0]};
    live_mock = pid;

    char seen[4096];
    size_t len = 0;
    uint64_t deadline = clock_mono_ms() + MOCK_START_DEADLINE_MS;
    const char *key = "listening on http://127.0.0.1:";
    while (m->port == 0) {
        uint64_t now = clock_mono_ms();
        if (now >= deadline)
            fail_msg("no listening line from the mock within %d ms; seen: %.*s",
                     MOCK_START_DEADLINE_MS, (int)len, seen);
        struct pollfd pfd = {.fd = m->errfd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
            continue;
        ssize_t n = read(m->errfd, seen + len, sizeof(seen) - 1 - len);
        if (n <= 0)
            fail_msg("the mock exited before listening; seen: %.*s", (int)len, seen);
        len += (size_t)n;
        seen[len] = '\0';
        const char *at = strstr(seen, key);
        if (at != NULL && strchr(at, '\n') != NULL)
            m->port = atoi(at + strlen(key));
    }
    snprintf(m->url, sizeof(m->url), "http://127.0.0.1:%d", m->port);
}

static void mock_stop(struct mock *m)
{
    int status = 0;
    kill(m->pid, SIGTERM);
    /* It exits within 2 s of SIGTERM by contract (it _exits after that). */
    assert_int_equal(waitpid(m->pid, &status, 0), m->pid);
    close(m->errfd);
    live_mock = 0;
}

/* A failed assertion leaves its test at once; this still stops and reaps the mock. */
static int teardown(void **state)
{
    if (live_mock > 0) {
        kill(live_mock, SIGTERM);
        waitpid(live_mock, NULL, 0);
        live_mock = 0;
    }
    return 0;
}

/* ---- the loop ---- */

/* Which transport the tests of this group run against (httpc_set_native). */
static bool use_native = true;

struct env {
    uv_loop_t loop;
    struct httpc *h;
    struct mock mock;
};

static void env_init(struct env *e, const char *const *mock_flags)
{
    memset(e, 0, sizeof(*e));
    if (mock_flags != NULL)
        mock_start(&e->mock, mock_flags);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    e->h = httpc_new(&e->loop);
    httpc_set_native(e->h, use_native);
}

static void env_cleanup(struct env *e)
{
    httpc_free(e->h);
    assert_int_equal(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    if (e->mock.pid > 0)
        mock_stop(&e->mock);
}

static void expire_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs the loop until *flag is set or ms pass. Returns *flag. */
static int run_until(uv_loop_t *loop, const int *flag, uint64_t ms)
{
    uv_timer_t t;
    int expired = 0;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, expire_cb, ms, 0);
    while (!*flag && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* runs t's close */
    return *flag;
}

/* Runs the loop for ms of wall time. */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
    int never = 0;
    run_until(loop, &never, ms);
}

/* ---- what a transfer saw ---- */

struct seen {
    int done; /* done calls */
    int error;
    char error_text[256];
    int status;
    char content_type[128];
    struct buf body;       /* buffered body, or the streamed chunks joined */
    int chunks;            /* on_data calls */
    int headers_calls;     /* on_headers calls */
    int pause_at_chunk;    /* on_data returns HTTPC_PAUSE at this chunk (1-based); 0 = never */
    int cancel_at_chunk;   /* on_data calls httpc_cancel at this chunk; 0 = never */
    int abort_at_chunk;    /* on_data returns HTTPC_ABORT at this chunk; 0 = never */
    int cancelled;         /* on_data called httpc_cancel */
    int pause_every;       /* on_data returns HTTPC_PAUSE every time, resumed by a timer */
    uv_timer_t resume;     /* that timer */
    struct httpc_req *req; /* the transfer, for that timer */
    long new_connects;
    double total_s;
};

static void seen_init(struct seen *s)
{
    memset(s, 0, sizeof(*s));
    buf_init(&s->body, 1 << 20);
}

static void done_cb(struct httpc_req *r, const struct httpc_result *res, void *arg)
{
    struct seen *s = arg;
    s->done++;
    /* done may run while paused (the body ended with the paused chunk) and r goes with it: a
     * resume that the last on_data scheduled must not reach it. */
    if (s->pause_every)
        uv_timer_stop(&s->resume);
    s->error = res->error;
    s->status = res->status;
    s->new_connects = res->new_connects;
    s->total_s = res->total_s;
    if (res->error_text != NULL)
        snprintf(s->error_text, sizeof(s->error_text), "%s", res->error_text);
    if (res->body != NULL) {
        assert_int_equal(res->body[res->body_len], '\0');
        assert_int_equal(buf_append(&s->body, res->body, res->body_len), 0);
    }
    const char *ct = httpc_header(r, "CONTENT-TYPE");
    if (ct != NULL)
        snprintf(s->content_type, sizeof(s->content_type), "%s", ct);
}

static int headers_cb(struct httpc_req *r, int status, void *arg)
{
    struct seen *s = arg;
    s->headers_calls++;
    s->status = status;
    return 0;
}

static void resume_every_cb(uv_timer_t *t)
{
    struct seen *s = t->data;
    httpc_resume(s->req);
}

static enum httpc_data_result data_cb(struct httpc_req *r, const char *p, size_t n, void *arg)
{
    struct seen *s = arg;
    s->chunks++;
    assert_int_equal(buf_append(&s->body, p, n), 0);
    if (s->chunks == s->cancel_at_chunk) {
        httpc_cancel(r);
        s->cancelled = 1;
        return HTTPC_CONTINUE;
    }
    if (s->chunks == s->abort_at_chunk)
        return HTTPC_ABORT;
    if (s->chunks == s->pause_at_chunk)
        return HTTPC_PAUSE;
    if (s->pause_every) {
        s->req = r;
        uv_timer_start(&s->resume, resume_every_cb, 1, 0);
        return HTTPC_PAUSE;
    }
    return HTTPC_CONTINUE;
}

static struct httpc_req *get(struct env *e, const char *path, struct httpc_opts *o, struct seen *s)
{
    char url[256];
    struct httpc_req *r = NULL;
    snprintf(url, sizeof(url), "%s%s", e->mock.url, path);
    o->url = url;
    o->arg = s;
    assert_int_equal(httpc_request(e->h, o, done_cb, &r), 0);
    return r;
}

static void wait_done(struct env *e, struct seen *s)
{
    if (!run_until(&e->loop, &s->done, WAIT_MS))
        fail_msg("no done within %d ms; chunks %d, status %d", WAIT_MS, s->chunks, s->status);
    assert_int_equal(s->done, 1);
}

static const char *const CHAT_HEADERS[] = {"Content-Type: application/json"};

static struct httpc_req *chat(struct env *e, const char *body, struct httpc_opts *o, struct seen *s)
{
    o->headers = CHAT_HEADERS;
    o->nheaders = 1;
    o->body = body;
    o->body_len = strlen(body);
    return get(e, "/v1/chat/completions", o, s);
}

/* Reads the mock's /mock/stats field (an integer) through a second request. */
static long mock_stat(struct env *e, const char *field)
{
    struct seen s;
    struct httpc_opts o = {0};
    seen_init(&s);
    get(e, "/mock/stats", &o, &s);
    wait_done(e, &s);
    assert_int_equal(s.status, 200);
    json_t *j = json_loads(buf_cstr(&s.body), 0, NULL);
    assert_non_null(j);
    long v = (long)json_integer_value(json_object_get(j, field));
    json_decref(j);
    buf_cleanup(&s.body);
    return v;
}

/* ---- tests ---- */

static void test_get_health_buffered_returns_status_and_body(void **state)
{
    struct env e;
    struct seen s;
    struct httpc_opts o = {0};
    env_init(&e, (const char *const[]){NULL});
    seen_init(&s);
    get(&e, "/health", &o, &s);
    assert_int_equal(httpc_active(e.h), 1);
    wait_done(&e, &s);
    assert_int_equal(s.error, 0);
    assert_int_equal(s.status, 200);
    assert_string_equal(buf_cstr(&s.body), "{\"status\":\"ok\"}");
    assert_non_null(strstr(s.content_type, "application/json"));
    assert_int_equal(httpc_active(e.h), 0);
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_post_chat_completion_sends_the_json_body(void **state)
{
    struct env e;
    struct seen s;
    struct httpc_opts o = {0};
    env_init(&e, (const char *const[]){NULL});
    seen_init(&s);
    chat(&e, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello there, mock\"}],\"seed\":7}",
         &o, &s);
    wait_done(&e, &s);
    assert_int_equal(s.error, 0);
    assert_int_equal(s.status, 200);
    /* The mock's golden answer for this prompt and seed (docs/mock-engine.md). */
    assert_non_null(strstr(buf_cstr(&s.body), "stone forest south candle gamma arrow story"));
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static const char STREAM_BODY[] =
    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,\"max_tokens\":10,"
    "\"ignore_eos\":true}";

static int ends_with_done(const struct buf *b)
{
    const char *tail = "data: [DONE]\n\n";
    size_t n = strlen(tail);
    return b->len >= n && memcmp(b->data + b->len - n, tail, n) == 0;
}

static void test_streaming_delivers_chunks_as_they_arrive(void **state)
{
    struct env e;
    struct seen s;
    struct httpc_opts o = {.on_headers = headers_cb, .on_data = data_cb};
    env_init(&e, (const char *const[]){"--tokens-per-s", "200", NULL});
    seen_init(&s);
    chat(&e, STREAM_BODY, &o, &s);
    wait_done(&e, &s);
    assert_int_equal(s.error, 0);
    assert_int_equal(s.headers_calls, 1);
    assert_int_equal(s.status, 200);
    assert_non_null(strstr(s.content_type, "text/event-stream"));
    assert_true(s.chunks >= 3);
    assert_true(ends_with_done(&s.body));
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_pause_stops_delivery_until_resume(void **state)
{
    struct env e;
    struct seen s;
    /* The idle timeout is shorter than the pause: a paused reader must not count as idle. */
    struct httpc_opts o = {.on_data = data_cb, .idle_timeout_ms = 100};
    env_init(&e, (const char *const[]){"--tokens-per-s", "200", NULL});
    seen_init(&s);
    s.pause_at_chunk = 1;
    struct httpc_req *r = chat(&e, STREAM_BODY, &o, &s);
    assert_true(run_until(&e.loop, &s.chunks, WAIT_MS));
    assert_int_equal(s.chunks, 1);

    /* Stay paused past the idle timeout and until the engine has sent its whole answer (its
     * request is over: concurrency 0), however slow it is: only then does "nothing delivered"
     * show that the pause held data back, rather than that none had come yet. */
    run_for(&e.loop, 200);
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    while (mock_stat(&e, "concurrency") != 0 && clock_mono_ms() < deadline)
        run_for(&e.loop, 10);
    assert_int_equal(mock_stat(&e, "concurrency"), 0);
    assert_int_equal(s.chunks, 1);
    assert_int_equal(s.done, 0);
    httpc_resume(r);
    assert_int_equal(s.chunks, 1); /* httpc_resume never delivers from inside itself */

    wait_done(&e, &s);
    assert_int_equal(s.error, 0);
    assert_true(s.chunks > 1);
    assert_true(ends_with_done(&s.body));
    /* The paused chunk (the role event) is not handed over twice. */
    const char *first = strstr(s.body.data, "\"role\":\"assistant\"");
    assert_non_null(first);
    assert_null(strstr(first + 1, "\"role\":\"assistant\""));
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_pausing_at_every_chunk_still_delivers_the_whole_stream(void **state)
{
    struct env e;
    struct seen s, ref;
    struct httpc_opts o = {.on_data = data_cb};
    /* 1 ms apart: some events come alone, some pile up behind a pause and come together. */
    env_init(&e, (const char *const[]){"--tokens-per-s", "1000", NULL});
    seen_init(&ref);
    chat(&e, STREAM_BODY, &o, &ref);
    wait_done(&e, &ref);
    seen_init(&s);
    s.pause_every = 1;
    uv_timer_init(&e.loop, &s.resume);
    s.resume.data = &s;
    chat(&e, STREAM_BODY, &o, &s);
    wait_done(&e, &s);
    assert_int_equal(s.error, 0);
    assert_true(ends_with_done(&s.body));
    /* Same events as without pauses: nothing lost, nothing handed over twice ("id" and
     * "created" differ per answer, so compare lengths and the event count). */
    assert_int_equal(s.body.len, ref.body.len);
    /* At least one pause and resume happened (every chunk pauses). How many chunks the stream
     * came in depends on the machine's load: a busy one may read it all at once. */
    assert_true(s.chunks >= 1);
    uv_close((uv_handle_t *)&s.resume, NULL);
    buf_cleanup(&s.body);
    buf_cleanup(&ref.body);
    env_cleanup(&e);
}

static void test_cancel_from_on_data_frees_the_transfer_and_the_engine_slot(void **state)
{
    struct env e;
    struct seen s;
    struct httpc_opts o = {.on_data = data_cb};
    env_init(&e, (const char *const[]){"--tokens-per-s", "20", NULL});
    seen_init(&s);
    s.cancel_at_chunk = 2;
    chat(&e,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
         "\"max_tokens\":200,\"ignore_eos\":true}",
         &o, &s);
    assert_true(run_until(&e.loop, &s.cancelled, WAIT_MS));
    assert_int_equal(s.chunks, 2);
    assert_int_equal(httpc_active(e.h), 0); /* gone as soon as on_data returned */
    run_for(&e.loop, 100);
    assert_int_equal(s.chunks, 2);
    assert_int_equal(s.done, 0);

    uint64_t deadline = clock_mono_ms() + 2000;
    long conc = -1;
    while (clock_mono_ms() < deadline && (conc = mock_stat(&e, "concurrency")) != 0)
        run_for(&e.loop, 20);
    assert_int_equal(conc, 0);
    assert_int_equal(mock_stat(&e, "aborted"), 1);
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_abort_from_on_data_ends_with_econnaborted(void **state)
{
    struct env e;
    struct seen s;
    struct httpc_opts o = {.on_data = data_cb};
    env_init(&e, (const char *const[]){"--tokens-per-s", "200", NULL});
    seen_init(&s);
    s.abort_at_chunk = 2;
    chat(&e, STREAM_BODY, &o, &s);
    wait_done(&e, &s);
    assert_int_equal(s.error, -ECONNABORTED);
    assert_int_equal(s.chunks, 2);
    assert_non_null(strstr(s.error_text, "127.0.0.1:"));
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_cancel_outside_callbacks_calls_nothing(void **state)
{
    struct env e;
    struct seen s;
    struct httpc_opts o = {0};
    env_init(&e, (const char *const[]){"--hang", NULL});
    seen_init(&s);
    struct httpc_req *r = get(&e, "/health", &o, &s);
    run_for(&e.loop, 50); /* connected and waiting */
    httpc_cancel(r);
    assert_int_equal(httpc_active(e.h), 0);
    run_for(&e.loop, 50);
    assert_int_equal(s.done, 0);
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd); /* bound but never listening: connects are refused */
    return ntohs(sa.sin_port);
}

static void test_connection_refused_is_econnrefused_with_a_sentence(void **state)
{
    struct env e;
    struct seen s;
    char url[128], want[128];
    env_init(&e, NULL);
    seen_init(&s);
    int port = closed_port();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", port);
    struct httpc_opts o = {.url = url, .arg = &s};
    assert_int_equal(httpc_request(e.h, &o, done_cb, NULL), 0);
    assert_int_equal(s.done, 0); /* never from inside httpc_request */
    wait_done(&e, &s);
    assert_int_equal(s.error, -ECONNREFUSED);
    assert_int_equal(s.status, 0);
    snprintf(want, sizeof(want), "connection refused: 127.0.0.1:%d", port);
    assert_string_equal(s.error_text, want);
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_first_byte_timeout_against_a_hung_engine(void **state)
{
    struct env e;
    struct seen s;
    char url[256];
    env_init(&e, (const char *const[]){"--hang", NULL});
    seen_init(&s);
    /* Credentials and the query must never reach the sentence. */
    snprintf(url, sizeof(url), "http://user:secretpw@127.0.0.1:%d/health?token=secretq",
             e.mock.port);
    struct httpc_opts o = {.url = url, .arg = &s, .first_byte_timeout_ms = 300};
    assert_int_equal(httpc_request(e.h, &o, done_cb, NULL), 0);
    wait_done(&e, &s);
    assert_int_equal(s.error, -ETIMEDOUT);
    assert_int_equal(s.status, 0);
    char want[128];
    snprintf(want, sizeof(want), "no response headers from 127.0.0.1:%d within 300 ms",
             e.mock.port);
    assert_string_equal(s.error_text, want);
    assert_true(s.total_s >= 0.29);
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_a_stream_that_keeps_sending_outlives_its_idle_timeout(void **state)
{
    struct env e;
    struct seen s;
    /* 10 tokens 50 ms apart: the stream lasts about 500 ms, more than twice the idle timeout,
     * with no gap near it. The timer is not re-armed per chunk: it wakes at the old deadline,
     * sees data since, and waits again. */
    struct httpc_opts o = {.on_data = data_cb, .idle_timeout_ms = 200};
    env_init(&e, (const char *const[]){"--tokens-per-s", "20", NULL});
    seen_init(&s);
    chat(&e, STREAM_BODY, &o, &s);
    wait_done(&e, &s);
    assert_int_equal(s.error, 0);
    assert_int_equal(s.status, 200);
    assert_true(ends_with_done(&s.body));
    assert_true(s.total_s > 0.4); /* it did outlive the timeout */
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_idle_timeout_mid_stream(void **state)
{
    struct env e;
    struct seen s;
    struct httpc_opts o = {.on_data = data_cb, .on_headers = headers_cb, .idle_timeout_ms = 200};
    env_init(&e, (const char *const[]){"--tokens-per-s", "2", NULL});
    seen_init(&s);
    chat(&e, STREAM_BODY, &o, &s); /* the role event at once, token 1 after 500 ms */
    wait_done(&e, &s);
    assert_int_equal(s.error, -ETIMEDOUT);
    assert_int_equal(s.status, 200);
    assert_true(s.chunks >= 1);
    assert_non_null(strstr(s.error_text, "no data from 127.0.0.1:"));
    assert_non_null(strstr(s.error_text, "for 200 ms"));
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

struct chain {
    struct env *e;
    int left;
    int failures;
    long connects;
    int all_done;
    char url[128];
};

static void chain_done_cb(struct httpc_req *r, const struct httpc_result *res, void *arg);

static void chain_next(struct chain *c)
{
    struct httpc_opts o = {.url = c->url, .arg = c};
    assert_int_equal(httpc_request(c->e->h, &o, chain_done_cb, NULL), 0);
}

static void chain_done_cb(struct httpc_req *r, const struct httpc_result *res, void *arg)
{
    struct chain *c = arg;
    if (res->error != 0 || res->status != 200)
        c->failures++;
    c->connects += res->new_connects;
    if (--c->left > 0)
        chain_next(c);
    else
        c->all_done = 1;
}

static void test_sequential_requests_reuse_one_connection(void **state)
{
    struct env e;
    env_init(&e, (const char *const[]){NULL});
    struct chain c = {.e = &e, .left = 200};
    snprintf(c.url, sizeof(c.url), "%s/health", e.mock.url);
    chain_next(&c);
    assert_true(run_until(&e.loop, &c.all_done, WAIT_MS));
    assert_int_equal(c.failures, 0);
    assert_int_equal(c.connects, 1);
    env_cleanup(&e);
}

static void test_parallel_requests_all_complete(void **state)
{
    enum { N = 64 };
    struct env e;
    static struct seen s[N];
    struct httpc_opts o[N];
    env_init(&e, (const char *const[]){NULL});
    for (int i = 0; i < N; i++) {
        seen_init(&s[i]);
        o[i] = (struct httpc_opts){.timeout_ms = 5000};
        get(&e, "/health", &o[i], &s[i]);
    }
    assert_int_equal(httpc_active(e.h), N);
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    while (httpc_active(e.h) > 0 && clock_mono_ms() < deadline)
        run_for(&e.loop, 10);
    for (int i = 0; i < N; i++) {
        assert_int_equal(s[i].done, 1);
        assert_int_equal(s[i].status, 200);
        buf_cleanup(&s[i].body);
    }
    env_cleanup(&e);
}

static void test_body_over_max_body_bytes_is_e2big(void **state)
{
    struct env e;
    struct seen s;
    struct httpc_opts o = {.max_body_bytes = 64};
    env_init(&e, (const char *const[]){NULL});
    seen_init(&s);
    chat(&e, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &o, &s);
    wait_done(&e, &s);
    assert_int_equal(s.error, -E2BIG);
    assert_non_null(strstr(s.error_text, "exceeds 64 bytes"));
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_bad_url_fails_without_calling_done(void **state)
{
    struct env e;
    struct seen s;
    struct httpc_req *r = NULL;
    env_init(&e, NULL);
    seen_init(&s);
    struct httpc_opts o = {.url = "ftp://127.0.0.1/x", .arg = &s};
    assert_int_equal(httpc_request(e.h, &o, done_cb, &r), -EINVAL);
    o.url = "not a url";
    assert_int_equal(httpc_request(e.h, &o, done_cb, &r), -EINVAL);
    const char *const smuggle[] = {"X-A: 1\r\nX-B: 2"};
    o = (struct httpc_opts){.url = "http://127.0.0.1:1/", .headers = smuggle, .nheaders = 1};
    assert_int_equal(httpc_request(e.h, &o, done_cb, &r), -EINVAL);
    assert_null(r);
    assert_int_equal(httpc_active(e.h), 0);
    run_for(&e.loop, 10);
    assert_int_equal(s.done, 0);
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_an_endpoint_in_parts_reaches_the_engine_as_its_url_does(void **state)
{
    static const char *const flags[] = {NULL};
    struct env e;
    env_init(&e, flags);
    static const char *const hosts[] = {"127.0.0.1", "localhost"};
    for (size_t i = 0; i < 2; i++) {
        struct seen s;
        seen_init(&s);
        struct httpc_opts o = {
            .to = {.host = hosts[i], .port = (uint16_t)e.mock.port, .path = "/v1/models?x=1"},
            .arg = &s};
        assert_int_equal(httpc_request(e.h, &o, done_cb, NULL), 0);
        wait_done(&e, &s);
        assert_int_equal(s.error, 0);
        assert_int_equal(s.status, 200);
        assert_non_null(strstr(buf_cstr(&s.body), "\"object\":\"list\""));
        buf_cleanup(&s.body);
    }
    /* Refused, and named by host:port, as a URL's would be. */
    struct seen s;
    seen_init(&s);
    struct httpc_opts o = {.to = {.host = "127.0.0.1", .port = 1, .path = "/"}, .arg = &s};
    assert_int_equal(httpc_request(e.h, &o, done_cb, NULL), 0);
    wait_done(&e, &s);
    assert_int_equal(s.error, -ECONNREFUSED);
    assert_string_equal(s.error_text, "connection refused: 127.0.0.1:1");
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_a_bad_endpoint_fails_without_calling_done(void **state)
{
    struct env e;
    env_init(&e, NULL);
    static const struct httpc_endpoint bad[] = {
        {.host = NULL, .port = 80, .path = "/"},
        {.host = "", .port = 80, .path = "/"},
        {.host = "127.0.0.1", .port = 0, .path = "/"},
        {.host = "127.0.0.1", .port = 80, .path = NULL},
        {.host = "127.0.0.1", .port = 80, .path = "no-slash"},
        {.host = "127.0.0.1", .port = 80, .path = "/a b"},
        {.host = "127.0.0.1", .port = 80, .path = "/a#frag"},
        {.host = "127.0.0.1/x", .port = 80, .path = "/"},
        {.host = "user@127.0.0.1", .port = 80, .path = "/"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct httpc_opts o = {.to = bad[i]};
        struct httpc_req *r = NULL;
        if (httpc_request(e.h, &o, done_cb, &r) != -EINVAL)
            fail_msg("endpoint %zu accepted", i);
        assert_null(r);
    }
    assert_int_equal(httpc_active(e.h), 0);
    env_cleanup(&e);
}

struct nested {
    struct env *e;
    struct seen inner;
    struct httpc_opts inner_opts;
    int started;
};

static enum httpc_data_result start_inner_cb(struct httpc_req *r, const char *p, size_t n,
                                             void *arg)
{
    struct nested *nd = arg;
    if (!nd->started) {
        nd->started = 1;
        get(nd->e, "/health", &nd->inner_opts, &nd->inner); /* from inside libcurl */
    }
    return HTTPC_CONTINUE;
}

static void ignore_done_cb(struct httpc_req *r, const struct httpc_result *res, void *arg)
{
}

static void test_request_started_from_on_data_completes(void **state)
{
    struct env e;
    struct nested nd = {.e = &e};
    char url[128];
    env_init(&e, (const char *const[]){"--tokens-per-s", "50", NULL});
    seen_init(&nd.inner);
    snprintf(url, sizeof(url), "%s/v1/chat/completions", e.mock.url);
    struct httpc_opts o = {.url = url,
                           .headers = CHAT_HEADERS,
                           .nheaders = 1,
                           .body = STREAM_BODY,
                           .body_len = strlen(STREAM_BODY),
                           .on_data = start_inner_cb,
                           .arg = &nd};
    assert_int_equal(httpc_request(e.h, &o, ignore_done_cb, NULL), 0);
    wait_done(&e, &nd.inner);
    assert_int_equal(nd.inner.error, 0);
    assert_int_equal(nd.inner.status, 200);
    buf_cleanup(&nd.inner.body);
    env_cleanup(&e); /* the stream is still going: httpc_free drops it */
}

struct free_from_done {
    struct env *e;
    int done;
};

static void free_in_done_cb(struct httpc_req *r, const struct httpc_result *res, void *arg)
{
    struct free_from_done *f = arg;
    f->done++;
    assert_non_null(httpc_header(r, "content-type")); /* still valid during done */
    httpc_free(f->e->h);
    f->e->h = NULL;
}

static void test_free_from_done_with_others_in_flight(void **state)
{
    struct env e;
    struct free_from_done f = {.e = &e};
    char health[128], chat_url[128];
    env_init(&e, (const char *const[]){"--tokens-per-s", "5", NULL});
    snprintf(health, sizeof(health), "%s/health", e.mock.url);
    snprintf(chat_url, sizeof(chat_url), "%s/v1/chat/completions", e.mock.url);
    struct httpc_opts slow = {.url = chat_url,
                              .headers = CHAT_HEADERS,
                              .nheaders = 1,
                              .body = STREAM_BODY,
                              .body_len = strlen(STREAM_BODY),
                              .arg = &f};
    for (int i = 0; i < 3; i++)
        assert_int_equal(httpc_request(e.h, &slow, free_in_done_cb, NULL), 0);
    struct httpc_opts fast = {.url = health, .arg = &f};
    assert_int_equal(httpc_request(e.h, &fast, free_in_done_cb, NULL), 0);
    assert_true(run_until(&e.loop, &f.done, WAIT_MS));
    run_for(&e.loop, 50);
    assert_int_equal(f.done, 1); /* the slow ones were dropped without done */
    env_cleanup(&e);
}

static void test_free_with_transfers_in_flight_calls_nothing_and_leaks_nothing(void **state)
{
    enum { N = 5 };
    struct env e;
    struct seen s[N];
    struct httpc_opts o[N];
    env_init(&e, (const char *const[]){"--tokens-per-s", "5", NULL});
    for (int i = 0; i < N; i++) {
        seen_init(&s[i]);
        o[i] = (struct httpc_opts){.on_data = data_cb};
        chat(&e, STREAM_BODY, &o[i], &s[i]);
    }
    int streaming = 0;
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    while (streaming < N && clock_mono_ms() < deadline) {
        run_for(&e.loop, 10);
        streaming = 0;
        for (int i = 0; i < N; i++)
            streaming += s[i].chunks > 0;
    }
    assert_int_equal(streaming, N);
    assert_int_equal(httpc_active(e.h), N);
    httpc_free(e.h);
    e.h = NULL;
    for (int i = 0; i < N; i++) {
        assert_int_equal(s[i].done, 0);
        buf_cleanup(&s[i].body);
    }
    env_cleanup(&e); /* runs the loop to the end and checks uv_loop_close() == 0 */
}

/* ---- the warm pool (native transport only) ---- */

/* Runs the loop until the client has n idle connections, or ms pass. */
static bool run_until_idle(struct env *e, size_t n, uint64_t ms)
{
    uint64_t deadline = clock_mono_ms() + ms;
    while (httpc_idle(e->h) != n && clock_mono_ms() < deadline)
        run_for(&e->loop, 5);
    return httpc_idle(e->h) == n;
}

static void test_warm_connections_carry_the_first_requests_without_a_connect(void **state)
{
    static const char *const flags[] = {NULL};
    struct env e;
    env_init(&e, flags);
    struct httpc_endpoint to = {.host = "127.0.0.1", .port = (uint16_t)e.mock.port};
    if (!use_native) {
        assert_int_equal(httpc_prewarm(e.h, &to, 8), -EAFNOSUPPORT);
        assert_int_equal(httpc_idle(e.h), 0);
        env_cleanup(&e);
        return;
    }
    assert_int_equal(httpc_prewarm(e.h, &to, 3), 0);
    /* No history yet: as many as the engine takes at once, opened in the background. */
    assert_true(run_until_idle(&e, 3, WAIT_MS));
    struct seen s[3];
    for (int i = 0; i < 3; i++) {
        seen_init(&s[i]);
        struct httpc_opts o = {.to = {.host = "127.0.0.1", .port = to.port, .path = "/health"},
                               .arg = &s[i]};
        assert_int_equal(httpc_request(e.h, &o, done_cb, NULL), 0);
    }
    for (int i = 0; i < 3; i++) {
        wait_done(&e, &s[i]);
        assert_int_equal(s[i].status, 200);
        assert_int_equal(s[i].new_connects, 0);
        buf_cleanup(&s[i].body);
    }
    env_cleanup(&e);
}

static void test_a_burst_past_the_pool_connects_for_the_rest_and_forgetting_closes(void **state)
{
    static const char *const flags[] = {NULL};
    struct env e;
    env_init(&e, flags);
    if (!use_native) {
        env_cleanup(&e);
        return;
    }
    struct httpc_endpoint to = {.host = "localhost", .port = (uint16_t)e.mock.port};
    assert_int_equal(httpc_prewarm(e.h, &to, 5), 0);
    assert_true(run_until_idle(&e, 5, WAIT_MS));
    /* Eight at once: the pool gives five, three connect. */
    struct seen s[8];
    for (int i = 0; i < 8; i++) {
        seen_init(&s[i]);
        struct httpc_opts o = {.to = {.host = "127.0.0.1", .port = to.port, .path = "/health"},
                               .arg = &s[i]};
        assert_int_equal(httpc_request(e.h, &o, done_cb, NULL), 0);
    }
    long connects = 0;
    for (int i = 0; i < 8; i++) {
        wait_done(&e, &s[i]);
        assert_int_equal(s[i].status, 200);
        connects += s[i].new_connects;
        buf_cleanup(&s[i].body);
    }
    assert_int_equal(connects, 8 - 5);
    /* All eight parked; nothing is closed for being more than the pool needs. */
    assert_int_equal(httpc_idle(e.h), 8);
    /* The engine stops: its connections go at once. */
    assert_int_equal(httpc_prewarm(e.h, &to, 0), 0);
    assert_int_equal(httpc_idle(e.h), 0);
    /* Bad endpoints, and ones the native transport does not take. */
    struct httpc_endpoint bad = {.host = "127.0.0.1", .port = 0};
    assert_int_equal(httpc_prewarm(e.h, &bad, 4), -EINVAL);
    struct httpc_endpoint remote = {.host = "10.0.0.1", .port = 80};
    assert_int_equal(httpc_prewarm(e.h, &remote, 4), -EAFNOSUPPORT);
    env_cleanup(&e);
}

/* An engine that accepts connections and closes them at once, as one does whose idle timeout
 * ran out: counts what it accepted. */
struct closer {
    int fd;
    int port;
    pthread_t thread;
    int accepted; /* read with __atomic, the loop thread polls it */
};

static void *closer_main(void *arg)
{
    struct closer *k = arg;
    for (;;) {
        int c = accept(k->fd, NULL, NULL);
        if (c < 0)
            break;
        __atomic_add_fetch(&k->accepted, 1, __ATOMIC_SEQ_CST);
        close(c);
    }
    return NULL;
}

static void test_warm_connections_the_engine_closes_are_dropped_and_replaced(void **state)
{
    struct env e;
    env_init(&e, NULL);
    if (!use_native) {
        env_cleanup(&e);
        return;
    }
    struct closer k = {0};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    k.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(k.fd >= 0);
    assert_int_equal(bind(k.fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(k.fd, 16), 0);
    assert_int_equal(getsockname(k.fd, (struct sockaddr *)&a, &alen), 0);
    k.port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&k.thread, NULL, closer_main, &k), 0);

    struct httpc_endpoint to = {.host = "127.0.0.1", .port = (uint16_t)k.port};
    assert_int_equal(httpc_prewarm(e.h, &to, 4), 0);
    /* Each tick replaces the connections the engine closed: more than the first four come. */
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    while (__atomic_load_n(&k.accepted, __ATOMIC_SEQ_CST) <= 2 * 4 && clock_mono_ms() < deadline)
        run_for(&e.loop, 20);
    assert_true(__atomic_load_n(&k.accepted, __ATOMIC_SEQ_CST) > 2 * 4);
    /* None of them is kept once closed: a request would never be given a dead one. */
    assert_true(run_until_idle(&e, 0, WAIT_MS));
    assert_int_equal(httpc_prewarm(e.h, &to, 0), 0);
    shutdown(k.fd, SHUT_RDWR);
    pthread_join(k.thread, NULL);
    close(k.fd);
    env_cleanup(&e);
}

/* ---- a scripted HTTP/1.1 server, for answers the mock engine never gives ---- */

#define SCRIPT_CLOSE "<close>" /* read the request, then close without answering */

struct script {
    const char *const *answers; /* one per request, in order; a leading '!' closes after it */
    size_t n;
    int fd; /* listening socket */
    int port;
    pthread_t thread;
    int connections;   /* accepted; read after script_stop */
    size_t body_bytes; /* request body bytes read, all requests together */
};

static int read_request(int c, struct script *s)
{
    char head[16384];
    size_t len = 0;
    char *end;
    while ((end = memmem(head, len, "\r\n\r\n", 4)) == NULL) {
        ssize_t k = read(c, head + len, sizeof(head) - 1 - len);
        if (k <= 0)
            return -1;
        len += (size_t)k;
    }
    head[len] = '\0';
    size_t have = len - (size_t)(end + 4 - head), want = 0;
    const char *cl = strcasestr(head, "\r\ncontent-length:");
    if (cl != NULL && cl < end)
        want = strtoul(cl + 17, NULL, 10);
    s->body_bytes += have;
    while (have < want) {
        char sink[65536];
        ssize_t k = read(c, sink, sizeof(sink));
        if (k <= 0)
            return -1;
        have += (size_t)k;
        s->body_bytes += (size_t)k;
    }
    return 0;
}

static void *script_main(void *arg)
{
    struct script *s = arg;
    size_t next = 0;
    while (next < s->n) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            break; /* script_stop shut the socket down */
        s->connections++;
        while (next < s->n && read_request(c, s) == 0) {
            const char *a = s->answers[next++];
            if (strcmp(a, SCRIPT_CLOSE) == 0)
                break;
            int close_after = a[0] == '!';
            a += close_after;
            for (size_t off = 0, len = strlen(a); off < len;) {
                ssize_t k = write(c, a + off, len - off);
                if (k <= 0)
                    break;
                off += (size_t)k;
            }
            if (close_after)
                break;
        }
        close(c);
    }
    return NULL;
}

static void script_start(struct script *s, const char *const *answers, size_t n)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    *s = (struct script){.answers = answers, .n = n};
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, script_main, s), 0);
}

static void script_stop(struct script *s)
{
    shutdown(s->fd, SHUT_RDWR); /* wakes an accept() that waits for a request never sent */
    pthread_join(s->thread, NULL);
    close(s->fd);
}

/* One request to the scripted server, run to its end. */
static void script_get(struct env *e, struct script *sc, const char *path, struct httpc_opts *o,
                       struct seen *s)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", sc->port, path);
    seen_init(s);
    o->url = url;
    o->arg = s;
    assert_int_equal(httpc_request(e->h, o, done_cb, NULL), 0);
    wait_done(e, s);
}

static void test_a_keepalive_connection_closed_under_a_request_is_replaced_once(void **state)
{
    static const char *const answers[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        SCRIPT_CLOSE, /* the engine dropped the pooled connection as the request came */
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok2",
    };
    struct env e;
    struct script sc;
    struct seen s1, s2;
    struct httpc_opts o = {0};
    env_init(&e, NULL);
    script_start(&sc, answers, 3);
    script_get(&e, &sc, "/a", &o, &s1);
    assert_int_equal(s1.status, 200);
    assert_string_equal(buf_cstr(&s1.body), "ok");
    script_get(&e, &sc, "/b", &o, &s2);
    assert_int_equal(s2.error, 0);
    assert_int_equal(s2.status, 200);
    assert_string_equal(buf_cstr(&s2.body), "ok2");
    assert_int_equal(s2.new_connects, 1);
    script_stop(&sc);
    assert_int_equal(sc.connections, 2);
    buf_cleanup(&s1.body);
    buf_cleanup(&s2.body);
    env_cleanup(&e);
}

static void test_a_body_until_close_and_connection_close_are_not_reused(void **state)
{
    static const char *const answers[] = {
        "!HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
        "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnext",
    };
    struct env e;
    struct script sc;
    struct seen s1, s2;
    struct httpc_opts o = {0};
    env_init(&e, NULL);
    script_start(&sc, answers, 2);
    script_get(&e, &sc, "/", &o, &s1);
    assert_int_equal(s1.error, 0);
    assert_string_equal(buf_cstr(&s1.body), "until the end");
    assert_string_equal(s1.content_type, "text/plain");
    script_get(&e, &sc, "/", &o, &s2);
    assert_int_equal(s2.error, 0);
    assert_string_equal(buf_cstr(&s2.body), "next");
    script_stop(&sc);
    assert_int_equal(sc.connections, 2);
    buf_cleanup(&s1.body);
    buf_cleanup(&s2.body);
    env_cleanup(&e);
}

static void test_chunked_body_with_extensions_and_trailers_then_reuse(void **state)
{
    static const char *const answers[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 201 Created\r\nContent-Type: text/x-final\r\nContent-Length: 1\r\n\r\nz",
    };
    struct env e;
    struct script sc;
    struct seen s1, s2;
    struct httpc_opts o = {.on_data = data_cb};
    env_init(&e, NULL);
    script_start(&sc, answers, 2);
    script_get(&e, &sc, "/", &o, &s1);
    assert_int_equal(s1.error, 0);
    assert_string_equal(buf_cstr(&s1.body), "abcde");
    o = (struct httpc_opts){.on_headers = headers_cb};
    script_get(&e, &sc, "/", &o, &s2);
    assert_int_equal(s2.error, 0);
    assert_int_equal(s2.status, 201); /* the interim 100 is not the answer */
    assert_int_equal(s2.headers_calls, 1);
    assert_string_equal(s2.content_type, "text/x-final");
    assert_string_equal(buf_cstr(&s2.body), "z");
    script_stop(&sc);
    assert_int_equal(sc.connections, 1);
    buf_cleanup(&s1.body);
    buf_cleanup(&s2.body);
    env_cleanup(&e);
}

/* The flaky use-after-free of test_pausing_at_every_chunk_still_delivers_the_whole_stream: when
 * the end of a body comes in the same read as its last chunk, the native transport hands the
 * chunk over, the reader pauses, and done runs at once (nothing is left to hold back), so the
 * req is gone; a resume scheduled by that last on_data must not run after done. */
static void test_a_pause_on_the_last_chunk_ends_with_done_and_no_resume_after_it(void **state)
{
    static const char *const answers[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    };
    struct env e;
    struct script sc;
    struct seen s;
    struct httpc_opts o = {.on_data = data_cb};
    env_init(&e, NULL);
    script_start(&sc, answers, 1);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", sc.port);
    seen_init(&s);
    s.pause_every = 1;
    uv_timer_init(&e.loop, &s.resume);
    s.resume.data = &s;
    o.url = url;
    o.arg = &s;
    assert_int_equal(httpc_request(e.h, &o, done_cb, NULL), 0);
    wait_done(&e, &s);
    run_for(&e.loop, 20); /* past the resume delay: a resume of the freed req would run here */
    assert_int_equal(s.error, 0);
    assert_int_equal(s.done, 1);
    assert_string_equal(buf_cstr(&s.body), "abc");
    script_stop(&sc);
    uv_close((uv_handle_t *)&s.resume, NULL);
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_a_request_body_larger_than_the_socket_buffer_arrives_whole(void **state)
{
    enum { BODY = 8 << 20 };
    static const char *const answers[] = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"};
    struct env e;
    struct script sc;
    struct seen s;
    char *body = malloc(BODY);
    assert_non_null(body);
    memset(body, 'x', BODY);
    struct httpc_opts o = {.body = body, .body_len = BODY};
    env_init(&e, NULL);
    script_start(&sc, answers, 1);
    script_get(&e, &sc, "/", &o, &s);
    assert_int_equal(s.error, 0);
    assert_string_equal(buf_cstr(&s.body), "ok");
    script_stop(&sc);
    assert_int_equal(sc.body_bytes, BODY);
    free(body);
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_headers_past_the_cap_are_eproto_with_a_sentence(void **state)
{
    static char big[HTTPC_MAX_HEADER_BYTES + 256];
    const char *answers[] = {big};
    int n = snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(big + n, 'a', HTTPC_MAX_HEADER_BYTES + 100 - (size_t)n);
    strcpy(big + HTTPC_MAX_HEADER_BYTES + 100, "\r\nContent-Length: 0\r\n\r\n");
    struct env e;
    struct script sc;
    struct seen s;
    struct httpc_opts o = {0};
    env_init(&e, NULL);
    script_start(&sc, answers, 1);
    script_get(&e, &sc, "/", &o, &s);
    assert_int_equal(s.error, -EPROTO);
    assert_non_null(strstr(s.error_text, "exceed"));
    script_stop(&sc);
    buf_cleanup(&s.body);
    env_cleanup(&e);
}

static void test_a_malformed_answer_is_eproto_naming_the_engine(void **state)
{
    static const char *const answers[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
    };
    struct env e;
    struct script sc;
    struct seen s1, s2;
    struct httpc_opts o = {0};
    if (!use_native)
        skip(); /* libcurl has its own leniency and words; the native rules are tested here */
    env_init(&e, NULL);
    script_start(&sc, answers, 2);
    script_get(&e, &sc, "/", &o, &s1);
    assert_int_equal(s1.error, -EPROTO);
    assert_non_null(strstr(s1.error_text, "bad chunked encoding"));
    script_get(&e, &sc, "/", &o, &s2);
    assert_int_equal(s2.error, -EPROTO);
    assert_non_null(strstr(s2.error_text, "malformed response from 127.0.0.1:"));
    script_stop(&sc);
    buf_cleanup(&s1.body);
    buf_cleanup(&s2.body);
    env_cleanup(&e);
}

static int native_group(void **state)
{
    use_native = true;
    return 0;
}

static int curl_group(void **state)
{
    use_native = false;
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_get_health_buffered_returns_status_and_body, teardown),
        cmocka_unit_test_teardown(test_post_chat_completion_sends_the_json_body, teardown),
        cmocka_unit_test_teardown(test_streaming_delivers_chunks_as_they_arrive, teardown),
        cmocka_unit_test_teardown(test_pause_stops_delivery_until_resume, teardown),
        cmocka_unit_test_teardown(test_pausing_at_every_chunk_still_delivers_the_whole_stream,
                                  teardown),
        cmocka_unit_test_teardown(test_cancel_from_on_data_frees_the_transfer_and_the_engine_slot,
                                  teardown),
        cmocka_unit_test_teardown(test_abort_from_on_data_ends_with_econnaborted, teardown),
        cmocka_unit_test_teardown(test_cancel_outside_callbacks_calls_nothing, teardown),
        cmocka_unit_test_teardown(test_connection_refused_is_econnrefused_with_a_sentence,
                                  teardown),
        cmocka_unit_test_teardown(test_first_byte_timeout_against_a_hung_engine, teardown),
        cmocka_unit_test_teardown(test_idle_timeout_mid_stream, teardown),
        cmocka_unit_test_teardown(test_a_stream_that_keeps_sending_outlives_its_idle_timeout,
                                  teardown),
        cmocka_unit_test_teardown(test_sequential_requests_reuse_one_connection, teardown),
        cmocka_unit_test_teardown(test_parallel_requests_all_complete, teardown),
        cmocka_unit_test_teardown(test_body_over_max_body_bytes_is_e2big, teardown),
        cmocka_unit_test_teardown(test_bad_url_fails_without_calling_done, teardown),
        cmocka_unit_test_teardown(test_an_endpoint_in_parts_reaches_the_engine_as_its_url_does,
                                  teardown),
        cmocka_unit_test_teardown(test_a_bad_endpoint_fails_without_calling_done, teardown),
        cmocka_unit_test_teardown(test_warm_connections_carry_the_first_requests_without_a_connect,
                                  teardown),
        cmocka_unit_test_teardown(
            test_a_burst_past_the_pool_connects_for_the_rest_and_forgetting_closes, teardown),
        cmocka_unit_test(test_warm_connections_the_engine_closes_are_dropped_and_replaced),
        cmocka_unit_test_teardown(test_request_started_from_on_data_completes, teardown),
        cmocka_unit_test_teardown(test_free_from_done_with_others_in_flight, teardown),
        cmocka_unit_test_teardown(
            test_free_with_transfers_in_flight_calls_nothing_and_leaks_nothing, teardown),
        cmocka_unit_test(test_a_keepalive_connection_closed_under_a_request_is_replaced_once),
        cmocka_unit_test(test_a_body_until_close_and_connection_close_are_not_reused),
        cmocka_unit_test(test_chunked_body_with_extensions_and_trailers_then_reuse),
        cmocka_unit_test(test_a_pause_on_the_last_chunk_ends_with_done_and_no_resume_after_it),
        cmocka_unit_test(test_a_request_body_larger_than_the_socket_buffer_arrives_whole),
        cmocka_unit_test(test_headers_past_the_cap_are_eproto_with_a_sentence),
        cmocka_unit_test(test_a_malformed_answer_is_eproto_naming_the_engine),
    };
    /* Every test against both transports: they promise the same. */
    int failed = cmocka_run_group_tests_name("native HTTP/1.1", tests, native_group, NULL);
    failed += cmocka_run_group_tests_name("libcurl", tests, curl_group, NULL);
    return failed;
}
