// The block-list catalog (GET /api/v1/dns/catalog): well-known lists with what they block, their size and
// licence. In the wizard the lists are ticked (the recommended one already is) and added together; on the lists
// page, and in its empty state, each has its own Add button.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, CatalogEntry } from './api';
import { Alert } from './alert';
import { refetchConfig } from './config';

function size(n: number): string {
  return n >= 1000 ? `≈ ${Math.round(n / 1000)}k domains` : `≈ ${n} domains`;
}

export function useCatalog(): { entries: CatalogEntry[] | null; error: string; reload: () => void } {
  const [entries, setEntries] = useState<CatalogEntry[] | null>(null);
  const [error, setError] = useState('');
  const reload = () =>
    api<CatalogEntry[]>('GET', '/api/v1/dns/catalog')
      .then((e) => {
        setEntries(e);
        setError('');
      })
      .catch((e: ApiError) => setError(`The catalog could not be read: ${e.message}`));
  useEffect(() => {
    reload();
  }, []);
  return { entries, error, reload };
}

/** Add one catalog list (the new one downloads in the background); the shared configuration is re-read, as the
 *  change went past it. */
export async function addFromCatalog(id: string): Promise<void> {
  try {
    await api('POST', `/api/v1/dns/catalog/${encodeURIComponent(id)}`);
  } finally {
    refetchConfig();
  }
}

function Description({ e }: { e: CatalogEntry }) {
  return (
    <span class="muted small">
      {e.description} {size(e.approx_domains)} · {e.licence} ·{' '}
      <a href={e.url} target="_blank" rel="noreferrer noopener">
        source
      </a>
    </span>
  );
}

/** The wizard's form: tick lists; `chosen` holds the ticked ids (the recommended one ticked by the caller). */
export function CatalogPicker({ entries, chosen, setChosen }: { entries: CatalogEntry[]; chosen: string[]; setChosen: (ids: string[]) => void }) {
  return (
    <ul class="catalog" aria-label="Block lists">
      {entries.map((e) => (
        <li data-catalog={e.id}>
          <label class="check">
            <input
              type="checkbox"
              checked={e.added || chosen.includes(e.id)}
              disabled={e.added}
              onChange={(ev) => setChosen(ev.currentTarget.checked ? [...chosen, e.id] : chosen.filter((c) => c !== e.id))}
            />
            <span>
              <strong>{e.name}</strong>
              {e.recommended && <span class="badge ready">recommended</span>}
              {e.added && <span class="badge stopped">added</span>}
            </span>
          </label>
          <Description e={e} />
        </li>
      ))}
    </ul>
  );
}

/** The lists page's catalog: an Add button per list; `onAdded` refreshes the page's lists. */
export function CatalogAdd({ onAdded }: { onAdded: () => void }) {
  const { entries, error, reload } = useCatalog();
  const [busy, setBusy] = useState('');
  const [failed, setFailed] = useState('');
  async function add(e: CatalogEntry) {
    setBusy(e.id);
    setFailed('');
    try {
      await addFromCatalog(e.id);
      reload();
      onAdded();
    } catch (err) {
      setFailed(`${e.name} was not added: ${(err as ApiError).message}`);
    } finally {
      setBusy('');
    }
  }
  if (!entries) return error ? <Alert>{error}</Alert> : <p aria-busy="true">Loading the catalog…</p>;
  return (
    <>
      <Alert>{failed || error}</Alert>
      <ul class="catalog" aria-label="Block-list catalog">
        {entries.map((e) => (
          <li data-catalog={e.id}>
            <div class="row between">
              <span>
                <strong>{e.name}</strong> {e.recommended && <span class="badge ready">recommended</span>}
              </span>
              {e.added ? (
                <span class="badge stopped">added</span>
              ) : (
                <button type="button" onClick={() => add(e)} disabled={!!busy} aria-label={`Add ${e.name}`}>
                  {busy === e.id ? 'Adding…' : 'Add'}
                </button>
              )}
            </div>
            <Description e={e} />
          </li>
        ))}
      </ul>
    </>
  );
}
