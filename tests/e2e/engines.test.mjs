// The engine supervisor end to end: arun serve running arun-mock-engine as native processes and
// as podman containers, driven through the HTTP API, with the failure modes users hit.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Arun, MOCK_BIN, ROOT, waitFor, tempDir, freePort } from './lib/arun.mjs';
import { holdWriteLock } from './lib/dblock.mjs';

const api = async (arun, path, opts) => {
  const r = await fetch(`${arun.url}${path}`, opts);
  const text = await r.text();
  try { return { status: r.status, body: JSON.parse(text) }; } catch { return { status: r.status, body: text }; }
};
const engine = async (arun, name) => (await api(arun, `/v1/engines/${name}`)).body;
const start = (arun, name) => api(arun, `/v1/engines/${name}/start`, { method: 'POST' });
const stop = (arun, name) => api(arun, `/v1/engines/${name}/stop`, { method: 'POST' });
const waitState = (arun, name, states, opts = {}) => waitFor(async () => {
  const e = await engine(arun, name);
  return [].concat(states).includes(e.state) ? e : false;
}, { what: `${name} to be ${states}`, timeoutMs: 15000, ...opts });

// `sleep` processes (not zombies) whose command line holds marker.
function processesWith(marker) {
  const found = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (/\) Z /.test(stat) || !stat.includes('(sleep)')) continue;
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker)) found.push(Number(pid));
    } catch { /* gone */ }
  }
  return found;
}

function alive(pid) {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch { return false; }
}

const mock = (extra = '') => `"${MOCK_BIN} --port \${PORT} --model \${NAME} ${extra}"`;

describe('engine supervisor: native', () => {
  test('GET /v1/engines shows every contract field; an engine starts on request and serves', async () => {
    const arun = await new Arun({ config: `engines:\n  m1:\n    cmd: ${mock('--load-ms 300')}\n    models: [m1, alias-one]\n` }).start();
    try {
      const list = await api(arun, '/v1/engines');
      assert.equal(list.status, 200);
      const e0 = list.body.data[0];
      for (const k of ['name', 'state', 'reason', 'models', 'backend', 'backend_reason', 'pid', 'port',
        'memory', 'restarts', 'started_at', 'last_load_ms', 'in_flight', 'queued']) assert.ok(k in e0, `missing ${k}`);
      assert.equal(e0.state, 'stopped');
      assert.match(e0.reason, /on-demand/);
      assert.deepEqual(e0.models, ['m1', 'alias-one']);
      assert.equal(e0.backend, 'native');
      assert.equal((await start(arun, 'm1')).status, 202);
      const e = await waitState(arun, 'm1', 'ready');
      assert.ok(e.pid > 0 && e.port >= 41000 && e.port <= 41999);
      assert.ok(e.last_load_ms >= 300, `last_load_ms ${e.last_load_ms}`);
      const h = await fetch(`http://127.0.0.1:${e.port}/health`);
      assert.equal(h.status, 200);
      assert.equal((await api(arun, '/v1/engines/nope')).status, 404);
      const logs = await api(arun, '/v1/engines/m1/logs?tail=50');
      assert.match(logs.body, /listening on http/);
      assert.match(logs.body, /arun: started pid/);
      const m = await (await fetch(`${arun.url}/metrics`)).text();
      assert.match(m, /^arun_engine_state\{engine="m1",state="ready"\} 1$/m);
      assert.match(m, /^arun_engine_load_seconds_count\{engine="m1"\} 1$/m);
      await stop(arun, 'm1');
      await waitState(arun, 'm1', 'stopped');
      assert.ok(!alive(e.pid), 'the engine process is gone after stop');
    } finally { await arun.cleanup(); }
  });

  test('following a log whose tail is larger than a stream may start with gets its newest lines and a note', async () => {
    const dir = tempDir();
    // 1,200 lines of 1.1 KB: the in-memory tail (1 MiB) holds more than a stream starts with.
    writeFileSync(join(dir, 'loud.sh'), `awk 'BEGIN { s = sprintf("%1090s", ""); gsub(/ /, "x", s); for (i = 1; i <= 1200; i++) printf "logline %05d %s\\n", i, s }'
exec ${MOCK_BIN} --port "$1"
`);
    const arun = await new Arun({ config: `engines:\n  loud:\n    cmd: "sh ${join(dir, 'loud.sh')} \${PORT}"\n` }).start();
    const ac = new AbortController();
    try {
      await start(arun, 'loud');
      await waitState(arun, 'loud', 'ready');
      const r = await fetch(`${arun.url}/v1/engines/loud/logs?tail=1000&follow=1`, { signal: ac.signal });
      assert.equal(r.status, 200);
      let text = '';
      const dec = new TextDecoder();
      const reader = r.body.getReader();
      await waitFor(async () => {
        const { value } = await reader.read();
        text += dec.decode(value, { stream: true });
        return /data: logline 01200 /.test(text) && /listening on http/.test(text);
      }, { what: 'the newest tail lines in the stream', timeoutMs: 10000 });
      assert.match(text, /^: \d+ older lines left out: a stream starts with at most 512 KiB; GET without follow=1 has them all$/m);
      assert.ok(text.length < 600 * 1024, `the stream started with ${text.length} bytes`);
    } finally { ac.abort(); await arun.cleanup(); rmSync(dir, { recursive: true, force: true }); }
  });

  test('a crashing engine is restarted per policy, then failed after max, with its output in the log', async () => {
    const arun = await new Arun({ config: `engines:\n  crashy:\n    cmd: ${mock('--crash-after-ms 200')}\n    restart: {policy: on-failure, max: 2, backoff_ms: 100}\n` }).start();
    try {
      await start(arun, 'crashy');
      const e = await waitFor(async () => {
        const x = await engine(arun, 'crashy');
        return x.state === 'failed' && /gave up/.test(x.reason) ? x : false;
      }, { timeoutMs: 20000, what: 'crashy to give up' });
      assert.match(e.reason, /exited with code 1 after [\d.]+ s/);
      assert.match(e.reason, /gave up after 2 restarts/);
      assert.equal(e.restarts, 2);
      const file = readFileSync(join(arun.dataDir, 'logs', 'crashy.log'), 'utf8');
      assert.equal(file.match(/listening on http/g).length, 3, file);
      assert.match(file, /restart 1\/2/);
      const m = await (await fetch(`${arun.url}/metrics`)).text();
      assert.match(m, /^arun_engine_restarts_total\{engine="crashy"\} 2$/m);
    } finally { await arun.cleanup(); }
  });

  test('a missing binary fails at once with the reason', async () => {
    const arun = await new Arun({ config: 'engines:\n  ghost:\n    cmd: "no-such-llama-server --port ${PORT}"\n    restart: {policy: never}\n' }).start();
    try {
      await start(arun, 'ghost');
      const e = await waitState(arun, 'ghost', 'failed', { timeoutMs: 3000 });
      assert.match(e.reason, /binary not found: no-such-llama-server/);
    } finally { await arun.cleanup(); }
  });

  test('a grandchild that ignores SIGTERM and leaves the group is gone after stop_timeout_s', async () => {
    const marker = `9${Date.now() % 100000}17`;
    const dir = tempDir();
    // Two grandchildren that ignore SIGTERM: one in the engine's group, one that left it (setsid).
    writeFileSync(join(dir, 'stubborn.sh'), `trap '' TERM
setsid sh -c "trap '' TERM; sleep ${marker}" &
(trap '' TERM; sleep ${marker}1) &
exec ${MOCK_BIN} --port "$1"
`);
    const arun = await new Arun({ config: `engines:\n  stubborn:\n    cmd: "sh ${join(dir, 'stubborn.sh')} \${PORT}"\n    stop_timeout_s: 1\n` }).start();
    try {
      await start(arun, 'stubborn');
      await waitState(arun, 'stubborn', 'ready');
      await waitFor(() => processesWith(marker).length === 2, { what: 'both grandchildren' });
      // Let the sampler record the escaped grandchild before it is orphaned by the stop.
      await waitFor(async () => (await engine(arun, 'stubborn')).memory.rss_mb > 0, { what: 'a memory sample' });
      const t0 = Date.now();
      await stop(arun, 'stubborn');
      await waitState(arun, 'stubborn', 'stopped', { timeoutMs: 10000 });
      assert.ok(Date.now() - t0 >= 900, 'waited for stop_timeout_s');
      assert.deepEqual(processesWith(marker), []);
      assert.match(readFileSync(join(arun.dataDir, 'logs', 'stubborn.log'), 'utf8'), /sending SIGKILL/);
    } finally { await arun.cleanup(); rmSync(dir, { recursive: true, force: true }); }
  });

  test('a slow load that shows progress succeeds; a silent one fails after stall_timeout_s', async () => {
    const arun = await new Arun({ config: `engines:\n  slow:\n    cmd: ${mock('--load-ms 8000 --log-every-ms 1000')}\n    health: {stall_timeout_s: 3}\n  silent:\n    cmd: ${mock('--load-ms 60000 --quiet-load')}\n    health: {stall_timeout_s: 3}\n    restart: {policy: never}\n` }).start();
    try {
      await start(arun, 'slow');
      await start(arun, 'silent');
      const s = await waitState(arun, 'silent', 'failed', { timeoutMs: 12000 });
      assert.match(s.reason, /stalled while (starting|loading).*3 s/);
      const l = await waitFor(async () => { const e = await engine(arun, 'slow'); return e.state === 'loading' ? e : false; }, { what: 'slow loading' });
      assert.equal(l.state, 'loading');
      const e = await waitState(arun, 'slow', 'ready', { timeoutMs: 15000 });
      assert.ok(e.last_load_ms >= 8000);
    } finally { await arun.cleanup(); }
  });

  test('a health cmd that exits 1 makes a running engine unhealthy with that reason', async () => {
    const dir = tempDir();
    const flag = join(dir, 'healthy');
    writeFileSync(flag, '');
    const arun = await new Arun({ config: `engines:\n  h:\n    cmd: ${mock()}\n    health: {cmd: "test -e ${flag}", interval_ms: 100, failures: 2}\n` }).start();
    try {
      await start(arun, 'h');
      await waitState(arun, 'h', 'ready');
      rmSync(flag);
      const e = await waitState(arun, 'h', 'unhealthy');
      // failures: 2 makes it unhealthy at the 2nd failure; the reason keeps counting the probes
      // that fail after that, so a read a probe later may say 3.
      const times = Number(/health cmd exited with code 1 \((\d+) times in a row\)/.exec(e.reason)?.[1]);
      assert.ok(times >= 2, e.reason);
      writeFileSync(flag, '');
      await waitState(arun, 'h', 'ready');
    } finally { await arun.cleanup(); rmSync(dir, { recursive: true, force: true }); }
  });

  test('a request that arrives while its engine is unhealthy is served once the engine is ready again', async () => {
    const dir = tempDir();
    const flag = join(dir, 'healthy');
    writeFileSync(flag, '');
    const arun = await new Arun({ config: `engines:\n  u:\n    cmd: ${mock()}\n    health: {cmd: "test -e ${flag}", interval_ms: 100, failures: 1}\n` }).start();
    try {
      await start(arun, 'u');
      await waitState(arun, 'u', 'ready');
      rmSync(flag);
      await waitState(arun, 'u', 'unhealthy');
      const answer = fetch(`${arun.url}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'u', messages: [{ role: 'user', content: 'hi' }] }),
      });
      await waitFor(async () => (await engine(arun, 'u')).queued === 1, { what: 'the request to be queued' });
      writeFileSync(flag, '');
      await waitState(arun, 'u', 'ready');
      // The deadline is a failure bound, not a timing claim: the request waits for a state change.
      const r = await Promise.race([answer, new Promise((_, rej) => setTimeout(
        () => rej(new Error('the queued request was not served after unhealthy -> ready')), 10000))]);
      assert.equal(r.status, 200);
      assert.equal((await r.json()).object, 'chat.completion');
    } finally { await arun.cleanup(); rmSync(dir, { recursive: true, force: true }); }
  });

  test('health.probe: completion finds an engine whose /health is fine but whose completions are broken', async () => {
    const arun = await new Arun({ config: `engines:\n  g:\n    cmd: ${mock('--garbage')}\n    health: {probe: completion, interval_ms: 100, failures: 2}\n` }).start();
    try {
      await start(arun, 'g');
      const e = await waitState(arun, 'g', 'unhealthy');
      assert.match(e.reason, /completion probe got HTTP 200 without a completion in it/);
    } finally { await arun.cleanup(); }
  });

  test('an engine using more memory than declared is stopped with the memory reason', async () => {
    const arun = await new Arun({ config: `engines:\n  fat:\n    cmd: ${mock('--rss-mb 300')}\n    memory: {ram_mb: 100}\n    restart: {policy: never}\n` }).start();
    try {
      await start(arun, 'fat');
      const e = await waitState(arun, 'fat', 'failed', { timeoutMs: 10000 });
      assert.match(e.reason, /killed: used [\d.]+ GiB of RAM, its envelope \(memory.ram_mb\) is 0.1 GiB/);
    } finally { await arun.cleanup(); }
  });

  test('two engines that exceed the envelope never run at once; the idle one is evicted; a too-large one is refused', async () => {
    const arun = await new Arun({ config: `node: {ram_mb: 1000}\nengines:\n  a:\n    cmd: ${mock()}\n    memory: {ram_mb: 600}\n    min_resident_s: 0\n  b:\n    cmd: ${mock()}\n    memory: {ram_mb: 600}\n    min_resident_s: 0\n  huge:\n    cmd: ${mock()}\n    memory: {ram_mb: 5000}\n` }).start();
    const ac = new AbortController();
    const seen = [];
    try {
      const events = await fetch(`${arun.url}/v1/events`, { signal: ac.signal });
      (async () => {
        const dec = new TextDecoder();
        try { for await (const chunk of events.body) seen.push(dec.decode(chunk)); } catch { /* aborted */ }
      })();
      await start(arun, 'a');
      await waitState(arun, 'a', 'ready');
      await start(arun, 'b');
      await waitState(arun, 'b', 'ready');
      const a = await engine(arun, 'a');
      assert.equal(a.state, 'stopped');
      assert.match(a.reason, /evicted to make room for b/);
      const big = await start(arun, 'huge');
      assert.equal(big.status, 409);
      assert.match(big.body.error.message, /needs 5000 MiB of RAM, the node's envelope is 1000 MiB/);
      // Replay the state events: a and b were never running at the same time.
      const running = new Set();
      const live = ['starting', 'loading', 'ready', 'unhealthy', 'stopping'];
      for (const m of seen.join('').matchAll(/^data: (.*)$/gm)) {
        const ev = JSON.parse(m[1]);
        if (ev.type !== 'engine.state') continue;
        if (live.includes(ev.data.state)) running.add(ev.data.engine); else running.delete(ev.data.engine);
        assert.ok(!(running.has('a') && running.has('b')), 'a and b ran at once');
      }
      assert.match(seen.join(''), /engine\.evict/);
    } finally { ac.abort(); await arun.cleanup(); }
  });
});

describe('engine supervisor: start policies', () => {
  test('start: always starts at boot; ttl_s unloads an idle engine; start: manual is never started by arun itself', async () => {
    const arun = await new Arun({ config: `engines:\n  boot:\n    cmd: ${mock()}\n    start: always\n    ttl_s: 1\n  hand:\n    cmd: ${mock()}\n    start: manual\n` }).start();
    try {
      await waitState(arun, 'boot', 'ready');
      const e = await waitState(arun, 'boot', 'stopped', { timeoutMs: 6000 });
      assert.match(e.reason, /idle for 1 s \(ttl_s\)/);
      const h = await engine(arun, 'hand');
      assert.equal(h.state, 'stopped');
      assert.match(h.reason, /start: manual/);
    } finally { await arun.cleanup(); }
  });
});

describe('engine supervisor: adoption and shutdown', () => {
  test('kill -9 of arun keeps the engine; the next arun adopts it with the same pid; SIGTERM stops it', async () => {
    const port = await freePort();
    const config = `engines:\n  keep:\n    cmd: ${mock()}\n    port: ${port}\n`;
    const first = new Arun({ config });
    await first.start();
    let pid;
    try {
      await start(first, 'keep');
      pid = (await waitState(first, 'keep', 'ready')).pid;
      await first.stop('SIGKILL');
      assert.ok(alive(pid), 'the engine survived the crash of arun');
      const second = new Arun({ dir: first.dir, config });
      await second.start();
      try {
        const e = await waitState(second, "keep", "ready").catch((err) => { throw new Error(err.message + "\n" + second.stderr.slice(-3000)); });
        assert.equal(e.pid, pid);
        assert.match((await api(second, '/v1/engines/keep/logs')).body, /adopted pid/);
        assert.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200);
        const r = await second.stop('SIGTERM');
        assert.equal(r.code, 0, second.stderr.slice(-3000));
        assert.ok(!alive(pid), 'a clean stop of arun stops its engines');
      } finally { await second.cleanup(); }
    } finally {
      if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(first.dir, { recursive: true, force: true });
    }
  });

  test('kill -9 of arun in the first 50 ms after engines start leaves none that the next arun neither adopts nor stops', async () => {
    const ROUNDS = 15;
    const names = ['r1', 'r2', 'r3'];
    const token = `race${process.pid}x${Date.now() % 100000}`;
    // A new manifest each round (--max-tokens), so the next arun adopts none of the last
    // round's engines and starts them all again; the last arun keeps the manifest of the
    // round before it, so what was recorded is adopted there.
    const config = (round) => `engines:\n${names.map((n) => `  ${n}:\n    cmd: ${mock(`--model ${token}-${n} --max-tokens ${100 + round}`)}\n`).join('')}`;
    // Live (not zombie) mock processes of this test.
    const marked = () => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).filter((pid) => {
      try {
        return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
          && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(token);
      } catch { return false; }
    });
    const dir = tempDir();
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const a = new Arun({ dir, config: config(round) });
        await a.start();
        // Two rounds in three commit slowly, as on a busy disk: another writer holds the
        // database, so records wait in arun's writer while the engines already run.
        const lock = round % 3 !== 2 ? await holdWriteLock(join(dir, 'data', 'arun.db')) : null;
        await Promise.all(names.map((n) => start(a, n)));
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 50))); // the fault's moment
        await a.stop('SIGKILL');
        await lock?.release();
      }
      const last = new Arun({ dir, config: config(ROUNDS - 1) });
      await last.start();
      const engines = async () => (await api(last, '/v1/engines')).body.data;
      await waitFor(async () => {
        const pids = new Set((await engines()).filter((e) => e.pid).map((e) => e.pid));
        const stray = marked().filter((pid) => !pids.has(pid));
        if (stray.length > 0) throw new Error(`not adopted and still running: ${stray.join(' ')}`);
        return true;
      }, { timeoutMs: 15000, what: 'every engine process to be adopted or stopped' });
      const r = await last.stop('SIGTERM');
      assert.equal(r.code, 0, last.stderr.slice(-3000));
      await waitFor(() => marked().length === 0, { timeoutMs: 5000, what: 'no engine process after a clean stop' });
    } finally {
      for (const pid of marked()) process.kill(pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an engine removed from the config while arun was down is found at start and stopped', async () => {
    const both = `engines:\n  keep2:\n    cmd: ${mock()}\n  gone:\n    cmd: ${mock()}\n`;
    const first = new Arun({ config: both });
    await first.start();
    let pid;
    try {
      await start(first, 'gone');
      pid = (await waitState(first, 'gone', 'ready')).pid;
      await first.stop('SIGKILL');
      assert.ok(alive(pid));
      const second = new Arun({ dir: first.dir, config: `engines:\n  keep2:\n    cmd: ${mock()}\n` });
      await second.start();
      try {
        await waitFor(() => !alive(pid), { timeoutMs: 15000, what: 'the orphan to be stopped' });
        assert.match(second.stderr, /engine gone is no longer in the config, but pid \d+ .* still runs; stopping it/);
      } finally { await second.cleanup(); }
    } finally {
      if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(first.dir, { recursive: true, force: true });
    }
  });
});
