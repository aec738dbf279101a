/*
 * health.h: one health probe of an engine, by the manifest's `health` keys: an HTTP GET of
 * `path`, or a `cmd` whose exit 0 means healthy, or (probe: completion, once ready) a one-token
 * chat completion, because a /health that answers 200 while the GPU is broken is not health.
 * The supervisor decides what a result means for the engine's state.
 */
#ifndef ARUN_ENGINES_HEALTH_H
#define ARUN_ENGINES_HEALTH_H

#include <stdbool.h>
#include <uv.h>

#include "core/config.h"
#include "http/httpc.h"
#include "engines/manifest.h"

enum health_outcome {
    HEALTH_OK,      /* healthy */
    HEALTH_LOADING, /* answered 503: alive, loading (llama.cpp's "Loading model") */
    HEALTH_DOWN,    /* nothing listens yet (connection refused) */
    HEALTH_BAD,     /* timed out, another status, a broken answer, or the cmd failed */
};

struct health_result {
    enum health_outcome outcome;
    int status;       /* HTTP status when one came, else 0 */
    char detail[256]; /* a sentence: "health probe timed out after 2000 ms" */
};

typedef void (*health_cb)(const struct health_result *r, void *arg);
struct health_probe;

/* Starts one probe. completion: send the one-token completion instead of the GET (only the
 * HTTP kind; a cmd probe is always the cmd). Returns 0, or -errno with cb never called. cb runs
 * exactly once unless the probe is cancelled. */
int health_probe_start(uv_loop_t *loop, struct httpc *httpc, const struct config_engine *e,
                       uint16_t port, bool completion, const struct manifest_vars *vars,
                       health_cb cb, void *arg, struct health_probe **out) MUST_USE;
/* Cancels a probe in flight; cb is not called. */
void health_probe_cancel(struct health_probe *p);

#endif
