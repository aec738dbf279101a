// The CLI's parity with the console (issue 14): `arun engines start NAME --wait` following
// /v1/events with a progress line until ready or failed, colour only on a terminal (never in a
// pipe, never with NO_COLOR or TERM=dumb), and --json that parses, with the documented fields.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Arun, MOCK_BIN, ARUN_BIN, runArun, waitFor, assertNoSanitizerReport, createKey } from './lib/arun.mjs';

const ESC = '\x1b';
const mockEngine = (name, flags, extra = '') =>
  `  ${name}:\n    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME} ${flags}"\n    models: [${name}]\n    start: manual\n    memory: {ram_mb: 1000}\n${extra}`;
const config = () => 'engines:\n' +
  mockEngine('slow', '--load-ms 1500 --log-every-ms 200') +
  mockEngine('bad', '--load-ms 5000 --crash-after-ms 200', '    restart: {policy: never}\n') +
  mockEngine('forever', '--load-ms 600000');

function cli(args, opts = {}) {
  const r = runArun(args, opts);
  assertNoSanitizerReport(r.stderr || '', `arun ${args.join(' ')}`);
  return r;
}

// Runs the CLI in the background; out/err grow as it writes; exited resolves {code, signal}.
function background(args, env = process.env) {
  const child = spawn(ARUN_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const p = { child, out: '', err: '' };
  child.stdout.setEncoding('utf8').on('data', (d) => { p.out += d; });
  child.stderr.setEncoding('utf8').on('data', (d) => { p.err += d; });
  p.exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
  return p;
}

// util-linux `script` gives the CLI a pseudo-terminal for stdout (a pipe is what tests get).
const haveScript = existsSync('/usr/bin/script');
function onTty(args, env) {
  const cmd = [ARUN_BIN, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const r = spawnSync('/usr/bin/script', ['-qefc', cmd, '/dev/null'],
    { encoding: 'utf8', timeout: 30000, env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout };
}

async function state(arun, name) {
  return (await (await fetch(`${arun.url}/v1/engines/${name}`)).json()).state;
}

describe('arun engines start --wait, colour and --json', () => {
  test('--wait on a loading engine shows loading, then ready, exits 0; a second start counts against the learned load time', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const r = cli(['engines', 'start', 'slow', '--wait', '--server', arun.url]);
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.trimEnd().split('\n');
      assert.ok(lines.some((l) => /^slow: loading \d+ s/.test(l)), r.stdout);
      assert.equal(lines.at(-1), 'slow: ready');
      assert.ok(lines.findIndex((l) => l.startsWith('slow: loading')) < lines.length - 1);
      assert.ok(!r.stdout.includes(ESC), 'no escape codes in a pipe');
      assert.equal(await state(arun, 'slow'), 'ready');
      // The server now knows how long a load takes: the restart's lines say "of ~N s".
      const again = cli(['engines', 'restart', 'slow', '--wait', '--server', arun.url]);
      assert.equal(again.status, 0, again.stdout + again.stderr);
      assert.match(again.stdout, /^slow: (starting|loading) \d+ s of ~\d+ s/m);
      assert.match(again.stdout, /^slow: ready$/m);
    } finally { await arun.cleanup(); }
  });

  test('--wait on an engine that dies while loading exits 1 with the reason', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const r = cli(['engines', 'start', 'bad', '--wait', '--server', arun.url]);
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^bad: failed \(exited with code 1.*crashing on purpose/m);
      assert.ok(!/^bad: ready/m.test(r.stdout));
    } finally { await arun.cleanup(); }
  });

  test('on a terminal the line is rewritten in place with the state coloured; NO_COLOR and TERM=dumb turn colour off', { skip: !haveScript && 'no /usr/bin/script' }, async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const r = onTty(['engines', 'start', 'slow', '--wait', '--server', arun.url], { TERM: 'xterm' });
      assert.equal(r.status, 0, r.stdout);
      assert.match(r.stdout, /\r\x1b\[Kslow: \x1b\[33mloading\x1b\[0m \d+ s/);
      assert.match(r.stdout, /slow: \x1b\[32mready\x1b\[0m\r?\n/);
      const t = onTty(['engines', '--server', arun.url], { TERM: 'xterm' });
      assert.match(t.stdout, /\nslow +\x1b\[32mready\x1b\[0m +slow /);
      for (const env of [{ TERM: 'xterm', NO_COLOR: '1' }, { TERM: 'dumb' }]) {
        const plain = onTty(['engines', '--server', arun.url], env);
        assert.equal(plain.status, 0);
        assert.match(plain.stdout, /\nslow +ready +slow /);
        assert.ok(!plain.stdout.includes(ESC), `no escape codes with ${JSON.stringify(env)}`);
      }
      // A pipe never gets colour, whatever TERM says.
      const piped = cli(['engines', '--server', arun.url], { env: { ...process.env, TERM: 'xterm' } });
      assert.match(piped.stdout, /\nslow +ready +slow /);
      assert.ok(!piped.stdout.includes(ESC));
    } finally { await arun.cleanup(); }
  });

  test('Ctrl-C stops waiting with 130 and the engine goes on loading; a server that goes away ends the wait with 3', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const w = background(['engines', 'start', 'forever', '--wait', '--server', arun.url]);
      await waitFor(() => /^forever: loading/m.test(w.out), { what: `the loading line (${w.out}${w.err})` });
      w.child.kill('SIGINT');
      assert.deepEqual(await w.exited, { code: 130, signal: null }, w.err);
      assert.match(w.err, /stopped waiting; forever goes on/);
      assertNoSanitizerReport(w.err, 'arun engines start --wait');
      assert.equal(await state(arun, 'forever'), 'loading');

      const w2 = background(['engines', 'start', 'forever', '--wait', '--server', arun.url]);
      await waitFor(() => /^forever: loading/m.test(w2.out), { what: 'the loading line again' });
      const { pid } = await (await fetch(`${arun.url}/v1/engines/forever`)).json();
      await arun.stop('SIGKILL');
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone with its server */ }
      const ex = await w2.exited;
      assert.equal(ex.code, 3, w2.out + w2.err);
      assert.match(w2.err, /cannot reach the server|went away/);
      assertNoSanitizerReport(w2.err, 'arun engines start --wait');
    } finally { await arun.cleanup(); }
  });

  test('with auth.mode keys, --wait follows the events with the admin key it was given', async () => {
    const arun = await new Arun({ config: `auth:\n  mode: keys\n${config()}` }).start();
    try {
      const { key } = await createKey(arun, { tenant: 'ops', role: 'admin' });
      const env = { ...process.env, ARUN_URL: arun.url, ARUN_API_KEY: key };
      const r = cli(['engines', 'start', 'slow', '--wait'], { env });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^slow: loading/m);
      assert.match(r.stdout, /^slow: ready$/m);
      assert.ok(!r.stdout.includes(key) && !r.stderr.includes(key), 'the key is never printed');
      const none = cli(['engines', 'start', 'slow', '--wait'], { env: { ...env, ARUN_API_KEY: '' } });
      assert.equal(none.status, 1, none.stderr);
    } finally { await arun.cleanup(); }
  });

  test('--json of engines and runs is JSON with the documented fields', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const e = cli(['engines', '--json', '--server', arun.url]);
      assert.equal(e.status, 0, e.stderr);
      const list = JSON.parse(e.stdout);
      assert.equal(list.object, 'list');
      for (const eng of list.data) {
        for (const k of ['name', 'state', 'models', 'backend', 'pid', 'port', 'memory', 'in_flight',
          'queued', 'restarts', 'started_at']) assert.ok(k in eng, `engine field ${k}`);
        for (const k of ['rss_mb', 'declared_ram_mb']) assert.ok(k in eng.memory, `memory.${k}`);
      }
      const k = cli(['engines', 'start', 'slow', '--json', '--server', arun.url]);
      assert.equal(JSON.parse(k.stdout).name, 'slow');
      assert.equal(cli(['engines', 'start', 'slow', '--wait', '--server', arun.url]).status, 0);
      const made = await fetch(`${arun.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'slow', input: 'hello', store: true }) });
      assert.equal(made.status, 200, await made.clone().text());
      const { id } = await made.json();
      const r = cli(['runs', '--json', '--server', arun.url]);
      assert.equal(r.status, 0, r.stderr);
      const runs = JSON.parse(r.stdout);
      assert.deepEqual(Object.keys(runs).sort(), ['data', 'has_more', 'object']);
      assert.equal(runs.data[0].id, id);
      for (const f of ['id', 'status', 'model', 'created_at', 'usage', 'arun']) assert.ok(f in runs.data[0], `run field ${f}`);
      for (const f of ['queued_ms', 'ttft_ms', 'total_ms']) assert.ok(f in runs.data[0].arun.timings, `arun.timings.${f}`);
      // The table shows the same run with its timings, in a pipe without colour.
      const t = cli(['runs', '--server', arun.url]);
      assert.match(t.stdout, new RegExp(`\\n${id} +completed +slow +\\d+s ago +\\d+ms +\\d+ms +([\\d.]+|-) +[\\d.]+s\\n`));
      assert.ok(!t.stdout.includes(ESC));
    } finally { await arun.cleanup(); }
  });
});
