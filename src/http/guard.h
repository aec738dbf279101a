/*
 * guard.h: the checks every request passes before it is routed, for what h2o 2.2.5 lets through
 * but a careful HTTP/1.1 server refuses (RFC 9112): request targets that are not plain paths
 * (absolute-form, dot segments, encoded separators, control characters), heads bigger than
 * HTTP_GUARD_HEAD_MAX, and conflicting message framing (Content-Length with Transfer-Encoding,
 * either one twice), which is what request smuggling through a proxy in front relies on.
 *
 * Pure functions over bytes: the server (server.c) calls them with what h2o parsed, and answers
 * a refusal with the OpenAI error shape. Each returns 0 when the input passes, or -EINVAL with
 * *why set to a sentence (a literal) saying what was wrong.
 */
#ifndef ARUN_HTTP_GUARD_H
#define ARUN_HTTP_GUARD_H

#include <stddef.h>

/* Bytes of a request head (request line and header fields) arun accepts; h2o itself takes up to
 * 408 KiB. nginx's default is 32 KiB as well (4 buffers of 8 KiB), Node's 16 KiB. */
#define HTTP_GUARD_HEAD_MAX 32768

/* Checks a request target as sent (h2o's req->input.path: not decoded, query included). It must
 * be origin-form ("/…"; absolute-form, authority-form and "*" are refused: arun serves one host
 * and is no proxy); its path (before '?') must hold no segment "." or ".." (also encoded, %2e),
 * no encoded '/' or '\' (%2f, %5c) and no raw '\', so that what is routed is what was sent; and
 * the whole target must hold no encoded control character (%00-%1f, %7f), so that a decoded
 * parameter never ends early at a NUL or carries a line break. */
int http_guard_target(const char *target, size_t len, const char **why);

/* Checks the framing of a request head head[0..len) (from the request line to the blank line, or
 * more: the rest is ignored): at most one Content-Length field, at most one Transfer-Encoding
 * field, and never both. -EINVAL also for a head that does not parse (h2o parsed it, so that
 * cannot happen on a real request). */
int http_guard_framing(const char *head, size_t len, const char **why);

#endif
