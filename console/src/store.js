// A value that views re-render on: cell.value reads it, cell.set(v) (or cell.value = v) changes
// it and wakes every component that used it through useCell. Smaller than a state library, and
// all the page needs: a few shared facts (the key prompt, who am I, the live engines and runs).
import { useEffect, useState } from 'preact/hooks';

export function cell(initial) {
  let v = initial;
  const subs = new Set();
  return {
    get value() { return v; },
    set value(nv) { this.set(nv); },
    set(nv) {
      if (nv === v) return;
      v = nv;
      for (const f of [...subs]) f(v);
    },
    subscribe(f) { subs.add(f); return () => subs.delete(f); },
  };
}

export function useCell(c) {
  const [, force] = useState(0);
  useEffect(() => c.subscribe(() => force((n) => n + 1)), [c]);
  return c.value;
}
