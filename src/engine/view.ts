/** The public, secret-free view of a sync, derived from its stored record and machine snapshot. */
import type { Challenge, EffectFailure, SyncError, SyncResult, SyncScope } from '../../machines/canonical.js';
import type { SyncContext, SyncStatus } from '../../machines/synchronization.js';
import type { SyncRecord } from '../stores/types.js';

export interface SyncView {
  syncId: string;
  tenantId: string;
  connectionId: string;
  provider: string;
  scope: SyncScope;
  status: SyncStatus;
  /** Finer machine state, e.g. `RUNNING.Waiting`. */
  state: string;
  active: boolean;
  providerRef: string | null;
  challenge: Challenge | null;
  /** The latest transient failure (a poll that failed, an answer that could not be delivered), if any. */
  lastFailure: EffectFailure | null;
  result: SyncResult | null;
  error: SyncError | null;
  /** The provider asked us to come back no sooner than this (Retry-After beyond what a sync waits in place). */
  nextAttemptAt: number | null;
  version: number;
  createdAt: number;
  updatedAt: number;
}

interface PersistedMachineSnapshot {
  value?: unknown;
  context?: Partial<SyncContext>;
}

export function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [key, inner] = Object.entries(value as Record<string, unknown>)[0] ?? [];
    return key === undefined ? '' : inner === undefined ? key : `${key}.${stateName(inner)}`;
  }
  return '';
}

export function toView(record: SyncRecord): SyncView {
  const snapshot = (record.snapshot ?? {}) as PersistedMachineSnapshot;
  const context = snapshot.context ?? {};
  return {
    syncId: record.syncId,
    tenantId: record.tenantId,
    connectionId: record.connectionId,
    provider: record.provider,
    scope: record.scope,
    status: record.status,
    state: snapshot.value === undefined ? record.status : stateName(snapshot.value),
    active: record.active,
    providerRef: record.providerRef,
    challenge: record.status === 'AWAIT_AUTH' ? (context.challenge ?? null) : null,
    lastFailure: context.lastFailure ?? null,
    result: context.result ?? null,
    error: context.error ?? null,
    nextAttemptAt: !record.active && context.error?.retryAfterMs !== undefined ? record.updatedAt + context.error.retryAfterMs : null,
    version: record.version,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
  };
}
