/*
 * conversations.c: the Conversations API (conversations.h, docs/conversations.md). It owns the
 * routes of /v1/conversations…: bodies are checked by runs/request.c, objects laid out by
 * runs/object.c, rows kept by the store (store.h: store_conversation_*, store_items_* with
 * STORE_ITEMS_CONVERSATION). It does not run anything: a response with `conversation` is the
 * runs' (scheduler.c reads the items through conversations_items_read; run.c appends the turn's
 * input and output when it completes).
 *
 * DESIGN
 * A conversation is a row (id, created_ms, metadata) and an ordered list of items owned by it.
 * Each route is one or two store calls and an answer built from what the store said, so the
 * only state is the request being answered (struct creq), freed when it is answered. Nothing is
 * cached: a conversation that a response appends to while it is being listed shows the items
 * that committed before the read.
 *
 * Durability: every answer that says "done" (2xx) is sent from a write's callback, i.e. after
 * the commit (store.h), so a conversation or item acknowledged survives kill -9. Creating a
 * conversation with items is two writes (the row, then the items) submitted back to back: the
 * writer is FIFO, so the answer waits for the second; if the items failed, the row is deleted
 * again and the client gets the error, never a conversation missing some of its items.
 *
 * Ids: the conversation's are made here (conv_…); items keep the ids request.c gave them (the
 * client's, or msg_…/fc_…/fco_… made there). An id repeated within one request is a 400 before
 * anything is written; one already in the conversation is a 400 from the store's unique index
 * (all or none of a request's items go in).
 *
 * Errors: an id in the path that does not exist (or is longer than any id can be) is a 404
 * naming what is missing (the conversation, or the item in it); a body request.c refuses is its
 * 400; a store that cannot take the request is a 503 with Retry-After (load shedding) or a 500
 * (a failed commit), as the responses' routes answer.
 *
 * Tenancy: every store call takes the request's tenant (reply_tenant, from its key), and the
 * store keys every row by it, so another tenant's conversation or item is the store's -ENOENT:
 * the same 404, by the same path, as an id nobody has (contract 6). Nothing here is cached in
 * memory, so there is no other lookup to scope.
 */
#include "runs/conversations.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/ids.h"
#include "runs/object.h"
#include "runs/reply.h"
#include "runs/request.h"

/* One request being answered. */
struct creq {
    struct store *st;
    struct http_request *r;
    struct run_conversation_body body; /* POST bodies, checked */
    struct run_list_query q;           /* GET …/items */
    int64_t created_ms;                /* POST /v1/conversations */
    int put_status, items_status;      /* the two writes of a create */
    int waiting;                       /* callbacks still due (create) */
    char id[STORE_ID_MAX + 1];         /* the conversation */
    char item[STORE_ID_MAX + 1];       /* the item, for …/items/ITEM */
    char after[STORE_ID_MAX + 1];      /* q.after, copied (the query lives in the request) */
};

static void conversation_not_found(struct http_request *r, const char *id)
{
    http_send_error(r, 404, "not_found", NULL, "Conversation with id '%.128s' not found.", id);
}

static void item_not_found(struct http_request *r, const char *conv, const char *item)
{
    http_send_error(r, 404, "not_found", NULL,
                    "Item with id '%.128s' not found in conversation '%.128s'.", item, conv);
}

/* Whether a path id can name something: ids are 1..STORE_ID_MAX bytes, so a longer one is
 * answered 404 here (the store would refuse it with -E2BIG, which is no client's business). */
static bool id_fits(const char *id)
{
    size_t n = strlen(id);
    return n > 0 && n <= STORE_ID_MAX;
}

static struct creq *creq_new(struct store *st, struct http_request *r)
{
    struct creq *c = xcalloc(1, sizeof(*c));
    c->st = st;
    c->r = r;
    return c;
}

static void creq_free(struct creq *c)
{
    run_conversation_body_free(&c->body);
    free(c);
}

/* A store call that refused to start (returned rc) ends the request. */
static void refused(struct creq *c, int rc)
{
    reply_store_failed(c->r, rc);
    creq_free(c);
}

/* The Conversation object of a store_conversation_get value, or NULL when it cannot be read. */
static json_t *conversation_of(const char *value, size_t len)
{
    json_t *row = json_loadb(value, len, 0, NULL);
    const char *id = json_string_value(json_object_get(row, "id"));
    json_t *out = NULL;
    if (id != NULL)
        out = object_conversation(
            id, (int64_t)(json_integer_value(json_object_get(row, "created_ms")) / 1000),
            json_object_get(row, "metadata"));
    json_decref(row);
    return out;
}

/* Answers the conversation as store_conversation_get read it (status, value), then frees c. */
static void send_conversation(struct creq *c, int status, const char *value, size_t len)
{
    json_t *obj = status == 0 ? conversation_of(value, len) : NULL;
    if (status == -ENOENT)
        conversation_not_found(c->r, c->id);
    else if (obj == NULL)
        reply_store_failed(c->r, status ? status : -EIO);
    else
        http_send_json(c->r, 200, obj);
    creq_free(c);
}

static void got_conversation_cb(int status, const char *value, size_t len, void *arg)
{
    send_conversation(arg, status, value, len);
}

/* Reads the conversation c->id and answers it. */
static void answer_conversation(struct creq *c)
{
    int rc = store_conversation_get(c->st, reply_tenant(c->r), c->id, got_conversation_cb, c);
    if (rc != 0)
        refused(c, rc);
}

/* Reads a path's conversation id into c; answers 404 and returns false when it cannot exist. */
static bool take_id(struct creq *c, const char *id)
{
    if (!id_fits(id)) {
        conversation_not_found(c->r, id);
        creq_free(c);
        return false;
    }
    snprintf(c->id, sizeof(c->id), "%s", id);
    return true;
}

/* Reads the path's item id into c (after take_id); the same 404 as a missing item otherwise. */
static bool take_item(struct creq *c, const char *item)
{
    if (!id_fits(item)) {
        item_not_found(c->r, c->id, item);
        creq_free(c);
        return false;
    }
    snprintf(c->item, sizeof(c->item), "%s", item);
    return true;
}

/* An id given twice in one request is refused before anything is written (the store would
 * refuse the whole append, without saying which). */
static int check_unique_ids(json_t *items, struct run_error *err)
{
    size_t i, j;
    json_t *a, *b;
    json_array_foreach(items, i, a)
    {
        const char *id = json_string_value(json_object_get(a, "id"));
        for (j = i + 1; id != NULL && j < json_array_size(items); j++) {
            b = json_array_get(items, j);
            const char *other = json_string_value(json_object_get(b, "id"));
            if (other != NULL && strcmp(id, other) == 0)
                return run_error_set(err, 400, "invalid_value", "items",
                                     "Invalid 'items': items[%zu] and items[%zu] have the same id "
                                     "'%.64s'; each item of a conversation has its own id.",
                                     i, j, id);
        }
    }
    return 0;
}

/* Submits the append of c->body.items to the conversation c->id; cb gets the store's status. */
static int append_items(struct creq *c, store_write_cb cb)
{
    char *text = json_dumps(c->body.items, JSON_COMPACT);
    int rc = store_items_append(c->st, reply_tenant(c->r), c->id, STORE_ITEMS_CONVERSATION, text,
                                strlen(text), cb, c);
    free(text);
    return rc;
}

/* The metadata to store, as JSON text the caller frees: absent and null are {} (null clears it,
 * as OpenAI). */
static char *metadata_text(const struct run_conversation_body *b)
{
    return b->metadata ? json_dumps(b->metadata, JSON_COMPACT) : xstrdup("{}");
}

/* The body of a POST, or an empty object for none when empty_ok (the SDK's create() sends no
 * body). NULL after answering 400. */
static json_t *read_body(struct http_request *r, bool empty_ok)
{
    json_t *body = NULL;
    if (empty_ok && r->req->entity.len == 0)
        return json_object();
    if (http_read_json(r, &body) != 0)
        return NULL;
    return body;
}

typedef int (*body_parse_fn)(json_t *body, struct run_conversation_body *out,
                             struct run_error *err);

/* Reads the body of a POST into c->body, checked by parse (request.c) and for repeated item ids;
 * answers 400 and frees c when it is refused. */
static bool take_body(struct creq *c, body_parse_fn parse, bool empty_ok)
{
    json_t *body = read_body(c->r, empty_ok);
    if (body == NULL) {
        creq_free(c);
        return false;
    }
    struct run_error err = {0};
    int rc = parse(body, &c->body, &err);
    json_decref(body); /* the parsed body holds its own reference */
    if (rc == 0 && c->body.items != NULL)
        rc = check_unique_ids(c->body.items, &err);
    if (rc != 0) {
        reply_run_error(c->r, &err);
        creq_free(c);
        return false;
    }
    return true;
}

/* ---- POST /v1/conversations ---- */

static void dropped_cb(int status, void *arg)
{
    (void)status; /* best effort: the sweep removes what is left */
    (void)arg;
}

static void created_cb(struct creq *c)
{
    if (--c->waiting > 0)
        return;
    if (c->put_status != 0) {
        reply_store_failed(c->r, c->put_status);
    } else if (c->items_status != 0) {
        /* The row went in without its items: take it out again, so that no client ever sees
         * a conversation missing what it was created with. */
        IGNORE_RESULT(
            store_conversation_delete(c->st, reply_tenant(c->r), c->id, dropped_cb, NULL));
        reply_store_failed(c->r, c->items_status);
    } else {
        http_send_json(c->r, 200,
                       object_conversation(c->id, c->created_ms / 1000, c->body.metadata));
    }
    creq_free(c);
}

static void put_cb(int status, void *arg)
{
    struct creq *c = arg;
    c->put_status = status;
    created_cb(c);
}

static void create_items_cb(int status, void *arg)
{
    struct creq *c = arg;
    c->items_status = status;
    created_cb(c);
}

static void create_conversation(struct http_request *r, void *arg)
{
    struct creq *c = creq_new(arg, r);
    if (!take_body(c, run_conversation_create_parse, true))
        return;
    ids_new(c->id, sizeof(c->id), "conv_");
    c->created_ms = clock_wall_ms();
    char *md = metadata_text(&c->body);
    bool items = json_array_size(c->body.items) > 0;
    c->waiting = items ? 2 : 1; /* before the calls: a callback must find it set */
    int rc = store_conversation_put(c->st, reply_tenant(r), c->id, c->created_ms, md, strlen(md),
                                    put_cb, c);
    free(md);
    if (rc != 0) {
        refused(c, rc);
        return;
    }
    if (!items)
        return;
    rc = append_items(c, create_items_cb);
    if (rc != 0) {
        c->items_status = rc; /* put_cb answers, after deleting the row again */
        c->waiting--;
    }
}

/* ---- GET|POST|DELETE /v1/conversations/ID ---- */

static void get_conversation(struct http_request *r, void *arg)
{
    struct creq *c = creq_new(arg, r);
    if (take_id(c, r->params[0]))
        answer_conversation(c);
}

static void updated_cb(int status, void *arg)
{
    struct creq *c = arg;
    if (status == -ENOENT) {
        conversation_not_found(c->r, c->id);
        creq_free(c);
    } else if (status != 0) {
        refused(c, status);
    } else {
        answer_conversation(c); /* for created_at; the read sees the committed update */
    }
}

static void update_conversation(struct http_request *r, void *arg)
{
    struct creq *c = creq_new(arg, r);
    if (!take_id(c, r->params[0]) || !take_body(c, run_conversation_update_parse, false))
        return;
    char *md = metadata_text(&c->body);
    int rc =
        store_conversation_update(c->st, reply_tenant(r), c->id, md, strlen(md), updated_cb, c);
    free(md);
    if (rc != 0)
        refused(c, rc);
}

static void deleted_cb(int status, void *arg)
{
    struct creq *c = arg;
    if (status == -ENOENT)
        conversation_not_found(c->r, c->id);
    else if (status != 0)
        reply_store_failed(c->r, status);
    else
        http_send_json(c->r, 200, object_deleted(c->id, "conversation.deleted"));
    creq_free(c);
}

static void delete_conversation(struct http_request *r, void *arg)
{
    struct creq *c = creq_new(arg, r);
    if (!take_id(c, r->params[0]))
        return;
    int rc = store_conversation_delete(c->st, reply_tenant(r), c->id, deleted_cb, c);
    if (rc != 0)
        refused(c, rc);
}

/* ---- GET|POST /v1/conversations/ID/items ---- */

static void page_cb(int status, const char *value, size_t len, void *arg)
{
    struct creq *c = arg;
    json_t *page = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
    json_t *data = json_object_get(page, "data");
    if (status == -ENOENT) {
        http_send_error(c->r, 404, "not_found", "after",
                        "No item with id '%s' in conversation '%s'.", c->after, c->id);
    } else if (!json_is_array(data)) {
        reply_store_failed(c->r, status ? status : -EIO);
    } else {
        json_t *out = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(data, i, v)
        {
            json_array_append_new(out, object_item(v));
        }
        http_send_json(c->r, 200,
                       object_list(out, json_is_true(json_object_get(page, "has_more"))));
    }
    json_decref(page);
    creq_free(c);
}

/* The conversation exists (or not): then its page of items. */
static void list_exists_cb(int status, const char *value, size_t len, void *arg)
{
    struct creq *c = arg;
    (void)value;
    (void)len;
    if (status == -ENOENT) {
        conversation_not_found(c->r, c->id);
        creq_free(c);
        return;
    }
    if (status != 0) {
        refused(c, status);
        return;
    }
    int rc = store_items_list(c->st, reply_tenant(c->r), c->id, STORE_ITEMS_CONVERSATION,
                              c->q.after ? c->after : NULL, c->q.limit, c->q.desc, page_cb, c);
    if (rc != 0)
        refused(c, rc);
}

static void list_items(struct http_request *r, void *arg)
{
    struct creq *c = creq_new(arg, r);
    if (!take_id(c, r->params[0]))
        return;
    struct run_error err = {0};
    if (run_list_query_parse(http_query(r, "after"), http_query(r, "limit"), http_query(r, "order"),
                             &c->q, &err) != 0) {
        reply_run_error(r, &err);
        creq_free(c);
        return;
    }
    if (c->q.after != NULL)
        snprintf(c->after, sizeof(c->after), "%s", c->q.after);
    /* The store lists a conversation that does not exist as empty: ask it first, for the 404. */
    int rc = store_conversation_get(c->st, reply_tenant(r), c->id, list_exists_cb, c);
    if (rc != 0)
        refused(c, rc);
}

static void added_cb(int status, void *arg)
{
    struct creq *c = arg;
    if (status == -ENOENT) {
        conversation_not_found(c->r, c->id);
    } else if (status == -EEXIST) {
        http_send_error(c->r, 400, "invalid_value", "items",
                        "Invalid 'items': an item with one of these ids is already in "
                        "conversation '%s'; leave 'id' out to have one made.",
                        c->id);
    } else if (status != 0) {
        reply_store_failed(c->r, status);
    } else {
        json_t *out = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(c->body.items, i, v)
        {
            json_array_append_new(out, object_item(v));
        }
        http_send_json(c->r, 200, object_list(out, false));
    }
    creq_free(c);
}

static void add_items(struct http_request *r, void *arg)
{
    struct creq *c = creq_new(arg, r);
    if (!take_id(c, r->params[0]) || !take_body(c, run_conversation_items_parse, false))
        return;
    int rc = append_items(c, added_cb);
    if (rc != 0)
        refused(c, rc);
}

/* ---- GET|DELETE /v1/conversations/ID/items/ITEM ---- */

/* After an item op said -ENOENT: which is missing, the conversation or the item in it? */
static void which_missing_cb(int status, const char *value, size_t len, void *arg)
{
    struct creq *c = arg;
    (void)value;
    (void)len;
    if (status == -ENOENT)
        conversation_not_found(c->r, c->id);
    else if (status != 0)
        reply_store_failed(c->r, status);
    else
        item_not_found(c->r, c->id, c->item);
    creq_free(c);
}

static void say_which_missing(struct creq *c)
{
    int rc = store_conversation_get(c->st, reply_tenant(c->r), c->id, which_missing_cb, c);
    if (rc != 0)
        refused(c, rc);
}

static void got_item_cb(int status, const char *value, size_t len, void *arg)
{
    struct creq *c = arg;
    if (status == -ENOENT) {
        say_which_missing(c);
        return;
    }
    json_t *item = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
    if (!json_is_object(item))
        reply_store_failed(c->r, status ? status : -EIO);
    else
        http_send_json(c->r, 200, object_item(item));
    json_decref(item);
    creq_free(c);
}

static void get_item(struct http_request *r, void *arg)
{
    struct creq *c = creq_new(arg, r);
    if (!take_id(c, r->params[0]) || !take_item(c, r->params[1]))
        return;
    int rc = store_item_get(c->st, reply_tenant(r), c->id, STORE_ITEMS_CONVERSATION, c->item,
                            got_item_cb, c);
    if (rc != 0)
        refused(c, rc);
}

static void item_deleted_cb(int status, void *arg)
{
    struct creq *c = arg;
    if (status == -ENOENT)
        say_which_missing(c);
    else if (status != 0)
        refused(c, status);
    else
        answer_conversation(c); /* OpenAI answers the Conversation */
}

static void delete_item(struct http_request *r, void *arg)
{
    struct creq *c = creq_new(arg, r);
    if (!take_id(c, r->params[0]) || !take_item(c, r->params[1]))
        return;
    int rc = store_item_delete(c->st, reply_tenant(r), c->id, STORE_ITEMS_CONVERSATION, c->item,
                               item_deleted_cb, c);
    if (rc != 0)
        refused(c, rc);
}

/* ---- the items a response continues ---- */

/* Two reads submitted together (the conversation for its existence, its newest items), joined
 * here: one round trip to the reader. */
struct items_read {
    store_value_cb cb;
    void *arg;
    int waiting;
    int conv_status;  /* store_conversation_get's */
    int items_status; /* store_items_list's */
    json_t *page;     /* store_items_list's, parsed */
};

static void items_read_done(struct items_read *ir)
{
    if (--ir->waiting > 0)
        return;
    json_t *data = json_object_get(ir->page, "data");
    int status = ir->conv_status ? ir->conv_status : ir->items_status;
    if (status == 0 && !json_is_array(data))
        status = -EIO;
    if (status != 0) {
        ir->cb(status, NULL, 0, ir->arg);
    } else {
        /* The page is newest first (so a long conversation keeps its latest turns): the
         * engine reads them oldest first. */
        json_t *items = json_array();
        for (size_t i = json_array_size(data); i-- > 0;)
            json_array_append(items, json_array_get(data, i));
        char *text = json_dumps(items, JSON_COMPACT);
        ir->cb(0, text, strlen(text), ir->arg);
        free(text);
        json_decref(items);
    }
    json_decref(ir->page);
    free(ir);
}

static void items_read_conv_cb(int status, const char *value, size_t len, void *arg)
{
    struct items_read *ir = arg;
    (void)value;
    (void)len;
    ir->conv_status = status;
    items_read_done(ir);
}

static void items_read_page_cb(int status, const char *value, size_t len, void *arg)
{
    struct items_read *ir = arg;
    ir->items_status = status;
    if (status == 0)
        ir->page = json_loadb(value, len, 0, NULL);
    items_read_done(ir);
}

int conversations_items_read(struct store *st, const char *tenant, const char *id,
                             store_value_cb cb, void *arg)
{
    struct items_read *ir = xcalloc(1, sizeof(*ir));
    ir->cb = cb;
    ir->arg = arg;
    ir->waiting = 2;
    int rc = store_conversation_get(st, tenant, id, items_read_conv_cb, ir);
    if (rc != 0) {
        free(ir);
        return rc;
    }
    rc = store_items_list(st, tenant, id, STORE_ITEMS_CONVERSATION, NULL, STORE_PAGE_MAX, true,
                          items_read_page_cb, ir);
    if (rc != 0) {
        ir->items_status = rc; /* the first read's callback reports it: cb runs once */
        ir->waiting--;
    }
    return 0;
}

int conversations_check_input(json_t *items, json_t *input, struct run_error *err)
{
    /* A set of the input's ids (a jansson object is a hash table): one lookup per conversation
     * item, since both lists can be long (10,000 items; an input bounded only by the body). */
    json_t *ids = json_object();
    size_t i;
    json_t *v;
    int rc = 0;
    json_array_foreach(input, i, v)
    {
        const char *id = json_string_value(json_object_get(v, "id"));
        if (id != NULL)
            json_object_set_new(ids, id, json_integer((json_int_t)i));
    }
    json_array_foreach(items, i, v)
    {
        const char *id = json_string_value(json_object_get(v, "id"));
        json_t *at = id != NULL ? json_object_get(ids, id) : NULL;
        if (at == NULL)
            continue;
        char param[48];
        snprintf(param, sizeof(param), "input[%lld].id", (long long)json_integer_value(at));
        rc = run_error_set(err, 400, "invalid_value", param,
                           "Duplicate item found with id '%.64s': the conversation already holds "
                           "it. Send only the new items of this turn, or leave 'id' out to have "
                           "one made.",
                           id);
        break;
    }
    json_decref(ids);
    return rc;
}

/* ---- registration ---- */

void conversations_api_register(struct http_server *srv, struct store *st)
{
    http_route(srv, "POST", "/v1/conversations", HTTP_MEMBER, create_conversation, st);
    http_route(srv, "GET", "/v1/conversations/{id}", HTTP_MEMBER, get_conversation, st);
    http_route(srv, "POST", "/v1/conversations/{id}", HTTP_MEMBER, update_conversation, st);
    http_route(srv, "DELETE", "/v1/conversations/{id}", HTTP_MEMBER, delete_conversation, st);
    http_route(srv, "GET", "/v1/conversations/{id}/items", HTTP_MEMBER, list_items, st);
    http_route(srv, "POST", "/v1/conversations/{id}/items", HTTP_MEMBER, add_items, st);
    http_route(srv, "GET", "/v1/conversations/{id}/items/{item}", HTTP_MEMBER, get_item, st);
    http_route(srv, "DELETE", "/v1/conversations/{id}/items/{item}", HTTP_MEMBER, delete_item, st);
}
