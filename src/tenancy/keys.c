/*
 * keys.c: the in-memory table of API keys (keys.h). It owns the table, the making of keys (their
 * random text, id and digest) and the throttled writes of last_used; the store owns the rows.
 * It promises that a presented key's text is only ever hashed, never copied, and that create and
 * revoke change what the next request sees.
 *
 * DESIGN
 * Every key lives in two indexes of the same entries: a hash table keyed by the SHA-256 of its
 * text (the lookup of every request), chained, with the bucket taken from the digest's first
 * bytes (uniform: it is a hash), and an array sorted by id (revocation, the API's lists, and the
 * order the store pages them in). A lookup hashes the presented text once and compares digests
 * with CRYPTO_memcmp: which bucket is walked depends only on the digest, which an attacker who
 * does not know a key cannot steer towards one, and no comparison stops at the first differing
 * byte. Entries are never removed while the table lives: a revoked key stays, marked, so that a
 * later use of it is told "revoked" rather than "unknown" and lists show it.
 *
 * A create is committed before the key enters the table or its text is shown: a key that was
 * shown works, also after a restart. A revocation is the other way round: the key is refused
 * at once and the store follows; if that commit fails the caller hears it, and the key is
 * refused until the next start (where the store still has it valid), the safer error.
 *
 * On a store other nodes share (keys_follow), the table is re-read whenever the store says keys
 * changed (STORE_NOTICE_KEYS: another node created or revoked one), when notices may have been
 * missed (STORE_NOTICE_RESYNC), and every KEYS_RELOAD_MS in any case; one read at a time, a
 * notice during it reads again after it. A re-read merges: a key new to the table enters it, a
 * key the store has revoked is refused from then on, last_used takes the later time; nothing is
 * removed (the store never deletes a key) and a revocation made here and not yet committed
 * stays. Each page is merged in one callback on the loop, so a request sees the table before or
 * after a key's change, never half of one.
 *
 * last_used is raised in memory on every use and written to the store when the last write is
 * KEYS_TOUCH_INTERVAL_MS old, so a busy key costs one write a minute; keys_free writes the rest.
 *
 * Store callbacks hold no pointer into an entry. Those that reach the table (load, create) count
 * in k->pending; keys_free with ops pending leaves the freeing to the last of them.
 */
#include "tenancy/keys.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"

#define MIN_BUCKETS 64 /* a power of two; the table doubles when it holds as many keys */

struct entry {
    uint8_t digest[KEYS_DIGEST_LEN];
    char id[KEYS_ID_LEN + 1];
    char tenant[STORE_TENANT_MAX + 1];
    enum keys_role role;
    char *name; /* or NULL */
    int64_t created_ms;
    int64_t last_used_ms;    /* 0: never used */
    int64_t written_used_ms; /* the last_used the store has (or is being given) */
    int64_t revoked_ms;      /* 0: valid */
    struct entry *next;      /* in its bucket */
};

struct keys {
    struct store *st;
    struct entry **buckets;
    size_t nbuckets;      /* a power of two */
    struct entry **by_id; /* sorted by id */
    size_t n, cap;
    int pending;              /* store ops whose callbacks reach k */
    bool freeing;             /* keys_free ran while ops were pending */
    uv_timer_t *reload_timer; /* keys_follow's safety net (heap: closed asynchronously), or NULL */
    bool reloading;           /* a re-read is out */
    bool reload_again;        /* a notice came during it */
};

/* ---- pure helpers ---- */

void keys_base64url(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
    }
    out[o] = '\0';
}

void keys_digest(const char *text, size_t len, uint8_t out[KEYS_DIGEST_LEN])
{
    unsigned int n = 0;
    int ok = EVP_Digest(text, len, out, &n, EVP_sha256(), NULL);
    ASSERT(ok == 1 && n == KEYS_DIGEST_LEN); /* SHA-256 fails only without memory */
}

static void to_hex(const uint8_t *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The digest of a stored hash; -EINVAL when it is not 64 hex digits. */
static int from_hex(const char *s, uint8_t out[KEYS_DIGEST_LEN])
{
    if (s == NULL || strlen(s) != KEYS_HASH_HEX)
        return -EINVAL;
    for (size_t i = 0; i < KEYS_DIGEST_LEN; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void random_bytes(uint8_t *out, size_t n)
{
    int ok = RAND_bytes(out, (int)n);
    ASSERT(ok == 1); /* OpenSSL's generator is seeded from getrandom(2); it fails only unseeded */
}

bool keys_tenant_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > STORE_TENANT_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

int keys_role_parse(const char *s, enum keys_role *out)
{
    if (strcmp(s, "admin") == 0)
        *out = KEYS_ADMIN;
    else if (strcmp(s, "member") == 0)
        *out = KEYS_MEMBER;
    else
        return -EINVAL;
    return 0;
}

const char *keys_role_name(enum keys_role role)
{
    return role == KEYS_ADMIN ? "admin" : "member";
}

/* Whether text has the shape of a key: the prefix and 43 base64url characters. */
static bool key_shaped(const char *text, size_t len)
{
    size_t plen = sizeof(KEYS_PREFIX) - 1;
    if (len != KEYS_TEXT_LEN || memcmp(text, KEYS_PREFIX, plen) != 0)
        return false;
    for (size_t i = plen; i < len; i++) {
        char c = text[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* ---- the table ---- */

struct keys *keys_new(struct store *st)
{
    struct keys *k = xcalloc(1, sizeof(*k));
    k->st = st;
    k->nbuckets = MIN_BUCKETS;
    k->buckets = xcalloc(k->nbuckets, sizeof(*k->buckets));
    return k;
}

static size_t bucket_of(const struct keys *k, const uint8_t *digest)
{
    uint64_t v;
    memcpy(&v, digest, sizeof(v));
    return (size_t)(v & (k->nbuckets - 1));
}

static void grow_buckets(struct keys *k)
{
    size_t old_n = k->nbuckets;
    struct entry **old = k->buckets;
    k->nbuckets = old_n * 2;
    k->buckets = xcalloc(k->nbuckets, sizeof(*k->buckets));
    for (size_t b = 0; b < old_n; b++) {
        struct entry *e = old[b];
        while (e != NULL) {
            struct entry *next = e->next;
            size_t nb = bucket_of(k, e->digest);
            e->next = k->buckets[nb];
            k->buckets[nb] = e;
            e = next;
        }
    }
    free(old);
}

/* The index in by_id where id is or would go. */
static size_t id_slot(const struct keys *k, const char *id)
{
    size_t lo = 0, hi = k->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(k->by_id[mid]->id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct entry *find_id(const struct keys *k, const char *id)
{
    size_t i = id_slot(k, id);
    return i < k->n && strcmp(k->by_id[i]->id, id) == 0 ? k->by_id[i] : NULL;
}

/* Adds e (owned from now on) to both indexes. */
static void insert(struct keys *k, struct entry *e)
{
    if (k->n >= k->nbuckets)
        grow_buckets(k);
    size_t b = bucket_of(k, e->digest);
    e->next = k->buckets[b];
    k->buckets[b] = e;
    if (k->n == k->cap) {
        k->cap = k->cap ? k->cap * 2 : 16;
        struct entry **grown = xcalloc(k->cap, sizeof(*grown));
        if (k->n)
            memcpy(grown, k->by_id, k->n * sizeof(*grown));
        free(k->by_id);
        k->by_id = grown;
    }
    size_t i = id_slot(k, e->id);
    memmove(&k->by_id[i + 1], &k->by_id[i], (k->n - i) * sizeof(*k->by_id));
    k->by_id[i] = e;
    k->n++;
}

static void entry_free(struct entry *e)
{
    if (e == NULL)
        return;
    free(e->name);
    free(e);
}

size_t keys_count(const struct keys *k)
{
    return k->n;
}

static void touch_done_cb(int status, void *arg)
{
    if (status != 0 && status != -ECANCELED)
        log_warn_errno("keys", status, "could not record when a key was last used");
}

/* Hands the store e's last_used (the store copies the id). */
static void write_touch(struct keys *k, struct entry *e)
{
    e->written_used_ms = e->last_used_ms;
    int rc = store_key_touch(k->st, e->id, e->last_used_ms, touch_done_cb, NULL);
    if (rc != 0 && rc != -ECANCELED)
        log_warn_errno("keys", rc, "could not record when key %s was last used", e->id);
}

static void free_now(struct keys *k)
{
    for (size_t i = 0; i < k->n; i++)
        entry_free(k->by_id[i]);
    free(k->by_id);
    free(k->buckets);
    free(k);
}

static void reload_timer_closed_cb(uv_handle_t *h)
{
    free(h);
}

void keys_free(struct keys *k)
{
    if (k == NULL)
        return;
    if (k->reload_timer != NULL && !k->freeing)
        uv_close((uv_handle_t *)k->reload_timer, reload_timer_closed_cb);
    for (size_t i = 0; i < k->n && !k->freeing; i++)
        if (k->by_id[i]->last_used_ms > k->by_id[i]->written_used_ms)
            write_touch(k, k->by_id[i]);
    k->freeing = true;
    if (k->pending == 0)
        free_now(k);
}

/* Ends one op counted in pending; returns true when k is gone (keys_free ran and this was the
 * last op), so the caller must not touch it. */
static bool op_done(struct keys *k)
{
    k->pending--;
    if (k->freeing && k->pending == 0) {
        free_now(k);
        return true;
    }
    return false;
}

/* ---- loading ---- */

struct load {
    struct keys *k;
    keys_done_cb done;
    void *arg;
};

static int load_page(struct load *ld, const char *after);

static int64_t int_or_zero(const json_t *row, const char *field)
{
    return json_is_integer(json_object_get(row, field))
               ? (int64_t)json_integer_value(json_object_get(row, field))
               : 0;
}

/* An entry from a stored row, or NULL (logged) when the row cannot be a key of ours. */
static struct entry *entry_of_row(const json_t *row)
{
    const char *id = json_string_value(json_object_get(row, "id"));
    const char *tenant = json_string_value(json_object_get(row, "tenant"));
    const char *role = json_string_value(json_object_get(row, "role"));
    const char *name = json_string_value(json_object_get(row, "name"));
    struct entry *e = xcalloc(1, sizeof(*e));
    if (id == NULL || strlen(id) > KEYS_ID_LEN || tenant == NULL || !keys_tenant_valid(tenant) ||
        role == NULL || keys_role_parse(role, &e->role) != 0 ||
        from_hex(json_string_value(json_object_get(row, "hash")), e->digest) != 0) {
        log_warn("keys", "skipping a stored key that is not well-formed (id %.40s)",
                 id ? id : "missing");
        free(e);
        return NULL;
    }
    memcpy(e->id, id, strlen(id) + 1);
    memcpy(e->tenant, tenant, strlen(tenant) + 1);
    e->name = name ? xstrdup(name) : NULL;
    e->created_ms = int_or_zero(row, "created_ms");
    e->last_used_ms = e->written_used_ms = int_or_zero(row, "last_used_ms");
    e->revoked_ms = int_or_zero(row, "revoked_ms");
    return e;
}

/* What the store says of a key the table has (another node may have revoked or used it). */
static void merge(struct entry *have, const struct entry *stored)
{
    if (have->revoked_ms == 0 && stored->revoked_ms != 0) {
        have->revoked_ms = stored->revoked_ms;
        log_info("keys", "key %s was revoked on another node; refused here from now on", have->id);
    }
    if (stored->last_used_ms > have->last_used_ms)
        have->last_used_ms = stored->last_used_ms;
    if (stored->last_used_ms > have->written_used_ms)
        have->written_used_ms = stored->last_used_ms;
}

/* Adds a page's rows (merging those the table has); returns the last id (in page, valid while page
 * lives) or NULL. */
static const char *add_rows(struct keys *k, const json_t *data)
{
    const char *last = NULL;
    size_t i;
    const json_t *row;
    json_array_foreach(data, i, row)
    {
        last = json_string_value(json_object_get(row, "id"));
        struct entry *e = entry_of_row(row);
        struct entry *have = e != NULL ? find_id(k, e->id) : NULL;
        if (e != NULL && have == NULL) {
            insert(k, e);
            continue;
        }
        if (have != NULL)
            merge(have, e);
        entry_free(e);
    }
    return last;
}

static void load_finish(struct load *ld, int status)
{
    keys_done_cb done = ld->done;
    void *arg = ld->arg;
    bool gone = op_done(ld->k);
    free(ld);
    if (!gone)
        done(status, arg);
}

static void page_cb(int status, const char *value, size_t len, void *arg)
{
    struct load *ld = arg;
    json_t *page = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
    const json_t *data = json_object_get(page, "data");
    if (status == 0 && !json_is_array(data))
        status = -EIO;
    if (status != 0 || ld->k->freeing) {
        json_decref(page);
        load_finish(ld, status != 0 ? status : -ECANCELED);
        return;
    }
    const char *last = add_rows(ld->k, data);
    int rc = 0;
    if (json_is_true(json_object_get(page, "has_more")) && last != NULL) {
        rc = load_page(ld, last);
        if (rc == 0) {
            json_decref(page);
            return; /* the next page's callback goes on */
        }
    }
    json_decref(page);
    load_finish(ld, rc);
}

static int load_page(struct load *ld, const char *after)
{
    return store_keys_list(ld->k->st, after, STORE_PAGE_MAX, page_cb, ld);
}

int keys_load(struct keys *k, keys_done_cb done, void *arg)
{
    struct load *ld = xcalloc(1, sizeof(*ld));
    ld->k = k;
    ld->done = done;
    ld->arg = arg;
    int rc = load_page(ld, NULL);
    if (rc != 0) {
        free(ld);
        return rc;
    }
    k->pending++;
    return 0;
}

/* ---- following the other nodes' changes (keys_follow) ---- */

static void reload(struct keys *k);

static void reloaded_cb(int status, void *arg)
{
    struct keys *k = arg;
    k->reloading = false;
    if (status != 0 && status != -ECANCELED)
        log_warn_errno("keys", status,
                       "could not re-read the API keys; keys created or revoked on other nodes "
                       "take effect here at the next re-read");
    if (k->reload_again && !k->freeing) {
        k->reload_again = false;
        reload(k);
    }
}

static void reload(struct keys *k)
{
    if (k->freeing)
        return;
    if (k->reloading) {
        k->reload_again = true;
        return;
    }
    int rc = keys_load(k, reloaded_cb, k);
    if (rc == 0)
        k->reloading = true;
    else if (rc != -ECANCELED)
        log_warn_errno("keys", rc, "the store refused to re-read the API keys");
}

static void keys_notice_cb(enum store_notice kind, const char *tenant, const char *id, void *arg)
{
    if (kind == STORE_NOTICE_KEYS || kind == STORE_NOTICE_RESYNC)
        reload(arg);
}

static void reload_tick_cb(uv_timer_t *t)
{
    reload(t->data);
}

int keys_follow(struct keys *k, uv_loop_t *loop)
{
    ASSERT(k->reload_timer == NULL);
    int rc = store_listen(k->st, keys_notice_cb, k);
    if (rc != 0)
        return rc;
    k->reload_timer = xcalloc(1, sizeof(*k->reload_timer));
    uv_timer_init(loop, k->reload_timer);
    k->reload_timer->data = k;
    uv_timer_start(k->reload_timer, reload_tick_cb, KEYS_RELOAD_MS, KEYS_RELOAD_MS);
    uv_unref((uv_handle_t *)k->reload_timer); /* never what keeps the loop running */
    return 0;
}

/* ---- lookup ---- */

int keys_check(struct keys *k, const char *text, size_t len, int64_t now_ms,
               struct keys_principal *out)
{
    if (len > KEYS_BEARER_MAX || !key_shaped(text, len))
        return -EINVAL;
    uint8_t digest[KEYS_DIGEST_LEN];
    keys_digest(text, len, digest);
    struct entry *found = NULL;
    for (struct entry *e = k->buckets[bucket_of(k, digest)]; e != NULL; e = e->next)
        if (CRYPTO_memcmp(e->digest, digest, KEYS_DIGEST_LEN) == 0)
            found = e;
    OPENSSL_cleanse(digest, sizeof(digest));
    if (found == NULL)
        return -ENOENT;
    memcpy(out->id, found->id, sizeof(out->id));
    if (found->revoked_ms != 0)
        return -EKEYREVOKED;
    memcpy(out->tenant, found->tenant, sizeof(out->tenant));
    out->role = found->role;
    if (now_ms > found->last_used_ms)
        found->last_used_ms = now_ms;
    if (found->last_used_ms - found->written_used_ms >= KEYS_TOUCH_INTERVAL_MS)
        write_touch(k, found);
    return 0;
}

/* ---- create ---- */

struct create {
    struct keys *k;
    struct entry *e; /* enters the table once committed */
    char text[KEYS_TEXT_LEN + 1];
    keys_created_cb cb;
    void *arg;
};

static void create_free(struct create *c)
{
    entry_free(c->e);
    OPENSSL_cleanse(c->text, sizeof(c->text));
    free(c);
}

static void created_cb(int status, void *arg)
{
    struct create *c = arg;
    struct keys *k = c->k;
    struct entry *e = c->e;
    /* On a shared store, a re-read woken by this very commit's notice may have put the key in
     * the table already: one entry per key, or a revocation marks one and the lookup by digest
     * finds the other. */
    if (status == 0 && !k->freeing && find_id(k, e->id) == NULL) {
        insert(k, e);
        c->e = NULL; /* the table's now */
    }
    struct keys_created out = {.id = e->id,
                               .text = c->text,
                               .tenant = e->tenant,
                               .role = e->role,
                               .name = e->name,
                               .created_ms = e->created_ms};
    c->cb(status, status == 0 ? &out : NULL, c->arg);
    op_done(k); /* after the callback, which may free k (c holds nothing of k's) */
    create_free(c);
}

/* A fresh key: text, digest, id. */
static struct entry *make_entry(char text[KEYS_TEXT_LEN + 1])
{
    uint8_t raw[KEYS_RANDOM_BYTES], idb[(KEYS_ID_LEN - 4) / 2];
    struct entry *e = xcalloc(1, sizeof(*e));
    random_bytes(raw, sizeof(raw));
    memcpy(text, KEYS_PREFIX, sizeof(KEYS_PREFIX) - 1);
    keys_base64url(raw, sizeof(raw), text + sizeof(KEYS_PREFIX) - 1);
    OPENSSL_cleanse(raw, sizeof(raw));
    keys_digest(text, KEYS_TEXT_LEN, e->digest);
    random_bytes(idb, sizeof(idb));
    memcpy(e->id, KEYS_ID_PREFIX, 4);
    to_hex(idb, sizeof(idb), e->id + 4);
    return e;
}

static bool name_ok(const char *name)
{
    if (name == NULL)
        return true;
    size_t n = strlen(name);
    json_t *j = n <= KEYS_NAME_MAX ? json_stringn(name, n) : NULL; /* NULL: not UTF-8 */
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

int keys_create(struct keys *k, const char *tenant, enum keys_role role, const char *name,
                keys_created_cb cb, void *arg)
{
    if (!keys_tenant_valid(tenant) || !name_ok(name))
        return -EINVAL;
    struct create *c = xcalloc(1, sizeof(*c));
    c->k = k;
    c->cb = cb;
    c->arg = arg;
    c->e = make_entry(c->text);
    memcpy(c->e->tenant, tenant, strlen(tenant) + 1);
    c->e->role = role;
    c->e->name = name ? xstrdup(name) : NULL;
    c->e->created_ms = clock_wall_ms();
    char hash[KEYS_HASH_HEX + 1];
    to_hex(c->e->digest, KEYS_DIGEST_LEN, hash);
    struct store_key sk = {.id = c->e->id,
                           .hash = hash,
                           .tenant = c->e->tenant,
                           .role = keys_role_name(role),
                           .name = c->e->name,
                           .created_ms = c->e->created_ms};
    int rc = store_key_put(k->st, &sk, created_cb, c);
    if (rc != 0) {
        create_free(c);
        return rc;
    }
    k->pending++;
    return 0;
}

/* ---- revoke ---- */

int keys_revoke(struct keys *k, const char *id, int64_t now_ms, keys_done_cb cb, void *arg)
{
    struct entry *e = find_id(k, id);
    if (e == NULL)
        return -ENOENT;
    int64_t when = e->revoked_ms != 0 ? e->revoked_ms : now_ms;
    int rc = store_key_revoke(k->st, id, when, cb, arg);
    if (rc == 0)
        e->revoked_ms = when;
    return rc;
}

/* ---- the API's objects ---- */

static json_t *secs_or_null(int64_t ms)
{
    return ms != 0 ? json_integer(ms / 1000) : json_null();
}

static json_t *object_of(const struct entry *e)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:o, s:o}", "object", "api_key", "id", e->id,
                     "tenant", e->tenant, "role", keys_role_name(e->role), "name",
                     e->name ? json_string(e->name) : json_null(), "created_at",
                     (json_int_t)(e->created_ms / 1000), "last_used_at",
                     secs_or_null(e->last_used_ms), "revoked_at", secs_or_null(e->revoked_ms));
}

json_t *keys_object(const struct keys *k, const char *id)
{
    const struct entry *e = find_id(k, id);
    return e != NULL ? object_of(e) : NULL;
}

json_t *keys_list(const struct keys *k, const char *after_id, size_t limit)
{
    size_t i = 0;
    if (after_id != NULL) {
        i = id_slot(k, after_id);
        if (i < k->n && strcmp(k->by_id[i]->id, after_id) == 0)
            i++;
    }
    json_t *data = json_array();
    size_t first = i;
    for (; i < k->n && i - first < limit; i++)
        json_array_append_new(data, object_of(k->by_id[i]));
    size_t got = i - first;
    return json_pack("{s:s, s:o, s:o, s:o, s:b}", "object", "list", "data", data, "first_id",
                     got ? json_string(k->by_id[first]->id) : json_null(), "last_id",
                     got ? json_string(k->by_id[i - 1]->id) : json_null(), "has_more", i < k->n);
}
