/*
 * test_keys.c: the API key table (tenancy/keys.h): the key's text and digest, lookup, revocation
 * and last_used, against a real store in a fresh temporary directory on a real uv loop. Each
 * wait is a condition with a deadline (testloop.h), and each test ends with uv_loop_close() == 0.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testloop.h"
#include "testutil.h"

#include "core/common.h"
#include "store/store.h"
#include "tenancy/keys.h"

#define DEADLINE_MS 10000 /* generous for ASan on a loaded 2-core VM; a pass takes milliseconds */

struct fx {
    uv_loop_t loop;
    struct store *st;
    struct keys *keys;
    char *tmp, *data_dir;
    bool done;
    int status;
    char text[KEYS_TEXT_LEN + 1]; /* the last key made */
    char id[KEYS_ID_LEN + 1];
    char *value; /* the last read's */
};
static struct fx *F;

static bool is_done(void *arg)
{
    return F->done;
}

static void wait_done(void)
{
    assert_true(testloop_run_until(&F->loop, is_done, NULL, DEADLINE_MS));
}

static void done_cb(int status, void *arg)
{
    F->status = status;
    F->done = true;
}

static void open_store(void)
{
    struct store_options opts = {.data_dir = F->data_dir};
    struct buf err;
    buf_init(&err, 4096);
    int rc = store_open(&F->loop, &opts, &F->st, &err);
    if (rc != 0)
        fail_msg("store_open: %d %s", rc, buf_cstr(&err));
    buf_cleanup(&err);
}

/* A table loaded from the store. */
static struct keys *load(void)
{
    struct keys *k = keys_new(F->st);
    F->done = false;
    assert_int_equal(keys_load(k, done_cb, NULL), 0);
    wait_done();
    assert_int_equal(F->status, 0);
    return k;
}

static int setup(void **state)
{
    const char *base = getenv("ARUN_BUILD_DIR");
    F = xcalloc(1, sizeof(*F));
    F->tmp = xasprintf("%s/keys-test-XXXXXX", base != NULL ? base : "/tmp");
    assert_non_null(mkdtemp(F->tmp));
    F->data_dir = xasprintf("%s/data", F->tmp);
    assert_int_equal(uv_loop_init(&F->loop), 0);
    open_store();
    F->keys = load();
    return 0;
}

static int teardown(void **state)
{
    keys_free(F->keys);
    store_close(F->st);
    assert_true(testloop_run_until(&F->loop, testloop_no_handles, &F->loop, DEADLINE_MS));
    uv_run(&F->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&F->loop), 0);
    nftw(F->tmp, testutil_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(F->value);
    free(F->tmp);
    free(F->data_dir);
    free(F);
    return 0;
}

static void created_cb(int status, const struct keys_created *c, void *arg)
{
    if (status == 0) {
        snprintf(F->text, sizeof(F->text), "%s", c->text);
        snprintf(F->id, sizeof(F->id), "%s", c->id);
    }
    done_cb(status, arg);
}

/* Makes a key in F->keys; its text and id land in F->text, F->id. */
static void create(const char *tenant, enum keys_role role)
{
    F->done = false;
    assert_int_equal(keys_create(F->keys, tenant, role, "a name", created_cb, NULL), 0);
    wait_done();
    assert_int_equal(F->status, 0);
}

static void value_cb(int status, const char *value, size_t len, void *arg)
{
    free(F->value);
    F->value = status == 0 ? xstrdup(value) : NULL;
    done_cb(status, arg);
}

/* The store's row of key id (the store's own list, not the table). Caller decrefs. */
static json_t *stored_row(const char *id)
{
    F->done = false;
    assert_int_equal(store_keys_list(F->st, NULL, STORE_PAGE_MAX, value_cb, NULL), 0);
    wait_done();
    assert_int_equal(F->status, 0);
    json_t *page = json_loads(F->value, 0, NULL);
    json_t *found = NULL;
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(page, "data"), i, row)
    {
        if (strcmp(json_string_value(json_object_get(row, "id")), id) == 0)
            found = json_incref(row);
    }
    json_decref(page);
    assert_non_null(found);
    return found;
}

/* ---- pure helpers ---- */

static void test_base64url_matches_rfc4648_vectors_without_padding(void **state)
{
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    char out[16];
    for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
        keys_base64url((const uint8_t *)v[i].in, strlen(v[i].in), out);
        assert_string_equal(out, v[i].out);
    }
    /* the two characters that differ from base64: '-' for '+', '_' for '/' */
    keys_base64url((const uint8_t[]){0xfb, 0xff, 0xbf}, 3, out);
    assert_string_equal(out, "-_-_");
}

static void test_digest_is_sha256(void **state)
{
    uint8_t d[KEYS_DIGEST_LEN];
    keys_digest("abc", 3, d);
    static const uint8_t want[8] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea};
    assert_memory_equal(d, want, sizeof(want)); /* FIPS 180-2's "abc" */
}

static void test_tenant_names_and_roles_are_checked(void **state)
{
    assert_true(keys_tenant_valid("acme"));
    assert_true(keys_tenant_valid("a.b_c-9"));
    assert_true(keys_tenant_valid("0"));
    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_false(keys_tenant_valid(long_name));
    long_name[64] = '\0';
    assert_true(keys_tenant_valid(long_name));
    assert_false(keys_tenant_valid(""));
    assert_false(keys_tenant_valid("-acme"));
    assert_false(keys_tenant_valid("Acme"));
    assert_false(keys_tenant_valid("a b"));
    assert_false(keys_tenant_valid("a/b"));
    enum keys_role r;
    assert_int_equal(keys_role_parse("admin", &r), 0);
    assert_int_equal(r, KEYS_ADMIN);
    assert_int_equal(keys_role_parse("member", &r), 0);
    assert_int_equal(r, KEYS_MEMBER);
    assert_int_equal(keys_role_parse("root", &r), -EINVAL);
}

/* ---- the table ---- */

static void test_a_made_key_is_found_by_its_text_and_stored_only_as_its_hash(void **state)
{
    create("acme", KEYS_ADMIN);
    assert_int_equal(strlen(F->text), KEYS_TEXT_LEN);
    assert_memory_equal(F->text, "arun-", 5);
    assert_int_equal(strlen(F->id), KEYS_ID_LEN);
    assert_memory_equal(F->id, "key_", 4);

    struct keys_principal p;
    assert_int_equal(keys_check(F->keys, F->text, strlen(F->text), 1000, &p), 0);
    assert_string_equal(p.id, F->id);
    assert_string_equal(p.tenant, "acme");
    assert_int_equal(p.role, KEYS_ADMIN);

    uint8_t d[KEYS_DIGEST_LEN];
    keys_digest(F->text, strlen(F->text), d);
    char hex[KEYS_HASH_HEX + 1];
    for (size_t i = 0; i < KEYS_DIGEST_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    json_t *row = stored_row(F->id);
    assert_string_equal(json_string_value(json_object_get(row, "hash")), hex);
    char *dump = json_dumps(row, 0);
    assert_null(strstr(dump, F->text + 5)); /* nothing of the text itself */
    free(dump);
    json_decref(row);
}

static void test_unknown_malformed_and_overlong_keys_are_refused(void **state)
{
    create("acme", KEYS_MEMBER);
    struct keys_principal p;
    char other[KEYS_TEXT_LEN + 1];
    memcpy(other, F->text, sizeof(other));
    other[KEYS_TEXT_LEN - 1] = other[KEYS_TEXT_LEN - 1] == 'A' ? 'B' : 'A'; /* one char off */
    assert_int_equal(keys_check(F->keys, other, KEYS_TEXT_LEN, 1, &p), -ENOENT);
    assert_int_equal(keys_check(F->keys, F->text, KEYS_TEXT_LEN - 1, 1, &p), -EINVAL);
    assert_int_equal(keys_check(F->keys, "sk-1234", 7, 1, &p), -EINVAL);
    memcpy(other, F->text, sizeof(other));
    other[10] = '+'; /* base64, not base64url */
    assert_int_equal(keys_check(F->keys, other, KEYS_TEXT_LEN, 1, &p), -EINVAL);
    char *huge = xmalloc(1 << 20);
    memset(huge, 'a', 1 << 20);
    memcpy(huge, F->text, KEYS_TEXT_LEN); /* a real key followed by a megabyte */
    assert_int_equal(keys_check(F->keys, huge, 1 << 20, 1, &p), -EINVAL);
    free(huge);
}

static void test_a_revoked_key_is_refused_at_once_and_after_a_reload(void **state)
{
    create("acme", KEYS_MEMBER);
    char text[KEYS_TEXT_LEN + 1], id[KEYS_ID_LEN + 1];
    memcpy(text, F->text, sizeof(text));
    memcpy(id, F->id, sizeof(id));
    create("acme", KEYS_MEMBER); /* another key stays valid */

    F->done = false;
    assert_int_equal(keys_revoke(F->keys, id, 5000, done_cb, NULL), 0);
    struct keys_principal p;
    assert_int_equal(keys_check(F->keys, text, KEYS_TEXT_LEN, 6000, &p), -EKEYREVOKED);
    assert_string_equal(p.id, id); /* before the commit: the next request is refused */
    wait_done();
    assert_int_equal(F->status, 0);
    assert_int_equal(keys_check(F->keys, F->text, KEYS_TEXT_LEN, 6000, &p), 0);
    assert_int_equal(keys_revoke(F->keys, "key_0000000000000000", 1, done_cb, NULL), -ENOENT);

    json_t *obj = keys_object(F->keys, id);
    assert_int_equal(json_integer_value(json_object_get(obj, "revoked_at")), 5);
    json_decref(obj);

    keys_free(F->keys);
    F->keys = load();
    assert_int_equal(keys_count(F->keys), 2);
    assert_int_equal(keys_check(F->keys, text, KEYS_TEXT_LEN, 7000, &p), -EKEYREVOKED);
    assert_int_equal(keys_check(F->keys, F->text, KEYS_TEXT_LEN, 7000, &p), 0);
}

/* A re-read of table k (what keys_follow does on a notice). */
static void reread(struct keys *k)
{
    F->done = false;
    assert_int_equal(keys_load(k, done_cb, NULL), 0);
    wait_done();
    assert_int_equal(F->status, 0);
}

/* Two tables on one store stand for two nodes: B learns A's new key and A's revocation at its
 * next re-read, and a key only B revoked (not yet re-read by A) stays revoked in B. */
static void test_a_reread_takes_keys_created_and_revoked_by_another_node(void **state)
{
    struct keys *b = load();
    create("acme", KEYS_MEMBER);
    char text[KEYS_TEXT_LEN + 1], id[KEYS_ID_LEN + 1];
    memcpy(text, F->text, sizeof(text));
    memcpy(id, F->id, sizeof(id));
    struct keys_principal p;
    assert_int_equal(keys_check(b, text, KEYS_TEXT_LEN, 1000, &p), -ENOENT);
    reread(b);
    assert_int_equal(keys_check(b, text, KEYS_TEXT_LEN, 1000, &p), 0);
    assert_string_equal(p.tenant, "acme");

    F->done = false;
    assert_int_equal(keys_revoke(F->keys, id, 5000, done_cb, NULL), 0);
    wait_done();
    assert_int_equal(keys_check(b, text, KEYS_TEXT_LEN, 6000, &p), 0); /* not re-read yet */
    reread(b);
    assert_int_equal(keys_check(b, text, KEYS_TEXT_LEN, 6000, &p), -EKEYREVOKED);
    json_t *obj = keys_object(b, id);
    assert_int_equal(json_integer_value(json_object_get(obj, "revoked_at")), 5);
    json_decref(obj);
    assert_int_equal(keys_count(b), 1); /* merged, not added twice */
    reread(b);
    assert_int_equal(keys_count(b), 1);
    keys_free(b);
}

static int64_t stored_last_used(const char *id)
{
    json_t *row = stored_row(id);
    int64_t v = json_integer_value(json_object_get(row, "last_used_ms"));
    json_decref(row);
    return v;
}

/* Waits until the store's writes so far have committed (a write queued after them). */
static void flush_writes(void)
{
    F->done = false;
    assert_int_equal(store_kv_put(F->st, "test", "flush", "1", 1, done_cb, NULL), 0);
    wait_done();
}

static void test_last_used_is_written_at_most_once_a_minute_and_at_free(void **state)
{
    create("acme", KEYS_MEMBER);
    struct keys_principal p;
    const int64_t t0 = 1700000000000;
    assert_int_equal(keys_check(F->keys, F->text, KEYS_TEXT_LEN, t0, &p), 0);
    flush_writes();
    assert_int_equal(stored_last_used(F->id), t0); /* the first use is written at once */
    assert_int_equal(keys_check(F->keys, F->text, KEYS_TEXT_LEN, t0 + 30000, &p), 0);
    flush_writes();
    assert_int_equal(stored_last_used(F->id), t0); /* within the minute: memory only */
    json_t *obj = keys_object(F->keys, F->id);
    assert_int_equal(json_integer_value(json_object_get(obj, "last_used_at")), (t0 + 30000) / 1000);
    json_decref(obj);
    assert_int_equal(keys_check(F->keys, F->text, KEYS_TEXT_LEN, t0 + 60000, &p), 0);
    flush_writes();
    assert_int_equal(stored_last_used(F->id), t0 + 60000);
    assert_int_equal(keys_check(F->keys, F->text, KEYS_TEXT_LEN, t0 + 70000, &p), 0);
    keys_free(F->keys); /* writes what the minute held back */
    F->keys = NULL;
    flush_writes();
    assert_int_equal(stored_last_used(F->id), t0 + 70000);
    F->keys = load();
}

static void test_many_keys_are_each_found_and_listed_by_id_in_pages(void **state)
{
    enum { N = 300 }; /* past several doublings of the buckets */
    static char texts[N][KEYS_TEXT_LEN + 1];
    for (int i = 0; i < N; i++) {
        create(i % 2 ? "acme" : "beta", i % 3 ? KEYS_MEMBER : KEYS_ADMIN);
        memcpy(texts[i], F->text, sizeof(texts[i]));
    }
    struct keys_principal p;
    for (int i = 0; i < N; i++) {
        assert_int_equal(keys_check(F->keys, texts[i], KEYS_TEXT_LEN, 1, &p), 0);
        assert_string_equal(p.tenant, i % 2 ? "acme" : "beta");
    }
    size_t seen = 0;
    char after[KEYS_ID_LEN + 1] = "";
    for (;;) {
        json_t *page = keys_list(F->keys, after[0] ? after : NULL, 100);
        json_t *data = json_object_get(page, "data");
        for (size_t i = 0; i < json_array_size(data); i++) {
            const char *id = json_string_value(json_object_get(json_array_get(data, i), "id"));
            assert_true(strcmp(id, after) > 0); /* ascending, no repeat */
            snprintf(after, sizeof(after), "%s", id);
            assert_null(json_object_get(json_array_get(data, i), "hash"));
            seen++;
        }
        bool more = json_is_true(json_object_get(page, "has_more"));
        json_decref(page);
        if (!more)
            break;
    }
    assert_int_equal(seen, N);
}

static void test_bad_tenant_or_name_is_refused_before_the_store(void **state)
{
    assert_int_equal(keys_create(F->keys, "Not Valid", KEYS_MEMBER, NULL, created_cb, NULL),
                     -EINVAL);
    char name[KEYS_NAME_MAX + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(keys_create(F->keys, "acme", KEYS_MEMBER, name, created_cb, NULL), -EINVAL);
    assert_int_equal(keys_create(F->keys, "acme", KEYS_MEMBER, "\xff", created_cb, NULL), -EINVAL);
    assert_int_equal(keys_count(F->keys), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64url_matches_rfc4648_vectors_without_padding),
        cmocka_unit_test(test_digest_is_sha256),
        cmocka_unit_test(test_tenant_names_and_roles_are_checked),
        cmocka_unit_test_setup_teardown(
            test_a_made_key_is_found_by_its_text_and_stored_only_as_its_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_malformed_and_overlong_keys_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_revoked_key_is_refused_at_once_and_after_a_reload,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_reread_takes_keys_created_and_revoked_by_another_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_used_is_written_at_most_once_a_minute_and_at_free,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_keys_are_each_found_and_listed_by_id_in_pages,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_tenant_or_name_is_refused_before_the_store, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
