import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, ConfigView } from '../api';
import { usePoll } from '../poll';

// The DNS settings a homelab owner touches most: how names are resolved (upstreams, their health, DNSSEC),
// local records and client groups. Edits go through the config API (validated, applied live, written to
// hearth.toml); an error names the key and changes nothing.

interface UpstreamHealth {
  upstream: string;
  queries: number;
  failures: number;
  latency_ms: number | null;
  healthy: boolean;
  last_error: string | null;
}
interface Resolution {
  mode: 'forward' | 'recursive';
  strategy: string;
  dnssec: boolean;
  clock_plausible: boolean;
  upstreams: UpstreamHealth[];
}
interface DnsRecord {
  name: string;
  type: string;
  value: string;
  ttl?: string;
}
interface DnsGroup {
  name: string;
  clients: string[];
  lists: string[];
}
interface ForwardZone {
  domain: string;
  upstreams: string[];
}
type Message = { text: string; error: boolean } | null;

/** Read the current `[dns]` table, change one key, write it back (arrays are replaced whole: RFC 7396). */
async function editDns<T>(key: string, edit: (v: T, dns: any) => T): Promise<void> {
  const cfg = await api<ConfigView>('GET', '/api/v1/config');
  await api('PATCH', '/api/v1/config', { dns: { [key]: edit(cfg.config.dns[key] as T, cfg.config.dns) } });
}

function Note({ m }: { m: Message }) {
  if (!m) return null;
  return (
    <p class={m.error ? 'error' : 'ok'} role={m.error ? 'alert' : 'status'}>
      {m.text}
    </p>
  );
}

/** Tell the other panels that the config changed (they reload what they show from it). */
export function configChanged() {
  window.dispatchEvent(new Event('hearth:config'));
}

/** Load now and after every config change made on this page. */
function useConfigLoad(load: () => void) {
  useEffect(() => {
    load();
    window.addEventListener('hearth:config', load);
    return () => window.removeEventListener('hearth:config', load);
  }, []);
}

/** Runs config edits one at a time, with a message for the outcome. */
function useEditor(reload: () => void) {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<Message>(null);
  async function run(what: () => Promise<unknown>, done: string): Promise<boolean> {
    setBusy(true);
    setMessage(null);
    try {
      await what();
      setMessage({ text: done, error: false });
      return true;
    } catch (e) {
      setMessage({ text: (e as ApiError).message, error: true });
      return false;
    } finally {
      setBusy(false);
      reload();
      configChanged();
    }
  }
  return { busy, message, run };
}

export function ResolutionPanel() {
  const { data, error } = usePoll<Resolution>('/api/v1/dns/upstreams', 10000);
  const [strategy, setStrategy] = useState('');
  const [upstreams, setUpstreams] = useState('');
  const [dnssec, setDnssec] = useState(true);
  const [mode, setMode] = useState('forward');
  const load = () =>
    api<ConfigView>('GET', '/api/v1/config').then((c) => {
      setStrategy(c.config.dns.upstream_strategy);
      setUpstreams((c.config.dns.upstreams as string[]).join('\n'));
      setDnssec(c.config.dns.dnssec);
      setMode(c.config.dns.mode);
    });
  useConfigLoad(load);
  const { busy, message, run } = useEditor(load);

  function save(e: Event) {
    e.preventDefault();
    const list = upstreams
      .split(/[\n,]/)
      .map((s) => s.trim())
      .filter(Boolean);
    run(
      () => api('PATCH', '/api/v1/config', { dns: { mode, upstreams: list, upstream_strategy: strategy, dnssec } }),
      'Saved: new queries use these settings.',
    );
  }

  return (
    <section class="card" aria-labelledby="resolution-h">
      <h2 id="resolution-h">Resolution</h2>
      {data && (
        <p data-testid="resolution">
          {data.mode === 'recursive' ? 'Recursive from the root servers' : `Forwarding (${data.strategy.replace('_', ' ')})`}
          {' · '}
          {data.dnssec ? <span class="ok">DNSSEC validation on</span> : <span class="muted">DNSSEC validation off</span>}
        </p>
      )}
      {data && data.dnssec && !data.clock_plausible && (
        <p class="error" role="alert">
          The system clock is earlier than this build: signature dates are not checked until the clock is set (NTP).
        </p>
      )}
      {error && <p class="error">{error}</p>}
      {data && data.upstreams.length > 0 && (
        <table class="table log" data-testid="upstreams">
          <thead>
            <tr>
              <th scope="col">Upstream</th>
              <th scope="col">Health</th>
              <th scope="col">Latency</th>
              <th scope="col">Answers</th>
              <th scope="col">Failures</th>
            </tr>
          </thead>
          <tbody>
            {data.upstreams.map((u) => (
              <tr>
                <th scope="row" class="name small">
                  {u.upstream}
                </th>
                <td data-label="Health">
                  <span class={`badge ${u.healthy ? 'ready' : 'failed'}`} title={u.last_error ?? ''}>
                    {u.healthy ? 'up' : 'down'}
                  </span>
                  {u.last_error && <div class="muted small">{u.last_error}</div>}
                </td>
                <td data-label="Latency">{u.latency_ms === null ? '—' : `${u.latency_ms.toFixed(1)} ms`}</td>
                <td data-label="Answers">{u.queries}</td>
                <td data-label="Failures">{u.failures}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Note m={message} />
      <form onSubmit={save} class="filters" style={{ marginTop: '1rem' }}>
        <label>
          Mode
          <select name="dns-mode" value={mode} onChange={(e) => setMode(e.currentTarget.value)}>
            <option value="forward">forward to upstreams</option>
            <option value="recursive">recursive (from the root)</option>
          </select>
        </label>
        <label>
          Strategy
          <select name="dns-strategy" value={strategy} onChange={(e) => setStrategy(e.currentTarget.value)}>
            <option value="failover">failover</option>
            <option value="round_robin">round robin</option>
            <option value="fastest">fastest</option>
          </select>
        </label>
        <label class="grow">
          Upstreams (one per line: udp://, tcp://, tls://ip#name, https://)
          <textarea name="dns-upstreams" rows={3} value={upstreams} onInput={(e) => setUpstreams(e.currentTarget.value)} />
        </label>
        <label>
          <input type="checkbox" name="dns-dnssec" checked={dnssec} onChange={(e) => setDnssec(e.currentTarget.checked)} /> Validate DNSSEC
        </label>
        <button type="submit" disabled={busy}>
          Save
        </button>
      </form>
    </section>
  );
}

export function Records() {
  const [records, setRecords] = useState<DnsRecord[] | null>(null);
  const [form, setForm] = useState({ name: '', type: 'A', value: '' });
  const load = () => api<ConfigView>('GET', '/api/v1/config').then((c) => setRecords(c.config.dns.records));
  useConfigLoad(load);
  const { busy, message, run } = useEditor(load);
  const add = (e: Event) => {
    e.preventDefault();
    const r = { name: form.name.trim(), type: form.type, value: form.value.trim() };
    run(() => editDns<DnsRecord[]>('records', (rs) => [...rs, r]), `Added ${r.name} ${r.type} ${r.value}.`).then((ok) => ok && setForm({ name: '', type: 'A', value: '' }));
  };
  return (
    <section class="card" aria-labelledby="records-h">
      <h2 id="records-h">Local records</h2>
      <p class="muted small">Answered by hearth itself, never forwarded or filtered. A CNAME rewrites a name to another.</p>
      <Note m={message} />
      {records && records.length > 0 && (
        <table class="table log" data-testid="records">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col">Value</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {records.map((r, i) => (
              <tr>
                <th scope="row" class="name">
                  {r.name}
                </th>
                <td data-label="Type">{r.type}</td>
                <td data-label="Value" class="name">
                  {r.value}
                </td>
                <td>
                  <button
                    type="button"
                    class="danger ghost"
                    disabled={busy}
                    aria-label={`Remove ${r.name} ${r.type}`}
                    onClick={() => run(() => editDns<DnsRecord[]>('records', (rs) => rs.filter((_, j) => j !== i)), `Removed ${r.name}.`)}
                  >
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form class="filters" onSubmit={add}>
        <label class="grow">
          Record name
          <input name="record-name" value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} placeholder="nas.home.arpa" required />
        </label>
        <label>
          Type
          <select name="record-type" value={form.type} onChange={(e) => setForm({ ...form, type: e.currentTarget.value })}>
            <option>A</option>
            <option>AAAA</option>
            <option>CNAME</option>
          </select>
        </label>
        <label class="grow">
          Value
          <input name="record-value" value={form.value} onInput={(e) => setForm({ ...form, value: e.currentTarget.value })} placeholder="192.168.1.10" required />
        </label>
        <button type="submit" disabled={busy}>
          Add record
        </button>
      </form>
    </section>
  );
}

/** Conditional forwarding: a domain's names go to its own servers (the router, for DHCP names and reverse lookups). */
export function ForwardZones() {
  const [zones, setZones] = useState<ForwardZone[] | null>(null);
  const [form, setForm] = useState({ domain: '', upstreams: '' });
  const load = () => api<ConfigView>('GET', '/api/v1/config').then((c) => setZones((c.config.dns.forward_zones as ForwardZone[]) ?? []));
  useConfigLoad(load);
  const { busy, message, run } = useEditor(load);
  const add = (e: Event) => {
    e.preventDefault();
    const z = { domain: form.domain.trim(), upstreams: form.upstreams.split(/[\s,]+/).filter(Boolean) };
    run(() => editDns<ForwardZone[]>('forward_zones', (zs) => [...(zs ?? []), z]), `${z.domain} now goes to ${z.upstreams.join(', ')}.`).then(
      (ok) => ok && setForm({ domain: '', upstreams: '' }),
    );
  };
  return (
    <section class="card" aria-labelledby="zones-h">
      <h2 id="zones-h">Conditional forwarding</h2>
      <p class="muted small">
        Names under a domain go to that domain's own servers instead of the upstreams — e.g. the router for its device names
        (<code>fritz.box</code>, <code>lan</code>) and reverse lookups (<code>168.192.in-addr.arpa</code>). Their answers are not
        DNSSEC-validated: such zones are private and unsigned.
      </p>
      <Note m={message} />
      {zones && zones.length > 0 && (
        <table class="table log" data-testid="forward-zones">
          <thead>
            <tr>
              <th scope="col">Domain</th>
              <th scope="col">Servers</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {zones.map((z, i) => (
              <tr>
                <th scope="row" class="name">
                  {z.domain}
                </th>
                <td data-label="Servers" class="name">
                  {z.upstreams.join(', ')}
                </td>
                <td>
                  <button
                    type="button"
                    class="danger ghost"
                    disabled={busy}
                    aria-label={`Remove forwarding for ${z.domain}`}
                    onClick={() => run(() => editDns<ForwardZone[]>('forward_zones', (zs) => zs.filter((_, j) => j !== i)), `Removed ${z.domain}.`)}
                  >
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form class="filters" onSubmit={add}>
        <label class="grow">
          Domain
          <input name="zone-domain" value={form.domain} onInput={(e) => setForm({ ...form, domain: e.currentTarget.value })} placeholder="fritz.box" required />
        </label>
        <label class="grow">
          Servers
          <input
            name="zone-upstreams"
            value={form.upstreams}
            onInput={(e) => setForm({ ...form, upstreams: e.currentTarget.value })}
            placeholder="udp://192.168.178.1:53"
            required
          />
        </label>
        <button type="submit" disabled={busy}>
          Add zone
        </button>
      </form>
    </section>
  );
}

export function Groups() {
  const [groups, setGroups] = useState<DnsGroup[] | null>(null);
  const [listNames, setListNames] = useState<string[]>([]);
  const [form, setForm] = useState({ name: '', clients: '', lists: [] as string[] });
  const load = () =>
    api<ConfigView>('GET', '/api/v1/config').then((c) => {
      setGroups(c.config.dns.groups);
      setListNames((c.config.dns.lists as { name: string }[]).map((l) => l.name));
    });
  useConfigLoad(load);
  const { busy, message, run } = useEditor(load);
  const add = (e: Event) => {
    e.preventDefault();
    const g = {
      name: form.name.trim(),
      clients: form.clients
        .split(/[\s,]+/)
        .map((s) => s.trim())
        .filter(Boolean),
      lists: form.lists,
    };
    run(() => editDns<DnsGroup[]>('groups', (gs) => [...gs, g]), `Added the group “${g.name}”.`).then((ok) => ok && setForm({ name: '', clients: '', lists: [] }));
  };
  return (
    <section class="card" aria-labelledby="groups-h">
      <h2 id="groups-h">Clients and groups</h2>
      <p class="muted small">
        The first group whose clients (addresses or CIDR prefixes) match a device decides which lists filter it; other
        devices get every enabled list.
      </p>
      <Note m={message} />
      {groups && groups.length > 0 && (
        <table class="table log" data-testid="groups">
          <thead>
            <tr>
              <th scope="col">Group</th>
              <th scope="col">Clients</th>
              <th scope="col">Lists</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {groups.map((g) => (
              <tr>
                <th scope="row">{g.name}</th>
                <td data-label="Clients" class="small">
                  {g.clients.join(', ')}
                </td>
                <td data-label="Lists" class="small">
                  {g.lists.length ? g.lists.join(', ') : <span class="muted">none (unfiltered)</span>}
                </td>
                <td>
                  <button
                    type="button"
                    class="danger ghost"
                    disabled={busy}
                    aria-label={`Remove group ${g.name}`}
                    onClick={() => run(() => editDns<DnsGroup[]>('groups', (gs) => gs.filter((x) => x.name !== g.name)), `Removed “${g.name}”.`)}
                  >
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form class="filters" onSubmit={add}>
        <label>
          Group
          <input name="group-name" value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} placeholder="kids" required />
        </label>
        <label class="grow">
          Clients
          <input
            name="group-clients"
            value={form.clients}
            onInput={(e) => setForm({ ...form, clients: e.currentTarget.value })}
            placeholder="192.168.1.50, 192.168.2.0/24"
            required
          />
        </label>
        <fieldset class="inline">
          <legend>Lists</legend>
          {listNames.length === 0 && <span class="muted small">no lists yet</span>}
          {listNames.map((n) => (
            <label>
              <input
                type="checkbox"
                name={`group-list-${n}`}
                checked={form.lists.includes(n)}
                onChange={(e) =>
                  setForm({ ...form, lists: e.currentTarget.checked ? [...form.lists, n] : form.lists.filter((x) => x !== n) })
                }
              />{' '}
              {n}
            </label>
          ))}
        </fieldset>
        <button type="submit" disabled={busy}>
          Add group
        </button>
      </form>
    </section>
  );
}
