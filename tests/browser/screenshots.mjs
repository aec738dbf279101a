// `make screenshots`: the images of docs/console.md, made by the browser from a running arun
// (release build, mock engines), never by hand. Usage: node tests/browser/screenshots.mjs OUTDIR
// Writes OUTDIR/engines.png, runs.png, run.png (1280x800) and phone-engines.png (390x844): the
// viewport as a person sees it, with engines in three states and runs finished, live and
// cancelled.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import OpenAI from 'openai';
import { Arun, mock, enginesReady, DESKTOP, PHONE, launch, openPage, gotoView, tid, waitFor } from './lib.mjs';

const out = resolve(process.argv[2] || 'docs/console');
mkdirSync(out, { recursive: true });

const config = [
  'engines:',
  '  qwen-7b:',
  `    cmd: ${mock('--tokens-per-s 200 --max-tokens 40')}`,
  '    start: always',
  '  llama-70b:',
  `    cmd: ${mock('--tokens-per-s 12 --ignore-eos --max-tokens 100000')}`,
  '    start: always',
  '    max_concurrency: 4',
  '  embed-small:',
  `    cmd: ${mock()}`,
  '    start: manual',
  '',
].join('\n');

const arun = await new Arun({ config }).start();
const browser = await launch();
try {
  const client = new OpenAI({ baseURL: `${arun.url}/v1`, apiKey: 'none', maxRetries: 0 });
  await enginesReady(arun, ['qwen-7b', 'llama-70b']);
  const done = [];
  for (const q of ['Summarise the incident report', 'Translate the release notes', 'Name three prime numbers']) {
    done.push(await client.responses.create({ model: 'qwen-7b', input: q }));
  }
  const cut = await client.responses.create({ model: 'llama-70b', input: 'Draft the quarterly plan', background: true });
  await client.responses.cancel(cut.id);
  const live = await client.responses.create({ model: 'llama-70b', input: 'Write a long story about a lighthouse', background: true });

  const shots = [
    ['engines', DESKTOP, '#/engines', 'engine-card'],
    ['runs', DESKTOP, '#/runs', 'run-row'],
    ['run', DESKTOP, `#/runs/${live.id}`, 'run-output'],
    ['phone-engines', PHONE, '#/engines', 'engine-card'],
  ];
  for (const [name, viewport, hash, what] of shots) {
    const { page, context, problems } = await openPage(browser, { viewport });
    await gotoView(page, arun.url, hash);
    await tid(page, what).first().waitFor({ timeout: 10000 });
    if (name === 'run') {
      // Some text streamed in, as a person opening a live run sees it.
      await waitFor(async () => (await tid(page, 'run-output').innerText()).length > 80,
        { timeoutMs: 15000, what: 'streamed text' });
    }
    await page.screenshot({ path: join(out, `${name}.png`) });
    console.log(`${join(out, `${name}.png`)}${problems.length ? ` (page problems: ${problems.join('; ')})` : ''}`);
    await context.close();
  }
  await client.responses.cancel(live.id).catch(() => {});
} finally {
  await browser.close();
  await arun.cleanup();
}
