// Logs: pick streams by label (source, host, level, service…), search words or LogQL, a time range, a chart of the
// matching lines over time, the lines newest first with their labels, live tail, and a click on a request id to see
// every line of that request. Reads Loki's API (`/loki/api/v1/*`), the same one Grafana uses.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { usePoll } from '../poll';
import { bytes } from '../format';
import { Alert } from '../alert';
import { Chart } from '../chart';

interface LokiStream {
  stream: Record<string, string>;
  values: [string, string][];
}
interface LokiSeries {
  metric: Record<string, string>;
  values: [number, string][];
}
interface LokiAnswer<T> {
  status: string;
  data: { resultType: string; result: T[] };
}
interface LogsStatus {
  usage: { bytes: number; days: number; streams: number; oldest_ms?: number | null; in_memory: boolean; capped_entries: number };
  received: number;
  written: number;
  dropped: number;
  truncated: number;
  queued: number;
  retention_seconds: number;
}
interface Row {
  t: bigint;
  labels: Record<string, string>;
  line: string;
}

const RANGES: [string, number][] = [
  ['15 min', 15 * 60],
  ['1 h', 3600],
  ['6 h', 6 * 3600],
  ['24 h', 86400],
  ['7 d', 7 * 86400],
];
const PICKERS = ['source', 'host', 'level', 'service', 'subsystem'];
const LEVEL_CLASS: Record<string, string> = { critical: 'failed', error: 'failed', warning: 'degraded', info: 'ready', debug: 'stopped' };

/** A LogQL string literal. */
function quote(s: string): string {
  return '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';
}

/** The LogQL of the pickers and the search box: `{source="syslog"} |= "word"`. */
export function buildQuery(picked: Record<string, string>, search: string): string {
  const sel = Object.entries(picked)
    .filter(([, v]) => v)
    .map(([k, v]) => `${k}=${quote(v)}`);
  // a selector must narrow something: "any source" is every stream
  const selector = `{${sel.length ? sel.join(', ') : 'source=~".+"'}}`;
  const words = search.trim();
  return words ? `${selector} |= ${quote(words)}` : selector;
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

function timeText(t: bigint): string {
  const ms = Number(t / 1_000_000n);
  const d = new Date(ms);
  return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** A line with its `request_id=…` turned into a link that searches for it. */
function LineText({ line, onRequest }: { line: string; onRequest: (id: string) => void }) {
  const m = /request_id=([A-Za-z0-9._-]+)/.exec(line);
  if (!m) return <span class="logline">{line}</span>;
  const before = line.slice(0, m.index);
  const after = line.slice(m.index + m[0].length);
  return (
    <span class="logline">
      {before}
      request_id=
      <a href="#" title="every line of this request" onClick={(e) => { e.preventDefault(); onRequest(m[1]); }}>
        {m[1]}
      </a>
      {after}
    </span>
  );
}

/** The LogQL of every line of one request. */
function requestQuery(id: string): string {
  return `{source=~".+"} |= ${quote(id)}`;
}

export function Logs() {
  // `/logs?request=<id>` (from the Proxy page's access log) opens that request's lines
  const linked = new URLSearchParams(location.search).get('request');
  const status = usePoll<LogsStatus>('/api/v1/logs/status', 10000);
  const [values, setValues] = useState<Record<string, string[]>>({});
  const [picked, setPicked] = useState<Record<string, string>>({});
  const [search, setSearch] = useState('');
  const [advanced, setAdvanced] = useState(!!linked);
  const [logql, setLogql] = useState(linked ? requestQuery(linked) : '{source=~".+"}');
  const [range, setRange] = useState(linked ? 86400 : 3600);
  const [rows, setRows] = useState<Row[]>([]);
  const [counts, setCounts] = useState<{ times: number[]; values: number[] }>({ times: [], values: [] });
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const [live, setLive] = useState(false);
  const liveRef = useRef(false);
  const query = advanced ? logql : buildQuery(picked, search);

  // label values for the pickers
  useEffect(() => {
    (async () => {
      const out: Record<string, string[]> = {};
      for (const name of PICKERS) {
        try {
          const v = await api<{ data: string[] }>('GET', `/loki/api/v1/label/${name}/values?start=${(nowNs() - BigInt(7 * 86400) * 1_000_000_000n).toString()}`);
          out[name] = v.data;
        } catch {
          out[name] = [];
        }
      }
      setValues(out);
    })();
  }, []);

  async function run(q = query) {
    setBusy(true);
    setError('');
    const end = nowNs();
    const start = end - BigInt(range) * 1_000_000_000n;
    const step = Math.max(1, Math.round(range / 120));
    try {
      const p = new URLSearchParams({ query: q, start: start.toString(), end: end.toString(), limit: '500', direction: 'backward' });
      const lines = await api<LokiAnswer<LokiStream>>('GET', `/loki/api/v1/query_range?${p}`);
      const out: Row[] = [];
      for (const s of lines.data.result) for (const [t, line] of s.values) out.push({ t: BigInt(t), labels: s.stream, line });
      out.sort((a, b) => (a.t < b.t ? 1 : a.t > b.t ? -1 : 0));
      setRows(out);
      // the chart: matching lines per step
      const m = new URLSearchParams({ query: `sum(count_over_time(${q} [${step}s]))`, start: start.toString(), end: end.toString(), step: `${step}` });
      try {
        const series = await api<LokiAnswer<LokiSeries>>('GET', `/loki/api/v1/query_range?${m}`);
        const pts = new Map<number, number>((series.data.result[0]?.values ?? []).map(([t, v]) => [Math.round(t), Number(v)]));
        // the server evaluates at start, start + step, …: every step, zero where no line matched
        const times: number[] = [];
        const vals: number[] = [];
        const s0 = Number(start) / 1e9;
        for (let k = 0; s0 + k * step <= Number(end) / 1e9; k++) {
          const t = Math.round(s0 + k * step);
          times.push(t);
          vals.push(pts.get(t) ?? 0);
        }
        setCounts({ times, values: vals });
      } catch {
        setCounts({ times: [], values: [] });
      }
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
      setRows([]);
    } finally {
      setBusy(false);
    }
  }

  useEffect(() => {
    run();
  }, [range, JSON.stringify(picked)]);

  // live tail: every 2 s, the lines newer than the newest shown
  useEffect(() => {
    liveRef.current = live;
    if (!live) return;
    const id = setInterval(async () => {
      if (!liveRef.current) return;
      const newest = rows[0]?.t ?? nowNs() - 60_000_000_000n;
      const p = new URLSearchParams({ query, start: (newest + 1n).toString(), end: nowNs().toString(), limit: '500', direction: 'backward' });
      try {
        const got = await api<LokiAnswer<LokiStream>>('GET', `/loki/api/v1/query_range?${p}`);
        const add: Row[] = [];
        for (const s of got.data.result) for (const [t, line] of s.values) add.push({ t: BigInt(t), labels: s.stream, line });
        if (add.length) {
          add.sort((a, b) => (a.t < b.t ? 1 : a.t > b.t ? -1 : 0));
          setRows((old) => [...add, ...old].slice(0, 2000));
        }
      } catch {
        /* the next tick tries again */
      }
    }, 2000);
    return () => clearInterval(id);
  }, [live, query, rows[0]?.t]);

  function showRequest(id: string) {
    setAdvanced(true);
    const q = requestQuery(id);
    setLogql(q);
    setRange(Math.max(range, 86400));
    run(q);
  }

  const s = status.data;
  return (
    <div class="page logs">
      <section class="card">
        <form
          class="logs-search"
          onSubmit={(e) => {
            e.preventDefault();
            run();
          }}
        >
          {!advanced ? (
            <>
              <div class="pickers">
                {PICKERS.map((name) => (
                  <label key={name}>
                    {name}
                    <select
                      value={picked[name] ?? ''}
                      onChange={(e) => setPicked({ ...picked, [name]: (e.target as HTMLSelectElement).value })}
                    >
                      <option value="">any</option>
                      {(values[name] ?? []).map((v) => (
                        <option key={v} value={v}>
                          {v}
                        </option>
                      ))}
                    </select>
                  </label>
                ))}
              </div>
              <input
                type="search"
                aria-label="Search the lines"
                placeholder="Search: a word, an address, a request id…"
                value={search}
                onInput={(e) => setSearch((e.target as HTMLInputElement).value)}
              />
            </>
          ) : (
            <input
              type="text"
              class="mono"
              aria-label="LogQL query"
              value={logql}
              onInput={(e) => setLogql((e.target as HTMLInputElement).value)}
            />
          )}
          <div class="row">
            <select aria-label="Time range" value={range} onChange={(e) => setRange(Number((e.target as HTMLSelectElement).value))}>
              {RANGES.map(([label, secs]) => (
                <option key={secs} value={secs}>
                  last {label}
                </option>
              ))}
            </select>
            <button type="submit" disabled={busy}>
              {busy ? 'Searching…' : 'Search'}
            </button>
            <label class="inline">
              <input type="checkbox" checked={live} onChange={(e) => setLive((e.target as HTMLInputElement).checked)} /> Live
            </label>
            <button
              type="button"
              class="link"
              onClick={() => {
                if (!advanced) setLogql(buildQuery(picked, search));
                setAdvanced(!advanced);
              }}
            >
              {advanced ? 'Simple search' : 'LogQL'}
            </button>
          </div>
        </form>
        <Alert>{error}</Alert>
        {counts.times.length > 0 && (
          <Chart title="Matching lines" times={counts.times} window={range} format={(v) => v.toFixed(0)} lines={[{ label: 'lines', values: counts.values, color: '#4e79a7' }]} />
        )}
      </section>
      <section class="card">
        <h2>
          {rows.length} line{rows.length === 1 ? '' : 's'}
          {rows.length >= 500 ? ' (the newest 500)' : ''}
        </h2>
        {rows.length === 0 ? (
          <p class="muted">No line matches in this range.</p>
        ) : (
          <table class="compact loglines">
            <tbody>
              {rows.map((r, i) => (
                <tr key={`${r.t}-${i}`}>
                  <td class="nowrap muted small">{timeText(r.t)}</td>
                  <td class="nowrap">
                    <span class={`badge ${LEVEL_CLASS[r.labels.level] ?? 'stopped'}`}>{r.labels.level ?? '?'}</span>{' '}
                    <span class="muted small">
                      {r.labels.source}
                      {r.labels.service ? `/${r.labels.service}` : r.labels.subsystem ? `/${r.labels.subsystem}` : ''}
                      {r.labels.host ? ` @${r.labels.host}` : ''}
                    </span>
                  </td>
                  <td>
                    <LineText line={r.line} onRequest={showRequest} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      {s && (
        <p class="muted small">
          Store: {bytes(s.usage.bytes)} in {s.usage.days} day{s.usage.days === 1 ? '' : 's'}, {s.usage.streams} streams
          {s.usage.in_memory ? ' (in memory: lines end at a restart)' : ''}; kept {Math.round(s.retention_seconds / 86400)} days.
          {' '}Lines received {s.received}, written {s.written}
          {s.dropped ? `, dropped ${s.dropped}` : ''}
          {s.truncated ? `, cut to 64 KiB ${s.truncated}` : ''}. Grafana and logcli: a Loki data source at this address with an API
          token with the <code>logs</code> scope.
        </p>
      )}
    </div>
  );
}
