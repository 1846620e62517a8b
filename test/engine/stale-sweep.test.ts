/**
 * The stale sweep (`recoverStuck`, run by every worker process): it reads only the active syncs nothing has
 * written for `staleAfterMs` (an indexed query, see test/stores/query-plans.test.ts) and queues a resume for
 * those whose timers are overdue or missing. Fresh, finished, and stale-but-waiting syncs get nothing.
 */
import { describe, expect, it } from 'vitest';
import type { Activation, Dispatch, SyncKey } from '../../src/engine/dispatch.js';
import { createEngine } from '../../src/engine/engine.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { SqliteStore } from '../../src/stores/sqlite.js';
import type { Store } from '../../src/stores/types.js';

const NOW = 1_800_000_000_000;
const STALE_AFTER_MS = 60_000;

class RecordingDispatch implements Dispatch {
  readonly enqueued: { syncId: string; activation: Activation }[] = [];
  async enqueue(sync: SyncKey, activation: Activation): Promise<void> {
    this.enqueued.push({ syncId: sync.syncId, activation });
  }
  async timersChanged(): Promise<void> {}
  async withSyncLock<T>(_syncId: string, work: () => Promise<T>): Promise<T> {
    return work();
  }
}

const clock = { now: () => NOW, setTimeout: () => 0, clearTimeout: () => {} };

async function seed(store: Store): Promise<void> {
  const create = (syncId: string, createdAt: number) =>
    store.createSync({ syncId, tenantId: 't', connectionId: `c-${syncId}`, provider: 'finx', scope: 'TRANSACTIONS', createdAt });
  // Stale, no timer: lost. Stale with an overdue timer: lost. Stale with a timer still ahead: waiting, fine.
  await create('stale-no-timer', NOW - STALE_AFTER_MS - 1);
  await create('stale-overdue', NOW - 10 * STALE_AFTER_MS);
  await store.commit({
    syncId: 'stale-overdue', expectedVersion: 0, status: 'RUNNING', active: true, providerRef: null, snapshot: null,
    timers: [{ syncId: 'stale-overdue', timerId: 'poll', eventType: 'xstate.after.poll', dueAt: NOW - 5 * STALE_AFTER_MS }],
    transitions: [], pendingEffects: [], at: NOW - 10 * STALE_AFTER_MS,
  });
  await create('stale-waiting', NOW - 10 * STALE_AFTER_MS);
  await store.commit({
    syncId: 'stale-waiting', expectedVersion: 0, status: 'AWAIT_AUTH', active: true, providerRef: null, snapshot: null,
    timers: [{ syncId: 'stale-waiting', timerId: 'auth', eventType: 'xstate.after.auth', dueAt: NOW + STALE_AFTER_MS }],
    transitions: [], pendingEffects: [], at: NOW - 10 * STALE_AFTER_MS,
  });
  // Exactly at the boundary (updated staleAfterMs ago) counts as stale, as before the query was indexed.
  await create('stale-boundary', NOW - STALE_AFTER_MS);
  // Fresh: written within staleAfterMs.
  await create('fresh', NOW - STALE_AFTER_MS + 1);
  // Finished long ago: not active.
  await create('finished', NOW - 100 * STALE_AFTER_MS);
  await store.commit({
    syncId: 'finished', expectedVersion: 0, status: 'COMPLETED', active: false, providerRef: null, snapshot: null,
    timers: [], transitions: [], pendingEffects: [], at: NOW - 100 * STALE_AFTER_MS,
  });
}

describe.each([
  ['MemoryStore', () => new MemoryStore() as Store],
  ['SqliteStore', () => SqliteStore.open(':memory:') as Store],
])('recoverStuck on %s', (_name, open) => {
  it('queues a resume for exactly the stale active syncs whose timers are overdue or missing', async () => {
    const store = open();
    await seed(store);
    const dispatch = new RecordingDispatch();
    const engine = createEngine({ store, providers: {}, dispatch, clock });
    expect(await engine.recoverStuck(STALE_AFTER_MS)).toBe(3);
    expect(dispatch.enqueued.map((e) => e.syncId).sort()).toEqual(['stale-boundary', 'stale-no-timer', 'stale-overdue']);
    expect(dispatch.enqueued.every((e) => e.activation.kind === 'resume')).toBe(true);
    await engine.stop();
    await store.close();
  });
});
