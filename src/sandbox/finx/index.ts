/**
 * finX API v2.11 synchronizations, sandboxed (seed 002): accesses, synchronizations QUEUED -> RUNNING <->
 * AWAIT_AUTH -> COMPLETED | FAILED, scopes, challenges, access upgrades 40001/40002/40003, webhooks.
 *
 * Scenario scripts advance by reads, never by wall time: every GET of one sync that is QUEUED, RUNNING or
 * in an unknown status moves it one step; answering an embedded challenge moves it; a decoupled/redirect
 * challenge resolves after N further reads. Only challenge deadlines use the clock (`expires_at`).
 *
 * Sandbox extensions to the finX wire format (all optional for a client):
 * - create access: `scenario` (default `success`) and `challenge_ttl_ms` (deadline of embedded/decoupled
 *   challenges for this access);
 * - sync object: `idempotency_key` (the key that created it, or null), so a client can recognise its own
 *   sync when reconciling; challenge `retry: true` after a wrong TAN.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { SyncErrorCode, SyncResult } from '../../../machines/canonical.js';
import type { ProviderStats, SandboxContext, SandboxOptions, SandboxProvider } from '../server.js';
import { bearerAccepted } from '../shared/auth.js';
import { collectStats } from '../shared/stats.js';

export interface FinxSandboxOptions {
  /** Accepted bearer tokens. Default: any non-empty token. */
  tokens?: readonly string[];
  /** Deadline of the `challenge-timeout` scenario's challenge (ms after it is issued). Default 3000. */
  shortChallengeTtlMs?: number;
  /** Deadline of every other challenge. Default 10 minutes. */
  challengeTtlMs?: number;
}

// ---------------------------------------------------------------------------------------------------------
// The scenario table
// ---------------------------------------------------------------------------------------------------------

export const FINX_CORRECT_TAN = '123456';
export const FINX_WRONG_TAN = '000000';

type AccountSpec = { status: 'UPDATED' | 'DOWNLOAD_FAILED' | 'NEW'; transactions: number };
type ChallengeSpec =
  | { type: 'EMBEDDED'; message: string; shortTtl?: boolean }
  | { type: 'DECOUPLED' | 'REDIRECT'; message: string; resolvesAfterReads: number };
type Step =
  | { status: 'QUEUED' | 'RUNNING' }
  /** A status finX might add later; not in v2.11. Advances on read like RUNNING. */
  | { status: 'UNKNOWN'; raw: string }
  | { status: 'AWAIT_AUTH'; challenge: ChallengeSpec }
  | { status: 'COMPLETED'; accounts: readonly AccountSpec[] }
  | { status: 'FAILED'; code: string | number; message: string; upgrade?: 'DIRECT' | 'MULTI_ACCESS' | 'PARTIAL' };

type PollFault = 'invalid-json' | 'missing-fields';
interface Faults {
  /** Answers to the first trigger POSTs of the access (no sync is created). */
  triggerErrors?: readonly (503 | 429)[];
  /** The first N successful triggers of the access create the sync but answer 503 (response "lost"). */
  lostTriggerResponses?: number;
  /** Broken bodies for the first polls (single-sync GETs) of the access; they do not advance the script. */
  pollFaults?: readonly PollFault[];
}

interface ScenarioDefinition {
  description: string;
  steps: readonly Step[];
  faults?: Faults;
  /** TANs a scripted user gives, in order, for each embedded challenge prompt. */
  answers: readonly string[];
  /** What a correct client (the engine) ends with. */
  expect:
    | { terminal: 'COMPLETED'; outcome: SyncResult['outcome'] }
    | { terminal: 'FAILED'; errorCode: SyncErrorCode; providerCode?: string };
}

const Q: Step = { status: 'QUEUED' };
const R: Step = { status: 'RUNNING' };
const ALL_UPDATED: readonly AccountSpec[] = [
  { status: 'UPDATED', transactions: 3 },
  { status: 'UPDATED', transactions: 1 },
];
const TAN_PROMPT = 'Please enter the TAN sent to your device';
const upgradeFailure = (code: 40001 | 40002 | 40003, kind: 'DIRECT' | 'MULTI_ACCESS' | 'PARTIAL', what: string): Step => ({
  status: 'FAILED',
  code,
  message: `${what} access upgrade: strong customer authentication is required before the next synchronization`,
  upgrade: kind,
});

/** Every finX scenario: script, injected faults and expected canonical outcome. */
const SCENARIOS = {
  success: {
    description: 'QUEUED -> RUNNING -> RUNNING -> COMPLETED, all accounts updated',
    steps: [Q, R, R, { status: 'COMPLETED', accounts: ALL_UPDATED }],
    answers: [],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'one-challenge': {
    description: `RUNNING -> AWAIT_AUTH (embedded TAN ${FINX_CORRECT_TAN}) -> RUNNING -> COMPLETED`,
    steps: [Q, R, { status: 'AWAIT_AUTH', challenge: { type: 'EMBEDDED', message: TAN_PROMPT } }, R, { status: 'COMPLETED', accounts: ALL_UPDATED }],
    answers: [FINX_CORRECT_TAN],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'two-challenges': {
    description: 'two embedded challenges in a row (answering the first yields the second) -> RUNNING -> COMPLETED',
    steps: [
      Q,
      R,
      { status: 'AWAIT_AUTH', challenge: { type: 'EMBEDDED', message: TAN_PROMPT } },
      { status: 'AWAIT_AUTH', challenge: { type: 'EMBEDDED', message: 'Please confirm with a second TAN' } },
      R,
      { status: 'COMPLETED', accounts: ALL_UPDATED },
    ],
    answers: [FINX_CORRECT_TAN, FINX_CORRECT_TAN],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'wrong-tan': {
    description: `embedded challenge; a wrong TAN yields a new challenge marked retry (never a failure); ${FINX_CORRECT_TAN} -> COMPLETED`,
    steps: [Q, R, { status: 'AWAIT_AUTH', challenge: { type: 'EMBEDDED', message: TAN_PROMPT } }, { status: 'COMPLETED', accounts: ALL_UPDATED }],
    answers: [FINX_WRONG_TAN, FINX_CORRECT_TAN],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  decoupled: {
    description: 'AWAIT_AUTH decoupled (approve in the bank app), resolves by itself after 2 reads -> RUNNING -> COMPLETED',
    steps: [
      Q,
      R,
      { status: 'AWAIT_AUTH', challenge: { type: 'DECOUPLED', message: 'Please approve in your banking app', resolvesAfterReads: 2 } },
      R,
      { status: 'COMPLETED', accounts: ALL_UPDATED },
    ],
    answers: [],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  redirect: {
    description: 'AWAIT_AUTH redirect (user authenticates at the bank), resolves after 2 reads -> RUNNING -> COMPLETED',
    steps: [
      Q,
      R,
      { status: 'AWAIT_AUTH', challenge: { type: 'REDIRECT', message: 'Please log in at your bank', resolvesAfterReads: 2 } },
      R,
      { status: 'COMPLETED', accounts: ALL_UPDATED },
    ],
    answers: [],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'challenge-timeout': {
    description: 'embedded challenge with a short deadline (shortChallengeTtlMs); once expired, reads return FAILED CHALLENGE_EXPIRED',
    steps: [Q, R, { status: 'AWAIT_AUTH', challenge: { type: 'EMBEDDED', message: TAN_PROMPT, shortTtl: true } }, { status: 'COMPLETED', accounts: ALL_UPDATED }],
    answers: [],
    expect: { terminal: 'FAILED', errorCode: 'CHALLENGE_EXPIRED', providerCode: 'CHALLENGE_EXPIRED' },
  },
  'provider-5xx': {
    description: 'the first two trigger attempts answer 503 (no sync created), then like success',
    steps: [Q, R, R, { status: 'COMPLETED', accounts: ALL_UPDATED }],
    faults: { triggerErrors: [503, 503] },
    answers: [],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'rate-limited': {
    description: 'the first trigger answers 429 with Retry-After: 1 (no sync created), then like success',
    steps: [Q, R, R, { status: 'COMPLETED', accounts: ALL_UPDATED }],
    faults: { triggerErrors: [429] },
    answers: [],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'trigger-lost': {
    description: 'the first trigger creates the sync but answers 503 (outcome unknown to the client), then like success',
    steps: [Q, R, R, { status: 'COMPLETED', accounts: ALL_UPDATED }],
    faults: { lostTriggerResponses: 1 },
    answers: [],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'malformed-body': {
    description: 'first poll returns invalid JSON, second a body missing required fields (neither advances), then like success',
    steps: [Q, R, R, { status: 'COMPLETED', accounts: ALL_UPDATED }],
    faults: { pollFaults: ['invalid-json', 'missing-fields'] },
    answers: [],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  partial: {
    description: 'COMPLETED with one account UPDATED, one DOWNLOAD_FAILED and one NEW (outcome PARTIAL)',
    steps: [
      Q,
      R,
      {
        status: 'COMPLETED',
        accounts: [
          { status: 'UPDATED', transactions: 2 },
          { status: 'DOWNLOAD_FAILED', transactions: 0 },
          { status: 'NEW', transactions: 5 },
        ],
      },
    ],
    answers: [],
    expect: { terminal: 'COMPLETED', outcome: 'PARTIAL' },
  },
  failed: {
    description: "RUNNING -> FAILED { code: 'BANK_UNAVAILABLE' }",
    steps: [Q, R, { status: 'FAILED', code: 'BANK_UNAVAILABLE', message: 'The bank is temporarily not reachable' }],
    answers: [],
    expect: { terminal: 'FAILED', errorCode: 'BANK_REJECTED', providerCode: 'BANK_UNAVAILABLE' },
  },
  'invalid-credentials': {
    description: "RUNNING -> FAILED { code: 'INVALID_CREDENTIALS' } (must never be retried automatically)",
    steps: [Q, R, { status: 'FAILED', code: 'INVALID_CREDENTIALS', message: 'The bank rejected the stored credentials' }],
    answers: [],
    expect: { terminal: 'FAILED', errorCode: 'INVALID_CREDENTIALS', providerCode: 'INVALID_CREDENTIALS' },
  },
  'unknown-status': {
    description: "RUNNING -> 'PAUSED_BY_BANK' (not in v2.11) -> RUNNING -> COMPLETED; a client must not treat it as progress",
    steps: [Q, R, { status: 'UNKNOWN', raw: 'PAUSED_BY_BANK' }, R, { status: 'COMPLETED', accounts: ALL_UPDATED }],
    answers: [],
    expect: { terminal: 'FAILED', errorCode: 'UNKNOWN_PROVIDER_STATUS' },
  },
  'upgrade-40001': {
    description: 'FAILED 40001 direct access upgrade (new access method, same access); the access then needs SCA',
    steps: [Q, R, upgradeFailure(40001, 'DIRECT', 'Direct')],
    answers: [],
    expect: { terminal: 'FAILED', errorCode: 'ACCESS_UPGRADE', providerCode: '40001' },
  },
  'upgrade-40002': {
    description: 'FAILED 40002 multi-access upgrade (first account moved to a new access); the access then needs SCA',
    steps: [Q, R, upgradeFailure(40002, 'MULTI_ACCESS', 'Multi-access')],
    answers: [],
    expect: { terminal: 'FAILED', errorCode: 'ACCESS_UPGRADE', providerCode: '40002' },
  },
  'upgrade-40003': {
    description: 'FAILED 40003 partial access upgrade (second account no longer supported); the access then needs SCA',
    steps: [Q, R, upgradeFailure(40003, 'PARTIAL', 'Partial')],
    answers: [],
    expect: { terminal: 'FAILED', errorCode: 'ACCESS_UPGRADE', providerCode: '40003' },
  },
} satisfies Record<string, ScenarioDefinition>;

export type FinxScenarioName = keyof typeof SCENARIOS;

export interface FinxScenarioInfo {
  name: FinxScenarioName;
  description: string;
  /** Canonical terminal status a correct client reaches. */
  terminal: 'COMPLETED' | 'FAILED';
  /** Canonical SyncError code when FAILED. */
  errorCode?: SyncErrorCode;
  /** finX error code behind it, when the provider reports one. */
  providerCode?: string;
  /** Canonical result outcome when COMPLETED. */
  outcome?: SyncResult['outcome'];
  /** TANs to give, in order, for each embedded challenge prompt. */
  answers: readonly string[];
}

export const FINX_SCENARIOS: readonly FinxScenarioInfo[] = Object.entries(SCENARIOS).map(([name, def]) => {
  const d = def as ScenarioDefinition;
  return {
    name: name as FinxScenarioName,
    description: d.description,
    terminal: d.expect.terminal,
    ...(d.expect.terminal === 'FAILED'
      ? { errorCode: d.expect.errorCode, ...(d.expect.providerCode ? { providerCode: d.expect.providerCode } : {}) }
      : { outcome: d.expect.outcome }),
    answers: d.answers,
  };
});

export function isFinxScenario(name: string): name is FinxScenarioName {
  return Object.prototype.hasOwnProperty.call(SCENARIOS, name);
}

// ---------------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------------

export interface FinxConnectionStats {
  [counter: string]: number | string;
  scenario: string;
  accessMethodId: string;
  /** Syncs created (201s, plus syncs created behind a "lost" 503). */
  syncsStarted: number;
  /** Every POST to /syncs, whatever the answer. */
  triggers: number;
  /** Trigger POSTs answered by an idempotent replay (200, same sync). */
  replays: number;
  /** POSTs that found a non-terminal sync on the access (409 SYNC_IN_PROGRESS). */
  overlaps: number;
  /** Single-sync GETs. */
  polls: number;
  /** GETs of the sync list. */
  lists: number;
  /** Challenge answer POSTs. */
  answers: number;
  wrongAnswers: number;
  /** Webhook deliveries attempted (each at most once). */
  webhooks: number;
  webhookFailures: number;
}

export interface FinxStats extends ProviderStats {
  totals: { accesses: number } & Record<string, number>;
  connections: Record<string, FinxConnectionStats>;
}

interface AccessState {
  id: string;
  providerId: string;
  accessMethodId: string;
  createdAt: number;
  scenario: FinxScenarioName;
  challengeTtlMs: number | undefined;
  accountIds: string[];
  syncs: SyncState[];
  idempotency: Map<string, SyncState>;
  triggerErrors: (503 | 429)[];
  lostTriggerResponses: number;
  pollFaults: PollFault[];
  stats: FinxConnectionStats;
}

interface ChallengeState {
  id: string;
  type: 'EMBEDDED' | 'DECOUPLED' | 'REDIRECT';
  message: string;
  redirectUrl: string | null;
  expiresAt: number;
  retry: boolean;
}

interface SyncState {
  id: string;
  seq: number;
  access: AccessState;
  scope: 'TRANSACTIONS' | 'ACCOUNTS';
  createdAt: number;
  updatedAt: number;
  steps: readonly Step[];
  step: number;
  status: string;
  challenge: ChallengeState | null;
  /** Reads since the current decoupled/redirect challenge was issued. */
  challengeReads: number;
  lastChallengeId: string | null;
  error: { code: string | number; message: string; data?: Record<string, unknown> } | null;
  accounts: { id: string; status: string; transactions_added: number }[] | null;
  idempotencyKey: string | null;
  expiryTimer: NodeJS.Timeout | null;
}

const TERMINAL = new Set(['COMPLETED', 'FAILED']);

const CreateAccessBody = z.object({
  provider_id: z.string().min(1),
  access_method_id: z.string().min(1),
  credentials: z.record(z.string(), z.unknown()),
  scenario: z.string().optional(),
  challenge_ttl_ms: z.number().int().positive().max(86_400_000).optional(),
});
const TriggerBody = z.object({ scope: z.enum(['TRANSACTIONS', 'ACCOUNTS']).optional() }).nullish();
const AnswerBody = z.object({ response: z.string().min(1).max(256) });

function shortId(prefix: string): string {
  return `${prefix}_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
}

function fail(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.status(status).send({ error: { code, message } });
}

// ---------------------------------------------------------------------------------------------------------
// The module
// ---------------------------------------------------------------------------------------------------------

export function createFinxSandbox(context: SandboxContext, options: SandboxOptions): SandboxProvider {
  const finxOptions = options.finx ?? {};
  const tokens = finxOptions.tokens ? new Set(finxOptions.tokens) : null;
  const shortTtlMs = finxOptions.shortChallengeTtlMs ?? 3_000;
  const defaultTtlMs = finxOptions.challengeTtlMs ?? 10 * 60_000;
  const accesses = new Map<string, AccessState>();
  let syncSeq = 0;
  let closed = false;

  const iso = (ms: number) => new Date(ms).toISOString();

  function newAccess(providerId: string, accessMethodId: string, scenario: FinxScenarioName, ttl?: number): AccessState {
    const def: ScenarioDefinition = SCENARIOS[scenario];
    const id = shortId('acc');
    const access: AccessState = {
      id,
      providerId,
      accessMethodId,
      createdAt: context.now(),
      scenario,
      challengeTtlMs: ttl,
      // A giro and a savings account; accounts reported NEW by a script are added on first sight.
      accountIds: [shortId('acct'), shortId('acct')],
      syncs: [],
      idempotency: new Map(),
      triggerErrors: [...(def.faults?.triggerErrors ?? [])],
      lostTriggerResponses: def.faults?.lostTriggerResponses ?? 0,
      pollFaults: [...(def.faults?.pollFaults ?? [])],
      stats: {
        scenario,
        accessMethodId,
        syncsStarted: 0,
        triggers: 0,
        replays: 0,
        overlaps: 0,
        polls: 0,
        lists: 0,
        answers: 0,
        wrongAnswers: 0,
        webhooks: 0,
        webhookFailures: 0,
      },
    };
    accesses.set(id, access);
    return access;
  }

  function serialize(sync: SyncState) {
    const c = sync.challenge;
    return {
      id: sync.id,
      access_id: sync.access.id,
      scope: sync.scope,
      status: sync.status,
      created_at: iso(sync.createdAt),
      updated_at: iso(sync.updatedAt),
      idempotency_key: sync.idempotencyKey,
      challenge: c
        ? {
            id: c.id,
            type: c.type,
            message: c.message,
            ...(c.redirectUrl ? { redirect_url: c.redirectUrl } : {}),
            expires_at: iso(c.expiresAt),
            ...(c.retry ? { retry: true } : {}),
          }
        : null,
      error: sync.error,
      accounts: sync.accounts,
    };
  }

  function notify(sync: SyncState): void {
    const stats = sync.access.stats;
    const sent = context.sendWebhook('finx', { event: 'sync.updated', sync: serialize(sync) }, (ok) => {
      if (!ok) stats.webhookFailures += 1;
    });
    if (sent) stats.webhooks += 1;
  }

  function clearExpiry(sync: SyncState): void {
    if (sync.expiryTimer) clearTimeout(sync.expiryTimer);
    sync.expiryTimer = null;
  }

  function issueChallenge(sync: SyncState, spec: ChallengeSpec, retry: boolean): void {
    const now = context.now();
    const ttl = spec.type === 'EMBEDDED' && spec.shortTtl ? shortTtlMs : (sync.access.challengeTtlMs ?? defaultTtlMs);
    const id = shortId('chl');
    sync.challenge = {
      id,
      type: spec.type,
      message: retry ? `The TAN was not accepted. ${spec.message}` : spec.message,
      redirectUrl: spec.type === 'REDIRECT' ? `${context.baseUrl()}/finx/bank-login/${sync.id}?challenge=${id}` : null,
      expiresAt: now + ttl,
      retry,
    };
    sync.challengeReads = 0;
    sync.lastChallengeId = id;
    clearExpiry(sync);
    // Lets webhook-only clients learn about the expiry; reads apply it lazily anyway.
    if (!closed) {
      sync.expiryTimer = setTimeout(() => {
        sync.expiryTimer = null;
        expireIfDue(sync);
      }, ttl + 5);
      sync.expiryTimer.unref();
    }
  }

  function upgradeData(access: AccessState, kind: 'DIRECT' | 'MULTI_ACCESS' | 'PARTIAL') {
    const newMethod = `${access.accessMethodId.replace(/-(psd2|api)$/i, '')}-psd2`;
    const [first = '', second = ''] = access.accountIds;
    let accounts: { account_id: string; access_id: string | null; supported: boolean }[];
    if (kind === 'DIRECT') {
      accounts = access.accountIds.map((accountId) => ({ account_id: accountId, access_id: access.id, supported: true }));
    } else if (kind === 'MULTI_ACCESS') {
      const split = newAccess(access.providerId, newMethod, 'one-challenge', access.challengeTtlMs);
      split.accountIds = [first];
      access.accountIds = access.accountIds.filter((id) => id !== first);
      accounts = [
        { account_id: first, access_id: split.id, supported: true },
        ...access.accountIds.map((accountId) => ({ account_id: accountId, access_id: access.id, supported: true })),
      ];
    } else {
      accounts = [
        { account_id: first, access_id: access.id, supported: true },
        { account_id: second, access_id: null, supported: false },
      ];
      access.accountIds = access.accountIds.filter((id) => id !== second);
    }
    // The upgraded access needs strong customer authentication on its next synchronization.
    access.accessMethodId = newMethod;
    access.stats.accessMethodId = newMethod;
    access.scenario = 'one-challenge';
    access.stats.scenario = 'one-challenge';
    return { access_method_id: newMethod, accounts };
  }

  /** Moves the sync to step `index` (clamped to the script's end); sends a webhook when something changed. */
  function enter(sync: SyncState, index: number, notifyChange = true): void {
    const target = Math.min(index, sync.steps.length - 1);
    const step = sync.steps[target]!;
    sync.step = target;
    sync.updatedAt = Math.max(context.now(), sync.updatedAt + 1); // strictly increasing, like a real updated_at
    clearExpiry(sync);
    sync.challenge = null;
    switch (step.status) {
      case 'QUEUED':
      case 'RUNNING':
        sync.status = step.status;
        break;
      case 'UNKNOWN':
        sync.status = step.raw;
        break;
      case 'AWAIT_AUTH':
        sync.status = 'AWAIT_AUTH';
        issueChallenge(sync, step.challenge, false);
        break;
      case 'COMPLETED': {
        sync.status = 'COMPLETED';
        const ids = sync.access.accountIds;
        while (ids.length < step.accounts.length) ids.push(shortId('acct'));
        sync.accounts = step.accounts.map((spec, i) => ({
          id: ids[i]!,
          status: spec.status,
          transactions_added: sync.scope === 'ACCOUNTS' ? 0 : spec.transactions,
        }));
        break;
      }
      case 'FAILED':
        sync.status = 'FAILED';
        sync.error = {
          code: step.code,
          message: step.message,
          ...(step.upgrade ? { data: upgradeData(sync.access, step.upgrade) } : {}),
        };
        break;
    }
    if (notifyChange) notify(sync);
  }

  function expireIfDue(sync: SyncState): void {
    const c = sync.challenge;
    if (sync.status !== 'AWAIT_AUTH' || !c || context.now() < c.expiresAt) return;
    clearExpiry(sync);
    sync.status = 'FAILED';
    sync.challenge = null;
    sync.updatedAt = Math.max(context.now(), sync.updatedAt + 1); // strictly increasing, like a real updated_at
    sync.error = { code: 'CHALLENGE_EXPIRED', message: 'The authorization challenge expired before it was solved' };
    notify(sync);
  }

  /** One read of one sync: the step that drives scripts. */
  function advanceOnRead(sync: SyncState): void {
    expireIfDue(sync);
    if (TERMINAL.has(sync.status)) return;
    if (sync.status === 'AWAIT_AUTH') {
      const c = sync.challenge;
      const step = sync.steps[sync.step];
      if (c && c.type !== 'EMBEDDED' && step?.status === 'AWAIT_AUTH' && 'resolvesAfterReads' in step.challenge) {
        sync.challengeReads += 1;
        if (sync.challengeReads >= step.challenge.resolvesAfterReads) enter(sync, sync.step + 1);
      }
      return;
    }
    enter(sync, sync.step + 1);
  }

  const authorized = (request: FastifyRequest) => bearerAccepted(context.auth, 'finx', request, tokens);

  type AccessParams = { accessId: string };
  type SyncParams = { accessId: string; syncId: string };
  type ChallengeParams = SyncParams & { challengeId: string };

  const findSync = (access: AccessState, syncId: string) => access.syncs.find((s) => s.id === syncId);

  function register(app: FastifyInstance): void {
    app.addHook('onRequest', async (request, reply) => {
      // The bank-login page is what a user's browser opens from a REDIRECT challenge: no API token there.
      if (request.url.startsWith('/finx/bank-login/')) return;
      if (!authorized(request)) {
        return fail(reply, 401, 'UNAUTHORIZED', 'missing or invalid bearer token');
      }
    });

    app.post('/v2/accesses', async (request, reply) => {
      const parsed = CreateAccessBody.safeParse(request.body);
      if (!parsed.success) {
        const fields = parsed.error.issues.map((i) => i.path.join('.') || '(root)').join(', ');
        return fail(reply, 400, 'VALIDATION_ERROR', `invalid request body (${fields})`);
      }
      const scenario = parsed.data.scenario ?? 'success';
      if (!isFinxScenario(scenario)) {
        return fail(reply, 400, 'UNKNOWN_SCENARIO', 'unknown sandbox scenario');
      }
      // Credentials are accepted and dropped: never stored, returned or logged.
      const access = newAccess(parsed.data.provider_id, parsed.data.access_method_id, scenario, parsed.data.challenge_ttl_ms);
      return reply.status(201).send({
        id: access.id,
        provider_id: access.providerId,
        access_method_id: access.accessMethodId,
        created_at: iso(access.createdAt),
      });
    });

    app.post<{ Params: AccessParams }>('/v2/accesses/:accessId/syncs', async (request, reply) => {
      const access = accesses.get(request.params.accessId);
      if (!access) return fail(reply, 404, 'NOT_FOUND', 'access not found');
      access.stats.triggers += 1;
      const parsed = TriggerBody.safeParse(request.body);
      if (!parsed.success) return fail(reply, 400, 'VALIDATION_ERROR', 'invalid request body (scope)');
      const rawKey = request.headers['idempotency-key'];
      const key = typeof rawKey === 'string' && rawKey.length > 0 ? rawKey.slice(0, 255) : null;

      if (key !== null) {
        const existing = access.idempotency.get(key);
        if (existing) {
          access.stats.replays += 1;
          expireIfDue(existing);
          return reply.status(200).send(serialize(existing));
        }
      }
      const injected = access.triggerErrors.shift();
      if (injected === 503) return fail(reply, 503, 'SERVICE_UNAVAILABLE', 'synchronization backend unavailable');
      if (injected === 429) {
        void reply.header('retry-after', '1');
        return fail(reply, 429, 'RATE_LIMITED', 'too many requests');
      }

      for (const s of access.syncs) expireIfDue(s);
      if (access.syncs.some((s) => !TERMINAL.has(s.status))) {
        access.stats.overlaps += 1;
        return fail(reply, 409, 'SYNC_IN_PROGRESS', 'a synchronization is already in progress for this access');
      }

      const now = context.now();
      const sync: SyncState = {
        id: shortId('syn'),
        seq: ++syncSeq,
        access,
        scope: parsed.data?.scope ?? 'TRANSACTIONS',
        createdAt: now,
        updatedAt: now,
        steps: SCENARIOS[access.scenario].steps,
        step: 0,
        status: 'QUEUED',
        challenge: null,
        challengeReads: 0,
        lastChallengeId: null,
        error: null,
        accounts: null,
        idempotencyKey: key,
        expiryTimer: null,
      };
      access.syncs.push(sync);
      if (key !== null) access.idempotency.set(key, sync);
      access.stats.syncsStarted += 1;
      enter(sync, 0);

      if (access.lostTriggerResponses > 0) {
        access.lostTriggerResponses -= 1;
        return fail(reply, 503, 'SERVICE_UNAVAILABLE', 'synchronization backend unavailable');
      }
      return reply.status(201).send(serialize(sync));
    });

    app.get<{ Params: AccessParams }>('/v2/accesses/:accessId/syncs', async (request, reply) => {
      const access = accesses.get(request.params.accessId);
      if (!access) return fail(reply, 404, 'NOT_FOUND', 'access not found');
      access.stats.lists += 1;
      for (const s of access.syncs) expireIfDue(s);
      const newestFirst = [...access.syncs].sort((a, b) => b.createdAt - a.createdAt || b.seq - a.seq);
      return reply.status(200).send({ syncs: newestFirst.map(serialize) });
    });

    app.get<{ Params: SyncParams }>('/v2/accesses/:accessId/syncs/:syncId', async (request, reply) => {
      const access = accesses.get(request.params.accessId);
      if (!access) return fail(reply, 404, 'NOT_FOUND', 'access not found');
      access.stats.polls += 1;
      const sync = findSync(access, request.params.syncId);
      if (!sync) return fail(reply, 404, 'NOT_FOUND', 'synchronization not found');

      const fault = access.pollFaults.shift();
      if (fault === 'invalid-json') {
        return reply.status(200).type('application/json').send(`{"id":"${sync.id}","status":"RUNN`);
      }
      if (fault === 'missing-fields') {
        return reply.status(200).send({ id: sync.id, status: sync.status });
      }
      advanceOnRead(sync);
      return reply.status(200).send(serialize(sync));
    });

    app.post<{ Params: ChallengeParams }>(
      '/v2/accesses/:accessId/syncs/:syncId/challenges/:challengeId',
      async (request, reply) => {
        const access = accesses.get(request.params.accessId);
        if (!access) return fail(reply, 404, 'NOT_FOUND', 'access not found');
        access.stats.answers += 1;
        const sync = findSync(access, request.params.syncId);
        if (!sync) return fail(reply, 404, 'NOT_FOUND', 'synchronization not found');
        const parsed = AnswerBody.safeParse(request.body);
        if (!parsed.success) return fail(reply, 400, 'VALIDATION_ERROR', 'invalid request body (response)');

        expireIfDue(sync);
        const challengeId = request.params.challengeId;
        if (sync.status === 'FAILED' && sync.lastChallengeId === challengeId) {
          // Answered too late: the sync already failed (e.g. CHALLENGE_EXPIRED); report its state.
          return reply.status(200).send(serialize(sync));
        }
        const c = sync.challenge;
        if (sync.status !== 'AWAIT_AUTH' || !c || c.id !== challengeId) {
          return fail(reply, 409, 'CHALLENGE_NOT_ACTIVE', 'the challenge is not the active challenge of this synchronization');
        }
        if (c.type !== 'EMBEDDED') {
          return fail(reply, 409, 'CHALLENGE_NOT_ANSWERABLE', 'this challenge is solved outside the API');
        }
        const step = sync.steps[sync.step];
        if (parsed.data.response === FINX_CORRECT_TAN) {
          enter(sync, sync.step + 1);
        } else if (step?.status === 'AWAIT_AUTH') {
          // A wrong TAN never fails the sync: the bank asks again with a new challenge.
          access.stats.wrongAnswers += 1;
          sync.updatedAt = Math.max(context.now(), sync.updatedAt + 1); // strictly increasing, like a real updated_at
          issueChallenge(sync, step.challenge, true);
          notify(sync);
        }
        return reply.status(200).send(serialize(sync));
      },
    );

    // Where REDIRECT challenges point; the sandbox has no bank UI, it just confirms the page exists.
    app.get('/bank-login/:syncId', async (_request, reply) =>
      reply.status(200).type('text/html').send('<!doctype html><title>finX sandbox bank</title><p>Sandbox bank login.</p>'),
    );
  }

  function stats(): FinxStats {
    return collectStats(accesses.values(), { accesses: accesses.size });
  }

  return {
    name: 'finx',
    prefix: '/finx',
    scenarios: FINX_SCENARIOS,
    register,
    stats,
    close() {
      closed = true;
      for (const access of accesses.values()) for (const sync of access.syncs) clearExpiry(sync);
    },
  };
}
