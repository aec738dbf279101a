// Browser-test harness for arun's console: Debian's /usr/bin/chromium driven headless by
// playwright-core (never a downloaded browser), arun started by the e2e harness (tests/e2e/lib),
// and per page what a user would notice going wrong: console errors, uncaught exceptions, failed
// requests and HTTP errors. Also: accessibility checks (axe-core and a Tab walk), the first load's
// transferred bytes and render time, and screenshots under build/console-screens/.
import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { MOCK_BIN, ROOT, waitFor } from '../e2e/lib/arun.mjs';

export { Arun, ARUN_BIN, MOCK_BIN, ROOT, createKey, freePort, tempDir, waitFor } from '../e2e/lib/arun.mjs';

export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const SCREEN_DIR = process.env.SCREEN_DIR || join(ROOT, 'build', 'console-screens');

// The ASan build is several times slower than the release build: budgets on time are asserted
// loosely there (and the measured number printed), strictly against a release build.
export const SANITIZED = /build-asan/.test(process.env.ARUN_BIN || '');

// The console's sources (console/, issue 14): without them the binary serves no page, and the
// tests say so as their skip reason instead of failing.
export const NO_CONSOLE = existsSync(join(ROOT, 'console', 'package.json')) ? false
  : 'the console (console/) is not in this tree yet';

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

// The flags that keep chromium offline and quiet as root (/work/shared/notes.md). playwright
// gives every launch a fresh temporary --user-data-dir of its own (and refuses one in args).
const FLAGS = ['--no-sandbox', '--headless', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage'];

export async function launch() {
  return chromium.launch({ executablePath: CHROMIUM_BIN, args: FLAGS, headless: true, timeout: 30000 });
}

// Set before any script of the page runs: the time (ms from navigation start) at which body
// first carried data-ready="1", and each data-state an engine card showed, in order, so a test
// sees a short state (loading) even if it never polled at that moment.
function instrument() {
  window.__arun = { readyAt: null, states: {}, loadedOnce: true };
  const seen = () => {
    if (window.__arun.readyAt === null && document.body && document.body.dataset.ready === '1') {
      window.__arun.readyAt = performance.now();
    }
    for (const card of document.querySelectorAll('[data-testid="engine-card"]')) {
      const name = card.getAttribute('data-engine');
      const st = card.getAttribute('data-state');
      const list = (window.__arun.states[name] ||= []);
      if (st && list[list.length - 1] !== st) list.push(st);
    }
  };
  new MutationObserver(seen).observe(document, {
    subtree: true, childList: true, attributes: true, attributeFilter: ['data-ready', 'data-state'],
  });
}

// Opens a page in a fresh context (no cache, no storage): with `key`, sessionStorage holds it
// before the page's scripts run, as after the key prompt. Returns {page, context, problems,
// transferred()}: problems lists console errors, page errors and failed or 4xx/5xx requests (an
// aborted request, the events stream cut by a close or a navigation, is not one).
export async function openPage(browser, { viewport = DESKTOP, key } = {}) {
  const context = await browser.newContext({ viewport });
  if (key) await context.addInitScript((k) => sessionStorage.setItem('arun.key', k), key);
  await context.addInitScript(instrument);
  // A missing test id fails in seconds, not after playwright's default 30 s.
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  const problems = [];
  const transfers = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText || '';
    if (!/ERR_ABORTED/.test(why)) problems.push(`request failed: ${r.method()} ${r.url()}: ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  // Requests in flight, but the long-lived streams (/v1/events, a run's stream), which never end.
  const inflight = new Set();
  const streaming = (r) => /\/v1\/events|[?&]stream=true/.test(r.url());
  page.on('request', (r) => { if (!streaming(r)) inflight.add(r); });
  page.on('requestfailed', (r) => inflight.delete(r));
  page.on('requestfinished', (r) => {
    transfers.push(r.sizes().then((s) => ({ url: r.url(), bytes: s.responseBodySize + s.responseHeadersSize }),
      () => ({ url: r.url(), bytes: 0 })).finally(() => inflight.delete(r)));
  });
  // Resolves, once no request but the streams is in flight, to what every finished response
  // transferred over the wire (headers and the compressed body): [{url, bytes}].
  const transferred = async () => {
    await waitFor(() => inflight.size === 0, { timeoutMs: 10000, what: 'the page\'s requests to finish' });
    return Promise.all(transfers);
  };
  return { page, context, problems, transferred };
}

// Navigates to a view (hash route) and waits until the page says it rendered with data.
export async function gotoView(page, url, hash = '#/engines', { timeoutMs = 15000 } = {}) {
  await page.goto(`${url}/${hash}`, { waitUntil: 'load' });
  await waitReady(page, { timeoutMs });
}

export async function waitReady(page, { timeoutMs = 15000 } = {}) {
  await page.waitForSelector('body[data-ready="1"]', { state: 'attached', timeout: timeoutMs });
}

// An element by test id, optionally inside another locator.
export const tid = (within, id) => within.locator(`[data-testid="${id}"]`);

export async function screenshot(page, name) {
  mkdirSync(SCREEN_DIR, { recursive: true });
  const vp = page.viewportSize();
  const path = join(SCREEN_DIR, `${name}-${vp.width}x${vp.height}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

// axe-core's serious and critical violations on the page as it is now, as readable lines.
export async function axeProblems(page) {
  const r = await new AxeBuilder({ page }).analyze();
  return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help}: ${v.nodes.slice(0, 5).map((n) => n.html.slice(0, 160)).join(' | ')}`);
}

// Tabs through the page from the top until focus comes back round (or leaves the page): every
// element focused must have an accessible name (chromium's own, through the accessibility
// tree), and every visible control of the page must have been reached. Returns the problems.
export async function keyboardProblems(page, { maxTabs = 300 } = {}) {
  const cdp = await page.context().newCDPSession(page);
  const problems = [];
  try {
    await page.evaluate(() => {
      window.__tabbed = new Set();
      if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
    });
    await cdp.send('Accessibility.enable');
    for (let i = 0; i < maxTabs; i++) {
      await page.keyboard.press('Tab');
      const { result } = await cdp.send('Runtime.evaluate', { expression: 'document.activeElement' });
      const tag = await page.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return null;
        if (window.__tabbed.has(el)) return 'CYCLE';
        window.__tabbed.add(el);
        return el.outerHTML.slice(0, 120);
      });
      if (tag === null) break; // focus left the document (past the last control)
      if (tag === 'CYCLE') break; // round the page once
      const { node } = await cdp.send('DOM.describeNode', { objectId: result.objectId });
      const { nodes } = await cdp.send('Accessibility.getPartialAXTree', { backendNodeId: node.backendNodeId, fetchRelatives: false });
      const ax = nodes.find((n) => n.backendDOMNodeId === node.backendNodeId) || nodes[0];
      const name = (ax?.name?.value || '').trim();
      if (!name) problems.push(`focused element has no accessible name: ${tag}`);
    }
    const unreached = await page.evaluate(() => {
      const sel = 'a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"]), [role="button"]';
      return [...document.querySelectorAll(sel)].filter((el) => {
        if (el.disabled || el.closest('[inert], [hidden]')) return false;
        const r = el.getBoundingClientRect();
        const st = getComputedStyle(el);
        if (r.width === 0 || r.height === 0 || st.visibility === 'hidden' || st.display === 'none') return false;
        return !window.__tabbed.has(el);
      }).map((el) => `not reachable by Tab: ${el.outerHTML.slice(0, 120)}`);
    });
    problems.push(...unreached);
  } finally {
    await cdp.detach().catch(() => {});
  }
  return problems;
}

// The `cmd:` of a mock engine in an arun config (quoted for YAML), with extra flags.
export const mock = (extra = '') => `"${MOCK_BIN} --port \${PORT} --model \${NAME} ${extra}"`;

// Waits until each named engine of arun is ready (GET /v1/engines), with `headers` (a key).
export async function enginesReady(arun, names, { headers = {}, timeoutMs = 30000 } = {}) {
  await waitFor(async () => {
    const { data } = await (await fetch(`${arun.url}/v1/engines`, { headers })).json();
    return names.every((n) => data.find((e) => e.name === n)?.state === 'ready');
  }, { timeoutMs, what: `engines ${names.join(', ')} ready` });
}

// A distinct string for a test's own objects.
export const token = () => Math.random().toString(36).slice(2, 10);

export { waitFor as wait };
