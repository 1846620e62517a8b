/**
 * Contract: the xs2a sandbox in its published-model mode answers, in every scenario driven through the adapter,
 * only bodies the published xs2a.api models allow (test/contract/xs2a.spec.ts); every sync request the client
 * sends is a BankConnectionSyncRequest. Scenarios faulty on purpose are exempt from the body checks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import type { Observation } from '../../machines/canonical.js';
import { ProviderError } from '../../src/providers/errors.js';
import { createXs2aAdapter } from '../../src/providers/xs2a/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { XS2A_SCENARIOS, xs2aSandbox } from '../../src/sandbox/xs2a.js';
import { startRecorder, type Exchange, type Recorder } from './recorder.js';
import { BankConnectionSyncRequest, responseSchema } from './xs2a.spec.js';

const TOKEN = 'xs2a-contract-token-DO-NOT-LEAK';
const FAULTY = new Set(['malformed-body', 'unknown-status']);
let recorder: Recorder;
let sandbox: Sandbox;
const clock = { now: Date.parse('2025-03-01T10:00:00.000Z') };

beforeAll(async () => {
  sandbox = await startSandbox({ now: () => clock.now, providers: [xs2aSandbox({ tokens: [TOKEN], publishedModel: true, wizardTtlMs: 60_000 })] });
  recorder = await startRecorder(sandbox.url);
});
afterAll(async () => {
  await recorder?.close();
  await sandbox?.close();
});

function issuesOf(schema: z.ZodType, value: unknown): string[] {
  const parsed = schema.safeParse(value);
  return parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
}

function violations(e: Exchange): string[] {
  const path = e.path.replace(/^\/xs2a/, '');
  const where = `${e.method} ${path.split('?')[0]} ${e.status}`;
  const out: string[] = [];
  if (e.method === 'POST' && /\/sync$/.test(path) && e.requestBody) {
    out.push(...issuesOf(BankConnectionSyncRequest, JSON.parse(e.requestBody)).map((i) => `${where} request ${i}`));
  }
  const schema = responseSchema(e.method, path, e.status);
  if (!schema) return out;
  try {
    out.push(...issuesOf(schema, JSON.parse(e.responseBody)).map((i) => `${where} ${i}`));
  } catch {
    out.push(`${where}: body is not JSON`);
  }
  return out;
}

describe('xs2a sandbox (published model) vs the published models', () => {
  it.each(XS2A_SCENARIOS.map((s) => [s.name, s] as const))('%s', async (name, scenario) => {
    recorder.exchanges.length = 0;
    const adapter = createXs2aAdapter({ baseUrl: `${recorder.url}/xs2a`, token: TOKEN, now: () => clock.now, wizardBaseUrl: `${sandbox.url}/xs2a/wizard` });
    const connectionId = (await adapter.createConnection({ bankName: 'Bank', scenario: name })).id;
    const req = { syncId: name, connectionId, scope: 'TRANSACTIONS' as const, idempotencyKey: name, since: clock.now, ...(scenario.options ? { options: scenario.options } : {}) };
    let last: Observation | null = null;
    let ref: { connectionId: string; providerRef: string } | null = null;
    for (let attempt = 0; attempt < 4 && !ref; attempt++) {
      try {
        const out = await adapter.trigger(req);
        ref = { connectionId, providerRef: out.providerRef };
        last = out.observation;
      } catch (error) {
        if (!(error instanceof ProviderError) || !error.retryable) break;
      }
    }
    for (let step = 0; ref && last && step < 15 && last.status !== 'COMPLETED' && last.status !== 'FAILED'; step++) {
      if (last.status === 'AWAIT_AUTH') await (await fetch(last.challenge.redirectUrl!)).arrayBuffer();
      try {
        last = await adapter.poll(ref);
      } catch (error) {
        if (!(error instanceof ProviderError) || !error.retryable) break;
      }
    }
    expect(recorder.exchanges.length).toBeGreaterThan(1);
    const problems = FAULTY.has(name) ? [] : recorder.exchanges.flatMap(violations);
    expect(problems).toEqual([]);
  });

  it('the checks see violations (a check that cannot fail is no check)', () => {
    const body = { id: 'bc', transaction: 't', bank_name: 'B', sync_active: true, sync_message: null, sync_fail_counter: 0, last_sync: {}, status: 'READY', testmode: true, created_at: 'x', object: 'bank_connection', last_synced: null };
    const found = violations({ method: 'GET', path: '/xs2a/api/v1/bank-connections/bc', requestBody: '', status: 200, contentType: 'application/json', responseBody: JSON.stringify(body) });
    expect(found.join('\n')).toMatch(/last_sync|status/);
  });
});
