/*
 * doctor_cmd.c: `arun doctor`. See doctor_cmd.h. Each check prints one line, "ok   …",
 * "warn …" or "fail …", with a sentence a person can act on; the exit code is 1 when any check
 * failed. It reads the config the way `arun serve` would (--config FILE, else $ARUN_CONFIG,
 * else ./arun.yaml, else the embedded defaults), then looks at this machine: /proc for memory
 * and processes, dlopen for NVML, PATH for binaries and container CLIs, a bind() for the port,
 * and data_dir's lock and database for engines an arun left behind.
 *
 * It never writes anything an arun uses: the database is opened read-only, a test file in
 * data_dir is removed at once, and the lock on data_dir is taken only for the moment of the
 * orphan check (shared and non-blocking, so an arun starting at that moment may have to be
 * started again, which it says in words).
 *
 * DESIGN
 *
 * The CLI links no layer above core, so the few things the engines layer also knows are
 * re-stated here in their simplest form: the first word of `cmd` split like a shell with
 * ${VAR} looked up in the environment (${PORT}, ${NAME} and ${DATA_DIR} are arun's own and
 * always resolve), a PATH lookup like execvp's, and the engine record arun keeps in the kv
 * table (ns 'engines': pid, start_ticks, port, container). A record names an orphan when its
 * pid is alive and started at the same clock tick as recorded (field 22 of /proc/PID/stat), so
 * a pid reused by another program is never reported.
 */
#include "cli/doctor_cmd.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/client.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/fileio.h"

#define STORE_DB_FILE "arun.db"     /* data_dir/arun.db: the store's SQLite file */
#define STORE_LOCK_FILE "arun.lock" /* data_dir/arun.lock: flock'd by the arun that runs */
#define ENGINES_NS "engines"        /* kv namespace of the supervisor's engine records */
#define NVML_LIB "libnvidia-ml.so.1"
#define MAX_PODMAN_OUTPUT (4u << 20) /* `podman ps` of a few hundred containers */
#define HEALTHZ_TIMEOUT_MS 3000      /* an arun answers /healthz at once; a stuck program never */

const char doctor_cmd_usage[] =
    "usage: arun doctor [--config FILE] [--json]\n"
    "\n"
    "Checks what arun and its engines need, without a server: the config (as `arun config\n"
    "check`), memory against node.ram_mb, the GPU (NVML, nvidia-smi), the listen port, that\n"
    "data_dir is writable, every engine's binary (first word of cmd on PATH, ${VAR}s set) or\n"
    "container CLI (podman, docker), and engine processes or containers left running by an\n"
    "arun that is gone (orphans), with how to stop them.\n"
    "\n"
    "Each check prints one line: ok, warn or fail, and a sentence. --json prints them as a\n"
    "JSON array of {\"level\", \"check\", \"message\"} instead.\n"
    "  --config FILE  configuration file (default: $ARUN_CONFIG, else ./arun.yaml)\n"
    "\n"
    "exit codes: 0 no check failed (warnings allowed), 1 a check failed, 2 usage error\n";

enum level { OK, WARN, FAIL };

struct report {
    bool json;     /* collect into items instead of printing */
    json_t *items; /* --json: the array printed at the end */
    int fails;     /* FAIL lines so far */
};

static void say(struct report *r, enum level lvl, const char *check, const char *fmt, ...)
    PRINTF_LIKE(4, 5);

static void say(struct report *r, enum level lvl, const char *check, const char *fmt, ...)
{
    static const char *const names[] = {"ok", "warn", "fail"};
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        abort(); /* out of memory: the rule of xmalloc */
    va_end(ap);
    r->fails += lvl == FAIL;
    if (r->json)
        json_array_append_new(r->items, json_pack("{s:s, s:s, s:s}", "level", names[lvl], "check",
                                                  check, "message", msg));
    else
        printf("%-4s %s: %s\n", names[lvl], check, msg);
    free(msg);
}

/* ---- small helpers ---- */

/* One value (kB) of /proc/meminfo, or -1. */
static long long meminfo_kb(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    return p != NULL ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* Reads a small file whole. Returns 0 and fills b, or -errno. */
static int read_file(const char *path, struct buf *b)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -errno;
    char chunk[4096];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = buf_append(b, chunk, n);
    fclose(f);
    return rc;
}

/* ---- config ---- */

static struct config *check_config(struct report *r, const char *flag_path)
{
    bool explicit_path;
    const char *path = config_pick_path(flag_path, &explicit_path);
    struct config *cfg = NULL;
    struct buf err;
    if (path == NULL) {
        say(r, OK, "config",
            "no config file (no --config, no $ARUN_CONFIG, no ./arun.yaml): "
            "checking the embedded defaults");
        return config_default();
    }
    buf_init(&err, 64 * 1024);
    if (config_load(path, &cfg, &err) != 0) {
        say(r, FAIL, "config", "%s is invalid: `arun serve` would refuse it (exit 2):\n%s", path,
            buf_cstr(&err));
        cfg = NULL;
    } else {
        say(r, OK, "config", "%s is valid (%zu engine%s)", path, cfg->nengines,
            cfg->nengines == 1 ? "" : "s");
    }
    buf_cleanup(&err);
    return cfg;
}

/* ---- memory ---- */

static void check_memory(struct report *r, const struct config *cfg)
{
    struct buf text;
    buf_init(&text, 1 << 20);
    if (read_file("/proc/meminfo", &text) != 0) {
        say(r, WARN, "memory", "cannot read /proc/meminfo: the envelope cannot be checked");
        goto out;
    }
    long long total_mb = meminfo_kb(buf_cstr(&text), "MemTotal:") / 1024;
    long long avail_mb = meminfo_kb(buf_cstr(&text), "MemAvailable:") / 1024;
    long long envelope =
        cfg->node.ram_mb == CONFIG_AUTO ? total_mb - cfg->node.reserve_mb : cfg->node.ram_mb;
    uint64_t largest = 0;
    const char *largest_name = NULL;
    for (size_t i = 0; i < cfg->nengines; i++)
        if (cfg->engines[i].memory.ram_mb > largest) {
            largest = cfg->engines[i].memory.ram_mb;
            largest_name = cfg->engines[i].name;
        }
    if (envelope <= 0)
        say(r, FAIL, "memory",
            "the envelope for engines is %lld MiB (%lld MiB total minus "
            "node.reserve_mb %lld): no engine that declares memory can start",
            envelope, total_mb, (long long)cfg->node.reserve_mb);
    else if (cfg->node.ram_mb != CONFIG_AUTO && cfg->node.ram_mb > total_mb)
        say(r, WARN, "memory",
            "node.ram_mb is %lld MiB, more than this machine's %lld MiB: "
            "engines may be admitted that do not fit",
            (long long)cfg->node.ram_mb, total_mb);
    else if (largest_name != NULL && (long long)largest > envelope)
        say(r, WARN, "memory",
            "engine %s declares %llu MiB, more than the envelope of %lld "
            "MiB: it will be refused",
            largest_name, (unsigned long long)largest, envelope);
    else
        say(r, OK, "memory",
            "%lld MiB total, %lld MiB available now; the envelope for engines "
            "is %lld MiB%s",
            total_mb, avail_mb, envelope,
            cfg->node.ram_mb == CONFIG_AUTO ? " (auto: total minus node.reserve_mb)" : "");
    if (largest_name != NULL && avail_mb >= 0 && (long long)largest > avail_mb &&
        (long long)largest <= envelope)
        say(r, WARN, "memory",
            "only %lld MiB is available now and engine %s declares %llu MiB: "
            "it may not start until memory is freed",
            avail_mb, largest_name, (unsigned long long)largest);
out:
    buf_cleanup(&text);
}

/* ---- GPU ---- */

typedef int (*nvml_void_fn)(void);
typedef int (*nvml_count_fn)(unsigned int *);

/* NVML's answer: the number of GPUs, or -1 with *why set. */
static int nvml_gpus(char *why, size_t why_len)
{
    void *h = dlopen(NVML_LIB, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(why, why_len, "%s", dlerror());
        return -1;
    }
    nvml_void_fn init = (nvml_void_fn)dlsym(h, "nvmlInit_v2");
    nvml_void_fn shutdown = (nvml_void_fn)dlsym(h, "nvmlShutdown");
    nvml_count_fn count = (nvml_count_fn)dlsym(h, "nvmlDeviceGetCount_v2");
    unsigned n = 0;
    int rc = -1;
    if (init == NULL || shutdown == NULL || count == NULL) {
        snprintf(why, why_len, "%s lacks nvmlInit_v2/nvmlDeviceGetCount_v2", NVML_LIB);
    } else if ((rc = init()) != 0) {
        snprintf(why, why_len, "nvmlInit failed with NVML error %d (is the driver loaded?)", rc);
        rc = -1;
    } else {
        rc = count(&n) == 0 ? (int)n : -1;
        if (rc < 0)
            snprintf(why, why_len, "nvmlDeviceGetCount failed");
        IGNORE_RESULT(shutdown());
    }
    dlclose(h);
    return rc;
}

static void check_gpu(struct report *r, const struct config *cfg)
{
    char why[512] = "";
    int gpus = nvml_gpus(why, sizeof(why));
    char *smi = fileio_which("nvidia-smi");
    if (gpus > 0)
        say(r, OK, "gpu", "%d NVIDIA GPU%s found through NVML (%s); nvidia-smi %s%s", gpus,
            gpus == 1 ? "" : "s", NVML_LIB, smi ? "at " : "not on PATH", smi ? smi : "");
    else if (gpus == 0)
        say(r, WARN, "gpu", "NVML loads but reports no GPU: engines run on CPU");
    else if (smi != NULL)
        say(r, WARN, "gpu",
            "nvidia-smi is at %s but NVML cannot be used (%s): arun cannot "
            "measure VRAM",
            smi, why);
    else if (cfg->node.vram_mb > 0)
        say(r, WARN, "gpu",
            "node.vram_mb is %lld but no NVIDIA GPU was found (%s is not "
            "loadable, no nvidia-smi on PATH)",
            (long long)cfg->node.vram_mb, NVML_LIB);
    else
        say(r, OK, "gpu",
            "no NVIDIA GPU (%s not loadable, no nvidia-smi on PATH): engines run "
            "on CPU",
            NVML_LIB);
    free(smi);
}

/* ---- the listen port ---- */

/* "http://HOST:PORT" to reach what listens at host:port from here. */
static char *local_url(const char *host, uint16_t port)
{
    if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0')
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    return strchr(host, ':') ? xasprintf("http://[%s]:%u", host, port)
                             : xasprintf("http://%s:%u", host, port);
}

/* Is an arun answering at url? */
static bool arun_answers(const char *url)
{
    struct client c;
    struct client_response res;
    bool yes = false;
    if (client_init(&c, url, "") != 0)
        return false;
    c.timeout_ms = HEALTHZ_TIMEOUT_MS;
    if (client_get(&c, "/healthz", &res) == 0) {
        yes = res.status == 200;
        client_response_cleanup(&res);
    }
    client_cleanup(&c);
    return yes;
}

/* Binds host:port once. Returns 0 (free) or -errno. */
static int try_bind(const char *host, uint16_t port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    if (getaddrinfo(host, service, &hints, &ai) != 0 || ai == NULL)
        return -EADDRNOTAVAIL;
    int rc = 0, one = 1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    /* As arun does: a port in TIME_WAIT after a restart is free for it. */
    IGNORE_RESULT(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
        rc = -errno;
    close(fd);
out:
    freeaddrinfo(ai);
    return rc;
}

static void check_listen(struct report *r, const struct config *cfg)
{
    const char *host = cfg->listen_host;
    uint16_t port = cfg->listen_port;
    int rc = try_bind(host, port);
    char *url = local_url(host, port);
    if (rc == 0)
        say(r, OK, "listen", "%s:%u is free", host, port);
    else if (rc == -EADDRINUSE && arun_answers(url))
        say(r, OK, "listen", "%s:%u is in use by a running arun (%s/healthz answers 200)", host,
            port, url);
    else if (rc == -EADDRINUSE)
        say(r, FAIL, "listen",
            "%s:%u is in use by another program: `arun serve` would fail "
            "(choose another with listen: or --listen)",
            host, port);
    else if (rc == -EACCES)
        say(r, FAIL, "listen",
            "%s:%u: port %u needs privileges arun does not have: use a port "
            "above 1023",
            host, port, port);
    else
        say(r, FAIL, "listen", "%s:%u cannot be bound: %s", host, port, strerror(-rc));
    free(url);
}

/* ---- data_dir ---- */

static void check_data_dir(struct report *r, const struct config *cfg)
{
    const char *dir = cfg->data_dir;
    struct stat st;
    if (stat(dir, &st) != 0) {
        char *parent = xstrdup(dir), *slash = strrchr(parent, '/');
        if (slash == parent)
            slash[1] = '\0';
        else if (slash != NULL)
            *slash = '\0';
        else
            strcpy(parent, ".");
        if (access(parent, W_OK | X_OK) == 0)
            say(r, OK, "data_dir", "%s does not exist yet; arun will create it", dir);
        else
            say(r, FAIL, "data_dir",
                "%s does not exist and %s is not writable: arun cannot "
                "create it",
                dir, parent);
        free(parent);
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        say(r, FAIL, "data_dir", "%s is not a directory", dir);
        return;
    }
    char *probe = xasprintf("%s/.arun-doctor-XXXXXX", dir);
    int fd = mkstemp(probe);
    if (fd < 0) {
        say(r, FAIL, "data_dir", "%s is not writable: %s", dir, strerror(errno));
    } else {
        close(fd);
        unlink(probe);
        say(r, OK, "data_dir", "%s is writable", dir);
    }
    free(probe);
}

/* ---- engines' binaries ---- */

/* The first word of cmd as a POSIX shell splits it (quotes, backslashes), raw. Heap. */
static char *first_word(const char *s)
{
    struct buf b;
    buf_init(&b, 64 * 1024);
    char quote = 0;
    while (*s == ' ' || *s == '\t' || *s == '\n')
        s++;
    for (; *s != '\0'; s++) {
        if (quote == 0 && (*s == ' ' || *s == '\t' || *s == '\n'))
            break;
        if ((quote == 0 && (*s == '\'' || *s == '"')) || *s == quote) {
            quote = quote ? 0 : *s;
            continue;
        }
        if (*s == '\\' && quote != '\'' && s[1] != '\0')
            s++;
        if (buf_append(&b, s, 1) != 0)
            break; /* 64 KiB of one word: the check below reports it as not found */
    }
    char *w = b.len ? buf_steal(&b) : xstrdup("");
    buf_cleanup(&b);
    return w;
}

/* Expands ${VAR} from the environment (arun's own ${PORT}, ${NAME}, ${DATA_DIR} always
 * resolve). Returns the heap result, or NULL with the first unset name in unset. */
static char *expand(const char *s, const struct config *cfg, const char *engine, char *unset,
                    size_t unset_len)
{
    struct buf b;
    buf_init(&b, 64 * 1024);
    for (const char *p = s; *p != '\0'; p++) {
        const char *end = p[0] == '$' && p[1] == '{' ? strchr(p + 2, '}') : NULL;
        if (p[0] == '$' && p[1] == '$') {
            IGNORE_RESULT(buf_puts(&b, "$")); /* the cap is far above a command's length */
            p++;
            continue;
        }
        if (end == NULL) {
            IGNORE_RESULT(buf_append(&b, p, 1));
            continue;
        }
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(end - p - 2), p + 2);
        const char *v = strcmp(name, "PORT") == 0       ? "41000"
                        : strcmp(name, "NAME") == 0     ? engine
                        : strcmp(name, "DATA_DIR") == 0 ? cfg->data_dir
                                                        : getenv(name);
        if (v == NULL) {
            snprintf(unset, unset_len, "%s", name);
            buf_cleanup(&b);
            return NULL;
        }
        IGNORE_RESULT(buf_puts(&b, v));
        p = end;
    }
    char *out = buf_steal(&b);
    buf_cleanup(&b);
    return out ? out : xstrdup("");
}

/* Checks a native engine's binary. Returns true when it is found. */
static bool check_cmd(struct report *r, const struct config *cfg, const struct config_engine *e,
                      const char *check, enum level missing)
{
    char unset[256];
    char *raw = first_word(e->cmd);
    char *prog = expand(raw, cfg, e->name, unset, sizeof(unset));
    char *found = NULL;
    if (prog == NULL) {
        say(r, missing, check,
            "${%s} in cmd is not set in the environment: the binary cannot be "
            "known",
            unset);
    } else if (prog[0] == '\0') {
        say(r, missing, check, "cmd is empty");
    } else if (prog[0] != '/' && strchr(prog, '/') != NULL && e->cwd != NULL) {
        /* A relative path with a '/' is resolved in the engine's cwd, where it is run. */
        char *in_cwd = xasprintf("%s/%s", e->cwd, prog);
        found = fileio_which(in_cwd);
        free(in_cwd);
    } else {
        found = fileio_which(prog);
    }
    if (prog != NULL && prog[0] != '\0' && found == NULL) {
        const char *path = getenv("PATH");
        say(r, missing, check, "binary not found: %s (PATH=%s)", prog, path ? path : "");
    } else if (found != NULL) {
        say(r, OK, check, "native, runs %s", found);
    }
    bool ok = found != NULL;
    free(found);
    free(prog);
    free(raw);
    return ok;
}

/* The container CLI engines would use (runtime.container_cli), heap, or NULL. */
static char *container_cli(const struct config *cfg, const char **name)
{
    char *p = NULL;
    if (cfg->runtime.container_cli != CONFIG_CLI_DOCKER && (p = fileio_which("podman")) != NULL)
        *name = "podman";
    else if (cfg->runtime.container_cli != CONFIG_CLI_PODMAN &&
             (p = fileio_which("docker")) != NULL)
        *name = "docker";
    return p;
}

static void check_engine(struct report *r, const struct config *cfg, const struct config_engine *e)
{
    char *check = xasprintf("engine %s", e->name);
    enum config_backend b = config_engine_backend(cfg, e);
    if (b == CONFIG_BACKEND_REMOTE) {
        if (e->api_key_env != NULL && getenv(e->api_key_env) == NULL)
            say(r, WARN, check, "remote %s, but $%s (api_key_env) is not set", e->url,
                e->api_key_env);
        else
            say(r, OK, check, "remote %s", e->url);
    } else if (b == CONFIG_BACKEND_CONTAINER || (e->image != NULL && e->cmd == NULL)) {
        const char *cli_name = NULL;
        char *cli = container_cli(cfg, &cli_name);
        if (cli != NULL)
            say(r, OK, check, "container %s, run with %s (%s)", e->image, cli_name, cli);
        else if (e->cmd != NULL && (cfg->runtime.allowed & CONFIG_ALLOW_NATIVE))
            say(r, WARN, check, "no podman or docker on PATH for image %s: it will run natively",
                e->image);
        else
            say(r, FAIL, check, "image %s needs podman or docker, and neither is on PATH",
                e->image);
        if (cli == NULL && e->cmd != NULL && (cfg->runtime.allowed & CONFIG_ALLOW_NATIVE))
            IGNORE_RESULT(check_cmd(r, cfg, e, check, FAIL));
        free(cli);
    } else if (e->cmd != NULL) {
        IGNORE_RESULT(check_cmd(r, cfg, e, check, FAIL));
    }
    free(check);
}

/* ---- orphans ---- */

/* Field 22 of /proc/PID/stat (start time in clock ticks) of a live process, or 0 when it is gone
 * or a zombie. */
static unsigned long long start_ticks(long pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    /* The command name in parentheses may hold spaces and ')': fields start after the last. */
    const char *p = strrchr(text, ')');
    if (p == NULL || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
        return 0;
    p += 2; /* field 3, the state */
    for (int field = 3; field < 22 && p != NULL; field++) {
        p = strchr(p, ' ');
        p = p ? p + 1 : NULL;
    }
    return p ? strtoull(p, NULL, 10) : 0;
}

/* Reports one engine record of arun.db when its process outlived its arun. Returns 1 when it
 * did. */
static int check_record(struct report *r, const char *name, const char *value)
{
    json_t *j = json_loads(value, 0, NULL);
    long pid = (long)json_integer_value(json_object_get(j, "pid"));
    unsigned long long ticks =
        (unsigned long long)json_integer_value(json_object_get(j, "start_ticks"));
    long port = (long)json_integer_value(json_object_get(j, "port"));
    const char *container = json_string_value(json_object_get(j, "container"));
    int found = 0;
    if (pid > 0 && ticks != 0 && start_ticks(pid) == ticks) {
        char *check = xasprintf("orphan engine %s", name);
        if (container != NULL && container[0] != '\0')
            say(r, WARN, check,
                "container %s (pid %ld) still running on port %ld with no arun "
                "(stop it with podman stop %s, or start arun to adopt it)",
                container, pid, port, container);
        else
            say(r, WARN, check,
                "pid %ld still running on port %ld with no arun (stop it with "
                "kill -TERM -%ld, or start arun to adopt it)",
                pid, port, pid);
        free(check);
        found = 1;
    }
    json_decref(j);
    return found;
}

/* Engine processes recorded in arun.db that are still alive. Returns how many, or -1 when the
 * database could not be read (said). */
static int orphan_processes(struct report *r, const char *db_path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int found = 0;
    int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(db, 2000);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "SELECT key, value FROM kv WHERE ns = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 1, ENGINES_NS, -1, SQLITE_STATIC);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        found += check_record(r, (const char *)sqlite3_column_text(st, 0),
                              (const char *)sqlite3_column_text(st, 1));
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE) {
        say(r, WARN, "orphans", "cannot read the engine records in %s: %s", db_path,
            db ? sqlite3_errmsg(db) : "out of memory");
        found = -1;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return found;
}

/* Running containers labelled arun.engine=E for an engine E of this config. */
static int orphan_containers(struct report *r, const struct config *cfg)
{
    char *podman = fileio_which("podman");
    if (podman == NULL)
        return 0;
    free(podman);
    struct buf out;
    buf_init(&out, MAX_PODMAN_OUTPUT);
    FILE *p = popen("podman ps --filter label=arun.engine --format json 2>/dev/null", "r");
    char chunk[4096];
    size_t n;
    int found = 0;
    while (p != NULL && (n = fread(chunk, 1, sizeof(chunk), p)) > 0)
        if (buf_append(&out, chunk, n) != 0)
            break;
    if (p != NULL)
        pclose(p);
    json_t *list = json_loadb(out.data ? out.data : "", out.len, 0, NULL);
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *eng =
            json_string_value(json_object_get(json_object_get(c, "Labels"), "arun.engine"));
        const char *cname = json_string_value(json_array_get(json_object_get(c, "Names"), 0));
        if (eng == NULL || config_find_engine(cfg, eng) == NULL)
            continue; /* another arun's engine, or one this config no longer has */
        char *check = xasprintf("orphan engine %s", eng);
        say(r, WARN, check,
            "container %s still running with no arun (stop it with podman stop "
            "%s, or start arun to adopt it)",
            cname ? cname : "?", cname ? cname : "?");
        free(check);
        found++;
    }
    json_decref(list);
    buf_cleanup(&out);
    return found;
}

static void check_orphans(struct report *r, const struct config *cfg)
{
    char *lock_path = xasprintf("%s/%s", cfg->data_dir, STORE_LOCK_FILE);
    char *db_path = xasprintf("%s/%s", cfg->data_dir, STORE_DB_FILE);
    int fd = -1;
    if (cfg->store.url != NULL && strcmp(cfg->store.url, "sqlite") != 0) {
        say(r, OK, "orphans",
            "the store is not the embedded SQLite: engine records are not "
            "checked");
        goto out;
    }
    fd = open(lock_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && access(db_path, F_OK) != 0) {
        say(r, OK, "orphans", "no arun has used %s yet", cfg->data_dir);
        goto out;
    }
    if (fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) != 0) {
        char text[32] = "";
        ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
        long holder = n > 0 ? strtol(text, NULL, 10) : 0;
        if (holder > 0)
            say(r, OK, "orphans", "an arun (pid %ld) runs with %s; it owns its engines", holder,
                cfg->data_dir);
        else
            say(r, OK, "orphans", "an arun runs with %s; it owns its engines", cfg->data_dir);
        goto out;
    }
    /* No arun holds data_dir (and, holding the lock, none can start while we look). */
    int procs = access(db_path, F_OK) == 0 ? orphan_processes(r, db_path) : 0;
    int containers = orphan_containers(r, cfg);
    if (procs == 0 && containers == 0)
        say(r, OK, "orphans", "no engine left running by an arun that is gone");
out:
    if (fd >= 0)
        close(fd); /* drops the lock */
    free(db_path);
    free(lock_path);
}

int doctor_cmd_main(int argc, char **argv)
{
    struct report r = {0};
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(doctor_cmd_usage, stdout);
            return CLIENT_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            r.json = true;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            config_path = argv[i] + 9;
        } else {
            fprintf(stderr, "arun doctor: unexpected argument: %s\n%s", argv[i], doctor_cmd_usage);
            return CLIENT_EXIT_USAGE;
        }
    }
    if (r.json)
        r.items = json_array();
    struct config *cfg = check_config(&r, config_path);
    if (cfg != NULL) {
        check_memory(&r, cfg);
        check_gpu(&r, cfg);
        check_listen(&r, cfg);
        check_data_dir(&r, cfg);
        for (size_t i = 0; i < cfg->nengines; i++)
            check_engine(&r, cfg, &cfg->engines[i]);
        check_orphans(&r, cfg);
    } else {
        struct config *dflt = config_default();
        check_gpu(&r, dflt); /* the machine's own checks still help while the config is fixed */
        config_free(dflt);
    }
    if (r.json) {
        client_print_json(r.items);
        json_decref(r.items);
    }
    config_free(cfg);
    return r.fails > 0 ? CLIENT_EXIT_FAILURE : CLIENT_EXIT_OK;
}
