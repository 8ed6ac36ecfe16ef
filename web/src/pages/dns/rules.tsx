// My rules (hearth's own allow and block lists): each domain with Remove, the free-text editor with per-line
// validation, and "Check a domain", which names the list and rule that decide a name (AdGuard Home's Check
// filtering, Pi-hole's Search lists).
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, CheckResult, MyRules } from '../../api';
import { Alert, Message, Note } from '../../alert';
import { refetchConfig } from '../../config';

export function useMyRules(): { rules: MyRules | null; error: string; reload: () => void; set: (r: MyRules) => void } {
  const [rules, setRules] = useState<MyRules | null>(null);
  const [error, setError] = useState('');
  const reload = () =>
    api<MyRules>('GET', '/api/v1/dns/rules')
      .then((r) => {
        setRules(r);
        setError('');
      })
      .catch((e: ApiError) => setError(e.message));
  useEffect(() => {
    reload();
  }, []);
  return { rules, error, reload, set: setRules };
}

/** Remove a domain's rule from my allowlist or my blocklist. */
export function removeRule(domain: string, action: 'allow' | 'block'): Promise<MyRules> {
  return api<MyRules>('DELETE', `/api/v1/dns/rules?${new URLSearchParams({ domain, action })}`);
}

function Editor({ action, text, saved }: { action: 'allow' | 'block'; text: string; saved: (r: MyRules) => void }) {
  const [draft, setDraft] = useState(text);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  useEffect(() => setDraft(text), [text]);
  async function save(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      saved(await api<MyRules>('PUT', `/api/v1/dns/rules/${action}`, { text: draft }));
      refetchConfig();
    } catch (err) {
      setError((err as ApiError).message);
    } finally {
      setBusy(false);
    }
  }
  const id = `rules-${action}`;
  return (
    <form class="stack" onSubmit={save}>
      <label for={id}>
        My {action}list as text <span class="muted small">(one rule per line: example.com, ||example.com^, *.example.com, /regex/; # comments)</span>
      </label>
      <textarea id={id} rows={6} value={draft} onInput={(e) => setDraft(e.currentTarget.value)} aria-invalid={error ? true : undefined} spellcheck={false} />
      <Alert>{error}</Alert>
      <div class="row">
        <button type="submit" disabled={busy || draft === text}>
          {busy ? 'Saving…' : `Save my ${action}list`}
        </button>
      </div>
    </form>
  );
}

export function MyRulesPanel() {
  const { rules, error, set } = useMyRules();
  const [message, setMessage] = useState<Message>(null);
  async function remove(domain: string, action: 'allow' | 'block') {
    setMessage(null);
    try {
      set(await removeRule(domain, action));
      setMessage({ text: `Removed ${domain} from my ${action}list.`, error: false });
    } catch (e) {
      setMessage({ text: (e as ApiError).message, error: true });
    }
  }
  if (!rules) return <section class="card">{error ? <Alert>{error}</Alert> : <p aria-busy="true">Loading…</p>}</section>;
  const side = (action: 'allow' | 'block') => {
    const l = rules[action];
    return (
      <div>
        <h3>{action === 'allow' ? 'Always allowed' : 'Always blocked'}</h3>
        {l.domains.length === 0 ? (
          <p class="muted small">
            None yet. {action === 'allow' ? 'Allow a name from the query log’s ⋯ menu, or add it below.' : 'Block a name from the query log’s ⋯ menu, or add it below.'}
          </p>
        ) : (
          <ul class="plain rules" data-testid={`my-${action}`}>
            {l.domains.map((d) => (
              <li data-domain={d}>
                <span class="name">{d}</span>
                <button type="button" class="ghost small" onClick={() => remove(d, action)} aria-label={`Remove ${d} from my ${action}list`}>
                  Remove
                </button>
              </li>
            ))}
          </ul>
        )}
        <details>
          <summary class="small">Edit as text</summary>
          <Editor action={action} text={l.text} saved={set} />
        </details>
      </div>
    );
  };
  return (
    <section class="card" aria-labelledby="my-rules">
      <h2 id="my-rules">My rules</h2>
      <p class="muted small">Your own rules beat the lists: an allowed name is never blocked, whatever list has it.</p>
      <Note m={message} />
      <div class="grid2">
        {side('allow')}
        {side('block')}
      </div>
    </section>
  );
}

export function CheckDomain({ initial = '' }: { initial?: string }) {
  const [name, setName] = useState(initial);
  const [client, setClient] = useState('');
  const [result, setResult] = useState<CheckResult | null>(null);
  const [error, setError] = useState<{ key?: string; text: string } | null>(null);
  async function check(e?: Event) {
    e?.preventDefault();
    setError(null);
    setResult(null);
    try {
      setResult(await api<CheckResult>('GET', `/api/v1/dns/check?${new URLSearchParams(client ? { name, client } : { name })}`));
    } catch (err) {
      const ae = err as ApiError;
      setError({ key: ae.key, text: ae.key === 'client' ? 'That is not an IP address.' : ae.key === 'name' ? 'That is not a domain name.' : ae.message });
    }
  }
  useEffect(() => {
    if (initial) check();
  }, [initial]);
  return (
    <section class="card" aria-labelledby="check-domain">
      <h2 id="check-domain">Check a domain</h2>
      <form class="filters" onSubmit={check}>
        <label class="grow">
          Domain
          <input name="check-name" value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="ads.example.com" required aria-invalid={error?.key === 'name' ? true : undefined} />
        </label>
        <label>
          As client <span class="muted small">(optional)</span>
          <input name="check-client" value={client} onInput={(e) => setClient(e.currentTarget.value)} placeholder="192.168.1.20" aria-invalid={error?.key === 'client' ? true : undefined} />
        </label>
        <button type="submit">Check</button>
      </form>
      <Alert>{error?.text}</Alert>
      {result && (
        <p role="status" data-testid="check-result" class={result.verdict === 'blocked' ? 'error' : undefined}>
          <strong>{result.name}</strong>{' '}
          {result.verdict === 'blocked'
            ? `is blocked by “${result.list}”: ${result.rule}`
            : result.verdict === 'allowed'
              ? `is allowed by “${result.list}”: ${result.rule} (an allow rule beats every block rule)`
              : 'is in no list: it is answered normally'}
          {result.group ? ` — for clients of the group “${result.group}”` : ''}
          {result.paused ? '. Blocking is paused right now.' : '.'}
        </p>
      )}
    </section>
  );
}
