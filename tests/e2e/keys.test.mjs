// API keys (auth.mode: keys, contract 6): the keys verbs with and without a running server, the
// gate's 401 and 403, revocation from the next request on, the public probes, and the owner-only
// socket DATA_DIR/arun.sock (mode 0600, replaced when stale, gone after a clean stop).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { existsSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Arun, createKey, runArun, assertNoSanitizerReport } from './lib/arun.mjs';

const KEYS_CONFIG = 'auth:\n  mode: keys\n';

// `arun keys …` on arun's data_dir (no ARUN_URL: the socket, or the store).
function keysCli(arun, args, env = {}) {
  const e = { ...process.env, ...env };
  if (!('ARUN_URL' in env)) delete e.ARUN_URL;
  if (!('ARUN_API_KEY' in env)) delete e.ARUN_API_KEY;
  const r = runArun(['keys', ...args, '--config', arun.configPath], { env: e });
  assertNoSanitizerReport(r.stderr, `arun keys ${args.join(' ')}`);
  return r;
}

const get = (arun, path, key, headers = {}) => fetch(`${arun.url}${path}`, {
  headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
});

// A 401 as API.md says: OpenAI's shape, code invalid_api_key, WWW-Authenticate: Bearer, and
// the presented value nowhere in the answer.
async function assert401(r, presented) {
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer');
  const text = await r.text();
  if (presented) assert.ok(!text.includes(presented), `the 401 echoes the key: ${text}`);
  const body = JSON.parse(text);
  assert.equal(body.error.type, 'invalid_request_error');
  assert.equal(body.error.code, 'invalid_api_key');
  assert.equal(typeof body.error.message, 'string');
  return body;
}

// One raw HTTP/1.1 request over TCP, for a header no fetch would send; resolves with the text.
function rawRequest(port, head) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('connect', () => s.write(head));
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (/\r\n\r\n[\s\S]*\}\}/.test(got)) s.destroy();
    });
    s.on('error', () => {});
    s.on('close', () => resolve(got));
  });
}

describe('API keys', () => {
  let arun;
  let admin;
  let member;
  const keysSeen = [];

  before(async () => {
    arun = new Arun({ config: KEYS_CONFIG });
    // Before any server runs: the CLI opens the store itself.
    admin = await createKey(arun, { tenant: 'acme', role: 'admin', name: 'first admin' });
    keysSeen.push(admin.key);
    await arun.start();
    // With the server running: through its owner-only socket.
    member = await createKey(arun, { tenant: 'acme', role: 'member', name: 'app' });
    keysSeen.push(member.key);
  });

  after(async () => {
    if (arun.proc && !arun.exit) await arun.stop();
    for (const k of keysSeen) {
      assert.ok(!arun.stderr.includes(k), `a key appears in arun's log: ${arun.stderr.split('\n').find((l) => l.includes(k))}`);
    }
    await arun.cleanup();
  });

  test('a key has the documented shape: arun- and 43 base64url characters; id key_ and 16 hex', () => {
    for (const k of [admin, member]) {
      assert.match(k.key, /^arun-[A-Za-z0-9_-]{43}$/);
      assert.match(k.id, /^key_[0-9a-f]{16}$/);
    }
  });

  test('the key made before the server ran, and the one made through its socket, both let requests through', async () => {
    const a = await get(arun, '/v1/engines', admin.key);
    assert.equal(a.status, 200, await a.text());
    const m = await get(arun, '/v1/models', member.key);
    assert.equal(m.status, 200, await m.text());
  });

  test('both creations are in the audit trail: the one made on the store says so', async () => {
    const r = await get(arun, '/v1/audit?limit=100', admin.key);
    assert.equal(r.status, 200);
    const creates = (await r.json()).data.filter((e) => e.action === 'key.create');
    const first = creates.find((e) => e.target === admin.id);
    const second = creates.find((e) => e.target === member.id);
    assert.ok(first && second, JSON.stringify(creates));
    assert.deepEqual([first.actor, first.remote, first.outcome, first.detail.via], ['local', 'local', 'ok', 'store']);
    assert.deepEqual([first.detail.tenant, first.detail.role], ['acme', 'admin']);
    assert.deepEqual([second.actor, second.remote, second.detail.via], ['local', 'local', undefined]);
  });

  test('keys create prints the key alone on stdout and says on stderr that it is shown once', () => {
    const r = keysCli(arun, ['create', '--tenant', 'acme']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^arun-[A-Za-z0-9_-]{43}\n$/);
    keysSeen.push(r.stdout.trim());
    assert.match(r.stderr, /shown only this once/);
    assert.ok(!r.stderr.includes(r.stdout.trim()), 'the key is repeated on stderr');
  });

  test('keys ls shows every key, never its text or hash', () => {
    const r = keysCli(arun, ['ls']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout.split('\n')[0], /^ID\s+TENANT\s+ROLE\s+CREATED\s+LAST-USED\s+REVOKED\s+NAME$/);
    assert.ok(r.stdout.includes(admin.id) && r.stdout.includes(member.id));
    assert.match(r.stdout, /first admin/);
    const j = keysCli(arun, ['ls', '--json']);
    assert.equal(j.status, 0, j.stderr);
    const list = JSON.parse(j.stdout);
    assert.equal(list.object, 'list');
    const mine = list.data.find((k) => k.id === member.id);
    assert.deepEqual(Object.keys(mine).sort(),
      ['created_at', 'id', 'last_used_at', 'name', 'object', 'revoked_at', 'role', 'tenant']);
    assert.equal(mine.role, 'member');
    assert.equal(typeof mine.last_used_at, 'number', 'the member key was used above');
    for (const k of keysSeen) {
      assert.ok(!r.stdout.includes(k) && !j.stdout.includes(k), 'keys ls shows a key');
    }
    assert.ok(!/[0-9a-f]{64}/.test(r.stdout + j.stdout), 'keys ls shows a hash');
  });

  test('a member key on an admin route gets 403 naming the role needed', async () => {
    const r = await get(arun, '/v1/engines', member.key);
    assert.equal(r.status, 403);
    const body = await r.json();
    assert.equal(body.error.code, 'insufficient_role');
    assert.match(body.error.message, /needs an admin key/);
    assert.ok(body.error.message.includes(member.id));
    assert.match(body.error.message, /member key/);
    const keys = await get(arun, '/v1/keys', member.key);
    assert.equal(keys.status, 403);
  });

  test('401 for no key, another scheme, a malformed key, an unknown key, an over-long bearer', async () => {
    await assert401(await get(arun, '/v1/models'));
    await assert401(await get(arun, '/v1/models', null, { authorization: `Basic ${member.key}` }),
      member.key);
    await assert401(await get(arun, '/v1/models', 'not-a-key'), 'not-a-key');
    const unknown = `arun-${'A'.repeat(43)}`;
    await assert401(await get(arun, '/v1/models', unknown), unknown);
    const long = `arun-${'b'.repeat(4000)}`;
    const b = await assert401(await get(arun, '/v1/models', long), long);
    assert.match(b.error.message, /512 bytes/);
  });

  test('a 1 MB bearer is refused without echoing it, and arun stays up', async () => {
    const big = 'k'.repeat(1 << 20);
    const text = await rawRequest(arun.port,
      `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${big}\r\n\r\n`);
    // h2o refuses a head this large itself (its shape is the hostile suite's business).
    assert.match(text, /^HTTP\/1\.1 4\d\d /);
    assert.ok(!text.includes('k'.repeat(100)), 'the answer echoes the bearer');
    const after = await get(arun, '/v1/models', member.key);
    assert.equal(after.status, 200);
  });

  test('/healthz and /readyz need no key', async () => {
    assert.equal((await get(arun, '/healthz')).status, 200);
    assert.equal((await get(arun, '/readyz')).status, 200);
  });

  test('an admin key manages keys over HTTP; bad input gets 400/404 in the OpenAI shape', async () => {
    const post = (path, body, key = admin.key) => fetch(`${arun.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const made = await post('/v1/keys', { tenant: 'beta', name: 'ci' });
    assert.equal(made.status, 201);
    const k = await made.json();
    keysSeen.push(k.key);
    assert.equal(k.object, 'api_key');
    assert.equal(k.role, 'member');
    assert.equal(k.tenant, 'beta');
    assert.equal((await get(arun, '/v1/models', k.key)).status, 200);

    for (const [body, param] of [[{ tenant: 'beta', role: 'root' }, 'role'],
      [{ tenant: 'Bad Name' }, 'tenant'], [{}, 'tenant'], [{ tenant: 'x', colour: 1 }, 'colour']]) {
      const r = await post('/v1/keys', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal((await r.json()).error.param, param);
    }
    const unknown = await post('/v1/keys/key_0123456789abcdef/revoke', {});
    assert.equal(unknown.status, 404);
    assert.match((await unknown.json()).error.message, /key_0123456789abcdef/);
    const pasted = await post(`/v1/keys/${k.key}/revoke`, {});
    assert.equal(pasted.status, 404);
    assert.ok(!(await pasted.text()).includes(k.key), 'a 404 echoes a key pasted as an id');

    const page = await get(arun, '/v1/keys?limit=1', admin.key);
    const p = await page.json();
    assert.equal(p.data.length, 1);
    assert.equal(p.has_more, true);
    assert.equal((await get(arun, '/v1/keys?limit=0', admin.key)).status, 400);
  });

  test('the CLI talks HTTP with --server/ARUN_URL and an admin key; a member key is refused', () => {
    const ok = keysCli(arun, ['ls', '--json'], { ARUN_URL: arun.url, ARUN_API_KEY: admin.key });
    assert.equal(ok.status, 0, ok.stderr);
    assert.ok(JSON.parse(ok.stdout).data.some((k) => k.id === admin.id));
    const no = keysCli(arun, ['ls'], { ARUN_URL: arun.url, ARUN_API_KEY: member.key });
    assert.equal(no.status, 1);
    assert.match(no.stderr, /needs an admin key/);
  });

  test('a revoked key gets 401 on its next request', async () => {
    const k = await createKey(arun, { tenant: 'acme' });
    keysSeen.push(k.key);
    assert.equal((await get(arun, '/v1/models', k.key)).status, 200);
    const r = keysCli(arun, ['revoke', k.id]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${k.id} revoked`));
    const body = await assert401(await get(arun, '/v1/models', k.key), k.key);
    assert.match(body.error.message, /revoked/);
    const listed = JSON.parse(keysCli(arun, ['ls', '--json']).stdout).data.find((x) => x.id === k.id);
    assert.equal(typeof listed.revoked_at, 'number');
    const again = keysCli(arun, ['revoke', 'key_ffffffffffffffff']);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /No API key/);
  });

  test('the owner-only socket is mode 0600 while arun runs', () => {
    const sock = join(arun.dataDir, 'arun.sock');
    const st = statSync(sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
  });
});

describe('the owner-only socket', () => {
  test('is removed by a clean stop, and a stale one is replaced at start', async () => {
    const first = await new Arun({ config: KEYS_CONFIG }).start();
    const sock = join(first.dataDir, 'arun.sock');
    let last = first;
    try {
      assert.ok(existsSync(sock));
      assert.equal((await first.stop('SIGTERM')).code, 0);
      assertNoSanitizerReport(first.stderr);
      assert.ok(!existsSync(sock), 'arun.sock is left after SIGTERM');

      const killed = await new Arun({ config: KEYS_CONFIG, dir: first.dir }).start();
      await killed.stop('SIGKILL');
      assert.ok(existsSync(sock), 'SIGKILL leaves the socket behind (the case to handle)');
      last = await new Arun({ config: KEYS_CONFIG, dir: first.dir }).start();
      const k = await createKey(last, { tenant: 'acme', role: 'admin' }); // through the new socket
      assert.equal((await get(last, '/v1/engines', k.key)).status, 200);
    } finally {
      await last.cleanup();
    }
  });

  test('a server that holds the data_dir but does not answer its socket is an error in words', async () => {
    const arun = new Arun({ config: KEYS_CONFIG });
    try {
      await arun.start();
      unlinkSync(join(arun.dataDir, 'arun.sock'));
      const r = keysCli(arun, ['ls']);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /in use by another arun .* does not answer on its owner-only socket/);
    } finally {
      await arun.cleanup();
    }
  });

  test('with auth.mode none the socket still gives the owner the keys verbs', async () => {
    const arun = new Arun();
    try {
      await arun.start();
      const k = await createKey(arun, { tenant: 'acme' });
      assert.match(k.key, /^arun-/);
      const ls = keysCli(arun, ['ls', '--json']);
      assert.equal(ls.status, 0, ls.stderr);
      assert.equal(JSON.parse(ls.stdout).data.length, 1);
    } finally {
      await arun.cleanup();
    }
  });

  test('auth.mode none still refuses a listen address beyond loopback, even with tls: off', () => {
    const arun = new Arun({ config: 'listen: 0.0.0.0:18556\ntls: off\n' });
    const r = runArun(['serve', '--config', arun.configPath]);
    arun.cleanup();
    assert.equal(r.status, 2);
    assert.match(r.stderr, /not a loopback address and auth\.mode is none/);
  });
});
