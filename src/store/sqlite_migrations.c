/*
 * sqlite_migrations.c: the SQLite schema as an ordered list of migrations. Entry i takes a
 * database from schema version i to i + 1 (PRAGMA user_version); sqlite.c runs the pending ones
 * at open, all in one transaction.
 *
 * To change the schema, append an entry; never edit or reorder one that has shipped, since
 * databases in the field are at every version in between. A migration is plain SQL that must
 * work on the previous version's schema with data in it (add columns with defaults, backfill with
 * UPDATE, build a new table and copy when SQLite's ALTER cannot do it). Its capability's test
 * opens a database made at the previous version. docs/internals/store.md walks through one.
 */
#include "store/store_int.h"

const char *const store_sqlite_migrations[] = {
    /* 1: the generic namespaced key-value table, and the writer's probe row. */
    ("CREATE TABLE kv ("
     "  ns TEXT NOT NULL,"
     "  key TEXT NOT NULL,"
     "  value TEXT NOT NULL CHECK (json_valid(value)),"
     "  updated_ms INTEGER NOT NULL," /* wall clock, ms since the epoch */
     "  PRIMARY KEY (ns, key)"
     ") WITHOUT ROWID;"
     "CREATE TABLE store_probe ("
     "  id INTEGER PRIMARY KEY CHECK (id = 1),"
     "  at_ms INTEGER NOT NULL"
     ");"),
    /* 2: durable runs (store.h "durable runs", docs/internals/store.md). Every table's key starts
     * with tenant (WITHOUT ROWID: the key is the table's own order), so every lookup is inside one
     * tenant by construction; the only indexes that do not start with it serve the two system scans
     * (recovery, sweep). */
    ("CREATE TABLE responses ("
     "  tenant TEXT NOT NULL,"
     "  id TEXT NOT NULL,"
     "  status TEXT NOT NULL,"
     "  model TEXT NOT NULL,"
     "  conversation_id TEXT,"
     "  previous_response_id TEXT,"
     "  created_ms INTEGER NOT NULL,"
     "  updated_ms INTEGER NOT NULL,"
     "  background INTEGER NOT NULL,"
     "  request TEXT NOT NULL CHECK (json_valid(request)),"
     "  object TEXT NOT NULL CHECK (json_valid(object)),"
     "  PRIMARY KEY (tenant, id)"
     ");" /* a rowid table: the rowid is the creation order, also within one millisecond */
     /* GET /v1/responses: a tenant's newest first, all statuses or one (each index entry ends
      * with the rowid, the tie-break of equal created_ms). */
     "CREATE INDEX responses_by_created ON responses (tenant, created_ms);"
     "CREATE INDEX responses_by_status ON responses (tenant, status, created_ms);"
     /* Recovery: only the unfinished rows, across tenants. */
     "CREATE INDEX responses_unfinished ON responses (created_ms)"
     "  WHERE status IN ('queued', 'in_progress');"
     /* The sweep: the oldest first, across tenants. */
     "CREATE INDEX responses_by_age ON responses (created_ms);"
     /* The event log: the key is the read order. SQLite's json_valid() checks a 170-byte event
      * in about 0.4 us, jansson's parse in 2.3 us (bench/README.md), so the CHECK stays. */
     "CREATE TABLE response_events ("
     "  tenant TEXT NOT NULL,"
     "  response_id TEXT NOT NULL,"
     "  seq INTEGER NOT NULL,"
     "  type TEXT NOT NULL,"
     "  data TEXT NOT NULL CHECK (json_valid(data)),"
     "  PRIMARY KEY (tenant, response_id, seq)"
     ") WITHOUT ROWID;"
     /* Input and output items of responses, items of conversations: kind says which. */
     "CREATE TABLE items ("
     "  tenant TEXT NOT NULL,"
     "  owner_id TEXT NOT NULL,"
     "  kind TEXT NOT NULL CHECK (kind IN ('input', 'output', 'conversation')),"
     "  position INTEGER NOT NULL,"
     "  id TEXT NOT NULL CHECK (typeof(id) = 'text' AND length(id) BETWEEN 1 AND 128),"
     "  item TEXT NOT NULL CHECK (json_valid(item) AND json_type(item) = 'object'),"
     "  PRIMARY KEY (tenant, owner_id, kind, position)"
     ") WITHOUT ROWID;"
     "CREATE UNIQUE INDEX items_by_id ON items (tenant, owner_id, kind, id);"
     "CREATE TABLE conversations ("
     "  tenant TEXT NOT NULL,"
     "  id TEXT NOT NULL,"
     "  created_ms INTEGER NOT NULL,"
     "  updated_ms INTEGER NOT NULL," /* items appended touch it; the sweep goes by it */
     "  metadata TEXT NOT NULL CHECK (json_valid(metadata)),"
     "  PRIMARY KEY (tenant, id)"
     ") WITHOUT ROWID;"
     "CREATE INDEX conversations_by_updated ON conversations (updated_ms);"
     "CREATE TABLE idempotency ("
     "  tenant TEXT NOT NULL,"
     "  key TEXT NOT NULL,"
     "  body_hash TEXT NOT NULL,"
     "  response_id TEXT NOT NULL,"
     "  created_ms INTEGER NOT NULL,"
     "  PRIMARY KEY (tenant, key)"
     ") WITHOUT ROWID;"
     "CREATE INDEX idempotency_by_created ON idempotency (created_ms);"),
    /* 3: items by their own id within a tenant, for item_reference (store_item_find). The
     * table is WITHOUT ROWID, so the index carries the primary key (tenant first) after id:
     * SQLite's planner takes it for "id = ? AND tenant = ?", where it would prefer the primary
     * key's tenant prefix, a scan of the whole tenant, over an index on (tenant, id). */
    "CREATE INDEX items_by_item_id ON items (id);",
    /* 4: tenancy. API keys by id, each unique by the SHA-256 of its text (the lookup the
     * server keeps in memory; the text itself is never stored). Daily counters per tenant. The
     * audit trail, numbered by AUTOINCREMENT so a number is never reused, read by time. */
    ("CREATE TABLE api_keys ("
     "  id TEXT PRIMARY KEY,"
     "  hash TEXT NOT NULL UNIQUE CHECK (length(hash) = 64),"
     "  tenant TEXT NOT NULL,"
     "  role TEXT NOT NULL CHECK (role IN ('admin', 'member')),"
     "  name TEXT,"
     "  created_ms INTEGER NOT NULL,"
     "  last_used_ms INTEGER,"
     "  revoked_ms INTEGER"
     ") WITHOUT ROWID;"
     "CREATE TABLE tenant_usage ("
     "  day TEXT NOT NULL,"
     "  tenant TEXT NOT NULL,"
     "  output_tokens INTEGER NOT NULL,"
     "  requests INTEGER NOT NULL,"
     "  updated_ms INTEGER NOT NULL,"
     "  PRIMARY KEY (day, tenant)"
     ") WITHOUT ROWID;"
     "CREATE TABLE audit ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
     "  ts_ms INTEGER NOT NULL,"
     "  actor TEXT NOT NULL,"
     "  tenant TEXT,"
     "  action TEXT NOT NULL,"
     "  target TEXT,"
     "  outcome TEXT NOT NULL,"
     "  remote TEXT,"
     /* CASE: json_type() fails the statement on a text that is not JSON, a CHECK must not. */
     "  detail TEXT NOT NULL CHECK (CASE WHEN json_valid(detail) THEN json_type(detail) = "
     "'object' ELSE 0 END)"
     ");"
     "CREATE INDEX audit_by_ts ON audit (ts_ms);"),
    /* 5: a response by its id alone, for the cursor of an admin's every-tenant listing (ids are
     * random, 128 bits: unique across tenants in practice; LIMIT 1 if not). */
    "CREATE INDEX responses_by_id ON responses (id);",
    /* 6: the cluster (store.h "cluster"). Each unfinished run has an owner node and a lease;
     * rows from before have none (node NULL, lease 0: expired), so any node may claim them.
     * Nodes register and heartbeat in `nodes`. */
    ("ALTER TABLE responses ADD COLUMN node TEXT;"
     "ALTER TABLE responses ADD COLUMN lease_until_ms INTEGER NOT NULL DEFAULT 0;"
     "CREATE TABLE nodes ("
     "  id TEXT PRIMARY KEY,"
     "  address TEXT NOT NULL,"
     "  state TEXT NOT NULL CHECK (state IN ('up', 'left')),"
     "  started_ms INTEGER NOT NULL,"
     "  seen_ms INTEGER NOT NULL,"
     "  info TEXT NOT NULL CHECK (CASE WHEN json_valid(info) THEN json_type(info) = 'object' "
     "ELSE 0 END)"
     ") WITHOUT ROWID;"),
};

const size_t store_sqlite_migrations_count = ARRAY_SIZE(store_sqlite_migrations);
