// Limits per tenant (contract 2 `tenants:`, issue 13) against a running arun with auth.mode keys:
// over each limit a request gets 429 with Retry-After and a message naming the limit and its
// value; another tenant is not affected; the daily output-token count survives a restart, both
// a drained one (SIGTERM) and a kill -9 after the count was written.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Arun, MOCK_BIN, waitFor, createKey } from './lib/arun.mjs';

const mock = (extra = '') => `"${MOCK_BIN} --port \${PORT} --model \${NAME} ${extra}"`;

const arunsToClean = [];
after(async () => { for (const a of arunsToClean) await a.cleanup(); });

// An arun with auth.mode keys, the tenants section given and one engine `m`; keys for the
// tenants named, made before it starts. Resolves to {arun, keys: {tenant: key}}.
async function start({ tenants, engine = mock(), engineExtra = '', logDebug = false, tenantsWithKeys = ['acme', 'beta'] }) {
  const arun = new Arun({
    config: `auth:\n  mode: keys\n${logDebug ? 'log_level: debug\n' : ''}tenants:\n${tenants}` +
      `engines:\n  m:\n    cmd: ${engine}\n${engineExtra}`,
  });
  arun.config = readFileSync(arun.configPath, 'utf8');
  arunsToClean.push(arun);
  const keys = {};
  for (const t of tenantsWithKeys) keys[t] = (await createKey(arun, { tenant: t })).key;
  await arun.start();
  return { arun, keys };
}

// The same arun again, on the same config and data_dir, once the last one exited.
async function restart(arun) {
  const again = new Arun({ config: arun.config, dir: arun.dir });
  again.config = arun.config;
  arunsToClean.push(again);
  return again.start();
}

function call(arun, key, path, body, { method = body ? 'POST' : 'GET', signal } = {}) {
  return fetch(`${arun.url}${path}`, {
    method,
    signal,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
}

const chat = (arun, key, extra = {}) => call(arun, key, '/v1/chat/completions',
  { model: 'm', messages: [{ role: 'user', content: 'hello there' }], ...extra });

// A 429 for a tenant's limit: Retry-After within [min, max], the OpenAI error shape with code
// rate_limit_exceeded, and a message that names the tenant, the limit and its value.
async function assertLimited(res, { tenant, limit, value, min = 1, max }) {
  const text = await res.text();
  assert.equal(res.status, 429, text);
  const ra = Number(res.headers.get('retry-after'));
  assert.ok(Number.isInteger(ra) && ra >= min && ra <= max, `Retry-After ${res.headers.get('retry-after')} not in [${min}, ${max}]`);
  const err = JSON.parse(text).error;
  assert.equal(err.code, 'rate_limit_exceeded');
  assert.ok(err.message.includes(`tenant ${tenant} is over its limit of ${limit}: ${value}`), err.message);
  assert.ok(err.message.includes(`retry after ${ra} s`), err.message);
  return err;
}

describe('limits per tenant', () => {
  test('requests_per_minute: a burst of N, then 429 until the next one fits; another tenant goes on', async () => {
    const { arun, keys } = await start({ tenants: '  acme: {requests_per_minute: 3}\n' });
    for (let i = 0; i < 3; i++) {
      const r = await call(arun, keys.acme, '/v1/models');
      assert.equal(r.status, 200, await r.text());
    }
    const err = await assertLimited(await call(arun, keys.acme, '/v1/models'),
      { tenant: 'acme', limit: 'requests_per_minute', value: 3, min: 15, max: 20 });
    assert.match(err.message, /\(tenants\.acme in the config\)/);
    // Every route counts, a generation too.
    await assertLimited(await chat(arun, keys.acme), { tenant: 'acme', limit: 'requests_per_minute', value: 3, max: 20 });
    // beta has the default (600 a minute).
    for (let i = 0; i < 5; i++) {
      const r = await call(arun, keys.beta, '/v1/models');
      assert.equal(r.status, 200, await r.text());
    }
    const m = await (await fetch(`${arun.url}/metrics`, { headers: { authorization: `Bearer ${(await createKey(arun, { tenant: 'ops', role: 'admin' })).key}` } })).text();
    assert.match(m, /arun_tenant_rejections_total\{tenant="acme",limit="requests_per_minute"\} 2/);
  });

  test('concurrent_requests: a second request while a stream runs is refused, and admitted once it ends', async () => {
    const { arun, keys } = await start({
      tenants: '  acme: {concurrent_requests: 1}\n',
      engine: mock('--tokens-per-s 5 --max-tokens 400'),
      engineExtra: '    start: always\n',
    });
    // fetch resolves with the head: the stream is open and holds acme's one slot.
    const first = await chat(arun, keys.acme, { stream: true });
    assert.equal(first.status, 200);
    const reader = first.body.getReader();
    await reader.read();
    await assertLimited(await call(arun, keys.acme, '/v1/models'),
      { tenant: 'acme', limit: 'concurrent_requests', value: 1, max: 1 });
    // beta's slots are its own.
    const b = await chat(arun, keys.beta, { max_tokens: 2 });
    assert.equal(b.status, 200, await b.text());
    await reader.cancel();
    // The slot comes back when the stream's request ends.
    await waitFor(async () => {
      const r = await call(arun, keys.acme, '/v1/models');
      await r.arrayBuffer();
      return r.status === 200;
    }, { timeoutMs: 10000, what: "acme's slot to come back" });
  });

  test('output_tokens_per_day: refused once the day is spent (plain, streamed, responses), until a restart and a kill -9 too', async () => {
    let { arun, keys } = await start({
      tenants: '  acme: {output_tokens_per_day: 10}\n  gamma: {output_tokens_per_day: 10}\n',
      logDebug: true,
      engine: mock('--ignore-eos'),
      tenantsWithKeys: ['acme', 'beta', 'gamma'],
    });
    // 6 + 6 tokens: the second answer crosses the budget and is not cut.
    let r = await chat(arun, keys.acme, { max_tokens: 6 });
    let body = await r.json();
    assert.equal(r.status, 200, JSON.stringify(body));
    assert.equal(body.usage.completion_tokens, 6);
    r = await chat(arun, keys.acme, { max_tokens: 6, stream: true }); // counted from the hidden usage chunk
    const streamed = await r.text();
    assert.equal(r.status, 200, streamed);
    assert.match(streamed, /data: \[DONE\]/);
    const limited = { tenant: 'acme', limit: 'output_tokens_per_day', value: 10, max: 86400 };
    const err = await assertLimited(await chat(arun, keys.acme, { max_tokens: 6 }), limited);
    assert.match(err.message, /12 used today \(UTC\)/);
    await assertLimited(await chat(arun, keys.acme, { max_tokens: 6, stream: true }), limited);
    await assertLimited(await call(arun, keys.acme, '/v1/responses', { model: 'm', input: 'hi' }), limited);
    await assertLimited(await call(arun, keys.acme, '/v1/responses', { model: 'm', input: 'hi', background: true }), limited);
    // Embeddings make no output tokens.
    r = await call(arun, keys.acme, '/v1/embeddings', { model: 'm', input: 'x' });
    assert.equal(r.status, 200, await r.text());
    // beta is not limited.
    r = await chat(arun, keys.beta, { max_tokens: 20 });
    assert.equal(r.status, 200, await r.text());

    // A drained restart writes the count at close.
    assert.equal((await arun.stop('SIGTERM')).code, 0);
    arun = await restart(arun);
    await assertLimited(await chat(arun, keys.acme, { max_tokens: 6 }), limited);

    // gamma spends its day; once the count is written (the flush's debug line), a kill -9
    // keeps it.
    r = await chat(arun, keys.gamma, { max_tokens: 12 });
    assert.equal(r.status, 200, await r.text());
    await waitFor(() => arun.logLines().some((l) => /daily usage written: tenant gamma, .* \+12 output tokens/.test(l.msg || '')),
      { timeoutMs: 10000, what: "gamma's count to be written" });
    assert.equal((await arun.stop('SIGKILL')).signal, 'SIGKILL');
    arun = await restart(arun);
    await assertLimited(await chat(arun, keys.gamma, { max_tokens: 1 }), { ...limited, tenant: 'gamma' });
    await assertLimited(await chat(arun, keys.acme, { max_tokens: 1 }), limited);
    r = await chat(arun, keys.beta, { max_tokens: 2 });
    assert.equal(r.status, 200, await r.text());
  });

  test('output_tokens_per_day: a stream left before its usage came still counts its tokens', async () => {
    const { arun, keys } = await start({
      tenants: '  acme: {output_tokens_per_day: 10}\n',
      engine: mock('--tokens-per-s 50 --ignore-eos'),
      engineExtra: '    start: always\n',
    });
    const r = await chat(arun, keys.acme, { stream: true, max_tokens: 1000 });
    assert.equal(r.status, 200);
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let text = '';
    while ((text.match(/"content"/g) || []).length < 12) {
      const { value, done } = await reader.read();
      assert.ok(!done, 'the stream ended early');
      text += dec.decode(value, { stream: true });
    }
    await reader.cancel();
    // The call ends once arun sees the client gone; its tokens are counted then (a request to
    // ask would make tokens of its own: the metric is read instead).
    const admin = (await createKey(arun, { tenant: 'ops', role: 'admin' })).key;
    await waitFor(async () => {
      const m = await (await call(arun, admin, '/metrics')).text();
      const n = /arun_tenant_output_tokens_total\{tenant="acme"\} (\d+)/.exec(m);
      return n && Number(n[1]) >= 12;
    }, { timeoutMs: 10000, what: 'the cut stream to be counted' });
    await assertLimited(await chat(arun, keys.acme, { max_tokens: 1 }),
      { tenant: 'acme', limit: 'output_tokens_per_day', value: 10, max: 86400 });
  });

  test('queued_runs: background creates past the limit are refused while the engine loads; another tenant queues', async () => {
    const { arun, keys } = await start({
      tenants: '  acme: {queued_runs: 2}\n',
      engine: mock('--load-ms 60000 --quiet-load'),
    });
    const create = (key) => call(arun, key, '/v1/responses', { model: 'm', input: 'later', background: true });
    for (let i = 0; i < 2; i++) {
      const r = await create(keys.acme);
      const obj = await r.json();
      assert.equal(r.status, 200, JSON.stringify(obj));
      assert.equal(obj.status, 'queued');
    }
    const err = await assertLimited(await create(keys.acme), { tenant: 'acme', limit: 'queued_runs', value: 2, max: 1 });
    assert.match(err.message, /2 background responses queued/);
    // beta's queue is its own.
    const r = await create(keys.beta);
    assert.equal(r.status, 200, await r.text());
    assert.equal((await (await create(keys.beta)).json()).status, 'queued');
  });
});
