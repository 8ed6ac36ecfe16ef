// The route editor: every key of a `[[proxy.routes]]` table, on four tabs (Details, TLS, Access, Advanced), so an
// edit shows and keeps what the route has — hearth login, basic-auth users, address rules, rate limit, headers,
// timeouts. Basic-auth passwords are hashed by hearth (POST /api/v1/auth/hash-password) before the route is saved;
// existing hashes come back redacted and the API keeps them. An error goes next to its field, on its tab, in
// words; the config path is its detail line.
import { useState } from 'preact/hooks';
import { api, ApiError, ProxyRoute, TestResult } from '../api';
import { FieldError, FieldProblem, problemOf } from '../alert';
import { Link } from '../nav';

const split = (s: string) =>
  s
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);

/** What a new route starts with (the server's defaults for the rest). */
export const NEW_ROUTE: ProxyRoute = { hosts: [], path_prefix: '/', upstreams: [], tls: 'internal', strategy: 'round_robin', health_path: '' };

/** Names only hearth's own CA can certify (as `net::is_local_name` decides, without the configured local domains). */
export function isLocalName(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return !h.includes('.') || /\.(home\.arpa|local|lan|internal|localhost|test|home|corp|intranet|private)$/.test(h) || /^[\d.]+$/.test(h) || h.includes(':');
}

type Tab = 'details' | 'tls' | 'access' | 'advanced';
const TABS: { id: Tab; title: string }[] = [
  { id: 'details', title: 'Details' },
  { id: 'tls', title: 'TLS' },
  { id: 'access', title: 'Access' },
  { id: 'advanced', title: 'Advanced' },
];
/** Which tab shows a key's field. */
const TAB_OF: Record<string, Tab> = {
  hosts: 'details',
  path_prefix: 'details',
  upstreams: 'details',
  strategy: 'details',
  health_path: 'details',
  health_interval: 'details',
  health_status: 'details',
  tls: 'tls',
  hsts: 'tls',
  forward_auth: 'access',
  forward_auth_users: 'access',
  basic_auth: 'access',
  allow: 'access',
  deny: 'access',
  rate_limit: 'access',
  rate_limit_burst: 'access',
};

/** The route key an API error's `key` (`proxy.routes[2].upstreams[0]`) is about. */
function fieldOf(key?: string): string | undefined {
  const m = key && /proxy\.routes\[\d+\]\.(\w+)/.exec(key);
  return m ? m[1] : undefined;
}

interface Form {
  hosts: string;
  upstreams: string;
  forward_auth_users: string;
  allow: string;
  deny: string;
  headers: string;
}

function toForm(r: ProxyRoute): Form {
  const list = (k: string) => ((r[k] as string[] | undefined) ?? []).join(', ');
  const headers = (r.headers as Record<string, string> | undefined) ?? {};
  return {
    hosts: r.hosts.join(', '),
    upstreams: r.upstreams.join(', '),
    forward_auth_users: list('forward_auth_users'),
    allow: list('allow'),
    deny: list('deny'),
    headers: Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}`)
      .join('\n'),
  };
}

function headersOf(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

export function RouteForm({
  initial,
  index,
  id,
  saved,
  cancel,
}: {
  initial: ProxyRoute;
  index: number | null;
  id?: string;
  saved: () => void;
  cancel?: () => void;
}) {
  const [r, setR] = useState<ProxyRoute>(initial);
  const [f, setF] = useState<Form>(toForm(initial));
  const [tab, setTab] = useState<Tab>('details');
  // a refusal: of one field (shown next to it, on its tab) or of the whole route (field '')
  const [error, setError] = useState<FieldProblem>(null);
  const [test, setTest] = useState('');
  const [busy, setBusy] = useState(false);
  const [added, setAdded] = useState<{ hosts: string; tls: string } | null>(null);
  const [user, setUser] = useState({ name: '', password: '' });
  const name = index === null ? 'new' : `r${index}`;

  const setKey = (k: string, v: unknown) => setR({ ...r, [k]: v });
  const text = (k: keyof Form) => (e: Event) => {
    setF({ ...f, [k]: (e.currentTarget as HTMLInputElement).value });
    if (k === 'upstreams') setTest('');
  };
  const val = (k: string) => (e: Event) => {
    setKey(k, (e.currentTarget as HTMLInputElement).value);
    if (k === 'health_path') setTest('');
  };
  const num = (k: string) => (e: Event) => setKey(k, Number((e.currentTarget as HTMLInputElement).value) || 0);
  const check = (k: string) => (e: Event) => setKey(k, (e.currentTarget as HTMLInputElement).checked);
  const invalid = (k: string) => (error?.field === k ? true : undefined);
  const note = (k: string) => <FieldError problem={error} field={k} />;

  function body(): ProxyRoute {
    return {
      ...r,
      hosts: split(f.hosts),
      upstreams: split(f.upstreams),
      forward_auth_users: split(f.forward_auth_users),
      allow: split(f.allow),
      deny: split(f.deny),
      headers: headersOf(f.headers),
      path_prefix: (r.path_prefix as string) || '/',
    };
  }

  async function save(e: Event) {
    e.preventDefault();
    setError(null);
    setBusy(true);
    const b = body();
    try {
      if (index === null) await api('POST', '/api/v1/proxy/routes', b);
      else await api('PUT', `/api/v1/proxy/routes/${encodeURIComponent(id ?? '')}`, b);
      if (index === null) {
        setAdded({ hosts: b.hosts.join(', '), tls: b.tls });
        setR(NEW_ROUTE);
        setF(toForm(NEW_ROUTE));
        setTab('details');
      }
      setTest('');
      saved();
    } catch (err) {
      const ae = err as ApiError;
      const field = fieldOf(ae.key);
      // the message in words; the config path only as a detail
      setError(problemOf(ae, field ?? ''));
      if (field) setTab(TAB_OF[field] ?? 'advanced');
    } finally {
      setBusy(false);
    }
  }

  async function testUpstream() {
    const url = split(f.upstreams)[0];
    setError(null);
    if (!url) return setError({ field: 'upstreams', text: 'Enter a backend URL first.' });
    setTest('Testing…');
    try {
      const t = await api<TestResult>('POST', '/api/v1/proxy/test-upstream', { url, path: r.health_path || '/' });
      setTest(t.error ? `✗ ${url}: ${t.error}` : `${t.ok ? '✓' : '✗'} ${url} answered ${t.status} in ${t.latency_ms} ms`);
    } catch (err) {
      setTest('');
      setError({ field: '', text: (err as ApiError).message });
    }
  }

  async function addUser() {
    setError(null);
    if (!user.name.trim() || /\s|:/.test(user.name)) return setError({ field: 'basic_auth', text: 'A user name without spaces or colons.' });
    if (user.password.length < 8) return setError({ field: 'basic_auth', text: 'The password needs at least 8 characters.' });
    try {
      const { hash } = await api<{ hash: string }>('POST', '/api/v1/auth/hash-password', { password: user.password });
      const others = ((r.basic_auth as string[] | undefined) ?? []).filter((b) => b.split(':')[0] !== user.name.trim());
      setKey('basic_auth', [...others, `${user.name.trim()}:${hash}`]);
      setUser({ name: '', password: '' });
    } catch (err) {
      setError({ field: 'basic_auth', text: (err as ApiError).message });
    }
  }

  const hosts = split(f.hosts);
  const localAcme = r.tls === 'acme' && hosts.some(isLocalName);
  const basic = (r.basic_auth as string[] | undefined) ?? [];
  const label = index === null ? 'Add a route' : `Edit route ${index}`;

  return (
    <form class="route-form" onSubmit={save} aria-label={label} noValidate>
      <div class="tabs" role="tablist" aria-label={`${label}: sections`}>
        {TABS.map((t) => (
          <button
            type="button"
            role="tab"
            id={`${name}-tab-${t.id}`}
            aria-selected={tab === t.id}
            aria-controls={`${name}-panel-${t.id}`}
            class={tab === t.id ? 'tab current' : 'tab'}
            onClick={() => setTab(t.id)}
          >
            {t.title}
          </button>
        ))}
      </div>

      <div role="tabpanel" id={`${name}-panel-details`} aria-labelledby={`${name}-tab-details`} hidden={tab !== 'details'} class="filters">
        <label class="grow">
          Host names
          <input name="hosts" value={f.hosts} onInput={text('hosts')} placeholder="jellyfin.home.arpa" aria-invalid={invalid('hosts')} />
          {note('hosts')}
        </label>
        <label>
          Path prefix
          <input name="path_prefix" value={r.path_prefix as string} onInput={val('path_prefix')} aria-invalid={invalid('path_prefix')} />
          {note('path_prefix')}
        </label>
        <label class="grow">
          Backends
          <input name="upstreams" value={f.upstreams} onInput={text('upstreams')} placeholder="http://192.168.1.20:8096" aria-invalid={invalid('upstreams')} />
          {note('upstreams')}
        </label>
        <label>
          Balancing
          <select name="strategy" value={r.strategy} onChange={val('strategy')}>
            <option value="round_robin">round robin</option>
            <option value="least_conn">least connections</option>
            <option value="ip_hash">client IP hash</option>
          </select>
        </label>
        <label>
          Health check path
          <input name="health_path" value={r.health_path} onInput={val('health_path')} placeholder="/health (empty: off)" aria-invalid={invalid('health_path')} />
          {note('health_path')}
        </label>
        {r.health_path && (
          <>
            <label>
              Check every
              <input name="health_interval" value={(r.health_interval as string) ?? '10s'} onInput={val('health_interval')} aria-invalid={invalid('health_interval')} />
              {note('health_interval')}
            </label>
            <label>
              Expected status <span class="muted small">(0: any 2xx/3xx)</span>
              <input name="health_status" type="number" min={0} max={599} value={(r.health_status as number) ?? 0} onInput={num('health_status')} />
            </label>
          </>
        )}
        <button type="button" class="ghost" onClick={testUpstream}>
          Test backend
        </button>
        {test && (
          <p class="muted" role="status" data-testid="test-result">
            {test}
          </p>
        )}
      </div>

      <div role="tabpanel" id={`${name}-panel-tls`} aria-labelledby={`${name}-tab-tls`} hidden={tab !== 'tls'} class="stack">
        <label>
          Certificate
          <select name="tls" value={r.tls} onChange={val('tls')}>
            <option value="internal">hearth's CA (LAN names)</option>
            <option value="acme">ACME: Let's Encrypt or your CA (public names)</option>
            <option value="none">none (plain HTTP)</option>
          </select>
        </label>
        <p class="muted small">
          {r.tls === 'internal' && "hearth's own CA issues the certificate at once. Devices trust it once hearth's root certificate is installed."}
          {r.tls === 'acme' &&
            'The name must resolve publicly to this network, and ports 80 and 443 must reach hearth (forwarded by the router). Settings are on the Proxy page (ACME).'}
          {r.tls === 'none' && 'Served over plain HTTP only: anyone on the way can read and change the traffic.'}
        </p>
        {localAcme && (
          <p class="error small" role="note" data-testid="local-acme">
            {hosts.filter(isLocalName).join(', ')} cannot get a public certificate: no public CA certifies local names. hearth serves them with its own CA's
            certificate instead.
          </p>
        )}
        <label class="check">
          <input type="checkbox" name="hsts" checked={r.hsts !== false} onChange={check('hsts')} disabled={r.tls === 'none'} /> HSTS: browsers remember to use HTTPS
          for this site (a year)
        </label>
      </div>

      <div role="tabpanel" id={`${name}-panel-access`} aria-labelledby={`${name}-tab-access`} hidden={tab !== 'access'} class="stack">
        <label class="check">
          <input type="checkbox" name="forward_auth" checked={!!r.forward_auth} onChange={check('forward_auth')} /> Require a hearth login (the admin account's
          login page, on this site)
        </label>
        {!!r.forward_auth && (
          <label>
            Only these users <span class="muted small">(empty: every hearth user)</span>
            <input name="forward_auth_users" value={f.forward_auth_users} onInput={text('forward_auth_users')} aria-invalid={invalid('forward_auth_users')} />
            {note('forward_auth_users')}
          </label>
        )}
        <fieldset class="inline" aria-label="Basic-auth users">
          <legend>Basic-auth users</legend>
          {basic.length === 0 && <span class="muted small">none</span>}
          {basic.map((b) => {
            const u = b.split(':')[0];
            return (
              <span class="chip" data-user={u}>
                {u}{' '}
                <button type="button" class="link" aria-label={`Remove the user ${u}`} onClick={() => setKey('basic_auth', basic.filter((x) => x !== b))}>
                  ✕
                </button>
              </span>
            );
          })}
          <input aria-label="New user name" placeholder="user" value={user.name} onInput={(e) => setUser({ ...user, name: e.currentTarget.value })} />
          <input
            aria-label="New user's password"
            type="password"
            placeholder="password"
            autoComplete="new-password"
            value={user.password}
            onInput={(e) => setUser({ ...user, password: e.currentTarget.value })}
          />
          <button type="button" class="ghost" onClick={addUser}>
            Add user
          </button>
          {note('basic_auth')}
        </fieldset>
        <div class="filters">
          <label class="grow">
            Allow only these clients <span class="muted small">(addresses or CIDRs; empty: everyone)</span>
            <input name="allow" value={f.allow} onInput={text('allow')} placeholder="192.168.1.0/24" aria-invalid={invalid('allow')} />
            {note('allow')}
          </label>
          <label class="grow">
            Refuse these clients
            <input name="deny" value={f.deny} onInput={text('deny')} aria-invalid={invalid('deny')} />
            {note('deny')}
          </label>
        </div>
        <div class="filters">
          <label>
            Rate limit <span class="muted small">(requests/s per client; 0: off)</span>
            <input name="rate_limit" type="number" min={0} value={(r.rate_limit as number) ?? 0} onInput={num('rate_limit')} aria-invalid={invalid('rate_limit')} />
            {note('rate_limit')}
          </label>
          <label>
            Burst
            <input
              name="rate_limit_burst"
              type="number"
              min={0}
              value={(r.rate_limit_burst as number) ?? 0}
              onInput={num('rate_limit_burst')}
              aria-invalid={invalid('rate_limit_burst')}
            />
            {note('rate_limit_burst')}
          </label>
        </div>
      </div>

      <div role="tabpanel" id={`${name}-panel-advanced`} aria-labelledby={`${name}-tab-advanced`} hidden={tab !== 'advanced'} class="stack">
        <label class="check">
          <input type="checkbox" name="strip_prefix" checked={!!r.strip_prefix} onChange={check('strip_prefix')} /> Strip the path prefix before passing the
          request on
        </label>
        <div class="filters">
          {(
            [
              ['timeout', 'Response timeout', '60s'],
              ['connect_timeout', 'Connect timeout', '5s'],
              ['fail_timeout', 'Take a failing backend out for', '30s'],
            ] as const
          ).map(([k, l, d]) => (
            <label>
              {l}
              <input name={k} value={(r[k] as string) ?? d} onInput={val(k)} aria-invalid={invalid(k)} />
              {note(k)}
            </label>
          ))}
          {(
            [
              ['retries', 'Retries', 1],
              ['max_fails', 'Failures before taking it out', 3],
              ['max_body_bytes', 'Largest request body (bytes; 0: no limit)', 0],
            ] as const
          ).map(([k, l, d]) => (
            <label>
              {l}
              <input name={k} type="number" min={0} value={(r[k] as number) ?? d} onInput={num(k)} aria-invalid={invalid(k)} />
              {note(k)}
            </label>
          ))}
        </div>
        <label>
          Response headers <span class="muted small">(one “Name: value” per line; an empty value removes the header)</span>
          <textarea name="headers" rows={3} value={f.headers} onInput={text('headers')} aria-invalid={invalid('headers')} />
          {note('headers')}
        </label>
      </div>

      <FieldError problem={error} field="" />
      <div class="row">
        <button type="submit" disabled={busy}>
          {index === null ? 'Add route' : 'Save'}
        </button>
        {cancel && (
          <button type="button" class="ghost" onClick={cancel}>
            Cancel
          </button>
        )}
      </div>
      {added && (
        <div class="ok small" role="status" data-testid="route-added">
          Added {added.hosts}. It resolves to hearth only on devices that use hearth's DNS (<Link to="/devices">connect your devices</Link>)
          {added.tls === 'internal' ? "; browsers trust its certificate once hearth's root certificate is installed (below)." : '.'}
        </div>
      )}
    </form>
  );
}
