/*
 * ids.c: random ids (ids.h). getrandom(2) fills a per-thread buffer, so an id costs a copy and
 * a hex encoding, not a system call: runs create several ids per response at thousands of
 * responses a second.
 */
#include "core/ids.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "core/common.h"

#define POOL_BYTES 4096

static _Thread_local unsigned char pool[POOL_BYTES];
static _Thread_local size_t pool_left;

static void pool_fill(void)
{
    size_t got = 0;
    while (got < sizeof(pool)) {
        ssize_t n = getrandom(pool + got, sizeof(pool) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        ASSERT(n > 0); /* getrandom blocks until seeded and does not fail otherwise */
        got += (size_t)n;
    }
    pool_left = sizeof(pool);
}

void ids_new(char *out, size_t cap, const char *prefix)
{
    static const char hex[] = "0123456789abcdef";
    size_t plen = strlen(prefix);
    ASSERT(cap >= plen + IDS_RANDOM_HEX + 1);
    memcpy(out, prefix, plen);
    char *p = out + plen;
    for (size_t i = 0; i < IDS_RANDOM_HEX / 2; i++) {
        if (pool_left == 0)
            pool_fill();
        unsigned char b = pool[sizeof(pool) - pool_left];
        pool_left--;
        *p++ = hex[b >> 4];
        *p++ = hex[b & 15];
    }
    *p = '\0';
}
