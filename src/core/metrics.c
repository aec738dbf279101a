/*
 * metrics.c: registry of counters, gauges and histograms. See metrics.h.
 *
 * DESIGN
 * A family holds an open-addressing hash table of series keyed by the joined label values
 * (joined with '\xff', which cannot appear in label values we produce). Tables grow at 50% load.
 * Series are never removed: an engine that disappears keeps its last values, as Prometheus
 * client libraries do. Rendering walks families in registration order so the output is stable.
 */
#include "core/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "core/common.h"

const double metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
const size_t metrics_latency_nbuckets = ARRAY_SIZE(metrics_latency_buckets);

struct series {
    char *key;         /* label values joined by '\xff'; NULL marks an empty slot */
    char **values;     /* the label values, nlabels of them */
    double value;      /* counter/gauge value, or histogram sum */
    uint64_t count;    /* histogram observation count */
    uint64_t *buckets; /* histogram cumulative-free bucket counts, nbuckets of them */
};

struct metrics_family {
    char *name;
    char *help;
    enum metrics_type type;
    char *labels[METRICS_MAX_LABELS];
    size_t nlabels;
    double *bounds; /* histogram bucket upper bounds */
    size_t nbounds;
    struct series *slots;
    size_t nslots; /* power of two */
    size_t nseries;
    metrics_collect_cb collect;
    void *collect_arg;
    struct metrics_family *next;
};

struct metrics {
    struct metrics_family *head;
    struct metrics_family **tail;
};

struct metrics *metrics_new(void)
{
    struct metrics *m = xcalloc(1, sizeof(*m));
    m->tail = &m->head;
    return m;
}

static void family_free(struct metrics_family *f)
{
    for (size_t i = 0; i < f->nslots; i++) {
        struct series *s = &f->slots[i];
        if (s->key == NULL)
            continue;
        for (size_t j = 0; j < f->nlabels; j++)
            free(s->values[j]);
        free(s->values);
        free(s->buckets);
        free(s->key);
    }
    for (size_t j = 0; j < f->nlabels; j++)
        free(f->labels[j]);
    free(f->slots);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    struct metrics_family *f = m->head;
    while (f != NULL) {
        struct metrics_family *next = f->next;
        family_free(f);
        f = next;
    }
    free(m);
}

static struct metrics_family *family_add(struct metrics *m, const char *name, const char *help,
                                         enum metrics_type type, size_t nlabels,
                                         const char *const *labels)
{
    ASSERT(nlabels <= METRICS_MAX_LABELS);
    for (struct metrics_family *f = m->head; f != NULL; f = f->next)
        ASSERT(strcmp(f->name, name) != 0);
    struct metrics_family *f = xcalloc(1, sizeof(*f));
    f->name = xstrdup(name);
    f->help = xstrdup(help);
    f->type = type;
    f->nlabels = nlabels;
    for (size_t i = 0; i < nlabels; i++)
        f->labels[i] = xstrdup(labels[i]);
    *m->tail = f;
    m->tail = &f->next;
    return f;
}

struct metrics_family *metrics_counter(struct metrics *m, const char *name, const char *help,
                                       size_t nlabels, const char *const *labels)
{
    return family_add(m, name, help, METRICS_COUNTER, nlabels, labels);
}

struct metrics_family *metrics_gauge(struct metrics *m, const char *name, const char *help,
                                     size_t nlabels, const char *const *labels)
{
    return family_add(m, name, help, METRICS_GAUGE, nlabels, labels);
}

struct metrics_family *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                         size_t nlabels, const char *const *labels,
                                         const double *buckets, size_t nbuckets)
{
    struct metrics_family *f = family_add(m, name, help, METRICS_HISTOGRAM, nlabels, labels);
    f->bounds = xmalloc(nbuckets * sizeof(double));
    memcpy(f->bounds, buckets, nbuckets * sizeof(double));
    f->nbounds = nbuckets;
    return f;
}

struct metrics_family *metrics_computed(struct metrics *m, const char *name, const char *help,
                                        enum metrics_type type, metrics_collect_cb cb, void *arg)
{
    struct metrics_family *f = family_add(m, name, help, type, 0, NULL);
    f->collect = cb;
    f->collect_arg = arg;
    return f;
}

/* A series' key is its label values joined by 0xff bytes. Lookups hash and compare the values in
 * place (a request touches several series: building each key cost two allocations); the key
 * string is built only when a series is created. Both hashes are FNV-1a over the same bytes. */
#define FNV_OFFSET 1469598103934665603ull
#define FNV_PRIME 1099511628211ull
#define KEY_SEP '\xff'

static uint64_t hash_str(const char *s)
{
    uint64_t h = FNV_OFFSET;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= FNV_PRIME;
    }
    return h;
}

static const char *value_at(const char *const *values, size_t i)
{
    return values[i] != NULL ? values[i] : "";
}

static uint64_t hash_values(const struct metrics_family *f, const char *const *values)
{
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i > 0) {
            h ^= (unsigned char)KEY_SEP;
            h *= FNV_PRIME;
        }
        for (const char *v = value_at(values, i); *v != '\0'; v++) {
            h ^= (unsigned char)*v;
            h *= FNV_PRIME;
        }
    }
    return h;
}

static bool key_matches(const char *key, const struct metrics_family *f, const char *const *values)
{
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i > 0 && *key++ != KEY_SEP)
            return false;
        for (const char *v = value_at(values, i); *v != '\0'; v++, key++)
            if (*key != *v)
                return false;
    }
    return *key == '\0';
}

static char *join_key(const struct metrics_family *f, const char *const *values)
{
    struct buf key = {.data = NULL, .cap = SIZE_MAX};
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i > 0)
            buf_append(&key, (char[]){KEY_SEP}, 1); /* key buffers are uncapped */
        buf_puts(&key, value_at(values, i));
    }
    return buf_steal(&key);
}

static void grow(struct metrics_family *f)
{
    size_t nslots = f->nslots ? f->nslots * 2 : 16;
    struct series *slots = xcalloc(nslots, sizeof(*slots));
    for (size_t i = 0; i < f->nslots; i++) {
        if (f->slots[i].key == NULL)
            continue;
        size_t j = hash_str(f->slots[i].key) & (nslots - 1);
        while (slots[j].key != NULL)
            j = (j + 1) & (nslots - 1);
        slots[j] = f->slots[i];
    }
    free(f->slots);
    f->slots = slots;
    f->nslots = nslots;
}

static struct series *series_get(struct metrics_family *f, const char *const *values)
{
    static const char *const overflow[METRICS_MAX_LABELS] = {"_overflow", "_overflow", "_overflow",
                                                             "_overflow"};
    if (f->nslots == 0 || (f->nseries + 1) * 2 > f->nslots)
        grow(f);
    size_t i = hash_values(f, values) & (f->nslots - 1);
    while (f->slots[i].key != NULL) {
        if (key_matches(f->slots[i].key, f, values))
            return &f->slots[i];
        i = (i + 1) & (f->nslots - 1);
    }
    if (f->nseries >= METRICS_MAX_SERIES && values != overflow)
        return series_get(f, overflow);
    struct series *s = &f->slots[i];
    s->key = join_key(f, values);
    s->values = xcalloc(f->nlabels ? f->nlabels : 1, sizeof(char *));
    for (size_t j = 0; j < f->nlabels; j++)
        s->values[j] = xstrdup(value_at(values, j));
    if (f->type == METRICS_HISTOGRAM)
        s->buckets = xcalloc(f->nbounds, sizeof(uint64_t));
    f->nseries++;
    return s;
}

void metrics_add(struct metrics_family *f, double v, const char *const *values)
{
    ASSERT(f->type != METRICS_HISTOGRAM && f->collect == NULL);
    series_get(f, values)->value += v;
}

void metrics_set(struct metrics_family *f, double v, const char *const *values)
{
    ASSERT(f->type == METRICS_GAUGE && f->collect == NULL);
    series_get(f, values)->value = v;
}

void metrics_observe(struct metrics_family *f, double v, const char *const *values)
{
    ASSERT(f->type == METRICS_HISTOGRAM);
    struct series *s = series_get(f, values);
    s->value += v;
    s->count++;
    for (size_t i = 0; i < f->nbounds; i++) {
        if (v <= f->bounds[i]) {
            s->buckets[i]++;
            break;
        }
    }
}

/* Label values are escaped per the text format: backslash, quote and newline. */
static void put_label_value(struct buf *out, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"')
            buf_printf(out, "\\%c", *v);
        else if (*v == '\n')
            buf_puts(out, "\\n");
        else
            buf_append(out, v, 1);
    }
}

static void put_labels(struct buf *out, size_t n, const char *const *labels,
                       const char *const *values, const char *extra_name, const char *extra)
{
    if (n == 0 && extra_name == NULL)
        return;
    buf_puts(out, "{");
    for (size_t i = 0; i < n; i++) {
        buf_printf(out, "%s%s=\"", i ? "," : "", labels[i]);
        put_label_value(out, values[i]);
        buf_puts(out, "\"");
    }
    if (extra_name != NULL)
        buf_printf(out, "%s%s=\"%s\"", n ? "," : "", extra_name, extra);
    buf_puts(out, "}");
}

static void put_value(struct buf *out, double v)
{
    if (isinf(v))
        buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    else if (v == (double)(int64_t)v && fabs(v) < 1e15)
        buf_printf(out, "%lld", (long long)v);
    else
        buf_printf(out, "%.9g", v);
}

void metrics_put_sample(struct metrics_family *f, struct buf *out, size_t nlabels,
                        const char *const *labels, const char *const *values, double v)
{
    buf_puts(out, f->name);
    put_labels(out, nlabels, labels, values, NULL, NULL);
    buf_puts(out, " ");
    put_value(out, v);
    buf_puts(out, "\n");
}

static void render_histogram(struct metrics_family *f, struct series *s, struct buf *out)
{
    const char *const *labels = (const char *const *)f->labels;
    const char *const *values = (const char *const *)s->values;
    uint64_t cum = 0;
    char le[32];
    for (size_t i = 0; i <= f->nbounds; i++) {
        if (i < f->nbounds) {
            cum += s->buckets[i];
            snprintf(le, sizeof(le), "%g", f->bounds[i]);
        } else {
            cum = s->count;
            snprintf(le, sizeof(le), "+Inf");
        }
        buf_printf(out, "%s_bucket", f->name);
        put_labels(out, f->nlabels, labels, values, "le", le);
        buf_printf(out, " %llu\n", (unsigned long long)cum);
    }
    buf_printf(out, "%s_sum", f->name);
    put_labels(out, f->nlabels, labels, values, NULL, NULL);
    buf_puts(out, " ");
    put_value(out, s->value);
    buf_printf(out, "\n%s_count", f->name);
    put_labels(out, f->nlabels, labels, values, NULL, NULL);
    buf_printf(out, " %llu\n", (unsigned long long)s->count);
}

int metrics_render(struct metrics *m, struct buf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    for (struct metrics_family *f = m->head; f != NULL; f = f->next) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                   type_names[f->type]);
        if (f->collect != NULL) {
            f->collect(f, out, f->collect_arg);
            continue;
        }
        for (size_t i = 0; i < f->nslots; i++) {
            struct series *s = &f->slots[i];
            if (s->key == NULL)
                continue;
            if (f->type == METRICS_HISTOGRAM)
                render_histogram(f, s, out);
            else
                metrics_put_sample(f, out, f->nlabels, (const char *const *)f->labels,
                                   (const char *const *)s->values, s->value);
        }
    }
    /* An append that would pass the cap is dropped; a truncated page is worse than an error. */
    return out->len + 1024 >= out->cap ? -ENOBUFS : 0;
}
