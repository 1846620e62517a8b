/**
 * wealthAPI end to end: engine + SqliteStore(':memory:') + wealthAPI sandbox over real HTTP (no webhooks: the
 * update process is polled). The sandbox counters prove that a refused preflight never started an update, that
 * two updates never ran at once, and that a 2FA/credential failure was never retried.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_POLICY } from '../../src/cli/demo/run.js';
import { createEngine, type SyncEngine } from '../../src/engine/engine.js';
import { BanksyncError } from '../../src/engine/errors.js';
import type { SyncView } from '../../src/engine/view.js';
import { createWealthAdapter, type WealthAdapter } from '../../src/providers/wealthapi/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { WEALTHAPI_SCENARIOS, createWealthSandbox, type WealthConnectionStats } from '../../src/sandbox/wealthapi.js';
import { SqliteStore } from '../../src/stores/sqlite.js';

const TOKEN = 'wealth-e2e-token-DO-NOT-STORE';
const PIN = 'wealth-e2e-pin-9753';

let sandbox: Sandbox;
let adapter: WealthAdapter;
let store: SqliteStore;
let engine: SyncEngine;

const stats = (id: string): WealthConnectionStats => sandbox.stats().wealthapi!.connections[id] as WealthConnectionStats;

async function newConnection(scenario: string): Promise<string> {
  return (await adapter.createConnection({ name: 'E2E Broker', credentials: { login: 'jane', pin: PIN }, scenario })).id;
}
async function run(connectionId: string): Promise<SyncView> {
  const view = await engine.requestSync({ connectionId, provider: 'wealthapi' });
  return engine.waitForTerminal(view.syncId);
}

beforeAll(async () => {
  sandbox = await startSandbox({ providers: [createWealthSandbox] });
  adapter = createWealthAdapter({ baseUrl: `${sandbox.url}/wealthapi`, token: TOKEN });
  store = SqliteStore.open(':memory:');
  engine = createEngine({ store, providers: { wealthapi: adapter }, policy: DEMO_POLICY });
});

afterAll(async () => {
  await engine?.stop();
  await sandbox?.close();
  await store?.close();
});

const EXPECTED_UPDATE_REQUESTS: Record<string, number> = { 'provider-5xx': 3, 'rate-limited': 2 };

describe('wealthAPI end to end over HTTP (engine + SQLite + sandbox)', () => {
  it.each(WEALTHAPI_SCENARIOS.map((s) => [s.name, s] as const))('%s ends as scripted', async (_name, scenario) => {
    const id = await newConnection(scenario.name);
    const final = await run(id);
    expect(final.status).toBe(scenario.terminal);
    if (scenario.errorCode) expect(final.error?.code).toBe(scenario.errorCode);
    if (scenario.outcome) expect(final.result?.outcome).toBe(scenario.outcome);

    const s = stats(id);
    expect(s.preflightChecks, 'the preflight ran before anything else').toBeGreaterThanOrEqual(1);
    if (scenario.refusedByPreflight) {
      // Refused: no update was ever requested, and the refusal is final (not retried).
      expect(s).toMatchObject({ updateRequests: 0, updatesStarted: 0, preflightChecks: 1 });
      expect(final.error).toMatchObject({ retryable: false });
    } else {
      expect(s.updatesStarted, 'exactly one update').toBe(1);
      expect(s.updateRequests).toBe(EXPECTED_UPDATE_REQUESTS[scenario.name] ?? 1);
      expect(s.concurrentRefused, 'never two updates at once').toBe(0);
    }
    if (scenario.outcome) {
      const kinds = final.result!.accounts.map((a) => a.kind);
      expect(kinds).toContain('CASH');
      expect(kinds).toContain('PORTFOLIO');
    }
    const history = await engine.history(final.syncId);
    expect(history[0]?.to).toBe('QUEUED.Triggering');
    expect(history.at(-1)?.to).toBe(scenario.terminal);
    const stored = JSON.stringify(await store.getSync(final.syncId));
    expect(stored).not.toContain(PIN);
    expect(stored).not.toContain(TOKEN);
  });

  it.each([
    ['two-factor-required', 'SCA_FAILED'],
    ['invalid-credentials', 'INVALID_CREDENTIALS'],
  ] as const)('%s is never retried automatically', async (scenario, code) => {
    const id = await newConnection(scenario);
    const final = await run(id);
    expect(final.error).toMatchObject({ code, retryable: false, userActionRequired: true });
    // Nothing can retry it: no active sync, no timer left (a retry needs one of them).
    expect(await store.listSyncs({ connectionId: id, active: true })).toEqual([]);
    for (const sync of await store.listSyncs({ connectionId: id })) expect(await store.listTimers(sync.syncId)).toEqual([]);
    expect(stats(id)).toMatchObject({ updateRequests: 1, updatesStarted: 1 });
    const connection = await engine.getConnection(id);
    expect(connection.state).toBe('NEEDS_USER');
    // An autosync (unattended) request is refused while the user is needed: no second update, no 2FA prompt.
    const refused = await engine.requestSync({ connectionId: id, provider: 'wealthapi', unattended: true }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(BanksyncError);
    expect((refused as BanksyncError).issues).toEqual(['USER_REQUIRED']);
    expect(stats(id).updatesStarted).toBe(1);
  });

  it("concurrent-update: while another client's update runs the engine waits (busy, retried with backoff) and starts exactly one update", async () => {
    const id = await newConnection('concurrent-update');
    const final = await run(id);
    expect(final.status).toBe('COMPLETED');
    const history = await engine.history(final.syncId);
    expect(history.map((t) => t.to)).toContain('QUEUED.Backoff');
    expect(stats(id)).toMatchObject({ updateRequests: 1, updatesStarted: 1, concurrentRefused: 0 });
  });

  it('update-response-lost: the retry reconciles with the running process instead of a second update', async () => {
    const id = await newConnection('update-response-lost');
    const final = await run(id);
    expect(final.status).toBe('COMPLETED');
    expect(stats(id)).toMatchObject({ updateRequests: 1, updatesStarted: 1 });
  });
});
