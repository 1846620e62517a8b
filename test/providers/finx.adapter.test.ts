/**
 * The finX adapter against the finX sandbox, over real HTTP (127.0.0.1, random ports).
 * The sandbox clock is a variable the tests move, so challenge deadlines need no waiting.
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
import { createFinxAdapter, parseRetryAfter, type FinxAdapter } from '../../src/providers/finx/index.js';
import type { SyncRef, TriggerRequest } from '../../src/providers/types.js';
import { FINX_CORRECT_TAN, FINX_SCENARIOS, FINX_WRONG_TAN, type FinxScenarioName } from '../../src/sandbox/finx.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';

const TOKEN = 'finx-test-token-9f3c1e7a-DO-NOT-LEAK';
const PIN = 'pin-secret-4711';

let clock = Date.parse('2025-03-01T10:00:00.000Z');
let sandbox: Sandbox;
let adapter: FinxAdapter;
let hook: { server: Server; url: string; bodies: { headers: IncomingMessage['headers']; body: string }[] };
/** Every error any adapter call threw in this file; checked for secrets at the end. */
const seenErrors: unknown[] = [];
let keySeq = 0;

async function caught(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    seenErrors.push(error);
    return error as ProviderError;
  }
  throw new Error('expected the call to reject');
}

async function access(scenario: FinxScenarioName | string, challengeTtlMs?: number): Promise<string> {
  const created = await adapter.createAccess({
    providerId: 'bank-demo',
    accessMethodId: 'demo-fints',
    credentials: { user_id: 'jane', pin: PIN },
    scenario,
    ...(challengeTtlMs !== undefined ? { challengeTtlMs } : {}),
  });
  return created.id;
}

function request(connectionId: string, overrides: Partial<TriggerRequest> = {}): TriggerRequest {
  keySeq += 1;
  return {
    syncId: `sync-${keySeq}`,
    connectionId,
    scope: 'TRANSACTIONS',
    idempotencyKey: `idem-${keySeq}`,
    since: clock,
    ...overrides,
  };
}

async function started(scenario: FinxScenarioName): Promise<{ ref: SyncRef; first: Observation; req: TriggerRequest }> {
  const connectionId = await access(scenario);
  const req = request(connectionId);
  const out = await adapter.trigger(req);
  return { ref: { connectionId, providerRef: out.providerRef }, first: out.observation, req };
}

const poll = (ref: SyncRef) => adapter.poll(ref);
const challengeOf = (o: Observation) => {
  if (o.status !== 'AWAIT_AUTH') throw new Error(`expected AWAIT_AUTH, got ${o.status}`);
  return o.challenge;
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
  hook = { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/finx`, bodies };

  sandbox = await startSandbox({ now: () => clock, finx: { tokens: [TOKEN], shortChallengeTtlMs: 3_000 } });
  adapter = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: TOKEN });
});

afterAll(async () => {
  await sandbox?.close();
  await new Promise<void>((resolve) => hook?.server.close(() => resolve()));
});

describe('finX scenario scripts', () => {
  it('lists every required scenario with its expected canonical outcome', () => {
    const names = FINX_SCENARIOS.map((s) => s.name);
    for (const required of [
      'success',
      'one-challenge',
      'two-challenges',
      'wrong-tan',
      'decoupled',
      'challenge-timeout',
      'provider-5xx',
      'rate-limited',
      'malformed-body',
      'failed',
      'unknown-status',
      'upgrade-40001',
      'upgrade-40002',
      'upgrade-40003',
    ]) {
      expect(names).toContain(required);
    }
    for (const s of FINX_SCENARIOS) {
      if (s.terminal === 'FAILED') expect(s.errorCode).toBeDefined();
      else expect(s.outcome).toBeDefined();
    }
  });

  it('success: QUEUED -> RUNNING -> RUNNING -> COMPLETED with all accounts updated', async () => {
    const { ref, first } = await started('success');
    expect(first).toMatchObject({ status: 'QUEUED' });
    expect(await poll(ref)).toMatchObject({ status: 'RUNNING' });
    expect(await poll(ref)).toMatchObject({ status: 'RUNNING' });
    const done = await poll(ref);
    expect(done.status).toBe('COMPLETED');
    if (done.status !== 'COMPLETED') return;
    expect(done.result.outcome).toBe('COMPLETE');
    expect(done.result.accounts).toHaveLength(2);
    expect(done.result.accounts.every((a) => a.status === 'UPDATED')).toBe(true);
    expect(done.result.accounts[0]?.transactionsAdded).toBe(3);
    // Terminal stays terminal.
    expect((await poll(ref)).status).toBe('COMPLETED');
  });

  it('ACCOUNTS scope completes without transactions', async () => {
    const connectionId = await access('success');
    const out = await adapter.trigger(request(connectionId, { scope: 'ACCOUNTS' }));
    const ref = { connectionId, providerRef: out.providerRef };
    await poll(ref);
    await poll(ref);
    const done = await poll(ref);
    expect(done.status === 'COMPLETED' && done.result.accounts.every((a) => a.transactionsAdded === 0)).toBe(true);
  });

  it('one-challenge: embedded TAN challenge, answered -> RUNNING -> COMPLETED', async () => {
    const { ref } = await started('one-challenge');
    expect(await poll(ref)).toMatchObject({ status: 'RUNNING' });
    const challenge = challengeOf(await poll(ref));
    expect(challenge.kind).toBe('EMBEDDED');
    expect(challenge.message).toMatch(/TAN/);
    expect(challenge.previousAttemptFailed).toBeUndefined();
    expect(Date.parse(challenge.expiresAt)).toBeGreaterThan(clock);
    // Polling while waiting for the user does not move an embedded challenge.
    expect(challengeOf(await poll(ref)).id).toBe(challenge.id);
    expect(await adapter.answerChallenge(ref, challenge.id, FINX_CORRECT_TAN)).toMatchObject({ status: 'RUNNING' });
    const done = await poll(ref);
    expect(done.status === 'COMPLETED' && done.result.outcome).toBe('COMPLETE');
  });

  it('two-challenges: answering the first yields a second challenge with a different id', async () => {
    const { ref } = await started('two-challenges');
    await poll(ref);
    const first = challengeOf(await poll(ref));
    const second = challengeOf(await adapter.answerChallenge(ref, first.id, FINX_CORRECT_TAN));
    expect(second.id).not.toBe(first.id);
    expect(second.kind).toBe('EMBEDDED');
    expect(second.previousAttemptFailed).toBeUndefined();
    expect(await adapter.answerChallenge(ref, second.id, FINX_CORRECT_TAN)).toMatchObject({ status: 'RUNNING' });
    expect((await poll(ref)).status).toBe('COMPLETED');
  });

  it('wrong-tan: a wrong TAN gives a new challenge marked as retry, never a failure; the right one completes', async () => {
    const { ref } = await started('wrong-tan');
    await poll(ref);
    const first = challengeOf(await poll(ref));
    const retry = challengeOf(await adapter.answerChallenge(ref, first.id, FINX_WRONG_TAN));
    expect(retry.id).not.toBe(first.id);
    expect(retry.previousAttemptFailed).toBe(true);
    // The old challenge is no longer answerable.
    const stale = await caught(adapter.answerChallenge(ref, first.id, FINX_CORRECT_TAN));
    expect(stale).toBeInstanceOf(ProviderError);
    expect(stale.code).toBe('PROVIDER_ERROR');
    expect(stale.retryable).toBe(false);
    expect(stale.providerCode).toBe('CHALLENGE_NOT_ACTIVE');
    const done = await adapter.answerChallenge(ref, retry.id, FINX_CORRECT_TAN);
    expect(done.status).toBe('COMPLETED');
  });

  it('decoupled: resolves by itself after two reads; it cannot be answered through the API', async () => {
    const { ref } = await started('decoupled');
    await poll(ref);
    const challenge = challengeOf(await poll(ref));
    expect(challenge.kind).toBe('DECOUPLED');
    const notAnswerable = await caught(adapter.answerChallenge(ref, challenge.id, 'anything'));
    expect(notAnswerable.code).toBe('PROVIDER_ERROR');
    expect(notAnswerable.providerCode).toBe('CHALLENGE_NOT_ANSWERABLE');
    expect(challengeOf(await poll(ref)).id).toBe(challenge.id);
    expect(await poll(ref)).toMatchObject({ status: 'RUNNING' });
    expect((await poll(ref)).status).toBe('COMPLETED');
  });

  it('redirect: challenge carries a redirect URL and resolves after two reads', async () => {
    const { ref } = await started('redirect');
    await poll(ref);
    const challenge = challengeOf(await poll(ref));
    expect(challenge.kind).toBe('REDIRECT');
    expect(challenge.redirectUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/finx\/bank-login\//);
    const page = await fetch(challenge.redirectUrl!);
    expect(page.status).toBe(200);
    await poll(ref);
    expect(await poll(ref)).toMatchObject({ status: 'RUNNING' });
    expect((await poll(ref)).status).toBe('COMPLETED');
  });

  it('challenge-timeout: once the deadline passes, reads return FAILED CHALLENGE_EXPIRED', async () => {
    const { ref } = await started('challenge-timeout');
    await poll(ref);
    const challenge = challengeOf(await poll(ref));
    expect(Date.parse(challenge.expiresAt) - clock).toBe(3_000);
    clock = Date.parse(challenge.expiresAt) + 1;
    const failed = await poll(ref);
    expect(failed.status).toBe('FAILED');
    if (failed.status !== 'FAILED') return;
    expect(failed.error).toMatchObject({
      code: 'CHALLENGE_EXPIRED',
      retryable: false,
      userActionRequired: true,
      providerCode: 'CHALLENGE_EXPIRED',
    });
    // A late answer reports the failed sync rather than reviving it.
    const late = await adapter.answerChallenge(ref, challenge.id, FINX_CORRECT_TAN);
    expect(late.status === 'FAILED' && late.error.code).toBe('CHALLENGE_EXPIRED');
  });

  it('per-access challenge TTL is honoured', async () => {
    const connectionId = await access('one-challenge', 60_000);
    const out = await adapter.trigger(request(connectionId));
    const ref = { connectionId, providerRef: out.providerRef };
    await poll(ref);
    const challenge = challengeOf(await poll(ref));
    expect(Date.parse(challenge.expiresAt) - clock).toBe(60_000);
  });

  it('failed: BANK_UNAVAILABLE maps to a retryable BANK_REJECTED', async () => {
    const { ref } = await started('failed');
    await poll(ref);
    const failed = await poll(ref);
    expect(failed).toMatchObject({
      status: 'FAILED',
      error: expect.objectContaining({
        code: 'BANK_REJECTED',
        retryable: true,
        userActionRequired: false,
        providerCode: 'BANK_UNAVAILABLE',
      }),
    });
  });

  it('invalid-credentials: never retryable, the user must act', async () => {
    const { ref } = await started('invalid-credentials');
    await poll(ref);
    const failed = await poll(ref);
    expect(failed.status === 'FAILED' && failed.error).toMatchObject({
      code: 'INVALID_CREDENTIALS',
      retryable: false,
      userActionRequired: true,
    });
  });

  it('partial: UPDATED + DOWNLOAD_FAILED + NEW accounts give outcome PARTIAL', async () => {
    const { ref } = await started('partial');
    await poll(ref);
    const done = await poll(ref);
    expect(done.status).toBe('COMPLETED');
    if (done.status !== 'COMPLETED') return;
    expect(done.result.outcome).toBe('PARTIAL');
    expect(done.result.accounts.map((a) => a.status)).toEqual(['UPDATED', 'DOWNLOAD_FAILED', 'NEW']);
  });

  it.each([
    ['upgrade-40001', 'DIRECT'],
    ['upgrade-40002', 'MULTI_ACCESS'],
    ['upgrade-40003', 'PARTIAL'],
  ] as const)('%s: ACCESS_UPGRADE %s with new access method and per-account access ids', async (scenario, kind) => {
    const { ref } = await started(scenario);
    await poll(ref);
    const failed = await poll(ref);
    expect(failed.status).toBe('FAILED');
    if (failed.status !== 'FAILED') return;
    const { error } = failed;
    expect(error.code).toBe('ACCESS_UPGRADE');
    expect(error.retryable).toBe(false);
    expect(error.userActionRequired).toBe(true);
    expect(error.providerCode).toBe(scenario.slice('upgrade-'.length));
    expect(error.upgrade?.kind).toBe(kind);
    expect(error.upgrade?.newAccessMethodId).toBe('demo-fints-psd2');
    const accounts = error.upgrade?.accounts ?? [];
    expect(accounts.length).toBeGreaterThan(0);
    if (kind === 'DIRECT') expect(accounts.every((a) => a.accessId === ref.connectionId && a.supported)).toBe(true);
    if (kind === 'MULTI_ACCESS') {
      expect(accounts.some((a) => a.accessId !== ref.connectionId && a.accessId !== null)).toBe(true);
      expect(accounts.some((a) => a.accessId === ref.connectionId)).toBe(true);
    }
    if (kind === 'PARTIAL') expect(accounts.some((a) => !a.supported && a.accessId === null)).toBe(true);

    // The upgraded access needs SCA on its next synchronization.
    const next = await adapter.trigger(request(ref.connectionId));
    const nextRef = { connectionId: ref.connectionId, providerRef: next.providerRef };
    await poll(nextRef);
    expect(challengeOf(await poll(nextRef)).kind).toBe('EMBEDDED');
  });

  it('every scenario driven like the engine ends as FINX_SCENARIOS says', async () => {
    for (const scenario of FINX_SCENARIOS) {
      const connectionId = await access(scenario.name);
      const req = request(connectionId);
      const answers = [...scenario.answers];
      let observation: Observation | undefined;
      let providerRef: string | undefined;
      let outcome: { status: 'COMPLETED' | 'FAILED'; detail: string } | undefined;

      for (let attempt = 0; attempt < 6 && !providerRef; attempt += 1) {
        try {
          const out = await adapter.trigger(req);
          providerRef = out.providerRef;
          observation = out.observation;
        } catch (error) {
          seenErrors.push(error);
          if (!(error instanceof ProviderError) || !error.retryable) throw error;
          const found = await adapter.findTriggered(req);
          if (found) ({ providerRef, observation } = found);
        }
      }
      expect(providerRef, scenario.name).toBeDefined();
      const ref = { connectionId, providerRef: providerRef! };

      for (let step = 0; step < 30 && !outcome; step += 1) {
        const o: Observation | undefined = observation;
        observation = undefined;
        if (o?.status === 'COMPLETED') outcome = { status: 'COMPLETED', detail: o.result.outcome };
        else if (o?.status === 'FAILED') outcome = { status: 'FAILED', detail: o.error.code };
        else if (o?.status === 'AWAIT_AUTH' && o.challenge.kind === 'EMBEDDED') {
          const tan = answers.shift();
          if (tan !== undefined) observation = await adapter.answerChallenge(ref, o.challenge.id, tan);
          else clock = Date.parse(o.challenge.expiresAt) + 1; // the user never answers
        }
        if (outcome || observation) continue;
        try {
          observation = await adapter.poll(ref);
        } catch (error) {
          seenErrors.push(error);
          if (!(error instanceof ProviderError)) throw error;
          if (!error.retryable) outcome = { status: 'FAILED', detail: error.code };
        }
      }
      expect(outcome, scenario.name).toMatchObject({
        status: scenario.terminal,
        detail: scenario.terminal === 'COMPLETED' ? scenario.outcome : scenario.errorCode,
      });
    }
  });
});

describe('finX HTTP error classification', () => {
  it('provider-5xx: 503 twice -> PROVIDER_UNAVAILABLE retryable, then the sync starts', async () => {
    const connectionId = await access('provider-5xx');
    const req = request(connectionId);
    for (let i = 0; i < 2; i += 1) {
      const error = await caught(adapter.trigger(req));
      expect(error).toBeInstanceOf(ProviderError);
      expect(error.code).toBe('PROVIDER_UNAVAILABLE');
      expect(error.retryable).toBe(true);
      expect(error.httpStatus).toBe(503);
    }
    expect(await adapter.findTriggered(req)).toBeNull();
    expect((await adapter.trigger(req)).observation.status).toBe('QUEUED');
    const stats = sandbox.stats().finx.connections[connectionId]!;
    expect(stats.triggers).toBe(3);
    expect(stats.syncsStarted).toBe(1);
  });

  it('rate-limited: 429 -> RATE_LIMITED retryable with retryAfterMs from Retry-After', async () => {
    const connectionId = await access('rate-limited');
    const req = request(connectionId);
    const error = await caught(adapter.trigger(req));
    expect(error.code).toBe('RATE_LIMITED');
    expect(error.retryable).toBe(true);
    expect(error.retryAfterMs).toBe(1_000);
    expect(error.toFailure()).toMatchObject({ code: 'RATE_LIMITED', retryable: true, retryAfterMs: 1_000 });
    expect((await adapter.trigger(req)).observation.status).toBe('QUEUED');
  });

  it('malformed-body: invalid JSON and missing fields -> InvalidProviderResponseError, later polls fine', async () => {
    const { ref } = await started('malformed-body');
    const notJson = await caught(poll(ref));
    expect(notJson).toBeInstanceOf(InvalidProviderResponseError);
    expect(notJson.code).toBe('INVALID_RESPONSE');
    const missing = await caught(poll(ref));
    expect(missing).toBeInstanceOf(InvalidProviderResponseError);
    expect((missing as InvalidProviderResponseError).issues.join(' ')).toMatch(/access_id/);
    expect(await poll(ref)).toMatchObject({ status: 'RUNNING' });
  });

  it('unknown-status: PAUSED_BY_BANK -> UnknownProviderStatusError, never success', async () => {
    const { ref } = await started('unknown-status');
    await poll(ref);
    const error = await caught(poll(ref));
    expect(error).toBeInstanceOf(UnknownProviderStatusError);
    expect(error.code).toBe('UNKNOWN_PROVIDER_STATUS');
    expect(error.retryable).toBe(false);
    expect((error as UnknownProviderStatusError).value).toBe('PAUSED_BY_BANK');
  });

  it('401 with a wrong token -> PROVIDER_UNAUTHORIZED, not retryable, token not in the message', async () => {
    const wrongToken = 'wrong-token-5b2d-SHOULD-NOT-APPEAR';
    const other = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: wrongToken });
    const error = await caught(other.poll({ connectionId: 'acc_x', providerRef: 'syn_x' }));
    expect(error.code).toBe('PROVIDER_UNAUTHORIZED');
    expect(error.retryable).toBe(false);
    expect(error.httpStatus).toBe(401);
    expect(error.message).not.toContain(wrongToken);
    expect(JSON.stringify(error.toFailure())).not.toContain(wrongToken);
  });

  it('404 for an unknown access or sync -> PROVIDER_ERROR, not retryable', async () => {
    const error = await caught(poll({ connectionId: 'acc_missing', providerRef: 'syn_missing' }));
    expect(error.code).toBe('PROVIDER_ERROR');
    expect(error.retryable).toBe(false);
    expect(error.httpStatus).toBe(404);
  });

  it('network error and timeout -> PROVIDER_UNAVAILABLE, retryable', async () => {
    // A port that was just free: connection refused.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const closedPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const refused = createFinxAdapter({ baseUrl: `http://127.0.0.1:${closedPort}/finx`, token: TOKEN });
    const netError = await caught(refused.poll({ connectionId: 'a', providerRef: 's' }));
    expect(netError.code).toBe('PROVIDER_UNAVAILABLE');
    expect(netError.retryable).toBe(true);

    // A server that never answers.
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const port = (silent.address() as AddressInfo).port;
      const slow = createFinxAdapter({ baseUrl: `http://127.0.0.1:${port}/finx`, token: TOKEN, timeoutMs: 100 });
      const timeout = await caught(slow.trigger(request('acc_slow')));
      expect(timeout.code).toBe('PROVIDER_UNAVAILABLE');
      expect(timeout.retryable).toBe(true);
      expect(timeout.message).toMatch(/timed out/);
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('parses Retry-After as seconds or HTTP date, ignoring negative, absurd and unparseable values', () => {
    const now = Date.parse('2025-03-01T10:00:00.000Z');
    expect(parseRetryAfter('1', now)).toBe(1_000);
    expect(parseRetryAfter(' 120 ', now)).toBe(120_000);
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter('Sat, 01 Mar 2025 10:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Sat, 01 Mar 2025 09:59:00 GMT', now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
    expect(parseRetryAfter('1.5', now)).toBeUndefined();
    expect(parseRetryAfter('9999999999', now)).toBeUndefined();
    expect(parseRetryAfter('Sat, 01 Mar 2036 10:00:00 GMT', now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });
});

describe('finX idempotency and reconciliation', () => {
  it('the same Idempotency-Key returns the same sync; another trigger while running is PROVIDER_BUSY', async () => {
    const connectionId = await access('success');
    const req = request(connectionId);
    const first = await adapter.trigger(req);
    const again = await adapter.trigger(req);
    expect(again.providerRef).toBe(first.providerRef);

    const busy = await caught(adapter.trigger(request(connectionId)));
    expect(busy.code).toBe('PROVIDER_BUSY');
    expect(busy.retryable).toBe(true);
    expect(busy.httpStatus).toBe(409);

    const stats = sandbox.stats().finx.connections[connectionId]!;
    expect(stats).toMatchObject({ syncsStarted: 1, triggers: 3, replays: 1, overlaps: 1 });
  });

  it('findTriggered finds a sync whose trigger response was lost, and returns null when there is none', async () => {
    const connectionId = await access('trigger-lost');
    const req = request(connectionId);
    expect(await adapter.findTriggered(req)).toBeNull();

    const lost = await caught(adapter.trigger(req));
    expect(lost.code).toBe('PROVIDER_UNAVAILABLE');
    const found = await adapter.findTriggered(req);
    expect(found).not.toBeNull();
    expect(found!.observation).toMatchObject({ status: 'QUEUED' });
    // The replayed trigger agrees with what reconciliation found.
    expect((await adapter.trigger(req)).providerRef).toBe(found!.providerRef);

    // A window that starts after the sync was created finds nothing.
    expect(await adapter.findTriggered({ ...req, since: clock + 60_000 })).toBeNull();
  });

  it('findTriggered: a finished sync counts only when our idempotency key created it', async () => {
    const { ref, req } = await started('failed');
    await poll(ref);
    expect((await poll(ref)).status).toBe('FAILED');
    const mine = await adapter.findTriggered(req);
    expect(mine?.providerRef).toBe(ref.providerRef);
    expect(mine?.observation.status).toBe('FAILED');
    expect(await adapter.findTriggered({ ...req, idempotencyKey: 'someone-else' })).toBeNull();
  });
});

describe('finX webhooks', () => {
  it('every status change is delivered once and parses into the canonical observation', async () => {
    hook.bodies.length = 0;
    sandbox.setWebhookUrl(hook.url);
    try {
      const { ref } = await started('one-challenge');
      await poll(ref);
      const challenge = challengeOf(await poll(ref));
      await adapter.answerChallenge(ref, challenge.id, FINX_CORRECT_TAN);
      await poll(ref);
      await sandbox.webhooksIdle();

      const deliveries = hook.bodies.map((b) =>
        adapter.parseWebhook({ headers: b.headers as Record<string, string>, body: b.body }),
      );
      expect(deliveries.every((d) => d.providerRef === ref.providerRef)).toBe(true);
      expect(deliveries.map((d) => d.observation.status)).toEqual(['QUEUED', 'RUNNING', 'AWAIT_AUTH', 'RUNNING', 'COMPLETED']);
      expect(sandbox.stats().finx.connections[ref.connectionId]!.webhooks).toBe(5);
      for (const b of hook.bodies) expect(b.body).not.toContain(FINX_CORRECT_TAN);
    } finally {
      sandbox.setWebhookUrl(undefined);
    }
  });

  it('garbage webhook bodies throw ProviderInputError and nothing else', () => {
    const validSync = {
      id: 'syn_1',
      access_id: 'acc_1',
      scope: 'TRANSACTIONS',
      status: 'RUNNING',
      created_at: '2025-03-01T10:00:00.000Z',
      updated_at: '2025-03-01T10:00:00.000Z',
      challenge: null,
      error: null,
      accounts: null,
    };
    const ok = adapter.parseWebhook({ headers: {}, body: JSON.stringify({ event: 'sync.updated', sync: validSync }) });
    expect(ok).toMatchObject({ providerRef: 'syn_1', observation: { status: 'RUNNING' } });

    const garbage: unknown[] = [
      '',
      'not json',
      '{"event":',
      'null',
      '[]',
      '{}',
      JSON.stringify({ event: 'sync.deleted', sync: validSync }),
      JSON.stringify({ event: 'sync.updated', sync: { ...validSync, id: 42 } }),
      JSON.stringify({ event: 'sync.updated', sync: { ...validSync, status: 'PAUSED_BY_BANK' } }),
      JSON.stringify({ event: 'sync.updated', sync: { ...validSync, status: 'AWAIT_AUTH' } }),
      JSON.stringify({ event: 'sync.updated', sync: { ...validSync, status: 'FAILED', error: { code: 40001, message: 'x' } } }),
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
      adapter.parseWebhook({ headers: { 'content-type': 'text/html' }, body: JSON.stringify({ event: 'sync.updated', sync: validSync }) }),
    ).toThrow(ProviderInputError);
  });
});

describe('finX sandbox surface', () => {
  it('answers 401 without a bearer token and never echoes credentials', async () => {
    const noAuth = await fetch(`${sandbox.url}/finx/v2/accesses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ provider_id: 'p', access_method_id: 'm', credentials: { pin: PIN } }),
    });
    expect(noAuth.status).toBe(401);

    const created = await fetch(`${sandbox.url}/finx/v2/accesses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ provider_id: 'p', access_method_id: 'm', credentials: { pin: PIN } }),
    });
    expect(created.status).toBe(201);
    const text = await created.text();
    expect(text).not.toContain(PIN);
    expect(text).not.toContain(TOKEN);

    const stats = await fetch(`${sandbox.url}/_sandbox/stats`);
    expect(stats.status).toBe(200);
    const statsText = await stats.text();
    expect(statsText).not.toContain(PIN);
    expect(statsText).not.toContain(TOKEN);
    const body = JSON.parse(statsText) as { finx: { totals: Record<string, number> } };
    expect(body.finx.totals.syncsStarted).toBeGreaterThan(0);
  });

  it('rejects an unknown scenario', async () => {
    const error = await caught(access('no-such-scenario'));
    expect(error.code).toBe('PROVIDER_ERROR');
    expect(error.providerCode).toBe('UNKNOWN_SCENARIO');
  });

  it('no error raised in this file mentions the token, the PIN or a TAN', () => {
    expect(seenErrors.length).toBeGreaterThan(20);
    for (const error of seenErrors) {
      const text = `${String((error as Error).message)} ${JSON.stringify(error)} ${String((error as Error).stack)}`;
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain(PIN);
      expect(text).not.toContain(FINX_CORRECT_TAN);
      expect(text).not.toContain(FINX_WRONG_TAN);
    }
  });
});

describe('finX progress rank (ordering of readings)', () => {
  it('every reading carries updated_at as its rank, strictly increasing along a sync', async () => {
    const { ref, first } = await started('success');
    const ranks = [first.progress];
    for (let i = 0; i < 3; i++) ranks.push((await poll(ref)).progress);
    expect(ranks.every((r) => typeof r === 'number')).toBe(true);
    for (let i = 1; i < ranks.length; i++) expect(ranks[i]!).toBeGreaterThan(ranks[i - 1]!);
  });
});

