// One run's page (#/runs/ID): its status, the output text streaming live from
// GET /v1/responses/ID?stream=true (the stored events replayed first, so a page opened late shows
// everything), the timeline of those events, the input, usage, provenance (the `arun` field),
// the error in words, and cancel. A stream cut short (arun restarted) resumes with
// starting_after = the last sequence number seen.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, sse, ApiError } from './api.js';
import * as live from './live.js';
import { ms, rate } from './fmt.js';
import { runRow } from './runs.jsx';
import { markReady } from './util.js';

const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'incomplete']);
const END_EVENTS = new Set(['response.completed', 'response.failed', 'response.cancelled', 'response.incomplete', 'error']);

// What an error code means to a person, beside the server's own message.
const EXPLAIN = {
  engine_failed: 'The engine serving this run died or failed to load; the run could not go on.',
  engine_unavailable: 'No engine could serve the model when the run was tried.',
  insufficient_memory: 'The engine needs more memory than the node may give it.',
  queue_full: 'Too many requests were waiting for this model.',
  rate_limit_exceeded: 'The tenant was over its request limit.',
  timeout: 'The run took longer than the configured limit.',
  server_shutdown: 'arun was shutting down.',
  max_output_tokens: 'The answer reached max_output_tokens and was cut there.',
  content_filter: 'The engine stopped the answer.',
  cancelled: 'Someone cancelled the run.',
};

function outputText(run) {
  const parts = [];
  for (const item of (run && run.output) || []) {
    for (const c of item.content || []) if (c.type === 'output_text' && c.text) parts.push(c.text);
  }
  return parts.join('');
}

function itemText(item) {
  if (typeof item.content === 'string') return item.content;
  return (item.content || []).map((c) => c.text ?? (c.type ? `[${c.type}]` : '')).join('');
}

export function RunPage({ id, tenant, admin }) {
  // An admin's view of another tenant's run: every call acts for that tenant (?tenant=).
  const t = tenant ? `tenant=${encodeURIComponent(tenant)}` : '';
  const path = (suffix = '', query = '') => {
    const q = [query, t].filter(Boolean).join('&');
    return `/v1/responses/${encodeURIComponent(id)}${suffix}${q ? `?${q}` : ''}`;
  };
  const [run, setRun] = useState(null);
  const [error, setError] = useState('');
  const [text, setText] = useState(null); // streamed text, null until the first delta
  const [timeline, setTimeline] = useState([]);
  const [input, setInput] = useState(null);
  const [cancel, setCancel] = useState('');
  const [streamNote, setStreamNote] = useState('');
  const textRef = useRef('');

  const reload = async () => {
    try {
      const r = await api(path());
      setRun(r);
      setError('');
      return r;
    } catch (e) {
      setError(e instanceof ApiError && e.status === 404 ? 'No such run here (it was deleted, or it is another tenant’s).' : e.message);
      return null;
    }
  };

  useEffect(() => {
    let alive = true;
    const ac = new AbortController();
    textRef.current = '';
    setText(null);
    setTimeline([]);
    (async () => {
      const first = await reload();
      if (!alive || !first) return;
      markReady();
      api(path('/input_items', 'order=asc&limit=100'))
        .then((j) => alive && setInput(j.data)).catch(() => alive && setInput([]));
      let after = null;
      let ended = false;
      let backoff = 500;
      while (alive && !ended) {
        try {
          const q = after == null ? '' : `&starting_after=${after}`;
          await sse(path('', `stream=true${q}`), {
            signal: ac.signal,
            onOpen: () => { backoff = 500; setStreamNote(''); },
            onEvent: (ev) => {
              let d;
              try { d = JSON.parse(ev.data); } catch { return; }
              if (d.sequence_number != null) after = d.sequence_number;
              const type = d.type || ev.event;
              if (type === 'response.output_text.delta') {
                textRef.current += d.delta || '';
                setText(textRef.current);
              }
              setTimeline((tl) => {
                const last = tl[tl.length - 1];
                if (last && last.type === type && type.endsWith('.delta')) {
                  return tl.slice(0, -1).concat({ ...last, n: last.n + 1, to: d.sequence_number });
                }
                return tl.concat({ type, n: 1, from: d.sequence_number, to: d.sequence_number, at: Date.now() });
              });
              if (END_EVENTS.has(type)) ended = true;
            },
          });
          ended = true; // the server ends the stream when the run is over
        } catch (e) {
          if (!alive) return;
          if (e instanceof ApiError && e.status < 500) { setStreamNote(`no event stream: ${e.message}`); break; }
          setStreamNote('the stream dropped; resuming…');
          await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(backoff * 2, 5000);
        }
      }
      if (alive) reload();
    })();
    const off = live.on('run.status', (d) => {
      if (d.id !== id) return;
      setRun((r) => (r ? { ...r, status: d.status } : r));
      if (TERMINAL.has(d.status)) reload();
    });
    return () => { alive = false; ac.abort(); off(); };
  }, [id, tenant]);

  const doCancel = async () => {
    setCancel('cancelling…');
    try {
      const r = await api(path('/cancel'), { method: 'POST' });
      setRun(r);
      setCancel(`cancel: the run is now ${r.status}`);
    } catch (e) {
      setCancel(`cancel refused: ${e.message}`);
    }
  };

  if (error && !run) return <section><h1>Run {id}</h1><p class="error" role="alert">{error}</p><a href="#/runs">All runs</a></section>;
  if (!run) return <p class="muted">Loading the run…</p>;

  const row = runRow(run);
  const shownText = text ?? outputText(run);
  const usage = run.usage || (run.arun && run.arun.usage);
  const err = run.error;
  const inc = run.incomplete_details;
  const active = !TERMINAL.has(run.status);

  return (
    <section class="runpage" data-testid="run-page" data-run-id={run.id} data-status={run.status}
      aria-labelledby="run-title">
      <p><a href="#/runs">← All runs</a></p>
      <header class="card-head">
        <h1 id="run-title" class="mono">{run.id}</h1>
        <span class={`badge state-${run.status}`}>{run.status.replace('_', ' ')}</span>
      </header>
      <dl class="facts wide">
        <dt>Model</dt><dd>{run.model}</dd>
        {admin && row.tenant && <><dt>Tenant</dt><dd>{row.tenant}</dd></>}
        <dt>Created</dt><dd>{new Date(run.created_at * 1000).toLocaleString()}</dd>
        <dt>Queued</dt><dd>{ms(row.queued_ms)}</dd>
        <dt>TTFT</dt><dd>{ms(row.ttft_ms)}</dd>
        <dt>Tokens/s</dt><dd>{rate(row.tokens_per_s)}</dd>
      </dl>
      <div class="actions">
        <button type="button" data-testid="run-cancel" disabled={!active} onClick={doCancel}
          title={active ? 'Cancel this run' : 'The run is over'}>Cancel run</button>
        {cancel && <span role="status" class="small">{cancel}</span>}
      </div>
      {(err || inc || run.status === 'cancelled') && (
        <div class="error-box" data-testid="run-error" role="note">
          {err && <p><strong>{err.code || 'error'}</strong>: {err.message}</p>}
          {err && EXPLAIN[err.code] && <p>{EXPLAIN[err.code]}</p>}
          {inc && <p>Incomplete: {inc.reason}{EXPLAIN[inc.reason] ? `. ${EXPLAIN[inc.reason]}` : ''}</p>}
          {!err && !inc && <p>{EXPLAIN.cancelled}</p>}
        </div>
      )}
      <h2>Output</h2>
      <pre class="output" data-testid="run-output" aria-live="polite" tabIndex={0}>{shownText}</pre>
      {streamNote && <p class="small muted">{streamNote}</p>}
      <div class="cols">
        <section>
          <h2>Timeline</h2>
          <ol class="timeline" data-testid="run-timeline">
            {timeline.map((t, i) => (
              <li key={i}><span class="mono">{t.type}</span>{t.n > 1 ? ` ×${t.n}` : ''}
                {t.from != null && <span class="small muted"> #{t.from}{t.to !== t.from ? `–${t.to}` : ''}</span>}</li>
            ))}
          </ol>
        </section>
        <section>
          <h2>Input</h2>
          <div data-testid="run-input">
            {run.instructions && <p><strong>instructions</strong>: {run.instructions}</p>}
            {input == null ? <p class="muted">…</p> : input.map((it, i) => (
              <p key={it.id || i}><strong>{it.role || it.type}</strong>: {itemText(it)}</p>
            ))}
          </div>
          <h2>Usage</h2>
          <dl class="facts" data-testid="run-usage">
            <dt>Input tokens</dt><dd>{usage ? usage.input_tokens : '–'}</dd>
            <dt>Output tokens</dt><dd>{usage ? usage.output_tokens : '–'}</dd>
            <dt>Total</dt><dd>{usage ? usage.total_tokens : '–'}</dd>
          </dl>
          <h2>Provenance</h2>
          <div data-testid="run-provenance">
            {run.arun ? (
              <dl class="facts">
                <dt>Engine</dt><dd>{run.arun.engine || '–'}</dd>
                <dt>Backend</dt><dd>{run.arun.backend || '–'}</dd>
                <dt>Engine model</dt><dd>{run.arun.engine_model || '–'}</dd>
                <dt>Manifest</dt><dd class="mono">{run.arun.manifest_hash || '–'}</dd>
                <dt>Route</dt><dd>{(run.arun.route || []).join(' → ') || '–'}</dd>
                <dt>Fallbacks</dt><dd>{run.arun.fallbacks ?? 0}</dd>
                <dt>Total time</dt><dd>{ms(run.arun.timings && run.arun.timings.total_ms)}</dd>
                <dt>Resumed after a restart</dt><dd>{run.arun.continued_after_restart ? 'yes' : 'no'}</dd>
              </dl>
            ) : <p class="muted">No provenance recorded.</p>}
          </div>
        </section>
      </div>
    </section>
  );
}
