/**
 * zod schemas of the xs2a.api bank connection endpoints (seed 003), snake_case as xs2a sends them.
 *
 * Enum-like fields (sync_mode, status, last_sync.state, account status) are parsed as plain strings: a value
 * xs2a adds later must reach the mapping, which rejects it with UnknownProviderStatusError instead of a
 * generic schema error (and never maps it to success). Known values are listed in the `*_VALUES` enums.
 * `status` and `last_sync` are sandbox extensions (see src/sandbox/xs2a/); both are optional here.
 */
import { z } from 'zod';
import { parseProviderTime } from '../time.js';

const nonEmpty = z.string().min(1);
/** Timestamps without an offset are read as UTC (parseProviderTime), never in the host's zone. */
const timestamp = z.string().refine((value) => parseProviderTime(value) !== null, { message: 'Invalid timestamp' });
const calendarDate = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, { message: 'Invalid date (YYYY-MM-DD)' });

export const Xs2aSyncMode = z.enum(['full', 'shared', 'none']);
export type Xs2aSyncMode = z.infer<typeof Xs2aSyncMode>;
export const Xs2aConnectionStatus = z.enum(['READY', 'DISABLED']);
export type Xs2aConnectionStatus = z.infer<typeof Xs2aConnectionStatus>;
export const Xs2aAttemptState = z.enum(['QUEUED', 'RUNNING', 'WAITING_FOR_USER', 'SUCCEEDED', 'FAILED']);
export type Xs2aAttemptState = z.infer<typeof Xs2aAttemptState>;
export const Xs2aAccountStatus = z.enum(['UPDATED', 'FAILED']);
export type Xs2aAccountStatus = z.infer<typeof Xs2aAccountStatus>;
export const Xs2aEventType = z.enum(['bank_connection.sync.started', 'bank_connection.sync.succeeded', 'bank_connection.sync.failed']);
export type Xs2aEventType = z.infer<typeof Xs2aEventType>;

// ---- requests ------------------------------------------------------------------------------------------

export const Xs2aCreateConnectionRequest = z.object({
  bank_name: z.string().min(1).optional(),
  bic: z.string().min(1).optional(),
  country_id: z.string().length(2).optional(),
  sync_mode: Xs2aSyncMode.optional(),
  credentials: z.record(z.string(), z.string()).optional(),
  /** Sandbox extension: scripted scenario name. */
  scenario: z.string().min(1).optional(),
});
export type Xs2aCreateConnectionRequest = z.infer<typeof Xs2aCreateConnectionRequest>;

/** POST .../sync. `force` is only ever sent on explicit request. */
export const Xs2aSyncRequest = z.object({ force: z.literal(true).optional() });
export type Xs2aSyncRequest = z.infer<typeof Xs2aSyncRequest>;

// ---- responses -----------------------------------------------------------------------------------------

export const Xs2aSyncAccount = z.object({
  id: nonEmpty,
  status: nonEmpty,
  turnovers_added: z.number().int().nonnegative(),
});
export type Xs2aSyncAccount = z.infer<typeof Xs2aSyncAccount>;

/** Sandbox extension: the newest sync attempt of the connection. */
export const Xs2aLastSync = z.object({
  attempt: z.number().int().positive(),
  state: nonEmpty,
  origin: z.string().nullish(),
  forced: z.boolean().nullish(),
  started_at: timestamp,
  finished_at: timestamp.nullish(),
  wizard_session_key: z.string().min(1).nullish(),
  wizard_expires_at: timestamp.nullish(),
  wizard_completed: z.boolean().nullish(),
  error_code: z.string().min(1).nullish(),
  accounts: z.array(Xs2aSyncAccount).nullish(),
});
export type Xs2aLastSync = z.infer<typeof Xs2aLastSync>;

export const Xs2aBankConnection = z.object({
  id: nonEmpty,
  transaction: z.string().nullish(),
  bic: z.string().nullish(),
  bank_name: z.string(),
  country_id: z.string().nullish(),
  sync_mode: nonEmpty,
  sync_active: z.boolean(),
  sync_message: z.string().nullable(),
  sync_fail_counter: z.number().int().nonnegative(),
  last_synced: timestamp.nullable(),
  consent_valid_until: calendarDate.nullish(),
  testmode: z.boolean().nullish(),
  created_at: timestamp.nullish(),
  object: z.string().nullish(),
  status: nonEmpty.optional(),
  last_sync: Xs2aLastSync.nullish(),
});
export type Xs2aBankConnection = z.infer<typeof Xs2aBankConnection>;

export const Xs2aBankConnectionList = z.object({
  total: z.number().int().nonnegative(),
  per_page: z.number().int().positive(),
  current_page: z.number().int().positive(),
  last_page: z.number().int().positive(),
  next_page_url: z.string().nullable(),
  prev_page_url: z.string().nullable(),
  from: z.number().int().nullable(),
  to: z.number().int().nullable(),
  data: z.array(Xs2aBankConnection),
});
export type Xs2aBankConnectionList = z.infer<typeof Xs2aBankConnectionList>;

/** 202 answer of sync and reset: the user must complete the wizard. */
export const Xs2aWizardSession = z.object({
  wizard_session_key: nonEmpty,
  id: z.string().nullish(),
  transaction: z.string().nullish(),
  /** Sandbox extension: deadline of the wizard session. */
  expires_at: timestamp.nullish(),
});
export type Xs2aWizardSession = z.infer<typeof Xs2aWizardSession>;

export const Xs2aErrorResponse = z.object({
  error: z.object({ code: z.union([z.string(), z.number()]), message: z.string().optional() }),
});

// ---- webhooks ------------------------------------------------------------------------------------------

/** A bank connection event: the connection as it was when the event happened. */
export const Xs2aWebhook = z.object({
  id: z.string().min(1).optional(),
  event: nonEmpty,
  created_at: timestamp.optional(),
  data: Xs2aBankConnection,
});
export type Xs2aWebhook = z.infer<typeof Xs2aWebhook>;
