/*
 * ids.h: random object ids for the API (resp_…, msg_…, fc_…, conv_…): a prefix and 32 lower-case
 * hex digits from the kernel's random source, so ids can be neither guessed nor ordered (a
 * sequential id would tell one tenant how busy another is). 128 bits: a collision is not a case
 * to handle.
 */
#ifndef ARUN_CORE_IDS_H
#define ARUN_CORE_IDS_H

#include <stddef.h>

#define IDS_RANDOM_HEX 32 /* hex digits after the prefix */
#define IDS_MAX 64        /* bytes of an id made here, NUL included, for prefixes under 31 bytes */

/* Writes prefix (e.g. "resp_") and IDS_RANDOM_HEX random hex digits, NUL-terminated, to out.
 * cap must hold strlen(prefix) + IDS_RANDOM_HEX + 1 bytes (IDS_MAX does for short prefixes).
 * Never fails: the random source is getrandom(2), buffered per thread. */
void ids_new(char *out, size_t cap, const char *prefix);

#endif
