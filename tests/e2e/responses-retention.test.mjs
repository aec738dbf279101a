// runs.retention_days and its background sweep: finished responses older than the retention go
// with their events and items, newer ones stay, so do conversations by their last update, `0` keeps them all; Idempotency-Key claims go
// after 24 h whatever the retention. The rows are made old by moving their timestamps back in
// the database (sqlite3, a dependency of `make deps`; psql under ARUN_TEST_STORE=postgres) while
// arun runs; ARUN_TEST_SWEEP_INTERVAL_MS
// (a test-only setting, docs/internals/runs.md) makes the hourly sweep come every 100 ms.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Arun, MOCK_BIN, waitFor } from './lib/arun.mjs';

const DAY_MS = 86400000;
const config = (days) => `runs: {retention_days: ${days}}\nengines:\n  qwen:\n    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME}"\n`;
const env = { ARUN_TEST_SWEEP_INTERVAL_MS: '100' };

// SQL on arun's database while it runs (lib/arun.mjs: sqlite3 or psql).
const sql = (arun, q) => arun.sql(q);

const post = (arun, body, key) => fetch(`${arun.url}/v1/responses`, {
  method: 'POST', headers: key ? { 'idempotency-key': key } : {}, body: JSON.stringify(body),
}).then(async (r) => { assert.equal(r.status, 200); return r.json(); });

async function swept(arun, kind) {
  const text = await (await fetch(`${arun.url}/metrics`)).text();
  const m = new RegExp(`^arun_runs_swept_total\\{kind="${kind}"\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

const status = async (arun, id) => (await fetch(`${arun.url}/v1/responses/${id}`)).status;

describe('responses retention', () => {
  test('a finished response older than retention_days is swept with its events and items; a newer one and an expired key\'s claim are handled', async () => {
    const arun = await new Arun({ config: config(30), env }).start();
    try {
      const old = await post(arun, { model: 'qwen', input: 'old news' });
      const recent = await post(arun, { model: 'qwen', input: 'fresh news' });
      const keyed = await post(arun, { model: 'qwen', input: 'keyed' }, 'key-1');
      const conv = async () => (await (await fetch(`${arun.url}/v1/conversations`, { method: 'POST', body: '{}' })).json()).id;
      const [idle, busy] = [await conv(), await conv()]; // idle for 31 days, for 29
      assert.equal(old.status, 'completed');
      // 29 days is within the retention; 31 is past it.
      sql(arun, `UPDATE responses SET created_ms = created_ms - ${31 * DAY_MS} WHERE id = '${old.id}';
                 UPDATE responses SET created_ms = created_ms - ${29 * DAY_MS} WHERE id = '${recent.id}';
                 UPDATE idempotency SET created_ms = created_ms - ${25 * 3600 * 1000} WHERE key = 'key-1';
                 UPDATE conversations SET updated_ms = updated_ms - ${31 * DAY_MS} WHERE id = '${idle}';
                 UPDATE conversations SET updated_ms = updated_ms - ${29 * DAY_MS} WHERE id = '${busy}';`);
      await waitFor(async () => (await status(arun, old.id)) === 404, { timeoutMs: 10000, what: 'the old response to be swept' });
      await waitFor(async () => (await swept(arun, 'idempotency_keys')) === 1, { timeoutMs: 10000, what: 'the expired claim to be swept' });
      await waitFor(async () => (await fetch(`${arun.url}/v1/conversations/${idle}`)).status === 404, { timeoutMs: 10000, what: 'the idle conversation to be swept' });
      assert.equal((await fetch(`${arun.url}/v1/conversations/${busy}`)).status, 200);
      assert.equal(await swept(arun, 'conversations'), 1);
      assert.equal(await swept(arun, 'responses'), 1);
      assert.equal(sql(arun, `SELECT count(*) FROM response_events WHERE response_id = '${old.id}';`).trim(), '0');
      assert.equal(sql(arun, `SELECT count(*) FROM items WHERE owner_id = '${old.id}';`).trim(), '0');
      assert.equal(await status(arun, recent.id), 200);
      assert.equal(await status(arun, keyed.id), 200);
      const line = await waitFor(() => arun.logLines().find((l) => /retention sweep removed \d+ responses/.test(l.msg || '')), { what: 'the sweep\'s log line' });
      assert.equal(line.level, 'info');
      // The key's claim is gone: the same key with another body is a new request, not a 409.
      const again = await post(arun, { model: 'qwen', input: 'another body' }, 'key-1');
      assert.notEqual(again.id, keyed.id);
    } finally { await arun.cleanup(); }
  });

  test('retention_days: 0 keeps every response; idempotency keys still expire', async () => {
    const arun = await new Arun({ config: config(0), env }).start();
    try {
      const r = await post(arun, { model: 'qwen', input: 'keep me' }, 'key-2');
      sql(arun, `UPDATE responses SET created_ms = created_ms - ${3650 * DAY_MS} WHERE id = '${r.id}';
                 UPDATE idempotency SET created_ms = created_ms - ${25 * 3600 * 1000} WHERE key = 'key-2';`);
      // The round that removed the claim also saw the ten-year-old response, and kept it.
      await waitFor(async () => (await swept(arun, 'idempotency_keys')) === 1, { timeoutMs: 10000, what: 'the expired claim to be swept' });
      assert.equal(await status(arun, r.id), 200);
      assert.equal(await swept(arun, 'responses'), 0);
    } finally { await arun.cleanup(); }
  });
});
