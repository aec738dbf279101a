/*
 * api.h: the HTTP endpoints of arun-mock-engine (llama-server's OpenAI surface plus the /mock/
 * endpoints), the request counters behind /mock/stats, and the in-flight completions, each
 * paced by its own uv timer. One loop thread owns all of it.
 */
#ifndef ARUN_MOCK_API_H
#define ARUN_MOCK_API_H

#include <h2o.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "opts.h"

#define API_BODY_CAP (16u << 20) /* request entities h2o buffers for us; h2o answers 413 above */

/* The routes counted in /mock/stats' requests_by_path, in that object's order. */
enum api_route {
    API_ROUTE_HEALTH,
    API_ROUTE_MODELS,
    API_ROUTE_CHAT,
    API_ROUTE_TEXT,
    API_ROUTE_EMBEDDINGS,
    API_ROUTE_OTHER,
    API_ROUTE_COUNT,
};

struct api {
    const struct mock_opts *opts;       /* flags; outlive the api */
    uv_loop_t *loop;                    /* the completions' timers run here */
    int loaded;                         /* 0 during the loading phase: everything answers 503 */
    uint64_t requests;                  /* requests seen, /mock/ endpoints excluded */
    uint64_t by_route[API_ROUTE_COUNT]; /* the same, per route */
    unsigned concurrency;      /* completions in flight: from arrival to last byte or abort */
    unsigned peak_concurrency; /* the highest concurrency since start or /mock/reset */
    uint64_t aborted;          /* completions whose client left before the end */
    uint64_t events_sent;      /* token events written by streams (role and final ones aside) */
    char *last_body;           /* the last request entity (heap), NULL when none */
    size_t last_body_len;      /* its length in bytes */
    size_t rss_mb;             /* what --rss-mb allocated, for /mock/stats */
    h2o_linklist_t in_flight;  /* struct completion, exactly those counted in concurrency */
    uint64_t next_id;          /* counter part of chatcmpl-/cmpl- ids */
    uint32_t id_salt;          /* per-process part of those ids */
    struct buf scratch;        /* response bodies are built here, then copied to the pool */
};

/* Sets up the api in its loading phase. Allocates only the scratch buffer's bookkeeping. */
void api_init(struct api *a, const struct mock_opts *o, uv_loop_t *loop);
/* Frees what the api owns. Every completion must be gone (the server drained first). */
void api_cleanup(struct api *a);
/* Ends the loading phase: from now on the endpoints answer. */
void api_set_loaded(struct api *a, size_t rss_mb);
/* h2o's on_req: answers req now or later (a completion). Always returns 0 (handled). */
int api_handle(struct api *a, h2o_req_t *req);
/* Ends every completion in flight at once (shutdown): streams are cut, waiting non-streaming
 * requests get 503. Their memory goes when h2o disposes their requests. */
void api_abort_all(struct api *a);
/* Dies like a crashed engine, with no cleanup: prints why to stderr, then raises --crash-signal
 * or _exits with --crash-exit-code. Used by --crash-after-ms and --crash-after-tokens. */
_Noreturn void api_crash(const struct mock_opts *o, const char *why);

#endif
