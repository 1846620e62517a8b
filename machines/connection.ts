/**
 * One bank connection across its syncs: the single-flight lock, the failure breaker, cooldowns, the
 * user-needed stop, access-upgrade remapping, and autosync eligibility.
 *
 *   IDLE ──SYNC.REQUEST──► SYNCING ──SYNC.FINISHED──► IDLE | NEEDS_USER | DISABLED
 *   NEEDS_USER ──SYNC.REQUEST (user present)──► SYNCING
 *   SYNCING ──SYNC.FINISHED (access upgrade moved every account away)──► RETIRED
 *
 * - Breaker: only failures the bank or provider counts against the connection (credentials, SCA, bank
 *   rejection; see COUNTED_FAILURE_CODES) move toward a stop, counted by the provider's own counter when it
 *   publishes one (xs2a sync_fail_counter). The stop comes one failure before the provider's own limit (xs2a
 *   disables at 3: banksync stops at 2) or at BREAKER_THRESHOLD when the provider states none. The stop is
 *   NEEDS_USER (FAILURE_LIMIT): autosync stops, a person can always retry attended.
 * - DISABLED only when the provider itself disabled the connection; it must be deleted and recreated (RECREATED).
 * - Transient, busy and rate-limited failures never count: the connection cools down until `cooldownUntil`
 *   (Retry-After or a jittered exponential backoff, up to a ceiling); attended syncs ignore the cooldown.
 * - Never lock the user's bank account: credential, 2FA and other user-action failures stop unattended
 *   syncs (NEEDS_USER) until the user is present; they are never retried automatically.
 * - Autosync (unattended) eligibility (seed 000, 002, PSD2 RTS Art. 36(5)(b)): stored credentials, consent
 *   not expired (calendar term in the provider's zone, computed by the engine), no web-scraping interface, not
 *   needing the user, not cooling down, fewer than 4 unattended accesses in the last 24 hours.
 * - Access upgrades (finX 40001/40002/40003): accounts that moved to new accesses live on as connections in
 *   linkedAccessIds. An old access left with no supported account is RETIRED (final: nothing left to sync,
 *   no transition out; every request is refused with CONNECTION_RETIRED). One that keeps accounts stays a live connection (IDLE)
 *   for them. An upgrade that moved nothing (40001, a new access method for the same access) needs the user.
 *
 * Pure: every event carries `at` (epoch ms); nothing reads a clock.
 */
import { and, assign, not, setup } from 'xstate';
import { countsAgainstConnection, mayRetryAutomatically, type AccessUpgrade, type SyncError, type SyncResult } from './canonical.js';
import { withJitter } from './jitter.js';

/** Fallback only: consent terms are calendar terms the engine computes per provider (see consentExpiresAt). */
export const CONSENT_MAX_AGE_MS = 90 * 24 * 60 * 60_000;
export const UNATTENDED_WINDOW_MS = 24 * 60 * 60_000;
export const UNATTENDED_MAX_PER_WINDOW = 4;
/** Counted failures in a row at which banksync stops when the provider states no limit of its own. */
export const BREAKER_THRESHOLD = 3;
/** First cooldown after a transient failure; doubles per transient failure in a row, jittered. */
export const COOLDOWN_BASE_MS = 15 * 60_000;
export const DEFAULT_COOLDOWN_CEILING_MS = 24 * 60 * 60_000;
const COOLDOWN_JITTER_RATIO = 0.25;

export type NeedsUserReason = 'SCA' | 'CREDENTIALS' | 'WEB_FORM' | 'ACCESS_UPGRADE' | 'CONSENT_EXPIRED' | 'FAILURE_LIMIT' | 'PROVIDER';

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
  /** End of the consent's term (calendar days/months in the provider's zone), computed by the engine. */
  consentExpiresAt: number | null;
  /** When the app was last warned that this consent expires soon (one warning per consent). */
  consentWarnedAt: number | null;
  activeSyncId: string | null;
  /** Failures in a row the bank or provider counts against the connection (the provider's counter when published). */
  consecutiveFailures: number;
  /** Transient failures in a row (outage, busy, rate limit, timeout): they drive the cooldown, never a stop. */
  transientFailures: number;
  /** Unattended syncs wait until then (cooldown after a transient failure or Retry-After); null: no cooldown. */
  cooldownUntil: number | null;
  needsUser: { reason: NeedsUserReason; message: string; at: number } | null;
  /** Start times of unattended syncs within the last 24 h (PSD2 limit). */
  unattendedAccesses: number[];
  accessMethodId: string | null;
  accounts: Record<string, ConnectionAccount>;
  /** Accesses the provider created for this connection's accounts (finX 40002/40003). */
  linkedAccessIds: string[];
  lastSync: { syncId: string; status: 'COMPLETED' | 'FAILED'; outcome: SyncResult['outcome'] | null; errorCode: string | null; at: number } | null;
  /** When an access upgrade retired this access (state RETIRED); null while it is live. */
  retiredAt?: number | null;
}

export interface ConnectionInput {
  tenantId: string;
  connectionId: string;
  provider: string;
  registeredAt?: number;
  storedCredentials?: boolean;
  hasWebScraping?: boolean;
  consentGrantedAt?: number | null;
  consentExpiresAt?: number | null;
}

/** Provider facts and engine settings the breaker needs, carried by SYNC.FINISHED so the machine stays pure. */
export interface FailurePolicy {
  /** The provider disables the connection at this many failures in a row (xs2a: 3); banksync stops one before. */
  providerFailureLimit?: number;
  /** Longest cooldown (and longest Retry-After honoured). Default 24 h. */
  cooldownCeilingMs?: number;
}

export type ConnectionEvent =
  | { type: 'SYNC.REQUEST'; syncId: string; unattended: boolean; at: number }
  | ({ type: 'SYNC.FINISHED'; syncId: string; status: 'COMPLETED' | 'FAILED'; result: SyncResult | null; error: SyncError | null; at: number } & FailurePolicy)
  | { type: 'SETTINGS.UPDATE'; storedCredentials?: boolean; hasWebScraping?: boolean; consentGrantedAt?: number | null; consentExpiresAt?: number | null; at: number }
  | { type: 'CONSENT.WARNED'; at: number }
  | { type: 'RECREATED'; at: number };

export type RefusalReason =
  | 'SYNC_ACTIVE'
  | 'CONNECTION_DISABLED'
  | 'CONNECTION_RETIRED'
  | 'USER_REQUIRED'
  | 'NO_STORED_CREDENTIALS'
  | 'CONSENT_EXPIRED'
  | 'WEB_SCRAPING_INTERFACE'
  | 'COOLING_DOWN'
  | 'UNATTENDED_LIMIT';

/** When the consent runs out: the engine's calendar term, or the legacy 90 x 24 h for connections stored before it. */
export function consentExpiry(context: Pick<ConnectionContext, 'consentGrantedAt' | 'consentExpiresAt'>): number | null {
  if (context.consentGrantedAt === null) return null;
  return context.consentExpiresAt ?? context.consentGrantedAt + CONSENT_MAX_AGE_MS;
}

/** Why an unattended sync may not start now, or null when it may. */
export function unattendedRefusal(context: ConnectionContext, at: number): RefusalReason | null {
  if (!context.storedCredentials) return 'NO_STORED_CREDENTIALS';
  if (context.hasWebScraping) return 'WEB_SCRAPING_INTERFACE';
  const expiry = consentExpiry(context);
  if (expiry === null || at >= expiry) return 'CONSENT_EXPIRED';
  if (context.needsUser) return 'USER_REQUIRED';
  if (context.cooldownUntil != null && at < context.cooldownUntil) return 'COOLING_DOWN';
  const recent = context.unattendedAccesses.filter((t) => at - t < UNATTENDED_WINDOW_MS);
  if (recent.length >= UNATTENDED_MAX_PER_WINDOW) return 'UNATTENDED_LIMIT';
  return null;
}

/**
 * When the next unattended sync may start, for refusals that pass with time (cooldown, the PSD2 budget);
 * null when it may start now or when only a person can unblock it.
 */
export function nextUnattendedAt(state: ConnectionState, context: ConnectionContext, at: number): number | null {
  if (state !== 'IDLE') return null;
  const refusal = unattendedRefusal(context, at);
  if (refusal !== 'COOLING_DOWN' && refusal !== 'UNATTENDED_LIMIT') return null;
  const recent = context.unattendedAccesses.filter((t) => at - t < UNATTENDED_WINDOW_MS).sort((a, b) => a - b);
  // The budget frees up when enough of the recent accesses have left the window.
  const budgetAt = recent.length >= UNATTENDED_MAX_PER_WINDOW ? recent[recent.length - UNATTENDED_MAX_PER_WINDOW]! + UNATTENDED_WINDOW_MS : at;
  const next = Math.max(budgetAt, context.cooldownUntil ?? at);
  // Past the consent's end nothing passes with time.
  const expiry = consentExpiry(context);
  return expiry !== null && next >= expiry ? null : next;
}

/**
 * An access upgrade moved every account this connection held to other accesses (or the new access method
 * dropped them): nothing is left to sync here. The moved accounts live on as the connections in linkedAccessIds.
 */
export function isRetired(context: Pick<ConnectionContext, 'connectionId' | 'accounts' | 'linkedAccessIds'>): boolean {
  const accounts = Object.values(context.accounts ?? {});
  return context.linkedAccessIds.length > 0 && accounts.length > 0 && accounts.every((a) => a.accessId !== context.connectionId || !a.supported);
}

/** The account mapping, access method and linked accesses after an access upgrade. */
function afterUpgrade(
  context: ConnectionContext,
  upgrade: AccessUpgrade,
): Pick<ConnectionContext, 'connectionId' | 'accounts' | 'accessMethodId' | 'linkedAccessIds'> {
  const accounts = { ...context.accounts };
  for (const account of upgrade.accounts) accounts[account.accountId] = { accessId: account.accessId, supported: account.supported };
  const linked = upgrade.accounts
    .map((a) => a.accessId)
    .filter((id): id is string => id !== null && id !== context.connectionId && !context.linkedAccessIds.includes(id));
  return {
    connectionId: context.connectionId,
    accounts,
    accessMethodId: upgrade.newAccessMethodId ?? context.accessMethodId,
    linkedAccessIds: [...context.linkedAccessIds, ...new Set(linked)],
  };
}

/** Counted failures in a row after this failure: the provider's counter when published, else ours. */
function countAfter(context: ConnectionContext, error: SyncError | null): number {
  if (error?.failureCount !== undefined) return error.failureCount;
  return error && countsAgainstConnection(error.code) ? context.consecutiveFailures + 1 : context.consecutiveFailures;
}

/** The count at which banksync stops: one before the provider's own limit, else BREAKER_THRESHOLD. */
function stopAt(policy: FailurePolicy): number {
  return policy.providerFailureLimit !== undefined ? Math.max(1, policy.providerFailureLimit - 1) : BREAKER_THRESHOLD;
}

function needsUserReason(error: SyncError): NeedsUserReason {
  switch (error.code) {
    case 'INVALID_CREDENTIALS':
      return 'CREDENTIALS';
    case 'SCA_FAILED':
    case 'CHALLENGE_EXPIRED':
    case 'ANSWER_NOT_SENT':
    case 'NEEDS_USER':
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
    notYetWarned: ({ context }) => context.consentWarnedAt == null,
    accessUpgraded: ({ event }) => finishedError(event)?.code === 'ACCESS_UPGRADE',
    /** The upgrade leaves this access without a supported account: everything moved to the new accesses. */
    upgradeRetires: ({ context, event }) => {
      const upgrade = finishedError(event)?.upgrade;
      return upgrade !== undefined && isRetired(afterUpgrade(context, upgrade));
    },
    /** The upgrade moved some accounts to new accesses and left this one others: it stays live for those. */
    upgradeSplits: ({ context, event }) => {
      const upgrade = finishedError(event)?.upgrade;
      if (upgrade === undefined) return false;
      const after = afterUpgrade(context, upgrade);
      return after.linkedAccessIds.length > context.linkedAccessIds.length && !isRetired(after);
    },
    /** One more counted failure could make the provider disable the connection (or lock the bank account). */
    reachesFailureLimit: ({ context, event }) =>
      event.type === 'SYNC.FINISHED' &&
      event.status === 'FAILED' &&
      countAfter(context, event.error) > context.consecutiveFailures &&
      countAfter(context, event.error) >= stopAt(event),
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
        transientFailures: 0,
        cooldownUntil: null,
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
    countFailure: assign({ consecutiveFailures: ({ context, event }) => countAfter(context, finishedError(event)) }),
    /** Passing trouble: wait (Retry-After, else a jittered exponential backoff) before the next unattended try. */
    coolDown: assign(({ context, event }) => {
      if (event.type !== 'SYNC.FINISHED') return {};
      const transientFailures = (context.transientFailures ?? 0) + 1;
      const ceiling = event.cooldownCeilingMs ?? DEFAULT_COOLDOWN_CEILING_MS;
      const backoff = withJitter(COOLDOWN_BASE_MS * 2 ** (transientFailures - 1), COOLDOWN_JITTER_RATIO, `${event.syncId}:cooldown`);
      const wait = Math.min(ceiling, Math.max(event.error?.retryAfterMs ?? 0, backoff));
      return { transientFailures, cooldownUntil: event.at + wait };
    }),
    requireUser: assign({
      needsUser: ({ event }) => {
        const error = finishedError(event);
        const at = event.type === 'SYNC.FINISHED' ? event.at : 0;
        // A failure reported without an error still stops unattended syncs.
        if (!error) return { reason: 'PROVIDER' as const, message: 'sync failed without an error', at };
        return { reason: needsUserReason(error), message: error.message, at };
      },
    }),
    stopBeforeProviderLimit: assign({
      needsUser: ({ context, event }) => {
        if (event.type !== 'SYNC.FINISHED') return context.needsUser;
        const limit = event.providerFailureLimit;
        const what = event.error ? `${event.error.code}: ${event.error.message}` : 'sync failed';
        const message =
          `${context.consecutiveFailures} failed syncs in a row that the bank or provider counts` +
          (limit !== undefined ? ` (the provider disables the connection at ${limit})` : '') +
          `; automatic syncs stopped, only the user may try again. Last: ${what}`;
        return { reason: 'FAILURE_LIMIT' as const, message: message.slice(0, 500), at: event.at };
      },
    }),
    applyUpgrade: assign(({ context, event }) => {
      const upgrade: AccessUpgrade | undefined = finishedError(event)?.upgrade;
      return upgrade ? afterUpgrade(context, upgrade) : {};
    }),
    retire: assign({ retiredAt: ({ event }) => event.at, needsUser: null, cooldownUntil: null }),
    updateSettings: assign(({ context, event }) => {
      if (event.type !== 'SETTINGS.UPDATE') return {};
      return {
        storedCredentials: event.storedCredentials ?? context.storedCredentials,
        hasWebScraping: event.hasWebScraping ?? context.hasWebScraping,
        consentGrantedAt: event.consentGrantedAt === undefined ? context.consentGrantedAt : event.consentGrantedAt,
        consentExpiresAt: event.consentExpiresAt === undefined ? (context.consentExpiresAt ?? null) : event.consentExpiresAt,
        // A new consent deserves its own warning.
        consentWarnedAt: event.consentGrantedAt === undefined ? (context.consentWarnedAt ?? null) : null,
      };
    }),
    recordConsentWarning: assign({ consentWarnedAt: ({ event }) => event.at }),
    // Recreating the connection does not reset the bank's count of accesses (PSD2): unattendedAccesses stay.
    resetForRecreation: assign({ consecutiveFailures: 0, transientFailures: 0, cooldownUntil: null, needsUser: null, activeSyncId: null }),
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
    consentExpiresAt: input.consentExpiresAt ?? null,
    consentWarnedAt: null,
    activeSyncId: null,
    consecutiveFailures: 0,
    transientFailures: 0,
    cooldownUntil: null,
    needsUser: null,
    unattendedAccesses: [],
    accessMethodId: null,
    accounts: {},
    linkedAccessIds: [],
    lastSync: null,
    retiredAt: null,
  }),
  initial: 'IDLE',
  on: {
    'SETTINGS.UPDATE': { actions: 'updateSettings' },
    // One warning per consent: a second report (another process, the hourly scan) changes nothing.
    'CONSENT.WARNED': { guard: 'notYetWarned', actions: 'recordConsentWarning' },
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
          // One before the provider's own limit: a person decides whether to spend the last attempt.
          { guard: 'reachesFailureLimit', target: 'NEEDS_USER', actions: ['releaseLock', 'countFailure', 'applyUpgrade', 'stopBeforeProviderLimit'] },
          // Everything moved to new accesses (which become connections): this access is retired, visibly.
          { guard: and(['accessUpgraded', 'upgradeRetires']), target: 'RETIRED', actions: ['releaseLock', 'countFailure', 'applyUpgrade', 'retire'] },
          // Some accounts moved, others stayed: a live connection for those, nothing for the user to do.
          { guard: and(['accessUpgraded', 'upgradeSplits']), target: 'IDLE', actions: ['releaseLock', 'countFailure', 'applyUpgrade'] },
          // Nothing moved (40001: a new access method for the same access): the user must look.
          { guard: 'accessUpgraded', target: 'NEEDS_USER', actions: ['releaseLock', 'countFailure', 'applyUpgrade', 'requireUser'] },
          { guard: 'userMustAct', target: 'NEEDS_USER', actions: ['releaseLock', 'countFailure', 'requireUser'] },
          // Transient failures: the lock is released; autosync tries again after the cooldown.
          { target: 'IDLE', actions: ['releaseLock', 'countFailure', 'coolDown'] },
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
    /** An access upgrade moved every account to other accesses; kept (not deleted) so the app can see why. */
    RETIRED: {},
  },
});

export type ConnectionMachine = typeof connectionMachine;
export type ConnectionState = 'IDLE' | 'SYNCING' | 'NEEDS_USER' | 'DISABLED' | 'RETIRED';

/** Why a sync request is refused in this state, or null when it would start. */
export function refusalReason(state: ConnectionState, context: ConnectionContext, unattended: boolean, at: number): RefusalReason | null {
  if (state === 'SYNCING') return 'SYNC_ACTIVE';
  if (state === 'DISABLED') return 'CONNECTION_DISABLED';
  if (state === 'RETIRED') return 'CONNECTION_RETIRED';
  if (!unattended) return null;
  if (state === 'NEEDS_USER') return 'USER_REQUIRED';
  return unattendedRefusal(context, at);
}
