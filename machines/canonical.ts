/**
 * The canonical synchronization model every provider adapter maps onto.
 *
 * Pure types and zod schemas only: machines import this, adapters produce it, the engine persists it.
 * Nothing here may hold a credential, TAN or token (snapshots are built from these shapes).
 */
import { z } from 'zod';

export const SyncScope = z.enum(['TRANSACTIONS', 'ACCOUNTS']);
export type SyncScope = z.infer<typeof SyncScope>;

/** How the user solves a challenge: follow a link, type a TAN into our UI, approve in the bank app, or fill a provider web form. */
export const ChallengeKind = z.enum(['REDIRECT', 'EMBEDDED', 'DECOUPLED', 'WEB_FORM']);
export type ChallengeKind = z.infer<typeof ChallengeKind>;

export const Challenge = z.object({
  id: z.string().min(1),
  kind: ChallengeKind,
  /** Absolute deadline (ISO 8601); the sync fails with CHALLENGE_EXPIRED when it passes. */
  expiresAt: z.iso.datetime(),
  message: z.string().optional(),
  redirectUrl: z.string().optional(),
  /** Previous answer was rejected by the bank (wrong TAN); the user is asked again, never the engine. */
  previousAttemptFailed: z.boolean().optional(),
});
export type Challenge = z.infer<typeof Challenge>;

export const SyncErrorCode = z.enum([
  'PROVIDER_UNAVAILABLE',
  'RATE_LIMITED',
  'INVALID_CREDENTIALS',
  'SCA_FAILED',
  'CHALLENGE_EXPIRED',
  'BANK_REJECTED',
  'PROVIDER_ERROR',
  /** The provider refused our own credentials (API token, OAuth client) even after a refresh: fix the configuration. */
  'PROVIDER_UNAUTHORIZED',
  'UNKNOWN_PROVIDER_STATUS',
  'INVALID_RESPONSE',
  'ACCESS_UPGRADE',
  'CONSENT_EXPIRED',
  'CONNECTION_DISABLED',
  'PROVIDER_BUSY',
  /** The engine restarted between accepting the user's answer and sending it; the user is asked again. */
  'ANSWER_NOT_SENT',
  /** The provider's preflight says a background update is not possible now (user needed, no consent...). */
  'PREFLIGHT_REFUSED',
  'TIMEOUT',
  'CANCELLED',
  /** An unattended sync met SCA: without the user present nobody may answer it (PSD2); the user must sync. */
  'NEEDS_USER',
  /** The engine could not host the sync (a stored snapshot it cannot restore, its machine failed). */
  'ENGINE_ERROR',
]);
export type SyncErrorCode = z.infer<typeof SyncErrorCode>;

/** New access ids per account after a finX access upgrade (40001/40002/40003). */
export const AccessUpgrade = z.object({
  kind: z.enum(['DIRECT', 'MULTI_ACCESS', 'PARTIAL']),
  newAccessMethodId: z.string().optional(),
  accounts: z.array(
    z.object({
      accountId: z.string(),
      accessId: z.string().nullable(),
      supported: z.boolean(),
    }),
  ),
});
export type AccessUpgrade = z.infer<typeof AccessUpgrade>;

export const SyncError = z.object({
  code: SyncErrorCode,
  /** A later automatic attempt may succeed (never true for credential or 2FA failures). */
  retryable: z.boolean(),
  /** The user must act (SCA, new credentials, web form) before the next sync. */
  userActionRequired: z.boolean(),
  message: z.string(),
  providerCode: z.string().optional(),
  upgrade: AccessUpgrade.optional(),
  /** The provider's own count of failed syncs in a row, this one included (xs2a sync_fail_counter), when it publishes one. */
  failureCount: z.number().int().nonnegative().optional(),
  /** The provider asked us to come back no sooner than this (Retry-After), in ms from when the sync failed. */
  retryAfterMs: z.number().nonnegative().optional(),
});
export type SyncError = z.infer<typeof SyncError>;

export const AccountStatus = z.enum([
  'UPDATED',
  'UPDATED_FIXED',
  'DOWNLOAD_FAILED',
  'DEPRECATED',
  'NEW',
]);
export type AccountStatus = z.infer<typeof AccountStatus>;

export const AccountOutcome = z.object({
  accountId: z.string(),
  status: AccountStatus,
  kind: z.enum(['CASH', 'PORTFOLIO']).optional(),
  transactionsAdded: z.number().int().nonnegative().optional(),
});
export type AccountOutcome = z.infer<typeof AccountOutcome>;

export const SyncResult = z.object({
  /** COMPLETE: every account updated; PARTIAL: some failed; NONE: nothing could be downloaded. */
  outcome: z.enum(['COMPLETE', 'PARTIAL', 'NONE']),
  accounts: z.array(AccountOutcome),
});
export type SyncResult = z.infer<typeof SyncResult>;

/**
 * How far the provider-side lifecycle had got when a reading was taken (a provider-defined rank, e.g.
 * finAPI task IN_PROGRESS < WEB_FORM_REQUIRED < web form COMPLETED). A pushed reading ranked below one
 * already applied (a late or out-of-order callback) is ignored. Optional: providers without it omit it.
 */
const progress = z.number().int().nonnegative().optional();

/** One reading of the provider's view of a sync, from a poll, a trigger response or a webhook. */
export const Observation = z.discriminatedUnion('status', [
  z.object({ status: z.literal('QUEUED'), progress }),
  z.object({ status: z.literal('RUNNING'), progress }),
  z.object({ status: z.literal('AWAIT_AUTH'), challenge: Challenge, progress }),
  z.object({ status: z.literal('COMPLETED'), result: SyncResult, progress }),
  z.object({ status: z.literal('FAILED'), error: SyncError, progress }),
]);
export type Observation = z.infer<typeof Observation>;

export const TriggerOutput = z.object({
  /** The provider's id for this sync (finX sync id, finAPI task id, wealthAPI processId...). */
  providerRef: z.string().min(1),
  observation: Observation,
});
export type TriggerOutput = z.infer<typeof TriggerOutput>;

/**
 * What a failed effect rejects with. Adapters throw typed errors; the engine normalises them to this
 * serialisable shape so machine guards can decide without knowing the provider.
 */
export const EffectFailure = z.object({
  code: SyncErrorCode,
  retryable: z.boolean(),
  userActionRequired: z.boolean().default(false),
  message: z.string(),
  retryAfterMs: z.number().optional(),
  providerCode: z.string().optional(),
});
export type EffectFailure = z.infer<typeof EffectFailure>;

/**
 * Failures that may lock the user's bank account when repeated: never retried automatically, whatever an
 * adapter claims, and they always need the user.
 */
export const NEVER_RETRY_CODES: readonly SyncErrorCode[] = ['INVALID_CREDENTIALS', 'SCA_FAILED'];

/**
 * Failures the bank or provider counts against the connection (xs2a disables after 3 in a row; banks lock
 * after repeated wrong credentials or 2FA). Only these move a connection toward the breaker's stop; outages,
 * busy answers, rate limits, timeouts and invalid input are ours or passing and never count.
 */
export const COUNTED_FAILURE_CODES: readonly SyncErrorCode[] = ['INVALID_CREDENTIALS', 'SCA_FAILED', 'BANK_REJECTED'];

export function countsAgainstConnection(code: SyncErrorCode): boolean {
  return COUNTED_FAILURE_CODES.includes(code);
}

export function mayRetryAutomatically(failure: { code: SyncErrorCode; retryable: boolean }): boolean {
  return failure.retryable && !NEVER_RETRY_CODES.includes(failure.code);
}

export function computeOutcome(accounts: readonly AccountOutcome[]): SyncResult['outcome'] {
  const relevant = accounts.filter((a) => a.status !== 'DEPRECATED');
  if (relevant.length === 0) return accounts.length === 0 ? 'COMPLETE' : 'NONE';
  const failed = relevant.filter((a) => a.status === 'DOWNLOAD_FAILED').length;
  if (failed === 0) return 'COMPLETE';
  return failed === relevant.length ? 'NONE' : 'PARTIAL';
}
