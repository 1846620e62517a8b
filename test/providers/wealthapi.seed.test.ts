/**
 * The wealthAPI adapter against answers carrying only what seed 000 documents: no `latestUpdateProcess` on the
 * bank connection, no `result` on the update process (sandbox inventions, never required for success).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Observation } from '../../machines/canonical.js';
import { createWealthAdapter, type WealthAdapter } from '../../src/providers/wealthapi/index.js';
import { mapProcess } from '../../src/providers/wealthapi/mapping.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { wealthSandbox, type WealthScenarioName } from '../../src/sandbox/wealthapi.js';

const TOKEN = 'wealth-seed-token-DO-NOT-LEAK';
const clock = Date.parse('2025-03-01T10:00:00.000Z');
let sandbox: Sandbox;
let adapter: WealthAdapter;
let seq = 0;

beforeAll(async () => {
  sandbox = await startSandbox({ now: () => clock, providers: [wealthSandbox({ tokens: [TOKEN], seedOnly: true })] });
  adapter = createWealthAdapter({ baseUrl: `${sandbox.url}/wealthapi`, token: TOKEN, now: () => clock });
});
afterAll(async () => {
  await sandbox?.close();
});

async function run(scenario: WealthScenarioName): Promise<{ first: Observation; last: Observation }> {
  const connectionId = (await adapter.createConnection({ name: 'Broker', scenario })).id;
  seq += 1;
  const out = await adapter.trigger({ syncId: `s${seq}`, connectionId, scope: 'TRANSACTIONS', idempotencyKey: `s${seq}`, since: clock });
  const ref = { connectionId, providerRef: out.providerRef };
  for (let i = 0; i < 12; i++) {
    const o = await adapter.poll(ref);
    if (o.status === 'COMPLETED' || o.status === 'FAILED') return { first: out.observation, last: o };
  }
  throw new Error('no terminal reading');
}

describe('wealthAPI with seed 000 fields only', () => {
  it('SUCCESS without a per-item result is COMPLETED: every account and portfolio of the connection was updated', async () => {
    const { last } = await run('success');
    expect(last).toMatchObject({ status: 'COMPLETED', result: { outcome: 'COMPLETE', accounts: [] } });
  });

  it('FAILED still maps its synchronizationError (2FA never retried)', async () => {
    const { last } = await run('two-factor-required');
    expect(last).toMatchObject({ status: 'FAILED', error: { code: 'SCA_FAILED', retryable: false } });
  });

  it('the preflight works without latestUpdateProcess', async () => {
    const connectionId = (await adapter.createConnection({ name: 'Broker', scenario: 'web-scraping' })).id;
    await expect(
      adapter.trigger({ syncId: 'pf', connectionId, scope: 'TRANSACTIONS', idempotencyKey: 'pf', since: clock }),
    ).rejects.toMatchObject({ code: 'PREFLIGHT_REFUSED', retryable: false });
  });

  it('an unknown process status is never success, with or without a result', () => {
    expect(() => mapProcess({ processId: 'p1', status: 'DONE_ISH' }, 'poll')).toThrow(/unknown update process status/);
    expect(mapProcess({ processId: 'p1', status: 'SUCCESS' }, 'poll')).toMatchObject({ status: 'COMPLETED' });
  });
});
