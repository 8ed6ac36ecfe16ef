import { useEffect, useState } from 'preact/hooks';
import type { ComponentChildren } from 'preact';
import { api, ApiError, SetupState } from '../api';
import { Alert } from '../alert';

// First-run wizard: explain, then create the admin account with the one-time setup code hearth printed at start.
export function Setup({ done, themeButton, port53 }: { done: () => void; themeButton: ComponentChildren; port53?: boolean }) {
  const [step, setStep] = useState(0);
  const [code, setCode] = useState('');
  const [codeFile, setCodeFile] = useState<string | undefined>(undefined);
  const [username, setUsername] = useState('admin');
  const [password, setPassword] = useState('');
  const [confirm, setConfirm] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api<SetupState>('GET', '/api/v1/setup')
      .then((s) => setCodeFile(s.setup_code_file ?? undefined))
      .catch(() => undefined);
  }, []);

  async function submit(e: Event) {
    e.preventDefault();
    setError('');
    if (!code.trim()) return setError('Enter the setup code (see where to find it above).');
    if (password.length < 8) return setError('The password needs at least 8 characters.');
    if (password !== confirm) return setError('The two passwords differ.');
    setBusy(true);
    try {
      await api('POST', '/api/v1/setup', { username, password, setup_code: code });
      setStep(2);
    } catch (err) {
      const e = err as ApiError;
      if (e.code === 'invalid_setup_code') setError('That setup code is wrong. Check it against the log or the file and try again.');
      else if (e.code === 'setup_code_required') setError('Enter the setup code (see where to find it above).');
      else setError(e.status === 409 ? 'An admin account already exists: log in instead.' : e.message);
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
            <div class="muted" data-testid="setup-code-help">
              <p>
                To prove this is your hearth, enter the one-time <strong>setup code</strong> it made when it started. Find it in
                one of these places:
              </p>
              <ul>
                <li>
                  in hearth's log: <code>journalctl -u hearth | grep setup</code>
                </li>
                <li>
                  over SSH: <code>sudo hearth admin setup-code --config /etc/hearth/hearth.toml</code>
                </li>
                <li>
                  on the Raspberry Pi image: the file <code>hearth-setup-code.txt</code> on the SD card's boot partition
                </li>
                {codeFile && (
                  <li>
                    on this machine: the file <code>{codeFile}</code>
                  </li>
                )}
              </ul>
            </div>
            <label>
              Setup code
              <input
                name="setup_code"
                value={code}
                onInput={(e) => setCode(e.currentTarget.value)}
                placeholder="XXXX-XXXX-XXXX"
                autoComplete="off"
                spellcheck={false}
                autoCapitalize="characters"
                required
                autoFocus
              />
            </label>
            <label>
              User name
              <input name="username" value={username} onInput={(e) => setUsername(e.currentTarget.value)} autoComplete="username" required />
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
