/*
 * peer.c: the node-to-node side of the cluster (cluster.h): the cluster secret (checking the
 * one a request brings, putting ours on the requests we send), the headers of a request to
 * another node, where such a request goes (cluster_target), and cluster_forward, a whole
 * request to another node with its whole answer passed back. The gateway's proxied calls use
 * the headers and the target but stream through their own transfer (gateway/upstream.c).
 *
 * It knows the rest of the cluster only through cluster.h's functions (the node view, the
 * config, the HTTP client): cluster.c owns the struct.
 *
 * The secret is read from the environment where it is used, as the remote engines' API keys
 * are (gateway/upstream.c): nothing in arun sets the environment, so every read gives the same
 * value, and the secret is kept in no struct of ours and never logged.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "core/log.h"

#define FORWARD_TIMEOUT_MS                                                                         \
    30000 /* a cancel or a read where a run lives: the node answers at                             \
             once or is as good as down */

/* The secret, or NULL: unset, too short, or with a byte that cannot travel in a header
 * (a CR or LF would let it end the header early). */
static const char *secret_of(const struct cluster *cl, size_t *len)
{
    const char *env = cluster_config(cl)->cluster.secret_env;
    const char *s = env != NULL ? getenv(env) : NULL;
    if (s == NULL)
        return NULL;
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return NULL;
    if (n < CLUSTER_SECRET_MIN)
        return NULL;
    *len = n;
    return s;
}

static void sha256(const void *p, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    int ok = EVP_Digest(p, len, out, &n, EVP_sha256(), NULL);
    ASSERT(ok == 1 && n == 32); /* fails only out of memory */
}

bool cluster_secret_ok(const struct cluster *cl, const char *value, size_t len)
{
    size_t slen = 0;
    const char *secret = cl != NULL && cluster_shared(cl) ? secret_of(cl, &slen) : NULL;
    if (secret == NULL || value == NULL)
        return false;
    /* Digests of both: equal lengths whatever was sent, so neither the comparison's time nor
     * its length says anything about the secret. */
    unsigned char a[32], b[32];
    sha256(secret, slen, a);
    sha256(value, len, b);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

bool cluster_peer_check(const void *cl, const char *value, size_t len)
{
    return cluster_secret_ok(cl, value, len);
}

/* Appends "NAME: VALUE" to store at *used as h[(*n)++], if it fits. */
static void put_header(const char *name, const char *value, char *store, size_t size, size_t *used,
                       const char **h, size_t *n)
{
    int len = snprintf(store + *used, size - *used, "%s: %s", name, value);
    if (len < 0 || (size_t)len >= size - *used) {
        store[*used] = '\0';
        log_error("cluster", "the %s header does not fit in %zu bytes; sent without it", name,
                  size);
        return;
    }
    h[(*n)++] = store + *used;
    *used += (size_t)len + 1;
}

size_t cluster_peer_headers(const struct cluster *cl, const char *tenant, char *store, size_t size,
                            const char **h)
{
    size_t n = 0, used = 0, slen = 0;
    const char *secret = secret_of(cl, &slen);
    if (secret != NULL)
        put_header(HTTP_H_CLUSTER_SECRET, secret, store, size, &used, h, &n);
    else
        log_error("cluster", "no cluster secret in $%s: the other node will refuse the request",
                  cluster_config(cl)->cluster.secret_env);
    put_header(HTTP_H_CLUSTER_HOP, cluster_node_id(cl), store, size, &used, h, &n);
    if (tenant != NULL)
        put_header(HTTP_H_CLUSTER_TENANT, tenant, store, size, &used, h, &n);
    return n;
}

/* host (bracketless) and port of an http://IP:PORT base with nothing after it but one "/", or
 * false. */
static bool ip_port(const char *base, char *host, size_t hsize, uint16_t *port)
{
    static const char scheme[] = "http://";
    if (strncmp(base, scheme, sizeof(scheme) - 1) != 0)
        return false;
    const char *h = base + sizeof(scheme) - 1, *end;
    bool v6 = *h == '[';
    if (v6) {
        h++;
        end = strchr(h, ']');
        if (end == NULL || end[1] != ':')
            return false;
    } else {
        end = strchr(h, ':');
        if (end == NULL)
            return false;
    }
    size_t hl = (size_t)(end - h);
    if (hl == 0 || hl >= hsize)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    unsigned char addr[16];
    if (inet_pton(v6 ? AF_INET6 : AF_INET, host, addr) != 1)
        return false;
    const char *p = end + (v6 ? 2 : 1);
    char *stop;
    unsigned long v = strtoul(p, &stop, 10);
    if (stop == p || *p < '0' || *p > '9' || v == 0 || v > 65535)
        return false;
    if (!(*stop == '\0' || (stop[0] == '/' && stop[1] == '\0')))
        return false;
    *port = (uint16_t)v;
    return true;
}

int cluster_target(const char *base, const char *path, struct cluster_target *t,
                   struct httpc_opts *o)
{
    uint16_t port;
    if (ip_port(base, t->host, sizeof(t->host), &port)) {
        o->url = NULL;
        o->to = (struct httpc_endpoint){.host = t->host, .port = port, .path = path};
        return 0;
    }
    if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)
        return -EINVAL;
    size_t n = strlen(base);
    if (n > 0 && base[n - 1] == '/')
        n--;
    int len = snprintf(t->url, sizeof(t->url), "%.*s%s", (int)n, base, path);
    if (len < 0 || (size_t)len >= sizeof(t->url))
        return -EINVAL;
    o->url = t->url;
    return 0;
}

/* ---- cluster_forward ---- */

struct forward {
    cluster_forward_cb cb;
    void *arg;
    char node[CLUSTER_NODE_ID_MAX + 1];
};

static void forward_done_cb(struct httpc_req *r, const struct httpc_result *res, void *arg)
{
    struct forward *f = arg;
    if (res->error != 0 || res->status == 0) {
        char why[512];
        snprintf(why, sizeof(why), "node %s could not be reached: %s", f->node,
                 res->error_text ? res->error_text : "no answer");
        log_warn("cluster", "%s", why);
        f->cb(0, "text/plain", why, strlen(why), f->arg);
    } else {
        f->cb(res->status, httpc_header(r, "content-type"), res->body ? res->body : "",
              res->body_len, f->arg);
    }
    free(f);
}

int cluster_forward(struct cluster *cl, const char *node, const char *method, const char *path,
                    const char *tenant, const char *body, size_t len, cluster_forward_cb cb,
                    void *arg)
{
    const char *base = cluster_node_url(cl, node);
    if (base == NULL)
        return -ENOENT;
    char store[2048];
    const char *headers[4];
    size_t nh = cluster_peer_headers(cl, tenant, store, sizeof(store), headers);
    if (body != NULL)
        headers[nh++] = "Content-Type: application/json";
    struct cluster_target t;
    struct httpc_opts o = {.method = method,
                           .headers = headers,
                           .nheaders = nh,
                           .body = body,
                           .body_len = len,
                           .connect_timeout_ms = 5000,
                           .timeout_ms = FORWARD_TIMEOUT_MS};
    int rc = cluster_target(base, path, &t, &o);
    if (rc != 0)
        return rc;
    struct forward *f = xcalloc(1, sizeof(*f));
    f->cb = cb;
    f->arg = arg;
    snprintf(f->node, sizeof(f->node), "%s", node);
    o.arg = f;
    rc = httpc_request(cluster_httpc(cl), &o, forward_done_cb, NULL);
    if (rc != 0)
        free(f);
    return rc;
}
