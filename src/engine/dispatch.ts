/**
 * Scale-out seam. Without a Dispatch the engine hosts each active sync in this process and fires its timers
 * itself. With one (graphile-worker on PostgreSQL, see src/dispatch/), no sync is resident: every piece of
 * work — start, due timer, provider push — is a job; a worker activates the sync, lets it run until no
 * effect is in flight, commits, hands its timers back to the dispatcher and evicts it.
 */
import type { Observation } from '../../machines/canonical.js';
import type { TimerRecord } from '../stores/types.js';

export type Activation =
  | { kind: 'start'; options?: Record<string, unknown>; unattended: boolean }
  | { kind: 'resume' }
  | { kind: 'observe'; observation: Observation }
  /** An unauthenticated webhook: read the sync from the provider now. */
  | { kind: 'hint' }
  | { kind: 'timer'; timerId: string };

export interface SyncKey {
  syncId: string;
  tenantId: string;
  connectionId: string;
}

export interface Dispatch {
  /** Queues work on a sync; work on one connection is processed serially, in order. */
  enqueue(sync: SyncKey, activation: Activation): Promise<void>;
  /** The sync's pending timers after a commit: have each activate the sync at its due time; drop the rest. */
  timersChanged(sync: SyncKey, previous: readonly TimerRecord[], next: readonly TimerRecord[]): Promise<void>;
  /** Runs `work` while no other process works on this sync. */
  withSyncLock<T>(syncId: string, work: () => Promise<T>): Promise<T>;
  /**
   * Whether other work for this sync waits behind the job now running for it (a webhook's job, a user's
   * answer waiting for the sync's lock), so that job should stop firing the sync's timers inline. Optional:
   * without it, only the inline budget ends that.
   */
  othersWaiting?(sync: SyncKey): Promise<boolean>;
}
