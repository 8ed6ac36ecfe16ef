import { useState } from 'preact/hooks';
import type { ComponentChildren } from 'preact';
import { api, ApiError, SessionView } from '../api';
import { Alert } from '../alert';

export function Login({ loggedIn, themeButton }: { loggedIn: (s: SessionView) => void; themeButton: ComponentChildren }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      loggedIn(await api<SessionView>('POST', '/api/v1/auth/login', { username, password }));
    } catch (err) {
      setError((err as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <main class="center">
      <form class="card narrow" onSubmit={submit}>
        <div class="row">
          <h1>Log in to hearth</h1>
          <span class="spacer" />
          {themeButton}
        </div>
        <label>
          User name
          <input name="username" value={username} onInput={(e) => setUsername(e.currentTarget.value)} autoComplete="username" required autoFocus />
        </label>
        <label>
          Password
          <input name="password" type="password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} autoComplete="current-password" required />
        </label>
        <Alert>{error}</Alert>
        <button type="submit" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
        <p class="muted small">
          Forgot the password? On the hearth machine run <code>hearth admin set-password USER</code>.
        </p>
      </form>
    </main>
  );
}
