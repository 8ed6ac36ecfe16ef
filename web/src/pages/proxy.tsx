// The HTTPS front: routes with live backend health (add, edit, delete, test a backend), certificates (ACME state with
// the CA's own error text, renew now), and the internal root CA with install instructions.
import { useEffect, useState } from 'preact/hooks';
import { AccessEntry, api, ApiError, CertificatesView, CertStatus, RouteView } from '../api';
import { date } from '../format';
import { CaInstall } from '../devices';
import { isLocalName, NEW_ROUTE, RouteForm } from './routeform';
import { AcmeSettings } from './acme';
import { Alert } from '../alert';
import { Link } from '../nav';

/** Who may use a route, in a few words, with a lock when it is not open to everyone. */
function access_of(r: RouteView) {
  const parts: string[] = [];
  if (r.route.forward_auth) parts.push('hearth login');
  const basic = (r.route.basic_auth as string[] | undefined) ?? [];
  if (basic.length) parts.push(`basic auth (${basic.length} user${basic.length === 1 ? '' : 's'})`);
  if (((r.route.allow as string[] | undefined) ?? []).length) parts.push('allowed addresses only');
  if (((r.route.deny as string[] | undefined) ?? []).length) parts.push('some addresses refused');
  if ((r.route.rate_limit as number | undefined) ?? 0) parts.push(`${r.route.rate_limit}/s per client`);
  const locked = !!r.route.forward_auth || basic.length > 0;
  return (
    <>
      {locked && (
        <span class="lock" title="login required" aria-label="login required">
          🔒{' '}
        </span>
      )}
      {parts.length ? parts.join(' · ') : 'open to every client'}
    </>
  );
}

/** The certificate a route gets, worded truthfully: hearth's CA (also for a local name set to ACME), the ACME
 *  certificate's validity, or why ordering failed. */
function certificate_of(r: RouteView, certs: CertificatesView | null) {
  if (r.route.tls === 'none') return 'none (plain HTTP)';
  const local = r.route.hosts.filter(isLocalName);
  if (r.route.tls === 'internal' || local.length === r.route.hosts.length) {
    return (
      <>
        hearth's CA{r.route.tls === 'acme' && <div class="muted">local names get no public certificate</div>}
      </>
    );
  }
  const own: CertStatus[] = (certs?.acme ?? []).filter((c) => r.route.hosts.includes(c.name));
  if (!own.length) return 'ACME: not ordered yet';
  return own.map((c) => (
    <div>
      {c.status === 'valid' && c.not_after ? (
        <span class="ok">valid until {new Date(c.not_after * 1000).toLocaleDateString()}</span>
      ) : c.status === 'failed' ? (
        <span class="error">failed: {c.last_error || 'see Certificates below'}</span>
      ) : (
        <span class="muted">{c.status === 'ordering' ? 'ordering…' : c.status}</span>
      )}
      {own.length > 1 && <span class="muted"> ({c.name})</span>}
    </div>
  ));
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
                <th>Access</th>
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
                    <td colSpan={5}>
                      <RouteForm
                        initial={r.route}
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
                          <span class={!u.available ? 'error' : u.checked ? 'ok' : 'muted'}>{u.available && u.checked ? '●' : '○'}</span> {u.url}{' '}
                          <span class="muted" data-testid="backend-state">
                            {!u.available
                              ? u.circuit_open
                                ? 'taken out after failures'
                                : `health check: ${u.health_check}`
                              : u.checked
                                ? `${u.latency_ms} ms · ${u.active_requests} active`
                                : 'not checked yet'}
                          </span>
                          {!u.available && u.last_error && <div class="error small">{u.last_error}</div>}
                        </div>
                      ))}
                    </td>
                    <td data-label="Access" class="small" data-testid="route-access">
                      {access_of(r)}
                    </td>
                    <td data-label="Certificate" class="small" data-testid="route-cert">
                      {certificate_of(r, certs)}
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
        <RouteForm initial={NEW_ROUTE} index={null} saved={load} />
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
                        {c.rate_limited ? 'Rate limited by the CA: ' : ''}
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

      <AcmeSettings />

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
                    {a.path}{' '}
                    <span class="muted">
                      · <Link to={`/logs?request=${encodeURIComponent(a.request_id)}`}>logs</Link>
                      {a.trace_id && (
                        <>
                          {' '}
                          · <Link to={`/traces?trace=${a.trace_id}`}>trace</Link>
                        </>
                      )}
                    </span>
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
          <CaInstall sha256={certs.internal_root_sha256} />
        </section>
      )}
    </>
  );
}
