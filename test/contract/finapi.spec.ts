/**
 * Strict zod mirrors of the finAPI published OpenAPI specs, written from the specs' facts (required fields, enums,
 * nullability, formats), independent of the sandbox and of the adapter's own (lenient) schemas:
 * - Web Form 2.0 (v2.430.0): BankConnectionUpdateTaskDetails, Task, TaskPayload, WebFormInfo, TaskCallback,
 *   WebForm, Payload, TasksPage, Paging, Error, ValidationError;
 * - Access v1: BankConnection (Bank, BankInterface, BankConnectionInterface, UpdateResult, ...), Account
 *   (AccountInterface), AccountList, ErrorMessage, BadCredentialsError.
 * Objects are `.strict()`: a field the spec does not define is a contract violation here (the sandbox must not
 * invent fields a client could come to rely on). Public copies of the specs: `api/openapi.yaml` in the GitHub
 * repositories fastbill/go-finapi-webform2 and fastbill/go-finapi.
 */
import { z } from 'zod';

const int32 = z.number().int().min(-(2 ** 31)).max(2 ** 31 - 1);
const int64 = z.number().int();
/** Web Form 2.0 timestamps: `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (Z: RFC 822 offset such as `+0000`). */
export const webFormTimestamp = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{4}$/);
/** Access v1 timestamps: German local time `yyyy-MM-dd HH:mm:ss.SSS`. */
export const accessTimestamp = z.string().regex(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$/);
const uuid36 = z.string().length(36);
const httpsCallback = z
  .string()
  .min(0)
  .max(2048)
  .regex(/https:\/\/(www\.)?[-a-zA-Z0-9@:%._+~#=]{1,256}\.[a-zA-Z0-9()]{1,63}\b([-a-zA-Z0-9()@:%_+.~#?&/=]*)/);
const uniqueArray = <T extends z.ZodType>(item: T) => z.array(item).refine((a) => new Set(a).size === a.length, { message: 'uniqueItems' });

// ---- Web Form 2.0 --------------------------------------------------------------------------------------

export const TaskStatus = z.enum(['NOT_YET_STARTED', 'IN_PROGRESS', 'WEB_FORM_REQUIRED', 'COMPLETED', 'COMPLETED_WITH_ERROR']);
export const WebFormStatus = z.enum(['NOT_YET_OPENED', 'IN_PROGRESS', 'COMPLETED', 'COMPLETED_WITH_ERROR', 'EXPIRED', 'ABORTED']);
export const TaskErrorCode = z.enum(['BANK_SERVER_REJECTION', 'INTERNAL_ERROR', 'INVALID_TOKEN', 'UNEXPECTED_ACCESS_RESPONSE']);
export const WebFormErrorCode = z.enum([
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
]);
export const TaskAccountType = z.enum(['BAUSPAREN', 'CHECKING', 'CREDIT_CARD', 'LOAN', 'MEMBERSHIP', 'SAVINGS', 'SECURITY']);
export const ManageSavedSettings = z.enum(['CREDENTIALS', 'DEFAULT_TWO_STEP_PROCEDURE']);
const WebFormType = z.enum([
  'BANK_CONNECTION_IMPORT',
  'BANK_CONNECTION_UPDATE',
  'PAYMENT_WITH_ACCOUNT_ID',
  'STANDALONE_PAYMENT',
  'STANDING_ORDER',
  'DIRECT_DEBIT_WITH_ACCOUNT_ID',
]);

export const TaskCallbacks = z.object({ finalised: httpsCallback.nullish(), webFormRequired: httpsCallback.nullish() }).strict().nullable();
const UserMetadata = z
  .object({ ipAddress: z.string().max(64), deviceOs: z.string().max(1024), userAgent: z.string().max(1024) })
  .strict()
  .nullable();

export const BankConnectionUpdateTaskDetails = z
  .object({
    bankConnectionId: int64,
    importNewAccounts: z.boolean().nullish(),
    accountTypes: uniqueArray(TaskAccountType).nullish(),
    skipPositionsDownload: z.boolean().nullish(),
    loadOwnerData: z.boolean().nullish(),
    manageSavedSettings: uniqueArray(ManageSavedSettings).nullish(),
    callbacks: TaskCallbacks.optional(),
    profileId: uuid36.nullish(),
    redirectUrl: httpsCallback.min(1).nullish(),
    userMetadata: UserMetadata.optional(),
  })
  .strict();

export const WebFormInfo = z.object({ id: uuid36, url: z.string().min(1).max(2048), status: WebFormStatus }).strict().nullable();

export const TaskPayload = z
  .object({
    bankConnectionId: int64,
    webForm: WebFormInfo.optional(),
    errorCode: TaskErrorCode.nullish(),
  })
  .strict();

export const Task = z
  .object({ id: uuid36, createdAt: webFormTimestamp, type: z.enum(['BANK_CONNECTION_UPDATE']), status: TaskStatus, payload: TaskPayload })
  .strict();

export const TaskCallback = z.object({ taskId: uuid36, status: TaskStatus, webForm: WebFormInfo.optional() }).strict();

export const WebFormPayload = z
  .object({
    bankConnectionId: int64.nullish(),
    paymentId: int64.nullish(),
    standingOrderId: int64.nullish(),
    errorCode: WebFormErrorCode.nullish(),
  })
  .strict();

export const WebForm = z
  .object({
    id: uuid36,
    url: z.string().min(1).max(2048),
    createdAt: webFormTimestamp,
    expiresAt: webFormTimestamp,
    type: WebFormType,
    status: WebFormStatus,
    payload: WebFormPayload,
  })
  .strict();

export const Paging = z.object({ page: int32, perPage: int32.max(500), pageCount: int32, totalCount: int32 }).strict();
export const TasksPage = z.object({ items: z.array(Task).max(500), paging: Paging }).strict();

export const WebFormError = z
  .object({
    code: z.enum([
      'UNAUTHORIZED',
      'FORBIDDEN',
      'NOT_FOUND',
      'NOT_ALLOWED',
      'BANK_NOT_SUPPORTED',
      'BANK_NOT_UNIQUE',
      'ENTITY_EXISTS',
      'MANDATOR_MISCONFIGURATION',
      'NOT_SUPPORTED',
      'PAYMENT_NOT_SUPPORTED',
      'INVALID_REDIRECT_URL',
      'LOCKED',
      'INTERNAL_SERVER_ERROR',
    ]),
    description: z.string(),
    timestamp: webFormTimestamp,
    endpoint: z.string(),
  })
  .strict();

export const ValidationError = z
  .object({
    errors: z.array(z.object({ field: z.string(), message: z.string() }).strict()).min(1),
    timestamp: webFormTimestamp,
    endpoint: z.string(),
  })
  .strict();

// ---- Access v1 -----------------------------------------------------------------------------------------

export const BankingInterface = z.enum(['WEB_SCRAPER', 'FINTS_SERVER', 'XS2A']);
export const AccountStatus = z.enum(['UPDATED', 'UPDATED_FIXED', 'DOWNLOAD_IN_PROGRESS', 'DOWNLOAD_FAILED', 'DEPRECATED']);
export const AccountType = z.enum(['Checking', 'Savings', 'CreditCard', 'Security', 'Loan', 'Pocket', 'Membership', 'Bausparen']);
export const UpdateResultStatus = z.enum(['OK', 'BANK_SERVER_REJECTION', 'INTERNAL_SERVER_ERROR']);
const ErrorType = z.enum(['BUSINESS', 'TECHNICAL']);
const AccountCapability = z.enum([
  'DATA_DOWNLOAD',
  'IBAN_ONLY_SEPA_MONEY_TRANSFER',
  'IBAN_ONLY_SEPA_DIRECT_DEBIT',
  'SEPA_MONEY_TRANSFER',
  'SEPA_COLLECTIVE_MONEY_TRANSFER',
  'SEPA_BASIC_DIRECT_DEBIT',
  'SEPA_BASIC_COLLECTIVE_DIRECT_DEBIT',
  'SEPA_B2B_DIRECT_DEBIT',
  'SEPA_B2B_COLLECTIVE_DIRECT_DEBIT',
]);
const SupportedOrder = z.enum([
  'SEPA_MONEY_TRANSFER',
  'SEPA_COLLECTIVE_MONEY_TRANSFER',
  'SEPA_BASIC_DIRECT_DEBIT',
  'SEPA_BASIC_COLLECTIVE_DIRECT_DEBIT',
  'SEPA_B2B_DIRECT_DEBIT',
  'SEPA_B2B_COLLECTIVE_DIRECT_DEBIT',
]);

export const UpdateResult = z
  .object({ result: UpdateResultStatus, errorMessage: z.string().nullable(), errorType: ErrorType.nullable(), timestamp: accessTimestamp })
  .strict();

const TwoStepProcedure = z
  .object({ procedureId: z.string(), procedureName: z.string(), procedureChallengeType: z.string().nullable(), implicitExecute: z.boolean() })
  .strict();
const LoginCredentialResource = z.object({ label: z.string(), value: z.string().nullable() }).strict();
const BankConsent = z.object({ status: z.enum(['PRESENT', 'NOT_PRESENT']), expiresAt: z.string().nullable() }).strict();

export const BankConnectionInterface = z
  .object({
    interface: BankingInterface,
    loginCredentials: z.array(LoginCredentialResource),
    defaultTwoStepProcedureId: z.string().nullable(),
    twoStepProcedures: z.array(TwoStepProcedure),
    aisConsent: BankConsent.nullable(),
    lastManualUpdate: UpdateResult.nullable(),
    lastAutoUpdate: UpdateResult.nullable(),
    userActionRequired: z.boolean(),
    maxDaysForDownload: int32,
  })
  .strict();

const health = int32.min(0).max(100);
const BankInterface = z
  .object({
    interface: BankingInterface,
    tppAuthenticationGroup: z.object({ id: int64, name: z.string() }).strict().nullable(),
    loginCredentials: z.array(z.object({ label: z.string(), isSecret: z.boolean(), isVolatile: z.boolean() }).strict()),
    properties: uniqueArray(z.enum(['REDIRECT_APPROACH', 'DECOUPLED_APPROACH', 'DETAILED_CONSENT'])),
    loginHint: z.string().nullable(),
    health,
    lastCommunicationAttempt: z.string().nullable(),
    lastSuccessfulCommunication: z.string().nullable(),
    isMoneyTransferSupported: z.boolean(),
    isAisSupported: z.boolean(),
    paymentCapabilities: z
      .object({
        sepaMoneyTransfer: z.boolean(),
        sepaInstantMoneyTransfer: z.boolean(),
        sepaCollectiveMoneyTransfer: z.boolean(),
        sepaFutureDatedMoneyTransfer: z.boolean(),
        sepaStandingOrder: z.boolean(),
      })
      .strict(),
    aisAccountTypes: z.array(AccountType),
  })
  .strict();

const Bank = z
  .object({
    id: int64,
    name: z.string(),
    loginHint: z.string().nullable(),
    bic: z.string().nullable(),
    blzs: z.array(z.string()),
    blz: z.string(),
    location: z.string().nullable(),
    city: z.string().nullable(),
    isSupported: z.boolean(),
    isTestBank: z.boolean(),
    popularity: int32,
    health,
    loginFieldUserId: z.string().nullable(),
    loginFieldCustomerId: z.string().nullable(),
    loginFieldPin: z.string().nullable(),
    pinsAreVolatile: z.boolean(),
    isCustomerIdPassword: z.boolean(),
    supportedDataSources: z.array(z.enum(['WEB_SCRAPER', 'FINTS_SERVER'])),
    interfaces: z.array(BankInterface),
    bankGroup: z.object({ id: int64, name: z.string() }).strict().nullable(),
    lastCommunicationAttempt: z.string().nullable(),
    lastSuccessfulCommunication: z.string().nullable(),
    isBeta: z.boolean(),
  })
  .strict();

const nullableString = z.string().nullable();
const BankConnectionOwner = z
  .object({
    firstName: nullableString,
    lastName: nullableString,
    salutation: nullableString,
    title: nullableString,
    email: nullableString,
    dateOfBirth: nullableString,
    postCode: nullableString,
    country: nullableString,
    city: nullableString,
    street: nullableString,
    houseNumber: nullableString,
  })
  .strict();

export const BankConnection = z
  .object({
    id: int64,
    bankId: int64,
    name: z.string().nullable(),
    bankingUserId: z.string().nullable(),
    bankingCustomerId: z.string().nullable(),
    bankingPin: z.string().nullable(),
    type: z.enum(['ONLINE', 'DEMO']),
    updateStatus: z.enum(['IN_PROGRESS', 'READY']),
    categorizationStatus: z.enum(['PENDING', 'IN_PROGRESS', 'READY']),
    lastManualUpdate: UpdateResult.nullable(),
    lastAutoUpdate: UpdateResult.nullable(),
    ibanOnlyMoneyTransferSupported: z.boolean(),
    ibanOnlyDirectDebitSupported: z.boolean(),
    collectiveMoneyTransferSupported: z.boolean(),
    defaultTwoStepProcedureId: z.string().nullable(),
    twoStepProcedures: z.array(TwoStepProcedure),
    interfaces: z.array(BankConnectionInterface),
    accountIds: z.array(int64),
    owners: z.array(BankConnectionOwner).nullable(),
    bank: Bank,
    furtherLoginNotRecommended: z.boolean(),
  })
  .strict();

export const AccountInterface = z
  .object({
    interface: BankingInterface,
    status: AccountStatus,
    capabilities: uniqueArray(AccountCapability),
    paymentCapabilities: z.object({ sepaInstantMoneyTransfer: z.boolean() }).strict(),
    lastSuccessfulUpdate: z.string().nullable(),
    lastUpdateAttempt: z.string().nullable(),
  })
  .strict();

export const Account = z
  .object({
    id: int64,
    bankConnectionId: int64,
    accountName: z.string().nullable(),
    iban: z.string().nullable(),
    accountNumber: z.string(),
    subAccountNumber: z.string().nullable(),
    accountHolderName: z.string().nullable(),
    accountHolderId: z.string().nullable(),
    accountCurrency: z.string().nullable(),
    accountTypeId: int64,
    accountTypeName: z.string(),
    accountType: AccountType,
    balance: z.number().nullable(),
    overdraft: z.number().nullable(),
    overdraftLimit: z.number().nullable(),
    availableFunds: z.number().nullable(),
    lastSuccessfulUpdate: z.string().nullable(),
    lastUpdateAttempt: z.string().nullable(),
    isNew: z.boolean(),
    status: AccountStatus,
    supportedOrders: uniqueArray(SupportedOrder),
    interfaces: z.array(AccountInterface),
    clearingAccounts: z.array(z.object({ clearingAccountId: z.string(), clearingAccountName: z.string() }).strict()),
    isSeized: z.boolean(),
  })
  .strict();

export const AccountList = z.object({ accounts: z.array(Account) }).strict();

const AccessErrorCode = z.enum([
  'ADDITIONAL_AUTHENTICATION_REQUIRED',
  'BAD_REQUEST',
  'BANK_SERVER_REJECTION',
  'COLLECTIVE_MONEY_TRANSFER_NOT_SUPPORTED',
  'ENTITY_EXISTS',
  'FORBIDDEN',
  'IBAN_ONLY_DIRECT_DEBIT_NOT_SUPPORTED',
  'IBAN_ONLY_MONEY_TRANSFER_NOT_SUPPORTED',
  'ILLEGAL_ENTITY_STATE',
  'ILLEGAL_FIELD_VALUE',
  'ILLEGAL_PAGE_SIZE',
  'INVALID_CONSENT',
  'INVALID_FILTER_OPTIONS',
  'INVALID_TOKEN',
  'INVALID_TWO_STEP_PROCEDURE',
  'LOCKED',
  'LOGIN_FIELDS_MISMATCH',
  'METHOD_NOT_ALLOWED',
  'MISSING_CREDENTIALS',
  'MISSING_FIELD',
  'MISSING_TWO_STEP_PROCEDURE',
  'NO_ACCOUNTS_FOR_TYPE_LIST',
  'NO_CERTIFICATE',
  'NO_EXISTING_CHALLENGE',
  'NO_TPP_CLIENT_CREDENTIALS',
  'NO_PSU_METADATA',
  'TOO_MANY_IDS',
  'UNAUTHORIZED_ACCESS',
  'UNEXPECTED_ERROR',
  'UNKNOWN_ENTITY',
  'UNSUPPORTED_BANK',
  'UNSUPPORTED_FEATURE',
  'UNSUPPORTED_MEDIA_TYPE',
  'UNSUPPORTED_ORDER',
  'USER_ALREADY_VERIFIED',
  'USER_NOT_VERIFIED',
  'WEB_FORM_ABORTED',
  'WEB_FORM_REQUIRED',
]);

export const ErrorMessage = z
  .object({
    errors: z.array(
      z
        .object({ message: z.string().nullable(), code: AccessErrorCode, type: ErrorType, multiStepAuthentication: z.unknown().nullable() })
        .strict(),
    ),
    date: z.string(),
    requestId: z.string(),
    endpoint: z.string(),
    authContext: z.string(),
    bank: z.string().nullable(),
  })
  .strict();

export const BadCredentialsError = z.object({ error: z.string(), error_description: z.string() }).strict();

/** The schema of a response, by the spec's operation and HTTP status (undefined: the spec documents no body). */
export function responseSchema(method: string, path: string, status: number): z.ZodType | undefined {
  const p = path.split('?')[0]!;
  if (p.startsWith('/api/v1/')) {
    if (status === 401) return BadCredentialsError;
    if (status >= 400) return ErrorMessage;
    if (/^\/api\/v1\/bankConnections\/\d+$/.test(p)) return BankConnection;
    if (p === '/api/v1/accounts') return AccountList;
    return undefined;
  }
  if (status === 400) return ValidationError;
  if (status >= 400) return WebFormError;
  if (method === 'POST' && p === '/api/tasks/backgroundUpdate') return Task;
  if (method === 'GET' && p === '/api/tasks') return TasksPage;
  if (method === 'GET' && /^\/api\/tasks\/[^/]+$/.test(p)) return Task;
  if (method === 'GET' && /^\/api\/webForms\/[^/]+$/.test(p)) return WebForm;
  return undefined;
}
