/**
 * The web console in a real browser (Debian's chromium through playwright-core) against a
 * real daemon on 127.0.0.1 booting real guests (issue 18): sign in, create a machine from the
 * default image, type `uname -m` in its terminal and see riscv64, upload a file and read it
 * back in the terminal, fork, see the fork in the list, stop both, and check that a viewer
 * sees no create button and that the API refuses a viewer's create anyway. Screenshots of
 * each page at desktop and phone width go to docs/web/ (shown in docs/web.md).
 *
 * Opt-in (boots guests; a few CPU-minutes): VISOR_WEB_TESTS=1. Needs /usr/bin/chromium
 * (`apt-get install chromium`); without it the test is skipped with the reason, or fails under CI=true.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startDaemon, type RunningDaemon } from '../../src/server/daemon.js';
import { webAssetsBuilt, webAssetsDir } from '../../src/web/assets.js';

const CHROMIUM = process.env.VISOR_CHROMIUM ?? '/usr/bin/chromium';
const enabled = process.env.VISOR_WEB_TESTS === '1';
const haveChromium = existsSync(CHROMIUM);
if (enabled && !haveChromium) {
  const why = `web console tests need ${CHROMIUM} (apt-get install chromium)`;
  if (process.env.CI) throw new Error(why);
  console.warn(`skipping: ${why}`);
}
const SHOTS = resolve(__dirname, '..', '..', 'docs', 'web');

describe.skipIf(!enabled || !haveChromium)('web console in chromium', () => {
  let daemon: RunningDaemon;
  let browser: Browser;
  let stateDir: string;
  let adminToken: string;

  beforeAll(async () => {
    if (!webAssetsBuilt()) {
      const { buildWeb } = await import('../../src/web/build.js');
      await buildWeb();
    }
    stateDir = mkdtempSync(join(tmpdir(), 'visor-web-'));
    daemon = await startDaemon({ stateDir, listen: '127.0.0.1:0', staticDir: webAssetsDir(), logger: (await import('pino')).default({ level: 'warn' }) });
    adminToken = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    mkdirSync(SHOTS, { recursive: true });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await daemon?.stop();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  }, 180_000);

  /** A page that fails the test on any request to a host other than the daemon's. */
  async function newPage(width: number, height: number): Promise<Page> {
    const page = await browser.newPage({ viewport: { width, height } });
    const origin = new URL(daemon.address).origin;
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.protocol.startsWith('http') || u.protocol.startsWith('ws')) {
        if (`${u.protocol.replace('ws', 'http')}//${u.host}` !== origin) throw new Error(`the page requested ${r.url()}, outside the daemon`);
      }
    });
    return page;
  }

  async function signIn(page: Page, token: string): Promise<void> {
    await page.goto(`${daemon.address}/#/signin`);
    await page.getByLabel('API token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForSelector('table.machines');
  }

  async function waitForTerminal(page: Page, testId: string, text: string, timeoutMs = 240_000): Promise<void> {
    await page.waitForFunction(([id, t]) => document.querySelector(`[data-testid="${id}"] .xterm-rows`)?.textContent?.includes(t) ?? false, [testId, text] as const, { timeout: timeoutMs, polling: 250 });
  }

  async function api(method: string, path: string, token: string, body?: unknown): Promise<Response> {
    return fetch(`${daemon.address}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
  }

  it('signs in, runs a machine, uses its terminal and files, forks and stops', async () => {
    const page = await newPage(1280, 860);
    await page.goto(`${daemon.address}/`);
    await page.waitForSelector('form');
    await page.screenshot({ path: join(SHOTS, 'signin-desktop.png') });
    await signIn(page, adminToken);

    // Create from the default image, started.
    await page.getByLabel('name').fill('web-1');
    await page.getByRole('button', { name: 'Create' }).click();
    const row = page.locator('tr[data-id]', { hasText: 'web-1' });
    await row.waitFor({ timeout: 120_000 });
    await page.locator('tr[data-id]', { hasText: 'web-1' }).locator('.state.running').waitFor({ timeout: 120_000 });
    await page.screenshot({ path: join(SHOTS, 'machines-desktop.png') });

    // Its serial console: wait for the shell, then type.
    await row.getByRole('link', { name: 'web-1' }).click();
    await page.locator('[data-testid="console-terminal"]').waitFor();
    await waitForTerminal(page, 'console-terminal', '#');
    await page.locator('[data-testid="console-terminal"]').click();
    await page.keyboard.type('uname -m\n');
    await waitForTerminal(page, 'console-terminal', 'riscv64');
    await page.screenshot({ path: join(SHOTS, 'terminal-desktop.png') });

    // Upload a file through the files tab, then read it in the terminal.
    await page.getByRole('tab', { name: 'files' }).click();
    await page.getByLabel('upload a file').setInputFiles({ name: 'hello.txt', mimeType: 'text/plain', buffer: Buffer.from('uploaded-from-the-browser\n') });
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.getByText('hello.txt').waitFor({ timeout: 60_000 });
    await page.screenshot({ path: join(SHOTS, 'files-desktop.png') });
    await page.getByRole('tab', { name: 'console' }).click();
    await waitForTerminal(page, 'console-terminal', 'riscv64'); // scrollback replayed on reconnect
    await page.locator('[data-testid="console-terminal"]').click();
    await page.keyboard.type('cat /root/hello.txt\n');
    await waitForTerminal(page, 'console-terminal', 'uploaded-from-the-browser');

    // A shell on a pty through the guest agent.
    await page.getByRole('tab', { name: 'shell' }).click();
    await page.locator('[data-testid="shell-terminal"]').waitFor();
    await page.waitForFunction(() => document.querySelector('[data-testid="shell-terminal"]')?.parentElement?.textContent?.includes('connected') ?? false, undefined, { timeout: 60_000 });
    await page.locator('[data-testid="shell-terminal"]').click();
    await page.keyboard.type('echo pty-$((6*7)); tty\n');
    await waitForTerminal(page, 'shell-terminal', 'pty-42');
    await waitForTerminal(page, 'shell-terminal', '/dev/pts/');
    await page.screenshot({ path: join(SHOTS, 'shell-desktop.png') });

    await page.getByRole('tab', { name: 'metrics' }).click();
    await page.waitForTimeout(5000);
    await page.screenshot({ path: join(SHOTS, 'metrics-desktop.png') });

    // Fork from the list, and see the fork appear there (from the events stream).
    await page.goto(`${daemon.address}/#/machines`);
    await page.getByRole('button', { name: 'fork web-1' }).click();
    await page.locator('tr[data-id]', { hasText: 'web-1-fork-' }).waitFor({ timeout: 120_000 });
    expect(await page.locator('tr[data-id]').count()).toBe(2);

    // Phone width: the same pages still work.
    const phone = await newPage(390, 844);
    await signIn(phone, adminToken);
    await phone.screenshot({ path: join(SHOTS, 'machines-phone.png'), fullPage: true });
    await phone.locator('tr[data-id]', { hasText: 'web-1' }).first().getByRole('link').click();
    await phone.locator('[data-testid="console-terminal"]').waitFor();
    await phone.screenshot({ path: join(SHOTS, 'terminal-phone.png') });
    await phone.getByRole('tab', { name: 'files' }).click();
    await phone.getByText('hello.txt').waitFor({ timeout: 60_000 });
    await phone.screenshot({ path: join(SHOTS, 'files-phone.png'), fullPage: true });
    await phone.getByRole('tab', { name: 'metrics' }).click();
    await phone.waitForTimeout(3000);
    await phone.screenshot({ path: join(SHOTS, 'metrics-phone.png'), fullPage: true });
    await phone.goto(`${daemon.address}/#/admin`);
    await phone.getByText('Audit log').waitFor();
    await phone.screenshot({ path: join(SHOTS, 'admin-phone.png'), fullPage: true });
    await phone.goto(`${daemon.address}/#/signin`);
    await phone.screenshot({ path: join(SHOTS, 'signin-phone.png') });

    // Stop both.
    for (const name of ['web-1', 'web-1-fork-']) {
      const r = page.locator('tr[data-id]', { hasText: name }).first();
      await r.getByRole('button', { name: /^stop / }).click();
      await r.locator('.state.stopped').waitFor({ timeout: 120_000 });
    }
    const list = (await (await api('GET', '/v1/machines', adminToken)).json()) as { machines: { name: string; state: string }[] };
    expect(list.machines.map((m) => m.state).sort()).toEqual(['stopped', 'stopped']);

    await page.goto(`${daemon.address}/#/admin`);
    await page.getByText('Audit log').waitFor();
    await page.screenshot({ path: join(SHOTS, 'admin-desktop.png') });

  }, 900_000);

  it('shows a viewer no create button, and the API refuses a viewer anyway', async () => {
    const res = await api('POST', '/v1/tokens', adminToken, { name: 'watcher', role: 'viewer', project: 'default' });
    expect(res.status).toBe(201);
    const viewer = ((await res.json()) as { token: string }).token;
    const page = await newPage(1280, 860);
    await signIn(page, viewer);
    await page.locator('tr[data-id]').first().waitFor();
    expect(await page.getByRole('button', { name: 'Create' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: /^(start|stop|fork|delete) / }).count()).toBe(0);
    await page.screenshot({ path: join(SHOTS, 'machines-viewer-desktop.png') });
    const refused = await api('POST', '/v1/machines', viewer, { name: 'nope' });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBeTruthy();
  }, 120_000);
});
