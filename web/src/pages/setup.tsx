// First-run wizard (AdGuard Home's steps, Pi-hole's installer): the admin account (with the one-time setup code
// hearth printed at start; logged in at the end of the step), where names are resolved, block lists from the
// catalog (the recommended one ticked), then the device guide. Every step after the account can be skipped and
// done later on its page.
import { useEffect, useState } from 'preact/hooks';
import type { ComponentChildren } from 'preact';
import { api, ApiError, CatalogEntry, SessionView, setCsrf, SetupState } from '../api';
import { Alert } from '../alert';
import { patchConfig, refetchConfig, useConfig } from '../config';
import { addFromCatalog, CatalogPicker, useCatalog } from '../catalog';
import { DeviceGuide } from '../devices';

const STEPS = ['Welcome', 'Admin account', 'Resolver', 'Block lists', 'Your devices'];

/** Where names are resolved: well-known resolvers over DNS over TLS, or hearth's own recursion. */
export const PRESETS: { id: string; name: string; help: string; dns: Record<string, unknown> }[] = [
  {
    id: 'quad9',
    name: 'Quad9',
    help: 'Swiss non-profit; blocks known malware domains; no logging of addresses. Encrypted (DNS over TLS).',
    dns: { mode: 'forward', upstreams: ['tls://9.9.9.9#dns.quad9.net', 'tls://149.112.112.112#dns.quad9.net'] },
  },
  {
    id: 'cloudflare',
    name: 'Cloudflare',
    help: 'Fast everywhere; logs deleted within 25 hours. Encrypted (DNS over TLS).',
    dns: { mode: 'forward', upstreams: ['tls://1.1.1.1#cloudflare-dns.com', 'tls://1.0.0.1#cloudflare-dns.com'] },
  },
  {
    id: 'google',
    name: 'Google Public DNS',
    help: 'Fast everywhere; temporary logs. Encrypted (DNS over TLS).',
    dns: { mode: 'forward', upstreams: ['tls://8.8.8.8#dns.google', 'tls://8.8.4.4#dns.google'] },
  },
  {
    id: 'mullvad',
    name: 'Mullvad DNS',
    help: 'No logging; run by a VPN company. Encrypted (DNS over TLS).',
    dns: { mode: 'forward', upstreams: ['tls://194.242.2.2#dns.mullvad.net'] },
  },
  {
    id: 'recursive',
    name: 'Recursive (like Unbound)',
    help: 'hearth asks the root servers and each domain’s own servers itself: no third party sees all your questions. The first visit to a site is a little slower.',
    dns: { mode: 'recursive' },
  },
];

function Account({ created }: { created: (session: SessionView) => void }) {
  const [code, setCode] = useState('');
  const [codeFile, setCodeFile] = useState<string | undefined>(undefined);
  const [username, setUsername] = useState('admin');
  const [password, setPassword] = useState('');
  const [confirm, setConfirm] = useState('');
  const [error, setError] = useState<{ field: string; text: string } | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api<SetupState>('GET', '/api/v1/setup')
      .then((s) => setCodeFile(s.setup_code_file ?? undefined))
      .catch(() => undefined);
  }, []);

  async function submit(e: Event) {
    e.preventDefault();
    setError(null);
    if (!code.trim()) return setError({ field: 'setup_code', text: 'Enter the setup code (see where to find it above).' });
    if (password.length < 8) return setError({ field: 'password', text: 'The password needs at least 8 characters.' });
    if (password !== confirm) return setError({ field: 'confirm', text: 'The two passwords differ.' });
    setBusy(true);
    try {
      await api('POST', '/api/v1/setup', { username, password, setup_code: code });
      // the answer logged the new admin in: the session (and its CSRF token) for the next steps
      const session = await api<SessionView>('GET', '/api/v1/auth/session');
      setCsrf(session.csrf_token ?? null);
      created(session);
    } catch (err) {
      const e = err as ApiError;
      if (e.code === 'invalid_setup_code') setError({ field: 'setup_code', text: 'That setup code is wrong. Check it against the log or the file and try again.' });
      else if (e.code === 'setup_code_required') setError({ field: 'setup_code', text: 'Enter the setup code (see where to find it above).' });
      else if (e.status === 409) setError({ field: '', text: 'An admin account already exists: reload the page and log in instead.' });
      else if (e.status === 422) setError({ field: /user/i.test(e.message) ? 'username' : 'password', text: e.message });
      else setError({ field: '', text: e.message });
    } finally {
      setBusy(false);
    }
  }
  const invalid = (f: string) => (error?.field === f ? true : undefined);
  const note = (f: string) =>
    error?.field === f ? (
      <span class="error small" id={`${f}-error`} role="alert">
        {error.text}
      </span>
    ) : null;

  return (
    <form onSubmit={submit} noValidate>
      <div class="muted" data-testid="setup-code-help">
        <p>
          To prove this is your hearth, enter the one-time <strong>setup code</strong> it made when it started. Find it in one of these places:
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
          aria-invalid={invalid('setup_code')}
          aria-describedby="setup_code-error"
          required
          autoFocus
        />
        {note('setup_code')}
      </label>
      <label>
        User name
        <input
          name="username"
          value={username}
          onInput={(e) => setUsername(e.currentTarget.value)}
          autoComplete="username"
          aria-invalid={invalid('username')}
          aria-describedby="username-error"
          required
        />
        {note('username')}
      </label>
      <label>
        Password <span class="muted">(at least 8 characters)</span>
        <input
          name="password"
          type="password"
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
          autoComplete="new-password"
          aria-invalid={invalid('password')}
          aria-describedby="password-error"
          required
        />
        {note('password')}
      </label>
      <label>
        Repeat the password
        <input
          name="confirm"
          type="password"
          value={confirm}
          onInput={(e) => setConfirm(e.currentTarget.value)}
          autoComplete="new-password"
          aria-invalid={invalid('confirm')}
          aria-describedby="confirm-error"
          required
        />
        {note('confirm')}
      </label>
      <Alert>{error && !error.field ? error.text : ''}</Alert>
      <button type="submit" disabled={busy}>
        {busy ? 'Creating…' : 'Create admin account'}
      </button>
    </form>
  );
}

function Resolver({ next }: { next: () => void }) {
  const { view } = useConfig();
  const dns = view?.config?.dns;
  const current = dns ? (dns.mode === 'recursive' ? 'Recursive' : (dns.upstreams as string[]).join(', ')) : '';
  const [choice, setChoice] = useState('keep');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  async function save(e: Event) {
    e.preventDefault();
    setError('');
    const preset = PRESETS.find((p) => p.id === choice);
    if (!preset) return next();
    setBusy(true);
    try {
      await patchConfig({ dns: preset.dns });
      next();
    } catch (err) {
      setError(`The resolver was not changed: ${(err as ApiError).message}`);
    } finally {
      setBusy(false);
    }
  }
  return (
    <form onSubmit={save}>
      <p>Where should hearth send the questions it cannot answer itself? You can change this later in DNS → Settings.</p>
      <fieldset class="choices" aria-label="Resolver">
        <label class="check choice">
          <input type="radio" name="resolver" value="keep" checked={choice === 'keep'} onChange={() => setChoice('keep')} />
          <span>
            <strong>Keep the current setting</strong>
            <span class="muted small"> {current}</span>
          </span>
        </label>
        {PRESETS.map((p) => (
          <label class="check choice" data-preset={p.id}>
            <input type="radio" name="resolver" value={p.id} checked={choice === p.id} onChange={() => setChoice(p.id)} />
            <span>
              <strong>{p.name}</strong>
              <span class="muted small"> {p.help}</span>
            </span>
          </label>
        ))}
      </fieldset>
      <Alert>{error}</Alert>
      <button type="submit" disabled={busy || !view}>
        {busy ? 'Saving…' : 'Continue'}
      </button>
    </form>
  );
}

function Lists({ next }: { next: () => void }) {
  const { entries, error } = useCatalog();
  const [chosen, setChosen] = useState<string[] | null>(null);
  const [failed, setFailed] = useState('');
  const [busy, setBusy] = useState(false);
  // the recommended list ticked once the catalog is here
  const picked = chosen ?? (entries ? entries.filter((e: CatalogEntry) => e.recommended && !e.added).map((e) => e.id) : []);
  async function add(e: Event) {
    e.preventDefault();
    setBusy(true);
    setFailed('');
    const failures: string[] = [];
    for (const id of picked) {
      try {
        await addFromCatalog(id);
      } catch (err) {
        if ((err as ApiError).status !== 409) failures.push(`${id}: ${(err as ApiError).message}`);
      }
    }
    setBusy(false);
    refetchConfig();
    if (failures.length) setFailed(`Not added: ${failures.join('; ')}`);
    else next();
  }
  return (
    <form onSubmit={add}>
      <p>
        Block lists decide what hearth blocks for every device: ads, trackers, malware. Start with the recommended one; a list that breaks a site can be
        turned off or overruled per site later (DNS → Lists &amp; rules).
      </p>
      <Alert>{error}</Alert>
      {entries ? <CatalogPicker entries={entries} chosen={picked} setChosen={setChosen} /> : !error && <p aria-busy="true">Loading the catalog…</p>}
      <Alert>{failed}</Alert>
      <div class="row">
        <button type="submit" disabled={busy || !entries}>
          {busy ? 'Adding…' : picked.length ? `Add ${picked.length === 1 ? 'this list' : `these ${picked.length} lists`} and continue` : 'Continue without a list'}
        </button>
      </div>
    </form>
  );
}

export function Setup({ finished, themeButton, port53 }: { finished: (session: SessionView) => void; themeButton: ComponentChildren; port53?: boolean }) {
  const [step, setStep] = useState(0);
  const [session, setSession] = useState<SessionView | null>(null);
  const next = () => setStep((s) => s + 1);
  // the next step's heading gets the focus, as a new page would
  useEffect(() => {
    document.querySelector<HTMLElement>('.wizard h2')?.focus();
  }, [step]);

  return (
    <main class="center">
      <div class={`card wizard ${step === 4 ? 'wide' : 'narrow'}`}>
        <div class="row">
          <h1>Welcome to hearth</h1>
          <span class="spacer" />
          {themeButton}
        </div>
        <ol class="steps" aria-label="Setup steps">
          {STEPS.map((s, i) => (
            <li aria-current={step === i ? 'step' : undefined} class={i < step ? 'done' : undefined}>
              <span class="num">{i + 1}</span> <span class="name">{s}</span>
            </li>
          ))}
        </ol>
        <h2 tabIndex={-1}>{STEPS[step]}</h2>
        {step === 0 && (
          <>
            <p>
              hearth runs your home's DNS filter, HTTPS front, AI memory and monitoring in one program. In five short steps: create the account that
              administers it (there is no default password), choose a resolver and block lists, and point your devices at hearth.
            </p>
            {port53 && (
              <p class="error" role="note" data-testid="port53-note">
                This machine runs systemd-resolved, whose stub listener holds port 53, so hearth cannot answer DNS there yet. After the wizard, the
                dashboard offers to turn the stub listener off (a drop-in in /etc/systemd/resolved.conf.d that you can undo). Nothing changes without your
                click.
              </p>
            )}
            <button onClick={next} autoFocus>
              Get started
            </button>
          </>
        )}
        {step === 1 && (
          <Account
            created={(s) => {
              setSession(s);
              next();
            }}
          />
        )}
        {step === 2 && <Resolver next={next} />}
        {step === 3 && <Lists next={next} />}
        {step === 4 && session && (
          <>
            <p role="status" class="ok">
              hearth is ready, and you are logged in as “{session.user}”. Last step: send your devices' DNS questions to hearth.
            </p>
            <DeviceGuide />
            <p class="muted small">This guide stays on the dashboard (“Connect your devices”).</p>
            <button onClick={() => finished(session)} autoFocus>
              Go to the dashboard
            </button>
          </>
        )}
        {step >= 2 && step < 4 && (
          <p>
            <button type="button" class="link" onClick={next}>
              Skip this step
            </button>
          </p>
        )}
      </div>
    </main>
  );
}
