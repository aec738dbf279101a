/*
 * nodes_cmd.h: `arun nodes` (contract section 3): the nodes that share this server's store, as
 * a table (NODE ADDRESS STATE ENGINES LAST-SEEN) or, with --json, GET /v1/nodes as it is. It
 * talks to a running server through cli/client.h.
 */
#ifndef ARUN_CLI_NODES_CMD_H
#define ARUN_CLI_NODES_CMD_H

#include <jansson.h>

#include "cli/table.h"

#define NODES_NCOLS 5
/* Engines listed by name in the ENGINES column; a node with more shows counts instead. */
#define NODES_ENGINES_LISTED 4

extern const char nodes_cmd_usage[];

/* The table of `arun nodes`: nodes_table_header inits t with the header row, STATE the colour
 * column; nodes_table_row appends one node object's row (GET /v1/nodes). ENGINES is
 * "qwen:ready,small:stopped" (NAME:STATE of each), or "6 (2 ready)" past
 * NODES_ENGINES_LISTED, "-" with none; LAST-SEEN "2s ago" from last_seen_ms_ago. */
void nodes_table_header(struct table *t);
void nodes_table_row(struct table *t, const json_t *node);

/* argv starts at "nodes". Returns the exit code: 0 success, 1 the server refused (not an
 * admin), 2 bad usage, 3 server unreachable. */
int nodes_cmd_main(int argc, char **argv);

#endif
