/*
 * logs.h: where an engine's output goes, so that people can find it. Every line an engine
 * writes (stdout and stderr of a native process, or of `podman logs -f`) goes to
 * DATA_DIR/logs/NAME.log (size-rotated: NAME.log, NAME.log.1 … NAME.log.N, the oldest dropped),
 * to an in-memory tail of recent lines (GET /v1/engines/NAME/logs?tail=N, crash reasons) and to
 * live followers (logs?follow=1, `arun logs -f`). Output arrives either fed by arun
 * (engine_log_feed: container logs, pipes) or written to the file by the child itself and read
 * back (engine_log_child_fd, engine_log_poll: native engines, which outlive arun). arun's own notes
 * about the engine ("arun: started pid 1234: …", "arun: exited with code 1 after 2.3 s") are
 * interleaved as lines, so the file tells the whole story. docs/internals/logs.md has the details.
 *
 * Every function here runs on the loop thread that opened the log; nothing is locked. Writes
 * are plain write(2) calls of whole lines into the page cache, never fsync'd (nginx's habit for
 * logs): losing the last lines in a power cut is acceptable, stalling the loop is not.
 */
#ifndef ARUN_ENGINES_LOGS_H
#define ARUN_ENGINES_LOGS_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/common.h"

/* The longest line anyone sees (file, tail, followers), in bytes without the newline. A longer
 * "line" (an engine printing a progress bar or a JSON dump without newlines) is cut to fit, ends
 * with ENGINE_LOG_CUT_MARK, and the rest of it up to its newline is dropped: memory stays
 * bounded whatever the engine writes. */
#define ENGINE_LOG_MAX_LINE 16384
#define ENGINE_LOG_CUT_MARK " [arun: line cut]"
#define ENGINE_LOG_NOTE_PREFIX "arun: " /* starts every note line */

#define ENGINE_LOG_DEFAULT_MAX_FILE_BYTES (10u * 1024 * 1024)
#define ENGINE_LOG_DEFAULT_KEEP_FILES 3
#define ENGINE_LOG_DEFAULT_TAIL_LINES 1000
#define ENGINE_LOG_DEFAULT_TAIL_BYTES (1024u * 1024)
/* Caps on the options, so a typo in a config cannot make arun allocate without bound or keep
 * renaming thousands of files per rotation. */
#define ENGINE_LOG_MAX_KEEP_FILES 100
#define ENGINE_LOG_MAX_TAIL_LINES 1000000
#define ENGINE_LOG_MAX_TAIL_BYTES (256u * 1024 * 1024)

struct engine_log_opts {
    size_t max_file_bytes; /* rotate before a line would take NAME.log past this; 0 = 10 MiB */
    unsigned keep_files;   /* rotated files kept besides the live one; 0 = 3 (capped at 100) */
    size_t tail_lines;     /* lines kept in memory; 0 = 1000 */
    size_t tail_bytes;     /* and at most these bytes (each line counts len + 1); 0 = 1 MiB */
};

struct engine_log;          /* opaque; one per engine, owned by its supervisor */
struct engine_log_follower; /* opaque; owned by the log until engine_log_unfollow */

/* line: one line without its newline, len bytes, not NUL-terminated; stream 1 stdout, 2 stderr,
 * 0 arun's note (starting "arun: ", without the file's timestamp). Valid during the call only.
 * A follower may unfollow itself (or another follower) from inside the callback; it must not
 * feed, poll, flush, note or close the log it follows from there (asserted). */
typedef void (*engine_log_line_cb)(const char *line, size_t len, int stream, void *arg);

/* Opens DIR/NAME.log, creating DIR (0700; its parent must exist) and the file (0600), appending
 * to an existing file. o may be NULL (all defaults). NAME must be a plain file name (no '/').
 * Returns 0 and *out, or -errno with a sentence in err. */
int engine_log_open(const char *dir, const char *name, const struct engine_log_opts *o,
                    struct engine_log **out, struct buf *err) MUST_USE;

/* Feeds raw bytes from stream 1 (stdout) or 2 (stderr), which arun then writes to the file
 * itself (and rotates by renaming). They are split into lines at "\n", "\r\n" or a lone "\r"
 * (a progress bar's redraw: each becomes a line); each stream holds its own partial last line
 * until its end arrives, it passes ENGINE_LOG_MAX_LINE (then it is cut), or engine_log_flush. Each
 * complete line goes to the file, the tail and the followers. Bytes are passed through untouched
 * (invalid UTF-8 included). Updates last_output_ms and bytes_total. */
void engine_log_feed(struct engine_log *l, int stream, const char *data, size_t len);

/* Shared mode, for native engines, which must outlive a crash of arun and so cannot write into
 * a pipe that arun reads: the child writes NAME.log itself, and arun reads back what it wrote.
 *
 * Returns a new descriptor of NAME.log (O_WRONLY | O_APPEND | O_CLOEXEC: uv_spawn's dup2 onto
 * the child's stdout and stderr clears the flag there) for the child, which the caller closes
 * after spawning, or -errno. The log is in shared mode until the next engine_log_feed. A log
 * that was never fed is treated as shared from the start: an engine adopted from an earlier arun
 * may be writing it, so it is never renamed from under it. */
int engine_log_child_fd(struct engine_log *l) MUST_USE;
/* Reads what others (the child, or an engine adopted from a previous arun) appended to NAME.log
 * since the last look, at most a few MiB a call, and passes it on as lines of stream 1 (stdout
 * and stderr share the file) to the tail and the followers, not to the file again. Rotates a
 * file past max_file_bytes by copying it to NAME.log.1 and truncating it (the child's descriptor
 * stays valid). Call it on a timer, and before reading the last line of an engine that exited.
 * Puts the log in shared mode (until the next engine_log_feed). */
void engine_log_poll(struct engine_log *l);

/* Emits the partial lines held (stdout's, stderr's, then what was read back) as lines: the
 * process exited, or its pipes closed. */
void engine_log_flush(struct engine_log *l);

/* Appends one line written by arun: "arun: " + the formatted text, with any newline or carriage
 * return in it turned into a space, cut at ENGINE_LOG_MAX_LINE. In shared mode the child's output
 * so far is read back first, so the note follows it in the tail as in the file. In the file the
 * line is prefixed with the UTC time, "2026-11-24T02:10:46.123Z arun: …"; the tail and followers
 * get it without the time (stream 0). Engine lines are written as they came, with no prefix. */
void engine_log_note(struct engine_log *l, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Marks the start of a new run of the engine (call it when spawning): engine_log_last_line()
 * forgets what earlier runs wrote, so a crash reason never quotes a previous crash. */
void engine_log_begin_run(struct engine_log *l);

/* Appends the last n lines of the tail (n capped at what is kept, and at what fits in out's
 * cap: the newest lines win), each followed by "\n", to out. Returns the number of lines. */
size_t engine_log_tail(const struct engine_log *l, size_t n, struct buf *out);

/* The last engine (not arun) line of this run that looks like an error ("error", "Error",
 * "fatal", "panic", "Traceback", "CUDA out of memory", …), else the last engine line of this
 * run: for reasons such as "exited with code 1 after 2.3 s: error: model file not found".
 * NUL-terminated; NULL when the run has written nothing. Valid until the next call that may
 * take in engine output (feed, poll, note, flush), begin_run or close. */
const char *engine_log_last_line(const struct engine_log *l);

/* Calls cb for every line from now on, until engine_log_unfollow. Lines before are in the tail.
 * A follower added from inside a callback sees lines from the next one on. Never fails. */
struct engine_log_follower *engine_log_follow(struct engine_log *l, engine_log_line_cb cb,
                                              void *arg);
/* Stops and frees f; cb is not called again. Allowed from inside any follower's callback. */
void engine_log_unfollow(struct engine_log *l, struct engine_log_follower *f);

/* clock_mono_ms() of the last engine output (any bytes, even without a newline), 0 before any:
 * the stall detector's "no log output for stall_timeout_s". */
uint64_t engine_log_last_output_ms(const struct engine_log *l);
/* Bytes the engine wrote (stdout + stderr) since open, as fed or read back, whatever reached
 * the file; arun's notes do not count. */
uint64_t engine_log_bytes_total(const struct engine_log *l);
/* DIR/NAME.log; owned by the log. */
const char *engine_log_path(const struct engine_log *l);

/* Emits the held partial lines (engine_log_flush), closes the file and frees the log. Every
 * follower must be gone (asserted). NULL is a no-op. */
void engine_log_close(struct engine_log *l);

#endif
