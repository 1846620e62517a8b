/**
 * wealthAPI readings -> canonical, through the pure wealthUpdate machine.
 *
 * Preflight: GET /v1/accounts/manualSyncRequired + GET /v2/bankConnections/{id} become the machine's preflight
 * facts; its verdict (Refused with reasons | Busy | Ready) decides whether an update may be requested.
 * Update process: its status (+ synchronizationError) is fed to the machine, whose state meta gives the canonical
 * status and the `progress` rank; the process `result` (a sandbox extension, optional) gives per-account outcomes (cash accounts: kind CASH,
 * portfolios: kind PORTFOLIO).
 *
 * Unknown process or item statuses throw UnknownProviderStatusError (never progress, never success).
 */
import { Observation, computeOutcome, type AccountOutcome, type SyncError } from '../../../machines/canonical.js';
import {
  WEALTH_CONSENT_MAX_AGE_DAYS,
  WEALTH_USER_ACTION_CODES,
  wealthProcessReading,
  type WealthPreflightFacts,
  type WealthRefusalReason,
} from '../../../machines/wealthUpdate.js';
import { InvalidProviderResponseError, ProviderError, UnknownProviderStatusError, zodIssues } from '../errors.js';
import {
  WealthItemStatus,
  WealthProcessStatusEnum,
  type WealthAccountResult,
  type WealthBankConnection,
  type WealthManualSyncRequired,
  type WealthPortfolioResult,
  type WealthSynchronizationError,
  type WealthUpdateProcess,
} from './schemas.js';
import { parseProviderTime } from '../time.js';

const WEALTHAPI = 'wealthapi';

function clip(text: string, max = 160): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

const TERMINAL: ReadonlySet<string> = new Set(['SUCCESS', 'FAILED']);
export function isTerminalProcessStatus(status: string): boolean {
  return TERMINAL.has(status);
}

/** The machine's preflight facts for one connection. */
export function preflightFacts(accounts: WealthManualSyncRequired, connection: WealthBankConnection, now: number): WealthPreflightFacts {
  const own = accounts.accounts.filter((a) => a.bankConnectionId === connection.id);
  const latest = connection.latestUpdateProcess;
  return {
    manualSyncRequired: own.some((a) => a.manualSyncRequired),
    bankingInterfaces: connection.interfaces.map((i) => i.bankingInterface),
    credentialsStored: connection.credentialsStored,
    lastUpdateAt: connection.lastUpdate === null ? null : parseProviderTime(connection.lastUpdate),
    updateRunning: latest !== null && latest !== undefined && !isTerminalProcessStatus(latest.status),
    now,
  };
}

const REASON_TEXT: Record<WealthRefusalReason, (c: WealthBankConnection) => string> = {
  NO_MANUAL_SYNC_REQUIRED: () => 'manualSyncRequired is false for every account of the connection (nothing to update, or the update needs the user)',
  WEB_SCRAPING_INTERFACE: () => 'the connection includes a web-scraping interface',
  CREDENTIALS_NOT_STORED: () => 'the user did not store the credentials',
  CONSENT_EXPIRED: (c) =>
    `the consent is not ongoing: the last update (${c.lastUpdate ?? 'never'}) is ${WEALTH_CONSENT_MAX_AGE_DAYS} days or more away`,
};

/** The preflight refused: thrown by trigger before any update is requested. Never retryable. */
export function refusalError(refusal: 'PREFLIGHT_REFUSED' | 'CONSENT_EXPIRED', reasons: readonly WealthRefusalReason[], connection: WealthBankConnection): ProviderError {
  const why = reasons.map((r) => REASON_TEXT[r](connection)).join('; ');
  const hint = refusal === 'CONSENT_EXPIRED' ? 'the user must renew the consent through the TPP web form' : 'use the TPP web form with the user present';
  return new ProviderError(`${WEALTHAPI} preflight: no background update possible: ${why}; ${hint}`, {
    code: refusal,
    retryable: false,
    userActionRequired: refusal === 'CONSENT_EXPIRED' || reasons.some((r) => r !== 'NO_MANUAL_SYNC_REQUIRED'),
    providerCode: reasons[0] ?? refusal,
  });
}

export function busyError(connection: WealthBankConnection): ProviderError {
  const id = connection.latestUpdateProcess?.processId;
  return new ProviderError(`${WEALTHAPI} preflight: an update of the bank connection is running${id ? ` (process ${id.slice(0, 64)})` : ''}; never two at once`, {
    code: 'PROVIDER_BUSY',
    retryable: true,
    providerCode: 'UPDATE_IN_PROGRESS',
  });
}

const TWO_FACTOR_CODES = new Set(['TWO_FACTOR_REQUIRED', 'TWO_FACTOR_FAILED', 'SCA_REQUIRED', 'CHALLENGE_REQUIRED', 'USER_INTERACTION_REQUIRED']);
const TRANSIENT_CODES = new Set(['BANK_UNAVAILABLE', 'BANK_TIMEOUT', 'BANK_MAINTENANCE', 'TEMPORARILY_UNAVAILABLE', 'INTERNAL_ERROR', 'TIMEOUT']);

/** synchronizationError -> canonical error. 2FA and credential problems are never retryable. */
export function mapSynchronizationError(error: WealthSynchronizationError | null | undefined): SyncError {
  if (!error) {
    return { code: 'PROVIDER_ERROR', retryable: false, userActionRequired: false, message: 'update FAILED without a synchronizationError' };
  }
  const providerCode = error.code;
  const code = providerCode.toUpperCase();
  const what = clip(error.message || providerCode);
  if (TWO_FACTOR_CODES.has(code)) {
    return {
      code: 'SCA_FAILED',
      retryable: false,
      userActionRequired: true,
      message: `${what}; the bank wants the user (2FA): update through the TPP web form, never automatically again`,
      providerCode,
    };
  }
  if (WEALTH_USER_ACTION_CODES.has(code)) {
    return { code: 'INVALID_CREDENTIALS', retryable: false, userActionRequired: true, message: `${what}; the user must update the credentials`, providerCode };
  }
  const retryable = TRANSIENT_CODES.has(code);
  return { code: code.startsWith('BANK_') ? 'BANK_REJECTED' : 'PROVIDER_ERROR', retryable, userActionRequired: false, message: what, providerCode };
}

function itemStatus(status: string, field: string): AccountOutcome['status'] {
  const parsed = WealthItemStatus.safeParse(status);
  if (!parsed.success) throw new UnknownProviderStatusError(WEALTHAPI, field, status);
  return parsed.data === 'UPDATED' ? 'UPDATED' : 'DOWNLOAD_FAILED';
}

export function mapAccount(a: WealthAccountResult): AccountOutcome {
  return { accountId: a.accountId, status: itemStatus(a.status, 'account status'), kind: 'CASH', transactionsAdded: a.cashTransactionsAdded };
}
export function mapPortfolio(p: WealthPortfolioResult): AccountOutcome {
  return { accountId: p.portfolioId, status: itemStatus(p.status, 'portfolio status'), kind: 'PORTFOLIO', transactionsAdded: p.bookingsAdded };
}

/** One update process reading -> canonical observation. */
export function mapProcess(process: WealthUpdateProcess, operation: string): Observation {
  const status = WealthProcessStatusEnum.safeParse(process.status);
  if (!status.success) throw new UnknownProviderStatusError(WEALTHAPI, 'update process status', process.status);
  const reading = wealthProcessReading(process.processId, status.data, process.synchronizationError ?? null);
  let observation: Observation;
  switch (reading.canonical) {
    case 'RUNNING':
      observation = { status: 'RUNNING', progress: reading.progress };
      break;
    case 'COMPLETED': {
      // Seed 000 documents no per-item result: SUCCESS means every account and portfolio of the connection was
      // updated. Per-item results, when a reading carries them (the sandbox's `result`), refine that.
      const accounts = process.result ? [...process.result.accounts.map(mapAccount), ...process.result.portfolios.map(mapPortfolio)] : [];
      observation = { status: 'COMPLETED', result: { outcome: computeOutcome(accounts), accounts }, progress: reading.progress };
      break;
    }
    case 'FAILED':
      observation = { status: 'FAILED', error: mapSynchronizationError(process.synchronizationError), progress: reading.progress };
      break;
  }
  const checked = Observation.safeParse(observation);
  if (!checked.success) throw new InvalidProviderResponseError(WEALTHAPI, operation, zodIssues(checked.error));
  return checked.data;
}
