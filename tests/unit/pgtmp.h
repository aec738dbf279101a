/*
 * pgtmp.h: a throwaway PostgreSQL cluster for the C unit tests, through scripts/pgtmp.sh (header
 * only: each test is one program). Blocking: call these from a test's body or its setup, never
 * while a loop under test must keep running (spawn the script with uv_spawn there; pgtmp_argv
 * gives its arguments). Include after <cmocka.h>.
 */
#ifndef ARUN_TESTS_PGTMP_H
#define ARUN_TESTS_PGTMP_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PGTMP_URL_MAX 256

struct pgtmp {
    char dir[128];           /* the cluster's directory (removed by pgtmp_stop) */
    char script[512];        /* scripts/pgtmp.sh of this source tree */
    char url[PGTMP_URL_MAX]; /* postgresql://arun@127.0.0.1:PORT/arun */
};

/* Runs `pgtmp.sh VERB DIR [ARG]` and reads its first line of output into out (when not NULL).
 * Returns the exit status. */
static inline int pgtmp_run(const struct pgtmp *p, const char *verb, const char *arg, char *out,
                            size_t cap)
{
    char cmd[1024];
    FILE *f;
    int rc;

    snprintf(cmd, sizeof cmd, "sh '%s' %s '%s' %s%s%s", p->script, verb, p->dir,
             arg != NULL ? "'" : "", arg != NULL ? arg : "", arg != NULL ? "'" : "");
    f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    if (out != NULL) {
        out[0] = '\0';
        if (fgets(out, (int)cap, f) != NULL)
            out[strcspn(out, "\n")] = '\0';
    }
    while (fgetc(f) != EOF) {
    }
    rc = pclose(f);
    return rc;
}

/* Starts a cluster in a new directory under /tmp. Returns false when this machine has no
 * PostgreSQL server binaries (the caller skips); a cluster that fails to start fails the test. */
static inline bool pgtmp_start(struct pgtmp *p)
{
    const char *src = getenv("ARUN_SOURCE_DIR");
    FILE *bin = popen("ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null", "r");
    char line[256] = "";
    bool have = bin != NULL && fgets(line, sizeof line, bin) != NULL;

    if (bin != NULL)
        pclose(bin);
    if (!have && getenv("PG_BIN") == NULL)
        return false;
    snprintf(p->script, sizeof p->script, "%s/scripts/pgtmp.sh", src != NULL ? src : ".");
    snprintf(p->dir, sizeof p->dir, "/tmp/arun-pgtmp-XXXXXX");
    assert_non_null(mkdtemp(p->dir));
    assert_int_equal(pgtmp_run(p, "start", NULL, p->url, sizeof p->url), 0);
    assert_true(strncmp(p->url, "postgresql://", 13) == 0);
    return true;
}

/* Another database on the cluster; its URL in url. */
static inline void pgtmp_createdb(const struct pgtmp *p, const char *name, char *url, size_t cap)
{
    assert_int_equal(pgtmp_run(p, "createdb", name, url, cap), 0);
}

/* Stops the cluster and removes its directory. */
static inline void pgtmp_stop(const struct pgtmp *p)
{
    assert_int_equal(pgtmp_run(p, "stop", NULL, NULL, 0), 0);
}

#endif
