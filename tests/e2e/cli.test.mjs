// The CLI's own surface: help, version, exit codes, and config errors that refuse to start.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runArun, tempDir, assertNoSanitizerReport } from './lib/arun.mjs';

const dir = tempDir();
after(() => rmSync(dir, { recursive: true, force: true }));

function configFile(name, text) {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('arun CLI', () => {
  test('version and help', () => {
    const v = runArun(['version']);
    assert.equal(v.status, 0);
    assert.match(v.stdout, /^arun \d+\.\d+\.\d+\n$/);
    const h = runArun(['--help']);
    assert.equal(h.status, 0);
    assert.match(h.stdout, /serve/);
    assert.match(h.stdout, /exit codes/);
    const hs = runArun(['help', 'serve']);
    assert.equal(hs.status, 0);
    assert.match(hs.stdout, /--listen HOST:PORT/);
    assert.equal(runArun(['serve', '--help']).status, 0);
  });

  test('usage errors exit 2', () => {
    const none = runArun([]);
    assert.equal(none.status, 2);
    const bad = runArun(['frobnicate']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /unknown verb: frobnicate/);
    assert.equal(runArun(['serve', '--bogus']).status, 2);
    assert.equal(runArun(['help', 'nope']).status, 2);
  });

  const broken = [
    ['a misspelled key', 'listen: 127.0.0.1:8080\nlimits:\n  max_body_byte: 10\n', /:3: limits\.max_body_byte: unknown key.*max_body_bytes/],
    ['a wrong type', 'limits:\n  max_connections: lots\n', /:2: limits\.max_connections: /],
    ['a bad port', 'log_level: info\nlisten: 127.0.0.1:99999\n', /:2: listen: /],
  ];
  for (const [what, text, re] of broken) {
    test(`${what} names file and line, and serve refuses to start (exit 2)`, () => {
      const p = configFile(`${what.replace(/ /g, '-')}.yaml`, text);
      const r = runArun(['serve', '--config', p]);
      assert.equal(r.status, 2, r.stderr);
      assert.ok(r.stderr.includes(p), `stderr names the file: ${r.stderr}`);
      assert.match(r.stderr, re);
      const c = runArun(['config', 'check', p]);
      assert.equal(c.status, 2);
      assert.match(c.stderr, re);
      assertNoSanitizerReport(r.stderr + c.stderr);
    });
  }

  test('config check prints the resolved config', () => {
    const p = configFile('ok.yaml', 'listen: 127.0.0.1:9999\nlog_level: debug\n');
    const r = runArun(['config', 'check', p]);
    assert.equal(r.status, 0, r.stderr);
    const cfg = JSON.parse(r.stdout);
    assert.equal(cfg.listen, '127.0.0.1:9999');
    assert.equal(cfg.log_level, 'debug');
    assert.equal(cfg.limits.max_body_bytes, 8388608);
    assert.equal(cfg.store.synchronous, 'full');
  });

  test('a named config file that does not exist is an error (exit 2)', () => {
    const r = runArun(['serve', '--config', join(dir, 'missing.yaml')]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /missing\.yaml/);
  });

  test('ARUN_CONFIG names the file when --config is absent', () => {
    const p = configFile('env.yaml', 'listen: 127.0.0.1:7777\n');
    const r = runArun(['config', 'check'], { env: { ...process.env, ARUN_CONFIG: p } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).listen, '127.0.0.1:7777');
  });

  test('serve refuses to expose an unauthenticated server beyond loopback', () => {
    const open = configFile('open.yaml', 'listen: 0.0.0.0:18555\ntls: off\n');
    const r = runArun(['serve', '--config', open]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /0\.0\.0\.0 is not a loopback address and auth\.mode is none/);
    assertNoSanitizerReport(r.stderr);
  });
});
