/**
 * Hosting modes of the engine, as a strategy chosen once at construction:
 * - embedded (no Dispatch): each active sync has a resident actor in this process, which fires its own
 *   timers on the engine's clock;
 * - dispatched (a Dispatch, see dispatch.ts): nothing is resident; every piece of work arrives as a job that
 *   activates the sync under its lock, runs it until no effect is in flight, hands its timers back to the
 *   dispatcher and evicts it.
 * The engine keeps what both share (hosting an actor, committing, delivering); a strategy decides where and
 * when that happens.
 */
import type { Observation } from '../../machines/canonical.js';
import type { Store, SyncRecord, TimerRecord } from '../stores/types.js';
import type { Clock } from './clock.js';
import type { Activation, Dispatch } from './dispatch.js';
import { BanksyncError } from './errors.js';
import type { Logger } from './logger.js';
import { describeError, quiescent, sameTimers, throwIfNotCommitted, type SyncRuntime } from './runtime.js';
import { fireScheduledEvent } from './xstate-internals.js';

/** What a hosting strategy may do with the engine's hosted syncs. */
export interface HostedSyncs {
  readonly store: Pick<Store, 'getSync' | 'listSyncs' | 'listTimers'>;
  readonly clock: Clock;
  readonly logger: Logger;
  stopped(): boolean;
  /** The runtime this process hosts for the sync, if any. */
  hosted(syncId: string): SyncRuntime | undefined;
  /** The resident runtime of an active sync, restoring it from the store if this process does not host it. */
  resident(syncId: string): Promise<SyncRuntime | null>;
  /** Creates the actor: fresh from input, or restored from the record's snapshot with its timers re-armed. */
  host(record: SyncRecord, options?: Record<string, unknown>, timers?: TimerRecord[], unattended?: boolean): SyncRuntime;
  close(runtime: SyncRuntime): void;
  /** Sends a provider observation to the actor. */
  deliver(runtime: SyncRuntime, observation: Observation): void;
  /** Has the sync read the provider now (an unauthenticated webhook's hint). */
  readNow(runtime: SyncRuntime): Promise<boolean>;
}

export interface HostingStrategy {
  readonly mode: 'embedded' | 'dispatched';
  /** The clock hosted actors schedule their timers on. */
  readonly actorClock: Pick<Clock, 'setTimeout' | 'clearTimeout'>;
  /** Resumes the active syncs this mode keeps resident (engine.start); how many. */
  /**
   * Resumes the active syncs `start()` just listed (embedded: hosts each; dispatched: nothing, jobs and
   * recoverStuck bring them back). Returns how many are hosted now.
   */
  resumeAll(active: readonly SyncRecord[]): Promise<number>;
  /** requestSync committed (`created`) or found the sync: the runtime to wait on, if this mode hosts it here. */
  hostRequested(sync: SyncRecord, created: boolean, options: Record<string, unknown> | undefined, unattended: boolean): Promise<SyncRuntime | null>;
  /** A new sync's connection is locked: hand its start over (dispatched) or nothing (embedded). */
  requested(sync: SyncRecord, options: Record<string, unknown> | undefined, unattended: boolean): Promise<void>;
  /** Runs `work` on the sync's live actor and waits for its commit (throws SYNC_ALREADY_FINISHED, STORAGE_UNAVAILABLE). */
  withRuntime(syncId: string, work: (runtime: SyncRuntime) => void): Promise<void>;
  /** One activation of a sync by a worker job (dispatched only). */
  activate(syncId: string, activation: Activation, options?: ActivateOptions): Promise<void>;
  /** Queues a resume for active syncs nothing has moved for `staleAfterMs`; how many (dispatched only). */
  recoverStuck(staleAfterMs: number): Promise<number>;
  /** Applies a webhook to an active sync: verified, its observation; otherwise a hint to read now. Whether applied. */
  webhook(record: SyncRecord, verified: boolean, observation: Observation): Promise<boolean>;
  /** A commit of `runtime` stored these pending timers. */
  timersCommitted(runtime: SyncRuntime, timers: TimerRecord[]): Promise<void>;
  /** A commit of the sync failed (not a stale write) and its runtime was closed. */
  commitFailed(syncId: string): void;
}

/** How a worker job runs an activation (see DispatchedHosting.activate). */
export interface ActivateOptions {
  /** The job ran before (graphile-worker's attempts > 1): every pending timer is handed to the dispatcher again. */
  rerun?: boolean;
  /** Ends an inline timer wait early (a worker's graceful stop); the pending timers go to the dispatcher. */
  signal?: AbortSignal;
}

/**
 * Inline timers (dispatched mode): a job that hosts a sync keeps it while its next timer is due within
 * `maxMs`, fires that timer in-process and commits, instead of ending and having a timer job bring the sync
 * back (a poll loop of short waits becomes one job). `budgetMs` bounds how long one job goes on doing so (it
 * holds the sync's lock and its connection's queue meanwhile). `maxMs: 0` turns it off.
 */
export interface InlineTimerOptions {
  maxMs: number;
  budgetMs: number;
}

export const DEFAULT_INLINE_TIMERS: InlineTimerOptions = { maxMs: 1_000, budgetMs: 5_000 };
/** At most this many timers fired inline per job, whatever their delays (a zero-delay loop ends too). */
export const INLINE_TIMER_MAX_COUNT = 100;

export function createHosting(syncs: HostedSyncs, dispatch: Dispatch | undefined, inlineTimers: { maxMs?: number | undefined; budgetMs?: number | undefined } = {}): HostingStrategy {
  if (!dispatch) return new EmbeddedHosting(syncs);
  const inline = { ...DEFAULT_INLINE_TIMERS };
  if (inlineTimers.maxMs !== undefined) inline.maxMs = inlineTimers.maxMs;
  if (inlineTimers.budgetMs !== undefined) inline.budgetMs = inlineTimers.budgetMs;
  return new DispatchedHosting(syncs, dispatch, inline);
}

const STORAGE_RETRY_BASE_MS = 1_000;
const STORAGE_RETRY_MAX_MS = 60_000;

/** Resident actors with in-process timers. */
export class EmbeddedHosting implements HostingStrategy {
  readonly mode = 'embedded';
  readonly actorClock: Clock;

  constructor(private readonly syncs: HostedSyncs) {
    this.actorClock = syncs.clock;
  }

  async resumeAll(active: readonly SyncRecord[]): Promise<number> {
    // resident() re-reads each row: an API call may have hosted and finished a sync meanwhile.
    let resumed = 0;
    for (const record of active) if (await this.syncs.resident(record.syncId)) resumed++;
    return resumed;
  }

  async hostRequested(sync: SyncRecord, created: boolean, options: Record<string, unknown> | undefined, unattended: boolean): Promise<SyncRuntime | null> {
    return created ? this.syncs.host(sync, options, [], unattended) : await this.syncs.resident(sync.syncId);
  }

  async requested(): Promise<void> {}

  async withRuntime(syncId: string, work: (runtime: SyncRuntime) => void): Promise<void> {
    const runtime = await this.syncs.resident(syncId);
    if (!runtime) throw new BanksyncError('SYNC_ALREADY_FINISHED', `sync ${syncId} has finished`);
    work(runtime);
    await runtime.committed();
    throwIfNotCommitted(runtime);
  }

  async activate(): Promise<void> {
    throw new BanksyncError('INVALID_REQUEST', 'activate() needs an engine created with a dispatch');
  }

  async recoverStuck(): Promise<number> {
    return 0;
  }

  async webhook(record: SyncRecord, verified: boolean, observation: Observation): Promise<boolean> {
    const runtime = await this.syncs.resident(record.syncId);
    if (!runtime) return false;
    if (!verified) {
      await this.syncs.readNow(runtime);
      return false;
    }
    this.syncs.deliver(runtime, observation);
    await runtime.committed();
    return true;
  }

  async timersCommitted(): Promise<void> {}

  commitFailed(syncId: string): void {
    // Resident: retry hosting with backoff.
    this.retryHosting(syncId, 0);
  }

  /** Re-hosts a sync whose commit failed, from the store, with backoff until the store takes writes again. */
  private retryHosting(syncId: string, attempt: number): void {
    const delay = Math.min(STORAGE_RETRY_MAX_MS, STORAGE_RETRY_BASE_MS * 2 ** attempt);
    this.syncs.clock.setTimeout(() => {
      if (this.syncs.stopped() || this.syncs.hosted(syncId)) return;
      this.syncs.resident(syncId).then(
        (runtime) => {
          if (runtime) this.syncs.logger.info({ syncId, attempt }, 'sync hosted again after a storage fault');
        },
        (error: unknown) => {
          this.syncs.logger.warn({ syncId, attempt, err: describeError(error) }, 'store still failing; retrying');
          this.retryHosting(syncId, attempt + 1);
        },
      );
    }, delay);
  }
}

/** Actors of a dispatched engine never fire timers themselves: due timers arrive as jobs. */
const PARKED_CLOCK = { setTimeout: () => 0, clearTimeout: () => {} };
/** A timer job may run this early (clock skew between worker processes) and still fire. */
const TIMER_EARLY_TOLERANCE_MS = 1_000;

/** A job's deferred timer hand-off: the timers the dispatcher has jobs for. */
interface Handoff {
  dispatched: TimerRecord[];
}

/** No resident actors: work arrives as jobs (see src/dispatch/worker.ts). */
export class DispatchedHosting implements HostingStrategy {
  readonly mode = 'dispatched';
  readonly actorClock = PARKED_CLOCK;
  /** Runtimes whose timer jobs are written once, when their job ends (inline timers on). */
  private readonly deferred = new WeakMap<SyncRuntime, Handoff>();

  constructor(
    private readonly syncs: HostedSyncs,
    private readonly dispatch: Dispatch,
    private readonly inline: InlineTimerOptions = DEFAULT_INLINE_TIMERS,
  ) {
    for (const [key, value] of [['inlineTimerMaxMs', inline.maxMs], ['inlineTimerBudgetMs', inline.budgetMs]] as const) {
      if (!Number.isFinite(value) || value < 0) throw new BanksyncError('INVALID_REQUEST', `${key} must be a finite number >= 0`, [`${key}: must be a finite number >= 0`]);
    }
  }

  /** Nothing is resident; jobs (and recoverStuck) bring syncs back. */
  async resumeAll(): Promise<number> {
    return 0;
  }

  async hostRequested(): Promise<SyncRuntime | null> {
    return null;
  }

  async requested(sync: SyncRecord, options: Record<string, unknown> | undefined, unattended: boolean): Promise<void> {
    await this.dispatch.enqueue(sync, { kind: 'start', ...(options ? { options } : {}), unattended });
  }

  /** Under the sync's lock, in this process (a TAN must not travel through the job table), until no effect is in flight, then evicts it. */
  async withRuntime(syncId: string, work: (runtime: SyncRuntime) => void): Promise<void> {
    await this.dispatch.withSyncLock(syncId, async () => {
      const runtime = await this.syncs.resident(syncId);
      if (!runtime) throw new BanksyncError('SYNC_ALREADY_FINISHED', `sync ${syncId} has finished`);
      try {
        work(runtime);
        await quiescent(runtime);
        throwIfNotCommitted(runtime);
      } finally {
        this.syncs.close(runtime);
      }
    });
  }

  /**
   * Idempotent: a job that runs twice (a worker died mid-job) finds the committed state, and the effect
   * journal keeps provider calls from repeating.
   *
   * Inline timers on: after the work has quiesced and committed, the job goes on firing the sync's timers
   * that fall due within `inline.maxMs` (see InlineTimerOptions) on the engine's clock, each committed before
   * the next wait. Every timer is committed with its snapshot as always; only the timer *jobs* wait: the
   * dispatcher learns of the pending timers once, when the job ends (diffed against what it had). A worker
   * that dies meanwhile leaves the job locked: graphile-worker runs it again (`rerun`), which hands every
   * committed timer back.
   */
  async activate(syncId: string, activation: Activation, options: ActivateOptions = {}): Promise<void> {
    const { dispatch, syncs } = this;
    await dispatch.withSyncLock(syncId, async () => {
      const record = await syncs.store.getSync(syncId);
      if (!record?.active || syncs.stopped()) return;
      const timers = await syncs.store.listTimers(syncId);
      const start = activation.kind === 'start' ? activation : undefined;
      const runtime = syncs.hosted(syncId) ?? syncs.host(record, start?.options, timers, start?.unattended ?? false);
      if (runtime.closed) {
        await runtime.failure;
        return;
      }
      // A resume follows a lost job or a crash between a commit and its timer jobs. So may a re-run job: its
      // first run can have committed and died before writing the new timer jobs. Hand every timer back
      // (idempotent: one job key per timer).
      const handBackAll = activation.kind === 'resume' || options.rerun === true;
      const handoff: Handoff | null = this.inline.maxMs > 0 ? { dispatched: handBackAll ? [] : runtime.lastTimers } : null;
      if (handoff) this.deferred.set(runtime, handoff);
      try {
        if (activation.kind === 'observe') syncs.deliver(runtime, activation.observation);
        if (activation.kind === 'hint') await syncs.readNow(runtime);
        if (activation.kind === 'timer') await this.fireTimer(runtime, activation.timerId);
        if (handBackAll && !handoff) await dispatch.timersChanged(runtime.record, [], runtime.lastTimers);
        await quiescent(runtime);
        // A lost commit fails the job: graphile-worker runs it again (with backoff) from the committed state.
        if (runtime.commitError) throw runtime.commitError;
        if (handoff) await this.runTimersInline(runtime, options.signal);
      } finally {
        syncs.close(runtime);
        if (handoff) {
          // Commits already under way finish first (none starts once the runtime is closed).
          await runtime.chain;
          await this.handOff(runtime, handoff);
        }
      }
    });
  }

  /** Fires the sync's timers due within the inline horizon, one at a time, while the job's budget lasts. */
  private async runTimersInline(runtime: SyncRuntime, signal: AbortSignal | undefined): Promise<void> {
    const { clock } = this.syncs;
    const began = clock.now();
    for (let fired = 0; fired < INLINE_TIMER_MAX_COUNT; fired++) {
      if (runtime.closed || this.syncs.stopped() || signal?.aborted) return;
      const next = earliest(runtime.lastTimers);
      if (!next) return;
      const now = clock.now();
      const wait = Math.max(0, next.dueAt - now);
      if (wait > this.inline.maxMs || now + wait - began > this.inline.budgetMs) return;
      // Other work for this sync waits (a webhook's job, a user's answer): let it run. Other connections'
      // jobs on the same serial queue wait at most the budget.
      if (await this.othersWaiting(runtime)) return;
      if (wait > 0 && !(await this.sleep(wait, signal))) return;
      if (runtime.closed || this.syncs.stopped()) return;
      // Nothing else runs this actor while the job holds the lock; still, fire only what is still pending.
      if (!runtime.lastTimers.some((t) => t.timerId === next.timerId && t.dueAt === next.dueAt)) continue;
      runtime.lastTimers = runtime.lastTimers.filter((t) => t.timerId !== next.timerId);
      fireScheduledEvent(runtime.actor, next.timerId, next.eventType);
      await quiescent(runtime);
      if (runtime.commitError) throw runtime.commitError;
    }
  }

  private async othersWaiting(runtime: SyncRuntime): Promise<boolean> {
    if (!this.dispatch.othersWaiting) return false;
    try {
      return await this.dispatch.othersWaiting(runtime.record);
    } catch (error) {
      // Unknown: end the inline phase; the timers go to the dispatcher as they would without it.
      this.syncs.logger.warn({ syncId: runtime.record.syncId, err: describeError(error) }, 'could not tell whether other jobs wait; ending inline timers');
      return true;
    }
  }

  /** Waits `ms` on the engine's clock: true when the time has passed, false when `signal` ended the wait. */
  private sleep(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
    const { clock } = this.syncs;
    return new Promise((resolve) => {
      if (signal?.aborted) {
        resolve(false);
        return;
      }
      const onAbort = () => {
        clock.clearTimeout(handle);
        resolve(false);
      };
      const handle = clock.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve(true);
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The job ends: the dispatcher gets jobs for the timers still pending and drops the others it had. */
  private async handOff(runtime: SyncRuntime, handoff: Handoff): Promise<void> {
    const pending = runtime.lastTimers;
    if (sameTimers(handoff.dispatched, pending)) return;
    await this.dispatch.timersChanged(runtime.record, handoff.dispatched, pending);
    handoff.dispatched = pending;
  }

  async recoverStuck(staleAfterMs: number): Promise<number> {
    const now = this.syncs.clock.now();
    let queued = 0;
    // Indexed (syncs_active_updated_at): only the stale rows are read, not every active sync.
    for (const sync of await this.syncs.store.listSyncs({ active: true, updatedBefore: now - staleAfterMs + 1 })) {
      const timers = await this.syncs.store.listTimers(sync.syncId);
      const overdue = timers.length === 0 || timers.some((t) => now - t.dueAt > staleAfterMs);
      // An effect outlives its adapter timeout only if the worker running it died with its job.
      const effectInFlight = Object.keys((sync.snapshot as { children?: object } | null)?.children ?? {}).length > 0;
      if (!overdue && !effectInFlight) continue;
      await this.dispatch.enqueue(sync, { kind: 'resume' });
      queued++;
    }
    return queued;
  }

  async webhook(record: SyncRecord, verified: boolean, observation: Observation): Promise<boolean> {
    await this.dispatch.enqueue(record, verified ? { kind: 'observe', observation } : { kind: 'hint' });
    return verified;
  }

  async timersCommitted(runtime: SyncRuntime, timers: TimerRecord[]): Promise<void> {
    if (this.deferred.has(runtime)) {
      // Inline timers: the job hands the timers over when it ends (see activate).
      runtime.lastTimers = timers;
      return;
    }
    if (sameTimers(runtime.lastTimers, timers)) return;
    const previous = runtime.lastTimers;
    runtime.lastTimers = timers;
    await this.dispatch.timersChanged(runtime.record, previous, timers);
  }

  /** The job fails and graphile-worker retries it. */
  commitFailed(): void {}

  private async fireTimer(runtime: SyncRuntime, timerId: string): Promise<void> {
    const timer = runtime.lastTimers.find((t) => t.timerId === timerId);
    if (!timer) return; // cancelled since: a stale job
    const handoff = this.deferred.get(runtime);
    // This job is the timer's job: once it completes, the dispatcher has no job for the timer.
    if (handoff) handoff.dispatched = handoff.dispatched.filter((t) => t.timerId !== timerId);
    if (timer.dueAt > this.syncs.clock.now() + TIMER_EARLY_TOLERANCE_MS) {
      // Woken early (clock skew between processes): have it woken again at the right time (deferred: by the
      // job's inline wait or its hand-off).
      if (!handoff) await this.dispatch.timersChanged(runtime.record, [], [timer]);
      return;
    }
    // This job is the timer's job. Its key must not be removed by the commit that follows (the timer is gone
    // from the snapshot): graphile-worker's remove_job on a locked job sets attempts = max_attempts, so if
    // this worker died mid-job the unlocked job would never run again (issue 12, point 3). The job is
    // deleted when it completes; if it runs again, the timer is no longer pending and it does nothing.
    runtime.lastTimers = runtime.lastTimers.filter((t) => t.timerId !== timerId);
    fireScheduledEvent(runtime.actor, timerId, timer.eventType);
  }
}

function earliest(timers: readonly TimerRecord[]): TimerRecord | undefined {
  let first: TimerRecord | undefined;
  for (const timer of timers) if (!first || timer.dueAt < first.dueAt) first = timer;
  return first;
}
