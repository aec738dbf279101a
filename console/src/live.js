// The page's one live stream: GET /v1/events read with fetch, reconnecting with Last-Event-ID
// after a drop (backoff 0.5 s doubling to 5 s, reset once a stream opens), `online` false while
// it is down (the shell's banner). Views subscribe by event type; after a reconnect they are told
// (onReconnect) so they re-read their lists: arun may have restarted, and a new arun's event ids
// start again, so the ring cannot be trusted to fill the gap.
import { sse, ApiError, needKey } from './api.js';
import { cell } from './store.js';

export const online = cell(null); // null: not connected yet; true; false: dropped (banner)

const handlers = new Map(); // type -> Set(fn(data, event))
const reconnects = new Set();
let lastId = null;
let running = false;
let ctl = null;

export function on(type, fn) {
  if (!handlers.has(type)) handlers.set(type, new Set());
  handlers.get(type).add(fn);
  return () => handlers.get(type).delete(fn);
}

export function onReconnect(fn) {
  reconnects.add(fn);
  return () => reconnects.delete(fn);
}

function dispatch(ev) {
  let msg;
  try { msg = JSON.parse(ev.data); } catch { return; }
  if (ev.id != null) lastId = ev.id;
  const type = msg.type || ev.event;
  for (const f of handlers.get(type) || []) f(msg.data || {}, msg);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function start() {
  if (running) return;
  running = true;
  (async () => {
    let backoff = 500;
    let dropped = false;
    while (running) {
      ctl = new AbortController();
      try {
        await sse('/v1/events', {
          signal: ctl.signal,
          lastEventId: lastId,
          onOpen: () => {
            backoff = 500;
            online.set(true);
            if (dropped) for (const f of [...reconnects]) f();
            dropped = false;
          },
          onEvent: dispatch,
        });
      } catch (e) {
        if (!running) break;
        if (e instanceof ApiError && e.status === 401) {
          running = false; // the key prompt takes over; start() again once a key is in
          break;
        }
        if (e instanceof ApiError && e.status === 404) lastId = null;
      }
      if (!running) break;
      dropped = true;
      online.set(false);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 5000);
    }
  })();
}

export function stop() {
  running = false;
  if (ctl) ctl.abort();
}

// A new arun has new ids: an id from before a restart would skip its first events.
export function resetCursor() { lastId = null; }
export { needKey };
