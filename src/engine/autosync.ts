/**
 * Daily autosync: every eligible connection gets one unattended sync a day at its own slot, spread over
 * the day by a hash of its key. Eligibility is the connection machine's (stored credentials, consent not
 * expired, no web scraping, not needing the user, not cooling down, not disabled, not syncing) and the PSD2
 * limit of 4 unattended accesses per 24 h is enforced there too. Work refused for a reason that passes with
 * time (cooldown, Retry-After, the budget) is not dropped: it runs at the first tick at or after the
 * connection's `nextAttemptAt`, and a sync that failed with passing trouble is retried once its cooldown ends.
 * `tick(now)` is idempotent and is driven by cron: graphile-worker's crontab in Postgres mode, `startAutosync`
 * (the engine's clock) in embedded mode. Each tick also warns of consents about to run out.
 */
import { createHash } from 'node:crypto';
import { isRetired, nextUnattendedAt, type ConnectionContext, type ConnectionState } from '../../machines/connection.js';
import type { Store } from '../stores/types.js';
import type { Clock } from './clock.js';
import type { SyncEngine } from './engine.js';
import { BanksyncError } from './errors.js';
import { StorageError } from '../stores/errors.js';

export const DAY_MS = 24 * 60 * 60_000;

/** The connection's daily slot: ms after midnight UTC. */
export function slotOf(tenantId: string, connectionId: string): number {
  return createHash('sha1').update(`${tenantId}\u0000${connectionId}`).digest().readUInt32BE(0) % DAY_MS;
}

/** The most recent slot occurrence at or before `now`. */
export function lastSlotAt(slot: number, now: number): number {
  const today = Math.floor(now / DAY_MS) * DAY_MS + slot;
  return today <= now ? today : today - DAY_MS;
}

export interface AutosyncReport {
  considered: number;
  started: number;
  refused: Record<string, number>;
  /** Due but waiting for their nextAttemptAt (cooldown, Retry-After, the PSD2 budget). */
  scheduled: number;
  consentWarnings: number;
}

/** A sync that failed with passing trouble is retried once its cooldown has ended (once per cooldown). */
function retryDue(context: ConnectionContext, now: number): boolean {
  const until = context.cooldownUntil;
  if (until == null || until > now || context.lastSync?.status !== 'FAILED') return false;
  return !context.unattendedAccesses.some((at) => at >= until);
}

/** Consent warnings are days ahead: scanning every connection once an hour is plenty. */
const CONSENT_SCAN_EVERY_MS = 60 * 60_000;

export class AutosyncScheduler {
  private lastConsentScanAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly engine: SyncEngine,
    private readonly store: Store,
  ) {}

  async tick(now: number): Promise<AutosyncReport> {
    const report: AutosyncReport = { considered: 0, started: 0, refused: {}, scheduled: 0, consentWarnings: 0 };
    for (const connection of await this.store.listConnections({ state: 'IDLE' })) {
      const context = connection.context as ConnectionContext;
      // Its accounts moved to the accesses an upgrade created; those are autosynced instead.
      if (isRetired(context)) continue;
      const slotAt = lastSlotAt(slotOf(connection.tenantId, connection.connectionId), now);
      // The first slot comes after registration; one unattended sync per slot, plus a retry after a cooldown.
      const slotDue = slotAt >= (context.registeredAt ?? 0) && !context.unattendedAccesses.some((at) => at >= slotAt);
      if (!slotDue && !retryDue(context, now)) continue;
      const next = nextUnattendedAt(connection.state as ConnectionState, context, now);
      if (next !== null && next > now) {
        report.scheduled++;
        continue;
      }
      report.considered++;
      try {
        await this.engine.requestSync({ tenantId: connection.tenantId, connectionId: connection.connectionId, provider: connection.provider, unattended: true });
        report.started++;
      } catch (error) {
        // A refusal is counted; a storage fault ends the tick (the next one tries again).
        if (!(error instanceof BanksyncError) || error instanceof StorageError) throw error;
        const reason = error.issues[0] ?? error.code;
        report.refused[reason] = (report.refused[reason] ?? 0) + 1;
      }
    }
    if (now - this.lastConsentScanAt >= CONSENT_SCAN_EVERY_MS) {
      this.lastConsentScanAt = now;
      report.consentWarnings = await this.engine.warnExpiringConsents();
    }
    return report;
  }
}

/** Embedded mode: tick every `everyMs` on the engine's clock. Returns a stop function. */
export function startAutosync(scheduler: AutosyncScheduler, clock: Clock, everyMs = 15 * 60_000, onError?: (error: unknown) => void): () => void {
  let handle: unknown;
  let stopped = false;
  const loop = () => {
    if (stopped) return;
    scheduler
      .tick(clock.now())
      .catch((error: unknown) => onError?.(error))
      .finally(() => {
        if (!stopped) handle = clock.setTimeout(loop, everyMs);
      });
  };
  handle = clock.setTimeout(loop, 0);
  return () => {
    stopped = true;
    clock.clearTimeout(handle);
  };
}
