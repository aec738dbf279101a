// A child process for tests/e2e/tls.test.mjs: the official openai SDK as a user runs it, trusting
// the test CA through NODE_EXTRA_CA_CERTS (Node reads it only at start, hence a process of its
// own). It lists the models, then opens a streaming chat completion and, after the first chunk,
// stops reading until a line arrives on stdin, so the test can act while the stream is open.
// It reports on stdout as JSON lines: {event: 'models'|'first'|'done'|'error', …}.
// env: ARUN_URL, MODEL, MAX_TOKENS.
import OpenAI from 'openai';
import readline from 'node:readline';

const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

try {
  const client = new OpenAI({ baseURL: `${process.env.ARUN_URL}/v1`, apiKey: 'unused', maxRetries: 0 });
  const models = await client.models.list();
  say({ event: 'models', ids: models.data.map((m) => m.id) });
  const stream = await client.chat.completions.create({
    model: process.env.MODEL, stream: true, max_tokens: Number(process.env.MAX_TOKENS),
    messages: [{ role: 'user', content: 'hello over https' }],
  });
  let content = '';
  let chunks = 0;
  let finish = null;
  for await (const chunk of stream) {
    content += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (++chunks === 1) {
      say({ event: 'first' });
      await lines.next(); // the test says when to read on
    }
  }
  say({ event: 'done', content, chunks, finish });
} catch (e) {
  say({ event: 'error', message: String(e?.message ?? e), cause: String(e?.cause?.message ?? '') });
}
process.exit(0);
