/*
 * postgres_runs.c: the durable runs' ops (store.h "durable runs") on PostgreSQL: responses,
 * their events and items, conversations, idempotency claims, the recovery scan and the sweep.
 * The connection, transactions, savepoints and the mapping of errors are postgres.c's
 * (pg_int.h); this file only says what each op runs and what it answers.
 *
 * DESIGN
 * - Every answer is the same text sqlite.c gives, byte for byte: JSON rows are built in SQL by
 *   concatenation (to_json(text)::text quotes a string as json_quote does; a json column cast to
 *   text is exactly what was written, since `json` keeps its input), pages are joined here. No
 *   stored JSON is parsed on the way out.
 * - responses.seq is the creation order that SQLite's rowid is: lists and the recovery scan
 *   order by (created_ms, seq).
 * - Parameters travel as text; every one whose type the statement cannot infer is cast.
 * - Fencing (store.h): a run's event append and row update are refused with -ESTALE once
 *   another node owns the run (responses.node). The event append stays ONE statement on the hot
 *   path: it inserts only if the row is there and ours, and locks the row FOR SHARE while it
 *   does, so a node claiming the run (FOR UPDATE SKIP LOCKED) cannot take it between the check
 *   and our COMMIT. Only when it inserted nothing does a second statement tell "no such run"
 *   from "another node's run".
 * - Notices: every write that touches a response's row or events appends "TENANT ID\n" to
 *   c->notify; postgres.c NOTIFYs the lines at commit (pg_listen.c delivers them to the other
 *   nodes). A line already among the last NOTIFY_DEDUPE_WINDOW bytes is not added again, so a
 *   batch of many events of a few runs sends one line per run.
 * - An op-local failure (invalid JSON, a constraint) aborts the statement and with it the op:
 *   postgres.c rolls back to the op's savepoint, so once q() reports one, an apply function
 *   runs nothing more.
 *
 * THREAD SAFETY NOTES
 * Each function runs on the thread that owns c (the writer's or the reader's), like sqlite.c's.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "store/pg_int.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

/* How far back in c->notify a line is looked for before it is added again: a NOTIFY holds
 * about 7900 bytes, so this covers the runs of one notice, and the scan per event stays small. */
#define NOTIFY_DEDUPE_WINDOW 8192
/* The database's clock in milliseconds: leases are on it, so nodes whose clocks differ agree. */
#define DB_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"

/* A response row as JSON (sqlite.c's RESPONSE_FIELDS and RESPONSE_TAIL): FIELDS, optionally the
 * request, then TAIL. to_json(NULL) is NULL, which || would spread over the whole row: absent
 * strings are coalesced to null. */
#define RESPONSE_FIELDS                                                                            \
    "'\"id\":' || to_json(r.id)::text || ',\"status\":' || to_json(r.status)::text || "            \
    "',\"model\":' || to_json(r.model)::text || ',\"conversation_id\":' || "                       \
    "coalesce(to_json(r.conversation_id)::text, 'null') || ',\"previous_response_id\":' || "       \
    "coalesce(to_json(r.previous_response_id)::text, 'null') || ',\"created_ms\":' || "            \
    "r.created_ms || ',\"background\":' || CASE WHEN r.background THEN 'true' ELSE 'false' END"
#define RESPONSE_TAIL                                                                              \
    "',\"object\":' || r.object::text || ',\"last_seq\":' || coalesce((SELECT max(e.seq) FROM "    \
    "response_events e WHERE e.tenant = r.tenant AND e.response_id = r.id), -1) || "               \
    "',\"node\":' || coalesce(to_json(r.node)::text, 'null') || '}'"
#define RESPONSE_ROW_REQUEST                                                                       \
    "'{' || " RESPONSE_FIELDS " || ',\"request\":' || r.request::text || " RESPONSE_TAIL
#define RESPONSE_ROW "'{' || " RESPONSE_FIELDS " || " RESPONSE_TAIL
#define RESPONSE_ROW_TENANT                                                                        \
    "'{\"tenant\":' || to_json(r.tenant)::text || ',' || " RESPONSE_FIELDS " || " RESPONSE_TAIL
#define UNFINISHED "('queued', 'in_progress')"
#define INT64_MAX_TEXT "9223372036854775807" /* a list's cursor before the first page */

/* ---- parameters and statements ----------------------------------------------------------- */

/* The text parameters of one statement; numbers are formatted into num. */
struct params {
    const char *v[PG_PARAMS_MAX];
    char num[PG_PARAMS_MAX][24];
    int n;
};

static void p_str(struct params *p, const char *s)
{
    ASSERT(p->n < PG_PARAMS_MAX);
    p->v[p->n++] = s;
}

static void p_int(struct params *p, int64_t v)
{
    ASSERT(p->n < PG_PARAMS_MAX);
    snprintf(p->num[p->n], sizeof(p->num[p->n]), "%lld", (long long)v);
    p->v[p->n] = p->num[p->n];
    p->n++;
}

static void p_run(struct params *p, const struct store_op *op, enum store_run_str role)
{
    p_str(p, op->u.run.s[role]);
}

/* Runs statement index of op's kind. Returns 0 with *res (the caller PQclears it); 0 with *res
 * NULL and op->result set when the statement failed on the op's own merits (the op is over:
 * postgres.c rolls back to its savepoint); or a systemic -errno. */
static int q(struct pg_conn *c, struct store_op *op, unsigned index, const char *sql,
             const struct params *p, PGresult **res)
{
    int rc = pg_stmt(c, op->kind, index, sql, p->n, p->v, res);

    if (rc == 0)
        return 0;
    *res = NULL;
    if (pg_op_local(rc)) {
        op->result = rc;
        return 0;
    }
    return rc;
}

/* Rows a write changed (its command tag's count). */
static int64_t changed(const PGresult *res)
{
    return strtoll(PQcmdTuples((PGresult *)res), NULL, 10);
}

/* Runs a write; *n gets the rows it changed, -1 when the op failed on its own. */
static int q_write(struct pg_conn *c, struct store_op *op, unsigned index, const char *sql,
                   const struct params *p, int64_t *n)
{
    PGresult *res;
    int rc = q(c, op, index, sql, p, &res);

    *n = res != NULL ? changed(res) : -1;
    PQclear(res);
    return rc;
}

/* Runs a write whose only outcome besides an error is "no such row": -ENOENT in op. */
static int q_write_or_enoent(struct pg_conn *c, struct store_op *op, unsigned index,
                             const char *sql, const struct params *p)
{
    int64_t n;
    int rc = q_write(c, op, index, sql, p, &n);

    if (rc == 0 && n == 0)
        op->result = -ENOENT;
    return rc;
}

/* Runs a query; *found says whether it answered a row (false too when the op failed). */
static int q_exists(struct pg_conn *c, struct store_op *op, unsigned index, const char *sql,
                    const struct params *p, bool *found)
{
    PGresult *res;
    int rc = q(c, op, index, sql, p, &res);

    *found = res != NULL && PQntuples(res) > 0;
    PQclear(res);
    return rc;
}

/* Copies a NUL-terminated text into op as its value. */
static void take_text(struct store_op *op, const char *text, size_t len)
{
    op->out = xstrndup(text, len);
    op->out_len = len;
}

/* Hands the text built in b to op as its value ("" when empty). */
static void take_buf(struct store_op *op, struct buf *b)
{
    op->out_len = b->len;
    op->out = b->len > 0 ? buf_steal(b) : xstrdup("");
    buf_cleanup(b);
}

/* A value read: column 0 of the first row, or -ENOENT in op. */
static int q_read_one(struct pg_conn *c, struct store_op *op, unsigned index, const char *sql,
                      const struct params *p)
{
    PGresult *res;
    int rc = q(c, op, index, sql, p, &res);

    if (res == NULL)
        return rc;
    if (PQntuples(res) == 0)
        op->result = -ENOENT;
    else
        take_text(op, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
    PQclear(res);
    return rc;
}

/* Appends column 0 of res's rows (JSON texts) as the elements of a JSON array, at most limit
 * of them and no more bytes than STORE_VALUE_MAX past the first; *more says whether rows were
 * left. The caller writes the brackets. */
static void append_rows(struct buf *b, const PGresult *res, uint32_t limit, bool *more)
{
    int rows = PQntuples(res);
    size_t start = b->len;

    *more = false;
    for (int i = 0; i < rows; i++) {
        if ((uint32_t)i == limit || (i > 0 && b->len - start > STORE_VALUE_MAX)) {
            *more = true;
            break;
        }
        if (i > 0)
            buf_append(b, ",", 1);
        buf_append(b, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
    }
}

/* {"data":[rows],"has_more":bool} into op, from a statement run with LIMIT limit + 1. */
static int q_page(struct pg_conn *c, struct store_op *op, unsigned index, const char *sql,
                  const struct params *p)
{
    struct buf b;
    bool more;
    PGresult *res;
    int rc = q(c, op, index, sql, p, &res);

    if (res == NULL)
        return rc;
    buf_init(&b, SIZE_MAX);
    buf_puts(&b, "{\"data\":[");
    append_rows(&b, res, op->u.run.limit, &more);
    buf_puts(&b, more ? "],\"has_more\":true}" : "],\"has_more\":false}");
    take_buf(op, &b);
    PQclear(res);
    return 0;
}

/* ---- notices ----------------------------------------------------------------------------- */

/* Whether line (n bytes, ending in '\n') is one of the last lines of b. */
static bool notify_has(const struct buf *b, const char *line, size_t n)
{
    if (b->len == 0)
        return false; /* before the pointer sums: an empty buf's data may be NULL */
    const char *end = b->data + b->len;
    const char *at = b->data + (b->len > NOTIFY_DEDUPE_WINDOW ? b->len - NOTIFY_DEDUPE_WINDOW : 0);

    for (; at < end && (at = memmem(at, (size_t)(end - at), line, n)) != NULL; at++) {
        if (at == b->data || at[-1] == '\n')
            return true;
    }
    return false;
}

/* Notes that the response (tenant, id) changed in this transaction, for the NOTIFY at commit. */
static void notify_response(struct pg_conn *c, const char *tenant, const char *id)
{
    char line[STORE_TENANT_MAX + STORE_ID_MAX + 3];
    int n = snprintf(line, sizeof(line), "%s %s\n", tenant, id);

    if (n < 0 || (size_t)n >= sizeof(line) || notify_has(&c->notify, line, (size_t)n))
        return; /* store.c caps both names, so a longer line cannot happen */
    buf_append(&c->notify, line, (size_t)n);
}

/* ---- responses --------------------------------------------------------------------------- */

static const char SQL_RESPONSE_PUT[] =
    "INSERT INTO responses (tenant, id, status, model, conversation_id, previous_response_id, "
    "request, object, created_ms, updated_ms, background, node, lease_until_ms) VALUES ($1, $2, "
    "$3, $4, $5, $6, $7::json, $8::json, $9::bigint, $9::bigint, $10::boolean, $11, " DB_NOW_MS
    " + $12::bigint)";

static int response_put(struct pg_conn *c, struct store_op *op)
{
    struct params p = {0};
    int64_t n;

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    p_run(&p, op, RUN_STATUS);
    p_run(&p, op, RUN_MODEL);
    p_run(&p, op, RUN_CONV);
    p_run(&p, op, RUN_PREV);
    p_run(&p, op, RUN_JSON);
    p_run(&p, op, RUN_JSON2);
    p_int(&p, op->u.run.ms);
    p_str(&p, op->u.run.flag ? "true" : "false");
    p_str(&p, c->base.node_id);
    p_int(&p, c->base.lease_ms);
    int rc = q_write(c, op, 0, SQL_RESPONSE_PUT, &p, &n);
    if (rc == 0 && op->result == 0)
        notify_response(c, op->u.run.s[RUN_TENANT], op->u.run.s[RUN_ID]);
    return rc;
}

/* After a fenced write changed nothing: -ESTALE when the row is there (another node owns it),
 * -ENOENT when it is not. */
static int stale_or_enoent(struct pg_conn *c, struct store_op *op, unsigned index, const char *id)
{
    static const char sql[] = "SELECT 1 FROM responses WHERE tenant = $1 AND id = $2";
    struct params p = {0};
    bool found;

    p_run(&p, op, RUN_TENANT);
    p_str(&p, id);
    int rc = q_exists(c, op, index, sql, &p, &found);
    if (rc == 0 && op->result == 0)
        op->result = found ? -ESTALE : -ENOENT;
    return rc;
}

static const char SQL_RESPONSE_UPDATE[] =
    "UPDATE responses SET status = $3, object = $4::json, updated_ms = $5::bigint WHERE tenant = "
    "$1 AND id = $2 AND (node IS NULL OR node = $6)";

static int response_update(struct pg_conn *c, struct store_op *op)
{
    struct params p = {0};
    int64_t n;

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    p_run(&p, op, RUN_STATUS);
    p_run(&p, op, RUN_JSON2);
    p_int(&p, clock_wall_ms());
    p_str(&p, c->base.node_id);
    int rc = q_write(c, op, 0, SQL_RESPONSE_UPDATE, &p, &n);
    if (rc != 0 || op->result != 0)
        return rc;
    if (n == 0)
        return stale_or_enoent(c, op, 1, op->u.run.s[RUN_ID]);
    notify_response(c, op->u.run.s[RUN_TENANT], op->u.run.s[RUN_ID]);
    return 0;
}

/* The row, its events and its own items (a conversation's items are not a response's), in one
 * statement: the events and items go only if the row did. */
static const char SQL_RESPONSE_DELETE[] =
    "WITH r AS (DELETE FROM responses WHERE tenant = $1 AND id = $2 RETURNING 1), "
    "e AS (DELETE FROM response_events WHERE tenant = $1 AND response_id = $2 AND "
    "EXISTS (SELECT 1 FROM r)), "
    "i AS (DELETE FROM items WHERE tenant = $1 AND owner_id = $2 AND kind IN ('input', 'output') "
    "AND EXISTS (SELECT 1 FROM r)) "
    "SELECT count(*) FROM r";

static int response_delete(struct pg_conn *c, struct store_op *op)
{
    struct params p = {0};
    PGresult *res;

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    int rc = q(c, op, 0, SQL_RESPONSE_DELETE, &p, &res);
    if (res == NULL)
        return rc;
    if (strcmp(PQgetvalue(res, 0, 0), "0") == 0)
        op->result = -ENOENT;
    else
        notify_response(c, op->u.run.s[RUN_TENANT], op->u.run.s[RUN_ID]);
    PQclear(res);
    return 0;
}

static int response_get(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] =
        "SELECT " RESPONSE_ROW_REQUEST " FROM responses r WHERE r.tenant = $1 AND r.id = $2";
    struct params p = {0};

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    return q_read_one(c, op, 0, sql, &p);
}

/* The statements of a tenant's list (RESPONSES_LIST) and of every tenant's (RESPONSES_LIST_ALL):
 * the cursor's (created_ms, seq), then the page, all statuses or one. */
static const char *const SQL_LIST[2][3] = {
    {
        "SELECT created_ms, seq FROM responses WHERE tenant = $1 AND id = $2",
        "SELECT " RESPONSE_ROW " FROM responses r WHERE r.tenant = $1 AND (r.created_ms, r.seq) < "
        "($2::bigint, $3::bigint) ORDER BY r.created_ms DESC, r.seq DESC LIMIT $4::bigint",
        "SELECT " RESPONSE_ROW " FROM responses r WHERE r.tenant = $1 AND r.status = $5 AND "
        "(r.created_ms, r.seq) < ($2::bigint, $3::bigint) ORDER BY r.created_ms DESC, r.seq DESC "
        "LIMIT $4::bigint",
    },
    {
        /* By id alone (responses_by_id): the cursor may be any tenant's response. */
        "SELECT created_ms, seq FROM responses WHERE id = $1 LIMIT 1",
        "SELECT " RESPONSE_ROW_TENANT " FROM responses r WHERE (r.created_ms, r.seq) < "
        "($1::bigint, $2::bigint) ORDER BY r.created_ms DESC, r.seq DESC LIMIT $3::bigint",
        "SELECT " RESPONSE_ROW_TENANT " FROM responses r WHERE r.status = $4 AND "
        "(r.created_ms, r.seq) < ($1::bigint, $2::bigint) ORDER BY r.created_ms DESC, r.seq DESC "
        "LIMIT $3::bigint",
    },
};

static int responses_list(struct pg_conn *c, struct store_op *op)
{
    bool all = op->kind == STORE_OP_RESPONSES_LIST_ALL, by_status = op->u.run.s[RUN_STATUS] != NULL;
    const char *const *sql = SQL_LIST[all];
    const char *after_ms = INT64_MAX_TEXT, *after_seq = INT64_MAX_TEXT;
    struct params p = {0};
    PGresult *cursor = NULL;
    int rc;

    if (op->u.run.s[RUN_AFTER] != NULL) {
        if (!all)
            p_run(&p, op, RUN_TENANT);
        p_run(&p, op, RUN_AFTER);
        rc = q(c, op, 0, sql[0], &p, &cursor);
        if (cursor == NULL)
            return rc;
        if (PQntuples(cursor) == 0) {
            op->result = -ENOENT;
            PQclear(cursor);
            return 0;
        }
        after_ms = PQgetvalue(cursor, 0, 0);
        after_seq = PQgetvalue(cursor, 0, 1);
    }
    p = (struct params){0};
    if (!all)
        p_run(&p, op, RUN_TENANT);
    p_str(&p, after_ms);
    p_str(&p, after_seq);
    p_int(&p, (int64_t)op->u.run.limit + 1);
    if (by_status)
        p_run(&p, op, RUN_STATUS);
    rc = q_page(c, op, by_status ? 2 : 1, sql[by_status ? 2 : 1], &p);
    PQclear(cursor);
    return rc;
}

/* The WHERE term is the partial index's own, so the scan reads only unfinished rows. */
static int runs_unfinished(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] = "SELECT '{\"tenant\":' || to_json(r.tenant)::text || ',' || "
                              "" RESPONSE_FIELDS " || ',\"request\":' || r.request::text || "
                              "" RESPONSE_TAIL " FROM responses r WHERE r.status IN " UNFINISHED
                              " ORDER BY r.created_ms, r.seq";
    struct params p = {0};
    struct buf b;
    bool more;
    PGresult *res;
    int rc = q(c, op, 0, sql, &p, &res);

    if (res == NULL)
        return rc;
    buf_init(&b, SIZE_MAX);
    buf_puts(&b, "[");
    append_rows(&b, res, UINT32_MAX, &more);
    buf_puts(&b, "]");
    take_buf(op, &b);
    PQclear(res);
    return 0;
}

/* ---- events ------------------------------------------------------------------------------ */

static const char SQL_EVENT_APPEND[] =
    "INSERT INTO response_events (tenant, response_id, seq, type, data) SELECT r.tenant, r.id, "
    "$5::bigint, $3, $4::json FROM responses r WHERE r.tenant = $1 AND r.id = $2 AND "
    "(r.node IS NULL OR r.node = $6) FOR SHARE";

static int event_append(struct pg_conn *c, struct store_op *op)
{
    struct params p = {0};
    int64_t n;

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_OWNER);
    p_run(&p, op, RUN_TYPE);
    p_run(&p, op, RUN_JSON);
    p_int(&p, op->u.run.seq);
    p_str(&p, c->base.node_id);
    int rc = q_write(c, op, 0, SQL_EVENT_APPEND, &p, &n);
    if (rc != 0 || op->result != 0)
        return rc;
    if (n == 0)
        return stale_or_enoent(c, op, 1, op->u.run.s[RUN_OWNER]);
    notify_response(c, op->u.run.s[RUN_TENANT], op->u.run.s[RUN_OWNER]);
    return 0;
}

/* "SEQ TYPE DATA\n" per event, by concatenation: the stored JSON is never parsed here. */
static int events_read(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] = "SELECT seq, type, data::text FROM response_events WHERE tenant = "
                              "$1 AND response_id = $2 AND seq > $3::bigint ORDER BY seq LIMIT "
                              "$4::bigint";
    static const char exists[] = "SELECT 1 FROM responses WHERE tenant = $1 AND id = $2";
    struct params p = {0};
    struct buf b;
    PGresult *res;
    bool found;
    int rows, n = 0;

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_OWNER);
    p_int(&p, op->u.run.seq);
    p_int(&p, op->u.run.limit);
    int rc = q(c, op, 0, sql, &p, &res);
    if (res == NULL)
        return rc;
    buf_init(&b, SIZE_MAX);
    rows = PQntuples(res);
    while (n < rows) {
        for (int col = 0; col < 3; col++) {
            buf_append(&b, PQgetvalue(res, n, col), (size_t)PQgetlength(res, n, col));
            buf_append(&b, col < 2 ? " " : "\n", 1);
        }
        if (++n > 0 && b.len > STORE_VALUE_MAX)
            break; /* a big page is cut short; the caller reads on after its last event */
    }
    PQclear(res);
    if (n == 0) { /* none after after_seq, or no such response? */
        p.n = 2;
        rc = q_exists(c, op, 1, exists, &p, &found);
        if (rc == 0 && op->result == 0 && !found)
            op->result = -ENOENT;
    }
    if (rc == 0 && op->result == 0)
        take_buf(op, &b);
    buf_cleanup(&b);
    return rc;
}

/* ---- items and history ------------------------------------------------------------------- */

static bool of_conversation(const struct store_op *op)
{
    return strcmp(op->u.run.s[RUN_TYPE], "conversation") == 0;
}

/* Items appended to (or deleted from) a conversation make it recent for the sweep. */
static int touch_owner(struct pg_conn *c, struct store_op *op, unsigned index)
{
    static const char sql[] =
        "UPDATE conversations SET updated_ms = $3::bigint WHERE tenant = $1 AND id = $2";
    struct params p = {0};
    int64_t n;

    if (!of_conversation(op))
        return 0;
    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_OWNER);
    p_int(&p, op->u.run.ms);
    return q_write(c, op, index, sql, &p, &n);
}

/* Whether items is an array (invalid JSON fails the cast: -EINVAL) and the owner exists, in one
 * statement per kind of owner. */
static const char *const SQL_ITEMS_CHECK[2] = {
    "SELECT json_typeof($3::json) = 'array', EXISTS (SELECT 1 FROM responses WHERE tenant = $1 "
    "AND id = $2)",
    "SELECT json_typeof($3::json) = 'array', EXISTS (SELECT 1 FROM conversations WHERE tenant = "
    "$1 AND id = $2)",
};
/* After the owner's last item of that kind, in array order; an element that is not an object
 * with a string id gets a NULL id, which the NOT NULL constraint refuses (-EINVAL); the CHECK
 * refuses an element that is not an object, the unique index a repeated id (-EEXIST). */
static const char SQL_ITEMS_APPEND[] =
    "INSERT INTO items (tenant, owner_id, kind, position, id, item) SELECT $1, $2, $3, "
    "coalesce((SELECT max(position) FROM items WHERE tenant = $1 AND owner_id = $2 AND kind = "
    "$3), -1) + e.n, CASE WHEN json_typeof(e.v) = 'object' THEN CASE WHEN json_typeof(e.v -> "
    "'id') = 'string' THEN e.v ->> 'id' END END, e.v FROM json_array_elements($4::json) WITH "
    "ORDINALITY AS e(v, n)";

static int items_append(struct pg_conn *c, struct store_op *op)
{
    struct params p = {0};
    PGresult *res;
    int64_t n;

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_OWNER);
    p_run(&p, op, RUN_JSON);
    int rc = q(c, op, of_conversation(op) ? 1 : 0, SQL_ITEMS_CHECK[of_conversation(op)], &p, &res);
    if (res == NULL)
        return rc;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        op->result = -EINVAL;
    else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
        op->result = -ENOENT;
    PQclear(res);
    if (op->result != 0)
        return 0;
    p = (struct params){0};
    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_OWNER);
    p_run(&p, op, RUN_TYPE);
    p_run(&p, op, RUN_JSON);
    rc = q_write(c, op, 2, SQL_ITEMS_APPEND, &p, &n);
    if (rc != 0 || op->result != 0)
        return rc;
    return touch_owner(c, op, 3);
}

static const char *const SQL_ITEMS_LIST[3] = {
    "SELECT position FROM items WHERE tenant = $1 AND owner_id = $2 AND kind = $3 AND id = $4",
    "SELECT item::text FROM items WHERE tenant = $1 AND owner_id = $2 AND kind = $3 AND position "
    "> $4::bigint ORDER BY position LIMIT $5::bigint",
    "SELECT item::text FROM items WHERE tenant = $1 AND owner_id = $2 AND kind = $3 AND position "
    "< $4::bigint ORDER BY position DESC LIMIT $5::bigint",
};

static int items_list(struct pg_conn *c, struct store_op *op)
{
    bool desc = op->u.run.flag;
    int64_t after = desc ? INT64_MAX : -1;
    struct params p = {0};
    PGresult *res;
    int rc;

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_OWNER);
    p_run(&p, op, RUN_TYPE);
    if (op->u.run.s[RUN_AFTER] != NULL) {
        p_run(&p, op, RUN_AFTER);
        rc = q(c, op, 0, SQL_ITEMS_LIST[0], &p, &res);
        if (res == NULL)
            return rc;
        if (PQntuples(res) == 0)
            op->result = -ENOENT;
        else
            after = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        if (op->result != 0)
            return 0;
        p.n = 3;
    }
    p_int(&p, after);
    p_int(&p, (int64_t)op->u.run.limit + 1);
    return q_page(c, op, desc ? 2 : 1, SQL_ITEMS_LIST[desc ? 2 : 1], &p);
}

static int item_get(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] = "SELECT item::text FROM items WHERE tenant = $1 AND owner_id = $2 "
                              "AND kind = $3 AND id = $4";
    struct params p = {0};

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_OWNER);
    p_run(&p, op, RUN_TYPE);
    p_run(&p, op, RUN_ID);
    return q_read_one(c, op, 0, sql, &p);
}

/* items_by_item_id answers it without a scan. */
static int item_find(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] = "SELECT item::text FROM items WHERE tenant = $1 AND id = $2 LIMIT 1";
    struct params p = {0};

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    return q_read_one(c, op, 0, sql, &p);
}

static int item_delete(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] =
        "DELETE FROM items WHERE tenant = $1 AND owner_id = $2 AND kind = $3 AND id = $4";
    struct params p = {0};

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_OWNER);
    p_run(&p, op, RUN_TYPE);
    p_run(&p, op, RUN_ID);
    int rc = q_write_or_enoent(c, op, 0, sql, &p);
    return rc == 0 && op->result == 0 ? touch_owner(c, op, 1) : rc;
}

/* The chain of previous_response_id from the response back to the first (a turn that is gone
 * ends it; STORE_PAGE_MAX turns bound it), then every turn's input items and output items
 * ('input' sorts before 'output'). Read newest first with a LIMIT, so only the newest
 * STORE_PAGE_MAX items come back; history_read turns them around. */
static const char SQL_HISTORY[] =
    "WITH RECURSIVE chain (id, prev, depth) AS ("
    "SELECT id, previous_response_id, 0 FROM responses WHERE tenant = $1 AND id = $2 "
    "UNION ALL SELECT r.id, r.previous_response_id, chain.depth + 1 FROM chain JOIN responses r "
    "ON r.tenant = $1 AND r.id = chain.prev WHERE chain.depth + 1 < " STRINGIFY(
        STORE_PAGE_MAX) ") SELECT i.item::text FROM chain JOIN items i ON i.tenant = $1 AND "
                        "i.owner_id = chain.id "
                        "AND i.kind IN ('input', 'output') ORDER BY chain.depth, i.kind DESC, "
                        "i.position DESC "
                        "LIMIT " STRINGIFY(STORE_PAGE_MAX);

static int history_read(struct pg_conn *c, struct store_op *op)
{
    static const char exists[] = "SELECT 1 FROM responses WHERE tenant = $1 AND id = $2";
    struct params p = {0};
    struct buf b;
    PGresult *res;
    bool found = true;

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    int rc = q(c, op, 0, SQL_HISTORY, &p, &res);
    if (res == NULL)
        return rc;
    int rows = PQntuples(res);
    buf_init(&b, SIZE_MAX);
    buf_puts(&b, "[");
    for (int i = rows; i-- > 0;) {
        if (i < rows - 1)
            buf_append(&b, ",", 1);
        buf_append(&b, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
    }
    buf_puts(&b, "]");
    PQclear(res);
    if (rows == 0) /* no items, or no such response? */
        rc = q_exists(c, op, 1, exists, &p, &found);
    if (rc == 0 && op->result == 0 && !found)
        op->result = -ENOENT;
    if (rc == 0 && op->result == 0)
        take_buf(op, &b);
    buf_cleanup(&b);
    return rc;
}

/* ---- conversations, idempotency keys, the sweep ------------------------------------------ */

static int conversation_put(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] = "INSERT INTO conversations (tenant, id, metadata, created_ms, "
                              "updated_ms) VALUES ($1, $2, $3::json, $4::bigint, $4::bigint)";
    struct params p = {0};
    int64_t n;

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    p_run(&p, op, RUN_JSON);
    p_int(&p, op->u.run.ms);
    return q_write(c, op, 0, sql, &p, &n);
}

static int conversation_update(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] = "UPDATE conversations SET metadata = $3::json, updated_ms = "
                              "$4::bigint WHERE tenant = $1 AND id = $2";
    struct params p = {0};

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    p_run(&p, op, RUN_JSON);
    p_int(&p, op->u.run.ms);
    return q_write_or_enoent(c, op, 0, sql, &p);
}

static int conversation_get(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] = "SELECT '{\"id\":' || to_json(id)::text || ',\"created_ms\":' || "
                              "created_ms || ',\"metadata\":' || metadata::text || '}' FROM "
                              "conversations WHERE tenant = $1 AND id = $2";
    struct params p = {0};

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    return q_read_one(c, op, 0, sql, &p);
}

/* The conversation and its items, in one statement: the items go only if it did. */
static int conversation_delete(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] =
        "WITH d AS (DELETE FROM conversations WHERE tenant = $1 AND id = $2 RETURNING 1), "
        "i AS (DELETE FROM items WHERE tenant = $1 AND owner_id = $2 AND kind = 'conversation' "
        "AND EXISTS (SELECT 1 FROM d)) SELECT count(*) FROM d";
    struct params p = {0};
    PGresult *res;

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    int rc = q(c, op, 0, sql, &p, &res);
    if (res == NULL)
        return rc;
    if (strcmp(PQgetvalue(res, 0, 0), "0") == 0)
        op->result = -ENOENT;
    PQclear(res);
    return 0;
}

/* An older claim is replaced; a fresh one makes the upsert change nothing (-EEXIST). */
static int idem_claim(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] =
        "INSERT INTO idempotency (tenant, key, body_hash, response_id, created_ms) VALUES ($1, "
        "$2, $3, $4, $5::bigint) ON CONFLICT (tenant, key) DO UPDATE SET body_hash = "
        "excluded.body_hash, response_id = excluded.response_id, created_ms = "
        "excluded.created_ms WHERE idempotency.created_ms < $6::bigint";
    struct params p = {0};
    int64_t n;

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    p_run(&p, op, RUN_TYPE);
    p_run(&p, op, RUN_OWNER);
    p_int(&p, op->u.run.ms);
    p_int(&p, op->u.run.ms2);
    int rc = q_write(c, op, 0, sql, &p, &n);
    if (rc == 0 && n == 0)
        op->result = -EEXIST;
    return rc;
}

static int idem_get(struct pg_conn *c, struct store_op *op)
{
    static const char sql[] =
        "SELECT '{\"body_hash\":' || to_json(body_hash)::text || ',\"response_id\":' || "
        "to_json(response_id)::text || ',\"created_ms\":' || created_ms || '}' FROM idempotency "
        "WHERE tenant = $1 AND key = $2";
    struct params p = {0};

    p_run(&p, op, RUN_TENANT);
    p_run(&p, op, RUN_ID);
    return q_read_one(c, op, 0, sql, &p);
}

/* The oldest finished responses created before $1 (at most $2), with their events and own
 * items; answers the (tenant, id) of each, for the notices. */
static const char SQL_SWEEP_RESPONSES[] =
    "WITH picked AS (SELECT tenant, id FROM responses WHERE created_ms < $1::bigint AND status "
    "NOT IN " UNFINISHED " ORDER BY created_ms LIMIT $2::bigint), "
    "r AS (DELETE FROM responses x USING picked WHERE x.tenant = picked.tenant AND x.id = "
    "picked.id RETURNING x.tenant, x.id), "
    "e AS (DELETE FROM response_events x USING r WHERE x.tenant = r.tenant AND x.response_id = "
    "r.id), "
    "i AS (DELETE FROM items x USING r WHERE x.tenant = r.tenant AND x.owner_id = r.id AND "
    "x.kind IN ('input', 'output')) "
    "SELECT tenant, id FROM r";
/* The conversations last updated before $1 (at most $2), with their items; answers how many. */
static const char SQL_SWEEP_CONVERSATIONS[] =
    "WITH picked AS (SELECT tenant, id FROM conversations WHERE updated_ms < $1::bigint ORDER BY "
    "updated_ms LIMIT $2::bigint), "
    "d AS (DELETE FROM conversations x USING picked WHERE x.tenant = picked.tenant AND x.id = "
    "picked.id RETURNING x.tenant, x.id), "
    "i AS (DELETE FROM items x USING d WHERE x.tenant = d.tenant AND x.owner_id = d.id AND "
    "x.kind = 'conversation') "
    "SELECT count(*) FROM d";
static const char SQL_SWEEP_IDEM[] =
    "DELETE FROM idempotency WHERE (tenant, key) IN (SELECT tenant, key FROM idempotency WHERE "
    "created_ms < $1::bigint ORDER BY created_ms LIMIT $2::bigint)";

static int runs_sweep(struct pg_conn *c, struct store_op *op)
{
    struct params p = {0}, pi = {0};
    PGresult *res;
    int64_t responses, conversations, idem;

    p_int(&p, op->u.run.ms);
    p_int(&p, op->u.run.limit);
    int rc = q(c, op, 0, SQL_SWEEP_RESPONSES, &p, &res);
    if (res == NULL)
        return rc;
    responses = PQntuples(res);
    for (int i = 0; i < (int)responses; i++)
        notify_response(c, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
    PQclear(res);
    rc = q(c, op, 1, SQL_SWEEP_CONVERSATIONS, &p, &res);
    if (res == NULL)
        return rc;
    conversations = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    p_int(&pi, op->u.run.ms2);
    p_int(&pi, op->u.run.limit);
    rc = q_write(c, op, 2, SQL_SWEEP_IDEM, &pi, &idem);
    if (rc != 0 || op->result != 0)
        return rc;
    op->out = xasprintf("{\"responses\":%lld,\"conversations\":%lld,\"idem\":%lld}",
                        (long long)responses, (long long)conversations, (long long)idem);
    op->out_len = strlen(op->out);
    return 0;
}

/* ---- the table --------------------------------------------------------------------------- */

static const pg_apply_fn apply_fns[STORE_OP__COUNT] = {
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
};

pg_apply_fn pg_runs_apply_fn(enum store_op_kind kind)
{
    return (unsigned)kind < STORE_OP__COUNT ? apply_fns[kind] : NULL;
}
