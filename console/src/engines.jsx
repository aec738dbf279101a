// The engines view (admins): the node's memory, a card per engine (state and reason in words,
// progress while loading, memory, requests, restarts, uptime, backend, controls), the log pane
// and the charts. Kept live by engine.state and queue.depth events; the lists are re-read every
// 10 s for what no event carries (memory, uptime) and after a reconnect.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from './api.js';
import * as live from './live.js';
import { MemBar } from './bars.jsx';
import { LogPane } from './logs.jsx';
import { mb, ms, secs, isoToMs } from './fmt.js';
import { markReady, useTick } from './util.js';

const REFRESH_MS = 10000;
const ACTIVE = new Set(['starting', 'loading', 'warming']);

function useEngines() {
  const [engines, setEngines] = useState(null); // [{...engine, _at: fetch time, _since}]
  const [node, setNode] = useState(undefined); // undefined: not read yet; null: not served
  const [error, setError] = useState('');
  const seen = useRef(new Map()); // name -> {state, since}: when this page saw the state begin

  const stamp = (e, at) => {
    const s = seen.current.get(e.name);
    if (!s || s.state !== e.state) seen.current.set(e.name, { state: e.state, since: at });
    return { ...e, _at: at, _since: seen.current.get(e.name).since };
  };

  const loadAll = async () => {
    try {
      const j = await api('/v1/engines');
      const at = Date.now();
      setEngines(j.data.map((e) => stamp(e, at)));
      setError('');
    } catch (e) {
      setError(e.message);
    }
    try {
      setNode(await api('/v1/node'));
    } catch (e) {
      setNode(null); // an arun without GET /v1/node: the bars are left out
    }
  };

  const loadOne = async (name) => {
    try {
      const e = await api(`/v1/engines/${encodeURIComponent(name)}`);
      const at = Date.now();
      setEngines((list) => (list || []).map((x) => (x.name === name ? stamp(e, at) : x)));
    } catch { /* the next refresh will tell */ }
  };

  useEffect(() => {
    loadAll();
    const t = setInterval(loadAll, REFRESH_MS);
    const offState = live.on('engine.state', (d) => {
      const at = Date.now();
      setEngines((list) => (list || []).map((x) => {
        if (x.name !== d.engine) return x;
        const { engine, from, ...fields } = d;
        return stamp({ ...x, ...fields }, at);
      }));
      if (!d.memory) loadOne(d.engine); // an arun whose events carry only the state
    });
    const offQueue = live.on('queue.depth', (d) => {
      setEngines((list) => (list || []).map((x) => (x.name === d.engine
        ? { ...x, queued: d.queued ?? x.queued, in_flight: d.in_flight ?? x.in_flight } : x)));
    });
    const offRe = live.onReconnect(loadAll);
    return () => { clearInterval(t); offState(); offQueue(); offRe(); };
  }, []);

  return { engines, node, error, reload: loadAll, reloadOne: loadOne };
}

function Progress({ e, now }) {
  // arun's own measure first (no clock skew between the browser and the server), grown by the
  // time since it was read; then the spawn time; then when this page saw the state begin.
  const since = e.loading_elapsed_ms != null ? e._at - e.loading_elapsed_ms
    : e.loading_since_ms ?? e._since ?? isoToMs(e.started_at) ?? e._at;
  const elapsed = Math.max(0, now - since);
  let expected = e.expected_load_ms ?? null;
  if (expected == null && e.expected_ready_in_ms != null) expected = (e._at - since) + e.expected_ready_in_ms;
  if (expected == null) expected = e.last_load_ms ?? null;
  const pct = expected ? Math.min(99, (100 * elapsed) / expected) : null;
  const words = expected
    ? `${secs(elapsed / 1000)} of about ${secs(expected / 1000)}`
    : `${secs(elapsed / 1000)} (no past load to compare with)`;
  return (
    <div class="progress" data-testid="engine-progress">
      <div class="progress-track" role="progressbar" aria-label={`${e.name} ${e.state}`}
        aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct == null ? undefined : Math.round(pct)}
        aria-valuetext={words}>
        <div class={pct == null ? 'progress-fill indeterminate' : elapsed > expected ? 'progress-fill late' : 'progress-fill'}
          style={{ width: pct == null ? '100%' : `${pct}%` }} />
      </div>
      <div class="small">{words}{expected && elapsed > expected * 1.5 ? ': slower than its past loads' : ''}</div>
    </div>
  );
}

function uptime(e, now) {
  if (e.uptime_s != null) return e.uptime_s + (now - e._at) / 1000;
  if (e.state !== 'ready' && e.state !== 'busy') return null;
  const t = isoToMs(e.started_at);
  return t == null ? null : (now - t) / 1000;
}

const STATE_WORDS = { ready: 'ready: serving requests' };

function EngineCard({ e, node, now, onAction, result, onLogs, logsOpen }) {
  const m = e.memory || {};
  const up = uptime(e, now);
  return (
    <article class="card" data-testid="engine-card" data-engine={e.name} data-state={e.state}
      aria-labelledby={`eng-${e.name}`}>
      <header class="card-head">
        <h3 id={`eng-${e.name}`}>{e.name}</h3>
        <span class={`badge state-${e.state}`} data-testid="engine-state">{e.state}</span>
      </header>
      <p class="reason" data-testid="engine-reason">{e.reason || STATE_WORDS[e.state] || e.state}</p>
      {ACTIVE.has(e.state) && <Progress e={e} now={now} />}
      {e.last_log_line && <p class="logline" title="the engine's last log line"><code>{e.last_log_line}</code></p>}
      <div data-testid="engine-memory">
        <MemBar label="RAM" used={m.rss_mb} declared={m.declared_ram_mb}
          envelope={node && node.ram_mb ? node.ram_mb.envelope : null} />
        {(m.declared_vram_mb || m.vram_mb || (node && node.vram_mb && node.vram_mb.total)) ? (
          <MemBar label="VRAM" used={m.vram_mb} declared={m.declared_vram_mb}
            envelope={node && node.vram_mb ? node.vram_mb.envelope : null} />
        ) : null}
      </div>
      <dl class="facts">
        <dt>In flight</dt><dd>{e.in_flight ?? '–'}</dd>
        <dt>Queued</dt><dd>{e.queued ?? '–'}</dd>
        <dt>Restarts</dt><dd>{e.restarts ?? 0}</dd>
        <dt>Uptime</dt><dd>{up == null ? '–' : secs(up)}</dd>
        <dt>Last load</dt><dd>{ms(e.last_load_ms)}</dd>
        <dt>Models</dt><dd>{(e.models || []).join(', ')}</dd>
        <dt>Backend</dt><dd title={e.backend_reason || ''}>{e.backend || '–'}</dd>
      </dl>
      {e.backend_reason && <p class="small muted">{e.backend_reason}</p>}
      <div class="actions">
        <button type="button" data-testid="engine-start" aria-label={`Start ${e.name}`}
          onClick={(ev) => onAction(e.name, 'start', ev.currentTarget)}>Start</button>
        <button type="button" data-testid="engine-stop" aria-label={`Stop ${e.name}`}
          onClick={(ev) => onAction(e.name, 'stop', ev.currentTarget)}>Stop</button>
        <button type="button" data-testid="engine-restart" aria-label={`Restart ${e.name}`}
          onClick={(ev) => onAction(e.name, 'restart', ev.currentTarget)}>Restart</button>
        <button type="button" data-testid="engine-logs" aria-expanded={logsOpen ? 'true' : 'false'}
          aria-label={`Logs of ${e.name}`} onClick={() => onLogs(e.name)}>Logs</button>
      </div>
      {result && (
        <p class={result.ok ? 'result ok' : 'result error'} role="status" data-testid="engine-result">
          {result.text}
        </p>
      )}
    </article>
  );
}

function ConfirmDialog({ ask, onDone }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open && d.showModal) d.showModal();
  }, []);
  const words = {
    start: 'It loads its model and takes its memory.',
    stop: 'Requests in flight on it are cut, and new ones wait or fail until it starts again.',
    restart: 'Requests in flight on it are cut while it stops and loads again.',
  };
  return (
    <dialog ref={ref} class="dialog" data-testid="confirm-dialog" aria-labelledby="confirm-title"
      onCancel={(ev) => { ev.preventDefault(); onDone(false); }}>
      <h2 id="confirm-title">{ask.action[0].toUpperCase() + ask.action.slice(1)} {ask.engine}?</h2>
      <p>{words[ask.action]}</p>
      <div class="actions">
        <button type="button" data-testid="confirm-cancel" onClick={() => onDone(false)}>Cancel</button>
        <button type="button" class="primary" data-testid="confirm-ok" autofocus onClick={() => onDone(true)}>
          {ask.action[0].toUpperCase() + ask.action.slice(1)}
        </button>
      </div>
    </dialog>
  );
}

export function EnginesView() {
  const { engines, node, error, reloadOne } = useEngines();
  const now = useTick(1000);
  const [ask, setAsk] = useState(null); // {engine, action, from: the button}
  const [results, setResults] = useState({});
  const [logs, setLogs] = useState(null);
  const [Charts, setCharts] = useState(null);

  useEffect(() => { if (engines) markReady(); }, [engines]);
  useEffect(() => {
    import('./charts.jsx').then((m) => setCharts(() => m.Charts)).catch(() => {});
  }, []);

  const act = async (engine, action) => {
    setResults((r) => ({ ...r, [engine]: { ok: true, text: `${action}: sent…` } }));
    try {
      const e = await api(`/v1/engines/${encodeURIComponent(engine)}/${action}`, { method: 'POST' });
      setResults((r) => ({ ...r, [engine]: { ok: true, text: `${action}: accepted, now ${e.state}${e.reason ? ` (${e.reason})` : ''}` } }));
    } catch (err) {
      const why = err instanceof ApiError && err.code ? ` [${err.code}]` : '';
      setResults((r) => ({ ...r, [engine]: { ok: false, text: `${action} refused: ${err.message}${why}` } }));
    }
    reloadOne(engine);
  };

  const done = (ok) => {
    const a = ask;
    setAsk(null);
    // Back to the button that asked, once the modal is gone (focus would fall to the body).
    if (a && a.from) setTimeout(() => a.from.isConnected && a.from.focus(), 0);
    if (ok && a) act(a.engine, a.action);
  };

  return (
    <section aria-labelledby="engines-title">
      <h1 id="engines-title">Engines</h1>
      {error && <p class="error" role="alert">Could not read the engines: {error}</p>}
      {node && (
        <section class="node" data-testid="node-memory" aria-label="Node memory">
          <h2>Node</h2>
          {node.ram_mb && <MemBar label="RAM" used={node.ram_mb.used} declared={node.ram_mb.declared}
            envelope={node.ram_mb.envelope} total={node.ram_mb.total} />}
          {node.vram_mb && (node.vram_mb.total || node.vram_mb.envelope) ? (
            <MemBar label="VRAM" used={node.vram_mb.used} declared={node.vram_mb.declared}
              envelope={node.vram_mb.envelope} total={node.vram_mb.total} />
          ) : null}
        </section>
      )}
      {engines && engines.length === 0 && <p class="muted">No engines in the configuration.</p>}
      <div class="cards">
        {(engines || []).map((e) => (
          <EngineCard key={e.name} e={e} node={node} now={now} result={results[e.name]}
            logsOpen={logs === e.name}
            onAction={(engine, action, from) => setAsk({ engine, action, from })}
            onLogs={(n) => setLogs((cur) => (cur === n ? null : n))} />
        ))}
      </div>
      {logs && <LogPane key={logs} engine={logs} onClose={() => setLogs(null)} />}
      {Charts && <Charts />}
      {ask && <ConfirmDialog ask={ask} onDone={done} />}
    </section>
  );
}
