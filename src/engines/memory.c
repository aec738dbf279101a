/*
 * memory.c: the node's memory envelope (/proc/meminfo), memory pressure (PSI) and GPU memory.
 *
 * It owns the parsing of meminfo and pressure/memory, and every way arun learns about NVIDIA GPU
 * memory: NVML loaded with dlopen (no link-time dependency and no NVIDIA headers: the few types
 * and signatures used are declared below as the NVML API reference documents them), nvidia-smi
 * run as a child when the library cannot be loaded, or nothing. It promises that the absence of
 * a GPU is never an error, and that a hung nvidia-smi costs at most MEMORY_SMI_TIMEOUT_MS. It
 * does not decide admission or eviction; the supervisor does, with these numbers.
 *
 * DESIGN
 * memory_gpu_open() decides the source once and says why in a sentence, because "why does arun
 * see no GPU" is the first question on a new machine. NVML is preferred: it answers in
 * microseconds and lists graphics processes too; nvidia-smi costs a process and seconds. The
 * per-process functions exist in three struct versions (v1: pid + used; v2 adds the MIG
 * instance ids; v3 adds confidential-compute memory); the newest symbol the library exports is
 * used with its own struct, since passing a v2 array to the v3 function misreads every entry.
 * All versions keep pid at offset 0 and usedGpuMemory at offset 8, so one reader with a stride
 * serves them (checked by _Static_assert). A process shows up once per device and possibly in
 * both the compute and the graphics list of one device: per device the larger value counts (the
 * two lists report the same allocation), across devices the values add up.
 *
 * THREAD SAFETY NOTES
 * No static mutable state. A struct memory_gpu is written only by memory_gpu_open() and
 * memory_gpu_close(); memory_gpu_read() only reads it, and NVML itself is thread-safe, so reads
 * may run concurrently. nvidia-smi is started with posix_spawn (no fork of a threaded process
 * running code before exec) and waited for through a pidfd, so the kill on timeout can never hit
 * a reused pid. If another thread reaps every child (waitpid(-1)) it may take nvidia-smi's exit
 * status first: that ECHILD is treated as "exited", and the output read so far decides.
 */
#include "engines/memory.h"

#include "core/fileio.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MEMINFO_MAX 16384     /* /proc/meminfo is ~1.5 KiB */
#define PSI_FILE_MAX 512      /* two lines of ~70 bytes */
#define SMI_OUTPUT_MAX 262144 /* 256 processes on 16 GPUs is ~100 KiB of CSV */
#define NVML_PROCS_FIRST 64   /* first guess of a device's process count */
#define NVML_PROCS_MAX 4096   /* per device and list: more than any GPU can hold contexts for */
#define NVML_PROCS_TRIES 4    /* the list may grow between "how many" and "give them" */
#define MIB (1024ull * 1024ull)

/* snprintf into a fixed message field, where cutting a long path short is intended (GCC's
 * format-truncation warning sees through snprintf, not through this). */
static void set_msg(char *dst, size_t size, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void set_msg(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
}

/* strerror is not thread-safe for every errno; the GNU strerror_r is. */
static const char *errstr(int err, char *tmp, size_t size)
{
    return strerror_r(err < 0 ? -err : err, tmp, size);
}

/* ---- host memory and pressure ---- */

/* Appends proc_root/rel to out (fileio_read). Returns 0 or -errno. */
static int read_text(const char *proc_root, const char *rel, struct buf *out)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", proc_root, rel);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -ENAMETOOLONG;
    return fileio_read(path, out);
}

/* Finds "Key:   N kB" in meminfo. Returns true and *kb when present. */
static bool meminfo_kb(const char *text, const char *key, uint64_t *kb)
{
    size_t klen = strlen(key);
    for (const char *line = text; line != NULL && *line != '\0';) {
        unsigned long long v;
        if (strncmp(line, key, klen) == 0 && line[klen] == ':' &&
            sscanf(line + klen + 1, "%llu", &v) == 1) {
            *kb = v;
            return true;
        }
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return false;
}

int memory_host_read(const char *proc_root, struct memory_host *out)
{
    struct buf b;
    buf_init(&b, MEMINFO_MAX);
    uint64_t total, avail, free_kb = 0, buffers = 0, cached = 0;
    int rc = read_text(proc_root, "meminfo", &b);
    if (rc != 0)
        goto out;
    const char *text = buf_cstr(&b);
    if (!meminfo_kb(text, "MemTotal", &total)) {
        rc = -EINVAL;
        goto out;
    }
    if (!meminfo_kb(text, "MemAvailable", &avail)) {
        /* Kernels before 3.14: the old rule of thumb, which overestimates a little. */
        IGNORE_RESULT(meminfo_kb(text, "MemFree", &free_kb)); /* absent reads as 0 */
        IGNORE_RESULT(meminfo_kb(text, "Buffers", &buffers));
        IGNORE_RESULT(meminfo_kb(text, "Cached", &cached));
        avail = free_kb + buffers + cached;
    }
    out->total_mb = total / 1024;
    out->available_mb = avail / 1024;
out:
    buf_cleanup(&b);
    return rc;
}

/* Parses "N" or "N.NN" without strtod, whose decimal point follows the locale. */
static bool parse_percent(const char *s, double *out)
{
    if (*s < '0' || *s > '9')
        return false;
    double v = 0;
    for (; *s >= '0' && *s <= '9'; s++)
        v = v * 10 + (*s - '0');
    if (*s == '.') {
        double scale = 0.1;
        for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10)
            v += (*s - '0') * scale;
    }
    *out = v;
    return true;
}

/* Finds "<kind> avg10=N.NN" at the start of a line of a PSI file. */
static bool psi_avg10(const char *text, const char *kind, double *out)
{
    size_t klen = strlen(kind);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, kind, klen) == 0 && strncmp(line + klen, " avg10=", 7) == 0)
            return parse_percent(line + klen + 7, out);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return false;
}

int memory_psi_read(const char *proc_root, double *some_avg10, double *full_avg10)
{
    struct buf b;
    buf_init(&b, PSI_FILE_MAX);
    double some, full = 0;
    int rc = read_text(proc_root, "pressure/memory", &b);
    /* Built with PSI but booted with psi=0, the file exists and reading it fails. */
    if (rc == -EOPNOTSUPP)
        rc = -ENOENT;
    if (rc != 0)
        goto out;
    const char *text = buf_cstr(&b);
    if (!psi_avg10(text, "some", &some) ||
        (strstr(text, "full ") != NULL && !psi_avg10(text, "full", &full))) {
        rc = -EINVAL;
        goto out;
    }
    *some_avg10 = some;
    *full_avg10 = full;
out:
    buf_cleanup(&b);
    return rc;
}

/* ---- NVML, declared as its API reference documents it ---- */

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NO_PERMISSION 4
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_TIMEOUT 10
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_ERROR_MEMORY 20
#define NVML_DEVICE_NAME_V2_BUFFER_SIZE 96
#define NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE 80
/* usedGpuMemory when the driver cannot tell (Windows WDDM, some vGPU setups). */
#define NVML_VALUE_NOT_AVAILABLE (~0ull)

typedef struct {
    unsigned long long total, free, used; /* bytes */
} nvml_memory_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
} nvml_process_info_v1_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvml_process_info_v2_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
    unsigned long long usedGpuCcProtectedMemory;
} nvml_process_info_v3_t;

#define PROC_INFO_LAYOUT_OK(T) (offsetof(T, pid) == 0 && offsetof(T, usedGpuMemory) == 8)
_Static_assert(PROC_INFO_LAYOUT_OK(nvml_process_info_v1_t) &&
                   PROC_INFO_LAYOUT_OK(nvml_process_info_v2_t) &&
                   PROC_INFO_LAYOUT_OK(nvml_process_info_v3_t),
               "one stride reader serves every nvmlProcessInfo version");

typedef nvmlReturn_t (*nvml_void_fn)(void);
typedef nvmlReturn_t (*nvml_count_fn)(unsigned int *);
typedef nvmlReturn_t (*nvml_handle_fn)(unsigned int, nvmlDevice_t *);
typedef nvmlReturn_t (*nvml_meminfo_fn)(nvmlDevice_t, nvml_memory_t *);
typedef nvmlReturn_t (*nvml_name_fn)(nvmlDevice_t, char *, unsigned int);
typedef nvmlReturn_t (*nvml_procs_fn)(nvmlDevice_t, unsigned int *, void *);
typedef nvmlReturn_t (*nvml_version_fn)(char *, unsigned int);
typedef const char *(*nvml_error_fn)(nvmlReturn_t);

/* One of the per-process list functions, at the newest version the library has. */
struct nvml_procs {
    nvml_procs_fn fn; /* NULL when the library has none */
    size_t stride;    /* sizeof the struct that version fills */
    const char *name; /* the symbol, for error messages */
};

enum gpu_source { GPU_NONE, GPU_NVML, GPU_SMI };

struct memory_gpu {
    enum gpu_source source;
    void *dl; /* the dlopen handle while NVML is the source */
    nvml_void_fn init, shutdown;
    nvml_count_fn get_count;
    nvml_handle_fn get_handle;
    nvml_meminfo_fn get_memory;
    nvml_name_fn get_name; /* optional */
    nvml_error_fn error_string;
    nvml_version_fn driver_version; /* optional */
    struct nvml_procs compute, graphics;
    char smi_path[PATH_MAX]; /* nvidia-smi's full path when it is the source */
    int smi_timeout_ms;      /* MEMORY_SMI_TIMEOUT_MS; a test shortens it */
};

/* One (pid, device, bytes) sighting before merging. */
struct gpu_sighting {
    pid_t pid;
    int dev;
    uint64_t bytes;
};

struct sightings {
    struct gpu_sighting *v;
    size_t n, size;
};

static void sightings_add(struct sightings *s, pid_t pid, int dev, uint64_t bytes)
{
    if (s->n == s->size) {
        s->size = s->size == 0 ? 64 : s->size * 2;
        s->v = xrealloc(s->v, s->size * sizeof(*s->v));
    }
    s->v[s->n++] = (struct gpu_sighting){pid, dev, bytes};
}

static int cmp_sighting(const void *a, const void *b)
{
    const struct gpu_sighting *x = a, *y = b;
    if (x->pid != y->pid)
        return (x->pid > y->pid) - (x->pid < y->pid);
    return (x->dev > y->dev) - (x->dev < y->dev);
}

/* Merges sightings into out->procs: per (pid, device) the larger value, summed over devices. */
static void sightings_merge(struct sightings *s, struct memory_gpu_snapshot *out)
{
    if (s->n > 0)
        qsort(s->v, s->n, sizeof(*s->v), cmp_sighting);
    for (size_t i = 0; i < s->n;) {
        pid_t pid = s->v[i].pid;
        uint64_t total = 0;
        while (i < s->n && s->v[i].pid == pid) {
            uint64_t best = 0;
            int dev = s->v[i].dev;
            for (; i < s->n && s->v[i].pid == pid && s->v[i].dev == dev; i++)
                best = s->v[i].bytes > best ? s->v[i].bytes : best;
            total += best;
        }
        if (out->nprocs < MEMORY_GPU_MAX_PROCS)
            out->procs[out->nprocs++] = (struct memory_gpu_proc){pid, total / MIB};
    }
    free(s->v);
    *s = (struct sightings){0};
}

static int nvml_errno(nvmlReturn_t r)
{
    switch (r) {
    case NVML_SUCCESS:
        return 0;
    case NVML_ERROR_NOT_SUPPORTED:
        return -ENOTSUP;
    case NVML_ERROR_NO_PERMISSION:
        return -EACCES;
    case NVML_ERROR_NOT_FOUND:
    case NVML_ERROR_DRIVER_NOT_LOADED:
        return -ENOENT;
    case NVML_ERROR_TIMEOUT:
        return -ETIMEDOUT;
    case NVML_ERROR_GPU_IS_LOST:
        return -ENODEV;
    case NVML_ERROR_MEMORY:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* Records what failed in out->error and returns the matching -errno. */
static int nvml_fail(const struct memory_gpu *g, struct memory_gpu_snapshot *out, nvmlReturn_t r,
                     const char *what, unsigned int dev)
{
    set_msg(out->error, sizeof(out->error), "%s(GPU %u) failed: %s", what, dev, g->error_string(r));
    return nvml_errno(r);
}

/* Reads one device's list (compute or graphics) into s, growing the array on
 * NVML_ERROR_INSUFFICIENT_SIZE. NOT_SUPPORTED (some vGPU and MIG setups) reads as no processes. */
static int nvml_read_procs(const struct memory_gpu *g, const struct nvml_procs *f, nvmlDevice_t h,
                           unsigned int dev, struct sightings *s, struct memory_gpu_snapshot *out)
{
    if (f->fn == NULL)
        return 0;
    unsigned int want = NVML_PROCS_FIRST;
    unsigned char *buf = NULL;
    nvmlReturn_t r = NVML_ERROR_INSUFFICIENT_SIZE;
    for (int tries = 0; tries < NVML_PROCS_TRIES && r == NVML_ERROR_INSUFFICIENT_SIZE; tries++) {
        if (want > NVML_PROCS_MAX)
            want = NVML_PROCS_MAX;
        buf = xrealloc(buf, (size_t)want * f->stride);
        unsigned int count = want;
        r = f->fn(h, &count, buf);
        if (r == NVML_SUCCESS) {
            for (unsigned int i = 0; i < count && i < want; i++) {
                unsigned int pid;
                unsigned long long used;
                memcpy(&pid, buf + (size_t)i * f->stride, sizeof(pid));
                memcpy(&used, buf + (size_t)i * f->stride + 8, sizeof(used));
                if (used != NVML_VALUE_NOT_AVAILABLE && pid > 0)
                    sightings_add(s, (pid_t)pid, (int)dev, used);
            }
        }
        /* Processes may start between NVML's count and our retry: leave some room. */
        want = count + 16;
    }
    free(buf);
    if (r == NVML_SUCCESS || r == NVML_ERROR_NOT_SUPPORTED)
        return 0;
    return nvml_fail(g, out, r, f->name, dev);
}

static int nvml_read_device(const struct memory_gpu *g, unsigned int i, struct sightings *s,
                            struct memory_gpu_snapshot *out)
{
    nvmlDevice_t h;
    nvmlReturn_t r = g->get_handle(i, &h);
    if (r != NVML_SUCCESS)
        return nvml_fail(g, out, r, "nvmlDeviceGetHandleByIndex_v2", i);
    nvml_memory_t mem;
    r = g->get_memory(h, &mem);
    if (r != NVML_SUCCESS)
        return nvml_fail(g, out, r, "nvmlDeviceGetMemoryInfo", i);
    struct memory_gpu_device *d = &out->dev[i];
    d->total_mb = mem.total / MIB;
    d->used_mb = mem.used / MIB;
    char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = "";
    if (g->get_name != NULL && g->get_name(h, name, sizeof(name)) == NVML_SUCCESS) {
        name[sizeof(d->name) - 1] = '\0'; /* names run to ~30 bytes; the buffer size is NVML's */
        memcpy(d->name, name, sizeof(d->name));
    }
    int rc = nvml_read_procs(g, &g->compute, h, i, s, out);
    if (rc == 0)
        rc = nvml_read_procs(g, &g->graphics, h, i, s, out);
    return rc;
}

static int nvml_read(const struct memory_gpu *g, struct memory_gpu_snapshot *out)
{
    unsigned int count;
    nvmlReturn_t r = g->get_count(&count);
    if (r != NVML_SUCCESS)
        return nvml_fail(g, out, r, "nvmlDeviceGetCount_v2", 0);
    if (count > MEMORY_GPU_MAX_DEVICES)
        count = MEMORY_GPU_MAX_DEVICES;
    struct sightings s = {0};
    int rc = 0;
    for (unsigned int i = 0; i < count && rc == 0; i++)
        rc = nvml_read_device(g, i, &s, out);
    if (rc == 0)
        out->ndevices = (int)count;
    sightings_merge(&s, out);
    if (rc != 0)
        out->nprocs = 0;
    return rc;
}

/* dlsym into a function pointer: ISO C has no object-to-function pointer conversion, POSIX
 * guarantees this one works. */
#define DLSYM(g, field, sym) (*(void **)&(g)->field = dlsym((g)->dl, (sym)))

/* Picks the newest of NAME_v3, NAME_v2, NAME with its struct size. */
static void nvml_find_procs(struct memory_gpu *g, struct nvml_procs *f, const char *v3,
                            const char *v2, const char *v1)
{
    const struct {
        const char *sym;
        size_t stride;
    } versions[] = {
        {v3, sizeof(nvml_process_info_v3_t)},
        {v2, sizeof(nvml_process_info_v2_t)},
        {v1, sizeof(nvml_process_info_v1_t)},
    };
    for (size_t i = 0; i < ARRAY_SIZE(versions); i++) {
        *(void **)&f->fn = dlsym(g->dl, versions[i].sym);
        if (f->fn != NULL) {
            f->stride = versions[i].stride;
            f->name = versions[i].sym;
            return;
        }
    }
}

/* Loads NVML from lib and initialises it. Returns 0, or -errno with a sentence in fail. */
static int nvml_load(struct memory_gpu *g, const char *lib, char *fail, size_t fail_size)
{
    g->dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (g->dl == NULL) {
        const char *e = dlerror();
        if (e != NULL && strstr(e, "No such file") != NULL)
            set_msg(fail, fail_size, "%s not found", lib);
        else
            set_msg(fail, fail_size, "cannot load %s: %s", lib, e != NULL ? e : "?");
        return -ENOENT;
    }
    DLSYM(g, init, "nvmlInit_v2");
    DLSYM(g, shutdown, "nvmlShutdown");
    DLSYM(g, get_count, "nvmlDeviceGetCount_v2");
    DLSYM(g, get_handle, "nvmlDeviceGetHandleByIndex_v2");
    DLSYM(g, get_memory, "nvmlDeviceGetMemoryInfo");
    DLSYM(g, error_string, "nvmlErrorString");
    DLSYM(g, get_name, "nvmlDeviceGetName");
    DLSYM(g, driver_version, "nvmlSystemGetDriverVersion");
    nvml_find_procs(g, &g->compute, "nvmlDeviceGetComputeRunningProcesses_v3",
                    "nvmlDeviceGetComputeRunningProcesses_v2",
                    "nvmlDeviceGetComputeRunningProcesses");
    nvml_find_procs(g, &g->graphics, "nvmlDeviceGetGraphicsRunningProcesses_v3",
                    "nvmlDeviceGetGraphicsRunningProcesses_v2",
                    "nvmlDeviceGetGraphicsRunningProcesses");
    if (g->init == NULL || g->shutdown == NULL || g->get_count == NULL || g->get_handle == NULL ||
        g->get_memory == NULL || g->error_string == NULL) {
        set_msg(fail, fail_size, "%s lacks the NVML v2 entry points (too old a driver?)", lib);
        goto fail;
    }
    nvmlReturn_t r = g->init();
    if (r != NVML_SUCCESS) {
        set_msg(fail, fail_size, "nvmlInit_v2 via %s failed: %s", lib, g->error_string(r));
        goto fail;
    }
    return 0;
fail:
    dlclose(g->dl);
    g->dl = NULL;
    return -ENOENT;
}

/* ---- nvidia-smi ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Finds an executable regular file named name in $PATH. */
static bool find_on_path(const char *name, char *out, size_t size)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        return false;
    for (const char *p = path; *p != '\0';) {
        const char *end = strchrnul(p, ':');
        int n = snprintf(out, size, "%.*s/%s", (int)(end - p), p, name);
        struct stat st;
        if (end > p && n > 0 && (size_t)n < size && stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
            access(out, X_OK) == 0)
            return true;
        p = *end == ':' ? end + 1 : end;
    }
    return false;
}

static int pidfd_open_compat(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/* Starts path with argv, stdout into a pipe, stdin and stderr on /dev/null, default signal
 * dispositions and an empty mask (the worker thread's mask must not leak into it). */
static int smi_spawn(const char *path, char *const argv[], pid_t *pid, int *out_fd)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -errno;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    int sigs[] = {SIGPIPE, SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
        sigaddset(&defaults, sigs[i]);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = -posix_spawn(pid, path, &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return rc;
    }
    *out_fd = fds[0];
    return 0;
}

/* Reads the child's stdout into out until EOF, the cap, or the deadline. */
static int smi_collect(int fd, int64_t deadline, struct buf *out)
{
    char chunk[4096];
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int n = poll(&pfd, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            continue;
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return 0;
        int rc = buf_append(out, chunk, (size_t)r);
        if (rc != 0)
            return rc;
    }
}

/* Waits for the child's exit until the deadline; kills it (through the pidfd when there is one,
 * so never a reused pid) on timeout. Returns its wait status, or -1 when someone else reaped it,
 * and -ETIMEDOUT in *rc when it had to be killed. */
static int smi_reap(pid_t pid, int pidfd, int64_t deadline, int *rc)
{
    if (pidfd >= 0 && *rc == 0) {
        for (;;) {
            int64_t left = deadline - now_ms();
            struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
            int n = left > 0 ? poll(&pfd, 1, (int)left) : 0;
            if (n < 0 && errno == EINTR)
                continue;
            if (n == 0)
                *rc = -ETIMEDOUT;
            break;
        }
    }
    if (*rc != 0) {
#ifdef SYS_pidfd_send_signal
        if (pidfd >= 0)
            syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        else
#endif
            kill(pid, SIGKILL);
    }
    int status;
    pid_t w;
    do {
        w = waitpid(pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    return w == pid ? status : -1;
}

/* Runs `nvidia-smi QUERY --format=csv,noheader,nounits`; its stdout lands in out. Returns 0 or
 * -errno with a sentence in err. */
static int smi_run(const struct memory_gpu *g, const char *query, struct buf *out, char *err,
                   size_t esize)
{
    const char *path = g->smi_path;
    char tmp[128];
    char *argv[] = {(char *)"nvidia-smi", (char *)query, (char *)"--format=csv,noheader,nounits",
                    NULL};
    int64_t deadline = now_ms() + g->smi_timeout_ms;
    pid_t pid;
    int fd = -1;
    int rc = smi_spawn(path, argv, &pid, &fd);
    if (rc != 0) {
        set_msg(err, esize, "cannot run %s: %s", path, errstr(rc, tmp, sizeof(tmp)));
        return rc;
    }
    int pidfd = pidfd_open_compat(pid);
    rc = smi_collect(fd, deadline, out);
    close(fd);
    int status = smi_reap(pid, pidfd, deadline, &rc);
    if (pidfd >= 0)
        close(pidfd);
    if (rc == -ETIMEDOUT)
        set_msg(err, esize, "%s %s gave no answer within %d ms", path, query, g->smi_timeout_ms);
    else if (rc != 0)
        set_msg(err, esize, "reading %s %s: %s", path, query, errstr(rc, tmp, sizeof(tmp)));
    else if (status != -1 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        set_msg(err, esize, "%s %s exited with %s %d", path, query,
                WIFEXITED(status) ? "status" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        rc = -EIO;
    }
    return rc;
}

/* Parses one numeric CSV field ("1000, …") and steps past its comma and spaces. False for
 * anything else ("[N/A]", "[Not Supported]"). */
static bool csv_u64(const char **s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(*s, &end, 10);
    if (end == *s || errno != 0 || (*end != ',' && *end != '\0' && *end != '\n'))
        return false;
    *out = v;
    *s = *end == ',' ? end + 1 : end;
    while (**s == ' ')
        (*s)++;
    return true;
}

/* "24576, 1000, NVIDIA GeForce RTX 4090" per GPU. A line with [N/A] is skipped. */
static void smi_parse_gpus(char *text, struct memory_gpu_snapshot *out)
{
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        const char *p = line;
        uint64_t total, used;
        if (out->ndevices == MEMORY_GPU_MAX_DEVICES || !csv_u64(&p, &total) || !csv_u64(&p, &used))
            continue;
        struct memory_gpu_device *d = &out->dev[out->ndevices++];
        d->total_mb = total;
        d->used_mb = used;
        set_msg(d->name, sizeof(d->name), "%.*s", (int)strcspn(p, "\r"), p);
    }
}

/* "1234, 500" per (process, GPU); nvidia-smi has no graphics-process query. */
static void smi_parse_apps(char *text, struct memory_gpu_snapshot *out)
{
    struct sightings s = {0};
    char *save = NULL;
    int line_no = 0;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save), line_no++) {
        const char *p = line;
        uint64_t pid, used;
        if (!csv_u64(&p, &pid) || !csv_u64(&p, &used) || pid == 0 || pid > INT32_MAX)
            continue;
        /* The line is the device: each line of one pid is another GPU, so they add up. */
        sightings_add(&s, (pid_t)pid, line_no, used * MIB);
    }
    sightings_merge(&s, out);
}

static int smi_read(const struct memory_gpu *g, struct memory_gpu_snapshot *out)
{
    struct buf text;
    buf_init(&text, SMI_OUTPUT_MAX);
    int rc = smi_run(g, "--query-gpu=memory.total,memory.used,name", &text, out->error,
                     sizeof(out->error));
    if (rc != 0)
        goto out;
    if (text.len > 0)
        smi_parse_gpus(text.data, out);
    buf_reset(&text);
    rc = smi_run(g, "--query-compute-apps=pid,used_memory", &text, out->error, sizeof(out->error));
    if (rc != 0) {
        out->ndevices = 0;
        goto out;
    }
    if (text.len > 0)
        smi_parse_apps(text.data, out);
out:
    buf_cleanup(&text);
    return rc;
}

/* ---- the public face ---- */

static const char *source_name(enum gpu_source s)
{
    switch (s) {
    case GPU_NVML:
        return "nvml";
    case GPU_SMI:
        return "nvidia-smi";
    default:
        return "none";
    }
}

static void snapshot_reset(const struct memory_gpu *g, struct memory_gpu_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    out->source = source_name(g->source);
}

/* Appends to why when there is one; a full why buffer only shortens the explanation. */
static void why_printf(struct buf *why, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void why_printf(struct buf *why, const char *fmt, ...)
{
    if (why == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(why, fmt, ap);
    va_end(ap);
}

static void open_nvml_done(struct memory_gpu *g, const char *lib, struct buf *why)
{
    char version[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE] = "";
    if (g->driver_version == NULL || g->driver_version(version, sizeof(version)) != NVML_SUCCESS)
        snprintf(version, sizeof(version), "(driver version unknown)");
    unsigned int count = 0;
    nvmlReturn_t r = g->get_count(&count);
    g->source = GPU_NVML;
    if (r != NVML_SUCCESS)
        why_printf(why, "NVML %s via %s: cannot count GPUs: %s", version, lib, g->error_string(r));
    else
        why_printf(why, "NVML %s via %s: %u GPU%s", version, lib, count, count == 1 ? "" : "s");
}

struct memory_gpu *memory_gpu_open(const char *nvml_path, struct buf *why)
{
    struct memory_gpu *g = xcalloc(1, sizeof(*g));
    g->smi_timeout_ms = MEMORY_SMI_TIMEOUT_MS;
    const char *lib = nvml_path != NULL ? nvml_path : "libnvidia-ml.so.1";
    char nvml_why[256];
    if (nvml_load(g, lib, nvml_why, sizeof(nvml_why)) == 0) {
        open_nvml_done(g, lib, why);
        return g;
    }
    if (!find_on_path("nvidia-smi", g->smi_path, sizeof(g->smi_path))) {
        why_printf(why, "no NVIDIA driver: %s and nvidia-smi not on PATH", nvml_why);
        return g;
    }
    struct memory_gpu_snapshot *snap = xmalloc(sizeof(*snap));
    g->source = GPU_SMI;
    snapshot_reset(g, snap);
    int rc = smi_read(g, snap);
    if (rc == 0) {
        why_printf(why, "nvidia-smi at %s: %d GPU%s (NVML unusable: %s)", g->smi_path,
                   snap->ndevices, snap->ndevices == 1 ? "" : "s", nvml_why);
    } else {
        g->source = GPU_NONE;
        why_printf(why, "no usable NVIDIA driver: %s, and %s", nvml_why, snap->error);
    }
    free(snap);
    return g;
}

int memory_gpu_read(struct memory_gpu *g, struct memory_gpu_snapshot *out)
{
    snapshot_reset(g, out);
    switch (g->source) {
    case GPU_NVML:
        return nvml_read(g, out);
    case GPU_SMI:
        return smi_read(g, out);
    default:
        return 0;
    }
}

const char *memory_gpu_source(const struct memory_gpu *g)
{
    return source_name(g->source);
}

void memory_gpu_close(struct memory_gpu *g)
{
    if (g == NULL)
        return;
    if (g->dl != NULL) {
        g->shutdown();
        dlclose(g->dl);
    }
    free(g);
}
