/*
 * translate.h: the engine's chat API in and out (docs/internals/runs.md). The engines arun
 * supervises speak POST /v1/chat/completions; the runs speak the Responses API. This module is
 * the whole translation, both ways, and nothing else: pure (no loop, no store, no sockets), so
 * every engine answer, well-formed or hostile, can be fed to it from a unit test.
 *
 * Going in, xlate_chat_body() writes the chat body from a checked request, the history before
 * it and, after a restart, the text already produced (sent as a final assistant message for the
 * engine to continue).
 *
 * Coming out, the assembler (struct xlate) takes the engine's stream one SSE data at a time and
 * emits the Responses events of the output items, in the SDK's shapes, and keeps the output
 * items, the usage and the finish reason for the Response object. Bad engine output (not JSON,
 * no choices, a field of the wrong type) is an error (-EPROTO) with a sentence in xlate_error(),
 * never a crash; nothing is emitted for the chunk that failed.
 */
#ifndef ARUN_RUNS_TRANSLATE_H
#define ARUN_RUNS_TRANSLATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/common.h"
#include "runs/request.h"

/* The chat body for the engine (POST /v1/chat/completions): messages from rq->instructions (a
 * system message), history (a JSON array of earlier items: store_history_read's or a
 * conversation's, or NULL), rq->input; "model": rq->model; temperature/top_p/max_tokens
 * (max_output_tokens)/tools (Responses function tools -> chat tools)/tool_choice/
 * parallel_tool_calls; "stream": true with stream_options.include_usage. partial (or NULL) is
 * assistant text already produced before a restart: it is sent as a final assistant message for
 * the engine to continue (continuation: chat-prefix). Consecutive function_call items become one
 * assistant message with several tool_calls; function_call_output items become "tool"
 * messages. The body is appended to out (JSON, compact). Returns 0, or -EINVAL with err (400)
 * for an item the engine's chat API cannot express, or -ENOBUFS when out's cap is passed. */
int xlate_chat_body(const struct run_request *rq, json_t *history, const char *partial,
                    struct buf *out, struct run_error *err) MUST_USE;

/* The assembler: the engine's chat stream in, Responses events out, in the order the SDK's
 * responses.stream() helper checks: response.output_item.added, response.content_part.added,
 * response.output_text.delta…, response.output_text.done, response.content_part.done,
 * response.output_item.done; for a tool call response.output_item.added (function_call item with
 * id fc_…, call_id, name, arguments ""), response.function_call_arguments.delta…,
 * response.function_call_arguments.done, response.output_item.done. output_index and
 * content_index append. The lifecycle events (created, queued, in_progress, completed…) are NOT
 * emitted here: the run does those. Each event is a JSON object WITHOUT sequence_number (the
 * run adds it); emit takes the reference; a non-zero return from emit is returned by the call
 * that emitted. */
typedef int (*xlate_emit_fn)(json_t *event, void *arg);
struct xlate;

/* A new assembler that hands its events to emit(event, arg). Never fails. */
struct xlate *xlate_new(xlate_emit_fn emit, void *arg);
/* The events of text deltas (response.output_text.delta) as JSON text instead: json[0..len) is
 * the event object, compact, the bytes json_dumps(event, JSON_COMPACT) would give, borrowed for
 * the call; type is its "type". Called with xlate_new's arg; a non-zero return is returned as
 * emit's. Saves building and dumping a tree per token. NULL: back to emit. */
typedef int (*xlate_emit_text_fn)(const char *type, const char *json, size_t len, void *arg);
void xlate_set_emit_text(struct xlate *x, xlate_emit_text_fn emit_text);
/* Tests: on (the default), a chunk that is one text delta is read by the scanner (the fast
 * path, translate.c DESIGN); off, every chunk is parsed with jansson. Both give the same events. */
void xlate_set_scan(struct xlate *x, bool on);
/* Frees it; xlate_free(NULL) is a no-op. */
void xlate_free(struct xlate *x);

/* One SSE data of the chat stream (the bytes after "data: "); "[DONE]" is ignored. Returns 0,
 * emit's non-zero result, or -EPROTO (xlate_error() says why) for engine output that is not a
 * chat chunk. After an error the assembler refuses every further chunk with the same error. */
int xlate_chunk(struct xlate *x, const char *data, size_t len) MUST_USE;
/* A whole non-streamed chat completion, emitted as the same events a stream would give.
 * Returns as xlate_chunk. */
int xlate_completion(struct xlate *x, const char *body, size_t len) MUST_USE;
/* Closes what is open (the …done events; items get status "completed", or "incomplete" when
 * the engine stopped at its token limit). Idempotent. Returns 0 or emit's non-zero result. */
int xlate_finish(struct xlate *x) MUST_USE;

/* Borrowed: the output items so far, as in Response.output (open items with status
 * "in_progress", brought up to date by this call: hence not const). Never NULL. */
json_t *xlate_output(struct xlate *x);
/* Borrowed or NULL: Responses usage {input_tokens, input_tokens_details:{cached_tokens},
 * output_tokens, output_tokens_details:{reasoning_tokens}, total_tokens}, from the engine's
 * usage chunk. */
json_t *xlate_usage(const struct xlate *x);
/* The engine's finish reason: "stop" "length" "tool_calls" (or whatever it sent), or NULL. */
const char *xlate_finish_reason(const struct xlate *x);
/* "max_output_tokens" when the engine stopped at its token limit (finish_reason "length"): the
 * run then ends `incomplete` with this reason; NULL otherwise. */
const char *xlate_incomplete_reason(const struct xlate *x);
/* The sentence that says why the last call failed with -EPROTO ("" if none). */
const char *xlate_error(const struct xlate *x);

/* Recovery: feeds back one stored event (the JSON the run stored, sequence_number and all),
 * rebuilding the state without emitting; events the assembler does not make (the lifecycle
 * ones) are skipped. Then xlate_partial_text() is the text of the open message item (NULL if
 * none, or if its text was already final: output_text.done stored) and the next xlate_chunk calls
 * continue that item (same item id, output_index,
 * content_index). An item whose closing events were stored in part gets only the missing ones
 * from xlate_finish() (or from the next item opening). Returns 0, or -EPROTO for an event that
 * does not fit the state rebuilt so far. */
int xlate_replay(struct xlate *x, json_t *event) MUST_USE;
const char *xlate_partial_text(const struct xlate *x);
/* Recovery: whether the replayed events hold the engine's whole answer: there is output, and
 * every item is done or was being closed (its text or arguments final, some of its done events
 * lost with the kill). xlate_finish() then emits the missing done events only; asking the engine
 * again would start the answer over. (A kill that fell between a message's close and the
 * tool call the model moved on to cannot be told from the end of the answer.) */
bool xlate_answer_ended(const struct xlate *x);
/* Before continuing: the engine may repeat the prefix it continues (llama-server does, in its
 * first delta(s)); the assembler then drops that repeated prefix so the output is prefix +
 * continuation exactly once, even when the repeat arrives split over several chunks. An engine
 * whose first bytes differ from the prefix is passed through unchanged. prefix is copied. */
void xlate_expect_echo(struct xlate *x, const char *prefix);

#endif
