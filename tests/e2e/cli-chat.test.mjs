// `arun chat -m MODEL "prompt"` end to end, run as a person would run it against a real
// `arun serve` driving arun-mock-engine: the answer streams to stdout as it is generated and
// equals what the API answers; errors go to stderr as `arun: MESSAGE` with the contract's exit
// codes (1 refused or failed, 2 usage, 3 unreachable).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { Arun, MOCK_BIN, ARUN_BIN, runArun, waitFor, assertNoSanitizerReport } from './lib/arun.mjs';

const mock = (extra = '') => `"${MOCK_BIN} --port \${PORT} --model \${NAME} ${extra}"`;
const config = (extra = '', engine = '') => `engines:\n  qwen:\n    cmd: ${mock(extra)}\n    models: [qwen, q-alias]\n${engine}`;
const UNREACHABLE = /^arun: cannot reach the server at http:\/\/127\.0\.0\.1:1: connection refused \(is `arun serve` running\?\)$/m;

// Runs the CLI to completion against arun and checks its own stderr for sanitizer reports.
function chat(arun, args, opts = {}) {
  const env = { ...process.env, ...(arun ? { ARUN_URL: arun.url } : {}), ...(opts.env || {}) };
  const r = runArun(['chat', ...args], { ...opts, env });
  assertNoSanitizerReport(r.stderr || '', `arun chat ${args.join(' ')}`);
  return r;
}

// Starts the CLI without waiting; records every stdout chunk with whether it had exited then.
function spawnChat(arun, args) {
  const p = spawn(ARUN_BIN, ['chat', ...args], { env: { ...process.env, ARUN_URL: arun.url }, stdio: ['ignore', 'pipe', 'pipe'] });
  const run = { proc: p, chunks: [], stdout: '', stderr: '', exit: null };
  p.stdout.setEncoding('utf8');
  p.stderr.setEncoding('utf8');
  p.stdout.on('data', (d) => { run.chunks.push({ data: d, exited: run.exit !== null }); run.stdout += d; });
  p.stderr.on('data', (d) => { run.stderr += d; });
  run.done = new Promise((res) => p.on('close', (code, signal) => { run.exit = { code, signal }; res(run.exit); }));
  p.on('exit', (code, signal) => { run.exit ??= { code, signal }; });
  return run;
}

async function answerOf(arun, body) {
  const r = await fetch(`${arun.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(r.status, 200);
  return (await r.json()).choices[0].message.content;
}

async function engine(arun, name = 'qwen') {
  return (await fetch(`${arun.url}/v1/engines/${name}`)).json();
}

async function ready(arun, name = 'qwen') {
  return waitFor(async () => { const e = await engine(arun, name); return e.state === 'ready' ? e : false; }, { what: `${name} ready` });
}

describe('arun chat', () => {
  test('the streamed answer equals the non-streaming answer for the same prompt; exit 0', async () => {
    const arun = await new Arun({ config: config('--load-ms 200') }).start();
    try {
      const r = chat(arun, ['-m', 'qwen', 'hello there']);
      assert.equal(r.status, 0, r.stderr);
      const text = await answerOf(arun, { model: 'qwen', messages: [{ role: 'user', content: 'hello there' }] });
      assert.ok(text.length > 0);
      assert.equal(r.stdout, `${text}\n`);
      assert.equal(r.stderr, '');
      const words = chat(arun, ['--model=q-alias', '--', 'hello', 'there']);
      assert.equal(words.status, 0, words.stderr);
      assert.equal(words.stdout, `${text}\n`, 'words are joined with spaces; an alias routes alike');
    } finally { await arun.cleanup(); }
  });

  test('--system, --max-tokens and --temperature reach the engine in an OpenAI chat request', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const r = chat(arun, ['-m', 'qwen', '--system', 'be brief', '--max-tokens', '3', '--temperature', '0.5', 'hi']);
      assert.equal(r.status, 0, r.stderr);
      const e = await engine(arun);
      const stats = await (await fetch(`http://127.0.0.1:${e.port}/mock/stats`)).json();
      const { model, messages, stream, max_tokens, temperature } = stats.last_request_body;
      assert.deepEqual({ model, messages, stream, max_tokens, temperature }, {
        model: 'qwen',
        messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }],
        stream: true, max_tokens: 3, temperature: 0.5,
      });
      assert.equal(r.stdout.trimEnd().split(' ').length, 3);
    } finally { await arun.cleanup(); }
  });

  test('--json prints the non-streamed JSON response', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const r = chat(arun, ['-m', 'qwen', '--json', '--max-tokens', '4', 'hello there']);
      assert.equal(r.status, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.equal(j.object, 'chat.completion');
      const e = await engine(arun);
      const stats = await (await fetch(`http://127.0.0.1:${e.port}/mock/stats`)).json();
      assert.equal(stats.last_request_body.stream, false);
      const text = await answerOf(arun, { model: 'qwen', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 4 });
      assert.equal(j.choices[0].message.content, text);
    } finally { await arun.cleanup(); }
  });

  test('tokens reach stdout as they are generated, before the answer ends', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 20 --max-tokens 10', '    start: always\n') }).start();
    try {
      await ready(arun);
      const run = spawnChat(arun, ['-m', 'qwen', 'stream please']);
      const first = await waitFor(() => run.chunks[0], { what: 'the first stdout bytes' });
      assert.equal(first.exited, false, 'stdout got data only after the CLI exited');
      const exit = await run.done;
      assertNoSanitizerReport(run.stderr, 'arun chat');
      assert.equal(exit.code, 0, run.stderr);
      assert.ok(run.chunks.length >= 2, `the answer came in ${run.chunks.length} chunk(s)`);
      const text = await answerOf(arun, { model: 'qwen', messages: [{ role: 'user', content: 'stream please' }] });
      assert.equal(run.stdout, `${text}\n`);
      assert.ok(text.startsWith(first.data), 'the first chunk is the start of the answer');
    } finally { await arun.cleanup(); }
  });

  test('Ctrl-C mid-stream ends the line and exits 0', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 20 --max-tokens 400 --ignore-eos', '    start: always\n') }).start();
    try {
      await ready(arun);
      const run = spawnChat(arun, ['-m', 'qwen', 'a long answer']);
      await waitFor(() => run.chunks[0], { what: 'the first stdout bytes' });
      run.proc.kill('SIGINT');
      const exit = await run.done;
      assertNoSanitizerReport(run.stderr, 'arun chat');
      assert.deepEqual(exit, { code: 0, signal: null }, run.stderr);
      assert.ok(run.stdout.endsWith('\n'));
      assert.ok(run.stdout.split(' ').length < 400, 'the answer was cut short');
    } finally { await arun.cleanup(); }
  });

  test('the prompt comes from stdin when it is "-" or absent', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const want = chat(arun, ['-m', 'qwen', 'a question from a pipe']);
      assert.equal(want.status, 0, want.stderr);
      const absent = chat(arun, ['-m', 'qwen'], { input: 'a question from a pipe\n' });
      assert.equal(absent.status, 0, absent.stderr);
      assert.equal(absent.stdout, want.stdout, 'the trailing newline of the pipe is not sent');
      const dash = chat(arun, ['-m', 'qwen', '-'], { input: 'a question from a pipe' });
      assert.equal(dash.status, 0, dash.stderr);
      assert.equal(dash.stdout, want.stdout);
      const e = await engine(arun);
      const stats = await (await fetch(`http://127.0.0.1:${e.port}/mock/stats`)).json();
      assert.equal(stats.last_request_body.messages[0].content, 'a question from a pipe');
      const empty = chat(arun, ['-m', 'qwen'], { input: '' });
      assert.equal(empty.status, 2);
      assert.match(empty.stderr, /^arun chat: the prompt is empty$/m);
    } finally { await arun.cleanup(); }
  });

  test('an unknown model exits 1 with the 404 message listing the models', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const r = chat(arun, ['-m', 'gpt-9', 'hi']);
      assert.equal(r.status, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^arun: the model 'gpt-9' does not exist; models served here: qwen, q-alias$/m);
      const j = chat(arun, ['-m', 'gpt-9', '--json', 'hi']);
      assert.equal(j.status, 1);
      assert.match(j.stderr, /^arun: the model 'gpt-9' does not exist/m);
    } finally { await arun.cleanup(); }
  });

  test('a full queue exits 1 with the 429 message and its Retry-After', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 20 --max-tokens 40', '    start: always\n    max_concurrency: 1\n    queue_limit: 0\n') }).start();
    try {
      await ready(arun);
      const busy = spawnChat(arun, ['-m', 'qwen', 'keep it busy']);
      await waitFor(() => busy.chunks[0], { what: 'the first answer to stream' });
      const r = chat(arun, ['-m', 'qwen', 'me too']);
      assert.equal(r.status, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^arun: engine qwen is busy: .*queue_limit 0.*\(retry after \d+ s\)$/m);
      busy.proc.kill('SIGINT');
      await busy.done;
    } finally { await arun.cleanup(); }
  });

  test('an engine that cannot start exits 1 with the reason', async () => {
    const arun = await new Arun({ config: config('--load-ms 5000 --crash-after-ms 100', '    restart: {policy: never}\n') }).start();
    try {
      const r = chat(arun, ['-m', 'qwen', 'hi']);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^arun: .*qwen/m);
    } finally { await arun.cleanup(); }
  });

  test('a stream that breaks off mid-answer exits 1 after the partial answer', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 20 --max-tokens 400 --ignore-eos --crash-after-ms 1500', '    start: always\n    restart: {policy: never}\n') }).start();
    try {
      await ready(arun);
      const r = chat(arun, ['-m', 'qwen', 'hi']);
      assert.equal(r.status, 1, r.stderr);
      assert.ok(r.stdout.length > 1 && r.stdout.endsWith('\n'), `stdout: ${JSON.stringify(r.stdout)}`);
      assert.match(r.stderr, /^arun: /m);
    } finally { await arun.cleanup(); }
  });

  test('an answer that is not SSE JSON exits 1 saying so', async () => {
    const arun = await new Arun({ config: config('--garbage') }).start();
    try {
      const r = chat(arun, ['-m', 'qwen', 'hi']);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /^arun: the server sent an event that is not JSON: /m);
    } finally { await arun.cleanup(); }
  });

  test('server notes (SSE comments) go to stderr with -v, never to stdout', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 20 --max-tokens 10', '    start: always\n    max_concurrency: 1\n') }).start();
    try {
      await ready(arun);
      const busy = spawnChat(arun, ['-m', 'qwen', 'first']);
      await waitFor(() => busy.chunks[0], { what: 'the first answer to stream' });
      const r = chat(arun, ['-m', 'qwen', '-v', 'second']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /^arun: queued 1st for qwen/m);
      assert.doesNotMatch(r.stdout, /queued/);
      const text = await answerOf(arun, { model: 'qwen', messages: [{ role: 'user', content: 'second' }] });
      assert.equal(r.stdout, `${text}\n`);
      await busy.done;
      const quiet = chat(arun, ['-m', 'qwen', 'second']);
      assert.equal(quiet.stderr, '', 'without -v and a terminal, no notes');
    } finally { await arun.cleanup(); }
  });

  test('--background exits 2 against a server without the Responses API', async () => {
    // An arun from before the Responses API: its router answers every unknown route like this.
    const old = http.createServer((req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `no such endpoint: ${req.method} ${req.url}`, type: 'invalid_request_error', param: null, code: 'not_found' } }));
    });
    await new Promise((r) => old.listen(0, '127.0.0.1', r));
    try {
      const r = await new Promise((resolve) => {
        const p = spawn(ARUN_BIN, ['chat', '-m', 'qwen', '--background', 'hi'], { env: { ...process.env, ARUN_URL: `http://127.0.0.1:${old.address().port}` } });
        let stdout = '', stderr = '';
        p.stdout.on('data', (d) => { stdout += d; });
        p.stderr.on('data', (d) => { stderr += d; });
        p.on('close', (status) => resolve({ status, stdout, stderr }));
      });
      assert.equal(r.status, 2);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^arun chat --background needs the Responses API \(POST \/v1\/responses\), which this server does not offer yet$/m);
    } finally { old.close(); }
  });

  test('an unreachable server exits 3', () => {
    const r = chat(null, ['-m', 'qwen', '--server', 'http://127.0.0.1:1', 'hi']);
    assert.equal(r.status, 3);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, UNREACHABLE);
    const env = chat(null, ['-m', 'qwen', 'hi'], { env: { ARUN_URL: 'http://127.0.0.1:1' } });
    assert.equal(env.status, 3);
    assert.match(env.stderr, UNREACHABLE);
  });

  test('usage errors exit 2 without contacting a server', () => {
    const env = { ARUN_URL: 'http://127.0.0.1:1' };
    for (const [args, why] of [
      [['hi'], /which model\? give it with -m MODEL/],
      [['-m'], /-m needs a value/],
      [['-m', 'qwen', '--max-tokens', 'x', 'hi'], /--max-tokens needs a whole number/],
      [['-m', 'qwen', '--max-tokens', '0', 'hi'], /--max-tokens needs a whole number/],
      [['-m', 'qwen', '--temperature', '3', 'hi'], /--temperature needs a number from 0 to 2/],
      [['-m', 'qwen', '--frobnicate', 'hi'], /unknown option: --frobnicate/],
      [['-m', 'qwen', '--server', 'ftp://x', 'hi'], /must start with http/],
    ]) {
      const r = chat(null, args, { env, input: '' });
      assert.equal(r.status, 2, `arun chat ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, why);
      assert.equal(r.stdout, '');
    }
    const help = chat(null, ['--help']);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /^usage: arun chat -m MODEL/);
  });
});
