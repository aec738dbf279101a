/*
 * chat_cmd.h: `arun chat -m MODEL "prompt"` (contract section 3): one chat completion through
 * the running server's OpenAI gateway (POST /v1/chat/completions), the answer streamed to
 * stdout as its tokens arrive. With --background it creates a durable background response
 * (POST /v1/responses) instead and follows it as `arun runs watch` does (cli/watch.h). It talks
 * to the server through cli/client.h.
 */
#ifndef ARUN_CLI_CHAT_CMD_H
#define ARUN_CLI_CHAT_CMD_H

extern const char chat_cmd_usage[];

/* argv starts at "chat". Returns the exit code: 0 the answer was printed (also when Ctrl-C cut
 * it short), 1 the server refused (unknown model, queue full, engine unavailable) or the answer
 * failed mid-stream (--background: the run ended failed, cancelled or incomplete), 2 bad usage
 * (also --background while the server has no Responses API), 3 server unreachable or the
 * connection dropped (--background: unreachable for longer than a reconnection allows). */
int chat_cmd_main(int argc, char **argv);

#endif
