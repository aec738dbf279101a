/*
 * serve.c: `arun serve`. See serve.h.
 *
 * Start-up order: config (refuse to start on any error, exit 2; with store.url postgres://
 * also what a cluster needs: cluster_check_config), then the store, opened as this node
 * (cluster_resolve_node_id) with its lease (it takes the data_dir lock, so a second arun on
 * the same data stops here), then the HTTP server and its routes, then this node's row and
 * heartbeat (cluster_new), then signals. Nothing blocks after uv_run starts.
 *
 * SIGHUP reloads the TLS certificate and key (tls: in the config) without dropping a connection:
 * the files are read in a worker, and a good pair is swapped in for new connections; a bad one
 * is logged and the certificate in use stays. Nothing else is reloaded by it.
 *
 * Shutdown: the first SIGTERM or SIGINT drains the server (http_server_shutdown); when it is
 * drained, the runtime API, the server, the store and the signal handlers close, and uv_run
 * returns once the last handle has closed, so every byte is freed and uv_loop_close succeeds.
 * A second signal exits at once.
 */
#include "serve.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/events.h"
#include "core/log.h"
#include "core/metrics.h"
#include "engines/api.h"
#include "engines/supervisor.h"
#include "gateway/gateway.h"
#include "gateway/warm.h"
#include "http/assets.h"
#include "http/httpc.h"
#include "http/runtime_api.h"
#include "http/server.h"
#include "http/tls.h"
#include "runs/api.h"
#include "runs/conversations.h"
#include "runs/recovery.h"
#include "runs/run.h"
#include "runs/sweep.h"
#include "store/store.h"
#include "tenancy/auth.h"
#include "tenancy/keys.h"
#include "tenancy/keys_api.h"
#include "tenancy/limits.h"
#include "tenancy/audit.h"

const char serve_usage[] =
    "usage: arun serve [--config FILE] [--listen HOST:PORT]\n"
    "\n"
    "Runs the arun daemon in the foreground; logs are JSON lines on stderr.\n"
    "\n"
    "  --config FILE       configuration file (default: $ARUN_CONFIG, else ./arun.yaml if it\n"
    "                      exists, else the embedded defaults)\n"
    "  --listen HOST:PORT  overrides `listen:` from the config (e.g. 127.0.0.1:9090)\n"
    "\n"
    "SIGHUP reloads the TLS certificate and key named by tls: (a renewed certificate) for new\n"
    "connections; open connections keep theirs.\n"
    "SIGTERM or SIGINT drains in-flight requests (up to 10 s), stops every engine (each within\n"
    "its stop_timeout_s) and exits 0; a second signal exits at once, leaving engines running\n"
    "for the next arun to adopt.\n";

struct daemon {
    uv_loop_t loop;
    struct config *cfg;
    struct metrics *metrics;
    struct events *events;
    struct store *store;
    struct http_server *srv;
    struct audit *audit; /* the audit trail: pass it to whatever records admin actions */
    struct runtime_api *api;
    struct httpc *httpc;
    struct supervisor *sup;
    struct engines_api *engines_api;
    struct gateway *gateway;
    struct warm *warm;
    struct runs *runs;
    struct runs_api *runs_api;
    struct sweep *sweep;
    struct cluster *cluster; /* this node's row, heartbeat, leases, view of the others */
    struct keys *keys;
    struct keys_api *keys_api;
    struct auth *auth;     /* auth.mode keys only */
    int keys_loaded;       /* 0 loading, 1 loaded, -errno failed */
    struct limits *limits; /* auth.mode keys only; NULL: no limits */
    int limits_loaded;     /* 0 loading, 1 loaded, -errno failed (limits.c logs it) */
    bool http_drained;
    bool engines_stopped;
    uv_signal_t sigterm, sigint, sighup;
    int signals_seen;
    SSL_CTX *tls; /* loaded at start, until start_http hands it to the server */
};

static bool store_ready_check(void *arg, struct buf *why)
{
    struct store *st = arg;
    if (store_ready(st))
        return true;
    buf_puts(why, store_status(st)); /* a short sentence (STORE_WHY_MAX): it fits */
    return false;
}

/* Frees the modules in the one order that is safe: users before what they use (the gateway
 * and the engines API hold supervisor waiters; the supervisor holds httpc probes and store
 * reads). Each pointer is cleared, so it can run after a partial start-up too. */
static void close_modules(struct daemon *d)
{
    /* First: its last write says this node left, with the engines as they are now (the
     * supervisor is still there to ask), and it reaches the store before it closes. */
    cluster_free(d->cluster);
    d->cluster = NULL;
    sweep_free(d->sweep);
    d->sweep = NULL;
    runs_api_free(d->runs_api); /* the runs hold gateway calls and store ops */
    d->runs_api = NULL;
    runs_free(d->runs);
    d->runs = NULL;
    warm_free(d->warm);
    d->warm = NULL;
    gateway_free(d->gateway);
    d->gateway = NULL;
    engines_api_free(d->engines_api);
    d->engines_api = NULL;
    runtime_api_free(d->api);
    d->api = NULL;
    keys_api_free(d->keys_api);
    d->keys_api = NULL;
    http_server_free(d->srv);
    d->srv = NULL;
    auth_free(d->auth);
    d->auth = NULL;
    limits_free(d->limits); /* after the requests that hold its slots; its writes go first */
    d->limits = NULL;
    keys_free(d->keys); /* its last writes go to the store before it closes */
    d->keys = NULL;
    supervisor_free(d->sup);
    d->sup = NULL;
    httpc_free(d->httpc);
    d->httpc = NULL;
    audit_free(d->audit); /* its last events still reach the store, closed next */
    d->audit = NULL;
    if (d->store != NULL)
        store_close(d->store);
    d->store = NULL;
}

/* Runs when both the HTTP drain and the engines' stop are over: closes the rest. */
static void maybe_close(struct daemon *d)
{
    if (!d->http_drained || !d->engines_stopped)
        return;
    log_info("serve", "drained and engines stopped; closing the store");
    close_modules(d);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
}

static void drained_cb(struct http_server *srv, bool forced, void *arg)
{
    struct daemon *d = arg;
    if (forced && http_server_connections(srv) > 0) {
        log_warn("serve", "exiting with %zu connections still open", http_server_connections(srv));
        log_flush(); /* _exit runs no atexit handler */
        _exit(0);    /* a SIGTERM drain ends in 0 (contract); the warning says what was cut */
    }
    d->http_drained = true;
    maybe_close(d);
}

static void engines_stopped_cb(void *arg)
{
    struct daemon *d = arg;
    d->engines_stopped = true;
    maybe_close(d);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (++d->signals_seen > 1) {
        log_warn("serve", "second signal (%s): exiting now without draining", strsignal(signum));
        log_flush(); /* _exit runs no atexit handler */
        _exit(1);
    }
    log_info("serve", "%s: draining and stopping engines (send it again to exit at once)",
             strsignal(signum));
    http_server_shutdown(d->srv, drained_cb, d);
    supervisor_shutdown(d->sup, engines_stopped_cb, d);
}

/* ---- TLS ---- */

/* Each reload is logged and audited (action tls.reload, target the certificate file, actor
 * arun): which certificate new connections get, or why the one in use stays. */
static void tls_reloaded_cb(SSL_CTX *ctx, const char *err, void *arg)
{
    struct daemon *d = arg;
    if (d->srv == NULL || http_server_draining(d->srv)) {
        SSL_CTX_free(ctx); /* stopping: no connection will be accepted with it */
        return;
    }
    char old_serial[TLS_SERIAL_MAX];
    struct buf what;
    buf_init(&what, TLS_ERR_MAX);
    tls_ctx_describe(http_server_tls_ctx(d->srv), &what);
    tls_ctx_serial(http_server_tls_ctx(d->srv), old_serial);
    if (ctx == NULL) {
        log_error("tls", "reload on SIGHUP failed; still serving the previous certificate (%s): %s",
                  buf_cstr(&what), err);
        audit_system(d->audit, "tls.reload", d->cfg->tls.cert, "failed",
                     json_pack("{s:s, s:s}", "reason", err, "serial_in_use", old_serial));
        buf_cleanup(&what);
        return;
    }
    char serial[TLS_SERIAL_MAX];
    tls_ctx_serial(ctx, serial);
    buf_reset(&what);
    tls_ctx_describe(ctx, &what);
    http_server_set_tls(d->srv, ctx);
    log_info("tls",
             "reloaded on SIGHUP: new connections get %s (from %s); open connections keep the "
             "previous certificate (serial %s) until they close",
             buf_cstr(&what), d->cfg->tls.cert, old_serial);
    audit_system(d->audit, "tls.reload", d->cfg->tls.cert, "ok",
                 json_pack("{s:s, s:s, s:s}", "serial", serial, "previous_serial", old_serial,
                           "certificate", buf_cstr(&what)));
    buf_cleanup(&what);
}

static void sighup_cb(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (d->cfg->tls.mode != CONFIG_TLS_ON) {
        log_info("serve", "SIGHUP: nothing to reload (no tls: certificate in %s)",
                 d->cfg->path ? d->cfg->path : "the embedded defaults");
        return;
    }
    if (http_server_draining(d->srv))
        return;
    log_info("tls", "SIGHUP: reloading the certificate %s and key %s", d->cfg->tls.cert,
             d->cfg->tls.key);
    int rc = tls_ctx_load_async(&d->loop, d->cfg->tls.cert, d->cfg->tls.key, tls_reloaded_cb, d);
    if (rc != 0)
        log_error_errno("tls", rc, "SIGHUP: cannot start the reload; the certificate in use stays");
}

/* Loads the certificate and key before anything else starts, so a bad file stops arun as a
 * config error does (exit 2), with the sentence naming the file. */
static int load_tls(struct daemon *d)
{
    if (d->cfg->tls.mode != CONFIG_TLS_ON)
        return 0;
    struct buf err, what;
    buf_init(&err, TLS_ERR_MAX);
    int rc = tls_ctx_load(d->cfg->tls.cert, d->cfg->tls.key, &d->tls, &err);
    if (rc != 0) {
        fprintf(stderr, "arun: %s; not starting\n", buf_cstr(&err));
        buf_cleanup(&err);
        return 2;
    }
    buf_cleanup(&err);
    buf_init(&what, TLS_ERR_MAX);
    tls_ctx_describe(d->tls, &what);
    log_info("tls", "serving %s (cert: %s, key: %s)", buf_cstr(&what), d->cfg->tls.cert,
             d->cfg->tls.key);
    struct stat st;
    if (stat(d->cfg->tls.key, &st) == 0 && (st.st_mode & S_IROTH) != 0)
        log_warn("tls",
                 "tls.key: %s is readable by every user of this machine (mode %04o); "
                 "chmod 600 it (or 640 with a group only arun is in)",
                 d->cfg->tls.key, (unsigned)(st.st_mode & 07777));
    buf_cleanup(&what);
    return 0;
}

/* Loads the config named by flags or the environment. Returns 0, or 2 after printing why. */
static int load_config(const char *flag_path, const char *listen, struct config **out)
{
    bool explicit_path = false;
    const char *path = config_pick_path(flag_path, &explicit_path);
    struct buf err;
    buf_init(&err, 64 * 1024);
    int rc = 0;
    if (path == NULL) {
        *out = config_default();
    } else if (config_load(path, out, &err) != 0) {
        fprintf(stderr, "%sarun: %s has errors; not starting\n", buf_cstr(&err), path);
        rc = 2;
    }
    if (rc == 0 && listen != NULL) {
        char *host;
        uint16_t port;
        if (config_parse_listen(listen, &host, &port) != 0) {
            fprintf(stderr, "arun: --listen %s: expected HOST:PORT, e.g. 127.0.0.1:8080\n", listen);
            config_free(*out);
            rc = 2;
        } else {
            free((*out)->listen_host);
            (*out)->listen_host = host;
            (*out)->listen_port = port;
        }
    }
    buf_cleanup(&err);
    return rc;
}

static bool loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* Refuses what would serve without the protection the config asks for (contract 2 and 6):
 * beyond loopback, TLS unless `tls: off` is written (then a warning at every start);
 * auth.mode: none is for loopback only. */
static int check_exposure(const struct config *cfg)
{
    if (!loopback(cfg->listen_host) && cfg->tls.mode == CONFIG_TLS_UNSET) {
        fprintf(stderr,
                "arun: listen: %s is not a loopback address and tls: is not set: API keys, "
                "prompts and answers would cross the network in plain text. Add tls: {cert: "
                "FILE, key: FILE} to the config, or write tls: off if a proxy in front of arun "
                "terminates TLS\n",
                cfg->listen_host);
        return 2;
    }
    if (!loopback(cfg->listen_host) && cfg->tls.mode == CONFIG_TLS_OFF)
        log_warn("serve",
                 "listen: %s is not a loopback address and tls: off is set: arun serves plain "
                 "HTTP, so API keys, prompts and answers cross the network unencrypted unless "
                 "a proxy in front of it terminates TLS",
                 cfg->listen_host);
    if (cfg->auth.mode == CONFIG_AUTH_NONE && !loopback(cfg->listen_host)) {
        fprintf(stderr,
                "arun: listen: %s is not a loopback address and auth.mode is none: anyone "
                "who can reach this machine could use it. Listen on 127.0.0.1 (or ::1) "
                "and put a proxy with authentication in front\n",
                cfg->listen_host);
        return 2;
    }
    return 0;
}

/* A store shared by several nodes (postgres://) needs what cluster_check_config checks before
 * anything starts: exit 2 with its sentence, as for a config error. */
static bool postgres_url(const char *url)
{
    return url != NULL &&
           (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0);
}

static int open_store(struct daemon *d)
{
    char node_id[CLUSTER_NODE_ID_MAX + 1];
    struct buf err;
    buf_init(&err, 4096);
    if (postgres_url(d->cfg->store.url) &&
        cluster_check_config(d->cfg, d->cfg->listen_port, &err) != 0) {
        fprintf(stderr, "arun: %s; not starting\n", buf_cstr(&err));
        buf_cleanup(&err);
        return 2;
    }
    /* The configured port, not the one bound: the id is needed before the store opens (its
     * runs are written with it), and it stays the same across restarts. */
    cluster_resolve_node_id(d->cfg, d->cfg->listen_port, node_id, sizeof(node_id));
    /* The backend reads the URL (sqlite, postgres://); it never echoes a password. */
    struct store_options so = {.url = d->cfg->store.url,
                               .data_dir = d->cfg->data_dir,
                               .synchronous = d->cfg->store.synchronous,
                               .metrics = d->metrics,
                               .node_id = node_id,
                               .lease_ms = (int64_t)d->cfg->cluster.lease_s * 1000};
    int rc = store_open(&d->loop, &so, &d->store, &err);
    if (rc != 0)
        log_error("serve", "cannot open the store: %s", buf_cstr(&err));
    buf_cleanup(&err);
    return rc == 0 ? 0 : 1;
}

static void limits_loaded_cb(int status, void *arg)
{
    struct daemon *d = arg;
    d->limits_loaded = status == 0 ? 1 : status;
}

/* Limits per tenant come with keys (contract 2): without them every request is the one tenant
 * "default", the machine's owner on loopback, and nothing is limited. Today's output-token
 * counts are read before anything is served, so that a restart never lets a tenant start its
 * day again; the store answers in milliseconds and the loop runs only for that answer. A read
 * that fails is logged (limits.c) and the counts start from zero. */
static void load_limits(struct daemon *d)
{
    if (d->cfg->auth.mode != CONFIG_AUTH_KEYS)
        return;
    d->limits = limits_new(&d->loop, d->cfg, d->store, d->metrics);
    int rc = limits_load(d->limits, limits_loaded_cb, d);
    while (rc == 0 && d->limits_loaded == 0)
        uv_run(&d->loop, UV_RUN_ONCE);
    if (rc != 0)
        log_error_errno("serve", rc,
                        "the store refused the read of today's output-token counts; each "
                        "tenant's output_tokens_per_day counts from zero until midnight UTC");
}

static void keys_loaded_cb(int status, void *arg)
{
    struct daemon *d = arg;
    d->keys_loaded = status == 0 ? 1 : status;
}

/* Reads the API keys into memory before anything is served, so the first request with a valid
 * key is let in. The store answers in milliseconds; the loop runs only for that answer. */
static int load_keys(struct daemon *d)
{
    d->keys = keys_new(d->store);
    int rc = keys_load(d->keys, keys_loaded_cb, d);
    while (rc == 0 && d->keys_loaded == 0)
        uv_run(&d->loop, UV_RUN_ONCE);
    if (rc == 0 && d->keys_loaded < 0)
        rc = d->keys_loaded;
    if (rc != 0) {
        log_error_errno("serve", rc, "cannot read the API keys from the store; not starting");
        return 1;
    }
    /* Other nodes create and revoke keys too: their changes must take effect here at once. */
    if (store_shared(d->store) && keys_follow(d->keys, &d->loop) != 0)
        log_warn("serve", "cannot listen for key changes of other nodes; keys created or revoked "
                          "there take effect here after a restart");
    if (d->cfg->auth.mode == CONFIG_AUTH_KEYS) {
        d->auth = auth_new(d->keys, d->limits, d->audit);
        if (keys_count(d->keys) == 0)
            log_warn("serve", "auth.mode is keys and no API key exists yet: make the first with "
                              "`arun keys create --tenant NAME --role admin` (it works while "
                              "arun runs)");
    }
    return 0;
}

/* The owner-only socket of the keys verbs; without it arun still serves (over TCP only). */
static void listen_local(struct daemon *d)
{
    char *path = xasprintf("%s/%s", d->cfg->data_dir, HTTP_LOCAL_SOCKET);
    struct buf err;
    buf_init(&err, 4096);
    if (http_server_listen_local(d->srv, path, &err) == 0)
        log_info("serve", "owner-only socket %s: `arun keys` on this machine acts through it",
                 path);
    else
        log_warn("serve",
                 "serving without the local socket: %s (`arun keys` then works only "
                 "over HTTP with an admin key, or with arun stopped)",
                 buf_cstr(&err));
    buf_cleanup(&err);
    free(path);
}

/* This node's row and heartbeat, once the supervisor (its engines go in the row) and the server
 * (GET /v1/nodes; the port actually bound is the address's) exist. */
static void start_cluster(struct daemon *d)
{
    struct cluster_options co = {.loop = &d->loop,
                                 .cfg = d->cfg,
                                 .store = d->store,
                                 .sup = d->sup,
                                 .srv = d->srv,
                                 .httpc = d->httpc,
                                 .events = d->events,
                                 .metrics = d->metrics};
    d->cluster = cluster_new(&co, http_server_port(d->srv));
    /* A model with no local engine or route goes to a peer; other nodes' requests are let in
     * with the cluster secret; runs claimed from dead nodes go to recovery; a cancel of a run
     * another node owns is forwarded there. */
    gateway_set_cluster(d->gateway, d->cluster);
    auth_set_peers(d->auth, cluster_peer_check, d->cluster);
    runs_set_cluster(d->runs, d->cluster);
    cluster_set_adopter(d->cluster, recovery_adopt_cb, d->runs);
}

static int start_http(struct daemon *d)
{
    struct http_server_options ho = {.host = d->cfg->listen_host,
                                     .port = d->cfg->listen_port,
                                     .max_body_bytes = d->cfg->limits.max_body_bytes,
                                     .max_connections = d->cfg->limits.max_connections};
    d->srv = http_server_new(&d->loop, &ho, d->metrics);
    if (d->tls != NULL) {
        http_server_set_tls(d->srv, d->tls); /* before listening: never a plain-HTTP answer */
        d->tls = NULL;
    }
    audit_api_register(d->srv, d->audit);
    if (d->auth != NULL)
        http_server_set_gate(d->srv, auth_gate, d->auth);
    d->keys_api = keys_api_new(d->srv, d->keys, d->audit);
    d->api = runtime_api_new(d->srv, d->metrics, d->events);
    d->httpc = httpc_new(&d->loop);
    struct supervisor_options so = {.loop = &d->loop,
                                    .cfg = d->cfg,
                                    .store = d->store,
                                    .events = d->events,
                                    .metrics = d->metrics,
                                    .httpc = d->httpc};
    d->sup = supervisor_new(&so);
    d->engines_api = engines_api_new(d->srv, d->sup, d->audit);
    d->gateway = gateway_new(d->srv, d->cfg, d->sup, d->httpc, d->events, d->metrics);
    gateway_set_limits(d->gateway, d->limits);
    d->warm = warm_new(d->sup, d->httpc, d->events);
    struct runs_options ro = {.loop = &d->loop,
                              .cfg = d->cfg,
                              .store = d->store,
                              .gateway = d->gateway,
                              .sup = d->sup,
                              .events = d->events,
                              .metrics = d->metrics,
                              .limits = d->limits};
    d->runs = runs_new(&ro);
    d->runs_api = runs_api_new(d->srv, d->runs);
    conversations_api_register(d->srv, d->store);
    http_assets_register(d->srv, console_assets, console_assets_count); /* the console, at / */
    runtime_api_add_ready(d->api, "store", store_ready_check, d->store);
    struct buf err;
    buf_init(&err, 4096);
    int rc = http_server_listen(d->srv, &err);
    if (rc != 0)
        log_error("serve", "%s", buf_cstr(&err));
    buf_cleanup(&err);
    if (rc == 0)
        listen_local(d);
    if (rc == 0)
        start_cluster(d);
    return rc == 0 ? 0 : 1;
}

static void start_signals(struct daemon *d)
{
    signal(SIGPIPE, SIG_IGN); /* a client that vanishes mid-write is an EPIPE, not a death */
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sighup);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    uv_signal_start(&d->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&d->sigint, signal_cb, SIGINT);
    uv_signal_start(&d->sighup, sighup_cb, SIGHUP);
}

/* Frees what is left after the loop ended (or never ran). */
static int finish(struct daemon *d, int code)
{
    close_modules(d);
    SSL_CTX_free(d->tls); /* a start-up that failed before the server took it */
    d->tls = NULL;
    log_buffer_stop(); /* from here on one write per line; its timer closes in the run below */
    uv_run(&d->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&d->loop);
    if (rc != 0)
        log_warn("serve", "the loop still had handles at exit: %s", uv_strerror(rc));
    events_free(d->events);
    metrics_free(d->metrics);
    config_free(d->cfg);
    return code;
}

static int parse_flags(int argc, char **argv, const char **config, const char **listen)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            *config = optarg;
            break;
        case 'l':
            *listen = optarg;
            break;
        case 'h':
            fputs(serve_usage, stdout);
            return 0;
        default:
            fputs(serve_usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "arun serve: unexpected argument: %s\n%s", argv[optind], serve_usage);
        return 2;
    }
    return -1;
}

int serve_main(int argc, char **argv)
{
    uint64_t t0 = clock_mono_ns();
    const char *config_path = NULL, *listen = NULL;
    int rc = parse_flags(argc, argv, &config_path, &listen);
    if (rc >= 0)
        return rc;

    struct daemon d = {0};
    rc = load_config(config_path, listen, &d.cfg);
    if (rc != 0)
        return rc;
    rc = check_exposure(d.cfg);
    if (rc != 0) {
        config_free(d.cfg);
        return rc;
    }
    log_set_level(d.cfg->log_level);
    uv_loop_init(&d.loop);
    log_buffer_start(&d.loop); /* one write per LOG_FLUSH_MS instead of one per request */
    d.metrics = metrics_new();
    d.events = events_new();

    rc = load_tls(&d);
    if (rc == 0)
        rc = open_store(&d);
    if (rc == 0) {
        /* Before anything that records (the keys' gate, the engines' API): d.audit is theirs. */
        d.audit = audit_new(&d.loop, d.store, d.metrics);
        load_limits(&d); /* before the keys' gate, which holds them */
        rc = load_keys(&d);
    }
    if (rc == 0)
        rc = start_http(&d);
    if (rc != 0)
        return finish(&d, rc);
    start_signals(&d);
    supervisor_run(d.sup);
    if (recovery_start(d.runs) != 0)
        log_error("serve", "the store refused the scan for unfinished responses; they stay "
                           "unfinished until the next start");
    d.sweep = sweep_new(d.runs, d.cfg->runs.retention_days, sweep_interval_ms());
    log_info("serve", "arun %s listening on %s://%s%s%s:%u (config: %s, data_dir: %s) in %.1f ms",
             ARUN_VERSION, http_server_tls_ctx(d.srv) != NULL ? "https" : "http",
             strchr(d.cfg->listen_host, ':') ? "[" : "", d.cfg->listen_host,
             strchr(d.cfg->listen_host, ':') ? "]" : "", http_server_port(d.srv),
             d.cfg->path ? d.cfg->path : "embedded defaults", d.cfg->data_dir,
             (double)(clock_mono_ns() - t0) / 1e6);
    log_flush(); /* whoever started arun waits for this line */
    uv_run(&d.loop, UV_RUN_DEFAULT);
    log_info("serve", "stopped");
    return finish(&d, 0);
}
