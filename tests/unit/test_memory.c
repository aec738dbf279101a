/*
 * Unit tests of engines/memory: meminfo and PSI (fake /proc trees and the real one), and GPU
 * memory through the fake NVML (libfakenvml.so in ARUN_BUILD_DIR), a fake nvidia-smi script on
 * PATH, and neither. memory.c is included to reach its statics (the struct version in use, the
 * nvidia-smi timeout). With ARUN_REAL_GPU=1, test_real_gpu_snapshot_when_asked reads the
 * machine's own GPUs through NVML and prints what it saw: the check a GPU machine should run.
 */
#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "../../src/engines/memory.c"

/* ---- helpers ---- */

static char *make_tmpdir(void)
{
    char *dir = xstrdup("/tmp/arun-memory-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static char *fake_nvml_path(void)
{
    const char *build = getenv("ARUN_BUILD_DIR");
    assert_non_null(build);
    return xasprintf("%s/libfakenvml.so", build);
}

static void clear_fake_env(void)
{
    const char *vars[] = {"FAKENVML_INIT_RC",     "FAKENVML_COUNT", "FAKENVML_TOTAL_MB",
                          "FAKENVML_USED_MB",     "FAKENVML_PROCS", "FAKENVML_GRAPHICS",
                          "FAKENVML_EXTRA_PROCS", "FAKENVML_LOST"};
    for (size_t i = 0; i < ARRAY_SIZE(vars); i++)
        unsetenv(vars[i]);
}

/* Calls an int(int) or int(void) function the fake exports, through its loaded handle. */
static int fake_call(const char *lib, const char *sym, int arg)
{
    void *h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL)
        return -1;
    int (*fn)(int);
    *(void **)&fn = dlsym(h, sym);
    assert_non_null(fn);
    int v = fn(arg);
    dlclose(h);
    return v;
}

static const struct memory_gpu_proc *find_proc(const struct memory_gpu_snapshot *s, pid_t pid)
{
    for (size_t i = 0; i < s->nprocs; i++) {
        if (s->procs[i].pid == pid)
            return &s->procs[i];
    }
    return NULL;
}

static void print_snapshot(const struct memory_gpu_snapshot *s)
{
    print_message("source %s, %d devices, %zu processes\n", s->source, s->ndevices, s->nprocs);
    for (int i = 0; i < s->ndevices; i++)
        print_message("  GPU %d: %s, %llu of %llu MiB used\n", i, s->dev[i].name,
                      (unsigned long long)s->dev[i].used_mb,
                      (unsigned long long)s->dev[i].total_mb);
    for (size_t i = 0; i < s->nprocs; i++)
        print_message("  pid %d: %llu MiB\n", (int)s->procs[i].pid,
                      (unsigned long long)s->procs[i].used_mb);
}

/* ---- host memory and PSI ---- */

static void test_host_read_parses_meminfo(void **state)
{
    char *root = make_tmpdir();
    testutil_put(root, "meminfo",
                 "MemTotal:       16318748 kB\nMemFree:         1000000 kB\n"
                 "MemAvailable:   12000000 kB\nBuffers:          100 kB\n",
                 0644);
    struct memory_host h;
    assert_int_equal(memory_host_read(root, &h), 0);
    assert_int_equal(h.total_mb, 16318748 / 1024);
    assert_int_equal(h.available_mb, 12000000 / 1024);
    testutil_rm_rf(root);
    free(root);
}

static void test_host_read_without_memavailable_uses_free_buffers_cached(void **state)
{
    char *root = make_tmpdir();
    testutil_put(
        root, "meminfo",
        "MemTotal:        2048000 kB\nMemFree:          102400 kB\nBuffers:           10240 kB\n"
        "Cached:           204800 kB\nSwapCached:            0 kB\n",
        0644);
    struct memory_host h;
    assert_int_equal(memory_host_read(root, &h), 0);
    assert_int_equal(h.total_mb, 2000);
    assert_int_equal(h.available_mb, 100 + 10 + 200);
    testutil_rm_rf(root);
    free(root);
}

static void test_host_read_rejects_meminfo_without_total(void **state)
{
    char *root = make_tmpdir();
    testutil_put(root, "meminfo", "MemFree: 1 kB\n", 0644);
    struct memory_host h;
    assert_int_equal(memory_host_read(root, &h), -EINVAL);
    assert_int_equal(memory_host_read("/nonexistent-proc", &h), -ENOENT);
    testutil_rm_rf(root);
    free(root);
}

static void test_host_read_real_proc(void **state)
{
    struct memory_host h;
    assert_int_equal(memory_host_read("/proc", &h), 0);
    print_message("MemTotal %llu MiB, MemAvailable %llu MiB\n", (unsigned long long)h.total_mb,
                  (unsigned long long)h.available_mb);
    assert_true(h.total_mb > 0);
    assert_true(h.available_mb <= h.total_mb);
}

static void test_psi_read_parses_pressure(void **state)
{
    char *root = make_tmpdir();
    testutil_put(root, "pressure/memory",
                 "some avg10=12.34 avg60=1.00 avg300=0.50 total=123456\n"
                 "full avg10=0.07 avg60=0.00 avg300=0.00 total=789\n",
                 0644);
    double some = -1, full = -1;
    assert_int_equal(memory_psi_read(root, &some, &full), 0);
    assert_float_equal(some, 12.34, 1e-9);
    assert_float_equal(full, 0.07, 1e-9);
    testutil_rm_rf(root);
    free(root);
}

static void test_psi_read_without_psi_is_enoent(void **state)
{
    char *root = make_tmpdir();
    double some, full;
    assert_int_equal(memory_psi_read(root, &some, &full), -ENOENT);
    testutil_put(root, "pressure/memory", "garbage\n", 0644);
    assert_int_equal(memory_psi_read(root, &some, &full), -EINVAL);
    testutil_rm_rf(root);
    free(root);
}

static void test_psi_read_real_proc(void **state)
{
    double some = -1, full = -1;
    int rc = memory_psi_read("/proc", &some, &full);
    print_message("PSI memory: rc %d some %.2f full %.2f\n", rc, some, full);
    assert_true(rc == 0 || rc == -ENOENT);
    if (rc == 0) {
        assert_true(some >= 0 && some <= 100);
        assert_true(full >= 0 && full <= some + 1e-9);
    }
}

/* ---- GPU through the fake NVML ---- */

static void test_gpu_nvml_reports_devices_and_processes(void **state)
{
    char *lib = fake_nvml_path();
    setenv("FAKENVML_USED_MB", "1000,2000", 1);
    /* 1234 on both GPUs, and in device 0's graphics list with the same allocation. */
    setenv("FAKENVML_PROCS", "1234:500,5678:700@1,1234:300@1", 1);
    setenv("FAKENVML_GRAPHICS", "1234:500,42:64", 1);
    struct buf why;
    buf_init(&why, 1024);
    struct memory_gpu *g = memory_gpu_open(lib, &why);
    print_message("%s\n", buf_cstr(&why));
    assert_string_equal(memory_gpu_source(g), "nvml");
    assert_non_null(strstr(buf_cstr(&why), "NVML 999.99.99-fake via "));
    assert_non_null(strstr(buf_cstr(&why), ": 2 GPUs"));

    struct memory_gpu_snapshot *s = xmalloc(sizeof(*s));
    assert_int_equal(memory_gpu_read(g, s), 0);
    print_snapshot(s);
    assert_string_equal(s->source, "nvml");
    assert_int_equal(s->ndevices, 2);
    assert_int_equal(s->dev[0].total_mb, 24576);
    assert_int_equal(s->dev[0].used_mb, 1000);
    assert_int_equal(s->dev[1].used_mb, 2000);
    assert_string_equal(s->dev[1].name, "Fake GPU 1");
    assert_int_equal(s->nprocs, 3);
    assert_int_equal(find_proc(s, 1234)->used_mb, 800);
    assert_int_equal(find_proc(s, 5678)->used_mb, 700);
    assert_int_equal(find_proc(s, 42)->used_mb, 64);
    assert_true(fake_call(lib, "fakenvml_calls", 3) > 0); /* the newest version is used */
    assert_int_equal(fake_call(lib, "fakenvml_calls", 2), 0);

    memory_gpu_close(g);
    free(s);
    buf_cleanup(&why);
    clear_fake_env();
    free(lib);
}

static void test_gpu_nvml_grows_the_list_on_insufficient_size(void **state)
{
    char *lib = fake_nvml_path();
    setenv("FAKENVML_EXTRA_PROCS", "200", 1); /* more than NVML_PROCS_FIRST */
    struct memory_gpu *g = memory_gpu_open(lib, NULL);
    struct memory_gpu_snapshot *s = xmalloc(sizeof(*s));
    assert_int_equal(memory_gpu_read(g, s), 0);
    assert_int_equal(s->nprocs, 200);
    assert_int_equal(s->procs[0].pid, 20000);
    assert_int_equal(s->procs[199].used_mb, 1);
    memory_gpu_close(g);
    free(s);
    clear_fake_env();
    free(lib);
}

/* The struct handed to each version must be that version's: every entry would be misread. */
static void test_gpu_nvml_older_process_structs_read_the_same(void **state)
{
    char *lib = fake_nvml_path();
    setenv("FAKENVML_PROCS", "1234:500,5678:700,91:3@1", 1);
    struct memory_gpu *g = memory_gpu_open(lib, NULL);
    assert_string_equal(memory_gpu_source(g), "nvml");
    struct memory_gpu_snapshot *s = xmalloc(sizeof(*s));
    const char *v2 = "nvmlDeviceGetComputeRunningProcesses_v2";
    const char *v1 = "nvmlDeviceGetComputeRunningProcesses";
    nvml_find_procs(g, &g->compute, "no_such_symbol", v2, v1);
    assert_string_equal(g->compute.name, v2);
    assert_int_equal(memory_gpu_read(g, s), 0);
    assert_int_equal(s->nprocs, 3);
    assert_int_equal(find_proc(s, 5678)->used_mb, 700);
    assert_int_equal(find_proc(s, 91)->used_mb, 3);
    assert_true(fake_call(lib, "fakenvml_calls", 2) > 0);

    nvml_find_procs(g, &g->compute, "no_such_symbol", "nor_this", v1);
    assert_int_equal(g->compute.stride, sizeof(nvml_process_info_v1_t));
    assert_int_equal(memory_gpu_read(g, s), 0);
    assert_int_equal(s->nprocs, 3);
    assert_int_equal(find_proc(s, 1234)->used_mb, 500);
    assert_true(fake_call(lib, "fakenvml_calls", 1) > 0);
    memory_gpu_close(g);
    free(s);
    clear_fake_env();
    free(lib);
}

static void test_gpu_nvml_lost_gpu_is_enodev_with_a_sentence(void **state)
{
    char *lib = fake_nvml_path();
    setenv("FAKENVML_LOST", "1", 1);
    setenv("FAKENVML_PROCS", "1234:500", 1);
    struct memory_gpu *g = memory_gpu_open(lib, NULL);
    struct memory_gpu_snapshot *s = xmalloc(sizeof(*s));
    assert_int_equal(memory_gpu_read(g, s), -ENODEV);
    print_message("%s\n", s->error);
    assert_string_equal(s->error, "nvmlDeviceGetMemoryInfo(GPU 1) failed: GPU is lost");
    assert_int_equal(s->ndevices, 0);
    assert_int_equal(s->nprocs, 0);
    memory_gpu_close(g);
    free(s);
    clear_fake_env();
    free(lib);
}

static void test_gpu_close_shuts_nvml_down(void **state)
{
    char *lib = fake_nvml_path();
    struct memory_gpu *g = memory_gpu_open(lib, NULL);
    assert_int_equal(fake_call(lib, "fakenvml_refcount", 0), 1);
    /* Keep the library loaded past close to ask it. */
    void *keep = dlopen(lib, RTLD_NOW);
    assert_non_null(keep);
    memory_gpu_close(g);
    assert_int_equal(fake_call(lib, "fakenvml_refcount", 0), 0);
    dlclose(keep);
    memory_gpu_close(NULL);
    free(lib);
}

/* ---- GPU through nvidia-smi, and through nothing ---- */

struct smi_env {
    char *dir;      /* holds the fake nvidia-smi */
    char *old_path; /* PATH to restore */
};

static struct smi_env smi_env_new(bool with_smi)
{
    struct smi_env e = {.dir = make_tmpdir(), .old_path = xstrdup(getenv("PATH"))};
    if (with_smi) {
        char *script =
            xasprintf("#!/bin/sh\n"
                      "# a stand-in for nvidia-smi, written by test_memory\n"
                      "if [ -e %s/hang ]; then exec sleep 30; fi\n"
                      "if [ -e %s/fail ]; then echo 'NVIDIA-SMI has failed'; exit 9; fi\n"
                      "[ \"$2\" = --format=csv,noheader,nounits ] || exit 2\n"
                      "case \"$1\" in\n"
                      "--query-gpu=memory.total,memory.used,name)\n"
                      "  printf '81559, 1200, NVIDIA H100 80GB HBM3\\n81559, 300, NVIDIA H100 80GB "
                      "HBM3\\n';;\n"
                      "--query-compute-apps=pid,used_memory)\n"
                      "  printf '4321, 1000\\n4321, 200\\n999, [N/A]\\n8765, 300\\n';;\n"
                      "*) exit 2;;\n"
                      "esac\n",
                      e.dir, e.dir);
        testutil_put(e.dir, "nvidia-smi", script, 0755);
        free(script);
    }
    char *path = xasprintf("%s:/usr/bin:/bin", e.dir);
    setenv("PATH", path, 1);
    free(path);
    return e;
}

static void smi_env_free(struct smi_env *e)
{
    setenv("PATH", e->old_path, 1);
    testutil_rm_rf(e->dir);
    free(e->dir);
    free(e->old_path);
}

static void test_gpu_missing_nvml_falls_back_to_nvidia_smi(void **state)
{
    struct smi_env e = smi_env_new(true);
    struct buf why;
    buf_init(&why, 1024);
    struct memory_gpu *g = memory_gpu_open("/nonexistent/libnvidia-ml.so.1", &why);
    print_message("%s\n", buf_cstr(&why));
    assert_string_equal(memory_gpu_source(g), "nvidia-smi");
    assert_non_null(strstr(buf_cstr(&why), ": 2 GPUs (NVML unusable: "));
    assert_non_null(strstr(buf_cstr(&why), "/nonexistent/libnvidia-ml.so.1 not found"));

    struct memory_gpu_snapshot *s = xmalloc(sizeof(*s));
    assert_int_equal(memory_gpu_read(g, s), 0);
    print_snapshot(s);
    assert_string_equal(s->source, "nvidia-smi");
    assert_int_equal(s->ndevices, 2);
    assert_int_equal(s->dev[0].total_mb, 81559);
    assert_int_equal(s->dev[1].used_mb, 300);
    assert_string_equal(s->dev[0].name, "NVIDIA H100 80GB HBM3");
    assert_int_equal(s->nprocs, 2); /* the [N/A] line is skipped */
    assert_int_equal(find_proc(s, 4321)->used_mb, 1200);
    assert_int_equal(find_proc(s, 8765)->used_mb, 300);
    memory_gpu_close(g);
    free(s);
    buf_cleanup(&why);
    smi_env_free(&e);
}

static void test_gpu_nvml_init_failure_falls_back(void **state)
{
    char *lib = fake_nvml_path();
    setenv("FAKENVML_INIT_RC", "9", 1);
    struct smi_env e = smi_env_new(true);
    struct buf why;
    buf_init(&why, 1024);
    struct memory_gpu *g = memory_gpu_open(lib, &why);
    print_message("%s\n", buf_cstr(&why));
    assert_string_equal(memory_gpu_source(g), "nvidia-smi");
    assert_non_null(strstr(buf_cstr(&why), "nvmlInit_v2 via "));
    assert_non_null(strstr(buf_cstr(&why), "failed: Driver Not Loaded"));
    memory_gpu_close(g);
    buf_cleanup(&why);
    smi_env_free(&e);
    clear_fake_env();
    free(lib);
}

static void test_gpu_failing_nvidia_smi_means_none(void **state)
{
    struct smi_env e = smi_env_new(true);
    testutil_put(e.dir, "fail", "", 0644);
    struct buf why;
    buf_init(&why, 1024);
    struct memory_gpu *g = memory_gpu_open("/nonexistent/libnvidia-ml.so.1", &why);
    print_message("%s\n", buf_cstr(&why));
    assert_string_equal(memory_gpu_source(g), "none");
    assert_non_null(strstr(buf_cstr(&why), "exited with status 9"));
    memory_gpu_close(g);
    buf_cleanup(&why);
    smi_env_free(&e);
}

static void test_gpu_hung_nvidia_smi_times_out(void **state)
{
    struct smi_env e = smi_env_new(true);
    struct memory_gpu *g = memory_gpu_open("/nonexistent/libnvidia-ml.so.1", NULL);
    assert_string_equal(memory_gpu_source(g), "nvidia-smi");
    testutil_put(e.dir, "hang", "", 0644);
    g->smi_timeout_ms = 300;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct memory_gpu_snapshot *s = xmalloc(sizeof(*s));
    assert_int_equal(memory_gpu_read(g, s), -ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("%s (after %.2f s)\n", s->error, secs);
    assert_non_null(strstr(s->error, "gave no answer within 300 ms"));
    assert_true(secs < 5); /* killed, not waited for */
    memory_gpu_close(g);
    free(s);
    smi_env_free(&e);
}

static void test_gpu_without_nvml_or_nvidia_smi_is_none(void **state)
{
    struct smi_env e = smi_env_new(false);
    struct buf why;
    buf_init(&why, 1024);
    struct memory_gpu *g = memory_gpu_open("/nonexistent/libnvidia-ml.so.1", &why);
    assert_string_equal(buf_cstr(&why), "no NVIDIA driver: /nonexistent/libnvidia-ml.so.1 not "
                                        "found and nvidia-smi not on PATH");
    assert_string_equal(memory_gpu_source(g), "none");
    struct memory_gpu_snapshot *s = xmalloc(sizeof(*s));
    assert_int_equal(memory_gpu_read(g, s), 0);
    assert_string_equal(s->source, "none");
    assert_int_equal(s->ndevices, 0);
    assert_int_equal(s->nprocs, 0);
    memory_gpu_close(g);
    free(s);
    buf_cleanup(&why);
    smi_env_free(&e);
}

/* On a GPU machine: ARUN_REAL_GPU=1 ./test_memory prints what the real driver reports. */
static void test_real_gpu_snapshot_when_asked(void **state)
{
    const char *want = getenv("ARUN_REAL_GPU");
    if (want == NULL || strcmp(want, "1") != 0) {
        skip();
        return;
    }
    struct buf why;
    buf_init(&why, 1024);
    struct memory_gpu *g = memory_gpu_open(NULL, &why);
    print_message("%s\n", buf_cstr(&why));
    struct memory_gpu_snapshot *s = xmalloc(sizeof(*s));
    int rc = memory_gpu_read(g, s);
    print_message("read: %d %s\n", rc, s->error);
    print_snapshot(s);
    assert_int_equal(rc, 0);
    assert_string_equal(s->source, "nvml");
    assert_true(s->ndevices > 0);
    for (int i = 0; i < s->ndevices; i++)
        assert_true(s->dev[i].total_mb > 0 && s->dev[i].used_mb <= s->dev[i].total_mb);
    memory_gpu_close(g);
    free(s);
    buf_cleanup(&why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_read_parses_meminfo),
        cmocka_unit_test(test_host_read_without_memavailable_uses_free_buffers_cached),
        cmocka_unit_test(test_host_read_rejects_meminfo_without_total),
        cmocka_unit_test(test_host_read_real_proc),
        cmocka_unit_test(test_psi_read_parses_pressure),
        cmocka_unit_test(test_psi_read_without_psi_is_enoent),
        cmocka_unit_test(test_psi_read_real_proc),
        cmocka_unit_test(test_gpu_nvml_reports_devices_and_processes),
        cmocka_unit_test(test_gpu_nvml_grows_the_list_on_insufficient_size),
        cmocka_unit_test(test_gpu_nvml_older_process_structs_read_the_same),
        cmocka_unit_test(test_gpu_nvml_lost_gpu_is_enodev_with_a_sentence),
        cmocka_unit_test(test_gpu_close_shuts_nvml_down),
        cmocka_unit_test(test_gpu_missing_nvml_falls_back_to_nvidia_smi),
        cmocka_unit_test(test_gpu_nvml_init_failure_falls_back),
        cmocka_unit_test(test_gpu_failing_nvidia_smi_means_none),
        cmocka_unit_test(test_gpu_hung_nvidia_smi_times_out),
        cmocka_unit_test(test_gpu_without_nvml_or_nvidia_smi_is_none),
        cmocka_unit_test(test_real_gpu_snapshot_when_asked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
