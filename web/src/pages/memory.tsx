// Memory: the embedding model's state and throughput, collections (rows, size, index state; create, optimize,
// delete), adding documents (paste text or upload .txt/.md files, chunked in the browser), and a search playground
// (semantic or hybrid, optional metadata filter) showing scores and metadata.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, CollectionInfo, Hit, MemoryStatus } from '../api';
import { bytes } from '../format';
import { usePoll } from '../poll';
import { Alert } from '../alert';

/** Split text into chunks of at most `size` characters, on paragraph, then sentence, then word boundaries. */
export function chunk(text: string, size: number): string[] {
  const out: string[] = [];
  let cur = '';
  const push = () => {
    if (cur.trim()) out.push(cur.trim());
    cur = '';
  };
  const pieces = text.split(/\n\s*\n/).flatMap((p) => (p.length <= size ? [p] : p.match(/[^.!?]+[.!?]*\s*/g) ?? [p]));
  for (let piece of pieces) {
    while (piece.length > size) {
      const cut = piece.lastIndexOf(' ', size) > size / 2 ? piece.lastIndexOf(' ', size) : size;
      push();
      out.push(piece.slice(0, cut).trim());
      piece = piece.slice(cut);
    }
    if (cur.length + piece.length + 2 > size) push();
    cur += (cur ? '\n\n' : '') + piece;
  }
  push();
  return out;
}

function ModelCard({ s }: { s: MemoryStatus | null }) {
  if (!s) return <p class="muted">Loading…</p>;
  const m = s.model;
  return (
    <div class="cards" data-testid="model-status">
      <div class="card stat">
        <span class="label">Model</span>
        <span class="value">{m.state === 'disabled' ? '—' : m.model}</span>
        <p class={m.state === 'failed' ? 'error' : 'muted'}>
          {m.state === 'ready' && `ready · ${m.dim} dimensions · ${m.max_tokens} tokens · ${m.threads} threads · loaded in ${m.load_ms} ms`}
          {m.state === 'loading' && 'loading in the background…'}
          {m.state === 'disabled' && 'disabled in hearth.toml ([memory] enabled = false)'}
          {m.state === 'failed' && `failed to load (attempt ${m.attempts}): ${m.error}`}
        </p>
      </div>
      <div class="card stat">
        <span class="label">Throughput</span>
        <span class="value">{Math.round(s.tokens_per_second).toLocaleString()} tokens/s</span>
        <p class="muted">
          {s.requests.toLocaleString()} requests · {s.inputs.toLocaleString()} inputs · {s.batches.toLocaleString()} batches
        </p>
      </div>
      <div class="card stat">
        <span class="label">Cache</span>
        <span class="value">{(s.cache_hit_rate * 100).toFixed(1)}% hits</span>
        <p class="muted">
          {s.cache_entries.toLocaleString()} of {s.cache_capacity.toLocaleString()} embeddings
        </p>
      </div>
    </div>
  );
}

function NewCollection({ created }: { created: (name: string) => void }) {
  const [name, setName] = useState('');
  const [dim, setDim] = useState('');
  const [error, setError] = useState('');
  async function submit(e: Event) {
    e.preventDefault();
    setError('');
    try {
      await api('POST', '/api/v1/collections', { name, dimension: dim ? Number(dim) : undefined });
      setName('');
      setDim('');
      created(name);
    } catch (err) {
      setError((err as ApiError).message);
    }
  }
  return (
    <form class="filters" onSubmit={submit} aria-label="New collection">
      <label class="grow">
        Collection name
        <input name="name" value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="notes" required />
      </label>
      <label>
        Dimension
        <input name="dimension" value={dim} onInput={(e) => setDim(e.currentTarget.value)} placeholder="model's (384)" inputMode="numeric" />
      </label>
      <div class="row">
        <button type="submit">Create collection</button>
      </div>
      <Alert>{error}</Alert>
    </form>
  );
}

function AddDocuments({ collection, added }: { collection: string; added: () => void }) {
  const [text, setText] = useState('');
  const [source, setSource] = useState('pasted');
  const [size, setSize] = useState(1000);
  const [files, setFiles] = useState<File[]>([]);
  const [progress, setProgress] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    setError('');
    setBusy(true);
    try {
      const inputs: { name: string; text: string }[] = [];
      if (text.trim()) inputs.push({ name: source || 'pasted', text });
      for (const f of files) inputs.push({ name: f.name, text: await f.text() });
      const docs = inputs.flatMap(({ name, text }) =>
        chunk(text, size).map((t, i) => ({ id: `${name}#${i}`, text: t, metadata: { source: name, chunk: i } })),
      );
      if (!docs.length) throw new ApiError(0, 'empty', 'Paste some text or choose .txt/.md files first.');
      for (let i = 0; i < docs.length; i += 32) {
        setProgress(`Embedding ${Math.min(i + 32, docs.length)} of ${docs.length} chunks…`);
        await api('POST', `/api/v1/collections/${encodeURIComponent(collection)}/documents`, docs.slice(i, i + 32));
      }
      setProgress(`Added ${docs.length} chunk${docs.length === 1 ? '' : 's'} from ${inputs.length} source${inputs.length === 1 ? '' : 's'}.`);
      setText('');
      setFiles([]);
      added();
    } catch (err) {
      setProgress('');
      setError((err as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form class="stack" onSubmit={submit} aria-label="Add documents">
      <label>
        Text
        <textarea name="text" rows={6} value={text} onInput={(e) => setText(e.currentTarget.value)} placeholder="Paste notes, a manual, a recipe…" />
      </label>
      <div class="filters">
        <label class="grow">
          Source name (ids become source#chunk)
          <input name="source" value={source} onInput={(e) => setSource(e.currentTarget.value)} />
        </label>
        <label>
          Chunk size (characters)
          <input name="chunk" type="number" min={50} max={10000} value={size} onInput={(e) => setSize(Number(e.currentTarget.value) || 1000)} />
        </label>
        <label class="grow">
          Or upload files
          <input
            name="files"
            type="file"
            multiple
            accept=".txt,.md,text/plain,text/markdown"
            onChange={(e) => setFiles(Array.from(e.currentTarget.files ?? []))}
          />
        </label>
      </div>
      <div class="row">
        <button type="submit" disabled={busy}>
          Add to {collection}
        </button>
      </div>
      {progress && (
        <p class="muted" role="status" data-testid="add-progress">
          {progress}
        </p>
      )}
      <Alert>{error}</Alert>
    </form>
  );
}

function Search({ collection }: { collection: string }) {
  const [q, setQ] = useState('');
  const [k, setK] = useState(5);
  const [hybrid, setHybrid] = useState(true);
  const [filter, setFilter] = useState('');
  const [hits, setHits] = useState<Hit[] | null>(null);
  const [took, setTook] = useState(0);
  const [error, setError] = useState('');

  async function submit(e: Event) {
    e.preventDefault();
    setError('');
    try {
      const f = filter.trim() ? JSON.parse(filter) : undefined;
      const t = performance.now();
      const r = await api<Hit[]>('POST', `/api/v1/collections/${encodeURIComponent(collection)}/query`, { text: q, k, hybrid, filter: f });
      setTook(performance.now() - t);
      setHits(r);
    } catch (err) {
      setHits(null);
      setError(err instanceof SyntaxError ? `The filter is not JSON: ${err.message}` : (err as ApiError).message);
    }
  }

  return (
    <section aria-label="Search">
      <form class="filters" onSubmit={submit} aria-label="Search playground">
        <label class="grow">
          Question
          <input name="q" value={q} onInput={(e) => setQ(e.currentTarget.value)} placeholder="where is the spare key?" required />
        </label>
        <label>
          Results
          <input name="k" type="number" min={1} max={100} value={k} onInput={(e) => setK(Number(e.currentTarget.value) || 5)} />
        </label>
        <label class="check">
          <input name="hybrid" type="checkbox" checked={hybrid} onChange={(e) => setHybrid(e.currentTarget.checked)} />
          Hybrid (keywords + meaning)
        </label>
        <label class="grow">
          Metadata filter (JSON, optional)
          <input name="filter" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} placeholder='{"source": "manual.md"}' />
        </label>
        <div class="row">
          <button type="submit">Search</button>
        </div>
      </form>
      <Alert>{error}</Alert>
      {hits && (
        <>
          <p class="muted" role="status">
            {hits.length} result{hits.length === 1 ? '' : 's'} in {took.toFixed(0)} ms ({hybrid ? 'hybrid: reciprocal-rank fusion score' : 'cosine similarity'})
          </p>
          <table class="table" data-testid="hits">
            <thead>
              <tr>
                <th>Score</th>
                <th>Id</th>
                <th>Text</th>
                <th>Metadata</th>
              </tr>
            </thead>
            <tbody>
              {hits.map((h) => (
                <tr key={h.id}>
                  <td class="num" data-label="Score">{h.score.toFixed(4)}</td>
                  <td data-label="Id">{h.id}</td>
                  <td class="wrap" data-label="Text">{h.text}</td>
                  <td data-label="Metadata">
                    <code>{h.metadata == null ? '' : JSON.stringify(h.metadata)}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

export function Memory() {
  const status = usePoll<MemoryStatus>('/api/v1/memory/status', 3000);
  const [cols, setCols] = useState<CollectionInfo[] | null>(null);
  const [selected, setSelected] = useState<string>('');
  const [error, setError] = useState('');

  async function load() {
    try {
      const c = await api<CollectionInfo[]>('GET', '/api/v1/collections');
      setCols(c);
      setError('');
      if (!selected && c.length) setSelected(c[0].name);
    } catch (err) {
      setError((err as ApiError).message);
    }
  }
  useEffect(() => {
    load();
  }, []);

  async function optimize(name: string) {
    try {
      await api('POST', `/api/v1/collections/${encodeURIComponent(name)}/optimize`, {});
      load();
    } catch (err) {
      setError((err as ApiError).message);
    }
  }
  async function remove(name: string) {
    if (!confirm(`Delete the collection ${name} and all its documents?`)) return;
    try {
      await api('DELETE', `/api/v1/collections/${encodeURIComponent(name)}`);
      if (selected === name) setSelected('');
      load();
    } catch (err) {
      setError((err as ApiError).message);
    }
  }

  return (
    <div>
      <p class="muted">
        An embedding model and a vector store on this box. Clients speak the OpenAI API (<code>POST /v1/embeddings</code>) or TEI's (
        <code>POST /api/v1/embed</code>) with an API token.
      </p>
      <ModelCard s={status.data} />
      <Alert>{status.error}</Alert>
      <h2>Collections</h2>
      <Alert>{error}</Alert>
      {cols && cols.length === 0 && <p class="muted">No collections yet: create one below.</p>}
      {cols && cols.length > 0 && (
        <table class="table" data-testid="collections">
          <thead>
            <tr>
              <th>Name</th>
              <th class="num">Documents</th>
              <th class="num">Size</th>
              <th>Vector index</th>
              <th>Text index</th>
              <th>Metadata keys</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {cols.map((c) => (
              <tr key={c.name} class={c.name === selected ? 'selected' : ''}>
                <td>
                  <button type="button" class="link" onClick={() => setSelected(c.name)} aria-pressed={c.name === selected}>
                    {c.name}
                  </button>
                  <div class="muted small">
                    {c.dimension} dims{c.model ? ` · ${c.model}` : ''}
                  </div>
                </td>
                <td class="num" data-label="Documents">{c.rows.toLocaleString()}</td>
                <td class="num" data-label="Size">{bytes(c.bytes)}</td>
                <td data-label="Vector index">
                  {c.vector_index === 'none' ? 'exact search' : c.vector_index}
                  {c.vector_index !== 'none' && c.unindexed_rows > 0 && <div class="muted small">{c.unindexed_rows} rows not yet indexed</div>}
                  {c.ram_index_rows > 0 && (
                    <div class="muted small">
                      in memory: {c.ram_index_rows.toLocaleString()} rows, {bytes(c.ram_index_bytes)}
                    </div>
                  )}
                </td>
                <td data-label="Text index">{c.text_index ? 'BM25' : '—'}</td>
                <td class="small" data-label="Metadata keys">
                  {Object.entries(c.metadata_keys)
                    .map(([k, t]) => `${k} (${t})`)
                    .join(', ') || '—'}
                </td>
                <td class="row">
                  <button type="button" class="ghost" onClick={() => optimize(c.name)}>
                    Optimize
                  </button>
                  <button type="button" class="ghost danger" onClick={() => remove(c.name)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>New collection</h2>
      <NewCollection
        created={(n) => {
          setSelected(n);
          load();
        }}
      />
      {selected && (
        <>
          <h2>Add documents to {selected}</h2>
          <AddDocuments collection={selected} added={load} />
          <h2>Search {selected}</h2>
          <Search collection={selected} />
        </>
      )}
    </div>
  );
}
