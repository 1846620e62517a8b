import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFinxAdapter, type FinxAdapter } from '../../src/providers/finx/index.js';
import { FINX_SCENARIOS } from '../../src/sandbox/finx.js';
import { startHarness, type Harness } from '../support/harness.js';

describe('finX end to end over HTTP (engine + SQLite + sandbox + webhooks)', () => {
  let harness: Harness;
  let finx: FinxAdapter;

  beforeAll(async () => {
    harness = await startHarness((sandbox) => {
      finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'e2e-token' });
      return { finx };
    });
  });
  afterAll(() => harness.close());

  it.each(FINX_SCENARIOS.map((s) => [s.name, s] as const))('%s ends as scripted, with exactly one provider sync', async (_name, scenario) => {
    const access = await finx.createAccess({ providerId: 'bank', accessMethodId: 'FINTS', credentials: { pin: 'secret-pin-4711' }, scenario: scenario.name });
    const final = await harness.runSync('finx', access.id, scenario.answers);
    expect(final.status).toBe(scenario.terminal);
    if (scenario.errorCode) expect(final.error?.code).toBe(scenario.errorCode);
    if (scenario.outcome) expect(final.result?.outcome).toBe(scenario.outcome);
    const stats = harness.sandbox.stats().finx.connections[access.id]!;
    expect(stats.syncsStarted).toBe(1);
    expect(stats.overlaps).toBe(0);
    expect(stats.wrongAnswers).toBe(scenario.name === 'wrong-tan' ? 1 : 0);
    const history = await harness.engine.history(final.syncId);
    expect(history[0]?.to).toBe('QUEUED.Triggering');
    expect(history.at(-1)?.to).toBe(scenario.terminal);
    const stored = JSON.stringify(await harness.store.getSync(final.syncId));
    expect(stored).not.toContain('secret-pin-4711');
    expect(stored).not.toContain('e2e-token');
    for (const answer of scenario.answers) expect(stored).not.toContain(answer);
  });

  it('carries the access-upgrade remapping on the failed sync (40002)', async () => {
    const access = await finx.createAccess({ providerId: 'bank', accessMethodId: 'FINTS', credentials: { pin: 'x' }, scenario: 'upgrade-40002' });
    const final = await harness.runSync('finx', access.id);
    expect(final.error).toMatchObject({ code: 'ACCESS_UPGRADE', userActionRequired: true, retryable: false, providerCode: '40002' });
    expect(final.error?.upgrade?.kind).toBe('MULTI_ACCESS');
    const upgrade = final.error!.upgrade!;
    expect(upgrade.accounts.length).toBeGreaterThan(0);
    const connection = await harness.engine.getConnection(access.id);
    // The old access kept accounts: it stays a live connection for them (not parked waiting for a person);
    // the moved accounts became connections of their own.
    expect(connection).toMatchObject({ state: 'IDLE', needsUser: null, retired: false });
    for (const account of upgrade.accounts) expect(connection.accounts[account.accountId]).toEqual({ accessId: account.accessId, supported: account.supported });
    expect(connection.linkedAccessIds.length).toBeGreaterThan(0);
    // The sandbox now wants SCA on that access: with the user present, the next sync asks for a TAN and completes.
    const next = await harness.runSync('finx', access.id, ['123456']);
    expect(next.status).toBe('COMPLETED');
    expect((await harness.engine.getConnection(access.id)).state).toBe('IDLE');
  });
});
