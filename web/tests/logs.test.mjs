// Browser test for issue 24's Logs page: lines pushed to the Loki API show newest first with their labels; the
// source picker and the search box narrow them (a cut IP address found through the word index); live tail brings
// a new line in without a reload; a request id in one of hearth's own lines opens every line of that request.
// Desktop and phone widths, light and dark; screenshots in web/test-artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHearth, launchBrowser, shot, createAdmin, logIn } from './harness.mjs';

let h, base, browser, cookie, csrf;

async function push(lines, labels = { app: 'nas-backup', level: 'error' }) {
  const now = BigInt(Date.now()) * 1_000_000n;
  const values = lines.map((l, i) => [(now + BigInt(i)).toString(), l]);
  const r = await fetch(base + '/loki/api/v1/push', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Cookie: cookie, 'X-CSRF-Token': csrf },
    body: JSON.stringify({ streams: [{ stream: labels, values }] }),
  });
  assert.equal(r.status, 204, await r.text());
}

before(async () => {
  h = await startHearth('logs', `[logs]\nstorage = "memory"\n`);
  ({ base } = h);
  await createAdmin(h);
  const login = await fetch(base + '/api/v1/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: 'correct horse battery' }),
  });
  const body = await login.text();
  assert.equal(login.status, 200, body);
  cookie = login.headers.get('set-cookie').split(';')[0];
  csrf = JSON.parse(body).csrf_token;
  await push(['rsync to 192.168.1.20 failed: connection refused', 'retrying in 60 s']);
  await push(['backup of /srv finished in 42 s'], { app: 'nas-backup', level: 'info' });
  // the writer commits once a second
  await new Promise((r) => setTimeout(r, 1500));
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await h?.stop();
});

for (const [label, viewport, theme] of [
  ['desktop', { width: 1366, height: 900 }, 'light'],
  ['phone', { width: 390, height: 844 }, 'dark'],
]) {
  test(`the Logs page searches, tails and follows a request (${label})`, async () => {
    const context = await browser.newContext({ viewport, colorScheme: theme });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await logIn(page, base);
    await page.getByRole('link', { name: 'Logs' }).first().click();
    await page.getByRole('heading', { name: 'Logs' }).waitFor();
    await page.getByText('backup of /srv finished in 42 s').waitFor();
    await shot(page, `logs-${label}`);

    // the source picker and a search for a cut address
    await page.getByLabel('source').selectOption('push');
    await page.getByLabel('Search the lines').fill('68.1.2');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByText('1 line', { exact: true }).waitFor();
    await page.getByText('rsync to 192.168.1.20 failed: connection refused').waitFor();
    await shot(page, `logs-search-${label}`);

    // live tail: a new matching line appears without a search
    await page.getByLabel('Search the lines').fill('');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByText('backup of /srv finished in 42 s').waitFor();
    await page.getByLabel('Live').check();
    await push([`tail check ${label}`]);
    await page.getByText(`tail check ${label}`).waitFor({ timeout: 10000 });
    await page.getByLabel('Live').uncheck();

    // a request id in hearth's own lines opens every line of that request
    await page.getByLabel('source').selectOption('hearth');
    await page.getByRole('button', { name: 'Search' }).click();
    const link = page.locator('.logline a').first();
    await link.waitFor();
    const rid = await link.textContent();
    await link.click();
    await page.getByLabel('LogQL query').waitFor();
    assert.ok((await page.getByLabel('LogQL query').inputValue()).includes(rid));
    const shown = await page.locator('.logline').allTextContents();
    assert.ok(shown.length >= 1 && shown.every((l) => l.includes(rid)), JSON.stringify(shown));
    await shot(page, `logs-request-${label}`);

    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no sideways scrolling (${overflow}px)`);
    assert.deepEqual(errors, []);
    await context.close();
  });
}
