/*
 * fileio.h: small blocking file helpers shared by modules that read /proc and config files.
 * They block: call them at start-up or from worker threads, never on the loop's hot path.
 */
#ifndef ARUN_CORE_FILEIO_H
#define ARUN_CORE_FILEIO_H

#include <sys/types.h>

#include "core/common.h"

/* Reads from fd until EOF or until cap bytes are in buf (retrying EINTR). Returns the number of
 * bytes read or -errno. Does not NUL-terminate and does not close fd. */
ssize_t fileio_read_fd(int fd, char *buf, size_t cap) MUST_USE;

/* Looks prog up like execvp: a name with '/' as it is (if an executable file), else each
 * PATH entry ("/usr/local/bin:/usr/bin:/bin" when PATH is unset). Returns a heap path or NULL. */
char *fileio_which(const char *prog);

#endif
