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
