// Browser test for issue 22 at phone width (390 px, dark): the first hour on a phone — the wizard with a catalog
// list to the device guide, the dashboard, a blocked name allowed from the query log's ⋯ menu and the rule removed
// in My rules, and blocking paused from the navigation. The desktop walk of the same flows is in ui.test.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHearth, launchBrowser, shot } from './harness.mjs';

let h, browser, mirror;

before(async () => {
  // the catalog's lists come from a local mirror (dns.catalog_mirror), never from their publishers
  mirror = mkdtempSync(join(tmpdir(), 'hearth-mirror-'));
  writeFileSync(join(mirror, 'adguard-dns.txt'), '! local copy\n||phone-ad.example^\n');
  h = await startHearth('first-hour', '', `catalog_mirror = "${mirror}"\n\n[dns.querylog]\nflush_interval = "200ms"\n`);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await h?.stop();
  rmSync(mirror, { recursive: true, force: true });
});

const fits = (page) => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

test('the first hour on a phone: wizard → devices → dashboard → allow from the log → remove the rule → pause', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
  const page = await context.newPage();
  const dig = (name) => execFileSync('dig', ['@127.0.0.1', '-p', String(h.dnsPort), name, '+short', '+tries=1']).toString().trim();

  // the wizard
  await page.goto(h.base + '/');
  await page.getByRole('button', { name: 'Get started' }).click();
  await page.getByLabel('Setup code').fill(readFileSync(join(h.dir, 'data', 'setup-code'), 'utf8').trim());
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel(/^Password/).fill('correct horse battery');
  await page.getByLabel('Repeat the password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Create admin account' }).click();
  await page.getByRole('heading', { name: 'Resolver' }).waitFor();
  assert.ok((await fits(page)) <= 1, 'the resolver step fits');
  await shot(page, 'phone-01-wizard-resolver');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByRole('heading', { name: 'Block lists' }).waitFor();
  await page.locator('[data-catalog="adguard-dns"] input[type=checkbox]').waitFor();
  assert.ok((await fits(page)) <= 1, 'the catalog fits');
  await shot(page, 'phone-02-wizard-lists');
  await page.getByRole('button', { name: 'Add this list and continue' }).click();
  await page.getByTestId('device-guide').waitFor();
  assert.ok((await fits(page)) <= 1, 'the device guide fits');
  await shot(page, 'phone-03-wizard-devices');
  assert.equal(dig('a.phone-ad.example'), '0.0.0.0', 'the catalog list blocks');
  await page.getByRole('button', { name: 'Go to the dashboard' }).click();
  await page.getByTestId('top-blocked').filter({ hasText: 'a.phone-ad.example' }).waitFor();
  await shot(page, 'phone-04-dashboard');

  // un-breaking a site from the query log, on a phone: the ⋯ menu, the confirmation next to the row
  await page.getByRole('link', { name: 'DNS' }).click();
  await page.getByRole('navigation', { name: 'DNS sections' }).getByRole('link', { name: 'Query log' }).click();
  await page.waitForTimeout(300); // the live tail connects
  dig('b.phone-ad.example');
  const row = page.locator('tr[data-outcome="blocked"]').filter({ hasText: 'b.phone-ad.example' });
  await row.waitFor({ timeout: 10000 });
  await row.getByLabel('Actions for b.phone-ad.example').click();
  await row.getByRole('button', { name: 'Allow b.phone-ad.example' }).click();
  await page.locator('tr.row-note').getByRole('status').filter({ hasText: 'Allowed b.phone-ad.example' }).waitFor();
  assert.notEqual(dig('b.phone-ad.example'), '0.0.0.0');
  assert.ok((await fits(page)) <= 1, 'the query log fits');
  await shot(page, 'phone-05-log-allowed');
  await page.getByRole('navigation', { name: 'DNS sections' }).getByRole('link', { name: 'Lists & rules' }).click();
  await page.getByTestId('my-allow').getByRole('button', { name: 'Remove b.phone-ad.example from my allowlist' }).click();
  await page.getByRole('status').filter({ hasText: 'Removed b.phone-ad.example' }).waitFor();
  assert.equal(dig('b.phone-ad.example'), '0.0.0.0', 'blocked again');
  await shot(page, 'phone-06-my-rules');

  // pause blocking from the navigation for 30 minutes, then resume
  await page.getByTestId('blocking-switch').click();
  await page.getByRole('button', { name: 'Pause 30 minutes' }).first().click();
  await page.getByTestId('blocking-switch').filter({ hasText: /Paused, (30|29):\d\d left/ }).waitFor();
  assert.notEqual(dig('c.phone-ad.example'), '0.0.0.0', 'paused');
  await page.getByTestId('blocking-switch').click();
  await page.getByTestId('resume-blocking').first().click();
  await page.getByTestId('blocking-switch').filter({ hasText: 'Blocking on' }).waitFor();
  assert.equal(dig('d.phone-ad.example'), '0.0.0.0', 'resumed');
  await context.close();
});
