// The audit trail end to end (issue 13, contract 6): engine start/stop/restart through the API
// become audit events that GET /v1/audit and `arun audit` show with who, what, to what, how it
// ended and from where; the list pages with after/limit and filters with since; with API keys
// the actor is the key id, a member cannot read the trail, and a flood of bad keys is kept to
// the rate (plus one summary) while the server keeps answering.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Arun, MOCK_BIN, createKey, runArun, waitFor, assertNoSanitizerReport } from './lib/arun.mjs';

const AUTH_PER_S = 10; // AUDIT_AUTH_PER_S (src/tenancy/audit.h)
const AUTH_PER_HOST_PER_S = 5; // AUDIT_AUTH_PER_HOST_PER_S

const engines = `engines:
  m1:
    cmd: "${MOCK_BIN} --port \${PORT}"
    models: [m1]
    start: manual
  big:
    cmd: "${MOCK_BIN} --port \${PORT}"
    models: [big]
    start: manual
    memory: {ram_mb: 900000000}
`;

const api = async (arun, path, { key, ...opts } = {}) => {
  const headers = key ? { authorization: `Bearer ${key}` } : {};
  const r = await fetch(`${arun.url}${path}`, { ...opts, headers });
  const text = await r.text();
  try { return { status: r.status, body: JSON.parse(text) }; } catch { return { status: r.status, body: text }; }
};
const post = (arun, path, key) => api(arun, path, { method: 'POST', key });

// Every event of the trail (GET /v1/audit, all pages).
async function allEvents(arun, { key, query = '' } = {}) {
  const out = [];
  for (let after = 0; ;) {
    const r = await api(arun, `/v1/audit?limit=100&after=${after}${query}`, { key });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    out.push(...r.body.data);
    if (!r.body.has_more) return out;
    after = r.body.last_id;
  }
}

function cli(args, opts) {
  const r = runArun(args, opts);
  assertNoSanitizerReport(r.stderr || '', `arun ${args.join(' ')}`);
  return r;
}

describe('audit', () => {
  test('engine start, stop and restart are audit events with actor, action, target, outcome and remote, in the API, the CLI and the log', async () => {
    const arun = await new Arun({ config: engines }).start();
    try {
      const t0 = Date.now();
      assert.equal((await post(arun, '/v1/engines/m1/start')).status, 202);
      assert.equal((await post(arun, '/v1/engines/m1/restart')).status, 202);
      assert.equal((await post(arun, '/v1/engines/m1/stop')).status, 202);
      const refused = await post(arun, '/v1/engines/big/start');
      assert.equal(refused.status, 409);
      assert.equal((await post(arun, '/v1/engines/nope/stop')).status, 404); // not an action

      const list = await api(arun, '/v1/audit');
      assert.equal(list.status, 200);
      assert.equal(list.body.object, 'list');
      assert.equal(list.body.has_more, false);
      const ev = list.body.data;
      assert.deepEqual(ev.map((e) => `${e.action} ${e.target} ${e.outcome}`), [
        'engine.start m1 ok', 'engine.restart m1 ok', 'engine.stop m1 ok', 'engine.start big failed',
      ]);
      assert.equal(list.body.first_id, ev[0].id);
      assert.equal(list.body.last_id, ev[3].id);
      for (const e of ev) {
        assert.equal(e.object, 'audit_event');
        assert.match(e.id, /^\d+$/);
        assert.equal(e.actor, 'anonymous'); // auth.mode none: nobody known
        assert.equal(e.tenant, 'default');
        assert.match(e.remote, /^127\.0\.0\.1:\d+$/);
        assert.ok(e.ts_ms >= t0 - 1000 && e.ts_ms <= Date.now() + 1000, `ts_ms ${e.ts_ms}`);
        assert.equal(e.created_at, Math.floor(e.ts_ms / 1000));
        assert.match(e.detail.request_id, /^req_/);
      }
      // A refusal carries the supervisor's reason, as the 409 said it.
      assert.equal(ev[3].detail.reason, refused.body.error.message);

      const table = cli(['audit', '--server', arun.url]);
      assert.equal(table.status, 0, table.stderr);
      const lines = table.stdout.trimEnd().split('\n');
      assert.match(lines[0], /^TIME\s+ACTOR\s+TENANT\s+ACTION\s+TARGET\s+OUTCOME\s+REMOTE$/);
      assert.equal(lines.length, 5);
      assert.match(lines[1], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+anonymous\s+default\s+engine\.start\s+m1\s+ok\s+127\.0\.0\.1:\d+$/);
      assert.match(lines[4], /\s+engine\.start\s+big\s+failed\s+127\.0\.0\.1:\d+$/);
      const json = cli(['audit', '--json'], { env: { ...process.env, ARUN_URL: arun.url } });
      assert.equal(json.status, 0, json.stderr);
      assert.deepEqual(JSON.parse(json.stdout).data, ev);

      // One log line each, with the same facts.
      const logged = arun.logLines().filter((l) => l.module === 'audit');
      assert.deepEqual(logged.map((l) => `${l.level} ${l.action} ${l.target} ${l.outcome} ${l.actor}`), [
        'info engine.start m1 ok anonymous', 'info engine.restart m1 ok anonymous',
        'info engine.stop m1 ok anonymous', 'warn engine.start big failed anonymous',
      ]);
      assert.equal(logged[0].remote, ev[0].remote);
      assert.equal(logged[0].request_id, ev[0].detail.request_id);
      const metrics = await (await fetch(`${arun.url}/metrics`)).text();
      assert.match(metrics, /^arun_audit_events_total\{action="engine.start",outcome="ok"\} 1$/m);
      assert.match(metrics, /^arun_audit_events_total\{action="engine.start",outcome="failed"\} 1$/m);
    } finally { await arun.cleanup(); }
  });

  test('after and limit page through every event once, oldest first; since filters by time; arun audit pages through them all', async () => {
    const arun = await new Arun({ config: engines }).start();
    try {
      const N = 105; // more than one page of the CLI (100)
      for (let i = 0; i < N; i++) assert.equal((await post(arun, '/v1/engines/m1/stop')).status, 202);
      const ids = [];
      let page = await api(arun, '/v1/audit?limit=40');
      assert.equal(page.body.data.length, 40);
      assert.equal(page.body.has_more, true);
      for (;;) {
        ids.push(...page.body.data.map((e) => Number(e.id)));
        if (!page.body.has_more) break;
        page = await api(arun, `/v1/audit?limit=40&after=${page.body.last_id}`);
      }
      assert.equal(ids.length, N);
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
      assert.equal(new Set(ids).size, N);
      const dflt = await api(arun, '/v1/audit');
      assert.equal(dflt.body.data.length, 20); // the default page

      // since: exactly the events at or after it, in epoch ms or ISO-8601 UTC.
      const all = await allEvents(arun);
      const mid = all[60].ts_ms;
      const since = await allEvents(arun, { query: `&since=${mid}` });
      assert.deepEqual(since.map((e) => e.id), all.filter((e) => e.ts_ms >= mid).map((e) => e.id));
      const iso = new Date(Math.floor(mid / 1000) * 1000).toISOString().replace('.000Z', 'Z');
      const bySecond = await allEvents(arun, { query: `&since=${iso}` });
      assert.deepEqual(bySecond.map((e) => e.id),
        all.filter((e) => e.ts_ms >= Math.floor(mid / 1000) * 1000).map((e) => e.id));
      const future = await api(arun, '/v1/audit?since=2999-01-01T00:00:00Z');
      assert.deepEqual([future.body.data, future.body.first_id, future.body.has_more], [[], null, false]);

      const table = cli(['audit', '--server', arun.url]);
      assert.equal(table.status, 0, table.stderr);
      assert.equal(table.stdout.trimEnd().split('\n').length, N + 1);
      const limited = cli(['audit', '-n', '7', '--since', String(mid), '--json', '--server', arun.url]);
      assert.equal(limited.status, 0, limited.stderr);
      assert.deepEqual(JSON.parse(limited.stdout).data.map((e) => e.id), since.slice(0, 7).map((e) => e.id));
      const recent = cli(['audit', '--since', '1h', '--json', '--server', arun.url]);
      assert.equal(JSON.parse(recent.stdout).data.length, N);
    } finally { await arun.cleanup(); }
  });

  test('bad parameters are a 400 naming the parameter; arun audit says so', async () => {
    const arun = await new Arun({ config: engines }).start();
    try {
      for (const [q, param] of [['since=yesterday', 'since'], ['since=2026-12-07', 'since'],
        ['since=-5', 'since'], ['after=-1', 'after'], ['after=x', 'after'],
        ['after=99999999999999999999', 'after'], ['limit=0', 'limit'], ['limit=101', 'limit'],
        ['limit=ten', 'limit'], ['limit=', 'limit']]) {
        const r = await api(arun, `/v1/audit?${q}`);
        assert.equal(r.status, 400, q);
        assert.equal(r.body.error.param, param, q);
        assert.equal(r.body.error.type, 'invalid_request_error', q);
      }
      const r = cli(['audit', '--since', 'last tuesday', '--server', arun.url]);
      assert.equal(r.status, 2);
      assert.match(r.stderr, /--since needs/);
      assert.equal((await fetch(`${arun.url}/healthz`)).status, 200);
    } finally { await arun.cleanup(); }
  });

  describe('with API keys', () => {
    const keysConfig = `auth:\n  mode: keys\n${engines}`;

    test('the actor is the key id; a member gets 403 on /v1/audit and arun audit exits 1', async () => {
      const arun = new Arun({ config: keysConfig });
      const admin = await createKey(arun, { tenant: 'ops', role: 'admin', name: 'ops' });
      const member = await createKey(arun, { tenant: 'acme', role: 'member' });
      await arun.start();
      try {
        assert.equal((await post(arun, '/v1/engines/m1/start', admin.key)).status, 202);
        assert.equal((await post(arun, '/v1/engines/m1/stop', admin.key)).status, 202);
        const ev = (await allEvents(arun, { key: admin.key })).filter((e) => e.action.startsWith('engine.'));
        assert.deepEqual(ev.map((e) => `${e.actor} ${e.tenant} ${e.action} ${e.target} ${e.outcome}`), [
          `${admin.id} ops engine.start m1 ok`, `${admin.id} ops engine.stop m1 ok`,
        ]);
        // A key made through the running server's owner-only socket: actor and remote "local",
        // like the two the CLI made on the store before the server ran (detail.via "store").
        const late = await createKey(arun, { tenant: 'acme', role: 'member' });
        const made = (await allEvents(arun, { key: admin.key })).filter((e) => e.action === 'key.create');
        assert.deepEqual(made.map((e) => `${e.actor} ${e.remote} ${e.target} ${e.outcome} ${e.detail.via}`),
          [`local local ${admin.id} ok store`, `local local ${member.id} ok store`,
            `local local ${late.id} ok undefined`]);
        const denied = await api(arun, '/v1/audit', { key: member.key });
        assert.equal(denied.status, 403);
        assert.match(denied.body.error.message, /admin/);
        const c = cli(['audit', '--server', arun.url, '--api-key', member.key]);
        assert.equal(c.status, 1);
        assert.match(c.stderr, /admin/);
        const ok = cli(['audit', '--server', arun.url], { env: { ...process.env, ARUN_API_KEY: admin.key } });
        assert.equal(ok.status, 0, ok.stderr);
        assert.match(ok.stdout, new RegExp(`${admin.id}\\s+ops\\s+engine\\.start\\s+m1\\s+ok`));
        // No key text in the trail.
        const text = JSON.stringify(await allEvents(arun, { key: admin.key }));
        assert.ok(![admin.key, member.key, late.key].some((k) => text.includes(k)));
      } finally { await arun.cleanup(); }
    });

    test('50 bad keys in a burst: at most the rate is kept, one summary counts the rest, and the server keeps answering', async () => {
      const arun = new Arun({ config: keysConfig });
      const admin = await createKey(arun, { tenant: 'ops', role: 'admin' });
      await arun.start();
      try {
        const bad = Array.from({ length: 50 }, (_, i) => `arun-${'x'.repeat(40)}${String(i).padStart(3, '0')}`);
        const t0 = Date.now();
        const answers = await Promise.all(bad.map((k) => api(arun, '/v1/models', { key: k })));
        // arun's rate windows are seconds of its monotonic clock, not of the wall clock: a burst
        // of d ms touches at most floor(d / 1000) + 2 of them, wherever their edges fall.
        const seconds = Math.floor((Date.now() - t0) / 1000) + 2;
        assert.ok(answers.every((a) => a.status === 401), JSON.stringify(answers.map((a) => a.status)));
        // The summary comes at the end of the second; every failure is either kept or counted.
        const events = await waitFor(async () => {
          const all = await allEvents(arun, { key: admin.key });
          const kept = all.filter((e) => e.action === 'auth.failure');
          const summed = all.filter((e) => e.action === 'auth.failure.suppressed')
            .reduce((n, e) => n + e.detail.count, 0);
          return kept.length + summed === 50 ? all : false;
        }, { timeoutMs: 10000, what: 'the kept failures and the summary to account for all 50' });
        const kept = events.filter((e) => e.action === 'auth.failure');
        const summaries = events.filter((e) => e.action === 'auth.failure.suppressed');
        assert.ok(kept.length <= AUTH_PER_HOST_PER_S * seconds && kept.length <= AUTH_PER_S * seconds,
          `${kept.length} kept in ${seconds} s`);
        assert.ok(summaries.length >= 1 && summaries.length <= seconds, `${summaries.length} summaries`);
        assert.equal(kept[0].actor, 'anonymous');
        assert.equal(kept[0].outcome, 'denied');
        assert.match(kept[0].remote, /^127\.0\.0\.1:\d+$/);
        assert.equal(summaries[0].detail.hosts['127.0.0.1'] > 0, true);
        const text = JSON.stringify(events) + arun.stderr;
        for (const k of bad) assert.ok(!text.includes(k), 'a bad key reached the trail or the log');
        const lines = arun.logLines().filter((l) => l.module === 'audit' && /^auth\.failure/.test(l.action));
        assert.equal(lines.length, kept.length + summaries.length);
        const metrics = await api(arun, '/metrics', { key: admin.key });
        assert.match(metrics.body, /^arun_audit_events_total\{action="auth.failure",outcome="denied"\} 50$/m);
        // Still answering, and a good key still works.
        assert.equal((await fetch(`${arun.url}/healthz`)).status, 200);
        assert.equal((await api(arun, '/v1/models', { key: admin.key })).status, 200);
      } finally { await arun.cleanup(); }
    });
  });
});
