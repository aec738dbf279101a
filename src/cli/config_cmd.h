/*
 * config_cmd.h: `arun config check [FILE]`: validates a configuration file and prints the
 * resolved configuration (every key with its effective value), or every error with file:line.
 */
#ifndef ARUN_CLI_CONFIG_CMD_H
#define ARUN_CLI_CONFIG_CMD_H

extern const char config_cmd_usage[];

/* argv starts at "config". Returns 0 when valid, 2 on errors or bad usage. */
int config_cmd_main(int argc, char **argv);

#endif
