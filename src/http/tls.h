/*
 * tls.h: the server's TLS contexts (contract 2, `tls:`): an OpenSSL SSL_CTX built from a
 * certificate chain and its private key (PEM files), checked before it is used (readable, a
 * certificate, a key that matches it, valid today), with the settings arun serves HTTPS with
 * (TLS 1.2 and 1.3, AEAD ciphers with forward secrecy, server cipher preference, no
 * compression, no renegotiation, no session resumption; ALPN h2 and http/1.1 for h2o).
 *
 * A context is reference-counted by OpenSSL: each connection's SSL holds one, so the server can
 * swap in a new context (a renewed certificate, SIGHUP) while connections made with the old one
 * go on with it until they close (http_server_set_tls).
 */
#ifndef ARUN_HTTP_TLS_H
#define ARUN_HTTP_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <uv.h>

#include "core/buf.h"
#include "core/common.h"

#define TLS_ERR_MAX 1024             /* one sentence naming a file and what is wrong with it */
#define TLS_SERIAL_MAX 128           /* a certificate serial in hex: RFC 5280 allows 20 bytes */
#define TLS_PEM_MAX_BYTES (1u << 20) /* a chain of a few certificates is a few KiB */

/* Builds a server context from the certificate chain in cert_path (leaf first, then the
 * intermediates, PEM) and the unencrypted private key in key_path (PEM). Blocking: it reads both
 * files (the loop calls it once at start; reloads go through tls_ctx_load_async). Returns 0 and
 * *out (the caller owns one reference: SSL_CTX_free), or a negative errno with one sentence in
 * err that names the key and the file and says what is wrong, e.g. "tls.key: /etc/arun/key.pem
 * does not match the certificate in /etc/arun/fullchain.pem" or "tls.cert:
 * /etc/arun/fullchain.pem: the certificate expired on 2026-01-31 12:00:00 UTC": -ENOENT,
 * -EACCES… when a file cannot be read, -EINVAL when its content is refused. */
int tls_ctx_load(const char *cert_path, const char *key_path, SSL_CTX **out,
                 struct buf *err) MUST_USE;

/* Called on the loop when tls_ctx_load_async is done: ctx (a reference the callee owns) or
 * NULL with err (the sentence of tls_ctx_load). */
typedef void (*tls_loaded_cb)(SSL_CTX *ctx, const char *err, void *arg);

/* tls_ctx_load in a worker thread (file reads and key parsing stay off the loop); done runs on
 * loop's thread once. Returns 0, or -errno from libuv (done is then never called). */
int tls_ctx_load_async(uv_loop_t *loop, const char *cert_path, const char *key_path,
                       tls_loaded_cb done, void *arg) MUST_USE;

/* Describes the certificate ctx serves, for the log: "subject CN=example.com, serial 1A2B…,
 * valid until 2027-03-01 00:00:00 UTC". */
void tls_ctx_describe(SSL_CTX *ctx, struct buf *out);

/* The serial of the certificate ctx serves, upper-case hex without separators, into out
 * (TLS_SERIAL_MAX bytes); "" when there is none. */
void tls_ctx_serial(SSL_CTX *ctx, char out[static TLS_SERIAL_MAX]);

#endif
