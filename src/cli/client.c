/*
 * client.c: the CLI's blocking HTTP client. See client.h. It owns one CURL easy handle per
 * struct client and the buffers of the transfer in progress; it promises that every failure is
 * turned into -errno once, here, and told to the person in one sentence by client_fail(). It
 * does not retry, follow redirects or decompress: a CLI talks to one arun it was pointed at.
 *
 * DESIGN
 *
 * A buffered request collects the body in a capped struct buf. A streaming request feeds the
 * bytes to http/sse_parser (the WHATWG "server-sent events" rules, the same reader the gateway
 * uses on engines' streams) until the server ends the response. The first byte of the body decides
 * the mode: a non-2xx answer is an error document, buffered for client_fail_response(), never
 * parsed as events. Stopping is cooperative: libcurl calls the progress function at least once a
 * second even on an idle stream, and it returns 1 once the caller's flag is set, which ends the
 * transfer with CURLE_ABORTED_BY_CALLBACK (-EINTR). No signal handler touches libcurl.
 *
 * Whether a failure means "unreachable" (exit 3) depends on whether the server was reached:
 * the header callback records the first response header, so a refused or timed-out connect
 * reads "cannot reach", and a stream cut after it started reads "lost the connection".
 */
#include "cli/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/buf.h"
#include "http/sse_parser.h"

/* Loopback is never sent through an http_proxy from the environment: the default server is
 * local, and a proxy would answer for it with its own errors. */
#define NO_PROXY_HOSTS "localhost,127.0.0.1,::1"

/* --cacert FILE as client_take_flag found it (a pointer into argv), for client_init: one verb
 * runs per process, so this is the process's one command line, not shared state. */
static const char *cacert_flag;

/* The caller's callbacks, behind the SSE parser's. */
struct sse_sink {
    client_sse_cb on_event, on_comment;
    void *arg;
};

/* One transfer: what the callbacks of libcurl write into. */
struct xfer {
    struct client *c;
    struct buf body;        /* buffered mode, or a stream's error document */
    struct sse_parser *sse; /* streaming mode; NULL when buffered */
    bool decided;           /* streaming: the status was looked at */
    bool streaming;         /* streaming and the status is 2xx: body bytes are events */
    bool got_headers;       /* a response header arrived: the server was reached */
    int retry_after_s;      /* Retry-After in seconds, 0 when absent or an HTTP-date */
    int cb_rc;              /* why a callback ended the transfer (-E2BIG, a cb's value) */
    volatile sig_atomic_t *stop;
};

/* ---- SSE (http/sse_parser reads the stream) ---- */

/* Every event that had a data field is handed over, an empty one too: an engine's blank log
 * line arrives as exactly that ("data: " then a blank line), and a log follower must show it. */
static int sink_event_cb(const struct sse_event *ev, void *arg)
{
    struct sse_sink *k = arg;
    return k->on_event(ev->data, ev->data_len, k->arg);
}

static int sink_comment_cb(const char *text, size_t len, void *arg)
{
    struct sse_sink *k = arg;
    return k->on_comment ? k->on_comment(text, len, k->arg) : 0;
}

/* ---- libcurl callbacks ---- */

/* Retry-After as delta-seconds; the HTTP-date form is left out, arun never sends it. */
static int parse_retry_after(const char *p, size_t n)
{
    static const char name[] = "retry-after:";
    size_t i = sizeof(name) - 1;
    if (n <= i || strncasecmp(p, name, i) != 0)
        return 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    int v = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
        v = v < 86400 ? v * 10 + (p[i] - '0') : v; /* a day is plenty; no overflow */
    return v;
}

static size_t header_cb(char *p, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    int ra = parse_retry_after(p, size * n);
    x->got_headers = true;
    if (ra > 0)
        x->retry_after_s = ra;
    return size * n;
}

static size_t write_cb(char *p, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = size * n;
    if (x->sse != NULL && !x->decided) {
        long status = 0;
        curl_easy_getinfo(x->c->curl, CURLINFO_RESPONSE_CODE, &status);
        x->streaming = status >= 200 && status < 300;
        x->decided = true;
    }
    int rc = x->streaming ? sse_parser_feed(x->sse, p, len) : buf_append(&x->body, p, len);
    if (rc == 0)
        return len;
    x->cb_rc = rc == -ENOBUFS ? -E2BIG : rc;
    return 0; /* CURLE_WRITE_ERROR: the transfer ends, cb_rc says why */
}

static int progress_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct xfer *x = arg;
    if (x->sse != NULL && x->c->on_tick != NULL)
        x->c->on_tick(x->c->tick_arg);
    return x->stop != NULL && *x->stop ? 1 : 0;
}

/* ---- requests ---- */

static int errno_of(struct xfer *x, CURLcode cc)
{
    long os_errno = 0;
    switch (cc) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(x->c->curl, CURLINFO_OS_ERRNO, &os_errno);
        return os_errno == ENETUNREACH || os_errno == EHOSTUNREACH ? -(int)os_errno : -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
        return -ECONNRESET;
    case CURLE_WRITE_ERROR:
        return x->cb_rc != 0 ? x->cb_rc : -EIO;
    case CURLE_ABORTED_BY_CALLBACK:
        return -EINTR;
    default:
        return -EIO;
    }
}

static int perform(struct client *c, const char *method, const char *path, const char *body,
                   struct xfer *x, struct client_response *res)
{
    CURL *h = c->curl;
    struct curl_slist *hdrs = NULL;
    char *url = xasprintf("%s%s", c->base_url, path);
    char *auth = c->api_key ? xasprintf("Authorization: Bearer %s", c->api_key) : NULL;

    memset(res, 0, sizeof(*res));
    c->errbuf[0] = '\0';
    curl_easy_reset(h); /* keeps the connection cache; forgets the previous request's options */
    if (auth != NULL)
        hdrs = curl_slist_append(hdrs, auth);
    hdrs = curl_slist_append(hdrs, x->sse ? "Accept: text/event-stream" : "Accept: */*");
    if (body != NULL)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (c->unix_socket != NULL)
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->unix_socket);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, NO_PROXY_HOSTS);
    if (c->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CLIENT_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, x->sse ? 0L : (long)c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, x->stop != NULL ? 0L : 1L);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
    }
    CURLcode cc = curl_easy_perform(h);
    c->unverified = cc == CURLE_PEER_FAILED_VERIFICATION;
    int rc = errno_of(x, cc);
    if (rc == 0) {
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        res->status = (int)status;
        res->retry_after_s = x->retry_after_s;
        res->len = x->body.len;
        res->body = x->body.len ? buf_steal(&x->body) : xstrdup("");
        res->json = res->len ? json_loadb(res->body, res->len, 0, NULL) : NULL;
    }
    c->errbuf[sizeof(c->errbuf) - 1] = '\0';
    curl_slist_free_all(hdrs);
    free(auth);
    free(url);
    return rc;
}

static int request(struct client *c, const char *method, const char *path, const char *body,
                   struct client_response *res)
{
    struct xfer x = {.c = c};
    buf_init(&x.body, CLIENT_MAX_BODY);
    int rc = perform(c, method, path, body, &x, res);
    c->reached = x.got_headers;
    buf_cleanup(&x.body);
    return rc;
}

int client_get(struct client *c, const char *path, struct client_response *res)
{
    return request(c, "GET", path, NULL, res);
}

int client_post(struct client *c, const char *path, const char *json_body,
                struct client_response *res)
{
    return request(c, "POST", path, json_body, res);
}

static int stream(struct client *c, const char *method, const char *path, const char *body,
                  client_sse_cb on_event, client_sse_cb on_comment, void *arg,
                  volatile sig_atomic_t *stop, struct client_response *res)
{
    struct sse_sink sink = {.on_event = on_event, .on_comment = on_comment, .arg = arg};
    struct sse_parser p;
    sse_parser_init(&p, CLIENT_SSE_MAX_LINE, CLIENT_SSE_MAX_EVENT, sink_event_cb, sink_comment_cb,
                    &sink);
    struct xfer x = {.c = c, .sse = &p, .stop = stop};
    buf_init(&x.body, CLIENT_MAX_BODY);
    int rc = perform(c, method, path, body, &x, res);
    c->reached = x.got_headers;
    buf_cleanup(&x.body);
    sse_parser_cleanup(&p);
    return rc;
}

int client_stream_sse(struct client *c, const char *path, client_sse_cb on_event,
                      client_sse_cb on_comment, void *arg, volatile sig_atomic_t *stop,
                      struct client_response *res)
{
    return stream(c, "GET", path, NULL, on_event, on_comment, arg, stop, res);
}

int client_post_sse(struct client *c, const char *path, const char *json_body,
                    client_sse_cb on_event, client_sse_cb on_comment, void *arg,
                    volatile sig_atomic_t *stop, struct client_response *res)
{
    return stream(c, "POST", path, json_body, on_event, on_comment, arg, stop, res);
}

void client_response_cleanup(struct client_response *res)
{
    free(res->body);
    json_decref(res->json);
    memset(res, 0, sizeof(*res));
}

/* ---- set-up and flags ---- */

int client_take_flag(const char *verb, int argc, char **argv, int *i, const char **server,
                     const char **api_key)
{
    static const struct {
        const char *name;
        size_t len;
    } flags[] = {{"--server", 8}, {"--api-key", 9}, {"--cacert", 8}};
    for (size_t f = 0; f < ARRAY_SIZE(flags); f++) {
        const char *a = argv[*i];
        if (strncmp(a, flags[f].name, flags[f].len) != 0)
            continue;
        const char *v;
        if (a[flags[f].len] == '=') {
            v = a + flags[f].len + 1;
        } else if (a[flags[f].len] != '\0') {
            continue;
        } else if (*i + 1 >= argc) {
            fprintf(stderr, "arun %s: %s needs a value\n", verb, flags[f].name);
            return -EINVAL;
        } else {
            v = argv[++*i];
        }
        if (f == 2)
            cacert_flag = v;
        else
            *(f == 0 ? server : api_key) = v;
        return 1;
    }
    return 0;
}

const char *client_take_value(int argc, char **argv, int *i, const char *name, const char *shrt,
                              bool *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) == 0 && a[n] == '=')
        return a + n + 1;
    if (strcmp(a, name) != 0 && (shrt == NULL || strcmp(a, shrt) != 0))
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

int client_parse_count(const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || v < 0 || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int client_init(struct client *c, const char *server, const char *api_key)
{
    memset(c, 0, sizeof(*c));
    if (server == NULL)
        server = getenv("ARUN_URL");
    if (server == NULL || server[0] == '\0')
        server = CLIENT_DEFAULT_URL;
    if (api_key == NULL)
        api_key = getenv("ARUN_API_KEY");
    if (strncmp(server, "http://", 7) != 0 && strncmp(server, "https://", 8) != 0) {
        fprintf(stderr,
                "arun: the server URL must start with http:// or https://, got \"%s\" "
                "(from --server or ARUN_URL)\n",
                server);
        return -EINVAL;
    }
    const char *ca = cacert_flag != NULL ? cacert_flag : getenv("ARUN_CA_FILE");
    if (ca != NULL && ca[0] != '\0' && access(ca, R_OK) != 0) {
        fprintf(stderr, "arun: the CA file %s (from %s) cannot be read: %s\n", ca,
                cacert_flag != NULL ? "--cacert" : "ARUN_CA_FILE", strerror(errno));
        return -EINVAL;
    }
    size_t n = strlen(server);
    while (n > 0 && server[n - 1] == '/')
        n--;
    c->ca_file = ca != NULL && ca[0] != '\0' ? xstrdup(ca) : NULL;
    c->base_url = xstrndup(server, n);
    c->api_key = api_key && api_key[0] ? xstrdup(api_key) : NULL;
    c->timeout_ms = CLIENT_TIMEOUT_MS;
    c->curl = curl_easy_init();
    if (c->curl == NULL) /* only out of memory makes it fail: the same rule as xmalloc */
        abort();
    return 0;
}

void client_init_local(struct client *c, const char *socket_path)
{
    memset(c, 0, sizeof(*c));
    c->base_url = xstrdup("http://localhost");
    c->unix_socket = xstrdup(socket_path);
    c->timeout_ms = CLIENT_TIMEOUT_MS;
    c->curl = curl_easy_init();
    if (c->curl == NULL) /* as in client_init */
        abort();
}

void client_cleanup(struct client *c)
{
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    free(c->base_url);
    free(c->api_key);
    free(c->unix_socket);
    free(c->ca_file);
    memset(c, 0, sizeof(*c));
}

/* ---- telling the person ---- */

static const char *reason_of(const struct client *c, int rc)
{
    switch (rc) {
    case -ECONNREFUSED:
        return "connection refused";
    case -ETIMEDOUT:
        return "timed out";
    case -ECONNRESET:
        return "the connection was closed";
    default:
        return c->errbuf[0] ? c->errbuf : strerror(-rc);
    }
}

int client_fail(const struct client *c, int rc)
{
    if (c->unverified) {
        fprintf(stderr,
                "arun: the certificate of the server at %s is not trusted: %s (for a private "
                "CA, name its certificate with --cacert FILE or ARUN_CA_FILE=FILE)\n",
                c->base_url, reason_of(c, rc));
        return CLIENT_EXIT_FAILURE;
    }
    switch (rc) {
    case -ECONNREFUSED:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -ETIMEDOUT:
    case -ECONNRESET:
        if (c->reached)
            fprintf(stderr, "arun: lost the connection to the server at %s: %s\n", c->base_url,
                    reason_of(c, rc));
        else if (rc == -ECONNRESET && strncmp(c->base_url, "http://", 7) == 0)
            fprintf(stderr,
                    "arun: cannot reach the server at %s: %s (if it serves HTTPS, use "
                    "https://)\n",
                    c->base_url, reason_of(c, rc));
        else
            fprintf(stderr, "arun: cannot reach the server at %s: %s (is `arun serve` running?)\n",
                    c->base_url, reason_of(c, rc));
        return CLIENT_EXIT_UNREACHABLE;
    case -E2BIG:
        fprintf(stderr, "arun: the answer of the server at %s is too large for the CLI\n",
                c->base_url);
        return CLIENT_EXIT_FAILURE;
    default:
        fprintf(stderr, "arun: request to %s failed: %s\n", c->base_url, reason_of(c, rc));
        return CLIENT_EXIT_FAILURE;
    }
}

const char *client_error_message(const struct client_response *res)
{
    json_t *err = json_object_get(res->json, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    if (msg == NULL && json_is_string(err))
        msg = json_string_value(err);
    return msg;
}

int client_fail_response(const struct client_response *res)
{
    const char *msg = client_error_message(res);
    if (msg != NULL)
        fprintf(stderr, "arun: %s\n", msg);
    else
        fprintf(stderr, "arun: the server answered %d: %.200s\n", res->status,
                res->body ? res->body : "");
    return CLIENT_EXIT_FAILURE;
}

int client_get_list(struct client *c, const char *path, struct client_response *res,
                    const json_t **data)
{
    int rc = client_get(c, path, res);
    if (rc != 0)
        return client_fail(c, rc);
    *data = json_object_get(res->json, "data");
    if (res->status == 200 && json_is_array(*data))
        return 0;
    rc = client_fail_response(res);
    client_response_cleanup(res);
    return rc;
}

char *client_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = xmalloc(n * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

void client_print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s != NULL)
        printf("%s\n", s);
    free(s);
}

int client_usage_error(const char *verb, const char *usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "arun %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n%s", usage);
    va_end(ap);
    return CLIENT_EXIT_USAGE;
}
