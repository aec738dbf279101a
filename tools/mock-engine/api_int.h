/*
 * api_int.h: what api.c (routing, small endpoints, errors) and completion.c (chat and text
 * completions) share. Private to tools/mock-engine.
 */
#ifndef ARUN_MOCK_API_INT_H
#define ARUN_MOCK_API_INT_H

#include <jansson.h>

#include "api.h"

#define API_MODEL_NAME_CAP 4096 /* a request's model name is echoed; longer ones get 400 */

enum completion_kind {
    COMPLETION_CHAT, /* /v1/chat/completions: object chat.completion[.chunk], ids chatcmpl- */
    COMPLETION_TEXT, /* /v1/completions: object text_completion, ids cmpl- */
};

/* Appends n bytes to b. The caller sized b's cap for the worst case, so failure is a bug. */
void api_put(struct buf *b, const void *s, size_t n);
void api_putf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* For string literals only (sizeof); api_puts() for anything else. */
#define API_PUTS(b, lit) api_put((b), "" lit, sizeof(lit) - 1)
void api_puts(struct buf *b, const char *s);
/* Appends the n bytes at s escaped for the inside of a JSON string (no quotes). */
void api_put_json_chars(struct buf *b, const char *s, size_t n);
/* Appends s as a JSON string literal, quotes included. */
void api_put_json_string(struct buf *b, const char *s, size_t n);

/* Sends a complete response whose body is copied into req's pool. */
void api_respond(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len);
/* Sends {"error":{"message","type","param","code"}} with the type that fits status; param may be
 * NULL. */
void api_send_error(struct api *a, h2o_req_t *req, int status, const char *message,
                    const char *param);
/* Parses req's entity as a JSON object. Returns it (caller decrefs), or NULL after answering
 * 400. */
json_t *api_parse_body(struct api *a, h2o_req_t *req);
/* Answers req in --garbage mode: broken SSE when the body asks for a stream, else broken JSON. */
void api_send_garbage(h2o_req_t *req, enum completion_kind kind, int stream);

/* Serves one chat or text completion. */
void completion_handle(struct api *a, h2o_req_t *req, enum completion_kind kind);
/* See api_abort_all(). */
void completion_abort_all(struct api *a);

#endif
