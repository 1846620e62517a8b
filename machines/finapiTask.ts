/**
 * The finAPI background update (seed 001, finAPI Access v2 / Web Form 2.0 tasks) and its post-processing
 * (seed 004, finAPI Access v1 import/update), as a pure statechart:
 *
 *   NOT_YET_STARTED -> IN_PROGRESS -> [WEB_FORM_REQUIRED: NOT_YET_OPENED -> IN_PROGRESS]
 *     -> COMPLETED (task) or web form COMPLETED -> POST_PROCESSING: connection updateStatus IN_PROGRESS -> READY
 *        (accounts evaluated; DOWNLOAD_IN_PROGRESS waits; categorizationStatus PENDING -> IN_PROGRESS -> READY)
 *     -> DONE
 *   failures: COMPLETED_WITH_ERROR (task or web form), EXPIRED / ABORTED (web form). A COMPLETED_WITH_ERROR
 *   learnt from a reading without its error code (a callback, or a task payload for its web form) waits in
 *   AWAITING_ERROR_CODE until the task's (or the web form's) own reading brings the code.
 *
 * Readings come in as events (`TASK.OBSERVED`, `WEB_FORM.OBSERVED`, `CONNECTION.OBSERVED`, `ACCOUNTS.OBSERVED`),
 * from polls and from callbacks alike. Every transition moves forward: a duplicate or an older reading (a late
 * callback, a stale task payload) matches no transition and is ignored. The adapter validates enums before it
 * builds an event (unknown values never reach this machine), replays one poll's readings on a fresh snapshot
 * with `transition()`, and turns the snapshot into a canonical Observation with `finapiObservation()`; its
 * `progress` rank is monotonic along the lifecycle, so the canonical machine ignores late callbacks.
 *
 * Pure: no I/O, no clock (the default web form deadline is computed from a `now` the caller passes).
 */
import { assign, setup, type SnapshotFrom } from 'xstate';
import {
  computeOutcome,
  type AccountOutcome,
  type Challenge,
  type Observation,
  type SyncError,
  type SyncResult,
} from './canonical.js';

// ---------------------------------------------------------------------------------------------------------
// finAPI vocabulary (documented enums; the adapter rejects anything else before it reaches the machine)
// ---------------------------------------------------------------------------------------------------------

export const FINAPI_TASK_STATUSES = ['NOT_YET_STARTED', 'IN_PROGRESS', 'WEB_FORM_REQUIRED', 'COMPLETED', 'COMPLETED_WITH_ERROR'] as const;
export type FinapiTaskStatus = (typeof FINAPI_TASK_STATUSES)[number];

export const FINAPI_WEB_FORM_STATUSES = ['NOT_YET_OPENED', 'IN_PROGRESS', 'COMPLETED', 'COMPLETED_WITH_ERROR', 'EXPIRED', 'ABORTED'] as const;
export type FinapiWebFormStatus = (typeof FINAPI_WEB_FORM_STATUSES)[number];

export const FINAPI_UPDATE_STATUSES = ['IN_PROGRESS', 'READY'] as const;
export type FinapiUpdateStatus = (typeof FINAPI_UPDATE_STATUSES)[number];

export const FINAPI_CATEGORIZATION_STATUSES = ['PENDING', 'IN_PROGRESS', 'READY'] as const;
export type FinapiCategorizationStatus = (typeof FINAPI_CATEGORIZATION_STATUSES)[number];

export const FINAPI_ACCOUNT_STATUSES = ['UPDATED', 'UPDATED_FIXED', 'DOWNLOAD_IN_PROGRESS', 'DOWNLOAD_FAILED', 'DEPRECATED'] as const;
export type FinapiAccountStatus = (typeof FINAPI_ACCOUNT_STATUSES)[number];

/** Documented task error codes (TaskPayload.errorCode); finAPI says the list "may be extended" (unknown codes never map to success). */
export const FINAPI_TASK_ERROR_CODES = ['BANK_SERVER_REJECTION', 'INTERNAL_ERROR', 'INVALID_TOKEN', 'UNEXPECTED_ACCESS_RESPONSE'] as const;

/** Documented web form error codes (web form Payload.errorCode, Web Form 2.0); "may be extended" too. */
export const FINAPI_WEB_FORM_ERROR_CODES = [
  'ENTITY_EXISTS',
  'BANK_SERVER_REJECTION',
  'INTERNAL_ERROR',
  'INTERRUPTED',
  'INVALID_TOKEN',
  'MANDATOR_MISCONFIGURATION',
  'NO_ACCOUNTS_FOR_TYPE_LIST',
  'UNDETERMINED_BANK',
  'UNEXPECTED_ACCESS_RESPONSE',
  'UNSUPPORTED_FEATURE',
  'UNSUPPORTED_ORDER',
] as const;

const FINAL_TASK_STATUSES: readonly FinapiTaskStatus[] = ['COMPLETED', 'COMPLETED_WITH_ERROR'];

/** Web Form 2.0: "Web Form URLs are valid for just 20 minutes". Used when a reading carries no `expiresAt`. */
export const FINAPI_WEB_FORM_TTL_MS = 20 * 60_000;

export interface FinapiWebFormInfo {
  id: string;
  url: string;
  status: FinapiWebFormStatus;
  /** ISO 8601 (UTC) deadline, when the reading carries one (GET /api/webForms/{id} does, task payloads do not). */
  expiresAt?: string;
}

export interface FinapiAccountReading {
  accountId: string;
  status: FinapiAccountStatus;
  /** finAPI `isNew`: imported by this (or an earlier, unacknowledged) update. */
  isNew: boolean;
  kind?: AccountOutcome['kind'];
}

export type FinapiTaskEvent =
  /**
   * A task reading (GET /api/tasks/{id}, the POST response, or a callback `{taskId, status, webForm}`).
   * `errorCode` is absent when the reading cannot carry one (callbacks): a COMPLETED_WITH_ERROR without it is
   * finalised but not yet explained (AWAITING_ERROR_CODE, RUNNING) until a read brings the code.
   */
  | { type: 'TASK.OBSERVED'; status: FinapiTaskStatus; webForm: FinapiWebFormInfo | null; errorCode?: string | null }
  | { type: 'WEB_FORM.OBSERVED'; webForm: FinapiWebFormInfo; errorCode?: string | null }
  | {
      type: 'CONNECTION.OBSERVED';
      updateStatus: FinapiUpdateStatus;
      categorizationStatus: FinapiCategorizationStatus;
      /**
       * Some interface of the connection needs the user: `userActionRequired`, or its latest update result
       * (lastManualUpdate / lastAutoUpdate) is BANK_SERVER_REJECTION. Absent: the reading had no interfaces.
       */
      interfacesNeedUser?: boolean;
    }
  | { type: 'ACCOUNTS.OBSERVED'; accounts: FinapiAccountReading[] };

export interface FinapiTaskInput {
  /** Wait for categorizationStatus READY after the download (PFM); default true. */
  awaitCategorization?: boolean;
}

export interface FinapiTaskContext {
  awaitCategorization: boolean;
  webForm: FinapiWebFormInfo | null;
  /** Where a COMPLETED_WITH_ERROR came from. */
  errorSource: 'TASK' | 'WEB_FORM' | null;
  /** finAPI's errorCode (null: finAPI gave none); meaningful in COMPLETED_WITH_ERROR. */
  errorCode: string | null;
  categorizationStatus: FinapiCategorizationStatus | null;
  /** The latest connection reading said an interface needs the user (see CONNECTION.OBSERVED). */
  interfacesNeedUser: boolean;
  result: SyncResult | null;
}

// ---------------------------------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------------------------------

type WebFormGuard = { type: 'webFormIs'; params: { status: FinapiWebFormStatus } };
const webFormIs = (status: FinapiWebFormStatus): WebFormGuard => ({ type: 'webFormIs', params: { status } });
const taskIs = (status: FinapiTaskStatus) => ({ type: 'taskIs', params: { status } }) as const;
const finalTaskWebFormIs = (status: FinapiWebFormStatus) => ({ type: 'finalTaskWebFormIs', params: { status } }) as const;

/** The web form a reading carries: a task in any status may carry it (a final task carries its finished web form). */
function webFormOf(event: FinapiTaskEvent): FinapiWebFormInfo | null {
  if (event.type === 'WEB_FORM.OBSERVED' || event.type === 'TASK.OBSERVED') return event.webForm;
  return null;
}

/** The latest web form reading, keeping a known deadline when a later reading (task payload, callback) has none. */
function mergeWebForm(context: FinapiTaskContext, webForm: FinapiWebFormInfo | null): FinapiWebFormInfo | null {
  if (!webForm) return context.webForm;
  const expiresAt = webForm.expiresAt ?? context.webForm?.expiresAt;
  return { id: webForm.id, url: webForm.url, status: webForm.status, ...(expiresAt ? { expiresAt } : {}) };
}

function outcomeOf(reading: FinapiAccountReading): AccountOutcome {
  // Only UPDATED and DOWNLOAD_FAILED can appear for newly imported accounts (seed 004).
  const status = reading.status === 'UPDATED' && reading.isNew ? 'NEW' : (reading.status as AccountOutcome['status']);
  return { accountId: reading.accountId, status, ...(reading.kind ? { kind: reading.kind } : {}) };
}

/**
 * Readings that end the web form while the task waits for it (a task reading still in WEB_FORM_REQUIRED, or the
 * web form's own reading). Only the web form's own reading (`WEB_FORM.OBSERVED`) carries its errorCode: a task
 * reading saying COMPLETED_WITH_ERROR leaves the failure to be explained by the next web form read. A web form
 * COMPLETED with an errorCode is a failure (the code is "the reason of the web form failure").
 */
const webFormFinishedBy = (source: 'task' | 'webForm') =>
  [
    ...(source === 'webForm'
      ? [{ guard: 'webFormCompletedWithCode', target: '#finapiTask.COMPLETED_WITH_ERROR', actions: 'recordWebFormError' } as const]
      : []),
    { guard: webFormIs('COMPLETED'), target: '#finapiTask.POST_PROCESSING', actions: 'recordWebForm' },
    {
      guard: webFormIs('COMPLETED_WITH_ERROR'),
      target: source === 'webForm' ? '#finapiTask.COMPLETED_WITH_ERROR' : '#finapiTask.AWAITING_ERROR_CODE',
      actions: 'recordWebFormError',
    },
    { guard: webFormIs('EXPIRED'), target: '#finapiTask.EXPIRED', actions: 'recordWebForm' },
    { guard: webFormIs('ABORTED'), target: '#finapiTask.ABORTED', actions: 'recordWebForm' },
  ] as const;
const webFormFinishedByTask = webFormFinishedBy('task');
const webFormFinishedByWebForm = webFormFinishedBy('webForm');
const webFormOpened = {
  guard: webFormIs('IN_PROGRESS'),
  target: '#finapiTask.WEB_FORM_REQUIRED.IN_PROGRESS',
  actions: 'recordWebForm',
} as const;

/**
 * A final task (COMPLETED / COMPLETED_WITH_ERROR) that carries a web form: the web form tells how the user's part
 * ended, whatever the task status says (Web Form 2.0: the final task carries its web form). ABORTED and EXPIRED
 * are the user's, COMPLETED_WITH_ERROR needs the web form's own errorCode, a web form still open under a final
 * task is inconsistent (never success). A web form COMPLETED leaves the decision to the task rules.
 */
const finalTaskWebForm = [
  { guard: finalTaskWebFormIs('ABORTED'), target: '#finapiTask.ABORTED', actions: 'recordWebForm' },
  { guard: finalTaskWebFormIs('EXPIRED'), target: '#finapiTask.EXPIRED', actions: 'recordWebForm' },
  { guard: finalTaskWebFormIs('COMPLETED_WITH_ERROR'), target: '#finapiTask.AWAITING_ERROR_CODE', actions: 'recordWebFormError' },
  { guard: finalTaskWebFormIs('NOT_YET_OPENED'), target: '#finapiTask.INCONSISTENT', actions: 'recordWebForm' },
  { guard: finalTaskWebFormIs('IN_PROGRESS'), target: '#finapiTask.INCONSISTENT', actions: 'recordWebForm' },
] as const;

/** A final task whose web form (if any) completed, or that had none: its status and errorCode decide. */
const finalTask = [
  ...finalTaskWebForm,
  // COMPLETED with an errorCode: the code is "the reason of the task failure", so this is no success.
  { guard: 'taskCompletedWithCode', target: '#finapiTask.COMPLETED_WITH_ERROR', actions: 'recordTaskError' },
  { guard: taskIs('COMPLETED'), target: '#finapiTask.POST_PROCESSING', actions: 'recordWebForm' },
  { guard: 'taskFailedWithCode', target: '#finapiTask.COMPLETED_WITH_ERROR', actions: 'recordTaskError' },
  { guard: taskIs('COMPLETED_WITH_ERROR'), target: '#finapiTask.AWAITING_ERROR_CODE', actions: 'recordTaskError' },
] as const;

/** A task reading before any web form was seen. WEB_FORM_REQUIRED is routed by the web form status it carries. */
const taskAdvanced = [
  ...finalTask,
  { guard: webFormIs('NOT_YET_OPENED'), target: '#finapiTask.WEB_FORM_REQUIRED', actions: 'recordWebForm' },
  webFormOpened,
  ...webFormFinishedByTask,
] as const;

/** Account readings once the connection is READY: still downloading, done, or waiting for categorization. */
const accountsEvaluated = [
  { guard: 'categorizationSettled', target: '#finapiTask.DONE', actions: 'recordResult' },
  {
    guard: 'categorizationInProgress',
    target: '#finapiTask.POST_PROCESSING.READY.CATEGORIZATION.IN_PROGRESS',
    actions: 'recordResult',
  },
  { target: '#finapiTask.POST_PROCESSING.READY.CATEGORIZATION.PENDING', actions: 'recordResult' },
] as const;

export const finapiTaskMachine = setup({
  types: {
    context: {} as FinapiTaskContext,
    events: {} as FinapiTaskEvent,
    input: {} as FinapiTaskInput,
  },
  guards: {
    taskIs: ({ event }, params: { status: FinapiTaskStatus }) => event.type === 'TASK.OBSERVED' && event.status === params.status,
    /** A final task reading carrying this task's web form in `status`. */
    finalTaskWebFormIs: ({ context, event }, params: { status: FinapiWebFormStatus }) =>
      event.type === 'TASK.OBSERVED' &&
      FINAL_TASK_STATUSES.includes(event.status) &&
      event.webForm !== null &&
      event.webForm.status === params.status &&
      (context.webForm === null || context.webForm.id === event.webForm.id),
    taskCompletedWithCode: ({ event }) =>
      event.type === 'TASK.OBSERVED' && event.status === 'COMPLETED' && event.errorCode !== undefined && event.errorCode !== null,
    webFormCompletedWithCode: ({ context, event }) =>
      event.type === 'WEB_FORM.OBSERVED' &&
      event.webForm.status === 'COMPLETED' &&
      event.errorCode !== undefined &&
      event.errorCode !== null &&
      (context.webForm === null || context.webForm.id === event.webForm.id),
    /** A reading of the task's web form in `status` (a different web form than the one recorded is ignored). */
    webFormIs: ({ context, event }, params: { status: FinapiWebFormStatus }) => {
      // A final task's web form is read by finalTaskWebFormIs / the task rules.
      if (event.type === 'TASK.OBSERVED' && FINAL_TASK_STATUSES.includes(event.status)) return false;
      const webForm = webFormOf(event);
      if (!webForm || webForm.status !== params.status) return false;
      return context.webForm === null || context.webForm.id === webForm.id;
    },
    /** A task reading (not a callback) that says COMPLETED_WITH_ERROR: it carries payload.errorCode. */
    taskFailedWithCode: ({ event }) => event.type === 'TASK.OBSERVED' && event.status === 'COMPLETED_WITH_ERROR' && event.errorCode !== undefined,
    /** The reading that explains the failure we are waiting for. */
    explainsFailure: ({ context, event }) =>
      context.errorSource === 'WEB_FORM'
        ? event.type === 'WEB_FORM.OBSERVED' && event.webForm.status === 'COMPLETED_WITH_ERROR' && context.webForm?.id === event.webForm.id
        : event.type === 'TASK.OBSERVED' && event.status === 'COMPLETED_WITH_ERROR' && event.errorCode !== undefined,
    updateReady: ({ event }) => event.type === 'CONNECTION.OBSERVED' && event.updateStatus === 'READY',
    accountsDownloading: ({ event }) =>
      event.type === 'ACCOUNTS.OBSERVED' && event.accounts.some((a) => a.status === 'DOWNLOAD_IN_PROGRESS'),
    categorizationSettled: ({ context }) => !context.awaitCategorization || context.categorizationStatus === 'READY',
    categorizationInProgress: ({ context }) => context.categorizationStatus === 'IN_PROGRESS',
    categorizationReadyObserved: ({ event }) =>
      event.type === 'CONNECTION.OBSERVED' && event.updateStatus === 'READY' && event.categorizationStatus === 'READY',
    categorizationInProgressObserved: ({ event }) =>
      event.type === 'CONNECTION.OBSERVED' && event.updateStatus === 'READY' && event.categorizationStatus === 'IN_PROGRESS',
  },
  actions: {
    recordWebForm: assign({
      webForm: ({ context, event }) => mergeWebForm(context, webFormOf(event)),
    }),
    recordTaskError: assign(({ event }) => ({
      errorSource: 'TASK' as const,
      errorCode: event.type === 'TASK.OBSERVED' ? (event.errorCode ?? null) : null,
    })),
    recordWebFormError: assign(({ context, event }) => {
      // GET /api/webForms/{id} carries the web form's errorCode (possibly null); a task reading or a
      // callback does not, so the failure is not yet explained.
      const code = event.type === 'WEB_FORM.OBSERVED' ? event.errorCode : undefined;
      return { webForm: mergeWebForm(context, webFormOf(event)), errorSource: 'WEB_FORM' as const, errorCode: code ?? null };
    }),
    recordConnection: assign({
      categorizationStatus: ({ context, event }) =>
        event.type === 'CONNECTION.OBSERVED' ? event.categorizationStatus : context.categorizationStatus,
      interfacesNeedUser: ({ context, event }) =>
        event.type === 'CONNECTION.OBSERVED' ? (event.interfacesNeedUser ?? false) : context.interfacesNeedUser,
    }),
    recordResult: assign({
      result: ({ context, event }) => {
        if (event.type !== 'ACCOUNTS.OBSERVED') return context.result;
        const accounts = event.accounts.map(outcomeOf);
        return { outcome: computeOutcome(accounts), accounts };
      },
    }),
  },
}).createMachine({
  id: 'finapiTask',
  context: ({ input }) => ({
    awaitCategorization: input?.awaitCategorization ?? true,
    webForm: null,
    errorSource: null,
    errorCode: null,
    categorizationStatus: null,
    interfacesNeedUser: false,
    result: null,
  }),
  initial: 'NOT_YET_STARTED',
  states: {
    NOT_YET_STARTED: {
      on: {
        'TASK.OBSERVED': [...taskAdvanced, { guard: taskIs('IN_PROGRESS'), target: 'IN_PROGRESS' }],
      },
    },
    IN_PROGRESS: {
      on: { 'TASK.OBSERVED': [...taskAdvanced] },
    },
    /** The update needs the user: redirect them to the web form; from now on the web form tells how it ends. */
    WEB_FORM_REQUIRED: {
      initial: 'NOT_YET_OPENED',
      states: {
        NOT_YET_OPENED: {
          on: {
            'TASK.OBSERVED': [...finalTask, webFormOpened, ...webFormFinishedByTask],
            // The web form's own reading adds what a task payload lacks (its deadline).
            'WEB_FORM.OBSERVED': [webFormOpened, ...webFormFinishedByWebForm, { guard: webFormIs('NOT_YET_OPENED'), actions: 'recordWebForm' }],
          },
        },
        IN_PROGRESS: {
          on: {
            'TASK.OBSERVED': [...finalTask, ...webFormFinishedByTask],
            'WEB_FORM.OBSERVED': [...webFormFinishedByWebForm, { guard: webFormIs('IN_PROGRESS'), actions: 'recordWebForm' }],
          },
        },
      },
    },
    /** The bank update finished at finAPI; account data is still being downloaded and evaluated (seed 004). */
    POST_PROCESSING: {
      initial: 'IN_PROGRESS',
      states: {
        /** Connection updateStatus IN_PROGRESS (or not read yet): balances and transactions may be incomplete. */
        IN_PROGRESS: {
          on: { 'CONNECTION.OBSERVED': { guard: 'updateReady', target: 'READY', actions: 'recordConnection' } },
        },
        /** updateStatus READY: no update running; READY alone is not success, the accounts tell the result. */
        READY: {
          initial: 'EVALUATING',
          on: { 'CONNECTION.OBSERVED': { guard: 'updateReady', actions: 'recordConnection' } },
          states: {
            EVALUATING: {
              on: {
                'ACCOUNTS.OBSERVED': [
                  { guard: 'accountsDownloading', target: 'DOWNLOAD_IN_PROGRESS' },
                  ...accountsEvaluated,
                ],
              },
            },
            /** Some account still reports DOWNLOAD_IN_PROGRESS. */
            DOWNLOAD_IN_PROGRESS: {
              on: {
                'ACCOUNTS.OBSERVED': [{ guard: 'accountsDownloading' }, ...accountsEvaluated],
              },
            },
            /** Accounts evaluated; transactions may still get categories (PFM). */
            CATEGORIZATION: {
              initial: 'PENDING',
              states: {
                PENDING: {
                  on: {
                    'CONNECTION.OBSERVED': [
                      { guard: 'categorizationReadyObserved', target: '#finapiTask.DONE', actions: 'recordConnection' },
                      { guard: 'categorizationInProgressObserved', target: 'IN_PROGRESS', actions: 'recordConnection' },
                    ],
                  },
                },
                IN_PROGRESS: {
                  on: {
                    'CONNECTION.OBSERVED': {
                      guard: 'categorizationReadyObserved',
                      target: '#finapiTask.DONE',
                      actions: 'recordConnection',
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
    /** Finalised with an error known only from a reading without its code: the next read explains it. */
    AWAITING_ERROR_CODE: {
      on: {
        'TASK.OBSERVED': { guard: 'explainsFailure', target: 'COMPLETED_WITH_ERROR', actions: 'recordTaskError' },
        'WEB_FORM.OBSERVED': { guard: 'explainsFailure', target: 'COMPLETED_WITH_ERROR', actions: 'recordWebFormError' },
      },
    },
    DONE: { type: 'final' },
    COMPLETED_WITH_ERROR: { type: 'final' },
    /** A final task whose web form is still open: finAPI contradicts itself; never success. */
    INCONSISTENT: { type: 'final' },
    EXPIRED: { type: 'final' },
    ABORTED: { type: 'final' },
  },
});

export type FinapiTaskMachine = typeof finapiTaskMachine;
export type FinapiTaskSnapshot = SnapshotFrom<FinapiTaskMachine>;

// ---------------------------------------------------------------------------------------------------------
// Snapshot -> canonical Observation
// ---------------------------------------------------------------------------------------------------------

/** Progress ranks along the lifecycle (Observation.progress); every terminal reading ranks highest. */
export const FINAPI_PROGRESS = {
  NOT_YET_STARTED: 10,
  IN_PROGRESS: 20,
  WEB_FORM_NOT_YET_OPENED: 30,
  WEB_FORM_IN_PROGRESS: 40,
  POST_PROCESSING: 50,
  READY: 60,
  DOWNLOAD_IN_PROGRESS: 70,
  CATEGORIZATION_PENDING: 80,
  CATEGORIZATION_IN_PROGRESS: 90,
  /** Finalised with an error known only from a callback: a read will bring the code. */
  FINALISED: 95,
  TERMINAL: 100,
} as const;

/** The finAPI state name of a snapshot, e.g. `POST_PROCESSING.READY.CATEGORIZATION.PENDING`. */
export function finapiStateName(snapshot: FinapiTaskSnapshot): string {
  const walk = (value: unknown): string =>
    typeof value === 'string'
      ? value
      : Object.entries(value as Record<string, unknown>)
          .map(([key, inner]) => `${key}.${walk(inner)}`)
          .join('');
  return walk(snapshot.value);
}

export function finapiProgress(snapshot: FinapiTaskSnapshot): number {
  const s = snapshot;
  if (s.matches('NOT_YET_STARTED')) return FINAPI_PROGRESS.NOT_YET_STARTED;
  if (s.matches('IN_PROGRESS')) return FINAPI_PROGRESS.IN_PROGRESS;
  if (s.matches({ WEB_FORM_REQUIRED: 'NOT_YET_OPENED' })) return FINAPI_PROGRESS.WEB_FORM_NOT_YET_OPENED;
  if (s.matches({ WEB_FORM_REQUIRED: 'IN_PROGRESS' })) return FINAPI_PROGRESS.WEB_FORM_IN_PROGRESS;
  if (s.matches({ POST_PROCESSING: 'IN_PROGRESS' })) return FINAPI_PROGRESS.POST_PROCESSING;
  if (s.matches({ POST_PROCESSING: { READY: 'EVALUATING' } })) return FINAPI_PROGRESS.READY;
  if (s.matches({ POST_PROCESSING: { READY: 'DOWNLOAD_IN_PROGRESS' } })) return FINAPI_PROGRESS.DOWNLOAD_IN_PROGRESS;
  if (s.matches({ POST_PROCESSING: { READY: { CATEGORIZATION: 'PENDING' } } })) return FINAPI_PROGRESS.CATEGORIZATION_PENDING;
  if (s.matches({ POST_PROCESSING: { READY: { CATEGORIZATION: 'IN_PROGRESS' } } })) return FINAPI_PROGRESS.CATEGORIZATION_IN_PROGRESS;
  if (s.matches('AWAITING_ERROR_CODE')) return FINAPI_PROGRESS.FINALISED;
  return FINAPI_PROGRESS.TERMINAL;
}

const SAFE_CODE = /^[A-Z0-9_]{1,64}$/;

/**
 * finAPI task / web form errorCode -> canonical SyncError (the task's 4 documented codes and the web form's 11).
 *
 * - BANK_SERVER_REJECTION: the bank ended the flow (e.g. wrong credentials): BANK_REJECTED, never retried
 *   automatically, the user must act (retrying a rejected login can lock the user's bank account).
 * - INTERRUPTED: the user reloaded or re-opened the web form on a step that does not allow it: CANCELLED, the user
 *   must start again.
 * - INTERNAL_ERROR: finAPI could not tell why; a later attempt may succeed (retryable PROVIDER_ERROR).
 * - INVALID_TOKEN: our user access token expired or became invalid during the flow: repeating the same call cannot
 *   help (non-retryable PROVIDER_ERROR).
 * - NO_ACCOUNTS_FOR_TYPE_LIST: no account of the requested `accountTypes` at the end of the flow: nothing was
 *   updated as asked (non-retryable PROVIDER_ERROR, never an empty success).
 * - ENTITY_EXISTS, MANDATOR_MISCONFIGURATION, UNDETERMINED_BANK, UNEXPECTED_ACCESS_RESPONSE, UNSUPPORTED_FEATURE,
 *   UNSUPPORTED_ORDER (import / payment / configuration problems a retry cannot fix), any code finAPI adds later,
 *   or no code at all: a safe, non-retryable PROVIDER_ERROR (never success).
 */
const FINAPI_ERROR_MESSAGES: Record<string, string> = {
  INTERNAL_ERROR: 'failed with an internal finAPI error',
  INVALID_TOKEN: 'failed: the finAPI user access token expired or became invalid',
  UNEXPECTED_ACCESS_RESPONSE: 'failed: unexpected response from the finAPI Access API',
  ENTITY_EXISTS: 'failed: finAPI Access detected a duplicate bank connection',
  MANDATOR_MISCONFIGURATION: 'failed: the finAPI mandator is misconfigured (finAPI support must fix it)',
  NO_ACCOUNTS_FOR_TYPE_LIST: 'ended without any account of the requested account types',
  UNDETERMINED_BANK: 'failed: the bank could not be determined',
  UNSUPPORTED_FEATURE: 'failed: finAPI Access does not support the requested feature',
  UNSUPPORTED_ORDER: 'failed: the account does not support the requested order',
};

export function finapiErrorFor(code: string | null, source: 'TASK' | 'WEB_FORM' = 'TASK'): SyncError {
  const what = source === 'TASK' ? 'the finAPI update task' : 'the finAPI web form';
  const providerCode = code !== null && SAFE_CODE.test(code) ? code : undefined;
  const base = { ...(providerCode ? { providerCode } : {}) };
  switch (code) {
    case 'BANK_SERVER_REJECTION':
      return { code: 'BANK_REJECTED', retryable: false, userActionRequired: true, message: `${what} was rejected by the bank`, ...base };
    case 'INTERRUPTED':
      return {
        code: 'CANCELLED',
        retryable: false,
        userActionRequired: true,
        message: `${what} was interrupted (reloaded or re-opened on a step that does not allow it)`,
        ...base,
      };
    case 'INTERNAL_ERROR':
      return { code: 'PROVIDER_ERROR', retryable: true, userActionRequired: false, message: `${what} ${FINAPI_ERROR_MESSAGES[code]}`, ...base };
    case null:
      return { code: 'PROVIDER_ERROR', retryable: false, userActionRequired: false, message: `${what} completed with an error but gave no error code` };
    default: {
      const known = Object.prototype.hasOwnProperty.call(FINAPI_ERROR_MESSAGES, code) ? FINAPI_ERROR_MESSAGES[code] : undefined;
      return {
        code: 'PROVIDER_ERROR',
        retryable: false,
        userActionRequired: false,
        message: `${what} ${known ?? 'completed with an error code banksync does not know'}`,
        ...base,
      };
    }
  }
}

export interface FinapiObservationOptions {
  /** Epoch ms; the web form deadline when no reading carried one is `now + webFormTtlMs`. */
  now: number;
  webFormTtlMs?: number;
}

function challengeOf(context: FinapiTaskContext, options: FinapiObservationOptions): Challenge {
  const webForm = context.webForm!;
  return {
    id: webForm.id,
    kind: 'WEB_FORM',
    expiresAt: webForm.expiresAt ?? new Date(options.now + (options.webFormTtlMs ?? FINAPI_WEB_FORM_TTL_MS)).toISOString(),
    redirectUrl: webForm.url,
    message: 'Please complete the finAPI web form to continue the bank update',
  };
}

/** The canonical reading of a finapiTask snapshot, ranked with `progress`. */
export function finapiObservation(snapshot: FinapiTaskSnapshot, options: FinapiObservationOptions): Observation {
  const progress = finapiProgress(snapshot);
  const { context } = snapshot;
  if (snapshot.matches('NOT_YET_STARTED')) return { status: 'QUEUED', progress };
  if (snapshot.matches('WEB_FORM_REQUIRED')) return { status: 'AWAIT_AUTH', challenge: challengeOf(context, options), progress };
  if (snapshot.matches('DONE')) {
    // Nothing downloaded and finAPI says an interface needs the user (the bank rejected the login, or finAPI
    // stopped updating it): the user must act, which an empty COMPLETED would hide.
    if (context.result!.outcome === 'NONE' && context.interfacesNeedUser) {
      return {
        status: 'FAILED',
        error: {
          code: 'BANK_REJECTED',
          retryable: false,
          userActionRequired: true,
          message: 'no account was updated and finAPI reports that a bank interface needs the user',
          providerCode: 'USER_ACTION_REQUIRED',
        },
        progress,
      };
    }
    return { status: 'COMPLETED', result: context.result!, progress };
  }
  if (snapshot.matches('COMPLETED_WITH_ERROR')) {
    return { status: 'FAILED', error: finapiErrorFor(context.errorCode, context.errorSource ?? 'TASK'), progress };
  }
  if (snapshot.matches('INCONSISTENT')) {
    return {
      status: 'FAILED',
      error: {
        code: 'PROVIDER_ERROR',
        retryable: false,
        userActionRequired: false,
        message: 'finAPI reported a final task whose web form is still open',
        ...(context.webForm ? { providerCode: context.webForm.status } : {}),
      },
      progress,
    };
  }
  if (snapshot.matches('EXPIRED')) {
    return {
      status: 'FAILED',
      error: {
        code: 'CHALLENGE_EXPIRED',
        retryable: false,
        userActionRequired: true,
        message: 'the finAPI web form expired before the user completed it',
        providerCode: 'EXPIRED',
      },
      progress,
    };
  }
  if (snapshot.matches('ABORTED')) {
    return {
      status: 'FAILED',
      error: {
        code: 'CANCELLED',
        retryable: false,
        userActionRequired: true,
        message: 'the user aborted the finAPI web form before any update completed',
        providerCode: 'ABORTED',
      },
      progress,
    };
  }
  // IN_PROGRESS, every POST_PROCESSING state, AWAITING_ERROR_CODE: the provider is working (or finished and a read
  // will tell how).
  return { status: 'RUNNING', progress };
}
