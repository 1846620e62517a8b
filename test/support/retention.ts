/** Rows for retention tests: a sync of `connectionId` created and (unless active) finished at `at`. */
import type { Store } from '../../src/stores/types.js';

export const DAY = 24 * 60 * 60_000;

export async function syncAt(store: Store, syncId: string, connectionId: string, at: number, active = false): Promise<void> {
  await store.createSync({ syncId, tenantId: 't', connectionId, provider: 'finx', scope: 'TRANSACTIONS', createdAt: at });
  await store.commit({
    syncId,
    expectedVersion: 0,
    status: active ? 'RUNNING' : 'COMPLETED',
    active,
    providerRef: null,
    snapshot: { value: active ? 'RUNNING' : 'COMPLETED', context: {} },
    timers: active ? [{ syncId, timerId: 'poll', eventType: 'xstate.after.poll', dueAt: at + DAY }] : [],
    transitions: [{ from: null, to: active ? 'RUNNING' : 'COMPLETED', event: 'e', at }],
    pendingEffects: [{ effectKey: `${syncId}:trigger`, kind: 'trigger' }],
    at,
  });
}
