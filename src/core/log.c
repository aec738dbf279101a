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

#define LOG_LINE_MAX (32 * 1024) /* a longer line is cut, never allowed to grow memory */

_Static_assert(LOG_LINE_MAX + 2 <= LOG_BUFFER_BYTES, "a line always fits in an empty buffer");

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

/* ---- formatting a line ----
 * The access log formats a line per request, so this path is written for speed: a line is built
 * in a per-thread buffer (no allocation), by copying runs of bytes (no printf but for the message
 * itself). At log_level info, per-byte appends, printf and an allocation per line were half of
 * arun's instructions per relayed request. A line past LOG_LINE_MAX is cut: put() drops what does
 * not fit, by design, and the line still ends with "}\n". */

struct line {
    size_t len;
    char data[LOG_LINE_MAX + 2]; /* + the closing "}\n", always room for it */
};

static _Thread_local struct line tls_line;

static void put(struct line *l, const char *p, size_t n)
{
    size_t room = LOG_LINE_MAX - l->len;
    if (n > room)
        n = room;
    memcpy(l->data + l->len, p, n);
    l->len += n;
}

#define PUT_LIT(l, lit) put((l), (lit), sizeof(lit) - 1)

/* Bytes that a JSON string cannot hold as they are: control bytes, '"' and '\\'. */
#define CTL4(b) [(b)] = 1, [(b) + 1] = 1, [(b) + 2] = 1, [(b) + 3] = 1
static const unsigned char needs_escape[256] = {
    CTL4(0),  CTL4(4),  CTL4(8),  CTL4(12),  CTL4(16),
    CTL4(20), CTL4(24), CTL4(28), ['"'] = 1, ['\\'] = 1,
};
#undef CTL4

/* Appends s[0..n) as a JSON string body (no quotes); control bytes are escaped. Invalid UTF-8 is
 * passed through byte for byte: a log line is for people and grep, and jq tolerates it. */
static void put_escaped(struct line *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF"; /* jansson's case */
    size_t run = 0;                               /* start of the bytes not yet appended */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!needs_escape[c])
            continue;
        put(l, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put(l, esc, 2);
        } else if (c == '\n') {
            PUT_LIT(l, "\\n");
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
            put(l, esc, 6);
        }
    }
    put(l, s + run, n - run);
}

static void put_2digits(char *out, int v)
{
    out[0] = (char)('0' + v / 10);
    out[1] = (char)('0' + v % 10);
}

/* {"time":"2026-11-24T01:58:21.123Z". The date and time to the second are formatted once a
 * second per thread. */
static void put_time(struct line *l)
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[64]; /* 2026-11-24T01:58:21: 19 bytes (room for GCC) */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_sec = tv.tv_sec;
    }
    int ms = (int)(tv.tv_usec / 1000);
    char frac[6] = {'.', (char)('0' + ms / 100), 0, 0, 'Z', '"'};
    put_2digits(frac + 2, ms % 100);
    PUT_LIT(l, "{\"time\":\"");
    put(l, cached, 19);
    put(l, frac, sizeof(frac));
}

/* ,"key": */
static void put_key(struct line *l, const char *key, size_t n)
{
    PUT_LIT(l, ",\"");
    put_escaped(l, key, n);
    PUT_LIT(l, "\":");
}

static void put_field(struct line *l, const char *key, const char *value)
{
    put_key(l, key, strlen(key));
    PUT_LIT(l, "\"");
    put_escaped(l, value, strlen(value));
    PUT_LIT(l, "\"");
}

static void put_int(struct line *l, json_int_t v)
{
    char num[24];
    size_t n = 0;
    if (v < 0)
        num[n++] = '-';
    n += fmt_u64(num + n, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    put(l, num, n);
}

/* A real as jansson writes it with JSON_REAL_PRECISION(6): "%.6g", a ".0" when that looks like
 * an integer, and the exponent without "+" and leading zeros. */
static void put_real_printf(struct line *l, double v)
{
    char s[40];
    int n = snprintf(s, sizeof(s), "%.6g", v);
    if (n < 0 || (size_t)n >= sizeof(s) - 2)
        return;
    char *e = strchr(s, 'e');
    if (e == NULL) {
        if (strchr(s, '.') == NULL) {
            memcpy(s + n, ".0", 3);
            n += 2;
        }
    } else {
        char *from = e + 1, *to = e + 1;
        if (*from == '+')
            from++;
        else if (*from == '-')
            *to++ = *from++;
        while (*from == '0' && from[1] != '\0')
            from++;
        memmove(to, from, strlen(from) + 1);
        n = (int)strlen(s);
    }
    put(l, s, (size_t)n);
}

/* The same as put_real_printf for the values log lines carry (durations in ms: 1e-3 to 1e6,
 * where %.6g writes no exponent) without printf, which cost 1,800 instructions a value: six
 * significant digits by integer arithmetic, trailing zeros dropped. Rounding goes through the
 * binary product, so a value exactly halfway between two 6-digit decimals may differ from
 * printf in its last digit. */
static void put_real(struct line *l, double v)
{
    static const double pow10[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
    double a = v < 0 ? -v : v;
    if (!(a >= 1e-3 && a < 999999.5)) {
        put_real_printf(l, v);
        return;
    }
    int digits; /* integer digits of a (a >= 1), or minus the zeros after the point (a < 1) */
    if (a >= 1) {
        digits = 1;
        while (digits < 6 && a >= pow10[digits])
            digits++;
    } else {
        digits = 0;
        while (digits > -2 && a < 1 / pow10[1 - digits])
            digits--;
    }
    int decimals = 6 - digits;
    uint64_t scaled = (uint64_t)(a * pow10[decimals] + 0.5);
    if (scaled >= 1000000 && decimals > 0) { /* 9.999995 rounds up to 10.0000: one fewer */
        decimals--;
        scaled = (uint64_t)(a * pow10[decimals] + 0.5);
    }
    uint64_t unit = (uint64_t)pow10[decimals];
    char s[40];
    size_t n = 0;
    if (v < 0)
        s[n++] = '-';
    n += fmt_u64(s + n, scaled / unit);
    uint64_t frac = scaled % unit;
    if (frac == 0) {
        memcpy(s + n, ".0", 2);
        n += 2;
    } else {
        s[n++] = '.';
        for (uint64_t d = unit / 10; d > 0 && frac > 0; d /= 10) {
            s[n++] = (char)('0' + frac / d);
            frac %= d;
        }
    }
    put(l, s, n);
}

/* A field's value as JSON. The scalar types that log lines carry are written here; anything
 * else goes through json_dumps. */
static void put_value(struct line *l, json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_STRING:
        PUT_LIT(l, "\"");
        put_escaped(l, json_string_value(value), json_string_length(value));
        PUT_LIT(l, "\"");
        return;
    case JSON_INTEGER:
        put_int(l, json_integer_value(value));
        return;
    case JSON_REAL:
        put_real(l, json_real_value(value));
        return;
    case JSON_TRUE:
        PUT_LIT(l, "true");
        return;
    case JSON_FALSE:
        PUT_LIT(l, "false");
        return;
    case JSON_NULL:
        PUT_LIT(l, "null");
        return;
    default:
        break;
    }
    char *v = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (v != NULL)
        put(l, v, strlen(v));
    free(v);
}

static void put_fields(struct line *l, json_t *fields)
{
    const char *key;
    json_t *value;
    json_object_foreach(fields, key, value)
    {
        put_key(l, key, strlen(key));
        put_value(l, value);
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

static void put_typed(struct line *l, const struct log_field *f)
{
    put_key(l, f->key, strlen(f->key));
    switch (f->type) {
    case LOG_F_STR:
        if (f->s == NULL) {
            PUT_LIT(l, "null");
            return;
        }
        PUT_LIT(l, "\"");
        put_escaped(l, f->s, strlen(f->s));
        PUT_LIT(l, "\"");
        return;
    case LOG_F_INT:
        put_int(l, f->i);
        return;
    case LOG_F_REAL:
        put_real(l, f->d);
        return;
    case LOG_F_BOOL:
        if (f->b)
            PUT_LIT(l, "true");
        else
            PUT_LIT(l, "false");
        return;
    }
}

/* Starts l with the fields every line has, up to the message. */
static void begin_line(struct line *l, enum log_level level, const char *module,
                       const char *request_id, const char *fmt, va_list ap)
{
    char msg[4096];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);

    l->len = 0;
    put_time(l);
    put_field(l, "level", level_names[level]);
    put_field(l, "module", module);
    if (request_id != NULL)
        put_field(l, "request_id", request_id);
    put_key(l, "msg", 3);
    PUT_LIT(l, "\"");
    put_escaped(l, msg, n < 0 ? 0 : (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
    PUT_LIT(l, "\"");
}

static void end_line(struct line *l, enum log_level level)
{
    memcpy(l->data + l->len, "}\n", 2); /* room reserved in struct line */
    deliver(level, l->data, l->len + 2);
}

/* The one line writer behind log_write and log_write_fields: json or typed fields, or neither. */
static void write_line(enum log_level level, const char *module, const char *request_id, int err,
                       json_t *json, const struct log_field *typed, size_t ntyped, const char *fmt,
                       va_list ap)
{
    struct line *l = &tls_line;

    begin_line(l, level, module, request_id, fmt, ap);
    if (err != 0)
        put_field(l, "error", strerror(-err));
    if (json != NULL) {
        put_fields(l, json);
        json_decref(json);
    }
    for (size_t i = 0; i < ntyped; i++)
        put_typed(l, &typed[i]);
    end_line(l, level);
}

void log_write(enum log_level level, const char *module, const char *request_id, int err,
               json_t *fields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_line(level, module, request_id, err, fields, NULL, 0, fmt, ap);
    va_end(ap);
}

void log_write_fields(enum log_level level, const char *module, const char *request_id, int err,
                      const struct log_field *fields, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_line(level, module, request_id, err, NULL, fields, n, fmt, ap);
    va_end(ap);
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
