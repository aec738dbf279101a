// A throwaway PostgreSQL cluster for the e2e tests of one file: `node --test` runs each file in a
// process of its own, and the first use here starts one cluster for that process
// (scripts/pgtmp.sh, about a second), stopped and removed when the process exits. Each arun
// gets a database of its own on it (createDb). Never the machine's PostgreSQL service.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SCRIPT = join(ROOT, 'scripts/pgtmp.sh');
const BIN = process.env.PG_BIN || (() => {
  const r = spawnSync('sh', ['-c', 'ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1'], { encoding: 'utf8' });
  return r.stdout.trim();
})();

let cluster = null; // {dir, url, port}
let dbs = 0;

const pgtmp = (...args) => execFileSync('sh', [SCRIPT, ...args], { encoding: 'utf8', timeout: 60000 }).trim();

// Whether this machine can run a throwaway cluster (PostgreSQL's server binaries).
export function havePostgres() {
  return BIN !== '' && spawnSync('test', ['-x', join(BIN, 'initdb')]).status === 0;
}

// The cluster of this process, started on first use: {dir, url, port}.
export function pgCluster() {
  if (cluster) return cluster;
  const dir = mkdtempSync(join(tmpdir(), 'arun-pg-'));
  const url = pgtmp('start', dir);
  cluster = { dir, url, port: Number(/:(\d+)\//.exec(url)[1]) };
  const stop = () => { spawnSync('sh', [SCRIPT, 'stop', dir], { timeout: 30000 }); };
  process.on('exit', stop);
  // The test runner ends a file's process with a signal when it times out or is interrupted:
  // the cluster goes too ('exit' does not run then).
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.once(sig, () => { stop(); process.exit(128 + 15); });
  return cluster;
}

// A new empty database on the cluster (owned by role arun); returns its URL.
export function createDb(name = `arun_${process.pid}_${++dbs}`) {
  return pgtmp('createdb', pgCluster().dir, name);
}

// Stops the server at once, like a crash (pg_ctl -m immediate); the data stays.
export function pgKill() {
  pgtmp('kill', pgCluster().dir);
}

// Starts the stopped server again on its port.
export function pgRestart() {
  pgtmp('restart', pgCluster().dir);
}

// Runs SQL on a database of the cluster with psql; returns its output (unaligned, no headers:
// one value a line, as the sqlite3 CLI prints them).
export function psql(url, sql) {
  return execFileSync(join(BIN, 'psql'), ['-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql],
    { encoding: 'utf8', timeout: 30000 });
}

// The whole database as text (pg_dump --data-only --inserts): what a search for secrets reads.
export function pgDump(url) {
  return execFileSync(join(BIN, 'pg_dump'), ['--data-only', '--inserts', '-d', url],
    { encoding: 'utf8', timeout: 60000, maxBuffer: 256 * 1024 * 1024 });
}

// The server's own log (errors, and the statements that caused them).
export function pgServerLog() {
  return spawnSync('cat', [join(pgCluster().dir, 'server.log')], { encoding: 'utf8' }).stdout || '';
}
