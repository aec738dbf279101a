/*
 * postgres_migrations.c: the PostgreSQL schema as an ordered list of migrations, like
 * sqlite_migrations.c. Entry i takes a database from schema version i to i + 1 (the one row of
 * arun_schema); postgres.c runs the pending ones at open in one transaction that holds
 * pg_advisory_xact_lock, so two nodes starting at once never migrate together.
 *
 * Version 1 is the whole schema SQLite reached in its six: the same tables, columns and
 * meanings (docs/internals/store.md), in PostgreSQL's dialect:
 *  - JSON columns are `json`, not `jsonb`: json keeps the text exactly as written (the store
 *    promises byte for byte), and its input check refuses invalid JSON (22P02, op-local).
 *  - SQLite's rowid as creation order is `responses.seq`, an identity column; AUTOINCREMENT is
 *    an identity column too.
 *  - Booleans are boolean; times are bigint milliseconds, as in SQLite.
 * Append only, never edit an entry that has shipped.
 */
#include "store/store_int.h"

const char *const store_postgres_migrations[] = {
    /* 1: everything SQLite's migrations 1 to 6 made. */
    ("CREATE TABLE kv ("
     "  ns text NOT NULL,"
     "  key text NOT NULL,"
     "  value json NOT NULL,"
     "  updated_ms bigint NOT NULL,"
     "  PRIMARY KEY (ns, key)"
     ");"
     "CREATE TABLE store_probe ("
     "  id integer PRIMARY KEY CHECK (id = 1),"
     "  at_ms bigint NOT NULL"
     ");"
     "CREATE TABLE responses ("
     "  seq bigint GENERATED ALWAYS AS IDENTITY," /* creation order, also within one ms */
     "  tenant text NOT NULL,"
     "  id text NOT NULL,"
     "  status text NOT NULL,"
     "  model text NOT NULL,"
     "  conversation_id text,"
     "  previous_response_id text,"
     "  created_ms bigint NOT NULL,"
     "  updated_ms bigint NOT NULL,"
     "  background boolean NOT NULL,"
     "  request json NOT NULL,"
     "  object json NOT NULL,"
     "  node text,"                              /* the owner while unfinished */
     "  lease_until_ms bigint NOT NULL DEFAULT 0," /* database clock */
     "  PRIMARY KEY (tenant, id)"
     ");"
     "CREATE INDEX responses_by_created ON responses (tenant, created_ms, seq);"
     "CREATE INDEX responses_by_status ON responses (tenant, status, created_ms, seq);"
     "CREATE INDEX responses_unfinished ON responses (created_ms, seq)"
     "  WHERE status IN ('queued', 'in_progress');"
     "CREATE INDEX responses_lease ON responses (lease_until_ms)" /* the takeover scan */
     "  WHERE status IN ('queued', 'in_progress');"
     "CREATE INDEX responses_by_age ON responses (created_ms);"
     "CREATE INDEX responses_by_id ON responses (id);"
     "CREATE TABLE response_events ("
     "  tenant text NOT NULL,"
     "  response_id text NOT NULL,"
     "  seq bigint NOT NULL,"
     "  type text NOT NULL,"
     "  data json NOT NULL,"
     "  PRIMARY KEY (tenant, response_id, seq)"
     ");"
     "CREATE TABLE items ("
     "  tenant text NOT NULL,"
     "  owner_id text NOT NULL,"
     "  kind text NOT NULL CHECK (kind IN ('input', 'output', 'conversation')),"
     "  position bigint NOT NULL,"
     "  id text NOT NULL CHECK (length(id) BETWEEN 1 AND 128),"
     "  item json NOT NULL CHECK (json_typeof(item) = 'object'),"
     "  PRIMARY KEY (tenant, owner_id, kind, position)"
     ");"
     "CREATE UNIQUE INDEX items_by_id ON items (tenant, owner_id, kind, id);"
     "CREATE INDEX items_by_item_id ON items (tenant, id);"
     "CREATE TABLE conversations ("
     "  tenant text NOT NULL,"
     "  id text NOT NULL,"
     "  created_ms bigint NOT NULL,"
     "  updated_ms bigint NOT NULL,"
     "  metadata json NOT NULL,"
     "  PRIMARY KEY (tenant, id)"
     ");"
     "CREATE INDEX conversations_by_updated ON conversations (updated_ms);"
     "CREATE TABLE idempotency ("
     "  tenant text NOT NULL,"
     "  key text NOT NULL,"
     "  body_hash text NOT NULL,"
     "  response_id text NOT NULL,"
     "  created_ms bigint NOT NULL,"
     "  PRIMARY KEY (tenant, key)"
     ");"
     "CREATE INDEX idempotency_by_created ON idempotency (created_ms);"
     "CREATE TABLE api_keys ("
     "  id text PRIMARY KEY,"
     "  hash text NOT NULL UNIQUE CHECK (length(hash) = 64),"
     "  tenant text NOT NULL,"
     "  role text NOT NULL CHECK (role IN ('admin', 'member')),"
     "  name text,"
     "  created_ms bigint NOT NULL,"
     "  last_used_ms bigint,"
     "  revoked_ms bigint"
     ");"
     "CREATE TABLE tenant_usage ("
     "  day text NOT NULL,"
     "  tenant text NOT NULL,"
     "  output_tokens bigint NOT NULL,"
     "  requests bigint NOT NULL,"
     "  updated_ms bigint NOT NULL,"
     "  PRIMARY KEY (day, tenant)"
     ");"
     "CREATE TABLE audit ("
     "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     "  ts_ms bigint NOT NULL,"
     "  actor text NOT NULL,"
     "  tenant text,"
     "  action text NOT NULL,"
     "  target text,"
     "  outcome text NOT NULL,"
     "  remote text,"
     "  detail json NOT NULL CHECK (json_typeof(detail) = 'object')"
     ");"
     "CREATE INDEX audit_by_ts ON audit (ts_ms);"
     "CREATE TABLE nodes ("
     "  id text PRIMARY KEY,"
     "  address text NOT NULL,"
     "  state text NOT NULL CHECK (state IN ('up', 'left')),"
     "  started_ms bigint NOT NULL,"
     "  seen_ms bigint NOT NULL," /* database clock */
     "  info json NOT NULL CHECK (json_typeof(info) = 'object')"
     ");"),
};

const size_t store_postgres_migrations_count = ARRAY_SIZE(store_postgres_migrations);
