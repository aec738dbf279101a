// A PostgreSQL outage under load (docs/internals/store.md): one node on PostgreSQL, clients
// writing all along (background runs, API keys, conversation items) while the server is
// stopped at once (a crash: pg_ctl -m immediate) for 5 s and started again. /readyz must answer
// 503 with a sentence naming PostgreSQL during the outage and 200 after; every write answered
// 2xx (before, during or after) must be there afterwards, read back through the API; a write
// during the outage either succeeds late (after the reconnect) or fails with an OpenAI error,
// never a 2xx that is lost; arun never crashes. Runs in the PostgreSQL pass only (make e2e-pg).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { Arun, MOCK_BIN, createKey, waitFor, onPostgres } from './lib/arun.mjs';
import { createDb, pgKill, pgRestart } from './lib/pg.mjs';

const OUTAGE_MS = 5000;
const WRITE_TIMEOUT_MS = 60000; // the store retries a lost connection for 30 s (STORE_RECONNECT_MS)

// Unlimited: the writers' load is what the store must carry, not the default 600 a minute.
const config = `auth:
  mode: keys
tenants:
  default: {requests_per_minute: 0, concurrent_requests: 0, queued_runs: 0}
engines:
  qwen:
    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME} --tokens-per-s 200 --max-tokens 8"
    start: always
`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const userText = (text) => ({ type: 'message', role: 'user', content: [{ type: 'input_text', text }] });

let arun;
after(async () => { if (arun) await arun.cleanup(); });

describe('a PostgreSQL outage under load', { skip: !onPostgres && 'runs in the PostgreSQL pass (make e2e-pg)' }, () => {
  test('the server stopped for 5 s: readyz says so, every acknowledged write survives, late writes succeed or fail clearly, arun lives', async () => {
    arun = new Arun({ config, pg: { url: createDb('outage'), nodeId: 'node-outage' } });
    const admin = await createKey(arun, { tenant: 'acme', role: 'admin' });
    await arun.start({ timeoutMs: 30000 });
    const call = async (method, path, body) => {
      const t0 = Date.now();
      try {
        const r = await fetch(`${arun.url}${path}`, {
          method, headers: { authorization: `Bearer ${admin.key}` },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(WRITE_TIMEOUT_MS),
        });
        const text = await r.text();
        let json = null;
        try { json = JSON.parse(text); } catch { /* checked by the caller */ }
        return { status: r.status, text, json, t0, t1: Date.now() };
      } catch (e) {
        return { status: 0, text: String(e.cause?.code || e.message), json: null, t0, t1: Date.now() };
      }
    };
    const conv = await call('POST', '/v1/conversations', {});
    assert.equal(conv.status, 200, conv.text);

    // The phases, by the clock of this test: before, outage (from the kill to the restart), after.
    const phase = { outageFrom: Infinity, outageTo: Infinity };
    const phaseOf = (t) => (t < phase.outageFrom ? 'before' : t < phase.outageTo ? 'outage' : 'after');
    let stop = false;
    const writes = [];
    // A writer starts a write every 100 ms without waiting for the last (at most 20 in flight):
    // clients keep writing while earlier writes wait for the store to come back.
    const writer = (kind, make) => (async () => {
      const inflight = new Set();
      for (let i = 0; !stop; i++) {
        const p = make(i).then((r) => { writes.push({ kind, i, ...r, phase: phaseOf(r.t0) }); inflight.delete(p); });
        inflight.add(p);
        while (inflight.size >= 20 && !stop) await Promise.race(inflight);
        await sleep(100);
      }
      await Promise.all(inflight);
    })();
    const ready = [];
    const prober = (async () => {
      while (!stop) {
        const r = await call('GET', '/readyz');
        ready.push({ status: r.status, text: r.text, t: r.t0, phase: phaseOf(r.t0) });
        await sleep(100);
      }
    })();
    const workers = [0, 1].flatMap((k) => [
      writer('run', (i) => call('POST', '/v1/responses', { model: 'qwen', input: `run ${k}.${i}`, background: true })),
      writer('key', (i) => call('POST', '/v1/keys', { tenant: 'acme', role: 'member', name: `k${k}-${i}` })),
      writer('item', (i) => call('POST', `/v1/conversations/${conv.json.id}/items`, { items: [userText(`item ${k}.${i}`)] })),
    ]);

    // Acknowledged: 2xx (a key's creation answers 201).
    const acked = (w) => w.status >= 200 && w.status < 300;
    await waitFor(() => writes.filter(acked).length >= 12, { timeoutMs: 20000, what: 'writes before the outage' });
    phase.outageFrom = Date.now();
    pgKill();
    const seen = () => `readyz: ${JSON.stringify(ready.slice(-3).map((r) => [r.phase, r.status, r.text.slice(0, 160)]))}; ` +
      `writes in the outage: ${writes.filter((w) => w.phase === 'outage').length}; arun: ${arun.logLines()
        .filter((l) => l.level === 'warn' || l.level === 'error').slice(-5).map((l) => l.msg).join(' | ')}`;
    await waitFor(() => ready.some((r) => r.phase === 'outage' && r.status === 503),
      { timeoutMs: 15000, what: '/readyz to answer 503 during the outage' }).catch((e) => { throw new Error(`${e.message}\n${seen()}`); });
    await sleep(Math.max(0, phase.outageFrom + OUTAGE_MS - Date.now()));
    pgRestart();
    phase.outageTo = Date.now();
    await waitFor(() => ready.some((r) => r.phase === 'after' && r.status === 200),
      { timeoutMs: 40000, what: '/readyz to answer 200 after the restart' }).catch((e) => { throw new Error(`${e.message}\n${seen()}`); });
    await waitFor(() => ['run', 'key', 'item'].every((k) => writes.some((w) => w.kind === k && w.phase === 'after' && acked(w))),
      { timeoutMs: 40000, what: 'a write of each kind acknowledged after the restart' }).catch((e) => {
      const tally = {};
      for (const w of writes) tally[`${w.kind} ${w.phase} ${w.status}`] = (tally[`${w.kind} ${w.phase} ${w.status}`] ?? 0) + 1;
      throw new Error(`${e.message}\nwrites: ${JSON.stringify(tally)}\n${seen()}`);
    });
    stop = true;
    await Promise.all([...workers, prober]);
    assert.equal(arun.exit, null, `arun exited: ${JSON.stringify(arun.exit)}\n${arun.stderr.slice(-3000)}`);

    // readyz: a sentence naming PostgreSQL while it was down.
    const down = ready.filter((r) => r.status === 503);
    assert.ok(down.length > 0);
    for (const r of down) assert.match(r.text, /PostgreSQL/, r.text);
    assert.equal(ready.at(-1).status, 200, ready.at(-1).text);

    // Every answer: a 2xx with the object, or an OpenAI error; never a dropped connection.
    const count = {};
    for (const w of writes) {
      const k = `${w.kind} ${w.phase} ${w.status}`;
      count[k] = (count[k] || 0) + 1;
      assert.notEqual(w.status, 0, `${w.kind} ${w.i} (${w.phase}): no answer: ${w.text}`);
      if (w.status >= 200 && w.status < 300) continue;
      assert.ok(w.json && w.json.error && typeof w.json.error.message === 'string' && w.json.error.message.length > 0,
        `${w.kind} ${w.i} (${w.phase}): ${w.status} without an OpenAI error: ${w.text}`);
    }
    const slowest = Math.max(...writes.filter((w) => w.phase === 'outage').map((w) => w.t1 - w.t0), 0);
    console.log(`pg-outage: ${JSON.stringify(count)}; readyz 503 ×${down.length}; slowest write during the outage ${slowest} ms`);

    // Every acknowledged write is there, read back through the API.
    const ok = (kind) => writes.filter((w) => w.kind === kind && acked(w));
    for (const w of ok('run')) {
      const r = await call('GET', `/v1/responses/${w.json.id}`);
      assert.equal(r.status, 200, `run ${w.json.id} acknowledged ${w.phase}: ${r.text}`);
    }
    const keyIds = new Set();
    for (let after = ''; ;) {
      const page = await call('GET', `/v1/keys?limit=100${after ? `&after=${after}` : ''}`);
      assert.equal(page.status, 200, page.text);
      for (const k of page.json.data) keyIds.add(k.id);
      if (!page.json.has_more) break;
      after = page.json.data.at(-1).id;
    }
    for (const w of ok('key')) assert.ok(keyIds.has(w.json.id), `key ${w.json.id} acknowledged ${w.phase} is listed`);
    const items = new Set();
    for (let after = ''; ;) {
      const page = await call('GET', `/v1/conversations/${conv.json.id}/items?limit=100&order=asc${after ? `&after=${after}` : ''}`);
      assert.equal(page.status, 200, page.text);
      for (const it of page.json.data) items.add(it.id);
      if (!page.json.has_more) break;
      after = page.json.last_id;
    }
    for (const w of ok('item')) {
      for (const it of w.json.data) assert.ok(items.has(it.id), `item ${it.id} acknowledged ${w.phase} is in the conversation`);
    }
    assert.ok(ok('run').some((w) => w.phase === 'before') && ok('run').some((w) => w.phase === 'after'));

    const end = await arun.stop('SIGTERM');
    assert.equal(end.code, 0, JSON.stringify(end));
  });
});
