/*
 * runs_cmd.h: the client verbs of durable runs (contract section 3): `arun runs` (the table of
 * responses, or --json), `arun runs show ID`, `arun runs cancel ID` and `arun runs watch ID`.
 * They talk to a running server's Responses API (docs/responses.md) through cli/client.h.
 *
 * The argument parsing and the renderings are pure functions, declared here for the unit
 * tests (tests/unit/test_runs_cmd.c).
 */
#ifndef ARUN_CLI_RUNS_CMD_H
#define ARUN_CLI_RUNS_CMD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli/table.h"
#include "core/buf.h"

#define RUNS_PROCEED (-1)       /* runs_cmd_parse: the arguments are good, act on them */
#define RUNS_LIMIT_DEFAULT 20   /* rows `arun runs` shows: the newest, like the API's page */
#define RUNS_LIMIT_MAX 1000000L /* -n: only guards the parse; 0 means all */
#define RUNS_PAGE_MAX 100       /* the API's largest page (limit 1-100) */
#define RUNS_NCOLS 8            /* ID STATUS MODEL CREATED QUEUED TTFT TOK/S DURATION */
#define RUNS_NCOLS_TENANT 9     /* and TENANT after MODEL */

extern const char runs_cmd_usage[];

enum runs_action { RUNS_LIST, RUNS_SHOW, RUNS_CANCEL, RUNS_WATCH };

struct runs_opts {
    enum runs_action action;
    const char *id;               /* show, cancel, watch: the response id (points into argv) */
    const char *status;           /* list: --status, or NULL for every status */
    const char *tenant;           /* --tenant T (an admin acts for T; list: "*" every tenant) */
    long limit;                   /* list: rows to show, newest first; 0 = all */
    bool json;                    /* print the server's JSON instead */
    bool verbose;                 /* watch: a note per reconnection */
    unsigned reconnect_s;         /* watch: give up after the server is away this long */
    const char *server, *api_key; /* --server, --api-key (into argv), or NULL */
};

/* Parses argv (starting at "runs") into *o. Returns RUNS_PROCEED, or the exit code when the
 * verb ends here: 0 after --help (printed to stdout), 2 after a usage error (printed to
 * stderr with the usage). */
int runs_cmd_parse(int argc, char **argv, struct runs_opts *o) MUST_USE;

/* The `arun runs` table. runs_have_tenant: whether some Response of the list carries its tenant
 * (`tenant`, or `arun.tenant`: an admin's view of every tenant); runs_table_header inits t with
 * the header, ID STATUS MODEL [TENANT] CREATED QUEUED TTFT TOK/S DURATION, STATUS the colour
 * column. runs_table_row appends one row for a Response object: CREATED is how long ago it was
 * created ("3m12s ago"); QUEUED and TTFT the provenance's arun.timings.queued_ms and ttft_ms;
 * TOK/S the output tokens per second of generation (arun.timings.tokens_per_s when the server
 * sends it, else usage.output_tokens over total_ms - queued_ms - ttft_ms); DURATION how long it
 * ran (arun.timings.total_ms, else completed_at - created_at, else, while queued or in
 * progress, the time so far). What the Response lacks reads "-". now_ms is the wall clock. */
bool runs_have_tenant(const json_t *responses);
void runs_table_header(struct table *t, bool tenant);
void runs_table_row(struct table *t, const json_t *response, int64_t now_ms);

/* Lays a Response object out for a person (`arun runs show`): its fields one a line, the
 * provenance extension `arun` flattened (timings.ttft_ms …), then the output: messages' text
 * and function calls. Returns 0 or -ENOBUFS (out's cap reached). */
int runs_show_render(const json_t *response, int64_t now_ms, struct buf *out);

/* argv starts at "runs". Returns the exit code: 0 success (watch: the run completed), 1 the
 * server refused (unknown id, not cancellable) or the watched run ended failed, cancelled or
 * incomplete, 2 bad usage, 3 server unreachable. */
int runs_cmd_main(int argc, char **argv);

#endif
