// How numbers read on the page.
export function mb(v) {
  if (v == null) return '–';
  if (v >= 10240) return `${(v / 1024).toFixed(0)} GB`;
  if (v >= 1024) return `${(v / 1024).toFixed(1)} GB`;
  return `${Math.round(v)} MB`;
}

export function ms(v) {
  if (v == null || Number.isNaN(v)) return '–';
  if (v < 1000) return `${Math.round(v)} ms`;
  return secs(v / 1000);
}

export function secs(s) {
  if (s == null || Number.isNaN(s)) return '–';
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function rate(v) {
  return v == null || Number.isNaN(v) ? '–' : v >= 100 ? `${Math.round(v)}` : v.toFixed(1);
}

// Time since epoch seconds t, in words ("12 s", "3 min 4 s").
export function age(t, now = Date.now()) {
  return t == null ? '–' : secs(Math.max(0, now / 1000 - t));
}

export function isoToMs(s) {
  const t = s ? Date.parse(s) : NaN;
  return Number.isNaN(t) ? null : t;
}
