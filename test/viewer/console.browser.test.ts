/**
 * Issue 15, point 4: the operator console attached to a PostgreSQL store. A real scale-out setup (API engine,
 * graphile-worker worker, finX sandbox) produces the syncs on a throwaway schema; the console attaches to that
 * database the way `banksync serve --database-url` does (attachConsole) and is driven from chromium.
 *
 * With BANKSYNC_CONSOLE_SCREENSHOTS=<dir> the test also writes the README's screenshots there
 * (console-list.png, console-tan.png, console-failed.png): `npm run screenshots:console`.
 * Without chromium or PostgreSQL the test is skipped locally and FAILS in CI (CI=true).
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { SyncView } from '../../src/engine/view.js';
import { createDispatchingEngine, startWorker, type BanksyncWorker } from '../../src/dispatch/worker.js';
import { createFinxAdapter, type FinxAdapter } from '../../src/providers/finx/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { attachConsole, type AttachedConsole } from '../../src/viewer/attach.js';
import { startViewer, ViewerConfigError, type Viewer } from '../../src/viewer/index.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const HAS_CHROMIUM = existsSync(CHROMIUM);
const IN_CI = process.env.CI === 'true';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SHOTS = process.env.BANKSYNC_CONSOLE_SCREENSHOTS;
const POLICY = { pollBaseMs: 200, pollMaxMs: 500, authPollMs: 300, retryBaseMs: 100, retryMaxMs: 500 };
const TOKEN = 'console-test-token-0123456789';

type Scenario = 'success' | 'one-challenge' | 'failed' | 'invalid-credentials' | 'two-challenges';

describe.runIf(HAS_CHROMIUM || IN_CI)('operator console on PostgreSQL (chromium)', () => {
  if (!HAS_CHROMIUM) {
    it('has chromium available in CI', () => {
      throw new Error(`chromium not found at ${CHROMIUM}: CI must install it (apt-get install -y chromium)`);
    });
    return;
  }
  if (!postgresAvailable) {
    it.skip('needs PostgreSQL (DATABASE_URL)', () => {});
    return;
  }

  const schema = throwawaySchema('con');
  const graphileSchema = throwawaySchema('congw');
  let sandbox: Sandbox;
  let finx: FinxAdapter;
  let api: Awaited<ReturnType<typeof createDispatchingEngine>>;
  let worker: BanksyncWorker;
  let attached: AttachedConsole;
  let viewer: Viewer;
  let browser: Browser;
  const access = {} as Record<Scenario, string>;
  const sync = {} as Record<Scenario, SyncView>;

  const stored = async (syncId: string) => (await api.store.getSync(syncId))!;
  const until = async (syncId: string, status: string) =>
    vi.waitFor(
      async () => {
        expect((await stored(syncId)).status).toBe(status);
      },
      { timeout: 30_000, interval: 100 },
    );

  beforeAll(async () => {
    sandbox = await startSandbox();
    finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'console-sandbox-token' });
    const common = { databaseUrl: DATABASE_URL, schema, graphileSchema, providers: { finx }, policy: POLICY };
    api = await createDispatchingEngine(common);
    worker = await startWorker({ ...common, concurrency: 4, autosyncCron: false });
    for (const scenario of ['success', 'one-challenge', 'failed', 'invalid-credentials', 'two-challenges'] as const) {
      access[scenario] = (await finx.createAccess({ providerId: 'sandbox-bank', accessMethodId: 'FINTS', credentials: { login: 'u', pin: 'p' }, scenario })).id;
      sync[scenario] = await api.engine.requestSync({ connectionId: access[scenario], provider: 'finx' });
    }
    await until(sync.success.syncId, 'COMPLETED');
    await until(sync.failed.syncId, 'FAILED');
    await until(sync['invalid-credentials'].syncId, 'FAILED');
    await until(sync['one-challenge'].syncId, 'AWAIT_AUTH');
    await until(sync['two-challenges'].syncId, 'AWAIT_AUTH');
    // The console: what `banksync serve --database-url` builds, on the same database.
    attached = await attachConsole({ target: { postgres: { url: DATABASE_URL, schema, graphileSchema } }, providers: { finx }, policy: POLICY });
    viewer = await startViewer({ engine: attached.engine, console: attached.console });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    if (SHOTS) await mkdir(SHOTS, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await viewer?.close();
    await attached?.close();
    await worker?.stop();
    await api?.store.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`);
    await api?.close();
    await sandbox?.close();
  });

  const open = async (hash = ''): Promise<Page> => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('request', (r) => {
      if (!r.url().startsWith(viewer.url)) problems.push(`external request ${r.url()}`);
    });
    (page as Page & { problems: string[] }).problems = problems;
    await page.goto(`${viewer.url}/${hash}`);
    await page.locator('body[data-ready="true"]').waitFor({ timeout: 15_000 });
    return page;
  };
  const rows = (page: Page, list: string) => page.locator(`[data-testid="${list}"] [data-sync]`).evaluateAll((els) => els.map((e) => e.getAttribute('data-sync')));

  it('lists the syncs of the store and filters them by state, provider, tenant and age', async () => {
    const page = await open();
    const all = Object.values(sync).map((s) => s.syncId).sort();
    await expect.poll(async () => (await rows(page, 'syncs')).sort()).toEqual(all);
    expect(await page.locator('[data-testid="mode"]').textContent()).toBe('retry and cancel enabled');

    await page.selectOption('#f-status', 'FAILED');
    await page.locator('[data-testid="apply"]').click();
    await expect.poll(async () => (await rows(page, 'syncs')).sort()).toEqual([sync.failed.syncId, sync['invalid-credentials'].syncId].sort());

    await page.selectOption('#f-status', '');
    await page.fill('#f-provider', 'xs2a');
    await page.locator('[data-testid="apply"]').click();
    await expect.poll(() => rows(page, 'syncs')).toEqual([]);

    await page.fill('#f-provider', 'finx');
    await page.fill('#f-tenant', 'default');
    await page.fill('#f-newer', '60');
    await page.locator('[data-testid="apply"]').click();
    await expect.poll(async () => (await rows(page, 'syncs')).length).toBe(all.length);
    await page.fill('#f-tenant', 'someone-else');
    await page.locator('[data-testid="apply"]').click();
    await expect.poll(() => rows(page, 'syncs')).toEqual([]);

    // Created at least an hour ago: none of these.
    await page.fill('#f-tenant', '');
    await page.fill('#f-newer', '');
    await page.fill('#f-older', '60');
    await page.locator('[data-testid="apply"]').click();
    await expect.poll(() => rows(page, 'syncs')).toEqual([]);

    // A bad value is a clear 400 shown next to the filters; the list stays as it was.
    await page.fill('#f-older', 'soon');
    await page.locator('[data-testid="apply"]').click();
    await page.locator('[data-testid="filter-error"]', { hasText: 'olderThan' }).waitFor();
    expect((page as Page & { problems: string[] }).problems).toEqual([]);
    await page.close();
  });

  it('validates query parameters with a 400 naming the parameter, and pages by keyset', async () => {
    const get = async (path: string) => {
      const res = await fetch(`${viewer.url}${path}`);
      return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string }; syncs?: SyncView[]; next?: string | null } };
    };
    for (const [path, name] of [
      ['/api/console/syncs?status=DONE', 'status'],
      ['/api/console/syncs?olderThan=-1', 'olderThan'],
      ['/api/console/syncs?limit=100000', 'limit'],
      ['/api/console/syncs?after=garbage', 'after'],
      ['/api/console/syncs?stat=FAILED', 'stat'],
      ['/api/console/stale?minutes=x', 'minutes'],
      ['/api/console/connections?kind=all', 'kind'],
    ] as const) {
      const { status, body } = await get(path);
      expect(status, path).toBe(400);
      expect(body.error?.code).toBe('INVALID_REQUEST');
      expect(body.error?.message, path).toContain(name);
    }
    const seen: string[] = [];
    let next: string | null | undefined = null;
    do {
      const { body } = await get(`/api/console/syncs?limit=2${next ? `&after=${encodeURIComponent(next)}` : ''}`);
      seen.push(...body.syncs!.map((s) => s.syncId));
      next = body.next;
    } while (next);
    expect(seen.sort()).toEqual(Object.values(sync).map((s) => s.syncId).sort());
  });

  it('shows stale syncs and connections waiting for the user or stopped by the breaker', async () => {
    // A connection the breaker stopped (xs2a disables after 3 failures in a row; written directly here).
    await api.store.saveConnection({ tenantId: 'default', connectionId: 'conn-disabled', provider: 'finx', state: 'DISABLED', context: { consecutiveFailures: 3 }, updatedAt: Date.now() }, 0);
    const page = await open();
    // Active and not written for 0 minutes: both syncs waiting for the user; for 60 minutes: none yet.
    await page.fill('[data-testid="stale-minutes"]', '0');
    await page.locator('[data-testid="stale-apply"]').click();
    await expect.poll(async () => (await rows(page, 'stale')).sort()).toEqual([sync['one-challenge'].syncId, sync['two-challenges'].syncId].sort());
    await page.fill('[data-testid="stale-minutes"]', '60');
    await page.locator('[data-testid="stale-apply"]').click();
    await expect.poll(() => rows(page, 'stale')).toEqual([]);

    const attention = () => page.locator('[data-testid="attention-row"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-connection')));
    await expect.poll(attention).toEqual(['conn-disabled']);
    await page.locator('.tabs button[data-kind="user"]').click();
    await expect.poll(attention).toEqual([access['invalid-credentials']]);
    // BANK_UNAVAILABLE passes with time: that connection cools down (no stop, no user needed).
    await page.locator('.tabs button[data-kind="cooldown"]').click();
    await expect.poll(attention).toEqual([access.failed]);
    await page.close();
  });

  it('opens a sync zoomed to its current state with the path taken highlighted (a sync waiting for a TAN)', async () => {
    const s = sync['one-challenge'];
    const page = await open(`#sync=${s.syncId}&tenant=default`);
    await page.locator('#sync-status', { hasText: 'AWAIT_AUTH' }).waitFor();
    await page.locator('[data-testid="challenge"]', { hasText: 'EMBEDDED' }).waitFor();
    const diagram = page.locator('[data-testid="diagram"]');
    await page.locator('[data-testid="diagram"][data-focus="current"]').waitFor();
    const view = await diagram.evaluate((box) => {
      const svg = box.querySelector('svg')!;
      const vb = svg.viewBox.baseVal;
      const cur = (svg.querySelector(".bs-current") as unknown as { getBBox(): { x: number; y: number; width: number; height: number } }).getBBox();
      const [fullWidth] = box.getAttribute('data-full')!.split(' ').map(Number);
      const label = svg.querySelector('.bs-label text')!.getBoundingClientRect();
      return {
        inside: cur.x >= vb.x && cur.y >= vb.y && cur.x + cur.width <= vb.x + vb.width && cur.y + cur.height <= vb.y + vb.height,
        zoomed: vb.width < fullWidth!,
        labelPx: label.height,
        taken: svg.querySelectorAll('.bs-edge.bs-taken').length,
        visited: svg.querySelectorAll('.bs-visited').length,
        current: svg.querySelector('.bs-current')!.getAttribute('data-state'),
      };
    });
    expect(view.inside).toBe(true);
    expect(view.zoomed).toBe(true);
    expect(view.labelPx).toBeGreaterThanOrEqual(10);
    expect(view.current).toMatch(/AWAIT_AUTH\.\w+$/);
    expect(view.taken).toBeGreaterThanOrEqual(2);
    expect(view.visited).toBeGreaterThanOrEqual(2);
    if (SHOTS) await page.screenshot({ path: join(SHOTS, 'console-tan.png') });
    await page.locator('[data-testid="focus-toggle"]').click();
    await page.locator('[data-testid="diagram"][data-focus="all"]').waitFor();
    await page.close();
  });

  it('shows a failed sync with its error', async () => {
    const page = await open(`#sync=${sync.failed.syncId}&tenant=default`);
    await page.locator('#sync-status', { hasText: 'FAILED' }).waitFor();
    await page.locator('[data-testid="error"]', { hasText: 'BANK_REJECTED' }).waitFor();
    await page.locator('[data-testid="diagram"] .bs-current[data-state$=".FAILED"]').waitFor();
    if (SHOTS) await page.screenshot({ path: join(SHOTS, 'console-failed.png') });
    await page.close();
  });

  it('cancels an active sync and retries a connection waiting for the user (work goes to the workers)', async () => {
    if (SHOTS) {
      const list = await open(`#sync=${sync.success.syncId}&tenant=default`);
      await list.locator('#sync-status', { hasText: 'COMPLETED' }).waitFor();
      await list.screenshot({ path: join(SHOTS, 'console-list.png'), fullPage: true });
      await list.close();
    }
    const page = await open(`#sync=${sync['two-challenges'].syncId}&tenant=default`);
    await page.locator('#sync-status', { hasText: 'AWAIT_AUTH' }).waitFor();
    await page.locator('[data-testid="cancel"]').click();
    await page.locator('#sync-status', { hasText: 'FAILED' }).waitFor({ timeout: 20_000 });
    const cancelled = await api.engine.get(sync['two-challenges'].syncId);
    expect(cancelled.status).toBe('FAILED');
    expect(cancelled.error?.code).toBe('CANCELLED');

    const before = (await api.store.listSyncs({ connectionId: access['invalid-credentials'] })).length;
    await page.locator('.tabs button[data-kind="user"]').click();
    await page.locator(`[data-testid="attention-row"][data-connection="${access['invalid-credentials']}"] [data-testid="retry"]`).click();
    await expect.poll(async () => (await api.store.listSyncs({ connectionId: access['invalid-credentials'] })).length).toBe(before + 1);
    const [retried] = await api.store.listSyncs({ connectionId: access['invalid-credentials'], limit: 1 });
    // A worker ran it (the console only enqueued it): it went past QUEUED against the sandbox.
    await until(retried!.syncId, 'FAILED');
    expect((await api.store.listTransitions(retried!.syncId)).length).toBeGreaterThan(2);
    await page.close();
  });

  it('refuses actions in a read-only console, cross-origin posts, and binding off loopback without a token', async () => {
    const readOnly = await attachConsole({ target: { postgres: { url: DATABASE_URL, schema } } });
    const ro = await startViewer({ engine: readOnly.engine, console: readOnly.console });
    try {
      const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
        fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
      const refused = await post(`${ro.url}/api/console/syncs/${sync['one-challenge'].syncId}/cancel`, { tenantId: 'default' });
      expect(refused.status).toBe(409);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('READ_ONLY');
      expect((await stored(sync['one-challenge'].syncId)).status).toBe('AWAIT_AUTH');
      const cross = await post(`${viewer.url}/api/console/syncs/${sync['one-challenge'].syncId}/cancel`, { tenantId: 'default' }, { origin: 'https://attacker.example' });
      expect(cross.status).toBe(403);
      expect((await stored(sync['one-challenge'].syncId)).status).toBe('AWAIT_AUTH');
    } finally {
      await ro.close();
      await readOnly.close();
    }

    await expect(startViewer({ engine: attached.engine, console: attached.console, host: '0.0.0.0' })).rejects.toBeInstanceOf(ViewerConfigError);
    const open0 = await startViewer({ engine: attached.engine, console: attached.console, host: '0.0.0.0', token: TOKEN });
    try {
      const port = new URL(open0.url).port;
      const base = `http://127.0.0.1:${port}`;
      expect((await fetch(`${base}/api/console/syncs`)).status).toBe(401);
      expect((await fetch(`${base}/api/console/syncs`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
      expect((await fetch(`${base}/api/console/syncs`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
      const unauthorized = await fetch(`${base}/api/console/syncs`);
      expect(await unauthorized.text()).not.toContain(TOKEN);
      // A browser opens /?token= once and gets a same-site cookie; the page then works without the token in the URL.
      const page = await browser.newPage();
      await page.goto(`${base}/?token=${TOKEN}`);
      await page.locator('body[data-ready="true"]').waitFor({ timeout: 15_000 });
      expect(page.url()).not.toContain('token');
      await expect.poll(async () => (await rows(page, 'syncs')).length).toBeGreaterThan(0);
      await page.close();
    } finally {
      await open0.close();
    }
  });
});
