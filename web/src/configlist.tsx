// One editor for a configuration array of tables (e.g. `dns.records`): a table of its items, each removable, and a
// form that adds one. Every change is a merge patch through config.ts (arrays are replaced whole: RFC 7396), made
// from the configuration as shown and refused if it changed meanwhile.
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { ApiError } from './api';
import { Alert, FieldError, FieldProblem, Note, problemOf } from './alert';
import { editConfig, STALE, useConfig, useConfigEdit } from './config';

export type Values = Record<string, string | string[]>;

export interface Field {
  /** Key in the form's values. */
  key: string;
  /** The control's `name`. */
  name: string;
  label: string;
  /** text (default), a select of `options`, or a fieldset of checkboxes (one per option, value: the checked ones). */
  kind?: 'select' | 'checks';
  options?: (config: any) => string[];
  placeholder?: string;
  grow?: boolean;
  /** Shown in a checkbox fieldset without options. */
  none?: string;
}

export interface Column<T> {
  label: string;
  cell: (item: T) => ComponentChildren;
  class?: string;
}

interface Props<T> {
  /** Where the array is: [table, key], e.g. ['dns', 'records']. */
  at: [string, string];
  id: string;
  title: string;
  intro: ComponentChildren;
  testid: string;
  /** The first column heads its row. */
  columns: Column<T>[];
  fields: Field[];
  empty: Values;
  make: (v: Values) => T;
  add: string;
  added: (item: T) => string;
  removeLabel: (item: T) => string;
  removed: (item: T) => string;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export function ConfigList<T>(p: Props<T>) {
  const { config, error } = useConfig();
  const [form, setForm] = useState<Values>(p.empty);
  const { busy, message, run } = useConfigEdit();
  const [table, key] = p.at;
  const items: T[] | null = config ? (config[table]?.[key] ?? []) : null;

  // the array as `config` has it, changed by `edit`, as a merge patch
  const patch = (edit: (items: T[]) => T[]) => editConfig((c) => ({ [table]: { [key]: edit((c[table]?.[key] ?? []) as T[]) } }));

  // a refusal about one field of the new item (`dns.records[1].value`) is shown next to that field, in words
  const [fieldError, setFieldError] = useState<FieldProblem>(null);
  function add(e: Event) {
    e.preventDefault();
    setFieldError(null);
    const item = p.make(form);
    const at = new RegExp(`^${table}\\.${key}\\[\\d+\\]\\.(\\w+)`);
    run(async () => {
      try {
        await patch((xs) => [...xs, item]);
      } catch (err) {
        const ae = err as ApiError;
        const field = ae.key ? at.exec(ae.key)?.[1] : undefined;
        if (!field || !p.fields.some((f) => f.key === field)) throw err;
        setFieldError(problemOf(ae, field));
        // the general alert stays empty: the field says it
        throw new ApiError(ae.status, ae.code, '', ae.id, ae.key);
      }
    }, p.added(item)).then((ok) => ok && setForm(p.empty));
  }
  const invalid = (k: string) => (fieldError?.field === k ? true : undefined);
  const note = (k: string) => <FieldError problem={fieldError} field={k} />;
  function remove(item: T) {
    run(
      () =>
        patch((xs) => {
          const i = xs.findIndex((x) => same(x, item));
          if (i < 0) throw new ApiError(409, 'gone', STALE);
          return xs.filter((_, j) => j !== i);
        }),
      p.removed(item),
    );
  }

  const set = (k: string, v: string | string[]) => setForm({ ...form, [k]: v });
  const [head, ...rest] = p.columns;
  return (
    <section class="card" aria-labelledby={`${p.id}-h`}>
      <h2 id={`${p.id}-h`}>{p.title}</h2>
      <p class="muted small">{p.intro}</p>
      {!config && <Alert>{error}</Alert>}
      <Note m={message} />
      {items && items.length > 0 && (
        <table class="table log" data-testid={p.testid}>
          <thead>
            <tr>
              {p.columns.map((c) => (
                <th scope="col">{c.label}</th>
              ))}
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {items.map((item) => (
              <tr>
                <th scope="row" class={head.class}>
                  {head.cell(item)}
                </th>
                {rest.map((c) => (
                  <td data-label={c.label} class={c.class}>
                    {c.cell(item)}
                  </td>
                ))}
                <td>
                  <button type="button" class="danger ghost" disabled={busy} aria-label={p.removeLabel(item)} onClick={() => remove(item)}>
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form class="filters" onSubmit={add}>
        {p.fields.map((f) => {
          const v = form[f.key];
          if (f.kind === 'checks') {
            const options = config && f.options ? f.options(config) : [];
            const on = v as string[];
            return (
              <fieldset class="inline">
                <legend>{f.label}</legend>
                {options.length === 0 && <span class="muted small">{f.none}</span>}
                {options.map((o) => (
                  <label>
                    <input
                      type="checkbox"
                      name={`${f.name}-${o}`}
                      checked={on.includes(o)}
                      onChange={(e) => set(f.key, e.currentTarget.checked ? [...on, o] : on.filter((x) => x !== o))}
                    />{' '}
                    {o}
                  </label>
                ))}
                {note(f.key)}
              </fieldset>
            );
          }
          return (
            <label class={f.grow ? 'grow' : undefined}>
              {f.label}
              {f.kind === 'select' ? (
                <select name={f.name} value={v as string} onChange={(e) => set(f.key, e.currentTarget.value)} aria-invalid={invalid(f.key)}>
                  {(f.options?.(config) ?? []).map((o) => (
                    <option>{o}</option>
                  ))}
                </select>
              ) : (
                <input
                  name={f.name}
                  value={v as string}
                  onInput={(e) => set(f.key, e.currentTarget.value)}
                  placeholder={f.placeholder}
                  required
                  aria-invalid={invalid(f.key)}
                />
              )}
              {note(f.key)}
            </label>
          );
        })}
        <button type="submit" disabled={busy}>
          {p.add}
        </button>
      </form>
    </section>
  );
}
