/*
 * audit_cmd.h: `arun audit [--since T] [--limit N] [--json]` (contract section 3): the audit
 * trail of a running server (GET /v1/audit, admin) as a table, oldest first:
 *   TIME ACTOR TENANT ACTION TARGET OUTCOME REMOTE
 * It talks to the server through cli/client.h and pages through every event since T.
 */
#ifndef ARUN_CLI_AUDIT_CMD_H
#define ARUN_CLI_AUDIT_CMD_H

#include <stdint.h>

#include "core/common.h"

#define AUDIT_CMD_PROCEED (-1) /* audit_cmd_since: the value is good */

extern const char audit_cmd_usage[];

/* Turns a --since value into what GET /v1/audit takes: epoch milliseconds and ISO-8601 UTC
 * times pass as they are; a duration back from now_ms ("90s", "15m", "2h", "7d") becomes
 * epoch milliseconds. Returns 0 with *out (heap, the caller frees), or -EINVAL. */
int audit_cmd_since(const char *value, int64_t now_ms, char **out) MUST_USE;

/* argv starts at "audit". Returns the exit code: 0 success, 1 the server refused (not an admin
 * key, a bad --since), 2 bad usage, 3 server unreachable. */
int audit_cmd_main(int argc, char **argv);

#endif
