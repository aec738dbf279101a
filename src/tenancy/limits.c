/*
 * limits.c: the limits per tenant (limits.h). It owns one entry per tenant in use (a hash table,
 * entries made on first use and dropped when idle) with the state of its four limits, the daily
 * output-token counters' way to and from the store, and the 429 answer. It decides nothing
 * about who a tenant is (the gate does) nor how many runs are queued (the runs count them).
 *
 * DESIGN
 * requests_per_minute is a token bucket that holds N requests and refills at N per minute,
 * kept as GCRA (the "generic cell rate algorithm" of ATM networks and of redis-cell): one
 * number per tenant, the theoretical arrival time (tat) of the next request if requests came
 * evenly every 60/N s. A request at `now` is admitted while tat - now stays within the burst of
 * N - 1 intervals; each admission moves tat one interval on. Why a bucket and not windows: a
 * fixed window lets 2N through around its edge and sends every refused client back at the same
 * instant; a sliding log is exact but keeps N timestamps per tenant. The bucket is O(1), has no
 * edge, and says exactly when the next request will fit: Retry-After is that, rounded up to
 * whole seconds (at least 1). A tenant that waits its Retry-After is admitted; a quiet tenant
 * has its whole burst again after a minute.
 *
 * concurrent_requests is a count of requests admitted and not yet left. output_tokens_per_day
 * is a count per tenant of the current UTC day: loaded from the store at start (limits_load),
 * raised by every answer, written back as increments every LIMITS_FLUSH_MS and at close, so the
 * store holds the day's total within one flush. A request is refused once the count reaches
 * the limit (an answer is never cut: its tokens are not known before it ends, so a day may end
 * a little over). The day is the UTC day of the clock at each check: the first check or count
 * after midnight UTC writes what was left of the old day under the old date and starts at 0.
 *
 * Counts made before the load's read is back are kept and added to what it reads; nothing is
 * written before it is back, so no count is read back and added twice.
 *
 * On a shared store (PostgreSQL: several nodes count the same tenants) each node re-reads the
 * day's stored totals every LIMITS_SYNC_MS and sets used = stored total + its own pending
 * count (counted, not yet written). That is exact only if none of this node's counts is both
 * in the stored total and in pending, or in neither: so a re-read starts only when no write of
 * this node is in flight (every write before it was called back, hence is in what it reads), and
 * no write starts while it is out (the counts wait in pending, one tick at most). A tenant with
 * no stored row today has used = pending.
 *
 * Lifetime: store callbacks hold the struct (ops); limits_free marks it closing, writes the
 * pending counts, closes the timer and frees it once the last callback and the close are in.
 */
#include "tenancy/limits.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"

#define BUCKETS 256          /* tenants are configured ones plus keys' ones: tens, hundreds */
#define LOAD_PAGE 1000       /* tenants per store_usage_day page */
#define NS_PER_MS 1000000ull /* the bucket runs in ns: 60 s / 10^8 rpm is 600 ns */
#define MINUTE_NS 60000000000ull
#define DAY_MS 86400000ll

/* One tenant in use. */
struct tenant {
    struct tenant *next; /* hash chain */
    char name[STORE_TENANT_MAX + 1];
    const struct config_tenant *entry;      /* its tenants.NAME, or NULL (default applies) */
    const struct config_tenant_limits *lim; /* its limits: entry's or default's */
    uint64_t tat_ns;                        /* GCRA: see DESIGN; 0 = a full bucket */
    uint32_t in_flight;                     /* admitted by limits_enter, not yet left */
    int64_t day;                            /* UTC day (days since the epoch) of the counts */
    uint64_t used;                          /* output tokens of that day: loaded + counted */
    uint64_t pending;                       /* counted here, not yet handed to the store */
    uint64_t pending_requests;              /* answers counted, likewise */
    uint64_t synced;                        /* the re-read (limits.sync_gen) that saw its row */
    int64_t last_ms;                        /* last use, for dropping idle entries */
};

struct limits {
    uv_loop_t *loop;
    const struct config *cfg;
    struct store *st;
    struct tenant *buckets[BUCKETS];
    size_t count;
    uv_timer_t timer; /* flushes counts and drops idle entries */
    int64_t (*now_ms)(void *arg);
    void *now_arg;
    bool loading, loaded;
    bool closing;
    bool syncing;         /* a re-read of the day's totals is out (shared store): no writes */
    bool sync_failed;     /* the last re-read failed (logged once until one works) */
    uint32_t writes;      /* usage writes in flight */
    uint64_t sync_gen;    /* re-reads started */
    int64_t sync_day;     /* the day the re-read out is of */
    int64_t last_sync_ms; /* when the last one started */
    uint32_t refs;        /* the timer until its close, and each store op in flight */
    int64_t load_day;
    void (*load_done)(int status, void *arg);
    void *load_arg;
    struct metrics_family *m_rejections, *m_tokens;
};

/* A write of one tenant's counts of one day, in flight. */
struct usage_write {
    struct limits *l;
    char tenant[STORE_TENANT_MAX + 1];
    char day[STORE_DAY_LEN + 1];
    int64_t dayno;
    uint64_t tokens, requests;
};

static const char *const rejection_labels[] = {"tenant", "limit"};
static const char *const token_labels[] = {"tenant"};

static int64_t wall_ms(void *arg)
{
    (void)arg;
    return clock_wall_ms();
}

static int64_t now_ms(const struct limits *l)
{
    return l->now_ms(l->now_arg);
}

static int64_t day_of(int64_t ms)
{
    return ms >= 0 ? ms / DAY_MS : (ms - DAY_MS + 1) / DAY_MS;
}

/* "YYYY-MM-DD" of a day number. */
static void day_text(int64_t day, char out[STORE_DAY_LEN + 1])
{
    time_t t = (time_t)(day * 86400);
    struct tm tm;
    /* Years past 9999 do not fit: then "" (the store refuses it, the write is logged). */
    if (gmtime_r(&t, &tm) == NULL || strftime(out, STORE_DAY_LEN + 1, "%Y-%m-%d", &tm) == 0)
        out[0] = '\0';
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct tenant *find(struct limits *l, const char *name)
{
    for (struct tenant *t = l->buckets[hash(name) % BUCKETS]; t != NULL; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* The entry of name, made on first use. Tenant names come from keys and the config, which
 * check them; a longer one would be cut, and only shares an entry with its cut twin. */
static struct tenant *get(struct limits *l, const char *name, int64_t now)
{
    struct tenant *t = find(l, name);
    if (t == NULL) {
        t = xcalloc(1, sizeof(*t));
        snprintf(t->name, sizeof(t->name), "%s", name);
        t->entry = config_find_tenant(l->cfg, t->name);
        t->lim = t->entry != NULL ? &t->entry->limits : &l->cfg->tenants.dflt;
        t->day = day_of(now);
        uint32_t b = hash(t->name) % BUCKETS;
        t->next = l->buckets[b];
        l->buckets[b] = t;
        l->count++;
    }
    t->last_ms = now;
    return t;
}

static void unref(struct limits *l);

static void write_cb(int status, void *arg)
{
    struct usage_write *w = arg;
    struct limits *l = w->l;
    l->writes--;
    if (status == 0) {
        log_debug("limits",
                  "daily usage written: tenant %s, %s UTC, +%" PRIu64 " output tokens, +%" PRIu64
                  " requests",
                  w->tenant, w->day, w->tokens, w->requests);
    } else {
        struct tenant *t = l->closing ? NULL : find(l, w->tenant);
        if (t != NULL && t->day == w->dayno) {
            /* Tried again at the next tick: the count in memory never lost it. */
            t->pending += w->tokens;
            t->pending_requests += w->requests;
        }
        log_warn_errno("limits", status,
                       "could not write the daily usage of tenant %s (%s UTC, %" PRIu64
                       " output tokens)%s",
                       w->tenant, w->day, w->tokens,
                       t != NULL ? "; trying again" : "; that count is lost at the next restart");
    }
    free(w);
    unref(l);
}

/* Hands t's pending counts to the store: not before the load is back (see DESIGN), unless
 * closing, when nothing is read any more. */
static void flush_tenant(struct limits *l, struct tenant *t)
{
    if (t->pending == 0 && t->pending_requests == 0)
        return;
    if (l->st == NULL) {
        t->pending = t->pending_requests = 0;
        return;
    }
    if ((!l->loaded || l->syncing) && !l->closing)
        return;
    struct usage_write *w = xcalloc(1, sizeof(*w));
    w->l = l;
    snprintf(w->tenant, sizeof(w->tenant), "%s", t->name);
    day_text(t->day, w->day);
    w->dayno = t->day;
    w->tokens = t->pending;
    w->requests = t->pending_requests;
    int rc = store_usage_add(l->st, w->tenant, w->day, (int64_t)w->tokens, (int64_t)w->requests,
                             write_cb, w);
    if (rc != 0) {
        /* -EAGAIN (the store sheds load): the next tick tries again. */
        if (rc != -EAGAIN)
            log_warn_errno("limits", rc, "the store refused the daily usage of tenant %s", t->name);
        free(w);
        return;
    }
    l->refs++;
    l->writes++;
    t->pending = t->pending_requests = 0;
}

/* Moves t to today: what it counted of an earlier day is written under that day. */
static void roll(struct limits *l, struct tenant *t, int64_t now)
{
    int64_t today = day_of(now);
    if (t->day == today)
        return;
    flush_tenant(l, t);
    /* Not yet loaded (or refused by the store): the old day's count is dropped, not carried. */
    t->pending = t->pending_requests = 0;
    t->day = today;
    t->used = 0;
}

static bool idle(const struct tenant *t, int64_t now)
{
    return t->in_flight == 0 && t->pending == 0 && t->pending_requests == 0 &&
           t->tat_ns <= (uint64_t)now * NS_PER_MS && (t->used == 0 || t->day != day_of(now)) &&
           now - t->last_ms >= (int64_t)LIMITS_IDLE_MS;
}

static void maybe_sync(struct limits *l, int64_t now);

static void tick_cb(uv_timer_t *h)
{
    struct limits *l = h->data;
    int64_t now = now_ms(l);
    maybe_sync(l, now); /* before this tick's writes: it starts only with none in flight */
    for (size_t b = 0; b < BUCKETS; b++) {
        struct tenant **p = &l->buckets[b];
        while (*p != NULL) {
            struct tenant *t = *p;
            roll(l, t, now);
            flush_tenant(l, t);
            if (idle(t, now)) {
                *p = t->next;
                l->count--;
                free(t);
                continue;
            }
            p = &t->next;
        }
    }
}

struct limits *limits_new(uv_loop_t *loop, const struct config *cfg, struct store *st,
                          struct metrics *metrics)
{
    struct limits *l = xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->cfg = cfg;
    l->st = st;
    l->now_ms = wall_ms;
    l->loaded = st == NULL; /* nothing to read */
    l->m_rejections = metrics_counter(metrics, "arun_tenant_rejections_total",
                                      "Requests refused with 429 for a tenant's limit, by limit", 2,
                                      rejection_labels);
    l->m_tokens =
        metrics_counter(metrics, "arun_tenant_output_tokens_total",
                        "Output (completion) tokens of each tenant's answers", 1, token_labels);
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, tick_cb, LIMITS_FLUSH_MS, LIMITS_FLUSH_MS);
    uv_unref((uv_handle_t *)&l->timer);
    l->refs = 1; /* the timer */
    return l;
}

void limits_set_clock(struct limits *l, int64_t (*fn)(void *arg), void *arg)
{
    l->now_ms = fn;
    l->now_arg = arg;
}

/* ---- loading today's counts ---- */

static int load_page(struct limits *l, const char *after);

static void load_finish(struct limits *l, int status)
{
    l->loading = false;
    l->loaded = true;
    if (status != 0)
        log_error_errno("limits", status,
                        "could not read today's output-token counts from the store; each "
                        "tenant's output_tokens_per_day counts from zero until midnight UTC");
    if (!l->closing && l->load_done != NULL)
        l->load_done(status, l->load_arg);
}

/* One page of {"data":[{"tenant","output_tokens","requests"}…],"has_more"}: each tenant's stored
 * count of today goes into its entry, added to what was counted before the load's read came
 * back (sync false: the load) or as the stored total plus this node's pending count (sync: the
 * re-read of a shared store). Sets *more to the last tenant of the page when there is more (a
 * heap copy), else NULL; -EIO when it cannot be read. */
static int read_page(struct limits *l, const char *value, size_t len, bool sync, char **more)
{
    json_t *page = json_loadb(value, len, 0, NULL);
    json_t *data = json_object_get(page, "data");
    int rc = json_is_array(data) ? 0 : -EIO;
    size_t i;
    json_t *row;
    const char *last = NULL;
    int64_t now = now_ms(l);

    *more = NULL;
    json_array_foreach(data, i, row)
    {
        const char *name = json_string_value(json_object_get(row, "tenant"));
        json_int_t tokens = json_integer_value(json_object_get(row, "output_tokens"));
        if (name == NULL || tokens < 0)
            continue;
        last = name;
        struct tenant *t = get(l, name, now);
        roll(l, t, now);
        if (t->day != (sync ? l->sync_day : l->load_day))
            continue;
        if (sync) {
            t->used = (uint64_t)tokens + t->pending;
            t->synced = l->sync_gen;
        } else {
            t->used += (uint64_t)tokens;
        }
    }
    if (rc == 0 && last != NULL && json_is_true(json_object_get(page, "has_more")))
        *more = xstrdup(last);
    json_decref(page);
    return rc;
}

static void load_cb(int status, const char *value, size_t len, void *arg)
{
    struct limits *l = arg;
    char *more = NULL;
    if (status == 0 && !l->closing)
        status = read_page(l, value, len, false, &more);
    if (status == 0 && more != NULL)
        status = load_page(l, more);
    if (status != 0 || more == NULL)
        load_finish(l, status);
    free(more);
    unref(l);
}

static int load_page(struct limits *l, const char *after)
{
    char day[STORE_DAY_LEN + 1];
    day_text(l->load_day, day);
    int rc = store_usage_day(l->st, day, after, LOAD_PAGE, load_cb, l);
    if (rc == 0)
        l->refs++;
    return rc;
}

int limits_load(struct limits *l, void (*done)(int status, void *arg), void *arg)
{
    if (l->loading || l->st == NULL)
        return -EINVAL;
    l->load_day = day_of(now_ms(l));
    int rc = load_page(l, NULL);
    if (rc != 0) {
        l->loaded = true; /* counting from zero, and writing what is counted */
        return rc;
    }
    l->loading = true;
    l->load_done = done;
    l->load_arg = arg;
    return 0;
}

bool limits_loaded(const struct limits *l)
{
    return l == NULL || l->loaded;
}

/* ---- the other nodes' counts (shared store; see DESIGN) ---- */

static int sync_page(struct limits *l, const char *after);

/* The re-read is over: tenants it did not see have no stored count today. */
static void sync_finish(struct limits *l, int status)
{
    l->syncing = false;
    if (status != 0) {
        if (!l->sync_failed && status != -ECANCELED)
            log_warn_errno("limits", status,
                           "could not re-read today's output-token counts of every node; each "
                           "tenant's output_tokens_per_day counts this node's answers only "
                           "until a re-read works");
        l->sync_failed = true;
        return;
    }
    l->sync_failed = false;
    for (size_t b = 0; b < BUCKETS; b++)
        for (struct tenant *t = l->buckets[b]; t != NULL; t = t->next)
            if (t->day == l->sync_day && t->synced != l->sync_gen)
                t->used = t->pending;
}

static void sync_cb(int status, const char *value, size_t len, void *arg)
{
    struct limits *l = arg;
    char *more = NULL;
    if (status == 0 && l->closing)
        status = -ECANCELED;
    if (status == 0)
        status = read_page(l, value, len, true, &more);
    if (status == 0 && more != NULL)
        status = sync_page(l, more);
    if (status != 0 || more == NULL)
        sync_finish(l, status);
    free(more);
    unref(l);
}

static int sync_page(struct limits *l, const char *after)
{
    char day[STORE_DAY_LEN + 1];
    day_text(l->sync_day, day);
    int rc = store_usage_day(l->st, day, after, LOAD_PAGE, sync_cb, l);
    if (rc == 0)
        l->refs++;
    return rc;
}

static void maybe_sync(struct limits *l, int64_t now)
{
    if (l->st == NULL || !store_shared(l->st) || !l->loaded || l->syncing || l->closing ||
        l->writes > 0 || now - l->last_sync_ms < (int64_t)LIMITS_SYNC_MS)
        return;
    l->sync_day = day_of(now);
    l->sync_gen++;
    l->last_sync_ms = now;
    l->syncing = true;
    if (sync_page(l, NULL) != 0)
        l->syncing = false; /* -EAGAIN: the store sheds load; the next tick tries again */
}

/* ---- the checks ---- */

/* Where t's value of the limit with this CONFIG_TENANT_* bit comes from, for the message. */
static const char *source(const struct limits *l, const struct tenant *t, unsigned bit, char *buf,
                          size_t size)
{
    if (t->entry != NULL && (t->entry->set & bit))
        snprintf(buf, size, "tenants.%s in the config", t->name);
    else if (l->cfg->tenants.dflt_set & bit)
        snprintf(buf, size, "tenants.default in the config");
    else
        snprintf(buf, size, "arun's default; set tenants.default or tenants.%s to change it",
                 t->name);
    return buf;
}

/* Fills why for t over the limit named key (CONFIG_TENANT_* bit) whose value is value, counts
 * the rejection, and returns -EAGAIN. more: a phrase after the source ("", or "; 1234 used
 * today"). */
static int refuse(struct limits *l, const struct tenant *t, const char *key, unsigned bit,
                  uint64_t value, uint64_t retry_ns, const char *more, struct limits_refusal *why)
{
    char src[160];
    uint64_t s = (retry_ns + 999999999ull) / 1000000000ull;
    why->limit = key;
    why->value = value;
    why->retry_after_s = s < 1 ? 1 : s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
    snprintf(why->message, sizeof(why->message),
             "tenant %s is over its limit of %s: %" PRIu64 " (%s)%s; retry after %" PRIu32 " s",
             t->name, key, value, source(l, t, bit, src, sizeof(src)), more, why->retry_after_s);
    metrics_add(l->m_rejections, 1, (const char *const[]){t->name, key});
    return -EAGAIN;
}

int limits_enter(struct limits *l, const char *tenant, struct limits_refusal *why)
{
    if (l == NULL)
        return 0;
    int64_t now = now_ms(l);
    struct tenant *t = get(l, tenant, now);
    const struct config_tenant_limits *lim = t->lim;
    if (lim->concurrent_requests > 0 && t->in_flight >= lim->concurrent_requests)
        return refuse(l, t, "concurrent_requests", CONFIG_TENANT_CONCURRENT,
                      lim->concurrent_requests, LIMITS_RETRY_BUSY_S * 1000000000ull, "", why);
    if (lim->requests_per_minute > 0) {
        uint64_t interval = MINUTE_NS / lim->requests_per_minute;
        uint64_t burst = interval * (lim->requests_per_minute - 1);
        uint64_t now_ns = (uint64_t)(now < 0 ? 0 : now) * NS_PER_MS;
        uint64_t tat = t->tat_ns > now_ns ? t->tat_ns : now_ns;
        if (tat - now_ns > burst)
            return refuse(l, t, "requests_per_minute", CONFIG_TENANT_RPM, lim->requests_per_minute,
                          tat - now_ns - burst, "", why);
        t->tat_ns = tat + interval;
    }
    t->in_flight++;
    return 0;
}

void limits_leave(struct limits *l, const char *tenant)
{
    if (l == NULL)
        return;
    struct tenant *t = find(l, tenant);
    /* An entry with a request in flight is never dropped (idle()). */
    ASSERT(t != NULL && t->in_flight > 0);
    t->in_flight--;
    t->last_ms = now_ms(l);
}

int limits_check_tokens(struct limits *l, const char *tenant, struct limits_refusal *why)
{
    if (l == NULL)
        return 0;
    int64_t now = now_ms(l);
    struct tenant *t = get(l, tenant, now);
    roll(l, t, now);
    uint64_t max = t->lim->output_tokens_per_day;
    if (max == 0 || t->used < max)
        return 0;
    char more[96];
    snprintf(more, sizeof(more), "; %" PRIu64 " used today (UTC)", t->used);
    int64_t midnight = (day_of(now) + 1) * DAY_MS;
    return refuse(l, t, "output_tokens_per_day", CONFIG_TENANT_TOKENS, max,
                  (uint64_t)(midnight - now) * NS_PER_MS, more, why);
}

void limits_add_tokens(struct limits *l, const char *tenant, uint64_t n)
{
    if (l == NULL)
        return;
    int64_t now = now_ms(l);
    struct tenant *t = get(l, tenant, now);
    roll(l, t, now);
    t->used += n;
    t->pending += n;
    t->pending_requests++;
    if (n > 0)
        metrics_add(l->m_tokens, (double)n, (const char *const[]){t->name});
}

uint64_t limits_tokens_today(struct limits *l, const char *tenant)
{
    if (l == NULL)
        return 0;
    int64_t now = now_ms(l);
    struct tenant *t = find(l, tenant);
    if (t == NULL)
        return 0;
    roll(l, t, now);
    return t->used;
}

uint32_t limits_queued_runs(const struct limits *l, const char *tenant)
{
    if (l == NULL)
        return 0;
    const struct config_tenant *e = config_find_tenant(l->cfg, tenant);
    return e != NULL ? e->limits.queued_runs : l->cfg->tenants.dflt.queued_runs;
}

int limits_check_queued(struct limits *l, const char *tenant, uint32_t queued,
                        struct limits_refusal *why)
{
    if (l == NULL)
        return 0;
    struct tenant *t = get(l, tenant, now_ms(l));
    uint32_t max = t->lim->queued_runs;
    if (max == 0 || queued < max)
        return 0;
    char more[96];
    snprintf(more, sizeof(more), "; %" PRIu32 " background responses queued", queued);
    return refuse(l, t, "queued_runs", CONFIG_TENANT_QUEUED, max,
                  LIMITS_RETRY_BUSY_S * 1000000000ull, more, why);
}

void limits_reply(struct http_request *r, const struct limits_refusal *why)
{
    char ra[16];
    snprintf(ra, sizeof(ra), "%" PRIu32, why->retry_after_s);
    http_add_header(r, "retry-after", ra);
    http_send_json(r, 429, http_error_json(429, "rate_limit_exceeded", NULL, why->message));
}

/* ---- the end ---- */

void limits_flush(struct limits *l)
{
    if (l == NULL)
        return;
    int64_t now = now_ms(l);
    for (size_t b = 0; b < BUCKETS; b++)
        for (struct tenant *t = l->buckets[b]; t != NULL; t = t->next) {
            roll(l, t, now);
            flush_tenant(l, t);
        }
}

static void unref(struct limits *l)
{
    ASSERT(l->refs > 0);
    if (--l->refs > 0)
        return;
    for (size_t b = 0; b < BUCKETS; b++) {
        struct tenant *t = l->buckets[b];
        while (t != NULL) {
            struct tenant *next = t->next;
            free(t);
            t = next;
        }
    }
    free(l);
}

static void timer_closed_cb(uv_handle_t *h)
{
    unref(h->data);
}

void limits_free(struct limits *l)
{
    if (l == NULL)
        return;
    l->closing = true;
    limits_flush(l);
    uv_close((uv_handle_t *)&l->timer, timer_closed_cb);
}
