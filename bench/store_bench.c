/*
 * store_bench.c: what the store's durable-runs path sustains, driven through store.h exactly as
 * the runs use it (bench/store.sh runs it; numbers in bench/README.md).
 *
 *   append: RUNS responses, each appending EVENTS events of a typical delta (~170 bytes of
 *           JSON), WINDOW of each run's events in flight at once (a run's next event is
 *           submitted when one of its own is acknowledged), so RUNS x WINDOW events wait for
 *           the writer at any moment. Reports events committed per second (first submission to
 *           last acknowledgement), commits and events per commit (group commit at work).
 *   read:   one response with READ_EVENTS events, read back as the resume path does: the time
 *           from submission to the first page's callback (PAGE events) and to the last page
 *           (pages of PAGE, each submitted from the previous one's callback). Median of 5.
 *   json:   the cost of checking one event's JSON with SQLite's json_valid() and with
 *           jansson's parser, per event (why the schema keeps a CHECK).
 *
 * Usage: store_bench DATA_DIR full|normal [RUNS EVENTS WINDOW READ_EVENTS PAGE]
 * DATA_DIR must not hold a store yet (store.sh gives a fresh one per run). With ARUN_STORE_URL
 * set (postgres://…, an empty database) the store is PostgreSQL, DATA_DIR only its lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "store/store.h"

#define TENANT STORE_TENANT_DEFAULT
#define EVENT_TYPE "response.output_text.delta"

struct bench {
    uv_loop_t loop;
    struct store *st;
    int runs, events, window;
    int *next_seq; /* per run: the next sequence number to submit */
    int acked;     /* events acknowledged, all runs */
    int failed;
    uint64_t done_ns;
};

static int event_data(char *out, size_t cap, int run, int seq)
{
    return snprintf(out, cap,
                    "{\"type\":\"response.output_text.delta\",\"item_id\":\"msg_%032d\","
                    "\"output_index\":0,\"content_index\":0,\"delta\":\" tok%d\",\"logprobs\":[],"
                    "\"sequence_number\":%d}",
                    run, seq, seq);
}

static void append_cb(int status, void *arg);

static void submit_next(struct bench *b, int run)
{
    char id[32], data[256];

    if (b->next_seq[run] >= b->events)
        return;
    int seq = b->next_seq[run]++;
    int n = event_data(data, sizeof(data), run, seq);
    snprintf(id, sizeof(id), "resp_%06d", run);
    int rc = store_event_append(b->st, TENANT, id, seq, EVENT_TYPE, data, (size_t)n, append_cb,
                                (void *)(intptr_t)run);
    if (rc != 0) {
        fprintf(stderr, "store_event_append: %s\n", strerror(-rc));
        exit(1);
    }
}

static struct bench *B;

static void append_cb(int status, void *arg)
{
    if (status != 0)
        B->failed++;
    if (++B->acked == B->runs * B->events)
        B->done_ns = clock_mono_ns();
    submit_next(B, (int)(intptr_t)arg);
}

static void put_cb(int status, void *arg)
{
    if (status != 0) {
        fprintf(stderr, "store_response_put: %s\n", strerror(-status));
        exit(1);
    }
    (*(int *)arg)++;
}

/* Submits one response row; *done counts its acknowledgement. */
static void put_response(struct bench *b, const char *id, int *done)
{
    const char *req = "{\"model\":\"m\",\"input\":\"hi\",\"stream\":true}";
    const char *obj = "{\"object\":\"response\",\"status\":\"in_progress\"}";
    struct store_response r = {.tenant = TENANT,
                               .id = id,
                               .status = "in_progress",
                               .model = "m",
                               .created_ms = clock_wall_ms(),
                               .request = req,
                               .request_len = strlen(req),
                               .object = obj,
                               .object_len = strlen(obj)};

    if (store_response_put(b->st, &r, put_cb, done) != 0)
        exit(1);
}

static void put_responses(struct bench *b, int first, int n)
{
    int done = 0;

    for (int i = first; i < first + n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "resp_%06d", i);
        put_response(b, id, &done);
    }
    while (done < n)
        uv_run(&b->loop, UV_RUN_ONCE);
}

static void bench_append(struct bench *b, const char *sync)
{
    struct store_stats before, after;

    put_responses(b, 0, b->runs);
    b->next_seq = calloc((size_t)b->runs, sizeof(*b->next_seq));
    store_stats(b->st, &before);
    uint64_t start = clock_mono_ns();
    for (int w = 0; w < b->window; w++)
        for (int r = 0; r < b->runs; r++)
            submit_next(b, r);
    while (b->acked < b->runs * b->events)
        uv_run(&b->loop, UV_RUN_ONCE);
    store_stats(b->st, &after);
    double secs = (double)(b->done_ns - start) / 1e9;
    uint64_t commits = after.commits - before.commits;
    printf("append sync=%s runs=%d window=%d events=%d: %.0f events/s, %" PRIu64
           " commits, %.1f events/commit, %.3f s, %d failed\n",
           sync, b->runs, b->window, b->runs * b->events, b->runs * b->events / secs, commits,
           commits > 0 ? (double)(after.ops_committed - before.ops_committed) / (double)commits
                       : 0.0,
           secs, b->failed);
    free(b->next_seq);
}

/* ---- read ---- */

struct reader {
    struct bench *b;
    int page;
    int64_t last_seq;
    int64_t want_last;
    uint64_t start_ns, first_ns, all_ns;
    size_t bytes;
    bool done;
};

static void read_cb(int status, const char *value, size_t len, void *arg)
{
    struct reader *r = arg;
    uint64_t now = clock_mono_ns();

    if (status != 0) {
        fprintf(stderr, "store_events_read: %s\n", strerror(-status));
        exit(1);
    }
    if (r->first_ns == 0)
        r->first_ns = now;
    r->bytes += len;
    /* The last line's sequence number: the start of the next page. */
    const char *last = len > 1 ? (const char *)memrchr(value, '\n', len - 1) : NULL;
    r->last_seq = strtoll(last != NULL ? last + 1 : value, NULL, 10);
    if (len == 0 || r->last_seq >= r->want_last) {
        r->all_ns = now;
        r->done = true;
        return;
    }
    if (store_events_read(r->b->st, TENANT, "resp_read", r->last_seq, (uint32_t)r->page, read_cb,
                          r) != 0)
        exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void bench_read(struct bench *b, int events, int page)
{
    char data[256];
    int done = 0;
    uint64_t first[5], all[5];
    size_t bytes = 0;

    put_response(b, "resp_read", &done);
    for (int i = 0; i < events; i++) {
        int n = event_data(data, sizeof(data), 0, i);
        if (store_event_append(b->st, TENANT, "resp_read", i, EVENT_TYPE, data, (size_t)n, put_cb,
                               &done) != 0)
            exit(1);
    }
    while (done < events + 1)
        uv_run(&b->loop, UV_RUN_ONCE);
    for (int round = 0; round < 5; round++) {
        struct reader r = {.b = b, .page = page, .want_last = events - 1};
        r.start_ns = clock_mono_ns();
        if (store_events_read(b->st, TENANT, "resp_read", -1, (uint32_t)page, read_cb, &r) != 0)
            exit(1);
        while (!r.done)
            uv_run(&b->loop, UV_RUN_ONCE);
        first[round] = r.first_ns - r.start_ns;
        all[round] = r.all_ns - r.start_ns;
        bytes = r.bytes;
    }
    qsort(first, 5, sizeof(first[0]), cmp_u64);
    qsort(all, 5, sizeof(all[0]), cmp_u64);
    printf("read events=%d page=%d: first page %.3f ms, all %.3f ms (%zu bytes), median of 5\n",
           events, page, (double)first[2] / 1e6, (double)all[2] / 1e6, bytes);
}

/* ---- json ---- */

static void bench_json(void)
{
    char data[256];
    int n = event_data(data, sizeof(data), 7, 123), rounds = 200000;
    sqlite3 *db;
    sqlite3_stmt *check, *bare;

    sqlite3_open(":memory:", &db);
    sqlite3_prepare_v2(db, "SELECT json_valid(?1)", -1, &check, NULL);
    sqlite3_prepare_v2(db, "SELECT ?1", -1, &bare, NULL);
    uint64_t t0 = clock_mono_ns();
    for (int i = 0; i < rounds; i++) {
        sqlite3_bind_text(bare, 1, data, n, SQLITE_STATIC);
        sqlite3_step(bare);
        sqlite3_reset(bare);
    }
    uint64_t t1 = clock_mono_ns();
    for (int i = 0; i < rounds; i++) {
        sqlite3_bind_text(check, 1, data, n, SQLITE_STATIC);
        sqlite3_step(check);
        sqlite3_reset(check);
    }
    uint64_t t2 = clock_mono_ns();
    for (int i = 0; i < rounds; i++) {
        json_error_t e;
        json_decref(json_loadb(data, (size_t)n, 0, &e));
    }
    uint64_t t3 = clock_mono_ns();
    printf("json check of a %d-byte event: sqlite json_valid %.0f ns, jansson parse %.0f ns\n", n,
           (double)((t2 - t1) - (t1 - t0)) / rounds, (double)(t3 - t2) / rounds);
    sqlite3_finalize(check);
    sqlite3_finalize(bare);
    sqlite3_close(db);
}

int main(int argc, char **argv)
{
    struct bench b = {.runs = 200, .events = 500, .window = 1};
    int read_events = 10000, page = 1000;
    struct buf err;

    if (argc < 3) {
        fprintf(stderr, "usage: store_bench DATA_DIR full|normal [RUNS EVENTS WINDOW READ_EVENTS "
                        "PAGE]\n");
        return 2;
    }
    if (argc > 3)
        b.runs = atoi(argv[3]);
    if (argc > 4)
        b.events = atoi(argv[4]);
    if (argc > 5)
        b.window = atoi(argv[5]);
    if (argc > 6)
        read_events = atoi(argv[6]);
    if (argc > 7)
        page = atoi(argv[7]);
    struct store_options opts = {.url = getenv("ARUN_STORE_URL"),
                                 .data_dir = argv[1],
                                 .synchronous = strcmp(argv[2], "normal") == 0 ? CONFIG_SYNC_NORMAL
                                                                               : CONFIG_SYNC_FULL};
    B = &b;
    uv_loop_init(&b.loop);
    buf_init(&err, 4096);
    if (store_open(&b.loop, &opts, &b.st, &err) != 0) {
        fprintf(stderr, "store_open: %s\n", buf_cstr(&err));
        return 1;
    }
    buf_cleanup(&err);
    bench_append(&b, argv[2]);
    if (read_events > 0)
        bench_read(&b, read_events, page);
    bench_json();
    store_close(b.st);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    return b.failed != 0;
}
