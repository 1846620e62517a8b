/**
 * Model-based tests for the xs2a connection machine with `xstate/graph`.
 *
 * 1. The set of all transitions (every guarded branch of every `on`) is computed statically from the machine and
 *    its size asserted, so a transition added later must be covered too.
 * 2. Shortest paths are generated over an abstraction of the snapshot that keeps what the guards read (the fail
 *    counter, the consent date is fixed by the input) plus the transition that led there, so every reachable
 *    transition ends some path; the paths must cover the whole inventory.
 * 3. Every path is replayed on a live actor: at each step the live actor must select the model's transition,
 *    reach the model's state and context, and the provider `progress` rank must never go down within one attempt.
 */
import { describe, expect, it } from 'vitest';
import { createActor, type AnyEventObject, type AnyStateMachine, type AnyStateNode, type SnapshotFrom } from 'xstate';
import { createTestModel, getStateNodes, type StatePath } from 'xstate/graph';
import {
  XS2A_MAX_FAILURES,
  xs2aConnectionMachine,
  xs2aReading,
  xs2aSnapshot,
  xs2aSyncDecision,
  type Xs2aConnectionEvent,
  type Xs2aConnectionSnapshot,
} from '../../machines/xs2aConnection.js';

const NAME = 'xs2aConnection';
const machine = xs2aConnectionMachine as unknown as AnyStateMachine;
type Snap = SnapshotFrom<AnyStateMachine>;
type TransitionDef = ReturnType<AnyStateMachine['getTransitionData']>[number];

// ---------------------------------------------------------------------------------------------------------------
// Static transition inventory
// ---------------------------------------------------------------------------------------------------------------

function allTransitions(m: AnyStateMachine): { key: string; targets: string }[] {
  const nodes: AnyStateNode[] = [m.root, ...getStateNodes(m.root)];
  const out: { key: string; targets: string }[] = [];
  for (const node of nodes) {
    const lists: Array<[string, TransitionDef[]]> = [...node.transitions.entries()];
    if (node.always?.length) lists.push(['', node.always]);
    for (const [eventType, defs] of lists) {
      defs.forEach((def, branch) => {
        out.push({ key: `${node.id} | ${eventType || def.eventType} | #${branch}`, targets: def.target?.map((t) => t.id).join('+') ?? '(none)' });
      });
    }
  }
  return out;
}

function keyOf(def: TransitionDef): string {
  const branches = def.source.transitions.get(def.eventType) ?? [];
  return `${def.source.id} | ${def.eventType} | #${branches.indexOf(def)}`;
}

function taken(snapshot: Snap, event: AnyEventObject): string[] {
  if (event.type === 'xstate.init' || snapshot.status !== 'active') return [];
  return machine.getTransitionData(snapshot, event).map(keyOf);
}

const TRANSITIONS = allTransitions(machine);
/**
 * ACTIVE 4 (SYNC x2, RESET, DELETE), INACTIVE 5 (SYNC x3, RESET, DELETE), SYNCING 6 (SYNC, RESET, SUCCEEDED,
 * FAILED x2, DELETE), Requested 2, AwaitingUser 3 (COMPLETED, EXPIRED x2), DISABLED 3 (SYNC, RESET, DELETE).
 */
const EXPECTED_TRANSITIONS = 23;

// ---------------------------------------------------------------------------------------------------------------
// Model inputs
// ---------------------------------------------------------------------------------------------------------------

const INPUT = { consentValidUntil: '2025-06-30' };
const TODAY = '2025-03-01';
const AFTER_CONSENT = '2025-07-01';

const EVENTS: Xs2aConnectionEvent[] = [
  { type: 'SYNC', today: TODAY },
  { type: 'SYNC', force: true, today: TODAY },
  { type: 'SYNC', today: AFTER_CONSENT },
  { type: 'SYNC.BACKGROUND' },
  { type: 'SYNC.USER_REQUIRED', wizardKey: 'wiz-sync' },
  { type: 'WIZARD.COMPLETED' },
  { type: 'WIZARD.EXPIRED' },
  { type: 'SYNC.SUCCEEDED' },
  { type: 'SYNC.FAILED', message: 'wrong password' },
  { type: 'RESET', wizardKey: 'wiz-reset' },
  { type: 'DELETE' },
];

/** What the guards read and what the adapter maps; the attempt number (unbounded) is left out. */
function abstractState(snapshot: Snap): string {
  const c = (snapshot as Xs2aConnectionSnapshot).context;
  return JSON.stringify({
    value: snapshot.value,
    failCounter: c.failCounter,
    lastOutcome: c.lastOutcome,
    refusal: c.refusal,
    wizard: c.wizardKey,
    origin: c.origin,
  });
}

/** Vertex = abstract state + the transition that entered it, so that every transition ends a shortest path. */
function serializeVertex(snapshot: Snap, event: AnyEventObject | undefined, previous?: Snap): string {
  const base = abstractState(snapshot);
  if (!event || !previous) return base;
  const via = taken(previous, event);
  return via.length ? `${base} via ${via.join(' & ')}` : base;
}

const model = createTestModel(machine, {
  input: INPUT,
  events: EVENTS as never,
  serializeState: serializeVertex as never,
  limit: 50_000,
});
const PATHS = model.getShortestPaths();

function coveredBy(paths: StatePath<Snap, AnyEventObject>[]): Set<string> {
  const covered = new Set<string>();
  for (const path of paths) {
    for (let i = 1; i < path.steps.length; i++) for (const k of taken(path.steps[i - 1]!.state, path.steps[i]!.event)) covered.add(k);
  }
  return covered;
}

const summary = (path: StatePath<Snap, AnyEventObject>) =>
  path.steps
    .slice(1)
    .map((s) => `${s.event.type}${(s.event as { force?: boolean }).force ? '(force)' : ''}${(s.event as { today?: string }).today === AFTER_CONSENT ? '(late)' : ''}`)
    .join(' > ') || '(initial)';

/** Replays a path on a live actor; returns the transitions the LIVE actor took. */
function replay(path: StatePath<Snap, AnyEventObject>): string[] {
  const actor = createActor(xs2aConnectionMachine, { input: INPUT }).start();
  const liveTaken: string[] = [];
  const [first, ...rest] = path.steps;
  expect(abstractState(actor.getSnapshot() as Snap)).toBe(abstractState(first!.state));
  let previousModel = first!.state;
  let previousReading = xs2aReading(actor.getSnapshot());
  let previousAttempt = actor.getSnapshot().context.attempt;
  for (const [i, step] of rest.entries()) {
    const where = `step ${i + 1}: ${step.event.type}`;
    const live = taken(actor.getSnapshot() as Snap, step.event);
    expect(live, `${where}: live actor selects the model's transition`).toEqual(taken(previousModel, step.event));
    actor.send(step.event as Xs2aConnectionEvent);
    const snapshot = actor.getSnapshot();
    expect(snapshot.value, where).toEqual(step.state.value);
    expect(abstractState(snapshot as Snap), where).toBe(abstractState(step.state));
    expect(snapshot.status, where).toBe(step.state.status);
    // Provider progress ranks grow through one attempt (a late "sync started" is recognisably stale).
    const reading = xs2aReading(snapshot);
    if (snapshot.context.attempt === previousAttempt) expect(reading.progress, `${where}: progress`).toBeGreaterThanOrEqual(previousReading.progress);
    previousReading = reading;
    previousAttempt = snapshot.context.attempt;
    liveTaken.push(...live);
    previousModel = step.state;
  }
  actor.stop();
  return liveTaken;
}

// ---------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------

describe('xs2a connection machine model (xstate/graph)', () => {
  it(`has exactly ${EXPECTED_TRANSITIONS} transitions (computed statically)`, () => {
    expect(TRANSITIONS.map((t) => t.key)).toHaveLength(EXPECTED_TRANSITIONS);
    expect(new Set(TRANSITIONS.map((t) => t.key)).size).toBe(EXPECTED_TRANSITIONS);
  });

  it('the generated shortest paths cover every transition', () => {
    const covered = coveredBy(PATHS);
    const missing = TRANSITIONS.filter((t) => !covered.has(t.key));
    console.log(`${NAME}: covered ${TRANSITIONS.length - missing.length}/${TRANSITIONS.length} transitions, ${PATHS.length} paths`);
    expect(missing.map((t) => `${t.key} -> ${t.targets}`)).toEqual([]);
    const known = new Set(TRANSITIONS.map((t) => t.key));
    expect([...covered].filter((k) => !known.has(k))).toEqual([]);
  });

  const liveCovered = new Set<string>();
  describe('shortest paths replayed on a live actor', () => {
    it.each(PATHS.map((p, i) => [i, summary(p), p] as const))('#%i %s', (_i, _name, path) => {
      for (const k of replay(path)) liveCovered.add(k);
    });
  });

  it('the live replays took every transition', () => {
    const missing = TRANSITIONS.filter((t) => !liveCovered.has(t.key)).map((t) => t.key);
    console.log(`${NAME}: live replay covered ${TRANSITIONS.length - missing.length}/${TRANSITIONS.length} transitions`);
    expect(missing).toEqual([]);
  });

  it('provider rules: inactive needs force, third failure in a row disables for good, success resets the counter', () => {
    const actor = createActor(xs2aConnectionMachine, { input: {} }).start();
    const fail = () => {
      actor.send({ type: 'SYNC.BACKGROUND' });
      actor.send({ type: 'SYNC.FAILED', message: 'wrong password' });
    };
    actor.send({ type: 'SYNC', today: TODAY });
    fail();
    expect(actor.getSnapshot().value).toBe('INACTIVE');
    expect(actor.getSnapshot().context.failCounter).toBe(1);
    actor.send({ type: 'SYNC', today: TODAY });
    expect(actor.getSnapshot().value).toBe('INACTIVE');
    expect(actor.getSnapshot().context.refusal).toBe('INACTIVE');
    actor.send({ type: 'SYNC', force: true, today: TODAY });
    actor.send({ type: 'SYNC.BACKGROUND' });
    actor.send({ type: 'SYNC.SUCCEEDED' });
    expect(actor.getSnapshot().value).toBe('ACTIVE');
    expect(actor.getSnapshot().context.failCounter).toBe(0);
    for (let i = 0; i < XS2A_MAX_FAILURES; i++) {
      actor.send({ type: 'SYNC', force: true, today: TODAY });
      fail();
    }
    expect(actor.getSnapshot().value).toBe('DISABLED');
    expect(actor.getSnapshot().context.failCounter).toBe(XS2A_MAX_FAILURES);
    actor.send({ type: 'SYNC', force: true, today: TODAY });
    expect(actor.getSnapshot().value).toBe('DISABLED');
    expect(actor.getSnapshot().context.refusal).toBe('DISABLED');
    actor.send({ type: 'RESET', wizardKey: 'k-1' });
    expect(actor.getSnapshot().value).toBe('DISABLED');
    expect(actor.getSnapshot().context.wizardKey).toBe('k-1');
    actor.send({ type: 'DELETE' });
    expect(actor.getSnapshot().status).toBe('done');
  });

  it('decision and reading helpers agree with the machine', () => {
    const inactive = xs2aSnapshot('INACTIVE', { failCounter: 1, lastOutcome: 'FAILED' });
    expect(xs2aSyncDecision(inactive, { force: false, today: TODAY })).toMatchObject({ allowed: false, refusal: 'INACTIVE' });
    expect(xs2aSyncDecision(inactive, { force: true, today: TODAY }).allowed).toBe(true);
    expect(xs2aSyncDecision(xs2aSnapshot('DISABLED', { failCounter: 3 }), { force: true, today: TODAY })).toMatchObject({ refusal: 'DISABLED' });
    expect(xs2aSyncDecision(xs2aSnapshot('ACTIVE', { consentValidUntil: '2025-02-28' }), { force: false, today: TODAY })).toMatchObject({
      refusal: 'CONSENT_EXPIRED',
    });
    expect(xs2aSyncDecision(xs2aSnapshot({ SYNCING: 'Running' }), { force: true, today: TODAY })).toMatchObject({ refusal: 'SYNC_IN_PROGRESS' });
    expect(xs2aReading(xs2aSnapshot({ SYNCING: 'Requested' }))).toEqual({ status: 'QUEUED', progress: 1, disabled: false });
    expect(xs2aReading(xs2aSnapshot({ SYNCING: 'Running' }))).toEqual({ status: 'RUNNING', progress: 2, disabled: false });
    expect(xs2aReading(xs2aSnapshot({ SYNCING: 'AwaitingUser' }))).toEqual({ status: 'AWAIT_AUTH', progress: 3, disabled: false });
    expect(xs2aReading(xs2aSnapshot({ SYNCING: 'Resumed' }))).toEqual({ status: 'RUNNING', progress: 4, disabled: false });
    expect(xs2aReading(xs2aSnapshot('ACTIVE', { lastOutcome: 'SUCCEEDED' }))).toEqual({ status: 'COMPLETED', progress: 5, disabled: false });
    expect(xs2aReading(inactive)).toEqual({ status: 'FAILED', progress: 5, disabled: false });
    expect(xs2aReading(xs2aSnapshot('DISABLED', { failCounter: 3 }))).toEqual({ status: 'FAILED', progress: 5, disabled: true });
  });
});
