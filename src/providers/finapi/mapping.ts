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
import {
  FinapiAccountStatus,
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

function toIso(value: string): string {
  return new Date(Date.parse(value)).toISOString();
}

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
    ...(expiresAt ? { expiresAt: toIso(expiresAt) } : {}),
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

export function connectionEvent(connection: FinapiBankConnection): FinapiTaskEvent {
  return {
    type: 'CONNECTION.OBSERVED',
    updateStatus: known(FinapiUpdateStatus, 'bank connection updateStatus', connection.updateStatus),
    categorizationStatus: known(FinapiCategorizationStatus, 'bank connection categorizationStatus', connection.categorizationStatus),
  };
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
    return {
      accountId: String(account.id),
      status: known(FinapiAccountStatus, 'account status', account.status),
      isNew: account.isNew,
      kind: account.accountType === 'Security' ? 'PORTFOLIO' : 'CASH',
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
