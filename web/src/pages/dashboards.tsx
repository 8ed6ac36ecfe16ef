// Dashboards: history charts over the metrics store (PromQL range queries at /prometheus/api/v1/query_range), a
// time range picker (1 h … 400 d, or a custom range by dragging across a chart), auto-refresh for ranges that end
// now, and the store's and scrape targets' state. The server picks the resolution (raw, 1 min, 1 h) from the range
// and the step; the step is chosen so a chart never asks for more points than it can draw.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { api, ApiError } from '../api';
import { navigate, usePath } from '../nav';
import { usePoll } from '../poll';
import { bytes, date, duration } from '../format';

interface Range {
  /** Unix seconds; `live` ranges end now and move with the clock */
  start: number;
  end: number;
  live: boolean;
  label: string;
}

const PRESETS: [string, number][] = [
  ['1h', 3600],
  ['6h', 6 * 3600],
  ['24h', 86400],
  ['7d', 7 * 86400],
  ['30d', 30 * 86400],
  ['90d', 90 * 86400],
  ['400d', 400 * 86400],
];

function preset(label: string, seconds: number): Range {
  const end = Math.floor(Date.now() / 1000);
  return { start: end - seconds, end, live: true, label };
}

interface Panel {
  expr: string;
  /** legend of one series, from its labels */
  legend: (m: Record<string, string>) => string;
}

interface ChartSpec {
  title: string;
  unit: 'percent' | 'bytes' | 'bytes/s' | 'celsius' | 'number' | 'per second' | 'seconds' | 'flag';
  panels: Panel[];
}

const COLORS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

function fmt(unit: ChartSpec['unit']): (v: number) => string {
  switch (unit) {
    case 'percent':
      return (v) => `${v.toFixed(v < 10 ? 1 : 0)}%`;
    case 'bytes':
      return (v) => bytes(v);
    case 'bytes/s':
      return (v) => `${bytes(v)}/s`;
    case 'celsius':
      return (v) => `${v.toFixed(1)} °C`;
    case 'per second':
      return (v) => `${v < 10 ? v.toFixed(2) : v.toFixed(0)}/s`;
    case 'seconds':
      return (v) => (v < 1 ? `${(v * 1000).toFixed(v < 0.01 ? 2 : 0)} ms` : `${v.toFixed(2)} s`);
    case 'flag':
      return (v) => (v >= 1 ? 'yes' : 'no');
    default:
      return (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
  }
}

/** The step: about 500 points across the range, never finer than the collection interval. */
function stepOf(r: Range): number {
  return Math.max(10, Math.round((r.end - r.start) / 500));
}

/** The window of rate() and friends: at least four samples (10 s apart) and two steps. */
function rateWindow(r: Range): string {
  return `${Math.max(40, 2 * stepOf(r))}s`;
}

interface PromMatrix {
  status: string;
  data: { resultType: string; result: { metric: Record<string, string>; values: [number, string][] }[] };
}

interface Series {
  label: string;
  values: (number | null)[];
}

async function fetchChart(spec: ChartSpec, r: Range): Promise<{ times: number[]; series: Series[] }> {
  const step = stepOf(r);
  // the grid ends at the range's end, so a live chart's last point is now
  const start = r.end - Math.ceil((r.end - r.start) / step) * step;
  const times: number[] = [];
  for (let t = start; t <= r.end; t += step) times.push(t);
  const index = new Map(times.map((t, i) => [t, i]));
  const series: Series[] = [];
  for (const p of spec.panels) {
    const expr = p.expr.replaceAll('$rate', rateWindow(r));
    const q = new URLSearchParams({ query: expr, start: String(start), end: String(r.end), step: String(step) });
    const m = await api<PromMatrix>('GET', `/prometheus/api/v1/query_range?${q}`);
    for (const s of m.data.result) {
      const values: (number | null)[] = times.map(() => null);
      for (const [t, v] of s.values) {
        const i = index.get(Math.round(t));
        if (i !== undefined) values[i] = Number(v);
      }
      series.push({ label: p.legend(s.metric), values });
    }
  }
  series.sort((a, b) => a.label.localeCompare(b.label));
  return { times, series };
}

function HistoryChart({ spec, range, onZoom }: { spec: ChartSpec; range: Range; onZoom: (a: number, b: number) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const [data, setData] = useState<{ times: number[]; series: Series[]; label: string } | null>(null);
  const [error, setError] = useState('');
  const zoom = useRef(onZoom);
  zoom.current = onZoom;

  useEffect(() => {
    let stop = false;
    fetchChart(spec, range)
      .then((d) => !stop && (setData({ ...d, label: range.label }), setError('')))
      .catch((e) => !stop && setError((e as ApiError).message));
    return () => {
      stop = true;
    };
  }, [spec, range.start, range.end]);

  useEffect(() => {
    const el = box.current;
    if (!el || !data) return;
    const format = fmt(spec.unit);
    const make = () => {
      plot.current?.destroy();
      const axisStroke = getComputedStyle(el).color || '#888';
      const grid = { stroke: 'rgba(128,128,128,0.15)' };
      plot.current = new uPlot(
        {
          width: Math.max(240, el.clientWidth),
          height: 180,
          legend: { show: true, live: true },
          // drag across the chart to zoom into that time range
          cursor: { drag: { x: true, y: false, setScale: false } },
          hooks: {
            setSelect: [
              (u: uPlot) => {
                if (u.select.width > 4) {
                  const a = u.posToVal(u.select.left, 'x');
                  const b = u.posToVal(u.select.left + u.select.width, 'x');
                  u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
                  zoom.current(Math.floor(a), Math.ceil(b));
                }
              },
            ],
          },
          scales: {
            x: { time: true, range: () => [range.start, range.end] },
            y: spec.unit === 'flag' ? { range: () => [0, 1.2] } : { range: (_u, min, max) => [Math.min(0, min ?? 0), Math.max((max ?? 0) * 1.15, 1e-9)] },
          },
          axes: [
            { stroke: axisStroke, grid, ticks: grid },
            {
              stroke: axisStroke,
              grid,
              ticks: grid,
              size: (_u: uPlot, vals: string[] | null) => 16 + 7.5 * Math.max(3, ...(vals ?? []).map((v) => v.length)),
              values: (_u: uPlot, vals: number[]) => vals.map((v) => format(v)),
            },
          ],
          series: [
            {},
            ...data.series.map((s, i) => ({
              label: s.label,
              value: (_u: uPlot, v: number | null) => (v == null ? '—' : format(v)),
              stroke: COLORS[i % COLORS.length],
              width: 1.5,
              spanGaps: false,
            })),
          ],
        },
        [data.times, ...data.series.map((s) => s.values)] as uPlot.AlignedData,
        el,
      );
    };
    make();
    const ro = new ResizeObserver(() => make());
    ro.observe(el);
    const mo = new MutationObserver(() => make());
    mo.observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });
    return () => {
      ro.disconnect();
      mo.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [data]);

  const empty = data && data.series.length === 0;
  return (
    <section class="card history-chart" data-range={data?.label}>
      <h3>{spec.title}</h3>
      {error && <p class="error small">{error}</p>}
      <div class="chart" ref={box} role="img" aria-label={spec.title} />
      {empty && <p class="chart-empty muted small">No data in this range</p>}
    </section>
  );
}

const NAME = (key: string, fallback = '') => (m: Record<string, string>) => m[key] ?? fallback;

const BOARDS: { path: string; title: string; charts: ChartSpec[] }[] = [
  {
    path: '/dashboards',
    title: 'System',
    charts: [
      { title: 'CPU busy', unit: 'percent', panels: [{ expr: '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle"}[$rate])))', legend: () => 'all cores' }] },
      { title: 'Load', unit: 'number', panels: [{ expr: 'node_load1', legend: () => '1 min' }, { expr: 'node_load15', legend: () => '15 min' }] },
      {
        title: 'Memory',
        unit: 'bytes',
        panels: [
          { expr: 'node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes', legend: () => 'used' },
          { expr: 'node_memory_Cached_bytes', legend: () => 'cache' },
          { expr: 'node_memory_SwapTotal_bytes - node_memory_SwapFree_bytes', legend: () => 'swap used' },
        ],
      },
      { title: 'Disk used', unit: 'percent', panels: [{ expr: '100 * (1 - node_filesystem_avail_bytes / node_filesystem_size_bytes)', legend: NAME('mountpoint') }] },
      {
        title: 'Disk IO',
        unit: 'bytes/s',
        panels: [
          { expr: 'rate(node_disk_read_bytes_total[$rate])', legend: (m) => `${m.device} read` },
          { expr: 'rate(node_disk_written_bytes_total[$rate])', legend: (m) => `${m.device} written` },
        ],
      },
      {
        title: 'Network',
        unit: 'bytes/s',
        panels: [
          { expr: 'rate(node_network_receive_bytes_total[$rate])', legend: (m) => `${m.device} in` },
          { expr: 'rate(node_network_transmit_bytes_total[$rate])', legend: (m) => `${m.device} out` },
        ],
      },
      {
        title: 'Temperature',
        unit: 'celsius',
        panels: [
          { expr: 'node_thermal_zone_temp', legend: (m) => m.type || `zone ${m.zone}` },
          { expr: 'node_hwmon_temp_celsius', legend: (m) => `${m.chip} ${m.label || m.sensor}` },
        ],
      },
      { title: 'Throttling (Raspberry Pi)', unit: 'flag', panels: [{ expr: 'max_over_time(hearth_pi_throttled[$rate])', legend: (m) => m.flag.replaceAll('_', ' ') }] },
      { title: 'CPU frequency', unit: 'number', panels: [{ expr: 'avg(node_cpu_scaling_frequency_hertz) / 1e6', legend: () => 'MHz' }] },
    ],
  },
  {
    path: '/dashboards/services',
    title: 'Services',
    charts: [
      { title: 'CPU per service (cores)', unit: 'number', panels: [{ expr: 'topk(10, sum by (name) (rate(container_cpu_usage_seconds_total[$rate])))', legend: NAME('name') }] },
      { title: 'Memory per service', unit: 'bytes', panels: [{ expr: 'topk(10, container_memory_working_set_bytes)', legend: NAME('name') }] },
      { title: 'Disk writes per service', unit: 'bytes/s', panels: [{ expr: 'topk(10, rate(container_fs_writes_bytes_total[$rate]))', legend: NAME('name') }] },
    ],
  },
  {
    path: '/dashboards/dns',
    title: 'DNS',
    charts: [
      { title: 'Queries', unit: 'per second', panels: [{ expr: 'sum by (outcome) (rate(hearth_dns_queries_total[$rate]))', legend: NAME('outcome', 'all') }] },
      { title: 'Answer time (p95)', unit: 'seconds', panels: [{ expr: 'histogram_quantile(0.95, sum by (le) (rate(hearth_dns_query_duration_seconds_bucket[$rate])))', legend: () => 'p95' }] },
      { title: 'Upstream time (p95)', unit: 'seconds', panels: [{ expr: 'histogram_quantile(0.95, sum by (le, upstream) (rate(hearth_dns_upstream_duration_seconds_bucket[$rate])))', legend: NAME('upstream') }] },
      { title: 'Cache', unit: 'per second', panels: [{ expr: 'sum by (result) (rate(hearth_dns_cache_total[$rate]))', legend: NAME('result') }] },
    ],
  },
  {
    path: '/dashboards/proxy',
    title: 'Proxy',
    charts: [
      { title: 'Requests per route', unit: 'per second', panels: [{ expr: 'sum by (route) (rate(hearth_proxy_requests_total[$rate]))', legend: NAME('route') }] },
      { title: 'Errors (5xx)', unit: 'per second', panels: [{ expr: 'sum by (route) (rate(hearth_proxy_requests_total{status=~"5.."}[$rate]))', legend: NAME('route') }] },
      { title: 'Response time (p95)', unit: 'seconds', panels: [{ expr: 'histogram_quantile(0.95, sum by (le, route) (rate(hearth_proxy_request_duration_seconds_bucket[$rate])))', legend: NAME('route') }] },
    ],
  },
  {
    path: '/dashboards/memory',
    title: 'Memory (AI)',
    charts: [
      { title: 'Texts embedded', unit: 'per second', panels: [{ expr: 'sum(rate(hearth_memory_embed_inputs_total[$rate]))', legend: () => 'inputs' }] },
      { title: 'Embedding time (p95)', unit: 'seconds', panels: [{ expr: 'histogram_quantile(0.95, sum by (le) (rate(hearth_memory_embed_duration_seconds_bucket[$rate])))', legend: () => 'p95' }] },
      { title: 'Collection rows', unit: 'number', panels: [{ expr: 'hearth_memory_collection_rows', legend: NAME('collection') }] },
    ],
  },
];

interface Status {
  store: {
    series: number;
    disk_bytes: number;
    tier_bytes: number[];
    tier_oldest_ms: (number | null)[];
    dropped_series: number;
    cap_shortened: boolean;
    in_memory: boolean;
  };
  targets: { name: string; url: string; health: string; last_scrape_ms: number; last_duration_ms: number; last_error?: string | null; samples: number; failures: number }[];
  tiers: [number, number][];
}

function StorePanel() {
  const { data, error } = usePoll<Status>('/api/v1/metrics/status', 30000);
  if (error) return <p class="error">{error}</p>;
  if (!data) return null;
  const s = data.store;
  const names = ['raw', '1 min', '1 hour'];
  return (
    <section class="card store-panel">
      <h3>History store</h3>
      {s.cap_shortened && (
        <p class="error" role="status">
          The store reached <code>metrics.max_disk</code>: the oldest roll-ups were removed before their retention ended. Raise the cap or shorten a retention.
        </p>
      )}
      <p class="muted small">
        {s.series} series · {s.in_memory ? 'kept in memory only (metrics.storage = "memory")' : `${bytes(s.disk_bytes)} on disk`}
        {s.dropped_series > 0 && ` · ${s.dropped_series} new series refused (too many series)`}
      </p>
      <table class="compact">
        <thead>
          <tr>
            <th>Resolution</th>
            <th>Kept</th>
            <th>Stored</th>
            <th>Oldest</th>
          </tr>
        </thead>
        <tbody>
          {data.tiers.map(([, keep], i) => (
            <tr>
              <td>{names[i]}</td>
              <td>{duration(keep)}</td>
              <td>{bytes(s.tier_bytes[i])}</td>
              <td>{s.tier_oldest_ms[i] ? date(s.tier_oldest_ms[i]! / 1000) : '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Scrape targets</h3>
      {data.targets.length === 0 ? (
        <p class="muted small">
          None. Add exporters on your network with <code>[[metrics.scrape]]</code> in hearth.toml (name, url, interval).
        </p>
      ) : (
        <table class="compact">
          <thead>
            <tr>
              <th>Job</th>
              <th>URL</th>
              <th>State</th>
              <th>Samples</th>
              <th>Last error</th>
            </tr>
          </thead>
          <tbody>
            {data.targets.map((t) => (
              <tr>
                <td>{t.name}</td>
                <td class="mono small">{t.url}</td>
                <td>
                  <span class={`badge ${t.health === 'up' ? 'ready' : t.health === 'down' ? 'failed' : 'stopped'}`}>{t.health}</span>
                </td>
                <td>{t.samples}</td>
                <td class="small">{t.last_error ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function RangePicker({ range, setRange }: { range: Range; setRange: (r: Range) => void }) {
  const local = (s: number) => new Date(s * 1000 - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const [from, setFrom] = useState(local(range.start));
  const [to, setTo] = useState(local(range.end));
  useEffect(() => {
    setFrom(local(range.start));
    setTo(local(range.end));
  }, [range.start, range.end]);
  return (
    <div class="range-picker" role="group" aria-label="Time range">
      {PRESETS.map(([label, s]) => (
        <button type="button" class={range.live && range.label === label ? 'primary' : ''} aria-pressed={range.live && range.label === label} onClick={() => setRange(preset(label, s))}>
          {label}
        </button>
      ))}
      <label class="small">
        From <input type="datetime-local" value={from} onChange={(e) => setFrom((e.target as HTMLInputElement).value)} />
      </label>
      <label class="small">
        to <input type="datetime-local" value={to} onChange={(e) => setTo((e.target as HTMLInputElement).value)} />
      </label>
      <button
        type="button"
        onClick={() => {
          const a = Date.parse(from) / 1000;
          const b = Date.parse(to) / 1000;
          if (a < b) setRange({ start: a, end: b, live: false, label: 'custom' });
        }}
      >
        Show
      </button>
    </div>
  );
}

export function Dashboards() {
  const path = usePath();
  const board = BOARDS.find((b) => b.path === path) ?? BOARDS[0];
  const [range, setRange] = useState<Range>(() => preset('1h', 3600));
  // ranges that end now refresh: every 30 s up to a day, every 5 min beyond
  useEffect(() => {
    if (!range.live) return;
    const span = range.end - range.start;
    const t = window.setInterval(() => setRange((r) => (r.live ? { ...r, end: Math.floor(Date.now() / 1000), start: Math.floor(Date.now() / 1000) - span } : r)), span <= 86400 ? 30000 : 300000);
    return () => clearInterval(t);
  }, [range.live, range.label]);
  const charts = useMemo(() => board.charts, [board]);
  return (
    <>
      <nav class="tabs" aria-label="Dashboards">
        {BOARDS.map((b) => (
          <a
            href={b.path}
            aria-current={b === board ? 'page' : undefined}
            onClick={(e) => {
              e.preventDefault();
              navigate(b.path);
            }}
          >
            {b.title}
          </a>
        ))}
        <a
          href="/dashboards/store"
          aria-current={path === '/dashboards/store' ? 'page' : undefined}
          onClick={(e) => {
            e.preventDefault();
            navigate('/dashboards/store');
          }}
        >
          Store & targets
        </a>
      </nav>
      {path === '/dashboards/store' ? (
        <StorePanel />
      ) : (
        <>
          <RangePicker range={range} setRange={setRange} />
          {!range.live && (
            <p class="small muted">
              {date(range.start)} – {date(range.end)}{' '}
              <button type="button" class="link" onClick={() => setRange(preset('1h', 3600))}>
                Back to the last hour
              </button>
            </p>
          )}
          <div class="history-grid">
            {charts.map((c) => (
              <HistoryChart key={board.path + c.title} spec={c} range={range} onZoom={(a, b) => setRange({ start: a, end: b, live: false, label: 'custom' })} />
            ))}
          </div>
        </>
      )}
    </>
  );
}

interface PromVector {
  data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

async function scalarOf(expr: string): Promise<number | null> {
  const v = await api<PromVector>('GET', `/prometheus/api/v1/query?${new URLSearchParams({ query: expr })}`);
  const r = v.data.result[0];
  return r ? Number(r.value[1]) : null;
}

const MACHINE: { key: string; label: string; expr: string; fmt: (v: number) => string; warn: (v: number) => boolean }[] = [
  { key: 'cpu', label: 'CPU', expr: '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle"}[1m])))', fmt: (v) => `${v.toFixed(0)} %`, warn: (v) => v > 90 },
  { key: 'memory', label: 'Memory used', expr: '100 * (1 - sum(node_memory_MemAvailable_bytes) / sum(node_memory_MemTotal_bytes))', fmt: (v) => `${v.toFixed(0)} %`, warn: (v) => v > 90 },
  { key: 'disk', label: 'Disk used (/)', expr: 'max(100 * (1 - node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"}))', fmt: (v) => `${v.toFixed(0)} %`, warn: (v) => v > 90 },
  { key: 'temperature', label: 'Temperature', expr: 'max(node_thermal_zone_temp)', fmt: (v) => `${v.toFixed(0)} °C`, warn: (v) => v > 80 },
  { key: 'throttling', label: 'Throttling', expr: 'max(hearth_pi_throttled)', fmt: (v) => (v > 0 ? 'throttled now' : 'none'), warn: (v) => v > 0 },
];

/** The machine's cards for the overview dashboard (CPU, memory, disk, temperature, throttling, alerts firing), each
 * linking into its dashboard. */
export function MachineCards() {
  const [values, setValues] = useState<Record<string, number | null | undefined>>({});
  const { data: alerts } = usePoll<{ rules: { alerts: { phase: string }[] }[] }>('/api/v1/alerts', 15000);
  useEffect(() => {
    let stop = false;
    const load = async () => {
      const out: Record<string, number | null> = {};
      for (const m of MACHINE) {
        try {
          out[m.key] = await scalarOf(m.expr);
        } catch {
          out[m.key] = null;
        }
      }
      if (!stop) setValues(out);
    };
    load();
    const t = window.setInterval(load, 15000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, []);
  const firing = alerts ? alerts.rules.flatMap((r) => r.alerts).filter((a) => a.phase === 'firing').length : null;
  return (
    <section class="cards" aria-label="Machine">
      {MACHINE.map((m) => {
        const v = values[m.key];
        return (
          <div class="card stat" data-testid={`machine-${m.key}`}>
            <span class="label">{m.label}</span>
            <span class={`value ${v != null && m.warn(v) ? 'warn' : ''}`}>{v === undefined ? '…' : v === null ? (m.key === 'throttling' ? 'not a Pi' : '—') : m.fmt(v)}</span>
            <a
              href="/dashboards"
              onClick={(e) => {
                e.preventDefault();
                navigate('/dashboards');
              }}
            >
              History
            </a>
          </div>
        );
      })}
      <div class="card stat" data-testid="machine-alerts">
        <span class="label">Alerts firing</span>
        <span class={`value ${firing ? 'warn' : 'ok'}`}>{firing === null ? '…' : firing}</span>
        <a
          href="/alerts"
          onClick={(e) => {
            e.preventDefault();
            navigate('/alerts');
          }}
        >
          Alerts
        </a>
      </div>
    </section>
  );
}
