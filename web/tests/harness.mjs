// Shared by the browser tests: a hearth on free loopback ports in a temp dir, Debian's Chromium, screenshots.
// (Not a test file itself: node --test runs only *.test.mjs here.)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const BIN = process.env.HEARTH_BIN;
export const ARTIFACTS = new URL('../test-artifacts/', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// Every port handed out by this process (the Rust fixture's `free_port` in tests/it/common.rs does the same): the
// kernel may give the same ephemeral port to two binds made one after the other, so a port asked for once is never
// handed out again, even after its listener closed.
const given = new Set();

/// A port the kernel gives a TCP listener on 127.0.0.1 right now (the listener is closed again).
function tcpPort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/// Whether a UDP socket can bind 127.0.0.1:`port` (hearth's DNS listener needs both TCP and UDP).
function udpFree(port) {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/// A loopback port free for both TCP and UDP that this process has not handed out before. The port is marked as
/// given before the UDP check awaits, so two calls running at once can never return the same port.
export async function freePort() {
  for (;;) {
    const port = await tcpPort();
    if (given.has(port)) continue;
    given.add(port);
    if (await udpFree(port)) return port;
  }
}

/// Start hearth with the test's listeners and data dir, `extra` appended to the config and `dnsExtra` to its [dns]
/// table; resolves once /readyz is 200.
export async function startHearth(name, extra = '', dnsExtra = '') {
  assert.ok(BIN, 'set HEARTH_BIN to the hearth binary (tests/run.sh does)');
  mkdirSync(ARTIFACTS, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), `hearth-${name}-`));
  const [http, https, dns] = [await freePort(), await freePort(), await freePort()];
  const base = `http://127.0.0.1:${http}`;
  writeFileSync(
    join(dir, 'hearth.toml'),
    `# ${name} ui test\n[server]\nhttp_listen = ["127.0.0.1:${http}"]\nhttps_listen = ["127.0.0.1:${https}"]\ndata_dir = "${dir}/data"\n\n[log]\nlevel = "info"\nformat = "json"\n\n[dns]\nlisten = ["127.0.0.1:${dns}"]\nupstreams = ["udp://127.0.0.1:9"]\n${dnsExtra}\n[memory]\nenabled = false\n\n${extra}`,
  );
  const h = { dir, base, dnsPort: dns, logs: '' };
  h.proc = spawn(BIN, ['run', '--config', join(dir, 'hearth.toml')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  h.proc.stdout.on('data', (d) => (h.logs += d));
  h.proc.stderr.on('data', (d) => (h.logs += d));
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(base + '/readyz')).ok) break;
    } catch {}
    if (i > 600) throw new Error('hearth did not start:\n' + h.logs);
    await new Promise((r) => setTimeout(r, 50));
  }
  h.stop = () => stopAndRemove(h.proc, dir);
  return h;
}

/// Stop a hearth process and remove its directory. Waits for the exit first: hearth flushes logs and metrics on the
/// way out, and a directory removed under a writer fails with ENOTEMPTY.
export async function stopAndRemove(proc, dir) {
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  }
  if (!dir) return;
  for (let i = 0; ; i++) {
    try {
      rmSync(dir, { recursive: true, force: true });
      return;
    } catch (e) {
      if (i >= 20) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/// The admin account every UI test logs in with ('admin' / 'correct horse battery'), made through the setup API
/// with the instance's one-time setup code.
export async function createAdmin(h) {
  const code = readFileSync(join(h.dir, 'data', 'setup-code'), 'utf8').trim();
  const r = await fetch(h.base + '/api/v1/setup', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: 'correct horse battery', setup_code: code }),
  });
  assert.equal(r.status, 201, await r.text());
}

/// Log `page` in as that admin and wait for the dashboard.
export async function logIn(page, base) {
  await page.goto(base + '/');
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}
