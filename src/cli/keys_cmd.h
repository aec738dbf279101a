/*
 * keys_cmd.h: `arun keys create|ls|revoke` (contract section 3 and 6, docs/cli.md). They work
 * whether or not a server runs on the data_dir, so the first admin key can be made before any
 * key exists:
 *   - with --server URL or $ARUN_URL: over HTTP (/v1/keys) with an admin key;
 *   - otherwise on the config's data_dir (--config FILE, $ARUN_CONFIG, ./arun.yaml): through the
 *     running server's owner-only socket DATA_DIR/arun.sock, or, when no server listens there,
 *     on the store itself (tenancy/keys.c on a loop of the CLI's own).
 */
#ifndef ARUN_CLI_KEYS_CMD_H
#define ARUN_CLI_KEYS_CMD_H

#include <stdbool.h>

#include "core/common.h"

#define KEYS_CMD_PROCEED (-1) /* keys_cmd_parse: the arguments are good, act on them */
#define KEYS_CMD_PAGE 100     /* keys ls over HTTP: the API's largest page */

extern const char keys_cmd_usage[];

enum keys_cmd_action { KEYS_CMD_CREATE, KEYS_CMD_LS, KEYS_CMD_REVOKE };

struct keys_cmd_opts {
    enum keys_cmd_action action;
    const char *tenant, *role, *name; /* create (role NULL: member) */
    const char *id;                   /* revoke */
    const char *config;               /* --config, or NULL */
    const char *server, *api_key;     /* --server, --api-key, or NULL */
    bool json;
};

/* Parses argv (starting at "keys") into *o. Returns KEYS_CMD_PROCEED, or the exit code when
 * the verb ends here: 0 after --help, 2 after a usage error (printed with the usage). */
int keys_cmd_parse(int argc, char **argv, struct keys_cmd_opts *o) MUST_USE;

/* argv starts at "keys". Returns the exit code: 0 success, 1 refused or failed (unknown id, a
 * server that holds the data_dir but does not answer its socket), 2 usage or configuration
 * error, 3 the --server is unreachable. */
int keys_cmd_main(int argc, char **argv);

#endif
