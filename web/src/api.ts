// The admin API client: JSON in and out, the session's CSRF token on every change, errors as ApiError; and the
// API's types, generated from the OpenAPI document (web/openapi.json → api.gen.ts) at build time.
import type { components } from './api.gen';

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public id?: string,
    public key?: string,
  ) {
    super(message);
  }
}

let csrfToken: string | null = null;
export function setCsrf(token: string | null) {
  csrfToken = token;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  return (await request<T>(method, path, body)).data;
}

/** Like `api`, with extra request headers (they may replace the defaults), and the response's headers. */
export async function request<T>(method: string, path: string, body?: unknown, extra?: Record<string, string>): Promise<{ data: T; headers: Headers }> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  Object.assign(headers, extra);
  let resp: Response;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'hearth is not reachable');
  }
  if (resp.status === 204) return { data: undefined as T, headers: resp.headers };
  const text = await resp.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  if (!resp.ok) {
    const e = data?.error;
    if (resp.status === 401 && !path.startsWith('/api/v1/auth/')) window.dispatchEvent(new Event('hearth:unauthenticated'));
    throw new ApiError(resp.status, e?.code ?? 'http_' + resp.status, e?.message ?? resp.statusText, e?.id, e?.key);
  }
  return { data: data as T, headers: resp.headers };
}

type Schemas = components['schemas'];

// Where the document says less than the UI relies on (a free-form object, a string of known values), the
// generated type is narrowed here; everything else is the generated type as it is.
export type TaskState = Schemas['TaskState'];
export type TaskStatus = Schemas['TaskStatus'];
export type Sample = Schemas['Sample'];
export type Status = Schemas['Status'];
export type SessionView = Schemas['SessionView'];
/** What an API token may do; `admin` is everything. */
export type Scope = Schemas['Scope'];
export const SCOPES: { scope: Scope; label: string; help: string }[] = [
  { scope: 'admin', label: 'admin', help: 'everything, like a logged-in admin' },
  { scope: 'memory', label: 'memory', help: 'embeddings (/v1/*, /api/v1/embed) and collections' },
  { scope: 'metrics', label: 'metrics', help: 'GET /metrics (Prometheus)' },
  { scope: 'dns:read', label: 'dns:read', help: 'read the query log, DNS stats, lists and upstreams' },
  { scope: 'logs', label: 'logs', help: 'push lines to and query the log store (Loki API: Grafana, logcli, Alloy)' },
];
export type TokenInfo = Schemas['TokenInfo'];
export type CreatedToken = Schemas['CreatedToken'];
export type SessionListing = Schemas['SessionListing'];
export type SetupState = Schemas['SetupState'];
export type QueryEntry = Omit<Schemas['Entry'], 'dnssec'> & {
  /** DNSSEC verdict on a forwarded answer. */
  dnssec?: 'secure' | 'insecure' | 'bogus' | null;
};
export type DnsStats = Schemas['Stats'];
export type Flushed = Schemas['Flushed'];
export type CatalogEntry = Schemas['CatalogEntry'];
export type BlockingState = Schemas['BlockingState'];
export type NetworkView = Schemas['NetworkView'];
export type LanAddress = Schemas['LanAddress'];
export type MyRules = Schemas['MyRules'];
export type CheckResult = Schemas['CheckResult'];
export type Resolution = Schemas['Resolution'];
export type UpstreamHealth = Schemas['UpstreamHealth'];
export type ListView = Omit<Schemas['ListView'], 'counts'> & {
  counts: { rules: number; comments: number; invalid: number; examples: [number, string][] } | null;
};
/** The configuration's JSON form is not in the document: hearth.toml's tables, as `any`. */
export type ConfigView = Omit<Schemas['ConfigView'], 'config'> & { config: any };
export type ConfigChange = ConfigView & { report: Schemas['ApplyReport'] };
export type UpstreamStatus = Schemas['UpstreamStatus'];
/** A route as in hearth.toml (the document has it as a free-form object); keys the UI does not show are kept. */
export interface ProxyRoute {
  hosts: string[];
  path_prefix: string;
  upstreams: string[];
  tls: 'acme' | 'internal' | 'none';
  strategy: 'round_robin' | 'least_conn' | 'ip_hash';
  health_path: string;
  [key: string]: unknown;
}
export type RouteView = Omit<Schemas['RouteView'], 'route'> & { route: ProxyRoute };
export type TestResult = Schemas['TestResult'];
export type CertStatus = Omit<Schemas['CertStatus'], 'status'> & { status: 'valid' | 'ordering' | 'failed' | 'pending' | 'expired' };
export type CertificatesView = Omit<Schemas['CertificatesView'], 'acme'> & { acme: CertStatus[] };
export type AccessEntry = Schemas['AccessEntry'];
export type ResolvedView = Schemas['ResolvedView'];
export type MemoryStatus = Schemas['MemoryStatus'];
export type ModelState = Schemas['ModelState'];
export type CollectionInfo = Schemas['CollectionInfo'];
export type Hit = Schemas['Hit'];
