// Nodes end to end on the SQLite store (issue 15, contract 3 and 4): a lone arun is a cluster of
// one. GET /v1/nodes (admin) shows this node up, with its address and its engines as they are
// now; `arun nodes` prints it as a table and --json as the server sent it; a member key gets
// 403 (auth.mode keys); a clean stop writes the node's row as left, so others need not wait
// for it to look down.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Arun, MOCK_BIN, createKey, runArun, waitFor, assertNoSanitizerReport } from './lib/arun.mjs';

const engines = `engines:
  m1:
    cmd: "${MOCK_BIN} --port \${PORT}"
    models: [m1, m1-alias]
    start: manual
`;

const api = async (arun, path, key) => {
  const r = await fetch(`${arun.url}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  return { status: r.status, body: await r.json() };
};

function cli(args) {
  const r = runArun(args);
  assertNoSanitizerReport(r.stderr || '', `arun ${args.join(' ')}`);
  return r;
}

// The nodes table as the database has it (sqlite3's CLI), or null without one on this machine.
function dbNodes(arun) {
  const r = spawnSync('sqlite3', [join(arun.dataDir, 'arun.db'),
    "SELECT id || ' ' || state || ' ' || address FROM nodes"], { encoding: 'utf8' });
  return r.error ? null : r.stdout.trim();
}

describe('nodes', () => {
  test('GET /v1/nodes and arun nodes show this node up with its engines; a clean stop leaves it left', async (t) => {
    const arun = await new Arun({ config: engines }).start();
    const id = `${hostname()}:0`; // node_id auto: hostname and the configured port (--listen :0)
    try {
      const first = await api(arun, '/v1/nodes');
      assert.equal(first.status, 200);
      assert.equal(first.body.object, 'list');
      assert.equal(first.body.data.length, 1, JSON.stringify(first.body));
      const me = first.body.data[0];
      assert.equal(me.id, id);
      assert.equal(me.address, arun.url);
      assert.equal(me.state, 'up');
      assert.equal(me.reason, null);
      assert.equal(me.self, true);
      assert.match(me.started_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.ok(me.last_seen_ms_ago >= 0 && me.last_seen_ms_ago < 10000, `${me.last_seen_ms_ago}`);
      assert.deepEqual(me.engines.map((e) => `${e.name} ${e.state} ${e.models} ${e.admissible}`),
        ['m1 stopped m1,m1-alias false']); // start: manual, stopped: a request cannot start it
      assert.ok(me.memory.ram_mb && me.memory.vram_mb, JSON.stringify(me.memory));

      // The engines are this node's as they are now, not as a heartbeat ago.
      assert.equal((await fetch(`${arun.url}/v1/engines/m1/start`, { method: 'POST' })).status, 202);
      await waitFor(async () => {
        const e = (await api(arun, '/v1/nodes')).body.data[0].engines[0];
        return e.state === 'ready' && e.admissible ? e : null;
      }, { what: 'm1 ready in GET /v1/nodes' });

      const table = cli(['nodes', '--server', arun.url]);
      assert.equal(table.status, 0, table.stderr);
      const lines = table.stdout.trim().split('\n');
      assert.match(lines[0], /^NODE\s+ADDRESS\s+STATE\s+ENGINES\s+LAST-SEEN$/);
      assert.equal(lines.length, 2, table.stdout);
      assert.match(lines[1], new RegExp(`^${id}\\s+${arun.url}\\s+up\\s+m1:ready\\s+\\d+s ago$`));
      const json = cli(['nodes', '--json', '--server', arun.url]);
      assert.equal(json.status, 0, json.stderr);
      assert.equal(JSON.parse(json.stdout).data[0].id, id);

      // The row in the store: up while it runs, left after a clean stop.
      const up = dbNodes(arun);
      if (up === null) { t.diagnostic('no sqlite3 CLI: the row after the stop is not checked'); return; }
      assert.equal(up, `${id} up ${arun.url}`);
      const stopped = await arun.stop('SIGTERM');
      assert.equal(stopped.code, 0, arun.stderr.slice(-2000));
      assert.equal(dbNodes(arun), `${id} left ${arun.url}`);
      assert.ok(arun.logLines().some((l) => l.module === 'cluster' && /is up .*this node/.test(l.msg)));
    } finally { await arun.cleanup(); }
  });

  test('a postgres store without the cluster secret or a reachable address does not start (exit 2, what to set)', async () => {
    const url = 'postgres://arun:pw@127.0.0.1:1/arun'; // never reached: the check comes first
    for (const [config, env, want] of [
      [`store: {url: '${url}'}\n`, {}, /ARUN_CLUSTER_SECRET \(cluster.secret_env\) is not set.*openssl rand -hex 32/],
      [`store: {url: '${url}'}\n`, { ARUN_CLUSTER_SECRET: 'short' }, /is 5 bytes; it must be at least 32/],
      [`store: {url: '${url}'}\n`, { ARUN_CLUSTER_SECRET: `with a space ${'x'.repeat(32)}` }, /a space or a byte that is not printable ASCII/],
      [`store: {url: '${url}'}\n`, { ARUN_CLUSTER_SECRET: 'x'.repeat(32) }, /cluster.advertise is not set and listen: 127.0.0.1:0/],
    ]) {
      const arun = new Arun({ config, env });
      try {
        const env2 = { ...process.env, ...env };
        if (!('ARUN_CLUSTER_SECRET' in env)) delete env2.ARUN_CLUSTER_SECRET;
        const r = runArun(['serve', '--config', arun.configPath, '--listen', '127.0.0.1:0'], { env: env2 });
        assertNoSanitizerReport(r.stderr || '');
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, want);
        assert.ok(!r.stderr.includes(':pw@'), 'the URL with its password is never printed');
      } finally { await arun.cleanup(); }
    }
  });

  test('with API keys an admin lists the nodes and a member gets 403', async () => {
    const arun = new Arun({ config: `auth:\n  mode: keys\n${engines}` });
    const admin = await createKey(arun, { tenant: 'ops', role: 'admin' });
    const member = await createKey(arun, { tenant: 'acme', role: 'member' });
    await arun.start();
    try {
      const ok = await api(arun, '/v1/nodes', admin.key);
      assert.equal(ok.status, 200);
      assert.equal(ok.body.data[0].self, true);
      const denied = await api(arun, '/v1/nodes', member.key);
      assert.equal(denied.status, 403);
      assert.match(denied.body.error.message, /admin/);
      const c = cli(['nodes', '--server', arun.url, '--api-key', member.key]);
      assert.equal(c.status, 1);
      assert.match(c.stderr, /admin/);
      assert.equal(cli(['nodes', '--server', arun.url, '--api-key', admin.key]).status, 0);
    } finally { await arun.cleanup(); }
  });
});
