/*
 * log.c: JSON-lines writer. See log.h. A line is built in its own buffer and reaches stderr
 * whole: lines never interleave mid-line, and they come out in the order they were written.
 *
 * DESIGN
 * Unbuffered, each line is one write(2). At log_level info the access log made that one system
 * call per request, a quarter of the gateway's throughput. So the daemon turns buffering on
 * (log_buffer_start): lines at info and below are appended to one fixed buffer and written in
 * one write(2) when the next line would not fit, LOG_FLUSH_MS after the first line went in (a
 * timer on the loop), when a warn or error line comes (written together with what came before
 * it, so a problem shows at once and in order), at log_flush() (exit paths, assert, out of
 * memory), and at exit (atexit). nginx's `access_log ... buffer= flush=` does the same.
 *
 * THREAD SAFETY NOTES
 * Worker threads (the store's writer, samplers) log too. The buffer is guarded by a mutex. Only
 * the loop thread may arm the timer, so a line from any other thread is written at once,
 * together with what was buffered before it. Nothing under the mutex allocates or asserts, so
 * the fatal paths (common.c) can always take it to flush.
 */
#include "core/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "core/buf.h"

#define LOG_LINE_MAX (64 * 1024) /* a longer message is cut, never allowed to grow memory */

_Static_assert(LOG_LINE_MAX <= LOG_BUFFER_BYTES, "a line always fits in an empty buffer");

enum log_level log_min_level = LOGL_INFO;

static struct {
    pthread_mutex_t mu;
    bool on;               /* log_buffer_start ran and log_buffer_stop did not */
    bool armed;            /* the timer will flush; only the loop thread reads or writes it */
    bool atexit_set;       /* log_flush is registered with atexit */
    pthread_t loop_thread; /* the thread that may arm the timer */
    uv_timer_t timer;
    size_t len;
    char data[LOG_BUFFER_BYTES];
} lbuf = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
    log_min_level = level;
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
    return level_names[level];
}

/* A line past LOG_LINE_MAX is cut: the appends below drop what does not fit, by design.
 *
 * Appends s as a JSON string body (no quotes); control bytes are escaped. Invalid UTF-8 is passed
 * through byte for byte: a log line is for people and grep, and jq tolerates it. */
static void put_escaped(struct buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        int rc;
        if (c == '"' || c == '\\')
            rc = buf_printf(b, "\\%c", c);
        else if (c == '\n')
            rc = buf_puts(b, "\\n");
        else if (c < 0x20)
            rc = buf_printf(b, "\\u%04x", c);
        else
            rc = buf_append(b, s, 1);
        if (rc != 0)
            return;
    }
}

static void put_time(struct buf *b)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    IGNORE_RESULT(buf_printf(b, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
                             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                             tm.tm_sec, (int)(tv.tv_usec / 1000)));
}

static void put_field(struct buf *b, const char *key, const char *value)
{
    IGNORE_RESULT(buf_printf(b, ",\"%s\":\"", key));
    put_escaped(b, value);
    IGNORE_RESULT(buf_puts(b, "\""));
}

static void put_fields(struct buf *b, json_t *fields)
{
    const char *key;
    json_t *value;
    json_object_foreach(fields, key, value)
    {
        char *v = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6));
        if (v == NULL)
            continue;
        IGNORE_RESULT(buf_printf(b, ",\""));
        put_escaped(b, key);
        IGNORE_RESULT(buf_printf(b, "\":%s", v));
        free(v);
    }
}

static void emit(const char *p, size_t n)
{
    fwrite(p, 1, n, stderr); /* stderr is unbuffered: one write(2), retried if partial */
}

static void flush_locked(void)
{
    if (lbuf.len > 0)
        emit(lbuf.data, lbuf.len);
    lbuf.len = 0;
}

static void flush_timer_cb(uv_timer_t *t)
{
    lbuf.armed = false;
    log_flush();
}

/* Hands one finished line to stderr, now or through the buffer (see DESIGN). */
static void deliver(enum log_level level, const char *line, size_t n)
{
    pthread_mutex_lock(&lbuf.mu);
    if (!lbuf.on) {
        emit(line, n);
        goto unlock;
    }
    if (n > sizeof(lbuf.data) - lbuf.len)
        flush_locked();
    memcpy(lbuf.data + lbuf.len, line, n); /* fits: n <= LOG_LINE_MAX <= LOG_BUFFER_BYTES */
    lbuf.len += n;
    if (level >= LOGL_WARN || !pthread_equal(pthread_self(), lbuf.loop_thread)) {
        flush_locked();
    } else if (!lbuf.armed) {
        uv_timer_start(&lbuf.timer, flush_timer_cb, LOG_FLUSH_MS, 0);
        lbuf.armed = true;
    }
unlock:
    pthread_mutex_unlock(&lbuf.mu);
}

void log_write(enum log_level level, const char *module, const char *request_id, int err,
               json_t *fields, const char *fmt, ...)
{
    struct buf b;
    char msg[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    buf_init(&b, LOG_LINE_MAX);
    put_time(&b);
    put_field(&b, "level", level_names[level]);
    put_field(&b, "module", module);
    if (request_id != NULL)
        put_field(&b, "request_id", request_id);
    put_field(&b, "msg", msg);
    if (err != 0)
        put_field(&b, "error", strerror(-err));
    if (fields != NULL) {
        put_fields(&b, fields);
        json_decref(fields);
    }
    if (buf_puts(&b, "}\n") != 0) {
        b.len = b.cap > 2 ? b.len - 2 : b.len; /* cut: still end the line */
        IGNORE_RESULT(buf_puts(&b, "}\n"));
    }
    deliver(level, b.data, b.len);
    buf_cleanup(&b);
}

void log_flush(void)
{
    pthread_mutex_lock(&lbuf.mu);
    flush_locked();
    pthread_mutex_unlock(&lbuf.mu);
}

void log_buffer_start(uv_loop_t *loop)
{
    pthread_mutex_lock(&lbuf.mu);
    ASSERT(!lbuf.on);
    uv_timer_init(loop, &lbuf.timer);
    uv_unref(
        (uv_handle_t *)&lbuf.timer); /* a pending flush never keeps the loop alive: exit flushes */
    lbuf.loop_thread = pthread_self();
    lbuf.armed = false;
    lbuf.on = true;
    if (!lbuf.atexit_set)
        lbuf.atexit_set = atexit(log_flush) == 0;
    pthread_mutex_unlock(&lbuf.mu);
}

void log_buffer_stop(void)
{
    pthread_mutex_lock(&lbuf.mu);
    bool was_on = lbuf.on;
    flush_locked();
    lbuf.on = false;
    pthread_mutex_unlock(&lbuf.mu);
    if (was_on)
        uv_close((uv_handle_t *)&lbuf.timer, NULL);
}
