// The OpenAI-compatible gateway, driven by the official openai SDK: routing by model, engines
// started on demand, per-engine queues with 429s, streaming relay, fallbacks along a route.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Arun, MOCK_BIN, waitFor } from './lib/arun.mjs';

const mock = (extra = '') => `"${MOCK_BIN} --port \${PORT} --model \${NAME} ${extra}"`;
const client = (arun) => new OpenAI({ baseURL: `${arun.url}/v1`, apiKey: 'none', maxRetries: 0 });

describe('gateway', () => {
  test('the openai SDK completes chat (plain and streaming), completions and embeddings; the engine starts on demand', async () => {
    const arun = await new Arun({ config: `engines:\n  qwen:\n    cmd: ${mock('--load-ms 300')}\n    models: [qwen, q-alias]\n` }).start();
    try {
      const oa = client(arun);
      const models = await oa.models.list();
      assert.deepEqual(models.data.map((m) => m.id).sort(), ['q-alias', 'qwen']);
      assert.equal(models.data[0].engine, 'qwen');
      const chat = await oa.chat.completions.create({ model: 'q-alias', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 8 });
      const text = chat.choices[0].message.content;
      assert.ok(text.length > 0);
      assert.ok(chat.usage.completion_tokens > 0);
      const stream = await oa.chat.completions.create({ model: 'qwen', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 8, stream: true });
      let streamed = '';
      for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? '';
      assert.equal(streamed, text);
      const comp = await oa.completions.create({ model: 'qwen', prompt: 'once upon', max_tokens: 4 });
      assert.ok(comp.choices[0].text.length > 0);
      const emb = await oa.embeddings.create({ model: 'qwen', input: ['a', 'b'] });
      assert.equal(emb.data.length, 2);
      const raw = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'qwen', messages: [{ role: 'user', content: 'x' }] }) });
      assert.equal(raw.headers.get('x-arun-engine'), 'qwen');
    } finally { await arun.cleanup(); }
  });

  test('an unknown model is a 404 in the OpenAI shape listing what exists', async () => {
    const arun = await new Arun({ config: `engines:\n  qwen:\n    cmd: ${mock()}\n` }).start();
    try {
      await assert.rejects(client(arun).chat.completions.create({ model: 'gpt-9', messages: [{ role: 'user', content: 'x' }] }),
        (e) => e.status === 404 && /gpt-9.*models served here: qwen/.test(e.message));
    } finally { await arun.cleanup(); }
  });

  test('20 concurrent requests to an engine that takes 2 s to load all succeed', async () => {
    const arun = await new Arun({ config: `engines:\n  slow:\n    cmd: ${mock('--load-ms 2000')}\n    max_concurrency: 4\n    queue_limit: 64\n` }).start();
    try {
      const oa = client(arun);
      const all = await Promise.all(Array.from({ length: 20 }, (_, i) =>
        oa.chat.completions.create({ model: 'slow', messages: [{ role: 'user', content: `q${i}` }], max_tokens: 4 })));
      assert.equal(all.length, 20);
      for (const r of all) assert.ok(r.choices[0].message.content.length > 0);
    } finally { await arun.cleanup(); }
  });

  test('with max_concurrency 1 and queue_limit 2 the 4th concurrent request gets 429 with Retry-After', async () => {
    const arun = await new Arun({ config: `engines:\n  one:\n    cmd: ${mock('--tokens-per-s 20')}\n    max_concurrency: 1\n    queue_limit: 2\n    start: always\n` }).start();
    try {
      await waitFor(async () => (await (await fetch(`${arun.url}/v1/engines/one`)).json()).state === 'ready', { what: 'ready' });
      const body = JSON.stringify({ model: 'one', messages: [{ role: 'user', content: 'x' }], max_tokens: 10 });
      const send = () => fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', body });
      const first = [send(), send(), send()];
      await waitFor(async () => (await (await fetch(`${arun.url}/v1/engines/one`)).json()).queued === 2, { what: '2 queued' });
      const fourth = await send();
      assert.equal(fourth.status, 429);
      assert.equal(fourth.headers.get('retry-after'), '1');
      assert.match((await fourth.json()).error.message, /engine one is busy.*queue_limit 2/);
      for (const r of await Promise.all(first)) assert.equal(r.status, 200);
    } finally { await arun.cleanup(); }
  });

  test('a client that disconnects mid-stream frees the engine slot at once', async () => {
    const arun = await new Arun({ config: `engines:\n  s:\n    cmd: ${mock('--tokens-per-s 20 --max-tokens 200')}\n    max_concurrency: 1\n    start: always\n` }).start();
    try {
      const e = await waitFor(async () => { const x = await (await fetch(`${arun.url}/v1/engines/s`)).json(); return x.state === 'ready' ? x : false; }, { what: 'ready' });
      const ac = new AbortController();
      const r = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', signal: ac.signal,
        body: JSON.stringify({ model: 's', messages: [{ role: 'user', content: 'x' }], stream: true }) });
      const reader = r.body.getReader();
      await reader.read();
      const stats = async () => (await fetch(`http://127.0.0.1:${e.port}/mock/stats`)).json();
      assert.equal((await stats()).concurrency, 1);
      ac.abort();
      await waitFor(async () => (await stats()).concurrency === 0, { timeoutMs: 2000, what: 'the engine slot to free' });
      const next = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 's', messages: [{ role: 'user', content: 'y' }], max_tokens: 2 }) });
      assert.equal(next.status, 200);
    } finally { await arun.cleanup(); }
  });

  test('a route whose first engine is crashed answers from the second, named in x-arun-engine', async () => {
    const arun = await new Arun({ config: `engines:\n  main:\n    cmd: ${mock('--crash-after-ms 100')}\n    restart: {policy: never}\n  backup:\n    cmd: ${mock()}\nroutes:\n  chat-default: [main, backup]\n` }).start();
    try {
      await fetch(`${arun.url}/v1/engines/main/start`, { method: 'POST' });
      await waitFor(async () => (await (await fetch(`${arun.url}/v1/engines/main`)).json()).state === 'failed', { what: 'main to crash' });
      const r = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'chat-default', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 }) });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('x-arun-engine'), 'backup');
      assert.match(arun.stderr, /falling back from main to backup/);
    } finally { await arun.cleanup(); }
  });
});
