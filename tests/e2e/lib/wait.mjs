// Waiting on a condition with a deadline: the only way tests synchronise (never a bare sleep).

// Polls fn() until it returns a truthy value; fails after timeoutMs with the last value seen.
// An error thrown by fn counts as "not yet", unless it is a waitFor.Stop: the condition can no
// longer become true (the process exited), so waiting on is pointless and it is thrown at once.
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 10, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      if (e instanceof waitFor.Stop) throw e;
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${
        last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

waitFor.Stop = class extends Error {};
