/**
 * The wealthAPI adapter against the wealthAPI sandbox, over real HTTP (127.0.0.1, random port).
 * The sandbox clock is a variable the tests move (consent ages), shared with the adapter.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Observation } from '../../machines/canonical.js';
import {
  InvalidProviderResponseError,
  ProviderError,
  ProviderInputError,
  UnknownProviderStatusError,
} from '../../src/providers/errors.js';
import type { SyncRef, TriggerRequest } from '../../src/providers/types.js';
import { createWealthAdapter, type WealthAdapter } from '../../src/providers/wealthapi/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { WEALTHAPI_SCENARIOS, wealthSandbox, type WealthConnectionStats, type WealthScenarioName } from '../../src/sandbox/wealthapi.js';

const TOKEN = 'wealth-test-token-0e9d-DO-NOT-LEAK';
const PIN = 'broker-pin-2468';

let clock = Date.parse('2025-03-01T10:00:00.000Z');
let sandbox: Sandbox;
let adapter: WealthAdapter;
const seenErrors: unknown[] = [];
let seq = 0;

async function caught(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    seenErrors.push(error);
    return error as ProviderError;
  }
  throw new Error('expected the call to reject');
}

async function connection(scenario: WealthScenarioName | string): Promise<string> {
  return (await adapter.createConnection({ name: 'Test Broker', credentials: { login: 'jane', pin: PIN }, scenario })).id;
}
function request(connectionId: string, overrides: Partial<TriggerRequest> = {}): TriggerRequest {
  seq += 1;
  return { syncId: `sync-${seq}`, connectionId, scope: 'TRANSACTIONS', idempotencyKey: `sync-${seq}`, since: clock, ...overrides };
}
const stats = (id: string): WealthConnectionStats => sandbox.stats().wealthapi!.connections[id] as WealthConnectionStats;
const poll = (ref: SyncRef) => adapter.poll(ref);
const terminal = (o: Observation) => o.status === 'COMPLETED' || o.status === 'FAILED';
async function until(ref: SyncRef, max = 10): Promise<Observation> {
  for (let i = 0; i < max; i++) {
    const o = await poll(ref);
    if (terminal(o)) return o;
  }
  throw new Error('no terminal reading');
}
async function started(scenario: WealthScenarioName) {
  const connectionId = await connection(scenario);
  const out = await adapter.trigger(request(connectionId));
  return { ref: { connectionId, providerRef: out.providerRef }, first: out.observation };
}

beforeAll(async () => {
  sandbox = await startSandbox({ now: () => clock, providers: [wealthSandbox({ tokens: [TOKEN] })] });
  adapter = createWealthAdapter({ baseUrl: `${sandbox.url}/wealthapi`, token: TOKEN, now: () => clock });
});
afterAll(async () => {
  await sandbox?.close();
});

describe('wealthAPI scenario table', () => {
  it('lists every required scenario with its expected canonical outcome', () => {
    const names = WEALTHAPI_SCENARIOS.map((s) => s.name);
    for (const required of [
      'success',
      'no-manual-sync-required',
      'web-scraping',
      'credentials-not-stored',
      'consent-expired',
      'two-factor-required',
      'concurrent-update',
      'provider-5xx',
      'rate-limited',
      'malformed-body',
      'unknown-status',
    ]) {
      expect(names).toContain(required);
    }
    for (const s of WEALTHAPI_SCENARIOS) {
      if (s.terminal === 'FAILED') expect(s.errorCode, s.name).toBeDefined();
      else expect(s.outcome, s.name).toBeDefined();
    }
    expect(WEALTHAPI_SCENARIOS.filter((s) => s.refusedByPreflight).map((s) => s.name).sort()).toEqual([
      'consent-expired',
      'credentials-not-stored',
      'no-manual-sync-required',
      'web-scraping',
    ]);
  });
});

describe('wealthAPI background update', () => {
  it('success: preflight, then PUT update (all interfaces) -> processId; PENDING/RUNNING -> RUNNING; SUCCESS -> CASH + PORTFOLIO results', async () => {
    const { ref, first } = await started('success');
    expect(first).toEqual({ status: 'RUNNING', progress: 1 });
    expect(stats(ref.connectionId)).toMatchObject({ preflightChecks: 1, reads: 1, updateRequests: 1, updatesStarted: 1 });
    expect(await poll(ref)).toEqual({ status: 'RUNNING', progress: 2 });
    expect(await poll(ref)).toEqual({ status: 'RUNNING', progress: 2 });
    const done = await poll(ref);
    expect(done.status).toBe('COMPLETED');
    if (done.status !== 'COMPLETED') return;
    expect(done.progress).toBe(3);
    expect(done.result.outcome).toBe('COMPLETE');
    expect(done.result.accounts.map((a) => a.kind)).toEqual(['CASH', 'CASH', 'PORTFOLIO']);
    expect(done.result.accounts.every((a) => a.status === 'UPDATED')).toBe(true);
    expect(done.result.accounts[0]?.transactionsAdded).toBe(5);
    expect(done.result.accounts[2]?.transactionsAdded).toBe(2);
    // Without a bankingInterface the update covered every interface.
    const process = await adapter.client.getUpdateProcess(ref.providerRef);
    expect(process.bankingInterfaces).toEqual(['XS2A', 'FINTS_SERVER']);
    // Updated: nothing to do any more, the next background update is refused by the preflight.
    const again = await caught(adapter.trigger(request(ref.connectionId)));
    expect(again).toMatchObject({ code: 'PREFLIGHT_REFUSED', retryable: false, providerCode: 'NO_MANUAL_SYNC_REQUIRED' });
    expect(stats(ref.connectionId).updatesStarted).toBe(1);
  });

  it.each([
    ['no-manual-sync-required', 'PREFLIGHT_REFUSED', /manualSyncRequired is false/],
    ['web-scraping', 'PREFLIGHT_REFUSED', /web-scraping interface/],
    ['credentials-not-stored', 'PREFLIGHT_REFUSED', /did not store the credentials/],
    ['consent-expired', 'CONSENT_EXPIRED', /consent is not ongoing.*90 days/],
  ] as const)('%s: refused by the preflight (%s, not retryable), reason in the message, 0 updates started', async (scenario, code, reason) => {
    const id = await connection(scenario);
    const error = await caught(adapter.trigger(request(id)));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code, retryable: false });
    expect(error.message).toMatch(reason);
    expect(error.toFailure()).toMatchObject({ code, retryable: false });
    expect(stats(id)).toMatchObject({ preflightChecks: 1, updateRequests: 0, updatesStarted: 0 });
  });

  it('the consent limit is 90 days: 89 days is fine, 90 days is expired', async () => {
    // Both last updated 3 days ago.
    const id = await connection('success');
    const other = await connection('success');
    const saved = clock;
    try {
      clock = saved + 86 * 24 * 60 * 60_000; // 89 days
      const out = await adapter.trigger(request(id));
      expect(out.observation.status).toBe('RUNNING');
      clock = saved + 87 * 24 * 60 * 60_000; // 90 days
      expect(await caught(adapter.trigger(request(other)))).toMatchObject({ code: 'CONSENT_EXPIRED' });
      expect(stats(other).updatesStarted).toBe(0);
    } finally {
      clock = saved;
    }
  });

  it('two-factor-required: FAILED with synchronizationError -> SCA_FAILED, not retryable, user action; never repeated', async () => {
    const { ref } = await started('two-factor-required');
    const failed = await until(ref);
    expect(failed.status === 'FAILED' && failed.error).toMatchObject({
      code: 'SCA_FAILED',
      retryable: false,
      userActionRequired: true,
      providerCode: 'TWO_FACTOR_REQUIRED',
    });
    expect(failed.status === 'FAILED' && failed.error.message).toMatch(/TPP web form/);
    expect(stats(ref.connectionId).updatesStarted).toBe(1);
  });

  it('invalid-credentials -> INVALID_CREDENTIALS, bank-error -> BANK_REJECTED (retryable)', async () => {
    const creds = await started('invalid-credentials');
    expect(await until(creds.ref)).toMatchObject({ status: 'FAILED', error: { code: 'INVALID_CREDENTIALS', retryable: false, userActionRequired: true } });
    const bank = await started('bank-error');
    expect(await until(bank.ref)).toMatchObject({ status: 'FAILED', error: { code: 'BANK_REJECTED', retryable: true, userActionRequired: false } });
  });

  it('partial: one cash account failed -> PARTIAL', async () => {
    const { ref } = await started('partial');
    const done = await until(ref);
    expect(done.status === 'COMPLETED' && done.result.outcome).toBe('PARTIAL');
    if (done.status === 'COMPLETED') expect(done.result.accounts.map((a) => `${a.kind}:${a.status}`)).toEqual(['CASH:UPDATED', 'CASH:DOWNLOAD_FAILED', 'PORTFOLIO:UPDATED']);
  });

  it('never two updates at once: a second trigger is PROVIDER_BUSY without a PUT; a raw second PUT gets 409', async () => {
    const { ref } = await started('success');
    const busy = await caught(adapter.trigger(request(ref.connectionId)));
    expect(busy).toMatchObject({ code: 'PROVIDER_BUSY', retryable: true, providerCode: 'UPDATE_IN_PROGRESS' });
    expect(stats(ref.connectionId)).toMatchObject({ updateRequests: 1, updatesStarted: 1 });
    const conflict = await caught(adapter.client.update(ref.connectionId));
    expect(conflict).toMatchObject({ code: 'PROVIDER_BUSY', retryable: true, httpStatus: 409, providerCode: 'UPDATE_IN_PROGRESS' });
    expect(stats(ref.connectionId)).toMatchObject({ updateRequests: 2, updatesStarted: 1, concurrentRefused: 1 });
  });

  it("concurrent-update: another client's update runs -> busy (no PUT); once it ended, ours runs", async () => {
    const id = await connection('concurrent-update');
    const req = request(id);
    expect(await caught(adapter.trigger(req))).toMatchObject({ code: 'PROVIDER_BUSY', retryable: true });
    expect(stats(id).updateRequests).toBe(0);
    // Another client's update is not ours: reconciliation does not adopt it.
    expect(await adapter.findTriggered(req)).toBeNull();
    const out = await adapter.trigger(req);
    expect(await until({ connectionId: id, providerRef: out.providerRef })).toMatchObject({ status: 'COMPLETED' });
    expect(stats(id)).toMatchObject({ updateRequests: 1, updatesStarted: 1, concurrentRefused: 0 });
  });

  it('update-response-lost: findTriggered adopts the process started since `since`; no second update', async () => {
    const id = await connection('update-response-lost');
    const req = request(id);
    expect(await adapter.findTriggered(req)).toBeNull();
    expect(await caught(adapter.trigger(req))).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', retryable: true });
    const found = await adapter.findTriggered(req);
    expect(found).not.toBeNull();
    expect(found!.observation.status).toBe('RUNNING');
    expect(await until({ connectionId: id, providerRef: found!.providerRef })).toMatchObject({ status: 'COMPLETED' });
    expect(stats(id).updatesStarted).toBe(1);
    // A finished process from before `since` is never taken for ours.
    expect(await adapter.findTriggered({ ...req, since: clock + 60_000 })).toBeNull();
  });

  it('every scenario driven like the engine ends as WEALTHAPI_SCENARIOS says; refused ones never started an update', async () => {
    for (const scenario of WEALTHAPI_SCENARIOS) {
      const id = await connection(scenario.name);
      const req = request(id);
      let observation: Observation | undefined;
      let providerRef: string | undefined;
      let outcome: { status: string; detail: string } | undefined;
      for (let attempt = 0; attempt < 6 && !providerRef && !outcome; attempt++) {
        try {
          const out = attempt === 0 ? await adapter.trigger(req) : ((await adapter.findTriggered(req)) ?? (await adapter.trigger(req)));
          providerRef = out.providerRef;
          observation = out.observation;
        } catch (error) {
          seenErrors.push(error);
          if (!(error instanceof ProviderError)) throw error;
          if (!error.retryable) outcome = { status: 'FAILED', detail: error.code };
        }
      }
      for (let step = 0; step < 30 && !outcome; step++) {
        const o = observation;
        observation = undefined;
        if (o?.status === 'COMPLETED') outcome = { status: 'COMPLETED', detail: o.result.outcome };
        else if (o?.status === 'FAILED') outcome = { status: 'FAILED', detail: o.error.code };
        if (outcome) break;
        try {
          observation = await adapter.poll({ connectionId: id, providerRef: providerRef! });
        } catch (error) {
          seenErrors.push(error);
          if (!(error instanceof ProviderError)) throw error;
          if (!error.retryable) outcome = { status: 'FAILED', detail: error.code };
        }
      }
      expect(outcome, scenario.name).toEqual({ status: scenario.terminal, detail: scenario.terminal === 'COMPLETED' ? scenario.outcome : scenario.errorCode });
      if (scenario.refusedByPreflight) expect(stats(id).updatesStarted, scenario.name).toBe(0);
      else expect(stats(id).updatesStarted, scenario.name).toBe(1);
    }
  });
});

describe('wealthAPI faults', () => {
  it('provider-5xx: 503 twice -> PROVIDER_UNAVAILABLE retryable, no process; then one update', async () => {
    const id = await connection('provider-5xx');
    const req = request(id);
    for (let i = 0; i < 2; i++) expect(await caught(adapter.trigger(req))).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', retryable: true, httpStatus: 503 });
    expect(await adapter.findTriggered(req)).toBeNull();
    expect((await adapter.trigger(req)).observation.status).toBe('RUNNING');
    expect(stats(id)).toMatchObject({ updateRequests: 3, updatesStarted: 1 });
  });

  it('rate-limited: 429 -> RATE_LIMITED retryable with retryAfterMs', async () => {
    const id = await connection('rate-limited');
    expect(await caught(adapter.trigger(request(id)))).toMatchObject({ code: 'RATE_LIMITED', retryable: true, retryAfterMs: 1_000 });
  });

  it('malformed-body: invalid JSON and missing fields -> InvalidProviderResponseError, later reads fine', async () => {
    const { ref } = await started('malformed-body');
    const notJson = await caught(poll(ref));
    expect(notJson).toBeInstanceOf(InvalidProviderResponseError);
    const missing = await caught(poll(ref));
    expect(missing).toBeInstanceOf(InvalidProviderResponseError);
    expect((missing as InvalidProviderResponseError).issues.join(' ')).toMatch(/status/);
    expect(await until(ref)).toMatchObject({ status: 'COMPLETED' });
  });

  it('unknown-status: WAITING_FOR_BANK -> UnknownProviderStatusError, never success', async () => {
    const { ref } = await started('unknown-status');
    const error = await caught(poll(ref));
    expect(error).toBeInstanceOf(UnknownProviderStatusError);
    expect(error).toMatchObject({ code: 'UNKNOWN_PROVIDER_STATUS', retryable: false });
    expect((error as UnknownProviderStatusError).value).toBe('WAITING_FOR_BANK');
  });

  it('a raw PUT ignoring the limits fails the update (user interaction required) instead of running it', async () => {
    const id = await connection('web-scraping');
    const { processId } = await adapter.client.update(id);
    const failed = await until({ connectionId: id, providerRef: processId });
    expect(failed).toMatchObject({ status: 'FAILED', error: { code: 'SCA_FAILED', providerCode: 'USER_INTERACTION_REQUIRED', retryable: false } });
  });

  it('401 with a wrong token, 404 for an unknown process; no webhooks, no challenges', async () => {
    const wrongToken = 'wrong-token-9c9c-SHOULD-NOT-APPEAR';
    const other = createWealthAdapter({ baseUrl: `${sandbox.url}/wealthapi`, token: wrongToken });
    const unauthorized = await caught(other.poll({ connectionId: '1', providerRef: 'p' }));
    expect(unauthorized).toMatchObject({ code: 'PROVIDER_UNAUTHORIZED', retryable: false, httpStatus: 401 });
    expect(unauthorized.message).not.toContain(wrongToken);
    expect(await caught(poll({ connectionId: '1', providerRef: 'no-such-process' }))).toMatchObject({ code: 'PROVIDER_ERROR', httpStatus: 404 });
    expect(() => adapter.parseWebhook({ headers: {}, body: '{}' })).toThrow(ProviderInputError);
    expect(await caught(adapter.answerChallenge({ connectionId: '1', providerRef: 'p' }, 'c', 'x'))).toMatchObject({ code: 'PROVIDER_ERROR' });
  });

  it('no error raised in this file mentions the token or the PIN; credentials never echoed', async () => {
    const created = await fetch(`${sandbox.url}/wealthapi/v2/bankConnections`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ credentials: { pin: PIN } }),
    });
    expect(created.status).toBe(201);
    expect(await created.text()).not.toContain(PIN);
    expect(JSON.stringify(sandbox.stats())).not.toContain(PIN);
    expect(seenErrors.length).toBeGreaterThan(10);
    for (const error of seenErrors) {
      const text = `${String((error as Error).message)} ${JSON.stringify(error)} ${String((error as Error).stack)}`;
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain(PIN);
    }
  });
});
