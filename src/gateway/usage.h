/*
 * usage.h: token counts read from engines' answers for accounting, without building JSON trees
 * where a scan will do (a whole parse of each answer or chunk cost more CPU than the relay).
 */
#ifndef ARUN_GATEWAY_USAGE_H
#define ARUN_GATEWAY_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_usage {
    int64_t prompt_tokens;     /* from the engine's usage, -1 unknown */
    int64_t completion_tokens; /* the same */
};

/* Reads the counts of a non-streaming answer's "usage" object (its last one, as engines put it
 * after the choices) into u; leaves what is not there unchanged. */
void gw_usage_scan_body(struct gw_usage *u, const char *body, size_t len);
/* Looks at one streamed event's data: when it carries a usage object, the counts go into u.
 * Returns whether the event is the usage-only chunk (empty choices) that include_usage adds. */
bool gw_usage_event(struct gw_usage *u, const char *data, size_t len);

#endif
