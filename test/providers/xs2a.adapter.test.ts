/**
 * The xs2a adapter against the xs2a sandbox, over real HTTP (127.0.0.1, random ports).
 * The sandbox clock is a variable the tests move, so consent dates and wizard deadlines need no waiting.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Observation } from '../../machines/canonical.js';
import {
  InvalidProviderResponseError,
  ProviderError,
  ProviderInputError,
  UnknownProviderStatusError,
} from '../../src/providers/errors.js';
import { createXs2aAdapter, parseXs2aRef, type Xs2aAdapter } from '../../src/providers/xs2a/index.js';
import type { SyncRef, TriggerRequest } from '../../src/providers/types.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { XS2A_SCENARIOS, xs2aSandbox, type Xs2aConnectionStats, type Xs2aScenarioName } from '../../src/sandbox/xs2a.js';

const TOKEN = 'xs2a-test-token-51c2-DO-NOT-LEAK';
const PIN = 'pin-secret-0815';

let clock = Date.parse('2025-03-01T10:00:00.000Z');
let sandbox: Sandbox;
let adapter: Xs2aAdapter;
let hook: { server: Server; url: string; bodies: { headers: IncomingMessage['headers']; body: string }[] };
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

async function connection(scenario: Xs2aScenarioName | string): Promise<string> {
  return (await adapter.createConnection({ bankName: 'Test Bank', credentials: { login: 'jane', pin: PIN }, scenario })).id;
}

function request(connectionId: string, options?: Record<string, unknown>, overrides: Partial<TriggerRequest> = {}): TriggerRequest {
  seq += 1;
  return { syncId: `sync-${seq}`, connectionId, scope: 'TRANSACTIONS', idempotencyKey: `sync-${seq}`, since: clock, ...(options ? { options } : {}), ...overrides };
}

const stats = (id: string): Xs2aConnectionStats => sandbox.stats().xs2a!.connections[id] as Xs2aConnectionStats;
const poll = (ref: SyncRef) => adapter.poll(ref);
const raw = (id: string) => adapter.client.getConnection(id).then((r) => r.data);

async function started(scenario: Xs2aScenarioName, options?: Record<string, unknown>) {
  const connectionId = await connection(scenario);
  const out = await adapter.trigger(request(connectionId, options));
  return { ref: { connectionId, providerRef: out.providerRef }, first: out.observation };
}

async function until(ref: SyncRef, done: (o: Observation) => boolean, max = 10): Promise<Observation> {
  for (let i = 0; i < max; i++) {
    const o = await poll(ref);
    if (done(o)) return o;
  }
  throw new Error('no terminal reading');
}
const terminal = (o: Observation) => o.status === 'COMPLETED' || o.status === 'FAILED';
const errorOf = (o: Observation) => {
  if (o.status !== 'FAILED') throw new Error(`expected FAILED, got ${o.status}`);
  return o.error;
};

beforeAll(async () => {
  const bodies: { headers: IncomingMessage['headers']; body: string }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.statusCode = 204;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  hook = { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/xs2a`, bodies };
  sandbox = await startSandbox({ now: () => clock, providers: [xs2aSandbox({ tokens: [TOKEN], wizardTtlMs: 60_000, timedCompletionMs: 60 })] });
  adapter = createXs2aAdapter({ baseUrl: `${sandbox.url}/xs2a`, token: TOKEN, now: () => clock });
});

afterAll(async () => {
  await sandbox?.close();
  await new Promise<void>((resolve) => hook?.server.close(() => resolve()));
});

describe('xs2a scenario table', () => {
  it('lists every required scenario with its expected canonical outcome', () => {
    const names = XS2A_SCENARIOS.map((s) => s.name);
    for (const required of [
      'background-success',
      'user-interaction',
      'wrong-password',
      'force-resync',
      'three-failures',
      'reset',
      'consent-expired',
      'webhook-completion',
      'provider-5xx',
      'rate-limited',
      'malformed-body',
      'unknown-status',
    ]) {
      expect(names).toContain(required);
    }
    for (const s of XS2A_SCENARIOS) {
      if (s.terminal === 'FAILED') expect(s.errorCode, s.name).toBeDefined();
      else expect(s.outcome, s.name).toBeDefined();
    }
    expect(XS2A_SCENARIOS.find((s) => s.name === 'force-resync')?.options).toEqual({ force: true });
  });
});

describe('xs2a sync lifecycle', () => {
  it('background-success: 204 -> RUNNING (ref connection:attempt) -> COMPLETED with per-account results; no force sent', async () => {
    const { ref, first } = await started('background-success');
    expect(first).toEqual({ status: 'RUNNING', progress: 2 });
    expect(parseXs2aRef(ref.providerRef)).toEqual({ connectionId: ref.connectionId, attempt: 1 });
    expect(await poll(ref)).toEqual({ status: 'RUNNING', progress: 2 });
    const done = await poll(ref);
    expect(done.status).toBe('COMPLETED');
    if (done.status !== 'COMPLETED') return;
    expect(done.progress).toBe(5);
    expect(done.result.outcome).toBe('COMPLETE');
    expect(done.result.accounts).toHaveLength(2);
    expect(done.result.accounts.every((a) => a.kind === 'CASH' && a.status === 'UPDATED')).toBe(true);
    expect(done.result.accounts[0]?.transactionsAdded).toBe(3);
    expect((await poll(ref)).status).toBe('COMPLETED');
    expect(stats(ref.connectionId)).toMatchObject({ syncRequests: 1, syncsStarted: 1, forcedSyncs: 0, failures: 0 });
    const c = await raw(ref.connectionId);
    expect(c).toMatchObject({ sync_active: true, sync_fail_counter: 0, status: 'READY' });
    expect(c.last_synced).not.toBeNull();
  });

  it('user-interaction: 202 -> AWAIT_AUTH WEB_FORM with the wizard link; completing the wizard resumes the sync', async () => {
    const { ref, first } = await started('user-interaction');
    expect(first.status).toBe('AWAIT_AUTH');
    if (first.status !== 'AWAIT_AUTH') return;
    const { challenge } = first;
    expect(first.progress).toBe(3);
    expect(challenge.kind).toBe('WEB_FORM');
    expect(challenge.id).toMatch(/^wiz_/);
    expect(challenge.redirectUrl).toBe(`${sandbox.url}/xs2a/wizard/${challenge.id}`);
    expect(Date.parse(challenge.expiresAt) - clock).toBe(60_000);
    // Waiting for the user: reads do not move it, the challenge stays the same.
    const waiting = await poll(ref);
    expect(waiting.status === 'AWAIT_AUTH' && waiting.challenge.id).toBe(challenge.id);
    expect(waiting.progress).toBe(3);
    // The API cannot answer it: the user acts in the wizard.
    const notAnswerable = await caught(adapter.answerChallenge(ref, challenge.id, 'x'));
    expect(notAnswerable).toMatchObject({ code: 'PROVIDER_ERROR', retryable: false });
    const page = await fetch(challenge.redirectUrl!);
    expect(page.status).toBe(200);
    expect(await poll(ref)).toEqual({ status: 'RUNNING', progress: 4 });
    const done = await until(ref, terminal);
    expect(done.status === 'COMPLETED' && done.result.outcome).toBe('COMPLETE');
    expect(stats(ref.connectionId)).toMatchObject({ syncsStarted: 1, wizardCompletions: 1 });
    // A wizard link works once.
    expect((await fetch(challenge.redirectUrl!)).status).toBe(200);
    expect(stats(ref.connectionId).wizardCompletions).toBe(1);
  });

  it('an expired wizard ends the attempt as CHALLENGE_EXPIRED without counting as a failed sync', async () => {
    const { ref, first } = await started('user-interaction');
    if (first.status !== 'AWAIT_AUTH') throw new Error('expected a wizard');
    const saved = clock;
    clock = Date.parse(first.challenge.expiresAt) + 1;
    try {
      const error = errorOf(await poll(ref));
      expect(error).toMatchObject({ code: 'CHALLENGE_EXPIRED', retryable: false, userActionRequired: true, providerCode: 'WIZARD_EXPIRED' });
      expect((await fetch(first.challenge.redirectUrl!)).status).toBe(410);
      expect(await raw(ref.connectionId)).toMatchObject({ sync_active: true, sync_fail_counter: 0 });
    } finally {
      clock = saved;
    }
  });

  it('wrong-password: FAILED INVALID_CREDENTIALS, never retryable; the connection is inactive and refuses a sync without force', async () => {
    const { ref } = await started('wrong-password');
    const error = errorOf(await until(ref, terminal));
    expect(error).toMatchObject({ code: 'INVALID_CREDENTIALS', retryable: false, userActionRequired: true, providerCode: 'INVALID_CREDENTIALS' });
    expect(error.message).toMatch(/force/);
    expect(await raw(ref.connectionId)).toMatchObject({ sync_active: false, sync_fail_counter: 1, status: 'READY' });
    expect((await raw(ref.connectionId)).sync_message).toMatch(/wrong password/);

    const refused = await caught(adapter.trigger(request(ref.connectionId)));
    expect(refused).toMatchObject({ code: 'PREFLIGHT_REFUSED', retryable: false, userActionRequired: true, providerCode: 'SYNC_INACTIVE' });
    expect(refused.message).toMatch(/force/);
    // A truthy non-boolean is not an explicit force.
    await caught(adapter.trigger(request(ref.connectionId, { force: 'yes' })));
    expect(stats(ref.connectionId)).toMatchObject({ syncRequests: 1, syncsStarted: 1, forcedSyncs: 0 });

    // The provider itself refuses too (race with our reading): 409 SYNC_INACTIVE.
    const direct = await caught(adapter.client.sync(ref.connectionId, false));
    expect(direct).toMatchObject({ code: 'PROVIDER_ERROR', retryable: false, userActionRequired: true, httpStatus: 409, providerCode: 'SYNC_INACTIVE' });
    expect(stats(ref.connectionId).refusedInactive).toBe(1);
  });

  it('inactive-without-force: refused before any POST, with the hint that force is needed', async () => {
    const id = await connection('inactive-without-force');
    const error = await caught(adapter.trigger(request(id)));
    expect(error).toMatchObject({ code: 'PREFLIGHT_REFUSED', retryable: false, userActionRequired: true });
    expect(error.message).toMatch(/options\.force = true/);
    expect(stats(id).syncRequests).toBe(0);
  });

  it('force-resync: only options.force === true sends force; success resets sync_fail_counter', async () => {
    const { ref, first } = await started('force-resync', { force: true });
    expect(first.status).toBe('RUNNING');
    expect(stats(ref.connectionId)).toMatchObject({ syncRequests: 1, forcedSyncs: 1 });
    const done = await until(ref, terminal);
    expect(done.status === 'COMPLETED' && done.result.outcome).toBe('COMPLETE');
    expect(await raw(ref.connectionId)).toMatchObject({ sync_active: true, sync_fail_counter: 0, sync_message: null });
  });

  it('three failures in a row disable the connection: CONNECTION_DISABLED, then no sync request is ever sent again', async () => {
    const id = await connection('wrong-password');
    const run = async (options?: Record<string, unknown>) => {
      const out = await adapter.trigger(request(id, options));
      return until({ connectionId: id, providerRef: out.providerRef }, terminal);
    };
    expect(errorOf(await run()).code).toBe('INVALID_CREDENTIALS');
    const second = errorOf(await run({ force: true }));
    expect(second.code).toBe('INVALID_CREDENTIALS');
    expect(second.message).toMatch(/1 more failure in a row disables it/);
    const third = errorOf(await run({ force: true }));
    expect(third).toMatchObject({ code: 'CONNECTION_DISABLED', retryable: false, userActionRequired: true });
    expect(third.message).toMatch(/delete it and create it again/);
    expect(await raw(id)).toMatchObject({ status: 'DISABLED', sync_fail_counter: 3, sync_active: false });
    expect(stats(id)).toMatchObject({ syncRequests: 3, syncsStarted: 3, failures: 3, status: 'DISABLED' });

    for (const options of [undefined, { force: true }]) {
      const refused = await caught(adapter.trigger(request(id, options)));
      expect(refused).toMatchObject({ code: 'CONNECTION_DISABLED', retryable: false, userActionRequired: true });
      expect(refused.message).toMatch(/delete it and create it again/);
    }
    expect(stats(id).syncRequests).toBe(3);
    // The provider refuses as well: 409 CONNECTION_DISABLED.
    const direct = await caught(adapter.client.sync(id, true));
    expect(direct).toMatchObject({ code: 'CONNECTION_DISABLED', httpStatus: 409, retryable: false, userActionRequired: true });
    expect(stats(id).refusedDisabled).toBe(1);
    // Reset still answers 202 with a new key, but a disabled connection stays disabled.
    const wizard = await adapter.reset(id);
    expect((await fetch(wizard.redirectUrl)).status).toBe(200);
    expect((await raw(id)).status).toBe('DISABLED');
    // Delete and recreate is the only way on.
    await adapter.deleteConnection(id);
    const gone = await caught(adapter.poll({ connectionId: id, providerRef: `${id}:3` }));
    expect(gone).toMatchObject({ code: 'PROVIDER_ERROR', httpStatus: 404 });
    expect(stats(id).status).toBe('DELETED');
  });

  it('three-failures scenario: counter 2, a forced sync fails -> CONNECTION_DISABLED', async () => {
    const { ref } = await started('three-failures', { force: true });
    expect(errorOf(await until(ref, terminal)).code).toBe('CONNECTION_DISABLED');
  });

  it('reset: always 202 with a NEW wizard key; older keys stop working; the completed wizard re-activates the connection', async () => {
    const id = await connection('reset');
    expect(await raw(id)).toMatchObject({ sync_active: false, sync_fail_counter: 2 });
    const first = await adapter.reset(id);
    const second = await adapter.reset(id);
    expect(second.wizardSessionKey).not.toBe(first.wizardSessionKey);
    expect(second.redirectUrl).toBe(`${sandbox.url}/xs2a/wizard/${second.wizardSessionKey}`);
    expect((await fetch(first.redirectUrl)).status).toBe(404);
    expect((await fetch(second.redirectUrl)).status).toBe(200);
    expect(stats(id)).toMatchObject({ resets: 2, wizardCompletions: 1, syncRequests: 0 });
    // The reset's sync runs; afterwards the connection is active again and syncs without force.
    let c = await raw(id);
    for (let i = 0; i < 3 && c.last_sync?.state !== 'SUCCEEDED'; i++) c = await raw(id);
    expect(c).toMatchObject({ sync_active: true, sync_fail_counter: 0 });
    expect(c.last_sync).toMatchObject({ origin: 'reset', state: 'SUCCEEDED' });
    const out = await adapter.trigger(request(id));
    const done = await until({ connectionId: id, providerRef: out.providerRef }, terminal);
    expect(done.status).toBe('COMPLETED');
    expect(stats(id).forcedSyncs).toBe(0);
  });

  it('a reset while a sync waits for the user supersedes it: the newer attempt is followed', async () => {
    const { ref, first } = await started('user-interaction');
    if (first.status !== 'AWAIT_AUTH') throw new Error('expected a wizard');
    const wizard = await adapter.reset(ref.connectionId);
    const followed = await poll(ref);
    expect(followed.status === 'AWAIT_AUTH' && followed.challenge.id).toBe(wizard.wizardSessionKey);
    expect((await fetch(first.challenge.redirectUrl!)).status).toBe(404);
  });

  it('consent-expired: refused before any POST with CONSENT_EXPIRED; the provider would fail the sync (and count it)', async () => {
    const id = await connection('consent-expired');
    const error = await caught(adapter.trigger(request(id)));
    expect(error).toMatchObject({ code: 'CONSENT_EXPIRED', retryable: false, userActionRequired: true });
    expect(error.message).toMatch(/reset/);
    expect(stats(id).syncRequests).toBe(0);
    // What the check spares the connection: a raw sync fails and increments the counter.
    await adapter.client.sync(id, false);
    const observed = await until({ connectionId: id, providerRef: `${id}:1` }, terminal);
    expect(errorOf(observed).code).toBe('CONSENT_EXPIRED');
    expect((await raw(id)).sync_fail_counter).toBe(1);
  });

  it('partial-accounts: one account could not be updated -> PARTIAL', async () => {
    const { ref } = await started('partial-accounts');
    const done = await until(ref, terminal);
    expect(done.status === 'COMPLETED' && done.result).toMatchObject({ outcome: 'PARTIAL' });
    if (done.status === 'COMPLETED') expect(done.result.accounts.map((a) => a.status)).toEqual(['UPDATED', 'DOWNLOAD_FAILED']);
  });

  it('a sync is never started twice: a trigger while one runs follows it; a raw POST gets PROVIDER_BUSY', async () => {
    const { ref } = await started('background-success');
    const again = await adapter.trigger(request(ref.connectionId));
    expect(again.providerRef).toBe(ref.providerRef);
    const busy = await caught(adapter.client.sync(ref.connectionId, false));
    expect(busy).toMatchObject({ code: 'PROVIDER_BUSY', retryable: true, httpStatus: 409, providerCode: 'SYNC_IN_PROGRESS' });
    expect(stats(ref.connectionId)).toMatchObject({ syncRequests: 2, syncsStarted: 1, refusedInProgress: 1 });
  });

  it('every scenario driven like the engine ends as XS2A_SCENARIOS says', async () => {
    for (const scenario of XS2A_SCENARIOS) {
      const id = await connection(scenario.name);
      if (scenario.resetFirst) {
        const wizard = await adapter.reset(id);
        expect((await fetch(wizard.redirectUrl)).status).toBe(200);
      }
      const req = request(id, scenario.options);
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
        else if (o?.status === 'AWAIT_AUTH' && o.challenge.redirectUrl) await (await fetch(o.challenge.redirectUrl)).arrayBuffer();
        if (outcome) break;
        if (scenario.name === 'webhook-completion') await new Promise((resolve) => setTimeout(resolve, 25));
        try {
          observation = await adapter.poll({ connectionId: id, providerRef: providerRef! });
        } catch (error) {
          seenErrors.push(error);
          if (!(error instanceof ProviderError)) throw error;
          if (!error.retryable) outcome = { status: 'FAILED', detail: error.code };
        }
      }
      expect(outcome, scenario.name).toEqual({
        status: scenario.terminal,
        detail: scenario.terminal === 'COMPLETED' ? scenario.outcome : scenario.errorCode,
      });
    }
  });
});

describe('xs2a faults and reconciliation', () => {
  it('provider-5xx: 503 twice -> PROVIDER_UNAVAILABLE retryable, nothing started; then the sync starts once', async () => {
    const id = await connection('provider-5xx');
    const req = request(id);
    for (let i = 0; i < 2; i++) {
      const error = await caught(adapter.trigger(req));
      expect(error).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', retryable: true, httpStatus: 503 });
    }
    expect(await adapter.findTriggered(req)).toBeNull();
    expect((await adapter.trigger(req)).observation.status).toBe('RUNNING');
    expect(stats(id)).toMatchObject({ syncRequests: 3, syncsStarted: 1 });
  });

  it('rate-limited: 429 -> RATE_LIMITED retryable with retryAfterMs from Retry-After', async () => {
    const id = await connection('rate-limited');
    const error = await caught(adapter.trigger(request(id)));
    expect(error).toMatchObject({ code: 'RATE_LIMITED', retryable: true, retryAfterMs: 1_000 });
    expect(error.toFailure()).toMatchObject({ code: 'RATE_LIMITED', retryAfterMs: 1_000 });
  });

  it('sync-response-lost: findTriggered recognises the attempt started since `since`; a finished older one is not ours', async () => {
    const id = await connection('sync-response-lost');
    const req = request(id);
    expect(await adapter.findTriggered(req)).toBeNull();
    expect(await caught(adapter.trigger(req))).toMatchObject({ code: 'PROVIDER_UNAVAILABLE' });
    const found = await adapter.findTriggered(req);
    expect(found?.providerRef).toBe(`${id}:1`);
    expect(found?.observation.status).toBe('RUNNING');
    const done = await until({ connectionId: id, providerRef: found!.providerRef }, terminal);
    expect(done.status).toBe('COMPLETED');
    expect(stats(id).syncsStarted).toBe(1);
    // A later sync request must not take that finished attempt for its own.
    clock += 60_000;
    expect(await adapter.findTriggered(request(id))).toBeNull();
    clock -= 60_000;
  });

  it('malformed-body: invalid JSON and missing fields -> InvalidProviderResponseError (retryable), later reads fine', async () => {
    const { ref } = await started('malformed-body');
    const notJson = await caught(poll(ref));
    expect(notJson).toBeInstanceOf(InvalidProviderResponseError);
    expect(notJson).toMatchObject({ code: 'INVALID_RESPONSE', retryable: true });
    const missing = await caught(poll(ref));
    expect(missing).toBeInstanceOf(InvalidProviderResponseError);
    expect((missing as InvalidProviderResponseError).issues.join(' ')).toMatch(/sync_active/);
    expect((await until(ref, terminal)).status).toBe('COMPLETED');
  });

  it('unknown-status: SUSPENDED_BY_BANK -> UnknownProviderStatusError, never success', async () => {
    const { ref } = await started('unknown-status');
    await poll(ref);
    const error = await caught(poll(ref));
    expect(error).toBeInstanceOf(UnknownProviderStatusError);
    expect(error).toMatchObject({ code: 'UNKNOWN_PROVIDER_STATUS', retryable: false });
    expect((error as UnknownProviderStatusError).value).toBe('SUSPENDED_BY_BANK');
  });

  it('401 with a wrong API key -> PROVIDER_UNAUTHORIZED, not retryable, token not in the message', async () => {
    const wrongToken = 'wrong-token-77a1-SHOULD-NOT-APPEAR';
    const other = createXs2aAdapter({ baseUrl: `${sandbox.url}/xs2a`, token: wrongToken });
    const error = await caught(other.poll({ connectionId: 'bc_x', providerRef: 'bc_x:1' }));
    expect(error).toMatchObject({ code: 'PROVIDER_UNAUTHORIZED', retryable: false, httpStatus: 401 });
    expect(JSON.stringify(error.toFailure()) + error.message).not.toContain(wrongToken);
  });

  it('a providerRef that is not connection:attempt of this connection is rejected', async () => {
    const id = await connection('background-success');
    expect(await caught(poll({ connectionId: id, providerRef: 'nonsense' }))).toMatchObject({ code: 'PROVIDER_ERROR', retryable: false });
    expect(await caught(poll({ connectionId: id, providerRef: 'bc_other:1' }))).toMatchObject({ code: 'PROVIDER_ERROR' });
  });

  it('the paged list shows every connection', async () => {
    const first = await adapter.client.listConnections(1, 2);
    expect(first.data.per_page).toBe(2);
    expect(first.data.total).toBeGreaterThan(2);
    expect(first.data.data).toHaveLength(2);
    expect(first.data.next_page_url).toMatch(/page=2/);
    const last = await adapter.client.listConnections(first.data.last_page, 2);
    expect(last.data.next_page_url).toBeNull();
  });
});

describe('xs2a bank connection events (webhooks)', () => {
  it('sync started / succeeded events parse into canonical observations with the attempt ref and growing ranks', async () => {
    hook.bodies.length = 0;
    sandbox.setWebhookUrl(hook.url, 'xs2a');
    try {
      const { ref } = await started('webhook-completion');
      // The sandbox runs the attempt by itself; wait for its final event, then for every queued delivery.
      await expect.poll(() => hook.bodies.length, { timeout: 10_000, interval: 20 }).toBeGreaterThanOrEqual(2);
      await sandbox.webhooksIdle();
      const deliveries = hook.bodies.map((b) => adapter.parseWebhook({ headers: b.headers as Record<string, string>, body: b.body }));
      expect(deliveries.map((d) => d.providerRef)).toEqual([ref.providerRef, ref.providerRef]);
      expect(deliveries.map((d) => [d.observation.status, d.observation.progress])).toEqual([
        ['RUNNING', 2],
        ['COMPLETED', 5],
      ]);
      expect(stats(ref.connectionId).webhooks).toBe(2);
      // Reads never moved it: it finished by itself.
      expect(stats(ref.connectionId).reads).toBe(1);
      for (const b of hook.bodies) expect(b.body).not.toContain(PIN);

      hook.bodies.length = 0;
      const failing = await started('wrong-password');
      await until(failing.ref, terminal);
      await sandbox.webhooksIdle();
      const failed = hook.bodies.map((b) => adapter.parseWebhook({ headers: {}, body: b.body })).at(-1)!;
      expect(failed.providerRef).toBe(failing.ref.providerRef);
      expect(failed.observation.status === 'FAILED' && failed.observation.error.code).toBe('INVALID_CREDENTIALS');
    } finally {
      sandbox.setWebhookUrl(undefined, 'xs2a');
    }
  });

  it('garbage and contradictory event bodies throw ProviderInputError and nothing else', () => {
    const connectionBody = {
      id: 'bc_1',
      bank_name: 'B',
      sync_mode: 'full',
      sync_active: true,
      sync_message: null,
      sync_fail_counter: 0,
      last_synced: null,
      consent_valid_until: '2025-05-01',
      status: 'READY',
      last_sync: { attempt: 2, state: 'RUNNING', started_at: '2025-03-01T10:00:00.000Z' },
    };
    const ok = adapter.parseWebhook({ headers: {}, body: JSON.stringify({ event: 'bank_connection.sync.started', data: connectionBody }) });
    expect(ok).toEqual({ providerRef: 'bc_1:2', connectionId: 'bc_1', observation: { status: 'RUNNING', progress: 2 } });
    const garbage: unknown[] = [
      '',
      'not json',
      '{"event":',
      'null',
      '{}',
      JSON.stringify({ event: 'bank_connection.deleted', data: connectionBody }),
      JSON.stringify({ event: 'bank_connection.sync.succeeded', data: connectionBody }),
      JSON.stringify({ event: 'bank_connection.sync.started', data: { ...connectionBody, last_sync: null } }),
      JSON.stringify({ event: 'bank_connection.sync.started', data: { ...connectionBody, last_sync: { ...connectionBody.last_sync, state: 'PAUSED' } } }),
      JSON.stringify({ event: 'bank_connection.sync.started', data: { ...connectionBody, sync_mode: 'sometimes' } }),
      JSON.stringify({ event: 'bank_connection.sync.succeeded', data: { ...connectionBody, last_sync: { ...connectionBody.last_sync, state: 'SUCCEEDED' } } }),
      42,
      undefined,
    ];
    for (const body of garbage) {
      let thrown: unknown;
      try {
        adapter.parseWebhook({ headers: {}, body: body as string });
      } catch (error) {
        thrown = error;
      }
      expect(thrown, String(body)).toBeInstanceOf(ProviderInputError);
      seenErrors.push(thrown);
    }
    expect(() =>
      adapter.parseWebhook({ headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ event: 'bank_connection.sync.started', data: connectionBody }) }),
    ).toThrow(ProviderInputError);
  });
});

describe('xs2a sandbox surface', () => {
  it('answers 401 without the API key (HTTP Basic, user api) and to a bearer token; never echoes credentials', async () => {
    const noAuth = await fetch(`${sandbox.url}/xs2a/api/v1/bank-connections`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(noAuth.status).toBe(401);
    const bearer = await fetch(`${sandbox.url}/xs2a/api/v1/bank-connections`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: '{}',
    });
    expect(bearer.status).toBe(401);
    const created = await fetch(`${sandbox.url}/xs2a/api/v1/bank-connections`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`api:${TOKEN}`).toString('base64')}` },
      body: JSON.stringify({ credentials: { pin: PIN } }),
    });
    expect(created.status).toBe(201);
    const text = await created.text();
    expect(text).not.toContain(PIN);
    const statsText = await (await fetch(`${sandbox.url}/_sandbox/stats`)).text();
    expect(statsText).not.toContain(PIN);
    expect(statsText).not.toContain(TOKEN);
  });

  it('rejects an unknown scenario', async () => {
    expect(await caught(connection('no-such-scenario'))).toMatchObject({ code: 'PROVIDER_ERROR', providerCode: 'UNKNOWN_SCENARIO' });
  });

  it('no error raised in this file mentions the token or the PIN', () => {
    expect(seenErrors.length).toBeGreaterThan(20);
    for (const error of seenErrors) {
      const text = `${String((error as Error).message)} ${JSON.stringify(error)} ${String((error as Error).stack)}`;
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain(PIN);
    }
  });
});
