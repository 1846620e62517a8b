/**
 * finAPI sandbox wire format: request schemas, finAPI's time formats, error bodies (Web Form 2.0 Error /
 * ValidationError, Access v1 ErrorMessage) and the response bodies, with every field the published specs require.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { V1AccountType } from './scenarios.js';
import type { AccountState, ConnectionState, TaskState, WebFormState } from './state.js';

export const CreateConnectionBody = z.object({ scenario: z.string().min(1).max(64).optional() });
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
export const BackgroundUpdateBody = z.object({
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
export const ListQuery = z.object({
  order: z.enum(['createdAt', 'createdAt,asc', 'createdAt,desc']).optional(),
  page: z.coerce.number().int().min(0).max(10_000).optional(),
  perPage: z.coerce.number().int().min(1).max(500).optional(),
});

/** finAPI's `yyyy-MM-dd'T'HH:mm:ss.SSSZ`, e.g. `2025-03-01T10:00:00.000+0000`. */
export function finapiTime(ms: number): string {
  return new Date(ms).toISOString().replace('Z', '+0000');
}

/** Access v1 update timestamps: German local time without offset, `yyyy-MM-dd HH:mm:ss.SSS`. */
export function germanLocalTime(ms: number): string {
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

export function webFormError(reply: FastifyReply, request: FastifyRequest, status: number, code: string, description: string): FastifyReply {
  return reply.status(status).send({ code, description, timestamp: finapiTime(Date.now()), endpoint: `${request.method} ${request.routeOptions.url ?? ''}` });
}

/** Web Form 2.0 ValidationError (400). */
export function validationError(reply: FastifyReply, request: FastifyRequest, fields: readonly string[]): FastifyReply {
  return reply.status(400).send({
    errors: fields.map((field) => ({ field, message: 'invalid value' })),
    timestamp: finapiTime(Date.now()),
    endpoint: `${request.method} ${request.routeOptions.url ?? ''}`,
  });
}

export function issueFields(error: z.ZodError): string[] {
  return [...new Set(error.issues.map((issue) => issue.path.join('.') || '(root)'))];
}

/** Access v1 ErrorMessage. */
export function accessError(reply: FastifyReply, request: FastifyRequest, status: number, code: string, message: string): FastifyReply {
  return reply.status(status).send({
    errors: [{ message, code, type: status >= 500 ? 'TECHNICAL' : 'BUSINESS', multiStepAuthentication: null }],
    date: germanLocalTime(Date.now()),
    requestId: randomUUID(),
    endpoint: `${request.method} ${request.routeOptions.url ?? ''}`,
    authContext: 'sandbox-user/sandbox-client',
    bank: null,
  });
}

// ---- serialisation: the spec's bodies --------------------------------------------------------------------

export const webFormInfo = (w: WebFormState) => ({ id: w.id, url: w.url, status: w.status });

export function serializeTask(task: TaskState) {
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

export function serializeWebForm(w: WebFormState) {
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
export function serializeConnection(c: ConnectionState) {
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
export function serializeAccount(a: AccountState, c: ConnectionState) {
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
