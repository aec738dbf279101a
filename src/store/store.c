/*
 * store.c: the backend-neutral front of the store (store.h). It owns the data_dir and its
 * single-writer lock, the two store threads and their queues, group commit, retries, the ready
 * state and the hand-off of results to the loop. It does not know SQL: each transaction's ops
 * are applied by a backend (store_int.h; today sqlite.c).
 *
 * DESIGN
 * A caller on the loop thread builds an op (one allocation holding its strings) and submits it.
 * Write ops queue for the writer thread, read ops for the reader thread; each thread has its
 * own database connection. A thread that wakes takes everything queued for it and runs it as one
 * transaction: for the writer that is group commit, one commit (one fsync with synchronous=full)
 * for as many ops as arrived while the previous commit was on disk, so batches grow exactly when
 * the disk is the bottleneck and stay at one op when it is not. A finished batch goes on the done
 * list and one uv_async_send wakes the loop, which runs each op's callback with its result. An
 * op's result is final only after its transaction committed, so a 0 is an acknowledgement.
 *
 * A batch that fails as a whole is retried when the database was locked by another process
 * (bounded exponential backoff, each retry logged); any other whole-batch failure (disk full,
 * I/O error) fails its ops, marks the store not ready with the backend's sentence, and while not
 * ready the idle writer probes with a one-row commit every STORE_PROBE_MS, so the store becomes
 * ready again as soon as a commit succeeds, with or without traffic. A lost connection
 * (-ENOTCONN, PostgreSQL) is retried for STORE_RECONNECT_MS, the backend reconnecting at begin;
 * a retry whose begin answers STORE_BEGIN_COMMITTED (the previous try's COMMIT went through
 * but its answer was lost) completes the batch as committed without applying it again.
 *
 * Bounds: pending ops (accepted, callback not yet run) and their bytes are capped; submissions
 * past the caps fail with -EAGAIN. Since every op comes from the loop, those counters are loop
 * state and need no lock.
 *
 * Closing never blocks the loop: store_close() stops intake and wakes the threads, which drain
 * their queues, close their connections and exit; the loop, on the last completion, joins them
 * (they have already returned or are about to), releases the lock file and closes the async
 * handle, whose close callback frees the store.
 *
 * THREAD SAFETY NOTES
 * - Loop thread only: everything under "loop thread" in struct store, the op from its creation
 *   until it is queued and again from when the loop takes it off the done list.
 * - st->mu guards the queues, the done list, stopping, the exited flags, the shared ready state
 *   and the counters. A thread owns an op between taking it off its queue and putting it on the
 *   done list; nobody else touches it then.
 * - Each connection is used by its worker thread only, from pthread_create (which orders its
 *   opening on the loop thread before) until the thread closes it just before exiting.
 * - Threads reach the loop only through uv_async_send(st->done_async). The handle is closed only
 *   after both threads are joined, so no send can race the close.
 * - The ready state is written by the writer under mu and copied to loop-owned fields by the
 *   async callback before it runs the callbacks of the same batch, so a callback that sees
 *   -ENOSPC also sees store_ready() == false.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"

#define MODULE "store"
/* Retries of a batch that found the database locked even after busy_timeout. With the backoff
 * below and the default busy_timeout a batch waits at most about 9 x 1 s + 2.3 s before its ops
 * fail with -EBUSY: long enough for an admin's short transaction, short enough to surface. */
#define STORE_BUSY_RETRIES 8
#define STORE_BUSY_BACKOFF_MS 10 /* doubles per retry */
#define STORE_BUSY_BACKOFF_MAX_MS 1000
#define STORE_PROBE_MS 1000 /* how often a not-ready writer tries a commit */
/* How long a batch whose database connection was lost (-ENOTCONN: PostgreSQL restarting,
 * failing over, a network cut) is retried, reconnecting, before its ops fail. Its ops wait
 * unacknowledged meanwhile; the store reports not ready with the backend's sentence. */
#define STORE_RECONNECT_MS 30000

const struct store_op_kind_info store_op_kinds[STORE_OP__COUNT] = {
    [STORE_OP_KV_PUT] = {.name = "kv_put"},
    [STORE_OP_KV_DELETE] = {.name = "kv_delete"},
    [STORE_OP_KV_GET] = {.name = "kv_get", .read = true, .returns_value = true},
    [STORE_OP_KV_LIST] = {.name = "kv_list", .read = true, .returns_value = true},
    [STORE_OP_PROBE] = {.name = "probe"},
    [STORE_OP_SQL] = {.name = "sql", .returns_value = true},
    [STORE_OP_RESPONSE_PUT] = {.name = "response_put"},
    [STORE_OP_RESPONSE_UPDATE] = {.name = "response_update"},
    [STORE_OP_RESPONSE_DELETE] = {.name = "response_delete"},
    [STORE_OP_EVENT_APPEND] = {.name = "event_append"},
    [STORE_OP_ITEMS_APPEND] = {.name = "items_append"},
    [STORE_OP_ITEM_DELETE] = {.name = "item_delete"},
    [STORE_OP_CONVERSATION_PUT] = {.name = "conversation_put"},
    [STORE_OP_CONVERSATION_UPDATE] = {.name = "conversation_update"},
    [STORE_OP_CONVERSATION_DELETE] = {.name = "conversation_delete"},
    [STORE_OP_IDEM_CLAIM] = {.name = "idem_claim"},
    [STORE_OP_RUNS_SWEEP] = {.name = "runs_sweep", .returns_value = true},
    [STORE_OP_RESPONSE_GET] = {.name = "response_get", .read = true, .returns_value = true},
    [STORE_OP_RESPONSES_LIST] = {.name = "responses_list", .read = true, .returns_value = true},
    [STORE_OP_RESPONSES_LIST_ALL] = {.name = "responses_list_all",
                                     .read = true,
                                     .returns_value = true},
    [STORE_OP_RUNS_UNFINISHED] = {.name = "runs_unfinished", .read = true, .returns_value = true},
    [STORE_OP_EVENTS_READ] = {.name = "events_read", .read = true, .returns_value = true},
    [STORE_OP_ITEMS_LIST] = {.name = "items_list", .read = true, .returns_value = true},
    [STORE_OP_ITEM_GET] = {.name = "item_get", .read = true, .returns_value = true},
    [STORE_OP_ITEM_FIND] = {.name = "item_find", .read = true, .returns_value = true},
    [STORE_OP_HISTORY_READ] = {.name = "history_read", .read = true, .returns_value = true},
    [STORE_OP_CONVERSATION_GET] = {.name = "conversation_get", .read = true, .returns_value = true},
    [STORE_OP_IDEM_GET] = {.name = "idem_get", .read = true, .returns_value = true},
    [STORE_OP_KEY_PUT] = {.name = "key_put"},
    [STORE_OP_KEY_REVOKE] = {.name = "key_revoke"},
    [STORE_OP_KEY_TOUCH] = {.name = "key_touch"},
    [STORE_OP_USAGE_ADD] = {.name = "usage_add"},
    [STORE_OP_AUDIT_APPEND] = {.name = "audit_append"},
    [STORE_OP_KEYS_LIST] = {.name = "keys_list", .read = true, .returns_value = true},
    [STORE_OP_USAGE_DAY] = {.name = "usage_day", .read = true, .returns_value = true},
    [STORE_OP_AUDIT_LIST] = {.name = "audit_list", .read = true, .returns_value = true},
    [STORE_OP_NODE_PUT] = {.name = "node_put"},
    [STORE_OP_NODES_FORGET] = {.name = "nodes_forget"},
    [STORE_OP_RUNS_CLAIM] = {.name = "runs_claim", .returns_value = true},
    [STORE_OP_LEASES_RENEW] = {.name = "leases_renew", .returns_value = true},
    [STORE_OP_NODES_LIST] = {.name = "nodes_list", .read = true, .returns_value = true},
};
/* Bucket bounds of arun_store_commit_seconds: a commit with synchronous=normal takes tens of
 * microseconds, one with full an fsync (0.1 to 10 ms on SSDs, more on a busy disk). */
static const double commit_buckets[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                        0.0025,  0.005,  0.01,    0.025,  0.05,
                                        0.1,     0.25,   0.5,     1,      2.5};

struct op_list {
    struct store_op *head;
    struct store_op *tail;
    size_t n;
};

struct worker {
    struct store *st;
    const char *name;        /* "writer" | "reader", for logs */
    bool writes;             /* runs write transactions */
    struct store_conn *conn; /* this thread's connection (see THREAD SAFETY NOTES) */
    pthread_t thread;
    bool started;         /* loop thread: pthread_create succeeded */
    pthread_cond_t wake;  /* with st->mu: the queue gained ops, or stopping was set */
    struct op_list queue; /* st->mu */
    bool exited;          /* st->mu: the thread has handed back its last batch */
};

struct store {
    /* set at open, read-only afterwards */
    uv_loop_t *loop;
    const struct store_backend *be;
    char *data_dir;
    int lock_fd;            /* holds the flock on data_dir/arun.lock; -1 once released */
    uv_async_t *done_async; /* heap: it outlives the store on a failed open */
    struct metrics_family *commit_seconds; /* or NULL: no metrics registry */

    pthread_mutex_t mu;
    struct worker writer;
    struct worker reader;
    struct op_list done;               /* mu: completed ops waiting for the loop */
    bool stopping;                     /* mu: threads exit once their queue is empty */
    bool shared_ready;                 /* mu: the writer's view of readiness */
    char shared_status[STORE_WHY_MAX]; /* mu */
    bool status_changed;               /* mu: the loop has not copied the two above yet */
    struct store_stats stats;          /* mu, except .pending which is filled in by store_stats() */

    char *node_id;            /* store_options.node_id or "local" */
    int64_t lease_ms;         /* store_options.lease_ms or STORE_LEASE_MS_DEFAULT */
    char *url;                /* postgres:// for the listener; NULL for sqlite */
    struct pg_listen *listen; /* a shared store's notices, from the first store_listen */
    struct {
        store_notice_cb cb;
        void *arg;
    } listeners[STORE_LISTENERS_MAX];
    size_t nlisteners;

    /* loop thread only */
    bool closing;
    size_t pending; /* ops accepted whose callback has not run */
    size_t pending_bytes;
    size_t max_pending;
    bool ready;
    char status[STORE_WHY_MAX];
};

static void list_push(struct op_list *l, struct store_op *op)
{
    op->next = NULL;
    if (l->tail != NULL)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
    l->n++;
}

/* Moves all of src to the end of dst, leaving src empty. */
static void list_splice(struct op_list *dst, struct op_list *src)
{
    if (src->head == NULL)
        return;
    if (dst->tail != NULL)
        dst->tail->next = src->head;
    else
        dst->head = src->head;
    dst->tail = src->tail;
    dst->n += src->n;
    *src = (struct op_list){0};
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- the threads ---------------------------------------------------------------------- */

/* Runs the whole batch in one transaction once. Returns 0 or the systemic error. */
static int try_batch(struct store_conn *c, struct op_list *batch, bool write)
{
    int rc = c->be->begin(c, write);

    if (rc == STORE_BEGIN_COMMITTED)
        return 0; /* the previous try committed: its ops' results stand (store_int.h) */
    for (struct store_op *op = batch->head; rc == 0 && op != NULL; op = op->next) {
        op->result = 0;
        free(op->out); /* left by an attempt that was rolled back */
        op->out = NULL;
        op->out_len = 0;
        rc = c->be->apply(c, op);
    }
    if (rc == 0) {
        uint64_t start_ns = clock_mono_ns();
        rc = c->be->commit(c);
        if (rc == 0 && write && batch->head != NULL)
            batch->head->commit_ns = clock_mono_ns() - start_ns;
    }
    if (rc != 0)
        c->be->rollback(c);
    return rc;
}

static void count_busy_retry(struct worker *w, size_t n, unsigned attempt, unsigned backoff_ms)
{
    pthread_mutex_lock(&w->st->mu);
    if (w->writes)
        w->st->stats.busy_retries++;
    pthread_mutex_unlock(&w->st->mu);
    log_warn(MODULE,
             "database is locked by another connection: retrying the %s's batch of %zu "
             "op(s) in %u ms (retry %u of %u)",
             w->name, n, backoff_ms, attempt + 1, STORE_BUSY_RETRIES);
}

/* Records a write batch's outcome in the counters and the ready state. Called without mu. */
static void record_write(struct worker *w, struct op_list *batch, int rc)
{
    struct store *st = w->st;
    bool was_ready;

    pthread_mutex_lock(&st->mu);
    was_ready = st->shared_ready;
    if (rc == 0) {
        st->stats.commits++;
        st->stats.ops_committed += batch->n;
        if (!was_ready) {
            st->shared_ready = true;
            snprintf(st->shared_status, sizeof(st->shared_status), "ok");
            st->status_changed = true;
        }
    } else {
        st->stats.batches_failed++;
        st->shared_ready = false;
        snprintf(st->shared_status, sizeof(st->shared_status), "%s", w->conn->why);
        st->status_changed = true;
    }
    /* The loop learns it now, not when the batch ends: a batch held by a lost connection may
     * wait for STORE_RECONNECT_MS, and /readyz must say so meanwhile. */
    if (st->status_changed)
        uv_async_send(st->done_async);
    pthread_mutex_unlock(&st->mu);

    /* Logged on the transitions only: while the disk stays full every batch fails the same way. */
    if (rc == 0 && !was_ready)
        log_info(MODULE, "store is ready again: a commit succeeded");
    else if (rc != 0 && was_ready)
        log_error_errno(MODULE, rc, "store is not ready: %s", w->conn->why);
    else if (rc != 0)
        log_debug(MODULE, "write batch of %zu ops failed again: %s", batch->n, w->conn->why);
}

/* Runs a batch to its end: retried while locked, then every op's result is final. */
static void run_batch(struct worker *w, struct op_list *batch)
{
    int rc;

    uint64_t lost_since_ns = 0;
    for (unsigned attempt = 0;; attempt++) {
        w->conn->retrying = attempt > 0;
        rc = try_batch(w->conn, batch, w->writes);
        if (rc == -ENOTCONN) {
            /* The connection is gone: the backend reconnects at the next begin. Retried for
             * STORE_RECONNECT_MS, every try logged, the store not ready meanwhile. */
            uint64_t now = clock_mono_ns();
            if (lost_since_ns == 0) {
                lost_since_ns = now;
                if (w->writes)
                    record_write(w, batch, rc); /* not ready, with the sentence, now */
            }
            if (now - lost_since_ns < (uint64_t)STORE_RECONNECT_MS * 1000000) {
                unsigned backoff_ms = STORE_BUSY_BACKOFF_MS << (attempt < 7 ? attempt : 7);
                if (backoff_ms > STORE_BUSY_BACKOFF_MAX_MS)
                    backoff_ms = STORE_BUSY_BACKOFF_MAX_MS;
                log_warn(MODULE, "%s; the %s retries its batch of %zu op(s) in %u ms",
                         w->conn->why, w->name, batch->n, backoff_ms);
                sleep_ms(backoff_ms);
                continue;
            }
            break;
        }
        if (rc != -EBUSY || attempt == STORE_BUSY_RETRIES)
            break;
        unsigned backoff_ms = STORE_BUSY_BACKOFF_MS << attempt;
        if (backoff_ms > STORE_BUSY_BACKOFF_MAX_MS)
            backoff_ms = STORE_BUSY_BACKOFF_MAX_MS;
        count_busy_retry(w, batch->n, attempt, backoff_ms);
        sleep_ms(backoff_ms);
    }
    if (rc != 0) {
        for (struct store_op *op = batch->head; op != NULL; op = op->next) {
            op->result = rc;
            free(op->out);
            op->out = NULL;
        }
    }
    if (w->writes) {
        record_write(w, batch, rc);
    } else {
        pthread_mutex_lock(&w->st->mu);
        w->st->stats.reads += batch->n;
        pthread_mutex_unlock(&w->st->mu);
        if (rc != 0)
            log_warn_errno(MODULE, rc, "read batch of %zu ops failed: %s", batch->n, w->conn->why);
    }
}

/* A one-row commit; its success makes the store ready again. The op lives on this stack only. */
static void probe(struct worker *w)
{
    struct store_op op = {.kind = STORE_OP_PROBE};
    struct op_list batch = {0};

    list_push(&batch, &op);
    run_batch(w, &batch);
    free(op.out);
}

/* Waits (mu held) until there is work or stopping; a not-ready writer probes on the way. */
static void wait_for_work(struct worker *w)
{
    struct store *st = w->st;

    if (!w->writes || st->shared_ready) {
        pthread_cond_wait(&w->wake, &st->mu);
        return;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += STORE_PROBE_MS / 1000;
    deadline.tv_nsec += (long)(STORE_PROBE_MS % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    int rc = pthread_cond_timedwait(&w->wake, &st->mu, &deadline);
    if (rc == ETIMEDOUT && w->queue.head == NULL && !st->stopping) {
        pthread_mutex_unlock(&st->mu);
        probe(w);
        pthread_mutex_lock(&st->mu);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct store *st = w->st;
    struct op_list batch;

    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (w->queue.head == NULL && !st->stopping)
            wait_for_work(w);
        if (w->queue.head == NULL)
            break; /* stopping, and everything queued has been done */
        batch = w->queue;
        w->queue = (struct op_list){0};
        pthread_mutex_unlock(&st->mu);

        run_batch(w, &batch);

        pthread_mutex_lock(&st->mu);
        list_splice(&st->done, &batch);
        uv_async_send(st->done_async);
    }
    pthread_mutex_unlock(&st->mu);

    st->be->close(w->conn);
    w->conn = NULL;
    pthread_mutex_lock(&st->mu);
    w->exited = true;
    pthread_mutex_unlock(&st->mu);
    uv_async_send(st->done_async); /* safe: the loop joins this thread before closing it */
    return NULL;
}

/* Starts w's thread with every signal blocked in it, so signals reach the loop thread. */
static int worker_start(struct worker *w)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        w->started = true;
    return rc;
}

/* Asks the threads to finish their queues and exit. */
static void workers_stop(struct store *st)
{
    pthread_mutex_lock(&st->mu);
    st->stopping = true;
    pthread_cond_signal(&st->writer.wake);
    pthread_cond_signal(&st->reader.wake);
    pthread_mutex_unlock(&st->mu);
}

static void worker_join(struct worker *w)
{
    if (w->started)
        pthread_join(w->thread, NULL);
    w->started = false;
    if (w->conn != NULL) /* still set only if the thread never ran */
        w->st->be->close(w->conn);
    w->conn = NULL;
}

/* ---- the loop side -------------------------------------------------------------------- */

static void store_free(struct store *st)
{
    pthread_cond_destroy(&st->writer.wake);
    pthread_cond_destroy(&st->reader.wake);
    pthread_mutex_destroy(&st->mu);
    free(st->data_dir);
    free(st->node_id);
    free(st->url);
    free(st);
}

static void async_free_cb(uv_handle_t *h)
{
    struct store *st = h->data;

    free(h);
    if (st != NULL) /* NULL after a failed open, which freed the store already */
        store_free(st);
}

static void release_lock(struct store *st)
{
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* drops the flock; the file stays (unlinking it would race) */
    st->lock_fd = -1;
}

static void finish_close(struct store *st)
{
    worker_join(&st->writer);
    worker_join(&st->reader);
    release_lock(st);
    log_info(MODULE, "store closed: %s", st->data_dir);
    uv_close((uv_handle_t *)st->done_async, async_free_cb);
}

static void complete(struct store *st, struct store_op *op)
{
    st->pending--;
    st->pending_bytes -= op->bytes;
    if (op->commit_ns != 0 && st->commit_seconds != NULL)
        metrics_observe(st->commit_seconds, (double)op->commit_ns / 1e9, NULL);
    if (store_op_kinds[op->kind].returns_value)
        op->cb.value(op->result, op->result == 0 ? op->out : NULL,
                     op->result == 0 ? op->out_len : 0, op->arg);
    else
        op->cb.write(op->result, op->arg);
    free(op->out);
    free(op);
}

static void done_cb(uv_async_t *h)
{
    struct store *st = h->data;
    struct op_list done;
    bool exited;

    pthread_mutex_lock(&st->mu);
    done = st->done;
    st->done = (struct op_list){0};
    if (st->status_changed) {
        st->ready = st->shared_ready;
        memcpy(st->status, st->shared_status, sizeof(st->status));
        st->status_changed = false;
    }
    exited = st->writer.exited && st->reader.exited;
    pthread_mutex_unlock(&st->mu);

    for (struct store_op *op = done.head, *next; op != NULL; op = next) {
        next = op->next;
        complete(st, op);
    }
    if (st->closing && exited)
        finish_close(st);
    else if (st->pending == 0 && !st->closing)
        uv_unref((uv_handle_t *)h); /* nothing in flight: do not keep the loop alive */
}

/* Takes ownership of op: queues it for its thread, or frees it and returns the error. */
static int submit(struct store *st, struct store_op *op)
{
    int rc = 0;

    if (st->closing)
        rc = -ECANCELED;
    else if (st->pending >= st->max_pending ||
             st->pending_bytes + op->bytes > STORE_MAX_PENDING_BYTES)
        rc = -EAGAIN;
    if (rc != 0) {
        free(op);
        return rc;
    }
    st->pending++;
    st->pending_bytes += op->bytes;
    uv_ref((uv_handle_t *)st->done_async);

    struct worker *w = store_op_kinds[op->kind].read ? &st->reader : &st->writer;
    pthread_mutex_lock(&st->mu);
    list_push(&w->queue, op);
    if (w->queue.n == 1)
        pthread_cond_signal(&w->wake); /* more ops join the batch the thread will take */
    pthread_mutex_unlock(&st->mu);
    return 0;
}

/* Builds a kv op with ns, key and value copied into the op's own allocation. */
static int kv_op_new(enum store_op_kind kind, const char *ns, const char *key, const char *value,
                     size_t value_len, struct store_op **out)
{
    size_t ns_len = strnlen(ns, STORE_NS_MAX + 1), key_len = strnlen(key, STORE_KEY_MAX + 1);

    if (ns_len == 0 || key_len == 0)
        return -EINVAL;
    if (ns_len > STORE_NS_MAX || key_len > STORE_KEY_MAX || value_len > STORE_VALUE_MAX)
        return -E2BIG;
    size_t bytes = sizeof(struct store_op) + ns_len + 1 + key_len + 1 + value_len + 1;
    struct store_op *op = xcalloc(1, bytes);
    char *p = (char *)(op + 1);

    op->kind = kind;
    op->bytes = bytes;
    op->u.kv.ns = memcpy(p, ns, ns_len + 1);
    p += ns_len + 1;
    op->u.kv.key = memcpy(p, key, key_len + 1);
    p += key_len + 1;
    if (value != NULL) {
        memcpy(p, value, value_len);
        p[value_len] = '\0';
        op->u.kv.value = p;
        op->u.kv.value_len = value_len;
    }
    *out = op;
    return 0;
}

int store_kv_put(struct store *st, const char *ns, const char *key, const char *value, size_t len,
                 store_write_cb cb, void *arg)
{
    struct store_op *op;
    int rc;

    ASSERT(cb != NULL && value != NULL);
    rc = kv_op_new(STORE_OP_KV_PUT, ns, key, value, len, &op);
    if (rc != 0)
        return rc;
    op->cb.write = cb;
    op->arg = arg;
    return submit(st, op);
}

int store_kv_delete(struct store *st, const char *ns, const char *key, store_write_cb cb, void *arg)
{
    struct store_op *op;
    int rc;

    ASSERT(cb != NULL);
    rc = kv_op_new(STORE_OP_KV_DELETE, ns, key, NULL, 0, &op);
    if (rc != 0)
        return rc;
    op->cb.write = cb;
    op->arg = arg;
    return submit(st, op);
}

int store_kv_get(struct store *st, const char *ns, const char *key, store_value_cb cb, void *arg)
{
    struct store_op *op;
    int rc;

    ASSERT(cb != NULL);
    rc = kv_op_new(STORE_OP_KV_GET, ns, key, NULL, 0, &op);
    if (rc != 0)
        return rc;
    op->cb.value = cb;
    op->arg = arg;
    return submit(st, op);
}

int store_kv_list(struct store *st, const char *ns, store_value_cb cb, void *arg)
{
    struct store_op *op;
    int rc;

    ASSERT(cb != NULL);
    rc = kv_op_new(STORE_OP_KV_LIST, ns, "*", NULL, 0, &op); /* the key is unused */
    if (rc != 0)
        return rc;
    op->cb.value = cb;
    op->arg = arg;
    return submit(st, op);
}

int store_debug_sql(struct store *st, const char *sql, store_value_cb cb, void *arg)
{
    size_t len = strlen(sql);
    struct store_op *op = xcalloc(1, sizeof(*op) + len + 1);

    ASSERT(cb != NULL);
    op->kind = STORE_OP_SQL;
    op->bytes = sizeof(*op) + len + 1;
    op->u.sql.text = memcpy(op + 1, sql, len + 1);
    op->cb.value = cb;
    op->arg = arg;
    return submit(st, op);
}

/* ---- durable runs: building the ops ----------------------------------------------------- */

#define NODE_ADDRESS_MAX 1024 /* bytes of a node's address (store_node_put) */

/* The longest each string role may be; past it a submission fails with -E2BIG. */
static const size_t run_str_max[RUN_STR__COUNT] = {
    [RUN_TENANT] = STORE_TENANT_MAX, [RUN_ID] = STORE_ID_MAX,       [RUN_OWNER] = STORE_ID_MAX,
    [RUN_STATUS] = STORE_ID_MAX,     [RUN_MODEL] = STORE_KEY_MAX,   [RUN_CONV] = STORE_ID_MAX,
    [RUN_PREV] = STORE_ID_MAX,       [RUN_TYPE] = STORE_ID_MAX,     [RUN_AFTER] = STORE_ID_MAX,
    [RUN_JSON] = STORE_VALUE_MAX,    [RUN_JSON2] = STORE_VALUE_MAX,
};

/* The lengths of tmpl's strings: a NUL-terminated one is measured (up to its cap, so a long one
 * is not read to its end), a JSON one keeps the length its caller gave. */
static int run_lengths(struct store_op *tmpl)
{
    for (int i = 0; i < RUN_STR__COUNT; i++) {
        const char *s = tmpl->u.run.s[i];
        size_t max = run_str_max[i];
        if ((tmpl->kind == STORE_OP_IDEM_CLAIM || tmpl->kind == STORE_OP_IDEM_GET) && i == RUN_ID)
            max = STORE_KEY_MAX; /* an Idempotency-Key is the client's, not an id of ours */
        if (tmpl->kind == STORE_OP_NODE_PUT && i == RUN_OWNER)
            max = NODE_ADDRESS_MAX; /* a URL, not an id */
        if (s == NULL)
            continue;
        if (i != RUN_JSON && i != RUN_JSON2)
            tmpl->u.run.len[i] = strnlen(s, max + 1);
        if (tmpl->u.run.len[i] == 0)
            return -EINVAL;
        if (tmpl->u.run.len[i] > max)
            return -E2BIG;
    }
    return 0;
}

/* Copies tmpl and its strings into one allocation and submits it. Returns 0 or -errno (then
 * cb is never called). */
static int run_submit(struct store *st, struct store_op *tmpl)
{
    size_t bytes = sizeof(*tmpl);
    int rc = run_lengths(tmpl);

    if (rc != 0)
        return rc;
    for (int i = 0; i < RUN_STR__COUNT; i++)
        bytes += tmpl->u.run.s[i] != NULL ? tmpl->u.run.len[i] + 1 : 0;
    struct store_op *op = xmalloc(bytes);
    char *p = (char *)(op + 1);

    *op = *tmpl;
    op->bytes = bytes;
    for (int i = 0; i < RUN_STR__COUNT; i++) {
        if (tmpl->u.run.s[i] == NULL)
            continue;
        memcpy(p, tmpl->u.run.s[i], tmpl->u.run.len[i]);
        p[tmpl->u.run.len[i]] = '\0';
        op->u.run.s[i] = p;
        p += tmpl->u.run.len[i] + 1;
    }
    return submit(st, op);
}

static int run_write(struct store *st, struct store_op *tmpl, store_write_cb cb, void *arg)
{
    ASSERT(cb != NULL);
    if (tmpl->u.run.s[RUN_TENANT] == NULL)
        return -EINVAL;
    tmpl->cb.write = cb;
    tmpl->arg = arg;
    return run_submit(st, tmpl);
}

static int run_read(struct store *st, struct store_op *tmpl, store_value_cb cb, void *arg)
{
    ASSERT(cb != NULL);
    if (tmpl->u.run.s[RUN_TENANT] == NULL && tmpl->kind != STORE_OP_RUNS_UNFINISHED)
        return -EINVAL;
    tmpl->cb.value = cb;
    tmpl->arg = arg;
    return run_submit(st, tmpl);
}

static bool limit_ok(uint32_t limit)
{
    return limit >= 1 && limit <= STORE_PAGE_MAX;
}

static const char *const items_kind_names[] = {
    [STORE_ITEMS_INPUT] = "input",
    [STORE_ITEMS_OUTPUT] = "output",
    [STORE_ITEMS_CONVERSATION] = "conversation",
};

/* The name an items kind is stored under, or NULL for a value outside the enum. */
static const char *items_kind_name(enum store_items_kind kind)
{
    return (unsigned)kind < ARRAY_SIZE(items_kind_names) ? items_kind_names[kind] : NULL;
}

/* ---- durable runs: responses and events ------------------------------------------------- */

int store_response_put(struct store *st, const struct store_response *r, store_write_cb cb,
                       void *arg)
{
    struct store_op op = {.kind = STORE_OP_RESPONSE_PUT};

    if (r->id == NULL || r->status == NULL || r->model == NULL || r->request == NULL ||
        r->object == NULL)
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = r->tenant;
    op.u.run.s[RUN_ID] = r->id;
    op.u.run.s[RUN_STATUS] = r->status;
    op.u.run.s[RUN_MODEL] = r->model;
    op.u.run.s[RUN_CONV] = r->conversation_id;
    op.u.run.s[RUN_PREV] = r->previous_response_id;
    op.u.run.s[RUN_JSON] = r->request;
    op.u.run.len[RUN_JSON] = r->request_len;
    op.u.run.s[RUN_JSON2] = r->object;
    op.u.run.len[RUN_JSON2] = r->object_len;
    op.u.run.ms = r->created_ms;
    op.u.run.flag = r->background;
    return run_write(st, &op, cb, arg);
}

int store_response_update(struct store *st, const char *tenant, const char *id, const char *status,
                          const char *object, size_t object_len, store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_RESPONSE_UPDATE};

    if (id == NULL || status == NULL || object == NULL)
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = tenant;
    op.u.run.s[RUN_ID] = id;
    op.u.run.s[RUN_STATUS] = status;
    op.u.run.s[RUN_JSON2] = object;
    op.u.run.len[RUN_JSON2] = object_len;
    return run_write(st, &op, cb, arg);
}

int store_response_get(struct store *st, const char *tenant, const char *id, store_value_cb cb,
                       void *arg)
{
    struct store_op op = {.kind = STORE_OP_RESPONSE_GET};

    if (id == NULL)
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = tenant;
    op.u.run.s[RUN_ID] = id;
    return run_read(st, &op, cb, arg);
}

int store_response_delete(struct store *st, const char *tenant, const char *id, store_write_cb cb,
                          void *arg)
{
    struct store_op op = {.kind = STORE_OP_RESPONSE_DELETE};

    if (id == NULL)
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = tenant;
    op.u.run.s[RUN_ID] = id;
    return run_write(st, &op, cb, arg);
}

int store_responses_list(struct store *st, const char *tenant, const char *status,
                         const char *after_id, uint32_t limit, store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_RESPONSES_LIST};

    if (!limit_ok(limit))
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = tenant;
    op.u.run.s[RUN_STATUS] = status;
    op.u.run.s[RUN_AFTER] = after_id;
    op.u.run.limit = limit;
    return run_read(st, &op, cb, arg);
}

static int system_read(struct store *st, struct store_op *tmpl, store_value_cb cb, void *arg);

int store_responses_list_all(struct store *st, const char *status, const char *after_id,
                             uint32_t limit, store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_RESPONSES_LIST_ALL};

    op.u.run.s[RUN_STATUS] = status;
    op.u.run.s[RUN_AFTER] = after_id;
    op.u.run.limit = limit;
    return system_read(st, &op, cb, arg);
}

int store_runs_unfinished(struct store *st, store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_RUNS_UNFINISHED};

    return run_read(st, &op, cb, arg);
}

int store_event_append(struct store *st, const char *tenant, const char *response_id, int64_t seq,
                       const char *type, const char *data, size_t len, store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_EVENT_APPEND};

    if (data != NULL && len > STORE_VALUE_MAX)
        return -E2BIG; /* before memchr reads len bytes */
    /* A '\n' would break the line format of store_events_read. */
    if (response_id == NULL || type == NULL || data == NULL || seq < 0 ||
        memchr(data, '\n', len) != NULL || strpbrk(type, " \n") != NULL)
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = tenant;
    op.u.run.s[RUN_OWNER] = response_id;
    op.u.run.s[RUN_TYPE] = type;
    op.u.run.s[RUN_JSON] = data;
    op.u.run.len[RUN_JSON] = len;
    op.u.run.seq = seq;
    return run_write(st, &op, cb, arg);
}

int store_events_read(struct store *st, const char *tenant, const char *response_id,
                      int64_t after_seq, uint32_t limit, store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_EVENTS_READ};

    if (response_id == NULL || after_seq < -1 || !limit_ok(limit))
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = tenant;
    op.u.run.s[RUN_OWNER] = response_id;
    op.u.run.seq = after_seq;
    op.u.run.limit = limit;
    return run_read(st, &op, cb, arg);
}

/* ---- durable runs: items and history --------------------------------------------------- */

/* Fills the owner, the kind and the item id shared by the item ops. */
static int items_op(struct store_op *op, const char *tenant, const char *owner_id,
                    enum store_items_kind kind, const char *item_id)
{
    op->u.run.s[RUN_TENANT] = tenant;
    op->u.run.s[RUN_OWNER] = owner_id;
    op->u.run.s[RUN_TYPE] = items_kind_name(kind);
    op->u.run.s[RUN_ID] = item_id;
    return owner_id == NULL || op->u.run.s[RUN_TYPE] == NULL ? -EINVAL : 0;
}

int store_items_append(struct store *st, const char *tenant, const char *owner_id,
                       enum store_items_kind kind, const char *items, size_t len, store_write_cb cb,
                       void *arg)
{
    struct store_op op = {.kind = STORE_OP_ITEMS_APPEND};

    if (items == NULL || items_op(&op, tenant, owner_id, kind, NULL) != 0)
        return -EINVAL;
    op.u.run.s[RUN_JSON] = items;
    op.u.run.len[RUN_JSON] = len;
    op.u.run.ms = clock_wall_ms(); /* touches a conversation's updated_ms */
    return run_write(st, &op, cb, arg);
}

int store_items_list(struct store *st, const char *tenant, const char *owner_id,
                     enum store_items_kind kind, const char *after_id, uint32_t limit, bool desc,
                     store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_ITEMS_LIST};

    if (!limit_ok(limit) || items_op(&op, tenant, owner_id, kind, NULL) != 0)
        return -EINVAL;
    op.u.run.s[RUN_AFTER] = after_id;
    op.u.run.limit = limit;
    op.u.run.flag = desc;
    return run_read(st, &op, cb, arg);
}

int store_history_read(struct store *st, const char *tenant, const char *response_id,
                       store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_HISTORY_READ};

    if (response_id == NULL)
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = tenant;
    op.u.run.s[RUN_ID] = response_id;
    return run_read(st, &op, cb, arg);
}

int store_item_get(struct store *st, const char *tenant, const char *owner_id,
                   enum store_items_kind kind, const char *item_id, store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_ITEM_GET};

    if (item_id == NULL || items_op(&op, tenant, owner_id, kind, item_id) != 0)
        return -EINVAL;
    return run_read(st, &op, cb, arg);
}

int store_item_find(struct store *st, const char *tenant, const char *item_id, store_value_cb cb,
                    void *arg)
{
    struct store_op op = {.kind = STORE_OP_ITEM_FIND};

    if (item_id == NULL)
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = tenant;
    op.u.run.s[RUN_ID] = item_id;
    return run_read(st, &op, cb, arg);
}

int store_item_delete(struct store *st, const char *tenant, const char *owner_id,
                      enum store_items_kind kind, const char *item_id, store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_ITEM_DELETE};

    if (item_id == NULL || items_op(&op, tenant, owner_id, kind, item_id) != 0)
        return -EINVAL;
    op.u.run.ms = clock_wall_ms();
    return run_write(st, &op, cb, arg);
}

/* ---- durable runs: conversations and idempotency keys ---------------------------------- */

/* Fills a conversation op; metadata may be NULL for the ops without one. */
static int conversation_op(struct store_op *op, const char *tenant, const char *id,
                           const char *metadata, size_t len)
{
    op->u.run.s[RUN_TENANT] = tenant;
    op->u.run.s[RUN_ID] = id;
    op->u.run.s[RUN_JSON] = metadata;
    op->u.run.len[RUN_JSON] = len;
    return id == NULL ? -EINVAL : 0;
}

int store_conversation_put(struct store *st, const char *tenant, const char *id, int64_t created_ms,
                           const char *metadata, size_t len, store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_CONVERSATION_PUT};

    if (metadata == NULL || conversation_op(&op, tenant, id, metadata, len) != 0)
        return -EINVAL;
    op.u.run.ms = created_ms;
    return run_write(st, &op, cb, arg);
}

int store_conversation_update(struct store *st, const char *tenant, const char *id,
                              const char *metadata, size_t len, store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_CONVERSATION_UPDATE};

    if (metadata == NULL || conversation_op(&op, tenant, id, metadata, len) != 0)
        return -EINVAL;
    op.u.run.ms = clock_wall_ms();
    return run_write(st, &op, cb, arg);
}

int store_conversation_get(struct store *st, const char *tenant, const char *id, store_value_cb cb,
                           void *arg)
{
    struct store_op op = {.kind = STORE_OP_CONVERSATION_GET};

    if (conversation_op(&op, tenant, id, NULL, 0) != 0)
        return -EINVAL;
    return run_read(st, &op, cb, arg);
}

int store_conversation_delete(struct store *st, const char *tenant, const char *id,
                              store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_CONVERSATION_DELETE};

    if (conversation_op(&op, tenant, id, NULL, 0) != 0)
        return -EINVAL;
    return run_write(st, &op, cb, arg);
}

int store_idem_claim(struct store *st, const char *tenant, const char *key, const char *body_hash,
                     const char *response_id, int64_t now_ms, int64_t fresh_after_ms,
                     store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_IDEM_CLAIM};

    if (key == NULL || body_hash == NULL || response_id == NULL)
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = tenant;
    op.u.run.s[RUN_ID] = key;
    op.u.run.s[RUN_TYPE] = body_hash;
    op.u.run.s[RUN_OWNER] = response_id;
    op.u.run.ms = now_ms;
    op.u.run.ms2 = fresh_after_ms;
    return run_write(st, &op, cb, arg);
}

int store_idem_get(struct store *st, const char *tenant, const char *key, store_value_cb cb,
                   void *arg)
{
    struct store_op op = {.kind = STORE_OP_IDEM_GET};

    if (key == NULL)
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = tenant;
    op.u.run.s[RUN_ID] = key;
    return run_read(st, &op, cb, arg);
}

int store_runs_sweep(struct store *st, int64_t before_ms, int64_t idem_before_ms, uint32_t limit,
                     store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_RUNS_SWEEP};

    ASSERT(cb != NULL);
    if (!limit_ok(limit))
        return -EINVAL;
    op.u.run.ms = before_ms;
    op.u.run.ms2 = idem_before_ms;
    op.u.run.limit = limit;
    op.cb.value = cb;
    op.arg = arg;
    return run_submit(st, &op);
}

/* ---- tenancy: keys, usage, audit ------------------------------------------------------- */

#define KEY_NAME_MAX 256             /* bytes in a key's name */
#define AUDIT_DETAIL_MAX (64 * 1024) /* bytes in an audit event's detail */

/* Submits a system op (no tenant scope of its own) with a write callback. */
static int system_write(struct store *st, struct store_op *tmpl, store_write_cb cb, void *arg)
{
    ASSERT(cb != NULL);
    tmpl->cb.write = cb;
    tmpl->arg = arg;
    return run_submit(st, tmpl);
}

static int system_read(struct store *st, struct store_op *tmpl, store_value_cb cb, void *arg)
{
    ASSERT(cb != NULL);
    if (!limit_ok(tmpl->u.run.limit))
        return -EINVAL;
    tmpl->cb.value = cb;
    tmpl->arg = arg;
    return run_submit(st, tmpl);
}

static bool hex64(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0' && n <= 64; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == 64;
}

int store_key_put(struct store *st, const struct store_key *k, store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_KEY_PUT};

    if (k->id == NULL || k->hash == NULL || k->tenant == NULL || k->role == NULL || !hex64(k->hash))
        return -EINVAL;
    if (k->name != NULL && strnlen(k->name, KEY_NAME_MAX + 1) > KEY_NAME_MAX)
        return -E2BIG;
    op.u.run.s[RUN_ID] = k->id;
    op.u.run.s[RUN_TYPE] = k->hash;
    op.u.run.s[RUN_TENANT] = k->tenant;
    op.u.run.s[RUN_STATUS] = k->role;
    op.u.run.s[RUN_MODEL] = k->name != NULL && k->name[0] != '\0' ? k->name : NULL;
    op.u.run.ms = k->created_ms;
    return system_write(st, &op, cb, arg);
}

int store_key_revoke(struct store *st, const char *id, int64_t revoked_ms, store_write_cb cb,
                     void *arg)
{
    struct store_op op = {.kind = STORE_OP_KEY_REVOKE};

    if (id == NULL)
        return -EINVAL;
    op.u.run.s[RUN_ID] = id;
    op.u.run.ms = revoked_ms;
    return system_write(st, &op, cb, arg);
}

int store_key_touch(struct store *st, const char *id, int64_t used_ms, store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_KEY_TOUCH};

    if (id == NULL)
        return -EINVAL;
    op.u.run.s[RUN_ID] = id;
    op.u.run.ms = used_ms;
    return system_write(st, &op, cb, arg);
}

int store_keys_list(struct store *st, const char *after_id, uint32_t limit, store_value_cb cb,
                    void *arg)
{
    struct store_op op = {.kind = STORE_OP_KEYS_LIST};

    op.u.run.s[RUN_AFTER] = after_id;
    op.u.run.limit = limit;
    return system_read(st, &op, cb, arg);
}

int store_usage_add(struct store *st, const char *tenant, const char *day, int64_t output_tokens,
                    int64_t requests, store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_USAGE_ADD};

    if (tenant == NULL || day == NULL || strnlen(day, STORE_DAY_LEN + 1) != STORE_DAY_LEN ||
        output_tokens < 0 || requests < 0)
        return -EINVAL;
    op.u.run.s[RUN_TENANT] = tenant;
    op.u.run.s[RUN_ID] = day;
    op.u.run.seq = output_tokens;
    op.u.run.ms2 = requests;
    op.u.run.ms = clock_wall_ms();
    return system_write(st, &op, cb, arg);
}

int store_usage_day(struct store *st, const char *day, const char *after_tenant, uint32_t limit,
                    store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_USAGE_DAY};

    if (day == NULL || strnlen(day, STORE_DAY_LEN + 1) != STORE_DAY_LEN)
        return -EINVAL;
    op.u.run.s[RUN_ID] = day;
    op.u.run.s[RUN_AFTER] = after_tenant;
    op.u.run.limit = limit;
    return system_read(st, &op, cb, arg);
}

int store_audit_append(struct store *st, const struct store_audit *a, store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_AUDIT_APPEND};

    if (a->actor == NULL || a->action == NULL || a->outcome == NULL)
        return -EINVAL;
    if (a->detail != NULL && a->detail_len > AUDIT_DETAIL_MAX)
        return -E2BIG;
    op.u.run.s[RUN_OWNER] = a->actor;
    op.u.run.s[RUN_TENANT] = a->tenant;
    op.u.run.s[RUN_TYPE] = a->action;
    op.u.run.s[RUN_ID] = a->target;
    op.u.run.s[RUN_STATUS] = a->outcome;
    op.u.run.s[RUN_CONV] = a->remote;
    op.u.run.s[RUN_JSON] = a->detail != NULL ? a->detail : "{}";
    op.u.run.len[RUN_JSON] = a->detail != NULL ? a->detail_len : 2;
    op.u.run.ms = a->ts_ms;
    return system_write(st, &op, cb, arg);
}

int store_audit_list(struct store *st, int64_t since_ms, int64_t after_seq, uint32_t limit,
                     store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_AUDIT_LIST};

    op.u.run.ms = since_ms;
    op.u.run.seq = after_seq;
    op.u.run.limit = limit;
    return system_read(st, &op, cb, arg);
}

/* ---- cluster: nodes, leases, notices ----------------------------------------------- */

int store_node_put(struct store *st, const struct store_node *n, int64_t now_ms,
                   store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_NODE_PUT};

    if (n->id == NULL || n->address == NULL || n->state == NULL || n->info == NULL)
        return -EINVAL;
    if (strnlen(n->address, NODE_ADDRESS_MAX + 1) > NODE_ADDRESS_MAX ||
        n->info_len > STORE_NODE_INFO_MAX)
        return -E2BIG;
    op.u.run.s[RUN_ID] = n->id;
    op.u.run.s[RUN_OWNER] = n->address;
    op.u.run.len[RUN_OWNER] = strlen(n->address);
    op.u.run.s[RUN_STATUS] = n->state;
    op.u.run.s[RUN_JSON] = n->info;
    op.u.run.len[RUN_JSON] = n->info_len;
    op.u.run.ms = now_ms;
    op.u.run.ms2 = n->started_ms;
    return system_write(st, &op, cb, arg);
}

int store_nodes_list(struct store *st, int64_t now_ms, store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_NODES_LIST};

    op.u.run.ms = now_ms;
    op.u.run.limit = STORE_PAGE_MAX;
    return system_read(st, &op, cb, arg);
}

int store_nodes_forget(struct store *st, int64_t before_ms, store_write_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_NODES_FORGET};

    op.u.run.ms = before_ms;
    return system_write(st, &op, cb, arg);
}

int store_runs_claim(struct store *st, int64_t now_ms, bool restart, uint32_t limit,
                     store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_RUNS_CLAIM};

    ASSERT(cb != NULL);
    if (!limit_ok(limit))
        return -EINVAL;
    op.u.run.ms = now_ms;
    op.u.run.flag = restart;
    op.u.run.limit = limit;
    op.cb.value = cb;
    op.arg = arg;
    return run_submit(st, &op);
}

int store_leases_renew(struct store *st, int64_t now_ms, store_value_cb cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_LEASES_RENEW};

    ASSERT(cb != NULL);
    op.u.run.ms = now_ms;
    op.cb.value = cb;
    op.arg = arg;
    return run_submit(st, &op);
}

bool store_shared(const struct store *st)
{
    return st->url != NULL;
}

const char *store_node_id(const struct store *st)
{
    return st->node_id;
}

static void notice_cb(enum store_notice kind, const char *tenant, const char *id, void *arg)
{
    struct store *st = arg;

    for (size_t i = 0; i < st->nlisteners; i++)
        st->listeners[i].cb(kind, tenant, id, st->listeners[i].arg);
}

int store_listen(struct store *st, store_notice_cb cb, void *arg)
{
    ASSERT(cb != NULL);
    if (st->nlisteners == STORE_LISTENERS_MAX)
        return -ENOSPC;
    st->listeners[st->nlisteners].cb = cb;
    st->listeners[st->nlisteners].arg = arg;
    st->nlisteners++;
    if (st->url != NULL && st->listen == NULL && !st->closing)
        st->listen = pg_listen_start(st->loop, st->url, notice_cb, st);
    return 0;
}

bool store_listening(const struct store *st)
{
    return st->url == NULL || (st->listen != NULL && pg_listen_up(st->listen));
}

bool store_ready(const struct store *st)
{
    return st->ready;
}

const char *store_status(const struct store *st)
{
    return st->status;
}

void store_stats(struct store *st, struct store_stats *out)
{
    pthread_mutex_lock(&st->mu);
    *out = st->stats;
    pthread_mutex_unlock(&st->mu);
    out->pending = st->pending;
}

void store_close(struct store *st)
{
    ASSERT(!st->closing);
    st->closing = true;
    pg_listen_stop(st->listen);
    st->listen = NULL;
    uv_ref((uv_handle_t *)st->done_async); /* the loop runs until the drain is done */
    workers_stop(st);
}

/* ---- opening -------------------------------------------------------------------------- */

static int pick_backend(const struct store_options *opts, const struct store_backend **out,
                        struct buf *err)
{
    const char *url = opts->url != NULL ? opts->url : "sqlite";

    if (strcmp(url, "sqlite") == 0) {
        *out = &store_sqlite_backend;
        return 0;
    }
    /* The URL is not echoed: a postgres URL may carry a password. */
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        *out = &store_postgres_backend;
        return 0;
    }
    buf_puts(err, "store.url: expected sqlite or postgres://…");
    return -EINVAL;
}

/* mkdir -p, each directory it creates 0700 (the store holds every tenant's data). */
static int make_data_dir(const char *dir, struct buf *err)
{
    char *path;
    int rc = 0;

    if (dir[0] == '\0') {
        buf_puts(err, "data_dir is empty");
        return -EINVAL;
    }
    path = xstrdup(dir);
    for (char *p = path + 1;; p++) {
        bool last = *p == '\0';
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            rc = -errno;
            buf_printf(err, "cannot create data_dir %s: %s", path, strerror(-rc));
            goto out;
        }
        if (last)
            break;
        *p = '/';
    }
out:
    free(path);
    return rc;
}

/* The pid the lock's holder wrote into the file, or 0 when it cannot be read (yet). */
static long read_holder_pid(int fd)
{
    char text[32] = {0};
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);

    if (n <= 0)
        return 0;
    return strtol(text, NULL, 10);
}

/* flock is per open file, released by the kernel when the holder dies, even by kill -9, so a
 * crashed arun never leaves a stale lock behind. */
static int take_lock(struct store *st, struct buf *err)
{
    char *path = xasprintf("%s/%s", st->data_dir, STORE_LOCK_FILE);
    char pid[32];
    int rc = 0;

    st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0) {
        rc = -errno;
        buf_printf(err, "cannot open %s: %s", path, strerror(-rc));
        goto out;
    }
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        long holder = read_holder_pid(st->lock_fd);
        if (rc == -EBUSY && holder > 0)
            buf_printf(err, "data_dir %s is in use by another arun (pid %ld)", st->data_dir,
                       holder);
        else if (rc == -EBUSY)
            buf_printf(err, "data_dir %s is in use by another arun", st->data_dir);
        else
            buf_printf(err, "cannot lock %s: %s", path, strerror(-rc));
        release_lock(st);
        goto out;
    }
    /* Only for the message above: a failure here costs nothing but the pid in that message. */
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(st->lock_fd, 0) != 0 || pwrite(st->lock_fd, pid, (size_t)n, 0) != n)
        log_warn_errno(MODULE, -errno, "cannot write the pid into %s", path);
out:
    free(path);
    return rc;
}

static struct store *store_new(uv_loop_t *loop, const struct store_options *opts)
{
    struct store *st = xcalloc(1, sizeof(*st));
    pthread_condattr_t attr;

    st->loop = loop;
    st->data_dir = xstrdup(opts->data_dir);
    st->node_id = xstrdup(opts->node_id != NULL ? opts->node_id : "local");
    st->lease_ms = opts->lease_ms > 0 ? opts->lease_ms : STORE_LEASE_MS_DEFAULT;
    st->lock_fd = -1;
    st->max_pending = opts->max_pending != 0 ? opts->max_pending : STORE_MAX_PENDING;
    if (opts->metrics != NULL)
        st->commit_seconds =
            metrics_histogram(opts->metrics, "arun_store_commit_seconds",
                              "Time the store's write transactions took to commit (one fsync with "
                              "synchronous=full), one observation per group-committed batch.",
                              0, NULL, commit_buckets, ARRAY_SIZE(commit_buckets));
    st->ready = st->shared_ready = true;
    snprintf(st->status, sizeof(st->status), "ok");
    snprintf(st->shared_status, sizeof(st->shared_status), "ok");
    st->writer = (struct worker){.st = st, .name = "writer", .writes = true};
    st->reader = (struct worker){.st = st, .name = "reader"};
    pthread_mutex_init(&st->mu, NULL);
    /* The probe's timed wait must not jump with the wall clock. */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&st->writer.wake, &attr);
    pthread_cond_init(&st->reader.wake, &attr);
    pthread_condattr_destroy(&attr);
    return st;
}

static int start(struct store *st, const struct store_options *opts, struct buf *err)
{
    int rc;

    rc = st->be->open(opts, st->data_dir, &st->writer.conn, &st->reader.conn, err);
    if (rc != 0)
        return rc;
    st->writer.conn->node_id = st->reader.conn->node_id = st->node_id;
    st->writer.conn->lease_ms = st->reader.conn->lease_ms = st->lease_ms;
    if (st->be == &store_postgres_backend)
        st->url = xstrdup(opts->url);
    st->done_async = xcalloc(1, sizeof(*st->done_async));
    rc = uv_async_init(st->loop, st->done_async, done_cb);
    if (rc != 0) {
        free(st->done_async);
        st->done_async = NULL;
        buf_printf(err, "cannot set up the store's wakeup: %s", uv_strerror(rc));
        return rc;
    }
    st->done_async->data = st;
    uv_unref((uv_handle_t *)st->done_async);
    rc = worker_start(&st->writer);
    if (rc == 0)
        rc = worker_start(&st->reader);
    if (rc != 0)
        buf_printf(err, "cannot start the store's threads: %s", strerror(-rc));
    return rc;
}

int store_open(uv_loop_t *loop, const struct store_options *opts, struct store **out,
               struct buf *err)
{
    struct store *st;
    int rc;

    ASSERT(loop != NULL && opts != NULL && opts->data_dir != NULL && out != NULL);
    st = store_new(loop, opts);
    rc = pick_backend(opts, &st->be, err);
    if (rc == 0)
        rc = make_data_dir(st->data_dir, err);
    if (rc == 0)
        rc = take_lock(st, err);
    if (rc == 0)
        rc = start(st, opts, err);
    if (rc != 0)
        goto fail;
    log_info(MODULE, "store open: data_dir %s (%s, synchronous=%s)", st->data_dir, st->be->name,
             opts->synchronous == CONFIG_SYNC_NORMAL ? "normal" : "full");
    *out = st;
    return 0;

fail:
    workers_stop(st);
    worker_join(&st->writer);
    worker_join(&st->reader);
    if (st->done_async != NULL) {
        st->done_async->data = NULL; /* its close callback frees only the handle */
        uv_close((uv_handle_t *)st->done_async, async_free_cb);
    }
    release_lock(st);
    store_free(st);
    return rc;
}
