// Browser test for issue 23's Alerts page: a firing alert is shown with its summary, silenced in two clicks (the
// form prefilled from its labels), the silence listed and ended; "Send test" reports delivery and a refusing
// channel's answer; rules (built-in and configured) and history are listed. Desktop and phone widths, light and
// dark; screenshots in web/test-artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startHearth, launchBrowser, shot, createAdmin, logIn } from './harness.mjs';

let h, base, browser, sink;
const received = [];
let sinkStatus = 200;

before(async () => {
  sink = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      received.push({ url: req.url, body });
      res.statusCode = req.url.startsWith('/broken') ? 500 : sinkStatus;
      res.end(req.url.startsWith('/broken') ? 'the webhook is down' : 'ok');
    });
  });
  await new Promise((r) => sink.listen(0, '127.0.0.1', r));
  const port = sink.address().port;
  h = await startHearth(
    'alerts',
    `[metrics]\ninterval = "1s"\nstorage = "memory"\n\n[alerts]\nevaluation_interval = "1s"\n\n` +
      `[[alerts.rules]]\nname = "AlwaysOn"\nexpr = 'label_replace(vector(42), "room", "attic", "", "")'\nseverity = "critical"\nsummary = "the {{ $labels.room }} reads {{ $value }}"\n\n` +
      `[[alerts.channels]]\nname = "phone"\nurl = "ntfy://127.0.0.1:${port}/hearth?scheme=http"\n\n` +
      `[[alerts.channels]]\nname = "old-webhook"\nurl = "http://127.0.0.1:${port}/broken"\n`,
  );
  ({ base } = h);
  await createAdmin(h);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await h?.stop();
  sink?.close();
});

for (const [label, viewport, theme] of [
  ['desktop', { width: 1366, height: 900 }, 'light'],
  ['phone', { width: 390, height: 844 }, 'dark'],
]) {
  test(`the Alerts page shows, silences and tests (${label})`, async () => {
    const context = await browser.newContext({ viewport, colorScheme: theme });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await logIn(page, base);
    await page.goto(base + '/alerts');
    const now = page.getByTestId('active-alerts');
    await now.getByText('the attic reads 42').waitFor();
    await now.getByText('firing').waitFor();
    // the built-in rules are listed beside the configured one
    await page.getByRole('cell', { name: /DiskAlmostFull/ }).waitFor();
    await shot(page, `alerts-${label}`);

    // silence it: the form is prefilled from the alert's labels
    await now.getByRole('button', { name: 'Silence' }).click();
    const form = page.getByRole('form', { name: 'New silence' });
    assert.equal(await form.getByLabel('Label').first().inputValue(), 'alertname');
    assert.equal(await form.getByLabel('Value').first().inputValue(), 'AlwaysOn');
    await form.getByLabel('Comment').fill(`quiet (${label})`);
    await shot(page, `alerts-silence-form-${label}`);
    await form.getByRole('button', { name: 'Silence' }).click();
    await page.getByText(`quiet (${label})`).waitFor();

    // send test: delivered, then a refusing webhook's answer in words
    await page.getByRole('row', { name: /phone/ }).getByRole('button', { name: 'Send test' }).click();
    await page.getByText('phone: the test notice was delivered.').waitFor();
    assert.ok(received.some((r) => r.url === '/hearth' && r.body.includes('test')));
    await page.getByRole('row', { name: /old-webhook/ }).getByRole('button', { name: 'Send test' }).click();
    await page.getByText(/old-webhook: .*500/).first().waitFor();
    await shot(page, `alerts-channels-${label}`);

    // the history has the firing
    await page.getByRole('heading', { name: 'History' }).waitFor();
    await page.locator('section', { has: page.getByRole('heading', { name: 'History' }) }).getByText('AlwaysOn').first().waitFor();

    // end the silence
    const row = page.getByRole('row', { name: new RegExp(`quiet \\(${label}\\)`) });
    await row.getByRole('button', { name: 'End' }).click();
    await row.waitFor({ state: 'detached' });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no sideways scrolling (${overflow}px)`);
    assert.deepEqual(errors, []);
    await context.close();
  });
}
