// Helpers for tests that use arun-mock-engine: spawn it on an ephemeral port, stop it, wait on a
// condition with a deadline, and predict its answers (the rule of docs/mock-engine.md).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.mjs';

export { waitFor };

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../../..');
export const MOCK_BIN = process.env.MOCK_BIN ?? path.join(repoRoot, 'build/arun-mock-engine');

const SANITIZER_RE = /(AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:)/;

// Starts the mock with `--port 0` plus args and resolves once its stderr names the port.
export async function startMock(args = [], { timeoutMs = 10000 } = {}) {
  const child = spawn(MOCK_BIN, ['--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr += d; });
  const port = await new Promise((resolve, reject) => {
    const fail = (why) => reject(new Error(`${MOCK_BIN} ${args.join(' ')}: ${why}; stderr:\n${stderr}`));
    const timer = setTimeout(() => fail(`no "listening on" line within ${timeoutMs} ms`), timeoutMs);
    const onData = () => {
      const m = /listening on http:\/\/\S+:(\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        child.stderr.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    child.stderr.on('data', onData);
    child.on('error', (e) => { clearTimeout(timer); fail(`spawn failed: ${e.message}`); });
    exited.then(({ code, signal }) => { clearTimeout(timer); fail(`exited (${code ?? signal}) before listening`); });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    child,
    port,
    url,
    baseURL: `${url}/v1`,
    exited,
    stderr: () => stderr,
    // SIGTERM (unless it already exited) and the exit status, within a deadline.
    async stop(timeoutMs2 = 5000) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      let timer;
      const deadline = new Promise((_, reject) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`mock did not exit within ${timeoutMs2} ms of SIGTERM; stderr:\n${stderr}`));
        }, timeoutMs2);
      });
      try {
        return await Promise.race([exited, deadline]);
      } finally {
        clearTimeout(timer);
      }
    },
    // Whether a sanitizer wrote anything (an ASan build's report).
    sanitizerReport: () => (SANITIZER_RE.test(stderr) ? stderr : null),
  };
}


export async function mockStats(mock) {
  const res = await fetch(`${mock.url}/mock/stats`);
  return res.json();
}

// ---- the generation rule (docs/mock-engine.md), for predicting answers ----

export const WORDS = [
  'the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog',
  'alpha', 'beta', 'gamma', 'delta', 'river', 'stone', 'cloud', 'light',
  'shadow', 'ocean', 'forest', 'engine', 'token', 'model', 'signal', 'paper',
  'garden', 'window', 'silver', 'orange', 'purple', 'green', 'yellow', 'north',
  'south', 'east', 'west', 'morning', 'evening', 'winter', 'summer', 'spring',
  'autumn', 'music', 'story', 'number', 'letter', 'bridge', 'tower', 'castle',
  'island', 'planet', 'comet', 'rocket', 'harbor', 'valley', 'meadow', 'thunder',
  'breeze', 'candle', 'mirror', 'puzzle', 'circle', 'square', 'arrow', 'anchor',
];

function fnv1a(h, bytes) {
  for (const b of bytes) {
    h = Math.imul(h ^ b, 16777619) >>> 0;
  }
  return h;
}

// The prompt text of a chat: "role: content\n" per message; content parts give their text.
export function chatPromptText(messages) {
  const content = (c) => (c == null ? '' : typeof c === 'string' ? c
    : c.map((p) => (typeof p.text === 'string' ? p.text : '')).join(''));
  return messages.map((m) => `${m.role}: ${content(m.content)}\n`).join('');
}

// Prompt tokens: runs of non-whitespace bytes.
export function countWords(text) {
  return (text.match(/[^ \t\n\r\f\v]+/g) ?? []).length;
}

// The answer to promptText: { text, tokens, finishReason, natural }.
export function mockAnswer(promptText, { seed = 0, maxTokens = 256, ignoreEos = false } = {}) {
  const enc = new TextEncoder();
  const h = fnv1a(fnv1a(2166136261, enc.encode(promptText)), enc.encode(`#${seed}`));
  const natural = 8 + (h % 25);
  const avail = ignoreEos ? Infinity : natural;
  const n = Math.min(maxTokens, avail);
  const tokens = [];
  let s = h;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    tokens.push(`${WORDS[(s >>> 16) % 64]} `);
  }
  return { text: tokens.join(''), tokens, finishReason: maxTokens < avail ? 'length' : 'stop', natural };
}
