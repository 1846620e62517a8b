/**
 * xs2a.api bank connections, sandboxed (seed 003): sync modes, sync_active / sync_message / sync_fail_counter,
 * disabled after 3 failures in a row, `force`, 202 + wizard_session_key when the user must act vs 204,
 * reset (always 202 with a new key), bank connection events (webhooks), paged list, delete.
 *
 * Provider semantics: a failed sync sets sync_active=false, increments sync_fail_counter and sets sync_message;
 * an inactive connection refuses a sync unless `force: true`; the third failure in a row disables the connection
 * for good (409 CONNECTION_DISABLED on every further sync; delete and recreate); a success resets the counter.
 * One sync at a time per connection (409 SYNC_IN_PROGRESS).
 *
 * Scripts advance by reads, never by wall time: every GET of a connection whose sync attempt is RUNNING moves it
 * one step; opening the wizard page (`GET /xs2a/wizard/{key}`, what the user's browser does) completes a user
 * interaction. The `webhook-completion` scenario finishes by a timer instead, so only its webhook reports it early.
 * Only wizard deadlines and `consent_valid_until` use the clock.
 *
 * Sandbox extensions to the xs2a wire format (all optional for a client):
 * - create connection: `scenario` (default `background-success`); credentials are accepted and dropped;
 * - connection: `status` (READY | DISABLED) and `last_sync`, the newest sync attempt: `{ attempt, state
 *   (QUEUED | RUNNING | WAITING_FOR_USER | SUCCEEDED | FAILED), origin (sync | reset), forced, started_at,
 *   finished_at, wizard_session_key, wizard_expires_at, wizard_completed, error_code, accounts }`;
 *   attempts are numbered 1, 2, 3... per connection, so a client can tell its attempt from earlier ones;
 * - 202 bodies carry `expires_at` (the wizard session deadline);
 * - error bodies `{ error: { code, message } }`.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { SyncErrorCode, SyncResult } from '../../../machines/canonical.js';
import type { ProviderStats, SandboxContext, SandboxOptions, SandboxProvider, SandboxProviderFactory } from '../server.js';
import { apiKeyAccepted } from '../shared/auth.js';
import { collectStats } from '../shared/stats.js';

export interface Xs2aSandboxOptions {
  /** Accepted bearer tokens. Default: any non-empty token. */
  tokens?: readonly string[];
  /** Lifetime of a wizard session (ms). Default 10 minutes. */
  wizardTtlMs?: number;
  /** How long the `webhook-completion` sync runs before it finishes by itself (ms). Default 150. */
  timedCompletionMs?: number;
  /**
   * Answer in the published xs2a.api model only (FinTecSystems' SDK models): no `status` and no `last_sync` on
   * bank connections, no `expires_at` on wizard sessions. Default false (the sandbox extensions are sent).
   */
  publishedModel?: boolean;
}

export const XS2A_MAX_FAILURES = 3;

// ---------------------------------------------------------------------------------------------------------
// The scenario table
// ---------------------------------------------------------------------------------------------------------

type AccountSpec = { status: 'UPDATED' | 'FAILED'; turnovers: number };
type AttemptOutcome =
  | { result: 'SUCCEEDED'; accounts?: readonly AccountSpec[] }
  | { result: 'FAILED'; errorCode: string; message: string }
  /** A sync state xs2a might add later; the attempt succeeds on the next read. */
  | { result: 'UNKNOWN'; raw: string };

interface AttemptSpec {
  /** The bank wants the user: 202 + wizard_session_key; the sync runs once the wizard is completed. */
  wizard?: boolean;
  /** Reads of the connection while RUNNING until the outcome shows (default 2). */
  runningReads?: number;
  /** Finish by a timer (`timedCompletionMs`) instead of by reads. */
  timed?: boolean;
  outcome: AttemptOutcome;
}

type ReadFault = 'invalid-json' | 'missing-fields';
interface Faults {
  /** Answers to the first sync POSTs of the connection (no attempt starts). */
  syncErrors?: readonly (503 | 429)[];
  /** The first N accepted sync POSTs start the attempt but answer 503 (response "lost"). */
  lostSyncResponses?: number;
  /** Broken bodies for the first GETs of the connection while a sync runs; they do not advance the script. */
  readFaults?: readonly ReadFault[];
}

interface ScenarioDefinition {
  description: string;
  /** Where the connection starts. */
  initial?: { syncFailCounter?: number; syncMessage?: string; consentExpired?: boolean };
  /** Outcome of each sync attempt in order (reset attempts excluded); the last one repeats. */
  attempts: readonly AttemptSpec[];
  faults?: Faults;
  /** What the client sends: `force` only on explicit request. */
  options?: { force?: boolean };
  /** Before the sync, the user resets the connection and completes the new wizard. */
  resetFirst?: boolean;
  expect:
    | { terminal: 'COMPLETED'; outcome: SyncResult['outcome'] }
    | { terminal: 'FAILED'; errorCode: SyncErrorCode };
}

const WRONG_PASSWORD = 'Login failed: the bank rejected the PIN (wrong password)';
const SUCCESS: AttemptSpec = { outcome: { result: 'SUCCEEDED' } };
const WRONG_PASSWORD_FAILURE: AttemptSpec = { outcome: { result: 'FAILED', errorCode: 'INVALID_CREDENTIALS', message: WRONG_PASSWORD } };

/** Every xs2a scenario: initial connection, attempt script, injected faults and expected canonical outcome. */
const SCENARIOS = {
  'background-success': {
    description: 'POST sync -> 204, the sync runs in the background (RUNNING, RUNNING) -> succeeded, counter stays 0',
    attempts: [SUCCESS],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'user-interaction': {
    description: 'POST sync -> 202 + wizard_session_key; the user completes the wizard -> RUNNING -> succeeded',
    attempts: [{ wizard: true, outcome: { result: 'SUCCEEDED' } }],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'wrong-password': {
    description: 'the bank rejects the stored password: sync fails, sync_active=false, sync_fail_counter=1 (never retried)',
    attempts: [WRONG_PASSWORD_FAILURE],
    expect: { terminal: 'FAILED', errorCode: 'INVALID_CREDENTIALS' },
  },
  'inactive-without-force': {
    description: 'connection inactive after a failure (counter 1): a sync without force is refused before any POST',
    initial: { syncFailCounter: 1, syncMessage: WRONG_PASSWORD },
    attempts: [SUCCESS],
    expect: { terminal: 'FAILED', errorCode: 'PREFLIGHT_REFUSED' },
  },
  'force-resync': {
    description: 'connection inactive (counter 1); sync requested with force: true -> 204 -> succeeded, counter back to 0',
    initial: { syncFailCounter: 1, syncMessage: WRONG_PASSWORD },
    attempts: [SUCCESS],
    options: { force: true },
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'three-failures': {
    description: 'two failures already (counter 2); a forced sync fails a third time -> connection DISABLED',
    initial: { syncFailCounter: 2, syncMessage: WRONG_PASSWORD },
    attempts: [WRONG_PASSWORD_FAILURE],
    options: { force: true },
    expect: { terminal: 'FAILED', errorCode: 'CONNECTION_DISABLED' },
  },
  reset: {
    description: 'inactive connection (counter 2) is reset: 202 with a new wizard key, the user re-enters the credentials -> active; the sync succeeds without force',
    initial: { syncFailCounter: 2, syncMessage: WRONG_PASSWORD },
    attempts: [SUCCESS],
    resetFirst: true,
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'consent-expired': {
    description: 'consent_valid_until lies in the past: the sync is refused before any POST (the user renews consent via reset)',
    initial: { consentExpired: true },
    attempts: [SUCCESS],
    expect: { terminal: 'FAILED', errorCode: 'CONSENT_EXPIRED' },
  },
  'webhook-completion': {
    description: 'the background sync finishes by itself after a while; the "sync succeeded" bank connection event reports it',
    attempts: [{ timed: true, outcome: { result: 'SUCCEEDED' } }],
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'partial-accounts': {
    description: 'sync succeeds but one of the two accounts could not be updated -> outcome PARTIAL',
    attempts: [{ outcome: { result: 'SUCCEEDED', accounts: [{ status: 'UPDATED', turnovers: 2 }, { status: 'FAILED', turnovers: 0 }] } }],
    expect: { terminal: 'COMPLETED', outcome: 'PARTIAL' },
  },
  'provider-5xx': {
    description: 'POST sync answers 503 twice (no sync starts), then 204 -> succeeded',
    attempts: [SUCCESS],
    faults: { syncErrors: [503, 503] },
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'rate-limited': {
    description: 'POST sync answers 429 with Retry-After: 1, then 204 -> succeeded',
    attempts: [SUCCESS],
    faults: { syncErrors: [429] },
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'sync-response-lost': {
    description: 'the first POST sync starts the sync but its answer is lost (503); reconciliation finds the attempt',
    attempts: [SUCCESS],
    faults: { lostSyncResponses: 1 },
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'malformed-body': {
    description: 'while the sync runs, a GET answers invalid JSON, then a body without required fields; later reads are fine',
    attempts: [SUCCESS],
    faults: { readFaults: ['invalid-json', 'missing-fields'] },
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'unknown-status': {
    description: "the sync attempt shows state 'SUSPENDED_BY_BANK' (not documented); a client must not treat it as progress",
    attempts: [{ outcome: { result: 'UNKNOWN', raw: 'SUSPENDED_BY_BANK' } }],
    expect: { terminal: 'FAILED', errorCode: 'UNKNOWN_PROVIDER_STATUS' },
  },
} satisfies Record<string, ScenarioDefinition>;

export type Xs2aScenarioName = keyof typeof SCENARIOS;

export interface Xs2aScenarioInfo {
  name: Xs2aScenarioName;
  description: string;
  terminal: 'COMPLETED' | 'FAILED';
  errorCode?: SyncErrorCode;
  outcome?: SyncResult['outcome'];
  /** Sync options the client sends for this scenario (`force` only on explicit request). */
  options?: { force?: boolean };
  /** The user resets the connection (and completes the wizard) before the sync is requested. */
  resetFirst: boolean;
}

export const XS2A_SCENARIOS: readonly Xs2aScenarioInfo[] = Object.entries(SCENARIOS).map(([name, def]) => {
  const d = def as ScenarioDefinition;
  return {
    name: name as Xs2aScenarioName,
    description: d.description,
    terminal: d.expect.terminal,
    ...(d.expect.terminal === 'FAILED' ? { errorCode: d.expect.errorCode } : { outcome: d.expect.outcome }),
    ...(d.options ? { options: d.options } : {}),
    resetFirst: d.resetFirst === true,
  };
});

export function isXs2aScenario(name: string): name is Xs2aScenarioName {
  return Object.prototype.hasOwnProperty.call(SCENARIOS, name);
}

// ---------------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------------

export interface Xs2aConnectionStats {
  [counter: string]: number | string;
  scenario: string;
  /** READY | DISABLED | DELETED */
  status: string;
  /** Every POST .../sync, whatever the answer. */
  syncRequests: number;
  /** Sync attempts started by a sync request (204, 202 or a lost 204). */
  syncsStarted: number;
  forcedSyncs: number;
  /** Sync requests refused because the connection is inactive and `force` was not set. */
  refusedInactive: number;
  /** Sync requests refused because the connection is disabled. */
  refusedDisabled: number;
  /** Sync requests refused because a sync is running. */
  refusedInProgress: number;
  /** Failed syncs (each increments sync_fail_counter). */
  failures: number;
  /** GETs of this connection. */
  reads: number;
  resets: number;
  wizardCompletions: number;
  webhooks: number;
  webhookFailures: number;
}

export interface Xs2aStats extends ProviderStats {
  totals: { connections: number } & Record<string, number>;
  connections: Record<string, Xs2aConnectionStats>;
}

type AttemptState = 'QUEUED' | 'RUNNING' | 'WAITING_FOR_USER' | 'SUCCEEDED' | 'FAILED';

interface Attempt {
  number: number;
  origin: 'sync' | 'reset';
  forced: boolean;
  spec: AttemptSpec;
  state: AttemptState | string;
  startedAt: number;
  finishedAt: number | null;
  reads: number;
  wizardKey: string | null;
  wizardExpiresAt: number | null;
  wizardCompleted: boolean;
  errorCode: string | null;
  accounts: { id: string; status: string; turnovers_added: number }[] | null;
  timer: NodeJS.Timeout | null;
}

interface Connection {
  id: string;
  transaction: string;
  bic: string;
  bankName: string;
  countryId: string;
  syncMode: 'full' | 'shared' | 'none';
  syncActive: boolean;
  syncMessage: string | null;
  syncFailCounter: number;
  consentValidUntil: string;
  disabled: boolean;
  deleted: boolean;
  lastSynced: number | null;
  createdAt: number;
  seq: number;
  scenario: Xs2aScenarioName;
  accountIds: string[];
  attempts: Attempt[];
  /** Index of the next sync attempt spec. */
  nextSpec: number;
  /** Wizard sessions by key (sync and reset); a reset invalidates the earlier ones. */
  wizards: Map<string, { attempt: Attempt | null; expiresAt: number; done: boolean }>;
  syncErrors: (503 | 429)[];
  lostSyncResponses: number;
  readFaults: ReadFault[];
  stats: Xs2aConnectionStats;
}

const TERMINAL = new Set(['SUCCEEDED', 'FAILED']);
const DAY_MS = 24 * 60 * 60_000;

const CreateBody = z.object({
  bank_name: z.string().min(1).max(200).optional(),
  bic: z.string().min(1).max(11).optional(),
  country_id: z.string().length(2).optional(),
  sync_mode: z.enum(['full', 'shared', 'none']).optional(),
  credentials: z.record(z.string(), z.unknown()).optional(),
  scenario: z.string().optional(),
});
const SyncBody = z.object({ force: z.boolean().optional(), credentials: z.string().max(4096).optional() }).nullish();
const ListQuery = z.object({
  per_page: z.coerce.number().int().min(1).max(100).default(15),
  page: z.coerce.number().int().min(1).default(1),
});

function shortId(prefix: string): string {
  return `${prefix}_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
}

function fail(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.status(status).send({ error: { code, message } });
}

const isoDate = (ms: number) => new Date(ms).toISOString().slice(0, 10);
const iso = (ms: number) => new Date(ms).toISOString();

// ---------------------------------------------------------------------------------------------------------
// The module
// ---------------------------------------------------------------------------------------------------------

/** The xs2a family with options (tests); `createXs2aSandbox` is the default-configured factory. */
export function xs2aSandbox(xs2aOptions: Xs2aSandboxOptions = {}): SandboxProviderFactory {
  return (context, options) => buildXs2aSandbox(context, options, xs2aOptions);
}

export const createXs2aSandbox: SandboxProviderFactory = (context, options) => buildXs2aSandbox(context, options, {});

function buildXs2aSandbox(context: SandboxContext, _options: SandboxOptions, xs2aOptions: Xs2aSandboxOptions): SandboxProvider {
  const tokens = xs2aOptions.tokens ? new Set(xs2aOptions.tokens) : null;
  const wizardTtlMs = xs2aOptions.wizardTtlMs ?? 10 * 60_000;
  const timedCompletionMs = xs2aOptions.timedCompletionMs ?? 150;
  const publishedModel = xs2aOptions.publishedModel ?? false;
  const connections = new Map<string, Connection>();
  let seq = 0;
  let closed = false;

  function newConnection(body: z.infer<typeof CreateBody>, scenario: Xs2aScenarioName): Connection {
    const def: ScenarioDefinition = SCENARIOS[scenario];
    const now = context.now();
    const counter = def.initial?.syncFailCounter ?? 0;
    const connection: Connection = {
      id: shortId('bc'),
      transaction: shortId('tx'),
      bic: body.bic ?? 'SANDDEXXXXX',
      bankName: body.bank_name ?? 'Sandbox Bank',
      countryId: body.country_id ?? 'DE',
      syncMode: body.sync_mode ?? 'full',
      syncActive: counter === 0,
      syncMessage: counter > 0 ? (def.initial?.syncMessage ?? 'sync failed') : null,
      syncFailCounter: counter,
      consentValidUntil: isoDate(def.initial?.consentExpired ? now - 2 * DAY_MS : now + 89 * DAY_MS),
      disabled: counter >= XS2A_MAX_FAILURES,
      deleted: false,
      lastSynced: null,
      createdAt: now,
      seq: ++seq,
      scenario,
      accountIds: [shortId('acc'), shortId('acc')],
      attempts: [],
      nextSpec: 0,
      wizards: new Map(),
      syncErrors: [...(def.faults?.syncErrors ?? [])],
      lostSyncResponses: def.faults?.lostSyncResponses ?? 0,
      readFaults: [...(def.faults?.readFaults ?? [])],
      stats: {
        scenario,
        status: 'READY',
        syncRequests: 0,
        syncsStarted: 0,
        forcedSyncs: 0,
        refusedInactive: 0,
        refusedDisabled: 0,
        refusedInProgress: 0,
        failures: 0,
        reads: 0,
        resets: 0,
        wizardCompletions: 0,
        webhooks: 0,
        webhookFailures: 0,
      },
    };
    connections.set(connection.id, connection);
    return connection;
  }

  function serializeAttempt(a: Attempt) {
    return {
      attempt: a.number,
      state: a.state,
      origin: a.origin,
      forced: a.forced,
      started_at: iso(a.startedAt),
      finished_at: a.finishedAt === null ? null : iso(a.finishedAt),
      wizard_session_key: a.state === 'WAITING_FOR_USER' ? a.wizardKey : null,
      wizard_expires_at: a.state === 'WAITING_FOR_USER' && a.wizardExpiresAt !== null ? iso(a.wizardExpiresAt) : null,
      wizard_completed: a.wizardCompleted,
      error_code: a.errorCode,
      accounts: a.accounts,
    };
  }

  function serialize(c: Connection) {
    const last = c.attempts[c.attempts.length - 1];
    return {
      id: c.id,
      transaction: c.transaction,
      bic: c.bic,
      bank_name: c.bankName,
      country_id: c.countryId,
      sync_mode: c.syncMode,
      sync_active: c.syncActive,
      sync_message: c.syncMessage,
      sync_fail_counter: c.syncFailCounter,
      last_synced: c.lastSynced === null ? null : iso(c.lastSynced),
      consent_valid_until: c.consentValidUntil,
      testmode: true,
      created_at: iso(c.createdAt),
      object: 'bank_connection',
      ...(publishedModel ? {} : { status: c.disabled ? 'DISABLED' : 'READY', last_sync: last ? serializeAttempt(last) : null }),
    };
  }

  function notify(c: Connection, event: 'started' | 'succeeded' | 'failed'): void {
    const stats = c.stats;
    const body = { id: shortId('evt'), event: `bank_connection.sync.${event}`, created_at: iso(context.now()), data: serialize(c) };
    const sent = context.sendWebhook('xs2a', body, (ok) => {
      if (!ok) stats.webhookFailures += 1;
    });
    if (sent) stats.webhooks += 1;
  }

  function clearTimer(a: Attempt): void {
    if (a.timer) clearTimeout(a.timer);
    a.timer = null;
  }

  /** The attempt starts running (204, or after the wizard). */
  function run(c: Connection, a: Attempt): void {
    a.state = 'RUNNING';
    a.reads = 0;
    notify(c, 'started');
    if (a.spec.timed && !closed) {
      a.timer = setTimeout(() => {
        a.timer = null;
        if (!TERMINAL.has(a.state) && !c.deleted) finish(c, a);
      }, timedCompletionMs);
      a.timer.unref();
    }
  }

  function finish(c: Connection, a: Attempt): void {
    const now = context.now();
    const consentExpired = isoDate(now) > c.consentValidUntil;
    const outcome: AttemptOutcome = consentExpired
      ? { result: 'FAILED', errorCode: 'CONSENT_EXPIRED', message: 'The consent has expired; the user must renew it' }
      : a.spec.outcome;
    if (outcome.result === 'UNKNOWN' && a.state !== outcome.raw) {
      a.state = outcome.raw;
      return;
    }
    clearTimer(a);
    a.finishedAt = now;
    if (outcome.result === 'FAILED') {
      a.state = 'FAILED';
      a.errorCode = outcome.errorCode;
      c.syncFailCounter += 1;
      c.syncActive = false;
      c.syncMessage = outcome.message;
      c.stats.failures += 1;
      if (c.syncFailCounter >= XS2A_MAX_FAILURES) {
        c.disabled = true;
        c.stats.status = 'DISABLED';
      }
      notify(c, 'failed');
      return;
    }
    const specs = outcome.result === 'SUCCEEDED' && outcome.accounts ? outcome.accounts : [{ status: 'UPDATED', turnovers: 3 }, { status: 'UPDATED', turnovers: 1 }];
    while (c.accountIds.length < specs.length) c.accountIds.push(shortId('acc'));
    a.state = 'SUCCEEDED';
    a.accounts = specs.map((spec, i) => ({ id: c.accountIds[i]!, status: spec.status, turnovers_added: spec.turnovers }));
    c.syncFailCounter = 0;
    c.syncActive = true;
    c.syncMessage = null;
    c.lastSynced = now;
    notify(c, 'succeeded');
  }

  function expireIfDue(c: Connection, a: Attempt | undefined): void {
    if (!a || a.state !== 'WAITING_FOR_USER' || a.wizardExpiresAt === null || context.now() < a.wizardExpiresAt) return;
    // The user never finished the wizard: the attempt ends, but it is not a failed sync (counter unchanged).
    a.state = 'FAILED';
    a.errorCode = 'WIZARD_EXPIRED';
    a.finishedAt = context.now();
    notify(c, 'failed');
  }

  /** One read of the connection: the step that drives scripts. */
  function advanceOnRead(c: Connection): void {
    const a = c.attempts[c.attempts.length - 1];
    expireIfDue(c, a);
    if (!a || TERMINAL.has(a.state) || a.state === 'WAITING_FOR_USER' || a.spec.timed) return;
    if (a.state === 'QUEUED') {
      run(c, a);
      return;
    }
    if (a.state !== 'RUNNING') {
      // An undocumented state (UNKNOWN script step) resolves on the next read.
      a.spec = { outcome: { result: 'SUCCEEDED' } };
      finish(c, a);
      return;
    }
    a.reads += 1;
    if (a.reads >= (a.spec.runningReads ?? 2)) finish(c, a);
  }

  function newAttempt(c: Connection, origin: 'sync' | 'reset', forced: boolean, spec: AttemptSpec): Attempt {
    const a: Attempt = {
      number: c.attempts.length + 1,
      origin,
      forced,
      spec,
      state: 'QUEUED',
      startedAt: context.now(),
      finishedAt: null,
      reads: 0,
      wizardKey: null,
      wizardExpiresAt: null,
      wizardCompleted: false,
      errorCode: null,
      accounts: null,
      timer: null,
    };
    c.attempts.push(a);
    return a;
  }

  function openWizard(c: Connection, a: Attempt | null): { key: string; expiresAt: number } {
    const key = `wiz_${randomUUID().replace(/-/g, '')}`;
    const expiresAt = context.now() + wizardTtlMs;
    c.wizards.set(key, { attempt: a, expiresAt, done: false });
    if (a) {
      a.state = 'WAITING_FOR_USER';
      a.wizardKey = key;
      a.wizardExpiresAt = expiresAt;
    }
    return { key, expiresAt };
  }

  function wizardResponse(c: Connection, wizard: { key: string; expiresAt: number }) {
    // The published SessionResponse is `{ wizard_session_key, transaction }`; the rest are sandbox extensions.
    if (publishedModel) return { wizard_session_key: wizard.key, transaction: c.transaction };
    return { id: c.id, transaction: c.transaction, wizard_session_key: wizard.key, expires_at: iso(wizard.expiresAt), object: 'wizard_session' };
  }

  const authorized = (request: FastifyRequest) => apiKeyAccepted(context.auth, request, tokens);

  type Params = { id: string };
  const live = (id: string) => {
    const c = connections.get(id);
    return c && !c.deleted ? c : undefined;
  };

  function register(app: FastifyInstance): void {
    app.addHook('onRequest', async (request, reply) => {
      // The wizard page is what the user's browser opens: no API token there.
      if (request.url.startsWith('/xs2a/wizard/')) return;
      if (!authorized(request)) return fail(reply, 401, 'UNAUTHORIZED', 'missing or invalid bearer token');
    });

    app.post('/api/v1/bank-connections', async (request, reply) => {
      const parsed = CreateBody.safeParse(request.body ?? {});
      if (!parsed.success) {
        const fields = parsed.error.issues.map((i) => i.path.join('.') || '(root)').join(', ');
        return fail(reply, 400, 'VALIDATION_ERROR', `invalid request body (${fields})`);
      }
      const scenario = parsed.data.scenario ?? 'background-success';
      if (!isXs2aScenario(scenario)) return fail(reply, 400, 'UNKNOWN_SCENARIO', 'unknown sandbox scenario');
      // Credentials are accepted and dropped: never stored, returned or logged.
      const c = newConnection(parsed.data, scenario);
      return reply.status(201).send(serialize(c));
    });

    app.get('/api/v1/bank-connections', async (request, reply) => {
      const parsed = ListQuery.safeParse(request.query ?? {});
      if (!parsed.success) return fail(reply, 400, 'VALIDATION_ERROR', 'invalid paging parameters');
      const { per_page: perPage, page } = parsed.data;
      const all = [...connections.values()].filter((c) => !c.deleted).sort((a, b) => a.seq - b.seq);
      const lastPage = Math.max(1, Math.ceil(all.length / perPage));
      const from = (page - 1) * perPage;
      const data = all.slice(from, from + perPage);
      const url = (p: number) => `${context.baseUrl()}/xs2a/api/v1/bank-connections?per_page=${perPage}&page=${p}`;
      return reply.status(200).send({
        total: all.length,
        per_page: perPage,
        current_page: page,
        last_page: lastPage,
        next_page_url: page < lastPage ? url(page + 1) : null,
        prev_page_url: page > 1 ? url(page - 1) : null,
        from: data.length ? from + 1 : null,
        to: data.length ? from + data.length : null,
        data: data.map(serialize),
      });
    });

    app.get<{ Params: Params }>('/api/v1/bank-connections/:id', async (request, reply) => {
      const c = live(request.params.id);
      if (!c) return fail(reply, 404, 'NOT_FOUND', 'bank connection not found');
      c.stats.reads += 1;
      const last = c.attempts[c.attempts.length - 1];
      if (last && !TERMINAL.has(last.state) && c.readFaults.length > 0) {
        const fault = c.readFaults.shift();
        if (fault === 'invalid-json') return reply.status(200).type('application/json').send(`{"id":"${c.id}","sync_active":tru`);
        return reply.status(200).send({ id: c.id, bank_name: c.bankName });
      }
      advanceOnRead(c);
      return reply.status(200).send(serialize(c));
    });

    app.delete<{ Params: Params }>('/api/v1/bank-connections/:id', async (request, reply) => {
      const c = live(request.params.id);
      if (!c) return fail(reply, 404, 'NOT_FOUND', 'bank connection not found');
      c.deleted = true;
      c.stats.status = 'DELETED';
      for (const a of c.attempts) clearTimer(a);
      c.wizards.clear();
      return reply.status(204).send();
    });

    app.post<{ Params: Params }>('/api/v1/bank-connections/:id/sync', async (request, reply) => {
      const c = live(request.params.id);
      if (!c) return fail(reply, 404, 'NOT_FOUND', 'bank connection not found');
      c.stats.syncRequests += 1;
      const parsed = SyncBody.safeParse(request.body);
      if (!parsed.success) return fail(reply, 400, 'VALIDATION_ERROR', 'invalid request body (force)');
      const force = parsed.data?.force === true;

      const injected = c.syncErrors.shift();
      if (injected === 503) return fail(reply, 503, 'SERVICE_UNAVAILABLE', 'sync backend unavailable');
      if (injected === 429) {
        void reply.header('retry-after', '1');
        return fail(reply, 429, 'RATE_LIMITED', 'too many requests');
      }
      if (c.disabled) {
        c.stats.refusedDisabled += 1;
        return fail(reply, 409, 'CONNECTION_DISABLED', 'the bank connection is disabled after 3 failed syncs; delete and recreate it');
      }
      if (c.syncMode === 'none') return fail(reply, 409, 'SYNC_MODE_NONE', 'the bank connection was created with sync_mode none');
      const last = c.attempts[c.attempts.length - 1];
      expireIfDue(c, last);
      if (last && !TERMINAL.has(last.state)) {
        c.stats.refusedInProgress += 1;
        return fail(reply, 409, 'SYNC_IN_PROGRESS', 'a sync of this bank connection is already running');
      }
      if (!c.syncActive && !force) {
        c.stats.refusedInactive += 1;
        return fail(reply, 409, 'SYNC_INACTIVE', 'sync_active is false after a failed sync; fix the cause and sync with force');
      }

      const def: ScenarioDefinition = SCENARIOS[c.scenario];
      const spec = def.attempts[Math.min(c.nextSpec, def.attempts.length - 1)]!;
      c.nextSpec += 1;
      const a = newAttempt(c, 'sync', force, spec);
      c.stats.syncsStarted += 1;
      if (force) c.stats.forcedSyncs += 1;
      let answer: { status: 202; body: unknown } | { status: 204 };
      if (spec.wizard) {
        answer = { status: 202, body: wizardResponse(c, openWizard(c, a)) };
      } else {
        run(c, a);
        answer = { status: 204 };
      }
      if (c.lostSyncResponses > 0) {
        c.lostSyncResponses -= 1;
        return fail(reply, 503, 'SERVICE_UNAVAILABLE', 'sync backend unavailable');
      }
      return answer.status === 202 ? reply.status(202).send(answer.body) : reply.status(204).send();
    });

    app.post<{ Params: Params }>('/api/v1/bank-connections/:id/reset', async (request, reply) => {
      const c = live(request.params.id);
      if (!c) return fail(reply, 404, 'NOT_FOUND', 'bank connection not found');
      c.stats.resets += 1;
      // A reset invalidates every earlier wizard session and supersedes a sync that has not finished.
      c.wizards.clear();
      const last = c.attempts[c.attempts.length - 1];
      if (last && !TERMINAL.has(last.state)) {
        clearTimer(last);
        last.state = 'FAILED';
        last.errorCode = 'RESET';
        last.finishedAt = context.now();
      }
      // A disabled connection gets a key too (reset always answers 202), but nothing can sync it again.
      const attempt = c.disabled ? null : newAttempt(c, 'reset', false, { wizard: true, runningReads: 1, outcome: { result: 'SUCCEEDED' } });
      return reply.status(202).send(wizardResponse(c, openWizard(c, attempt)));
    });

    // What the user's browser opens: the sandbox has no wizard UI, opening the page completes it.
    app.get<{ Params: { key: string } }>('/wizard/:key', async (request, reply) => {
      const page = (status: number, text: string) =>
        reply.status(status).type('text/html').send(`<!doctype html><title>xs2a sandbox wizard</title><p>${text}</p>`);
      for (const c of connections.values()) {
        const wizard = c.wizards.get(request.params.key);
        if (!wizard || c.deleted) continue;
        if (wizard.done) return page(200, 'Already completed.');
        const a = wizard.attempt;
        expireIfDue(c, a ?? undefined);
        if (context.now() >= wizard.expiresAt || (a && a.state !== 'WAITING_FOR_USER')) return page(410, 'This wizard session has expired.');
        wizard.done = true;
        c.stats.wizardCompletions += 1;
        if (!a) return page(200, 'The bank connection is disabled; delete it and create it again.');
        a.wizardCompleted = true;
        // Authenticating in the wizard renews the consent (90 days).
        c.consentValidUntil = isoDate(context.now() + 89 * DAY_MS);
        run(c, a);
        return page(200, 'Thank you, the bank connection is being synced.');
      }
      return page(404, 'Unknown wizard session.');
    });
  }

  function stats(): Xs2aStats {
    return collectStats(connections.values(), { connections: connections.size });
  }

  return {
    name: 'xs2a',
    prefix: '/xs2a',
    scenarios: XS2A_SCENARIOS,
    register,
    stats,
    close() {
      closed = true;
      for (const c of connections.values()) for (const a of c.attempts) clearTimer(a);
    },
  };
}
