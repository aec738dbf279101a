// How the page talks to arun: every call sends the key kept in sessionStorage (arun.key) as a
// bearer token; a 401 asks for a key again (the shell shows the prompt). SSE is read with fetch,
// not EventSource, because EventSource cannot send the Authorization header.
import { cell } from './store.js';

const KEY = 'arun.key';

export const needKey = cell(false); // the key prompt is showing
export const keyError = cell('');

export function getKey() {
  try { return sessionStorage.getItem(KEY) || ''; } catch { return ''; }
}

export function setKey(k) {
  try {
    if (k) sessionStorage.setItem(KEY, k);
    else sessionStorage.removeItem(KEY);
  } catch { /* storage off: the key lives until the tab closes anyway */ }
}

export class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super(e && e.message ? e.message : `HTTP ${status}`);
    this.status = status;
    this.code = e && e.code;
    this.type = e && e.type;
  }
}

function headers(extra) {
  const h = { ...extra };
  const k = getKey();
  if (k) h.Authorization = `Bearer ${k}`;
  return h;
}

// fetch + JSON: resolves to the parsed body, throws ApiError for any non-2xx (401 also raises
// the key prompt).
export async function api(path, { method = 'GET', body, signal: sig } = {}) {
  const init = { method, headers: headers(body ? { 'content-type': 'application/json' } : {}), signal: sig };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  let j = null;
  const text = await r.text();
  try { j = text ? JSON.parse(text) : null; } catch { j = null; }
  if (r.status === 401) {
    keyError.value = getKey() ? 'That key was refused: ' + ((j && j.error && j.error.message) || 'unauthorized') : '';
    needKey.value = true;
  }
  if (!r.ok) throw new ApiError(r.status, j);
  return j;
}

// Reads an SSE response from path with fetch, calling onEvent({event, id, data}) per event
// (data as text). Resolves when the stream ends, rejects on a network error or a non-2xx status
// (ApiError). Comments are passed as onComment(text).
export async function sse(path, { onEvent, onComment, onOpen, signal: sig, lastEventId } = {}) {
  const h = headers({ Accept: 'text/event-stream' });
  if (lastEventId != null) h['Last-Event-ID'] = String(lastEventId);
  const r = await fetch(path, { headers: h, signal: sig, cache: 'no-store' });
  if (!r.ok) {
    let j = null;
    try { j = await r.json(); } catch { /* not JSON */ }
    if (r.status === 401) needKey.value = true;
    throw new ApiError(r.status, j);
  }
  if (onOpen) onOpen();
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = { event: 'message', id: null, data: '' };
      const data = [];
      let any = false;
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) { if (onComment) onComment(line.slice(1).trim()); continue; }
        const c = line.indexOf(':');
        const f = c < 0 ? line : line.slice(0, c);
        let v = c < 0 ? '' : line.slice(c + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (f === 'data') { data.push(v); any = true; }
        else if (f === 'event') ev.event = v;
        else if (f === 'id') ev.id = v;
      }
      if (any) { ev.data = data.join('\n'); onEvent(ev); }
    }
  }
}
