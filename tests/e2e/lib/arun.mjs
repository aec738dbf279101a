// Test harness: starts arun (the ASan build under `make test`) on an ephemeral port with a
// config and data_dir of the test's own, and helps tests wait on conditions with deadlines.
import { spawn, spawnSync, execFile, execFileSync } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { waitFor } from './wait.mjs';
import { createDb, psql } from './pg.mjs';

export { waitFor };

// ARUN_TEST_STORE=postgres runs the same tests on PostgreSQL (make test's second pass): every
// arun gets a database of its own on this file's throwaway cluster (lib/pg.mjs), the cluster
// secret, a node id and an advertised address (a loopback listen needs one).
export const STORE = process.env.ARUN_TEST_STORE === 'postgres' ? 'postgres' : 'sqlite';
export const onPostgres = STORE === 'postgres';
export const CLUSTER_SECRET = 'arun-e2e-cluster-secret-0123456789abcdef';

// A reason to skip a test that reads or breaks SQLite's own files, under postgres only (for
// test(name, {skip}, fn)); false on SQLite.
export const sqliteOnly = (why) => (onPostgres ? `SQLite only: ${why}` : false);

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const ARUN_BIN = process.env.ARUN_BIN || join(ROOT, 'build/arun');
export const MOCK_BIN = process.env.MOCK_BIN || join(ROOT, 'build/arun-mock-engine');


// The supervisor's `port: auto` range (docs/engines.md).
export const AUTO_PORTS = { min: 41000, max: 41999 };

// A free TCP port on 127.0.0.1 for a test that must name one, outside AUTO_PORTS: a port inside
// could be handed at the same moment to an engine of another arun (tests run in parallel).
export async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const srv = net.createServer().on('error', reject);
      srv.listen(0, '127.0.0.1', () => { const p = srv.address().port; srv.close(() => resolve(p)); });
    });
    if (port < AUTO_PORTS.min || port > AUTO_PORTS.max) return port;
  }
}

// Whether port on 127.0.0.1 can be bound now.
export function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer().on('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export function tempDir(prefix = 'arun-test-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

// Runs the arun binary to completion (for CLI verbs); returns {status, stdout, stderr}.
export function runArun(args, opts = {}) {
  const r = spawnSync(ARUN_BIN, args, { encoding: 'utf8', timeout: 30000, ...opts });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

// Sanitizer reports in a process's stderr are test failures wherever they appear.
export function assertNoSanitizerReport(stderr, who = 'arun') {
  for (const marker of ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:']) {
    assert.ok(!stderr.includes(marker), `${who} printed a sanitizer report:\n${stderr.slice(-4000)}`);
  }
}

export class Arun {
  // pg: {url, nodeId, leaseS} puts this arun on that PostgreSQL database as that node whatever
  // ARUN_TEST_STORE says (the multi-node tests); the advertised port is chosen at start.
  constructor({ config = '', args = [], env = {}, dir, pg } = {}) {
    this.dir = dir || tempDir();
    this.dataDir = join(this.dir, 'data');
    this.configPath = join(this.dir, 'arun.yaml');
    this.body = config.includes('data_dir:') ? config : `data_dir: ${this.dataDir}\n${config}`;
    this.args = args;
    this.env = env;
    this.stderr = '';
    this.exit = null;
    this.pg = pg ? { port: 0, ...pg } : null;
    if (!this.pg && onPostgres) {
      // A test that restarts with the config file's text (store: and cluster: included) gets
      // this dir's database again, the sections written anew.
      this.body = this.body.replace(/^store:\n  url: postgres[^\n]*\ncluster:\n(?:  [^\n]*\n)*/m, '');
      if (!/^(store|cluster):/m.test(this.body)) this.pg = this.pgStore();
    }
    if (this.pg) this.env = { ARUN_CLUSTER_SECRET: CLUSTER_SECRET, ...env };
    this.writeConfig();
  }

  // This dir's PostgreSQL database and node: made once, then read back, so an arun restarted
  // on the same dir (new Arun({dir})) finds its data, its node id and, when free, its port.
  pgStore() {
    const f = join(this.dir, 'pg-store.json');
    if (existsSync(f)) return JSON.parse(readFileSync(f, 'utf8'));
    const pg = { url: createDb(), nodeId: `node-${this.dir.split('/').pop().toLowerCase()}`, port: 0 };
    writeFileSync(f, JSON.stringify(pg));
    return pg;
  }

  writeConfig() {
    let body = this.body;
    if (this.pg) {
      body += `${body.endsWith('\n') ? '' : '\n'}store:\n  url: ${this.pg.url}\ncluster:\n  node_id: ${this.pg.nodeId}\n`;
      if (this.pg.port) body += `  advertise: http://127.0.0.1:${this.pg.port}\n`;
      if (this.pg.leaseS) body += `  lease_s: ${this.pg.leaseS}\n`;
    }
    writeFileSync(this.configPath, body);
  }

  // Starts arun and resolves once it listens; this.url is its base URL (https://… with tls:).
  async start({ timeoutMs = 10000 } = {}) {
    let listen = '127.0.0.1:0';
    if (this.pg) {
      // A node advertises where it listens, so the port is chosen before it starts.
      if (!this.pg.port || !(await portFree(this.pg.port))) this.pg.port = await freePort();
      writeFileSync(join(this.dir, 'pg-store.json'), JSON.stringify(this.pg));
      this.writeConfig();
      listen = `127.0.0.1:${this.pg.port}`;
    }
    this.proc = spawn(ARUN_BIN, ['serve', '--config', this.configPath,
      '--listen', listen, ...this.args], {
      env: { ...process.env, ...this.env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (d) => { this.stderr += d; });
    const stderrEnded = new Promise((res) => this.proc.stderr.on('end', res));
    this.proc.stdout.resume();
    this.exited = new Promise((res) => this.proc.on('exit', (code, signal) => {
      this.exit = { code, signal };
      res(this.exit);
    }));
    const line = await waitFor(async () => {
      if (this.exit) {
        // 'exit' can come before the last of stderr: read it all (bounded) for the message.
        await Promise.race([stderrEnded, new Promise((r) => setTimeout(r, 2000).unref())]);
        throw new waitFor.Stop(`arun exited ${JSON.stringify(this.exit)}:\n${this.stderr}`);
      }
      return this.logLines().find((l) => /listening on http/.test(l.msg || ''));
    }, { timeoutMs, what: 'arun to listen' });
    this.port = Number(/:(\d+) \(/.exec(line.msg)[1]);
    // https when the config has tls: {cert, key} (the log line names the scheme it serves).
    this.url = `${/listening on (https?):/.exec(line.msg)[1]}://127.0.0.1:${this.port}`;
    this.startupMs = Number(/in ([\d.]+) ms/.exec(line.msg)[1]);
    return this;
  }

  // SQL on this arun's database while it runs: the sqlite3 CLI on arun.db (WAL: the busy
  // timeout covers its writer's commits), or psql on its PostgreSQL database. Both print one
  // value a line, no headers.
  sql(q) {
    if (this.pg) return psql(this.pg.url, q);
    return execFileSync('sqlite3', ['-cmd', '.timeout 10000', join(this.dataDir, 'arun.db'), q], { encoding: 'utf8' });
  }

  logLines() {
    return this.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => {
      try { return JSON.parse(l); } catch { return {}; }
    });
  }

  get pid() { return this.proc.pid; }

  rssKb() {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return Number(m[1]);
  }

  // Sends a signal and waits for the exit; returns {code, signal, ms}.
  async stop(signal = 'SIGTERM', { timeoutMs = 15000 } = {}) {
    if (this.exit) return this.exit;
    const t0 = Date.now();
    this.proc.kill(signal);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    const r = await this.exited;
    clearTimeout(timer);
    return { ...r, ms: Date.now() - t0 };
  }

  // Stops arun (if still running), checks its stderr for sanitizer reports, removes the dir.
  async cleanup() {
    if (this.proc && !this.exit) await this.stop('SIGTERM');
    if (this.proc) assertNoSanitizerReport(this.stderr);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// Collects the events of GET /v1/events (parsed: {type, data, …}) that keep(event) accepts,
// from the time it resolves (the subscription is in place); close() ends it.
export async function watchEvents(arun, keep = () => true) {
  const ac = new AbortController();
  const seen = [];
  const r = await fetch(`${arun.url}/v1/events`, { signal: ac.signal });
  const done = (async () => {
    const dec = new TextDecoder();
    let buf = '';
    for await (const chunk of r.body) {
      buf += dec.decode(chunk, { stream: true });
      for (let i; (i = buf.indexOf('\n\n')) >= 0; buf = buf.slice(i + 2)) {
        const data = /^data: (.*)$/m.exec(buf.slice(0, i));
        const ev = data && JSON.parse(data[1]);
        if (ev && keep(ev)) seen.push(ev);
      }
    }
  })().catch(() => { /* aborted */ });
  return { seen, close: () => { ac.abort(); return done; } };
}

// Creates an API key for arun's data_dir with `arun keys create --json`, through the running
// server's owner-only socket or, before arun.start(), on the store itself; resolves to {id, key}.
// ARUN_URL is cleared so that the CLI works locally, as the first admin key must.
export async function createKey(arun, { tenant, role = 'member', name } = {}) {
  const args = ['keys', 'create', '--config', arun.configPath, '--json', '--tenant', tenant,
    '--role', role];
  if (name !== undefined) args.push('--name', name);
  const env = { ...process.env };
  delete env.ARUN_URL;
  delete env.ARUN_API_KEY;
  const { stdout, stderr } = await new Promise((res, rej) => {
    execFile(ARUN_BIN, args, { env, encoding: 'utf8', timeout: 30000 }, (err, out, errOut) => {
      if (err) rej(new Error(`arun ${args.join(' ')} failed (${err.code ?? err.signal}):\n${errOut}`));
      else res({ stdout: out, stderr: errOut });
    });
  });
  assertNoSanitizerReport(stderr, 'arun keys create');
  const k = JSON.parse(stdout);
  return { id: k.id, key: k.key };
}
