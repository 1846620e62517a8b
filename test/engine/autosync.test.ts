/**
 * Daily autosync over 3 simulated days and 500 connections: every eligible connection is synced once a
 * day at its slot, never more than 4 unattended accesses in any 24 h window, ineligible ones never, and
 * none while a sync of that connection is active.
 */
import { describe, expect, it, vi } from 'vitest';
import { SimulatedClock } from 'xstate';
import type { Observation } from '../../machines/canonical.js';
import { AutosyncScheduler, DAY_MS, slotOf } from '../../src/engine/autosync.js';
import { createEngine } from '../../src/engine/engine.js';
import type { ProviderAdapter, TriggerRequest } from '../../src/providers/types.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { settle } from '../support/fake-adapter.js';

const TICK_MS = 15 * 60_000;

/** Completes a sync on its trigger; records when each connection was triggered. */
class RecordingAdapter implements ProviderAdapter {
  readonly name = 'rec';
  readonly triggers = new Map<string, number[]>();
  constructor(private readonly clock: SimulatedClock) {}
  async trigger(request: TriggerRequest) {
    this.triggers.set(request.connectionId, [...(this.triggers.get(request.connectionId) ?? []), this.clock.now()]);
    const observation: Observation = { status: 'COMPLETED', result: { outcome: 'COMPLETE', accounts: [] } };
    return { providerRef: `ref-${request.syncId}`, observation };
  }
  async findTriggered() {
    return null;
  }
  async poll(): Promise<Observation> {
    throw new Error('not polled');
  }
  async answerChallenge(): Promise<Observation> {
    throw new Error('no challenges');
  }
  parseWebhook(): never {
    throw new Error('no webhooks');
  }
}

describe('daily autosync', () => {
  it('3 days x 500 connections: once a day each eligible, ≤ 4 unattended per 24 h, ineligible never', async () => {
    const clock = new SimulatedClock();
    const start = Date.UTC(2026, 10, 2);
    clock.set(start);
    const store = new MemoryStore();
    const adapter = new RecordingAdapter(clock);
    const engine = createEngine({ store, providers: { rec: adapter }, clock });
    const eligible: string[] = [];
    const ineligible: string[] = [];
    for (let i = 0; i < 500; i++) {
      const connectionId = `conn-${i}`;
      const kind = i % 10;
      const settings =
        kind === 7
          ? { storedCredentials: false, consentGrantedAt: start }
          : kind === 8
            ? { storedCredentials: true, hasWebScraping: true, consentGrantedAt: start }
            : kind === 9
              ? { storedCredentials: true, consentGrantedAt: start - 95 * DAY_MS }
              : { storedCredentials: true, consentGrantedAt: start - 10 * DAY_MS };
      await engine.registerConnection({ connectionId, provider: 'rec', ...settings });
      (kind >= 7 ? ineligible : eligible).push(connectionId);
    }
    const scheduler = new AutosyncScheduler(engine, store);
    let refusedWhileActive = 0;
    for (let t = start; t < start + 3 * DAY_MS; t += TICK_MS) {
      clock.set(t);
      const report = await scheduler.tick(t);
      refusedWhileActive += report.refused.SYNC_ACTIVE ?? 0;
      await settle(5);
    }
    expect(refusedWhileActive).toBe(0);
    const end = start + 3 * DAY_MS;
    for (const id of eligible) {
      const times = adapter.triggers.get(id) ?? [];
      // Its daily slot, rounded up to the tick that sees it; one sync per slot within the three days.
      const slot = slotOf('default', id);
      const expected = [0, 1, 2].map((d) => Math.ceil((start + slot + d * DAY_MS) / TICK_MS) * TICK_MS).filter((t) => t < end);
      expect(times, id).toEqual(expected);
      for (const t of times) expect(times.filter((u) => u > t - DAY_MS && u <= t).length).toBeLessThanOrEqual(4);
    }
    for (const id of ineligible) expect(adapter.triggers.get(id) ?? [], id).toEqual([]);
    // Slots are spread over the day, not bunched at midnight.
    const hours = new Set(eligible.map((id) => new Date(adapter.triggers.get(id)![0]!).getUTCHours()));
    expect(hours.size).toBeGreaterThanOrEqual(20);
  });

  it('does not start an unattended sync while the connection has an active one', async () => {
    const clock = new SimulatedClock();
    clock.set(Date.UTC(2026, 10, 2));
    const store = new MemoryStore();
    const hanging: ProviderAdapter = { ...new RecordingAdapter(clock), name: 'rec', trigger: () => new Promise(() => {}), findTriggered: async () => null, poll: () => new Promise(() => {}), answerChallenge: () => new Promise(() => {}), parseWebhook: () => { throw new Error('x'); } };
    let triggers = 0;
    const counting: ProviderAdapter = { ...hanging, trigger: (r) => (triggers++, hanging.trigger(r)) };
    // The user's sync hangs at the provider and never times out during the test.
    const engine = createEngine({ store, providers: { rec: counting }, clock, policy: { syncDeadlineMs: 30 * DAY_MS } });
    await engine.registerConnection({ connectionId: 'c', provider: 'rec', storedCredentials: true, consentGrantedAt: clock.now() });
    await engine.requestSync({ connectionId: 'c', provider: 'rec' });
    // The trigger runs once its journal entry is durable (group commit writes on the next turn).
    await vi.waitFor(() => expect(triggers).toBe(1));
    const scheduler = new AutosyncScheduler(engine, store);
    for (let i = 0; i < 4 * 24 * 2; i++) {
      clock.increment(TICK_MS);
      await scheduler.tick(clock.now());
    }
    expect(await store.listSyncs({ connectionId: 'c' })).toHaveLength(1);
    expect(triggers).toBe(1);
  });
});
