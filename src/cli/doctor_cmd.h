/*
 * doctor_cmd.h: `arun doctor`: checks this machine and a configuration for what would stop arun
 * or its engines from running (contract section 3): the config, memory, the GPU, the listen
 * port, data_dir, every engine's binary or container CLI, and engine processes left running by
 * an arun that is gone. It needs no server and changes nothing.
 */
#ifndef ARUN_CLI_DOCTOR_CMD_H
#define ARUN_CLI_DOCTOR_CMD_H

extern const char doctor_cmd_usage[];

/* argv starts at "doctor". Returns 0 when no check failed (warnings allowed), 1 when one did,
 * 2 on bad usage. */
int doctor_cmd_main(int argc, char **argv);

#endif
