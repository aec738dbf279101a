// The Responses API as the official openai SDK drives it: create (plain, streaming, background),
// retrieve, and streams resumed at every sequence number, live and after the end, without a gap
// or a duplicate.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Arun, MOCK_BIN, waitFor } from './lib/arun.mjs';

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
});
