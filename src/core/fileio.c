/*
 * fileio.c: see fileio.h.
 */
#include "core/fileio.h"

#include <errno.h>
#include <unistd.h>

ssize_t fileio_read_fd(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    return (ssize_t)len;
}
