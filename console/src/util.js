import { useEffect, useState } from 'preact/hooks';

// body data-ready="1" once the first view has rendered with its data (the browser tests wait
// on it).
export function markReady() {
  if (document.body.dataset.ready !== '1') {
    requestAnimationFrame(() => { document.body.dataset.ready = '1'; });
  }
}

// Date.now(), re-rendering every `every` ms (elapsed times, ages): local, no request.
export function useTick(every) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), every);
    return () => clearInterval(t);
  }, [every]);
  return now;
}
