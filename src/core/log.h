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
#include <stdbool.h>
#include <stdint.h>
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

/* A typed field of a line, for paths that log on every request: cheaper than a jansson object
 * (no allocation, no hashing) and written exactly as log_write writes the same jansson value.
 * Make them with LOG_STR, LOG_INT, LOG_REAL and LOG_BOOL; a NULL string is written as null. */
enum log_field_type { LOG_F_STR, LOG_F_INT, LOG_F_REAL, LOG_F_BOOL };
struct log_field {
    const char *key;          /* a JSON-safe key */
    enum log_field_type type; /* which member of the union holds the value */
    union {
        const char *s;
        int64_t i;
        double d;
        bool b;
    };
};
#define LOG_STR(k, v) ((struct log_field){.key = (k), .type = LOG_F_STR, .s = (v)})
#define LOG_INT(k, v) ((struct log_field){.key = (k), .type = LOG_F_INT, .i = (v)})
#define LOG_REAL(k, v) ((struct log_field){.key = (k), .type = LOG_F_REAL, .d = (v)})
#define LOG_BOOL(k, v) ((struct log_field){.key = (k), .type = LOG_F_BOOL, .b = (v)})

/* Writes one line (or buffers it: see log_buffer_start). err is 0 or a negative errno (rendered as
 * "error"). fields, when not NULL, is a JSON object whose members are added to the line; the call
 * takes the reference. */
void log_write(enum log_level level, const char *module, const char *request_id, int err,
               json_t *fields, const char *fmt, ...) PRINTF_LIKE(6, 7);

/* The same with n typed fields instead of a jansson object; the caller keeps fields. */
void log_write_fields(enum log_level level, const char *module, const char *request_id, int err,
                      const struct log_field *fields, size_t n, const char *fmt, ...)
    PRINTF_LIKE(7, 8);

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
