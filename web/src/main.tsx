import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { navigate, usePath } from './nav';
import { api, ApiError, setCsrf, SessionView, SetupState } from './api';
import { Alert } from './alert';
import { Setup } from './pages/setup';
import { Login } from './pages/login';
import { Dashboard } from './pages/dashboard';
import { Tokens } from './pages/tokens';
import { Settings } from './pages/settings';
import { Dns } from './pages/dns/dns';
import { Proxy } from './pages/proxy';
import { Memory } from './pages/memory';
import { Status } from './pages/status';
import { Dashboards } from './pages/dashboards';
import { Alerts } from './pages/alerts';
import { Logs } from './pages/logs';
import { Traces } from './pages/traces';
import { DeviceGuide } from './devices';
import { PauseSwitch } from './pause';
import './style.css';

// Pages of the shell's navigation (`nav: false`: reached from a link, not listed); a new subsystem adds its page here.
const PAGES = [
  { path: '/', title: 'Dashboard', view: Dashboard, nav: true },
  { path: '/dns', title: 'DNS', view: Dns, nav: true },
  { path: '/dashboards', title: 'Dashboards', view: Dashboards, nav: true },
  { path: '/alerts', title: 'Alerts', view: Alerts, nav: true },
  { path: '/logs', title: 'Logs', view: Logs, nav: true },
  { path: '/traces', title: 'Traces', view: Traces, nav: true },
  { path: '/proxy', title: 'Proxy', view: Proxy, nav: true },
  { path: '/memory', title: 'Memory', view: Memory, nav: true },
  { path: '/status', title: 'Status', view: Status, nav: true },
  { path: '/tokens', title: 'API tokens', view: Tokens, nav: true },
  { path: '/settings', title: 'Settings', view: Settings, nav: true },
  { path: '/devices', title: 'Connect your devices', view: DeviceGuide, nav: false },
];

type Theme = 'auto' | 'light' | 'dark';
function useTheme(): [Theme, () => void] {
  const [theme, setTheme] = useState<Theme>((localStorage.getItem('hearth-theme') as Theme) || 'auto');
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem('hearth-theme', theme);
  }, [theme]);
  const next = () => setTheme(theme === 'auto' ? 'dark' : theme === 'dark' ? 'light' : 'auto');
  return [theme, next];
}

type Phase = { kind: 'loading' } | { kind: 'setup'; port53: boolean } | { kind: 'login' } | { kind: 'app'; session: SessionView } | { kind: 'down'; message: string };

function App() {
  const path = usePath();
  const [phase, setPhase] = useState<Phase>({ kind: 'loading' });
  const [theme, nextTheme] = useTheme();
  // after client-side navigation, move focus to the new page's content (as a full page load would reset it)
  useEffect(() => {
    if (phase.kind === 'app' && document.activeElement?.closest('nav')) document.getElementById('content')?.focus();
  }, [path]);


  async function check() {
    try {
      const s = await api<SetupState>('GET', '/api/v1/setup');
      if (s.needs_setup) return setPhase({ kind: 'setup', port53: !!s.port53_held_by_resolved });
      const session = await api<SessionView>('GET', '/api/v1/auth/session');
      setCsrf(session.csrf_token ?? null);
      setPhase({ kind: 'app', session });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) setPhase({ kind: 'login' });
      else setPhase({ kind: 'down', message: (e as Error).message });
    }
  }
  useEffect(() => {
    check();
    const on = () => setPhase({ kind: 'login' });
    window.addEventListener('hearth:unauthenticated', on);
    return () => window.removeEventListener('hearth:unauthenticated', on);
  }, []);

  async function logout() {
    try {
      await api('POST', '/api/v1/auth/logout');
    } finally {
      setCsrf(null);
      navigate('/');
      setPhase({ kind: 'login' });
    }
  }

  const themeButton = (
    <button type="button" class="ghost" onClick={nextTheme} title="Switch colour theme" aria-label={`Theme: ${theme}`}>
      {theme === 'dark' ? '☾' : theme === 'light' ? '☀' : '◐'} {theme}
    </button>
  );

  if (phase.kind === 'loading') return <main class="center" aria-busy="true">Loading…</main>;
  if (phase.kind === 'down')
    return (
      <main class="center">
        <div class="card narrow">
          <h1>hearth is not answering</h1>
          <Alert>{phase.message}</Alert>
          <button onClick={check}>Try again</button>
        </div>
      </main>
    );
  if (phase.kind === 'setup')
    return (
      <Setup
        finished={(session) => {
          navigate('/');
          setPhase({ kind: 'app', session });
        }}
        themeButton={themeButton}
        port53={phase.port53}
      />
    );
  if (phase.kind === 'login')
    return (
      <Login
        loggedIn={(session) => {
          setCsrf(session.csrf_token ?? null);
          setPhase({ kind: 'app', session });
        }}
        themeButton={themeButton}
      />
    );

  // a page owns its sub-paths (the DNS page's sections: /dns/log, /dns/lists, …)
  const page = PAGES.find((p) => p.path === path) ?? PAGES.find((p) => p.path !== '/' && path.startsWith(p.path + '/')) ?? PAGES[0];
  const View = page.view;
  document.title = `${page.title} · hearth`;
  return (
    <div class="shell">
      <a class="skip" href="#content">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">
          <img src="/favicon.svg" alt="" width="22" height="22" /> hearth
        </span>
        <nav aria-label="Main">
          {PAGES.filter((p) => p.nav).map((p) => (
            <a
              href={p.path}
              aria-current={p === page ? 'page' : undefined}
              onClick={(e) => {
                e.preventDefault();
                navigate(p.path);
              }}
            >
              {p.title}
            </a>
          ))}
        </nav>
        <span class="spacer" />
        <PauseSwitch />
        {themeButton}
        <span class="muted user">{phase.session.user}</span>
        <button class="ghost" onClick={logout}>
          Log out
        </button>
      </header>
      <main id="content" tabIndex={-1}>
        <h1>{page.title}</h1>
        <View />
      </main>
    </div>
  );
}

render(<App />, document.getElementById('app')!);
