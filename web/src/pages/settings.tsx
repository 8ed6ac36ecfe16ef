import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, SessionListing } from '../api';
import { Port53 } from '../port53';
import { Alert, FieldError, problemOf } from '../alert';
import { patchConfig, reloadConfigFile, useConfig, useFill } from '../config';
import { ago, date } from '../format';

// Where a session's browser is, in a few words: "Firefox on Linux" from its user agent.
function browserOf(ua: string): string {
  if (!ua) return 'unknown client';
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /Chrom(e|ium)\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : ua.split(/[ /]/)[0];
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Windows/.test(ua) ? 'Windows' : /Mac OS X/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : '';
  return os ? `${browser} on ${os}` : browser;
}

// Sessions: every live login (admin UI and forward-auth logins of proxied sites), each revocable.
function Sessions() {
  const [list, setList] = useState<SessionListing[] | null>(null);
  const [error, setError] = useState('');
  const load = () =>
    api<SessionListing[]>('GET', '/api/v1/auth/sessions')
      .then(setList)
      .catch((e: ApiError) => setError(e.message));
  useEffect(() => {
    load();
  }, []);

  async function revoke(s: SessionListing) {
    const what = s.current ? 'This is your current session: you will be logged out.' : `${s.user} on ${browserOf(s.user_agent)} is logged out at once.`;
    if (!confirm(`Revoke this session? ${what}`)) return;
    setError('');
    try {
      await api('DELETE', `/api/v1/auth/sessions/${s.id}`);
      if (s.current) window.dispatchEvent(new Event('hearth:unauthenticated'));
      else load();
    } catch (err) {
      setError((err as ApiError).message);
    }
  }

  return (
    <section class="card">
      <h2>Sessions</h2>
      <p class="muted">Everyone logged in: to this admin UI, or through the login form of a proxied site (forward auth).</p>
      <Alert>{error}</Alert>
      {list === null ? (
        <p>Loading…</p>
      ) : (
        <table class="table" data-testid="sessions">
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Client</th>
              <th scope="col">Kind</th>
              <th scope="col">Logged in</th>
              <th scope="col">Last seen</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.map((s) => (
              <tr data-session={s.id} data-current={s.current ? 'true' : undefined}>
                <th scope="row">
                  {s.user} {s.current && <span class="badge ready">this session</span>}
                </th>
                <td data-label="Client" title={s.user_agent}>
                  {browserOf(s.user_agent)} · {s.client || '?'}
                </td>
                <td data-label="Kind">{s.kind === 'admin' ? 'admin UI' : 'proxied site'}</td>
                <td data-label="Logged in" title={date(s.created_at)}>
                  {ago(s.created_at)}
                </td>
                <td data-label="Last seen" title={date(s.last_seen_at)}>
                  {ago(s.last_seen_at)}
                </td>
                <td data-label="Expires">{date(s.expires_at)}</td>
                <td>
                  <button class="danger ghost" onClick={() => revoke(s)} aria-label={`Revoke session ${s.id} of ${s.user}${s.current ? ' (this session)' : ''}`}>
                    Revoke
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

// Change the logged-in user's password: every session of the user ends (this one too); optionally its tokens.
function Password() {
  const [form, setForm] = useState({ current: '', next: '', confirm: '', revoke: false });
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    setError('');
    if (form.next.length < 8) return setError('The new password needs at least 8 characters.');
    if (form.next !== form.confirm) return setError('The two new passwords differ.');
    setBusy(true);
    try {
      await api('POST', '/api/v1/auth/password', { current_password: form.current, new_password: form.next, revoke_tokens: form.revoke });
      window.dispatchEvent(new Event('hearth:unauthenticated'));
    } catch (err) {
      setError((err as ApiError).message);
    } finally {
      setBusy(false);
    }
  }
  const set = (k: 'current' | 'next' | 'confirm') => (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value });

  return (
    <form class="card" onSubmit={submit} aria-label="Change password">
      <h2>Password</h2>
      <p class="muted">Changing your password logs you out everywhere, here too: log in again with the new one.</p>
      <div class="grid2">
        <label>
          Current password
          <input name="current-password" type="password" value={form.current} onInput={set('current')} autoComplete="current-password" required />
        </label>
        <label>
          New password <span class="muted">(at least 8 characters)</span>
          <input name="new-password" type="password" value={form.next} onInput={set('next')} autoComplete="new-password" required />
        </label>
        <label>
          Repeat the new password
          <input name="confirm-password" type="password" value={form.confirm} onInput={set('confirm')} autoComplete="new-password" required />
        </label>
      </div>
      <label class="check">
        <input type="checkbox" name="revoke-tokens" checked={form.revoke} onChange={(e) => setForm({ ...form, revoke: e.currentTarget.checked })} />
        Also revoke API tokens created by this user?
      </label>
      <Alert>{error}</Alert>
      <div class="row">
        <button type="submit" disabled={busy}>
          {busy ? 'Changing…' : 'Change password'}
        </button>
      </div>
    </form>
  );
}

/** One setting of the essentials form: its dotted key in hearth.toml, its label and its kind of input. */
interface Field {
  key: string;
  label: string;
  help?: string;
  kind: 'text' | 'number' | 'list' | 'select' | 'bool';
  options?: [string, string][];
}

// The keys a Pi-hole or AdGuard Home user changes most.
const ESSENTIALS: { title: string; fields: Field[] }[] = [
  {
    title: 'Blocking',
    fields: [
      {
        key: 'dns.blocking_mode',
        label: 'Blocked names are answered with',
        kind: 'select',
        options: [
          ['null_ip', '0.0.0.0 / :: (the default)'],
          ['nxdomain', 'NXDOMAIN: the name does not exist'],
          ['refused', 'REFUSED'],
        ],
      },
      { key: 'dns.blocked_ttl', label: 'Devices remember a blocked answer for', kind: 'text', help: 'e.g. 10s' },
    ],
  },
  {
    title: 'Query log',
    fields: [
      {
        key: 'dns.querylog.storage',
        label: 'Where it is kept',
        kind: 'select',
        options: [
          ['sqlite', 'on disk (SQLite)'],
          ['memory', 'in memory only (no SD-card writes)'],
        ],
      },
      { key: 'dns.querylog.retention', label: 'Keep entries for', kind: 'text', help: 'e.g. 7d, 24h' },
      { key: 'dns.querylog.max_entries', label: 'Keep at most', kind: 'number', help: 'entries' },
      { key: 'dns.querylog.anonymize_clients', label: 'Log only each client’s network, not the device (192.168.1.0)', kind: 'bool' },
    ],
  },
  {
    title: 'Cache and ports',
    fields: [
      { key: 'dns.cache.size', label: 'DNS cache size', kind: 'number', help: 'answers' },
      { key: 'dns.listen', label: 'DNS listens on', kind: 'list', help: 'e.g. 0.0.0.0:53, [::]:53' },
      { key: 'server.http_listen', label: 'Admin UI (HTTP) listens on', kind: 'list', help: 'e.g. :80' },
      { key: 'server.https_listen', label: 'HTTPS listens on', kind: 'list', help: 'e.g. :443' },
    ],
  },
];

const get = (c: any, key: string) => key.split('.').reduce((o, k) => o?.[k], c);
function patchOf(key: string, value: unknown): any {
  return key
    .split('.')
    .reverse()
    .reduce((inner: unknown, k) => ({ [k]: inner }), value);
}
function merge(a: any, b: any): any {
  for (const [k, v] of Object.entries(b)) a[k] = v && typeof v === 'object' && !Array.isArray(v) ? merge(a[k] ?? {}, v) : v;
  return a;
}
const shown = (c: any, f: Field) => {
  const v = get(c, f.key);
  return Array.isArray(v) ? v.join(', ') : String(v ?? '');
};

/** The DNS, query-log and port settings a user changes most, each error next to its field in words. */
function Essentials() {
  const { view } = useConfig();
  const [values, setValues] = useState<Record<string, string>>({});
  const [error, setError] = useState<{ message: string; key?: string } | null>(null);
  const [saved, setSaved] = useState('');
  const fields = ESSENTIALS.flatMap((g) => g.fields);
  useFill(view?.config, (c) => Object.fromEntries(fields.map((f) => [f.key, shown(c, f)])), setValues);
  if (!view) return null;
  async function save(e: Event) {
    e.preventDefault();
    setError(null);
    setSaved('');
    let patch = {};
    for (const f of fields) {
      const v = values[f.key] ?? '';
      if (v === shown(view!.config, f)) continue;
      const value =
        f.kind === 'number'
          ? Number.isFinite(Number(v)) && v.trim() !== ''
            ? Number(v)
            : v
          : f.kind === 'bool'
            ? v === 'true'
            : f.kind === 'list'
            ? v
                .split(/[\s,]+/)
                .map((x) => x.trim())
                .filter(Boolean)
            : v;
      patch = merge(patch, patchOf(f.key, value));
    }
    if (!Object.keys(patch).length) return setSaved('Nothing changed.');
    try {
      const r = await patchConfig(patch);
      const restart = r.report.restart_required.length ? ` Restart hearth to apply: ${r.report.restart_required.join(', ')}.` : '';
      setSaved(`Saved and applied.${restart}`);
    } catch (err) {
      const ae = err as ApiError;
      setError({ message: ae.message, key: ae.key });
    }
  }
  // an error's key (dns.listen[1]) belongs to the field of its list (dns.listen)
  const fieldError = (f: Field) => (error?.key && (error.key === f.key || error.key.startsWith(f.key + '[')) ? error : null);
  const orphan = error && !fields.some((f) => fieldError(f));
  return (
    <form class="card" onSubmit={save} aria-label="DNS, query log and ports">
      <h2>DNS, query log and ports</h2>
      {ESSENTIALS.map((g) => (
        <fieldset class="group">
          <legend>{g.title}</legend>
          <div class="grid2">
            {g.fields.map((f) => {
              const fe = fieldError(f);
              const set = (e: Event) => setValues({ ...values, [f.key]: (e.currentTarget as HTMLInputElement).value });
              return (
                <label class={f.kind === 'bool' ? 'check' : undefined}>
                  {f.label} {f.help && <span class="muted small">({f.help})</span>}
                  {f.kind === 'bool' ? (
                    <input
                      type="checkbox"
                      name={f.key}
                      checked={values[f.key] === 'true'}
                      onChange={(e) => setValues({ ...values, [f.key]: String(e.currentTarget.checked) })}
                    />
                  ) : f.kind === 'select' ? (
                    <select name={f.key} value={values[f.key]} onChange={set} aria-invalid={fe ? true : undefined}>
                      {!f.options!.some(([v]) => v === values[f.key]) && <option value={values[f.key]}>{values[f.key]}</option>}
                      {f.options!.map(([v, l]) => (
                        <option value={v}>{l}</option>
                      ))}
                    </select>
                  ) : (
                    <input name={f.key} value={values[f.key] ?? ''} onInput={set} inputMode={f.kind === 'number' ? 'numeric' : undefined} aria-invalid={fe ? true : undefined} />
                  )}
                  {fe && <FieldError problem={problemOf(fe, f.key)} field={f.key} />}
                </label>
              );
            })}
          </div>
        </fieldset>
      ))}
      {orphan && <Alert>{error!.message}</Alert>}
      {saved && (
        <p class="ok" role="status">
          {saved}
        </p>
      )}
      <button type="submit">Save DNS and port settings</button>
    </form>
  );
}

// Settings edit hearth.toml through the API: validated, applied live, written back keeping comments.
const LEVELS = ['error', 'warn', 'info', 'debug', 'trace'];
const formOf = (c: any) => ({
  level: c.log.level as string,
  session_ttl: c.auth.session_ttl as string,
  login_free_attempts: String(c.auth.login_free_attempts),
  login_max_delay: c.auth.login_max_delay as string,
});

export function Settings() {
  const { view, error: loadError } = useConfig();
  const [form, setForm] = useState({ level: '', session_ttl: '', login_free_attempts: '', login_max_delay: '' });
  const [error, setError] = useState<{ message: string; key?: string } | null>(null);
  const [saved, setSaved] = useState<string>('');

  // the form shows the configuration as it is now (again after every change of these keys)
  useFill(view?.config, formOf, setForm);

  async function save(e: Event) {
    e.preventDefault();
    setError(null);
    setSaved('');
    const attempts = Number(form.login_free_attempts);
    const patch = {
      log: { level: form.level },
      auth: {
        session_ttl: form.session_ttl,
        login_free_attempts: Number.isInteger(attempts) ? attempts : form.login_free_attempts,
        login_max_delay: form.login_max_delay,
      },
    };
    try {
      const r = await patchConfig(patch);
      setForm(formOf(r.config));
      const restart = r.report.restart_required.length ? ` Restart hearth to apply: ${r.report.restart_required.join(', ')}.` : '';
      setSaved(`Saved to ${r.path} and applied.${restart}`);
    } catch (err) {
      const e = err as ApiError;
      setError({ message: e.message, key: e.key });
    }
  }

  async function reload() {
    setError(null);
    try {
      setForm(formOf((await reloadConfigFile()).config));
      setSaved('Reloaded from the file.');
    } catch (err) {
      const e = err as ApiError;
      setError({ message: e.message, key: e.key });
    }
  }

  if (!view) return loadError ? <Alert>{loadError}</Alert> : <p>Loading…</p>;
  const invalid = (key: string) => (error?.key === key ? true : undefined);
  const set = (k: keyof typeof form) => (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value });

  return (
    <>
      <form class="card" onSubmit={save}>
        <h2>Logging and sessions</h2>
        <div class="grid2">
          <label>
            Log level <span class="muted small">log.level</span>
            <select name="log.level" value={LEVELS.includes(form.level) ? form.level : ''} onChange={set('level')} aria-invalid={invalid('log.level')}>
              {!LEVELS.includes(form.level) && <option value="">{form.level} (custom filter)</option>}
              {LEVELS.map((l) => (
                <option value={l}>{l}</option>
              ))}
            </select>
          </label>
          <label>
            Session lifetime <span class="muted small">auth.session_ttl</span>
            <input name="auth.session_ttl" value={form.session_ttl} onInput={set('session_ttl')} aria-invalid={invalid('auth.session_ttl')} placeholder="7d" />
          </label>
          <label>
            Failed logins before slowing down <span class="muted small">auth.login_free_attempts</span>
            <input name="auth.login_free_attempts" inputMode="numeric" value={form.login_free_attempts} onInput={set('login_free_attempts')} aria-invalid={invalid('auth.login_free_attempts')} />
          </label>
          <label>
            Longest wait after failed logins <span class="muted small">auth.login_max_delay</span>
            <input name="auth.login_max_delay" value={form.login_max_delay} onInput={set('login_max_delay')} aria-invalid={invalid('auth.login_max_delay')} placeholder="5m" />
          </label>
        </div>
        <Alert>{error?.message}</Alert>
        {saved && (
          <p class="ok" role="status">
            {saved}
          </p>
        )}
        <div class="row">
          <button type="submit">Save</button>
          <button type="button" class="ghost" onClick={reload}>
            Reload from file
          </button>
        </div>
      </form>
      <Essentials />
      <Port53 />
      <Sessions />
      <Password />
      <section class="card">
        <h2>Configuration file</h2>
        <p>
          <code>{view.path}</code> {view.file_exists ? '' : '(not created yet: the built-in defaults are in use; saving creates it)'}
        </p>
        <details>
          <summary>Running configuration</summary>
          <pre>{JSON.stringify(view.config, null, 2)}</pre>
        </details>
      </section>
    </>
  );
}
