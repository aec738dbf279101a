/*
 * manifest.h: turning an engine's manifest (its `engines.NAME` keys) into what is run: the
 * backend and why, the argv with ${…} expanded, the environment, and a hash that identifies the
 * manifest for provenance and adoption.
 */
#ifndef ARUN_ENGINES_MANIFEST_H
#define ARUN_ENGINES_MANIFEST_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"

/* The most bytes one expanded word may hold: far more than a command line needs (Linux takes
 * at most 128 KiB in one argument), and a bound on what the environment can add. */
#define MANIFEST_EXPAND_MAX (1u << 20)

/* Values of the ${…} variables. Other names are looked up in the environment. */
struct manifest_vars {
    const char *name;     /* ${NAME} */
    uint16_t port;        /* ${PORT} */
    const char *data_dir; /* ${DATA_DIR} */
};

/* What this machine offers to run engines with. */
struct manifest_host {
    bool container_ok;         /* a container CLI was found and works */
    const char *container_why; /* when not: why ("no podman or docker found on PATH") */
};

/* Expands ${PORT}, ${NAME}, ${DATA_DIR} and ${VAR} (environment) in s; "$$" is a literal "$".
 * Returns 0 and *out (heap), or -EINVAL with a sentence in err ("${MODEL_DIR} is not set"), or
 * -E2BIG when the result would pass MANIFEST_EXPAND_MAX bytes. */
int manifest_expand(const char *s, const struct manifest_vars *v, char **out,
                    struct buf *err) MUST_USE;

/* Splits a command line as a POSIX shell would split words: blanks separate, '…' and "…"
 * quote, backslash escapes; nothing else (no globs, no pipes, no variables: run without a
 * shell). Each word is then expanded with manifest_expand, so a variable holding spaces stays
 * one argument. Returns 0 and a NULL-terminated heap argv, or -EINVAL with a sentence. */
int manifest_argv(const char *cmd, const struct manifest_vars *v, char ***argv_out,
                  struct buf *err) MUST_USE;
void manifest_argv_free(char **argv);

/* Chooses the backend from the manifest, the policy (runtime.allowed, runtime.prefer) and the
 * host. Returns 0 and writes a sentence to reason ("container preferred, but no podman or
 * docker found: running natively"), or -ENOTSUP with the reason when the engine cannot run
 * here at all ("image only, and no podman or docker found on PATH"). */
int manifest_backend(const struct config *cfg, const struct config_engine *e,
                     const struct manifest_host *host, enum config_backend *out,
                     struct buf *reason) MUST_USE;

/* Every native engine process carries MANIFEST_MARKER_ENV=<data_dir id>/<name> in its
 * environment, and its children inherit it: a later arun on the same data_dir finds every
 * process an earlier one started (by scanning /proc/PID/environ), whether or not the earlier
 * one lived to record it. The id is a digest of data_dir, so two aruns with their own data_dirs
 * never take each other's engines. */
#define MANIFEST_MARKER_ENV "ARUN_ENGINE"
#define MANIFEST_MARKER_MAX 128 /* 16 hex digits, '/', an engine name (config caps it) */

/* Writes the marker value "<data_dir id>/<name>" into out (truncated to cap - 1 bytes). The id
 * is a digest of data_dir's real path (as written when it does not exist). */
void manifest_marker(const char *data_dir, const char *name, char *out, size_t cap);
/* The name of an engine's container: "arun-<first 8 digits of the data_dir id>-<name>", so two
 * aruns with their own data_dirs never take each other's containers. Its containers also carry
 * the label MANIFEST_DATA_DIR_LABEL=<data_dir id>. */
void manifest_container_name(const char *data_dir, const char *name, char *out, size_t cap);
#define MANIFEST_DATA_DIR_LABEL "arun.data_dir"

/* The environment for a native engine: the marker (first), arun's own environment without any
 * marker it inherited, then the manifest's env (expanded), as a NULL-terminated heap array of
 * "K=V". Returns 0 or -EINVAL with a sentence. */
int manifest_env(const struct config_engine *e, const struct manifest_vars *v, char ***env_out,
                 struct buf *err) MUST_USE;

/* A short hex digest of every key that changes what runs (cmd, image, args, env, cwd, url,
 * port, memory): written into 17 bytes. Two manifests with the same hash run the same thing. */
void manifest_hash(const struct config_engine *e, char out[17]);

/* Looks a program up on PATH like execvp would. Returns a heap path, or NULL. */
char *manifest_which(const char *prog);

#endif
