// bench/runs/runs.mjs VERB ARGS…: the measuring half of bench/runs.sh (durable runs), one verb a
// call, one line of numbers on stdout. Plain node:http, no dependency, every verb bounded by a
// deadline (RUNS_DEADLINE_MS, 120 s).
//   create URL MODEL N CONC          POST N background responses, CONC at a time; prints
//                                    "created N MS RATE_PER_S"
//   events URL MODEL RUNS TOKENS     RUNS background responses of TOKENS tokens at once on an
//                                    unpaced engine, until all have ended; prints
//                                    "events COMMITTED MS RATE_PER_S" from arun_run_events_total
//   long URL MODEL TOKENS            one background response of TOKENS tokens, until it ended;
//                                    prints "long ID LAST_SEQ"
//   resume URL ID AFTER N            N resumes one after the other (GET ?stream=true&
//                                    starting_after=AFTER), each timed from writing the request
//                                    to the first byte of the body; prints "resume P50_MS P99_MS
//                                    MEAN_MS"
//   restart ARUN CONFIG EXPECTED LOG starts `ARUN serve --config CONFIG` (stderr into LOG) and
//                                    times, from the spawn, its listening line and the recovery
//                                    line that says EXPECTED unfinished responses were handed to
//                                    their engines' queues; prints "restart LISTEN_MS
//                                    SCHEDULED_MS N PID" and leaves arun running (the caller
//                                    stops it)
import http from 'node:http';
import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const DEADLINE_MS = Number(process.env.RUNS_DEADLINE_MS ?? 120000);
const timer = setTimeout(() => {
  console.error(`runs.mjs ${process.argv[2]}: not done within ${DEADLINE_MS} ms`);
  process.exit(1);
}, DEADLINE_MS);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

// One request; resolves {status, body, firstByteMs} (firstByteMs: from the write to the first
// body byte).
function request(url, method = 'GET', body = null) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const t0 = performance.now();
    const req = http.request({
      agent, hostname: u.hostname, port: u.port, path: u.pathname + u.search, method,
      headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
    }, (res) => {
      let first = NaN;
      const chunks = [];
      res.on('data', (c) => { if (Number.isNaN(first)) first = performance.now() - t0; chunks.push(c); });
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString(), firstByteMs: first }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}

const post = (base, obj) => request(`${base}/v1/responses`, 'POST', JSON.stringify(obj));

async function metric(base, name) {
  const text = (await request(`${base}/metrics`)).body;
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

// Polls fn until it returns true (a benchmark's wait for the end of its own work).
async function until(fn, what) {
  while (!(await fn())) await new Promise((r) => setTimeout(r, 20));
  return what;
}

async function create(base, model, n, conc) {
  let next = 0;
  let bad = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) {
      next++;
      const r = await post(base, { model, input: `run ${next}`, background: true });
      if (r.status !== 200) bad++;
    }
  }));
  const ms = performance.now() - t0;
  if (bad) throw new Error(`${bad} of ${n} creations failed`);
  console.log(`created ${n} ${ms.toFixed(0)} ${(n / ms * 1000).toFixed(0)}`);
}

async function unfinished(base) {
  for (const status of ['queued', 'in_progress']) {
    const page = JSON.parse((await request(`${base}/v1/responses?status=${status}&limit=1`)).body);
    if (page.data.length > 0) return true;
  }
  return false;
}

async function events(base, model, runs, tokens) {
  const before = await metric(base, 'arun_run_events_total');
  const t0 = performance.now();
  const made = await Promise.all(Array.from({ length: runs }, (_, i) => post(base, { model, input: `events ${i}`, background: true, max_output_tokens: tokens })));
  if (made.some((r) => r.status !== 200)) throw new Error(`a creation failed: ${made.find((r) => r.status !== 200).body}`);
  await until(async () => !(await unfinished(base)));
  const ms = performance.now() - t0;
  const n = (await metric(base, 'arun_run_events_total')) - before;
  console.log(`events ${n} ${ms.toFixed(0)} ${(n / ms * 1000).toFixed(0)}`);
}

async function long(base, model, tokens) {
  const r = JSON.parse((await post(base, { model, input: 'a long one', background: true, max_output_tokens: tokens })).body);
  let last;
  await until(async () => {
    last = JSON.parse((await request(`${base}/v1/responses/${r.id}`)).body);
    return !['queued', 'in_progress'].includes(last.status);
  });
  // The last sequence number: a resume after it returns nothing, one after it minus one the end.
  const tail = (await request(`${base}/v1/responses/${r.id}?stream=true&starting_after=${tokens}`)).body;
  const ids = [...tail.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
  console.log(`long ${r.id} ${ids.at(-1)} ${last.status}`);
}

async function resume(base, id, after, n) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const r = await request(`${base}/v1/responses/${id}?stream=true&starting_after=${after}`);
    if (r.status !== 200) throw new Error(`resume: ${r.status} ${r.body.slice(0, 200)}`);
    times.push(r.firstByteMs);
  }
  times.sort((a, b) => a - b);
  const pct = (p) => times[Math.min(n - 1, Math.ceil((p / 100) * n) - 1)];
  const mean = times.reduce((a, b) => a + b, 0) / n;
  console.log(`resume ${pct(50).toFixed(3)} ${pct(99).toFixed(3)} ${mean.toFixed(3)}`);
}

// The times come from the log lines' own "time" (ms), against the wall clock just before the
// spawn: polling the log file only decides when to look.
async function restart(bin, config, expected, logPath) {
  const fd = openSync(logPath, 'w');
  const t0 = Date.now();
  const child = spawn(bin, ['serve', '--config', config], { stdio: ['ignore', 'ignore', fd], detached: true });
  closeSync(fd);
  child.unref();
  console.error(`arun pid ${child.pid}`);
  const at = (line) => Date.parse(JSON.parse(line).time) - t0;
  let listen = NaN;
  let scheduled = NaN;
  await until(async () => {
    for (const line of readFileSync(logPath, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      if (Number.isNaN(listen) && line.includes('listening on http')) listen = at(line);
      const m = /recovered (\d+) unfinished responses/.exec(line);
      if (m) {
        if (Number(m[1]) !== expected) throw new Error(`recovered ${m[1]}, expected ${expected}: ${line}`);
        scheduled = at(line);
      }
    }
    return !Number.isNaN(scheduled);
  });
  console.log(`restart ${listen.toFixed(0)} ${scheduled.toFixed(0)} ${expected} ${child.pid}`);
}

const [verb, ...a] = process.argv.slice(2);
try {
  if (verb === 'create') await create(a[0], a[1], Number(a[2]), Number(a[3]));
  else if (verb === 'events') await events(a[0], a[1], Number(a[2]), Number(a[3]));
  else if (verb === 'long') await long(a[0], a[1], Number(a[2]));
  else if (verb === 'resume') await resume(a[0], a[1], Number(a[2]), Number(a[3]));
  else if (verb === 'restart') await restart(a[0], a[1], Number(a[2]), a[3]);
  else throw new Error(`unknown verb ${verb}`);
} catch (e) {
  console.error(`runs.mjs ${verb}: ${e.message}`);
  process.exit(1);
}
clearTimeout(timer);
agent.destroy();
process.exit(0);
