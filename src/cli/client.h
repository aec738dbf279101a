/*
 * client.h: the small blocking HTTP client of the CLI's client verbs (contract section 3). It
 * talks to a running `arun serve` with libcurl's easy interface: one request at a time, the
 * process waits. It knows the CLI's conventions so every verb reports alike: where the server
 * is (--server URL, else $ARUN_URL, else http://127.0.0.1:8080), the key (--api-key KEY, else
 * $ARUN_API_KEY, sent as a bearer token), the CA certificates that an https:// server's
 * certificate must chain to (--cacert FILE, else $ARUN_CA_FILE, else the system's store),
 * OpenAI-shaped errors printed as "arun: MESSAGE", and the exit codes: 1 runtime failure, 2 usage,
 * 3 server unreachable.
 *
 * A streaming mode reads Server-Sent Events and hands over each event's data as it arrives,
 * for `arun logs -f`, `arun chat` (a POST that answers with a stream) and, later, `arun runs
 * watch`.
 *
 * Not thread-safe: one client per thread. Nothing here uses signals (CURLOPT_NOSIGNAL), so a
 * verb may own SIGINT; a streaming call stops when the flag it is given becomes non-zero.
 */
#ifndef ARUN_CLI_CLIENT_H
#define ARUN_CLI_CLIENT_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

#define CLIENT_DEFAULT_URL "http://127.0.0.1:8080"
#define CLIENT_CONNECT_TIMEOUT_MS 5000  /* a local server accepts at once; a remote one soon */
#define CLIENT_TIMEOUT_MS 120000        /* a whole buffered request; streams have none */
#define CLIENT_MAX_BODY (128u << 20)    /* logs?tail=10000 of 16 KiB lines fits, with room */
#define CLIENT_SSE_MAX_LINE (1u << 20)  /* one SSE line; engine log lines are cut at 16 KiB */
#define CLIENT_SSE_MAX_EVENT (4u << 20) /* one event's data, all its lines together */

/* The --help lines of the options every client verb takes (client_take_flag reads them). */
#define CLIENT_HELP_CACERT                                                                         \
    "  --cacert FILE   CA certificate(s) to trust for an https:// server (default:\n"              \
    "                  $ARUN_CA_FILE, else the system's)\n"
#define CLIENT_HELP_OPTIONS                                                                        \
    "  --server URL    the server (default: $ARUN_URL, else " CLIENT_DEFAULT_URL ")\n"             \
    "  --api-key KEY   API key (default: $ARUN_API_KEY)\n" CLIENT_HELP_CACERT

/* Exit codes of the CLI (contract section 3). */
enum client_exit {
    CLIENT_EXIT_OK = 0,
    CLIENT_EXIT_FAILURE = 1,
    CLIENT_EXIT_USAGE = 2,
    CLIENT_EXIT_UNREACHABLE = 3,
};

struct client {
    char *base_url;      /* without a trailing '/', heap */
    char *api_key;       /* heap, or NULL: no Authorization header */
    void *curl;          /* CURL *, reused so the connection is kept alive between requests */
    char errbuf[256];    /* CURLOPT_ERRORBUFFER of the last transfer */
    char *ca_file;       /* CA certificates (PEM) for https://, heap, or NULL: the system's */
    bool reached;        /* the last transfer got a response header: the server was there */
    bool unverified;     /* the last transfer failed on the server's certificate */
    uint32_t timeout_ms; /* a whole buffered request; client_init sets CLIENT_TIMEOUT_MS */
    char *unix_socket;   /* heap, or NULL: connect to this socket instead (client_init_local) */
    /* Called during a streaming transfer at least once a second, idle or not (libcurl's
     * progress function), so a verb can redraw a clock; NULL (client_init): none. It must not
     * use this client. */
    void (*on_tick)(void *arg);
    void *tick_arg;
};

/* A finished exchange: any HTTP status counts as finished. */
struct client_response {
    int status;        /* HTTP status */
    char *body;        /* NUL-terminated, heap ("" when empty) */
    size_t len;        /* bytes of body */
    json_t *json;      /* the body parsed when it is JSON, else NULL; owned here */
    int retry_after_s; /* the Retry-After header in seconds (429, 503), 0 when absent */
};

/* Called once per SSE event with its data (lines joined with '\n', no trailing newline), or,
 * for on_comment, with a comment line's text (without ':' and one leading space). Valid during
 * the call only. Return 0 to go on, anything else to end the stream (the stream call returns
 * it). */
typedef int (*client_sse_cb)(const char *data, size_t len, void *arg);

/* Takes --server URL / --server=URL / --api-key KEY / --api-key=KEY at argv[*i] into *server or
 * *api_key (pointers into argv) and advances *i past a separate value. --cacert FILE (or
 * --cacert=FILE) is taken too and kept for client_init: the CLI runs one verb per process, and
 * every verb takes it alike. Returns 1 when it took the argument, 0 when argv[*i] is not one of
 * them, -EINVAL when the value is missing (the message is printed, prefixed with verb). */
int client_take_flag(const char *verb, int argc, char **argv, int *i, const char **server,
                     const char **api_key) MUST_USE;

/* The value of an option that takes one at argv[*i]: "NAME V", "SHRT V" (shrt may be NULL) or
 * "NAME=V", advancing *i past a separate value. Returns a pointer into argv, or NULL when
 * argv[*i] is another argument, or NULL with *missing set when the value is absent. */
const char *client_take_value(int argc, char **argv, int *i, const char *name, const char *shrt,
                              bool *missing);

/* Parses s as a whole number from 0 to max. Returns 0 with *out, or -EINVAL. */
int client_parse_count(const char *s, long max, long *out) MUST_USE;

/* Sets up c for server (NULL: $ARUN_URL, else CLIENT_DEFAULT_URL) and api_key (NULL:
 * $ARUN_API_KEY, else none), trusting the CA file of --cacert, else $ARUN_CA_FILE, else the
 * system's store. Returns 0, or -EINVAL when the URL is not http(s):// or the CA file cannot be
 * read (printed). */
int client_init(struct client *c, const char *server, const char *api_key) MUST_USE;
/* Sets up c for the owner-only socket of a running server (socket_path, DATA_DIR/arun.sock):
 * requests go over it to http://localhost, without a key (the server knows the owner by the
 * socket). Failures read as for client_get; no socket or nobody listening is -ECONNREFUSED. */
void client_init_local(struct client *c, const char *socket_path);
void client_cleanup(struct client *c);

/* GET base_url + path (path starts with '/'). Returns 0 and fills *res (release it with
 * client_response_cleanup) whatever the status, or -errno without a response: -ECONNREFUSED
 * (no server there), -EHOSTUNREACH (name not resolved, no route), -ETIMEDOUT, -ECONNRESET (the
 * connection dropped), -E2BIG (body over CLIENT_MAX_BODY), -EIO (anything else). After an error
 * client_fail() tells the person. */
int client_get(struct client *c, const char *path, struct client_response *res) MUST_USE;
/* POST with a JSON body (NULL = empty). Same results as client_get. */
int client_post(struct client *c, const char *path, const char *json_body,
                struct client_response *res) MUST_USE;
void client_response_cleanup(struct client_response *res);

/* GET base_url + path as an SSE stream: on_event for every event, on_comment (may be NULL) for
 * every comment line, until the server ends the stream (returns 0), *stop becomes non-zero
 * (checked at least once a second; returns -EINTR), a callback returns non-zero (returns that),
 * or an error as for client_get (a connection that drops mid-stream is -ECONNRESET). When the
 * server answers with anything but a 2xx, nothing is streamed: returns 0 with *res filled (its
 * status tells); with a 2xx, res->status is set and res->body stays "". */
int client_stream_sse(struct client *c, const char *path, client_sse_cb on_event,
                      client_sse_cb on_comment, void *arg, volatile sig_atomic_t *stop,
                      struct client_response *res) MUST_USE;

/* POST base_url + path with a JSON body, answered as an SSE stream (an OpenAI "stream": true
 * request). Same callbacks, stopping and results as client_stream_sse. */
int client_post_sse(struct client *c, const char *path, const char *json_body,
                    client_sse_cb on_event, client_sse_cb on_comment, void *arg,
                    volatile sig_atomic_t *stop, struct client_response *res) MUST_USE;

/* Prints why a call that returned rc (-errno) failed, e.g. "arun: cannot reach the server at
 * http://127.0.0.1:8080: connection refused (is `arun serve` running?)", and returns the exit
 * code: CLIENT_EXIT_UNREACHABLE when no exchange with the server happened, else
 * CLIENT_EXIT_FAILURE. */
int client_fail(const struct client *c, int rc);

/* Prints an error response as "arun: MESSAGE" (the OpenAI error's message, else the status and
 * the start of the body) and returns CLIENT_EXIT_FAILURE. */
int client_fail_response(const struct client_response *res);

/* GETs one of the API's lists (path answers 200 with {"data":[…],…}). Returns 0 with *data the
 * array, pointing into res (release it with client_response_cleanup); or the exit code after
 * telling the person why (client_fail, client_fail_response), with res already released. */
int client_get_list(struct client *c, const char *path, struct client_response *res,
                    const json_t **data) MUST_USE;

/* The message of an error response: the OpenAI error's message, or a bare string "error",
 * else NULL. Points into res. */
const char *client_error_message(const struct client_response *res);

/* s percent-encoded for a URL path segment or query value (RFC 3986 unreserved bytes kept).
 * Caller frees. */
char *client_escape(const char *s);

/* Prints a JSON value, indented, to stdout with a trailing newline. */
void client_print_json(const json_t *j);
/* Prints "arun VERB: MESSAGE" and then the verb's usage text to stderr; returns
 * CLIENT_EXIT_USAGE, so a parser can `return client_usage_error(…)`. */
int client_usage_error(const char *verb, const char *usage, const char *fmt, ...) PRINTF_LIKE(3, 4);

#endif
