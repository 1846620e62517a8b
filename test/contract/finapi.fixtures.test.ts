/**
 * finAPI fixture suite, built from the published specs (not from the sandbox): every TaskStatus x web form
 * (absent, null, each WebFormStatus) x task errorCode (absent, null, each documented code) combination, with every
 * web form errorCode where the web form's own reading decides; every AccountStatus per interface; optional fields
 * absent and null; the spec's own examples; 0- and 1-based paging; Europe/Berlin timestamps. Each fixture is first
 * checked against the strict spec mirror (spec-valid or deliberately not), then read by the adapter's own parsing
 * and mapping, and compared with the canonical outcome banksync decided for it (the table below is the closing
 * note's mapping). A spec-valid payload is never read as a success it is not; a spec-invalid one never as success.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { Observation, SyncErrorCode } from '../../machines/canonical.js';
import {
  FINAPI_ACCOUNT_STATUSES,
  FINAPI_TASK_ERROR_CODES,
  FINAPI_TASK_STATUSES,
  FINAPI_WEB_FORM_ERROR_CODES,
  FINAPI_WEB_FORM_STATUSES,
} from '../../machines/finapiTask.js';
import { InvalidProviderResponseError, ProviderError, UnknownProviderStatusError } from '../../src/providers/errors.js';
import { FinapiReading, accountsEvent, connectionEvent, createFinapiAdapter, finapiSchemas, taskEvent, webFormEvent } from '../../src/providers/finapi/index.js';
import { parseFinapiTime } from '../../src/providers/finapi/time.js';
import * as spec from './finapi.spec.js';

const NOW = Date.parse('2025-03-01T10:00:00.000Z');
const TASK_ID = '946db09e-5bfc-11eb-ae93-0242ac130002';
const WEB_FORM_ID = '31c508d8-51da-11eb-ae93-0242ac130002';
const CONNECTION_ID = 101;

type TaskStatus = (typeof spec.TaskStatus.options)[number];
type WebFormStatus = (typeof spec.WebFormStatus.options)[number];
type Outcome =
  | { status: 'QUEUED' | 'RUNNING' | 'AWAIT_AUTH' }
  | { status: 'COMPLETED' }
  | { status: 'FAILED'; code: SyncErrorCode; retryable: boolean; userActionRequired: boolean; providerCode?: string }
  | { status: 'INVALID' }
  | { status: 'UNKNOWN' };

// ---- banksync's decisions per documented error code (task: 4 codes, web form: 11) -----------------------------

const NOT_RETRYABLE = { retryable: false, userActionRequired: false } as const;
export const ERROR_CODE_OUTCOMES: Record<string, { code: SyncErrorCode; retryable: boolean; userActionRequired: boolean }> = {
  BANK_SERVER_REJECTION: { code: 'BANK_REJECTED', retryable: false, userActionRequired: true },
  INTERRUPTED: { code: 'CANCELLED', retryable: false, userActionRequired: true },
  INTERNAL_ERROR: { code: 'PROVIDER_ERROR', retryable: true, userActionRequired: false },
  INVALID_TOKEN: { code: 'PROVIDER_ERROR', ...NOT_RETRYABLE },
  UNEXPECTED_ACCESS_RESPONSE: { code: 'PROVIDER_ERROR', ...NOT_RETRYABLE },
  ENTITY_EXISTS: { code: 'PROVIDER_ERROR', ...NOT_RETRYABLE },
  MANDATOR_MISCONFIGURATION: { code: 'PROVIDER_ERROR', ...NOT_RETRYABLE },
  NO_ACCOUNTS_FOR_TYPE_LIST: { code: 'PROVIDER_ERROR', ...NOT_RETRYABLE },
  UNDETERMINED_BANK: { code: 'PROVIDER_ERROR', ...NOT_RETRYABLE },
  UNSUPPORTED_FEATURE: { code: 'PROVIDER_ERROR', ...NOT_RETRYABLE },
  UNSUPPORTED_ORDER: { code: 'PROVIDER_ERROR', ...NOT_RETRYABLE },
};

function failure(code: string | null): Outcome {
  if (code === null) return { status: 'FAILED', code: 'PROVIDER_ERROR', ...NOT_RETRYABLE };
  return { status: 'FAILED', ...ERROR_CODE_OUTCOMES[code]!, providerCode: code };
}
const CANCELLED: Outcome = { status: 'FAILED', code: 'CANCELLED', retryable: false, userActionRequired: true, providerCode: 'ABORTED' };
const EXPIRED: Outcome = { status: 'FAILED', code: 'CHALLENGE_EXPIRED', retryable: false, userActionRequired: true, providerCode: 'EXPIRED' };

/**
 * The decided reading of one poll: the task, and (when the task leaves it to its web form's own reading) the web
 * form GET answer with `webFormErrorCode`.
 */
function expected(status: TaskStatus, webForm: WebFormStatus | null | undefined, taskCode: string | null | undefined, webFormErrorCode: string | null): Outcome {
  const code = taskCode ?? null;
  const final = status === 'COMPLETED' || status === 'COMPLETED_WITH_ERROR';
  if (webForm === 'ABORTED') return CANCELLED;
  if (webForm === 'EXPIRED') return EXPIRED;
  if (webForm === 'COMPLETED_WITH_ERROR') return failure(webFormErrorCode);
  if (!final) {
    if (webForm === 'NOT_YET_OPENED' || webForm === 'IN_PROGRESS') return { status: 'AWAIT_AUTH' };
    if (webForm === 'COMPLETED') return { status: 'RUNNING' }; // post-processing (Access v1) follows
    if (status === 'WEB_FORM_REQUIRED') return { status: 'INVALID' }; // the spec allows no web form; nothing to show the user
    return { status: status === 'NOT_YET_STARTED' ? 'QUEUED' : 'RUNNING' };
  }
  // A final task whose web form is still open contradicts itself: never success.
  if (webForm === 'NOT_YET_OPENED' || webForm === 'IN_PROGRESS') return { status: 'FAILED', code: 'PROVIDER_ERROR', ...NOT_RETRYABLE, providerCode: webForm };
  if (status === 'COMPLETED') return code === null ? { status: 'RUNNING' } : failure(code);
  return failure(code);
}

// ---- the adapter's reading of fixtures ------------------------------------------------------------------------

function outcomeOf(read: () => Observation): Outcome {
  try {
    const o = read();
    if (o.status !== 'FAILED') return { status: o.status };
    const { code, retryable, userActionRequired, providerCode } = o.error;
    return { status: 'FAILED', code, retryable, userActionRequired, ...(providerCode ? { providerCode } : {}) };
  } catch (error) {
    if (error instanceof UnknownProviderStatusError) return { status: 'UNKNOWN' };
    if (error instanceof InvalidProviderResponseError) return { status: 'INVALID' };
    throw error;
  }
}

function webFormJson(status: WebFormStatus, errorCode: string | null) {
  return {
    id: WEB_FORM_ID,
    url: `https://webform.finapi.io/wf/${WEB_FORM_ID}`,
    createdAt: '2025-03-01T10:00:00.000+0000',
    expiresAt: '2025-03-01T10:20:00.000+0000',
    type: 'BANK_CONNECTION_UPDATE',
    status,
    payload: { bankConnectionId: CONNECTION_ID, errorCode },
  };
}

function taskJson(status: TaskStatus, webForm: WebFormStatus | null | undefined, errorCode: string | null | undefined) {
  return {
    id: TASK_ID,
    createdAt: '2025-03-01T10:00:00.000+0000',
    type: 'BANK_CONNECTION_UPDATE',
    status,
    payload: {
      bankConnectionId: CONNECTION_ID,
      ...(webForm !== undefined ? { webForm: webForm === null ? null : { id: WEB_FORM_ID, url: `https://webform.finapi.io/wf/${WEB_FORM_ID}`, status: webForm } } : {}),
      ...(errorCode !== undefined ? { errorCode } : {}),
    },
  };
}

/** One poll's reading as the adapter does it: the task, then its web form when the reading needs it. */
function readPoll(task: unknown, webForm: unknown): Observation {
  const parsedTask = finapiSchemas.FinapiTask.safeParse(task);
  if (!parsedTask.success) throw new InvalidProviderResponseError('finapi', 'getTask', ['schema']);
  const reading = new FinapiReading().apply(taskEvent(parsedTask.data, 'getTask'));
  if (reading.needsWebForm) {
    const parsedWebForm = finapiSchemas.FinapiWebForm.safeParse(webForm);
    if (!parsedWebForm.success) throw new InvalidProviderResponseError('finapi', 'getWebForm', ['schema']);
    reading.apply(webFormEvent(parsedWebForm.data));
  }
  return reading.observation('poll', NOW);
}

const TASK_STATUSES = spec.TaskStatus.options;
const WEB_FORMS: (WebFormStatus | null | undefined)[] = [undefined, null, ...spec.WebFormStatus.options];
const TASK_CODES: (string | null | undefined)[] = [undefined, null, ...spec.TaskErrorCode.options];
const WEB_FORM_CODES: (string | null)[] = [null, ...spec.WebFormErrorCode.options];

const TASK_CASES = TASK_STATUSES.flatMap((status) =>
  WEB_FORMS.flatMap((webForm) =>
    TASK_CODES.flatMap((code) =>
      // The web form's own errorCode matters only when its reading decides (COMPLETED_WITH_ERROR).
      (webForm === 'COMPLETED_WITH_ERROR' ? WEB_FORM_CODES : [null]).map((webFormCode) => ({ status, webForm, code, webFormCode })),
    ),
  ),
);

describe('finAPI fixtures: TaskStatus x WebFormStatus x errorCode', () => {
  it("the adapter's vocabulary is the spec's: statuses and error codes", () => {
    expect([...FINAPI_TASK_STATUSES]).toEqual(spec.TaskStatus.options);
    expect([...FINAPI_WEB_FORM_STATUSES]).toEqual(spec.WebFormStatus.options);
    expect([...FINAPI_ACCOUNT_STATUSES]).toEqual(spec.AccountStatus.options);
    expect([...FINAPI_TASK_ERROR_CODES]).toEqual(spec.TaskErrorCode.options);
    expect([...FINAPI_WEB_FORM_ERROR_CODES]).toEqual(spec.WebFormErrorCode.options);
    // Every documented code has a decided outcome.
    expect(Object.keys(ERROR_CODE_OUTCOMES).sort()).toEqual([...new Set([...FINAPI_TASK_ERROR_CODES, ...FINAPI_WEB_FORM_ERROR_CODES])].sort());
  });

  it(`covers ${TASK_STATUSES.length} task statuses x ${WEB_FORMS.length} web forms x ${TASK_CODES.length} task codes (x ${WEB_FORM_CODES.length} web form codes where they decide)`, () => {
    expect(TASK_CASES.length).toBe(5 * 8 * 6 + 5 * 6 * 11);
  });

  it.each(TASK_CASES.map((c) => [`${c.status} / webForm ${String(c.webForm)} / errorCode ${String(c.code)} / web form errorCode ${String(c.webFormCode)}`, c] as const))(
    '%s',
    (_name, c) => {
      const task = taskJson(c.status, c.webForm, c.code);
      const webForm = webFormJson(c.webForm ?? 'NOT_YET_OPENED', c.webFormCode);
      // The fixtures are spec-valid: this is what finAPI may send.
      expect(spec.Task.safeParse(task).success).toBe(true);
      expect(spec.WebForm.safeParse(webForm).success).toBe(true);
      const got = outcomeOf(() => readPoll(task, webForm));
      expect(got).toEqual(expected(c.status, c.webForm, c.code, c.webFormCode));
      if (got.status === 'COMPLETED') throw new Error('a task reading alone is never a completed sync (post-processing decides)');
    },
  );

  it('a web form read while the task waits: each status and errorCode (COMPLETED with a code is a failure)', () => {
    for (const status of spec.WebFormStatus.options) {
      for (const code of WEB_FORM_CODES) {
        const reading = new FinapiReading().apply(taskEvent(finapiSchemas.FinapiTask.parse(taskJson('WEB_FORM_REQUIRED', 'NOT_YET_OPENED', null)), 'getTask'));
        const got = outcomeOf(() => reading.apply(webFormEvent(finapiSchemas.FinapiWebForm.parse(webFormJson(status, code)))).observation('poll', NOW));
        const want: Outcome =
          status === 'NOT_YET_OPENED' || status === 'IN_PROGRESS'
            ? { status: 'AWAIT_AUTH' }
            : status === 'ABORTED'
              ? CANCELLED
              : status === 'EXPIRED'
                ? EXPIRED
                : status === 'COMPLETED'
                  ? code === null
                    ? { status: 'RUNNING' }
                    : failure(code)
                  : failure(code);
        expect(got, `${status}/${code}`).toEqual(want);
      }
    }
  });

  it('callbacks (no errorCode): a final task with a failed web form waits for the web form read, never success', () => {
    const callback = (status: TaskStatus, webForm: WebFormStatus) =>
      outcomeOf(() =>
        new FinapiReading()
          .apply({ type: 'TASK.OBSERVED', status, webForm: { id: WEB_FORM_ID, url: 'https://webform.finapi.io/x', status: webForm } })
          .observation('callback', NOW),
      );
    expect(callback('COMPLETED_WITH_ERROR', 'COMPLETED_WITH_ERROR')).toEqual({ status: 'RUNNING' });
    expect(callback('COMPLETED', 'ABORTED')).toEqual(CANCELLED);
    expect(callback('COMPLETED', 'EXPIRED')).toEqual(EXPIRED);
    expect(callback('COMPLETED', 'COMPLETED')).toEqual({ status: 'RUNNING' });
  });

  it('undocumented task, web form statuses are never progress or success', () => {
    expect(outcomeOf(() => readPoll({ ...taskJson('IN_PROGRESS', undefined, null), status: 'PAUSED' }, null))).toEqual({ status: 'UNKNOWN' });
    const waiting = { ...taskJson('WEB_FORM_REQUIRED', null, null), payload: { bankConnectionId: CONNECTION_ID, webForm: { id: WEB_FORM_ID, url: 'x', status: 'WAITING' } } };
    expect(outcomeOf(() => readPoll(waiting, null))).toEqual({ status: 'UNKNOWN' });
  });
});

// ---- Access v1: accounts per interface -------------------------------------------------------------------------

function updateResult(result: string, timestamp = '2025-03-01 11:00:00.000') {
  return { result, errorMessage: null, errorType: result === 'OK' ? null : 'BUSINESS', timestamp };
}

function connectionJson(accountIds: number[], interfaces: unknown[] | undefined = [{ interface: 'XS2A', lastManualUpdate: updateResult('OK'), lastAutoUpdate: null, userActionRequired: false }]) {
  return { id: CONNECTION_ID, name: null, updateStatus: 'READY', categorizationStatus: 'READY', accountIds, ...(interfaces !== undefined ? { interfaces } : {}) };
}

function accountJson(id: number, interfaces: { interface: string; status: string }[] | undefined, extra: Record<string, unknown> = {}) {
  return {
    id,
    bankConnectionId: CONNECTION_ID,
    accountName: null,
    iban: null,
    accountType: 'Checking',
    isNew: false,
    status: 'UPDATED',
    ...(interfaces !== undefined ? { interfaces } : {}),
    ...extra,
  };
}

/** A completed task's post-processing: the connection (READY) and its accounts -> the canonical reading. */
function readPostProcessing(connection: unknown, accounts: unknown[]): Observation {
  const c = finapiSchemas.FinapiBankConnection.parse(connection);
  const list = finapiSchemas.FinapiAccountList.parse({ accounts });
  const reading = new FinapiReading().apply(taskEvent(finapiSchemas.FinapiTask.parse(taskJson('COMPLETED', undefined, null)), 'getTask'));
  reading.apply(connectionEvent(c));
  reading.apply(accountsEvent(list.accounts, c));
  return reading.observation('poll', NOW);
}

const ACCOUNT_OUTCOME: Record<string, string> = { UPDATED: 'UPDATED', UPDATED_FIXED: 'UPDATED_FIXED', DOWNLOAD_FAILED: 'DOWNLOAD_FAILED', DEPRECATED: 'DEPRECATED' };

describe('finAPI fixtures: AccountStatus per interface', () => {
  const cases = spec.BankingInterface.options.flatMap((face) => spec.AccountStatus.options.map((status) => [face, status] as const));
  it.each(cases)('%s %s', (face, status) => {
    // The deprecated top-level status says otherwise: the interface's status counts.
    const o = readPostProcessing(connectionJson([1]), [accountJson(1, [{ interface: face, status }], { status: 'DOWNLOAD_FAILED' })]);
    if (status === 'DOWNLOAD_IN_PROGRESS') expect(o.status).toBe('RUNNING');
    else expect(o.status === 'COMPLETED' ? o.result.accounts[0]!.status : o.status).toBe(ACCOUNT_OUTCOME[status]);
  });

  it.each([
    [['UPDATED', 'DOWNLOAD_FAILED'], 'UPDATED'],
    [['DOWNLOAD_FAILED', 'UPDATED_FIXED'], 'UPDATED_FIXED'],
    [['DEPRECATED', 'DOWNLOAD_FAILED'], 'DOWNLOAD_FAILED'],
    [['UPDATED', 'DOWNLOAD_IN_PROGRESS'], 'RUNNING'],
    [['DEPRECATED', 'DEPRECATED'], 'DEPRECATED'],
  ] as const)('interfaces %j -> %s', (statuses, want) => {
    const faces = statuses.map((status, i) => ({ interface: spec.BankingInterface.options[i]!, status }));
    const o = readPostProcessing(connectionJson([1]), [accountJson(1, faces)]);
    expect(o.status === 'COMPLETED' ? o.result.accounts[0]!.status : o.status).toBe(want);
  });

  it('an undocumented interface status or interface is never success', () => {
    expect(outcomeOf(() => readPostProcessing(connectionJson([1]), [accountJson(1, [{ interface: 'XS2A', status: 'ARCHIVED' }])]))).toEqual({ status: 'UNKNOWN' });
    expect(outcomeOf(() => readPostProcessing(connectionJson([1]), [accountJson(1, [{ interface: 'PSD3', status: 'UPDATED' }])]))).toEqual({ status: 'UNKNOWN' });
  });

  it('accountType: Security -> PORTFOLIO, every other documented type -> CASH, undocumented -> UNKNOWN, missing -> INVALID', () => {
    for (const type of spec.AccountType.options) {
      const o = readPostProcessing(connectionJson([1]), [accountJson(1, [{ interface: 'XS2A', status: 'UPDATED' }], { accountType: type })]);
      expect(o.status === 'COMPLETED' && o.result.accounts[0]!.kind, type).toBe(type === 'Security' ? 'PORTFOLIO' : 'CASH');
    }
    expect(outcomeOf(() => readPostProcessing(connectionJson([1]), [accountJson(1, [{ interface: 'XS2A', status: 'UPDATED' }], { accountType: 'Crypto' })]))).toEqual({ status: 'UNKNOWN' });
    expect(outcomeOf(() => readPostProcessing(connectionJson([1]), [accountJson(1, [{ interface: 'XS2A', status: 'UPDATED' }], { accountType: null })]))).toEqual({ status: 'INVALID' });
  });
});

describe('finAPI fixtures: optional fields absent and null', () => {
  it('account interfaces absent or empty: the deprecated top-level status is read; neither -> INVALID', () => {
    for (const interfaces of [undefined, []]) {
      const o = readPostProcessing(connectionJson([1]), [accountJson(1, interfaces, { status: 'DOWNLOAD_FAILED' })]);
      expect(o).toMatchObject({ status: 'COMPLETED', result: { outcome: 'NONE' } });
    }
    expect(outcomeOf(() => readPostProcessing(connectionJson([1]), [accountJson(1, [], { status: null })]))).toEqual({ status: 'INVALID' });
  });

  it('connection interfaces absent, null results, userActionRequired: nothing downloaded + an interface needing the user -> BANK_REJECTED', () => {
    const failed = [accountJson(1, [{ interface: 'XS2A', status: 'DOWNLOAD_FAILED' }])];
    expect(readPostProcessing(connectionJson([1], undefined), failed)).toMatchObject({ status: 'COMPLETED', result: { outcome: 'NONE' } });
    const nulls = [{ interface: 'XS2A', lastManualUpdate: null, lastAutoUpdate: null, userActionRequired: false }];
    expect(readPostProcessing(connectionJson([1], nulls), failed)).toMatchObject({ status: 'COMPLETED', result: { outcome: 'NONE' } });
    const needsUser = [{ interface: 'XS2A', lastManualUpdate: null, lastAutoUpdate: null, userActionRequired: true }];
    expect(readPostProcessing(connectionJson([1], needsUser), failed)).toMatchObject({ status: 'FAILED', error: { code: 'BANK_REJECTED', userActionRequired: true, retryable: false } });
    // The latest of manual and automatic update decides (German local time).
    const rejectedLast = [
      { interface: 'XS2A', lastManualUpdate: updateResult('OK', '2025-03-01 11:00:00.000'), lastAutoUpdate: updateResult('BANK_SERVER_REJECTION', '2025-03-01 11:05:00.000'), userActionRequired: false },
    ];
    expect(readPostProcessing(connectionJson([1], rejectedLast), failed)).toMatchObject({ status: 'FAILED', error: { code: 'BANK_REJECTED' } });
    const okLast = [
      { interface: 'XS2A', lastManualUpdate: updateResult('OK', '2025-03-01 11:10:00.000'), lastAutoUpdate: updateResult('BANK_SERVER_REJECTION', '2025-03-01 11:05:00.000'), userActionRequired: false },
    ];
    expect(readPostProcessing(connectionJson([1], okLast), failed)).toMatchObject({ status: 'COMPLETED', result: { outcome: 'NONE' } });
    // Some data came through: the sync completed (partially), whatever the interface says.
    const mixed = [accountJson(1, [{ interface: 'XS2A', status: 'UPDATED' }]), accountJson(2, [{ interface: 'XS2A', status: 'DOWNLOAD_FAILED' }])];
    expect(readPostProcessing(connectionJson([1, 2], needsUser), mixed)).toMatchObject({ status: 'COMPLETED', result: { outcome: 'PARTIAL' } });
  });

  it('task payload webForm and errorCode absent or null read the same', () => {
    for (const webForm of [undefined, null]) for (const code of [undefined, null]) {
      expect(outcomeOf(() => readPoll(taskJson('IN_PROGRESS', webForm, code), null))).toEqual({ status: 'RUNNING' });
    }
  });
});

describe("finAPI fixtures: the spec's own examples", () => {
  it('Task example (createdAt "createdAt", COMPLETED with errorCode INTERNAL_ERROR): spec-invalid timestamp -> INVALID, never success', () => {
    const example = {
      createdAt: 'createdAt',
      payload: { bankConnectionId: 101, errorCode: 'INTERNAL_ERROR', webForm: { id: TASK_ID, url: `https://webform.finapi.io/wf/${TASK_ID}`, status: 'COMPLETED' } },
      id: TASK_ID,
      type: 'BANK_CONNECTION_UPDATE',
      status: 'COMPLETED',
    };
    expect(spec.Task.safeParse(example).success).toBe(false);
    expect(outcomeOf(() => readPoll(example, null))).toEqual({ status: 'INVALID' });
    // With a timestamp in the documented format: a COMPLETED task with an errorCode is a failure.
    expect(outcomeOf(() => readPoll({ ...example, createdAt: '2021-03-02T14:11:08.973+0000' }, null))).toEqual(failure('INTERNAL_ERROR'));
  });

  it('WebForm example (expiresAt "expiresAt"): spec-invalid -> INVALID', () => {
    const example = { ...webFormJson('COMPLETED', 'INTERNAL_ERROR'), createdAt: 'createdAt', expiresAt: 'expiresAt', type: 'STANDALONE_PAYMENT' };
    expect(spec.WebForm.safeParse(example).success).toBe(false);
    expect(finapiSchemas.FinapiWebForm.safeParse(example).success).toBe(false);
  });

  it('TaskCallback example validates and reads as post-processing', () => {
    const example = { webForm: { id: TASK_ID, url: `https://webform.finapi.io/wf/${TASK_ID}`, status: 'COMPLETED' }, taskId: WEB_FORM_ID, status: 'COMPLETED' };
    expect(spec.TaskCallback.safeParse(example).success).toBe(true);
  });

  it('BankConnectionUpdateTaskDetails example validates; what the adapter sends for the same options too', () => {
    const example = {
      skipPositionsDownload: false,
      manageSavedSettings: ['CREDENTIALS', 'DEFAULT_TWO_STEP_PROCEDURE'],
      bankConnectionId: 101,
      redirectUrl: 'https://finapi.io/callback',
      profileId: 'a2c9fc3b-1777-403c-8b2f-1ce4d90157a2',
      importNewAccounts: false,
      accountTypes: ['CHECKING', 'SAVINGS', 'CREDIT_CARD', 'SECURITY', 'MEMBERSHIP', 'LOAN', 'BAUSPAREN'],
      callbacks: { webFormRequired: 'https://dev.finapi.io/callback?state=42', finalised: 'https://dev.finapi.io/callback?state=42' },
      loadOwnerData: false,
      userMetadata: { deviceOs: 'ChromeOS', ipAddress: '1.1.1.1', userAgent: 'Chrome' },
    };
    expect(spec.BankConnectionUpdateTaskDetails.safeParse(example).success).toBe(true);
  });
});

// ---- Over HTTP: paging, ownership, web form deadlines ------------------------------------------------------------

type Route = (req: IncomingMessage, url: URL) => { status: number; body: unknown } | undefined;
const servers: { close(): void }[] = [];
afterAll(() => servers.forEach((s) => s.close()));

async function stub(route: Route): Promise<{ url: string; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://stub');
      seen.push(`${req.method} ${url.pathname}${url.search}`);
      const answer = route(req, url) ?? { status: 404, body: { code: 'NOT_FOUND', description: 'x', timestamp: '2025-03-01T10:00:00.000+0000', endpoint: 'x' } };
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push({ close: () => server.close() });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function otherTask(i: number) {
  const createdAt = new Date(NOW + 200_000 - i * 1000).toISOString().replace('Z', '+0000');
  return { ...taskJson('COMPLETED', undefined, null), id: `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`, createdAt, payload: { bankConnectionId: 7 } };
}

describe('finAPI fixtures: paging counted from 0 or from 1', () => {
  it.each([0, 1])('first page %i: findTriggered reads the second page and finds the task there', async (first) => {
    const ours = { ...taskJson('IN_PROGRESS', undefined, null), createdAt: '2025-03-01T10:00:00.500+0000' };
    const items = [...Array.from({ length: 100 }, (_, i) => otherTask(i)), ours];
    const server = await stub((_req, url) => {
      if (url.pathname !== '/api/tasks') return undefined;
      const page = url.searchParams.has('page') ? Number(url.searchParams.get('page')) : first;
      const index = page - first;
      const body = { items: items.slice(index * 100, index * 100 + 100), paging: { page, perPage: 100, pageCount: 2, totalCount: items.length } };
      expect(spec.TasksPage.safeParse(body).success).toBe(true);
      return { status: 200, body };
    });
    const adapter = createFinapiAdapter({ baseUrl: server.url, token: 't', now: () => NOW });
    const found = await adapter.findTriggered({ syncId: 's', connectionId: String(CONNECTION_ID), scope: 'TRANSACTIONS', idempotencyKey: 's', since: NOW });
    expect(found?.providerRef).toBe(TASK_ID);
    expect(server.seen).toEqual(['GET /api/tasks?order=createdAt%2Cdesc&perPage=100', `GET /api/tasks?order=createdAt%2Cdesc&page=${first + 1}&perPage=100`]);
  });
});

describe('finAPI fixtures: ownership and deadlines over HTTP', () => {
  it.each([null, undefined])('a task whose payload.bankConnectionId is %s is rejected, never completed', async (owner) => {
    const task = { ...taskJson('COMPLETED', undefined, null), payload: owner === null ? { bankConnectionId: null } : {} };
    expect(spec.Task.safeParse(task).success).toBe(false);
    const server = await stub((_req, url) => (url.pathname === `/api/tasks/${TASK_ID}` ? { status: 200, body: task } : undefined));
    const adapter = createFinapiAdapter({ baseUrl: server.url, token: 't', now: () => NOW });
    await expect(adapter.poll({ connectionId: String(CONNECTION_ID), providerRef: TASK_ID })).rejects.toBeInstanceOf(InvalidProviderResponseError);
  });

  it("an immediate web form's deadline is its own expiresAt (Europe/Berlin when it has no offset), not the 20-minute default", async () => {
    const task = taskJson('WEB_FORM_REQUIRED', 'NOT_YET_OPENED', null);
    const webForm = { ...webFormJson('NOT_YET_OPENED', null), expiresAt: '2025-03-01T11:07:00.000' };
    const server = await stub((req, url) => {
      if (req.method === 'POST' && url.pathname === '/api/tasks/backgroundUpdate') return { status: 201, body: task };
      if (url.pathname === `/api/webForms/${WEB_FORM_ID}`) return { status: 200, body: webForm };
      return undefined;
    });
    const adapter = createFinapiAdapter({ baseUrl: server.url, token: 't', now: () => NOW });
    const out = await adapter.trigger({ syncId: 's', connectionId: String(CONNECTION_ID), scope: 'TRANSACTIONS', idempotencyKey: 's', since: NOW });
    expect(out.observation).toMatchObject({ status: 'AWAIT_AUTH', challenge: { expiresAt: '2025-03-01T10:07:00.000Z' } });
  });

  it('a 401 that outlives the token refresh is PROVIDER_UNAUTHORIZED (our credentials), never a credential failure', async () => {
    const server = await stub(() => ({ status: 401, body: { code: 'UNAUTHORIZED', description: 'x', timestamp: '2025-03-01T10:00:00.000+0000', endpoint: 'x' } }));
    const adapter = createFinapiAdapter({ baseUrl: server.url, token: 't', now: () => NOW });
    const error = await adapter.poll({ connectionId: String(CONNECTION_ID), providerRef: TASK_ID }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: 'PROVIDER_UNAUTHORIZED', retryable: false, userActionRequired: false, httpStatus: 401 });
  });
});

describe('finAPI fixtures: timestamps', () => {
  it.each([
    ['2025-03-01T10:00:00.000+0000', '2025-03-01T10:00:00.000Z'],
    ['2025-03-01T10:00:00.000+0100', '2025-03-01T09:00:00.000Z'],
    // no offset: German local time (CET in winter, CEST in summer)
    ['2025-03-01T10:00:00.000', '2025-03-01T09:00:00.000Z'],
    ['2025-07-01T10:00:00.000', '2025-07-01T08:00:00.000Z'],
    ['2025-03-01 11:00:00.000', '2025-03-01T10:00:00.000Z'],
    // the spring gap (02:00-03:00 does not exist): moved forward one hour, 02:30 -> 03:30 CEST
    ['2025-03-30T02:30:00.000', '2025-03-30T01:30:00.000Z'],
    // the autumn overlap (02:00-03:00 twice): the second occurrence, CET
    ['2025-10-26 02:30:00.000', '2025-10-26T01:30:00.000Z'],
    ['2025-10-26 01:59:59.000', '2025-10-25T23:59:59.000Z'],
  ])('%s -> %s', (value, iso) => {
    expect(new Date(parseFinapiTime(value)!).toISOString()).toBe(iso);
  });

  it('not a timestamp -> null (the schema rejects it)', () => {
    expect(parseFinapiTime('createdAt')).toBeNull();
    expect(parseFinapiTime('2025-02-30T10:00:00.000')).toBeNull();
  });
});
