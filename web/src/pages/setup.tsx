import { useState } from 'preact/hooks';
import type { ComponentChildren } from 'preact';
import { api, ApiError } from '../api';
import { Alert } from '../alert';

// First-run wizard: explain, then create the admin account.
export function Setup({ done, themeButton, port53 }: { done: () => void; themeButton: ComponentChildren; port53?: boolean }) {
  const [step, setStep] = useState(0);
  const [username, setUsername] = useState('admin');
  const [password, setPassword] = useState('');
  const [confirm, setConfirm] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    setError('');
    if (password.length < 8) return setError('The password needs at least 8 characters.');
    if (password !== confirm) return setError('The two passwords differ.');
    setBusy(true);
    try {
      await api('POST', '/api/v1/setup', { username, password });
      setStep(2);
    } catch (err) {
      const e = err as ApiError;
      setError(e.status === 409 ? 'An admin account already exists: log in instead.' : e.message);
      if (e.status === 409) done();
    } finally {
      setBusy(false);
    }
  }

  return (
    <main class="center">
      <div class="card narrow wizard">
        <div class="row">
          <h1>Welcome to hearth</h1>
          <span class="spacer" />
          {themeButton}
        </div>
        <ol class="steps" aria-label="Setup steps">
          <li aria-current={step === 0 ? 'step' : undefined}>Welcome</li>
          <li aria-current={step === 1 ? 'step' : undefined}>Admin account</li>
          <li aria-current={step === 2 ? 'step' : undefined}>Done</li>
        </ol>
        {step === 0 && (
          <>
            <p>
              hearth runs your home's DNS filter, HTTPS front, AI memory and monitoring in one program. First, create the
              account that administers it. There is no default password: this account is the only way in.
            </p>
            {port53 && (
              <p class="error" role="note" data-testid="port53-note">
                This machine runs systemd-resolved, whose stub listener holds port 53, so hearth cannot answer DNS there yet.
                After you log in, the dashboard offers to turn the stub listener off (a drop-in in
                /etc/systemd/resolved.conf.d that you can undo). Nothing changes without your click.
              </p>
            )}
            <button onClick={() => setStep(1)} autoFocus>
              Get started
            </button>
          </>
        )}
        {step === 1 && (
          <form onSubmit={submit}>
            <label>
              User name
              <input name="username" value={username} onInput={(e) => setUsername(e.currentTarget.value)} autoComplete="username" required autoFocus />
            </label>
            <label>
              Password <span class="muted">(at least 8 characters)</span>
              <input name="password" type="password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} autoComplete="new-password" required />
            </label>
            <label>
              Repeat the password
              <input name="confirm" type="password" value={confirm} onInput={(e) => setConfirm(e.currentTarget.value)} autoComplete="new-password" required />
            </label>
            <Alert>{error}</Alert>
            <button type="submit" disabled={busy}>
              {busy ? 'Creating…' : 'Create admin account'}
            </button>
          </form>
        )}
        {step === 2 && (
          <>
            <p role="status">The admin account “{username}” is ready. Log in with it to reach the dashboard.</p>
            <button onClick={done} autoFocus>
              Continue to log in
            </button>
          </>
        )}
      </div>
    </main>
  );
}
