/**
 * Pins the XState internals the engine relies on (src/engine/xstate-internals.ts) to the installed XState.
 * If an XState upgrade changes any of them, this file fails before the engine misbehaves: check the module
 * against the new version, then update CHECKED_XSTATE_VERSION.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, getInitialSnapshot, getNextSnapshot, setup } from 'xstate';
import { connectionMachine, type ConnectionEvent } from '../../machines/connection.js';
import {
  CHECKED_XSTATE_VERSION,
  cancelScheduledEvent,
  childInput,
  fireScheduledEvent,
  inertActorScope,
  listScheduledEvents,
  scheduleEvent,
} from '../../src/engine/xstate-internals.js';

/** An XState clock whose timers run only when the test says so. */
function manualClock() {
  let nextId = 1;
  const timers = new Map<number, { fn: () => void; ms: number }>();
  return {
    timers,
    setTimeout: (fn: () => void, ms: number) => {
      const id = nextId++;
      timers.set(id, { fn, ms });
      return id;
    },
    clearTimeout: (id: number) => {
      timers.delete(id);
    },
    runAll: () => {
      for (const [id, timer] of [...timers]) {
        timers.delete(id);
        timer.fn();
      }
    },
  };
}

const WAIT_MS = 5_000;
const AFTER_WAIT = 'xstate.after.wait.toy.Waiting';

/** Waiting --(after `wait`)--> Working (invokes a promise child with input) --LEAVE--> Done; Waiting --LEAVE--> Done. */
const toy = setup({
  types: { context: {} as { job: string }, input: {} as { job: string }, events: {} as { type: 'LEAVE' } },
  delays: { wait: WAIT_MS },
  actors: { work: fromPromise<string, { job: string; attempt: number }>(() => new Promise<string>(() => {})) },
}).createMachine({
  id: 'toy',
  context: ({ input }) => ({ job: input.job }),
  initial: 'Waiting',
  states: {
    Waiting: { after: { wait: 'Working' }, on: { LEAVE: 'Done' } },
    Working: {
      invoke: { id: 'work', src: 'work', input: ({ context }) => ({ job: context.job, attempt: 1 }) },
      on: { LEAVE: 'Done' },
    },
    Done: { type: 'final' },
  },
});

function start() {
  const clock = manualClock();
  const actor = createActor(toy, { input: { job: 'j1' }, clock });
  actor.start();
  return { clock, actor };
}

describe('xstate internals (pinned to the installed XState)', () => {
  it('the installed xstate is the version the module was checked against', () => {
    const require = createRequire(import.meta.url);
    const path = require.resolve('xstate/package.json');
    const installed = (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
    expect(installed, 'xstate changed: re-check src/engine/xstate-internals.ts, then update CHECKED_XSTATE_VERSION').toBe(CHECKED_XSTATE_VERSION);
  });

  it('listScheduledEvents lists an `after` event with its id, type and delay, as the same object each time', () => {
    const { clock, actor } = start();
    const listed = listScheduledEvents(actor);
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ id: AFTER_WAIT, event: { type: AFTER_WAIT }, delay: WAIT_MS });
    // The engine keys due times by this object (a WeakMap): it must be stable while the event is pending.
    expect(listScheduledEvents(actor)[0]).toBe(listed[0]);
    expect([...clock.timers.values()].map((t) => t.ms)).toEqual([WAIT_MS]);
    // Only the actor's own events: another actor in another system is not listed.
    const other = createActor(toy, { input: { job: 'j2' }, clock: manualClock() }).start();
    expect(listScheduledEvents(actor)).toHaveLength(1);
    expect(listScheduledEvents(other)).toHaveLength(1);
    expect(listScheduledEvents(other)[0]).not.toBe(listed[0]);
    actor.stop();
    other.stop();
  });

  it('cancelScheduledEvent removes the event and its clock timer; the transition never happens', () => {
    const { clock, actor } = start();
    cancelScheduledEvent(actor, AFTER_WAIT);
    expect(listScheduledEvents(actor)).toEqual([]);
    expect(clock.timers.size).toBe(0);
    clock.runAll();
    expect(actor.getSnapshot().value).toBe('Waiting');
    cancelScheduledEvent(actor, 'no-such-id'); // a no-op
    actor.stop();
  });

  it('a restored actor forgets its delayed events; scheduleEvent re-arms one that is then delivered', () => {
    const { actor } = start();
    const persisted = actor.getPersistedSnapshot();
    actor.stop();
    const clock = manualClock();
    const restored = createActor(toy, { input: { job: 'ignored on restore' }, snapshot: persisted, clock }).start();
    // The engine re-arms stored timers itself (SyncEngine.rearm): if XState restored them too, each would fire twice.
    expect(listScheduledEvents(restored)).toEqual([]);
    expect(clock.timers.size).toBe(0);

    scheduleEvent(restored, { type: AFTER_WAIT }, 1_234, AFTER_WAIT);
    expect(listScheduledEvents(restored)).toEqual([expect.objectContaining({ id: AFTER_WAIT, event: { type: AFTER_WAIT }, delay: 1_234 })]);
    expect([...clock.timers.values()].map((t) => t.ms)).toEqual([1_234]);
    clock.runAll();
    expect(restored.getSnapshot().value).toBe('Working');
    expect(listScheduledEvents(restored)).toEqual([]);
    restored.stop();
  });

  it("an event re-armed under the `after` id is cancelled by the state's exit, as XState's own would be", () => {
    const { actor } = start();
    const persisted = actor.getPersistedSnapshot();
    actor.stop();
    const clock = manualClock();
    const restored = createActor(toy, { input: { job: 'ignored on restore' }, snapshot: persisted, clock }).start();
    scheduleEvent(restored, { type: AFTER_WAIT }, 1_000, AFTER_WAIT);
    restored.send({ type: 'LEAVE' });
    expect(restored.getSnapshot().value).toBe('Done');
    expect(listScheduledEvents(restored)).toEqual([]);
    expect(clock.timers.size).toBe(0);
  });

  it('fireScheduledEvent delivers the `after` event now and clears its timer', () => {
    const { clock, actor } = start();
    fireScheduledEvent(actor, AFTER_WAIT, AFTER_WAIT);
    expect(actor.getSnapshot().value).toBe('Working');
    expect(listScheduledEvents(actor)).toEqual([]);
    expect(clock.timers.size).toBe(0);
    actor.stop();
  });

  it("childInput reads an invoked promise actor's input from its snapshot", () => {
    const { clock, actor } = start();
    expect(childInput(actor.getSnapshot().children.work)).toBeUndefined(); // not invoked yet
    clock.runAll();
    const child = actor.getSnapshot().children.work;
    expect(child?.id).toBe('work');
    expect(childInput<{ job: string; attempt: number }>(child)).toEqual({ job: 'j1', attempt: 1 });
    expect(childInput(undefined)).toBeUndefined();
    actor.stop();
  });

  it('a machine stepped through inertActorScope ends where getInitialSnapshot / getNextSnapshot take it', () => {
    type Scope = Parameters<typeof connectionMachine.transition>[2];
    const scope = inertActorScope<Scope>(connectionMachine, { tenantId: '', connectionId: '', provider: '' });
    const input = { tenantId: 't1', connectionId: 'c1', provider: 'finx', registeredAt: 1_000 };
    const events: ConnectionEvent[] = [
      { type: 'SETTINGS.UPDATE', storedCredentials: true, consentGrantedAt: 1_000, consentExpiresAt: 10 ** 12, at: 1_001 },
      { type: 'SYNC.REQUEST', syncId: 's1', unattended: true, at: 1_002 },
      { type: 'SYNC.FINISHED', syncId: 's1', status: 'COMPLETED', result: { outcome: 'COMPLETE', accounts: [] }, error: null, at: 1_003 },
    ];
    let ours = connectionMachine.getInitialSnapshot(scope, input);
    let theirs = getInitialSnapshot(connectionMachine, input);
    const states: string[] = [];
    for (const event of events) {
      ours = connectionMachine.transition(ours, event, scope);
      theirs = getNextSnapshot(connectionMachine, theirs, event);
      expect({ value: ours.value, context: ours.context, status: ours.status }).toEqual({ value: theirs.value, context: theirs.context, status: theirs.status });
      states.push(String(ours.value));
    }
    // The steps did move the machine (the comparison is not between two unchanged snapshots).
    expect(new Set(states).size).toBeGreaterThan(1);
    expect(ours.context.lastSync?.syncId).toBe('s1');
  });
});
