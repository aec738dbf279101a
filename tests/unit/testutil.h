/*
 * testutil.h: file helpers shared by the unit tests (header-only: each test is one program).
 * Include after <cmocka.h>.
 */
#ifndef ARUN_TESTS_TESTUTIL_H
#define ARUN_TESTS_TESTUTIL_H

#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int testutil_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes dir and everything under it; fails the test when that fails. */
static inline void testutil_rm_rf(const char *dir)
{
    assert_int_equal(nftw(dir, testutil_rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* Writes text to DIR/REL (creating REL's one parent directory) with the given mode. */
static inline void testutil_put(const char *dir, const char *rel, const char *text, mode_t mode)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0755);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

#endif
