// Browser tests for issue 20's UI parts: the setup code in the wizard, token scopes, the sessions list with
// revocation, and the password change that can revoke the user's tokens. Debian's Chromium driven by
// playwright-core against the real hearth binary; screenshots go to web/test-artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startHearth, launchBrowser, shot } from './harness.mjs';

let h, dir, base, browser;

before(async () => {
  h = await startHearth('sec');
  ({ dir, base } = h);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await h?.stop();
});

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
  // logged in by the wizard, which goes on; its other steps can be skipped
  await page.getByRole('heading', { name: 'Resolver' }).waitFor();
  assert.ok(!existsSync(codeFile), 'the code file is gone once the admin exists');
  await page.getByRole('button', { name: 'Skip this step' }).click();
  await page.getByRole('heading', { name: 'Block lists' }).waitFor();
  await page.getByRole('button', { name: 'Skip this step' }).click();
  await page.getByRole('status').filter({ hasText: 'is ready' }).waitFor();
  await page.getByRole('button', { name: 'Go to the dashboard' }).click();
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
