// Pause blocking (AdGuard Home's "disable protection", Pi-hole's "disable blocking"): for 5 or 30 minutes or until
// resumed. One state for the navigation's switch and the dashboard's card: a change made in one shows in both.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, BlockingState } from './api';
import { Alert } from './alert';

let state: BlockingState | null = null;
const subscribers = new Set<(s: BlockingState | null) => void>();
function publish(s: BlockingState) {
  state = s;
  subscribers.forEach((f) => f(s));
}
async function load() {
  try {
    publish(await api<BlockingState>('GET', '/api/v1/dns/blocking'));
  } catch {
    /* shown as unknown */
  }
}

/** The blocking state, re-read every 30 s and when a timed pause should have ended. */
export function useBlocking(): BlockingState | null {
  const [s, set] = useState(state);
  const [, tick] = useState(0);
  useEffect(() => {
    subscribers.add(set);
    if (!state) load();
    const t = window.setInterval(() => {
      if (state?.paused_until && state.paused_until * 1000 <= Date.now()) load();
      else tick((n) => n + 1); // the countdown
    }, 1000);
    const slow = window.setInterval(load, 30_000);
    return () => {
      subscribers.delete(set);
      clearInterval(t);
      clearInterval(slow);
    };
  }, []);
  return s;
}

export async function setBlocking(enabled: boolean, minutes?: number): Promise<void> {
  publish(await api<BlockingState>('PUT', '/api/v1/dns/blocking', minutes === undefined ? { enabled } : { enabled, minutes }));
}

function left(until: number): string {
  const s = Math.max(0, Math.round(until - Date.now() / 1000));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}

/** "Blocking on" or "Paused (4:59 left)". */
export function blockingLabel(s: BlockingState | null): string {
  if (!s) return 'Blocking …';
  if (s.enabled) return 'Blocking on';
  return s.paused_until ? `Paused, ${left(s.paused_until)} left` : 'Paused until resumed';
}

const CHOICES: { label: string; minutes?: number }[] = [{ label: 'Pause 5 minutes', minutes: 5 }, { label: 'Pause 30 minutes', minutes: 30 }, { label: 'Pause until I resume' }];

/** The pause buttons (or Resume), with the error of the last try. */
export function PauseControls({ onDone }: { onDone?: () => void }) {
  const s = useBlocking();
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  async function run(enabled: boolean, minutes?: number) {
    setBusy(true);
    setError('');
    try {
      await setBlocking(enabled, minutes);
      onDone?.();
    } catch (e) {
      setError(`Blocking was not changed: ${(e as ApiError).message}`);
    } finally {
      setBusy(false);
    }
  }
  return (
    <div class="pause">
      {s && !s.enabled ? (
        <button type="button" onClick={() => run(true)} disabled={busy} data-testid="resume-blocking">
          Resume blocking
        </button>
      ) : (
        <div class="row" role="group" aria-label="Pause blocking for">
          {CHOICES.map((c) => (
            <button type="button" class="ghost" onClick={() => run(false, c.minutes)} disabled={busy || !s} data-pause={c.minutes ?? 'resume'}>
              {c.label}
            </button>
          ))}
        </div>
      )}
      <Alert>{error}</Alert>
    </div>
  );
}

/** The navigation's switch: the state, and a menu with the controls. */
export function PauseSwitch() {
  const s = useBlocking();
  const [open, setOpen] = useState(false);
  return (
    <details class="menu pause-switch" open={open} onToggle={(e) => setOpen((e.currentTarget as HTMLDetailsElement).open)}>
      <summary class={s && !s.enabled ? 'paused' : undefined} data-testid="blocking-switch">
        <span class={`dot ${s && !s.enabled ? 'unknown' : 'ok'}`} aria-hidden="true" /> {blockingLabel(s)}
      </summary>
      <div class="menu-body">
        <PauseControls onDone={() => setOpen(false)} />
      </div>
    </details>
  );
}
