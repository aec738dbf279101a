// The runs view: the tenant's runs (every tenant's for an admin), newest first, with live counts
// by status, filters and a search by id. GET /v1/responses gives the list; run.status events
// keep it live; it is read again after a reconnect (arun may have restarted and recovered runs).
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api } from './api.js';
import * as live from './live.js';
import { age, ms, rate } from './fmt.js';
import { markReady, useTick } from './util.js';

export const STATUSES = ['queued', 'in_progress', 'completed', 'failed', 'cancelled', 'incomplete'];
const LIMIT = 100;

// A Response object (or a run.status event's data) as a row.
export function runRow(r, prev) {
  const old = prev || {};
  const t = (r.arun && r.arun.timings) || {};
  const usage = r.usage || (r.arun && r.arun.usage) || null;
  const out = r.output_tokens ?? (usage ? usage.output_tokens : null);
  let tps = r.tokens_per_s ?? null;
  if (tps == null && out && t.total_ms != null && t.ttft_ms != null && t.total_ms > t.ttft_ms) {
    tps = out / ((t.total_ms - t.ttft_ms) / 1000);
  }
  const pick = (v, o) => (v === undefined || v === null ? o : v);
  return {
    id: r.id,
    status: pick(r.status, old.status),
    model: pick(r.model, old.model),
    tenant: pick(r.tenant ?? (r.arun && r.arun.tenant), old.tenant),
    created_at: pick(r.created_at, old.created_at),
    queued_ms: pick(r.queued_ms ?? t.queued_ms, old.queued_ms),
    ttft_ms: pick(r.ttft_ms ?? t.ttft_ms, old.ttft_ms),
    tokens_per_s: pick(tps, old.tokens_per_s),
  };
}

// Counts run.status events, so that a list read can tell the rows events changed since it asked.
let evSeq = 0;

export function RunsView({ admin, me }) {
  const [rows, setRows] = useState(null); // Map id -> row
  const [error, setError] = useState('');
  const [status, setStatus] = useState('');
  const [model, setModel] = useState('');
  const [tenant, setTenant] = useState('');
  const [search, setSearch] = useState('');
  const now = useTick(1000);

  const load = async () => {
    try {
      const q = status ? `&status=${encodeURIComponent(status)}` : '';
      const asked = evSeq;
      // An admin lists every tenant's runs (tenant=*), each row with its tenant.
      const j = await api(`/v1/responses?limit=${LIMIT}${q}${admin ? '&tenant=*' : ''}`);
      setRows((prev) => {
        const m = new Map();
        for (const r of j.data) {
          const old = prev && prev.get(r.id);
          // A run.status event that came while the list was on its way is newer than the list
          // (after a restart, recovery settles runs while the page reads the list again).
          m.set(r.id, old && old.seq > asked ? old : runRow(r, old));
        }
        // Runs the events told of that the page is newer than the list's first page keep.
        if (prev) for (const [id, r] of prev) if (!m.has(id) && (!status || r.status === status)) m.set(id, r);
        return m;
      });
      setError('');
    } catch (e) {
      setError(e.message);
      setRows((p) => p || new Map());
    }
  };

  useEffect(() => { load(); }, [status]);
  useEffect(() => {
    const off = live.on('run.status', (d, msg) => {
      const seq = ++evSeq;
      setRows((prev) => {
        const m = new Map(prev || []);
        const old = m.get(d.id);
        const row = runRow(d, old);
        row.seq = seq;
        if (row.created_at == null) row.created_at = Math.floor((msg.time_ms || Date.now()) / 1000);
        m.set(d.id, row);
        return m;
      });
    });
    const offRe = live.onReconnect(load);
    return () => { off(); offRe(); };
  }, [status]);
  useEffect(() => { if (rows) markReady(); }, [rows]);

  const all = useMemo(() => [...(rows || new Map()).values()]
    .sort((a, b) => (b.created_at || 0) - (a.created_at || 0) || (a.id < b.id ? 1 : -1)), [rows]);
  const counts = useMemo(() => {
    const c = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    for (const r of all) c[r.status] = (c[r.status] || 0) + 1;
    return c;
  }, [all]);
  const models = [...new Set(all.map((r) => r.model).filter(Boolean))].sort();
  const tenants = [...new Set(all.map((r) => r.tenant).filter(Boolean))].sort();
  const s = search.trim().toLowerCase();
  const shown = all.filter((r) => (!status || r.status === status) && (!model || r.model === model)
    && (!tenant || r.tenant === tenant) && (!s || r.id.toLowerCase().includes(s)));

  const go = (ev) => {
    ev.preventDefault();
    const id = search.trim();
    if (/^resp_[0-9a-z]+$/i.test(id)) location.hash = `#/runs/${encodeURIComponent(id)}`;
  };

  return (
    <section aria-labelledby="runs-title">
      <h1 id="runs-title">Runs</h1>
      {error && <p class="error" role="alert">Could not read the runs: {error}</p>}
      <ul class="counts" aria-label="Runs by status">
        {STATUSES.map((st) => (
          <li key={st}>
            <button type="button" class={`count state-${st}`} data-testid="run-count" data-status={st}
              aria-pressed={status === st ? 'true' : 'false'}
              aria-label={`${counts[st]} ${st.replace('_', ' ')}: show only these`}
              onClick={() => setStatus(status === st ? '' : st)}>
              <span class="n">{counts[st]}</span> {st.replace('_', ' ')}
            </button>
          </li>
        ))}
      </ul>
      <form class="filters" onSubmit={go} role="search">
        <label>Status
          <select data-testid="filter-status" value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
            <option value="">all</option>
            {STATUSES.map((st) => <option key={st} value={st}>{st.replace('_', ' ')}</option>)}
          </select>
        </label>
        <label>Model
          <select data-testid="filter-model" value={model} onChange={(e) => setModel(e.currentTarget.value)}>
            <option value="">all</option>
            {models.map((m) => <option key={m} value={m}>{m}</option>)}
          </select>
        </label>
        {admin && (
          <label>Tenant
            <select data-testid="filter-tenant" value={tenant} onChange={(e) => setTenant(e.currentTarget.value)}>
              <option value="">all</option>
              {tenants.map((t) => <option key={t} value={t}>{t}</option>)}
            </select>
          </label>
        )}
        <label>Run id
          <input type="search" data-testid="search-id" placeholder="resp_…" value={search}
            onInput={(e) => setSearch(e.currentTarget.value)} />
        </label>
      </form>
      <div class="table-wrap">
        <table data-testid="runs-table">
          <caption class="sr-only">Runs, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Run</th><th scope="col">Model</th>{admin && <th scope="col">Tenant</th>}
              <th scope="col">Age</th><th scope="col">Queued</th><th scope="col">TTFT</th>
              <th scope="col">Tokens/s</th><th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((r) => (
              <tr key={r.id} data-testid="run-row" data-run-id={r.id} data-status={r.status}>
                <td><a href={`#/runs/${encodeURIComponent(r.id)}${admin && r.tenant && r.tenant !== me ? `/${encodeURIComponent(r.tenant)}` : ''}`} class="mono">{r.id.slice(0, 18)}…</a></td>
                <td>{r.model || '–'}</td>
                {admin && <td>{r.tenant || '–'}</td>}
                <td>{age(r.created_at, now)}</td>
                <td>{ms(r.queued_ms)}</td>
                <td>{ms(r.ttft_ms)}</td>
                <td>{rate(r.tokens_per_s)}</td>
                <td><span class={`badge state-${r.status}`}>{(r.status || '').replace('_', ' ')}</span></td>
              </tr>
            ))}
          </tbody>
        </table>
        {rows && shown.length === 0 && <p class="muted">No runs{status || model || tenant || s ? ' match the filters' : ' yet'}.</p>}
      </div>
    </section>
  );
}
