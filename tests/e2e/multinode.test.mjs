// Three `arun serve` on loopback sharing one PostgreSQL database (docs/internals/cluster.md), each
// with its own data_dir and its own mock engine serving the same model with continuation:
// chat-prefix. Twenty background runs are created on node A and each is streamed from node C
// from its first event; A is killed -9 mid-stream. Every run must then end on B or C (continued:
// completed; else failed with code interrupted) within the lease plus the takeover scan plus a
// second, every client must see each sequence number exactly once with no gap, the continued
// text must be the stored prefix plus the mock's deterministic continuation, and B's
// GET /v1/nodes must show A down with a reason. Runs in the PostgreSQL pass only (make e2e-pg).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { Arun, MOCK_BIN, waitFor, tempDir, onPostgres } from './lib/arun.mjs';
import { createDb } from './lib/pg.mjs';
import { chatPromptText, mockAnswer } from './lib/mock.mjs';

const RUNS = 20;
const LEASE_S = 3;
const BEAT_MS = (LEASE_S * 1000) / 3; // cluster.c: the heartbeat is lease_s / 3 (0.5..2 s)
const SCAN_MS = 250;                   // cluster.c: the takeover scan runs every 250 ms
const DOWN_BEATS = 3;                  // cluster.c: down after 3 heartbeats unseen
// The issue's bound: lease time plus a second. A run's lease ends at most lease_s after A's last
// renewal (which came before the kill), a scan finds it within SCAN_MS, and the claim, the
// recovery and the continuation's few tokens fit in the rest of the second.
const TAKEOVER_BOUND_MS = LEASE_S * 1000 + 1000;
const DOWN_BOUND_MS = (DOWN_BEATS + 2) * BEAT_MS + 1000;

// A generates slowly (the runs are mid-stream when it dies); B and C continue quickly, so a
// run's end comes soon after its takeover. The answers depend on the prompt only.
const engine = (tps) => `engines:
  cont:
    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME} --tokens-per-s ${tps} --ignore-eos --max-tokens 40 --echo-prefix"
    continuation: chat-prefix
    max_concurrency: 32
    start: always
`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Follows a run's stream on node from its first event, recording each event with the time it
// came; a broken connection resumes with Last-Event-ID (it should never need to). Resolves at
// the terminal event.
async function follow(node, id, rec) {
  const terminal = /^response\.(completed|failed|cancelled|incomplete)$/;
  while (!rec.ac.signal.aborted) {
    const headers = rec.events.length ? { 'last-event-id': String(rec.events.at(-1).sequence_number) } : {};
    if (rec.events.length) rec.resumes++;
    try {
      const res = await fetch(`${node.url}/v1/responses/${id}?stream=true`, { headers, signal: rec.ac.signal });
      assert.equal(res.status, 200, `stream of ${id} on ${node.name}`);
      const dec = new TextDecoder();
      let buf = '';
      for await (const chunk of res.body) {
        buf += dec.decode(chunk, { stream: true });
        for (let i; (i = buf.indexOf('\n\n')) >= 0; buf = buf.slice(i + 2)) {
          const m = /^data: (.*)$/m.exec(buf.slice(0, i));
          if (!m || m[1] === '[DONE]') continue;
          const ev = JSON.parse(m[1]);
          rec.events.push(ev);
          if (terminal.test(ev.type)) { rec.endMs = Date.now(); return; }
        }
      }
    } catch (e) {
      if (rec.ac.signal.aborted) return;
      rec.errors.push(String(e.cause?.code || e.message));
    }
    await sleep(100);
  }
}

const deltas = (events) => events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
const textOf = (resp) => (resp.output || []).flatMap((o) => o.content || []).map((c) => c.text || '').join('');

const nodes = [];
const orphans = []; // engines of killed nodes: they outlive arun by design (contract 5)
after(async () => {
  for (const n of nodes) await n.cleanup();
  for (const pid of orphans) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
});

describe('several nodes on one PostgreSQL database', { skip: !onPostgres && 'runs in the PostgreSQL pass (make e2e-pg)' }, () => {
  test('kill -9 of the node running 20 streaming runs: B or C take each over in time, every client sees every event once, continued text is prefix + continuation', async () => {
    const url = createDb('multinode');
    for (const [name, tps] of [['a', 10], ['b', 400], ['c', 400]]) {
      const n = new Arun({ config: engine(tps), dir: tempDir(`arun-node-${name}-`), pg: { url, nodeId: `node-${name}`, leaseS: LEASE_S } });
      n.name = name;
      nodes.push(n);
    }
    const [A, B, C] = nodes;
    await Promise.all(nodes.map((n) => n.start({ timeoutMs: 30000 })));
    await waitFor(async () => {
      const r = await fetch(`${B.url}/v1/nodes`);
      if (r.status !== 200) return false;
      const up = (await r.json()).data.filter((x) => x.state === 'up').map((x) => x.id);
      return ['node-a', 'node-b', 'node-c'].every((id) => up.includes(id));
    }, { timeoutMs: 20000, what: 'B to see all three nodes up' });

    const runs = [];
    for (let i = 0; i < RUNS; i++) {
      const input = `story ${i} on three nodes`;
      const res = await fetch(`${A.url}/v1/responses`, { method: 'POST', body: JSON.stringify({ model: 'cont', input, background: true }) });
      assert.equal(res.status, 200, await res.clone().text());
      const { id } = await res.json();
      const rec = { id, input, events: [], errors: [], resumes: 0, endMs: 0, ac: new AbortController() };
      rec.done = follow(C, id, rec);
      runs.push(rec);
    }
    // Kill A once C has shown every run streaming (a few deltas each, read from the table).
    await waitFor(() => runs.every((r) => r.events.filter((e) => e.type === 'response.output_text.delta').length >= 3),
      { timeoutMs: 30000, what: 'C to stream 3 deltas of every run' });
    const aEngine = (await (await fetch(`${A.url}/v1/engines/cont`)).json()).pid;
    orphans.push(aEngine);
    const killMs = Date.now();
    A.proc.kill('SIGKILL');
    await A.exited;
    const before = new Map(runs.map((r) => [r.id, r.events.length]));

    // B says A is down, with a reason, within the down time.
    const down = await waitFor(async () => {
      const r = await fetch(`${B.url}/v1/nodes`);
      const a = (await r.json()).data.find((x) => x.id === 'node-a');
      return a && a.state === 'down' ? a : false;
    }, { timeoutMs: DOWN_BOUND_MS + 10000, what: "B's /v1/nodes to show node-a down" });
    const downMs = Date.now() - killMs;
    assert.ok(typeof down.reason === 'string' && down.reason.length > 0, JSON.stringify(down));

    // Every run's terminal event on C; a run stuck past the bound (and 20 s more) is reported
    // with what its client saw last and what B reads of it.
    try {
      await waitFor(() => runs.every((r) => r.endMs), { timeoutMs: TAKEOVER_BOUND_MS + 20000, intervalMs: 50, what: 'every run to end on C' });
    } catch (e) {
      const stuck = [];
      for (const r of runs.filter((x) => !x.endMs)) {
        const row = await (await fetch(`${B.url}/v1/responses/${r.id}`)).json();
        stuck.push(`${r.id}: last event ${r.events.at(-1)?.type} #${r.events.at(-1)?.sequence_number}; B reads ${row.status} (${JSON.stringify(row.arun?.node ?? null)}); errors ${r.errors.join(',')}`);
      }
      const logs = [B, C].map((n) => `${n.name}'s warnings and cluster lines:\n${n.logLines()
        .filter((l) => l.level === 'warn' || l.level === 'error' || /cluster|node|claim|took over|lease/.test(`${l.module} ${l.msg}`))
        .slice(-15).map((l) => `  ${l.level} ${l.module}: ${l.msg}${l.error ? ` (${l.error})` : ''}`).join('\n')}`);
      throw new Error(`${e.message}\n${stuck.length} runs did not end:\n${stuck.join('\n')}\n${logs.join('\n')}`);
    } finally {
      for (const r of runs) r.ac.abort();
      await Promise.all(runs.map((r) => r.done));
    }
    const ends = runs.map((r) => r.endMs - killMs);
    console.log(`multinode: A down on B after ${downMs} ms (bound ${DOWN_BOUND_MS}); runs ended ${Math.min(...ends)}..${Math.max(...ends)} ms after the kill (bound ${TAKEOVER_BOUND_MS}); ${runs.reduce((n, r) => n + r.resumes, 0)} stream resumes`);
    assert.ok(downMs <= DOWN_BOUND_MS, `A seen down after ${downMs} ms, bound ${DOWN_BOUND_MS}`);

    for (const r of runs) {
      const seqs = r.events.map((e) => e.sequence_number);
      assert.deepEqual(seqs, seqs.map((_, i) => i), `${r.id}: every sequence number once, in order, from 0 (errors: ${r.errors.join(', ')})`);
      assert.ok(r.endMs - killMs <= TAKEOVER_BOUND_MS, `${r.id} ended ${r.endMs - killMs} ms after the kill, bound ${TAKEOVER_BOUND_MS}`);
      const last = r.events.at(-1);
      const res = await fetch(`${B.url}/v1/responses/${r.id}`);
      assert.equal(res.status, 200);
      const final = await res.json();
      if (last.type === 'response.completed') {
        assert.equal(final.status, 'completed');
        const text = textOf(final);
        const prefix = deltas(r.events.slice(0, before.get(r.id)));
        assert.equal(deltas(r.events), text, `${r.id}: the deltas make the final text`);
        assert.ok(text.startsWith(prefix), `${r.id}: the prefix streamed by A stays`);
        const whole = mockAnswer(chatPromptText([{ role: 'user', content: r.input }]), { ignoreEos: true, maxTokens: 1000 }).text;
        assert.ok(whole.startsWith(text), `${r.id}: prefix + continuation is the mock's answer:\n${text}\n${whole}`);
        if (r.endMs > killMs) assert.ok(text.length > prefix.length, `${r.id}: continued after the kill`);
      } else {
        assert.equal(last.type, 'response.failed', JSON.stringify(last));
        assert.equal(final.status, 'failed');
        assert.equal(final.error.code, 'interrupted', JSON.stringify(final.error));
      }
      if (final.arun && final.arun.node !== undefined) assert.ok(['node-b', 'node-c'].includes(final.arun.node), final.arun.node);
    }
  });
});
