/**
 * Measurement helpers: a macrostep counter, a latency probe fed by XState inspection events, and a Store
 * wrapper that tells the probe when a commit became durable.
 *
 * Latency definition (same for the engine and the bare actor):
 *   t0 = when the event's cause happened: the provider double returned (effect results), the user's answer
 *        was submitted (CHALLENGE.ANSWER), or the event reached the actor (timers, init);
 *   t1 = engine: the store commit of the macrostep that event caused returned;
 *        bare actor: the macrostep finished (the actor has nothing to commit).
 */
import { performance } from 'node:perf_hooks';
import type { InspectionEvent } from 'xstate';
import type { CommitChange, CommitResult, Store, StoreWrite, WriteResult } from '../src/stores/types.js';

interface ActorState {
  syncId: string;
  connectionId: string;
  t0: number;
  lastSnapshot: unknown;
}

function isRoot(event: InspectionEvent): boolean {
  return event.actorRef.sessionId === event.rootId;
}

/** Counts macrosteps (snapshot updates) of root actors. Cheap enough to leave on in every run. */
export class MacrostepCounter {
  count = 0;
  readonly inspect = (event: InspectionEvent): void => {
    if (event.type === '@xstate.snapshot' && isRoot(event)) this.count++;
  };
}

export class LatencyProbe {
  macrosteps = 0;
  private samples: Float64Array;
  private n = 0;
  /** connectionId -> time the provider/user produced the next event for that connection. */
  private readonly origins = new Map<string, number>();
  /** syncId -> t0 of macrosteps awaiting their commit, in order (engine mode). */
  private readonly uncommitted = new Map<string, number[]>();
  private readonly actors = new WeakMap<object, ActorState>();

  constructor(
    private readonly mode: 'commit' | 'macrostep',
    capacity = 1 << 16,
  ) {
    this.samples = new Float64Array(capacity);
  }

  /** The provider returned / the user answered for this connection: the next event it causes starts now. */
  stamp(connectionId: string): void {
    this.origins.set(connectionId, performance.now());
  }

  readonly inspect = (event: InspectionEvent): void => {
    if (event.type !== '@xstate.event' && event.type !== '@xstate.snapshot') return;
    if (!isRoot(event)) return;
    let state = this.actors.get(event.actorRef);
    if (!state) {
      const context = (event.actorRef.getSnapshot() as { context?: { syncId?: string; connectionId?: string } }).context;
      state = { syncId: context?.syncId ?? '', connectionId: context?.connectionId ?? '', t0: 0, lastSnapshot: undefined };
      this.actors.set(event.actorRef, state);
    }
    const now = performance.now();
    if (event.type === '@xstate.event') {
      const type = event.event.type;
      let t0 = now;
      if (type.startsWith('xstate.done.actor') || type.startsWith('xstate.error.actor') || type === 'CHALLENGE.ANSWER') {
        const origin = this.origins.get(state.connectionId);
        if (origin !== undefined) {
          t0 = origin;
          this.origins.delete(state.connectionId);
        }
      }
      state.t0 = t0;
      return;
    }
    this.macrosteps++;
    if (event.snapshot === state.lastSnapshot) return; // nothing changed: the engine commits nothing either
    state.lastSnapshot = event.snapshot;
    if (this.mode === 'macrostep') {
      this.record(now - state.t0);
    } else {
      let queue = this.uncommitted.get(state.syncId);
      if (!queue) this.uncommitted.set(state.syncId, (queue = []));
      queue.push(state.t0);
    }
  };

  /** The engine's commit for this sync returned (engine mode). */
  committed(syncId: string, active: boolean): void {
    const now = performance.now();
    const queue = this.uncommitted.get(syncId);
    const t0 = queue?.shift();
    if (t0 !== undefined) this.record(now - t0);
    if (!active || queue?.length === 0) this.uncommitted.delete(syncId);
  }

  private record(ms: number): void {
    if (this.n === this.samples.length) {
      const grown = new Float64Array(this.samples.length * 2);
      grown.set(this.samples);
      this.samples = grown;
    }
    this.samples[this.n++] = ms;
  }

  /** Percentiles in microseconds. */
  summary(): { samples: number; p50Us: number; p99Us: number } {
    const sorted = this.samples.slice(0, this.n).sort();
    const at = (q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! * 1000);
    return { samples: this.n, p50Us: at(0.5), p99Us: at(0.99) };
  }
}

/**
 * Delegates every Store method to a real store and reports each successful commit (single or grouped) to the probe. A Proxy, so
 * it keeps working unchanged when the Store contract grows.
 */
export function instrumentStore(inner: Store, probe: LatencyProbe): Store {
  const commit = async (change: CommitChange): Promise<number> => {
    const version = await inner.commit(change);
    probe.committed(change.syncId, change.active);
    return version;
  };
  const commitMany = async (changes: readonly CommitChange[]): Promise<CommitResult[]> => {
    const results = await inner.commitMany(changes);
    results.forEach((result, i) => {
      if (result.ok) probe.committed(changes[i]!.syncId, changes[i]!.active);
    });
    return results;
  };
  const writeMany = async (writes: readonly StoreWrite[]): Promise<WriteResult[]> => {
    const results = await inner.writeMany(writes);
    results.forEach((result, i) => {
      const write = writes[i]!;
      if (result.ok && write.op === 'commit') probe.committed(write.change.syncId, write.change.active);
    });
    return results;
  };
  return new Proxy(inner, {
    get(target, property, receiver) {
      if (property === 'commit') return commit;
      if (property === 'commitMany') return commitMany;
      if (property === 'writeMany') return writeMany;
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
