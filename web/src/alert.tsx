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
