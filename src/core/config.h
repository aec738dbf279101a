/*
 * config.h: arun.yaml, loaded, validated and resolved (contract section 2). Every key of the
 * contract is parsed and checked here, also the keys of capabilities that use them later, so a
 * config that loads today means the same thing tomorrow. Errors name file, line and key.
 *
 * Ownership: a struct config is one heap tree owned by whoever called config_load(); nothing in
 * it changes after load. Strings are heap copies; absent optional strings are NULL.
 */
#ifndef ARUN_CORE_CONFIG_H
#define ARUN_CORE_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/log.h"

#define CONFIG_DEFAULT_FILE "arun.yaml"
#define CONFIG_AUTO (-1) /* value of an integer key written as `auto` */

enum config_store_sync { CONFIG_SYNC_FULL, CONFIG_SYNC_NORMAL };
enum config_auth_mode { CONFIG_AUTH_NONE, CONFIG_AUTH_KEYS };
enum config_egress { CONFIG_EGRESS_DENY, CONFIG_EGRESS_ALLOW };
enum config_backend {
    CONFIG_BACKEND_AUTO,
    CONFIG_BACKEND_NATIVE,
    CONFIG_BACKEND_CONTAINER,
    CONFIG_BACKEND_REMOTE,
};
/* Bits of runtime.allowed. */
#define CONFIG_ALLOW_NATIVE (1u << CONFIG_BACKEND_NATIVE)
#define CONFIG_ALLOW_CONTAINER (1u << CONFIG_BACKEND_CONTAINER)
#define CONFIG_ALLOW_REMOTE (1u << CONFIG_BACKEND_REMOTE)
enum config_container_cli { CONFIG_CLI_AUTO, CONFIG_CLI_PODMAN, CONFIG_CLI_DOCKER };
enum config_probe { CONFIG_PROBE_HTTP, CONFIG_PROBE_COMPLETION };
enum config_start { CONFIG_START_ON_DEMAND, CONFIG_START_ALWAYS, CONFIG_START_MANUAL };
enum config_restart { CONFIG_RESTART_NEVER, CONFIG_RESTART_ON_FAILURE, CONFIG_RESTART_ALWAYS };
enum config_continuation { CONFIG_CONT_NONE, CONFIG_CONT_CHAT_PREFIX };
/* The `tls:` key: absent (plain HTTP, loopback only), `off` (plain HTTP, written on purpose) or
 * {cert, key} (HTTPS). */
enum config_tls_mode { CONFIG_TLS_UNSET, CONFIG_TLS_OFF, CONFIG_TLS_ON };

struct config_kv {
    char *key;
    char *value;
};

struct config_engine {
    char *name;                  /* [a-z0-9][a-z0-9._-]* */
    int line;                    /* line of its key in the file, 0 for embedded defaults */
    enum config_backend backend; /* as written; the supervisor resolves auto */
    char *cmd;                   /* native: command line, split like a shell, never run by one */
    char *image;                 /* container: image reference */
    char **args;                 /* container: extra args, nargs of them */
    size_t nargs;
    char *url;             /* remote: base URL of an OpenAI-compatible API */
    char *api_key_env;     /* remote: name of the env variable with its key */
    int port;              /* 1-65535, or CONFIG_AUTO (a free port from 41000-41999) */
    struct config_kv *env; /* nenv variables for the engine's environment */
    size_t nenv;
    char *cwd;
    char **models; /* served model names; the first is the main name */
    size_t nmodels;
    struct {
        char *path; /* HTTP probe path, default /health */
        char *cmd;  /* optional probe command; exit 0 = healthy */
        enum config_probe probe;
        uint32_t interval_ms;     /* default 1000 */
        uint32_t timeout_ms;      /* default 2000 */
        uint32_t failures;        /* default 3 */
        uint32_t stall_timeout_s; /* default 120 */
        uint32_t start_timeout_s; /* default 3600 */
    } health;
    struct {
        uint64_t ram_mb; /* declared need, 0 = not declared */
        uint64_t vram_mb;
    } memory;
    uint32_t max_concurrency; /* default 4 */
    uint32_t queue_limit;     /* default 64 */
    uint32_t ttl_s;           /* 0 = never unload when idle */
    enum config_start start;  /* default on-demand */
    char *group;              /* exclusive group, or NULL */
    struct {
        enum config_restart policy; /* default on-failure */
        uint32_t max;               /* default 5 */
        uint32_t backoff_ms;        /* default 1000 */
    } restart;
    uint32_t stop_timeout_s; /* default 15 */
    char *stop_cmd;
    uint32_t min_resident_s; /* default 30 */
    enum config_continuation continuation;
};

/* The four limits of one tenant (contract 2 `tenants:`; enforced with auth.mode: keys). 0 means
 * unlimited. */
struct config_tenant_limits {
    uint32_t requests_per_minute;   /* default 600 */
    uint32_t concurrent_requests;   /* default 64 */
    uint64_t output_tokens_per_day; /* default 0 */
    uint32_t queued_runs;           /* default 1000 */
};

/* Bits of config_tenant.set: which limits an entry wrote itself (the rest are the default's). */
#define CONFIG_TENANT_RPM (1u << 0)
#define CONFIG_TENANT_CONCURRENT (1u << 1)
#define CONFIG_TENANT_TOKENS (1u << 2)
#define CONFIG_TENANT_QUEUED (1u << 3)

/* A tenant named under `tenants:` (not `default`). */
struct config_tenant {
    char *name;                         /* [a-z0-9][a-z0-9._-]{0,63} */
    int line;                           /* line of its key in the file */
    struct config_tenant_limits limits; /* resolved: its own values, the rest from default */
    unsigned set;                       /* CONFIG_TENANT_* bits of the keys it wrote */
};

struct config_route {
    char *name;     /* the model name clients ask for */
    char **engines; /* engine names, tried in order */
    size_t nengines;
    int line;
};

struct config {
    char *path;           /* file it came from, NULL for the embedded defaults */
    char *listen_host;    /* default 127.0.0.1; IPv6 without brackets */
    uint16_t listen_port; /* default 8080 */
    struct {
        enum config_tls_mode mode; /* default CONFIG_TLS_UNSET */
        char *cert; /* CONFIG_TLS_ON: certificate chain (PEM), as written: relative to the cwd */
        char *key;  /* CONFIG_TLS_ON: its private key (PEM), as written */
    } tls;
    char *data_dir; /* default ./arun-data */
    struct {
        char *url; /* "sqlite" or postgres://… */
        enum config_store_sync synchronous;
    } store;
    enum log_level log_level;
    struct {
        enum config_auth_mode mode;
    } auth;
    struct {
        uint64_t max_body_bytes;  /* default 8388608 */
        uint32_t max_connections; /* default 200000 */
    } limits;
    struct {
        int64_t ram_mb;     /* MiB, or CONFIG_AUTO */
        int64_t vram_mb;    /* MiB, or CONFIG_AUTO */
        int64_t reserve_mb; /* default 2048 */
    } node;
    struct {
        unsigned allowed;           /* CONFIG_ALLOW_* bits; default all three */
        enum config_backend prefer; /* NATIVE or CONTAINER; default CONTAINER */
        enum config_container_cli container_cli;
    } runtime;
    struct {
        uint32_t retention_days; /* default 30; 0 = kept until deleted */
    } runs;
    struct {
        char *node_id;       /* "auto" (default): hostname:port; else [A-Za-z0-9._:-]{1,128} */
        char *advertise;     /* http(s)://host:port other nodes reach this one at, or NULL:
                                derived from listen (cluster.c says how) */
        char *secret_env;    /* default ARUN_CLUSTER_SECRET: the variable holding the secret */
        uint32_t lease_s;    /* default 10, 2..3600 */
    } cluster;
    struct {
        struct config_tenant_limits dflt; /* tenants.default, every tenant not named below */
        unsigned dflt_set;                /* CONFIG_TENANT_* bits of the keys default wrote */
        struct config_tenant *v;          /* the tenants named, in file order */
        size_t n;
    } tenants;
    enum config_egress egress;
    struct config_engine *engines;
    size_t nengines;
    struct config_route *routes;
    size_t nroutes;
};

/* Loads and validates the YAML file at path. On success returns 0 and *out (caller frees with
 * config_free). On failure returns -EINVAL (invalid content: every problem found is appended to
 * errors as one line "FILE:LINE: KEY: message", e.g.
 * "arun.yaml:7: engines.qwen.port: expected an integer 1-65535 or auto, got \"80a\"", sorted by
 * line, at most 50 then "FILE: N more errors not shown"; a YAML syntax error is the one line
 * "FILE:LINE:COLUMN: YAML syntax error: …"), -EFBIG for a file over 1 MiB, or -errno when the
 * file cannot be read (both also described in errors). errors may be NULL. */
int config_load(const char *path, struct config **out, struct buf *errors) MUST_USE;

/* Parses YAML text as if read from the file named `name` (used by config_load and the tests).
 * Same results as config_load. */
int config_parse(const char *text, size_t len, const char *name, struct config **out,
                 struct buf *errors) MUST_USE;

/* The embedded defaults: what arun runs with when no file is given and ./arun.yaml is absent. */
struct config *config_default(void);

/* Which file to load: --config FILE if given, else $ARUN_CONFIG, else ./arun.yaml if it exists,
 * else NULL (embedded defaults). *explicit_out tells whether a file was named (a named file that
 * is missing is an error; a missing ./arun.yaml is not). */
const char *config_pick_path(const char *flag_path, bool *explicit_out);

/* Parses HOST:PORT ("127.0.0.1:8080", "[::1]:8080", "localhost:80"); port 0 (an ephemeral
 * port, for tests and `--listen`) is accepted here, not in the file. Returns 0 or -EINVAL.
 * *host_out is a heap string without brackets. */
int config_parse_listen(const char *s, char **host_out, uint16_t *port_out) MUST_USE;

/* The resolved config as JSON, every key with its effective value (for `arun config check`).
 * Secrets are never in a config (keys are named by env variable), so nothing is redacted. */
json_t *config_to_json(const struct config *cfg);

/* Finds an engine by name; NULL when absent. */
const struct config_engine *config_find_engine(const struct config *cfg, const char *name);

/* The backend an engine's keys select: its explicit backend, else remote when it has a url,
 * native or container when it has only cmd or only image, and with both, runtime.prefer when
 * runtime.allowed permits it, else the other one. Whether the chosen backend's tool is present
 * (podman, the binary) is for the engines layer to find out at start. */
enum config_backend config_engine_backend(const struct config *cfg, const struct config_engine *e);

/* The egress policy (contract 5), decided here and nowhere else: whether a request may reach
 * engine e when it names the engine's model itself (via_route false) or a declared route that
 * lists e (via_route true). A local engine always may; a remote one only through a route, and
 * only with egress: allow. */
bool config_egress_allows(const struct config *cfg, const struct config_engine *e, bool via_route);

/* The entry of tenant name under `tenants:`, or NULL when it has none (tenants.default applies,
 * cfg->tenants.dflt). */
const struct config_tenant *config_find_tenant(const struct config *cfg, const char *name);

/* Whether name is a tenant name: [a-z0-9][a-z0-9._-]{0,63} (contract 6). */
bool config_tenant_name_ok(const char *name);

/* "auto", "native", "container" or "remote". */
const char *config_backend_name(enum config_backend b);

void config_free(struct config *cfg);

#endif
