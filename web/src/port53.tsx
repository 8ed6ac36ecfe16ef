import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, ResolvedView } from './api';
import { Alert } from './alert';

// Port 53 and systemd-resolved: resolved's stub listener (127.0.0.53:53) keeps hearth's DNS off port 53 on
// Ubuntu-like systems. hearth changes nothing without the admin's click; the change is a drop-in, undone here too.

export function Port53({ onlyWhenBlocked = false }: { onlyWhenBlocked?: boolean }) {
  const [state, setState] = useState<ResolvedView | null>(null);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const load = () =>
    api<ResolvedView>('GET', '/api/v1/system/resolved')
      .then(setState)
      .catch((e: ApiError) => setError(e.message));
  useEffect(() => {
    load();
  }, []);
  // while the root helper works (it restarts resolved, then hearth), check again every 2 s
  useEffect(() => {
    if (!state?.pending) return;
    const t = setTimeout(load, 2000);
    return () => clearTimeout(t);
  }, [state]);

  async function change(action: 'disable_stub' | 'restore') {
    setBusy(true);
    setError('');
    try {
      setState(await api<ResolvedView>('POST', '/api/v1/system/resolved', { action }));
    } catch (e) {
      setError((e as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  if (!state) return error && !onlyWhenBlocked ? <Alert>{error}</Alert> : null;
  const blocked = state.stub_listening && state.dns_on_port_53;
  if (onlyWhenBlocked && !blocked && !state.pending) return null;
  return (
    <section class="card" aria-label="Port 53">
      <h2>Port 53 and systemd-resolved</h2>
      {!state.resolved && <p>systemd-resolved is not running on this machine: port 53 is hearth's.</p>}
      {state.resolved && blocked && (
        <Alert>
          systemd-resolved's stub listener answers on 127.0.0.53:53, so hearth cannot serve DNS on port 53. hearth can
          turn the stub off: it writes <code>/etc/systemd/resolved.conf.d/hearth.conf</code> (
          <code>DNSStubListener=no</code>, <code>DNS=127.0.0.1</code>), points <code>/etc/resolv.conf</code> at resolved's
          full list, and restarts systemd-resolved and then hearth. This machine's own lookups then go through hearth.
          You can undo it here at any time (or with <code>hearth system resolved-stub restore</code>).
        </Alert>
      )}
      {state.resolved && !blocked && state.changed_by_hearth && (
        <p>hearth turned systemd-resolved's stub listener off (with your consent); undo it to put things back as they were.</p>
      )}
      {state.resolved && !blocked && !state.changed_by_hearth && (
        <p>systemd-resolved runs without a stub listener in hearth's way.</p>
      )}
      {state.pending && (
        <p role="status" aria-busy="true">
          Waiting for the system helper (<code>hearth-resolved.service</code>) to carry out “{state.pending}”…
        </p>
      )}
      {state.last_result && <p class="muted small">Last change: {state.last_result}</p>}
      <Alert>{error}</Alert>
      <div class="row">
        {state.resolved && !state.changed_by_hearth && (
          <button disabled={busy || !!state.pending} onClick={() => change('disable_stub')}>
            Free port 53 for hearth
          </button>
        )}
        {state.changed_by_hearth && (
          <button class="ghost" disabled={busy || !!state.pending} onClick={() => change('restore')}>
            Undo: give port 53 back to systemd-resolved
          </button>
        )}
      </div>
    </section>
  );
}
