/*
 * proc.c: process snapshots from /proc, and the set of processes that make up one engine.
 *
 * It owns the parsing of /proc/PID/{stat,statm,io} and the rule that decides which processes
 * belong to an engine. It promises that a process that leaves the engine's group or session and
 * is reparented (to arun, the subreaper) stays counted as long as the caller feeds back the set it
 * was given, and that a reused pid is never mistaken for the process that had it before. It does
 * not signal, reap or spawn anything, and it never touches the loop.
 *
 * DESIGN
 * A scan opens each /proc/PID directory once and reads the files relative to that descriptor
 * (openat): if the process dies and its pid is reused between two reads, the old directory's
 * files fail with ESRCH instead of describing the newcomer, and the process is skipped as one
 * that vanished mid-scan. The table is sorted by pid so lookups are binary searches.
 *
 * proc_tree() decides membership per process with a memo: a process is in when it is alive and
 * is root or a recorded (pid, start_ticks), or sits in a group or session one of them leads, or
 * its parent is in. The last rule walks up the ppid chain; every node on the walk gets the
 * verdict, so the whole table costs O(n log n). A pid number that some live process uses as its
 * pgid or sid is never handed out again by the kernel, so matching a dead leader's pid against
 * pgid/sid is safe; only a pid that a different live process now holds is excluded.
 *
 * THREAD SAFETY NOTES
 * No static mutable state; every call works on its own descriptors and buffers. A proc_table is
 * immutable after proc_table_read() and may be read from several threads at once.
 */
#include "engines/proc.h"

#include "core/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* /proc/PID/stat is one line of 52 fields; comm is at most 64 bytes (kernel threads), the
 * numbers at most 20 digits each: 4 KiB holds it with room. statm and io are shorter. */
#define PROC_FILE_MAX 4096

/* Memo states of proc_tree()'s walk. */
enum tree_mark { TREE_UNKNOWN, TREE_VISITING, TREE_IN, TREE_OUT };

/* Opens proc_root/PID as a directory. Returns the descriptor or -errno (-ESRCH when absent). */
static int open_pid_dir(const char *proc_root, pid_t pid)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%d", proc_root, (int)pid);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    return fd;
}

/* Parses one signed decimal field after spaces; advances *s. Returns 0 or -EINVAL. */
static int next_field(const char **s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(*s, &end, 10);
    if (end == *s || errno != 0)
        return -EINVAL;
    *s = end;
    *out = v;
    return 0;
}

/* Parses /proc/PID/stat: "pid (comm) state ppid pgrp session … starttime(22) …". comm may hold
 * spaces and parentheses, so the fields start after the last ')'. */
static int parse_stat(const char *s, struct proc_info *p)
{
    const char *open = strchr(s, '(');
    const char *close = strrchr(s, ')');
    if (open == NULL || close == NULL || close < open || close[1] != ' ' || close[2] == '\0')
        return -EINVAL;
    size_t comm_len = (size_t)(close - open - 1);
    if (comm_len >= sizeof(p->comm))
        comm_len = sizeof(p->comm) - 1;
    memcpy(p->comm, open + 1, comm_len);
    p->comm[comm_len] = '\0';
    p->state = close[2];

    const char *q = close + 3;
    long long v[19]; /* fields 4 (ppid) to 22 (starttime): field f is v[f - 4] */
    for (int f = 4; f <= 22; f++) {
        if (next_field(&q, &v[f - 4]) != 0)
            return -EINVAL;
    }
    p->ppid = (pid_t)v[0];
    p->pgid = (pid_t)v[1];
    p->sid = (pid_t)v[2];
    p->start_ticks = (uint64_t)v[22 - 4];
    return 0;
}

/* Reads and parses PID's stat relative to its directory. */
static int read_stat(int dirfd, struct proc_info *p)
{
    struct buf b;
    buf_init(&b, PROC_FILE_MAX);
    int rc = fileio_read_at(dirfd, "stat", &b);
    if (rc == 0)
        rc = parse_stat(buf_cstr(&b), p);
    buf_cleanup(&b);
    return rc;
}

/* statm: "size resident shared text lib data dt", in pages. */
static int read_statm(int dirfd, uint64_t page_size, struct proc_info *p)
{
    struct buf b;
    buf_init(&b, PROC_FILE_MAX);
    unsigned long long size_pages, resident_pages;
    int rc = fileio_read_at(dirfd, "statm", &b);
    if (rc != 0)
        goto out;
    if (sscanf(buf_cstr(&b), "%llu %llu", &size_pages, &resident_pages) != 2) {
        rc = -EINVAL;
        goto out;
    }
    p->rss_bytes = (uint64_t)resident_pages * page_size;
out:
    buf_cleanup(&b);
    return rc;
}

/* io: "rchar: N\nwchar: N\n…read_bytes: N\n…". Optional: reading it needs ptrace-read access
 * (another user's process without privilege fails with EACCES) and a kernel built with
 * CONFIG_TASK_IO_ACCOUNTING; without it the counters stay zero and the process still counts. */
static void read_io(int dirfd, struct proc_info *p)
{
    struct buf b;
    buf_init(&b, PROC_FILE_MAX);
    if (fileio_read_at(dirfd, "io", &b) != 0) {
        buf_cleanup(&b);
        return;
    }
    for (const char *line = buf_cstr(&b); line != NULL && *line != '\0';) {
        unsigned long long v;
        if (sscanf(line, "rchar: %llu", &v) == 1)
            p->rchar = v;
        else if (sscanf(line, "read_bytes: %llu", &v) == 1)
            p->storage_read_bytes = v;
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    p->read_bytes = p->rchar > p->storage_read_bytes ? p->rchar : p->storage_read_bytes;
    buf_cleanup(&b);
}

/* Reads one process. Returns 0, -ESRCH when it vanished (skip it), or another -errno. */
static int read_one(int procfd, const char *name, uint64_t page_size, struct proc_info *p)
{
    int dirfd = openat(procfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return -ESRCH;
    memset(p, 0, sizeof(*p));
    p->pid = (pid_t)atoi(name);
    int rc = read_stat(dirfd, p);
    if (rc == 0)
        rc = read_statm(dirfd, page_size, p);
    if (rc == 0)
        read_io(dirfd, p);
    close(dirfd);
    /* ENOENT/ESRCH: the process died between the directory listing and a read. A file that no
     * longer parses belongs to a process half torn down; skip it the same way. */
    return rc == 0 ? 0 : -ESRCH;
}

static bool is_pid_name(const char *s)
{
    if (*s == '\0' || *s == '0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
    }
    return true;
}

static int cmp_info_pid(const void *a, const void *b)
{
    pid_t x = ((const struct proc_info *)a)->pid, y = ((const struct proc_info *)b)->pid;
    return (x > y) - (x < y);
}

int proc_table_read(const char *proc_root, struct proc_table *out)
{
    out->procs = NULL;
    out->n = 0;
    DIR *dir = opendir(proc_root);
    if (dir == NULL)
        return -errno;
    uint64_t page_size = (uint64_t)sysconf(_SC_PAGESIZE);
    size_t size = 0;
    int rc = 0;
    struct dirent *de;
    while ((errno = 0, de = readdir(dir)) != NULL) {
        if (!is_pid_name(de->d_name) || strlen(de->d_name) > 10)
            continue;
        if (out->n == PROC_TABLE_MAX) {
            rc = -EFBIG;
            break;
        }
        if (out->n == size) {
            size = size == 0 ? 512 : size * 2;
            out->procs = xrealloc(out->procs, size * sizeof(*out->procs));
        }
        if (read_one(dirfd(dir), de->d_name, page_size, &out->procs[out->n]) == 0)
            out->n++;
    }
    if (rc == 0 && errno != 0)
        rc = -errno;
    closedir(dir);
    if (rc != 0) {
        proc_table_free(out);
        return rc;
    }
    if (out->n > 0)
        qsort(out->procs, out->n, sizeof(*out->procs), cmp_info_pid);
    return 0;
}

void proc_table_free(struct proc_table *t)
{
    free(t->procs);
    t->procs = NULL;
    t->n = 0;
}

const struct proc_info *proc_table_find(const struct proc_table *t, pid_t pid)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->procs[mid].pid == pid)
            return &t->procs[mid];
        if (t->procs[mid].pid < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- proc_tree ---- */

struct tree_ctx {
    const struct proc_table *t;
    pid_t root;
    bool root_valid;       /* root is not known to have been replaced by a newcomer */
    struct proc_id *known; /* sorted copy of the caller's known[] */
    size_t nknown;
    pid_t *leaders; /* sorted pids whose group, session and children count */
    size_t nleaders;
    uint8_t *memo; /* enum tree_mark per table index */
    size_t *stack; /* the walk up one ppid chain */
};

static int cmp_id_pid(const void *a, const void *b)
{
    pid_t x = ((const struct proc_id *)a)->pid, y = ((const struct proc_id *)b)->pid;
    return (x > y) - (x < y);
}

static int cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

static bool is_leader(const struct tree_ctx *c, pid_t pid)
{
    return pid > 0 && bsearch(&pid, c->leaders, c->nleaders, sizeof(pid_t), cmp_pid) != NULL;
}

static const struct proc_id *find_known(const struct tree_ctx *c, pid_t pid)
{
    struct proc_id key = {.pid = pid};
    return bsearch(&key, c->known, c->nknown, sizeof(*c->known), cmp_id_pid);
}

/* Whether a pid's current holder (if any) is the process recorded as id. */
static bool same_or_dead(const struct proc_table *t, struct proc_id id)
{
    const struct proc_info *p = proc_table_find(t, id.pid);
    return p == NULL || p->start_ticks == id.start_ticks;
}

/* Fills known, leaders and root_valid from the caller's arguments. */
static void tree_prepare(struct tree_ctx *c, const struct proc_id *known, size_t nknown)
{
    c->known = xmalloc((nknown + 1) * sizeof(*c->known));
    if (nknown > 0)
        memcpy(c->known, known, nknown * sizeof(*known));
    c->nknown = nknown;
    qsort(c->known, nknown, sizeof(*c->known), cmp_id_pid);

    const struct proc_id *root_known = find_known(c, c->root);
    c->root_valid = c->root > 0 && (root_known == NULL || same_or_dead(c->t, *root_known));

    c->leaders = xmalloc((nknown + 1) * sizeof(*c->leaders));
    c->nleaders = 0;
    if (c->root_valid)
        c->leaders[c->nleaders++] = c->root;
    for (size_t i = 0; i < nknown; i++) {
        if (c->known[i].pid > 0 && same_or_dead(c->t, c->known[i]))
            c->leaders[c->nleaders++] = c->known[i].pid;
    }
    qsort(c->leaders, c->nleaders, sizeof(*c->leaders), cmp_pid);
}

/* The rules that need no walk: root, a recorded process, a member of a led group or session. */
static bool direct_member(const struct tree_ctx *c, const struct proc_info *p)
{
    if (p->pid == c->root && c->root_valid)
        return true;
    const struct proc_id *k = find_known(c, p->pid);
    if (k != NULL && k->start_ticks == p->start_ticks)
        return true;
    return is_leader(c, p->pgid) || is_leader(c, p->sid);
}

/* Decides table entry i, walking up its ppid chain until an entry is decided, and gives every
 * entry on the way the same verdict. */
static bool tree_member(struct tree_ctx *c, size_t i)
{
    size_t top = 0, j = i;
    uint8_t verdict;
    for (;;) {
        uint8_t m = c->memo[j];
        if (m == TREE_IN || m == TREE_OUT) {
            verdict = m;
            break;
        }
        /* A cycle in the ppid chain cannot happen in a real /proc, only in a crafted one. */
        const struct proc_info *p = &c->t->procs[j];
        if (m == TREE_VISITING || proc_info_gone(p)) {
            verdict = TREE_OUT;
            break;
        }
        if (direct_member(c, p)) {
            verdict = TREE_IN;
            break;
        }
        c->memo[j] = TREE_VISITING;
        c->stack[top++] = j;
        /* pid 1 is init, never part of an engine; 0 is the kernel. */
        const struct proc_info *parent = p->ppid > 1 ? proc_table_find(c->t, p->ppid) : NULL;
        if (parent == NULL) {
            verdict = TREE_OUT;
            break;
        }
        j = (size_t)(parent - c->t->procs);
    }
    if (c->memo[j] == TREE_UNKNOWN)
        c->memo[j] = verdict;
    while (top > 0)
        c->memo[c->stack[--top]] = verdict;
    return verdict == TREE_IN;
}

size_t proc_tree(const struct proc_table *t, pid_t root, const struct proc_id *known, size_t nknown,
                 struct proc_id *out, size_t cap)
{
    struct tree_ctx c = {.t = t, .root = root};
    tree_prepare(&c, known, nknown);
    c.memo = xcalloc(t->n + 1, 1);
    c.stack = xmalloc((t->n + 1) * sizeof(*c.stack));
    size_t count = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (!tree_member(&c, i))
            continue;
        if (count < cap)
            out[count] = (struct proc_id){t->procs[i].pid, t->procs[i].start_ticks};
        count++;
    }
    free(c.stack);
    free(c.memo);
    free(c.leaders);
    free(c.known);
    return count;
}

void proc_sum(const struct proc_table *t, const struct proc_id *ids, size_t n, uint64_t *rss_bytes,
              uint64_t *read_bytes)
{
    uint64_t rss = 0, rd = 0;
    for (size_t i = 0; i < n; i++) {
        const struct proc_info *p = proc_table_find(t, ids[i].pid);
        if (p == NULL || p->start_ticks != ids[i].start_ticks || proc_info_gone(p))
            continue;
        rss += p->rss_bytes;
        rd += p->read_bytes;
    }
    *rss_bytes = rss;
    *read_bytes = rd;
}

/* Reads the stat of one pid. Returns 0, -ESRCH when absent, or another -errno. */
static int stat_of(const char *proc_root, pid_t pid, struct proc_info *p)
{
    if (pid <= 0)
        return -ESRCH;
    int dirfd = open_pid_dir(proc_root, pid);
    if (dirfd < 0)
        return dirfd;
    memset(p, 0, sizeof(*p));
    int rc = read_stat(dirfd, p);
    close(dirfd);
    return rc == -ENOENT ? -ESRCH : rc;
}

bool proc_alive(const char *proc_root, struct proc_id id)
{
    struct proc_info p;
    if (stat_of(proc_root, id.pid, &p) != 0)
        return false;
    return !proc_info_gone(&p) && p.start_ticks == id.start_ticks;
}

int proc_start_ticks(const char *proc_root, pid_t pid, uint64_t *out)
{
    struct proc_info p;
    int rc = stat_of(proc_root, pid, &p);
    if (rc != 0)
        return rc;
    if (proc_info_gone(&p))
        return -ESRCH;
    *out = p.start_ticks;
    return 0;
}

int proc_environ_get(const char *proc_root, pid_t pid, const char *key, char *out, size_t cap)
{
    ASSERT(cap > 0);
    size_t klen = strlen(key);
    int dirfd = open_pid_dir(proc_root, pid);
    if (dirfd < 0)
        return dirfd;
    struct buf b;
    buf_init(&b, PROC_ENVIRON_MAX); /* a longer environment is searched in its first bytes */
    int rc = fileio_read_at(dirfd, "environ", &b);
    close(dirfd);
    if (rc == 0)
        rc = -ENOENT;
    const char *env = buf_cstr(&b);
    for (size_t i = 0; i < b.len && rc == -ENOENT; i += strlen(env + i) + 1) {
        if (strncmp(env + i, key, klen) == 0 && env[i + klen] == '=') {
            snprintf(out, cap, "%s", env + i + klen + 1);
            rc = 0;
        }
    }
    buf_cleanup(&b);
    return rc;
}
