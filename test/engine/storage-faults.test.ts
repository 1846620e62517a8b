/**
 * Issue 12, point 6: a store that stops taking writes (SQLITE_FULL here) is never silent. A failed commit
 * raises engine.error (STORAGE_ERROR, worded for the operator) and the sync resumes from its last committed
 * state once writes work again; a caller whose step was not stored gets STORAGE_UNAVAILABLE; a caller whose
 * sync was committed gets it, even if a later step failed.
 */
import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { createEngine } from '../../src/engine/engine.js';
import type { EngineErrorEvent } from '../../src/engine/events.js';
import { MemoryStore } from '../../src/stores/memory.js';
import type { CommitChange, ConnectionRecord } from '../../src/stores/types.js';
import { completed, embedded, FakeAdapter, running, settle, type FakeAdapterScript } from '../support/fake-adapter.js';

const policy = { pollBaseMs: 1_000, pollMaxMs: 1_000, authPollMs: 60_000, retryBaseMs: 1_000, retryMaxMs: 8_000 };

function diskFull(): Error {
  return Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
}

class FaultyStore extends MemoryStore {
  failCommits = false;
  failConnections = false;
  override async commit(change: CommitChange): Promise<number> {
    if (this.failCommits) throw diskFull();
    return super.commit(change);
  }
  override async saveConnection(record: Omit<ConnectionRecord, 'version'>, expectedVersion: number): Promise<number> {
    if (this.failConnections) throw diskFull();
    return super.saveConnection(record, expectedVersion);
  }
}

function setup(script: FakeAdapterScript) {
  const clock = new SimulatedClock();
  const store = new FaultyStore();
  const adapter = new FakeAdapter('fake', script);
  const engine = createEngine({ store, providers: { fake: adapter }, clock, policy });
  const errors: EngineErrorEvent[] = [];
  engine.events.on('engine.error', (e) => errors.push(e));
  const advance = async (ms: number) => {
    clock.increment(ms);
    await settle();
  };
  return { engine, store, adapter, errors, advance };
}

describe('storage faults are visible', () => {
  it('a failed commit raises engine.error, and the sync resumes from its last commit once the store takes writes', async () => {
    const { engine, store, errors, advance } = setup({ poll: [running, completed] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    store.failCommits = true;
    await advance(1_000); // the poll timer fires; its transition cannot be stored
    expect(errors).toEqual([expect.objectContaining({ syncId: sync.syncId, code: 'STORAGE_ERROR' })]);
    expect(errors[0]!.message).toMatch(/disk holding the SQLite database is full/);
    expect((await engine.get(sync.syncId)).state).toBe('RUNNING.Waiting');
    store.failCommits = false;
    for (let i = 0; i < 5 && (await engine.get(sync.syncId)).active; i++) await advance(1_000);
    expect((await engine.get(sync.syncId)).status).toBe('COMPLETED');
  });

  it('an answer that cannot be stored throws STORAGE_UNAVAILABLE to the caller and is not sent', async () => {
    const { engine, store, adapter, advance } = setup({ poll: [embedded('ch-1', 10_000_000)] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    await advance(1_000);
    expect((await engine.get(sync.syncId)).state).toBe('AWAIT_AUTH.AwaitingUser');
    store.failCommits = true;
    await expect(engine.submitChallengeResponse(sync.syncId, { challengeId: 'ch-1', response: '424242' })).rejects.toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
    await settle();
    expect(adapter.answers).toEqual([]);
    expect((await engine.get(sync.syncId)).state).toBe('AWAIT_AUTH.AwaitingUser');
  });

  it('requestSync returns the committed sync even when the connection write after it fails', async () => {
    const { engine, store, errors } = setup({ poll: [running] });
    store.failConnections = true;
    const view = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    expect(view.active).toBe(true);
    expect((await store.getSync(view.syncId))?.syncId).toBe(view.syncId);
    expect(errors.map((e) => e.code)).toEqual(['STORAGE_ERROR']);
  });
});
