// ACME settings (the `[tls]` keys a Caddy or Nginx Proxy Manager user sets: e-mail, Let's Encrypt or its staging,
// challenge types, DNS-01 server and key) and the pre-flight check of a public name (POST /api/v1/tls/preflight):
// does it resolve to a public address, and do ports 80 and 443 of that address reach hearth?
import { useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { Alert, FieldError, problemOf } from '../alert';
import { patchConfig, useConfig, useFill } from '../config';

const LE = 'https://acme-v02.api.letsencrypt.org/directory';
const LE_STAGING = 'https://acme-staging-v02.api.letsencrypt.org/directory';
const CHALLENGES = [
  ['http-01', 'HTTP-01 (port 80 reachable from the internet)'],
  ['tls-alpn-01', 'TLS-ALPN-01 (port 443 reachable)'],
  ['dns-01', 'DNS-01 (a TXT record by RFC 2136 update: wildcards, names the CA cannot reach)'],
] as const;

interface Check {
  ok: boolean;
  detail: string;
}
interface Preflight {
  name: string;
  addresses: string[];
  dns: Check;
  http: Check;
  https: Check;
}

interface Form {
  ca: 'le' | 'staging' | 'custom';
  directory: string;
  email: string;
  challenges: string[];
  dns01_server: string;
  dns01_tsig_key: string;
}

const formOf = (c: any): Form => {
  const t = c.tls;
  const ca = t.acme_directory === LE ? 'le' : t.acme_directory === LE_STAGING ? 'staging' : 'custom';
  return { ca, directory: t.acme_directory, email: t.acme_email, challenges: t.acme_challenges, dns01_server: t.dns01_server, dns01_tsig_key: t.dns01_tsig_key };
};

export function AcmeSettings() {
  const { view } = useConfig();
  const [f, setF] = useState<Form | null>(null);
  const [error, setError] = useState<{ text: string; key?: string } | null>(null);
  const [saved, setSaved] = useState('');
  const [name, setName] = useState('');
  const [pre, setPre] = useState<Preflight | null>(null);
  const [preError, setPreError] = useState('');
  const [checking, setChecking] = useState(false);
  useFill(view?.config, formOf, setF);
  if (!f) return null;

  async function save(e: Event) {
    e.preventDefault();
    setError(null);
    setSaved('');
    const directory = f!.ca === 'le' ? LE : f!.ca === 'staging' ? LE_STAGING : f!.directory;
    try {
      await patchConfig({
        tls: { acme_directory: directory, acme_email: f!.email, acme_challenges: f!.challenges, dns01_server: f!.dns01_server, dns01_tsig_key: f!.dns01_tsig_key },
      });
      setSaved('Saved and applied.');
    } catch (err) {
      const ae = err as ApiError;
      const p = problemOf(ae, '');
      setError({ text: p!.text, key: ae.key });
    }
  }

  async function check(e: Event) {
    e.preventDefault();
    setPreError('');
    setPre(null);
    setChecking(true);
    try {
      setPre(await api<Preflight>('POST', '/api/v1/tls/preflight', { name }));
    } catch (err) {
      setPreError((err as ApiError).message);
    } finally {
      setChecking(false);
    }
  }

  const fieldError = (k: string) => (error?.key?.startsWith(k) ? <FieldError problem={{ field: k, text: error.text, key: error.key }} field={k} /> : null);
  const set = (k: keyof Form) => (e: Event) => setF({ ...f, [k]: (e.currentTarget as HTMLInputElement).value });
  const row = (label: string, c: Check) => (
    <li class={c.ok ? 'ok' : 'error'}>
      <strong>{c.ok ? '✓' : '✗'} {label}:</strong> {c.detail}
    </li>
  );

  return (
    <section class="card" aria-labelledby="acme-settings">
      <h2 id="acme-settings">Public certificates (ACME)</h2>
      <form class="stack" onSubmit={save} aria-label="ACME settings">
        <div class="grid2">
          <label>
            Certificate authority
            <select name="ca" value={f.ca} onChange={set('ca')}>
              <option value="le">Let's Encrypt</option>
              <option value="staging">Let's Encrypt staging (for trying out: untrusted certificates, higher limits)</option>
              <option value="custom">another CA (its directory URL)</option>
            </select>
          </label>
          {f.ca === 'custom' && (
            <label>
              Directory URL
              <input name="tls.acme_directory" value={f.directory} onInput={set('directory')} aria-invalid={error?.key === 'tls.acme_directory' ? true : undefined} />
              {fieldError('tls.acme_directory')}
            </label>
          )}
          <label>
            Contact e-mail <span class="muted small">(expiry warnings from the CA; optional)</span>
            <input name="tls.acme_email" type="email" value={f.email} onInput={set('email')} aria-invalid={error?.key === 'tls.acme_email' ? true : undefined} />
            {fieldError('tls.acme_email')}
          </label>
        </div>
        <fieldset class="inline" aria-label="Challenge types">
          <legend>Challenge types, in order of preference</legend>
          {CHALLENGES.map(([id, label]) => (
            <label class="check">
              <input
                type="checkbox"
                checked={f.challenges.includes(id)}
                onChange={(e) => setF({ ...f, challenges: e.currentTarget.checked ? [...f.challenges, id] : f.challenges.filter((c) => c !== id) })}
              />
              {label}
            </label>
          ))}
          {fieldError('tls.acme_challenges')}
        </fieldset>
        {f.challenges.includes('dns-01') && (
          <div class="grid2">
            <label>
              DNS-01 server <span class="muted small">(your zone's primary, ip:port)</span>
              <input name="tls.dns01_server" value={f.dns01_server} onInput={set('dns01_server')} placeholder="192.0.2.53:53" aria-invalid={error?.key === 'tls.dns01_server' ? true : undefined} />
              {fieldError('tls.dns01_server')}
            </label>
            <label>
              TSIG key <span class="muted small">(name:algorithm:secret)</span>
              <input name="tls.dns01_tsig_key" value={f.dns01_tsig_key} onInput={set('dns01_tsig_key')} autoComplete="off" aria-invalid={error?.key === 'tls.dns01_tsig_key' ? true : undefined} />
              {fieldError('tls.dns01_tsig_key')}
            </label>
          </div>
        )}
        {error && !['tls.acme_directory', 'tls.acme_email', 'tls.acme_challenges', 'tls.dns01_server', 'tls.dns01_tsig_key'].some((k) => error.key?.startsWith(k)) && (
          <Alert>{error.text}</Alert>
        )}
        {saved && (
          <p class="ok" role="status">
            {saved}
          </p>
        )}
        <div class="row">
          <button type="submit">Save ACME settings</button>
        </div>
      </form>

      <h3>Check a public name before ordering</h3>
      <form class="filters" onSubmit={check} aria-label="Pre-flight check">
        <label class="grow">
          Public name
          <input name="preflight-name" value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="cloud.example.com" required />
        </label>
        <button type="submit" disabled={checking}>
          {checking ? 'Checking…' : 'Check'}
        </button>
      </form>
      <Alert>{preError}</Alert>
      {pre && (
        <ul class="plain preflight" data-testid="preflight" role="status">
          {row('Public DNS', pre.dns)}
          {row('Port 80 (HTTP-01)', pre.http)}
          {row('Port 443 (TLS-ALPN-01, the site)', pre.https)}
        </ul>
      )}
    </section>
  );
}
