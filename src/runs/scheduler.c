/*
 * scheduler.c: runs on the gateway's calls (scheduler.h): the earlier turns read from the store,
 * the chat body, the submission, and the call's callbacks turned into the run's events and end.
 *
 * A run's call always streams (the events are the point) and hides the usage chunk it asks
 * for. A background run's call is durable: its queue is the store, so it waits in the engine's
 * queue beyond queue_limit; a foreground one gets the gateway's 429 like any client.
 *
 * The engine's stream is read only as fast as the store commits: when too many events wait for
 * their commit (eventlog_backlogged) the call pauses, and the commit that brings the backlog
 * down resumes it. A run with store:false pauses instead while one of its clients is behind.
 */
#include "runs/scheduler.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "http/server.h"
#include "runs/conversations.h"
#include "runs/stream.h"
#include "runs/translate.h"

/* ---- the earlier turns, and the items the input refers to ---- */

struct load {
    struct run *r;
    scheduler_loaded_cb cb;
    void *arg;
    bool conversation;
    size_t next;    /* the input item looked at next */
    size_t dropped; /* references dropped before it: it was input[next + dropped] as sent */
};

static void load_done(struct load *l, int status, const struct run_error *err)
{
    struct run *r = l->r;
    l->cb(r, status, err, l->arg);
    free(l);
    run_maybe_free(r);
}

static bool in_history(json_t *history, const char *id)
{
    size_t i;
    json_t *item;
    json_array_foreach(history, i, item)
    {
        const char *have = json_string_value(json_object_get(item, "id"));
        if (have != NULL && strcmp(have, id) == 0)
            return true;
    }
    return false;
}

static const char *item_type(json_t *item)
{
    const char *t = json_string_value(json_object_get(item, "type"));
    return t != NULL ? t : "";
}

static void resolve_next(struct load *l);

static void found_cb(int status, const char *value, size_t len, void *arg)
{
    struct load *l = arg;
    struct run *r = l->r;
    struct run_error err = {0};
    if (run_store_done(r)) {
        free(l);
        return;
    }
    json_t *item = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
    if (json_is_object(item)) {
        json_array_set_new(r->rq.input, l->next++, item);
        resolve_next(l);
        return;
    }
    json_decref(item);
    char param[64];
    snprintf(param, sizeof(param), "input[%zu].id", l->next + l->dropped);
    const char *id = json_string_value(json_object_get(json_array_get(r->rq.input, l->next), "id"));
    if (status == -ENOENT)
        IGNORE_RESULT(run_error_set(&err, 400, "invalid_value", param,
                                    "Invalid '%s': no stored item has the id '%.64s'. An "
                                    "item_reference names an item of an earlier response or "
                                    "conversation that was stored (not store: false, deleted or "
                                    "past runs.retention_days).",
                                    param, id ? id : ""));
    else
        IGNORE_RESULT(run_error_set(&err, 500, "server_error", param,
                                    "The item '%.64s' could not be read from the store: %s.",
                                    id ? id : "", strerror(status ? -status : EIO)));
    load_done(l, status ? status : -EIO, &err);
}

/* Replaces each item_reference of the input, from l->next on, by the stored item it names; one
 * that names an item of the history already given to the engine is dropped instead (it is
 * there, in its place: a conversation's or a previous response's item). */
static void resolve_next(struct load *l)
{
    struct run *r = l->r;
    json_t *input = r->rq.input;
    while (l->next < json_array_size(input)) {
        json_t *item = json_array_get(input, l->next);
        if (strcmp(item_type(item), "item_reference") != 0) {
            l->next++;
            continue;
        }
        const char *id = json_string_value(json_object_get(item, "id"));
        if (in_history(r->history, id)) {
            json_array_remove(input, l->next);
            l->dropped++;
            continue;
        }
        int rc = store_item_find(r->rs->o.store, r->tenant, id, found_cb, l);
        if (rc == 0) {
            r->store_ops++;
            return;
        }
        struct run_error err = {0};
        IGNORE_RESULT(run_error_set(&err, rc == -EAGAIN ? 503 : 500, "store_unavailable", "",
                                    "The store cannot read the items this input refers to now: "
                                    "%s.",
                                    strerror(-rc)));
        load_done(l, rc, &err);
        return;
    }
    /* A conversation's input item that it already holds could not be appended at the end. */
    struct run_error err = {0};
    if (l->conversation && conversations_check_input(r->history, input, &err) != 0)
        load_done(l, -EINVAL, &err);
    else
        load_done(l, 0, NULL);
}

static bool has_references(json_t *input)
{
    size_t i;
    json_t *item;
    json_array_foreach(input, i, item)
    {
        if (strcmp(item_type(item), "item_reference") == 0)
            return true;
    }
    return false;
}

/* The earlier turns could not be read: a 404 for an absent response or conversation. */
static void load_failed(struct load *l, int status)
{
    struct run *r = l->r;
    struct run_error err = {0};
    if (status == -ENOENT && l->conversation)
        IGNORE_RESULT(run_error_set(&err, 404, "not_found", "conversation",
                                    "Conversation with id '%s' not found.", r->rq.conversation_id));
    else if (status == -ENOENT)
        IGNORE_RESULT(run_error_set(&err, 404, "not_found", "previous_response_id",
                                    "Previous response with id '%s' not found.",
                                    r->rq.previous_response_id));
    else
        IGNORE_RESULT(run_error_set(&err, 500, "server_error", "",
                                    "The earlier turns could not be read from the store: %s.",
                                    strerror(-status)));
    load_done(l, status, &err);
}

static void loaded_cb(int status, const char *value, size_t len, void *arg)
{
    struct load *l = arg;
    struct run *r = l->r;
    bool gone = run_store_done(r);
    if (gone) {
        free(l);
        return;
    }
    if (status == 0) {
        json_error_t jerr;
        /* Both reads (store_history_read, conversations_items_read) answer an array. */
        json_t *items = json_loadb(value, len, 0, &jerr);
        if (!json_is_array(items)) {
            json_decref(items);
            status = -EIO;
        } else {
            json_decref(r->history);
            r->history = items;
        }
    }
    if (status == 0)
        resolve_next(l);
    else
        load_failed(l, status);
}

int scheduler_load_history(struct run *r, scheduler_loaded_cb cb, void *arg)
{
    struct store *st = r->rs->o.store;
    bool history = r->rq.previous_response_id != NULL || r->rq.conversation_id != NULL;
    if (!history && !has_references(r->rq.input)) {
        cb(r, 0, NULL, arg);
        return 0;
    }
    struct load *l = xcalloc(1, sizeof(*l));
    *l = (struct load){.r = r, .cb = cb, .arg = arg, .conversation = r->rq.conversation_id != NULL};
    if (!history) {
        resolve_next(l); /* calls cb, from found_cb or before it returns */
        return 0;
    }
    int rc;
    if (l->conversation)
        rc = conversations_items_read(st, r->tenant, r->rq.conversation_id, loaded_cb, l);
    else
        rc = store_history_read(st, r->tenant, r->rq.previous_response_id, loaded_cb, l);
    if (rc != 0) {
        free(l);
        return rc;
    }
    r->store_ops++;
    return 0;
}

/* ---- the call's callbacks ---- */

/* The events of the engine's stream, from the assembler. */
static int emit_cb(json_t *event, void *arg)
{
    struct run *r = arg;
    return eventlog_append(r, event);
}

/* Text deltas, made as JSON text by the assembler (xlate_set_emit_text). */
static int emit_text_cb(const char *type, const char *json, size_t len, void *arg)
{
    struct run *r = arg;
    return eventlog_append_text(r, type, json, len);
}

/* Why the run failed, as the Response's error shows it. */
static void fail(struct run *r, const char *code, const char *message)
{
    if (run_finished(r))
        return;
    json_decref(r->error);
    r->error = json_pack("{s:s, s:s}", "code", code, "message", message);
    run_set_status(r, RUN_FAILED);
}

static void head_cb(struct gateway_call *c, int status, void *arg)
{
    struct run *r = arg;
    const struct gateway_call_info *in = gateway_call_info(c);
    snprintf(r->engine, sizeof(r->engine), "%s", in->engine);
    size_t n = json_array_size(r->route);
    const char *last = n ? json_string_value(json_array_get(r->route, n - 1)) : NULL;
    if (last == NULL || strcmp(last, in->engine) != 0)
        json_array_append_new(r->route, json_string(in->engine));
    r->head_status = status;
    if (status != 200)
        return;
    if (r->dispatch_ms == 0) {
        r->dispatch_ms = clock_wall_ms();
        metrics_observe(r->rs->m_queue_wait, (double)(r->dispatch_ms - r->created_ms) / 1e3, NULL);
    }
    run_set_status(r, RUN_IN_PROGRESS);
}

/* The model id the engine reports, from its first chunk ("model"), for provenance. */
static void note_engine_model(struct run *r, const char *data, size_t len)
{
    json_t *v = json_loadb(data, len, 0, NULL);
    const char *m = json_string_value(json_object_get(v, "model"));
    if (m != NULL)
        snprintf(r->engine_model, sizeof(r->engine_model), "%s", m);
    json_decref(v);
}

static bool subscriber_behind(const struct run *r)
{
    for (h2o_linklist_t *n = r->log.subs.next; n != &r->log.subs; n = n->next) {
        struct stream_sub *s = H2O_STRUCT_FROM_MEMBER(struct stream_sub, link, n);
        if (s->sse != NULL && sse_pending(s->sse) >= SSE_MAX_PENDING / 2)
            return true;
    }
    return false;
}

static int event_cb(struct gateway_call *c, const struct sse_event *ev, void *arg)
{
    struct run *r = arg;
    if (r->first_token_ms == 0) {
        /* TTFT as the gateway measured it (monotonic), from sending the request upstream. */
        const struct gateway_call_info *in = gateway_call_info(c);
        uint64_t ttft_ns = in->first_byte_ns > in->dispatch_ns && in->dispatch_ns > 0
                               ? in->first_byte_ns - in->dispatch_ns
                               : 0;
        r->first_token_ms = r->dispatch_ms + (int64_t)(ttft_ns / 1000000);
        r->ttft_us = (int64_t)(ttft_ns / 1000);
    }
    if (r->engine_model[0] == '\0' && ev->data_len > 0 && ev->data[0] == '{')
        note_engine_model(r, ev->data, ev->data_len);
    int rc = xlate_chunk(r->x, ev->data, ev->data_len);
    if (rc != 0) {
        log_warn("runs", "response %s: engine %s sent a chunk that cannot be read: %s", r->id,
                 r->engine, xlate_error(r->x));
        return rc;
    }
    if (r->log.error != 0)
        return -EIO; /* the store lost an event: the run fails (end_cb) */
    if (eventlog_backlogged(&r->log) || (!r->rq.store && subscriber_behind(r))) {
        r->log.paused = true;
        return GATEWAY_CALL_PAUSE;
    }
    return 0;
}

/* An error answer of the engine (4xx) comes whole, then on_end passes it on (code NULL). */
static void body_cb(struct gateway_call *c, const char *content_type, const char *body, size_t len,
                    void *arg)
{
    struct run *r = arg;
    char who[128];
    snprintf(who, sizeof(who), "engine %s", gateway_call_info(c)->engine);
    json_t *e = http_error_relayed(r->head_status, body, len, who, true);
    json_t *inner = json_object_get(e, "error");
    json_decref(r->error);
    r->error = json_pack("{s:s, s:s}", "code", "upstream_error", "message",
                         json_string_value(json_object_get(inner, "message")) ?: "engine error");
    json_decref(e);
}

/* The engine's answer ended: the run's end, from why. */
static void finish_answer(struct run *r)
{
    if (xlate_finish(r->x) != 0) {
        fail(r, "upstream_error", xlate_error(r->x));
        return;
    }
    const char *reason = xlate_finish_reason(r->x);
    if (r->log.error != 0) {
        fail(r, "store_error", "arun could not store this response's events");
    } else if (reason != NULL && strcmp(reason, "length") == 0 && r->rq.max_output_tokens > 0) {
        r->incomplete_reason = "max_output_tokens";
        run_set_status(r, RUN_INCOMPLETE);
    } else {
        run_set_status(r, RUN_COMPLETED);
    }
}

static void end_cb(struct gateway_call *c, int status, const char *code, const char *message,
                   void *arg)
{
    struct run *r = arg;
    r->call = NULL;
    if (r->submitting) {
        /* Inside gateway_submit: scheduler_start reports it to its caller. */
        r->submit_status = status;
        snprintf(r->submit_code, sizeof(r->submit_code), "%s", code ? code : "upstream_error");
        snprintf(r->submit_message, sizeof(r->submit_message), "%s", message ? message : "");
        r->submit_retry_after_s = gateway_call_info(c)->retry_after_s;
        return;
    }
    if (run_finished(r))
        return;
    if (code != NULL) {
        fail(r, code, message);
    } else if (status >= 400) {
        json_t *e = r->error;
        r->error = NULL;
        const char *msg = json_string_value(json_object_get(e, "message"));
        fail(r, "upstream_error", msg ? msg : "the engine answered with an error");
        json_decref(e);
    } else {
        finish_answer(r);
    }
}

static const struct gateway_call_cbs run_cbs = {
    .on_head = head_cb,
    .on_event = event_cb,
    .on_body = body_cb,
    .on_end = end_cb,
};

void scheduler_prepare(struct run *r)
{
    if (r->x == NULL) {
        r->x = xlate_new(emit_cb, r);
        xlate_set_emit_text(r->x, emit_text_cb);
    }
}

int scheduler_start(struct run *r, const char *partial, struct run_error *err)
{
    struct runs *rs = r->rs;
    struct buf body;
    buf_init(&body, SIZE_MAX);
    int rc = xlate_chat_body(&r->rq, r->history, partial, &body, err);
    if (rc != 0)
        goto out;
    scheduler_prepare(r);
    struct gateway_submission sub = {
        .path = "/v1/chat/completions",
        .model = r->rq.model,
        .body = body.data,
        .body_len = body.len,
        .stream = true,
        .hide_usage = false, /* the assembler reads the usage chunk for Response.usage */
        .request_id = r->id,
        .durable = r->rq.background,
        .tenant = r->tenant,
    };
    r->submitting = true;
    r->submit_status = 0;
    rc = gateway_submit(rs->o.gateway, &sub, &run_cbs, r, &r->call);
    r->submitting = false;
    if (rc == -ENOENT) {
        struct buf names;
        buf_init(&names, 16 * 1024);
        gateway_models_served(rs->o.gateway, &names);
        rc = run_error_set(err, 404, "model_not_found", "model",
                           "The model '%s' does not exist; models served here: %s", r->rq.model,
                           names.len ? buf_cstr(&names) : "(none configured)");
        buf_cleanup(&names);
    } else if (rc == -ESHUTDOWN) {
        rc = run_error_set(err, 503, "shutting_down", "", "arun is shutting down");
    } else if (rc != 0) {
        /* -EINVAL: a submission request.c should have refused (it checks the model's length) */
        rc = run_error_set(err, 500, "internal_error", "",
                           "the gateway refused the run's request (%s); this is a bug in arun",
                           strerror(-rc));
    } else if (r->submit_status != 0) {
        r->call = NULL;
        IGNORE_RESULT(
            run_error_set(err, r->submit_status, r->submit_code, "", "%s", r->submit_message));
        err->retry_after_s = r->submit_retry_after_s;
        rc = -EAGAIN;
    } else {
        r->scheduled = true;
    }
out:
    buf_cleanup(&body);
    return rc;
}

void scheduler_cancel(struct run *r)
{
    if (r->call == NULL)
        return;
    gateway_call_cancel(r->call);
    r->call = NULL;
}

void scheduler_resume(struct run *r)
{
    if (!r->log.paused || r->call == NULL || eventlog_backlogged(&r->log) || subscriber_behind(r))
        return;
    r->log.paused = false;
    gateway_call_resume(r->call);
}
