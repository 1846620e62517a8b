/**
 * finAPI bodies -> finapiTask machine events -> canonical Observation.
 *
 * Every enum is checked here: an unknown task, web form, account, update or categorization status throws
 * UnknownProviderStatusError (never progress, never success). A documented status without the data it implies
 * (WEB_FORM_REQUIRED without a web form) throws InvalidProviderResponseError. Readings are replayed on a fresh
 * finapiTask snapshot (pure `transition()`), so a poll or a callback yields an Observation ranked with the
 * machine's `progress`; the adapter keeps no state between calls.
 */
import { initialTransition, transition } from 'xstate';
import { Observation } from '../../../machines/canonical.js';
import {
  finapiObservation,
  finapiTaskMachine,
  type FinapiAccountReading,
  type FinapiTaskEvent,
  type FinapiTaskInput,
  type FinapiTaskSnapshot,
  type FinapiWebFormInfo as MachineWebFormInfo,
} from '../../../machines/finapiTask.js';
import { InvalidProviderResponseError, UnknownProviderStatusError, zodIssues } from '../errors.js';
import { FINAPI } from './client.js';
import { parseFinapiTime, finapiTimeToIso } from './time.js';
import {
  FinapiAccountStatus,
  FinapiBankingInterface,
  FinapiUpdateResultStatus,
  FinapiV1AccountType,
  type FinapiConnectionInterface,
  type FinapiUpdateResult,
  FinapiCategorizationStatus,
  FinapiTaskStatus,
  FinapiUpdateStatus,
  FinapiWebFormStatus,
  type FinapiAccount,
  type FinapiBankConnection,
  type FinapiTask,
  type FinapiTaskCallback,
  type FinapiWebForm,
  type FinapiWebFormInfo,
} from './schemas.js';


function invalid(operation: string, issue: string): InvalidProviderResponseError {
  return new InvalidProviderResponseError(FINAPI, operation, [issue]);
}

function known<T extends string>(schema: { safeParse(value: unknown): { success: true; data: T } | { success: false } }, field: string, value: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new UnknownProviderStatusError(FINAPI, field, value);
  return parsed.data;
}

function webFormInfo(info: FinapiWebFormInfo, expiresAt?: string): MachineWebFormInfo {
  return {
    id: info.id,
    url: info.url,
    status: known(FinapiWebFormStatus, 'web form status', info.status),
    ...(expiresAt ? { expiresAt: finapiTimeToIso(expiresAt) } : {}),
  };
}

/** A task read through the API (POST response, GET, list): it carries `payload.errorCode` (possibly null). */
export function taskEvent(task: FinapiTask, operation: string): FinapiTaskEvent {
  const status = known(FinapiTaskStatus, 'task status', task.status);
  const webForm = task.payload.webForm ? webFormInfo(task.payload.webForm) : null;
  if (status === 'WEB_FORM_REQUIRED' && !webForm) throw invalid(operation, 'payload.webForm: required when status is WEB_FORM_REQUIRED');
  return { type: 'TASK.OBSERVED', status, webForm, errorCode: task.payload.errorCode ?? null };
}

/** A callback `{ taskId, status, webForm }`: it never carries an error code. */
export function callbackEvent(callback: FinapiTaskCallback): FinapiTaskEvent {
  const status = known(FinapiTaskStatus, 'task status', callback.status);
  const webForm = callback.webForm ? webFormInfo(callback.webForm) : null;
  if (status === 'WEB_FORM_REQUIRED' && !webForm) throw invalid('callback', 'webForm: required when status is WEB_FORM_REQUIRED');
  return { type: 'TASK.OBSERVED', status, webForm };
}

export function webFormEvent(webForm: FinapiWebForm): FinapiTaskEvent {
  return {
    type: 'WEB_FORM.OBSERVED',
    webForm: webFormInfo(webForm, webForm.expiresAt),
    errorCode: webForm.payload?.errorCode ?? null,
  };
}

/** The more recent of an interface's manual and automatic update results (timestamps in German local time). */
function latestUpdate(face: FinapiConnectionInterface): FinapiUpdateResult | null {
  const results = [face.lastManualUpdate, face.lastAutoUpdate].filter((r): r is FinapiUpdateResult => r !== null && r !== undefined);
  return results.sort((a, b) => (parseFinapiTime(b.timestamp) ?? 0) - (parseFinapiTime(a.timestamp) ?? 0))[0] ?? null;
}

export function connectionEvent(connection: FinapiBankConnection): FinapiTaskEvent {
  const interfaces = connection.interfaces ?? null;
  const needUser =
    interfaces === null
      ? undefined
      : interfaces.some((face) => {
          known(FinapiBankingInterface, 'bank connection interface', face.interface);
          const latest = latestUpdate(face);
          const result = latest ? known(FinapiUpdateResultStatus, 'interface update result', latest.result) : null;
          return face.userActionRequired === true || result === 'BANK_SERVER_REJECTION';
        });
  return {
    type: 'CONNECTION.OBSERVED',
    updateStatus: known(FinapiUpdateStatus, 'bank connection updateStatus', connection.updateStatus),
    categorizationStatus: known(FinapiCategorizationStatus, 'bank connection categorizationStatus', connection.categorizationStatus),
    ...(needUser !== undefined ? { interfacesNeedUser: needUser } : {}),
  };
}

/**
 * One account's status over its interfaces (finAPI updates every connected interface; the top-level
 * Account.status is deprecated): still downloading on any interface wins, then the best result any interface
 * reached (UPDATED > UPDATED_FIXED > DOWNLOAD_FAILED > DEPRECATED). An account listing no interface falls back to
 * the deprecated top-level status.
 */
const ACCOUNT_STATUS_RANK: readonly FinapiAccountReading['status'][] = ['DOWNLOAD_IN_PROGRESS', 'UPDATED', 'UPDATED_FIXED', 'DOWNLOAD_FAILED', 'DEPRECATED'];
function accountStatus(account: FinapiAccount, index: number): FinapiAccountReading['status'] {
  const faces = account.interfaces ?? [];
  if (faces.length === 0) {
    if (account.status === null || account.status === undefined) {
      throw invalid('getAccounts', `accounts: account ${index + 1} has neither interfaces nor a status`);
    }
    return known(FinapiAccountStatus, 'account status', account.status);
  }
  const statuses = faces.map((face) => {
    known(FinapiBankingInterface, 'account interface', face.interface);
    return known(FinapiAccountStatus, 'account interface status', face.status);
  });
  return ACCOUNT_STATUS_RANK.find((status) => statuses.includes(status))!;
}

/** The connection's accounts, in `accountIds` order; every id must be answered, with this connection's id. */
export function accountsEvent(accounts: readonly FinapiAccount[], connection: FinapiBankConnection): FinapiTaskEvent {
  const byId = new Map(accounts.map((a) => [a.id, a]));
  const readings: FinapiAccountReading[] = connection.accountIds.map((id, index) => {
    const account = byId.get(id);
    if (!account) throw invalid('getAccounts', `accounts: account ${index + 1} of the bank connection is missing`);
    if (account.bankConnectionId !== connection.id) {
      throw invalid('getAccounts', 'accounts.bankConnectionId: does not match the bank connection');
    }
    if (account.accountType === null || account.accountType === undefined) {
      throw invalid('getAccounts', `accounts: account ${index + 1} has no accountType`);
    }
    const type = known(FinapiV1AccountType, 'account type', account.accountType);
    return {
      accountId: String(account.id),
      status: accountStatus(account, index),
      isNew: account.isNew,
      kind: type === 'Security' ? 'PORTFOLIO' : 'CASH',
    };
  });
  return { type: 'ACCOUNTS.OBSERVED', accounts: readings };
}

/** One reading of a finAPI task's lifecycle, built from the events of one poll (or one callback). */
export class FinapiReading {
  private current: FinapiTaskSnapshot;

  constructor(input: FinapiTaskInput = {}) {
    [this.current] = initialTransition(finapiTaskMachine, input);
  }

  apply(event: FinapiTaskEvent): this {
    [this.current] = transition(finapiTaskMachine, this.current, event);
    return this;
  }

  get snapshot(): FinapiTaskSnapshot {
    return this.current;
  }

  /**
   * Waiting for the user: the web form's own reading tells whether it was opened, completed, expired... It is
   * also the only reading with the errorCode of a web form that ended COMPLETED_WITH_ERROR.
   */
  get needsWebForm(): boolean {
    const s = this.current;
    return s.matches('WEB_FORM_REQUIRED') || (s.matches('AWAITING_ERROR_CODE') && s.context.errorSource === 'WEB_FORM');
  }

  get needsConnection(): boolean {
    return this.current.matches('POST_PROCESSING');
  }

  /** The connection is READY (account statuses are final, or still downloading): read the accounts. */
  get needsAccounts(): boolean {
    return this.current.matches({ POST_PROCESSING: 'READY' });
  }

  /** The canonical observation; `operation` names the call it came from (for error messages). */
  observation(operation: string, now: number, webFormTtlMs?: number): Observation {
    const observation = finapiObservation(this.current, { now, ...(webFormTtlMs !== undefined ? { webFormTtlMs } : {}) });
    // Belt and braces: what leaves the adapter is a valid canonical observation.
    const checked = Observation.safeParse(observation);
    if (!checked.success) throw new InvalidProviderResponseError(FINAPI, operation, zodIssues(checked.error));
    return checked.data;
  }
}
