import { describe, expect, it } from 'vitest';
import { useDispatchRig } from '../support/dispatch-rig.js';
import { postgresAvailable } from '../support/postgres.js';

// retryMaxMs covers the sandbox's Retry-After: 1 (a longer one would end the sync, issue #13).
const policy = { pollBaseMs: 50, pollMaxMs: 200, authPollMs: 80, retryBaseMs: 100, retryMaxMs: 1_000 };

describe.runIf(postgresAvailable)('graphile-worker dispatch (one worker process in this test process)', () => {
  const rig = useDispatchRig(policy);

  it('runs syncs to their scripted end through jobs, with durable timers as jobs, one provider sync each', async () => {
    const scenarios = ['success', 'decoupled', 'provider-5xx', 'partial', 'failed', 'rate-limited'];
    const accesses = await Promise.all(scenarios.map((scenario) => rig.finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario })));
    const syncs = await Promise.all(accesses.map((a) => rig.api.engine.requestSync({ connectionId: a.id, provider: 'finx' })));
    expect(syncs.every((s) => s.status === 'QUEUED')).toBe(true);
    await expect.poll(async () => (await rig.api.store.listSyncs({ active: true })).length, { timeout: 30_000, interval: 200 }).toBe(0);
    for (const [i, sync] of syncs.entries()) {
      const final = await rig.api.engine.get(sync.syncId);
      expect(final.status, scenarios[i]).toBe(scenarios[i] === 'failed' ? 'FAILED' : 'COMPLETED');
      expect(rig.sandbox.stats().finx.connections[accesses[i]!.id]!.syncsStarted).toBe(1);
    }
    // The API engine never hosted a sync: the worker did everything. (A job is completed just after the
    // commit that ended its sync, in graphile-worker's completion batch: wait for it, do not race it.)
    const lockedJobs = async () => (await rig.api.store.pool.query(`SELECT count(*)::int AS n FROM ${rig.graphileSchema}._private_jobs WHERE locked_at IS NOT NULL`)).rows[0].n;
    await expect.poll(lockedJobs, { timeout: 10_000, interval: 100 }).toBe(0);
  });

  it('answers an embedded challenge inline under the sync lock, the TAN never entering the job table', async () => {
    const access = await rig.finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario: 'one-challenge' });
    const sync = await rig.api.engine.requestSync({ connectionId: access.id, provider: 'finx' });
    await expect.poll(async () => (await rig.api.engine.get(sync.syncId)).state, { timeout: 20_000, interval: 100 }).toMatch(/^AWAIT_AUTH/);
    const challenge = (await rig.api.engine.get(sync.syncId)).challenge!;
    await rig.api.engine.submitChallengeResponse(sync.syncId, { challengeId: challenge.id, response: '123456' });
    await expect.poll(async () => (await rig.api.engine.get(sync.syncId)).status, { timeout: 20_000, interval: 100 }).toBe('COMPLETED');
    const { rows } = await rig.api.store.pool.query(`SELECT count(*)::int AS n FROM ${rig.graphileSchema}._private_jobs WHERE payload::text LIKE '%123456%'`);
    expect(rows[0].n).toBe(0);
  });
});
