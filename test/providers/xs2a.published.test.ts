/**
 * The xs2a adapter against bank connections in the published xs2a.api model (FinTecSystems' SDK BankConnection:
 * `last_synced`, no `status`, no `last_sync`): the sandbox runs with `publishedModel`, so nothing the adapter
 * reads is a sandbox invention. Every sync must still reach its real outcome, never sit in QUEUED.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Observation } from '../../machines/canonical.js';
import { createXs2aAdapter, parseXs2aRef, type Xs2aAdapter } from '../../src/providers/xs2a/index.js';
import { ProviderInputError } from '../../src/providers/errors.js';
import { parseXs2aTime } from '../../src/providers/xs2a/mapping.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { xs2aSandbox, type Xs2aScenarioName } from '../../src/sandbox/xs2a.js';

const TOKEN = 'xs2a-published-token-DO-NOT-LEAK';
let clock = Date.parse('2025-03-01T10:00:00.000Z');
let sandbox: Sandbox;
let adapter: Xs2aAdapter;
let seq = 0;

beforeAll(async () => {
  sandbox = await startSandbox({ now: () => clock, providers: [xs2aSandbox({ tokens: [TOKEN], wizardTtlMs: 60_000, publishedModel: true })] });
  adapter = createXs2aAdapter({ baseUrl: `${sandbox.url}/xs2a`, token: TOKEN, now: () => clock });
});
afterAll(async () => {
  await sandbox?.close();
});

async function started(scenario: Xs2aScenarioName, options?: Record<string, unknown>) {
  const connectionId = (await adapter.createConnection({ bankName: 'Test Bank', scenario })).id;
  seq += 1;
  const out = await adapter.trigger({ syncId: `s${seq}`, connectionId, scope: 'TRANSACTIONS', idempotencyKey: `s${seq}`, since: clock, ...(options ? { options } : {}) });
  return { ref: { connectionId, providerRef: out.providerRef }, first: out.observation };
}

async function until(ref: { connectionId: string; providerRef: string }, done: (o: Observation) => boolean, max = 12): Promise<Observation[]> {
  const seen: Observation[] = [];
  for (let i = 0; i < max; i++) {
    const o = await adapter.poll(ref);
    seen.push(o);
    if (done(o)) return seen;
  }
  throw new Error(`no terminal reading: ${JSON.stringify(seen.map((o) => o.status))}`);
}
const terminal = (o: Observation) => o.status === 'COMPLETED' || o.status === 'FAILED';

describe('xs2a in the published model (no status, no last_sync)', () => {
  it('the sandbox sends neither `status` nor `last_sync`', async () => {
    const id = (await adapter.createConnection({ scenario: 'background-success' })).id;
    const { data } = await adapter.client.getConnection(id);
    expect(data).not.toHaveProperty('status');
    expect(data).not.toHaveProperty('last_sync');
    expect(data).toHaveProperty('last_synced');
  });

  it('background-success: RUNNING until last_synced passes the request, then COMPLETED (no per-account results in the model)', async () => {
    const { ref, first } = await started('background-success');
    expect(first.status).toBe('RUNNING');
    expect(parseXs2aRef(ref.providerRef)).toMatchObject({ connectionId: ref.connectionId, since: clock, failsBefore: 0 });
    const seen = await until(ref, terminal);
    expect(seen.slice(0, -1).every((o) => o.status === 'RUNNING')).toBe(true);
    expect(seen.at(-1)).toEqual({ status: 'COMPLETED', result: { outcome: 'COMPLETE', accounts: [] }, progress: 5 });
  });

  it('wrong-password: a failure counted since the request -> FAILED, not retryable, the user must act', async () => {
    const { ref } = await started('wrong-password');
    const last = (await until(ref, terminal)).at(-1)!;
    expect(last).toMatchObject({ status: 'FAILED', error: { retryable: false, userActionRequired: true } });
  });

  it('user-interaction: 202 -> AWAIT_AUTH; polls keep the challenge (deadline from the ref) until the wizard is done, then COMPLETED', async () => {
    const { ref, first } = await started('user-interaction');
    if (first.status !== 'AWAIT_AUTH') throw new Error(`expected AWAIT_AUTH, got ${first.status}`);
    const again = await adapter.poll(ref);
    expect(again).toEqual(first);
    const page = await fetch(first.challenge.redirectUrl!);
    expect(page.status).toBe(200);
    expect((await until(ref, terminal)).at(-1)!.status).toBe('COMPLETED');
  });

  it('three-failures: the connection is disabled -> CONNECTION_DISABLED', async () => {
    const { ref } = await started('three-failures', { force: true });
    const last = (await until(ref, terminal)).at(-1)!;
    expect(last).toMatchObject({ status: 'FAILED', error: { code: 'CONNECTION_DISABLED', retryable: false } });
  });

  it('events without last_sync cannot name their sync: ProviderInputError, nothing changes', async () => {
    const id = (await adapter.createConnection({ scenario: 'background-success' })).id;
    const { data } = await adapter.client.getConnection(id);
    const body = JSON.stringify({ event: 'bank_connection.sync.succeeded', data });
    expect(() => adapter.parseWebhook({ headers: { 'content-type': 'application/json' }, body })).toThrow(ProviderInputError);
  });

  it('last_synced without an offset is read as UTC whatever the host zone', () => {
    expect(parseXs2aTime('2025-03-01 10:00:00')).toBe(Date.parse('2025-03-01T10:00:00Z'));
    expect(parseXs2aTime('2025-03-01T10:00:00+01:00')).toBe(Date.parse('2025-03-01T09:00:00Z'));
    expect(parseXs2aTime('yesterday')).toBeNull();
  });
});
