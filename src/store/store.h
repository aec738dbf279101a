/*
 * store.h: the one interface arun uses for persistence. Callers see backend-neutral types only:
 * an opaque struct store, options, callbacks and results as 0 or -errno. Today the backend is
 * SQLite (sqlite.c, data_dir/arun.db); a PostgreSQL backend plugs in behind the same functions
 * (store_int.h says what it must implement), so no caller changes when it arrives.
 *
 * Every function here is called on the loop thread that opened the store. Nothing here blocks
 * that thread on disk after store_open(): writes go to a writer thread that commits them in
 * batches (group commit), reads go to a reader thread, and each result comes back to the loop,
 * where its callback runs. A write's callback runs only after the transaction holding it has
 * committed: 0 there means the write is durable (see docs/internals/store.md for how durable).
 *
 * Callbacks: a function that takes a callback and returns an error never calls it (libuv). One
 * that returns 0 calls it exactly once, on the loop thread, also when the store is being closed
 * (store_close drains, it never drops an accepted op).
 */
#ifndef ARUN_STORE_STORE_H
#define ARUN_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/config.h"

#define STORE_DB_FILE "arun.db"     /* under data_dir, for url "sqlite" */
#define STORE_LOCK_FILE "arun.lock" /* under data_dir: flock'd by the one arun that writes */
/* How long SQLite itself waits for a lock before store.c's retries start: a checkpoint or an
 * admin's short transaction fits in it; a stuck lock still surfaces within seconds. */
#define STORE_BUSY_TIMEOUT_MS 1000
/* Ops accepted but not yet completed. Past it, submissions fail with -EAGAIN: the caller sheds
 * load instead of the store growing without bound behind a slow disk. */
#define STORE_MAX_PENDING 100000
/* Bytes held by those ops (keys, values); the same -EAGAIN past it. */
#define STORE_MAX_PENDING_BYTES (256u * 1024 * 1024)
#define STORE_NS_MAX 128                    /* bytes in a namespace name */
#define STORE_KEY_MAX 1024                  /* bytes in a key */
#define STORE_VALUE_MAX (16u * 1024 * 1024) /* bytes in one JSON value */
#define STORE_LIST_MAX 10000                /* keys returned by one store_kv_list */

struct store; /* opaque; one per process and data_dir */

struct store_options {
    const char *url;                    /* "sqlite" (NULL means sqlite); postgres:// later */
    const char *data_dir;               /* created 0700 if missing; holds arun.db, arun.lock */
    enum config_store_sync synchronous; /* FULL (default): acked writes survive power loss */
    uint32_t busy_timeout_ms;           /* 0 = STORE_BUSY_TIMEOUT_MS */
    size_t max_pending;                 /* 0 = STORE_MAX_PENDING */
};

/* Counters for tests and /metrics. Commits far fewer than ops_committed is group commit at work. */
struct store_stats {
    uint64_t commits;        /* write transactions committed (with a not-ready store's probes) */
    uint64_t ops_committed;  /* write ops in those transactions */
    uint64_t batches_failed; /* write transactions given up (their ops got an error) */
    uint64_t busy_retries;   /* write transactions retried because the database was locked */
    uint64_t reads;          /* read ops completed */
    uint64_t pending;        /* ops accepted and not yet completed */
};

/* status: 0, or -errno (e.g. -ENOSPC, -EIO, -EBUSY, -ECANCELED). */
typedef void (*store_write_cb)(int status, void *arg);
/* status: 0 with the value (NUL-terminated, len bytes), or -errno with value NULL (-ENOENT: no
 * such key). The value belongs to the store and is valid only during the call. */
typedef void (*store_value_cb)(int status, const char *value, size_t len, void *arg);

/* Opens the store named by opts on loop: creates data_dir, takes the single-writer lock, opens
 * the database, applies pending migrations and starts the threads. Runs synchronously (it is
 * meant for startup, before the loop serves; it takes milliseconds). Returns 0 and *out, or
 * -errno with a sentence in err, e.g. -EBUSY "data_dir ./arun-data is in use by another arun
 * (pid 1234)", -ENOTSUP "…/arun.db has schema version 9, this arun knows up to 1: use a newer
 * arun or another data_dir". Only if starting the threads failed is a handle left closing on
 * loop: run the loop once before uv_loop_close(). */
int store_open(uv_loop_t *loop, const struct store_options *opts, struct store **out,
               struct buf *err) MUST_USE;

/* Closes the store without blocking the loop: no new op is accepted (-ECANCELED), every op
 * accepted before is still committed or read and its callback runs, then the threads end, the
 * database and the lock are released and the store is freed. All of that finishes while the
 * loop runs: the store keeps the loop alive until it is done, so uv_run(loop, UV_RUN_DEFAULT)
 * returns only after the lock is released. st must not be used after this call, except by the
 * callbacks of ops still in flight, which may call store functions (they get -ECANCELED). */
void store_close(struct store *st);

/* Whether the last write transaction committed (true from open until a commit fails). For
 * /readyz. */
bool store_ready(const struct store *st);
/* "ok", or a sentence saying why the store is not ready, e.g. "disk full: the last commit
 * failed with SQLITE_FULL (database or disk is full)". Valid until the loop runs again. */
const char *store_status(const struct store *st);
/* A snapshot of the counters. */
void store_stats(struct store *st, struct store_stats *out);

/* Stores value (a JSON text of len bytes) under (ns, key), replacing any value there. cb gets 0
 * once committed; -EINVAL when value is not valid JSON; -ENOSPC/-EIO/-EBUSY when the commit
 * failed. Returns 0, or without calling cb: -EINVAL (empty ns or key), -E2BIG (past
 * STORE_NS_MAX, STORE_KEY_MAX or STORE_VALUE_MAX), -EAGAIN (too many ops pending),
 * -ECANCELED (store closing). The store copies ns, key and value. */
int store_kv_put(struct store *st, const char *ns, const char *key, const char *value, size_t len,
                 store_write_cb cb, void *arg) MUST_USE;
/* Removes (ns, key). cb gets 0 once committed, -ENOENT when there was no such key, or a commit
 * error. Returns as store_kv_put. */
int store_kv_delete(struct store *st, const char *ns, const char *key, store_write_cb cb,
                    void *arg) MUST_USE;
/* Reads (ns, key). It sees every write whose callback ran before this call. cb gets the value
 * or -ENOENT. Returns as store_kv_put. */
int store_kv_get(struct store *st, const char *ns, const char *key, store_value_cb cb,
                 void *arg) MUST_USE;

/* Reads every (key, value) of ns as one JSON object {"key": value, …}, keys in order, at most
 * STORE_LIST_MAX of them ("{}" when the namespace is empty). Returns as store_kv_get. */
int store_kv_list(struct store *st, const char *ns, store_value_cb cb, void *arg) MUST_USE;

#endif
