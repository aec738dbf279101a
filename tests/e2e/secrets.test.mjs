// No API key is ever readable (contract 6, issue 13): a server with auth.mode keys makes keys
// every way there is (the CLI on the store before the server runs, the CLI through the running
// server's socket, the CLI over HTTP, POST /v1/keys), uses them, revokes two (HTTP and CLI),
// and provokes errors with them: a key that differs from a real one by one character, a
// revoked key, a member key on admin routes, a key in the wrong header or scheme. Then every
// place a key could leak to is searched for every key's text: arun's whole stderr, every
// /metrics page, the /v1/events stream an admin followed throughout, every answer received
// (except the one that shows a new key, once), the CLI's output, and every file under data_dir
// (arun.db, its -wal and -shm, the engines' logs; under ARUN_TEST_STORE=postgres a dump of its
// database and PostgreSQL's server log instead of arun.db). Not only the whole key: any 12 characters in
// a row of its random part (72 bits: no accidental match) count, so a truncated or prefixed key
// in a log line is caught too. Key ids may appear; the SHA-256 of each key must be in the
// database (a check that the search reads the right files).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Arun, MOCK_BIN, createKey, runArun, assertNoSanitizerReport, waitFor, onPostgres } from './lib/arun.mjs';
import { pgDump, pgServerLog } from './lib/pg.mjs';

const config = [
  'auth:',
  '  mode: keys',
  'engines:',
  '  qwen:',
  `    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME}"`,
  '    start: always',
  '',
].join('\n');

const KEY_RE = /^arun-[A-Za-z0-9_-]{43}$/;
const WINDOW = 12;

// Every WINDOW-character run of the key's random part (after "arun-").
function windows(key) {
  const body = key.slice('arun-'.length);
  const out = [];
  for (let i = 0; i + WINDOW <= body.length; i++) out.push(body.slice(i, i + WINDOW));
  return out;
}

// The first secret that leaks in `text` ({what, at}), or null.
function leak(text, secrets) {
  for (const s of secrets) {
    if (text.includes(s.text)) return { what: `${s.name} (whole)`, at: text.indexOf(s.text) };
    for (const w of windows(s.text)) {
      if (text.includes(w)) return { what: `${s.name} (the run "${w}")`, at: text.indexOf(w) };
    }
  }
  return null;
}

function filesUnder(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) out.push(...filesUnder(p));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

describe('no key anywhere', () => {
  let arun;
  const secrets = []; // {name, text, id}
  const seen = []; // {where, text}: everything the test received or arun wrote
  let events; // the admin's /v1/events stream, followed from start to end

  const remember = (where, text) => seen.push({ where, text });

  async function call(key, method, path, { body, headers = {}, where } = {}) {
    const h = { ...headers };
    if (key !== undefined) h.authorization = `Bearer ${key}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    const res = await fetch(`${arun.url}${path}`, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    const head = [...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n');
    remember(where ?? `${method} ${path} -> ${res.status}`, `${head}\n\n${text}`);
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, text, json };
  }

  // `arun keys …` as a user runs it; its output is searched too (except a create's stdout,
  // which is the key itself, shown once).
  function cli(args, { env = {}, showsKey = false } = {}) {
    const e = { ...process.env, ...env };
    if (!('ARUN_URL' in env)) delete e.ARUN_URL;
    if (!('ARUN_API_KEY' in env)) delete e.ARUN_API_KEY;
    const r = runArun(args, { env: e });
    assertNoSanitizerReport(r.stderr, `arun ${args.join(' ')}`);
    remember(`arun ${args[0]} ${args[1]} stderr`, r.stderr);
    if (!showsKey) remember(`arun ${args[0]} ${args[1]} stdout`, r.stdout);
    return r;
  }

  const add = (name, k) => {
    assert.match(k.key, KEY_RE, name);
    secrets.push({ name, text: k.key, id: k.id });
    return k;
  };

  let admin, member, viaSocket, viaHttpCli, viaPost;

  before(async () => {
    arun = new Arun({ config });
    // 1. The CLI on the store itself (no server runs yet).
    admin = add('admin (CLI, store)', await createKey(arun, { tenant: 'acme', role: 'admin', name: 'ops' }));
    member = add('member (CLI, store)', await createKey(arun, { tenant: 'acme', role: 'member', name: 'app' }));
    await arun.start();
    const res = await fetch(`${arun.url}/v1/events`, { headers: { authorization: `Bearer ${admin.key}`, 'last-event-id': '0' } });
    assert.equal(res.status, 200);
    events = { text: '', done: null, ac: null };
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    events.done = (async () => {
      for (;;) {
        const { value, done } = await reader.read().catch(() => ({ done: true }));
        if (done) return;
        events.text += dec.decode(value, { stream: true });
      }
    })();
    events.cancel = () => reader.cancel().catch(() => {});
    await waitFor(async () => (await call(admin.key, 'GET', '/v1/engines/qwen')).json?.state === 'ready', { what: 'the engine ready' });
  });

  after(async () => {
    await events?.cancel?.();
    await arun?.cleanup();
  });

  test('keys made, used, revoked and misused leave no trace of their text', async () => {
    // 2. The CLI through the running server's owner-only socket.
    viaSocket = add('member (CLI, socket)', await createKey(arun, { tenant: 'globex', role: 'member', name: 'socket' }));
    // 3. The CLI over HTTP with an admin key.
    const r = cli(['keys', 'create', '--server', arun.url, '--api-key', admin.key, '--tenant', 'globex', '--role', 'member', '--name', 'http-cli', '--json'], { showsKey: true });
    assert.equal(r.status, 0, r.stderr);
    const made = JSON.parse(r.stdout);
    viaHttpCli = add('member (CLI, HTTP)', { id: made.id, key: made.key });
    // 4. POST /v1/keys: the answer shows the key once (not searched); everything else is.
    const res = await fetch(`${arun.url}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 'initech', role: 'admin', name: 'post' }),
    });
    const created = await res.json();
    assert.equal(res.status, 201, JSON.stringify(created));
    viaPost = add('admin (POST /v1/keys)', { id: created.id, key: created.key });

    // Use every key.
    for (const k of [member, viaSocket, viaHttpCli]) {
      const c = await call(k.key, 'POST', '/v1/responses', { body: { model: 'qwen', input: 'hello', max_output_tokens: 16 } });
      assert.equal(c.status, 200, c.text);
      const g = await call(k.key, 'GET', `/v1/responses/${c.json.id}`);
      assert.equal(g.status, 200, g.text);
      const chat = await call(k.key, 'POST', '/v1/chat/completions', { body: { model: 'qwen', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 } });
      assert.equal(chat.status, 200, chat.text);
    }
    for (const k of [admin, viaPost]) {
      assert.equal((await call(k.key, 'GET', '/metrics')).status, 200);
      assert.equal((await call(k.key, 'GET', '/v1/keys')).status, 200);
    }
    const ls = cli(['keys', 'ls', '--config', arun.configPath, '--json']);
    assert.equal(ls.status, 0, ls.stderr);
    const lsHttp = cli(['keys', 'ls', '--server', arun.url, '--api-key', viaPost.key]);
    assert.equal(lsHttp.status, 0, lsHttp.stderr);
    for (const s of secrets) assert.ok(ls.stdout.includes(s.id), `keys ls shows ${s.id}: ${ls.stdout}`);

    // Revoke two: one over HTTP, one with the CLI.
    const rv = await call(admin.key, 'POST', `/v1/keys/${viaSocket.id}/revoke`);
    assert.equal(rv.status, 200, rv.text);
    const rvCli = cli(['keys', 'revoke', viaHttpCli.id, '--config', arun.configPath]);
    assert.equal(rvCli.status, 0, rvCli.stderr);

    // Errors with them.
    const oneOff = (key) => {
      const i = key.length - 7;
      return key.slice(0, i) + (key[i] === 'A' ? 'B' : 'A') + key.slice(i + 1);
    };
    const wrong = oneOff(member.key);
    const wrongAdmin = oneOff(admin.key);
    secrets.push({ name: 'a one-character typo of the member key', text: wrong }, { name: 'a typo of the admin key', text: wrongAdmin });
    for (const [k, status] of [[wrong, 401], [wrongAdmin, 401], [viaSocket.key, 401], [viaHttpCli.key, 401]]) {
      for (const [m, p] of [['GET', '/v1/models'], ['GET', '/v1/responses'], ['GET', '/v1/engines'], ['GET', '/v1/events?after=0'], ['GET', '/metrics'], ['POST', '/v1/keys']]) {
        const e = await call(k, m, p, { body: m === 'POST' ? { tenant: 'x' } : undefined });
        assert.equal(e.status, status, `${m} ${p}: ${e.text}`);
      }
    }
    for (const [m, p] of [['GET', '/metrics'], ['GET', '/v1/engines'], ['POST', '/v1/engines/qwen/stop'], ['GET', '/v1/keys'], ['POST', '/v1/keys']]) {
      const e = await call(member.key, m, p, { body: m === 'POST' ? { tenant: 'acme' } : undefined });
      assert.equal(e.status, 403, `${m} ${p}: ${e.text}`);
    }
    // The key where it does not belong: another scheme, a query string, a second header, a body.
    await call(undefined, 'GET', '/v1/models', { headers: { authorization: `Basic ${member.key}` } });
    await call(undefined, 'GET', '/v1/models', { headers: { authorization: `Bearer ${member.key} ${admin.key}` } });
    await call(undefined, 'GET', '/v1/models', { headers: { authorization: `Bearer  ${wrong}` } });
    await call(undefined, 'GET', `/v1/models?api_key=${member.key}`);
    await call(member.key, 'POST', '/v1/responses', { body: { model: 'no-such-model', input: 'x' } });
    const cliWrong = cli(['keys', 'ls', '--server', arun.url, '--api-key', wrong]);
    assert.notEqual(cliWrong.status, 0);
    const cliRevoked = cli(['keys', 'ls', '--server', arun.url, '--api-key', viaSocket.key]);
    assert.notEqual(cliRevoked.status, 0);
    const audit = await call(admin.key, 'GET', '/v1/audit?limit=100');
    assert.ok([200, 404].includes(audit.status), audit.text); // 404 until the audit route lands

    // Every /metrics page, now that everything happened.
    assert.equal((await call(admin.key, 'GET', '/metrics')).status, 200);
    // The events the admin saw (its stream followed all of it, from the first event on): one
    // more run's end there says the stream has caught up with everything before it.
    const last = await call(admin.key, 'POST', '/v1/responses', { body: { model: 'qwen', input: 'last', max_output_tokens: 16 } });
    assert.equal(last.status, 200, last.text);
    await waitFor(() => events.text.split('\n').some((l) => l.includes(last.json.id) && /"status":"(completed|incomplete)"/.test(l)),
      { what: `the admin's event stream to show the last run's end (${events.text.length} bytes so far)` });
    remember('/v1/events (admin)', events.text);

    // Stop arun (its last log lines included), then read everything it wrote.
    await events.cancel();
    const stop = await arun.stop('SIGTERM');
    assert.equal(stop.code, 0, JSON.stringify(stop));
    remember("arun's stderr", arun.stderr);
    const files = filesUnder(arun.dataDir).filter((f) => !f.endsWith('.sock'));
    if (!onPostgres) assert.ok(files.some((f) => f.endsWith('arun.db')), files.join(' '));
    let db = '';
    for (const f of files) {
      const text = readFileSync(f).toString('latin1');
      remember(f, text);
      if (/arun\.db/.test(f)) db += text;
    }
    if (onPostgres) {
      // The database is PostgreSQL's: all of its rows, and the server's log of errors.
      db = pgDump(arun.pg.url);
      remember('the PostgreSQL database (pg_dump)', db);
      remember("PostgreSQL's server log", pgServerLog());
    }

    // The search.
    const found = [];
    for (const s of seen) {
      const l = leak(s.text, secrets);
      if (l) found.push(`${l.what} in ${s.where}: …${s.text.slice(Math.max(0, l.at - 120), l.at + 60)}…`);
    }
    assert.deepEqual(found, [], 'key text found');
    // What was searched is what it should be: arun logged these requests, stored these keys.
    assert.ok(arun.stderr.includes('/v1/keys'), "arun's log holds the requests");
    for (const s of secrets.filter((x) => x.id)) {
      const hash = createHash('sha256').update(s.text).digest('hex');
      assert.ok(db.includes(hash) || db.includes(hash.toUpperCase()), `the database holds ${s.name}'s SHA-256`);
      assert.ok(db.includes(s.id), `the database holds ${s.id}`);
    }
    console.log(`secrets: ${secrets.length} keys (and typos) searched for, in ${seen.length} texts (${seen.reduce((n, s) => n + s.text.length, 0)} bytes): none found`);
  });
});
