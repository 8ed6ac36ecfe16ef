// The admin API client: JSON in and out, the session's CSRF token on every change, errors as ApiError.

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
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let resp: Response;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch {
    throw new ApiError(0, 'network', 'hearth is not reachable');
  }
  if (resp.status === 204) return undefined as T;
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
  return data as T;
}

export type TaskState = 'starting' | 'ready' | 'degraded' | 'failed' | 'stopped';
export interface TaskStatus {
  state: TaskState;
  detail: string;
  since: number;
  restarts: number;
  last_error: string | null;
}
export interface Sample {
  t: number;
  rss_bytes: number;
  cpu_percent: number;
  requests_per_second: number;
}
export interface Status {
  version: string;
  commit: string;
  build_date: string;
  started_at: number;
  uptime_seconds: number;
  process: { rss_bytes: number; cpu_seconds: number; open_fds: number; threads: number };
  http_requests_total: number;
  subsystems: Record<string, TaskStatus>;
  series: Sample[];
}
export interface SessionView {
  user: string;
  via: 'session' | 'token';
  csrf_token: string | null;
  expires_at: number | null;
  /** This session's public id (as in the sessions list). */
  session_id?: string;
  scopes?: Scope[];
}
/** What an API token may do; `admin` is everything. */
export type Scope = 'admin' | 'memory' | 'metrics' | 'dns:read';
export const SCOPES: { scope: Scope; label: string; help: string }[] = [
  { scope: 'admin', label: 'admin', help: 'everything, like a logged-in admin' },
  { scope: 'memory', label: 'memory', help: 'embeddings (/v1/*, /api/v1/embed) and collections' },
  { scope: 'metrics', label: 'metrics', help: 'GET /metrics (Prometheus)' },
  { scope: 'dns:read', label: 'dns:read', help: 'read the query log, DNS stats, lists and upstreams' },
];
export interface TokenInfo {
  id: number;
  name: string;
  prefix: string;
  scopes: Scope[];
  created_by: string;
  created_at: number;
  last_used_at: number | null;
}
export interface SessionListing {
  /** Public id (a prefix of the stored hash, never the secret). */
  id: string;
  user: string;
  kind: 'admin' | 'forward';
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  client: string;
  user_agent: string;
  current: boolean;
}
export interface SetupState {
  needs_setup: boolean;
  /** Where the one-time setup code is kept while setup is needed. */
  setup_code_file?: string;
  port53_held_by_resolved?: boolean;
}
export interface QueryEntry {
  id: number;
  ts_ms: number;
  client: string;
  name: string;
  qtype: number;
  outcome: string;
  rcode: number;
  list: string | null;
  rule: string | null;
  upstream: string | null;
  latency_us: number;
  /** DNSSEC verdict on a forwarded answer. */
  dnssec: 'secure' | 'insecure' | 'bogus' | null;
}
export interface DnsStats {
  total: number;
  blocked: number;
  blocked_percent: number;
  cached: number;
  clients: number;
  top_domains: [string, number][];
  top_blocked: [string, number][];
  top_clients: [string, number][];
  per_hour: [number, number, number][];
}
export interface ConfigView {
  config: any;
  path: string;
  file_exists: boolean;
}
export interface ConfigChange extends ConfigView {
  report: { restart_required: string[]; persisted: boolean };
}
export interface UpstreamStatus {
  url: string;
  available: boolean;
  circuit_open: boolean;
  health_check_ok: boolean;
  health_check: string;
  consecutive_failures: number;
  active_requests: number;
  requests: number;
  failures: number;
  latency_ms: number;
  last_error: string;
}
export interface ProxyRoute {
  hosts: string[];
  path_prefix: string;
  upstreams: string[];
  tls: 'acme' | 'internal' | 'none';
  strategy: 'round_robin' | 'least_conn' | 'ip_hash';
  health_path: string;
  [key: string]: unknown;
}
export interface RouteView {
  index: number;
  route: ProxyRoute;
  upstreams: UpstreamStatus[];
}
export interface CertStatus {
  name: string;
  status: 'valid' | 'ordering' | 'failed' | 'pending' | 'expired';
  issuer: string;
  not_before: number | null;
  not_after: number | null;
  renew_at: number | null;
  next_attempt: number | null;
  failures: number;
  last_attempt: number | null;
  last_success: number | null;
  last_error: string;
  rate_limited: boolean;
}
export interface CertificatesView {
  acme: CertStatus[];
  acme_directory: string;
  internal_ca: boolean;
  internal_root_sha256: string | null;
}
export interface AccessEntry {
  ts_ms: number;
  request_id: string;
  route: string;
  client: string;
  method: string;
  host: string;
  path: string;
  status: number;
  upstream: string;
  latency_ms: number;
}
