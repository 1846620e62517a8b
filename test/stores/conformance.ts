/**
 * Store conformance suite: the behavioural contract of `Store` (src/stores/types.ts), shared by every
 * implementation (memory, SQLite, PostgreSQL). Store-agnostic on purpose: it only uses the Store API.
 *
 * Requirements on `makeStore`: every call returns a store that is EMPTY (no syncs at all), because
 * listSyncs/countByStatus are checked globally. `cleanup` (default: `store.close()`) runs after each test.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  InvalidCursorError,
  NotFoundError,
  StaleWriteError,
  type CommitChange,
  type ConnectionRecord,
  type EffectRecord,
  type EventRecord,
  type NewEventRecord,
  type NewSync,
  type Store,
  type SyncRecord,
  type TimerRecord,
  type TransitionRecord,
} from '../../src/stores/types.js';

interface StoreState {
  sync: SyncRecord | null;
  timers: TimerRecord[];
  transitions: TransitionRecord[];
  effects: EffectRecord[];
  due: TimerRecord[];
}

const FAR_FUTURE = 2 ** 40;

export function storeConformanceSuite(
  name: string,
  makeStore: () => Promise<Store>,
  cleanup: (s: Store) => Promise<void> = (s) => s.close(),
): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;
    let counter = 0;
    const run = Math.random().toString(36).slice(2, 8);
    /** Unique, increasing ids and timestamps so tests never collide and "newest first" is well defined. */
    const uid = (prefix: string): string => `${prefix}-${run}-${++counter}`;
    let clock = 1_000;
    const tick = (): number => (clock += 10);

    const newSync = (overrides: Partial<NewSync> = {}): NewSync => ({
      syncId: uid('sync'),
      tenantId: 'tenant-a',
      connectionId: uid('conn'),
      provider: 'finx',
      scope: 'TRANSACTIONS',
      createdAt: tick(),
      ...overrides,
    });

    const create = async (overrides: Partial<NewSync> = {}): Promise<SyncRecord> => {
      const { sync, created } = await store.createSync(newSync(overrides));
      expect(created).toBe(true);
      return sync;
    };

    const change = (syncId: string, expectedVersion: number, overrides: Partial<CommitChange> = {}): CommitChange => ({
      syncId,
      expectedVersion,
      status: 'RUNNING',
      active: true,
      providerRef: null,
      snapshot: { value: { RUNNING: 'Waiting' }, context: { polls: expectedVersion } },
      timers: [],
      transitions: [],
      pendingEffects: [],
      at: tick(),
      ...overrides,
    });

    /** Everything the store holds about one sync, deep-copied so a store leaking references cannot fool a comparison. */
    const stateOf = async (syncId: string): Promise<StoreState> =>
      structuredClone({
        sync: await store.getSync(syncId),
        timers: await store.listTimers(syncId),
        transitions: await store.listTransitions(syncId),
        effects: await store.listEffects(syncId),
        due: (await store.dueTimers(FAR_FUTURE, 10_000)).filter((t) => t.syncId === syncId),
      });

    const expectStale = async (promise: Promise<unknown>, syncId: string, expectedVersion: number): Promise<void> => {
      const err = await promise.then(
        () => {
          throw new Error('expected StaleWriteError, but the commit succeeded');
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StaleWriteError);
      expect((err as StaleWriteError).syncId).toBe(syncId);
      expect((err as StaleWriteError).expectedVersion).toBe(expectedVersion);
    };

    beforeEach(async () => {
      store = await makeStore();
    });

    afterEach(async () => {
      await cleanup(store);
    });

    describe('createSync (single-flight)', () => {
      it('creates a QUEUED, active sync at version 0 with a null snapshot', async () => {
        const input = newSync({ scope: 'ACCOUNTS' });
        const { sync, created } = await store.createSync(input);
        const expected: SyncRecord = {
          syncId: input.syncId,
          tenantId: input.tenantId,
          connectionId: input.connectionId,
          provider: input.provider,
          scope: 'ACCOUNTS',
          status: 'QUEUED',
          active: true,
          providerRef: null,
          snapshot: null,
          version: 0,
          createdAt: input.createdAt,
          updatedAt: input.createdAt,
        };
        expect(created).toBe(true);
        expect(sync).toEqual(expected);
        expect(await store.getSync(input.syncId)).toEqual(expected);
      });

      it('returns the existing active sync for the same tenant + connection (created=false)', async () => {
        const first = await create({ connectionId: 'conn-x' });
        const second = newSync({ connectionId: 'conn-x', provider: 'other', scope: 'ACCOUNTS' });
        const result = await store.createSync(second);
        expect(result.created).toBe(false);
        expect(result.sync).toEqual(first);
        expect(await store.getSync(second.syncId)).toBeNull();
        expect(await store.listSyncs()).toHaveLength(1);
      });

      it('still returns the existing sync after it has progressed', async () => {
        const first = await create({ connectionId: 'conn-x' });
        await store.commit(change(first.syncId, 0, { providerRef: 'ref-1' }));
        const result = await store.createSync(newSync({ connectionId: 'conn-x' }));
        expect(result.created).toBe(false);
        expect(result.sync.syncId).toBe(first.syncId);
        expect(result.sync.version).toBe(1);
        expect(result.sync.providerRef).toBe('ref-1');
      });

      it('creates independently for a different tenant or a different connection', async () => {
        const a = await create({ tenantId: 'tenant-a', connectionId: 'conn-x' });
        const b = await create({ tenantId: 'tenant-b', connectionId: 'conn-x' });
        const c = await create({ tenantId: 'tenant-a', connectionId: 'conn-y' });
        expect(new Set([a.syncId, b.syncId, c.syncId]).size).toBe(3);
        expect(await store.listSyncs()).toHaveLength(3);
      });

      it('allows a new sync once the previous one became inactive', async () => {
        const first = await create({ connectionId: 'conn-x' });
        await store.commit(change(first.syncId, 0, { status: 'COMPLETED', active: false }));
        const next = newSync({ connectionId: 'conn-x' });
        const result = await store.createSync(next);
        expect(result.created).toBe(true);
        expect(result.sync.syncId).toBe(next.syncId);
        expect((await store.findActiveSync('tenant-a', 'conn-x'))?.syncId).toBe(next.syncId);
        // The old one is untouched and a third create is single-flighted onto the new one.
        expect((await store.getSync(first.syncId))?.status).toBe('COMPLETED');
        const third = await store.createSync(newSync({ connectionId: 'conn-x' }));
        expect(third.created).toBe(false);
        expect(third.sync.syncId).toBe(next.syncId);
      });

      it('lets exactly one of several concurrent creates win', async () => {
        const inputs = Array.from({ length: 8 }, () => newSync({ connectionId: 'conn-race' }));
        const results = await Promise.all(inputs.map((i) => store.createSync(i)));
        expect(results.filter((r) => r.created)).toHaveLength(1);
        const winner = results.find((r) => r.created)!.sync.syncId;
        for (const r of results) expect(r.sync.syncId).toBe(winner);
        expect(await store.listSyncs({ connectionId: 'conn-race' })).toHaveLength(1);
      });
    });

    describe('commit (fenced write)', () => {
      it('bumps the version and writes status, active, providerRef, snapshot and updatedAt', async () => {
        const s = await create();
        const c = change(s.syncId, 0, {
          status: 'AWAIT_AUTH',
          providerRef: 'ref-42',
          snapshot: { value: 'AWAIT_AUTH', context: { challenge: { id: 'ch-1' } } },
        });
        expect(await store.commit(c)).toBe(1);
        expect(await store.getSync(s.syncId)).toEqual({
          ...s,
          status: 'AWAIT_AUTH',
          active: true,
          providerRef: 'ref-42',
          snapshot: { value: 'AWAIT_AUTH', context: { challenge: { id: 'ch-1' } } },
          version: 1,
          updatedAt: c.at,
        });
      });

      it('returns consecutive versions for consecutive commits', async () => {
        const s = await create();
        expect(await store.commit(change(s.syncId, 0))).toBe(1);
        expect(await store.commit(change(s.syncId, 1))).toBe(2);
        expect(await store.commit(change(s.syncId, 2, { providerRef: 'r', snapshot: null }))).toBe(3);
        const after = await store.getSync(s.syncId);
        expect(after?.version).toBe(3);
        expect(after?.snapshot).toBeNull();
        expect(after?.providerRef).toBe('r');
      });

      it('rejects a stale expectedVersion with StaleWriteError and writes nothing', async () => {
        const s = await create();
        await store.commit(
          change(s.syncId, 0, {
            timers: [{ syncId: s.syncId, timerId: 'poll', eventType: 'xstate.after.poll', dueAt: 5_000 }],
            transitions: [{ from: null, to: 'QUEUED', event: 'xstate.init', at: 1 }],
            pendingEffects: [{ effectKey: `${s.syncId}:trigger:1`, kind: 'trigger' }],
          }),
        );
        await store.startEffect(`${s.syncId}:trigger:1`, s.syncId, 'trigger', tick());
        await store.finishEffect(`${s.syncId}:trigger:1`, 'DONE', { providerRef: 'p' }, tick());
        const before = await stateOf(s.syncId);

        for (const stale of [0, 2, 7]) {
          await expectStale(
            store.commit(
              change(s.syncId, stale, {
                status: 'FAILED',
                active: false,
                providerRef: 'hijacked',
                snapshot: { hijacked: true },
                timers: [{ syncId: s.syncId, timerId: 'other', eventType: 'x', dueAt: 1 }],
                transitions: [{ from: 'QUEUED', to: 'FAILED', event: 'FAIL', at: 2 }],
                pendingEffects: [
                  { effectKey: `${s.syncId}:trigger:1`, kind: 'trigger' },
                  { effectKey: `${s.syncId}:stale:1`, kind: 'poll' },
                ],
              }),
            ),
            s.syncId,
            stale,
          );
        }

        expect(await stateOf(s.syncId)).toEqual(before);
        expect(await store.getEffect(`${s.syncId}:stale:1`)).toBeNull();
        expect(await store.findActiveSync(s.tenantId, s.connectionId)).toEqual(before.sync);
      });

      it('rejects a commit to an unknown sync with StaleWriteError', async () => {
        await expectStale(store.commit(change('no-such-sync', 0)), 'no-such-sync', 0);
        expect(await store.getSync('no-such-sync')).toBeNull();
      });

      it('lets exactly one of several concurrent commits on the same version win', async () => {
        const s = await create();
        const attempts = Array.from({ length: 5 }, (_, i) =>
          store.commit(
            change(s.syncId, 0, {
              providerRef: `writer-${i}`,
              transitions: [{ from: 'QUEUED', to: 'RUNNING', event: `W${i}`, at: i }],
            }),
          ),
        );
        const settled = await Promise.allSettled(attempts);
        const won = settled.filter((r) => r.status === 'fulfilled');
        const lost = settled.filter((r) => r.status === 'rejected');
        expect(won).toHaveLength(1);
        expect((won[0] as PromiseFulfilledResult<number>).value).toBe(1);
        for (const r of lost) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(StaleWriteError);
        const winnerIndex = settled.findIndex((r) => r.status === 'fulfilled');
        expect((await store.getSync(s.syncId))?.providerRef).toBe(`writer-${winnerIndex}`);
        expect((await store.listTransitions(s.syncId)).map((t) => t.event)).toEqual([`W${winnerIndex}`]);
      });
    });

    describe('commitMany (group commit)', () => {
      const timerOf = (syncId: string, timerId: string, dueAt: number, eventType = `xstate.after.${timerId}`): TimerRecord => ({ syncId, timerId, eventType, dueAt });

      it('writes every change of a group and returns each one its new version, as separate commits would', async () => {
        const a = await create();
        const b = await create();
        const c = await create();
        const results = await store.commitMany([
          change(a.syncId, 0, { providerRef: 'ra', timers: [timerOf(a.syncId, 'poll', 5_000)], transitions: [{ from: null, to: 'RUNNING', event: 'xstate.init', at: 1 }] }),
          change(b.syncId, 0, { status: 'COMPLETED', active: false, pendingEffects: [{ effectKey: `${b.syncId}:poll:1`, kind: 'poll' }] }),
          change(c.syncId, 0, { snapshot: { n: 3 } }),
        ]);
        expect(results).toEqual([
          { ok: true, version: 1 },
          { ok: true, version: 1 },
          { ok: true, version: 1 },
        ]);
        expect((await store.getSync(a.syncId))?.providerRef).toBe('ra');
        expect(await store.listTimers(a.syncId)).toEqual([timerOf(a.syncId, 'poll', 5_000)]);
        expect((await store.listTransitions(a.syncId)).map((t) => [t.seq, t.to])).toEqual([[1, 'RUNNING']]);
        expect(await store.findActiveSync(b.tenantId, b.connectionId)).toBeNull();
        expect((await store.getEffect(`${b.syncId}:poll:1`))?.state).toBe('PENDING');
        expect((await store.getSync(c.syncId))?.snapshot).toEqual({ n: 3 });
      });

      it('fails only the stale change of a group: it writes nothing, the others are written', async () => {
        const fresh = await create();
        const stale = await create();
        await store.commit(change(stale.syncId, 0, { timers: [timerOf(stale.syncId, 'keep', 7_000)] }));
        const before = await stateOf(stale.syncId);
        const results = await store.commitMany([
          change(fresh.syncId, 0, { providerRef: 'fresh', transitions: [{ from: null, to: 'RUNNING', event: 'GO', at: 1 }] }),
          change(stale.syncId, 0, {
            status: 'FAILED',
            active: false,
            snapshot: { hijacked: true },
            timers: [],
            transitions: [{ from: 'RUNNING', to: 'FAILED', event: 'FAIL', at: 2 }],
            pendingEffects: [{ effectKey: `${stale.syncId}:stale:1`, kind: 'poll' }],
          }),
          change('no-such-sync', 0),
        ]);
        expect(results[0]).toEqual({ ok: true, version: 1 });
        for (const [index, syncId] of [[1, stale.syncId], [2, 'no-such-sync']] as const) {
          const result = results[index]!;
          expect(result.ok).toBe(false);
          const error = (result as { ok: false; error: unknown }).error;
          expect(error).toBeInstanceOf(StaleWriteError);
          expect((error as StaleWriteError).syncId).toBe(syncId);
        }
        expect(await stateOf(stale.syncId)).toEqual(before);
        expect(await store.getEffect(`${stale.syncId}:stale:1`)).toBeNull();
        expect((await store.getSync(fresh.syncId))?.providerRef).toBe('fresh');
        expect((await store.listTransitions(fresh.syncId)).map((t) => t.event)).toEqual(['GO']);
        expect(await store.getSync('no-such-sync')).toBeNull();
      });

      it('fails only a change whose snapshot cannot be encoded', async () => {
        const good = await create();
        const bad = await create();
        const results = await store.commitMany([change(bad.syncId, 0, { snapshot: { n: 1n } }), change(good.syncId, 0, { providerRef: 'ok' })]);
        expect(results[0]?.ok).toBe(false);
        expect(results[1]).toEqual({ ok: true, version: 1 });
        expect((await store.getSync(bad.syncId))?.version).toBe(0);
        expect((await store.getSync(good.syncId))?.providerRef).toBe('ok');
      });

      it('applies consecutive changes of one sync within a group in order', async () => {
        const s = await create();
        const results = await store.commitMany([
          change(s.syncId, 0, { transitions: [{ from: null, to: 'RUNNING', event: 'A', at: 1 }], timers: [timerOf(s.syncId, 't', 1_000)] }),
          change(s.syncId, 1, { transitions: [{ from: 'RUNNING', to: 'AWAIT_AUTH', event: 'B', at: 2 }], timers: [timerOf(s.syncId, 't', 2_000)] }),
          change(s.syncId, 1, { providerRef: 'late' }),
        ]);
        expect(results.map((r) => r.ok)).toEqual([true, true, false]);
        expect((await store.listTransitions(s.syncId)).map((t) => [t.seq, t.event])).toEqual([[1, 'A'], [2, 'B']]);
        expect(await store.listTimers(s.syncId)).toEqual([timerOf(s.syncId, 't', 2_000)]);
        expect((await store.getSync(s.syncId))?.version).toBe(2);
      });

      it('keeps, moves, re-types and removes timers exactly as listed (timers are diffed, not rewritten)', async () => {
        const s = await create();
        await store.commitMany([change(s.syncId, 0, { timers: [timerOf(s.syncId, 'a', 1_000), timerOf(s.syncId, 'b', 2_000), timerOf(s.syncId, 'c', 3_000)] })]);
        await store.commitMany([change(s.syncId, 1, { timers: [timerOf(s.syncId, 'a', 1_000), timerOf(s.syncId, 'b', 2_500), timerOf(s.syncId, 'c', 3_000, 'other'), timerOf(s.syncId, 'd', 500)] })]);
        expect(await store.listTimers(s.syncId)).toEqual([
          timerOf(s.syncId, 'd', 500),
          timerOf(s.syncId, 'a', 1_000),
          timerOf(s.syncId, 'b', 2_500),
          timerOf(s.syncId, 'c', 3_000, 'other'),
        ]);
        await store.commitMany([change(s.syncId, 2, { timers: [timerOf(s.syncId, 'b', 2_500)] })]);
        expect(await store.listTimers(s.syncId)).toEqual([timerOf(s.syncId, 'b', 2_500)]);
        expect((await store.dueTimers(FAR_FUTURE, 100)).filter((t) => t.syncId === s.syncId)).toEqual([timerOf(s.syncId, 'b', 2_500)]);
        expect(await store.commitMany([])).toEqual([]);
      });
    });

    describe('writeMany (group of commits and journal writes)', () => {
      it('applies commits and effect-journal writes in order, each failing only itself', async () => {
        const s = await create();
        const other = await create();
        const key = `${s.syncId}:trigger:1`;
        const results = await store.writeMany([
          { op: 'commit', change: change(s.syncId, 0, { pendingEffects: [{ effectKey: key, kind: 'trigger' }] }) },
          { op: 'startEffect', effectKey: key, syncId: s.syncId, kind: 'trigger', at: 50 },
          { op: 'finishEffect', effectKey: key, state: 'DONE', outcome: { providerRef: 'p' }, at: 60 },
          { op: 'finishEffect', effectKey: 'no-such-effect', state: 'DONE', outcome: null, at: 61 },
          { op: 'startEffect', effectKey: 'orphan', syncId: 'no-such-sync', kind: 'poll', at: 62 },
          { op: 'commit', change: change(other.syncId, 3) },
          { op: 'commit', change: change(other.syncId, 0, { providerRef: 'other' }) },
        ]);
        expect(results.map((r) => r.ok)).toEqual([true, true, true, false, false, false, true]);
        expect(results[0]).toEqual({ ok: true, value: 1 });
        expect((results[1] as { value: EffectRecord }).value).toMatchObject({ effectKey: key, state: 'PENDING' });
        expect((results[3] as { error: unknown }).error).toBeInstanceOf(NotFoundError);
        expect((results[4] as { error: unknown }).error).toBeInstanceOf(NotFoundError);
        expect((results[5] as { error: unknown }).error).toBeInstanceOf(StaleWriteError);
        expect(await store.getEffect(key)).toMatchObject({ state: 'DONE', startedAt: 50, finishedAt: 60, outcome: { providerRef: 'p' } });
        expect(await store.getEffect('orphan')).toBeNull();
        expect(await store.getSync(other.syncId)).toMatchObject({ version: 1, providerRef: 'other' });
      });
    });

    describe('writeMany: new syncs and connection saves', () => {
      it('creates syncs single-flight and saves connections fenced, each write on its own', async () => {
        const first = newSync();
        const second = newSync({ connectionId: first.connectionId });
        const conn = { tenantId: 'tenant-a', connectionId: first.connectionId, provider: 'finx', state: 'SYNCING', context: { n: 1 }, updatedAt: 5 };
        const results = await store.writeMany([
          { op: 'createSync', sync: first },
          { op: 'createSync', sync: second },
          { op: 'saveConnection', record: conn, expectedVersion: 0 },
          { op: 'saveConnection', record: { ...conn, state: 'IDLE' }, expectedVersion: 0 },
          { op: 'saveConnection', record: { ...conn, state: 'IDLE', updatedAt: 6 }, expectedVersion: 1 },
        ]);
        expect(results.map((r) => r.ok)).toEqual([true, true, true, false, true]);
        expect((results[0] as { value: { created: boolean; sync: SyncRecord } }).value).toMatchObject({ created: true, sync: { syncId: first.syncId } });
        expect((results[1] as { value: { created: boolean; sync: SyncRecord } }).value).toMatchObject({ created: false, sync: { syncId: first.syncId } });
        expect((results[3] as { error: unknown }).error).toBeInstanceOf(StaleWriteError);
        expect(results[4]).toEqual({ ok: true, value: 2 });
        expect(await store.getConnection('tenant-a', first.connectionId)).toMatchObject({ state: 'IDLE', version: 2, updatedAt: 6 });
        expect(await store.getSync(second.syncId)).toBeNull();
      });
    });

    describe('timers', () => {
      const timer = (syncId: string, timerId: string, dueAt: number): TimerRecord => ({
        syncId,
        timerId,
        eventType: `xstate.after.${timerId}`,
        dueAt,
      });

      it('replaces every timer of the sync on each commit, leaving other syncs alone', async () => {
        const s = await create();
        const other = await create();
        await store.commit(change(other.syncId, 0, { timers: [timer(other.syncId, 'keep', 9_000)] }));

        await store.commit(change(s.syncId, 0, { timers: [timer(s.syncId, 'b', 2_000), timer(s.syncId, 'a', 1_000)] }));
        expect(await store.listTimers(s.syncId)).toEqual([timer(s.syncId, 'a', 1_000), timer(s.syncId, 'b', 2_000)]);

        await store.commit(change(s.syncId, 1, { timers: [timer(s.syncId, 'c', 3_000)] }));
        expect(await store.listTimers(s.syncId)).toEqual([timer(s.syncId, 'c', 3_000)]);

        await store.commit(change(s.syncId, 2, { timers: [timer(s.syncId, 'c', 4_000)] }));
        expect(await store.listTimers(s.syncId)).toEqual([timer(s.syncId, 'c', 4_000)]);

        await store.commit(change(s.syncId, 3, { timers: [] }));
        expect(await store.listTimers(s.syncId)).toEqual([]);

        expect(await store.listTimers(other.syncId)).toEqual([timer(other.syncId, 'keep', 9_000)]);
      });

      it('returns an empty list for a sync without timers', async () => {
        const s = await create();
        expect(await store.listTimers(s.syncId)).toEqual([]);
        expect(await store.listTimers('no-such-sync')).toEqual([]);
      });

      it('dueTimers returns timers due at or before `until`, earliest first, across syncs, up to `limit`', async () => {
        const s1 = await create();
        const s2 = await create();
        // Ids deliberately sort differently from due times.
        await store.commit(
          change(s1.syncId, 0, { timers: [timer(s1.syncId, 'alpha', 300), timer(s1.syncId, 'zeta', 100)] }),
        );
        await store.commit(
          change(s2.syncId, 0, {
            timers: [timer(s2.syncId, 'mid', 200), timer(s2.syncId, 'beta', 400), timer(s2.syncId, 'omega', 900)],
          }),
        );

        expect(await store.dueTimers(50, 10)).toEqual([]);
        expect(await store.dueTimers(100, 10)).toEqual([timer(s1.syncId, 'zeta', 100)]);
        expect(await store.dueTimers(400, 10)).toEqual([
          timer(s1.syncId, 'zeta', 100),
          timer(s2.syncId, 'mid', 200),
          timer(s1.syncId, 'alpha', 300),
          timer(s2.syncId, 'beta', 400),
        ]);
        expect(await store.dueTimers(FAR_FUTURE, 2)).toEqual([timer(s1.syncId, 'zeta', 100), timer(s2.syncId, 'mid', 200)]);
        expect(await store.dueTimers(FAR_FUTURE, 0)).toEqual([]);
        expect((await store.dueTimers(FAR_FUTURE, 100)).map((t) => t.dueAt)).toEqual([100, 200, 300, 400, 900]);
        expect((await store.listTimers(s2.syncId)).map((t) => t.timerId)).toEqual(['mid', 'beta', 'omega']);

        // Once replaced, a timer is no longer due.
        await store.commit(change(s1.syncId, 1, { timers: [] }));
        expect((await store.dueTimers(FAR_FUTURE, 100)).map((t) => t.timerId)).toEqual(['mid', 'beta', 'omega']);
      });
    });

    describe('transitions', () => {
      it('appends with consecutive 1-based seq across commits, per sync', async () => {
        const s = await create();
        const other = await create();
        await store.commit(
          change(s.syncId, 0, {
            transitions: [
              { from: null, to: 'QUEUED', event: 'xstate.init', at: 10 },
              { from: 'QUEUED', to: 'RUNNING.Triggering', event: 'START', at: 11 },
            ],
          }),
        );
        await store.commit(change(s.syncId, 1, { transitions: [] }));
        await store.commit(
          change(other.syncId, 0, { transitions: [{ from: null, to: 'QUEUED', event: 'xstate.init', at: 5 }] }),
        );
        await store.commit(
          change(s.syncId, 2, {
            transitions: [{ from: 'RUNNING.Triggering', to: 'RUNNING.Waiting', event: 'xstate.done.actor.trigger', at: 12 }],
          }),
        );

        expect(await store.listTransitions(s.syncId)).toEqual([
          { syncId: s.syncId, seq: 1, from: null, to: 'QUEUED', event: 'xstate.init', at: 10 },
          { syncId: s.syncId, seq: 2, from: 'QUEUED', to: 'RUNNING.Triggering', event: 'START', at: 11 },
          {
            syncId: s.syncId,
            seq: 3,
            from: 'RUNNING.Triggering',
            to: 'RUNNING.Waiting',
            event: 'xstate.done.actor.trigger',
            at: 12,
          },
        ]);
        expect(await store.listTransitions(other.syncId)).toEqual([
          { syncId: other.syncId, seq: 1, from: null, to: 'QUEUED', event: 'xstate.init', at: 5 },
        ]);
        expect(await store.listTransitions('no-such-sync')).toEqual([]);
      });
    });

    describe('effects', () => {
      it('inserts pendingEffects as PENDING, stamped with the commit time', async () => {
        const s = await create();
        const c = change(s.syncId, 0, {
          pendingEffects: [
            { effectKey: `${s.syncId}:trigger:1`, kind: 'trigger' },
            { effectKey: `${s.syncId}:poll:1`, kind: 'poll' },
          ],
        });
        await store.commit(c);
        const pending = (key: string, kind: string): EffectRecord => ({
          effectKey: key,
          syncId: s.syncId,
          kind,
          state: 'PENDING',
          createdAt: c.at,
          startedAt: null,
          finishedAt: null,
          outcome: null,
        });
        expect(await store.getEffect(`${s.syncId}:trigger:1`)).toEqual(pending(`${s.syncId}:trigger:1`, 'trigger'));
        expect(await store.listEffects(s.syncId)).toEqual([
          pending(`${s.syncId}:poll:1`, 'poll'),
          pending(`${s.syncId}:trigger:1`, 'trigger'),
        ]);
      });

      it('does not reset an already journaled effect when a later commit lists the same key', async () => {
        const s = await create();
        const key = `${s.syncId}:trigger:1`;
        const startedKey = `${s.syncId}:poll:1`;
        await store.commit(
          change(s.syncId, 0, {
            pendingEffects: [
              { effectKey: key, kind: 'trigger' },
              { effectKey: startedKey, kind: 'poll' },
            ],
          }),
        );
        await store.startEffect(key, s.syncId, 'trigger', tick());
        await store.finishEffect(key, 'DONE', { providerRef: 'ref-1' }, tick());
        await store.startEffect(startedKey, s.syncId, 'poll', tick());
        const done = await store.getEffect(key);
        const started = await store.getEffect(startedKey);
        expect(done?.state).toBe('DONE');
        expect(started?.state).toBe('STARTED');

        await store.commit(
          change(s.syncId, 1, {
            pendingEffects: [
              { effectKey: key, kind: 'trigger' },
              { effectKey: startedKey, kind: 'poll' },
            ],
          }),
        );
        expect(await store.getEffect(key)).toEqual(done);
        expect(await store.getEffect(startedKey)).toEqual(started);
        expect(await store.listEffects(s.syncId)).toHaveLength(2);
      });

      it('startEffect on an absent effect inserts it as STARTED and returns null', async () => {
        const s = await create();
        const key = `${s.syncId}:trigger:1`;
        expect(await store.getEffect(key)).toBeNull();
        expect(await store.startEffect(key, s.syncId, 'trigger', 777)).toBeNull();
        expect(await store.getEffect(key)).toEqual({
          effectKey: key,
          syncId: s.syncId,
          kind: 'trigger',
          state: 'STARTED',
          createdAt: 777,
          startedAt: 777,
          finishedAt: null,
          outcome: null,
        });
      });

      it('startEffect on a PENDING effect returns the PENDING record and marks it STARTED', async () => {
        const s = await create();
        const key = `${s.syncId}:poll:1`;
        const c = change(s.syncId, 0, { pendingEffects: [{ effectKey: key, kind: 'poll' }] });
        await store.commit(c);
        const pending = await store.getEffect(key);
        const previous = await store.startEffect(key, s.syncId, 'poll', 5_555);
        expect(previous).toEqual(pending);
        expect(previous?.state).toBe('PENDING');
        expect(await store.getEffect(key)).toEqual({ ...pending, state: 'STARTED', startedAt: 5_555, createdAt: c.at });
      });

      it('startEffect on a STARTED effect (restart after a crash) returns it and restamps startedAt', async () => {
        const s = await create();
        const key = `${s.syncId}:poll:1`;
        await store.startEffect(key, s.syncId, 'poll', 100);
        const first = await store.getEffect(key);
        const previous = await store.startEffect(key, s.syncId, 'poll', 200);
        expect(previous).toEqual(first);
        expect(await store.getEffect(key)).toEqual({ ...first, state: 'STARTED', startedAt: 200 });
      });

      it.each(['DONE', 'FAILED'] as const)('startEffect never downgrades a %s effect', async (final) => {
        const s = await create();
        const key = `${s.syncId}:trigger:1`;
        await store.startEffect(key, s.syncId, 'trigger', 100);
        await store.finishEffect(key, final, { result: final, n: [1, 2] }, 150);
        const finished = await store.getEffect(key);
        expect(finished).toEqual({
          effectKey: key,
          syncId: s.syncId,
          kind: 'trigger',
          state: final,
          createdAt: 100,
          startedAt: 100,
          finishedAt: 150,
          outcome: { result: final, n: [1, 2] },
        });
        expect(await store.startEffect(key, s.syncId, 'trigger', 300)).toEqual(finished);
        expect(await store.getEffect(key)).toEqual(finished);
      });

      it('finishEffect records state, outcome and finishedAt, keeping the start', async () => {
        const s = await create();
        const ok = `${s.syncId}:poll:1`;
        const bad = `${s.syncId}:poll:2`;
        await store.startEffect(ok, s.syncId, 'poll', 10);
        await store.startEffect(bad, s.syncId, 'poll', 11);
        await store.finishEffect(ok, 'DONE', { observation: { status: 'RUNNING' }, observedAt: 12 }, 20);
        await store.finishEffect(bad, 'FAILED', { code: 'PROVIDER_5XX', retryable: true }, 21);
        expect(await store.getEffect(ok)).toMatchObject({
          state: 'DONE',
          startedAt: 10,
          finishedAt: 20,
          outcome: { observation: { status: 'RUNNING' }, observedAt: 12 },
        });
        expect(await store.getEffect(bad)).toMatchObject({
          state: 'FAILED',
          startedAt: 11,
          finishedAt: 21,
          outcome: { code: 'PROVIDER_5XX', retryable: true },
        });
      });

      it('finishEffect with a null outcome stores null', async () => {
        const s = await create();
        const key = `${s.syncId}:answer:1`;
        await store.startEffect(key, s.syncId, 'answer', 10);
        await store.finishEffect(key, 'DONE', null, 20);
        expect(await store.getEffect(key)).toMatchObject({ state: 'DONE', outcome: null, finishedAt: 20 });
      });

      it('finishEffect on an unknown effect rejects with NotFoundError', async () => {
        await create();
        await expect(store.finishEffect('no-such-effect', 'DONE', {}, 1)).rejects.toBeInstanceOf(NotFoundError);
        expect(await store.getEffect('no-such-effect')).toBeNull();
      });

      it('startEffect for an unknown sync rejects with NotFoundError and inserts nothing', async () => {
        await expect(store.startEffect('orphan', 'no-such-sync', 'poll', 1)).rejects.toBeInstanceOf(NotFoundError);
        expect(await store.getEffect('orphan')).toBeNull();
      });

      it('listEffects returns only the sync’s effects, oldest first', async () => {
        const s = await create();
        const other = await create();
        await store.startEffect('k-b', s.syncId, 'poll', 300);
        await store.startEffect('k-a', s.syncId, 'trigger', 100);
        await store.startEffect('k-other', other.syncId, 'poll', 200);
        expect((await store.listEffects(s.syncId)).map((e) => e.effectKey)).toEqual(['k-a', 'k-b']);
        expect((await store.listEffects(other.syncId)).map((e) => e.effectKey)).toEqual(['k-other']);
        expect(await store.listEffects('no-such-sync')).toEqual([]);
      });
    });

    describe('queries', () => {
      it('getSync returns null for an unknown id', async () => {
        expect(await store.getSync('no-such-sync')).toBeNull();
      });

      it('findActiveSync returns the active sync of a connection, or null', async () => {
        const s = await create({ tenantId: 't1', connectionId: 'c1' });
        await create({ tenantId: 't1', connectionId: 'c2' });
        expect(await store.findActiveSync('t1', 'c1')).toEqual(s);
        expect(await store.findActiveSync('t2', 'c1')).toBeNull();
        expect(await store.findActiveSync('t1', 'c3')).toBeNull();
        await store.commit(change(s.syncId, 0, { status: 'FAILED', active: false }));
        expect(await store.findActiveSync('t1', 'c1')).toBeNull();
      });

      it('findSyncByProviderRef matches provider and providerRef', async () => {
        const s = await create({ provider: 'finx' });
        const other = await create({ provider: 'tink' });
        expect(await store.findSyncByProviderRef('finx', 'ref-1')).toBeNull();
        await store.commit(change(s.syncId, 0, { providerRef: 'ref-1' }));
        await store.commit(change(other.syncId, 0, { providerRef: 'ref-2' }));
        const found = await store.findSyncByProviderRef('finx', 'ref-1');
        expect(found?.syncId).toBe(s.syncId);
        expect(found?.version).toBe(1);
        expect(await store.findSyncByProviderRef('tink', 'ref-1')).toBeNull();
        expect((await store.findSyncByProviderRef('tink', 'ref-2'))?.syncId).toBe(other.syncId);
        expect(await store.findSyncByProviderRef('finx', 'ref-2')).toBeNull();
      });

      it('listSyncs filters by tenant, connection, active and status, newest first, with a limit', async () => {
        const a1 = await create({ tenantId: 'ta', connectionId: 'c1' });
        const a2 = await create({ tenantId: 'ta', connectionId: 'c2' });
        const b1 = await create({ tenantId: 'tb', connectionId: 'c1' });
        await store.commit(change(a1.syncId, 0, { status: 'COMPLETED', active: false }));
        const a3 = await create({ tenantId: 'ta', connectionId: 'c1' });
        await store.commit(change(a2.syncId, 0, { status: 'AWAIT_AUTH' }));

        const ids = (rs: SyncRecord[]): string[] => rs.map((r) => r.syncId);
        expect(ids(await store.listSyncs())).toEqual([a3.syncId, b1.syncId, a2.syncId, a1.syncId]);
        expect(ids(await store.listSyncs({}))).toEqual([a3.syncId, b1.syncId, a2.syncId, a1.syncId]);
        expect(ids(await store.listSyncs({ tenantId: 'ta' }))).toEqual([a3.syncId, a2.syncId, a1.syncId]);
        expect(ids(await store.listSyncs({ connectionId: 'c1' }))).toEqual([a3.syncId, b1.syncId, a1.syncId]);
        expect(ids(await store.listSyncs({ tenantId: 'ta', connectionId: 'c1' }))).toEqual([a3.syncId, a1.syncId]);
        expect(ids(await store.listSyncs({ active: true }))).toEqual([a3.syncId, b1.syncId, a2.syncId]);
        expect(ids(await store.listSyncs({ active: false }))).toEqual([a1.syncId]);
        expect(ids(await store.listSyncs({ status: 'QUEUED' }))).toEqual([a3.syncId, b1.syncId]);
        expect(ids(await store.listSyncs({ status: 'AWAIT_AUTH' }))).toEqual([a2.syncId]);
        expect(ids(await store.listSyncs({ status: 'RUNNING' }))).toEqual([]);
        expect(ids(await store.listSyncs({ tenantId: 'ta', active: true, status: 'QUEUED' }))).toEqual([a3.syncId]);
        expect(ids(await store.listSyncs({ limit: 2 }))).toEqual([a3.syncId, b1.syncId]);
        expect(ids(await store.listSyncs({ tenantId: 'ta', limit: 1 }))).toEqual([a3.syncId]);
        expect(await store.listSyncs({ limit: 0 })).toEqual([]);
        expect(await store.listSyncs({ tenantId: 'nobody' })).toEqual([]);
        // Full records, not just ids.
        expect((await store.listSyncs({ status: 'AWAIT_AUTH' }))[0]).toEqual(await store.getSync(a2.syncId));
      });

      it('listSyncs filters by provider, age and last write, and pages by keyset (the operator console)', async () => {
        const old = await create({ provider: 'finx' });
        const mid = await create({ provider: 'xs2a' });
        const same = await create({ provider: 'finx', createdAt: mid.createdAt, syncId: `${mid.syncId}-b` });
        const young = await create({ provider: 'finx' });
        await store.commit(change(old.syncId, 0, { at: young.createdAt + 100 }));
        const ids = (rs: SyncRecord[]): string[] => rs.map((r) => r.syncId);
        const everything = ids(await store.listSyncs());
        expect(everything).toEqual([young.syncId, same.syncId, mid.syncId, old.syncId]);
        expect(ids(await store.listSyncs({ provider: 'finx' }))).toEqual([young.syncId, same.syncId, old.syncId]);
        expect(ids(await store.listSyncs({ provider: 'tink' }))).toEqual([]);
        expect(ids(await store.listSyncs({ createdBefore: mid.createdAt }))).toEqual([old.syncId]);
        expect(ids(await store.listSyncs({ createdAfter: mid.createdAt }))).toEqual([young.syncId, same.syncId, mid.syncId]);
        expect(ids(await store.listSyncs({ active: true, updatedBefore: young.createdAt }))).toEqual([same.syncId, mid.syncId]);
        // Keyset pages of two cover everything exactly once, ties on created_at included.
        const first = await store.listSyncs({ limit: 2 });
        const second = await store.listSyncs({ limit: 2, after: first[1]! });
        const third = await store.listSyncs({ limit: 2, after: second[1]! });
        expect([...ids(first), ...ids(second)]).toEqual(everything);
        expect(third).toEqual([]);
        expect(ids(await store.listSyncs({ provider: 'finx', limit: 1, after: { createdAt: same.createdAt, syncId: same.syncId } }))).toEqual([old.syncId]);
      });

      it('countByStatus counts syncs per status (absent statuses omitted)', async () => {
        expect(await store.countByStatus()).toEqual({});
        const a = await create();
        const b = await create();
        await create();
        await store.commit(change(a.syncId, 0, { status: 'RUNNING' }));
        await store.commit(change(b.syncId, 0, { status: 'COMPLETED', active: false }));
        expect(await store.countByStatus()).toEqual({ QUEUED: 1, RUNNING: 1, COMPLETED: 1 });
      });
    });

    describe('JSON round-trip', () => {
      it('stores and returns a snapshot equal to the one committed', async () => {
        const s = await create();
        const snapshot = {
          status: 'active',
          value: { RUNNING: 'Waiting' },
          historyValue: {},
          context: {
            syncId: s.syncId,
            providerRef: null,
            effectSeq: 3,
            ratio: 0.125,
            negative: -42,
            big: 2 ** 52,
            flags: [true, false, null],
            nested: { deep: { deeper: [{ a: 1 }, { b: 'two' }, []] } },
            text: 'Grüße, 東京 "quoted" \\ backslash \n newline 🏦',
            empty: '',
          },
          children: {},
        };
        await store.commit(change(s.syncId, 0, { snapshot }));
        expect((await store.getSync(s.syncId))?.snapshot).toEqual(snapshot);
        expect((await store.findActiveSync(s.tenantId, s.connectionId))?.snapshot).toEqual(snapshot);
        expect((await store.listSyncs())[0]?.snapshot).toEqual(snapshot);
      });

      it('round-trips arbitrary JSON snapshots and outcomes (property)', async () => {
        const s = await create();
        let version = 0;
        await fc.assert(
          fc.asyncProperty(fc.jsonValue(), fc.jsonValue(), async (snapshot, outcome) => {
            const expected = JSON.parse(JSON.stringify(snapshot)) as unknown;
            version = await store.commit(change(s.syncId, version, { snapshot }));
            expect((await store.getSync(s.syncId))?.snapshot).toEqual(expected);

            const key = `${s.syncId}:json:${version}`;
            await store.startEffect(key, s.syncId, 'poll', 1);
            await store.finishEffect(key, 'DONE', outcome, 2);
            expect((await store.getEffect(key))?.outcome).toEqual(JSON.parse(JSON.stringify(outcome)));
          }),
          { numRuns: 50 },
        );
      });
    });

    describe('data isolation', () => {
      it('records returned by the store can be mutated without changing stored state', async () => {
        const s = await create({ connectionId: 'iso' });
        await store.commit(
          change(s.syncId, 0, {
            snapshot: { context: { list: [1, 2, 3] } },
            timers: [{ syncId: s.syncId, timerId: 'poll', eventType: 'xstate.after.poll', dueAt: 50 }],
            transitions: [{ from: null, to: 'QUEUED', event: 'xstate.init', at: 1 }],
            pendingEffects: [{ effectKey: 'iso-effect', kind: 'poll' }],
          }),
        );
        await store.startEffect('iso-effect', s.syncId, 'poll', 5);
        await store.finishEffect('iso-effect', 'DONE', { items: [{ id: 1 }] }, 6);
        const before = await stateOf(s.syncId);

        const scribble = (rec: Record<string, unknown> | null | undefined): void => {
          if (!rec) return;
          for (const k of Object.keys(rec)) {
            const v = rec[k];
            if (v !== null && typeof v === 'object') {
              if (Array.isArray(v)) v.push('mutated');
              else (v as Record<string, unknown>).mutated = true;
            } else rec[k] = typeof v === 'number' ? -1 : 'mutated';
          }
        };
        const sync = await store.getSync(s.syncId);
        ((sync?.snapshot as { context: { list: number[] } }).context.list as number[]).push(4);
        scribble(sync as unknown as Record<string, unknown>);
        scribble((await store.findActiveSync(s.tenantId, s.connectionId)) as unknown as Record<string, unknown>);
        scribble((await store.listSyncs())[0] as unknown as Record<string, unknown>);
        const created = await store.createSync(newSync({ connectionId: 'iso' }));
        expect(created.created).toBe(false);
        scribble(created.sync as unknown as Record<string, unknown>);
        for (const t of await store.listTimers(s.syncId)) scribble(t as unknown as Record<string, unknown>);
        for (const t of await store.dueTimers(FAR_FUTURE, 100)) scribble(t as unknown as Record<string, unknown>);
        for (const t of await store.listTransitions(s.syncId)) scribble(t as unknown as Record<string, unknown>);
        for (const e of await store.listEffects(s.syncId)) scribble(e as unknown as Record<string, unknown>);
        scribble((await store.getEffect('iso-effect')) as unknown as Record<string, unknown>);
        scribble((await store.startEffect('iso-effect', s.syncId, 'poll', 99)) as unknown as Record<string, unknown>);
        expect(await stateOf(s.syncId)).toEqual(before);
      });

      it('inputs can be mutated after the call without changing stored state', async () => {
        const input = newSync();
        const { sync: s } = await store.createSync(input);
        input.tenantId = 'mutated';
        input.createdAt = -1;
        expect(await store.getSync(s.syncId)).toEqual(s);

        const c = change(s.syncId, 0, {
          snapshot: { context: { list: [1] } },
          timers: [{ syncId: s.syncId, timerId: 'poll', eventType: 'tick', dueAt: 10 }],
          transitions: [{ from: null, to: 'QUEUED', event: 'xstate.init', at: 1 }],
          pendingEffects: [{ effectKey: `${s.syncId}:e`, kind: 'poll' }],
        });
        await store.commit(c);
        const before = await stateOf(s.syncId);
        (c.snapshot as { context: { list: number[] } }).context.list.push(2);
        c.timers[0]!.dueAt = 999;
        c.timers.push({ syncId: s.syncId, timerId: 'extra', eventType: 'x', dueAt: 1 });
        c.transitions[0]!.to = 'mutated';
        c.pendingEffects[0]!.kind = 'mutated';

        const outcome = { items: [1] };
        await store.startEffect(`${s.syncId}:e`, s.syncId, 'poll', 20);
        await store.finishEffect(`${s.syncId}:e`, 'DONE', outcome, 21);
        outcome.items.push(2);

        const after = await stateOf(s.syncId);
        expect(after.sync).toEqual(before.sync);
        expect(after.timers).toEqual(before.timers);
        expect(after.transitions).toEqual(before.transitions);
        expect(after.effects[0]).toMatchObject({ kind: 'poll', state: 'DONE', outcome: { items: [1] } });
      });
    });

    describe('fencing property', () => {
      it('random commits with random expectedVersions: only current-version commits land; stale ones change nothing', async () => {
        const op = fc.record({
          useCurrent: fc.boolean(),
          guess: fc.nat({ max: 12 }),
          timers: fc.uniqueArray(
            fc.record({ timerId: fc.constantFrom('poll', 'backoff', 'deadline', 'auth'), dueAt: fc.nat({ max: 10_000 }) }),
            { maxLength: 3, selector: (t) => t.timerId },
          ),
          transitions: fc.nat({ max: 3 }),
          effects: fc.subarray(['trigger', 'poll', 'answer', 'fetch']),
          providerRef: fc.option(fc.constantFrom('ref-a', 'ref-b'), { nil: null }),
          awaitingAuth: fc.boolean(),
        });

        await fc.assert(
          fc.asyncProperty(fc.array(op, { maxLength: 12 }), async (ops) => {
            // A fresh sync per run (the store is shared across runs); stays active so nothing else interferes.
            const s = await create();
            let current = 0;
            let landed = 0;
            let seqs = 0;
            for (const [i, o] of ops.entries()) {
              const expectedVersion = o.useCurrent ? current : o.guess;
              const c = change(s.syncId, expectedVersion, {
                providerRef: o.providerRef,
                status: o.awaitingAuth ? 'AWAIT_AUTH' : 'RUNNING',
                snapshot: { op: i, expectedVersion },
                timers: o.timers.map((t) => ({ syncId: s.syncId, timerId: t.timerId, eventType: `e.${t.timerId}`, dueAt: t.dueAt })),
                transitions: Array.from({ length: o.transitions }, (_, k) => ({
                  from: `S${i}.${k}`,
                  to: `S${i}.${k + 1}`,
                  event: `E${i}`,
                  at: i,
                })),
                pendingEffects: o.effects.map((kind) => ({ effectKey: `${s.syncId}:${kind}:${i % 3}`, kind })),
              });
              const before = await stateOf(s.syncId);
              if (expectedVersion === current) {
                expect(await store.commit(c)).toBe(current + 1);
                current += 1;
                landed += 1;
                seqs += o.transitions;
                const after = await stateOf(s.syncId);
                expect(after.sync).toMatchObject({ version: current, providerRef: o.providerRef, snapshot: { op: i } });
                expect(after.timers.map((t) => t.timerId).sort()).toEqual(o.timers.map((t) => t.timerId).sort());
                expect(after.transitions).toHaveLength(seqs);
                for (const e of c.pendingEffects) expect(await store.getEffect(e.effectKey)).not.toBeNull();
              } else {
                await expectStale(store.commit(c), s.syncId, expectedVersion);
                expect(await stateOf(s.syncId)).toEqual(before);
              }
            }
            const final = await store.getSync(s.syncId);
            expect(final?.version).toBe(landed);
            expect((await store.listTransitions(s.syncId)).map((t) => t.seq)).toEqual(
              Array.from({ length: seqs }, (_, k) => k + 1),
            );
          }),
          { numRuns: 40 },
        );
      });
    });
      describe('connections', () => {
      const base = (overrides: Partial<ConnectionRecord> = {}) => ({
        tenantId: 'tenant-a',
        connectionId: uid('conn'),
        provider: 'finx',
        state: 'IDLE',
        context: { consecutiveFailures: 0, accounts: { a1: { accessId: 'x', supported: true } } },
        updatedAt: tick(),
        ...overrides,
      });

      it('inserts at version 0, updates fenced by version, and rejects stale writes without change', async () => {
        const record = base();
        expect(await store.getConnection(record.tenantId, record.connectionId)).toBeNull();
        expect(await store.saveConnection(record, 0)).toBe(1);
        await expect(store.saveConnection(record, 0)).rejects.toBeInstanceOf(StaleWriteError);
        expect(await store.saveConnection({ ...record, state: 'SYNCING' }, 1)).toBe(2);
        await expect(store.saveConnection({ ...record, state: 'DISABLED' }, 1)).rejects.toBeInstanceOf(StaleWriteError);
        const stored = await store.getConnection(record.tenantId, record.connectionId);
        expect(stored).toMatchObject({ state: 'SYNCING', version: 2, context: record.context });
        stored!.state = 'MUTATED';
        expect((await store.getConnection(record.tenantId, record.connectionId))?.state).toBe('SYNCING');
      });

      it('keeps tenants apart and lists with filters in a stable order', async () => {
        const shared = uid('conn');
        await store.saveConnection(base({ tenantId: 'tenant-a', connectionId: shared }), 0);
        await store.saveConnection(base({ tenantId: 'tenant-b', connectionId: shared, state: 'DISABLED', provider: 'xs2a' }), 0);
        expect((await store.getConnection('tenant-b', shared))?.provider).toBe('xs2a');
        const disabled = await store.listConnections({ state: 'DISABLED' });
        expect(disabled.map((c) => [c.tenantId, c.connectionId])).toContainEqual(['tenant-b', shared]);
        expect(disabled.every((c) => c.state === 'DISABLED')).toBe(true);
        const tenantA = await store.listConnections({ tenantId: 'tenant-a' });
        expect(tenantA.every((c) => c.tenantId === 'tenant-a')).toBe(true);
        const ids = tenantA.map((c) => c.connectionId);
        expect(ids).toEqual([...ids].sort());
        expect(await store.listConnections({ limit: 1 })).toHaveLength(1);
      });
    });

    describe('prune (retention)', () => {
      const T = 5_000_000;
      const CUTOFF = T + 1_000;
      /** A sync of `connectionId` created at `at` with a transition, a journaled effect and (active) a timer; finished unless active. */
      const syncAt = async (connectionId: string, at: number, active = false): Promise<string> => {
        const sync = await create({ connectionId, createdAt: at });
        await store.commit(
          change(sync.syncId, 0, {
            at,
            transitions: [{ from: null, to: 'RUNNING', event: 'start', at }],
            pendingEffects: [{ effectKey: uid('effect'), kind: 'trigger' }],
            timers: active ? [{ syncId: sync.syncId, timerId: 'poll', eventType: 'xstate.after.poll', dueAt: FAR_FUTURE }] : [],
          }),
        );
        if (!active) {
          await store.commit(change(sync.syncId, 1, { status: 'COMPLETED', active: false, at: at + 1, transitions: [{ from: 'RUNNING', to: 'COMPLETED', event: 'done', at: at + 1 }] }));
        }
        return sync.syncId;
      };
      const everything = async (ids: string[]) => Promise.all(ids.map((id) => stateOf(id)));

      it('removes only finished syncs past retention, with their rows; keeps active syncs and the newest sync of each connection', async () => {
        const a = uid('conn');
        const b = uid('conn');
        const c = uid('conn');
        const d = uid('conn');
        const a1 = await syncAt(a, T + 1);
        const a2 = await syncAt(a, T + 10);
        const a3 = await syncAt(a, T + 20, true); // active, newest
        const b1 = await syncAt(b, T + 30);
        const b2 = await syncAt(b, T + 2_000); // finished after the cutoff
        const c1 = await syncAt(c, T + 40); // old, but the only (newest) sync of its connection
        const d1 = await syncAt(d, T + 50, true); // active and old
        const kept = [a3, b2, c1, d1];
        const before = await everything(kept);

        const counts = await store.prune({ cutoffs: { finishedSyncs: CUTOFF }, limit: 100 });
        expect(counts).toMatchObject({ syncs: 3, transitions: 6, effects: 3, timers: 0 });
        for (const gone of [a1, a2, b1]) {
          expect(await stateOf(gone)).toEqual({ sync: null, timers: [], transitions: [], effects: [], due: [] });
        }
        expect(await everything(kept)).toEqual(before);
        expect((await store.listSyncs()).map((s) => s.syncId).sort()).toEqual([...kept].sort());
        // idempotent: nothing more to do
        expect(await store.prune({ cutoffs: { finishedSyncs: CUTOFF }, limit: 100 })).toMatchObject({ syncs: 0, transitions: 0, effects: 0 });
      });

      it('works in bounded batches, oldest first', async () => {
        const conn = uid('conn');
        const old: string[] = [];
        for (let i = 0; i < 5; i++) old.push(await syncAt(conn, T + i * 10));
        const newest = await syncAt(conn, T + 100);
        const batches: number[] = [];
        for (;;) {
          const { syncs } = await store.prune({ cutoffs: { finishedSyncs: CUTOFF }, limit: 2 });
          batches.push(syncs);
          const left = (await store.listSyncs({ connectionId: conn })).map((s) => s.syncId);
          // the oldest go first
          expect(left).toEqual([newest, ...old.slice(batches.reduce((n, x) => n + x, 0)).reverse()]);
          if (syncs < 2) break;
        }
        expect(batches).toEqual([2, 2, 1]);
      });

      it('prunes old transitions and effects of finished syncs it keeps, never those of an active sync', async () => {
        const conn = uid('conn');
        const finished = await syncAt(conn, T + 1); // kept: newest of its connection
        const active = await syncAt(uid('conn'), T + 2, true);
        const activeBefore = await stateOf(active);
        const first = await store.prune({ cutoffs: { transitions: CUTOFF, effects: CUTOFF }, limit: 1 });
        expect(first).toMatchObject({ syncs: 0, transitions: 1, effects: 1 });
        const second = await store.prune({ cutoffs: { transitions: CUTOFF, effects: CUTOFF }, limit: 10 });
        expect(second).toMatchObject({ syncs: 0, transitions: 1, effects: 0 });
        const after = await stateOf(finished);
        expect(after.sync?.syncId).toBe(finished);
        expect(after.transitions).toEqual([]);
        expect(after.effects).toEqual([]);
        expect(await stateOf(active)).toEqual(activeBefore);
        // a cutoff before everything removes nothing
        const younger = await syncAt(conn, T + 3_000);
        expect(await store.prune({ cutoffs: { transitions: T, effects: T, finishedSyncs: T }, limit: 10 })).toMatchObject({ syncs: 0, transitions: 0, effects: 0 });
        expect((await stateOf(younger)).transitions).toHaveLength(2);
      });

      it('a dry run counts what a real run removes and changes nothing', async () => {
        const conn = uid('conn');
        const ids = [await syncAt(conn, T + 1), await syncAt(conn, T + 2), await syncAt(conn, T + 3)];
        const request = { cutoffs: { finishedSyncs: CUTOFF, transitions: CUTOFF, effects: CUTOFF }, limit: 100 };
        const before = await everything(ids);
        const dry = await store.prune({ ...request, dryRun: true });
        expect(await everything(ids)).toEqual(before);
        expect(dry.syncs).toBe(2);
        expect(await store.prune(request)).toEqual(dry);
      });
    });

    describe('event log', () => {
      const event = (syncId: string | null, name: string, n: number, payload: unknown = { n }): NewEventRecord => ({
        eventId: `${syncId ?? 'conn'}:${n}:${name}`,
        name,
        tenantId: 'tenant-a',
        connectionId: 'conn-e',
        syncId,
        payload,
        at: tick(),
      });
      /** Reads the whole log from `after` in pages of `limit`, as a reader that advances its cursor would. */
      const readAll = async (after: string | null, limit: number): Promise<EventRecord[]> => {
        const out: EventRecord[] = [];
        let cursor = after;
        for (let page = 0; page < 1000; page++) {
          const { events, more } = await store.readEvents(cursor, limit);
          expect(events.length).toBeLessThanOrEqual(limit);
          out.push(...events);
          if (events.length) cursor = events.at(-1)!.cursor;
          if (!more) return out;
        }
        throw new Error('the log never ended');
      };
      /** PostgreSQL releases an event once no older transaction in the cluster can still commit one before it. */
      const visible = (count: number) => expect.poll(async () => (await readAll(null, 1_000)).length, { timeout: 10_000 }).toBe(count);

      it('appends a commit’s events atomically with it, in order, and a stale commit writes none', async () => {
        const sync = await create();
        expect(await store.latestEventCursor()).toBeNull();
        expect(await store.readEvents(null, 10)).toEqual({ events: [], more: false });
        const first = [event(sync.syncId, 'sync.updated', 1, { status: 'RUNNING', nested: { undef: undefined, list: [1] } }), event(sync.syncId, 'sync.awaitingUser', 1)];
        await store.commit(change(sync.syncId, 0, { events: first }));
        await expectStale(store.commit(change(sync.syncId, 0, { events: [event(sync.syncId, 'sync.failed', 9)] })), sync.syncId, 0);
        await store.commit(change(sync.syncId, 1, { events: [event(sync.syncId, 'sync.completed', 2)] }));
        await visible(3);
        const all = await readAll(null, 10);
        expect(all.map((e) => e.name)).toEqual(['sync.updated', 'sync.awaitingUser', 'sync.completed']);
        expect(all[0]).toMatchObject({ eventId: first[0]!.eventId, tenantId: 'tenant-a', connectionId: 'conn-e', syncId: sync.syncId, at: first[0]!.at });
        // Payloads are stored as JSON.
        expect(all[0]!.payload).toEqual({ status: 'RUNNING', nested: { list: [1] } });
        expect(new Set(all.map((e) => e.cursor)).size).toBe(3);
        expect(await store.latestEventCursor()).toBe(all.at(-1)!.cursor);
        expect(await store.readEvents(all.at(-1)!.cursor, 10)).toEqual({ events: [], more: false });
      });

      it('keeps the first of two events with the same id (a re-run writer creates no duplicate)', async () => {
        const sync = await create();
        const e = event(sync.syncId, 'sync.updated', 1);
        await store.commit(change(sync.syncId, 0, { events: [e] }));
        await store.commit(change(sync.syncId, 1, { events: [{ ...e, payload: { other: true } }, event(sync.syncId, 'sync.updated', 2)] }));
        await visible(2);
        const all = await readAll(null, 10);
        expect(all.map((x) => x.eventId)).toEqual([e.eventId, `${sync.syncId}:2:sync.updated`]);
        expect(all[0]!.payload).toEqual({ n: 1 });
      });

      it('appends connection events with the connection write; a stale write appends none', async () => {
        const record = { tenantId: 'tenant-a', connectionId: 'conn-e', provider: 'finx', state: 'IDLE', context: {}, updatedAt: tick() };
        await store.saveConnection(record, 0, [event(null, 'connection.updated', 1)]);
        await expect(store.saveConnection(record, 0, [event(null, 'connection.needsUser', 2)])).rejects.toBeInstanceOf(StaleWriteError);
        await store.saveConnection({ ...record, state: 'SYNCING' }, 1);
        await store.saveConnection({ ...record, state: 'IDLE' }, 2, [event(null, 'connection.updated', 3)]);
        await visible(2);
        expect((await readAll(null, 10)).map((e) => e.eventId)).toEqual(['conn:1:connection.updated', 'conn:3:connection.updated']);
      });

      it('pages from any cursor: every event exactly once, in order', async () => {
        const syncs = await Promise.all([create(), create(), create()]);
        const written: string[] = [];
        for (let round = 0; round < 5; round++) {
          for (const [i, sync] of syncs.entries()) {
            const events = Array.from({ length: (round + i) % 3 }, (_, k) => event(sync.syncId, `e${k}`, round));
            written.push(...events.map((e) => e.eventId));
            await store.commit(change(sync.syncId, round, { events }));
          }
        }
        await visible(written.length);
        for (const limit of [1, 2, 7, 100]) expect((await readAll(null, limit)).map((e) => e.eventId)).toEqual(written);
        const all = await readAll(null, 100);
        const seqs = all.map((e) => e.seq);
        expect(new Set(seqs).size).toBe(seqs.length);
        // Resuming from any saved cursor yields exactly the rest.
        for (const k of [0, 3, all.length - 1]) expect((await readAll(all[k]!.cursor, 4)).map((e) => e.eventId)).toEqual(written.slice(k + 1));
      });

      it('rejects a cursor it did not issue, and saves named consumer cursors', async () => {
        for (const bad of ['', 'abc', '-1', '1.5', '9'.repeat(60), 'x-1']) await expect(store.readEvents(bad, 10)).rejects.toBeInstanceOf(InvalidCursorError);
        const sync = await create();
        await store.commit(change(sync.syncId, 0, { events: [event(sync.syncId, 'a', 1)] }));
        // PostgreSQL releases an event once no older transaction in the cluster can still commit one before it.
        await expect.poll(async () => (await store.readEvents(null, 1)).events.length, { timeout: 10_000 }).toBe(1);
        const [first] = (await store.readEvents(null, 1)).events;
        expect(await store.getEventCursor('webhooks')).toBeNull();
        await store.saveEventCursor('webhooks', first!.cursor, tick());
        expect(await store.getEventCursor('webhooks')).toBe(first!.cursor);
        await expect(store.saveEventCursor('webhooks', 'garbage', tick())).rejects.toBeInstanceOf(InvalidCursorError);
        expect(await store.getEventCursor('webhooks')).toBe(first!.cursor);
      });

      it('prunes events older than the cutoff in bounded batches, oldest first; readers go on from their cursors', async () => {
        const sync = await create();
        const written = [1, 2, 3, 4, 5].map((n) => event(sync.syncId, 'sync.updated', n));
        for (const [version, e] of written.entries()) await store.commit(change(sync.syncId, version, { events: [e] }));
        await expect.poll(async () => (await readAll(null, 10)).length, { timeout: 10_000 }).toBe(5);
        const [firstRead] = (await store.readEvents(null, 1)).events;
        const cutoff = written[3]!.at; // the first three are older
        expect(await store.prune({ cutoffs: { events: cutoff }, limit: 2, dryRun: true })).toMatchObject({ events: 2 });
        expect((await readAll(null, 10)).map((e) => e.eventId)).toEqual(written.map((e) => e.eventId));
        expect(await store.prune({ cutoffs: { events: cutoff }, limit: 2 })).toMatchObject({ events: 2 });
        expect((await readAll(null, 10)).map((e) => e.eventId)).toEqual(written.slice(2).map((e) => e.eventId));
        expect(await store.prune({ cutoffs: { events: cutoff }, limit: 2 })).toMatchObject({ events: 1 });
        expect(await store.prune({ cutoffs: { events: cutoff }, limit: 2 })).toMatchObject({ events: 0 });
        // A reader whose cursor points at a pruned event gets exactly what is left after it.
        expect((await readAll(firstRead!.cursor, 10)).map((e) => e.eventId)).toEqual(written.slice(3).map((e) => e.eventId));
        // New events still get new cursors after the pruned ones.
        await store.commit(change(sync.syncId, 5, { events: [event(sync.syncId, 'sync.completed', 6)] }));
        await expect.poll(async () => (await readAll(firstRead!.cursor, 10)).map((e) => e.name), { timeout: 10_000 }).toEqual(['sync.updated', 'sync.updated', 'sync.completed']);
      });

      it('a group commit writes each change\u2019s events with it; a stale change writes none; connection saves in a group carry theirs', async () => {
        const [a, b] = [await create(), await create()];
        const results = await store.commitMany([
          change(a.syncId, 0, { events: [event(a.syncId, 'sync.updated', 1)] }),
          change(b.syncId, 7, { events: [event(b.syncId, 'sync.updated', 1)] }), // stale
          change(a.syncId, 1, { events: [event(a.syncId, 'sync.completed', 2)] }),
        ]);
        expect(results.map((r) => r.ok)).toEqual([true, false, true]);
        const record = { tenantId: 'tenant-a', connectionId: 'conn-g', provider: 'finx', state: 'IDLE', context: {}, updatedAt: tick() };
        const written = await store.writeMany([
          { op: 'saveConnection', record, expectedVersion: 0, events: [event(null, 'connection.updated', 1)] },
          { op: 'commit', change: change(b.syncId, 0, { events: [event(b.syncId, 'sync.updated', 2)] }) },
        ]);
        expect(written.map((r) => r.ok)).toEqual([true, true]);
        await visible(4);
        const names = (await readAll(null, 10)).map((e) => `${e.syncId ?? 'conn'}:${e.name}`);
        expect(names.filter((n) => n.startsWith(a.syncId))).toEqual([`${a.syncId}:sync.updated`, `${a.syncId}:sync.completed`]);
        expect(names.filter((n) => n.startsWith(b.syncId))).toEqual([`${b.syncId}:sync.updated`]);
        expect(names).toContain('conn:connection.updated');
      });

      it('wakes a watcher when events are committed', async () => {
        let wakes = 0;
        const stop = await store.watchEvents(() => wakes++);
        try {
          const sync = await create();
          const before = wakes;
          await store.commit(change(sync.syncId, 0, { events: [event(sync.syncId, 'a', 1)] }));
          await expect.poll(() => wakes, { timeout: 10_000 }).toBeGreaterThan(before);
        } finally {
          await stop();
        }
      });
    });
  });
}
