/**
 * Model-based tests for the synchronization machine with `xstate/graph`.
 *
 * 1. A test version of the machine is derived from the real machine's config: every invocation's onDone/onError
 *    and every `after` transition becomes an ordinary transition on the very event type XState would raise
 *    (`xstate.done.actor.<id>`, `xstate.error.actor.<id>`, `xstate.after.<delay>.<stateId>`), so
 *    `createTestModel` accepts it and the effects' outcomes are explicit events with concrete payloads.
 * 2. Shortest paths are generated over an abstraction of the snapshot that keeps exactly what the guards read,
 *    plus the transition that led there, so every reachable transition ends some path. The set of all transitions
 *    of the REAL machine is computed statically and the paths must cover it.
 * 3. Every path is replayed against a live actor of the REAL machine on a SimulatedClock: effects are deferred
 *    promises resolved/rejected with the path's payloads, delayed events are produced by advancing the clock to the
 *    timer's due time (which must be the earliest pending timer, otherwise the path is not realisable). The live
 *    actor must match the model at every step: state value, guard-relevant context, effects in flight, and the
 *    transition it takes.
 */
import { describe, expect, it } from 'vitest';
import { createMachine, getNextSnapshot, type AnyEventObject, type AnyStateMachine, type AnyStateNode, type SnapshotFrom } from 'xstate';
import { createTestModel, getShortestPaths, getSimplePaths, getStateNodes, type StatePath } from 'xstate/graph';
import type { Challenge, EffectFailure, Observation } from '../../machines/canonical.js';
import { statusOf, synchronizationMachine, type SyncPolicy } from '../../machines/synchronization.js';
import { createHarness, RESULT, T0, iso, type EffectId, type Harness } from './harness.js';

// ---------------------------------------------------------------------------------------------------------------
// Static transition inventory
// ---------------------------------------------------------------------------------------------------------------

interface TransitionInfo {
  key: string;
  source: string;
  eventType: string;
  branch: number;
  guard: string;
  targets: string;
}

type TransitionDef = ReturnType<AnyStateMachine['getTransitionData']>[number];

function keyOf(def: TransitionDef): string {
  const branches = def.source.transitions.get(def.eventType) ?? [];
  const index = branches.indexOf(def);
  if (index < 0) throw new Error(`transition not found on its source: ${def.source.id} ${def.eventType}`);
  return `${def.source.id} | ${def.eventType} | #${index}`;
}

function describeGuard(def: TransitionDef): string {
  const g = def.guard as unknown;
  if (!g) return '-';
  if (typeof g === 'string') return g;
  if (typeof g === 'object' && g !== null && 'type' in g) return String((g as { type: unknown }).type);
  return 'inline';
}

/** Every transition of a machine: each guarded branch of every `on`, `after`, invoke onDone/onError and `always`. */
export function allTransitions(machine: AnyStateMachine): TransitionInfo[] {
  const nodes: AnyStateNode[] = [machine.root, ...getStateNodes(machine.root)];
  const out: TransitionInfo[] = [];
  for (const node of nodes) {
    const lists: Array<[string, TransitionDef[]]> = [...node.transitions.entries()];
    if (node.always?.length) lists.push(['', node.always]);
    for (const [eventType, defs] of lists) {
      defs.forEach((def, branch) => {
        out.push({
          key: `${node.id} | ${eventType || def.eventType} | #${branch}`,
          source: node.id,
          eventType: eventType || def.eventType,
          branch,
          guard: describeGuard(def),
          targets: def.target?.map((t) => t.id).join('+') ?? '(none)',
        });
      });
    }
  }
  return out;
}

/** Keys of the transitions `machine` takes from `snapshot` on `event` (empty when the event is ignored). */
function taken(machine: AnyStateMachine, snapshot: SnapshotFrom<AnyStateMachine>, event: AnyEventObject): string[] {
  if (event.type === 'xstate.init' || snapshot.status !== 'active') return [];
  const defs = machine.getTransitionData(snapshot, event);
  const keys = defs.map(keyOf);
  // An eventless (`always`) transition of a state just entered fired when the macrostep did not rest there.
  const next = getNextSnapshot(machine, snapshot, event);
  for (const target of defs.flatMap((d) => d.target ?? [])) {
    // Compared by id: a live snapshot's nodes belong to the provided copy of the machine.
    const rested = new Set(next._nodes.map((n) => n.id));
    if (!target.always?.length || rested.has(target.id)) continue;
    const branch = target.always.findIndex((d) => (d.target ?? []).some((t) => rested.has(t.id)));
    if (branch >= 0) keys.push(`${target.id} |  | #${branch}`);
  }
  return keys;
}

// ---------------------------------------------------------------------------------------------------------------
// The test version of the machine: effects and timers become explicit events
// ---------------------------------------------------------------------------------------------------------------

interface InvokeConfig {
  id?: string;
  onDone?: unknown;
  onError?: unknown;
}
interface StateConfig {
  on?: Record<string, unknown>;
  after?: Record<string, unknown>;
  invoke?: InvokeConfig | InvokeConfig[];
  states?: Record<string, StateConfig>;
  [key: string]: unknown;
}

function eventsInsteadOfEffects(config: StateConfig, node: AnyStateNode): StateConfig {
  const { invoke, after, states, on, ...rest } = config;
  const newOn: Record<string, unknown> = { ...(on ?? {}) };
  const invokes = invoke === undefined ? [] : Array.isArray(invoke) ? invoke : [invoke];
  invokes.forEach((inv, i) => {
    const id = inv.id ?? node.invoke[i]?.id;
    if (!id) throw new Error(`invoke without id on ${node.id}`);
    if (inv.onDone) newOn[`xstate.done.actor.${id}`] = inv.onDone;
    if (inv.onError) newOn[`xstate.error.actor.${id}`] = inv.onError;
  });
  for (const [delay, transition] of Object.entries(after ?? {})) {
    newOn[`xstate.after.${delay}.${node.id}`] = transition;
  }
  const out: StateConfig = { ...rest, on: newOn };
  if (states) {
    out.states = Object.fromEntries(
      Object.entries(states).map(([key, child]) => {
        const childNode = node.states[key];
        if (!childNode) throw new Error(`no state node ${node.id}.${key}`);
        return [key, eventsInsteadOfEffects(child, childNode)];
      }),
    );
  }
  return out;
}

const realMachine = synchronizationMachine as unknown as AnyStateMachine;
const testMachine: AnyStateMachine = createMachine(
  eventsInsteadOfEffects(synchronizationMachine.config as unknown as StateConfig, realMachine.root) as never,
  synchronizationMachine.implementations as never,
) as unknown as AnyStateMachine;

// ---------------------------------------------------------------------------------------------------------------
// Model inputs: policy, representative payloads, abstraction
// ---------------------------------------------------------------------------------------------------------------

/** Small counters keep the abstract graph small; the deadline dwarfs every path's duration. */
const MODEL_POLICY: SyncPolicy = {
  pollBaseMs: 1_000,
  pollMaxMs: 4_000,
  authPollMs: 5_000,
  retryBaseMs: 1_000,
  retryMaxMs: 8_000,
  // Exact delays are asserted here; jitter has its own tests.
  jitterRatio: 0,
  maxTriggerAttempts: 2,
  maxConsecutivePollErrors: 2,
  defaultChallengeTtlMs: 600_000,
  syncDeadlineMs: 6 * 3_600_000,
};
const MODEL_INPUT = {
  syncId: 'sync-model',
  connectionId: 'conn-1',
  provider: 'finx',
  scope: 'TRANSACTIONS' as const,
  policy: MODEL_POLICY,
};

const OBSERVED_AT = T0;
const EXPIRES = iso(T0 + 10 * 60_000);
const TAN: Challenge = { id: 'tan-1', kind: 'EMBEDDED', expiresAt: EXPIRES };
const TAN_REJECTED: Challenge = { ...TAN, previousAttemptFailed: true };
const APP: Challenge = { id: 'app-1', kind: 'DECOUPLED', expiresAt: EXPIRES };

const O = {
  queued: { status: 'QUEUED' },
  running: { status: 'RUNNING' },
  tan: { status: 'AWAIT_AUTH', challenge: TAN },
  tanRejected: { status: 'AWAIT_AUTH', challenge: TAN_REJECTED },
  app: { status: 'AWAIT_AUTH', challenge: APP },
  completed: { status: 'COMPLETED', result: RESULT },
  failed: {
    status: 'FAILED',
    error: { code: 'BANK_REJECTED', retryable: false, userActionRequired: false, message: 'rejected by bank' },
  },
} satisfies Record<string, Observation>;

const fail = (code: EffectFailure['code'], retryable: boolean, extra: Partial<EffectFailure> = {}): EffectFailure => ({
  code,
  retryable,
  userActionRequired: code === 'SCA_FAILED' || code === 'INVALID_CREDENTIALS',
  message: `${code} (model)`,
  ...extra,
});

/** An envelope as the engine builds it; `progress` is the provider's optional lifecycle rank of the reading. */
const env = (observation: Observation, progress?: number) => ({
  observation: progress === undefined ? observation : { ...observation, progress },
  observedAt: OBSERVED_AT,
});
const done = (id: EffectId, observation: Observation) => ({
  type: `xstate.done.actor.${id}`,
  output: id === 'trigger' ? { providerRef: 'ref-1', ...env(observation) } : env(observation),
});
const error = (id: EffectId, err: unknown) => ({ type: `xstate.error.actor.${id}`, error: err });

const after = {
  // The deadline runs per stretch of provider work (QUEUED, RUNNING), never while the user is waited for.
  queuedDeadline: 'xstate.after.syncDeadline.sync.QUEUED',
  runningDeadline: 'xstate.after.syncDeadline.sync.RUNNING',
  triggerBackoff: 'xstate.after.nextDelay.sync.QUEUED.Backoff',
  pollWait: 'xstate.after.nextDelay.sync.RUNNING.Waiting',
  authPoll: 'xstate.after.authPollInterval.sync.AWAIT_AUTH.AwaitingUser',
  challengeExpiry: 'xstate.after.challengeExpiry.sync.AWAIT_AUTH',
};

/** The full alphabet: every event type the machine reacts to, with representative payloads. */
const ALL_EVENTS: AnyEventObject[] = [
  ...Object.values(O).map((o) => ({ type: 'PROVIDER.OBSERVED', ...env(o) })),
  // readings carrying a provider progress rank: a later one, and an older (out-of-order) one
  { type: 'PROVIDER.OBSERVED', ...env(O.running, 2) },
  { type: 'PROVIDER.OBSERVED', ...env(O.tan, 2) },
  { type: 'PROVIDER.OBSERVED', ...env(O.running, 1) },
  { type: 'CHALLENGE.ANSWER', challengeId: 'tan-1', responseRef: 'resp-1' },
  { type: 'CHALLENGE.ANSWER', challengeId: 'app-1', responseRef: 'resp-2' },
  { type: 'CHALLENGE.ANSWER', challengeId: 'nope', responseRef: 'resp-3' },
  { type: 'CANCEL', reason: 'model' },
  ...[O.queued, O.running, O.tan, O.app, O.completed, O.failed].map((o) => done('trigger', o)),
  error('trigger', fail('PROVIDER_UNAVAILABLE', true, { retryAfterMs: 1_500 })),
  error('trigger', fail('INVALID_CREDENTIALS', false)),
  error('trigger', { message: 'unclassified' }),
  ...[O.queued, O.running, O.tan, O.app, O.completed, O.failed].map((o) => done('poll', o)),
  { type: 'xstate.done.actor.poll', output: env(O.running, 2) },
  error('poll', fail('PROVIDER_UNAVAILABLE', true)),
  error('poll', fail('CONSENT_EXPIRED', false)),
  ...[O.running, O.tan, O.tanRejected, O.app, O.completed, O.failed].map((o) => done('check', o)),
  error('check', fail('PROVIDER_UNAVAILABLE', true)),
  ...[O.running, O.tan, O.tanRejected, O.app, O.completed, O.failed].map((o) => done('answer', o)),
  error('answer', fail('SCA_FAILED', false)),
  error('answer', fail('INVALID_CREDENTIALS', false)),
  error('answer', fail('PROVIDER_UNAVAILABLE', true)),
  ...Object.values(after).map((type) => ({ type })),
];

type Snap = SnapshotFrom<AnyStateMachine>;

/**
 * Timers race in the real system; only offer a delayed event where it is the earliest pending timer:
 * the whole-sync deadline only while an effect is in flight with nothing else scheduled, the challenge expiry
 * only while no auth poll is scheduled (the 10 min challenge outlives any path's auth polls).
 */
function realisable(snapshot: Snap, event: AnyEventObject): boolean {
  if (event.type === after.queuedDeadline) return snapshot.matches({ QUEUED: 'Triggering' });
  if (event.type === after.runningDeadline) return snapshot.matches({ RUNNING: 'Polling' });
  if (event.type === after.challengeExpiry) {
    return snapshot.matches({ AWAIT_AUTH: 'Checking' }) || snapshot.matches({ AWAIT_AUTH: 'Answering' });
  }
  return true;
}

/** What the guards read, and the outcome for final states; counters that only feed delays and keys are dropped. */
function abstractState(snapshot: Snap): string {
  const c = snapshot.context as ReturnType<typeof synchronizationMachine.getInitialSnapshot>['context'];
  const status = statusOf(snapshot.value);
  const progress = (c as { progress?: number }).progress;
  return JSON.stringify({
    value: snapshot.value,
    ...(progress !== undefined && status !== 'COMPLETED' && status !== 'FAILED' ? { progress } : {}),
    ...(status === 'QUEUED' ? { triggerAttempts: c.triggerAttempts } : {}),
    ...(status === 'RUNNING' ? { pollErrors: c.consecutivePollErrors } : {}),
    ...(status === 'AWAIT_AUTH' ? { challenge: c.challenge && `${c.challenge.kind}:${c.challenge.id}` } : {}),
    ...(status === 'FAILED' ? { error: c.error?.code } : {}),
    ...(status === 'COMPLETED' ? { outcome: c.result?.outcome } : {}),
  });
}

/** Vertex = abstract state + the transition that entered it, so that every transition ends a shortest path. */
function serializeVertex(snapshot: Snap, event: AnyEventObject | undefined, previous?: Snap): string {
  const base = abstractState(snapshot);
  if (!event || !previous) return base;
  const via = taken(testMachine, previous, event);
  return via.length ? `${base} via ${via.join(' & ')}` : base;
}

// ---------------------------------------------------------------------------------------------------------------
// Live replay
// ---------------------------------------------------------------------------------------------------------------

/** The effects the real machine runs in the model's state (live in-flight effects must equal these). */
function expectedEffects(snapshot: Snap): string[] {
  if (snapshot.status !== 'active') return [];
  return (snapshot._nodes as AnyStateNode[])
    .flatMap((n) => realMachine.getStateNodeById(n.id).invoke.map((i) => i.id))
    .sort();
}

async function fireTimer(h: Harness, type: string): Promise<void> {
  const timers = h.timers();
  const timer = timers.find((t) => t.type === type);
  if (!timer) throw new Error(`timer ${type} is not pending live (pending: ${timers.map((t) => t.type).join(', ')})`);
  const earlier = timers.filter((t) => t !== timer && t.dueAt <= timer.dueAt);
  if (earlier.length) {
    throw new Error(`path not realisable: ${type} is due after ${earlier.map((t) => t.type).join(', ')}`);
  }
  await h.advance(timer.dueAt - h.clock.now());
}

async function execute(h: Harness, event: AnyEventObject): Promise<void> {
  const e = event as AnyEventObject & { output?: unknown; error?: unknown };
  let m: RegExpExecArray | null;
  if (e.type === 'xstate.init') return;
  if ((m = /^xstate\.done\.actor\.(\w+)$/.exec(e.type))) return h.resolveRaw(m[1] as EffectId, e.output);
  if ((m = /^xstate\.error\.actor\.(\w+)$/.exec(e.type))) return h.reject(m[1] as EffectId, e.error);
  if (e.type.startsWith('xstate.after.')) return fireTimer(h, e.type);
  h.actor.send(e as never);
  await new Promise((resolve) => setImmediate(resolve));
}

/** Replays `path` on a live actor; returns the keys of the transitions the LIVE actor took. */
async function replay(path: StatePath<Snap, AnyEventObject>, unattended = false): Promise<string[]> {
  const h = createHarness({ policy: MODEL_POLICY, input: { syncId: MODEL_INPUT.syncId, unattended } });
  const liveTaken: string[] = [];
  const [first, ...rest] = path.steps;
  expect(first?.event.type).toBe('xstate.init');
  const check = (model: Snap, where: string) => {
    expect(h.value(), where).toEqual(model.value);
    expect(abstractState(h.snapshot()), where).toBe(abstractState(model));
    expect(h.snapshot().status, where).toBe(model.status);
    expect([...h.inFlight()].sort(), where).toEqual(expectedEffects(model));
  };
  check(first!.state, 'initial state');
  let previousModel = first!.state;
  for (const [i, step] of rest.entries()) {
    const where = `step ${i + 1}: ${step.event.type}`;
    const modelKeys = taken(testMachine, previousModel, step.event);
    const liveKeys = taken(realMachine, h.snapshot() as Snap, step.event);
    expect(liveKeys, `${where}: live actor selects the model's transition ${JSON.stringify(liveKeys)} ${JSON.stringify(modelKeys)}`).toEqual(modelKeys);
    await execute(h, step.event);
    check(step.state, where);
    liveTaken.push(...liveKeys);
    previousModel = step.state;
  }
  return liveTaken;
}

// ---------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------

const TRANSITIONS = allTransitions(realMachine);

const model = createTestModel(testMachine, {
  input: MODEL_INPUT,
  events: ALL_EVENTS as never,
  filterEvents: realisable,
  serializeState: serializeVertex,
  stopWhen: (s: Snap) => s.status !== 'active',
  limit: 200_000,
});
const SHORTEST = model.getShortestPaths();
/** The same alphabet for an unattended sync (autosync): any challenge ends it at once (NEEDS_USER). */
const SHORTEST_UNATTENDED = createTestModel(testMachine, {
  input: { ...MODEL_INPUT, unattended: true },
  events: ALL_EVENTS as never,
  filterEvents: realisable,
  serializeState: serializeVertex,
  stopWhen: (s: Snap) => s.status !== 'active',
  limit: 200_000,
}).getShortestPaths();

/** Happy-path alphabet for exhaustive simple paths (all loop-free ways to COMPLETED). */
const HAPPY_EVENTS: AnyEventObject[] = [
  done('trigger', O.running),
  done('trigger', O.tan),
  done('trigger', O.completed),
  { type: after.pollWait },
  done('poll', O.running),
  done('poll', O.tan),
  done('poll', O.completed),
  { type: after.authPoll },
  done('check', O.tan),
  done('check', O.running),
  { type: 'CHALLENGE.ANSWER', challengeId: 'tan-1', responseRef: 'resp-1' },
  done('answer', O.tanRejected),
  done('answer', O.running),
  done('answer', O.completed),
];
const enabled = (s: Snap, e: AnyEventObject) => testMachine.getTransitionData(s, e).length > 0;
const SIMPLE_TO_COMPLETED = getSimplePaths(testMachine, {
  input: MODEL_INPUT,
  events: HAPPY_EVENTS as never,
  filterEvents: enabled,
  serializeState: abstractState,
  toState: (s: Snap) => s.value === 'COMPLETED',
});
const SHORTEST_TO_FAILED = getShortestPaths(testMachine, {
  input: MODEL_INPUT,
  events: ALL_EVENTS as never,
  filterEvents: (s: Snap, e: AnyEventObject) => enabled(s, e) && realisable(s, e),
  serializeState: abstractState,
  toState: (s: Snap) => s.value === 'FAILED',
});

function coveredBy(paths: Array<StatePath<Snap, AnyEventObject>>): Set<string> {
  const covered = new Set<string>();
  for (const path of paths) {
    for (let i = 1; i < path.steps.length; i++) {
      for (const k of taken(testMachine, path.steps[i - 1]!.state, path.steps[i]!.event)) covered.add(k);
    }
  }
  return covered;
}

function label(event: AnyEventObject): string {
  const e = event as AnyEventObject & { output?: { observation?: Observation }; observation?: Observation; error?: { code?: string } };
  const o = e.observation ?? e.output?.observation;
  const reading = o
    ? `${o.status}${o.status === 'AWAIT_AUTH' ? `(${o.challenge.id}${o.challenge.previousAttemptFailed ? ',rejected' : ''})` : ''}${o.progress !== undefined ? `@${o.progress}` : ''}`
    : '';
  const type = e.type
    .replace(/^PROVIDER\.OBSERVED$/, 'push')
    .replace(/^xstate\.(done|error)\.actor\./, '$1:')
    .replace(/^xstate\.after\.([^.]+)\..*$/, 'after:$1');
  if (e.type === 'CHALLENGE.ANSWER') return `answer(${(e as { challengeId?: string }).challengeId})`;
  if (e.type.startsWith('xstate.error.')) return `${type}=${e.error?.code ?? 'unclassified'}`;
  return reading ? `${type}=${reading}` : type;
}
const summary = (path: StatePath<Snap, AnyEventObject>) =>
  path.steps
    .slice(1)
    .map((s) => label(s.event))
    .join(' > ') || '(initial)';

describe('synchronization machine model (xstate/graph)', () => {
  it('the test machine has exactly the transitions of the real machine', () => {
    const real = TRANSITIONS.map((t) => `${t.key} -> ${t.targets} [${t.guard}]`).sort();
    const test = allTransitions(testMachine)
      .map((t) => `${t.key} -> ${t.targets} [${t.guard}]`)
      .sort();
    expect(test).toEqual(real);
    // sanity: the inventory sees guarded branches, delayed transitions and effect outcomes
    expect(TRANSITIONS.some((t) => t.eventType.startsWith('xstate.after.'))).toBe(true);
    expect(TRANSITIONS.some((t) => t.eventType.startsWith('xstate.done.actor.'))).toBe(true);
    expect(TRANSITIONS.some((t) => t.eventType.startsWith('xstate.error.actor.'))).toBe(true);
    expect(TRANSITIONS.filter((t) => t.eventType === 'CANCEL').length).toBeGreaterThanOrEqual(3);
  });

  it('the generated shortest paths cover every transition of the machine', () => {
    const covered = new Set([...coveredBy(SHORTEST), ...coveredBy(SHORTEST_UNATTENDED)]);
    const missing = TRANSITIONS.filter((t) => !covered.has(t.key));
    console.log(`covered ${TRANSITIONS.length - missing.length}/${TRANSITIONS.length} transitions, ${SHORTEST.length + SHORTEST_UNATTENDED.length} paths`);
    expect(missing.map((t) => `${t.key} -> ${t.targets} [${t.guard}]`)).toEqual([]);
    // every covered key is a real transition (no phantom keys from the test machine)
    const known = new Set(TRANSITIONS.map((t) => t.key));
    expect([...covered].filter((k) => !known.has(k))).toEqual([]);
  });

  it('simple paths to COMPLETED and shortest paths to FAILED exist', () => {
    console.log(`simple paths to COMPLETED: ${SIMPLE_TO_COMPLETED.length}, shortest paths to FAILED: ${SHORTEST_TO_FAILED.length}`);
    expect(SIMPLE_TO_COMPLETED.length).toBeGreaterThanOrEqual(5);
    for (const p of SIMPLE_TO_COMPLETED) expect(p.state.value).toBe('COMPLETED');
    // FAILED is reachable with each error code the machine produces (abstract state keeps the code)
    const codes = new Set(SHORTEST_TO_FAILED.map((p) => (p.state.context as { error: { code: string } }).error.code));
    for (const code of ['CANCELLED', 'TIMEOUT', 'CHALLENGE_EXPIRED', 'SCA_FAILED', 'INVALID_CREDENTIALS', 'PROVIDER_UNAVAILABLE', 'BANK_REJECTED', 'PROVIDER_ERROR', 'CONSENT_EXPIRED']) {
      expect(codes.has(code), code).toBe(true);
    }
  });

  // Each path is replayed once and the result shared: the coverage test below awaits every replay itself, so
  // it holds whatever tests ran before it (run alone with -t, it replays all paths).
  const replays = new Map<StatePath<Snap, AnyEventObject>, Promise<string[]>>();
  const replayOnce = (path: StatePath<Snap, AnyEventObject>, unattended = false): Promise<string[]> => {
    let replayed = replays.get(path);
    if (!replayed) {
      replayed = replay(path, unattended);
      replays.set(path, replayed);
    }
    return replayed;
  };

  describe('shortest paths replayed on a live actor', () => {
    it.each(SHORTEST.map((p, i) => [i, summary(p), p] as const))('#%i %s', async (_i, _name, path) => {
      await replayOnce(path);
    });
  });

  describe('unattended: shortest paths replayed on a live actor', () => {
    it.each(SHORTEST_UNATTENDED.map((p, i) => [i, summary(p), p] as const))('#%i %s', async (_i, _name, path) => {
      await replayOnce(path, true);
      // Without the user present no path ever rests in AWAIT_AUTH.
      for (const step of path.steps) expect(statusOf(step.state.value)).not.toBe('AWAIT_AUTH');
    });
  });

  describe('shortest paths replayed through TestModel.testPath', () => {
    // The same replay through the graph package's own runner, on a sample of paths.
    it.each(SHORTEST.filter((_, i) => i % 7 === 0).map((p, i) => [i, summary(p), p] as const))('#%i %s', async (_i, _n, path) => {
      const h = createHarness({ policy: MODEL_POLICY, input: { syncId: MODEL_INPUT.syncId } });
      const exec = async (step: { event: AnyEventObject }) => execute(h, step.event);
      const events = Object.fromEntries([...new Set(path.steps.map((s) => s.event.type))].map((t) => [t, exec]));
      await path.test({
        events: events as never,
        states: {
          '*': (state: Snap) => {
            expect(h.value()).toEqual(state.value);
            expect(abstractState(h.snapshot())).toBe(abstractState(state));
          },
        },
      });
    });
  });

  describe('simple paths to COMPLETED replayed on a live actor', () => {
    it.each(SIMPLE_TO_COMPLETED.map((p, i) => [i, summary(p), p] as const))('#%i %s', async (_i, _name, path) => {
      await replay(path);
      expect(path.state.value).toBe('COMPLETED');
    });
  });

  describe('shortest paths to FAILED replayed on a live actor', () => {
    it.each(SHORTEST_TO_FAILED.map((p, i) => [i, summary(p), p] as const))('#%i %s', async (_i, _name, path) => {
      await replay(path);
      expect(path.state.value).toBe('FAILED');
    });
  });

  it('the live replays took every transition of the machine', async () => {
    const liveCovered = new Set<string>();
    for (const path of SHORTEST) for (const k of await replayOnce(path)) liveCovered.add(k);
    for (const path of SHORTEST_UNATTENDED) for (const k of await replayOnce(path, true)) liveCovered.add(k);
    const missing = TRANSITIONS.filter((t) => !liveCovered.has(t.key)).map((t) => t.key);
    console.log(`live replay covered ${TRANSITIONS.length - missing.length}/${TRANSITIONS.length} transitions`);
    expect(missing).toEqual([]);
  });
});
