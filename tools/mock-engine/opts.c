/*
 * opts.c: parses the flags of arun-mock-engine with getopt_long. Every number is checked against
 * a range here, so the rest of the program can trust struct mock_opts.
 */
#include "opts.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_MODEL,
    OPT_LOAD_MS,
    OPT_TOKENS_PER_S,
    OPT_MAX_TOKENS,
    OPT_CRASH_AFTER_MS,
    OPT_CRASH_EXIT_CODE,
    OPT_CRASH_SIGNAL,
    OPT_HANG,
    OPT_GARBAGE,
    OPT_RSS_MB,
    OPT_LOG_EVERY_MS,
    OPT_QUIET_LOAD,
    OPT_API_KEY,
    OPT_FAIL_STATUS,
    OPT_EMBEDDING_DIM,
    OPT_IGNORE_EOS,
    OPT_SSE_CRLF,
    OPT_CRASH_AFTER_TOKENS,
    OPT_ECHO_PREFIX,
    OPT_ECHO_SPLIT,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"model", required_argument, NULL, OPT_MODEL},
    {"load-ms", required_argument, NULL, OPT_LOAD_MS},
    {"tokens-per-s", required_argument, NULL, OPT_TOKENS_PER_S},
    {"max-tokens", required_argument, NULL, OPT_MAX_TOKENS},
    {"crash-after-ms", required_argument, NULL, OPT_CRASH_AFTER_MS},
    {"crash-exit-code", required_argument, NULL, OPT_CRASH_EXIT_CODE},
    {"crash-signal", required_argument, NULL, OPT_CRASH_SIGNAL},
    {"hang", no_argument, NULL, OPT_HANG},
    {"garbage", no_argument, NULL, OPT_GARBAGE},
    {"rss-mb", required_argument, NULL, OPT_RSS_MB},
    {"log-every-ms", required_argument, NULL, OPT_LOG_EVERY_MS},
    {"quiet-load", no_argument, NULL, OPT_QUIET_LOAD},
    {"api-key", required_argument, NULL, OPT_API_KEY},
    {"fail-status", required_argument, NULL, OPT_FAIL_STATUS},
    {"embedding-dim", required_argument, NULL, OPT_EMBEDDING_DIM},
    {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
    {"sse-crlf", no_argument, NULL, OPT_SSE_CRLF},
    {"crash-after-tokens", required_argument, NULL, OPT_CRASH_AFTER_TOKENS},
    {"echo-prefix", no_argument, NULL, OPT_ECHO_PREFIX},
    {"echo-split", required_argument, NULL, OPT_ECHO_SPLIT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

void opts_usage(FILE *f)
{
    fputs("usage: arun-mock-engine [flags]\n"
          "A stand-in for llama.cpp's llama-server that generates deterministic text.\n"
          "  --host ADDR            address to bind (127.0.0.1)\n"
          "  --port N               port to bind, 0 = any free port (8080)\n"
          "  --model NAME           model id (mock)\n"
          "  --load-ms N            loading phase: every endpoint answers 503 (0)\n"
          "  --tokens-per-s N       generation pace, 0 = as fast as possible (0)\n"
          "  --max-tokens N         answer cap when a request sets none (256)\n"
          "  --ignore-eos           answers always run to the cap\n"
          "  --embedding-dim N      embedding length unless the request asks (16)\n"
          "  --crash-after-ms N     die N ms after start (exit status 1)\n"
          "  --crash-exit-code N    the exit status of that death (1)\n"
          "  --crash-signal N       die by signal N instead (e.g. 6, 9, 11)\n"
          "  --crash-after-tokens N die once a stream has sent N tokens\n"
          "  --sse-crlf             end SSE lines with CRLF, as sse-starlette does\n"
          "  --echo-prefix          a continued answer repeats its prefix first (llama-server)\n"
          "  --echo-split N         ... in events of N bytes of their own (implies --echo-prefix)\n"
          "  --hang                 accept connections, never answer\n"
          "  --garbage              model endpoints answer broken JSON and SSE\n"
          "  --rss-mb N             allocate and touch N MiB once loaded (0)\n"
          "  --log-every-ms N       progress line every N ms while loading (0 = none)\n"
          "  --quiet-load           print nothing while loading\n"
          "  --api-key KEY          require Authorization: Bearer KEY (not on /health)\n"
          "  --fail-status CODE     model endpoints answer CODE with an OpenAI error\n"
          "  --help                 this text\n"
          "See docs/mock-engine.md.\n",
          f);
}

/* Reads a decimal integer in [min, max] or says which flag is wrong. */
static int parse_int(const char *flag, const char *s, long min, long max, int *out, FILE *err)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        fprintf(err, "arun-mock-engine: --%s wants an integer from %ld to %ld, got \"%s\"\n", flag,
                min, max, s);
        return -EINVAL;
    }
    *out = (int)v;
    return 0;
}

static int set_int_opt(struct mock_opts *o, int id, const char *arg, FILE *err)
{
    switch (id) {
    case OPT_PORT:
        return parse_int("port", arg, 0, 65535, &o->port, err);
    case OPT_LOAD_MS:
        return parse_int("load-ms", arg, 0, INT_MAX, &o->load_ms, err);
    case OPT_TOKENS_PER_S:
        return parse_int("tokens-per-s", arg, 0, 1000000, &o->tokens_per_s, err);
    case OPT_MAX_TOKENS:
        return parse_int("max-tokens", arg, 0, OPTS_MAX_TOKENS_CAP, &o->max_tokens, err);
    case OPT_CRASH_AFTER_MS:
        return parse_int("crash-after-ms", arg, 1, INT_MAX, &o->crash_after_ms, err);
    case OPT_CRASH_EXIT_CODE:
        return parse_int("crash-exit-code", arg, 0, 255, &o->crash_exit_code, err);
    case OPT_CRASH_SIGNAL:
        return parse_int("crash-signal", arg, 1, 64, &o->crash_signal, err);
    case OPT_CRASH_AFTER_TOKENS:
        return parse_int("crash-after-tokens", arg, 1, OPTS_MAX_TOKENS_CAP, &o->crash_after_tokens,
                         err);
    case OPT_RSS_MB:
        return parse_int("rss-mb", arg, 0, OPTS_RSS_MB_CAP, &o->rss_mb, err);
    case OPT_LOG_EVERY_MS:
        return parse_int("log-every-ms", arg, 0, INT_MAX, &o->log_every_ms, err);
    case OPT_FAIL_STATUS:
        return parse_int("fail-status", arg, 400, 599, &o->fail_status, err);
    case OPT_ECHO_SPLIT:
        o->echo_prefix = 1;
        return parse_int("echo-split", arg, 1, OPTS_MAX_TOKENS_CAP, &o->echo_split, err);
    case OPT_EMBEDDING_DIM:
        return parse_int("embedding-dim", arg, 1, OPTS_EMBEDDING_DIM_CAP, &o->embedding_dim, err);
    }
    ASSERT(!"not an integer option");
}

int opts_parse(struct mock_opts *o, int argc, char **argv, FILE *err)
{
    *o = (struct mock_opts){
        .host = "127.0.0.1",
        .port = 8080,
        .model = "mock",
        .max_tokens = 256,
        .crash_exit_code = 1,
        .embedding_dim = 16,
    };
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case OPT_HOST:
            o->host = optarg;
            break;
        case OPT_MODEL:
            o->model = optarg;
            break;
        case OPT_API_KEY:
            o->api_key = optarg;
            break;
        case OPT_HANG:
            o->hang = 1;
            break;
        case OPT_GARBAGE:
            o->garbage = 1;
            break;
        case OPT_QUIET_LOAD:
            o->quiet_load = 1;
            break;
        case OPT_IGNORE_EOS:
            o->ignore_eos = 1;
            break;
        case OPT_SSE_CRLF:
            o->sse_crlf = 1;
            break;
        case OPT_ECHO_PREFIX:
            o->echo_prefix = 1;
            break;
        case OPT_HELP:
            opts_usage(stdout);
            return 1;
        case '?':
        case ':':
            fprintf(err, "arun-mock-engine: unknown flag or missing value: %s (try --help)\n",
                    argv[optind - 1]);
            return -EINVAL;
        default:
            rc = set_int_opt(o, c, optarg, err);
        }
        if (rc != 0)
            return rc;
    }
    if (optind < argc) {
        fprintf(err, "arun-mock-engine: unexpected argument \"%s\" (try --help)\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}
