/**
 * Issue 12, point 7: snapshots written by another machine version. Every stored snapshot carries the
 * machine version; older ones go through the engine's migrateSnapshot hook; one the machine cannot restore
 * (or an actor that errors) fails that one sync with ENGINE_ERROR, and the process and other syncs go on.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { createEngine, SYNC_MACHINE_VERSION, type EngineOptions, type PersistedSyncSnapshot } from '../../src/engine/engine.js';
import type { EngineErrorEvent } from '../../src/engine/events.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { completed, FakeAdapter, running, settle } from '../support/fake-adapter.js';

const policy = { pollBaseMs: 1_000, pollMaxMs: 1_000, authPollMs: 5_000, retryBaseMs: 1_000, retryMaxMs: 8_000 };

const uncaught: unknown[] = [];
const onUncaught = (error: unknown) => uncaught.push(error);
beforeEach(() => {
  uncaught.length = 0;
  process.on('uncaughtException', onUncaught);
});
afterEach(() => {
  process.off('uncaughtException', onUncaught);
});

/** Two running syncs written by a first engine, then stopped (a deploy). */
async function twoRunningSyncs() {
  const store = new MemoryStore();
  const clock = new SimulatedClock();
  const first = createEngine({ store, providers: { fake: new FakeAdapter('fake', { poll: [running] }) }, clock, policy });
  const a = await first.requestSync({ connectionId: 'conn-a', provider: 'fake' });
  const b = await first.requestSync({ connectionId: 'conn-b', provider: 'fake' });
  await settle();
  await first.stop();
  const rewrite = async (syncId: string, change: (snapshot: PersistedSyncSnapshot) => PersistedSyncSnapshot) => {
    const record = (await store.getSync(syncId))!;
    await store.commit({
      syncId,
      expectedVersion: record.version,
      status: record.status,
      active: true,
      providerRef: record.providerRef,
      snapshot: change(structuredClone(record.snapshot) as PersistedSyncSnapshot),
      timers: await store.listTimers(syncId),
      transitions: [],
      pendingEffects: [],
      at: clock.now(),
    });
  };
  const restart = async (options: Partial<EngineOptions> = {}) => {
    const engine = createEngine({ store, providers: { fake: new FakeAdapter('fake', { poll: [completed] }) }, clock, policy, ...options });
    const errors: EngineErrorEvent[] = [];
    engine.events.on('engine.error', (e) => errors.push(e));
    const started = await engine.start();
    await settle();
    // Let any deferred (setTimeout) unhandled-error report of XState fire before we look.
    await new Promise((resolve) => setTimeout(resolve, 0));
    return { engine, errors, started };
  };
  const advance = async (ms: number) => {
    clock.increment(ms);
    await settle();
  };
  return { store, a, b, rewrite, restart, advance };
}

describe('deploys: machine-versioned snapshots', () => {
  it('stores the machine version with every snapshot', async () => {
    const { store, a } = await twoRunningSyncs();
    expect((await store.getSync(a.syncId))!.snapshot).toMatchObject({ machineVersion: SYNC_MACHINE_VERSION });
  });

  it('a snapshot naming a state that no longer exists fails that one sync with ENGINE_ERROR; the process and the other sync go on', async () => {
    const { a, b, rewrite, restart, advance } = await twoRunningSyncs();
    await rewrite(a.syncId, (s) => ({ ...s, value: { RUNNING: 'RemovedState' } }));
    const { engine, errors } = await restart();
    expect(uncaught).toEqual([]);
    const failed = await engine.get(a.syncId);
    expect(failed).toMatchObject({ status: 'FAILED', active: false, state: 'FAILED' });
    expect(failed.error).toMatchObject({ code: 'ENGINE_ERROR', retryable: false });
    expect(failed.error?.message).toContain('RemovedState');
    expect(errors).toEqual([expect.objectContaining({ syncId: a.syncId, code: 'ENGINE_ERROR' })]);
    // The other sync runs to its end; the failed one's connection is free for a new sync.
    await advance(1_000);
    expect((await engine.get(b.syncId)).status).toBe('COMPLETED');
    expect((await engine.requestSync({ connectionId: 'conn-a', provider: 'fake' })).syncId).not.toBe(a.syncId);
    await engine.stop();
  });

  it('an older snapshot goes through migrateSnapshot, and without a hook fails with ENGINE_ERROR', async () => {
    const old = (s: PersistedSyncSnapshot): PersistedSyncSnapshot => ({ ...s, value: { RUNNING: 'Sleeping' }, machineVersion: 0 });
    const migrated = await twoRunningSyncs();
    await migrated.rewrite(migrated.a.syncId, old);
    const seen: number[] = [];
    const { engine } = await migrated.restart({
      migrateSnapshot: (snapshot, fromVersion) => {
        seen.push(fromVersion);
        return { ...snapshot, value: { RUNNING: 'Waiting' } };
      },
    });
    expect(seen).toEqual([0]);
    await migrated.advance(1_000);
    expect((await engine.get(migrated.a.syncId)).status).toBe('COMPLETED');
    await engine.stop();

    const unmigrated = await twoRunningSyncs();
    await unmigrated.rewrite(unmigrated.a.syncId, old);
    const second = await unmigrated.restart();
    expect((await second.engine.get(unmigrated.a.syncId)).error?.code).toBe('ENGINE_ERROR');
    expect(uncaught).toEqual([]);
    await second.engine.stop();
  });

  it('a snapshot from a newer machine version is left alone (rolling deploy), reported, not failed', async () => {
    const { a, rewrite, restart, store } = await twoRunningSyncs();
    await rewrite(a.syncId, (s) => ({ ...s, machineVersion: SYNC_MACHINE_VERSION + 1 }));
    const before = await store.getSync(a.syncId);
    const { engine, errors, started } = await restart();
    expect(started.resumed).toBe(1);
    expect(errors.map((e) => e.syncId)).toEqual([a.syncId]);
    expect(await store.getSync(a.syncId)).toEqual(before);
    await engine.stop();
  });
});
