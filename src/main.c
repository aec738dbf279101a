/*
 * main.c: argument parsing and dispatch to the verbs. Nothing else lives here.
 * Exit codes (contract section 3): 0 success, 1 runtime failure, 2 usage or configuration
 * error, 3 server unreachable.
 */
#include <stdio.h>
#include <string.h>

#include "cli/audit_cmd.h"
#include "cli/chat_cmd.h"
#include "cli/config_cmd.h"
#include "cli/doctor_cmd.h"
#include "cli/engines_cmd.h"
#include "cli/keys_cmd.h"
#include "cli/nodes_cmd.h"
#include "cli/runs_cmd.h"
#include "serve.h"

struct verb {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
    const char *summary;
};

static int version_main(int argc, char **argv)
{
    printf("arun %s\n", ARUN_VERSION);
    return 0;
}

static const char version_usage[] = "usage: arun version\n\nPrints arun's version.\n";

static int help_main(int argc, char **argv);

static const char help_usage[] = "usage: arun help [VERB]\n\nShows the help of a verb.\n";

static const struct verb verbs[] = {
    {"serve", serve_main, serve_usage, "run the daemon (engines, gateway, API)"},
    {"engines", engines_cmd_main, engines_cmd_usage,
     "list engines, or start|stop|restart one (running server)"},
    {"logs", logs_cmd_main, logs_cmd_usage, "print or follow an engine's output (running server)"},
    {"chat", chat_cmd_main, chat_cmd_usage,
     "ask a model; the answer streams to stdout (running server)"},
    {"runs", runs_cmd_main, runs_cmd_usage,
     "list durable runs (responses), or show|cancel|watch one (running server)"},
    {"keys", keys_cmd_main, keys_cmd_usage,
     "create, list or revoke API keys (running server or not: see arun keys --help)"},
    {"audit", audit_cmd_main, audit_cmd_usage,
     "admin actions and failed authentications, oldest first (running server)"},
    {"nodes", nodes_cmd_main, nodes_cmd_usage,
     "the nodes sharing the store: up, down or left, their engines (running server)"},
    {"doctor", doctor_cmd_main, doctor_cmd_usage,
     "check this machine and the config: GPU, memory, port, binaries, orphans"},
    {"config", config_cmd_main, config_cmd_usage, "check a configuration file: config check"},
    {"version", version_main, version_usage, "print the version"},
    {"help", help_main, help_usage, "show help for a verb"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "arun %s: the runtime for self-hosted AI\n\n"
            "usage: arun VERB [OPTIONS]\n\nverbs:\n",
            ARUN_VERSION);
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        fprintf(out, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(out, "\n`arun help VERB` or `arun VERB --help` shows a verb's options.\n"
                 "exit codes: 0 success, 1 runtime failure, 2 usage or configuration error, "
                 "3 server unreachable\n");
}

static const struct verb *find_verb(const char *name)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(verbs[i].name, name) == 0)
            return &verbs[i];
    return NULL;
}

static int help_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stdout);
        return 0;
    }
    const struct verb *v = find_verb(argv[1]);
    if (v == NULL) {
        fprintf(stderr, "arun help: unknown verb: %s\n", argv[1]);
        return 2;
    }
    fputs(v->usage, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return version_main(argc - 1, argv + 1);
    const struct verb *v = find_verb(argv[1]);
    if (v == NULL) {
        fprintf(stderr, "arun: unknown verb: %s\n\n", argv[1]);
        usage(stderr);
        return 2;
    }
    return v->run(argc - 1, argv + 1);
}
