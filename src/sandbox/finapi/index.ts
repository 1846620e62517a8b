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
 *
 * Layout: scenarios.ts (the table), state.ts (what the simulation keeps), wire.ts (formats and bodies),
 * webform-page.ts (the user's page), this file (the simulation, its routes and callbacks).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SIGNATURE_HEADER, signWebhook } from '../../engine/webhook-auth.js';
import type { ProviderStats, SandboxContext, SandboxOptions, SandboxProvider, SandboxProviderFactory } from '../server.js';
import { bearerAccepted } from '../shared/auth.js';
import { collectStats } from '../shared/stats.js';
import { FINAPI_SCENARIOS, SCENARIOS, TASK_ACCOUNT_TYPES, isFinapiScenario, type AccountSpec, type Fault, type FinapiScenarioName, type ScenarioDefinition } from './scenarios.js';
import { TASK_FINAL, WEB_FORM_OPEN, type AccountState, type ConnectionState, type TaskState, type WebFormState } from './state.js';
import {
  BackgroundUpdateBody,
  CreateConnectionBody,
  ListQuery,
  accessError,
  germanLocalTime,
  issueFields,
  serializeAccount,
  serializeConnection,
  serializeTask,
  serializeWebForm,
  validationError,
  webFormError,
  webFormInfo,
} from './wire.js';
import { webFormPage } from './webform-page.js';

export * from './scenarios.js';
export type { FinapiConnectionStats } from './state.js';

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

  const authorized = (request: FastifyRequest) => bearerAccepted(context.auth, 'finapi', request, tokens);

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
      const page = (text: string) => reply.status(200).type('text/html').send(webFormPage(text));
      if (!w) return reply.status(404).type('text/html').send(webFormPage('No such web form.'));
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
    return collectStats(connections.values(), { connections: connections.size, listReads });
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

