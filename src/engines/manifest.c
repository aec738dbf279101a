/*
 * manifest.c: from manifest keys to what runs. See manifest.h.
 *
 * Commands are split first and expanded second, word by word: "${MODEL}" holding a path with
 * spaces stays one argument, as the user meant, and no shell ever sees the command.
 */
#include "engines/manifest.h"

#include "core/fileio.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define MANIFEST_MAX_WORDS 4096 /* more arguments than any real engine takes */

static bool var_char(char c, bool first)
{
    return c == '_' || isalpha((unsigned char)c) || (!first && isdigit((unsigned char)c));
}

int manifest_expand(const char *s, const struct manifest_vars *v, char **out, struct buf *err)
{
    struct buf b;
    char port[8];
    buf_init(&b, MANIFEST_EXPAND_MAX);
    snprintf(port, sizeof(port), "%u", v->port);
    for (const char *p = s; *p != '\0'; p++) {
        if (p[0] == '$' && p[1] == '$') {
            buf_puts(&b, "$");
            p++;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            buf_append(&b, p, 1);
            continue;
        }
        const char *name = p + 2, *end = strchr(name, '}');
        bool ok = end != NULL && end > name;
        for (const char *q = name; ok && q < end; q++)
            ok = var_char(*q, q == name);
        if (!ok) {
            buf_printf(err,
                       "\"%.40s\": a ${ without a valid NAME} after it (write $$ "
                       "for a literal $)",
                       p);
            buf_cleanup(&b);
            return -EINVAL;
        }
        size_t n = (size_t)(end - name);
        const char *val = NULL;
        char tmp[256];
        snprintf(tmp, sizeof(tmp), "%.*s", (int)n, name);
        if (strcmp(tmp, "PORT") == 0)
            val = port;
        else if (strcmp(tmp, "NAME") == 0)
            val = v->name;
        else if (strcmp(tmp, "DATA_DIR") == 0)
            val = v->data_dir;
        else
            val = getenv(tmp);
        if (val == NULL) {
            buf_printf(err, "${%s} is not set in arun's environment", tmp);
            buf_cleanup(&b);
            return -EINVAL;
        }
        buf_puts(&b, val);
        p = end;
    }
    if (b.truncated) { /* the environment can make it so: run no word with a part left out */
        buf_printf(err, "\"%.40s\" expands to more than %u bytes", s, MANIFEST_EXPAND_MAX);
        buf_cleanup(&b);
        return -E2BIG;
    }
    *out = buf_steal(&b);
    return 0;
}

/* Splits into raw words (quotes removed, escapes applied). */
static int split(const char *s, char ***words, size_t *n, struct buf *err)
{
    char **w = NULL;
    size_t count = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (*p == '\0')
            break;
        struct buf word;
        buf_init(&word, 1 << 20); /* a word is shorter than its config file (CONFIG_MAX_BYTES) */
        char quote = 0;
        for (; *p != '\0'; p++) {
            char c = *p;
            if (quote == 0 && (c == ' ' || c == '\t' || c == '\n'))
                break;
            if (quote == 0 && (c == '\'' || c == '"')) {
                quote = c;
            } else if (quote != 0 && c == quote) {
                quote = 0;
            } else if (c == '\\' && quote != '\'' && p[1] != '\0') {
                p++;
                buf_append(&word, p, 1);
            } else {
                buf_append(&word, p, 1);
            }
        }
        if (quote != 0 || count >= MANIFEST_MAX_WORDS) {
            buf_puts(err,
                     quote ? "unbalanced quote in the command" : "too many words in the command");
            buf_cleanup(&word);
            for (size_t i = 0; i < count; i++)
                free(w[i]);
            free(w);
            return -EINVAL;
        }
        w = xrealloc(w, (count + 2) * sizeof(char *));
        w[count++] = buf_steal(&word);
        w[count] = NULL;
    }
    *words = w;
    *n = count;
    return 0;
}

int manifest_argv(const char *cmd, const struct manifest_vars *v, char ***argv_out, struct buf *err)
{
    char **words;
    size_t n;
    int rc = split(cmd, &words, &n, err);
    if (rc != 0)
        return rc;
    if (n == 0) {
        buf_puts(err, "the command is empty");
        free(words);
        return -EINVAL;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *x;
        rc = manifest_expand(words[i], v, &x, err);
        if (rc == 0) {
            free(words[i]);
            words[i] = x;
        }
    }
    if (rc != 0) {
        manifest_argv_free(words);
        return rc;
    }
    *argv_out = words;
    return 0;
}

void manifest_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (char **p = argv; *p != NULL; p++)
        free(*p);
    free(argv);
}

int manifest_env(const struct config_engine *e, const struct manifest_vars *v, char ***env_out,
                 struct buf *err)
{
    size_t n = 0, cap = e->nenv + 2;
    for (char **p = environ; *p != NULL; p++)
        cap++;
    char **env = xcalloc(cap, sizeof(char *));
    /* First, so a reader of /proc/PID/environ finds it within its first bytes. */
    char mark[MANIFEST_MARKER_MAX];
    manifest_marker(v->data_dir, v->name, mark, sizeof(mark));
    env[n++] = xasprintf("%s=%s", MANIFEST_MARKER_ENV, mark);
    size_t klen = strlen(MANIFEST_MARKER_ENV);
    for (char **p = environ; *p != NULL; p++) {
        if (strncmp(*p, MANIFEST_MARKER_ENV, klen) == 0 && (*p)[klen] == '=')
            continue; /* arun run by an engine of another arun: never pass that mark on */
        bool overridden = false;
        for (size_t i = 0; i < e->nenv && !overridden; i++) {
            size_t k = strlen(e->env[i].key);
            overridden = strncmp(*p, e->env[i].key, k) == 0 && (*p)[k] == '=';
        }
        if (!overridden)
            env[n++] = xstrdup(*p);
    }
    for (size_t i = 0; i < e->nenv; i++) {
        char *val;
        int rc = manifest_expand(e->env[i].value, v, &val, err);
        if (rc != 0) {
            manifest_argv_free(env);
            return rc;
        }
        env[n++] = xasprintf("%s=%s", e->env[i].key, val);
        free(val);
    }
    env[n] = NULL;
    *env_out = env;
    return 0;
}

int manifest_backend(const struct config *cfg, const struct config_engine *e,
                     const struct manifest_host *host, enum config_backend *out, struct buf *reason)
{
    bool native_ok = e->cmd != NULL && (cfg->runtime.allowed & CONFIG_ALLOW_NATIVE);
    bool container_allowed = e->image != NULL && (cfg->runtime.allowed & CONFIG_ALLOW_CONTAINER);
    const char *why = host->container_why ? host->container_why : "no container CLI";

    if (e->backend == CONFIG_BACKEND_REMOTE || (e->backend == CONFIG_BACKEND_AUTO && e->url)) {
        *out = CONFIG_BACKEND_REMOTE;
        buf_printf(reason, "remote: an API at %s that arun does not run", e->url);
        return 0;
    }
    if (e->backend == CONFIG_BACKEND_NATIVE) {
        *out = CONFIG_BACKEND_NATIVE;
        buf_puts(reason, "native: backend: native in the manifest");
        return 0;
    }
    if (e->backend == CONFIG_BACKEND_CONTAINER) {
        *out = CONFIG_BACKEND_CONTAINER;
        if (!host->container_ok) {
            buf_printf(reason, "backend: container, but %s", why);
            return -ENOTSUP;
        }
        buf_puts(reason, "container: backend: container in the manifest");
        return 0;
    }
    /* auto */
    if (container_allowed && host->container_ok &&
        (!native_ok || cfg->runtime.prefer == CONFIG_BACKEND_CONTAINER)) {
        *out = CONFIG_BACKEND_CONTAINER;
        buf_puts(reason, native_ok ? "container: preferred by runtime.prefer"
                                   : "container: the manifest gives only an image");
        return 0;
    }
    if (native_ok) {
        *out = CONFIG_BACKEND_NATIVE;
        if (container_allowed && cfg->runtime.prefer == CONFIG_BACKEND_CONTAINER)
            buf_printf(reason, "container preferred, but %s: running natively", why);
        else if (container_allowed)
            buf_puts(reason, "native: preferred by runtime.prefer");
        else
            buf_puts(reason, "native: the manifest gives only a cmd");
        return 0;
    }
    *out = CONFIG_BACKEND_CONTAINER;
    buf_printf(reason, "the manifest gives only an image, and %s", why);
    return -ENOTSUP;
}

static void hash_str(uint64_t *h, const char *s)
{
    for (const char *p = s ? s : "\x01"; *p != '\0'; p++) {
        *h ^= (unsigned char)*p;
        *h *= 1099511628211ull; /* FNV-1a: stable across runs and builds, which is what matters */
    }
    *h ^= 0xff;
    *h *= 1099511628211ull;
}

void manifest_hash(const struct config_engine *e, char out[17])
{
    uint64_t h = 1469598103934665603ull;
    char num[64];
    hash_str(&h, e->cmd);
    hash_str(&h, e->image);
    for (size_t i = 0; i < e->nargs; i++)
        hash_str(&h, e->args[i]);
    for (size_t i = 0; i < e->nenv; i++) {
        hash_str(&h, e->env[i].key);
        hash_str(&h, e->env[i].value);
    }
    hash_str(&h, e->cwd);
    hash_str(&h, e->url);
    snprintf(num, sizeof(num), "%d/%llu/%llu", e->port, (unsigned long long)e->memory.ram_mb,
             (unsigned long long)e->memory.vram_mb);
    hash_str(&h, num);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

void manifest_marker(const char *data_dir, const char *name, char *out, size_t cap)
{
    uint64_t h = 1469598103934665603ull;
    /* The directory, not its spelling: two aruns with data_dir ./arun-data in different working
     * directories are two data_dirs (one that does not exist yet is taken as written). */
    char *real = realpath(data_dir, NULL);
    hash_str(&h, real != NULL ? real : data_dir);
    free(real);
    snprintf(out, cap, "%016llx/%s", (unsigned long long)h, name);
}

void manifest_container_name(const char *data_dir, const char *name, char *out, size_t cap)
{
    char id[MANIFEST_MARKER_MAX];
    manifest_marker(data_dir, "", id, sizeof(id));
    snprintf(out, cap, "arun-%.8s-%s", id, name);
}

char *manifest_which(const char *prog)
{
    return fileio_which(prog);
}
