/*
 * config_int.h: what the files of the config module share (config.c, config_walk.c,
 * config_engines.c, config_routes.c): the walker's context, the field tables' types, the limits
 * and the functions one file calls in another. Nothing outside src/core/config*.c includes it.
 * The walker's functions are the schema's vocabulary; config.h stays the module's contract.
 */
#ifndef ARUN_CORE_CONFIG_INT_H
#define ARUN_CORE_CONFIG_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"

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
#define RETENTION_DAYS_MAX 36500     /* a hundred years: "forever" is 0, not a big number */
#define DAY_MS 86400000ll
#define WEEK_S 604800ll
#define YEAR_S 31536000ll

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

/* Keeps the closest candidate within SUGGEST_MAX_DISTANCE; call for each candidate. */
struct suggest {
    const char *word;
    const char *best;
    size_t dist;
};

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

/* ---- config_walk.c: the generic YAML walker (errors, nodes, mappings, suggestions, field tables,
 * lists, JSON and defaults from the tables, value checks) ---- */
/* The 1-based line of node n in the file. */
int config_node_line(const yaml_node_t *n);
/* Records "FILE:LINE: PATH: message" for node n (printf-style); kept up to MAX_ERRORS. */
void config_err_at(struct ctx *c, const yaml_node_t *n, const char *path, const char *fmt, ...);
/* Sorts the errors into file order, appends them to out (which may be NULL) and frees them. */
void config_flush_errors(struct ctx *c, struct buf *out);
/* Copies at most SNIP_MAX bytes of s into out, quoted, with "..." when cut (never mid-UTF-8). */
const char *config_snip(const char *s, char out[static SNIP_MAX + 8]);
/* The document node with this id (libyaml numbers them from 1), or NULL. */
yaml_node_t *config_node_get(const struct ctx *c, int id);
/* Whether n is a scalar (a plain or quoted value). */
bool config_is_scalar(const yaml_node_t *n);
/* The text of scalar n, owned by the document. */
const char *config_text_of(const yaml_node_t *n);
/* YAML's null: an empty plain value, ~ or null. A key given null takes its default. */
bool config_is_null(const yaml_node_t *n);
/* What a node is, for "got …": the quoted value of a scalar, else its kind. */
const char *config_describe(const yaml_node_t *n, char out[static SNIP_MAX + 8]);
/* The text of a string value. Any scalar counts (a number is taken as its text); a mapping, a
 * list or a NUL byte is an error. Returns NULL after recording the error. */
const char *config_get_text(struct ctx *c, const yaml_node_t *n, const char *path);
/* "path.key" (or "key" at the top), newly allocated: the caller frees it. */
char *config_child_path(const char *path, const char *key);
/* The entries of mapping m in file order, each key once: a key written twice is an error, and
 * merge keys are expanded. Keys that are not plain strings are errors and skipped. */
void config_collect_entries(struct ctx *c, yaml_node_t *m, const char *path, struct entries *es);
/* Offers candidate to s; s keeps the closest one within SUGGEST_MAX_DISTANCE. */
/* Reads mapping v of named things (engines, routes; `what` says of what, for the error when v is
 * not a mapping). Returns its entries, which the caller frees, or NULL after recording that error.
 */
struct entries *config_named_entries(struct ctx *c, yaml_node_t *v, const char *path,
                                     const char *what);
void config_suggest_try(struct suggest *s, const char *candidate);
/* The name of value in words (a {NULL}-ended table). */
const char *config_word_name(const struct word *w, int value);
/* Looks value s up in words. Returns 0 and the value, or -EINVAL after recording an error that
 * lists the accepted words. */
int config_get_word(struct ctx *c, const struct word *words, yaml_node_t *v, const char *path,
                    int *out);
/* A decimal integer: an optional '-', digits and nothing else. Returns 0, -EINVAL or -ERANGE. */
int config_parse_i64(const char *s, int64_t *out);
/* Reads mapping m against a table: unknown keys are errors, known ones are converted in the
 * table's order (null values keep their defaults). vals, when not NULL, receives the value node
 * of each field by table index (NULL when absent) for rules that look at several keys. */
void config_parse_fields(struct ctx *c, yaml_node_t *m, const char *path,
                         const struct field *fields, void *base, yaml_node_t **vals);
/* The value node that parse_fields stored for key (vals is parallel to fields), or NULL. */
yaml_node_t *config_field_val(const struct field *fields, yaml_node_t **vals, const char *key);
/* A JSON array of the n strings of v. Returns a new reference. */
json_t *config_strings_json(char *const *v, size_t n);
/* The JSON object config_to_json writes for base, one member per row of fields, in order. */
json_t *config_fields_json(const struct field *fields, const void *base);
/* Sets every key of fields in base (zeroed by the caller) to its default: .dflt, .dflt_str, and
 * nested tables in turn. F_FUNC keys default to zero (empty lists, no env) unless their owner
 * sets more (listen and runtime.allowed: config_default). */
void config_fields_defaults(const struct field *fields, void *base);
/* Value checks for F_STR rows (check_fn): each returns NULL when s is acceptable, else what is
 * wrong, as a phrase. An http(s) URL. */
const char *config_check_url(const char *s);
/* store.url: "sqlite", a path, or a postgres:// URL. */
const char *config_check_store_url(const char *s);
/* cluster.node_id: "auto" or [A-Za-z0-9._:-]{1,128}. */
const char *config_check_node_id(const char *s);
/* The name of an environment variable. */
const char *config_check_env_name(const char *s);
/* An absolute HTTP path. */
const char *config_check_http_path(const char *s);
/* Commands are split like a shell (the engines layer does it), never run by one; an unbalanced
 * quote would split into nonsense there, so it is caught here with the line. */
const char *config_check_cmd(const char *s);
/* Whether s is a name of engines and tenants: [a-z0-9][a-z0-9._-]*, 1 to max bytes. */
bool config_name_ok(const char *s, size_t max);
/* An engine name: it becomes a file name and part of URLs (ENGINE_NAME_MAX). */
const char *config_check_engine_name(const char *s);
/* A model name (MODEL_NAME_MAX, no spaces or control bytes). */
const char *config_check_model_name(const char *s);
/* Checks that v is a list of at most MAX_ENTRIES items; records an error otherwise. */
bool config_is_list(struct ctx *c, yaml_node_t *v, const char *path, const char *what);
/* The number of items of sequence v. */
size_t config_list_len(const yaml_node_t *v);
/* "path[i]", newly allocated: the caller frees it. */
char *config_item_path(const char *path, size_t i);
/* Reads a list of strings into a fresh array. Items failing check (when given) are errors;
 * empty items are allowed only with empty_ok. Returns the array (NULL when v is no list). */
char **config_string_list(struct ctx *c, yaml_node_t *v, const char *path, const char *what,
                          bool empty_ok, check_fn *check, size_t *n_out);
/* Frees the n strings of v and v itself. */
void config_free_strings(char **v, size_t n);
/* Records the parser's error as "FILE:LINE:COL: YAML syntax error: …". */
void config_syntax_error(struct ctx *c, const yaml_parser_t *p, const char *text, size_t len);
/* libyaml's scanner revisits every open flow level for each token, so a file of a few hundred
 * thousand nested brackets takes minutes to load. Reading the events first, stopping at
 * MAX_DEPTH, bounds that before the document is built. Syntax errors are left to the load. */
bool config_depth_ok(struct ctx *c, const char *text, size_t len);
/* A second document ("---" again) would be silently ignored by a loader that reads one; say so. */
void config_check_single_document(struct ctx *c, yaml_parser_t *p, const char *text, size_t len);

/* ---- config_engines.c: the engines.NAME table and its rules ---- */
/* runtime.allowed as a JSON array of backend names (to_json of its F_FUNC row). */
json_t *config_allowed_json(const void *base);
/* Parses runtime.allowed: a list of backend names (the fn of its F_FUNC row). */
void config_parse_allowed(struct ctx *c, yaml_node_t *v, const char *path, void *base);
/* The backend names, for engines.NAME.backend and messages. */
extern const struct word config_backend_words[];
/* Frees what engine e owns (not e itself). */
void config_engine_free(struct config_engine *e);
/* The engine (before index `upto`) that serves model m, or NULL. */
const struct config_engine *config_serving_engine(const struct config *cfg, size_t upto,
                                                  const char *m);
/* engines as a JSON object by name (to_json of the top-level F_FUNC row). */
json_t *config_engines_json(const void *base);
/* Parses the engines mapping into cfg->engines, with every rule between engines (fn of its
 * F_FUNC row; needs runtime already parsed). */
void config_parse_engines(struct ctx *c, yaml_node_t *v, const char *path, void *base);

/* ---- config_routes.c: the routes table and its rules ---- */
/* routes as a JSON object of engine lists (to_json of the top-level F_FUNC row). */
json_t *config_routes_json(const void *base);
/* Parses the routes mapping into cfg->routes (fn of its F_FUNC row; needs engines and
 * egress already parsed). */
void config_parse_routes(struct ctx *c, yaml_node_t *v, const char *path, void *base);

/* ---- config_tenants.c: the tenants table (limits per tenant, a default and overrides) ---- */
/* Sets tenants.default to the contract's defaults (config_default). */
void config_tenants_defaults(struct config *cfg);
/* tenants as a JSON object by name, default first, each with its resolved limits (to_json of
 * the top-level F_FUNC row). */
json_t *config_tenants_json(const void *base);
/* Parses the tenants mapping: default first, wherever it is written, then every other name
 * from it (fn of its F_FUNC row). */
void config_parse_tenants(struct ctx *c, yaml_node_t *v, const char *path, void *base);
/* Frees what cfg->tenants owns. */
void config_tenants_free(struct config *cfg);

#endif
