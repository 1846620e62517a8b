/**
 * Group commit. Every commit the engine produces in one turn of the event loop (across all hosted syncs) is
 * handed to the store as one group (`Store.commitMany`: one SQLite transaction, one PostgreSQL round trip).
 * Each commit's promise settles only once its group is durable, so the engine still releases effects and
 * events after the commit that precedes them (the crash guarantees do not change). While a group is being
 * written, new commits collect for the next one: under load, groups grow instead of queueing transactions.
 *
 * Fencing stays per sync: a stale change fails only its own promise (StaleWriteError), never its neighbours.
 */
import type { CommitChange, Store } from '../stores/types.js';

interface Pending {
  change: CommitChange;
  resolve: (version: number) => void;
  reject: (error: unknown) => void;
}

export interface CommitPipelineStats {
  /** Groups written so far. */
  groups: number;
  /** Commits written so far (all groups). */
  commits: number;
  /** The largest group written. */
  largestGroup: number;
}

export class CommitPipeline {
  private queue: Pending[] = [];
  private scheduled = false;
  private writing = false;
  readonly stats: CommitPipelineStats = { groups: 0, commits: 0, largestGroup: 0 };

  constructor(
    private readonly store: Pick<Store, 'commitMany'>,
    /** Upper bound on one group, so one transaction never holds the write lock for too long. */
    private readonly maxGroup = 1_000,
  ) {}

  /** Queues the change for this turn's group; resolves with its new version once the group is durable. */
  commit(change: CommitChange): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ change, resolve, reject });
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
        results = await this.store.commitMany(group.map((p) => p.change));
      } catch (error) {
        // The group as a whole was not written: every commit in it failed.
        for (const p of group) p.reject(error);
        return;
      }
      this.stats.groups++;
      this.stats.commits += group.length;
      this.stats.largestGroup = Math.max(this.stats.largestGroup, group.length);
      group.forEach((p, i) => {
        const result = results[i];
        if (result === undefined) p.reject(new Error(`internal: the store returned no result for commit ${i + 1} of ${group.length}`));
        else if (result.ok) p.resolve(result.version);
        else p.reject(result.error);
      });
    } finally {
      this.writing = false;
      if (this.queue.length > 0) this.schedule();
    }
  }
}
