/*
 * test_tls.c: the TLS context module (src/http/tls.c). Each test is one thing a person setting up
 * HTTPS relies on: a good pair loads and says which certificate it is; every bad file is refused
 * with the key, the file and the reason (unreadable, not PEM, a key of another certificate, an
 * encrypted key, expired, not yet valid), never with a prompt; the async load reports on the loop.
 * Certificates are made here with OpenSSL's API, into a temporary directory.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "http/tls.h"
#include "testloop.h"

#define DAY_S 86400L

static char dir[64];

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (strstr((hay), (needle)) == NULL)                                                       \
            fail_msg("expected \"%s\" in:\n%s", (needle), (hay));                                  \
    } while (0)

static char *path_of(const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

static EVP_PKEY *new_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    return k;
}

/* A self-signed certificate for CN=127.0.0.1 with serial, valid from now+from_s to now+to_s. */
static void write_cert(const char *name, EVP_PKEY *key, long serial, long from_s, long to_s)
{
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), to_s);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    char *p = path_of(name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    free(p);
    X509_free(x);
}

static void write_key(const char *name, EVP_PKEY *key, const char *passphrase)
{
    char *p = path_of(name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    const EVP_CIPHER *enc = passphrase ? EVP_aes_128_cbc() : NULL;
    assert_int_equal(PEM_write_PrivateKey(f, key, enc, (unsigned char *)passphrase,
                                          passphrase ? (int)strlen(passphrase) : 0, NULL, NULL),
                     1);
    fclose(f);
    free(p);
}

static void write_text(const char *name, const char *text)
{
    char *p = path_of(name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    free(p);
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/arun-test-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    EVP_PKEY *a = new_key(), *b = new_key();
    write_cert("good.pem", a, 0x1001, 0, DAY_S);
    write_key("good.key", a, NULL);
    write_key("other.key", b, NULL);
    write_key("secret.key", a, "hunter2");
    write_cert("expired.pem", a, 0x1002, -2 * DAY_S, -DAY_S);
    write_cert("future.pem", a, 0x1003, DAY_S, 2 * DAY_S);
    write_text("junk.pem", "this is not PEM\n");
    write_text("empty.pem", "");
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    return 0;
}

static int teardown(void **state)
{
    const char *names[] = {"good.pem",    "good.key",   "other.key", "secret.key",
                           "expired.pem", "future.pem", "junk.pem",  "empty.pem"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *p = path_of(names[i]);
        unlink(p);
        free(p);
    }
    rmdir(dir);
    return 0;
}

/* Loads cert and key (names in dir); returns rc, the context in *out, the sentence in err. */
static int load(const char *cert, const char *key, SSL_CTX **out, struct buf *err)
{
    char *c = path_of(cert), *k = path_of(key);
    buf_init(err, TLS_ERR_MAX);
    int rc = tls_ctx_load(c, k, out, err);
    free(c);
    free(k);
    return rc;
}

/* The one sentence a refused pair gets, with the directory written as DIR. */
static void assert_refused(const char *cert, const char *key, int want_rc, const char *want)
{
    SSL_CTX *ctx = (SSL_CTX *)1;
    struct buf err;
    int rc = load(cert, key, &ctx, &err);
    assert_int_equal(rc, want_rc);
    assert_null(ctx);
    char *expanded = xstrdup(want);
    for (char *at; (at = strstr(expanded, "DIR")) != NULL;) {
        *at = '\0';
        char *next = xasprintf("%s%s%s", expanded, dir, at + 3);
        free(expanded);
        expanded = next;
    }
    assert_contains(buf_cstr(&err), expanded);
    free(expanded);
    buf_cleanup(&err);
}

static void test_good_pair_loads_and_names_its_certificate(void **state)
{
    SSL_CTX *ctx = NULL;
    struct buf err, what;
    assert_int_equal(load("good.pem", "good.key", &ctx, &err), 0);
    assert_non_null(ctx);
    assert_int_equal(err.len, 0);

    char serial[TLS_SERIAL_MAX];
    tls_ctx_serial(ctx, serial);
    assert_string_equal(serial, "1001");
    buf_init(&what, 512);
    tls_ctx_describe(ctx, &what);
    assert_contains(buf_cstr(&what), "subject /CN=127.0.0.1, serial 1001, valid until 20");
    assert_contains(buf_cstr(&what), " UTC");

    /* What is served: TLS 1.2 at least, no tickets, no compression, the server's cipher order. */
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    uint64_t opts = SSL_CTX_get_options(ctx);
    assert_true(opts & SSL_OP_NO_TICKET);
    assert_true(opts & SSL_OP_NO_COMPRESSION);
    assert_true(opts & SSL_OP_CIPHER_SERVER_PREFERENCE);
    assert_int_equal(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_OFF);
    buf_cleanup(&what);
    buf_cleanup(&err);
    SSL_CTX_free(ctx);
}

static void test_unreadable_files_name_the_key_the_file_and_errno(void **state)
{
    assert_refused("missing.pem", "good.key", -ENOENT,
                   "tls.cert: DIR/missing.pem: cannot read: No such file or directory");
    assert_refused("good.pem", "missing.key", -ENOENT,
                   "tls.key: DIR/missing.key: cannot read: No such file or directory");
}

static void test_files_that_are_not_pem_are_refused(void **state)
{
    assert_refused("junk.pem", "good.key", -EINVAL,
                   "tls.cert: DIR/junk.pem: no PEM certificate in it (expected -----BEGIN "
                   "CERTIFICATE-----");
    assert_refused("empty.pem", "good.key", -EINVAL, "tls.cert: DIR/empty.pem: no PEM certificate");
    assert_refused("good.pem", "good.pem", -EINVAL,
                   "tls.key: DIR/good.pem: no PEM private key in it");
}

static void test_key_of_another_certificate_is_refused(void **state)
{
    assert_refused("good.pem", "other.key", -EINVAL,
                   "tls.key: DIR/other.key does not match the certificate in DIR/good.pem");
}

static void test_encrypted_key_is_refused_without_a_prompt(void **state)
{
    /* stdin is not read: a prompt would hang a daemon (and this test). */
    assert_refused("good.pem", "secret.key", -EINVAL,
                   "tls.key: DIR/secret.key: the key is encrypted; arun needs it without a "
                   "passphrase");
}

static void test_certificate_outside_its_validity_is_refused(void **state)
{
    assert_refused("expired.pem", "good.key", -EINVAL,
                   "tls.cert: DIR/expired.pem: the certificate expired on ");
    assert_refused("future.pem", "good.key", -EINVAL,
                   "tls.cert: DIR/future.pem: the certificate is not valid before ");
}

struct loaded {
    int calls;
    SSL_CTX *ctx;
    char err[TLS_ERR_MAX];
};

static void loaded_cb(SSL_CTX *ctx, const char *err, void *arg)
{
    struct loaded *l = arg;
    l->calls++;
    l->ctx = ctx;
    snprintf(l->err, sizeof(l->err), "%s", err ? err : "");
}

static bool called(void *arg)
{
    return ((struct loaded *)arg)->calls > 0;
}

static void test_async_load_reports_on_the_loop(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char *cert = path_of("good.pem"), *key = path_of("good.key"), *bad = path_of("other.key");

    struct loaded ok = {0}, fail = {0};
    assert_int_equal(tls_ctx_load_async(&loop, cert, key, loaded_cb, &ok), 0);
    assert_int_equal(tls_ctx_load_async(&loop, cert, bad, loaded_cb, &fail), 0);
    assert_int_equal(ok.calls, 0); /* never from inside the call */
    assert_true(testloop_run_until(&loop, called, &ok, 10000));
    assert_true(testloop_run_until(&loop, called, &fail, 10000));
    assert_int_equal(ok.calls, 1);
    assert_non_null(ok.ctx);
    assert_string_equal(ok.err, "");
    assert_null(fail.ctx);
    assert_contains(fail.err, "does not match the certificate in");
    SSL_CTX_free(ok.ctx);

    free(cert);
    free(key);
    free(bad);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_pair_loads_and_names_its_certificate),
        cmocka_unit_test(test_unreadable_files_name_the_key_the_file_and_errno),
        cmocka_unit_test(test_files_that_are_not_pem_are_refused),
        cmocka_unit_test(test_key_of_another_certificate_is_refused),
        cmocka_unit_test(test_encrypted_key_is_refused_without_a_prompt),
        cmocka_unit_test(test_certificate_outside_its_validity_is_refused),
        cmocka_unit_test(test_async_load_reports_on_the_loop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
