// The Responses API's less travelled paths, through HTTP and the openai SDK: item_reference
// input items (what the Vercel AI SDK sends for earlier assistant turns), run status changes on
// /v1/events, previous_response_id giving the engine the earlier turns, streamed function tool
// calls, a failed or cancelled run's open items, a plain POST whose client leaves, and hostile
// input for every field of POST /v1/responses.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import OpenAI from 'openai';
import { Arun, MOCK_BIN, waitFor, watchEvents } from './lib/arun.mjs';

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
      const line = await waitFor(() => arun.logLines().find((l) => /left before response resp_\w+ ended; cancelled/.test(l.msg || '')), { what: 'a log line saying so' });
      assert.equal(line.level, 'info');
      // The other client is unaffected: its run goes on (cut short here by stopping arun).
      assert.equal((await mockStats(arun)).concurrency, 1);
      void pending;
    } finally { await arun.cleanup(); }
  });
});

describe('runs on /v1/events and previous_response_id', () => {
  test('/v1/events carries a run\'s status changes: queued, in_progress, completed (and cancelled)', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 100') }).start();
    const w = await watchEvents(arun);
    try {
      const oa = client(arun);
      const r = await oa.responses.create({ model: 'qwen', input: 'hello', background: true });
      const statuses = (id) => w.seen.filter((e) => e.type === 'run.status' && e.data.id === id).map((e) => e.data.status);
      await waitFor(() => statuses(r.id).includes('completed'), { timeoutMs: 15000, what: 'the run to complete on /v1/events' });
      assert.deepEqual(statuses(r.id), ['queued', 'in_progress', 'completed']);
      const ev = w.seen.find((e) => e.type === 'run.status' && e.data.id === r.id);
      assert.equal(ev.data.model, 'qwen');
      assert.equal(ev.data.background, true);
      const fg = await oa.responses.create({ model: 'qwen', input: 'hello' });
      await waitFor(() => statuses(fg.id).includes('completed'), { what: 'the foreground run on /v1/events' });
      assert.deepEqual(statuses(fg.id), ['queued', 'in_progress', 'completed']);
      const metrics = await (await fetch(`${arun.url}/metrics`)).text();
      assert.match(metrics, /^arun_runs\{status="queued"\} 2$/m);
      assert.match(metrics, /^arun_runs\{status="completed"\} 2$/m);
    } finally { await w.close(); await arun.cleanup(); }
  });

  test('previous_response_id gives the engine every earlier turn, oldest first, and only this turn\'s instructions', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const oa = client(arun);
      const r1 = await oa.responses.create({ model: 'qwen', input: 'turn one', instructions: 'old rules' });
      const r2 = await oa.responses.create({ model: 'qwen', input: 'turn two', previous_response_id: r1.id });
      const r3 = await oa.responses.create({ model: 'qwen', input: 'turn three', previous_response_id: r2.id, instructions: 'new rules' });
      assert.equal(r3.previous_response_id, r2.id);
      const msgs = (await mockStats(arun)).last_request_body.messages;
      assert.deepEqual(msgs.map((m) => [m.role, m.content]), [
        ['system', 'new rules'],
        ['user', 'turn one'], ['assistant', r1.output_text],
        ['user', 'turn two'], ['assistant', r2.output_text],
        ['user', 'turn three'],
      ]);
      // A previous response that does not exist (or was deleted) is a 404 naming the field.
      await oa.responses.delete(r1.id);
      await assertOpenAIError(await post(arun, { model: 'qwen', input: 'x', previous_response_id: r1.id }), 404, 'previous_response_id');
    } finally { await arun.cleanup(); }
  });
});

describe('hostile input to POST /v1/responses', () => {
  const M = { model: 'qwen', input: 'hi' };
  // Each field with values of the wrong type or out of range: a 400 naming the field (or a
  // field under it), never a 5xx.
  const wrong = {
    model: [1, true, [], {}, '', null],
    input: [1, true, {}, [], [1], ['hi'], [{}], [{ type: 'nonsense' }], [{ type: 'web_search_call', id: 'ws_1' }],
      [{ type: 'reasoning', summary: [] }], [{ role: 'user' }], [{ role: 'user', content: 5 }], [{ role: 'tool', content: 'x' }],
      [{ role: 'user', content: [{ type: 'input_text' }] }], [{ role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }],
      [{ type: 'function_call_output', output: 'x' }], [{ type: 'function_call', call_id: 'c' }], [{ type: 'item_reference' }]],
    instructions: [1, true, [], {}],
    previous_response_id: [1, true, [], {}, ''],
    conversation: [1, true, [], { id: 5 }, { nope: 'x' }],
    background: [1, 'yes', [], {}],
    stream: [1, 'yes', [], {}],
    store: [1, 'no', [], {}],
    metadata: [1, 'x', [], { k: 1 }, { k: null }, Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])),
      { ['k'.repeat(65)]: 'v' }, { k: 'v'.repeat(513) }],
    max_output_tokens: ['1', 1.5, -1, 0, 15, true, [], 1e300],
    temperature: ['1', -0.1, 2.1, true, [], {}],
    top_p: ['1', -0.1, 1.1, true, []],
    tools: [1, 'x', {}, [1], [{}], [{ type: 'function' }], [{ type: 'function', name: 'a b' }], [{ type: 'web_search' }],
      [{ type: 'function', name: 'f', parameters: 5 }]],
    tool_choice: [1, 'sometimes', [], { type: 'function' }, { type: 'nope', name: 'f' }],
    parallel_tool_calls: [1, 'yes', [], {}],
    truncation: [1, 'sometimes'],
    n: [2],
    nonsense_field: [1],
  };
  test('wrong values in every field: a 400 in the OpenAI shape naming it; the server keeps serving', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      for (const [field, values] of Object.entries(wrong)) {
        for (const v of values) {
          const res = await post(arun, { ...M, [field]: v });
          const what = `${field}: ${JSON.stringify(v).slice(0, 80)}`;
          assert.ok(res.status < 500, `${what}: ${res.status}`);
          const err = await assertOpenAIError(res, 400);
          assert.ok(typeof err.param === 'string' && err.param.split(/[.[]/)[0] === field, `${what}: param ${err.param}: ${err.message}`);
        }
      }
      // Combinations refused by rule.
      await assertOpenAIError(await post(arun, { ...M, background: true, store: false }), 400);
      await assertOpenAIError(await post(arun, { ...M, previous_response_id: 'resp_x', conversation: 'conv_x' }), 400);
      // Ids of objects that do not exist: 404 naming the field.
      await assertOpenAIError(await post(arun, { ...M, previous_response_id: 'resp_nope' }), 404, 'previous_response_id');
      await assertOpenAIError(await post(arun, { ...M, conversation: 'conv_nope' }), 404, 'conversation');
      await assertOpenAIError(await post(arun, { ...M, conversation: { id: 'conv_nope' } }), 404, 'conversation');
      await assertOpenAIError(await post(arun, { ...M, model: 'no-such-model' }), 404, 'model');
      // Idempotency-Key: empty or past 255 bytes is a 400; a long one works twice.
      await assertOpenAIError(await post(arun, M, { 'idempotency-key': 'k'.repeat(256) }), 400, 'Idempotency-Key');
      const long = 'k'.repeat(255);
      const a = await post(arun, M, { 'idempotency-key': long });
      const b = await post(arun, M, { 'idempotency-key': long });
      assert.equal(a.status, 200);
      assert.equal(b.status, 200);
      assert.equal((await a.json()).id, (await b.json()).id);
      const oa = client(arun);
      assert.equal((await oa.responses.create(M)).status, 'completed');
    } finally { await arun.cleanup(); }
  });

  test('bodies that are not a request: broken JSON, invalid UTF-8, not an object, empty, 9 MB; hostile ids and queries on the other routes', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      for (const body of ['{', '{"model":"qwen",', 'null', '[]', '"hi"', '5', '', '{"model":"qwen","input":"hi"}x', '\u0000']) {
        const res = await post(arun, body);
        assert.ok(res.status >= 400 && res.status < 500, `${JSON.stringify(body)}: ${res.status}`);
        await assertOpenAIError(res, res.status);
      }
      const bad = Buffer.concat([Buffer.from('{"model":"qwen","input":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')]);
      await assertOpenAIError(await fetch(`${arun.url}/v1/responses`, { method: 'POST', body: bad }), 400);
      const lone = '{"model":"qwen","input":"\\ud800"}'; // an escaped lone surrogate
      const r = await post(arun, lone);
      assert.ok(r.status < 500, `lone surrogate: ${r.status}`);
      await r.arrayBuffer();
      // A 9 MB body (limits.max_body_bytes is 8 MiB) is a 413 from its Content-Length, before
      // the body is read: a little of it is sent, as in server.test.mjs, so the answer is never
      // lost to a write the server refused (EPIPE before the response is read would hang here).
      const big = await new Promise((resolve, reject) => {
        const req = http.request(`${arun.url}/v1/responses`, { method: 'POST', headers: { 'content-length': String(9 * 1024 * 1024) } }, (resp) => {
          let body = '';
          resp.on('data', (d) => { body += d; });
          resp.on('end', () => resolve({ status: resp.statusCode, body }));
        });
        req.on('error', (e) => { if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e); });
        req.write(`{"model":"qwen","input":"${'x'.repeat(64 * 1024)}`);
      });
      assert.equal(big.status, 413);
      assert.equal(typeof JSON.parse(big.body).error.message, 'string');
      // The other routes with ids and queries no client should send.
      const longId = 'resp_' + 'a'.repeat(10000);
      for (const [method, path] of [['GET', `/v1/responses/${longId}`], ['GET', '/v1/responses/resp_nope'], ['DELETE', '/v1/responses/resp_nope'],
        ['POST', '/v1/responses/resp_nope/cancel'], ['GET', '/v1/responses/resp_nope/input_items'], ['GET', '/v1/responses/%00%ff'],
        ['GET', '/v1/responses/resp_nope?stream=true'], ['GET', `/v1/responses/${encodeURIComponent('é"\n')}`]]) {
        const res = await fetch(`${arun.url}${path}`, { method });
        assert.ok(res.status === 404 || res.status === 400 || res.status === 414, `${method} ${path.slice(0, 60)}: ${res.status}`);
        if (res.status !== 414) await assertOpenAIError(res, res.status);
        else await res.arrayBuffer();
      }
      const oa = client(arun);
      const ok = await oa.responses.create({ model: 'qwen', input: 'hi' });
      for (const q of ['limit=0', 'limit=101', 'limit=abc', 'limit=-1', 'order=sideways', 'after=msg_nope']) {
        const res = await fetch(`${arun.url}/v1/responses/${ok.id}/input_items?${q}`);
        assert.ok(res.status === 400 || res.status === 404, `${q}: ${res.status}`);
        await assertOpenAIError(res, res.status);
      }
      for (const q of ['status=%ff%fe', 'status=nope', 'limit=%ff', 'after=%ff']) {
        const res = await fetch(`${arun.url}/v1/responses?${q}`);
        assert.ok(res.status === 400 || res.status === 404, `${q}: ${res.status}`);
        await assertOpenAIError(res, res.status);
      }
      for (const q of ['starting_after=%ff', 'starting_after=-1', 'starting_after=abc', 'starting_after=1e3', 'starting_after=99999999999999999999', 'starting_after=1000']) {
        const res = await fetch(`${arun.url}/v1/responses/${ok.id}?stream=true&${q}`);
        await assertOpenAIError(res, 400, 'starting_after');
      }
      assert.equal((await oa.responses.create({ model: 'qwen', input: 'still here' })).status, 'completed');
    } finally { await arun.cleanup(); }
  });
});
