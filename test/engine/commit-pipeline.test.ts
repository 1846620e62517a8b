import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CommitPipeline } from '../../src/engine/commit-pipeline.js';
import { SqliteStore } from '../../src/stores/sqlite.js';
import { StaleWriteError, type CommitChange, type Store, type StoreWrite, type WriteResult } from '../../src/stores/types.js';

const change = (syncId: string, expectedVersion: number, overrides: Partial<CommitChange> = {}): CommitChange => ({
  syncId,
  expectedVersion,
  status: 'RUNNING',
  active: true,
  providerRef: null,
  snapshot: { v: expectedVersion + 1 },
  timers: [],
  transitions: [],
  pendingEffects: [],
  at: 1_000 + expectedVersion,
  ...overrides,
});

/** Records every group and lets the test decide when a group becomes durable. */
class GatedStore {
  readonly groups: CommitChange[][] = [];
  readonly gates: { resolve: (results: WriteResult[]) => void; reject: (error: unknown) => void }[] = [];
  writeMany(writes: readonly StoreWrite[]): Promise<WriteResult[]> {
    this.groups.push(writes.flatMap((w) => (w.op === 'commit' ? [w.change] : [])));
    return new Promise((resolve, reject) => this.gates.push({ resolve, reject }));
  }
}

const until = async (condition: () => boolean): Promise<void> => {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve));
};

describe('CommitPipeline (group commit)', () => {
  const dirs: string[] = [];
  const stores: Store[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('hands every commit of one turn to the store as one group and settles each only once the group is durable', async () => {
    const store = new GatedStore();
    const pipeline = new CommitPipeline(store);
    const settled: string[] = [];
    const a = pipeline.commit(change('a', 0)).then((v) => settled.push(`a${v}`));
    const b = pipeline.commit(change('b', 4)).then((v) => settled.push(`b${v}`));
    await Promise.resolve();
    const c = pipeline.commit(change('c', 1)).then((v) => settled.push(`c${v}`));
    await until(() => store.groups.length === 1);
    expect(store.groups[0]!.map((ch) => ch.syncId)).toEqual(['a', 'b', 'c']);

    // Not durable yet: nothing may be released.
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toEqual([]);

    // Commits arriving while a group is being written wait for the next group.
    const d = pipeline.commit(change('d', 0)).then((v) => settled.push(`d${v}`));
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.groups).toHaveLength(1);

    store.gates[0]!.resolve([
      { ok: true, value: 1 },
      { ok: true, value: 5 },
      { ok: true, value: 2 },
    ]);
    await Promise.all([a, b, c]);
    expect(settled).toEqual(['a1', 'b5', 'c2']);
    await until(() => store.groups.length === 2);
    expect(store.groups[1]!.map((ch) => ch.syncId)).toEqual(['d']);
    store.gates[1]!.resolve([{ ok: true, value: 1 }]);
    await d;
    expect(settled).toEqual(['a1', 'b5', 'c2', 'd1']);
  });

  it('fails every commit of a group the store could not write, and keeps going with the next group', async () => {
    const store = new GatedStore();
    const pipeline = new CommitPipeline(store);
    const first = [pipeline.commit(change('a', 0)), pipeline.commit(change('b', 0))].map((p) => p.then(() => 'ok', (e: unknown) => e));
    await until(() => store.gates.length === 1);
    const diskFull = new Error('SQLITE_FULL');
    store.gates[0]!.reject(diskFull);
    expect(await Promise.all(first)).toEqual([diskFull, diskFull]);
    const next = pipeline.commit(change('a', 0));
    await until(() => store.gates.length === 2);
    store.gates[1]!.resolve([{ ok: true, value: 1 }]);
    expect(await next).toBe(1);
  });

  it('with SQLite: one stale sync in a group fails only itself; the others are durable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'banksync-pipeline-'));
    dirs.push(dir);
    const path = join(dir, 'store.sqlite');
    const store = SqliteStore.open(path);
    stores.push(store);
    for (const id of ['s1', 's2', 's3']) {
      await store.createSync({ syncId: id, tenantId: 't', connectionId: id, provider: 'finx', scope: 'TRANSACTIONS', createdAt: 1 });
    }
    await store.commit(change('s2', 0)); // s2 is now at version 1: a writer holding version 0 is stale
    const pipeline = new CommitPipeline(store);
    const results = await Promise.allSettled([
      pipeline.commit(change('s1', 0, { providerRef: 'one' })),
      pipeline.commit(change('s2', 0, { providerRef: 'stale' })),
      pipeline.commit(change('s3', 0, { providerRef: 'three' })),
    ]);
    expect(results[0]).toEqual({ status: 'fulfilled', value: 1 });
    expect(results[1]!.status).toBe('rejected');
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(StaleWriteError);
    expect(results[2]).toEqual({ status: 'fulfilled', value: 1 });
    expect(pipeline.stats).toMatchObject({ groups: 1, writes: 3, largestGroup: 3 });

    // Durable: another connection to the same file sees exactly the written changes.
    const reader = SqliteStore.open(path);
    stores.push(reader);
    expect((await reader.getSync('s1'))?.providerRef).toBe('one');
    expect((await reader.getSync('s2'))).toMatchObject({ providerRef: null, version: 1 });
    expect((await reader.getSync('s3'))?.providerRef).toBe('three');
  });
});
