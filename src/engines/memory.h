/*
 * memory.h: the node's memory envelope and pressure, and GPU memory per device and per process.
 * Host numbers come from /proc (meminfo, pressure/memory); GPU numbers from NVML, loaded at run
 * time with dlopen, or from nvidia-smi when NVML cannot be loaded, or from nothing: a machine
 * without a GPU is a normal case, not an error.
 *
 * Every function may block briefly (file reads, an NVML call, running nvidia-smi for up to
 * MEMORY_SMI_TIMEOUT_MS): call them from a worker thread. None keeps mutable static state; a
 * struct memory_gpu is immutable between open and close, so memory_gpu_read() may run on several
 * threads at once. docs/internals/memory.md says where each number comes from.
 */
#ifndef ARUN_ENGINES_MEMORY_H
#define ARUN_ENGINES_MEMORY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/common.h"

#define MEMORY_GPU_MAX_DEVICES 16
#define MEMORY_GPU_MAX_PROCS 256
/* nvidia-smi takes 1-3 s on a driver without persistence mode (it initialises every GPU); a
 * hung driver must not hold a worker thread forever. */
#define MEMORY_SMI_TIMEOUT_MS 10000

struct memory_host {
    uint64_t total_mb;     /* MemTotal */
    uint64_t available_mb; /* MemAvailable (kernel's estimate of what can be had without
                              swapping); MemFree + Buffers + Cached on kernels before 3.14 */
};

/* Reads proc_root/meminfo ("/proc" normally). Returns 0, -errno when unreadable, or -EINVAL when
 * MemTotal is missing. */
int memory_host_read(const char *proc_root, struct memory_host *out) MUST_USE;

/* PSI: proc_root/pressure/memory "some avg10" and "full avg10", in percent of wall time over the
 * last 10 s during which some (resp. all non-idle) tasks stalled on memory. Returns 0, -ENOENT
 * when the kernel has no PSI (file absent, or PSI disabled at boot), -EINVAL when it does not
 * parse. A missing "full" line (never seen for memory) reads as 0. */
int memory_psi_read(const char *proc_root, double *some_avg10, double *full_avg10) MUST_USE;

struct memory_gpu_device {
    uint64_t total_mb; /* framebuffer memory */
    uint64_t used_mb;  /* in use by anyone, the driver's reservation included */
    char name[64];     /* "NVIDIA H100 80GB HBM3", truncated */
};

/* One process's GPU memory, summed over every device it uses. */
struct memory_gpu_proc {
    pid_t pid; /* as the host's /proc sees it (NVML and nvidia-smi report host pids) */
    uint64_t used_mb;
};

struct memory_gpu_snapshot {
    int ndevices; /* 0 without a GPU; at most MEMORY_GPU_MAX_DEVICES are read */
    struct memory_gpu_device dev[MEMORY_GPU_MAX_DEVICES];
    size_t nprocs; /* one entry per pid; beyond MEMORY_GPU_MAX_PROCS the rest are dropped */
    struct memory_gpu_proc procs[MEMORY_GPU_MAX_PROCS];
    const char *source; /* "nvml", "nvidia-smi", "none": a static string */
    char error[160];    /* when memory_gpu_read() failed: what failed, in a sentence */
};

/* How GPU memory is read on this machine. Opaque; immutable between open and close. */
struct memory_gpu;

/* Picks the source: dlopen(nvml_path, or "libnvidia-ml.so.1" when NULL) and nvmlInit_v2; else
 * nvidia-smi found on PATH (run once here to check it answers); else none. Never fails: no GPU is
 * a normal case. Appends to *why (may be NULL) which source was picked and why, e.g.
 * "NVML 535.104.05 via libnvidia-ml.so.1: 2 GPUs" or "no NVIDIA driver: libnvidia-ml.so.1 not
 * found and nvidia-smi not on PATH". Free with memory_gpu_close(). */
struct memory_gpu *memory_gpu_open(const char *nvml_path, struct buf *why);

/* Reads totals and used memory per device, and per process (NVML: compute and graphics
 * processes, newest struct version the library has; nvidia-smi: compute apps only). Returns 0
 * (with source "none" and nothing in it when there is no GPU) or -errno, with out->error saying
 * what failed (-ENODEV: a GPU fell off the bus; -ETIMEDOUT: nvidia-smi hung). */
int memory_gpu_read(struct memory_gpu *g, struct memory_gpu_snapshot *out) MUST_USE;

/* The source memory_gpu_open() picked: "nvml", "nvidia-smi" or "none". */
const char *memory_gpu_source(const struct memory_gpu *g);

/* Shuts NVML down (when it was the source) and frees g. NULL is a no-op. */
void memory_gpu_close(struct memory_gpu *g);

#endif
