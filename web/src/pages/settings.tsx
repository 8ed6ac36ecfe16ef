import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, ConfigChange, ConfigView } from '../api';
import { Port53 } from '../port53';
import { Alert } from '../alert';

// Settings edit hearth.toml through the API: validated, applied live, written back keeping comments.
const LEVELS = ['error', 'warn', 'info', 'debug', 'trace'];

export function Settings() {
  const [view, setView] = useState<ConfigView | null>(null);
  const [form, setForm] = useState({ level: '', session_ttl: '', login_free_attempts: '', login_max_delay: '' });
  const [error, setError] = useState<{ message: string; key?: string } | null>(null);
  const [saved, setSaved] = useState<string>('');

  function fill(v: ConfigView) {
    setView(v);
    setForm({
      level: v.config.log.level,
      session_ttl: v.config.auth.session_ttl,
      login_free_attempts: String(v.config.auth.login_free_attempts),
      login_max_delay: v.config.auth.login_max_delay,
    });
  }
  useEffect(() => {
    api<ConfigView>('GET', '/api/v1/config')
      .then(fill)
      .catch((e: ApiError) => setError({ message: e.message }));
  }, []);

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
      const r = await api<ConfigChange>('PATCH', '/api/v1/config', patch);
      fill(r);
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
      fill(await api<ConfigChange>('POST', '/api/v1/config/reload'));
      setSaved('Reloaded from the file.');
    } catch (err) {
      const e = err as ApiError;
      setError({ message: e.message, key: e.key });
    }
  }

  if (!view) return <p>{error?.message ?? 'Loading…'}</p>;
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
      <Port53 />
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
