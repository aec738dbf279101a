/*
 * postgres.c: the PostgreSQL backend (store_int.h, pg_int.h). PLACEHOLDER while it is being
 * written: open refuses with a sentence.
 */
#include <errno.h>

#include "store/pg_int.h"

static int pg_open(const struct store_options *opts, const char *data_dir,
                   struct store_conn **writer, struct store_conn **reader, struct buf *err)
{
    (void)opts;
    (void)data_dir;
    (void)writer;
    (void)reader;
    buf_puts(err, "store.url: the PostgreSQL backend is not finished in this build");
    return -ENOTSUP;
}

static int pg_begin(struct store_conn *c, bool write)
{
    (void)c;
    (void)write;
    return -ENOTSUP;
}

static int pg_apply(struct store_conn *c, struct store_op *op)
{
    (void)c;
    (void)op;
    return -ENOTSUP;
}

static int pg_commit(struct store_conn *c)
{
    (void)c;
    return -ENOTSUP;
}

static void pg_rollback(struct store_conn *c)
{
    (void)c;
}

static void pg_close(struct store_conn *c)
{
    (void)c;
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
