import { useState } from 'preact/hooks';
import { Resolution } from '../../api';
import { Alert, Note } from '../../alert';
import { patchConfig, useConfig, useConfigEdit, useFill } from '../../config';
import { ConfigList } from '../../configlist';
import { usePoll } from '../../poll';

// The DNS settings a homelab owner touches most: how names are resolved (upstreams, their health, DNSSEC),
// local records, conditional forwarding and client groups. Edits go through the config API (validated, applied
// live, written to hearth.toml); an error names the key and changes nothing.

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

const words = (s: string | string[]) =>
  (s as string)
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);

export function ResolutionPanel() {
  const { data, error } = usePoll<Resolution>('/api/v1/dns/upstreams', 10000);
  const [strategy, setStrategy] = useState('');
  const [upstreams, setUpstreams] = useState('');
  const [dnssec, setDnssec] = useState(true);
  const [mode, setMode] = useState('forward');
  const { config } = useConfig();
  // the form shows the configuration as it is now (again after every change of these keys)
  useFill(
    config,
    (c) => ({ strategy: c.dns.upstream_strategy as string, upstreams: c.dns.upstreams as string[], dnssec: c.dns.dnssec as boolean, mode: c.dns.mode as string }),
    (v) => {
      setStrategy(v.strategy);
      setUpstreams(v.upstreams.join('\n'));
      setDnssec(v.dnssec);
      setMode(v.mode);
    },
  );
  const { busy, message, run } = useConfigEdit();

  function save(e: Event) {
    e.preventDefault();
    const list = upstreams
      .split(/[\n,]/)
      .map((s) => s.trim())
      .filter(Boolean);
    run(
      () => patchConfig({ dns: { mode, upstreams: list, upstream_strategy: strategy, dnssec } }),
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
        <Alert>The system clock is earlier than this build: signature dates are not checked until the clock is set (NTP).</Alert>
      )}
      <Alert>{error}</Alert>
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
                  <span class={`badge ${u.queries === 0 ? 'stopped' : u.healthy ? 'ready' : 'failed'}`} title={u.last_error ?? ''}>
                    {u.queries === 0 ? 'not used yet' : u.healthy ? 'up' : 'down'}
                  </span>
                  {u.last_error && <div class="muted small">{u.last_error}</div>}
                </td>
                <td data-label="Latency">{u.latency_ms == null ? '—' : `${u.latency_ms.toFixed(1)} ms`}</td>
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
  return (
    <ConfigList<DnsRecord>
      at={['dns', 'records']}
      id="records"
      title="Local records"
      intro="Answered by hearth itself, never forwarded or filtered. A CNAME rewrites a name to another."
      testid="records"
      columns={[
        { label: 'Name', cell: (r) => r.name, class: 'name' },
        { label: 'Type', cell: (r) => r.type },
        { label: 'Value', cell: (r) => r.value, class: 'name' },
      ]}
      fields={[
        { key: 'name', name: 'record-name', label: 'Record name', placeholder: 'nas.home.arpa', grow: true },
        { key: 'type', name: 'record-type', label: 'Type', kind: 'select', options: () => ['A', 'AAAA', 'CNAME'] },
        { key: 'value', name: 'record-value', label: 'Value', placeholder: '192.168.1.10', grow: true },
      ]}
      empty={{ name: '', type: 'A', value: '' }}
      make={(v) => ({ name: (v.name as string).trim(), type: v.type as string, value: (v.value as string).trim() })}
      add="Add record"
      added={(r) => `Added ${r.name} ${r.type} ${r.value}.`}
      removeLabel={(r) => `Remove ${r.name} ${r.type}`}
      removed={(r) => `Removed ${r.name}.`}
    />
  );
}

/** Conditional forwarding: a domain's names go to its own servers (the router, for DHCP names and reverse lookups). */
export function ForwardZones() {
  return (
    <ConfigList<ForwardZone>
      at={['dns', 'forward_zones']}
      id="zones"
      title="Conditional forwarding"
      intro={
        <>
          Names under a domain go to that domain's own servers instead of the upstreams — e.g. the router for its device names
          (<code>fritz.box</code>, <code>lan</code>) and reverse lookups (<code>168.192.in-addr.arpa</code>). Their answers are not
          DNSSEC-validated: such zones are private and unsigned.
        </>
      }
      testid="forward-zones"
      columns={[
        { label: 'Domain', cell: (z) => z.domain, class: 'name' },
        { label: 'Servers', cell: (z) => z.upstreams.join(', '), class: 'name' },
      ]}
      fields={[
        { key: 'domain', name: 'zone-domain', label: 'Domain', placeholder: 'fritz.box', grow: true },
        { key: 'upstreams', name: 'zone-upstreams', label: 'Servers', placeholder: 'udp://192.168.178.1:53', grow: true },
      ]}
      empty={{ domain: '', upstreams: '' }}
      make={(v) => ({ domain: (v.domain as string).trim(), upstreams: words(v.upstreams) })}
      add="Add zone"
      added={(z) => `${z.domain} now goes to ${z.upstreams.join(', ')}.`}
      removeLabel={(z) => `Remove forwarding for ${z.domain}`}
      removed={(z) => `Removed ${z.domain}.`}
    />
  );
}

export function Groups() {
  return (
    <ConfigList<DnsGroup>
      at={['dns', 'groups']}
      id="groups"
      title="Clients and groups"
      intro="The first group whose clients (addresses or CIDR prefixes) match a device decides which lists filter it; other devices get every enabled list."
      testid="groups"
      columns={[
        { label: 'Group', cell: (g) => g.name },
        { label: 'Clients', cell: (g) => g.clients.join(', '), class: 'small' },
        { label: 'Lists', cell: (g) => (g.lists.length ? g.lists.join(', ') : <span class="muted">none (unfiltered)</span>), class: 'small' },
      ]}
      fields={[
        { key: 'name', name: 'group-name', label: 'Group', placeholder: 'kids' },
        { key: 'clients', name: 'group-clients', label: 'Clients', placeholder: '192.168.1.50, 192.168.2.0/24', grow: true },
        {
          key: 'lists',
          name: 'group-list',
          label: 'Lists',
          kind: 'checks',
          options: (c) => ((c.dns.lists ?? []) as { name: string }[]).map((l) => l.name),
          none: 'no lists yet',
        },
      ]}
      empty={{ name: '', clients: '', lists: [] }}
      make={(v) => ({ name: (v.name as string).trim(), clients: words(v.clients), lists: v.lists as string[] })}
      add="Add group"
      added={(g) => `Added the group “${g.name}”.`}
      removeLabel={(g) => `Remove group ${g.name}`}
      removed={(g) => `Removed “${g.name}”.`}
    />
  );
}
