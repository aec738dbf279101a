// arun with real llama.cpp engines: llama-server (LLAMA_SERVER_BIN, built by
// scripts/llama-server.sh) on models that tests/models/make_gguf.py writes for this run. A mock
// agrees with what its author believes; these tests hold arun to what a real engine does: a
// loading phase with 503s, its own SSE framing and usage, slots that a disconnect must free, a
// process that outlives arun, load failures in its own words, real memory.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Arun, ROOT, waitFor, tempDir, freePort, watchEvents } from './lib/arun.mjs';

const LLAMA = process.env.LLAMA_SERVER_BIN;
const skip = LLAMA ? false
  : 'LLAMA_SERVER_BIN is unset (make test sets it from scripts/llama-server.sh, which builds llama-server)';

const client = (arun) => new OpenAI({ baseURL: `${arun.url}/v1`, apiKey: 'none', maxRetries: 0 });
const api = async (arun, path, opts) => {
  const r = await fetch(`${arun.url}${path}`, opts);
  const text = await r.text();
  try { return { status: r.status, body: JSON.parse(text) }; } catch { return { status: r.status, body: text }; }
};
const engine = async (arun, name) => (await api(arun, `/v1/engines/${name}`)).body;
const waitState = (arun, name, state, opts = {}) => waitFor(async () => {
  const e = await engine(arun, name);
  return e.state === state ? e : false;
}, { what: `${name} to be ${state}`, timeoutMs: 30000, ...opts });

function alive(pid) {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch { return false; }
}

// Collects the engine.state events of /v1/events from the time it resolves (the subscription
// is in place): seen is [{engine, state, reason}].
async function watchStates(arun) {
  const w = await watchEvents(arun, (ev) => ev.type === 'engine.state');
  return { get seen() { return w.seen.map((ev) => ev.data); }, close: w.close };
}

const models = {};
const MODEL_VARIANTS = { tiny: ['--tiny'], stops: ['--tiny', '--stops'], big: ['--big'], corrupt: ['--tiny', '--corrupt'] };

// An engine entry: llama-server on one thread (faster than two on this project's 2-core
// machines), loopback only, no web UI; extra flags and keys as given.
const llama = (name, model, { flags = '', keys = '' } = {}) =>
  `  ${name}:\n    cmd: "${LLAMA} -t 1 --host 127.0.0.1 --port \${PORT} --no-webui -m ${models[model]} ${flags}"\n` +
  `    restart: {policy: never}\n${keys}`;

describe('a real llama-server', { skip }, () => {
  let dir;
  before(() => {
    assert.ok(existsSync(LLAMA), `LLAMA_SERVER_BIN=${LLAMA} does not exist`);
    dir = tempDir('arun-gguf-');
    for (const [name, args] of Object.entries(MODEL_VARIANTS)) {
      models[name] = join(dir, `${name}.gguf`);
      const r = spawnSync('python3', [join(ROOT, 'tests/models/make_gguf.py'), ...args, models[name]], { encoding: 'utf8' });
      assert.equal(r.status, 0, `make_gguf.py ${args.join(' ')}: ${r.stderr}`);
    }
  });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  test('a request for a stopped engine starts it, waits through its 503 loading phase and is answered; so is one sent while it loads', async () => {
    const arun = await new Arun({ config: `engines:\n${llama('big', 'big')}` }).start();
    const states = await watchStates(arun);
    try {
      const oa = client(arun);
      const first = oa.chat.completions.create({ model: 'big', messages: [{ role: 'user', content: 'hello' }], max_tokens: 4 });
      await waitFor(() => states.seen.some((s) => s.engine === 'big' && s.state === 'loading'),
        { timeoutMs: 30000, what: 'the engine to be seen loading' });
      const second = oa.chat.completions.create({ model: 'big', messages: [{ role: 'user', content: 'again' }], max_tokens: 4 });
      for (const r of await Promise.all([first, second])) {
        assert.equal(r.choices[0].finish_reason, 'length');
        assert.equal(r.usage.completion_tokens, 4);
      }
      assert.deepEqual(states.seen.filter((s) => s.engine === 'big').map((s) => s.state), ['starting', 'loading', 'ready']);
      assert.ok((await engine(arun, 'big')).last_load_ms > 0);
      // The 180 MB model is mapped and read: resident memory (sampled once a second) shows it.
      await waitFor(async () => (await engine(arun, 'big')).memory.rss_mb > 150, { what: 'rss_mb over 150' });
    } finally { await states.close(); await arun.cleanup(); }
  });

  test('chat through the openai SDK, plain and streaming, gives the same greedy answer in valid UTF-8 with usage; a model that ends its turn finishes with stop', async () => {
    const arun = await new Arun({ config: `engines:\n${llama('tiny', 'tiny')}${llama('stops', 'stops')}` }).start();
    try {
      const oa = client(arun);
      const ask = { model: 'tiny', messages: [{ role: 'user', content: 'hello world' }], max_tokens: 12, temperature: 0 };
      const plain = await oa.chat.completions.create(ask);
      const text = plain.choices[0].message.content;
      assert.ok(text.length > 0);
      assert.ok(!text.includes('\uFFFD'), `not valid UTF-8: ${JSON.stringify(text)}`);
      assert.equal(plain.choices[0].finish_reason, 'length');
      assert.equal(plain.usage.completion_tokens, 12);
      assert.ok(plain.usage.prompt_tokens > 0);
      const stream = await oa.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } });
      let streamed = '', finish, usage, chunks = 0;
      for await (const c of stream) {
        if (chunks === 0) assert.equal(c.choices[0].delta.role, 'assistant', 'the first chunk names the role');
        streamed += c.choices[0]?.delta?.content ?? '';
        finish ??= c.choices[0]?.finish_reason ?? undefined;
        if (c.usage) usage = c.usage;
        chunks++;
      }
      assert.equal(streamed, text, 'the stream carries every token of the plain answer, in order');
      assert.ok(chunks > 2);
      assert.equal(finish, 'length');
      assert.equal(usage.completion_tokens, 12);
      // --stops lets the end-of-turn token through: the answer ends by itself.
      const stops = await oa.chat.completions.create({ model: 'stops', messages: [{ role: 'user', content: 'hi' }], max_tokens: 200 });
      assert.equal(stops.choices[0].finish_reason, 'stop');
      assert.ok(stops.usage.completion_tokens < 200);
      // llama-server validates requests itself and answers 400 with a numeric "code": the
      // client gets the OpenAI shape, its code a string. (An assistant's refusal part is valid
      // OpenAI, so it passes arun's own validation; llama-server reads only text parts.)
      const refused = { role: 'assistant', content: [{ type: 'refusal', refusal: 'no' }] };
      await assert.rejects(oa.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }, refused, { role: 'user', content: 'why?' }] }),
        (e) => e.status === 400 && e.code === 'upstream_error' && e.type === 'invalid_request_error'
          && /unsupported content/i.test(e.message));
      // What the OpenAI API types is checked before the engine: arun's 400 names the field.
      await assert.rejects(oa.chat.completions.create({ model: 'tiny', messages: 'nope' }),
        (e) => e.status === 400 && e.code === 'invalid_type' && e.param === 'messages');
    } finally { await arun.cleanup(); }
  });

  test('a client that cancels a stream frees the engine\'s only slot: the next request is answered', async () => {
    // One slot (-np 1) and max_concurrency 1: if the cancelled generation went on, the next
    // request would wait behind ~8000 tokens of it (a minute on the big model).
    const arun = await new Arun({ config: `engines:\n${llama('one', 'big', { flags: '-np 1 -c 8192', keys: '    max_concurrency: 1\n' })}` }).start();
    try {
      const oa = client(arun);
      const ac = new AbortController();
      const stream = await oa.chat.completions.create({ model: 'one', messages: [{ role: 'user', content: 'go on' }], max_tokens: 8000, stream: true }, { signal: ac.signal });
      for await (const c of stream) if (c.choices[0]?.delta?.content) break; // one token, then leave
      ac.abort();
      const e = await engine(arun, 'one');
      await waitFor(async () => {
        const slots = await (await fetch(`http://127.0.0.1:${e.port}/slots`)).json();
        return slots.every((s) => !s.is_processing);
      }, { timeoutMs: 10000, what: 'llama-server to free the slot' });
      const next = await oa.chat.completions.create({ model: 'one', messages: [{ role: 'user', content: 'next' }], max_tokens: 2 });
      assert.equal(next.usage.completion_tokens, 2);
      assert.equal((await engine(arun, 'one')).in_flight, 0);
    } finally { await arun.cleanup(); }
  });

  test('kill -9 of arun leaves llama-server running; the next arun adopts the same pid and serves through it', async () => {
    const port = await freePort();
    const config = `engines:\n${llama('keep', 'tiny', { keys: `    port: ${port}\n    start: always\n` })}`;
    const first = await new Arun({ config }).start();
    let pid;
    try {
      pid = (await waitState(first, 'keep', 'ready')).pid;
      await first.stop('SIGKILL');
      assert.ok(alive(pid), 'llama-server survived the crash of arun');
      const second = await new Arun({ dir: first.dir, config }).start();
      try {
        const e = await waitState(second, 'keep', 'ready');
        assert.equal(e.pid, pid, 'adopted, not started again');
        assert.match((await api(second, '/v1/engines/keep/logs')).body, /adopted pid/);
        const r = await client(second).chat.completions.create({ model: 'keep', messages: [{ role: 'user', content: 'x' }], max_tokens: 3 });
        assert.equal(r.usage.completion_tokens, 3);
        assert.equal((await second.stop('SIGTERM')).code, 0);
        await waitFor(() => !alive(pid), { what: 'llama-server to stop with arun' });
      } finally { await second.cleanup(); }
    } finally {
      if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(first.dir, { recursive: true, force: true });
    }
  });

  test('two llama-servers in one exclusive group swap: a request for the other stops the first, then is answered', async () => {
    const keys = '    group: g\n';
    const arun = await new Arun({ config: `engines:\n${llama('a', 'tiny', { keys })}${llama('b', 'tiny', { keys })}` }).start();
    const states = await watchStates(arun);
    try {
      const oa = client(arun);
      const ask = (model) => oa.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], max_tokens: 3 });
      await ask('a');
      const pidA = (await engine(arun, 'a')).pid;
      const rb = await ask('b');
      assert.ok(rb.choices[0].message.content.length > 0);
      const a = await engine(arun, 'a');
      assert.equal(a.state, 'stopped');
      assert.match(a.reason, /stopped for b \(exclusive group g\)/);
      assert.ok(!alive(pidA), 'a\'s llama-server is gone');
      await ask('a');
      assert.equal((await engine(arun, 'b')).state, 'stopped');
      // Replayed from the events: the two never ran at the same time.
      const running = new Set();
      for (const s of states.seen) {
        if (['starting', 'loading', 'ready', 'unhealthy', 'stopping'].includes(s.state)) running.add(s.engine);
        else running.delete(s.engine);
        assert.ok(running.size < 2, `a and b ran at once: ${JSON.stringify(states.seen)}`);
      }
    } finally { await states.close(); await arun.cleanup(); }
  });

  test('a truncated model fails the engine with llama-server\'s own reason, and the waiting request gets it', async () => {
    const arun = await new Arun({ config: `engines:\n${llama('bad', 'corrupt')}` }).start();
    try {
      const r = await api(arun, '/v1/chat/completions', { method: 'POST', body: JSON.stringify({ model: 'bad', messages: [{ role: 'user', content: 'x' }] }) });
      const e = await waitState(arun, 'bad', 'failed');
      // llama-server logs from a thread and may lose its last lines at exit (llama.cpp's
      // common/log.cpp says so): if this fails, the log shows whether the line was ever written.
      const log = `\nthe engine's log:\n${(await api(arun, '/v1/engines/bad/logs?tail=40')).body}`;
      assert.equal(r.status, 503, JSON.stringify(r.body) + log);
      assert.match(r.body.error.message, /tensor 'token_embd.weight' data is not within the file bounds/, log);
      assert.match(e.reason, /^exited with code 1 after [\d.]+ s: .*tensor 'token_embd.weight' data is not within the file bounds/, log);
    } finally { await arun.cleanup(); }
  });

  test('health.probe: completion keeps a working llama-server ready, and its probes reach the model', async () => {
    const arun = await new Arun({ config: `engines:\n${llama('deep', 'tiny', { flags: '--metrics', keys: '    start: always\n    health: {probe: completion, interval_ms: 100}\n' })}` }).start();
    try {
      const e = await waitState(arun, 'deep', 'ready');
      const predicted = async () => Number(/^llamacpp:tokens_predicted_total (\d+)/m.exec(
        await (await fetch(`http://127.0.0.1:${e.port}/metrics`)).text())[1]);
      // No request was sent: the tokens llama-server predicted are the probes' one-token answers.
      await waitFor(async () => (await predicted()) >= 3, { timeoutMs: 10000, what: 'three completion probes' });
      const now = await engine(arun, 'deep');
      assert.equal(now.state, 'ready', now.reason);
    } finally { await arun.cleanup(); }
  });

  test('health.probe: completion does not call a busy llama-server unhealthy when its only slot is taken by a long answer', async () => {
    // The probe's one-token completion would wait behind the answer for the slot (-np 1) and
    // time out; the answer's own tokens show the engine works.
    const arun = await new Arun({ config: `engines:\n${llama('busy', 'big', { flags: '-np 1 -c 8192', keys: '    start: always\n    health: {probe: completion, interval_ms: 100, timeout_ms: 300, failures: 2}\n' })}` }).start();
    let states;
    try {
      await waitState(arun, 'busy', 'ready');
      states = await watchStates(arun);
      const stream = await client(arun).chat.completions.create({ model: 'busy', messages: [{ role: 'user', content: 'go on' }], max_tokens: 250, stream: true });
      let tokens = 0;
      for await (const c of stream) if (c.choices[0]?.delta?.content) tokens++;
      assert.ok(tokens > 200, `${tokens} tokens`);
      assert.deepEqual(states.seen.filter((s) => s.engine === 'busy' && s.state !== 'ready'), [],
        'the engine stayed ready while it answered');
    } finally { await states?.close(); await arun.cleanup(); }
  });

  test('a response interrupted by kill -9 of arun mid-generation continues on the adopted llama-server: the stored prefix plus the continuation, its repeated prefix stripped', async () => {
    // Greedy decoding (temperature 0) makes what streams before the kill the engine's greedy
    // answer. The big model makes ~60 tokens/s here, so the kill lands mid-answer. llama-server's
    // continuation is not bit-identical to the uninterrupted decode (it evaluates the prefix as
    // one batch, whose float sums differ from token-by-token decoding, and near-ties flip later
    // on), so the text is held to what continuation promises: the prefix exactly once, then
    // what llama-server went on with from it.
    const port = await freePort();
    const config = `engines:\n${llama('cont', 'big', { keys: `    port: ${port}\n    start: always\n    continuation: chat-prefix\n` })}`;
    let arun = await new Arun({ config }).start();
    const dir = arun.dir;
    let pid;
    try {
      pid = (await waitState(arun, 'cont', 'ready')).pid;
      const input = 'tell me a long story';
      const direct = async (messages, maxTokens, stream = false) => {
        const r = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
          method: 'POST', body: JSON.stringify({ messages, max_tokens: maxTokens, temperature: 0, stream }),
        });
        return stream ? r.text() : (await r.json());
      };
      // The uninterrupted answer, long enough to cover the prefix and the continuation.
      const whole = await direct([{ role: 'user', content: input }], 60);
      const A = whole.choices[0].message.content;
      const res = await fetch(`${arun.url}/v1/responses`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'cont', input, background: true, stream: true, temperature: 0, max_output_tokens: 80 }),
      });
      assert.equal(res.status, 200);
      // Follow the stream; kill arun once 40 deltas came (past the answer's repetitive start).
      const seen = [];
      const dec = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of res.body) {
          buf += dec.decode(chunk, { stream: true });
          for (let i; (i = buf.indexOf('\n\n')) >= 0; buf = buf.slice(i + 2)) {
            const m = /^data: (.*)$/m.exec(buf.slice(0, i));
            if (m) seen.push(JSON.parse(m[1]));
          }
          if (seen.filter((e) => e.type === 'response.output_text.delta').length >= 40) {
            arun.proc.kill('SIGKILL');
            break;
          }
        }
      } catch { /* the kill cut it */ }
      await arun.exited;
      const id = seen[0].response.id;
      const text = (evs) => evs.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
      const before = text(seen);
      // The same greedy answer, at least at its start: llama-server reuses the direct request's
      // cached prompt for arun's, and a prompt read from the cache is not bit-identical to one
      // evaluated afresh, so a near-tie can flip a later token (seen under load).
      let common = 0;
      while (common < Math.min(A.length, before.length) && A[common] === before[common]) common++;
      assert.ok(common >= Math.min(before.length, 40),
        `what streamed before the kill is the greedy answer: ${JSON.stringify(before)} vs ${JSON.stringify(A)}`);
      assert.ok(alive(pid), 'llama-server survived the kill');

      arun = await new Arun({ dir, config }).start({ timeoutMs: 30000 });
      assert.equal((await waitState(arun, 'cont', 'ready')).pid, pid, 'adopted, not started again');
      const last = seen.at(-1).sequence_number;
      const after = [];
      for await (const e of await client(arun).responses.retrieve(id, { stream: true, starting_after: last })) after.push(e);
      const all = [...seen, ...after];
      assert.deepEqual(all.map((e) => e.sequence_number), all.map((_, i) => i), 'each event once, in order');
      const final = await client(arun).responses.retrieve(id);
      assert.equal(final.arun.continued_after_restart, true);
      assert.equal(final.status, 'incomplete', JSON.stringify(final.error));
      assert.equal(final.output.length, 1, 'one message: the continuation went on in the same item');
      const out = final.output_text;
      assert.equal(text(all), out, 'the deltas spell the final text');
      // The continuation: llama-server got the stored prefix (its prompt grew by it) and its
      // 80 new tokens follow it in the same item. The start of the answer (its first 40 tokens,
      // never repeated later in it) appears once: no second copy of the prefix from an echo
      // that was not stripped, no answer from scratch after it.
      assert.ok(out.startsWith(before), 'the prefix the client saw comes first');
      assert.equal(out.indexOf(before, 1), -1, `the prefix appears once in ${JSON.stringify(out)}`);
      assert.equal(final.usage.output_tokens, 80, 'the continuation\'s own tokens; the repeat is not counted');
      assert.ok(final.usage.input_tokens > whole.usage.prompt_tokens + 30,
        `the engine was given the prefix: ${final.usage.input_tokens} prompt tokens vs ${whole.usage.prompt_tokens} without it`);
      assert.ok(out.length > before.length + 80, `${out.length} characters after ${before.length}: the continuation went on`);
      // What arun strips: asked to continue a prefix, llama-server repeats it first.
      const raw = await direct([{ role: 'user', content: input }, { role: 'assistant', content: before }], 5, true);
      const first = raw.split('\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)).choices[0]?.delta?.content).find((c) => c);
      assert.ok(first.startsWith(before), `llama-server's first delta repeats the prefix: ${JSON.stringify(first.slice(0, 80))}`);
      assert.ok(first.length > before.length, 'and carries the first new token with it');
    } finally {
      await arun.cleanup();
      if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
