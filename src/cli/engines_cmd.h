/*
 * engines_cmd.h: the client verbs of the engine supervisor (contract section 3): `arun engines`
 * (the table of engines, or --json), `arun engines start|stop|restart NAME [--wait]`, and
 * `arun logs NAME [-n LINES] [-f]`. They talk to a running server through cli/client.h.
 */
#ifndef ARUN_CLI_ENGINES_CMD_H
#define ARUN_CLI_ENGINES_CMD_H

extern const char engines_cmd_usage[];
extern const char logs_cmd_usage[];

/* argv starts at "engines". Returns the exit code: 0 success, 1 the server refused (unknown
 * engine, cannot start) or a waited-for engine failed, 2 bad usage, 3 server unreachable. */
int engines_cmd_main(int argc, char **argv);

/* argv starts at "logs". Returns the exit code: 0 (also when -f ends by Ctrl-C or because the
 * server ended the stream), 1 the server refused, 2 bad usage, 3 server unreachable or the
 * stream dropped. */
int logs_cmd_main(int argc, char **argv);

#endif
