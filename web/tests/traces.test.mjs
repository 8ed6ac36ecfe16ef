// Browser test for issue 24's Traces page: proxied requests (one answered 500 by the backend) and admin API
// requests show as traces; the Errors view keeps the failed one; a click draws its span tree (proxy → upstream)
// and a click on a span shows its attributes. Desktop and phone widths, light and dark; screenshots in
// web/test-artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startHearth, launchBrowser, shot, freePort, createAdmin, logIn } from './harness.mjs';

let h, base, browser, backend;

/** A request to the proxied site over hearth's plain HTTP port (the route has `tls = "none"`). */
function site(path) {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path, headers: { Host: 'app.home.arpa' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  const port = await freePort();
  backend = http.createServer((req, res) => {
    res.writeHead(req.url.startsWith('/broken') ? 500 : 200, { 'Content-Type': 'text/plain' });
    res.end(req.headers.traceparent ?? 'none');
  });
  await new Promise((r) => backend.listen(port, '127.0.0.1', r));
  h = await startHearth(
    'traces',
    `[tracing]\nsample_ratio = 1.0\n\n[[proxy.routes]]\nhosts = ["app.home.arpa"]\nupstreams = ["http://127.0.0.1:${port}"]\ntls = "none"\n`,
  );
  ({ base } = h);
  await createAdmin(h);
  assert.equal(await site('/photos/2026'), 200);
  assert.equal(await site('/broken/upload'), 500);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await h?.stop();
  backend?.close();
});

for (const [label, viewport, theme] of [
  ['desktop', { width: 1366, height: 900 }, 'light'],
  ['phone', { width: 390, height: 844 }, 'dark'],
]) {
  test(`the Traces page lists requests and draws a trace's spans (${label})`, async () => {
    const context = await browser.newContext({ viewport, colorScheme: theme });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await logIn(page, base);
    await page.getByRole('link', { name: 'Traces' }).first().click();
    await page.getByRole('heading', { name: 'Traces' }).waitFor();
    await page.getByRole('link', { name: /app\.home\.arpa\/photos\/2026/ }).waitFor();
    await shot(page, `traces-${label}`);

    // only the failed request under Errors; its tree: proxy, then upstream
    await page.getByRole('button', { name: 'Errors' }).click();
    const broken = page.getByRole('link', { name: /\/broken\/upload/ });
    // the list reloads for the new view: the successful request leaves it
    await page.getByRole('link', { name: /\/photos\/2026/ }).waitFor({ state: 'detached' });
    await broken.waitFor();
    await broken.click();
    const tree = page.getByRole('table', { name: 'Spans of the trace' });
    await tree.waitFor();
    const names = await tree.locator('.span-name').allTextContents();
    assert.deepEqual(names.map((n) => n.replace('error', '').trim()), ['proxy', 'upstream']);
    await tree.locator('.span-row').nth(1).click();
    await page.getByText('http.response.status_code').waitFor();
    await shot(page, `traces-tree-${label}`);

    // from the Proxy page's access log: a request's trace, and its log lines
    await page.getByRole('link', { name: 'Proxy' }).first().click();
    const row = page.getByTestId('access-log').locator('tr', { hasText: '/broken/upload' });
    await row.getByRole('link', { name: 'trace' }).click();
    await page.getByRole('heading', { name: 'Traces' }).waitFor();
    await page.getByRole('table', { name: 'Spans of the trace' }).waitFor();
    await page.getByRole('link', { name: 'Proxy' }).first().click();
    await page.getByTestId('access-log').locator('tr', { hasText: '/broken/upload' }).getByRole('link', { name: 'logs' }).click();
    await page.getByRole('heading', { name: 'Logs' }).waitFor();
    assert.match(await page.getByLabel('LogQL query').inputValue(), /\|= "/);

    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no sideways scrolling (${overflow}px)`);
    assert.deepEqual(errors, []);
    await context.close();
  });
}
