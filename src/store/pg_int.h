/*
 * pg_int.h: what the PostgreSQL backend's files share (private to src/store): the connection,
 * the statement helper and the error mapping (postgres.c), and the apply functions of the
 * durable runs' ops (postgres_runs.c). store_int.h says what a backend must do; this says how
 * the PostgreSQL one is put together.
 */
#ifndef ARUN_STORE_PG_INT_H
#define ARUN_STORE_PG_INT_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "core/buf.h"
#include "store/store_int.h"

#define PG_PARAMS_MAX 16

/* One libpq connection, used by one store thread (store_int.h). */
struct pg_conn {
    struct store_conn base; /* first: store.c sees only this */
    PGconn *pg;             /* NULL while lost: the next begin reconnects */
    char *conninfo;         /* the URL, for reconnecting; never logged */
    bool write;             /* the writer's connection (else the reader's) */
    bool in_tx;             /* BEGIN sent and not yet ended */
    int64_t xid;            /* the write transaction's txid_current(), for a lost COMMIT */
    /* Responses whose events or row this write transaction touched ("TENANT ID\n" lines), and
     * whether it touched API keys: NOTIFY'd just before COMMIT (store_int.h, pg_listen). */
    struct buf notify;
    bool notify_keys;
    uint32_t prepared[STORE_OP__COUNT]; /* bit i: statement i of that op kind is prepared */
};

/* Runs one statement of an op kind with text parameters (NULL = SQL NULL) and returns its
 * result in *out (PQclear it) when it succeeded (PGRES_COMMAND_OK or PGRES_TUPLES_OK).
 * The statement is prepared on the connection the first time (named "OPKIND_INDEX"), so the
 * same (kind, index) must always be the same SQL. Returns 0; an op-local failure (SQLSTATE
 * class 22 data exception, 23 integrity violation) as its -errno (-EINVAL, -EEXIST, ...) with
 * the transaction marked for a rollback to the op's savepoint; or a systemic failure (lost
 * connection -ENOTCONN, 40001/40P01/55P03/57014 -EBUSY, 53100 -ENOSPC, anything else -EIO)
 * with the sentence in c->base.why. */
int pg_stmt(struct pg_conn *c, enum store_op_kind kind, unsigned index, const char *sql, int n,
            const char *const *params, PGresult **out) MUST_USE;
/* Whether rc from pg_stmt is op-local (the op fails alone, the batch goes on). */
bool pg_op_local(int rc);

/* postgres_runs.c: the apply function of each durable-runs op kind (store.h "durable runs"),
 * same contract as sqlite.c's: 0 with op->result / op->out set, or a systemic -errno. NULL for
 * a kind that is not a runs op. */
typedef int (*pg_apply_fn)(struct pg_conn *c, struct store_op *op);
pg_apply_fn pg_runs_apply_fn(enum store_op_kind kind);

#endif
