/*
 * table.c: the CLI's aligned tables. See table.h. It owns the layout rules every listing verb
 * shares, so `arun engines` and `arun runs` line up alike; the cells' contents are the verbs'.
 * Columns are counted as bytes, which is exact for the ASCII the server writes (names, ids,
 * states); a wide character in a reason only shifts what follows it on its own line.
 */
#include "cli/table.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define TABLE_DEFAULT_WIDTH 80       /* a terminal that does not tell its width */
#define TABLE_MAX_OUTPUT (64u << 20) /* far beyond any listing a person reads */
#define ELLIPSIS "..."

void table_init(struct table *t, size_t ncols)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    t->colour_col = -1;
}

void table_cleanup(struct table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    bool colour = t->colour;
    int colour_col = t->colour_col;
    table_init(t, t->ncols);
    t->colour = colour;
    t->colour_col = colour_col;
}

void table_init_header(struct table *t, const char *const *cols, size_t n, int skip, int colour_col)
{
    const char **kept = xcalloc(n, sizeof(*kept));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if ((int)i != skip)
            kept[k++] = cols[i];
    table_init(t, k);
    if (colour_col >= 0)
        table_colour_column(t, (size_t)colour_col);
    table_add_strs(t, kept);
    free(kept);
}

void table_colour_column(struct table *t, size_t col)
{
    ASSERT(col < t->ncols);
    t->colour_col = (int)col;
}

bool table_colour_decide(bool is_tty, const char *no_color, const char *term)
{
    if (!is_tty || (no_color != NULL && no_color[0] != '\0'))
        return false;
    return term == NULL || strcmp(term, "dumb") != 0;
}

bool table_colour_stdout(void)
{
    return table_colour_decide(isatty(STDOUT_FILENO), getenv("NO_COLOR"), getenv("TERM"));
}

const char *table_state_sgr(const char *word)
{
    /* The words of the tables: engine states, run statuses and node states. Green is done and good,
     * yellow is on its way (or paused on the way), red needs a person; stopped and cancelled are
     * states a person chose, shown plain. */
    static const struct {
        const char *word, *sgr;
    } map[] = {
        {"ready", "\033[32m"},    {"completed", "\033[32m"},  {"starting", "\033[33m"},
        {"loading", "\033[33m"},  {"queued", "\033[33m"},     {"in_progress", "\033[33m"},
        {"stopping", "\033[33m"}, {"incomplete", "\033[33m"}, {"unhealthy", "\033[31m"},
        {"failed", "\033[31m"},   {"up", "\033[32m"},         {"down", "\033[31m"},
    };
    for (size_t i = 0; word != NULL && i < ARRAY_SIZE(map); i++)
        if (strcmp(word, map[i].word) == 0)
            return map[i].sgr;
    return NULL;
}

static char **new_row(struct table *t)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->cells = xrealloc(t->cells, t->cap * t->ncols * sizeof(*t->cells));
    }
    return t->cells + t->nrows++ * t->ncols;
}

/* Cells hold what a server sent (names, reasons): a control byte in one could move the cursor,
 * recolour the terminal or end a line, so each becomes a space before the table is laid out. */
static char *clean(char *cell)
{
    for (unsigned char *p = (unsigned char *)cell; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = ' ';
    return cell;
}

void table_add_row(struct table *t, char **cells)
{
    char **row = new_row(t);
    for (size_t c = 0; c < t->ncols; c++)
        row[c] = clean(cells[c] != NULL ? cells[c] : xstrdup("-"));
}

void table_add_strs(struct table *t, const char *const *cells)
{
    char **row = new_row(t);
    for (size_t c = 0; c < t->ncols; c++)
        row[c] = clean(xstrdup(cells[c] != NULL ? cells[c] : "-"));
}

/* The last cell, cut to room columns (0: no limit) without splitting a UTF-8 sequence. */
static void put_last(struct buf *out, const char *s, size_t room, const char *sgr)
{
    size_t n = strlen(s);
    if (sgr != NULL)
        buf_puts(out, sgr);
    if (room == 0 || n <= room) {
        buf_append(out, s, n);
    } else {
        size_t keep = room > strlen(ELLIPSIS) ? room - strlen(ELLIPSIS) : 0;
        while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80)
            keep--;
        buf_append(out, s, keep);
        buf_puts(out, ELLIPSIS);
    }
    if (sgr != NULL)
        buf_puts(out, TABLE_SGR_RESET);
}

/* The colour of cell (r, c): the header row and the other columns are plain. */
static const char *cell_sgr(const struct table *t, size_t r, size_t c)
{
    if (!t->colour || r == 0 || (int)c != t->colour_col)
        return NULL;
    return table_state_sgr(t->cells[r * t->ncols + c]);
}

int table_render(const struct table *t, size_t width, struct buf *out)
{
    size_t *w = xcalloc(t->ncols, sizeof(*w));
    size_t last = t->ncols - 1;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < last; c++) {
            size_t n = strlen(t->cells[r * t->ncols + c]);
            w[c] = n > w[c] ? n : w[c];
        }
    for (size_t r = 0; r < t->nrows; r++) {
        char *const *row = t->cells + r * t->ncols;
        size_t used = 0;
        for (size_t c = 0; c < last; c++) {
            const char *sgr = cell_sgr(t, r, c);
            /* The escape codes take no columns: pad by the plain text. */
            buf_printf(out, "%s%s%s%*s", sgr ? sgr : "", row[c], sgr ? TABLE_SGR_RESET : "",
                       (int)(w[c] - strlen(row[c]) + TABLE_GAP), "");
            used += w[c] + TABLE_GAP;
        }
        put_last(out, row[last],
                 width == 0     ? 0
                 : width > used ? width - used
                                : 1,
                 cell_sgr(t, r, last));
        buf_puts(out, "\n");
    }
    free(w);
    return out->truncated ? -ENOBUFS : 0;
}

/* The terminal's width when stdout is one, else 0 (no limit). */
static size_t terminal_width(void)
{
    struct winsize ws;
    if (!isatty(STDOUT_FILENO))
        return 0;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return TABLE_DEFAULT_WIDTH;
}

void table_print(struct table *t)
{
    struct buf out;
    t->colour = table_colour_stdout();
    buf_init(&out, TABLE_MAX_OUTPUT);
    /* Cut at 64 MiB: what was laid out is printed; nobody reads further on a terminal. */
    table_render(t, terminal_width(), &out);
    fwrite(buf_cstr(&out), 1, out.len, stdout);
    buf_cleanup(&out);
}

char *table_duration(int64_t s)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        return xasprintf("%llds", (long long)s);
    if (s < 3600)
        return xasprintf("%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    if (s < 86400)
        return xasprintf("%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    return xasprintf("%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}
