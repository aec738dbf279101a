// The charts of the engines view, from GET /v1/stats?window=3600 (10 s buckets, one hour) read
// every 10 s: requests/s, TTFT p50/p95, queue wait and tokens/s per engine, and the node's
// memory. Loaded on demand (a chunk of its own with uPlot), so the first paint does not wait.
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { api, ApiError } from './api.js';

const EVERY_MS = 10000;
const COLORS = ['#1f5fbf', '#b3261e', '#1b7a3a', '#8a4b00', '#6b2fa3', '#00677a', '#5c5c5c'];

function Chart({ kind, title, unit, data, series }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const width = () => Math.max(260, el.clientWidth - 8);
    const opts = {
      width: width(),
      height: 180,
      series: [{}, ...series.map((s, i) => ({ label: s, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false }))],
      axes: [{}, { label: unit, size: 56 }],
      scales: { x: { time: true } },
      legend: { live: false },
    };
    plot.current = new uPlot(opts, data, el);
    const onResize = () => plot.current && plot.current.setSize({ width: width(), height: 180 });
    addEventListener('resize', onResize);
    return () => { removeEventListener('resize', onResize); plot.current.destroy(); plot.current = null; };
  }, [series.join('\u0000')]);
  useEffect(() => { if (plot.current) plot.current.setData(data); }, [data]);
  return (
    <figure class="chart" data-testid="chart" data-chart={kind}>
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title}, the last hour`} />
    </figure>
  );
}

// [t, series...] for uPlot from the per-engine arrays, on the union of their timestamps.
function perEngine(stats, field, suffix = '') {
  const names = Object.keys(stats.engines || {}).sort();
  const ts = [...new Set(names.flatMap((n) => stats.engines[n].t || []))].sort((a, b) => a - b);
  const cols = names.map((n) => {
    const e = stats.engines[n];
    const at = new Map((e.t || []).map((t, i) => [t, (e[field] || [])[i] ?? null]));
    return ts.map((t) => at.get(t) ?? null);
  });
  return { series: names.map((n) => n + suffix), data: [ts, ...cols] };
}

function merge(a, b) {
  return { series: [...a.series, ...b.series], data: [a.data[0], ...a.data.slice(1), ...b.data.slice(1)] };
}

export function Charts() {
  const [stats, setStats] = useState(null);
  const [note, setNote] = useState('');
  useEffect(() => {
    let alive = true;
    let timer;
    const load = async () => {
      let next = EVERY_MS;
      try {
        const s = await api('/v1/stats?window=3600');
        if (alive) { setStats(s); setNote(''); }
      } catch (e) {
        if (!alive) return;
        if (e instanceof ApiError && e.status === 404) { setNote('This arun keeps no statistics (GET /v1/stats).'); next = 60000; }
        else setNote(`Charts not refreshed: ${e.message}`);
      }
      if (alive) timer = setTimeout(load, next);
    };
    load();
    return () => { alive = false; clearTimeout(timer); };
  }, []);

  if (!stats) return note ? <p class="small muted">{note}</p> : null;
  const req = perEngine(stats, 'requests_per_s');
  const ttft = merge(perEngine(stats, 'ttft_p50_ms', ' p50'), perEngine(stats, 'ttft_p95_ms', ' p95'));
  const queue = perEngine(stats, 'queue_wait_p50_ms');
  const tok = perEngine(stats, 'tokens_per_s');
  const n = stats.node || {};
  const mem = { series: ['RAM used', 'VRAM used'], data: [n.t || [], n.ram_used_mb || [], n.vram_used_mb || []] };
  return (
    <section class="charts" aria-labelledby="charts-title">
      <h2 id="charts-title">The last hour</h2>
      {note && <p class="small muted">{note}</p>}
      <div class="chart-grid">
        <Chart kind="requests" title="Requests per second" unit="req/s" {...req} />
        <Chart kind="ttft" title="Time to first token" unit="ms" {...ttft} />
        <Chart kind="queue" title="Queue wait (p50)" unit="ms" {...queue} />
        <Chart kind="tokens" title="Tokens per second" unit="tok/s" {...tok} />
        <Chart kind="memory" title="Node memory" unit="MB" {...mem} />
      </div>
    </section>
  );
}
