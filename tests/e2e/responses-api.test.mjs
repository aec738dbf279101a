// The Responses API's less travelled paths, through HTTP and the openai SDK: item_reference
// input items (what the Vercel AI SDK sends for earlier assistant turns), run status changes on
// /v1/events, previous_response_id giving the engine the earlier turns, streamed function tool
// calls, a failed or cancelled run's open items, a plain POST whose client leaves, and hostile
// input for every field of POST /v1/responses.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Arun, MOCK_BIN, waitFor } from './lib/arun.mjs';

const config = (extra = '') => `engines:\n  qwen:\n    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME} ${extra}"\n`;
const client = (arun) => new OpenAI({ baseURL: `${arun.url}/v1`, apiKey: 'none', maxRetries: 0 });

async function mockStats(arun) {
  const e = await (await fetch(`${arun.url}/v1/engines/qwen`)).json();
  return (await fetch(`http://127.0.0.1:${e.port}/mock/stats`)).json();
}

const post = (arun, body, headers = {}) => fetch(`${arun.url}/v1/responses`, {
  method: 'POST', headers: { 'content-type': 'application/json', ...headers },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

// An error answer in the OpenAI shape: {error: {message, type, param, code}}.
async function assertOpenAIError(res, status, param) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  const body = JSON.parse(text);
  assert.equal(typeof body.error.message, 'string', text);
  assert.ok(body.error.message.length > 0, text);
  assert.ok('type' in body.error && 'param' in body.error && 'code' in body.error, text);
  if (param !== undefined) assert.equal(body.error.param, param, text);
  return body.error;
}

describe('item_reference input items', () => {
  test('a reference to a stored answer gives the engine that answer in its place; it is stored resolved', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const oa = client(arun);
      const first = await oa.responses.create({ model: 'qwen', input: 'first question' });
      const answer = first.output[0];
      assert.equal(answer.type, 'message');
      const second = await oa.responses.create({ model: 'qwen', input: [
        { role: 'user', content: 'first question' },
        { type: 'item_reference', id: answer.id },
        { role: 'user', content: 'second question' },
      ] });
      assert.equal(second.status, 'completed');
      const msgs = (await mockStats(arun)).last_request_body.messages;
      assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'user']);
      assert.equal(msgs[1].content, first.output_text);
      assert.equal(msgs[2].content, 'second question');
      // input_items lists the item itself, not the reference.
      const items = await oa.responses.inputItems.list(second.id, { order: 'asc' });
      assert.deepEqual(items.data.map((i) => i.type), ['message', 'message', 'message']);
      assert.equal(items.data[1].id, answer.id);
      assert.equal(items.data[1].role, 'assistant');
    } finally { await arun.cleanup(); }
  });

  test('an unknown reference is a 400 naming input[i].id; one to an earlier turn of previous_response_id is not sent twice', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const oa = client(arun);
      const bad = await post(arun, { model: 'qwen', input: [{ role: 'user', content: 'x' }, { type: 'item_reference', id: 'msg_nothing_here' }] });
      const err = await assertOpenAIError(bad, 400, 'input[1].id');
      assert.match(err.message, /msg_nothing_here/);
      // Another tenant's or a deleted response's items are as absent.
      const first = await oa.responses.create({ model: 'qwen', input: 'hello' });
      const gone = await oa.responses.create({ model: 'qwen', input: 'bye' });
      await oa.responses.delete(gone.id);
      await assertOpenAIError(await post(arun, { model: 'qwen', input: [{ type: 'item_reference', id: gone.output[0].id }] }), 400, 'input[0].id');
      const next = await oa.responses.create({ model: 'qwen', previous_response_id: first.id, input: [
        { type: 'item_reference', id: first.output[0].id },
        { role: 'user', content: 'more' },
      ] });
      assert.equal(next.status, 'completed');
      const msgs = (await mockStats(arun)).last_request_body.messages;
      assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'user']);
      assert.deepEqual(msgs.map((m) => m.content), ['hello', first.output_text, 'more']);
    } finally { await arun.cleanup(); }
  });
});

describe('a run that ends before its answer', () => {
  test('an engine that dies mid-stream: the open items get their done events (incomplete) before response.failed', async () => {
    const arun = await new Arun({ config: config('--crash-after-tokens 5 --tokens-per-s 200 --ignore-eos --max-tokens 50') + '    restart: {policy: never}\n' }).start();
    try {
      const oa = client(arun);
      const events = [];
      const stream = await oa.responses.create({ model: 'qwen', input: 'a long story', stream: true });
      for await (const e of stream) events.push(e);
      const types = events.map((e) => e.type);
      assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.failed'], types.join(' '));
      assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
      const deltas = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
      assert.equal(events.at(-4).text, deltas);
      assert.equal(events.at(-3).part.text, deltas);
      assert.equal(events.at(-2).item.status, 'incomplete');
      const failed = events.at(-1).response;
      assert.equal(failed.status, 'failed');
      assert.equal(failed.output[0].status, 'incomplete');
      assert.equal(failed.output[0].content[0].text, deltas);
      const got = await oa.responses.retrieve(failed.id);
      assert.equal(got.status, 'failed');
      assert.equal(got.output[0].status, 'incomplete');
    } finally { await arun.cleanup(); }
  });

  test('a cancelled background run: its stream ends with the open items done (incomplete); the Response shows them so', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 20 --ignore-eos --max-tokens 400') }).start();
    try {
      const oa = client(arun);
      const r = await oa.responses.create({ model: 'qwen', input: 'go on and on', background: true });
      const seen = [];
      const done = (async () => { for await (const e of await oa.responses.retrieve(r.id, { stream: true })) seen.push(e); })();
      await waitFor(() => seen.some((e) => e.type === 'response.output_text.delta'), { timeoutMs: 15000, what: 'a delta' });
      assert.equal((await oa.responses.cancel(r.id)).status, 'cancelled');
      await done;
      assert.deepEqual(seen.slice(-3).map((e) => e.type), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done']);
      assert.equal(seen.at(-1).item.status, 'incomplete');
      const got = await oa.responses.retrieve(r.id);
      assert.equal(got.status, 'cancelled');
      assert.equal(got.output.length, 1);
      assert.equal(got.output[0].status, 'incomplete');
      assert.equal(got.output[0].content[0].text, seen.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join(''));
    } finally { await arun.cleanup(); }
  });
});

describe('a plain POST whose client leaves', () => {
  test('the run is cancelled and the engine slot frees', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 20 --ignore-eos --max-tokens 400') }).start();
    try {
      const ac = new AbortController();
      const pending = post(arun, { model: 'qwen', input: 'a long answer' }, {}).catch(() => 'aborted');
      // post() has no signal: use fetch directly for the one we abort.
      const left = fetch(`${arun.url}/v1/responses`, { method: 'POST', body: JSON.stringify({ model: 'qwen', input: 'another long answer' }), signal: ac.signal }).catch(() => 'aborted');
      await waitFor(async () => (await mockStats(arun)).concurrency === 2, { timeoutMs: 15000, what: 'both runs at the engine' });
      ac.abort();
      assert.equal(await left, 'aborted');
      await waitFor(async () => (await mockStats(arun)).concurrency === 1, { timeoutMs: 10000, what: 'the engine to see the disconnect' });
      const list = await (await fetch(`${arun.url}/v1/responses?limit=10`)).json();
      const statuses = list.data.map((r) => r.status).sort();
      assert.deepEqual(statuses, ['cancelled', 'in_progress']);
      const line = arun.logLines().find((l) => /left before response resp_\w+ ended; cancelled/.test(l.msg || ''));
      assert.ok(line, 'a log line says so');
      assert.equal(line.level, 'info');
      // The other client is unaffected: its run goes on (cut short here by stopping arun).
      assert.equal((await mockStats(arun)).concurrency, 1);
      void pending;
    } finally { await arun.cleanup(); }
  });
});
