/*
 * http_status.h: facts about HTTP status codes shared by the server and arun-mock-engine.
 */
#ifndef ARUN_CORE_HTTP_STATUS_H
#define ARUN_CORE_HTTP_STATUS_H

/* The reason phrase for an HTTP/1.1 status line ("Not Found"); a generic one for codes not
 * listed. Never NULL. */
const char *http_status_reason(int status);

#endif
