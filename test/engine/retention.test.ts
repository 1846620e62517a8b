/**
 * Issue 15.3, retention through the engine on a simulated clock (days in microseconds): `engine.prune` keeps
 * active syncs and the newest sync of each connection, removes only what is past retention, in bounded
 * batches, and refuses bad options with a typed error that changes nothing.
 */
import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { createEngine } from '../../src/engine/engine.js';
import { BanksyncError } from '../../src/engine/errors.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { completed, FakeAdapter, settle } from '../support/fake-adapter.js';

const DAY = 24 * 60 * 60_000;
const T0 = Date.parse('2026-01-05T08:00:00.000Z');

function setup() {
  const clock = new SimulatedClock();
  clock.set(T0);
  const store = new MemoryStore();
  // every trigger completes at once, except on connection "busy", which never finishes
  const adapter = new FakeAdapter('fake', { trigger: [{ providerRef: 'r', observation: completed }], poll: [completed] });
  const engine = createEngine({ store, providers: { fake: adapter }, clock, retention: { finishedSyncsMs: 30 * DAY, transitionsMs: 30 * DAY, effectsMs: 30 * DAY, batchSize: 2 } });
  const sync = async (connectionId: string) => {
    const view = await engine.requestSync({ connectionId, provider: 'fake' });
    await settle();
    return engine.get(view.syncId);
  };
  return { clock, store, engine, sync };
}

describe('engine.prune (retention)', () => {
  it('over 100 simulated days: keeps active syncs and each connection\'s newest, removes finished syncs past 30 days, in batches', async () => {
    const { clock, store, engine, sync } = setup();
    // an active sync started at day 0 that never finishes: it must survive any pruning
    const hanging = new FakeAdapter('slow', { trigger: ['hang'] });
    // its own clock, which stays at day 0: the sync's deadline never fires
    const still = new SimulatedClock();
    still.set(T0);
    const slow = createEngine({ store, providers: { fake: hanging }, clock: still });
    const active = await slow.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    const finished: { syncId: string; at: number }[] = [];
    for (let day = 0; day < 100; day += 10) {
      clock.set(T0 + day * DAY);
      for (const connection of ['a', 'b']) {
        const view = await sync(connection);
        expect(view.status).toBe('COMPLETED');
        finished.push({ syncId: view.syncId, at: clock.now() });
      }
    }
    clock.set(T0 + 100 * DAY);

    const dry = await engine.prune({ dryRun: true });
    const report = await engine.prune();
    const cutoff = clock.now() - 30 * DAY;
    const expectedGone = finished.filter((f) => f.at < cutoff).map((f) => f.syncId);
    expect(expectedGone).toHaveLength(14);
    expect(report).toMatchObject({ dryRun: false, syncs: 14, complete: true });
    expect(dry).toMatchObject({ dryRun: true, syncs: 14, transitions: report.transitions, effects: report.effects });
    // batches of 2: 7 that deleted something and one that found nothing
    expect(report.batches).toBe(8);
    const left = (await store.listSyncs()).map((s) => s.syncId);
    for (const id of expectedGone) expect(left).not.toContain(id);
    expect(left).toContain(active.syncId);
    expect((await store.getSync(active.syncId))?.active).toBe(true);
    expect(left).toHaveLength(finished.length - 14 + 1);
    // the connections still work after pruning
    expect((await sync('a')).status).toBe('COMPLETED');
  });

  it('keeps the newest sync of a connection however old, so a lock left by a crash can still be settled', async () => {
    const { clock, store, engine, sync } = setup();
    const done = await sync('a');
    const connection = await store.getConnection('default', 'a');
    // as if the process died between the sync's commit and the connection's update
    await store.saveConnection({ ...connection!, state: 'SYNCING', context: { ...(connection!.context as object), activeSyncId: done.syncId } }, connection!.version);
    clock.set(T0 + 365 * DAY);
    expect((await engine.prune()).syncs).toBe(0);
    expect((await sync('a')).status).toBe('COMPLETED');
  });

  it('bad options are a typed error and change nothing', async () => {
    const { store, engine, sync, clock } = setup();
    await sync('a');
    await sync('a');
    clock.set(T0 + 365 * DAY);
    for (const options of [{ batchSize: 0 }, { batchSize: 1.5 }, { retention: { finishedSyncsMs: 1_000 } }, { now: -1 }, { unknown: true }]) {
      const error = await engine.prune(options as never).then(() => null, (e: unknown) => e);
      expect(error).toBeInstanceOf(BanksyncError);
      expect((error as BanksyncError).code).toBe('INVALID_REQUEST');
    }
    expect(await store.listSyncs()).toHaveLength(2);
  });
});
