// What the console (issue 14) reads from the server: GET /v1/whoami, GET /v1/node, the engine
// object's load and uptime facts, the events it lives on (engine.state, queue.depth,
// run.status) and GET /v1/stats's ring. Against the mock engine, as a console would see them.
import { test, describe, before, after } from 'node:test';
import { request } from 'node:http';
import { gunzipSync } from 'node:zlib';
import assert from 'node:assert/strict';
import { Arun, MOCK_BIN, createKey, waitFor, watchEvents } from './lib/arun.mjs';

const mock = (extra = '') => `"${MOCK_BIN} --port \${PORT} --model \${NAME} ${extra}"`;
const get = (arun, path, key) => fetch(`${arun.url}${path}`, {
  headers: key ? { authorization: `Bearer ${key}` } : {},
});

describe('GET /v1/whoami', () => {
  test('without keys: the admin of default, no key id, auth_mode none', async () => {
    const arun = await new Arun().start();
    try {
      const r = await get(arun, '/v1/whoami');
      assert.equal(r.status, 200);
      assert.deepEqual(await r.json(), { tenant: 'default', role: 'admin', key_id: null, auth_mode: 'none' });
    } finally {
      await arun.cleanup();
    }
  });

  test('with keys: an admin and a member each see their tenant, role and key id; no key is a 401', async () => {
    const arun = new Arun({ config: 'auth:\n  mode: keys\n' });
    try {
      const admin = await createKey(arun, { tenant: 'ops', role: 'admin' });
      await arun.start();
      const member = await createKey(arun, { tenant: 'acme', role: 'member' });
      const a = await get(arun, '/v1/whoami', admin.key);
      assert.equal(a.status, 200);
      assert.deepEqual(await a.json(), { tenant: 'ops', role: 'admin', key_id: admin.id, auth_mode: 'keys' });
      const m = await get(arun, '/v1/whoami', member.key);
      const mt = await m.text();
      assert.equal(m.status, 200, mt);
      assert.deepEqual(JSON.parse(mt), { tenant: 'acme', role: 'member', key_id: member.id, auth_mode: 'keys' });
      assert.ok(!mt.includes(member.key), 'the key text is in the answer');
      assert.equal((await get(arun, '/v1/whoami')).status, 401);
    } finally {
      await arun.cleanup();
    }
  });
});

describe('engine objects and GET /v1/node', () => {
  let arun;
  before(async () => {
    arun = await new Arun({ config: `engines:\n  qwen:\n    cmd: ${mock('--load-ms 1500')}\n    memory: {ram_mb: 100}\n` }).start();
  });
  after(() => arun.cleanup());

  test('before its first load an engine has no expected load time, no uptime; then loading shows since when; ready shows what it took', async () => {
    const e0 = await (await get(arun, '/v1/engines/qwen')).json();
    assert.equal(e0.state, 'stopped');
    assert.equal(e0.expected_load_ms, null);
    assert.equal(e0.loading_since_ms, null);
    assert.equal(e0.uptime_s, null);
    const t0 = Date.now();
    assert.equal((await fetch(`${arun.url}/v1/engines/qwen/start`, { method: 'POST' })).status, 202);
    const loading = await waitFor(async () => {
      const e = await (await get(arun, '/v1/engines/qwen')).json();
      return e.state === 'loading' && e;
    }, { timeoutMs: 10000, what: 'qwen loading' });
    assert.ok(loading.loading_since_ms >= t0 - 1000 && loading.loading_since_ms <= Date.now(), JSON.stringify(loading));
    assert.equal(typeof loading.loading_elapsed_ms, 'number');
    assert.equal(typeof loading.last_log_line, 'string');
    const ready = await waitFor(async () => {
      const e = await (await get(arun, '/v1/engines/qwen')).json();
      return e.state === 'ready' && e;
    }, { timeoutMs: 15000, what: 'qwen ready' });
    assert.ok(ready.expected_load_ms >= 1000, JSON.stringify(ready)); // the mock loads for 1.5 s
    assert.equal(ready.expected_load_ms, ready.last_load_ms); // one load so far: its duration
    assert.equal(ready.loading_since_ms, null);
    assert.ok(Number.isInteger(ready.uptime_s) && ready.uptime_s >= 0);
    assert.match(ready.last_log_line, /\S/);
  });

  test('GET /v1/node: the envelope and its use in MiB; declared counts the running engine', async () => {
    const r = await get(arun, '/v1/node');
    assert.equal(r.status, 200);
    const n = await r.json();
    assert.deepEqual(Object.keys(n).sort(), ['ram_mb', 'vram_mb']);
    for (const k of ['total', 'envelope', 'declared', 'used']) assert.ok(k in n.ram_mb && k in n.vram_mb, k);
    const node = await waitFor(async () => {
      const x = await (await get(arun, '/v1/node')).json();
      return x.ram_mb.total !== null && x;
    }, { what: 'a memory sample' });
    assert.ok(node.ram_mb.total > 0 && node.ram_mb.used > 0 && node.ram_mb.used <= node.ram_mb.total, JSON.stringify(node));
    assert.ok(node.ram_mb.envelope > 0);
    assert.equal((await (await get(arun, '/v1/engines/qwen')).json()).state, 'ready');
    assert.ok(node.ram_mb.declared >= 100, JSON.stringify(node)); // memory.ram_mb of qwen
  });
});

describe('GET /v1/stats and the events a console lives on', () => {
  let arun;
  let events;
  before(async () => {
    arun = new Arun({ config: `engines:\n  fast:\n    cmd: ${mock('--max-tokens 8')}\n    models: [fast]\n  slow:\n    cmd: ${mock('--tokens-per-s 20 --max-tokens 12')}\n    max_concurrency: 1\n` });
    await arun.start();
    events = await watchEvents(arun);
  });
  after(async () => {
    await events?.close();
    await arun.cleanup();
  });

  const chat = (model, stream = true) => fetch(`${arun.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] }),
  }).then((r) => r.text());

  // The raw exchange (fetch would decode it): status, headers and the body's bytes.
  const raw = (path, headers = {}) => new Promise((res, rej) => {
    const q = request(`${arun.url}${path}`, { headers }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks) }));
    });
    q.on('error', rej);
    q.end();
  });

  test('a large JSON answer (the hour of stats) is sent gzip\'d to a client that takes gzip, plain otherwise', async () => {
    const plain = await raw('/v1/stats');
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.match(plain.headers.vary ?? '', /accept-encoding/i);
    assert.ok(plain.body.length >= 4096, `${plain.body.length} bytes`);
    const z = await raw('/v1/stats', { 'accept-encoding': 'gzip, deflate, br' });
    assert.equal(z.headers['content-encoding'], 'gzip');
    assert.ok(z.body.length * 4 < plain.body.length, `${z.body.length} of ${plain.body.length} bytes`);
    const a = JSON.parse(gunzipSync(z.body).toString());
    assert.equal(a.window_s, 3600);
    assert.deepEqual(Object.keys(a.engines).sort(), ['fast', 'slow']);
    const refused = await raw('/v1/stats', { 'accept-encoding': 'gzip;q=0' });
    assert.equal(refused.headers['content-encoding'], undefined);
    const small = await raw('/healthz', { 'accept-encoding': 'gzip' });
    assert.equal(small.headers['content-encoding'], undefined, 'a small answer is not worth it');
  });

  test('a window outside 60..3600 or not a number is a 400 naming window; the default is the hour', async () => {
    for (const w of ['59', '3601', 'abc', '', '60x', '-60']) {
      const r = await get(arun, `/v1/stats?window=${w}`);
      assert.equal(r.status, 400, `window=${w}`);
      const body = await r.json();
      assert.equal(body.error.param, 'window');
      assert.match(body.error.message, /60 to 3600/);
    }
    const s = await (await get(arun, '/v1/stats')).json();
    assert.equal(s.window_s, 3600);
    assert.equal(s.step_s, 10);
    assert.deepEqual(Object.keys(s.engines).sort(), ['fast', 'slow']);
    for (const e of Object.values(s.engines)) {
      assert.deepEqual(Object.keys(e).sort(), ['queue_wait_p50_ms', 'requests_per_s', 't', 'tokens_per_s', 'ttft_p50_ms', 'ttft_p95_ms']);
      for (const a of Object.values(e)) assert.equal(a.length, 360);
    }
    assert.deepEqual(Object.keys(s.node).sort(), ['ram_used_mb', 't', 'vram_used_mb']);
    assert.equal(s.node.t.length, 360);
    // Before arun ran: no data (null), never a made-up zero.
    assert.equal(s.engines.fast.requests_per_s[0], null);
    assert.equal(s.engines.fast.ttft_p50_ms.at(-1), null);
  });

  test('after requests through the mock engine the last bucket counts them, with TTFT, queue wait and tokens', async () => {
    // All in one 10 s bucket: start at least 1 s into one with 6 s left (waiting on the clock).
    await waitFor(() => { const o = Date.now() % 10000; return o >= 1000 && o <= 4000; }, { timeoutMs: 11000, intervalMs: 50, what: 'a fresh bucket' });
    const slot = Math.floor(Date.now() / 10000) * 10;
    for (let i = 0; i < 3; i++) assert.match(await chat('fast'), /\[DONE\]/);
    const s = await (await get(arun, '/v1/stats?window=60')).json();
    const e = s.engines.fast;
    assert.equal(e.t.length, 6);
    const i = e.t.indexOf(slot);
    assert.ok(i >= 4, `bucket ${slot} in ${JSON.stringify(e.t)}`);
    assert.ok(e.requests_per_s[i] > 0, JSON.stringify(e));
    assert.ok(e.ttft_p50_ms[i] > 0 && e.ttft_p95_ms[i] >= e.ttft_p50_ms[i], JSON.stringify(e));
    assert.ok(e.queue_wait_p50_ms[i] >= 0, JSON.stringify(e));
    assert.ok(e.tokens_per_s[i] > 0, JSON.stringify(e));
    // The node's memory is sampled every 5 s.
    const n = await waitFor(async () => {
      const x = await (await get(arun, '/v1/stats?window=60')).json();
      return x.node.ram_used_mb.some((v) => v > 0) && x;
    }, { timeoutMs: 15000, intervalMs: 500, what: 'a node memory sample' });
    assert.equal(n.node.vram_used_mb.at(-1) === null || n.node.vram_used_mb.at(-1) >= 0, true);
  });

  test('engine.state carries the engine object: state, reason, started_at, expected_load_ms', async () => {
    const ready = events.seen.find((ev) => ev.type === 'engine.state' && ev.data.engine === 'fast' && ev.data.state === 'ready');
    assert.ok(ready, JSON.stringify(events.seen.map((ev) => ev.type)));
    const d = ready.data;
    assert.equal(d.name, 'fast');
    assert.ok(d.from === 'loading' || d.from === 'starting', d.from);
    assert.equal(typeof d.reason, 'string');
    assert.match(d.started_at, /^\d{4}-\d\d-\d\dT/);
    assert.ok(d.expected_load_ms >= 0, JSON.stringify(d)); // the load it ends is counted already
    assert.equal(d.expected_load_ms, d.last_load_ms);
    const starting = events.seen.find((ev) => ev.type === 'engine.state' && ev.data.engine === 'fast' && ev.data.state === 'starting');
    assert.ok(starting.data.loading_since_ms > 0, JSON.stringify(starting.data));
    assert.equal(starting.data.expected_load_ms, null); // its first load
  });

  test('queue.depth: a queued request is told, throttled to a few a second per engine', async () => {
    const t0 = events.seen.length;
    const answers = Promise.all([chat('slow'), chat('slow'), chat('slow')]);
    await waitFor(() => events.seen.slice(t0).some((ev) => ev.type === 'queue.depth' && ev.data.engine === 'slow' && ev.data.queued >= 1),
      { timeoutMs: 15000, what: 'a queue.depth event with a queued request' });
    await answers;
    const last = await waitFor(() => {
      const d = events.seen.slice(t0).filter((ev) => ev.type === 'queue.depth' && ev.data.engine === 'slow').at(-1);
      return d && d.data.queued === 0 && d.data.in_flight === 0 && d;
    }, { timeoutMs: 5000, what: 'the queue told empty' });
    assert.deepEqual(Object.keys(last.data).sort(), ['engine', 'in_flight', 'queued']);
    // Never more than one per 250 ms tick: count them per second of arrival.
    const times = events.seen.slice(t0).filter((ev) => ev.type === 'queue.depth' && ev.data.engine === 'slow').map((ev) => ev.time_ms);
    for (const t of times) assert.ok(times.filter((u) => u >= t && u < t + 1000).length <= 5, JSON.stringify(times));
  });

  test('run.status carries id, status, model, tenant, created_at, queued_ms, ttft_ms, tokens_per_s, output_tokens', async () => {
    const r = await fetch(`${arun.url}/v1/responses`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fast', input: 'hello', background: true }),
    });
    const run = await r.json();
    assert.equal(r.status, 200, JSON.stringify(run));
    const done = await waitFor(() => events.seen.find((ev) => ev.type === 'run.status' && ev.data.id === run.id && ev.data.status === 'completed'),
      { timeoutMs: 15000, what: 'the run completed' });
    const d = done.data;
    assert.equal(d.model, 'fast');
    assert.equal(d.tenant, 'default');
    assert.equal(d.created_at, run.created_at);
    assert.ok(d.queued_ms >= 0 && d.ttft_ms >= 0, JSON.stringify(d));
    assert.ok(d.output_tokens > 0, JSON.stringify(d));
    assert.ok(d.tokens_per_s === null || d.tokens_per_s > 0, JSON.stringify(d));
    const queued = events.seen.find((ev) => ev.type === 'run.status' && ev.data.id === run.id && ev.data.status === 'queued');
    assert.equal(queued.data.ttft_ms, null);
    assert.equal(queued.data.output_tokens, null);
    assert.equal(queued.data.tokens_per_s, null);
  });
});
