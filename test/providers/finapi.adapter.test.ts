/**
 * The finAPI adapter against the finAPI sandbox, over real HTTP (127.0.0.1, random ports).
 * The sandbox clock is a variable the tests move, so web form deadlines need no waiting.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Observation, TriggerOutput } from '../../machines/canonical.js';
import { FINAPI_PROGRESS } from '../../machines/finapiTask.js';
import { InvalidProviderResponseError, ProviderError, ProviderInputError, UnknownProviderStatusError } from '../../src/providers/errors.js';
import { createFinapiAdapter, InvalidFinapiCallbackUrlError, InvalidFinapiOptionsError, type FinapiAdapter } from '../../src/providers/finapi/index.js';
import type { SyncRef, TriggerRequest } from '../../src/providers/types.js';
import {
  FINAPI_SCENARIOS,
  createFinapiSandboxConnection,
  finapiSandbox,
  type FinapiScenarioInfo,
  type FinapiScenarioName,
} from '../../src/sandbox/finapi.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';

const TOKEN = 'finapi-user-token-3c9e1b7d-DO-NOT-LEAK';
const HOOKS = 'https://hooks.banksync.example';
const T0 = Date.parse('2025-03-01T10:00:00.000Z');

let clock = T0;
let sandbox: Sandbox;
let finapiUrl: string;
let adapter: FinapiAdapter;
let hook: { server: Server; url: string; bodies: { path: string; headers: IncomingMessage['headers']; body: string }[] };
/** Every error any adapter call threw in this file; checked for secrets at the end. */
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

async function connection(scenario: FinapiScenarioName): Promise<string> {
  return String((await createFinapiSandboxConnection(finapiUrl, TOKEN, scenario)).id);
}

function request(connectionId: string, options?: Record<string, unknown>, overrides: Partial<TriggerRequest> = {}): TriggerRequest {
  seq += 1;
  return {
    syncId: `sync-${seq}`,
    connectionId,
    scope: 'TRANSACTIONS',
    idempotencyKey: `sync-${seq}`,
    since: clock,
    ...(options ? { options } : {}),
    ...overrides,
  };
}

async function started(scenario: FinapiScenarioName, options?: Record<string, unknown>) {
  const connectionId = await connection(scenario);
  const req = request(connectionId, options);
  const out = await adapter.trigger(req);
  return { ref: { connectionId, providerRef: out.providerRef } as SyncRef, first: out.observation, req };
}

const poll = (ref: SyncRef) => adapter.poll(ref);
const stats = (connectionId: string) => sandbox.stats()['finapi']!.connections[connectionId]!;
function challengeOf(o: Observation) {
  if (o.status !== 'AWAIT_AUTH') throw new Error(`expected AWAIT_AUTH, got ${o.status}`);
  return o.challenge;
}
function resultOf(o: Observation) {
  if (o.status !== 'COMPLETED') throw new Error(`expected COMPLETED, got ${JSON.stringify(o)}`);
  return o.result;
}
function errorOf(o: Observation) {
  if (o.status !== 'FAILED') throw new Error(`expected FAILED, got ${JSON.stringify(o)}`);
  return o.error;
}
/** The user opens the web form page in a browser. */
async function openWebForm(o: Observation): Promise<void> {
  const page = await fetch(challengeOf(o).redirectUrl!);
  expect(page.status).toBe(200);
  await page.arrayBuffer();
}
async function pollUntil(ref: SyncRef, done: (o: Observation) => boolean, max = 15): Promise<Observation[]> {
  const seen: Observation[] = [];
  for (let i = 0; i < max; i++) {
    const o = await poll(ref);
    seen.push(o);
    if (done(o)) return seen;
  }
  throw new Error(`no matching observation after ${max} polls: ${JSON.stringify(seen.at(-1))}`);
}
const terminal = (o: Observation) => o.status === 'COMPLETED' || o.status === 'FAILED';

/** Drives one scenario the way the engine does; returns the canonical end and every observation. */
async function drive(scenario: FinapiScenarioInfo) {
  const connectionId = await connection(scenario.name);
  const req = request(connectionId, scenario.options);
  let out: TriggerOutput | null = null;
  for (let attempt = 0; attempt < 6 && !out; attempt++) {
    try {
      out = attempt === 0 ? await adapter.trigger(req) : ((await adapter.findTriggered(req)) ?? (await adapter.trigger(req)));
    } catch (error) {
      seenErrors.push(error);
      if (!(error instanceof ProviderError) || !error.retryable) return { status: 'FAILED', detail: (error as ProviderError).code, seen: [] };
    }
  }
  expect(out, scenario.name).not.toBeNull();
  const ref = { connectionId, providerRef: out!.providerRef };
  let last = out!.observation;
  const seen = [last];
  const opened = new Set<string>();
  for (let step = 0; step < 40; step++) {
    if (last.status === 'COMPLETED') return { status: 'COMPLETED', detail: last.result.outcome, seen };
    if (last.status === 'FAILED') return { status: 'FAILED', detail: last.error.code, seen };
    if (last.status === 'AWAIT_AUTH' && !opened.has(last.challenge.id)) {
      opened.add(last.challenge.id);
      await openWebForm(last);
    }
    try {
      last = await poll(ref);
      seen.push(last);
    } catch (error) {
      seenErrors.push(error);
      if (!(error instanceof ProviderError)) throw error;
      if (last.status === 'AWAIT_AUTH') {
        // Like the canonical machine: a failed read while waiting for the user is harmless until the deadline.
        const deadline = Date.parse(last.challenge.expiresAt);
        if (clock >= deadline) return { status: 'FAILED', detail: 'CHALLENGE_EXPIRED', seen };
        clock = deadline + 1;
      } else if (!error.retryable) {
        return { status: 'FAILED', detail: error.code, seen };
      }
    }
  }
  throw new Error(`${scenario.name}: did not finish`);
}

beforeAll(async () => {
  const bodies: { path: string; headers: IncomingMessage['headers']; body: string }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.statusCode = 200;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  hook = { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies };

  // finAPI sends callbacks to HTTPS URLs only: the sandbox delivers those of HOOKS to the local HTTP receiver.
  sandbox = await startSandbox({
    now: () => clock,
    providers: [finapiSandbox({ tokens: [TOKEN], resolveCallbackUrl: (url) => url.replace(HOOKS, hook.url) })],
  });
  finapiUrl = `${sandbox.url}/finapi`;
  adapter = createFinapiAdapter({ baseUrl: finapiUrl, token: TOKEN, now: () => clock });
});

afterAll(async () => {
  await sandbox?.close();
  hook?.server.closeAllConnections();
  await new Promise<void>((resolve) => hook?.server.close(() => resolve()));
});

describe('finAPI scenario scripts', () => {
  it('lists every required scenario with its expected canonical outcome', () => {
    const names = FINAPI_SCENARIOS.map((s) => s.name);
    for (const required of [
      'success',
      'import-new-accounts',
      'account-types-filter',
      'immediate-web-form',
      'edit-credentials',
      'web-form',
      'web-form-error',
      'web-form-expired',
      'web-form-aborted',
      'task-bank-server-rejection',
      'task-internal-error',
      'task-invalid-token',
      'task-unexpected-access-response',
      'task-unknown-error-code',
      'locked-then-success',
      'partial',
      'all-download-failed',
      'deprecated-accounts',
      'categorization',
      'unknown-task-status',
      'provider-5xx',
      'rate-limited',
      'malformed-body',
      'callbacks-duplicated',
      'callbacks-out-of-order',
      'callbacks-early',
      'callbacks-never',
    ]) {
      expect(names).toContain(required);
    }
    for (const s of FINAPI_SCENARIOS) {
      if (s.terminal === 'FAILED') expect(s.errorCode, s.name).toBeDefined();
      else expect(s.outcome, s.name).toBeDefined();
    }
  });

  it.each(FINAPI_SCENARIOS.map((s) => [s.name, s] as const))('%s, driven like the engine, ends as FINAPI_SCENARIOS says', async (_name, scenario) => {
    const end = await drive(scenario);
    expect({ status: end.status, detail: end.detail }).toEqual({
      status: scenario.terminal,
      detail: scenario.terminal === 'COMPLETED' ? scenario.outcome : scenario.errorCode,
    });
    // Observations are ranked, and the ranks never go down along the lifecycle.
    const ranks = end.seen.map((o) => o.progress ?? -1);
    expect(ranks.every((r) => r >= 0)).toBe(true);
    expect([...ranks].sort((a, b) => a - b)).toEqual(ranks);
    if (end.status === 'FAILED' && scenario.providerCode) {
      const last = end.seen.at(-1)!;
      expect(last.status === 'FAILED' && last.error.providerCode).toBe(scenario.providerCode);
    }
  });

  it('success: QUEUED -> RUNNING -> RUNNING (post-processing) -> COMPLETED, ranked along the lifecycle', async () => {
    const { ref, first } = await started('success');
    expect(first).toEqual({ status: 'QUEUED', progress: FINAPI_PROGRESS.NOT_YET_STARTED });
    expect(await poll(ref)).toEqual({ status: 'RUNNING', progress: FINAPI_PROGRESS.IN_PROGRESS });
    // task COMPLETED, bank connection updateStatus IN_PROGRESS
    expect(await poll(ref)).toEqual({ status: 'RUNNING', progress: FINAPI_PROGRESS.POST_PROCESSING });
    const done = await poll(ref);
    expect(done.progress).toBe(FINAPI_PROGRESS.TERMINAL);
    const result = resultOf(done);
    expect(result.outcome).toBe('COMPLETE');
    expect(result.accounts).toHaveLength(2);
    expect(result.accounts.every((a) => a.status === 'UPDATED' && a.kind === 'CASH' && /^\d+$/.test(a.accountId))).toBe(true);
    // Done stays done.
    expect((await poll(ref)).status).toBe('COMPLETED');
    expect(stats(ref.connectionId)).toMatchObject({ tasksCreated: 1, triggers: 1, overlaps: 0, taskReads: 4 });
  });

  it('import-new-accounts: importNewAccounts imports the new accounts; they come back as NEW', async () => {
    const { ref } = await started('import-new-accounts', { importNewAccounts: true });
    const result = resultOf((await pollUntil(ref, terminal)).at(-1)!);
    expect(result.accounts.map((a) => a.status).sort()).toEqual(['NEW', 'NEW', 'UPDATED', 'UPDATED']);
    expect(result.outcome).toBe('COMPLETE');
  });

  it('import-new-accounts without the option imports nothing new', async () => {
    const { ref } = await started('import-new-accounts');
    const result = resultOf((await pollUntil(ref, terminal)).at(-1)!);
    expect(result.accounts.map((a) => a.status)).toEqual(['UPDATED', 'UPDATED']);
  });

  it('account-types-filter: accountTypes [SAVINGS] imports only the new savings account', async () => {
    const { ref } = await started('account-types-filter', { importNewAccounts: true, accountTypes: ['SAVINGS'] });
    const result = resultOf((await pollUntil(ref, terminal)).at(-1)!);
    expect(result.accounts.map((a) => a.status)).toEqual(['UPDATED', 'UPDATED', 'NEW']);
  });

  it('immediate-web-form: the POST answers AWAIT_AUTH with a WEB_FORM challenge (20 min deadline); the user completes it', async () => {
    const { ref, first } = await started('immediate-web-form');
    const challenge = challengeOf(first);
    expect(first.progress).toBe(FINAPI_PROGRESS.WEB_FORM_NOT_YET_OPENED);
    expect(challenge.kind).toBe('WEB_FORM');
    expect(challenge.redirectUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/finapi\/webform\/[0-9a-f-]{36}$/);
    expect(challenge.id).toBe(challenge.redirectUrl!.split('/').at(-1));
    expect(Date.parse(challenge.expiresAt) - clock).toBe(20 * 60_000);
    // Not opened yet: the same challenge, its deadline now read from the web form itself.
    expect(challengeOf(await poll(ref))).toMatchObject({ id: challenge.id, expiresAt: challenge.expiresAt });
    await openWebForm(first);
    const seen = await pollUntil(ref, terminal);
    expect(resultOf(seen.at(-1)!).outcome).toBe('COMPLETE');
    expect(stats(ref.connectionId).webFormsOpened).toBe(1);
  });

  it('edit-credentials: manageSavedSettings [CREDENTIALS] is sent and gives an immediate web form, on any connection', async () => {
    const { first } = await started('success', { manageSavedSettings: ['CREDENTIALS'] });
    expect(challengeOf(first).kind).toBe('WEB_FORM');
  });

  it('web-form: RUNNING -> AWAIT_AUTH (web form read for its deadline) -> RUNNING -> COMPLETED', async () => {
    const { ref } = await started('web-form');
    expect((await poll(ref)).status).toBe('RUNNING');
    const waiting = await poll(ref);
    const challenge = challengeOf(waiting);
    expect(waiting.progress).toBe(FINAPI_PROGRESS.WEB_FORM_NOT_YET_OPENED);
    expect(Date.parse(challenge.expiresAt)).toBe(clock + 20 * 60_000);
    await openWebForm(waiting);
    const rest = await pollUntil(ref, terminal);
    expect(rest[0]).toEqual({ status: 'RUNNING', progress: FINAPI_PROGRESS.POST_PROCESSING });
    expect(resultOf(rest.at(-1)!).outcome).toBe('COMPLETE');
    expect(stats(ref.connectionId)).toMatchObject({ webFormsOpened: 1, tasksCreated: 1 });
    expect(Number(stats(ref.connectionId).webFormReads)).toBeGreaterThan(0);
  });

  it.each([
    ['web-form-error', { code: 'BANK_REJECTED', retryable: false, userActionRequired: true, providerCode: 'BANK_SERVER_REJECTION' }],
    ['web-form-expired', { code: 'CHALLENGE_EXPIRED', retryable: false, userActionRequired: true, providerCode: 'EXPIRED' }],
    ['web-form-aborted', { code: 'CANCELLED', retryable: false, userActionRequired: true, providerCode: 'ABORTED' }],
  ] as const)('%s maps to FAILED %o', async (scenario, error) => {
    const { ref } = await started(scenario);
    const waiting = (await pollUntil(ref, (o) => o.status === 'AWAIT_AUTH')).at(-1)!;
    await openWebForm(waiting);
    expect(errorOf((await pollUntil(ref, terminal)).at(-1)!)).toMatchObject(error);
  });

  it('web-form-error: the task payload reports the failure first; the web form read brings the code, every time', async () => {
    const { ref } = await started('web-form-error');
    await openWebForm((await pollUntil(ref, (o) => o.status === 'AWAIT_AUTH')).at(-1)!);
    for (let i = 0; i < 3; i++) expect(errorOf(await poll(ref))).toMatchObject({ code: 'BANK_REJECTED', providerCode: 'BANK_SERVER_REJECTION' });
    const task = (await adapter.client.getTask(ref.providerRef)).data;
    expect(task.payload.webForm?.status).toBe('COMPLETED_WITH_ERROR');
    expect(task.payload.errorCode).toBeNull();
  });

  it('a web form left unopened past its deadline is EXPIRED by the sandbox clock', async () => {
    const { ref } = await started('web-form');
    const waiting = (await pollUntil(ref, (o) => o.status === 'AWAIT_AUTH')).at(-1)!;
    clock = Date.parse(challengeOf(waiting).expiresAt);
    expect(errorOf(await poll(ref)).code).toBe('CHALLENGE_EXPIRED');
    // The page no longer completes it.
    await openWebForm(waiting);
    expect(errorOf(await poll(ref)).code).toBe('CHALLENGE_EXPIRED');
  });

  it.each([
    ['task-bank-server-rejection', { code: 'BANK_REJECTED', retryable: false, userActionRequired: true, providerCode: 'BANK_SERVER_REJECTION' }],
    ['task-internal-error', { code: 'PROVIDER_ERROR', retryable: true, userActionRequired: false, providerCode: 'INTERNAL_ERROR' }],
    ['task-invalid-token', { code: 'PROVIDER_ERROR', retryable: false, userActionRequired: false, providerCode: 'INVALID_TOKEN' }],
    ['task-unexpected-access-response', { code: 'PROVIDER_ERROR', retryable: false, providerCode: 'UNEXPECTED_ACCESS_RESPONSE' }],
    ['task-unknown-error-code', { code: 'PROVIDER_ERROR', retryable: false, providerCode: 'CONSENT_WITHDRAWN' }],
  ] as const)('%s: task COMPLETED_WITH_ERROR maps to %o', async (scenario, error) => {
    const { ref } = await started(scenario);
    const failed = (await pollUntil(ref, terminal)).at(-1)!;
    expect(failed.progress).toBe(FINAPI_PROGRESS.TERMINAL);
    expect(errorOf(failed)).toMatchObject(error);
  });

  it('partial / all-download-failed / deprecated-accounts: per-account outcomes and computeOutcome, READY is not success', async () => {
    const partial = resultOf((await pollUntil((await started('partial')).ref, terminal)).at(-1)!);
    expect(partial.accounts.map((a) => a.status)).toEqual(['UPDATED', 'DOWNLOAD_FAILED', 'UPDATED_FIXED']);
    expect(partial.outcome).toBe('PARTIAL');
    const none = resultOf((await pollUntil((await started('all-download-failed')).ref, terminal)).at(-1)!);
    expect(none.accounts.map((a) => a.status)).toEqual(['DOWNLOAD_FAILED', 'DOWNLOAD_FAILED']);
    expect(none.outcome).toBe('NONE');
    const deprecated = resultOf((await pollUntil((await started('deprecated-accounts')).ref, terminal)).at(-1)!);
    expect(deprecated.accounts.map((a) => a.status)).toEqual(['UPDATED', 'DEPRECATED', 'UPDATED']);
    expect(deprecated.accounts.map((a) => a.kind)).toEqual(['CASH', 'CASH', 'PORTFOLIO']);
    expect(deprecated.outcome).toBe('COMPLETE');
  });

  it('categorization: RUNNING while categorizationStatus PENDING / IN_PROGRESS after READY; an adapter may opt out', async () => {
    const { ref } = await started('categorization');
    const seen = await pollUntil(ref, terminal);
    const ranks = seen.map((o) => o.progress);
    expect(ranks).toContain(FINAPI_PROGRESS.CATEGORIZATION_PENDING);
    expect(ranks).toContain(FINAPI_PROGRESS.CATEGORIZATION_IN_PROGRESS);
    expect(resultOf(seen.at(-1)!).outcome).toBe('COMPLETE');

    const eager = createFinapiAdapter({ baseUrl: finapiUrl, token: TOKEN, now: () => clock, awaitCategorization: false });
    const connectionId = await connection('categorization');
    const out = await eager.trigger(request(connectionId));
    const ref2 = { connectionId, providerRef: out.providerRef };
    const eagerSeen: Observation[] = [];
    for (let i = 0; i < 10 && !eagerSeen.some(terminal); i++) eagerSeen.push(await eager.poll(ref2));
    expect(eagerSeen.map((o) => o.progress)).not.toContain(FINAPI_PROGRESS.CATEGORIZATION_PENDING);
    expect(eagerSeen.at(-1)!.status).toBe('COMPLETED');
  });

  it('download-in-progress: an account still DOWNLOAD_IN_PROGRESS after READY keeps the sync RUNNING', async () => {
    const { ref } = await started('download-in-progress');
    const seen = await pollUntil(ref, terminal);
    expect(seen.map((o) => o.progress)).toContain(FINAPI_PROGRESS.DOWNLOAD_IN_PROGRESS);
    expect(resultOf(seen.at(-1)!).accounts.map((a) => a.status)).toEqual(['UPDATED', 'UPDATED']);
  });
});

describe('finAPI unknown values never map to success', () => {
  it('unknown task status -> UnknownProviderStatusError', async () => {
    const { ref } = await started('unknown-task-status');
    const error = await caught(poll(ref));
    expect(error).toBeInstanceOf(UnknownProviderStatusError);
    expect(error).toMatchObject({ code: 'UNKNOWN_PROVIDER_STATUS', retryable: false, field: 'task status', value: 'PAUSED_BY_BANK' });
  });

  it('unknown web form status -> UnknownProviderStatusError', async () => {
    const { ref } = await started('unknown-web-form-status');
    const waiting = (await pollUntil(ref, (o) => o.status === 'AWAIT_AUTH')).at(-1)!;
    expect(Date.parse(challengeOf(waiting).expiresAt) - clock).toBe(2_000);
    await openWebForm(waiting);
    await poll(ref).catch(() => undefined);
    const error = await caught(poll(ref));
    expect(error).toBeInstanceOf(UnknownProviderStatusError);
    expect(error).toMatchObject({ field: 'web form status', value: 'WAITING_FOR_BANK' });
  });

  it('unknown account status and unknown updateStatus -> UnknownProviderStatusError', async () => {
    const account = await started('unknown-account-status');
    await pollUntil(account.ref, (o) => o.progress === FINAPI_PROGRESS.POST_PROCESSING);
    const accountError = await caught(poll(account.ref));
    expect(accountError).toMatchObject({ code: 'UNKNOWN_PROVIDER_STATUS', field: 'account interface status', value: 'ARCHIVED' });

    const update = await started('unknown-update-status');
    await pollUntil(update.ref, (o) => o.progress === FINAPI_PROGRESS.POST_PROCESSING);
    const updateError = await caught(poll(update.ref));
    expect(updateError).toMatchObject({ code: 'UNKNOWN_PROVIDER_STATUS', field: 'bank connection updateStatus', value: 'SUSPENDED' });
  });
});

describe('finAPI HTTP error classification', () => {
  it('423 LOCKED -> PROVIDER_BUSY retryable (busy, not failed), then the retry succeeds; counted as an overlap', async () => {
    const connectionId = await connection('locked-then-success');
    const req = request(connectionId);
    const busy = await caught(adapter.trigger(req));
    expect(busy).toMatchObject({ code: 'PROVIDER_BUSY', retryable: true, httpStatus: 423, providerCode: 'LOCKED' });
    expect(await adapter.findTriggered(req)).toBeNull();
    expect((await adapter.trigger(req)).observation.status).toBe('QUEUED');
    expect(stats(connectionId)).toMatchObject({ triggers: 2, overlaps: 1, tasksCreated: 1 });
  });

  it('a second update while one runs is refused with 423 LOCKED', async () => {
    const { ref } = await started('success');
    const busy = await caught(adapter.trigger(request(ref.connectionId)));
    expect(busy.code).toBe('PROVIDER_BUSY');
    await pollUntil(ref, terminal);
    // Once the update is READY, a new one may start.
    expect((await adapter.trigger(request(ref.connectionId))).observation.status).toBe('QUEUED');
    expect(stats(ref.connectionId)).toMatchObject({ tasksCreated: 2, overlaps: 1 });
  });

  it('provider-5xx: 503 on the POST, 500 on a task read, 503 on a connection read -> PROVIDER_UNAVAILABLE retryable', async () => {
    const connectionId = await connection('provider-5xx');
    const req = request(connectionId);
    const down = await caught(adapter.trigger(req));
    expect(down).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', retryable: true, httpStatus: 503 });
    const out = await adapter.trigger(req);
    const ref = { connectionId, providerRef: out.providerRef };
    expect(await caught(poll(ref))).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', retryable: true, httpStatus: 500 });
    expect((await poll(ref)).status).toBe('RUNNING');
    // task COMPLETED, then the bank connection read fails
    expect(await caught(poll(ref))).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', httpStatus: 503 });
    expect(resultOf((await pollUntil(ref, terminal)).at(-1)!).outcome).toBe('COMPLETE');
  });

  it('rate-limited: 429 -> RATE_LIMITED retryable with retryAfterMs from Retry-After (POST and Access reads)', async () => {
    const connectionId = await connection('rate-limited');
    const req = request(connectionId);
    const limited = await caught(adapter.trigger(req));
    expect(limited).toMatchObject({ code: 'RATE_LIMITED', retryable: true, retryAfterMs: 1_000, httpStatus: 429 });
    expect(limited.toFailure()).toMatchObject({ code: 'RATE_LIMITED', retryAfterMs: 1_000 });
    const out = await adapter.trigger(req);
    const ref = { connectionId, providerRef: out.providerRef };
    let accountsLimited: ProviderError | undefined;
    for (let i = 0; i < 6 && !accountsLimited; i++) {
      try {
        await poll(ref);
      } catch (error) {
        seenErrors.push(error);
        accountsLimited = error as ProviderError;
      }
    }
    expect(accountsLimited).toMatchObject({ code: 'RATE_LIMITED', retryAfterMs: 1_000, providerCode: 'UNEXPECTED_ERROR' });
    expect(resultOf((await pollUntil(ref, terminal)).at(-1)!).outcome).toBe('COMPLETE');
  });

  it('malformed-body: invalid JSON and missing fields -> InvalidProviderResponseError (retryable); later reads are fine', async () => {
    const { ref } = await started('malformed-body');
    const notJson = await caught(poll(ref));
    expect(notJson).toBeInstanceOf(InvalidProviderResponseError);
    expect(notJson).toMatchObject({ code: 'INVALID_RESPONSE', retryable: true });
    const errors: ProviderError[] = [];
    let last: Observation | undefined;
    for (let i = 0; i < 12 && !(last && terminal(last)); i++) {
      try {
        last = await poll(ref);
      } catch (error) {
        seenErrors.push(error);
        errors.push(error as ProviderError);
      }
    }
    expect(errors.map((e) => e.code)).toEqual(['INVALID_RESPONSE', 'INVALID_RESPONSE']);
    expect((errors[0] as InvalidProviderResponseError).issues.join(' ')).toMatch(/accountIds|categorizationStatus/);
    expect(resultOf(last!).outcome).toBe('COMPLETE');
  });

  it('trigger-response-lost: the POST created the task but answered 503; findTriggered finds it (no second update)', async () => {
    const connectionId = await connection('trigger-response-lost');
    const req = request(connectionId);
    expect(await adapter.findTriggered(req)).toBeNull();
    expect((await caught(adapter.trigger(req))).code).toBe('PROVIDER_UNAVAILABLE');
    const found = await adapter.findTriggered(req);
    expect(found?.observation).toEqual({ status: 'QUEUED', progress: FINAPI_PROGRESS.NOT_YET_STARTED });
    // A window that starts after the task was created finds nothing.
    expect(await adapter.findTriggered({ ...req, since: clock + 60_000 })).toBeNull();
    const done = await pollUntil({ connectionId, providerRef: found!.providerRef }, terminal);
    expect(done.at(-1)!.status).toBe('COMPLETED');
    // A finished task still counts: it is the update we asked for.
    expect((await adapter.findTriggered(req))?.providerRef).toBe(found!.providerRef);
    expect(stats(connectionId)).toMatchObject({ tasksCreated: 1, triggers: 1 });
  });

  it('401 with a wrong token -> PROVIDER_UNAUTHORIZED (our credentials, not the user\'s), not retryable, token not in the message', async () => {
    const wrongToken = 'wrong-finapi-token-7a1f-SHOULD-NOT-APPEAR';
    const other = createFinapiAdapter({ baseUrl: finapiUrl, token: wrongToken });
    const error = await caught(other.poll({ connectionId: '1', providerRef: 'task-x' }));
    expect(error).toMatchObject({ code: 'PROVIDER_UNAUTHORIZED', retryable: false, userActionRequired: false, httpStatus: 401 });
    // Access v1 answers a 401 with its OAuth body (BadCredentialsError): same classification.
    const access = await caught(other.client.getBankConnection(1));
    expect(access).toMatchObject({ code: 'PROVIDER_UNAUTHORIZED', retryable: false, httpStatus: 401 });
    expect(`${error.message} ${JSON.stringify(error.toFailure())}`).not.toContain(wrongToken);
  });

  it('404 for an unknown task -> PROVIDER_ERROR, not retryable', async () => {
    const error = await caught(poll({ connectionId: '4200001', providerRef: '00000000-0000-0000-0000-000000000000' }));
    expect(error).toMatchObject({ code: 'PROVIDER_ERROR', retryable: false, httpStatus: 404, providerCode: 'NOT_FOUND' });
  });

  it('a task of another bank connection is rejected', async () => {
    const { ref } = await started('success');
    const other = await connection('success');
    const error = await caught(poll({ connectionId: other, providerRef: ref.providerRef }));
    expect(error).toBeInstanceOf(InvalidProviderResponseError);
  });

  it('network error and timeout -> PROVIDER_UNAVAILABLE, retryable', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const closedPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const refused = createFinapiAdapter({ baseUrl: `http://127.0.0.1:${closedPort}/finapi`, token: TOKEN });
    expect(await caught(refused.poll({ connectionId: '1', providerRef: 't' }))).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', retryable: true });

    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const port = (silent.address() as AddressInfo).port;
      const slow = createFinapiAdapter({ baseUrl: `http://127.0.0.1:${port}/finapi`, token: TOKEN, timeoutMs: 100 });
      const timeout = await caught(slow.trigger(request('42')));
      expect(timeout).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', retryable: true });
      expect(timeout.message).toMatch(/timed out/);
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('web forms cannot be answered through the API', async () => {
    const error = await caught(adapter.answerChallenge({ connectionId: '1', providerRef: 't' }, 'wf', '123456'));
    expect(error).toMatchObject({ code: 'PROVIDER_ERROR', retryable: false });
  });
});

describe('finAPI trigger options', () => {
  it.each([
    // Names finAPI does not know (it would ignore them): never sent.
    [{ importNewAccountsMode: 'CONDITIONAL' }, 'importNewAccountsMode'],
    [{ editSavedSettings: ['CREDENTIALS'] }, 'editSavedSettings'],
    [{ importNewAccounts: true, accountTypes: ['CHEQUE'] }, 'accountTypes.0'],
    [{ importNewAccounts: true, accountTypes: [] }, 'accountTypes'],
    [{ importNewAccounts: true, accountTypes: ['SAVINGS', 'SAVINGS'] }, 'accountTypes'],
    // finAPI ignores accountTypes unless importNewAccounts is true.
    [{ accountTypes: ['SAVINGS'] }, 'accountTypes'],
    [{ manageSavedSettings: ['PASSWORD'] }, 'manageSavedSettings.0'],
    [{ importNewAccounts: 'yes' }, 'importNewAccounts'],
    // finAPI allows HTTPS callbacks only.
    [{ callbacks: { finalised: 'http://evil.example/hook?secret=s3cr3t-value' } }, 'callbacks.finalised'],
    [{ callbacks: { finalised: 'https://localhost/hook' } }, 'callbacks.finalised'],
    [{ callbacks: { onDone: 'https://example.com' } }, 'callbacks.onDone'],
    [{ importNewAcounts: true }, 'importNewAcounts'],
  ])('invalid options %j -> InvalidFinapiOptionsError naming %s, nothing sent', async (options, field) => {
    const connectionId = await connection('success');
    const error = await caught(adapter.trigger(request(connectionId, options as Record<string, unknown>)));
    expect(error).toBeInstanceOf(InvalidFinapiOptionsError);
    expect(error).toMatchObject({ code: 'PROVIDER_ERROR', retryable: false });
    expect((error as InvalidFinapiOptionsError).fields).toContain(field);
    expect(error.message).not.toContain('s3cr3t-value');
    expect(error.message).not.toContain('CHEQUE');
    expect(stats(connectionId).triggers).toBe(0);
  });

  it('a connection id that is not a finAPI id is rejected before anything is sent', async () => {
    expect(await caught(adapter.trigger(request('acc_abc')))).toMatchObject({ code: 'PROVIDER_ERROR', retryable: false });
  });
});

describe('finAPI callbacks', () => {
  async function withCallbacks<T>(fn: () => Promise<T>): Promise<T> {
    hook.bodies.length = 0;
    sandbox.setWebhookUrl(`${hook.url}/sandbox-hook`, 'finapi');
    try {
      return await fn();
    } finally {
      sandbox.setWebhookUrl(undefined, 'finapi');
    }
  }
  const parse = (b: { headers: IncomingMessage['headers']; body: string }) =>
    adapter.parseWebhook({ headers: b.headers as Record<string, string>, body: b.body });

  it('web-form: webFormRequired then finalised, parsed into ranked observations', async () => {
    await withCallbacks(async () => {
      const { ref } = await started('web-form');
      const waiting = (await pollUntil(ref, (o) => o.status === 'AWAIT_AUTH')).at(-1)!;
      await openWebForm(waiting);
      await pollUntil(ref, terminal);
      await sandbox.webhooksIdle();
      const bodies = hook.bodies.map((b) => JSON.parse(b.body) as { taskId: string; status: string; webForm: { status: string } | null });
      // The final task carries its finished web form (Web Form 2.0).
      expect(bodies.map((b) => `${b.status}/${b.webForm?.status}`)).toEqual(['WEB_FORM_REQUIRED/NOT_YET_OPENED', 'COMPLETED/COMPLETED']);
      const deliveries = hook.bodies.map(parse);
      expect(deliveries.every((d) => d.providerRef === ref.providerRef)).toBe(true);
      expect(deliveries[0]!.observation).toMatchObject({ status: 'AWAIT_AUTH', progress: FINAPI_PROGRESS.WEB_FORM_NOT_YET_OPENED });
      expect(challengeOf(deliveries[0]!.observation).id).toBe(challengeOf(waiting).id);
      expect(deliveries[1]!.observation).toEqual({ status: 'RUNNING', progress: FINAPI_PROGRESS.POST_PROCESSING });
      expect(stats(ref.connectionId).callbacks).toBe(2);
    });
  });

  it('task finalised callbacks: COMPLETED -> RUNNING (post-processing); COMPLETED_WITH_ERROR -> RUNNING ranked FINALISED, never terminal', async () => {
    await withCallbacks(async () => {
      const ok = await started('success');
      await pollUntil(ok.ref, terminal);
      const failed = await started('task-bank-server-rejection');
      await pollUntil(failed.ref, terminal);
      await sandbox.webhooksIdle();
      const [completed, withError] = hook.bodies.map(parse);
      expect(completed).toEqual({ providerRef: ok.ref.providerRef, observation: { status: 'RUNNING', progress: FINAPI_PROGRESS.POST_PROCESSING } });
      // A callback carries no error code: the next read brings it (and the canonical error).
      expect(withError).toEqual({ providerRef: failed.ref.providerRef, observation: { status: 'RUNNING', progress: FINAPI_PROGRESS.FINALISED } });
    });
  });

  it('web form finalised callbacks: EXPIRED / ABORTED are terminal like a read; COMPLETED_WITH_ERROR waits for the code', async () => {
    await withCallbacks(async () => {
      for (const scenario of ['web-form-expired', 'web-form-aborted', 'web-form-error'] as const) {
        const { ref } = await started(scenario);
        await openWebForm((await pollUntil(ref, (o) => o.status === 'AWAIT_AUTH')).at(-1)!);
        await pollUntil(ref, terminal);
      }
      await sandbox.webhooksIdle();
      const finalised = hook.bodies.map(parse).filter((d) => d.observation.status !== 'AWAIT_AUTH');
      expect(finalised.map((d) => (d.observation.status === 'FAILED' ? d.observation.error.code : d.observation.status))).toEqual([
        'CHALLENGE_EXPIRED',
        'CANCELLED',
        'RUNNING',
      ]);
      expect(finalised.map((d) => d.observation.progress)).toEqual([FINAPI_PROGRESS.TERMINAL, FINAPI_PROGRESS.TERMINAL, FINAPI_PROGRESS.FINALISED]);
    });
  });

  it('immediate web forms and edited credentials send no webFormRequired callback, only finalised', async () => {
    await withCallbacks(async () => {
      for (const [scenario, options] of [['immediate-web-form', undefined], ['success', { manageSavedSettings: ['CREDENTIALS'] }]] as const) {
        const { ref, first } = await started(scenario, options);
        await openWebForm(first);
        await pollUntil(ref, terminal);
      }
      await sandbox.webhooksIdle();
      const bodies = hook.bodies.map((b) => JSON.parse(b.body) as { webForm: { status: string } | null });
      expect(bodies.map((b) => b.webForm?.status)).toEqual(['COMPLETED', 'COMPLETED']);
    });
  });

  it('callbacks named in the request options go there, not to the sandbox webhook URL', async () => {
    await withCallbacks(async () => {
      const options = { callbacks: { webFormRequired: `${HOOKS}/required?state=42`, finalised: `${HOOKS}/finalised?state=42` } };
      const { ref } = await started('web-form', options);
      await openWebForm((await pollUntil(ref, (o) => o.status === 'AWAIT_AUTH')).at(-1)!);
      await pollUntil(ref, terminal);
      // Every callback the sandbox queued has been delivered (or given up on): then exactly these arrived.
      await sandbox.webhooksIdle();
      expect(hook.bodies.map((b) => b.path)).toEqual(['/required?state=42', '/finalised?state=42']);
    });
  });

  it('an adapter-level callbackUrl is sent when the options name none', async () => {
    await withCallbacks(async () => {
      expect(() => createFinapiAdapter({ baseUrl: finapiUrl, token: TOKEN, callbackUrl: `${hook.url}/configured` })).toThrow(InvalidFinapiCallbackUrlError);
      const withUrl = createFinapiAdapter({ baseUrl: finapiUrl, token: TOKEN, now: () => clock, callbackUrl: `${HOOKS}/configured` });
      const connectionId = await connection('success');
      const out = await withUrl.trigger(request(connectionId));
      await pollUntil({ connectionId, providerRef: out.providerRef }, terminal);
      await sandbox.webhooksIdle();
      expect(hook.bodies.map((b) => b.path)).toEqual(['/configured']);
    });
  });

  it('duplicated, out-of-order, early and never modes', async () => {
    const run = async (scenario: FinapiScenarioName) =>
      withCallbacks(async () => {
        const connectionId = await connection(scenario);
        const out = await adapter.trigger(request(connectionId));
        const atTrigger = hook.bodies.length;
        const ref = { connectionId, providerRef: out.providerRef };
        await openWebForm((await pollUntil(ref, (o) => o.status === 'AWAIT_AUTH')).at(-1)!);
        await pollUntil(ref, terminal);
        await sandbox.webhooksIdle();
        return { atTrigger, kinds: hook.bodies.map((b) => (JSON.parse(b.body) as { webForm: { status: string } }).webForm.status), stats: stats(connectionId) };
      });
    const duplicated = await run('callbacks-duplicated');
    expect(duplicated.kinds).toEqual(['NOT_YET_OPENED', 'NOT_YET_OPENED', 'COMPLETED', 'COMPLETED']);
    expect(duplicated.stats.callbacks).toBe(4);
    const outOfOrder = await run('callbacks-out-of-order');
    expect(outOfOrder.kinds).toEqual(['COMPLETED', 'NOT_YET_OPENED']);
    const early = await run('callbacks-early');
    // Delivered before the POST answered with the task id.
    expect(early.atTrigger).toBe(1);
    expect(early.kinds).toEqual(['NOT_YET_OPENED', 'COMPLETED']);
    const never = await run('callbacks-never');
    expect(never.kinds).toEqual([]);
    expect(never.stats.callbacks).toBe(0);
  });

  it('garbage callback bodies throw ProviderInputError and nothing else', () => {
    const valid = { taskId: 't-1', status: 'IN_PROGRESS', webForm: null };
    expect(adapter.parseWebhook({ headers: {}, body: JSON.stringify(valid) })).toEqual({
      providerRef: 't-1',
      observation: { status: 'RUNNING', progress: FINAPI_PROGRESS.IN_PROGRESS },
    });
    const garbage: unknown[] = [
      '',
      'not json',
      '{"taskId":',
      'null',
      '[]',
      '{}',
      JSON.stringify({ ...valid, taskId: 42 }),
      JSON.stringify({ ...valid, status: 'PAUSED_BY_BANK' }),
      JSON.stringify({ ...valid, status: 'WEB_FORM_REQUIRED' }),
      JSON.stringify({ ...valid, status: 'WEB_FORM_REQUIRED', webForm: { id: 'w', url: 'https://x', status: 'SOMETHING' } }),
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
    expect(() => adapter.parseWebhook({ headers: { 'content-type': 'text/html' }, body: JSON.stringify(valid) })).toThrow(ProviderInputError);
  });
});

describe('finAPI sandbox surface', () => {
  it('answers 401 without a bearer token; the web form page needs none; stats never contain the token', async () => {
    const noAuth = await fetch(`${finapiUrl}/api/tasks`);
    expect(noAuth.status).toBe(401);
    // Web Form 2.0 answers with its own error body; Access v1 with the OAuth BadCredentialsError.
    expect(await noAuth.json()).toMatchObject({ code: 'UNAUTHORIZED' });
    const v1 = await fetch(`${finapiUrl}/api/v1/bankConnections/1`);
    expect(v1.status).toBe(401);
    expect(await v1.json()).toEqual({ error: 'invalid_token', error_description: expect.any(String) });
    const page = await fetch(`${finapiUrl}/webform/00000000-0000-0000-0000-000000000000`);
    expect(page.status).toBe(404);
    const statsText = await (await fetch(`${sandbox.url}/_sandbox/stats`)).text();
    expect(statsText).not.toContain(TOKEN);
    const body = JSON.parse(statsText) as { finapi: { totals: Record<string, number> } };
    expect(body.finapi.totals.tasksCreated).toBeGreaterThan(0);
  });

  it('lists tasks newest first with finAPI paging, timestamps in finAPI format', async () => {
    const response = await fetch(`${finapiUrl}/api/tasks?order=createdAt,desc&page=1&perPage=2`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const page = (await response.json()) as { items: { createdAt: string }[]; paging: { perPage: number; totalCount: number; pageCount: number } };
    expect(page.items).toHaveLength(2);
    expect(page.paging.perPage).toBe(2);
    expect(page.paging.pageCount).toBe(Math.ceil(page.paging.totalCount / 2));
    expect(page.items[0]!.createdAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$/);
  });

  it('rejects an unknown scenario', async () => {
    await expect(createFinapiSandboxConnection(finapiUrl, TOKEN, 'no-such-scenario')).rejects.toThrow(/UNKNOWN_SCENARIO/);
  });

  it('no error raised in this file mentions the token', () => {
    expect(seenErrors.length).toBeGreaterThan(20);
    for (const error of seenErrors) {
      const text = `${String((error as Error).message)} ${JSON.stringify(error)} ${String((error as Error).stack)}`;
      expect(text).not.toContain(TOKEN);
    }
  });
});
