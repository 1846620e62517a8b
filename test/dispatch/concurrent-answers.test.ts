/**
 * Many users answering at once on the dispatching (API-side) engine, against real PostgreSQL: every answer
 * is taken under its sync's advisory lock, and the commit that follows must not need a connection from the
 * pool the lock holders occupy (issue 12, point 1: 4 concurrent answers used to hang forever).
 */
import { describe, expect, it } from 'vitest';
import { FINX_CORRECT_TAN } from '../../src/sandbox/finx.js';
import { useDispatchRig } from '../support/dispatch-rig.js';
import { postgresAvailable } from '../support/postgres.js';

const ANSWERS = Number(process.env.CONCURRENT_ANSWERS ?? 50);
const policy = { pollBaseMs: 50, pollMaxMs: 200, authPollMs: 5_000, retryBaseMs: 100, retryMaxMs: 500 };

/** Rejects with `message` if `work` has not settled by then: a hang must fail as itself, not as vitest's timeout. */
function within<T>(ms: number, message: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

describe.runIf(postgresAvailable)('concurrent answers and cancels on the dispatching engine', () => {
  const rig = useDispatchRig(policy);

  const awaitingSyncs = async (count: number) => {
    const accesses = await Promise.all(
      Array.from({ length: count }, () => rig.finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario: 'one-challenge' })),
    );
    const syncs = await Promise.all(accesses.map((a) => rig.api.engine.requestSync({ connectionId: a.id, provider: 'finx' })));
    await expect
      .poll(async () => (await Promise.all(syncs.map((s) => rig.api.engine.get(s.syncId)))).filter((v) => v.state === 'AWAIT_AUTH.AwaitingUser').length, {
        timeout: 60_000,
        interval: 250,
      })
      .toBe(count);
    return { accesses, views: await Promise.all(syncs.map((s) => rig.api.engine.get(s.syncId))) };
  };

  it(`${ANSWERS} concurrent answers are all delivered, each exactly once`, { timeout: 240_000 }, async () => {
    const { accesses, views } = await awaitingSyncs(ANSWERS);
    const answered = await within(
      60_000,
      `${ANSWERS} concurrent submitChallengeResponse calls did not return (lock pool deadlock?)`,
      Promise.all(views.map((v) => rig.api.engine.submitChallengeResponse(v.syncId, { challengeId: v.challenge!.id, response: FINX_CORRECT_TAN }))),
    );
    expect(answered).toHaveLength(ANSWERS);
    await expect.poll(async () => (await rig.api.store.listSyncs({ active: true })).length, { timeout: 60_000, interval: 250 }).toBe(0);
    const stats = rig.sandbox.stats().finx.connections;
    for (const [i, view] of views.entries()) {
      expect((await rig.api.engine.get(view.syncId)).status).toBe('COMPLETED');
      expect(stats[accesses[i]!.id]!.answers).toBe(1);
    }
    // Every sync lock was released (only these syncs' keys: other test files share the database).
    const { rows } = await rig.api.store.pool.query(
      `SELECT count(*)::int AS n FROM pg_locks l JOIN UNNEST($1::text[]) AS k ON l.locktype = 'advisory' AND l.objsubid = 1
         AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext('banksync-sync:' || k)::bigint`,
      [views.map((v) => v.syncId)],
    );
    expect(rows[0].n).toBe(0);
  });

  it("concurrent cancels all return and fail their syncs", { timeout: 240_000 }, async () => {
    const { views } = await awaitingSyncs(12);
    await within(
      60_000,
      '12 concurrent cancel calls did not return (lock pool deadlock?)',
      Promise.all(views.map((v) => rig.api.engine.cancel(v.syncId, { reason: 'user' }))),
    );
    for (const view of views) expect((await rig.api.engine.get(view.syncId)).status).toBe('FAILED');
  });

  it('an unsigned webhook is only a hint on the dispatching engine too: the forged completion is never applied', { timeout: 120_000 }, async () => {
    const { accesses, views } = await awaitingSyncs(1);
    const view = views[0]!;
    const polls = rig.sandbox.stats().finx.connections[accesses[0]!.id]!.polls;
    const now = new Date().toISOString();
    const forged = {
      event: 'sync.updated',
      sync: { id: view.providerRef, access_id: accesses[0]!.id, scope: 'TRANSACTIONS', status: 'COMPLETED', created_at: now, updated_at: now, challenge: null, error: null, accounts: [] },
    };
    const outcome = await rig.api.engine.handleWebhook('finx', { headers: { 'content-type': 'application/json' }, body: JSON.stringify(forged) });
    expect(outcome).toEqual({ applied: false, syncId: view.syncId, verified: false });
    // The hint job runs on the worker: it has the sync read the provider, which still waits for the TAN.
    await expect.poll(() => rig.sandbox.stats().finx.connections[accesses[0]!.id]!.polls, { timeout: 30_000, interval: 100 }).toBeGreaterThan(polls);
    await expect
      .poll(async () => (await rig.api.store.pool.query(`SELECT count(*)::int AS n FROM ${rig.graphileSchema}._private_jobs WHERE key = $1`, [`hint:${view.syncId}`])).rows[0].n, { timeout: 30_000, interval: 100 })
      .toBe(0);
    expect((await rig.api.engine.get(view.syncId)).state).toMatch(/^AWAIT_AUTH/);
  });
});
