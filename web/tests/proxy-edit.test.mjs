// Browser test for issue 20 item 0: editing a fully configured route in the Proxy page (Edit → change a backend →
// Save) keeps every key the form does not show — auth, allow/deny, headers, limits, timeouts — and the file still
// loads. Debian's Chromium driven by playwright-core against the real hearth binary; screenshots in
// web/test-artifacts/ at desktop and phone widths.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, startHearth, launchBrowser, shot, createAdmin, logIn } from './harness.mjs';

let h, dir, base, browser;
const HASH = () => execFileSync(BIN, ['admin', 'hash-password'], { input: 'route secret\n' }).toString().trim();

// every key a route has, none at its default
const ROUTE = (hash) => `[[proxy.routes]]
hosts = ["full.home.arpa"]
path_prefix = "/app"
upstreams = ["http://127.0.0.1:9"]
tls = "internal"
strategy = "least_conn"
strip_prefix = true
health_path = "/health"
health_interval = "5s"
health_status = 204
max_fails = 5
fail_timeout = "1m"
retries = 2
connect_timeout = "3s"
timeout = "2m"
max_body_bytes = 4096
hsts = false
headers = { X-Robots-Tag = "noindex", X-Frame-Options = "" }
rate_limit = 7
rate_limit_burst = 9
basic_auth = ["alice:${hash}"]
forward_auth = true
forward_auth_users = ["admin"]
allow = ["127.0.0.0/8"]
deny = ["127.0.0.9"]
`;

before(async () => {
  h = await startHearth('proxy-edit', `[proxy]\n${ROUTE(HASH())}`);
  ({ dir, base } = h);
  await createAdmin(h);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await h?.stop();
});

async function routeJson(page) {
  return page.evaluate(async () => (await (await fetch('/api/v1/proxy/routes')).json())[0].route);
}

for (const [label, viewport] of [
  ['desktop', { width: 1366, height: 900 }],
  ['phone', { width: 390, height: 844 }],
]) {
  test(`editing a fully configured route keeps every key (${label})`, async () => {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    await logIn(page, base);
    await page.getByRole('link', { name: 'Proxy' }).click();
    await page.getByRole('heading', { name: 'Routes' }).waitFor();
    const before = await routeJson(page);
    assert.equal(before.basic_auth[0], 'alice:(redacted)', 'hashes never leave hearth');
    const fileBefore = readFileSync(join(dir, 'hearth.toml'), 'utf8');

    await page.getByTestId('routes').getByRole('button', { name: 'Edit' }).first().click();
    const form = page.getByRole('form', { name: 'Edit route 0' });
    const backend = label === 'desktop' ? 'http://127.0.0.1:10' : 'http://127.0.0.1:11';
    await form.getByLabel('Backends').fill(backend);
    await shot(page, `proxy-edit-${label}`);
    await form.getByRole('button', { name: 'Save' }).click();
    await page.getByTestId('routes').getByText(backend.replace('http://', '')).first().waitFor();

    const after = await routeJson(page);
    assert.deepEqual(after, { ...before, upstreams: [backend] }, 'every key but the edited one is unchanged');
    const file = readFileSync(join(dir, 'hearth.toml'), 'utf8');
    const hash = /alice:(\$argon2[^"]+)/.exec(fileBefore)[1];
    assert.ok(file.includes(`alice:${hash}`), 'the basic-auth hash is kept in the file:\n' + file);
    assert.ok(!file.includes('(redacted)'), file);
    execFileSync(BIN, ['check-config', join(dir, 'hearth.toml')]);
    await shot(page, `proxy-edited-${label}`);
    await context.close();
  });
}

// the route as the tabs test found it the first time: each run starts from it (the redacted hash is kept by the API)
let original = null;

for (const [label, viewport] of [
  ['desktop', { width: 1366, height: 900 }],
  ['phone', { width: 390, height: 844 }],
]) test(`the route editor shows every key on its tabs, and an edit on each tab keeps the access settings (${label})`, async () => {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  await logIn(page, base);
  original ??= await routeJson(page);
  await page.evaluate(async (route) => {
    const csrf = (await (await fetch('/api/v1/auth/session')).json()).csrf_token;
    const id = (await (await fetch('/api/v1/proxy/routes')).json())[0].id;
    const r = await fetch(`/api/v1/proxy/routes/${id}`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(route),
    });
    if (!r.ok) throw new Error(await r.text());
  }, original);
  await page.getByRole('link', { name: 'Proxy' }).click();
  // the list: a lock and the access rules, and the certificate worded truthfully
  const routes = page.getByTestId('routes');
  await routes.getByTestId('route-access').filter({ hasText: /🔒.*hearth login.*basic auth \(1 user\)/ }).waitFor();
  await routes.getByTestId('route-cert').filter({ hasText: "hearth's CA" }).waitFor();
  const before = await routeJson(page);

  await routes.getByRole('button', { name: 'Edit' }).first().click();
  const form = page.getByRole('form', { name: 'Edit route 0' });
  const tab = (name) => form.getByRole('tab', { name }).click();
  // Details
  assert.equal(await form.getByLabel('Health check path').inputValue(), '/health');
  assert.equal(await form.getByLabel(/Expected status/).inputValue(), '204');
  // TLS: HSTS is off on this route; turn it on
  await tab('TLS');
  const hsts = form.getByRole('checkbox', { name: /HSTS/ });
  assert.equal(await hsts.isChecked(), false);
  await hsts.check();
  await shot(page, `proxy-tab-tls-${label}`);
  // Access: hearth login with its user, alice, the address rules, the rate limit; add bob, raise the limit
  await tab('Access');
  assert.equal(await form.getByRole('checkbox', { name: /Require a hearth login/ }).isChecked(), true);
  assert.equal(await form.getByLabel(/Only these users/).inputValue(), 'admin');
  await form.locator('[data-user="alice"]').waitFor();
  assert.equal(await form.getByLabel(/Allow only these clients/).inputValue(), '127.0.0.0/8');
  assert.equal(await form.getByLabel(/Refuse these clients/).inputValue(), '127.0.0.9');
  await form.getByLabel('New user name').fill('bob');
  await form.getByLabel("New user's password").fill('bob secret pass');
  await form.getByRole('button', { name: 'Add user' }).click();
  await form.locator('[data-user="bob"]').waitFor();
  await form.getByLabel(/Rate limit/).fill('8');
  await shot(page, `proxy-tab-access-${label}`);
  // Advanced: the timeouts, the body limit and the headers as they are; a longer response timeout
  await tab('Advanced');
  assert.equal(await form.getByLabel('Response timeout').inputValue(), '2m');
  assert.equal(await form.getByLabel(/Largest request body/).inputValue(), '4096');
  assert.match(await form.getByLabel(/Response headers/).inputValue(), /X-Robots-Tag: noindex/);
  await form.getByLabel('Response timeout').fill('90s');
  await shot(page, `proxy-tab-advanced-${label}`);
  // a bad value is shown on its tab, next to its field, in words
  await form.getByLabel('Connect timeout').fill('soon');
  await form.getByRole('button', { name: 'Save', exact: true }).click();
  await form.getByRole('alert').filter({ hasText: 'connect_timeout' }).waitFor();
  assert.equal(await form.getByLabel('Connect timeout').getAttribute('aria-invalid'), 'true');
  await form.getByLabel('Connect timeout').fill('3s');
  await form.getByRole('button', { name: 'Save', exact: true }).click();
  await routes.getByTestId('route-access').filter({ hasText: 'basic auth (2 users)' }).waitFor();

  const after = await routeJson(page);
  assert.deepEqual(after.basic_auth, ['alice:(redacted)', 'bob:(redacted)']);
  assert.equal(after.hsts, true);
  assert.equal(after.rate_limit, 8);
  assert.match(after.timeout, /^(90s|1m30s)$/);
  for (const k of ['forward_auth', 'forward_auth_users', 'allow', 'deny', 'headers', 'rate_limit_burst', 'max_body_bytes', 'health_status', 'strategy', 'strip_prefix']) {
    assert.deepEqual(after[k], before[k], k);
  }
  const file = readFileSync(join(dir, 'hearth.toml'), 'utf8');
  assert.match(file, /"bob:\$argon2id\$/, 'the new user is stored as a hash, never the password');
  assert.ok(!file.includes('bob secret pass'));
  execFileSync(BIN, ['check-config', join(dir, 'hearth.toml')]);
  await context.close();
});
