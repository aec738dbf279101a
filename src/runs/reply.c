/*
 * reply.c: the answers the runs' routes share (reply.h).
 */
#include "runs/reply.h"

#include <errno.h>
#include <string.h>

#include "store/store.h"

const char *reply_tenant(struct http_request *r)
{
    return r->who.tenant;
}

void reply_run_error(struct http_request *r, const struct run_error *err)
{
    http_send_error(r, err->status ? err->status : 400, err->code[0] ? err->code : NULL,
                    err->param[0] ? err->param : NULL, "%s", err->message);
}

void reply_store_failed(struct http_request *r, int rc)
{
    if (rc == -EAGAIN)
        http_add_header(r, "retry-after", "1");
    http_send_error(r, rc == -EAGAIN ? 503 : 500, "store_unavailable", NULL,
                    "The store cannot take this request now (%s); try again.", strerror(-rc));
}
