/**
 * One hosted sync: its live XState actor and what the engine tracks beside it (the commit chain, the last
 * committed state and timers). Shared by the engine and both hosting strategies (see hosting.ts).
 */
import type { Actor } from 'xstate';
import type { synchronizationMachine } from '../../machines/synchronization.js';
import { toStorageError } from '../stores/errors.js';
import type { SyncRecord, TimerRecord } from '../stores/types.js';
import { BanksyncError } from './errors.js';
import { stateName } from './view.js';

export type SyncActor = Actor<typeof synchronizationMachine>;

/** Per-sync runtime state of a resident actor. */
export class SyncRuntime {
  actor!: SyncActor;
  /** Serialises commits; effects wait on it so their intent is durable before any I/O. */
  chain: Promise<void> = Promise.resolve();
  lastState: string;
  lastChallengeId: string | null = null;
  /** XState notifies even when an event changed nothing (e.g. a rejected answer); such a no-op is not committed. */
  lastSnapshot: unknown = null;
  /** Replaying a restored snapshot re-emits it; nothing changed, so nothing is committed. */
  restoring = false;
  closed = false;
  /** The store error that made this runtime stop (a failed commit). */
  commitError: unknown = null;
  /** Set when the actor could not be restored or failed: the sync is being failed with ENGINE_ERROR. */
  failure: Promise<void> | null = null;
  /** When an unauthenticated webhook last made this sync read the provider early (see SyncEngine.readNow). */
  lastHintAt = Number.NEGATIVE_INFINITY;
  readonly dueAt = new WeakMap<object, number>();
  /** Timers as last committed, so a dispatcher learns only of changes. */
  lastTimers: TimerRecord[] = [];
  /** Resolved after every macrostep (see SyncEngine.quiescent). */
  private waiters: (() => void)[] = [];

  changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  constructor(
    public record: SyncRecord,
    public version: number,
  ) {
    this.lastState = record.snapshot ? stateName((record.snapshot as { value: unknown }).value) : '';
  }

  async committed(): Promise<void> {
    // Let the macrostep that started this effect enqueue its commit first.
    await null;
    await this.chain;
  }
}

/** Waits until no effect is in flight and every transition is committed (or the sync finished). */
export async function quiescent(runtime: SyncRuntime): Promise<void> {
  for (;;) {
    const changed = runtime.changed();
    await runtime.committed();
    if (runtime.closed) return;
    const snapshot = runtime.actor.getSnapshot();
    if (snapshot.status !== 'active' || Object.keys(snapshot.children).length === 0) return;
    await changed;
  }
}

export function describeError(error: unknown): string {
  const storage = toStorageError(error, 'store');
  return storage instanceof Error ? storage.message : String(storage);
}

/** The caller's step was not made durable: say so, instead of returning the old state as if it had worked. */
export function throwIfNotCommitted(runtime: SyncRuntime): void {
  if (runtime.commitError) {
    throw new BanksyncError('STORAGE_UNAVAILABLE', `sync ${runtime.record.syncId}: the change could not be stored (${describeError(runtime.commitError)}); the sync stays at its last stored state`);
  }
}

export function sameTimers(a: readonly TimerRecord[], b: readonly TimerRecord[]): boolean {
  return a.length === b.length && a.every((t, i) => t.timerId === b[i]!.timerId && t.dueAt === b[i]!.dueAt);
}
