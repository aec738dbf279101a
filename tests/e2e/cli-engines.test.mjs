// The client verbs of the engine supervisor end to end: `arun engines`, `arun engines
// start|stop|restart`, `arun logs` (tail and -f) and `arun doctor`, run as a person would run
// them against a real `arun serve` driving arun-mock-engine.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Arun, MOCK_BIN, ARUN_BIN, runArun, waitFor, tempDir, assertNoSanitizerReport } from './lib/arun.mjs';
import { holdWriteLock } from './lib/dblock.mjs';

const engineConfig = (extra = '') => `engines:\n  m1:\n    cmd: "${MOCK_BIN} --port \${PORT}"\n    models: [m1, alias-one]\n    memory: {ram_mb: 2000}\n${extra}`;

// Runs the CLI and checks its own stderr for sanitizer reports (the ASan build).
function cli(args, opts) {
  const r = runArun(args, opts);
  assertNoSanitizerReport(r.stderr || '', `arun ${args.join(' ')}`);
  return r;
}

function alive(pid) {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch { return false; }
}

const UNREACHABLE = /^arun: cannot reach the server at http:\/\/127\.0\.0\.1:1: connection refused \(is `arun serve` running\?\)$/m;

describe('arun engines and arun logs', () => {
  test('arun engines lists each engine with its state; --json prints the server list', async () => {
    const arun = await new Arun({ config: engineConfig() }).start();
    try {
      const r = cli(['engines', '--server', arun.url]);
      assert.equal(r.status, 0, r.stderr);
      const [header, row] = r.stdout.trimEnd().split('\n');
      assert.match(header, /^NAME\s+STATE\s+MODELS\s+BACKEND\s+PID\s+PORT\s+MEM\s+IN-FLIGHT\s+QUEUED\s+UPTIME\s+RESTARTS\s+REASON$/);
      assert.match(row, /^m1\s+stopped\s+m1,alias-one\s+native\s+-\s+-\s+-\/2000M\s+0\s+0\s+-\s+0\s+not started yet/);
      const j = cli(['engines', '--json', '--server', arun.url]);
      assert.equal(j.status, 0, j.stderr);
      const list = JSON.parse(j.stdout);
      assert.equal(list.object, 'list');
      assert.equal(list.data[0].name, 'm1');
      assert.equal(list.data[0].state, 'stopped');
    } finally { await arun.cleanup(); }
  });

  test('engines start --wait exits 0 once ready; the table then shows ready with a pid; stop --wait stops it', async () => {
    const arun = await new Arun({ config: engineConfig() }).start();
    try {
      const s = cli(['engines', 'start', 'm1', '--wait', '--timeout', '20'], { env: { ...process.env, ARUN_URL: arun.url } });
      assert.equal(s.status, 0, s.stderr);
      assert.match(s.stdout, /^m1: (starting|loading)/m);
      assert.match(s.stdout, /^m1: ready$/m);
      const t = cli(['engines', '--server', arun.url]);
      const row = t.stdout.split('\n').find((l) => l.startsWith('m1 '));
      const m = /^m1\s+ready\s+m1,alias-one\s+native\s+(\d+)\s+(\d+)\s+\d+\/2000M\s+0\s+0\s+\d+s\s+0\s+-$/.exec(row);
      assert.ok(m, `row: ${row}`);
      const pid = Number(m[1]);
      assert.ok(alive(pid));
      const st = cli(['engines', 'stop', 'm1', '--wait', '--server', arun.url]);
      assert.equal(st.status, 0, st.stderr);
      assert.match(st.stdout, /^m1: stopped/m);
      await waitFor(() => !alive(pid), { what: 'the engine to exit' });
    } finally { await arun.cleanup(); }
  });

  test('engines start of an engine whose binary is missing --wait exits 1 with the reason', async () => {
    const arun = await new Arun({ config: 'engines:\n  ghost:\n    cmd: "no-such-engine-binary --port ${PORT}"\n    restart: {policy: never}\n' }).start();
    try {
      const r = cli(['engines', 'start', 'ghost', '--wait', '--server', arun.url]);
      assert.equal(r.status, 1);
      assert.match(r.stdout, /^ghost: failed \(.*binary not found: no-such-engine-binary/m);
    } finally { await arun.cleanup(); }
  });

  test('engines stop of an unknown engine exits 1 with the server\'s 404 message', async () => {
    const arun = await new Arun({ config: engineConfig() }).start();
    try {
      const r = cli(['engines', 'stop', 'nope', '--server', arun.url]);
      assert.equal(r.status, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^arun: no engine named 'nope'; engines: m1$/m);
      const l = cli(['logs', 'nope', '--server', arun.url]);
      assert.equal(l.status, 1);
      assert.match(l.stderr, /^arun: no engine named 'nope'/m);
    } finally { await arun.cleanup(); }
  });

  test('logs -n prints the tail of an engine\'s output', async () => {
    const arun = await new Arun({ config: engineConfig() }).start();
    try {
      assert.equal(cli(['engines', 'start', 'm1', '--wait', '--server', arun.url]).status, 0);
      const r = cli(['logs', 'm1', '-n', '5', '--server', arun.url]);
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 5, r.stdout);
      // The engine writes its output to the log itself, so arun's notes may come before or after
      // its first lines: the tail is whatever the last 5 lines of the whole log are.
      const all = cli(['logs', 'm1', '--server', arun.url]);
      assert.deepEqual(lines, all.stdout.trimEnd().split('\n').slice(-5));
      assert.match(all.stdout, /listening on/);
      assert.match(all.stdout, /arun: started pid \d+/);
      assert.equal(cli(['logs', 'm1', '-n', 'lots', '--server', arun.url]).status, 2);
    } finally { await arun.cleanup(); }
  });

  test('logs -f prints lines written after it started, and Ctrl-C ends it with 0', async () => {
    const arun = await new Arun({ config: engineConfig() }).start();
    try {
      assert.equal(cli(['engines', 'start', 'm1', '--wait', '--server', arun.url]).status, 0);
      const child = spawn(ARUN_BIN, ['logs', 'm1', '-f', '-n', '50', '--server', arun.url],
        { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
      child.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
      const exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
      try {
        await waitFor(() => /listening on/.test(out), { what: 'the tail in logs -f' });
        const before = (out.match(/arun: started pid/g) || []).length;
        const r = await fetch(`${arun.url}/v1/engines/m1/restart`, { method: 'POST' });
        assert.equal(r.status, 202);
        await waitFor(() => (out.match(/arun: started pid/g) || []).length > before,
          { what: `a new "arun: started pid" line in logs -f (stdout: ${out.slice(-500)})` });
        child.kill('SIGINT');
        const ex = await exited;
        assert.deepEqual(ex, { code: 0, signal: null }, err);
        assertNoSanitizerReport(err, 'arun logs -f');
      } finally { child.kill('SIGKILL'); }
    } finally { await arun.cleanup(); }
  });

  test('logs -f ends with 0 when the server ends the stream (arun shuts down)', async () => {
    const arun = await new Arun({ config: engineConfig() }).start();
    assert.equal(cli(['engines', 'start', 'm1', '--wait', '--server', arun.url]).status, 0);
    const child = spawn(ARUN_BIN, ['logs', 'm1', '-f', '--server', arun.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
    const exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
    try {
      await waitFor(() => /listening on/.test(out), { what: 'the tail in logs -f' });
      await arun.stop('SIGTERM');
      assert.deepEqual(await exited, { code: 0, signal: null }, err);
      assert.match(err, /arun: server: arun is shutting down/);
      assertNoSanitizerReport(err, 'arun logs -f');
    } finally { child.kill('SIGKILL'); await arun.cleanup(); }
  });

  test('every client verb exits 3 with one sentence when the server is unreachable', () => {
    const verbs = [['engines'], ['engines', '--json'], ['engines', 'start', 'm1'], ['engines', 'stop', 'm1'],
      ['engines', 'restart', 'm1', '--wait'], ['logs', 'm1'], ['logs', 'm1', '-f']];
    for (const v of verbs) {
      const r = cli([...v, '--server', 'http://127.0.0.1:1']);
      assert.equal(r.status, 3, `${v.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, UNREACHABLE, v.join(' '));
    }
    const env = cli(['engines'], { env: { ...process.env, ARUN_URL: 'http://127.0.0.1:1' } });
    assert.equal(env.status, 3);
    assert.match(env.stderr, UNREACHABLE);
  });

  test('usage errors exit 2; --help and arun help VERB show the same usage', () => {
    for (const verb of ['engines', 'logs', 'doctor']) {
      const h = cli([verb, '--help']);
      assert.equal(h.status, 0);
      assert.match(h.stdout, new RegExp(`^usage: arun ${verb}`));
      const hv = cli(['help', verb]);
      assert.equal(hv.status, 0);
      assert.equal(hv.stdout, h.stdout);
    }
    assert.equal(cli(['engines', 'frob', 'm1']).status, 2);
    assert.equal(cli(['engines', 'start']).status, 2);
    assert.equal(cli(['engines', '--bogus']).status, 2);
    assert.equal(cli(['logs']).status, 2);
    assert.equal(cli(['engines', '--server', 'ftp://x']).status, 2);
    assert.equal(cli(['doctor', '--bogus']).status, 2);
  });
});

describe('arun doctor', () => {
  const dir = tempDir();
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a config whose engine binary is missing fails with the name, exit 1', () => {
    const p = join(dir, 'missing.yaml');
    writeFileSync(p, `listen: 127.0.0.1:1\ndata_dir: ${join(dir, 'data')}\nengines:\n  ghost:\n    cmd: "no-such-engine-binary --port \${PORT}"\n  ok1:\n    cmd: "${MOCK_BIN} --port \${PORT}"\n  unset:\n    cmd: "\${ARUN_TEST_UNSET_VAR}/bin/x"\n`);
    const env = { ...process.env };
    delete env.ARUN_TEST_UNSET_VAR;
    const r = cli(['doctor', '--config', p], { env });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^ok   config: .*missing\.yaml is valid \(3 engines\)$/m);
    assert.match(r.stdout, /^fail engine ghost: binary not found: no-such-engine-binary/m);
    assert.match(r.stdout, /^ok   engine ok1: native, runs .*arun-mock-engine$/m);
    assert.match(r.stdout, /^(ok  |warn|fail) memory: /m);
    assert.match(r.stdout, /^(ok  |warn) gpu: /m);
    assert.match(r.stdout, /^ok   data_dir: /m);
    const u = cli(['doctor', '--config', p, '--json'], { env });
    assert.equal(u.status, 1);
    const items = JSON.parse(u.stdout);
    const unset = items.find((i) => i.check === 'engine unset');
    assert.equal(unset.level, 'fail');
    assert.match(unset.message, /cmd: \$\{ARUN_TEST_UNSET_VAR\} is not set/);
  });

  test('an invalid config fails, exit 1', () => {
    const p = join(dir, 'bad.yaml');
    writeFileSync(p, 'limits:\n  max_connections: lots\n');
    const r = cli(['doctor', '--config', p]);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^fail config: .*bad\.yaml is invalid/m);
    assert.match(r.stdout, /bad\.yaml:2: limits\.max_connections/);
  });

  test('an engine left running by an arun that was killed is reported as an orphan', async () => {
    const arun = await new Arun({ config: engineConfig() }).start();
    let pid = 0;
    try {
      const s = cli(['engines', 'start', 'm1', '--wait', '--server', arun.url]);
      assert.equal(s.status, 0, s.stderr);
      pid = JSON.parse(cli(['engines', '--json', '--server', arun.url]).stdout).data[0].pid;
      assert.ok(pid > 0);
      const held = cli(['doctor', '--config', arun.configPath]);
      assert.match(held.stdout, /^ok   orphans: an arun \(pid \d+\) runs with /m);
      await arun.stop('SIGKILL');
      assert.ok(alive(pid), 'the engine outlives its arun');
      const r = cli(['doctor', '--config', arun.configPath]);
      assert.match(r.stdout, new RegExp(`^warn orphan engine m1: pid ${pid} still running on port \\d+ with no arun \\(stop it with kill -TERM -${pid}, or start arun to adopt it\\)$`, 'm'));
    } finally {
      if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
      await arun.cleanup();
    }
    await waitFor(() => !alive(pid), { what: 'the orphan to exit' });
  });

  test('an engine whose arun died before recording it is reported by its environment marker', async () => {
    const arun = await new Arun({ config: engineConfig() }).start();
    let pid = 0;
    try {
      // The record waits behind another writer, so it is never committed: only the marker tells.
      const lock = await holdWriteLock(join(arun.dataDir, 'arun.db'));
      try {
        const s = cli(['engines', 'start', 'm1', '--wait', '--server', arun.url]);
        assert.equal(s.status, 0, s.stderr);
        pid = JSON.parse(cli(['engines', '--json', '--server', arun.url]).stdout).data[0].pid;
        await arun.stop('SIGKILL');
      } finally { await lock.release(); }
      assert.ok(alive(pid), 'the engine outlives its arun');
      const r = cli(['doctor', '--config', arun.configPath]);
      assert.match(r.stdout, new RegExp(`^warn orphan engine m1: pid ${pid} still running with no arun and no record`, 'm'), r.stdout);
    } finally {
      if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
      await arun.cleanup();
    }
  });
});
