// The HTTP core of `arun serve`: what every endpoint gets (request ids, OpenAI-shaped errors,
// limits, timeouts), the runtime endpoints, start-up and the graceful drain.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { Arun, waitFor } from './lib/arun.mjs';
import { startMock } from './lib/mock.mjs';

// A raw HTTP exchange over one socket: resolves with everything the server sent until it closed
// the connection (or until `until(text)` says enough).
function rawExchange(port, chunks, { until, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no close; got: ${got}`)); }, timeoutMs);
    s.on('connect', () => { for (const c of chunks) s.write(c); });
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (until && until(got)) { clearTimeout(timer); s.destroy(); resolve({ text: got, closed: false }); }
    });
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(timer); resolve({ text: got, closed: true }); });
  });
}

// The drain ends on its own only when no connection is left; one that had to be cut at the
// deadline says so in this line.
const hitDeadline = (arun) => /drain deadline/.test(arun.stderr);

describe('arun serve: HTTP core', () => {
  let arun;
  before(async () => { arun = await new Arun().start(); });
  after(async () => { await arun.cleanup(); });

  test('starts without waiting on anything when it has no engines', () => {
    // The release build starts in a few ms; the ASan build on two shared cores takes up to ten
    // times longer. What this guards against is start-up waiting on something (an engine, a
    // probe, the network, a timer), which costs seconds, not a slow machine: hence the margin.
    assert.ok(arun.startupMs < 2000, `start-up took ${arun.startupMs} ms`);
  });

  test('GET /healthz is 200 and carries a generated x-request-id', async () => {
    const r = await fetch(`${arun.url}/healthz`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { status: 'ok' });
    assert.match(r.headers.get('x-request-id'), /^req_[0-9a-f]{16}$/);
  });

  test('a well-formed client x-request-id is kept, a malformed one replaced', async () => {
    const ok = await fetch(`${arun.url}/healthz`, { headers: { 'x-request-id': 'trace-42.a:b' } });
    assert.equal(ok.headers.get('x-request-id'), 'trace-42.a:b');
    const bad = await fetch(`${arun.url}/healthz`, { headers: { 'x-request-id': 'a b"<script>' } });
    assert.match(bad.headers.get('x-request-id'), /^req_/);
    const long = await fetch(`${arun.url}/healthz`, { headers: { 'x-request-id': 'x'.repeat(65) } });
    assert.match(long.headers.get('x-request-id'), /^req_/);
  });

  test('GET /readyz is 200 while the store is usable', async () => {
    const r = await fetch(`${arun.url}/readyz`);
    assert.equal(r.status, 200);
    const body = await r.json();
    assert.equal(body.status, 'ready');
    assert.equal(body.checks.store, 'ok');
  });

  test('unknown paths are 404 and wrong methods 405, in the OpenAI error shape', async () => {
    const r = await fetch(`${arun.url}/v1/nope`);
    assert.equal(r.status, 404);
    assert.ok(r.headers.get('x-request-id'));
    const e = (await r.json()).error;
    assert.equal(e.type, 'not_found_error');
    assert.match(e.message, /no such endpoint: GET \/v1\/nope/);
    assert.ok('param' in e && 'code' in e);
    const m = await fetch(`${arun.url}/healthz`, { method: 'DELETE' });
    assert.equal(m.status, 405);
    assert.equal((await m.json()).error.code, 'method_not_allowed');
  });

  test('an error message that quotes a client\'s text cut inside a character keeps the message', async () => {
    // The name is quoted with %.100s: 'x' and 60 two-byte characters are cut inside the 50th.
    const name = `x${'é'.repeat(60)}`;
    const r = await fetch(`${arun.url}/v1/engines/${encodeURIComponent(name)}`);
    assert.equal(r.status, 404);
    const msg = (await r.json()).error.message;
    assert.ok(msg.startsWith(`no engine named '${name.slice(0, 50)}?'`), msg);
    const ev = await fetch(`${arun.url}/v1/events`, { headers: { 'last-event-id': `x${'é'.repeat(30)}` } });
    assert.equal(ev.status, 400);
    // fetch sends header values as Latin-1: each é is one byte 0xE9, never valid UTF-8 alone.
    assert.match((await ev.json()).error.message, /^Last-Event-ID must be an event id \(a number\), got "x\?{30}"$/);
  });

  test('paths with .. are refused before routing, never escape the routes', async () => {
    const r = await rawExchange(arun.port, ['GET /v1/../../healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n']);
    assert.match(r.text, /^HTTP\/1\.1 400/);
    assert.match(r.text, /"invalid_path"/);
    const r2 = await rawExchange(arun.port, ['GET /../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n']);
    assert.match(r2.text, /^HTTP\/1\.1 400/);
    assert.match(r2.text, /"invalid_path"/);
  });

  test('GET /metrics is Prometheus text with request counts and latency histograms', async () => {
    await fetch(`${arun.url}/healthz`);
    const r = await fetch(`${arun.url}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    const text = await r.text();
    assert.match(text, /^arun_http_requests_total\{route="\/healthz",method="GET",status="200"\} \d+$/m);
    assert.match(text, /^arun_http_request_duration_seconds_bucket\{route="\/healthz",le="\+Inf"\} \d+$/m);
    assert.match(text, /^arun_http_open_connections \d+$/m);
    const rss = Number(/^arun_process_resident_memory_bytes (\d+)$/m.exec(text)[1]);
    assert.ok(rss > 1e6, `rss ${rss}`);
  });

  test('malformed HTTP gets 400 and the connection closes; the server keeps serving', async () => {
    const r = await rawExchange(arun.port, ['GARBAGE\0\0 NOT HTTP\r\n\r\n']);
    assert.match(r.text, /^HTTP\/1\.1 400/);
    assert.ok(r.closed);
    assert.equal((await fetch(`${arun.url}/healthz`)).status, 200);
  });

  test('a 100 MB body gets 413 without being buffered', async () => {
    const rssBefore = arun.rssKb();
    const res = await new Promise((resolve, reject) => {
      const req = http.request(`${arun.url}/v1/events`, {
        method: 'POST', headers: { 'content-length': String(100 * 1024 * 1024), 'content-type': 'application/json' },
      }, (resp) => {
        let body = '';
        resp.on('data', (d) => { body += d; });
        resp.on('end', () => resolve({ status: resp.statusCode, body, headers: resp.headers }));
      });
      req.on('error', (e) => { if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e); });
      req.write(Buffer.alloc(64 * 1024, 'x'));   // a little of it; the server must not wait for the rest
    });
    assert.equal(res.status, 413);
    const e = JSON.parse(res.body).error;
    assert.equal(e.code, 'request_too_large');
    assert.ok(res.headers['x-request-id']);
    assert.ok(arun.rssKb() - rssBefore < 20 * 1024, 'RSS grew by more than 20 MB');
    assert.equal((await fetch(`${arun.url}/healthz`)).status, 200);
  });

  test('1,000 idle connections and a slowloris client do not delay a normal request', async () => {
    const idle = [];
    for (let i = 0; i < 1000; i++) idle.push(net.connect(arun.port, '127.0.0.1').on('error', () => {}));
    await Promise.all(idle.map((s) => new Promise((r) => s.once('connect', r))));
    const slow = net.connect(arun.port, '127.0.0.1');
    let slowClosed = false;
    slow.on('error', () => {});
    slow.on('close', () => { slowClosed = true; });
    const req = 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ';
    let i = 0;
    const drip = setInterval(() => { if (!slowClosed) slow.write(req[i++ % req.length]); }, 100);
    try {
      // Every connection accepted (1,000 idle, the slow one and this probe's) and the slow one
      // part-way through its head.
      await waitFor(async () => {
        const m = /^arun_http_open_connections (\d+)$/m.exec(await (await fetch(`${arun.url}/metrics`)).text());
        return m && Number(m[1]) >= 1002 && i > 3;
      }, { what: 'all connections accepted and the slowloris started' });
      const idleOpen = () => idle.filter((s) => !s.destroyed && s.readyState === 'open').length;
      const r = await fetch(`${arun.url}/healthz`);
      assert.equal(r.status, 200);
      // Not delayed: answered while the slow client and the idle ones are all still held open.
      // A server they could block would answer only after the header timeout (10 s) cut them.
      assert.ok(!slowClosed, 'the normal request was answered only after the slowloris was cut');
      assert.equal(idleOpen(), 1000, 'the normal request was answered only after idle connections were cut');
      // The header timeout (10 s) cuts the slowloris client off; idle ones go the same way.
      await waitFor(() => slowClosed, { timeoutMs: 15000, what: 'the slowloris connection to be closed' });
    } finally {
      clearInterval(drip);
      slow.destroy();
      for (const s of idle) s.destroy();
    }
    assert.equal((await fetch(`${arun.url}/healthz`)).status, 200);
  });

  test('GET /v1/events is an SSE stream', async () => {
    const ac = new AbortController();
    const r = await fetch(`${arun.url}/v1/events`, { signal: ac.signal });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/event-stream');
    const reader = r.body.getReader();
    const { value } = await reader.read();
    assert.match(Buffer.from(value).toString(), /^: arun events\n\n/);
    ac.abort();
  });
});

describe('arun serve: lifecycle', () => {
  test('SIGTERM with 50 open SSE clients exits 0 within the drain deadline', async () => {
    const arun = await new Arun().start();
    try {
      const streams = [];
      for (let i = 0; i < 50; i++) {
        streams.push(new Promise((resolve, reject) => {
          http.get(`${arun.url}/v1/events`, (res) => {
            let body = '';
            res.on('data', (d) => { body += d; });
            res.on('end', () => resolve(body));
            res.on('error', reject);
          }).on('error', reject);
        }));
      }
      await waitFor(async () => {
        const m = await (await fetch(`${arun.url}/metrics`)).text();
        return /^arun_events_subscribers 50$/m.test(m);
      }, { what: '50 subscribers' });
      const r = await arun.stop('SIGTERM');
      assert.equal(r.code, 0, arun.stderr.slice(-2000));
      assert.ok(!hitDeadline(arun), `the streams held the drain until its deadline:\n${arun.stderr.slice(-2000)}`);
      const bodies = await Promise.all(streams);
      for (const b of bodies) assert.match(b, /arun is shutting down/);
    } finally {
      await arun.cleanup();
    }
  });

  test('SIGTERM closes an idle keep-alive connection at once instead of waiting out the drain', async () => {
    const arun = await new Arun().start();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const sock = await new Promise((resolve, reject) => {
        http.get(`${arun.url}/healthz`, { agent }, (res) => {
          const sock = res.socket;
          res.resume();
          res.on('end', () => resolve(sock));
        }).on('error', reject);
      });
      let closed = false;
      sock.on('close', () => { closed = true; });
      await waitFor(() => agent.freeSockets[Object.keys(agent.freeSockets)[0]]?.length === 1,
        { what: 'the connection to be idle in the pool' });
      const r = await arun.stop('SIGTERM');
      assert.equal(r.code, 0, arun.stderr.slice(-2000));
      assert.ok(!hitDeadline(arun), `the idle connection held the drain:\n${arun.stderr.slice(-2000)}`);
      assert.match(arun.stderr, /draining: 1 connections \(1 idle, closed now\)/);
      await waitFor(() => closed, { what: 'the client to see its idle connection closed' });
    } finally {
      agent.destroy();
      await arun.cleanup();
    }
  });

  test('a request whose body is still arriving when SIGTERM comes is answered, then its connection closes', async () => {
    const arun = await new Arun().start();
    try {
      const s = net.connect(arun.port, '127.0.0.1');
      s.on('error', () => {});
      let got = '';
      const closed = new Promise((r) => s.on('close', r));
      s.on('data', (d) => { got += d.toString('latin1'); });
      await new Promise((r) => s.once('connect', r));
      s.write('POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc');
      await waitFor(async () => /arun_http_open_connections [1-9]/.test(await (await fetch(`${arun.url}/metrics`)).text()),
        { what: 'the connection to be open' });
      arun.proc.kill('SIGTERM');
      await waitFor(() => /draining/.test(arun.stderr), { what: 'the drain to start' });
      s.write('defghij');
      await closed;
      assert.match(got, /^HTTP\/1\.1 405 /, 'the request in progress got its answer');
      assert.match(got, /\r\nconnection: close\r\n/i);
      const r = await arun.exited;
      assert.equal(r.code, 0, arun.stderr.slice(-2000));
      assert.ok(!hitDeadline(arun), arun.stderr.slice(-2000));
    } finally {
      await arun.cleanup();
    }
  });

  test('a stream in progress when SIGTERM comes runs to its end, then arun exits without cutting it', async () => {
    // A remote engine: arun does not stop it at the drain, so the stream can finish.
    const engine = await startMock(['--model', 'm', '--tokens-per-s', '20']);
    const agent = new http.Agent({ keepAlive: true });
    const arun = await new Arun({ config: `egress: allow\nengines:\n  r:\n    url: ${engine.baseURL}\n    models: [m]\nroutes:\n  chat: [r]\n` }).start();
    try {
      await waitFor(async () => (await (await fetch(`${arun.url}/v1/engines/r`)).json()).state === 'ready', { what: 'the engine reachable' });
      // Node's http agent keeps the connection open after the stream (fetch would close it on
      // its own after 4 s): only the drain can close it.
      const body = await new Promise((resolve, reject) => {
        const req = http.request(`${arun.url}/v1/chat/completions`, { method: 'POST', agent }, (res) => {
          if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
          let text = '';
          res.setEncoding('utf8');
          res.once('data', () => {
            arun.proc.kill('SIGTERM');
          });
          res.on('data', (d) => { text += d; });
          res.on('end', () => resolve(text));
          res.on('error', reject);
        }).on('error', reject);
        req.end(JSON.stringify({ model: 'chat', stream: true, max_tokens: 12, messages: [{ role: 'user', content: 'x' }] }));
      });
      await waitFor(() => /draining: .*, 1 requests in flight/.test(arun.stderr),
        { what: 'the drain to have begun while the stream was in flight' });
      assert.match(body, /data: \[DONE\]\n\n$/, 'the stream ran to its end');
      assert.match(body, /"finish_reason":"length"/);
      const r = await arun.exited;
      assert.equal(r.code, 0, arun.stderr.slice(-2000));
      assert.ok(!hitDeadline(arun), `the finished stream's connection held the drain:\n${arun.stderr.slice(-2000)}`);
    } finally {
      agent.destroy();
      await arun.cleanup();
      await engine.stop();
    }
  });

  test('a second signal exits at once', async () => {
    const arun = await new Arun().start();
    try {
      // A client stuck mid-request keeps the drain waiting until the header timeout.
      const s = net.connect(arun.port, '127.0.0.1');
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      s.write('POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc');
      await waitFor(async () => /arun_http_open_connections [1-9]/.test(await (await fetch(`${arun.url}/metrics`)).text()),
        { what: 'the stuck connection' });
      arun.proc.kill('SIGTERM');
      await waitFor(() => /draining/.test(arun.stderr), { what: 'the drain to start' });
      const r = await arun.stop('SIGINT');
      // 1 and this line: the second signal cut the drain (a drain that ends exits 0).
      assert.equal(r.code, 1, arun.stderr.slice(-2000));
      assert.match(arun.stderr, /second signal \(Interrupt\): exiting now without draining/);
      s.destroy();
    } finally {
      await arun.cleanup();
    }
  });

  test('a port already in use is a clear error and exit 1', async () => {
    const a = await new Arun().start();
    const b = new Arun({ args: [] });
    try {
      b.args = ['--listen', `127.0.0.1:${a.port}`];
      await assert.rejects(b.start({ timeoutMs: 5000 }), /exited/);
      assert.equal(b.exit.code, 1);
      assert.match(b.stderr, /already in use/);
    } finally {
      await a.cleanup();
      await b.cleanup();
    }
  });

  test('a second arun on the same data_dir refuses to start', async () => {
    const a = await new Arun().start();
    const b = new Arun({ dir: undefined, config: `data_dir: ${a.dataDir}\n` });
    try {
      await assert.rejects(b.start({ timeoutMs: 5000 }), /exited/);
      assert.equal(b.exit.code, 1);
      assert.match(b.stderr, /in use by another arun/);
    } finally {
      await a.cleanup();
      await b.cleanup();
    }
  });
});
