/**
 * Contract: in every finAPI sandbox scenario, driven through the adapter like the engine drives it, every request
 * the client sends, every response the sandbox answers and every callback it POSTs validates against the strict
 * mirrors of finAPI's published specs (test/contract/finapi.spec.ts). Scenarios that are faulty on purpose
 * (broken JSON, values the specs do not have) are exempt from the body checks, nothing else.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import type { Observation, TriggerOutput } from '../../machines/canonical.js';
import { ProviderError } from '../../src/providers/errors.js';
import { createFinapiAdapter } from '../../src/providers/finapi/index.js';
import { FINAPI_SCENARIOS, createFinapiSandboxConnection, finapiSandbox, type FinapiScenarioInfo } from '../../src/sandbox/finapi.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { BankConnectionUpdateTaskDetails, TaskCallback, responseSchema } from './finapi.spec.js';
import { startReceiver, startRecorder, type Exchange, type Receiver, type Recorder } from './recorder.js';

const TOKEN = 'finapi-contract-token-DO-NOT-LEAK';
const HOOKS = 'https://hooks.banksync.example';
/** Faulty on purpose: broken bodies or values the specs do not define. */
const FAULTY = new Set(['malformed-body', 'unknown-task-status', 'unknown-web-form-status', 'unknown-account-status', 'unknown-update-status', 'task-unknown-error-code']);

let recorder: Recorder;
let receiver: Receiver;

beforeAll(async () => {
  receiver = await startReceiver();
  recorder = await startRecorder('http://127.0.0.1:1');
});
afterAll(async () => {
  await recorder?.close();
  await receiver?.close();
});

function issuesOf(schema: z.ZodType, value: unknown): string[] {
  const parsed = schema.safeParse(value);
  return parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
}

/** Spec violations of one recorded exchange (request and response). */
export function violations(exchange: Exchange): string[] {
  const path = exchange.path.replace(/^\/finapi/, '');
  const where = `${exchange.method} ${path.split('?')[0]} ${exchange.status}`;
  const out: string[] = [];
  if (path.startsWith('/sandbox/') || path.startsWith('/webform/')) return out; // sandbox-only routes, the user's page
  if (exchange.method === 'POST' && path === '/api/tasks/backgroundUpdate') {
    out.push(...issuesOf(BankConnectionUpdateTaskDetails, JSON.parse(exchange.requestBody)).map((i) => `${where} request ${i}`));
  }
  if (exchange.method === 'GET' && path.startsWith('/api/tasks?')) {
    const query = new URLSearchParams(path.split('?')[1]);
    const perPage = Number(query.get('perPage') ?? 20);
    if (!(Number.isInteger(perPage) && perPage >= 1 && perPage <= 500)) out.push(`${where} request perPage ${query.get('perPage')}`);
    if (query.has('page') && !/^\d+$/.test(query.get('page')!)) out.push(`${where} request page ${query.get('page')}`);
  }
  const schema = responseSchema(exchange.method, path, exchange.status);
  if (!schema) {
    if (exchange.responseBody.length > 0) out.push(`${where}: the spec documents no body for this answer`);
    return out;
  }
  let body: unknown;
  try {
    body = JSON.parse(exchange.responseBody);
  } catch {
    return [...out, `${where}: body is not JSON`];
  }
  out.push(...issuesOf(schema, body).map((i) => `${where} ${i}`));
  return out;
}

async function drive(scenario: FinapiScenarioInfo, sandbox: Sandbox, clock: { now: number }) {
  const finapiUrl = `${recorder.url}/finapi`;
  const adapter = createFinapiAdapter({ baseUrl: finapiUrl, token: TOKEN, now: () => clock.now, callbackUrl: `${HOOKS}/finapi` });
  const connectionId = String((await createFinapiSandboxConnection(finapiUrl, TOKEN, scenario.name)).id);
  const req = { syncId: 's1', connectionId, scope: 'TRANSACTIONS' as const, idempotencyKey: 's1', since: clock.now, ...(scenario.options ? { options: scenario.options } : {}) };
  let out: TriggerOutput | null = null;
  for (let attempt = 0; attempt < 6 && !out; attempt++) {
    try {
      out = attempt === 0 ? await adapter.trigger(req) : ((await adapter.findTriggered(req)) ?? (await adapter.trigger(req)));
    } catch (error) {
      if (!(error instanceof ProviderError) || !error.retryable) return;
    }
  }
  if (!out) return;
  const ref = { connectionId, providerRef: out.providerRef };
  let last: Observation = out.observation;
  const opened = new Set<string>();
  for (let step = 0; step < 40; step++) {
    if (last.status === 'COMPLETED' || last.status === 'FAILED') break;
    if (last.status === 'AWAIT_AUTH' && !opened.has(last.challenge.id)) {
      opened.add(last.challenge.id);
      await (await fetch(last.challenge.redirectUrl!)).arrayBuffer();
    }
    try {
      last = await adapter.poll(ref);
    } catch (error) {
      if (!(error instanceof ProviderError)) throw error;
      if (last.status === 'AWAIT_AUTH') {
        const deadline = Date.parse(last.challenge.expiresAt);
        if (clock.now >= deadline) break;
        clock.now = deadline + 1;
      } else if (!error.retryable) break;
    }
  }
  await sandbox.webhooksIdle();
}

describe('finAPI sandbox vs the published specs', () => {
  it.each(FINAPI_SCENARIOS.map((s) => [s.name, s] as const))('%s: requests, responses and callbacks validate', async (name, scenario) => {
    const clock = { now: Date.parse('2025-03-01T10:00:00.000Z') };
    const sandbox = await startSandbox({
      now: () => clock.now,
      providers: [finapiSandbox({ tokens: [TOKEN], resolveCallbackUrl: (url) => url.replace(HOOKS, receiver.url) })],
    });
    recorder.target = sandbox.url;
    recorder.exchanges.length = 0;
    receiver.bodies.length = 0;
    try {
      await drive(scenario, sandbox, clock);
      const api = recorder.exchanges.filter((e) => !e.path.startsWith('/finapi/sandbox/') && !e.path.startsWith('/finapi/webform/'));
      expect(api.length, 'API calls recorded').toBeGreaterThan(1);
      if (scenario.callbacks !== 'never' && !FAULTY.has(name)) expect(receiver.bodies.length, 'callbacks received').toBeGreaterThan(0);
      const problems = FAULTY.has(name)
        ? recorder.exchanges.filter((e) => e.method === 'POST').flatMap(violations) // requests are always ours to get right
        : recorder.exchanges.flatMap(violations);
      if (!FAULTY.has(name)) {
        for (const callback of receiver.bodies) problems.push(...issuesOf(TaskCallback, JSON.parse(callback.body)).map((i) => `callback ${i}`));
      }
      expect(problems).toEqual([]);
    } finally {
      await sandbox.close();
    }
  });

  it('the recorder sees spec violations (a check that cannot fail is no check)', () => {
    const task = { id: 'short', createdAt: '2025-03-01T10:00:00Z', type: 'BANK_CONNECTION_UPDATE', status: 'DONE', payload: {} };
    const found = violations({ method: 'GET', path: '/finapi/api/tasks/x', requestBody: '', status: 200, contentType: 'application/json', responseBody: JSON.stringify(task) });
    expect(found.join('\n')).toMatch(/id/);
    expect(found.join('\n')).toMatch(/createdAt/);
    expect(found.join('\n')).toMatch(/status/);
    expect(found.join('\n')).toMatch(/payload\.bankConnectionId/);
    const request = violations({
      method: 'POST',
      path: '/finapi/api/tasks/backgroundUpdate',
      requestBody: JSON.stringify({ bankConnectionId: 1, editSavedSettings: ['CREDENTIALS'], callbacks: { finalised: 'http://127.0.0.1/x' } }),
      status: 201,
      contentType: 'application/json',
      responseBody: '{}',
    });
    expect(request.join('\n')).toMatch(/editSavedSettings/);
    expect(request.join('\n')).toMatch(/callbacks\.finalised/);
  });
});
