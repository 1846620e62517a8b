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

const nonEmpty = z.string().min(1);
/** finAPI timestamps: `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (e.g. `2021-03-02T14:11:08.973+0000`); normalised by the mapping. */
const timestamp = z.string().refine((value) => Number.isFinite(Date.parse(value)), { message: 'Invalid timestamp' });
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
export const FinapiImportNewAccountsMode = z.enum(['SKIP', 'CONDITIONAL', 'FORCED']);
export const FinapiSavedSetting = z.enum(['CREDENTIALS', 'DEFAULT_TWO_STEP_PROCEDURE']);

// ---- requests ------------------------------------------------------------------------------------------

/** Callback URLs: finAPI requires HTTPS; plain HTTP is accepted for loopback hosts only (sandbox, tests). */
const callbackUrl = z
  .string()
  .max(2048)
  .refine(
    (value) => {
      try {
        const url = new URL(value);
        if (url.protocol === 'https:') return true;
        return url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
      } catch {
        return false;
      }
    },
    { message: 'must be an https URL (http only for loopback hosts)' },
  );

export const FinapiTaskCallbacks = z
  .object({
    /** Sent when the update can no longer run in the background (not for an immediate web form). */
    webFormRequired: callbackUrl.optional(),
    /** Sent when the task (or its web form) is finalised. */
    finalised: callbackUrl.optional(),
  })
  .strict();
export type FinapiTaskCallbacks = z.infer<typeof FinapiTaskCallbacks>;

/**
 * Provider-specific sync options (`TriggerRequest.options`), validated before anything is sent. Unknown keys
 * are rejected: a misspelt option must not silently change what gets updated.
 */
export const FinapiTriggerOptions = z
  .object({
    /** Deprecated by finAPI in favour of importNewAccountsMode (true = CONDITIONAL). */
    importNewAccounts: z.boolean().optional(),
    importNewAccountsMode: FinapiImportNewAccountsMode.optional(),
    accountTypes: z.array(FinapiAccountType).min(1).max(7).optional(),
    /** ['CREDENTIALS']: the user edits the stored credentials; the task starts in WEB_FORM_REQUIRED. */
    editSavedSettings: z.array(FinapiSavedSetting).min(1).max(2).optional(),
    callbacks: FinapiTaskCallbacks.optional(),
  })
  .strict();
export type FinapiTriggerOptions = z.infer<typeof FinapiTriggerOptions>;

export const FinapiBackgroundUpdateRequest = z
  .object({
    bankConnectionId: id,
    importNewAccounts: z.boolean().optional(),
    importNewAccountsMode: FinapiImportNewAccountsMode.optional(),
    accountTypes: z.array(FinapiAccountType).optional(),
    editSavedSettings: z.array(FinapiSavedSetting).optional(),
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
  /** Initialised as soon as the task process is started. */
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

export const FinapiPaging = z.object({
  page: z.number().int().positive(),
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
  timestamp: z.string(),
});

export const FinapiConnectionInterface = z.object({
  interface: z.string(),
  lastManualUpdate: FinapiUpdateResult.nullish(),
  lastAutoUpdate: FinapiUpdateResult.nullish(),
  /** true: finAPI stopped auto-updates of this interface until the user acts. */
  userActionRequired: z.boolean().optional(),
});

export const FinapiBankConnection = z.object({
  id,
  name: z.string().nullish(),
  updateStatus: nonEmpty,
  categorizationStatus: nonEmpty,
  interfaces: z.array(FinapiConnectionInterface).optional(),
  accountIds: z.array(id),
});
export type FinapiBankConnection = z.infer<typeof FinapiBankConnection>;

export const FinapiAccount = z.object({
  id,
  bankConnectionId: id,
  accountName: z.string().nullish(),
  iban: z.string().nullish(),
  /** Checking | Savings | CreditCard | Security | Loan | Pocket | Membership | Bausparen */
  accountType: z.string().nullish(),
  isNew: z.boolean(),
  status: nonEmpty,
});
export type FinapiAccount = z.infer<typeof FinapiAccount>;

export const FinapiAccountList = z.object({ accounts: z.array(FinapiAccount) });
export type FinapiAccountList = z.infer<typeof FinapiAccountList>;

/** Access v1 error body: `{ errors: [{ message, code, type }], date, requestId, endpoint }`. */
export const FinapiAccessErrorResponse = z.object({
  errors: z.array(z.object({ code: z.string(), type: z.string().optional() })).min(1),
});
