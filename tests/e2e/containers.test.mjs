// Engines as podman containers (rootful podman with runc, as on these machines), and the
// fallback to a native process when no container CLI is there.
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { Arun, MOCK_BIN, ROOT, waitFor, freePort } from './lib/arun.mjs';

const IMAGE = 'localhost/arun-e2e-mock:1';
const CONTAINERS_CONF = join(ROOT, 'tests/containers.conf');
const havePodman = spawnSync('podman', ['--version']).status === 0;

const engine = async (arun, name) => (await fetch(`${arun.url}/v1/engines/${name}`)).json();
const waitState = (arun, name, state, timeoutMs = 20000) => waitFor(async () => {
  const e = await engine(arun, name);
  if (e.state !== state) throw new Error(`${e.state}: ${e.reason}`); // shown if it times out
  return e;
}, { what: `${name} to be ${state}`, timeoutMs });

function containersLabelled(label) {
  const r = spawnSync('podman', ['ps', '-a', '--filter', `label=${label}`, '--format', '{{.Names}}'],
    { encoding: 'utf8', env: { ...process.env, CONTAINERS_CONF } });
  return r.stdout.split('\n').filter(Boolean);
}

const manifest = (port) => `    image: ${IMAGE}
    cmd: "${MOCK_BIN} --port \${PORT}"
    args: ["/arun-mock-engine", "--host", "0.0.0.0", "--port", "\${PORT}", "--model", "boxed"]
    port: ${port}
`;

describe('engines as containers', { skip: !havePodman && 'podman is not installed' }, () => {
  before(() => {
    const r = spawnSync(join(ROOT, 'scripts/mock-image.sh'), [IMAGE, dirname(MOCK_BIN)],
      { encoding: 'utf8', env: { ...process.env, CONTAINERS_CONF } });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  test('a podman-backed mock engine reaches ready, answers on its mapped port, and is removed on SIGTERM', async () => {
    const port = await freePort();
    const arun = new Arun({ config: `runtime: {prefer: container}\nengines:\n  boxed:\n${manifest(port)}`,
      env: { CONTAINERS_CONF } });
    await arun.start();
    try {
      await fetch(`${arun.url}/v1/engines/boxed/start`, { method: 'POST' });
      const e = await waitState(arun, 'boxed', 'ready');
      assert.equal(e.backend, 'container');
      assert.match(e.backend_reason, /container: preferred by runtime.prefer/);
      const models = await (await fetch(`http://127.0.0.1:${port}/v1/models`)).json();
      assert.equal(models.data[0].id, 'boxed');
      const names = containersLabelled('arun.engine=boxed');
      assert.equal(names.length, 1, names.join(' '));
      assert.match(names[0], /^arun-[0-9a-f]{8}-boxed$/, 'named for its data_dir and engine');
      // `podman logs -f` delivers the container's output a moment after it was written.
      await waitFor(async () => new RegExp(`listening on http://0\\.0\\.0\\.0:${port}\\b`).test(
        await (await fetch(`${arun.url}/v1/engines/boxed/logs?tail=20`)).text()), { what: 'the container output in the log' });
      const r = await arun.stop('SIGTERM');
      assert.equal(r.code, 0, arun.stderr.slice(-2000));
      assert.deepEqual(containersLabelled('arun.engine=boxed'), []);
    } finally {
      await arun.cleanup();
      for (const n of containersLabelled('arun.engine=boxed')) spawnSync('podman', ['rm', '-f', n], { env: { ...process.env, CONTAINERS_CONF } });
    }
  });

  test('a start: always container survives kill -9 of arun and the next arun adopts it instead of starting another', async () => {
    const name = `always${process.pid}`; // unique: other suites may run podman at the same time
    const config = `runtime: {prefer: container}\nengines:\n  ${name}:\n${manifest(await freePort())}    start: always\n`;
    const env = { CONTAINERS_CONF };
    const idOf = () => spawnSync('podman', ['inspect', '--format', '{{.Id}}', containersLabelled(`arun.engine=${name}`)[0] ?? 'none'],
      { encoding: 'utf8', env: { ...process.env, CONTAINERS_CONF } }).stdout.trim();
    const first = new Arun({ config, env });
    try {
      await first.start();
      await waitState(first, name, 'ready');
      const id = idOf();
      assert.ok(id, 'the container runs');
      await first.stop('SIGKILL');
      const second = new Arun({ dir: first.dir, config, env });
      try {
        await second.start();
        const e = await waitState(second, name, 'ready');
        assert.equal(e.backend, 'container');
        assert.equal(idOf(), id, 'the same container, adopted, not a new one');
        assert.match(await (await fetch(`${second.url}/v1/engines/${name}/logs?tail=50`)).text(),
          /adopted container/);
        const r = await second.stop('SIGTERM');
        assert.equal(r.code, 0, second.stderr.slice(-2000));
        assert.deepEqual(containersLabelled(`arun.engine=${name}`), []);
      } finally { await second.cleanup(); }
    } finally {
      for (const n of containersLabelled(`arun.engine=${name}`)) spawnSync('podman', ['rm', '-f', n], { env: { ...process.env, CONTAINERS_CONF } });
      await first.cleanup();
    }
  });

  test('two aruns with their own data_dirs run an engine of the same name side by side; neither removes or adopts the other\'s container', async () => {
    const name = `twin${process.pid}`;
    const env = { CONTAINERS_CONF };
    const config = async () => `runtime: {prefer: container}\nengines:\n  ${name}:\n${manifest(await freePort())}    start: always\n`;
    const a = new Arun({ config: await config(), env });
    const b = new Arun({ config: await config(), env });
    try {
      await a.start();
      await waitState(a, name, 'ready');
      const [first] = containersLabelled(`arun.engine=${name}`);
      assert.ok(first, 'the first arun runs its container');
      await b.start(); // before the label, b took a's container as a leftover and removed it
      await waitState(b, name, 'ready');
      const both = containersLabelled(`arun.engine=${name}`);
      assert.equal(both.length, 2, both.join(' '));
      assert.ok(both.includes(first), 'the first container still runs');
      assert.equal((await engine(a, name)).state, 'ready');
      assert.doesNotMatch(b.stderr, /removing leftover container/);
      assert.equal((await b.stop('SIGTERM')).code, 0, b.stderr.slice(-2000));
      assert.deepEqual(containersLabelled(`arun.engine=${name}`), [first], 'b removed only its own');
      assert.equal((await a.stop('SIGTERM')).code, 0, a.stderr.slice(-2000));
      assert.deepEqual(containersLabelled(`arun.engine=${name}`), []);
    } finally {
      for (const n of containersLabelled(`arun.engine=${name}`)) spawnSync('podman', ['rm', '-f', n], { env: { ...process.env, CONTAINERS_CONF } });
      await b.cleanup();
      await a.cleanup();
    }
  });
});

describe('backend fallback', () => {
  test('with prefer: container and no container CLI on PATH, the same manifest runs natively and says why', async () => {
    const port = await freePort();
    const arun = new Arun({ config: `runtime: {prefer: container}\nengines:\n  boxed:\n${manifest(port)}`,
      env: { PATH: '/nonexistent' } });
    await arun.start();
    try {
      await fetch(`${arun.url}/v1/engines/boxed/start`, { method: 'POST' });
      const e = await waitState(arun, 'boxed', 'ready');
      assert.equal(e.backend, 'native');
      assert.match(e.backend_reason, /container preferred, but no podman or docker found.*running natively/);
      assert.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200);
    } finally { await arun.cleanup(); }
  });
});
