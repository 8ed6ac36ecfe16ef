// Client-side navigation: the shell's pages are paths; a link changes the path without a reload.
import { useEffect, useState } from 'preact/hooks';

export function navigate(path: string) {
  if (location.pathname !== path) history.pushState(null, '', path);
  window.dispatchEvent(new Event('hearth:navigate'));
}

/** The current path, following links and the browser's back and forward. */
export function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const on = () => setPath(location.pathname);
    window.addEventListener('popstate', on);
    window.addEventListener('hearth:navigate', on);
    return () => {
      window.removeEventListener('popstate', on);
      window.removeEventListener('hearth:navigate', on);
    };
  }, []);
  return path;
}

/** A link inside the admin: navigates in place. */
export function Link({ to, children, class: cls }: { to: string; children: preact.ComponentChildren; class?: string }) {
  return (
    <a
      href={to}
      class={cls}
      onClick={(e) => {
        e.preventDefault();
        navigate(to);
      }}
    >
      {children}
    </a>
  );
}
