/*
 * Unit tests of engines/container: podman/docker driven through their CLI on the loop.
 *
 * Two kinds of test. Those that need a real podman (detection, the mock engine run as a
 * container, missing images and containers) skip when podman is absent. The others point an rt
 * at a fake CLI, a shell script in a temporary directory, to reach what a healthy podman never
 * does: a CLI that hangs, a broken runtime, docker's output formats, output past the cap.
 *
 * Every container made here carries the labels arun.test=1 and arun.test.run=PID; teardown
 * removes those of this run (by the second label, so parallel runs of this test in other build
 * directories keep theirs), also after a failed assertion.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/clock.h"
#include "engines/container.h"
#include "engines/manifest.h"

#define WAIT_MS 20000 /* a CLI call on a loaded test machine; the suite itself takes ~5 s */

struct fixture {
    uv_loop_t loop;
    char dir[64];       /* temporary directory for fake CLIs */
    char run_label[64]; /* arun.test.run=PID */
    bool loop_closed;   /* close_loop() ran; teardown closes it for skipped tests */
};

/* ---- helpers ---- */

static const char *source_dir(void)
{
    const char *s = getenv("ARUN_SOURCE_DIR");
    return s ? s : ".";
}

static const char *build_dir(void)
{
    const char *b = getenv("ARUN_BUILD_DIR");
    return b ? b : ".";
}

static bool have_podman(void)
{
    char *p = manifest_which("podman");
    free(p);
    return p != NULL;
}

#define NEED_PODMAN()                                                                              \
    do {                                                                                           \
        if (!have_podman()) {                                                                      \
            print_message("podman is not on PATH: skipping this test\n");                          \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void tick_cb(uv_timer_t *t)
{
}

/* Runs the loop until *cond is true or ms pass. Returns *cond. A tick timer bounds each wait:
 * libuv polls for I/O after running timers in the same iteration, so a condition set by a timer
 * callback would otherwise be seen only when the next event arrives. */
static bool run_until(uv_loop_t *loop, const bool *cond, uint64_t ms)
{
    uint64_t deadline = clock_mono_ms() + ms;
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, tick_cb, 10, 10);
    while (!*cond && clock_mono_ms() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* the stack timer's close completes here */
    return *cond;
}

/* Lets every handle close and checks that none was left. */
static void close_loop(struct fixture *f)
{
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    f->loop_closed = true;
}

static void write_script(const struct fixture *f, const char *name, const char *body)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "#!/bin/sh\nPATH=/usr/bin:/bin\n%s\n", body);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(path, 0755), 0);
}

static struct container_rt *fake_rt(struct fixture *f, const char *name, enum container_kind k)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    return container_rt_new(&f->loop, path, k, "0.0-fake");
}

struct result {
    bool done;
    int status;
    char out[4096];
    char why[2048];
};

static void done_cb(int status, const char *out, const char *why, void *arg)
{
    struct result *r = arg;
    r->done = true;
    r->status = status;
    snprintf(r->out, sizeof(r->out), "%s", out ? out : "");
    snprintf(r->why, sizeof(r->why), "%s", why ? why : "");
}

struct detect_result {
    bool done;
    int status;
    struct container_rt *rt;
    char why[2048];
};

static void detect_cb(int status, struct container_rt *rt, const char *why, void *arg)
{
    struct detect_result *r = arg;
    r->done = true;
    r->status = status;
    r->rt = rt;
    snprintf(r->why, sizeof(r->why), "%s", why ? why : "");
}

/* Detects with PATH set to path (only for the lookup, which container_detect does at once). */
static void detect_with_path(struct fixture *f, const char *path, const char *pref,
                             struct detect_result *r)
{
    char *old = xstrdup(getenv("PATH") ? getenv("PATH") : "");
    if (path != NULL)
        setenv("PATH", path, 1);
    int rc = container_detect(&f->loop, pref, detect_cb, r);
    setenv("PATH", old, 1);
    free(old);
    assert_int_equal(rc, 0);
    assert_true(run_until(&f->loop, &r->done, WAIT_MS));
}

struct state_result {
    bool done;
    int status;
    struct container_state st;
    char engine_label[64];
    char why[2048];
};

static void inspect_cb(int status, const struct container_state *st, const char *why, void *arg)
{
    struct state_result *r = arg;
    r->done = true;
    r->status = status;
    if (st != NULL) {
        r->st = *st;
        r->st.labels = NULL; /* borrowed: gone after the callback */
        const char *v = json_string_value(json_object_get(st->labels, "arun.engine"));
        snprintf(r->engine_label, sizeof(r->engine_label), "%s", v ? v : "");
    }
    snprintf(r->why, sizeof(r->why), "%s", why ? why : "");
}

struct list_result {
    bool done;
    int status;
    json_t *list; /* a copy */
    char why[2048];
};

static void list_cb(int status, json_t *list, const char *why, void *arg)
{
    struct list_result *r = arg;
    r->done = true;
    r->status = status;
    r->list = list ? json_deep_copy(list) : NULL;
    snprintf(r->why, sizeof(r->why), "%s", why ? why : "");
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    char conf[512];
    snprintf(conf, sizeof(conf), "%s/tests/containers.conf", source_dir());
    setenv("CONTAINERS_CONF", conf, 1);
    if (uv_loop_init(&f->loop) != 0)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/arun-test-container.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->run_label, sizeof(f->run_label), "arun.test.run=%d", (int)getpid());
    *state = f;
    return 0;
}

/* Removes the fake CLIs' directory (flat: scripts only). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(path);
    }
    if (d != NULL)
        closedir(d);
    if (rmdir(dir) != 0)
        print_message("teardown: could not remove %s: %s\n", dir, strerror(errno));
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[512];
    if (have_podman()) {
        snprintf(cmd, sizeof(cmd),
                 "podman ps -aq --filter label=%s | xargs -r podman rm -f >/dev/null 2>&1",
                 f->run_label);
        if (system(cmd) != 0)
            print_message("teardown: could not remove the containers labelled %s\n", f->run_label);
    }
    /* After a failed assertion the loop may hold handles whose memory was the test's stack:
     * running it would touch them, so it is only closed when idle (a skipped test). */
    if (!f->loop_closed && uv_loop_close(&f->loop) != 0)
        print_message("teardown: the failed test left handles on its loop\n");
    remove_dir(f->dir);
    free(f);
    return 0;
}

/* ---- detection ---- */

static void test_detect_finds_podman_and_names_it(void **state)
{
    struct fixture *f = *state;
    NEED_PODMAN();
    struct detect_result r = {0};
    uint64_t t0 = clock_mono_ms();
    detect_with_path(f, NULL, "auto", &r);
    print_message("detection took %llu ms\n", (unsigned long long)(clock_mono_ms() - t0));
    assert_int_equal(r.status, 0);
    assert_non_null(r.rt);
    assert_string_equal(container_rt_kind(r.rt) == CONTAINER_PODMAN ? "podman" : "docker",
                        "podman");
    assert_true(strncmp(container_rt_name(r.rt), "podman ", 7) == 0);
    assert_true(strcmp(container_rt_name(r.rt), "podman unknown") != 0);
    container_rt_free(r.rt);
    close_loop(f);
}

static void test_detect_without_cli_is_enoent(void **state)
{
    struct fixture *f = *state;
    struct detect_result r = {0};
    detect_with_path(f, f->dir, "auto", &r);
    assert_int_equal(r.status, -ENOENT);
    assert_null(r.rt);
    assert_non_null(strstr(r.why, "no podman or docker found on PATH"));
    assert_non_null(strstr(r.why, f->dir));
    close_loop(f);
}

#define FAKE_PODMAN_VERSION "version) echo '{\"Client\":{\"Version\":\"4.3.1\"}}';;"

static void test_detect_explains_ulimit_failure(void **state)
{
    struct fixture *f = *state;
    write_script(f, "podman",
                 "case \"$1\" in " FAKE_PODMAN_VERSION " run) echo 'Error: runc: runc create "
                 "failed: unable to start container process: error during container init: error "
                 "setting rlimits for ready process: error setting rlimit type 7: operation not "
                 "permitted: OCI permission denied' >&2; exit 126;; esac");
    struct detect_result r = {0};
    detect_with_path(f, f->dir, "podman", &r);
    assert_int_equal(r.status, -EIO);
    assert_null(r.rt);
    assert_non_null(strstr(r.why, "error setting rlimit"));
    assert_non_null(strstr(r.why, "lower default_ulimits in containers.conf"));
    close_loop(f);
}

static void test_detect_explains_crun_on_hybrid_cgroups(void **state)
{
    struct fixture *f = *state;
    write_script(f, "podman",
                 "case \"$1\" in " FAKE_PODMAN_VERSION " run) echo 'Error: OCI runtime error: "
                 "crun: cgroups in hybrid mode not supported, drop all controllers from "
                 "cgroupv2' >&2; exit 126;; esac");
    struct detect_result r = {0};
    detect_with_path(f, f->dir, "auto", &r);
    assert_int_equal(r.status, -EIO);
    assert_non_null(strstr(r.why, "set runtime = \"runc\""));
    assert_non_null(strstr(r.why, "CONTAINERS_CONF"));
    close_loop(f);
}

static void test_detect_auto_falls_back_to_docker(void **state)
{
    struct fixture *f = *state;
    write_script(f, "podman", "echo 'Error: cannot connect to anything' >&2; exit 125");
    write_script(f, "docker", "echo '{\"Client\":{\"Version\":\"28.2.2\"},\"Server\":{}}'");
    struct detect_result r = {0};
    detect_with_path(f, f->dir, "auto", &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(container_rt_name(r.rt), "docker 28.2.2");
    container_rt_free(r.rt);
    close_loop(f);
}

static void test_detect_docker_without_daemon_explains(void **state)
{
    struct fixture *f = *state;
    write_script(f, "docker",
                 "echo '{\"Client\":{\"Version\":\"28.2.2\"},\"Server\":null}'; echo 'Cannot "
                 "connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
                 "daemon running?' >&2; exit 1");
    struct detect_result r = {0};
    detect_with_path(f, f->dir, "docker", &r);
    assert_int_equal(r.status, -EIO);
    assert_non_null(strstr(r.why, "docker version: Cannot connect to the Docker daemon"));
    assert_non_null(strstr(r.why, "start the Docker daemon"));
    close_loop(f);
}

static void test_detect_rejects_unknown_preference(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(container_detect(&f->loop, "lxc", detect_cb, NULL), -EINVAL);
    close_loop(f);
}

/* ---- calls through a fake CLI ---- */

static void test_call_timeout_kills_cli(void **state)
{
    struct fixture *f = *state;
    write_script(f, "podman", "exec /bin/sleep 30");
    struct container_rt *rt = fake_rt(f, "podman", CONTAINER_PODMAN);
    container_rt_set_timeout_ms(rt, 300);
    struct result r = {0};
    uint64_t t0 = clock_mono_ms();
    assert_int_equal(container_rm(rt, "arun-x", done_cb, &r), 0);
    assert_true(run_until(&f->loop, &r.done, WAIT_MS));
    uint64_t took = clock_mono_ms() - t0;
    assert_int_equal(r.status, -ETIMEDOUT);
    assert_non_null(strstr(r.why, "podman rm arun-x: no answer within 300 ms"));
    assert_in_range(took, 250, 3000); /* the loop's cached time may lag the clock a little */
    container_rt_free(rt);
    close_loop(f);
}

static void test_freeing_rt_cancels_calls(void **state)
{
    struct fixture *f = *state;
    write_script(f, "podman", "exec /bin/sleep 30");
    struct container_rt *rt = fake_rt(f, "podman", CONTAINER_PODMAN);
    struct result r = {0};
    assert_int_equal(container_stop(rt, "arun-x", 10, done_cb, &r), 0);
    container_rt_free(rt);
    assert_true(run_until(&f->loop, &r.done, WAIT_MS));
    assert_int_equal(r.status, -ECANCELED);
    close_loop(f);
}

static const char *const run_args[] = {"/arun-mock-engine", "--port", "8000"};
static const char *const run_labels[] = {"arun.engine=mock", "arun.test=1"};
static const struct config_kv run_env[] = {{.key = "A", .value = "1 2"}};

static void run_echo(struct fixture *f, enum container_kind kind, struct container_spec *s,
                     struct result *r)
{
    write_script(f, "cli", "printf '%s\\n' \"$@\"");
    struct container_rt *rt = fake_rt(f, "cli", kind);
    assert_int_equal(container_run(rt, s, done_cb, r), 0);
    assert_true(run_until(&f->loop, &r->done, WAIT_MS));
    assert_int_equal(r->status, 0);
    container_rt_free(rt);
}

static void test_run_builds_the_cli_arguments(void **state)
{
    struct fixture *f = *state;
    struct container_spec s = {.name = "arun-mock",
                               .image = "localhost/mock:1",
                               .args = run_args,
                               .nargs = 3,
                               .env = run_env,
                               .nenv = 1,
                               .labels = run_labels,
                               .nlabels = 2,
                               .host_port = 41001,
                               .container_port = 8000,
                               .memory_mb = 512,
                               .gpus = true,
                               .pull = "never"};
    struct result r = {0};
    run_echo(f, CONTAINER_PODMAN, &s, &r);
    assert_string_equal(r.out, "run\n-d\n--name=arun-mock\n--label=arun.engine=mock\n"
                               "--label=arun.test=1\n--publish=127.0.0.1:41001:8000\n"
                               "--env=A=1 2\n--memory=512m\n--device=nvidia.com/gpu=all\n"
                               "--pull=never\nlocalhost/mock:1\n/arun-mock-engine\n--port\n8000");
    struct container_spec d = {.name = "arun-mock",
                               .image = "img",
                               .host_network = true,
                               .host_port = 41001,
                               .gpus = true};
    memset(&r, 0, sizeof(r));
    run_echo(f, CONTAINER_DOCKER, &d, &r);
    assert_string_equal(r.out, "run\n-d\n--name=arun-mock\n--network=host\n--gpus=all\nimg");
    close_loop(f);
}

static void test_bad_arguments_are_rejected(void **state)
{
    struct fixture *f = *state;
    struct container_rt *rt = fake_rt(f, "cli", CONTAINER_PODMAN);
    assert_int_equal(container_rm(rt, "-a", done_cb, NULL), -EINVAL);
    assert_int_equal(container_stop(rt, "", 1, done_cb, NULL), -EINVAL);
    assert_int_equal(container_inspect(rt, "a b", inspect_cb, NULL), -EINVAL);
    assert_int_equal(container_list(rt, "", list_cb, NULL), -EINVAL);
    struct container_spec s = {.name = "ok", .image = "--privileged"};
    assert_int_equal(container_run(rt, &s, done_cb, NULL), -EINVAL);
    s = (struct container_spec){.name = "ok", .image = "img", .host_port = 41000};
    assert_int_equal(container_run(rt, &s, done_cb, NULL), -EINVAL);
    s = (struct container_spec){.name = "ok", .image = "img", .pull = "sometimes"};
    assert_int_equal(container_run(rt, &s, done_cb, NULL), -EINVAL);
    assert_false(container_name_valid("_x"));
    assert_true(container_name_valid("arun-qwen.7b_1"));
    container_rt_free(rt);
    close_loop(f);
}

static void test_list_reads_docker_json_lines(void **state)
{
    struct fixture *f = *state;
    write_script(f, "docker",
                 "echo '{\"ID\":\"abc\",\"Names\":\"arun-a\",\"State\":\"running\",\"Labels\":"
                 "\"arun.engine=a,arun.test=1\"}'; echo '{\"ID\":\"def\",\"Names\":\"arun-b,x\","
                 "\"State\":\"exited\",\"Labels\":\"\"}'");
    struct container_rt *rt = fake_rt(f, "docker", CONTAINER_DOCKER);
    struct list_result r = {0};
    assert_int_equal(container_list(rt, "arun.test=1", list_cb, &r), 0);
    assert_true(run_until(&f->loop, &r.done, WAIT_MS));
    assert_int_equal(r.status, 0);
    char *s = json_dumps(r.list, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s,
                        "[{\"id\":\"abc\",\"labels\":{\"arun.engine\":\"a\",\"arun.test\":\"1\"},"
                        "\"name\":\"arun-a\",\"state\":\"running\"},{\"id\":\"def\","
                        "\"labels\":{},\"name\":\"arun-b\",\"state\":\"exited\"}]");
    free(s);
    json_decref(r.list);
    container_rt_free(rt);
    close_loop(f);
}

static void test_output_past_the_cap_is_an_error(void **state)
{
    struct fixture *f = *state;
    write_script(f, "podman", "printf '[' ; head -c 2000000 /dev/zero | tr '\\0' ' '; echo ']'");
    struct container_rt *rt = fake_rt(f, "podman", CONTAINER_PODMAN);
    struct list_result r = {0};
    assert_int_equal(container_list(rt, "arun.test=1", list_cb, &r), 0);
    assert_true(run_until(&f->loop, &r.done, WAIT_MS));
    assert_int_equal(r.status, -EIO);
    assert_non_null(strstr(r.why, "cut at the output cap"));
    container_rt_free(rt);
    close_loop(f);
}

struct follow_result {
    struct buf text;
    bool seen, exited;
    const char *want;
};

static void follow_output_cb(int stream, const char *p, size_t n, void *arg)
{
    struct follow_result *r = arg;
    IGNORE_RESULT(buf_append(&r->text, p, n)); /* the cap only bounds a chatty container */
    if (strstr(buf_cstr(&r->text), r->want) != NULL)
        r->seen = true;
}

static void follow_exit_cb(int status, void *arg)
{
    struct follow_result *r = arg;
    r->exited = true;
}

static void test_follow_stop_kills_the_follower(void **state)
{
    struct fixture *f = *state;
    write_script(f, "podman", "echo \"args: $*\"; exec /bin/sleep 30");
    struct container_rt *rt = fake_rt(f, "podman", CONTAINER_PODMAN);
    struct follow_result r = {.want = "args: logs -f --since=10m arun-x"};
    buf_init(&r.text, 65536);
    struct container_follow *fl = NULL;
    assert_int_equal(
        container_logs_follow_since(rt, "arun-x", "10m", follow_output_cb, follow_exit_cb, &r, &fl),
        0);
    assert_true(run_until(&f->loop, &r.seen, WAIT_MS));
    container_follow_stop(fl);
    container_rt_free(rt);
    close_loop(f);
    assert_false(r.exited);
    buf_cleanup(&r.text);
}

/* ---- with podman ---- */

static char image[160];

/* Builds (or finds up to date) the mock engine's image for this build directory. */
static void ensure_image(void)
{
    static bool built;
    if (built)
        return;
    const char *b = build_dir();
    const char *base = strrchr(b, '/') ? strrchr(b, '/') + 1 : b;
    size_t n = snprintf(image, sizeof(image), "localhost/arun-test-mock:");
    for (; *base != '\0' && n + 1 < sizeof(image); base++) {
        char ch = (char)(*base >= 'A' && *base <= 'Z' ? *base + 32 : *base);
        image[n++] = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ? ch : '_';
    }
    image[n] = '\0';
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s/scripts/mock-image.sh' '%s' '%s' 2>&1", source_dir(), image, b);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    struct buf out;
    buf_init(&out, 65536);
    char line[1024];
    while (fgets(line, sizeof(line), p) != NULL)
        IGNORE_RESULT(buf_puts(&out, line)); /* what does not fit is not needed to see why */
    int rc = pclose(p);
    if (rc != 0)
        fail_msg("scripts/mock-image.sh failed (status %d):\n%s", rc, buf_cstr(&out));
    buf_cleanup(&out);
    built = true;
}

static void test_mock_image_builds(void **state)
{
    struct fixture *f = *state;
    NEED_PODMAN();
    uint64_t t0 = clock_mono_ms();
    ensure_image();
    print_message("%s ready in %llu ms\n", image, (unsigned long long)(clock_mono_ms() - t0));
    close_loop(f);
}

static struct container_rt *podman_rt(struct fixture *f)
{
    char *path = manifest_which("podman");
    assert_non_null(path);
    struct container_rt *rt = container_rt_new(&f->loop, path, CONTAINER_PODMAN, NULL);
    free(path);
    return rt;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

struct health {
    uint16_t port;
    bool ok;
    char last[128]; /* what the last attempt saw, for the failure message */
};

/* One blocking GET /health with a short timeout: the test's own client, not arun's. */
static void health_cb(uv_timer_t *t)
{
    struct health *h = t->data;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    /* Short timeouts: a lost SYN would otherwise wait for the kernel's retransmits (1, 3, 7 s)
     * while a fresh attempt 50 ms later may get through. */
    struct timeval ctv = {.tv_usec = 250000}, rtv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &ctv, sizeof(ctv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rtv, sizeof(rtv));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(h->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    const char req[] = "GET /health HTTP/1.0\r\nHost: x\r\n\r\n";
    char resp[128] = "";
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        snprintf(h->last, sizeof(h->last), "connect: %s", strerror(errno));
    } else if (write(fd, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1) {
        ssize_t n = read(fd, resp, sizeof(resp) - 1);
        resp[n > 0 ? n : 0] = '\0';
        snprintf(h->last, sizeof(h->last), "%s", n > 0 ? resp : "no answer");
        h->ok = strncmp(resp, "HTTP/1.1 200", 12) == 0 || strncmp(resp, "HTTP/1.0 200", 12) == 0;
    }
    close(fd);
    if (h->ok)
        uv_timer_stop(t);
}

static void wait_healthy(struct fixture *f, uint16_t port)
{
    struct health h = {.port = port};
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    t.data = &h;
    uv_timer_start(&t, health_cb, 0, 50);
    bool ok = run_until(&f->loop, &h.ok, 15000);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (!ok)
        fail_msg("GET /health on port %u never answered 200; last: %s", port, h.last);
}

static void test_mock_engine_runs_as_a_container(void **state)
{
    struct fixture *f = *state;
    NEED_PODMAN();
    ensure_image();
    struct container_rt *rt = podman_rt(f);
    char name[64];
    snprintf(name, sizeof(name), "arun-test-mock-%d", (int)getpid());
    const char *args[] = {"/arun-mock-engine", "--host", "0.0.0.0", "--port", "8000"};
    const char *labels[] = {"arun.test=1", f->run_label, "arun.engine=mock"};
    /* The ASan build's mock cannot ptrace itself for leak checks inside a container. */
    const struct config_kv env[] = {{.key = "ASAN_OPTIONS", .value = "detect_leaks=0"}};
    uint16_t port = free_port();
    struct container_spec s = {.name = name,
                               .image = image,
                               .args = args,
                               .nargs = 5,
                               .labels = labels,
                               .nlabels = 3,
                               .env = env,
                               .nenv = 1,
                               .host_port = port,
                               .container_port = 8000,
                               .memory_mb = 256,
                               .pull = "never"};
    struct result r = {0};
    uint64_t t0 = clock_mono_ms();
    assert_int_equal(container_run(rt, &s, done_cb, &r), 0);
    assert_true(run_until(&f->loop, &r.done, WAIT_MS));
    if (r.status != 0)
        fail_msg("run: %d %s", r.status, r.why);
    assert_int_equal(strlen(r.out), 64); /* the full container id */
    uint64_t t_run = clock_mono_ms();
    wait_healthy(f, port);
    uint64_t t_healthy = clock_mono_ms();
    print_message("run returned after %llu ms; healthy %llu ms after the start\n",
                  (unsigned long long)(t_run - t0), (unsigned long long)(t_healthy - t0));

    struct state_result st = {0};
    assert_int_equal(container_inspect(rt, name, inspect_cb, &st), 0);
    assert_true(run_until(&f->loop, &st.done, WAIT_MS));
    assert_int_equal(st.status, 0);
    assert_string_equal(st.st.status, "running");
    assert_true(st.st.running);
    assert_true(st.st.pid > 1);
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/%d", (int)st.st.pid);
    assert_int_equal(access(proc, F_OK), 0); /* a host pid */
    assert_string_equal(st.st.id, r.out);
    assert_string_equal(st.engine_label, "mock");
    assert_true(st.st.started_at[0] != '\0');

    struct list_result l = {0};
    assert_int_equal(container_list(rt, f->run_label, list_cb, &l), 0);
    assert_true(run_until(&f->loop, &l.done, WAIT_MS));
    assert_int_equal(l.status, 0);
    assert_int_equal(json_array_size(l.list), 1);
    json_t *e = json_array_get(l.list, 0);
    assert_string_equal(json_string_value(json_object_get(e, "name")), name);
    assert_string_equal(json_string_value(json_object_get(e, "state")), "running");
    assert_string_equal(json_string_value(json_object_get(e, "id")), r.out);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(e, "labels"), "arun.engine")), "mock");
    json_decref(l.list);

    struct follow_result fr = {.want = "listening on http://0.0.0.0:8000"};
    buf_init(&fr.text, 65536);
    struct container_follow *fl = NULL;
    assert_int_equal(container_logs_follow(rt, name, follow_output_cb, follow_exit_cb, &fr, &fl),
                     0);
    if (!run_until(&f->loop, &fr.seen, WAIT_MS))
        fail_msg("no listening line in the logs; got: %s", buf_cstr(&fr.text));
    container_follow_stop(fl);
    buf_cleanup(&fr.text);

    memset(&r, 0, sizeof(r));
    uint64_t t_stop = clock_mono_ms();
    assert_int_equal(container_stop(rt, name, 5, done_cb, &r), 0);
    assert_true(run_until(&f->loop, &r.done, WAIT_MS));
    assert_int_equal(r.status, 0);
    print_message("stop took %llu ms\n", (unsigned long long)(clock_mono_ms() - t_stop));

    memset(&st, 0, sizeof(st));
    assert_int_equal(container_inspect(rt, name, inspect_cb, &st), 0);
    assert_true(run_until(&f->loop, &st.done, WAIT_MS));
    assert_int_equal(st.status, 0);
    assert_false(st.st.running);
    assert_string_equal(st.st.status, "exited");
    assert_int_equal(st.st.exit_code, 0); /* the mock exits 0 on SIGTERM */

    memset(&r, 0, sizeof(r));
    assert_int_equal(container_rm(rt, name, done_cb, &r), 0);
    assert_true(run_until(&f->loop, &r.done, WAIT_MS));
    assert_int_equal(r.status, 0);

    memset(&l, 0, sizeof(l));
    assert_int_equal(container_list(rt, f->run_label, list_cb, &l), 0);
    assert_true(run_until(&f->loop, &l.done, WAIT_MS));
    assert_int_equal(l.status, 0);
    assert_int_equal(json_array_size(l.list), 0);
    json_decref(l.list);

    container_rt_free(rt);
    close_loop(f);
}

static void test_run_with_missing_image_names_it(void **state)
{
    struct fixture *f = *state;
    NEED_PODMAN();
    struct container_rt *rt = podman_rt(f);
    const char *labels[] = {"arun.test=1", f->run_label};
    struct container_spec s = {.name = "arun-test-missing",
                               .image = "localhost/arun-test-no-such-image:1",
                               .labels = labels,
                               .nlabels = 2,
                               .pull = "never"};
    struct result r = {0};
    assert_int_equal(container_run(rt, &s, done_cb, &r), 0);
    assert_true(run_until(&f->loop, &r.done, WAIT_MS));
    assert_int_equal(r.status, -ENOENT);
    assert_non_null(strstr(r.why, "localhost/arun-test-no-such-image:1"));
    print_message("why: %s\n", r.why);
    container_rt_free(rt);
    close_loop(f);
}

static void test_inspect_of_missing_container_is_enoent(void **state)
{
    struct fixture *f = *state;
    NEED_PODMAN();
    struct container_rt *rt = podman_rt(f);
    struct state_result st = {0};
    assert_int_equal(container_inspect(rt, "arun-test-no-such-container", inspect_cb, &st), 0);
    assert_true(run_until(&f->loop, &st.done, WAIT_MS));
    assert_int_equal(st.status, -ENOENT);
    assert_non_null(strstr(st.why, "arun-test-no-such-container"));
    struct result r = {0};
    assert_int_equal(container_stop(rt, "arun-test-no-such-container", 1, done_cb, &r), 0);
    assert_true(run_until(&f->loop, &r.done, WAIT_MS));
    assert_int_equal(r.status, -ENOENT);
    memset(&r, 0, sizeof(r));
    assert_int_equal(container_rm(rt, "arun-test-no-such-container", done_cb, &r), 0);
    assert_true(run_until(&f->loop, &r.done, WAIT_MS));
    assert_int_equal(r.status, 0); /* rm of a missing container is success */
    container_rt_free(rt);
    close_loop(f);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_detect_finds_podman_and_names_it),
        T(test_detect_without_cli_is_enoent),
        T(test_detect_explains_ulimit_failure),
        T(test_detect_explains_crun_on_hybrid_cgroups),
        T(test_detect_auto_falls_back_to_docker),
        T(test_detect_docker_without_daemon_explains),
        T(test_detect_rejects_unknown_preference),
        T(test_call_timeout_kills_cli),
        T(test_freeing_rt_cancels_calls),
        T(test_run_builds_the_cli_arguments),
        T(test_bad_arguments_are_rejected),
        T(test_list_reads_docker_json_lines),
        T(test_output_past_the_cap_is_an_error),
        T(test_follow_stop_kills_the_follower),
        T(test_mock_image_builds),
        T(test_mock_engine_runs_as_a_container),
        T(test_run_with_missing_image_names_it),
        T(test_inspect_of_missing_container_is_enoent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
