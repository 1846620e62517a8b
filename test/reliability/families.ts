/**
 * Per-family fixtures for the reliability and security suites, keyed by provider family name.
 *
 * Every suite iterates PROVIDER_FAMILIES (src/providers/registry.ts) and looks the family up here with
 * `fixtureFor(family)`: a family that is registered but has no fixture FAILS its tests with a message saying
 * what to add, so a new family is never silently left untested.
 *
 * A fixture knows how to create a provider-side connection in the sandbox for a few canonical situations,
 * how to tell its adapter's HTTP calls apart (trigger, poll, list, answer), how to read the sandbox's counters,
 * and how to build valid, near-valid and random bodies (webhooks and provider responses) for fuzzing.
 */
import fc from 'fast-check';
import { Observation, type SyncErrorCode } from '../../machines/canonical.js';
import {
  FINAPI_ACCOUNT_STATUSES,
  FINAPI_CATEGORIZATION_STATUSES,
  FINAPI_TASK_STATUSES,
  FINAPI_UPDATE_STATUSES,
  FINAPI_WEB_FORM_STATUSES,
} from '../../machines/finapiTask.js';
import { createFinapiAdapter } from '../../src/providers/finapi/index.js';
import { createFinxAdapter } from '../../src/providers/finx/index.js';
import { PROVIDER_FAMILIES } from '../../src/providers/registry.js';
import type { ProviderAdapter, SyncRef } from '../../src/providers/types.js';
import { createWealthAdapter } from '../../src/providers/wealthapi/index.js';
import { createXs2aAdapter } from '../../src/providers/xs2a/index.js';
import { createFinapiSandboxConnection } from '../../src/sandbox/finapi.js';
import { FINX_CORRECT_TAN, FINX_WRONG_TAN } from '../../src/sandbox/finx.js';
import type { SandboxStats } from '../../src/sandbox/server.js';

/** Canonical situations every family's sandbox can script (or says why not). */
export type FixtureScenario =
  /** The provider runs the update and completes it without the user. */
  | 'success'
  /** The bank asks for an embedded TAN once; `embedded.correctTan` solves it. */
  | 'embedded'
  /** The bank rejects the stored credentials (must never be retried automatically). */
  | 'credentials';

export type CallKind = 'trigger' | 'poll' | 'list' | 'answer' | 'other';

/** What a stub provider answers, by resource: `route(method, path)` picks the resource a request reads. */
export interface StubWorld {
  /** HTTP status of every answer (mostly 200). */
  status: number;
  headers: Record<string, string>;
  /** Raw bodies by resource name; a non-string is sent as JSON. */
  bodies: Record<string, unknown>;
  route(method: string, path: string): string | null;
}

export interface UnknownValueCase {
  name: string;
  scenario: FixtureScenario;
  /** Rewrites a read (poll) response body of the provider; returns it unchanged when it does not apply. */
  transform: (body: unknown) => unknown;
}

export interface FamilyFixture {
  family: string;
  /** The adapter under test, pointed at `baseUrl` (`${sandbox or proxy url}/${family}`); `now` is the test clock. */
  createAdapter(baseUrl: string, config: { token: string; timeoutMs: number; now?: () => number }): ProviderAdapter;
  /** Creates a provider-side connection for a scenario in the sandbox at `baseUrl`; returns the engine's connectionId. */
  connect(baseUrl: string, token: string, scenario: FixtureScenario, credentials?: Record<string, string>): Promise<string>;
  /** TANs for the `embedded` scenario, or why the family has no embedded challenge. */
  embedded: { correctTan: string; wrongTan: string } | { unsupported: string };
  /** How the `credentials` scenario ends (the family's code for "the bank rejected the stored login"). */
  credentialsFailure: { code: SyncErrorCode };
  /** Whether `connect` passes `credentials` to the provider (some families import connections elsewhere). */
  sendsCredentials: boolean;
  /** What kind of provider call one HTTP request of the adapter is (paths relative to the sandbox root). */
  classify(method: string, path: string): CallKind;
  /** Sandbox counters of one connection. */
  counters(stats: SandboxStats, connectionId: string): { syncsStarted: number; answers: number };
  /** Undocumented enum values injected into read responses; each must fail the sync with UNKNOWN_PROVIDER_STATUS. */
  unknownValues: UnknownValueCase[];
  /** The family's webhooks/callbacks, or why it has none. */
  webhook:
    | {
        /** Headers a genuine delivery carries. */
        headers: Record<string, string>;
        /** A valid, documented delivery about a provider sync nobody requested (random ids). */
        unknownSync(seed: string): string;
        /** A valid, documented "still in progress" delivery about provider sync `providerRef` of `connectionId`. */
        inProgress(providerRef: string, connectionId: string): string;
      }
    | { unsupported: string };
  responses: {
    /** A provider sync the adapter polls (ids as the adapter expects them). */
    ref: SyncRef;
    /**
     * The provider's side of one poll: a random "world" of read bodies (documented shapes with random valid,
     * undocumented, missing or mistyped values, plus plain garbage), served by a stub HTTP server.
     */
    world: fc.Arbitrary<StubWorld>;
    /** A world documenting a completed update of `ref` (the fuzzer also mutates it slightly). */
    completed: StubWorld;
    /**
     * Independent oracle, written from the provider's documentation (not from the adapter): the world
     * documents a COMPLETED update of `ref` (nothing unknown, nothing missing). The adapter may map a poll to
     * COMPLETED only when this holds.
     */
    isValidCompleted(world: StubWorld): boolean;
  };
}

/** A fixed instant for timestamps in synthetic bodies (about now, so no date looks absurd). */
const T_REF = Math.floor(Date.now() / 60_000) * 60_000;

// ---------------------------------------------------------------------------------------------------------
// Shared generators and helpers
// ---------------------------------------------------------------------------------------------------------

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const nonEmptyString = (value: unknown): value is string => typeof value === 'string' && value.length > 0;
const count = (value: unknown): boolean => Number.isInteger(value) && (value as number) >= 0;

/** What a JSON client sees of a stub body: raw strings are parsed as they are, objects go through JSON. */
export function onWire(body: unknown): unknown {
  try {
    if (typeof body === 'string') return JSON.parse(body);
    const text = JSON.stringify(body);
    return text === undefined ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** HTTP answers of a stub read: mostly 200 JSON, sometimes another 2xx, 3xx, 4xx, 5xx or 429 with any Retry-After. */
const statusArb = fc.oneof(
  { weight: 12, arbitrary: fc.constant(200) },
  { weight: 3, arbitrary: fc.constantFrom(201, 202, 204, 206, 301, 302, 304, 400, 401, 403, 404, 409, 410, 422, 423, 429, 500, 502, 503, 504) },
);
const headersArb = fc.record(
  {
    'content-type': fc.oneof({ weight: 8, arbitrary: fc.constant('application/json') }, { weight: 1, arbitrary: fc.constantFrom('text/html', 'text/plain', 'application/problem+json') }),
    'retry-after': fc.oneof(fc.constantFrom('1', '0', '-5', '1e12', '1000000000000', 'NaN', '86400', 'Wed, 21 Oct 2015 07:28:00 GMT'), fc.nat(99999).map(String), fc.string()),
    location: fc.constant('http://127.0.0.1:9/elsewhere'),
  },
  { requiredKeys: ['content-type'] },
);
const timestampArb = fc.oneof(
  fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom('2026-01-01T10:00:00+02:00', '2021-03-02T14:11:08.973+0000', 'not a date', '', '2026-13-45T99:99:99Z'),
  fc.string(),
);
/** Mostly a documented value, sometimes one the provider does not document, a near miss, or garbage. */
const enumish = (known: readonly string[]) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...known) },
    { weight: 1, arbitrary: fc.constantFrom(...known).map((v) => v.toLowerCase()) },
    { weight: 1, arbitrary: fc.constantFrom(...known).map((v) => ` ${v}`) },
    { weight: 1, arbitrary: fc.constantFrom('PAUSED_BY_BANK', 'ARCHIVED', 'SUCCEEDED', 'SUCCESS', 'DONE', 'COMPLETED', 'COMPLETED_WITH_ERRORS', 'READY', 'UNKNOWN', '') },
    { weight: 1, arbitrary: fc.string() },
  );
/** A field as a provider might (mis)send it: usually the documented shape, sometimes null, absent or anything. */
const field = <T>(arb: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 8, arbitrary: arb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: fc.constantFrom(null, undefined) }, { weight: 1, arbitrary: fc.jsonValue() });
/** A whole body: usually the documented object, sometimes JSON of another shape, a raw string or empty. */
const bodyOf = (arb: fc.Arbitrary<unknown>) =>
  fc.oneof(
    { weight: 10, arbitrary: arb },
    { weight: 1, arbitrary: fc.jsonValue() },
    { weight: 1, arbitrary: fc.oneof(fc.string(), fc.constantFrom('', '{', '{"status":"COMPLETED"', 'null', '[]', '<html>oops</html>')) },
  );
/** Mostly `expected`, sometimes another value. */
const mostly = <T>(expected: T, other: fc.Arbitrary<unknown>) => fc.oneof({ weight: 8, arbitrary: fc.constant(expected) as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: other });

function world(bodies: fc.Arbitrary<Record<string, unknown>>, route: StubWorld['route']): fc.Arbitrary<StubWorld> {
  return fc.record({ status: statusArb, headers: headersArb, bodies }).map((w) => ({ ...w, headers: w.headers as Record<string, string>, route }));
}
/** Any 2xx with a body is a successful read (the clients accept every 2xx). */
const ok = (w: StubWorld) => w.status >= 200 && w.status < 300 && w.status !== 204 && w.status !== 205;

// ---------------------------------------------------------------------------------------------------------
// finX (seed 002)
// ---------------------------------------------------------------------------------------------------------

const FINX_SCENARIO: Record<FixtureScenario, string> = { success: 'success', embedded: 'one-challenge', credentials: 'invalid-credentials' };
const FINX_ACCOUNT_STATUSES = ['UPDATED', 'DOWNLOAD_FAILED', 'NEW'];
const FINX_REF: SyncRef = { connectionId: 'acc_stub', providerRef: 'syn_stub' };

function finxSyncArb(ref: SyncRef): fc.Arbitrary<unknown> {
  const account = fc.record({
    id: fc.oneof(fc.string({ minLength: 1 }).map((s) => `acct_${s}`), fc.constant(''), fc.integer()),
    status: enumish(FINX_ACCOUNT_STATUSES),
    transactions_added: fc.oneof({ weight: 5, arbitrary: fc.nat(1000) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: -1 }) }, { weight: 1, arbitrary: fc.double() }),
  });
  const challenge = fc.record({
    id: fc.oneof(fc.string({ minLength: 1 }), fc.constant('')),
    type: enumish(['REDIRECT', 'EMBEDDED', 'DECOUPLED']),
    message: fc.option(fc.string()),
    redirect_url: fc.option(fc.webUrl()),
    expires_at: timestampArb,
    retry: fc.option(fc.boolean()),
  });
  const error = fc.record({
    code: fc.oneof(
      fc.constantFrom('INVALID_CREDENTIALS', 'BANK_UNAVAILABLE', 'SCA_FAILED', 'CHALLENGE_EXPIRED', 'INTERNAL_ERROR', 40001, 40002, 40003),
      fc.string(),
      fc.integer(),
    ),
    message: fc.string(),
    data: fc.option(fc.dictionary(fc.string(), fc.jsonValue())),
  });
  return bodyOf(
    fc.record(
      {
        id: mostly(ref.providerRef, fc.string()),
        access_id: mostly(ref.connectionId, fc.string()),
        scope: enumish(['TRANSACTIONS', 'ACCOUNTS']),
        status: enumish(['QUEUED', 'RUNNING', 'AWAIT_AUTH', 'COMPLETED', 'FAILED']),
        created_at: timestampArb,
        updated_at: timestampArb,
        challenge: field(fc.option(challenge)),
        error: field(fc.option(error)),
        accounts: field(fc.option(fc.array(account, { maxLength: 4 }))),
        idempotency_key: fc.option(fc.string()),
      },
      { requiredKeys: ['id', 'status'] },
    ),
  );
}

const finxRoute: StubWorld['route'] = (method, path) =>
  method === 'GET' && /^\/finx\/v2\/accesses\/[^/]+\/syncs\/[^/]+$/.test(path.split('?')[0]!) ? 'sync' : null;

const finxFixture: FamilyFixture = {
  family: 'finx',
  createAdapter: (baseUrl, config) => createFinxAdapter({ baseUrl, token: config.token, timeoutMs: config.timeoutMs }),
  async connect(baseUrl, token, scenario, credentials = { login: 'user', pin: 'pin-0000' }) {
    const adapter = createFinxAdapter({ baseUrl, token });
    const access = await adapter.createAccess({ providerId: 'sandbox-bank', accessMethodId: 'FINTS', credentials, scenario: FINX_SCENARIO[scenario] });
    return access.id;
  },
  embedded: { correctTan: FINX_CORRECT_TAN, wrongTan: FINX_WRONG_TAN },
  credentialsFailure: { code: 'INVALID_CREDENTIALS' },
  sendsCredentials: true,
  classify(method, path) {
    const p = path.split('?')[0]!;
    if (/^\/finx\/v2\/accesses\/[^/]+\/syncs\/[^/]+\/challenges\/[^/]+$/.test(p)) return method === 'POST' ? 'answer' : 'other';
    if (/^\/finx\/v2\/accesses\/[^/]+\/syncs\/[^/]+$/.test(p)) return method === 'GET' ? 'poll' : 'other';
    if (/^\/finx\/v2\/accesses\/[^/]+\/syncs$/.test(p)) return method === 'POST' ? 'trigger' : method === 'GET' ? 'list' : 'other';
    return 'other';
  },
  counters(stats, connectionId) {
    const c = stats.finx.connections[connectionId];
    if (!c) throw new Error(`finx sandbox has no access ${connectionId}`);
    return { syncsStarted: c.syncsStarted, answers: c.answers };
  },
  unknownValues: [
    { name: 'sync status', scenario: 'success', transform: (b) => (isRecord(b) && b.status === 'RUNNING' ? { ...b, status: 'PAUSED_BY_BANK' } : b) },
    {
      name: 'sync status on completion',
      scenario: 'success',
      transform: (b) => (isRecord(b) && b.status === 'COMPLETED' ? { ...b, status: 'COMPLETED_WITH_WARNINGS' } : b),
    },
    {
      name: 'account status',
      scenario: 'success',
      transform: (b) =>
        isRecord(b) && Array.isArray(b.accounts) && b.accounts.length > 0
          ? { ...b, accounts: b.accounts.map((a, i) => (i === 0 && isRecord(a) ? { ...a, status: 'ARCHIVED' } : a)) }
          : b,
    },
    {
      name: 'challenge type',
      scenario: 'embedded',
      transform: (b) => (isRecord(b) && isRecord(b.challenge) ? { ...b, challenge: { ...b.challenge, type: 'PHOTO_TAN' } } : b),
    },
  ],
  webhook: {
    headers: { 'content-type': 'application/json' },
    inProgress(providerRef, connectionId) {
      const at = new Date(T_REF).toISOString();
      return JSON.stringify({
        event: 'sync.updated',
        sync: { id: providerRef, access_id: connectionId, scope: 'TRANSACTIONS', status: 'RUNNING', created_at: at, updated_at: at, challenge: null, error: null, accounts: null, idempotency_key: null },
      });
    },
    unknownSync(seed) {
      const at = '2026-01-01T10:00:00.000Z';
      return JSON.stringify({
        event: 'sync.updated',
        sync: {
          id: `syn_unknown_${seed}`,
          access_id: `acc_unknown_${seed}`,
          scope: 'TRANSACTIONS',
          status: 'COMPLETED',
          created_at: at,
          updated_at: at,
          challenge: null,
          error: null,
          accounts: [{ id: 'acct_1', status: 'UPDATED', transactions_added: 1 }],
          idempotency_key: null,
        },
      });
    },
  },
  responses: {
    ref: FINX_REF,
    world: world(fc.record({ sync: finxSyncArb(FINX_REF) }), finxRoute),
    completed: {
      status: 200,
      headers: { 'content-type': 'application/json' },
      route: finxRoute,
      bodies: {
        sync: {
          id: FINX_REF.providerRef,
          access_id: FINX_REF.connectionId,
          scope: 'TRANSACTIONS',
          status: 'COMPLETED',
          created_at: '2026-01-01T10:00:00.000Z',
          updated_at: '2026-01-01T10:00:05.000Z',
          challenge: null,
          error: null,
          accounts: [
            { id: 'acct_1', status: 'UPDATED', transactions_added: 2 },
            { id: 'acct_2', status: 'NEW', transactions_added: 0 },
          ],
          idempotency_key: null,
        },
      },
    },
    // finX v2.11: a COMPLETED sync of this access, every account in a documented status and well-formed.
    isValidCompleted(w) {
      const body = onWire(w.bodies.sync);
      if (!ok(w) || !isRecord(body)) return false;
      if (body.status !== 'COMPLETED' || body.id !== FINX_REF.providerRef || body.access_id !== FINX_REF.connectionId) return false;
      return (
        Array.isArray(body.accounts) &&
        body.accounts.every((a) => isRecord(a) && nonEmptyString(a.id) && FINX_ACCOUNT_STATUSES.includes(a.status as string) && count(a.transactions_added))
      );
    },
  },
};

// ---------------------------------------------------------------------------------------------------------
// xs2a.api (seed 003)
// ---------------------------------------------------------------------------------------------------------

const XS2A_SCENARIO: Record<Exclude<FixtureScenario, 'embedded'>, string> = { success: 'background-success', credentials: 'wrong-password' };
const XS2A_REF: SyncRef = { connectionId: 'bc_stub', providerRef: 'bc_stub:2' };

function xs2aConnectionArb(connectionId: string): fc.Arbitrary<unknown> {
  const account = fc.record({
    id: fc.oneof(fc.string({ minLength: 1 }), fc.constant('')),
    status: enumish(['UPDATED', 'FAILED']),
    turnovers_added: fc.oneof({ weight: 5, arbitrary: fc.nat(500) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: -1 }) }),
  });
  const lastSync = fc.record(
    {
      attempt: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(1, 2, 3) }, { weight: 1, arbitrary: fc.integer() }),
      state: enumish(['QUEUED', 'RUNNING', 'WAITING_FOR_USER', 'SUCCEEDED', 'FAILED']),
      origin: fc.option(enumish(['sync', 'reset'])),
      forced: fc.option(fc.boolean()),
      started_at: timestampArb,
      finished_at: fc.option(timestampArb),
      wizard_session_key: fc.option(fc.string()),
      wizard_expires_at: fc.option(timestampArb),
      wizard_completed: fc.option(fc.boolean()),
      error_code: fc.option(fc.constantFrom('INVALID_CREDENTIALS', 'BANK_DOWN', 'WIZARD_EXPIRED', 'SCA_FAILED', 'X')),
      accounts: field(fc.option(fc.array(account, { maxLength: 3 }))),
    },
    { requiredKeys: ['attempt', 'state', 'started_at'] },
  );
  return bodyOf(
    fc.record(
      {
        id: mostly(connectionId, fc.string()),
        bank_name: fc.string(),
        sync_mode: enumish(['full', 'shared', 'none']),
        sync_active: fc.boolean(),
        sync_message: fc.option(fc.string()),
        sync_fail_counter: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0, 1, 2) }, { weight: 1, arbitrary: fc.integer({ min: -1, max: 9 }) }),
        last_synced: fc.option(timestampArb),
        consent_valid_until: fc.option(fc.constantFrom('2099-12-31', '2000-01-01', 'soon')),
        status: fc.option(enumish(['READY', 'DISABLED']), { nil: undefined }),
        last_sync: field(fc.option(lastSync)),
      },
      { requiredKeys: ['id', 'sync_mode', 'sync_active', 'sync_fail_counter'] },
    ),
  );
}

function xs2aAdapter(baseUrl: string, token: string, timeoutMs?: number, now?: () => number) {
  return createXs2aAdapter({ baseUrl, token, ...(timeoutMs !== undefined ? { timeoutMs } : {}), ...(now ? { now } : {}) });
}

const xs2aRoute: StubWorld['route'] = (method, path) =>
  method === 'GET' && /^\/xs2a\/api\/v1\/bank-connections\/[^/]+$/.test(path.split('?')[0]!) ? 'connection' : null;

const xs2aFixture: FamilyFixture = {
  family: 'xs2a',
  createAdapter: (baseUrl, config) => xs2aAdapter(baseUrl, config.token, config.timeoutMs, config.now),
  async connect(baseUrl, token, scenario, credentials = { login: 'user', pin: 'pin-0000' }) {
    if (scenario === 'embedded') throw new Error('xs2a has no embedded TAN scenario');
    const connection = await xs2aAdapter(baseUrl, token).createConnection({ bankName: 'Sandbox Bank', credentials, scenario: XS2A_SCENARIO[scenario] });
    return connection.id;
  },
  embedded: { unsupported: 'xs2a asks the user through its wizard (WEB_FORM challenge), never for a TAN through the API' },
  credentialsFailure: { code: 'INVALID_CREDENTIALS' },
  sendsCredentials: true,
  classify(method, path) {
    const p = path.split('?')[0]!;
    if (/^\/xs2a\/api\/v1\/bank-connections\/[^/]+\/sync$/.test(p)) return method === 'POST' ? 'trigger' : 'other';
    // The connection read is the poll (also the trigger's and reconciliation's pre-read).
    if (/^\/xs2a\/api\/v1\/bank-connections\/[^/]+$/.test(p)) return method === 'GET' ? 'poll' : 'other';
    if (/^\/xs2a\/api\/v1\/bank-connections$/.test(p)) return method === 'GET' ? 'list' : 'other';
    return 'other';
  },
  counters(stats, connectionId) {
    const c = stats.xs2a?.connections[connectionId];
    if (!c) throw new Error(`xs2a sandbox has no connection ${connectionId}`);
    return { syncsStarted: Number(c.syncsStarted), answers: 0 };
  },
  unknownValues: [
    {
      name: 'sync attempt state',
      scenario: 'success',
      transform: (b) => (isRecord(b) && isRecord(b.last_sync) && b.last_sync.state === 'RUNNING' ? { ...b, last_sync: { ...b.last_sync, state: 'SUSPENDED_BY_BANK' } } : b),
    },
    { name: 'sync_mode', scenario: 'success', transform: (b) => (isRecord(b) && typeof b.sync_mode === 'string' ? { ...b, sync_mode: 'partial' } : b) },
    { name: 'connection status', scenario: 'success', transform: (b) => (isRecord(b) && b.status === 'READY' ? { ...b, status: 'SUSPENDED' } : b) },
    {
      name: 'account status',
      scenario: 'success',
      transform: (b) =>
        isRecord(b) && isRecord(b.last_sync) && Array.isArray(b.last_sync.accounts) && b.last_sync.accounts.length > 0
          ? { ...b, last_sync: { ...b.last_sync, accounts: b.last_sync.accounts.map((a, i) => (i === 0 && isRecord(a) ? { ...a, status: 'ARCHIVED' } : a)) } }
          : b,
    },
  ],
  webhook: {
    headers: { 'content-type': 'application/json' },
    inProgress(providerRef, connectionId) {
      const at = new Date(T_REF).toISOString();
      const attempt = Number(providerRef.slice(providerRef.lastIndexOf(':') + 1));
      return JSON.stringify({
        id: 'evt_in_progress',
        event: 'bank_connection.sync.started',
        created_at: at,
        data: {
          id: connectionId,
          bank_name: 'Sandbox Bank',
          sync_mode: 'full',
          sync_active: true,
          sync_message: null,
          sync_fail_counter: 0,
          last_synced: null,
          status: 'READY',
          last_sync: { attempt, state: 'RUNNING', origin: 'sync', forced: false, started_at: at, finished_at: null, wizard_completed: false, error_code: null, accounts: null },
        },
      });
    },
    unknownSync(seed) {
      const at = '2026-01-01T10:00:00.000Z';
      return JSON.stringify({
        id: `evt_${seed}`,
        event: 'bank_connection.sync.succeeded',
        created_at: at,
        data: {
          id: `bc_unknown_${seed}`,
          bank_name: 'Nobody Bank',
          sync_mode: 'full',
          sync_active: true,
          sync_message: null,
          sync_fail_counter: 0,
          last_synced: at,
          status: 'READY',
          last_sync: { attempt: 1, state: 'SUCCEEDED', started_at: at, finished_at: at, accounts: [{ id: 'acc_1', status: 'UPDATED', turnovers_added: 1 }] },
        },
      });
    },
  },
  responses: {
    ref: XS2A_REF,
    world: world(fc.record({ connection: xs2aConnectionArb(XS2A_REF.connectionId) }), xs2aRoute),
    completed: {
      status: 200,
      headers: { 'content-type': 'application/json' },
      route: xs2aRoute,
      bodies: {
        connection: {
          id: XS2A_REF.connectionId,
          bank_name: 'Sandbox Bank',
          sync_mode: 'full',
          sync_active: true,
          sync_message: null,
          sync_fail_counter: 0,
          last_synced: '2026-01-01T10:00:05.000Z',
          consent_valid_until: '2099-12-31',
          status: 'READY',
          last_sync: {
            attempt: 2,
            state: 'SUCCEEDED',
            origin: 'sync',
            forced: false,
            started_at: '2026-01-01T10:00:00.000Z',
            finished_at: '2026-01-01T10:00:05.000Z',
            wizard_session_key: null,
            wizard_expires_at: null,
            wizard_completed: false,
            error_code: null,
            accounts: [
              { id: 'acc_1', status: 'UPDATED', turnovers_added: 3 },
              { id: 'acc_2', status: 'FAILED', turnovers_added: 0 },
            ],
          },
        },
      },
    },
    // xs2a: our connection, documented enums, not disabled, and its attempt (or a newer one) SUCCEEDED with
    // well-formed accounts in documented statuses.
    isValidCompleted(w) {
      const c = onWire(w.bodies.connection);
      if (!ok(w) || !isRecord(c) || c.id !== XS2A_REF.connectionId) return false;
      if (!['full', 'shared', 'none'].includes(c.sync_mode as string)) return false;
      if (c.status !== undefined && c.status !== 'READY') return false;
      if (!count(c.sync_fail_counter) || (c.sync_fail_counter as number) >= 3) return false;
      const last = c.last_sync;
      if (!isRecord(last) || last.state !== 'SUCCEEDED' || !Number.isInteger(last.attempt) || (last.attempt as number) < 2) return false;
      return (
        Array.isArray(last.accounts) &&
        last.accounts.every((a) => isRecord(a) && nonEmptyString(a.id) && ['UPDATED', 'FAILED'].includes(a.status as string) && count(a.turnovers_added))
      );
    },
  },
};

// ---------------------------------------------------------------------------------------------------------
// finAPI (seeds 001, 004)
// ---------------------------------------------------------------------------------------------------------

const FINAPI_SCENARIO: Record<Exclude<FixtureScenario, 'embedded'>, string> = { success: 'success', credentials: 'task-bank-server-rejection' };
const FINAPI_REF: SyncRef = { connectionId: '42', providerRef: 'task_stub' };
const FINAPI_ACCOUNT_DONE = ['UPDATED', 'UPDATED_FIXED', 'DOWNLOAD_FAILED', 'DEPRECATED'];

function finapiWorldBodies(ref: SyncRef): fc.Arbitrary<Record<string, unknown>> {
  const connectionId = Number(ref.connectionId);
  const webFormInfo = fc.record({ id: mostly('wf_1', fc.string()), url: fc.constant('https://webform.example/wf_1'), status: enumish([...FINAPI_WEB_FORM_STATUSES]) });
  const task = fc.record(
    {
      id: mostly(ref.providerRef, fc.string()),
      createdAt: timestampArb,
      type: fc.constant('BACKGROUND_UPDATE'),
      status: enumish([...FINAPI_TASK_STATUSES]),
      payload: field(
        fc.record({
          bankConnectionId: fc.oneof({ weight: 6, arbitrary: fc.constant(connectionId) }, { weight: 1, arbitrary: fc.constantFrom(null, 7, -1) }),
          webForm: field(fc.option(webFormInfo)),
          errorCode: fc.option(enumish(['BANK_SERVER_REJECTION', 'INTERNAL_ERROR', 'INVALID_TOKEN', 'UNEXPECTED_ACCESS_RESPONSE'])),
        }),
      ),
    },
    { requiredKeys: ['id', 'status', 'payload'] },
  );
  const webForm = fc.record({
    id: mostly('wf_1', fc.string()),
    url: fc.constant('https://webform.example/wf_1'),
    createdAt: timestampArb,
    expiresAt: timestampArb,
    status: enumish([...FINAPI_WEB_FORM_STATUSES]),
    payload: fc.option(fc.record({ bankConnectionId: fc.option(fc.constant(connectionId)), errorCode: fc.option(fc.string()) })),
  });
  const accountIds = fc.oneof({ weight: 5, arbitrary: fc.constant([1, 2]) }, { weight: 1, arbitrary: fc.array(fc.integer({ min: -1, max: 4 }), { maxLength: 3 }) });
  const connection = fc.record({
    id: mostly(connectionId, fc.integer()),
    name: fc.option(fc.string()),
    updateStatus: enumish([...FINAPI_UPDATE_STATUSES]),
    categorizationStatus: enumish([...FINAPI_CATEGORIZATION_STATUSES]),
    accountIds,
  });
  const account = (id: number) =>
    fc.record({
      id: mostly(id, fc.integer({ min: 0, max: 5 })),
      bankConnectionId: mostly(connectionId, fc.integer()),
      accountType: fc.option(fc.constantFrom('Checking', 'Savings', 'Security', 'Pocket')),
      isNew: field(fc.boolean()),
      status: enumish([...FINAPI_ACCOUNT_STATUSES]),
    });
  const accounts = fc.record({ accounts: fc.tuple(account(1), account(2)).map((a) => [...a]) });
  return fc.record({ task: bodyOf(task), webForm: bodyOf(webForm), connection: bodyOf(connection), accounts: bodyOf(accounts) });
}

function finapiAdapter(baseUrl: string, token: string, timeoutMs?: number, now?: () => number) {
  return createFinapiAdapter({ baseUrl, token, ...(timeoutMs !== undefined ? { timeoutMs } : {}), ...(now ? { now } : {}) });
}

const finapiRoute: StubWorld['route'] = (method, path) => {
  if (method !== 'GET') return null;
  const p = path.split('?')[0]!;
  if (/^\/finapi\/api\/tasks\/[^/]+$/.test(p)) return 'task';
  if (/^\/finapi\/api\/webForms\/[^/]+$/.test(p)) return 'webForm';
  if (/^\/finapi\/api\/v1\/bankConnections\/[^/]+$/.test(p)) return 'connection';
  if (p === '/finapi/api/v1/accounts') return 'accounts';
  return null;
};

const finapiFixture: FamilyFixture = {
  family: 'finapi',
  createAdapter: (baseUrl, config) => finapiAdapter(baseUrl, config.token, config.timeoutMs, config.now),
  async connect(baseUrl, token, scenario) {
    if (scenario === 'embedded') throw new Error('finapi has no embedded TAN scenario');
    return String((await createFinapiSandboxConnection(baseUrl, token, FINAPI_SCENARIO[scenario])).id);
  },
  embedded: { unsupported: 'finAPI asks the user through Web Form 2.0 (WEB_FORM challenge), never for a TAN through the API' },
  // "e.g. wrong stored credentials": finAPI reports BANK_SERVER_REJECTION, mapped to BANK_REJECTED (never retried).
  credentialsFailure: { code: 'BANK_REJECTED' },
  // finAPI imports connections (and their credentials) through a web form; the sandbox creates them directly.
  sendsCredentials: false,
  classify(method, path) {
    const p = path.split('?')[0]!;
    if (p === '/finapi/api/tasks/backgroundUpdate') return method === 'POST' ? 'trigger' : 'other';
    if (p === '/finapi/api/tasks') return method === 'GET' ? 'list' : 'other';
    if (/^\/finapi\/api\/(tasks|webForms)\/[^/]+$/.test(p) || /^\/finapi\/api\/v1\/(bankConnections\/[^/]+|accounts)$/.test(p)) return method === 'GET' ? 'poll' : 'other';
    return 'other';
  },
  counters(stats, connectionId) {
    const c = stats.finapi?.connections[connectionId];
    if (!c) throw new Error(`finapi sandbox has no connection ${connectionId}`);
    return { syncsStarted: Number(c.tasksCreated), answers: 0 };
  },
  unknownValues: [
    {
      name: 'task status',
      scenario: 'success',
      transform: (b) => (isRecord(b) && isRecord(b.payload) && typeof b.status === 'string' && b.status !== 'NOT_YET_STARTED' ? { ...b, status: 'PAUSED_BY_BANK' } : b),
    },
    { name: 'bank connection updateStatus', scenario: 'success', transform: (b) => (isRecord(b) && typeof b.updateStatus === 'string' ? { ...b, updateStatus: 'SUSPENDED' } : b) },
    {
      name: 'bank connection categorizationStatus',
      scenario: 'success',
      transform: (b) => (isRecord(b) && b.updateStatus === 'READY' ? { ...b, categorizationStatus: 'QUEUED_FOR_PFM' } : b),
    },
    {
      // The per-interface status is the one that counts (the top-level Account.status is deprecated).
      name: 'account interface status',
      scenario: 'success',
      transform: (b) =>
        isRecord(b) && Array.isArray(b.accounts) && b.accounts.length > 0
          ? {
              ...b,
              accounts: b.accounts.map((a, i) =>
                i === 0 && isRecord(a) && Array.isArray(a.interfaces)
                  ? { ...a, interfaces: a.interfaces.map((face) => (isRecord(face) ? { ...face, status: 'ARCHIVED' } : face)) }
                  : a,
              ),
            }
          : b,
    },
  ],
  webhook: {
    headers: { 'content-type': 'application/json' },
    unknownSync: (seed) => JSON.stringify({ taskId: `task_unknown_${seed}`, status: 'COMPLETED', webForm: null }),
    inProgress: (providerRef) => JSON.stringify({ taskId: providerRef, status: 'IN_PROGRESS', webForm: null }),
  },
  responses: {
    ref: FINAPI_REF,
    world: world(finapiWorldBodies(FINAPI_REF), finapiRoute),
    completed: {
      status: 200,
      headers: { 'content-type': 'application/json' },
      route: finapiRoute,
      bodies: {
        task: {
          id: FINAPI_REF.providerRef,
          createdAt: '2026-01-01T10:00:00.000+0000',
          type: 'BACKGROUND_UPDATE',
          status: 'COMPLETED',
          payload: { bankConnectionId: Number(FINAPI_REF.connectionId), webForm: null, errorCode: null },
        },
        webForm: { id: 'wf_1', url: 'https://webform.example/wf_1', createdAt: '2026-01-01T10:00:00.000+0000', expiresAt: '2026-01-01T10:20:00.000+0000', status: 'COMPLETED', payload: null },
        connection: { id: Number(FINAPI_REF.connectionId), name: 'Girokonto', updateStatus: 'READY', categorizationStatus: 'READY', accountIds: [1, 2] },
        accounts: {
          accounts: [
            { id: 1, bankConnectionId: Number(FINAPI_REF.connectionId), accountType: 'Checking', isNew: false, status: 'UPDATED' },
            { id: 2, bankConnectionId: Number(FINAPI_REF.connectionId), accountType: 'Security', isNew: false, status: 'DOWNLOAD_FAILED' },
          ],
        },
      },
    },
    // finAPI: our task finished (or its web form was completed), the connection is READY with categorization
    // READY (the adapter waits for it by default), and every account of the connection was read back in a
    // final, documented status.
    isValidCompleted(w) {
      if (!ok(w)) return false;
      const task = onWire(w.bodies.task);
      const webForm = onWire(w.bodies.webForm);
      const connection = onWire(w.bodies.connection);
      const accounts = onWire(w.bodies.accounts);
      if (!isRecord(task) || task.id !== FINAPI_REF.providerRef || !isRecord(task.payload)) return false;
      if (task.status === 'WEB_FORM_REQUIRED') {
        const inTask = isRecord(task.payload.webForm) ? task.payload.webForm.status : undefined;
        if (inTask !== 'COMPLETED' && !(isRecord(webForm) && webForm.status === 'COMPLETED')) return false;
      } else if (task.status !== 'COMPLETED') return false;
      if (!isRecord(connection) || connection.id !== Number(FINAPI_REF.connectionId)) return false;
      if (connection.updateStatus !== 'READY' || connection.categorizationStatus !== 'READY' || !Array.isArray(connection.accountIds)) return false;
      if (connection.accountIds.length === 0) return true;
      if (!isRecord(accounts) || !Array.isArray(accounts.accounts)) return false;
      const list = accounts.accounts;
      return connection.accountIds.every((id) =>
        list.some((a) => isRecord(a) && a.id === id && a.bankConnectionId === connection.id && FINAPI_ACCOUNT_DONE.includes(a.status as string)),
      );
    },
  },
};

// ---------------------------------------------------------------------------------------------------------
// wealthAPI (seed 000)
// ---------------------------------------------------------------------------------------------------------

const WEALTH_SCENARIO: Record<Exclude<FixtureScenario, 'embedded'>, string> = { success: 'success', credentials: 'invalid-credentials' };
const WEALTH_REF: SyncRef = { connectionId: 'wc_stub', providerRef: 'proc_stub' };

function wealthProcessArb(ref: SyncRef): fc.Arbitrary<unknown> {
  const item = (idKey: string, countKey: string) =>
    fc.record({
      [idKey]: fc.oneof(fc.string({ minLength: 1 }), fc.constant('')),
      status: enumish(['UPDATED', 'FAILED']),
      [countKey]: fc.oneof({ weight: 5, arbitrary: fc.nat(100) }, { weight: 1, arbitrary: fc.constant(-1) }),
    });
  return bodyOf(
    fc.record(
      {
        processId: mostly(ref.providerRef, fc.string()),
        bankConnectionId: fc.option(mostly(ref.connectionId, fc.oneof(fc.string(), fc.integer())), { nil: undefined }),
        status: enumish(['PENDING', 'RUNNING', 'SUCCESS', 'FAILED']),
        createdAt: fc.option(timestampArb),
        updatedAt: fc.option(timestampArb),
        synchronizationError: field(fc.option(fc.record({ code: enumish(['INVALID_CREDENTIALS', 'TWO_FACTOR_REQUIRED', 'BANK_UNAVAILABLE']), message: fc.option(fc.string()) }))),
        result: field(
          fc.option(
            fc.record({
              accounts: fc.array(item('accountId', 'cashTransactionsAdded'), { maxLength: 3 }),
              portfolios: fc.array(item('portfolioId', 'bookingsAdded'), { maxLength: 2 }),
            }),
          ),
        ),
      },
      { requiredKeys: ['processId', 'status'] },
    ),
  );
}

function wealthAdapter(baseUrl: string, token: string, timeoutMs?: number, now?: () => number) {
  return createWealthAdapter({ baseUrl, token, ...(timeoutMs !== undefined ? { timeoutMs } : {}), ...(now ? { now } : {}) });
}

const wealthRoute: StubWorld['route'] = (method, path) =>
  method === 'GET' && /^\/wealthapi\/v2\/bankConnections\/updateProcess\/[^/]+$/.test(path.split('?')[0]!) ? 'process' : null;

const wealthFixture: FamilyFixture = {
  family: 'wealthapi',
  createAdapter: (baseUrl, config) => wealthAdapter(baseUrl, config.token, config.timeoutMs, config.now),
  async connect(baseUrl, token, scenario, credentials = { login: 'user', pin: 'pin-0000' }) {
    if (scenario === 'embedded') throw new Error('wealthapi has no embedded TAN scenario');
    return (await wealthAdapter(baseUrl, token).createConnection({ name: 'Sandbox Broker', credentials, scenario: WEALTH_SCENARIO[scenario] })).id;
  },
  embedded: { unsupported: 'wealthAPI background updates have no challenges (2FA fails the update; the user goes through the TPP web form)' },
  credentialsFailure: { code: 'INVALID_CREDENTIALS' },
  sendsCredentials: true,
  classify(method, path) {
    const p = path.split('?')[0]!;
    if (/^\/wealthapi\/v2\/bankConnections\/[^/]+\/update$/.test(p)) return method === 'PUT' ? 'trigger' : 'other';
    if (/^\/wealthapi\/v2\/bankConnections\/updateProcess\/[^/]+$/.test(p)) return method === 'GET' ? 'poll' : 'other';
    // Preflight and reconciliation reads.
    if (/^\/wealthapi\/v2\/bankConnections\/[^/]+$/.test(p) || p === '/wealthapi/v1/accounts/manualSyncRequired') return method === 'GET' ? 'list' : 'other';
    return 'other';
  },
  counters(stats, connectionId) {
    const c = stats.wealthapi?.connections[connectionId];
    if (!c) throw new Error(`wealthapi sandbox has no connection ${connectionId}`);
    return { syncsStarted: Number(c.updatesStarted), answers: 0 };
  },
  unknownValues: [
    { name: 'process status', scenario: 'success', transform: (b) => (isRecord(b) && b.status === 'RUNNING' ? { ...b, status: 'WAITING_FOR_BANK' } : b) },
    {
      name: 'account result status',
      scenario: 'success',
      transform: (b) =>
        isRecord(b) && isRecord(b.result) && Array.isArray(b.result.accounts) && b.result.accounts.length > 0
          ? { ...b, result: { ...b.result, accounts: b.result.accounts.map((a, i) => (i === 0 && isRecord(a) ? { ...a, status: 'ARCHIVED' } : a)) } }
          : b,
    },
    {
      name: 'portfolio result status',
      scenario: 'success',
      transform: (b) =>
        isRecord(b) && isRecord(b.result) && Array.isArray(b.result.portfolios) && b.result.portfolios.length > 0
          ? { ...b, result: { ...b.result, portfolios: b.result.portfolios.map((a, i) => (i === 0 && isRecord(a) ? { ...a, status: 'PARTIALLY_UPDATED' } : a)) } }
          : b,
    },
  ],
  webhook: { unsupported: 'wealthAPI sends no update callbacks (the update is polled); every delivery is INVALID_WEBHOOK' },
  responses: {
    ref: WEALTH_REF,
    world: world(fc.record({ process: wealthProcessArb(WEALTH_REF) }), wealthRoute),
    completed: {
      status: 200,
      headers: { 'content-type': 'application/json' },
      route: wealthRoute,
      bodies: {
        process: {
          processId: WEALTH_REF.providerRef,
          bankConnectionId: WEALTH_REF.connectionId,
          status: 'SUCCESS',
          bankingInterfaces: ['FINTS_SERVER'],
          createdAt: '2026-01-01T10:00:00.000Z',
          updatedAt: '2026-01-01T10:00:05.000Z',
          synchronizationError: null,
          result: {
            accounts: [{ accountId: 'cash_1', accountType: 'CHECKING', status: 'UPDATED', cashTransactionsAdded: 3, balanceUpdated: true }],
            portfolios: [{ portfolioId: 'pf_1', status: 'UPDATED', bookingsAdded: 1, securitiesUpdated: true }],
          },
        },
      },
    },
    // wealthAPI: our process (of our connection, when it says) in SUCCESS (seed 000: every account and portfolio
    // of the connection was updated); a per-item `result` (a sandbox extension) is optional, but when present its
    // every cash account and portfolio is well-formed and in a documented status.
    isValidCompleted(w) {
      const p = onWire(w.bodies.process);
      if (!ok(w) || !isRecord(p) || p.processId !== WEALTH_REF.providerRef || p.status !== 'SUCCESS') return false;
      if (p.bankConnectionId !== undefined && String(p.bankConnectionId) !== WEALTH_REF.connectionId) return false;
      const r = p.result;
      if (r === undefined || r === null) return true;
      if (!isRecord(r) || !Array.isArray(r.accounts) || !Array.isArray(r.portfolios)) return false;
      const item = (idKey: string, countKey: string) => (x: unknown) =>
        isRecord(x) && nonEmptyString(x[idKey]) && ['UPDATED', 'FAILED'].includes(x.status as string) && count(x[countKey]);
      return r.accounts.every(item('accountId', 'cashTransactionsAdded')) && r.portfolios.every(item('portfolioId', 'bookingsAdded'));
    },
  },
};

// ---------------------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------------------

export const FAMILY_FIXTURES: Record<string, FamilyFixture> = {
  finx: finxFixture,
  xs2a: xs2aFixture,
  finapi: finapiFixture,
  wealthapi: wealthFixture,
};

/** Every registered family, when the suite runs. */
export const FAMILIES: readonly string[] = [...PROVIDER_FAMILIES];

/** The fixture of a registered family; throws (failing the test) when none was written for it. */
export function fixtureFor(family: string): FamilyFixture {
  const fixture = FAMILY_FIXTURES[family];
  if (!fixture) {
    throw new Error(
      `provider family ${JSON.stringify(family)} is registered in src/providers/registry.ts but has no reliability/security ` +
        `fixture: add one to FAMILY_FIXTURES in test/reliability/families.ts (scenarios, call classifier, counters, webhook and response bodies)`,
    );
  }
  return fixture;
}

/** A canonical observation that the adapter produced must be valid canonical data. */
export function isCanonical(observation: unknown): boolean {
  return Observation.safeParse(observation).success;
}
