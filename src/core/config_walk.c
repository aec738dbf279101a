/*
 * config_walk.c: the generic part of the config module: a table-driven walker over a libyaml
 * document. It records errors with their line and sorts them ("FILE:LINE: KEY.PATH: message"),
 * reads mappings (duplicates, merge keys with a depth and work budget), suggests the key that
 * was meant, converts each value by its field's kind and range, and from the same tables writes
 * the defaults and the JSON of config_to_json. It knows no key of arun.yaml: the tables in
 * config.c, config_engines.c and config_routes.c do. See config.c for the DESIGN.
 */
#include "core/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------------------------ */

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

int config_node_line(const yaml_node_t *n)
{
    return n != NULL ? (int)n->start_mark.line + 1 : 0;
}

/* Records "FILE:LINE: PATH: message" with the line of node n. */
PRINTF_LIKE(4, 5)
void config_err_at(struct ctx *c, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = config_node_line(n);
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
void config_flush_errors(struct ctx *c, struct buf *out)
{
    qsort(c->errs, c->nerrs, sizeof c->errs[0], cerr_cmp);
    for (unsigned i = 0; i < c->nerrs; i++) {
        /* A full buffer drops the rest: the caller chose its cap, and the first lines matter. */
        if (out != NULL)
            buf_printf(out, "%s\n", c->errs[i].text);
        free(c->errs[i].text);
    }
    if (c->dropped > 0 && out != NULL)
        buf_printf(out, "%s: %u more errors not shown\n", c->file, c->dropped);
    c->nerrs = 0;
}

/* Copies at most SNIP_MAX bytes of s into out, quoted, with "..." when cut (never mid-UTF-8). */
const char *config_snip(const char *s, char out[static SNIP_MAX + 8])
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

yaml_node_t *config_node_get(const struct ctx *c, int id)
{
    return yaml_document_get_node(c->doc, id);
}

bool config_is_scalar(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE;
}

const char *config_text_of(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* YAML's null: an empty plain value, ~ or null. A key given null takes its default. */
bool config_is_null(const yaml_node_t *n)
{
    if (!config_is_scalar(n) || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = config_text_of(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* What a node is, for "got …": the quoted value of a scalar, else its kind. */
const char *config_describe(const yaml_node_t *n, char out[static SNIP_MAX + 8])
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (config_is_null(n))
        return "nothing";
    return config_snip(config_text_of(n), out);
}

/* The text of a string value. Any scalar counts (a number is taken as its text); a mapping, a
 * list or a NUL byte is an error. Returns NULL after recording the error. */
const char *config_get_text(struct ctx *c, const yaml_node_t *n, const char *path)
{
    char d[SNIP_MAX + 8];

    if (!config_is_scalar(n)) {
        config_err_at(c, n, path, "expected a string, got %s", config_describe(n, d));
        return NULL;
    }
    if (strlen(config_text_of(n)) != n->data.scalar.length) {
        config_err_at(c, n, path, "contains a NUL byte");
        return NULL;
    }
    return config_text_of(n);
}

char *config_child_path(const char *path, const char *key)
{
    return path[0] == '\0' ? xstrdup(key) : xasprintf("%s.%s", path, key);
}

/* ---- mappings: entries, duplicates, merge keys ------------------------------------------- */

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
    return config_is_scalar(k) && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           strcmp(config_text_of(k), "<<") == 0;
}

static bool push_entry(struct ctx *c, struct entries *es, yaml_node_t *k, yaml_node_t *v,
                       const char *path)
{
    if (es->n == MAX_ENTRIES) {
        if (!es->full)
            config_err_at(c, k, path, "more than %d entries", MAX_ENTRIES);
        es->full = true;
        return false;
    }
    es->v[es->n++] = (struct entry){.key = k, .val = v, .name = config_text_of(k)};
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
            config_err_at(c, m, path, "too many merges (<<); at most %d", MERGE_BUDGET);
        c->merge_budget_reported = true;
        return;
    }
    c->merge_budget--;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = config_node_get(c, p->key);
        if (is_merge_key(k) || !config_is_scalar(k) ||
            strlen(config_text_of(k)) != k->data.scalar.length)
            continue; /* the mapping's own problems are reported where it is written */
        if (find_entry(es, config_text_of(k)) == NULL &&
            !push_entry(c, es, k, config_node_get(c, p->value), path))
            return;
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        if (is_merge_key(config_node_get(c, p->key)))
            merge_value(c, config_node_get(c, p->value), path, depth + 1, es);
    }
}

static void merge_value(struct ctx *c, yaml_node_t *v, const char *path, int depth,
                        struct entries *es)
{
    if (depth > MAX_MERGE_DEPTH) {
        config_err_at(c, v, path, "merges (<<) nested more than %d deep", MAX_MERGE_DEPTH);
        return;
    }
    if (v->type == YAML_MAPPING_NODE) {
        merge_map(c, v, path, depth, es);
        return;
    }
    if (v->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top;
             i++) {
            yaml_node_t *m = config_node_get(c, *i);
            if (m->type == YAML_MAPPING_NODE)
                merge_map(c, m, path, depth, es);
            else
                config_err_at(c, m, path, "<< (merge) takes a mapping or a list of mappings");
        }
        return;
    }
    config_err_at(c, v, path, "<< (merge) takes a mapping or a list of mappings");
}

/* The entries of mapping m in file order, each key once: a key written twice is an error, and
 * merge keys are expanded. Keys that are not plain strings are errors and skipped. */
void config_collect_entries(struct ctx *c, yaml_node_t *m, const char *path, struct entries *es)
{
    char d[SNIP_MAX + 8];

    es->n = 0;
    es->full = false;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = config_node_get(c, p->key);
        if (is_merge_key(k))
            continue;
        if (!config_is_scalar(k) || config_is_null(k)) {
            config_err_at(c, k, path, "keys must be strings, got %s", config_describe(k, d));
            continue;
        }
        if (config_get_text(c, k, path) == NULL)
            continue;
        const struct entry *first = find_entry(es, config_text_of(k));
        if (first != NULL) {
            char *kp = config_child_path(path, config_text_of(k));
            config_err_at(c, k, kp, "duplicate key (first at line %d)",
                          config_node_line(first->key));
            free(kp);
            continue;
        }
        if (!push_entry(c, es, k, config_node_get(c, p->value), path))
            return;
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        if (is_merge_key(config_node_get(c, p->key)))
            merge_value(c, config_node_get(c, p->value), path, 1, es);
    }
}

struct entries *config_named_entries(struct ctx *c, yaml_node_t *v, const char *path,
                                     const char *what)
{
    char d[SNIP_MAX + 8];
    if (v->type != YAML_MAPPING_NODE) {
        config_err_at(c, v, path, "expected a mapping of %s, got %s", what, config_describe(v, d));
        return NULL;
    }
    struct entries *es = xmalloc(sizeof *es);
    config_collect_entries(c, v, path, es);
    return es;
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

void config_suggest_try(struct suggest *s, const char *candidate)
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

const char *config_word_name(const struct word *w, int value)
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
    const char *s = config_get_text(c, v, path);
    if (s == NULL)
        return;
    const char *why = s[0] == '\0' ? "must not be empty" : f->check ? f->check(s) : NULL;
    if (why != NULL) {
        char d[SNIP_MAX + 8];
        config_err_at(c, v, path, "%s, got %s", why, config_snip(s, d));
        return;
    }
    free(*dst);
    *dst = xstrdup(s);
}

/* A decimal integer: an optional '-', digits and nothing else. Returns 0, -EINVAL or -ERANGE. */
int config_parse_i64(const char *s, int64_t *out)
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

    if (config_is_scalar(v) && (f->flags & FL_AUTO) && strcmp(config_text_of(v), "auto") == 0) {
        x = CONFIG_AUTO;
        ok = true;
    } else {
        ok = config_is_scalar(v) && strlen(config_text_of(v)) == v->data.scalar.length &&
             config_parse_i64(config_text_of(v), &x) == 0 && x >= f->min && x <= f->max;
    }
    if (!ok) {
        config_err_at(c, v, path, "expected an integer %lld-%lld%s, got %s", (long long)f->min,
                      (long long)f->max, (f->flags & FL_AUTO) ? " or auto" : "",
                      config_describe(v, d));
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
int config_get_word(struct ctx *c, const struct word *words, yaml_node_t *v, const char *path,
                    int *out)
{
    char d[SNIP_MAX + 8], list[256];

    if (config_is_scalar(v)) {
        for (const struct word *w = words; w->name != NULL; w++) {
            if (strcmp(config_text_of(v), w->name) == 0) {
                *out = w->value;
                return 0;
            }
        }
    }
    list_words(words, list, sizeof list);
    config_err_at(c, v, path, "expected one of %s; got %s", list, config_describe(v, d));
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
        if (config_get_word(c, f->words, v, path, &value) == 0)
            *(int *)dst = value;
        break;
    }
    case F_MAP:
        if (v->type == YAML_MAPPING_NODE)
            config_parse_fields(c, v, path, f->sub, base, NULL);
        else
            config_err_at(c, v, path, "expected a mapping (key: value, …), got %s",
                          config_describe(v, d));
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
    char *kp = config_child_path(path, e->name);

    known[0] = '\0';
    for (const struct field *f = fields; f->key != NULL; f++) {
        config_suggest_try(&s, f->key);
        if (used < sizeof known)
            used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "",
                                     f->key);
    }
    if (s.best != NULL)
        config_err_at(c, e->key, kp, "unknown key (did you mean %s?)", s.best);
    else
        config_err_at(c, e->key, kp, "unknown key (known here: %s)", known);
    free(kp);
}

/* Reads mapping m against a table: unknown keys are errors, known ones are converted in the
 * table's order (null values keep their defaults). vals, when not NULL, receives the value node
 * of each field by table index (NULL when absent) for rules that look at several keys. */
void config_parse_fields(struct ctx *c, yaml_node_t *m, const char *path,
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

    config_collect_entries(c, m, path, es);
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
        if (vals[f] == NULL || config_is_null(vals[f]))
            continue;
        char *kp = config_child_path(path, fields[f].key);
        set_field(c, &fields[f], vals[f], kp, base);
        free(kp);
    }
}

yaml_node_t *config_field_val(const struct field *fields, yaml_node_t **vals, const char *key)
{
    for (size_t i = 0; fields[i].key != NULL; i++) {
        if (strcmp(fields[i].key, key) == 0)
            return vals[i] != NULL && !config_is_null(vals[i]) ? vals[i] : NULL;
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

json_t *config_strings_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

/* One field's value as config_to_json writes it: strings (null when unset), integers ("auto"
 * for CONFIG_AUTO where the key accepts it), enum words, nested tables, and F_FUNC keys through
 * their to_json. The tables that parse the file write it too, so a key is added in one place. */

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
        return json_string(config_word_name(f->words, *(const int *)p));
    case F_MAP:
        return config_fields_json(f->sub, base);
    case F_FUNC:
        break;
    }
    ASSERT(f->to_json != NULL); /* every F_FUNC key says how it is written */
    return f->to_json(base);
}

json_t *config_fields_json(const struct field *fields, const void *base)
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
void config_fields_defaults(const struct field *fields, void *base)
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
            config_fields_defaults(f->sub, base);
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

const char *config_check_url(const char *s)
{
    size_t n = strncmp(s, "https://", 8) == 0 ? 8 : strncmp(s, "http://", 7) == 0 ? 7 : 0;
    if (n == 0 || s[n] == '\0' || s[n] == '/' || has_space_or_control(s))
        return "expected an http:// or https:// URL";
    return NULL;
}

const char *config_check_store_url(const char *s)
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

const char *config_check_node_id(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char ch = s[n];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == ':' || ch == '-'))
            return "expected auto or a node id of letters, digits and . _ : - (at most 128)";
    }
    return n >= 1 && n <= 128 ? NULL
                              : "expected auto or a node id of letters, digits and . _ : - (at "
                                "most 128)";
}

const char *config_check_env_name(const char *s)
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

const char *config_check_http_path(const char *s)
{
    if (s[0] != '/' || has_space_or_control(s))
        return "expected a path starting with /";
    return NULL;
}

/* Commands are split like a shell (the engines layer does it), never run by one; an unbalanced
 * quote would split into nonsense there, so it is caught here with the line. */
const char *config_check_cmd(const char *s)
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

bool config_name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                  (i > 0 && (ch == '.' || ch == '_' || ch == '-'));
        if (!ok)
            return false;
    }
    return true;
}

const char *config_check_engine_name(const char *s)
{
    if (!config_name_ok(s, ENGINE_NAME_MAX))
        return "engine names match [a-z0-9][a-z0-9._-]* (at most 64 characters)";
    return NULL;
}

const char *config_check_model_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MODEL_NAME_MAX || has_space_or_control(s))
        return "model names are 1-256 characters without spaces";
    return NULL;
}

/* ---- lists ------------------------------------------------------------------------------- */

/* Checks that v is a list of at most MAX_ENTRIES items; records an error otherwise. */
bool config_is_list(struct ctx *c, yaml_node_t *v, const char *path, const char *what)
{
    char d[SNIP_MAX + 8];
    if (v->type != YAML_SEQUENCE_NODE) {
        config_err_at(c, v, path, "expected a list of %s, e.g. [a, b], got %s", what,
                      config_describe(v, d));
        return false;
    }
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n > MAX_ENTRIES) {
        config_err_at(c, v, path, "more than %d entries", MAX_ENTRIES);
        return false;
    }
    return true;
}

size_t config_list_len(const yaml_node_t *v)
{
    return (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
}

char *config_item_path(const char *path, size_t i)
{
    return xasprintf("%s[%zu]", path, i);
}

/* Reads a list of strings into a fresh array. Items failing check (when given) are errors;
 * empty items are allowed only with empty_ok. Returns the array (NULL when v is no list). */
char **config_string_list(struct ctx *c, yaml_node_t *v, const char *path, const char *what,
                          bool empty_ok, check_fn *check, size_t *n_out)
{
    char d[SNIP_MAX + 8];

    *n_out = 0;
    if (!config_is_list(c, v, path, what))
        return NULL;
    char **out = xcalloc(config_list_len(v), sizeof *out);
    for (size_t i = 0; i < config_list_len(v); i++) {
        yaml_node_t *item = config_node_get(c, v->data.sequence.items.start[i]);
        char *ip = config_item_path(path, i);
        const char *s = config_get_text(c, item, ip);
        const char *why = s == NULL                   ? NULL
                          : s[0] == '\0' && !empty_ok ? "must not be empty"
                          : check != NULL             ? check(s)
                                                      : NULL;
        if (why != NULL)
            config_err_at(c, item, ip, "%s, got %s", why, config_snip(s, d));
        else if (s != NULL)
            out[(*n_out)++] = xstrdup(s);
        free(ip);
    }
    return out;
}

void config_free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
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

void config_syntax_error(struct ctx *c, const yaml_parser_t *p, const char *text, size_t len)
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
bool config_depth_ok(struct ctx *c, const char *text, size_t len)
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
void config_check_single_document(struct ctx *c, yaml_parser_t *p, const char *text, size_t len)
{
    yaml_document_t next;

    if (!yaml_parser_load(p, &next)) {
        config_syntax_error(c, p, text, len);
        return;
    }
    yaml_node_t *root = yaml_document_get_root_node(&next);
    if (root != NULL)
        push_err(c, config_node_line(root),
                 xasprintf("%s:%d: a config file holds one YAML document; remove this second one",
                           c->file, config_node_line(root)));
    yaml_document_delete(&next);
}
