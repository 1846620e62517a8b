/**
 * zod schemas of the finAPI endpoints banksync uses (camelCase, as finAPI sends them):
 * - Web Form 2.0 API (seed 001): `POST /api/tasks/backgroundUpdate`, `GET /api/tasks`, `GET /api/tasks/{id}`,
 *   `GET /api/webForms/{id}`, and the task callback body `{ taskId, status, webForm }`;
 * - Access API v1 (seed 004): `GET /api/v1/bankConnections/{id}`, `GET /api/v1/accounts?ids=...`.
 *
 * Enum-like fields (task, web form, account, update and categorization statuses, error codes) are parsed as
 * plain strings: a value finAPI adds later must reach the mapping, which rejects it with
 * UnknownProviderStatusError instead of a generic schema error (and never maps it to success).
 */
import { z } from 'zod';
import {
  FINAPI_ACCOUNT_STATUSES,
  FINAPI_CATEGORIZATION_STATUSES,
  FINAPI_TASK_STATUSES,
  FINAPI_UPDATE_STATUSES,
  FINAPI_WEB_FORM_STATUSES,
} from '../../../machines/finapiTask.js';
import { parseFinapiTime } from './time.js';

const nonEmpty = z.string().min(1);
/**
 * finAPI timestamps: Web Form 2.0 `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (e.g. `2021-03-02T14:11:08.973+0000`), Access v1
 * German local time without offset; read with parseFinapiTime (Europe/Berlin when no offset, never the host zone).
 */
const timestamp = z.string().refine((value) => parseFinapiTime(value) !== null, { message: 'Invalid timestamp' });
/** finAPI Access ids are int64. */
const id = z.number().int().nonnegative();

export const FinapiTaskStatus = z.enum(FINAPI_TASK_STATUSES);
export const FinapiWebFormStatus = z.enum(FINAPI_WEB_FORM_STATUSES);
export const FinapiUpdateStatus = z.enum(FINAPI_UPDATE_STATUSES);
export const FinapiCategorizationStatus = z.enum(FINAPI_CATEGORIZATION_STATUSES);
export const FinapiAccountStatus = z.enum(FINAPI_ACCOUNT_STATUSES);

/** `accountTypes` of the background update (Web Form 2.0 AccountType). */
export const FinapiAccountType = z.enum(['BAUSPAREN', 'CHECKING', 'CREDIT_CARD', 'LOAN', 'MEMBERSHIP', 'SAVINGS', 'SECURITY']);
export type FinapiAccountType = z.infer<typeof FinapiAccountType>;
export const FinapiManageSavedSetting = z.enum(['CREDENTIALS', 'DEFAULT_TWO_STEP_PROCEDURE']);
/** Access v1 `Account.accountType`. */
export const FinapiV1AccountType = z.enum(['Checking', 'Savings', 'CreditCard', 'Security', 'Loan', 'Pocket', 'Membership', 'Bausparen']);
/** Access v1 `BankingInterface`. */
export const FinapiBankingInterface = z.enum(['WEB_SCRAPER', 'FINTS_SERVER', 'XS2A']);
/** Access v1 `UpdateResultStatus`. */
export const FinapiUpdateResultStatus = z.enum(['OK', 'BANK_SERVER_REJECTION', 'INTERNAL_SERVER_ERROR']);

// ---- requests ------------------------------------------------------------------------------------------

/** The spec's callback URL pattern (TaskCallbacks), anchored: only HTTPS URLs with a dotted host name. */
const HTTPS_CALLBACK = /^https:\/\/(www\.)?[-a-zA-Z0-9@:%._+~#=]{1,256}\.[a-zA-Z0-9()]{1,63}\b([-a-zA-Z0-9()@:%_+.~#?&/=]*)$/;
export const FinapiCallbackUrl = z.string().max(2048).regex(HTTPS_CALLBACK, { message: 'must be an https URL (finAPI allows only HTTPS callbacks)' });

export const FinapiTaskCallbacks = z
  .object({
    /** Sent when the update can no longer run in the background (not for an immediate web form). */
    webFormRequired: FinapiCallbackUrl.optional(),
    /** Sent when the task (or its web form) is finalised. */
    finalised: FinapiCallbackUrl.optional(),
  })
  .strict();
export type FinapiTaskCallbacks = z.infer<typeof FinapiTaskCallbacks>;

const unique = <T>(values: readonly T[]) => new Set(values).size === values.length;

/**
 * Provider-specific sync options (`TriggerRequest.options`), named as the Web Form 2.0 request
 * (BankConnectionUpdateTaskDetails) names them, validated before anything is sent. Unknown keys are rejected: a
 * misspelt option (or a name finAPI does not know, such as `editSavedSettings`) must not be silently ignored.
 */
export const FinapiTriggerOptions = z
  .object({
    /** Look for and import accounts not imported yet. */
    importNewAccounts: z.boolean().optional(),
    /** Only with importNewAccounts true (finAPI ignores it otherwise): the types of new accounts to import. */
    accountTypes: z.array(FinapiAccountType).min(1).max(7).refine(unique, { message: 'must not repeat a type' }).optional(),
    /** ['CREDENTIALS']: the user edits the stored credentials; the task starts in WEB_FORM_REQUIRED. */
    manageSavedSettings: z.array(FinapiManageSavedSetting).min(1).max(2).refine(unique, { message: 'must not repeat a setting' }).optional(),
    callbacks: FinapiTaskCallbacks.optional(),
  })
  .strict()
  .refine((options) => options.accountTypes === undefined || options.importNewAccounts === true, {
    message: 'accountTypes applies only with importNewAccounts true',
    path: ['accountTypes'],
  });
export type FinapiTriggerOptions = z.infer<typeof FinapiTriggerOptions>;

export const FinapiBackgroundUpdateRequest = z
  .object({
    bankConnectionId: id,
    importNewAccounts: z.boolean().optional(),
    accountTypes: z.array(FinapiAccountType).refine(unique).optional(),
    manageSavedSettings: z.array(FinapiManageSavedSetting).refine(unique).optional(),
    callbacks: FinapiTaskCallbacks.optional(),
  })
  .strict();
export type FinapiBackgroundUpdateRequest = z.infer<typeof FinapiBackgroundUpdateRequest>;

// ---- Web Form 2.0 responses ----------------------------------------------------------------------------

export const FinapiWebFormInfo = z.object({
  id: nonEmpty,
  url: nonEmpty,
  status: nonEmpty,
});
export type FinapiWebFormInfo = z.infer<typeof FinapiWebFormInfo>;

export const FinapiTaskPayload = z.object({
  /** Required by the spec ("initialised as soon as the task process is started"); the adapter rejects a task without it. */
  bankConnectionId: id.nullish(),
  webForm: FinapiWebFormInfo.nullish(),
  errorCode: z.string().nullish(),
});

export const FinapiTask = z.object({
  id: nonEmpty,
  createdAt: timestamp,
  type: z.string().optional(),
  status: nonEmpty,
  payload: FinapiTaskPayload,
});
export type FinapiTask = z.infer<typeof FinapiTask>;

/** Web Form 2.0 paging: the spec's own example is 0-based (`page: 0`) while the `page` query defaults to 1. */
export const FinapiPaging = z.object({
  page: z.number().int().nonnegative(),
  perPage: z.number().int().positive(),
  pageCount: z.number().int().nonnegative(),
  totalCount: z.number().int().nonnegative(),
});

export const FinapiTasksPage = z.object({ items: z.array(FinapiTask), paging: FinapiPaging });
export type FinapiTasksPage = z.infer<typeof FinapiTasksPage>;

export const FinapiWebForm = z.object({
  id: nonEmpty,
  url: nonEmpty,
  createdAt: timestamp,
  expiresAt: timestamp,
  type: z.string().optional(),
  status: nonEmpty,
  payload: z
    .object({
      bankConnectionId: id.nullish(),
      errorCode: z.string().nullish(),
    })
    .nullish(),
});
export type FinapiWebForm = z.infer<typeof FinapiWebForm>;

/** Body POSTed to `callbacks.webFormRequired` / `callbacks.finalised` (TaskCallback). */
export const FinapiTaskCallback = z.object({
  taskId: nonEmpty,
  status: nonEmpty,
  webForm: FinapiWebFormInfo.nullish(),
});
export type FinapiTaskCallback = z.infer<typeof FinapiTaskCallback>;

/** Web Form 2.0 error body (4xx/5xx), e.g. `{ code: 'LOCKED', description, timestamp, endpoint }`. */
export const FinapiErrorResponse = z.object({
  code: z.string(),
  description: z.string().optional(),
});

// ---- Access v1 responses -------------------------------------------------------------------------------

export const FinapiUpdateResult = z.object({
  /** OK | BANK_SERVER_REJECTION | INTERNAL_SERVER_ERROR */
  result: z.string(),
  errorMessage: z.string().nullish(),
  /** BUSINESS | TECHNICAL */
  errorType: z.string().nullish(),
  /** German local time without offset, e.g. `2025-03-01 11:00:00.000`. */
  timestamp,
});
export type FinapiUpdateResult = z.infer<typeof FinapiUpdateResult>;

export const FinapiConnectionInterface = z.object({
  interface: z.string(),
  lastManualUpdate: FinapiUpdateResult.nullish(),
  lastAutoUpdate: FinapiUpdateResult.nullish(),
  /** true: finAPI stopped auto-updates of this interface until the user acts. */
  userActionRequired: z.boolean().optional(),
});
export type FinapiConnectionInterface = z.infer<typeof FinapiConnectionInterface>;

export const FinapiBankConnection = z.object({
  id,
  name: z.string().nullish(),
  updateStatus: nonEmpty,
  categorizationStatus: nonEmpty,
  interfaces: z.array(FinapiConnectionInterface).optional(),
  accountIds: z.array(id),
});
export type FinapiBankConnection = z.infer<typeof FinapiBankConnection>;

/** Per-interface state of an account (Access v1 AccountInterface); `status` replaces the deprecated Account.status. */
export const FinapiAccountInterface = z.object({
  interface: z.string(),
  status: nonEmpty,
});

export const FinapiAccount = z.object({
  id,
  bankConnectionId: id,
  accountName: z.string().nullish(),
  iban: z.string().nullish(),
  /** Checking | Savings | CreditCard | Security | Loan | Pocket | Membership | Bausparen (checked by the mapping). */
  accountType: z.string().nullish(),
  isNew: z.boolean(),
  /** Deprecated by finAPI in favour of `interfaces[].status`; read only when an account lists no interface. */
  status: z.string().nullish(),
  interfaces: z.array(FinapiAccountInterface).nullish(),
});
export type FinapiAccount = z.infer<typeof FinapiAccount>;

export const FinapiAccountList = z.object({ accounts: z.array(FinapiAccount) });
export type FinapiAccountList = z.infer<typeof FinapiAccountList>;

/** Access v1 error body: `{ errors: [{ message, code, type }], date, requestId, endpoint }`. */
export const FinapiAccessErrorResponse = z.object({
  errors: z.array(z.object({ code: z.string(), type: z.string().optional() })).min(1),
});

/** Access v1 401 body (BadCredentialsError), e.g. `{ error: 'invalid_token', error_description }`. */
export const FinapiBadCredentialsResponse = z.object({ error: z.string() });
