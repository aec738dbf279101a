/*
 * native.c: spawning and signalling engine processes. See native.h.
 *
 * Engines are spawned detached (UV_PROCESS_DETACHED: setsid in the child), so the engine's pid
 * is also its process group id and session id, and a terminal's signals never reach it. Its
 * output goes straight to its log file, not through a pipe to arun: an engine must outlive a
 * crash of arun (contract 5, adoption), and a pipe whose reader died would kill it with
 * SIGPIPE.
 */
#include "engines/native.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "engines/manifest.h"

struct native_child {
    uv_process_t proc; /* first: libuv hands it back */
    native_exit_cb cb;
    void *arg;
    pid_t pid;
};

int native_precheck(char **argv, const char *cwd, uint16_t port, struct buf *why)
{
    char *path = manifest_which(argv[0]);
    if (path == NULL) {
        const char *p = getenv("PATH");
        p = p ? p : "";
        /* Both bounded, so the sentence fits the callers' 1 KiB: a long PATH is not rare. */
        buf_printf(why, "binary not found: %.300s (PATH=%.500s%s)", argv[0], p,
                   strlen(p) > 500 ? "…" : "");
        return -ENOENT;
    }
    free(path);
    struct stat st;
    if (cwd != NULL && (stat(cwd, &st) != 0 || !S_ISDIR(st.st_mode))) {
        buf_printf(why, "cwd is not a directory: %s", cwd);
        return -ENOTDIR;
    }
    if (port != 0) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons(port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int one = 1;
        /* As a server binds: TIME_WAIT leftovers of earlier connections must not count. */
        if (fd >= 0)
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        int rc = fd >= 0 ? bind(fd, (struct sockaddr *)&sa, sizeof(sa)) : -1;
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (rc != 0 && e == EADDRINUSE) {
            buf_printf(why,
                       "port %u is already in use on 127.0.0.1 (another "
                       "engine or program); use port: auto or another port",
                       port);
            return -EADDRINUSE;
        }
    }
    return 0;
}

static void exit_cb(uv_process_t *p, int64_t exit_status, int term_signal)
{
    struct native_child *c = (struct native_child *)p;
    c->cb(c, exit_status, term_signal, c->arg);
}

int native_spawn(uv_loop_t *loop, char **argv, char **env, const char *cwd, int out_fd,
                 native_exit_cb cb, void *arg, struct native_child **out, struct buf *why)
{
    struct native_child *c = xcalloc(1, sizeof(*c));
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = out_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = out_fd},
        {.flags = out_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = out_fd},
    };
    uv_process_options_t o = {
        .exit_cb = exit_cb,
        .file = argv[0],
        .args = argv,
        .env = env,
        .cwd = cwd,
        .flags = UV_PROCESS_DETACHED,
        .stdio_count = 3,
        .stdio = stdio,
    };
    c->cb = cb;
    c->arg = arg;
    int rc = uv_spawn(loop, &c->proc, &o);
    if (rc != 0) {
        buf_printf(why, "cannot start %s: %s", argv[0], uv_strerror(rc));
        /* A failed uv_spawn still initialised the handle; it must be closed. */
        uv_close((uv_handle_t *)&c->proc, (uv_close_cb)free);
        return rc;
    }
    c->pid = c->proc.pid;
    *out = c;
    return 0;
}

pid_t native_child_pid(const struct native_child *c)
{
    return c->pid;
}

void native_child_free(struct native_child *c)
{
    if (c != NULL)
        uv_close((uv_handle_t *)&c->proc, (uv_close_cb)free);
}

size_t native_signal_all(pid_t pgid, const struct proc_id *ids, size_t n, int sig)
{
    size_t count = 0;
    if (pgid > 1 && kill(-pgid, sig) == 0)
        count++;
    for (size_t i = 0; i < n; i++) {
        if (ids[i].pid > 1 && proc_alive("/proc", ids[i]) && kill(ids[i].pid, sig) == 0)
            count++;
    }
    return count;
}

void native_reap_orphans(const struct proc_id *ids, size_t n, pid_t skip)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i].pid == skip || ids[i].pid <= 1)
            continue;
        int st;
        waitpid(ids[i].pid, &st, WNOHANG); /* ECHILD when it is not ours: harmless */
    }
}

void native_become_subreaper(void)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        log_warn_errno("engines", -errno,
                       "cannot become the subreaper of engine processes; "
                       "processes that leave an engine's group are tracked by pid only");
}

void native_describe_exit(int64_t exit_status, int term_signal, struct buf *out)
{
    if (term_signal != 0)
        buf_printf(out, "killed by signal %d (SIG%s)%s", term_signal,
                   sigabbrev_np(term_signal) ? sigabbrev_np(term_signal) : "?",
                   term_signal == SIGKILL ? ", possibly by the kernel's OOM killer" : "");
    else
        buf_printf(out, "exited with code %lld", (long long)exit_status);
}
