// The dashboard, DNS first (what a Pi-hole or AdGuard Home user looks at): the overall state in words, queries and
// the share blocked over the last 24 hours, the blocking switch, top blocked names and top clients, the upstreams'
// latency, the proxy's routes up or down, certificates that need a look, and the way to connect devices. hearth's
// own process figures are on the Status page.
import { CertificatesView, DnsStats, Resolution, RouteView, Status as StatusData } from '../api';
import { usePoll } from '../poll';
import { Chart } from '../chart';
import { Port53 } from '../port53';
import { Alert } from '../alert';
import { Link } from '../nav';
import { overall } from './status';
import { blockingLabel, PauseControls, useBlocking } from '../pause';
import { MachineCards } from './dashboards';

/** A route is up when a backend is available and known to be (probed or used); down when none is available. */
export function routeState(r: RouteView): 'up' | 'down' | 'unknown' {
  if (!r.upstreams.some((u) => u.available)) return 'down';
  return r.upstreams.some((u) => u.available && u.checked) ? 'up' : 'unknown';
}

const DAY = 86400;

export function Dashboard() {
  const { data: status, error } = usePoll<StatusData>('/api/v1/status', 10000);
  const { data: stats } = usePoll<DnsStats>('/api/v1/dns/stats?hours=24', 15000);
  const { data: resolution } = usePoll<Resolution>('/api/v1/dns/upstreams', 15000);
  const { data: routes } = usePoll<RouteView[]>('/api/v1/proxy/routes', 15000);
  const { data: certs } = usePoll<CertificatesView>('/api/v1/tls/certificates', 60000);
  const blocking = useBlocking();

  const o = status ? overall(status.subsystems) : null;
  const now = Date.now() / 1000;
  const certIssues = (certs?.acme ?? []).filter((c) => c.status !== 'valid' || (c.not_after ?? 0) - now < 14 * DAY);
  const up = (routes ?? []).filter((r) => routeState(r) === 'up').length;
  const down = (routes ?? []).filter((r) => routeState(r) === 'down');

  return (
    <>
      <Alert>{error && `Refresh failed: ${error}`}</Alert>
      <Port53 onlyWhenBlocked />
      <section class="cards" aria-label="Overview">
        <div class="card stat">
          <span class="label">Status</span>
          <span class={`value ${o?.level ?? ''}`} data-testid="overall">
            {o ? o.text : '…'}
          </span>
          <Link to="/status">Details</Link>
        </div>
        <div class="card stat">
          <span class="label">Queries, last 24 h</span>
          <span class="value" data-testid="queries">
            {stats ? stats.total.toLocaleString() : '…'}
          </span>
          <span class="muted small">{stats ? `${stats.clients} client${stats.clients === 1 ? '' : 's'} · ${stats.cached.toLocaleString()} from the cache` : ''}</span>
        </div>
        <div class="card stat">
          <span class="label">Blocked, last 24 h</span>
          <span class="value" data-testid="blocked">
            {stats ? `${stats.blocked_percent.toFixed(1)} %` : '…'}
          </span>
          <span class="muted small">{stats ? `${stats.blocked.toLocaleString()} ${stats.blocked === 1 ? "query" : "queries"}` : ''}</span>
        </div>
        <div class="card stat" data-testid="blocking-card">
          <span class="label">Blocking</span>
          <span class={`value ${blocking && !blocking.enabled ? 'warn' : 'ok'}`} data-testid="blocking-state">
            {blockingLabel(blocking)}
          </span>
          <PauseControls />
        </div>
      </section>
      <MachineCards />

      {stats && stats.total === 0 && (
        <section class="card" data-testid="no-queries">
          <h2>No device asks hearth yet</h2>
          <p>
            Point your router's (or a device's) DNS server at hearth: <Link to="/devices">Connect your devices</Link>.
          </p>
        </section>
      )}

      <section class="grid3">
        <div class="card">
          <h2>Top blocked</h2>
          {stats && stats.top_blocked.length ? (
            <ol class="toplist" data-testid="top-blocked">
              {stats.top_blocked.slice(0, 8).map(([name, n]) => (
                <li>
                  <span class="name">{name}</span> <span class="muted">{n}</span>
                </li>
              ))}
            </ol>
          ) : (
            <p class="muted">Nothing blocked in the last 24 hours.</p>
          )}
        </div>
        <div class="card">
          <h2>Top clients</h2>
          {stats && stats.top_clients.length ? (
            <ol class="toplist" data-testid="top-clients">
              {stats.top_clients.slice(0, 8).map(([name, n]) => (
                <li>
                  <span class="name">{name}</span> <span class="muted">{n}</span>
                </li>
              ))}
            </ol>
          ) : (
            <p class="muted">No queries in the last 24 hours.</p>
          )}
        </div>
        <div class="card">
          <h2>Upstreams</h2>
          {resolution?.mode === 'recursive' ? (
            <p>Recursive: hearth asks each domain's own servers.</p>
          ) : (
            <ul class="plain" data-testid="dash-upstreams">
              {(resolution?.upstreams ?? []).map((u) => (
                <li>
                  <span class={`dot ${u.queries === 0 ? 'unknown' : u.healthy ? 'ok' : 'bad'}`} aria-hidden="true" />{' '}
                  <span class="name">{u.upstream}</span>{' '}
                  <span class="muted small">
                    {u.queries === 0 ? 'not used yet' : u.healthy ? (u.latency_ms != null ? `${u.latency_ms.toFixed(0)} ms` : 'answering') : `failing: ${u.last_error ?? ''}`}
                  </span>
                </li>
              ))}
            </ul>
          )}
        </div>
        <div class="card">
          <h2>Sites (proxy)</h2>
          {routes && routes.length ? (
            <>
              <p data-testid="routes-summary">
                {up} of {routes.length} up{down.length ? `, ${down.length} down` : ''}
                {routes.length - up - down.length ? `, ${routes.length - up - down.length} not checked yet` : ''}
              </p>
              {down.length > 0 && (
                <ul class="plain">
                  {down.map((r) => (
                    <li class="error small">
                      {r.route.hosts.join(', ')}: {r.upstreams.find((u) => u.last_error)?.last_error || 'no backend answers'}
                    </li>
                  ))}
                </ul>
              )}
            </>
          ) : (
            <p class="muted">
              No sites yet. <Link to="/proxy">Add one</Link> to reach a service by name over HTTPS.
            </p>
          )}
          <Link to="/proxy">Manage sites</Link>
        </div>
        <div class="card">
          <h2>Certificates</h2>
          {certIssues.length ? (
            <ul class="plain" data-testid="cert-issues">
              {certIssues.map((c) => (
                <li>
                  <strong>{c.name}</strong>{' '}
                  <span class={c.status === 'valid' ? 'muted small' : 'error small'}>
                    {c.status === 'valid'
                      ? `expires ${new Date((c.not_after ?? 0) * 1000).toLocaleDateString()}`
                      : c.status === 'failed'
                        ? `failed: ${c.last_error}`
                        : c.status}
                  </span>
                </li>
              ))}
            </ul>
          ) : (
            <p class="muted">{certs?.acme.length ? 'All certificates are valid for more than 14 days.' : 'No public (ACME) certificates.'}</p>
          )}
        </div>
        <div class="card">
          <h2>Connect your devices</h2>
          <p>The address to give your router, steps for each system, and hearth's certificate.</p>
          <Link to="/devices">Open the guide</Link>
        </div>
      </section>

      {stats && stats.per_hour.length > 0 && (
        <section class="card">
          <h2>Queries per hour</h2>
          <Chart
            title="DNS queries per hour, last 24 hours"
            times={stats.per_hour.map(([t]) => t)}
            lines={[
              { label: 'queries', values: stats.per_hour.map(([, q]) => q), color: '#3b82f6' },
              { label: 'blocked', values: stats.per_hour.map(([, , b]) => b), color: '#d9622b' },
            ]}
            format={(v) => (Number.isInteger(v) ? String(v) : v.toFixed(1))}
            window={DAY}
          />
        </section>
      )}
    </>
  );
}
