// Alerts: what is firing or pending (with a one-click silence), every rule and its state, the channels with
// "Send test", silences (create with label matchers and a duration; end), and the history.
import { useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { usePoll } from '../poll';
import { ago, date, duration } from '../format';
import { Alert, Note, Message } from '../alert';

type Labels = Record<string, string>;
interface ActiveAlert {
  rule: string;
  labels: Labels;
  phase: 'pending' | 'firing';
  since_ms: number;
  fired_ms?: number | null;
  value: number;
  summary: string;
}
interface Rule {
  name: string;
  expr: string;
  language: 'promql' | 'logql';
  for_seconds: number;
  severity: string;
  summary: string;
  builtin: boolean;
  state: 'inactive' | 'pending' | 'firing';
  error?: string | null;
  alerts: ActiveAlert[];
}
interface Matcher {
  name: string;
  value: string;
  regex: boolean;
}
interface SilenceView {
  id: number;
  matchers: Matcher[];
  until_ms: number;
  comment: string;
  created_by: string;
}
interface ChannelView {
  name: string;
  kind: string;
  send_resolved: boolean;
  min_severity: string;
  status: { last_ok_ms?: number | null; last_error?: string | null; last_error_ms?: number | null };
  queued: number;
}
interface Overview {
  enabled: boolean;
  rules: Rule[];
  silences: SilenceView[];
  channels: ChannelView[];
}
interface HistoryEntry {
  ts_ms: number;
  kind: string;
  rule: string;
  labels: Labels;
  summary: string;
  silenced: boolean;
}

function labelText(l: Labels): string {
  return Object.entries(l)
    .filter(([k]) => k !== 'alertname' && k !== 'severity')
    .map(([k, v]) => `${k}="${v}"`)
    .join(', ');
}

function Badge({ state }: { state: string }) {
  const cls = state === 'firing' ? 'failed' : state === 'pending' ? 'degraded' : state === 'resolved' ? 'ready' : 'stopped';
  return <span class={`badge ${cls}`}>{state}</span>;
}

function SilenceForm({ initial, onDone }: { initial: Matcher[]; onDone: () => void }) {
  const [matchers, setMatchers] = useState<Matcher[]>(initial.length ? initial : [{ name: 'alertname', value: '', regex: false }]);
  const [minutes, setMinutes] = useState(120);
  const [comment, setComment] = useState('');
  const [error, setError] = useState('');
  const set = (i: number, m: Partial<Matcher>) => setMatchers(matchers.map((x, j) => (j === i ? { ...x, ...m } : x)));
  return (
    <form
      class="card silence-form"
      aria-label="New silence"
      onSubmit={async (e) => {
        e.preventDefault();
        try {
          await api('POST', '/api/v1/alerts/silences', { matchers, minutes, comment });
          onDone();
        } catch (err) {
          setError((err as ApiError).message);
        }
      }}
    >
      <h3>New silence</h3>
      <p class="muted small">Alerts whose labels match every line are still tracked and shown, but nobody is notified.</p>
      {matchers.map((m, i) => (
        <div class="row matcher">
          <label>
            Label <input value={m.name} onInput={(e) => set(i, { name: (e.target as HTMLInputElement).value })} />
          </label>
          <label>
            Value <input value={m.value} onInput={(e) => set(i, { value: (e.target as HTMLInputElement).value })} />
          </label>
          <label class="check">
            <input type="checkbox" checked={m.regex} onChange={(e) => set(i, { regex: (e.target as HTMLInputElement).checked })} /> regex
          </label>
          <button type="button" class="link" aria-label={`Remove matcher ${i + 1}`} onClick={() => setMatchers(matchers.filter((_, j) => j !== i))}>
            ✕
          </button>
        </div>
      ))}
      <button type="button" onClick={() => setMatchers([...matchers, { name: '', value: '', regex: false }])}>
        Add a matcher
      </button>
      <div class="row">
        <label>
          For{' '}
          <select value={minutes} onChange={(e) => setMinutes(Number((e.target as HTMLSelectElement).value))}>
            <option value={60}>1 hour</option>
            <option value={120}>2 hours</option>
            <option value={720}>12 hours</option>
            <option value={1440}>1 day</option>
            <option value={10080}>1 week</option>
          </select>
        </label>
        <label>
          Comment <input value={comment} onInput={(e) => setComment((e.target as HTMLInputElement).value)} />
        </label>
      </div>
      <Alert>{error}</Alert>
      <button class="primary" type="submit">
        Silence
      </button>{' '}
      <button type="button" onClick={onDone}>
        Cancel
      </button>
    </form>
  );
}

export function Alerts() {
  const [tick, setTick] = useState(0);
  const { data, error } = usePoll<Overview>(`/api/v1/alerts?r=${tick}`, 10000);
  const hist = usePoll<HistoryEntry[]>(`/api/v1/alerts/history?limit=50&r=${tick}`, 30000);
  const [silencing, setSilencing] = useState<Matcher[] | null>(null);
  const [notice, setNotice] = useState<Message>(null);
  const refresh = () => setTick(tick + 1);
  if (error) return <Alert>{error}</Alert>;
  if (!data) return <p class="muted">Loading…</p>;
  const active = data.rules.flatMap((r) => r.alerts.map((a) => ({ ...a, severity: r.severity })));
  return (
    <div class="alerts-page">
      {!data.enabled && <p class="muted">Alerts are off (alerts.enabled = false): rules are not evaluated.</p>}
      <Note m={notice} />
      <section class="card">
        <h2>Now</h2>
        {active.length === 0 ? (
          <p class="muted">Nothing is firing or pending.</p>
        ) : (
          <table class="compact" data-testid="active-alerts">
            <thead>
              <tr>
                <th>Alert</th>
                <th>State</th>
                <th>Since</th>
                <th>Summary</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {active.map((a) => (
                <tr>
                  <td>
                    <strong>{a.rule}</strong>
                    <div class="small muted mono">{labelText(a.labels)}</div>
                  </td>
                  <td>
                    <Badge state={a.phase} /> <span class="small muted">{a.severity}</span>
                  </td>
                  <td class="small">{ago((a.fired_ms ?? a.since_ms) / 1000)}</td>
                  <td class="small">{a.summary}</td>
                  <td>
                    <button type="button" onClick={() => setSilencing(Object.entries(a.labels).filter(([k]) => k !== 'severity').map(([name, value]) => ({ name, value, regex: false })))}>
                      Silence
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      {silencing && (
        <SilenceForm
          initial={silencing}
          onDone={() => {
            setSilencing(null);
            refresh();
          }}
        />
      )}
      <section class="card">
        <h2>Channels</h2>
        {data.channels.length === 0 ? (
          <p class="muted small">
            No channel yet: add one to hearth.toml as <code>[[alerts.channels]]</code> with a <code>name</code> and a <code>url</code> such as <code>ntfy://ntfy.sh/your-topic</code>,{' '}
            <code>gotify://host/TOKEN</code>, <code>discord://TOKEN@ID</code>, e-mail <code>smtp://user:pass@mail.host/?from=…&amp;to=…</code> or an
            Alertmanager webhook <code>https://…</code>.
          </p>
        ) : (
          <table class="compact">
            <thead>
              <tr>
                <th>Channel</th>
                <th>Last delivery</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {data.channels.map((c) => (
                <tr>
                  <td>
                    {c.name} <span class="small muted">{c.kind} · {c.min_severity}+</span>
                  </td>
                  <td class="small">
                    {c.status.last_ok_ms ? `ok ${ago(c.status.last_ok_ms / 1000)}` : 'never'}
                    {c.status.last_error && (
                      <div class="error">
                        {c.status.last_error} ({ago((c.status.last_error_ms ?? 0) / 1000)})
                      </div>
                    )}
                    {c.queued > 0 && <div class="muted">{c.queued} notice(s) waiting to be retried</div>}
                  </td>
                  <td>
                    <button
                      type="button"
                      onClick={async () => {
                        try {
                          await api('POST', `/api/v1/alerts/channels/${encodeURIComponent(c.name)}/test`);
                          setNotice({ error: false, text: `${c.name}: the test notice was delivered.` });
                        } catch (e) {
                          setNotice({ error: true, text: `${c.name}: ${(e as ApiError).message}` });
                        }
                        refresh();
                      }}
                    >
                      Send test
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section class="card">
        <h2>Silences</h2>
        {data.silences.length === 0 ? (
          <p class="muted small">None active.</p>
        ) : (
          <table class="compact">
            <tbody>
              {data.silences.map((s) => (
                <tr>
                  <td class="mono small">{s.matchers.map((m) => `${m.name}${m.regex ? '=~' : '='}"${m.value}"`).join(', ')}</td>
                  <td class="small">until {date(s.until_ms / 1000)}</td>
                  <td class="small muted">
                    {s.comment} ({s.created_by})
                  </td>
                  <td>
                    <button
                      type="button"
                      onClick={async () => {
                        await api('DELETE', `/api/v1/alerts/silences/${s.id}`);
                        refresh();
                      }}
                    >
                      End
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {!silencing && (
          <button type="button" onClick={() => setSilencing([])}>
            New silence
          </button>
        )}
      </section>
      <section class="card">
        <h2>Rules</h2>
        <table class="compact rules">
          <thead>
            <tr>
              <th>Rule</th>
              <th>State</th>
              <th>Expression</th>
            </tr>
          </thead>
          <tbody>
            {data.rules.map((r) => (
              <tr>
                <td>
                  {r.name}
                  <div class="small muted">
                    {r.severity}
                    {r.for_seconds > 0 && ` · for ${duration(r.for_seconds)}`}
                    {r.builtin && ' · built-in'}
                    {r.language === 'logql' && ' · over the logs (LogQL)'}
                  </div>
                </td>
                <td>
                  <Badge state={r.state} />
                  {r.error && <div class="error small">{r.error}</div>}
                </td>
                <td class="mono small expr">{r.expr}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section class="card">
        <h2>History</h2>
        {!hist.data || hist.data.length === 0 ? (
          <p class="muted small">No alert has fired yet.</p>
        ) : (
          <table class="compact">
            <tbody>
              {hist.data.map((h) => (
                <tr>
                  <td class="small">{date(h.ts_ms / 1000)}</td>
                  <td>
                    <Badge state={h.kind} />
                    {h.silenced && <span class="small muted"> silenced</span>}
                  </td>
                  <td>
                    {h.rule} <span class="small muted mono">{labelText(h.labels)}</span>
                  </td>
                  <td class="small">{h.summary}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </div>
  );
}
