/*
 * serve.h: `arun serve`: wires the daemon's modules together (config, store, HTTP server,
 * runtime endpoints, signals) and runs the loop until a signal drains it. The only file besides
 * main.c that may include every layer.
 */
#ifndef ARUN_SERVE_H
#define ARUN_SERVE_H

extern const char serve_usage[];

/* Runs `arun serve` with argv after the verb. Returns the process exit code: 0 after a clean
 * drain, 1 on a runtime failure (port in use, store unusable), 2 on a usage or config error. */
int serve_main(int argc, char **argv);

#endif
