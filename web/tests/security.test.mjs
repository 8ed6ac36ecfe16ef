// Browser tests for issue 20's UI parts: the setup code in the wizard, token scopes, the sessions list with
// revocation, and the password change that can revoke the user's tokens. Debian's Chromium driven by
// playwright-core against the real hearth binary; screenshots go to web/test-artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BIN = process.env.HEARTH_BIN;
const ARTIFACTS = new URL('../test-artifacts/', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let hearth, dir, base, browser, logs = '';

before(async () => {
  assert.ok(BIN, 'set HEARTH_BIN to the hearth binary (tests/run.sh does)');
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'hearth-sec-'));
  const [http, https, dns] = [await freePort(), await freePort(), await freePort()];
  base = `http://127.0.0.1:${http}`;
  writeFileSync(
    join(dir, 'hearth.toml'),
    `# security ui test\n[server]\nhttp_listen = ["127.0.0.1:${http}"]\nhttps_listen = ["127.0.0.1:${https}"]\ndata_dir = "${dir}/data"\n\n[log]\nlevel = "info"\nformat = "json"\n\n[dns]\nlisten = ["127.0.0.1:${dns}"]\nupstreams = ["udp://127.0.0.1:9"]\n\n[memory]\nenabled = false\n`,
  );
  hearth = spawn(BIN, ['run', '--config', join(dir, 'hearth.toml')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  hearth.stdout.on('data', (d) => (logs += d));
  hearth.stderr.on('data', (d) => (logs += d));
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(base + '/readyz')).ok) break;
    } catch {}
    if (i > 600) throw new Error('hearth did not start:\n' + logs);
    await new Promise((r) => setTimeout(r, 50));
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  hearth?.kill('SIGTERM');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

const bearer = (token) => ({ headers: { Authorization: 'Bearer ' + token } });

test('setup code → scoped token → sessions → password change', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
  const page = await context.newPage();

  // the wizard asks for the setup code and says where to find it
  const codeFile = join(dir, 'data', 'setup-code');
  const code = readFileSync(codeFile, 'utf8').trim();
  assert.match(code, /^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$/);
  await page.goto(base + '/');
  await page.getByRole('button', { name: 'Get started' }).click();
  const help = page.getByTestId('setup-code-help');
  await help.getByText('journalctl -u hearth | grep setup').waitFor();
  await help.getByText(/sudo hearth admin setup-code/).waitFor();
  await help.getByText('hearth-setup-code.txt').waitFor();
  await help.getByText(codeFile).waitFor();
  await page.getByLabel('Setup code').fill('AAAA-BBBB-CCCC');
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel(/^Password/).fill('correct horse battery');
  await page.getByLabel('Repeat the password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Create admin account' }).click();
  await page.getByRole('alert').filter({ hasText: 'setup code is wrong' }).waitFor();
  await shot(page, 'sec-01-wizard-wrong-code');
  await page.getByLabel('Setup code').fill(code.toLowerCase());
  await page.getByRole('button', { name: 'Create admin account' }).click();
  await page.getByRole('status').filter({ hasText: 'is ready' }).waitFor();
  assert.ok(!existsSync(codeFile), 'the code file is gone once the admin exists');
  await page.getByRole('button', { name: 'Continue to log in' }).click();
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();

  // a token with only the memory scope, and an admin one (the default)
  await page.getByRole('link', { name: 'API tokens' }).click();
  const scopes = page.getByTestId('token-scopes');
  assert.ok(await scopes.getByRole('checkbox', { name: /^admin/ }).isChecked(), 'admin is the default');
  await page.getByLabel('Name', { exact: true }).fill('llm-app');
  await scopes.getByRole('checkbox', { name: /^admin/ }).uncheck();
  await scopes.getByRole('checkbox', { name: /^memory/ }).check();
  await page.getByRole('button', { name: 'Create token' }).click();
  const memoryToken = (await page.getByTestId('new-token').textContent()).trim();
  await page.locator('tr[data-token="llm-app"] [data-testid=scopes]').filter({ hasText: 'memory' }).waitFor();
  assert.doesNotMatch(await page.locator('tr[data-token="llm-app"] [data-testid=scopes]').textContent(), /admin/);
  assert.equal((await fetch(base + '/api/v1/collections', bearer(memoryToken))).status, 200);
  const denied = await fetch(base + '/api/v1/tokens', bearer(memoryToken));
  assert.equal(denied.status, 403);
  assert.equal((await denied.json()).error.code, 'insufficient_scope');
  await page.getByLabel('Name', { exact: true }).fill('backup');
  await page.getByRole('button', { name: 'Create token' }).click();
  await page.locator('tr[data-token="backup"] [data-testid=scopes]').filter({ hasText: 'admin' }).waitFor();
  const adminToken = (await page.getByTestId('new-token').textContent()).trim();
  assert.equal((await fetch(base + '/api/v1/tokens', bearer(adminToken))).status, 200);
  await shot(page, 'sec-02-token-scopes');

  // another login (a script) shows up in the sessions list and can be revoked
  const other = await fetch(base + '/api/v1/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'User-Agent': 'Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0' },
    body: JSON.stringify({ username: 'admin', password: 'correct horse battery' }),
  });
  assert.equal(other.status, 200);
  const otherCookie = other.headers.get('set-cookie').split(';')[0];
  const asOther = () => fetch(base + '/api/v1/auth/session', { headers: { Cookie: otherCookie } });
  assert.equal((await asOther()).status, 200);
  await page.getByRole('link', { name: 'Settings' }).click();
  const sessions = page.getByTestId('sessions');
  await sessions.locator('tbody tr').nth(1).waitFor();
  assert.equal(await sessions.locator('tbody tr').count(), 2);
  await sessions.locator('tr[data-current]').getByText('this session').waitFor();
  const otherRow = sessions.locator('tbody tr:not([data-current])');
  await otherRow.getByText(/Firefox on Linux/).waitFor();
  await shot(page, 'sec-03-sessions');
  page.once('dialog', (d) => d.accept());
  await otherRow.getByRole('button', { name: /Revoke session/ }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=sessions] tbody tr').length === 1);
  assert.equal((await asOther()).status, 401, 'the revoked session is logged out');

  // password change: a wrong current password is refused; then every session ends and, when asked, the tokens
  const pw = page.getByRole('form', { name: 'Change password' });
  await pw.getByLabel('Current password').fill('not my password');
  await pw.getByLabel(/^New password/).fill('a new secret pass');
  await pw.getByLabel('Repeat the new password').fill('a new secret pass');
  await pw.getByRole('button', { name: 'Change password' }).click();
  await page.getByRole('alert').filter({ hasText: 'current password is wrong' }).waitFor();
  await pw.getByLabel('Current password').fill('correct horse battery');
  await pw.getByLabel('Also revoke API tokens created by this user?').check();
  await shot(page, 'sec-04-password');
  await pw.getByRole('button', { name: 'Change password' }).click();
  await page.getByRole('heading', { name: 'Log in to hearth' }).waitFor();
  assert.equal((await fetch(base + '/api/v1/tokens', bearer(adminToken))).status, 401, 'tokens revoked');
  assert.equal((await fetch(base + '/api/v1/collections', bearer(memoryToken))).status, 401, 'tokens revoked');
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill('a new secret pass');
  await page.getByRole('button', { name: 'Log in' }).click();
  // back where we were (Settings), logged in with the new password: one session again
  await page.getByTestId('sessions').locator('tr[data-current]').waitFor();
  await context.close();
});
