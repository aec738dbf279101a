/*
 * Unit tests of engines/proc: /proc snapshots and the set of processes that make up an engine.
 * Real children (synchronised through pipes, never sleeps) show the behaviours the supervisor
 * relies on; hand-built tables pin down the membership rules; a fake /proc tree pins the parser.
 * This process is a child subreaper (as arun is), so orphaned grandchildren come back to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "engines/proc.h"

#define PIPE_WAIT_MS 10000 /* a child that has not answered in 10 s is broken, not slow */
#define MIB (1024ull * 1024ull)

/* ---- helpers ---- */

/* Reads exactly n bytes from fd within PIPE_WAIT_MS. Returns 0, or -1 on EOF, error or timeout. */
static int read_full(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, PIPE_WAIT_MS);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t k = read(fd, (char *)p + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

static void write_full(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            _exit(90);
        p = (const char *)p + k;
        n -= (size_t)k;
    }
}

/* Blocks until fd reports EOF or a byte (a child's "go on" from the test). */
static void wait_for_word(int fd)
{
    char c;
    ssize_t k;
    do {
        k = read(fd, &c, 1);
    } while (k < 0 && errno == EINTR);
}

/* A child with two pipes: `up` carries its reports to the test, `down` the test's go-aheads. */
struct kid {
    pid_t pid;
    int up;   /* test reads */
    int down; /* test writes */
};

typedef void (*kid_fn)(int up, int down, void *arg);

static struct kid kid_start(kid_fn fn, void *arg)
{
    int up[2], down[2];
    assert_int_equal(pipe2(up, O_CLOEXEC), 0);
    assert_int_equal(pipe2(down, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(up[0]);
        close(down[1]);
        fn(up[1], down[0], arg);
        _exit(0);
    }
    close(up[1]);
    close(down[0]);
    return (struct kid){.pid = pid, .up = up[0], .down = down[1]};
}

static void kid_say(struct kid *k)
{
    char c = 'g';
    assert_int_equal(write(k->down, &c, 1), 1);
}

static int kid_reap(struct kid *k)
{
    int status = -1;
    if (k->down >= 0)
        close(k->down);
    k->down = -1;
    if (k->up >= 0)
        close(k->up);
    k->up = -1;
    pid_t w;
    do {
        w = waitpid(k->pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    assert_int_equal(w, k->pid);
    return status;
}

/* Waits for a child's exit without reaping it: it stays a zombie. */
static void wait_zombie(pid_t pid)
{
    siginfo_t si;
    int r;
    do {
        r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT);
    } while (r < 0 && errno == EINTR);
    assert_int_equal(r, 0);
}

static struct proc_info info_of(pid_t pid)
{
    struct proc_table t;
    assert_int_equal(proc_table_read("/proc", &t), 0);
    const struct proc_info *p = proc_table_find(&t, pid);
    assert_non_null(p);
    struct proc_info copy = *p;
    proc_table_free(&t);
    return copy;
}

static bool ids_have(const struct proc_id *ids, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i].pid == pid)
            return true;
    }
    return false;
}

/* ---- a grandchild that leaves with setsid ---- */

struct leaver_arg {
    int hold_r, hold_w; /* the grandchild blocks on hold_r until the test closes hold_w */
};

/* Child (the engine's root): own group, forks a grandchild that calls setsid() and reports its
 * pid; then waits for the test's word and exits, orphaning the grandchild. */
static void leaver_root(int up, int down, void *arg)
{
    struct leaver_arg *a = arg;
    setpgid(0, 0);
    close(a->hold_w);
    pid_t g = fork();
    if (g == 0) {
        close(down);
        if (setsid() < 0)
            _exit(91);
        pid_t self = getpid();
        write_full(up, &self, sizeof(self));
        close(up);
        wait_for_word(a->hold_r);
        _exit(0);
    }
    close(a->hold_r);
    wait_for_word(down);
}

static void test_setsid_grandchild_stays_tracked_after_parent_exits(void **state)
{
    int hold[2];
    assert_int_equal(pipe2(hold, O_CLOEXEC), 0);
    struct leaver_arg a = {.hold_r = hold[0], .hold_w = hold[1]};
    struct kid root = kid_start(leaver_root, &a);
    close(hold[0]);
    pid_t g;
    assert_int_equal(read_full(root.up, &g, sizeof(g)), 0);

    /* While the root lives, the grandchild is its descendant. */
    struct proc_table t;
    struct proc_id known[16];
    assert_int_equal(proc_table_read("/proc", &t), 0);
    size_t nknown = proc_tree(&t, root.pid, NULL, 0, known, ARRAY_SIZE(known));
    proc_table_free(&t);
    assert_int_equal(nknown, 2);
    assert_true(ids_have(known, nknown, root.pid));
    assert_true(ids_have(known, nknown, g));

    /* The root exits: the grandchild shares neither parent, group nor session with it now. */
    kid_say(&root);
    assert_int_equal(kid_reap(&root), 0);
    struct proc_info gi = info_of(g);
    assert_int_equal(gi.ppid, getpid()); /* reparented to us, the subreaper */
    assert_int_equal(gi.sid, g);

    struct proc_id now[16];
    assert_int_equal(proc_table_read("/proc", &t), 0);
    assert_int_equal(proc_tree(&t, root.pid, NULL, 0, now, ARRAY_SIZE(now)), 0);
    size_t n = proc_tree(&t, root.pid, known, nknown, now, ARRAY_SIZE(now));
    proc_table_free(&t);
    assert_int_equal(n, 1);
    assert_int_equal(now[0].pid, g);

    /* Once it exits it is a zombie of ours until reaped, and no longer counted. */
    close(hold[1]);
    wait_zombie(g);
    assert_int_equal(proc_table_read("/proc", &t), 0);
    assert_int_equal(proc_table_find(&t, g)->state, 'Z');
    assert_int_equal(proc_tree(&t, root.pid, known, nknown, now, ARRAY_SIZE(now)), 0);
    proc_table_free(&t);
    int status;
    assert_int_equal(waitpid(g, &status, 0), g);
}

/* ---- rss and reads ---- */

static void allocating_kid(int up, int down, void *arg)
{
    write_full(up, "s", 1);
    wait_for_word(down);
    size_t n = 50 * MIB;
    /* Volatile stores, one per page: the compiler may not drop them as it may a memset. */
    volatile char *p = malloc(n);
    if (p == NULL)
        _exit(92);
    for (size_t i = 0; i < n; i += 4096)
        p[i] = 0x5a;
    write_full(up, "a", 1);
    wait_for_word(down);
    free((char *)p);
}

static void test_touched_allocation_shows_in_rss(void **state)
{
    struct kid k = kid_start(allocating_kid, NULL);
    char c;
    assert_int_equal(read_full(k.up, &c, 1), 0);
    struct proc_info before = info_of(k.pid);
    kid_say(&k);
    assert_int_equal(read_full(k.up, &c, 1), 0);

    struct proc_table t;
    assert_int_equal(proc_table_read("/proc", &t), 0);
    struct proc_id ids[8];
    size_t n = proc_tree(&t, k.pid, NULL, 0, ids, ARRAY_SIZE(ids));
    uint64_t rss, rd;
    proc_sum(&t, ids, n, &rss, &rd);
    uint64_t after = proc_table_find(&t, k.pid)->rss_bytes;
    proc_table_free(&t);
    print_message("rss before %llu after %llu\n", (unsigned long long)before.rss_bytes,
                  (unsigned long long)after);
    assert_true(after >= before.rss_bytes + 48 * MIB);
    assert_int_equal(rss, after);
    assert_int_equal(kid_reap(&k), 0);
}

static const char *read_file_path;

static void reading_kid(int up, int down, void *arg)
{
    write_full(up, "s", 1);
    wait_for_word(down);
    int fd = open(read_file_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        _exit(93);
    char buf[65536];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    close(fd);
    write_full(up, "r", 1);
    wait_for_word(down);
}

static void test_file_read_shows_in_read_bytes(void **state)
{
    char path[] = "/tmp/arun-proc-read-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static char block[1 << 20];
    memset(block, 'x', sizeof(block));
    for (int i = 0; i < 4; i++)
        assert_int_equal(write(fd, block, sizeof(block)), sizeof(block));
    close(fd);
    read_file_path = path;

    struct kid k = kid_start(reading_kid, NULL);
    char c;
    assert_int_equal(read_full(k.up, &c, 1), 0);
    struct proc_info before = info_of(k.pid);
    kid_say(&k);
    assert_int_equal(read_full(k.up, &c, 1), 0);
    struct proc_info after = info_of(k.pid);
    print_message("read_bytes before %llu after %llu (rchar %llu, storage %llu)\n",
                  (unsigned long long)before.read_bytes, (unsigned long long)after.read_bytes,
                  (unsigned long long)after.rchar, (unsigned long long)after.storage_read_bytes);
    /* The file was just written, so it is in the page cache: only rchar sees this read. */
    assert_true(after.read_bytes >= before.read_bytes + 4 * MIB);
    assert_true(after.rchar >= before.rchar + 4 * MIB);
    assert_int_equal(kid_reap(&k), 0);
    unlink(path);
}

/* ---- liveness ---- */

static void waiting_kid(int up, int down, void *arg)
{
    write_full(up, "s", 1);
    wait_for_word(down);
}

static void test_alive_until_killed_and_reaped(void **state)
{
    struct kid k = kid_start(waiting_kid, NULL);
    char c;
    assert_int_equal(read_full(k.up, &c, 1), 0);
    uint64_t start;
    assert_int_equal(proc_start_ticks("/proc", k.pid, &start), 0);
    assert_int_equal(start, info_of(k.pid).start_ticks);
    assert_true(proc_alive("/proc", (struct proc_id){k.pid, start}));

    assert_int_equal(kill(k.pid, SIGKILL), 0);
    int status = kid_reap(&k);
    assert_true(WIFSIGNALED(status));
    assert_false(proc_alive("/proc", (struct proc_id){k.pid, start}));
    assert_int_equal(proc_start_ticks("/proc", k.pid, &start), -ESRCH);
}

static void test_alive_false_for_other_start_ticks(void **state)
{
    struct kid k = kid_start(waiting_kid, NULL);
    char c;
    assert_int_equal(read_full(k.up, &c, 1), 0);
    uint64_t start;
    assert_int_equal(proc_start_ticks("/proc", k.pid, &start), 0);
    /* The same pid with another start time is another process: a reused pid. */
    assert_false(proc_alive("/proc", (struct proc_id){k.pid, start + 1}));
    assert_true(proc_alive("/proc", (struct proc_id){k.pid, start}));
    assert_int_equal(kid_reap(&k), 0);
}

static void test_zombie_is_excluded_and_not_alive(void **state)
{
    struct kid k = kid_start(waiting_kid, NULL);
    char c;
    assert_int_equal(read_full(k.up, &c, 1), 0);
    uint64_t start;
    assert_int_equal(proc_start_ticks("/proc", k.pid, &start), 0);
    kid_say(&k);
    wait_zombie(k.pid);

    struct proc_table t;
    assert_int_equal(proc_table_read("/proc", &t), 0);
    const struct proc_info *p = proc_table_find(&t, k.pid);
    assert_non_null(p);
    assert_int_equal(p->state, 'Z');
    assert_true(proc_info_gone(p));
    struct proc_id ids[4];
    struct proc_id known = {k.pid, start};
    assert_int_equal(proc_tree(&t, k.pid, &known, 1, ids, ARRAY_SIZE(ids)), 0);
    uint64_t rss = 1, rd = 1;
    proc_sum(&t, &known, 1, &rss, &rd);
    assert_int_equal(rss, 0);
    assert_int_equal(rd, 0);
    proc_table_free(&t);
    assert_false(proc_alive("/proc", known));
    assert_int_equal(proc_start_ticks("/proc", k.pid, &start), -ESRCH);
    assert_int_equal(kid_reap(&k), 0);
}

static void test_real_table_holds_this_process(void **state)
{
    struct proc_info self = info_of(getpid());
    assert_int_equal(self.ppid, getppid());
    assert_int_equal(self.pgid, getpgrp());
    assert_int_equal(self.state, 'R');
    assert_true(self.rss_bytes > 0);
    assert_true(self.rchar > 0);
    assert_string_equal(self.comm, "test_proc");
    uint64_t start;
    assert_int_equal(proc_start_ticks("/proc", getpid(), &start), 0);
    assert_int_equal(start, self.start_ticks);
}

/* ---- membership rules on hand-built tables ---- */

#define P(pid_, ppid_, pgid_, sid_, st_, state_)                                                   \
    {                                                                                              \
        .pid = (pid_), .ppid = (ppid_), .pgid = (pgid_), .sid = (sid_), .start_ticks = (st_),      \
        .state = (state_)                                                                          \
    }

/* arun is 100. Engine root 200 leads group and session 200. */
static struct proc_info scene[] = {
    P(1, 0, 1, 1, 1, 'S'),          P(100, 1, 100, 100, 10, 'S'), /* arun */
    P(200, 100, 200, 200, 20, 'S'),                               /* root */
    P(201, 200, 200, 200, 21, 'S'),                               /* child */
    P(202, 201, 202, 202, 22, 'S'), /* grandchild that called setsid: still a descendant */
    P(203, 200, 200, 200, 23, 'Z'), /* zombie child */
    P(300, 100, 200, 200, 30, 'S'), /* in root's group, reparented to arun */
    P(400, 100, 400, 400, 40, 'S'), /* left with setsid, reparented: only known[] finds it */
    P(401, 400, 400, 400, 41, 'S'), /* forked by 400 after it was recorded */
    P(402, 100, 402, 450, 42, 'S'), /* in the session of 450, a recorded process now dead */
    P(500, 100, 500, 500, 50, 'S'), /* another engine */
    P(501, 500, 500, 500, 51, 'S'),
};

static struct proc_table scene_table(void)
{
    return (struct proc_table){.procs = scene, .n = ARRAY_SIZE(scene)};
}

static void assert_ids(const struct proc_id *ids, size_t n, const pid_t *want, size_t nwant)
{
    for (size_t i = 0; i < n && i < nwant; i++)
        print_message("got %d want %d\n", (int)ids[i].pid, (int)want[i]);
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i].pid, want[i]);
}

static void test_tree_counts_descendants_group_session_and_known(void **state)
{
    struct proc_table t = scene_table();
    struct proc_id known[] = {{400, 40}, {450, 45}};
    struct proc_id out[32];
    size_t n = proc_tree(&t, 200, known, ARRAY_SIZE(known), out, ARRAY_SIZE(out));
    pid_t want[] = {200, 201, 202, 300, 400, 401, 402};
    assert_ids(out, n, want, ARRAY_SIZE(want));
    assert_int_equal(out[4].start_ticks, 40);
}

static void test_tree_without_known_loses_reparented_leavers(void **state)
{
    struct proc_table t = scene_table();
    struct proc_id out[32];
    size_t n = proc_tree(&t, 200, NULL, 0, out, ARRAY_SIZE(out));
    pid_t want[] = {200, 201, 202, 300};
    assert_ids(out, n, want, ARRAY_SIZE(want));
}

static void test_tree_root_that_leads_nothing_never_takes_its_parents_group(void **state)
{
    struct proc_info procs[] = {
        P(100, 1, 100, 100, 10, 'S'),
        P(200, 100, 100, 100, 20, 'S'), /* root spawned without its own group */
        P(201, 200, 100, 100, 21, 'S'),
        P(500, 100, 100, 100, 50, 'S'), /* a sibling in arun's group */
    };
    struct proc_table t = {.procs = procs, .n = ARRAY_SIZE(procs)};
    struct proc_id out[8];
    size_t n = proc_tree(&t, 200, NULL, 0, out, ARRAY_SIZE(out));
    pid_t want[] = {200, 201};
    assert_ids(out, n, want, ARRAY_SIZE(want));
}

static void test_tree_ignores_a_reused_pid(void **state)
{
    struct proc_info procs[] = {
        P(100, 1, 100, 100, 10, 'S'),
        P(200, 1, 200, 200, 99, 'S'), /* pid 200 now belongs to a newcomer */
        P(201, 200, 200, 200, 100, 'S'),
        P(400, 1, 400, 400, 98, 'S'), /* pid 400 too */
        P(401, 400, 400, 400, 101, 'S'),
    };
    struct proc_table t = {.procs = procs, .n = ARRAY_SIZE(procs)};
    struct proc_id known[] = {{200, 20}, {400, 40}};
    struct proc_id out[8];
    assert_int_equal(proc_tree(&t, 200, known, ARRAY_SIZE(known), out, ARRAY_SIZE(out)), 0);
    uint64_t rss, rd;
    proc_sum(&t, known, ARRAY_SIZE(known), &rss, &rd);
    assert_int_equal(rss, 0);
}

static void test_tree_count_beyond_cap_is_reported(void **state)
{
    struct proc_table t = scene_table();
    struct proc_id out[2];
    assert_int_equal(proc_tree(&t, 200, NULL, 0, out, ARRAY_SIZE(out)), 4);
    assert_int_equal(out[0].pid, 200);
    assert_int_equal(out[1].pid, 201);
}

static void test_tree_survives_a_ppid_cycle_in_a_crafted_table(void **state)
{
    struct proc_info procs[] = {
        P(200, 100, 200, 200, 20, 'S'),
        P(300, 301, 300, 300, 30, 'S'),
        P(301, 300, 301, 301, 31, 'S'),
    };
    struct proc_table t = {.procs = procs, .n = ARRAY_SIZE(procs)};
    struct proc_id out[8];
    size_t n = proc_tree(&t, 200, NULL, 0, out, ARRAY_SIZE(out));
    pid_t want[] = {200};
    assert_ids(out, n, want, ARRAY_SIZE(want));
}

/* ---- the parser, on a fake /proc ---- */

static void test_fake_proc_parses_odd_comm_and_io(void **state)
{
    char root[] = "/tmp/arun-fakeproc-XXXXXX";
    assert_non_null(mkdtemp(root));
    testutil_put(
        root, "4242/stat",
        "4242 (a) b (c) S 7 4242 4200 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 987654 1 2 3\n",
        0644);
    testutil_put(root, "4242/statm", "1000 300 50 1 0 200 0\n", 0644);
    testutil_put(root, "4242/io",
                 "rchar: 5000\nwchar: 1\nsyscr: 2\nsyscw: 3\nread_bytes: 9000\nwrite_bytes: 0\n"
                 "cancelled_write_bytes: 0\n",
                 0644);
    /* io unreadable or absent (no CONFIG_TASK_IO_ACCOUNTING): kept, counters zero. */
    testutil_put(root, "17/stat", "17 (sh) Z 1 17 17 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0\n",
                 0644);
    testutil_put(root, "17/statm", "0 0 0 0 0 0 0\n", 0644);
    /* Vanished between listing and reading: no statm. */
    testutil_put(root, "18/stat", "18 (gone) S 1 18 18 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 56 0 0\n",
                 0644);
    testutil_put(root, "self/stat", "not a pid directory\n", 0644);
    testutil_put(root, "19/stat", "19 (truncated) S 1 19\n", 0644);
    testutil_put(root, "19/statm", "0 0 0 0 0 0 0\n", 0644);

    struct proc_table t;
    assert_int_equal(proc_table_read(root, &t), 0);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.procs[0].pid, 17);
    assert_int_equal(t.procs[0].state, 'Z');
    assert_int_equal(t.procs[0].read_bytes, 0);
    const struct proc_info *p = proc_table_find(&t, 4242);
    assert_non_null(p);
    assert_string_equal(p->comm, "a) b (c");
    assert_int_equal(p->state, 'S');
    assert_int_equal(p->ppid, 7);
    assert_int_equal(p->pgid, 4242);
    assert_int_equal(p->sid, 4200);
    assert_int_equal(p->start_ticks, 987654);
    assert_int_equal(p->rss_bytes, 300 * (uint64_t)sysconf(_SC_PAGESIZE));
    assert_int_equal(p->rchar, 5000);
    assert_int_equal(p->storage_read_bytes, 9000);
    assert_int_equal(p->read_bytes, 9000); /* the larger of the two */
    assert_null(proc_table_find(&t, 18));
    proc_table_free(&t);

    uint64_t start;
    assert_int_equal(proc_start_ticks(root, 4242, &start), 0);
    assert_int_equal(start, 987654);
    assert_int_equal(proc_start_ticks(root, 17, &start), -ESRCH);
    assert_int_equal(proc_start_ticks(root, 99, &start), -ESRCH);
    assert_int_equal(proc_start_ticks(root, 19, &start), -EINVAL);
    assert_true(proc_alive(root, (struct proc_id){4242, 987654}));
    testutil_rm_rf(root);
}

static void test_environ_gives_a_variable_the_exec_saw(void **state)
{
    /* The write end closes on exec (O_CLOEXEC): EOF on the read end means the new environment
     * is the one /proc shows. */
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *argv[] = {"sleep", "1000", NULL};
        char *envp[] = {"ARUN_TEST_MARK=abc/def", "ARUN_TEST_MARKER=wrong", "PATH=/bin", NULL};
        execve("/bin/sleep", argv, envp);
        _exit(127);
    }
    close(p[1]);
    char c;
    assert_int_equal(read(p[0], &c, 1), 0);
    close(p[0]);
    char v[64];
    assert_int_equal(proc_environ_get("/proc", pid, "ARUN_TEST_MARK", v, sizeof(v)), 0);
    assert_string_equal(v, "abc/def");
    assert_int_equal(proc_environ_get("/proc", pid, "ARUN_TEST_MARKE", v, sizeof(v)), -ENOENT);
    assert_int_equal(proc_environ_get("/proc", pid, "ARUN_TEST_MARK", v, 4), 0);
    assert_string_equal(v, "abc");
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    assert_int_equal(proc_environ_get("/proc", pid, "ARUN_TEST_MARK", v, sizeof(v)), -ESRCH);
}

static void test_missing_proc_root_is_an_error(void **state)
{
    struct proc_table t;
    assert_int_equal(proc_table_read("/nonexistent-proc-root", &t), -ENOENT);
    assert_int_equal(t.n, 0);
    assert_null(t.procs);
    proc_table_free(&t);
}

int main(void)
{
    /* As arun does: orphans of our children come back to us, not to PID 1. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        perror("prctl(PR_SET_CHILD_SUBREAPER)");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setsid_grandchild_stays_tracked_after_parent_exits),
        cmocka_unit_test(test_touched_allocation_shows_in_rss),
        cmocka_unit_test(test_file_read_shows_in_read_bytes),
        cmocka_unit_test(test_alive_until_killed_and_reaped),
        cmocka_unit_test(test_alive_false_for_other_start_ticks),
        cmocka_unit_test(test_zombie_is_excluded_and_not_alive),
        cmocka_unit_test(test_real_table_holds_this_process),
        cmocka_unit_test(test_tree_counts_descendants_group_session_and_known),
        cmocka_unit_test(test_tree_without_known_loses_reparented_leavers),
        cmocka_unit_test(test_tree_root_that_leads_nothing_never_takes_its_parents_group),
        cmocka_unit_test(test_tree_ignores_a_reused_pid),
        cmocka_unit_test(test_tree_count_beyond_cap_is_reported),
        cmocka_unit_test(test_tree_survives_a_ppid_cycle_in_a_crafted_table),
        cmocka_unit_test(test_fake_proc_parses_odd_comm_and_io),
        cmocka_unit_test(test_missing_proc_root_is_an_error),
        cmocka_unit_test(test_environ_gives_a_variable_the_exec_saw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
