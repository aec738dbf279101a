/* Unit tests of engines/logs: the engine's log file, its rotation, the tail and the followers.
 * Each test works in its own temporary directory, removed at the end. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/clock.h"
#include "engines/logs.h"

struct fixture {
    char root[64]; /* the temporary directory */
    char dir[128]; /* root/logs, where the log lives */
    struct engine_log *log;
};

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    strcpy(fx->root, "/tmp/arun-test-logs-XXXXXX");
    assert_non_null(mkdtemp(fx->root));
    snprintf(fx->dir, sizeof(fx->dir), "%s/logs", fx->root);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    engine_log_close(fx->log);
    nftw(fx->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static void open_log(struct fixture *fx, const struct engine_log_opts *o)
{
    struct buf err;
    buf_init(&err, 1024);
    int rc = engine_log_open(fx->dir, "eng", o, &fx->log, &err);
    if (rc != 0)
        fail_msg("engine_log_open: %d: %s", rc, buf_cstr(&err));
    buf_cleanup(&err);
}

static void feed(struct engine_log *l, int stream, const char *s)
{
    engine_log_feed(l, stream, s, strlen(s));
}

/* The whole file at path ("" when missing); the caller frees it. *len gets its size. */
static char *slurp(const char *path, size_t *len)
{
    struct buf b;
    char chunk[4096];
    size_t n;
    buf_init(&b, 64 * 1024 * 1024);
    FILE *f = fopen(path, "rb");
    while (f != NULL && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), 0);
    if (f != NULL)
        fclose(f);
    if (len != NULL)
        *len = b.len;
    return buf_steal(&b);
}

static void assert_file(const char *path, const char *want)
{
    char *got = slurp(path, NULL);
    assert_string_equal(got, want);
    free(got);
}

static void assert_tail(struct engine_log *l, size_t n, const char *want, size_t want_lines)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(engine_log_tail(l, n, &b), want_lines);
    assert_string_equal(buf_cstr(&b), want);
    buf_cleanup(&b);
}

/* A follower that records "stream:line\n" per line and can unfollow after `stop_after` lines. */
struct recorder {
    struct engine_log *log;
    struct engine_log_follower *f;
    struct buf seen;
    size_t lines;
    size_t stop_after;             /* 0 = never */
    struct recorder *add_on_first; /* followed from inside the first callback */
};

static void record_cb(const char *line, size_t len, int stream, void *arg)
{
    struct recorder *r = arg;
    assert_int_equal(buf_printf(&r->seen, "%d:", stream), 0);
    assert_int_equal(buf_append(&r->seen, line, len), 0);
    assert_int_equal(buf_puts(&r->seen, "\n"), 0);
    r->lines++;
    if (r->lines == 1 && r->add_on_first != NULL)
        r->add_on_first->f = engine_log_follow(r->log, record_cb, r->add_on_first);
    if (r->stop_after != 0 && r->lines == r->stop_after) {
        engine_log_unfollow(r->log, r->f);
        r->f = NULL;
    }
}

static void recorder_start(struct recorder *r, struct engine_log *l)
{
    buf_init(&r->seen, 1 << 20);
    r->log = l;
    r->f = engine_log_follow(l, record_cb, r);
}

static void recorder_stop(struct recorder *r)
{
    if (r->f != NULL)
        engine_log_unfollow(r->log, r->f);
    r->f = NULL;
    buf_cleanup(&r->seen);
}

static void test_lines_split_across_feeds_are_joined(void **state)
{
    struct fixture *fx = *state;
    open_log(fx, NULL);
    feed(fx->log, 1, "hel");
    feed(fx->log, 1, "lo\nwor");
    assert_tail(fx->log, 10, "hello\n", 1);
    feed(fx->log, 1, "ld\n");
    assert_tail(fx->log, 10, "hello\nworld\n", 2);
    assert_file(engine_log_path(fx->log), "hello\nworld\n");
}

static void test_partial_line_is_held_until_flush(void **state)
{
    struct fixture *fx = *state;
    open_log(fx, NULL);
    feed(fx->log, 2, "no newline yet");
    assert_tail(fx->log, 10, "", 0);
    assert_file(engine_log_path(fx->log), "");
    engine_log_flush(fx->log);
    assert_tail(fx->log, 10, "no newline yet\n", 1);
    assert_file(engine_log_path(fx->log), "no newline yet\n");
    engine_log_flush(fx->log); /* nothing held: no empty line */
    assert_tail(fx->log, 10, "no newline yet\n", 1);
}

static void test_streams_keep_their_own_partial_lines(void **state)
{
    struct fixture *fx = *state;
    struct recorder r = {0};
    open_log(fx, NULL);
    recorder_start(&r, fx->log);
    feed(fx->log, 1, "out-");
    feed(fx->log, 2, "err-");
    feed(fx->log, 1, "a\n");
    feed(fx->log, 2, "b\n");
    assert_string_equal(buf_cstr(&r.seen), "1:out-a\n2:err-b\n");
    recorder_stop(&r);
}

static void test_crlf_and_lone_cr_end_lines(void **state)
{
    struct fixture *fx = *state;
    open_log(fx, NULL);
    feed(fx->log, 1, "a\r\nb\r");
    feed(fx->log, 1, "\nc\rd\n\r\n");
    feed(fx->log, 1, "\rprogress 1\rprogress 2\n");
    assert_tail(fx->log, 100, "a\nb\nc\nd\n\nprogress 1\nprogress 2\n", 7);
    assert_file(engine_log_path(fx->log), "a\nb\nc\nd\n\nprogress 1\nprogress 2\n");
}

static void test_invalid_utf8_passes_through_untouched(void **state)
{
    struct fixture *fx = *state;
    struct recorder r = {0};
    open_log(fx, NULL);
    recorder_start(&r, fx->log);
    feed(fx->log, 1, "\xff\xfe bad \xc3 ok\n");
    assert_file(engine_log_path(fx->log), "\xff\xfe bad \xc3 ok\n");
    assert_string_equal(buf_cstr(&r.seen), "1:\xff\xfe bad \xc3 ok\n");
    recorder_stop(&r);
}

static void test_tail_returns_last_n_in_order(void **state)
{
    struct fixture *fx = *state;
    open_log(fx, NULL);
    for (int i = 0; i < 10; i++) {
        char line[32];
        snprintf(line, sizeof(line), "line %d\n", i);
        feed(fx->log, 1, line);
    }
    assert_tail(fx->log, 3, "line 7\nline 8\nline 9\n", 3);
    assert_tail(fx->log, 0, "", 0);
    struct buf all;
    buf_init(&all, 1 << 20);
    assert_int_equal(engine_log_tail(fx->log, 1000, &all), 10);
    assert_true(strncmp(all.data, "line 0\nline 1\n", 14) == 0);
    buf_cleanup(&all);
}

static void test_tail_respects_line_and_byte_caps(void **state)
{
    struct fixture *fx = *state;
    struct engine_log_opts o = {.tail_lines = 5, .tail_bytes = 20};
    open_log(fx, &o);
    feed(fx->log, 1, "aaaa\nbbbb\ncccc\ndddd\neeee\nffff\n"); /* 5 bytes a line */
    assert_tail(fx->log, 100, "cccc\ndddd\neeee\nffff\n", 4); /* 20 bytes */
    feed(fx->log, 1, "1\n2\n3\n4\n5\n6\n7\n");                /* 2 bytes a line */
    assert_tail(fx->log, 100, "3\n4\n5\n6\n7\n", 5);          /* 5 lines */
    /* A line bigger than tail_bytes alone is still kept: the newest line always is. */
    feed(fx->log, 1, "this line is longer than twenty bytes\n");
    assert_tail(fx->log, 100, "this line is longer than twenty bytes\n", 1);

    /* The output buffer's cap is respected too, keeping the newest lines. */
    feed(fx->log, 1, "x1\nx2\nx3\n");
    struct buf small;
    buf_init(&small, 7);
    assert_int_equal(engine_log_tail(fx->log, 100, &small), 2);
    assert_string_equal(buf_cstr(&small), "x2\nx3\n");
    buf_cleanup(&small);
}

/* Lines "line-NNN" (9 bytes with the newline) into files of at most 100 bytes: 11 a file. */
static void test_rotation_keeps_keep_files_and_drops_oldest(void **state)
{
    struct fixture *fx = *state;
    struct engine_log_opts o = {.max_file_bytes = 100, .keep_files = 2};
    open_log(fx, &o);
    for (int i = 0; i < 100; i++) {
        char line[32];
        snprintf(line, sizeof(line), "line-%03d\n", i);
        feed(fx->log, 1, line);
    }
    const char *path = engine_log_path(fx->log);
    char p1[256], p2[256], p3[256];
    snprintf(p1, sizeof(p1), "%s.1", path);
    snprintf(p2, sizeof(p2), "%s.2", path);
    snprintf(p3, sizeof(p3), "%s.3", path);
    assert_int_equal(access(p3, F_OK), -1);

    size_t n0, n1, n2;
    char *f0 = slurp(path, &n0), *f1 = slurp(p1, &n1), *f2 = slurp(p2, &n2);
    assert_true(n0 <= 100 && n1 <= 100 && n2 <= 100);
    assert_int_equal(n1, 99);
    assert_int_equal(n2, 99);
    /* 100 lines = 9 full files of 11 + 1: the live file has the last line, .1 the 11 before, .2
     * the 11 before those; everything older was dropped. */
    assert_string_equal(f0, "line-099\n");
    assert_true(strncmp(f1, "line-088\n", 9) == 0);
    assert_true(strncmp(f1 + 90, "line-098\n", 9) == 0);
    assert_true(strncmp(f2, "line-077\n", 9) == 0);
    assert_true(strncmp(f2 + 90, "line-087\n", 9) == 0);
    free(f0);
    free(f1);
    free(f2);
    /* The tail does not care about files. */
    assert_tail(fx->log, 2, "line-098\nline-099\n", 2);
}

static void test_reopening_appends(void **state)
{
    struct fixture *fx = *state;
    struct stat st;
    open_log(fx, NULL);
    feed(fx->log, 1, "first run\n");
    engine_log_close(fx->log);
    fx->log = NULL;
    open_log(fx, NULL);
    feed(fx->log, 1, "second run\n");
    assert_file(engine_log_path(fx->log), "first run\nsecond run\n");
    assert_int_equal(stat(engine_log_path(fx->log), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(fx->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

/* "2026-11-24T02:10:46.123Z arun: …": digits where the time has digits. */
static void assert_note_line(const char *line, const char *text)
{
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; shape[i] != '\0'; i++) {
        if (shape[i] == 'd')
            assert_true(line[i] >= '0' && line[i] <= '9');
        else
            assert_int_equal(line[i], shape[i]);
    }
    assert_true(strncmp(line + strlen(shape), text, strlen(text)) == 0);
}

static void test_notes_are_prefixed_timestamped_and_interleaved(void **state)
{
    struct fixture *fx = *state;
    struct recorder r = {0};
    open_log(fx, NULL);
    recorder_start(&r, fx->log);
    feed(fx->log, 1, "engine says 1\n");
    engine_log_note(fx->log, "started pid %d: %s", 1234, "llama-server -m x.gguf");
    feed(fx->log, 2, "engine says 2\n");
    engine_log_note(fx->log, "exited with code 1\nafter 2.3 s");
    assert_tail(fx->log, 10,
                "engine says 1\narun: started pid 1234: llama-server -m x.gguf\nengine says 2\n"
                "arun: exited with code 1 after 2.3 s\n",
                4);
    assert_string_equal(buf_cstr(&r.seen), "1:engine says 1\n"
                                           "0:arun: started pid 1234: llama-server -m x.gguf\n"
                                           "2:engine says 2\n"
                                           "0:arun: exited with code 1 after 2.3 s\n");
    char *file = slurp(engine_log_path(fx->log), NULL);
    assert_true(strncmp(file, "engine says 1\n", 14) == 0);
    char *note = file + 14;
    assert_note_line(note, "arun: started pid 1234: llama-server -m x.gguf\nengine says 2\n");
    char *second = strstr(note, "engine says 2\n") + 14;
    assert_note_line(second, "arun: exited with code 1 after 2.3 s\n");
    free(file);
    recorder_stop(&r);
}

static void test_follower_sees_lines_in_order_and_can_unfollow_in_callback(void **state)
{
    struct fixture *fx = *state;
    struct recorder all = {0}, quitter = {.stop_after = 2}, late = {0};
    open_log(fx, NULL);
    feed(fx->log, 1, "before anyone follows\n");
    recorder_start(&quitter, fx->log);
    recorder_start(&all, fx->log);
    buf_init(&late.seen, 1 << 20);
    late.log = fx->log;
    all.add_on_first = &late;
    feed(fx->log, 1, "one\ntwo\nthree\nfour\n");
    assert_string_equal(buf_cstr(&all.seen), "1:one\n1:two\n1:three\n1:four\n");
    assert_string_equal(buf_cstr(&quitter.seen), "1:one\n1:two\n");
    assert_null(quitter.f);
    /* Followed from inside the callback for "one": sees from the next line on. */
    assert_string_equal(buf_cstr(&late.seen), "1:two\n1:three\n1:four\n");
    feed(fx->log, 1, "five\n");
    assert_string_equal(buf_cstr(&quitter.seen), "1:one\n1:two\n");
    recorder_stop(&all);
    recorder_stop(&quitter);
    recorder_stop(&late);
}

static void test_overlong_line_is_cut_and_marked(void **state)
{
    struct fixture *fx = *state;
    struct recorder r = {0};
    const size_t mark = strlen(ENGINE_LOG_CUT_MARK);
    char chunk[1000];
    open_log(fx, NULL);
    recorder_start(&r, fx->log);
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 20; i++) /* 20000 bytes in pieces, no newline */
        engine_log_feed(fx->log, 1, chunk, sizeof(chunk));
    assert_int_equal(r.lines, 1); /* cut as soon as it passed the limit, not held */
    feed(fx->log, 1, "still the long line\nnext\n");
    assert_int_equal(r.lines, 2);
    /* "1:" + the cut line + "\n" + "1:next\n" */
    assert_int_equal(r.seen.len, 2 + ENGINE_LOG_MAX_LINE + 1 + 7);
    assert_true(strncmp(r.seen.data + 2 + ENGINE_LOG_MAX_LINE - mark,
                        ENGINE_LOG_CUT_MARK "\n1:next\n", mark + 8) == 0);

    /* A long line inside one chunk, and a cut that would split a UTF-8 character: the whole
     * character goes, never half of it. */
    size_t n = ENGINE_LOG_MAX_LINE + 100;
    char *big = malloc(n + 1);
    memset(big, 'y', n);
    size_t at = ENGINE_LOG_MAX_LINE - mark - 1; /* "é" spans the cut */
    big[at] = '\xc3';
    big[at + 1] = '\xa9';
    big[n] = '\n';
    buf_reset(&r.seen);
    engine_log_feed(fx->log, 2, big, n + 1);
    assert_int_equal(r.seen.len, 2 + at + mark + 1);
    assert_int_equal(r.seen.data[2 + at - 1], 'y');
    assert_true(strncmp(r.seen.data + 2 + at, ENGINE_LOG_CUT_MARK "\n", mark + 1) == 0);
    free(big);

    /* The file got the same lines. */
    size_t len;
    char *file = slurp(engine_log_path(fx->log), &len);
    assert_int_equal(len, (ENGINE_LOG_MAX_LINE + 1) + 5 + (at + mark + 1));
    free(file);
    recorder_stop(&r);
}

static void test_last_line_prefers_an_error_looking_line(void **state)
{
    struct fixture *fx = *state;
    open_log(fx, NULL);
    assert_null(engine_log_last_line(fx->log));
    feed(fx->log, 1, "loading model\n");
    assert_string_equal(engine_log_last_line(fx->log), "loading model");
    feed(fx->log, 2, "error: model file not found\nfreeing buffers\n");
    engine_log_note(fx->log, "exited with code 1"); /* arun's lines never count */
    assert_string_equal(engine_log_last_line(fx->log), "error: model file not found");

    /* A new run forgets the old one's lines. */
    engine_log_begin_run(fx->log);
    assert_null(engine_log_last_line(fx->log));
    feed(fx->log, 2,
         "Traceback (most recent call last):\n  File \"serve.py\", line 3\n"
         "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
         "shutting down\n");
    assert_string_equal(engine_log_last_line(fx->log),
                        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB");
    engine_log_begin_run(fx->log);
    feed(fx->log, 1, "panic: runtime error: index out of range\n");
    assert_string_equal(engine_log_last_line(fx->log), "panic: runtime error: index out of range");
    /* llama-server on a truncated model: its last words only name the error. */
    engine_log_begin_run(fx->log);
    feed(fx->log, 2,
         "0.00.005.550 E llama_model_load: error loading model: tensor 'token_embd.weight' data "
         "is not within the file bounds, model is corrupted or incomplete\n"
         "0.00.005.569 E srv    load_model: failed to load model, 'bad.gguf'\n"
         "0.00.005.797 E srv  llama_server: exiting due to model loading error\n");
    assert_string_equal(engine_log_last_line(fx->log),
                        "0.00.005.550 E llama_model_load: error loading model: tensor "
                        "'token_embd.weight' data is not within the file bounds, model is "
                        "corrupted or incomplete");
    /* Alone, such a line is still the error; a glued word says what it was. */
    engine_log_begin_run(fx->log);
    feed(fx->log, 2, "starting\nexiting due to model loading error.\nshutting down\n");
    assert_string_equal(engine_log_last_line(fx->log), "exiting due to model loading error.");
    feed(fx->log, 2, "Traceback (most recent call last):\nRuntimeError\n");
    assert_string_equal(engine_log_last_line(fx->log), "RuntimeError");
    engine_log_begin_run(fx->log);
    feed(fx->log, 1, "all good\npartial");
    engine_log_flush(fx->log);
    assert_string_equal(engine_log_last_line(fx->log), "partial");
}

static void test_write_failure_keeps_tail_and_followers(void **state)
{
    struct fixture *fx = *state;
    struct recorder r = {0};
    char path[256];
    assert_int_equal(mkdir(fx->dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/eng.log", fx->dir);
    assert_int_equal(symlink("/dev/full", path), 0); /* every write: ENOSPC */
    open_log(fx, &(struct engine_log_opts){.max_file_bytes = 10});
    recorder_start(&r, fx->log);
    /* arun's own log (stderr) goes to a file, to count the reports. */
    char errlog[256];
    snprintf(errlog, sizeof(errlog), "%s/stderr", fx->root);
    fflush(stderr);
    int saved = dup(2);
    FILE *ef = fopen(errlog, "w");
    dup2(fileno(ef), 2);
    for (int i = 0; i < 100; i++)
        feed(fx->log, 1, "a line nobody can store on disk\n");
    for (int i = 0; i < 10; i++) /* many lines a feed: rotation is due by size, yet skipped */
        feed(fx->log, 1, "x\ny\nz\n");
    engine_log_note(fx->log, "still noting");
    feed(fx->log, 2, "last words\n");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fclose(ef);
    char *reports = slurp(errlog, NULL);
    const char *first = strstr(reports, "cannot write");
    assert_non_null(first);
    assert_null(strstr(first + 1, "cannot write")); /* once, not once a line */
    assert_non_null(strstr(reports, "No space left on device"));
    free(reports);
    assert_tail(fx->log, 2, "arun: still noting\nlast words\n", 2);
    assert_int_equal(r.lines, 132);
    assert_int_equal(engine_log_bytes_total(fx->log), 100 * 32 + 60 + 11);
    assert_string_equal(engine_log_last_line(fx->log), "last words");
    /* Nothing rotated the device away. */
    char p1[280];
    snprintf(p1, sizeof(p1), "%s.1", path);
    assert_int_equal(access(p1, F_OK), -1);
    recorder_stop(&r);
}

static void child_write(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void test_child_output_is_read_back_not_written_twice(void **state)
{
    struct fixture *fx = *state;
    struct recorder r = {0};
    open_log(fx, NULL);
    recorder_start(&r, fx->log);
    int fd = engine_log_child_fd(fx->log);
    assert_true(fd >= 0);
    child_write(fd, "hello from child\npart");
    engine_log_poll(fx->log);
    assert_tail(fx->log, 10, "hello from child\n", 1);
    child_write(fd, "ial\n");
    engine_log_poll(fx->log);
    engine_log_poll(fx->log); /* nothing new: nothing happens */
    assert_tail(fx->log, 10, "hello from child\npartial\n", 2);
    assert_string_equal(buf_cstr(&r.seen), "1:hello from child\n1:partial\n");
    assert_file(engine_log_path(fx->log), "hello from child\npartial\n");
    assert_int_equal(engine_log_bytes_total(fx->log), 25);
    assert_true(engine_log_last_output_ms(fx->log) > 0);
    close(fd);
    recorder_stop(&r);
}

static void test_notes_follow_child_output_in_file_and_tail(void **state)
{
    struct fixture *fx = *state;
    open_log(fx, NULL);
    int fd = engine_log_child_fd(fx->log);
    assert_true(fd >= 0);
    child_write(fd, "a\n");
    engine_log_note(fx->log, "x"); /* no poll in between: the note reads "a" first */
    child_write(fd, "b\nloading");
    engine_log_note(fx->log, "y"); /* ends the unfinished line, in the file too */
    child_write(fd, "done\n");
    engine_log_poll(fx->log);
    assert_tail(fx->log, 10, "a\narun: x\nb\nloading\narun: y\ndone\n", 6);
    char *file = slurp(engine_log_path(fx->log), NULL);
    assert_true(strncmp(file, "a\n", 2) == 0);
    assert_note_line(file + 2, "arun: x\nb\nloading\n");
    char *second = strstr(file, "loading\n") + 8;
    assert_note_line(second, "arun: y\ndone\n");
    free(file);
    close(fd);
}

static void test_poll_reads_what_an_adopted_engine_writes_after_open(void **state)
{
    struct fixture *fx = *state;
    char path[256];
    assert_int_equal(mkdir(fx->dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/eng.log", fx->dir);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600); /* the engine's, from before */
    assert_true(fd >= 0);
    child_write(fd, "written while arun was away\n");
    open_log(fx, NULL);
    child_write(fd, "written after\n");
    engine_log_poll(fx->log);
    assert_tail(fx->log, 10, "written after\n", 1);
    close(fd);
}

/* An engine adopted from an earlier arun writes a file that is already past the limit: a note
 * before the first poll must not rename the file away from under it. */
static void test_never_fed_log_is_not_renamed_under_an_adopted_engine(void **state)
{
    struct fixture *fx = *state;
    char path[256], p1[280];
    assert_int_equal(mkdir(fx->dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/eng.log", fx->dir);
    snprintf(p1, sizeof(p1), "%s.1", path);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    assert_true(fd >= 0);
    for (int i = 0; i < 20; i++)
        child_write(fd, "history\n"); /* 160 bytes */
    open_log(fx, &(struct engine_log_opts){.max_file_bytes = 100});
    engine_log_note(fx->log, "adopted pid 1234");
    assert_int_equal(access(p1, F_OK), -1);
    child_write(fd, "still here\n");
    engine_log_poll(fx->log); /* copies and truncates: the engine's descriptor stays valid */
    assert_file(path, "");
    child_write(fd, "after rotation\n");
    engine_log_poll(fx->log);
    assert_file(path, "after rotation\n");
    assert_tail(fx->log, 10, "arun: adopted pid 1234\nstill here\nafter rotation\n", 3);
    char *f1 = slurp(p1, NULL);
    assert_non_null(strstr(f1, "history\n"));
    assert_non_null(strstr(f1, "arun: adopted pid 1234\nstill here\n"));
    free(f1);
    close(fd);
}

static void write_lines(int fd, int from, int to)
{
    for (int i = from; i < to; i++) {
        char line[32];
        snprintf(line, sizeof(line), "line-%03d\n", i);
        child_write(fd, line);
    }
}

/* The child keeps its descriptor: rotation copies NAME.log to NAME.log.1 and truncates it. */
static void test_shared_rotation_copies_and_truncates(void **state)
{
    struct fixture *fx = *state;
    struct engine_log_opts o = {.max_file_bytes = 100, .keep_files = 2};
    open_log(fx, &o);
    const char *path = engine_log_path(fx->log);
    char p1[256], p2[256], p3[256];
    snprintf(p1, sizeof(p1), "%s.1", path);
    snprintf(p2, sizeof(p2), "%s.2", path);
    snprintf(p3, sizeof(p3), "%s.3", path);
    int fd = engine_log_child_fd(fx->log);
    assert_true(fd >= 0);

    write_lines(fd, 0, 15); /* 135 bytes */
    engine_log_poll(fx->log);
    assert_tail(fx->log, 1, "line-014\n", 1);
    assert_file(path, "");
    char *f1 = slurp(p1, NULL);
    assert_int_equal(strlen(f1), 135);
    assert_true(strncmp(f1, "line-000\n", 9) == 0);
    free(f1);

    write_lines(fd, 15, 30); /* lands at the start of the truncated file */
    engine_log_poll(fx->log);
    write_lines(fd, 30, 45);
    engine_log_poll(fx->log);
    write_lines(fd, 45, 46);
    engine_log_poll(fx->log);
    assert_file(path, "line-045\n");
    f1 = slurp(p1, NULL);
    char *f2 = slurp(p2, NULL);
    assert_true(strncmp(f1, "line-030\n", 9) == 0);
    assert_true(strncmp(f2, "line-015\n", 9) == 0);
    free(f1);
    free(f2);
    assert_int_equal(access(p3, F_OK), -1); /* lines 0-14 dropped */
    assert_tail(fx->log, 3, "line-043\nline-044\nline-045\n", 3);
    close(fd);
}

static void test_last_output_and_bytes_total_count_every_byte(void **state)
{
    struct fixture *fx = *state;
    open_log(fx, NULL);
    assert_int_equal(engine_log_last_output_ms(fx->log), 0);
    assert_int_equal(engine_log_bytes_total(fx->log), 0);
    uint64_t before = clock_mono_ms();
    feed(fx->log, 1, "progress without newline");
    assert_true(engine_log_last_output_ms(fx->log) >= before);
    assert_true(engine_log_last_output_ms(fx->log) <= clock_mono_ms());
    feed(fx->log, 2, "x\n");
    engine_log_note(fx->log, "arun's notes are not engine output");
    assert_int_equal(engine_log_bytes_total(fx->log), 26);
}

static void test_open_errors_are_sentences(void **state)
{
    struct fixture *fx = *state;
    struct engine_log *l = NULL;
    struct buf err;
    char file[128], dir[160];
    buf_init(&err, 1024);

    assert_int_equal(engine_log_open(fx->dir, "a/b", NULL, &l, &err), -EINVAL);
    assert_null(l);
    assert_non_null(strstr(buf_cstr(&err), "\"a/b\" is not a plain file name"));

    snprintf(file, sizeof(file), "%s/plain-file", fx->root);
    FILE *f = fopen(file, "w");
    fclose(f);
    snprintf(dir, sizeof(dir), "%s/logs", file);
    buf_reset(&err);
    assert_int_equal(engine_log_open(dir, "eng", NULL, &l, &err), -ENOTDIR);
    assert_null(l);
    assert_non_null(strstr(buf_cstr(&err), "cannot create log directory"));
    assert_non_null(strstr(buf_cstr(&err), "plain-file/logs"));
    buf_cleanup(&err);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_lines_split_across_feeds_are_joined),
        T(test_partial_line_is_held_until_flush),
        T(test_streams_keep_their_own_partial_lines),
        T(test_crlf_and_lone_cr_end_lines),
        T(test_invalid_utf8_passes_through_untouched),
        T(test_tail_returns_last_n_in_order),
        T(test_tail_respects_line_and_byte_caps),
        T(test_rotation_keeps_keep_files_and_drops_oldest),
        T(test_reopening_appends),
        T(test_notes_are_prefixed_timestamped_and_interleaved),
        T(test_follower_sees_lines_in_order_and_can_unfollow_in_callback),
        T(test_overlong_line_is_cut_and_marked),
        T(test_last_line_prefers_an_error_looking_line),
        T(test_write_failure_keeps_tail_and_followers),
        T(test_child_output_is_read_back_not_written_twice),
        T(test_notes_follow_child_output_in_file_and_tail),
        T(test_poll_reads_what_an_adopted_engine_writes_after_open),
        T(test_shared_rotation_copies_and_truncates),
        T(test_never_fed_log_is_not_renamed_under_an_adopted_engine),
        T(test_last_output_and_bytes_total_count_every_byte),
        T(test_open_errors_are_sentences),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
