/*
 * test_store.c: the store's behaviours through its public interface (store.h), plus the two
 * internal hooks of store_int.h for fault injection (store_debug_sql). Every test runs a real uv
 * loop and a real SQLite database in a fresh temporary directory, waits on conditions with a
 * deadline (never sleeps), and ends with every handle closed and uv_loop_close() == 0.
 */
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include "testloop.h"
#include <sqlite3.h>
#include <uv.h>

#include "core/clock.h"
#include "store/store.h"
#include "store/store_int.h"

#define DEADLINE_MS 10000 /* generous for ASan on a loaded 2-core VM; a pass takes milliseconds */
#define NS "test"

/* ---- helpers -------------------------------------------------------------------------- */

/* A fresh directory; the store's data_dir is DIR/data, so store_open has to create it. */
static char *tmp_dir_new(void)
{
    const char *base = getenv("ARUN_BUILD_DIR");
    char *dir = xasprintf("%s/store-test-XXXXXX", base != NULL ? base : "/tmp");

    assert_non_null(mkdtemp(dir));
    return dir;
}

static char *data_dir_of(const char *tmp)
{
    return xasprintf("%s/data", tmp);
}

static void tmp_dir_free(char *dir)
{
    nftw(dir, testutil_rm_entry, 16, FTW_DEPTH | FTW_PHYS); /* best effort, as before */
    free(dir);
}

static struct store *open_store(uv_loop_t *loop, const char *data_dir,
                                const struct store_options *extra)
{
    struct store_options opts = extra != NULL ? *extra : (struct store_options){0};
    struct store *st = NULL;
    struct buf err;

    opts.data_dir = data_dir;
    buf_init(&err, 4096);
    int rc = store_open(loop, &opts, &st, &err);
    if (rc != 0)
        fail_msg("store_open: %d %s", rc, buf_cstr(&err));
    buf_cleanup(&err);
    assert_true(store_ready(st));
    assert_string_equal(store_status(st), "ok");
    return st;
}

/* Closes st and runs the loop until the store has released everything. */
static void close_store(uv_loop_t *loop, struct store *st)
{
    store_close(st);
    assert_true(testloop_run_until(loop, testloop_no_handles, loop, DEADLINE_MS));
}

static void loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Write acknowledgements, counted. */
struct acks {
    int done;   /* callbacks run */
    int want;   /* run_until target */
    int failed; /* callbacks with status != 0 */
    int last;   /* the last status */
};

static void ack_cb(int status, void *arg)
{
    struct acks *a = arg;
    a->done++;
    a->last = status;
    if (status != 0)
        a->failed++;
}

static bool acks_reached(void *arg)
{
    struct acks *a = arg;
    return a->done >= a->want;
}

/* One read's outcome. */
struct got {
    bool done;
    int status;
    char *value;
};

static void got_cb(int status, const char *value, size_t len, void *arg)
{
    struct got *g = arg;
    g->done = true;
    g->status = status;
    free(g->value);
    g->value = value != NULL ? xstrndup(value, len) : NULL;
    if (status == 0)
        assert_int_equal(strlen(value), len);
}

static bool got_done(void *arg)
{
    return ((struct got *)arg)->done;
}

/* Puts synchronously (through the loop) and asserts the acknowledgement's status. */
static void put_wait(uv_loop_t *loop, struct store *st, const char *key, const char *value,
                     int want_status)
{
    struct acks a = {.want = 1};
    assert_int_equal(store_kv_put(st, NS, key, value, strlen(value), ack_cb, &a), 0);
    assert_true(testloop_run_until(loop, acks_reached, &a, DEADLINE_MS));
    assert_int_equal(a.last, want_status);
}

/* Gets through the loop; returns the status, *value (caller frees) when 0. */
static int get_wait(uv_loop_t *loop, struct store *st, const char *key, char **value)
{
    struct got g = {0};
    assert_int_equal(store_kv_get(st, NS, key, got_cb, &g), 0);
    assert_true(testloop_run_until(loop, got_done, &g, DEADLINE_MS));
    if (value != NULL)
        *value = g.value;
    else
        free(g.value);
    return g.status;
}

/* Runs SQL on the writer's connection; returns its first value (caller frees) or NULL. */
static char *sql_wait(uv_loop_t *loop, struct store *st, const char *sql)
{
    struct got g = {0};
    assert_int_equal(store_debug_sql(st, sql, got_cb, &g), 0);
    assert_true(testloop_run_until(loop, got_done, &g, DEADLINE_MS));
    assert_int_equal(g.status, 0);
    return g.value;
}

static char *value_for(int i)
{
    return xasprintf("{\"i\":%d,\"text\":\"value number %d\"}", i, i);
}

/* ---- kill -9 ------------------------------------------------------------------------- */

#define KILL_ACKS 200     /* acknowledged puts to see before the kill */
#define KILL_IN_FLIGHT 32 /* puts the child keeps submitted at once */
#define KILL_MAX_KEYS 100000

struct stream {
    struct store *st;
    int fd;   /* acknowledged indexes go here, 4 bytes each */
    int next; /* the next index to put */
};
static struct stream child_stream; /* the child's only state; it never returns */

static void stream_put(void);

static void stream_ack_cb(int status, void *arg)
{
    int32_t i = (int32_t)(intptr_t)arg;

    if (status != 0)
        _exit(4);
    if (write(child_stream.fd, &i, sizeof(i)) != sizeof(i))
        _exit(5);
    stream_put();
}

static void stream_put(void)
{
    int i = child_stream.next++;
    char key[32];
    char *value = value_for(i);

    snprintf(key, sizeof(key), "k%06d", i);
    if (store_kv_put(child_stream.st, NS, key, value, strlen(value), stream_ack_cb,
                     (void *)(intptr_t)i) != 0)
        _exit(6);
    free(value);
}

/* The child: puts keys forever, reporting each acknowledgement, until it is killed. */
static void child_writer(const char *data_dir, int fd)
{
    uv_loop_t loop;
    struct store_options opts = {.data_dir = data_dir};
    struct buf err;

    buf_init(&err, 4096);
    if (uv_loop_init(&loop) != 0 || store_open(&loop, &opts, &child_stream.st, &err) != 0)
        _exit(2);
    child_stream.fd = fd;
    for (int i = 0; i < KILL_IN_FLIGHT; i++)
        stream_put();
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(3);
}

/* Reads acknowledged indexes until want of them (or EOF, or the deadline). */
static int read_acks(int fd, bool *acked, int want, uint64_t deadline)
{
    int n = 0;
    while (n < want && clock_mono_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int32_t i;
        ssize_t got = read(fd, &i, sizeof(i));
        if (got == 0)
            break;
        assert_int_equal(got, sizeof(i));
        assert_true(i >= 0 && i < KILL_MAX_KEYS);
        acked[i] = true;
        n++;
    }
    return n;
}

static void test_acknowledged_write_survives_kill_9(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    bool *acked = xcalloc(KILL_MAX_KEYS, sizeof(*acked));
    int fds[2], status, n, checked = 0;

    /* Fork first: the parent has no loop and no store thread yet. */
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(fds[0]);
        child_writer(data_dir, fds[1]);
    }
    close(fds[1]);
    n = read_acks(fds[0], acked, KILL_ACKS, clock_mono_ms() + DEADLINE_MS);
    assert_int_equal(kill(child, SIGKILL), 0);
    assert_int_equal(waitpid(child, &status, 0), child);
    if (n < KILL_ACKS)
        fail_msg("the child acknowledged only %d puts (exit status %d)", n, status);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* Acknowledgements the child wrote before it died count too. */
    n += read_acks(fds[0], acked, KILL_MAX_KEYS, clock_mono_ms() + DEADLINE_MS);
    close(fds[0]);

    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    for (int i = 0; i < KILL_MAX_KEYS; i++) {
        if (!acked[i])
            continue;
        char key[32], *value = NULL, *want = value_for(i);
        snprintf(key, sizeof(key), "k%06d", i);
        int rc = get_wait(&loop, st, key, &value);
        if (rc != 0)
            fail_msg("acknowledged key %s is missing after kill -9: %d", key, rc);
        assert_string_equal(value, want);
        free(value);
        free(want);
        checked++;
    }
    assert_int_equal(checked, n);
    print_message("kill -9: %d acknowledged puts, all present after reopening\n", checked);
    close_store(&loop, st);
    loop_finish(&loop);
    free(acked);
    free(data_dir);
    tmp_dir_free(tmp);
}

/* ---- basic behaviour ------------------------------------------------------------------ */

static void test_put_then_get_roundtrips_through_the_loop(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp), *value = NULL;
    uv_loop_t loop;

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    put_wait(&loop, st, "greeting", "{\"hello\":\"world\"}", 0);
    assert_int_equal(get_wait(&loop, st, "greeting", &value), 0);
    assert_string_equal(value, "{\"hello\":\"world\"}");
    free(value);

    put_wait(&loop, st, "greeting", "\"replaced\"", 0);
    assert_int_equal(get_wait(&loop, st, "greeting", &value), 0);
    assert_string_equal(value, "\"replaced\"");
    free(value);

    /* The defaults the contract promises: WAL, synchronous=FULL (2), foreign keys on. */
    value = sql_wait(&loop, st, "PRAGMA journal_mode");
    assert_string_equal(value, "wal");
    free(value);
    value = sql_wait(&loop, st, "PRAGMA synchronous");
    assert_string_equal(value, "2");
    free(value);
    value = sql_wait(&loop, st, "PRAGMA foreign_keys");
    assert_string_equal(value, "1");
    free(value);

    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_list_returns_a_namespace_as_one_object(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct got g = {0};

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    assert_int_equal(store_kv_list(st, NS, got_cb, &g), 0);
    assert_true(testloop_run_until(&loop, got_done, &g, DEADLINE_MS));
    assert_int_equal(g.status, 0);
    assert_string_equal(g.value, "{}");
    free(g.value);

    put_wait(&loop, st, "b\"quoted", "[1,2]", 0);
    put_wait(&loop, st, "a", "{\"pid\":7}", 0);
    g = (struct got){0};
    assert_int_equal(store_kv_list(st, NS, got_cb, &g), 0);
    assert_true(testloop_run_until(&loop, got_done, &g, DEADLINE_MS));
    assert_int_equal(g.status, 0);
    assert_string_equal(g.value, "{\"a\":{\"pid\":7},\"b\\\"quoted\":[1,2]}");
    free(g.value);

    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_delete_removes_the_key(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct acks a = {.want = 1};

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    put_wait(&loop, st, "doomed", "1", 0);
    assert_int_equal(store_kv_delete(st, NS, "doomed", ack_cb, &a), 0);
    assert_true(testloop_run_until(&loop, acks_reached, &a, DEADLINE_MS));
    assert_int_equal(a.last, 0);
    assert_int_equal(get_wait(&loop, st, "doomed", NULL), -ENOENT);

    a = (struct acks){.want = 1};
    assert_int_equal(store_kv_delete(st, NS, "doomed", ack_cb, &a), 0);
    assert_true(testloop_run_until(&loop, acks_reached, &a, DEADLINE_MS));
    assert_int_equal(a.last, -ENOENT);

    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_get_of_a_missing_key_is_enoent(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp), *value = (char *)"unset";
    uv_loop_t loop;

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    put_wait(&loop, st, "present", "true", 0);
    assert_int_equal(get_wait(&loop, st, "absent", &value), -ENOENT);
    assert_null(value);
    /* Namespaces are separate: the same key in another namespace is not there. */
    struct got g = {0};
    assert_int_equal(store_kv_get(st, "other", "present", got_cb, &g), 0);
    assert_true(testloop_run_until(&loop, got_done, &g, DEADLINE_MS));
    assert_int_equal(g.status, -ENOENT);

    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_invalid_arguments_fail_without_calling_back(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct acks a = {0};
    char *huge_key = xcalloc(1, STORE_KEY_MAX + 2);

    memset(huge_key, 'k', STORE_KEY_MAX + 1);
    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    assert_int_equal(store_kv_put(st, NS, "", "1", 1, ack_cb, &a), -EINVAL);
    assert_int_equal(store_kv_put(st, "", "k", "1", 1, ack_cb, &a), -EINVAL);
    assert_int_equal(store_kv_put(st, NS, huge_key, "1", 1, ack_cb, &a), -E2BIG);
    assert_int_equal(store_kv_put(st, NS, "k", "1", STORE_VALUE_MAX + 1, ack_cb, &a), -E2BIG);
    close_store(&loop, st);
    assert_int_equal(a.done, 0);
    loop_finish(&loop);
    free(huge_key);
    free(data_dir);
    tmp_dir_free(tmp);
}

/* ---- batching, draining, bounds ------------------------------------------------------ */

static void test_puts_in_one_turn_share_few_commits(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct acks a = {.want = 1000};
    struct store_stats stats;

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    for (int i = 0; i < 1000; i++) {
        char key[32], *value = value_for(i);
        snprintf(key, sizeof(key), "batch-%d", i);
        assert_int_equal(store_kv_put(st, NS, key, value, strlen(value), ack_cb, &a), 0);
        free(value);
    }
    assert_true(testloop_run_until(&loop, acks_reached, &a, DEADLINE_MS));
    assert_int_equal(a.failed, 0);
    store_stats(st, &stats);
    print_message("group commit: %llu ops in %llu commits\n",
                  (unsigned long long)stats.ops_committed, (unsigned long long)stats.commits);
    assert_int_equal(stats.ops_committed, 1000);
    assert_true(stats.commits >= 1 && stats.commits <= 50);
    assert_int_equal(stats.pending, 0);

    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_close_drains_submitted_puts(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct acks a = {.want = 500};
    struct acks reads = {0};

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    for (int i = 0; i < 500; i++) {
        char key[32], *value = value_for(i);
        snprintf(key, sizeof(key), "drain-%d", i);
        assert_int_equal(store_kv_put(st, NS, key, value, strlen(value), ack_cb, &a), 0);
        free(value);
    }
    close_store(&loop, st); /* right after submitting: nothing has run yet */
    assert_int_equal(a.done, 500);
    assert_int_equal(a.failed, 0);

    st = open_store(&loop, data_dir, NULL);
    for (int i = 0; i < 500; i++) {
        char key[32], *value = NULL, *want = value_for(i);
        snprintf(key, sizeof(key), "drain-%d", i);
        assert_int_equal(get_wait(&loop, st, key, &value), 0);
        assert_string_equal(value, want);
        free(value);
        free(want);
        reads.done++;
    }
    assert_int_equal(reads.done, 500);
    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

struct resubmit {
    struct store *st;
    int status;      /* of the put itself */
    int resubmit_rc; /* of the put its callback tried */
    bool done;
};

static void resubmit_cb(int status, void *arg)
{
    struct resubmit *r = arg;
    r->status = status;
    r->resubmit_rc = store_kv_put(r->st, NS, "late", "1", 1, ack_cb, NULL);
    r->done = true;
}

static void test_ops_submitted_while_closing_are_refused(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct resubmit r = {0};

    assert_int_equal(uv_loop_init(&loop), 0);
    r.st = open_store(&loop, data_dir, NULL);
    assert_int_equal(store_kv_put(r.st, NS, "early", "1", 1, resubmit_cb, &r), 0);
    close_store(&loop, r.st);
    assert_true(r.done);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.resubmit_rc, -ECANCELED);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_submissions_past_the_pending_cap_fail_with_eagain(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct store_options opts = {.max_pending = 10};
    struct acks a = {.want = 10};
    int accepted = 0, refused = 0;

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, &opts);
    for (int i = 0; i < 15; i++) {
        char key[32];
        snprintf(key, sizeof(key), "cap-%d", i);
        int rc = store_kv_put(st, NS, key, "1", 1, ack_cb, &a);
        if (rc == 0)
            accepted++;
        else if (rc == -EAGAIN)
            refused++;
        else
            fail_msg("unexpected %d", rc);
    }
    assert_int_equal(accepted, 10);
    assert_int_equal(refused, 5);
    assert_true(testloop_run_until(&loop, acks_reached, &a, DEADLINE_MS));
    assert_int_equal(a.done, 10);         /* refused ones never call back */
    put_wait(&loop, st, "after", "1", 0); /* room again once acknowledged */

    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_invalid_json_fails_alone_and_its_batch_commits(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct acks good = {.want = 2}, bad = {.want = 1};

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    assert_int_equal(store_kv_put(st, NS, "a", "[1]", 3, ack_cb, &good), 0);
    assert_int_equal(store_kv_put(st, NS, "b", "{not json", 9, ack_cb, &bad), 0);
    assert_int_equal(store_kv_put(st, NS, "c", "[3]", 3, ack_cb, &good), 0);
    assert_true(testloop_run_until(&loop, acks_reached, &good, DEADLINE_MS));
    assert_true(testloop_run_until(&loop, acks_reached, &bad, DEADLINE_MS));
    assert_int_equal(good.failed, 0);
    assert_int_equal(bad.last, -EINVAL);
    assert_true(store_ready(st)); /* one bad op is not a sick store */
    assert_int_equal(get_wait(&loop, st, "a", NULL), 0);
    assert_int_equal(get_wait(&loop, st, "b", NULL), -ENOENT);
    assert_int_equal(get_wait(&loop, st, "c", NULL), 0);

    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

/* ---- faults --------------------------------------------------------------------------- */

struct full_seen {
    struct store *st;
    bool done;
    int status;
    bool ready; /* store_ready() as the failing callback saw it */
    char status_text[STORE_WHY_MAX];
};

static void full_cb(int status, void *arg)
{
    struct full_seen *f = arg;
    f->done = true;
    f->status = status;
    f->ready = store_ready(f->st);
    snprintf(f->status_text, sizeof(f->status_text), "%s", store_status(f->st));
}

static bool full_done(void *arg)
{
    return ((struct full_seen *)arg)->done;
}

static void test_full_disk_fails_the_batch_and_recovers_after_a_commit(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    size_t big_len = 256 * 1024;
    char *big = xmalloc(big_len + 3);
    struct full_seen f = {0};
    struct store_stats stats;

    big[0] = '"';
    memset(big + 1, 'x', big_len);
    big[big_len + 1] = '"';
    big[big_len + 2] = '\0';
    assert_int_equal(uv_loop_init(&loop), 0);
    f.st = open_store(&loop, data_dir, NULL);
    put_wait(&loop, f.st, "small", "1", 0);

    /* The database may not grow by a page from now on: SQLite's own "disk full". */
    free(sql_wait(&loop, f.st, "PRAGMA max_page_count = 1"));
    assert_int_equal(store_kv_put(f.st, NS, "big", big, strlen(big), full_cb, &f), 0);
    assert_true(testloop_run_until(&loop, full_done, &f, DEADLINE_MS));
    assert_int_equal(f.status, -ENOSPC);
    assert_false(f.ready);
    if (strstr(f.status_text, "disk full") == NULL || strstr(f.status_text, "SQLITE_FULL") == NULL)
        fail_msg("status does not say disk full: %s", f.status_text);
    print_message("status while full: %s\n", f.status_text);
    store_stats(f.st, &stats);
    assert_true(stats.batches_failed >= 1);

    /* Space comes back; the next commit makes the store ready again. */
    free(sql_wait(&loop, f.st, "PRAGMA max_page_count = 1073741823"));
    assert_true(store_ready(f.st));
    assert_string_equal(store_status(f.st), "ok");
    put_wait(&loop, f.st, "big", big, 0);
    assert_int_equal(get_wait(&loop, f.st, "small", NULL), 0);

    close_store(&loop, f.st);
    loop_finish(&loop);
    free(big);
    free(data_dir);
    tmp_dir_free(tmp);
}

struct stats_wait {
    struct store *st;
    uint64_t busy_retries;
};

static bool busy_retried(void *arg)
{
    struct stats_wait *w = arg;
    struct store_stats stats;
    store_stats(w->st, &stats);
    return stats.busy_retries >= w->busy_retries;
}

static void test_locked_database_is_retried_then_commits(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    char *db_path = xasprintf("%s/%s", data_dir, STORE_DB_FILE);
    uv_loop_t loop;
    struct store_options opts = {.busy_timeout_ms = 20};
    struct acks a = {.want = 1};
    sqlite3 *other = NULL;

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, &opts);
    /* Another connection (an admin's sqlite3 shell, a backup) holds the write lock. */
    assert_int_equal(sqlite3_open(db_path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    assert_int_equal(store_kv_put(st, NS, "patient", "1", 1, ack_cb, &a), 0);
    struct stats_wait w = {.st = st, .busy_retries = 1};
    assert_true(testloop_run_until(&loop, busy_retried, &w, DEADLINE_MS));
    assert_int_equal(a.done, 0); /* not acknowledged while it cannot commit */

    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_true(testloop_run_until(&loop, acks_reached, &a, DEADLINE_MS));
    assert_int_equal(a.last, 0);
    assert_true(store_ready(st));
    assert_int_equal(sqlite3_close(other), SQLITE_OK);

    close_store(&loop, st);
    loop_finish(&loop);
    free(db_path);
    free(data_dir);
    tmp_dir_free(tmp);
}

/* ---- opening -------------------------------------------------------------------------- */

static void test_newer_schema_version_is_refused(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    char *db_path = xasprintf("%s/%s", data_dir, STORE_DB_FILE);
    char *want = xasprintf("has schema version 9, this arun knows up to %zu: use a newer arun "
                           "or another data_dir",
                           store_sqlite_migrations_count);
    uv_loop_t loop;
    sqlite3 *db = NULL;
    struct store *st = NULL;
    struct store_options opts = {.data_dir = data_dir};
    struct buf err;

    assert_int_equal(mkdir(data_dir, 0700), 0);
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 9", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);

    assert_int_equal(uv_loop_init(&loop), 0);
    buf_init(&err, 4096);
    assert_int_equal(store_open(&loop, &opts, &st, &err), -ENOTSUP);
    assert_null(st);
    if (strstr(buf_cstr(&err), want) == NULL || strstr(buf_cstr(&err), db_path) == NULL)
        fail_msg("unexpected error: %s", buf_cstr(&err));
    print_message("refused: %s\n", buf_cstr(&err));
    buf_cleanup(&err);
    loop_finish(&loop);
    free(want);
    free(db_path);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_second_open_of_a_data_dir_is_refused(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    char *want =
        xasprintf("data_dir %s is in use by another arun (pid %ld)", data_dir, (long)getpid());
    uv_loop_t loop;
    struct store *second = NULL;
    struct store_options opts = {.data_dir = data_dir};
    struct buf err;

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *first = open_store(&loop, data_dir, NULL);
    buf_init(&err, 4096);
    assert_int_equal(store_open(&loop, &opts, &second, &err), -EBUSY);
    assert_null(second);
    assert_string_equal(buf_cstr(&err), want);
    buf_cleanup(&err);

    /* The lock goes with the store: once closed, the data_dir opens again. */
    close_store(&loop, first);
    close_store(&loop, open_store(&loop, data_dir, NULL));
    loop_finish(&loop);
    free(want);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_unsupported_url_is_refused_without_echoing_it(void **state)
{
    uv_loop_t loop;
    struct store *st = NULL;
    struct store_options opts = {.url = "postgres://arun:secret@db/arun",
                                 .data_dir = "/nonexistent"};
    struct buf err;

    assert_int_equal(uv_loop_init(&loop), 0);
    buf_init(&err, 4096);
    assert_int_equal(store_open(&loop, &opts, &st, &err), -ENOTSUP);
    assert_null(strstr(buf_cstr(&err), "secret"));
    assert_non_null(strstr(buf_cstr(&err), "PostgreSQL"));
    buf_cleanup(&err);
    loop_finish(&loop);
}

static void test_synchronous_normal_works(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp), *value = NULL;
    uv_loop_t loop;
    struct store_options opts = {.synchronous = CONFIG_SYNC_NORMAL};

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, &opts);
    value = sql_wait(&loop, st, "PRAGMA synchronous");
    assert_string_equal(value, "1"); /* NORMAL */
    free(value);
    put_wait(&loop, st, "relaxed", "{\"ok\":true}", 0);
    close_store(&loop, st);

    st = open_store(&loop, data_dir, &opts);
    assert_int_equal(get_wait(&loop, st, "relaxed", &value), 0);
    assert_string_equal(value, "{\"ok\":true}");
    free(value);
    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* First: it forks, and the parent must have no threads yet. */
        cmocka_unit_test(test_acknowledged_write_survives_kill_9),
        cmocka_unit_test(test_put_then_get_roundtrips_through_the_loop),
        cmocka_unit_test(test_delete_removes_the_key),
        cmocka_unit_test(test_list_returns_a_namespace_as_one_object),
        cmocka_unit_test(test_get_of_a_missing_key_is_enoent),
        cmocka_unit_test(test_invalid_arguments_fail_without_calling_back),
        cmocka_unit_test(test_puts_in_one_turn_share_few_commits),
        cmocka_unit_test(test_close_drains_submitted_puts),
        cmocka_unit_test(test_ops_submitted_while_closing_are_refused),
        cmocka_unit_test(test_submissions_past_the_pending_cap_fail_with_eagain),
        cmocka_unit_test(test_invalid_json_fails_alone_and_its_batch_commits),
        cmocka_unit_test(test_full_disk_fails_the_batch_and_recovers_after_a_commit),
        cmocka_unit_test(test_locked_database_is_retried_then_commits),
        cmocka_unit_test(test_newer_schema_version_is_refused),
        cmocka_unit_test(test_second_open_of_a_data_dir_is_refused),
        cmocka_unit_test(test_unsupported_url_is_refused_without_echoing_it),
        cmocka_unit_test(test_synchronous_normal_works),
    };
    log_set_level(LOGL_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
