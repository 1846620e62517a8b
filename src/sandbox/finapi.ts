/**
 * finAPI, sandboxed (seeds 001 and 004): Web Form 2.0 background update tasks with web forms and callbacks,
 * and the Access v1 post-processing (bank connection updateStatus / categorizationStatus, per-account status).
 *
 * Routes (under `/finapi`, OAuth bearer token except the web form page):
 * - `POST /api/tasks/backgroundUpdate` -> 201 task | 423 LOCKED (connection already being updated) | 400
 * - `GET  /api/tasks?order=createdAt,desc&page=&perPage=`, `GET /api/tasks/{id}`
 * - `GET  /api/webForms/{id}`
 * - `GET  /webform/{id}`: the page a user's browser opens (the scenario decides how the user's visit ends)
 * - `GET  /api/v1/bankConnections/{id}`, `GET /api/v1/accounts?ids=1,2,3`
 * - sandbox only: `POST /sandbox/bankConnections { scenario }` -> 201 `{ id, accountIds }` (finAPI imports
 *   connections through a web form; the sandbox creates them directly, with the scripted scenario attached)
 *
 * Scripts advance by reads, never by wall time (like finX): each task GET moves the task one step; once the
 * update ran, each bank connection GET moves updateStatus (then categorizationStatus) one step; account GETs
 * finish accounts still in DOWNLOAD_IN_PROGRESS. A web form moves when the user opens its page, then after
 * `readsInProgress` further reads (of the task or the web form). Only web form deadlines use the clock.
 *
 * Callbacks `{ taskId, status, webForm }` go to the request's `callbacks` URLs, or (when the request names
 * none) to the sandbox's webhook URL for provider `finapi`. webFormRequired: when a task moves to
 * WEB_FORM_REQUIRED (never for an immediate web form or editSavedSettings); finalised: when the task ends, or
 * its web form does (task status stays WEB_FORM_REQUIRED, `webForm.status` tells the end). Scenario callback
 * modes: duplicated, out of order (webFormRequired held until after finalised), early (sent, and delivered,
 * before the POST answers), never.
 *
 * Secrets: tokens and request bodies are never stored, logged or echoed.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { SIGNATURE_HEADER, signWebhook } from '../engine/webhook-auth.js';
import type { SyncErrorCode, SyncResult } from '../../machines/canonical.js';
import type { ProviderStats, SandboxContext, SandboxOptions, SandboxProvider, SandboxProviderFactory } from './server.js';

export interface FinapiSandboxOptions {
  /** Accepted bearer tokens. Default: any non-empty token. */
  tokens?: readonly string[];
  /** Web form deadline (ms after it is created). Default 20 minutes (Web Form 2.0). */
  webFormTtlMs?: number;
  /** Deadline of web forms of scenarios marked `shortTtl`. Default 2000 ms. */
  shortWebFormTtlMs?: number;
  /**
   * finAPI accepts only HTTPS callback URLs; tests receive them on a local HTTP server: the URL a callback is
   * actually POSTed to (e.g. `https://hooks.example.com/x` -> `http://127.0.0.1:port/x`). Default: as given.
   */
  resolveCallbackUrl?: (url: string) => string;
  /** Number of the first page of `GET /api/tasks` (the spec's example pages from 0, its query default is 1). Default 1. */
  firstPage?: 0 | 1;
}

// ---------------------------------------------------------------------------------------------------------
// The scenario table
// ---------------------------------------------------------------------------------------------------------

type V1AccountType = 'Checking' | 'Savings' | 'CreditCard' | 'Security' | 'Loan' | 'Membership' | 'Bausparen';
const TASK_ACCOUNT_TYPES: Record<string, V1AccountType> = {
  BAUSPAREN: 'Bausparen',
  CHECKING: 'Checking',
  CREDIT_CARD: 'CreditCard',
  LOAN: 'Loan',
  MEMBERSHIP: 'Membership',
  SAVINGS: 'Savings',
  SECURITY: 'Security',
};

/** One task step per task read; the last one is where the task stays. */
type TaskStep =
  | 'NOT_YET_STARTED'
  | 'IN_PROGRESS'
  | 'WEB_FORM_REQUIRED'
  | 'COMPLETED'
  | { error: string }
  /** A status finAPI might add; advances on read like IN_PROGRESS. */
  | { unknown: string };

interface WebFormSpec {
  /** How the user's visit of the page ends (EXPIRED: they open it too late). */
  outcome: 'COMPLETED' | 'COMPLETED_WITH_ERROR' | 'EXPIRED' | 'ABORTED' | { unknown: string };
  errorCode?: string;
  /** Reads (task or web form) between the user opening the page and the outcome. Default 1. */
  readsInProgress?: number;
  /** Deadline `shortWebFormTtlMs` instead of `webFormTtlMs`. */
  shortTtl?: boolean;
}

interface AccountSpec {
  type: V1AccountType;
  /** Status once the connection is READY (a raw string is a status finAPI might add). */
  status: 'UPDATED' | 'UPDATED_FIXED' | 'DOWNLOAD_FAILED' | 'DEPRECATED' | (string & {});
  /** Account reads that still answer DOWNLOAD_IN_PROGRESS after READY. */
  downloadReads?: number;
}

type Fault = 'invalid-json' | 'missing-fields' | 500 | 503 | 429;
interface Faults {
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

interface ScenarioDefinition {
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

const SCENARIOS = {
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

// ---------------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------------

export interface FinapiConnectionStats {
  [counter: string]: number | string;
  scenario: string;
  /** Background update tasks created (accepted POSTs, including a "lost" 201). */
  tasksCreated: number;
  /** Every backgroundUpdate POST, whatever the answer. */
  triggers: number;
  /** POSTs answered 423 LOCKED (scripted batch update, or an update still running). */
  overlaps: number;
  /** Every read of this connection's task, web form, bank connection or accounts. */
  polls: number;
  taskReads: number;
  webFormReads: number;
  connectionReads: number;
  accountReads: number;
  /** Times the user opened a web form page. */
  webFormsOpened: number;
  /** Callback deliveries attempted (each at most once). */
  callbacks: number;
  callbackFailures: number;
}

interface AccountState {
  id: number;
  name: string;
  type: V1AccountType;
  iban: string;
  isNew: boolean;
  status: string;
  finalStatus: string;
  downloadReads: number;
}

interface WebFormState {
  id: string;
  url: string;
  task: TaskState;
  createdAt: number;
  expiresAt: number;
  status: string;
  errorCode: string | null;
  readsLeft: number;
}

interface TaskState {
  id: string;
  seq: number;
  connection: ConnectionState;
  createdAt: number;
  steps: readonly TaskStep[];
  step: number;
  status: string;
  errorCode: string | null;
  webForm: WebFormState | null;
  callbacks: { webFormRequired?: string; finalised?: string };
  importTypes: readonly V1AccountType[] | null;
  /** webFormRequired callbacks held back until finalised (out-of-order mode). */
  held: unknown[];
}

interface ConnectionState {
  id: number;
  scenario: FinapiScenarioName;
  def: ScenarioDefinition;
  accounts: AccountState[];
  available: AccountSpec[];
  tasks: TaskState[];
  /** Index into def.update once the update ran; -1 before (connection READY, or locked while the task runs). */
  updateStep: number;
  categorizationStep: number;
  updateStatus: string;
  categorizationStatus: string;
  lastManualUpdate: { result: string; errorMessage: string | null; errorType: string | null; timestamp: string } | null;
  userActionRequired: boolean;
  faults: {
    trigger: (423 | 429 | 503)[];
    lostTriggerResponses: number;
    task: Fault[];
    webForm: Fault[];
    connection: Fault[];
    accounts: Fault[];
  };
  stats: FinapiConnectionStats;
}

const TASK_FINAL = new Set(['COMPLETED', 'COMPLETED_WITH_ERROR']);
const WEB_FORM_OPEN = new Set(['NOT_YET_OPENED', 'IN_PROGRESS']);

const CreateConnectionBody = z.object({ scenario: z.string().min(1).max(64).optional() });
/** TaskCallbacks URL pattern of the spec (HTTPS only). */
const httpsUrl = z
  .string()
  .max(2048)
  .regex(/^https:\/\/(www\.)?[-a-zA-Z0-9@:%._+~#=]{1,256}\.[a-zA-Z0-9()]{1,63}\b([-a-zA-Z0-9()@:%_+.~#?&/=]*)$/);
const TaskAccountType = z.enum(['BAUSPAREN', 'CHECKING', 'CREDIT_CARD', 'LOAN', 'MEMBERSHIP', 'SAVINGS', 'SECURITY']);
const SavedSetting = z.enum(['CREDENTIALS', 'DEFAULT_TWO_STEP_PROCEDURE']);
/**
 * BankConnectionUpdateTaskDetails. Like any JSON API, fields it does not define are ignored: a request naming
 * `editSavedSettings` gets no web form.
 */
const BackgroundUpdateBody = z.object({
  bankConnectionId: z.number().int().nonnegative(),
  importNewAccounts: z.boolean().nullish(),
  accountTypes: z.array(TaskAccountType).nullish(),
  skipPositionsDownload: z.boolean().nullish(),
  loadOwnerData: z.boolean().nullish(),
  manageSavedSettings: z.array(SavedSetting).nullish(),
  profileId: z.string().length(36).nullish(),
  redirectUrl: httpsUrl.nullish(),
  callbacks: z.object({ webFormRequired: httpsUrl.nullish(), finalised: httpsUrl.nullish() }).nullish(),
});
const ListQuery = z.object({
  order: z.enum(['createdAt', 'createdAt,asc', 'createdAt,desc']).optional(),
  page: z.coerce.number().int().min(0).max(10_000).optional(),
  perPage: z.coerce.number().int().min(1).max(500).optional(),
});

/** finAPI's `yyyy-MM-dd'T'HH:mm:ss.SSSZ`, e.g. `2025-03-01T10:00:00.000+0000`. */
function finapiTime(ms: number): string {
  return new Date(ms).toISOString().replace('Z', '+0000');
}

/** Access v1 update timestamps: German local time without offset, `yyyy-MM-dd HH:mm:ss.SSS`. */
function germanLocalTime(ms: number): string {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-GB', {
      timeZone: 'Europe/Berlin',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hourCycle: 'h23',
    })
      .formatToParts(new Date(ms))
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}.${String(ms % 1000).padStart(3, '0')}`;
}

function webFormError(reply: FastifyReply, request: FastifyRequest, status: number, code: string, description: string): FastifyReply {
  return reply.status(status).send({ code, description, timestamp: finapiTime(Date.now()), endpoint: `${request.method} ${request.routeOptions.url ?? ''}` });
}

/** Web Form 2.0 ValidationError (400). */
function validationError(reply: FastifyReply, request: FastifyRequest, fields: readonly string[]): FastifyReply {
  return reply.status(400).send({
    errors: fields.map((field) => ({ field, message: 'invalid value' })),
    timestamp: finapiTime(Date.now()),
    endpoint: `${request.method} ${request.routeOptions.url ?? ''}`,
  });
}

function issueFields(error: z.ZodError): string[] {
  return [...new Set(error.issues.map((issue) => issue.path.join('.') || '(root)'))];
}

/** Access v1 ErrorMessage. */
function accessError(reply: FastifyReply, request: FastifyRequest, status: number, code: string, message: string): FastifyReply {
  return reply.status(status).send({
    errors: [{ message, code, type: status >= 500 ? 'TECHNICAL' : 'BUSINESS', multiStepAuthentication: null }],
    date: germanLocalTime(Date.now()),
    requestId: randomUUID(),
    endpoint: `${request.method} ${request.routeOptions.url ?? ''}`,
    authContext: 'sandbox-user/sandbox-client',
    bank: null,
  });
}

// ---------------------------------------------------------------------------------------------------------
// The module
// ---------------------------------------------------------------------------------------------------------

/** A factory with explicit options (e.g. `startSandbox({ providers: [createFinxSandbox, finapiSandbox({ tokens })] })`). */
export function finapiSandbox(finapiOptions: FinapiSandboxOptions = {}): SandboxProviderFactory {
  return (context, options) => createFinapiSandboxWith(context, options, finapiOptions);
}

/** The default factory (DEFAULT_PROVIDERS); reads `options.finapi` when the caller passes one. */
export function createFinapiSandbox(context: SandboxContext, options: SandboxOptions): SandboxProvider {
  return createFinapiSandboxWith(context, options, (options as SandboxOptions & { finapi?: FinapiSandboxOptions }).finapi ?? {});
}

function createFinapiSandboxWith(context: SandboxContext, options: SandboxOptions, finapiOptions: FinapiSandboxOptions): SandboxProvider {
  const tokens = finapiOptions.tokens ? new Set(finapiOptions.tokens) : null;
  const ttlMs = finapiOptions.webFormTtlMs ?? 20 * 60_000;
  const shortTtlMs = finapiOptions.shortWebFormTtlMs ?? 2_000;
  const resolveCallbackUrl = finapiOptions.resolveCallbackUrl ?? ((url: string) => url);
  const firstPage = finapiOptions.firstPage ?? 1;
  const connections = new Map<number, ConnectionState>();
  const tasks = new Map<string, TaskState>();
  const webForms = new Map<string, WebFormState>();
  const accounts = new Map<number, { account: AccountState; connection: ConnectionState }>();
  const inFlight = new Set<Promise<void>>();
  let nextConnectionId = 4_200_001;
  let nextAccountId = 7_100_001;
  let taskSeq = 0;
  let listReads = 0;
  let closed = false;

  function newAccount(spec: AccountSpec, isNew: boolean): AccountState {
    const id = nextAccountId++;
    return {
      id,
      name: `${spec.type} ${id}`,
      type: spec.type,
      iban: `DE89370400440${String(id).padStart(9, '0')}`,
      isNew,
      status: 'UPDATED',
      finalStatus: spec.status,
      downloadReads: spec.downloadReads ?? 0,
    };
  }

  function newConnection(scenario: FinapiScenarioName): ConnectionState {
    const def: ScenarioDefinition = SCENARIOS[scenario];
    const id = nextConnectionId++;
    const specs = def.accounts ?? [
      { type: 'Checking', status: 'UPDATED' },
      { type: 'Savings', status: 'UPDATED' },
    ];
    const connection: ConnectionState = {
      id,
      scenario,
      def,
      accounts: [],
      available: [...(def.newAccounts ?? [])],
      tasks: [],
      updateStep: -1,
      categorizationStep: -1,
      updateStatus: 'READY',
      categorizationStatus: 'READY',
      lastManualUpdate: null,
      userActionRequired: false,
      faults: {
        trigger: [...(def.faults?.trigger ?? [])],
        lostTriggerResponses: def.faults?.lostTriggerResponses ?? 0,
        task: [...(def.faults?.task ?? [])],
        webForm: [...(def.faults?.webForm ?? [])],
        connection: [...(def.faults?.connection ?? [])],
        accounts: [...(def.faults?.accounts ?? [])],
      },
      stats: {
        scenario,
        tasksCreated: 0,
        triggers: 0,
        overlaps: 0,
        polls: 0,
        taskReads: 0,
        webFormReads: 0,
        connectionReads: 0,
        accountReads: 0,
        webFormsOpened: 0,
        callbacks: 0,
        callbackFailures: 0,
      },
    };
    for (const spec of specs) {
      const account = newAccount(spec, false);
      connection.accounts.push(account);
      accounts.set(account.id, { account, connection });
    }
    connections.set(id, connection);
    return connection;
  }

  // ---- serialisation ------------------------------------------------------------------------------------

  const webFormInfo = (w: WebFormState) => ({ id: w.id, url: w.url, status: w.status });

  function serializeTask(task: TaskState) {
    return {
      id: task.id,
      createdAt: finapiTime(task.createdAt),
      type: 'BANK_CONNECTION_UPDATE',
      status: task.status,
      payload: {
        bankConnectionId: task.connection.id,
        webForm: task.webForm ? webFormInfo(task.webForm) : null,
        errorCode: task.errorCode,
      },
    };
  }

  function serializeWebForm(w: WebFormState) {
    return {
      id: w.id,
      url: w.url,
      createdAt: finapiTime(w.createdAt),
      expiresAt: finapiTime(w.expiresAt),
      type: 'BANK_CONNECTION_UPDATE',
      status: w.status,
      payload: { bankConnectionId: w.task.connection.id, errorCode: w.errorCode },
    };
  }

  const SANDBOX_BANK_ID = 280_001;
  const twoStepProcedure = { procedureId: '942', procedureName: 'pushTAN', procedureChallengeType: 'TEXT', implicitExecute: false };
  const sandboxBank = {
    id: SANDBOX_BANK_ID,
    name: 'finAPI Sandbox Bank',
    loginHint: null,
    bic: 'SANDDEXXXXX',
    blzs: ['00000000'],
    blz: '00000000',
    location: 'DE',
    city: 'München',
    isSupported: true,
    isTestBank: true,
    popularity: 0,
    health: 100,
    loginFieldUserId: 'Onlinebanking-ID',
    loginFieldCustomerId: null,
    loginFieldPin: 'PIN',
    pinsAreVolatile: false,
    isCustomerIdPassword: false,
    supportedDataSources: ['FINTS_SERVER'],
    interfaces: [
      {
        interface: 'XS2A',
        tppAuthenticationGroup: null,
        loginCredentials: [
          { label: 'Onlinebanking-ID', isSecret: false, isVolatile: false },
          { label: 'PIN', isSecret: true, isVolatile: false },
        ],
        properties: ['REDIRECT_APPROACH'],
        loginHint: null,
        health: 100,
        lastCommunicationAttempt: null,
        lastSuccessfulCommunication: null,
        isMoneyTransferSupported: false,
        isAisSupported: true,
        paymentCapabilities: {
          sepaMoneyTransfer: false,
          sepaInstantMoneyTransfer: false,
          sepaCollectiveMoneyTransfer: false,
          sepaFutureDatedMoneyTransfer: false,
          sepaStandingOrder: false,
        },
        aisAccountTypes: ['Checking', 'Savings', 'CreditCard', 'Security', 'Loan', 'Membership', 'Bausparen'],
      },
    ],
    bankGroup: null,
    lastCommunicationAttempt: null,
    lastSuccessfulCommunication: null,
    isBeta: false,
  };

  /** Access v1 BankConnection, every required field present; credentials are never echoed (null). */
  function serializeConnection(c: ConnectionState) {
    return {
      id: c.id,
      bankId: SANDBOX_BANK_ID,
      name: `Sandbox bank connection ${c.id}`,
      bankingUserId: null,
      bankingCustomerId: null,
      bankingPin: null,
      type: 'ONLINE',
      updateStatus: c.updateStatus,
      categorizationStatus: c.categorizationStatus,
      lastManualUpdate: c.lastManualUpdate,
      lastAutoUpdate: null,
      ibanOnlyMoneyTransferSupported: false,
      ibanOnlyDirectDebitSupported: false,
      collectiveMoneyTransferSupported: false,
      defaultTwoStepProcedureId: null,
      twoStepProcedures: [twoStepProcedure],
      interfaces: [
        {
          interface: 'XS2A',
          loginCredentials: [
            { label: 'Onlinebanking-ID', value: null },
            { label: 'PIN', value: null },
          ],
          defaultTwoStepProcedureId: null,
          twoStepProcedures: [twoStepProcedure],
          aisConsent: { status: 'PRESENT', expiresAt: null },
          lastManualUpdate: c.lastManualUpdate,
          lastAutoUpdate: null,
          userActionRequired: c.userActionRequired,
          maxDaysForDownload: 0,
        },
      ],
      accountIds: c.accounts.map((a) => a.id),
      owners: null,
      bank: sandboxBank,
      furtherLoginNotRecommended: false,
    };
  }

  const ACCOUNT_TYPE_IDS: Record<V1AccountType, number> = { Checking: 1, Savings: 2, CreditCard: 3, Security: 4, Loan: 5, Membership: 7, Bausparen: 8 };

  /** Access v1 Account; the per-interface status is the one that counts (Account.status is deprecated). */
  function serializeAccount(a: AccountState, c: ConnectionState) {
    const updated = c.lastManualUpdate?.timestamp ?? null;
    return {
      id: a.id,
      bankConnectionId: c.id,
      accountName: a.name,
      iban: a.iban,
      accountNumber: a.iban.slice(-10),
      subAccountNumber: null,
      accountHolderName: 'Sandbox User',
      accountHolderId: null,
      accountCurrency: 'EUR',
      accountTypeId: ACCOUNT_TYPE_IDS[a.type],
      accountTypeName: a.type,
      accountType: a.type,
      balance: 1_234.56,
      overdraft: null,
      overdraftLimit: null,
      availableFunds: null,
      lastSuccessfulUpdate: updated,
      lastUpdateAttempt: updated,
      isNew: a.isNew,
      status: a.status,
      supportedOrders: [],
      interfaces: [
        {
          interface: 'XS2A',
          status: a.status,
          capabilities: ['DATA_DOWNLOAD'],
          paymentCapabilities: { sepaInstantMoneyTransfer: false },
          lastSuccessfulUpdate: updated,
          lastUpdateAttempt: updated,
        },
      ],
      clearingAccounts: [],
      isSeized: false,
    };
  }

  // ---- callbacks ----------------------------------------------------------------------------------------

  function track(delivery: Promise<void>): Promise<void> {
    inFlight.add(delivery);
    void delivery.finally(() => inFlight.delete(delivery));
    return delivery;
  }

  /** One delivery attempt; resolves when it ended (delivered or failed). */
  function deliver(task: TaskState, kind: 'webFormRequired' | 'finalised', body: unknown): Promise<void> {
    const stats = task.connection.stats;
    const url = task.callbacks[kind];
    if (closed) return Promise.resolve();
    if (url) {
      stats.callbacks += 1;
      const text = JSON.stringify(body);
      // Signed like the sandbox's own webhooks when a secret is configured for `finapi`.
      const secret = options.webhookSecrets?.finapi;
      const signature: Record<string, string> =
        secret === undefined ? {} : { [SIGNATURE_HEADER]: signWebhook(secret, text, Math.floor(context.now() / 1000)) };
      return track(
        fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...signature },
          body: text,
          signal: AbortSignal.timeout(5_000),
        })
          .then(async (response) => {
            await response.arrayBuffer().catch(() => undefined);
            if (!response.ok) stats.callbackFailures += 1;
          })
          .catch(() => {
            stats.callbackFailures += 1;
          }),
      );
    }
    return new Promise<void>((resolve) => {
      const sent = context.sendWebhook('finapi', body, (ok) => {
        if (!ok) stats.callbackFailures += 1;
        resolve();
      });
      if (sent) stats.callbacks += 1;
      else resolve();
    });
  }

  function callback(task: TaskState, kind: 'webFormRequired' | 'finalised'): Promise<void> {
    const mode = task.connection.def.callbacks ?? 'normal';
    if (mode === 'never') return Promise.resolve();
    const body = { taskId: task.id, status: task.status, webForm: task.webForm ? webFormInfo(task.webForm) : null };
    if (mode === 'out-of-order' && kind === 'webFormRequired') {
      task.held.push(body);
      return Promise.resolve();
    }
    const sent = mode === 'duplicated' ? Promise.all([deliver(task, kind, body), deliver(task, kind, body)]).then(() => undefined) : deliver(task, kind, body);
    if (mode === 'out-of-order' && kind === 'finalised' && task.held.length > 0) {
      const held = task.held.splice(0);
      // The late webFormRequired arrives after finalised was delivered.
      return sent.then(async () => {
        for (const late of held) await deliver(task, 'webFormRequired', late);
      });
    }
    return sent;
  }

  // ---- scripts ------------------------------------------------------------------------------------------

  function locked(c: ConnectionState): boolean {
    if (c.updateStatus !== 'READY') return true;
    return c.tasks.some((t) => !TASK_FINAL.has(t.status) && !(t.status === 'WEB_FORM_REQUIRED' && t.webForm && !WEB_FORM_OPEN.has(t.webForm.status)));
  }

  function createWebForm(task: TaskState): void {
    const now = context.now();
    const id = randomUUID();
    const spec = task.connection.def.webForm;
    const webForm: WebFormState = {
      id,
      url: `${context.baseUrl()}/finapi/webform/${id}`,
      task,
      createdAt: now,
      expiresAt: now + (spec?.shortTtl ? shortTtlMs : ttlMs),
      status: 'NOT_YET_OPENED',
      errorCode: null,
      readsLeft: 0,
    };
    task.webForm = webForm;
    task.status = 'WEB_FORM_REQUIRED';
    webForms.set(id, webForm);
  }

  /** The bank update ran: import new accounts, mark every account as downloading, start post-processing. */
  function startPostProcessing(task: TaskState): void {
    const c = task.connection;
    if (task.importTypes) {
      const wanted = task.importTypes;
      const importing = c.available.filter((spec) => wanted.length === 0 || wanted.includes(spec.type));
      c.available = c.available.filter((spec) => !importing.includes(spec));
      for (const spec of importing) {
        const account = newAccount(spec, true);
        c.accounts.push(account);
        accounts.set(account.id, { account, connection: c });
      }
    }
    for (const account of c.accounts) account.status = 'DOWNLOAD_IN_PROGRESS';
    c.updateStep = 0;
    c.updateStatus = 'IN_PROGRESS';
    c.lastManualUpdate = { result: 'OK', errorMessage: null, errorType: null, timestamp: germanLocalTime(context.now()) };
    c.userActionRequired = false;
  }

  function endWithError(task: TaskState, code: string | null): void {
    const c = task.connection;
    c.updateStatus = 'READY';
    c.updateStep = -1;
    const rejected = code === 'BANK_SERVER_REJECTION';
    c.lastManualUpdate = {
      result: rejected ? 'BANK_SERVER_REJECTION' : 'INTERNAL_SERVER_ERROR',
      errorMessage: rejected ? 'The bank rejected the login' : 'Internal error',
      errorType: rejected ? 'BUSINESS' : 'TECHNICAL',
      timestamp: germanLocalTime(context.now()),
    };
    c.userActionRequired = rejected;
  }

  /** Moves the task to step `index` (clamped); resolves once the callback it caused, if any, was delivered. */
  function enterTaskStep(task: TaskState, index: number): Promise<void> {
    const target = Math.min(index, task.steps.length - 1);
    const step = task.steps[target]!;
    task.step = target;
    if (step === 'NOT_YET_STARTED' || step === 'IN_PROGRESS') {
      task.status = step;
    } else if (typeof step === 'object' && 'unknown' in step) {
      task.status = step.unknown;
    } else if (step === 'WEB_FORM_REQUIRED') {
      createWebForm(task);
      return callback(task, 'webFormRequired');
    } else if (step === 'COMPLETED') {
      task.status = 'COMPLETED';
      startPostProcessing(task);
      return callback(task, 'finalised');
    } else {
      task.status = 'COMPLETED_WITH_ERROR';
      task.errorCode = step.error;
      endWithError(task, step.error);
      return callback(task, 'finalised');
    }
    return Promise.resolve();
  }

  /** The web form ended: so does its task, final and carrying the web form (Web Form 2.0). */
  function finishWebForm(w: WebFormState, status: string, errorCode: string | null = null): void {
    w.status = status;
    w.errorCode = errorCode;
    const task = w.task;
    if (status === 'COMPLETED') {
      task.status = 'COMPLETED';
      startPostProcessing(task);
    } else if (status === 'COMPLETED_WITH_ERROR') {
      // The web form has the code (its own enum); the task's errorCode enum has no room for most of them.
      task.status = 'COMPLETED_WITH_ERROR';
      endWithError(task, errorCode);
    } else if (status === 'EXPIRED' || status === 'ABORTED') {
      task.status = 'COMPLETED_WITH_ERROR';
      task.connection.updateStatus = 'READY';
      task.connection.userActionRequired = true;
    } else return; // a status finAPI might add: not final, no callback
    void callback(task, 'finalised');
  }

  function expireIfDue(w: WebFormState): void {
    if (WEB_FORM_OPEN.has(w.status) && context.now() >= w.expiresAt) finishWebForm(w, 'EXPIRED');
  }

  /** A read of the web form (or of its task) while the user is in it: the scripted outcome arrives. */
  function advanceWebForm(w: WebFormState): void {
    expireIfDue(w);
    if (w.status !== 'IN_PROGRESS') return;
    if (w.readsLeft > 0) {
      w.readsLeft -= 1;
      return;
    }
    const spec = w.task.connection.def.webForm ?? { outcome: 'COMPLETED' };
    const outcome = spec.outcome;
    if (typeof outcome === 'object') w.status = outcome.unknown;
    else finishWebForm(w, outcome, spec.errorCode ?? null);
  }

  function readTask(task: TaskState): void {
    if (task.webForm && !TASK_FINAL.has(task.status)) advanceWebForm(task.webForm);
    else if (!TASK_FINAL.has(task.status)) void enterTaskStep(task, task.step + 1);
  }

  function readConnection(c: ConnectionState): void {
    if (c.updateStep < 0) return; // no update ran (READY), or the task still runs (IN_PROGRESS)
    const updates = c.def.update ?? ['IN_PROGRESS', 'READY'];
    if (c.updateStatus !== 'READY') {
      c.updateStatus = updates[Math.min(c.updateStep, updates.length - 1)]!;
      c.updateStep += 1;
      if (c.updateStatus === 'READY') {
        for (const account of c.accounts) account.status = account.downloadReads > 0 ? 'DOWNLOAD_IN_PROGRESS' : account.finalStatus;
        c.categorizationStep = 0;
        const steps = c.def.categorization ?? ['READY'];
        c.categorizationStatus = steps[0]!;
      }
      return;
    }
    const steps = c.def.categorization ?? ['READY'];
    if (c.categorizationStep >= 0 && c.categorizationStep < steps.length - 1) {
      c.categorizationStep += 1;
      c.categorizationStatus = steps[c.categorizationStep]!;
    }
  }

  function readAccount(a: AccountState, c: ConnectionState): void {
    if (a.status !== 'DOWNLOAD_IN_PROGRESS' || c.updateStatus !== 'READY') return;
    if (a.downloadReads > 0) a.downloadReads -= 1;
    if (a.downloadReads === 0) a.status = a.finalStatus;
  }

  // ---- HTTP ---------------------------------------------------------------------------------------------

  function authorized(request: FastifyRequest): boolean {
    const header = request.headers.authorization;
    if (typeof header !== 'string') return false;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) return false;
    return tokens ? tokens.has(match[1]!) : true;
  }

  /** Applies a scripted fault to a read; true when the reply was sent. */
  function fault(reply: FastifyReply, request: FastifyRequest, list: Fault[], missing: () => unknown, access: boolean): boolean {
    const next = list.shift();
    if (next === undefined) return false;
    if (next === 'invalid-json') {
      void reply.status(200).type('application/json').send('{"id":"broken","status":"IN_PROG');
    } else if (next === 'missing-fields') {
      void reply.status(200).send(missing());
    } else {
      // finAPI documents no 429 body: the spec's catch-all codes.
      if (next === 429) void reply.header('retry-after', '1');
      if (access) accessError(reply, request, next, 'UNEXPECTED_ERROR', 'scripted fault');
      else webFormError(reply, request, next, 'INTERNAL_SERVER_ERROR', 'scripted fault');
    }
    return true;
  }

  function register(app: FastifyInstance): void {
    app.addHook('onRequest', async (request, reply) => {
      // The web form page is what the user's browser opens: no API token there.
      if (request.url.startsWith('/finapi/webform/')) return;
      if (!authorized(request)) {
        return request.url.startsWith('/finapi/api/v1/')
          ? reply.status(401).send({ error: 'invalid_token', error_description: 'Not authenticated or invalid access_token' })
          : webFormError(reply, request, 401, 'UNAUTHORIZED', 'missing or invalid access token');
      }
    });

    app.post('/sandbox/bankConnections', async (request, reply) => {
      const parsed = CreateConnectionBody.safeParse(request.body ?? {});
      if (!parsed.success) return webFormError(reply, request, 400, 'BAD_REQUEST', 'invalid request body');
      const scenario = parsed.data.scenario ?? 'success';
      if (!isFinapiScenario(scenario)) return webFormError(reply, request, 422, 'UNKNOWN_SCENARIO', 'unknown sandbox scenario');
      const connection = newConnection(scenario);
      return reply.status(201).send({ id: connection.id, scenario, accountIds: connection.accounts.map((a) => a.id) });
    });

    app.post('/api/tasks/backgroundUpdate', async (request, reply) => {
      const parsed = BackgroundUpdateBody.safeParse(request.body);
      if (!parsed.success) return validationError(reply, request, issueFields(parsed.error));
      const body = parsed.data;
      const c = connections.get(body.bankConnectionId);
      if (!c) return webFormError(reply, request, 404, 'NOT_FOUND', 'bank connection not found');
      c.stats.triggers += 1;

      const injected = c.faults.trigger.shift();
      if (injected === 423 || (injected === undefined && locked(c))) {
        c.stats.overlaps += 1;
        return webFormError(reply, request, 423, 'LOCKED', 'the bank connection is currently being imported or updated');
      }
      if (injected === 429) {
        void reply.header('retry-after', '1');
        return webFormError(reply, request, 429, 'INTERNAL_SERVER_ERROR', 'too many requests');
      }
      if (injected === 503) return webFormError(reply, request, 503, 'INTERNAL_SERVER_ERROR', 'service unavailable');

      const settings = body.manageSavedSettings ?? [];
      const task: TaskState = {
        id: randomUUID(),
        seq: ++taskSeq,
        connection: c,
        createdAt: context.now(),
        steps: c.def.task ?? ['NOT_YET_STARTED', 'IN_PROGRESS', 'COMPLETED'],
        step: 0,
        status: 'NOT_YET_STARTED',
        errorCode: null,
        webForm: null,
        callbacks: {
          ...(body.callbacks?.webFormRequired ? { webFormRequired: resolveCallbackUrl(body.callbacks.webFormRequired) } : {}),
          ...(body.callbacks?.finalised ? { finalised: resolveCallbackUrl(body.callbacks.finalised) } : {}),
        },
        importTypes: body.importNewAccounts ? (body.accountTypes ?? []).map((t) => TASK_ACCOUNT_TYPES[t]!) : null,
        held: [],
      };
      c.tasks.push(task);
      tasks.set(task.id, task);
      c.stats.tasksCreated += 1;
      c.updateStatus = 'IN_PROGRESS';
      c.updateStep = -1;

      if (c.def.immediateWebForm || settings.length > 0) {
        // The update needs the user at once (new terms, credentials to edit): no webFormRequired callback.
        createWebForm(task);
      } else if ((c.def.callbacks ?? 'normal') === 'early') {
        // The answer is "generated" now, but the callback of the next step is delivered before it.
        const answer = serializeTask(task);
        await enterTaskStep(task, 1);
        return reply.status(201).send(answer);
      } else {
        void enterTaskStep(task, 0);
      }
      if (c.faults.lostTriggerResponses > 0) {
        c.faults.lostTriggerResponses -= 1;
        return webFormError(reply, request, 503, 'INTERNAL_SERVER_ERROR', 'service unavailable');
      }
      return reply.status(201).send(serializeTask(task));
    });

    app.get('/api/tasks', async (request, reply) => {
      const query = ListQuery.safeParse(request.query);
      if (!query.success) return validationError(reply, request, issueFields(query.error));
      const { order = 'createdAt,asc', page = firstPage, perPage = 20 } = query.data;
      if (page < firstPage) return validationError(reply, request, ['page']);
      listReads += 1;
      const all = [...tasks.values()].sort((a, b) => a.createdAt - b.createdAt || a.seq - b.seq);
      if (order === 'createdAt,desc') all.reverse();
      const pageCount = Math.ceil(all.length / perPage);
      return reply.status(200).send({
        items: all.slice((page - firstPage) * perPage, (page - firstPage + 1) * perPage).map(serializeTask),
        paging: { page, perPage, pageCount, totalCount: all.length },
      });
    });

    app.get<{ Params: { id: string } }>('/api/tasks/:id', async (request, reply) => {
      const task = tasks.get(request.params.id);
      if (!task) return webFormError(reply, request, 404, 'NOT_FOUND', 'task not found');
      const stats = task.connection.stats;
      stats.polls += 1;
      stats.taskReads += 1;
      if (fault(reply, request, task.connection.faults.task, () => ({ id: task.id, status: task.status }), false)) return reply;
      readTask(task);
      return reply.status(200).send(serializeTask(task));
    });

    app.get<{ Params: { id: string } }>('/api/webForms/:id', async (request, reply) => {
      const w = webForms.get(request.params.id);
      if (!w) return webFormError(reply, request, 404, 'NOT_FOUND', 'web form not found');
      const stats = w.task.connection.stats;
      stats.polls += 1;
      stats.webFormReads += 1;
      if (fault(reply, request, w.task.connection.faults.webForm, () => ({ id: w.id, status: w.status }), false)) return reply;
      advanceWebForm(w);
      return reply.status(200).send(serializeWebForm(w));
    });

    app.get<{ Params: { id: string } }>('/api/v1/bankConnections/:id', async (request, reply) => {
      const c = connections.get(Number(request.params.id));
      if (!c || !/^\d+$/.test(request.params.id)) return accessError(reply, request, 404, 'UNKNOWN_ENTITY', 'bank connection not found');
      c.stats.polls += 1;
      c.stats.connectionReads += 1;
      if (fault(reply, request, c.faults.connection, () => ({ id: c.id, updateStatus: c.updateStatus }), true)) return reply;
      readConnection(c);
      return reply.status(200).send(serializeConnection(c));
    });

    app.get<{ Querystring: { ids?: string } }>('/api/v1/accounts', async (request, reply) => {
      const raw = typeof request.query.ids === 'string' ? request.query.ids : '';
      const ids = raw.split(',').filter((s) => s.length > 0);
      if (ids.length === 0 || ids.length > 1000 || ids.some((s) => !/^\d+$/.test(s))) {
        return accessError(reply, request, 400, 'BAD_REQUEST', 'invalid ids');
      }
      const found = ids.map((s) => accounts.get(Number(s))).filter((x): x is NonNullable<typeof x> => x !== undefined);
      const owner = found[0]?.connection;
      if (owner) {
        owner.stats.polls += 1;
        owner.stats.accountReads += 1;
        if (fault(reply, request, owner.faults.accounts, () => ({ accounts: found.map(({ account }) => ({ id: account.id })) }), true)) return reply;
      }
      for (const { account, connection } of found) readAccount(account, connection);
      return reply.status(200).send({ accounts: found.map(({ account, connection }) => serializeAccount(account, connection)) });
    });

    // The web form page: the user's visit, as the scenario scripts it.
    app.get<{ Params: { id: string } }>('/webform/:id', async (request, reply) => {
      const w = webForms.get(request.params.id);
      const page = (text: string) => reply.status(200).type('text/html').send(`<!doctype html><title>finAPI sandbox web form</title><p>${text}</p>`);
      if (!w) return reply.status(404).type('text/html').send('<!doctype html><title>finAPI sandbox web form</title><p>No such web form.</p>');
      expireIfDue(w);
      if (w.status !== 'NOT_YET_OPENED') return page('This web form can no longer be used.');
      w.task.connection.stats.webFormsOpened += 1;
      const spec = w.task.connection.def.webForm ?? { outcome: 'COMPLETED' };
      if (spec.outcome === 'EXPIRED') {
        finishWebForm(w, 'EXPIRED');
        return page('This web form has expired.');
      }
      w.status = 'IN_PROGRESS';
      w.readsLeft = spec.readsInProgress ?? 1;
      return page('Sandbox bank login: done.');
    });
  }

  function stats(): ProviderStats {
    const out: Record<string, Record<string, number | string>> = {};
    const totals: Record<string, number> = { connections: connections.size, listReads };
    for (const c of connections.values()) {
      out[String(c.id)] = { ...c.stats };
      for (const [name, value] of Object.entries(c.stats)) if (typeof value === 'number') totals[name] = (totals[name] ?? 0) + value;
    }
    return { totals, connections: out };
  }

  return {
    name: 'finapi',
    prefix: '/finapi',
    scenarios: FINAPI_SCENARIOS,
    register,
    stats,
    close() {
      closed = true;
    },
  };
}
