/**
 * xs2a end to end: engine + SqliteStore(':memory:') + xs2a sandbox + webhook receiver, all over real HTTP.
 * Every scenario runs through the engine; the sandbox counters prove what the provider was (not) asked.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncPolicy } from '../../machines/synchronization.js';
import { DEMO_POLICY } from '../../src/cli/demo/run.js';
import { createEngine, type SyncEngine } from '../../src/engine/engine.js';
import { BanksyncError } from '../../src/engine/errors.js';
import type { SyncView } from '../../src/engine/view.js';
import { createXs2aAdapter, type Xs2aAdapter } from '../../src/providers/xs2a/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { XS2A_SCENARIOS, createXs2aSandbox, type Xs2aConnectionStats } from '../../src/sandbox/xs2a.js';
import { SqliteStore } from '../../src/stores/sqlite.js';

const TOKEN = 'xs2a-e2e-token-DO-NOT-STORE';
const PIN = 'xs2a-e2e-pin-1357';
/** The sandbox signs its deliveries: only authenticated webhooks are applied as provider state. */
const WEBHOOK_SECRET = 'whsec-xs2a-e2e';

interface Rig {
  engine: SyncEngine;
  store: SqliteStore;
  close(): Promise<void>;
}

let sandbox: Sandbox;
let adapter: Xs2aAdapter;
let hooks: Server;
let hooksUrl: string;
const rigs: Rig[] = [];

/** An engine on its own in-memory SQLite store, receiving the sandbox's webhooks, with a user who opens wizard links. */
function rig(policy: Partial<SyncPolicy> = {}): Rig {
  const store = SqliteStore.open(':memory:');
  const engine = createEngine({ store, providers: { xs2a: adapter }, policy: { ...DEMO_POLICY, ...policy }, webhookSecrets: { xs2a: WEBHOOK_SECRET } });
  engine.events.on('sync.awaitingUser', (view) => {
    const url = view.challenge?.redirectUrl;
    if (url) fetch(url).then((r) => r.arrayBuffer()).catch(() => {});
  });
  const r: Rig = {
    engine,
    store,
    async close() {
      await engine.stop();
      await store.close();
    },
  };
  rigs.push(r);
  return r;
}

/** The engine the webhook receiver delivers to. */
let current: Rig;

async function run(r: Rig, connectionId: string, options?: Record<string, unknown>): Promise<SyncView> {
  const view = await r.engine.requestSync({ connectionId, provider: 'xs2a', ...(options ? { options } : {}) });
  return r.engine.waitForTerminal(view.syncId);
}

const stats = (id: string): Xs2aConnectionStats => sandbox.stats().xs2a!.connections[id] as Xs2aConnectionStats;

async function newConnection(scenario: string): Promise<string> {
  return (await adapter.createConnection({ bankName: 'E2E Bank', credentials: { login: 'jane', pin: PIN }, scenario })).id;
}

beforeAll(async () => {
  hooks = createServer((req, res) => current.engine.webhookHandler('xs2a')(req, res));
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
  hooksUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/webhooks/xs2a`;
  sandbox = await startSandbox({ providers: [createXs2aSandbox], webhookSecrets: { xs2a: WEBHOOK_SECRET } });
  sandbox.setWebhookUrl(hooksUrl, 'xs2a');
  adapter = createXs2aAdapter({ baseUrl: `${sandbox.url}/xs2a`, token: TOKEN });
  current = rig();
});

afterAll(async () => {
  for (const r of rigs) await r.close();
  await sandbox?.close();
  hooks?.closeAllConnections();
  await new Promise<void>((resolve) => hooks?.close(() => resolve()));
});

/** Scenarios the adapter refuses from the connection's state, before any sync request. */
const REFUSED_BEFORE_POST = new Set(['inactive-without-force', 'consent-expired']);
const EXPECTED_SYNC_REQUESTS: Record<string, number> = { 'provider-5xx': 3, 'rate-limited': 2 };

describe('xs2a end to end over HTTP (engine + SQLite + sandbox + webhooks)', () => {
  it.each(XS2A_SCENARIOS.map((s) => [s.name, s] as const))('%s ends as scripted', async (_name, scenario) => {
    const id = await newConnection(scenario.name);
    if (scenario.resetFirst) {
      const wizard = await adapter.reset(id);
      expect((await fetch(wizard.redirectUrl)).status).toBe(200);
    }
    const final = await run(current, id, scenario.options);
    expect(final.status).toBe(scenario.terminal);
    if (scenario.errorCode) expect(final.error?.code).toBe(scenario.errorCode);
    if (scenario.outcome) expect(final.result?.outcome).toBe(scenario.outcome);

    const s = stats(id);
    const refused = REFUSED_BEFORE_POST.has(scenario.name);
    expect(s.syncRequests, 'sync requests').toBe(refused ? 0 : (EXPECTED_SYNC_REQUESTS[scenario.name] ?? 1));
    expect(s.syncsStarted, 'syncs started').toBe(refused ? 0 : 1);
    expect(s.forcedSyncs).toBe(scenario.options?.force ? 1 : 0);

    const history = await current.engine.history(final.syncId);
    expect(history[0]?.to).toBe('QUEUED.Triggering');
    expect(history.at(-1)?.to).toBe(scenario.terminal);
    if (scenario.name === 'user-interaction') {
      expect(history.some((t) => t.to.startsWith('AWAIT_AUTH'))).toBe(true);
      expect(s.wizardCompletions).toBe(1);
    }
    if (final.error) expect(final.error.retryable).toBe(false);
    const stored = JSON.stringify(await current.store.getSync(final.syncId));
    expect(stored).not.toContain(PIN);
    expect(stored).not.toContain(TOKEN);
  });

  it('a credential failure is never retried automatically', async () => {
    const id = await newConnection('wrong-password');
    const final = await run(current, id);
    expect(final.error).toMatchObject({ code: 'INVALID_CREDENTIALS', retryable: false, userActionRequired: true });
    // Nothing can retry it: no active sync, no timer left for the connection (a retry needs one of them).
    expect(await current.store.listSyncs({ connectionId: id, active: true })).toEqual([]);
    for (const sync of await current.store.listSyncs({ connectionId: id })) expect(await current.store.listTimers(sync.syncId)).toEqual([]);
    expect(stats(id)).toMatchObject({ syncRequests: 1, syncsStarted: 1, failures: 1 });
    const connection = await current.engine.getConnection(id);
    expect(connection.state).toBe('NEEDS_USER');
    // Unattended (autosync) requests are refused while the user is needed: nothing reaches xs2a.
    const refused = await current.engine.requestSync({ connectionId: id, provider: 'xs2a', unattended: true }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(BanksyncError);
    expect((refused as BanksyncError).code).toBe('SYNC_REFUSED');
    expect(stats(id).syncRequests).toBe(1);
  });

  it('after 3 failures the connection is disabled and a further sync fails CONNECTION_DISABLED without asking xs2a to sync', async () => {
    const id = await newConnection('wrong-password');
    expect((await run(current, id)).error?.code).toBe('INVALID_CREDENTIALS');
    expect(stats(id).syncRequests).toBe(1);
    expect((await run(current, id, { force: true })).error?.code).toBe('INVALID_CREDENTIALS');
    const third = await run(current, id, { force: true });
    expect(third.error).toMatchObject({ code: 'CONNECTION_DISABLED', retryable: false, userActionRequired: true });
    expect(third.error?.message).toMatch(/delete it and create it again/);
    expect(stats(id)).toMatchObject({ syncRequests: 3, syncsStarted: 3, failures: 3, status: 'DISABLED' });

    // The engine's connection breaker now refuses outright.
    expect((await current.engine.getConnection(id)).state).toBe('DISABLED');
    const refused = await current.engine.requestSync({ connectionId: id, provider: 'xs2a', options: { force: true } }).then(
      () => null,
      (e: unknown) => e,
    );
    expect((refused as BanksyncError).code).toBe('SYNC_REFUSED');
    expect((refused as BanksyncError).issues).toEqual(['CONNECTION_DISABLED']);

    // An engine that never saw those failures (another store): the adapter reads the provider's state and
    // fails the sync CONNECTION_DISABLED without sending a sync request.
    const fresh = rig();
    current = fresh;
    try {
      const final = await run(fresh, id, { force: true });
      expect(final.status).toBe('FAILED');
      expect(final.error).toMatchObject({ code: 'CONNECTION_DISABLED', retryable: false, userActionRequired: true });
      expect(stats(id).syncRequests).toBe(3);
      expect(stats(id).refusedDisabled).toBe(0);
    } finally {
      current = rigs[0]!;
    }
  });

  it('webhook-driven completion: the "sync succeeded" event completes the sync before any poll', async () => {
    const webhookOnly = rig({ pollBaseMs: 60_000, pollMaxMs: 60_000 });
    current = webhookOnly;
    try {
      const id = await newConnection('webhook-completion');
      const started = Date.now();
      const final = await run(webhookOnly, id);
      expect(final.status).toBe('COMPLETED');
      expect(final.result?.outcome).toBe('COMPLETE');
      expect(Date.now() - started).toBeLessThan(10_000);
      // One read: the trigger's look at the connection. No poll ever ran.
      expect(stats(id).reads).toBe(1);
      expect(stats(id).webhooks).toBe(2);
      const history = await webhookOnly.engine.history(final.syncId);
      expect(history.map((t) => t.to)).not.toContain('RUNNING.Polling');
      expect(history.at(-1)).toMatchObject({ to: 'COMPLETED', event: 'PROVIDER.OBSERVED' });
    } finally {
      current = rigs[0]!;
    }
  });
});
