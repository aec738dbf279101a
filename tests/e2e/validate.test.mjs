// Request validation in the gateway (docs/http-api.md, "Request validation"): a body with a field
// of the wrong type or out of its range is a 400 in the OpenAI shape naming the field in `param`,
// and the engine never sees it; members the OpenAI API does not type pass to the engine unchanged.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Arun, waitFor } from './lib/arun.mjs';
import { startMock, mockStats } from './lib/mock.mjs';

const hello = [{ role: 'user', content: 'hello' }];

async function post(arun, path, body) {
  const res = await fetch(`${arun.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, type: res.headers.get('content-type'), body: await res.json() };
}

describe('request validation', () => {
  test('max_tokens: -5 and temperature: "hot" get a 400 naming the field, and never reach the engine', async () => {
    // A remote engine (a mock arun does not start), so that the test can ask it what it saw.
    const engine = await startMock(['--model', 'm']);
    const arun = await new Arun({ config: `egress: allow\nengines:\n  e:\n    url: http://127.0.0.1:${engine.port}/v1\n    models: [remote-m]\nroutes:\n  m: [e]\n` }).start();
    try {
      await waitFor(async () => (await (await fetch(`${arun.url}/v1/engines/e`)).json()).state === 'ready', { what: 'engine e reachable' });
      const oa = new OpenAI({ baseURL: `${arun.url}/v1`, apiKey: 'none', maxRetries: 0 });
      // A good body reaches the engine, with the members the API does not type unchanged.
      await oa.chat.completions.create({ model: 'm', messages: hello, max_tokens: 2, top_k: 40, chat_template_kwargs: { enable_thinking: false } });
      let stats = await mockStats(engine);
      assert.equal(stats.requests_by_path['/v1/chat/completions'], 1);
      assert.equal(stats.last_request_body.top_k, 40);
      assert.deepEqual(stats.last_request_body.chat_template_kwargs, { enable_thinking: false });

      // The SDK reads the error's param and code.
      await assert.rejects(oa.chat.completions.create({ model: 'm', messages: hello, max_tokens: -5 }), (e) =>
        e.status === 400 && e.param === 'max_tokens' && e.code === 'integer_below_min_value' &&
        e.type === 'invalid_request_error' && /Expected a value >= 1, but got -5 instead/.test(e.message));
      await assert.rejects(oa.chat.completions.create({ model: 'm', messages: hello, temperature: 'hot' }), (e) =>
        e.status === 400 && e.param === 'temperature' && e.code === 'invalid_type' &&
        /expected a number, but got a string/.test(e.message));

      const cases = [
        // path, body, param, code
        ['/v1/chat/completions', { model: 'm', messages: hello, stream: true, temperature: 5 }, 'temperature', 'integer_above_max_value'],
        ['/v1/chat/completions', { model: 'm', messages: [...hello, { role: 'assistant', content: 'hi' }, { role: 'robot', content: 'x' }] }, 'messages[2].role', 'invalid_value'],
        ['/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }, 'messages[0].content[0].image_url.url', 'missing_required_parameter'],
        ['/v1/chat/completions', { model: 'm', messages: hello, tools: [{ type: 'function', function: { name: 'get weather' } }] }, 'tools[0].function.name', 'invalid_value'],
        ['/v1/chat/completions', { model: 'm', messages: hello, stream_options: { include_usage: true } }, 'stream_options', 'invalid_value'],
        ['/v1/chat/completions', { model: 'm', messages: hello, stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop', 'array_above_max_length'],
        ['/v1/chat/completions', { model: 'm' }, 'messages', 'missing_required_parameter'],
        ['/v1/completions', { model: 'm', prompt: 5 }, 'prompt', 'invalid_type'],
        ['/v1/completions', { model: 'm', prompt: 'x', logprobs: 6 }, 'logprobs', 'integer_above_max_value'],
        ['/v1/embeddings', { model: 'm', input: 'x', dimensions: 0 }, 'dimensions', 'integer_below_min_value'],
        ['/v1/embeddings', { model: 'm', input: 'x', encoding_format: 'hex' }, 'encoding_format', 'invalid_value'],
      ];
      for (const [path, body, param, code] of cases) {
        const r = await post(arun, path, body);
        assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
        assert.match(r.type, /application\/json/); // an answer, not a stream, even for stream: true
        assert.equal(r.body.error.param, param, JSON.stringify(r.body));
        assert.equal(r.body.error.code, code, JSON.stringify(r.body));
        assert.equal(r.body.error.type, 'invalid_request_error');
      }
      // Bodies that jansson reads instead of the fast scan (an escaped name; many members) are
      // checked the same way, as the engine would read them.
      let r = await post(arun, '/v1/chat/completions', '{"model":"m","messages":[{"role":"user","content":"x"}],"temp\\u0065rature":"hot"}');
      assert.equal(r.status, 400);
      assert.equal(r.body.error.param, 'temperature');
      const many = { model: 'm', messages: hello };
      for (let i = 0; i < 40; i++) many[`x_${i}`] = i;
      r = await post(arun, '/v1/chat/completions', { ...many, max_tokens: 0 });
      assert.equal(r.status, 400);
      assert.equal(r.body.error.param, 'max_tokens');

      // None of them reached the engine.
      stats = await mockStats(engine);
      assert.equal(stats.requests_by_path['/v1/chat/completions'], 1);
      assert.equal(stats.requests_by_path['/v1/completions'] ?? 0, 0);
      assert.equal(stats.requests_by_path['/v1/embeddings'] ?? 0, 0);
      // And a good request still goes through.
      r = await post(arun, '/v1/chat/completions', { ...many, max_tokens: 1 });
      assert.equal(r.status, 200);
      assert.equal((await mockStats(engine)).requests_by_path['/v1/chat/completions'], 2);
    } finally {
      await arun.cleanup();
      await engine.stop();
    }
  });
});
