// HTTPS (issue 13 item 5, contract 2 `tls:`): the official openai SDK talks to arun over TLS
// with a test CA; a renewed certificate SIGHUP'd is served to new connections while a stream
// on an old one runs to its end; a bad certificate at reload keeps the one in use; bad files
// stop the start with the file and why; a non-loopback listen needs tls: (or tls: off, warned);
// the CLI reaches an https:// server with ARUN_CA_FILE; reloads are audited.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import readline from 'node:readline';
import tls from 'node:tls';
import { Arun, MOCK_BIN, ROOT, runArun, tempDir, waitFor } from './lib/arun.mjs';
import { TestCA, peerSerial, httpsGetJson } from './lib/tls.mjs';

const mock = (extra = '') => `"${MOCK_BIN} --port \${PORT} --model \${NAME} ${extra}"`;

let pki;
let ca;
before(() => {
  pki = tempDir('arun-tls-');
  ca = new TestCA(pki);
});
after(() => rmSync(pki, { recursive: true, force: true }));

// Runs lib/sdk-stream-client.mjs with the test CA trusted; next(event) waits for its report.
function sdkClient(env) {
  const child = spawn(process.execPath, [join(ROOT, 'tests/e2e/lib/sdk-stream-client.mjs')], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: ca.certPath, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const seen = [];
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  readline.createInterface({ input: child.stdout }).on('line', (l) => seen.push(JSON.parse(l)));
  return {
    next: (event) => waitFor(() => {
      const err = seen.find((e) => e.event === 'error');
      if (err) throw new waitFor.Stop(`the SDK client failed: ${JSON.stringify(err)}\n${stderr}`);
      return seen.find((e) => e.event === event);
    }, { timeoutMs: 20000, what: `the SDK client's ${event}` }),
    go: () => child.stdin.write('go\n'),
    kill: () => child.kill(),
  };
}

const logged = (arun, re) => arun.logLines().filter((l) => re.test(l.msg || ''));

describe('tls', () => {
  test('the openai SDK streams over HTTPS while a renewed certificate is reloaded; a bad one is not', async () => {
    const dir = tempDir();
    const certPath = join(dir, 'fullchain.pem');
    const keyPath = join(dir, 'key.pem');
    ca.issue({ serial: '1001', certPath, keyPath });
    const maxTokens = 50; // at 10 tokens/s the stream lasts 5 s: open across the reload
    const arun = await new Arun({
      dir,
      config: `tls:\n  cert: ${certPath}\n  key: ${keyPath}\n` +
        `engines:\n  m:\n    cmd: ${mock('--tokens-per-s 10 --ignore-eos')}\n    start: always\n`,
    }).start();
    const sdk = sdkClient({ ARUN_URL: arun.url, MODEL: 'm', MAX_TOKENS: String(maxTokens) });
    try {
      assert.match(arun.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(logged(arun, /^serving subject .*serial 1001/).length, 1, arun.stderr);
      const engine = await waitFor(async () => {
        const r = await httpsGetJson(`${arun.url}/v1/engines/m`, ca.pem);
        return r.json.state === 'ready' && r.json;
      }, { timeoutMs: 15000, what: 'engine m ready' });
      assert.deepEqual((await sdk.next('models')).ids, ['m']);
      await sdk.next('first'); // the stream is open on the first connection
      assert.equal(await peerSerial(arun.port, ca.pem), '1001');

      ca.issue({ serial: '2002', certPath, keyPath });
      arun.proc.kill('SIGHUP');
      await waitFor(() => logged(arun, /^reloaded on SIGHUP: new connections get .*serial 2002/).length,
        { timeoutMs: 10000, what: 'the reload log line' });
      assert.equal(await peerSerial(arun.port, ca.pem), '2002', 'a new connection gets the renewed certificate');
      // The engine is still generating: the old stream was open across the reload.
      const stats = await (await fetch(`http://127.0.0.1:${engine.port}/mock/stats`)).json();
      assert.ok(stats.events_sent < maxTokens, `the stream ended before the reload: ${JSON.stringify(stats)}`);
      sdk.go();
      const done = await sdk.next('done');
      assert.equal(done.finish, 'length', JSON.stringify(done));
      assert.ok(done.chunks >= maxTokens, `the old stream was cut short: ${JSON.stringify(done)}`);
      assert.ok(done.content.length > 0);

      // A bad certificate at the next reload: logged with the file and why, the renewed one stays.
      writeFileSync(certPath, 'not a certificate\n');
      arun.proc.kill('SIGHUP');
      const fail = await waitFor(() => logged(arun, /^reload on SIGHUP failed/)[0],
        { timeoutMs: 10000, what: 'the failed reload log line' });
      assert.match(fail.msg, /still serving the previous certificate \(subject .*serial 2002/);
      assert.ok(fail.msg.includes(`tls.cert: ${certPath}: no PEM certificate in it`), fail.msg);
      assert.equal(await peerSerial(arun.port, ca.pem), '2002');
      assert.equal((await httpsGetJson(`${arun.url}/healthz`, ca.pem)).status, 200);
      assert.equal(arun.exit, null, 'arun is still running');

      // Both reloads are in the audit trail, by arun, on the certificate file.
      const audit = (await httpsGetJson(`${arun.url}/v1/audit?limit=100`, ca.pem)).json.data
        .filter((e) => e.action === 'tls.reload');
      assert.deepEqual(audit.map((e) => [e.actor, e.target, e.outcome]),
        [['arun', certPath, 'ok'], ['arun', certPath, 'failed']], JSON.stringify(audit));
      assert.equal(audit[0].detail.serial, '2002');
      assert.equal(audit[0].detail.previous_serial, '1001');
      assert.equal(audit[1].detail.serial_in_use, '2002');
      assert.match(audit[1].detail.reason, /no PEM certificate in it/);

      // The CLI: trusts the test CA named by ARUN_CA_FILE, refuses the certificate without it.
      const env = { ...process.env, ARUN_CA_FILE: ca.certPath };
      const ok = runArun(['engines', '--server', arun.url], { env });
      assert.equal(ok.status, 0, ok.stderr);
      assert.match(ok.stdout, /^m\s+ready/m);
      const untrusted = runArun(['engines', '--server', arun.url], { env: { ...process.env, ARUN_CA_FILE: '' } });
      assert.equal(untrusted.status, 1);
      assert.match(untrusted.stderr, /^arun: the certificate of the server at https:\/\/127\.0\.0\.1:\d+ is not trusted: .*ARUN_CA_FILE/m);
      const plain = runArun(['engines', '--server', arun.url.replace('https:', 'http:')]);
      assert.equal(plain.status, 3);
      assert.match(plain.stderr, /if it serves HTTPS, use https:\/\//);
    } finally {
      sdk.kill();
      await arun.cleanup();
    }
  });

  test('a queued request whose client closes its TLS connection leaves the queue at once', async () => {
    // A TLS client that leaves sends close_notify before its FIN: bytes arrive that h2o has not
    // read, so "the client is gone" must not depend on finding the socket empty.
    const dir = tempDir();
    const certPath = join(dir, 'fullchain.pem');
    const keyPath = join(dir, 'key.pem');
    ca.issue({ serial: '4004', certPath, keyPath });
    const arun = await new Arun({
      dir,
      config: `tls:\n  cert: ${certPath}\n  key: ${keyPath}\n` +
        `engines:\n  q:\n    cmd: ${mock('--tokens-per-s 10 --ignore-eos')}\n    max_concurrency: 1\n    start: always\n`,
    }).start();
    try {
      const engine = async () => (await httpsGetJson(`${arun.url}/v1/engines/q`, ca.pem)).json;
      const e = await waitFor(async () => { const x = await engine(); return x.state === 'ready' && x; },
        { timeoutMs: 15000, what: 'engine q ready' });
      const stats = async () => (await fetch(`http://127.0.0.1:${e.port}/mock/stats`)).json();
      const open = () => new Promise((res, rej) => {
        const s = tls.connect({ host: '127.0.0.1', port: arun.port, ca: ca.pem, ALPNProtocols: ['http/1.1'] }, () => res(s));
        s.on('error', rej);
      });
      const post = (s, content, maxTokens) => {
        const body = JSON.stringify({ model: 'q', messages: [{ role: 'user', content }], max_tokens: maxTokens });
        s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      };
      const busy = await open();
      let busyAnswer = '';
      busy.on('data', (d) => { busyAnswer += d; });
      post(busy, 'x', 30); // 3 s of the engine's one slot
      await waitFor(async () => (await stats()).concurrency === 1, { what: 'the engine busy' });
      const leaving = await open();
      leaving.on('error', () => {});
      post(leaving, 'gone', 2);
      await waitFor(async () => (await engine()).queued === 1, { what: 'the request queued' });
      leaving.end(); // close_notify, then FIN
      await waitFor(async () => (await engine()).queued === 0, { timeoutMs: 2000, what: 'the queue to empty' });
      assert.equal((await stats()).concurrency, 1, 'left the queue only when the slot freed');
      assert.ok(!busyAnswer.includes('"finish_reason"'), busyAnswer);
      busy.destroy();
    } finally { await arun.cleanup(); }
  });

  test('a certificate or key that cannot be served stops the start with the file and why (exit 2)', () => {
    const dir = tempDir();
    try {
      const cert = join(dir, 'cert.pem');
      const key = join(dir, 'key.pem');
      ca.issue({ serial: '3003', certPath: cert, keyPath: key });
      const other = join(dir, 'other.pem');
      const otherKey = join(dir, 'other.key');
      ca.issue({ serial: '3004', certPath: other, keyPath: otherKey });
      const expired = join(dir, 'expired.pem');
      const expiredKey = join(dir, 'expired.key');
      ca.issue({ serial: '3005', certPath: expired, keyPath: expiredKey,
        start: '20200101000000Z', end: '20200102000000Z' });
      const cases = [
        [join(dir, 'missing.pem'), key, `tls.cert: ${join(dir, 'missing.pem')}: cannot read: No such file or directory`],
        [cert, otherKey, `tls.key: ${otherKey} does not match the certificate in ${cert}`],
        [expired, expiredKey, `tls.cert: ${expired}: the certificate expired on 2020-01-02 00:00:00 UTC`],
        [cert, cert, `tls.key: ${cert}: no PEM private key in it`],
      ];
      for (const [c, k, message] of cases) {
        const cfg = join(dir, 'arun.yaml');
        writeFileSync(cfg, `data_dir: ${join(dir, 'data')}\ntls:\n  cert: ${c}\n  key: ${k}\n`);
        const r = runArun(['serve', '--config', cfg, '--listen', '127.0.0.1:0']);
        assert.equal(r.status, 2, r.stderr);
        assert.ok(r.stderr.includes(`arun: ${message}`), `wanted "${message}" in:\n${r.stderr}`);
      }
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });

  test('a non-loopback listen without tls: is refused with a sentence (exit 2)', () => {
    const dir = tempDir();
    try {
      const cfg = join(dir, 'arun.yaml');
      writeFileSync(cfg, `data_dir: ${join(dir, 'data')}\n`);
      const r = runArun(['serve', '--config', cfg, '--listen', '0.0.0.0:0']);
      assert.equal(r.status, 2);
      assert.match(r.stderr, /^arun: listen: 0\.0\.0\.0 is not a loopback address and tls: is not set: API keys, prompts and answers would cross the network in plain text\. Add tls: \{cert: FILE, key: FILE\} to the config, or write tls: off if a proxy in front of arun terminates TLS$/m);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });

  // Beyond loopback auth.mode must be keys as well (contract 6).
  test('with tls: off a non-loopback listen starts and warns', async () => {
    const arun = new Arun({ config: 'tls: off\nauth:\n  mode: keys\n', args: ['--listen', '0.0.0.0:0'] });
    try {
      await arun.start();
      assert.match(arun.url, /^http:\/\//);
      const [warn] = logged(arun, /tls: off is set: arun serves plain HTTP/);
      assert.equal(warn?.level, 'warn', arun.stderr);
      assert.match(warn.msg, /^listen: 0\.0\.0\.0 is not a loopback address and tls: off is set/);
    } finally { await arun.cleanup(); }
  });
});
