// Requests routed across nodes (docs/gateway.md "Routing across nodes"): two aruns share one
// PostgreSQL store (scripts/pgtmp.sh); node A runs mock engine "m-a", node B has no engine. A
// chat completion sent to B for "m-a" is served by A, streamed and not, through the openai SDK,
// and every answer says which node answered (x-arun-node); a wrong cluster secret is a 401; a
// model nobody serves is a 404 that names what the nodes serve. It also measures what the hop
// costs: p50/p99 of a non-streamed completion through B against the same straight at A.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import OpenAI from 'openai';
import { Arun, MOCK_BIN, ROOT, createKey, freePort, tempDir, waitFor } from './lib/arun.mjs';

const SECRET = 'e2e-cluster-secret-0123456789abcdef0123456789';
const PGTMP = join(ROOT, 'scripts/pgtmp.sh');
const HOP_SAMPLES = Number(process.env.PEERS_HOP_SAMPLES || 200);

function pg(...args) {
  return execFileSync('sh', [PGTMP, ...args], { encoding: 'utf8', timeout: 60000 }).trim();
}

// A node of the cluster on a port of its own (its advertised address must name it).
async function node(pgUrl, id, engines = '') {
  const port = await freePort();
  const config = `store:\n  url: ${pgUrl}\nauth:\n  mode: keys\n` +
    `cluster:\n  node_id: ${id}\n  advertise: http://127.0.0.1:${port}\n  lease_s: 2\n` +
    (engines ? `engines:\n${engines}` : '');
  return new Arun({ config, args: ['--listen', `127.0.0.1:${port}`],
    env: { ARUN_CLUSTER_SECRET: SECRET } });
}

const client = (arun, key) =>
  new OpenAI({ baseURL: `${arun.url}/v1`, apiKey: key, maxRetries: 0 });

const ask = { model: 'm-a', messages: [{ role: 'user', content: 'hello' }], max_tokens: 8 };

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function latencies(url, key, n) {
  const ms = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify(ask),
    });
    await r.arrayBuffer();
    assert.equal(r.status, 200);
    ms.push(performance.now() - t0);
  }
  return ms.sort((x, y) => x - y);
}

describe('requests across nodes', () => {
  let pgDir;
  let a;
  let b;
  let key;

  before(async () => {
    pgDir = tempDir('arun-pg-');
    const url = pg('start', pgDir);
    a = await node(url, 'node-a',
      `  m-a:\n    cmd: "${MOCK_BIN} --port \${PORT}"\n    models: [m-a]\n    start: always\n`);
    b = await node(url, 'node-b');
    await a.start({ timeoutMs: 30000 });
    await b.start({ timeoutMs: 30000 });
    key = (await createKey(a, { tenant: 'acme' })).key; // the store is shared: B knows it too
    // B serves m-a once its view of A says A's engine does.
    await waitFor(async () => {
      const r = await fetch(`${b.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
      if (r.status !== 200) return false;
      const m = (await r.json()).data.find((x) => x.id === 'm-a');
      return m && m.node === 'node-a' && m.state === 'ready' && m;
    }, { timeoutMs: 30000, what: 'node B to list m-a as node-a\'s, ready' });
  });

  after(async () => {
    await b?.cleanup();
    await a?.cleanup();
    if (pgDir) pg('stop', pgDir);
  });

  test('a completion sent to B for A\'s model is answered by A', async () => {
    const { data, response } = await client(b, key).chat.completions.create(ask).withResponse();
    assert.equal(response.headers.get('x-arun-node'), 'node-a');
    assert.equal(response.headers.get('x-arun-engine'), 'm-a');
    assert.equal(data.object, 'chat.completion');
    assert.ok(data.choices[0].message.content.length > 0);
    assert.ok(data.usage.completion_tokens > 0);
    // Straight at A, and at B for what B itself answers, each names itself.
    const direct = await client(a, key).chat.completions.create(ask).withResponse();
    assert.equal(direct.response.headers.get('x-arun-node'), 'node-a');
    const models = await fetch(`${b.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(models.headers.get('x-arun-node'), 'node-b');
  });

  test('a streamed completion sent to B comes from A, whole', async () => {
    const { data: stream, response } = await client(b, key).chat.completions
      .create({ ...ask, stream: true, stream_options: { include_usage: true } }).withResponse();
    assert.equal(response.headers.get('x-arun-node'), 'node-a');
    let text = '';
    let finish = null;
    let usage = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const c = chunk.choices[0];
      if (c?.delta?.content) text += c.delta.content;
      if (c?.finish_reason) finish = c.finish_reason;
    }
    assert.ok(text.length > 0);
    assert.ok(finish);
    assert.ok(usage && usage.completion_tokens > 0, 'the usage the client asked for arrives');
  });

  test('a wrong cluster secret is a 401; the node headers alone are not believed', async () => {
    const body = JSON.stringify(ask);
    const headers = { 'content-type': 'application/json', 'x-arun-hop': 'node-b',
      'x-arun-tenant': 'acme' };
    let r = await fetch(`${a.url}/v1/chat/completions`, { method: 'POST', body,
      headers: { ...headers, 'x-arun-cluster': `${SECRET.slice(0, -1)}x` } });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('x-arun-node'), 'node-a');
    assert.ok(!(await r.text()).includes(SECRET.slice(0, 20)));
    r = await fetch(`${a.url}/v1/chat/completions`, { method: 'POST', body, headers });
    assert.equal(r.status, 401, 'hop and tenant without the secret are no credentials');
    r = await fetch(`${a.url}/v1/chat/completions`, { method: 'POST', body,
      headers: { ...headers, 'x-arun-cluster': SECRET } });
    assert.equal(r.status, 200, 'the right secret is');
    await r.arrayBuffer();
  });

  test('a model nobody serves is a 404 naming the models the nodes serve', async () => {
    const err = await client(b, key).chat.completions.create({ ...ask, model: 'nobody' })
      .then(() => null, (e) => e);
    assert.ok(err, 'the request failed');
    assert.equal(err.status, 404);
    assert.equal(err.code, 'model_not_found');
    assert.match(err.message, /the model 'nobody' does not exist; models served here: .*; on other nodes: .*m-a/);
  });

  test('the hop\'s added latency (p50/p99, non-streamed, mock engine)', async () => {
    await latencies(a.url, key, 10); // warm both paths' connections
    await latencies(b.url, key, 10);
    const direct = await latencies(a.url, key, HOP_SAMPLES);
    const via = await latencies(b.url, key, HOP_SAMPLES);
    const p = (xs, q) => percentile(xs, q).toFixed(2);
    console.log(`# hop latency over ${HOP_SAMPLES} requests: direct at A p50 ${p(direct, 50)} ms ` +
      `p99 ${p(direct, 99)} ms; through B p50 ${p(via, 50)} ms p99 ${p(via, 99)} ms; ` +
      `added p50 ${(percentile(via, 50) - percentile(direct, 50)).toFixed(2)} ms`);
    assert.ok(percentile(via, 50) >= 0);
  });
});
