// The console across an arun restart and under tenancy, in chromium: when arun goes away the
// page shows the disconnected banner, and when arun is back (same data_dir, same port) it
// reconnects by itself, drops the banner and shows the runs recovered from the store; with
// auth.mode keys the page asks for a key, refuses a wrong one, and a member key sees only its
// tenant's runs and no engine controls.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  NO_CONSOLE, Arun, mock, enginesReady, launch, openPage, gotoView, waitReady, tid, createKey, freePort, tempDir,
  waitFor, token,
} from './lib.mjs';

const sdk = (arun, key = 'none') => new OpenAI({ baseURL: `${arun.url}/v1`, apiKey: key, maxRetries: 0 });

// An arun with auth.mode keys, one engine, an admin key (tenant ops) and member keys of tenants
// a and b, made on the store before it starts.
async function keysArun() {
  const config = [
    'auth:',
    '  mode: keys',
    'engines:',
    '  quick:',
    `    cmd: ${mock('--tokens-per-s 200 --max-tokens 16')}`,
    '    start: always',
    '',
  ].join('\n');
  const arun = new Arun({ config });
  const admin = await createKey(arun, { tenant: 'ops', role: 'admin' });
  const a = await createKey(arun, { tenant: 'tenant-a' });
  const b = await createKey(arun, { tenant: 'tenant-b' });
  await arun.start();
  await enginesReady(arun, ['quick'], { headers: { authorization: `Bearer ${admin.key}` } });
  return { arun, admin, a, b };
}

const ENGINE_CONTROLS = ['engine-start', 'engine-stop', 'engine-restart'];

describe('console live', { skip: NO_CONSOLE }, () => {
  let browser;
  before(async () => { browser = await launch(); });
  after(async () => { await browser?.close(); });

  test('after arun restarts the page reconnects by itself and shows the recovered runs', async () => {
    const config = [
      'engines:',
      '  quick:',
      `    cmd: ${mock('--tokens-per-s 200 --max-tokens 16')}`,
      '    start: always',
      '  slow:',
      `    cmd: ${mock('--tokens-per-s 15 --ignore-eos --max-tokens 100000')}`,
      '    start: always',
      '',
    ].join('\n');
    const dir = tempDir();
    const port = await freePort();
    const args = ['--listen', `127.0.0.1:${port}`];
    let arun = await new Arun({ config, dir, args }).start();
    const { page, context } = await openPage(browser);
    try {
      assert.equal(arun.port, port);
      await enginesReady(arun, ['quick', 'slow']);
      const done = await sdk(arun).responses.create({ model: 'quick', input: `before ${token()}` });
      const live = await sdk(arun).responses.create({ model: 'slow', input: `cut ${token()}`, background: true });
      await gotoView(page, arun.url, '#/runs');
      for (const id of [done.id, live.id]) {
        await page.locator(`[data-testid="run-row"][data-run-id="${id}"]`).waitFor({ timeout: 10000 });
      }
      // Wait until the live run streams, then take arun down hard in the middle of it.
      await waitFor(async () => (await (await fetch(`${arun.url}/v1/responses/${live.id}`)).json()).status === 'in_progress',
        { timeoutMs: 10000, what: 'the live run in progress' });
      await arun.stop('SIGKILL');
      await tid(page, 'disconnected').waitFor({ state: 'visible', timeout: 10000 });

      arun = await new Arun({ config, dir, args }).start({ timeoutMs: 20000 });
      assert.equal(arun.port, port);
      // No reload: the page finds arun again on its own (backoff at most 5 s).
      await tid(page, 'disconnected').waitFor({ state: 'detached', timeout: 20000 });
      const recovered = await (await fetch(`${arun.url}/v1/responses/${live.id}`)).json();
      assert.notEqual(recovered.status, 'in_progress', 'recovery settled the cut run');
      const row = page.locator(`[data-testid="run-row"][data-run-id="${live.id}"]`);
      let shown;
      await waitFor(async () => (shown = await row.getAttribute('data-status')) === recovered.status,
        { timeoutMs: 15000, what: `the cut run's row to show ${recovered.status}` })
        .catch((e) => { throw new Error(`${e.message}; the row shows ${shown}`); });
      assert.equal(await page.locator(`[data-testid="run-row"][data-run-id="${done.id}"]`).getAttribute('data-status'), 'completed');
      assert.equal(await page.evaluate(() => performance.getEntriesByType('navigation').length), 1);
    } finally {
      await context.close();
      await arun.cleanup();
    }
  });

  test('a member key sees only its tenant\'s runs and no engine controls', async () => {
    const { arun, admin, a, b } = await keysArun();
    const { page, context, problems } = await openPage(browser);
    try {
      const mine = await sdk(arun, a.key).responses.create({ model: 'quick', input: `a's ${token()}` });
      const theirs = await sdk(arun, b.key).responses.create({ model: 'quick', input: `b's ${token()}` });
      const adminRun = await sdk(arun, admin.key).responses.create({ model: 'quick', input: 'ops' });

      // No key yet: the page asks for one; a wrong key is refused in words.
      await page.goto(`${arun.url}/#/runs`);
      await tid(page, 'key-prompt').waitFor({ timeout: 10000 });
      await tid(page, 'key-input').fill('sk-not-a-key');
      await tid(page, 'key-submit').click();
      await tid(page, 'key-error').waitFor({ state: 'visible', timeout: 10000 });
      await tid(page, 'key-input').fill(a.key);
      await tid(page, 'key-submit').click();
      await waitReady(page);
      await page.goto(`${arun.url}/#/runs`);
      await page.locator(`[data-testid="run-row"][data-run-id="${mine.id}"]`).waitFor({ timeout: 10000 });
      const ids = await page.locator('[data-testid="run-row"]').evaluateAll((rows) => rows.map((r) => r.dataset.runId));
      assert.ok(!ids.includes(theirs.id), 'tenant b\'s run is not shown to tenant a');
      assert.ok(!ids.includes(adminRun.id), 'the admin tenant\'s run is not shown to tenant a');
      assert.equal(await tid(page, 'filter-tenant').count(), 0, 'no tenant filter for a member');
      // The engines view, even asked for by its address, offers no control.
      await page.goto(`${arun.url}/#/engines`);
      await waitReady(page);
      for (const id of ENGINE_CONTROLS) assert.equal(await tid(page, id).count(), 0, `${id} shown to a member`);
      // The key is kept for the tab (sessionStorage), never in localStorage.
      assert.equal(await page.evaluate(() => sessionStorage.getItem('arun.key')), a.key);
      assert.equal(await page.evaluate(() => JSON.stringify(localStorage)).then((s) => s.includes(a.key)), false);
      // The 401 of the wrong key (and of the first call without one) is expected; nothing else.
      assert.deepEqual(problems.filter((p) => !/401/.test(p)), []);
    } finally {
      await context.close();
      await arun.cleanup();
    }
  });

  test('an admin key sees the engine controls and the tenant filter', async () => {
    const { arun, admin } = await keysArun();
    const { page, context, problems } = await openPage(browser, { key: admin.key });
    try {
      const own = await sdk(arun, admin.key).responses.create({ model: 'quick', input: `ops ${token()}` });
      await gotoView(page, arun.url, '#/engines');
      const card = page.locator('[data-testid="engine-card"][data-engine="quick"]');
      await card.waitFor();
      for (const id of ['engine-stop', 'engine-restart']) assert.equal(await tid(card, id).count(), 1, id);
      await page.goto(`${arun.url}/#/runs`);
      await page.locator(`[data-testid="run-row"][data-run-id="${own.id}"]`).waitFor();
      assert.equal(await tid(page, 'filter-tenant').count(), 1);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
      await arun.cleanup();
    }
  });

  // Issue 14: the runs view shows an admin every tenant's runs with their tenant (GET
  // /v1/responses?tenant=*), filters by tenant, and opens another tenant's run (?tenant=T).
  test('an admin key sees every tenant\'s runs, filters them by tenant and opens another tenant\'s run', async () => {
    const { arun, admin, a } = await keysArun();
    const { page, context, problems } = await openPage(browser, { key: admin.key });
    try {
      const text = `a's ${token()}`;
      const theirs = await sdk(arun, a.key).responses.create({ model: 'quick', input: text });
      const own = await sdk(arun, admin.key).responses.create({ model: 'quick', input: `ops ${token()}` });
      await gotoView(page, arun.url, '#/runs');
      const row = page.locator(`[data-testid="run-row"][data-run-id="${theirs.id}"]`);
      await row.waitFor();
      await page.locator(`[data-testid="run-row"][data-run-id="${own.id}"]`).waitFor();
      assert.match(await row.innerText(), /tenant-a/, 'the row names its tenant');
      await tid(page, 'filter-tenant').selectOption('tenant-a');
      await page.locator(`[data-testid="run-row"][data-run-id="${own.id}"]`).waitFor({ state: 'detached' });
      assert.equal(await row.count(), 1, 'tenant a\'s run stays under the filter');
      await row.locator('a').click();
      const runPage = page.locator(`[data-testid="run-page"][data-run-id="${theirs.id}"]`);
      await runPage.waitFor();
      await page.waitForFunction((id) => /^(completed|incomplete)$/.test(document.querySelector(`[data-testid="run-page"][data-run-id="${id}"]`)?.dataset.status), theirs.id, { timeout: 10000 });
      assert.match(await runPage.getAttribute('data-status'), /^(completed|incomplete)$/);
      assert.ok((await tid(page, 'run-output').innerText()).length > 0, 'the output of another tenant\'s run is shown');
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
      await arun.cleanup();
    }
  });
});
