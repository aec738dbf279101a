// Tenant isolation (contract 6, issue 13): with auth.mode keys, tenant A makes responses (plain,
// background, streamed, still running and finished), conversations and items; tenant B, with a
// member key of its own, tries every route of the API with A's ids. Each answer must be exactly
// what an id nobody has gets (status and body, the id's text aside), and A's objects must be
// untouched afterwards. The routes are read from the source (every http_route(…) call, and the
// runs' route(…) wrapper): a member route without a case here fails the test, so a new route
// cannot ship unwalked; every admin route is walked with a member key and must answer 403
// naming the role. Also: B's /v1/events shows none of A's run events (live or replayed with
// Last-Event-ID), the same Idempotency-Key used by both tenants makes two responses, and a
// background run keeps its tenant through a restart (recovery).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Arun, MOCK_BIN, ROOT, createKey, runArun, waitFor } from './lib/arun.mjs';

const config = [
  'auth:',
  '  mode: keys',
  'engines:',
  '  fast:',
  `    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME}"`,
  '    start: always',
  '  slow:',
  // A slow engine keeps A's runs live (in memory) while B probes them.
  `    cmd: "${MOCK_BIN} --port \${PORT} --model \${NAME} --tokens-per-s 20 --ignore-eos --max-tokens 100000"`,
  '    start: always',
  '    max_concurrency: 16',
  '',
].join('\n');

const TENANT_A = 'tenant-a';
const TENANT_B = 'tenant-b';

// ---- the routes the source registers ----

function sourceFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (p.endsWith('.c')) out.push(p);
  }
  return out;
}

// Every route the daemon registers: {method, pattern, access, where}. An http_route(…) call this
// cannot read (a method or pattern that is not a literal) fails the test: a new wrapper must be
// taught here, as the runs' route(a, "METHOD", "/pattern", fn) is.
function registeredRoutes() {
  const routes = [];
  const unread = [];
  for (const file of sourceFiles(join(ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8');
    const rel = relative(ROOT, file);
    for (const m of text.matchAll(/\bhttp_route\s*\(/g)) {
      const rest = text.slice(m.index, m.index + 400);
      const lit = /^http_route\s*\(\s*[^,]+,\s*"([A-Z]+)"\s*,\s*"([^"]+)"\s*,\s*(HTTP_[A-Z]+)/.exec(rest);
      if (lit) {
        routes.push({ method: lit[1], pattern: lit[2], access: lit[3], where: rel });
      } else if (/^http_route\s*\(\s*struct\b/.test(rest)) {
        continue; // its definition
      } else if (rel === join('src', 'http', 'assets.c') && /^http_route\s*\(\s*srv,\s*"([A-Z]+)",\s*a->path,\s*HTTP_PUBLIC\b/.test(rest)) {
        // The console's embedded files, one route per file: the same bytes for everyone.
        const w = /"([A-Z]+)"/.exec(rest);
        routes.push({ method: w[1], pattern: '(console asset)', access: 'HTTP_PUBLIC', where: rel });
      } else if (rel === join('src', 'runs', 'api.c') && /^http_route\s*\(\s*a->srv,\s*method,\s*pattern,\s*HTTP_MEMBER\b/.test(rest)) {
        for (const w of text.matchAll(/\broute\s*\(\s*a\s*,\s*"([A-Z]+)"\s*,\s*"([^"]+)"/g)) {
          routes.push({ method: w[1], pattern: w[2], access: 'HTTP_MEMBER', where: rel });
        }
      } else {
        unread.push(`${rel}: ${rest.split('\n')[0]}`);
      }
    }
  }
  return { routes, unread };
}

// ---- HTTP ----

async function call(arun, key, method, path, { body, headers = {} } = {}) {
  const h = { ...headers };
  if (key) h.authorization = `Bearer ${key}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(`${arun.url}${path}`, {
    method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, text, json, headers: res.headers };
}

// Reads SSE events ({event, data, id}) from a fetch Response until until(ev, all) is true;
// returns the events and the reader (still open).
async function readSse(res, until) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  const events = [];
  let buf = '';
  while (!events.length || !until(events[events.length - 1], events)) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    for (let i; (i = buf.indexOf('\n\n')) >= 0; buf = buf.slice(i + 2)) {
      const block = buf.slice(0, i);
      const data = /^data: (.*)$/m.exec(block);
      if (!data) continue;
      events.push({ event: /^event: (.*)$/m.exec(block)?.[1], id: /^id: (.*)$/m.exec(block)?.[1], data: JSON.parse(data[1]) });
      if (until(events[events.length - 1], events)) break;
    }
  }
  return { events, reader };
}

const hex = (n) => randomBytes(n).toString('hex');
// An id nobody has, shaped like `like` (same prefix and length).
function unknownLike(like) {
  const p = /^([a-z]+_)/.exec(like)?.[1] ?? '';
  return (p + hex(like.length)).slice(0, like.length);
}

// The body with every id of `ids` replaced by one placeholder, for comparing answers.
function normalise(text, ids) {
  let t = text;
  for (const id of ids) t = t.split(id).join('<ID>');
  return t;
}

describe('tenant isolation', () => {
  let arun;
  let keyA, keyB, keyAdmin;
  const A = {}; // tenant A's objects
  const walked = new Map(); // "METHOD pattern" -> the cases that walked it
  const openStreams = [];

  const mark = (route, what) => {
    if (!walked.has(route)) walked.set(route, []);
    walked.get(route).push(what);
  };

  // B's answer with A's ids must be the answer with ids nobody has: same status and body (the
  // ids' text aside). `build(ids)` makes the request for a set of ids.
  async function sameAsUnknown(route, what, build, aIds, { status = 404 } = {}) {
    mark(route, what);
    const unknown = Object.fromEntries(Object.entries(aIds).map(([k, v]) => [k, unknownLike(v)]));
    const [m, p, opts] = build(aIds);
    const got = await call(arun, keyB.key, m, p, opts);
    const [um, up, uopts] = build(unknown);
    const ref = await call(arun, keyB.key, um, up, uopts);
    const ctx = `${what}: ${m} ${p}\n  with A's ids: ${got.status} ${got.text}\n  with unknown ids: ${ref.status} ${ref.text}`;
    assert.equal(ref.status, status, ctx);
    assert.equal(got.status, ref.status, ctx);
    assert.equal(normalise(got.text, Object.values(aIds)), normalise(ref.text, Object.values(unknown)), ctx);
    assert.equal(typeof got.json?.error?.message, 'string', ctx);
    assert.ok(!got.text.includes(A.secretText), ctx); // nothing of A's beyond the ids B sent
    return got;
  }

  before(async () => {
    arun = new Arun({ config });
    keyA = await createKey(arun, { tenant: TENANT_A, role: 'member', name: 'a' });
    keyB = await createKey(arun, { tenant: TENANT_B, role: 'member', name: 'b' });
    keyAdmin = await createKey(arun, { tenant: 'ops', role: 'admin', name: 'ops' });
    await arun.start();
    await waitFor(async () => {
      const r = await call(arun, keyAdmin.key, 'GET', '/v1/engines');
      return r.status === 200 && r.json.data.every((e) => e.state === 'ready');
    }, { what: 'both engines ready', timeoutMs: 20000 });

    // Tenant A's objects.
    A.secretText = `secret-of-a-${hex(6)}`;
    const plain = await call(arun, keyA.key, 'POST', '/v1/responses', {
      body: { model: 'fast', input: A.secretText, max_output_tokens: 16, metadata: { owner: 'a' } },
    });
    assert.equal(plain.status, 200, plain.text);
    A.plain = plain.json.id;
    A.outputItem = plain.json.output[0].id;
    const items = await call(arun, keyA.key, 'GET', `/v1/responses/${A.plain}/input_items`);
    assert.equal(items.status, 200, items.text);
    A.inputItem = items.json.data[0].id;

    const bg = await call(arun, keyA.key, 'POST', '/v1/responses', {
      body: { model: 'slow', input: A.secretText, background: true, max_output_tokens: 5000 },
    });
    assert.equal(bg.status, 200, bg.text);
    A.background = bg.json.id;
    await waitFor(async () => (await call(arun, keyA.key, 'GET', `/v1/responses/${A.background}`)).json?.status === 'in_progress',
      { what: "A's background run to be in progress" });

    const sres = await fetch(`${arun.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keyA.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'slow', input: A.secretText, stream: true, max_output_tokens: 5000 }),
    });
    assert.equal(sres.status, 200);
    const s = await readSse(sres, (e) => e.event === 'response.output_text.delta');
    A.streamed = s.events[0].data.response.id;
    openStreams.push(s.reader);

    const conv = await call(arun, keyA.key, 'POST', '/v1/conversations', {
      body: { metadata: { owner: 'a' }, items: [{ type: 'message', role: 'user', content: A.secretText }] },
    });
    assert.equal(conv.status, 200, conv.text);
    A.conv = conv.json.id;
    const citems = await call(arun, keyA.key, 'GET', `/v1/conversations/${A.conv}/items`);
    A.convItem = citems.json.data[0].id;
    const turn = await call(arun, keyA.key, 'POST', '/v1/responses', {
      body: { model: 'fast', conversation: A.conv, input: 'and then?', max_output_tokens: 16 },
    });
    assert.equal(turn.status, 200, turn.text);
    A.convTurn = turn.json.id;

    // B has objects of its own, so that its lists are not empty by accident.
    const b = await call(arun, keyB.key, 'POST', '/v1/responses', { body: { model: 'fast', input: 'b', max_output_tokens: 16 } });
    assert.equal(b.status, 200, b.text);
    const bconv = await call(arun, keyB.key, 'POST', '/v1/conversations', { body: {} });
    assert.equal(bconv.status, 200, bconv.text);
    A.bResponse = b.json.id;
    A.bConv = bconv.json.id;
  });

  after(async () => {
    for (const r of openStreams) await r.cancel().catch(() => {});
    await arun?.cleanup();
  });

  test('every route with another tenant\'s ids answers exactly as for ids nobody has', async () => {
    const R = (m, p) => `${m} ${p}`;
    // ---- responses ----
    for (const [name, id] of [['plain', A.plain], ['background (live)', A.background], ['streamed (live)', A.streamed], ['conversation turn', A.convTurn]]) {
      await sameAsUnknown(R('GET', '/v1/responses/{id}'), `get ${name}`, (x) => ['GET', `/v1/responses/${x.id}`], { id });
      await sameAsUnknown(R('GET', '/v1/responses/{id}'), `stream ${name}`, (x) => ['GET', `/v1/responses/${x.id}?stream=true`], { id });
      await sameAsUnknown(R('GET', '/v1/responses/{id}'), `resume ${name} starting_after=0`, (x) => ['GET', `/v1/responses/${x.id}?stream=true&starting_after=0`], { id });
      await sameAsUnknown(R('GET', '/v1/responses/{id}'), `resume ${name} Last-Event-ID`, (x) => ['GET', `/v1/responses/${x.id}?stream=true`, { headers: { 'last-event-id': '1' } }], { id });
      await sameAsUnknown(R('GET', '/v1/responses/{id}/input_items'), `input_items of ${name}`, (x) => ['GET', `/v1/responses/${x.id}/input_items`], { id });
      await sameAsUnknown(R('POST', '/v1/responses/{id}/cancel'), `cancel ${name}`, (x) => ['POST', `/v1/responses/${x.id}/cancel`], { id });
      await sameAsUnknown(R('DELETE', '/v1/responses/{id}'), `delete ${name}`, (x) => ['DELETE', `/v1/responses/${x.id}`], { id });
    }
    // A cursor is a lookup too.
    await sameAsUnknown(R('GET', '/v1/responses'), 'list after A\'s id', (x) => ['GET', `/v1/responses?after=${x.id}`], { id: A.plain });
    await sameAsUnknown(R('GET', '/v1/responses/{id}/input_items'), 'B\'s input_items after A\'s item', (x) => ['GET', `/v1/responses/${A.bResponse}/input_items?after=${x.id}`], { id: A.inputItem });
    mark(R('GET', '/v1/responses'), 'listing');
    for (const q of ['', '?status=in_progress', '?status=completed', '?limit=100']) {
      const list = await call(arun, keyB.key, 'GET', `/v1/responses${q}`);
      assert.equal(list.status, 200, list.text);
      for (const id of [A.plain, A.background, A.streamed, A.convTurn]) assert.ok(!list.text.includes(id), `B's listing${q} shows A's ${id}: ${list.text}`);
      assert.ok(!list.text.includes(A.secretText), list.text);
    }
    assert.ok((await call(arun, keyB.key, 'GET', '/v1/responses')).text.includes(A.bResponse), "B's listing shows B's own response");

    // ---- a create that names A's objects ----
    const create = R('POST', '/v1/responses');
    await sameAsUnknown(create, 'previous_response_id', (x) => ['POST', '/v1/responses', { body: { model: 'fast', input: 'hi', previous_response_id: x.id } }], { id: A.plain });
    await sameAsUnknown(create, 'previous_response_id of a live run', (x) => ['POST', '/v1/responses', { body: { model: 'fast', input: 'hi', previous_response_id: x.id } }], { id: A.background });
    await sameAsUnknown(create, 'conversation', (x) => ['POST', '/v1/responses', { body: { model: 'fast', input: 'hi', conversation: x.id } }], { id: A.conv });
    // An unknown item_reference is a 400 naming input[i].id (docs/responses.md): A's are the same.
    for (const item of [A.outputItem, A.inputItem, A.convItem]) {
      await sameAsUnknown(create, 'item_reference', (x) => ['POST', '/v1/responses', { body: { model: 'fast', input: [{ type: 'item_reference', id: x.id }] } }], { id: item }, { status: 400 });
    }

    // ---- conversations ----
    const conv = { id: A.conv };
    await sameAsUnknown(R('GET', '/v1/conversations/{id}'), 'get conversation', (x) => ['GET', `/v1/conversations/${x.id}`], conv);
    await sameAsUnknown(R('POST', '/v1/conversations/{id}'), 'update conversation', (x) => ['POST', `/v1/conversations/${x.id}`, { body: { metadata: { owner: 'b' } } }], conv);
    await sameAsUnknown(R('DELETE', '/v1/conversations/{id}'), 'delete conversation', (x) => ['DELETE', `/v1/conversations/${x.id}`], conv);
    await sameAsUnknown(R('GET', '/v1/conversations/{id}/items'), 'list items', (x) => ['GET', `/v1/conversations/${x.id}/items`], conv);
    await sameAsUnknown(R('GET', '/v1/conversations/{id}/items'), 'B\'s items after A\'s item', (x) => ['GET', `/v1/conversations/${A.bConv}/items?after=${x.id}`], { id: A.convItem });
    await sameAsUnknown(R('POST', '/v1/conversations/{id}/items'), 'add items', (x) => ['POST', `/v1/conversations/${x.id}/items`, { body: { items: [{ type: 'message', role: 'user', content: 'from b' }] } }], conv);
    const item = { id: A.conv, item: A.convItem };
    const itemIn = (x) => `/v1/conversations/${x.id}/items/${x.item}`;
    await sameAsUnknown(R('GET', '/v1/conversations/{id}/items/{item}'), 'get item', (x) => ['GET', itemIn(x)], item);
    await sameAsUnknown(R('GET', '/v1/conversations/{id}/items/{item}'), 'get A\'s item in B\'s conversation', (x) => ['GET', `/v1/conversations/${A.bConv}/items/${x.item}`], { item: A.convItem });
    await sameAsUnknown(R('DELETE', '/v1/conversations/{id}/items/{item}'), 'delete item', (x) => ['DELETE', itemIn(x)], item);
    await sameAsUnknown(R('DELETE', '/v1/conversations/{id}/items/{item}'), 'delete A\'s item in B\'s conversation', (x) => ['DELETE', `/v1/conversations/${A.bConv}/items/${x.item}`], { item: A.convItem });
    // B may create a conversation whose item has the id of one of A's: ids are per tenant, so
    // the store's uniqueness says nothing about A.
    mark(R('POST', '/v1/conversations'), "create with an item id of A's");
    const mine = await call(arun, keyB.key, 'POST', '/v1/conversations', { body: { items: [{ id: A.convItem, type: 'message', role: 'user', content: 'b' }] } });
    assert.equal(mine.status, 200, mine.text);
    const mineItem = await call(arun, keyB.key, 'GET', `/v1/conversations/${mine.json.id}/items/${A.convItem}`);
    assert.equal(mineItem.status, 200, mineItem.text);
    assert.ok(!mineItem.text.includes(A.secretText), mineItem.text);

    // ---- A's objects are untouched by all of that ----
    for (const id of [A.plain, A.background, A.streamed, A.convTurn]) {
      const r = await call(arun, keyA.key, 'GET', `/v1/responses/${id}`);
      assert.equal(r.status, 200, `A's ${id} after B's attempts: ${r.text}`);
      assert.notEqual(r.json.status, 'cancelled', `B cancelled A's ${id}: ${r.text}`);
    }
    const c = await call(arun, keyA.key, 'GET', `/v1/conversations/${A.conv}`);
    assert.equal(c.status, 200, c.text);
    assert.deepEqual(c.json.metadata, { owner: 'a' });
    const ci = await call(arun, keyA.key, 'GET', `/v1/conversations/${A.conv}/items?order=asc`);
    assert.equal(ci.status, 200, ci.text);
    assert.equal(ci.json.data[0].id, A.convItem);
    assert.ok(!ci.text.includes('from b'), ci.text);
  });

  test('the same Idempotency-Key used by two tenants makes two responses', async () => {
    mark('POST /v1/responses', 'Idempotency-Key across tenants');
    const key = `idem-${hex(8)}`;
    const body = { model: 'fast', input: 'same body', max_output_tokens: 16 };
    const a1 = await call(arun, keyA.key, 'POST', '/v1/responses', { body, headers: { 'idempotency-key': key } });
    assert.equal(a1.status, 200, a1.text);
    const b1 = await call(arun, keyB.key, 'POST', '/v1/responses', { body, headers: { 'idempotency-key': key } });
    assert.equal(b1.status, 200, b1.text);
    assert.notEqual(b1.json.id, a1.json.id);
    // Another body with A's key is no 409 for B (that would tell B that A used the key).
    const b2 = await call(arun, keyB.key, 'POST', '/v1/responses', { body: { ...body, input: 'another' }, headers: { 'idempotency-key': `${key}-2` } });
    assert.equal(b2.status, 200, b2.text);
    const a2 = await call(arun, keyA.key, 'POST', '/v1/responses', { body: { ...body, input: 'another body' }, headers: { 'idempotency-key': `${key}-2` } });
    assert.equal(a2.status, 200, `A's first use of a key B used: ${a2.text}`);
    // Each tenant's retry answers its own first response.
    const a3 = await call(arun, keyA.key, 'POST', '/v1/responses', { body, headers: { 'idempotency-key': key } });
    assert.equal(a3.json.id, a1.json.id);
    const b3 = await call(arun, keyB.key, 'POST', '/v1/responses', { body, headers: { 'idempotency-key': key } });
    assert.equal(b3.json.id, b1.json.id);
    assert.equal((await call(arun, keyB.key, 'GET', `/v1/responses/${a1.json.id}`)).status, 404);
  });

  test('/v1/events: a member sees its own tenant\'s run events only, live and replayed; an admin sees all', async () => {
    mark('GET /v1/events', 'live and Last-Event-ID');
    const open = async (key, lastId) => {
      const res = await fetch(`${arun.url}/v1/events`, {
        headers: { authorization: `Bearer ${key}`, ...(lastId !== undefined ? { 'last-event-id': String(lastId) } : {}) },
      });
      assert.equal(res.status, 200);
      return res;
    };
    // Live: both follow while each tenant makes a response.
    const resB = await open(keyB.key);
    const resAdmin = await open(keyAdmin.key);
    const a = await call(arun, keyA.key, 'POST', '/v1/responses', { body: { model: 'fast', input: 'events a', max_output_tokens: 16 } });
    const b = await call(arun, keyB.key, 'POST', '/v1/responses', { body: { model: 'fast', input: 'events b', max_output_tokens: 16 } });
    assert.equal(a.status, 200, a.text);
    assert.equal(b.status, 200, b.text);
    const ended = (x, id) => x.data?.data?.id === id && ['completed', 'incomplete', 'failed'].includes(x.data?.data?.status);
    const doneFor = (id) => (e, all) => all.some((x) => ended(x, id));
    // B's stream reaches B's run's end; A's came before it (A's request ended first).
    const seenB = await readSse(resB, doneFor(b.json.id));
    const seenAdmin = await readSse(resAdmin, doneFor(b.json.id));
    await seenB.reader.cancel();
    await seenAdmin.reader.cancel();
    assert.ok(seenAdmin.events.some((e) => e.data.data?.id === a.json.id), "the admin sees A's run events");
    const check = (events, how) => {
      assert.ok(events.length > 0, how);
      for (const e of events) {
        assert.equal(e.event, 'run.status', `${how}: B got a ${e.event} event: ${JSON.stringify(e.data)}`);
        assert.equal(e.data.data.tenant, TENANT_B, `${how}: ${JSON.stringify(e.data)}`);
      }
      const text = JSON.stringify(events);
      for (const id of [A.plain, A.background, A.streamed, A.convTurn, a.json.id]) assert.ok(!text.includes(id), `${how}: B saw A's ${id}`);
    };
    check(seenB.events, 'live');
    // Replayed: from the start of the ring, which holds A's events and the engines'.
    const adminAll = await readSse(await open(keyAdmin.key, 0), doneFor(b.json.id));
    await adminAll.reader.cancel();
    assert.ok(adminAll.events.some((e) => e.event === 'engine.state'), 'the ring holds engine events');
    assert.ok(adminAll.events.some((e) => e.data.data?.tenant === TENANT_A), "the ring holds A's run events");
    const replayB = await readSse(await open(keyB.key, 0), doneFor(b.json.id));
    await replayB.reader.cancel();
    check(replayB.events, 'Last-Event-ID: 0');
  });

  test('a member gets 403 naming the role on every admin route', async () => {
    const { routes } = registeredRoutes();
    const admin = routes.filter((r) => r.access === 'HTTP_ADMIN');
    assert.ok(admin.length >= 7, `admin routes found in the source: ${JSON.stringify(admin)}`);
    for (const r of admin) {
      const path = r.pattern.replace(/\{name\}/g, 'fast').replace(/\{id\}/g, keyA.id).replace(/\{[a-z_]+\}/g, 'x');
      const body = r.method === 'POST' ? {} : undefined;
      for (const key of [keyA, keyB]) {
        const res = await call(arun, key.key, r.method, path, { body });
        const ctx = `${r.method} ${path} (${r.where}) with a member key: ${res.status} ${res.text}`;
        assert.equal(res.status, 403, ctx);
        assert.equal(res.json?.error?.code, 'insufficient_role', ctx);
        assert.match(res.json.error.message, /admin/, ctx);
        assert.ok(!res.text.includes(key.key), ctx);
      }
    }
    // The engines are still there, untouched (no stop went through).
    const e = await call(arun, keyAdmin.key, 'GET', '/v1/engines/fast');
    assert.equal(e.json.state, 'ready', e.text);
  });

  test('every member route of the source was walked with another tenant\'s ids', async () => {
    // The gateway's routes hold no tenant's objects: a member uses them, and nothing of A's is
    // reachable through them (no id in, no stored object out).
    const G = async (m, p, body) => {
      mark(`${m} ${p}`, 'no tenant objects: works for a member');
      const r = await call(arun, keyB.key, m, p, { body });
      assert.equal(r.status, 200, `${m} ${p}: ${r.text}`);
      assert.ok(!r.text.includes(A.secretText), r.text);
    };
    await G('GET', '/v1/models');
    await G('POST', '/v1/chat/completions', { model: 'fast', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    await G('POST', '/v1/completions', { model: 'fast', prompt: 'hi', max_tokens: 2 });
    await G('POST', '/v1/embeddings', { model: 'fast', input: 'hi' });
    // whoami answers about the caller only: B's own tenant and key, nothing of A's.
    mark('GET /v1/whoami', "the caller's own tenant and key id only");
    const me = await call(arun, keyB.key, 'GET', '/v1/whoami');
    assert.equal(me.status, 200, me.text);
    assert.equal(me.json.key_id, keyB.id, me.text);
    assert.equal(me.json.role, 'member', me.text);
    assert.ok(!me.text.includes(keyA.id) && !me.text.includes(keyB.key), me.text);

    const { routes, unread } = registeredRoutes();
    assert.deepEqual(unread, [], 'http_route calls this test cannot read: teach registeredRoutes() the new form');
    const member = routes.filter((r) => r.access === 'HTTP_MEMBER');
    assert.ok(member.length >= 19, `member routes found: ${member.length}`);
    const missing = member.filter((r) => !walked.has(`${r.method} ${r.pattern}`)).map((r) => `${r.method} ${r.pattern} (${r.where})`);
    const lines = [...walked].map(([k, v]) => `  ${k}: ${v.length} case(s)`);
    console.log(`isolation: walked ${walked.size} member routes with tenant B and A's ids:\n${lines.join('\n')}`);
    assert.deepEqual(missing, [], 'member routes with no isolation case: add one to this test');
    const publicRoutes = routes.filter((r) => r.access === 'HTTP_PUBLIC').map((r) => `${r.method} ${r.pattern}`).sort();
    assert.deepEqual(publicRoutes, ['GET (console asset)', 'GET /', 'GET /healthz', 'GET /readyz',
      'HEAD (console asset)', 'HEAD /'],
      'a public route holds no tenant data');
    // The console's files are the build's, the same for every caller, with or without a key.
    const page = await call(arun, null, 'GET', '/');
    assert.equal(page.status, 200);
    assert.ok(!page.text.includes(A.secretText) && !page.text.includes(keyA.id), 'the page holds no tenant data');
  });

  test('an admin lists every tenant\'s runs with tenant=* and acts for one tenant with ?tenant=; a member may not', async () => {
    const all = await call(arun, keyAdmin.key, 'GET', '/v1/responses?tenant=*&limit=100');
    assert.equal(all.status, 200, all.text);
    const tenantOf = new Map(all.json.data.map((r) => [r.id, r.tenant]));
    for (const id of [A.plain, A.background, A.convTurn]) assert.equal(tenantOf.get(id), TENANT_A, `${id} in the admin's list`);
    assert.ok([...tenantOf.values()].includes(TENANT_B), 'B\'s runs are there too');
    // Acting for A: A's run is found, as A would find it; without ?tenant= it is not the admin's.
    const asA = await call(arun, keyAdmin.key, 'GET', `/v1/responses/${A.plain}?tenant=${TENANT_A}`);
    assert.equal(asA.status, 200, asA.text);
    assert.equal(asA.json.id, A.plain);
    assert.equal((await call(arun, keyAdmin.key, 'GET', `/v1/responses/${A.plain}`)).status, 404);
    const items = await call(arun, keyAdmin.key, 'GET', `/v1/responses/${A.plain}/input_items?tenant=${TENANT_A}`);
    assert.equal(items.status, 200, items.text);
    // A member can name only its own tenant, and its tenant=* is its own list.
    const denied = await call(arun, keyB.key, 'GET', `/v1/responses/${A.plain}?tenant=${TENANT_A}`);
    assert.equal(denied.status, 403, denied.text);
    assert.equal(denied.json.error.param, 'tenant');
    assert.match(denied.json.error.message, /admin key/);
    assert.ok(!denied.text.includes(A.secretText));
    const own = await call(arun, keyB.key, 'GET', `/v1/responses?tenant=${TENANT_B}`);
    assert.equal(own.status, 200, own.text);
    const star = await call(arun, keyB.key, 'GET', '/v1/responses?tenant=*&limit=100');
    assert.equal(star.status, 200, star.text);
    assert.ok(star.json.data.length > 0, 'B\'s own runs');
    for (const id of [A.plain, A.background, A.streamed, A.convTurn]) assert.ok(!star.text.includes(id));
    // The CLI: `arun runs --tenant '*'` lists every tenant's runs with a TENANT column; show acts
    // for one tenant; a member's --tenant of another is refused.
    const table = runArun(['runs', '--tenant', '*', '-n', '0', '--server', arun.url, '--api-key', keyAdmin.key]);
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout.split('\n')[0], /\bTENANT\b/);
    assert.match(table.stdout, new RegExp(`${A.plain} .*\\b${TENANT_A}\\b`));
    const shown = runArun(['runs', 'show', A.plain, '--tenant', TENANT_A, '--json', '--server', arun.url, '--api-key', keyAdmin.key]);
    assert.equal(shown.status, 0, shown.stderr);
    assert.equal(JSON.parse(shown.stdout).id, A.plain);
    const refused = runArun(['runs', 'show', A.plain, '--tenant', TENANT_A, '--server', arun.url, '--api-key', keyB.key]);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /admin key/);
    assert.ok(!refused.stdout.includes(A.secretText) && !refused.stderr.includes(A.secretText));
    // A name that cannot be a tenant is refused, naming the parameter.
    const bad = await call(arun, keyAdmin.key, 'GET', '/v1/responses?tenant=Not%20A%20Tenant');
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json.error.param, 'tenant');
  });

  test('a background run keeps its tenant through a restart (recovery)', async () => {
    const bg = await call(arun, keyA.key, 'POST', '/v1/responses', {
      body: { model: 'slow', input: 'survive', background: true, max_output_tokens: 5000 },
    });
    assert.equal(bg.status, 200, bg.text);
    const id = bg.json.id;
    await arun.stop('SIGKILL');
    arun = await new Arun({ config, dir: arun.dir }).start();
    // Asked at once, while recovery may still be loading (the requests wait for it).
    const [byB, byA] = await Promise.all([
      call(arun, keyB.key, 'GET', `/v1/responses/${id}`),
      call(arun, keyA.key, 'GET', `/v1/responses/${id}`),
    ]);
    assert.equal(byB.status, 404, byB.text);
    assert.equal(byA.status, 200, byA.text);
    const cancelB = await call(arun, keyB.key, 'POST', `/v1/responses/${id}/cancel`);
    assert.equal(cancelB.status, 404, cancelB.text);
    const listB = await call(arun, keyB.key, 'GET', '/v1/responses?limit=100');
    assert.ok(!listB.text.includes(id), listB.text);
    const cancelA = await call(arun, keyA.key, 'POST', `/v1/responses/${id}/cancel`);
    assert.equal(cancelA.status, 200, cancelA.text);
  });
});
