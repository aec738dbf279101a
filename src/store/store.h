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
#include "core/metrics.h"

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
    const char *url;                    /* "sqlite" (NULL means sqlite), or postgres:// (or
                                           postgresql://) with libpq's keys and PG* variables */
    const char *data_dir;               /* created 0700 if missing; holds arun.db, arun.lock */
    enum config_store_sync synchronous; /* FULL (default): acked writes survive power loss */
    uint32_t busy_timeout_ms;           /* 0 = STORE_BUSY_TIMEOUT_MS */
    size_t max_pending;                 /* 0 = STORE_MAX_PENDING */
    struct metrics *metrics;            /* or NULL: gets arun_store_commit_seconds */
    const char *node_id;                /* this node (cluster.node_id): the owner written on the
                                           runs it creates and claims; NULL = "local" */
    int64_t lease_ms;                   /* a run's lease (cluster.lease_s); 0 = 10 s */
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

/* Whether several nodes share this store (PostgreSQL): leases, takeover, notices and peers
 * matter only then. A SQLite store belongs to the one arun that holds data_dir's lock. */
bool store_shared(const struct store *st);
/* This store's node id (store_options.node_id, "local" when none was given). */
const char *store_node_id(const struct store *st);

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

/* ---- durable runs: responses, their events and items, conversations, idempotency keys ----
 *
 * The tables behind the Responses and Conversations APIs (docs/internals/runs.md). Every row
 * belongs to a tenant and every call takes the tenant: an object of another tenant is -ENOENT,
 * exactly like one that does not exist; no function reads or writes across tenants except the
 * system scans (store_runs_unfinished for recovery, store_runs_sweep for retention,
 * store_responses_list_all for an admin's every-tenant view), which say so. The tenant comes from
 * the request's key (STORE_TENANT_DEFAULT with auth.mode none).
 *
 * Ids are the API's (resp_…, msg_…, fc_…, conv_…), made by the caller (core/ids.h), unique within
 * a tenant. JSON given to a write is stored as it is (it must be valid JSON: -EINVAL otherwise)
 * and read back byte for byte. Writes go through the writer's group commit like every write:
 * their callback means committed, and a write submitted after another commits no earlier (the
 * writer is FIFO), so a caller that waits for the last of several writes has them all.
 *
 * Reads answer JSON texts through store_value_cb (or, for events, the line format below); the
 * shape is given with each function. "ms" is the wall clock in milliseconds since the epoch. */

#define STORE_TENANT_DEFAULT "default"
#define STORE_TENANT_MAX 64  /* bytes in a tenant name */
#define STORE_ID_MAX 128     /* bytes in an object id */
#define STORE_PAGE_MAX 10000 /* rows one list or read returns at most */

/* A response row: the run's index entry. The event log (below) is the truth about a run; the
 * row is what lists, lookups and recovery read without folding events. */
struct store_response {
    const char *tenant;
    const char *id;
    const char *status;               /* queued in_progress completed failed cancelled incomplete */
    const char *model;                /* as the client asked */
    const char *conversation_id;      /* or NULL */
    const char *previous_response_id; /* or NULL */
    int64_t created_ms;
    bool background;
    const char *request; /* JSON object: what the run needs to start again (store_response_put
                            only; update keeps it) */
    size_t request_len;
    const char *object; /* JSON object: the Response as GET /v1/responses/ID shows it */
    size_t object_len;
};

/* Inserts a response row. cb gets 0 once committed, -EEXIST when (tenant, id) exists, -EINVAL
 * for invalid JSON. Returns as store_kv_put (-EINVAL also for a missing tenant, id, status,
 * model, request or object; -E2BIG past STORE_TENANT_MAX/STORE_ID_MAX/STORE_VALUE_MAX). */
int store_response_put(struct store *st, const struct store_response *r, store_write_cb cb,
                       void *arg) MUST_USE;
/* Sets the status and the Response object of an existing row (the request stays). cb gets 0,
 * -ENOENT when there is no such row. Returns as store_response_put. */
int store_response_update(struct store *st, const char *tenant, const char *id, const char *status,
                          const char *object, size_t object_len, store_write_cb cb,
                          void *arg) MUST_USE;
/* Reads a response row: {"id","status","model","conversation_id","previous_response_id",
 * "created_ms","background","request":{…},"object":{…},"last_seq":N,"node":"…"} (null for
 * absent ids; last_seq is the highest stored event's sequence number, -1 with none; node the
 * run's owner, null for a row written before leases existed), or -ENOENT. */
int store_response_get(struct store *st, const char *tenant, const char *id, store_value_cb cb,
                       void *arg) MUST_USE;
/* Deletes a response row with its events and its input and output items (conversation items
 * are the conversation's: they stay). cb gets 0 or -ENOENT. */
int store_response_delete(struct store *st, const char *tenant, const char *id, store_write_cb cb,
                          void *arg) MUST_USE;
/* Lists a tenant's responses, newest first: {"data":[row…],"has_more":bool}, each row as
 * store_response_get's without "request". status NULL lists every status; after_id (or NULL)
 * starts after that response (-ENOENT when it does not exist); limit 1..STORE_PAGE_MAX. A page
 * (here and for items) stops early, with has_more, once it holds STORE_VALUE_MAX bytes. */
int store_responses_list(struct store *st, const char *tenant, const char *status,
                         const char *after_id, uint32_t limit, store_value_cb cb,
                         void *arg) MUST_USE;
/* System read for an admin (the console's every-tenant view), every tenant: store_responses_list
 * across tenants, newest first, each row with "tenant"; after_id is a response of any tenant
 * (-ENOENT when there is none). */
int store_responses_list_all(struct store *st, const char *status, const char *after_id,
                             uint32_t limit, store_value_cb cb, void *arg) MUST_USE;
/* System scan for recovery, every tenant: the rows whose status is queued or in_progress, in
 * the order they were created (created_ms, then the order of store_response_put within a
 * millisecond), as a JSON array of store_response_get's rows with "tenant". */
int store_runs_unfinished(struct store *st, store_value_cb cb, void *arg) MUST_USE;

/* Appends one event to a response's log. data is the event's JSON object on one line (no
 * '\n', as jansson's JSON_COMPACT writes it), type its "type". Events are never rewritten: cb
 * gets -EEXIST when (tenant, response_id, seq) is taken, -EINVAL for invalid JSON, -ENOENT when
 * the response does not exist, -ESTALE when another node owns the run now (its lease expired
 * and that node claimed it: store_runs_claim); store_response_update is fenced the same way. Returns as store_response_put (-EINVAL also for seq < 0, a '\n'
 * in data or a space or '\n' in type). */
int store_event_append(struct store *st, const char *tenant, const char *response_id, int64_t seq,
                       const char *type, const char *data, size_t len, store_write_cb cb,
                       void *arg) MUST_USE;
/* Reads the events of a response after sequence number after_seq (-1: from the first), at most
 * limit (1..STORE_PAGE_MAX) of them, in order, as lines "SEQ TYPE DATA\n" (decimal sequence
 * number, a space, the type, a space, the JSON as stored): a stream can frame them as SSE
 * without parsing JSON. An empty text when there are none after after_seq; -ENOENT when the
 * response does not exist. A page stops early once it holds STORE_VALUE_MAX bytes (it always
 * holds at least one event): read on after its last sequence number. */
int store_events_read(struct store *st, const char *tenant, const char *response_id,
                      int64_t after_seq, uint32_t limit, store_value_cb cb, void *arg) MUST_USE;

/* Whose items a list is. */
enum store_items_kind {
    STORE_ITEMS_INPUT,        /* a response's input items (owner: resp_…) */
    STORE_ITEMS_OUTPUT,       /* a response's output items (owner: resp_…) */
    STORE_ITEMS_CONVERSATION, /* a conversation's items (owner: conv_…) */
};
/* Appends items (a JSON array of objects, each with a string "id") after the owner's last
 * item of that kind, in array order (all or none). cb gets 0, -EEXIST when an id is already
 * among them, -EINVAL when items is not such an array, -ENOENT when the owner (the response, or
 * the conversation, whose updated_ms it sets) does not exist. */
int store_items_append(struct store *st, const char *tenant, const char *owner_id,
                       enum store_items_kind kind, const char *items, size_t len, store_write_cb cb,
                       void *arg) MUST_USE;
/* One page of an owner's items: {"data":[item…],"has_more":bool}, in position order (desc:
 * newest first), starting after the item after_id (or NULL; -ENOENT when it is not among
 * them); limit 1..STORE_PAGE_MAX. An owner with no items answers an empty page. */
int store_items_list(struct store *st, const char *tenant, const char *owner_id,
                     enum store_items_kind kind, const char *after_id, uint32_t limit, bool desc,
                     store_value_cb cb, void *arg) MUST_USE;
/* The earlier turns a response continues: walking previous_response_id from response_id
 * (included) back to the first, every response's input items then its output items, oldest
 * turn first, as one JSON array (at most STORE_PAGE_MAX items: the oldest are dropped first).
 * -ENOENT when response_id does not exist. */
int store_history_read(struct store *st, const char *tenant, const char *response_id,
                       store_value_cb cb, void *arg) MUST_USE;
/* One item of an owner, or -ENOENT. */
int store_item_get(struct store *st, const char *tenant, const char *owner_id,
                   enum store_items_kind kind, const char *item_id, store_value_cb cb,
                   void *arg) MUST_USE;
/* The item with that id among every item the tenant has stored (any response's input or output,
 * any conversation's), for an `item_reference`; -ENOENT when there is none. An item stored in
 * several lists (a turn's input in its response and in its conversation) is the same item: any
 * one copy is answered. */
int store_item_find(struct store *st, const char *tenant, const char *item_id, store_value_cb cb,
                    void *arg) MUST_USE;
/* Deletes one item of an owner; cb gets 0 or -ENOENT. */
int store_item_delete(struct store *st, const char *tenant, const char *owner_id,
                      enum store_items_kind kind, const char *item_id, store_write_cb cb,
                      void *arg) MUST_USE;

/* Inserts a conversation (metadata: a JSON object). cb gets 0 or -EEXIST. */
int store_conversation_put(struct store *st, const char *tenant, const char *id, int64_t created_ms,
                           const char *metadata, size_t len, store_write_cb cb, void *arg) MUST_USE;
/* Replaces a conversation's metadata; cb gets 0 or -ENOENT. */
int store_conversation_update(struct store *st, const char *tenant, const char *id,
                              const char *metadata, size_t len, store_write_cb cb,
                              void *arg) MUST_USE;
/* Reads {"id","created_ms","metadata":{…}}, or -ENOENT. */
int store_conversation_get(struct store *st, const char *tenant, const char *id, store_value_cb cb,
                           void *arg) MUST_USE;
/* Deletes a conversation and its items; cb gets 0 or -ENOENT. */
int store_conversation_delete(struct store *st, const char *tenant, const char *id,
                              store_write_cb cb, void *arg) MUST_USE;

/* Claims an Idempotency-Key for a response: inserts (tenant, key) -> (body_hash, response_id)
 * unless the key is held by a claim made at or after fresh_after_ms (an older claim is
 * replaced). cb gets 0 (claimed) or -EEXIST (held: store_idem_get says by whom). */
int store_idem_claim(struct store *st, const char *tenant, const char *key, const char *body_hash,
                     const char *response_id, int64_t now_ms, int64_t fresh_after_ms,
                     store_write_cb cb, void *arg) MUST_USE;
/* Reads a claim: {"body_hash","response_id","created_ms"}, or -ENOENT. */
int store_idem_get(struct store *st, const char *tenant, const char *key, store_value_cb cb,
                   void *arg) MUST_USE;

/* System sweep for retention, every tenant, in one short transaction: deletes at most limit
 * finished responses (not queued or in_progress) created before before_ms, with their events
 * and items, at most limit conversations last updated before before_ms with their items, and
 * at most limit idempotency claims made before idem_before_ms. cb gets
 * {"responses":N,"conversations":N,"idem":N}; a caller that got any N == limit calls again (the
 * sweep yields to other writes in between). Returns -EINVAL for a limit outside
 * 1..STORE_PAGE_MAX, else as store_kv_put. */
int store_runs_sweep(struct store *st, int64_t before_ms, int64_t idem_before_ms, uint32_t limit,
                     store_value_cb cb, void *arg) MUST_USE;

/* ---- tenancy: API keys, daily usage, audit (docs/internals/tenancy.md) ----
 *
 * System tables: they are read and written by the tenancy layer for every tenant (it is what
 * gives requests their tenant), never by a request's own handler. A key is stored only as the
 * SHA-256 of its text (hex): the text itself never reaches the store. */

#define STORE_DAY_LEN 10 /* "YYYY-MM-DD" (UTC) */

struct store_key {
    const char *id;     /* "key_…": how lists, revocation and the audit name the key */
    const char *hash;   /* hex SHA-256 of the key's text, 64 characters */
    const char *tenant; /* the tenant the key acts for */
    const char *role;   /* "admin" or "member" */
    const char *name;   /* a person's label, or NULL */
    int64_t created_ms;
};

/* Inserts a key. cb gets 0 once committed, -EEXIST when the id or the hash is taken. Returns as
 * store_kv_put (-EINVAL for a missing id, hash, tenant or role, or a hash that is not 64 hex
 * digits; -E2BIG past STORE_ID_MAX, STORE_TENANT_MAX, or 256 bytes of name). */
int store_key_put(struct store *st, const struct store_key *k, store_write_cb cb,
                  void *arg) MUST_USE;
/* Marks a key revoked at revoked_ms (a second revocation keeps the first time and gets 0). cb
 * gets 0 or -ENOENT. Returns as store_kv_put. */
int store_key_revoke(struct store *st, const char *id, int64_t revoked_ms, store_write_cb cb,
                     void *arg) MUST_USE;
/* Raises a key's last_used_ms to used_ms (never lowers it). cb gets 0 or -ENOENT. */
int store_key_touch(struct store *st, const char *id, int64_t used_ms, store_write_cb cb,
                    void *arg) MUST_USE;
/* One page of every key, by id: {"data":[{"id","hash","tenant","role","name","created_ms",
 * "last_used_ms","revoked_ms"}…],"has_more":bool} (name, last_used_ms and revoked_ms null when
 * unset), after after_id (or NULL: from the first; an after_id that does not exist is no error,
 * the page starts at the next id), limit 1..STORE_PAGE_MAX. */
int store_keys_list(struct store *st, const char *after_id, uint32_t limit, store_value_cb cb,
                    void *arg) MUST_USE;

/* Adds output_tokens (>= 0) and requests (>= 0) to a tenant's counters of one UTC day ("YYYY-
 * MM-DD"), creating the row. cb gets 0. Returns as store_kv_put (-EINVAL for a day that is not
 * STORE_DAY_LEN characters or negative counts). */
int store_usage_add(struct store *st, const char *tenant, const char *day, int64_t output_tokens,
                    int64_t requests, store_write_cb cb, void *arg) MUST_USE;
/* One page of the counters of one day, by tenant: {"data":[{"tenant","output_tokens",
 * "requests"}…],"has_more":bool}, after after_tenant (or NULL), limit 1..STORE_PAGE_MAX. */
int store_usage_day(struct store *st, const char *day, const char *after_tenant, uint32_t limit,
                    store_value_cb cb, void *arg) MUST_USE;

/* One audit event: who did what, to what, when, and how it ended. */
struct store_audit {
    int64_t ts_ms;
    const char *actor;   /* a key id, "local" (the owner's socket), "anonymous", "arun" */
    const char *tenant;  /* the actor's tenant, or NULL */
    const char *action;  /* "engine.start", "key.create", "auth.failure", "tls.reload", … */
    const char *target;  /* what it acted on (an engine, a key id), or NULL */
    const char *outcome; /* "ok", "denied", "failed" */
    const char *remote;  /* the client's address ("127.0.0.1:5555", "local"), or NULL */
    const char *detail;  /* a JSON object with more (the reason, the request id), or NULL */
    size_t detail_len;
};

/* Appends an audit event; the store numbers it (seq rises by 1 from 1, never reused). cb gets
 * 0 once committed, -EINVAL for a detail that is not a JSON object. Returns as store_kv_put
 * (-EINVAL for a missing actor, action or outcome; -E2BIG past STORE_ID_MAX for the strings or
 * 64 KiB of detail). */
int store_audit_append(struct store *st, const struct store_audit *a, store_write_cb cb,
                       void *arg) MUST_USE;
/* One page of audit events, oldest first: those with ts_ms >= since_ms and seq > after_seq,
 * {"data":[{"seq","ts_ms","actor","tenant","action","target","outcome","remote","detail":{…}}…],
 * "has_more":bool} (absent strings null, detail {} when none), limit 1..STORE_PAGE_MAX. */
int store_audit_list(struct store *st, int64_t since_ms, int64_t after_seq, uint32_t limit,
                     store_value_cb cb, void *arg) MUST_USE;

/* ---- cluster: nodes, run leases, notices (docs/internals/cluster.md) ----
 *
 * Every node writes its own row in `nodes` and heartbeats it; every unfinished run has an owner
 * node and a lease (responses.node, responses.lease_until_ms): store_response_put gives a new
 * run to this node (store_options.node_id) with a lease of store_options.lease_ms, the owner
 * renews the leases of all its runs in one write, and a run whose lease ran out is claimed by
 * another node, which continues it or ends it as after a restart. Times: a store shared by
 * several machines (PostgreSQL) uses the database's clock for seen_ms and leases (the now_ms
 * given is ignored), so nodes whose clocks differ still agree; SQLite uses now_ms. */

#define STORE_NODE_INFO_MAX (256u * 1024) /* bytes of a node's info JSON */

struct store_node {
    const char *id;      /* cluster.node_id */
    const char *address; /* cluster.advertise: how other nodes reach it (http://host:port) */
    const char *state;   /* "up" while it runs, "left" once it stopped cleanly */
    int64_t started_ms;
    const char *info; /* JSON object: engines, memory, version (cluster.c says what) */
    size_t info_len;
};

/* Upserts this node's row and sets its seen_ms to now (the heartbeat). cb gets 0 once committed,
 * -EINVAL for info that is not a JSON object. Returns as store_kv_put (-EINVAL for a missing
 * field, -E2BIG past STORE_ID_MAX for id, 1024 bytes of address, STORE_NODE_INFO_MAX). */
int store_node_put(struct store *st, const struct store_node *n, int64_t now_ms,
                   store_write_cb cb, void *arg) MUST_USE;
/* Every node's row, by id: {"now_ms":N,"data":[{"id","address","state","started_ms","seen_ms",
 * "info":{…}}…]}; now_ms is the clock seen_ms is on (the database's for PostgreSQL), so a
 * reader computes "seconds since last seen" without trusting its own clock. */
int store_nodes_list(struct store *st, int64_t now_ms, store_value_cb cb, void *arg) MUST_USE;
/* Removes the rows of nodes not seen since before_ms that are not up (left, or down that
 * long), so a node renamed or retired does not stay listed forever. cb gets 0. */
int store_nodes_forget(struct store *st, int64_t before_ms, store_write_cb cb, void *arg) MUST_USE;

/* System write for recovery and takeover, every tenant: claims for this node the unfinished
 * runs (queued, in_progress) that have no owner or whose lease ran out before now (their node
 * died). A claimed run gets node = this node and a lease until now + lease_ms, so a claim never
 * answers the same run twice while its new lease runs: call again after a full page. With
 * restart (this node is starting), it first gives up the leases its earlier process held, so
 * those runs are claimable at once: on PostgreSQL the runs this node id owns, on SQLite every
 * unfinished run (data_dir's lock says no other arun runs). At most limit runs, oldest first;
 * on PostgreSQL the rows are picked with FOR UPDATE SKIP LOCKED, so two nodes claiming at once
 * never get the same run. cb gets a JSON array of store_runs_unfinished's rows, each with
 * "node": the owner before the claim (null if none). */
int store_runs_claim(struct store *st, int64_t now_ms, bool restart, uint32_t limit,
                     store_value_cb cb, void *arg) MUST_USE;
/* Extends the lease of every unfinished run this node owns to now + lease_ms, in one write. cb
 * gets {"renewed":N}. */
int store_leases_renew(struct store *st, int64_t now_ms, store_value_cb cb, void *arg) MUST_USE;

/* Notices: what other nodes committed, for followers on this one. Only a shared store sends
 * them (PostgreSQL's LISTEN/NOTIFY on a connection of their own, driven by this loop); the
 * payload is small, the data is read from the tables. */
enum store_notice {
    STORE_NOTICE_EVENTS, /* tenant, id: events of that response (or its row) were committed */
    STORE_NOTICE_KEYS,   /* API keys changed (created, revoked): tenant and id are NULL */
    STORE_NOTICE_RESYNC, /* notices may have been missed (the listening connection was lost and
                            is back): re-read what is followed. tenant and id are NULL */
};
typedef void (*store_notice_cb)(enum store_notice kind, const char *tenant, const char *id,
                                void *arg);
#define STORE_LISTENERS_MAX 4
/* Adds a listener for notices (at most STORE_LISTENERS_MAX; they live as long as the store). A
 * store that is not shared accepts it and never calls it. Returns 0 or -ENOSPC. */
int store_listen(struct store *st, store_notice_cb cb, void *arg) MUST_USE;
/* Whether notices are being received now (always true for a store that is not shared). */
bool store_listening(const struct store *st);

#endif