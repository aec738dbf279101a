// The console (issue 14) in a real browser: Debian's chromium, headless, against one arun with
// mock engines. The page loads clean (no console error, no failed request) within its budget of
// bytes and time; an engine started from the page goes loading -> ready on screen without a
// reload; a background run made with the openai SDK shows in the runs view and its text streams
// on its page; cancelling it from the page ends it `cancelled`; every view, at 1280x800 and at
// 390x844, has no serious axe-core violation, every control is reached by Tab and named, and is
// saved as a screenshot under build/console-screens/.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpus, loadavg } from 'node:os';
import OpenAI from 'openai';
import {
  NO_CONSOLE, Arun, mock, enginesReady, SANITIZED, DESKTOP, PHONE, launch, openPage, gotoView, tid, screenshot,
  axeProblems, keyboardProblems, waitFor, token,
} from './lib.mjs';

const config = [
  'engines:',
  '  quick:',
  `    cmd: ${mock('--tokens-per-s 200 --max-tokens 24')}`,
  '    start: always',
  '  slow:',
  // Slow and endless: a run on it is still streaming while the page watches and cancels it.
  `    cmd: ${mock('--tokens-per-s 15 --ignore-eos --max-tokens 100000')}`,
  '    start: always',
  '    max_concurrency: 8',
  '  cold:',
  `    cmd: ${mock('--load-ms 1500')}`,
  '    start: manual',
  '',
].join('\n');

const BYTES_BUDGET = 150 * 1024;
const READY_BUDGET_MS = 300;

describe('console in chromium', { skip: NO_CONSOLE }, () => {
  let arun;
  let browser;
  let client;

  before(async () => {
    arun = await new Arun({ config }).start();
    client = new OpenAI({ baseURL: `${arun.url}/v1`, apiKey: 'none', maxRetries: 0 });
    browser = await launch();
    // The engines with start: always are up before any page looks at them.
    await enginesReady(arun, ['quick', 'slow']);
  });

  after(async () => {
    await browser?.close();
    await arun?.cleanup();
  });

  // Three first loads, each in a fresh context (empty cache, no storage): every one must be
  // clean and under the byte budget; the render time asserted is the best of the three, so that
  // one descheduling on a shared machine does not decide it (all three are printed).
  test('the first load is clean, under 150 KB and renders the engines view fast', async () => {
    const times = [];
    for (let i = 0; i < 3; i++) {
      const { page, context, problems, transferred } = await openPage(browser);
      try {
        await gotoView(page, arun.url, '#/engines');
        await waitFor(() => page.locator('[data-testid="engine-card"]').count().then((n) => n === 3),
          { timeoutMs: 5000, what: 'three engine cards' });
        // Every request of the first load has finished (the events stream never does, and is
        // not counted: what it carries is not part of the load).
        const transfers = await transferred();
        const bytes = transfers.reduce((s, t) => s + t.bytes, 0);
        times.push(await page.evaluate(() => window.__arun.readyAt));
        if (i === 0) {
          console.log(`first load: ${bytes} bytes transferred in ${transfers.length} responses (budget ${BYTES_BUDGET})`);
          for (const t of transfers) console.log(`  ${String(t.bytes).padStart(7)}  ${t.url.replace(arun.url, '')}`);
        }
        assert.ok(bytes < BYTES_BUDGET, `first load transferred ${bytes} bytes, over ${BYTES_BUDGET}`);
        // Everything comes from arun itself: no CDN, no font or script from elsewhere.
        assert.deepEqual(transfers.filter((t) => new URL(t.url).origin !== arun.url).map((t) => t.url), []);
        for (const id of ['nav-engines', 'nav-runs']) assert.equal(await tid(page, id).count(), 1, id);
        assert.equal(await tid(page, 'disconnected').count(), 0, 'no disconnected banner');
        assert.deepEqual(problems, []);
      } finally {
        await context.close();
      }
    }
    const best = Math.min(...times);
    const limit = READY_BUDGET_MS * (SANITIZED ? 10 : 1);
    console.log(`engines view rendered (body data-ready) at ${times.map((t) => t.toFixed(0)).join(', ')} ms` +
      ` from navigation start; best ${best.toFixed(0)} ms, budget ${READY_BUDGET_MS} ms` +
      `${SANITIZED ? ` (ASan build: asserted under ${limit} ms)` : ''}; load average ${loadavg()[0].toFixed(1)}` +
      ` on ${cpus().length} CPUs`);
    assert.ok(best < limit, `engines view rendered at best in ${best} ms, over ${limit} ms`);
  });

  test('an engine started from the page goes loading -> ready without a reload', async () => {
    const { page, context, problems } = await openPage(browser);
    try {
      await gotoView(page, arun.url, '#/engines');
      const card = page.locator('[data-testid="engine-card"][data-engine="cold"]');
      await card.waitFor();
      assert.equal(await card.getAttribute('data-state'), 'stopped');
      await tid(card, 'engine-start').click();
      await tid(page, 'confirm-dialog').waitFor();
      await tid(page, 'confirm-ok').click();
      await waitFor(async () => (await card.getAttribute('data-state')) === 'ready',
        { timeoutMs: 20000, what: 'card cold to show ready' });
      const seen = await page.evaluate(() => window.__arun.states.cold);
      assert.ok(seen.includes('loading'), `the card went through loading: ${seen.join(' -> ')}`);
      assert.ok(seen.indexOf('loading') < seen.lastIndexOf('ready'), seen.join(' -> '));
      assert.match(await tid(card, 'engine-state').innerText(), /ready/i);
      assert.ok(await tid(card, 'engine-result').count() >= 1, 'the outcome of the start is shown');
      // The same document all along: the instrumentation set before the first script survives.
      assert.equal(await page.evaluate(() => window.__arun.loadedOnce), true);
      const nav = await page.evaluate(() => performance.getEntriesByType('navigation').length);
      assert.equal(nav, 1);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test('a background run from the SDK shows in the runs view, streams on its page and is cancelled there', async () => {
    const { page, context, problems } = await openPage(browser);
    try {
      await gotoView(page, arun.url, '#/runs');
      const run = await client.responses.create({ model: 'slow', input: `a long story ${token()}`, background: true });
      const row = page.locator(`[data-testid="run-row"][data-run-id="${run.id}"]`);
      await row.waitFor({ timeout: 10000 });
      // Open it from the table, as a person would.
      const link = row.locator('a');
      await ((await link.count()) ? link.first() : row).click();
      const runPage = page.locator(`[data-testid="run-page"][data-run-id="${run.id}"]`);
      await runPage.waitFor({ timeout: 10000 });
      const out = tid(page, 'run-output');
      const first = await waitFor(async () => (await out.innerText()).length || 0,
        { timeoutMs: 10000, what: 'run output text' });
      await waitFor(async () => (await out.innerText()).length > first + 10,
        { timeoutMs: 10000, what: 'run output to grow' });
      assert.equal(await runPage.getAttribute('data-status'), 'in_progress');
      await tid(page, 'run-cancel').click();
      if (await tid(page, 'confirm-dialog').count()) await tid(page, 'confirm-ok').click();
      await waitFor(async () => (await runPage.getAttribute('data-status')) === 'cancelled',
        { timeoutMs: 10000, what: 'run page to show cancelled' });
      assert.equal((await client.responses.retrieve(run.id)).status, 'cancelled');
      await tid(page, 'nav-runs').click();
      await waitFor(async () => (await row.getAttribute('data-status')) === 'cancelled',
        { timeoutMs: 5000, what: 'runs table to show cancelled' });
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test('every view: accessible, keyboard-reachable, at desktop and phone sizes (screenshots)', async () => {
    // Something in each view: a finished run and one still streaming.
    const done = await client.responses.create({ model: 'quick', input: 'a short one' });
    const live = await client.responses.create({ model: 'slow', input: 'still going', background: true });
    const failures = [];
    try {
      for (const [label, vp] of [['desktop', DESKTOP], ['phone', PHONE]]) {
        const { page, context, problems } = await openPage(browser, { viewport: vp });
        try {
          for (const [view, hash, what] of [
            ['engines', '#/engines', 'engine-card'],
            ['runs', '#/runs', 'run-row'],
            ['run', `#/runs/${done.id}`, 'run-page'],
          ]) {
            await gotoView(page, arun.url, hash);
            await tid(page, what).first().waitFor({ timeout: 10000 });
            const shot = await screenshot(page, view);
            console.log(`screenshot ${shot}`);
            // Nothing wider than the viewport (no sideways scrolling on a phone).
            const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
            if (overflow > 0) failures.push(`${label} ${view}: page is ${overflow} px wider than the viewport`);
            for (const p of await axeProblems(page)) failures.push(`${label} ${view}: axe ${p}`);
            for (const p of await keyboardProblems(page)) failures.push(`${label} ${view}: ${p}`);
          }
          for (const p of problems) failures.push(`${label}: ${p}`);
        } finally {
          await context.close();
        }
      }
    } finally {
      await client.responses.cancel(live.id).catch(() => {});
    }
    assert.deepEqual(failures, []);
  });
});
