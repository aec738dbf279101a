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
};

const size_t store_sqlite_migrations_count = ARRAY_SIZE(store_sqlite_migrations);
