// Traces: the ring of recent requests hearth traced (the admin API and every proxied request), newest, errored or
// slowest first; a click shows the trace as a span tree on a time line (Jaeger's view, without Jaeger). Reads
// `/api/v1/traces`.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { usePoll } from '../poll';
import { Alert } from '../alert';

interface TraceSummary {
  trace_id: string;
  root: string;
  method?: string | null;
  path?: string | null;
  host?: string | null;
  status?: string | null;
  request_id?: string | null;
  start_ms: number;
  duration_ms: number;
  spans: number;
  error: boolean;
  sampled: boolean;
}
interface TraceList {
  traces: TraceSummary[];
  exported: number;
  dropped: number;
  failed: number;
  queued: number;
  abandoned: number;
}
interface SpanView {
  span_id: string;
  parent_id: string;
  name: string;
  offset_ms: number;
  duration_ms: number;
  attributes: [string, string][];
  error: boolean;
}
interface TraceDetail extends TraceSummary {
  span_list: SpanView[];
  dropped_spans: number;
}

const SHOW: [string, string][] = [
  ['recent', 'Recent'],
  ['errors', 'Errors'],
  ['slow', 'Slowest'],
];

function ms(v: number): string {
  if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
  if (v >= 10) return `${v.toFixed(0)} ms`;
  return `${v.toFixed(2)} ms`;
}

function when(msSinceEpoch: number): string {
  return new Date(msSinceEpoch).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** Spans in tree order (a parent before its children, siblings by start) with their depth. */
export function treeOrder(spans: SpanView[]): [SpanView, number][] {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map<string, SpanView[]>();
  const roots: SpanView[] = [];
  for (const s of spans) {
    if (s.parent_id && ids.has(s.parent_id)) {
      const c = children.get(s.parent_id) ?? [];
      c.push(s);
      children.set(s.parent_id, c);
    } else roots.push(s);
  }
  const out: [SpanView, number][] = [];
  const walk = (s: SpanView, depth: number) => {
    out.push([s, depth]);
    for (const c of (children.get(s.span_id) ?? []).sort((a, b) => a.offset_ms - b.offset_ms)) walk(c, depth + 1);
  };
  for (const r of roots.sort((a, b) => a.offset_ms - b.offset_ms)) walk(r, 0);
  return out;
}

function Waterfall({ t }: { t: TraceDetail }) {
  const [open, setOpen] = useState<string | null>(null);
  const total = Math.max(t.duration_ms, ...t.span_list.map((s) => s.offset_ms + s.duration_ms), 0.001);
  return (
    <div class="waterfall" role="table" aria-label="Spans of the trace">
      {treeOrder(t.span_list).map(([s, depth]) => (
        <div key={s.span_id} role="row">
          <button type="button" class="span-row link" aria-expanded={open === s.span_id} onClick={() => setOpen(open === s.span_id ? null : s.span_id)}>
            <span class="span-name" style={{ paddingLeft: `${depth * 1.1}em` }}>
              {s.error && <span class="badge failed">error</span>} {s.name}
            </span>
            <span class="span-track">
              <span
                class={`span-bar${s.error ? ' error' : ''}`}
                style={{ left: `${(100 * s.offset_ms) / total}%`, width: `${Math.max(0.5, (100 * s.duration_ms) / total)}%` }}
              />
            </span>
            <span class="span-time small muted">{ms(s.duration_ms)}</span>
          </button>
          {open === s.span_id && (
            <table class="compact small span-attrs">
              <tbody>
                <tr>
                  <th>span</th>
                  <td class="mono">{s.span_id}</td>
                </tr>
                <tr>
                  <th>starts at</th>
                  <td>+{ms(s.offset_ms)}</td>
                </tr>
                {s.attributes.map(([k, v]) => (
                  <tr key={k}>
                    <th>{k}</th>
                    <td class="mono">{v}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
      ))}
      {t.dropped_spans > 0 && <p class="muted small">{t.dropped_spans} more spans were not kept.</p>}
    </div>
  );
}

export function Traces() {
  const [show, setShow] = useState('recent');
  const list = usePoll<TraceList>(`/api/v1/traces?show=${show}&limit=100`, 5000);
  // `/traces?trace=<id>` (from the Proxy page's access log) opens that trace
  const [picked, setPicked] = useState<string | null>(new URLSearchParams(location.search).get('trace'));
  const [detail, setDetail] = useState<TraceDetail | null>(null);
  const [error, setError] = useState('');

  useEffect(() => {
    if (!picked) return setDetail(null);
    (async () => {
      try {
        setDetail(await api<TraceDetail>('GET', `/api/v1/traces/${picked}`));
        setError('');
      } catch (e) {
        setDetail(null);
        setError(e instanceof ApiError ? e.message : String(e));
      }
    })();
  }, [picked]);

  const l = list.data;
  return (
    <div class="page traces">
      <section class="card">
        <div class="row" role="group" aria-label="Which traces">
          {SHOW.map(([k, label]) => (
            <button key={k} type="button" class={show === k ? 'primary' : ''} aria-pressed={show === k} onClick={() => setShow(k)}>
              {label}
            </button>
          ))}
        </div>
        <Alert>{list.error}</Alert>
        {!l ? (
          <p class="muted">Loading…</p>
        ) : l.traces.length === 0 ? (
          <p class="muted">No traced request yet: open a proxied site or a page of this UI.</p>
        ) : (
          <table class="compact traces-list">
            <thead>
              <tr>
                <th>Time</th>
                <th>Request</th>
                <th>Status</th>
                <th class="num">Duration</th>
                <th class="num">Spans</th>
              </tr>
            </thead>
            <tbody>
              {l.traces.map((t) => (
                <tr key={t.trace_id} class={picked === t.trace_id ? 'selected' : ''}>
                  <td class="nowrap muted small">{when(t.start_ms)}</td>
                  <td>
                    <a href="#" onClick={(e) => { e.preventDefault(); setPicked(t.trace_id); }} title={`trace ${t.trace_id}`}>
                      {t.method ?? t.root} {t.host ? `${t.host}` : ''}
                      {t.path ?? ''}
                    </a>{' '}
                    <span class="muted small">{t.root}</span>
                  </td>
                  <td>
                    {t.error ? <span class="badge failed">{t.status ?? 'error'}</span> : <span class="badge ready">{t.status ?? 'ok'}</span>}
                  </td>
                  <td class="num">{ms(t.duration_ms)}</td>
                  <td class="num">{t.spans}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <Alert>{error}</Alert>
      {detail && (
        <section class="card" aria-label="Trace">
          <h2>
            {detail.method ?? detail.root} {detail.host ?? ''}
            {detail.path ?? ''} — {ms(detail.duration_ms)}
          </h2>
          <p class="muted small">
            trace <span class="mono">{detail.trace_id}</span>
            {detail.request_id ? (
              <>
                {' '}· request id <span class="mono">{detail.request_id}</span>
              </>
            ) : null}
            {detail.sampled ? ' · sampled (exported when an OTLP endpoint is set)' : ' · not sampled'}
          </p>
          <Waterfall t={detail} />
        </section>
      )}
      {l && (
        <p class="muted small">
          Spans exported {l.exported}
          {l.dropped ? `, dropped ${l.dropped} (the collector was slow or down)` : ''}
          {l.failed ? `, refused ${l.failed}` : ''}
          {l.queued ? `, waiting ${l.queued}` : ''}. Export to Jaeger, Tempo or any OpenTelemetry collector with{' '}
          <code>[tracing] otlp_endpoint</code> in Settings.
        </p>
      )}
    </div>
  );
}
