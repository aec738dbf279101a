/*
 * table.h: the CLI's aligned tables (`arun engines`, `arun runs`) and the cells they share.
 * Pure: a table is built in memory and laid out into a buffer, so its layout is unit-tested
 * without a server or a terminal.
 *
 * Layout: columns as wide as their widest cell, two spaces apart; the last column is never
 * padded, so a script can cut it or read it whole, and it alone is shortened (ending "...") to
 * a width when one is given (the terminal's), so a long reason does not wrap the table.
 */
#ifndef ARUN_CLI_TABLE_H
#define ARUN_CLI_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define TABLE_GAP 2 /* spaces between columns */

struct table {
    size_t ncols; /* fixed at table_init */
    size_t nrows; /* rows added so far, the header included */
    size_t cap;   /* rows cells has room for */
    char **cells; /* nrows * ncols heap strings, row after row */
};

/* An empty table of ncols (>= 1) columns. */
void table_init(struct table *t, size_t ncols);
/* Frees every cell; the table is empty again. */
void table_cleanup(struct table *t);
/* Appends a row of ncols cells, taking ownership of each heap string (NULL reads "-"). */
void table_add_row(struct table *t, char **cells);
/* Appends a row of copies of ncols strings (the header). */
void table_add_strs(struct table *t, const char *const *cells);
/* Lays the table out into out, one line per row, each ending with '\n'. width is the columns
 * the output may use (0: no limit); only the last cell is cut to fit it, without splitting a
 * UTF-8 sequence. Returns 0, or -ENOBUFS when out's cap is reached (the layout is cut). */
int table_render(const struct table *t, size_t width, struct buf *out);
/* Prints the table to stdout, cut to the terminal's width when stdout is one. */
void table_print(const struct table *t);

/* A duration as a person reads it: "45s", "3m12s", "2h05m", "3d04h" (negative reads 0s).
 * Caller frees. */
char *table_duration(int64_t s);

#endif
