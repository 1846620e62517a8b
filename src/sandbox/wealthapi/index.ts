/**
 * wealthAPI-style background update of bank connections, sandboxed (seed 000), camelCase like wealthAPI:
 *
 * - `GET /v1/accounts/manualSyncRequired[?bankConnectionId=]`: per account, whether it should be synchronized
 *   and a background update is possible (`manualSyncRequired`);
 * - `GET /v2/bankConnections/{id}`: banking interfaces (XS2A, FINTS_SERVER, WEB_SCRAPING), `credentialsStored`,
 *   `lastUpdate` (the consent is ongoing while the last update is less than three months (90 days) away);
 * - `PUT /v2/bankConnections/{id}/update` (optional `bankingInterface`; without it every interface) ->
 *   `{ processId }`; 409 UPDATE_IN_PROGRESS while an update of the connection runs (never two at once);
 * - `GET /v2/bankConnections/updateProcess/{processId}` -> `{ status: PENDING | RUNNING | SUCCESS | FAILED,
 *   synchronizationError }`; on SUCCESS the cash transactions and balances of every account and the bookings
 *   and securities of every portfolio are updated.
 *
 * Scripts advance by reads, never by wall time: every GET of an update process moves it one step. An update
 * another client started (scenario `concurrent-update`) moves one step per GET of its bank connection.
 * Only `lastUpdate` ages use the clock.
 *
 * Sandbox extensions to the wire format (all optional for a client):
 * - `POST /v2/bankConnections` `{ name?, scenario?, credentials? }` creates a connection (credentials dropped);
 * - bank connection: `latestUpdateProcess` `{ processId, status, createdAt }` of its newest update process,
 *   so a client can recognise an update it started (lost response) and see one that runs;
 * - update process: `result` `{ accounts, portfolios }` with per-account results once SUCCESS;
 * - error bodies `{ error: { code, message } }`.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { SyncErrorCode, SyncResult } from '../../../machines/canonical.js';
import type { ProviderStats, SandboxContext, SandboxProvider, SandboxProviderFactory } from '../server.js';
import { bearerAccepted } from '../shared/auth.js';
import { collectStats } from '../shared/stats.js';

export interface WealthSandboxOptions {
  /** Accepted bearer tokens. Default: any non-empty token. */
  tokens?: readonly string[];
  /**
   * Answer with what seed 000 documents only: no `latestUpdateProcess` on bank connections and no `result` on
   * update processes (both sandbox extensions). Default false.
   */
  seedOnly?: boolean;
}

const DAY_MS = 24 * 60 * 60_000;
export const WEALTH_CONSENT_DAYS = 90;

// ---------------------------------------------------------------------------------------------------------
// The scenario table
// ---------------------------------------------------------------------------------------------------------

type Interface = 'XS2A' | 'FINTS_SERVER' | 'WEB_SCRAPING';
type ItemSpec = { status: 'UPDATED' | 'FAILED'; added: number };
type Step = 'PENDING' | 'RUNNING' | { unknown: string };
type Outcome =
  | { status: 'SUCCESS'; accounts?: readonly ItemSpec[]; portfolios?: readonly ItemSpec[] }
  | { status: 'FAILED'; code: string; message: string };

type Fault = 'invalid-json' | 'missing-fields';

interface ScenarioDefinition {
  description: string;
  connection?: {
    interfaces?: readonly Interface[];
    credentialsStored?: boolean;
    /** Days since the last successful update (consent age). Default 3. */
    lastUpdateDaysAgo?: number;
    manualSyncRequired?: boolean;
  };
  /** Statuses shown by successive reads of an update process before its outcome. */
  steps?: readonly Step[];
  outcome?: Outcome;
  /** Another client's update is running when the scenario starts; it ends FAILED after N reads of the connection. */
  foreignUpdate?: { connectionReads: number };
  faults?: {
    /** Answers to the first update PUTs (no process starts). */
    updateErrors?: readonly (503 | 429)[];
    /** The first N accepted PUTs start the process but answer 503 (response "lost"). */
    lostUpdateResponses?: number;
    /** Broken bodies for the first process reads; they do not advance the script. */
    pollFaults?: readonly Fault[];
  };
  expect:
    | { terminal: 'COMPLETED'; outcome: SyncResult['outcome'] }
    | { terminal: 'FAILED'; errorCode: SyncErrorCode };
}

/** Every wealthAPI scenario: connection, update script, injected faults and expected canonical outcome. */
const SCENARIOS = {
  success: {
    description: 'preflight passes; PUT update -> processId; PENDING -> RUNNING -> SUCCESS: 2 cash accounts and 1 portfolio updated',
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'no-manual-sync-required': {
    description: 'GET /v1/accounts/manualSyncRequired says false for every account: preflight refuses, no update is started',
    connection: { manualSyncRequired: false },
    expect: { terminal: 'FAILED', errorCode: 'PREFLIGHT_REFUSED' },
  },
  'web-scraping': {
    description: 'the bank connection includes a WEB_SCRAPING interface: preflight refuses, no update is started',
    connection: { interfaces: ['FINTS_SERVER', 'WEB_SCRAPING'] },
    expect: { terminal: 'FAILED', errorCode: 'PREFLIGHT_REFUSED' },
  },
  'credentials-not-stored': {
    description: 'the user did not store the credentials: preflight refuses, no update is started',
    connection: { credentialsStored: false },
    expect: { terminal: 'FAILED', errorCode: 'PREFLIGHT_REFUSED' },
  },
  'consent-expired': {
    description: 'the last update is 100 days old (consent older than 3 months): refused as CONSENT_EXPIRED, no update is started',
    connection: { lastUpdateDaysAgo: 100 },
    expect: { terminal: 'FAILED', errorCode: 'CONSENT_EXPIRED' },
  },
  'two-factor-required': {
    description: 'the bank asks for 2FA during the update: FAILED with synchronizationError TWO_FACTOR_REQUIRED (user action, never retried)',
    outcome: { status: 'FAILED', code: 'TWO_FACTOR_REQUIRED', message: 'The bank requires a two-factor authentication; update via the TPP web form' },
    expect: { terminal: 'FAILED', errorCode: 'SCA_FAILED' },
  },
  'invalid-credentials': {
    description: 'the bank rejects the stored credentials: FAILED with synchronizationError INVALID_CREDENTIALS (never retried)',
    outcome: { status: 'FAILED', code: 'INVALID_CREDENTIALS', message: 'The bank rejected the stored credentials' },
    expect: { terminal: 'FAILED', errorCode: 'INVALID_CREDENTIALS' },
  },
  'bank-error': {
    description: 'the bank is unavailable during the update: FAILED with synchronizationError BANK_UNAVAILABLE',
    outcome: { status: 'FAILED', code: 'BANK_UNAVAILABLE', message: 'The bank is temporarily not reachable' },
    expect: { terminal: 'FAILED', errorCode: 'BANK_REJECTED' },
  },
  partial: {
    description: 'SUCCESS, but one cash account could not be updated -> outcome PARTIAL',
    outcome: { status: 'SUCCESS', accounts: [{ status: 'UPDATED', added: 4 }, { status: 'FAILED', added: 0 }], portfolios: [{ status: 'UPDATED', added: 1 }] },
    expect: { terminal: 'COMPLETED', outcome: 'PARTIAL' },
  },
  'concurrent-update': {
    description: "another client's update of the connection is running: no second update (busy, retried later); once it ended, ours runs -> SUCCESS",
    foreignUpdate: { connectionReads: 2 },
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'provider-5xx': {
    description: 'PUT update answers 503 twice (no process starts), then the update runs -> SUCCESS',
    faults: { updateErrors: [503, 503] },
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'rate-limited': {
    description: 'PUT update answers 429 with Retry-After: 1, then the update runs -> SUCCESS',
    faults: { updateErrors: [429] },
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'update-response-lost': {
    description: 'the first PUT starts the update but its answer is lost (503); reconciliation finds the process, no second update',
    faults: { lostUpdateResponses: 1 },
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'malformed-body': {
    description: 'the first process reads answer invalid JSON, then a body without required fields; later reads are fine',
    faults: { pollFaults: ['invalid-json', 'missing-fields'] },
    expect: { terminal: 'COMPLETED', outcome: 'COMPLETE' },
  },
  'unknown-status': {
    description: "the update process shows status 'WAITING_FOR_BANK' (not documented); a client must not treat it as progress",
    steps: ['PENDING', { unknown: 'WAITING_FOR_BANK' }, 'RUNNING'],
    expect: { terminal: 'FAILED', errorCode: 'UNKNOWN_PROVIDER_STATUS' },
  },
} satisfies Record<string, ScenarioDefinition>;

export type WealthScenarioName = keyof typeof SCENARIOS;

export interface WealthScenarioInfo {
  name: WealthScenarioName;
  description: string;
  terminal: 'COMPLETED' | 'FAILED';
  errorCode?: SyncErrorCode;
  outcome?: SyncResult['outcome'];
  /** The adapter's preflight refuses this scenario: no update may ever be started. */
  refusedByPreflight: boolean;
}

const PREFLIGHT_CODES: ReadonlySet<string> = new Set(['PREFLIGHT_REFUSED', 'CONSENT_EXPIRED']);

export const WEALTHAPI_SCENARIOS: readonly WealthScenarioInfo[] = Object.entries(SCENARIOS).map(([name, def]) => {
  const d = def as ScenarioDefinition;
  return {
    name: name as WealthScenarioName,
    description: d.description,
    terminal: d.expect.terminal,
    ...(d.expect.terminal === 'FAILED' ? { errorCode: d.expect.errorCode } : { outcome: d.expect.outcome }),
    refusedByPreflight: d.expect.terminal === 'FAILED' && PREFLIGHT_CODES.has(d.expect.errorCode),
  };
});

export function isWealthScenario(name: string): name is WealthScenarioName {
  return Object.prototype.hasOwnProperty.call(SCENARIOS, name);
}

// ---------------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------------

export interface WealthConnectionStats {
  [counter: string]: number | string;
  scenario: string;
  /** GET /v1/accounts/manualSyncRequired calls that covered this connection. */
  preflightChecks: number;
  /** GETs of the bank connection. */
  reads: number;
  /** Every PUT .../update, whatever the answer. */
  updateRequests: number;
  /** Update processes started by a PUT (including one whose answer was lost). */
  updatesStarted: number;
  /** PUTs refused with 409 because an update was running. */
  concurrentRefused: number;
  /** GETs of this connection's update processes. */
  polls: number;
}

export interface WealthStats extends ProviderStats {
  totals: { connections: number } & Record<string, number>;
  connections: Record<string, WealthConnectionStats>;
}

interface Process {
  id: string;
  connection: Connection;
  origin: 'api' | 'foreign';
  interfaces: Interface[];
  steps: readonly Step[];
  outcome: Outcome;
  step: number;
  status: string;
  createdAt: number;
  updatedAt: number;
  error: { code: string; message: string; bankingInterface: string | null } | null;
  result: { accounts: unknown[]; portfolios: unknown[] } | null;
  foreignReadsLeft: number;
}

interface Item {
  id: string;
  accountType: 'CHECKING' | 'SAVINGS' | 'DEPOT';
  manualSyncRequired: boolean;
}

interface Connection {
  id: string;
  name: string;
  scenario: WealthScenarioName;
  interfaces: Interface[];
  credentialsStored: boolean;
  lastUpdate: number | null;
  createdAt: number;
  items: Item[];
  processes: Process[];
  updateErrors: (503 | 429)[];
  lostUpdateResponses: number;
  pollFaults: Fault[];
  stats: WealthConnectionStats;
}

const TERMINAL = new Set(['SUCCESS', 'FAILED']);
const DEFAULT_STEPS: readonly Step[] = ['PENDING', 'RUNNING', 'RUNNING'];

const CreateBody = z.object({
  name: z.string().min(1).max(200).optional(),
  scenario: z.string().optional(),
  credentials: z.record(z.string(), z.unknown()).optional(),
});
const UpdateBody = z.object({ bankingInterface: z.enum(['XS2A', 'FINTS_SERVER', 'WEB_SCRAPING']).optional() }).nullish();

function fail(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.status(status).send({ error: { code, message } });
}

const iso = (ms: number) => new Date(ms).toISOString();

// ---------------------------------------------------------------------------------------------------------
// The module
// ---------------------------------------------------------------------------------------------------------

/** The wealthAPI family with options (tests); `createWealthSandbox` is the default-configured factory. */
export function wealthSandbox(wealthOptions: WealthSandboxOptions = {}): SandboxProviderFactory {
  return (context) => buildWealthSandbox(context, wealthOptions);
}

export const createWealthSandbox: SandboxProviderFactory = (context) => buildWealthSandbox(context, {});

function buildWealthSandbox(context: SandboxContext, wealthOptions: WealthSandboxOptions): SandboxProvider {
  const tokens = wealthOptions.tokens ? new Set(wealthOptions.tokens) : null;
  const seedOnly = wealthOptions.seedOnly ?? false;
  const connections = new Map<string, Connection>();
  const processes = new Map<string, Process>();
  let seq = 1000;

  const newId = (prefix: string) => `${prefix}${randomUUID().replace(/-/g, '').slice(0, 12)}`;

  function newConnection(name: string, scenario: WealthScenarioName): Connection {
    const def: ScenarioDefinition = SCENARIOS[scenario];
    const now = context.now();
    const spec = def.connection ?? {};
    const manual = spec.manualSyncRequired ?? true;
    const c: Connection = {
      id: String(++seq),
      name,
      scenario,
      interfaces: [...(spec.interfaces ?? ['XS2A', 'FINTS_SERVER'])],
      credentialsStored: spec.credentialsStored ?? true,
      lastUpdate: now - (spec.lastUpdateDaysAgo ?? 3) * DAY_MS,
      createdAt: now - 200 * DAY_MS,
      items: [
        { id: newId('acc-'), accountType: 'CHECKING', manualSyncRequired: manual },
        { id: newId('acc-'), accountType: 'SAVINGS', manualSyncRequired: manual },
        { id: newId('dep-'), accountType: 'DEPOT', manualSyncRequired: manual },
      ],
      processes: [],
      updateErrors: [...(def.faults?.updateErrors ?? [])],
      lostUpdateResponses: def.faults?.lostUpdateResponses ?? 0,
      pollFaults: [...(def.faults?.pollFaults ?? [])],
      stats: { scenario, preflightChecks: 0, reads: 0, updateRequests: 0, updatesStarted: 0, concurrentRefused: 0, polls: 0 },
    };
    connections.set(c.id, c);
    if (def.foreignUpdate) {
      const p = newProcess(c, 'foreign', c.interfaces, {
        steps: ['RUNNING'],
        outcome: { status: 'FAILED', code: 'BANK_UNAVAILABLE', message: 'The bank is temporarily not reachable' },
      });
      p.createdAt = now - 60_000;
      p.status = 'RUNNING';
      p.foreignReadsLeft = def.foreignUpdate.connectionReads;
    }
    return c;
  }

  function newProcess(c: Connection, origin: Process['origin'], interfaces: Interface[], script: { steps: readonly Step[]; outcome: Outcome }): Process {
    const now = context.now();
    const p: Process = {
      id: randomUUID(),
      connection: c,
      origin,
      interfaces,
      steps: script.steps,
      outcome: script.outcome,
      step: 0,
      status: statusOf(script.steps[0] ?? 'PENDING'),
      createdAt: now,
      updatedAt: now,
      error: null,
      result: null,
      foreignReadsLeft: 0,
    };
    c.processes.push(p);
    processes.set(p.id, p);
    return p;
  }

  function statusOf(step: Step): string {
    return typeof step === 'string' ? step : step.unknown;
  }

  /** What prevents a background update of this connection (a raw PUT ignoring the documented limits). */
  function blocker(c: Connection): string | null {
    if (c.interfaces.includes('WEB_SCRAPING')) return 'the bank connection includes a web-scraping interface';
    if (!c.credentialsStored) return 'the credentials are not stored';
    if (c.lastUpdate === null || context.now() - c.lastUpdate >= WEALTH_CONSENT_DAYS * DAY_MS) return 'the consent has expired';
    return null;
  }

  function finish(p: Process): void {
    const c = p.connection;
    const now = context.now();
    p.updatedAt = now;
    const outcome = p.outcome;
    if (outcome.status === 'FAILED') {
      p.status = 'FAILED';
      p.error = { code: outcome.code, message: outcome.message, bankingInterface: p.interfaces[0] ?? null };
      return;
    }
    p.status = 'SUCCESS';
    const cash = c.items.filter((i) => i.accountType !== 'DEPOT');
    const depots = c.items.filter((i) => i.accountType === 'DEPOT');
    const cashSpecs = outcome.accounts ?? cash.map((_, i) => ({ status: 'UPDATED' as const, added: i === 0 ? 5 : 1 }));
    const depotSpecs = outcome.portfolios ?? depots.map(() => ({ status: 'UPDATED' as const, added: 2 }));
    p.result = {
      accounts: cash.map((item, i) => {
        const spec = cashSpecs[i] ?? { status: 'UPDATED', added: 0 };
        return { accountId: item.id, accountType: item.accountType, status: spec.status, cashTransactionsAdded: spec.added, balanceUpdated: spec.status === 'UPDATED' };
      }),
      portfolios: depots.map((item, i) => {
        const spec = depotSpecs[i] ?? { status: 'UPDATED', added: 0 };
        return { portfolioId: item.id, status: spec.status, bookingsAdded: spec.added, securitiesUpdated: spec.status === 'UPDATED' };
      }),
    };
    c.lastUpdate = now;
    for (const item of c.items) item.manualSyncRequired = false;
  }

  /** One read of an update process: the step that drives scripts. */
  function advance(p: Process): void {
    if (TERMINAL.has(p.status)) return;
    p.step += 1;
    p.updatedAt = context.now();
    const step = p.steps[p.step];
    if (step === undefined) finish(p);
    else p.status = statusOf(step);
  }

  function running(c: Connection): Process | undefined {
    return c.processes.find((p) => !TERMINAL.has(p.status));
  }

  function serializeConnection(c: Connection) {
    const latest = c.processes[c.processes.length - 1];
    return {
      id: c.id,
      name: c.name,
      bankName: c.name,
      interfaces: c.interfaces.map((bankingInterface) => ({ bankingInterface, lastUpdate: c.lastUpdate === null ? null : iso(c.lastUpdate) })),
      credentialsStored: c.credentialsStored,
      lastUpdate: c.lastUpdate === null ? null : iso(c.lastUpdate),
      creationDate: iso(c.createdAt),
      ...(seedOnly ? {} : { latestUpdateProcess: latest ? { processId: latest.id, status: latest.status, createdAt: iso(latest.createdAt) } : null }),
    };
  }

  function serializeProcess(p: Process) {
    return {
      processId: p.id,
      bankConnectionId: p.connection.id,
      status: p.status,
      bankingInterfaces: p.interfaces,
      createdAt: iso(p.createdAt),
      updatedAt: iso(p.updatedAt),
      synchronizationError: p.error,
      ...(seedOnly ? {} : { result: p.result }),
    };
  }

  const authorized = (request: FastifyRequest) => bearerAccepted(context.auth, 'wealthapi', request, tokens);

  function register(app: FastifyInstance): void {
    app.addHook('onRequest', async (request, reply) => {
      if (!authorized(request)) return fail(reply, 401, 'UNAUTHORIZED', 'missing or invalid bearer token');
    });

    app.post('/v2/bankConnections', async (request, reply) => {
      const parsed = CreateBody.safeParse(request.body ?? {});
      if (!parsed.success) return fail(reply, 400, 'VALIDATION_ERROR', 'invalid request body');
      const scenario = parsed.data.scenario ?? 'success';
      if (!isWealthScenario(scenario)) return fail(reply, 400, 'UNKNOWN_SCENARIO', 'unknown sandbox scenario');
      // Credentials are accepted and dropped: never stored, returned or logged.
      const c = newConnection(parsed.data.name ?? 'Sandbox Broker', scenario);
      return reply.status(201).send(serializeConnection(c));
    });

    app.get<{ Querystring: { bankConnectionId?: string } }>('/v1/accounts/manualSyncRequired', async (request, reply) => {
      const filter = typeof request.query.bankConnectionId === 'string' ? request.query.bankConnectionId : undefined;
      const selected = [...connections.values()].filter((c) => filter === undefined || c.id === filter);
      for (const c of selected) c.stats.preflightChecks += 1;
      return reply.status(200).send({
        accounts: selected.flatMap((c) =>
          c.items.map((item) => ({ id: item.id, bankConnectionId: c.id, accountType: item.accountType, manualSyncRequired: item.manualSyncRequired })),
        ),
      });
    });

    app.get<{ Params: { id: string } }>('/v2/bankConnections/:id', async (request, reply) => {
      const c = connections.get(request.params.id);
      if (!c) return fail(reply, 404, 'NOT_FOUND', 'bank connection not found');
      c.stats.reads += 1;
      // Nobody polls another client's update here: it moves on reads of its connection.
      const foreign = running(c);
      if (foreign?.origin === 'foreign') {
        foreign.foreignReadsLeft -= 1;
        if (foreign.foreignReadsLeft <= 0) finish(foreign);
      }
      return reply.status(200).send(serializeConnection(c));
    });

    app.put<{ Params: { id: string } }>('/v2/bankConnections/:id/update', async (request, reply) => {
      const c = connections.get(request.params.id);
      if (!c) return fail(reply, 404, 'NOT_FOUND', 'bank connection not found');
      c.stats.updateRequests += 1;
      const parsed = UpdateBody.safeParse(request.body);
      if (!parsed.success) return fail(reply, 400, 'VALIDATION_ERROR', 'invalid request body (bankingInterface)');
      const only = parsed.data?.bankingInterface;
      if (only && !c.interfaces.includes(only)) return fail(reply, 400, 'INTERFACE_NOT_FOUND', 'the bank connection has no such interface');

      const injected = c.updateErrors.shift();
      if (injected === 503) return fail(reply, 503, 'SERVICE_UNAVAILABLE', 'update backend unavailable');
      if (injected === 429) {
        void reply.header('retry-after', '1');
        return fail(reply, 429, 'RATE_LIMITED', 'too many requests');
      }
      if (running(c)) {
        c.stats.concurrentRefused += 1;
        return fail(reply, 409, 'UPDATE_IN_PROGRESS', 'an update of this bank connection is already running');
      }
      const def: ScenarioDefinition = SCENARIOS[c.scenario];
      const blocked = blocker(c);
      const p = newProcess(c, 'api', only ? [only] : [...c.interfaces], {
        steps: def.steps ?? DEFAULT_STEPS,
        outcome: blocked
          ? { status: 'FAILED', code: 'USER_INTERACTION_REQUIRED', message: `background update impossible: ${blocked}` }
          : (def.outcome ?? { status: 'SUCCESS' }),
      });
      c.stats.updatesStarted += 1;
      if (c.lostUpdateResponses > 0) {
        c.lostUpdateResponses -= 1;
        return fail(reply, 503, 'SERVICE_UNAVAILABLE', 'update backend unavailable');
      }
      return reply.status(200).send({ processId: p.id });
    });

    app.get<{ Params: { processId: string } }>('/v2/bankConnections/updateProcess/:processId', async (request, reply) => {
      const p = processes.get(request.params.processId);
      if (!p) return fail(reply, 404, 'NOT_FOUND', 'update process not found');
      const c = p.connection;
      c.stats.polls += 1;
      const fault = c.pollFaults.shift();
      if (fault === 'invalid-json') return reply.status(200).type('application/json').send(`{"processId":"${p.id}","status":"RUNN`);
      if (fault === 'missing-fields') return reply.status(200).send({ processId: p.id });
      advance(p);
      return reply.status(200).send(serializeProcess(p));
    });
  }

  function stats(): WealthStats {
    return collectStats(connections.values(), { connections: connections.size });
  }

  return { name: 'wealthapi', prefix: '/wealthapi', scenarios: WEALTHAPI_SCENARIOS, register, stats };
}
