/*
 * sqlite.c: the SQLite backend of the store (store_int.h): data_dir/arun.db in WAL mode, one
 * connection for the writer thread and one for the reader thread. It opens and migrates the
 * database, runs the transactions store.c asks for, and converts SQLite's result codes into
 * -errno and sentences, here and nowhere else. It knows nothing of threads or the loop.
 *
 * DESIGN
 * - WAL: the reader's snapshots never block the writer and the writer never blocks them; a
 *   commit appends to the WAL and, with synchronous=FULL, fsyncs it before COMMIT returns, so an
 *   acknowledged write survives power loss. With NORMAL the WAL is fsynced only at checkpoints:
 *   a commit survives kill -9 of arun (it is in the OS's page cache) but the last ones may be
 *   lost, never corrupted, on power loss.
 * - Write transactions are BEGIN IMMEDIATE, so a locked database shows up at BEGIN (where a
 *   retry is cheap) rather than half way through a batch.
 * - Each write op runs inside its own SAVEPOINT: an op that fails on its own merits (a CHECK,
 *   a constraint) is rolled back alone and the rest of its batch still commits; an error of the
 *   database itself (FULL, IOERR, BUSY, CORRUPT) dooms the whole transaction.
 * - Statements are prepared once per connection, lazily, and kept (SQLITE_PREPARE_PERSISTENT).
 * - Migrations: PRAGMA user_version is the schema version; store_sqlite_migrations[i] takes it
 *   from i to i + 1. All pending ones run in one IMMEDIATE transaction at open, so a crash half
 *   way leaves the old version intact, and the version check refuses a database from a newer
 *   arun instead of writing into a schema this binary does not know.
 *
 * THREAD SAFETY NOTES
 * Connections are opened with SQLITE_OPEN_NOMUTEX: each is used by one thread at a time (store.c
 * guarantees it), so SQLite's own per-connection mutex would only cost.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "store/store_int.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

#define MODULE "store"
/* The writer connection's page cache, at most (cache_size), in KiB. */
#define STORE_WRITER_CACHE_KIB 65536
/* Each connection's memory map and checkpoint size, and the reader's page cache (negative:
 * KiB; the writer's is STORE_WRITER_CACHE_KIB). Every batch of
 * run events touches the tail page of every live run's log: with SQLite's default 2 MB cache
 * those pages were evicted and read back through pread, and the default checkpoint every 1000
 * WAL pages (4 MB) copied the same hot pages into arun.db again and again, each time with an
 * fsync even with synchronous=normal. A 40 MB WAL checkpoints ten times less often (the WAL file
 * is cut back to 64 MB after a checkpoint that found it larger); the map lets reads use the OS's
 * page cache directly (its size is address space, not memory). bench/README.md, "Store: run
 * events", has the numbers. */
#define CONN_CACHE_PRAGMAS                                                                         \
    "PRAGMA mmap_size = 268435456; "                                                               \
    "PRAGMA wal_autocheckpoint = 10000; PRAGMA journal_size_limit = 67108864"

enum stmt {
    STMT_BEGIN_READ,
    STMT_BEGIN_WRITE,
    STMT_COMMIT,
    STMT_ROLLBACK,
    STMT_SAVEPOINT,
    STMT_RELEASE,
    STMT_ROLLBACK_TO,
    STMT_KV_PUT,
    STMT_KV_DELETE,
    STMT_KV_GET,
    STMT_KV_LIST,
    STMT_PROBE,
    /* durable runs */
    STMT_RESPONSE_PUT,
    STMT_RESPONSE_UPDATE,
    STMT_RESPONSE_DELETE,
    STMT_RESPONSE_EXISTS,
    STMT_RESPONSE_GET,
    STMT_RESPONSE_AFTER,
    STMT_RESPONSES_LIST,
    STMT_RESPONSES_LIST_STATUS,
    STMT_RESPONSE_AFTER_ANY,
    STMT_RESPONSES_LIST_ALL,
    STMT_RESPONSES_LIST_ALL_STATUS,
    STMT_RUNS_UNFINISHED,
    STMT_RESPONSE_PREV,
    STMT_EVENT_APPEND,
    STMT_EVENTS_READ,
    STMT_EVENTS_DELETE,
    STMT_ITEMS_IS_ARRAY,
    STMT_ITEMS_NEXT_POSITION,
    STMT_ITEMS_APPEND,
    STMT_ITEMS_AFTER,
    STMT_ITEMS_LIST_ASC,
    STMT_ITEMS_LIST_DESC,
    STMT_ITEMS_HISTORY,
    STMT_ITEM_GET,
    STMT_ITEM_FIND,
    STMT_ITEM_DELETE,
    STMT_ITEMS_DELETE_RESPONSE,
    STMT_ITEMS_DELETE_CONVERSATION,
    STMT_CONVERSATION_PUT,
    STMT_CONVERSATION_UPDATE,
    STMT_CONVERSATION_TOUCH,
    STMT_CONVERSATION_EXISTS,
    STMT_CONVERSATION_GET,
    STMT_CONVERSATION_DELETE,
    STMT_IDEM_CLAIM,
    STMT_IDEM_GET,
    STMT_SWEEP_RESPONSES,
    STMT_SWEEP_CONVERSATIONS,
    STMT_SWEEP_IDEM,
    /* tenancy */
    STMT_KEY_PUT,
    STMT_KEY_REVOKE,
    STMT_KEY_TOUCH,
    STMT_KEYS_LIST,
    STMT_USAGE_ADD,
    STMT_USAGE_DAY,
    STMT_AUDIT_APPEND,
    STMT_AUDIT_LIST,
    /* cluster */
    STMT_NODE_PUT,
    STMT_NODES_LIST,
    STMT_NODES_FORGET,
    STMT_RUNS_CLAIM_PICK,
    STMT_RUNS_CLAIM_TAKE,
    STMT_RUNS_RELEASE,
    STMT_LEASES_RENEW,
    STMT__COUNT,
};

/* A response row as JSON, built by concatenation: the stored JSON texts are embedded as they are,
 * never parsed again; json_quote() escapes the plain strings. FIELDS then, optionally, the request,
 * then TAIL. */
#define RESPONSE_FIELDS                                                                            \
    "'\"id\":' || json_quote(r.id) || ',\"status\":' || json_quote(r.status) || "                  \
    "',\"model\":' || json_quote(r.model) || ',\"conversation_id\":' || "                          \
    "json_quote(r.conversation_id) || ',\"previous_response_id\":' || "                            \
    "json_quote(r.previous_response_id) || ',\"created_ms\":' || r.created_ms || "                 \
    "',\"background\":' || CASE WHEN r.background THEN 'true' ELSE 'false' END"
#define RESPONSE_TAIL                                                                              \
    "',\"object\":' || r.object || ',\"last_seq\":' || coalesce((SELECT max(e.seq) FROM "          \
    "response_events e WHERE e.tenant = r.tenant AND e.response_id = r.id), -1) || "               \
    "',\"node\":' || json_quote(r.node) || '}'"
/* A write to a run is fenced: it goes through only while the run is this node's (?6), or
 * nobody's (a row from before leases). */
#define RUN_FENCE "(node IS NULL OR node = ?6)"

static const char *const stmt_sql[STMT__COUNT] = {
    [STMT_BEGIN_READ] = "BEGIN DEFERRED",
    [STMT_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    [STMT_SAVEPOINT] = "SAVEPOINT op",
    [STMT_RELEASE] = "RELEASE op",
    [STMT_ROLLBACK_TO] = "ROLLBACK TO op",
    [STMT_KV_PUT] = ("INSERT INTO kv (ns, key, value, updated_ms) VALUES (?1, ?2, ?3, ?4) "
                     "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, "
                     "updated_ms = excluded.updated_ms"),
    [STMT_KV_DELETE] = "DELETE FROM kv WHERE ns = ?1 AND key = ?2",
    [STMT_KV_GET] = "SELECT value FROM kv WHERE ns = ?1 AND key = ?2",
    /* json() re-embeds each stored JSON text as JSON, not as a string. */
    [STMT_KV_LIST] = "SELECT json_group_object(key, json(value)) FROM (SELECT key, value FROM kv "
                     "WHERE ns = ?1 ORDER BY key LIMIT " STRINGIFY(STORE_LIST_MAX) ")",
    [STMT_PROBE] = ("INSERT INTO store_probe (id, at_ms) VALUES (1, ?1) "
                    "ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms"),
    [STMT_RESPONSE_PUT] = ("INSERT INTO responses (tenant, id, status, model, conversation_id, "
                           "previous_response_id, request, object, created_ms, updated_ms, "
                           "background, node, lease_until_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                           "?7, ?8, ?9, ?9, ?10, ?11, ?12)"),
    [STMT_RESPONSE_UPDATE] = ("UPDATE responses SET status = ?3, object = ?4, updated_ms = ?5 "
                              "WHERE tenant = ?1 AND id = ?2 AND " RUN_FENCE),
    [STMT_RESPONSE_DELETE] = "DELETE FROM responses WHERE tenant = ?1 AND id = ?2",
    [STMT_RESPONSE_EXISTS] = "SELECT 1 FROM responses WHERE tenant = ?1 AND id = ?2",
    [STMT_RESPONSE_GET] =
        ("SELECT '{' || " RESPONSE_FIELDS " || ',\"request\":' || r.request || " RESPONSE_TAIL
         " FROM responses r WHERE r.tenant = ?1 AND r.id = ?2"),
    [STMT_RESPONSE_AFTER] = "SELECT created_ms, rowid FROM responses WHERE tenant = ?1 AND id = ?2",
    /* (created_ms, rowid) orders rows of the same millisecond by creation too. */
    [STMT_RESPONSES_LIST] = ("SELECT '{' || " RESPONSE_FIELDS " || " RESPONSE_TAIL
                             " FROM responses r WHERE r.tenant = ?1 AND (r.created_ms, r.rowid) "
                             "< (?2, ?3) ORDER BY r.created_ms DESC, r.rowid DESC LIMIT ?4"),
    [STMT_RESPONSES_LIST_STATUS] = ("SELECT '{' || " RESPONSE_FIELDS " || " RESPONSE_TAIL
                                    " FROM responses r WHERE r.tenant = ?1 AND r.status = ?5 AND "
                                    "(r.created_ms, r.rowid) < (?2, ?3) ORDER BY r.created_ms "
                                    "DESC, r.rowid DESC LIMIT ?4"),
    /* Every tenant's (an admin's view): the cursor by id alone (responses_by_id, migration 5),
     * the order by responses_by_age. Numbered as the tenant's own lists, ?1 (the tenant) unused,
     * so one function binds both. */
    [STMT_RESPONSE_AFTER_ANY] = "SELECT created_ms, rowid FROM responses WHERE id = ?1 LIMIT 1",
    [STMT_RESPONSES_LIST_ALL] =
        ("SELECT '{\"tenant\":' || json_quote(r.tenant) || ',' || " RESPONSE_FIELDS
         " || " RESPONSE_TAIL " FROM responses r WHERE (r.created_ms, r.rowid) < (?2, ?3) "
         "ORDER BY r.created_ms DESC, r.rowid DESC LIMIT ?4"),
    [STMT_RESPONSES_LIST_ALL_STATUS] =
        ("SELECT '{\"tenant\":' || json_quote(r.tenant) || ',' || " RESPONSE_FIELDS
         " || " RESPONSE_TAIL " FROM responses r WHERE r.status = ?5 AND "
         "(r.created_ms, r.rowid) < (?2, ?3) ORDER BY "
         "r.created_ms DESC, r.rowid DESC LIMIT ?4"),
    /* The WHERE term is the partial index's own, so the scan reads only unfinished rows. */
    [STMT_RUNS_UNFINISHED] =
        ("SELECT '{\"tenant\":' || json_quote(r.tenant) || ',' || " RESPONSE_FIELDS
         " || ',\"request\":' || r.request || " RESPONSE_TAIL
         " FROM responses r WHERE r.status IN ('queued', 'in_progress') "
         "ORDER BY r.created_ms, r.rowid"),
    [STMT_RESPONSE_PREV] =
        "SELECT previous_response_id FROM responses WHERE tenant = ?1 AND id = ?2",
    [STMT_EVENT_APPEND] =
        ("INSERT INTO response_events (tenant, response_id, type, data, seq) "
         "SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS "
         "(SELECT 1 FROM responses WHERE tenant = ?1 AND id = ?2 AND " RUN_FENCE ")"),
    [STMT_EVENTS_READ] = ("SELECT seq, type, data FROM response_events WHERE tenant = ?1 AND "
                          "response_id = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4"),
    [STMT_EVENTS_DELETE] = "DELETE FROM response_events WHERE tenant = ?1 AND response_id = ?2",
    /* NULL for invalid JSON: json_type() would fail the statement on it. */
    [STMT_ITEMS_IS_ARRAY] = "SELECT CASE WHEN json_valid(?1) THEN json_type(?1) = 'array' END",
    [STMT_ITEMS_NEXT_POSITION] = ("SELECT coalesce(max(position), -1) + 1 FROM items WHERE "
                                  "tenant = ?1 AND owner_id = ?2 AND kind = ?3"),
    /* An element that is not an object with a string id gets a NULL id, which the NOT NULL
     * constraint refuses (-EINVAL). CASE, unlike AND, never evaluates what it skips: json_type()
     * fails the statement on a text that is not JSON. */
    [STMT_ITEMS_APPEND] = ("INSERT INTO items (tenant, owner_id, kind, position, id, item) "
                           "SELECT ?1, ?2, ?3, ?4 + key, CASE WHEN type = 'object' THEN CASE "
                           "WHEN json_type(value, '$.id') = 'text' THEN json_extract(value, "
                           "'$.id') END END, value FROM json_each(?5)"),
    [STMT_ITEMS_AFTER] = ("SELECT position FROM items WHERE tenant = ?1 AND owner_id = ?2 AND "
                          "kind = ?3 AND id = ?4"),
    [STMT_ITEMS_LIST_ASC] = ("SELECT item FROM items WHERE tenant = ?1 AND owner_id = ?2 AND "
                             "kind = ?3 AND position > ?4 ORDER BY position LIMIT ?5"),
    [STMT_ITEMS_LIST_DESC] = ("SELECT item FROM items WHERE tenant = ?1 AND owner_id = ?2 AND "
                              "kind = ?3 AND position < ?4 ORDER BY position DESC LIMIT ?5"),
    /* 'input' sorts before 'output': a turn's input, then its output. */
    [STMT_ITEMS_HISTORY] = ("SELECT item FROM items WHERE tenant = ?1 AND owner_id = ?2 AND "
                            "kind IN ('input', 'output') ORDER BY kind, position"),
    [STMT_ITEM_GET] = ("SELECT item FROM items WHERE tenant = ?1 AND owner_id = ?2 AND "
                       "kind = ?3 AND id = ?4"),
    /* items_by_item_id (migration 3) answers it without a scan. */
    [STMT_ITEM_FIND] = "SELECT item FROM items WHERE tenant = ?1 AND id = ?2 LIMIT 1",
    [STMT_ITEM_DELETE] = ("DELETE FROM items WHERE tenant = ?1 AND owner_id = ?2 AND kind = ?3 "
                          "AND id = ?4"),
    [STMT_ITEMS_DELETE_RESPONSE] = ("DELETE FROM items WHERE tenant = ?1 AND owner_id = ?2 AND "
                                    "kind IN ('input', 'output')"),
    [STMT_ITEMS_DELETE_CONVERSATION] = ("DELETE FROM items WHERE tenant = ?1 AND owner_id = ?2 "
                                        "AND kind = 'conversation'"),
    [STMT_CONVERSATION_PUT] = ("INSERT INTO conversations (tenant, id, metadata, created_ms, "
                               "updated_ms) VALUES (?1, ?2, ?3, ?4, ?4)"),
    [STMT_CONVERSATION_UPDATE] = ("UPDATE conversations SET metadata = ?3, updated_ms = ?4 WHERE "
                                  "tenant = ?1 AND id = ?2"),
    [STMT_CONVERSATION_TOUCH] =
        "UPDATE conversations SET updated_ms = ?3 WHERE tenant = ?1 AND id = ?2",
    [STMT_CONVERSATION_EXISTS] = "SELECT 1 FROM conversations WHERE tenant = ?1 AND id = ?2",
    [STMT_CONVERSATION_GET] = ("SELECT '{\"id\":' || json_quote(id) || ',\"created_ms\":' || "
                               "created_ms || ',\"metadata\":' || metadata || '}' FROM "
                               "conversations WHERE tenant = ?1 AND id = ?2"),
    [STMT_CONVERSATION_DELETE] = "DELETE FROM conversations WHERE tenant = ?1 AND id = ?2",
    /* An older claim is replaced; a fresh one makes the upsert change nothing (-EEXIST). */
    [STMT_IDEM_CLAIM] = ("INSERT INTO idempotency (tenant, key, body_hash, response_id, "
                         "created_ms) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant, key) DO "
                         "UPDATE SET body_hash = excluded.body_hash, response_id = "
                         "excluded.response_id, created_ms = excluded.created_ms WHERE "
                         "idempotency.created_ms < ?6"),
    [STMT_IDEM_GET] = ("SELECT '{\"body_hash\":' || json_quote(body_hash) || ',\"response_id\":' "
                       "|| json_quote(response_id) || ',\"created_ms\":' || created_ms || '}' "
                       "FROM idempotency WHERE tenant = ?1 AND key = ?2"),
    [STMT_SWEEP_RESPONSES] = ("SELECT tenant, id FROM responses WHERE created_ms < ?1 AND status "
                              "NOT IN ('queued', 'in_progress') ORDER BY created_ms LIMIT ?2"),
    [STMT_SWEEP_CONVERSATIONS] = ("SELECT tenant, id FROM conversations WHERE updated_ms < ?1 "
                                  "ORDER BY updated_ms LIMIT ?2"),
    [STMT_SWEEP_IDEM] = ("DELETE FROM idempotency WHERE (tenant, key) IN (SELECT tenant, key FROM "
                         "idempotency WHERE created_ms < ?1 ORDER BY created_ms LIMIT ?2)"),
    [STMT_KEY_PUT] = ("INSERT INTO api_keys (id, hash, tenant, role, name, created_ms) VALUES "
                      "(?1, ?2, ?3, ?4, ?5, ?6)"),
    /* A second revocation changes nothing but still finds the row. */
    [STMT_KEY_REVOKE] = "UPDATE api_keys SET revoked_ms = coalesce(revoked_ms, ?2) WHERE id = ?1",
    [STMT_KEY_TOUCH] = ("UPDATE api_keys SET last_used_ms = max(coalesce(last_used_ms, 0), ?2) "
                        "WHERE id = ?1"),
    [STMT_KEYS_LIST] =
        ("SELECT json_object('id', id, 'hash', hash, 'tenant', tenant, 'role', role, "
         "'name', name, 'created_ms', created_ms, 'last_used_ms', last_used_ms, "
         "'revoked_ms', revoked_ms) FROM api_keys WHERE id > coalesce(?1, '') "
         "ORDER BY id LIMIT ?2"),
    [STMT_USAGE_ADD] = ("INSERT INTO tenant_usage (tenant, day, output_tokens, requests, "
                        "updated_ms) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (day, tenant) DO "
                        "UPDATE SET output_tokens = output_tokens + excluded.output_tokens, "
                        "requests = requests + excluded.requests, updated_ms = "
                        "excluded.updated_ms"),
    [STMT_USAGE_DAY] = ("SELECT json_object('tenant', tenant, 'output_tokens', output_tokens, "
                        "'requests', requests) FROM tenant_usage WHERE day = ?1 AND tenant > "
                        "coalesce(?2, '') ORDER BY tenant LIMIT ?3"),
    [STMT_AUDIT_APPEND] = ("INSERT INTO audit (actor, tenant, action, target, outcome, remote, "
                           "detail, ts_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
    /* By seq alone: ts_ms only filters (a clock step back must not hide or repeat a row). */
    [STMT_AUDIT_LIST] = ("SELECT json_object('seq', seq, 'ts_ms', ts_ms, 'actor', actor, 'tenant', "
                         "tenant, 'action', action, 'target', target, 'outcome', outcome, "
                         "'remote', remote, 'detail', json(detail)) FROM audit WHERE seq > ?2 "
                         "AND ts_ms >= ?1 ORDER BY seq LIMIT ?3"),
    [STMT_NODE_PUT] = ("INSERT INTO nodes (id, address, state, started_ms, seen_ms, info) VALUES "
                       "(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET address = "
                       "excluded.address, state = excluded.state, started_ms = "
                       "excluded.started_ms, seen_ms = excluded.seen_ms, info = excluded.info"),
    /* The stored info is embedded as it is, never parsed again. */
    [STMT_NODES_LIST] = ("SELECT '{\"id\":' || json_quote(id) || ',\"address\":' || "
                         "json_quote(address) || ',\"state\":' || json_quote(state) || "
                         "',\"started_ms\":' || started_ms || ',\"seen_ms\":' || seen_ms || "
                         "',\"info\":' || info || '}' FROM nodes ORDER BY id LIMIT ?1"),
    /* A row unseen that long is left, or up but down that long: either way gone for good. */
    [STMT_NODES_FORGET] = "DELETE FROM nodes WHERE seen_ms < ?1",
    /* ?1 now. The status term is the partial index's own (responses_unfinished), so the scan
     * reads only unfinished rows, oldest first. The row shows the owner before the claim: the
     * take below runs after it. */
    [STMT_RUNS_CLAIM_PICK] =
        ("SELECT '{\"tenant\":' || json_quote(r.tenant) || ',' || " RESPONSE_FIELDS
         " || ',\"request\":' || r.request || " RESPONSE_TAIL
         ", r.rowid FROM responses r WHERE r.status IN ('queued', 'in_progress') AND (r.node IS "
         "NULL OR r.lease_until_ms < ?1) ORDER BY r.created_ms, r.rowid LIMIT ?2"),
    /* A restart gives up every lease: data_dir's lock says no other arun runs these. */
    [STMT_RUNS_RELEASE] = ("UPDATE responses SET lease_until_ms = 0 WHERE status IN ('queued', "
                           "'in_progress')"),
    [STMT_RUNS_CLAIM_TAKE] = "UPDATE responses SET node = ?1, lease_until_ms = ?2 WHERE rowid = ?3",
    [STMT_LEASES_RENEW] = ("UPDATE responses SET lease_until_ms = ?2 WHERE node = ?1 AND status "
                           "IN ('queued', 'in_progress')"),
};

struct sqlite_conn {
    struct store_conn base; /* first: store.c sees only this */
    sqlite3 *db;
    const char *verb;                /* "commit" | "read", for failure sentences */
    sqlite3_stmt *stmt[STMT__COUNT]; /* prepared on first use */
};

/* ---- result codes, converted once ------------------------------------------------------- */

static int sqlite_errno(int src)
{
    switch (src & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_CANTOPEN:
        return -EACCES;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_TOOBIG:
        return -E2BIG;
    case SQLITE_INTERRUPT:
        return -EINTR;
    case SQLITE_CONSTRAINT:
        if (src == SQLITE_CONSTRAINT_PRIMARYKEY || src == SQLITE_CONSTRAINT_UNIQUE)
            return -EEXIST;
        return -EINVAL;
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
        return -EINVAL;
    default: /* IOERR, CORRUPT, NOTADB, PROTOCOL, … */
        return -EIO;
    }
}

/* Whether src is the op's own fault (undo the op, keep the transaction). */
static bool op_local(int src)
{
    int primary = src & 0xff;
    return primary == SQLITE_CONSTRAINT || primary == SQLITE_TOOBIG || primary == SQLITE_MISMATCH ||
           primary == SQLITE_RANGE;
}

static const char *code_name(int src, const char **what)
{
    switch (src & 0xff) {
    case SQLITE_FULL:
        *what = "disk full";
        return "SQLITE_FULL";
    case SQLITE_IOERR:
        *what = "I/O error";
        return "SQLITE_IOERR";
    case SQLITE_BUSY:
        *what = "database locked by another process";
        return "SQLITE_BUSY";
    case SQLITE_LOCKED:
        *what = "database locked";
        return "SQLITE_LOCKED";
    case SQLITE_CORRUPT:
        *what = "database corrupt (restore arun.db from a backup)";
        return "SQLITE_CORRUPT";
    case SQLITE_NOTADB:
        *what = "not a database (arun.db is some other file)";
        return "SQLITE_NOTADB";
    case SQLITE_READONLY:
        *what = "database read-only";
        return "SQLITE_READONLY";
    case SQLITE_CANTOPEN:
        *what = "cannot open the database";
        return "SQLITE_CANTOPEN";
    default:
        *what = "database error";
        return "SQLITE_ERROR";
    }
}

/* Records why a transaction failed and returns src as -errno. */
static int fail(struct sqlite_conn *c, int src)
{
    const char *what;
    const char *name = code_name(src, &what);

    snprintf(c->base.why, sizeof(c->base.why), "%s: the last %s failed with %s (%s, code %d)", what,
             c->verb, name, sqlite3_errstr(src), src);
    return sqlite_errno(src);
}

/* ---- statements ------------------------------------------------------------------------ */

/* Returns the prepared statement id, reset and unbound, or NULL with *src set. */
static sqlite3_stmt *stmt_get(struct sqlite_conn *c, enum stmt id, int *src)
{
    if (c->stmt[id] == NULL) {
        *src = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[id],
                                  NULL);
        if (*src != SQLITE_OK)
            return NULL;
    }
    *src = SQLITE_OK;
    return c->stmt[id];
}

/* Steps s to completion and resets it. Returns SQLITE_OK or the error code. */
static int stmt_finish(sqlite3_stmt *s)
{
    int src = sqlite3_step(s);
    while (src == SQLITE_ROW)
        src = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* Runs a statement without parameters. Returns SQLITE_OK or the error code. */
static int run(struct sqlite_conn *c, enum stmt id)
{
    int src;
    sqlite3_stmt *s = stmt_get(c, id, &src);

    if (s == NULL)
        return src;
    return stmt_finish(s);
}

static int bind_ns_key(sqlite3_stmt *s, const struct store_op *op)
{
    int src = sqlite3_bind_text(s, 1, op->u.kv.ns, -1, SQLITE_STATIC);
    if (src == SQLITE_OK)
        src = sqlite3_bind_text(s, 2, op->u.kv.key, -1, SQLITE_STATIC);
    return src;
}

/* ---- ops: each returns SQLITE_OK or an SQLite error code; op-level outcomes go to op ----- */

static int kv_put(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = stmt_get(c, STMT_KV_PUT, &src);

    if (s == NULL)
        return src;
    src = bind_ns_key(s, op);
    if (src == SQLITE_OK)
        src = sqlite3_bind_text(s, 3, op->u.kv.value, (int)op->u.kv.value_len, SQLITE_STATIC);
    if (src == SQLITE_OK)
        src = sqlite3_bind_int64(s, 4, clock_wall_ms());
    if (src != SQLITE_OK) {
        sqlite3_clear_bindings(s);
        return src;
    }
    return stmt_finish(s);
}

static int kv_delete(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = stmt_get(c, STMT_KV_DELETE, &src);

    if (s == NULL)
        return src;
    src = bind_ns_key(s, op);
    if (src == SQLITE_OK)
        src = stmt_finish(s);
    if (src == SQLITE_OK && sqlite3_changes(c->db) == 0)
        op->result = -ENOENT;
    return src;
}

/* Copies column 0 of s's current row into op->out. */
static void take_text(sqlite3_stmt *s, struct store_op *op)
{
    const unsigned char *text = sqlite3_column_text(s, 0);
    size_t len = (size_t)sqlite3_column_bytes(s, 0);

    if (text == NULL)
        return; /* SQL NULL (or no memory, which xmalloc would abort on anyway) */
    op->out = xmalloc(len + 1);
    memcpy(op->out, text, len);
    op->out[len] = '\0';
    op->out_len = len;
}

static int kv_get(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = stmt_get(c, STMT_KV_GET, &src);

    if (s == NULL)
        return src;
    src = bind_ns_key(s, op);
    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        take_text(s, op);
        src = SQLITE_OK;
    } else if (src == SQLITE_DONE) {
        op->result = -ENOENT;
        src = SQLITE_OK;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return src;
}

static int kv_list(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = stmt_get(c, STMT_KV_LIST, &src);

    if (s == NULL)
        return src;
    src = sqlite3_bind_text(s, 1, op->u.kv.ns, -1, SQLITE_STATIC);
    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        take_text(s, op);
        src = SQLITE_OK;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return src;
}

static int probe(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = stmt_get(c, STMT_PROBE, &src);

    if (s == NULL)
        return src;
    src = sqlite3_bind_int64(s, 1, clock_wall_ms());
    if (src != SQLITE_OK)
        return src;
    return stmt_finish(s);
}

/* SQL text from a test: every statement in turn; the first row's first column is the value. */
static int sql_text(struct sqlite_conn *c, struct store_op *op)
{
    const char *tail = op->u.sql.text;
    int src = SQLITE_OK;

    while (src == SQLITE_OK && *tail != '\0') {
        sqlite3_stmt *s = NULL;
        src = sqlite3_prepare_v2(c->db, tail, -1, &s, &tail);
        if (src != SQLITE_OK || s == NULL)
            break; /* an error, or only whitespace and comments were left */
        for (src = sqlite3_step(s); src == SQLITE_ROW; src = sqlite3_step(s)) {
            if (op->out == NULL)
                take_text(s, op);
        }
        sqlite3_finalize(s);
        src = src == SQLITE_DONE ? SQLITE_OK : src;
    }
    return src;
}

/* ---- durable runs ------------------------------------------------------------------------ */

#define ROLES_END (-1)

/* Prepares id and binds op's strings named by roles (ending in ROLES_END) to ?1, ?2, …; the
 * caller binds what follows. Returns the statement, or NULL with *src set. */
static sqlite3_stmt *prep(struct sqlite_conn *c, enum stmt id, const struct store_op *op,
                          const int *roles, int *src)
{
    sqlite3_stmt *s = stmt_get(c, id, src);

    for (int i = 0; s != NULL && roles[i] != ROLES_END; i++) {
        int r = roles[i];
        *src = sqlite3_bind_text(s, i + 1, op->u.run.s[r], (int)op->u.run.len[r], SQLITE_STATIC);
        if (*src != SQLITE_OK) {
            sqlite3_clear_bindings(s);
            return NULL;
        }
    }
    return s;
}

#define ROLES(...) ((const int[]){__VA_ARGS__, ROLES_END})
#define TENANT_ID ROLES(RUN_TENANT, RUN_ID)
#define TENANT_OWNER ROLES(RUN_TENANT, RUN_OWNER)
#define TENANT_OWNER_KIND ROLES(RUN_TENANT, RUN_OWNER, RUN_TYPE)
#define TENANT_OWNER_KIND_ID ROLES(RUN_TENANT, RUN_OWNER, RUN_TYPE, RUN_ID)

/* Resets s after rows were read from it. */
static void stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Runs a prepared write to its end; *changes gets the rows it changed. */
static int write_changes(struct sqlite_conn *c, sqlite3_stmt *s, int src, int *changes)
{
    if (s == NULL)
        return src;
    src = stmt_finish(s);
    *changes = sqlite3_changes(c->db);
    return src;
}

/* Runs a write whose only outcome besides an error is "no such row": -ENOENT in op. */
static int write_or_enoent(struct sqlite_conn *c, struct store_op *op, sqlite3_stmt *s, int src)
{
    int changes = 0;

    src = write_changes(c, s, src, &changes);
    if (src == SQLITE_OK && changes == 0)
        op->result = -ENOENT;
    return src;
}

/* Steps s to its first row: *found says whether there is one; s is left on it (stmt_done). */
static int first_row(sqlite3_stmt *s, int src, bool *found)
{
    *found = false;
    if (s == NULL)
        return src;
    src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        *found = true;
        return SQLITE_OK;
    }
    stmt_done(s);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* Whether the row a two-parameter EXISTS statement names is there. */
static int exists(struct sqlite_conn *c, enum stmt id, const struct store_op *op, const int *roles,
                  bool *found)
{
    int src;
    sqlite3_stmt *s = prep(c, id, op, roles, &src);

    src = first_row(s, src, found);
    if (*found)
        stmt_done(s);
    return src;
}

/* A value read: column 0 of the first row of s, or -ENOENT in op. */
static int read_one(struct store_op *op, sqlite3_stmt *s, int src)
{
    bool found;

    src = first_row(s, src, &found);
    if (src != SQLITE_OK || !found) {
        if (src == SQLITE_OK)
            op->result = -ENOENT;
        return src;
    }
    take_text(s, op);
    stmt_done(s);
    return SQLITE_OK;
}

/* Hands the text built in b to op as its value ("" when empty). */
static void take_buf(struct store_op *op, struct buf *b)
{
    op->out_len = b->len;
    op->out = b->len > 0 ? buf_steal(b) : xstrdup("");
    buf_cleanup(b);
}

/* Appends column col of s's row as it is stored. */
static void append_col(struct buf *b, sqlite3_stmt *s, int col)
{
    const unsigned char *text = sqlite3_column_text(s, col);

    buf_append(b, text, (size_t)sqlite3_column_bytes(s, col));
}

/* Appends the rows of s (column 0, JSON texts) as the elements of a JSON array, at most limit
 * of them and no more bytes than STORE_VALUE_MAX past the first; *more says whether rows were
 * left. The caller writes the brackets. */
static int append_rows(struct buf *b, sqlite3_stmt *s, uint32_t limit, bool *more)
{
    uint32_t n = 0;
    int src;
    size_t start = b->len;

    *more = false;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == limit || (n > 0 && b->len - start > STORE_VALUE_MAX)) {
            *more = true;
            break;
        }
        if (n++ > 0)
            buf_append(b, ",", 1);
        append_col(b, s, 0);
    }
    stmt_done(s);
    return src == SQLITE_ROW || src == SQLITE_DONE ? SQLITE_OK : src;
}

/* {"data":[rows of s],"has_more":bool} into op. s is bound with LIMIT limit + 1. */
static int page_out(struct store_op *op, sqlite3_stmt *s, uint32_t limit)
{
    struct buf b;
    bool more;
    int src;

    buf_init(&b, SIZE_MAX);
    buf_puts(&b, "{\"data\":[");
    src = append_rows(&b, s, limit, &more);
    buf_puts(&b, more ? "],\"has_more\":true}" : "],\"has_more\":false}");
    if (src == SQLITE_OK)
        take_buf(op, &b);
    buf_cleanup(&b);
    return src;
}

static int response_put(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(
        c, STMT_RESPONSE_PUT, op,
        ROLES(RUN_TENANT, RUN_ID, RUN_STATUS, RUN_MODEL, RUN_CONV, RUN_PREV, RUN_JSON, RUN_JSON2),
        &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 9, op->u.run.ms);
    sqlite3_bind_int(s, 10, op->u.run.flag);
    /* A new run is this node's, leased from its creation. */
    sqlite3_bind_text(s, 11, c->base.node_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 12, op->u.run.ms + c->base.lease_ms);
    return stmt_finish(s);
}

/* A fenced write (RUN_FENCE) changed no row: -ESTALE when the run exists (another node owns
 * it), else -ENOENT. The cheap second look runs only on that rare path, so the write itself
 * stays one statement. roles name the row (tenant and response id). */
static int fenced_miss(struct sqlite_conn *c, struct store_op *op, const int *roles)
{
    bool found;
    int src = exists(c, STMT_RESPONSE_EXISTS, op, roles, &found);

    if (src == SQLITE_OK)
        op->result = found ? -ESTALE : -ENOENT;
    return src;
}

/* Runs a fenced write bound up to ?5; binds this node to ?6. */
static int fenced_write(struct sqlite_conn *c, struct store_op *op, sqlite3_stmt *s, int src,
                        const int *roles)
{
    int changes = 0;

    if (s != NULL)
        sqlite3_bind_text(s, 6, c->base.node_id, -1, SQLITE_STATIC);
    src = write_changes(c, s, src, &changes);
    if (src == SQLITE_OK && changes == 0)
        src = fenced_miss(c, op, roles);
    return src;
}

static int response_update(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s =
        prep(c, STMT_RESPONSE_UPDATE, op, ROLES(RUN_TENANT, RUN_ID, RUN_STATUS, RUN_JSON2), &src);

    if (s != NULL)
        sqlite3_bind_int64(s, 5, clock_wall_ms());
    return fenced_write(c, op, s, src, TENANT_ID);
}

/* The row, its events and its own items (a conversation's items are not a response's). */
static int response_delete(struct sqlite_conn *c, struct store_op *op)
{
    int src, changes = 0;
    sqlite3_stmt *s = prep(c, STMT_RESPONSE_DELETE, op, TENANT_ID, &src);

    src = write_or_enoent(c, op, s, src);
    if (src != SQLITE_OK || op->result != 0)
        return src;
    s = prep(c, STMT_EVENTS_DELETE, op, TENANT_ID, &src);
    src = write_changes(c, s, src, &changes);
    if (src != SQLITE_OK)
        return src;
    s = prep(c, STMT_ITEMS_DELETE_RESPONSE, op, TENANT_ID, &src);
    return write_changes(c, s, src, &changes);
}

static int response_get(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, STMT_RESPONSE_GET, op, TENANT_ID, &src);

    return read_one(op, s, src);
}

/* A tenant's list, or every tenant's (STORE_OP_RESPONSES_LIST_ALL: RUN_TENANT is NULL, bound
 * to the ?1 those statements do not use). */
static int responses_list(struct sqlite_conn *c, struct store_op *op)
{
    bool all = op->kind == STORE_OP_RESPONSES_LIST_ALL, by_status = op->u.run.s[RUN_STATUS] != NULL;
    int64_t after_ms = INT64_MAX, after_rowid = INT64_MAX;
    bool found;
    int src;
    sqlite3_stmt *s;

    if (op->u.run.s[RUN_AFTER] != NULL) {
        s = all ? prep(c, STMT_RESPONSE_AFTER_ANY, op, ROLES(RUN_AFTER), &src)
                : prep(c, STMT_RESPONSE_AFTER, op, ROLES(RUN_TENANT, RUN_AFTER), &src);
        src = first_row(s, src, &found);
        if (src != SQLITE_OK || !found) {
            op->result = src == SQLITE_OK ? -ENOENT : 0;
            return src;
        }
        after_ms = sqlite3_column_int64(s, 0);
        after_rowid = sqlite3_column_int64(s, 1);
        stmt_done(s);
    }
    enum stmt id = all ? (by_status ? STMT_RESPONSES_LIST_ALL_STATUS : STMT_RESPONSES_LIST_ALL)
                       : (by_status ? STMT_RESPONSES_LIST_STATUS : STMT_RESPONSES_LIST);
    s = prep(c, id, op, ROLES(RUN_TENANT), &src);
    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 2, after_ms);
    sqlite3_bind_int64(s, 3, after_rowid);
    sqlite3_bind_int64(s, 4, (int64_t)op->u.run.limit + 1);
    if (by_status)
        sqlite3_bind_text(s, 5, op->u.run.s[RUN_STATUS], -1, SQLITE_STATIC);
    return page_out(op, s, op->u.run.limit);
}

static int runs_unfinished(struct sqlite_conn *c, struct store_op *op)
{
    struct buf b;
    bool more;
    int src;
    sqlite3_stmt *s = stmt_get(c, STMT_RUNS_UNFINISHED, &src);

    if (s == NULL)
        return src;
    buf_init(&b, SIZE_MAX);
    buf_puts(&b, "[");
    src = append_rows(&b, s, UINT32_MAX, &more);
    buf_puts(&b, "]");
    if (src == SQLITE_OK)
        take_buf(op, &b);
    buf_cleanup(&b);
    return src;
}

static int event_append(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s =
        prep(c, STMT_EVENT_APPEND, op, ROLES(RUN_TENANT, RUN_OWNER, RUN_TYPE, RUN_JSON), &src);

    if (s != NULL)
        sqlite3_bind_int64(s, 5, op->u.run.seq);
    return fenced_write(c, op, s, src, TENANT_OWNER);
}

/* Appends the decimal digits of v (>= 0). */
static void append_u64(struct buf *b, uint64_t v)
{
    char digits[20];
    size_t n = 0;

    do {
        digits[sizeof(digits) - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    buf_append(b, digits + sizeof(digits) - n, n);
}

/* "SEQ TYPE DATA\n" per event, by concatenation: the stored JSON is never parsed here. */
static int events_read(struct sqlite_conn *c, struct store_op *op)
{
    struct buf b;
    uint32_t n = 0;
    bool found;
    int src;
    sqlite3_stmt *s = prep(c, STMT_EVENTS_READ, op, TENANT_OWNER, &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 3, op->u.run.seq);
    sqlite3_bind_int64(s, 4, op->u.run.limit);
    buf_init(&b, SIZE_MAX);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        append_u64(&b, (uint64_t)sqlite3_column_int64(s, 0));
        buf_append(&b, " ", 1);
        append_col(&b, s, 1);
        buf_append(&b, " ", 1);
        append_col(&b, s, 2);
        buf_append(&b, "\n", 1);
        if (++n > 0 && b.len > STORE_VALUE_MAX)
            break; /* a big page is cut short; the caller reads on after its last event */
    }
    stmt_done(s);
    src = src == SQLITE_ROW || src == SQLITE_DONE ? SQLITE_OK : src;
    if (src == SQLITE_OK && n == 0) /* none after after_seq, or no such response? */
        src = exists(c, STMT_RESPONSE_EXISTS, op, TENANT_OWNER, &found);
    if (src == SQLITE_OK && n == 0 && !found)
        op->result = -ENOENT;
    else if (src == SQLITE_OK)
        take_buf(op, &b);
    buf_cleanup(&b);
    return src;
}

/* Whether the owner of an items op exists: the response, or the conversation. */
static int owner_exists(struct sqlite_conn *c, const struct store_op *op, bool *found)
{
    bool conversation = strcmp(op->u.run.s[RUN_TYPE], "conversation") == 0;

    return exists(c, conversation ? STMT_CONVERSATION_EXISTS : STMT_RESPONSE_EXISTS, op,
                  TENANT_OWNER, found);
}

/* Items appended to (or deleted from) a conversation make it recent for the sweep. */
static int touch_owner(struct sqlite_conn *c, const struct store_op *op)
{
    int src, changes;
    sqlite3_stmt *s;

    if (strcmp(op->u.run.s[RUN_TYPE], "conversation") != 0)
        return SQLITE_OK;
    s = prep(c, STMT_CONVERSATION_TOUCH, op, TENANT_OWNER, &src);
    if (s != NULL)
        sqlite3_bind_int64(s, 3, op->u.run.ms);
    return write_changes(c, s, src, &changes);
}

/* Items go in after the owner's last one; json_each() splits the array, the table's checks
 * refuse elements that are not objects with a string id, its unique index a repeated id. */
static int items_append(struct sqlite_conn *c, struct store_op *op)
{
    int64_t next = 0;
    bool found;
    int src, changes;
    sqlite3_stmt *s = prep(c, STMT_ITEMS_IS_ARRAY, op, ROLES(RUN_JSON), &src);

    src = first_row(s, src, &found);
    if (src != SQLITE_OK)
        return src;
    if (sqlite3_column_int(s, 0) != 1) { /* NULL (invalid JSON) reads as 0 */
        stmt_done(s);
        op->result = -EINVAL;
        return SQLITE_OK;
    }
    stmt_done(s);
    src = owner_exists(c, op, &found);
    if (src != SQLITE_OK || !found) {
        op->result = src == SQLITE_OK ? -ENOENT : 0;
        return src;
    }
    s = prep(c, STMT_ITEMS_NEXT_POSITION, op, TENANT_OWNER_KIND, &src);
    src = first_row(s, src, &found);
    if (src != SQLITE_OK)
        return src;
    next = sqlite3_column_int64(s, 0);
    stmt_done(s);
    s = prep(c, STMT_ITEMS_APPEND, op, ROLES(RUN_TENANT, RUN_OWNER, RUN_TYPE), &src);
    if (s != NULL) {
        sqlite3_bind_int64(s, 4, next);
        sqlite3_bind_text(s, 5, op->u.run.s[RUN_JSON], (int)op->u.run.len[RUN_JSON], SQLITE_STATIC);
    }
    src = write_changes(c, s, src, &changes);
    return src == SQLITE_OK ? touch_owner(c, op) : src;
}

static int items_list(struct sqlite_conn *c, struct store_op *op)
{
    bool desc = op->u.run.flag, found;
    int64_t after = desc ? INT64_MAX : -1;
    int src;
    sqlite3_stmt *s;

    if (op->u.run.s[RUN_AFTER] != NULL) {
        s = prep(c, STMT_ITEMS_AFTER, op, ROLES(RUN_TENANT, RUN_OWNER, RUN_TYPE, RUN_AFTER), &src);
        src = first_row(s, src, &found);
        if (src != SQLITE_OK || !found) {
            op->result = src == SQLITE_OK ? -ENOENT : 0;
            return src;
        }
        after = sqlite3_column_int64(s, 0);
        stmt_done(s);
    }
    s = prep(c, desc ? STMT_ITEMS_LIST_DESC : STMT_ITEMS_LIST_ASC, op, TENANT_OWNER_KIND, &src);
    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 4, after);
    sqlite3_bind_int64(s, 5, (int64_t)op->u.run.limit + 1);
    return page_out(op, s, op->u.run.limit);
}

static int item_get(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, STMT_ITEM_GET, op, TENANT_OWNER_KIND_ID, &src);

    return read_one(op, s, src);
}

static int item_find(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, STMT_ITEM_FIND, op, TENANT_ID, &src);

    return read_one(op, s, src);
}

static int item_delete(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, STMT_ITEM_DELETE, op, TENANT_OWNER_KIND_ID, &src);

    src = write_or_enoent(c, op, s, src);
    return src == SQLITE_OK && op->result == 0 ? touch_owner(c, op) : src;
}

/* The ids of the chain ending at op's response, newest first, in *ids (each freed by the
 * caller); -ENOENT in op when the response does not exist. A previous response that is gone
 * (deleted, swept) ends the chain; STORE_PAGE_MAX turns bound it. */
static int history_chain(struct sqlite_conn *c, struct store_op *op, char ***ids, size_t *n)
{
    struct store_op at = {.kind = op->kind};
    char *id = xstrdup(op->u.run.s[RUN_ID]);
    int src = SQLITE_OK;

    *ids = NULL;
    *n = 0;
    at.u.run.s[RUN_TENANT] = op->u.run.s[RUN_TENANT];
    at.u.run.len[RUN_TENANT] = op->u.run.len[RUN_TENANT];
    while (id != NULL && *n < STORE_PAGE_MAX) {
        bool found;
        at.u.run.s[RUN_ID] = id;
        at.u.run.len[RUN_ID] = strlen(id);
        sqlite3_stmt *s = prep(c, STMT_RESPONSE_PREV, &at, TENANT_ID, &src);
        src = first_row(s, src, &found);
        if (src != SQLITE_OK || !found)
            break;
        *ids = xrealloc(*ids, (*n + 1) * sizeof(**ids));
        (*ids)[(*n)++] = id;
        const unsigned char *prev = sqlite3_column_text(s, 0);
        id = prev != NULL ? xstrdup((const char *)prev) : NULL;
        stmt_done(s);
    }
    free(id); /* NULL, or the id that ended the walk, which is not in the chain */
    if (src == SQLITE_OK && *n == 0)
        op->result = -ENOENT;
    return src;
}

struct texts {
    char **v;
    size_t *len;
    size_t n;
};

static void texts_push(struct texts *t, sqlite3_stmt *s)
{
    size_t len = (size_t)sqlite3_column_bytes(s, 0);
    const unsigned char *text = sqlite3_column_text(s, 0);

    t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
    t->len = xrealloc(t->len, (t->n + 1) * sizeof(*t->len));
    t->v[t->n] = xmalloc(len + 1);
    memcpy(t->v[t->n], text, len);
    t->v[t->n][len] = '\0';
    t->len[t->n++] = len;
}

static void texts_free(struct texts *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i]);
    free(t->v);
    free(t->len);
    *t = (struct texts){0};
}

/* Every turn's input then output items, oldest turn first, as one array of the newest
 * STORE_PAGE_MAX items. */
static int history_read(struct sqlite_conn *c, struct store_op *op)
{
    struct store_op at = {.kind = op->kind};
    struct texts t = {0};
    struct buf b;
    char **ids;
    size_t n;
    int src = history_chain(c, op, &ids, &n);

    at.u.run.s[RUN_TENANT] = op->u.run.s[RUN_TENANT];
    at.u.run.len[RUN_TENANT] = op->u.run.len[RUN_TENANT];
    for (size_t i = n; src == SQLITE_OK && i-- > 0;) {
        at.u.run.s[RUN_ID] = ids[i];
        at.u.run.len[RUN_ID] = strlen(ids[i]);
        sqlite3_stmt *s = prep(c, STMT_ITEMS_HISTORY, &at, TENANT_ID, &src);
        while (s != NULL && (src = sqlite3_step(s)) == SQLITE_ROW)
            texts_push(&t, s);
        if (s != NULL) {
            stmt_done(s);
            src = src == SQLITE_DONE ? SQLITE_OK : src;
        }
    }
    buf_init(&b, SIZE_MAX);
    buf_puts(&b, "[");
    for (size_t i = t.n > STORE_PAGE_MAX ? t.n - STORE_PAGE_MAX : 0, first = i; i < t.n; i++) {
        if (i > first)
            buf_append(&b, ",", 1);
        buf_append(&b, t.v[i], t.len[i]);
    }
    buf_puts(&b, "]");
    if (src == SQLITE_OK && op->result == 0)
        take_buf(op, &b);
    buf_cleanup(&b);
    texts_free(&t);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return src;
}

/* ---- conversations, idempotency keys, the sweep ---- */

static int conversation_put(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, STMT_CONVERSATION_PUT, op, ROLES(RUN_TENANT, RUN_ID, RUN_JSON), &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 4, op->u.run.ms);
    return stmt_finish(s);
}

static int conversation_update(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s =
        prep(c, STMT_CONVERSATION_UPDATE, op, ROLES(RUN_TENANT, RUN_ID, RUN_JSON), &src);

    if (s != NULL)
        sqlite3_bind_int64(s, 4, op->u.run.ms);
    return write_or_enoent(c, op, s, src);
}

static int conversation_get(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, STMT_CONVERSATION_GET, op, TENANT_ID, &src);

    return read_one(op, s, src);
}

static int conversation_delete(struct sqlite_conn *c, struct store_op *op)
{
    int src, changes;
    sqlite3_stmt *s = prep(c, STMT_CONVERSATION_DELETE, op, TENANT_ID, &src);

    src = write_or_enoent(c, op, s, src);
    if (src != SQLITE_OK || op->result != 0)
        return src;
    s = prep(c, STMT_ITEMS_DELETE_CONVERSATION, op, TENANT_ID, &src);
    return write_changes(c, s, src, &changes);
}

static int idem_claim(struct sqlite_conn *c, struct store_op *op)
{
    int src, changes = 0;
    sqlite3_stmt *s =
        prep(c, STMT_IDEM_CLAIM, op, ROLES(RUN_TENANT, RUN_ID, RUN_TYPE, RUN_OWNER), &src);

    if (s != NULL) {
        sqlite3_bind_int64(s, 5, op->u.run.ms);
        sqlite3_bind_int64(s, 6, op->u.run.ms2);
    }
    src = write_changes(c, s, src, &changes);
    if (src == SQLITE_OK && changes == 0)
        op->result = -EEXIST;
    return src;
}

static int idem_get(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, STMT_IDEM_GET, op, TENANT_ID, &src);

    return read_one(op, s, src);
}

/* Collects the (tenant, id) rows of a sweep query bound to (before_ms, limit). */
static int sweep_pick(struct sqlite_conn *c, enum stmt id, int64_t before_ms, uint32_t limit,
                      struct texts *picked)
{
    int src;
    sqlite3_stmt *s = stmt_get(c, id, &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 1, before_ms);
    sqlite3_bind_int64(s, 2, limit);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        texts_push(picked, s);
        size_t len = (size_t)sqlite3_column_bytes(s, 1);
        picked->v = xrealloc(picked->v, (picked->n + 1) * sizeof(*picked->v));
        picked->len = xrealloc(picked->len, (picked->n + 1) * sizeof(*picked->len));
        picked->v[picked->n] = xstrndup((const char *)sqlite3_column_text(s, 1), len);
        picked->len[picked->n++] = len;
    }
    stmt_done(s);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* Deletes each picked (tenant, id) pair with del, which is response_delete or
 * conversation_delete. */
static int sweep_delete(struct sqlite_conn *c, struct store_op *op, const struct texts *picked,
                        int (*del)(struct sqlite_conn *, struct store_op *))
{
    int src = SQLITE_OK;

    for (size_t i = 0; src == SQLITE_OK && i + 1 < picked->n; i += 2) {
        struct store_op one = {.kind = op->kind};
        one.u.run.s[RUN_TENANT] = picked->v[i];
        one.u.run.len[RUN_TENANT] = picked->len[i];
        one.u.run.s[RUN_ID] = picked->v[i + 1];
        one.u.run.len[RUN_ID] = picked->len[i + 1];
        src = del(c, &one);
    }
    return src;
}

static int runs_sweep(struct sqlite_conn *c, struct store_op *op)
{
    struct texts responses = {0}, conversations = {0};
    int src, idem = 0;
    sqlite3_stmt *s;

    src = sweep_pick(c, STMT_SWEEP_RESPONSES, op->u.run.ms, op->u.run.limit, &responses);
    if (src == SQLITE_OK)
        src = sweep_delete(c, op, &responses, response_delete);
    if (src == SQLITE_OK)
        src =
            sweep_pick(c, STMT_SWEEP_CONVERSATIONS, op->u.run.ms, op->u.run.limit, &conversations);
    if (src == SQLITE_OK)
        src = sweep_delete(c, op, &conversations, conversation_delete);
    if (src == SQLITE_OK) {
        s = stmt_get(c, STMT_SWEEP_IDEM, &src);
        if (s != NULL) {
            sqlite3_bind_int64(s, 1, op->u.run.ms2);
            sqlite3_bind_int64(s, 2, op->u.run.limit);
        }
        src = write_changes(c, s, src, &idem);
    }
    if (src == SQLITE_OK) {
        op->out = xasprintf("{\"responses\":%zu,\"conversations\":%zu,\"idem\":%d}",
                            responses.n / 2, conversations.n / 2, idem);
        op->out_len = strlen(op->out);
    }
    texts_free(&responses);
    texts_free(&conversations);
    return src;
}

/* ---- tenancy: keys, usage, audit ---- */

static int key_put(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s =
        prep(c, STMT_KEY_PUT, op, ROLES(RUN_ID, RUN_TYPE, RUN_TENANT, RUN_STATUS, RUN_MODEL), &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 6, op->u.run.ms);
    return stmt_finish(s);
}

/* Revoke and touch: (id, ms), -ENOENT for an unknown id. */
static int key_update(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, op->kind == STORE_OP_KEY_REVOKE ? STMT_KEY_REVOKE : STMT_KEY_TOUCH,
                           op, ROLES(RUN_ID), &src);

    if (s != NULL)
        sqlite3_bind_int64(s, 2, op->u.run.ms);
    return write_or_enoent(c, op, s, src);
}

static int keys_list(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, STMT_KEYS_LIST, op, ROLES(RUN_AFTER), &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 2, (int64_t)op->u.run.limit + 1);
    return page_out(op, s, op->u.run.limit);
}

static int usage_add(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, STMT_USAGE_ADD, op, ROLES(RUN_TENANT, RUN_ID), &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 3, op->u.run.seq);
    sqlite3_bind_int64(s, 4, op->u.run.ms2);
    sqlite3_bind_int64(s, 5, op->u.run.ms);
    return stmt_finish(s);
}

static int usage_day(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, STMT_USAGE_DAY, op, ROLES(RUN_ID, RUN_AFTER), &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 3, (int64_t)op->u.run.limit + 1);
    return page_out(op, s, op->u.run.limit);
}

static int audit_append(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s =
        prep(c, STMT_AUDIT_APPEND, op,
             ROLES(RUN_OWNER, RUN_TENANT, RUN_TYPE, RUN_ID, RUN_STATUS, RUN_CONV, RUN_JSON), &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 8, op->u.run.ms);
    return stmt_finish(s);
}

static int audit_list(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = stmt_get(c, STMT_AUDIT_LIST, &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 1, op->u.run.ms);
    sqlite3_bind_int64(s, 2, op->u.run.seq);
    sqlite3_bind_int64(s, 3, (int64_t)op->u.run.limit + 1);
    return page_out(op, s, op->u.run.limit);
}

/* ---- cluster: nodes and leases (store.h "cluster") ---- */

static int node_put(struct sqlite_conn *c, struct store_op *op)
{
    int src;
    sqlite3_stmt *s = prep(c, STMT_NODE_PUT, op, ROLES(RUN_ID, RUN_OWNER, RUN_STATUS), &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 4, op->u.run.ms2);
    sqlite3_bind_int64(s, 5, op->u.run.ms);
    sqlite3_bind_text(s, 6, op->u.run.s[RUN_JSON], (int)op->u.run.len[RUN_JSON], SQLITE_STATIC);
    return stmt_finish(s);
}

/* {"now_ms":N,"data":[rows]}: SQLite's clock is the caller's, so now_ms is the op's. */
static int nodes_list(struct sqlite_conn *c, struct store_op *op)
{
    struct buf b;
    bool more;
    int src;
    sqlite3_stmt *s = stmt_get(c, STMT_NODES_LIST, &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 1, op->u.run.limit);
    buf_init(&b, SIZE_MAX);
    buf_printf(&b, "{\"now_ms\":%lld,\"data\":[", (long long)op->u.run.ms);
    src = append_rows(&b, s, op->u.run.limit, &more);
    buf_puts(&b, "]}");
    if (src == SQLITE_OK)
        take_buf(op, &b);
    buf_cleanup(&b);
    return src;
}

static int nodes_forget(struct sqlite_conn *c, struct store_op *op)
{
    int src, changes;
    sqlite3_stmt *s = stmt_get(c, STMT_NODES_FORGET, &src);

    if (s != NULL)
        sqlite3_bind_int64(s, 1, op->u.run.ms);
    return write_changes(c, s, src, &changes);
}

/* Picks the claimable rows (as JSON, with their owner before the claim) into b, and their
 * rowids into *rowids. */
static int claim_pick(struct sqlite_conn *c, struct store_op *op, struct buf *b, int64_t **rowids,
                      size_t *n)
{
    int src;
    sqlite3_stmt *s = stmt_get(c, STMT_RUNS_CLAIM_PICK, &src);

    if (s == NULL)
        return src;
    sqlite3_bind_int64(s, 1, op->u.run.ms);
    sqlite3_bind_int64(s, 2, op->u.run.limit);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n > 0)
            buf_append(b, ",", 1);
        append_col(b, s, 0);
        *rowids = xrealloc(*rowids, (*n + 1) * sizeof(**rowids));
        (*rowids)[(*n)++] = sqlite3_column_int64(s, 1);
    }
    stmt_done(s);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* SQLite's RETURNING cannot show a row's values from before the UPDATE, so the claim reads the
 * rows first and then takes them, in the same transaction: the writer is the only one, nothing
 * can come between. */
static int runs_claim(struct sqlite_conn *c, struct store_op *op)
{
    struct buf b;
    int64_t *rowids = NULL;
    size_t n = 0;
    int src, changes;

    if (op->u.run.flag) {
        sqlite3_stmt *s = stmt_get(c, STMT_RUNS_RELEASE, &src);
        src = write_changes(c, s, src, &changes);
        if (src != SQLITE_OK)
            return src;
    }
    buf_init(&b, SIZE_MAX);
    buf_puts(&b, "[");
    src = claim_pick(c, op, &b, &rowids, &n);
    buf_puts(&b, "]");
    for (size_t i = 0; src == SQLITE_OK && i < n; i++) {
        sqlite3_stmt *s = stmt_get(c, STMT_RUNS_CLAIM_TAKE, &src);
        if (s != NULL) {
            sqlite3_bind_text(s, 1, c->base.node_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, op->u.run.ms + c->base.lease_ms);
            sqlite3_bind_int64(s, 3, rowids[i]);
        }
        src = write_changes(c, s, src, &changes);
    }
    if (src == SQLITE_OK)
        take_buf(op, &b);
    buf_cleanup(&b);
    free(rowids);
    return src;
}

static int leases_renew(struct sqlite_conn *c, struct store_op *op)
{
    int src, changes = 0;
    sqlite3_stmt *s = stmt_get(c, STMT_LEASES_RENEW, &src);

    if (s != NULL) {
        sqlite3_bind_text(s, 1, c->base.node_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, op->u.run.ms + c->base.lease_ms);
    }
    src = write_changes(c, s, src, &changes);
    if (src == SQLITE_OK) {
        op->out = xasprintf("{\"renewed\":%d}", changes);
        op->out_len = strlen(op->out);
    }
    return src;
}

typedef int (*apply_fn)(struct sqlite_conn *c, struct store_op *op);

/* A new op kind without a row here fails the build. */
static const apply_fn apply_fns[] = {
    [STORE_OP_KV_PUT] = kv_put,
    [STORE_OP_KV_DELETE] = kv_delete,
    [STORE_OP_KV_GET] = kv_get,
    [STORE_OP_KV_LIST] = kv_list,
    [STORE_OP_PROBE] = probe,
    [STORE_OP_SQL] = sql_text,
    [STORE_OP_RESPONSE_PUT] = response_put,
    [STORE_OP_RESPONSE_UPDATE] = response_update,
    [STORE_OP_RESPONSE_DELETE] = response_delete,
    [STORE_OP_EVENT_APPEND] = event_append,
    [STORE_OP_ITEMS_APPEND] = items_append,
    [STORE_OP_ITEM_DELETE] = item_delete,
    [STORE_OP_CONVERSATION_PUT] = conversation_put,
    [STORE_OP_CONVERSATION_UPDATE] = conversation_update,
    [STORE_OP_CONVERSATION_DELETE] = conversation_delete,
    [STORE_OP_IDEM_CLAIM] = idem_claim,
    [STORE_OP_RUNS_SWEEP] = runs_sweep,
    [STORE_OP_RESPONSE_GET] = response_get,
    [STORE_OP_RESPONSES_LIST] = responses_list,
    [STORE_OP_RESPONSES_LIST_ALL] = responses_list,
    [STORE_OP_RUNS_UNFINISHED] = runs_unfinished,
    [STORE_OP_EVENTS_READ] = events_read,
    [STORE_OP_ITEMS_LIST] = items_list,
    [STORE_OP_ITEM_GET] = item_get,
    [STORE_OP_ITEM_FIND] = item_find,
    [STORE_OP_HISTORY_READ] = history_read,
    [STORE_OP_CONVERSATION_GET] = conversation_get,
    [STORE_OP_IDEM_GET] = idem_get,
    [STORE_OP_KEY_PUT] = key_put,
    [STORE_OP_KEY_REVOKE] = key_update,
    [STORE_OP_KEY_TOUCH] = key_update,
    [STORE_OP_USAGE_ADD] = usage_add,
    [STORE_OP_AUDIT_APPEND] = audit_append,
    [STORE_OP_KEYS_LIST] = keys_list,
    [STORE_OP_USAGE_DAY] = usage_day,
    [STORE_OP_AUDIT_LIST] = audit_list,
    [STORE_OP_NODE_PUT] = node_put,
    [STORE_OP_NODES_FORGET] = nodes_forget,
    [STORE_OP_RUNS_CLAIM] = runs_claim,
    [STORE_OP_LEASES_RENEW] = leases_renew,
    [STORE_OP_NODES_LIST] = nodes_list,
};
_Static_assert(ARRAY_SIZE(apply_fns) == STORE_OP__COUNT, "every op kind needs an apply function");

/* Op kinds whose apply function runs one write statement: they need no savepoint of their own
 * (sqlite_apply). The event append is the one that counts: one per streamed token (its second
 * statement, on a miss only, is a read: fenced_miss). */
static const bool one_statement[STORE_OP__COUNT] = {
    [STORE_OP_EVENT_APPEND] = true,
};

/* ---- the backend's functions ----------------------------------------------------------- */

static int sqlite_begin(struct store_conn *base, bool write)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;
    int src = run(c, write ? STMT_BEGIN_WRITE : STMT_BEGIN_READ);

    return src == SQLITE_OK ? 0 : fail(c, src);
}

/* An op-level failure: undo the op, keep the transaction, record the op's error. */
static int undo_op(struct sqlite_conn *c, struct store_op *op, int op_src)
{
    int src = run(c, STMT_ROLLBACK_TO);

    if (src == SQLITE_OK)
        src = run(c, STMT_RELEASE);
    if (src != SQLITE_OK)
        return fail(c, src);
    op->result = sqlite_errno(op_src);
    log_debug(MODULE, "%s op failed on its own and was undone: %s (%s)",
              store_op_kinds[op->kind].name, sqlite3_errmsg(c->db), sqlite3_errstr(op_src));
    return 0;
}

static int sqlite_apply(struct store_conn *base, struct store_op *op)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;
    int src;

    if (store_op_kinds[op->kind].read) {
        src = apply_fns[op->kind](c, op);
        if (src == SQLITE_OK)
            return 0;
        if (op_local(src)) {
            op->result = sqlite_errno(src);
            return 0;
        }
        return fail(c, src);
    }
    if (one_statement[op->kind]) {
        /* SQLite undoes a statement that fails (a constraint aborts it, a bind error runs
         * nothing): no savepoint needed, and none costs two statements per event. */
        src = apply_fns[op->kind](c, op);
        if (src != SQLITE_OK && op_local(src)) {
            op->result = sqlite_errno(src);
            log_debug(MODULE, "%s op failed on its own and was undone: %s (%s)",
                      store_op_kinds[op->kind].name, sqlite3_errmsg(c->db), sqlite3_errstr(src));
            return 0;
        }
        return src == SQLITE_OK ? 0 : fail(c, src);
    }
    src = run(c, STMT_SAVEPOINT);
    if (src != SQLITE_OK)
        return fail(c, src);
    src = apply_fns[op->kind](c, op);
    if (src != SQLITE_OK && op_local(src))
        return undo_op(c, op, src);
    if (src == SQLITE_OK)
        src = run(c, STMT_RELEASE);
    return src == SQLITE_OK ? 0 : fail(c, src);
}

static int sqlite_commit(struct store_conn *base)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;
    int src = run(c, STMT_COMMIT);

    return src == SQLITE_OK ? 0 : fail(c, src);
}

static void sqlite_rollback(struct store_conn *base)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;

    /* After some errors (FULL, IOERR) SQLite has rolled back already. */
    if (sqlite3_get_autocommit(c->db))
        return;
    int src = run(c, STMT_ROLLBACK);
    if (src != SQLITE_OK)
        log_warn(MODULE, "rollback failed: %s (%s)", sqlite3_errmsg(c->db), sqlite3_errstr(src));
}

static void sqlite_close(struct store_conn *base)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;

    if (c == NULL)
        return;
    for (size_t i = 0; i < STMT__COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    /* The last connection to close checkpoints the WAL into arun.db. */
    int src = sqlite3_close(c->db);
    if (src != SQLITE_OK)
        log_warn(MODULE, "closing arun.db failed: %s", sqlite3_errstr(src));
    free(c);
}

/* ---- opening and migrating ------------------------------------------------------------- */

/* Runs SQL at open; on error appends "what: SQLite's message" to err. */
static int exec(struct sqlite_conn *c, const char *sql, const char *what, struct buf *err)
{
    char *msg = NULL;
    int src = sqlite3_exec(c->db, sql, NULL, NULL, &msg);

    if (src == SQLITE_OK)
        return 0;
    buf_printf(err, "%s: %s", what, msg != NULL ? msg : sqlite3_errstr(src));
    sqlite3_free(msg);
    return sqlite_errno(src);
}

/* One row, one integer column: a pragma's value. */
static int query_int(struct sqlite_conn *c, const char *sql, int64_t *out, struct buf *err)
{
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(c->db, sql, -1, &s, NULL);

    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        src = SQLITE_OK;
    }
    sqlite3_finalize(s);
    if (src == SQLITE_OK)
        return 0;
    buf_printf(err, "%s: %s", sql, sqlite3_errmsg(c->db));
    return sqlite_errno(src);
}

static int apply_migrations(struct sqlite_conn *c, const char *path, int64_t from, struct buf *err)
{
    int64_t known = (int64_t)store_sqlite_migrations_count;
    char what[64], *set_version;
    int rc = 0;

    for (int64_t v = from; v < known && rc == 0; v++) {
        snprintf(what, sizeof(what), "migration %lld of %s", (long long)(v + 1), path);
        rc = exec(c, store_sqlite_migrations[v], what, err);
    }
    if (rc != 0)
        return rc;
    set_version = sqlite3_mprintf("PRAGMA user_version = %lld", (long long)known);
    rc = exec(c, set_version, "setting the schema version", err);
    sqlite3_free(set_version);
    if (rc == 0)
        log_info(MODULE, "migrated %s from schema version %lld to %lld", path, (long long)from,
                 (long long)known);
    return rc;
}

/* Brings the schema to the version this binary knows, in one transaction, or refuses. */
static int migrate(struct sqlite_conn *c, const char *path, struct buf *err)
{
    int64_t version = 0, known = (int64_t)store_sqlite_migrations_count;
    int rc;

    rc = exec(c, "BEGIN IMMEDIATE", path, err);
    if (rc != 0)
        return rc;
    rc = query_int(c, "PRAGMA user_version", &version, err);
    if (rc == 0 && version > known) {
        buf_printf(err,
                   "%s has schema version %lld, this arun knows up to %lld: use a "
                   "newer arun or another data_dir",
                   path, (long long)version, (long long)known);
        rc = -ENOTSUP;
    }
    if (rc == 0 && version < known)
        rc = apply_migrations(c, path, version, err);
    if (rc == 0)
        rc = exec(c, "COMMIT", path, err);
    if (rc != 0)
        sqlite_rollback(&c->base);
    return rc;
}

static int conn_open(const struct store_options *opts, const char *path, bool writer,
                     struct sqlite_conn **out, struct buf *err)
{
    struct sqlite_conn *c = xcalloc(1, sizeof(*c));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    int rc, src;

    c->base.be = &store_sqlite_backend;
    c->verb = writer ? "commit" : "read";
    src = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (src != SQLITE_OK) {
        buf_printf(err, "cannot open %s: %s", path,
                   c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(src));
        rc = sqlite_errno(src);
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(
        c->db, (int)(opts->busy_timeout_ms != 0 ? opts->busy_timeout_ms : STORE_BUSY_TIMEOUT_MS));
    /* The writer's page cache holds a batch's dirty pages: with SQLite's default (2 MiB) a batch
     * of 200 streams' events spilled pages into the WAL mid-transaction and read them back
     * (sqlite3PcacheFetchStress and pread were ~30% of the writer's time, bench/README.md). */
    if (writer)
        rc = exec(c,
                  opts->synchronous == CONFIG_SYNC_NORMAL
                      ? "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; "
                        "PRAGMA cache_size = " STRINGIFY(-STORE_WRITER_CACHE_KIB)
                      : "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; "
                        "PRAGMA cache_size = " STRINGIFY(-STORE_WRITER_CACHE_KIB),
                  path, err);
    else /* the reader can never write, whatever a later bug asks of it */
        rc = exec(c, "PRAGMA foreign_keys = ON; PRAGMA query_only = ON; PRAGMA cache_size = -16384",
                  path, err);
    if (rc == 0)
        rc = exec(c, CONN_CACHE_PRAGMAS, path, err);
    if (rc != 0)
        goto fail;
    *out = c;
    return 0;
fail:
    sqlite3_close(c->db);
    free(c);
    return rc;
}

/* WAL is a property of the file: set once by the writer, before anyone else opens it. */
static int use_wal(struct sqlite_conn *c, const char *path, struct buf *err)
{
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    bool wal = false;

    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        wal = strcmp((const char *)sqlite3_column_text(s, 0), "wal") == 0;
        src = SQLITE_OK;
    }
    sqlite3_finalize(s);
    if (src != SQLITE_OK) {
        buf_printf(err, "%s: cannot switch to WAL: %s", path, sqlite3_errmsg(c->db));
        return sqlite_errno(src);
    }
    if (!wal) {
        buf_printf(err,
                   "%s: the file system does not support WAL mode (it needs "
                   "shared memory: not NFS)",
                   path);
        return -ENOTSUP;
    }
    return 0;
}

static int sqlite_open(const struct store_options *opts, const char *data_dir,
                       struct store_conn **writer, struct store_conn **reader, struct buf *err)
{
    char *path = xasprintf("%s/%s", data_dir, STORE_DB_FILE);
    struct sqlite_conn *w = NULL, *r = NULL;
    int rc;

    if (sqlite3_threadsafe() == 0) {
        buf_puts(err, "this SQLite was built without thread support "
                      "(SQLITE_THREADSAFE=0); arun needs it");
        rc = -ENOTSUP;
        goto out;
    }
    rc = conn_open(opts, path, true, &w, err);
    if (rc == 0)
        rc = use_wal(w, path, err);
    if (rc == 0)
        rc = migrate(w, path, err);
    if (rc == 0)
        rc = conn_open(opts, path, false, &r, err);
    if (rc != 0) {
        if (w != NULL)
            sqlite_close(&w->base);
        goto out;
    }
    *writer = &w->base;
    *reader = &r->base;
out:
    free(path);
    return rc;
}

const struct store_backend store_sqlite_backend = {
    .name = "sqlite",
    .open = sqlite_open,
    .begin = sqlite_begin,
    .apply = sqlite_apply,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .close = sqlite_close,
};
