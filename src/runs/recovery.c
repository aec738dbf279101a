/*
 * recovery.c: the runs left unfinished by an earlier arun, and those taken over from a node
 * that stopped renewing its leases (recovery.h).
 *
 * DESIGN
 * At start the unfinished rows are claimed for this node (store_runs_claim: its first page with
 * restart, which gives up the leases of this node's earlier process, on SQLite of every run
 * since data_dir's lock says nobody else runs; then every run without a live lease),
 * RECOVERY_PAGE at a time until a short page; a claimed run is leased, so no page repeats one.
 * That gives every such row in creation order with the node that owned it. A takeover (the cluster's scan claiming runs
 * of a dead node) hands its rows to recovery_adopt, which runs the same cursor over them: a
 * run taken over is continued or ended exactly as after a restart, and logged and counted as
 * taken over (arun_runs_taken_over_total) rather than recovered. Each becomes a
 * run in memory with its stored status and its log numbered after its last stored event. The
 * rows are handled one after the other through a cursor, so that a run whose history must be
 * read from the store first still reaches its engine's queue in creation order: a run with no
 * history (most) costs no store round trip, which keeps 10,000 queued runs well under 2 s.
 *
 * An in-progress run whose engine can continue (continuation: chat-prefix) has its stored
 * events folded through the assembler (xlate_replay), which then holds the open message item;
 * its text is sent to the engine as the assistant prefix, and the assembler drops the prefix
 * if the engine repeats it (llama-server does), so the final text is prefix + continuation.
 * One whose engine cannot continue has its events folded the same way before it fails
 * `interrupted`: its output is the part its clients were sent.
 */
#include "runs/recovery.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "runs/scheduler.h"
#include "runs/translate.h"

/* Runs claimed per store round trip at start: a page of rows with their requests is a few MB
 * at most, and 10,000 queued runs still take ten round trips, well under a second. */
#define RECOVERY_PAGE 1000

struct cursor {
    struct runs *rs;
    bool claimed_once; /* the restart page was asked: later pages claim the expired only */
    json_t *rows;
    json_t *seen;      /* ids claimed at start, for pages that repeat a run */
    bool adopt;        /* rows a takeover handed (recovery_adopt) */
    struct run **runs; /* rows[i] revived, NULL for a row that cannot be (logged) */
    size_t i;
    struct run *run;                    /* the run being recovered while a store read is out */
    const struct config_engine *engine; /* that run's engine (NULL: gone from the config) */
    size_t counts[4];                   /* requeued, continued, interrupted, answered */
};

enum { REQUEUED, CONTINUED, INTERRUPTED, ANSWERED };
/* answered: the answer was over when arun died (only its end was lost), on an engine that
 * cannot continue: it completes without the engine. */
static const char *const outcome_names[] = {"requeued", "continued", "interrupted", "answered"};

static void next_row(struct cursor *c);
static void interrupt(struct cursor *c, struct run *r);

static void cursor_free(struct cursor *c)
{
    json_decref(c->rows);
    json_decref(c->seen);
    free(c->runs);
    free(c);
}

/* The node another node's run was claimed from, NULL for this node's own (or a SQLite store's:
 * nobody else ever had it). Valid while the cursor's rows live. */
static const char *taken_from(const struct cursor *c, const json_t *row)
{
    struct store *st = c->rs->o.store;
    const char *node = json_string_value(json_object_get(row, "node"));
    if (!store_shared(st) || node == NULL || strcmp(node, store_node_id(st)) == 0)
        return NULL;
    return node;
}

/* The row the cursor is at (next_row has moved past it). */
static const json_t *current_row(const struct cursor *c)
{
    return json_array_get(c->rows, c->i - 1);
}

/* What became of the run at the cursor: counted, and for a run taken over from another node,
 * logged (a person asks where a run went when its node died). */
static void count(struct cursor *c, struct run *r, int outcome)
{
    static const char *const taken_words[] = {"queued again", "continuing on engine %s",
                                              "interrupted (engine %s cannot continue it)",
                                              "completed (its answer was over)"};
    c->counts[outcome]++;
    const char *from = taken_from(c, current_row(c));
    if (from == NULL) {
        metrics_add(c->rs->m_recovered, 1, (const char *const[]){outcome_names[outcome]});
        return;
    }
    metrics_add(c->rs->m_taken_over, 1, (const char *const[]){outcome_names[outcome]});
    char what[160];
    snprintf(what, sizeof(what), taken_words[outcome],
             c->engine != NULL ? c->engine->name : "(none)");
    log_info("runs", "took over run %s from node %s whose lease expired: %s", r->id, from, what);
}

static void fail_run(struct run *r, const char *code, const char *fmt, const char *engine)
{
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, engine);
    r->error = json_pack("{s:s, s:s}", "code", code, "message", msg);
    run_set_status(r, RUN_FAILED);
}

/* The run could not be scheduled again (its engine is gone from the config, say). */
static void start_failed(struct run *r, const struct run_error *err)
{
    log_warn("runs", "response %s cannot run again after the restart: %s", r->id, err->message);
    r->error = json_pack("{s:s, s:s}", "code", "interrupted", "message", err->message);
    run_set_status(r, RUN_FAILED);
}

static void history_cb(struct run *r, int status, const struct run_error *err, void *arg)
{
    struct cursor *c = arg;
    struct run_error serr = {0};
    if (run_finished(r))
        ; /* cancelled by a client while its history was read */
    else if (status != 0)
        start_failed(r, err);
    else if (scheduler_start(r, r->continued ? xlate_partial_text(r->x) : NULL, &serr) != 0)
        start_failed(r, &serr);
    run_release(r);
    c->run = NULL;
    next_row(c);
}

static void schedule(struct cursor *c, struct run *r)
{
    c->run = r;
    if (scheduler_load_history(r, history_cb, c) != 0) {
        struct run_error err = {0};
        IGNORE_RESULT(run_error_set(&err, 503, "interrupted", "",
                                    "the store refused to read this response's earlier turns"));
        start_failed(r, &err);
        run_release(r);
        c->run = NULL;
        next_row(c);
    }
}

/* Folds the stored events into r's assembler, then continues. */
static void stored_events_cb(int status, const char *value, size_t len, void *arg)
{
    struct cursor *c = arg;
    struct run *r = c->run;
    if (run_store_done(r))
        return;
    if (run_finished(r)) { /* cancelled by a client while its events were read */
        run_release(r);
        c->run = NULL;
        next_row(c);
        return;
    }
    if (status != 0) {
        fail_run(r, "interrupted",
                 "arun restarted while this response was being generated and "
                 "could not read its stored events (%s)",
                 strerror(-status));
        run_release(r);
        c->run = NULL;
        next_row(c);
        return;
    }
    const char *p = value, *end = value + len;
    int64_t last = -1;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t llen = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *sp1 = memchr(p, ' ', llen);
        char *sp2 = sp1 ? memchr(sp1 + 1, ' ', llen - (size_t)(sp1 + 1 - p)) : NULL;
        if (sp2 != NULL) {
            last = strtoll(p, NULL, 10);
            json_t *ev = json_loadb(sp2 + 1, llen - (size_t)(sp2 + 1 - p), 0, NULL);
            if (ev != NULL && xlate_replay(r->x, ev) != 0)
                log_warn("runs", "response %s: stored event %lld not understood on replay", r->id,
                         (long long)last);
            json_decref(ev);
        }
        p += llen + 1;
    }
    if (last >= 0 && last < r->log.committed) {
        int rc = store_events_read(r->rs->o.store, r->tenant, r->id, last, STORE_PAGE_MAX,
                                   stored_events_cb, c);
        if (rc == 0) {
            r->store_ops++;
            return;
        }
    }
    if (xlate_answer_ended(r->x)) {
        /* Asking the engine again would start the answer over: the kill came after its end
         * (among the items' done events, or before response.completed). The usage and the
         * finish reason went with the kill: the run completes with usage null. */
        log_info("runs",
                 "response %s had its whole answer stored before the restart; it completes "
                 "without asking the engine again",
                 r->id);
        if (xlate_finish(r->x) != 0)
            log_warn("runs", "response %s: its open items could not be closed: %s", r->id,
                     xlate_error(r->x));
        if (!r->continued)
            count(c, r, ANSWERED); /* no engine needed: whatever its continuation setting */
        run_set_status(r, RUN_COMPLETED);
        run_release(r);
        c->run = NULL;
        next_row(c);
        return;
    }
    if (!r->continued) {
        interrupt(c, r);
        return;
    }
    const char *partial = xlate_partial_text(r->x);
    if (partial != NULL)
        xlate_expect_echo(r->x, partial);
    log_info("runs", "response %s continues after the restart from event %lld (%zu bytes of text)",
             r->id, (long long)r->log.committed, partial ? strlen(partial) : 0);
    schedule(c, r);
}

/* The engine that answered r (from its stored provenance), or the first that serves its model. */
static const struct config_engine *engine_of(struct runs *rs, json_t *row, const char *model)
{
    json_t *obj = json_object_get(row, "object");
    const char *name = json_string_value(json_object_get(json_object_get(obj, "arun"), "engine"));
    if (name != NULL)
        return config_find_engine(rs->o.cfg, name);
    struct engine *e = supervisor_find_model(rs->o.sup, model);
    return e ? engine_config(e) : NULL;
}

/* An in-progress run whose engine cannot continue ends here, once its stored events are folded
 * back: its output is what its clients were sent, not nothing. */
static void interrupt(struct cursor *c, struct run *r)
{
    const struct config_engine *e = c->engine;
    const char *from = taken_from(c, current_row(c));
    char msg[512];
    if (from != NULL)
        snprintf(msg, sizeof(msg),
                 "node %s stopped while this response was being generated (its lease expired); "
                 "engine %s cannot continue a partial answer (continuation: none)",
                 from, e ? e->name : "(none)");
    else
        snprintf(msg, sizeof(msg),
                 "arun restarted while this response was being generated; engine %s cannot "
                 "continue a partial answer (continuation: none)",
                 e ? e->name : "(none)");
    r->error = json_pack("{s:s, s:s}", "code", "interrupted", "message", msg);
    count(c, r, INTERRUPTED); /* before the status: the log line comes before the run's end */
    run_set_status(r, RUN_FAILED);
    run_release(r);
    c->run = NULL;
    next_row(c);
}

static void in_progress(struct cursor *c, struct run *r, json_t *row)
{
    const struct config_engine *e = engine_of(c->rs, row, r->rq.model);
    c->engine = e;
    if (e != NULL && e->continuation == CONFIG_CONT_CHAT_PREFIX) {
        count(c, r, CONTINUED);
        r->continued = true;
    }
    scheduler_prepare(r);
    c->run = r;
    int rc = store_events_read(c->rs->o.store, r->tenant, r->id, -1, STORE_PAGE_MAX,
                               stored_events_cb, c);
    if (rc != 0) {
        c->run = NULL;
        fail_run(r, "interrupted", "arun restarted and could not read this response's events (%s)",
                 strerror(-rc));
        run_release(r);
        next_row(c);
        return;
    }
    r->store_ops++;
}

/* One unfinished row back into memory. Returns NULL for a row that cannot be (logged) or whose
 * run is in memory already (a takeover's claim that repeats one of this node's own runs). */
static struct run *revive(struct runs *rs, json_t *row)
{
    const char *id = json_string_value(json_object_get(row, "id"));
    const char *tenant = json_string_value(json_object_get(row, "tenant"));
    json_t *req = json_object_get(row, "request");
    struct run_request rq;
    struct run_error err = {0};
    if (id != NULL && tenant != NULL && tenant[0] != '\0' && run_find(rs, tenant, id) != NULL)
        return NULL;
    if (id == NULL || tenant == NULL || req == NULL || run_request_parse(req, &rq, &err) != 0) {
        log_error("runs",
                  "response %s: its stored request cannot be read again (%s); left as it is",
                  id ? id : "?", err.message);
        return NULL;
    }
    struct run *r =
        run_new(rs, tenant, id, &rq, json_integer_value(json_object_get(row, "created_ms")));
    int64_t last = json_integer_value(json_object_get(row, "last_seq"));
    if (!json_is_integer(json_object_get(row, "last_seq")))
        last = -1;
    eventlog_init(&r->log, last + 1);
    r->row_stored = true;
    run_restore_status(r, run_status_parse(json_string_value(json_object_get(row, "status"))));
    json_t *arun = json_object_get(json_object_get(row, "object"), "arun");
    json_int_t dispatch =
        json_integer_value(json_object_get(json_object_get(arun, "timings"), "queued_ms"));
    if (dispatch > 0)
        r->dispatch_ms = r->created_ms + dispatch;
    /* The rest of the provenance too: the row's object is rewritten at the run's end, and a run
     * that ends here (interrupted) would lose who answered it. */
    snprintf(r->engine, sizeof(r->engine), "%s",
             json_string_value(json_object_get(arun, "engine")) ?: "");
    snprintf(r->engine_model, sizeof(r->engine_model), "%s",
             json_string_value(json_object_get(arun, "engine_model")) ?: "");
    json_t *route = json_object_get(arun, "route");
    if (json_is_array(route)) {
        json_decref(r->route);
        r->route = json_deep_copy(route);
    }
    json_t *ttft = json_object_get(json_object_get(arun, "timings"), "ttft_ms");
    if (json_is_number(ttft) && r->dispatch_ms > 0) {
        r->ttft_us = (int64_t)(json_number_value(ttft) * 1e3);
        r->first_token_ms = r->dispatch_ms + r->ttft_us / 1000;
    }
    run_hold(r);
    return r;
}

static void next_row(struct cursor *c)
{
    while (c->i < json_array_size(c->rows)) {
        json_t *row = json_array_get(c->rows, c->i);
        struct run *r = c->runs[c->i++];
        if (r == NULL)
            continue;
        if (run_finished(r) || r->deleted) {
            run_release(r); /* cancelled or deleted by a client before its turn came */
            continue;
        }
        if (r->status == RUN_IN_PROGRESS) {
            in_progress(c, r, row);
            return; /* comes back through next_row */
        }
        c->engine = NULL;
        count(c, r, REQUEUED);
        if (r->rq.previous_response_id != NULL || r->rq.conversation_id != NULL) {
            schedule(c, r);
            return;
        }
        struct run_error err = {0};
        if (scheduler_start(r, NULL, &err) != 0)
            start_failed(r, &err);
        run_release(r);
    }
    if (c->i > 0)
        log_info("runs",
                 "%s %zu unfinished responses: %zu requeued, %zu continued, %zu "
                 "failed (interrupted), %zu completed (their answer was over)",
                 c->adopt ? "took over" : "recovered", c->i, c->counts[REQUEUED],
                 c->counts[CONTINUED], c->counts[INTERRUPTED], c->counts[ANSWERED]);
    cursor_free(c);
}

/* Every row is in: back into memory, then scheduled one after the other. */
static void rows_loaded(struct cursor *c)
{
    /* Every unfinished run is in memory before any request about one is answered: a stream
     * opened now follows the live run instead of ending at its last stored event. */
    size_t n = json_array_size(c->rows);
    c->runs = xcalloc(n ? n : 1, sizeof(*c->runs));
    for (size_t i = 0; i < n; i++)
        c->runs[i] = revive(c->rs, json_array_get(c->rows, i));
    if (!c->adopt)
        runs_loaded(c->rs);
    next_row(c);
}

/* The scan at start could not be made: serve what there is (the unfinished runs wait for the
 * next start, or for another node's takeover). */
static void scan_failed(struct cursor *c, int status)
{
    struct runs *rs = c->rs;
    if (status != 0 && status != -ECANCELED)
        log_error("runs", "cannot read the unfinished responses: %s", strerror(-status));
    cursor_free(c);
    if (!rs->closing)
        runs_loaded(rs);
    runs_scan_done(rs); /* may free a closing registry */
}

static void unfinished_cb(int status, const char *value, size_t len, void *arg)
{
    struct cursor *c = arg;
    if (status != 0 || c->rs->closing) {
        scan_failed(c, status);
        return;
    }
    c->rs->scanning = false;
    json_error_t jerr;
    json_decref(c->rows); /* the claim's empty array */
    c->rows = json_loadb(value, len, 0, &jerr);
    if (!json_is_array(c->rows)) {
        log_error("runs", "the unfinished responses could not be parsed: %s", jerr.text);
        runs_loaded(c->rs);
        cursor_free(c);
        return;
    }
    rows_loaded(c);
}

/* Adds a claimed page's rows not claimed before; returns how many were new (*rows: how many the
 * page had), -1 when the page is not an array. */
static long add_page(struct cursor *c, const char *value, size_t len, size_t *rows)
{
    json_error_t jerr;
    json_t *page = json_loadb(value, len, 0, &jerr);
    if (!json_is_array(page)) {
        log_error("runs", "the claimed responses could not be parsed: %s", jerr.text);
        json_decref(page);
        return -1;
    }
    long added = 0;
    size_t i;
    json_t *row;
    *rows = json_array_size(page);
    json_array_foreach(page, i, row)
    {
        const char *id = json_string_value(json_object_get(row, "id"));
        if (id == NULL || json_object_get(c->seen, id) != NULL)
            continue;
        json_object_set_new(c->seen, id, json_true());
        json_array_append(c->rows, row);
        added++;
    }
    json_decref(page);
    return added;
}

static int claim_page(struct cursor *c);

static void claim_cb(int status, const char *value, size_t len, void *arg)
{
    struct cursor *c = arg;
    struct runs *rs = c->rs;
    if (status == -ENOSYS && !rs->closing) {
        /* A backend that cannot claim has no other node: its unfinished rows are the same. */
        int rc = store_runs_unfinished(rs->o.store, unfinished_cb, c);
        if (rc != 0)
            scan_failed(c, rc);
        return;
    }
    if (status != 0 || rs->closing) {
        scan_failed(c, status);
        return;
    }
    size_t rows = 0;
    long added = add_page(c, value, len, &rows);
    if (added < 0) {
        scan_failed(c, 0);
        return;
    }
    /* A full page that brought new runs may have more behind it; a page that only repeated
     * runs claimed already (a backend that gives its own runs again) ends the scan too. */
    if (rows >= RECOVERY_PAGE && added > 0) {
        int rc = claim_page(c);
        if (rc == 0)
            return;
        log_error("runs", "the store refused to claim more unfinished responses: %s; %zu are in",
                  strerror(-rc), json_array_size(c->rows));
    }
    rs->scanning = false;
    rows_loaded(c);
}

/* The first page gives up this node's earlier leases (a restart: its runs are claimable at
 * once); the claim leases what it answers, so the next page starts after it. */
static int claim_page(struct cursor *c)
{
    struct store *st = c->rs->o.store;
    bool first = !c->claimed_once;
    c->claimed_once = true;
    return store_runs_claim(st, clock_wall_ms(), first, RECOVERY_PAGE, claim_cb, c);
}

int recovery_start(struct runs *rs)
{
    struct cursor *c = xcalloc(1, sizeof(*c));
    c->rs = rs;
    c->rows = json_array();
    c->seen = json_object();
    int rc = claim_page(c);
    if (rc == 0) {
        rs->scanning = true;
    } else {
        cursor_free(c);
        runs_loaded(rs); /* serve what there is: the unfinished runs wait for the next start */
    }
    return rc;
}

void recovery_adopt(struct runs *rs, const char *rows, size_t len)
{
    if (rs->closing || rs->draining)
        return; /* claimed and never renewed: another node takes them once their lease runs out */
    json_error_t jerr;
    json_t *arr = json_loadb(rows, len, 0, &jerr);
    if (!json_is_array(arr)) {
        log_error("runs", "the runs handed over by the takeover could not be parsed: %s",
                  jerr.text);
        json_decref(arr);
        return;
    }
    struct cursor *c = xcalloc(1, sizeof(*c));
    c->rs = rs;
    c->rows = arr;
    c->adopt = true;
    rows_loaded(c);
}

void recovery_adopt_cb(const char *rows, size_t len, void *arg)
{
    recovery_adopt(arg, rows, len);
}
