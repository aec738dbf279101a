/*
 * pgtmp.h: a throwaway PostgreSQL cluster for one test program, through scripts/pgtmp.sh: started
 * once (about a second), a fresh database per test, stopped and removed at the end. Header-only
 * (static functions): each test program is one file.
 *
 * A machine without PostgreSQL's server binaries gets NULL from pgtmp_start(), and the program
 * runs its SQLite tests only (it says so on stderr).
 */
#ifndef ARUN_TESTS_PGTMP_H
#define ARUN_TESTS_PGTMP_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"

static char *pgtmp_dir_; /* the cluster's directory, absolute */
static char *pgtmp_url_; /* its first database's URL */

/* Runs `scripts/pgtmp.sh ARGS` and returns its first line of output (the URL), or NULL. */
static inline char *pgtmp_run_(const char *args)
{
    const char *src = getenv("ARUN_SOURCE_DIR");
    char *cmd = xasprintf("sh '%s/scripts/pgtmp.sh' %s", src != NULL ? src : ".", args);
    char line[1024] = {0};
    FILE *p = popen(cmd, "r");
    char *out = NULL;

    free(cmd);
    if (p == NULL)
        return NULL;
    if (fgets(line, sizeof(line), p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        out = xstrdup(line);
    }
    if (pclose(p) != 0 || out == NULL || strncmp(out, "postgresql://", 13) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Starts a cluster in dir (created; an absolute path is made of a relative one). Returns the
 * URL of its database "arun" (owned here), or NULL when PostgreSQL is not installed or did not
 * start (the reason is on stderr). */
static inline const char *pgtmp_start(const char *dir)
{
    char abs[PATH_MAX];

    if (dir[0] != '/' && getcwd(abs, sizeof(abs)) != NULL)
        pgtmp_dir_ = xasprintf("%s/%s", abs, dir);
    else
        pgtmp_dir_ = xstrdup(dir);
    char *args = xasprintf("start '%s'", pgtmp_dir_);
    pgtmp_url_ = pgtmp_run_(args);
    free(args);
    if (pgtmp_url_ == NULL) {
        fprintf(stderr, "pgtmp: no PostgreSQL cluster (scripts/pgtmp.sh start failed)\n");
        free(pgtmp_dir_);
        pgtmp_dir_ = NULL;
    }
    return pgtmp_url_;
}

/* A new empty database on the cluster; returns its URL (the caller frees) or NULL. */
static inline char *pgtmp_createdb(const char *name)
{
    if (pgtmp_dir_ == NULL)
        return NULL;
    char *args = xasprintf("createdb '%s' '%s'", pgtmp_dir_, name);
    char *url = pgtmp_run_(args);
    free(args);
    return url;
}

/* `scripts/pgtmp.sh VERB DIR` on the cluster: "kill" (a crash: an immediate stop) or "restart".
 * Returns 0, or -1 when it failed (its reason is on stderr). */
static inline int pgtmp_do(const char *verb)
{
    if (pgtmp_dir_ == NULL)
        return -1;
    const char *src = getenv("ARUN_SOURCE_DIR");
    char *cmd = xasprintf("sh '%s/scripts/pgtmp.sh' %s '%s'", src != NULL ? src : ".", verb,
                          pgtmp_dir_);
    int rc = system(cmd);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

/* Stops the cluster and removes its directory; a no-op when none was started. */
static inline void pgtmp_stop(void)
{
    if (pgtmp_dir_ == NULL)
        return;
    char *cmd =
        xasprintf("sh '%s/scripts/pgtmp.sh' stop '%s'",
                  getenv("ARUN_SOURCE_DIR") != NULL ? getenv("ARUN_SOURCE_DIR") : ".", pgtmp_dir_);
    if (system(cmd) != 0)
        fprintf(stderr, "pgtmp: stopping %s failed\n", pgtmp_dir_);
    free(cmd);
    free(pgtmp_dir_);
    free(pgtmp_url_);
    pgtmp_dir_ = pgtmp_url_ = NULL;
}

#endif
