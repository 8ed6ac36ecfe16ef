// Browser test for issue 23: the Dashboards page charts the metrics history (PromQL range queries) for the System,
// Services, DNS, Proxy and Memory boards, switches ranges, zooms by dragging, and shows the store and a broken
// scrape target's error. Debian's Chromium via playwright-core against the real hearth binary, at desktop and
// phone widths, light and dark; screenshots in web/test-artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startHearth, launchBrowser, shot, createAdmin, logIn } from './harness.mjs';

let h, base, browser, bad;

before(async () => {
  // a scrape target that answers something that is not an exposition
  bad = createServer((_req, res) => res.end('this { is not metrics\n'));
  await new Promise((r) => bad.listen(0, '127.0.0.1', r));
  h = await startHearth(
    'dashboards',
    `[metrics]\ninterval = "1s"\nstorage = "memory"\n\n[[metrics.scrape]]\nname = "router"\nurl = "http://127.0.0.1:${bad.address().port}/metrics"\n`,
  );
  ({ base } = h);
  await createAdmin(h);
  browser = await launchBrowser();
  // a few samples to draw
  await new Promise((r) => setTimeout(r, 4000));
});

after(async () => {
  await browser?.close();
  await h?.stop();
  bad?.close();
});

for (const [label, viewport, theme] of [
  ['desktop', { width: 1366, height: 900 }, 'light'],
  ['phone', { width: 390, height: 844 }, 'dark'],
]) {
  test(`the dashboards chart the history and show the store and targets (${label})`, async () => {
    const context = await browser.newContext({ viewport, colorScheme: theme });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await logIn(page, base);
    await page.goto(base + '/dashboards');
    // System: the CPU chart has a line with data (the uPlot legend shows the series)
    const cpu = page.locator('.history-chart', { has: page.getByRole('heading', { name: 'CPU busy' }) });
    await cpu.locator('.u-legend .u-series').nth(1).waitFor();
    await cpu.getByText('all cores').waitFor();
    await page.locator('.history-chart', { has: page.getByRole('heading', { name: 'Memory' }) }).getByText('used').first().waitFor();
    await shot(page, `dashboards-system-${label}`);

    // another range; then a custom range by dragging across a chart
    await page.getByRole('button', { name: '6h' }).click();
    assert.equal(await page.getByRole('button', { name: '6h' }).getAttribute('aria-pressed'), 'true');
    const cpu6 = page.locator('.history-chart[data-range="6h"]', { has: page.getByRole('heading', { name: 'CPU busy' }) });
    await cpu6.locator('.u-legend .u-series').nth(1).waitFor();
    if (label === 'desktop') {
      // drag across the chart: that time range
      const plot = cpu6.locator('.u-over');
      const box = await plot.boundingBox();
      await page.mouse.move(box.x + box.width * 0.8, box.y + box.height / 2);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.98, box.y + box.height / 2, { steps: 5 });
      await page.mouse.up();
    } else {
      // on a phone (no drag), the custom range: the last ten minutes
      const fmt = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
      await page.getByLabel('From').fill(fmt(new Date(Date.now() - 600000)));
      await page.getByLabel('to', { exact: true }).fill(fmt(new Date(Date.now() + 60000)));
      await page.getByRole('button', { name: 'Show' }).click();
    }
    await page.getByRole('button', { name: 'Back to the last hour' }).waitFor();
    await page.getByRole('button', { name: 'Back to the last hour' }).click();

    // the other boards answer without errors
    for (const board of ['Services', 'DNS', 'Proxy', 'Memory (AI)']) {
      await page.getByRole('navigation', { name: 'Dashboards' }).getByRole('link', { name: board }).click();
      await page.locator('.history-chart').first().waitFor();
      assert.equal(await page.locator('.history-chart .error').count(), 0, `${board}: no query error`);
    }
    await page.getByRole('navigation', { name: 'Dashboards' }).getByRole('link', { name: 'DNS' }).click();
    await page.locator('.history-chart', { has: page.getByRole('heading', { name: 'Queries' }) }).waitFor();
    await shot(page, `dashboards-dns-${label}`);

    // the store and the broken target's error, in the parser's words
    await page.getByRole('link', { name: 'Store & targets' }).click();
    await page.getByRole('heading', { name: 'Scrape targets' }).waitFor();
    const row = page.getByRole('row', { name: /router/ });
    await row.getByText('down').waitFor();
    await row.getByText(/invalid exposition text: line 1/).waitFor();
    await shot(page, `dashboards-store-${label}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no sideways scrolling (${overflow}px)`);
    assert.deepEqual(errors, []);
    await context.close();
  });
}
