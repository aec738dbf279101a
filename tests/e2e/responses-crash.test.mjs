// The durability promise (contract section 5) under kill -9: 50 streaming background runs on two
// engines, one that can continue a partial answer (continuation: chat-prefix, the mock repeating
// the prefix as llama-server does) and one that cannot; arun killed at a different moment in each
// round (the first event of the first run, a random number of deltas in, half the runs mid-
// answer, a third mid-answer and again while the restarted arun continues them) and started
// again on the same data_dir, adopting the engines. Every run ends completed
// (or failed `interrupted` on the engine that cannot continue); a client resuming from the last
// sequence number it saw gets every later event exactly once; the deltas spell the final text,
// and on the continuing engine that text is the answer an uninterrupted run gives. Also: the
// same Idempotency-Key makes one response, across a kill -9 too, and a 2xx survives the kill.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Arun, MOCK_BIN, waitFor, assertNoSanitizerReport } from './lib/arun.mjs';
import { mockAnswer, chatPromptText } from './lib/mock.mjs';

const RUNS = 50;
const client = (arun) => new OpenAI({ baseURL: `${arun.url}/v1`, apiKey: 'none', maxRetries: 0 });
const engineEntry = (name, flags, keys) => `  ${name}:\n    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME} ${flags}"\n` +
  `    max_concurrency: 10\n    start: always\n    restart: {policy: never}\n${keys}`;
// 40 tokens/s: answers of 8..32 tokens last 0.2..0.8 s, so a kill finds runs queued, mid-answer
// and finished; 10 slots per engine for 25 runs each keeps some queued.
const CONFIG = 'engines:\n' +
  engineEntry('cont', '--tokens-per-s 40 --echo-prefix', '    continuation: chat-prefix\n') +
  engineEntry('plain', '--tokens-per-s 40', '');

// A seeded PRNG (mulberry32): a failing round can be replayed with CRASH_SEED.
const SEED = Number(process.env.CRASH_SEED ?? (Date.now() % 1e9));
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Reads an SSE body record by record, calling onEvent({event, id, data}) for each, until the
// body ends or breaks (the kill). Resolves {ended} (true: the server closed it cleanly).
async function readSse(res, onEvent) {
  const dec = new TextDecoder();
  let buf = '';
  try {
    for await (const chunk of res.body) {
      buf += dec.decode(chunk, { stream: true });
      for (let i; (i = buf.indexOf('\n\n')) >= 0; buf = buf.slice(i + 2)) {
        const rec = {};
        for (const line of buf.slice(0, i).split('\n')) {
          const c = line.indexOf(': ');
          if (c > 0) rec[line.slice(0, c)] = line.slice(c + 2);
        }
        if (rec.data) onEvent({ event: rec.event, id: Number(rec.id), data: JSON.parse(rec.data) });
      }
    }
    return { ended: true };
  } catch (e) {
    return { ended: false, error: e };
  }
}

const isTerminal = (t) => ['response.completed', 'response.failed', 'response.incomplete'].includes(t);
const deltas = (events) => events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');

// One run as its client sees it: the events in the order received, from every connection.
class Run {
  constructor(round, i) {
    this.engine = i % 2 ? 'plain' : 'cont';
    this.input = `crash round ${round} run ${i}: tell me something`;
    this.expected = mockAnswer(chatPromptText([{ role: 'user', content: this.input }])).text;
    this.events = [];
    this.id = null;
  }

  get last() { return this.events.length ? this.events.at(-1).sequence_number : -1; }
  get finished() { return this.events.length > 0 && isTerminal(this.events.at(-1).type); }

  push(rec) {
    assert.equal(rec.id, rec.data.sequence_number, 'the SSE id is the sequence number');
    assert.equal(rec.event, rec.data.type);
    this.events.push(rec.data);
    if (rec.data.type === 'response.created') this.id = rec.data.response.id;
  }
}

// The engines' pids once both are ready.
function engines(arun) {
  return waitFor(async () => {
    const pids = {};
    for (const name of ['cont', 'plain']) {
      const e = await (await fetch(`${arun.url}/v1/engines/${name}`)).json();
      if (e.state !== 'ready') return false;
      pids[name] = e.pid;
    }
    return pids;
  }, { timeoutMs: 30000, what: 'both engines ready' });
}

// Every response in the store (the list pages by 100).
async function allResponses(arun) {
  const out = [];
  let after = null;
  for (;;) {
    const q = after ? `&after=${after}` : '';
    const page = await (await fetch(`${arun.url}/v1/responses?limit=100${q}`)).json();
    out.push(...page.data);
    if (!page.has_more) return out;
    after = page.last_id;
  }
}

// Resumes run r after its last seen event, one of three ways (the SDK's retrieve with
// starting_after, the query parameter, Last-Event-ID), and reads to the end. With mayBreak the
// stream may be cut (another kill): resolves whether it ended cleanly.
async function resume(arun, r, how, { mayBreak = false } = {}) {
  const after = r.last;
  try {
    if (how === 0) {
      const stream = await client(arun).responses.retrieve(r.id, { stream: true, starting_after: after });
      for await (const e of stream) r.push({ id: e.sequence_number, event: e.type, data: e });
      return true;
    }
    const url = `${arun.url}/v1/responses/${r.id}?stream=true${how === 1 ? `&starting_after=${after}` : ''}`;
    const res = await fetch(url, how === 2 ? { headers: { 'last-event-id': String(after) } } : {});
    assert.equal(res.status, 200, `resume of ${r.id} after ${after}`);
    const { ended } = await readSse(res, (rec) => r.push(rec));
    assert.ok(ended || mayBreak, `the resumed stream of ${r.id} ended cleanly`);
    return ended;
  } catch (e) {
    if (!mayBreak || e instanceof assert.AssertionError) throw e;
    return false;
  }
}

const deltaCount = (runs) => runs.reduce((n, r) => n + r.events.filter((e) => e.type === 'response.output_text.delta').length, 0);

describe('kill -9 of arun with 50 streaming background runs', () => {
  test('every run ends completed or failed `interrupted`; resumed clients see each event once; continued text is the uninterrupted answer', async () => {
    const random = rng(SEED);
    const t0 = Date.now();
    let arun = await new Arun({ config: CONFIG }).start();
    const dir = arun.dir;
    const seenIds = new Set();
    const killMoments = [
      // The first event of the first run: the runs were created a few ms ago, most not yet
      // acknowledged, their rows and first events in the store's queue.
      { what: 'the first event', until: (runs) => runs.some((r) => r.events.length > 0) },
      // A random number of text deltas into the round.
      { what: 'a random delta', until: null },
      // Half the runs mid-answer.
      { what: 'half the runs mid-answer', until: (runs) => runs.filter((r) => deltas(r.events).length > 0).length >= RUNS / 2 },
      // A third of the runs mid-answer, then again while the restarted arun continues them:
      // their second continuation folds events of two engine calls.
      { what: 'a third mid-answer, and again 40 deltas after the restart', until: (runs) => runs.filter((r) => deltas(r.events).length > 0).length >= RUNS / 3, again: 40 },
    ];
    let pids;
    try {
      pids = await engines(arun);
      for (const [round, moment] of killMoments.entries()) {
        const runs = Array.from({ length: RUNS }, (_, i) => new Run(round, i));
        if (moment.until === null) {
          // The expected answers hold ~20 tokens each: kill somewhere in the first 60%.
          const total = runs.reduce((n, r) => n + r.expected.split(' ').length - 1, 0);
          const k = 1 + Math.floor(random() * total * 0.6);
          moment.what += ` (${k} of ~${total} deltas, seed ${SEED})`;
          moment.until = (rs) => deltaCount(rs) >= k;
        }
        const url = arun.url;
        const follows = runs.map(async (r) => {
          let res;
          try {
            res = await fetch(`${url}/v1/responses`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ model: r.engine, input: r.input, background: true, stream: true }),
            });
          } catch { return; } /* killed before the answer */
          if (res.status !== 200) {
            r.refused = `${res.status} ${await res.text()}`;
            return;
          }
          await readSse(res, (rec) => r.push(rec));
        });
        await waitFor(() => moment.until(runs), { timeoutMs: 30000, intervalMs: 1, what: `round ${round}: ${moment.what}` });
        await arun.stop('SIGKILL');
        assertNoSanitizerReport(arun.stderr);
        await Promise.all(follows);
        const seenAtKill = runs.filter((r) => r.id).length;
        const finishedAtKill = runs.filter((r) => r.finished).length;
        assert.deepEqual(runs.filter((r) => r.refused).map((r) => r.refused), [], 'no POST refused');

        arun = await new Arun({ dir, config: CONFIG }).start({ timeoutMs: 30000 });
        // The engines survived the kill and were adopted, not started again.
        assert.deepEqual(await engines(arun), pids, 'the same engine processes after the restart');

        const acked = runs.filter((r) => r.id);
        if (moment.again) {
          // Clients resume, and arun is killed again while the runs continue.
          const before = deltaCount(runs);
          const resumes = acked.filter((r) => !r.finished).map((r, i) => resume(arun, r, i % 3, { mayBreak: true }));
          await waitFor(() => deltaCount(runs) >= before + moment.again, { timeoutMs: 30000, intervalMs: 1, what: `round ${round}: ${moment.again} deltas after the restart` });
          await arun.stop('SIGKILL');
          assertNoSanitizerReport(arun.stderr);
          await Promise.all(resumes);
          arun = await new Arun({ dir, config: CONFIG }).start({ timeoutMs: 30000 });
          assert.deepEqual(await engines(arun), pids, 'the same engine processes after the second restart');
        }
        // Every acknowledged run resumes from the last event its client saw.
        await Promise.all(acked.filter((r) => !r.finished).map((r, i) => resume(arun, r, i % 3)));
        for (const r of acked) {
          seenIds.add(r.id);
          const seq = r.events.map((e) => e.sequence_number);
          assert.deepEqual(seq, seq.map((_, i) => i), `${r.id} (${r.engine}): each event once, in order, from 0`);
          const types = r.events.map((e) => e.type);
          assert.equal(types[0], 'response.created');
          assert.equal(types[1], 'response.queued');
          assert.ok(isTerminal(types.at(-1)), `${r.id} ends with its status event, not ${types.at(-1)}`);
          assert.equal(types.filter(isTerminal).length, 1);
          for (const e of r.events) if (e.response) assert.equal(e.response.id, r.id);
          const final = await client(arun).responses.retrieve(r.id);
          assert.equal(final.status, r.events.at(-1).response.status);
          const text = deltas(r.events);
          assert.equal(final.arun.engine, r.engine, `${r.id}: its provenance names its engine`);
          assert.equal(final.output_text, text, `${r.id} (${r.engine}, ${final.status}): the deltas spell the final output text`);
          if (r.engine === 'cont' || final.status === 'completed') {
            assert.equal(final.status, 'completed', `${r.id} (${r.engine}): ${JSON.stringify(final.error)}`);
            assert.equal(text, r.expected, `${r.id} (${r.engine}): the uninterrupted answer, continued=${final.arun.continued_after_restart}`);
          } else {
            assert.equal(final.status, 'failed');
            assert.equal(final.error.code, 'interrupted');
            assert.match(final.error.message, /restarted/);
            // What was produced before the kill (all of it, when the kill fell between the last
            // delta and the end).
            assert.ok(r.expected.startsWith(text), `${r.id}: ${JSON.stringify(text)} begins ${JSON.stringify(r.expected)}`);
          }
        }
        // Runs no client heard of (killed before their first event was sent) end too.
        const all = await waitFor(async () => {
          const list = await allResponses(arun);
          return list.every((x) => ['completed', 'failed'].includes(x.status)) && list;
        }, { timeoutMs: 30000, what: 'every stored run to end' });
        for (const x of all) {
          if (x.status === 'failed') {
            assert.equal(x.model, 'plain', `${x.id}: ${JSON.stringify(x.error)}`);
            assert.equal(x.error.code, 'interrupted');
          }
        }
        const listed = new Set(all.map((x) => x.id));
        for (const id of seenIds) assert.ok(listed.has(id), `${id}: acknowledged before a kill, still there`);
        const continued = acked.filter((r) => r.engine === 'cont' && r.events.some((e) => e.response?.arun?.continued_after_restart)).length;
        console.log(`round ${round}: killed at ${moment.what}: ${seenAtKill} runs acknowledged, ${finishedAtKill} finished before the kill, ${continued} continued`);
      }
      console.log(`${killMoments.length} rounds in ${Date.now() - t0} ms`);
    } finally {
      await arun.cleanup();
      // A failure between a kill and the restart leaves the engines to this test.
      for (const pid of Object.values(pids ?? {})) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  });

  test('the same Idempotency-Key makes one response, before and across a kill -9; every 2xx before the kill is there after it', async () => {
    const config = 'engines:\n' + engineEntry('cont', '--tokens-per-s 40 --echo-prefix', '    continuation: chat-prefix\n');
    let arun = await new Arun({ config }).start();
    const dir = arun.dir;
    let pids;
    try {
      pids = { cont: (await waitFor(async () => {
        const e = await (await fetch(`${arun.url}/v1/engines/cont`)).json();
        return e.state === 'ready' && e;
      }, { timeoutMs: 30000, what: 'the engine ready' })).pid };
      const post = (url, key, input, extra = {}) => fetch(`${url}/v1/responses`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
        body: JSON.stringify({ model: 'cont', input, background: true, ...extra }),
      });
      // Twice in a row, then five at once: one response each.
      const a1 = await (await post(arun.url, 'key-a', 'idempotent a')).json();
      const a2 = await (await post(arun.url, 'key-a', 'idempotent a')).json();
      assert.equal(a2.id, a1.id);
      const b = await Promise.all(Array.from({ length: 5 }, () => post(arun.url, 'key-b', 'idempotent b').then((r) => r.json())));
      assert.equal(new Set(b.map((x) => x.id)).size, 1, JSON.stringify(b.map((x) => x.id ?? x.error)));
      const other = await post(arun.url, 'key-a', 'another body');
      assert.equal(other.status, 409);
      assert.equal((await other.json()).error.code, 'idempotency_key_reused');

      // Twenty creations at once; kill -9 as soon as the first is acknowledged. A client that
      // saw a 2xx may rely on it; one that did not retries with its key and gets one response.
      const answers = new Map();
      const url = arun.url;
      const creations = Array.from({ length: 20 }, (_, i) => post(url, `key-c${i}`, `idempotent c${i}`)
        .then(async (res) => { if (res.status === 200) answers.set(i, (await res.json()).id); })
        .catch(() => { /* killed before the answer */ }));
      await waitFor(() => answers.size > 0, { timeoutMs: 30000, intervalMs: 1, what: 'a first 2xx' });
      await arun.stop('SIGKILL');
      assertNoSanitizerReport(arun.stderr);
      await Promise.all(creations);
      const acked = new Map(answers);

      arun = await new Arun({ dir, config }).start({ timeoutMs: 30000 });
      const oa = client(arun);
      for (const [i, id] of acked) {
        const got = await oa.responses.retrieve(id);
        assert.equal(got.id, id, `acknowledged c${i} is there after the kill`);
      }
      const again = await post(arun.url, 'key-a', 'idempotent a');
      assert.equal((await again.json()).id, a1.id, 'the key survived the kill');
      // Every client retries with its key: acknowledged ones get their response, the others
      // one response each, however far their first try got.
      const retried = await Promise.all(Array.from({ length: 20 }, (_, i) => post(arun.url, `key-c${i}`, `idempotent c${i}`).then((r) => r.json())));
      for (const [i, id] of acked) assert.equal(retried[i].id, id, `c${i} retried after the kill`);
      for (const [i, r] of retried.entries()) assert.ok(r.id, `c${i} retried after the kill: ${JSON.stringify(r)}`);
      const done = await waitFor(async () => {
        const list = await allResponses(arun);
        return list.every((x) => x.status === 'completed') && list;
      }, { timeoutMs: 30000, what: 'every response to complete' });
      const inputs = await Promise.all(done.map(async (x) => {
        const items = await (await fetch(`${arun.url}/v1/responses/${x.id}/input_items`)).json();
        return items.data[0].content[0].text;
      }));
      const count = (text) => inputs.filter((t) => t === text).length;
      assert.equal(count('idempotent a'), 1);
      assert.equal(count('idempotent b'), 1);
      for (let i = 0; i < 20; i++) assert.equal(count(`idempotent c${i}`), 1, `c${i}: one response`);
    } finally {
      await arun.cleanup();
      for (const pid of Object.values(pids ?? {})) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  });

  test('a queued run cancelled right after a restart, before recovery scheduled it, stays cancelled and never reaches its engine', async () => {
    // One slot, slow tokens: the runs after the first wait in the queue; enough of them that
    // recovery's scan takes a moment, so the cancels come while it runs (they wait for it).
    const config = 'engines:\n' + engineEntry('one', '--tokens-per-s 5', '').replace('max_concurrency: 10', 'max_concurrency: 1');
    let arun = await new Arun({ config }).start();
    const dir = arun.dir;
    let pids;
    try {
      pids = { one: (await waitFor(async () => {
        const e = await (await fetch(`${arun.url}/v1/engines/one`)).json();
        return e.state === 'ready' && e;
      }, { timeoutMs: 30000, what: 'the engine ready' })).pid };
      const ids = [];
      for (let i = 0; i < 300; i += 50) {
        ids.push(...await Promise.all(Array.from({ length: 50 }, (_, j) => fetch(`${arun.url}/v1/responses`, {
          method: 'POST', body: JSON.stringify({ model: 'one', input: `queued ${i + j}`, background: true }),
        }).then((r) => r.json()).then((r) => r.id))));
      }
      await arun.stop('SIGKILL');
      arun = new Arun({ dir, config });
      await arun.start({ timeoutMs: 30000 });
      const victims = ids.slice(-20);
      const cancelled = await Promise.all(victims.map((id) => fetch(`${arun.url}/v1/responses/${id}/cancel`, { method: 'POST' }).then((r) => r.json())));
      for (const c of cancelled) assert.equal(c.status, 'cancelled', JSON.stringify(c));
      // The engine's queue holds the others only: the first run (in progress at the kill) failed
      // `interrupted`, 279 wait or run, none of the cancelled ones.
      await waitFor(async () => {
        const e = await (await fetch(`${arun.url}/v1/engines/one`)).json();
        return e.in_flight + e.queued === 279;
      }, { timeoutMs: 10000, what: '279 runs at the engine (in flight + queued)' });
      for (const id of victims) assert.equal((await client(arun).responses.retrieve(id)).status, 'cancelled');
      assert.equal((await client(arun).responses.retrieve(ids[0])).error.code, 'interrupted');
      assert.equal((await fetch(`${arun.url}/healthz`)).status, 200);
      assert.equal(arun.exit, null, 'arun is still running');
    } finally {
      await arun.cleanup();
      for (const pid of Object.values(pids ?? {})) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  });
});
