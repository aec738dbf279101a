/*
 * keys.h: the API keys of a running server (contract 6, issue 13), held in memory: loaded from
 * the store at start, changed at once by create and revoke, and looked up on every request by
 * the SHA-256 of the presented text.
 *
 * A key's text is "arun-" and 43 base64url characters (32 random bytes from the kernel). The
 * text is shown once, to whoever created the key; only its SHA-256 (hex) reaches the store, and
 * nothing here copies a presented text anywhere (logs, errors, the table). A key is named by its
 * id, "key_" and 16 hex digits, in lists, revocations and the audit trail.
 *
 * The CLI uses the same module on a loop of its own when no server runs on the data_dir (keys
 * create|ls|revoke on the store itself), so both paths make and list keys alike.
 */
#ifndef ARUN_TENANCY_KEYS_H
#define ARUN_TENANCY_KEYS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/common.h"
#include "http/server.h"
#include "store/store.h"

#define KEYS_PREFIX HTTP_KEY_PREFIX /* "arun-" */
#define KEYS_RANDOM_BYTES 32        /* 256 bits: guessing is out of the question, 128 would do */
#define KEYS_TEXT_LEN 48            /* "arun-" and base64url(32 bytes) = 5 + 43 */
#define KEYS_ID_PREFIX "key_"
#define KEYS_ID_LEN 20     /* "key_" and 16 hex digits */
#define KEYS_DIGEST_LEN 32 /* SHA-256 */
#define KEYS_HASH_HEX 64   /* the digest in hex, as the store keeps it */
/* A bearer value longer than this is refused before it is hashed: a real key is 48 bytes, and
 * hashing a megabyte per request would be a cheap way to burn the loop's time. */
#define KEYS_BEARER_MAX 512
/* last_used is written to the store at most this often per key; in memory it is exact. */
#define KEYS_TOUCH_INTERVAL_MS 60000
#define KEYS_NAME_MAX 256 /* bytes in a key's name (the store's limit) */
/* A shared store's keys are re-read on every notice that they changed; this re-read is the
 * safety net for a notice lost (a minute: a revocation must not wait longer if all else fails). */
#define KEYS_RELOAD_MS 60000

enum keys_role {
    KEYS_MEMBER, /* gateway, responses, conversations, events of its own tenant */
    KEYS_ADMIN,  /* everything */
};

/* Who a key is, as the gate needs it. */
struct keys_principal {
    char id[KEYS_ID_LEN + 1];          /* "key_…" */
    char tenant[STORE_TENANT_MAX + 1]; /* the tenant it acts for */
    enum keys_role role;
};

/* A key just made: the only time its text exists outside the client. */
struct keys_created {
    const char *id;
    const char *text; /* "arun-…": show it once, never store or log it */
    const char *tenant;
    enum keys_role role;
    const char *name; /* or NULL */
    int64_t created_ms;
};

struct keys;

/* done(status, arg): 0, or -errno from the store. */
typedef void (*keys_done_cb)(int status, void *arg);
/* status 0 with the key (valid during the call only), or -errno with created NULL. */
typedef void (*keys_created_cb)(int status, const struct keys_created *created, void *arg);

/* An empty table on st (not owned; must outlive it). */
struct keys *keys_new(struct store *st);
/* Writes the last_used times not yet written (they are throttled) and frees the table. Call it
 * before store_close. NULL is a no-op. */
void keys_free(struct keys *k);

/* Reads every key of the store into the table, page by page; done runs once they are in (0) or
 * a page failed (-errno). Call once, before serving; a later call re-reads them (keys_follow),
 * merging: new keys enter, revocations are taken, nothing is removed. Returns 0, or -errno
 * without calling done. */
int keys_load(struct keys *k, keys_done_cb done, void *arg) MUST_USE;
/* Keeps the table in step with the other nodes of a shared store (serve): re-reads the keys on
 * each notice that they changed (a key created or revoked on another node works or is refused
 * here within milliseconds), after notices were lost, and every KEYS_RELOAD_MS. Call once,
 * after keys_load. Returns 0 or -ENOSPC (store_listen). */
int keys_follow(struct keys *k, uv_loop_t *loop) MUST_USE;
/* How many keys the table holds, revoked ones included. */
size_t keys_count(const struct keys *k);

/* Looks up a presented bearer value (len bytes, not NUL-terminated, never copied) at now_ms.
 * Returns 0 with *out filled (and the key's last_used raised), or -EINVAL (not a key's shape:
 * too long, wrong prefix or length), -ENOENT (no such key), -EKEYREVOKED (revoked; out->id
 * says which). The digests are compared with CRYPTO_memcmp, so the time taken does not depend
 * on how much of a stored digest the presented one matches. */
int keys_check(struct keys *k, const char *text, size_t len, int64_t now_ms,
               struct keys_principal *out) MUST_USE;

/* Makes a key for tenant with role and name (or NULL), stores its hash and, once committed,
 * adds it to the table and calls cb. Returns 0, or without calling cb: -EINVAL (tenant not
 * [a-z0-9][a-z0-9._-]{0,63}, name over KEYS_NAME_MAX bytes or not UTF-8) or the store's
 * refusal (-EAGAIN, -ECANCELED). */
int keys_create(struct keys *k, const char *tenant, enum keys_role role, const char *name,
                keys_created_cb cb, void *arg) MUST_USE;
/* Revokes key id: it is refused from the next request on (before the store commits), and the
 * store records when. A key revoked before keeps its first time. cb gets 0 once committed, or
 * -errno. Returns 0, or -ENOENT (no such key) / the store's refusal, without calling cb. */
int keys_revoke(struct keys *k, const char *id, int64_t now_ms, keys_done_cb cb,
                void *arg) MUST_USE;

/* The API object of key id ({"object":"api_key", id, tenant, role, name, created_at,
 * last_used_at, revoked_at}, times in seconds or null), or NULL when there is none. Caller owns
 * it. Neither the text nor the hash is in it. */
json_t *keys_object(const struct keys *k, const char *id);
/* A page of keys by id, after after_id (NULL: from the first), at most limit:
 * {"object":"list","data":[…],"first_id","last_id","has_more"}. Caller owns it. */
json_t *keys_list(const struct keys *k, const char *after_id, size_t limit);

/* Whether s is a tenant name: [a-z0-9][a-z0-9._-]{0,63}. */
bool keys_tenant_valid(const char *s);
/* "admin" or "member" into *out. Returns 0 or -EINVAL. */
int keys_role_parse(const char *s, enum keys_role *out) MUST_USE;
const char *keys_role_name(enum keys_role role);

/* base64url without padding (RFC 4648 section 5) of n bytes into out, which must hold
 * (n * 4 + 2) / 3 + 1 bytes; NUL-terminated. */
void keys_base64url(const uint8_t *in, size_t n, char *out);
/* SHA-256 of len bytes of text (OpenSSL EVP). */
void keys_digest(const char *text, size_t len, uint8_t out[KEYS_DIGEST_LEN]);

#endif
