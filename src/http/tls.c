/*
 * tls.c: builds the server's SSL_CTX from the `tls:` files and checks them (see tls.h). It owns
 * the TLS settings arun serves with and the sentences that say what is wrong with a certificate
 * or key; it does not own the swap of contexts (http/server.c) nor when to reload (serve.c).
 *
 * DESIGN
 * The files are read here (capped), not by OpenSSL's *_file functions, so that an unreadable
 * file is told with its errno and the key's bytes can be wiped once parsed. Every check a person
 * could fail at is made before the context is handed out, in the order they would fix them:
 * readable, a PEM certificate, a PEM key (unencrypted: nobody is there to type a passphrase at
 * a reload), the key matches the certificate, the certificate is valid today. A context that
 * passes them all is complete: the caller only swaps it in.
 *
 * Settings (Mozilla's "intermediate" profile, with the server's order): TLS 1.2 and 1.3 only;
 * for TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305 (all of them allowed by HTTP/2, RFC 7540
 * 9.2.2); TLS 1.3's suites are OpenSSL's defaults (all AEAD). No compression (CRIME), no
 * renegotiation, and no session resumption at all: no tickets (a ticket key that never rotates
 * would undo forward secrecy for every session it sealed) and no server cache, so a reload
 * leaves no state behind and every connection does a full handshake; keep-alive and HTTP/2
 * amortise it.
 */
#include "http/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>
#include <time.h>

#include "core/fileio.h"

#define H2O_USE_LIBUV 1
#include <h2o.h>

/* TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are all of that already). */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* The reason of OpenSSL's most recent error, and the queue emptied, so one failure never shows up
 * in the next one's message. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r != NULL ? r : "unknown error";
}

/* Reads a PEM file into a memory BIO. Returns it, or NULL with the sentence in err. */
static BIO *read_pem(const char *what, const char *path, struct buf *pem, struct buf *err, int *rc)
{
    *rc = fileio_read(path, pem);
    if (*rc == 0 && pem->truncated)
        *rc = -EFBIG;
    if (*rc != 0) {
        buf_printf(err, "%s: %s: cannot read: %s", what, path,
                   *rc == -EFBIG ? "larger than 1 MiB; is this a PEM file?" : strerror(-*rc));
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(pem->len > 0 ? pem->data : "", (int)pem->len);
    ASSERT(bio != NULL); /* fails only when malloc does */
    return bio;
}

/* "2026-01-31 12:00:00 UTC" */
static void format_time(const ASN1_TIME *t, char *out, size_t n)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        snprintf(out, n, "(unreadable date)");
        return;
    }
    strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* Loads the chain: the leaf becomes the certificate, the rest extra chain certificates. */
static int use_chain(SSL_CTX *ctx, const char *path, BIO *bio, struct buf *err)
{
    X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
    if (leaf == NULL) {
        buf_printf(err,
                   "tls.cert: %s: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----; "
                   "OpenSSL: %s)",
                   path, ssl_reason());
        return -EINVAL;
    }
    int ok = SSL_CTX_use_certificate(ctx, leaf);
    X509_free(leaf);
    if (ok != 1) {
        buf_printf(err, "tls.cert: %s: the certificate is refused: %s", path, ssl_reason());
        return -EINVAL;
    }
    X509 *ca;
    while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            buf_printf(err, "tls.cert: %s: a chain certificate is refused: %s", path, ssl_reason());
            return -EINVAL;
        }
    }
    ERR_clear_error(); /* the end of the file ends the loop with a "no start line" error */
    return 0;
}

/* Never asked: a key that needs a passphrase is refused with a sentence instead of a prompt. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *arg)
{
    *(bool *)arg = true;
    return -1;
}

static int use_key(SSL_CTX *ctx, const char *cert_path, const char *path, BIO *bio, struct buf *err)
{
    bool asked = false;
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase_cb, &asked);
    if (pkey == NULL) {
        if (asked)
            buf_printf(err,
                       "tls.key: %s: the key is encrypted; arun needs it without a passphrase "
                       "(protect it with file permissions: chmod 600)",
                       path);
        else
            buf_printf(err,
                       "tls.key: %s: no PEM private key in it (expected -----BEGIN PRIVATE "
                       "KEY-----; OpenSSL: %s)",
                       path, ssl_reason());
        ERR_clear_error();
        return -EINVAL;
    }
    int rc = 0;
    if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), pkey) != 1) {
        ERR_clear_error();
        buf_printf(err, "tls.key: %s does not match the certificate in %s", path, cert_path);
        rc = -EINVAL;
    } else if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
        buf_printf(err, "tls.key: %s: the key is refused: %s", path, ssl_reason());
        rc = -EINVAL;
    }
    EVP_PKEY_free(pkey);
    return rc;
}

/* A certificate outside its validity would make every client fail its handshake: refuse it
 * here, where the message can say why, rather than serve it. */
static int check_validity(SSL_CTX *ctx, const char *path, struct buf *err)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    char when[64];
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
        format_time(X509_get0_notAfter(x), when, sizeof(when));
        buf_printf(err, "tls.cert: %s: the certificate expired on %s; renew it", path, when);
        return -EINVAL;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        format_time(X509_get0_notBefore(x), when, sizeof(when));
        buf_printf(err,
                   "tls.cert: %s: the certificate is not valid before %s (is this machine's "
                   "clock right?)",
                   path, when);
        return -EINVAL;
    }
    return 0;
}

static SSL_CTX *new_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    ASSERT(ctx != NULL); /* fails only when malloc does */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0); /* TLS 1.3 sends tickets even with SSL_OP_NO_TICKET */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    int ok = SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS);
    ASSERT(ok == 1); /* a constant list OpenSSL knows */
    /* h2 (and its drafts h2o still offers) or http/1.1; h2o picks its protocol from the choice. */
    h2o_ssl_register_alpn_protocols(ctx, h2o_alpn_protocols);
    return ctx;
}

int tls_ctx_load(const char *cert_path, const char *key_path, SSL_CTX **out, struct buf *err)
{
    struct buf cert_pem, key_pem;
    BIO *cert_bio = NULL, *key_bio = NULL;
    SSL_CTX *ctx = new_ctx();
    int rc;

    *out = NULL;
    buf_init(&cert_pem, TLS_PEM_MAX_BYTES);
    buf_init(&key_pem, TLS_PEM_MAX_BYTES);
    cert_bio = read_pem("tls.cert", cert_path, &cert_pem, err, &rc);
    if (cert_bio == NULL)
        goto out;
    key_bio = read_pem("tls.key", key_path, &key_pem, err, &rc);
    if (key_bio == NULL)
        goto out;
    rc = use_chain(ctx, cert_path, cert_bio, err);
    if (rc == 0)
        rc = use_key(ctx, cert_path, key_path, key_bio, err);
    if (rc == 0)
        rc = check_validity(ctx, cert_path, err);
out:
    BIO_free(key_bio);
    BIO_free(cert_bio);
    if (key_pem.data != NULL)
        OPENSSL_cleanse(key_pem.data, key_pem.len); /* the key's bytes do not linger in the heap */
    buf_cleanup(&key_pem);
    buf_cleanup(&cert_pem);
    ERR_clear_error();
    if (rc != 0)
        SSL_CTX_free(ctx);
    else
        *out = ctx;
    return rc;
}

/* ---- loading in a worker ---- */

struct load_job {
    uv_work_t work;
    char *cert_path, *key_path;
    SSL_CTX *ctx;
    struct buf err;
    tls_loaded_cb done;
    void *arg;
};

static void load_work_cb(uv_work_t *w)
{
    struct load_job *j = w->data;
    if (tls_ctx_load(j->cert_path, j->key_path, &j->ctx, &j->err) != 0)
        j->ctx = NULL;
}

static void load_done_cb(uv_work_t *w, int status)
{
    struct load_job *j = w->data;
    /* status is UV_ECANCELED only for uv_cancel, which nothing here calls. */
    j->done(j->ctx, j->ctx != NULL ? NULL : buf_cstr(&j->err), j->arg);
    buf_cleanup(&j->err);
    free(j->cert_path);
    free(j->key_path);
    free(j);
}

int tls_ctx_load_async(uv_loop_t *loop, const char *cert_path, const char *key_path,
                       tls_loaded_cb done, void *arg)
{
    struct load_job *j = xcalloc(1, sizeof(*j));
    j->work.data = j;
    j->cert_path = xstrdup(cert_path);
    j->key_path = xstrdup(key_path);
    buf_init(&j->err, TLS_ERR_MAX);
    j->done = done;
    j->arg = arg;
    int rc = uv_queue_work(loop, &j->work, load_work_cb, load_done_cb);
    if (rc != 0) {
        buf_cleanup(&j->err);
        free(j->cert_path);
        free(j->key_path);
        free(j);
    }
    return rc;
}

/* ---- describing ---- */

void tls_ctx_serial(SSL_CTX *ctx, char out[static TLS_SERIAL_MAX])
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    BIGNUM *bn = x != NULL ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL) : NULL;
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    snprintf(out, TLS_SERIAL_MAX, "%s", hex != NULL ? hex : "");
    OPENSSL_free(hex);
    BN_free(bn);
}

void tls_ctx_describe(SSL_CTX *ctx, struct buf *out)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    char subject[256], serial[TLS_SERIAL_MAX], until[64];
    if (x == NULL) {
        buf_puts(out, "no certificate");
        return;
    }
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
    tls_ctx_serial(ctx, serial);
    format_time(X509_get0_notAfter(x), until, sizeof(until));
    buf_printf(out, "subject %s, serial %s, valid until %s", subject, serial, until);
}
