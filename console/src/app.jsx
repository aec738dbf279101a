// The shell: the header (nav, who am I, the key), the disconnected banner, the key prompt, and
// the view the hash names: #/engines (admins' default), #/runs, #/runs/ID.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, getKey, setKey, needKey, keyError } from './api.js';
import { useCell, cell } from './store.js';
import * as live from './live.js';
import { EnginesView } from './engines.jsx';
import { RunsView } from './runs.jsx';
import { RunPage } from './run.jsx';

// {tenant, role, key_id, auth_mode}, or null until known.
export const whoami = cell(null);

function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const parts = h.split('/').filter(Boolean).map(decodeURIComponent);
  // #/runs/ID/TENANT: another tenant's run, opened by an admin (the API calls add ?tenant=).
  if (parts[0] === 'runs' && parts[1]) return { view: 'run', id: parts[1], tenant: parts[2] || null };
  if (parts[0] === 'runs') return { view: 'runs' };
  if (parts[0] === 'engines') return { view: 'engines' };
  return { view: '' };
}

// Who the key is. GET /v1/whoami answers it; an arun without it (404) is asked the old way: a
// key that may list engines is an admin's.
async function learnWhoami() {
  try {
    return await api('/v1/whoami');
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  try {
    await api('/v1/engines');
    return { tenant: null, role: 'admin', key_id: null, auth_mode: getKey() ? 'keys' : 'none' };
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return { tenant: null, role: 'member', key_id: null, auth_mode: 'keys' };
    throw e;
  }
}

function KeyPrompt({ onKey }) {
  const err = useCell(keyError);
  const [busy, setBusy] = useState(false);
  const submit = async (ev) => {
    ev.preventDefault();
    const k = ev.currentTarget.elements.key.value.trim();
    if (!k) { keyError.set('Paste an API key (arun keys create makes one).'); return; }
    setBusy(true);
    setKey(k);
    keyError.set('');
    try {
      await onKey();
    } catch (e) {
      if (!keyError.value) keyError.set(e.message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="key-prompt" data-testid="key-prompt" aria-labelledby="key-title">
      <form onSubmit={submit}>
        <h2 id="key-title">This arun asks for an API key</h2>
        <p>The key stays in this tab only (sessionStorage) and goes to arun with each request.</p>
        <label for="key-input">API key</label>
        <input id="key-input" name="key" type="password" autocomplete="off" spellcheck={false}
          data-testid="key-input" placeholder="arun-…" autofocus />
        <button type="submit" data-testid="key-submit" disabled={busy}>Use this key</button>
        {err && <p class="error" role="alert" data-testid="key-error">{err}</p>}
      </form>
    </section>
  );
}

export function App() {
  const [route, setRoute] = useState(parseHash());
  const prompt = useCell(needKey);
  const me = useCell(whoami);
  const up = useCell(live.online);
  const [fatal, setFatal] = useState('');

  const boot = async () => {
    const w = await learnWhoami();
    needKey.set(false);
    keyError.set('');
    whoami.set(w);
    setFatal('');
    live.start();
  };

  useEffect(() => {
    const f = () => setRoute(parseHash());
    addEventListener('hashchange', f);
    boot().catch((e) => {
      if (!(e instanceof ApiError && e.status === 401)) setFatal(`arun did not answer: ${e.message}`);
    });
    return () => removeEventListener('hashchange', f);
  }, []);

  const admin = me && me.role === 'admin';
  let view = route.view;
  if (!view) view = admin ? 'engines' : 'runs';
  if (view === 'engines' && me && !admin) view = 'runs';

  const forget = () => {
    setKey('');
    live.stop();
    whoami.set(null);
    keyError.set('');
    needKey.set(true);
  };

  return (
    <>
      <header class="top">
        <a class="brand" href="#/">arun</a>
        <nav aria-label="Views">
          {admin && <a href="#/engines" data-testid="nav-engines" aria-current={view === 'engines' ? 'page' : undefined}>Engines</a>}
          <a href="#/runs" data-testid="nav-runs" aria-current={view === 'runs' || view === 'run' ? 'page' : undefined}>Runs</a>
        </nav>
        <span class="who">
          {me && <span>{me.tenant ? `${me.tenant} · ` : ''}{me.role}{me.auth_mode === 'none' ? ' (no keys)' : ''}</span>}
          {getKey() && <button type="button" class="link" onClick={forget}>Forget key</button>}
        </span>
      </header>
      {up === false && (
        <div class="banner" role="status" data-testid="disconnected">
          Disconnected from arun: reconnecting… (what you see may be out of date)
        </div>
      )}
      <main id="main">
        {fatal && <p class="error" role="alert">{fatal}</p>}
        {prompt ? (
          <KeyPrompt onKey={boot} />
        ) : !me ? (
          <p class="muted">Loading…</p>
        ) : view === 'engines' ? (
          <EnginesView />
        ) : view === 'run' ? (
          <RunPage id={route.id} tenant={route.tenant} admin={admin} />
        ) : (
          <RunsView admin={admin} me={me && me.tenant} />
        )}
      </main>
    </>
  );
}
