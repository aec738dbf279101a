// `arun runs`, `arun runs show|cancel|watch` and `arun chat --background` end to end, run as a
// person would run them against a real `arun serve` driving arun-mock-engine. The watch tests put
// a small TCP proxy between the CLI and arun that cuts connections in the middle of the event
// stream: the CLI must resume with starting_after, silently, and print the answer exactly once.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { Arun, MOCK_BIN, ARUN_BIN, runArun, waitFor, assertNoSanitizerReport, tempDir } from './lib/arun.mjs';

const config = (extra = '') => `engines:\n  qwen:\n    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME} ${extra}"\n    models: [qwen]\n    start: always\n`;

// Runs the CLI to completion without blocking this process's loop (the proxy lives in it).
function cli(url, args) {
  const p = spawn(ARUN_BIN, args, { env: { ...process.env, ARUN_URL: url }, stdio: ['ignore', 'pipe', 'pipe'] });
  const run = { proc: p, stdout: '', stderr: '' };
  p.stdout.setEncoding('utf8');
  p.stderr.setEncoding('utf8');
  p.stdout.on('data', (d) => { run.stdout += d; });
  p.stderr.on('data', (d) => { run.stderr += d; });
  run.done = new Promise((res) => p.on('close', (code, signal) => {
    assertNoSanitizerReport(run.stderr, `arun ${args.join(' ')}`);
    res({ status: code, signal, stdout: run.stdout, stderr: run.stderr });
  }));
  return run;
}
const sync = (arun, args) => {
  const r = runArun(args, { env: { ...process.env, ARUN_URL: arun.url } });
  assertNoSanitizerReport(r.stderr || '', `arun ${args.join(' ')}`);
  return r;
};

async function create(arun, body) {
  const r = await fetch(`${arun.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'qwen', background: true, ...body }) });
  assert.equal(r.status, 200, await r.clone().text());
  return r.json();
}
const get = async (arun, id) => (await fetch(`${arun.url}/v1/responses/${id}`)).json();
const ended = (s) => ['completed', 'failed', 'cancelled', 'incomplete'].includes(s);
const finished = (arun, id) => waitFor(async () => { const r = await get(arun, id); return ended(r.status) && r; }, { timeoutMs: 30000, what: `${id} to end` });
const outputText = (r) => r.output.filter((i) => i.type === 'message').flatMap((i) => i.content).map((c) => c.text ?? '').join('');

// A TCP proxy to arun (or to the port target() names, when arun is restarted on another one).
// cuts lists byte budgets: the Nth connection is cut (both sides
// destroyed) once it has passed cuts[N] bytes from arun to the client; later ones pass whole.
// requests collects the request lines the client sent, in order.
async function cuttingProxy(arun, cuts = [], target = () => arun.port) {
  const sockets = new Set();
  const requests = [];
  let n = 0;
  const server = net.createServer((client) => {
    const budget = cuts[n++];
    const upstream = net.connect(target(), '127.0.0.1');
    let passed = 0;
    let head = '';
    for (const s of [client, upstream]) { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}); }
    client.on('data', (d) => {
      head += d.toString('latin1');
      for (let m; (m = /^(GET|POST|DELETE) (\S+) HTTP\/1\.1\r\n/m.exec(head));) { requests.push(`${m[1]} ${m[2]}`); head = head.slice(m.index + m[0].length); }
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (budget !== undefined && passed + d.length >= budget) {
        client.end(d.subarray(0, budget - passed));
        client.destroy();
        upstream.destroy();
        return;
      }
      passed += d.length;
      client.write(d);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    connections: () => n,
    // Stops accepting and drops every connection: the server is gone as far as the CLI sees.
    close: () => new Promise((r) => { server.close(r); for (const s of sockets) s.destroy(); }),
  };
}

describe('arun runs', () => {
  test('chat --background prints the id on stderr and the answer on stdout; runs lists, shows and filters it', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const r = await cli(arun.url, ['chat', '-m', 'qwen', '--background', 'hello there']).done;
      assert.equal(r.status, 0, r.stderr);
      const m = /^arun: (resp_\S+) \(background: Ctrl-C stops watching, the run goes on\)$/m.exec(r.stderr);
      assert.ok(m, r.stderr);
      const id = m[1];
      const resp = await get(arun, id);
      assert.equal(resp.status, 'completed');
      assert.equal(resp.background, true);
      assert.ok(outputText(resp).length > 0);
      assert.equal(r.stdout, `${outputText(resp)}\n`);

      const second = await create(arun, { input: 'another one' });
      await finished(arun, second.id);
      const list = sync(arun, ['runs']);
      assert.equal(list.status, 0, list.stderr);
      const lines = list.stdout.trimEnd().split('\n');
      assert.match(lines[0], /^ID +STATUS +MODEL +CREATED +QUEUED +TTFT +TOK\/S +DURATION$/);
      assert.equal(lines.length, 3);
      const span = '(\\d+ms|[\\d.]+s)';
      assert.match(lines[1], new RegExp(`^${second.id} +completed +qwen +\\d+s ago +${span} +${span} +([\\d.]+|-) +[\\d.]+s$`), 'newest first');
      assert.match(lines[2], new RegExp(`^${id} +completed +qwen +`));
      assert.equal(lines[1].indexOf('completed'), lines[0].indexOf('STATUS'), 'aligned columns');

      const json = JSON.parse(sync(arun, ['runs', '--json']).stdout);
      assert.equal(json.object, 'list');
      assert.deepEqual(json.data.map((x) => x.id), [second.id, id]);
      assert.equal(json.has_more, false);
      const one = JSON.parse(sync(arun, ['runs', '-n', '1', '--json']).stdout);
      assert.deepEqual(one.data.map((x) => x.id), [second.id]);
      assert.equal(one.has_more, true);
      const none = sync(arun, ['runs', '--status', 'failed']);
      assert.equal(none.stdout.trimEnd().split('\n').length, 1, 'only the header');

      const show = sync(arun, ['runs', 'show', id]);
      assert.equal(show.status, 0, show.stderr);
      assert.match(show.stdout, new RegExp(`^id +${id}$`, 'm'));
      assert.match(show.stdout, /^status +completed$/m);
      assert.match(show.stdout, /^model +qwen$/m);
      assert.match(show.stdout, /^arun\.\S+ +\S/m, 'the provenance is shown');
      assert.ok(show.stdout.endsWith(`\n\n${outputText(resp)}\n`), show.stdout);
      const raw = sync(arun, ['runs', 'show', id, '--json']);
      assert.deepEqual(JSON.parse(raw.stdout), await get(arun, id));
    } finally { await arun.cleanup(); }
  });

  test('many runs page through after=last_id', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const ids = [];
      for (let i = 0; i < 25; i++) ids.push((await create(arun, { input: `q${i}` })).id);
      await finished(arun, ids[ids.length - 1]);
      const all = JSON.parse(sync(arun, ['runs', '-n', '0', '--json']).stdout);
      assert.deepEqual(all.data.map((x) => x.id), ids.reverse());
      const table = sync(arun, ['runs', '-n', '0']);
      assert.equal(table.stdout.trimEnd().split('\n').length, 26);
      assert.equal(sync(arun, ['runs']).stdout.trimEnd().split('\n').length, 21, 'the newest 20 by default');
    } finally { await arun.cleanup(); }
  });

  test('cancel stops a running background run; a live watcher ends with exit 1 and says so', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 20 --ignore-eos') }).start();
    try {
      const r = await create(arun, { input: 'a long answer', max_output_tokens: 2000 });
      const watcher = cli(arun.url, ['runs', 'watch', r.id]);
      await waitFor(() => watcher.stdout.length > 0, { timeoutMs: 15000, what: 'the first text of the watcher' });
      const c = sync(arun, ['runs', 'cancel', r.id]);
      assert.equal(c.status, 0, c.stderr);
      assert.equal(c.stdout, `${r.id}: cancelled\n`);
      const w = await watcher.done;
      assert.equal(w.status, 1, w.stderr);
      assert.match(w.stderr, new RegExp(`^arun: ${r.id} cancelled$`, 'm'));
      const final = await get(arun, r.id);
      assert.equal(final.status, 'cancelled');
      assert.equal(w.stdout, `${outputText(final)}\n`, 'the text up to the cancel, once');
      const again = sync(arun, ['runs', 'cancel', r.id]);
      assert.equal(again.status, 0, 'cancelling a finished run is not an error');
      assert.equal(again.stdout, `${r.id}: cancelled\n`);
      assert.equal(sync(arun, ['runs', '--status', 'cancelled']).stdout.trimEnd().split('\n').length, 2);
    } finally { await arun.cleanup(); }
  });

  test('an unknown id exits 1 with the server\'s message; usage errors exit 2; no server exits 3', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      for (const verb of ['show', 'cancel', 'watch']) {
        const r = sync(arun, ['runs', verb, 'resp_doesnotexist']);
        assert.equal(r.status, 1, `${verb}: ${r.stderr}`);
        assert.match(r.stderr, /^arun: .*not found/im);
        assert.equal(r.stdout, '');
      }
      assert.equal(sync(arun, ['runs', '--status', 'done']).status, 2);
      assert.equal(sync(arun, ['runs', 'watch']).status, 2);
    } finally { await arun.cleanup(); }
    const gone = runArun(['runs', '--server', 'http://127.0.0.1:1']);
    assert.equal(gone.status, 3);
    assert.match(gone.stderr, /^arun: cannot reach the server at http:\/\/127\.0\.0\.1:1: connection refused/m);
  });

  test('a run that ends incomplete exits 1 with the reason; its text is printed', async () => {
    const arun = await new Arun({ config: config('--ignore-eos') }).start();
    try {
      const r = await cli(arun.url, ['chat', '-m', 'qwen', '--background', '--max-tokens', '16', 'hello']).done;
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /^arun: resp_\S+ incomplete: max_output_tokens$/m);
      assert.equal(r.stdout.trimEnd().split(' ').length, 16);
      const d = await cli(arun.url, ['chat', '-m', 'qwen', '--detach', '--max-tokens', '16', 'hello']).done;
      assert.equal(d.status, 0, d.stderr);
      assert.match(d.stdout, /^resp_\S+\n$/);
      assert.equal(d.stderr, '');
      assert.equal((await finished(arun, d.stdout.trim())).background, true);
    } finally { await arun.cleanup(); }
  });
});

describe('arun runs watch across dropped connections', () => {
  test('cut twice mid-stream, watch resumes with starting_after and prints the final text exactly once, silently', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 30 --ignore-eos') }).start();
    try {
      const r = await create(arun, { input: 'tell me a long story', max_output_tokens: 60 });
      const proxy = await cuttingProxy(arun, [6000, 1500]);
      const w = await cli(proxy.url, ['runs', 'watch', r.id]).done;
      const final = await get(arun, r.id);
      assert.equal(w.status, 1, 'the run ends incomplete (max_output_tokens)');
      assert.equal(final.status, 'incomplete');
      assert.equal(w.stdout, `${outputText(final)}\n`, 'every delta once, in order');
      assert.equal(w.stderr, `arun: ${r.id} incomplete: max_output_tokens\n`, 'no word about the drops');
      const streams = proxy.requests.filter((q) => q.includes('stream=true'));
      assert.ok(streams.length >= 3, proxy.requests.join('\n'));
      assert.equal(streams[0], `GET /v1/responses/${r.id}?stream=true`);
      const after = streams.slice(1).map((q) => Number(/starting_after=(\d+)$/.exec(q)?.[1]));
      assert.ok(after[0] > 0 && after[1] > after[0], `resumed after ${after}`);
      await proxy.close();
    } finally { await arun.cleanup(); }
  });

  test('-v notes each reconnection on stderr', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const r = await create(arun, { input: 'hello there' });
      await finished(arun, r.id);
      const proxy = await cuttingProxy(arun, [3000]);
      const w = await cli(proxy.url, ['runs', 'watch', r.id, '-v']).done;
      assert.equal(w.status, 0, w.stderr);
      assert.equal(w.stdout, `${outputText(await get(arun, r.id))}\n`);
      assert.match(w.stderr, new RegExp(`^arun: reconnecting to ${r.id} after sequence number \\d+ in 100 ms`, 'm'));
      await proxy.close();
    } finally { await arun.cleanup(); }
  });

  test('a server that stays away past --reconnect-timeout exits 3 and says the run may go on', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 5 --ignore-eos') }).start();
    try {
      const r = await create(arun, { input: 'a very long answer', max_output_tokens: 5000 });
      const proxy = await cuttingProxy(arun);
      const watcher = cli(proxy.url, ['runs', 'watch', r.id, '--reconnect-timeout', '1']);
      await waitFor(() => watcher.stdout.length > 0, { timeoutMs: 15000, what: 'the first text of the watcher' });
      await proxy.close();
      const w = await watcher.done;
      assert.equal(w.status, 3, w.stderr);
      assert.match(w.stderr, new RegExp(`^arun: gave up on ${r.id} after 1 s: the server at ${proxy.url} does not answer .*runs watch ${r.id}`, 'm'));
      assert.equal((await get(arun, r.id)).status, 'in_progress', 'the run goes on without a watcher');
      assert.equal(sync(arun, ['runs', 'cancel', r.id]).status, 0);
    } finally { await arun.cleanup(); }
  });

  test('watch goes on through kill -9 and a restart of arun: the continued run completes, its text printed once', async () => {
    const cfg = `engines:\n  cont:\n    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME} --tokens-per-s 30 --ignore-eos --max-tokens 60 --echo-prefix"\n    continuation: chat-prefix\n`;
    const dir = tempDir();
    let arun = await new Arun({ config: cfg, dir }).start();
    try {
      const r = await create(arun, { model: 'cont', input: 'a story to survive a crash' });
      const proxy = await cuttingProxy(arun, [], () => arun.port);
      const watcher = cli(proxy.url, ['runs', 'watch', r.id]);
      await waitFor(() => watcher.stdout.split(' ').length > 10, { timeoutMs: 15000, what: 'ten words from the watcher' });
      arun.proc.kill('SIGKILL');
      await arun.exited;
      arun = await new Arun({ config: cfg, dir }).start();
      const w = await watcher.done;
      const final = await get(arun, r.id);
      assert.equal(final.status, 'completed', JSON.stringify(final.error));
      assert.equal(final.arun.continued_after_restart, true);
      assert.equal(w.status, 0, w.stderr);
      assert.equal(w.stdout, `${outputText(final)}\n`, 'the prefix before the kill and the continuation, once');
      assert.equal(w.stderr, '', 'the restart is not the person\'s business');
      await proxy.close();
    } finally { await arun.cleanup(); }
  });
});
