// The Status page: hearth itself — overall state, every subsystem with its detail and restarts, the process
// (uptime, memory, CPU, the admin API's request rate) and the build. The dashboard shows only the summary.
import { Status as StatusData, TaskStatus } from '../api';
import { usePoll } from '../poll';
import { Chart } from '../chart';
import { ago, bytes, duration } from '../format';
import { Alert } from '../alert';

const REFRESH_MS = 5000;

/** Worst first: what the summary reports. `stopped` is a subsystem switched off on purpose. */
const SEVERITY: Record<string, number> = { failed: 4, degraded: 3, starting: 2, ready: 1, stopped: 0 };

/** The overall state, worded for a user: the worst subsystem's, naming the ones at that level. */
export function overall(subsystems: Record<string, TaskStatus>): { level: 'ok' | 'warn' | 'bad'; text: string; names: string[] } {
  const entries = Object.entries(subsystems);
  const worst = Math.max(0, ...entries.map(([, s]) => SEVERITY[s.state] ?? 0));
  const names = entries.filter(([, s]) => (SEVERITY[s.state] ?? 0) === worst).map(([n]) => n);
  if (worst >= 4) return { level: 'bad', text: `Not working: ${names.join(', ')}`, names };
  if (worst === 3) return { level: 'warn', text: `Needs attention: ${names.join(', ')}`, names };
  if (worst === 2) return { level: 'warn', text: `Starting: ${names.join(', ')}`, names };
  return { level: 'ok', text: 'Everything is working', names: [] };
}

export function Status() {
  const { data: status, error } = usePoll<StatusData>('/api/v1/status', REFRESH_MS);
  if (!status) return error ? <Alert>{error}</Alert> : <p aria-busy="true">Loading…</p>;
  const series = status.series;
  const times = series.map((s) => s.t);
  const last = series[series.length - 1];
  const subsystems = Object.entries(status.subsystems);
  const o = overall(status.subsystems);
  return (
    <>
      <Alert>{error && `Refresh failed: ${error}`}</Alert>
      <section class="cards" aria-label="Process">
        <div class="card stat">
          <span class="label">Status</span>
          <span class={`value ${o.level}`} data-testid="overall">
            {o.text}
          </span>
        </div>
        <div class="card stat">
          <span class="label">Uptime</span>
          <span class="value" data-testid="uptime">
            {duration(status.uptime_seconds)}
          </span>
        </div>
        <div class="card stat">
          <span class="label">Memory (RSS)</span>
          <span class="value" data-testid="memory">
            {bytes(status.process.rss_bytes)}
          </span>
        </div>
        <div class="card stat">
          <span class="label">CPU</span>
          <span class="value">{last ? `${last.cpu_percent.toFixed(1)} %` : '…'}</span>
        </div>
        <div class="card stat">
          <span class="label">Admin API requests</span>
          <span class="value" data-testid="rate">
            {last ? `${last.requests_per_second.toFixed(2)}/s` : '…'}
          </span>
          <span class="muted small">{status.http_requests_total} in total</span>
        </div>
      </section>

      <section class="card">
        <h2>Subsystems</h2>
        <table class="table" data-testid="subsystems">
          <thead>
            <tr>
              <th scope="col">Subsystem</th>
              <th scope="col">State</th>
              <th scope="col">Details</th>
              <th scope="col">Since</th>
              <th scope="col">Restarts</th>
            </tr>
          </thead>
          <tbody>
            {subsystems.map(([name, s]) => (
              <tr data-subsystem={name}>
                <th scope="row">{name}</th>
                <td data-label="State">
                  <span class={`badge ${s.state}`}>{s.state}</span>
                </td>
                <td data-label="Details" class="wrap">
                  {s.detail}
                  {s.last_error && <div class="error small">last error: {s.last_error}</div>}
                </td>
                <td data-label="Since">{ago(s.since)}</td>
                <td data-label="Restarts">{s.restarts}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>

      <section class="charts">
        <div class="card">
          <h2>Memory</h2>
          <Chart title="Resident memory" times={times} lines={[{ label: 'RSS', values: series.map((s) => s.rss_bytes), color: '#3b82f6' }]} format={bytes} />
        </div>
        <div class="card">
          <h2>Admin API request rate</h2>
          <Chart
            title="Admin API requests per second"
            times={times}
            lines={[{ label: 'requests/s', values: series.map((s) => s.requests_per_second), color: '#d9622b' }]}
            format={(v) => `${v.toFixed(1)}/s`}
          />
        </div>
      </section>
      <p class="muted small">
        hearth {status.version} · commit {status.commit} · built {status.build_date} · {status.process.threads} threads · {status.process.open_fds} open files ·
        refreshes every {REFRESH_MS / 1000}s
      </p>
    </>
  );
}
