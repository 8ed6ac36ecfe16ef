// The running configuration, shared by every panel that shows or edits it: one GET for all of them, and every
// change sent as an RFC 7396 merge patch with the ETag of the configuration it was made from (If-Match), so that
// an edit made on a stale view (another tab, another admin) is refused (412) instead of overwriting theirs.
// Without an ETag from the server the edits work as before: read the newest configuration, patch it.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, ConfigChange, ConfigView, request } from './api';
import type { Message } from './alert';

const PATH = '/api/v1/config';
/** A merge patch is sent as JSON (what the pages always sent; hearth reads any JSON media type). */
const PATCH_TYPE = 'application/json';
export const STALE =
  'The configuration changed in another tab or by another admin; reload to see the current settings';

interface Shared {
  view: ConfigView | null;
  /** The ETag of `view` as the server sent it (null: the server sends none). */
  etag: string | null;
  error: string;
}
let shared: Shared = { view: null, etag: null, error: '' };
const subscribers = new Set<(s: Shared) => void>();
/** Bumped by every change; a GET started before one does not overwrite what it brought. */
let version = 0;
let inflight: { version: number; done: Promise<void> } | null = null;

function publish(next: Partial<Shared>) {
  shared = { ...shared, ...next };
  subscribers.forEach((f) => f(shared));
}

function viewOf(c: ConfigChange): ConfigView {
  return { config: c.config, path: c.path, file_exists: c.file_exists };
}

/** GET the configuration (one request at a time for all panels). */
export function refetchConfig(): Promise<void> {
  if (inflight && inflight.version === version) return inflight.done;
  const v = version;
  const done = request<ConfigView>('GET', PATH)
    .then(
      ({ data, headers }) => {
        const etag = headers.get('ETag');
        // an unchanged answer keeps the same object: panels do not re-render or refill their forms
        if (v === version && (etag !== shared.etag || shared.error || JSON.stringify(data) !== JSON.stringify(shared.view)))
          publish({ view: data, etag, error: '' });
      },
      (e: ApiError) => {
        if (v === version) publish({ error: e.message });
      },
    )
    .finally(() => {
      if (inflight?.done === done) inflight = null;
    });
  inflight = { version: v, done };
  return done;
}

/** A changed configuration as a PATCH or reload answered it; an answer without an ETag is followed by a GET for it. */
async function changed(c: ConfigChange, etag: string | null) {
  const had = shared.etag;
  version++;
  publish({ view: viewOf(c), etag, error: '' });
  if (!etag && had) await refetchConfig();
}

/** Send a merge patch made from the configuration as shown; 412 (changed meanwhile) refetches and says so. */
export async function patchConfig(patch: unknown): Promise<ConfigChange> {
  const headers: Record<string, string> = { 'Content-Type': PATCH_TYPE };
  if (shared.etag) headers['If-Match'] = shared.etag;
  try {
    const { data, headers: h } = await request<ConfigChange>('PATCH', PATH, patch, headers);
    await changed(data, h.get('ETag'));
    return data;
  } catch (e) {
    if (e instanceof ApiError && e.status === 412) {
      refetchConfig();
      throw new ApiError(412, e.code, STALE, e.id, e.key);
    }
    throw e;
  }
}

/** Make a patch from the configuration (the one shown when the server sends ETags, else the newest) and send it. */
export async function editConfig(make: (config: any) => unknown): Promise<ConfigChange> {
  if (!shared.etag || !shared.view) await refetchConfig();
  if (!shared.view) throw new ApiError(0, 'config', shared.error || 'The configuration could not be read.');
  return patchConfig(make(shared.view.config));
}

/** Re-read hearth.toml (like SIGHUP). */
export async function reloadConfigFile(): Promise<ConfigChange> {
  const { data, headers } = await request<ConfigChange>('POST', PATH + '/reload');
  await changed(data, headers.get('ETag'));
  return data;
}

/** The running configuration (loaded on mount, shared and kept current across panels). */
export function useConfig(): { view: ConfigView | null; config: any; error: string; reload: () => Promise<void> } {
  const [s, set] = useState(shared);
  useEffect(() => {
    subscribers.add(set);
    set(shared);
    refetchConfig();
    return () => {
      subscribers.delete(set);
    };
  }, []);
  return { view: s.view, config: s.view?.config, error: s.error, reload: refetchConfig };
}

/** Call `fill` with `pick(config)` whenever that part of the configuration changes (not on every refetch, so that
 *  what the admin is typing is not reset by a change elsewhere). */
export function useFill<T>(config: any, pick: (config: any) => T, fill: (v: T) => void) {
  const last = useRef('');
  useEffect(() => {
    if (!config) return;
    const v = pick(config);
    const key = JSON.stringify(v);
    if (key !== last.current) {
      last.current = key;
      fill(v);
    }
  }, [config]);
}

/** Runs config edits one at a time, with a message for the outcome (errors go to `Note`, i.e. the alert). */
export function useConfigEdit() {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<Message>(null);
  async function run(what: () => Promise<unknown>, done: string): Promise<boolean> {
    setBusy(true);
    setMessage(null);
    try {
      await what();
      setMessage({ text: done, error: false });
      return true;
    } catch (e) {
      setMessage({ text: (e as ApiError).message, error: true });
      return false;
    } finally {
      setBusy(false);
    }
  }
  return { busy, message, setMessage, run };
}
