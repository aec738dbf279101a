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
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "store/store_int.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

#define MODULE "store"

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
    STMT__COUNT,
};

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

typedef int (*apply_fn)(struct sqlite_conn *c, struct store_op *op);

/* A new op kind without a row here fails the build. */
static const apply_fn apply_fns[] = {
    [STORE_OP_KV_PUT] = kv_put,   [STORE_OP_KV_DELETE] = kv_delete, [STORE_OP_KV_GET] = kv_get,
    [STORE_OP_KV_LIST] = kv_list, [STORE_OP_PROBE] = probe,         [STORE_OP_SQL] = sql_text,
};
_Static_assert(ARRAY_SIZE(apply_fns) == STORE_OP__COUNT, "every op kind needs an apply function");

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
    if (writer)
        rc = exec(c,
                  opts->synchronous == CONFIG_SYNC_NORMAL
                      ? "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON"
                      : "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON",
                  path, err);
    else /* the reader can never write, whatever a later bug asks of it */
        rc = exec(c, "PRAGMA foreign_keys = ON; PRAGMA query_only = ON", path, err);
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
