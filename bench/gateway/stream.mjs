// bench/gateway/stream.mjs NAME URL [STREAMS] [TOKENS] [MODEL]: opens STREAMS (200) concurrent
// streaming chat completions of TOKENS (500) tokens each against URL (…/v1/chat/completions) at
// once, and prints one line:
//   NAME TTFT_P50_MS TTFT_P99_MS ITL_MEAN_MS ITL_P99_MS OK_STREAMS TOKENS WALL_MS
// TTFT runs from just before a request is written to the arrival of its first content token
// (the mock sends an empty role event at once; that one does not count). ITL is the delay between
// consecutive content tokens of one stream, over every gap of every stream (mean and p99).
// Timestamps come from performance.now() when a chunk is read, so tokens that arrive in one chunk
// share its time. Exits 1 when a stream fails or ends with another number of tokens: the numbers
// would then not describe the same work. Plain node:http, no dependency, bounded by a deadline.
// STREAM_API=responses streams POST /v1/responses (URL …/v1/responses) instead: the body asks
// for max_output_tokens TOKENS, a token is a response.output_text.delta event and the stream's
// end is its response.completed or response.incomplete event (bench/runs.sh).
// STREAM_KEY=KEY sends `Authorization: Bearer KEY` (auth.mode keys); an https:// URL is opened
// with node:https, trusting the PEM certificates of the file STREAM_CA (bench/tenancy.sh).
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';

const [name, url, streamsArg = '200', tokensArg = '500', model = 's'] = process.argv.slice(2);
if (!name || !url) {
  console.error('usage: stream.mjs NAME URL [STREAMS] [TOKENS] [MODEL]');
  process.exit(2);
}
const STREAMS = Number(streamsArg);
const TOKENS = Number(tokensArg);
const DEADLINE_MS = Number(process.env.STREAM_DEADLINE_MS ?? 60000);
const RESPONSES = process.env.STREAM_API === 'responses';
const body = JSON.stringify(RESPONSES
  ? { model, input: 'hi', max_output_tokens: TOKENS, stream: true }
  : { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: TOKENS, stream: true, ignore_eos: true });
const target = new URL(url);
const TLS = target.protocol === 'https:';
const client = TLS ? https : http;
// One socket per stream, all opened at once: no pooling limit in the client's way.
const agent = TLS
  ? new https.Agent({
      keepAlive: false,
      maxSockets: Infinity,
      ca: process.env.STREAM_CA ? fs.readFileSync(process.env.STREAM_CA) : undefined,
    })
  : new http.Agent({ keepAlive: false, maxSockets: Infinity });
const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
if (process.env.STREAM_KEY) headers.authorization = `Bearer ${process.env.STREAM_KEY}`;

// A token event is a data line whose delta carries content; the role event's delta starts with
// "role", and the finish event's delta is empty, so this substring picks exactly the tokens.
// A Responses stream's token is a data line of a text delta event; its end, the status event.
const TOKEN_MARK = RESPONSES ? '"type":"response.output_text.delta"' : '"delta":{"content":"';
const isEnd = RESPONSES
  ? (line) => line === 'event: response.completed' || line === 'event: response.incomplete'
  : (line) => line === 'data: [DONE]';

function oneStream() {
  return new Promise((resolve) => {
    const r = { ok: false, tokens: 0, ttft: NaN, gaps: [], err: null };
    let last = 0;
    let tail = '';
    let sawDone = false;
    const t0 = performance.now();
    const req = client.request(
      {
        agent,
        hostname: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        headers,
      },
      (res) => {
        if (res.statusCode !== 200) {
          r.err = `status ${res.statusCode}`;
          res.resume();
          res.on('end', () => resolve(r));
          return;
        }
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          const now = performance.now();
          const lines = (tail + chunk).split('\n');
          tail = lines.pop();
          for (const line of lines) {
            if (isEnd(line)) {
              sawDone = true;
            } else if (line.startsWith('data: ') && line.includes(TOKEN_MARK)) {
              if (r.tokens === 0) r.ttft = now - t0;
              else r.gaps.push(now - last);
              last = now;
              r.tokens++;
            }
          }
        });
        res.on('end', () => {
          r.ok = sawDone && r.tokens === TOKENS;
          if (!r.ok) r.err = `ended after ${r.tokens} tokens, [DONE] ${sawDone ? 'seen' : 'missing'}`;
          resolve(r);
        });
        res.on('error', (e) => {
          r.err = e.message;
          resolve(r);
        });
      },
    );
    req.on('error', (e) => {
      r.err = e.message;
      resolve(r);
    });
    req.end(body);
  });
}

function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const deadline = setTimeout(() => {
  console.error(`stream.mjs ${name}: not done within ${DEADLINE_MS} ms`);
  process.exit(1);
}, DEADLINE_MS);
const start = performance.now();
const results = await Promise.all(Array.from({ length: STREAMS }, oneStream));
const wall = performance.now() - start;
clearTimeout(deadline);
agent.destroy();

const failed = results.filter((r) => !r.ok);
const ttfts = results.filter((r) => r.ok).map((r) => r.ttft).sort((a, b) => a - b);
let gapCount = 0;
let gapSum = 0;
for (const r of results) for (const g of r.gaps) { gapSum += g; gapCount++; }
const gaps = new Float64Array(gapCount);
let i = 0;
for (const r of results) for (const g of r.gaps) gaps[i++] = g;
gaps.sort();
const tokens = results.reduce((s, r) => s + r.tokens, 0);
const f = (x) => x.toFixed(3);
console.log(
  `${name} ${f(pct(ttfts, 50))} ${f(pct(ttfts, 99))} ${f(gapSum / gapCount)} ${f(pct(gaps, 99))} ` +
    `${STREAMS - failed.length} ${tokens} ${wall.toFixed(0)}`,
);
if (failed.length > 0) {
  console.error(`stream.mjs ${name}: ${failed.length}/${STREAMS} streams failed, e.g. ${failed[0].err}`);
  process.exit(1);
}
