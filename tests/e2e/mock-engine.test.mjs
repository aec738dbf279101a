// arun-mock-engine, driven by the official openai SDK: the OpenAI surface, the generation rule of
// docs/mock-engine.md, and every failure mode the gateway and supervisor tests rely on.
// Run: MOCK_BIN=$PWD/build-asan-mock/arun-mock-engine node --test tests/e2e/mock-engine.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';

import { chatPromptText, countWords, mockAnswer, mockStats, startMock, waitFor } from './lib/mock.mjs';

const client = (mock, opts = {}) => new OpenAI({ baseURL: mock.baseURL, apiKey: 'none', maxRetries: 0, ...opts });

// Starts a mock for one test and stops it after: SIGTERM must exit 0 with no sanitizer report.
async function mockFor(t, args, { expectClean = true } = {}) {
  const mock = await startMock(args);
  t.after(async () => {
    const { code, signal } = await mock.stop();
    if (expectClean) {
      assert.equal(mock.sanitizerReport(), null);
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, mock.stderr());
    }
  });
  return mock;
}

const hello = [{ role: 'user', content: 'Hello there, mock' }];

describe('the OpenAI surface', () => {
  let mock;
  let openai;
  before(async () => {
    mock = await startMock([]);
    openai = client(mock);
  });
  after(async () => {
    const { code, signal } = await mock.stop();
    assert.equal(mock.sanitizerReport(), null);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, mock.stderr());
  });

  test('non-streaming chat answers the predicted text with usage', async () => {
    const want = mockAnswer(chatPromptText(hello), { seed: 7 });
    const res = await openai.chat.completions.create({ model: 'm1', messages: hello, seed: 7 });
    assert.match(res.id, /^chatcmpl-[0-9a-f]{20}$/);
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.model, 'm1');
    assert.equal(typeof res.created, 'number');
    assert.equal(res.choices.length, 1);
    assert.deepEqual(res.choices[0].message, { role: 'assistant', content: want.text });
    assert.equal(res.choices[0].finish_reason, want.finishReason);
    assert.deepEqual(res.usage, {
      prompt_tokens: countWords(chatPromptText(hello)),
      completion_tokens: want.tokens.length,
      total_tokens: countWords(chatPromptText(hello)) + want.tokens.length,
    });
  });

  test('the seed changes the answer and max_tokens cuts it with finish_reason length', async () => {
    const a = await openai.chat.completions.create({ model: 'm', messages: hello, seed: 1 });
    const b = await openai.chat.completions.create({ model: 'm', messages: hello, seed: 2 });
    assert.notEqual(a.choices[0].message.content, b.choices[0].message.content);
    const cut = await openai.chat.completions.create({ model: 'm', messages: hello, seed: 1, max_tokens: 3 });
    assert.equal(cut.choices[0].finish_reason, 'length');
    assert.equal(cut.usage.completion_tokens, 3);
    assert.equal(cut.choices[0].message.content, mockAnswer(chatPromptText(hello), { seed: 1, maxTokens: 3 }).text);
    assert.ok(a.choices[0].message.content.startsWith(cut.choices[0].message.content));
  });

  test('streaming chat sends one token per chunk; deltas add up to the non-streaming text', async () => {
    const full = await openai.chat.completions.create({ model: 'm', messages: hello, seed: 3 });
    const stream = await openai.chat.completions.create({
      model: 'm', messages: hello, seed: 3, stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const ids = new Set(chunks.map((c) => c.id));
    assert.equal(ids.size, 1);
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
    const tokenChunks = chunks.filter((c) => c.choices[0]?.delta?.content);
    assert.equal(tokenChunks.length, full.usage.completion_tokens);
    for (const c of tokenChunks) assert.match(c.choices[0].delta.content, /^[a-z]+ $/);
    assert.equal(tokenChunks.map((c) => c.choices[0].delta.content).join(''), full.choices[0].message.content);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, full.usage);
    const finish = chunks.at(-2);
    assert.equal(finish.choices[0].finish_reason, full.choices[0].finish_reason);
  });

  test('streaming without include_usage has no usage chunk', async () => {
    const stream = await openai.chat.completions.create({ model: 'm', messages: hello, stream: true, max_tokens: 2 });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks.length, 4); // role, 2 tokens, finish
    assert.ok(chunks.every((c) => c.choices.length === 1 && c.usage === undefined));
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
  });

  test('text completions, streaming and not, follow the same rule', async () => {
    const want = mockAnswer('Once upon a time', { seed: 5, maxTokens: 6 });
    const res = await openai.completions.create({ model: 'm', prompt: 'Once upon a time', seed: 5, max_tokens: 6 });
    assert.match(res.id, /^cmpl-/);
    assert.equal(res.object, 'text_completion');
    assert.equal(res.choices[0].text, want.text);
    assert.equal(res.choices[0].finish_reason, 'length');
    assert.deepEqual(res.usage, { prompt_tokens: 4, completion_tokens: 6, total_tokens: 10 });
    const stream = await openai.completions.create({
      model: 'm', prompt: 'Once upon a time', seed: 5, max_tokens: 6, stream: true,
    });
    const texts = [];
    for await (const chunk of stream) texts.push(chunk.choices[0].text);
    assert.deepEqual(texts, [...want.tokens, '']);
  });

  test('continuation: a final assistant message is a prefix of the answer', async () => {
    const full = mockAnswer(chatPromptText(hello), { seed: 9 });
    assert.ok(full.tokens.length >= 8);
    for (const cut of [full.tokens.slice(0, 3).join(''), full.text.slice(0, full.tokens[0].length + 2)]) {
      const res = await openai.chat.completions.create({
        model: 'm', seed: 9, messages: [...hello, { role: 'assistant', content: cut }],
      });
      assert.equal(cut + res.choices[0].message.content, full.text, `prefix ${JSON.stringify(cut)}`);
      assert.equal(res.choices[0].finish_reason, 'stop');
    }
    // streamed, with the prefix ending inside a word: the first token is that word's rest
    const cut = full.text.slice(0, full.tokens[0].length + 2);
    const stream = await openai.chat.completions.create({
      model: 'm', seed: 9, stream: true, messages: [...hello, { role: 'assistant', content: cut }],
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(cut + text, full.text);
    // not a prefix: the assistant message is just more prompt
    const other = [...hello, { role: 'assistant', content: 'something else' }];
    const res = await openai.chat.completions.create({ model: 'm', seed: 9, messages: other });
    assert.equal(res.choices[0].message.content, mockAnswer(chatPromptText(other), { seed: 9 }).text);
  });

  test('embeddings are deterministic unit vectors, as floats or base64', async () => {
    // the SDK asks for base64 by default and decodes it
    const res = await openai.embeddings.create({ model: 'e', input: ['alpha beta', 'gamma'] });
    assert.equal(res.object, 'list');
    assert.equal(res.data.length, 2);
    assert.deepEqual(res.usage, { prompt_tokens: 3, total_tokens: 3 });
    const [a, b] = res.data.map((d) => d.embedding);
    assert.equal(a.length, 16);
    assert.ok(Math.abs(Math.hypot(...a) - 1) < 1e-5);
    assert.notDeepEqual(a, b);
    const floats = await openai.embeddings.create({ model: 'e', input: 'alpha beta', encoding_format: 'float', dimensions: 16 });
    assert.equal(floats.data[0].object, 'embedding');
    floats.data[0].embedding.forEach((x, i) => assert.ok(Math.abs(x - a[i]) < 1e-6));
    const small = await openai.embeddings.create({ model: 'e', input: 'x', dimensions: 4, encoding_format: 'float' });
    assert.equal(small.data[0].embedding.length, 4);
  });

  test('/v1/models lists the model; /health is ok', async () => {
    const models = await openai.models.list();
    assert.deepEqual(models.data.map((m) => [m.id, m.object]), [['mock', 'model']]);
    const health = await fetch(`${mock.url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });
  });

  test('errors come in the OpenAI shape: bad JSON, missing messages, unknown path', async () => {
    const bad = await fetch(`${mock.baseURL}/chat/completions`, { method: 'POST', body: '{"messages": [' });
    assert.equal(bad.status, 400);
    const body = await bad.json();
    assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(body.error.type, 'invalid_request_error');
    await assert.rejects(openai.chat.completions.create({ model: 'm' }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.param, 'messages');
      return true;
    });
    const missing = await fetch(`${mock.url}/v1/nothing-here`);
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error.type, 'not_found_error');
  });

  test('/mock/stats counts requests and keeps the last body; /mock/reset zeroes it', async () => {
    await fetch(`${mock.url}/mock/reset`, { method: 'POST' });
    await openai.chat.completions.create({ model: 'count-me', messages: hello });
    await fetch(`${mock.url}/health`);
    const s = await mockStats(mock);
    assert.equal(s.requests, 2);
    assert.equal(s.requests_by_path['/v1/chat/completions'], 1);
    assert.equal(s.requests_by_path['/health'], 1);
    assert.equal(s.concurrency, 0);
    assert.equal(s.peak_concurrency, 1);
    assert.equal(s.last_request_body.model, 'count-me');
  });
});

describe('pacing and concurrency', () => {
  test('--tokens-per-s paces streaming and non-streaming answers', async (t) => {
    const mock = await mockFor(t, ['--tokens-per-s', '50']);
    const openai = client(mock);
    let t0 = Date.now();
    await openai.chat.completions.create({ model: 'm', messages: hello, max_tokens: 10 });
    const plain = Date.now() - t0;
    assert.ok(plain >= 190, `10 tokens at 50/s took ${plain} ms`);
    t0 = Date.now();
    const arrivals = [];
    const stream = await openai.chat.completions.create({ model: 'm', messages: hello, max_tokens: 10, stream: true });
    for await (const chunk of stream) if (chunk.choices[0]?.delta?.content) arrivals.push(Date.now() - t0);
    assert.equal(arrivals.length, 10);
    assert.ok(arrivals[9] >= 190 && arrivals[9] - arrivals[0] >= 150, `arrivals ${arrivals}`);
  });

  test('an aborted stream frees its concurrency slot at once', async (t) => {
    const mock = await mockFor(t, ['--tokens-per-s', '20']);
    const openai = client(mock);
    const ac = new AbortController();
    const stream = await openai.chat.completions.create(
      { model: 'm', messages: hello, stream: true, max_tokens: 1000, ignore_eos: true },
      { signal: ac.signal },
    );
    const it = stream[Symbol.asyncIterator]();
    await it.next(); // the role chunk: the stream is open
    assert.equal((await mockStats(mock)).concurrency, 1);
    ac.abort(); // the SDK ends the iteration quietly or with an AbortError: either is fine
    await it.next().catch(() => {});
    const s = await waitFor(async () => {
      const st = await mockStats(mock);
      return st.concurrency === 0 && st;
    }, { timeoutMs: 2000, what: 'concurrency back to 0' });
    assert.equal(s.peak_concurrency, 1);
    assert.equal(s.aborted, 1);
  });

  test('peak_concurrency sees parallel requests', async (t) => {
    const mock = await mockFor(t, ['--tokens-per-s', '100']);
    const openai = client(mock);
    await Promise.all([1, 2, 3, 4].map(() => openai.chat.completions.create({ model: 'm', messages: hello, max_tokens: 5 })));
    const s = await mockStats(mock);
    assert.equal(s.concurrency, 0);
    assert.equal(s.peak_concurrency, 4);
  });
});

describe('engine life and failure modes', () => {
  test('loading phase: 503 "Loading model" everywhere, then 200, with progress lines', async (t) => {
    const mock = await mockFor(t, ['--load-ms', '400', '--log-every-ms', '50']);
    const res = await fetch(`${mock.url}/health`);
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { error: { code: 503, message: 'Loading model', type: 'unavailable_error' } });
    await assert.rejects(client(mock).chat.completions.create({ model: 'm', messages: hello }), (e) => e.status === 503);
    await waitFor(async () => (await fetch(`${mock.url}/health`)).status === 200, { timeoutMs: 3000, what: '/health 200' });
    assert.match(mock.stderr(), /llama_model_load: loading tensors \d+%/);
    const res2 = await client(mock).chat.completions.create({ model: 'm', messages: hello });
    assert.equal(res2.choices[0].finish_reason, 'stop');
  });

  test('--quiet-load prints nothing but the port line while loading', async (t) => {
    const mock = await mockFor(t, ['--load-ms', '300', '--log-every-ms', '20', '--quiet-load']);
    assert.equal((await fetch(`${mock.url}/health`)).status, 503);
    assert.equal(mock.stderr().trim().split('\n').length, 1, mock.stderr());
    await waitFor(async () => (await fetch(`${mock.url}/health`)).status === 200, { timeoutMs: 3000, what: '/health 200' });
    assert.doesNotMatch(mock.stderr(), /loading tensors/);
  });

  test('--api-key: 401 without the key, /health stays open', async (t) => {
    const mock = await mockFor(t, ['--api-key', 'sekret']);
    await assert.rejects(client(mock).chat.completions.create({ model: 'm', messages: hello }), (e) => {
      assert.equal(e.status, 401);
      assert.equal(e.type, 'authentication_error');
      return true;
    });
    const ok = await client(mock, { apiKey: 'sekret' }).chat.completions.create({ model: 'm', messages: hello });
    assert.equal(ok.object, 'chat.completion');
    assert.equal((await fetch(`${mock.url}/health`)).status, 200);
  });

  test('--fail-status answers model endpoints with that status, OpenAI-shaped', async (t) => {
    const mock = await mockFor(t, ['--fail-status', '429']);
    await assert.rejects(client(mock).chat.completions.create({ model: 'm', messages: hello }), (e) => {
      assert.equal(e.status, 429);
      assert.equal(e.type, 'rate_limit_error');
      return true;
    });
    assert.equal((await fetch(`${mock.url}/health`)).status, 200);
  });

  test('--garbage: broken JSON and broken SSE make the SDK fail', async (t) => {
    const mock = await mockFor(t, ['--garbage']);
    const openai = client(mock);
    await assert.rejects(openai.chat.completions.create({ model: 'm', messages: hello }));
    await assert.rejects(async () => {
      const stream = await openai.chat.completions.create({ model: 'm', messages: hello, stream: true });
      for await (const chunk of stream) assert.ok(chunk);
    });
  });

  test('--crash-after-ms exits with status 1, or by --crash-signal', async () => {
    const a = await startMock(['--crash-after-ms', '200']);
    const b = await startMock(['--crash-after-ms', '200', '--crash-signal', '9']);
    try {
      assert.deepEqual(await a.exited, { code: 1, signal: null });
      assert.match(a.stderr(), /crashing on purpose/);
      assert.deepEqual(await b.exited, { code: null, signal: 'SIGKILL' });
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  test('--crash-after-tokens cuts a stream after N tokens: no finish, no [DONE], then the process exits', async () => {
    const mock = await startMock(['--crash-after-tokens', '2']);
    try {
      const r = await fetch(`${mock.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: hello, stream: true, max_tokens: 10 }) });
      assert.equal(r.status, 200);
      let text = '';
      await assert.rejects(async () => { for await (const b of r.body) text += Buffer.from(b).toString(); });
      assert.equal((text.match(/"content":"[^"]+"/g) ?? []).length, 2, text); // not the role's 
      assert.doesNotMatch(text, /finish_reason":"|\[DONE\]/);
      assert.deepEqual(await mock.exited, { code: 1, signal: null });
      assert.match(mock.stderr(), /crashing on purpose after a stream sent its tokens/);
    } finally {
      await mock.stop();
    }
  });

  test('--sse-crlf ends every SSE line with CRLF; the SDK reads the same answer', async (t) => {
    const mock = await mockFor(t, ['--sse-crlf']);
    const r = await fetch(`${mock.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: hello, seed: 7, stream: true }) });
    const raw = await r.text();
    assert.ok(raw.endsWith('data: [DONE]\r\n\r\n'), JSON.stringify(raw.slice(-40)));
    assert.doesNotMatch(raw.replace(/\r\n/g, ''), /\n/, 'every LF is part of a CRLF');
    const stream = await client(mock).chat.completions.create({ model: 'm', messages: hello, seed: 7, stream: true });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    assert.equal(text, mockAnswer(chatPromptText(hello), { seed: 7 }).text);
  });

  test('--hang accepts connections and never answers; SIGTERM still exits 0', async (t) => {
    const mock = await mockFor(t, ['--hang']);
    await assert.rejects(fetch(`${mock.url}/health`, { signal: AbortSignal.timeout(300) }), (e) => e.name === 'TimeoutError');
  });

  test('--rss-mb grows the resident set once loaded', async (t) => {
    const mock = await mockFor(t, ['--rss-mb', '64']);
    await waitFor(async () => (await mockStats(mock)).loaded, { what: 'loaded' });
    const kb = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${mock.child.pid}/status`, 'utf8'))[1]);
    assert.ok(kb >= 64 * 1024, `VmRSS ${kb} kB`);
  });

  test('SIGTERM during a stream exits 0 promptly', async (t) => {
    const mock = await startMock(['--tokens-per-s', '5']);
    const stream = await client(mock).chat.completions.create({ model: 'm', messages: hello, stream: true });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    const { code, signal } = await mock.stop();
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, mock.stderr());
    // Promptly: the stream was ended at once, not cut when the shutdown grace ran out.
    assert.doesNotMatch(mock.stderr(), /connections still open .* after shutdown began/);
    assert.equal(mock.sanitizerReport(), null);
    await assert.rejects(async () => { for (;;) if ((await it.next()).done) break; });
  });
});

describe('tools and continuation (what the Responses API tests need)', () => {
  const tools = [
    { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } },
    { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } },
  ];
  const ask = [{ role: 'user', content: 'Please call get_time, then call get_weather.' }];
  const args = (name, i) => JSON.stringify({ tool: name, call: i });

  test('"call NAME" with tools answers tool calls, whole and streamed by index', async (t) => {
    const openai = client(await mockFor(t, []));
    const res = await openai.chat.completions.create({ model: 'm', messages: ask, tools });
    const msg = res.choices[0].message;
    assert.equal(res.choices[0].finish_reason, 'tool_calls');
    assert.equal(msg.content, null);
    assert.deepEqual(msg.tool_calls.map((c) => [c.type, c.function.name, c.function.arguments]),
      [['function', 'get_time', args('get_time', 0)], ['function', 'get_weather', args('get_weather', 1)]]);
    assert.match(msg.tool_calls[0].id, /^call_[0-9a-f]{8}_0$/);
    // streamed: the SDK's own accumulation gives the same calls
    const stream = openai.chat.completions.stream({ model: 'm', messages: ask, tools });
    const done = await stream.finalChatCompletion();
    assert.deepEqual(done.choices[0].message.tool_calls.map((c) => [c.id, c.function.name, c.function.arguments]),
      msg.tool_calls.map((c) => [c.id, c.function.name, c.function.arguments]));
    assert.equal(done.choices[0].finish_reason, 'tool_calls');
    // no tools, tool_choice none, or parallel_tool_calls false
    const plain = await openai.chat.completions.create({ model: 'm', messages: ask });
    assert.equal(plain.choices[0].message.content, mockAnswer(chatPromptText(ask)).text);
    const none = await openai.chat.completions.create({ model: 'm', messages: ask, tools, tool_choice: 'none' });
    assert.equal(none.choices[0].finish_reason, 'stop');
    const one = await openai.chat.completions.create({ model: 'm', messages: ask, tools, parallel_tool_calls: false });
    assert.equal(one.choices[0].message.tool_calls.length, 1);
    // forced by tool_choice without any trigger in the text
    const forced = await openai.chat.completions.create({
      model: 'm', messages: hello, tools, tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    assert.equal(forced.choices[0].message.tool_calls[0].function.name, 'get_weather');
  });

  test('a tool result is answered with "tool result: OUTPUT", and continues like any answer', async (t) => {
    const openai = client(await mockFor(t, []));
    const first = await openai.chat.completions.create({ model: 'm', messages: ask, tools });
    const call = first.choices[0].message.tool_calls[0];
    const messages = [...ask, first.choices[0].message, { role: 'tool', tool_call_id: call.id, content: 'noon, "UTC"' }];
    const res = await openai.chat.completions.create({ model: 'm', messages, tools });
    assert.equal(res.choices[0].message.content, 'tool result: noon, "UTC" ');
    assert.equal(res.choices[0].finish_reason, 'stop');
    const cont = await openai.chat.completions.create({
      model: 'm', messages: [...messages, { role: 'assistant', content: 'tool res' }], tools,
    });
    assert.equal(`tool res${cont.choices[0].message.content}`, 'tool result: noon, "UTC" ');
  });

  for (const flags of [['--echo-prefix'], ['--echo-split', '3']]) {
    test(`${flags.join(' ')} repeats the continued prefix first, as llama-server does`, async (t) => {
      const openai = client(await mockFor(t, flags));
      const full = mockAnswer(chatPromptText(hello), { seed: 9 });
      const cut = full.text.slice(0, full.tokens[0].length + 2);
      const messages = [...hello, { role: 'assistant', content: cut }];
      const stream = await openai.chat.completions.create({ model: 'm', seed: 9, stream: true, messages });
      const deltas = [];
      for await (const chunk of stream) deltas.push(chunk.choices[0]?.delta?.content ?? '');
      assert.equal(deltas.join(''), cut + full.text.slice(cut.length), 'the prefix, then the rest once');
      if (flags.length === 1) assert.equal(deltas[1], cut + full.text.slice(cut.length).split(' ')[0] + ' ');
      else assert.equal(deltas[1], cut.slice(0, 3));
      const res = await openai.chat.completions.create({ model: 'm', seed: 9, messages });
      assert.equal(res.choices[0].message.content, full.text);
      assert.equal(res.usage.completion_tokens, full.tokens.length - 1, 'the repeat is not counted');
    });
  }
});
