/*
 * logs.c: an engine's log (logs.h). It owns DATA_DIR/logs/NAME.log and its rotated siblings,
 * the in-memory tail of recent lines, the "last line" kept for crash reasons, and the list of
 * live followers. It promises that every line reaches the tail and the followers even when the
 * file cannot be written, and that no input makes it hold more than a fixed amount of memory. It
 * does not read pipes, spawn or run `podman logs` (the supervisor and container.c feed it),
 * escape anything for HTTP (the HTTP layer does), or reopen a file that something else rotated.
 *
 * DESIGN
 * Output arrives in one of two ways. Fed: arun has the bytes (container.c's `podman logs -f`
 * pipes) and writes them to NAME.log itself. Shared: a native engine writes NAME.log directly
 * through the descriptor engine_log_child_fd() gave it, because it must outlive a crash of arun
 * (contract 5) and a pipe whose reader died would kill it with SIGPIPE; engine_log_poll() then
 * reads back what it appended since read_off, and those bytes take the same path to the tail
 * and the followers, but not to the file again. arun's notes go into the same file with
 * O_APPEND; after each of our writes, lseek says where it landed, so read_off skips our own
 * bytes and anything the child wrote just before them is read back first (account_own_write).
 * A log counts as fed only after engine_log_feed(): until then an engine adopted from an earlier
 * arun may be writing NAME.log, so it is treated as shared and never renamed from under it.
 *
 * Bytes arrive per stream (stdout, stderr, read back) in whatever chunks the pipe gave. Each stream
 * keeps its own partial line, so a stdout line and a stderr line that arrive interleaved never mix.
 * A line ends at "\n", at "\r\n", or at a lone "\r" (http/sse_parser.h's line scanner, the SSE
 * rules): tqdm-style progress bars redraw with "\r" and never write "\n", and as one "line" they
 * would grow until cut; as lines, each redraw is readable in the file and in `arun logs -f`. A line
 * that fits in the chunk it arrived in is passed on without a copy; only a line split across chunks
 * is assembled in the stream's buffer, which is capped at ENGINE_LOG_MAX_LINE. Past that the line
 * is cut: its first bytes (backed off to a UTF-8 character boundary) plus ENGINE_LOG_CUT_MARK are
 * emitted as the line, and the rest up to the line's end is dropped.
 *
 * emit() is the one place a line goes out, in this order: the file buffer, the tail, the
 * last-line memory (engine lines only), the followers. The file buffer collects the lines of one
 * engine_log_feed/_note/_flush call and is written with one write(2) at the end of that call
 * (or earlier when it fills or a rotation is due), so a 64 KiB pipe read of small lines costs one
 * system call, and the file never holds a partial line unless the disk filled mid-write.
 *
 * Rotation happens before a line that would take NAME.log past max_file_bytes: NAME.log.(k) is
 * renamed to NAME.log.(k+1) from the oldest down (the rename onto NAME.log.(keep) replaces the
 * oldest file, which is how the oldest lines are dropped), NAME.log becomes NAME.log.1 and a
 * fresh NAME.log is opened. A single line bigger than max_file_bytes still goes into a file of
 * its own rather than being split. In shared mode the child's descriptor would follow a rename,
 * so engine_log_poll() rotates a file that grew past the limit by copying it to NAME.log.1 and
 * truncating it (logrotate's copytruncate); see rotate_copy() for the one small window it has.
 *
 * A file error (disk full, a failed rename or open) never stops the tail and the followers. It
 * is logged through core/log once, then at most once per ENGINE_LOG_ERROR_INTERVAL_MS with the
 * count of the ones not logged, and once more when writing works again, with the bytes lost
 * meanwhile. A file that could not be reopened is retried at most once per
 * ENGINE_LOG_REOPEN_RETRY_MS; a rotation that failed is retried after the error interval, so a
 * read-only directory does not cost a rename per line.
 *
 * The tail is a ring of separately allocated lines that grows (doubling) up to tail_lines, so an
 * engine that writes little costs little. Before a line is added, the oldest are dropped until
 * both caps hold with it. The newest line is always kept, even if it alone is over tail_bytes.
 *
 * Followers are a doubly linked list. While lines are being dispatched, an unfollowed follower is
 * only marked and is freed after the dispatch (libuv's closing-handle habit), so a callback may
 * unfollow itself or any other follower. A follower added during a dispatch is appended after
 * the snapshot of the list's end and sees lines from the next one on.
 *
 * INVARIANTS
 * - Every line anyone sees is at most ENGINE_LOG_MAX_LINE bytes and contains no '\n'; engine
 *   lines contain no '\r' either (notes have theirs replaced).
 * - Only emit() hands a line out; only file_flush() writes the file (rotate_copy() writes only
 *   NAME.log.1); only shift_files() renames.
 * - l->wbuf is empty between API calls.
 * - NAME.log's bytes before l->read_off were either ours or read back; none is read back twice.
 * - l->count <= l->opts.tail_lines, and l->bytes <= l->opts.tail_bytes unless l->count == 1.
 *
 * THREAD SAFETY NOTES
 * Loop thread only, no locks: one engine_log is touched by the thread that opened it. Followers
 * must not feed, note, flush or close the log from their callback (asserted): the line they are
 * given may live in a buffer that such a call would reuse.
 */
#include "engines/logs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <h2o/linklist.h>
#include <h2o/memory.h> /* H2O_STRUCT_FROM_MEMBER */

#include "core/clock.h"
#include "core/log.h"
#include "http/sse_parser.h"

#define MODULE "engine_log"
/* File bytes collected before a write(2): one typical pipe read. Room for one more whole line
 * with its timestamp is added so an append after a flush always fits. */
#define WBUF_FLUSH_AT (64 * 1024)
#define NOTE_TIME_LEN 25 /* "2026-11-24T02:10:46.123Z " */
#define TIME_BUF_SIZE 80
#define WBUF_CAP (WBUF_FLUSH_AT + NOTE_TIME_LEN + ENGINE_LOG_MAX_LINE + 1)
/* A failing disk is reported at most this often (h2o's error reporter habit): once a minute is
 * enough for a person to notice and little enough not to bury arun's own log. */
#define ENGINE_LOG_ERROR_INTERVAL_MS 60000
#define ENGINE_LOG_REOPEN_RETRY_MS 1000 /* a closed file costs at most one open(2) a second */
#define READ_CHUNK (64 * 1024)          /* bytes per pread when reading back or copying */
/* Bytes read back per engine_log_poll: about a millisecond of the loop, and far more than an
 * engine writes in a poll interval; a flood is read over several polls. */
#define POLL_MAX_BYTES (4u * 1024 * 1024)
#define TAIL_RING_MIN 16 /* first ring allocation, in lines */
#define NAME_LEN_MAX 200 /* leaves room for ".log.NNN" under any file system's NAME_MAX (255) */

#define CUT_MARK_LEN (sizeof(ENGINE_LOG_CUT_MARK) - 1)
#define NOTE_PREFIX_LEN (sizeof(ENGINE_LOG_NOTE_PREFIX) - 1)
_Static_assert(CUT_MARK_LEN + 4 < ENGINE_LOG_MAX_LINE, "the cut mark must leave room for text");

enum { ST_STDOUT, ST_STDERR, ST_FILE, ST_COUNT }; /* ST_FILE: bytes read back from NAME.log */

struct stream_state {
    struct buf part; /* the line being assembled across chunks; cap ENGINE_LOG_MAX_LINE */
    int stream;      /* what followers are told: 1 stdout, 2 stderr (ST_FILE says 1) */
    bool to_file;    /* its lines are written to NAME.log (not for ST_FILE: they are there) */
    bool skipping;   /* dropping the rest of a cut line up to its end */
    struct sse_lines lines; /* where lines end: CR, LF or CRLF, also across chunks */
};

struct tail_line {
    size_t len;  /* bytes in data, without the NUL */
    int stream;  /* 0 note, 1 stdout, 2 stderr */
    char data[]; /* len bytes and a NUL */
};

struct engine_log_follower {
    h2o_linklist_t link; /* in l->followers, the oldest first */
    engine_log_line_cb cb;
    void *arg;
    bool removed; /* unfollowed during a dispatch; freed when the dispatch ends */
};

struct engine_log {
    char *name;                  /* the engine's name, for arun's own log lines */
    char *path;                  /* DIR/NAME.log */
    struct engine_log_opts opts; /* with the defaults and caps applied */
    int fd;                      /* NAME.log, O_APPEND; -1 after a failed (re)open */
    uint64_t file_bytes;         /* NAME.log's size: at open, plus what we wrote since */
    struct buf wbuf;             /* file bytes of the current call; empty between calls */
    struct stream_state streams[ST_COUNT];
    char *note; /* scratch for engine_log_note: ENGINE_LOG_MAX_LINE + 1 */

    /* Shared mode: a child writes NAME.log itself (engine_log_child_fd, engine_log_poll). */
    /* arun writes the engine's output itself (engine_log_feed), so nobody else holds NAME.log
     * and rotation may rename it. False until the first feed and again after child_fd or poll:
     * a child (maybe one adopted from an earlier arun) may be writing it; notes read back first. */
    bool fed;
    int rfd;           /* NAME.log read-only, for reading back; -1 until needed */
    uint64_t read_off; /* NAME.log bytes before this are read back or were ours */
    char *rbuf;        /* READ_CHUNK bytes for reading back and copying; NULL until needed */

    struct tail_line **ring; /* the tail: ring_cap slots, count used from head (the oldest) */
    size_t ring_cap;
    size_t head;
    size_t count;
    size_t bytes; /* sum of len + 1 over the tail */

    struct buf last_error; /* the last error-looking engine line of this run */
    struct buf last_any;   /* the last engine line of this run */
    bool run_has_lines;    /* last_any holds a line (maybe an empty one) */

    h2o_linklist_t followers; /* engine_log_follower.link, the oldest first */
    unsigned dispatching;     /* nesting depth of dispatch(); > 0 defers frees */
    size_t removed;           /* followers marked removed, waiting for the sweep */

    uint64_t last_output_ms;
    uint64_t bytes_total;

    bool failing;            /* the last file write failed; the next success is logged */
    bool err_logged;         /* an error was logged at err_logged_ms */
    uint64_t err_logged_ms;  /* clock_mono_ms() of the last error logged */
    uint64_t err_suppressed; /* errors not logged since then */
    uint64_t bytes_lost;     /* file bytes dropped since failing began */
    uint64_t reopen_at_ms;   /* with fd < 0: no open(2) before this */
    uint64_t rotate_at_ms;   /* after a failed rotation: no rotation before this */
};

static void feed_bytes(struct engine_log *l, struct stream_state *st, const char *data, size_t len);

/* Appends to a buffer whose cap was sized for it: failing here is a bug in this file. */
static void put(struct buf *b, const void *p, size_t n)
{
    int rc = buf_append(b, p, n);
    ASSERT(rc == 0);
}

/* ---- errors ---- */

/* Logs a file error, or counts it when one was logged less than the interval ago. */
static void report_error(struct engine_log *l, int err, const char *what, const char *path)
{
    uint64_t now = clock_mono_ms();
    if (l->err_logged && now - l->err_logged_ms < ENGINE_LOG_ERROR_INTERVAL_MS) {
        l->err_suppressed++;
        return;
    }
    if (l->err_suppressed > 0)
        log_error_errno(MODULE, err,
                        "engine %s: cannot %s %s; its lines still reach the in-memory tail and "
                        "followers (%" PRIu64 " more file errors since the last report)",
                        l->name, what, path, l->err_suppressed);
    else
        log_error_errno(MODULE, err,
                        "engine %s: cannot %s %s; its lines still reach the in-memory tail and "
                        "followers",
                        l->name, what, path);
    l->err_logged = true;
    l->err_logged_ms = now;
    l->err_suppressed = 0;
}

/* ---- the file ---- */

static int open_file(struct engine_log *l)
{
    struct stat st;
    int fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    /* A symlink to a device (/dev/null, /dev/full) has no size; start counting from 0. */
    l->file_bytes = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    l->read_off = l->file_bytes; /* what was there before is history, not new output */
    l->fd = fd;
    if (l->rfd >= 0) { /* it may read another inode (after a rename rotation) */
        close(l->rfd);
        l->rfd = -1;
    }
    return 0;
}

/* Writes n bytes, retrying short writes and EINTR. Returns 0 or -errno; *done says how many
 * bytes reached the file either way. */
static int write_all(int fd, const char *p, size_t n, size_t *done)
{
    *done = 0;
    while (*done < n) {
        ssize_t w = write(fd, p + *done, n - *done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        *done += (size_t)w;
    }
    return 0;
}

/* Makes sure NAME.log is open, retrying a failed open at most once per retry interval. */
static bool file_ready(struct engine_log *l)
{
    if (l->fd >= 0)
        return true;
    uint64_t now = clock_mono_ms();
    if (now < l->reopen_at_ms)
        return false;
    int rc = open_file(l);
    if (rc != 0) {
        report_error(l, rc, "open", l->path);
        l->reopen_at_ms = now + ENGINE_LOG_REOPEN_RETRY_MS;
        return false;
    }
    return true;
}

/* ---- reading back what a child wrote (shared mode) ---- */

/* NAME.log's size through the read descriptor (opened here when needed), or -errno. */
static int64_t shared_size(struct engine_log *l)
{
    struct stat st;
    if (l->rfd < 0) {
        l->rfd = open(l->path, O_RDONLY | O_CLOEXEC);
        if (l->rfd < 0) {
            int rc = -errno;
            report_error(l, rc, "read", l->path);
            return rc;
        }
    }
    if (l->rbuf == NULL)
        l->rbuf = xmalloc(READ_CHUNK);
    if (fstat(l->rfd, &st) != 0)
        return -errno;
    return S_ISREG(st.st_mode) ? (int64_t)st.st_size : 0;
}

/* Feeds NAME.log's bytes [read_off, end) as the child's output (ST_FILE) and advances read_off. */
static void read_back(struct engine_log *l, uint64_t end)
{
    while (l->read_off < end && l->rfd >= 0) {
        size_t want = end - l->read_off < READ_CHUNK ? (size_t)(end - l->read_off) : READ_CHUNK;
        ssize_t n = pread(l->rfd, l->rbuf, want, (off_t)l->read_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) { /* truncated under us, or an I/O error: try again at the next poll */
            if (n < 0)
                report_error(l, -errno, "read", l->path);
            return;
        }
        l->read_off += (uint64_t)n;
        l->bytes_total += (uint64_t)n;
        l->last_output_ms = clock_mono_ms();
        feed_bytes(l, &l->streams[ST_FILE], l->rbuf, (size_t)n);
    }
}

/* Reads back everything the child has written so far (at most max bytes). */
static void catch_up(struct engine_log *l, uint64_t max)
{
    int64_t size = shared_size(l);
    if (size < 0)
        return;
    if ((uint64_t)size < l->read_off) /* truncated by someone else: start over */
        l->read_off = 0;
    uint64_t end = (uint64_t)size - l->read_off > max ? l->read_off + max : (uint64_t)size;
    read_back(l, end);
}

/* ---- writing ---- */

/* After our write of done bytes (O_APPEND): the bytes between read_off and where ours landed
 * were written by someone else (the child) meanwhile and are read back; ours are skipped. */
static void account_own_write(struct engine_log *l, size_t done)
{
    off_t end = lseek(l->fd, 0, SEEK_CUR);
    if (end < 0 || (uint64_t)end < done)
        return; /* a device (/dev/null): nothing to read back from */
    uint64_t start = (uint64_t)end - done;
    if (start > l->read_off && shared_size(l) >= 0)
        read_back(l, start);
    if (l->read_off <= start)
        l->read_off = (uint64_t)end;
}

/* Writes l->wbuf to NAME.log and empties it. What cannot be written is dropped and counted. */
static void file_flush(struct engine_log *l)
{
    size_t done = 0;
    int rc = -EBADF;

    if (l->wbuf.len == 0)
        return;
    if (file_ready(l))
        rc = write_all(l->fd, l->wbuf.data, l->wbuf.len, &done);
    l->file_bytes += done;
    if (done > 0)
        account_own_write(l, done);
    if (rc != 0) {
        if (l->fd >= 0)
            report_error(l, rc, "write", l->path);
        l->failing = true;
        l->bytes_lost += l->wbuf.len - done;
    } else if (l->failing) {
        log_info(MODULE, "engine %s: writing %s again; %" PRIu64 " bytes of its log were lost",
                 l->name, l->path, l->bytes_lost);
        l->failing = false;
        l->bytes_lost = 0;
    }
    buf_reset(&l->wbuf);
}

/* ---- rotation ---- */

/* NAME.log.k, or NAME.log for k == 0. The caller frees it. */
static char *rotated_path(const struct engine_log *l, unsigned k)
{
    return k == 0 ? xstrdup(l->path) : xasprintf("%s.%u", l->path, k);
}

/* Renames NAME.log.(k-1) to NAME.log.(k) for k from `to` down to `from` (k = 1 moves NAME.log
 * itself); the rename onto the oldest replaces it. Returns false when a rename failed. */
static bool shift_files(struct engine_log *l, unsigned to, unsigned from)
{
    bool ok = true;
    for (unsigned k = to; k >= from && k >= 1; k--) {
        char *src = rotated_path(l, k - 1);
        char *dst = rotated_path(l, k);
        if (rename(src, dst) != 0 && errno != ENOENT) {
            report_error(l, -errno, "rotate", src);
            ok = false;
        }
        free(src);
        free(dst);
    }
    return ok;
}

/* arun is the only writer: NAME.log becomes NAME.log.1 and a fresh NAME.log is opened. A failed
 * rename is reported and rotation pauses for the error interval. */
static void rotate_rename(struct engine_log *l)
{
    close(l->fd);
    l->fd = -1;
    if (!shift_files(l, l->opts.keep_files, 1))
        l->rotate_at_ms = clock_mono_ms() + ENGINE_LOG_ERROR_INTERVAL_MS;
    l->reopen_at_ms = 0;
    IGNORE_RESULT(file_ready(l)); /* a failure is reported and retried by file_flush */
}

/* Copies NAME.log's bytes [from, to) to dst. Returns 0 or -errno. */
static int copy_range(struct engine_log *l, int dst, uint64_t from, uint64_t to)
{
    while (from < to) {
        size_t want = to - from < READ_CHUNK ? (size_t)(to - from) : READ_CHUNK;
        ssize_t n = pread(l->rfd, l->rbuf, want, (off_t)from);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        size_t done;
        int rc = write_all(dst, l->rbuf, (size_t)n, &done);
        if (rc != 0)
            return rc;
        from += (uint64_t)n;
    }
    return 0;
}

/* A child holds NAME.log open and keeps writing to that inode, so the file cannot be renamed
 * away (logrotate's copytruncate): NAME.log is copied to NAME.log.1 and truncated; the child's
 * next O_APPEND write lands at the new end, 0. Everything up to the copy's end is read back
 * first. What the child writes between the last size check and the truncate (microseconds) is
 * lost: the price of not owning the child's descriptor. A failure keeps NAME.log as it is. */
static void rotate_copy(struct engine_log *l)
{
    char *first = rotated_path(l, 1);
    uint64_t copied = 0;
    int64_t size = shared_size(l);
    int rc = size < 0 ? (int)size : 0;
    int dst = -1;

    if (rc != 0)
        goto out;
    if (!shift_files(l, l->opts.keep_files, 2)) {
        rc = -EIO; /* reported by shift_files */
        goto out;
    }
    dst = open(first, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (dst < 0) {
        rc = -errno;
        report_error(l, rc, "rotate to", first);
        goto out;
    }
    /* The child may append during the copy: copy again until the size holds still (bounded). */
    for (int i = 0; i < 4; i++) {
        size = shared_size(l);
        if (size < 0 || (uint64_t)size == copied)
            break;
        read_back(l, (uint64_t)size);
        rc = copy_range(l, dst, copied, (uint64_t)size);
        if (rc != 0) {
            report_error(l, rc, "rotate to", first);
            goto out;
        }
        copied = (uint64_t)size;
    }
    if (ftruncate(l->fd, 0) != 0) {
        rc = -errno;
        report_error(l, rc, "truncate", l->path);
        goto out;
    }
    l->read_off = 0;
    l->file_bytes = 0;
    rc = 0;
out:
    if (dst >= 0)
        close(dst);
    if (rc != 0)
        l->rotate_at_ms = clock_mono_ms() + ENGINE_LOG_ERROR_INTERVAL_MS;
    free(first);
}

/* The UTC time as "2026-11-24T02:10:46.123Z " (NOTE_TIME_LEN bytes) into out. The buffer has
 * room for what snprintf could write with any int; only the first NOTE_TIME_LEN bytes are used. */
static void format_time(char out[TIME_BUF_SIZE])
{
    int64_t ms = clock_wall_ms();
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, TIME_BUF_SIZE, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ",
             (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
             tm.tm_sec, (int)(ms % 1000));
}

/* Queues one line for NAME.log, rotating first when it would take the file past its limit
 * (unless fed, engine_log_poll rotates instead). */
static void file_put(struct engine_log *l, int stream, const char *line, size_t len)
{
    char ts[TIME_BUF_SIZE];
    size_t ts_len = stream == 0 ? NOTE_TIME_LEN : 0;
    size_t need = ts_len + len + 1;
    uint64_t size = l->file_bytes + l->wbuf.len;

    if (l->fed && size > 0 && size + need > l->opts.max_file_bytes &&
        clock_mono_ms() >= l->rotate_at_ms) {
        /* Decide on what reached the file: while writes fail it does not grow, so a full disk
         * never churns through the rotated files and drops the old ones for nothing. */
        file_flush(l);
        if (l->fd >= 0 && l->file_bytes > 0 && l->file_bytes + need > l->opts.max_file_bytes)
            rotate_rename(l);
    }
    if (l->wbuf.len + need > WBUF_FLUSH_AT)
        file_flush(l);
    if (ts_len > 0) {
        format_time(ts);
        put(&l->wbuf, ts, ts_len);
    }
    put(&l->wbuf, line, len);
    put(&l->wbuf, "\n", 1);
}

/* ---- the tail ---- */

static struct tail_line *tail_at(const struct engine_log *l, size_t i)
{
    DEBUG_ASSERT(i < l->count);
    return l->ring[(l->head + i) % l->ring_cap];
}

static void tail_pop(struct engine_log *l)
{
    struct tail_line *t = l->ring[l->head];
    l->bytes -= t->len + 1;
    free(t);
    l->head = (l->head + 1) % l->ring_cap;
    l->count--;
}

/* Doubles the ring (up to tail_lines), moving the lines to the front in order. */
static void tail_grow(struct engine_log *l)
{
    size_t cap = l->ring_cap == 0 ? TAIL_RING_MIN : l->ring_cap * 2;
    if (cap > l->opts.tail_lines)
        cap = l->opts.tail_lines;
    ASSERT(cap > l->ring_cap);
    struct tail_line **ring = xcalloc(cap, sizeof(*ring));
    for (size_t i = 0; i < l->count; i++)
        ring[i] = tail_at(l, i);
    free(l->ring);
    l->ring = ring;
    l->ring_cap = cap;
    l->head = 0;
}

static void tail_push(struct engine_log *l, int stream, const char *line, size_t len)
{
    size_t cost = len + 1;
    while (l->count > 0 && (l->count >= l->opts.tail_lines || l->bytes + cost > l->opts.tail_bytes))
        tail_pop(l);
    if (l->count == l->ring_cap)
        tail_grow(l);
    struct tail_line *t = xmalloc(sizeof(*t) + len + 1);
    t->len = len;
    t->stream = stream;
    memcpy(t->data, line, len);
    t->data[len] = '\0';
    l->ring[(l->head + l->count) % l->ring_cap] = t;
    l->count++;
    l->bytes += cost;
}

/* ---- the last line ---- */

/* Words that engines put on the lines that explain why they died: llama.cpp ("error:",
 * GGML_ASSERT), Python (tracebacks end in "SomethingError: …" or "…Exception"), PyTorch ("CUDA
 * out of memory"), Go and Rust ("panic"), glibc and the shell ("Segmentation fault",
 * "Aborted"), C++ ("terminate called"). Plain substrings, case as written: a heuristic, and a
 * false positive only changes which line a crash reason quotes. */
static const char *const error_words[] = {
    "error",
    "Error",
    "ERROR",
    "fatal",
    "Fatal",
    "FATAL",
    "panic",
    "Traceback",
    "Exception",
    "out of memory",
    "Assert",
    "ASSERT",
    "Segmentation fault",
    "Aborted",
    "terminate called",
    "No such file",
};

static bool looks_like_error(const char *line, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(error_words); i++) {
        if (memmem(line, len, error_words[i], strlen(error_words[i])) != NULL)
            return true;
    }
    return false;
}

/* A line that ends in its error word, after a space ("srv llama_server: exiting due to model
 * loading error", llama-server's last words after a failed load), names an error without saying
 * what it was. It does not replace an earlier error line, which does. A word glued to the one
 * before it ("RuntimeError", a Python exception without a message) says what it was. */
static bool only_names_an_error(const char *line, size_t len)
{
    while (len > 0 && memchr(" \t\r.!", line[len - 1], 5) != NULL)
        len--;
    for (size_t i = 0; i < ARRAY_SIZE(error_words); i++) {
        size_t n = strlen(error_words[i]);
        if (len > n && (line[len - n - 1] == ' ' || line[len - n - 1] == '\t') &&
            memcmp(line + len - n, error_words[i], n) == 0)
            return true;
    }
    return false;
}

static void remember(struct buf *b, const char *line, size_t len)
{
    buf_reset(b);
    put(b, line, len);
}

/* ---- followers ---- */

static void follower_unlink(struct engine_log_follower *f)
{
    h2o_linklist_unlink(&f->link);
    free(f);
}

/* Frees the followers unfollowed during a dispatch. */
static void followers_sweep(struct engine_log *l)
{
    h2o_linklist_t *node = l->followers.next;
    while (node != &l->followers && l->removed > 0) {
        struct engine_log_follower *f =
            H2O_STRUCT_FROM_MEMBER(struct engine_log_follower, link, node);
        node = node->next;
        if (f->removed) {
            follower_unlink(f);
            l->removed--;
        }
    }
}

static void dispatch(struct engine_log *l, int stream, const char *line, size_t len)
{
    h2o_linklist_t *last = l->followers.prev; /* followers added by a callback wait a line */

    l->dispatching++;
    for (h2o_linklist_t *node = l->followers.next; node != &l->followers; node = node->next) {
        struct engine_log_follower *f =
            H2O_STRUCT_FROM_MEMBER(struct engine_log_follower, link, node);
        if (!f->removed)
            f->cb(line, len, stream, f->arg);
        if (node == last) /* f is still linked: frees wait for the sweep below */
            break;
    }
    l->dispatching--;
    if (l->dispatching == 0 && l->removed > 0)
        followers_sweep(l);
}

/* ---- lines ---- */

/* The one place a line goes out: file, tail, last-line memory, followers (see DESIGN). */
static void emit(struct engine_log *l, int stream, bool to_file, const char *line, size_t len)
{
    DEBUG_ASSERT(len <= ENGINE_LOG_MAX_LINE);
    if (to_file)
        file_put(l, stream, line, len);
    tail_push(l, stream, line, len);
    if (stream != 0) {
        if (looks_like_error(line, len) &&
            !(l->last_error.len > 0 && only_names_an_error(line, len)))
            remember(&l->last_error, line, len);
        remember(&l->last_any, line, len);
        l->run_has_lines = true;
    }
    dispatch(l, stream, line, len);
}

/* Emits the stream's partial line, if any, and empties it. */
static void emit_part(struct engine_log *l, struct stream_state *st)
{
    if (st->part.len == 0)
        return;
    emit(l, st->stream, st->to_file, st->part.data, st->part.len);
    buf_reset(&st->part);
}

/* Adds n bytes of the current line to the stream's partial line. When the line would pass
 * ENGINE_LOG_MAX_LINE it is cut (see DESIGN), emitted, and the stream skips to the line's end. */
static void take(struct engine_log *l, struct stream_state *st, const char *p, size_t n)
{
    if (st->skipping)
        return;
    if (n <= ENGINE_LOG_MAX_LINE - st->part.len) {
        put(&st->part, p, n);
        return;
    }
    put(&st->part, p, ENGINE_LOG_MAX_LINE - st->part.len);
    /* Cut before a UTF-8 character that would lose its continuation bytes (at most 3). */
    size_t cut = ENGINE_LOG_MAX_LINE - CUT_MARK_LEN;
    for (int k = 0; k < 3 && ((unsigned char)st->part.data[cut] & 0xC0) == 0x80; k++)
        cut--;
    st->part.len = cut; /* truncating in place; the append below restores the NUL */
    put(&st->part, ENGINE_LOG_CUT_MARK, CUT_MARK_LEN);
    emit_part(l, st);
    st->skipping = true;
}

/* The stream's current line ends after n more bytes, with '\r' when cr. */
static void line_end(struct engine_log *l, struct stream_state *st, const char *p, size_t n,
                     bool cr)
{
    /* A '\r' at a line's start ends nothing: it is a progress bar's first redraw, or the '\r'
     * of an empty line's "\r\n", whose '\n' then ends the empty line (so the scanner must not
     * take that '\n' as the rest of this '\r'). */
    if (cr && n == 0 && st->part.len == 0 && !st->skipping) {
        st->lines.after_cr = false;
        return;
    }
    if (st->part.len == 0 && !st->skipping && n <= ENGINE_LOG_MAX_LINE) {
        emit(l, st->stream, st->to_file, p, n); /* the whole line is in this chunk: no copy */
        return;
    }
    take(l, st, p, n);
    if (st->skipping)
        st->skipping = false; /* the cut line (cut just now or earlier) ends here */
    else
        emit_part(l, st);
}

/* Splits a chunk of the stream's bytes into lines, with the SSE line rules (http/sse_parser). */
static void feed_bytes(struct engine_log *l, struct stream_state *st, const char *data, size_t len)
{
    while (len > 0) {
        struct sse_piece pc;
        size_t used = sse_lines_next(&st->lines, data, len, &pc);
        if (pc.end != 0)
            line_end(l, st, pc.p, pc.len, pc.end == '\r');
        else
            take(l, st, pc.p, pc.len);
        data += used;
        len -= used;
    }
}

void engine_log_feed(struct engine_log *l, int stream, const char *data, size_t len)
{
    ASSERT(stream == 1 || stream == 2);
    ASSERT(l->dispatching == 0);
    if (len == 0)
        return;
    l->fed = true;
    l->bytes_total += len;
    l->last_output_ms = clock_mono_ms();
    feed_bytes(l, &l->streams[stream == 1 ? ST_STDOUT : ST_STDERR], data, len);
    file_flush(l);
}

int engine_log_child_fd(struct engine_log *l)
{
    int fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    l->fed = false;
    return fd;
}

void engine_log_poll(struct engine_log *l)
{
    ASSERT(l->dispatching == 0);
    l->fed = false;
    catch_up(l, POLL_MAX_BYTES);
    if (l->read_off > l->opts.max_file_bytes && l->fd >= 0 && clock_mono_ms() >= l->rotate_at_ms)
        rotate_copy(l);
}

void engine_log_flush(struct engine_log *l)
{
    ASSERT(l->dispatching == 0);
    for (int i = 0; i < ST_COUNT; i++) {
        emit_part(l, &l->streams[i]);
        l->streams[i].skipping = false;
        l->streams[i].lines = (struct sse_lines){0};
    }
    file_flush(l);
}

void engine_log_note(struct engine_log *l, const char *fmt, ...)
{
    ASSERT(l->dispatching == 0);
    size_t room = ENGINE_LOG_MAX_LINE - NOTE_PREFIX_LEN;
    char *text = l->note + NOTE_PREFIX_LEN;
    va_list ap;

    memcpy(l->note, ENGINE_LOG_NOTE_PREFIX, NOTE_PREFIX_LEN);
    va_start(ap, fmt);
    int n = vsnprintf(text, room + 1, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len > room) {
        len = room;
        memcpy(text + room - CUT_MARK_LEN, ENGINE_LOG_CUT_MARK, CUT_MARK_LEN);
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n' || text[i] == '\r')
            text[i] = ' '; /* one note is one line, whatever a path or message held */
    }
    if (!l->fed) {
        /* The child's output so far comes first, in the tail as in the file; a line it left
         * unfinished ends here in both, so the note starts a line of its own. */
        catch_up(l, UINT64_MAX);
        if (l->streams[ST_FILE].part.len > 0) {
            emit_part(l, &l->streams[ST_FILE]);
            put(&l->wbuf, "\n", 1);
        }
    }
    emit(l, 0, true, l->note, NOTE_PREFIX_LEN + len);
    file_flush(l);
}

void engine_log_begin_run(struct engine_log *l)
{
    buf_reset(&l->last_error);
    buf_reset(&l->last_any);
    l->run_has_lines = false;
}

/* ---- queries ---- */

size_t engine_log_tail(const struct engine_log *l, size_t n, struct buf *out)
{
    size_t room = out->cap > out->len ? out->cap - out->len : 0;
    size_t k = 0;
    size_t need = 0;

    if (n > l->count)
        n = l->count;
    while (k < n) { /* the newest lines that fit */
        const struct tail_line *t = tail_at(l, l->count - 1 - k);
        if (t->len + 1 > room - need)
            break;
        need += t->len + 1;
        k++;
    }
    for (size_t i = l->count - k; i < l->count; i++) {
        const struct tail_line *t = tail_at(l, i);
        put(out, t->data, t->len);
        put(out, "\n", 1);
    }
    return k;
}

const char *engine_log_last_line(const struct engine_log *l)
{
    if (l->last_error.len > 0)
        return buf_cstr(&l->last_error);
    if (l->run_has_lines)
        return buf_cstr(&l->last_any); /* possibly "": the run's last line was empty */
    return NULL;
}

uint64_t engine_log_last_output_ms(const struct engine_log *l)
{
    return l->last_output_ms;
}

uint64_t engine_log_bytes_total(const struct engine_log *l)
{
    return l->bytes_total;
}

const char *engine_log_path(const struct engine_log *l)
{
    return l->path;
}

/* ---- followers ---- */

struct engine_log_follower *engine_log_follow(struct engine_log *l, engine_log_line_cb cb,
                                              void *arg)
{
    ASSERT(cb != NULL);
    struct engine_log_follower *f = xcalloc(1, sizeof(*f));
    f->cb = cb;
    f->arg = arg;
    h2o_linklist_insert(&l->followers, &f->link);
    return f;
}

void engine_log_unfollow(struct engine_log *l, struct engine_log_follower *f)
{
    ASSERT(!f->removed);
    if (l->dispatching > 0) {
        f->removed = true; /* dispatch() may still be standing on it */
        l->removed++;
        return;
    }
    follower_unlink(f);
}

/* ---- open and close ---- */

static int check_name(const char *dir, const char *name, struct buf *err)
{
    if (dir == NULL || dir[0] == '\0') {
        buf_puts(err, "engine log directory is empty");
        return -EINVAL;
    }
    if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 || strlen(name) > NAME_LEN_MAX) {
        buf_printf(err, "engine log name \"%s\" is not a plain file name",
                   name != NULL ? name : "");
        return -EINVAL;
    }
    return 0;
}

static size_t or_default(size_t v, size_t def, size_t max)
{
    if (v == 0)
        return def;
    return v < max ? v : max;
}

static void resolve_opts(struct engine_log_opts *o, const struct engine_log_opts *in)
{
    struct engine_log_opts zero = {0};
    if (in == NULL)
        in = &zero;
    *o = (struct engine_log_opts){
        .max_file_bytes =
            or_default(in->max_file_bytes, ENGINE_LOG_DEFAULT_MAX_FILE_BYTES, SIZE_MAX),
        .keep_files = (unsigned)or_default(in->keep_files, ENGINE_LOG_DEFAULT_KEEP_FILES,
                                           ENGINE_LOG_MAX_KEEP_FILES),
        .tail_lines =
            or_default(in->tail_lines, ENGINE_LOG_DEFAULT_TAIL_LINES, ENGINE_LOG_MAX_TAIL_LINES),
        .tail_bytes =
            or_default(in->tail_bytes, ENGINE_LOG_DEFAULT_TAIL_BYTES, ENGINE_LOG_MAX_TAIL_BYTES),
    };
}

int engine_log_open(const char *dir, const char *name, const struct engine_log_opts *o,
                    struct engine_log **out, struct buf *err)
{
    struct engine_log *l = NULL;
    int rc;

    *out = NULL;
    rc = check_name(dir, name, err);
    if (rc != 0)
        goto out;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
        buf_printf(err, "cannot create log directory %s: %s", dir, strerror(-rc));
        goto out;
    }
    l = xcalloc(1, sizeof(*l));
    h2o_linklist_init_anchor(&l->followers);
    l->fd = -1;
    l->rfd = -1;
    l->name = xstrdup(name);
    l->path = xasprintf("%s/%s.log", dir, name);
    resolve_opts(&l->opts, o);
    rc = open_file(l);
    if (rc != 0) {
        buf_printf(err, "cannot open engine log %s: %s", l->path, strerror(-rc));
        goto out;
    }
    buf_init(&l->wbuf, WBUF_CAP);
    for (int i = 0; i < ST_COUNT; i++) {
        buf_init(&l->streams[i].part, ENGINE_LOG_MAX_LINE);
        l->streams[i].stream = i == ST_STDERR ? 2 : 1;
        l->streams[i].to_file = i != ST_FILE;
    }
    buf_init(&l->last_error, ENGINE_LOG_MAX_LINE);
    buf_init(&l->last_any, ENGINE_LOG_MAX_LINE);
    l->note = xmalloc(ENGINE_LOG_MAX_LINE + 1);
    *out = l;
    l = NULL;
out:
    if (l != NULL) {
        free(l->path);
        free(l->name);
        free(l);
    }
    return rc;
}

void engine_log_close(struct engine_log *l)
{
    if (l == NULL)
        return;
    ASSERT(l->dispatching == 0);
    ASSERT(h2o_linklist_is_empty(&l->followers));
    engine_log_flush(l);
    if (l->fd >= 0)
        close(l->fd);
    if (l->rfd >= 0)
        close(l->rfd);
    free(l->rbuf);
    while (l->count > 0)
        tail_pop(l);
    free(l->ring);
    buf_cleanup(&l->wbuf);
    for (int i = 0; i < ST_COUNT; i++)
        buf_cleanup(&l->streams[i].part);
    buf_cleanup(&l->last_error);
    buf_cleanup(&l->last_any);
    free(l->note);
    free(l->path);
    free(l->name);
    free(l);
}
