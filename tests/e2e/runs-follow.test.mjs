// Two aruns sharing one PostgreSQL (scripts/pgtmp.sh): a run lives on the node that created it,
// and the other node serves it too (docs/internals/runs.md, "Several nodes"): a background
// streaming run created on A is streamed from B, from the start and from a Last-Event-ID in its
// middle, each sequence number exactly once and in order up to response.completed (B replays
// from the table, then follows A's commits through the store's notices); a cancel sent to B
// cancels the run on A (forwarded to its owner); and a key created on A works on B at once, a
// key revoked on A is refused on B at once (B re-reads the keys on the store's notice).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arun, MOCK_BIN, ROOT, createKey, freePort, waitFor } from './lib/arun.mjs';

const PGTMP = join(ROOT, 'scripts/pgtmp.sh');
const SECRET = 'follow-test-cluster-secret-0123456789abcdef';
// At once = well inside the 60 s and 2 s safety nets: only a notice gets a change there so soon.
const AT_ONCE_MS = 1500;

// 20 tokens/s: a 60-token answer takes 3 s, so B starts following while A still writes.
const engines = (tokens) => `engines:
  slow:
    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME} --tokens-per-s 20 --ignore-eos --max-tokens ${tokens}"
`;

function nodeConfig(url, id, port, tokens) {
  return `store:
  url: ${url}
auth:
  mode: keys
cluster:
  node_id: ${id}
  advertise: http://127.0.0.1:${port}
  lease_s: 5
${engines(tokens)}`;
}

async function startNode(url, id, tokens) {
  const port = await freePort();
  const node = new Arun({ config: nodeConfig(url, id, port, tokens), args: ['--listen', `127.0.0.1:${port}`],
    env: { ARUN_CLUSTER_SECRET: SECRET } });
  return node;
}

// Reads an SSE stream to its end: every event as {seq, type, data}, pushed into `events` as it
// comes (the caller may watch it grow).
async function readStream(url, key, headers = {}, events = []) {
  const res = await fetch(url, { headers: { authorization: `Bearer ${key}`, ...headers } });
  // The body is read for the message only on a failure: awaiting a clone's text would wait for
  // the whole stream before the first event is looked at.
  if (res.status !== 200) assert.fail(`${url}: ${res.status} ${await res.text()}`);
  const dec = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    for (let i; (i = buf.indexOf('\n\n')) >= 0; buf = buf.slice(i + 2)) {
      const block = buf.slice(0, i);
      const id = /^id: (\d+)$/m.exec(block);
      const type = /^event: (.*)$/m.exec(block);
      const data = /^data: (.*)$/m.exec(block);
      if (id && type && data) events.push({ seq: Number(id[1]), type: type[1], data: JSON.parse(data[1]) });
    }
  }
  return events;
}

// Every number from first on, once, in order, and the last event is the run's completion.
function assertExactlyOnce(events, first, who) {
  const seqs = events.map((e) => e.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => first + i), `${who}: sequence numbers ${seqs.join(',')}`);
  assert.equal(events.at(-1)?.type, 'response.completed', `${who} ends with ${events.at(-1)?.type}`);
  for (const e of events) assert.equal(e.data.sequence_number, e.seq, `${who}: data and id agree`);
}

const api = (node, key) => ({
  post: (path, body) => fetch(`${node.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  }),
  get: (path) => fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${key}` } }),
});

let pgAvailable = true;
try {
  execFileSync('sh', ['-c', 'ls -d /usr/lib/postgresql/*/bin/initdb'], { stdio: 'ignore' });
} catch {
  pgAvailable = false;
}

describe('a run on another node', { skip: !pgAvailable && 'no PostgreSQL server binaries' }, () => {
  // Not inside a 0700 temp dir: as root, pgtmp.sh runs PostgreSQL as nobody, who must reach it.
  const pgDir = join(tmpdir(), `arun-pg-${process.pid}-${Date.now()}`);
  let a, b, admin;

  before(async () => {
    const url = execFileSync(PGTMP, ['start', pgDir], { encoding: 'utf8' }).trim().split('\n').at(-1);
    a = await startNode(url, 'node-a', 60);
    b = await startNode(url, 'node-b', 60);
    admin = await createKey(a, { tenant: 'acme', role: 'admin' });
    await a.start();
    await b.start();
  });

  after(async () => {
    await Promise.all([a?.cleanup(), b?.cleanup()]);
    execFileSync(PGTMP, ['stop', pgDir]);
  });

  test('B streams A\'s run from the start and from a Last-Event-ID: each event once, in order, to response.completed', async () => {
    const made = await api(a, admin.key).post('/v1/responses', { model: 'slow', input: 'tell a story', background: true, stream: false });
    assert.equal(made.status, 200);
    const { id } = await made.json();
    assert.equal(made.headers.get('x-arun-node') ?? 'node-a', 'node-a');

    const seen = [];
    const fromStart = readStream(`${b.url}/v1/responses/${id}?stream=true`, admin.key, {}, seen);
    // The Last-Event-ID of a client that lost its connection after event `mid`, resuming on B
    // while the run still goes on on A.
    const mid = 5;
    await waitFor(() => seen.length > mid + 1, { timeoutMs: 10000, what: `B to stream event ${mid + 1} of ${id}` });
    assert.ok(!seen.some((e) => e.type === 'response.completed'), 'the run is still going on');
    const fromMiddle = readStream(`${b.url}/v1/responses/${id}?stream=true`, admin.key, { 'last-event-id': String(mid) });

    const [all, rest] = await Promise.all([fromStart, fromMiddle]);
    assertExactlyOnce(all, 0, 'from the start');
    assertExactlyOnce(rest, mid + 1, `after ${mid}`);
    // The same events A stored, byte for byte in their data.
    const stored = await readStream(`${a.url}/v1/responses/${id}?stream=true`, admin.key);
    assert.deepEqual(all.map((e) => e.data), stored.map((e) => e.data));
    assert.deepEqual(rest.map((e) => e.data), stored.slice(mid + 1).map((e) => e.data));
  });

  test('a cancel sent to B cancels the run on A, and B\'s stream of it ends', async () => {
    const made = await api(a, admin.key).post('/v1/responses', { model: 'slow', input: 'a long one', background: true, stream: false, max_output_tokens: 2000 });
    assert.equal(made.status, 200);
    const { id } = await made.json();
    await waitFor(async () => (await (await api(b, admin.key).get(`/v1/responses/${id}`)).json()).status === 'in_progress',
      { timeoutMs: 10000, what: `run ${id} in progress as B reads it` });
    const following = readStream(`${b.url}/v1/responses/${id}?stream=true`, admin.key);

    const r = await api(b, admin.key).post(`/v1/responses/${id}/cancel`, {});
    const body = await r.json();
    assert.equal(r.status, 200, JSON.stringify(body));
    assert.equal(body.status, 'cancelled');
    const onA = await (await api(a, admin.key).get(`/v1/responses/${id}`)).json();
    assert.equal(onA.status, 'cancelled');
    // Its log line may reach the test's pipe after the HTTP answer: waited for, not assumed.
    await waitFor(() => a.logLines().some((l) => /cancelled by request/.test(l.msg ?? '') && (l.msg ?? '').includes(id)),
      { timeoutMs: 5000, what: 'A to log that it cancelled the run itself (its engine call ended there)' });

    // The follower on B ends without a terminal event (a cancelled run has none): its row says.
    const events = await Promise.race([following, new Promise((_, rej) => setTimeout(() => rej(new Error('B\'s stream of a cancelled run did not end')), 10000).unref())]);
    const seqs = events.map((e) => e.seq);
    assert.deepEqual(seqs, seqs.map((_, i) => i), 'each event once, in order');
    assert.ok(!events.some((e) => e.type === 'response.completed'));
  });

  test('a key created on A works on B at once; revoked on A, it is refused on B at once', async () => {
    const made = await api(a, admin.key).post('/v1/keys', { tenant: 'beta' });
    assert.equal(made.status, 201);
    const k = await made.json();
    const t0 = Date.now();
    await waitFor(async () => (await api(b, k.key).get('/v1/models')).status === 200,
      { timeoutMs: AT_ONCE_MS, intervalMs: 20, what: `key ${k.id} made on A to work on B` });
    const created = Date.now() - t0;

    const revoked = await api(a, admin.key).post(`/v1/keys/${k.id}/revoke`, {});
    assert.equal(revoked.status, 200);
    const t1 = Date.now();
    await waitFor(async () => (await api(b, k.key).get('/v1/models')).status === 401,
      { timeoutMs: AT_ONCE_MS, intervalMs: 20, what: `key ${k.id} revoked on A to be refused on B` });
    console.log(`key created on A worked on B after ${created} ms; revoked, refused after ${Date.now() - t1} ms`);
  });
});
