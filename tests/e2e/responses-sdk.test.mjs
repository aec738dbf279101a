// The Responses API driven by the SDKs people build on, unchanged: the Vercel AI SDK's
// generateText and streamText with openai.responses(MODEL), its tool loop, and the openai SDK's
// function-tool round trip (function_call out, function_call_output with previous_response_id
// in). The engine is arun-mock-engine, which answers a chat that asks for a tool ("call NAME")
// with a tool call and a chat that ends with a tool result with "tool result: OUTPUT"
// (docs/mock-engine.md), so each test can tell what the engine was given.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { generateText, streamText, tool, jsonSchema, stepCountIs } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { Arun, MOCK_BIN } from './lib/arun.mjs';

const MODEL = 'qwen';
const config = (extra = '') => `engines:\n  qwen:\n    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME} ${extra}"\n    models: [qwen]\n`;
const sdk = (arun) => new OpenAI({ baseURL: `${arun.url}/v1`, apiKey: 'x', maxRetries: 0 });
const vercel = (arun) => createOpenAI({ baseURL: `${arun.url}/v1`, apiKey: 'x' });

const weather = {
  type: 'function', name: 'weather', description: 'the weather in a city', strict: false,
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

// The text of a Response's output messages, as the SDK's output_text helper joins it.
function outputText(r) {
  return r.output.filter((i) => i.type === 'message')
    .flatMap((i) => i.content).filter((c) => c.type === 'output_text').map((c) => c.text).join('');
}

async function mockStats(arun) {
  const e = await (await fetch(`${arun.url}/v1/engines/qwen`)).json();
  return (await fetch(`http://127.0.0.1:${e.port}/mock/stats`)).json();
}

// Whatever the SDKs send, the server must never answer with a 5xx; a 4xx names the field.
async function stored(arun, id) {
  const r = await fetch(`${arun.url}/v1/responses/${id}`);
  assert.equal(r.status, 200, `GET /v1/responses/${id}: ${r.status}`);
  return r.json();
}

describe('the Vercel AI SDK (ai + @ai-sdk/openai) with openai.responses()', () => {
  // --ignore-eos: the mock's answers run to their cap, so 16 (the API's least) ends the run
  // incomplete (max_output_tokens), which the SDK reads as finishReason 'length'.
  test('generateText: the text is the stored response\'s output; system, temperature and max tokens reach the engine', async () => {
    const arun = await new Arun({ config: config('--ignore-eos') }).start();
    try {
      const r = await generateText({ model: vercel(arun).responses(MODEL), system: 'be brief', prompt: 'hello there', temperature: 0.5, maxOutputTokens: 16 });
      assert.ok(r.text.length > 0);
      assert.ok(r.usage.outputTokens > 0 && r.usage.inputTokens > 0, JSON.stringify(r.usage));
      const id = r.response.id;
      assert.match(id, /^resp_/);
      const resp = await stored(arun, id);
      assert.equal(r.finishReason, 'length');
      assert.equal(resp.status, 'incomplete');
      assert.equal(resp.incomplete_details.reason, 'max_output_tokens');
      assert.equal(outputText(resp), r.text);
      const body = (await mockStats(arun)).last_request_body;
      assert.deepEqual(body.messages.map((m) => m.role), ['system', 'user']);
      assert.equal(body.messages[0].content, 'be brief');
      assert.equal(body.temperature, 0.5);
      assert.equal(body.max_tokens ?? body.max_completion_tokens, 16);
      assert.equal(r.text.trimEnd().split(' ').length, 16);
    } finally { await arun.cleanup(); }
  });

  test('streamText: the streamed text equals the stored output text; the finish reason is stop', async () => {
    const arun = await new Arun({ config: config('--tokens-per-s 200') }).start();
    try {
      const s = streamText({ model: vercel(arun).responses(MODEL), prompt: 'tell me a story' });
      let text = '';
      let parts = 0;
      for await (const d of s.textStream) { text += d; parts++; }
      assert.ok(parts >= 2, `the text came in ${parts} part(s)`);
      assert.equal(await s.finishReason, 'stop');
      const id = (await s.response).id;
      assert.equal(text, outputText(await stored(arun, id)));
    } finally { await arun.cleanup(); }
  });

  test('a tool loop: the model calls the tool, the SDK runs it and sends its result back, the engine answers from it', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const calls = [];
      const r = await generateText({
        model: vercel(arun).responses(MODEL), prompt: 'call weather for Paris', stopWhen: stepCountIs(3),
        tools: {
          weather: tool({
            description: 'the weather in a city',
            inputSchema: jsonSchema({ type: 'object', properties: { city: { type: 'string' } } }),
            execute: async (args) => { calls.push(args); return { sky: 'sunny' }; },
          }),
        },
      });
      assert.equal(calls.length, 1, 'the tool ran once');
      assert.equal(r.steps.length, 2);
      assert.equal(r.steps[0].finishReason, 'tool-calls');
      assert.match(r.text, /^tool result: /);
      assert.ok(r.text.includes('sunny'), r.text);
      const msgs = (await mockStats(arun)).last_request_body.messages;
      const last = msgs[msgs.length - 1];
      assert.equal(last.role, 'tool');
      assert.equal(JSON.parse(last.content).sky, 'sunny');
      assert.equal(msgs[msgs.length - 2].tool_calls[0].function.name, 'weather');
    } finally { await arun.cleanup(); }
  });

  // The AI SDK refers to an earlier answer it got from a stored response by id instead of
  // sending it again (an item_reference); arun resolves it from the store.
  test('a second turn carrying the first answer (an item_reference to the stored message) gives the engine both turns', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const model = vercel(arun).responses(MODEL);
      const first = await generateText({ model, messages: [{ role: 'user', content: 'first question' }] });
      const second = await generateText({ model, messages: [{ role: 'user', content: 'first question' }, ...first.response.messages, { role: 'user', content: 'second question' }] });
      assert.ok(second.text.length > 0);
      const msgs = (await mockStats(arun)).last_request_body.messages;
      assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'user']);
      assert.equal(msgs[1].content, first.text);
    } finally { await arun.cleanup(); }
  });
});

describe('the openai SDK with function tools', () => {
  test('a function call comes back as a function_call item; function_call_output with previous_response_id continues', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const oa = sdk(arun);
      const r1 = await oa.responses.create({ model: MODEL, input: 'call weather for Paris', tools: [weather] });
      assert.equal(r1.status, 'completed');
      const call = r1.output.find((i) => i.type === 'function_call');
      assert.ok(call, JSON.stringify(r1.output));
      assert.match(call.id, /^fc_/);
      assert.equal(call.name, 'weather');
      assert.ok(call.call_id.length > 0);
      assert.doesNotThrow(() => JSON.parse(call.arguments));
      const r2 = await oa.responses.create({
        model: MODEL, previous_response_id: r1.id, tools: [weather],
        input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"sky":"sunny"}' }],
      });
      assert.equal(r2.status, 'completed');
      assert.equal(r2.previous_response_id, r1.id);
      assert.equal(r2.output_text.trimEnd(), 'tool result: {"sky":"sunny"}', 'the mock\'s tokens end with a space');
      const msgs = (await mockStats(arun)).last_request_body.messages;
      assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'tool']);
      assert.equal(msgs[0].content, 'call weather for Paris');
      assert.equal(msgs[1].tool_calls[0].id, call.call_id);
      assert.equal(msgs[1].tool_calls[0].function.arguments, call.arguments);
      assert.equal(msgs[2].tool_call_id, call.call_id);
    } finally { await arun.cleanup(); }
  });

  test('a streamed function call: argument deltas add up to the final arguments, in the helper\'s order', async () => {
    const arun = await new Arun({ config: config() }).start();
    try {
      const stream = sdk(arun).responses.stream({ model: MODEL, input: 'call weather for Paris', tools: [weather] });
      let args = '';
      const types = [];
      for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === 'response.function_call_arguments.delta') args += ev.delta;
      }
      const final = await stream.finalResponse();
      const call = final.output.find((i) => i.type === 'function_call');
      assert.equal(args, call.arguments);
      const at = (t) => types.indexOf(t);
      assert.ok(at('response.output_item.added') < at('response.function_call_arguments.delta'));
      assert.ok(at('response.function_call_arguments.delta') < at('response.function_call_arguments.done'));
      assert.ok(at('response.function_call_arguments.done') < at('response.output_item.done'));
      assert.equal(types[types.length - 1], 'response.completed');
    } finally { await arun.cleanup(); }
  });
});
