// The live log pane of one engine: GET /v1/engines/NAME/logs?tail=200&follow=1 (the tail, then
// new lines as SSE), read with fetch. Pause holds new lines back (they are shown on resume),
// search filters what is shown, copy puts the shown lines on the clipboard.
import { useEffect, useRef, useState } from 'preact/hooks';
import { sse } from './api.js';

const KEEP = 5000; // lines kept in the page; older ones drop off the top

export function LogPane({ engine, onClose }) {
  const [lines, setLines] = useState([]);
  const [paused, setPaused] = useState(false);
  const [query, setQuery] = useState('');
  const [status, setStatus] = useState('connecting…');
  const [copied, setCopied] = useState('');
  const held = useRef([]);
  const pausedRef = useRef(false);
  const pre = useRef(null);
  const stick = useRef(true);

  useEffect(() => {
    const ac = new AbortController();
    let alive = true;
    (async () => {
      while (alive) {
        try {
          await sse(`/v1/engines/${encodeURIComponent(engine)}/logs?tail=200&follow=1`, {
            signal: ac.signal,
            onOpen: () => setStatus('following'),
            onEvent: (ev) => {
              held.current.push(ev.data);
              if (!pausedRef.current) flush();
            },
          });
          if (alive) setStatus('the log stream ended; reconnecting…');
        } catch (e) {
          if (!alive) return;
          setStatus(`not following: ${e.message}; retrying…`);
        }
        await new Promise((r) => setTimeout(r, 2000));
        if (alive) { held.current = []; setLines([]); } // the reconnect sends the tail again
      }
    })();
    return () => { alive = false; ac.abort(); };
  }, [engine]);

  function flush() {
    const add = held.current;
    held.current = [];
    if (add.length) setLines((l) => { const n = l.concat(add); return n.length > KEEP ? n.slice(n.length - KEEP) : n; });
  }

  useEffect(() => {
    const el = pre.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [lines]);

  const togglePause = () => {
    pausedRef.current = !pausedRef.current;
    setPaused(pausedRef.current);
    if (!pausedRef.current) flush();
  };

  const q = query.toLowerCase();
  const shown = q ? lines.filter((l) => l.toLowerCase().includes(q)) : lines;

  const copy = async () => {
    const text = shown.join('\n');
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const ta = document.createElement('textarea'); // clipboard API refused (plain http)
      ta.value = text;
      document.body.appendChild(ta);
      ta.select();
      document.execCommand('copy');
      ta.remove();
    }
    setCopied(`copied ${shown.length} lines`);
  };

  return (
    <section class="logpane" data-testid="log-pane" aria-labelledby="log-title">
      <header class="logpane-head">
        <h2 id="log-title">Log of {engine}</h2>
        <span class="small muted" role="status">{paused ? `paused (${held.current.length} new held)` : status}</span>
        <div class="actions">
          <label class="sr-only" for="log-search">Search the log</label>
          <input id="log-search" type="search" data-testid="log-search" placeholder="Search"
            value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
          <button type="button" data-testid="log-pause" aria-pressed={paused ? 'true' : 'false'}
            onClick={togglePause}>{paused ? 'Resume' : 'Pause'}</button>
          <button type="button" data-testid="log-copy" onClick={copy}>Copy</button>
          <button type="button" aria-label="Close the log" onClick={onClose}>Close</button>
        </div>
      </header>
      {copied && <p class="small muted">{copied}</p>}
      <pre ref={pre} class="log" role="log" tabIndex={0} aria-label={`Log lines of ${engine}`}
        onScroll={(e) => { const el = e.currentTarget; stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24; }}>
        {shown.join('\n')}
      </pre>
    </section>
  );
}
