/*
 * fileio.c: see fileio.h.
 */
#include "core/fileio.h"

#include <stdbool.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fileio_read_at(int dirfd, const char *path, struct buf *out)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        size_t room = out->cap - out->len;
        buf_append(out, chunk, (size_t)n < room ? (size_t)n : room); /* fits: at most room */
        if ((size_t)n > room) {
            out->truncated = true; /* a prefix: the rest is not read */
            break;
        }
    }
    close(fd);
    return rc;
}

static bool executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

char *fileio_which(const char *prog)
{
    if (strchr(prog, '/') != NULL)
        return executable_file(prog) ? xstrdup(prog) : NULL;
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        char *cand = xasprintf("%.*s/%s", (int)(n ? n : 1), n ? p : ".", prog);
        if (executable_file(cand))
            return cand;
        free(cand);
        if (colon == NULL)
            return NULL;
        p = colon + 1;
    }
}
