/**
 * Retention: how long finished syncs and their history are kept, and pruning in bounded batches.
 * `SyncEngine.prune` and `banksync prune` run it on demand; workers run it from graphile-worker's crontab.
 * Active syncs, their rows and the newest sync of each connection are never pruned (see Store.prune).
 */
import { z } from 'zod';
import type { PruneCounts, PruneCutoffs, PruneKind, Store } from '../stores/types.js';
import { invalidRequest } from './errors.js';

export const DAY_MS = 24 * 60 * 60_000;

export interface Retention {
  /** Finished syncs (with their timers, effects and transitions) are deleted this long after they finished. */
  finishedSyncsMs: number;
  /** Transition history of finished syncs is deleted once this old (may be shorter than finishedSyncsMs). */
  transitionsMs: number;
  /** Effect journal rows of finished syncs are deleted once this old. */
  effectsMs: number;
  /** The durable event log, for a store that has one. */
  eventsMs: number;
  /** Rows per kind per store transaction. */
  batchSize: number;
  /** Batches per run at most (the next run goes on). */
  maxBatches: number;
}

export const DEFAULT_RETENTION: Retention = {
  finishedSyncsMs: 90 * DAY_MS,
  transitionsMs: 90 * DAY_MS,
  effectsMs: 90 * DAY_MS,
  eventsMs: 90 * DAY_MS,
  batchSize: 500,
  maxBatches: 100,
};

/** Shorter than this would prune what operators still look at after an incident: refused. */
export const MIN_RETENTION_MS = 60 * 60_000;
export const MAX_BATCH_SIZE = 10_000;

/** Per kind of row: the retention setting that sets its cutoff. */
const KINDS: Record<PruneKind, keyof Retention> = {
  finishedSyncs: 'finishedSyncsMs',
  transitions: 'transitionsMs',
  effects: 'effectsMs',
  events: 'eventsMs',
};

export function cutoffsAt(now: number, retention: Retention): Required<PruneCutoffs> {
  const cutoffs = {} as Required<PruneCutoffs>;
  for (const [kind, setting] of Object.entries(KINDS) as [PruneKind, keyof Retention][]) cutoffs[kind] = now - retention[setting];
  return cutoffs;
}

const Duration = z.number().int().min(MIN_RETENTION_MS, `must be at least ${MIN_RETENTION_MS} ms (1 hour)`);
const PruneOptions = z
  .object({
    now: z.number().int().nonnegative().optional(),
    batchSize: z.number().int().positive().max(MAX_BATCH_SIZE).optional(),
    maxBatches: z.number().int().positive().optional(),
    dryRun: z.boolean().optional(),
    retention: z
      .object({ finishedSyncsMs: Duration, transitionsMs: Duration, effectsMs: Duration, eventsMs: Duration })
      .partial()
      .strict()
      .optional(),
  })
  .strict();
export type PruneOptions = z.input<typeof PruneOptions>;

export interface PruneReport extends PruneCounts {
  dryRun: boolean;
  /** Store transactions used. */
  batches: number;
  /** False when maxBatches ran out before everything past retention was gone: the next run goes on. */
  complete: boolean;
  cutoffs: PruneCutoffs;
}

/**
 * Deletes what is past retention, batch after batch (each one bounded store transaction), until a batch
 * finds nothing or `maxBatches` is reached. A dry run counts, in one rolled-back transaction bounded like the
 * whole run, what a run would delete now.
 */
export async function pruneStore(store: Store, base: Retention, options: PruneOptions = {}, now = Date.now()): Promise<PruneReport> {
  const parsed = PruneOptions.safeParse(options);
  if (!parsed.success) throw invalidRequest('prune options', parsed.error);
  const { retention: overrides, dryRun = false, ...rest } = parsed.data;
  const retention: Retention = { ...base, ...overrides, ...(rest.batchSize ? { batchSize: rest.batchSize } : {}), ...(rest.maxBatches ? { maxBatches: rest.maxBatches } : {}) };
  const cutoffs = cutoffsAt(rest.now ?? now, retention);
  const report: PruneReport = { syncs: 0, transitions: 0, effects: 0, timers: 0, dryRun, batches: 0, complete: false, cutoffs };
  if (dryRun) {
    const counts = await store.prune({ cutoffs, limit: retention.batchSize * retention.maxBatches, dryRun: true });
    add(report, counts);
    report.batches = 1;
    report.complete = true;
    return report;
  }
  while (report.batches < retention.maxBatches) {
    const counts = await store.prune({ cutoffs, limit: retention.batchSize });
    report.batches++;
    add(report, counts);
    if (total(counts) === 0) {
      report.complete = true;
      break;
    }
  }
  return report;
}

function total(counts: PruneCounts): number {
  return counts.syncs + counts.transitions + counts.effects + counts.timers + (counts.events ?? 0);
}

function add(into: PruneReport, counts: PruneCounts): void {
  into.syncs += counts.syncs;
  into.transitions += counts.transitions;
  into.effects += counts.effects;
  into.timers += counts.timers;
  if (counts.events !== undefined) into.events = (into.events ?? 0) + counts.events;
}
