// kill -9 of arun in the middle of streaming background runs, then a restart on the same
// data_dir: runs on an engine with `continuation: chat-prefix` complete with the stored prefix
// plus the continuation; the others fail with code `interrupted`; a client that resumes each run
// from the last sequence number it saw gets every later event exactly once, in order.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Arun, MOCK_BIN, waitFor, tempDir } from './lib/arun.mjs';

const mock = (extra) => `"${MOCK_BIN} --port \${PORT} --model \${NAME} --tokens-per-s 40 --ignore-eos --max-tokens 40 ${extra}"`;
const config = `engines:
  cont:
    cmd: ${mock('--echo-prefix')}
    continuation: chat-prefix
    max_concurrency: 16
  plain:
    cmd: ${mock('')}
    max_concurrency: 16
`;

// Follows one run's stream, collecting parsed events, until the connection ends (either way).
function follow(url, after, into) {
  const headers = {};
  const q = after >= 0 ? `&starting_after=${after}` : '';
  return fetch(`${url}?stream=true${q}`, { headers }).then(async (res) => {
    assert.equal(res.status, 200);
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body) {
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const m = /^data: (.*)$/m.exec(block);
          if (m) into.push(JSON.parse(m[1]));
        }
      }
    } catch { /* the kill cuts the connection */ }
  }).catch(() => {});
}

const deltas = (events) => events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');

async function round(killAfterDeltas, n) {
  const dir = tempDir();
  let arun = await new Arun({ config, dir }).start();
  try {
    const runs = [];
    for (let i = 0; i < n; i++) {
      const model = i % 2 ? 'plain' : 'cont';
      const res = await fetch(`${arun.url}/v1/responses`, { method: 'POST', body: JSON.stringify({ model, input: `story ${i} round ${killAfterDeltas}`, background: true, stream: false }) });
      assert.equal(res.status, 200);
      const r = await res.json();
      const seen = [];
      runs.push({ id: r.id, model, seen, done: follow(`${arun.url}/v1/responses/${r.id}`, -1, seen) });
    }
    // Kill when every run has streamed at least killAfterDeltas deltas.
    await waitFor(() => runs.every((r) => r.seen.filter((e) => e.type === 'response.output_text.delta').length >= killAfterDeltas),
      { timeoutMs: 30000, what: `${killAfterDeltas} deltas on every run` });
    arun.proc.kill('SIGKILL');
    await arun.exited;
    await Promise.all(runs.map((r) => r.done));
    arun = await new Arun({ config, dir }).start();
    for (const r of runs) {
      const seqs = r.seen.map((e) => e.sequence_number);
      assert.deepEqual(seqs, seqs.map((_, i) => i), `${r.id}: events before the kill in order from 0`);
      const last = seqs.length - 1;
      const after = [];
      await follow(`${arun.url}/v1/responses/${r.id}`, last, after);
      assert.deepEqual(after.map((e) => e.sequence_number), after.map((_, i) => last + 1 + i), `${r.id}: resumed after ${last}`);
      const final = await (await fetch(`${arun.url}/v1/responses/${r.id}`)).json();
      const all = [...r.seen, ...after];
      assert.ok(['response.completed', 'response.failed'].includes(all.at(-1).type), all.at(-1).type);
      if (r.model === 'cont') {
        assert.equal(final.status, 'completed', JSON.stringify(final.error));
        assert.equal(final.arun.continued_after_restart, true);
        assert.equal(deltas(all), final.output[0].content[0].text, `${r.id}: the deltas make the final text`);
        assert.ok(final.output[0].content[0].text.startsWith(deltas(r.seen)), 'never a restart: the stored prefix stays');
      } else {
        assert.equal(final.status, 'failed');
        assert.equal(final.error.code, 'interrupted');
        assert.match(final.error.message, /engine plain cannot continue a partial answer \(continuation: none\)/);
      }
    }
    const metrics = await (await fetch(`${arun.url}/metrics`)).text();
    assert.match(metrics, /arun_runs_recovered_total\{outcome="continued"\} \d+/);
  } finally {
    await arun.cleanup();
  }
}

describe('responses after kill -9', () => {
  test('streaming background runs survive kill -9 at different moments: continued or interrupted, each later event once', async () => {
    for (const k of [1, 7, 15]) await round(k, 6);
  });
});
