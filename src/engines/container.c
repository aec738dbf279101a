/*
 * container.c: podman and docker driven through their command-line client. See container.h.
 *
 * It owns the CLI children it spawns and nothing else: no container state is cached here, every
 * question (is it running, what is its pid) is asked of the CLI again. It promises that each call
 * ends exactly once (done, failed, timed out or cancelled) and that its handles are closed before
 * its memory is freed. It does not pick container names, remove leftovers or retry: that is the
 * supervisor's policy.
 *
 * DESIGN
 * One struct call per CLI child: the process, a pipe for stdout and one for stderr, one timer.
 * A call is complete when the child has exited AND both pipes reached EOF, so no output written
 * just before exit is lost. The timer serves twice: before exit it is the call's timeout (SIGKILL
 * the child, report -ETIMEDOUT once it is reaped); after exit it bounds the wait for EOF, since a
 * descendant of the CLI may have inherited the pipes and keep them open. Completion runs the
 * call's kind-specific finisher (plain, inspect, list, follow, detection steps), which calls the
 * user's callback, and only then are the handles closed; the last close callback frees the call.
 *
 * The rt keeps a list of its calls in flight so that container_rt_free can cancel them: it kills
 * their children and detaches them from the rt; they complete later with -ECANCELED. A call
 * never touches its rt after starting except to unlink itself, so callbacks may free the rt.
 *
 * Errors for people are built from the CLI's last "Error: …" line, prefixed with what was being
 * done ("podman run IMAGE") and followed by what to change when the cause is one these hosts are
 * known to hit (a table, hint_for()).
 */
#include "engines/container.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>

#include <h2o/linklist.h>
#include <h2o/memory.h> /* H2O_STRUCT_FROM_MEMBER */

#include "core/buf.h"
#include "core/log.h"
#include "engines/manifest.h"

#define MOD "container"
/* Once the CLI has exited, how long to wait for EOF on its pipes: a descendant that inherited
 * them (a daemonised helper) would otherwise hold the call open forever. */
#define DRAIN_MS 500
/* Bytes of the CLI's error line quoted in a `why`. */
#define WHY_LINE_MAX 400
/* Bytes of a call's subject ("podman run IMAGE") kept: an image name from the config can be any
 * length, and with WHY_LINE_MAX and a hint this keeps every `why` under its 4 KiB buffer. */
#define WHAT_MAX 1024
#define NAME_MAX_LEN 128 /* docker's and podman's limit on a container name */

struct call;
/* Completes a call: turns its outcome into the user's callback. why is NULL when status is 0. */
typedef void (*finish_fn)(struct call *c, int status, const char *why);

struct call {
    uv_process_t proc;
    uv_pipe_t pipes[2]; /* the child's stdout, stderr */
    uv_timer_t timer;   /* timeout before exit, EOF wait after */
    uv_loop_t *loop;
    struct container_rt *rt;       /* NULL once detached (cancelled or done) */
    h2o_linklist_t link;           /* in rt->calls while attached */
    enum container_kind kind;      /* copied: the rt may be gone when the call ends */
    char *what;                    /* "podman run IMAGE": the subject of a `why` */
    struct buf out[2];             /* captured stdout, stderr (capped) */
    bool truncated;                /* some output went past CONTAINER_OUTPUT_CAP */
    container_output_cb on_output; /* set: stream output to it instead of capturing */
    finish_fn finish;              /* kind-specific completion */
    union {
        container_done_cb done;
        container_inspect_cb inspect;
        container_list_cb list;
        container_exit_cb exit;
        void *detect; /* struct detect *, for the detection steps */
    } cb;
    void *arg;
    uint32_t timeout_ms; /* 0 = none (a log follower) */
    bool rm_missing_ok;  /* container_rm: no such container is success */
    unsigned open_handles;
    bool exited, eof[2], timed_out, cancelled, silent, finished;
    int64_t exit_status;
    int term_signal;
    char scratch[16384]; /* read buffer, used by one read at a time */
};

struct container_follow {
    struct call call; /* first: a follower is a call that streams its output */
};

struct container_rt {
    uv_loop_t *loop;
    char *path;
    enum container_kind kind;
    char name[64]; /* "podman 4.3.1" */
    uint32_t timeout_ms;
    h2o_linklist_t calls; /* call.link: in flight */
};

static const char *kind_name(enum container_kind k)
{
    return k == CONTAINER_PODMAN ? "podman" : "docker";
}

/* ---- argv ---- */

struct argv {
    char **v; /* NULL-terminated */
    size_t n, cap;
};

static void argv_add(struct argv *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 32;
        a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
    }
    a->v[a->n++] = xstrdup(s);
    a->v[a->n] = NULL;
}

static void argv_addf(struct argv *a, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void argv_addf(struct argv *a, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    ASSERT(n >= 0);
    argv_add(a, s);
    free(s);
}

static void argv_free(struct argv *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
}

/* ---- rt ---- */

struct container_rt *container_rt_new(uv_loop_t *loop, const char *path, enum container_kind kind,
                                      const char *version)
{
    struct container_rt *rt = xcalloc(1, sizeof(*rt));
    h2o_linklist_init_anchor(&rt->calls);
    rt->loop = loop;
    rt->path = xstrdup(path);
    rt->kind = kind;
    rt->timeout_ms = CONTAINER_CALL_TIMEOUT_MS;
    snprintf(rt->name, sizeof(rt->name), "%s %s", kind_name(kind), version ? version : "unknown");
    return rt;
}

static void call_unlink(struct call *c)
{
    if (c->rt == NULL)
        return;
    h2o_linklist_unlink(&c->link);
    c->rt = NULL;
}

void container_rt_free(struct container_rt *rt)
{
    if (rt == NULL)
        return;
    while (!h2o_linklist_is_empty(&rt->calls)) {
        struct call *c = H2O_STRUCT_FROM_MEMBER(struct call, link, rt->calls.next);
        call_unlink(c);
        c->cancelled = true;
        if (!c->exited)
            (void)uv_process_kill(&c->proc, SIGKILL);
    }
    free(rt->path);
    free(rt);
}

const char *container_rt_name(const struct container_rt *rt)
{
    return rt->name;
}

enum container_kind container_rt_kind(const struct container_rt *rt)
{
    return rt->kind;
}

const char *container_rt_path(const struct container_rt *rt)
{
    return rt->path;
}

void container_rt_set_timeout_ms(struct container_rt *rt, uint32_t timeout_ms)
{
    rt->timeout_ms = timeout_ms ? timeout_ms : CONTAINER_CALL_TIMEOUT_MS;
}

bool container_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || (ch != '_' && ch != '.' && ch != '-')))
            return false;
    }
    return true;
}

/* ---- errors for people ---- */

#define HINT_ULIMITS                                                                               \
    "the default ulimits exceed what this host allows: lower default_ulimits in containers.conf "  \
    "(CONTAINERS_CONF), e.g. [\"nofile=20000:20000\"]"
/* Known causes and what to change, matched against the CLI's stderr. */
static const struct {
    const char *needle;
    const char *hint;
} hints[] = {
    {"hybrid mode",
     "the OCI runtime crun does not support this host's hybrid cgroups: set runtime = \"runc\" "
     "in the [engine] table of containers.conf (CONTAINERS_CONF)"},
    {"RLIMIT_NOFILE", HINT_ULIMITS},        /* crun's wording */
    {"error setting rlimit", HINT_ULIMITS}, /* runc's */
    {"Cannot connect to the Docker daemon",
     "start the Docker daemon (dockerd), or use podman (runtime.container_cli: podman)"},
    {"permission denied while trying to connect to the Docker daemon",
     "give arun's user access to the Docker socket (the docker group), or use podman"},
    {"CDI device", "generate the NVIDIA CDI spec (nvidia-ctk cdi generate "
                   "--output=/etc/cdi/nvidia.yaml) so that podman can give containers the GPUs"},
    {"capabilities: [[gpu]]",
     "install the NVIDIA Container Toolkit and restart dockerd so that docker can give "
     "containers the GPUs"},
    {"address already in use", "another process holds the host port: pick another port"},
};

static const char *hint_for(const char *err)
{
    for (size_t i = 0; i < ARRAY_SIZE(hints); i++)
        if (strstr(err, hints[i].needle) != NULL)
            return hints[i].hint;
    return NULL;
}

/* Does the CLI's stderr say that the container or image does not exist? */
static bool says_missing(const char *err)
{
    static const char *const needles[] = {
        "no such container", "no such object",     "image not known",
        "manifest unknown",  "pull access denied", "repository does not exist",
        "no such image",
    };
    for (size_t i = 0; i < ARRAY_SIZE(needles); i++)
        if (strcasestr(err, needles[i]) != NULL)
            return true;
    return false;
}

static void strip_prefix(const char **p, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(*p, prefix, n) == 0)
        *p += n;
}

/* The line of text (stderr, else stdout) that says what went wrong: the last one starting with
 * "Error" (podman and docker end with it, after warnings and retries), else the last non-empty
 * one. Appends it to b without its "Error: " / "docker: " prefixes. */
static void append_error_line(struct buf *b, const char *text)
{
    const char *best = NULL, *last = NULL;
    size_t best_n = 0, last_n = 0;
    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        const char *s = p;
        strip_prefix(&s, "docker: ");
        if (n > 0 && strncmp(s, "Error", 5) == 0) {
            best = s;
            best_n = n - (size_t)(s - p);
        }
        if (n > 0) {
            last = p;
            last_n = n;
        }
        p = nl ? nl + 1 : p + n;
    }
    if (best == NULL) {
        best = last;
        best_n = last_n;
    }
    const char *s = best;
    strip_prefix(&s, "Error: ");
    strip_prefix(&s, "Error response from daemon: ");
    best_n -= (size_t)(s - best);
    while (best_n > 0 && (s[best_n - 1] == '\r' || s[best_n - 1] == ' '))
        best_n--;
    buf_printf(b, "%.*s%s", (int)(best_n > WHY_LINE_MAX ? WHY_LINE_MAX : best_n), s,
               best_n > WHY_LINE_MAX ? "…" : "");
}

/* The outcome of a finished call as status and sentence (written to why, empty on success). */
static int call_outcome(struct call *c, struct buf *why)
{
    const char *err = buf_cstr(&c->out[1]);
    if (c->cancelled) {
        buf_printf(why, "%s: cancelled (the container runtime was shut down)", c->what);
        return -ECANCELED;
    }
    if (c->timed_out) {
        buf_printf(why, "%s: no answer within %u ms; killed it", c->what, c->timeout_ms);
        return -ETIMEDOUT;
    }
    if (c->term_signal != 0) {
        buf_printf(why, "%s: killed by signal %d", c->what, c->term_signal);
        return -EIO;
    }
    if (c->exit_status == 0)
        return 0;
    buf_printf(why, "%s: ", c->what);
    if (*err != '\0' || c->out[0].len > 0)
        append_error_line(why, *err != '\0' ? err : buf_cstr(&c->out[0]));
    else
        buf_printf(why, "exit status %lld", (long long)c->exit_status);
    const char *hint = hint_for(err);
    if (hint != NULL)
        buf_printf(why, "; %s", hint);
    return says_missing(err) ? -ENOENT : -EIO;
}

/* ---- the child ---- */

static void call_close_cb(uv_handle_t *h)
{
    struct call *c = h->data;
    ASSERT(c->open_handles > 0);
    if (--c->open_handles > 0)
        return;
    buf_cleanup(&c->out[0]);
    buf_cleanup(&c->out[1]);
    free(c->what);
    free(c);
}

static void call_close(struct call *c)
{
    uv_close((uv_handle_t *)&c->proc, call_close_cb);
    uv_close((uv_handle_t *)&c->pipes[0], call_close_cb);
    uv_close((uv_handle_t *)&c->pipes[1], call_close_cb);
    uv_close((uv_handle_t *)&c->timer, call_close_cb);
}

/* Runs once, after the child was reaped and its pipes drained (or given up on). */
static void call_complete(struct call *c)
{
    if (c->finished)
        return;
    c->finished = true;
    uv_timer_stop(&c->timer);
    uv_read_stop((uv_stream_t *)&c->pipes[0]);
    uv_read_stop((uv_stream_t *)&c->pipes[1]);
    call_unlink(c);
    struct buf why;
    buf_init(&why, 4096);
    int status = call_outcome(c, &why);
    if (status != 0)
        log_debug(MOD, "%s", buf_cstr(&why));
    if (!c->silent)
        c->finish(c, status, status != 0 ? buf_cstr(&why) : NULL);
    buf_cleanup(&why);
    call_close(c);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct call *c = h->data;
    *b = uv_buf_init(c->scratch, sizeof(c->scratch));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct call *c = s->data;
    int i = s == (uv_stream_t *)&c->pipes[0] ? 0 : 1;
    if (nread > 0) {
        if (c->on_output != NULL) {
            if (!c->silent)
                c->on_output(i + 1, b->base, (size_t)nread, c->arg);
        } else if (c->truncated || buf_append(&c->out[i], b->base, (size_t)nread) != 0) {
            c->truncated = true; /* keep draining, so the CLI never blocks on a full pipe */
        }
        return;
    }
    if (nread == 0)
        return;
    /* EOF or a read error: either way nothing more comes from this pipe. */
    uv_read_stop(s);
    c->eof[i] = true;
    if (c->exited && c->eof[0] && c->eof[1])
        call_complete(c);
}

static void timer_cb(uv_timer_t *t)
{
    struct call *c = t->data;
    if (c->exited) {
        call_complete(c); /* EOF did not come within DRAIN_MS: a descendant holds the pipes */
        return;
    }
    log_warn(MOD, "%s: no answer within %u ms; killing it", c->what, c->timeout_ms);
    c->timed_out = true;
    (void)uv_process_kill(&c->proc, SIGKILL);
}

static void exit_cb(uv_process_t *p, int64_t exit_status, int term_signal)
{
    struct call *c = p->data;
    c->exited = true;
    c->exit_status = exit_status;
    c->term_signal = term_signal;
    if (c->eof[0] && c->eof[1]) {
        call_complete(c);
        return;
    }
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, timer_cb, DRAIN_MS, 0);
}

/* Allocates a call of `size` bytes (a struct call or a struct that starts with one). */
static struct call *call_new(struct container_rt *rt, size_t size, const char *what,
                             finish_fn finish, void *arg)
{
    struct call *c = xcalloc(1, size);
    c->loop = rt->loop;
    c->kind = rt->kind;
    c->what = strlen(what) > WHAT_MAX ? xasprintf("%.*s…", WHAT_MAX, what) : xstrdup(what);
    c->finish = finish;
    c->arg = arg;
    c->timeout_ms = rt->timeout_ms;
    buf_init(&c->out[0], CONTAINER_OUTPUT_CAP);
    buf_init(&c->out[1], CONTAINER_OUTPUT_CAP);
    return c;
}

/* Spawns rt->path with argv a (a->v[0] is "podman" or "docker", as a shell would give it) for c
 * and links c into rt. On failure the call is freed (its callback is never called) and the spawn
 * error returned. Frees a. */
static int call_start(struct container_rt *rt, struct call *c, struct argv *a)
{
    uv_pipe_init(c->loop, &c->pipes[0], 0);
    uv_pipe_init(c->loop, &c->pipes[1], 0);
    uv_timer_init(c->loop, &c->timer);
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->pipes[0]},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->pipes[1]},
    };
    uv_process_options_t o = {
        .file = rt->path, .args = a->v, .exit_cb = exit_cb, .stdio_count = 3, .stdio = stdio};
    c->proc.data = c->pipes[0].data = c->pipes[1].data = c->timer.data = c;
    c->open_handles = 4;
    int rc = uv_spawn(c->loop, &c->proc, &o);
    argv_free(a);
    if (rc != 0) {
        log_warn_errno(MOD, rc, "%s: cannot start %s", c->what, rt->path);
        c->finished = true;
        call_close(c); /* a failed uv_spawn still initialised the process handle */
        return rc;
    }
    c->rt = rt;
    h2o_linklist_insert(&rt->calls, &c->link);
    for (int i = 0; i < 2; i++) {
        rc = uv_read_start((uv_stream_t *)&c->pipes[i], alloc_cb, read_cb);
        ASSERT(rc == 0); /* a fresh pipe from uv_spawn can always start reading */
    }
    if (c->timeout_ms > 0)
        uv_timer_start(&c->timer, timer_cb, c->timeout_ms, 0);
    log_debug(MOD, "%s: started (pid %d)", c->what, c->proc.pid);
    return 0;
}

/* Trims the captured text in place; "" when nothing was captured. */
static const char *trimmed(struct buf *b)
{
    if (b->len == 0)
        return "";
    char *s = b->data, *e = b->data + b->len;
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t'))
        e--;
    *e = '\0';
    return s;
}

/* ---- run, stop, rm ---- */

static void finish_plain(struct call *c, int status, const char *why)
{
    if (status == -ENOENT && c->rm_missing_ok) {
        status = 0;
        why = NULL;
    }
    c->cb.done(status, trimmed(&c->out[0]), why, c->arg);
}

static int check_spec(const struct container_spec *s)
{
    if (!container_name_valid(s->name) || s->image == NULL || s->image[0] == '\0' ||
        s->image[0] == '-')
        return -EINVAL;
    if (!s->host_network && (s->host_port == 0) != (s->container_port == 0))
        return -EINVAL;
    if (s->pull != NULL && strcmp(s->pull, "missing") != 0 && strcmp(s->pull, "always") != 0 &&
        strcmp(s->pull, "never") != 0)
        return -EINVAL;
    for (size_t i = 0; i < s->nenv; i++)
        if (s->env[i].key == NULL || s->env[i].key[0] == '\0' || strchr(s->env[i].key, '=') ||
            s->env[i].value == NULL)
            return -EINVAL;
    return 0;
}

static void run_argv(enum container_kind kind, const struct container_spec *s, struct argv *a)
{
    argv_add(a, kind_name(kind));
    argv_add(a, "run");
    argv_add(a, "-d");
    argv_addf(a, "--name=%s", s->name);
    for (size_t i = 0; i < s->nlabels; i++)
        argv_addf(a, "--label=%s", s->labels[i]);
    if (s->host_network)
        argv_add(a, "--network=host");
    else if (s->host_port != 0)
        argv_addf(a, "--publish=127.0.0.1:%u:%u", s->host_port, s->container_port);
    for (size_t i = 0; i < s->nenv; i++)
        argv_addf(a, "--env=%s=%s", s->env[i].key, s->env[i].value);
    if (s->memory_mb != 0)
        argv_addf(a, "--memory=%llum", (unsigned long long)s->memory_mb);
    if (s->gpus)
        argv_add(a, kind == CONTAINER_PODMAN ? "--device=nvidia.com/gpu=all" : "--gpus=all");
    if (s->pull != NULL)
        argv_addf(a, "--pull=%s", s->pull);
    for (size_t i = 0; i < s->nextra; i++)
        argv_add(a, s->extra[i]);
    argv_add(a, s->image);
    for (size_t i = 0; i < s->nargs; i++)
        argv_add(a, s->args[i]);
}

int container_run(struct container_rt *rt, const struct container_spec *s, container_done_cb cb,
                  void *arg)
{
    int rc = check_spec(s);
    if (rc != 0)
        return rc;
    struct argv a = {0};
    run_argv(rt->kind, s, &a);
    char *what = xasprintf("%s run %s", kind_name(rt->kind), s->image);
    struct call *c = call_new(rt, sizeof(*c), what, finish_plain, arg);
    free(what);
    c->cb.done = cb;
    c->timeout_ms = s->timeout_ms ? s->timeout_ms : CONTAINER_RUN_TIMEOUT_MS;
    return call_start(rt, c, &a);
}

/* A call of the form `CLI VERB ARGS… NAME`: builds its argv into a and the call itself; the
 * caller sets the callback and starts it. */
static struct call *named_call(struct container_rt *rt, const char *verb, const char *const *args,
                               size_t nargs, const char *name, finish_fn finish, void *arg,
                               struct argv *a)
{
    argv_add(a, kind_name(rt->kind));
    argv_add(a, verb);
    for (size_t i = 0; i < nargs; i++)
        argv_add(a, args[i]);
    argv_add(a, name);
    char *what = xasprintf("%s %s %s", kind_name(rt->kind), verb, name);
    struct call *c = call_new(rt, sizeof(*c), what, finish, arg);
    free(what);
    return c;
}

int container_stop(struct container_rt *rt, const char *name, unsigned timeout_s,
                   container_done_cb cb, void *arg)
{
    if (!container_name_valid(name))
        return -EINVAL;
    char secs[16];
    snprintf(secs, sizeof(secs), "%u", timeout_s);
    const char *args[] = {"-t", secs};
    struct argv a = {0};
    struct call *c = named_call(rt, "stop", args, ARRAY_SIZE(args), name, finish_plain, arg, &a);
    c->cb.done = cb;
    /* The CLI waits timeout_s for the container before SIGKILL; the call must outlast that. */
    c->timeout_ms = (uint32_t)(timeout_s > 3600 ? 3600 : timeout_s) * 1000 + rt->timeout_ms;
    return call_start(rt, c, &a);
}

int container_rm(struct container_rt *rt, const char *name, container_done_cb cb, void *arg)
{
    if (!container_name_valid(name))
        return -EINVAL;
    const char *args[] = {"-f"};
    struct argv a = {0};
    struct call *c = named_call(rt, "rm", args, ARRAY_SIZE(args), name, finish_plain, arg, &a);
    c->cb.done = cb;
    c->rm_missing_ok = true; /* docker's rm -f of a missing name fails; podman's succeeds */
    return call_start(rt, c, &a);
}

/* ---- inspect ---- */

static void copy_str(char *dst, size_t size, json_t *v)
{
    snprintf(dst, size, "%s", json_is_string(v) ? json_string_value(v) : "");
}

/* Fills st from `container inspect` output (a one-element array). Returns 0, -ENOENT for an
 * empty array (docker prints "[]" for a missing name), or -EIO with a sentence in why. On 0,
 * *root holds what st->labels points into; the caller decrefs it. */
static int parse_state(struct call *c, struct container_state *st, json_t **root, struct buf *why)
{
    json_error_t jerr;
    if (c->truncated) {
        buf_printf(why, "%s: output cut at the output cap (%u bytes)", c->what,
                   CONTAINER_OUTPUT_CAP);
        return -EIO;
    }
    json_t *arr = json_loadb(c->out[0].data, c->out[0].len, 0, &jerr);
    json_t *obj = json_array_get(arr, 0);
    json_t *state = json_object_get(obj, "State");
    if (json_is_array(arr) && json_array_size(arr) == 0) {
        json_decref(arr);
        buf_printf(why, "%s: no such container", c->what);
        return -ENOENT;
    }
    if (!json_is_object(state)) {
        json_decref(arr);
        buf_printf(why, "%s: unexpected output (%s)", c->what, arr ? "no State object" : jerr.text);
        return -EIO;
    }
    copy_str(st->id, sizeof(st->id), json_object_get(obj, "Id"));
    copy_str(st->status, sizeof(st->status), json_object_get(state, "Status"));
    copy_str(st->started_at, sizeof(st->started_at), json_object_get(state, "StartedAt"));
    st->running = json_is_true(json_object_get(state, "Running"));
    st->pid = (pid_t)json_integer_value(json_object_get(state, "Pid"));
    st->exit_code = (int)json_integer_value(json_object_get(state, "ExitCode"));
    json_t *labels = json_object_get(json_object_get(obj, "Config"), "Labels");
    if (!json_is_object(labels)) {
        labels = json_object(); /* podman and docker write null when there are none */
        json_object_set_new(obj, "arun.empty_labels", labels);
    }
    st->labels = labels;
    *root = arr;
    return 0;
}

static void finish_inspect(struct call *c, int status, const char *why)
{
    struct container_state st = {0};
    json_t *root = NULL;
    struct buf msg;
    buf_init(&msg, 4096);
    if (status == 0) {
        status = parse_state(c, &st, &root, &msg);
        why = status != 0 ? buf_cstr(&msg) : NULL;
    }
    c->cb.inspect(status, status == 0 ? &st : NULL, why, c->arg);
    json_decref(root);
    buf_cleanup(&msg);
}

int container_inspect(struct container_rt *rt, const char *name, container_inspect_cb cb, void *arg)
{
    if (!container_name_valid(name))
        return -EINVAL;
    /* `container inspect`, not `inspect`: an image of the same name must not answer. */
    const char *args[] = {"inspect"};
    struct argv a = {0};
    struct call *c = named_call(rt, "container", args, 1, name, finish_inspect, arg, &a);
    c->cb.inspect = cb;
    return call_start(rt, c, &a);
}

/* ---- list ---- */

/* One normalised entry of container_list from podman's or docker's ps object. */
static json_t *list_entry(enum container_kind kind, json_t *o)
{
    json_t *names = json_object_get(o, "Names");
    json_t *labels = json_object_get(o, "Labels");
    const char *name = json_is_array(names) ? json_string_value(json_array_get(names, 0))
                                            : json_string_value(names);
    const char *id = json_string_value(json_object_get(o, kind == CONTAINER_PODMAN ? "Id" : "ID"));
    const char *state = json_string_value(json_object_get(o, "State"));
    json_t *lab = json_is_object(labels) ? json_incref(labels) : json_object();
    if (json_is_string(labels)) {
        /* docker: "k=v,k2=v2" */
        char *dup = xstrdup(json_string_value(labels)), *save = NULL;
        for (char *kv = strtok_r(dup, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            if (eq != NULL)
                *eq = '\0';
            json_object_set_new(lab, kv, json_string(eq ? eq + 1 : ""));
        }
        free(dup);
    }
    /* Docker separates the names of one container with commas. */
    size_t name_len = name ? strcspn(name, ",") : 0;
    return json_pack("{s:s%,s:s,s:s,s:o}", "name", name ? name : "", name_len, "id", id ? id : "",
                     "state", state ? state : "", "labels", lab);
}

/* podman prints one JSON array; docker one object per line. Returns the normalised array or
 * NULL when the output is neither. */
static json_t *parse_list(struct call *c)
{
    if (c->truncated)
        return NULL; /* a cut document may still parse, as a different list */
    json_t *out = json_array();
    if (c->kind == CONTAINER_PODMAN) {
        json_t *arr = json_loadb(c->out[0].data, c->out[0].len, 0, NULL);
        if (!json_is_array(arr) && c->out[0].len > 0) {
            json_decref(arr);
            json_decref(out);
            return NULL;
        }
        for (size_t i = 0; i < json_array_size(arr); i++)
            json_array_append_new(out, list_entry(c->kind, json_array_get(arr, i)));
        json_decref(arr);
        return out;
    }
    const char *p = trimmed(&c->out[0]);
    while (*p != '\0') {
        size_t n = strcspn(p, "\n");
        json_t *o = json_loadb(p, n, 0, NULL);
        if (!json_is_object(o)) {
            json_decref(o);
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, list_entry(c->kind, o));
        json_decref(o);
        p += n + (p[n] == '\n');
    }
    return out;
}

static void finish_list(struct call *c, int status, const char *why)
{
    json_t *list = NULL;
    struct buf msg;
    buf_init(&msg, 4096);
    if (status == 0) {
        list = parse_list(c);
        if (list == NULL) {
            status = -EIO;
            buf_printf(&msg, "%s: output is not the JSON expected%s", c->what,
                       c->truncated ? " (cut at the output cap)" : "");
            why = buf_cstr(&msg);
        }
    }
    c->cb.list(status, list, why, c->arg);
    json_decref(list);
    buf_cleanup(&msg);
}

int container_list(struct container_rt *rt, const char *label_filter, container_list_cb cb,
                   void *arg)
{
    if (label_filter == NULL || label_filter[0] == '\0')
        return -EINVAL;
    struct argv a = {0};
    argv_add(&a, kind_name(rt->kind));
    argv_add(&a, "ps");
    argv_add(&a, "-a");
    argv_add(&a, "--no-trunc");
    argv_addf(&a, "--filter=label=%s", label_filter);
    /* docker before 23 has no --format json; {{json .}} works in every version (JSON lines). */
    argv_add(&a, rt->kind == CONTAINER_PODMAN ? "--format=json" : "--format={{json .}}");
    char *what = xasprintf("%s ps --filter label=%s", kind_name(rt->kind), label_filter);
    struct call *c = call_new(rt, sizeof(*c), what, finish_list, arg);
    free(what);
    c->cb.list = cb;
    return call_start(rt, c, &a);
}

/* ---- logs ---- */

static void finish_follow(struct call *c, int status, const char *why)
{
    if (status != 0)
        log_info(MOD, "%s", why);
    c->cb.exit(status, c->arg);
}

int container_logs_follow_since(struct container_rt *rt, const char *name, const char *since,
                                container_output_cb on_output, container_exit_cb on_exit, void *arg,
                                struct container_follow **out)
{
    if (!container_name_valid(name) || (since != NULL && (since[0] == '\0' || since[0] == '-')))
        return -EINVAL;
    struct argv a = {0};
    argv_add(&a, kind_name(rt->kind));
    argv_add(&a, "logs");
    argv_add(&a, "-f");
    if (since != NULL)
        argv_addf(&a, "--since=%s", since);
    argv_add(&a, name);
    char *what = xasprintf("%s logs %s", kind_name(rt->kind), name);
    struct call *c = call_new(rt, sizeof(struct container_follow), what, finish_follow, arg);
    free(what);
    c->on_output = on_output;
    c->cb.exit = on_exit;
    c->timeout_ms = 0; /* follows for as long as the container runs */
    int rc = call_start(rt, c, &a);
    if (rc == 0)
        *out = (struct container_follow *)c;
    return rc;
}

int container_logs_follow(struct container_rt *rt, const char *name, container_output_cb on_output,
                          container_exit_cb on_exit, void *arg, struct container_follow **out)
{
    return container_logs_follow_since(rt, name, NULL, on_output, on_exit, arg, out);
}

void container_follow_stop(struct container_follow *f)
{
    struct call *c = &f->call;
    if (c->finished)
        return; /* called from inside on_exit: the follower is already done */
    c->silent = true;
    if (!c->exited)
        (void)uv_process_kill(&c->proc, SIGKILL);
}

/* ---- detection ---- */

struct detect {
    uv_loop_t *loop;
    uv_timer_t defer; /* runs the first step from the loop, so cb never runs inside detect */
    enum container_kind kinds[2];
    char *paths[2]; /* found on PATH, or NULL */
    size_t ncand, next;
    char *path_env;          /* PATH as it was, for the -ENOENT sentence */
    struct container_rt *rt; /* the candidate being checked */
    int first_status;        /* the first candidate's failure, reported if none works */
    char *first_why;
    container_detect_cb cb;
    void *arg;
};

static void detect_next(struct detect *d);

static void detect_close_cb(uv_handle_t *h)
{
    struct detect *d = h->data;
    for (size_t i = 0; i < ARRAY_SIZE(d->paths); i++)
        free(d->paths[i]);
    free(d->path_env);
    free(d->first_why);
    free(d);
}

static void detect_done(struct detect *d, int status, struct container_rt *rt, const char *why)
{
    if (status == 0)
        log_info(MOD, "using %s (%s)", rt->name, rt->path);
    d->cb(status, rt, why, d->arg);
    uv_close((uv_handle_t *)&d->defer, detect_close_cb);
}

/* The current candidate does not work: remember why, and try the next one. */
static void detect_failed(struct detect *d, int status, const char *why)
{
    log_info(MOD, "%s", why);
    if (d->first_why == NULL) {
        d->first_status = status;
        d->first_why = xstrdup(why);
    }
    container_rt_free(d->rt);
    d->rt = NULL;
    detect_next(d);
}

/* Does a failed trivial container say the runtime cannot start containers here (rather than
 * something about the probe itself, e.g. no overlay support for --rootfs)? */
static bool probe_says_broken(int status, const char *why)
{
    static const char *const needles[] = {"OCI", "runc", "crun", "rlimit", "hybrid", "cgroup"};
    if (status == -ETIMEDOUT)
        return true;
    for (size_t i = 0; i < ARRAY_SIZE(needles); i++)
        if (strstr(why, needles[i]) != NULL)
            return true;
    return false;
}

static void detect_probe_finish(struct call *c, int status, const char *why)
{
    struct detect *d = c->cb.detect;
    if (status != 0 && probe_says_broken(status, why)) {
        detect_failed(d, status, why);
        return;
    }
    if (status != 0)
        log_warn(MOD,
                 "could not run a trivial container to check the runtime (%s); "
                 "going on with %s",
                 why, d->rt->name);
    struct container_rt *rt = d->rt;
    d->rt = NULL;
    detect_done(d, 0, rt, NULL);
}

/* Runs a container from the host's own root (an overlay, so nothing is written to it) that
 * does nothing: ~0.2 s, and it exercises the OCI runtime, cgroups and ulimits like an engine. */
static int detect_probe(struct detect *d)
{
    struct argv a = {0};
    const char *args[] = {"podman",
                          "run",
                          "--rm",
                          "--network=none",
                          "--log-driver=none",
                          "--label=arun.probe=1",
                          "--rootfs",
                          "/:O",
                          "/bin/true"};
    for (size_t i = 0; i < ARRAY_SIZE(args); i++)
        argv_add(&a, args[i]);
    struct call *c = call_new(d->rt, sizeof(*c),
                              "podman run (a trivial container, to check the "
                              "runtime)",
                              detect_probe_finish, NULL);
    c->cb.detect = d;
    return call_start(d->rt, c, &a);
}

static void detect_version_finish(struct call *c, int status, const char *why)
{
    struct detect *d = c->cb.detect;
    if (status != 0) {
        detect_failed(d, status, why);
        return;
    }
    json_t *v = json_loadb(c->out[0].data, c->out[0].len, 0, NULL);
    const char *ver = json_string_value(json_object_get(json_object_get(v, "Client"), "Version"));
    snprintf(d->rt->name, sizeof(d->rt->name), "%s %s", kind_name(c->kind), ver ? ver : "unknown");
    json_decref(v);
    /* docker's `version` already asked the daemon (it fails without one); podman has no daemon,
     * so only a container shows whether its runtime works on this host. */
    if (c->kind == CONTAINER_PODMAN) {
        int rc = detect_probe(d);
        if (rc != 0) {
            char *msg = xasprintf("podman run: cannot start %s: %s", d->rt->path, uv_strerror(rc));
            detect_failed(d, -EIO, msg);
            free(msg);
        }
        return;
    }
    struct container_rt *rt = d->rt;
    d->rt = NULL;
    detect_done(d, 0, rt, NULL);
}

static void detect_next(struct detect *d)
{
    while (d->next < d->ncand && d->paths[d->next] == NULL)
        d->next++;
    if (d->next == d->ncand) {
        if (d->first_why != NULL) {
            detect_done(d, d->first_status, NULL, d->first_why);
            return;
        }
        char *why =
            xasprintf("no %s found on PATH (PATH=%s)",
                      d->ncand == 2 ? "podman or docker" : kind_name(d->kinds[0]), d->path_env);
        detect_done(d, -ENOENT, NULL, why);
        free(why);
        return;
    }
    size_t i = d->next++;
    d->rt = container_rt_new(d->loop, d->paths[i], d->kinds[i], NULL);
    struct argv a = {0};
    argv_add(&a, kind_name(d->kinds[i]));
    argv_add(&a, "version");
    argv_add(&a, "--format=json");
    char *what = xasprintf("%s version", kind_name(d->kinds[i]));
    struct call *c = call_new(d->rt, sizeof(*c), what, detect_version_finish, NULL);
    free(what);
    c->cb.detect = d;
    int rc = call_start(d->rt, c, &a);
    if (rc != 0) {
        char *msg = xasprintf("%s: cannot start it: %s", d->paths[i], uv_strerror(rc));
        detect_failed(d, -EIO, msg);
        free(msg);
    }
}

static void detect_defer_cb(uv_timer_t *t)
{
    detect_next(t->data);
}

int container_detect(uv_loop_t *loop, const char *preference, container_detect_cb cb, void *arg)
{
    enum container_kind kinds[2];
    size_t n;
    if (preference == NULL || strcmp(preference, "auto") == 0) {
        kinds[0] = CONTAINER_PODMAN;
        kinds[1] = CONTAINER_DOCKER;
        n = 2;
    } else if (strcmp(preference, "podman") == 0 || strcmp(preference, "docker") == 0) {
        kinds[0] = preference[0] == 'p' ? CONTAINER_PODMAN : CONTAINER_DOCKER;
        n = 1;
    } else {
        return -EINVAL;
    }
    struct detect *d = xcalloc(1, sizeof(*d));
    d->loop = loop;
    d->cb = cb;
    d->arg = arg;
    d->ncand = n;
    const char *path = getenv("PATH");
    d->path_env = xstrdup(path ? path : "");
    /* A few stat() calls on PATH, once at start-up: not worth a round trip to the thread pool. */
    for (size_t i = 0; i < n; i++) {
        d->kinds[i] = kinds[i];
        d->paths[i] = manifest_which(kind_name(kinds[i]));
    }
    uv_timer_init(loop, &d->defer);
    d->defer.data = d;
    uv_timer_start(&d->defer, detect_defer_cb, 0, 0);
    return 0;
}
