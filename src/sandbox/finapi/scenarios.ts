/**
 * finAPI sandbox scenario table: what each scripted bank connection does (task steps, web form outcome, accounts,
 * post-processing, faults, callback modes) and the canonical outcome a correct client reaches.
 */
import type { SyncErrorCode, SyncResult } from '../../../machines/canonical.js';

// ---------------------------------------------------------------------------------------------------------
// The scenario table
// ---------------------------------------------------------------------------------------------------------

export type V1AccountType = 'Checking' | 'Savings' | 'CreditCard' | 'Security' | 'Loan' | 'Membership' | 'Bausparen';
export const TASK_ACCOUNT_TYPES: Record<string, V1AccountType> = {
  BAUSPAREN: 'Bausparen',
  CHECKING: 'Checking',
  CREDIT_CARD: 'CreditCard',
  LOAN: 'Loan',
  MEMBERSHIP: 'Membership',
  SAVINGS: 'Savings',
  SECURITY: 'Security',
};

/** One task step per task read; the last one is where the task stays. */
export type TaskStep =
  | 'NOT_YET_STARTED'
  | 'IN_PROGRESS'
  | 'WEB_FORM_REQUIRED'
  | 'COMPLETED'
  | { error: string }
  /** A status finAPI might add; advances on read like IN_PROGRESS. */
  | { unknown: string };

export interface WebFormSpec {
  /** How the user's visit of the page ends (EXPIRED: they open it too late). */
  outcome: 'COMPLETED' | 'COMPLETED_WITH_ERROR' | 'EXPIRED' | 'ABORTED' | { unknown: string };
  errorCode?: string;
  /** Reads (task or web form) between the user opening the page and the outcome. Default 1. */
  readsInProgress?: number;
  /** Deadline `shortWebFormTtlMs` instead of `webFormTtlMs`. */
  shortTtl?: boolean;
}

export interface AccountSpec {
  type: V1AccountType;
  /** Status once the connection is READY (a raw string is a status finAPI might add). */
  status: 'UPDATED' | 'UPDATED_FIXED' | 'DOWNLOAD_FAILED' | 'DEPRECATED' | (string & {});
  /** Account reads that still answer DOWNLOAD_IN_PROGRESS after READY. */
  downloadReads?: number;
}

export type Fault = 'invalid-json' | 'missing-fields' | 500 | 503 | 429;
export interface Faults {
  /** Answers to the first backgroundUpdate POSTs of the connection (no task is created). */
  trigger?: readonly (423 | 429 | 503)[];
  /** The first N accepted POSTs create the task but answer 503 (the response is "lost"). */
  lostTriggerResponses?: number;
  /** Broken answers to the first reads of each kind; they do not advance the script. */
  task?: readonly Fault[];
  webForm?: readonly Fault[];
  connection?: readonly Fault[];
  accounts?: readonly Fault[];
}

export type FinapiCallbackMode = 'normal' | 'duplicated' | 'out-of-order' | 'early' | 'never';

export interface ScenarioDefinition {
  description: string;
  /** Default NOT_YET_STARTED -> IN_PROGRESS -> COMPLETED. */
  task?: readonly TaskStep[];
  /** The POST answers WEB_FORM_REQUIRED directly (no webFormRequired callback). */
  immediateWebForm?: boolean;
  /** Default: the user completes the web form. */
  webForm?: WebFormSpec;
  /** Accounts of the connection. Default: a checking and a savings account, both UPDATED. */
  accounts?: readonly AccountSpec[];
  /** Accounts at the bank not imported yet (imported with importNewAccounts, filtered by accountTypes). */
  newAccounts?: readonly AccountSpec[];
  /** updateStatus per bank connection read once the update ran. Default IN_PROGRESS, READY. */
  update?: readonly string[];
  /** categorizationStatus per bank connection read once READY. Default READY. */
  categorization?: readonly string[];
  faults?: Faults;
  callbacks?: FinapiCallbackMode;
  /** Sync options a client passes (TriggerRequest.options). */
  options?: Record<string, unknown>;
  expect:
    | { terminal: 'COMPLETED'; outcome: SyncResult['outcome'] }
    | { terminal: 'FAILED'; errorCode: SyncErrorCode; providerCode?: string };
}

const WEB_FORM_TASK: readonly TaskStep[] = ['NOT_YET_STARTED', 'IN_PROGRESS', 'WEB_FORM_REQUIRED'];
const COMPLETE = { terminal: 'COMPLETED', outcome: 'COMPLETE' } as const;
const failedTask = (code: string): readonly TaskStep[] => ['NOT_YET_STARTED', 'IN_PROGRESS', { error: code }];

export const SCENARIOS = {
  success: {
    description: 'task NOT_YET_STARTED -> IN_PROGRESS -> COMPLETED; connection IN_PROGRESS -> READY; both accounts UPDATED',
    expect: COMPLETE,
  },
  'import-new-accounts': {
    description: 'importNewAccounts: two new accounts at the bank are imported (isNew) next to the two updated ones',
    options: { importNewAccounts: true },
    newAccounts: [
      { type: 'Checking', status: 'UPDATED' },
      { type: 'Savings', status: 'UPDATED' },
    ],
    expect: COMPLETE,
  },
  'account-types-filter': {
    description: 'importNewAccounts with accountTypes [SAVINGS]: only the new savings account is imported',
    options: { importNewAccounts: true, accountTypes: ['SAVINGS'] },
    newAccounts: [
      { type: 'Checking', status: 'UPDATED' },
      { type: 'Savings', status: 'UPDATED' },
    ],
    expect: COMPLETE,
  },
  'immediate-web-form': {
    description: 'the POST answers WEB_FORM_REQUIRED at once (e.g. new terms and conditions; no webFormRequired callback); user completes it',
    immediateWebForm: true,
    expect: COMPLETE,
  },
  'edit-credentials': {
    description: 'manageSavedSettings [CREDENTIALS]: immediate WEB_FORM_REQUIRED (no webFormRequired callback); user edits and completes',
    options: { manageSavedSettings: ['CREDENTIALS'] },
    expect: COMPLETE,
  },
  'web-form': {
    description: 'IN_PROGRESS -> WEB_FORM_REQUIRED (webFormRequired callback); web form NOT_YET_OPENED -> IN_PROGRESS -> COMPLETED; post-processing',
    task: WEB_FORM_TASK,
    expect: COMPLETE,
  },
  'web-form-error': {
    description: 'web form COMPLETED_WITH_ERROR (errorCode BANK_SERVER_REJECTION); the task payload tells first, the web form has the code',
    task: WEB_FORM_TASK,
    webForm: { outcome: 'COMPLETED_WITH_ERROR', errorCode: 'BANK_SERVER_REJECTION', readsInProgress: 0 },
    expect: { terminal: 'FAILED', errorCode: 'BANK_REJECTED', providerCode: 'BANK_SERVER_REJECTION' },
  },
  'web-form-expired': {
    description: 'the user opens the web form after its deadline: EXPIRED',
    task: WEB_FORM_TASK,
    webForm: { outcome: 'EXPIRED' },
    expect: { terminal: 'FAILED', errorCode: 'CHALLENGE_EXPIRED', providerCode: 'EXPIRED' },
  },
  'web-form-aborted': {
    description: 'the user aborts the web form before any interface was updated: ABORTED',
    task: WEB_FORM_TASK,
    webForm: { outcome: 'ABORTED' },
    expect: { terminal: 'FAILED', errorCode: 'CANCELLED', providerCode: 'ABORTED' },
  },
  'task-bank-server-rejection': {
    description: 'task COMPLETED_WITH_ERROR BANK_SERVER_REJECTION (e.g. wrong stored credentials): never retried, user must act',
    task: failedTask('BANK_SERVER_REJECTION'),
    expect: { terminal: 'FAILED', errorCode: 'BANK_REJECTED', providerCode: 'BANK_SERVER_REJECTION' },
  },
  'task-internal-error': {
    description: 'task COMPLETED_WITH_ERROR INTERNAL_ERROR (retryable provider error)',
    task: failedTask('INTERNAL_ERROR'),
    expect: { terminal: 'FAILED', errorCode: 'PROVIDER_ERROR', providerCode: 'INTERNAL_ERROR' },
  },
  'task-invalid-token': {
    description: 'task COMPLETED_WITH_ERROR INVALID_TOKEN (the user access token expired during the flow)',
    task: failedTask('INVALID_TOKEN'),
    expect: { terminal: 'FAILED', errorCode: 'PROVIDER_ERROR', providerCode: 'INVALID_TOKEN' },
  },
  'task-unexpected-access-response': {
    description: 'task COMPLETED_WITH_ERROR UNEXPECTED_ACCESS_RESPONSE',
    task: failedTask('UNEXPECTED_ACCESS_RESPONSE'),
    expect: { terminal: 'FAILED', errorCode: 'PROVIDER_ERROR', providerCode: 'UNEXPECTED_ACCESS_RESPONSE' },
  },
  'task-unknown-error-code': {
    description: "task COMPLETED_WITH_ERROR with an errorCode finAPI added later ('CONSENT_WITHDRAWN'): non-retryable, never success",
    task: failedTask('CONSENT_WITHDRAWN'),
    expect: { terminal: 'FAILED', errorCode: 'PROVIDER_ERROR', providerCode: 'CONSENT_WITHDRAWN' },
  },
  'locked-then-success': {
    description: "first POST answers 423 LOCKED (finAPI's batch update is running): busy, not failed; the retry succeeds",
    faults: { trigger: [423] },
    expect: COMPLETE,
  },
  'trigger-response-lost': {
    description: 'the task is created but the POST answers 503: reconciliation finds the task, no second update',
    faults: { lostTriggerResponses: 1 },
    expect: COMPLETE,
  },
  partial: {
    description: 'READY with mixed account statuses: UPDATED, DOWNLOAD_FAILED, UPDATED_FIXED -> PARTIAL',
    accounts: [
      { type: 'Checking', status: 'UPDATED' },
      { type: 'Savings', status: 'DOWNLOAD_FAILED' },
      { type: 'CreditCard', status: 'UPDATED_FIXED' },
    ],
    expect: { terminal: 'COMPLETED', outcome: 'PARTIAL' },
  },
  'all-download-failed': {
    description: 'READY but every account DOWNLOAD_FAILED: outcome NONE (READY is not success)',
    accounts: [
      { type: 'Checking', status: 'DOWNLOAD_FAILED' },
      { type: 'Savings', status: 'DOWNLOAD_FAILED' },
    ],
    expect: { terminal: 'COMPLETED', outcome: 'NONE' },
  },
  'deprecated-accounts': {
    description: 'one account DEPRECATED (no longer sent by the bank), the others UPDATED: COMPLETE',
    accounts: [
      { type: 'Checking', status: 'UPDATED' },
      { type: 'Savings', status: 'DEPRECATED' },
      { type: 'Security', status: 'UPDATED' },
    ],
    expect: COMPLETE,
  },
  categorization: {
    description: 'READY, then categorizationStatus PENDING -> IN_PROGRESS -> READY before the sync completes',
    categorization: ['PENDING', 'PENDING', 'IN_PROGRESS', 'READY'],
    expect: COMPLETE,
  },
  'download-in-progress': {
    description: 'READY while an account still reports DOWNLOAD_IN_PROGRESS for two reads',
    accounts: [
      { type: 'Checking', status: 'UPDATED', downloadReads: 2 },
      { type: 'Savings', status: 'UPDATED' },
    ],
    expect: COMPLETE,
  },
  'unknown-task-status': {
    description: "task status 'PAUSED_BY_BANK' (not documented): never progress or success",
    task: ['NOT_YET_STARTED', { unknown: 'PAUSED_BY_BANK' }, 'COMPLETED'],
    expect: { terminal: 'FAILED', errorCode: 'UNKNOWN_PROVIDER_STATUS' },
  },
  'unknown-web-form-status': {
    description:
      "web form status 'WAITING_FOR_BANK' once opened (not documented); short deadline, learnt by polling (no callbacks): the challenge expires, never success",
    task: WEB_FORM_TASK,
    webForm: { outcome: { unknown: 'WAITING_FOR_BANK' }, shortTtl: true },
    // A callback carries no deadline: a challenge first learnt from one gets the documented 20 minutes.
    callbacks: 'never',
    expect: { terminal: 'FAILED', errorCode: 'CHALLENGE_EXPIRED' },
  },
  'unknown-account-status': {
    description: "READY with an account status 'ARCHIVED' (not documented): never success",
    accounts: [
      { type: 'Checking', status: 'UPDATED' },
      { type: 'Savings', status: 'ARCHIVED' },
    ],
    expect: { terminal: 'FAILED', errorCode: 'UNKNOWN_PROVIDER_STATUS' },
  },
  'unknown-update-status': {
    description: "bank connection updateStatus 'SUSPENDED' (not documented): never success",
    update: ['IN_PROGRESS', 'SUSPENDED'],
    expect: { terminal: 'FAILED', errorCode: 'UNKNOWN_PROVIDER_STATUS' },
  },
  'provider-5xx': {
    description: 'POST 503, a task read 500, a connection read 503: retried, then COMPLETE',
    faults: { trigger: [503], task: [500], connection: [503] },
    expect: COMPLETE,
  },
  'rate-limited': {
    description: 'POST and an accounts read answer 429 with Retry-After: 1; retried after it, then COMPLETE',
    faults: { trigger: [429], accounts: [429] },
    expect: COMPLETE,
  },
  'malformed-body': {
    description: 'invalid JSON (task, accounts) and missing fields (connection) once each; later reads are fine',
    faults: { task: ['invalid-json'], connection: ['missing-fields'], accounts: ['invalid-json'] },
    expect: COMPLETE,
  },
  'callbacks-duplicated': {
    description: 'web form flow; every callback is delivered twice',
    task: WEB_FORM_TASK,
    callbacks: 'duplicated',
    expect: COMPLETE,
  },
  'callbacks-out-of-order': {
    description: 'web form flow; webFormRequired is delivered after finalised (late callback must not move the sync back)',
    task: WEB_FORM_TASK,
    callbacks: 'out-of-order',
    expect: COMPLETE,
  },
  'callbacks-early': {
    description: 'web form flow; webFormRequired is delivered before the POST answers with the task id',
    task: ['NOT_YET_STARTED', 'WEB_FORM_REQUIRED'],
    callbacks: 'early',
    expect: COMPLETE,
  },
  'callbacks-never': {
    description: 'web form flow; no callback is ever sent: polling finishes the job',
    task: WEB_FORM_TASK,
    callbacks: 'never',
    expect: COMPLETE,
  },
} satisfies Record<string, ScenarioDefinition>;

export type FinapiScenarioName = keyof typeof SCENARIOS;

export interface FinapiScenarioInfo {
  name: FinapiScenarioName;
  description: string;
  /** Canonical terminal status a correct client reaches. */
  terminal: 'COMPLETED' | 'FAILED';
  errorCode?: SyncErrorCode;
  /** finAPI code behind the error, when there is one. */
  providerCode?: string;
  outcome?: SyncResult['outcome'];
  /** Sync options to pass (TriggerRequest.options). */
  options?: Record<string, unknown>;
  /** The user meets a web form (opens `challenge.redirectUrl`). */
  webForm: boolean;
  callbacks: FinapiCallbackMode;
  /** finAPI challenges are web forms: nothing is typed. */
  answers: readonly string[];
}

function hasWebForm(def: ScenarioDefinition): boolean {
  const editsSettings = Array.isArray(def.options?.manageSavedSettings) && def.options.manageSavedSettings.length > 0;
  return def.immediateWebForm === true || editsSettings || (def.task ?? []).includes('WEB_FORM_REQUIRED');
}

export const FINAPI_SCENARIOS: readonly FinapiScenarioInfo[] = Object.entries(SCENARIOS).map(([name, def]) => {
  const d = def as ScenarioDefinition;
  return {
    name: name as FinapiScenarioName,
    description: d.description,
    terminal: d.expect.terminal,
    ...(d.expect.terminal === 'FAILED'
      ? { errorCode: d.expect.errorCode, ...(d.expect.providerCode ? { providerCode: d.expect.providerCode } : {}) }
      : { outcome: d.expect.outcome }),
    ...(d.options ? { options: d.options } : {}),
    webForm: hasWebForm(d),
    callbacks: d.callbacks ?? 'normal',
    answers: [],
  };
});

export function isFinapiScenario(name: string): name is FinapiScenarioName {
  return Object.prototype.hasOwnProperty.call(SCENARIOS, name);
}

/** Creates a sandbox bank connection running `scenario`; returns its id (use `String(id)` as connectionId). */
export async function createFinapiSandboxConnection(
  finapiUrl: string,
  token: string,
  scenario: FinapiScenarioName | string,
): Promise<{ id: number; accountIds: number[] }> {
  const response = await fetch(`${finapiUrl.replace(/\/+$/, '')}/sandbox/bankConnections`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ scenario }),
  });
  const body = (await response.json()) as { id: number; accountIds: number[]; code?: string };
  if (response.status !== 201) throw new Error(`finapi sandbox: cannot create connection (HTTP ${response.status} ${body.code ?? ''})`.trim());
  return { id: body.id, accountIds: body.accountIds };
}
