// Holding SQLite's write lock on arun's database from outside (as another writer, or a slow
// disk, would): arun's commits wait in its writer meanwhile. Uses the sqlite3 CLI.
import { spawn } from 'node:child_process';
import { waitFor } from './wait.mjs';

// Takes the write lock on db; resolves once it is held, to { release() }.
export async function holdWriteLock(db) {
  const p = spawn('sqlite3', [db], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.setEncoding('utf8');
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  p.stdin.write(".timeout 5000\nBEGIN IMMEDIATE;\nSELECT 'locked';\n");
  await waitFor(() => out.includes('locked'), { what: `the write lock on ${db}` });
  const exited = new Promise((r) => p.on('exit', r));
  return { release: async () => { p.stdin.end('COMMIT;\n.quit\n'); await exited; } };
}
