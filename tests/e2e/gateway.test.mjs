// The OpenAI-compatible gateway, driven by the official openai SDK: routing by model, engines
// started on demand, per-engine queues with 429s, streaming relay, fallbacks along a route.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { Arun, MOCK_BIN, waitFor, runArun, tempDir } from './lib/arun.mjs';
import { startMock } from './lib/mock.mjs';

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
      // A name past the limit is called too long, not missing.
      await assert.rejects(client(arun).chat.completions.create({ model: 'q'.repeat(300), messages: [{ role: 'user', content: 'x' }] }),
        (e) => e.status === 400 && e.code === 'invalid_model' && /"model" is 300 bytes long; model names have at most 255/.test(e.message));
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

  test('a stream from an engine that frames SSE with CRLF is relayed live, event by event', async () => {
    // sse-starlette (llama-cpp-python's server) ends lines with CRLF: events end with
    // "\r\n\r\n". Each token is sent 0.5 s after the one before; the client must have each one
    // before the engine sends the next (the engine's own count says how far it got).
    const arun = await new Arun({ config: `engines:\n  crlf:\n    cmd: ${mock('--sse-crlf --tokens-per-s 2')}\n    start: always\n` }).start();
    try {
      const e = await waitFor(async () => { const x = await (await fetch(`${arun.url}/v1/engines/crlf`)).json(); return x.state === 'ready' ? x : false; }, { what: 'ready' });
      const sent = async () => (await (await fetch(`http://127.0.0.1:${e.port}/mock/stats`)).json()).events_sent;
      const stream = await client(arun).chat.completions.create({ model: 'crlf', messages: [{ role: 'user', content: 'x' }], max_tokens: 3, stream: true, stream_options: { include_usage: true } });
      const seen = [];
      let text = '', usage, finish;
      for await (const c of stream) {
        const piece = c.choices[0]?.delta?.content;
        if (piece) { text += piece; seen.push(await sent()); }
        finish ??= c.choices[0]?.finish_reason ?? undefined;
        if (c.usage) usage = c.usage;
      }
      assert.deepEqual(seen, [1, 2, 3], 'the engine had sent exactly this many tokens when each reached the client');
      assert.equal(text.split(' ').length - 1, 3);
      assert.equal(finish, 'length');
      assert.equal(usage.completion_tokens, 3);
    } finally { await arun.cleanup(); }
  });

  test('a stream cut by an engine crash ends with an error event and a failed transfer, and is logged as a failure', async () => {
    // Each engine dies once h2o has written its 2nd token: the client has a 200 and two tokens.
    const crashing = (name) => `  ${name}:\n    cmd: ${mock('--crash-after-tokens 2')}\n    restart: {policy: never}\n`;
    const arun = await new Arun({ config: `engines:\n${crashing('sdk')}${crashing('raw')}` }).start();
    try {
      // The openai SDK: the iteration throws the error event's message after the two tokens.
      const stream = await client(arun).chat.completions.create({ model: 'sdk', messages: [{ role: 'user', content: 'x' }], max_tokens: 10, stream: true });
      let tokens = 0;
      await assert.rejects(async () => { for await (const c of stream) if (c.choices[0]?.delta?.content) tokens++; },
        (e) => /engine sdk stopped in the middle of the answer/.test(e.message));
      assert.equal(tokens, 2);
      // A plain fetch (as curl): the transfer itself fails, and the error event came before that.
      const r = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'raw', messages: [{ role: 'user', content: 'x' }], max_tokens: 10, stream: true }) });
      assert.equal(r.status, 200);
      let text = '';
      const dec = new TextDecoder();
      await assert.rejects(async () => { for await (const b of r.body) text += dec.decode(b, { stream: true }); });
      const events = text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
      const last = JSON.parse(events.at(-1));
      assert.equal(last.error.code, 'upstream_stream_cut', text);
      assert.doesNotMatch(text, /\[DONE\]|"finish_reason":"/);
      // The access line and the metrics say the upstream failed.
      const line = await waitFor(() => arun.logLines().find((l) => l.module === 'gateway' && l.engine === 'raw' && 'status' in l), { what: 'the access line' });
      assert.equal(line.status, 502, JSON.stringify(line));
      assert.equal(line.error_code, 'upstream_stream_cut');
      assert.equal(line.level, 'warn');
      const m = await (await fetch(`${arun.url}/metrics`)).text();
      assert.match(m, /^arun_upstream_errors_total\{engine="raw",reason="stream_cut"\} 1$/m);
    } finally { await arun.cleanup(); }
  });

  test('an engine\'s 4xx error reaches the client in the OpenAI shape: a numeric code becomes a string', async () => {
    // The mock answers as llama-server does: 400 {"error":{"code":400,"message":…,"type":…}}.
    // waits loads for a second, so its stream opens (200) before the engine's 400 arrives.
    const arun = await new Arun({ config: `engines:\n  bad:\n    cmd: ${mock('--fail-status 400')}\n  waits:\n    cmd: ${mock('--fail-status 400 --load-ms 1000')}\n` }).start();
    try {
      const req = { model: 'bad', messages: [{ role: 'user', content: 'x' }], max_tokens: 3 };
      await assert.rejects(client(arun).chat.completions.create(req), (e) =>
        e.status === 400 && e.code === 'upstream_error' && e.type === 'invalid_request_error' &&
        e.param === null && /^400 mock failure: this engine answers every model request/.test(e.message));
      const r = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ ...req, stream: true }) });
      assert.equal(r.status, 400);
      assert.equal(r.headers.get('x-arun-engine'), 'bad');
      assert.match(r.headers.get('content-type'), /^application\/json/);
      const body = await r.json();
      assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
      assert.equal(body.error.code, 'upstream_error');
      // In a stream that opened while waiting, the error event names the engine and its status.
      const stream = await client(arun).chat.completions.create({ ...req, model: 'waits', stream: true });
      await assert.rejects(async () => { for await (const c of stream) void c; }, (e) =>
        e.code === 'upstream_error' && /^engine waits answered HTTP 400: mock failure/.test(e.message));
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

  test('usage is asked of the engine for accounting, and stripped from streams that did not ask for it', async () => {
    const arun = await new Arun({ config: `engines:\n  u:\n    cmd: ${mock()}\n` }).start();
    try {
      const oa = client(arun);
      const plain = await oa.chat.completions.create({ model: 'u', messages: [{ role: 'user', content: 'count me' }], max_tokens: 5, stream: true });
      const chunks = [];
      for await (const c of plain) chunks.push(c);
      assert.ok(chunks.every((c) => !c.usage), 'no usage chunk when the client did not ask');
      const asked = await oa.chat.completions.create({ model: 'u', messages: [{ role: 'user', content: 'count me' }], max_tokens: 5, stream: true, stream_options: { include_usage: true } });
      let usage;
      for await (const c of asked) if (c.usage) usage = c.usage;
      assert.equal(usage.completion_tokens, 5);
      // A non-streaming answer's usage is read from its body (the last "usage" object).
      const whole = await oa.chat.completions.create({ model: 'u', messages: [{ role: 'user', content: 'count me too' }], max_tokens: 7 });
      assert.equal(whole.usage.completion_tokens, 7);
      // A body with blanks before its brace and model last: include_usage is spliced in after
      // the brace, the engine still reads it, and the client still sees no usage chunk.
      const raw = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
        body: '\n  {"messages":[{"role":"user","content":"x"}],"stream":true,"max_tokens":2,"model":"u"}' });
      assert.equal(raw.status, 200);
      const sse = await raw.text();
      assert.match(sse, /data: \[DONE\]/);
      assert.doesNotMatch(sse, /"usage":\{/, 'no usage chunk when the client did not ask');
      const m = await (await fetch(`${arun.url}/metrics`)).text();
      assert.match(m, /^arun_tokens_total\{engine="u",kind="completion"\} 19$/m);
      // The mock counts a token per word of the prompt, role included: "user x" is 2.
      assert.match(m, new RegExp(`^arun_tokens_total\\{engine="u",kind="prompt"\\} ${2 * usage.prompt_tokens + whole.usage.prompt_tokens + 2}$`, 'm'));
      assert.match(m, /^arun_ttft_seconds_count\{engine="u"\} 3$/m);
      // Log lines are buffered (log.h's LOG_FLUSH_MS, 50 ms): wait for the access line, do not assume it.
      const line = await waitFor(() => arun.logLines().find((l) => l.module === 'gateway' && l.completion_tokens === 5), { what: 'the access line' });
      assert.ok(line && line.engine === 'u' && line.status === 200 && line.queue_wait_ms >= 0, JSON.stringify(line));
    } finally { await arun.cleanup(); }
  });

  test('a streaming request that waits for a loading engine is told why in SSE comments', async () => {
    const arun = await new Arun({ config: `engines:\n  slow:\n    cmd: ${mock('--load-ms 3000')}\n` }).start();
    try {
      const r = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST',
        body: JSON.stringify({ model: 'slow', messages: [{ role: 'user', content: 'x' }], max_tokens: 3, stream: true }) });
      assert.equal(r.status, 200);
      const text = await r.text();
      assert.match(text, /^: queued 1st for slow, engine (waiting to start|loading)/m);
      assert.match(text, /data: \[DONE\]/);
    } finally { await arun.cleanup(); }
  });

  test('a stream that opened while waiting and then fell back says in a comment which engine answered', async () => {
    // a never finishes loading (it crashes first); the stream opens while waiting for it, so
    // its x-arun-engine names a, and the answer comes from b.
    const arun = await new Arun({ config: `engines:\n  a:\n    cmd: ${mock('--load-ms 5000 --crash-after-ms 700')}\n    restart: {policy: never}\n  b:\n    cmd: ${mock()}\nroutes:\n  chat: [a, b]\n` }).start();
    try {
      const r = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST',
        body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x' }], max_tokens: 3, stream: true }) });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('x-arun-engine'), 'a');
      const text = await r.text();
      assert.match(text, /^: queued 1st for a, engine /m);
      assert.match(text, /^: answered by engine b after falling back from a$/m);
      assert.ok(text.indexOf(': answered by') < text.indexOf('data: {'), 'the note comes before the answer');
      assert.match(text, /data: \[DONE\]/);
    } finally { await arun.cleanup(); }
  });

  test('a slow-reading client on a long stream keeps arun\'s memory bounded', async () => {
    // ASan keeps freed memory in quarantine, which would look like growth: keep it small here.
    const env = { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || ''}:quarantine_size_mb=1` };
    const arun = await new Arun({ env, config: `engines:\n  fast:\n    cmd: ${mock('--max-tokens 100000 --ignore-eos')}\n    start: always\n` }).start();
    try {
      await waitFor(async () => (await (await fetch(`${arun.url}/v1/engines/fast`)).json()).state === 'ready', { what: 'ready' });
      const before = arun.rssKb();
      const body = JSON.stringify({ model: 'fast', messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 100000 });
      const s = net.connect(arun.port, '127.0.0.1');
      s.on('error', () => {});
      await new Promise((res) => s.once('connect', res));
      s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      s.pause();   // read nothing: the kernel buffers fill, then arun's backlog, then the engine pauses
      let peak = 0;
      const t0 = Date.now();
      await waitFor(async () => { peak = Math.max(peak, arun.rssKb()); return Date.now() - t0 > 3000; }, { timeoutMs: 5000, intervalMs: 100, what: '3 s of not reading' });
      assert.ok(peak - before < 8 * 1024, `arun grew by ${(peak - before) / 1024} MB while the client did not read`);
      s.destroy();
    } finally { await arun.cleanup(); }
  });

  test('egress: deny refuses a route that ends in a remote engine; allow answers from it with x-arun-egress: 1', async () => {
    const dir = tempDir();
    const deny = join(dir, 'deny.yaml');
    writeFileSync(deny, 'engines:\n  hosted:\n    url: http://127.0.0.1:9/v1\nroutes:\n  chat: [hosted]\n');
    const r = runArun(['config', 'check', deny]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /remote and egress is deny/);
    // A second mock engine stands in for the hosted API, and checks the key. Port 0: a fixed
    // port could be one the supervisor hands to an engine (41000-41999).
    const hosted = await startMock(['--model', 'gpt-4o-mini', '--api-key', 'sk-test-123']);
    const hostedPort = hosted.port;
    try {
      const arun = await new Arun({ env: { HOSTED_KEY: 'sk-test-123' }, config: `egress: allow\nengines:\n  local:\n    cmd: ${mock('--crash-after-ms 100')}\n    restart: {policy: never}\n  hosted:\n    url: http://127.0.0.1:${hostedPort}/v1\n    api_key_env: HOSTED_KEY\n    models: [gpt-4o-mini]\nroutes:\n  chat: [local, hosted]\n` }).start();
      try {
        await fetch(`${arun.url}/v1/engines/local/start`, { method: 'POST' });
        await waitFor(async () => (await (await fetch(`${arun.url}/v1/engines/local`)).json()).state === 'failed', { what: 'local down' });
        await waitFor(async () => (await (await fetch(`${arun.url}/v1/engines/hosted`)).json()).state === 'ready', { what: 'hosted reachable' });
        const res = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 }) });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('x-arun-engine'), 'hosted');
        assert.equal(res.headers.get('x-arun-egress'), '1');
        assert.ok(!arun.stderr.includes('sk-test-123'), 'the key is never logged');
        const direct = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }) });
        assert.equal(direct.status, 404, 'a remote engine is reached only through a route');
        assert.match(await (await fetch(`${arun.url}/metrics`)).text(), /^arun_egress_total\{engine="hosted"\} 1$/m);
      } finally { await arun.cleanup(); }
    } finally { await hosted.stop(); }
  });

  test('a request whose client goes away while queued leaves the queue at once and never reaches the engine', async () => {
    const arun = await new Arun({ config: `engines:\n  q:\n    cmd: ${mock('--tokens-per-s 10')}\n    max_concurrency: 1\n    start: always\n` }).start();
    try {
      const e = await waitFor(async () => { const x = await (await fetch(`${arun.url}/v1/engines/q`)).json(); return x.state === 'ready' ? x : false; }, { what: 'ready' });
      const busy = fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'q', messages: [{ role: 'user', content: 'x' }], max_tokens: 20 }) });
      await waitFor(async () => (await (await fetch(`http://127.0.0.1:${e.port}/mock/stats`)).json()).concurrency === 1, { what: 'the engine busy' });
      const body = JSON.stringify({ model: 'q', messages: [{ role: 'user', content: 'gone' }], max_tokens: 2 });
      const s = net.connect(arun.port, '127.0.0.1');
      s.on('error', () => {});
      await new Promise((res) => s.once('connect', res));
      s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      await waitFor(async () => (await (await fetch(`${arun.url}/v1/engines/q`)).json()).queued === 1, { what: 'the request queued' });
      let busyDone = false;
      busy.then(() => { busyDone = true; }, () => { busyDone = true; });
      s.destroy();
      await waitFor(async () => (await (await fetch(`${arun.url}/v1/engines/q`)).json()).queued === 0, { what: 'the queue to empty' });
      // At once: while the engine's one slot is still busy (20 tokens at 10/s), not when it frees.
      assert.ok(!busyDone, 'the request left the queue only when the engine slot freed');
      assert.equal((await busy).status, 200);
      const stats = await (await fetch(`http://127.0.0.1:${e.port}/mock/stats`)).json();
      assert.ok(!JSON.stringify(stats.last_request_body).includes('gone'), 'the engine never saw the request of the client that left');
    } finally { await arun.cleanup(); }
  });
});
