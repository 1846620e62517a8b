/**
 * The offline viewer end to end: engine + provider sandbox + viewer in-process, driven from Debian's
 * chromium through playwright-core. Without chromium the browser test is skipped locally and FAILS in CI
 * (CI=true), where `.ci/run` installs it.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createWebSocketReceiver } from '@statelyai/inspect';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type SyncEngine } from '../../src/engine/engine.js';
import { createStatelyInspector } from '../../src/engine/inspect.js';
import type { SyncView } from '../../src/engine/view.js';
import { createFinxAdapter, type FinxAdapter } from '../../src/providers/finx/index.js';
import { FINX_CORRECT_TAN } from '../../src/sandbox/finx.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { startViewer, type Viewer } from '../../src/viewer/index.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const HAS_CHROMIUM = existsSync(CHROMIUM);
const IN_CI = process.env.CI === 'true';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Slow enough that the page shows the intermediate states, fast enough for a test. */
const POLICY = { pollBaseMs: 300, pollMaxMs: 600, authPollMs: 300, retryBaseMs: 100, retryMaxMs: 500 };

interface Setup {
  sandbox: Sandbox;
  adapter: FinxAdapter;
  engine: SyncEngine;
  viewer: Viewer;
  access: Record<'success' | 'one-challenge' | 'failed', string>;
  close(): Promise<void>;
}

async function setup(inspect?: Parameters<typeof createEngine>[0]['inspect']): Promise<Setup> {
  const sandbox = await startSandbox();
  const adapter = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'viewer-test-token' });
  const engine = createEngine({ store: new MemoryStore(), providers: { finx: adapter }, policy: POLICY, ...(inspect ? { inspect } : {}) });
  await engine.start();
  const access = {} as Setup['access'];
  for (const scenario of ['success', 'one-challenge', 'failed'] as const) {
    access[scenario] = (
      await adapter.createAccess({ providerId: 'sandbox-bank', accessMethodId: 'FINTS', credentials: { login: 'u', pin: 'p' }, scenario })
    ).id;
  }
  const viewer = await startViewer({
    engine,
    connections: Object.entries(access).map(([scenario, connectionId]) => ({ connectionId, provider: 'finx', label: `finX ${scenario}` })),
  });
  return {
    sandbox,
    adapter,
    engine,
    viewer,
    access,
    async close() {
      await viewer.close();
      await engine.stop();
      await sandbox.close();
    },
  };
}

describe('viewer in a browser (chromium)', () => {
  if (!HAS_CHROMIUM && IN_CI) {
    it('has chromium available in CI', () => {
      throw new Error(`chromium not found at ${CHROMIUM}: CI must install it (apt-get install -y chromium)`);
    });
    return;
  }

  let env: Setup;
  let browser: Browser;
  let shotDir: string;
  beforeAll(async () => {
    if (!HAS_CHROMIUM) return;
    env = await setup();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    shotDir = await mkdtemp(join(tmpdir(), 'banksync-viewer-'));
  });
  afterAll(async () => {
    if (!HAS_CHROMIUM) return;
    await browser?.close();
    await env?.close();
    if (shotDir && !process.env.BANKSYNC_VIEWER_SCREENSHOT) await rm(shotDir, { recursive: true, force: true });
  });

  it.skipIf(!HAS_CHROMIUM)('triggers a sync from the page and follows it live to COMPLETED, with diagram and history', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const failures: string[] = [];
    page.on('pageerror', (e) => failures.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') failures.push(`console: ${m.text()}`);
    });
    const external: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(env.viewer.url)) external.push(r.url());
    });

    await page.goto(env.viewer.url);
    await page.locator('#live.on').waitFor({ timeout: 10_000 });
    const button = page.locator(`[data-testid="sync-now"][data-connection="${env.access.success}"]`);
    await button.click();

    // The page follows the sync through its states without reloading: RUNNING first, then COMPLETED.
    await page.waitForFunction("/^RUNNING/.test(document.querySelector('#sync-state')?.textContent ?? '')", null, { timeout: 15_000 });
    await page.locator('#sync-status', { hasText: 'COMPLETED' }).waitFor({ timeout: 20_000 });
    await page.locator('[data-testid="result"]', { hasText: 'COMPLETE' }).waitFor();

    const [sync] = (await env.engine.list()).filter((s: SyncView) => s.connectionId === env.access.success);
    expect(sync?.status).toBe('COMPLETED');
    // The diagram highlights the final state; the history lists every committed transition.
    await page.locator('#diagram svg .bs-current[data-state$=".COMPLETED"]').waitFor();
    expect(await page.locator('#diagram svg .bs-active').count()).toBe(1);
    // The diagram opens at its actual size (readable labels), scrolled so the current state is in view.
    const inView = await page.locator('#diagram').evaluate((box) => {
      const b = box.getBoundingClientRect();
      const c = box.querySelector('.bs-current')!.getBoundingClientRect();
      const label = box.querySelector('.bs-label text')!.getBoundingClientRect();
      return { inside: c.left >= b.left && c.right <= b.right && c.top >= b.top && c.bottom <= b.bottom, labelPx: label.height };
    });
    expect(inView.inside).toBe(true);
    expect(inView.labelPx).toBeGreaterThanOrEqual(10);
    const history = await env.engine.history(sync!.syncId);
    await expect.poll(() => page.locator('[data-testid="history"] tbody tr').count()).toBe(history.length);
    expect(await page.locator(`[data-sync="${sync!.syncId}"] .badge`).textContent()).toBe('COMPLETED');

    const file = process.env.BANKSYNC_VIEWER_SCREENSHOT ?? join(shotDir, 'viewer.png');
    await page.screenshot({ path: file, fullPage: true });
    const png = await readFile(file);
    expect((await stat(file)).size).toBeGreaterThan(10_000);
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');

    expect(failures).toEqual([]);
    expect(external, 'the page loads nothing from outside the viewer').toEqual([]);
    await page.close();
  });

  it.skipIf(!HAS_CHROMIUM)('answers an embedded challenge (TAN) from the page', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(env.viewer.url);
    await page.locator('#live.on').waitFor({ timeout: 10_000 });
    await page.locator(`[data-testid="sync-now"][data-connection="${env.access['one-challenge']}"]`).click();
    await page.locator('#sync-status', { hasText: 'AWAIT_AUTH' }).waitFor({ timeout: 20_000 });
    await page.locator('#diagram svg .bs-cluster.bs-active[data-state$=".AWAIT_AUTH"]').waitFor();
    await page.locator('[data-testid="challenge"] input').fill(FINX_CORRECT_TAN);
    await page.locator('[data-testid="challenge"] button[type="submit"]').click();
    await page.locator('#sync-status', { hasText: 'COMPLETED' }).waitFor({ timeout: 20_000 });
    // The TAN never reaches the page's data (it went to the engine, which does not store it).
    const data = await (await page.request.get(`${env.viewer.url}/api/syncs`)).text();
    expect(data).not.toContain(FINX_CORRECT_TAN);
    await page.close();
  });
});

describe('viewer HTTP API', () => {
  let env: Setup;
  beforeAll(async () => {
    env = await setup();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('serves a self-contained page with a strict CSP', async () => {
    const res = await fetch(env.viewer.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'nonce-/);
    const html = await res.text();
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=|https?:\/\/(?!www\.w3\.org)/);
  });

  it('POST /api/syncs starts a sync (201), validates its body and accepts only JSON', async () => {
    const post = (body: string, type = 'application/json') =>
      fetch(`${env.viewer.url}/api/syncs`, { method: 'POST', headers: { 'content-type': type }, body });
    const bad = await post(JSON.stringify({ provider: 'finx' }));
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('INVALID_REQUEST');
    expect((await post(JSON.stringify({ connectionId: env.access.failed, provider: 'finx' }), 'text/plain')).status).toBe(415);
    const unknown = await post(JSON.stringify({ connectionId: env.access.failed, provider: 'nope' }));
    expect(unknown.status).toBe(400);

    const created = await post(JSON.stringify({ connectionId: env.access.failed, provider: 'finx' }));
    expect(created.status).toBe(201);
    const { sync } = (await created.json()) as { sync: SyncView };
    const final = await env.engine.waitForTerminal(sync.syncId);
    expect(final.status).toBe('FAILED');
    const detail = (await (await fetch(`${env.viewer.url}/api/syncs/${sync.syncId}`)).json()) as {
      sync: SyncView;
      history: unknown[];
      svg: string;
    };
    expect(detail.sync.status).toBe('FAILED');
    expect(detail.history.length).toBeGreaterThan(2);
    expect(detail.svg).toMatch(/class="bs-state bs-final bs-active bs-current" data-state="[^"]*\.FAILED"/);
    expect((await fetch(`${env.viewer.url}/api/syncs/sync_nope`)).status).toBe(404);
  });

  it('streams committed transitions as Server-Sent Events', async () => {
    const controller = new AbortController();
    const res = await fetch(`${env.viewer.url}/api/events`, { signal: controller.signal });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    const sync = await env.engine.requestSync({ connectionId: env.access.success, provider: 'finx' });
    let text = '';
    const decoder = new TextDecoder();
    while (!text.includes('"status":"COMPLETED"')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    controller.abort();
    const states = [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]!) as SyncView).filter((v) => v.syncId === sync.syncId);
    expect(states.map((v) => v.state)).toContain('RUNNING.Waiting');
    expect(states.at(-1)?.status).toBe('COMPLETED');
  });

  it('refuses requests for other host names (DNS rebinding)', async () => {
    const { request } = await import('node:http');
    const url = new URL(env.viewer.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: url.hostname, port: url.port, path: '/api/syncs', headers: { host: 'attacker.example' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);
  });
});

describe('Stately inspector (WebSocket bridge on localhost)', () => {
  it('relays the inspection events of hosted syncs to inspector clients', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, () => {
        const { port: free } = probe.address() as { port: number };
        probe.close(() => resolve(free));
      });
    });
    const inspector = await createStatelyInspector({ port });
    expect(inspector.url).toBe(`http://localhost:${port}`);
    const receiver = createWebSocketReceiver({ server: `ws://localhost:${port}` });
    const seen: Array<{ type: string; name?: string; snapshot?: { value?: unknown } }> = [];
    receiver.subscribe((event) => seen.push(event as (typeof seen)[number]));
    const env = await setup(inspector.inspect);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const sync = await env.engine.requestSync({ connectionId: env.access.success, provider: 'finx' });
      expect((await env.engine.waitForTerminal(sync.syncId)).status).toBe('COMPLETED');
      await expect.poll(() => seen.some((e) => e.type === '@xstate.snapshot' && JSON.stringify(e.snapshot?.value) === '"COMPLETED"'), { timeout: 5_000 }).toBe(true);
      expect(seen.some((e) => e.type === '@xstate.actor' && e.name === 'sync')).toBe(true);
      expect(seen.some((e) => e.type === '@xstate.event')).toBe(true);
      // The bridge page embeds the Stately inspector UI.
      expect(await (await fetch(inspector.url!)).text()).toContain('stately.ai/inspect');
    } finally {
      await env.close();
      await inspector.stop();
    }
  });

  it('fails clearly when the bridge port is taken', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, resolve));
    const { port } = busy.address() as { port: number };
    try {
      await expect(createStatelyInspector({ port })).rejects.toThrow(/already in use/);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });
});
