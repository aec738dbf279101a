/*
 * store_int.h: the store's private header, shared by the backend-neutral front (store.c), the
 * backends (sqlite.c; postgres.c later) and the unit test. Nothing outside src/store includes it.
 *
 * It defines the two seams of the store:
 *  - struct store_op, the unit of work the loop hands to a store thread. A capability that needs
 *    a new kind of persistence (append a run event, save an engine record) adds an op kind here,
 *    a row in store_op_kinds (store.c), a submit function in store.h, its apply case in each
 *    backend and a migration for its tables; nothing else moves.
 *  - struct store_backend, what a database must implement: open and migrate, then transactions
 *    made of applied ops. Threads, queues, batching, retries, ready state and the hand-off to the
 *    loop live in store.c and are the same for every backend.
 */
#ifndef ARUN_STORE_STORE_INT_H
#define ARUN_STORE_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define STORE_WHY_MAX 256 /* bytes in a failure sentence (store_status) */

enum store_op_kind {
    STORE_OP_KV_PUT,
    STORE_OP_KV_DELETE,
    STORE_OP_KV_GET,
    STORE_OP_KV_LIST, /* every key of a namespace, as one JSON object */
    STORE_OP_PROBE,   /* writer-internal: a one-row write that tells whether commits work again */
    STORE_OP_SQL,     /* tests and fault injection only: SQL text run by the writer */
    /* durable runs (store.h): writes */
    STORE_OP_RESPONSE_PUT,
    STORE_OP_RESPONSE_UPDATE,
    STORE_OP_RESPONSE_DELETE,
    STORE_OP_EVENT_APPEND,
    STORE_OP_ITEMS_APPEND,
    STORE_OP_ITEM_DELETE,
    STORE_OP_CONVERSATION_PUT,
    STORE_OP_CONVERSATION_UPDATE,
    STORE_OP_CONVERSATION_DELETE,
    STORE_OP_IDEM_CLAIM,
    STORE_OP_RUNS_SWEEP, /* a write that answers a value: the counts */
    /* durable runs: reads */
    STORE_OP_RESPONSE_GET,
    STORE_OP_RESPONSES_LIST,
    STORE_OP_RESPONSES_LIST_ALL, /* every tenant's, for an admin */
    STORE_OP_RUNS_UNFINISHED,
    STORE_OP_EVENTS_READ,
    STORE_OP_ITEMS_LIST,
    STORE_OP_ITEM_GET,
    STORE_OP_ITEM_FIND,
    STORE_OP_HISTORY_READ,
    STORE_OP_CONVERSATION_GET,
    STORE_OP_IDEM_GET,
    /* tenancy (store.h): writes */
    STORE_OP_KEY_PUT,
    STORE_OP_KEY_REVOKE,
    STORE_OP_KEY_TOUCH,
    STORE_OP_USAGE_ADD,
    STORE_OP_AUDIT_APPEND,
    /* tenancy: reads */
    STORE_OP_KEYS_LIST,
    STORE_OP_USAGE_DAY,
    STORE_OP_AUDIT_LIST,
    /* cluster (store.h): writes */
    STORE_OP_NODE_PUT,
    STORE_OP_NODES_FORGET,
    STORE_OP_RUNS_CLAIM,   /* a write that answers a value: the claimed rows */
    STORE_OP_LEASES_RENEW, /* a write that answers a value: {"renewed":N} */
    /* cluster: reads */
    STORE_OP_NODES_LIST,
    STORE_OP__COUNT,
};

/* What each kind is: which thread runs it, and which callback shape its caller gave. */
struct store_op_kind_info {
    const char *name;   /* for logs */
    bool read;          /* run by the reader (no transaction of its own), else by the writer */
    bool returns_value; /* cb.value (status, value), else cb.write (status) */
};
extern const struct store_op_kind_info store_op_kinds[STORE_OP__COUNT];

/* The strings of a runs op, by role. Which ones an op kind uses is said at its submit function
 * in store.c; unused ones are NULL. */
enum store_run_str {
    RUN_TENANT,
    RUN_ID,     /* the object: response, conversation, item; the idempotency key */
    RUN_OWNER,  /* items: the owner (resp_… or conv_…); events: the response */
    RUN_STATUS, /* responses: status (also the list filter) */
    RUN_MODEL,
    RUN_CONV,  /* responses: conversation_id */
    RUN_PREV,  /* responses: previous_response_id */
    RUN_TYPE,  /* events: type; idempotency: body hash; items: the kind's name */
    RUN_AFTER, /* lists: the id to start after */
    RUN_JSON,  /* request, event data, items, metadata; idempotency: response id */
    RUN_JSON2, /* responses: the Response object */
    RUN_STR__COUNT,
};

struct store_op {
    struct store_op *next; /* link in whichever single list holds the op (see store.c) */
    enum store_op_kind kind;
    int result; /* set by the thread: 0 or -errno; final only after commit */
    char *out;  /* value result (heap, NUL-terminated) or NULL; freed with the op */
    size_t out_len;
    size_t bytes;       /* counted against STORE_MAX_PENDING_BYTES while pending */
    uint64_t commit_ns; /* writer: set on a batch's first op, the time its COMMIT took */
    union {
        store_write_cb write;
        store_value_cb value;
    } cb;
    void *arg;
    union {
        struct {
            const char *ns; /* these point into the op's own allocation */
            const char *key;
            const char *value; /* PUT only */
            size_t value_len;
        } kv;
        struct {
            const char *text;
        } sql;
        struct {
            const char *s[RUN_STR__COUNT]; /* into the op's own allocation, or NULL */
            size_t len[RUN_STR__COUNT];    /* bytes of each (without the NUL) */
            int64_t seq;                   /* events: seq, or after_seq for a read */
            int64_t ms;                    /* created_ms; idempotency: now; sweep: before;
                                              nodes, claim, renew: now; forget: before */
            int64_t ms2;                   /* idempotency: fresh_after; sweep: idem_before;
                                              node put: started_ms */
            uint32_t limit;                /* lists, reads, the sweep and the claim */
            bool flag;                     /* responses: background; item lists: desc;
                                              claim: restart */
        } run;
    } u;
};

/* The strings of the cluster ops (store_node_put): RUN_ID the node id, RUN_OWNER its address,
 * RUN_STATUS its state, RUN_JSON its info. The node id and lease that claims, renewals, new rows
 * and the fencing of event appends and row updates use are the connection's own (store_conn). */

/* One database connection. Each backend embeds this as the first member of its own struct.
 * A connection is used by one thread at a time: opened by the loop thread in store_open, then
 * handed to its worker thread for good (pthread_create orders the two). */
struct store_conn {
    const struct store_backend *be;
    char why[STORE_WHY_MAX]; /* the last failure that doomed a transaction, as a sentence */
    const char *node_id;     /* store_options.node_id or "local"; owned by the store */
    int64_t lease_ms;        /* store_options.lease_ms, 0 replaced by STORE_LEASE_MS_DEFAULT */
    bool retrying; /* set by store.c before each begin: this try repeats the last batch's (same
                      ops) after it failed as a whole; see STORE_BEGIN_COMMITTED */
};
#define STORE_LEASE_MS_DEFAULT 10000

/*
 * A backend. Results are 0 or -errno. "Systemic" failures (disk full, I/O error, locked, corrupt)
 * doom the whole transaction: the function returns the error and writes why. An op that fails on
 * its own merits (invalid JSON, a constraint, no such key) is not systemic: apply undoes just that
 * op, puts the error in op->result and returns 0, so the rest of its batch still commits.
 * -EBUSY means "locked by someone else, worth retrying"; store.c does the retrying.
 */
struct store_backend {
    const char *name;
    /* Opens the database under data_dir, applies pending migrations, and opens the writer's and
     * the reader's connections. Returns 0, or -errno with a sentence in err. */
    int (*open)(const struct store_options *opts, const char *data_dir, struct store_conn **writer,
                struct store_conn **reader, struct buf *err);
    /* Starts a transaction: a write transaction that holds the write lock, or a read snapshot.
     * A write begin may instead answer STORE_BEGIN_COMMITTED (only when c->retrying). */
    int (*begin)(struct store_conn *c, bool write);
    /* Applies one op inside the transaction (see above for what it returns). */
    int (*apply)(struct store_conn *c, struct store_op *op);
    /* Commits; for a write transaction 0 means durable per the synchronous setting. */
    int (*commit)(struct store_conn *c);
    /* Abandons the transaction if one is open; never fails. */
    void (*rollback)(struct store_conn *c);
    /* Closes the connection; NULL is a no-op. */
    void (*close)(struct store_conn *c);
};

/* What a write begin answers when the batch it is retrying has in fact committed already: the
 * connection died with the previous try's COMMIT on the wire, and the backend found out after
 * reconnecting that it went through (PostgreSQL: txid_status). No transaction is open; store.c
 * takes the batch as committed with the results its ops got in that try (it clears them only
 * when it applies them again), so nothing is applied twice. A backend answers it only while
 * c->retrying: once store.c gave a batch up, its outcome is not a later batch's. */
#define STORE_BEGIN_COMMITTED 1

extern const struct store_backend store_sqlite_backend;
/* postgres.c: PostgreSQL through libpq, on the same two threads (blocking libpq calls run only
 * there, never on the loop). Its open connects twice; a lost connection is a systemic failure
 * with the sentence "PostgreSQL connection lost: …", answered -ENOTCONN, which store.c retries
 * (reconnecting) like -EBUSY but for longer (STORE_RECONNECT_MS). A COMMIT whose answer was lost
 * with the connection is resolved after reconnecting by txid_status(): committed means 0 for
 * its ops, never a second apply. */
extern const struct store_backend store_postgres_backend;
/* The PostgreSQL schema, one SQL text per version (postgres_migrations.c), like SQLite's. */
extern const char *const store_postgres_migrations[];
extern const size_t store_postgres_migrations_count;

/* pg_listen.c: the notices of a shared store (store.h store_listen), on a third PostgreSQL
 * connection driven by the loop with libpq's asynchronous API (PQconnectStart/PQconnectPoll,
 * PQconsumeInput, PQnotifies on a uv_poll of PQsocket): LISTEN arun_events and arun_keys,
 * reconnect with backoff after a loss, and a STORE_NOTICE_RESYNC once back. The backend's
 * writer sends the NOTIFYs inside each write transaction (postgres.c): channel arun_events,
 * payload lines "TENANT ID\n" of the responses whose events or row a batch wrote (at most
 * 7900 bytes a NOTIFY); channel arun_keys, empty payload, for a batch with key ops. */
struct pg_listen;
struct pg_listen *pg_listen_start(uv_loop_t *loop, const char *url, store_notice_cb cb,
                                  void *arg);
bool pg_listen_up(const struct pg_listen *l);
/* Stops listening; frees itself once its handles are closed (the loop runs on). NULL no-op. */
void pg_listen_stop(struct pg_listen *l);

/* The SQLite schema, one SQL text per version: entry i takes the schema from version i to
 * i + 1 (sqlite_migrations.c). Append only; never edit an entry that has shipped. */
extern const char *const store_sqlite_migrations[];
extern const size_t store_sqlite_migrations_count;

/* Runs sql (one or more statements) on the writer's connection in the next write transaction.
 * cb gets the first column of the first row any statement returned (or NULL). For tests: fault
 * injection (PRAGMA max_page_count) and checking pragmas. Returns as store_kv_put. */
int store_debug_sql(struct store *st, const char *sql, store_value_cb cb, void *arg) MUST_USE;

#endif
