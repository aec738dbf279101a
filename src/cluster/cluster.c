/*
 * cluster.c: this node among the others (cluster.h): its identity, its row in the store's
 * `nodes` table, the heartbeat that keeps that row fresh and reads everyone's, the leases of
 * its runs and the takeover of runs whose node died. The view of the nodes (up, down, left;
 * peers for a model) is computed by view.c's pure functions over the list read here; GET
 * /v1/nodes is nodes_api.c; the node-to-node requests are peer.c.
 *
 * DESIGN
 * - One timer, the heartbeat, every beat_ms = lease_s * 1000 / 3 clamped to [500 ms, 2 s]
 *   (cluster_int.h says why). Each beat: upsert this node's row (state up, info = engines,
 *   routes, memory), then read every row back and make it the view. A beat whose write or
 *   read is still on its way is skipped, so a slow store never piles heartbeats up.
 * - Down: a node whose row says up but whose seen_ms is more than CLUSTER_DOWN_BEATS beats
 *   behind the store's clock (the list's now_ms: PostgreSQL's clock, so nodes whose clocks
 *   differ agree). Every change (up, down, left, back) is logged once and published as a
 *   `node.state` event.
 * - On a shared store only (PostgreSQL): each beat renews the leases of this node's runs in one
 *   write, and a timer of its own (CLUSTER_SCAN_MS), once the runs set an adopter, claims runs
 *   whose lease ran out (store_runs_claim without restart) and hands them to the adopter,
 *   claiming again at once while a page came back full of others' runs. A run of this node's
 *   whose lease ran out (renewals failed) is claimed back too; it is running here, so it is
 *   left out of what the adopter gets.
 * - cluster_free writes the row as left, so the others see a clean stop at once instead of
 *   waiting for it to look down, and frees once every store callback has come back.
 *
 * Everything runs on the loop thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster_int.h"
#include "core/clock.h"
#include "core/log.h"

#define MODULE "cluster"

/* ---- identity and configuration ---- */

void cluster_resolve_node_id(const struct config *cfg, uint16_t port, char *out, size_t size)
{
    char host[256];

    if (cfg->cluster.node_id != NULL && strcmp(cfg->cluster.node_id, "auto") != 0) {
        snprintf(out, size, "%s", cfg->cluster.node_id);
        return;
    }
    if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    /* hostname:port fits CLUSTER_NODE_ID_MAX: a hostname is at most 64 bytes (HOST_NAME_MAX) */
    snprintf(out, size, "%.120s:%u", host, (unsigned)port);
}

static bool loopback_or_wildcard(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0 || strcmp(host, "0.0.0.0") == 0 ||
           strcmp(host, "::") == 0 || host[0] == '\0';
}

int cluster_check_config(const struct config *cfg, uint16_t port, struct buf *err)
{
    const char *name = cfg->cluster.secret_env;
    const char *secret = getenv(name);

    if (secret == NULL || secret[0] == '\0') {
        buf_printf(err,
                   "cluster: the environment variable %s (cluster.secret_env) is not set; with "
                   "store.url postgres://… the nodes authenticate each other with a shared "
                   "secret of at least %d bytes: set the same value on every node, e.g. "
                   "export %s=$(openssl rand -hex 32)",
                   name, CLUSTER_SECRET_MIN, name);
        return -EINVAL;
    }
    if (strlen(secret) < CLUSTER_SECRET_MIN) {
        buf_printf(err,
                   "cluster: the secret in %s (cluster.secret_env) is %zu bytes; it must be at "
                   "least %d, e.g. export %s=$(openssl rand -hex 32) on every node",
                   name, strlen(secret), CLUSTER_SECRET_MIN, name);
        return -EINVAL;
    }
    /* peer.c sends it in a header and treats anything else as no secret: say so now, not with
     * every node-to-node request refused later. */
    for (const char *p = secret; *p != '\0'; p++) {
        if (*p < 0x21 || *p > 0x7e) {
            buf_printf(err,
                       "cluster: the secret in %s (cluster.secret_env) has a space or a byte "
                       "that is not printable ASCII; it travels in a header: use e.g. "
                       "export %s=$(openssl rand -hex 32) on every node",
                       name, name);
            return -EINVAL;
        }
    }
    if (cfg->cluster.advertise == NULL && loopback_or_wildcard(cfg->listen_host)) {
        buf_printf(err,
                   "cluster.advertise is not set and listen: %s:%u is not an address other "
                   "nodes can reach: set cluster.advertise to this node's URL as the others "
                   "reach it (e.g. cluster.advertise: http://10.0.0.5:%u), or listen on that "
                   "address",
                   cfg->listen_host, (unsigned)port, (unsigned)port);
        return -EINVAL;
    }
    return 0;
}

/* advertise, or scheme://listen_host:port (an IPv6 host in brackets). */
static void resolve_address(const struct config *cfg, uint16_t port, char *out, size_t size)
{
    const char *host = cfg->listen_host;
    bool v6 = strchr(host, ':') != NULL;
    size_t n;

    if (cfg->cluster.advertise != NULL) {
        snprintf(out, size, "%s", cfg->cluster.advertise);
        n = strlen(out);
        while (n > 0 && out[n - 1] == '/')
            out[--n] = '\0'; /* base URLs have no trailing slash: paths are appended */
        return;
    }
    snprintf(out, size, "%s://%s%s%s:%u", cfg->tls.mode == CONFIG_TLS_ON ? "https" : "http",
             v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)port);
}

/* ---- the node's info ---- */

/* Whether a request routed here for e could be served: it runs (or is on its way), or it may
 * be started and its declared memory fits this node's envelope. Failed engines and start:
 * manual ones that are stopped cannot (a request never starts those). */
static bool engine_admissible(const struct engine *e, const struct supervisor_node_use *u)
{
    const struct config_engine *c = engine_config(e);

    switch (engine_state(e)) {
    case ENGINE_FAILED:
        return false;
    case ENGINE_STOPPED:
    case ENGINE_STOPPING:
        break;
    default:
        return true;
    }
    if (c->start == CONFIG_START_MANUAL)
        return false;
    if (engine_backend(e) == CONFIG_BACKEND_REMOTE)
        return true;
    /* An envelope not measured yet (before the first sample) is not held against it. */
    return (!u->ram_known || c->memory.ram_mb <= u->ram_envelope_mb) &&
           (!u->vram_known || c->memory.vram_mb <= u->vram_envelope_mb);
}

static json_t *engine_info(const struct engine *e, const struct supervisor_node_use *u)
{
    json_t *full = engine_to_json(e), *mem = json_object_get(full, "memory");
    json_t *j = json_pack(
        "{s:O, s:O, s:O, s:O, s:{s:O, s:O}, s:O, s:O, s:b}", "name", json_object_get(full, "name"),
        "state", json_object_get(full, "state"), "models", json_object_get(full, "models"),
        "backend", json_object_get(full, "backend"), "memory", "declared_ram_mb",
        json_object_get(mem, "declared_ram_mb"), "declared_vram_mb",
        json_object_get(mem, "declared_vram_mb"), "in_flight", json_object_get(full, "in_flight"),
        "queued", json_object_get(full, "queued"), "admissible", engine_admissible(e, u));

    json_decref(full);
    ASSERT(j != NULL); /* engine_to_json has every field */
    return j;
}

static json_t *mb_or_null(bool known, uint64_t mb)
{
    return known ? json_integer((json_int_t)mb) : json_null();
}

/* One side of the envelope as GET /v1/node shows it, plus free: what admission can still give
 * to engines (the envelope less what the running ones declared). */
static json_t *envelope_json(bool known, uint64_t total, uint64_t envelope, uint64_t declared,
                             uint64_t used)
{
    return json_pack("{s:o, s:I, s:I, s:o, s:I}", "total", mb_or_null(known, total), "envelope",
                     (json_int_t)envelope, "declared", (json_int_t)declared, "used",
                     mb_or_null(known, used), "free",
                     (json_int_t)(envelope > declared ? envelope - declared : 0));
}

json_t *cluster_info(const struct cluster *cl)
{
    struct supervisor_node_use u = {0};
    json_t *engines = json_array(), *routes = json_array();

    if (cl->sup != NULL) {
        supervisor_node_use(cl->sup, &u);
        for (size_t i = 0; i < supervisor_count(cl->sup); i++)
            json_array_append_new(engines, engine_info(supervisor_engine_at(cl->sup, i), &u));
    }
    for (size_t i = 0; i < cl->cfg->nroutes; i++)
        json_array_append_new(routes, json_string(cl->cfg->routes[i].name));
    return json_pack("{s:s, s:o, s:o, s:{s:o, s:o}}", "version", ARUN_VERSION, "engines", engines,
                     "routes", routes, "memory", "ram_mb",
                     envelope_json(u.ram_known, u.ram_total_mb, u.ram_envelope_mb,
                                   u.ram_declared_mb, u.ram_used_mb),
                     "vram_mb",
                     envelope_json(u.vram_known, u.vram_total_mb, u.vram_envelope_mb,
                                   u.vram_declared_mb, u.vram_used_mb));
}

/* ---- freeing once the store has answered ---- */

static void maybe_free(struct cluster *cl)
{
    if (!cl->closing || cl->timers_open > 0 || cl->pending > 0)
        return;
    cluster_view_cleanup(&cl->view);
    free(cl);
}

/* Every store callback starts with this: false when the cluster is closing (the callback then
 * does nothing more, and the last one frees). */
static bool answered(struct cluster *cl)
{
    ASSERT(cl->pending > 0);
    cl->pending--;
    if (!cl->closing)
        return true;
    maybe_free(cl);
    return false;
}

/* ---- the view: changes, logged and published ---- */

static void announce(struct cluster *cl, const struct cluster_node *n, enum cluster_change c)
{
    switch (c) {
    case CLUSTER_CHANGE_NONE:
        return;
    case CLUSTER_CHANGE_UP:
        log_info(MODULE, "node %s is up (%s)%s", n->id, n->address, n->self ? ": this node" : "");
        break;
    case CLUSTER_CHANGE_BACK:
        log_info(MODULE, "node %s is back (%s)", n->id, n->address);
        break;
    case CLUSTER_CHANGE_DOWN:
        log_warn(MODULE,
                 "node %s is down: %s; its runs move to other nodes once their leases "
                 "run out",
                 n->id, n->reason);
        break;
    case CLUSTER_CHANGE_LEFT:
        log_info(MODULE, "node %s left: %s", n->id, n->reason);
        break;
    }
    if (cl->events != NULL)
        events_publish(cl->events, "node.state",
                       json_pack("{s:s, s:s, s:s, s:s?, s:s}", "node", n->id, "state",
                                 cluster_node_state_name(n->state), "change",
                                 cluster_change_name(c), "reason",
                                 n->reason[0] != '\0' ? n->reason : NULL, "address", n->address));
}

/* A node that was in the last view and is not in this one was forgotten (store_nodes_forget):
 * nothing to say. */
static void take_view(struct cluster *cl, struct cluster_view *next)
{
    for (size_t i = 0; i < next->n; i++)
        announce(cl, &next->nodes[i],
                 cluster_view_change(cl->have_view ? &cl->view : NULL, &next->nodes[i]));
    cluster_view_cleanup(&cl->view);
    cl->view = *next;
    cl->have_view = true;
}

static void list_cb(int status, const char *value, size_t len, void *arg)
{
    struct cluster *cl = arg;
    struct cluster_view next;

    if (!answered(cl))
        return;
    cl->beat_busy = false;
    if (status != 0) {
        log_warn_errno(MODULE, status,
                       "cannot read the nodes from the store; the view of the "
                       "other nodes stays as it was");
        return;
    }
    if (cluster_view_parse(value, len, cl->node_id, cl->down_after_ms, &next) != 0) {
        log_warn(MODULE, "the store's list of nodes is not what this arun expects; ignored");
        return;
    }
    take_view(cl, &next);
}

/* ---- the heartbeat ---- */

static void put_cb(int status, void *arg)
{
    struct cluster *cl = arg;

    if (!answered(cl))
        return;
    if (status != 0 && !cl->put_failing)
        log_warn_errno(MODULE, status,
                       "cannot write this node's heartbeat (node %s); other nodes will see it "
                       "down after %lld ms without one",
                       cl->node_id, (long long)cl->down_after_ms);
    else if (status == 0 && cl->put_failing)
        log_info(MODULE, "this node's heartbeat is written again (node %s)", cl->node_id);
    cl->put_failing = status != 0;
    int rc = store_nodes_list(cl->store, clock_wall_ms(), list_cb, cl);
    if (rc == 0)
        cl->pending++;
    else
        cl->beat_busy = false;
}

/* Writes this node's row with state and its current info. */
static int put_row(struct cluster *cl, const char *state, store_write_cb cb)
{
    json_t *info = cluster_info(cl);
    char *text = json_dumps(info, JSON_COMPACT);
    struct store_node n = {.id = cl->node_id,
                           .address = cl->address,
                           .state = state,
                           .started_ms = cl->started_ms,
                           .info = text,
                           .info_len = strlen(text)};
    int rc = store_node_put(cl->store, &n, clock_wall_ms(), cb, cl);

    if (rc == 0)
        cl->pending++;
    free(text);
    json_decref(info);
    return rc;
}

static void renew_cb(int status, const char *value, size_t len, void *arg)
{
    struct cluster *cl = arg;

    if (!answered(cl))
        return;
    cl->renewing = false;
    if (status != 0)
        log_warn_errno(MODULE, status,
                       "cannot renew the leases of this node's runs; if that lasts %u s other "
                       "nodes take them over",
                       cl->cfg->cluster.lease_s);
}

static void renew(struct cluster *cl)
{
    if (cl->renewing)
        return;
    if (store_leases_renew(cl->store, clock_wall_ms(), renew_cb, cl) == 0) {
        cl->pending++;
        cl->renewing = true;
    }
}

static void claim(struct cluster *cl);

/* The claimed rows another node owned (or nobody), as a JSON array text (NULL when none); *n
 * of them. */
static char *others_rows(const struct cluster *cl, json_t *rows, size_t *n)
{
    json_t *out = json_array(), *row;
    size_t i;

    json_array_foreach(rows, i, row)
    {
        const char *node = json_string_value(json_object_get(row, "node"));
        if (node == NULL || strcmp(node, cl->node_id) != 0)
            json_array_append(out, row);
    }
    *n = json_array_size(out);
    char *text = *n > 0 ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    return text;
}

static void claim_cb(int status, const char *value, size_t len, void *arg)
{
    struct cluster *cl = arg;
    size_t n = 0;

    if (!answered(cl))
        return;
    cl->claiming = false;
    if (status != 0) {
        log_warn_errno(MODULE, status,
                       "the takeover scan could not claim runs; it tries again "
                       "in %lld ms",
                       (long long)CLUSTER_SCAN_MS);
        return;
    }
    json_t *rows = json_loadb(value, len, 0, NULL);
    size_t total = json_array_size(rows);
    char *others = others_rows(cl, rows, &n);
    json_decref(rows);
    if (others != NULL && cl->adopt != NULL) {
        log_info(MODULE, "took over %zu run(s) whose node stopped renewing their lease", n);
        cl->adopt(others, strlen(others), cl->adopt_arg);
    }
    free(others);
    /* A full page of others' runs: more may be waiting. One of only our own would come back
     * the same, so it is not asked again. */
    if (total == CLUSTER_CLAIM_PAGE && n > 0)
        claim(cl);
}

static void claim(struct cluster *cl)
{
    if (cl->claiming || cl->closing || cl->adopt == NULL)
        return;
    if (store_runs_claim(cl->store, clock_wall_ms(), false, CLUSTER_CLAIM_PAGE, claim_cb, cl) ==
        0) {
        cl->pending++;
        cl->claiming = true;
    }
}

static void forget_cb(int status, void *arg)
{
    struct cluster *cl = arg;

    if (answered(cl) && status != 0)
        log_warn_errno(MODULE, status, "cannot remove the rows of long-gone nodes");
}

/* Once an hour: the rows of nodes unseen for CLUSTER_FORGET_MS (on the store's clock). */
static void forget(struct cluster *cl)
{
    uint64_t now = clock_mono_ms();

    if (!cl->have_view ||
        (cl->forgot_at_ms != 0 && now - cl->forgot_at_ms < CLUSTER_FORGET_EVERY_MS))
        return;
    cl->forgot_at_ms = now;
    if (store_nodes_forget(cl->store, cl->view.now_ms - CLUSTER_FORGET_MS, forget_cb, cl) == 0)
        cl->pending++;
}

static void beat(struct cluster *cl)
{
    cl->beats++;
    if (cl->shared)
        renew(cl);
    forget(cl);
    if (cl->beat_busy) {
        log_debug(MODULE, "the last heartbeat is still on its way; this one is skipped");
        return;
    }
    int rc = put_row(cl, "up", put_cb);
    if (rc == 0)
        cl->beat_busy = true;
    else
        log_warn_errno(MODULE, rc, "the store refused this node's heartbeat");
}

static void timer_cb(uv_timer_t *t)
{
    beat(t->data);
}

static void scan_cb(uv_timer_t *t)
{
    claim(t->data);
}

/* ---- life ---- */

int64_t cluster_beat_ms(uint32_t lease_s)
{
    int64_t ms = (int64_t)lease_s * 1000 / 3;

    if (ms < CLUSTER_BEAT_MIN_MS)
        ms = CLUSTER_BEAT_MIN_MS;
    if (ms > CLUSTER_BEAT_MAX_MS)
        ms = CLUSTER_BEAT_MAX_MS;
    return ms;
}

struct cluster *cluster_new(const struct cluster_options *o, uint16_t port)
{
    struct cluster *cl = xcalloc(1, sizeof(*cl));

    *cl = (struct cluster){.loop = o->loop,
                           .cfg = o->cfg,
                           .store = o->store,
                           .sup = o->sup,
                           .httpc = o->httpc,
                           .events = o->events,
                           .shared = store_shared(o->store),
                           .started_ms = clock_wall_ms(),
                           .beat_ms = cluster_beat_ms(o->cfg->cluster.lease_s)};
    cl->down_after_ms = cl->beat_ms * CLUSTER_DOWN_BEATS;
    /* The store's id is the one runs are written with: the same, by construction. */
    snprintf(cl->node_id, sizeof(cl->node_id), "%s", store_node_id(o->store));
    resolve_address(o->cfg, port, cl->address, sizeof(cl->address));
    if (o->srv != NULL)
        cluster_nodes_api_register(o->srv, cl);
    uv_timer_init(o->loop, &cl->timer);
    cl->timer.data = cl;
    uv_timer_start(&cl->timer, timer_cb, (uint64_t)cl->beat_ms, (uint64_t)cl->beat_ms);
    uv_timer_init(o->loop, &cl->scan);
    cl->scan.data = cl;
    cl->timers_open = 2;
    if (cl->shared)
        uv_timer_start(&cl->scan, scan_cb, CLUSTER_SCAN_MS, CLUSTER_SCAN_MS);
    log_info(MODULE, "node %s at %s: heartbeat every %lld ms, down after %lld ms without one%s",
             cl->node_id, cl->address, (long long)cl->beat_ms, (long long)cl->down_after_ms,
             cl->shared ? "; leases renewed and dead nodes' runs taken over" : " (one node)");
    beat(cl); /* registers the row now, not one period later */
    return cl;
}

static void left_cb(int status, void *arg)
{
    struct cluster *cl = arg;

    if (status != 0)
        log_warn_errno(MODULE, status,
                       "cannot write that node %s left; the others see it down after %lld ms",
                       cl->node_id, (long long)cl->down_after_ms);
    IGNORE_RESULT(answered(cl));
}

static void timer_close_cb(uv_handle_t *h)
{
    struct cluster *cl = h->data;

    cl->timers_open--;
    maybe_free(cl);
}

void cluster_free(struct cluster *cl)
{
    if (cl == NULL)
        return;
    ASSERT(!cl->closing);
    int rc = put_row(cl, "left", left_cb);
    if (rc != 0)
        log_warn_errno(MODULE, rc, "cannot write that node %s left", cl->node_id);
    cl->closing = true;
    cl->sup = NULL; /* freed after this: nothing reads it again */
    uv_close((uv_handle_t *)&cl->timer, timer_close_cb);
    uv_close((uv_handle_t *)&cl->scan, timer_close_cb);
}

/* ---- queries ---- */

const char *cluster_node_id(const struct cluster *cl)
{
    return cl->node_id;
}

const struct config *cluster_config(const struct cluster *cl)
{
    return cl->cfg;
}

struct httpc *cluster_httpc(const struct cluster *cl)
{
    return cl->httpc;
}

const char *cluster_address(const struct cluster *cl)
{
    return cl->address;
}

bool cluster_shared(const struct cluster *cl)
{
    return cl->shared;
}

size_t cluster_peers_for(const struct cluster *cl, const char *model, struct cluster_peer *out,
                         size_t cap)
{
    return cluster_view_peers(&cl->view, model, out, cap);
}

void cluster_models(const struct cluster *cl, struct buf *out)
{
    cluster_view_models(&cl->view, out);
}

const char *cluster_node_url(const struct cluster *cl, const char *node)
{
    const struct cluster_node *n = cluster_view_find(&cl->view, node);

    return n != NULL && n->state == CLUSTER_NODE_UP ? n->address : NULL;
}

void cluster_set_adopter(struct cluster *cl, cluster_adopt_cb cb, void *arg)
{
    cl->adopt = cb;
    cl->adopt_arg = arg;
}
