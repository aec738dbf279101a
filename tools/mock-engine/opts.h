/*
 * opts.h: the command line of arun-mock-engine. docs/mock-engine.md describes every flag; the
 * --help text printed by opts_usage() is the short form of it.
 */
#ifndef ARUN_MOCK_OPTS_H
#define ARUN_MOCK_OPTS_H

#include <stdio.h>

#include "core/common.h"

#define OPTS_MAX_TOKENS_CAP 100000 /* bounds one answer: ~1 MB of text, seconds of pacing */
#define OPTS_RSS_MB_CAP 262144     /* 256 GiB: more than any machine of this project has */
#define OPTS_EMBEDDING_DIM_CAP 8192

struct mock_opts {
    const char *host;       /* address to bind, "127.0.0.1" unless --host */
    int port;               /* 0 asks the kernel for a free port */
    const char *model;      /* model id served by /v1/models and echoed when a request has none */
    int load_ms;            /* length of the loading phase (503 "Loading model") */
    int tokens_per_s;       /* generation pace; 0 = as fast as possible */
    int max_tokens;         /* answer cap when a request gives no max_tokens */
    int crash_after_ms;     /* 0 = never; otherwise die this long after start */
    int crash_exit_code;    /* exit status of that death when crash_signal is 0 */
    int crash_signal;       /* when not 0, die by this signal instead */
    int hang;               /* accept connections, never answer */
    int garbage;            /* model endpoints answer broken JSON / SSE */
    int rss_mb;             /* MiB allocated and touched once loaded */
    int log_every_ms;       /* progress line period while loading; 0 = none */
    int quiet_load;         /* print nothing while loading (but the port line when --port 0) */
    const char *api_key;    /* NULL = no auth */
    int fail_status;        /* 0, or the HTTP status every model endpoint answers */
    int embedding_dim;      /* length of the embedding vectors unless the request asks */
    int ignore_eos;         /* answers always run to max_tokens (finish_reason "length") */
    int sse_crlf;           /* SSE lines end with CRLF (as sse-starlette frames them), not LF */
    int crash_after_tokens; /* 0 = never; otherwise die once a stream has sent this many tokens */
    int echo_prefix;        /* a continued answer repeats its prefix first, as llama-server does */
    int echo_split;         /* 0: the repeat rides on the first token; N: in events of N bytes */
};

/* Fills o from argv. Returns 0, 1 when --help was printed (exit 0), or -EINVAL after printing
 * a sentence naming the bad flag to err. The strings in o point into argv. */
int opts_parse(struct mock_opts *o, int argc, char **argv, FILE *err) MUST_USE;
/* Prints the flag summary. */
void opts_usage(FILE *f);

#endif
