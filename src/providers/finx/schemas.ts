/**
 * zod schemas of the finX API v2.11 synchronization endpoints (requests, responses, webhook bodies).
 *
 * Enum-like fields (sync status, challenge type, account status) are parsed as plain strings: a value
 * finX adds later must reach the mapping, which rejects it with UnknownProviderStatusError instead of a
 * generic schema error (and never maps it to success). Known values are listed in the `*_VALUES` enums.
 */
import { z } from 'zod';
import { parseProviderTime } from '../time.js';

const nonEmpty = z.string().min(1);
/** ISO 8601 timestamp as finX sends it; offsets allowed, normalised to UTC by the mapping. */
/** Timestamps without an offset are read as UTC (parseProviderTime), never in the host's zone. */
const timestamp = z.string().refine((value) => parseProviderTime(value) !== null, { message: 'Invalid timestamp' });

export const FinxSyncStatus = z.enum(['QUEUED', 'RUNNING', 'AWAIT_AUTH', 'COMPLETED', 'FAILED']);
export type FinxSyncStatus = z.infer<typeof FinxSyncStatus>;
export const FinxChallengeType = z.enum(['REDIRECT', 'EMBEDDED', 'DECOUPLED']);
export type FinxChallengeType = z.infer<typeof FinxChallengeType>;
export const FinxAccountStatus = z.enum(['UPDATED', 'DOWNLOAD_FAILED', 'NEW']);
export type FinxAccountStatus = z.infer<typeof FinxAccountStatus>;
export const FinxScope = z.enum(['TRANSACTIONS', 'ACCOUNTS']);
export type FinxScope = z.infer<typeof FinxScope>;

// ---- requests ------------------------------------------------------------------------------------------

export const FinxCreateAccessRequest = z.object({
  provider_id: nonEmpty,
  access_method_id: nonEmpty,
  credentials: z.record(z.string(), z.string()),
  /** Sandbox extension: scripted scenario name. */
  scenario: z.string().min(1).optional(),
  /** Sandbox extension: challenge deadline for this access. */
  challenge_ttl_ms: z.number().int().positive().optional(),
});
export type FinxCreateAccessRequest = z.infer<typeof FinxCreateAccessRequest>;

export const FinxTriggerRequest = z.object({ scope: FinxScope.optional() });
export type FinxTriggerRequest = z.infer<typeof FinxTriggerRequest>;

export const FinxAnswerRequest = z.object({ response: z.string().min(1) });
export type FinxAnswerRequest = z.infer<typeof FinxAnswerRequest>;

// ---- responses -----------------------------------------------------------------------------------------

export const FinxAccess = z.object({
  id: nonEmpty,
  provider_id: nonEmpty,
  access_method_id: nonEmpty,
  created_at: timestamp,
});
export type FinxAccess = z.infer<typeof FinxAccess>;

export const FinxChallenge = z.object({
  id: nonEmpty,
  type: nonEmpty,
  message: z.string().nullish(),
  redirect_url: z.string().nullish(),
  expires_at: timestamp,
  /** Sandbox/finX: set when the previous answer was rejected (wrong TAN) and the user is asked again. */
  retry: z.boolean().nullish(),
});
export type FinxChallenge = z.infer<typeof FinxChallenge>;

export const FinxSyncErrorBody = z.object({
  code: z.union([z.number(), z.string()]),
  message: z.string(),
  data: z.record(z.string(), z.unknown()).nullish(),
});
export type FinxSyncErrorBody = z.infer<typeof FinxSyncErrorBody>;

/** `error.data` of an access upgrade (40001/40002/40003), seed 002 "Access upgrades". */
export const FinxUpgradeData = z.object({
  access_method_id: z.string().min(1).optional(),
  accounts: z.array(
    z.object({
      account_id: nonEmpty,
      access_id: z.string().min(1).nullable(),
      supported: z.boolean(),
    }),
  ),
});
export type FinxUpgradeData = z.infer<typeof FinxUpgradeData>;

export const FinxSyncAccount = z.object({
  id: nonEmpty,
  status: nonEmpty,
  transactions_added: z.number().int().nonnegative(),
});
export type FinxSyncAccount = z.infer<typeof FinxSyncAccount>;

export const FinxSync = z.object({
  id: nonEmpty,
  access_id: nonEmpty,
  scope: nonEmpty,
  status: nonEmpty,
  created_at: timestamp,
  updated_at: timestamp,
  challenge: FinxChallenge.nullable(),
  error: FinxSyncErrorBody.nullable(),
  accounts: z.array(FinxSyncAccount).nullable(),
  /** Sandbox extension: the Idempotency-Key that created this sync. */
  idempotency_key: z.string().nullish(),
});
export type FinxSync = z.infer<typeof FinxSync>;

export const FinxSyncList = z.object({ syncs: z.array(FinxSync) });
export type FinxSyncList = z.infer<typeof FinxSyncList>;

/** Body of a finX error response (4xx/5xx). */
export const FinxErrorResponse = z.object({
  error: z.object({ code: z.union([z.string(), z.number()]), message: z.string().optional() }),
});
export type FinxErrorResponse = z.infer<typeof FinxErrorResponse>;

// ---- webhooks ------------------------------------------------------------------------------------------

export const FinxWebhook = z.object({
  event: z.literal('sync.updated'),
  sync: FinxSync,
});
export type FinxWebhook = z.infer<typeof FinxWebhook>;
