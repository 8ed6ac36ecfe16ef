import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, CreatedToken, Scope, SCOPES, TokenInfo } from '../api';
import { ago, date } from '../format';
import { Alert } from '../alert';

export function Tokens() {
  const [tokens, setTokens] = useState<TokenInfo[] | null>(null);
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<Scope[]>(['admin']);
  const [days, setDays] = useState('');
  const [secret, setSecret] = useState<{ name: string; token: string; scopes: Scope[] } | null>(null);
  const [error, setError] = useState('');
  const [copied, setCopied] = useState(false);

  const load = () =>
    api<TokenInfo[]>('GET', '/api/v1/tokens')
      .then(setTokens)
      .catch((e: ApiError) => setError(e.message));
  useEffect(() => {
    load();
  }, []);

  async function create(e: Event) {
    e.preventDefault();
    setError('');
    if (scopes.length === 0) return setError('Choose at least one scope.');
    try {
      const body = days ? { name, scopes, expires_in_days: Number(days) } : { name, scopes };
      const r = await api<CreatedToken>('POST', '/api/v1/tokens', body);
      setSecret({ name: r.info.name, token: r.token, scopes: r.info.scopes });
      setCopied(false);
      setName('');
      setScopes(['admin']);
      setDays('');
      load();
    } catch (err) {
      setError((err as ApiError).message);
    }
  }

  async function revoke(t: TokenInfo) {
    if (!confirm(`Revoke the token “${t.name}”? Programs using it lose access at once.`)) return;
    try {
      await api('DELETE', `/api/v1/tokens/${t.id}`);
      load();
    } catch (err) {
      setError((err as ApiError).message);
    }
  }

  return (
    <>
      <section class="card">
        <h2>Create a token</h2>
        <p class="muted">
          Tokens let scripts and other programs use the API: send <code>Authorization: Bearer &lt;token&gt;</code>. Give a token
          only the scopes it needs: an <code>admin</code> token can do everything you can, a <code>memory</code> token only
          embeddings and collections (e.g. as the OpenAI API key of an app).
        </p>
        <form class="stack" onSubmit={create}>
          <label>
            Name
            <input name="token-name" value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="e.g. backup script" maxLength={64} required />
          </label>
          <fieldset class="inline" data-testid="token-scopes">
            <legend>Scopes</legend>
            {SCOPES.map((s) => (
              <label class="check" title={s.help}>
                <input
                  type="checkbox"
                  name={`scope-${s.scope}`}
                  checked={scopes.includes(s.scope)}
                  onChange={(e) =>
                    setScopes(e.currentTarget.checked ? [...scopes, s.scope] : scopes.filter((x) => x !== s.scope))
                  }
                />
                {s.label} <span class="muted small">{s.help}</span>
              </label>
            ))}
          </fieldset>
          <label>
            Expires
            <select name="token-expiry" value={days} onChange={(e) => setDays(e.currentTarget.value)}>
              <option value="">never (until revoked)</option>
              <option value="30">in 30 days</option>
              <option value="90">in 90 days</option>
              <option value="365">in a year</option>
            </select>
          </label>
          <div class="row">
            <button type="submit">Create token</button>
          </div>
        </form>
        <Alert>{error}</Alert>
        {secret && (
          <div class="secret" role="status">
            <p>
              Token <strong>{secret.name}</strong> — copy it now, it is not shown again:
            </p>
            <div class="row">
              <code data-testid="new-token">{secret.token}</code>
              <button
                class="ghost"
                onClick={async () => {
                  await navigator.clipboard?.writeText(secret.token).catch(() => undefined);
                  setCopied(true);
                }}
              >
                {copied ? 'Copied' : 'Copy'}
              </button>
            </div>
            {secret.scopes.includes('memory') && (
              <div data-testid="openai-snippet">
                <p class="small">
                  Use it as the OpenAI API key of an app, with hearth's address as the base URL (Python, the official <code>openai</code> package):
                </p>
                <pre class="small">{`from openai import OpenAI

client = OpenAI(base_url="${location.origin}/v1", api_key="${secret.token}")
vectors = client.embeddings.create(model="all-MiniLM-L6-v2", input=["hello hearth"])
print(len(vectors.data[0].embedding))  # 384`}</pre>
              </div>
            )}
          </div>
        )}
      </section>
      <section class="card">
        <h2>Tokens</h2>
        {tokens === null ? (
          <p>Loading…</p>
        ) : tokens.length === 0 ? (
          <p class="muted">No tokens yet.</p>
        ) : (
          <table class="table" data-testid="tokens">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Token</th>
                <th scope="col">Scopes</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tokens.map((t) => (
                <tr data-token={t.name}>
                  <th scope="row">{t.name}</th>
                  <td data-label="Token">
                    <code>{t.prefix}…</code>
                  </td>
                  <td data-label="Scopes" data-testid="scopes">
                    {(t.scopes ?? []).map((s) => (
                      <span class={`badge ${s === 'admin' ? 'degraded' : 'cached'}`}>{s}</span>
                    ))}
                  </td>
                  <td data-label="Created" title={date(t.created_at)}>
                    {ago(t.created_at)} by {t.created_by}
                  </td>
                  <td data-label="Last used">{ago(t.last_used_at)}</td>
                  <td data-label="Expires" title={t.expires_at ? date(t.expires_at) : undefined}>
                    {!t.expires_at ? (
                      'never'
                    ) : t.expires_at * 1000 <= Date.now() ? (
                      <span class="badge failed">expired</span>
                    ) : (
                      new Date(t.expires_at * 1000).toLocaleDateString()
                    )}
                  </td>
                  <td>
                    <button class="danger ghost" onClick={() => revoke(t)} aria-label={`Revoke ${t.name}`}>
                      Revoke
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
