// Browser tests: Debian's Chromium driven by playwright-core against the real hearth binary.
// wizard → login → dashboard shows subsystem states → create a token → settings change → logout.
// Screenshots go to web/test-artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { freePort } from './harness.mjs';

const BIN = process.env.HEARTH_BIN;
const ARTIFACTS = new URL('../test-artifacts/', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let hearth, dir, base, browser, dnsPort, logs = '';

before(async () => {
  assert.ok(BIN, 'set HEARTH_BIN to the hearth binary (tests/run.sh does)');
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'hearth-ui-'));
  const [http, https, dns] = [await freePort(), await freePort(), await freePort()];
  dnsPort = dns;
  writeFileSync(join(dir, 'ads.txt'), '||ads.example^\n');
  base = `http://127.0.0.1:${http}`;
  writeFileSync(
    join(dir, 'hearth.toml'),
    `# ui test\n[server]\nhttp_listen = ["127.0.0.1:${http}"]\nhttps_listen = ["127.0.0.1:${https}"]\ndata_dir = "${dir}/data"\n\n[log]\nlevel = "info"\nformat = "json"\n\n[dns]\nlisten = ["127.0.0.1:${dns}"]\nupstreams = ["udp://127.0.0.1:9"]\n\n[[dns.lists]]\nname = "ads"\nkind = "block"\nsource = "${dir}/ads.txt"\n\n[dns.querylog]\nflush_interval = "200ms"\n`,
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

test('wizard → login → dashboard → token → settings → logout', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));

  // first run: the wizard
  await page.goto(base + '/');
  await page.getByRole('heading', { name: 'Welcome to hearth' }).waitFor();
  await shot(page, '01-wizard');
  await page.getByRole('button', { name: 'Get started' }).click();
  // the one-time setup code hearth wrote to its data dir (security.test.mjs covers wrong codes)
  await page.getByLabel('Setup code').fill(readFileSync(join(dir, 'data', 'setup-code'), 'utf8').trim());
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel(/^Password/).fill('short');
  await page.getByLabel('Repeat the password').fill('short');
  await page.getByRole('button', { name: 'Create admin account' }).click();
  await page.getByRole('alert').filter({ hasText: 'at least 8' }).waitFor();
  await page.getByLabel(/^Password/).fill('correct horse battery');
  await page.getByLabel('Repeat the password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Create admin account' }).click();
  await page.getByRole('status').filter({ hasText: 'is ready' }).waitFor();
  await page.getByRole('button', { name: 'Continue to log in' }).click();

  // login, with one wrong attempt first
  await page.getByRole('heading', { name: 'Log in to hearth' }).waitFor();
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill('wrong password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'wrong user name or password' }).waitFor();
  await shot(page, '02-login-error');
  await page.getByLabel('Password').fill('correct horse battery');
  await page.keyboard.press('Enter');
  // (Enter submits the login form and nothing else: the theme stays as it was)

  // dashboard: live subsystem states
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  const table = page.getByTestId('subsystems');
  for (const name of ['http', 'https', 'storage', 'metrics', 'dns']) {
    await table.locator(`tr[data-subsystem="${name}"] .badge`).filter({ hasText: 'ready' }).waitFor();
  }
  assert.equal(await page.getByTestId('overall').textContent(), 'Healthy');
  assert.match(await page.getByTestId('memory').textContent(), /MiB/);
  // auto-refresh: the uptime moves without a reload
  const up1 = await page.getByTestId('uptime').textContent();
  await page.waitForFunction((u) => document.querySelector('[data-testid=uptime]').textContent !== u, up1, { timeout: 12000 });
  await page.locator('.chart canvas').first().waitFor();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'auto');
  await shot(page, '03-dashboard');

  // DNS: a blocked query shows up in the live query log, with the list and rule that blocked it
  await page.getByRole('link', { name: 'DNS' }).click();
  await page.getByRole('heading', { name: 'Query log' }).waitFor();
  await page.waitForTimeout(300); // the live tail connects
  execFileSync('dig', ['@127.0.0.1', '-p', String(dnsPort), 'tracker.ads.example', '+short', '+tries=1']);
  const row = page.locator('tr[data-outcome="blocked"]').filter({ hasText: 'tracker.ads.example' });
  await row.waitFor({ timeout: 10000 });
  assert.match(await row.textContent(), /ads: \|\|ads\.example\^/);
  await page.getByLabel('Outcome').selectOption('forwarded');
  await page.getByText('No queries yet.').waitFor();
  await page.getByLabel('Outcome').selectOption('');
  await row.waitFor();
  // one click from the row allows it (hearth's own allowlist), at once
  await row.getByRole('button', { name: 'Allow tracker.ads.example' }).click();
  await page.getByRole('status').filter({ hasText: 'Allowed tracker.ads.example' }).waitFor();
  assert.notEqual(execFileSync('dig', ['@127.0.0.1', '-p', String(dnsPort), 'tracker.ads.example', '+short', '+tries=1']).toString().trim(), '0.0.0.0');
  await page.reload();
  await page.getByTestId('top-blocked').filter({ hasText: 'tracker.ads.example' }).waitFor();
  await shot(page, '04-dns');

  // lists: add one through the form; it is compiled and blocks at once; switch another off
  writeFileSync(join(dir, 'extra.txt'), '# mine\n||extra.example^\nnot a rule at all\n');
  await page.getByLabel('Name', { exact: true }).fill('extra');
  await page.getByLabel('Source (URL or file path)').fill(join(dir, 'extra.txt'));
  await page.getByRole('button', { name: 'Add list' }).click();
  await page.getByRole('status').filter({ hasText: 'Added “extra”' }).waitFor();
  const extraRow = page.locator('tr[data-list="extra"]');
  await extraRow.filter({ hasText: '1 lines skipped' }).waitFor();
  assert.equal(execFileSync('dig', ['@127.0.0.1', '-p', String(dnsPort), 'a.extra.example', '+short', '+tries=1']).toString().trim(), '0.0.0.0');
  await page.getByRole('checkbox', { name: 'Use ads' }).uncheck();
  await page.locator('tr[data-list="ads"]').filter({ hasText: 'off' }).waitFor();
  assert.match(readFileSync(join(dir, 'hearth.toml'), 'utf8'), /name = "extra"/);
  await shot(page, '04b-lists');

  // local records, client groups and how names are resolved
  await page.getByLabel('Record name').fill('nas.home.arpa');
  await page.getByLabel('Value').fill('192.168.1.10');
  await page.getByRole('button', { name: 'Add record' }).click();
  await page.getByRole('status').filter({ hasText: 'Added nas.home.arpa A 192.168.1.10' }).waitFor();
  assert.equal(execFileSync('dig', ['@127.0.0.1', '-p', String(dnsPort), 'nas.home.arpa', '+short', '+tries=1']).toString().trim(), '192.168.1.10');
  await page.getByLabel('Record name').fill('bad.home.arpa');
  await page.getByLabel('Value').fill('not-an-ip');
  await page.getByRole('button', { name: 'Add record' }).click();
  await page.getByRole('alert').filter({ hasText: 'dns.records[1]' }).waitFor();
  await page.getByTestId('records').filter({ hasText: 'nas.home.arpa' }).waitFor();
  assert.doesNotMatch(readFileSync(join(dir, 'hearth.toml'), 'utf8'), /bad\.home\.arpa/);
  await page.getByRole('textbox', { name: 'Domain', exact: true }).fill('fritz.box');
  await page.getByRole('textbox', { name: 'Servers', exact: true }).fill('udp://127.0.0.1:9');
  await page.getByRole('button', { name: 'Add zone' }).click();
  await page.getByTestId('forward-zones').filter({ hasText: 'fritz.box' }).filter({ hasText: 'udp://127.0.0.1:9' }).waitFor();
  assert.match(readFileSync(join(dir, 'hearth.toml'), 'utf8'), /domain = "fritz\.box"/);
  await page.getByLabel('Group', { exact: true }).fill('trusted');
  await page.getByRole('textbox', { name: 'Clients' }).fill('127.0.0.1');
  await page.getByRole('checkbox', { name: 'extra', exact: true }).check();
  assert.ok(await page.getByRole('checkbox', { name: 'extra', exact: true }).isChecked());
  await page.getByRole('button', { name: 'Add group' }).click();
  await page.getByRole('status').filter({ hasText: 'Added the group “trusted”' }).waitFor();
  await page.getByTestId('groups').filter({ hasText: '127.0.0.1' }).filter({ hasText: 'extra' }).waitFor();
  assert.match(readFileSync(join(dir, 'hearth.toml'), 'utf8'), /name = "trusted"/);
  await page.getByTestId('upstreams').filter({ hasText: 'udp://127.0.0.1:9' }).waitFor();
  await page.getByTestId('resolution').filter({ hasText: 'DNSSEC validation on' }).waitFor();
  await shot(page, '04c-dns-settings');

  // API tokens: create, see it once, it works, revoke
  await page.getByRole('link', { name: 'API tokens' }).click();
  await page.getByLabel('Name').fill('home-assistant');
  await page.getByRole('button', { name: 'Create token' }).click();
  const secret = (await page.getByTestId('new-token').textContent()).trim();
  assert.match(secret, /^hth_/);
  const r = await fetch(base + '/api/v1/tokens', { headers: { Authorization: 'Bearer ' + secret } });
  assert.equal(r.status, 200);
  await page.locator('tr[data-token="home-assistant"]').waitFor();
  await shot(page, '05-tokens');
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Revoke home-assistant' }).click();
  await page.getByText('No tokens yet.').waitFor();
  assert.equal((await fetch(base + '/api/v1/tokens', { headers: { Authorization: 'Bearer ' + secret } })).status, 401);

  // settings: a bad value names the key, a good one is saved to hearth.toml with its comments
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByLabel(/Session lifetime/).fill('forever');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('alert').filter({ hasText: 'auth.session_ttl' }).waitFor();
  await shot(page, '06-settings-error');
  await page.getByLabel(/Session lifetime/).fill('12h');
  await page.getByLabel(/Log level/).selectOption('debug');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved to' }).waitFor();
  const file = readFileSync(join(dir, 'hearth.toml'), 'utf8');
  assert.match(file, /^# ui test\n/);
  assert.match(file, /level = "debug"/);
  assert.match(file, /session_ttl = "12h"/);

  // keyboard: after a page load the skip link is the first stop, and it moves focus to the content
  await page.reload();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'content');

  // dark mode
  await page.getByRole('button', { name: /Theme:/ }).click();
  await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark');
  assert.equal(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(21, 20, 18)');
  await page.getByRole('link', { name: 'Dashboard' }).click();
  await page.locator('.chart canvas').first().waitFor();
  await shot(page, '07-dashboard-dark');

  // proxy: a bad backend URL is refused naming the key; a good route appears with its backend's health
  await page.getByRole('link', { name: 'Proxy' }).click();
  await page.getByRole('heading', { name: 'Routes' }).waitFor();
  const add = page.getByRole('form', { name: 'Add a route' });
  await add.getByLabel('Host names').fill('jellyfin.home.arpa');
  await add.getByLabel('Backends').fill('ftp://nope');
  await add.getByRole('button', { name: 'Add route' }).click();
  await page.getByRole('alert').filter({ hasText: 'proxy.routes[0].upstreams[0]' }).waitFor();
  await add.getByLabel('Backends').fill('http://127.0.0.1:9');
  await add.getByRole('button', { name: 'Test backend' }).click();
  await page.getByTestId('test-result').filter({ hasText: /refused/i }).waitFor();
  await add.getByRole('button', { name: 'Add route' }).click();
  await page.getByTestId('routes').getByText('https://jellyfin.home.arpa/').waitFor();
  await page.getByRole('link', { name: 'Download the root certificate' }).waitFor();
  await shot(page, '08-proxy');
  assert.match(readFileSync(join(dir, 'hearth.toml'), 'utf8'), /\[\[proxy\.routes\]\]\nhosts = \["jellyfin\.home\.arpa"\]/);

  // memory: the model is ready, a collection is filled from pasted text and an uploaded file, hybrid search finds
  // an exact code that meaning alone would not
  await page.getByRole('link', { name: 'Memory' }).click();
  await page.getByTestId('model-status').getByText(/ready · 384 dimensions/).waitFor({ timeout: 30000 });
  await page.getByRole('form', { name: 'New collection' }).getByRole('textbox', { name: 'Collection name', exact: true }).fill('notes');
  await page.getByRole('button', { name: 'Create collection' }).click();
  await page.getByRole('heading', { name: 'Add documents to notes' }).waitFor();
  const addDocs = page.getByRole('form', { name: 'Add documents' });
  await addDocs.getByRole('textbox', { name: 'Text', exact: true }).fill(
    'The router hands out the Pi as the DNS server.\n\nThe spare key is in the blue box, code ZX-4471-QP.\n\nTomatoes need sun.',
  );
  await addDocs.getByRole('spinbutton', { name: /Chunk size/ }).fill('60');
  writeFileSync(join(dir, 'manual.md'), '# Backups\n\nBack up the SD card every night.\n');
  await addDocs.locator('input[type=file]').setInputFiles(join(dir, 'manual.md'));
  await addDocs.getByRole('button', { name: 'Add to notes' }).click();
  await page.getByTestId('add-progress').filter({ hasText: /Added \d+ chunks from 2 sources/ }).waitFor({ timeout: 30000 });
  await page.getByTestId('collections').getByText('BM25').waitFor();
  const search = page.getByRole('form', { name: 'Search playground' });
  await search.getByRole('textbox', { name: 'Question' }).fill('ZX-4471-QP');
  await search.getByRole('button', { name: 'Search' }).click();
  const firstHit = page.getByTestId('hits').locator('tbody tr').first();
  await firstHit.getByText(/spare key/).waitFor();
  assert.match(await firstHit.textContent(), /pasted#\d/);
  await search.getByRole('textbox', { name: /Metadata filter/ }).fill('{"source": "manual.md"}');
  await search.getByRole('button', { name: 'Search' }).click();
  // the previous answer (4 rows) is replaced by the filtered one
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=hits] tbody tr').length === 1);
  await page.getByTestId('hits').getByText('manual.md#0').waitFor();
  await shot(page, '09-memory');

  // logout returns to the login page, and the session is gone
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Log in to hearth' }).waitFor();
  await page.reload();
  await page.getByRole('heading', { name: 'Log in to hearth' }).waitFor();
  // deliberate 401/422 answers are logged by the browser as failed loads; nothing else may be
  assert.deepEqual(errors.filter((e) => !/status of 4(01|22)/.test(e)), []);
  await context.close();
});

test('narrow screens: the dashboard stays usable on a phone', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
  const page = await context.newPage();
  await page.goto(base + '/');
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByTestId('subsystems').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no horizontal scrolling (${overflow}px)`);
  await shot(page, '08-phone-dark');
  await context.close();
});
