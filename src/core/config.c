/*
 * config.c: loads arun.yaml (contract section 2) into a struct config. It owns the meaning of
 * every key: its type, its range, its default and the rules that tie keys together (an engine's
 * backend and the keys it needs, runtime.allowed, model names unique across engines, routes and
 * the egress policy). It promises that a config it returns is complete and consistent, and that
 * a config it refuses is described by every problem found (up to MAX_ERRORS), one line each,
 * "FILE:LINE: KEY.PATH: message", in file order. It does not resolve `auto` values (memory,
 * ports, the backend of an engine given both cmd and image at run time), does not split
 * commands into argv and does not touch the network: those belong to the engines layer.
 *
 * DESIGN
 * libyaml composes the whole file into a document (yaml_parser_load), so aliases are already
 * resolved into node references and every node carries its line. The document is then walked
 * against tables of fields, one table per mapping (top level, store, engines.NAME, health, …).
 * A table lists the known keys, so the same table drives the unknown-key check, the "did you
 * mean" suggestion and the conversion of the value. Tables are processed in their own order,
 * not the file's, so that rules needing other keys (engines need runtime.allowed, routes need
 * engines and egress) see them however the file is ordered; errors are sorted by line before
 * they are reported so the person still reads them top to bottom.
 *
 * A struct config under construction is always a valid tree (defaults first, each value
 * replaced as it is read), so every error path ends in one config_free().
 *
 * Untrusted input: everything here comes from a file a person wrote, so nothing asserts on it.
 * Each mapping and list is capped (MAX_ENTRIES), YAML merge keys (`<<`) have a depth and a work
 * budget (an alias may include itself), and user text quoted in messages is cut and stripped
 * of control bytes so one error stays one line.
 */
#include "core/config.h"
#include "core/fileio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define CONFIG_MAX_BYTES (1u << 20) /* a real config is a few KiB; this bounds what load reads */
#define MAX_ERRORS 50               /* enough to fix a file in one pass; beyond it is noise */
#define MAX_ENTRIES 1024       /* per mapping or list; keeps the O(n^2) duplicate checks cheap */
#define MAX_MERGE_DEPTH 8      /* `<<` inside merged mappings; also ends a self-merge */
#define MERGE_BUDGET 4096      /* merged mappings visited per file: stops alias fan-out bombs */
#define MAX_DEPTH 64           /* nesting of lists and mappings; the schema needs 4 */
#define MAX_FIELDS 32          /* the most keys one table has (engines.NAME has 22) */
#define ENGINE_NAME_MAX 64     /* engine names become file names (logs/NAME.log) and URLs */
#define MODEL_NAME_MAX 256     /* model names are ids like "Qwen/Qwen2.5-7B-Instruct" */
#define SNIP_MAX 60            /* the most bytes of a user's value quoted in a message */
#define SUGGEST_MAX_DISTANCE 2 /* typos: one or two letters wrong, missing or swapped */

/* Ranges (inclusive). Limits are generous; they exist to catch a slipped digit or unit. */
#define MAX_MIB (1ll << 30)          /* 1 PiB in MiB: more than any node has */
#define MAX_BODY_MIN 1024            /* a chat request does not fit in less */
#define MAX_BODY_MAX (1ll << 30)     /* 1 GiB: bodies are held in memory */
#define MAX_CONNECTIONS_MAX 10000000 /* far above what one process's fd limit allows */
#define DAY_MS 86400000ll
#define WEEK_S 604800ll
#define YEAR_S 31536000ll

/* ---- errors ------------------------------------------------------------------------------ */

struct cerr {
    int line;     /* 1-based; 0 sorts first (file-level problems) */
    unsigned seq; /* order found, to keep the sort stable */
    char *text;   /* the whole line, without newline */
};

struct ctx {
    const char *file; /* the name errors are reported under */
    yaml_document_t *doc;
    struct config *cfg;
    struct cerr errs[MAX_ERRORS];
    unsigned nerrs;        /* stored in errs */
    unsigned dropped;      /* found beyond MAX_ERRORS */
    unsigned merge_budget; /* merged mappings still allowed */
    bool merge_budget_reported;
};

/* Replaces control bytes so that a message stays one line whatever the file holds. */
static void one_line(char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
    }
}

static void push_err(struct ctx *c, int line, char *text)
{
    if (c->nerrs == MAX_ERRORS) {
        c->dropped++;
        free(text);
        return;
    }
    one_line(text);
    c->errs[c->nerrs] = (struct cerr){.line = line, .seq = c->nerrs, .text = text};
    c->nerrs++;
}

static int node_line(const yaml_node_t *n)
{
    return n != NULL ? (int)n->start_mark.line + 1 : 0;
}

/* Records "FILE:LINE: PATH: message" with the line of node n. */
PRINTF_LIKE(4, 5)
static void err_at(struct ctx *c, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = node_line(n);
    push_err(c, line,
             xasprintf("%s:%d: %s: %s", c->file, line, path[0] ? path : "(top level)", msg));
}

static int cerr_cmp(const void *a, const void *b)
{
    const struct cerr *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts the errors into file order, appends them to out (which may be NULL) and frees them. */
static void flush_errors(struct ctx *c, struct buf *out)
{
    qsort(c->errs, c->nerrs, sizeof c->errs[0], cerr_cmp);
    for (unsigned i = 0; i < c->nerrs; i++) {
        /* A full buffer drops the rest: the caller chose its cap, and the first lines matter. */
        if (out != NULL)
            IGNORE_RESULT(buf_printf(out, "%s\n", c->errs[i].text));
        free(c->errs[i].text);
    }
    if (c->dropped > 0 && out != NULL)
        IGNORE_RESULT(buf_printf(out, "%s: %u more errors not shown\n", c->file, c->dropped));
    c->nerrs = 0;
}

/* Copies at most SNIP_MAX bytes of s into out, quoted, with "..." when cut (never mid-UTF-8). */
static const char *snip(const char *s, char out[static SNIP_MAX + 8])
{
    size_t n = strlen(s);
    bool cut = n > SNIP_MAX;
    if (cut) {
        n = SNIP_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    snprintf(out, SNIP_MAX + 8, "\"%.*s%s\"", (int)n, s, cut ? "..." : "");
    return out;
}

/* ---- nodes ------------------------------------------------------------------------------- */

static yaml_node_t *node_get(const struct ctx *c, int id)
{
    return yaml_document_get_node(c->doc, id);
}

static bool is_scalar(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE;
}

static const char *text_of(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* YAML's null: an empty plain value, ~ or null. A key given null takes its default. */
static bool is_null(const yaml_node_t *n)
{
    if (!is_scalar(n) || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = text_of(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* What a node is, for "got …": the quoted value of a scalar, else its kind. */
static const char *describe(const yaml_node_t *n, char out[static SNIP_MAX + 8])
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (is_null(n))
        return "nothing";
    return snip(text_of(n), out);
}

/* The text of a string value. Any scalar counts (a number is taken as its text); a mapping, a
 * list or a NUL byte is an error. Returns NULL after recording the error. */
static const char *get_text(struct ctx *c, const yaml_node_t *n, const char *path)
{
    char d[SNIP_MAX + 8];

    if (!is_scalar(n)) {
        err_at(c, n, path, "expected a string, got %s", describe(n, d));
        return NULL;
    }
    if (strlen(text_of(n)) != n->data.scalar.length) {
        err_at(c, n, path, "contains a NUL byte");
        return NULL;
    }
    return text_of(n);
}

static char *child_path(const char *path, const char *key)
{
    return path[0] == '\0' ? xstrdup(key) : xasprintf("%s.%s", path, key);
}

/* ---- mappings: entries, duplicates, merge keys ------------------------------------------- */

struct entry {
    yaml_node_t *key;
    yaml_node_t *val;
    const char *name; /* the key's text, owned by the document */
};

struct entries {
    struct entry v[MAX_ENTRIES];
    size_t n;
    bool full; /* the cap was hit and reported */
};

static const struct entry *find_entry(const struct entries *es, const char *name)
{
    for (size_t i = 0; i < es->n; i++) {
        if (strcmp(es->v[i].name, name) == 0)
            return &es->v[i];
    }
    return NULL;
}

static bool is_merge_key(const yaml_node_t *k)
{
    return is_scalar(k) && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           strcmp(text_of(k), "<<") == 0;
}

static bool push_entry(struct ctx *c, struct entries *es, yaml_node_t *k, yaml_node_t *v,
                       const char *path)
{
    if (es->n == MAX_ENTRIES) {
        if (!es->full)
            err_at(c, k, path, "more than %d entries", MAX_ENTRIES);
        es->full = true;
        return false;
    }
    es->v[es->n++] = (struct entry){.key = k, .val = v, .name = text_of(k)};
    return true;
}

static void merge_value(struct ctx *c, yaml_node_t *v, const char *path, int depth,
                        struct entries *es);

/* Adds the keys of a merged mapping that are not there yet: keys written in the mapping itself
 * win over merged ones, and earlier merges win over later ones (YAML's merge key rules). */
static void merge_map(struct ctx *c, yaml_node_t *m, const char *path, int depth,
                      struct entries *es)
{
    if (c->merge_budget == 0) {
        if (!c->merge_budget_reported)
            err_at(c, m, path, "too many merges (<<); at most %d", MERGE_BUDGET);
        c->merge_budget_reported = true;
        return;
    }
    c->merge_budget--;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_get(c, p->key);
        if (is_merge_key(k) || !is_scalar(k) || strlen(text_of(k)) != k->data.scalar.length)
            continue; /* the mapping's own problems are reported where it is written */
        if (find_entry(es, text_of(k)) == NULL &&
            !push_entry(c, es, k, node_get(c, p->value), path))
            return;
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        if (is_merge_key(node_get(c, p->key)))
            merge_value(c, node_get(c, p->value), path, depth + 1, es);
    }
}

static void merge_value(struct ctx *c, yaml_node_t *v, const char *path, int depth,
                        struct entries *es)
{
    if (depth > MAX_MERGE_DEPTH) {
        err_at(c, v, path, "merges (<<) nested more than %d deep", MAX_MERGE_DEPTH);
        return;
    }
    if (v->type == YAML_MAPPING_NODE) {
        merge_map(c, v, path, depth, es);
        return;
    }
    if (v->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top;
             i++) {
            yaml_node_t *m = node_get(c, *i);
            if (m->type == YAML_MAPPING_NODE)
                merge_map(c, m, path, depth, es);
            else
                err_at(c, m, path, "<< (merge) takes a mapping or a list of mappings");
        }
        return;
    }
    err_at(c, v, path, "<< (merge) takes a mapping or a list of mappings");
}

/* The entries of mapping m in file order, each key once: a key written twice is an error, and
 * merge keys are expanded. Keys that are not plain strings are errors and skipped. */
static void collect_entries(struct ctx *c, yaml_node_t *m, const char *path, struct entries *es)
{
    char d[SNIP_MAX + 8];

    es->n = 0;
    es->full = false;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_get(c, p->key);
        if (is_merge_key(k))
            continue;
        if (!is_scalar(k) || is_null(k)) {
            err_at(c, k, path, "keys must be strings, got %s", describe(k, d));
            continue;
        }
        if (get_text(c, k, path) == NULL)
            continue;
        const struct entry *first = find_entry(es, text_of(k));
        if (first != NULL) {
            char *kp = child_path(path, text_of(k));
            err_at(c, k, kp, "duplicate key (first at line %d)", node_line(first->key));
            free(kp);
            continue;
        }
        if (!push_entry(c, es, k, node_get(c, p->value), path))
            return;
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        if (is_merge_key(node_get(c, p->key)))
            merge_value(c, node_get(c, p->value), path, 1, es);
    }
}

/* ---- suggestions ------------------------------------------------------------------------- */

/* Optimal string alignment distance (Levenshtein plus swapped neighbours: "prot" -> "port" is
 * one typo, not two). Strings longer than 63 bytes are never "close". */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t d[64][64];

    if (la >= 64 || lb >= 64)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t best = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* Keeps the closest candidate within SUGGEST_MAX_DISTANCE; call for each candidate. */
struct suggest {
    const char *word;
    const char *best;
    size_t dist;
};

static void suggest_try(struct suggest *s, const char *candidate)
{
    size_t dist = edit_distance(s->word, candidate);
    size_t lw = strlen(s->word), lc = strlen(candidate);

    /* A key cut short or given a suffix ("vram" for "vram_mb") is as likely as a typo. */
    if (dist > SUGGEST_MAX_DISTANCE && lw >= 3 && lc >= 3 &&
        strncmp(s->word, candidate, lw < lc ? lw : lc) == 0)
        dist = SUGGEST_MAX_DISTANCE;
    if (dist <= SUGGEST_MAX_DISTANCE && (s->best == NULL || dist < s->dist)) {
        s->best = candidate;
        s->dist = dist;
    }
}

/* ---- fields ------------------------------------------------------------------------------ */

struct word {
    const char *name;
    int value;
};

struct field;
typedef void field_fn(struct ctx *c, yaml_node_t *v, const char *path, void *base);
/* An F_FUNC key's value in config_to_json, read from the base struct. Returns a new reference. */
typedef json_t *field_json_fn(const void *base);
/* Returns NULL when s is acceptable, else what is wrong, as a phrase. */
typedef const char *check_fn(const char *s);

enum field_kind {
    F_STR,  /* char *, non-empty unless FL_EMPTY_OK, optionally checked */
    F_INT,  /* int */
    F_U32,  /* uint32_t */
    F_U64,  /* uint64_t */
    F_I64,  /* int64_t */
    F_ENUM, /* an enum (int-sized), one of words */
    F_MAP,  /* a nested mapping whose fields share the same base struct */
    F_FUNC, /* anything else: fn does it all */
};

#define FL_AUTO 1u /* integer that also accepts `auto` (stored as CONFIG_AUTO) */

struct field {
    const char *key;
    enum field_kind kind;
    size_t off;       /* offset in the base struct (F_STR, integers, F_ENUM) */
    int64_t min, max; /* integers: the accepted range */
    unsigned flags;
    const struct word *words; /* F_ENUM: the accepted words, ended by {NULL} */
    const struct field *sub;  /* F_MAP: the nested table, ended by {NULL} */
    field_fn *fn;             /* F_FUNC */
    field_json_fn *to_json;   /* F_FUNC: what config_to_json writes (every other kind: itself) */
    int64_t dflt;             /* integers and F_ENUM: the value when the key is absent */
    const char *dflt_str;     /* F_STR: the value when the key is absent (NULL: unset) */
    check_fn *check;          /* F_STR: optional extra check */
};

_Static_assert(sizeof(enum config_backend) == sizeof(int), "F_ENUM writes enums as int");
_Static_assert(sizeof(enum log_level) == sizeof(int), "F_ENUM writes enums as int");

static void parse_fields(struct ctx *c, yaml_node_t *m, const char *path,
                         const struct field *fields, void *base, yaml_node_t **vals);

static const char *word_name(const struct word *w, int value)
{
    for (; w->name != NULL; w++) {
        if (w->value == value)
            return w->name;
    }
    return "?";
}

/* "a, b, c" into out. */
static void list_words(const struct word *w, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (; w->name != NULL && used < size; w++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", used ? ", " : "", w->name);
}

static void set_str(struct ctx *c, const struct field *f, yaml_node_t *v, const char *path,
                    char **dst)
{
    const char *s = get_text(c, v, path);
    if (s == NULL)
        return;
    const char *why = s[0] == '\0' ? "must not be empty" : f->check ? f->check(s) : NULL;
    if (why != NULL) {
        char d[SNIP_MAX + 8];
        err_at(c, v, path, "%s, got %s", why, snip(s, d));
        return;
    }
    free(*dst);
    *dst = xstrdup(s);
}

/* A decimal integer: an optional '-', digits and nothing else. Returns 0, -EINVAL or -ERANGE. */
static int parse_i64(const char *s, int64_t *out)
{
    bool neg = *s == '-';
    uint64_t v = 0;

    if (neg)
        s++;
    if (*s == '\0')
        return -EINVAL;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        unsigned digit = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return -ERANGE;
        v = v * 10 + digit;
    }
    if (v > INT64_MAX)
        return -ERANGE;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

static void set_int(struct ctx *c, const struct field *f, yaml_node_t *v, const char *path,
                    void *dst)
{
    char d[SNIP_MAX + 8];
    int64_t x = 0;
    bool ok;

    if (is_scalar(v) && (f->flags & FL_AUTO) && strcmp(text_of(v), "auto") == 0) {
        x = CONFIG_AUTO;
        ok = true;
    } else {
        ok = is_scalar(v) && strlen(text_of(v)) == v->data.scalar.length &&
             parse_i64(text_of(v), &x) == 0 && x >= f->min && x <= f->max;
    }
    if (!ok) {
        err_at(c, v, path, "expected an integer %lld-%lld%s, got %s", (long long)f->min,
               (long long)f->max, (f->flags & FL_AUTO) ? " or auto" : "", describe(v, d));
        return;
    }
    switch (f->kind) {
    case F_INT:
        *(int *)dst = (int)x;
        break;
    case F_U32:
        *(uint32_t *)dst = (uint32_t)x;
        break;
    case F_U64:
        *(uint64_t *)dst = (uint64_t)x;
        break;
    default:
        *(int64_t *)dst = x;
        break;
    }
}

/* Looks value s up in words. Returns 0 and the value, or -EINVAL after recording an error that
 * lists the accepted words. */
static int get_word(struct ctx *c, const struct word *words, yaml_node_t *v, const char *path,
                    int *out)
{
    char d[SNIP_MAX + 8], list[256];

    if (is_scalar(v)) {
        for (const struct word *w = words; w->name != NULL; w++) {
            if (strcmp(text_of(v), w->name) == 0) {
                *out = w->value;
                return 0;
            }
        }
    }
    list_words(words, list, sizeof list);
    err_at(c, v, path, "expected one of %s; got %s", list, describe(v, d));
    return -EINVAL;
}

static void set_field(struct ctx *c, const struct field *f, yaml_node_t *v, const char *path,
                      void *base)
{
    char d[SNIP_MAX + 8];
    void *dst = (char *)base + f->off;

    switch (f->kind) {
    case F_STR:
        set_str(c, f, v, path, dst);
        break;
    case F_INT:
    case F_U32:
    case F_U64:
    case F_I64:
        set_int(c, f, v, path, dst);
        break;
    case F_ENUM: {
        int value = 0;
        if (get_word(c, f->words, v, path, &value) == 0)
            *(int *)dst = value;
        break;
    }
    case F_MAP:
        if (v->type == YAML_MAPPING_NODE)
            parse_fields(c, v, path, f->sub, base, NULL);
        else
            err_at(c, v, path, "expected a mapping (key: value, …), got %s", describe(v, d));
        break;
    case F_FUNC:
        f->fn(c, v, path, base);
        break;
    }
}

static void unknown_key(struct ctx *c, const struct entry *e, const char *path,
                        const struct field *fields)
{
    struct suggest s = {.word = e->name};
    char known[512];
    size_t used = 0;
    char *kp = child_path(path, e->name);

    known[0] = '\0';
    for (const struct field *f = fields; f->key != NULL; f++) {
        suggest_try(&s, f->key);
        if (used < sizeof known)
            used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "",
                                     f->key);
    }
    if (s.best != NULL)
        err_at(c, e->key, kp, "unknown key (did you mean %s?)", s.best);
    else
        err_at(c, e->key, kp, "unknown key (known here: %s)", known);
    free(kp);
}

/* Reads mapping m against a table: unknown keys are errors, known ones are converted in the
 * table's order (null values keep their defaults). vals, when not NULL, receives the value node
 * of each field by table index (NULL when absent) for rules that look at several keys. */
static void parse_fields(struct ctx *c, yaml_node_t *m, const char *path,
                         const struct field *fields, void *base, yaml_node_t **vals)
{
    struct entries *es = xmalloc(sizeof *es);
    yaml_node_t *local[MAX_FIELDS];
    size_t nfields = 0;

    while (fields[nfields].key != NULL)
        nfields++;
    ASSERT(nfields <= MAX_FIELDS);
    if (vals == NULL)
        vals = local;
    memset(vals, 0, nfields * sizeof vals[0]);

    collect_entries(c, m, path, es);
    for (size_t i = 0; i < es->n; i++) {
        size_t f = 0;
        while (f < nfields && strcmp(fields[f].key, es->v[i].name) != 0)
            f++;
        if (f == nfields)
            unknown_key(c, &es->v[i], path, fields);
        else
            vals[f] = es->v[i].val;
    }
    free(es);

    for (size_t f = 0; f < nfields; f++) {
        if (vals[f] == NULL || is_null(vals[f]))
            continue;
        char *kp = child_path(path, fields[f].key);
        set_field(c, &fields[f], vals[f], kp, base);
        free(kp);
    }
}

static yaml_node_t *field_val(const struct field *fields, yaml_node_t **vals, const char *key)
{
    for (size_t i = 0; fields[i].key != NULL; i++) {
        if (strcmp(fields[i].key, key) == 0)
            return vals[i] != NULL && !is_null(vals[i]) ? vals[i] : NULL;
    }
    return NULL;
}

/* ---- JSON: config_to_json walks the same tables ----------------------------------------- */

static json_t *str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static json_t *int_or_auto(int64_t v)
{
    return v == CONFIG_AUTO ? json_string("auto") : json_integer(v);
}

static json_t *strings_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

/* One field's value as config_to_json writes it: strings (null when unset), integers ("auto"
 * for CONFIG_AUTO where the key accepts it), enum words, nested tables, and F_FUNC keys through
 * their to_json. The tables that parse the file write it too, so a key is added in one place. */
static json_t *fields_json(const struct field *fields, const void *base);

static json_t *field_json(const struct field *f, const void *base)
{
    const char *p = (const char *)base + f->off;
    switch (f->kind) {
    case F_STR:
        return str_or_null(*(char *const *)p);
    case F_INT:
        return (f->flags & FL_AUTO) ? int_or_auto(*(const int *)p) : json_integer(*(const int *)p);
    case F_U32:
        return json_integer(*(const uint32_t *)p);
    case F_U64:
        return json_integer((json_int_t) * (const uint64_t *)p);
    case F_I64:
        return (f->flags & FL_AUTO) ? int_or_auto(*(const int64_t *)p)
                                    : json_integer(*(const int64_t *)p);
    case F_ENUM:
        return json_string(word_name(f->words, *(const int *)p));
    case F_MAP:
        return fields_json(f->sub, base);
    case F_FUNC:
        break;
    }
    ASSERT(f->to_json != NULL); /* every F_FUNC key says how it is written */
    return f->to_json(base);
}

static json_t *fields_json(const struct field *fields, const void *base)
{
    json_t *o = json_object();
    for (const struct field *f = fields; f->key != NULL; f++)
        json_object_set_new(o, f->key, field_json(f, base));
    return o;
}

/* ---- defaults: the same tables say what an absent key means ------------------------------ */

/* Sets every key of fields in base (zeroed by the caller) to its default: .dflt, .dflt_str, and
 * nested tables in turn. F_FUNC keys default to zero (empty lists, no env) unless their owner
 * sets more (listen and runtime.allowed: config_default). */
static void fields_defaults(const struct field *fields, void *base)
{
    for (const struct field *f = fields; f->key != NULL; f++) {
        char *p = (char *)base + f->off;
        switch (f->kind) {
        case F_STR:
            *(char **)p = f->dflt_str != NULL ? xstrdup(f->dflt_str) : NULL;
            break;
        case F_INT:
        case F_ENUM:
            *(int *)p = (int)f->dflt;
            break;
        case F_U32:
            *(uint32_t *)p = (uint32_t)f->dflt;
            break;
        case F_U64:
            *(uint64_t *)p = (uint64_t)f->dflt;
            break;
        case F_I64:
            *(int64_t *)p = f->dflt;
            break;
        case F_MAP:
            fields_defaults(f->sub, base);
            break;
        case F_FUNC:
            break;
        }
    }
}

/* ---- checks on strings ------------------------------------------------------------------- */

static bool has_space_or_control(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 0x20 || ch == 0x7f)
            return true;
    }
    return false;
}

static const char *check_url(const char *s)
{
    size_t n = strncmp(s, "https://", 8) == 0 ? 8 : strncmp(s, "http://", 7) == 0 ? 7 : 0;
    if (n == 0 || s[n] == '\0' || s[n] == '/' || has_space_or_control(s))
        return "expected an http:// or https:// URL";
    return NULL;
}

static const char *check_store_url(const char *s)
{
    if (strcmp(s, "sqlite") == 0)
        return NULL;
    size_t n = strncmp(s, "postgres://", 11) == 0     ? 11
               : strncmp(s, "postgresql://", 13) == 0 ? 13
                                                      : 0;
    if (n == 0 || s[n] == '\0' || has_space_or_control(s))
        return "expected sqlite or a postgres:// (postgresql://) URL";
    return NULL;
}

static const char *check_env_name(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)";
    for (s++; *s != '\0'; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)";
    }
    return NULL;
}

static const char *check_http_path(const char *s)
{
    if (s[0] != '/' || has_space_or_control(s))
        return "expected a path starting with /";
    return NULL;
}

/* Commands are split like a shell (the engines layer does it), never run by one; an unbalanced
 * quote would split into nonsense there, so it is caught here with the line. */
static const char *check_cmd(const char *s)
{
    char quote = 0;
    for (; *s != '\0'; s++) {
        if (quote == '\'') {
            if (*s == '\'')
                quote = 0;
        } else if (*s == '\\') {
            if (s[1] == '\0')
                return "ends with a lone backslash";
            s++;
        } else if (quote == '"') {
            if (*s == '"')
                quote = 0;
        } else if (*s == '\'' || *s == '"') {
            quote = *s;
        }
    }
    return quote ? "has an unterminated quote" : NULL;
}

static const char *check_engine_name(const char *s)
{
    static const char rule[] = "engine names match [a-z0-9][a-z0-9._-]* (at most 64 characters)";
    size_t n = strlen(s);

    if (n == 0 || n > ENGINE_NAME_MAX)
        return rule;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                  (i > 0 && (ch == '.' || ch == '_' || ch == '-'));
        if (!ok)
            return rule;
    }
    return NULL;
}

static const char *check_model_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MODEL_NAME_MAX || has_space_or_control(s))
        return "model names are 1-256 characters without spaces";
    return NULL;
}

/* ---- listen ------------------------------------------------------------------------------ */

static bool valid_hostname(const char *h, size_t n)
{
    size_t label = 0;

    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if (ch == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || (ch == '-' && label > 0);
        if (!ok || ++label > 63)
            return false;
    }
    return h[n - 1] != '-';
}

/* Is h[0..n) an IPv4 address (dotted quad) or, with v6, an IPv6 one? */
static bool valid_address(const char *h, size_t n, bool v6)
{
    char tmp[INET6_ADDRSTRLEN];
    unsigned char addr[sizeof(struct in6_addr)];

    if (n == 0 || n >= sizeof tmp)
        return false;
    memcpy(tmp, h, n);
    tmp[n] = '\0';
    return inet_pton(v6 ? AF_INET6 : AF_INET, tmp, addr) == 1;
}

static bool looks_numeric(const char *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((h[i] >= '0' && h[i] <= '9') || h[i] == '.'))
            return false;
    }
    return true;
}

/* config_parse_listen with the reason for a refusal, as a phrase for the error line. */
static int split_listen(const char *s, char **host_out, uint16_t *port_out, const char **why,
                        int64_t min_port)
{
    const char *h = s, *colon;
    size_t hlen;
    int64_t port;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        h = s + 1;
        hlen = close != NULL ? (size_t)(close - h) : 0;
        if (close == NULL || !valid_address(h, hlen, true)) {
            *why = "expected [IPv6]:PORT with a valid IPv6 address";
            return -EINVAL;
        }
        colon = close + 1;
        if (*colon != ':') {
            *why = "expected :PORT after the ]";
            return -EINVAL;
        }
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            *why = "expected HOST:PORT, with a port";
            return -EINVAL;
        }
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen) != NULL) {
            *why = "an IPv6 address needs brackets, e.g. \"[::1]:8080\"";
            return -EINVAL;
        }
        if (hlen == 0) {
            *why = "expected a host before :PORT (0.0.0.0 means every interface)";
            return -EINVAL;
        }
        bool ok = looks_numeric(h, hlen) ? valid_address(h, hlen, false) : valid_hostname(h, hlen);
        if (!ok) {
            *why = "expected an IPv4 address or a host name before :PORT";
            return -EINVAL;
        }
    }
    if (parse_i64(colon + 1, &port) != 0 || port < min_port || port > 65535) {
        *why = "the port must be an integer 1-65535";
        return -EINVAL;
    }
    *host_out = xstrndup(h, hlen);
    *port_out = (uint16_t)port;
    return 0;
}

int config_parse_listen(const char *s, char **host_out, uint16_t *port_out)
{
    const char *why;
    return split_listen(s, host_out, port_out, &why, 0);
}

static json_t *listen_json(const void *base)
{
    const struct config *cfg = base;
    bool v6 = strchr(cfg->listen_host, ':') != NULL;
    char *listen = xasprintf(v6 ? "[%s]:%u" : "%s:%u", cfg->listen_host, cfg->listen_port);
    json_t *j = json_string(listen);
    free(listen);
    return j;
}

static void parse_listen_node(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config *cfg = base;
    const char *why, *s;
    char *host;
    uint16_t port;
    char d[SNIP_MAX + 8];

    if (v->type == YAML_SEQUENCE_NODE) {
        /* Unquoted [::1]:8080 reads as a YAML list; say how to write it. */
        err_at(c, v, path, "expected HOST:PORT, got a list (quote IPv6 addresses: \"[::1]:8080\")");
        return;
    }
    s = get_text(c, v, path);
    if (s == NULL)
        return;
    if (split_listen(s, &host, &port, &why, 1) != 0) {
        err_at(c, v, path, "%s, got %s", why, snip(s, d));
        return;
    }
    free(cfg->listen_host);
    cfg->listen_host = host;
    cfg->listen_port = port;
}

/* ---- lists ------------------------------------------------------------------------------- */

/* Checks that v is a list of at most MAX_ENTRIES items; records an error otherwise. */
static bool is_list(struct ctx *c, yaml_node_t *v, const char *path, const char *what)
{
    char d[SNIP_MAX + 8];
    if (v->type != YAML_SEQUENCE_NODE) {
        err_at(c, v, path, "expected a list of %s, e.g. [a, b], got %s", what, describe(v, d));
        return false;
    }
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n > MAX_ENTRIES) {
        err_at(c, v, path, "more than %d entries", MAX_ENTRIES);
        return false;
    }
    return true;
}

static size_t list_len(const yaml_node_t *v)
{
    return (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
}

static char *item_path(const char *path, size_t i)
{
    return xasprintf("%s[%zu]", path, i);
}

static const struct word allowed_words[] = {
    {"native", CONFIG_BACKEND_NATIVE},
    {"container", CONFIG_BACKEND_CONTAINER},
    {"remote", CONFIG_BACKEND_REMOTE},
    {NULL, 0},
};

static json_t *allowed_json(const void *base)
{
    const struct config *cfg = base;
    json_t *allowed = json_array();
    for (const struct word *w = allowed_words; w->name != NULL; w++) {
        if (cfg->runtime.allowed & (1u << w->value))
            json_array_append_new(allowed, json_string(w->name));
    }
    return allowed;
}

static void parse_allowed(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config *cfg = base;
    unsigned bits = 0;

    if (!is_list(c, v, path, "backends"))
        return;
    if (list_len(v) == 0) {
        err_at(c, v, path, "must allow at least one of native, container, remote");
        return;
    }
    for (size_t i = 0; i < list_len(v); i++) {
        yaml_node_t *item = node_get(c, v->data.sequence.items.start[i]);
        char *ip = item_path(path, i);
        int b = 0;
        if (get_word(c, allowed_words, item, ip, &b) == 0) {
            if (bits & (1u << b))
                err_at(c, item, ip, "%s is listed twice", text_of(item));
            bits |= 1u << b;
        }
        free(ip);
    }
    if (bits != 0)
        cfg->runtime.allowed = bits;
}

/* Reads a list of strings into a fresh array. Items failing check (when given) are errors;
 * empty items are allowed only with empty_ok. Returns the array (NULL when v is no list). */
static char **string_list(struct ctx *c, yaml_node_t *v, const char *path, const char *what,
                          bool empty_ok, check_fn *check, size_t *n_out)
{
    char d[SNIP_MAX + 8];

    *n_out = 0;
    if (!is_list(c, v, path, what))
        return NULL;
    char **out = xcalloc(list_len(v), sizeof *out);
    for (size_t i = 0; i < list_len(v); i++) {
        yaml_node_t *item = node_get(c, v->data.sequence.items.start[i]);
        char *ip = item_path(path, i);
        const char *s = get_text(c, item, ip);
        const char *why = s == NULL                   ? NULL
                          : s[0] == '\0' && !empty_ok ? "must not be empty"
                          : check != NULL             ? check(s)
                                                      : NULL;
        if (why != NULL)
            err_at(c, item, ip, "%s, got %s", why, snip(s, d));
        else if (s != NULL)
            out[(*n_out)++] = xstrdup(s);
        free(ip);
    }
    return out;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- engines ----------------------------------------------------------------------------- */

#define ENG(member) offsetof(struct config_engine, member)

static const struct word backend_words[] = {
    {"auto", CONFIG_BACKEND_AUTO},
    {"native", CONFIG_BACKEND_NATIVE},
    {"container", CONFIG_BACKEND_CONTAINER},
    {"remote", CONFIG_BACKEND_REMOTE},
    {NULL, 0},
};
static const struct word probe_words[] = {
    {"http", CONFIG_PROBE_HTTP},
    {"completion", CONFIG_PROBE_COMPLETION},
    {NULL, 0},
};
static const struct word start_words[] = {
    {"on-demand", CONFIG_START_ON_DEMAND},
    {"always", CONFIG_START_ALWAYS},
    {"manual", CONFIG_START_MANUAL},
    {NULL, 0},
};
static const struct word restart_words[] = {
    {"never", CONFIG_RESTART_NEVER},
    {"on-failure", CONFIG_RESTART_ON_FAILURE},
    {"always", CONFIG_RESTART_ALWAYS},
    {NULL, 0},
};
static const struct word continuation_words[] = {
    {"none", CONFIG_CONT_NONE},
    {"chat-prefix", CONFIG_CONT_CHAT_PREFIX},
    {NULL, 0},
};

static json_t *args_json(const void *base)
{
    const struct config_engine *e = base;
    return strings_json(e->args, e->nargs);
}

static json_t *models_json(const void *base)
{
    const struct config_engine *e = base;
    return strings_json(e->models, e->nmodels);
}

static json_t *env_json(const void *base)
{
    const struct config_engine *e = base;
    json_t *env = json_object();
    for (size_t i = 0; i < e->nenv; i++)
        json_object_set_new(env, e->env[i].key, json_string(e->env[i].value));
    return env;
}

static void parse_args(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config_engine *e = base;
    char **args = string_list(c, v, path, "strings", true, NULL, &e->nargs);
    e->args = args;
}

static void parse_models(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config_engine *e = base;

    e->models = string_list(c, v, path, "model names", false, check_model_name, &e->nmodels);
    if (e->models == NULL)
        return;
    if (list_len(v) == 0)
        err_at(c, v, path,
               "needs at least one model name (leave models out to use the engine "
               "name)");
    for (size_t i = 0; i < e->nmodels; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(e->models[i], e->models[j]) == 0)
                err_at(c, v, path, "model '%s' is listed twice", e->models[i]);
        }
    }
}

static void parse_env(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config_engine *e = base;
    char d[SNIP_MAX + 8];

    if (v->type != YAML_MAPPING_NODE) {
        err_at(c, v, path, "expected a mapping of NAME: value, got %s", describe(v, d));
        return;
    }
    struct entries *es = xmalloc(sizeof *es);
    collect_entries(c, v, path, es);
    e->env = xcalloc(es->n, sizeof *e->env);
    for (size_t i = 0; i < es->n; i++) {
        char *kp = child_path(path, es->v[i].name);
        const char *why = check_env_name(es->v[i].name);
        const char *val = NULL;
        if (why != NULL)
            err_at(c, es->v[i].key, kp, "%s", why);
        else if (is_null(es->v[i].val))
            err_at(c, es->v[i].val, kp, "expected a string value (write \"\" for an empty one)");
        else
            val = get_text(c, es->v[i].val, kp);
        if (val != NULL) {
            e->env[e->nenv++] =
                (struct config_kv){.key = xstrdup(es->v[i].name), .value = xstrdup(val)};
        }
        free(kp);
    }
    free(es);
}

static const struct field health_fields[] = {
    {.key = "path",
     .kind = F_STR,
     .off = ENG(health.path),
     .check = check_http_path,
     .dflt_str = "/health"},
    {.key = "cmd", .kind = F_STR, .off = ENG(health.cmd), .check = check_cmd},
    {.key = "probe",
     .kind = F_ENUM,
     .off = ENG(health.probe),
     .words = probe_words,
     .dflt = CONFIG_PROBE_HTTP},
    {.key = "interval_ms",
     .kind = F_U32,
     .off = ENG(health.interval_ms),
     .min = 1,
     .max = DAY_MS,
     .dflt = 1000},
    {.key = "timeout_ms",
     .kind = F_U32,
     .off = ENG(health.timeout_ms),
     .min = 1,
     .max = DAY_MS,
     .dflt = 2000},
    {.key = "failures",
     .kind = F_U32,
     .off = ENG(health.failures),
     .min = 1,
     .max = 1000,
     .dflt = 3},
    {.key = "stall_timeout_s",
     .kind = F_U32,
     .off = ENG(health.stall_timeout_s),
     .min = 1,
     .max = WEEK_S,
     .dflt = 120},
    {.key = "start_timeout_s",
     .kind = F_U32,
     .off = ENG(health.start_timeout_s),
     .min = 1,
     .max = WEEK_S,
     .dflt = 3600},
    {.key = NULL},
};

static const struct field memory_fields[] = {
    {.key = "ram_mb", .kind = F_U64, .off = ENG(memory.ram_mb), .min = 0, .max = MAX_MIB},
    {.key = "vram_mb", .kind = F_U64, .off = ENG(memory.vram_mb), .min = 0, .max = MAX_MIB},
    {.key = NULL},
};

static const struct field restart_fields[] = {
    {.key = "policy",
     .kind = F_ENUM,
     .off = ENG(restart.policy),
     .words = restart_words,
     .dflt = CONFIG_RESTART_ON_FAILURE},
    {.key = "max", .kind = F_U32, .off = ENG(restart.max), .min = 0, .max = 1000000, .dflt = 5},
    {.key = "backoff_ms",
     .kind = F_U32,
     .off = ENG(restart.backoff_ms),
     .min = 1,
     .max = 3600000,
     .dflt = 1000},
    {.key = NULL},
};

static const struct field engine_fields[] = {
    {.key = "backend",
     .kind = F_ENUM,
     .off = ENG(backend),
     .words = backend_words,
     .dflt = CONFIG_BACKEND_AUTO},
    {.key = "cmd", .kind = F_STR, .off = ENG(cmd), .check = check_cmd},
    {.key = "image", .kind = F_STR, .off = ENG(image)},
    {.key = "args", .kind = F_FUNC, .fn = parse_args, .to_json = args_json},
    {.key = "url", .kind = F_STR, .off = ENG(url), .check = check_url},
    {.key = "api_key_env", .kind = F_STR, .off = ENG(api_key_env), .check = check_env_name},
    {.key = "port",
     .kind = F_INT,
     .off = ENG(port),
     .min = 1,
     .max = 65535,
     .flags = FL_AUTO,
     .dflt = CONFIG_AUTO},
    {.key = "env", .kind = F_FUNC, .fn = parse_env, .to_json = env_json},
    {.key = "cwd", .kind = F_STR, .off = ENG(cwd)},
    {.key = "models", .kind = F_FUNC, .fn = parse_models, .to_json = models_json},
    {.key = "health", .kind = F_MAP, .sub = health_fields},
    {.key = "memory", .kind = F_MAP, .sub = memory_fields},
    {.key = "max_concurrency",
     .kind = F_U32,
     .off = ENG(max_concurrency),
     .min = 1,
     .max = 100000,
     .dflt = 4},
    {.key = "queue_limit",
     .kind = F_U32,
     .off = ENG(queue_limit),
     .min = 0,
     .max = 1000000,
     .dflt = 64},
    {.key = "ttl_s", .kind = F_U32, .off = ENG(ttl_s), .min = 0, .max = YEAR_S, .dflt = 0},
    {.key = "start",
     .kind = F_ENUM,
     .off = ENG(start),
     .words = start_words,
     .dflt = CONFIG_START_ON_DEMAND},
    {.key = "group", .kind = F_STR, .off = ENG(group)},
    {.key = "restart", .kind = F_MAP, .sub = restart_fields},
    {.key = "stop_timeout_s",
     .kind = F_U32,
     .off = ENG(stop_timeout_s),
     .min = 1,
     .max = 3600,
     .dflt = 15},
    {.key = "stop_cmd", .kind = F_STR, .off = ENG(stop_cmd), .check = check_cmd},
    {.key = "min_resident_s",
     .kind = F_U32,
     .off = ENG(min_resident_s),
     .min = 0,
     .max = 86400,
     .dflt = 30},
    {.key = "continuation",
     .kind = F_ENUM,
     .off = ENG(continuation),
     .words = continuation_words,
     .dflt = CONFIG_CONT_NONE},
    {.key = NULL},
};

static void engine_defaults(struct config_engine *e, const char *name, int line)
{
    *e = (struct config_engine){.name = xstrdup(name), .line = line};
    fields_defaults(engine_fields, e);
}

static void engine_free(struct config_engine *e)
{
    free(e->name);
    free(e->cmd);
    free(e->image);
    free_strings(e->args, e->nargs);
    free(e->url);
    free(e->api_key_env);
    for (size_t i = 0; i < e->nenv; i++) {
        free(e->env[i].key);
        free(e->env[i].value);
    }
    free(e->env);
    free(e->cwd);
    free_strings(e->models, e->nmodels);
    free(e->health.path);
    free(e->health.cmd);
    free(e->group);
    free(e->stop_cmd);
}

/* "native, container" for runtime.allowed bits. */
static void allowed_text(unsigned bits, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (const struct word *w = allowed_words; w->name != NULL; w++) {
        if (bits & (1u << w->value))
            used += (size_t)snprintf(out + used, size - used, "%s%s", used ? ", " : "", w->name);
    }
}

/* Which backend-selecting keys an engine's mapping writes. A key written with a bad value counts
 * as written: its own error is reported, and "needs cmd" beside it would only mislead. */
struct given {
    bool cmd, image, url, args, port;
};

static struct given keys_given(yaml_node_t **vals)
{
    /* An empty args list and port: auto say "nothing", as config_to_json writes them. */
    yaml_node_t *args = field_val(engine_fields, vals, "args");
    yaml_node_t *port = field_val(engine_fields, vals, "port");

    return (struct given){
        .cmd = field_val(engine_fields, vals, "cmd") != NULL,
        .image = field_val(engine_fields, vals, "image") != NULL,
        .url = field_val(engine_fields, vals, "url") != NULL,
        .args = args != NULL && (args->type != YAML_SEQUENCE_NODE || list_len(args) > 0),
        .port = port != NULL && !(is_scalar(port) && strcmp(text_of(port), "auto") == 0),
    };
}

/* The keys each backend needs and forbids. Returns true when they agree with the backend. */
static bool check_backend_keys(struct ctx *c, enum config_backend backend, const struct given *g,
                               yaml_node_t *at, const char *path)
{
    bool remote = backend == CONFIG_BACKEND_REMOTE || (backend == CONFIG_BACKEND_AUTO && g->url);
    unsigned before = c->nerrs + c->dropped;

    switch (backend) {
    case CONFIG_BACKEND_NATIVE:
        if (!g->cmd)
            err_at(c, at, path, "backend native needs cmd (the command that starts the engine)");
        break;
    case CONFIG_BACKEND_CONTAINER:
        if (!g->image)
            err_at(c, at, path, "backend container needs image");
        break;
    case CONFIG_BACKEND_REMOTE:
        if (!g->url)
            err_at(c, at, path, "backend remote needs url (the OpenAI-compatible API's base URL)");
        break;
    case CONFIG_BACKEND_AUTO:
        if (!g->cmd && !g->image && !g->url)
            err_at(c, at, path, "needs cmd (native), image (container) or url (remote)");
        break;
    }
    if (g->url && !remote)
        err_at(c, at, path, "url is only for a remote engine (arun runs this one with %s)",
               backend == CONFIG_BACKEND_NATIVE ? "cmd" : "image");
    if (remote && (g->cmd || g->image || g->args || g->port))
        err_at(c, at, path, "a remote engine is not run by arun: remove %s, or drop url",
               g->cmd     ? "cmd"
               : g->image ? "image"
               : g->args  ? "args"
                          : "port");
    return c->nerrs + c->dropped == before;
}

/* The backend must be one runtime.allowed lets engines use. */
static void check_backend_allowed(struct ctx *c, enum config_backend backend, const struct given *g,
                                  yaml_node_t *at, const char *path)
{
    unsigned allowed = c->cfg->runtime.allowed, need;
    const char *what, *why = "";
    char list[64];

    if (backend != CONFIG_BACKEND_AUTO) {
        need = 1u << backend;
        what = word_name(backend_words, backend);
    } else if (g->url) {
        need = CONFIG_ALLOW_REMOTE;
        what = "remote";
        why = " (implied by url)";
    } else if (g->cmd && g->image) {
        need = CONFIG_ALLOW_NATIVE | CONFIG_ALLOW_CONTAINER;
        what = "native or container";
        why = " (cmd and image given)";
    } else if (g->cmd) {
        need = CONFIG_ALLOW_NATIVE;
        what = "native";
        why = " (implied by cmd)";
    } else {
        need = CONFIG_ALLOW_CONTAINER;
        what = "container";
        why = " (implied by image)";
    }
    if ((need & allowed) != 0)
        return;
    allowed_text(allowed, list, sizeof list);
    err_at(c, at, path, "backend %s%s is not in runtime.allowed [%s]", what, why, list);
}

/* The engine (before index `upto`) that serves model m, or NULL. */
static const struct config_engine *serving_engine(const struct config *cfg, size_t upto,
                                                  const char *m)
{
    for (size_t i = 0; i < upto; i++) {
        const struct config_engine *e = &cfg->engines[i];
        for (size_t j = 0; j < e->nmodels; j++) {
            if (strcmp(e->models[j], m) == 0)
                return e;
        }
    }
    return NULL;
}

/* The node of list item equal to s, to point an error at it; fallback when absent. */
static yaml_node_t *item_node(const struct ctx *c, yaml_node_t *list, const char *s,
                              yaml_node_t *fallback)
{
    if (list == NULL || list->type != YAML_SEQUENCE_NODE)
        return fallback;
    for (yaml_node_item_t *i = list->data.sequence.items.start; i < list->data.sequence.items.top;
         i++) {
        yaml_node_t *n = node_get(c, *i);
        if (is_scalar(n) && strcmp(text_of(n), s) == 0)
            return n;
    }
    return fallback;
}

/* Rules across engines: a model belongs to one engine, a fixed port to one engine. */
static void check_engine_vs_others(struct ctx *c, size_t idx, yaml_node_t *key, yaml_node_t **vals,
                                   const char *path)
{
    const struct config *cfg = c->cfg;
    const struct config_engine *e = &cfg->engines[idx];
    yaml_node_t *models = field_val(engine_fields, vals, "models");
    yaml_node_t *port = field_val(engine_fields, vals, "port");
    char *mp = child_path(path, "models");

    for (size_t j = 0; j < e->nmodels; j++) {
        const struct config_engine *o = serving_engine(cfg, idx, e->models[j]);
        if (o != NULL)
            err_at(c, item_node(c, models, e->models[j], key), mp,
                   "model '%s' is also served by engine '%s' (line %d); a model name belongs to "
                   "one engine (a route can list several)",
                   e->models[j], o->name, o->line);
    }
    free(mp);
    if (e->port == CONFIG_AUTO)
        return;
    for (size_t i = 0; i < idx; i++) {
        if (cfg->engines[i].port == e->port) {
            char *pp = child_path(path, "port");
            err_at(c, port != NULL ? port : key, pp,
                   "port %d is also given to engine '%s' (line %d)", e->port, cfg->engines[i].name,
                   cfg->engines[i].line);
            free(pp);
            break;
        }
    }
}

static void parse_engine(struct ctx *c, const struct entry *en, const char *path)
{
    struct config *cfg = c->cfg;
    size_t idx = cfg->nengines;
    struct config_engine *e = &cfg->engines[idx];
    yaml_node_t *vals[MAX_FIELDS];
    char d[SNIP_MAX + 8];
    const char *why = check_engine_name(en->name);

    engine_defaults(e, en->name, node_line(en->key));
    cfg->nengines++;
    if (why != NULL)
        err_at(c, en->key, path, "%s, got %s", why, snip(en->name, d));
    if (is_null(en->val)) {
        memset(vals, 0, sizeof vals);
    } else if (en->val->type != YAML_MAPPING_NODE) {
        err_at(c, en->val, path, "expected a mapping of engine keys (cmd:, models:, …), got %s",
               describe(en->val, d));
        return;
    } else {
        parse_fields(c, en->val, path, engine_fields, e, vals);
    }
    if (e->models == NULL) {
        e->models = xcalloc(1, sizeof *e->models);
        e->models[0] = xstrdup(e->name);
        e->nmodels = 1;
    }
    yaml_node_t *backend = field_val(engine_fields, vals, "backend");
    yaml_node_t *at = backend != NULL ? backend : en->key;
    char *bp = backend != NULL ? child_path(path, "backend") : xstrdup(path);
    struct given g = keys_given(vals);
    if (check_backend_keys(c, e->backend, &g, at, bp))
        check_backend_allowed(c, e->backend, &g, at, bp);
    free(bp);
    check_engine_vs_others(c, idx, en->key, vals, path);
}

static json_t *engines_json(const void *base)
{
    const struct config *cfg = base;
    json_t *engines = json_object();
    for (size_t i = 0; i < cfg->nengines; i++)
        json_object_set_new(engines, cfg->engines[i].name,
                            fields_json(engine_fields, &cfg->engines[i]));
    return engines;
}

static void parse_engines(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config *cfg = base;
    char d[SNIP_MAX + 8];

    if (v->type != YAML_MAPPING_NODE) {
        err_at(c, v, path, "expected a mapping of engine names to engines, got %s", describe(v, d));
        return;
    }
    struct entries *es = xmalloc(sizeof *es);
    collect_entries(c, v, path, es);
    cfg->engines = xcalloc(es->n, sizeof *cfg->engines);
    for (size_t i = 0; i < es->n; i++) {
        char *ep = child_path(path, es->v[i].name);
        parse_engine(c, &es->v[i], ep);
        free(ep);
    }
    free(es);
}

/* ---- routes ------------------------------------------------------------------------------ */

/* The engine a route entry names: an engine name first, else the engine serving that model. */
static const struct config_engine *resolve_route_entry(const struct config *cfg, const char *s)
{
    const struct config_engine *e = config_find_engine(cfg, s);
    return e != NULL ? e : serving_engine(cfg, cfg->nengines, s);
}

static void unknown_route_entry(struct ctx *c, yaml_node_t *item, const char *path, const char *s)
{
    const struct config *cfg = c->cfg;
    struct suggest sg = {.word = s};
    char d[SNIP_MAX + 8];

    for (size_t i = 0; i < cfg->nengines; i++) {
        suggest_try(&sg, cfg->engines[i].name);
        for (size_t j = 0; j < cfg->engines[i].nmodels; j++)
            suggest_try(&sg, cfg->engines[i].models[j]);
    }
    if (sg.best != NULL)
        err_at(c, item, path, "%s is neither an engine nor a model of one (did you mean %s?)",
               snip(s, d), sg.best);
    else
        err_at(c, item, path, "%s is neither an engine nor a model of one", snip(s, d));
}

static void route_entry(struct ctx *c, struct config_route *r, yaml_node_t *item, const char *path,
                        size_t i)
{
    const struct config *cfg = c->cfg;
    char *ip = item_path(path, i);
    const char *s = get_text(c, item, ip);
    const struct config_engine *e = s != NULL ? resolve_route_entry(cfg, s) : NULL;

    free(ip);
    if (s == NULL)
        return;
    if (e == NULL) {
        unknown_route_entry(c, item, path, s);
        return;
    }
    for (size_t j = 0; j < r->nengines; j++) {
        if (strcmp(r->engines[j], e->name) == 0) {
            err_at(c, item, path, "engine '%s' is listed twice", e->name);
            return;
        }
    }
    if (config_engine_backend(cfg, e) == CONFIG_BACKEND_REMOTE && cfg->egress == CONFIG_EGRESS_DENY)
        err_at(c, item, path,
               "engine '%s' is remote and egress is deny; set egress: allow to let requests "
               "leave this machine",
               e->name);
    r->engines[r->nengines++] = xstrdup(e->name);
}

static void parse_route(struct ctx *c, const struct entry *en, const char *path)
{
    struct config *cfg = c->cfg;
    struct config_route *r = &cfg->routes[cfg->nroutes++];
    const char *why = check_model_name(en->name);
    const struct config_engine *clash = serving_engine(cfg, cfg->nengines, en->name);
    char d[SNIP_MAX + 8];

    r->name = xstrdup(en->name);
    r->line = node_line(en->key);
    if (why != NULL)
        err_at(c, en->key, path, "%s, got %s", why, snip(en->name, d));
    if (clash != NULL)
        err_at(c, en->key, path,
               "route name is also a model of engine '%s' (line %d); give the route its own name",
               clash->name, clash->line);
    if (is_null(en->val)) {
        err_at(c, en->val, path, "needs a list of engines, e.g. [%s]",
               cfg->nengines > 0 ? cfg->engines[0].name : "NAME");
        return;
    }
    if (!is_list(c, en->val, path, "engine or model names"))
        return;
    if (list_len(en->val) == 0) {
        err_at(c, en->val, path, "needs at least one engine");
        return;
    }
    r->engines = xcalloc(list_len(en->val), sizeof *r->engines);
    for (size_t i = 0; i < list_len(en->val); i++)
        route_entry(c, r, node_get(c, en->val->data.sequence.items.start[i]), path, i);
}

static json_t *routes_json(const void *base)
{
    const struct config *cfg = base;
    json_t *routes = json_object();
    for (size_t i = 0; i < cfg->nroutes; i++)
        json_object_set_new(routes, cfg->routes[i].name,
                            strings_json(cfg->routes[i].engines, cfg->routes[i].nengines));
    return routes;
}

static void parse_routes(struct ctx *c, yaml_node_t *v, const char *path, void *base)
{
    struct config *cfg = base;
    char d[SNIP_MAX + 8];

    if (v->type != YAML_MAPPING_NODE) {
        err_at(c, v, path, "expected a mapping of route names to lists of engines, got %s",
               describe(v, d));
        return;
    }
    struct entries *es = xmalloc(sizeof *es);
    collect_entries(c, v, path, es);
    cfg->routes = xcalloc(es->n, sizeof *cfg->routes);
    for (size_t i = 0; i < es->n; i++) {
        char *rp = child_path(path, es->v[i].name);
        parse_route(c, &es->v[i], rp);
        free(rp);
    }
    free(es);
}

/* ---- top level --------------------------------------------------------------------------- */

#define CFG(member) offsetof(struct config, member)

static const struct word sync_words[] = {
    {"full", CONFIG_SYNC_FULL},
    {"normal", CONFIG_SYNC_NORMAL},
    {NULL, 0},
};
static const struct word level_words[] = {
    {"debug", LOGL_DEBUG}, {"info", LOGL_INFO}, {"warn", LOGL_WARN},
    {"error", LOGL_ERROR}, {NULL, 0},
};
static const struct word auth_words[] = {
    {"none", CONFIG_AUTH_NONE},
    {"keys", CONFIG_AUTH_KEYS},
    {NULL, 0},
};
static const struct word prefer_words[] = {
    {"native", CONFIG_BACKEND_NATIVE},
    {"container", CONFIG_BACKEND_CONTAINER},
    {NULL, 0},
};
static const struct word cli_words[] = {
    {"podman", CONFIG_CLI_PODMAN},
    {"docker", CONFIG_CLI_DOCKER},
    {"auto", CONFIG_CLI_AUTO},
    {NULL, 0},
};
static const struct word egress_words[] = {
    {"deny", CONFIG_EGRESS_DENY},
    {"allow", CONFIG_EGRESS_ALLOW},
    {NULL, 0},
};

static const struct field store_fields[] = {
    {.key = "url",
     .kind = F_STR,
     .off = CFG(store.url),
     .check = check_store_url,
     .dflt_str = "sqlite"},
    {.key = "synchronous",
     .kind = F_ENUM,
     .off = CFG(store.synchronous),
     .words = sync_words,
     .dflt = CONFIG_SYNC_FULL},
    {.key = NULL},
};
static const struct field auth_fields[] = {
    {.key = "mode",
     .kind = F_ENUM,
     .off = CFG(auth.mode),
     .words = auth_words,
     .dflt = CONFIG_AUTH_NONE},
    {.key = NULL},
};
static const struct field limits_fields[] = {
    {.key = "max_body_bytes",
     .kind = F_U64,
     .off = CFG(limits.max_body_bytes),
     .min = MAX_BODY_MIN,
     .max = MAX_BODY_MAX,
     .dflt = 8388608},
    {.key = "max_connections",
     .kind = F_U32,
     .off = CFG(limits.max_connections),
     .min = 1,
     .max = MAX_CONNECTIONS_MAX,
     .dflt = 200000},
    {.key = NULL},
};
static const struct field node_fields[] = {
    {.key = "ram_mb",
     .kind = F_I64,
     .off = CFG(node.ram_mb),
     .min = 1,
     .max = MAX_MIB,
     .flags = FL_AUTO,
     .dflt = CONFIG_AUTO},
    {.key = "vram_mb",
     .kind = F_I64,
     .off = CFG(node.vram_mb),
     .min = 0,
     .max = MAX_MIB,
     .flags = FL_AUTO,
     .dflt = CONFIG_AUTO},
    {.key = "reserve_mb",
     .kind = F_I64,
     .off = CFG(node.reserve_mb),
     .min = 0,
     .max = MAX_MIB,
     .dflt = 2048},
    {.key = NULL},
};
static const struct field runtime_fields[] = {
    {.key = "allowed", .kind = F_FUNC, .fn = parse_allowed, .to_json = allowed_json},
    {.key = "prefer",
     .kind = F_ENUM,
     .off = CFG(runtime.prefer),
     .words = prefer_words,
     .dflt = CONFIG_BACKEND_CONTAINER},
    {.key = "container_cli",
     .kind = F_ENUM,
     .off = CFG(runtime.container_cli),
     .words = cli_words,
     .dflt = CONFIG_CLI_AUTO},
    {.key = NULL},
};
/* Processed in this order: engines need runtime, routes need engines and egress. */
static const struct field top_fields[] = {
    {.key = "listen", .kind = F_FUNC, .fn = parse_listen_node, .to_json = listen_json},
    {.key = "data_dir", .kind = F_STR, .off = CFG(data_dir), .dflt_str = "./arun-data"},
    {.key = "store", .kind = F_MAP, .sub = store_fields},
    {.key = "log_level",
     .kind = F_ENUM,
     .off = CFG(log_level),
     .words = level_words,
     .dflt = LOGL_INFO},
    {.key = "auth", .kind = F_MAP, .sub = auth_fields},
    {.key = "limits", .kind = F_MAP, .sub = limits_fields},
    {.key = "node", .kind = F_MAP, .sub = node_fields},
    {.key = "runtime", .kind = F_MAP, .sub = runtime_fields},
    {.key = "egress",
     .kind = F_ENUM,
     .off = CFG(egress),
     .words = egress_words,
     .dflt = CONFIG_EGRESS_DENY},
    {.key = "engines", .kind = F_FUNC, .fn = parse_engines, .to_json = engines_json},
    {.key = "routes", .kind = F_FUNC, .fn = parse_routes, .to_json = routes_json},
    {.key = NULL},
};

struct config *config_default(void)
{
    struct config *cfg = xcalloc(1, sizeof *cfg);
    fields_defaults(top_fields, cfg);
    /* The two F_FUNC keys with a value when absent. */
    cfg->listen_host = xstrdup("127.0.0.1"); /* loopback unless the file says otherwise */
    cfg->listen_port = 8080;
    cfg->runtime.allowed = CONFIG_ALLOW_NATIVE | CONFIG_ALLOW_CONTAINER | CONFIG_ALLOW_REMOTE;
    return cfg;
}

/* Line and column of byte offset off in text, both 1-based (reader errors give only offsets). */
static void offset_position(const char *text, size_t len, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static void syntax_error(struct ctx *c, const yaml_parser_t *p, const char *text, size_t len)
{
    size_t line, col;
    const char *problem = p->problem != NULL ? p->problem : "cannot be parsed";

    if (p->error == YAML_READER_ERROR) {
        offset_position(text, len, p->problem_offset, &line, &col);
    } else {
        line = p->problem_mark.line + 1;
        col = p->problem_mark.column + 1;
    }
    char *msg;
    if (p->context != NULL)
        msg = xasprintf("%s:%zu:%zu: YAML syntax error: %s (%s at line %zu, column %zu)", c->file,
                        line, col, problem, p->context, p->context_mark.line + 1,
                        p->context_mark.column + 1);
    else
        msg = xasprintf("%s:%zu:%zu: YAML syntax error: %s", c->file, line, col, problem);
    push_err(c, (int)line, msg);
}

/* libyaml's scanner revisits every open flow level for each token, so a file of a few hundred
 * thousand nested brackets takes minutes to load. Reading the events first, stopping at
 * MAX_DEPTH, bounds that before the document is built. Syntax errors are left to the load. */
static bool depth_ok(struct ctx *c, const char *text, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0;
    bool ok = true, done = false;

    int init = yaml_parser_initialize(&p);
    ASSERT(init); /* fails only when malloc does */
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    while (!done && yaml_parser_parse(&p, &ev)) {
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT) {
            if (++depth > MAX_DEPTH) {
                push_err(c, (int)ev.start_mark.line + 1,
                         xasprintf("%s:%zu:%zu: lists and mappings nested more than %d deep",
                                   c->file, ev.start_mark.line + 1, ev.start_mark.column + 1,
                                   MAX_DEPTH));
                ok = false;
                done = true;
            }
        } else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            depth--;
        } else if (ev.type == YAML_STREAM_END_EVENT) {
            done = true;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    return ok;
}

/* A second document ("---" again) would be silently ignored by a loader that reads one; say so. */
static void check_single_document(struct ctx *c, yaml_parser_t *p, const char *text, size_t len)
{
    yaml_document_t next;

    if (!yaml_parser_load(p, &next)) {
        syntax_error(c, p, text, len);
        return;
    }
    yaml_node_t *root = yaml_document_get_root_node(&next);
    if (root != NULL)
        push_err(c, node_line(root),
                 xasprintf("%s:%d: a config file holds one YAML document; remove this second one",
                           c->file, node_line(root)));
    yaml_document_delete(&next);
}

int config_parse(const char *text, size_t len, const char *name, struct config **out,
                 struct buf *errors)
{
    struct ctx *c = xcalloc(1, sizeof *c);
    struct config *cfg = config_default();
    yaml_parser_t parser;
    yaml_document_t doc;
    bool have_doc = false;
    int rc;

    *out = NULL;
    c->file = name;
    c->cfg = cfg;
    c->merge_budget = MERGE_BUDGET;
    cfg->path = xstrdup(name);
    /* libyaml's initialise fails only when malloc does; arun aborts on that everywhere. */
    int ok = yaml_parser_initialize(&parser);
    ASSERT(ok);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!depth_ok(c, text, len))
        goto out;
    if (!yaml_parser_load(&parser, &doc)) {
        syntax_error(c, &parser, text, len);
        goto out;
    }
    have_doc = true;
    c->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root != NULL && !is_null(root)) {
        char d[SNIP_MAX + 8];
        if (root->type == YAML_MAPPING_NODE)
            parse_fields(c, root, "", top_fields, cfg, NULL);
        else
            err_at(c, root, "(top level)",
                   "expected a mapping of keys (listen:, engines:, …), "
                   "got %s",
                   describe(root, d));
    }
    check_single_document(c, &parser, text, len);
out:
    rc = c->nerrs > 0 || c->dropped > 0 ? -EINVAL : 0;
    flush_errors(c, errors);
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(c);
    if (rc != 0)
        config_free(cfg);
    else
        *out = cfg;
    return rc;
}

/* Reads at most CONFIG_MAX_BYTES of path. Returns 0 or -errno (-EFBIG when larger). */
static int read_file(const char *path, char **out, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *data = NULL;
    size_t len = 0;
    int rc = 0;

    if (fd < 0)
        return -errno;
    data = xmalloc(CONFIG_MAX_BYTES + 2);
    ssize_t n = fileio_read_fd(fd, data, CONFIG_MAX_BYTES + 1);
    if (n < 0) {
        rc = (int)n;
        goto out;
    }
    len = (size_t)n;
    if (len > CONFIG_MAX_BYTES) {
        rc = -EFBIG;
        goto out;
    }
    data[len] = '\0';
    *out = data;
    *len_out = len;
    data = NULL;
out:
    free(data);
    close(fd);
    return rc;
}

int config_load(const char *path, struct config **out, struct buf *errors)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    rc = read_file(path, &text, &len);
    if (rc == -EFBIG) {
        if (errors != NULL)
            IGNORE_RESULT(buf_printf(errors, "%s: larger than %u bytes; is this a config file?\n",
                                     path, CONFIG_MAX_BYTES));
        return rc;
    }
    if (rc != 0) {
        if (errors != NULL)
            IGNORE_RESULT(buf_printf(errors, "%s: cannot read: %s\n", path, strerror(-rc)));
        return rc;
    }
    rc = config_parse(text, len, path, out, errors);
    free(text);
    return rc;
}

const char *config_pick_path(const char *flag_path, bool *explicit_out)
{
    const char *env = getenv("ARUN_CONFIG");

    *explicit_out = true;
    if (flag_path != NULL && flag_path[0] != '\0')
        return flag_path;
    if (env != NULL && env[0] != '\0')
        return env;
    *explicit_out = false;
    return access(CONFIG_DEFAULT_FILE, F_OK) == 0 ? CONFIG_DEFAULT_FILE : NULL;
}

const struct config_engine *config_find_engine(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nengines; i++) {
        if (strcmp(cfg->engines[i].name, name) == 0)
            return &cfg->engines[i];
    }
    return NULL;
}

enum config_backend config_engine_backend(const struct config *cfg, const struct config_engine *e)
{
    if (e->backend != CONFIG_BACKEND_AUTO)
        return e->backend;
    if (e->url != NULL)
        return CONFIG_BACKEND_REMOTE;
    if (e->cmd != NULL && e->image != NULL) {
        enum config_backend other = cfg->runtime.prefer == CONFIG_BACKEND_NATIVE
                                        ? CONFIG_BACKEND_CONTAINER
                                        : CONFIG_BACKEND_NATIVE;
        return (cfg->runtime.allowed & (1u << cfg->runtime.prefer)) ? cfg->runtime.prefer : other;
    }
    return e->cmd != NULL ? CONFIG_BACKEND_NATIVE : CONFIG_BACKEND_CONTAINER;
}

const char *config_backend_name(enum config_backend b)
{
    return word_name(backend_words, b);
}

json_t *config_to_json(const struct config *cfg)
{
    return fields_json(top_fields, cfg);
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    free(cfg->listen_host);
    free(cfg->data_dir);
    free(cfg->store.url);
    for (size_t i = 0; i < cfg->nengines; i++)
        engine_free(&cfg->engines[i]);
    free(cfg->engines);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        free(cfg->routes[i].name);
        free_strings(cfg->routes[i].engines, cfg->routes[i].nengines);
    }
    free(cfg->routes);
    free(cfg);
}
