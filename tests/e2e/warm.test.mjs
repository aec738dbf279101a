// Warm upstream connections (docs/internals/httpc.md, "The warm pool"): an engine that becomes
// ready has max_concurrency connections opened to it before any request, and one that leaves
// ready has them closed. Seen from the engine's side of the sockets in /proc/net/tcp.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Arun, MOCK_BIN, waitFor, tempDir } from './lib/arun.mjs';


// Connections in ESTABLISHED (01) whose local port is the engine's: the engine's ends of them.
function established(port) {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
    .filter((l) => { const f = l.trim().split(/\s+/); return f[1]?.endsWith(`:${hex}`) && f[3] === '01'; })
    .length;
}

async function engine(arun, name) {
  return (await fetch(`${arun.url}/v1/engines/${name}`)).json();
}

describe('warm upstream connections', () => {
  test('a ready engine has warm connections before any request; leaving ready closes them', async () => {
    // Health by command (a file that exists), so no probe uses a connection: every connection
    // to the engine is the pool's.
    const dir = tempDir();
    const healthy = join(dir, 'healthy');
    writeFileSync(healthy, '');
    const arun = await new Arun({
      config: `engines:\n  m:\n    cmd: "${MOCK_BIN} --port \${PORT}"\n    start: always\n` +
        `    max_concurrency: 3\n    health: {cmd: "test -f ${healthy}", interval_ms: 100, failures: 1}\n` +
        '    restart: {policy: never}\n',
    }).start();
    try {
      const e = await waitFor(async () => { const j = await engine(arun, 'm'); return j.state === 'ready' && j; },
        { timeoutMs: 10000, what: 'engine m ready' });
      await waitFor(() => established(e.port) === 3, { timeoutMs: 5000, what: 'warm connections' });
      rmSync(healthy);
      await waitFor(async () => (await engine(arun, 'm')).state === 'unhealthy',
        { timeoutMs: 10000, what: 'engine m unhealthy' });
      await waitFor(() => established(e.port) === 0, { timeoutMs: 5000, what: 'warm connections closed' });
      // Ready again: warm again.
      writeFileSync(healthy, '');
      await waitFor(async () => (await engine(arun, 'm')).state === 'ready', { timeoutMs: 10000, what: 'ready again' });
      await waitFor(() => established(e.port) === 3, { timeoutMs: 5000, what: 'warm connections again' });
    } finally {
      await arun.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
