/*
 * table.h: the CLI's aligned tables (`arun engines`, `arun runs`) and the cells they share.
 * Pure: a table is built in memory and laid out into a buffer, so its layout is unit-tested
 * without a server or a terminal.
 *
 * Layout: columns as wide as their widest cell, two spaces apart; the last column is never
 * padded, so a script can cut it or read it whole, and it alone is shortened (ending "...") to
 * a width when one is given (the terminal's), so a long reason does not wrap the table.
 *
 * Colour: one column may be marked as the state column (table_colour_column); when the table is
 * rendered with colour, its cells are wrapped in the SGR colour of their word (ready and
 * completed green, starting/loading/queued… yellow, failed red), the padding computed from the
 * plain text so the columns still line up. Colour is used only where table_colour_decide says
 * so: stdout is a terminal, NO_COLOR is not set (https://no-color.org) and TERM is not "dumb".
 */
#ifndef ARUN_CLI_TABLE_H
#define ARUN_CLI_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define TABLE_GAP 2 /* spaces between columns */

struct table {
    size_t ncols;   /* fixed at table_init */
    size_t nrows;   /* rows added so far, the header included */
    size_t cap;     /* rows cells has room for */
    char **cells;   /* nrows * ncols heap strings, row after row */
    int colour_col; /* the column coloured by state word, or -1 (table_init) */
    bool colour;    /* render with colour: table_print sets it from table_colour_stdout() */
};

/* An empty table of ncols (>= 1) columns, no colour column. */
void table_init(struct table *t, size_t ncols);
/* table_init with the header row cols[0..n), leaving out column skip (-1: none): a column
 * shown only when some row has a value for it. colour_col (of the columns kept, -1: none) is
 * coloured by its state word (table_colour_column). */
void table_init_header(struct table *t, const char *const *cols, size_t n, int skip,
                       int colour_col);
/* Frees every cell; the table is empty again. */
void table_cleanup(struct table *t);
/* Appends a row of ncols cells, taking ownership of each heap string (NULL reads "-"). Control
 * bytes in a cell (a server's text) become spaces: no escape sequence reaches the terminal. */
void table_add_row(struct table *t, char **cells);
/* Appends a row of copies of ncols strings (the header). */
void table_add_strs(struct table *t, const char *const *cells);
/* Lays the table out into out, one line per row, each ending with '\n'. width is the columns
 * the output may use (0: no limit); only the last cell is cut to fit it, without splitting a
 * UTF-8 sequence. Returns 0, or -ENOBUFS when out's cap is reached (the layout is cut). */
int table_render(const struct table *t, size_t width, struct buf *out);
/* Prints the table to stdout, cut to the terminal's width when stdout is one, coloured when
 * table_colour_stdout() says so. */
void table_print(struct table *t);

/* Marks column col (< ncols) as the one coloured by its state or status word. */
void table_colour_column(struct table *t, size_t col);

/* Whether to colour: is_tty (stdout is a terminal), no_color ($NO_COLOR, NULL when unset: any
 * non-empty value turns colour off, as no-color.org says), term ($TERM: "dumb" turns it off).
 * Pure, for the tests. */
bool table_colour_decide(bool is_tty, const char *no_color, const char *term);
/* table_colour_decide for this process's stdout and environment. */
bool table_colour_stdout(void);

/* The SGR sequence that colours a state or status word ("\033[32m" for ready), or NULL for a
 * word shown plain (stopped, cancelled, anything unknown). */
const char *table_state_sgr(const char *word);
#define TABLE_SGR_RESET "\033[0m"

/* A duration as a person reads it: "45s", "3m12s", "2h05m", "3d04h" (negative reads 0s).
 * Caller frees. */
char *table_duration(int64_t s);

#endif
