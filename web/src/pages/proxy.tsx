// The HTTPS front: routes with live backend health (add, edit, delete, test a backend), certificates (ACME state with
// the CA's own error text, renew now), and the internal root CA with install instructions.
import { useEffect, useState } from 'preact/hooks';
import { AccessEntry, api, ApiError, CertificatesView, ProxyRoute, RouteView, TestResult } from '../api';
import { date } from '../format';
import { Alert } from '../alert';

interface Draft {
  hosts: string;
  path_prefix: string;
  upstreams: string;
  tls: 'acme' | 'internal' | 'none';
  strategy: 'round_robin' | 'least_conn' | 'ip_hash';
  health_path: string;
}

const EMPTY: Draft = { hosts: '', path_prefix: '/', upstreams: '', tls: 'internal', strategy: 'round_robin', health_path: '' };

function toDraft(r: ProxyRoute): Draft {
  return {
    hosts: r.hosts.join(', '),
    path_prefix: r.path_prefix,
    upstreams: r.upstreams.join(', '),
    tls: r.tls,
    strategy: r.strategy,
    health_path: r.health_path,
  };
}

const split = (s: string) =>
  s
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);

// `base` is the route as hearth has it: the form edits six of its keys and sends the whole route back, so keys the
// form does not show (auth, headers, limits, timeouts, …) are kept; secrets come back redacted and the API keeps them.
function RouteForm({ initial, base, index, id, saved, cancel }: { initial: Draft; base?: ProxyRoute; index: number | null; id?: string; saved: () => void; cancel?: () => void }) {
  const [d, setD] = useState<Draft>(initial);
  const [error, setError] = useState('');
  const [test, setTest] = useState('');
  const [busy, setBusy] = useState(false);
  const set = (k: keyof Draft) => (e: Event) => setD({ ...d, [k]: (e.currentTarget as HTMLInputElement).value });

  async function save(e: Event) {
    e.preventDefault();
    setError('');
    setBusy(true);
    const body = { ...(base ?? {}), hosts: split(d.hosts), path_prefix: d.path_prefix || '/', upstreams: split(d.upstreams), tls: d.tls, strategy: d.strategy, health_path: d.health_path };
    try {
      if (index === null) await api('POST', '/api/v1/proxy/routes', body);
      else await api('PUT', `/api/v1/proxy/routes/${encodeURIComponent(id ?? '')}`, body);
      setD(EMPTY);
      saved();
    } catch (err) {
      setError((err as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  async function testUpstream() {
    const url = split(d.upstreams)[0];
    setError('');
    if (!url) return setError('Enter a backend URL first.');
    setTest('Testing…');
    try {
      const r = await api<TestResult>('POST', '/api/v1/proxy/test-upstream', {
        url,
        path: d.health_path || '/',
      });
      setTest(r.error ? `✗ ${url}: ${r.error}` : `${r.ok ? '✓' : '✗'} ${url} answered ${r.status} in ${r.latency_ms} ms`);
    } catch (err) {
      setTest('');
      setError((err as ApiError).message);
    }
  }

  return (
    <form class="filters" onSubmit={save} aria-label={index === null ? 'Add a route' : `Edit route ${index}`}>
      <label class="grow">
        Host names
        <input name="hosts" value={d.hosts} onInput={set('hosts')} placeholder="jellyfin.home.arpa" required />
      </label>
      <label>
        Path prefix
        <input name="path_prefix" value={d.path_prefix} onInput={set('path_prefix')} />
      </label>
      <label class="grow">
        Backends
        <input name="upstreams" value={d.upstreams} onInput={set('upstreams')} placeholder="http://192.168.1.20:8096" required />
      </label>
      <label>
        Certificate
        <select name="tls" value={d.tls} onChange={set('tls')}>
          <option value="internal">hearth's CA (LAN)</option>
          <option value="acme">ACME (public name)</option>
          <option value="none">none (plain HTTP)</option>
        </select>
      </label>
      <label>
        Balancing
        <select name="strategy" value={d.strategy} onChange={set('strategy')}>
          <option value="round_robin">round robin</option>
          <option value="least_conn">least connections</option>
          <option value="ip_hash">client IP hash</option>
        </select>
      </label>
      <label>
        Health check path
        <input name="health_path" value={d.health_path} onInput={set('health_path')} placeholder="/health (empty: off)" />
      </label>
      <div class="row">
        <button type="submit" disabled={busy}>
          {index === null ? 'Add route' : 'Save'}
        </button>
        <button type="button" class="ghost" onClick={testUpstream}>
          Test backend
        </button>
        {cancel && (
          <button type="button" class="ghost" onClick={cancel}>
            Cancel
          </button>
        )}
      </div>
      {test && (
        <p class="muted" role="status" data-testid="test-result">
          {test}
        </p>
      )}
      <Alert>{error}</Alert>
    </form>
  );
}

export function Proxy() {
  const [routes, setRoutes] = useState<RouteView[] | null>(null);
  const [certs, setCerts] = useState<CertificatesView | null>(null);
  const [access, setAccess] = useState<AccessEntry[]>([]);
  const [editing, setEditing] = useState<number | null>(null);
  const [error, setError] = useState('');
  const load = () => {
    api<RouteView[]>('GET', '/api/v1/proxy/routes')
      .then(setRoutes)
      .catch((e: ApiError) => setError(e.message));
    api<CertificatesView>('GET', '/api/v1/tls/certificates')
      .then(setCerts)
      .catch((e: ApiError) => setError(e.message));
    api<AccessEntry[]>('GET', '/api/v1/proxy/access-log?limit=100')
      .then(setAccess)
      .catch(() => undefined);
  };
  useEffect(() => {
    load();
    const t = window.setInterval(() => !document.hidden && load(), 5000);
    return () => clearInterval(t);
  }, []);

  async function remove(r: RouteView) {
    if (!confirm(`Delete the route for ${r.route.hosts.join(', ')}${r.route.path_prefix}?`)) return;
    try {
      setRoutes(await api<RouteView[]>('DELETE', `/api/v1/proxy/routes/${encodeURIComponent(r.id)}`));
    } catch (e) {
      setError((e as ApiError).message);
    }
  }

  async function renew(name: string) {
    try {
      await api('POST', `/api/v1/tls/certificates/${encodeURIComponent(name)}/renew`);
      load();
    } catch (e) {
      setError((e as ApiError).message);
    }
  }

  return (
    <>
      <Alert>{error}</Alert>
      <section class="card">
        <h2>Routes</h2>
        {routes && routes.length === 0 && <p class="muted">No routes yet. Add one below: a host name, and the address of the service behind it.</p>}
        {routes && routes.length > 0 && (
          <table class="table log" data-testid="routes">
            <thead>
              <tr>
                <th>Site</th>
                <th>Backends</th>
                <th>Certificate</th>
                <th>
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {routes.map((r) =>
                editing === r.index ? (
                  <tr>
                    <td colSpan={4}>
                      <RouteForm
                        initial={toDraft(r.route)}
                        base={r.route}
                        index={r.index}
                        id={r.id}
                        saved={() => {
                          setEditing(null);
                          load();
                        }}
                        cancel={() => setEditing(null)}
                      />
                    </td>
                  </tr>
                ) : (
                  <tr>
                    <td data-label="Site" class="name">
                      {r.route.hosts.map((h) => (
                        <div>
                          {r.route.tls === 'none' ? (
                            `http://${h}${r.route.path_prefix}`
                          ) : (
                            <a href={`https://${h}${r.route.path_prefix}`} target="_blank" rel="noopener">
                              https://{h}
                              {r.route.path_prefix}
                            </a>
                          )}
                        </div>
                      ))}
                      <div class="muted small">{r.route.strategy.replace('_', ' ')}</div>
                    </td>
                    <td data-label="Backends" class="small">
                      {r.upstreams.map((u) => (
                        <div title={u.last_error || u.health_check}>
                          <span class={u.available ? 'ok' : 'error'}>{u.available ? '●' : '○'}</span> {u.url}{' '}
                          <span class="muted">
                            {u.available ? `${u.latency_ms} ms · ${u.active_requests} active` : u.circuit_open ? 'taken out after failures' : `health check: ${u.health_check}`}
                          </span>
                          {!u.available && u.last_error && <div class="error small">{u.last_error}</div>}
                        </div>
                      ))}
                    </td>
                    <td data-label="Certificate" class="small">
                      {r.route.tls === 'acme' ? 'ACME' : r.route.tls === 'internal' ? "hearth's CA" : 'none'}
                    </td>
                    <td>
                      <button class="ghost" onClick={() => setEditing(r.index)}>
                        Edit
                      </button>
                      <button class="danger ghost" onClick={() => remove(r)}>
                        Delete
                      </button>
                    </td>
                  </tr>
                ),
              )}
            </tbody>
          </table>
        )}
        <h3>Add a route</h3>
        <p class="muted small">
          Names under <code>home.arpa</code> (and your local domains) resolve to hearth automatically and get a certificate from hearth's own CA. Public names
          get ACME certificates.
        </p>
        <RouteForm initial={EMPTY} index={null} saved={load} />
      </section>

      <section class="card">
        <h2>Certificates</h2>
        {certs && certs.acme.length === 0 && <p class="muted">No route uses ACME. Directory: {certs.acme_directory}</p>}
        {certs && certs.acme.length > 0 && (
          <table class="table log" data-testid="certificates">
            <thead>
              <tr>
                <th>Name</th>
                <th>Status</th>
                <th>Valid until</th>
                <th>Next renewal</th>
                <th>
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {certs.acme.map((c) => (
                <tr>
                  <td data-label="Name" class="name">
                    {c.name}
                    <div class="muted small">{c.issuer}</div>
                  </td>
                  <td data-label="Status" class="small">
                    <span class={c.status === 'valid' ? 'ok' : c.status === 'failed' || c.status === 'expired' ? 'error' : ''}>{c.status}</span>
                    {c.last_error && (
                      <div class="error small" data-testid={`cert-error-${c.name}`}>
                        {c.rate_limited ? 'Rate limited by the CA: ' : 'The CA said: '}
                        {c.last_error}
                      </div>
                    )}
                    {c.next_attempt && <div class="muted small">next try {date(c.next_attempt)}</div>}
                  </td>
                  <td data-label="Valid until" class="small">
                    {c.not_after ? date(c.not_after) : '—'}
                  </td>
                  <td data-label="Next renewal" class="small">
                    {c.renew_at ? date(c.renew_at) : '—'}
                  </td>
                  <td>
                    <button class="ghost" onClick={() => renew(c.name)} disabled={c.status === 'ordering'}>
                      Renew now
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section class="card">
        <h2>Recent requests</h2>
        {access.length === 0 ? (
          <p class="muted">No proxied requests yet.</p>
        ) : (
          <table class="table log" data-testid="access-log">
            <thead>
              <tr>
                <th>Time</th>
                <th>Client</th>
                <th>Request</th>
                <th>Status</th>
                <th>Backend</th>
                <th>ms</th>
              </tr>
            </thead>
            <tbody>
              {access.map((a) => (
                <tr title={`request id ${a.request_id}`}>
                  <td data-label="Time" class="small">
                    {new Date(a.ts_ms).toLocaleTimeString()}
                  </td>
                  <td data-label="Client" class="small">
                    {a.client}
                  </td>
                  <td data-label="Request" class="name small">
                    {a.method} {a.host}
                    {a.path}
                  </td>
                  <td data-label="Status" class={a.status >= 500 ? 'error' : a.status >= 400 ? 'muted' : 'ok'}>
                    {a.status}
                  </td>
                  <td data-label="Backend" class="small muted">
                    {a.upstream || '—'}
                  </td>
                  <td data-label="ms" class="small">
                    {a.latency_ms}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      {certs?.internal_ca && (
        <section class="card">
          <h2>hearth's certificate authority</h2>
          <p>
            Sites with hearth's certificates are trusted by devices that have hearth's root certificate installed.{' '}
            <a href="/ca.crt" download="hearth-root-ca.crt">
              Download the root certificate
            </a>
            {certs.internal_root_sha256 && (
              <span class="muted small">
                {' '}
                (SHA-256 <code>{certs.internal_root_sha256}</code>)
              </span>
            )}
          </p>
          <ul class="small">
            <li>
              <strong>iPhone/iPad:</strong> open the download in Safari, install the profile in Settings → General → VPN &amp; Device Management, then turn it on
              in Settings → General → About → Certificate Trust Settings.
            </li>
            <li>
              <strong>Android:</strong> Settings → Security → Encryption &amp; credentials → Install a certificate → CA certificate.
            </li>
            <li>
              <strong>Windows:</strong> open the file → Install Certificate → Local Machine → “Trusted Root Certification Authorities”.
            </li>
            <li>
              <strong>macOS:</strong> open the file in Keychain Access (System keychain), then set “When using this certificate” to Always Trust.
            </li>
            <li>
              <strong>Linux:</strong> copy it to <code>/usr/local/share/ca-certificates/hearth.crt</code> and run <code>sudo update-ca-certificates</code>;
              Firefox: Settings → Certificates → Import.
            </li>
          </ul>
        </section>
      )}
    </>
  );
}
