/*
 * view.c: the view of the nodes (cluster_int.h): store_nodes_list's answer parsed into nodes
 * that are up, down (with why) or left, the peers that can serve a model in the order the
 * gateway tries them, the models the other nodes serve, and the changes from one view to the
 * next. Pure functions of their arguments: no loop, no store, no clock (the store's now_ms
 * comes with the list), so tests feed them lists and check the outcome.
 *
 * What a node's info holds (written by cluster_info, cluster.c): {"version", "engines":[{"name",
 * "state","models":[…],"backend","memory":{…},"in_flight","queued","admissible"}…],
 * "routes":[names], "memory":{…}}. Info from another version of arun may lack any of these: a
 * missing field reads as nothing served, never as an error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/cluster_int.h"

static const char *const state_names[] = {
    [CLUSTER_NODE_UP] = "up",
    [CLUSTER_NODE_DOWN] = "down",
    [CLUSTER_NODE_LEFT] = "left",
};

static const char *const change_names[] = {
    [CLUSTER_CHANGE_NONE] = "none", [CLUSTER_CHANGE_UP] = "up",     [CLUSTER_CHANGE_DOWN] = "down",
    [CLUSTER_CHANGE_LEFT] = "left", [CLUSTER_CHANGE_BACK] = "back",
};

const char *cluster_node_state_name(enum cluster_node_state s)
{
    return state_names[s];
}

const char *cluster_change_name(enum cluster_change c)
{
    return change_names[c];
}

/* "2026-12-07T21:50:00Z" into out (at least 21 bytes). */
static void iso_utc(int64_t ms, char *out, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || gmtime_r(&t, &tm) == NULL || strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, size, "never");
}

void cluster_down_reason(int64_t ago_ms, int64_t seen_ms, char *out, size_t size)
{
    char when[32];

    iso_utc(seen_ms, when, sizeof(when));
    snprintf(out, size, "no heartbeat for %lld s; last seen %s", (long long)(ago_ms / 1000), when);
}

/* ---- parsing ---- */

static int parse_node(json_t *row, int64_t now_ms, const char *self_id, int64_t down_after_ms,
                      struct cluster_node *n)
{
    const char *id = json_string_value(json_object_get(row, "id"));
    const char *address = json_string_value(json_object_get(row, "address"));
    const char *state = json_string_value(json_object_get(row, "state"));
    json_t *info = json_object_get(row, "info");

    if (id == NULL || address == NULL || state == NULL || !json_is_object(info))
        return -EINVAL;
    *n = (struct cluster_node){
        .id = xstrdup(id),
        .address = xstrdup(address),
        .self = self_id != NULL && strcmp(id, self_id) == 0,
        .started_ms = json_integer_value(json_object_get(row, "started_ms")),
        .seen_ms = json_integer_value(json_object_get(row, "seen_ms")),
        .info = json_incref(info),
    };
    n->seen_ago_ms = now_ms > n->seen_ms ? now_ms - n->seen_ms : 0;
    if (n->self) {
        n->state = CLUSTER_NODE_UP; /* this process runs, whatever its last write managed */
    } else if (strcmp(state, "left") == 0) {
        char when[32];
        iso_utc(n->seen_ms, when, sizeof(when));
        n->state = CLUSTER_NODE_LEFT;
        snprintf(n->reason, sizeof(n->reason), "stopped cleanly at %s", when);
    } else if (n->seen_ago_ms > down_after_ms) {
        n->state = CLUSTER_NODE_DOWN;
        cluster_down_reason(n->seen_ago_ms, n->seen_ms, n->reason, sizeof(n->reason));
    } else {
        n->state = CLUSTER_NODE_UP;
    }
    return 0;
}

int cluster_view_parse(const char *json, size_t len, const char *self_id, int64_t down_after_ms,
                       struct cluster_view *out)
{
    json_t *list = json_loadb(json, len, 0, NULL);
    json_t *data = json_object_get(list, "data");
    json_t *row;
    size_t i;
    int rc = 0;

    *out = (struct cluster_view){0};
    if (!json_is_array(data) || !json_is_integer(json_object_get(list, "now_ms"))) {
        json_decref(list);
        return -EINVAL;
    }
    out->now_ms = json_integer_value(json_object_get(list, "now_ms"));
    out->nodes = xcalloc(json_array_size(data) + 1, sizeof(*out->nodes));
    json_array_foreach(data, i, row)
    {
        rc = parse_node(row, out->now_ms, self_id, down_after_ms, &out->nodes[out->n]);
        if (rc != 0)
            break;
        out->n++;
    }
    json_decref(list);
    if (rc != 0)
        cluster_view_cleanup(out);
    return rc;
}

void cluster_view_cleanup(struct cluster_view *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->nodes[i].id);
        free(v->nodes[i].address);
        json_decref(v->nodes[i].info);
    }
    free(v->nodes);
    *v = (struct cluster_view){0};
}

const struct cluster_node *cluster_view_find(const struct cluster_view *v, const char *id)
{
    for (size_t i = 0; i < v->n; i++) {
        if (strcmp(v->nodes[i].id, id) == 0)
            return &v->nodes[i];
    }
    return NULL;
}

/* ---- peers ---- */

/* Whether the JSON array of strings list holds s. */
static bool names_have(json_t *list, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

/* A candidate: rank 0 ready, 1 can be started there; load its requests in flight and queued. */
struct candidate {
    const struct cluster_node *node;
    const char *engine;
    int rank;
    int64_t load;
};

static int64_t engine_load(json_t *e)
{
    return json_integer_value(json_object_get(e, "in_flight")) +
           json_integer_value(json_object_get(e, "queued"));
}

/* The best engine of node n for model, into c; false when it has none that can take it. */
static bool best_engine(const struct cluster_node *n, const char *model, struct candidate *c)
{
    json_t *engines = json_object_get(n->info, "engines"), *e;
    int64_t node_load = 0;
    bool found = false;
    size_t i;

    json_array_foreach(engines, i, e)
    {
        const char *state = json_string_value(json_object_get(e, "state"));
        node_load += engine_load(e);
        if (state == NULL || !names_have(json_object_get(e, "models"), model))
            continue;
        bool ready = strcmp(state, "ready") == 0;
        if (strcmp(state, "failed") == 0 ||
            (!ready && !json_is_true(json_object_get(e, "admissible"))))
            continue;
        struct candidate mine = {n, json_string_value(json_object_get(e, "name")), ready ? 0 : 1,
                                 engine_load(e)};
        if (mine.engine == NULL)
            continue;
        if (!found || mine.rank < c->rank || (mine.rank == c->rank && mine.load < c->load))
            *c = mine;
        found = true;
    }
    /* A route of theirs: its engines are theirs to pick; it ranks as one that can be started. */
    if (!found && names_have(json_object_get(n->info, "routes"), model)) {
        *c = (struct candidate){n, model, 1, node_load};
        found = true;
    }
    return found;
}

static int candidate_cmp(const void *a, const void *b)
{
    const struct candidate *x = a, *y = b;

    if (x->rank != y->rank)
        return x->rank - y->rank;
    if (x->load != y->load)
        return x->load < y->load ? -1 : 1;
    return strcmp(x->node->id, y->node->id); /* stable across calls: the same peer first */
}

size_t cluster_view_peers(const struct cluster_view *v, const char *model, struct cluster_peer *out,
                          size_t cap)
{
    struct candidate *c = xcalloc(v->n + 1, sizeof(*c));
    size_t n = 0, written = 0;

    for (size_t i = 0; i < v->n; i++) {
        const struct cluster_node *node = &v->nodes[i];
        if (!node->self && node->state == CLUSTER_NODE_UP && best_engine(node, model, &c[n]))
            n++;
    }
    qsort(c, n, sizeof(*c), candidate_cmp);
    for (; written < n && written < cap; written++) {
        struct cluster_peer *p = &out[written];
        *p = (struct cluster_peer){.ready = c[written].rank == 0};
        snprintf(p->node, sizeof(p->node), "%s", c[written].node->id);
        snprintf(p->url, sizeof(p->url), "%s", c[written].node->address);
        snprintf(p->engine, sizeof(p->engine), "%s", c[written].engine);
    }
    free(c);
    return written;
}

/* ---- models ---- */

/* Appends name to out unless it is there already (out is "a,b,c"). */
static void add_name(struct buf *out, size_t start, const char *name)
{
    size_t n = strlen(name);
    const char *p = buf_cstr(out) + start;

    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0)
            return;
        p = end != NULL ? end + 1 : NULL;
    }
    buf_printf(out, "%s%s", out->len > start ? "," : "", name);
}

static void add_names(struct buf *out, size_t start, json_t *list)
{
    size_t i;
    json_t *v;

    json_array_foreach(list, i, v)
    {
        if (json_is_string(v))
            add_name(out, start, json_string_value(v));
    }
}

void cluster_view_models(const struct cluster_view *v, struct buf *out)
{
    size_t start = out->len;

    for (size_t i = 0; i < v->n; i++) {
        const struct cluster_node *n = &v->nodes[i];
        json_t *e;
        size_t j;
        if (n->self || n->state != CLUSTER_NODE_UP)
            continue;
        json_array_foreach(json_object_get(n->info, "engines"), j, e)
        {
            const char *state = json_string_value(json_object_get(e, "state"));
            if (state == NULL || strcmp(state, "failed") != 0)
                add_names(out, start, json_object_get(e, "models"));
        }
        add_names(out, start, json_object_get(n->info, "routes"));
    }
}

/* ---- changes ---- */

enum cluster_change cluster_view_change(const struct cluster_view *old,
                                        const struct cluster_node *n)
{
    const struct cluster_node *was = old != NULL ? cluster_view_find(old, n->id) : NULL;

    if (was == NULL) {
        /* First seen: up or down is news; a node that left long ago is not. */
        return n->state == CLUSTER_NODE_UP     ? CLUSTER_CHANGE_UP
               : n->state == CLUSTER_NODE_DOWN ? CLUSTER_CHANGE_DOWN
                                               : CLUSTER_CHANGE_NONE;
    }
    if (was->state == n->state) {
        /* Left and back between two reads: it restarted. */
        if (n->state == CLUSTER_NODE_UP && n->started_ms != was->started_ms)
            return CLUSTER_CHANGE_BACK;
        return CLUSTER_CHANGE_NONE;
    }
    switch (n->state) {
    case CLUSTER_NODE_UP:
        return CLUSTER_CHANGE_BACK;
    case CLUSTER_NODE_DOWN:
        return CLUSTER_CHANGE_DOWN;
    case CLUSTER_NODE_LEFT:
        return CLUSTER_CHANGE_LEFT;
    }
    return CLUSTER_CHANGE_NONE;
}

/* ---- GET /v1/nodes ---- */

static json_t *iso_json(int64_t ms)
{
    char s[32];

    if (ms <= 0)
        return json_null();
    iso_utc(ms, s, sizeof(s));
    return json_string(s);
}

/* field of info, or a new empty value made by make() when it is missing or of another type. */
static json_t *info_field(const struct cluster_node *n, const char *field, bool array)
{
    json_t *v = json_object_get(n->info, field);

    if (array)
        return json_is_array(v) ? json_incref(v) : json_array();
    return json_is_object(v) ? json_incref(v) : json_object();
}

json_t *cluster_node_json(const struct cluster_node *n)
{
    json_t *version = json_object_get(n->info, "version");

    return json_pack("{s:s, s:s, s:s, s:s?, s:b, s:o, s:o, s:I, s:O, s:o, s:o}", "id", n->id,
                     "address", n->address, "state", state_names[n->state], "reason",
                     n->reason[0] != '\0' ? n->reason : NULL, "self", n->self, "started_at",
                     iso_json(n->started_ms), "last_seen_at", iso_json(n->seen_ms),
                     "last_seen_ms_ago", (json_int_t)n->seen_ago_ms, "version",
                     json_is_string(version) ? version : json_null(), "engines",
                     info_field(n, "engines", true), "memory", info_field(n, "memory", false));
}
