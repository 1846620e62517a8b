/**
 * The engine's durable event log (issue 15, point 1) on one store: the log carries exactly what engine.events
 * reports, secret-free, with stable ids; bad cursors are typed errors; an engine that follows the log hears
 * another engine's transitions once (as the API process hears its workers).
 */
import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { createEngine } from '../../src/engine/engine.js';
import { BanksyncError } from '../../src/engine/errors.js';
import { LOGGED_EVENTS, type BanksyncEvent } from '../../src/engine/event-log.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { completed, embedded, FakeAdapter, running, settle } from '../support/fake-adapter.js';

const policy = { pollBaseMs: 1_000, pollMaxMs: 4_000, authPollMs: 5_000, retryBaseMs: 1_000, retryMaxMs: 8_000, jitterRatio: 0 };
const TAN = 'tan-SECRET-98765';

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BanksyncError);
  return (error as BanksyncError).code;
}

function setup(store = new MemoryStore()) {
  const clock = new SimulatedClock();
  const adapter = new FakeAdapter('fake', { poll: [embedded('ch-1', 10 ** 12), embedded('ch-1', 10 ** 12)], answer: [running], findTriggered: [null] });
  // After the answer, polls complete the sync.
  adapter.poll = async () => (adapter.answers.length ? completed : embedded('ch-1', 10 ** 12));
  const engine = createEngine({ store, providers: { fake: adapter }, clock, policy });
  const advance = async (ms: number) => {
    clock.increment(ms);
    await settle();
  };
  return { engine, store, advance };
}

const key = (name: string, payload: unknown) => `${name}@${(payload as { version: number }).version}`;

describe('event log (engine)', () => {
  it('logs exactly what engine.events reports, in order, with stable ids and no secrets', async () => {
    const { engine, store, advance } = setup();
    const heard: string[] = [];
    for (const name of LOGGED_EVENTS) engine.events.on(name, (payload) => heard.push(key(name, 'version' in payload ? payload : payload.created.at(-1))));
    const sync = await engine.requestSync({ connectionId: 'conn-1', provider: 'fake' });
    await settle();
    await advance(1_000);
    const asking = await engine.get(sync.syncId);
    expect(asking.state).toBe('AWAIT_AUTH.AwaitingUser');
    await engine.submitChallengeResponse(sync.syncId, { challengeId: 'ch-1', response: TAN });
    await advance(1_000);
    await advance(2_000);
    expect((await engine.get(sync.syncId)).status).toBe('COMPLETED');

    const page = await engine.readEvents({ limit: 1_000 });
    expect(page.more).toBe(false);
    expect(page.cursor).toBe(page.events.at(-1)!.cursor);
    const log = page.events;
    expect(log.map((e) => key(e.name, e.payload))).toEqual(heard);
    expect(log.map((e) => e.name)).toEqual(expect.arrayContaining(['connection.updated', 'sync.updated', 'sync.awaitingUser', 'sync.completed']));
    expect(new Set(log.map((e) => e.id)).size).toBe(log.length);
    expect(JSON.stringify(log)).not.toContain(TAN);
    // The store's view of the same log: same ids, same order.
    expect((await store.readEvents(null, 1_000)).events.map((e) => e.eventId)).toEqual(log.map((e) => e.id));
    // Paging from any cursor gives exactly the rest.
    const rest = await engine.readEvents({ after: log[2]!.cursor, limit: 1_000 });
    expect(rest.events.map((e) => e.id)).toEqual(log.slice(3).map((e) => e.id));
  });

  it('gives syncs time-ordered ids and sync events ids that sort with their sync (write locality, issue 14)', async () => {
    const { engine } = setup();
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push((await engine.requestSync({ connectionId: `conn-${i}`, provider: 'fake' })).syncId);
    await settle();
    // Creation order is key order: the rows of the syncs in flight share B-tree pages.
    expect([...ids].sort()).toEqual(ids);
    expect(ids.every((id) => /^sync_[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id))).toBe(true);
    const { events } = await engine.readEvents({ limit: 1_000 });
    const syncEvents = events.filter((e) => e.name.startsWith('sync.'));
    expect(syncEvents.length).toBeGreaterThanOrEqual(ids.length);
    for (const event of syncEvents) {
      const syncId = (event.payload as { syncId: string }).syncId;
      expect(event.id).toMatch(/^evt_[0-9a-f]{32}$/);
      expect(event.id.slice(4, 16)).toBe(syncId.slice(5).replaceAll('-', '').slice(0, 12));
    }
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  });

  it('rejects a bad cursor or limit with INVALID_REQUEST and reads nothing', async () => {
    const { engine } = setup();
    expect(await codeOf(engine.readEvents({ after: 'not-a-cursor' }))).toBe('INVALID_REQUEST');
    expect(await codeOf(engine.readEvents({ after: '1-2' }))).toBe('INVALID_REQUEST');
    expect(await codeOf(engine.readEvents({ limit: 0 }))).toBe('INVALID_REQUEST');
    expect(await codeOf(engine.readEvents({ limit: 1.5 }))).toBe('INVALID_REQUEST');
    expect(await codeOf(engine.subscribe({ after: 'x'.repeat(100), onEvent: () => {} }))).toBe('INVALID_REQUEST');
    expect(await codeOf(engine.subscribe({ after: '--', onEvent: () => {} }))).toBe('INVALID_REQUEST');
  });

  it('an engine that follows the log hears another engine’s syncs once, and its own changes once', async () => {
    const store = new MemoryStore();
    const worker = setup(store);
    const api = createEngine({ store, providers: {}, policy });
    await api.followEventLog({ pollMs: 50 });
    const heard: string[] = [];
    for (const name of LOGGED_EVENTS) api.events.on(name, (payload) => heard.push(key(name, 'version' in payload ? payload : payload.created.at(-1))));
    const sync = await worker.engine.requestSync({ connectionId: 'conn-2', provider: 'fake' });
    const terminal = api.waitForTerminal(sync.syncId);
    await settle();
    await worker.advance(1_000);
    await worker.engine.submitChallengeResponse(sync.syncId, { challengeId: 'ch-1', response: TAN });
    await worker.advance(1_000);
    await worker.advance(2_000);
    expect((await terminal).status).toBe('COMPLETED');
    // A change made by the following engine itself is heard once, from the log.
    await api.recreateConnection('conn-2');
    const log: BanksyncEvent[] = [];
    const subscription = await api.subscribe({ after: null, onEvent: (e) => void log.push(e) });
    const total = (await store.readEvents(null, 1_000)).events.length;
    await expect.poll(() => log.length, { timeout: 5_000 }).toBe(total);
    expect(log.at(-1)!.name).toBe('connection.updated');
    await subscription.close();
    await expect.poll(() => heard.length, { timeout: 5_000 }).toBe(log.length);
    expect(heard).toEqual(log.map((e) => key(e.name, e.payload)));
    await api.stop();
    await worker.engine.stop();
  });
});
