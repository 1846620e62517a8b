/**
 * Issue 12, point 8: requestSync options are the machine's input, so they are stored in the snapshot, carried in
 * dispatch jobs and streamed to the inspector. Only option keys the adapter declares safe are accepted; a
 * secret-looking option is refused (INVALID_REQUEST) and appears nowhere: not in the store, not in the
 * inspector stream, not in the logs, not in the error.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SimulatedClock, type InspectionEvent } from 'xstate';
import { createEngine } from '../../src/engine/engine.js';
import { BanksyncError } from '../../src/engine/errors.js';
import { createLogger } from '../../src/engine/logger.js';
import type { TriggerRequest } from '../../src/providers/types.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { completed, FakeAdapter, settle } from '../support/fake-adapter.js';

const SECRET = 'sk_live_9f8e7d6c5b4a39281706';
const policy = { pollBaseMs: 1_000, pollMaxMs: 4_000, authPollMs: 5_000, retryBaseMs: 1_000, retryMaxMs: 8_000, jitterRatio: 0 };

class RecordingAdapter extends FakeAdapter {
  readonly triggered: TriggerRequest[] = [];
  constructor(readonly safeOptionKeys?: readonly string[]) {
    super('fake', { poll: [completed] });
  }
  override trigger(request: TriggerRequest) {
    this.triggered.push(request);
    return super.trigger(request);
  }
}

function setup(safeOptionKeys?: readonly string[]) {
  const store = new MemoryStore();
  const clock = new SimulatedClock();
  const adapter = new RecordingAdapter(safeOptionKeys);
  const inspected: string[] = [];
  let logs = '';
  const destination = new Writable({
    write(chunk, _encoding, done) {
      logs += String(chunk);
      done();
    },
  });
  const engine = createEngine({
    store,
    providers: { fake: adapter },
    clock,
    policy,
    logger: createLogger({ level: 'debug', destination }),
    inspect: (event: InspectionEvent) => inspected.push(JSON.stringify(event, (_key, value: unknown) => (typeof value === 'bigint' ? String(value) : value))),
  });
  const everything = async () => {
    const syncs = await store.listSyncs();
    const details = await Promise.all(syncs.map(async (s) => ({ transitions: await store.listTransitions(s.syncId), effects: await store.listEffects(s.syncId), history: await engine.history(s.syncId) })));
    return JSON.stringify({ syncs, details, connections: await store.listConnections(), inspected, logs });
  };
  return { store, clock, adapter, engine, inspected, everything, logs: () => logs };
}

const refusal = (promise: Promise<unknown>) =>
  promise.then(
    () => null,
    (error: unknown) => error,
  );

describe('sync options', () => {
  it('refuses an option the adapter does not declare safe: no sync, and the secret is nowhere', async () => {
    const { engine, store, everything } = setup(['force']);
    const error = await refusal(engine.requestSync({ connectionId: 'c1', provider: 'fake', options: { force: true, apiToken: SECRET } }));
    expect(error).toBeInstanceOf(BanksyncError);
    expect((error as BanksyncError).code).toBe('INVALID_REQUEST');
    expect((error as BanksyncError).message).toContain('declares only force');
    expect(JSON.stringify(error)).not.toContain(SECRET);
    expect(JSON.stringify(error)).not.toContain('apiToken');
    expect(await store.listSyncs()).toEqual([]);
    expect(await store.listConnections()).toEqual([]);
    expect(await everything()).not.toContain(SECRET);
  });

  it('an adapter that declares no option keys takes no options', async () => {
    const { engine, store } = setup();
    const error = await refusal(engine.requestSync({ connectionId: 'c1', provider: 'fake', options: { password: SECRET } }));
    expect((error as BanksyncError).code).toBe('INVALID_REQUEST');
    expect((error as BanksyncError).message).toContain('declares none');
    expect(await store.listSyncs()).toEqual([]);
    // Without options the same request is fine.
    await expect(engine.requestSync({ connectionId: 'c1', provider: 'fake' })).resolves.toMatchObject({ status: 'QUEUED' });
  });

  it('declared-safe options reach the adapter and are stored; nothing else is', async () => {
    const { engine, store, adapter, clock, everything, inspected } = setup(['force']);
    const sync = await engine.requestSync({ connectionId: 'c1', provider: 'fake', options: { force: true } });
    await settle();
    clock.increment(1_000);
    await settle();
    expect((await engine.get(sync.syncId)).status).toBe('COMPLETED');
    expect(adapter.triggered.map((r) => r.options)).toEqual([{ force: true }]);
    const stored = (await store.getSync(sync.syncId))!.snapshot as { context: { options: unknown } };
    expect(stored.context.options).toEqual({ force: true });
    expect(inspected.length).toBeGreaterThan(0);
    expect(await everything()).not.toContain(SECRET);
  });
});
