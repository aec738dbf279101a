/*
 * doctor_cmd.c: `arun doctor`. See doctor_cmd.h. Each check prints one line, "ok   …",
 * "warn …" or "fail …", with a sentence a person can act on; the exit code is 1 when any check
 * failed. It reads the config the way `arun serve` would (--config FILE, else $ARUN_CONFIG,
 * else ./arun.yaml, else the embedded defaults), then looks at this machine: /proc for memory
 * and processes, NVML or nvidia-smi, PATH for binaries and container CLIs, a bind() for the port,
 * and data_dir's lock and database for engines an arun left behind.
 *
 * It never writes anything an arun uses: the database is opened read-only, a test file in
 * data_dir is removed at once, and the lock on data_dir is taken only for the moment of the
 * orphan check (shared and non-blocking, so an arun starting at that moment may have to be
 * started again, which it says in words).
 *
 * DESIGN
 *
 * The doctor restates nothing the engines and store layers know: it links their loop-free
 * modules and asks them. Host memory and the GPUs come from engines/memory (MemTotal,
 * MemAvailable; NVML, else nvidia-smi), the envelope and what it refuses from engines/admission
 * (the rules the supervisor applies), `cmd` is split and expanded by engines/manifest exactly as
 * a spawn would, the engine record is engines/record's, the database and lock file names are
 * store/store.h's, and a process is "the same" by engines/proc (pid and start time, so a pid
 * reused by another program is never reported). Orphans are found two ways, as the next arun
 * would find them: through the records, and through the environment marker every engine
 * process carries (manifest.h), which also finds engines started just before an arun died.
 */
#include "cli/doctor_cmd.h"

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
#include "engines/admission.h"
#include "engines/manifest.h"
#include "engines/memory.h"
#include "engines/proc.h"
#include "engines/record.h"
#include "store/store.h"

#define MAX_ORPHANS_SHOWN 64         /* marked processes listed one by one; more are counted */
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

/* ---- memory and GPUs ---- */

/* What the machine has, read once for the memory and GPU checks. */
struct machine {
    struct memory_host host;
    bool host_ok;
    struct memory_gpu_snapshot gpu;
    bool gpu_ok;
    uint64_t gpu_total_mb;
    char gpu_why[512]; /* which GPU source was picked and why */
};

static void read_machine(struct machine *m)
{
    struct buf why;
    buf_init(&why, sizeof(m->gpu_why) - 1);
    m->host_ok = memory_host_read("/proc", &m->host) == 0;
    struct memory_gpu *g = memory_gpu_open(NULL, &why);
    m->gpu_ok = memory_gpu_read(g, &m->gpu) == 0;
    memory_gpu_close(g);
    for (int i = 0; m->gpu_ok && i < m->gpu.ndevices; i++)
        m->gpu_total_mb += m->gpu.dev[i].total_mb;
    snprintf(m->gpu_why, sizeof(m->gpu_why), "%s", buf_cstr(&why));
    buf_cleanup(&why);
}

/* The first engine the supervisor would refuse as too large for the envelope, or SIZE_MAX. */
static size_t first_too_large(const struct config *cfg, const struct admission_envelope *env,
                              bool *vram)
{
    size_t found = SIZE_MAX, n = cfg->nengines;
    struct admission_engine *snap = xcalloc(n ? n : 1, sizeof(*snap));
    size_t *stop = xcalloc(n ? n : 1, sizeof(*stop));
    for (size_t i = 0; i < n; i++)
        snap[i] = (struct admission_engine){.name = cfg->engines[i].name,
                                            .need_ram_mb = cfg->engines[i].memory.ram_mb,
                                            .need_vram_mb = cfg->engines[i].memory.vram_mb};
    for (size_t i = 0; i < n && found == SIZE_MAX; i++) {
        struct admission_decision d;
        admission_decide(snap, n, i, env, stop, &d);
        if (d.verdict == ADMISSION_TOO_LARGE) {
            found = i;
            *vram = d.vram;
        }
    }
    free(stop);
    free(snap);
    return found;
}

static void check_memory(struct report *r, const struct config *cfg, const struct machine *m)
{
    if (!m->host_ok) {
        say(r, WARN, "memory", "cannot read /proc/meminfo: the envelope cannot be checked");
        return;
    }
    struct admission_envelope env;
    admission_envelope(cfg, m->host.total_mb, m->gpu_total_mb, m->gpu_why, &env);
    long long total_mb = (long long)m->host.total_mb, avail_mb = (long long)m->host.available_mb;
    long long envelope = (long long)env.ram_mb;
    uint64_t largest = 0;
    const char *largest_name = NULL;
    for (size_t i = 0; i < cfg->nengines; i++)
        if (cfg->engines[i].memory.ram_mb > largest) {
            largest = cfg->engines[i].memory.ram_mb;
            largest_name = cfg->engines[i].name;
        }
    bool vram = false;
    size_t big = first_too_large(cfg, &env, &vram);
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
    else if (big != SIZE_MAX)
        say(r, WARN, "memory",
            "engine %s declares %llu MiB of %s, more than the envelope of %llu MiB: it will be "
            "refused",
            cfg->engines[big].name,
            (unsigned long long)(vram ? cfg->engines[big].memory.vram_mb
                                      : cfg->engines[big].memory.ram_mb),
            vram ? "VRAM" : "RAM", (unsigned long long)(vram ? env.vram_mb : env.ram_mb));
    else
        say(r, OK, "memory",
            "%lld MiB total, %lld MiB available now; the envelope for engines "
            "is %lld MiB%s",
            total_mb, avail_mb, envelope,
            cfg->node.ram_mb == CONFIG_AUTO ? " (auto: total minus node.reserve_mb)" : "");
    if (largest_name != NULL && (long long)largest > avail_mb && (long long)largest <= envelope)
        say(r, WARN, "memory",
            "only %lld MiB is available now and engine %s declares %llu MiB: "
            "it may not start until memory is freed",
            avail_mb, largest_name, (unsigned long long)largest);
}

static void check_gpu(struct report *r, const struct config *cfg, const struct machine *m)
{
    const char *source = m->gpu_ok ? m->gpu.source : "none";
    if (!m->gpu_ok)
        say(r, WARN, "gpu", "the GPUs cannot be read (%s): arun cannot measure VRAM", m->gpu.error);
    else if (strcmp(source, "none") != 0 && m->gpu.ndevices > 0)
        say(r, OK, "gpu", "%d NVIDIA GPU%s, %llu MiB in all (%s)", m->gpu.ndevices,
            m->gpu.ndevices == 1 ? "" : "s", (unsigned long long)m->gpu_total_mb, m->gpu_why);
    else if (strcmp(source, "none") != 0)
        say(r, WARN, "gpu", "%s answers but reports no GPU: engines run on CPU", source);
    else if (cfg->node.vram_mb > 0)
        say(r, WARN, "gpu", "node.vram_mb is %lld but no NVIDIA GPU was found (%s)",
            (long long)cfg->node.vram_mb, m->gpu_why);
    else
        say(r, OK, "gpu", "no NVIDIA GPU (%s): engines run on CPU", m->gpu_why);
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
    /* As arun does: a port in TIME_WAIT after a restart is free for it. Without the option the
     * check is only stricter. */
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

/* Checks a native engine's binary as a spawn would find it (cmd split and expanded by
 * manifest_argv, ${PORT} as the first auto port) and says what it found. */
static void check_cmd(struct report *r, const struct config *cfg, const struct config_engine *e,
                      const char *check, enum level missing)
{
    struct manifest_vars v = {.name = e->name, .port = 41000, .data_dir = cfg->data_dir};
    struct buf err;
    buf_init(&err, 1024);
    char **argv = NULL, *found = NULL;
    if (manifest_argv(e->cmd, &v, &argv, &err) != 0) {
        say(r, missing, check, "cmd: %s: the binary cannot be known", buf_cstr(&err));
    } else if (argv[0] == NULL || argv[0][0] == '\0') {
        say(r, missing, check, "cmd is empty");
    } else if (argv[0][0] != '/' && strchr(argv[0], '/') != NULL && e->cwd != NULL) {
        /* A relative path with a '/' is resolved in the engine's cwd, where it is run. */
        char *in_cwd = xasprintf("%s/%s", e->cwd, argv[0]);
        found = manifest_which(in_cwd);
        free(in_cwd);
    } else {
        found = manifest_which(argv[0]);
    }
    if (argv != NULL && argv[0] != NULL && argv[0][0] != '\0' && found == NULL) {
        const char *path = getenv("PATH");
        say(r, missing, check, "binary not found: %s (PATH=%s)", argv[0], path ? path : "");
    } else if (found != NULL) {
        say(r, OK, check, "native, runs %s", found);
    }
    free(found);
    manifest_argv_free(argv);
    buf_cleanup(&err);
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
            check_cmd(r, cfg, e, check, FAIL);
        free(cli);
    } else if (e->cmd != NULL) {
        check_cmd(r, cfg, e, check, FAIL);
    }
    free(check);
}

/* ---- orphans ---- */

/* Reports one engine record of arun.db when its process outlived its arun. Returns its pid
 * when it did, else 0. */
static pid_t check_record(struct report *r, const char *name, const char *value)
{
    struct engine_record rec;
    if (engine_record_parse(value, strlen(value), &rec) != 0 || rec.pid <= 0 ||
        rec.start_ticks == 0 ||
        !proc_alive("/proc", (struct proc_id){.pid = rec.pid, .start_ticks = rec.start_ticks}))
        return 0;
    char *check = xasprintf("orphan engine %s", name);
    if (rec.container[0] != '\0')
        say(r, WARN, check,
            "container %s (pid %ld) still running on port %u with no arun "
            "(stop it with podman stop %s, or start arun to adopt it)",
            rec.container, (long)rec.pid, rec.port, rec.container);
    else
        say(r, WARN, check,
            "pid %ld still running on port %u with no arun (stop it with "
            "kill -TERM -%ld, or start arun to adopt it)",
            (long)rec.pid, rec.port, (long)rec.pid);
    free(check);
    return rec.pid;
}

/* Engine processes recorded in arun.db that are still alive, their pids added to seen (room
 * for MAX_ORPHANS_SHOWN). Returns how many, or -1 when the database could not be read (said). */
static int orphan_processes(struct report *r, const char *db_path, pid_t *seen, size_t *nseen)
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
        rc = sqlite3_bind_text(st, 1, ENGINE_RECORD_NS, -1, SQLITE_STATIC);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        pid_t pid = check_record(r, (const char *)sqlite3_column_text(st, 0),
                                 (const char *)sqlite3_column_text(st, 1));
        found += pid > 0;
        if (pid > 0 && *nseen < MAX_ORPHANS_SHOWN)
            seen[(*nseen)++] = pid;
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

/* Engine processes no record names (started just before their arun died): found by the
 * environment marker of this data_dir. Group leaders only: what they started goes with them. */
static int orphan_marked(struct report *r, const struct config *cfg, const pid_t *seen,
                         size_t nseen)
{
    char prefix[MANIFEST_MARKER_MAX], mark[MANIFEST_MARKER_MAX];
    manifest_marker(cfg->data_dir, "", prefix, sizeof(prefix));
    struct proc_table t;
    int found = 0;
    if (proc_table_read("/proc", &t) != 0)
        return 0;
    for (size_t i = 0; i < t.n; i++) {
        const struct proc_info *p = &t.procs[i];
        bool known = false;
        for (size_t k = 0; k < nseen && !known; k++)
            known = seen[k] == p->pid || seen[k] == p->pgid;
        if (known || proc_info_gone(p) || p->pgid != p->pid ||
            proc_environ_get("/proc", p->pid, MANIFEST_MARKER_ENV, mark, sizeof(mark)) != 0 ||
            strncmp(mark, prefix, strlen(prefix)) != 0)
            continue;
        char *check = xasprintf("orphan engine %s", mark + strlen(prefix));
        say(r, WARN, check,
            "pid %ld still running with no arun and no record (stop it with kill -TERM -%ld, "
            "or start arun, which stops it)",
            (long)p->pid, (long)p->pid);
        free(check);
        found++;
    }
    proc_table_free(&t);
    return found;
}

/* Running containers labelled arun.engine=E for an engine E of this config, of this data_dir (its
 * id in the data_dir label; none on a container of an arun from before the label). */
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
    char id[MANIFEST_MARKER_MAX];
    size_t i;
    json_t *c;
    manifest_marker(cfg->data_dir, "", id, sizeof(id));
    json_array_foreach(list, i, c)
    {
        json_t *labels = json_object_get(c, "Labels");
        const char *eng = json_string_value(json_object_get(labels, "arun.engine"));
        const char *dir = json_string_value(json_object_get(labels, MANIFEST_DATA_DIR_LABEL));
        const char *cname = json_string_value(json_array_get(json_object_get(c, "Names"), 0));
        if (eng == NULL || config_find_engine(cfg, eng) == NULL ||
            (dir != NULL && strncmp(dir, id, 16) != 0))
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
    pid_t seen[MAX_ORPHANS_SHOWN];
    size_t nseen = 0;
    int procs = access(db_path, F_OK) == 0 ? orphan_processes(r, db_path, seen, &nseen) : 0;
    int marked = orphan_marked(r, cfg, seen, nseen);
    int containers = orphan_containers(r, cfg);
    if (procs == 0 && marked == 0 && containers == 0)
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
    struct machine m = {0};
    read_machine(&m);
    if (cfg != NULL) {
        check_memory(&r, cfg, &m);
        check_gpu(&r, cfg, &m);
        check_listen(&r, cfg);
        check_data_dir(&r, cfg);
        for (size_t i = 0; i < cfg->nengines; i++)
            check_engine(&r, cfg, &cfg->engines[i]);
        check_orphans(&r, cfg);
    } else {
        struct config *dflt = config_default();
        check_gpu(&r, dflt, &m); /* the machine's checks still help while the config is fixed */
        config_free(dflt);
    }
    if (r.json) {
        client_print_json(r.items);
        json_decref(r.items);
    }
    config_free(cfg);
    return r.fails > 0 ? CLIENT_EXIT_FAILURE : CLIENT_EXIT_OK;
}
