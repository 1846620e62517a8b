/**
 * One bank connection across its syncs: the single-flight lock, the failure breaker, the user-needed
 * stop, access-upgrade remapping, and autosync eligibility.
 *
 *   IDLE ──SYNC.REQUEST──► SYNCING ──SYNC.FINISHED──► IDLE | NEEDS_USER | DISABLED
 *   NEEDS_USER ──SYNC.REQUEST (user present)──► SYNCING
 *
 * - Breaker (xs2a semantics, seed 003): 3 failed syncs in a row disable the connection; it must be deleted
 *   and recreated (RECREATED). Cancelled syncs and preflight refusals (no bank access happened) do not count.
 * - Never lock the user's bank account: credential, 2FA and other user-action failures stop unattended
 *   syncs (NEEDS_USER) until the user is present; they are never retried automatically.
 * - Autosync (unattended) eligibility (seed 000, 002, PSD2 RTS Art. 36(5)(b)): stored credentials, consent
 *   younger than 90 days, no web-scraping interface, not needing the user, fewer than 4 unattended
 *   accesses in the last 24 hours.
 *
 * Pure: every event carries `at` (epoch ms); nothing reads a clock.
 */
import { and, assign, not, setup } from 'xstate';
import { mayRetryAutomatically, type AccessUpgrade, type SyncError, type SyncResult } from './canonical.js';

export const CONSENT_MAX_AGE_MS = 90 * 24 * 60 * 60_000;
export const UNATTENDED_WINDOW_MS = 24 * 60 * 60_000;
export const UNATTENDED_MAX_PER_WINDOW = 4;
export const BREAKER_THRESHOLD = 3;

export type NeedsUserReason = 'SCA' | 'CREDENTIALS' | 'WEB_FORM' | 'ACCESS_UPGRADE' | 'CONSENT_EXPIRED' | 'PROVIDER';

export interface ConnectionAccount {
  /** The provider access the account now belongs to (changes on a multi-access upgrade). */
  accessId: string | null;
  supported: boolean;
}

export interface ConnectionContext {
  tenantId: string;
  connectionId: string;
  provider: string;
  /** When banksync first saw the connection; autosync waits for the first daily slot after it. */
  registeredAt: number;
  storedCredentials: boolean;
  hasWebScraping: boolean;
  consentGrantedAt: number | null;
  activeSyncId: string | null;
  consecutiveFailures: number;
  needsUser: { reason: NeedsUserReason; message: string; at: number } | null;
  /** Start times of unattended syncs within the last 24 h (PSD2 limit). */
  unattendedAccesses: number[];
  accessMethodId: string | null;
  accounts: Record<string, ConnectionAccount>;
  /** Accesses the provider created for this connection's accounts (finX 40002/40003). */
  linkedAccessIds: string[];
  lastSync: { syncId: string; status: 'COMPLETED' | 'FAILED'; outcome: SyncResult['outcome'] | null; errorCode: string | null; at: number } | null;
}

export interface ConnectionInput {
  tenantId: string;
  connectionId: string;
  provider: string;
  registeredAt?: number;
  storedCredentials?: boolean;
  hasWebScraping?: boolean;
  consentGrantedAt?: number | null;
}

export type ConnectionEvent =
  | { type: 'SYNC.REQUEST'; syncId: string; unattended: boolean; at: number }
  | { type: 'SYNC.FINISHED'; syncId: string; status: 'COMPLETED' | 'FAILED'; result: SyncResult | null; error: SyncError | null; at: number }
  | { type: 'SETTINGS.UPDATE'; storedCredentials?: boolean; hasWebScraping?: boolean; consentGrantedAt?: number | null; at: number }
  | { type: 'RECREATED'; at: number };

export type RefusalReason =
  | 'SYNC_ACTIVE'
  | 'CONNECTION_DISABLED'
  | 'USER_REQUIRED'
  | 'NO_STORED_CREDENTIALS'
  | 'CONSENT_EXPIRED'
  | 'WEB_SCRAPING_INTERFACE'
  | 'UNATTENDED_LIMIT';

/** Why an unattended sync may not start now, or null when it may. */
export function unattendedRefusal(context: ConnectionContext, at: number): RefusalReason | null {
  if (!context.storedCredentials) return 'NO_STORED_CREDENTIALS';
  if (context.hasWebScraping) return 'WEB_SCRAPING_INTERFACE';
  if (context.consentGrantedAt === null || at - context.consentGrantedAt >= CONSENT_MAX_AGE_MS) return 'CONSENT_EXPIRED';
  if (context.needsUser) return 'USER_REQUIRED';
  const recent = context.unattendedAccesses.filter((t) => at - t < UNATTENDED_WINDOW_MS);
  if (recent.length >= UNATTENDED_MAX_PER_WINDOW) return 'UNATTENDED_LIMIT';
  return null;
}

function needsUserReason(error: SyncError): NeedsUserReason {
  switch (error.code) {
    case 'INVALID_CREDENTIALS':
      return 'CREDENTIALS';
    case 'SCA_FAILED':
    case 'CHALLENGE_EXPIRED':
    case 'ANSWER_NOT_SENT':
      return 'SCA';
    case 'ACCESS_UPGRADE':
      return 'ACCESS_UPGRADE';
    case 'CONSENT_EXPIRED':
      return 'CONSENT_EXPIRED';
    default:
      return 'PROVIDER';
  }
}

function finishedError(event: ConnectionEvent): SyncError | null {
  return event.type === 'SYNC.FINISHED' ? event.error : null;
}

export const connectionMachine = setup({
  types: {
    context: {} as ConnectionContext,
    events: {} as ConnectionEvent,
    input: {} as ConnectionInput,
  },
  guards: {
    isActiveSync: ({ context, event }) => event.type === 'SYNC.FINISHED' && event.syncId === context.activeSyncId,
    userPresent: ({ event }) => event.type === 'SYNC.REQUEST' && !event.unattended,
    unattendedAllowed: ({ context, event }) => event.type === 'SYNC.REQUEST' && unattendedRefusal(context, event.at) === null,
    succeeded: ({ event }) => event.type === 'SYNC.FINISHED' && event.status === 'COMPLETED',
    cancelled: ({ event }) => finishedError(event)?.code === 'CANCELLED',
    /** The provider's preflight refused before any bank access: nothing failed at the bank, nothing counts. */
    refusedBeforeBankAccess: ({ event }) => finishedError(event)?.code === 'PREFLIGHT_REFUSED',
    refusalNeedsUser: ({ event }) => finishedError(event)?.userActionRequired === true,
    accessUpgraded: ({ event }) => finishedError(event)?.code === 'ACCESS_UPGRADE',
    breakerTrips: ({ context, event }) =>
      event.type === 'SYNC.FINISHED' && event.status === 'FAILED' && context.consecutiveFailures + 1 >= BREAKER_THRESHOLD,
    providerDisabled: ({ event }) => finishedError(event)?.code === 'CONNECTION_DISABLED',
    /** Credential, 2FA and anything else the user must fix: never retried unattended. */
    userMustAct: ({ event }) => {
      const error = finishedError(event);
      return error !== null && (error.userActionRequired || !mayRetryAutomatically(error));
    },
  },
  actions: {
    takeLock: assign(({ context, event }) => {
      if (event.type !== 'SYNC.REQUEST') return {};
      return {
        activeSyncId: event.syncId,
        unattendedAccesses: event.unattended
          ? [...context.unattendedAccesses.filter((t) => event.at - t < UNATTENDED_WINDOW_MS), event.at]
          : context.unattendedAccesses,
      };
    }),
    recordSuccess: assign(({ event }) => {
      if (event.type !== 'SYNC.FINISHED') return {};
      return {
        activeSyncId: null,
        consecutiveFailures: 0,
        needsUser: null,
        lastSync: { syncId: event.syncId, status: 'COMPLETED' as const, outcome: event.result?.outcome ?? null, errorCode: null, at: event.at },
      };
    }),
    releaseLock: assign(({ event }) => {
      if (event.type !== 'SYNC.FINISHED') return {};
      return {
        activeSyncId: null,
        lastSync: { syncId: event.syncId, status: event.status, outcome: null, errorCode: event.error?.code ?? null, at: event.at },
      };
    }),
    countFailure: assign({ consecutiveFailures: ({ context }) => context.consecutiveFailures + 1 }),
    requireUser: assign({
      needsUser: ({ event }) => {
        const error = finishedError(event);
        const at = event.type === 'SYNC.FINISHED' ? event.at : 0;
        // A failure reported without an error still stops unattended syncs.
        if (!error) return { reason: 'PROVIDER' as const, message: 'sync failed without an error', at };
        return { reason: needsUserReason(error), message: error.message, at };
      },
    }),
    applyUpgrade: assign(({ context, event }) => {
      const upgrade: AccessUpgrade | undefined = finishedError(event)?.upgrade;
      if (!upgrade) return {};
      const accounts = { ...context.accounts };
      for (const account of upgrade.accounts) accounts[account.accountId] = { accessId: account.accessId, supported: account.supported };
      const linked = upgrade.accounts
        .map((a) => a.accessId)
        .filter((id): id is string => id !== null && id !== context.connectionId && !context.linkedAccessIds.includes(id));
      return {
        accounts,
        accessMethodId: upgrade.newAccessMethodId ?? context.accessMethodId,
        linkedAccessIds: [...context.linkedAccessIds, ...new Set(linked)],
      };
    }),
    updateSettings: assign(({ context, event }) => {
      if (event.type !== 'SETTINGS.UPDATE') return {};
      return {
        storedCredentials: event.storedCredentials ?? context.storedCredentials,
        hasWebScraping: event.hasWebScraping ?? context.hasWebScraping,
        consentGrantedAt: event.consentGrantedAt === undefined ? context.consentGrantedAt : event.consentGrantedAt,
      };
    }),
    // Recreating the connection does not reset the bank's count of accesses (PSD2): unattendedAccesses stay.
    resetForRecreation: assign({ consecutiveFailures: 0, needsUser: null, activeSyncId: null }),
  },
}).createMachine({
  id: 'connection',
  context: ({ input }) => ({
    tenantId: input.tenantId,
    connectionId: input.connectionId,
    provider: input.provider,
    registeredAt: input.registeredAt ?? 0,
    storedCredentials: input.storedCredentials ?? false,
    hasWebScraping: input.hasWebScraping ?? false,
    consentGrantedAt: input.consentGrantedAt ?? null,
    activeSyncId: null,
    consecutiveFailures: 0,
    needsUser: null,
    unattendedAccesses: [],
    accessMethodId: null,
    accounts: {},
    linkedAccessIds: [],
    lastSync: null,
  }),
  initial: 'IDLE',
  on: {
    'SETTINGS.UPDATE': { actions: 'updateSettings' },
  },
  states: {
    IDLE: {
      on: {
        'SYNC.REQUEST': [
          { guard: 'userPresent', target: 'SYNCING', actions: 'takeLock' },
          { guard: 'unattendedAllowed', target: 'SYNCING', actions: 'takeLock' },
        ],
      },
    },
    SYNCING: {
      on: {
        'SYNC.FINISHED': [
          // A report about some other sync (a stale duplicate) changes nothing.
          { guard: not('isActiveSync') },
          { guard: 'succeeded', target: 'IDLE', actions: 'recordSuccess' },
          { guard: 'cancelled', target: 'IDLE', actions: 'releaseLock' },
          { guard: and(['refusedBeforeBankAccess', 'refusalNeedsUser']), target: 'NEEDS_USER', actions: ['releaseLock', 'requireUser'] },
          { guard: 'refusedBeforeBankAccess', target: 'IDLE', actions: 'releaseLock' },
          // An upgrade is remapped even when it disables the connection: the provider already created the accesses.
          { guard: 'providerDisabled', target: 'DISABLED', actions: ['releaseLock', 'countFailure', 'applyUpgrade', 'requireUser'] },
          { guard: 'breakerTrips', target: 'DISABLED', actions: ['releaseLock', 'countFailure', 'applyUpgrade', 'requireUser'] },
          { guard: 'accessUpgraded', target: 'NEEDS_USER', actions: ['releaseLock', 'countFailure', 'applyUpgrade', 'requireUser'] },
          { guard: 'userMustAct', target: 'NEEDS_USER', actions: ['releaseLock', 'countFailure', 'requireUser'] },
          // Transient failures: the lock is released; a later (auto)sync may try again.
          { target: 'IDLE', actions: ['releaseLock', 'countFailure'] },
        ],
      },
    },
    NEEDS_USER: {
      on: {
        // Only with the user present (attended): they can solve SCA, a web form or renew credentials.
        'SYNC.REQUEST': { guard: 'userPresent', target: 'SYNCING', actions: 'takeLock' },
      },
    },
    DISABLED: {
      on: {
        RECREATED: { target: 'IDLE', actions: 'resetForRecreation' },
      },
    },
  },
});

export type ConnectionMachine = typeof connectionMachine;
export type ConnectionState = 'IDLE' | 'SYNCING' | 'NEEDS_USER' | 'DISABLED';

/** Why a sync request is refused in this state, or null when it would start. */
export function refusalReason(state: ConnectionState, context: ConnectionContext, unattended: boolean, at: number): RefusalReason | null {
  if (state === 'SYNCING') return 'SYNC_ACTIVE';
  if (state === 'DISABLED') return 'CONNECTION_DISABLED';
  if (!unattended) return null;
  if (state === 'NEEDS_USER') return 'USER_REQUIRED';
  return unattendedRefusal(context, at);
}
