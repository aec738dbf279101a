// A horizontal bar of used memory against what was declared and the node's envelope, with the
// numbers in words for screen readers (role img + label) and beside it for everyone.
import { mb } from './fmt.js';

export function MemBar({ label, used, declared, envelope, total }) {
  const ref = Math.max(declared || 0, envelope || 0, total || 0);
  const scale = Math.max(used || 0, ref, 1);
  const pct = (v) => `${Math.min(100, (100 * (v || 0)) / scale)}%`;
  const over = declared && used > declared;
  const words = [`${mb(used)} used`];
  if (!ref) words.push('nothing declared to compare with');
  if (declared) words.push(`${mb(declared)} declared`);
  if (envelope) words.push(`envelope ${mb(envelope)}`);
  if (total) words.push(`of ${mb(total)}`);
  const text = `${label}: ${words.join(', ')}`;
  return (
    <div class="membar">
      <div class="membar-label"><span>{label}</span><span>{words.join(' · ')}</span></div>
      <div class="membar-track" role="img" aria-label={text}>
        {envelope ? <div class="membar-envelope" style={{ width: pct(envelope) }} /> : null}
        {ref ? <div class={over ? 'membar-used over' : 'membar-used'} style={{ width: pct(used) }} /> : null}
        {declared ? <div class="membar-declared" style={{ left: pct(declared) }} /> : null}
      </div>
    </div>
  );
}
