/**
 * Dispatched hosting: a worker can die after a job's commit and before it hands the sync's new timers to the
 * dispatcher. graphile-worker then runs the job again (the reaper unlocks it). That re-run must hand every
 * pending timer back, whatever kind of job it is: otherwise nothing wakes the sync until the stale sweep.
 * The dispatcher here is an in-memory double with one job key per timer, as graphile-worker's.
 */
import { describe, expect, it } from 'vitest';
import type { Activation, Dispatch, SyncKey } from '../../src/engine/dispatch.js';
import { createEngine } from '../../src/engine/engine.js';
import { MemoryStore } from '../../src/stores/memory.js';
import type { TimerRecord } from '../../src/stores/types.js';
import { FakeAdapter, running } from '../support/fake-adapter.js';

class RecordingDispatch implements Dispatch {
  readonly queued: { sync: SyncKey; activation: Activation }[] = [];
  /** Timer jobs by job key (`<syncId>:<timerId>`), as the dispatcher would run them. */
  readonly timerJobs = new Map<string, TimerRecord>();
  /** The process dies before writing the timer jobs of the first hand-off that matches. */
  dieAt: ((next: readonly TimerRecord[]) => boolean) | null = null;

  async enqueue(sync: SyncKey, activation: Activation): Promise<void> {
    this.queued.push({ sync, activation });
  }

  async timersChanged(sync: SyncKey, previous: readonly TimerRecord[], next: readonly TimerRecord[]): Promise<void> {
    if (this.dieAt?.(next)) {
      this.dieAt = null;
      throw new Error('worker died before its timer jobs were written');
    }
    const still = new Set(next.map((t) => t.timerId));
    for (const t of previous) if (!still.has(t.timerId)) this.timerJobs.delete(`${sync.syncId}:${t.timerId}`);
    for (const t of next) this.timerJobs.set(`${sync.syncId}:${t.timerId}`, t);
  }

  async withSyncLock<T>(_syncId: string, work: () => Promise<T>): Promise<T> {
    return work();
  }

  jobsOf(syncId: string): TimerRecord[] {
    return [...this.timerJobs.values()].filter((t) => t.syncId === syncId).sort((a, b) => a.dueAt - b.dueAt);
  }
}

/** The start job's last hand-off: the sync waits for its first poll. */
const waitingToPoll = (next: readonly TimerRecord[]) => next.some((t) => t.eventType.includes('nextDelay'));

function setup() {
  const store = new MemoryStore();
  const dispatch = new RecordingDispatch();
  // The provider keeps the sync running; polls are a minute apart, so only a timer job moves it on.
  const adapter = new FakeAdapter('fake', { poll: [running] });
  const engine = createEngine({ store, providers: { fake: adapter }, dispatch, policy: { pollBaseMs: 60_000, pollMaxMs: 60_000, jitterRatio: 0 } });
  return { store, dispatch, engine, adapter };
}

describe('dispatched hosting: a job re-run after a death between commit and timer hand-off', () => {
  it('the re-run start job hands the committed timers to the dispatcher, and triggers nothing again', async () => {
    const { store, dispatch, engine, adapter } = setup();
    const sync = await engine.requestSync({ connectionId: 'c1', provider: 'fake' });
    const start = dispatch.queued.find((q) => q.activation.kind === 'start')!.activation;
    dispatch.dieAt = waitingToPoll;
    await expect(engine.activate(sync.syncId, start)).rejects.toThrow(/died/);
    const committed = await store.listTimers(sync.syncId);
    expect(committed.some((t) => waitingToPoll([t]))).toBe(true);
    // Nothing would ever run the poll: its timer is committed, but no job was written for it.
    expect(dispatch.jobsOf(sync.syncId).some((t) => waitingToPoll([t]))).toBe(false);

    // graphile-worker runs the same job again (attempts 2) once the dead worker's jobs are unlocked.
    await engine.activate(sync.syncId, start, { rerun: true });
    // Every committed timer has its job (a job for a timer since gone may remain: it finds nothing and ends).
    expect(dispatch.jobsOf(sync.syncId)).toEqual(expect.arrayContaining(committed));
    expect(adapter.calls.trigger).toBe(1);
    expect((await engine.get(sync.syncId)).state).toBe('RUNNING.Waiting');
  });

  it('a first run of a job hands nothing back it did not change', async () => {
    const { dispatch, engine } = setup();
    const sync = await engine.requestSync({ connectionId: 'c1', provider: 'fake' });
    const start = dispatch.queued.find((q) => q.activation.kind === 'start')!.activation;
    dispatch.dieAt = waitingToPoll;
    await expect(engine.activate(sync.syncId, start)).rejects.toThrow(/died/);
    const before = dispatch.jobsOf(sync.syncId);
    await engine.activate(sync.syncId, start);
    // Without the re-run flag the same job changes nothing: this is the gap the flag closes.
    expect(dispatch.jobsOf(sync.syncId)).toEqual(before);
  });
});
