/*
 * log.c: JSON-lines writer. See log.h. A line is built in one buffer and written with one
 * fwrite, so lines from arun never interleave mid-line with each other.
 */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "core/buf.h"

#define LOG_LINE_MAX (64 * 1024) /* a longer message is cut, never allowed to grow memory */

enum log_level log_min_level = LOGL_INFO;

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
    fwrite(b.data, 1, b.len, stderr);
    buf_cleanup(&b);
}
