/**
 * finX sync object -> canonical Observation.
 *
 * Unknown sync statuses, challenge types and account statuses throw UnknownProviderStatusError (never
 * mapped to progress or success). A documented status without the data it implies (AWAIT_AUTH without a
 * challenge, COMPLETED without accounts, FAILED without an error, an upgrade without valid data) throws
 * InvalidProviderResponseError.
 */
import {
  Observation,
  computeOutcome,
  type AccessUpgrade,
  type AccountOutcome,
  type Challenge,
  type SyncError,
} from '../../../machines/canonical.js';
import { InvalidProviderResponseError, UnknownProviderStatusError, zodIssues } from '../errors.js';
import {
  FinxAccountStatus,
  FinxChallengeType,
  FinxSyncStatus,
  FinxUpgradeData,
  type FinxChallenge,
  type FinxSync,
  type FinxSyncAccount,
  type FinxSyncErrorBody,
} from './schemas.js';
import { parseProviderTime, providerTimeToIso } from '../time.js';

const FINX = 'finx';

const UPGRADE_KINDS: Record<string, AccessUpgrade['kind']> = {
  '40001': 'DIRECT',
  '40002': 'MULTI_ACCESS',
  '40003': 'PARTIAL',
};

/** Login data rejected or blocked: the user must enter new credentials; never retried automatically. */
const CREDENTIAL_CODES = new Set([
  'INVALID_CREDENTIALS',
  'WRONG_CREDENTIALS',
  'CREDENTIALS_INVALID',
  'CREDENTIALS_EXPIRED',
  'LOGIN_FAILED',
  'PIN_BLOCKED',
  'ACCESS_BLOCKED',
  'ACCESS_LOCKED',
  'ACCOUNT_LOCKED',
]);
/** Strong customer authentication failed for good (not a wrong TAN, which finX answers with a new challenge). */
const SCA_CODES = new Set(['SCA_FAILED', 'AUTHORIZATION_FAILED', 'CHALLENGE_FAILED', 'TAN_BLOCKED']);
const CONSENT_CODES = new Set(['CONSENT_EXPIRED', 'CONSENT_INVALID', 'CONSENT_REVOKED']);
/** Passing outages on the bank's or finX's side. */
const TRANSIENT_CODES = new Set([
  'BANK_UNAVAILABLE',
  'BANK_TIMEOUT',
  'BANK_MAINTENANCE',
  'BANK_TEMPORARILY_UNAVAILABLE',
  'TEMPORARILY_UNAVAILABLE',
  'SERVICE_UNAVAILABLE',
  'INTERNAL_ERROR',
  'TIMEOUT',
]);

function invalid(operation: string, issue: string): InvalidProviderResponseError {
  return new InvalidProviderResponseError(FINX, operation, [issue]);
}

function toIso(value: string): string {
  return providerTimeToIso(value);
}

/** Provider free text is kept short in canonical errors (they are persisted in snapshots). */
function clip(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

export function mapChallenge(challenge: FinxChallenge, operation: string): Challenge {
  const type = FinxChallengeType.safeParse(challenge.type);
  if (!type.success) throw new UnknownProviderStatusError(FINX, 'challenge type', challenge.type);
  if (type.data === 'REDIRECT' && !challenge.redirect_url) {
    throw invalid(operation, 'challenge.redirect_url: required for REDIRECT challenges');
  }
  return {
    id: challenge.id,
    kind: type.data,
    expiresAt: toIso(challenge.expires_at),
    ...(challenge.message ? { message: challenge.message } : {}),
    ...(challenge.redirect_url ? { redirectUrl: challenge.redirect_url } : {}),
    ...(challenge.retry === true ? { previousAttemptFailed: true } : {}),
  };
}

export function mapAccount(account: FinxSyncAccount): AccountOutcome {
  const status = FinxAccountStatus.safeParse(account.status);
  if (!status.success) throw new UnknownProviderStatusError(FINX, 'account status', account.status);
  return { accountId: account.id, status: status.data, transactionsAdded: account.transactions_added };
}

/**
 * finX error code -> canonical SyncError.
 *
 * Retry choice: only codes that name a passing outage (BANK_UNAVAILABLE, BANK_TIMEOUT, INTERNAL_ERROR...)
 * are retryable. Every other or unknown code is not: an automatic retry repeats a bank login, which counts
 * against the PSD2 limit of 4 unattended accesses per day and, for credential problems, can lock the user's
 * bank account. BANK_* codes map to BANK_REJECTED, anything else to PROVIDER_ERROR; the raw code is kept
 * in `providerCode` either way.
 */
export function mapSyncError(error: FinxSyncErrorBody, operation: string): SyncError {
  const providerCode = String(error.code);
  const code = providerCode.toUpperCase();
  const message = clip(error.message || providerCode);

  const upgradeKind = UPGRADE_KINDS[code];
  if (upgradeKind) {
    const data = FinxUpgradeData.safeParse(error.data ?? undefined);
    if (!data.success) {
      throw new InvalidProviderResponseError(FINX, operation, zodIssues(data.error).map((issue) => `error.data.${issue}`));
    }
    return {
      code: 'ACCESS_UPGRADE',
      retryable: false,
      userActionRequired: true,
      message,
      providerCode,
      upgrade: {
        kind: upgradeKind,
        ...(data.data.access_method_id ? { newAccessMethodId: data.data.access_method_id } : {}),
        accounts: data.data.accounts.map((a) => ({ accountId: a.account_id, accessId: a.access_id, supported: a.supported })),
      },
    };
  }
  if (code === 'CHALLENGE_EXPIRED') {
    return { code: 'CHALLENGE_EXPIRED', retryable: false, userActionRequired: true, message, providerCode };
  }
  if (CREDENTIAL_CODES.has(code)) {
    return { code: 'INVALID_CREDENTIALS', retryable: false, userActionRequired: true, message, providerCode };
  }
  if (SCA_CODES.has(code)) {
    return { code: 'SCA_FAILED', retryable: false, userActionRequired: true, message, providerCode };
  }
  if (CONSENT_CODES.has(code)) {
    return { code: 'CONSENT_EXPIRED', retryable: false, userActionRequired: true, message, providerCode };
  }
  const retryable = TRANSIENT_CODES.has(code);
  return {
    code: code.startsWith('BANK_') ? 'BANK_REJECTED' : 'PROVIDER_ERROR',
    retryable,
    userActionRequired: false,
    message,
    providerCode,
  };
}

/** Maps one finX sync object; `operation` names the call it came from (for error messages). */
export function mapSync(sync: FinxSync, operation: string): Observation {
  const status = FinxSyncStatus.safeParse(sync.status);
  if (!status.success) throw new UnknownProviderStatusError(FINX, 'sync status', sync.status);

  let observation: Observation;
  switch (status.data) {
    case 'QUEUED':
    case 'RUNNING':
      observation = { status: status.data };
      break;
    case 'AWAIT_AUTH':
      if (!sync.challenge) throw invalid(operation, 'challenge: required when status is AWAIT_AUTH');
      observation = { status: 'AWAIT_AUTH', challenge: mapChallenge(sync.challenge, operation) };
      break;
    case 'COMPLETED': {
      if (!sync.accounts) throw invalid(operation, 'accounts: required when status is COMPLETED');
      const accounts = sync.accounts.map(mapAccount);
      observation = { status: 'COMPLETED', result: { outcome: computeOutcome(accounts), accounts } };
      break;
    }
    case 'FAILED':
      if (!sync.error) throw invalid(operation, 'error: required when status is FAILED');
      observation = { status: 'FAILED', error: mapSyncError(sync.error, operation) };
      break;
  }
  // finX readings are ordered by `updated_at`: a late or replayed webhook is older than what was applied.
  observation = { ...observation, progress: parseProviderTime(sync.updated_at)! };
  // Belt and braces: what leaves the adapter is a valid canonical observation.
  const checked = Observation.safeParse(observation);
  if (!checked.success) throw new InvalidProviderResponseError(FINX, operation, zodIssues(checked.error));
  return checked.data;
}

export function isTerminalFinxStatus(status: string): boolean {
  return status === 'COMPLETED' || status === 'FAILED';
}
