/*
 * postgres.c: the PostgreSQL backend of the store (store_int.h, pg_int.h): two libpq
 * connections, the writer's and the reader's, each used only by its store thread. It connects
 * and migrates, runs the transactions store.c asks for, applies the ops that are not the durable
 * runs' (kv, probe, debug SQL, tenancy, cluster; postgres_runs.c has the runs' ones), sends the
 * NOTIFYs of a write transaction, and converts libpq's outcomes and SQLSTATEs into -errno and
 * sentences, here and nowhere else. It knows nothing of threads or the loop.
 *
 * DESIGN
 * - Connecting: the URL goes to libpq as it is (PQconnectdbParams with expand_dbname), with our
 *   connect_timeout and TCP keepalive/user-timeout keys placed before it (the URL may override
 *   them) and application_name after it (arun-writer / arun-reader: an operator sees which is
 *   which in pg_stat_activity). libpq also reads the PG* variables. The URL is never printed: it
 *   may hold a password; libpq's messages name host and port only.
 * - Pipeline mode: after connecting, every statement goes through a libpq pipeline. A write op
 *   costs one round trip: the previous op's RELEASE SAVEPOINT, this op's SAVEPOINT and its
 *   statement travel together (the savepoint is asked for by pg_apply and sent lazily by the
 *   op's first pg_stmt), and BEGIN + txid_current(), NOTIFYs + COMMIT go as one pipeline each.
 *   docs/internals/store.md has the numbers with and without.
 * - Savepoints: an op that fails on its own merits (SQLSTATE classes 22 and 23) is rolled back to
 *   its savepoint and the batch commits without it, as with SQLite.
 * - Lost connections: any sign of a dead connection (CONNECTION_BAD, SQLSTATE 08xxx, 57P01-03)
 *   closes it and answers -ENOTCONN with "PostgreSQL connection lost: …"; store.c retries the
 *   batch, and the next begin reconnects (blocking: this is a store thread).
 * - Lost COMMIT answers: the write transaction's txid_current() is fetched with its BEGIN. When
 *   the connection dies with a COMMIT on the wire, the commit is "in doubt"; the retry's begin
 *   asks txid_status() on the new connection: committed means the batch is done (begin answers
 *   STORE_BEGIN_COMMITTED and store.c reports the ops of the first try), aborted means retry.
 * - Migrations: arun_schema (version) says the schema version; the pending entries of
 *   store_postgres_migrations[] run in one transaction holding pg_advisory_xact_lock, so two
 *   nodes starting at once migrate once.
 *
 * THREAD SAFETY NOTES
 * A struct pg_core (with its PGconn) is used by one thread at a time (store_int.h). libpq is
 * thread-safe for distinct PGconn objects.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "store/pg_int.h"

#define MODULE "store"
/* libpq keys that make a dead server show within seconds instead of the kernel's minutes: a
 * connect gives up after 5 s; an idle connection is probed after 5 s, then every 2 s, dead after
 * 3 unanswered probes; unacknowledged data gives up after 10 s. */
#define PG_CONNECT_TIMEOUT_S "5"
#define PG_KEEPALIVES_IDLE_S "5"
#define PG_KEEPALIVES_INTERVAL_S "2"
#define PG_KEEPALIVES_COUNT "3"
#define PG_TCP_USER_TIMEOUT_MS "10000"
/* The advisory lock that serialises migrations between nodes: "arun" in ASCII. */
#define PG_MIGRATION_LOCK "1634891118"
/* PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; lines are cut below that. */
#define PG_NOTIFY_MAX 7900
/* A session of ours never sits in a transaction: a batch runs its statements back to back. One
 * that does for a minute is a backend whose client is gone (a network cut), holding locks. */
#define PG_SESSION_SETTINGS "SET idle_in_transaction_session_timeout = '60s'"
/* How long a reconnect waits for the lost connection's backend to end (end_previous). */
#define PG_TERMINATE_WAIT_MS "5000"
#define PG_CHANNEL_EVENTS "arun_events"
#define PG_CHANNEL_KEYS "arun_keys"
/* The database's clock in ms: seen_ms and leases are on it, so nodes with skewed clocks agree. */
#define DB_NOW_MS "(SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint)"

/* The backend's own state around the shared struct pg_conn (pg_int.h). */
struct pg_core {
    struct pg_conn c;       /* first: store.c and postgres_runs.c see this */
    bool sync_full;         /* synchronous_commit on (store.synchronous full), else off */
    int64_t doubt_xid;      /* a COMMIT whose answer was lost: resolved by the next begin */
    bool sp_want;           /* the write op being applied needs its savepoint (sent lazily) */
    bool sp_open;           /* that savepoint was sent */
    bool release_pending;   /* the last op's savepoint is to be released (with the next stmt) */
    bool aborted;           /* a statement failed: the transaction takes only a rollback now
                               (PQtransactionStatus says "active" in pipeline mode) */
    char backend_pid[16];   /* the server process of the connection (kept after it is lost) */
    char backend_start[64]; /* and when it started: with the pid, names that backend only */
};

/* One query of a pipeline. */
struct pq {
    const char *name; /* prepared statement to run, or NULL: sql as the unnamed statement */
    const char *sql;  /* with name: its text, for the Prepare */
    bool prepare;     /* with name: send the Prepare first */
    int n;            /* parameters, text, NULL = SQL NULL */
    const char *const *params;
    bool ok;       /* out: every result of the query succeeded */
    bool prepared; /* out: its Prepare succeeded (a session's statement, kept even when the
                      execution or its transaction fails) */
};

/* ---- failures, converted once ------------------------------------------------------------ */

/* PQerrorMessage or a result's message, on one line (libpq's end in "\n" and may span lines). */
static void one_line(char *dst, size_t size, const char *msg)
{
    size_t n = 0;

    for (; msg != NULL && *msg != '\0' && n + 1 < size; msg++) {
        char ch = *msg == '\n' || *msg == '\t' || *msg == '\r' ? ' ' : *msg;
        if (ch == ' ' && (n == 0 || dst[n - 1] == ' '))
            continue;
        dst[n++] = ch;
    }
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}

static int sqlstate_errno(const char *s)
{
    if (s == NULL)
        return -EIO;
    if (strcmp(s, "23505") == 0)
        return -EEXIST;
    if (strncmp(s, "23", 2) == 0 || strncmp(s, "22", 2) == 0)
        return -EINVAL;
    if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 || strcmp(s, "55P03") == 0 ||
        strcmp(s, "57014") == 0)
        return -EBUSY;
    if (strcmp(s, "53100") == 0)
        return -ENOSPC;
    if (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
        strcmp(s, "57P03") == 0)
        return -ENOTCONN;
    return -EIO;
}

bool pg_op_local(int rc)
{
    return rc == -EINVAL || rc == -EEXIST;
}

/* Closes a dead connection; the next begin opens a new one. */
static void drop(struct pg_core *k)
{
    PQfinish(k->c.pg);
    k->c.pg = NULL;
    k->c.in_tx = false;
    memset(k->c.prepared, 0, sizeof(k->c.prepared));
}

/* The connection is gone: records why, closes it, answers -ENOTCONN. */
static int lost(struct pg_core *k, const char *msg)
{
    char line[STORE_WHY_MAX - 32];

    one_line(line, sizeof(line), msg != NULL && *msg != '\0' ? msg : "no answer from the server");
    snprintf(k->c.base.why, sizeof(k->c.base.why), "PostgreSQL connection lost: %s", line);
    drop(k);
    return -ENOTCONN;
}

/* Converts a failed result (or NULL: none came) into -errno; a systemic one gets its sentence. */
static int fail(struct pg_core *k, const PGresult *r)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *verb = k->c.write ? "commit" : "read";
    char line[160];
    int rc = sqlstate_errno(state);

    if (k->c.pg == NULL || PQstatus(k->c.pg) == CONNECTION_BAD || rc == -ENOTCONN)
        return lost(k, msg != NULL ? msg : PQerrorMessage(k->c.pg));
    one_line(line, sizeof(line), msg != NULL ? msg : PQerrorMessage(k->c.pg));
    if (pg_op_local(rc)) {
        log_debug(MODULE, "PostgreSQL refused an op: %s (SQLSTATE %s)", line, state);
        return rc;
    }
    if (rc == -ENOSPC)
        snprintf(k->c.base.why, sizeof(k->c.base.why),
                 "disk full: the last %s failed with PostgreSQL SQLSTATE 53100 (%s)", verb, line);
    else if (rc == -EBUSY)
        snprintf(k->c.base.why, sizeof(k->c.base.why),
                 "database busy: the last %s failed with PostgreSQL SQLSTATE %s (%s)", verb, state,
                 line);
    else
        snprintf(k->c.base.why, sizeof(k->c.base.why),
                 "database error: the last %s failed with PostgreSQL SQLSTATE %s (%s)", verb,
                 state != NULL ? state : "none", line);
    return rc;
}

/* ---- pipelines ----------------------------------------------------------------------------- */

static bool send_one(PGconn *pg, const struct pq *q)
{
    if (q->name == NULL)
        return PQsendQueryParams(pg, q->sql, q->n, NULL, q->params, NULL, NULL, 0) == 1;
    if (q->prepare && PQsendPrepare(pg, q->name, q->sql, q->n, NULL) != 1)
        return false;
    return PQsendQueryPrepared(pg, q->name, q->n, q->params, NULL, NULL, 0) == 1;
}

/* Reads one query's results (up to the NULL that ends them): *keep gets the last one when it
 * is wanted, *err the first error. Returns false when the connection broke. */
static bool read_results(struct pg_core *k, PGresult **keep, PGresult **err, bool *ok)
{
    PGresult *r;

    *ok = true;
    while ((r = PQgetResult(k->c.pg)) != NULL) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            if (keep != NULL) {
                PQclear(*keep);
                *keep = r;
                continue;
            }
        } else {
            *ok = false;
            if (s != PGRES_PIPELINE_ABORTED && *err == NULL) {
                *err = r;
                continue;
            }
        }
        PQclear(r);
    }
    return PQstatus(k->c.pg) != CONNECTION_BAD;
}

/* Sends qs as one pipeline and reads every answer: one round trip. *last (or NULL) gets the
 * last query's result when all succeeded (PQclear it). Returns 0 or -errno (fail()). */
static int run_pipeline(struct pg_core *k, struct pq *qs, size_t nq, PGresult **last)
{
    PGresult *err = NULL, *keep = NULL, *sync;
    int rc = 0;

    if (last != NULL)
        *last = NULL;
    if (k->c.pg == NULL)
        return -ENOTCONN; /* why was written when it was lost */
    for (size_t i = 0; i < nq; i++)
        if (!send_one(k->c.pg, &qs[i]))
            return lost(k, PQerrorMessage(k->c.pg));
    if (PQpipelineSync(k->c.pg) != 1)
        return lost(k, PQerrorMessage(k->c.pg));
    for (size_t i = 0; i < nq; i++) {
        bool prepared_ok = true, broken = false;
        if (qs[i].name != NULL && qs[i].prepare) {
            broken = !read_results(k, NULL, &err, &prepared_ok);
            qs[i].prepared = prepared_ok;
        }
        if (!broken)
            broken = !read_results(k, i + 1 == nq ? &keep : NULL, &err, &qs[i].ok);
        qs[i].ok = qs[i].ok && prepared_ok;
        if (broken) {
            rc = fail(k, err);
            goto out;
        }
    }
    sync = PQgetResult(k->c.pg);
    if (sync == NULL || PQresultStatus(sync) != PGRES_PIPELINE_SYNC) {
        /* The server ended the session after an error (pg_terminate_backend: 57P01) */
        PQclear(sync);
        rc = lost(k, err != NULL ? PQresultErrorField(err, PG_DIAG_MESSAGE_PRIMARY)
                                 : "the pipeline's answers are out of step");
        goto out;
    }
    PQclear(sync);
    if (err != NULL) {
        k->aborted = true;
        rc = fail(k, err);
    }
out:
    PQclear(err);
    if (rc == 0 && last != NULL)
        *last = keep;
    else
        PQclear(keep);
    return rc;
}

/* One statement without parameters, in a pipeline of its own. */
static int run_sql(struct pg_core *k, const char *sql)
{
    struct pq q = {.sql = sql};

    return run_pipeline(k, &q, 1, NULL);
}

int pg_stmt(struct pg_conn *c, enum store_op_kind kind, unsigned index, const char *sql, int n,
            const char *const *params, PGresult **out)
{
    struct pg_core *k = (struct pg_core *)c;
    struct pq qs[3];
    size_t nq = 0;
    char name[64];
    int rc;

    ASSERT(index < 32 && n <= PG_PARAMS_MAX && (unsigned)kind < STORE_OP__COUNT);
    *out = NULL;
    if (k->release_pending)
        qs[nq++] = (struct pq){.sql = "RELEASE SAVEPOINT op"};
    if (k->sp_want && !k->sp_open)
        qs[nq++] = (struct pq){.sql = "SAVEPOINT op"};
    snprintf(name, sizeof(name), "%s_%u", store_op_kinds[kind].name, index);
    qs[nq++] = (struct pq){.name = name,
                           .sql = sql,
                           .prepare = !(c->prepared[kind] & (1u << index)),
                           .n = n,
                           .params = params};
    rc = run_pipeline(k, qs, nq, out);
    if (c->pg == NULL)
        return rc;
    k->release_pending = false;
    k->sp_open = k->sp_open || k->sp_want;
    if (qs[nq - 1].prepared)
        c->prepared[kind] |= 1u << index;
    return rc;
}

/* ---- connecting and migrating -------------------------------------------------------------- */

/* libpq's notices (a WARNING about a cancelled synchronous-replication wait, "relation already
 * exists, skipping") go to the log instead of stderr. */
static void notice_cb(void *arg, const char *message)
{
    char line[STORE_WHY_MAX];

    (void)arg;
    one_line(line, sizeof(line), message);
    if (strncmp(line, "WARNING", 7) == 0)
        log_warn(MODULE, "PostgreSQL says: %s", line);
    else
        log_debug(MODULE, "PostgreSQL says: %s", line);
}

/* Opens k's connection (not yet in pipeline mode). Returns 0 or -ENOTCONN with the sentence in
 * err. */
static int connect_raw(struct pg_core *k, struct buf *err)
{
    const char *keys[] = {"connect_timeout",
                          "keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "dbname",
                          "application_name",
                          NULL};
    const char *values[] = {PG_CONNECT_TIMEOUT_S,
                            "1",
                            PG_KEEPALIVES_IDLE_S,
                            PG_KEEPALIVES_INTERVAL_S,
                            PG_KEEPALIVES_COUNT,
                            PG_TCP_USER_TIMEOUT_MS,
                            k->c.conninfo,
                            k->c.write ? "arun-writer" : "arun-reader",
                            NULL};
    char line[STORE_WHY_MAX];
    PGconn *pg = PQconnectdbParams(keys, values, 1);

    if (PQstatus(pg) != CONNECTION_OK) {
        one_line(line, sizeof(line), PQerrorMessage(pg));
        buf_printf(err, "cannot connect to PostgreSQL: %s", line);
        PQfinish(pg);
        return -ENOTCONN;
    }
    PQsetNoticeProcessor(pg, notice_cb, NULL);
    k->c.pg = pg;
    return 0;
}

/* Runs SQL text outside a pipeline (at open); on error appends "what: message" to err. */
static int exec_text(struct pg_core *k, const char *sql, const char *what, PGresult **out,
                     struct buf *err)
{
    PGresult *r = PQexec(k->c.pg, sql);
    ExecStatusType s = PQresultStatus(r);
    char line[STORE_WHY_MAX];

    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
        if (out != NULL)
            *out = r;
        else
            PQclear(r);
        return 0;
    }
    one_line(line, sizeof(line), PQerrorMessage(k->c.pg));
    buf_printf(err, "%s: %s", what, line);
    int rc = PQstatus(k->c.pg) == CONNECTION_BAD
                 ? -ENOTCONN
                 : sqlstate_errno(PQresultErrorField(r, PG_DIAG_SQLSTATE));
    PQclear(r);
    return rc == -EINVAL || rc == -EEXIST ? -EIO : rc;
}

/* The session's settings and identity, then pipeline mode. */
static int setup_session(struct pg_core *k, struct buf *err)
{
    const char *sql = !k->c.write ? "SET default_transaction_read_only = on; " PG_SESSION_SETTINGS
                      : k->sync_full ? "SET synchronous_commit = on; " PG_SESSION_SETTINGS
                                     : "SET synchronous_commit = off; " PG_SESSION_SETTINGS;
    const char *what = "setting up the PostgreSQL session";
    PGresult *r = NULL;
    int rc = exec_text(k, sql, what, NULL, err);

    if (rc == 0)
        rc = exec_text(k,
                       "SELECT pg_backend_pid(), backend_start::text FROM pg_stat_activity "
                       "WHERE pid = pg_backend_pid()",
                       what, &r, err);
    if (rc == 0 && PQntuples(r) == 1) {
        snprintf(k->backend_pid, sizeof(k->backend_pid), "%s", PQgetvalue(r, 0, 0));
        snprintf(k->backend_start, sizeof(k->backend_start), "%s", PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    if (rc == 0 && PQenterPipelineMode(k->c.pg) != 1) {
        buf_puts(err, "this libpq cannot enter pipeline mode (arun needs libpq 14 or newer)");
        rc = -ENOTSUP;
    }
    return rc;
}

/* Ends the backend of the connection that was lost, if the server still runs it: after a
 * network cut it would hold its transaction's row locks (and an unanswered COMMIT's outcome)
 * until the server noticed, and the retried batch would wait on them. (pid, backend_start)
 * names that one backend only, never a new one that reuses the pid. */
static void end_previous(struct pg_core *k, const char *pid, const char *start)
{
    const char *params[] = {pid, start};
    struct pq q = {.sql = "SELECT pg_terminate_backend(pid, " PG_TERMINATE_WAIT_MS ") FROM "
                          "pg_stat_activity WHERE pid = $1 AND backend_start::text = $2",
                   .n = 2,
                   .params = params};
    PGresult *r;

    if (run_pipeline(k, &q, 1, &r) != 0) {
        log_warn(MODULE, "could not end the lost connection's backend (pid %s): %s", pid,
                 k->c.base.why);
        return;
    }
    if (PQntuples(r) > 0)
        log_warn(MODULE,
                 "ended the lost connection's backend (pid %s), still running on the server", pid);
    PQclear(r);
}

/* Opens and sets up k's connection again after a loss. Returns 0 or -ENOTCONN with why. */
static int reconnect(struct pg_core *k)
{
    char prev_pid[16], prev_start[sizeof(k->backend_start)];
    struct buf err;
    int rc;

    snprintf(prev_pid, sizeof(prev_pid), "%s", k->backend_pid);
    snprintf(prev_start, sizeof(prev_start), "%s", k->backend_start);
    buf_init(&err, 1024);
    rc = connect_raw(k, &err);
    if (rc == 0)
        rc = setup_session(k, &err);
    if (rc != 0) {
        snprintf(k->c.base.why, sizeof(k->c.base.why), "PostgreSQL connection lost: %.200s",
                 buf_cstr(&err));
        if (k->c.pg != NULL)
            drop(k);
        rc = -ENOTCONN;
    } else {
        log_info(MODULE, "reconnected the %s to PostgreSQL", k->c.write ? "writer" : "reader");
        if (prev_pid[0] != '\0')
            end_previous(k, prev_pid, prev_start);
        rc = k->c.pg != NULL ? 0 : -ENOTCONN;
    }
    buf_cleanup(&err);
    return rc;
}

/* "PostgreSQL database NAME on HOST:PORT", for sentences: never the URL (it may hold a
 * password). */
static char *db_name(PGconn *pg)
{
    return xasprintf("PostgreSQL database %s on %s:%s", PQdb(pg), PQhost(pg), PQport(pg));
}

static int apply_migrations(struct pg_core *k, const char *what, int64_t from, struct buf *err)
{
    int64_t known = (int64_t)store_postgres_migrations_count;
    char step[256], *set_version;
    int rc = 0;

    for (int64_t v = from; v < known && rc == 0; v++) {
        snprintf(step, sizeof(step), "migration %" PRId64 " of %s", v + 1, what);
        rc = exec_text(k, store_postgres_migrations[v], step, NULL, err);
    }
    if (rc != 0)
        return rc;
    set_version = xasprintf("DELETE FROM arun_schema; INSERT INTO arun_schema (version) VALUES "
                            "(%" PRId64 ")",
                            known);
    rc = exec_text(k, set_version, "setting the schema version", NULL, err);
    free(set_version);
    if (rc == 0)
        log_info(MODULE, "migrated the %s from schema version %" PRId64 " to %" PRId64, what, from,
                 known);
    return rc;
}

static const char migrate_begin_sql[] =
    "BEGIN; SELECT pg_advisory_xact_lock(" PG_MIGRATION_LOCK "); "
    "CREATE TABLE IF NOT EXISTS arun_schema (version integer NOT NULL)";

/* Brings the schema to the version this binary knows, in one transaction holding the
 * migration lock (another node opening the same database at once waits, then finds it done),
 * or refuses a newer one. */
static int migrate(struct pg_core *k, struct buf *err)
{
    int64_t version = 0, known = (int64_t)store_postgres_migrations_count;
    char *what = db_name(k->c.pg);
    PGresult *r = NULL;
    int rc;

    rc = exec_text(k, migrate_begin_sql, what, NULL, err);
    if (rc == 0)
        rc = exec_text(k, "SELECT coalesce(max(version), 0) FROM arun_schema", what, &r, err);
    if (rc == 0)
        version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (rc == 0 && version > known) {
        buf_printf(err,
                   "%s has schema version %" PRId64 ", this arun knows up to %" PRId64
                   ": use a newer arun or another database",
                   what, version, known);
        rc = -ENOTSUP;
    }
    if (rc == 0 && version < known)
        rc = apply_migrations(k, what, version, err);
    if (rc == 0)
        rc = exec_text(k, "COMMIT", what, NULL, err);
    if (rc != 0 && PQstatus(k->c.pg) == CONNECTION_OK)
        PQclear(PQexec(k->c.pg, "ROLLBACK"));
    free(what);
    return rc;
}

static struct pg_core *core_new(const struct store_options *opts, bool write)
{
    struct pg_core *k = xcalloc(1, sizeof(*k));

    k->c.base.be = &store_postgres_backend;
    k->c.conninfo = xstrdup(opts->url);
    k->c.write = write;
    k->sync_full = opts->synchronous != CONFIG_SYNC_NORMAL;
    buf_init(&k->c.notify, SIZE_MAX);
    return k;
}

static void pg_close(struct store_conn *base)
{
    struct pg_core *k = (struct pg_core *)base;

    if (k == NULL)
        return;
    PQfinish(k->c.pg);
    buf_cleanup(&k->c.notify);
    free(k->c.conninfo);
    free(k);
}

static int pg_open(const struct store_options *opts, const char *data_dir,
                   struct store_conn **writer, struct store_conn **reader, struct buf *err)
{
    struct pg_core *w = core_new(opts, true), *r = core_new(opts, false);
    int rc;

    (void)data_dir; /* store.c keeps its lock file and the logs there */
    rc = connect_raw(w, err);
    if (rc == 0)
        rc = migrate(w, err);
    if (rc == 0)
        rc = setup_session(w, err);
    if (rc == 0)
        rc = connect_raw(r, err);
    if (rc == 0)
        rc = setup_session(r, err);
    if (rc != 0) {
        pg_close(&w->c.base);
        pg_close(&r->c.base);
        return rc;
    }
    *writer = &w->c.base;
    *reader = &r->c.base;
    return 0;
}

/* ---- transactions ---------------------------------------------------------------------- */

/* What became of the transaction whose COMMIT answer was lost. Returns 0 with *committed, or
 * -errno (-ENOTCONN while it is still running on the old connection's backend). */
static int resolve_doubt(struct pg_core *k, bool *committed)
{
    char xid[24];
    const char *params[] = {xid};
    struct pq q = {.sql = "SELECT txid_status($1)", .n = 1, .params = params};
    PGresult *r;
    int rc;

    snprintf(xid, sizeof(xid), "%" PRId64, k->doubt_xid);
    rc = run_pipeline(k, &q, 1, &r);
    if (rc != 0)
        return rc;
    const char *status = PQgetisnull(r, 0, 0) ? "unknown" : PQgetvalue(r, 0, 0);
    *committed = strcmp(status, "committed") == 0;
    if (strcmp(status, "in progress") == 0) {
        snprintf(k->c.base.why, sizeof(k->c.base.why),
                 "PostgreSQL connection lost: the last commit (transaction %s) is still in "
                 "progress on the old connection",
                 xid);
        rc = -ENOTCONN;
    } else {
        log_warn(MODULE,
                 "the answer to a COMMIT was lost with the connection: transaction %s is %s", xid,
                 status);
        k->doubt_xid = 0;
    }
    PQclear(r);
    return rc;
}

static int begin_write(struct pg_core *k)
{
    struct pq qs[] = {{.sql = "BEGIN"}, {.sql = "SELECT txid_current()"}};
    PGresult *r;
    int rc;

    if (k->doubt_xid != 0) {
        bool committed = false;
        rc = resolve_doubt(k, &committed);
        if (rc != 0)
            return rc;
        /* Only the retry of the batch that was in doubt may take its outcome: a new batch
         * (store.c gave the old one up) starts afresh. */
        if (committed && k->c.base.retrying)
            return STORE_BEGIN_COMMITTED;
    }
    rc = run_pipeline(k, qs, ARRAY_SIZE(qs), &r);
    if (rc != 0)
        return rc;
    k->c.xid = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

static int pg_begin(struct store_conn *base, bool write)
{
    struct pg_core *k = (struct pg_core *)base;
    int rc = 0;

    if (k->c.pg == NULL)
        rc = reconnect(k);
    if (rc != 0)
        return rc;
    buf_reset(&k->c.notify);
    k->c.notify_keys = false;
    k->sp_want = k->sp_open = k->release_pending = k->aborted = false;
    rc = write ? begin_write(k) : run_sql(k, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (rc == 0)
        k->c.in_tx = true;
    return rc;
}

static int line_cmp(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;
    return strcmp(*x, *y);
}

/* The arun_events payloads of the transaction: its "TENANT ID\n" lines, each once, cut into
 * NOTIFYs of at most PG_NOTIFY_MAX bytes. Returns how many, in *out (free each, and it). */
static size_t notify_payloads(struct pg_conn *c, char ***out)
{
    char *text = xstrdup(buf_cstr(&c->notify)), **lines = NULL, **payloads = NULL;
    size_t nlines = 0, npayloads = 0;
    struct buf chunk;

    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l != NULL;
         l = strtok_r(NULL, "\n", &save)) {
        lines = xrealloc(lines, (nlines + 1) * sizeof(*lines));
        lines[nlines++] = l;
    }
    if (nlines > 0)
        qsort(lines, nlines, sizeof(*lines), line_cmp);
    buf_init(&chunk, SIZE_MAX);
    for (size_t i = 0; i < nlines; i++) {
        if (i > 0 && strcmp(lines[i], lines[i - 1]) == 0)
            continue;
        if (chunk.len > 0 && chunk.len + strlen(lines[i]) + 1 > PG_NOTIFY_MAX) {
            payloads = xrealloc(payloads, (npayloads + 1) * sizeof(*payloads));
            payloads[npayloads++] = xstrdup(buf_cstr(&chunk));
            buf_reset(&chunk);
        }
        buf_printf(&chunk, "%s\n", lines[i]);
    }
    if (chunk.len > 0) {
        payloads = xrealloc(payloads, (npayloads + 1) * sizeof(*payloads));
        payloads[npayloads++] = xstrdup(buf_cstr(&chunk));
    }
    buf_cleanup(&chunk);
    free(lines);
    free(text);
    *out = payloads;
    return npayloads;
}

/* NOTIFYs then COMMIT, one pipeline. A lost connection leaves the commit in doubt. */
static int commit_write(struct pg_core *k)
{
    static const char *const keys_params[] = {PG_CHANNEL_KEYS, ""};
    char **payloads;
    size_t n = notify_payloads(&k->c, &payloads), nq = 0;
    struct pq *qs = xcalloc(n + 2, sizeof(*qs));
    const char **params = xcalloc(2 * n + 1, sizeof(*params));
    int rc;

    for (size_t i = 0; i < n; i++) {
        params[2 * i] = PG_CHANNEL_EVENTS;
        params[2 * i + 1] = payloads[i];
        qs[nq++] = (struct pq){.sql = "SELECT pg_notify($1, $2)", .n = 2, .params = &params[2 * i]};
    }
    if (k->c.notify_keys)
        qs[nq++] = (struct pq){.sql = "SELECT pg_notify($1, $2)", .n = 2, .params = keys_params};
    qs[nq++] = (struct pq){.sql = "COMMIT"};
    k->doubt_xid = k->c.xid;
    rc = run_pipeline(k, qs, nq, NULL);
    if (rc != -ENOTCONN)
        k->doubt_xid = 0; /* the server answered: committed, or not at all */
    for (size_t i = 0; i < n; i++)
        free(payloads[i]);
    free(payloads);
    free(params);
    free(qs);
    return rc;
}

static int pg_commit(struct store_conn *base)
{
    struct pg_core *k = (struct pg_core *)base;
    int rc = k->c.write ? commit_write(k) : run_sql(k, "COMMIT");

    k->c.in_tx = false;
    return rc;
}

static void pg_rollback(struct store_conn *base)
{
    struct pg_core *k = (struct pg_core *)base;

    if (k->c.pg == NULL || !k->c.in_tx)
        return;
    k->c.in_tx = false;
    if (run_sql(k, "ROLLBACK") != 0)
        log_warn(MODULE, "rollback failed: %s", k->c.base.why);
}

/* ---- op helpers ------------------------------------------------------------------------- */

/* Statement 0 of op's kind, a write: -ENOENT in op when enoent and no row changed. */
static int write_stmt(struct pg_conn *c, struct store_op *op, const char *sql, int n,
                      const char *const *params, bool enoent)
{
    PGresult *r;
    int rc = pg_stmt(c, op->kind, 0, sql, n, params, &r);

    if (rc == 0 && enoent && strcmp(PQcmdTuples(r), "0") == 0)
        op->result = -ENOENT;
    PQclear(r);
    return rc;
}

static void take_value(struct store_op *op, const PGresult *r, int row)
{
    size_t len = (size_t)PQgetlength(r, row, 0);

    op->out = xmalloc(len + 1);
    memcpy(op->out, PQgetvalue(r, row, 0), len);
    op->out[len] = '\0';
    op->out_len = len;
}

/* Statement 0 of op's kind, a read of one value: column 0 of the first row, else -ENOENT. */
static int value_stmt(struct pg_conn *c, struct store_op *op, const char *sql, int n,
                      const char *const *params)
{
    PGresult *r;
    int rc = pg_stmt(c, op->kind, 0, sql, n, params, &r);

    if (rc != 0)
        return rc;
    if (PQntuples(r) == 0 || PQgetisnull(r, 0, 0))
        op->result = -ENOENT;
    else
        take_value(op, r, 0);
    PQclear(r);
    return 0;
}

/* Statement 0 of op's kind bound with LIMIT limit + 1: {"data":[rows],"has_more":bool}, the
 * page cut short past STORE_VALUE_MAX bytes as sqlite.c's. */
static int page_stmt(struct pg_conn *c, struct store_op *op, const char *sql, int n,
                     const char *const *params)
{
    PGresult *r;
    struct buf b;
    int rc = pg_stmt(c, op->kind, 0, sql, n, params, &r), rows, i;
    bool more = false;

    if (rc != 0)
        return rc;
    buf_init(&b, SIZE_MAX);
    buf_puts(&b, "{\"data\":[");
    size_t start = b.len;
    rows = PQntuples(r);
    for (i = 0; i < rows; i++) {
        if ((uint32_t)i == op->u.run.limit || (i > 0 && b.len - start > STORE_VALUE_MAX)) {
            more = true;
            break;
        }
        if (i > 0)
            buf_append(&b, ",", 1);
        buf_append(&b, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
    }
    buf_puts(&b, more ? "],\"has_more\":true}" : "],\"has_more\":false}");
    op->out_len = b.len;
    op->out = buf_steal(&b);
    buf_cleanup(&b);
    PQclear(r);
    return 0;
}

struct num {
    char s[24];
};

static struct num num(int64_t v)
{
    struct num n;
    snprintf(n.s, sizeof(n.s), "%" PRId64, v);
    return n;
}

/* ---- kv, probe, debug SQL ---------------------------------------------------------------- */

static int kv_put(struct pg_conn *c, struct store_op *op)
{
    struct num now = num(clock_wall_ms());
    const char *p[] = {op->u.kv.ns, op->u.kv.key, op->u.kv.value, now.s};

    return write_stmt(c, op,
                      "INSERT INTO kv (ns, key, value, updated_ms) VALUES ($1, $2, $3, $4) "
                      "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, "
                      "updated_ms = excluded.updated_ms",
                      4, p, false);
}

static int kv_delete(struct pg_conn *c, struct store_op *op)
{
    const char *p[] = {op->u.kv.ns, op->u.kv.key};

    return write_stmt(c, op, "DELETE FROM kv WHERE ns = $1 AND key = $2", 2, p, true);
}

static int kv_get(struct pg_conn *c, struct store_op *op)
{
    const char *p[] = {op->u.kv.ns, op->u.kv.key};

    return value_stmt(c, op, "SELECT value FROM kv WHERE ns = $1 AND key = $2", 2, p);
}

/* Built by concatenation like SQLite's json_group_object (json_object_agg writes " : "
 * between a key and its value): the stored values are embedded as they are. Keys in byte
 * order whatever the database's collation, as SQLite sorts them. */
static const char kv_list_sql[] =
    "SELECT '{' || coalesce(string_agg(to_json(key)::text || ':' || value::text, ',' "
    "ORDER BY key COLLATE \"C\"), '') || '}' "
    "FROM (SELECT key, value FROM kv WHERE ns = $1 ORDER BY key COLLATE \"C\" LIMIT $2) s";

static int kv_list(struct pg_conn *c, struct store_op *op)
{
    struct num max = num(STORE_LIST_MAX);
    const char *p[] = {op->u.kv.ns, max.s};

    return value_stmt(c, op, kv_list_sql, 2, p);
}

static int probe(struct pg_conn *c, struct store_op *op)
{
    struct num now = num(clock_wall_ms());
    const char *p[] = {now.s};

    return write_stmt(c, op,
                      "INSERT INTO store_probe (id, at_ms) VALUES (1, $1) ON CONFLICT (id) DO "
                      "UPDATE SET at_ms = excluded.at_ms",
                      1, p, false);
}

/* SQL text from a test, outside the pipeline (it may hold several statements): the first row's
 * first column any statement returned is the value. Any error is systemic: it is a test's. */
static int sql_text(struct pg_conn *c, struct store_op *op)
{
    struct pg_core *k = (struct pg_core *)c;
    PGresult *r, *err = NULL;
    int rc = 0;

    if (c->pg == NULL)
        return -ENOTCONN;
    if (PQexitPipelineMode(c->pg) != 1 || PQsendQuery(c->pg, op->u.sql.text) != 1)
        return lost(k, PQerrorMessage(c->pg));
    while ((r = PQgetResult(c->pg)) != NULL) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_TUPLES_OK && op->out == NULL && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
            take_value(op, r, 0);
        if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK && err == NULL) {
            err = r;
            continue;
        }
        PQclear(r);
    }
    if (err != NULL || PQstatus(c->pg) == CONNECTION_BAD)
        rc = fail(k, err);
    PQclear(err);
    if (rc == -EINVAL || rc == -EEXIST)
        rc = -EIO;
    if (c->pg != NULL && PQenterPipelineMode(c->pg) != 1)
        rc = lost(k, PQerrorMessage(c->pg));
    return rc;
}

/* ---- tenancy: keys, usage, audit ----------------------------------------------------------- */

/* The rows as JSON texts, like sqlite.c's json_object(): to_json() quotes a string, coalesce
 * writes null for a NULL. */
static const char keys_list_sql[] =
    "SELECT '{\"id\":' || to_json(id)::text || ',\"hash\":' || to_json(hash)::text || "
    "',\"tenant\":' || to_json(tenant)::text || ',\"role\":' || to_json(role)::text || "
    "',\"name\":' || coalesce(to_json(name)::text, 'null') || ',\"created_ms\":' || created_ms || "
    "',\"last_used_ms\":' || coalesce(last_used_ms::text, 'null') || "
    "',\"revoked_ms\":' || coalesce(revoked_ms::text, 'null') || '}' "
    "FROM api_keys WHERE id > coalesce($1, '') ORDER BY id LIMIT $2";

/* By seq alone: ts_ms only filters (a clock step back must not hide or repeat a row). */
static const char audit_list_sql[] =
    "SELECT '{\"seq\":' || seq || ',\"ts_ms\":' || ts_ms || "
    "',\"actor\":' || to_json(actor)::text || "
    "',\"tenant\":' || coalesce(to_json(tenant)::text, 'null') || "
    "',\"action\":' || to_json(action)::text || "
    "',\"target\":' || coalesce(to_json(target)::text, 'null') || "
    "',\"outcome\":' || to_json(outcome)::text || "
    "',\"remote\":' || coalesce(to_json(remote)::text, 'null') || "
    "',\"detail\":' || detail::text || '}' "
    "FROM audit WHERE seq > $2 AND ts_ms >= $1 ORDER BY seq LIMIT $3";

static int key_put(struct pg_conn *c, struct store_op *op)
{
    struct num created = num(op->u.run.ms);
    const char *p[] = {op->u.run.s[RUN_ID],     op->u.run.s[RUN_TYPE],  op->u.run.s[RUN_TENANT],
                       op->u.run.s[RUN_STATUS], op->u.run.s[RUN_MODEL], created.s};

    c->notify_keys = true;
    return write_stmt(c, op,
                      "INSERT INTO api_keys (id, hash, tenant, role, name, created_ms) VALUES "
                      "($1, $2, $3, $4, $5, $6)",
                      6, p, false);
}

/* A second revocation changes nothing but still finds the row. */
static int key_revoke(struct pg_conn *c, struct store_op *op)
{
    struct num ms = num(op->u.run.ms);
    const char *p[] = {op->u.run.s[RUN_ID], ms.s};

    c->notify_keys = true;
    return write_stmt(c, op,
                      "UPDATE api_keys SET revoked_ms = coalesce(revoked_ms, $2) WHERE id = $1", 2,
                      p, true);
}

/* No notice: last_used_ms is for lists, not for authentication. */
static int key_touch(struct pg_conn *c, struct store_op *op)
{
    struct num ms = num(op->u.run.ms);
    const char *p[] = {op->u.run.s[RUN_ID], ms.s};

    return write_stmt(c, op,
                      "UPDATE api_keys SET last_used_ms = greatest(coalesce(last_used_ms, 0), $2) "
                      "WHERE id = $1",
                      2, p, true);
}

static int keys_list(struct pg_conn *c, struct store_op *op)
{
    struct num limit = num((int64_t)op->u.run.limit + 1);
    const char *p[] = {op->u.run.s[RUN_AFTER], limit.s};

    return page_stmt(c, op, keys_list_sql, 2, p);
}

static int usage_add(struct pg_conn *c, struct store_op *op)
{
    struct num tokens = num(op->u.run.seq), requests = num(op->u.run.ms2), now = num(op->u.run.ms);
    const char *p[] = {op->u.run.s[RUN_TENANT], op->u.run.s[RUN_ID], tokens.s, requests.s, now.s};

    return write_stmt(c, op,
                      "INSERT INTO tenant_usage (tenant, day, output_tokens, requests, updated_ms) "
                      "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (day, tenant) DO UPDATE SET "
                      "output_tokens = tenant_usage.output_tokens + excluded.output_tokens, "
                      "requests = tenant_usage.requests + excluded.requests, updated_ms = "
                      "excluded.updated_ms",
                      5, p, false);
}

static int usage_day(struct pg_conn *c, struct store_op *op)
{
    struct num limit = num((int64_t)op->u.run.limit + 1);
    const char *p[] = {op->u.run.s[RUN_ID], op->u.run.s[RUN_AFTER], limit.s};

    return page_stmt(c, op,
                     "SELECT '{\"tenant\":' || to_json(tenant)::text || ',\"output_tokens\":' || "
                     "output_tokens || ',\"requests\":' || requests || '}' FROM tenant_usage "
                     "WHERE day = $1 AND tenant > coalesce($2, '') ORDER BY tenant LIMIT $3",
                     3, p);
}

static int audit_append(struct pg_conn *c, struct store_op *op)
{
    struct num ts = num(op->u.run.ms);
    const char *p[] = {op->u.run.s[RUN_OWNER],  op->u.run.s[RUN_TENANT],
                       op->u.run.s[RUN_TYPE],   op->u.run.s[RUN_ID],
                       op->u.run.s[RUN_STATUS], op->u.run.s[RUN_CONV],
                       op->u.run.s[RUN_JSON],   ts.s};

    return write_stmt(c, op,
                      "INSERT INTO audit (actor, tenant, action, target, outcome, remote, detail, "
                      "ts_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      8, p, false);
}

static int audit_list(struct pg_conn *c, struct store_op *op)
{
    struct num since = num(op->u.run.ms), after = num(op->u.run.seq),
               limit = num((int64_t)op->u.run.limit + 1);
    const char *p[] = {since.s, after.s, limit.s};

    return page_stmt(c, op, audit_list_sql, 3, p);
}

/* ---- cluster: nodes, claims, leases -------------------------------------------------------- */

static int node_put(struct pg_conn *c, struct store_op *op)
{
    struct num started = num(op->u.run.ms2);
    const char *p[] = {op->u.run.s[RUN_ID], op->u.run.s[RUN_OWNER], op->u.run.s[RUN_STATUS],
                       started.s, op->u.run.s[RUN_JSON]};

    return write_stmt(c, op,
                      "INSERT INTO nodes (id, address, state, started_ms, seen_ms, info) VALUES "
                      "($1, $2, $3, $4, " DB_NOW_MS ", $5) ON CONFLICT (id) DO UPDATE SET address "
                      "= excluded.address, state = excluded.state, started_ms = "
                      "excluded.started_ms, seen_ms = excluded.seen_ms, info = excluded.info",
                      5, p, false);
}

/* This node's own row stays, however old the before_ms its caller computed. */
static int nodes_forget(struct pg_conn *c, struct store_op *op)
{
    struct num before = num(op->u.run.ms);
    const char *p[] = {before.s, c->base.node_id};

    return write_stmt(c, op, "DELETE FROM nodes WHERE seen_ms < $1 AND id <> $2", 2, p, false);
}

static const char nodes_list_sql[] =
    "SELECT '{\"now_ms\":' || " DB_NOW_MS " || ',\"data\":[' || "
    "coalesce(string_agg(line, ',' ORDER BY id), '') || ']}' "
    "FROM (SELECT id, '{\"id\":' || to_json(id)::text || ',\"address\":' || "
    "to_json(address)::text || ',\"state\":' || to_json(state)::text || "
    "',\"started_ms\":' || started_ms || ',\"seen_ms\":' || seen_ms || "
    "',\"info\":' || info::text || '}' AS line FROM nodes ORDER BY id LIMIT $1) n";

static int nodes_list(struct pg_conn *c, struct store_op *op)
{
    struct num max = num(STORE_PAGE_MAX);
    const char *p[] = {max.s};

    return value_stmt(c, op, nodes_list_sql, 1, p);
}

/* Claims rows FOR UPDATE SKIP LOCKED and answers them as store_runs_unfinished's row (sqlite.c's
 * RESPONSE_FIELDS, request and RESPONSE_TAIL) with "node": the owner before the claim. */
static const char runs_claim_sql[] =
    "WITH now AS (SELECT " DB_NOW_MS " AS ms), "
    "picked AS (SELECT tenant, id, node AS prev FROM responses "
    "  WHERE status IN ('queued', 'in_progress') "
    "  AND (node IS NULL OR lease_until_ms < (SELECT ms FROM now)) "
    "  ORDER BY created_ms, seq LIMIT $3 FOR UPDATE SKIP LOCKED), "
    "claimed AS (UPDATE responses u "
    "  SET node = $1, lease_until_ms = (SELECT ms FROM now) + $2::bigint "
    "  FROM picked p WHERE u.tenant = p.tenant AND u.id = p.id RETURNING u.*, p.prev) "
    "SELECT '{\"tenant\":' || to_json(r.tenant)::text || ',\"id\":' || to_json(r.id)::text || "
    "',\"status\":' || to_json(r.status)::text || ',\"model\":' || to_json(r.model)::text || "
    "',\"conversation_id\":' || coalesce(to_json(r.conversation_id)::text, 'null') || "
    "',\"previous_response_id\":' || coalesce(to_json(r.previous_response_id)::text, 'null') || "
    "',\"created_ms\":' || r.created_ms || "
    "',\"background\":' || CASE WHEN r.background THEN 'true' ELSE 'false' END || "
    "',\"request\":' || r.request::text || ',\"object\":' || r.object::text || "
    "',\"last_seq\":' || coalesce((SELECT max(e.seq) FROM response_events e "
    "  WHERE e.tenant = r.tenant AND e.response_id = r.id), -1) || "
    "',\"node\":' || coalesce(to_json(r.prev)::text, 'null') || '}' "
    "FROM claimed r ORDER BY r.created_ms, r.seq";

/* The rows are picked FOR UPDATE SKIP LOCKED: two nodes claiming at once never get the same. A
 * restart first gives up this node id's earlier leases: its earlier process is gone. */
static int runs_claim(struct pg_conn *c, struct store_op *op)
{
    struct num lease = num(c->base.lease_ms), limit = num(op->u.run.limit);
    const char *p[] = {c->base.node_id, lease.s, limit.s};
    PGresult *r;
    struct buf b;
    int rc;

    if (op->u.run.flag) {
        rc = pg_stmt(c, op->kind, 1,
                     "UPDATE responses SET lease_until_ms = 0 WHERE node = $1 AND status IN "
                     "('queued', 'in_progress')",
                     1, p, &r);
        if (rc != 0)
            return rc;
        PQclear(r);
    }
    rc = pg_stmt(c, op->kind, 0, runs_claim_sql, 3, p, &r);

    if (rc != 0)
        return rc;
    buf_init(&b, SIZE_MAX);
    buf_puts(&b, "[");
    for (int i = 0; i < PQntuples(r); i++) {
        if (i > 0)
            buf_append(&b, ",", 1);
        buf_append(&b, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
    }
    buf_puts(&b, "]");
    op->out_len = b.len;
    op->out = buf_steal(&b);
    buf_cleanup(&b);
    PQclear(r);
    return 0;
}

static int leases_renew(struct pg_conn *c, struct store_op *op)
{
    struct num lease = num(c->base.lease_ms);
    const char *p[] = {c->base.node_id, lease.s};
    PGresult *r;
    int rc = pg_stmt(c, op->kind, 0,
                     "UPDATE responses SET lease_until_ms = " DB_NOW_MS " + $2::bigint WHERE "
                     "node = $1 AND status IN ('queued', 'in_progress')",
                     2, p, &r);

    if (rc != 0)
        return rc;
    op->out = xasprintf("{\"renewed\":%s}", PQcmdTuples(r));
    op->out_len = strlen(op->out);
    PQclear(r);
    return 0;
}

/* ---- applying ops ----------------------------------------------------------------------- */

/* The ops this file applies; the durable runs' come from pg_runs_apply_fn (postgres_runs.c). */
static const pg_apply_fn core_fns[STORE_OP__COUNT] = {
    [STORE_OP_KV_PUT] = kv_put,
    [STORE_OP_KV_DELETE] = kv_delete,
    [STORE_OP_KV_GET] = kv_get,
    [STORE_OP_KV_LIST] = kv_list,
    [STORE_OP_PROBE] = probe,
    [STORE_OP_SQL] = sql_text,
    [STORE_OP_KEY_PUT] = key_put,
    [STORE_OP_KEY_REVOKE] = key_revoke,
    [STORE_OP_KEY_TOUCH] = key_touch,
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

/* A read op failed on its own (its apply function returned the error, or set op->result and
 * returned 0, as postgres_runs.c's do): if that aborted the snapshot's transaction, the rest of
 * the batch reads in a new one. */
static int apply_read(struct pg_core *k, pg_apply_fn fn, struct store_op *op)
{
    struct pq qs[] = {{.sql = "ROLLBACK"},
                      {.sql = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"}};
    int rc = fn(&k->c, op);

    if (rc != 0 && pg_op_local(rc)) {
        op->result = rc;
        rc = 0;
    }
    if (rc != 0 || !k->aborted)
        return rc;
    k->aborted = false;
    return run_pipeline(k, qs, ARRAY_SIZE(qs), NULL);
}

/* Undoes a write op that failed on its own (its savepoint was sent): the batch goes on. */
static int write_failed(struct pg_core *k, struct store_op *op, bool opened)
{
    log_debug(MODULE, "%s op failed on its own and was undone (%d)", store_op_kinds[op->kind].name,
              op->result);
    if (!opened)
        return 0;
    k->release_pending = true;
    k->aborted = false;
    return run_sql(k, "ROLLBACK TO SAVEPOINT op");
}

static int pg_apply(struct store_conn *base, struct store_op *op)
{
    struct pg_core *k = (struct pg_core *)base;
    pg_apply_fn fn = core_fns[op->kind] != NULL ? core_fns[op->kind] : pg_runs_apply_fn(op->kind);
    int rc;

    if (fn == NULL) {
        op->result = -ENOSYS;
        return 0;
    }
    if (store_op_kinds[op->kind].read)
        return apply_read(k, fn, op);
    /* A test's SQL gets no savepoint: it may hold statements a savepoint cannot wrap. */
    k->sp_want = op->kind != STORE_OP_SQL;
    k->sp_open = false;
    rc = fn(&k->c, op);
    bool opened = k->sp_open;
    k->sp_want = k->sp_open = false;
    if (rc != 0 && !pg_op_local(rc))
        return rc;
    if (rc != 0)
        op->result = rc;
    if (op->result != 0)
        return write_failed(k, op, opened);
    k->release_pending = k->release_pending || opened;
    return 0;
}

const struct store_backend store_postgres_backend = {
    .name = "postgresql",
    .open = pg_open,
    .begin = pg_begin,
    .apply = pg_apply,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .close = pg_close,
};
