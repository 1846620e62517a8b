/**
 * Group commit. Every commit, effect-journal write, new sync and connection save the engine produces in one turn of the event loop (across
 * all hosted syncs) is handed to the store as one group (`Store.writeMany`: one SQLite transaction; on
 * PostgreSQL the commits go in one round trip).
 * Each commit's promise settles only once its group is durable, so the engine still releases effects and
 * events after the commit that precedes them (the crash guarantees do not change). While a group is being
 * written, new commits collect for the next one: under load, groups grow instead of queueing transactions.
 *
 * Fencing stays per sync: a stale change fails only its own promise (StaleWriteError), never its neighbours.
 */
import type { CommitChange, ConnectionRecord, EffectRecord, NewEventRecord, NewSync, Store, StoreWrite, SyncRecord } from '../stores/types.js';

interface Pending {
  write: StoreWrite;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export interface CommitPipelineStats {
  /** Groups written so far. */
  groups: number;
  /** Writes (commits and journal writes) written so far, all groups. */
  writes: number;
  /** The largest group written. */
  largestGroup: number;
}

export class CommitPipeline {
  private queue: Pending[] = [];
  private scheduled = false;
  private writing = false;
  readonly stats: CommitPipelineStats = { groups: 0, writes: 0, largestGroup: 0 };

  constructor(
    private readonly store: Pick<Store, 'writeMany'>,
    /** Upper bound on one group, so one transaction never holds the write lock for too long. */
    private readonly maxGroup = 1_000,
  ) {}

  /** Queues the change for this turn's group; resolves with its new version once the group is durable. */
  commit(change: CommitChange): Promise<number> {
    return this.write({ op: 'commit', change }) as Promise<number>;
  }

  /** `Store.startEffect`, written with this turn's group. */
  startEffect(effectKey: string, syncId: string, kind: string, at: number): Promise<EffectRecord | null> {
    return this.write({ op: 'startEffect', effectKey, syncId, kind, at }) as Promise<EffectRecord | null>;
  }

  /** `Store.finishEffect`, written with this turn's group. */
  async finishEffect(effectKey: string, state: 'DONE' | 'FAILED', outcome: unknown, at: number): Promise<void> {
    await this.write({ op: 'finishEffect', effectKey, state, outcome, at });
  }

  /** `Store.createSync`, written with this turn's group. */
  createSync(sync: NewSync): Promise<{ sync: SyncRecord; created: boolean }> {
    return this.write({ op: 'createSync', sync }) as Promise<{ sync: SyncRecord; created: boolean }>;
  }

  /** `Store.saveConnection`, written with this turn's group. */
  saveConnection(record: Omit<ConnectionRecord, 'version'>, expectedVersion: number, events: NewEventRecord[] = []): Promise<number> {
    return this.write({ op: 'saveConnection', record, expectedVersion, events }) as Promise<number>;
  }

  private write(write: StoreWrite): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      this.queue.push({ write, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.writing) return;
    this.scheduled = true;
    // setImmediate: after this turn's microtasks and I/O callbacks, so every commit of the turn joins the group.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.writing || this.queue.length === 0) return;
    this.writing = true;
    const group = this.queue.length <= this.maxGroup ? this.queue : this.queue.slice(0, this.maxGroup);
    this.queue = this.queue.length <= this.maxGroup ? [] : this.queue.slice(this.maxGroup);
    try {
      let results;
      try {
        results = await this.store.writeMany(group.map((p) => p.write));
      } catch (error) {
        // The group as a whole was not written: every commit in it failed.
        for (const p of group) p.reject(error);
        return;
      }
      this.stats.groups++;
      this.stats.writes += group.length;
      this.stats.largestGroup = Math.max(this.stats.largestGroup, group.length);
      group.forEach((p, i) => {
        const result = results[i];
        if (result === undefined) p.reject(new Error(`internal: the store returned no result for write ${i + 1} of ${group.length}`));
        else if (result.ok) p.resolve(result.value);
        else p.reject(result.error);
      });
    } finally {
      this.writing = false;
      if (this.queue.length > 0) this.schedule();
    }
  }
}
