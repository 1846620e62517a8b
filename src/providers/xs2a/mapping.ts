/**
 * xs2a bank connection reading -> canonical Observation, through the pure xs2a connection machine.
 *
 * A reading (GET .../bank-connections/{id}, or the connection carried by a bank connection event) is resolved to
 * a snapshot of `xs2aConnectionMachine` (ACTIVE / INACTIVE / DISABLED / SYNCING.{Requested, Running,
 * AwaitingUser, Resumed}); the machine's state meta gives the canonical status and the monotonic `progress` rank,
 * the reading gives the details (wizard key, per-account results, error).
 *
 * Unknown sync modes, connection statuses, sync states and account statuses throw UnknownProviderStatusError
 * (never mapped to progress or success). A documented state without the data it implies (a wizard without
 * key, success without accounts) throws InvalidProviderResponseError.
 *
 * Failures: after any failed sync xs2a sets sync_active=false, so no failure is retryable automatically (a new
 * sync needs `force`, which banksync only sends on explicit request). The third failure in a row disables the
 * connection for good: CONNECTION_DISABLED, the user must delete and recreate it.
 */
import { DateTime } from 'luxon';
import type { StateValue } from 'xstate';
import { Observation, computeOutcome, type AccountOutcome, type Challenge, type SyncError } from '../../../machines/canonical.js';
import {
  XS2A_MAX_FAILURES,
  XS2A_PROGRESS,
  xs2aReading,
  xs2aSnapshot,
  type Xs2aConnectionContext,
  type Xs2aConnectionSnapshot,
  type Xs2aRefusal,
} from '../../../machines/xs2aConnection.js';
import { InvalidProviderResponseError, ProviderError, UnknownProviderStatusError, zodIssues } from '../errors.js';
import {
  Xs2aAccountStatus,
  Xs2aAttemptState,
  Xs2aConnectionStatus,
  Xs2aSyncMode,
  type Xs2aBankConnection,
  type Xs2aLastSync,
  type Xs2aSyncAccount,
} from './schemas.js';
import { parseProviderTime } from '../time.js';

const XS2A = 'xs2a';

/** Used when the provider gives no wizard deadline. */
export const DEFAULT_WIZARD_TTL_MS = 30 * 60_000;

/** `${connectionId}:${attempt}`: one ref per sync attempt; poll reads the connection and picks the attempt. */
export function xs2aRef(connectionId: string, attempt: number): string {
  return `${connectionId}:${attempt}`;
}

/** A sync requested on a connection read in the published model (see xs2aPublishedRef). */
export interface Xs2aPublishedSync {
  connectionId: string;
  /** Epoch ms the sync was requested. */
  since: number;
  /** sync_fail_counter before the request. */
  failsBefore: number;
  /** The wizard the 202 answer opened, with its deadline (epoch ms). */
  wizard?: { key: string; expiresAt: number };
}

/**
 * The published BankConnection model has no sync attempts (no `last_sync`, no `status`): a sync triggered on such
 * a reading is identified by when it was requested and the fail counter before it (plus the wizard a 202 opened),
 * `${connectionId}@${since}/${failsBefore}[/${wizardExpiresAt}/${wizardKey}]`.
 */
export function xs2aPublishedRef(sync: Xs2aPublishedSync): string {
  const wizard = sync.wizard ? `/${sync.wizard.expiresAt}/${encodeURIComponent(sync.wizard.key)}` : '';
  return `${sync.connectionId}@${sync.since}/${sync.failsBefore}${wizard}`;
}

export type Xs2aRef = { connectionId: string; attempt: number } | Xs2aPublishedSync;

export function parseXs2aRef(providerRef: string): Xs2aRef | null {
  const published = /^([^@]+)@(\d{1,15})\/(\d{1,6})(?:\/(\d{1,15})\/([^/]+))?$/.exec(providerRef);
  if (published) {
    const [, connectionId, since, failsBefore, expiresAt, key] = published;
    return {
      connectionId: connectionId!,
      since: Number(since),
      failsBefore: Number(failsBefore),
      ...(key ? { wizard: { key: decodeURIComponent(key), expiresAt: Number(expiresAt) } } : {}),
    };
  }
  const at = providerRef.lastIndexOf(':');
  if (at <= 0) return null;
  const attempt = Number(providerRef.slice(at + 1));
  if (!Number.isSafeInteger(attempt) || attempt < 1) return null;
  return { connectionId: providerRef.slice(0, at), attempt };
}

/** xs2a is German: consent_valid_until is a date in Berlin, so "today" is Berlin's (not UTC's: 00:00-02:00 differ). */
export const XS2A_ZONE = 'Europe/Berlin';

export function todayOf(now: number): string {
  return DateTime.fromMillis(now, { zone: XS2A_ZONE }).toISODate()!;
}

/** Provider free text is kept short in canonical errors (they are persisted in snapshots). */
function clip(text: string, max = 160): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

function invalid(operation: string, issue: string): InvalidProviderResponseError {
  return new InvalidProviderResponseError(XS2A, operation, [issue]);
}

const TERMINAL: ReadonlySet<string> = new Set(['SUCCEEDED', 'FAILED']);

export function isTerminalAttempt(attempt: Xs2aLastSync): boolean {
  return TERMINAL.has(attempt.state);
}

export function isDisabled(connection: Xs2aBankConnection): boolean {
  return connection.status === 'DISABLED' || connection.sync_fail_counter >= XS2A_MAX_FAILURES;
}

/** Checks every enum-like field of a reading; unknown values throw UnknownProviderStatusError. */
function checkEnums(connection: Xs2aBankConnection): void {
  if (!Xs2aSyncMode.safeParse(connection.sync_mode).success) {
    throw new UnknownProviderStatusError(XS2A, 'sync_mode', connection.sync_mode);
  }
  if (connection.status !== undefined && !Xs2aConnectionStatus.safeParse(connection.status).success) {
    throw new UnknownProviderStatusError(XS2A, 'connection status', connection.status);
  }
  const last = connection.last_sync;
  if (last && !Xs2aAttemptState.safeParse(last.state).success) {
    throw new UnknownProviderStatusError(XS2A, 'sync state', last.state);
  }
}

function stateValueOf(connection: Xs2aBankConnection): StateValue {
  if (isDisabled(connection)) return 'DISABLED';
  const last = connection.last_sync;
  if (last && !isTerminalAttempt(last)) {
    if (last.state === 'QUEUED') return { SYNCING: 'Requested' };
    if (last.state === 'WAITING_FOR_USER') return { SYNCING: 'AwaitingUser' };
    return { SYNCING: last.wizard_completed ? 'Resumed' : 'Running' };
  }
  return connection.sync_active ? 'ACTIVE' : 'INACTIVE';
}

function lastOutcomeOf(last: Xs2aLastSync | null | undefined): Xs2aConnectionContext['lastOutcome'] {
  if (!last || !isTerminalAttempt(last)) return null;
  if (last.state === 'SUCCEEDED') return 'SUCCEEDED';
  return last.error_code === 'WIZARD_EXPIRED' ? 'WIZARD_EXPIRED' : 'FAILED';
}

/** The xs2a connection machine's snapshot for a provider reading. */
export function connectionSnapshot(connection: Xs2aBankConnection): Xs2aConnectionSnapshot {
  checkEnums(connection);
  const last = connection.last_sync ?? null;
  return xs2aSnapshot(stateValueOf(connection), {
    failCounter: connection.sync_fail_counter,
    consentValidUntil: connection.consent_valid_until ?? null,
    attempt: last?.attempt ?? 0,
    forced: last?.forced === true,
    origin: last?.origin === 'reset' ? 'reset' : last ? 'sync' : null,
    wizardKey: last?.state === 'WAITING_FOR_USER' ? (last.wizard_session_key ?? null) : null,
    lastOutcome: lastOutcomeOf(last),
    lastMessage: connection.sync_message,
  });
}

export interface WizardLinks {
  /** Absolute URL of the wizard page for a wizard_session_key. */
  wizardUrl(key: string): string;
  now(): number;
}

export function wizardChallenge(key: string, expiresAt: string | null | undefined, links: WizardLinks, message?: string): Challenge {
  const deadline = expiresAt ? parseXs2aTime(expiresAt)! : links.now() + DEFAULT_WIZARD_TTL_MS;
  return {
    id: key,
    kind: 'WEB_FORM',
    expiresAt: new Date(deadline).toISOString(),
    redirectUrl: links.wizardUrl(key),
    message: message ?? 'The bank needs the user: complete the xs2a wizard to continue the sync',
  };
}

export function mapAccount(account: Xs2aSyncAccount): AccountOutcome {
  const status = Xs2aAccountStatus.safeParse(account.status);
  if (!status.success) throw new UnknownProviderStatusError(XS2A, 'account status', account.status);
  return {
    accountId: account.id,
    status: status.data === 'UPDATED' ? 'UPDATED' : 'DOWNLOAD_FAILED',
    kind: 'CASH',
    transactionsAdded: account.turnovers_added,
  };
}

const CREDENTIAL_CODES = new Set(['INVALID_CREDENTIALS', 'WRONG_CREDENTIALS', 'LOGIN_FAILED', 'PIN_BLOCKED', 'ACCOUNT_LOCKED', 'CREDENTIALS_EXPIRED']);
const SCA_CODES = new Set(['SCA_FAILED', 'TAN_FAILED', 'TAN_BLOCKED', 'AUTHORIZATION_FAILED']);
const CONSENT_CODES = new Set(['CONSENT_EXPIRED', 'CONSENT_INVALID', 'CONSENT_REVOKED']);

/** The connection is disabled: the only way on is delete and recreate. */
export function disabledError(connection: Xs2aBankConnection, providerCode?: string): SyncError {
  const last = connection.sync_message ? ` (last failure: ${clip(connection.sync_message)})` : '';
  return {
    code: 'CONNECTION_DISABLED',
    retryable: false,
    userActionRequired: true,
    message:
      `xs2a disabled the bank connection after ${Math.max(XS2A_MAX_FAILURES, connection.sync_fail_counter)} failed syncs in a row${last}; ` +
      'it can never sync again: delete it and create it again (the user re-enters the credentials)',
    providerCode: providerCode ?? 'DISABLED',
  };
}

/** A failed sync attempt -> canonical error. Never retryable: the connection is inactive now (or disabled). */
export function mapFailure(connection: Xs2aBankConnection, attempt: Xs2aLastSync): SyncError {
  const providerCode = attempt.error_code ?? undefined;
  if (isDisabled(connection)) return disabledError(connection, providerCode);
  const code = (providerCode ?? '').toUpperCase();
  const what = clip(connection.sync_message || providerCode || 'sync failed');
  // failureCount: xs2a's own count (its automatic syncs included), so banksync can stop before xs2a disables.
  const base = { retryable: false, userActionRequired: true, failureCount: connection.sync_fail_counter, ...(providerCode ? { providerCode } : {}) } as const;
  if (code === 'WIZARD_EXPIRED') {
    return { ...base, code: 'CHALLENGE_EXPIRED', message: 'the xs2a wizard session expired before the user completed it' };
  }
  const left = XS2A_MAX_FAILURES - connection.sync_fail_counter;
  const inactive =
    `; the connection is inactive now (sync_active=false, sync_fail_counter=${connection.sync_fail_counter}, ` +
    `${left} more failure${left === 1 ? '' : 's'} in a row disable${left === 1 ? 's' : ''} it): fix the cause, then sync with options.force = true or reset it`;
  if (CREDENTIAL_CODES.has(code)) return { ...base, code: 'INVALID_CREDENTIALS', message: `${what}${inactive}` };
  if (SCA_CODES.has(code)) return { ...base, code: 'SCA_FAILED', message: `${what}${inactive}` };
  if (CONSENT_CODES.has(code)) return { ...base, code: 'CONSENT_EXPIRED', message: `${what}${inactive}` };
  return { ...base, code: code.startsWith('BANK_') ? 'BANK_REJECTED' : 'PROVIDER_ERROR', message: `${what}${inactive}` };
}

/** Why the machine (the provider's rules) refuses to sync now, as the error the trigger throws. */
export function refusalError(refusal: Exclude<Xs2aRefusal, 'SYNC_IN_PROGRESS'>, connection: Xs2aBankConnection): ProviderError {
  switch (refusal) {
    case 'DISABLED': {
      const e = disabledError(connection);
      return new ProviderError(`xs2a trigger: ${e.message}`, { code: 'CONNECTION_DISABLED', retryable: false, userActionRequired: true, providerCode: 'DISABLED' });
    }
    case 'CONSENT_EXPIRED':
      return new ProviderError(
        `xs2a trigger: the consent expired (consent_valid_until ${connection.consent_valid_until ?? 'unknown'}); the user renews it by resetting the connection (wizard)`,
        { code: 'CONSENT_EXPIRED', retryable: false, userActionRequired: true, providerCode: 'CONSENT_EXPIRED' },
      );
    case 'INACTIVE':
      return new ProviderError(
        `xs2a trigger: the connection is inactive (sync_active=false after ${connection.sync_fail_counter} failed sync${connection.sync_fail_counter === 1 ? '' : 's'} in a row` +
          `${connection.sync_message ? `: ${clip(connection.sync_message)}` : ''}); xs2a refuses a sync without force: fix the cause, ` +
          'then request the sync with options.force = true, or reset the connection',
        // Refused before any sync request: nothing failed at the bank (the breaker does not count it).
        { code: 'PREFLIGHT_REFUSED', retryable: false, userActionRequired: true, providerCode: 'SYNC_INACTIVE' },
      );
    case 'DELETED':
      return new ProviderError('xs2a trigger: the bank connection was deleted', { code: 'PROVIDER_ERROR', retryable: false, userActionRequired: true });
  }
}

/**
 * `last_synced` -> epoch ms. The published model gives no format or zone: an ISO 8601 value with an offset is read
 * as such, one without an offset (or `yyyy-MM-dd HH:mm:ss`) as UTC, never in the host's zone.
 */
export function parseXs2aTime(value: string): number | null {
  return parseProviderTime(value);
}

/**
 * The canonical reading of a sync requested at `since` on a connection read in the published model (no
 * `last_sync`): disabled -> CONNECTION_DISABLED; a failure counted since (sync_fail_counter above the one before
 * the request) -> FAILED from sync_message; `last_synced` at or after the request with no failure pending ->
 * COMPLETED (the model lists no per-account results: accounts are not reported); otherwise RUNNING.
 */
export function mapPublished(connection: Xs2aBankConnection, ref: Xs2aPublishedSync, operation: string, links: WizardLinks): Observation {
  checkEnums(connection);
  let observation: Observation;
  const lastSynced = connection.last_synced === null ? null : parseXs2aTime(connection.last_synced);
  if (isDisabled(connection)) {
    observation = { status: 'FAILED', error: disabledError(connection), progress: XS2A_PROGRESS.FINISHED };
  } else if (connection.sync_fail_counter > ref.failsBefore) {
    const attempt = { attempt: 1, state: 'FAILED', started_at: new Date(ref.since).toISOString() };
    observation = { status: 'FAILED', error: mapFailure(connection, attempt), progress: XS2A_PROGRESS.FINISHED };
  } else if (lastSynced !== null && lastSynced >= ref.since && connection.sync_fail_counter === 0) {
    observation = { status: 'COMPLETED', result: { outcome: 'COMPLETE', accounts: [] }, progress: XS2A_PROGRESS.FINISHED };
  } else if (ref.wizard) {
    // The 202 answer opened a wizard: the user is needed until the connection tells an outcome.
    const challenge = wizardChallenge(ref.wizard.key, new Date(ref.wizard.expiresAt).toISOString(), links);
    observation = { status: 'AWAIT_AUTH', challenge, progress: XS2A_PROGRESS.AWAITING_USER };
  } else {
    observation = { status: 'RUNNING', progress: XS2A_PROGRESS.RUNNING };
  }
  const checked = Observation.safeParse(observation);
  if (!checked.success) throw new InvalidProviderResponseError(XS2A, operation, zodIssues(checked.error));
  return checked.data;
}

/**
 * The canonical reading of sync attempt `attempt` of a connection. When a newer attempt has started (a reset,
 * or the provider's own automatic sync), that one is followed: its outcome is the connection's. An attempt not
 * visible yet reads as QUEUED.
 */
export function mapAttempt(connection: Xs2aBankConnection, attempt: number, operation: string, links: WizardLinks): Observation {
  const snapshot = connectionSnapshot(connection);
  const last = connection.last_sync;
  let observation: Observation;
  if (!last || last.attempt < attempt) {
    observation = isDisabled(connection)
      ? { status: 'FAILED', error: disabledError(connection), progress: xs2aReading(snapshot).progress }
      : { status: 'QUEUED', progress: 1 };
  } else {
    const reading = xs2aReading(snapshot);
    const progress = reading.progress;
    switch (reading.status) {
      case 'QUEUED':
      case 'RUNNING':
        observation = { status: reading.status, progress };
        break;
      case 'AWAIT_AUTH':
        if (!last.wizard_session_key) throw invalid(operation, 'last_sync.wizard_session_key: required when the sync waits for the user');
        observation = { status: 'AWAIT_AUTH', challenge: wizardChallenge(last.wizard_session_key, last.wizard_expires_at, links), progress };
        break;
      case 'COMPLETED': {
        if (!last.accounts) throw invalid(operation, 'last_sync.accounts: required when the sync succeeded');
        const accounts = last.accounts.map(mapAccount);
        observation = { status: 'COMPLETED', result: { outcome: computeOutcome(accounts), accounts }, progress };
        break;
      }
      case 'FAILED':
        observation = { status: 'FAILED', error: mapFailure(connection, last), progress };
        break;
    }
  }
  const checked = Observation.safeParse(observation);
  if (!checked.success) throw new InvalidProviderResponseError(XS2A, operation, zodIssues(checked.error));
  return checked.data;
}
