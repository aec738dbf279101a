/*
 * test_store.c: the store's behaviours through its public interface (store.h), plus the two
 * internal hooks of store_int.h for fault injection (store_debug_sql). Every test runs a real uv
 * loop and a real database in a fresh temporary directory, waits on conditions with a deadline
 * (never sleeps), and ends with every handle closed and uv_loop_close() == 0.
 *
 * The program runs twice under ctest: test_store against SQLite, test_store_pg (ARUN_TEST_PG=1)
 * against a throwaway PostgreSQL cluster (scripts/pgtmp.sh, started once per program, a fresh
 * database per test). The shared tests run on both; SQLite's file and pragma faults run on
 * SQLite only; the PostgreSQL faults (a server crash, a killed connection, a lost COMMIT answer,
 * a server down for seconds, concurrent migrations, NOTIFY) on PostgreSQL only.
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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pgtmp.h"
#include "testutil.h"
#include "testloop.h"
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <uv.h>

#include "core/clock.h"
#include "store/store.h"
#include "store/pg_int.h"
#include "store/store_int.h"

#define DEADLINE_MS 10000 /* generous for ASan on a loaded 2-core VM; a pass takes milliseconds */
#define NS "test"

#define DBNOW_SQL "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

static bool use_pg;  /* ARUN_TEST_PG: every store is PostgreSQL */
static int pg_next;  /* databases made so far: each test gets tN */
static char *pg_url; /* the current test's database (a fresh one per tmp_dir_new) */

/* ---- helpers -------------------------------------------------------------------------- */

/* A fresh directory; the store's data_dir is DIR/data, so store_open has to create it. */
static char *tmp_dir_new(void)
{
    const char *base = getenv("ARUN_BUILD_DIR");
    char *dir = xasprintf("%s/store-test-XXXXXX", base != NULL ? base : "/tmp");

    assert_non_null(mkdtemp(dir));
    if (use_pg) {
        free(pg_url);
        pg_url = NULL;
        char name[32];
        snprintf(name, sizeof(name), "t%d", ++pg_next);
        pg_url = pgtmp_createdb(name);
        if (pg_url == NULL)
            fail_msg("scripts/pgtmp.sh could not create database %s", name);
    }
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
    if (opts.url == NULL && use_pg)
        opts.url = pg_url;
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
    struct store_options opts = {.data_dir = data_dir, .url = use_pg ? pg_url : NULL};
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

    if (use_pg) { /* the default the contract promises: a commit waits for the WAL flush */
        value = sql_wait(&loop, st, "SHOW synchronous_commit");
        assert_string_equal(value, "on");
        free(value);
        close_store(&loop, st);
        loop_finish(&loop);
        free(data_dir);
        tmp_dir_free(tmp);
        return;
    }
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

static void test_unreachable_postgres_is_refused_without_echoing_the_url(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct store *st = NULL;
    /* Port 1 on loopback: nothing listens there, the refusal is immediate. */
    struct store_options opts = {.url = "postgres://arun:secret@127.0.0.1:1/arun",
                                 .data_dir = data_dir};
    struct buf err;

    assert_int_equal(uv_loop_init(&loop), 0);
    buf_init(&err, 4096);
    assert_int_equal(store_open(&loop, &opts, &st, &err), -ENOTCONN);
    print_message("refused: %s\n", buf_cstr(&err));
    assert_null(strstr(buf_cstr(&err), "secret"));
    assert_non_null(strstr(buf_cstr(&err), "cannot connect to PostgreSQL"));
    buf_cleanup(&err);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_synchronous_normal_works(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp), *value = NULL;
    uv_loop_t loop;
    struct store_options opts = {.synchronous = CONFIG_SYNC_NORMAL};

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, &opts);
    value = sql_wait(&loop, st, use_pg ? "SHOW synchronous_commit" : "PRAGMA synchronous");
    assert_string_equal(value, use_pg ? "off" : "1"); /* NORMAL */
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

/* ---- PostgreSQL ----------------------------------------------------------------------- */

/* A connection of the test's own to the current database, as user (NULL: the URL's). */
static PGconn *pg_connect(const char *user)
{
    char *url = user == NULL ? xstrdup(pg_url) : NULL;

    if (url == NULL) { /* postgresql://arun@HOST:PORT/DB -> postgresql://USER@HOST:PORT/DB */
        const char *at = strchr(pg_url, '@');
        url = xasprintf("postgresql://%s%s", user, at);
    }
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to the test's PostgreSQL: %s", PQerrorMessage(c));
    free(url);
    return c;
}

/* Runs sql; returns the first value (caller frees; "" when none). */
static char *pg_value(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);

    if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    char *v = xstrdup(s == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return v;
}

static void pg_exec(PGconn *c, const char *sql)
{
    free(pg_value(c, sql));
}

static void put_many(uv_loop_t *loop, struct store *st, const char *prefix, int from, int n)
{
    struct acks a = {.want = n};

    for (int i = from; i < from + n; i++) {
        char key[64], *value = value_for(i);
        snprintf(key, sizeof(key), "%s%d", prefix, i);
        assert_int_equal(store_kv_put(st, NS, key, value, strlen(value), ack_cb, &a), 0);
        free(value);
    }
    assert_true(testloop_run_until(loop, acks_reached, &a, 40000));
    assert_int_equal(a.failed, 0);
}

static void assert_present(uv_loop_t *loop, struct store *st, const char *prefix, int n)
{
    for (int i = 0; i < n; i++) {
        char key[64], *value = NULL, *want = value_for(i);
        snprintf(key, sizeof(key), "%s%d", prefix, i);
        int rc = get_wait(loop, st, key, &value);
        if (rc != 0)
            fail_msg("acknowledged key %s is missing: %d", key, rc);
        assert_string_equal(value, want);
        free(value);
        free(want);
    }
}

static void test_pg_acknowledged_writes_survive_a_server_crash(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct acks a = {.want = 100};

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    put_many(&loop, st, "before-", 0, 200);
    /* Some on the wire as the server dies: they wait for it and commit once it is back. */
    for (int i = 0; i < 100; i++) {
        char key[64], *value = value_for(i);
        snprintf(key, sizeof(key), "during-%d", i);
        assert_int_equal(store_kv_put(st, NS, key, value, strlen(value), ack_cb, &a), 0);
        free(value);
    }
    assert_int_equal(pgtmp_do("kill"), 0);
    assert_int_equal(pgtmp_do("restart"), 0);
    assert_true(testloop_run_until(&loop, acks_reached, &a, 40000));
    assert_int_equal(a.failed, 0);
    assert_present(&loop, st, "before-", 200);
    assert_present(&loop, st, "during-", 100);
    assert_true(store_ready(st));
    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

/* Usage adds kept in flight: each ack'd add counted, so a double apply shows in the sum. */
#define ADDS_TOTAL 1000
#define ADDS_IN_FLIGHT 16
struct adds {
    struct store *st;
    int submitted, acked, failed;
};

static void add_ack_cb(int status, void *arg);

static void add_one(struct adds *a)
{
    a->submitted++;
    assert_int_equal(store_usage_add(a->st, "t", "2024-01-01", 1, 1, add_ack_cb, a), 0);
}

static void add_ack_cb(int status, void *arg)
{
    struct adds *a = arg;

    a->acked++;
    if (status != 0)
        a->failed++;
    if (a->submitted < ADDS_TOTAL)
        add_one(a);
}

struct acked_at_least {
    struct adds *a;
    int n;
};

static bool acked_at_least(void *arg)
{
    struct acked_at_least *w = arg;
    return w->a->acked >= w->n;
}

/* The requests counted for tenant t (usage_day's page). */
static char *usage_of_t(uv_loop_t *loop, struct store *st)
{
    struct got g = {0};
    assert_int_equal(store_usage_day(st, "2024-01-01", NULL, 10, got_cb, &g), 0);
    assert_true(testloop_run_until(loop, got_done, &g, DEADLINE_MS));
    assert_int_equal(g.status, 0);
    return g.value;
}

static void test_pg_killed_connection_reconnects_and_applies_each_write_once(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp), *value;
    uv_loop_t loop;
    struct adds a = {0};
    PGconn *admin = pg_connect(NULL);

    assert_int_equal(uv_loop_init(&loop), 0);
    a.st = open_store(&loop, data_dir, NULL);
    for (int i = 0; i < ADDS_IN_FLIGHT; i++)
        add_one(&a);
    for (int kill = 1; kill <= 5; kill++) {
        struct acked_at_least w = {.a = &a, .n = kill * ADDS_TOTAL / 6};
        assert_true(testloop_run_until(&loop, acked_at_least, &w, 40000));
        value = pg_value(admin, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE application_name = 'arun-writer' AND datname = "
                                "current_database()");
        assert_string_equal(value, "1");
        free(value);
    }
    struct acked_at_least all = {.a = &a, .n = ADDS_TOTAL};
    assert_true(testloop_run_until(&loop, acked_at_least, &all, 40000));
    assert_int_equal(a.failed, 0);
    value = usage_of_t(&loop, a.st);
    assert_string_equal(value, "{\"data\":[{\"tenant\":\"t\",\"output_tokens\":1000,\"requests\":"
                               "1000}],\"has_more\":false}");
    free(value);
    PQfinish(admin);
    close_store(&loop, a.st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

/* Until synchronous_standby_names takes effect (the checkpointer applies it) a commit does not
 * wait. A probe insert that gets no answer within 200 ms waits: it is cancelled (it committed
 * locally; the table is the test's own). */
static void wait_sync_rep_on(PGconn *super)
{
    uint64_t deadline = clock_mono_ms() + DEADLINE_MS;
    bool answered = true;

    while (answered && clock_mono_ms() < deadline) {
        struct pollfd p = {.fd = PQsocket(super), .events = POLLIN};
        PGresult *r;
        assert_int_equal(PQsendQuery(super, "INSERT INTO sync_probe VALUES (1)"), 1);
        answered = poll(&p, 1, 200) > 0;
        if (!answered) {
            char why[256];
            PGcancel *cancel = PQgetCancel(super);
            assert_int_equal(PQcancel(cancel, why, sizeof(why)), 1);
            PQfreeCancel(cancel);
        }
        while ((r = PQgetResult(super)) != NULL)
            PQclear(r);
    }
    assert_false(answered);
}

static bool writer_waits_for_sync_rep(void *arg)
{
    char *v = pg_value(arg, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'arun-writer' AND wait_event = 'SyncRep'");
    bool waits = strcmp(v, "1") == 0;
    free(v);
    return waits;
}

static void test_pg_commit_whose_answer_was_lost_counts_once(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp), *value;
    uv_loop_t loop;
    struct acks a = {.want = 1};
    PGconn *super = pg_connect("postgres");

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    /* A synchronous standby that never comes: a COMMIT is written locally, then waits. Killing
     * the backend then ends the connection without an answer: the commit is in doubt. */
    pg_exec(super, "CREATE TABLE sync_probe (x integer)");
    pg_exec(super, "ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
    pg_exec(super, "SELECT pg_reload_conf()");
    wait_sync_rep_on(super);
    assert_int_equal(store_usage_add(st, "t", "2024-01-01", 1, 1, ack_cb, &a), 0);
    assert_true(testloop_run_until(&loop, writer_waits_for_sync_rep, super, DEADLINE_MS));
    pg_exec(super, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                   "application_name = 'arun-writer'");
    pg_exec(super, "ALTER SYSTEM RESET synchronous_standby_names");
    pg_exec(super, "SELECT pg_reload_conf()");
    assert_true(testloop_run_until(&loop, acks_reached, &a, 40000));
    assert_int_equal(a.last, 0);
    value = usage_of_t(&loop, st);
    assert_string_equal(value, "{\"data\":[{\"tenant\":\"t\",\"output_tokens\":1,\"requests\":"
                               "1}],\"has_more\":false}");
    free(value);
    put_wait(&loop, st, "after", "1", 0);
    assert_true(store_ready(st));
    PQfinish(super);
    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

/* A TCP relay between the store and PostgreSQL that can cut the network: it closes its side
 * towards the store and leaves the server's side open, as a partition does (the server's
 * backend lives on, holding its transaction, until something ends it). */
#define PROXY_PAIRS 16
struct proxy {
    int listen_fd, port, target_port, ctl[2];
    int client[PROXY_PAIRS], server[PROXY_PAIRS]; /* -1: free (server kept open once cut) */
    pthread_t thread;
};

static int tcp_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Moves what from has to to; false when either side is done. */
static bool relay(int from, int to)
{
    char buf[16384];
    ssize_t n = read(from, buf, sizeof(buf));

    for (ssize_t off = 0; n > 0 && off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0)
            return false;
        off += w;
    }
    return n > 0;
}

static void proxy_accept(struct proxy *px)
{
    int c = accept(px->listen_fd, NULL, NULL), s = c >= 0 ? tcp_connect(px->target_port) : -1;

    for (int i = 0; s >= 0 && i < PROXY_PAIRS; i++) {
        if (px->client[i] < 0 && px->server[i] < 0) {
            px->client[i] = c;
            px->server[i] = s;
            return;
        }
    }
    if (c >= 0)
        close(c);
    if (s >= 0)
        close(s);
}

static void *proxy_main(void *arg)
{
    struct proxy *px = arg;

    for (;;) {
        struct pollfd p[2 + 2 * PROXY_PAIRS];
        int idx[2 + 2 * PROXY_PAIRS], n = 2;
        char cmd;
        p[0] = (struct pollfd){.fd = px->ctl[0], .events = POLLIN};
        p[1] = (struct pollfd){.fd = px->listen_fd, .events = POLLIN};
        for (int i = 0; i < PROXY_PAIRS; i++) {
            if (px->client[i] < 0)
                continue;
            idx[n] = i;
            p[n++] = (struct pollfd){.fd = px->client[i], .events = POLLIN};
            idx[n] = i;
            p[n++] = (struct pollfd){.fd = px->server[i], .events = POLLIN};
        }
        if (poll(p, (nfds_t)n, -1) <= 0)
            continue;
        if (p[0].revents != 0) {
            if (read(px->ctl[0], &cmd, 1) != 1 || cmd == 'q')
                return NULL;
            for (int i = 0; i < PROXY_PAIRS; i++) { /* 'c': cut the store's side */
                if (px->client[i] >= 0)
                    close(px->client[i]);
                px->client[i] = -1;
            }
            continue;
        }
        if (p[1].revents != 0)
            proxy_accept(px);
        for (int j = 2; j < n; j++) {
            int i = idx[j];
            bool from_client = (j % 2) == 0;
            if (p[j].revents == 0 || px->client[i] < 0)
                continue;
            if (!relay(from_client ? px->client[i] : px->server[i],
                       from_client ? px->server[i] : px->client[i])) {
                close(px->client[i]);
                close(px->server[i]);
                px->client[i] = px->server[i] = -1;
            }
        }
    }
}

static void proxy_start(struct proxy *px, int target_port)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);

    *px = (struct proxy){.target_port = target_port};
    for (int i = 0; i < PROXY_PAIRS; i++)
        px->client[i] = px->server[i] = -1;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    px->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(px->listen_fd >= 0);
    assert_int_equal(bind(px->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(px->listen_fd, 16), 0);
    assert_int_equal(getsockname(px->listen_fd, (struct sockaddr *)&a, &len), 0);
    px->port = ntohs(a.sin_port);
    assert_int_equal(pipe(px->ctl), 0);
    assert_int_equal(pthread_create(&px->thread, NULL, proxy_main, px), 0);
}

static void proxy_send(struct proxy *px, char cmd)
{
    assert_int_equal(write(px->ctl[1], &cmd, 1), 1);
}

static void proxy_stop(struct proxy *px)
{
    proxy_send(px, 'q');
    pthread_join(px->thread, NULL);
    for (int i = 0; i < PROXY_PAIRS; i++) {
        if (px->client[i] >= 0)
            close(px->client[i]);
        if (px->server[i] >= 0)
            close(px->server[i]);
    }
    close(px->listen_fd);
    close(px->ctl[0]);
    close(px->ctl[1]);
}

/* A network cut while a COMMIT waits (for a synchronous standby that never comes): the old
 * backend lives on, its transaction "in progress" and holding its locks. The reconnect ends it,
 * after which txid_status says committed and the batch counts once. */
static void test_pg_a_network_cut_mid_commit_ends_the_old_backend_and_counts_once(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp), *value;
    const char *port = strrchr(pg_url, ':') + 1, *db = strrchr(pg_url, '/') + 1;
    struct proxy px;
    uv_loop_t loop;
    struct acks a = {.want = 1};
    PGconn *super = pg_connect("postgres");

    proxy_start(&px, atoi(port));
    char *url = xasprintf("postgresql://arun@127.0.0.1:%d/%s", px.port, db);
    struct store_options opts = {.url = url};
    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, &opts);
    pg_exec(super, "CREATE TABLE sync_probe (x integer)");
    pg_exec(super, "ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
    pg_exec(super, "SELECT pg_reload_conf()");
    wait_sync_rep_on(super);
    assert_int_equal(store_usage_add(st, "t", "2024-01-01", 1, 1, ack_cb, &a), 0);
    assert_true(testloop_run_until(&loop, writer_waits_for_sync_rep, super, DEADLINE_MS));
    proxy_send(&px, 'c');
    assert_true(testloop_run_until(&loop, acks_reached, &a, 40000));
    assert_int_equal(a.last, 0);
    pg_exec(super, "ALTER SYSTEM RESET synchronous_standby_names");
    pg_exec(super, "SELECT pg_reload_conf()");
    value = usage_of_t(&loop, st);
    assert_string_equal(value, "{\"data\":[{\"tenant\":\"t\",\"output_tokens\":1,\"requests\":"
                               "1}],\"has_more\":false}");
    free(value);
    assert_true(store_ready(st));
    PQfinish(super);
    close_store(&loop, st);
    loop_finish(&loop);
    proxy_stop(&px);
    free(url);
    free(data_dir);
    tmp_dir_free(tmp);
}

static bool any_ack(void *arg)
{
    return ((struct acks *)arg)->done > 0;
}

static bool store_not_ready(void *arg)
{
    return !store_ready(arg);
}

static void test_pg_server_down_for_seconds_holds_writes_until_it_is_back(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct acks a = {.want = 10};

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    put_wait(&loop, st, "first", "1", 0);
    assert_int_equal(pgtmp_do("kill"), 0);
    for (int i = 0; i < 10; i++) {
        char key[32];
        snprintf(key, sizeof(key), "held-%d", i);
        assert_int_equal(store_kv_put(st, NS, key, "2", 1, ack_cb, &a), 0);
    }
    assert_true(testloop_run_until(&loop, store_not_ready, st, DEADLINE_MS));
    print_message("while down: %s\n", store_status(st));
    assert_non_null(strstr(store_status(st), "PostgreSQL connection lost"));
    /* Down for 3 s: nothing is acknowledged, nothing fails. */
    assert_false(testloop_run_until(&loop, any_ack, &a, 3000));
    assert_int_equal(a.done, 0);
    assert_int_equal(pgtmp_do("restart"), 0);
    assert_true(testloop_run_until(&loop, acks_reached, &a, 40000));
    assert_int_equal(a.failed, 0);
    assert_true(store_ready(st));
    assert_string_equal(store_status(st), "ok");
    assert_int_equal(get_wait(&loop, st, "held-9", NULL), 0);
    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_pg_newer_schema_version_is_refused(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    char *want = xasprintf("has schema version 9, this arun knows up to %zu: use a newer arun "
                           "or another database",
                           store_postgres_migrations_count);
    const char *at = strchr(pg_url, '@');
    char *url = xasprintf("postgresql://arun:secret%s", at); /* trust auth: any password */
    uv_loop_t loop;
    struct store *st = NULL;
    struct store_options opts = {.data_dir = data_dir, .url = url};
    struct buf err;
    PGconn *admin = pg_connect(NULL);

    pg_exec(admin, "CREATE TABLE arun_schema (version integer NOT NULL)");
    pg_exec(admin, "INSERT INTO arun_schema VALUES (9)");
    assert_int_equal(uv_loop_init(&loop), 0);
    buf_init(&err, 4096);
    assert_int_equal(store_open(&loop, &opts, &st, &err), -ENOTSUP);
    assert_null(st);
    if (strstr(buf_cstr(&err), want) == NULL || strstr(buf_cstr(&err), "secret") != NULL)
        fail_msg("unexpected error: %s", buf_cstr(&err));
    print_message("refused: %s\n", buf_cstr(&err));
    buf_cleanup(&err);
    loop_finish(&loop);
    PQfinish(admin);
    free(url);
    free(want);
    free(data_dir);
    tmp_dir_free(tmp);
}

struct opener {
    char *data_dir;
    pthread_barrier_t *start;
    int rc;
    char err[512];
};

/* One node starting: opens (migrating) and closes a store on a loop of its own. */
static void *open_in_thread(void *arg)
{
    struct opener *o = arg;
    struct store_options opts = {.data_dir = o->data_dir, .url = pg_url};
    struct store *st = NULL;
    struct buf err;
    uv_loop_t loop;

    uv_loop_init(&loop);
    buf_init(&err, sizeof(o->err) - 1);
    pthread_barrier_wait(o->start);
    o->rc = store_open(&loop, &opts, &st, &err);
    snprintf(o->err, sizeof(o->err), "%s", buf_cstr(&err));
    if (o->rc == 0)
        store_close(st);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    buf_cleanup(&err);
    return NULL;
}

static void test_pg_two_nodes_opening_an_empty_database_migrate_once(void **state)
{
    char *tmp = tmp_dir_new(), *value;
    struct opener o[2];
    pthread_t threads[2];
    pthread_barrier_t start;

    pthread_barrier_init(&start, NULL, 2);
    for (int i = 0; i < 2; i++) {
        o[i] = (struct opener){.data_dir = xasprintf("%s/node%d", tmp, i), .start = &start};
        assert_int_equal(pthread_create(&threads[i], NULL, open_in_thread, &o[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        if (o[i].rc != 0)
            fail_msg("node %d could not open: %d %s", i, o[i].rc, o[i].err);
        free(o[i].data_dir);
    }
    pthread_barrier_destroy(&start);
    PGconn *admin = pg_connect(NULL);
    value = pg_value(admin, "SELECT count(*) || ' ' || max(version) FROM arun_schema");
    char *want = xasprintf("1 %zu", store_postgres_migrations_count);
    assert_string_equal(value, want);
    free(want);
    free(value);
    PQfinish(admin);
    tmp_dir_free(tmp);
}

struct listener {
    PGconn *c;
    bool seen; /* sticky: testloop_run_until asks once more after it held */
};

static bool notified(void *arg)
{
    struct listener *l = arg;
    PGnotify *n;

    assert_int_equal(PQconsumeInput(l->c), 1);
    while ((n = PQnotifies(l->c)) != NULL) {
        l->seen = l->seen || strcmp(n->relname, "arun_keys") == 0;
        PQfreemem(n);
    }
    return l->seen;
}

static void test_pg_key_changes_are_notified_at_commit(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct acks a = {.want = 1};
    struct store_key k = {.id = "key_1",
                          .hash =
                              "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                          .tenant = "t",
                          .role = "member",
                          .created_ms = 1};
    struct listener listener = {.c = pg_connect(NULL)};

    pg_exec(listener.c, "LISTEN arun_keys");
    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    assert_false(notified(&listener));
    assert_int_equal(store_key_put(st, &k, ack_cb, &a), 0);
    assert_true(testloop_run_until(&loop, acks_reached, &a, DEADLINE_MS));
    assert_int_equal(a.last, 0);
    assert_true(testloop_run_until(&loop, notified, &listener, DEADLINE_MS));
    PQfinish(listener.c);
    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

/* ---- tenancy and cluster reads: the same text from every backend ------------------------ */

static char *read_wait(uv_loop_t *loop, int rc, struct got *g)
{
    assert_int_equal(rc, 0);
    assert_true(testloop_run_until(loop, got_done, g, DEADLINE_MS));
    assert_int_equal(g->status, 0);
    return g->value;
}

static void write_wait(uv_loop_t *loop, int rc, struct acks *a)
{
    assert_int_equal(rc, 0);
    a->want = a->done + 1;
    assert_true(testloop_run_until(loop, acks_reached, a, DEADLINE_MS));
    assert_int_equal(a->last, 0);
}

static void test_tenancy_reads_answer_the_same_text_on_every_backend(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp), *v;
    uv_loop_t loop;
    struct acks a = {0};
    struct got g = {0};
    const char *hash1 = "1111111111111111111111111111111111111111111111111111111111111111";
    const char *hash2 = "2222222222222222222222222222222222222222222222222222222222222222";
    struct store_key k1 = {.id = "key_a",
                           .hash = hash1,
                           .tenant = "t1",
                           .role = "admin",
                           .name = "ops \"laptop\"",
                           .created_ms = 10};
    struct store_key k2 = {
        .id = "key_b", .hash = hash2, .tenant = "t2", .role = "member", .created_ms = 20};
    struct store_audit e1 = {.ts_ms = 100,
                             .actor = "key_a",
                             .tenant = "t1",
                             .action = "key.create",
                             .target = "key_b",
                             .outcome = "ok",
                             .remote = "127.0.0.1:5555",
                             .detail = "{\"why\":\"test\"}",
                             .detail_len = 14};
    struct store_audit e2 = {
        .ts_ms = 200, .actor = "anonymous", .action = "auth.failure", .outcome = "denied"};

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    write_wait(&loop, store_key_put(st, &k1, ack_cb, &a), &a);
    write_wait(&loop, store_key_put(st, &k2, ack_cb, &a), &a);
    assert_int_equal(store_key_put(st, &k2, ack_cb, &a), 0); /* the same id and hash again */
    a.want = a.done + 1;
    assert_true(testloop_run_until(&loop, acks_reached, &a, DEADLINE_MS));
    assert_int_equal(a.last, -EEXIST);
    write_wait(&loop, store_key_revoke(st, "key_b", 30, ack_cb, &a), &a);
    write_wait(&loop, store_key_revoke(st, "key_b", 40, ack_cb, &a), &a); /* keeps 30 */
    write_wait(&loop, store_key_touch(st, "key_a", 50, ack_cb, &a), &a);
    write_wait(&loop, store_key_touch(st, "key_a", 45, ack_cb, &a), &a); /* never lowers */
    assert_int_equal(store_key_touch(st, "key_zz", 50, ack_cb, &a), 0);
    a.want = a.done + 1;
    assert_true(testloop_run_until(&loop, acks_reached, &a, DEADLINE_MS));
    assert_int_equal(a.last, -ENOENT);
    v = read_wait(&loop, store_keys_list(st, NULL, 10, got_cb, &g), &g);
    assert_string_equal(
        v, "{\"data\":[{\"id\":\"key_a\",\"hash\":\"1111111111111111111111111111111111111111111111"
           "111111111111111111\",\"tenant\":\"t1\",\"role\":\"admin\",\"name\":\"ops "
           "\\\"laptop\\\"\",\"created_ms\":10,\"last_used_ms\":50,\"revoked_ms\":null},{\"id\":"
           "\"key_b\",\"hash\":\"2222222222222222222222222222222222222222222222222222222222222222"
           "\",\"tenant\":\"t2\",\"role\":\"member\",\"name\":null,\"created_ms\":20,"
           "\"last_used_ms\":null,\"revoked_ms\":30}],\"has_more\":false}");
    free(v);
    g = (struct got){0};
    v = read_wait(&loop, store_keys_list(st, "key_a", 1, got_cb, &g), &g);
    assert_non_null(strstr(v, "\"id\":\"key_b\""));
    assert_non_null(strstr(v, "\"has_more\":false}"));
    free(v);
    g = (struct got){0};
    v = read_wait(&loop, store_keys_list(st, NULL, 1, got_cb, &g), &g);
    assert_non_null(strstr(v, "\"has_more\":true}"));
    free(v);

    write_wait(&loop, store_usage_add(st, "t2", "2024-05-01", 7, 1, ack_cb, &a), &a);
    write_wait(&loop, store_usage_add(st, "t1", "2024-05-01", 5, 1, ack_cb, &a), &a);
    write_wait(&loop, store_usage_add(st, "t1", "2024-05-01", 10, 2, ack_cb, &a), &a);
    write_wait(&loop, store_usage_add(st, "t1", "2024-05-02", 1, 1, ack_cb, &a), &a);
    g = (struct got){0};
    v = read_wait(&loop, store_usage_day(st, "2024-05-01", NULL, 10, got_cb, &g), &g);
    assert_string_equal(v, "{\"data\":[{\"tenant\":\"t1\",\"output_tokens\":15,\"requests\":3},"
                           "{\"tenant\":\"t2\",\"output_tokens\":7,\"requests\":1}],"
                           "\"has_more\":false}");
    free(v);

    write_wait(&loop, store_audit_append(st, &e1, ack_cb, &a), &a);
    write_wait(&loop, store_audit_append(st, &e2, ack_cb, &a), &a);
    e2.detail = "[1]";
    e2.detail_len = 3;
    assert_int_equal(store_audit_append(st, &e2, ack_cb, &a), 0); /* not an object */
    a.want = a.done + 1;
    assert_true(testloop_run_until(&loop, acks_reached, &a, DEADLINE_MS));
    assert_int_equal(a.last, -EINVAL);
    g = (struct got){0};
    v = read_wait(&loop, store_audit_list(st, 0, 0, 10, got_cb, &g), &g);
    assert_string_equal(
        v, "{\"data\":[{\"seq\":1,\"ts_ms\":100,\"actor\":\"key_a\",\"tenant\":\"t1\",\"action\":"
           "\"key.create\",\"target\":\"key_b\",\"outcome\":\"ok\",\"remote\":\"127.0.0.1:5555\","
           "\"detail\":{\"why\":\"test\"}},{\"seq\":2,\"ts_ms\":200,\"actor\":\"anonymous\","
           "\"tenant\":null,\"action\":\"auth.failure\",\"target\":null,\"outcome\":\"denied\","
           "\"remote\":null,\"detail\":{}}],\"has_more\":false}");
    free(v);
    g = (struct got){0};
    v = read_wait(&loop, store_audit_list(st, 150, 0, 10, got_cb, &g), &g);
    assert_non_null(strstr(v, "\"seq\":2"));
    assert_null(strstr(v, "\"seq\":1"));
    free(v);

    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

struct mixed_reads {
    int done, good_ok, bad_einval, other;
};

static void mixed_read_cb(int status, const char *value, size_t len, void *arg)
{
    struct mixed_reads *m = arg;
    (void)len;
    m->done++;
    if (status == 0 && value != NULL && strcmp(value, "1") == 0)
        m->good_ok++;
    else if (status == -EINVAL)
        m->bad_einval++;
    else
        m->other++;
}

static bool mixed_reads_done(void *arg)
{
    return ((struct mixed_reads *)arg)->done == 100;
}

/* A key that is not UTF-8 is refused by PostgreSQL (22021, op-local): a write fails alone; a
 * read fails alone, and so does its read transaction, which the reader replaces for the rest of
 * its batch. */
static void test_pg_a_read_that_fails_alone_leaves_its_batch_readable(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    uv_loop_t loop;
    struct mixed_reads m = {0};

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, NULL);
    /* First on the connection: the statement is prepared even though its execution fails. */
    put_wait(&loop, st, "bad\xff", "1", -EINVAL);
    put_wait(&loop, st, "good", "1", 0);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(store_kv_get(st, NS, "bad\xff", mixed_read_cb, &m), 0);
        assert_int_equal(store_kv_get(st, NS, "good", mixed_read_cb, &m), 0);
    }
    assert_true(testloop_run_until(&loop, mixed_reads_done, &m, DEADLINE_MS));
    assert_int_equal(m.good_ok, 50);
    assert_int_equal(m.bad_einval, 50);
    assert_int_equal(m.other, 0);
    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

/* Notifications of channel arun_events: every line seen (and how often) into seen. */
static int collect_event_lines(PGconn *c, char *seen, int want, int responses, uint64_t ms)
{
    uint64_t deadline = clock_mono_ms() + ms;
    int lines = 0;

    while (lines < want && clock_mono_ms() < deadline) {
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
        PGnotify *n;
        poll(&p, 1, 100);
        assert_int_equal(PQconsumeInput(c), 1);
        while ((n = PQnotifies(c)) != NULL) {
            assert_string_equal(n->relname, "arun_events");
            assert_true(strlen(n->extra) <= 7900); /* PostgreSQL refuses 8000 */
            for (char *save = NULL, *l = strtok_r(n->extra, "\n", &save); l != NULL;
                 l = strtok_r(NULL, "\n", &save)) {
                int i = -1;
                if (sscanf(l, "tenant-%*d resp_%d", &i) != 1 || i < 0 || i >= responses)
                    fail_msg("unexpected notice line: %s", l);
                seen[i]++;
                lines++;
            }
            PQfreemem(n);
        }
    }
    return lines;
}

static void test_pg_event_notices_go_at_commit_once_each_in_small_payloads(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp);
    struct store_options opts = {.url = pg_url};
    struct store_conn *w = NULL, *r = NULL;
    struct store_op probe = {.kind = STORE_OP_PROBE};
    char seen[400] = {0};
    PGconn *listener = pg_connect(NULL);
    struct buf err;

    pg_exec(listener, "LISTEN arun_events");
    buf_init(&err, 4096);
    assert_int_equal(store_postgres_backend.open(&opts, data_dir, &w, &r, &err), 0);
    struct pg_conn *pc = (struct pg_conn *)w;
    /* A rolled-back transaction notifies nobody. */
    assert_int_equal(w->be->begin(w, true), 0);
    buf_puts(&pc->notify, "tenant-1 resp_399\n");
    assert_int_equal(w->be->apply(w, &probe), 0);
    w->be->rollback(w);
    /* 400 responses, each written twice: ~23 KB of lines, sent once each. */
    assert_int_equal(w->be->begin(w, true), 0);
    for (int i = 0; i < 400; i++)
        for (int twice = 0; twice < 2; twice++)
            buf_printf(&pc->notify, "tenant-%03d resp_%040d\n", i % 7, i);
    assert_int_equal(w->be->apply(w, &probe), 0);
    assert_int_equal(collect_event_lines(listener, seen, 1, 400, 300), 0); /* not before */
    assert_int_equal(w->be->commit(w), 0);
    assert_int_equal(collect_event_lines(listener, seen, 400, 400, DEADLINE_MS), 400);
    for (int i = 0; i < 400; i++)
        assert_int_equal(seen[i], 1);
    w->be->close(w);
    r->be->close(r);
    buf_cleanup(&err);
    PQfinish(listener);
    free(data_dir);
    tmp_dir_free(tmp);
}

static char *claim_wait(uv_loop_t *loop, struct store *st, bool restart)
{
    struct got g = {0};
    return read_wait(loop, store_runs_claim(st, 0, restart, 10, got_cb, &g), &g);
}

#define CLAIMED(id, status, node)                                                                  \
    "{\"tenant\":\"t\",\"id\":\"" id "\",\"status\":\"" status "\",\"model\":\"m\","               \
    "\"conversation_id\":null,\"previous_response_id\":null,\"created_ms\":" id                    \
    ",\"background\":false,\"request\":{},\"object\":{\"o\":" id                                   \
    "},\"last_seq\":-1,\"node\":" node "}"

static void test_pg_runs_are_claimed_once_and_leases_renewed(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp), *other_dir, *v;
    uv_loop_t loop;
    struct store_options me_opts = {.node_id = "me"}, other_opts = {.node_id = "other"};
    struct got g = {0};
    PGconn *admin = pg_connect(NULL);

    other_dir = xasprintf("%s/other", tmp);
    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *me = open_store(&loop, data_dir, &me_opts);
    struct store *other = open_store(&loop, other_dir, &other_opts);
    /* 1: a dead node's, expired; 2: a live node's; 3: this node's own, leased by its earlier
     * process (a restart); 4: done. */
    pg_exec(admin,
            "INSERT INTO responses (tenant, id, status, model, created_ms, updated_ms, "
            "background, request, object, node, lease_until_ms) VALUES "
            "('t', '1', 'queued', 'm', 1, 1, false, '{}', '{\"o\":1}', 'dead', 0), "
            "('t', '2', 'in_progress', 'm', 2, 2, false, '{}', '{\"o\":2}', 'alive', "
            "9e15), ('t', '3', 'in_progress', 'm', 3, 3, false, '{}', '{\"o\":3}', 'me', "
            "9e15), ('t', '4', 'completed', 'm', 4, 4, false, '{}', '{\"o\":4}', 'dead', 0)");
    /* Without restart: only the expired run; this node's own live lease is not claimed. */
    v = claim_wait(&loop, me, false);
    assert_string_equal(v, "[" CLAIMED("1", "queued", "\"dead\"") "]");
    free(v);
    /* A restart gives up every lease of this node id first (its earlier process is gone): 3 is
     * claimed now, and 1 again. */
    v = claim_wait(&loop, me, true);
    assert_string_equal(
        v, "[" CLAIMED("1", "queued", "\"me\"") "," CLAIMED("3", "in_progress", "\"me\"") "]");
    free(v);
    v = claim_wait(&loop, other, false); /* their leases are fresh now */
    assert_string_equal(v, "[]");
    free(v);
    /* A row another transaction holds is skipped, not waited for. */
    pg_exec(admin, "UPDATE responses SET lease_until_ms = 0 WHERE id = '2'");
    pg_exec(admin, "BEGIN");
    pg_exec(admin, "SELECT 1 FROM responses WHERE id = '2' FOR UPDATE");
    v = claim_wait(&loop, other, false);
    assert_string_equal(v, "[]");
    free(v);
    pg_exec(admin, "COMMIT");
    v = claim_wait(&loop, other, false);
    assert_string_equal(v, "[" CLAIMED("2", "in_progress", "\"alive\"") "]");
    free(v);
    v = read_wait(&loop, store_leases_renew(me, 0, got_cb, &g), &g);
    assert_string_equal(v, "{\"renewed\":2}");
    free(v);
    g = (struct got){0};
    v = read_wait(&loop, store_leases_renew(other, 0, got_cb, &g), &g);
    assert_string_equal(v, "{\"renewed\":1}");
    free(v);
    v = pg_value(admin,
                 "SELECT string_agg(id || '=' || node, ',' ORDER BY id) FROM responses WHERE "
                 "lease_until_ms BETWEEN " DBNOW_SQL " AND " DBNOW_SQL " + 10000");
    assert_string_equal(v, "1=me,2=other,3=me");
    free(v);
    PQfinish(admin);
    store_close(me);
    close_store(&loop, other);
    loop_finish(&loop);
    free(other_dir);
    free(data_dir);
    tmp_dir_free(tmp);
}

static void test_pg_nodes_are_listed_on_the_database_clock_and_forgotten(void **state)
{
    char *tmp = tmp_dir_new(), *data_dir = data_dir_of(tmp), *v;
    uv_loop_t loop;
    struct store_options opts = {.node_id = "me"};
    struct acks a = {0};
    struct got g = {0};
    struct store_node n = {.id = "me",
                           .address = "http://10.0.0.1:8080",
                           .state = "up",
                           .started_ms = 5,
                           .info = "{\"engines\":[]}",
                           .info_len = 14};
    PGconn *admin = pg_connect(NULL);

    assert_int_equal(uv_loop_init(&loop), 0);
    struct store *st = open_store(&loop, data_dir, &opts);
    write_wait(&loop, store_node_put(st, &n, 0, ack_cb, &a), &a);
    n.id = "gone";
    n.state = "left";
    write_wait(&loop, store_node_put(st, &n, 0, ack_cb, &a), &a);
    n.info = "[]";
    n.info_len = 2;
    assert_int_equal(store_node_put(st, &n, 0, ack_cb, &a), 0); /* info not an object */
    a.want = a.done + 1;
    assert_true(testloop_run_until(&loop, acks_reached, &a, DEADLINE_MS));
    assert_int_equal(a.last, -EINVAL);
    pg_exec(admin, "UPDATE nodes SET seen_ms = 1000 WHERE id = 'gone'");
    v = read_wait(&loop, store_nodes_list(st, 0, got_cb, &g), &g);
    long long now = 0, seen = 0;
    assert_int_equal(sscanf(v, "{\"now_ms\":%lld,", &now), 1);
    assert_non_null(strstr(v, ",\"data\":[{\"id\":\"gone\",\"address\":\"http://10.0.0.1:8080\","
                              "\"state\":\"left\",\"started_ms\":5,\"seen_ms\":1000,"
                              "\"info\":{\"engines\":[]}},{\"id\":\"me\","));
    assert_int_equal(sscanf(strstr(v, "\"id\":\"me\""),
                            "\"id\":\"me\",\"address\":"
                            "\"http://10.0.0.1:8080\",\"state\":\"up\","
                            "\"started_ms\":5,\"seen_ms\":%lld",
                            &seen),
                     1);
    assert_true(seen <= now && now - seen < 60000);
    free(v);
    /* A before_ms past every row: the others go, this node's own row stays. */
    write_wait(&loop, store_nodes_forget(st, now + 3600000, ack_cb, &a), &a);
    g = (struct got){0};
    v = read_wait(&loop, store_nodes_list(st, 0, got_cb, &g), &g);
    assert_null(strstr(v, "gone"));
    assert_non_null(strstr(v, "\"id\":\"me\""));
    free(v);
    PQfinish(admin);
    close_store(&loop, st);
    loop_finish(&loop);
    free(data_dir);
    tmp_dir_free(tmp);
}

int main(void)
{
    const struct CMUnitTest shared[] = {
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
        cmocka_unit_test(test_second_open_of_a_data_dir_is_refused),
        cmocka_unit_test(test_unreachable_postgres_is_refused_without_echoing_the_url),
        cmocka_unit_test(test_synchronous_normal_works),
        cmocka_unit_test(test_tenancy_reads_answer_the_same_text_on_every_backend),
    };
    const struct CMUnitTest sqlite_only[] = {
        cmocka_unit_test(test_full_disk_fails_the_batch_and_recovers_after_a_commit),
        cmocka_unit_test(test_locked_database_is_retried_then_commits),
        cmocka_unit_test(test_newer_schema_version_is_refused),
    };
    const struct CMUnitTest pg_only[] = {
        cmocka_unit_test(test_pg_acknowledged_writes_survive_a_server_crash),
        cmocka_unit_test(test_pg_killed_connection_reconnects_and_applies_each_write_once),
        cmocka_unit_test(test_pg_commit_whose_answer_was_lost_counts_once),
        cmocka_unit_test(test_pg_a_network_cut_mid_commit_ends_the_old_backend_and_counts_once),
        cmocka_unit_test(test_pg_server_down_for_seconds_holds_writes_until_it_is_back),
        cmocka_unit_test(test_pg_newer_schema_version_is_refused),
        cmocka_unit_test(test_pg_two_nodes_opening_an_empty_database_migrate_once),
        cmocka_unit_test(test_pg_key_changes_are_notified_at_commit),
        cmocka_unit_test(test_pg_event_notices_go_at_commit_once_each_in_small_payloads),
        cmocka_unit_test(test_pg_a_read_that_fails_alone_leaves_its_batch_readable),
        cmocka_unit_test(test_pg_runs_are_claimed_once_and_leases_renewed),
        cmocka_unit_test(test_pg_nodes_are_listed_on_the_database_clock_and_forgotten),
    };
    const char *base = getenv("ARUN_BUILD_DIR");
    int failed;

    log_set_level(getenv("ARUN_TEST_DEBUG") != NULL ? LOGL_DEBUG : LOGL_WARN);
    if (getenv("ARUN_TEST_FILTER") != NULL) /* one test by name, when debugging */
        cmocka_set_test_filter(getenv("ARUN_TEST_FILTER"));
    use_pg = getenv("ARUN_TEST_PG") != NULL && strcmp(getenv("ARUN_TEST_PG"), "1") == 0;
    if (!use_pg) {
        failed = cmocka_run_group_tests_name("shared", shared, NULL, NULL);
        return failed + cmocka_run_group_tests_name("sqlite", sqlite_only, NULL, NULL);
    }
    char *cluster = xasprintf("%s/pgtmp-%ld", base != NULL ? base : "/tmp", (long)getpid());
    if (pgtmp_start(cluster) == NULL) {
        fprintf(stderr, "test_store: scripts/pgtmp.sh could not start PostgreSQL in %s\n", cluster);
        free(cluster);
        return 1;
    }
    free(cluster);
    failed = cmocka_run_group_tests_name("shared", shared, NULL, NULL);
    failed += cmocka_run_group_tests_name("postgresql", pg_only, NULL, NULL);
    pgtmp_stop();
    free(pg_url);
    return failed;
}
