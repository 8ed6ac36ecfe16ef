// The one way a page shows a failure: a red paragraph announced to screen readers, nothing when there is none.
import { ComponentChildren } from 'preact';

export function Alert({ children }: { children?: ComponentChildren }) {
  if (children === undefined || children === null || children === false || children === '') return null;
  return (
    <p class="error" role="alert">
      {children}
    </p>
  );
}

/** The outcome of an action: a success is announced politely, an error through `Alert`. */
export type Message = { text: string; error: boolean } | null;

export function Note({ m }: { m: Message }) {
  if (!m) return null;
  if (m.error) return <Alert>{m.text}</Alert>;
  return (
    <p class="ok" role="status">
      {m.text}
    </p>
  );
}

/** A refusal about one field of a form: the field, the message in words, the config key (a detail line). */
export type FieldProblem = { field: string; text: string; key?: string } | null;

/** The API's refusal as a problem of `field`: its message without the leading `key: `. */
export function problemOf(e: { message: string; key?: string }, field: string): FieldProblem {
  return { field, text: e.key ? e.message.replace(`${e.key}: `, '') : e.message, key: e.key };
}

/** The one way a form shows a refusal next to its field (nothing when the problem is another field's). */
export function FieldError({ problem, field }: { problem: FieldProblem; field: string }) {
  if (!problem || problem.field !== field) return null;
  return (
    <span class="error small" role="alert">
      {problem.text}
      {problem.key && <span class="muted detail"> ({problem.key})</span>}
    </span>
  );
}
