// What the console (issue 14) reads from the server: GET /v1/whoami, GET /v1/node, the engine
// object's load and uptime facts, the events it lives on (engine.state, queue.depth,
// run.status) and GET /v1/stats's ring. Against the mock engine, as a console would see them.
import { test, describe, before, after } from 'node:test';
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
