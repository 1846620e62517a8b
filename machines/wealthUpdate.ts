/**
 * One wealthAPI-style background update of a bank connection (seed 000), as a pure machine.
 *
 *   Preflight --PREFLIGHT(facts)--> Refused (reasons) | Busy (an update already runs) | Ready
 *   Ready --UPDATE.STARTED(processId)--> Updating { Pending -> Running } --PROCESS--> Succeeded | FailedNeedsUser | Failed
 *   Ready --UPDATE.CONFLICT (409)--> Busy --RETRY--> Preflight
 *
 * The preflight encodes the documented limits: a background update only when GET /v1/accounts/manualSyncRequired
 * says so, the connection has no web-scraping interface, the user stored the credentials, and the consent is
 * ongoing (last update less than three months (90 days) ago). Never two updates of one connection at once.
 * A FAILED update whose synchronizationError asks for the user (2FA, credentials) must never be retried
 * automatically: repeated unconfirmed 2FA can lock the bank connection.
 *
 * Pure: no I/O, no clock (`now` arrives with the facts). The adapter feeds it the provider's readings and maps
 * the resulting state (meta: canonical status and `progress` rank) to canonical observations.
 */
import { assign, setup, transition, type SnapshotFrom } from 'xstate';

/** "the last update is less than three month away". */
export const WEALTH_CONSENT_MAX_AGE_DAYS = 90;
const DAY_MS = 24 * 60 * 60_000;

export type WealthProcessStatus = 'PENDING' | 'RUNNING' | 'SUCCESS' | 'FAILED';
export const WEALTH_PROCESS_STATUSES: readonly WealthProcessStatus[] = ['PENDING', 'RUNNING', 'SUCCESS', 'FAILED'];

/** What the preflight reads: GET /v1/accounts/manualSyncRequired and GET /v2/bankConnections/{id}. */
export interface WealthPreflightFacts {
  /** manualSyncRequired of the connection's accounts (true for at least one: an update is wanted and possible). */
  manualSyncRequired: boolean;
  bankingInterfaces: readonly string[];
  credentialsStored: boolean;
  /** Last successful update (epoch ms), or null when there is none (no ongoing consent). */
  lastUpdateAt: number | null;
  /** An update of this connection is running already (ours or another client's). */
  updateRunning: boolean;
  /** The caller's clock (epoch ms). */
  now: number;
}

export type WealthRefusalReason = 'NO_MANUAL_SYNC_REQUIRED' | 'WEB_SCRAPING_INTERFACE' | 'CREDENTIALS_NOT_STORED' | 'CONSENT_EXPIRED';

export interface WealthSynchronizationError {
  code: string;
  message?: string | null;
}

export interface WealthUpdateContext {
  reasons: WealthRefusalReason[];
  refusal: 'PREFLIGHT_REFUSED' | 'CONSENT_EXPIRED' | null;
  processId: string | null;
  status: WealthProcessStatus | null;
  error: WealthSynchronizationError | null;
}

export type WealthUpdateEvent =
  | ({ type: 'PREFLIGHT' } & WealthPreflightFacts)
  /** PUT /v2/bankConnections/{id}/update answered with a processId. */
  | { type: 'UPDATE.STARTED'; processId: string }
  /** PUT answered 409: another update runs. */
  | { type: 'UPDATE.CONFLICT' }
  /** GET /v2/bankConnections/updateProcess/{processId}. */
  | { type: 'PROCESS'; status: WealthProcessStatus; synchronizationError?: WealthSynchronizationError | null }
  /** Try the preflight again (after Busy). */
  | { type: 'RETRY' };

export interface WealthStateMeta {
  canonical: 'RUNNING' | 'COMPLETED' | 'FAILED' | null;
  progress: number;
}
export const WEALTH_PROGRESS = { PREFLIGHT: 0, PENDING: 1, RUNNING: 2, FINISHED: 3 } as const;

/** synchronizationError codes that mean the bank wants the user (2FA, credentials): never retried automatically. */
export const WEALTH_USER_ACTION_CODES: ReadonlySet<string> = new Set([
  'TWO_FACTOR_REQUIRED',
  'TWO_FACTOR_FAILED',
  'SCA_REQUIRED',
  'CHALLENGE_REQUIRED',
  'USER_INTERACTION_REQUIRED',
  'INVALID_CREDENTIALS',
  'LOGIN_FAILED',
  'CREDENTIALS_EXPIRED',
  'ACCOUNT_LOCKED',
]);

export function isWebScrapingInterface(name: string): boolean {
  const n = name.toUpperCase();
  return n === 'WEB_SCRAPING' || n === 'WEB_SCRAPER';
}

export function consentExpired(facts: Pick<WealthPreflightFacts, 'lastUpdateAt' | 'now'>): boolean {
  return facts.lastUpdateAt === null || facts.now - facts.lastUpdateAt >= WEALTH_CONSENT_MAX_AGE_DAYS * DAY_MS;
}

/** Every reason the facts forbid a background update, in the documented order. */
export function preflightReasons(facts: WealthPreflightFacts): WealthRefusalReason[] {
  const reasons: WealthRefusalReason[] = [];
  if (!facts.manualSyncRequired) reasons.push('NO_MANUAL_SYNC_REQUIRED');
  if (facts.bankingInterfaces.some(isWebScrapingInterface)) reasons.push('WEB_SCRAPING_INTERFACE');
  if (!facts.credentialsStored) reasons.push('CREDENTIALS_NOT_STORED');
  if (consentExpired(facts)) reasons.push('CONSENT_EXPIRED');
  return reasons;
}

const facts = (event: WealthUpdateEvent): WealthPreflightFacts | undefined => (event.type === 'PREFLIGHT' ? event : undefined);
const processEvent = (event: WealthUpdateEvent) => (event.type === 'PROCESS' ? event : undefined);
const meta = (m: WealthStateMeta) => m;

export const wealthUpdateMachine = setup({
  types: {
    context: {} as WealthUpdateContext,
    events: {} as WealthUpdateEvent,
  },
  guards: {
    noManualSyncRequired: ({ event }) => facts(event)?.manualSyncRequired === false,
    webScrapingInterface: ({ event }) => facts(event)?.bankingInterfaces.some(isWebScrapingInterface) === true,
    credentialsNotStored: ({ event }) => facts(event)?.credentialsStored === false,
    consentExpired: ({ event }) => {
      const f = facts(event);
      return f !== undefined && consentExpired(f);
    },
    updateRunning: ({ event }) => facts(event)?.updateRunning === true,
    processRunning: ({ event }) => processEvent(event)?.status === 'RUNNING',
    processSucceeded: ({ event }) => processEvent(event)?.status === 'SUCCESS',
    processFailedNeedsUser: ({ event }) => {
      const e = processEvent(event);
      return e?.status === 'FAILED' && WEALTH_USER_ACTION_CODES.has((e.synchronizationError?.code ?? '').toUpperCase());
    },
    processFailed: ({ event }) => processEvent(event)?.status === 'FAILED',
  },
  actions: {
    refuse: assign(({ event }) => {
      const f = facts(event);
      return { reasons: f ? preflightReasons(f) : [], refusal: 'PREFLIGHT_REFUSED' as const };
    }),
    refuseConsentExpired: assign({ reasons: ['CONSENT_EXPIRED'] as WealthRefusalReason[], refusal: 'CONSENT_EXPIRED' as const }),
    clearVerdict: assign({ reasons: [] as WealthRefusalReason[], refusal: null }),
    recordProcess: assign({
      processId: ({ event }) => (event.type === 'UPDATE.STARTED' ? event.processId : null),
      status: 'PENDING' as const,
    }),
    recordStatus: assign({ status: ({ context, event }) => processEvent(event)?.status ?? context.status }),
    recordError: assign({
      status: 'FAILED' as const,
      error: ({ event }) => processEvent(event)?.synchronizationError ?? { code: 'UNKNOWN' },
    }),
  },
}).createMachine({
  id: 'wealthUpdate',
  context: { reasons: [], refusal: null, processId: null, status: null, error: null },
  initial: 'Preflight',
  states: {
    Preflight: {
      meta: meta({ canonical: null, progress: WEALTH_PROGRESS.PREFLIGHT }),
      on: {
        PREFLIGHT: [
          { guard: 'noManualSyncRequired', target: 'Refused', actions: 'refuse' },
          { guard: 'webScrapingInterface', target: 'Refused', actions: 'refuse' },
          { guard: 'credentialsNotStored', target: 'Refused', actions: 'refuse' },
          { guard: 'consentExpired', target: 'Refused', actions: 'refuseConsentExpired' },
          { guard: 'updateRunning', target: 'Busy', actions: 'clearVerdict' },
          { target: 'Ready', actions: 'clearVerdict' },
        ],
      },
    },
    /** An update runs already: lock the update button, look again later. */
    Busy: {
      meta: meta({ canonical: null, progress: WEALTH_PROGRESS.PREFLIGHT }),
      on: { RETRY: 'Preflight' },
    },
    /** Preflight passed: the update may be requested. */
    Ready: {
      meta: meta({ canonical: null, progress: WEALTH_PROGRESS.PREFLIGHT }),
      on: {
        'UPDATE.STARTED': { target: 'Updating', actions: 'recordProcess' },
        'UPDATE.CONFLICT': 'Busy',
      },
    },
    Updating: {
      initial: 'Pending',
      on: {
        PROCESS: [
          { guard: 'processSucceeded', target: 'Succeeded', actions: 'recordStatus' },
          { guard: 'processFailedNeedsUser', target: 'FailedNeedsUser', actions: 'recordError' },
          { guard: 'processFailed', target: 'Failed', actions: 'recordError' },
        ],
      },
      states: {
        Pending: {
          meta: meta({ canonical: 'RUNNING', progress: WEALTH_PROGRESS.PENDING }),
          on: { PROCESS: { guard: 'processRunning', target: 'Running', actions: 'recordStatus' } },
        },
        Running: {
          meta: meta({ canonical: 'RUNNING', progress: WEALTH_PROGRESS.RUNNING }),
        },
      },
    },
    Refused: { type: 'final', meta: meta({ canonical: 'FAILED', progress: WEALTH_PROGRESS.FINISHED }) },
    Succeeded: { type: 'final', meta: meta({ canonical: 'COMPLETED', progress: WEALTH_PROGRESS.FINISHED }) },
    /** 2FA or credentials: the user must update through the TPP web form; never retried automatically. */
    FailedNeedsUser: { type: 'final', meta: meta({ canonical: 'FAILED', progress: WEALTH_PROGRESS.FINISHED }) },
    Failed: { type: 'final', meta: meta({ canonical: 'FAILED', progress: WEALTH_PROGRESS.FINISHED }) },
  },
});

export type WealthUpdateMachine = typeof wealthUpdateMachine;
export type WealthUpdateSnapshot = SnapshotFrom<WealthUpdateMachine>;

export type WealthPreflightVerdict =
  | { verdict: 'READY' }
  | { verdict: 'BUSY' }
  | { verdict: 'REFUSED'; refusal: 'PREFLIGHT_REFUSED' | 'CONSENT_EXPIRED'; reasons: WealthRefusalReason[] };

/** The machine's answer to a preflight. */
export function wealthPreflight(f: WealthPreflightFacts): WealthPreflightVerdict {
  const [next] = transition(wealthUpdateMachine, wealthUpdateMachine.resolveState({ value: 'Preflight', context: initialContext() }), {
    type: 'PREFLIGHT',
    ...f,
  });
  if (next.matches('Refused')) return { verdict: 'REFUSED', refusal: next.context.refusal ?? 'PREFLIGHT_REFUSED', reasons: next.context.reasons };
  if (next.matches('Busy')) return { verdict: 'BUSY' };
  return { verdict: 'READY' };
}

export interface WealthProcessReading {
  canonical: 'RUNNING' | 'COMPLETED' | 'FAILED';
  progress: number;
  /** FAILED because the bank wants the user (2FA, credentials). */
  needsUser: boolean;
  snapshot: WealthUpdateSnapshot;
}

/** Where an update process stands, for one reading of GET /v2/bankConnections/updateProcess/{processId}. */
export function wealthProcessReading(
  processId: string,
  status: WealthProcessStatus,
  synchronizationError?: WealthSynchronizationError | null,
): WealthProcessReading {
  const ready = wealthUpdateMachine.resolveState({ value: 'Ready', context: initialContext() });
  const [started] = transition(wealthUpdateMachine, ready, { type: 'UPDATE.STARTED', processId });
  const [next] = transition(wealthUpdateMachine, started, { type: 'PROCESS', status, synchronizationError: synchronizationError ?? null });
  const metas = Object.values(next.getMeta()) as WealthStateMeta[];
  const canonical = metas.map((m) => m.canonical).find((c) => c !== null && c !== undefined) ?? 'RUNNING';
  return {
    canonical,
    progress: Math.max(0, ...metas.map((m) => m.progress)),
    needsUser: next.matches('FailedNeedsUser'),
    snapshot: next,
  };
}

function initialContext(): WealthUpdateContext {
  return { reasons: [], refusal: null, processId: null, status: null, error: null };
}
