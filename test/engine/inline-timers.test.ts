/**
 * Dispatched hosting with inline timers: a job that hosts a sync fires the sync's timers due within the
 * horizon (inlineTimerMaxMs) itself, each committed with its snapshot, and hands the dispatcher only what is
 * pending when it ends. The dispatcher here is an in-memory double that runs jobs as graphile-worker would
 * (one job key per timer, a timer job runs at its due time) and counts what it is asked to do.
 */
import { describe, expect, it } from 'vitest';
import type { Activation, Dispatch, SyncKey } from '../../src/engine/dispatch.js';
import { createEngine, type EngineOptions, type SyncEngine } from '../../src/engine/engine.js';
import type { Clock } from '../../src/engine/clock.js';
import { BanksyncError } from '../../src/engine/errors.js';
import { INLINE_TIMER_MAX_COUNT } from '../../src/engine/hosting.js';
import { MemoryStore } from '../../src/stores/memory.js';
import type { Observation } from '../../machines/canonical.js';
import type { TimerRecord } from '../../src/stores/types.js';
import { completed, FakeAdapter, running } from '../support/fake-adapter.js';

interface Job {
  syncId: string;
  activation: Activation;
  runAt: number;
  key: string | null;
}

class JobDispatch implements Dispatch {
  readonly jobs: Job[] = [];
  jobsRun = 0;
  timersChangedCalls = 0;
  timerJobsWritten = 0;
  timerJobsRemoved = 0;
  readonly handoffs: { previous: readonly TimerRecord[]; next: readonly TimerRecord[] }[] = [];

  async enqueue(sync: SyncKey, activation: Activation): Promise<void> {
    this.jobs.push({ syncId: sync.syncId, activation, runAt: Date.now(), key: null });
  }

  async timersChanged(sync: SyncKey, previous: readonly TimerRecord[], next: readonly TimerRecord[]): Promise<void> {
    this.timersChangedCalls++;
    this.handoffs.push({ previous, next });
    const unchanged = new Set(previous.map((t) => `${t.timerId}@${t.dueAt}`));
    const still = new Set(next.map((t) => t.timerId));
    for (const t of next) {
      if (unchanged.has(`${t.timerId}@${t.dueAt}`)) continue;
      const key = `timer:${sync.syncId}:${t.timerId}`;
      this.drop(key);
      this.jobs.push({ syncId: sync.syncId, activation: { kind: 'timer', timerId: t.timerId }, runAt: t.dueAt, key });
      this.timerJobsWritten++;
    }
    for (const t of previous) {
      if (still.has(t.timerId)) continue;
      if (this.drop(`timer:${sync.syncId}:${t.timerId}`)) this.timerJobsRemoved++;
    }
  }

  async withSyncLock<T>(_syncId: string, work: () => Promise<T>): Promise<T> {
    return work();
  }

  /** Other work on the sync's queue (set by a test): a job yields to it instead of firing timers inline. */
  waiting: boolean | Error = false;
  readonly asked: string[] = [];
  async othersWaiting(sync: SyncKey): Promise<boolean> {
    this.asked.push(sync.syncId);
    if (this.waiting instanceof Error) throw this.waiting;
    return this.waiting;
  }

  private drop(key: string): boolean {
    const index = this.jobs.findIndex((j) => j.key === key);
    if (index >= 0) this.jobs.splice(index, 1);
    return index >= 0;
  }

  timerJobsOf(syncId: string): { timerId: string; dueAt: number }[] {
    return this.jobs
      .filter((j) => j.syncId === syncId && j.activation.kind === 'timer')
      .map((j) => ({ timerId: (j.activation as { timerId: string }).timerId, dueAt: j.runAt }))
      .sort((a, b) => a.dueAt - b.dueAt);
  }

  /** Runs jobs in run-time order (waiting for a future one, as a worker's poll would) until the sync is no longer active. */
  async drain(engine: SyncEngine, store: MemoryStore, syncId: string, maxJobs = 50): Promise<void> {
    for (let n = 0; n < maxJobs; n++) {
      if (!(await store.getSync(syncId))?.active) return;
      this.jobs.sort((a, b) => a.runAt - b.runAt);
      const job = this.jobs.shift();
      if (!job) throw new Error('the sync is active but no job would ever run it');
      const wait = job.runAt - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      this.jobsRun++;
      await engine.activate(job.syncId, job.activation);
    }
    throw new Error(`the sync did not finish within ${maxJobs} jobs`);
  }
}

/** A clock whose timers never fire by themselves: the test sees each wait begin and decides what happens. */
class HeldClock implements Clock {
  readonly waits: { fn: () => void; ms: number; cleared: boolean }[] = [];
  now(): number {
    return Date.now();
  }
  setTimeout(fn: (...args: unknown[]) => void, ms: number): unknown {
    const wait = { fn: () => fn(), ms, cleared: false };
    this.waits.push(wait);
    return wait;
  }
  clearTimeout(handle: unknown): void {
    (handle as { cleared: boolean }).cleared = true;
  }
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 2_000; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** Polls a few ms apart: the sync is waiting on short timers, as in the scale-out bench. */
const SHORT_POLLS = { pollBaseMs: 10, pollMaxMs: 20, jitterRatio: 0 };

function setup(options: Partial<EngineOptions> = {}, poll = [running, running, completed]) {
  const store = new MemoryStore();
  const dispatch = new JobDispatch();
  const adapter = new FakeAdapter('fake', { poll });
  const engine = createEngine({ store, providers: { fake: adapter }, dispatch, policy: SHORT_POLLS, ...options });
  return { store, dispatch, engine, adapter };
}

const pendingTimers = async (store: MemoryStore, syncId: string) => (await store.listTimers(syncId)).map((t) => ({ timerId: t.timerId, dueAt: t.dueAt }));

describe('dispatched hosting: inline timers', () => {
  it('a sync polling a few ms apart completes in its start job, with no timer job written', async () => {
    const { store, dispatch, engine, adapter } = setup();
    const sync = await engine.requestSync({ connectionId: 'c1', provider: 'fake' });
    await dispatch.drain(engine, store, sync.syncId);
    expect((await engine.get(sync.syncId)).status).toBe('COMPLETED');
    expect(adapter.calls).toMatchObject({ trigger: 1, poll: 3 });
    expect(dispatch.jobsRun).toBe(1);
    expect(dispatch.timerJobsWritten).toBe(0);
    expect(dispatch.jobs).toEqual([]);
    // Every poll's wait was committed with its snapshot (durability unchanged): the history has each Waiting.
    const waits = (await engine.history(sync.syncId)).filter((t) => t.to === 'RUNNING.Waiting');
    expect(waits.length).toBe(3);
  });

  it('inlineTimerMaxMs: 0 keeps one job per timer and a hand-off per commit', async () => {
    const { store, dispatch, engine, adapter } = setup({ inlineTimerMaxMs: 0 });
    const sync = await engine.requestSync({ connectionId: 'c1', provider: 'fake' });
    await dispatch.drain(engine, store, sync.syncId);
    expect((await engine.get(sync.syncId)).status).toBe('COMPLETED');
    expect(adapter.calls).toMatchObject({ trigger: 1, poll: 3 });
    // start + one timer job per poll
    expect(dispatch.jobsRun).toBe(4);
    expect(dispatch.timerJobsWritten).toBeGreaterThanOrEqual(3);
    expect(dispatch.jobs).toEqual([]);
  });

  it('a timer beyond the horizon still becomes a job at its due time', async () => {
    const { store, dispatch, engine, adapter } = setup({ policy: { pollBaseMs: 60_000, pollMaxMs: 60_000, jitterRatio: 0 } });
    const sync = await engine.requestSync({ connectionId: 'c1', provider: 'fake' });
    const start = dispatch.jobs.shift()!;
    await engine.activate(sync.syncId, start.activation);
    expect(adapter.calls.poll).toBe(0);
    expect((await engine.get(sync.syncId)).state).toBe('RUNNING.Waiting');
    const committed = await pendingTimers(store, sync.syncId);
    expect(committed.some((t) => t.timerId.includes('nextDelay'))).toBe(true);
    expect(dispatch.timerJobsOf(sync.syncId)).toEqual(committed);
  });

  it('the inline budget ends the job; what is pending then goes to the dispatcher and the sync goes on in timer jobs', async () => {
    const { store, dispatch, engine, adapter } = setup({ inlineTimerBudgetMs: 50 }, [running]);
    const sync = await engine.requestSync({ connectionId: 'c1', provider: 'fake' });
    const start = dispatch.jobs.shift()!;
    await engine.activate(sync.syncId, start.activation);
    // The provider never completes: only the budget (not the per-job count) ended the job.
    expect(adapter.calls.poll).toBeLessThan(INLINE_TIMER_MAX_COUNT);
    expect((await store.getSync(sync.syncId))?.active).toBe(true);
    const committed = await pendingTimers(store, sync.syncId);
    expect(committed.length).toBeGreaterThan(0);
    expect(dispatch.timerJobsOf(sync.syncId)).toEqual(committed);
    // The next job (the timer's) picks the sync up.
    const polls = adapter.calls.poll;
    const next = dispatch.jobs.sort((a, b) => a.runAt - b.runAt).shift()!;
    await until(() => Date.now() >= next.runAt, 'the timer job is due');
    await engine.activate(sync.syncId, next.activation);
    expect(adapter.calls.poll).toBeGreaterThan(polls);
    expect(dispatch.timerJobsOf(sync.syncId)).toEqual(await pendingTimers(store, sync.syncId));
  });

  /** A worker's start job that committed the trigger and now waits for the first poll's timer inline: the process dies here. */
  async function diedDuringInlineWait(polls: Observation[]) {
    const store = new MemoryStore();
    const dispatch = new JobDispatch();
    const adapter = new FakeAdapter('fake', { poll: polls });
    const held = new HeldClock();
    const dying = createEngine({ store, providers: { fake: adapter }, dispatch, policy: SHORT_POLLS, clock: held });
    const sync = await dying.requestSync({ connectionId: 'c1', provider: 'fake' });
    const start = dispatch.jobs.shift()!;
    void dying.activate(sync.syncId, start.activation);
    await until(() => held.waits.length > 0, 'the job waits for an inline timer');
    return { store, dispatch, adapter, sync, start };
  }

  it('a worker killed during an inline wait: the re-run job hands the timers back and finishes the sync', async () => {
    const { store, dispatch, adapter, sync, start } = await diedDuringInlineWait([running, completed]);
    const committed = await pendingTimers(store, sync.syncId);
    expect(committed.some((t) => t.timerId.includes('nextDelay'))).toBe(true);
    expect(adapter.calls.trigger).toBe(1);
    // The timer is durable, but no job was written for it: only the job itself (still locked by the dead
    // worker) stands for it.
    expect(dispatch.timerJobsOf(sync.syncId)).toEqual([]);
    expect(dispatch.jobs).toEqual([]);

    // graphile-worker runs the same job again on another worker (attempts 2) once the reaper unlocks it.
    const survivor = createEngine({ store, providers: { fake: adapter }, dispatch, policy: SHORT_POLLS });
    await survivor.activate(sync.syncId, start.activation, { rerun: true });
    expect((await survivor.get(sync.syncId)).status).toBe('COMPLETED');
    expect(adapter.calls).toMatchObject({ trigger: 1, poll: 2 });
    expect(dispatch.jobs).toEqual([]);
  });

  it('a re-run whose timers are beyond the horizon hands every committed timer back', async () => {
    const { store, dispatch, adapter, sync, start } = await diedDuringInlineWait([running]);
    const survivor = createEngine({ store, providers: { fake: adapter }, dispatch, policy: SHORT_POLLS, inlineTimerMaxMs: 0 });
    await survivor.activate(sync.syncId, start.activation, { rerun: true });
    const committed = await pendingTimers(store, sync.syncId);
    expect(committed.length).toBeGreaterThan(0);
    expect(dispatch.timerJobsOf(sync.syncId)).toEqual(committed);
  });

  it('an aborted inline wait (graceful stop) ends the job at once and hands the pending timers to the dispatcher', async () => {
    const store = new MemoryStore();
    const dispatch = new JobDispatch();
    const adapter = new FakeAdapter('fake', { poll: [running, completed] });
    const held = new HeldClock();
    const engine = createEngine({ store, providers: { fake: adapter }, dispatch, policy: SHORT_POLLS, clock: held });
    const sync = await engine.requestSync({ connectionId: 'c1', provider: 'fake' });
    const start = dispatch.jobs.shift()!;
    const stop = new AbortController();
    const job = engine.activate(sync.syncId, start.activation, { signal: stop.signal });
    await until(() => held.waits.length > 0, 'the job waits for an inline timer');
    stop.abort();
    // The held clock never fires: only the abort can end this job.
    await job;
    expect(held.waits[0]!.cleared).toBe(true);
    expect(adapter.calls.poll).toBe(0);
    const committed = await pendingTimers(store, sync.syncId);
    expect(committed.some((t) => t.timerId.includes('nextDelay'))).toBe(true);
    expect(dispatch.timerJobsOf(sync.syncId)).toEqual(committed);
  });

  it('a timer job fires its timer and the following ones inline, without removing its own job key mid-run', async () => {
    const { store, dispatch, engine, adapter } = setup({ inlineTimerMaxMs: 0 });
    const sync = await engine.requestSync({ connectionId: 'c1', provider: 'fake' });
    await engine.activate(sync.syncId, dispatch.jobs.shift()!.activation);
    const timerJob = dispatch.jobs.find((j) => j.activation.kind === 'timer' && j.activation.timerId.includes('nextDelay'))!;
    // Another worker, inline timers on, takes the timer job when it is due.
    const inline = createEngine({ store, providers: { fake: adapter }, dispatch, policy: SHORT_POLLS });
    dispatch.jobs.splice(dispatch.jobs.indexOf(timerJob), 1);
    const handoffsBefore = dispatch.handoffs.length;
    await until(() => Date.now() >= timerJob.runAt, 'the timer job is due');
    await inline.activate(sync.syncId, timerJob.activation);
    expect((await inline.get(sync.syncId)).status).toBe('COMPLETED');
    expect(adapter.calls.poll).toBe(3);
    // One hand-off, at the end. Its own timer's key is the running job's: never listed for removal (graphile-
    // worker would mark the locked job as spent, and a worker death would then lose it).
    const handoffs = dispatch.handoffs.slice(handoffsBefore);
    expect(handoffs.length).toBeLessThanOrEqual(1);
    for (const { previous } of handoffs) expect(previous.map((t) => t.timerId)).not.toContain(timerJob.activation.kind === 'timer' ? timerJob.activation.timerId : '');
    expect(dispatch.jobs).toEqual([]);
  });

  for (const waiting of [true, new Error('connection lost')]) {
    it(`other work waiting on the queue${waiting instanceof Error ? ' (or not knowing)' : ''} ends the inline phase: the timer becomes a job`, async () => {
      const { store, dispatch, engine, adapter } = setup({ inlineTimerMaxMs: 800 });
      dispatch.waiting = waiting;
      const sync = await engine.requestSync({ connectionId: 'c1', provider: 'fake' });
      await engine.activate(sync.syncId, dispatch.jobs.shift()!.activation);
      expect(adapter.calls.poll).toBe(0);
      expect(dispatch.asked).toEqual([sync.syncId]);
      const committed = await pendingTimers(store, sync.syncId);
      expect(committed.some((t) => t.timerId.includes('nextDelay'))).toBe(true);
      expect(dispatch.timerJobsOf(sync.syncId)).toEqual(committed);
      // The timer jobs carry the sync on.
      dispatch.waiting = false;
      await dispatch.drain(engine, store, sync.syncId);
      expect((await engine.get(sync.syncId)).status).toBe('COMPLETED');
    });
  }

  it('a negative or non-finite inline setting is a typed error', () => {
    for (const bad of [{ inlineTimerMaxMs: -1 }, { inlineTimerBudgetMs: Number.NaN }]) {
      expect(() => setup(bad)).toThrow(BanksyncError);
      expect(() => setup(bad)).toThrow(/inlineTimer(MaxMs|BudgetMs) must be a finite number >= 0/);
    }
  });
});

