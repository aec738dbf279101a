// The Responses API as the official openai SDK drives it: create (plain, streaming, background),
// retrieve, and streams resumed at every sequence number, live and after the end, without a gap
// or a duplicate.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Arun, MOCK_BIN, waitFor } from './lib/arun.mjs';
import { mockStats } from './lib/mock.mjs';

const mock = (extra = '') => `"${MOCK_BIN} --port \${PORT} --model \${NAME} ${extra}"`;
const client = (arun) => new OpenAI({ baseURL: `${arun.url}/v1`, apiKey: 'none', maxRetries: 0 });
const config = (extra = '') => `engines:\n  qwen:\n    cmd: ${mock(extra)}\n`;

// Reads an SSE response body into [{event, id, data}] (data parsed).
async function readSse(res) {
  const text = await res.text();
  const out = [];
  for (const block of text.split('\n\n')) {
    if (!block.trim()) continue;
    const rec = {};
    for (const line of block.split('\n')) {
      const i = line.indexOf(': ');
      if (i > 0) rec[line.slice(0, i)] = line.slice(i + 2);
    }
    if (rec.data) out.push({ event: rec.event, id: Number(rec.id), data: JSON.parse(rec.data) });
  }
  return out;
}

function assertSequence(events, first) {
  events.forEach((e, i) => {
    assert.equal(e.data.sequence_number, first + i, `event ${i} of a stream starting at ${first}`);
    assert.equal(e.id, first + i);
    assert.equal(e.event, e.data.type);
  });
}

const text = (events) => events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');

describe('responses', () => {
  test('responses.create plain and streaming: same text, events in the order the SDK checks, numbered from 0', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const oa = client(arun);
      const plain = await oa.responses.create({ model: 'qwen', input: 'tell me a story', instructions: 'be brief' });
      assert.equal(plain.status, 'completed');
      assert.match(plain.id, /^resp_[0-9a-f]{32}$/);
      assert.ok(plain.output_text.length > 0);
      assert.ok(plain.usage.output_tokens > 0, JSON.stringify(plain.usage));
      assert.equal(plain.arun.engine, 'qwen');
      assert.equal(plain.arun.engine_model, 'qwen');
      const events = [];
      const stream = await oa.responses.create({ model: 'qwen', input: 'tell me a story', instructions: 'be brief', stream: true });
      for await (const e of stream) events.push(e);
      assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
      const types = events.map((e) => e.type);
      assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
      assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed']);
      assert.equal(text(events), plain.output_text);
      const done = events.at(-1).response;
      assert.equal(new Set(events.filter((e) => e.response).map((e) => e.response.id)).size, 1);
      // The SDK's stream helper checks the order of every event itself.
      const helper = oa.responses.stream({ model: 'qwen', input: 'tell me a story', instructions: 'be brief' });
      const final = await helper.finalResponse();
      assert.equal(final.output[0].content[0].text, plain.output_text);
      const got = await oa.responses.retrieve(done.id);
      assert.equal(got.status, 'completed');
      assert.equal(got.output_text, plain.output_text);
    } finally { await arun.cleanup(); }
  });

  test('background: answered queued at once, then retrieve polls it to completion', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 200') }).start();
    try {
      const oa = client(arun);
      const r = await oa.responses.create({ model: 'qwen', input: 'a long answer please', background: true });
      assert.equal(r.status, 'queued');
      assert.equal(r.background, true);
      const done = await waitFor(async () => {
        const g = await oa.responses.retrieve(r.id);
        return ['completed', 'failed'].includes(g.status) && g;
      }, { timeoutMs: 20000, what: 'the background response to complete' });
      assert.equal(done.status, 'completed');
      assert.ok(done.output_text.length > 0);
      assert.ok(done.arun.timings.total_ms >= 0);
    } finally { await arun.cleanup(); }
  });

  test('a stream resumed after every sequence number, live and after the end, sees each later event exactly once', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 100') }).start();
    try {
      const oa = client(arun);
      const r = await oa.responses.create({ model: 'qwen', input: 'resume me', background: true });
      const url = (n) => `${arun.url}/v1/responses/${r.id}?stream=true&starting_after=${n}`;
      // Follow the whole run; at each event seen, open a resume after it (the handover between
      // replay and live happens at every possible point).
      const full = await fetch(`${arun.url}/v1/responses/${r.id}?stream=true`);
      assert.equal(full.status, 200);
      const resumes = [];
      const reader = full.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      const all = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const id = Number(/^id: (\d+)$/m.exec(block)[1]);
          all.push(JSON.parse(/^data: (.*)$/m.exec(block)[1]));
          resumes.push(fetch(url(id)).then(readSse).then((ev) => ({ after: id, ev })));
          // Also with Last-Event-ID, as a browser's EventSource reconnects.
          if (id % 5 === 0) {
            resumes.push(fetch(`${arun.url}/v1/responses/${r.id}?stream=true`, { headers: { 'last-event-id': String(id) } })
              .then(readSse).then((ev) => ({ after: id, ev })));
          }
        }
      }
      const last = all.length - 1;
      assert.deepEqual(all.map((e) => e.sequence_number), all.map((_, i) => i));
      assert.equal(all.at(-1).type, 'response.completed');
      for (const { after, ev } of await Promise.all(resumes)) {
        assertSequence(ev, after + 1);
        assert.equal(ev.length, last - after, `resumed after ${after}: ${ev.length} events, expected ${last - after}`);
      }
      // Finished: replays from the store and closes, at every point.
      for (let n = 0; n <= last; n++) {
        const ev = await readSse(await fetch(url(n)));
        assertSequence(ev, n + 1);
        assert.equal(ev.length, last - n);
      }
      // The SDK: retrieve(id, {stream, starting_after}) and responses.stream({response_id, starting_after}).
      const mid = Math.floor(last / 2);
      const seen = [];
      for await (const e of await oa.responses.retrieve(r.id, { stream: true, starting_after: mid })) seen.push(e.sequence_number);
      assert.deepEqual(seen, Array.from({ length: last - mid }, (_, i) => mid + 1 + i));
      const viaHelper = [];
      const helper = oa.responses.stream({ response_id: r.id, starting_after: mid });
      for await (const e of helper) viaHelper.push(e.sequence_number);
      assert.deepEqual(viaHelper, seen);
      assert.equal(text(all), (await oa.responses.retrieve(r.id)).output_text);
    } finally { await arun.cleanup(); }
  });

  test('starting_after negative, not a number or past the end is a 400 in the OpenAI shape; unknown ids 404', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const oa = client(arun);
      const r = await oa.responses.create({ model: 'qwen', input: 'x' });
      for (const q of ['-1', 'abc', '1e3', '99999']) {
        const res = await fetch(`${arun.url}/v1/responses/${r.id}?stream=true&starting_after=${q}`);
        assert.equal(res.status, 400, q);
        const body = await res.json();
        assert.equal(body.error.param, 'starting_after');
        assert.equal(typeof body.error.message, 'string');
      }
      for (const path of ['/v1/responses/resp_nope', '/v1/responses/resp_nope?stream=true', '/v1/responses/resp_nope/input_items']) {
        const res = await fetch(`${arun.url}${path}`);
        assert.equal(res.status, 404, path);
        assert.equal(typeof (await res.json()).error.message, 'string');
      }
      const bad = await fetch(`${arun.url}/v1/responses`, { method: 'POST', body: JSON.stringify({ model: 'nobody', input: 'x' }) });
      assert.equal(bad.status, 404);
      assert.equal((await bad.json()).error.code, 'model_not_found');
      assert.equal((await fetch(`${arun.url}/healthz`)).status, 200);
    } finally { await arun.cleanup(); }
  });

  test('cancel during a stream: the run ends cancelled, its streams end after its last event, the engine sees the disconnect', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 20 --ignore-eos --max-tokens 400') }).start();
    try {
      const oa = client(arun);
      const r = await oa.responses.create({ model: 'qwen', input: 'go on and on', background: true });
      const seen = [];
      const streamDone = (async () => { for await (const e of await oa.responses.retrieve(r.id, { stream: true })) seen.push(e); })();
      await waitFor(() => seen.some((e) => e.type === 'response.output_text.delta'), { timeoutMs: 15000, what: 'a delta' });
      const engine = JSON.parse(await (await fetch(`${arun.url}/v1/engines/qwen`)).text());
      const mockUrl = `http://127.0.0.1:${engine.port}`;
      assert.equal((await mockStats({ url: mockUrl })).concurrency, 1);
      const c = await oa.responses.cancel(r.id);
      assert.equal(c.status, 'cancelled');
      await streamDone; // the live stream ends by itself
      assert.ok(!seen.some((e) => e.type === 'response.completed'));
      await waitFor(async () => (await mockStats({ url: mockUrl })).concurrency === 0, { what: 'the engine to see the disconnect' });
      // Idempotent on a finished run; a foreground run cannot be cancelled (400).
      assert.equal((await oa.responses.cancel(r.id)).status, 'cancelled');
      assert.equal((await oa.responses.retrieve(r.id)).status, 'cancelled');
      const fg = await oa.responses.create({ model: 'qwen', input: 'short', max_output_tokens: 16 });
      await assert.rejects(oa.responses.cancel(fg.id), (e) => e.status === 400);
      assert.equal(fg.status, 'incomplete');
      assert.equal(fg.incomplete_details.reason, 'max_output_tokens');
    } finally { await arun.cleanup(); }
  });

  test('delete, input_items and the listing', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const oa = client(arun);
      const r = await oa.responses.create({ model: 'qwen', input: [{ role: 'user', content: 'one' }, { role: 'user', content: 'two' }] });
      const items = await oa.responses.inputItems.list(r.id);
      assert.deepEqual(items.data.map((i) => i.content[0].text), ['two', 'one']); // desc by default
      const asc = await (await fetch(`${arun.url}/v1/responses/${r.id}/input_items?order=asc&limit=1`)).json();
      assert.equal(asc.data.length, 1);
      assert.equal(asc.has_more, true);
      assert.equal(asc.first_id, asc.data[0].id);
      const bad = await fetch(`${arun.url}/v1/responses/${r.id}/input_items?limit=0`);
      assert.equal(bad.status, 400);
      const list = await (await fetch(`${arun.url}/v1/responses?status=completed&limit=10`)).json();
      assert.ok(list.data.some((x) => x.id === r.id));
      assert.equal((await fetch(`${arun.url}/v1/responses?status=nope`)).status, 400);
      await oa.responses.delete(r.id);
      await assert.rejects(oa.responses.retrieve(r.id), (e) => e.status === 404);
      const again = await fetch(`${arun.url}/v1/responses/${r.id}`, { method: 'DELETE' });
      assert.equal(again.status, 404);
      const r2 = await oa.responses.create({ model: 'qwen', input: 'x' });
      const body = await (await fetch(`${arun.url}/v1/responses/${r2.id}`, { method: 'DELETE' })).json();
      assert.deepEqual(body, { id: r2.id, object: 'response.deleted', deleted: true });
    } finally { await arun.cleanup(); }
  });

  test('the same Idempotency-Key and body create one response; another body with it is a 409; store:false stores nothing', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const post = (body, key) => fetch(`${arun.url}/v1/responses`, { method: 'POST', headers: { 'idempotency-key': key }, body: JSON.stringify(body) });
      const b = { model: 'qwen', input: 'once only', background: true };
      const [a1, a2] = await Promise.all([post(b, 'k1'), post(b, 'k1')]);
      const [r1, r2] = [await a1.json(), await a2.json()];
      assert.equal(a1.status, 200);
      assert.equal(r1.id, r2.id);
      const r3 = await (await post(b, 'k1')).json();
      assert.equal(r3.id, r1.id);
      const conflict = await post({ ...b, input: 'another' }, 'k1');
      assert.equal(conflict.status, 409);
      assert.equal(typeof (await conflict.json()).error.message, 'string');
      const list = await (await fetch(`${arun.url}/v1/responses?limit=100`)).json();
      assert.equal(list.data.filter((x) => x.id === r1.id).length, 1);
      assert.equal(list.data.length, 1);
      // store:false: answered, then nothing to retrieve; background with it is a 400.
      const oa = client(arun);
      const nf = await oa.responses.create({ model: 'qwen', input: 'ephemeral', store: false });
      assert.equal(nf.status, 'completed');
      await assert.rejects(oa.responses.retrieve(nf.id), (e) => e.status === 404);
      await assert.rejects(oa.responses.create({ model: 'qwen', input: 'x', store: false, background: true }), (e) => e.status === 400);
    } finally { await arun.cleanup(); }
  });
});
