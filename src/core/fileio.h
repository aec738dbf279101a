/*
 * fileio.h: small blocking file helpers shared by modules that read /proc and config files.
 * They block: call them at start-up or from worker threads, never on the loop's hot path. /proc
 * files are the exception: they are made in memory and never wait on a disk.
 */
#ifndef ARUN_CORE_FILEIO_H
#define ARUN_CORE_FILEIO_H

#include <fcntl.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/common.h"

/* Appends the whole file at path (relative to dirfd, as openat(2) takes it) to out, reading until
 * EOF, so files whose stat size is 0 (/proc) read whole too. Opens with O_CLOEXEC and retries
 * EINTR. Returns 0 or -errno (out may then hold part of the file). A file longer than out's cap
 * leaves its first bytes up to the cap in out and sets out->truncated: callers that need the
 * whole file check it, callers that parse a prefix may not. */
int fileio_read_at(int dirfd, const char *path, struct buf *out) MUST_USE;

/* fileio_read_at() of a path (relative to the working directory when not absolute). */
static inline int fileio_read(const char *path, struct buf *out)
{
    return fileio_read_at(AT_FDCWD, path, out);
}

/* Looks prog up like execvp: a name with '/' as it is (if an executable file), else each
 * PATH entry ("/usr/local/bin:/usr/bin:/bin" when PATH is unset). Returns a heap path or NULL. */
char *fileio_which(const char *prog);

#endif
