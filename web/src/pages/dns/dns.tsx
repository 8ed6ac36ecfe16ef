import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, DnsStats, Flushed, QueryEntry } from '../../api';
import { Alert, Message, Note } from '../../alert';
import { Chart } from '../../chart';
import { usePoll } from '../../poll';
import { Lists } from './lists';
import { ForwardZones, Groups, Records, ResolutionPanel } from './dnsconfig';
import { CheckDomain, MyRulesPanel, removeRule } from './rules';
import { Link, navigate, usePath } from '../../nav';

/** Response codes other than NOERROR, as dig names them: an answer that is not a success is not shown green. */
const RCODES: Record<number, string> = { 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED' };
/** An answer (not a block) whose response code is not NOERROR. */
const failed = (r: QueryEntry) => r.rcode !== 0 && r.outcome !== 'blocked';

// The DNS page: today's figures, an hourly chart, top lists, and the query log with filters and live tail.

const QTYPES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 64: 'SVCB', 65: 'HTTPS', 255: 'ANY',
};
const qtype = (t: number) => QTYPES[t] ?? `TYPE${t}`;
const OUTCOMES = ['blocked', 'local', 'cached', 'forwarded', 'stale', 'ratelimited', 'refused', 'bogus', 'failed', 'malformed'];
const MAX_ROWS = 500;

function Stats() {
  const { data: stats, error } = usePoll<DnsStats>('/api/v1/dns/stats?hours=24', 15000);
  if (!stats) return error ? <Alert>{error}</Alert> : <p>Loading…</p>;
  const hours = stats.per_hour.map((h) => h[0]);
  const top = (title: string, rows: [string, number][], testid: string) => (
    <div class="card">
      <h2>{title}</h2>
      {rows.length === 0 ? (
        <p class="muted">Nothing yet.</p>
      ) : (
        <ol data-testid={testid}>
          {rows.map(([k, n]) => (
            <li>
              <span title={k}>{k}</span>
              <span class="muted">{n}</span>
            </li>
          ))}
        </ol>
      )}
    </div>
  );
  return (
    <>
      <section class="cards" aria-label="Last 24 hours">
        <div class="card stat">
          <span class="label">Queries (24 h)</span>
          <span class="value" data-testid="dns-total">
            {stats.total}
          </span>
        </div>
        <div class="card stat">
          <span class="label">Blocked</span>
          <span class="value">
            {stats.blocked} <span class="muted small">({stats.blocked_percent} %)</span>
          </span>
        </div>
        <div class="card stat">
          <span class="label">From cache</span>
          <span class="value">{stats.cached}</span>
        </div>
        <div class="card stat">
          <span class="label">Clients</span>
          <span class="value">{stats.clients}</span>
        </div>
      </section>
      <section class="card">
        <h2>Queries per hour</h2>
        <Chart
          title="DNS queries per hour, last 24 hours"
          times={hours}
          window={24 * 3600}
          format={(v) => (Number.isInteger(v) ? String(v) : v.toFixed(1))}
          lines={[
            { label: 'all queries', values: stats.per_hour.map((h) => h[1]), color: '#3b82f6' },
            { label: 'blocked', values: stats.per_hour.map((h) => h[2]), color: '#d9622b' },
          ]}
        />
      </section>
      <section class="tops">
        {top('Top domains', stats.top_domains, 'top-domains')}
        {top('Top blocked', stats.top_blocked, 'top-blocked')}
        {top('Top clients', stats.top_clients, 'top-clients')}
      </section>
    </>
  );
}

function QueryLog() {
  const [rows, setRows] = useState<QueryEntry[]>([]);
  const [search, setSearch] = useState('');
  const [outcome, setOutcome] = useState('');
  const [client, setClient] = useState('');
  const [live, setLive] = useState(true);
  const [message, setMessage] = useState<Message>(null);
  const [more, setMore] = useState(true);
  const filters = useRef({ search, outcome, client });
  filters.current = { search, outcome, client };

  const params = (before?: number) => {
    const p = new URLSearchParams({ limit: '100' });
    if (search) p.set('search', search);
    if (outcome) p.set('outcome', outcome);
    if (client) p.set('client', client);
    if (before) p.set('before', String(before));
    return p.toString();
  };
  const load = async () => {
    try {
      const r = await api<QueryEntry[]>('GET', `/api/v1/dns/querylog?${params()}`);
      setRows(r);
      setMore(r.length === 100);
      setMessage(null);
    } catch (e) {
      setMessage({ text: (e as ApiError).message, error: true });
    }
  };
  const older = async () => {
    const last = rows[rows.length - 1];
    if (!last) return;
    try {
      const r = await api<QueryEntry[]>('GET', `/api/v1/dns/querylog?${params(last.id)}`);
      setRows([...rows, ...r]);
      setMore(r.length === 100);
    } catch (e) {
      setMessage({ text: (e as ApiError).message, error: true });
    }
  };
  useEffect(() => {
    load();
  }, [search, outcome, client]);

  // live tail: new entries that match the filters are put on top
  useEffect(() => {
    if (!live) return;
    const es = new EventSource('/api/v1/dns/querylog/stream');
    es.addEventListener('query', (ev) => {
      const e: QueryEntry = JSON.parse((ev as MessageEvent).data);
      const f = filters.current;
      if (f.search && !e.name.includes(f.search.toLowerCase())) return;
      if (f.outcome && e.outcome !== f.outcome) return;
      if (f.client && e.client !== f.client) return;
      // while the pointer is over the table, new rows wait: the row being aimed at does not move
      if (hovered.current) {
        waiting.current = [e, ...waiting.current].slice(0, MAX_ROWS);
        setHeld(waiting.current.length);
        return;
      }
      setRows((rs) => (rs.some((r) => r.id === e.id) ? rs : [e, ...rs].slice(0, MAX_ROWS)));
    });
    return () => es.close();
  }, [live]);
  const hovered = useRef(false);
  const waiting = useRef<QueryEntry[]>([]);
  const [held, setHeld] = useState(0);
  function release() {
    hovered.current = false;
    const w = waiting.current;
    waiting.current = [];
    setHeld(0);
    if (w.length) setRows((rs) => [...w.filter((e) => !rs.some((r) => r.id === e.id)), ...rs].slice(0, MAX_ROWS));
  }
  // the outcome of a row's action, shown under that row, with Undo for a rule
  const [done, setDone] = useState<{ id: number; text: string; error: boolean; undo?: () => void } | null>(null);

  async function rule(id: number, name: string, action: 'allow' | 'block') {
    try {
      await api('POST', '/api/v1/dns/rules', { domain: name, action });
      const undo = async () => {
        try {
          await removeRule(name, action);
          setDone({ id, text: `Undone: ${name} is no longer in my ${action}list.`, error: false });
        } catch (e) {
          setDone({ id, text: (e as ApiError).message, error: true });
        }
      };
      setDone({ id, text: `${action === 'allow' ? 'Allowed' : 'Blocked'} ${name} (and its subdomains) — in “my ${action}list”.`, error: false, undo });
    } catch (e) {
      setDone({ id, text: (e as ApiError).message, error: true });
    }
  }

  async function flush() {
    if (!confirm('Empty the DNS cache? Every name is asked upstream again the next time (a little slower for a while).')) return;
    try {
      const r = await api<Flushed>('POST', '/api/v1/dns/cache/flush');
      setMessage({ text: `Cache flushed (${r.flushed} answers).`, error: false });
    } catch (e) {
      setMessage({ text: (e as ApiError).message, error: true });
    }
  }

  return (
    <section class="card">
      <h2>Query log</h2>
      <div class="filters">
        <label>
          Name contains
          <input name="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} placeholder="example.com" />
        </label>
        <label>
          Outcome
          <select name="outcome" value={outcome} onChange={(e) => setOutcome(e.currentTarget.value)}>
            <option value="">any</option>
            {OUTCOMES.map((o) => (
              <option value={o}>{o}</option>
            ))}
          </select>
        </label>
        <label>
          Client
          <input name="client" value={client} onInput={(e) => setClient(e.currentTarget.value)} placeholder="192.168.1.20" />
        </label>
        <label class="row" style={{ alignItems: 'center', gap: '0.4rem' }}>
          <input type="checkbox" checked={live} onChange={(e) => setLive(e.currentTarget.checked)} /> Live
        </label>
        <button type="button" class="ghost" onClick={load}>
          Refresh
        </button>
        <button type="button" class="ghost" onClick={flush}>
          Flush cache
        </button>
      </div>
      <Note m={message} />
      {rows.length === 0 ? (
        <p class="muted">No queries yet. Point a device's DNS at hearth, or try: dig @hearth-address example.com</p>
      ) : (
        <div class="log-box" onPointerEnter={() => (hovered.current = true)} onPointerLeave={release}>
        <table class="table log querylog" data-testid="querylog">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Client</th>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col">Outcome</th>
              <th scope="col">Why / upstream</th>
              <th scope="col">ms</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => [
              <tr data-outcome={r.outcome}>
                <td data-label="Time">{new Date(r.ts_ms).toLocaleTimeString()}</td>
                <td data-label="Client">{r.client}</td>
                <td data-label="Name" class="name">
                  {r.name || '(unreadable)'}
                  {r.answers.length > 0 && (
                    <div class="muted small" data-testid="answers">
                      → {r.answers.join(', ')}
                    </div>
                  )}
                </td>
                <td data-label="Type">{qtype(r.qtype)}</td>
                <td data-label="Outcome">
                  <span class={`badge ${failed(r) ? 'stopped' : r.outcome}`}>{r.outcome}</span>
                  {failed(r) && r.outcome !== 'refused' && (
                    <span class={`badge rcode-${r.rcode}`} title="the answer's response code" data-testid="rcode">
                      {RCODES[r.rcode] ?? `RCODE ${r.rcode}`}
                    </span>
                  )}
                  {r.dnssec === 'secure' && (
                    <span class="badge secure" title="DNSSEC: signatures verified">
                      signed
                    </span>
                  )}
                </td>
                <td data-label="Why" class="small">
                  {r.rule && r.list
                    ? r.outcome === 'blocked'
                      ? `${r.list}: ${r.rule}`
                      : `allowed by ${r.list}: ${r.rule}${r.upstream ? ` · ${r.upstream}` : ''}`
                    : r.rule || (r.upstream ?? '')}
                </td>
                <td data-label="ms">{(r.latency_us / 1000).toFixed(1)}</td>
                <td class="actions">
                  {r.name && (
                    <details class="menu row-menu">
                      <summary aria-label={`Actions for ${r.name}`}>⋯</summary>
                      <div class="menu-body">
                        {r.outcome === 'blocked' ? (
                          <button type="button" class="ghost" onClick={() => rule(r.id, r.name, 'allow')} aria-label={`Allow ${r.name}`}>
                            Allow {r.name}
                          </button>
                        ) : (
                          // a local answer is hearth's own record: nothing to block
                          r.outcome !== 'local' && (
                            <button type="button" class="ghost danger" onClick={() => rule(r.id, r.name, 'block')} aria-label={`Block ${r.name}`}>
                              Block {r.name}
                            </button>
                          )
                        )}
                        <button type="button" class="ghost" onClick={() => navigate(`/dns/lists?check=${encodeURIComponent(r.name)}`)}>
                          Check in the lists
                        </button>
                        <button type="button" class="ghost" onClick={() => setClient(r.client)}>
                          Only this client
                        </button>
                      </div>
                    </details>
                  )}
                </td>
              </tr>,
              done?.id === r.id && (
                <tr class="row-note">
                  <td colSpan={8}>
                    <span class={done.error ? 'error' : 'ok'} role={done.error ? 'alert' : 'status'}>
                      {done.text}
                    </span>{' '}
                    {done.undo && (
                      <button type="button" class="link" onClick={done.undo}>
                        Undo
                      </button>
                    )}{' '}
                    {!done.error && <Link to="/dns/lists">My rules</Link>}
                  </td>
                </tr>
              ),
            ])}
          </tbody>
        </table>
        </div>
      )}
      {held > 0 && (
        <p class="muted small" role="status">
          {held} new {held === 1 ? 'entry waits' : 'entries wait'} while the pointer is over the log.
        </p>
      )}
      {more && rows.length > 0 && (
        <button type="button" class="ghost" onClick={older}>
          Older entries
        </button>
      )}
    </section>
  );
}

/** The DNS page's sections, each at its own path (a link or a bookmark opens it). */
const SECTIONS = [
  { path: '/dns', title: 'Overview' },
  { path: '/dns/log', title: 'Query log' },
  { path: '/dns/lists', title: 'Lists & rules' },
  { path: '/dns/records', title: 'Local records' },
  { path: '/dns/clients', title: 'Clients & groups' },
  { path: '/dns/settings', title: 'Settings' },
];

export function Dns() {
  const path = usePath();
  const section = SECTIONS.find((s) => s.path === path) ?? SECTIONS[0];
  const check = new URLSearchParams(location.search).get('check') ?? '';
  return (
    <>
      <nav class="tabs" aria-label="DNS sections">
        {SECTIONS.map((s) => (
          <a
            href={s.path}
            aria-current={s === section ? 'page' : undefined}
            onClick={(e) => {
              e.preventDefault();
              navigate(s.path);
            }}
          >
            {s.title}
          </a>
        ))}
      </nav>
      {section.path === '/dns' && <Stats />}
      {section.path === '/dns/log' && <QueryLog />}
      {section.path === '/dns/lists' && (
        <>
          <Lists />
          <MyRulesPanel />
          <CheckDomain initial={check} key={check} />
        </>
      )}
      {section.path === '/dns/records' && <Records />}
      {section.path === '/dns/clients' && <Groups />}
      {section.path === '/dns/settings' && (
        <>
          <ResolutionPanel />
          <ForwardZones />
        </>
      )}
    </>
  );
}
