/**
 * Shared fixtures for the connection machine tests (unit, model, property): canonical error shapes, finX access
 * upgrades, a pure stepper (as the engine steps the machine with getNextSnapshot), and an independent reference
 * model of the rules written from the spec (seeds 000, 002, 003 and PSD2 RTS Art. 36(5)(b)), not from the code.
 */
import { expect } from 'vitest';
import { getInitialSnapshot, getNextSnapshot, type SnapshotFrom } from 'xstate';
import type { AccessUpgrade, SyncError, SyncErrorCode, SyncResult } from '../../machines/canonical.js';
import { jitterFraction } from '../../machines/jitter.js';
import {
  connectionMachine,
  type ConnectionContext,
  type ConnectionEvent,
  type ConnectionInput,
  type ConnectionState,
  type NeedsUserReason,
} from '../../machines/connection.js';

export type ConnectionSnapshot = SnapshotFrom<typeof connectionMachine>;

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;
/** The spec's numbers, restated here (not imported) so a wrong constant in the machine is caught. */
export const SPEC = {
  consentMaxAgeMs: 90 * DAY,
  unattendedWindowMs: DAY,
  unattendedMaxPerWindow: 4,
  /** banksync's own stop when the provider states no limit; with a limit L it stops at L - 1 (issue #13). */
  breakerThreshold: 3,
  cooldownBaseMs: 15 * MINUTE,
  cooldownCeilingMs: DAY,
  cooldownJitterRatio: 0.25,
} as const;

/** Failures the bank or provider counts against the connection (issue #13): credentials, SCA, bank rejection. */
export const COUNTED: readonly SyncErrorCode[] = ['INVALID_CREDENTIALS', 'SCA_FAILED', 'BANK_REJECTED'];

export const T0 = Date.parse('2025-03-01T09:00:00.000Z');

/** An autosync-eligible connection: stored credentials, no web scraping, consent granted a day ago. */
export const ELIGIBLE: ConnectionInput = {
  tenantId: 'tenant-1',
  connectionId: 'access-1',
  provider: 'finx',
  storedCredentials: true,
  hasWebScraping: false,
  consentGrantedAt: T0 - DAY,
};

// ---------------------------------------------------------------------------------------------------------------
// Canonical error shapes (flags as the adapters produce them, see SyncError docs in canonical.ts)
// ---------------------------------------------------------------------------------------------------------------

export const ERROR_FLAGS: Record<SyncErrorCode, { retryable: boolean; userActionRequired: boolean }> = {
  PROVIDER_UNAVAILABLE: { retryable: true, userActionRequired: false },
  RATE_LIMITED: { retryable: true, userActionRequired: false },
  PROVIDER_BUSY: { retryable: true, userActionRequired: false },
  TIMEOUT: { retryable: true, userActionRequired: false },
  INVALID_CREDENTIALS: { retryable: false, userActionRequired: true },
  SCA_FAILED: { retryable: false, userActionRequired: true },
  CHALLENGE_EXPIRED: { retryable: false, userActionRequired: true },
  ANSWER_NOT_SENT: { retryable: false, userActionRequired: true },
  ACCESS_UPGRADE: { retryable: false, userActionRequired: true },
  CONSENT_EXPIRED: { retryable: false, userActionRequired: true },
  PREFLIGHT_REFUSED: { retryable: false, userActionRequired: true },
  BANK_REJECTED: { retryable: false, userActionRequired: false },
  PROVIDER_ERROR: { retryable: false, userActionRequired: false },
  PROVIDER_UNAUTHORIZED: { retryable: false, userActionRequired: false },
  UNKNOWN_PROVIDER_STATUS: { retryable: false, userActionRequired: false },
  INVALID_RESPONSE: { retryable: false, userActionRequired: false },
  CONNECTION_DISABLED: { retryable: false, userActionRequired: false },
  CANCELLED: { retryable: false, userActionRequired: false },
  NEEDS_USER: { retryable: false, userActionRequired: true },
  ENGINE_ERROR: { retryable: false, userActionRequired: false },
};
export const ALL_CODES = Object.keys(ERROR_FLAGS) as SyncErrorCode[];

/** Credential and 2FA failures: repeating them automatically can lock the user's real bank account. */
export const CREDENTIAL_OR_SCA: readonly SyncErrorCode[] = ['INVALID_CREDENTIALS', 'SCA_FAILED', 'CHALLENGE_EXPIRED', 'ANSWER_NOT_SENT'];
/** Failures after which a later automatic attempt may succeed. */
export const TRANSIENT: readonly SyncErrorCode[] = ['PROVIDER_UNAVAILABLE', 'RATE_LIMITED', 'PROVIDER_BUSY', 'TIMEOUT'];

export function syncError(code: SyncErrorCode, extra: Partial<SyncError> = {}): SyncError {
  return { code, ...ERROR_FLAGS[code], message: `${code} (test)`, ...extra };
}

/** finX 40001: same access, new access method. */
export function directUpgrade(connectionId = ELIGIBLE.connectionId, accountIds = ['acc-giro']): AccessUpgrade {
  return {
    kind: 'DIRECT',
    newAccessMethodId: 'method-psd2',
    accounts: accountIds.map((accountId) => ({ accountId, accessId: connectionId, supported: true })),
  };
}
/** finX 40002: the giro account moves to a newly created access, the savings account stays. */
export function multiUpgrade(connectionId = ELIGIBLE.connectionId, newAccessId = 'access-2'): AccessUpgrade {
  return {
    kind: 'MULTI_ACCESS',
    newAccessMethodId: 'method-psd2',
    accounts: [
      { accountId: 'acc-giro', accessId: newAccessId, supported: true },
      { accountId: 'acc-savings', accessId: connectionId, supported: true },
    ],
  };
}
/** finX 40002 that moves every account of this access to new accesses. */
export function movedAway(): AccessUpgrade {
  return {
    kind: 'MULTI_ACCESS',
    newAccessMethodId: 'method-psd2',
    accounts: [
      { accountId: 'acc-giro', accessId: 'access-2', supported: true },
      { accountId: 'acc-savings', accessId: 'access-3', supported: true },
    ],
  };
}
/** finX 40003: the savings account is not supported by the new access method any more. */
export function partialUpgrade(connectionId = ELIGIBLE.connectionId): AccessUpgrade {
  return {
    kind: 'PARTIAL',
    newAccessMethodId: 'method-psd2',
    accounts: [
      { accountId: 'acc-giro', accessId: connectionId, supported: true },
      { accountId: 'acc-savings', accessId: null, supported: false },
    ],
  };
}
export const upgradeError = (upgrade: AccessUpgrade, providerCode: string): SyncError =>
  syncError('ACCESS_UPGRADE', { upgrade, providerCode });

export const RESULT: SyncResult = {
  outcome: 'COMPLETE',
  accounts: [{ accountId: 'acc-giro', status: 'UPDATED', transactionsAdded: 2 }],
};

// ---------------------------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------------------------

export const ev = {
  attended: (syncId: string, at: number): ConnectionEvent => ({ type: 'SYNC.REQUEST', syncId, unattended: false, at }),
  unattended: (syncId: string, at: number): ConnectionEvent => ({ type: 'SYNC.REQUEST', syncId, unattended: true, at }),
  completed: (syncId: string, at: number, result: SyncResult | null = RESULT): ConnectionEvent => ({
    type: 'SYNC.FINISHED',
    syncId,
    status: 'COMPLETED',
    result,
    error: null,
    at,
  }),
  failed: (syncId: string, at: number, error: SyncError | null, policy: { providerFailureLimit?: number; cooldownCeilingMs?: number } = {}): ConnectionEvent => ({
    type: 'SYNC.FINISHED',
    syncId,
    status: 'FAILED',
    result: null,
    error,
    at,
    ...policy,
  }),
  settings: (
    at: number,
    patch: { storedCredentials?: boolean; hasWebScraping?: boolean; consentGrantedAt?: number | null; consentExpiresAt?: number | null },
  ): ConnectionEvent => ({
    type: 'SETTINGS.UPDATE',
    ...patch,
    at,
  }),
  recreated: (at: number): ConnectionEvent => ({ type: 'RECREATED', at }),
};

// ---------------------------------------------------------------------------------------------------------------
// Pure stepping
// ---------------------------------------------------------------------------------------------------------------

export const initial = (input: ConnectionInput = ELIGIBLE): ConnectionSnapshot => getInitialSnapshot(connectionMachine, input);
export const step = (snapshot: ConnectionSnapshot, event: ConnectionEvent): ConnectionSnapshot =>
  getNextSnapshot(connectionMachine, snapshot, event);
export const run = (events: readonly ConnectionEvent[], from: ConnectionSnapshot | ConnectionInput = ELIGIBLE): ConnectionSnapshot =>
  events.reduce(step, 'tenantId' in from ? initial(from) : from);
export const stateOf = (snapshot: ConnectionSnapshot): ConnectionState => snapshot.value as ConnectionState;

/** One sync from request to finish (the machine must accept the request). */
export function sync(
  from: ConnectionSnapshot,
  syncId: string,
  at: number,
  outcome: 'ok' | SyncError | null,
  unattended = false,
  durationMs = MINUTE,
): ConnectionSnapshot {
  const started = step(from, { type: 'SYNC.REQUEST', syncId, unattended, at });
  if (started.value !== 'SYNCING' || started.context.activeSyncId !== syncId) {
    throw new Error(`sync ${syncId} was not started (state ${String(started.value)})`);
  }
  return step(started, outcome === 'ok' ? ev.completed(syncId, at + durationMs) : ev.failed(syncId, at + durationMs, outcome));
}

// ---------------------------------------------------------------------------------------------------------------
// Reference model (independent restatement of the rules)
// ---------------------------------------------------------------------------------------------------------------

/**
 * Switches for deviations of the machine from the spec that are reported as bugs (see connection.test.ts,
 * "known bugs"). While `true`, the reference reproduces the machine's current behaviour so that the model and
 * property tests check everything else; set to `false` once the machine is fixed.
 */
export const KNOWN_BUGS = {
  /** An ACCESS_UPGRADE failure that trips the breaker (or comes with CONNECTION_DISABLED) is not remapped. */
  upgradeDroppedWhenDisabled: false,
  /** RECREATED forgets the unattended accesses of the last 24 h (PSD2 counts accesses to the account). */
  recreatedForgetsUnattendedAccesses: false,
  /** SYNC.FINISHED FAILED with `error: null` that trips the breaker throws; generators avoid it. */
  errorlessFailureCrashesAtBreaker: false,
};

const REASON_BY_CODE: Partial<Record<SyncErrorCode, NeedsUserReason>> = {
  INVALID_CREDENTIALS: 'CREDENTIALS',
  SCA_FAILED: 'SCA',
  CHALLENGE_EXPIRED: 'SCA',
  ANSWER_NOT_SENT: 'SCA',
  NEEDS_USER: 'SCA',
  ACCESS_UPGRADE: 'ACCESS_UPGRADE',
  CONSENT_EXPIRED: 'CONSENT_EXPIRED',
};
export const expectedReason = (code: SyncErrorCode): NeedsUserReason => REASON_BY_CODE[code] ?? 'PROVIDER';

/** Unattended accesses inside the window ending at `at` (an access exactly 24 h old no longer counts). */
export const recentAccesses = (accesses: readonly number[], at: number): number[] =>
  accesses.filter((t) => t > at - SPEC.unattendedWindowMs);

/** The consent's end: the calendar term the engine computed, else the legacy 90 x 24 h. */
export const specConsentEnd = (ctx: ConnectionContext): number | null =>
  ctx.consentGrantedAt === null ? null : (ctx.consentExpiresAt ?? ctx.consentGrantedAt + SPEC.consentMaxAgeMs);

export function specEligible(ctx: ConnectionContext, at: number): boolean {
  const consentEnd = specConsentEnd(ctx);
  return (
    ctx.storedCredentials &&
    !ctx.hasWebScraping &&
    consentEnd !== null &&
    at < consentEnd &&
    ctx.needsUser === null &&
    (ctx.cooldownUntil === null || at >= ctx.cooldownUntil) &&
    recentAccesses(ctx.unattendedAccesses, at).length < SPEC.unattendedMaxPerWindow
  );
}

/** The cooldown after the n-th transient failure in a row: max(Retry-After, base x 2^(n-1) less up to 25 % jitter), capped. */
export function specCooldown(syncId: string, n: number, retryAfterMs: number | undefined, ceilingMs: number = SPEC.cooldownCeilingMs): number {
  const backoff = Math.round(SPEC.cooldownBaseMs * 2 ** (n - 1) * (1 - SPEC.cooldownJitterRatio * jitterFraction(`${syncId}:cooldown`)));
  return Math.min(ceilingMs, Math.max(retryAfterMs ?? 0, backoff));
}

/** The next (state, context) per the spec; the context is the full expected context. */
export function referenceStep(
  state: ConnectionState,
  ctx: ConnectionContext,
  event: ConnectionEvent,
): { state: ConnectionState; ctx: ConnectionContext } {
  const same = { state, ctx };
  switch (event.type) {
    case 'SETTINGS.UPDATE':
      return {
        state,
        ctx: {
          ...ctx,
          ...(event.storedCredentials !== undefined ? { storedCredentials: event.storedCredentials } : {}),
          ...(event.hasWebScraping !== undefined ? { hasWebScraping: event.hasWebScraping } : {}),
          ...(event.consentGrantedAt !== undefined ? { consentGrantedAt: event.consentGrantedAt, consentWarnedAt: null } : {}),
          ...(event.consentExpiresAt !== undefined ? { consentExpiresAt: event.consentExpiresAt } : {}),
        },
      };
    case 'CONSENT.WARNED':
      if (ctx.consentWarnedAt != null) return same;
      return { state, ctx: { ...ctx, consentWarnedAt: event.at } };
    case 'RECREATED':
      if (state !== 'DISABLED') return same;
      return {
        state: 'IDLE',
        ctx: {
          ...ctx,
          consecutiveFailures: 0,
          transientFailures: 0,
          cooldownUntil: null,
          needsUser: null,
          activeSyncId: null,
          unattendedAccesses: KNOWN_BUGS.recreatedForgetsUnattendedAccesses ? [] : ctx.unattendedAccesses,
        },
      };
    case 'SYNC.REQUEST': {
      const accepted =
        (state === 'IDLE' && (!event.unattended || specEligible(ctx, event.at))) || (state === 'NEEDS_USER' && !event.unattended);
      if (!accepted) return same;
      return {
        state: 'SYNCING',
        ctx: {
          ...ctx,
          activeSyncId: event.syncId,
          unattendedAccesses: event.unattended ? [...recentAccesses(ctx.unattendedAccesses, event.at), event.at] : ctx.unattendedAccesses,
        },
      };
    }
    case 'SYNC.FINISHED': {
      if (state !== 'SYNCING' || event.syncId !== ctx.activeSyncId) return same;
      const released = { ...ctx, activeSyncId: null };
      if (event.status === 'COMPLETED') {
        return {
          state: 'IDLE',
          ctx: {
            ...released,
            consecutiveFailures: 0,
            transientFailures: 0,
            cooldownUntil: null,
            needsUser: null,
            lastSync: { syncId: event.syncId, status: 'COMPLETED', outcome: event.result?.outcome ?? null, errorCode: null, at: event.at },
          },
        };
      }
      const error = event.error;
      const lastSync = { syncId: event.syncId, status: 'FAILED' as const, outcome: null, errorCode: error?.code ?? null, at: event.at };
      if (error?.code === 'CANCELLED') return { state: 'IDLE', ctx: { ...released, lastSync } };
      // the provider's preflight refused before any bank access: not a failure at the bank, the breaker ignores it
      if (error?.code === 'PREFLIGHT_REFUSED') {
        if (!error.userActionRequired) return { state: 'IDLE', ctx: { ...released, lastSync } };
        return {
          state: 'NEEDS_USER',
          ctx: { ...released, lastSync, needsUser: { reason: expectedReason(error.code), message: error.message, at: event.at } },
        };
      }
      // The provider's counter when it publishes one; else only failures the bank or provider counts.
      const failures = error?.failureCount ?? (error && COUNTED.includes(error.code) ? ctx.consecutiveFailures + 1 : ctx.consecutiveFailures);
      const stopAt = event.providerFailureLimit !== undefined ? Math.max(1, event.providerFailureLimit - 1) : SPEC.breakerThreshold;
      // DISABLED only when the provider itself disabled the connection.
      const disabled = error?.code === 'CONNECTION_DISABLED';
      const stopped = !disabled && failures > ctx.consecutiveFailures && failures >= stopAt;
      const mustAct = error !== null && (error.code === 'ACCESS_UPGRADE' || error.userActionRequired || !error.retryable);
      const next: ConnectionContext = { ...released, lastSync, consecutiveFailures: failures };
      if (error?.upgrade && !(disabled && KNOWN_BUGS.upgradeDroppedWhenDisabled)) Object.assign(next, remap(ctx, error.upgrade));
      if (!disabled && !stopped && error?.code === 'ACCESS_UPGRADE' && error.upgrade) {
        // every account of this access moved away (or lost support): retired, visibly and for good
        const own = Object.values(next.accounts).filter((a) => a.accessId === ctx.connectionId && a.supported);
        if (next.linkedAccessIds.length > 0 && Object.keys(next.accounts).length > 0 && own.length === 0) {
          return { state: 'RETIRED', ctx: { ...next, retiredAt: event.at, needsUser: null, cooldownUntil: null } };
        }
        // some accounts moved to new accesses, others stayed: a live connection for those, no user needed
        if (next.linkedAccessIds.length > ctx.linkedAccessIds.length) return { state: 'IDLE', ctx: next };
      }
      if (stopped) {
        next.needsUser = { reason: 'FAILURE_LIMIT', message: expect.stringContaining(`${failures} failed syncs in a row`) as string, at: event.at };
      } else if (disabled || mustAct) {
        next.needsUser = { reason: expectedReason(error!.code), message: error!.message, at: event.at };
      } else {
        // passing trouble (or a failure without an error): cool down, never stop
        const transient = ctx.transientFailures + 1;
        next.transientFailures = transient;
        next.cooldownUntil = event.at + specCooldown(event.syncId, transient, error?.retryAfterMs, event.cooldownCeilingMs);
      }
      return { state: disabled ? 'DISABLED' : stopped || mustAct ? 'NEEDS_USER' : 'IDLE', ctx: next };
    }
  }
}

function remap(ctx: ConnectionContext, upgrade: AccessUpgrade): Partial<ConnectionContext> {
  const accounts = { ...ctx.accounts };
  const linked = [...ctx.linkedAccessIds];
  for (const a of upgrade.accounts) {
    accounts[a.accountId] = { accessId: a.accessId, supported: a.supported };
    if (a.accessId !== null && a.accessId !== ctx.connectionId && !linked.includes(a.accessId)) linked.push(a.accessId);
  }
  return { accounts, accessMethodId: upgrade.newAccessMethodId ?? ctx.accessMethodId, linkedAccessIds: linked };
}
