/*
 * log.h: JSON-lines logging to stderr, one object a line:
 *   {"time":"2026-11-24T01:58:21.123Z","level":"info","module":"http","request_id":"…",
 *    "msg":"…","error":"…", …extra fields}
 * The macros skip argument evaluation below the current level (nginx's ngx_log_error habit).
 * An errno travels as its own argument, never glued into the message.
 */
#ifndef ARUN_CORE_LOG_H
#define ARUN_CORE_LOG_H

#include <jansson.h>
#include <uv.h>

#include "core/common.h"

/* The buffer of log_buffer_start: about 180 access lines, nginx's usual access_log buffer. */
#define LOG_BUFFER_BYTES (64 * 1024)
/* The longest a buffered line waits: short enough that a person tailing the log, or a test
 * waiting for a line, never notices. */
#define LOG_FLUSH_MS 50

enum log_level {
    LOGL_DEBUG,
    LOGL_INFO,
    LOGL_WARN,
    LOGL_ERROR,
};

/* The lowest level written; read by the macros, set by log_set_level(). */
extern enum log_level log_min_level;

void log_set_level(enum log_level level);
/* Parses "debug|info|warn|error". Returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out) MUST_USE;
const char *log_level_name(enum log_level level);

/* From now on lines at info and below are kept in a LOG_BUFFER_BYTES buffer and written in
 * batches: when it is full, LOG_FLUSH_MS after the first line (a timer on loop, which this thread
 * must run), with the next warn or error line, at log_flush() and at exit. Lines from other
 * threads are written at once. The timer does not keep the loop alive. Call once, from the loop
 * thread; log_buffer_stop() before closing the loop. */
void log_buffer_start(uv_loop_t *loop);
/* Writes what is buffered now. Safe from any thread, at exit and before abort(). */
void log_flush(void);
/* Flushes and goes back to one write per line; closes the timer (run the loop once more for
 * its close). A no-op when buffering is off. */
void log_buffer_stop(void);

/* Writes one line (or buffers it: see log_buffer_start). err is 0 or a negative errno (rendered as
 * "error"). fields, when not NULL, is a JSON object whose members are added to the line; the call
 * takes the reference. */
void log_write(enum log_level level, const char *module, const char *request_id, int err,
               json_t *fields, const char *fmt, ...) PRINTF_LIKE(6, 7);

/* fields (like the message arguments) is evaluated only when the level is on: building it
 * costs nothing below the level, and there is nothing to free. */
#define LOG_AT(level, module, rid, err, fields, ...)                                               \
    do {                                                                                           \
        if ((level) >= log_min_level)                                                              \
            log_write((level), (module), (rid), (err), (fields), __VA_ARGS__);                     \
    } while (0)

#define log_debug(module, ...) LOG_AT(LOGL_DEBUG, module, NULL, 0, NULL, __VA_ARGS__)
#define log_info(module, ...) LOG_AT(LOGL_INFO, module, NULL, 0, NULL, __VA_ARGS__)
#define log_warn(module, ...) LOG_AT(LOGL_WARN, module, NULL, 0, NULL, __VA_ARGS__)
#define log_error(module, ...) LOG_AT(LOGL_ERROR, module, NULL, 0, NULL, __VA_ARGS__)
/* The same with a negative errno as the "error" field. */
#define log_warn_errno(module, err, ...) LOG_AT(LOGL_WARN, module, NULL, err, NULL, __VA_ARGS__)
#define log_error_errno(module, err, ...) LOG_AT(LOGL_ERROR, module, NULL, err, NULL, __VA_ARGS__)

#endif
