/*
 * container.h: running engines as podman or docker containers by driving their command-line
 * client. Every call spawns the CLI (argv, never a shell) on the libuv loop, captures its stdout
 * and stderr up to CONTAINER_OUTPUT_CAP, kills it with SIGKILL when its timeout passes, and hands
 * the result to a callback. Nothing here blocks the loop, talks to a daemon socket, or decides
 * policy (what to do with an existing container of the same name is the supervisor's call).
 *
 * The CLI inherits arun's environment, so CONTAINERS_CONF, DOCKER_HOST and friends work.
 *
 * Callbacks: a function that takes a callback and returns an error never calls it (libuv). One
 * that returns 0 calls it exactly once, on the loop thread; when the rt is freed first, with
 * -ECANCELED. `why`, when not NULL, is a sentence for people: the CLI's own error line, trimmed,
 * with what to change when the cause is one we know (docs/internals/container.md). Strings and
 * JSON handed to a callback are borrowed: valid until it returns.
 */
#ifndef ARUN_ENGINES_CONTAINER_H
#define ARUN_ENGINES_CONTAINER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "core/common.h"
#include "core/config.h"

/* stdout and stderr kept per call; the rest is dropped (a `ps` of thousands of containers is
 * far below it, a runaway CLI cannot make arun allocate without bound). */
#define CONTAINER_OUTPUT_CAP (1u << 20)
/* Default timeout of a call (inspect, ps, rm, version): these answer in well under a second on
 * a healthy host; 30 s leaves room for a host busy pulling or starting other containers. */
#define CONTAINER_CALL_TIMEOUT_MS 30000
/* Default timeout of `run` when the spec gives none: it may pull a multi-GB image first (vLLM's
 * images are ~10 GB), so it is long; the supervisor's start timeout bounds the whole start. */
#define CONTAINER_RUN_TIMEOUT_MS (30u * 60 * 1000)

enum container_kind {
    CONTAINER_PODMAN,
    CONTAINER_DOCKER,
};

struct container_rt; /* a detected container CLI: its path, kind, version; opaque */

/* Detects the CLI: looks up podman and/or docker on PATH (preference "auto" = podman first, then
 * docker; "podman" or "docker" = only that one), runs `CLI version --format json`, and for podman
 * a trivial container (`run --rm --network none --rootfs /:O /bin/true`, ~0.2 s) so that an OCI
 * runtime that cannot start containers on this host is reported now, not at the first engine
 * start. With "auto", a CLI that is found but does not work is skipped for the next one; when
 * none works the first one's error is reported. Detection cannot be cancelled; it ends within
 * two call timeouts (CONTAINER_CALL_TIMEOUT_MS) per candidate.
 * cb gets 0 and rt (the caller owns it: container_rt_free), or -ENOENT ("no podman or docker found
 * on PATH (PATH=…)"), or -EIO with a sentence saying what is wrong and what to change (crun on
 * hybrid cgroups → set runtime = "runc" in containers.conf; the RLIMIT_NOFILE failure → lower
 * default_ulimits; docker without its daemon → start dockerd), or -ETIMEDOUT.
 * Returns 0, or -EINVAL for an unknown preference. */
typedef void (*container_detect_cb)(int status, struct container_rt *rt, const char *why,
                                    void *arg);
int container_detect(uv_loop_t *loop, const char *preference, container_detect_cb cb,
                     void *arg) MUST_USE;

/* An rt for a given CLI without detection (tests, and a path named in the config). version may
 * be NULL ("unknown"). The caller owns it. */
struct container_rt *container_rt_new(uv_loop_t *loop, const char *path, enum container_kind kind,
                                      const char *version);

/* Frees the rt. Calls still running have their CLI killed and their callback called with
 * -ECANCELED (a follower: on_exit(-ECANCELED)) once the child is reaped: run the loop after this
 * until they are done. NULL is a no-op. */
void container_rt_free(struct container_rt *rt);

/* "podman 4.3.1". */
const char *container_rt_name(const struct container_rt *rt);
enum container_kind container_rt_kind(const struct container_rt *rt);
/* The CLI's path, as found on PATH or given to container_rt_new. */
const char *container_rt_path(const struct container_rt *rt);
/* Sets the timeout of later calls other than run (whose spec has its own) and stop (whose
 * timeout grows with the container's stop timeout); 0 restores CONTAINER_CALL_TIMEOUT_MS. */
void container_rt_set_timeout_ms(struct container_rt *rt, uint32_t timeout_ms);

struct container_spec {
    const char *name;            /* container name: "arun-ENGINE"; [A-Za-z0-9][A-Za-z0-9_.-]* */
    const char *image;           /* image reference; must not start with '-' */
    const char *const *args;     /* appended after the image (the engine's command) */
    size_t nargs;                /* entries in args */
    const struct config_kv *env; /* -e KEY=VALUE each */
    size_t nenv;                 /* entries in env */
    const char *const *labels;   /* "arun.engine=NAME", "arun.manifest=HASH", … */
    size_t nlabels;              /* entries in labels */
    uint16_t host_port;          /* -p 127.0.0.1:HOST:CONTAINER when both are set */
    uint16_t container_port;     /* 0 = no port published */
    bool host_network;           /* --network host instead of -p */
    uint64_t memory_mb;          /* --memory Nm; 0 = no limit */
    bool gpus;                   /* podman: --device nvidia.com/gpu=all; docker: --gpus all */
    const char *pull;            /* --pull missing|always|never; NULL = the CLI's default */
    const char *const *extra;    /* extra CLI flags put before the image (advanced) */
    size_t nextra;               /* entries in extra */
    uint32_t timeout_ms;         /* 0 = CONTAINER_RUN_TIMEOUT_MS */
};

/* Result of a CLI call: status 0 or -errno; out is the CLI's stdout with surrounding whitespace
 * trimmed (never NULL); why is NULL on success, else a sentence (the CLI's own error line). */
typedef void (*container_done_cb)(int status, const char *out, const char *why, void *arg);

/* `run -d --name NAME --label L… [-p 127.0.0.1:H:C | --network host] [-e K=V…] [--memory Nm]
 * [gpu flags] [--pull P] EXTRA… IMAGE ARGS…`; out = the container id. An existing container
 * with the same name is NOT removed here (the supervisor decides; container_rm). Mind that a run
 * that fails after creating the container (its command not found in the image) leaves it in
 * state "created": remove it before trying again. Env values are on the CLI's argv, so visible
 * to local users in `ps` while the CLI runs (and in `inspect` anyway).
 * cb statuses: 0; -ENOENT when the image does not exist (and could not be pulled); -EIO (why
 * says); -ETIMEDOUT; -ECANCELED. Returns 0, or -EINVAL for a bad name, image or port pair. */
int container_run(struct container_rt *rt, const struct container_spec *s, container_done_cb cb,
                  void *arg) MUST_USE;

/* `stop -t SECS NAME`: SIGTERM (the image's stop signal), then SIGKILL after timeout_s; nothing
 * else. Its call timeout is timeout_s plus the rt's call timeout. cb gets -ENOENT when there is
 * no such container. Returns 0 or -EINVAL (bad name). */
int container_stop(struct container_rt *rt, const char *name, unsigned timeout_s,
                   container_done_cb cb, void *arg) MUST_USE;

/* `rm -f NAME`: kills it if running and removes it. No such container is success (status 0).
 * Returns 0 or -EINVAL (bad name). */
int container_rm(struct container_rt *rt, const char *name, container_done_cb cb,
                 void *arg) MUST_USE;

/* A container's state, from `container inspect`. */
struct container_state {
    char id[80];         /* full id */
    char status[24];     /* "running", "exited", "created", "paused", … */
    bool running;        /* State.Running */
    pid_t pid;           /* host pid of the container's init (0 when not running) */
    int exit_code;       /* State.ExitCode (meaningful once exited) */
    char started_at[40]; /* State.StartedAt as the CLI writes it (RFC 3339) */
    json_t *labels;      /* Config.Labels, an object (empty when none); borrowed */
};
typedef void (*container_inspect_cb)(int status, const struct container_state *st, const char *why,
                                     void *arg);
/* `container inspect NAME`, parsed. st is NULL unless status is 0. cb gets -ENOENT when there
 * is no such container, -EIO for output that is not what podman/docker write. Returns 0 or
 * -EINVAL (bad name). */
int container_inspect(struct container_rt *rt, const char *name, container_inspect_cb cb,
                      void *arg) MUST_USE;

/* `ps -a --filter label=FILTER --format json` (FILTER is "KEY" or "KEY=VALUE"): the containers
 * with that label, for adoption and cleaning leftovers. cb gets a JSON array (borrowed) of
 * {"name","id","state","labels":{…}} objects, podman's and docker's formats made the same
 * (docker's labels string is split at commas, so a value holding a comma is cut there). list is
 * NULL unless status is 0. Returns 0 or -EINVAL (empty filter). */
typedef void (*container_list_cb)(int status, json_t *list, const char *why, void *arg);
int container_list(struct container_rt *rt, const char *label_filter, container_list_cb cb,
                   void *arg) MUST_USE;

/* `logs -f NAME` (all the container's output since it started, then what comes): on_output gets
 * bytes as they come, stream 1 = stdout, 2 = stderr (not split into lines); on_exit when the
 * follower ends (the container stopped: status 0; the CLI failed: -ENOENT, -EIO); afterwards
 * the handle is freed by this module. *out is the handle to stop following. Returns 0, -EINVAL
 * (bad name) or the spawn error; no timeout applies. */
struct container_follow;
typedef void (*container_output_cb)(int stream, const char *p, size_t n, void *arg);
typedef void (*container_exit_cb)(int status, void *arg);
int container_logs_follow(struct container_rt *rt, const char *name, container_output_cb on_output,
                          container_exit_cb on_exit, void *arg,
                          struct container_follow **out) MUST_USE;
/* The same with `--since SINCE` (RFC 3339 time, unix seconds or a duration like "10m"): for
 * a container adopted after a restart, whose old output was already seen. NULL = all. */
int container_logs_follow_since(struct container_rt *rt, const char *name, const char *since,
                                container_output_cb on_output, container_exit_cb on_exit, void *arg,
                                struct container_follow **out) MUST_USE;
/* Kills the follower; neither callback is called afterwards. The handle is freed once the
 * child is reaped; do not use it again. Valid until on_exit returns (a no-op inside it). */
void container_follow_stop(struct container_follow *f);

/* Whether name is a valid container name: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128 bytes (what
 * podman and docker accept; also keeps a name from being read as a flag). */
bool container_name_valid(const char *name);

#endif
