/*
 * fakenvml.c: a stand-in for libnvidia-ml.so.1 (built as libfakenvml.so in the build dir) that
 * exports the NVML entry points src/engines/memory.c loads, with the signatures and struct
 * layouts of the NVML API reference. Configured by environment variables read at nvmlInit_v2:
 *
 *   FAKENVML_INIT_RC=9          what nvmlInit_v2 returns (9: driver not loaded); default 0
 *   FAKENVML_COUNT=2            devices; default 2, at most 16
 *   FAKENVML_TOTAL_MB=24576     each device's memory; default 24576
 *   FAKENVML_USED_MB=1000,2000  used memory per device; default 0
 *   FAKENVML_PROCS=1234:500,5678:700@1   compute processes, pid:MiB[@device] (device 0 default)
 *   FAKENVML_GRAPHICS=…         graphics processes, same format
 *   FAKENVML_EXTRA_PROCS=100    that many more compute processes on device 0 (pids 20000…,
 *                               1 MiB each), to make callers go through INSUFFICIENT_SIZE
 *   FAKENVML_LOST=1             nvmlDeviceGetMemoryInfo on that device says the GPU is lost
 *
 * fakenvml_refcount() tells a test how many nvmlInit_v2 calls are not yet shut down, and
 * fakenvml_calls(name) how often each process-list version was called. It is a test fake: its
 * state is static and unguarded, and it is driven from one thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
#define MAX_DEV 16
#define MAX_PROCS 4096
#define MIB (1024ull * 1024ull)

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_GPU_IS_LOST = 15,
};

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_v2_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
    unsigned long long usedGpuCcProtectedMemory;
} nvmlProcessInfo_v3_t;

struct fake_proc {
    unsigned int pid, dev;
    unsigned long long mb;
};

struct fake_list {
    struct fake_proc v[MAX_PROCS];
    unsigned int n;
};

static int refcount;
static unsigned int ndev = 2;
static unsigned long long total_mb = 24576, used_mb[MAX_DEV];
static int lost_dev = -1;
static struct fake_list compute, graphics;
static int calls_v1, calls_v2, calls_v3;
/* Handles are pointers into this array: NVML's are opaque pointers too. */
static char devices[MAX_DEV];

static unsigned long env_ul(const char *name, unsigned long dflt)
{
    const char *s = getenv(name);
    return s != NULL && *s != '\0' ? strtoul(s, NULL, 10) : dflt;
}

/* Parses "pid:mb[@dev],…" into l. */
static void parse_procs(const char *s, struct fake_list *l)
{
    l->n = 0;
    while (s != NULL && *s != '\0' && l->n < MAX_PROCS) {
        struct fake_proc p = {0};
        char *end;
        p.pid = (unsigned int)strtoul(s, &end, 10);
        if (*end == ':')
            p.mb = strtoull(end + 1, &end, 10);
        if (*end == '@')
            p.dev = (unsigned int)strtoul(end + 1, &end, 10);
        l->v[l->n++] = p;
        s = *end == ',' ? end + 1 : NULL;
    }
}

static void configure(void)
{
    ndev = (unsigned int)env_ul("FAKENVML_COUNT", 2);
    if (ndev > MAX_DEV)
        ndev = MAX_DEV;
    total_mb = env_ul("FAKENVML_TOTAL_MB", 24576);
    memset(used_mb, 0, sizeof(used_mb));
    const char *used = getenv("FAKENVML_USED_MB");
    for (unsigned int i = 0; used != NULL && *used != '\0' && i < MAX_DEV; i++) {
        char *end;
        used_mb[i] = strtoull(used, &end, 10);
        used = *end == ',' ? end + 1 : NULL;
    }
    const char *lost = getenv("FAKENVML_LOST");
    lost_dev = lost != NULL && *lost != '\0' ? atoi(lost) : -1;
    parse_procs(getenv("FAKENVML_PROCS"), &compute);
    parse_procs(getenv("FAKENVML_GRAPHICS"), &graphics);
    unsigned long extra = env_ul("FAKENVML_EXTRA_PROCS", 0);
    for (unsigned long i = 0; i < extra && compute.n < MAX_PROCS; i++)
        compute.v[compute.n++] = (struct fake_proc){(unsigned int)(20000 + i), 0, 1};
    calls_v1 = calls_v2 = calls_v3 = 0;
}

EXPORT int fakenvml_refcount(void)
{
    return refcount;
}

EXPORT int fakenvml_calls(int version)
{
    return version == 1 ? calls_v1 : version == 2 ? calls_v2 : calls_v3;
}

EXPORT nvmlReturn_t nvmlInit_v2(void)
{
    nvmlReturn_t rc = (nvmlReturn_t)env_ul("FAKENVML_INIT_RC", 0);
    if (rc != NVML_SUCCESS)
        return rc;
    if (refcount++ == 0)
        configure();
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlShutdown(void)
{
    if (refcount == 0)
        return NVML_ERROR_UNINITIALIZED;
    refcount--;
    return NVML_SUCCESS;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t r)
{
    switch (r) {
    case NVML_SUCCESS:
        return "Success";
    case NVML_ERROR_UNINITIALIZED:
        return "Uninitialized";
    case NVML_ERROR_INSUFFICIENT_SIZE:
        return "Insufficient Size";
    case 9:
        return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST:
        return "GPU is lost";
    default:
        return "Unknown Error";
    }
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    snprintf(version, length, "%s", "999.99.99-fake");
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (refcount == 0)
        return NVML_ERROR_UNINITIALIZED;
    *count = ndev;
    return NVML_SUCCESS;
}

/* The device index behind a handle, or -1. */
static int dev_index(nvmlDevice_t h)
{
    const char *p = (const char *)h;
    if (refcount == 0 || p < devices || p >= devices + ndev)
        return -1;
    return (int)(p - devices);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (refcount == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (index >= ndev)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = (nvmlDevice_t)(void *)&devices[index];
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    int i = dev_index(device);
    if (i < 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (i == lost_dev)
        return NVML_ERROR_GPU_IS_LOST;
    memory->total = total_mb * MIB;
    memory->used = used_mb[i] * MIB;
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    int i = dev_index(device);
    if (i < 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(name, length, "Fake GPU %d", i);
    return NVML_SUCCESS;
}

/* Fills infos (stride bytes each, pid at 0 and usedGpuMemory at 8 in every version) with l's
 * processes on device, as NVML does: INSUFFICIENT_SIZE with the needed count when short. */
static nvmlReturn_t list(nvmlDevice_t device, unsigned int *count, void *infos, size_t stride,
                         const struct fake_list *l)
{
    int dev = dev_index(device);
    if (dev < 0 || count == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int need = 0;
    for (unsigned int i = 0; i < l->n; i++)
        need += l->v[i].dev == (unsigned int)dev;
    if (need > *count) {
        *count = need;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned int k = 0;
    for (unsigned int i = 0; i < l->n; i++) {
        if (l->v[i].dev != (unsigned int)dev)
            continue;
        char *e = (char *)infos + (size_t)k++ * stride;
        memset(e, 0, stride);
        unsigned long long bytes = l->v[i].mb * MIB;
        memcpy(e, &l->v[i].pid, sizeof(unsigned int));
        memcpy(e + 8, &bytes, sizeof(bytes));
    }
    *count = need;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count,
                                                            nvmlProcessInfo_v3_t *infos)
{
    calls_v3++;
    return list(d, count, infos, sizeof(*infos), &compute);
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *count,
                                                            nvmlProcessInfo_v2_t *infos)
{
    calls_v2++;
    return list(d, count, infos, sizeof(*infos), &compute);
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t d, unsigned int *count,
                                                         nvmlProcessInfo_v1_t *infos)
{
    calls_v1++;
    return list(d, count, infos, sizeof(*infos), &compute);
}

EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned int *count,
                                                             nvmlProcessInfo_v3_t *infos)
{
    return list(d, count, infos, sizeof(*infos), &graphics);
}

EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t d, unsigned int *count,
                                                             nvmlProcessInfo_v2_t *infos)
{
    return list(d, count, infos, sizeof(*infos), &graphics);
}

EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses(nvmlDevice_t d, unsigned int *count,
                                                          nvmlProcessInfo_v1_t *infos)
{
    return list(d, count, infos, sizeof(*infos), &graphics);
}
