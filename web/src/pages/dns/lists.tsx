import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, ListView } from '../../api';
import { FieldError, FieldProblem, Message, Note, problemOf } from '../../alert';
import { editConfig } from '../../config';
import { ago } from '../../format';
import { CatalogAdd } from '../../catalog';

// Block and allow lists: counts, errors and downloads from the API; changes go through the config (validated,
// applied live, written to hearth.toml).

interface ListConfig {
  name: string;
  kind: string;
  source: string;
  enabled: boolean;
  update: string;
}

const mb = (n: number) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.round(n / 1024)} KB`);

export function Lists() {
  const [lists, setLists] = useState<ListView[] | null>(null);
  const [message, setMessage] = useState<Message>(null);
  const [busy, setBusy] = useState(false);
  const [form, setForm] = useState({ name: '', kind: 'block', source: '' });

  const load = () =>
    api<ListView[]>('GET', '/api/v1/dns/lists')
      .then(setLists)
      .catch((e: ApiError) => setMessage({ text: e.message, error: true }));
  useEffect(() => {
    load();
  }, []);
  // follow downloads started in the background (a new URL list, the schedule) until they finish
  useEffect(() => {
    if (!lists?.some((l) => l.download?.result === 'downloading')) return;
    const t = setTimeout(load, 500);
    return () => clearTimeout(t);
  }, [lists]);

  // apply a change to the configured lists (the whole array: RFC 7396 replaces arrays)
  async function change(edit: (ls: ListConfig[]) => ListConfig[], done: string): Promise<boolean> {
    setBusy(true);
    setMessage(null);
    try {
      await editConfig((c) => ({ dns: { lists: edit((c.dns.lists ?? []) as ListConfig[]) } }));
      setMessage({ text: done, error: false });
      // the DNS subsystem recompiles (and downloads new URL lists) in the background
      setTimeout(load, 700);
      return true;
    } catch (e) {
      setMessage({ text: (e as ApiError).message, error: true });
      load();
      return false;
    } finally {
      setBusy(false);
    }
  }

  // a refusal of the new list (`dns.lists[5].source`) is shown next to its field, in words
  const [fieldError, setFieldError] = useState<FieldProblem>(null);
  async function add(e: Event) {
    e.preventDefault();
    setFieldError(null);
    const item = { name: form.name.trim(), kind: form.kind, source: form.source.trim(), enabled: true, update: '24h' };
    setBusy(true);
    setMessage(null);
    try {
      await editConfig((c) => ({ dns: { lists: [...((c.dns.lists ?? []) as ListConfig[]), item] } }));
      setMessage({ text: `Added “${item.name}”.`, error: false });
      setForm({ name: '', kind: 'block', source: '' });
      setTimeout(load, 700);
    } catch (err) {
      // what was typed stays, to be corrected
      const ae = err as ApiError;
      const field = ae.key ? /^dns\.lists\[\d+\]\.(name|kind|source)/.exec(ae.key)?.[1] : undefined;
      if (field) setFieldError(problemOf(ae, field));
      else setMessage({ text: ae.message, error: true });
    } finally {
      setBusy(false);
    }
  }
  const note = (k: string) => <FieldError problem={fieldError} field={k} />;
  const invalid = (k: string) => (fieldError?.field === k ? true : undefined);

  async function updateNow() {
    setBusy(true);
    // show download progress while the update runs
    const poll = setInterval(load, 500);
    try {
      const done = await api<ListView[]>('POST', '/api/v1/dns/lists/update');
      clearInterval(poll);
      setLists(done);
      setMessage({ text: 'Checked every URL list.', error: false });
    } catch (e) {
      setMessage({ text: (e as ApiError).message, error: true });
    } finally {
      clearInterval(poll);
      setBusy(false);
    }
  }

  return (
    <section class="card">
      <div class="row" style={{ justifyContent: 'space-between', alignItems: 'center' }}>
        <h2>Block and allow lists</h2>
        <button type="button" class="ghost" onClick={updateNow} disabled={busy}>
          Update now
        </button>
      </div>
      <Note m={message} />
      {lists === null ? (
        <p>Loading…</p>
      ) : lists.length === 0 ? (
        <p class="muted" data-testid="no-lists">
          Nothing is blocked yet: no lists. Pick one from the catalog below (the recommended one is a safe start), or add your own hosts file, domain list
          or adblock-style list.
        </p>
      ) : (
        <table class="table log" data-testid="lists">
          <thead>
            <tr>
              <th scope="col">On</th>
              <th scope="col">Name</th>
              <th scope="col">Kind</th>
              <th scope="col">Source</th>
              <th scope="col">Rules</th>
              <th scope="col">Status</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {lists.map((l) => (
              <tr data-list={l.name}>
                <td data-label="On">
                  <input
                    type="checkbox"
                    checked={l.enabled}
                    disabled={busy}
                    aria-label={`Use ${l.name}`}
                    onChange={(e) => {
                      const on = e.currentTarget.checked;
                      // show the new state at once; the reload after the change confirms it (or an error restores it)
                      setLists(lists.map((x) => (x.name === l.name ? { ...x, enabled: on } : x)));
                      change((ls) => ls.map((x) => (x.name === l.name ? { ...x, enabled: on } : x)), `${on ? 'Enabled' : 'Disabled'} “${l.name}”.`);
                    }}
                  />
                </td>
                <th scope="row">{l.name}</th>
                <td data-label="Kind">{l.kind}</td>
                <td data-label="Source" class="name small">
                  {l.source}
                </td>
                <td data-label="Rules">
                  {l.counts ? l.counts.rules : '—'}
                  {l.counts && l.counts.invalid > 0 && (
                    <div class="muted small" title={l.counts.examples.map(([n, why]) => `line ${n}: ${why}`).join('\n')}>
                      {l.counts.invalid === 1 ? '1 line skipped' : `${l.counts.invalid} lines skipped`}
                    </div>
                  )}
                </td>
                <td data-label="Status" class="small">
                  {l.error ? <span class="error">{l.error}</span> : l.enabled ? 'in use' : 'off'}
                  {l.download && l.download.result === 'downloading' ? (
                    <div class="muted" data-testid={`progress-${l.name}`}>
                      downloading {mb(l.download.received_bytes ?? 0)}
                      {l.download.total_bytes ? ` of ${mb(l.download.total_bytes)}` : ''}
                      {l.download.total_bytes ? (
                        <progress max={l.download.total_bytes} value={l.download.received_bytes ?? 0} style={{ display: 'block', width: '100%' }} />
                      ) : null}
                    </div>
                  ) : (
                    l.download && (
                      <div class={l.download.ok ? 'muted' : 'error'}>
                        download: {l.download.result}, {ago(l.download.last_attempt)}
                      </div>
                    )
                  )}
                </td>
                <td>
                  <button
                    type="button"
                    class="danger ghost"
                    disabled={busy}
                    aria-label={`Remove ${l.name}`}
                    onClick={() => confirm(`Remove the list “${l.name}”?`) && change((ls) => ls.filter((x) => x.name !== l.name), `Removed “${l.name}”.`)}
                  >
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <details class="catalog-box" open={lists !== null && lists.length === 0}>
        <summary>Add from the catalog</summary>
        <CatalogAdd onAdded={() => setTimeout(load, 300)} />
      </details>
      <h3>Add your own list</h3>
      <form class="filters" onSubmit={add}>
        <label>
          Name
          <input
            name="list-name"
            value={form.name}
            onInput={(e) => setForm({ ...form, name: e.currentTarget.value })}
            required
            maxLength={64}
            aria-invalid={invalid('name')}
          />
          {note('name')}
        </label>
        <label>
          Kind
          <select name="list-kind" value={form.kind} onChange={(e) => setForm({ ...form, kind: e.currentTarget.value })}>
            <option value="block">block</option>
            <option value="allow">allow</option>
          </select>
        </label>
        <label class="grow">
          Source (URL or file path)
          <input
            name="list-source"
            value={form.source}
            onInput={(e) => setForm({ ...form, source: e.currentTarget.value })}
            placeholder="https://…/hosts.txt"
            required
            aria-invalid={invalid('source')}
          />
          {note('source')}
        </label>
        <button type="submit" disabled={busy}>
          Add list
        </button>
      </form>
    </section>
  );
}
