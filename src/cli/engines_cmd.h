/*
 * engines_cmd.h: the client verbs of the engine supervisor (contract section 3): `arun engines`
 * (the table of engines, or --json), `arun engines start|stop|restart NAME [--wait]`, and
 * `arun logs NAME [-n LINES] [-f]`. They talk to a running server through cli/client.h.
 */
#ifndef ARUN_CLI_ENGINES_CMD_H
#define ARUN_CLI_ENGINES_CMD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli/table.h"
#include "core/buf.h"

#define ENGINES_NCOLS_MAX 13      /* NAME … REASON with the VRAM column */
#define WAIT_EXIT_INTERRUPTED 130 /* --wait ended by Ctrl-C: 128 + SIGINT, the shell's way */

extern const char engines_cmd_usage[];
extern const char logs_cmd_usage[];

/* The table of `arun engines`. engines_table_header inits t with the header row: NAME STATE
 * MODELS BACKEND PID PORT MEM [VRAM] IN-FLIGHT QUEUED UPTIME RESTARTS REASON, VRAM only when
 * vram (engines_have_vram of the list: some engine declares or uses VRAM), STATE the colour
 * column. engines_table_row appends one engine object's row (GET /v1/engines): a field the
 * server does not send reads "-"; UPTIME is uptime_s, else the time since started_at (now_ms
 * is the wall clock). */
bool engines_have_vram(const json_t *engines);
void engines_table_header(struct table *t, bool vram);
void engines_table_row(struct table *t, const json_t *engine, int64_t now_ms);

/* What `engines start NAME --wait` shows: the engine's state, since when, the expected load
 * time and the last log line, taken from engine objects and engine.state events alike. */
struct engines_progress {
    char name[128];
    char state[32];
    char *reason;        /* heap or NULL */
    char *log_line;      /* heap or NULL: last_log_line */
    int64_t expected_ms; /* expected_load_ms, else last_load_ms; -1 unknown */
    int64_t since_ms;    /* wall ms the current start began (started_at), else when the state
                            was first seen; -1 before any */
};

void engines_progress_init(struct engines_progress *p, const char *name);
void engines_progress_cleanup(struct engines_progress *p);
/* Takes an engine object or an engine.state event's data: a member it lacks leaves what was
 * known. Returns whether the state changed. now_ms is the wall clock. */
bool engines_progress_take(struct engines_progress *p, const json_t *engine, int64_t now_ms);
/* Appends the progress line, e.g. "m1: loading 12 s of ~40 s | loading weights 40%": the
 * elapsed time while starting or loading, the reason when not ready, the last log line when
 * with_log; control bytes read as spaces; cut to width bytes (0: whole) without splitting a
 * UTF-8 sequence. No newline. */
void engines_progress_line(const struct engines_progress *p, int64_t now_ms, bool with_log,
                           size_t width, struct buf *out);

/* argv starts at "engines". Returns the exit code: 0 success, 1 the server refused (unknown
 * engine, cannot start) or a waited-for engine failed (or --timeout passed), 2 bad usage, 3
 * server unreachable (or gone while waiting), 130 Ctrl-C while waiting. */
int engines_cmd_main(int argc, char **argv);

/* argv starts at "logs". Returns the exit code: 0 (also when -f ends by Ctrl-C or because the
 * server ended the stream), 1 the server refused, 2 bad usage, 3 server unreachable or the
 * stream dropped. */
int logs_cmd_main(int argc, char **argv);

#endif
