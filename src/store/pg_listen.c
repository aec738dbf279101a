/*
 * pg_listen.c: a shared store's notices (store_int.h). PLACEHOLDER while it is being written:
 * it never listens.
 */
#include <stdlib.h>

#include "store/store_int.h"

struct pg_listen {
    int unused;
};

struct pg_listen *pg_listen_start(uv_loop_t *loop, const char *url, store_notice_cb cb, void *arg)
{
    (void)loop;
    (void)url;
    (void)cb;
    (void)arg;
    return NULL;
}

bool pg_listen_up(const struct pg_listen *l)
{
    (void)l;
    return false;
}

void pg_listen_stop(struct pg_listen *l)
{
    free(l);
}
