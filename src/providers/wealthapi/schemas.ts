/**
 * zod schemas of the wealthAPI-style background update endpoints (seed 000), camelCase as wealthAPI sends them.
 *
 * Enum-like fields (process status, banking interface, account type, item status) are parsed as plain strings:
 * a value wealthAPI adds later must reach the mapping, which rejects it with UnknownProviderStatusError (the
 * process status, the item status) instead of a generic schema error, and never maps it to success.
 * `latestUpdateProcess` and the process `result` are sandbox extensions (see src/sandbox/wealthapi/).
 */
import { z } from 'zod';
import { parseProviderTime } from '../time.js';

const nonEmpty = z.string().min(1);
/** Timestamps without an offset are read as UTC (parseProviderTime), never in the host's zone. */
const timestamp = z.string().refine((value) => parseProviderTime(value) !== null, { message: 'Invalid timestamp' });

export const WealthProcessStatusEnum = z.enum(['PENDING', 'RUNNING', 'SUCCESS', 'FAILED']);
export const WealthItemStatus = z.enum(['UPDATED', 'FAILED']);

// ---- requests ------------------------------------------------------------------------------------------

export const WealthCreateConnectionRequest = z.object({
  name: z.string().min(1).optional(),
  credentials: z.record(z.string(), z.string()).optional(),
  /** Sandbox extension: scripted scenario name. */
  scenario: z.string().min(1).optional(),
});
export type WealthCreateConnectionRequest = z.infer<typeof WealthCreateConnectionRequest>;

/** PUT .../update: without a bankingInterface every interface of the connection is updated. */
export const WealthUpdateRequest = z.object({ bankingInterface: nonEmpty.optional() });
export type WealthUpdateRequest = z.infer<typeof WealthUpdateRequest>;

// ---- responses -----------------------------------------------------------------------------------------

export const WealthManualSyncAccount = z.object({
  id: nonEmpty,
  bankConnectionId: z.union([nonEmpty, z.number().int()]).transform(String),
  accountType: z.string().nullish(),
  manualSyncRequired: z.boolean(),
});
export const WealthManualSyncRequired = z.object({ accounts: z.array(WealthManualSyncAccount) });
export type WealthManualSyncRequired = z.infer<typeof WealthManualSyncRequired>;

export const WealthBankConnection = z.object({
  id: z.union([nonEmpty, z.number().int()]).transform(String),
  name: z.string().nullish(),
  interfaces: z.array(z.object({ bankingInterface: nonEmpty, lastUpdate: timestamp.nullish() })),
  credentialsStored: z.boolean(),
  /** Last successful update: the consent is ongoing while it is less than three months away. */
  lastUpdate: timestamp.nullable(),
  /** Sandbox extension: the newest update process of this connection. */
  latestUpdateProcess: z.object({ processId: nonEmpty, status: nonEmpty, createdAt: timestamp }).nullish(),
});
export type WealthBankConnection = z.infer<typeof WealthBankConnection>;

export const WealthUpdateStarted = z.object({ processId: nonEmpty });
export type WealthUpdateStarted = z.infer<typeof WealthUpdateStarted>;

export const WealthSynchronizationError = z.object({
  code: nonEmpty,
  message: z.string().nullish(),
  bankingInterface: z.string().nullish(),
});
export type WealthSynchronizationError = z.infer<typeof WealthSynchronizationError>;

export const WealthAccountResult = z.object({
  accountId: nonEmpty,
  accountType: z.string().nullish(),
  status: nonEmpty,
  cashTransactionsAdded: z.number().int().nonnegative(),
  balanceUpdated: z.boolean().nullish(),
});
export const WealthPortfolioResult = z.object({
  portfolioId: nonEmpty,
  status: nonEmpty,
  bookingsAdded: z.number().int().nonnegative(),
  securitiesUpdated: z.boolean().nullish(),
});
export type WealthAccountResult = z.infer<typeof WealthAccountResult>;
export type WealthPortfolioResult = z.infer<typeof WealthPortfolioResult>;

export const WealthUpdateProcess = z.object({
  processId: nonEmpty,
  bankConnectionId: z.union([nonEmpty, z.number().int()]).transform(String).optional(),
  status: nonEmpty,
  bankingInterfaces: z.array(z.string()).nullish(),
  createdAt: timestamp.nullish(),
  updatedAt: timestamp.nullish(),
  synchronizationError: WealthSynchronizationError.nullish(),
  result: z.object({ accounts: z.array(WealthAccountResult), portfolios: z.array(WealthPortfolioResult) }).nullish(),
});
export type WealthUpdateProcess = z.infer<typeof WealthUpdateProcess>;

export const WealthErrorResponse = z.object({
  error: z.object({ code: z.union([z.string(), z.number()]), message: z.string().optional() }),
});
