/*
 * config_cmd.c: `arun config check [FILE]`. See config_cmd.h. Works on the file alone: no
 * server is contacted and nothing is written.
 */
#include "cli/config_cmd.h"

#include <stdio.h>
#include <string.h>

#include "core/config.h"

const char config_cmd_usage[] =
    "usage: arun config check [FILE] [--json]\n"
    "\n"
    "Validates FILE (default: $ARUN_CONFIG, else ./arun.yaml, else the embedded defaults)\n"
    "and prints the resolved configuration as JSON, every key with its effective value.\n"
    "On errors prints each as FILE:LINE: KEY: message and exits 2.\n";

int config_cmd_main(int argc, char **argv)
{
    const char *file = NULL;
    if (argc < 2 || strcmp(argv[1], "check") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            fputs(config_cmd_usage, stdout);
            return 0;
        }
        fputs(config_cmd_usage, stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(config_cmd_usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            continue; /* JSON is the only output format; accepted for symmetry with listings */
        } else if (argv[i][0] == '-' || file != NULL) {
            fprintf(stderr, "arun config check: unexpected argument: %s\n%s", argv[i],
                    config_cmd_usage);
            return 2;
        }
        file = argv[i];
    }

    bool explicit_path;
    const char *path = config_pick_path(file, &explicit_path);
    struct config *cfg = NULL;
    struct buf err;
    buf_init(&err, 64 * 1024);
    int rc = 0;
    if (path == NULL) {
        cfg = config_default();
    } else if (config_load(path, &cfg, &err) != 0) {
        fputs(buf_cstr(&err), stderr);
        fprintf(stderr, "arun: %s: invalid\n", path);
        rc = 2;
    }
    if (rc == 0) {
        json_t *j = config_to_json(cfg);
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
        free(s);
        json_decref(j);
        fprintf(stderr, "arun: %s: ok\n", path ? path : "embedded defaults");
    }
    config_free(cfg);
    buf_cleanup(&err);
    return rc;
}
